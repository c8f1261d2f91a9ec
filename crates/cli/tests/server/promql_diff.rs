//! The differential PromQL suite: the same samples scraped by Debian's Prometheus and
//! by `mobius serve` (explicit timestamps, so both store identical points), then the
//! same queries at fixed instants and over ranges on both HTTP APIs; answers must
//! agree to 1e-9.

use crate::support::{Backend, Server};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POINTS: i64 = 40;
const STEP_MS: i64 = 15_000;

pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body for scrape number `i` of one client: point `i` of every series.
fn body(i: i64, t0: i64) -> String {
    let t = t0 + i * STEP_MS;
    let x = i as f64;
    let reset = if i < 25 { 3.0 * x } else { 3.0 * (x - 25.0) };
    let mut out = String::new();
    for (labels, v) in [
        ("req_total{code=\"200\",path=\"/a\"}", reset),
        ("req_total{code=\"500\",path=\"/a\"}", x),
        ("req_total{code=\"200\",path=\"/b\"}", x * x * 0.5),
        ("temp{room=\"1\"}", 20.0 + (x * 0.7).sin() * 3.0),
        ("temp{room=\"2\"}", 21.5 + (x * 0.3).cos()),
        ("lat_bucket{le=\"0.1\"}", x * 4.0),
        ("lat_bucket{le=\"0.5\"}", x * 9.0),
        ("lat_bucket{le=\"+Inf\"}", x * 10.0),
    ] {
        out.push_str(&format!("{labels} {v} {t}\n"));
    }
    out
}

/// Serves each client (told apart by User-Agent) the points in order, then the last one.
fn exporter(t0: i64) -> (String, Arc<Mutex<HashMap<String, i64>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = Arc::new(Mutex::new(HashMap::new()));
    let counts = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).to_lowercase();
            let client = if text.contains("user-agent: prometheus") { "prometheus" } else { "mobius" };
            let i = {
                let mut counts = counts.lock().unwrap();
                let n = counts.entry(client.to_string()).or_insert(0);
                *n += 1;
                (*n - 1).min(POINTS - 1)
            };
            let body = body(i, t0);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, served)
}

pub(crate) fn prometheus_available() -> bool {
    let found = Command::new("prometheus").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "prometheus is required under CI (.ci/run installs it)");
        eprintln!("skipped: the differential PromQL suite needs Debian's prometheus");
    }
    found
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An answer reduced to comparable form: result type and value per series (or `""` for a
/// scalar); a range answer has one entry per series and instant (`series@seconds`).
fn normalise(answer: &Value) -> (String, BTreeMap<String, f64>) {
    assert_eq!(answer["status"], "success", "{answer}");
    let kind = answer["data"]["resultType"].as_str().unwrap().to_string();
    let parse = |v: &Value| -> f64 {
        match v.as_str().unwrap() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse().unwrap(),
        }
    };
    let mut out = BTreeMap::new();
    match kind.as_str() {
        "scalar" => {
            out.insert(String::new(), parse(&answer["data"]["result"][1]));
        }
        "matrix" => {
            for item in answer["data"]["result"].as_array().unwrap() {
                let metric = serde_json::to_string(&item["metric"]).unwrap();
                for point in item["values"].as_array().unwrap() {
                    out.insert(format!("{metric}@{:.3}", point[0].as_f64().unwrap()), parse(&point[1]));
                }
            }
        }
        _ => {
            for item in answer["data"]["result"].as_array().unwrap() {
                let metric = serde_json::to_string(&item["metric"]).unwrap();
                out.insert(metric, parse(&item["value"][1]));
            }
        }
    }
    (kind, out)
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn promql_answers_match_prometheus() {
    if !prometheus_available() {
        return;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let t0 = (now - 30 * 60 * 1000) / 60_000 * 60_000;
    let (addr, served) = exporter(t0);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\nscrape_configs:\n  - job_name: diff\n    static_configs:\n      - targets: ['{addr}']\n"),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("prom").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server = Server::start_with(Backend::Sqlite, &["--prometheus-config", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = served.lock().unwrap().clone();
        if counts.get("prometheus").is_some_and(|n| *n > POINTS + 2)
            && counts.get("mobius").is_some_and(|n| *n > POINTS + 2)
        {
            break;
        }
        assert!(Instant::now() < deadline, "not every point was scraped: {counts:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let http = reqwest::blocking::Client::new();
    let queries = [
        "req_total",
        "req_total{path=\"/a\"}",
        "req_total offset 1m",
        "rate(req_total[1m])",
        "rate(req_total[5m])",
        "irate(req_total[2m])",
        "increase(req_total[3m])",
        "delta(temp[3m])",
        "idelta(temp[1m])",
        "sum by (path) (rate(req_total[5m]))",
        "sum without (code) (req_total)",
        "avg(temp)",
        "min(temp)",
        "max by (room) (temp)",
        "count(req_total)",
        "stddev(temp)",
        "topk(2, req_total)",
        "bottomk(1, temp)",
        "avg_over_time(temp[2m])",
        "min_over_time(temp[2m])",
        "max_over_time(temp[5m])",
        "sum_over_time(temp[1m])",
        "count_over_time(temp[3m])",
        "last_over_time(temp[1m])",
        "temp > 21",
        "temp > bool 21",
        "temp * 2 + 1",
        "-temp",
        "req_total / on(path, code) req_total",
        "req_total{code=\"500\"} / ignoring(code) group_left req_total{code=\"200\",path=\"/a\"}",
        "req_total and on(path) req_total{code=\"500\"}",
        "req_total unless on(code) req_total{code=\"500\"}",
        "temp or req_total",
        "histogram_quantile(0.9, rate(lat_bucket[5m]))",
        "histogram_quantile(0.5, lat_bucket)",
        "abs(temp - 21)",
        "ceil(temp)",
        "floor(temp)",
        "round(temp, 0.5)",
        "clamp(temp, 19, 22)",
        "label_replace(req_total, \"dst\", \"p-$1\", \"path\", \"/(.*)\")",
        "label_replace(temp, \"room\", \"\", \"room\", \"1\")",
        "label_replace(rate(req_total[5m]), \"path\", \"${1}x\", \"code\", \"(5)0+\")",
        "label_join(req_total, \"pc\", \",\", \"path\", \"code\")",
        "count_values(\"value\", floor(temp))",
        "count_values by (path) (\"v\", req_total > bool 10)",
        "clamp_min(temp, 21)",
        "time()",
        "vector(3)",
        "scalar(count(temp))",
        "absent(nope{job=\"x\"})",
        "2 ^ 3 % 5",
        "quantile(0.3, temp)",
        "quantile by (code) (0.5, req_total)",
        "sqrt(temp) + ln(temp) - exp(temp / 10)",
        "sgn(temp - 21)",
        "sum by (path) (rate(req_total[1m] offset 30s)) > bool 0.5",
        "rate(req_total[1m]) / ignoring(code) group_left sum without (code) (rate(req_total[1m]))",
        "max_over_time(temp[1m]) - min_over_time(temp[1m]) < 2",
        "temp / scalar(max(temp))",
        "max_over_time(rate(req_total[1m])[5m:30s])",
        "avg_over_time(temp[2m:15s])",
        "min_over_time(sum(temp)[3m:1m] offset 1m)",
        "rate(req_total[2m:20s])",
        "temp @ end()",
        "sum(rate(req_total[1m] @ start()))",
        "temp - temp offset -30s",
        "max_over_time(temp[2m:30s] @ end()) - temp",
        "sum_over_time(rate(req_total[1m])[3m:1m] @ start() offset 1m)",
        "changes(temp[2m])",
        "resets(req_total[10m])",
        "deriv(temp[3m])",
        "predict_linear(req_total[2m], 300)",
        "stddev_over_time(temp[2m])",
        "stdvar_over_time(req_total[3m])",
        "quantile_over_time(0.75, temp[3m])",
        "absent_over_time(nope{job=\"x\"}[1m])",
        "absent_over_time(temp[1m])",
        "holt_winters(temp[3m], 0.3, 0.6)",
        "timestamp(temp offset 20s)",
        "timestamp(sum(temp))",
        "sort_desc(temp)",
        "minute() + hour() * day_of_week()",
        "days_in_month(temp * 1e7) + day_of_year(req_total * 1e6) + month(temp * 2e7) + year(temp * 1e8)",
        "sin(temp) + cos(temp) * atan(temp) - deg(temp) + rad(temp)",
    ];
    // One query on both servers: the number of values compared.
    let compare = |path: &str, params: &[(&str, String)], what: &str| -> usize {
        let ask = |url: String, token: Option<&str>| -> Value {
            let mut request = http.get(url).query(params);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().unwrap().json().unwrap()
        };
        let theirs = normalise(&ask(format!("http://127.0.0.1:{port}{path}"), None));
        let ours = normalise(&ask(format!("{}{path}", server.url), Some(&server.token)));
        assert_eq!(ours.0, theirs.0, "{what}: result type");
        assert_eq!(ours.1.keys().collect::<Vec<_>>(), theirs.1.keys().collect::<Vec<_>>(), "{what}: series");
        for (series, want) in &theirs.1 {
            let got = ours.1[series];
            assert!(same(got, *want), "{what}: {series} = {got}, Prometheus says {want}");
        }
        theirs.1.len()
    };
    let (mut checked, mut values) = (0, 0);
    // Between samples, and on them: there a range's start falls exactly on a sample,
    // which Prometheus 2.x includes.
    let instants = [(8, 7.5), (20, 7.5), (30, 7.5), (39, 7.5), (25, 0.0), (39, 0.0)];
    for (k, offset) in instants {
        let at = ((t0 + k * STEP_MS) as f64 / 1000.0 + offset).to_string();
        for query in queries {
            let params = [("query", query.to_string()), ("time", at.clone())];
            values += compare("/api/v1/query", &params, &format!("{query} at {at}"));
            checked += 1;
        }
    }
    // Over ranges: steps on the sample grid, between it, and one wider than a range.
    let (mut ranges, mut points) = (0, 0);
    for (from, to, step) in [(6, 39, 15.0), (4, 39, 7.0), (10, 35, 73.5)] {
        let start = ((t0 + from * STEP_MS) as f64 / 1000.0).to_string();
        let end = ((t0 + to * STEP_MS) as f64 / 1000.0 + 3.5).to_string();
        for query in queries {
            let params = [
                ("query", query.to_string()),
                ("start", start.clone()),
                ("end", end.clone()),
                ("step", step.to_string()),
            ];
            points += compare("/api/v1/query_range", &params, &format!("{query} from {start} step {step}"));
            ranges += 1;
        }
    }
    assert!(points > ranges * 10, "only {points} points in {ranges} range answers");
    eprintln!("{ranges} range answers with {points} points agree with Prometheus");
    assert_eq!(checked, queries.len() * instants.len());
    // Not a comparison of empty answers: most queries return several series.
    assert!(values > checked, "only {values} values in {checked} answers");
    eprintln!("{checked} answers with {values} values agree with Prometheus");
}
