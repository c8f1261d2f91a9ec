//! Runs from push, polling and dispatch: jobs, steps, logs, secrets, variables,
//! artifacts, test reports, cancel, re-run, concurrency and the global job limit.

use crate::support::{backends, Repo, Server};
use serde_json::{json, Value};

const CI: &str = r#"
name: CI
on:
  push:
    branches: [main]
  workflow_dispatch:
    inputs:
      greeting:
        type: string
        required: true
      times:
        type: number
        default: 2
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo "event=${{ github.event_name }} secret=${{ secrets.API_KEY }} region=${{ vars.REGION }}"
      - run: echo "greeting=${{ inputs.greeting }} times=${{ inputs.times }}"
        if: github.event_name == 'workflow_dispatch'
      - run: |
          mkdir -p dist reports
          echo "binary" > dist/app.bin
          cat > reports/TEST-unit.xml <<'XML'
          <testsuite name="unit"><testcase classname="calc" name="adds"/><testcase classname="calc" name="divides"><failure message="division by zero">trace</failure></testcase></testsuite>
          XML
      - uses: actions/upload-artifact@v4
        with:
          name: dist
          path: dist/
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo "tested ${{ github.sha }}"
"#;

#[test]
fn push_dispatch_logs_artifacts_and_test_reports() {
    for backend in backends() {
        let server = Server::start(backend.clone());
        let repo = Repo::new(&[(".github/workflows/ci.yml", CI)]);
        let head = repo.git(&["rev-parse", "HEAD"]);
        let added = server.add_project("web", repo.path());
        assert_eq!(added["runs"].as_array().unwrap().len(), 1, "adding a project runs its push workflows: {added}");
        assert_eq!(added["webhook_secret"].as_str().unwrap().len(), 64, "a generated webhook secret is shown once");
        let first = added["runs"][0]["id"].as_i64().unwrap();
        let run = server.wait_run(first, "completed");
        assert_eq!(run["conclusion"], "success", "{run}\n{}", server.log());
        assert_eq!(run["head_sha"], head.as_str());
        assert_eq!(run["event"], "push");
        assert_eq!(run["project"], "web");
        assert_eq!(run["workflow"], ".github/workflows/ci.yml");
        assert_eq!(run["author"], "Alice");
        for field in ["created_at", "started_at", "completed_at"] {
            assert!(run[field].as_str().is_some_and(|t| t.ends_with('Z')), "{field}: {run}");
        }
        let jobs: Vec<&str> = run["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
        assert_eq!(jobs, ["build", "test"]);
        let build_steps = run["jobs"][0]["steps"].as_array().unwrap();
        assert_eq!(build_steps[1]["conclusion"], "skipped", "the dispatch-only step is skipped on push");

        // Secrets and variables reach the next run; the secret is masked in its log.
        let (status, _) =
            server.api("PUT", "/api/v1/projects/web/secrets/API_KEY", Some(json!({"value": "hunter2-very-secret"})));
        assert_eq!(status, 204);
        assert_eq!(
            server.api("PUT", "/api/v1/projects/web/variables/REGION", Some(json!({"value": "eu-west"}))).0,
            204
        );
        let (_, secrets) = server.api("GET", "/api/v1/projects/web/secrets", None);
        assert_eq!(secrets[0]["name"], "API_KEY");
        assert!(!secrets.to_string().contains("hunter2"), "secret values never leave the server");

        let out = server.cli(&["dispatch", "web", "ci.yml", "--input", "greeting=hello there", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let queued: Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = queued[0]["id"].as_i64().unwrap();
        let run = server.wait_run(id, "completed");
        assert_eq!(run["conclusion"], "success", "{run}");
        assert_eq!((run["event"].as_str(), run["run_number"].as_i64()), (Some("workflow_dispatch"), Some(2)));
        let logs = server.cli(&["logs", &id.to_string()]);
        let logs = String::from_utf8_lossy(&logs.stdout).to_string();
        assert!(logs.contains("event=workflow_dispatch secret=*** region=eu-west"), "{logs}");
        assert!(logs.contains("greeting=hello there times=2"), "typed inputs with defaults: {logs}");
        assert!(!logs.contains("hunter2"), "{logs}");
        assert!(logs.lines().all(|l| l.starts_with("build\t") || l.starts_with("test\t")), "{logs}");
        let only_test = server.cli(&["logs", &id.to_string(), "--job", "test"]);
        let only_test = String::from_utf8_lossy(&only_test.stdout).to_string();
        assert!(only_test.contains(&format!("tested {head}")) && !only_test.contains("greeting"), "{only_test}");

        // Test reports: totals and the failure message, without failing the job.
        let (_, tests) = server.api("GET", &format!("/api/v1/runs/{id}/tests"), None);
        assert_eq!(
            (tests["total"].as_i64(), tests["failures"].as_i64(), tests["passed"].as_i64()),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(tests["reports"][0]["cases"][0]["message"], "division by zero");
        assert_eq!(tests["reports"][0]["job"], "build");
        let shown = server.cli(&["show", &id.to_string()]);
        let shown = String::from_utf8_lossy(&shown.stdout).to_string();
        assert!(shown.contains("tests: 2 total, 1 passed, 1 failed") && shown.contains("division by zero"), "{shown}");

        // Artifacts: listed, downloadable, and no path escapes.
        let (_, artifacts) = server.api("GET", &format!("/api/v1/runs/{id}/artifacts"), None);
        assert_eq!(artifacts[0]["name"], "dist");
        assert_eq!(artifacts[0]["files"][0]["path"], "app.bin");
        let (status, body) = server.api("GET", &format!("/api/v1/runs/{id}/artifacts/dist/app.bin"), None);
        assert_eq!((status, body.as_str()), (200, Some("binary\n")));
        for bad in ["dist/..%2F..%2Fmobius.db", "..%2Fdist/app.bin", "dist/a%5C..%5Cb", "dist/%2Fetc%2Fpasswd"] {
            let (status, body) = server.api("GET", &format!("/api/v1/runs/{id}/artifacts/{bad}"), None);
            assert_eq!(status, 400, "{bad}: {body}");
        }

        // The server's own metrics saw the runs, the jobs and the API calls; its log never holds the secret.
        let (_, metrics) = server.api_as("", "GET", "/metrics", None);
        let metrics = metrics.as_str().unwrap().to_string();
        assert!(metrics.contains(r#"mobius_runs{status="completed",conclusion="success"} 2"#), "{metrics}");
        assert!(metrics.contains("mobius_job_duration_seconds_count 4"), "{metrics}");
        assert!(
            metrics.contains(r#"mobius_http_requests_total{route="/api/v1/runs/{id}",method="GET",status="200"}"#),
            "{metrics}"
        );
        assert!(!server.log().contains("hunter2"));

        // `mobius runs --json`: an array of run objects, newest first.
        let out = server.cli(&["runs", "--project", "web", "--json"]);
        let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(runs.as_array().unwrap().len(), 2);
        assert_eq!(runs[0]["id"], id);
        for field in [
            "id",
            "project",
            "workflow",
            "event",
            "head_sha",
            "created_at",
            "started_at",
            "completed_at",
            "status",
            "conclusion",
        ] {
            assert!(runs[0].get(field).is_some(), "{field} missing: {}", runs[0]);
        }
    }
}

#[test]
fn polling_runs_new_commits_and_honours_branch_filters() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let repo = Repo::new(&[(".github/workflows/ci.yml", CI)]);
    let first = server.add_project("app", repo.path())["runs"][0]["id"].as_i64().unwrap();
    server.wait_run(first, "completed");
    let before = repo.git(&["rev-parse", "HEAD"]);
    let after = repo.commit(&[("README.md", "hello\n")], "docs: readme");
    let runs = server.wait_runs("app", 2);
    let run = server.wait_run(runs[1]["id"].as_i64().unwrap(), "completed");
    assert_eq!(run["head_sha"], after.as_str());
    assert_eq!(run["message"], "docs: readme");
    let (_, full) = server.api("GET", &format!("/api/v1/runs/{}", run["id"]), None);
    assert_eq!(full["conclusion"], "success");
    // The synthesized push payload carries before/after like GitHub's.
    let logs = server.cli(&["logs", &run["id"].to_string(), "--job", "test"]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains(&after));
    assert_ne!(before, after);

    // A branch the workflow does not list runs nothing.
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.commit(&[("feature.txt", "x\n")], "feature work");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (_, runs) = server.api("GET", "/api/v1/runs?project=app", None);
    assert_eq!(runs.as_array().unwrap().len(), 2, "push to 'feature' is filtered out: {runs}");
}

#[test]
fn dispatch_errors_name_the_problem() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let repo = Repo::new(&[
        (".github/workflows/ci.yml", CI),
        (
            ".github/workflows/push-only.yml",
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: true\n",
        ),
    ]);
    server.add_project("p", repo.path());
    let (status, body) = server.api("POST", "/api/v1/projects/p/workflows/ci.yml/dispatches", Some(json!({})));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("greeting"), "{body}");
    let (status, body) = server.api(
        "POST",
        "/api/v1/projects/p/workflows/ci.yml/dispatches",
        Some(json!({"inputs": {"greeting": "x", "times": "many"}})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("times"), "{body}");
    let (status, body) = server.api("POST", "/api/v1/projects/p/workflows/nope.yml/dispatches", Some(json!({})));
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.api("POST", "/api/v1/projects/p/workflows/push-only.yml/dispatches", Some(json!({})));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("workflow_dispatch"), "{body}");
    let (status, body) =
        server.api("POST", "/api/v1/projects/p/workflows/ci.yml/dispatches", Some(json!({"ref": "no-such-branch"})));
    assert_eq!(status, 422, "{body}");
    let (status, body) =
        server.api("POST", "/api/v1/projects/p/workflows/ci.yml/dispatches", Some(json!({"bogus": 1})));
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    let out = server.cli(&["dispatch", "p", "ci.yml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("greeting"), "{}", String::from_utf8_lossy(&out.stderr));
}

const SLOW: &str = r#"
on:
  workflow_dispatch:
    inputs:
      seconds:
        default: "30"
concurrency:
  group: deploy-${{ github.ref }}
  cancel-in-progress: true
jobs:
  slow:
    runs-on: ubuntu-latest
    steps:
      - run: echo started; sleep ${{ inputs.seconds }}; echo finished
"#;

fn dispatch(server: &Server, project: &str, workflow: &str, inputs: Value) -> i64 {
    let path = format!("/api/v1/projects/{project}/workflows/{workflow}/dispatches");
    let (status, body) = server.api("POST", &path, Some(json!({"inputs": inputs})));
    assert_eq!(status, 201, "{body}");
    body["runs"][0]["id"].as_i64().unwrap()
}

#[test]
fn cancel_rerun_and_cancel_in_progress_groups() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let repo = Repo::new(&[(".github/workflows/slow.yml", SLOW)]);
    server.add_project("svc", repo.path());
    let first = dispatch(&server, "svc", "slow.yml", json!({}));
    server.wait_run(first, "in_progress");
    // A newer run of the same group cancels the one in progress, then runs.
    let second = dispatch(&server, "svc", "slow.yml", json!({"seconds": "0"}));
    let cancelled = server.wait_run(first, "completed");
    assert_eq!(cancelled["conclusion"], "cancelled", "{cancelled}");
    assert!(cancelled["reason"].as_str().unwrap().contains(&format!("run {second}")), "{cancelled}");
    let done = server.wait_run(second, "completed");
    assert_eq!(done["conclusion"], "success");
    assert_eq!(done["concurrency_group"], "deploy-refs/heads/main");

    // Cancel through the CLI stops the job's process.
    let third = dispatch(&server, "svc", "slow.yml", json!({}));
    server.wait_run(third, "in_progress");
    let out = server.cli(&["cancel", &third.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let started = std::time::Instant::now();
    let run = server.wait_run(third, "completed");
    assert_eq!(run["conclusion"], "cancelled");
    assert!(started.elapsed().as_secs() < 15, "cancellation is prompt");
    assert_eq!(
        server.api("POST", &format!("/api/v1/runs/{third}/cancel"), None).0,
        409,
        "completed runs cannot be cancelled"
    );

    // Re-run: same number, next attempt, same inputs.
    let out = server.cli(&["rerun", &second.to_string(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    let again_id = again[0]["id"].as_i64().unwrap();
    let rerun = server.wait_run(again_id, "completed");
    assert_eq!(rerun["conclusion"], "success");
    assert_eq!((rerun["run_attempt"].as_i64(), rerun["rerun_of"].as_i64()), (Some(2), Some(second)));
    assert_eq!(rerun["run_number"], server.run(second)["run_number"]);
}

#[test]
fn the_global_job_limit_holds_across_runs() {
    let server = Server::start_with(crate::support::Backend::Sqlite, &["--max-parallel-jobs", "1"]);
    let two_jobs = "on: workflow_dispatch\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 0.5\n  b:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 0.5\n";
    let repo = Repo::new(&[(".github/workflows/two.yml", two_jobs)]);
    server.add_project("lim", repo.path());
    let runs = [dispatch(&server, "lim", "two.yml", json!({})), dispatch(&server, "lim", "two.yml", json!({}))];
    let mut spans = Vec::new();
    for id in runs {
        let run = server.wait_run(id, "completed");
        assert_eq!(run["conclusion"], "success");
        for job in run["jobs"].as_array().unwrap() {
            spans.push((
                job["started_at"].as_str().unwrap().to_string(),
                job["completed_at"].as_str().unwrap().to_string(),
            ));
        }
    }
    spans.sort();
    assert_eq!(spans.len(), 4);
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "jobs overlapped under --max-parallel-jobs 1: {spans:?}");
    }
}

/// Issue 18: container jobs (and their services) take the same job slots as host jobs.
#[test]
fn container_jobs_take_the_same_job_slots_as_host_jobs() {
    if !crate::support::docker_with_test_images() {
        return;
    }
    let server = Server::start_with(crate::support::Backend::Sqlite, &["--max-parallel-jobs", "1"]);
    let jobs = "on: workflow_dispatch\njobs:\n  host:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 0.5\n  boxed:\n    runs-on: ubuntu-latest\n    container: mobius-test/busybox:1\n    services:\n      db:\n        image: mobius-test/postgres:15-1\n    steps:\n      - run: sleep 0.5\n";
    let repo = Repo::new(&[(".github/workflows/mixed.yml", jobs)]);
    server.add_project("mixed", repo.path());
    let id = dispatch(&server, "mixed", "mixed.yml", json!({}));
    let run = server.wait_run(id, "completed");
    assert_eq!(run["conclusion"], "success", "{run}");
    let mut spans: Vec<(String, String)> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["started_at"].as_str().unwrap().to_string(), j["completed_at"].as_str().unwrap().to_string()))
        .collect();
    spans.sort();
    assert_eq!(spans.len(), 2);
    assert!(spans[0].1 <= spans[1].0, "a container job ran beside a host job under --max-parallel-jobs 1: {spans:?}");
}

#[test]
fn logs_follow_live_until_the_run_ends() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let wf = "on: workflow_dispatch\njobs:\n  talk:\n    runs-on: ubuntu-latest\n    steps:\n      - run: for i in 1 2 3; do echo line-$i; sleep 0.3; done\n      - run: echo done; exit 3\n";
    let repo = Repo::new(&[(".github/workflows/talk.yml", wf)]);
    server.add_project("t", repo.path());
    let id = dispatch(&server, "t", "talk.yml", json!({}));
    let out = server.cli(&["logs", &id.to_string(), "-f"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for expected in ["line-1", "line-2", "line-3", "done", "exit code 3"] {
        assert!(text.contains(expected), "{expected} missing from the followed log:\n{text}");
    }
    assert_eq!(out.status.code(), Some(1), "following a failed run exits 1");
    assert_eq!(server.run(id)["conclusion"], "failure");
}

#[test]
fn rerunning_failed_jobs_keeps_what_succeeded_with_its_outputs() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let wf = r#"
on: workflow_dispatch
jobs:
  version:
    runs-on: ubuntu-latest
    outputs:
      tag: ${{ steps.v.outputs.tag }}
    steps:
      - id: v
        run: echo "tag=v-$GITHUB_RUN_ATTEMPT" >> "$GITHUB_OUTPUT"
  flaky:
    needs: version
    runs-on: ubuntu-latest
    steps:
      - run: echo "using ${{ needs.version.outputs.tag }} on attempt ${{ github.run_attempt }}"; test "${{ github.run_attempt }}" != 1
  after:
    needs: flaky
    runs-on: ubuntu-latest
    steps:
      - run: echo after
"#;
    let repo = Repo::new(&[(".github/workflows/flaky.yml", wf)]);
    server.add_project("f", repo.path());
    let first = dispatch(&server, "f", "flaky.yml", json!({}));
    let run = server.wait_run(first, "completed");
    assert_eq!(run["conclusion"], "failure");
    let states: Vec<(String, String)> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap().into(), j["conclusion"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        states,
        [("version".into(), "success".into()), ("flaky".into(), "failure".into()), ("after".into(), "skipped".into())]
    );

    let out = server.cli(&["rerun", &first.to_string(), "--failed", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = again[0]["id"].as_i64().unwrap();
    let run = server.wait_run(second, "completed");
    assert_eq!(run["conclusion"], "success", "{run}");
    assert_eq!(run["run_attempt"], 2);
    let version = &run["jobs"].as_array().unwrap().iter().find(|j| j["name"] == "version").unwrap();
    assert_eq!(version["reason"], "reused from the previous attempt");
    assert!(version["steps"].as_array().unwrap().is_empty(), "a reused job does not run");
    let logs =
        String::from_utf8_lossy(&server.cli(&["logs", &second.to_string(), "--job", "flaky"]).stdout).to_string();
    assert!(logs.contains("using v-1 on attempt 2"), "outputs of the reused job come from attempt 1: {logs}");
    let (status, body) =
        server.api("POST", &format!("/api/v1/runs/{second}/rerun"), Some(json!({"failed_only": true})));
    assert_eq!(status, 422, "nothing failed: {body}");
}

#[test]
fn retention_removes_old_logs_and_artifacts_but_keeps_runs() {
    let mut server = Server::start(crate::support::Backend::Sqlite);
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo kept-for-a-while > f.txt; cat f.txt\n      - uses: actions/upload-artifact@v4\n        with:\n          name: f\n          path: f.txt\n";
    let repo = Repo::new(&[(".github/workflows/ci.yml", wf)]);
    let id = server.add_project("r", repo.path())["runs"][0]["id"].as_i64().unwrap();
    server.wait_run(id, "completed");
    let blob_dir = server.data().join("blobs/sha256");
    let blobs = || walk_files(&blob_dir);
    assert!(blobs() >= 2, "a log and an artifact are stored");
    let (_, logs) = server.api("GET", &format!("/api/v1/runs/{id}/logs"), None);
    assert!(logs.as_str().unwrap().contains("kept-for-a-while"));
    std::thread::sleep(std::time::Duration::from_millis(50));
    server.restart_with(&["--retention", "10ms"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while blobs() > 0 {
        assert!(std::time::Instant::now() < deadline, "blobs left after retention: {}", blobs());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (_, logs) = server.api("GET", &format!("/api/v1/runs/{id}/logs"), None);
    assert!(!logs.as_str().unwrap().contains("kept-for-a-while"));
    let (_, artifacts) = server.api("GET", &format!("/api/v1/runs/{id}/artifacts"), None);
    assert_eq!(artifacts, json!([]));
    assert_eq!(server.run(id)["conclusion"], "success", "the run itself stays");
}

fn walk_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(Result::ok).map(|e| if e.path().is_dir() { walk_files(&e.path()) } else { 1 }).sum()
}

/// A child process stopped when the test ends, however it ends.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn repositories_reachable_by_url_are_mirrored_and_polled() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let repo = Repo::new(&[(".github/workflows/ci.yml", CI)]);
    // The repository served by `git daemon` over git://, as a remote host would.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let parent = repo.path().parent().unwrap().to_path_buf();
    // `git daemon` runs `git-daemon` as a child that outlives a killed `git`: start it directly.
    let exec_path = std::process::Command::new("git").arg("--exec-path").output().unwrap();
    let exec_path = String::from_utf8_lossy(&exec_path.stdout).trim().to_string();
    let daemon = ChildGuard(
        std::process::Command::new(std::path::Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1", &format!("--port={port}")])
            .arg(format!("--base-path={}", parent.display()))
            .arg(&parent)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let name = repo.path().file_name().unwrap().to_string_lossy().to_string();
    let url = format!("git://127.0.0.1:{port}/{name}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let added = loop {
        let (status, answer) = server.api("POST", "/api/v1/projects", Some(json!({"name": "remote", "repo": url})));
        if status == 201 {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "git daemon never served: {answer}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(added["project"]["repo"], url.as_str());
    let first = server.wait_run(added["runs"][0]["id"].as_i64().unwrap(), "completed");
    assert_eq!(first["conclusion"], "success", "{first}");
    assert_eq!(first["head_sha"], repo.git(&["rev-parse", "HEAD"]).as_str());
    assert!(server.data().join("mirrors/remote.git").is_dir());

    let after = repo.commit(&[("more.txt", "more\n")], "more over the wire");
    let runs = server.wait_runs("remote", 2);
    let run = server.wait_run(runs[1]["id"].as_i64().unwrap(), "completed");
    assert_eq!((run["head_sha"].as_str(), run["conclusion"].as_str()), (Some(after.as_str()), Some("success")));
    drop(daemon);
    // Nothing serves the repository once the test's daemon is stopped (none is left behind).
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "git daemon still listens on {port}");

    let (status, body) =
        server.api("POST", "/api/v1/projects", Some(json!({"name": "gone", "repo": "git://127.0.0.1:9/none"})));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("git://127.0.0.1:9/none"), "{body}");
}

use crate::http_git::HttpGit;

/// Issue 17, item 3: gix fetches over HTTP with its reqwest transport (no libcurl).
#[test]
fn repositories_reachable_over_http_are_mirrored() {
    let repo = Repo::new(&[(".github/workflows/ci.yml", CI)]);
    let Some(http) = HttpGit::start(repo.path().parent().unwrap(), None) else { return };
    let server = Server::start(crate::support::Backend::Sqlite);
    let name = repo.path().file_name().unwrap().to_string_lossy().to_string();
    let url = format!("{}/{name}", http.url());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let added = loop {
        let (status, answer) = server.api("POST", "/api/v1/projects", Some(json!({"name": "web", "repo": url})));
        if status == 201 {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "the HTTP server never served: {answer}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let first = server.wait_run(added["runs"][0]["id"].as_i64().unwrap(), "completed");
    assert_eq!(first["conclusion"], "success", "{first}");
    assert_eq!(first["head_sha"], repo.git(&["rev-parse", "HEAD"]).as_str());
    let after = repo.commit(&[("more.txt", "more\n")], "more over HTTP");
    let runs = server.wait_runs("web", 2);
    let run = server.wait_run(runs[1]["id"].as_i64().unwrap(), "completed");
    assert_eq!(run["head_sha"].as_str(), Some(after.as_str()));
}

#[test]
fn job_concurrency_groups_hold_across_runs() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let wf = "on: workflow_dispatch\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    concurrency:\n      group: production\n      cancel-in-progress: true\n    steps:\n      - run: echo deploying; sleep 30\n";
    let repo = Repo::new(&[(".github/workflows/deploy.yml", wf)]);
    server.add_project("d", repo.path());
    let first = dispatch(&server, "d", "deploy.yml", json!({}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.run(first)["jobs"].as_array().is_none_or(|j| j.is_empty()) {
        assert!(std::time::Instant::now() < deadline, "the first deploy never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = dispatch(&server, "d", "deploy.yml", json!({}));
    let run = server.wait_run(first, "completed");
    assert_eq!(run["jobs"][0]["conclusion"], "cancelled", "cancel-in-progress across runs: {run}");
    assert_ne!(run["conclusion"], "success");
    let (status, _) = server.api("POST", &format!("/api/v1/runs/{second}/cancel"), None);
    assert_eq!(status, 202);
    assert_eq!(server.wait_run(second, "completed")["conclusion"], "cancelled");
}

#[test]
fn caches_persist_between_runs_in_the_cache_blob_store() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let wf = r#"
on: workflow_dispatch
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - id: cache
        uses: actions/cache@v4
        with:
          path: deps
          key: deps-v1
      - run: echo "hit=${{ steps.cache.outputs.cache-hit }}"; mkdir -p deps; test -f deps/lib.txt && cat deps/lib.txt || echo fetched-dependency > deps/lib.txt
"#;
    let repo = Repo::new(&[(".github/workflows/build.yml", wf)]);
    server.add_project("c", repo.path());
    let first = dispatch(&server, "c", "build.yml", json!({}));
    assert_eq!(server.wait_run(first, "completed")["conclusion"], "success");
    assert!(walk_files(&server.data().join("blobs-cache/sha256")) >= 1, "the cached file is a blob");
    let second = dispatch(&server, "c", "build.yml", json!({}));
    assert_eq!(server.wait_run(second, "completed")["conclusion"], "success");
    let logs = String::from_utf8_lossy(&server.cli(&["logs", &second.to_string()]).stdout).to_string();
    assert!(logs.contains("hit=true") && logs.contains("fetched-dependency"), "{logs}");
}

#[test]
fn an_invalid_workflow_file_fails_its_run_with_the_diagnostics() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let broken = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz:\n      - run: echo\n";
    let repo = Repo::new(&[(".github/workflows/ci.yml", CI), (".github/workflows/broken.yml", broken)]);
    let added = server.add_project("b", repo.path());
    let runs = added["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{added}");
    let failed = runs.iter().find(|r| r["workflow"] == ".github/workflows/broken.yml").unwrap();
    assert_eq!((failed["status"].as_str(), failed["conclusion"].as_str()), (Some("completed"), Some("failure")));
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("broken.yml:5:5") && reason.contains("stepz"), "{reason}");
    let other = runs.iter().find(|r| r["workflow"] == ".github/workflows/ci.yml").unwrap();
    assert_eq!(server.wait_run(other["id"].as_i64().unwrap(), "completed")["conclusion"], "success");
}

/// Issue 17, item 4: a job that never ran is recorded with the conclusion the runner
/// gave it (a typed field of the event), not one guessed from its reason's words: legs
/// that fail-fast stopped are `cancelled` (they were recorded `skipped`, since
/// "fail-fast" does not contain "cancelled"), as GitHub shows them.
#[test]
fn jobs_that_never_ran_keep_the_runners_conclusion() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let wf = "on: push
jobs:
  test:
    runs-on: ubuntu-latest
    strategy:
      max-parallel: 1
      fail-fast: true
      matrix:
        leg: [a, b, c]
    steps:
      - run: exit 1
  never:
    if: false
    runs-on: ubuntu-latest
    steps:
      - run: echo no
";
    let repo = Repo::new(&[(".github/workflows/ci.yml", wf)]);
    let id = server.add_project("ff", repo.path())["runs"][0]["id"].as_i64().unwrap();
    let run = server.wait_run(id, "completed");
    let conclusions: std::collections::BTreeMap<String, String> = run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap().to_string(), j["conclusion"].as_str().unwrap().to_string()))
        .collect();
    // One leg runs (whichever gets the slot) and fails; fail-fast cancels the two waiting.
    let mut legs: Vec<&str> =
        ["test (a)", "test (b)", "test (c)"].iter().map(|leg| conclusions[*leg].as_str()).collect();
    legs.sort_unstable();
    assert_eq!(legs, ["cancelled", "cancelled", "failure"], "{conclusions:?}");
    assert_eq!(conclusions["never"], "skipped", "{conclusions:?}");
    assert_eq!(run["conclusion"], "failure");
}
