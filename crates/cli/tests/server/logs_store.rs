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
