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
    // Start-up re-reads mobius.yaml of the last commit (where the bomb used to kill
    // the server): wait until it has, then it must still answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("mobius.yaml's monitoring not applied") {
        assert!(Instant::now() < deadline, "mobius.yaml was not read again at start:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.log().contains("limit of 4194304 bytes"), "{}", server.log());
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

/// A query parameter's value, form-encoded.
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Item 2: queries deep enough to overflow the stack are answered 400 `bad_data`
/// naming the limit, by any viewer, and the server keeps answering; a 64 KB URL and
/// a 64 KB form body are accepted, as Prometheus accepts them.
#[test]
fn deep_promql_and_logql_are_refused_and_the_server_stays_up() {
    let server = Server::start(Backend::Sqlite);
    let (status, viewer) =
        server.api("POST", "/api/v1/tokens", Some(serde_json::json!({"name": "v", "role": "viewer"})));
    assert_eq!(status, 201, "{viewer}");
    let viewer = viewer["token"].as_str().unwrap().to_string();
    let form = |path: &str, query: &str| {
        server.post_raw(
            path,
            &[("authorization", &format!("Bearer {viewer}")), ("content-type", "application/x-www-form-urlencoded")],
            format!("query={}", encode(query)).into_bytes(),
        )
    };
    let deep = [
        ("/api/v1/query", vec!["1"; 3000].join("+")),
        ("/api/v1/query", format!("{}vector(1){}", "abs(".repeat(10_000), ")".repeat(10_000))),
        ("/loki/api/v1/query", format!("{}count_over_time({{a=\"b\"}}[1m]){}", "(".repeat(5000), ")".repeat(5000))),
        ("/loki/api/v1/query", vec!["count_over_time({a=\"b\"}[1m])"; 5000].join("+")),
    ];
    for (path, query) in &deep {
        // Short ones in the URL; 10,000 nested calls do not fit in one, so in a form body.
        let (status, answer) = if query.len() < 8192 {
            server.api_as(&viewer, "GET", &format!("{path}?query={}", encode(query)), None)
        } else if path.starts_with("/api/v1") {
            form(path, query)
        } else {
            continue;
        };
        let shown: String = answer.to_string().chars().take(300).collect();
        assert_eq!(status, 400, "{path}: {shown}");
        assert!(shown.contains("1000"), "the answer names the limit: {shown}");
        if path.starts_with("/api/v1") {
            assert_eq!(answer["status"], "error");
            assert_eq!(answer["errorType"], "bad_data");
        }
    }
    assert_eq!(server.api("GET", "/healthz", None).0, 200, "{}", server.log());

    // 64 KB in the URL and in a form body.
    let long = format!("vector(1) + count({{__name__=~\"{}\"}}) or vector(1)", "a".repeat(60 * 1024));
    let url = format!("/api/v1/query?query={}", encode(&long));
    assert!(url.len() > 60 * 1024, "{}", url.len());
    let (status, answer) = server.api_as(&viewer, "GET", &url, None);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = form("/api/v1/query", &long);
    assert_eq!(status, 200, "{answer}");
}

/// Item 3: time bounds whose difference overflows are refused with a 400 instead
/// of wrapping past the point limit (Loki) or into a wrong single point (Prometheus).
#[test]
fn query_range_with_overflowing_bounds_is_refused() {
    let server = Server::start(Backend::Sqlite);
    let loki = "/loki/api/v1/query_range?start=-9000000000000000000&end=1000000000000000000&step=1&query=";
    for query in ["count_over_time({a=\"b\"}[1m])", "{a=\"b\"}"] {
        let (status, answer) = server.api("GET", &format!("{loki}{}", encode(query)), None);
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains("longer range than a query may span"), "{answer}");
    }
    let prom = "/api/v1/query_range?query=vector(1)&start=-9e15&end=1e15&step=1";
    let (status, answer) = server.api("GET", prom, None);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errorType"], "bad_data");
    assert!(answer["error"].as_str().unwrap().contains("\"start\""), "{answer}");
    assert_eq!(server.api("GET", "/healthz", None).0, 200);
}

/// Item 2: `--query.max-samples` and `--query.timeout`, answered as Prometheus does
/// (422 `execution` and 503 `timeout`, with its messages).
#[test]
fn query_limits_answer_with_prometheus_errors() {
    let mut server = Server::start_with(Backend::Sqlite, &["--query.max-samples", "0"]);
    let (status, answer) = server.api("GET", "/api/v1/query?query=vector(1)", None);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["errorType"], "execution");
    assert_eq!(answer["error"], "query processing would load too many samples into memory in query execution");
    server.restart_with(&["--query.timeout", "0s"]);
    let (status, answer) = server.api("GET", "/api/v1/query_range?query=vector(1)&start=0&end=600&step=15", None);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["errorType"], "timeout");
    assert_eq!(answer["error"], "query timed out in expression evaluation");
}

/// Item 7: an `expires_in` beyond the documented maximum (ten years) is refused with
/// a 400 naming it, instead of an empty reply and a token list that panics ever after.
#[test]
fn token_expiry_beyond_the_maximum_is_refused_and_tokens_still_list() {
    let mut server = Server::start(Backend::Sqlite);
    for too_long in ["10000000000y", "300000000y", "3651d"] {
        let body = serde_json::json!({"role": "viewer", "expires_in": too_long});
        let (status, answer) = server.api("POST", "/api/v1/tokens", Some(body));
        assert_eq!(status, 400, "{too_long}: {answer}");
        assert!(answer.to_string().contains("maximum of 3650d"), "{answer}");
    }
    let (status, answer) =
        server.api("POST", "/api/v1/tokens", Some(serde_json::json!({"role": "viewer", "expires_in": "3650d"})));
    assert_eq!(status, 201, "{answer}");
    let year = answer["expires_at"].as_str().unwrap()[..4].parse::<i32>().unwrap();
    assert!((2030..2050).contains(&year), "{answer}");
    server.restart();
    let (status, tokens) = server.api("GET", "/api/v1/tokens", None);
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens.as_array().unwrap().iter().any(|t| t["expires_at"].is_string()));
}

/// Items 5 and 15: secrets and variables over 48 KiB are refused with 413 naming the
/// limit; the audit log records a variable's size and digest, never its value.
#[test]
fn secret_and_variable_sizes_are_limited_and_audit_keeps_no_values() {
    let server = Server::start(Backend::Sqlite);
    let repo = Repo::new(&[(".github/workflows/ok.yml", GOOD)]);
    server.add_project("sizes", repo.path());
    let at_limit = "s".repeat(49_152);
    let over = "s".repeat(49_153);
    for kind in ["secrets", "variables"] {
        let path = format!("/api/v1/projects/sizes/{kind}/BIG");
        let (status, answer) = server.api("PUT", &path, Some(serde_json::json!({"value": over})));
        assert_eq!(status, 413, "{kind}: {answer}");
        assert!(answer.to_string().contains("limit of 49152 bytes"), "{answer}");
        assert_eq!(server.api("PUT", &path, Some(serde_json::json!({"value": at_limit}))).0, 204, "{kind}");
    }
    let (status, audit) = server.api("GET", "/api/v1/audit", None);
    assert_eq!(status, 200, "{audit}");
    let text = audit.to_string();
    assert!(!text.contains("ssssssssssssssss"), "a value reached the audit log");
    assert!(text.contains("49152") && text.contains("sha256"), "size and digest are recorded");
}

fn logs(server: &Server, run: i64) -> String {
    String::from_utf8_lossy(&server.cli(&["logs", &run.to_string()]).stdout).to_string()
}

/// Item 8: caches are namespaced by project id. Project `evil` at `…/evil/x/repo-b`
/// used to restore what project `projb` at `…/x/repo-b` saved.
#[test]
fn caches_are_namespaced_by_project_not_by_path() {
    let server = Server::start(Backend::Sqlite);
    let save = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: mkdir -p c && echo from-projb > c/f\n      - uses: actions/cache/save@v4\n        with:\n          path: c\n          key: shared-key\n";
    let restore = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/cache/restore@v4\n        id: r\n        with:\n          path: c\n          key: shared-key\n      - run: echo \"hit=${{ steps.r.outputs.cache-hit }}\"; cat c/f 2>/dev/null || echo nothing-restored\n";
    let projb = Repo::at("x/repo-b", &[(".github/workflows/save.yml", save)]);
    let added = server.add_project("projb", projb.path());
    let run = server.wait_run(added["runs"][0]["id"].as_i64().unwrap(), "completed");
    assert_eq!(run["conclusion"], "success", "{run}");
    let evil = Repo::at("evil/x/repo-b", &[(".github/workflows/restore.yml", restore)]);
    let added = server.add_project("evil", evil.path());
    let id = added["runs"][0]["id"].as_i64().unwrap();
    assert_eq!(server.wait_run(id, "completed")["conclusion"], "success");
    let log = logs(&server, id);
    assert!(log.contains("nothing-restored"), "{log}");
    assert!(!log.contains("from-projb"), "another project's cache was restored:\n{log}");
}

/// Item 5b: a pull request whose head repository is not its base (a fork) runs
/// without the project's secrets and cannot write its caches; one from the same
/// repository has both.
#[test]
fn pull_requests_from_forks_get_no_secrets_and_write_no_caches() {
    let server = Server::start_with(Backend::Sqlite, &["--poll-interval", "1h"]);
    let wf = "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"secret=[${{ secrets.DEPLOY_KEY }}]\"; mkdir -p c; echo x > c/f\n      - uses: actions/cache/save@v4\n        with:\n          path: c\n          key: pr-key-${{ github.event.number }}\n";
    let repo = Repo::new(&[(".github/workflows/pr.yml", wf)]);
    let secret = "a-webhook-secret-of-some-length";
    let body =
        serde_json::json!({"name": "forked", "repo": repo.path().display().to_string(), "webhook_secret": secret});
    assert_eq!(server.api("POST", "/api/v1/projects", Some(body)).0, 201);
    let put = server.api(
        "PUT",
        "/api/v1/projects/forked/secrets/DEPLOY_KEY",
        Some(serde_json::json!({"value": "do-not-leak"})),
    );
    assert_eq!(put.0, 204);
    let head = repo.git(&["rev-parse", "HEAD"]);
    let pull_request = |number: u64, head_repo: &str| {
        let pr = serde_json::json!({"action": "opened", "number": number, "sender": {"login": "stranger"},
            "pull_request": {
                "head": {"sha": head, "ref": "topic", "repo": {"full_name": head_repo, "fork": head_repo != "acme/app"}},
                "base": {"ref": "main", "sha": head, "repo": {"full_name": "acme/app"}}}});
        let body = serde_json::to_vec(&pr).unwrap();
        let signature = crate::webhooks::sign(secret, &body);
        let delivery = format!("delivery-{number}");
        let (status, answer) = server.post_raw(
            "/api/v1/hooks/github/forked",
            &[
                ("X-GitHub-Event", "pull_request"),
                ("X-Hub-Signature-256", &signature),
                ("X-GitHub-Delivery", &delivery),
            ],
            body,
        );
        assert_eq!(status, 202, "{answer}");
        let id = answer["runs"][0]["id"].as_i64().unwrap();
        assert_eq!(server.wait_run(id, "completed")["conclusion"], "success");
        logs(&server, id)
    };
    let fork = pull_request(1, "stranger/app");
    assert!(fork.contains("secret=[]"), "{fork}");
    assert!(fork.contains("Cache not saved"), "{fork}");
    let same = pull_request(2, "acme/app");
    assert!(same.contains("secret=[***]"), "{same}");
    assert!(!same.contains("Cache not saved"), "{same}");
}

/// Item 16: UI answers carry a Content-Security-Policy that forbids framing and
/// inline script, and `X-Frame-Options: DENY`.
#[test]
fn ui_answers_forbid_framing_and_inline_script() {
    let server = Server::start(Backend::Sqlite);
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/ui/login", "/ui/runs", "/ui/static/app.js"] {
        let response = client.get(format!("{}{path}", server.url)).send().unwrap();
        let headers = response.headers();
        let csp = headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp:?}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers.get("x-frame-options").map(|v| v.as_bytes()), Some(&b"DENY"[..]), "{path}");
    }
}

const SERVICE: &str = "services:
  web:
    artifact: web
    run: python3 upstream.py {port}
";

/// A signed GitHub push delivery.
fn push(server: &Server, secret: &str, delivery: &str, before: &str, after: &str) -> (u16, serde_json::Value) {
    let body = serde_json::to_vec(&serde_json::json!({"ref": "refs/heads/main", "before": before, "after": after,
        "sender": {"login": "octocat"}, "commits": [{"id": after, "added": [], "removed": [], "modified": ["app/upstream.py"]}]}))
    .unwrap();
    let signature = crate::webhooks::sign(secret, &body);
    server.post_raw(
        "/api/v1/hooks/github/shop",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &signature), ("X-GitHub-Delivery", delivery)],
        body,
    )
}

/// Item 10: a replayed delivery (same `X-GitHub-Delivery`) starts nothing, and a
/// correctly signed push of a commit older than the newest release runs but makes
/// no release (an audit entry says why).
#[test]
fn replayed_deliveries_and_older_commits_make_no_release() {
    for backend in crate::support::backends() {
        let server = Server::start_with(backend, &["--poll-interval", "1h"]);
        let repo = Repo::new(&[
            (".github/workflows/ci.yml", crate::deploy::WORKFLOW),
            ("mobius.yaml", SERVICE),
            ("app/upstream.py", "print('v1')\n"),
        ]);
        let first = repo.git(&["rev-parse", "HEAD"]);
        let secret = "a-webhook-secret-of-some-length";
        let body =
            serde_json::json!({"name": "shop", "repo": repo.path().display().to_string(), "webhook_secret": secret});
        let (status, added) = server.api("POST", "/api/v1/projects", Some(body));
        assert_eq!(status, 201, "{added}");
        server.wait_run(added["runs"][0]["id"].as_i64().unwrap(), "completed");
        // An unreleased commit between the two releases (its artifact differs from both,
        // so only its age can keep it from releasing).
        let middle = repo.commit(&[("app/upstream.py", "print('v1.5')\n")], "v1.5");
        let second = repo.commit(&[("app/upstream.py", "print('v2')\n")], "v2");
        let (status, answer) = push(&server, secret, "delivery-v2", &first, &second);
        assert_eq!(status, 202, "{answer}");
        server.wait_run(answer["runs"][0]["id"].as_i64().unwrap(), "completed");
        let releases = || server.api("GET", "/api/v1/releases?project=shop", None).1.as_array().unwrap().clone();
        // Releases are made after the run's conclusion is recorded (its mobius.yaml check first).
        let deadline = Instant::now() + Duration::from_secs(10);
        while releases().len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(releases().len(), 2, "{:?}", releases());

        // The same delivery again: nothing.
        let (status, answer) = push(&server, secret, "delivery-v2", &first, &second);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["runs"].as_array().unwrap().len(), 0, "{answer}");

        // An older commit, signed, under a new delivery id: it runs, but releases nothing.
        let (status, answer) = push(&server, secret, "delivery-old", &second, &middle);
        assert_eq!(status, 202, "{answer}");
        let run = server.wait_run(answer["runs"][0]["id"].as_i64().unwrap(), "completed");
        assert_eq!(run["conclusion"], "success", "{run}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let audit = loop {
            let (_, audit) = server.api("GET", "/api/v1/audit", None);
            if audit.to_string().contains("release.skip") || Instant::now() > deadline {
                break audit;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(audit.to_string().contains("release.skip"), "{audit}");
        let all = releases();
        assert_eq!(all.len(), 2, "no release of the older commit: {all:?}");
        assert!(all.iter().all(|r| r["run_id"] != run["id"]), "{all:?}");

        // A newer push, then a replay of the older delivery: the ref moved on, so only
        // the delivery id tells it is a replay.
        let third = repo.commit(&[("app/upstream.py", "print('v3')\n")], "v3");
        let (status, answer) = push(&server, secret, "delivery-v3", &second, &third);
        assert_eq!(status, 202, "{answer}");
        server.wait_run(answer["runs"][0]["id"].as_i64().unwrap(), "completed");
        let runs_before = server.api("GET", "/api/v1/runs?project=shop", None).1.as_array().unwrap().len();
        let (status, answer) = push(&server, secret, "delivery-old", &second, &middle);
        assert_eq!((status, answer["runs"].as_array().map(Vec::len)), (200, Some(0)), "{answer}");
        let runs_after = server.api("GET", "/api/v1/runs?project=shop", None).1.as_array().unwrap().len();
        assert_eq!(runs_before, runs_after);
    }
}

/// Item 14: GitHub's form content type is accepted; a push with `before == after`
/// runs; an unsigned or wrongly signed request to an unknown project's hook answers
/// exactly as a known project's does.
#[test]
fn webhook_form_deliveries_and_no_project_name_oracle() {
    let server = Server::start_with(Backend::Sqlite, &["--poll-interval", "1h"]);
    let repo = Repo::new(&[(".github/workflows/ok.yml", GOOD)]);
    let secret = "a-webhook-secret-of-some-length";
    let body = serde_json::json!({"name": "shop", "repo": repo.path().display().to_string(), "webhook_secret": secret});
    assert_eq!(server.api("POST", "/api/v1/projects", Some(body)).0, 201);
    server.wait_runs("shop", 1);
    let head = repo.commit(&[("x.txt", "x\n")], "x");
    let json =
        serde_json::json!({"ref": "refs/heads/main", "before": head, "after": head, "sender": {"login": "octocat"}});
    let form = format!("payload={}", encode(&json.to_string())).into_bytes();
    let signature = crate::webhooks::sign(secret, &form);
    let (status, answer) = server.post_raw(
        "/api/v1/hooks/github/shop",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &signature),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form,
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["runs"].as_array().unwrap().len(), 1, "{answer}");

    for headers in
        [vec![("X-GitHub-Event", "push")], vec![("X-GitHub-Event", "push"), ("X-Hub-Signature-256", "sha256=00")]]
    {
        let known = server.post_raw("/api/v1/hooks/github/shop", &headers, b"{}".to_vec());
        let unknown = server.post_raw("/api/v1/hooks/github/no-such-project", &headers, b"{}".to_vec());
        assert_eq!(known, unknown, "{headers:?}");
        assert_eq!(known.0, 401);
    }
}

/// Item 13: refused requests are in the audit log with actor, route and reason:
/// no token, a bad token, a role too low, another project's run, a failed sign-in
/// and a bad webhook signature.
#[test]
fn refused_requests_are_audited() {
    let server = Server::start(Backend::Sqlite);
    let repo = Repo::new(&[(".github/workflows/ok.yml", GOOD)]);
    let added = server.add_project("shop", repo.path());
    let other = Repo::new(&[(".github/workflows/ok.yml", GOOD)]);
    server.add_project("other", other.path());
    let run = added["runs"][0]["id"].as_i64().unwrap();
    let (_, viewer) = server.api(
        "POST",
        "/api/v1/tokens",
        Some(serde_json::json!({"name": "scoped", "role": "viewer", "project": "other"})),
    );
    let viewer = viewer["token"].as_str().unwrap();
    assert_eq!(server.api_as("", "GET", "/api/v1/projects", None).0, 401);
    assert_eq!(server.api_as("not-a-token", "GET", "/api/v1/projects", None).0, 401);
    assert_eq!(server.api_as(viewer, "POST", "/api/v1/tokens", Some(serde_json::json!({"role": "admin"}))).0, 403);
    assert_eq!(server.api_as(viewer, "GET", &format!("/api/v1/runs/{run}"), None).0, 404);
    let login =
        server.post_raw("/ui/login", &[("content-type", "application/x-www-form-urlencoded")], b"token=wrong".to_vec());
    assert_eq!(login.0, 401);
    let hook = server.post_raw("/api/v1/hooks/github/shop", &[("X-GitHub-Event", "push")], b"{}".to_vec());
    assert_eq!(hook.0, 401);

    let (_, audit) = server.api("GET", "/api/v1/audit?limit=100", None);
    let entries = audit.as_array().unwrap();
    let find =
        |action: &str, needle: &str| entries.iter().any(|e| e["action"] == action && e.to_string().contains(needle));
    assert!(find("request.denied", "missing bearer token"), "{audit}");
    assert!(find("request.denied", "invalid, expired or revoked token"), "{audit}");
    assert!(find("request.denied", "POST /api/v1/tokens"), "{audit}");
    assert!(find("request.denied", &format!("GET /api/v1/runs/{run}")), "{audit}");
    assert!(entries.iter().any(|e| e["action"] == "request.denied" && e["actor"].as_str().unwrap().contains("scoped")));
    assert!(find("ui.sign_in_failed", "POST /ui/login"), "{audit}");
    assert!(find("webhook.refused", "missing X-Hub-Signature-256"), "{audit}");
}

/// Item 12: `kill -9` with one run executing and others waiting for the only job
/// slot: the executing one fails "server restarted", the waiting ones stay queued
/// and run to success after the restart.
#[test]
fn queued_runs_survive_a_crash_and_run_after_the_restart() {
    for backend in crate::support::backends() {
        let mut server = Server::start_with(backend, &["--max-parallel-jobs", "1", "--poll-interval", "1h"]);
        let wf = "on:\n  workflow_dispatch:\n    inputs:\n      slow: { type: boolean, default: false }\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: if ${{ inputs.slow }}; then sleep 30; fi\n";
        let repo = Repo::new(&[(".github/workflows/d.yml", wf)]);
        server.add_project("q", repo.path());
        let dispatch_with = |server: &Server, slow: bool| {
            let body = serde_json::json!({"inputs": {"slow": slow}});
            let (status, answer) = server.api("POST", "/api/v1/projects/q/workflows/d.yml/dispatches", Some(body));
            assert_eq!(status, 201, "{answer}");
            answer["runs"][0]["id"].as_i64().unwrap()
        };
        let dispatch = |server: &Server| dispatch_with(server, false);
        let running = dispatch_with(&server, true);
        server.wait_run(running, "in_progress");
        // Wait for the first job to hold the slot, then queue three more behind it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.run(running)["jobs"].as_array().is_none_or(Vec::is_empty) {
            assert!(Instant::now() < deadline, "the first run never started its job");
            std::thread::sleep(Duration::from_millis(50));
        }
        let waiting: Vec<i64> = (0..3).map(|_| dispatch(&server)).collect();
        std::thread::sleep(Duration::from_millis(300));
        for id in &waiting {
            assert!(server.run(*id)["jobs"].as_array().is_none_or(Vec::is_empty), "run {id} started a job");
        }
        server.restart();
        let failed = server.wait_run(running, "completed");
        assert_eq!(failed["conclusion"], "failure");
        assert_eq!(failed["reason"], "server restarted");
        for id in waiting {
            let run = server.wait_run(id, "completed");
            assert_eq!(run["conclusion"], "success", "run {id} after the restart: {run}");
        }
    }
}

/// Item 9: a secret written into a JUnit report (test name, class, message) and an
/// annotation's title is masked before it is stored: not in the API, and not in the
/// database files.
#[test]
fn secrets_in_test_reports_and_annotations_are_masked_before_storing() {
    let server = Server::start(Backend::Sqlite);
    let wf = r#"on: workflow_dispatch
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
      - run: |
          cat > TEST-leak.xml <<XML
          <testsuite name="s"><testcase classname="c-${{ secrets.TOKEN }}" name="n-${{ secrets.TOKEN }}"><failure message="m-${{ secrets.TOKEN }}">trace ${{ secrets.TOKEN }}</failure></testcase></testsuite>
          XML
          echo "::warning title=t-${{ secrets.TOKEN }}::w-${{ secrets.TOKEN }}"
"#;
    let repo = Repo::new(&[(".github/workflows/t.yml", wf)]);
    server.add_project("leaky", repo.path());
    let secret = "zq-report-secret-8841";
    let put = server.api("PUT", "/api/v1/projects/leaky/secrets/TOKEN", Some(serde_json::json!({"value": secret})));
    assert_eq!(put.0, 204);
    let (status, answer) =
        server.api("POST", "/api/v1/projects/leaky/workflows/t.yml/dispatches", Some(serde_json::json!({})));
    assert_eq!(status, 201, "{answer}");
    let id = answer["runs"][0]["id"].as_i64().unwrap();
    server.wait_run(id, "completed");
    let (status, tests) = server.api("GET", &format!("/api/v1/runs/{id}/tests"), None);
    assert_eq!(status, 200);
    let text = tests.to_string();
    assert!(text.contains("n-***") && text.contains("m-***"), "{text}");
    assert!(!text.contains(secret), "{text}");
    let run = server.run(id).to_string();
    assert!(!run.contains(secret), "{run}");
    for file in ["mobius.db", "mobius.db-wal"] {
        let bytes = std::fs::read(server.data().join(file)).unwrap_or_default();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{file} holds the secret");
    }
}

/// Item 4: a job of project A cannot read the server's keys, token or database,
/// a running job of project B's workspace, the server's environment, or the
/// server's process through `/proc`; it runs as the job user, not as the server's.
#[test]
fn a_hostile_job_reaches_nothing_of_the_server_or_other_projects() {
    let server = Server::start(Backend::Sqlite);
    let data = server.data().canonicalize().unwrap();
    // Project B: a job that keeps a secret file in its workspace while it runs.
    let b = "on: push\njobs:\n  b:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo b-tmp > /tmp/b-tmp-file && echo b-private-content > secret.txt && sleep 20\n";
    let repo_b = Repo::new(&[(".github/workflows/b.yml", b)]);
    let added = server.add_project("projb", repo_b.path());
    let run_b = added["runs"][0]["id"].as_i64().unwrap();
    let workspace_b = data.join(format!("state/runs/{run_b}/jobs/001-b/workspace/secret.txt"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !workspace_b.exists() {
        assert!(Instant::now() < deadline, "project B's job never wrote its file\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = server.pid();
    let targets = [
        data.join("master.key"),
        data.join("admin-token"),
        data.join("mobius.db"),
        workspace_b.clone(),
        format!("/proc/{pid}/environ").into(),
        format!("/proc/{pid}/root{}/master.key", data.display()).into(),
        "/tmp/b-tmp-file".into(),
    ];
    let mut script = String::from("echo own > own.txt\n");
    for target in std::iter::once(std::path::PathBuf::from("own.txt")).chain(targets.iter().cloned()) {
        let t = target.display();
        script
            .push_str(&format!("if cat '{t}' >/dev/null 2>&1; then echo \"READ {t}\"; else echo \"DENIED {t}\"; fi\n"));
    }
    script.push_str(
        "if env | grep -q '^MOBIUS_'; then echo LEAKED-ENV; env | grep '^MOBIUS_'; else echo clean-env; fi\n",
    );
    script.push_str("echo \"user=$(id -un) home=$HOME\"\n");
    let indented: String = script.lines().map(|l| format!("          {l}\n")).collect();
    let a = format!("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n{indented}");
    let repo_a = Repo::new(&[(".github/workflows/a.yml", &a)]);
    let added = server.add_project("proja", repo_a.path());
    let run_a = added["runs"][0]["id"].as_i64().unwrap();
    let run = server.wait_run(run_a, "completed");
    let log = logs(&server, run_a);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert!(log.contains("READ own.txt"), "the job reads its own workspace:\n{log}");
    for target in &targets {
        assert!(log.contains(&format!("DENIED {}", target.display())), "{} was readable:\n{log}", target.display());
    }
    assert!(!log.contains("b-private-content"));
    assert!(log.contains("clean-env"), "{log}");
    if nix::unistd::Uid::effective().is_root() {
        // A root server switches to the job user; an ordinary one maps itself to root
        // in the job's own user namespace, which is that ordinary user outside.
        assert!(log.contains("user=mobius-job"), "{log}");
    }
    assert_eq!(server.api("POST", &format!("/api/v1/runs/{run_b}/cancel"), None).0, 202);
}

/// Issue 18: a job of the server never gets the Docker socket (root on the host).
#[test]
fn a_job_of_the_server_never_reaches_the_docker_socket() {
    use std::os::unix::fs::FileTypeExt;
    let socket = std::path::Path::new("/var/run/docker.sock");
    if !std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
        assert!(std::env::var("CI").is_err(), "the Docker Engine's socket is required under CI");
        eprintln!("skipped: no Docker socket on this host");
        return;
    }
    let server = Server::start(Backend::Sqlite);
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          for s in /var/run/docker.sock /run/docker.sock; do if [ -S $s ]; then echo \"SOCKET $s\"; else echo \"no socket at $s\"; fi; done\n";
    let repo = Repo::new(&[(".github/workflows/a.yml", wf)]);
    let added = server.add_project("sock", repo.path());
    let id = added["runs"][0]["id"].as_i64().unwrap();
    let run = server.wait_run(id, "completed");
    let log = logs(&server, id);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert!(log.contains("no socket at /var/run/docker.sock"), "{log}");
    assert!(!log.contains("SOCKET "), "{log}");
}

/// Issue 18: a project set to `executor: docker` runs its jobs in its image, with
/// GitHub's paths; `docker` without an image is refused.
#[test]
fn a_project_with_the_docker_executor_runs_its_jobs_in_its_image() {
    if !crate::support::docker_with_test_images() {
        return;
    }
    let server = Server::start(Backend::Sqlite);
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"ws=$GITHUB_WORKSPACE sh=$(readlink /bin/sh)\"\n";
    let repo = Repo::new(&[(".github/workflows/a.yml", wf)]);
    let refused =
        serde_json::json!({"name": "boxed", "repo": repo.path().display().to_string(), "executor": {"kind": "docker"}});
    let (status, answer) = server.api("POST", "/api/v1/projects", Some(refused));
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("executor.image"), "{answer}");
    let body = serde_json::json!({
        "name": "boxed",
        "repo": repo.path().display().to_string(),
        "executor": {"kind": "docker", "image": "mobius-test/busybox:1"},
    });
    let (status, added) = server.api("POST", "/api/v1/projects", Some(body));
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["project"]["executor"]["kind"], "docker", "{added}");
    let id = added["runs"][0]["id"].as_i64().unwrap();
    let run = server.wait_run(id, "completed");
    let log = logs(&server, id);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert!(log.contains("ws=/__w/"), "the job ran in the image with GitHub's paths:\n{log}");
    assert!(log.contains("sh=/bin/busybox"), "the image's shell, not the host's:\n{log}");
}

/// Item 4: the data directory is the server's alone (0700), and its database 0600.
#[test]
fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start(Backend::Sqlite);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.data()), 0o700);
    for file in ["mobius.db", "master.key", "admin-token"] {
        assert_eq!(mode(&server.data().join(file)), 0o600, "{file}");
    }
    // A run's logs are blobs: each file the server's alone.
    let repo = Repo::new(&[(".github/workflows/ok.yml", GOOD)]);
    let added = server.add_project("private", repo.path());
    server.wait_run(added["runs"][0]["id"].as_i64().unwrap(), "completed");
    let mut pending = vec![server.data().join("blobs/sha256")];
    let mut blobs = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                blobs += 1;
                assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
            }
        }
    }
    assert!(blobs > 0, "the run stored no blob");
}

/// Item 4: vendored actions (`--action-dir`) stay readable inside the sandbox, even
/// under `/tmp`, which a job sees as its own.
#[test]
fn vendored_actions_run_inside_the_sandbox() {
    if std::process::Command::new("node").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "node is required under CI");
        eprintln!("skipped: node is not installed");
        return;
    }
    let actions = tempfile::tempdir().unwrap();
    let action = actions.path().join("acme/hello@v1");
    std::fs::create_dir_all(&action).unwrap();
    // A JavaScript action: node reads its file from the action directory itself.
    std::fs::write(action.join("action.yml"), "name: hello\nruns:\n  using: node20\n  main: index.js\n").unwrap();
    std::fs::write(action.join("index.js"), "console.log('vendored-says-hi');\n").unwrap();
    let server = Server::start_with(Backend::Sqlite, &["--action-dir", actions.path().to_str().unwrap()]);
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: acme/hello@v1\n";
    let repo = Repo::new(&[(".github/workflows/a.yml", wf)]);
    let added = server.add_project("vendored", repo.path());
    let id = added["runs"][0]["id"].as_i64().unwrap();
    let run = server.wait_run(id, "completed");
    let log = logs(&server, id);
    assert_eq!(run["conclusion"], "success", "{run}\n{log}");
    assert!(log.contains("vendored-says-hi"), "{log}");
}
