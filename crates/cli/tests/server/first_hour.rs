//! The first hour of a new team (issue 16): releases per content, `mobius.yaml`
//! diagnostics on the run, addresses owned by one project, one server per data
//! directory, silences and incidents, alerts that hold rollouts, and the CLI's edges.

use crate::deploy::{cli_ok, free_port, python_available, wait_release, WORKFLOW};
use crate::support::{backends, Repo, Server};
use serde_json::Value;
use std::time::{Duration, Instant};

const APP: &str = include_str!("../../../deploy/tests/upstream.py");

/// One protected production environment that every new release deploys to by itself.
fn auto_deployed(port: u16) -> String {
    format!(
        "services:
  web:
    artifact: web
    run: python3 upstream.py {{port}}
    health: {{ path: /healthz, interval: 200ms }}
environments:
  production:
    listen: 127.0.0.1:{port}
    auto_deploy: true
    protected: true
    strategy: blue-green
"
    )
}

fn audit_actions(server: &Server, action: &str) -> Vec<Value> {
    let (_, audit) = server.api("GET", "/api/v1/audit", None);
    audit.as_array().unwrap().iter().filter(|e| e["action"] == action).cloned().collect()
}

fn rollouts(server: &Server) -> Vec<Value> {
    let (_, list) = server.api("GET", "/api/v1/rollouts?service=web", None);
    list.as_array().cloned().unwrap_or_default()
}

/// Item 1: a re-run of a released commit reuses its release (same digest) and deploys
/// nothing new; a newer release arriving while a rollout waits is stated on it.
#[test]
fn a_rerun_reuses_the_release_and_a_newer_one_is_stated_on_the_paused_rollout() {
    if !python_available() {
        return;
    }
    for backend in backends() {
        let port = free_port();
        let repo = Repo::new(&[
            (".github/workflows/build.yml", WORKFLOW),
            ("app/upstream.py", APP),
            ("mobius.yaml", &auto_deployed(port)),
        ]);
        let server = Server::start(backend);
        server.add_project("shop", repo.path());
        let v1 = wait_release(&server, "v1");
        // The automatic deploy waits for approval.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !rollouts(&server).iter().any(|r| r["phase"] == "paused") {
            assert!(Instant::now() < deadline, "no paused rollout: {:?}", rollouts(&server));
            std::thread::sleep(Duration::from_millis(50));
        }

        // Re-run the released run: it succeeds, and makes and deploys nothing new.
        let run_id = v1["run_id"].as_i64().unwrap();
        let (code, answer) = server.api("POST", &format!("/api/v1/runs/{run_id}/rerun"), None);
        assert!(code == 200 || code == 201, "{answer}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while audit_actions(&server, "release.reuse").is_empty() {
            assert!(Instant::now() < deadline, "no release.reuse audit entry\n{}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        let reuse = &audit_actions(&server, "release.reuse")[0];
        assert_eq!(reuse["detail"]["release"], "v1", "{reuse}");
        let (_, releases) = server.api("GET", "/api/v1/releases?service=web", None);
        assert_eq!(releases.as_array().unwrap().len(), 1, "the same digest made a second release: {releases}");
        assert_eq!(rollouts(&server).len(), 1, "a reused release deployed again: {:?}", rollouts(&server));

        // A change of the artifact makes v2 while rollout 1 is paused: said on the rollout.
        repo.commit(&[("app/VERSION", "2")], "Faster checkout");
        wait_release(&server, "v2");
        let paused = rollouts(&server).into_iter().find(|r| r["phase"] == "paused").unwrap();
        assert_eq!(paused["newer_release"], "v2", "{paused}");
        let id = paused["id"].as_i64().unwrap();
        let (_, detail) = server.api("GET", &format!("/api/v1/rollouts/{id}"), None);
        let events = detail["events"].as_array().unwrap();
        assert!(
            events.iter().any(|e| e["kind"] == "newer_release" && e["message"].as_str().unwrap().contains("v2")),
            "{detail}"
        );
        let status = cli_ok(&server, &["rollout", "status", "web", "--env", "production"]);
        assert!(status.contains("v2 is newer and waits"), "{status}");
        let page = reqwest::blocking::Client::new()
            .get(format!("{}/ui/rollouts/{id}", server.url))
            .header("cookie", format!("mobius_token={}", server.token))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(page.contains("web v2 is newer and waits"), "{page}");
    }
}
