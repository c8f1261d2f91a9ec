//! Release and deploy through the server: releases from runs, promotion order, approvals,
//! blue-green and canary rollouts, rollback, and traffic that survives `kill -9` of the server.

use crate::support::{backends, Backend, Repo, Server};
use fantoccini::Locator;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const APP: &str = include_str!("../../../deploy/tests/upstream.py");

pub(crate) const WORKFLOW: &str = "on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: test -f app/upstream.py && echo packaged upstream.py
      - uses: actions/upload-artifact@v4
        with: { name: web, path: app/ }
";

/// A port for a listener bound later: below the kernel's ephemeral range (32768 and
/// up), so no connection or port-0 bind in the meantime can take it, free now, and
/// never handed out twice in this process (two calls once gave one test the same port
/// for two places, which then clashed).
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
        ^ u64::from(std::process::id()) << 20;
    loop {
        let n = seed.wrapping_add(NEXT.fetch_add(7919, Ordering::Relaxed)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let port = 20_000 + (n % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

fn delivery(staging: u16, production: u16) -> String {
    format!(
        "services:
  web:
    artifact: web
    run: python3 upstream.py {{port}}
    health: {{ path: /healthz, interval: 200ms }}
    instances: 2
    metrics: {{ path: /metrics }}
    stop_grace: 2s
    drain_timeout: 1s
environments:
  staging:
    listen: 127.0.0.1:{staging}
    strategy: blue-green
  production:
    listen: 127.0.0.1:{production}
    after: staging
    protected: true
    strategy:
      canary:
        steps: [ {{ weight: 50, pause: 300ms }} ]
    analysis: {{ min_requests: 5 }}
"
    )
}

/// A repository whose CI packages the Python service (`app/`) as the artifact `web`,
/// delivered as `delivery` (its `mobius.yaml`) says.
pub(crate) fn service_repo(delivery: &str) -> Repo {
    Repo::new(&[(".github/workflows/build.yml", WORKFLOW), ("app/upstream.py", APP), ("mobius.yaml", delivery)])
}

/// A repository that builds the Python service and delivers it to the two environments.
fn shop_repo(staging: u16, production: u16) -> Repo {
    service_repo(&delivery(staging, production))
}

pub(crate) fn python_available() -> bool {
    let found = std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "python3 is required under CI");
        eprintln!("skipped: python3 is not installed");
    }
    found
}

pub(crate) fn wait_release(server: &Server, version: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, releases) = server.api("GET", "/api/v1/releases?service=web", None);
        if let Some(r) = releases.as_array().and_then(|a| a.iter().find(|r| r["version"] == version)) {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no release {version}: {releases}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// When a request was sent, and its status or why it failed.
type Outcome = (Instant, Result<u16, String>);

/// Requests to a port on loopback, one after another, from a thread of their own:
/// when each was sent and its status (or why it failed).
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    outcomes: std::sync::Arc<std::sync::Mutex<Vec<Outcome>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let outcomes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, outcomes) = (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&outcomes));
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let at = Instant::now();
                    let outcome = client
                        .get(format!("http://127.0.0.1:{port}/"))
                        .send()
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string());
                    outcomes.lock().unwrap().push((at, outcome));
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Load { stop, outcomes, thread }
    }

    /// From the first to the last request sent in `[from, to)` that did not get a 200.
    fn failure_window(&self, from: Instant, to: Instant) -> Duration {
        let outcomes = self.outcomes.lock().unwrap();
        let failed =
            || outcomes.iter().filter(|(at, r)| *at >= from && *at < to && r.as_ref() != Ok(&200)).map(|(at, _)| *at);
        match (failed().min(), failed().max()) {
            (Some(first), Some(last)) => last.duration_since(first),
            _ => Duration::ZERO,
        }
    }

    fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap();
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}

pub(crate) fn get(port: u16) -> (u16, String) {
    let response = reqwest::blocking::get(format!("http://127.0.0.1:{port}/")).unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

pub(crate) fn cli_ok(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "mobius {args:?} failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    stdout
}

#[test]
fn releases_rollouts_approvals_and_rollback() {
    if !python_available() {
        return;
    }
    for backend in backends() {
        let (staging, production) = (free_port(), free_port());
        let repo = shop_repo(staging, production);
        // Instances are scraped at the global interval: every second here.
        let conf = tempfile::tempdir().unwrap();
        let prometheus = conf.path().join("prometheus.yml");
        std::fs::write(&prometheus, "global:\n  scrape_interval: 1s\n").unwrap();
        let server = Server::start_with(backend.clone(), &["--prometheus-config", prometheus.to_str().unwrap()]);
        server.add_project("shop", repo.path());
        let v1 = wait_release(&server, "v1");
        assert!(v1["digest"].as_str().unwrap().starts_with("sha256:"), "{v1}");
        let (_, detail) = server.api("GET", &format!("/api/v1/releases/{}", v1["id"]), None);
        assert_eq!(detail["provenance"]["predicateType"], "https://slsa.dev/provenance/v1");
        assert_eq!(
            format!("sha256:{}", detail["provenance"]["subject"][0]["digest"]["sha256"].as_str().unwrap()),
            v1["digest"].as_str().unwrap()
        );
        assert_eq!(
            detail["provenance"]["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["gitCommit"],
            v1["commit"]
        );

        // Promotion order: production comes after staging.
        let out = server.cli(&["deploy", "web", "--env", "production"]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("must succeed in `staging`"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // First deploy to the empty staging environment: straight to v1.
        cli_ok(&server, &["deploy", "web", "--env", "staging", "--wait"]);
        assert_eq!(get(staging), (200, "v1".into()));

        // A new commit makes v2 with a changelog; blue-green switches to it.
        repo.commit(&[("app/VERSION", "2")], "Faster checkout");
        let v2 = wait_release(&server, "v2");
        assert_eq!(v2["changelog"][0]["message"], "Faster checkout", "{v2}");
        let releases = cli_ok(&server, &["releases", "web", "--json"]);
        let listed: Value = serde_json::from_str(&releases).unwrap();
        assert_eq!(listed[0]["version"], "v2", "newest first");
        cli_ok(&server, &["deploy", "web", "--env", "staging", "--release", "v2", "--wait"]);
        assert_eq!(get(staging).1, "v2");

        // Production is protected: not by the deployer, not by the author (Alice).
        cli_ok(&server, &["deploy", "web", "--env", "production"]);
        let status = || -> Value {
            serde_json::from_str(&cli_ok(&server, &["rollout", "status", "web", "--env", "production", "--json"]))
                .unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while status()["phase"] != "paused" {
            assert!(Instant::now() < deadline, "{}", status());
            std::thread::sleep(Duration::from_millis(50));
        }
        let rollout_id = status()["id"].as_i64().unwrap();
        let (code, answer) = server.api("POST", &format!("/api/v1/rollouts/{rollout_id}/approve"), None);
        assert_eq!(code, 403, "{answer}");
        let token = |name: &str| -> String {
            let (code, t) = server.api("POST", "/api/v1/tokens", Some(json!({"name": name, "role": "maintainer"})));
            assert_eq!(code, 201, "{t}");
            t["token"].as_str().unwrap().to_string()
        };
        let alice = token("Alice");
        let (code, answer) = server.api_as(&alice, "POST", &format!("/api/v1/rollouts/{rollout_id}/approve"), None);
        assert_eq!(code, 403, "the release's author cannot approve: {answer}");
        let bob = token("bob");
        let (code, answer) = server.api_as(&bob, "POST", &format!("/api/v1/rollouts/{rollout_id}/approve"), None);
        assert_eq!(code, 200, "{answer}");
        let out = std::process::Command::new(crate::support::BIN)
            .args(["rollout", "status", "web", "--env", "production", "--watch"])
            .env("MOBIUS_SERVER", &server.url)
            .env("MOBIUS_TOKEN", &server.token)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let done = status();
        assert_eq!(done["phase"], "succeeded", "{done}");
        assert_eq!(done["weights"]["v2"], 100, "{done}");
        assert_eq!(get(production).1, "v2");
        let (_, detail) = server.api("GET", &format!("/api/v1/rollouts/{rollout_id}"), None);
        let kinds: Vec<&str> =
            detail["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["started", "approved", "succeeded"], "{detail}");

        // The web UI: what runs where, and the rollout with its weights and events.
        let page = |path: &str| server.page(path);
        let deploys = page("/ui/deploys");
        assert!(deploys.contains("<td>production</td><td>web</td><td class=\"version\">v2</td>"), "{deploys}");
        let rollout_page = page(&format!("/ui/rollouts/{rollout_id}"));
        assert!(
            rollout_page.contains("v2 100%") && rollout_page.contains("approved</strong> by bob"),
            "{rollout_page}"
        );

        // What runs where, and the router's numbers on the server's /metrics only.
        let (_, places) = server.api("GET", "/api/v1/environments?project=shop", None);
        assert_eq!(places.as_array().unwrap().len(), 2, "{places}");
        let metrics = reqwest::blocking::get(format!("{}/metrics", server.url)).unwrap().text().unwrap();
        assert!(
            metrics.contains("mobius_router_requests_total{listener=\"staging.web\",version=\"v2\",code=\"2xx\"}"),
            "{metrics}"
        );
        let public = reqwest::blocking::get(format!("http://127.0.0.1:{staging}/metrics")).unwrap().text().unwrap();
        assert!(!public.contains("mobius_router"), "the public listener never shows router metrics");
        // The monitor found the instances by itself, labelled with where they run.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, answer) =
                server.api("GET", "/api/v1/query?query=up%7Bservice%3D%22web%22%2Cenv%3D%22production%22%7D", None);
            let result = answer["data"]["result"].as_array().cloned().unwrap_or_default();
            // A scrape may land before a new instance listens (up 0, as in Prometheus);
            // both must be up soon after.
            if result.len() == 2 && result.iter().all(|r| r["metric"]["version"] == "v2" && r["value"][1] == "1") {
                break;
            }
            assert!(Instant::now() < deadline, "instances not scraped, or not up: {answer}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let (_, answer) = server.api("GET", "/api/v1/query?query=up%7Bjob%3D%22mobius%22%7D", None);
        assert_eq!(answer["data"]["result"][0]["value"][1], "1", "Mobius scrapes itself: {answer}");
        // Two v2 instances per environment (staging may still keep v1 warm after its
        // switch), all up once an instance being stopped has left the targets.
        let deadline = Instant::now() + Duration::from_secs(10);
        // A place is missing from the page for a scrape interval when its targets change
        // (the old series are stale before the new target's first scrape), so wait for both.
        let production_instances = |services: &str| {
            services
                .split("web in production")
                .nth(1)
                .map_or(0, |s| s.split("<section").next().unwrap_or_default().matches("title=\"v2\">").count())
        };
        let services = loop {
            let services = page("/ui/services");
            let settled = services.contains("web in staging")
                && production_instances(&services) == 2
                && !services.contains("instance down");
            if settled || Instant::now() > deadline {
                break services;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(services.contains("web in production") && services.contains("<td>v2</td>"), "{services}");
        assert_eq!(production_instances(&services), 2, "{services}");
        assert!(services.contains("web in staging") && !services.contains("instance down"), "{services}");
        // What the instances print is in the log store, by service and environment;
        // what the release job printed too.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = server.cli(&["service", "logs", "web", "--env", "production"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if text.matches("listening on port").count() >= 2 {
                assert!(text.contains("version v2"), "{text}");
                break;
            }
            assert!(Instant::now() < deadline, "instance logs missing: {text}{}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(300));
        }
        let (_, jobs) = server.api(
            "GET",
            "/loki/api/v1/query_range?query=%7Bsource%3D%22job%22%2Cproject%3D%22shop%22%7D&limit=1000",
            None,
        );
        assert!(jobs.to_string().contains("packaged upstream.py"), "{jobs}");
        assert_eq!(jobs["data"]["result"][0]["stream"]["source"], "job", "{jobs}");

        // Rollback in staging: v1 was kept warm, so the switch back is immediate.
        let started = Instant::now();
        cli_ok(&server, &["rollback", "web", "--env", "staging", "--wait"]);
        assert!(started.elapsed() < Duration::from_secs(5), "rollback took {:?}", started.elapsed());
        assert_eq!(get(staging).1, "v1");
        let (_, audit) = server.api("GET", "/api/v1/audit", None);
        let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for action in ["deploy", "rollout.approve", "rollback"] {
            assert!(actions.contains(&action), "{action} missing from {actions:?}");
        }
    }
}

/// The deploy pages in a real headless Chromium: what runs where, a rollout waiting
/// for approval, approved with the page's own form by someone else than the deployer.
#[test]
fn the_deploy_pages_show_what_runs_where_and_approve_a_rollout_in_the_browser() {
    if !python_available() {
        return;
    }
    let Some(browser) = crate::ui::browser() else {
        return;
    };
    let (staging, production) = (free_port(), free_port());
    let repo = shop_repo(staging, production);
    let server = Server::start(Backend::Sqlite);
    server.add_project("shop", repo.path());
    wait_release(&server, "v1");
    cli_ok(&server, &["deploy", "web", "--env", "staging", "--wait"]);
    cli_ok(&server, &["deploy", "web", "--env", "production"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let rollout = loop {
        let (_, rollouts) = server.api("GET", "/api/v1/rollouts?environment=production", None);
        if let Some(r) = rollouts.as_array().and_then(|a| a.iter().find(|r| r["phase"] == "paused")) {
            break r["id"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "no paused rollout: {rollouts}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (code, bob) = server.api("POST", "/api/v1/tokens", Some(json!({"name": "bob", "role": "maintainer"})));
    assert_eq!(code, 201, "{bob}");
    let client = &browser.client;
    browser.runtime.block_on(async {
        let base = &server.url;
        crate::ui::sign_in(client, base, bob["token"].as_str().unwrap()).await;
        client.goto(&format!("{base}/ui/deploys")).await.unwrap();
        let places = client.find(Locator::Css("table.places")).await.unwrap().text().await.unwrap();
        assert!(places.contains("staging web v1"), "{places}");
        assert!(places.contains(&format!("production web - #{rollout} paused")), "{places}");

        // The rollout page refreshes itself while live: click Approve on whichever copy is shown.
        client.find(Locator::LinkText(&format!("#{rollout} paused"))).await.unwrap().click().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let page = format!("{base}/ui/rollouts/{rollout}");
        // One click; another only if the first was lost to a refresh of the page.
        let mut clicked: Option<Instant> = None;
        loop {
            let phase = match client.find(Locator::Id("phase")).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if phase == "succeeded" {
                break;
            }
            if phase.is_empty() {
                // Between two refreshes of the page, or on the answer to the click: back to the rollout.
                client.goto(&page).await.unwrap();
            } else if phase == "paused" && clicked.is_none_or(|at| at.elapsed() > Duration::from_secs(3)) {
                if let Ok(button) = client.find(Locator::XPath("//button[text()='Approve']")).await {
                    if button.click().await.is_ok() {
                        clicked = Some(Instant::now());
                    }
                }
            }
            assert!(Instant::now() < deadline, "never approved: {}", client.source().await.unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let weights = client.find(Locator::Css(".weights svg")).await.unwrap().text().await.unwrap();
        assert!(weights.contains("v1 100%"), "{weights}");
        let events = client.find(Locator::Css("ol.events")).await.unwrap().text().await.unwrap();
        assert!(events.contains("approved by bob"), "{events}");
        assert!(client.find(Locator::XPath("//button[text()='Approve']")).await.is_err(), "no actions once final");
        client.goto(&format!("{base}/ui/deploys")).await.unwrap();
        let places = client.find(Locator::Css("table.places")).await.unwrap().text().await.unwrap();
        assert!(places.contains("production web v1 -"), "{places}");
        client.clone().close().await.unwrap();
    });
    assert_eq!(get(production), (200, "v1".into()));
}

/// Load on `port` while the server is killed (`kill -9`) and started again: how many
/// requests answered 200, and what the others got (a status or an error).
fn through_a_kill_9(server: &mut Server, port: u16) -> (usize, Vec<String>) {
    let load = Load::start(port);
    std::thread::sleep(Duration::from_millis(500));
    server.kill9();
    std::thread::sleep(Duration::from_millis(1000));
    server.restart();
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = load.finish();
    let ok = outcomes.iter().filter(|(_, r)| r.as_ref().is_ok_and(|s| *s == 200)).count();
    let failed = outcomes
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(200) => None,
            Ok(status) => Some(status.to_string()),
            Err(e) => Some(e.clone()),
        })
        .collect();
    (ok, failed)
}

/// The router and the instances live in the host agent: a crash of the server
/// loses no request, and a restarted server finds everything as it was.
#[test]
fn kill_9_of_the_server_under_load_loses_no_request() {
    if !python_available() {
        return;
    }
    let (staging, production) = (free_port(), free_port());
    let repo = shop_repo(staging, production);
    let mut server = Server::start(crate::support::Backend::Sqlite);
    server.add_project("shop", repo.path());
    wait_release(&server, "v1");
    cli_ok(&server, &["deploy", "web", "--env", "staging", "--wait"]);
    let (ok, failed) = through_a_kill_9(&mut server, staging);
    assert!(ok > 200, "only {ok} requests");
    assert!(failed.is_empty(), "{} failed: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    // The restarted server reattached: it reads the router's numbers again.
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.url)).unwrap().text().unwrap();
    assert!(metrics.contains("listener=\"staging.web\""), "{metrics}");
    let status: Value =
        serde_json::from_str(&cli_ok(&server, &["rollout", "status", "web", "--env", "staging", "--json"])).unwrap();
    assert_eq!(status["phase"], "succeeded");
}

/// Monitor and deploy together: a canary's PromQL check (templated with the version)
/// fails once the monitor sees the new version's numbers cross its bound, and an alert
/// firing for the service while a rollout waits aborts it and links the incident.
#[test]
fn promql_checks_and_firing_alerts_roll_canaries_back() {
    if !python_available() {
        return;
    }
    let port = free_port();
    let delivery = format!(
        "services:
  web:
    artifact: web
    run: python3 upstream.py {{port}}
    health: {{ path: /healthz, interval: 200ms }}
    metrics: {{ path: /metrics }}
    stop_grace: 2s
    drain_timeout: 1s
environments:
  production:
    listen: 127.0.0.1:{port}
    strategy:
      canary:
        steps: [ {{ weight: 50, pause: 1m }} ]
    analysis:
      min_requests: 1
      queries:
        - {{ name: served, query: 'sum(app_requests_total{{version=\"{{{{version}}}}\",env=\"{{{{env}}}}\"}})', max: 3 }}
"
    );
    let repo = service_repo(&delivery);
    let conf = tempfile::tempdir().unwrap();
    let prometheus = conf.path().join("prometheus.yml");
    std::fs::write(&prometheus, "global:\n  scrape_interval: 500ms\n").unwrap();
    let alertmanager = conf.path().join("alertmanager.yml");
    std::fs::write(&alertmanager, "route:\n  receiver: team\n  group_wait: 0s\nreceivers:\n  - name: team\n").unwrap();
    let server = Server::start_with(
        Backend::Sqlite,
        &["--prometheus-config", prometheus.to_str().unwrap(), "--alertmanager-config", alertmanager.to_str().unwrap()],
    );
    server.add_project("shop", repo.path());
    wait_release(&server, "v1");
    cli_ok(&server, &["deploy", "web", "--env", "production", "--wait"]);
    assert_eq!(get(port).1, "v1");

    // v2 as a canary: the check holds it while the monitor has no numbers, passes while
    // v2 has served three requests or fewer, and fails past that.
    repo.commit(&[("app/VERSION", "2")], "Second");
    wait_release(&server, "v2");
    cli_ok(&server, &["deploy", "web", "--env", "production", "--release", "v2"]);
    let status = || -> Value {
        serde_json::from_str(&cli_ok(&server, &["rollout", "status", "web", "--env", "production", "--json"])).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status();
        if s["phase"] == "rolled_back" {
            assert!(s["message"].as_str().unwrap().contains("analysis query `served`"), "{s}");
            assert!(s["message"].as_str().unwrap().contains("above its max 3"), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "not rolled back: {s}\n{}", server.log());
        let _ = reqwest::blocking::get(format!("http://127.0.0.1:{port}/"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(port).1, "v1");

    // v3 as a canary, no traffic: it waits; an alert for the service aborts it.
    repo.commit(&[("app/VERSION", "3")], "Third");
    wait_release(&server, "v3");
    cli_ok(&server, &["deploy", "web", "--env", "production", "--release", "v3"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status()["phase"] != "progressing" {
        assert!(Instant::now() < deadline, "v3 not progressing: {}", status());
        std::thread::sleep(Duration::from_millis(100));
    }
    let rollout_id = status()["id"].as_i64().unwrap();
    let (code, body) = server.api(
        "POST",
        "/api/v2/alerts",
        Some(serde_json::json!([{"labels": {"alertname": "CheckoutErrors", "service": "web", "env": "production"}}])),
    );
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status();
        if s["phase"] == "rolled_back" {
            assert!(s["message"].as_str().unwrap().contains("CheckoutErrors"), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "the alert did not abort the rollout: {s}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, incidents) = server.api("GET", "/api/v1/incidents", None);
    let incident = &incidents["incidents"][0];
    assert_eq!(incident["rollout_id"], rollout_id, "{incident}");
    assert_eq!((incident["service"].as_str(), incident["environment"].as_str()), (Some("web"), Some("production")));
    let (_, shown) = server.api("GET", &format!("/api/v1/incidents/{}", incident["id"]), None);
    let kinds: Vec<&str> = shown["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"rollback"), "{shown}");
}

/// Issue 15, item 11: `kill -9` of `mobius serve` in the middle of a `recreate`.
/// The agent finishes the recreate on its own, so requests fail for no longer than
/// in the same recreate without the crash (it used to be until the server was back).
#[test]
fn kill_9_of_the_server_during_a_recreate_adds_no_downtime() {
    if !python_available() {
        return;
    }
    let port = free_port();
    let config = format!(
        "services:\n  web:\n    artifact: web\n    run: python3 upstream.py {{port}}\n    health: {{ path: /healthz, interval: 200ms }}\n    instances: 2\n    stop_grace: 2s\n    drain_timeout: 1s\nenvironments:\n  only:\n    listen: 127.0.0.1:{port}\n    strategy: recreate\n"
    );
    let repo = service_repo(&config);
    let mut server = Server::start(crate::support::Backend::Sqlite);
    server.add_project("shop", repo.path());
    wait_release(&server, "v1");
    cli_ok(&server, &["deploy", "web", "--env", "only", "--wait"]);
    let load = Load::start(port);
    let serves = |version: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::blocking::get(format!("http://127.0.0.1:{port}/")).ok().and_then(|r| r.text().ok()).as_deref()
            != Some(version)
        {
            assert!(Instant::now() < deadline, "{version} never served");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Without a crash.
    repo.commit(&[("app/upstream.py", &format!("{APP}\n# v2\n"))], "v2");
    wait_release(&server, "v2");
    let from = Instant::now();
    cli_ok(&server, &["deploy", "web", "--env", "only", "--wait"]);
    serves("v2");
    std::thread::sleep(Duration::from_millis(500));
    let baseline = load.failure_window(from, Instant::now());

    // Killed once the agent holds the plan.
    repo.commit(&[("app/upstream.py", &format!("{APP}\n# v3\n"))], "v3");
    wait_release(&server, "v3");
    let from = Instant::now();
    cli_ok(&server, &["deploy", "web", "--env", "only"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = server.cli(&["rollout", "status", "web", "--env", "only", "--json"]);
        if String::from_utf8_lossy(&status.stdout).contains("the agent carries it out") {
            break;
        }
        assert!(Instant::now() < deadline, "the recreate never started\n{}", server.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill9();
    serves("v3");
    std::thread::sleep(Duration::from_millis(500));
    let crashed = load.failure_window(from, Instant::now());
    server.restart();
    load.finish();
    eprintln!("requests failed for {baseline:?} without the crash, {crashed:?} with it");
    assert!(crashed <= baseline + Duration::from_secs(1), "{crashed:?} with the crash, {baseline:?} without");
    // The restarted server adopts what the agent did.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cli_ok(&server, &["rollout", "status", "web", "--env", "only", "--json"]);
        let status: Value = serde_json::from_str(&status).unwrap();
        if status["phase"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 18: `runtime: docker` through the server: a release deployed as containers of
/// Debian's Python, then a canary of the next release held at 50%; `kill -9` of the
/// server under load drops no request (the agent keeps the containers and the router),
/// and the restarted server finds the canary as it was.
#[test]
fn containers_serve_through_a_kill_9_of_the_server_during_a_canary() {
    if !crate::support::docker_with_test_images() {
        return;
    }
    let port = free_port();
    let delivery = format!(
        "services:
  web:
    artifact: web
    runtime: docker
    image: mobius-test/python:3-1
    run: python3 /release/upstream.py {{port}}
    env: {{ BIND: 0.0.0.0 }}
    resources: {{ memory: 256m }}
    health: {{ path: /healthz, interval: 200ms }}
    stop_grace: 2s
    drain_timeout: 1s
environments:
  production:
    listen: 127.0.0.1:{port}
    strategy:
      canary:
        steps: [ {{ weight: 50, pause: {{}} }} ]
"
    );
    let repo = service_repo(&delivery);
    let mut server = Server::start(crate::support::Backend::Sqlite);
    server.add_project("boxed", repo.path());
    wait_release(&server, "v1");
    cli_ok(&server, &["deploy", "web", "--env", "production", "--wait"]);
    repo.commit(&[("app/upstream.py", &format!("{APP}\n# v2\n"))], "v2");
    wait_release(&server, "v2");
    cli_ok(&server, &["deploy", "web", "--env", "production"]);
    // The canary holds at 50% (its pause waits for `mobius promote`).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value =
            serde_json::from_str(&cli_ok(&server, &["rollout", "status", "web", "--env", "production", "--json"]))
                .unwrap();
        if status["weights"]["v2"] == 50 {
            break;
        }
        assert!(Instant::now() < deadline, "the canary never reached 50%: {status}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, failed) = through_a_kill_9(&mut server, port);
    assert!(ok > 100, "only {ok} requests");
    assert!(failed.is_empty(), "{} failed: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    let status: Value =
        serde_json::from_str(&cli_ok(&server, &["rollout", "status", "web", "--env", "production", "--json"])).unwrap();
    assert_eq!(status["weights"]["v2"], 50, "{status}");
    // The instances are containers of the agent: when the agent stops (its data
    // directory goes with the server here), it stops them and they are removed.
    let data = server.data();
    assert!(crate::support::instance_containers(&data).len() >= 2, "stable and canary containers");
    drop(server);
    crate::support::wait_for_no_instance_containers(&data);
}

/// Issue 18: the pipeline builds the service's image (`mobius/docker-build`), the
/// release records the image's id in its manifest and provenance, and the instances
/// run that image, whatever its tag names later.
#[test]
fn a_release_records_the_image_the_pipeline_built_and_its_instances_run_it() {
    if !crate::support::docker_with_test_images() {
        return;
    }
    let tag = format!("mobius-test/web-{}:latest", std::process::id());
    let workflow = format!(
        "on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: mobius/docker-build@v1
        with: {{ context: app, tags: '{tag}' }}
      - uses: actions/upload-artifact@v4
        with: {{ name: web, path: app/ }}
"
    );
    let dockerfile = "FROM mobius-test/python:3-1\nCOPY upstream.py /srv/upstream.py\nENV BIND=0.0.0.0\nCMD [\"sh\", \"-c\", \"exec python3 /srv/upstream.py $PORT\"]\n";
    let port = free_port();
    let delivery = format!(
        "services:
  web:
    artifact: web
    runtime: docker
    image: {tag}
    health: {{ path: /healthz, interval: 200ms }}
    stop_grace: 2s
    drain_timeout: 1s
environments:
  production:
    listen: 127.0.0.1:{port}
    strategy: recreate
"
    );
    let repo = Repo::new(&[
        (".github/workflows/build.yml", &workflow),
        ("app/upstream.py", APP),
        ("app/Dockerfile", dockerfile),
        ("mobius.yaml", &delivery),
    ]);
    let server = Server::start(crate::support::Backend::Sqlite);
    server.add_project("built", repo.path());
    let listed = wait_release(&server, "v1");
    let (status, release) = server.api("GET", &format!("/api/v1/releases/{}", listed["id"]), None);
    assert_eq!(status, 200, "{release}");
    let inspect =
        std::process::Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", &tag]).output().unwrap();
    let id = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "the pipeline built {tag}: {id}");
    let manifest = release["manifest"].as_str().unwrap();
    assert!(manifest.contains(&format!("image {id}  {tag}")), "{manifest}");
    let subjects = release["provenance"]["subject"].as_array().unwrap();
    assert!(
        subjects.iter().any(|s| s["name"] == tag.as_str() && s["digest"]["sha256"] == id.trim_start_matches("sha256:")),
        "{subjects:?}"
    );
    cli_ok(&server, &["deploy", "web", "--env", "production", "--wait"]);
    let answer = reqwest::blocking::get(format!("http://127.0.0.1:{port}/")).unwrap().text().unwrap();
    assert_eq!(answer, "v1");
    let data = server.data();
    let mut inspect = std::process::Command::new("docker");
    inspect.args(["inspect", "-f", "{{.Image}}"]).args(crate::support::instance_containers(&data));
    let running = String::from_utf8_lossy(&inspect.output().unwrap().stdout).to_string();
    assert!(running.lines().any(|image| image == id), "the instance runs the recorded image {id}: {running}");
    drop(server);
    crate::support::wait_for_no_instance_containers(&data);
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &tag]).output();
}
