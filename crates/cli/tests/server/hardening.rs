//! Issue 15 ("Hardening"): what a pushed file, a viewer's query, a full disk or a
//! hostile job must not be able to do to the server. One test per item, named after it.

use crate::support::{Backend, Repo, Server, BIN};
use std::time::{Duration, Instant};

/// Nine levels of anchors, each aliasing the level above nine times: 570 bytes
/// that would expand into 9^9 nodes.
fn billion_laughs(first_line: &str) -> String {
    let mut doc = format!("{first_line}\n");
    doc.push_str("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let aliases = vec![format!("*{}", pair[0]); 9].join(",");
        doc.push_str(&format!("{}: &{} [{aliases}]\n", pair[1], pair[1]));
    }
    doc
}

const GOOD: &str = "on: push\njobs:\n  ok:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo fine\n";

/// Item 1: a YAML bomb in a workflow file and in `mobius.yaml` of a pushed
/// commit is refused with the alias's position; the server keeps answering, the
/// other workflow of the commit runs, and a restart (which re-reads the last
/// commit's `mobius.yaml`) starts at once.
#[test]
fn yaml_alias_bomb_in_a_pushed_commit_does_not_stop_the_server() {
    let mut server = Server::start(Backend::Sqlite);
    let repo = Repo::new(&[
        (".github/workflows/ok.yml", GOOD),
        (".github/workflows/bomb.yml", &billion_laughs("on: push")),
        ("mobius.yaml", &billion_laughs("services: {}")),
    ]);
    let added = server.add_project("bomb", repo.path());
    let runs = added["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2, "{added}");
    for run in &runs {
        let run = server.wait_run(run["id"].as_i64().unwrap(), "completed");
        if run["workflow"] == ".github/workflows/bomb.yml" {
            assert_eq!(run["conclusion"], "failure", "{run}");
            let reason = run["reason"].as_str().unwrap();
            assert!(reason.contains("limit of 4194304 bytes"), "{reason}");
            assert!(reason.contains("bomb.yml:"), "the diagnostic names the file and position: {reason}");
        } else {
            assert_eq!(run["conclusion"], "success", "{run}\n{}", server.log());
        }
    }
    let (status, _) = server.api("GET", "/ui/projects/bomb", None);
    assert_eq!(status, 200, "the project's page opens");
    server.restart();
    let (status, _) = server.api("GET", "/healthz", None);
    assert_eq!(status, 200);
    // Start-up re-read mobius.yaml of the last commit; still up a while later.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.api("GET", "/healthz", None).0, 200, "{}", server.log());
}

/// Item 1: the same bomb as `--prometheus-config` or `--alertmanager-config`
/// makes `mobius serve` exit at once with the file, line and column.
#[test]
fn yaml_alias_bomb_in_server_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.yml");
    std::fs::write(&bomb, billion_laughs("global: {}")).unwrap();
    for flag in ["--prometheus-config", "--alertmanager-config"] {
        let started = Instant::now();
        let out = std::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .arg(flag)
            .arg(&bomb)
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("bomb.yml:"), "{flag}: {stderr}");
        assert!(stderr.contains("limit of 4194304 bytes"), "{flag}: {stderr}");
    }
}
