//! The log store through `mobius serve`: Loki's push API in, LogQL stream selectors and
//! line filters out, a live tail over SSE, bad input refused by field, and nothing
//! acknowledged lost to `kill -9`.

use crate::support::{Backend, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn lines(answer: &Value) -> Vec<String> {
    let mut out: Vec<(i64, String)> = Vec::new();
    for stream in answer["data"]["result"].as_array().unwrap() {
        for v in stream["values"].as_array().unwrap() {
            out.push((v[0].as_str().unwrap().parse().unwrap(), v[1].as_str().unwrap().to_string()));
        }
    }
    out.sort();
    out.into_iter().map(|(_, l)| l).collect()
}

fn query(server: &Server, logql: &str) -> Value {
    let q: String = form_urlencoded::byte_serialize(logql.as_bytes()).collect();
    let (code, answer) =
        server.api("GET", &format!("/loki/api/v1/query_range?query={q}&since=1h&direction=forward"), None);
    assert_eq!(code, 200, "{answer}");
    answer
}

#[test]
fn loki_push_query_tail_and_crash_safety() {
    let mut server = Server::start(Backend::Sqlite);
    let t = ns();
    let push = |server: &Server, body: Value| server.api("POST", "/loki/api/v1/push", Some(body));
    let (code, answer) = push(
        &server,
        json!({"streams": [
            {"stream": {"service": "web", "env": "prod"}, "values": [[(t - 3000).to_string(), "GET / 200"], [(t - 2000).to_string(), "GET /cart 500 upstream timeout"]]},
            {"stream": {"service": "api", "env": "prod"}, "values": [[(t - 1000).to_string(), "POST /orders 201"]]},
        ]}),
    );
    assert_eq!(code, 204, "{answer}");
    assert_eq!(
        lines(&query(&server, "{env=\"prod\"}")),
        ["GET / 200", "GET /cart 500 upstream timeout", "POST /orders 201"]
    );
    assert_eq!(lines(&query(&server, "{service=\"web\"} |= \"cart\"")), ["GET /cart 500 upstream timeout"]);
    assert_eq!(
        lines(&query(&server, "{env=\"prod\"} |~ \" 5\\\\d\\\\d \" != \"orders\"")),
        ["GET /cart 500 upstream timeout"]
    );
    let (_, names) = server.api("GET", "/loki/api/v1/labels", None);
    assert!(names["data"].as_array().unwrap().contains(&json!("service")), "{names}");
    let (_, values) = server.api("GET", "/loki/api/v1/label/service/values", None);
    assert!(values["data"].as_array().unwrap().contains(&json!("api")), "{values}");

    // A live tail sees lines pushed after it started, filtered.
    let url = format!("{}/api/v1/logs/tail?query=%7Bservice%3D%22web%22%7D%20%7C%3D%20%22error%22", server.url);
    let token = server.token.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let response = reqwest::blocking::Client::new().get(url).bearer_auth(token).send().unwrap();
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data:") {
                if tx.send(data.trim().to_string()).is_err() {
                    return;
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    push(
        &server,
        json!({"streams": [{"stream": {"service": "web"}, "values": [[ns().to_string(), "all fine"], [ns().to_string(), "error: disk full"]]}]}),
    );
    let got: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(5)).unwrap()).unwrap();
    assert_eq!(got["line"], "error: disk full", "{got}");
    assert_eq!(got["labels"]["service"], "web", "{got}");

    // Bad input names the field; a query that does not parse says why.
    let (code, answer) = push(&server, json!({"streams": [{"stream": {"service": "web"}, "values": [["soon", "x"]]}]}));
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("streams[0].values[0]"), "{answer}");
    let (code, answer) = server.api("GET", "/loki/api/v1/query_range?query=service", None);
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("stream selector"), "{answer}");

    // Acknowledged lines survive kill -9.
    let marker = format!("acknowledged line {}", ns());
    let (code, _) =
        push(&server, json!({"streams": [{"stream": {"service": "api"}, "values": [[ns().to_string(), marker]]}]}));
    assert_eq!(code, 204);
    server.kill9();
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = lines(&query(&server, "{service=\"api\"}"));
        if found.contains(&marker) {
            break;
        }
        assert!(Instant::now() < deadline, "lost after kill -9: {found:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get(server: &Server, path: &str, params: &[(&str, String)]) -> (u16, Value) {
    let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    server.api("GET", &format!("{path}?{query}"), None)
}

#[test]
fn logql_parsers_and_metric_queries_answer_as_loki() {
    let server = Server::start(Backend::Sqlite);
    // JSON access logs, one a second for a minute ending 10 s ago: every fourth one a 502.
    let end = (ns() / 1_000_000_000 - 10) * 1_000_000_000;
    let values: Vec<Value> = (0..60)
        .map(|i| {
            let ts = end - (59 - i) * 1_000_000_000;
            let status = if i % 4 == 0 { 502 } else { 200 };
            json!([ts.to_string(), format!(r#"{{"status":{status},"path":"/p{}","took":"{}ms"}}"#, i % 2, 10 + i)])
        })
        .collect();
    let (code, answer) = server.api(
        "POST",
        "/loki/api/v1/push",
        Some(json!({"streams": [{"stream": {"service": "shop", "env": "prod"}, "values": values}]})),
    );
    assert_eq!(code, 204, "{answer}");

    // A log query with a parser and a label filter: the lines' labels carry what was
    // extracted (each `took` would make a stream of its own, so it is dropped).
    let found = query(&server, r#"{service="shop"} | json | status >= 500 and path="/p0" | drop took"#);
    let streams = found["data"]["result"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{found}");
    assert_eq!(streams[0]["stream"]["status"], "502", "{found}");
    assert_eq!(lines(&found).len(), 15, "i = 0, 4, ..., 56: all on /p0");

    // An instant metric query: the error ratio over the last 2 minutes.
    let t = end.to_string();
    let (code, answer) = get(
        &server,
        "/loki/api/v1/query",
        &[
            ("query", r#"sum(count_over_time({service="shop"} | json | status >= 500 [2m])) / sum(count_over_time({service="shop"}[2m]))"#.into()),
            ("time", t.clone()),
        ],
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["data"]["resultType"], "vector", "{answer}");
    assert_eq!(answer["data"]["result"][0]["value"][1], "0.25", "{answer}");
    assert_eq!(answer["data"]["result"][0]["value"][0].as_f64().unwrap(), end as f64 / 1e9, "{answer}");

    // A range metric query: lines per path every 30 s, and the slowest request.
    let start = (end - 30_000_000_000).to_string();
    let (code, answer) = get(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"sum by (path) (count_over_time({service="shop"} | json [30s]))"#.into()),
            ("start", start.clone()),
            ("end", t.clone()),
            ("step", "30s".into()),
        ],
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["data"]["resultType"], "matrix", "{answer}");
    let result = answer["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2, "{answer}");
    for series in result {
        let counts: Vec<&str> = series["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap()).collect();
        assert_eq!(counts, ["15", "15"], "(end - 60 s, end - 30 s] and (end - 30 s, end], half on each path: {answer}");
    }
    let (code, answer) = get(
        &server,
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"max_over_time({service="shop"} | json | keep service, took | unwrap duration(took) [1m])"#.into(),
            ),
            ("time", t),
        ],
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["data"]["result"][0]["value"][1], "0.069", "the last request took 69 ms: {answer}");
    assert_eq!(answer["data"]["result"][0]["metric"], json!({"service": "shop"}), "{answer}");

    // Bad queries say where and why.
    let (code, answer) =
        get(&server, "/loki/api/v1/query", &[("query", r#"sum_over_time({service="shop"} | json [1m])"#.into())]);
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("needs `| unwrap LABEL`"), "{answer}");
    let (code, answer) = get(
        &server,
        "/loki/api/v1/query_range",
        &[("query", r#"count_over_time({service="shop"}[1m])"#.into()), ("start", start), ("step", "0.0001".into())],
    );
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("points at most"), "{answer}");
}
