//! The web UI in a real headless Chromium (Debian's `chromium` and `chromedriver`):
//! sign in, the runs list, the dispatch form, and a run page with its live log,
//! ANSI colours, a foldable group, the SVG job graph, test report and artifacts.

use crate::support::{Backend, Repo, Server};
use fantoccini::{ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WF: &str = r#"
name: Release
on:
  push:
  workflow_dispatch:
    inputs:
      target:
        description: where to ship
        required: true
      dry_run:
        type: boolean
        default: true
      flavour:
        type: choice
        options: [vanilla, mint]
        default: vanilla
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: |
          printf '\033[31mred alert\033[0m plain\n'
          echo "::group::Details inside"
          echo "folded line"
          echo "::endgroup::"
          echo "target=${{ inputs.target }} dry=${{ inputs.dry_run }} flavour=${{ inputs.flavour }}"
          mkdir -p out && echo artifact-body > out/result.txt
          printf '<testsuite name="ui"><testcase name="ok"/><testcase name="broken"><failure message="it broke"/></testcase></testsuite>' > TEST-ui.xml
      - uses: actions/upload-artifact@v4
        with:
          name: result
          path: out/result.txt
  ship:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: sleep 1; echo shipped
"#;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(program: &[&str]) -> Option<String> {
    program
        .iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|p| p.to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Debian's headless Chromium driven through chromedriver, with a runtime to drive it.
pub struct Browser {
    pub client: fantoccini::Client,
    pub runtime: tokio::runtime::Runtime,
    _driver: Driver,
}

impl Drop for Browser {
    /// Ends the WebDriver session, so chromedriver stops the browser it started
    /// (killing chromedriver alone leaves Chromium running, orphaned).
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.runtime.block_on(client.close());
    }
}

/// The processes whose parent is `pid` (from `/proc`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).ok().and_then(|stat| {
                // `pid (comm) state ppid ...`: the fields after the command's closing parenthesis.
                let after = stat.rsplit_once(')')?.1;
                after.split_whitespace().nth(1)?.parse::<u32>().ok()
            }) == Some(pid)
        })
        .collect()
}

/// A finished UI test leaves no browser behind.
#[test]
fn a_dropped_browser_leaves_no_chromium_running() {
    let Some(browser) = browser() else {
        return;
    };
    let started = children_of(browser._driver.0.id());
    assert!(!started.is_empty(), "chromedriver started no browser");
    drop(browser);
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = || started.iter().filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()).count();
    while alive() > 0 {
        assert!(Instant::now() < deadline, "{} browser process(es) outlived the test", alive());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the browser, or says why it cannot (a failure under CI, where `.ci/run`
/// installs it; a skip on a developer's machine without it).
pub fn browser() -> Option<Browser> {
    let (Some(driver), Some(chromium)) = (find(&["chromedriver"]), find(&["chromium", "chromium-browser"])) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium and chromedriver are required under CI (.ci/run installs them)");
        }
        eprintln!("skipped: the UI test needs Debian's chromium and chromium-driver");
        return None;
    };
    let port = free_port();
    let driver = Driver(
        Command::new(driver).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": which(&chromium), "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600"]}),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => panic!("chromedriver: {e}"),
            }
        }
    });
    Some(Browser { client, runtime, _driver: driver })
}

/// Signs in on the login page with a token.
pub async fn sign_in(client: &fantoccini::Client, base: &str, token: &str) {
    client.goto(&format!("{base}/ui/login")).await.unwrap();
    client.find(Locator::Id("token")).await.unwrap().send_keys(token).await.unwrap();
    client.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.current_url().await.unwrap().path().ends_with("/ui/login") {
        assert!(Instant::now() < deadline, "signing in failed: {}", client.source().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_web_ui_signs_in_dispatches_and_shows_a_live_run() {
    let Some(browser) = browser() else {
        return;
    };
    let server = Server::start(Backend::Sqlite);
    let repo = Repo::new(&[(".github/workflows/release.yml", WF)]);
    let first = server.add_project("shop", repo.path())["runs"][0]["id"].as_i64().unwrap();
    server.wait_run(first, "completed");
    let client = &browser.client;
    browser.runtime.block_on(async {
        let base = &server.url;

        // Signing in: a wrong token is refused, the right one lands on the runs list.
        client.goto(&format!("{base}/ui/runs")).await.unwrap();
        assert!(client.current_url().await.unwrap().path().ends_with("/ui/login"));
        client.find(Locator::Id("token")).await.unwrap().send_keys("mbx_wrong").await.unwrap();
        client.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
        let alert = client.wait().for_element(Locator::Css(".error")).await.unwrap().text().await.unwrap();
        assert!(alert.contains("not valid"), "{alert}");
        client.find(Locator::Id("token")).await.unwrap().send_keys(&server.token).await.unwrap();
        client.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
        let runs = client.wait().for_element(Locator::Css("#runs tbody tr")).await.unwrap().text().await.unwrap();
        assert!(
            runs.contains("Release #1") && runs.contains("push") && runs.contains("main") && runs.contains("Alice"),
            "{runs}"
        );

        // The dispatch form shows the workflow's inputs with their types.
        client.goto(&format!("{base}/ui/projects/shop")).await.unwrap();
        client.find(Locator::Css("a.dispatch")).await.unwrap().click().await.unwrap();
        client.wait().for_element(Locator::Id("dispatch-form")).await.unwrap();
        assert_eq!(
            client
                .find(Locator::Css("select[name='input.flavour'] option[selected]"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "vanilla"
        );
        client.find(Locator::Css("input[name='input.target']")).await.unwrap().send_keys("production").await.unwrap();
        client.find(Locator::Css("input[type=checkbox][name='input.dry_run']")).await.unwrap().click().await.unwrap();
        client
            .find(Locator::Css("select[name='input.flavour'] option:nth-child(2)"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client.find(Locator::Id("dispatch")).await.unwrap().click().await.unwrap();

        // The run page follows the run live, then shows the finished run.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = client.find(Locator::Id("run-state")).await;
            if let Ok(el) = state {
                if el.text().await.unwrap_or_default() == "success"
                    && client.find(Locator::Css("#live[data-done=true]")).await.is_ok()
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the run page never showed success:\n{}",
                client.source().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(800)).await; // the page reloads once the run ends
        client.wait().for_element(Locator::Css("#live[data-done=true]")).await.unwrap();
        let red = client.find(Locator::Css(".log .fg31")).await.unwrap();
        // Successful steps are folded: read what their logs hold, shown or not.
        assert_eq!(red.prop("textContent").await.unwrap().unwrap_or_default(), "red alert");
        let group = client.find(Locator::Css(".log details.group summary")).await.unwrap();
        assert_eq!(group.prop("textContent").await.unwrap().unwrap_or_default(), "Details inside");
        let logs = client
            .find(Locator::Css("section.jobs"))
            .await
            .unwrap()
            .prop("textContent")
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(logs.contains("target=production dry=false flavour=mint"), "{logs}");
        assert!(!logs.contains("::group::"), "{logs}");
        let nodes = client.find_all(Locator::Css("svg.job-graph g.job.success")).await.unwrap();
        assert_eq!(nodes.len(), 2, "both jobs drawn as succeeded");
        assert_eq!(client.find_all(Locator::Css("svg.job-graph path.edge")).await.unwrap().len(), 1);
        let tests = client.find(Locator::Id("tests")).await.unwrap().text().await.unwrap();
        assert!(tests.contains("2 tests: 1 passed, 1 failed") && tests.contains("it broke"), "{tests}");
        let artifact = client.find(Locator::Css("#artifacts a")).await.unwrap();
        assert_eq!(artifact.text().await.unwrap(), "result/result.txt");
        if let Ok(dir) = std::env::var("MOBIUS_UI_SCREENSHOTS") {
            let png = client.screenshot().await.unwrap();
            std::fs::write(std::path::Path::new(&dir).join("run.png"), png).unwrap();
        }
        client.clone().close().await.unwrap();
    });
}

fn which(program: &str) -> String {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(program)).find(|p| p.is_file()))
        .map_or_else(|| program.to_string(), |p| p.display().to_string())
}

#[test]
fn ui_forms_need_the_sessions_csrf_value_and_the_cookie_only_reads_the_api() {
    let server = Server::start(Backend::Sqlite);
    let repo = Repo::new(&[(".github/workflows/release.yml", WF)]);
    let id = server.add_project("shop", repo.path())["runs"][0]["id"].as_i64().unwrap();
    server.wait_run(id, "completed");
    let cookie = format!("mobius_token={}", server.token);
    let form = [("Cookie", cookie.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    for body in ["", "csrf=forged"] {
        let (status, _) = server.post_raw(&format!("/ui/runs/{id}/rerun"), &form, body.as_bytes().to_vec());
        assert_eq!(status, 403, "a form post without the session's CSRF value is refused ({body:?})");
    }
    // The run page carries the value; with it the re-run is queued.
    let client = reqwest::blocking::Client::new();
    let page =
        client.get(format!("{}/ui/runs/{id}", server.url)).header("Cookie", &cookie).send().unwrap().text().unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (status, _) = server.post_raw(&format!("/ui/runs/{id}/rerun"), &form, format!("csrf={csrf}").into_bytes());
    assert_eq!(status, 200, "redirected to the new run's page");
    assert_eq!(server.wait_runs("shop", 2).len(), 2);
    // The cookie authenticates reads of the API, never changes through it.
    let (status, _) =
        server.post_raw(&format!("/api/v1/runs/{id}/rerun"), &[("Cookie", cookie.as_str())], b"{}".to_vec());
    assert_eq!(status, 401);
    let status =
        client.get(format!("{}/api/v1/runs/{id}", server.url)).header("Cookie", &cookie).send().unwrap().status();
    assert_eq!(status.as_u16(), 200);
}

/// Waits in the browser until `selector` matches, at most `within` after `since`:
/// the time it took from `since`.
async fn shows_within(client: &fantoccini::Client, selector: &str, since: Instant, within: Duration) -> Duration {
    loop {
        if client.find(Locator::Css(selector)).await.is_ok() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "`{selector}` did not appear within {within:?}:\n{}",
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs blocking client code (the test server's helpers) off the browser's runtime.
fn off<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().expect("the helper thread"))
}

/// The page was not reloaded: the mark set on its window is still there.
async fn not_reloaded(client: &fantoccini::Client) {
    let mark = client.execute("return window.__mobiusMark === 'kept';", vec![]).await.unwrap();
    assert_eq!(mark, serde_json::json!(true), "the page was reloaded");
}

/// Issue 16, item 13: the runs, deploys, incidents and alerts lists show a change within
/// 2 s without reloading the page, in headless Chromium.
#[test]
fn lists_update_live_within_two_seconds_without_reloading() {
    let Some(browser) = browser() else {
        return;
    };
    let python = crate::deploy::python_available();
    let dir = tempfile::tempdir().unwrap();
    let alertmanager = dir.path().join("alertmanager.yml");
    std::fs::write(
        &alertmanager,
        "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n  - name: team\n",
    )
    .unwrap();
    let server = Server::start_with(Backend::Sqlite, &["--alertmanager-config", alertmanager.to_str().unwrap()]);
    let port = crate::deploy::free_port();
    let delivery = format!(
        "services:\n  web:\n    artifact: web\n    run: python3 upstream.py {{port}}\n    health: {{ path: /healthz, interval: 200ms }}\nenvironments:\n  only:\n    listen: 127.0.0.1:{port}\n    strategy: recreate\n"
    );
    let workflow = crate::deploy::WORKFLOW.replace("on: push", "on: [push, workflow_dispatch]");
    let repo = Repo::new(&[
        (".github/workflows/build.yml", &workflow),
        ("app/upstream.py", include_str!("../../../deploy/tests/upstream.py")),
        ("mobius.yaml", &delivery),
    ]);
    let first = server.add_project("shop", repo.path())["runs"][0]["id"].as_i64().unwrap();
    server.wait_run(first, "completed");
    let limit = Duration::from_secs(2);
    let client = &browser.client;
    let server_api = |method: &str, path: &str, body: Option<serde_json::Value>| off(|| server.api(method, path, body));
    browser.runtime.block_on(async {
        let base = &server.url;
        sign_in(client, base, &server.token).await;
        let open = |path: &'static str| async move {
            client.goto(&format!("{base}{path}")).await.unwrap();
            client.execute("window.__mobiusMark = 'kept';", vec![]).await.unwrap();
        };

        // Runs: a dispatched run appears, then its state changes, in place.
        open("/ui/runs").await;
        let since = Instant::now();
        let (code, answer) =
            server_api("POST", "/api/v1/projects/shop/workflows/build.yml/dispatches", Some(serde_json::json!({})));
        assert_eq!(code, 201, "{answer}");
        let run = answer["runs"][0]["id"].as_i64().unwrap();
        let took = shows_within(client, &format!("tr[data-run='{run}']"), since, limit).await;
        eprintln!("runs list: the new run after {took:?}");
        off(|| server.wait_run(run, "completed"));
        let since = Instant::now();
        shows_within(client, &format!("tr[data-run='{run}'] .badge.success"), since, limit).await;
        not_reloaded(client).await;

        // Deploys: a rollout appears and reaches its end in place.
        if python {
            off(|| crate::deploy::wait_release(&server, "v1"));
            open("/ui/deploys").await;
            let since = Instant::now();
            let (code, rollout) = server_api(
                "POST",
                "/api/v1/deployments",
                Some(serde_json::json!({"service": "web", "environment": "only"})),
            );
            assert_eq!(code, 201, "{rollout}");
            let link = format!("#rollouts a[href='/ui/rollouts/{}']", rollout["id"]);
            let took = shows_within(client, &link, since, limit).await;
            eprintln!("deploys list: the rollout after {took:?}");
            not_reloaded(client).await;
        }

        // Alerts and incidents: an alert posted from outside shows on both.
        open("/ui/alerts").await;
        let since = Instant::now();
        let (code, body) = server_api(
            "POST",
            "/api/v2/alerts",
            Some(serde_json::json!([{"labels": {"alertname": "LiveListCheck", "env": "production"}}])),
        );
        assert_eq!(code, 200, "{body}");
        let took = shows_within(client, "tr[data-alert='LiveListCheck']", since, limit).await;
        eprintln!("alerts list: the alert after {took:?}");
        not_reloaded(client).await;

        open("/ui/incidents").await;
        let (_, before) = server_api("GET", "/api/v1/incidents", None);
        let known = before["incidents"].as_array().map_or(0, Vec::len);
        let since = Instant::now();
        let (code, body) = server_api(
            "POST",
            "/api/v2/alerts",
            Some(serde_json::json!([{"labels": {"alertname": "SecondCheck", "env": "staging"}}])),
        );
        assert_eq!(code, 200, "{body}");
        // The incident opens once the alert manager routes the group; the list follows it.
        let opened = loop {
            let (_, list) = server_api("GET", "/api/v1/incidents", None);
            if list["incidents"].as_array().map_or(0, Vec::len) > known {
                break Instant::now();
            }
            assert!(since.elapsed() < Duration::from_secs(10), "no incident opened: {list}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let took = shows_within(client, "#incidents tr.status-open", opened, limit).await;
        eprintln!("incidents list: the incident after {took:?}");
        not_reloaded(client).await;
        client.clone().close().await.unwrap();
    });
}
