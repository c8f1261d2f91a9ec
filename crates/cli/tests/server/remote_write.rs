//! Remote write from a real Prometheus (Debian's 2.42): it scrapes an exporter and
//! sends everything to `POST /api/v1/write` with a bearer token; Mobius then answers
//! for the same series. Bad bodies and missing tokens are refused.

use crate::promql_diff::{free_port, prometheus_available, Killed};
use crate::support::{Backend, Server};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn exporter() -> String {
    crate::support::exporter(|| {
        "# TYPE orders_total counter\norders_total{shop=\"eu\"} 41\norders_total{shop=\"us\"} 17\n".to_string()
    })
}

#[test]
fn prometheus_remote_writes_into_mobius() {
    if !prometheus_available() {
        return;
    }
    let server = Server::start(Backend::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 200ms\nscrape_configs:\n  - job_name: shop\n    static_configs:\n      - targets: ['{}']\nremote_write:\n  - url: {}/api/v1/write\n    authorization: {{ credentials: {} }}\n    queue_config: {{ batch_send_deadline: 200ms }}\n",
            exporter(),
            server.url,
            server.token
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("prom").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, answer) = server.api("GET", "/api/v1/query?query=sum(orders_total%7Bjob%3D%22shop%22%7D)", None);
        if answer["data"]["result"][0]["value"][1] == "58" {
            break;
        }
        assert!(Instant::now() < deadline, "nothing written: {answer}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Prometheus' own series about the scrape came along, with its target labels.
    let (_, answer) = server.api("GET", "/api/v1/query?query=up%7Bjob%3D%22shop%22%7D", None);
    assert_eq!(answer["data"]["result"][0]["value"][1], "1", "{answer}");

    // Without a token, or with a body that is not snappy protobuf: refused, nothing stored.
    let (code, _) = server.post_raw("/api/v1/write", &[], b"x".to_vec());
    assert_eq!(code, 401);
    let (code, answer) = server.post_raw(
        "/api/v1/write",
        &[("Authorization", &format!("Bearer {}", server.token))],
        b"garbage".to_vec(),
    );
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("snappy"), "{answer}");
}
