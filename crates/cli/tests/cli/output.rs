//! What the user sees: --list, --dryrun, --json and the per-step log files.

use crate::support::Test;

const WF: &str = "name: CI\non: [push, pull_request]\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - name: Say\n        run: echo built-it\n  test:\n    needs: build\n    runs-on: ubuntu-latest\n    steps: [{run: echo tested}]\n";

#[test]
fn list_shows_jobs_with_stages_without_running() {
    let out = Test::new().workflow("ci.yml", WF).args(&["-l"]).run();
    out.code(0).stdout_has("Stage").stdout_has("build").stdout_has("test").stdout_has("CI").stdout_lacks("built-it");
    let line = out.stdout().lines().find(|l| l.contains(" test ")).map(str::to_string).unwrap_or_default();
    assert!(line.starts_with('1'), "test is in stage 1: {line}");
}

#[test]
fn dryrun_plans_without_executing() {
    let t = Test::new().workflow("ci.yml", WF);
    t.args(&["-n"]).run().code(0).stdout_has("step Say").stdout_lacks("built-it").stdout_has("nothing was executed");
}

#[test]
fn json_prints_one_object_per_event() {
    let out = Test::new().workflow("ci.yml", WF).args(&["--json"]).run();
    out.code(0);
    let events: Vec<serde_json::Value> =
        out.stdout().lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for kind in ["run_started", "job_started", "step_started", "log", "step_finished", "job_finished", "run_finished"] {
        assert!(kinds.contains(&kind), "missing {kind}: {kinds:?}");
    }
    let log = events.iter().find(|e| e["event"] == "log" && e["line"] == "built-it").expect("log line");
    assert_eq!(log["job"], "build");
    assert_eq!(log["step"], "Say");
    assert!(log["time"].as_str().is_some());
    let last = events.last().unwrap();
    assert_eq!(last["conclusion"], "success");
}

#[test]
fn step_logs_are_kept_with_timestamps() {
    let out = Test::new().workflow("ci.yml", WF).run();
    out.code(0).stdout_has("[build] Say | built-it");
    let logs = out.all_logs();
    let line = logs.lines().find(|l| l.ends_with("built-it")).expect("log file line");
    assert!(line.starts_with("20") && line.contains('T') && line.contains("Z built-it"), "{line}");
}

#[test]
fn only_the_last_runs_are_kept() {
    let t = Test::new()
        .workflow("ci.yml", "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n");
    for _ in 0..22 {
        t.run().code(0);
    }
    let mut runs: Vec<std::path::PathBuf> = std::fs::read_dir(t.state.path().join("mobius/runs"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 20);
    // Logs stay with every kept run; job workspaces only with the newest.
    assert!(runs.iter().all(|r| r.join("logs").is_dir()));
    assert!(runs.last().unwrap().join("jobs").is_dir());
    assert!(runs[..19].iter().all(|r| !r.join("jobs").exists()));
}

#[test]
fn the_run_keeps_an_append_only_event_record() {
    let out = Test::new().workflow("ci.yml", WF).run();
    out.code(0);
    let text = std::fs::read_to_string(out.run_dir().join("events.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(events.first().unwrap()["event"], "run_started");
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    assert!(events.iter().all(|e| e["event"] != "log" && e["time"].is_string()));
    let finished: Vec<&str> =
        events.iter().filter(|e| e["event"] == "job_finished").filter_map(|e| e["job"].as_str()).collect();
    assert_eq!(finished, ["build", "test"]);
}
