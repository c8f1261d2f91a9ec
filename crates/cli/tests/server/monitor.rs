//! The monitor inside `mobius serve`: a prometheus.yml's targets scraped and counted
//! on `/metrics`, and a bad configuration refused at start with its position.

use crate::support::{Backend, Server};
use std::time::{Duration, Instant};

/// An exporter on a thread: every request gets the same two series.
fn exporter() -> String {
    crate::support::exporter(|| {
        "# TYPE jobs_total counter\njobs_total{queue=\"a\"} 3\njobs_total{queue=\"b\"} 4\n".to_string()
    })
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A prometheus.yml in `dir` scraping one exporter every 200 ms as job `app`.
fn app_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 200ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n", exporter()),
    )
    .unwrap();
    config
}

#[test]
fn prometheus_config_targets_are_scraped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = app_config(dir.path());
    let server = Server::start_with(Backend::Sqlite, &["--prometheus-config", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = reqwest::blocking::get(format!("{}/metrics", server.url)).unwrap().text().unwrap();
        // Two scraped series and five of the scrape itself (up, scrape_*), several scrapes
        // (Mobius scrapes itself too, under job `mobius`).
        let (_, series) = server.api("GET", "/api/v1/query?query=count(%7Bjob%3D%22app%22%7D)", None);
        let (_, scrapes) =
            server.api("GET", "/api/v1/query?query=count_over_time(up%7Bjob%3D%22app%22%7D%5B1m%5D)", None);
        if metric(&text, "mobius_monitor_targets_up") >= 1.0
            && series["data"]["result"][0]["value"][1] == "7"
            && scrapes["data"]["result"][0]["value"][1].as_str().is_some_and(|n| n.parse::<f64>().unwrap() >= 3.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "not scraped:\n{text}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, targets) = server.api("GET", "/api/v1/targets", None);
    assert_eq!(code, 200, "{targets}");
    let active = targets["data"]["activeTargets"].as_array().unwrap();
    let app = active.iter().find(|t| t["labels"]["job"] == "app").unwrap();
    assert_eq!(app["health"], "up", "{targets}");

    // PromQL on Prometheus' HTTP API, as GET and as a form POST.
    let (code, answer) = server.api("GET", "/api/v1/query?query=sum%20by%20(job)%20(jobs_total)", None);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["data"]["resultType"], "vector", "{answer}");
    assert_eq!(answer["data"]["result"][0]["metric"]["job"], "app", "{answer}");
    assert_eq!(answer["data"]["result"][0]["value"][1], "7", "{answer}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let (code, answer) = server.post_raw(
        "/api/v1/query_range",
        &[
            ("Authorization", &format!("Bearer {}", server.token)),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        // Three scrapes 200 ms apart are behind us: the last 300 ms all have data.
        format!("query=jobs_total%7Bqueue%3D%22b%22%7D&start={}&end={now}&step=100ms", now - 0.3).into_bytes(),
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["data"]["resultType"], "matrix", "{answer}");
    let values = answer["data"]["result"][0]["values"].as_array().unwrap();
    assert!(values.len() >= 3 && values.iter().all(|v| v[1] == "4"), "{answer}");
    let (code, answer) = server.api("GET", "/api/v1/query?query=sum(", None);
    assert_eq!((code, answer["errorType"].as_str()), (400, Some("bad_data")), "{answer}");

    // What the store holds: label names and values, series by selector.
    let (_, labels) = server.api("GET", "/api/v1/labels", None);
    for name in ["__name__", "instance", "job", "queue"] {
        assert!(labels["data"].as_array().unwrap().iter().any(|n| n == name), "{name}: {labels}");
    }
    let (_, labels) = server.api("GET", "/api/v1/labels?match[]=up", None);
    assert_eq!(labels["data"], serde_json::json!(["__name__", "instance", "job"]), "{labels}");
    let (_, values) = server.api("GET", "/api/v1/label/queue/values", None);
    assert_eq!(values["data"], serde_json::json!(["a", "b"]), "{values}");
    let (code, series) = server.api("GET", "/api/v1/series?match[]=jobs_total%7Bqueue%3D%22a%22%7D", None);
    assert_eq!(code, 200, "{series}");
    assert_eq!(series["data"].as_array().unwrap().len(), 1, "{series}");
    assert_eq!(series["data"][0]["queue"], "a", "{series}");
    let (code, answer) = server.api("GET", "/api/v1/series", None);
    assert_eq!((code, answer["errorType"].as_str()), (400, Some("bad_data")), "{answer}");
    let (_, meta) = server.api("GET", "/api/v1/metadata?metric=jobs_total", None);
    assert_eq!(
        meta["data"],
        serde_json::json!({"jobs_total": [{"type": "counter", "help": "", "unit": ""}]}),
        "{meta}"
    );

    // POST /-/reload and SIGHUP read the file again; a broken file changes nothing.
    let write_targets = |targets: &[String]| {
        let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        std::fs::write(&config, format!("scrape_configs:\n  - job_name: app\n    scrape_interval: 200ms\n    static_configs:\n      - targets: [{list}]\n")).unwrap();
    };
    let (first, second) = (app["labels"]["instance"].as_str().unwrap().to_string(), exporter());
    write_targets(&[first.clone(), second.clone()]);
    let (code, answer) = server.api("POST", "/-/reload", None);
    assert_eq!((code, answer["targets"].as_u64()), (200, Some(2)), "{answer}");
    std::fs::write(&config, "scrape_configs: nope\n").unwrap();
    let (code, answer) = server.api("POST", "/-/reload", None);
    assert_eq!(code, 422, "{answer}");
    assert!(answer.to_string().contains("prometheus.yml:1:17"), "{answer}");
    let count = || {
        let (_, targets) = server.api("GET", "/api/v1/targets", None);
        targets["data"]["activeTargets"].as_array().unwrap().iter().filter(|t| t["labels"]["job"] == "app").count()
    };
    assert_eq!(count(), 2);
    write_targets(&[second]);
    std::process::Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() != 1 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, audit) = server.api("GET", "/api/v1/audit", None);
    assert!(audit.to_string().contains("monitor.reload"), "{audit}");
}

#[test]
fn a_bad_prometheus_config_stops_the_server_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "scrape_configs:\n  - job_name: app\n    scrape_interval: often\n").unwrap();
    let out = std::process::Command::new(crate::support::BIN)
        .args(["serve", "--data", dir.path().join("data").to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--prometheus-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("prometheus.yml:3:22"), "{stderr}");
    assert!(stderr.contains("scrape_interval must be a duration"), "{stderr}");
}

#[test]
fn file_sd_targets_are_relabelled_and_series_dropped_by_metric_relabelling() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    let (first, second) = (exporter(), exporter());
    let groups = |core: &[&str], other: &[&str]| {
        serde_json::json!([{"targets": core, "labels": {"team": "core"}}, {"targets": other, "labels": {"team": "other"}}])
            .to_string()
    };
    std::fs::write(dir.path().join("targets/a.json"), groups(&[&first], &[&second])).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 200ms\nscrape_configs:\n  - job_name: files\n    file_sd_configs: [{ files: ['targets/*.json'] }]\n    relabel_configs:\n      - { source_labels: [team], regex: core, action: keep }\n      - { source_labels: [__address__], regex: '([^:]+):.*', target_label: host }\n    metric_relabel_configs:\n      - { source_labels: [queue], regex: b, action: drop }\n",
    )
    .unwrap();
    let server = Server::start_with(Backend::Sqlite, &["--prometheus-config", config.to_str().unwrap()]);
    let instances = || {
        let (_, answer) = server.api("GET", "/api/v1/query?query=jobs_total", None);
        let mut found: Vec<(String, String, String)> = answer["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let m = &r["metric"];
                let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
                (s("instance"), s("host"), s("queue"))
            })
            .collect();
        found.sort();
        found
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while instances().is_empty() {
        assert!(Instant::now() < deadline, "nothing scraped:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Only the core team's target, with the host taken from its address; queue b dropped.
    assert_eq!(instances(), [(first.clone(), "127.0.0.1".to_string(), "a".to_string())]);
    // The other team's target is listed as dropped, with its labels as discovered.
    let (_, targets) = server.api("GET", "/api/v1/targets", None);
    let dropped = targets["data"]["droppedTargets"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{targets}");
    assert_eq!(dropped[0]["discoveredLabels"]["__address__"], second.as_str(), "{targets}");
    assert_eq!(dropped[0]["discoveredLabels"]["team"], "other", "{targets}");
    assert_eq!(dropped[0]["discoveredLabels"]["job"], "files", "{targets}");
    // The file changes: the other exporter joins the core team and is scraped too.
    std::fs::write(dir.path().join("targets/a.json"), groups(&[&first, &second], &[])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while instances().len() != 2 {
        assert!(Instant::now() < deadline, "file change not picked up: {:?}", instances());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A file that does not parse keeps the targets it had.
    std::fs::write(dir.path().join("targets/a.json"), "[{\"targets\": 3}]").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (_, targets) = server.api("GET", "/api/v1/targets", None);
    let files =
        targets["data"]["activeTargets"].as_array().unwrap().iter().filter(|t| t["labels"]["job"] == "files").count();
    assert_eq!(files, 2, "{targets}");
    assert!(server.log().contains("keeping the previous targets"), "{}", server.log());
}

/// The monitor pages in headless Chromium: a query drawn as a chart, a log search, the
/// alerts list.
#[test]
fn the_query_logs_and_alerts_pages_work_in_the_browser() {
    let Some(browser) = crate::ui::browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = app_config(dir.path());
    let alertmanager = dir.path().join("alertmanager.yml");
    std::fs::write(&alertmanager, "route:\n  receiver: team\nreceivers:\n  - name: team\n").unwrap();
    let server = Server::start_with(
        Backend::Sqlite,
        &["--prometheus-config", config.to_str().unwrap(), "--alertmanager-config", alertmanager.to_str().unwrap()],
    );
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos().to_string();
    server.api(
        "POST",
        "/loki/api/v1/push",
        Some(serde_json::json!({"streams": [{"stream": {"service": "web"}, "values": [[ns, "payment <declined> for order 7"]]}]})),
    );
    server.api(
        "POST",
        "/api/v2/alerts",
        Some(serde_json::json!([{"labels": {"alertname": "DiskAlmostFull"}, "annotations": {"summary": "93% used"}}])),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.api("GET", "/api/v1/query?query=jobs_total", None).1["data"]["result"].as_array().map_or(0, Vec::len)
        < 2
    {
        assert!(Instant::now() < deadline, "not scraped");
        std::thread::sleep(Duration::from_millis(100));
    }
    let client = &browser.client;
    browser.runtime.block_on(async {
        use fantoccini::Locator;
        let base = &server.url;
        crate::ui::sign_in(client, base, &server.token).await;
        client.goto(&format!("{base}/ui/query")).await.unwrap();
        client.find(Locator::Id("expr")).await.unwrap().send_keys("jobs_total").await.unwrap();
        client.find(Locator::Id("run")).await.unwrap().click().await.unwrap();
        let chart = client.wait().for_element(Locator::Css("svg.chart")).await.unwrap();
        assert_eq!(chart.find_all(Locator::Css("path")).await.unwrap().len(), 2, "a line per series");
        let legend = client.find(Locator::Css("ul.legend")).await.unwrap().text().await.unwrap();
        assert!(legend.contains("queue=\"a\"") && legend.contains("queue=\"b\""), "{legend}");
        let values = client.find(Locator::Css("table.values")).await.unwrap().text().await.unwrap();
        assert!(values.contains("3.0000") && values.contains("4.0000"), "{values}");
        // A query that does not parse says why on the page.
        client.goto(&format!("{base}/ui/query?expr=sum(")).await.unwrap();
        let error = client.find(Locator::Id("query-error")).await.unwrap().text().await.unwrap();
        assert!(!error.is_empty());

        client.goto(&format!("{base}/ui/logs")).await.unwrap();
        client.find(Locator::Id("logql")).await.unwrap().send_keys("{service=\"web\"} |= \"declined\"").await.unwrap();
        client.find(Locator::Id("search")).await.unwrap().click().await.unwrap();
        let logs = client.wait().for_element(Locator::Css("table.logs td.line")).await.unwrap().text().await.unwrap();
        assert_eq!(logs, "payment <declined> for order 7", "escaped and shown as written");

        client.goto(&format!("{base}/ui/alerts")).await.unwrap();
        let alerts = client.find(Locator::Css("table.alerts")).await.unwrap().text().await.unwrap();
        assert!(
            alerts.contains("DiskAlmostFull") && alerts.contains("93% used") && alerts.contains("team"),
            "{alerts}"
        );
    });
}
