//! `kill -9` while a job runs: after restart the run ends `failure` with "server
//! restarted", the log written before the crash is kept and the database is sound.

use crate::support::{backends, Repo, Server};
use serde_json::json;
use std::time::{Duration, Instant};

const WF: &str = "on: workflow_dispatch\njobs:\n  long:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo before-the-crash; sleep 47.25; echo never\n";

fn marker_running() -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("47.25")))
}

#[test]
fn a_killed_server_loses_nothing_acknowledged() {
    for backend in backends() {
        let mut server = Server::start(backend.clone());
        let repo = Repo::new(&[(".github/workflows/long.yml", WF)]);
        server.add_project("crashy", repo.path());
        let (status, body) =
            server.api("POST", "/api/v1/projects/crashy/workflows/long.yml/dispatches", Some(json!({})));
        assert_eq!(status, 201, "{body}");
        let id = body["runs"][0]["id"].as_i64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, logs) = server.api("GET", &format!("/api/v1/runs/{id}/logs"), None);
            if logs.as_str().is_some_and(|l| l.contains("before-the-crash")) {
                break;
            }
            assert!(Instant::now() < deadline, "the step never logged\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        server.restart();
        let started = Instant::now();
        let run = server.wait_run(id, "completed");
        assert!(started.elapsed() < Duration::from_secs(5), "recovered within seconds");
        assert_eq!(run["conclusion"], "failure");
        assert_eq!(run["reason"], "server restarted");
        assert_eq!(run["jobs"][0]["conclusion"], "failure");
        let (_, logs) = server.api("GET", &format!("/api/v1/runs/{id}/logs"), None);
        assert!(logs.as_str().unwrap().contains("before-the-crash"), "the log before the crash is kept: {logs}");
        assert!(!marker_running(), "the crashed run's processes are gone");
        // Acknowledged state survived: the project, the run, the tokens.
        assert_eq!(server.api("GET", "/api/v1/projects/crashy", None).0, 200);
        if let crate::support::Backend::Sqlite = backend {
            server.kill9();
            let url = mobius_store::Store::sqlite_url(&server.data().join("mobius.db"));
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let check = runtime
                .block_on(async { mobius_store::Store::open(&url).await.unwrap().integrity_check().await.unwrap() });
            assert_eq!(check, "ok");
        }
    }
}
