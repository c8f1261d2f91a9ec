//! The first hour of a new team (issue 16): releases per content, `mobius.yaml`
//! diagnostics on the run, addresses owned by one project, one server per data
//! directory, silences and incidents, alerts that hold rollouts, and the CLI's edges.

use crate::deploy::{cli_ok, free_port, get, python_available, service_repo, wait_release};
use crate::support::{backends, Backend, Repo, Server};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One protected production environment that every new release deploys to by itself.
fn auto_deployed(port: u16) -> String {
    listening("web", port)
        .replace("    strategy: blue-green", "    auto_deploy: true\n    protected: true\n    strategy: blue-green")
}

/// A workflow of one job `a` running one step on push.
fn one_step(run: &str) -> String {
    format!("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: {run}\n")
}

/// A server (SQLite) with project `shop` running `workflow` once, to its end: the server and the run's id.
fn finished_run(workflow: &str) -> (Server, i64) {
    let repo = Repo::new(&[(".github/workflows/ci.yml", workflow)]);
    let server = Server::start(crate::support::Backend::Sqlite);
    server.add_project("shop", repo.path());
    let run = server.wait_runs("shop", 1)[0]["id"].as_i64().unwrap();
    server.wait_run(run, "completed");
    (server, run)
}

fn audit_actions(server: &Server, action: &str) -> Vec<Value> {
    let (_, audit) = server.api("GET", "/api/v1/audit", None);
    audit.as_array().unwrap().iter().filter(|e| e["action"] == action).cloned().collect()
}

/// Project `shop`'s first run once it has completed and the server has written its
/// checks (right after the conclusion), or after 10 s without them.
fn first_run_with_its_checks(server: &Server) -> Value {
    let id = server.wait_runs("shop", 1)[0]["id"].as_i64().unwrap();
    server.wait_run(id, "completed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = server.run(id);
        if !run["checks"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            return run;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
        let repo = service_repo(&auto_deployed(port));
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
        let page = server.page(&format!("/ui/rollouts/{id}"));
        assert!(page.contains("web v2 is newer and waits"), "{page}");
    }
}

/// Item 2: a broken `mobius.yaml` is said on the run (a failed check with annotations
/// at file:line:column, in the API, `mobius show` and the UI) and in the audit log,
/// while the run's conclusion stays its jobs'; steps' annotations are kept too.
#[test]
fn a_broken_mobius_yaml_is_a_failed_check_on_a_green_run() {
    for backend in backends() {
        let workflow = "on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo '::warning file=app/main.py,line=3,col=5::unused import'
";
        let broken = "services:\n  web:\n    artifact: web\n    run: ./serve\n    instances: lots\n";
        let repo = Repo::new(&[(".github/workflows/ci.yml", workflow), ("mobius.yaml", broken)]);
        let server = Server::start(backend);
        server.add_project("shop", repo.path());
        let run = first_run_with_its_checks(&server);
        let id = run["id"].as_i64().unwrap();
        assert_eq!(run["conclusion"], "success", "the run's conclusion is its jobs': {run}");
        assert_eq!(run["checks"][0]["name"], "mobius.yaml", "{run}");
        assert_eq!(run["checks"][0]["conclusion"], "failure", "{run}");
        let annotations = run["annotations"].as_array().unwrap();
        let check = annotations.iter().find(|a| a["source"] == "mobius.yaml").expect("the check's annotation");
        assert_eq!((check["file"].as_str(), check["line"].as_u64()), (Some("mobius.yaml"), Some(5)), "{run}");
        assert!(check["col"].as_u64().is_some_and(|c| c > 1), "{run}");
        assert!(check["message"].as_str().unwrap().contains("instances"), "{run}");
        let step = annotations.iter().find(|a| a["job"] == "build").expect("the step's annotation");
        assert_eq!(step["level"], "warning", "{run}");
        assert_eq!(step["line"], 3, "{run}");

        let out = server.cli(&["show", &id.to_string()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("✗ check mobius.yaml"), "{text}");
        assert!(text.contains("error [mobius.yaml] mobius.yaml:5:"), "{text}");
        assert!(text.contains("warning [build] app/main.py:3:5: unused import"), "{text}");
        let page = server.page(&format!("/ui/runs/{id}"));
        assert!(page.contains("<strong>mobius.yaml</strong>") && page.contains("<code>mobius.yaml:5:"), "{page}");
        let audit = audit_actions(&server, "mobius_yaml.invalid");
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert!(audit[0]["detail"]["diagnostics"][0].as_str().unwrap().starts_with("mobius.yaml:5:"), "{audit:?}");
        let (_, releases) = server.api("GET", "/api/v1/releases", None);
        assert_eq!(releases, serde_json::json!([]));
    }
}

/// Issue 17, item 8: `mobius.yaml` is one file read once, so a problem in its
/// `monitoring` section fails the run's `mobius.yaml` check at its line (nothing is
/// released from a file the monitor refuses), and the monitor audits it too.
#[test]
fn a_broken_monitoring_section_fails_the_mobius_yaml_check() {
    let workflow = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: 'true'\n";
    let file = "services:
  web: { artifact: web, run: './serve {port}' }
monitoring:
  rules:
    groups:
      - name: web
        rules: [ { alert: Down, expr: up == 0, for: soon } ]
";
    let repo = Repo::new(&[(".github/workflows/ci.yml", workflow), ("mobius.yaml", file)]);
    let server = Server::start(Backend::Sqlite);
    server.add_project("shop", repo.path());
    let run = first_run_with_its_checks(&server);
    assert_eq!(run["conclusion"], "success", "{run}");
    assert_eq!(run["checks"][0]["conclusion"], "failure", "a monitoring problem is a problem of the file: {run}");
    let annotations = run["annotations"].as_array().unwrap();
    let check = annotations.iter().find(|a| a["source"] == "mobius.yaml").expect("the check's annotation");
    assert_eq!(check["line"].as_u64(), Some(7), "{run}");
    assert!(check["message"].as_str().unwrap().contains("for"), "{run}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while audit_actions(&server, "monitoring.invalid").is_empty() {
        assert!(Instant::now() < deadline, "the monitor did not refuse the same file:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, releases) = server.api("GET", "/api/v1/releases", None);
    assert_eq!(releases, serde_json::json!([]));
}

/// One service in one unprotected environment, deployed by hand.
pub(crate) fn listening(service: &str, port: u16) -> String {
    format!(
        "services:
  {service}:
    artifact: web
    run: python3 upstream.py {{port}}
    health: {{ path: /healthz, interval: 200ms }}
    instances: 1
environments:
  production:
    listen: 127.0.0.1:{port}
    strategy: blue-green
"
    )
}

fn wait_release_of(server: &Server, project: &str, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, releases) = server.api("GET", &format!("/api/v1/releases?project={project}"), None);
        if releases.as_array().is_some_and(|a| a.iter().any(|r| r["version"] == version)) {
            return;
        }
        assert!(Instant::now() < deadline, "no release {version} of {project}: {releases}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Item 3: an address belongs to one project: a second one claiming it is refused when
/// it is added, when its `mobius.yaml` changes and when it deploys, naming both.
#[test]
fn two_projects_cannot_claim_one_address() {
    if !python_available() {
        return;
    }
    let (p, q) = (free_port(), free_port());
    let address = format!("127.0.0.1:{p}");
    let server = Server::start(crate::support::Backend::Sqlite);
    // billing: v1 listens at P, then v2 moves to Q (P is free again).
    let billing = service_repo(&listening("api", p));
    server.add_project("billing", billing.path());
    wait_release_of(&server, "billing", "v1");
    // (A release is its artifact: the app changes too, or v1 would be reused.)
    billing.commit(&[("mobius.yaml", &listening("api", q)), ("app/VERSION", "2")], "Move to Q");
    wait_release_of(&server, "billing", "v2");

    // shop takes P: nobody listens there or means to.
    let shop = service_repo(&listening("web", p));
    server.add_project("shop", shop.path());
    wait_release_of(&server, "shop", "v1");

    // Added: a third project on P is refused, naming both projects and the address.
    let copycat = Repo::new(&[("mobius.yaml", &listening("web", p))]);
    let body = serde_json::json!({"name": "copycat", "repo": copycat.path().display().to_string()});
    let (code, answer) = server.api("POST", "/api/v1/projects", Some(body));
    assert_eq!(code, 409, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default().to_string() + &answer.to_string();
    assert!(message.contains("`shop`") && message.contains("`copycat`") && message.contains(&address), "{answer}");
    let (_, projects) = server.api("GET", "/api/v1/projects", None);
    assert_eq!(projects.as_array().unwrap().len(), 2, "{projects}");
    assert!(!audit_actions(&server, "request.denied").is_empty(), "the refusal is audited");

    // Changed: billing moving back to P fails its mobius.yaml check and releases nothing.
    billing.commit(&[("mobius.yaml", &listening("api", p)), ("app/VERSION", "3")], "Back to P");
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let refused = audit_actions(&server, "mobius_yaml.refused");
        if !refused.is_empty() {
            break refused;
        }
        assert!(Instant::now() < deadline, "billing's change was not refused\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let run = server.run(refused[0]["detail"]["run"].as_i64().unwrap());
    assert_eq!(run["checks"][0]["conclusion"], "failure", "{run}");
    let annotation = &run["annotations"][0];
    assert_eq!((annotation["file"].as_str(), annotation["line"].as_u64()), (Some("mobius.yaml"), Some(9)), "{run}");
    assert!(annotation["message"].as_str().unwrap().contains("`shop`"), "{run}");
    let (_, releases) = server.api("GET", "/api/v1/releases?project=billing", None);
    assert_eq!(releases.as_array().unwrap().len(), 2, "{releases}");

    // Deployed: shop listens at P; billing's v1 (made when P was free) cannot go there.
    cli_ok(&server, &["deploy", "web", "--project", "shop", "--env", "production", "--wait"]);
    let out = server.cli(&["deploy", "api", "--project", "billing", "--env", "production", "--release", "v1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("`shop`") && stderr.contains("`billing`") && stderr.contains(&address), "{stderr}");
    let page = server.page("/ui/deploys");
    assert!(page.contains(&format!("<code>{address}</code>")), "{page}");
    let (_, places) = server.api("GET", "/api/v1/environments?project=shop", None);
    assert_eq!(places[0]["address"], address.as_str(), "{places}");
}

/// `mobius serve` with extra arguments, run to its end (or killed after 20 s).
fn serve_once(args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(crate::support::BIN)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// Item 4: one server per data directory (a `flock` the kernel drops with its holder,
/// never held by the agent or jobs), and one leader per PostgreSQL database.
#[test]
fn a_second_server_on_one_data_directory_or_database_is_refused() {
    for backend in backends() {
        let mut server = Server::start(backend.clone());
        let data = server.data();
        let (code, stderr) = serve_once(&["--data", data.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(&format!("PID {}", server.pid())), "{stderr}");

        // A job in progress when the server dies must not keep the lock.
        let repo = Repo::new(&[(".github/workflows/ci.yml", &one_step("sleep 30"))]);
        server.add_project("slow", repo.path());
        let run = server.wait_runs("slow", 1)[0]["id"].as_i64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.api("GET", &format!("/api/v1/runs/{run}/jobs"), None).1.as_array().is_none_or(|j| j.is_empty()) {
            assert!(Instant::now() < deadline, "the job never started\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        let started = Instant::now();
        server.restart(); // kill -9, then start at once
        assert!(started.elapsed() < Duration::from_secs(10), "restart took {:?}", started.elapsed());
        let (code, _) = server.api("GET", "/api/v1/projects", None);
        assert_eq!(code, 200);

        if let crate::support::Backend::Postgres(url) = &backend {
            // Another data directory on the same database: no second leader.
            let other = tempfile::tempdir().unwrap();
            let other_data = other.path().join("data");
            let (code, stderr) = serve_once(&["--data", other_data.to_str().unwrap(), "--database", url.as_str()]);
            assert_eq!(code, Some(1), "{stderr}");
            assert!(stderr.contains("leader lock") && stderr.contains("--replica"), "{stderr}");
            // As a replica it serves the API from the shared database.
            let mut replica = std::process::Command::new(crate::support::BIN)
                .arg("serve")
                .args(["--listen", "127.0.0.1:0", "--replica", "--database", url.as_str(), "--data"])
                .arg(&other_data)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = std::io::BufRead::lines(std::io::BufReader::new(replica.stdout.take().unwrap()));
            let address = lines
                .find_map(|l| l.ok().and_then(|l| l.strip_prefix("mobius: listening on ").map(str::to_string)))
                .expect("the replica starts");
            let projects = reqwest::blocking::Client::new()
                .get(format!("{address}/api/v1/projects"))
                .bearer_auth(&server.token)
                .send()
                .unwrap()
                .text()
                .unwrap();
            let _ = replica.kill();
            let _ = replica.wait();
            assert!(projects.contains("\"slow\""), "{projects}");
        }
    }
}

/// Item 6: an alert already firing for the service and environment holds the next
/// rollout (its name in the refusal); the first deploy to an empty environment is not
/// held, and once the alert resolves the rollout goes ahead.
#[test]
fn an_alert_firing_before_a_rollout_holds_it_but_not_the_first_deploy() {
    if !python_available() {
        return;
    }
    let port = free_port();
    let conf = tempfile::tempdir().unwrap();
    let alertmanager = conf.path().join("alertmanager.yml");
    std::fs::write(
        &alertmanager,
        "route:\n  receiver: team\n  group_wait: 100ms\nreceivers:\n  - name: team\n    webhook_configs: [{ url: 'http://127.0.0.1:9/' }]\n",
    )
    .unwrap();
    let server =
        Server::start_with(crate::support::Backend::Sqlite, &["--alertmanager-config", alertmanager.to_str().unwrap()]);
    let repo = service_repo(&listening("web", port));
    server.add_project("shop", repo.path());
    wait_release_of(&server, "shop", "v1");
    let alert = |ends: chrono::DateTime<chrono::Utc>| {
        let body = serde_json::json!([{
            "labels": {"alertname": "CheckoutErrors", "service": "web", "env": "production"},
            "endsAt": ends.to_rfc3339(),
        }]);
        let (code, answer) = server.api("POST", "/api/v2/alerts", Some(body));
        assert_eq!(code, 200, "{answer}");
    };
    alert(chrono::Utc::now() + chrono::Duration::hours(1));
    // Nothing to protect yet: the first deploy goes ahead.
    cli_ok(&server, &["deploy", "web", "--env", "production", "--wait"]);

    repo.commit(&[("app/VERSION", "2")], "Faster checkout");
    wait_release_of(&server, "shop", "v2");
    let out = server.cli(&["deploy", "web", "--env", "production"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a rollout started while an alert fired: {stderr}");
    assert!(stderr.contains("CheckoutErrors"), "{stderr}");
    assert_eq!(rollouts(&server).len(), 1, "{:?}", rollouts(&server));

    alert(chrono::Utc::now() - chrono::Duration::seconds(1));
    cli_ok(&server, &["deploy", "web", "--env", "production", "--wait"]);
    assert_eq!(crate::deploy::get(port).1, "v2");
}

/// Item 7: an input the workflow does not declare is refused with the declared names;
/// `ci` finds `ci.yml`, and a missing workflow names the files there are.
#[test]
fn dispatch_refuses_unknown_inputs_and_finds_the_workflow_without_its_extension() {
    let workflow = "on:
  workflow_dispatch:
    inputs:
      level: { type: choice, options: [quick, full], default: quick }
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo level=${{ inputs.level }}
";
    let repo = Repo::new(&[(".github/workflows/ci.yml", workflow), (".github/workflows/nightly.yaml", workflow)]);
    let server = Server::start(crate::support::Backend::Sqlite);
    server.add_project("shop", repo.path());
    let out = server.cli(&["dispatch", "shop", "ci.yml", "--input", "levle=full"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("'levle'") && stderr.contains("'level'"), "{stderr}");
    let (_, runs) = server.api("GET", "/api/v1/runs?project=shop", None);
    assert_eq!(runs, serde_json::json!([]), "a refused dispatch queued a run");

    let out = server.cli(&["dispatch", "shop", "ci", "--input", "level=full"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = &server.wait_runs("shop", 1)[0];
    assert_eq!(run["path"].as_str().or(run["workflow"].as_str()).map(|p| p.ends_with("ci.yml")), Some(true), "{run}");
    let out = server.cli(&["dispatch", "shop", "nightly"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = server.cli(&["dispatch", "shop", "release"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("ci.yml") && stderr.contains("nightly.yaml"), "{stderr}");
}

/// Item 8: `run_number` counts per workflow file, as on GitHub; a re-run keeps its
/// number and raises `run_attempt`.
#[test]
fn run_numbers_count_per_workflow() {
    for backend in backends() {
        let workflow = one_step("echo number=$GITHUB_RUN_NUMBER");
        let repo = Repo::new(&[(".github/workflows/ci.yml", &workflow), (".github/workflows/lint.yml", &workflow)]);
        let server = Server::start(backend);
        server.add_project("shop", repo.path());
        let runs = server.wait_runs("shop", 2);
        let numbers: Vec<i64> = runs.iter().map(|r| r["run_number"].as_i64().unwrap()).collect();
        assert_eq!(numbers, [1, 1], "{runs:?}");
        repo.commit(&[("README", "more")], "second");
        let runs = server.wait_runs("shop", 4);
        let mut numbers: Vec<(String, i64)> = runs
            .iter()
            .map(|r| (r["workflow"].as_str().unwrap().to_string(), r["run_number"].as_i64().unwrap()))
            .collect();
        numbers.sort();
        let expected: Vec<(String, i64)> = [("ci", 1), ("ci", 2), ("lint", 1), ("lint", 2)]
            .iter()
            .map(|(w, n)| (format!(".github/workflows/{w}.yml"), *n))
            .collect();
        assert_eq!(numbers, expected);
        let first = runs[0]["id"].as_i64().unwrap();
        server.wait_run(first, "completed");
        let (code, rerun) = server.api("POST", &format!("/api/v1/runs/{first}/rerun"), None);
        assert!(code == 200 || code == 201, "{rerun}");
        let rerun = &server.wait_runs("shop", 5)[4];
        assert_eq!((rerun["run_number"].as_i64(), rerun["run_attempt"].as_i64()), (Some(1), Some(2)), "{rerun}");
    }
}

/// Item 9: approving a rollout of an unprotected environment says it is not protected
/// (not that the caller wrote it); its page offers Promote, never Approve.
#[test]
fn approve_on_an_unprotected_environment_says_so_and_the_page_offers_no_approve() {
    if !python_available() {
        return;
    }
    let port = free_port();
    let config =
        listening("web", port).replace("strategy: blue-green", "strategy:\n      blue-green: { auto_promote: false }");
    let repo = service_repo(&config);
    let server = Server::start(crate::support::Backend::Sqlite);
    server.add_project("shop", repo.path());
    wait_release_of(&server, "shop", "v1");
    cli_ok(&server, &["deploy", "web", "--env", "production", "--wait"]);
    repo.commit(&[("app/VERSION", "2")], "v2");
    wait_release_of(&server, "shop", "v2");
    cli_ok(&server, &["deploy", "web", "--env", "production"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let paused = loop {
        if let Some(r) = rollouts(&server).into_iter().find(|r| r["phase"] == "paused") {
            break r;
        }
        assert!(Instant::now() < deadline, "no paused rollout: {:?}", rollouts(&server));
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = server.cli(&["approve", "web", "--env", "production"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("not protected") && !stderr.contains("someone else"), "{stderr}");
    let page = server.page(&format!("/ui/rollouts/{}", paused["id"]));
    assert!(page.contains(">Promote</button>") && !page.contains(">Approve</button>"), "{page}");
    cli_ok(&server, &["promote", "web", "--env", "production"]);
}

/// Item 10: a reader that goes away (`mobius runs | head`) ends every command that
/// prints lists or logs quietly, with the status of SIGPIPE, not a panic (101).
#[test]
fn commands_exit_quietly_when_their_reader_goes_away() {
    let (server, run) = finished_run(&one_step("seq 1 2000"));
    let run = run.to_string();
    let commands: [&[&str]; 8] = [
        &["runs"],
        &["show", &run],
        &["logs", &run],
        &["project", "list"],
        &["token", "list"],
        &["audit"],
        &["incidents"],
        &["query", "up"],
    ];
    for args in commands {
        let mut child = std::process::Command::new(crate::support::BIN)
            .args(args)
            .env("MOBIUS_SERVER", &server.url)
            .env("MOBIUS_TOKEN", &server.token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && out.status.code() != Some(101), "mobius {args:?}: {stderr}");
        assert!(matches!(out.status.code(), Some(141) | Some(0)), "mobius {args:?}: {:?} {stderr}", out.status);
    }
}

/// Item 11: "why did it fail?" — `mobius show` gives the failed step's exit code,
/// `runs` filters by conclusion, workflow, branch, event and actor and names the failed
/// jobs, and `logs` into a pipe carries no escape sequences or group markers.
#[test]
fn why_did_it_fail_is_answered_by_show_runs_and_logs() {
    let workflow = "on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo '::group::Compiling'
          printf '\\033[31mred error\\033[0m\\n'
          echo '::endgroup::'
          exit 3
  docs:
    runs-on: ubuntu-latest
    steps:
      - run: echo fine
";
    let (server, run) = finished_run(workflow);
    let text = |args: &[&str]| {
        let out = server.cli(args);
        assert!(out.status.success(), "mobius {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let shown = text(&["show", &run.to_string()]);
    assert!(shown.contains("error [build]: Process completed with exit code 3."), "{shown}");

    let failed = text(&["runs", "--status", "failure"]);
    assert!(failed.lines().any(|l| l.starts_with(&run.to_string()) && l.trim_end().ends_with("build")), "{failed}");
    assert!(failed.contains("FAILED JOBS"), "{failed}");
    for args in [["--workflow", "ci.yml"], ["--branch", "main"], ["--event", "push"], ["--status", "completed"]] {
        let listed = text(&[&["runs"][..], &args[..]].concat());
        assert_eq!(listed.lines().count(), 2, "mobius runs {args:?}: {listed}");
    }
    for args in [["--status", "success"], ["--event", "schedule"], ["--workflow", "nightly.yml"], ["--actor", "nobody"]]
    {
        let listed = text(&[&["runs"][..], &args[..]].concat());
        assert_eq!(listed.lines().count(), 1, "mobius runs {args:?}: {listed}");
    }
    let out = server.cli(&["runs", "--status", "broken"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("conclusion"));

    let logs = text(&["logs", &run.to_string()]);
    assert!(logs.contains("red error") && logs.contains("Compiling"), "{logs}");
    assert!(!logs.contains('\u{1b}') && !logs.contains("##[group]") && !logs.contains("##[endgroup]"), "{logs:?}");
}

/// Item 12 (part): `--server HOST:PORT` means plain HTTP and a wrong address says how
/// to write one; `service logs --env` names what exists instead of printing nothing;
/// help shows no empty environment value.
#[test]
fn client_options_take_host_port_and_name_what_exists() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let bare = server.url.trim_start_matches("http://").to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(crate::support::BIN)
            .args(args)
            .env("MOBIUS_TOKEN", &server.token)
            .env_remove("MOBIUS_SERVER")
            .output()
            .unwrap()
    };
    for args in [&["--server", &bare, "project", "list"][..], &["project", "list", "--server", &bare][..]] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = run(&["--server", "ftp://example", "runs"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("http://HOST:PORT"), "{stderr}");
    assert!(!stderr.contains("builder error"), "{stderr}");

    let out = server.cli(&["service", "logs", "web", "--env", "nosuch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`web`") && stderr.contains("`nosuch`"), "{stderr}");

    let help =
        std::process::Command::new(crate::support::BIN).args(["runs", "--help"]).env("MOBIUS_SERVER", "").output();
    let help = String::from_utf8_lossy(&help.unwrap().stdout).to_string();
    assert!(help.contains("[env: MOBIUS_SERVER]") && !help.contains("MOBIUS_SERVER=]"), "{help}");
}

/// Item 16 (part): a refused action renders the UI's own page (its layout, a heading),
/// not plain text.
#[test]
fn a_refused_ui_action_renders_the_uis_error_page() {
    let server = Server::start(crate::support::Backend::Sqlite);
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/ui/runs/1/cancel", server.url))
        .header("cookie", format!("mobius_token={}", server.token))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=wrong")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let page = response.text().unwrap();
    assert!(page.contains("/ui/static/app.css") && page.contains("<h1>Not allowed</h1>"), "{page}");
    assert!(page.contains("CSRF"), "{page}");
}

/// Item 16 (part): a viewer sees no button they cannot use; a developer sees them.
#[test]
fn a_viewer_sees_no_buttons_they_cannot_use() {
    let dispatchable = one_step("exit 1").replace("on: push", "on: [push, workflow_dispatch]");
    let repo = Repo::new(&[(".github/workflows/ci.yml", &dispatchable)]);
    let server = Server::start(crate::support::Backend::Sqlite);
    server.add_project("shop", repo.path());
    let run = server.wait_runs("shop", 1)[0]["id"].as_i64().unwrap();
    server.wait_run(run, "completed");
    let page_as = |role: &str, path: &str| {
        let (code, token) = server.api("POST", "/api/v1/tokens", Some(serde_json::json!({"name": role, "role": role})));
        assert_eq!(code, 201, "{token}");
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", server.url))
            .header("cookie", format!("mobius_token={}", token["token"].as_str().unwrap()))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let viewer = page_as("viewer", &format!("/ui/runs/{run}"));
    assert!(viewer.contains("Process completed with exit code 1"), "{viewer}");
    assert!(!viewer.contains("<button id=\"rerun\""), "a viewer is offered a re-run: {viewer}");
    let developer = page_as("developer", &format!("/ui/runs/{run}"));
    assert!(developer.contains("<button id=\"rerun\""), "{developer}");
    // The project page offers "Run workflow" to whoever may dispatch, and only to them.
    let viewer = page_as("viewer", "/ui/projects/shop");
    assert!(viewer.contains("<code>ci.yml</code>") && !viewer.contains("class=\"dispatch\""), "{viewer}");
    let developer = page_as("developer", "/ui/projects/shop");
    assert!(developer.contains("class=\"dispatch\""), "{developer}");
}

/// Item 12 (part): every list has a header row, is coloured on a terminal (and only
/// there), and a run's duration reads the same in `mobius runs` and on the UI's runs page.
#[test]
fn lists_have_header_rows_colour_on_a_terminal_and_durations_as_in_the_ui() {
    let (server, run) = finished_run(&one_step("sleep 1.2"));
    let (_, detail) = server.api("GET", &format!("/api/v1/runs/{run}"), None);
    let duration = mobius_core::duration::human(detail["duration_ms"].as_u64().expect("a finished run's duration"));
    for (args, header) in [
        (&["runs"][..], "ID"),
        (&["project", "list"][..], "NAME"),
        (&["token", "list"][..], "ID"),
        (&["secret", "list", "--project", "shop"][..], "NAME"),
        (&["var", "list", "--project", "shop"][..], "NAME"),
        (&["audit"][..], "AT"),
        (&["releases", "web", "--project", "shop"][..], "ID"),
        (&["incidents"][..], "ID"),
        (&["alerts"][..], "STATE"),
    ] {
        let out = server.cli(args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let first = text.lines().next().unwrap_or_default();
        assert!(first.starts_with(header) && first == first.to_uppercase(), "{args:?} has no header row: {text}");
        assert!(!text.contains('\u{1b}'), "{args:?} is coloured into a pipe: {text:?}");
    }
    let listed = String::from_utf8_lossy(&server.cli(&["runs"]).stdout).to_string();
    let row = listed.lines().find(|l| l.starts_with(&run.to_string())).unwrap_or_default().to_string();
    assert!(row.contains(&duration), "`mobius runs` shows {duration:?}: {listed}");
    let page = server.page("/ui/runs");
    assert!(page.contains(&format!(">{duration}<")), "the UI shows {duration:?} too: {page}");

    // On a terminal (`script` gives the command one) the header is bold and states coloured.
    let terminal = std::process::Command::new("script")
        .args(["-qec", &format!("{} runs", crate::support::BIN), "/dev/null"])
        .env("MOBIUS_SERVER", &server.url)
        .env("MOBIUS_TOKEN", &server.token)
        .env_remove("NO_COLOR")
        .output()
        .expect("script(1) from bsdutils");
    let text = String::from_utf8_lossy(&terminal.stdout);
    assert!(text.contains("\u{1b}[1mID\u{1b}[0m") && text.contains("\u{1b}[32msuccess\u{1b}[0m"), "{text:?}");
}

/// A session's CSRF value, read from a page's form.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF value") + 19;
    page[at..].split('"').next().unwrap_or_default().to_string()
}

/// A UI form post as the signed-in `token`: the status and the `location` it redirects to.
fn post_form(server: &Server, token: &str, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
    let response = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}{path}", server.url))
        .header("cookie", format!("mobius_token={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let location =
        response.headers().get("location").map(|l| l.to_str().unwrap_or_default().to_string()).unwrap_or_default();
    (status, location, response.text().unwrap_or_default())
}

fn page_as(server: &Server, token: &str, path: &str) -> String {
    reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url))
        .header("cookie", format!("mobius_token={token}"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// Item 15 (silences): created, listed and expired from the UI and from
/// `mobius silence add|list|expire`; an alert's Silence link fills in its labels; a
/// viewer is offered neither the form nor Expire.
#[test]
fn silences_are_added_listed_and_expired_in_the_ui_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let alertmanager = dir.path().join("alertmanager.yml");
    std::fs::write(&alertmanager, "route:\n  receiver: team\nreceivers:\n  - name: team\n").unwrap();
    let server =
        Server::start_with(crate::support::Backend::Sqlite, &["--alertmanager-config", alertmanager.to_str().unwrap()]);
    let (code, body) = server.api(
        "POST",
        "/api/v2/alerts",
        Some(serde_json::json!([{"labels": {"alertname": "QueueTooDeep", "env": "production"}}])),
    );
    assert_eq!(code, 200, "{body}");

    // The alert's Silence link carries its labels into the form.
    let alerts = server.page("/ui/alerts");
    let link = alerts.split("class=\"silence\" href=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
    let form = server.page(&link.replace("&amp;", "&"));
    assert!(
        form.contains("value=\"alertname=&#34;QueueTooDeep&#34;, env=&#34;production&#34;\"")
            || form.contains("value=\"alertname=&quot;QueueTooDeep&quot;, env=&quot;production&quot;\""),
        "{form}"
    );

    // Created in the UI: a bad matcher is refused with the field named, a good one lands.
    let csrf = csrf_of(&form);
    let (status, _, refused) = post_form(
        &server,
        &server.token,
        "/ui/silences",
        &[("csrf", &csrf), ("matchers", "alertname=~\"(\""), ("duration", "2h"), ("comment", "deploy")],
    );
    assert_eq!(status, 422, "{refused}");
    assert!(refused.contains("matchers:"), "{refused}");
    let (status, location, _) = post_form(
        &server,
        &server.token,
        "/ui/silences",
        &[
            ("csrf", &csrf),
            ("matchers", "alertname=\"QueueTooDeep\""),
            ("duration", "2h"),
            ("comment", "known, fixing"),
        ],
    );
    assert_eq!((status, location.as_str()), (303, "/ui/silences"));

    // Added from the CLI, listed by both.
    let out = server.cli(&["silence", "add", "env=staging", "severity=~\"warn.*\"", "-d", "30m", "-c", "load test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let listed = String::from_utf8_lossy(&server.cli(&["silence", "list"]).stdout).to_string();
    assert!(listed.starts_with("ID") && listed.contains("known, fixing") && listed.contains(&cli_id), "{listed}");
    assert!(listed.contains("severity=~\"warn.*\""), "{listed}");
    let only = String::from_utf8_lossy(&server.cli(&["silence", "list", "env=staging"]).stdout).to_string();
    assert_eq!(only.lines().count(), 2, "the filter keeps one: {only}");
    let page = server.page("/ui/silences");
    assert!(page.contains(&cli_id) && page.contains("load test") && page.contains("class=\"expire\""), "{page}");

    // Expired from the CLI: gone from the list, still there with --expired.
    let out = server.cli(&["silence", "expire", &cli_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&server.cli(&["silence", "list"]).stdout).to_string();
    assert!(!listed.contains(&cli_id), "{listed}");
    let all = String::from_utf8_lossy(&server.cli(&["silence", "list", "--expired"]).stdout).to_string();
    assert!(all.lines().any(|l| l.starts_with(&cli_id) && l.contains("expired")), "{all}");

    // Expired from the UI.
    let (_, silences) = server.api("GET", "/api/v2/silences", None);
    let ui_id = silences.as_array().unwrap().iter().find(|x| x["comment"] == "known, fixing").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, _) = post_form(&server, &server.token, &format!("/ui/silences/{ui_id}/expire"), &[("csrf", &csrf)]);
    assert_eq!(status, 303);
    let (_, shown) = server.api("GET", &format!("/api/v2/silence/{ui_id}"), None);
    assert_eq!(shown["status"]["state"], "expired", "{shown}");
    assert_eq!(audit_actions(&server, "silence.expire").len(), 2);

    // A viewer sees the silences, but no form and no Expire.
    let (_, viewer) =
        server.api("POST", "/api/v1/tokens", Some(serde_json::json!({"name": "viewer", "role": "viewer"})));
    let viewer = viewer["token"].as_str().unwrap();
    let page = page_as(&server, viewer, "/ui/silences");
    assert!(page.contains("known, fixing") && !page.contains("silence-form"), "{page}");
    assert!(!page_as(&server, viewer, "/ui/alerts").contains("class=\"silence\""));
}

/// Item 15 (pages): releases with changelog and provenance, scrape targets with their
/// health, rules with their state, filters on the runs list, each project's last
/// status, and the version each instance runs.
#[test]
fn the_ui_shows_releases_targets_rules_run_filters_last_status_and_instance_versions() {
    if !python_available() {
        return;
    }
    let port = free_port();
    let delivery = format!(
        "services:\n  web:\n    artifact: web\n    run: python3 upstream.py {{port}}\n    health: {{ path: /healthz, interval: 200ms }}\n    metrics: {{ path: /metrics }}\nenvironments:\n  only:\n    listen: 127.0.0.1:{port}\n    strategy: recreate\n"
    );
    let repo = service_repo(&delivery);
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(
        conf.path().join("rules.yml"),
        "groups:\n  - name: shop\n    interval: 1s\n    rules:\n      - record: job:up:sum\n        expr: sum(up)\n      - alert: AlwaysOn\n        expr: vector(1) > 0\n",
    )
    .unwrap();
    let prometheus = conf.path().join("prometheus.yml");
    std::fs::write(&prometheus, "global:\n  scrape_interval: 500ms\nrule_files: [rules.yml]\n").unwrap();
    let server =
        Server::start_with(crate::support::Backend::Sqlite, &["--prometheus-config", prometheus.to_str().unwrap()]);
    server.add_project("shop", repo.path());
    let release = wait_release(&server, "v1");
    cli_ok(&server, &["deploy", "web", "--env", "only", "--wait"]);

    // Releases: the list links to the release, which shows its changelog, where it
    // runs and its provenance.
    let list = server.page("/ui/releases");
    assert!(list.contains(&format!("href=\"/ui/releases/{}\">v1</a>", release["id"])), "{list}");
    let shown = server.page(&format!("/ui/releases/{}", release["id"]));
    assert!(shown.contains("id=\"changelog\"") && shown.contains("initial"), "{shown}");
    assert!(shown.contains("https://slsa.dev/provenance/v1") && shown.contains(release["digest"].as_str().unwrap()));
    assert!(shown.contains("<td>only</td>"), "where it runs: {shown}");

    // Targets and rules, once scraped and evaluated.
    let wait_page = |path: &str, wanted: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let page = server.page(path);
            if wanted(&page) {
                return page;
            }
            assert!(Instant::now() < deadline, "{path} never showed it: {page}\n{}", server.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let targets = wait_page("/ui/targets", &|p| {
        p.lines().any(|row| row.contains("service=&#34;web&#34;") && row.contains("<span class=\"badge up\">up</span>"))
    });
    assert!(targets.contains("/metrics</code>") && targets.contains("service=&#34;web&#34;"), "{targets}");
    let rules = wait_page("/ui/rules", &|p| p.contains("<span class=\"badge firing\">firing</span>"));
    assert!(
        rules.contains("AlwaysOn") && rules.contains("job:up:sum") && rules.contains("<code>sum(up)</code>"),
        "{rules}"
    );

    // The services page says which version each instance runs.
    let services = wait_page("/ui/services", &|p| p.contains("<strong class=\"version\">v1</strong>"));
    assert!(services.contains(" runs <strong"), "{services}");

    // Runs: the filters narrow the list; the projects page shows the last run's state.
    let (_, runs) = server.api("GET", "/api/v1/runs?project=shop", None);
    let run = runs[0]["id"].as_i64().unwrap();
    let succeeded = server.page("/ui/runs?status=success&workflow=build.yml&branch=main&event=push&actor=");
    assert!(succeeded.contains(&format!("data-run=\"{run}\"")), "{succeeded}");
    assert!(succeeded.contains("<option selected>success</option>"), "the form keeps the filter: {succeeded}");
    let failed = server.page("/ui/runs?status=failure");
    assert!(!failed.contains("data-run=") && failed.contains("No runs match these filters."), "{failed}");
    let refused = server.page("/ui/runs?status=broken");
    assert!(refused.contains("conclusion"), "{refused}");
    let projects = server.page("/ui/projects");
    assert!(
        projects.contains("<span class=\"badge success\">success</span>")
            && projects.contains(&format!("href=\"/ui/runs/{run}\"")),
        "{projects}"
    );
}

/// Item 14: a paused blue-green rollout shows the new version, its preview address and
/// the traffic the preview served; a canary lists its steps with the current one marked.
#[test]
fn a_paused_blue_green_shows_its_preview_and_a_canary_its_steps() {
    if !python_available() {
        return;
    }
    let (port, preview, canary_port) = (free_port(), free_port(), free_port());
    let delivery = format!(
        "services:\n  web:\n    artifact: web\n    run: python3 upstream.py {{port}}\n    health: {{ path: /healthz, interval: 200ms }}\n    stop_grace: 1s\n    drain_timeout: 1s\nenvironments:\n  blue:\n    listen: 127.0.0.1:{port}\n    strategy: {{ blue-green: {{ auto_promote: false, preview: 127.0.0.1:{preview} }} }}\n    analysis: {{ interval: 200ms }}\n  canary:\n    listen: 127.0.0.1:{canary_port}\n    strategy:\n      canary:\n        steps: [ {{ weight: 20 }}, {{ weight: 60, pause: 1h }} ]\n"
    );
    let repo = service_repo(&delivery);
    let server = Server::start(crate::support::Backend::Sqlite);
    server.add_project("shop", repo.path());
    wait_release(&server, "v1");
    let latest = |env: &str| -> Value {
        let (_, list) = server.api("GET", &format!("/api/v1/rollouts?service=web&environment={env}&limit=1"), None);
        list[0].clone()
    };
    // Brings `env` to `phase`, promoting past every pause on the way when asked to.
    let reach = |env: &str, phase: &str, promote: bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = latest(env);
            if r["phase"] == phase {
                return r;
            }
            if promote && r["phase"] == "paused" {
                server.api("POST", &format!("/api/v1/rollouts/{}/promote", r["id"]), None);
            }
            assert!(Instant::now() < deadline, "{env} never reached {phase}: {r}\n{}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for env in ["blue", "canary"] {
        cli_ok(&server, &["deploy", "web", "--env", env]);
        reach(env, "succeeded", true);
    }

    repo.commit(&[("app/VERSION", "2")], "Second");
    wait_release(&server, "v2");
    cli_ok(&server, &["deploy", "web", "--env", "blue", "--release", "v2"]);
    let paused = reach("blue", "paused", false);
    assert_eq!(paused["preview"], format!("127.0.0.1:{preview}"), "{paused}");
    assert_eq!(get(preview).1, "v2", "the preview answers with the new version");
    assert_eq!(get(port).1, "v1", "production stays on the stable version");
    for _ in 0..4 {
        get(preview);
    }
    let id = paused["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, shown) = server.api("GET", &format!("/api/v1/rollouts/{id}"), None);
        if shown["rates"]["v2"]["requests"].as_u64().unwrap_or(0) >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the preview's five requests are not counted: {shown}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = server.page(&format!("/ui/rollouts/{id}"));
    assert!(page.contains("<td>v2</td><td>preview</td>"), "{page}");
    assert!(page.contains(&format!("<code>127.0.0.1:{preview}</code>")) && page.contains("id=\"preview\""), "{page}");
    assert!(!page.contains("No requests measured"), "{page}");
    let status = cli_ok(&server, &["rollout", "status", "web", "--env", "blue"]);
    assert!(status.contains(&format!("preview: v2 answers at 127.0.0.1:{preview}")), "{status}");

    // The canary waits at its first step to be promoted: the page lists both steps, the
    // first marked, and says how to go on without the CLI's backticks.
    cli_ok(&server, &["deploy", "web", "--env", "canary", "--release", "v2"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let rollout = loop {
        let r = latest("canary");
        if r["release"]["version"] == "v2" && r["step"] == 1 {
            break r;
        }
        assert!(Instant::now() < deadline, "the canary never reached step 1: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        rollout["plan"],
        serde_json::json!([{"weight": 20, "pause_seconds": null}, {"weight": 60, "pause_seconds": 3600}])
    );
    let rollout = reach("canary", "paused", false);
    assert!(rollout["message"].as_str().unwrap().contains("`mobius promote`"), "{rollout}");
    let page = server.page(&format!("/ui/rollouts/{}", rollout["id"]));
    assert!(
        page.contains(
            "<li class=\"step current\" data-step=\"1\" aria-current=\"step\">20% to v2, hold until promoted"
        ) && page.contains("<li class=\"step next\" data-step=\"2\">60% to v2, hold for 1h 00m"),
        "{page}"
    );
    // Item 16: UI messages show the CLI's `code` as code, not as backticks.
    assert!(page.contains("<code>mobius promote</code>") && !page.contains('`'), "{page}");
    let status = cli_ok(&server, &["rollout", "status", "web", "--env", "canary"]);
    assert!(status.contains("step 1 of 2: ▶20% → 60%"), "{status}");
}

/// Item 13 (its cost): a live list's refresh of an unchanged page is a 304 without a
/// body; a change gives a new tag.
#[test]
fn an_unchanged_page_answers_304_to_its_etag() {
    let (server, _) = finished_run(&one_step("true"));
    let client = reqwest::blocking::Client::new();
    let get = |etag: Option<&str>| {
        let mut request =
            client.get(format!("{}/ui/runs", server.url)).header("cookie", format!("mobius_token={}", server.token));
        if let Some(tag) = etag {
            request = request.header("if-none-match", tag);
        }
        let response = request.send().unwrap();
        let tag = response.headers().get("etag").map(|t| t.to_str().unwrap().to_string());
        (response.status().as_u16(), tag, response.text().unwrap())
    };
    let (status, tag, page) = get(None);
    assert_eq!(status, 200);
    let tag = tag.expect("a page has an ETag");
    assert!(page.contains("data-live"), "{page}");
    let (status, again, body) = get(Some(&tag));
    assert_eq!((status, again.as_deref(), body.as_str()), (304, Some(tag.as_str()), ""));
    // A new run changes the list.
    server.add_project("other", Repo::new(&[(".github/workflows/ci.yml", &one_step("true"))]).path());
    server.wait_runs("other", 1);
    let (status, changed, _) = get(Some(&tag));
    assert_eq!(status, 200);
    assert_ne!(changed.as_deref(), Some(tag.as_str()));
}
