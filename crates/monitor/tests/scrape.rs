//! Scraping real HTTP targets on loopback: both formats, target labels, `up` and the
//! `scrape_*` series, and staleness for series that went away and for a dead target.
#![allow(clippy::unwrap_used)]

use mobius_monitor::scrape::{Scraper, Target};
use mobius_series::is_stale;
use mobius_series::labels::{Labels, Matcher};
use mobius_tsdb::{Db, DbOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An exporter whose body changes after its second scrape (series `b` goes away).
async fn exporter(open_metrics: bool, close: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let scrapes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&scrapes);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf).to_lowercase();
                    assert!(head.contains("accept: application/openmetrics-text"), "{head}");
                    buf.clear();
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let b = if n < 2 { "b_total{job=\"mine\"} 7\n" } else { "" };
                    let (content_type, body) = if open_metrics {
                        (
                            "application/openmetrics-text; version=1.0.0",
                            format!("# TYPE a counter\na_total {n}\n{b}# EOF\n"),
                        )
                    } else {
                        ("text/plain; version=0.0.4", format!("a_total {n}\n{b}"))
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, scrapes)
}

fn target(address: &str, job: &str) -> Target {
    Target {
        address: address.to_string(),
        metrics_path: "/metrics".into(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
        honor_labels: false,
        honor_timestamps: true,
        labels: Labels::from_pairs(&[("job", job), ("instance", address)]),
        metric_relabel: Vec::new().into(),
    }
}

fn values(db: &Db, name: &str, job: &str) -> Vec<f64> {
    let found = db.select(&[Matcher::equal("__name__", name), Matcher::equal("job", job)], 0, i64::MAX);
    assert!(found.len() <= 1, "{found:?}");
    found.into_iter().flat_map(|(_, s)| s.into_iter().map(|(_, v)| v)).collect()
}

#[tokio::test]
async fn both_formats_are_scraped_with_up_labels_and_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(DbOptions::new(dir.path())).unwrap();
    let (text_addr, text_scrapes) = exporter(false, false).await;
    let (om_addr, om_scrapes) = exporter(true, false).await;
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
    let scraper = Scraper::new(Arc::clone(&db));
    scraper.set_targets(vec![target(&text_addr, "text"), target(&om_addr, "om"), target(&dead, "dead")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while text_scrapes.load(Ordering::SeqCst) < 5 || om_scrapes.load(Ordering::SeqCst) < 5 {
        assert!(std::time::Instant::now() < deadline, "targets were not scraped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    for job in ["text", "om"] {
        let a = values(&db, "a_total", job);
        assert!(a.len() >= 4 && a.windows(2).all(|w| w[1] == w[0] + 1.0), "{job}: {a:?}");
        // `b` was in the first two scrapes only: two samples, then a stale marker.
        let found =
            db.select(&[Matcher::equal("__name__", "b_total"), Matcher::equal("exported_job", "mine")], 0, i64::MAX);
        let b: Vec<f64> =
            found.iter().find(|(l, _)| l.get("job") == Some(job)).unwrap().1.iter().map(|(_, v)| *v).collect();
        assert_eq!(b.len(), 3, "{job}: {b:?}");
        assert_eq!(&b[..2], [7.0, 7.0]);
        assert!(is_stale(b[2]));
        assert!(values(&db, "up", job).iter().all(|v| *v == 1.0));
        assert!(values(&db, "scrape_samples_scraped", job).contains(&2.0));
    }
    assert!(!values(&db, "up", "dead").is_empty() && values(&db, "up", "dead").iter().all(|v| *v == 0.0));
    let health: Vec<_> = scraper.targets().into_iter().filter(|(t, _)| t.address == dead).collect();
    assert!(health[0].1.last_error.is_some(), "{health:?}");

    // A target removed from the configuration stops being scraped.
    scraper.set_targets(vec![target(&om_addr, "om")]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = text_scrapes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(text_scrapes.load(Ordering::SeqCst), before);
    assert_eq!(scraper.targets().len(), 1);
    // Its series end with a staleness marker, so queries stop seeing them at once.
    for name in ["a_total", "up"] {
        let last = *values(&db, name, "text").last().unwrap();
        assert!(is_stale(last), "{name} of the removed target ends with {last}");
    }
    assert!(!is_stale(*values(&db, "up", "om").last().unwrap()));
}

/// A target that closes its connection after every answer is scraped on a new
/// connection each time, never missing a scrape (and so never marked stale).
#[tokio::test]
async fn a_target_closing_its_connections_is_never_missed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(DbOptions::new(dir.path())).unwrap();
    let (addr, scrapes) = exporter(false, true).await;
    let scraper = Scraper::new(Arc::clone(&db));
    scraper.set_targets(vec![target(&addr, "closing")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while scrapes.load(Ordering::SeqCst) < 6 {
        assert!(std::time::Instant::now() < deadline, "not scraped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let up = values(&db, "up", "closing");
    assert!(up.len() >= 5 && up.iter().all(|v| *v == 1.0), "{up:?}");
    let a = values(&db, "a_total", "closing");
    assert!(a.iter().all(|v| !is_stale(*v)), "{a:?}");
}

/// Issue 15 (every input has a bound): a target answering an endless body fails its
/// scrape at 64 MiB, naming the limit, instead of growing the server's memory.
#[tokio::test]
async fn an_endless_scrape_body_stops_at_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(DbOptions::new(dir.path())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut chunk = [0u8; 1024];
                let _ = stream.read(&mut chunk).await;
                let head =
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let line = "# a comment line that goes on and on and on and on and on\n".repeat(1024);
                let piece = format!("{:x}\r\n{line}\r\n", line.len());
                while stream.write_all(piece.as_bytes()).await.is_ok() {}
            });
        }
    });
    let scraper = Scraper::new(Arc::clone(&db));
    let mut slow = target(&addr, "endless");
    slow.timeout = Duration::from_secs(30);
    slow.interval = Duration::from_secs(1);
    scraper.set_targets(vec![slow]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = scraper.targets();
        if let Some(error) = health.iter().find_map(|(_, h)| h.last_error.clone()) {
            assert!(error.contains("larger than 67108864 bytes"), "{error}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the endless scrape never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
