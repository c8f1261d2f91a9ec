//! act's own runner fixtures (../shared/conformance/act): every one must reach the manifest's outcome.

use crate::support::require;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MOBIUS_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/act"));
    dir.join("manifest.tsv").is_file().then_some(dir)
}

#[test]
fn act_fixtures_agree_with_the_manifest() {
    let Some(dir) = fixtures_dir() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the conformance fixtures (../shared/conformance/act) are missing under CI=true");
        }
        eprintln!("skipping: ../shared/conformance/act is absent");
        return;
    };
    if !require("git") || !require("node") {
        return;
    }
    // The workspace is testdata/ made into a git repository, as act's harness does.
    let work = tempfile::tempdir().expect("temp dir");
    let repo = work.path().join("testdata");
    let status = Command::new("cp").arg("-r").arg(dir.join("testdata")).arg(&repo).status().expect("cp");
    assert!(status.success());
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(&repo).status();
    for args in [vec!["init", "-q", "-b", "main"], vec!["add", "-A"], vec!["commit", "-q", "-m", "fixtures"]] {
        let ok = Command::new("git")
            .args(&args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .stdout(Stdio::null())
            .status()
            .expect("git");
        assert!(ok.success());
    }
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).expect("manifest");
    let mut failures = Vec::new();
    let mut count = 0;
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [fixture, event, expect] = fields[..] else { panic!("bad manifest line {line:?}") };
        count += 1;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mobius"));
        cmd.arg("run")
            .arg(event)
            .arg("-C")
            .arg(&repo)
            .arg("-W")
            .arg(repo.join(fixture))
            // The three act-specific fixtures read these; the engine never hard-codes them.
            .args(["--env", "ACT=true", "--actor", "nektos/act", "--repository", "nektos/act"])
            .env("XDG_STATE_HOME", work.path().join("state"))
            .env("NO_COLOR", "1");
        let event_json = repo.join(fixture).join("event.json");
        if event_json.is_file() {
            cmd.arg("--eventpath").arg(&event_json);
        }
        let output = cmd.output().expect("mobius runs");
        let got = match output.status.code() {
            Some(0) => "success",
            Some(1) => "failure",
            other => {
                failures.push(format!("{fixture}: exit {other:?}\n{}", String::from_utf8_lossy(&output.stderr)));
                continue;
            }
        };
        if got != expect {
            failures.push(format!(
                "{fixture}: expected {expect}, got {got}\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert_eq!(count, 44, "the manifest should list 44 fixtures");
    assert!(failures.is_empty(), "{} of {count} fixtures disagree:\n{}", failures.len(), failures.join("\n\n"));
}
