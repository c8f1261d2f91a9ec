//! Tokens, roles, project scopes, expiry, revocation, the audit log and open endpoints.

use crate::support::{backends, Repo, Server};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

const WF: &str =
    "on: [push, workflow_dispatch]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n";

fn token(server: &Server, body: serde_json::Value) -> String {
    let (status, answer) = server.api("POST", "/api/v1/tokens", Some(body));
    assert_eq!(status, 201, "{answer}");
    answer["token"].as_str().unwrap().to_string()
}

#[test]
fn every_call_needs_a_token_with_the_right_role() {
    for backend in backends() {
        let server = Server::start(backend);
        let mode = std::fs::metadata(server.data().join("admin-token")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the admin token file is private");
        assert_eq!(std::fs::metadata(server.data().join("master.key")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(server.token.starts_with("mbx_") && server.token.len() == 68);

        // Open: health and metrics. Everything else: 401 without a valid token.
        assert_eq!(server.api_as("", "GET", "/healthz", None).0, 200);
        let (status, metrics) = server.api_as("", "GET", "/metrics", None);
        assert_eq!(status, 200);
        assert!(metrics.as_str().unwrap().contains("mobius_queue_length"), "{metrics}");
        for path in ["/api/v1/projects", "/api/v1/runs", "/api/v1/tokens", "/api/v1/openapi.json", "/api/v1/audit"] {
            assert_eq!(server.api_as("", "GET", path, None).0, 401, "{path}");
            assert_eq!(server.api_as("mbx_0000", "GET", path, None).0, 401, "{path}");
        }

        let a = Repo::new(&[(".github/workflows/ci.yml", WF)]);
        let b = Repo::new(&[(".github/workflows/ci.yml", WF)]);
        server.add_project("alpha", a.path());
        server.add_project("beta", b.path());

        let viewer = token(&server, json!({"role": "viewer", "project": "alpha"}));
        let developer = token(&server, json!({"role": "developer", "project": "alpha", "name": "ci-bot"}));
        let dispatch = "/api/v1/projects/alpha/workflows/ci.yml/dispatches";
        assert_eq!(server.api_as(&viewer, "GET", "/api/v1/runs?project=alpha", None).0, 200);
        assert_eq!(server.api_as(&viewer, "POST", dispatch, Some(json!({}))).0, 403, "viewers cannot dispatch");
        assert_eq!(server.api_as(&developer, "POST", dispatch, Some(json!({}))).0, 201);
        assert_eq!(
            server.api_as(&developer, "PUT", "/api/v1/projects/alpha/secrets/X", Some(json!({"value": "v"}))).0,
            403
        );
        assert_eq!(server.api_as(&developer, "POST", "/api/v1/tokens", Some(json!({"role": "admin"}))).0, 403);
        assert_eq!(
            server.api_as(&developer, "GET", "/api/v1/projects/beta", None).0,
            404,
            "scoped tokens do not see other projects"
        );
        let (_, listed) = server.api_as(&viewer, "GET", "/api/v1/projects", None);
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let (_, runs) = server.api_as(&viewer, "GET", "/api/v1/runs", None);
        assert!(runs.as_array().unwrap().iter().all(|r| r["project"] == "alpha"), "{runs}");

        // Expiry and revocation.
        let short = token(&server, json!({"role": "viewer", "expires_in": "1s"}));
        assert_eq!(server.api_as(&short, "GET", "/api/v1/projects", None).0, 200);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(server.api_as(&short, "GET", "/api/v1/projects", None).0, 401, "expired tokens are refused");
        let (_, tokens) = server.api("GET", "/api/v1/tokens", None);
        let dev_id = tokens.as_array().unwrap().iter().find(|t| t["name"] == "ci-bot").unwrap()["id"].as_i64().unwrap();
        assert!(!tokens.to_string().contains(&developer), "token values are never listed");
        let out = server.cli(&["token", "revoke", &dev_id.to_string()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(server.api_as(&developer, "GET", "/api/v1/projects", None).0, 401, "revoked tokens are refused");
        assert_eq!(server.api("POST", "/api/v1/tokens", Some(json!({"role": "root"}))).0, 422);

        // The audit log names who did what, from where.
        let (status, audit) = server.api("GET", "/api/v1/audit", None);
        assert_eq!(status, 200);
        let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for action in ["project.create", "token.create", "workflow.dispatch", "token.revoke"] {
            assert!(actions.contains(&action), "{action} not audited: {actions:?}");
        }
        let dispatch_entry = audit.as_array().unwrap().iter().find(|e| e["action"] == "workflow.dispatch").unwrap();
        assert!(dispatch_entry["actor"].as_str().unwrap().contains("ci-bot"));
        assert_eq!(dispatch_entry["remote"], "127.0.0.1");
        assert_eq!(server.api_as(&viewer, "GET", "/api/v1/audit", None).0, 403);
        assert!(!server.log().contains(&server.token), "tokens never appear in the server log");
    }
}

#[test]
fn reserved_and_unknown_paths_answer_clearly() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let (status, body) = server.api("GET", "/api/v1/status/config", None);
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("reserved"), "{body}");
    // The monitor runs without configuration: queries answer in Prometheus' shape.
    let (status, body) = server.api("GET", "/api/v1/query?query=up", None);
    assert_eq!((status, body["data"]["resultType"].as_str()), (200, Some("vector")), "{body}");
    // Parameters that do not parse get the API's JSON error shape too.
    for path in ["/api/v1/runs?limit=abc", "/api/v1/runs/not-a-number", "/api/v1/audit?limit=0"] {
        let (status, body) = server.api("GET", path, None);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = server.api("GET", "/api/v1/nothing", None);
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("/api/v1/nothing"), "{body}");
    let (status, body) = server.api("GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(body["openapi"], "3.1.0", "{body}");
    // Every documented path and method is routed (its answer is never the fallback's "no such path").
    for (path, operations) in body["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{project}", "nobody")
            .replace("{id}", "999")
            .replace("{name}", "X")
            .replace("{workflow}", "ci.yml")
            .replace("{path}", "f");
        // A live stream answers forever: a bad query shows that it is routed without following it.
        let concrete = if path.ends_with("/events/stream") { format!("{concrete}?after=-1") } else { concrete };
        for method in operations.as_object().unwrap().keys() {
            let (status, answer) = server.api(&method.to_uppercase(), &concrete, None);
            assert!(
                !answer.to_string().contains("no such path"),
                "{method} {path} is documented but not routed: {status}"
            );
            assert_ne!(status, 405, "{method} {path} is documented but the method is not routed");
        }
    }
    let (status, body) = server.api("POST", "/api/v1/projects", Some(json!({"name": "../x", "repo": "/tmp"})));
    assert_eq!(status, 422, "{body}");
    let (status, body) = server.api("POST", "/api/v1/projects", Some(json!({"name": "x", "repo": "/no/such/repo"})));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("repo:"), "{body}");
}

#[test]
fn the_client_commands_speak_the_api() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let repo = Repo::new(&[(".github/workflows/ci.yml", WF)]);
    let json = |args: &[&str]| {
        let out = server.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let added = json(&["project", "add", "cli", "--repo", &repo.path().display().to_string(), "--json"]);
    assert_eq!(added["project"]["name"], "cli");
    assert_eq!(json(&["project", "list", "--json"])[0]["branch"], "main");
    let mut secret = std::process::Command::new(crate::support::BIN)
        .args(["secret", "set", "DEPLOY_KEY", "--project", "cli", "--server", &server.url, "--token", &server.token])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(secret.stdin.as_mut().unwrap(), b"from-stdin\n").unwrap();
    assert!(secret.wait().unwrap().success(), "--server and --token after the subcommand");
    assert_eq!(json(&["secret", "list", "--project", "cli", "--json"])[0]["name"], "DEPLOY_KEY");
    assert!(server.cli(&["var", "set", "STAGE", "blue", "--project", "cli"]).status.success());
    assert_eq!(json(&["var", "list", "--project", "cli", "--json"])[0]["value"], "blue");
    let token = json(&["token", "create", "--role", "viewer", "--project", "cli", "--expires", "1h", "--json"]);
    assert!(token["token"].as_str().unwrap().starts_with("mbx_"));
    let listed = json(&["token", "list", "--json"]);
    assert!(listed.as_array().unwrap().iter().any(|t| t["project"] == "cli" && t["expires_at"].is_string()));
    assert!(server.cli(&["secret", "delete", "DEPLOY_KEY", "--project", "cli"]).status.success());
    let audit = json(&["audit", "--json"]);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["secret.set", "variable.set", "token.create", "secret.delete", "project.create"] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
    // A viewer's token from the environment cannot change anything.
    let out = std::process::Command::new(crate::support::BIN)
        .args(["var", "set", "STAGE", "green", "--project", "cli"])
        .env("MOBIUS_SERVER", &server.url)
        .env("MOBIUS_TOKEN", token["token"].as_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));
}
