//! GitHub/Gitea webhooks: signatures, push and pull_request, and every kind of bad request.

use crate::support::{Backend, Repo, Server};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;

const WF: &str = "on:\n  push:\n  pull_request:\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.event_name }} ${{ github.ref }}\n";

pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn run_count(server: &Server) -> usize {
    server.api("GET", "/api/v1/runs?project=hooked", None).1.as_array().unwrap().len()
}

#[test]
fn signed_pushes_and_pull_requests_run_and_bad_ones_queue_nothing() {
    let server = Server::start_with(Backend::Sqlite, &["--poll-interval", "1h"]);
    let repo = Repo::new(&[(".github/workflows/ci.yml", WF)]);
    let secret = "a-webhook-secret-of-some-length";
    let (status, added) = server.api(
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "hooked", "repo": repo.path().display().to_string(), "webhook_secret": secret})),
    );
    assert_eq!(status, 201, "{added}");
    assert!(added.get("webhook_secret").is_none(), "a given secret is not echoed");
    server.wait_runs("hooked", 1);
    let before = repo.git(&["rev-parse", "HEAD"]);
    let after = repo.commit(&[("src.txt", "v2\n")], "change");
    let push = json!({"ref": "refs/heads/main", "before": before, "after": after, "sender": {"login": "octocat"},
        "commits": [{"id": after, "added": ["src.txt"], "removed": [], "modified": []}]});
    let body = serde_json::to_vec(&push).unwrap();
    let path = "/api/v1/hooks/github/hooked";
    let signature = sign(secret, &body);

    // Refused: no signature, a wrong one, a signature of other bytes.
    let (status, _) = server.post_raw(path, &[("X-GitHub-Event", "push")], body.clone());
    assert_eq!(status, 401);
    let (status, _) = server.post_raw(
        path,
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sign("wrong", &body))],
        body.clone(),
    );
    assert_eq!(status, 401);
    let (status, _) = server.post_raw(
        path,
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sign(secret, b"other"))],
        body.clone(),
    );
    assert_eq!(status, 401);
    assert_eq!(run_count(&server), 1, "nothing queued by refused webhooks");

    let (status, answer) =
        server.post_raw(path, &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &signature)], body.clone());
    assert_eq!(status, 202, "{answer}");
    let id = answer["runs"][0]["id"].as_i64().unwrap();
    let run = server.wait_run(id, "completed");
    assert_eq!((run["conclusion"].as_str(), run["actor"].as_str()), (Some("success"), Some("octocat")));
    assert_eq!(run["head_sha"], after.as_str());
    // The same delivery again is not a second push.
    let (status, answer) =
        server.post_raw(path, &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &signature)], body);
    assert_eq!((status, answer["runs"].as_array().unwrap().len()), (200, 0), "{answer}");

    // Gitea's header, a pull_request.
    let pr = json!({"action": "opened", "number": 7, "sender": {"login": "dev"},
        "pull_request": {"head": {"sha": after, "ref": "topic"}, "base": {"ref": "main", "sha": before}}});
    let body = serde_json::to_vec(&pr).unwrap();
    let (status, answer) = server.post_raw(
        path,
        &[("X-Gitea-Event", "pull_request"), ("X-Hub-Signature-256", &sign(secret, &body))],
        body,
    );
    assert_eq!(status, 202, "{answer}");
    let id = answer["runs"][0]["id"].as_i64().unwrap();
    let run = server.wait_run(id, "completed");
    assert_eq!((run["event"].as_str(), run["ref"].as_str()), (Some("pull_request"), Some("refs/pull/7/merge")));
    let logs = server.cli(&["logs", &id.to_string()]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("pull_request refs/pull/7/merge"));

    // Bad payloads: clear 4xx, nothing stored.
    let count = run_count(&server);
    let bad = b"{not json".to_vec();
    let (status, answer) =
        server.post_raw(path, &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sign(secret, &bad))], bad);
    assert_eq!(status, 400, "{answer}");
    let missing = serde_json::to_vec(&json!({"ref": "refs/heads/main"})).unwrap();
    let (status, answer) =
        server.post_raw(path, &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sign(secret, &missing))], missing);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("after"), "{answer}");
    let unknown = serde_json::to_vec(&json!({"ref": "refs/heads/main", "after": "1".repeat(40)})).unwrap();
    let (status, answer) =
        server.post_raw(path, &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sign(secret, &unknown))], unknown);
    assert_eq!(status, 422, "a commit the repository does not have: {answer}");
    // An unknown project's hook answers as a known one's does (no oracle of names).
    let (status, _) = server.post_raw("/api/v1/hooks/github/nobody", &[("X-GitHub-Event", "push")], b"{}".to_vec());
    assert_eq!(status, 401);
    // An oversize delivery is refused from its Content-Length, before the body is read.
    let address = server.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=00\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        26 * 1024 * 1024
    );
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    let mut answer = String::new();
    let mut reader = std::io::BufReader::new(stream);
    std::io::BufRead::read_line(&mut reader, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let (status, _) = server.post_raw(
        path,
        &[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sign(secret, b"{}"))],
        b"{}".to_vec(),
    );
    assert_eq!(status, 200);
    assert_eq!(run_count(&server), count, "nothing queued by bad webhooks");
}
