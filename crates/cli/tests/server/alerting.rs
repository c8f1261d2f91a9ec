//! Alerting end to end through a real `mobius serve`: a rule with `for: 2s` on a
//! scraped target fires to a webhook on loopback with Alertmanager's version 4
//! payload, opens an incident, escalates level by level while nobody acknowledges,
//! stops when the signed link in a page is used, and resolves with the target; and
//! the Alertmanager API (alerts posted from outside, silences, inhibition).

use crate::support::{Backend, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An exporter whose `queue_depth` gauge the test sets.
fn exporter(depth: Arc<AtomicU64>) -> String {
    crate::support::exporter(move || {
        format!("# TYPE queue_depth gauge\nqueue_depth{{queue=\"jobs\"}} {}\n", depth.load(Ordering::SeqCst))
    })
}

/// What a webhook receiver got: (path, when in Unix milliseconds, JSON body).
type Received = Arc<Mutex<Vec<(String, i64, Value)>>>;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A webhook receiver on loopback recording every POST (an `Authorization` header
/// is recorded as the body's `__authorization__`).
fn receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got: Received = Arc::default();
    let sink = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || {
                let mut data = Vec::new();
                let mut buf = [0u8; 65536];
                loop {
                    let n = stream.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if data.len() < end + 4 + length {
                        continue;
                    }
                    let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut body: Value =
                        serde_json::from_slice(&data[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                    let authorization = text[..end]
                        .lines()
                        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")));
                    if let Some((_, value)) = authorization {
                        body["__authorization__"] = json!(value.trim());
                    }
                    sink.lock().unwrap().push((path, now_ms(), body));
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    return;
                }
            });
        }
    });
    (addr, got)
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>, log: impl Fn() -> String) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn posts(got: &Received, path: &str) -> Vec<(i64, Value)> {
    got.lock().unwrap().iter().filter(|(p, _, _)| p == path).map(|(_, t, b)| (*t, b.clone())).collect()
}

/// The first incident the server opens (waiting up to 5 s for it).
fn first_incident(server: &Server) -> Value {
    wait_for(
        "the incident",
        Duration::from_secs(5),
        || {
            let (_, list) = server.api("GET", "/api/v1/incidents", None);
            list["incidents"].as_array().and_then(|l| l.first().cloned())
        },
        || server.log(),
    )
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn an_alert_fires_to_a_webhook_escalates_until_acknowledged_and_resolves() {
    let depth = Arc::new(AtomicU64::new(10));
    let target = exporter(Arc::clone(&depth));
    let (hooks, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules.yml",
        "groups:\n  - name: queues\n    rules:\n      - alert: QueueTooDeep\n        expr: queue_depth > 5\n        for: 2s\n        labels: { severity: page }\n        annotations:\n          summary: '{{ $labels.queue }} holds {{ $value }} items'\n",
    );
    let prometheus = write(
        dir.path(),
        "prometheus.yml",
        &format!("global:\n  scrape_interval: 200ms\n  evaluation_interval: 500ms\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: worker\n    static_configs:\n      - targets: ['{target}']\n"),
    );
    let alertmanager = write(
        dir.path(),
        "alertmanager.yml",
        &format!(
            "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 100ms\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: team\n    webhook_configs: [{{ url: 'http://{hooks}/team' }}]\n  - name: alice\n    webhook_configs: [{{ url: 'http://{hooks}/alice' }}]\n  - name: lead\n    webhook_configs: [{{ url: 'http://{hooks}/lead' }}]\n  - name: director\n    webhook_configs: [{{ url: 'http://{hooks}/director' }}]\n"
        ),
    );
    let oncall = write(
        dir.path(),
        "oncall.yml",
        "people:\n  - { name: alice, receiver: alice }\nschedules:\n  - { name: primary, start: '2026-01-05T09:00:00Z', shift: 1w, people: [alice] }\npolicies:\n  - name: queues\n    receiver: team\n    levels:\n      - { delay: 0s, targets: [{ schedule: primary }] }\n      - { delay: 2s, targets: [{ receiver: lead }] }\n      - { delay: 2s, targets: [{ receiver: director }] }\n",
    );
    let server = Server::start_with(
        Backend::Sqlite,
        &["--prometheus-config", &prometheus, "--alertmanager-config", &alertmanager, "--oncall-config", &oncall],
    );

    // The route's receiver gets Alertmanager's version 4 payload within `for` plus two
    // evaluation intervals of the alert becoming active.
    let (received_at, payload) = wait_for(
        "the firing notification",
        Duration::from_secs(15),
        || posts(&got, "/team").into_iter().next(),
        || server.log(),
    );
    let (_, alerts) = server.api("GET", "/api/v1/alerts", None);
    let active_at = alerts["data"]["alerts"][0]["activeAt"].as_str().unwrap().to_string();
    let active_ms = chrono::DateTime::parse_from_rfc3339(&active_at).unwrap().timestamp_millis();
    assert!(received_at - active_ms <= 2000 + 2 * 500, "fired {} ms after becoming active", received_at - active_ms);
    assert_eq!(payload["version"], "4", "{payload}");
    assert_eq!(payload["status"], "firing", "{payload}");
    assert_eq!(payload["receiver"], "team", "{payload}");
    assert_eq!(payload["truncatedAlerts"], 0, "{payload}");
    assert_eq!(payload["groupLabels"], json!({"alertname": "QueueTooDeep"}), "{payload}");
    assert_eq!(payload["commonLabels"]["severity"], "page", "{payload}");
    assert_eq!(payload["commonAnnotations"]["summary"], "jobs holds 10 items", "{payload}");
    assert_eq!(payload["externalURL"], server.url, "{payload}");
    assert!(payload["groupKey"].as_str().unwrap().ends_with(":{alertname=\"QueueTooDeep\"}"), "{payload}");
    let alert = &payload["alerts"][0];
    assert_eq!(alert["status"], "firing", "{payload}");
    assert_eq!(alert["labels"]["instance"], target.as_str(), "{payload}");
    assert_eq!(alert["labels"]["job"], "worker", "{payload}");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z", "{payload}");
    assert!(chrono::DateTime::parse_from_rfc3339(alert["startsAt"].as_str().unwrap()).is_ok(), "{payload}");
    assert!(
        alert["generatorURL"].as_str().unwrap().starts_with(&format!("{}/graph?g0.expr=", server.url)),
        "{payload}"
    );
    assert_eq!(alert["fingerprint"].as_str().unwrap().len(), 16, "{payload}");
    let (_, rules) = server.api("GET", "/api/v1/rules", None);
    assert_eq!(rules["data"]["groups"][0]["rules"][0]["state"], "firing", "{rules}");
    let (_, am_alerts) = server.api("GET", "/api/v2/alerts", None);
    assert_eq!(am_alerts[0]["status"]["state"], "active", "{am_alerts}");
    assert_eq!(am_alerts[0]["receivers"][0]["name"], "team", "{am_alerts}");

    // An incident is open; level 1 pages whoever the schedule has on call, with a link.
    let incident = first_incident(&server);
    assert_eq!(incident["status"], "open", "{incident}");
    assert_eq!(incident["policy"], "queues", "{incident}");
    let out = server.cli(&["incidents", "--status", "open"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("jobs holds 10 items") && text.contains("open"), "{text}");
    let out = server.cli(&["alerts"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("active") && text.contains("QueueTooDeep") && text.contains("team"), "{text}");
    let out = server.cli(&["query", "sum(queue_depth)"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{} 10", "{out:?}");
    let (level1_at, page1) =
        wait_for("level 1", Duration::from_secs(5), || posts(&got, "/alice").into_iter().next(), || server.log());
    assert_eq!(page1["mobius"]["level"], 1, "{page1}");
    assert_eq!(page1["mobius"]["incident"], incident["id"], "{page1}");
    assert_eq!(page1["version"], "4", "a page is a version 4 payload too: {page1}");

    // Nobody acknowledges: level 2 after its 2 s delay.
    let (level2_at, page2) =
        wait_for("level 2", Duration::from_secs(6), || posts(&got, "/lead").into_iter().next(), || server.log());
    assert!(level2_at - level1_at >= 1900, "level 2 came {} ms after level 1", level2_at - level1_at);
    assert_eq!(page2["mobius"]["level"], 2, "{page2}");

    // The signed link of the page acknowledges (GET only shows it), and escalation stops.
    let link = page2["mobius"]["acknowledgeURL"].as_str().unwrap().to_string();
    let page = reqwest::blocking::get(&link).unwrap().text().unwrap();
    assert!(page.contains("Acknowledge as lead"), "{page}");
    let (_, still) = server.api("GET", &format!("/api/v1/incidents/{}", incident["id"]), None);
    assert_eq!(still["incident"]["status"], "open", "a GET of the link changes nothing");
    let answer = reqwest::blocking::Client::new().post(&link).send().unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.text().unwrap().contains("escalation has stopped"));
    let forged = format!("{}x", &link[..link.len() - 1]);
    assert_eq!(reqwest::blocking::Client::new().post(&forged).send().unwrap().status(), 403);
    std::thread::sleep(Duration::from_secs(3));
    assert!(posts(&got, "/director").is_empty(), "level 3 paged after the acknowledgement");
    let (_, shown) = server.api("GET", &format!("/api/v1/incidents/{}", incident["id"]), None);
    assert_eq!(shown["incident"]["status"], "acknowledged", "{shown}");
    assert_eq!(shown["incident"]["acknowledged_by"], "link:lead", "{shown}");
    let kinds: Vec<&str> = shown["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["opened", "alert", "escalated", "escalated", "acknowledged"], "{shown}");

    // The queue drains: the alert resolves, the receiver hears it, the incident closes.
    depth.store(1, Ordering::SeqCst);
    let resolved = wait_for(
        "the resolved notification",
        Duration::from_secs(10),
        || posts(&got, "/team").into_iter().map(|(_, b)| b).find(|b| b["status"] == "resolved"),
        || server.log(),
    );
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z", "{resolved}");
    let closed = wait_for(
        "the incident to resolve",
        Duration::from_secs(5),
        || {
            let (_, shown) = server.api("GET", &format!("/api/v1/incidents/{}", incident["id"]), None);
            (shown["incident"]["status"] == "resolved").then_some(shown)
        },
        || server.log(),
    );
    assert!(closed["incident"]["time_to_restore_ms"].as_i64().unwrap() > 2000, "{closed}");
    let (_, audit) = server.api("GET", "/api/v1/audit", None);
    assert!(audit.to_string().contains("incident.acknowledge"), "{audit}");
    assert_eq!(posts(&got, "/team").len(), 2, "firing once, resolved once: {:?}", posts(&got, "/team"));
    let out = server.cli(&["ack", &incident["id"].to_string()]);
    assert!(!out.status.success(), "a resolved incident cannot be acknowledged");
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"), "{out:?}");
}

#[test]
fn alerts_posted_from_outside_are_grouped_silenced_and_inhibited() {
    let (hooks, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let alertmanager = write(
        dir.path(),
        "alertmanager.yml",
        &format!(
            "time_intervals:\n  - name: always\n    time_intervals: [{{ times: [{{ start_time: '00:00', end_time: '24:00' }}], location: Europe/Berlin }}]\n  - name: last-century\n    time_intervals: [{{ years: ['1900:1999'] }}]\nroute:\n  receiver: default\n  group_by: [cluster]\n  group_wait: 300ms\n  group_interval: 500ms\n  repeat_interval: 1h\n  routes:\n    - matchers: ['team=\"db\"']\n      receiver: db\n      group_by: [alertname]\n    - matchers: ['team=\"ops\"']\n      receiver: ops\n      mute_time_intervals: [always]\n    - matchers: ['team=\"web\"']\n      receiver: web\n      mute_time_intervals: [last-century]\n      active_time_intervals: [always]\nreceivers:\n  - name: default\n    webhook_configs: [{{ url: 'http://{hooks}/default' }}]\n  - name: db\n    webhook_configs: [{{ url: 'http://{hooks}/db', max_alerts: 1 }}]\n  - name: ops\n    webhook_configs: [{{ url: 'http://{hooks}/ops' }}]\n  - name: web\n    webhook_configs: [{{ url: 'http://{hooks}/web' }}]\ninhibit_rules:\n  - source_matchers: [severity=critical]\n    target_matchers: [severity=warning]\n    equal: [cluster]\n"
        ),
    );
    let server = Server::start_with(Backend::Sqlite, &["--alertmanager-config", &alertmanager]);
    let alert = |name: &str, labels: Value| {
        let mut l = labels;
        l["alertname"] = json!(name);
        json!({"labels": l, "annotations": {"summary": format!("{name} summary")}})
    };
    // Two alerts of one cluster go out as one group, after group_wait.
    let (code, body) = server.api(
        "POST",
        "/api/v2/alerts",
        Some(json!([
            alert("DiskFull", json!({"cluster": "eu", "severity": "critical"})),
            alert("HighLoad", json!({"cluster": "eu", "severity": "warning"})),
            alert("HighLoad", json!({"cluster": "us", "severity": "warning"})),
            alert("SlowQueries", json!({"team": "db", "instance": "a"})),
            alert("SlowQueries", json!({"team": "db", "instance": "b"})),
            alert("Backup", json!({"team": "ops"})),
            alert("Latency", json!({"team": "web"})),
        ])),
    );
    assert_eq!(code, 200, "{body}");
    let groups = wait_for(
        "three groups",
        Duration::from_secs(5),
        || {
            let p = posts(&got, "/default");
            let db = posts(&got, "/db");
            (p.len() >= 2 && !db.is_empty() && !posts(&got, "/web").is_empty()).then_some((p, db))
        },
        || server.log(),
    );
    let (default, db) = groups;
    let eu = default.iter().map(|(_, b)| b).find(|b| b["groupLabels"]["cluster"] == "eu").unwrap();
    // The warning of eu is inhibited by the critical alert of the same cluster.
    let names: Vec<&str> =
        eu["alerts"].as_array().unwrap().iter().map(|a| a["labels"]["alertname"].as_str().unwrap()).collect();
    assert_eq!(names, ["DiskFull"], "{eu}");
    let us = default.iter().map(|(_, b)| b).find(|b| b["groupLabels"]["cluster"] == "us").unwrap();
    assert_eq!(us["alerts"][0]["labels"]["alertname"], "HighLoad", "another cluster is not inhibited: {us}");
    // The db route groups by alertname and sends one alert of two (max_alerts).
    assert_eq!(db[0].1["groupLabels"], json!({"alertname": "SlowQueries"}), "{:?}", db[0].1);
    assert_eq!(db[0].1["truncatedAlerts"], 1, "{:?}", db[0].1);
    // The ops route is in a mute interval all day, so nothing goes out (the web
    // route, active all day and muted only last century, has sent).
    std::thread::sleep(Duration::from_millis(1200));
    assert!(posts(&got, "/ops").is_empty(), "a muted route sent: {:?}", posts(&got, "/ops"));
    let (_, listed) = server.api("GET", "/api/v2/alerts?inhibited=false", None);
    assert_eq!(listed.as_array().unwrap().len(), 6, "{listed}");
    let (_, listed) = server.api("GET", "/api/v2/alerts?filter=severity%3Dwarning", None);
    let states: Vec<&str> = listed.as_array().unwrap().iter().map(|a| a["status"]["state"].as_str().unwrap()).collect();
    assert_eq!(states.len(), 2, "{listed}");
    assert!(states.contains(&"suppressed") && states.contains(&"active"), "{listed}");

    // A silence mutes a new alert matching it; expiring it lets the next flush send it.
    let now = chrono::Utc::now();
    let (code, created) = server.api(
        "POST",
        "/api/v2/silences",
        Some(json!({
            "matchers": [{"name": "alertname", "value": "Maint.*", "isRegex": true}],
            "startsAt": now.to_rfc3339(),
            "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "comment": "planned work",
        })),
    );
    assert_eq!(code, 200, "{created}");
    let id = created["silenceID"].as_str().unwrap().to_string();
    server.api("POST", "/api/v2/alerts", Some(json!([alert("MaintenanceWindow", json!({"cluster": "ap"}))])));
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        posts(&got, "/default").iter().all(|(_, b)| b["groupLabels"]["cluster"] != "ap"),
        "a silenced alert was sent"
    );
    let (_, silenced) = server.api("GET", "/api/v2/alerts?filter=cluster%3Dap", None);
    assert_eq!(silenced[0]["status"]["silencedBy"][0], id.as_str(), "{silenced}");
    let (_, shown) = server.api("GET", &format!("/api/v2/silence/{id}"), None);
    assert_eq!(
        (shown["status"]["state"].as_str(), shown["createdBy"].as_str()),
        (Some("active"), Some("token:1:admin")),
        "{shown}"
    );
    let (code, _) = server.api("DELETE", &format!("/api/v2/silence/{id}"), None);
    assert_eq!(code, 200);
    wait_for(
        "the alert after the silence expired",
        Duration::from_secs(5),
        || posts(&got, "/default").into_iter().find(|(_, b)| b["groupLabels"]["cluster"] == "ap"),
        || server.log(),
    );
    // Silences survive a restart (the expired one stays listed as expired).
    let mut server = server;
    server.restart();
    let (_, after) = server.api("GET", "/api/v2/silences", None);
    assert_eq!(after[0]["id"], id.as_str(), "{after}");
    assert_eq!(after[0]["status"]["state"], "expired", "{after}");
    assert_eq!(after[0]["comment"], "planned work", "{after}");
    // So does the notification log: the same alerts sent again (as Prometheus resends
    // them) are not notified again within the repeat interval.
    let before = posts(&got, "/default").len();
    let (code, _) = server.api(
        "POST",
        "/api/v2/alerts",
        Some(json!([
            alert("DiskFull", json!({"cluster": "eu", "severity": "critical"})),
            alert("HighLoad", json!({"cluster": "us", "severity": "warning"})),
        ])),
    );
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(posts(&got, "/default").len(), before, "a restart sent a group again");
    // A new alert in a known group is news, and goes out.
    server.api("POST", "/api/v2/alerts", Some(json!([alert("Latency", json!({"cluster": "us"}))])));
    wait_for(
        "the new alert of the us group",
        Duration::from_secs(5),
        || posts(&got, "/default").into_iter().skip(before).find(|(_, b)| b["groupLabels"]["cluster"] == "us"),
        || server.log(),
    );

    // Bad input is refused with the field named.
    let (code, body) = server.api("POST", "/api/v2/alerts", Some(json!([{"labels": {}}])));
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("[0].labels"), "{body}");
    let (code, body) =
        server.api("POST", "/api/v2/alerts", Some(json!([{"labels": {"a": "b"}, "startsAt": "yesterday"}])));
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("[0].startsAt"), "{body}");
}

#[test]
fn the_incidents_page_acknowledges_and_resolves_in_the_browser() {
    let Some(browser) = crate::ui::browser() else {
        return;
    };
    let (hooks, _got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let alertmanager = write(
        dir.path(),
        "alertmanager.yml",
        &format!("route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 100ms\nreceivers:\n  - name: team\n    webhook_configs: [{{ url: 'http://{hooks}/team' }}]\n"),
    );
    let server = Server::start_with(Backend::Sqlite, &["--alertmanager-config", &alertmanager]);
    server.api(
        "POST",
        "/api/v2/alerts",
        Some(json!([{"labels": {"alertname": "PaymentsDown", "service": "payments", "env": "prod"}}])),
    );
    let id = wait_for(
        "the incident",
        Duration::from_secs(5),
        || server.api("GET", "/api/v1/incidents", None).1["incidents"][0]["id"].as_i64(),
        || server.log(),
    );
    let client = &browser.client;
    browser.runtime.block_on(async {
        use fantoccini::Locator;
        let base = &server.url;
        crate::ui::sign_in(client, base, &server.token).await;
        client.goto(&format!("{base}/ui/incidents")).await.unwrap();
        let table = client.find(Locator::Css("table.incidents")).await.unwrap().text().await.unwrap();
        assert!(
            table.contains("PaymentsDown") && table.contains("payments in prod") && table.contains("open"),
            "{table}"
        );
        client.goto(&format!("{base}/ui/incidents/{id}")).await.unwrap();
        // A click navigates (and the page refreshes itself): read the status until it shows.
        let status_becomes = |want: &'static str| async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let status = match client.find(Locator::Id("status")).await {
                    Ok(e) => e.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                if status == want {
                    return;
                }
                assert!(Instant::now() < deadline, "status is {status:?}, not {want}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        client.find(Locator::XPath("//button[text()='Acknowledge']")).await.unwrap().click().await.unwrap();
        status_becomes("acknowledged").await;
        let timeline = client.find(Locator::Css("ol.events")).await.unwrap().text().await.unwrap();
        assert!(timeline.contains("acknowledged by admin"), "{timeline}");
        client.find(Locator::XPath("//button[text()='Resolve']")).await.unwrap().click().await.unwrap();
        status_becomes("resolved").await;
    });
    let (_, shown) = server.api("GET", &format!("/api/v1/incidents/{id}"), None);
    assert_eq!(shown["incident"]["status"], "resolved", "{shown}");
    assert!(shown["incident"]["time_to_restore_ms"].as_i64().is_some(), "{shown}");
}

/// A message's quoted-printable body decoded: soft line breaks joined, `=XX` as the byte.
fn quoted_printable(message: &str) -> String {
    let body = message.split_once("\r\n\r\n").map_or(message, |(_, body)| body);
    let joined = body.replace("=\r\n", "");
    let mut out = Vec::new();
    let mut bytes = joined.bytes();
    while let Some(b) = bytes.next() {
        if b == b'=' {
            let hex: Vec<u8> = bytes.by_ref().take(2).collect();
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).unwrap()
}

/// A minimal SMTP server on loopback: records each message's envelope and data.
fn smtp() -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let _ = stream.write_all(b"220 test ESMTP\r\n");
            let mut message = String::new();
            let mut in_data = false;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if in_data {
                    if line == ".\r\n" {
                        in_data = false;
                        sink.lock().unwrap().push(std::mem::take(&mut message));
                        let _ = stream.write_all(b"250 queued\r\n");
                    } else {
                        message.push_str(&line);
                    }
                } else {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-test\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("DATA") {
                        in_data = true;
                        b"354 go on\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = stream.write_all(b"221 bye\r\n");
                        break;
                    } else {
                        message.push_str(&line);
                        b"250 ok\r\n"
                    };
                    let _ = stream.write_all(reply);
                }
                line.clear();
            }
        }
    });
    (port, got)
}

#[test]
fn slack_pagerduty_and_email_receivers_get_what_their_services_expect() {
    let (hooks, got) = receiver();
    let (smtp_port, mails) = smtp();
    let dir = tempfile::tempdir().unwrap();
    // A template file, as teams keep them beside alertmanager.yml; it uses the
    // methods of Alertmanager's data and builds on a default template.
    write(
        dir.path(),
        "team.tmpl",
        r#"{{ define "team.text" }}{{ range .Alerts.Firing }}{{ .Annotations.summary }} on {{ .Labels.queue }}{{ end }}{{ end }}
{{ define "team.labels" }}{{ range .CommonLabels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}{{ end }}"#,
    );
    write(dir.path(), "pagerduty.token", "s3cret-token\n");
    let alertmanager = write(
        dir.path(),
        "alertmanager.yml",
        &format!(
            "global:\n  smtp_from: alerts@mobius.test\n  smtp_smarthost: 127.0.0.1:{smtp_port}\n  smtp_require_tls: false\ntemplates: ['*.tmpl']\nroute:\n  receiver: all\n  group_by: [alertname]\n  group_wait: 100ms\n  group_interval: 500ms\nreceivers:\n  - name: all\n    slack_configs:\n      - api_url: http://{hooks}/slack\n        channel: '#ops'\n        title: '{{{{ .Status }}}}: {{{{ .CommonLabels.alertname }}}}'\n        text: '{{{{ template \"team.text\" . }}}}'\n        fields: [{{ title: labels, value: '{{{{ template \"team.labels\" . }}}}', short: true }}]\n        send_resolved: true\n        http_config: {{ basic_auth: {{ username: mobius, password: pa55 }} }}\n    pagerduty_configs:\n      - routing_key: abc123\n        url: http://{hooks}/pagerduty\n        http_config: {{ authorization: {{ credentials_file: pagerduty.token }} }}\n        severity: critical\n        details: {{ queue: '{{{{ .CommonLabels.queue }}}}' }}\n    email_configs:\n      - to: oncall@mobius.test\n    discord_configs: [{{ webhook_url: 'http://{hooks}/discord' }}]\n    msteams_configs: [{{ webhook_url: 'http://{hooks}/teams', text: '{{{{ template \"team.text\" . }}}}' }}]\n    telegram_configs: [{{ api_url: 'http://{hooks}/tg', bot_token: '123:abc', chat_id: -100, disable_notifications: true }}]\n"
        ),
    );
    let server = Server::start_with(Backend::Sqlite, &["--alertmanager-config", &alertmanager]);
    server.api(
        "POST",
        "/api/v2/alerts",
        Some(json!([{"labels": {"alertname": "QueueStuck", "queue": "mail"}, "annotations": {"summary": "no progress for 10m"}}])),
    );
    let (slack, pd) = wait_for(
        "slack and pagerduty",
        Duration::from_secs(10),
        || {
            let s = posts(&got, "/slack").into_iter().next()?;
            let p = posts(&got, "/pagerduty").into_iter().next()?;
            Some((s.1, p.1))
        },
        || server.log(),
    );
    // Discord, Teams and Telegram as Alertmanager posts to them.
    let (discord, teams, telegram) = wait_for(
        "discord, teams and telegram",
        Duration::from_secs(10),
        || {
            let d = posts(&got, "/discord").into_iter().next()?;
            let t = posts(&got, "/teams").into_iter().next()?;
            let g = posts(&got, "/tg/bot123:abc/sendMessage").into_iter().next()?;
            Some((d.1, t.1, g.1))
        },
        || server.log(),
    );
    assert_eq!(discord["embeds"][0]["title"], "[FIRING:1] QueueStuck (mail)", "{discord}");
    assert_eq!(discord["embeds"][0]["color"], 0x992D22, "{discord}");
    assert!(
        discord["embeds"][0]["description"].as_str().unwrap().contains("summary: no progress for 10m"),
        "{discord}"
    );
    assert_eq!((&teams["@type"], &teams["title"]), (&json!("MessageCard"), &json!("[FIRING:1] QueueStuck (mail)")));
    assert_eq!(teams["text"], "no progress for 10m on mail", "the template file's text: {teams}");
    assert_eq!((&telegram["chat_id"], &telegram["parse_mode"]), (&json!(-100), &json!("HTML")), "{telegram}");
    assert_eq!(telegram["disable_notification"], true, "{telegram}");
    assert!(
        telegram["text"].as_str().unwrap().starts_with(
            "<b>[FIRING:1] QueueStuck</b>\n[firing] alertname=QueueStuck, queue=mail\n  summary: no progress for 10m"
        ),
        "{telegram}"
    );
    // Slack: what the configuration templates, Alertmanager's defaults for the rest.
    let attachment = &slack["attachments"][0];
    assert_eq!(slack["channel"], "#ops", "{slack}");
    // http_config: basic auth for Slack, a bearer token read from a file for PagerDuty.
    assert_eq!(slack["__authorization__"], "Basic bW9iaXVzOnBhNTU=", "{slack}");
    assert_eq!(pd["__authorization__"], "Bearer s3cret-token", "{pd}");
    assert_eq!(slack["username"], "Mobius", "the default username: {slack}");
    assert_eq!(attachment["title"], "firing: QueueStuck", "the title template: {slack}");
    assert_eq!(attachment["text"], "no progress for 10m on mail", "the template file's text: {slack}");
    assert_eq!(
        attachment["fields"],
        json!([{"title": "labels", "value": "alertname=QueueStuck;queue=mail;", "short": true}])
    );
    assert_eq!(attachment["color"], "danger", "{slack}");
    let link = attachment["title_link"].as_str().unwrap();
    assert!(link.starts_with("http://127.0.0.1:") && link.ends_with("/ui/alerts?receiver=all"), "{slack}");
    // The default fallback is built from the default title, not the configured one (as in Alertmanager).
    assert_eq!(attachment["fallback"], format!("[FIRING:1] QueueStuck (mail) | {link}"), "{slack}");
    // PagerDuty: the default summary (Alertmanager's subject) and details, merged with the configured one.
    assert_eq!(pd["routing_key"], "abc123", "{pd}");
    assert_eq!(pd["event_action"], "trigger", "{pd}");
    assert_eq!(pd["client"], "Mobius", "{pd}");
    assert_eq!(pd["payload"]["severity"], "critical", "{pd}");
    assert_eq!(pd["payload"]["summary"], "[FIRING:1] QueueStuck (mail)", "{pd}");
    let details = &pd["payload"]["custom_details"];
    assert_eq!(
        (&details["num_firing"], &details["num_resolved"], &details["queue"]),
        (&json!("1"), &json!("0"), &json!("mail"))
    );
    assert!(details["firing"].as_str().unwrap().contains("no progress for 10m"), "{pd}");
    // Email: the default subject and HTML body.
    let mail =
        wait_for("the email", Duration::from_secs(10), || mails.lock().unwrap().first().cloned(), || server.log());
    assert!(mail.contains("alerts@mobius.test") && mail.contains("oncall@mobius.test"), "{mail}");
    assert!(mail.contains("Subject: [FIRING:1] QueueStuck (mail)"), "{mail}");
    assert!(mail.contains("Content-Type: text/html"), "{mail}");
    assert!(mail.contains("Content-Transfer-Encoding: quoted-printable"), "{mail}");
    let body = quoted_printable(&mail);
    assert!(
        body.contains("1 firing, 0 resolved for alertname=QueueStuck") && body.contains("no progress for 10m"),
        "{body}"
    );

    // Resolved: PagerDuty gets a resolve event with the same deduplication key.
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    server.api(
        "POST",
        "/api/v2/alerts",
        Some(json!([{"labels": {"alertname": "QueueStuck", "queue": "mail"}, "endsAt": past.to_rfc3339()}])),
    );
    let resolve = wait_for(
        "the resolve event",
        Duration::from_secs(10),
        || posts(&got, "/pagerduty").into_iter().map(|(_, b)| b).find(|b| b["event_action"] == "resolve"),
        || server.log(),
    );
    assert_eq!(resolve["dedup_key"], pd["dedup_key"], "{resolve}");
}

/// A project's `mobius.yaml` as the monitor reads it: its own target, rule, route,
/// receivers, on-call person and escalation policy.
fn project_monitoring(target: &str, hooks: &str, threshold: u32) -> String {
    format!(
        "services: {{}}
monitoring:
  prometheus:
    global: {{ scrape_interval: 200ms, evaluation_interval: 500ms }}
    scrape_configs:
      - job_name: shop-worker
        static_configs: [{{ targets: ['{target}'] }}]
  rules:
    groups:
      - name: queues
        rules:
          - alert: QueueTooDeep
            expr: queue_depth > {threshold}
            for: 1s
  alertmanager:
    route: {{ receiver: team, group_by: [alertname], group_wait: 100ms, group_interval: 1s }}
    receivers:
      - {{ name: team, webhook_configs: [{{ url: 'http://{hooks}/shop-team' }}] }}
      - {{ name: pager, webhook_configs: [{{ url: 'http://{hooks}/ann' }}] }}
      - {{ name: lead, webhook_configs: [{{ url: 'http://{hooks}/shop-lead' }}] }}
  oncall:
    people: [{{ name: ann, receiver: pager }}]
    policies:
      - name: queues
        receiver: team
        levels:
          - {{ delay: 0s, targets: [{{ person: ann }}] }}
          - {{ delay: 2s, targets: [{{ receiver: lead }}] }}
"
    )
}

#[test]
fn a_projects_mobius_yaml_declares_its_targets_rules_routes_and_escalation() {
    let depth = Arc::new(AtomicU64::new(10));
    let target = exporter(Arc::clone(&depth));
    let (hooks, got) = receiver();
    // No configuration files at all: everything comes from the project.
    let server = Server::start(Backend::Sqlite);
    let repo = crate::support::Repo::new(&[("mobius.yaml", &project_monitoring(&target, &hooks, 5))]);
    server.add_project("shop", repo.path());

    let (_, payload) = wait_for(
        "the project's route",
        Duration::from_secs(20),
        || posts(&got, "/shop-team").into_iter().next(),
        || server.log(),
    );
    assert_eq!(payload["receiver"], "shop/team", "{payload}");
    let alert = &payload["alerts"][0];
    assert_eq!(alert["labels"]["project"], "shop", "{payload}");
    assert_eq!(alert["labels"]["job"], "shop-worker", "{payload}");
    let (_, targets) = server.api("GET", "/api/v1/targets", None);
    let text = targets.to_string();
    assert!(text.contains("shop-worker") && text.contains("\"project\":\"shop\""), "{targets}");

    // The project's policy escalates: its person first, its lead 2 s later.
    let incident = first_incident(&server);
    assert_eq!(incident["policy"], "shop/queues", "{incident}");
    let (ann_at, page) =
        wait_for("level 1", Duration::from_secs(5), || posts(&got, "/ann").into_iter().next(), || server.log());
    assert_eq!(page["mobius"]["level"], 1, "{page}");
    let (lead_at, _) =
        wait_for("level 2", Duration::from_secs(6), || posts(&got, "/shop-lead").into_iter().next(), || server.log());
    assert!(lead_at - ann_at >= 1900, "level 2 came {} ms after level 1", lead_at - ann_at);

    // A broken mobius.yaml changes nothing and says where it is broken.
    let broken = project_monitoring(&target, &hooks, 5).replace("for: 1s", "for: soon");
    repo.commit(&[("mobius.yaml", &broken)], "a broken rule");
    let problems = wait_for(
        "the audit of the broken file",
        Duration::from_secs(10),
        || {
            let (_, audit) = server.api("GET", "/api/v1/audit", None);
            audit.to_string().contains("monitoring.invalid").then_some(audit.to_string())
        },
        || server.log(),
    );
    assert!(problems.contains("mobius.yaml:14:18"), "{problems}");
    let (_, rules) = server.api("GET", "/api/v1/rules", None);
    assert_eq!(rules["data"]["groups"][0]["rules"][0]["state"], "firing", "{rules}");

    // A new threshold on the default branch takes over: the alert resolves.
    repo.commit(&[("mobius.yaml", &project_monitoring(&target, &hooks, 50))], "raise the threshold");
    wait_for(
        "the resolved notification",
        Duration::from_secs(15),
        || posts(&got, "/shop-team").into_iter().map(|(_, b)| b).find(|b| b["status"] == "resolved"),
        || server.log(),
    );
}

/// Issue 16, item 5: a silence pauses paging and notifications; the incident stays open
/// (no time to restore) until the alerts resolve, and its timeline shows the silence.
#[test]
fn a_silence_pauses_paging_and_leaves_the_incident_open() {
    let (hooks, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let alertmanager = write(
        dir.path(),
        "alertmanager.yml",
        &format!(
            "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 100ms\n  group_interval: 500ms\n  repeat_interval: 1h\nreceivers:\n  - name: team\n    webhook_configs: [{{ url: 'http://{hooks}/team' }}]\n  - name: alice\n    webhook_configs: [{{ url: 'http://{hooks}/alice' }}]\n  - name: lead\n    webhook_configs: [{{ url: 'http://{hooks}/lead' }}]\n"
        ),
    );
    let oncall = write(
        dir.path(),
        "oncall.yml",
        "people:\n  - { name: alice, receiver: alice }\npolicies:\n  - name: db\n    receiver: team\n    levels:\n      - { delay: 0s, targets: [{ person: alice }] }\n      - { delay: 2s, targets: [{ receiver: lead }] }\n",
    );
    let server =
        Server::start_with(Backend::Sqlite, &["--alertmanager-config", &alertmanager, "--oncall-config", &oncall]);
    let post = |ends: chrono::DateTime<chrono::Utc>| {
        let alert = json!([{
            "labels": {"alertname": "DiskFull", "severity": "page"},
            "annotations": {"summary": "Disk /data is 97% full"},
            "endsAt": ends.to_rfc3339(),
        }]);
        let (code, answer) = server.api("POST", "/api/v2/alerts", Some(alert));
        assert_eq!(code, 200, "{answer}");
    };
    post(chrono::Utc::now() + chrono::Duration::hours(1));
    wait_for("alice's page", Duration::from_secs(10), || posts(&got, "/alice").into_iter().next(), || server.log());
    let incident = first_incident(&server);
    assert_eq!(incident["title"], "Disk /data is 97% full", "item 16: the title is the alert's summary: {incident}");
    // Item 12: Mobius's own JSON gives times in RFC 3339.
    assert!(
        chrono::DateTime::parse_from_rfc3339(incident["opened_at"].as_str().unwrap_or_default()).is_ok(),
        "{incident}"
    );
    let id = incident["id"].as_i64().unwrap();

    // Silenced before level 2 is due: the incident stays open, nobody else is paged.
    let now = chrono::Utc::now();
    let (code, created) = server.api(
        "POST",
        "/api/v2/silences",
        Some(json!({
            "matchers": [{"name": "alertname", "value": "DiskFull", "isRegex": false}],
            "startsAt": now.to_rfc3339(), "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "createdBy": "alice", "comment": "replacing the disk",
        })),
    );
    assert_eq!(code, 200, "{created}");
    let silenced = wait_for(
        "the silence on the timeline",
        Duration::from_secs(10),
        || {
            let (_, detail) = server.api("GET", &format!("/api/v1/incidents/{id}"), None);
            detail["events"].as_array().unwrap().iter().any(|e| e["kind"] == "silenced").then_some(detail)
        },
        || server.log(),
    );
    assert_eq!(silenced["incident"]["status"], "open", "{silenced}");
    assert!(chrono::DateTime::parse_from_rfc3339(silenced["events"][0]["at"].as_str().unwrap_or_default()).is_ok());
    std::thread::sleep(Duration::from_secs(3));
    let (_, detail) = server.api("GET", &format!("/api/v1/incidents/{id}"), None);
    assert_eq!(detail["incident"]["status"], "open", "a silence resolved the incident: {detail}");
    assert!(detail["incident"]["time_to_restore_ms"].is_null(), "{detail}");
    assert!(posts(&got, "/lead").is_empty(), "paged through a silence: {:?}", posts(&got, "/lead"));

    // The silence expires: paging goes on where it stopped.
    let silence = created["silenceID"].as_str().unwrap();
    let (code, answer) = server.api("DELETE", &format!("/api/v2/silence/{silence}"), None);
    assert_eq!(code, 200, "{answer}");
    wait_for("the lead's page", Duration::from_secs(10), || posts(&got, "/lead").into_iter().next(), || server.log());

    // The alert resolves: so does the incident.
    post(chrono::Utc::now() - chrono::Duration::seconds(1));
    wait_for(
        "the incident resolved",
        Duration::from_secs(10),
        || {
            let (_, detail) = server.api("GET", &format!("/api/v1/incidents/{id}"), None);
            (detail["incident"]["status"] == "resolved").then_some(())
        },
        || server.log(),
    );
}

/// Issue 16, item 17, with the real `amtool` from Debian's prometheus-alertmanager:
/// `filter` narrows silences (so `silence query foo=bar | xargs silence expire` expires
/// only those), alerts and groups; `receiver` and the state flags apply to both; no
/// empty group is listed; alerts added without times (Go's zero time) start now.
#[test]
fn amtool_filters_silences_alerts_and_groups() {
    if std::process::Command::new("amtool").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "amtool (prometheus-alertmanager) is required under CI");
        eprintln!("skipped: amtool (Debian's prometheus-alertmanager) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let alertmanager = write(
        dir.path(),
        "alertmanager.yml",
        "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 100ms\n  routes:\n    - matchers: ['severity=\"page\"']\n      receiver: pager\nreceivers:\n  - name: team\n  - name: pager\n",
    );
    let server = Server::start_with(Backend::Sqlite, &["--alertmanager-config", &alertmanager]);
    let http = write(dir.path(), "http.yml", &format!("authorization:\n  credentials: {}\n", server.token));
    let amtool = |args: &[&str]| -> String {
        let out = std::process::Command::new("amtool")
            .arg(format!("--alertmanager.url={}", server.url))
            .arg(format!("--http.config.file={http}"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "amtool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    amtool(&["alert", "add", "DiskFull", "severity=page", "instance=db1"]);
    amtool(&["alert", "add", "HighLoad", "severity=info", "instance=web1"]);
    let (_, alerts) = server.api("GET", "/api/v2/alerts", None);
    assert_eq!(alerts.as_array().unwrap().len(), 2, "{alerts}");
    for alert in alerts.as_array().unwrap() {
        let starts = chrono::DateTime::parse_from_rfc3339(alert["startsAt"].as_str().unwrap()).unwrap();
        assert!((chrono::Utc::now() - starts.with_timezone(&chrono::Utc)).num_seconds() < 60, "zero startsAt: {alert}");
        assert_eq!(alert["status"]["state"], "active", "zero endsAt must not resolve it: {alert}");
    }

    // Silences: the filter picks only matching ones.
    amtool(&["silence", "add", "foo=bar", "--comment=maintenance"]);
    amtool(&["silence", "add", "alertname=HighLoad", "--comment=known"]);
    let ids = amtool(&["silence", "query", "-q", "foo=bar"]);
    assert_eq!(ids.lines().count(), 1, "{ids}");
    amtool(&[&["silence", "expire"][..], &ids.lines().collect::<Vec<_>>()[..]].concat());
    let (_, silences) = server.api("GET", "/api/v2/silences", None);
    let active: Vec<&Value> =
        silences.as_array().unwrap().iter().filter(|s| s["status"]["state"] == "active").collect();
    assert_eq!(active.len(), 1, "only the filtered silence expires: {silences}");
    assert_eq!(active[0]["matchers"][0]["value"], "HighLoad", "{silences}");

    // Alerts: by matchers, receiver and state.
    let listed = amtool(&["alert", "query", "alertname=DiskFull"]);
    assert!(listed.contains("DiskFull") && !listed.contains("HighLoad"), "{listed}");
    let listed = amtool(&["alert", "query", "--receiver=pager"]);
    assert!(listed.contains("DiskFull") && !listed.contains("HighLoad"), "{listed}");
    let listed = amtool(&["alert", "query", "--silenced"]);
    assert!(listed.contains("HighLoad") && !listed.contains("DiskFull"), "{listed}");
    let (code, _) = server.api("GET", "/api/v2/alerts?receiver=%5Bbad", None);
    assert_eq!(code, 400);

    // Groups: filtered the same way, and never empty.
    let (_, groups) = server.api("GET", "/api/v2/alerts/groups?silenced=false", None);
    let names: Vec<&str> =
        groups.as_array().unwrap().iter().map(|g| g["labels"]["alertname"].as_str().unwrap()).collect();
    assert_eq!(names, ["DiskFull"], "{groups}");
    let (_, groups) = server.api("GET", "/api/v2/alerts/groups?receiver=team", None);
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups}");
    assert_eq!(groups[0]["receiver"]["name"], "team", "{groups}");
    let (_, groups) = server.api("GET", "/api/v2/alerts/groups?filter=instance%3D%22nowhere%22", None);
    assert_eq!(groups, json!([]), "{groups}");
}
