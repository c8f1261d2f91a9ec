//! The store through its public API: appends and selections, and `kill -9` of a
//! process in the middle of ingestion losing nothing that was synced.
#![allow(clippy::unwrap_used)]

use mobius_series::labels::{Labels, MatchOp, Matcher};
use mobius_tsdb::{Db, DbOptions};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "MOBIUS_MONITOR_INGEST_CHILD";
const SERIES: usize = 100;

fn series(i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", "requests_total"), ("instance", &format!("i{i}")), ("job", "api")])
}

#[test]
fn appends_are_selected_by_matchers_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(DbOptions::new(dir.path())).unwrap();
        let labels: Vec<Labels> = (0..3).map(series).collect();
        for t in 0..200 {
            let stats = db.append(labels.iter().map(|l| (l, t * 1000, t as f64))).unwrap();
            assert_eq!(stats.appended, 3);
        }
        let late = db.append([(&labels[0], 5_000, 1.0), (&labels[0], 199_000, 7.0)]).unwrap();
        assert_eq!((late.out_of_order, late.duplicate, late.appended), (1, 1, 0));
        let stats = db.stats();
        assert_eq!((stats.series, stats.samples), (3, 600));
        assert!(stats.chunk_bytes < 600 * 2, "{} bytes for 600 samples", stats.chunk_bytes);
    }
    let db = Db::open(DbOptions::new(dir.path())).unwrap();
    let picked = db.select(&[Matcher::new(MatchOp::Regex, "instance", "i[01]").unwrap()], 10_000, 12_000);
    assert_eq!(picked.len(), 2);
    assert_eq!(picked[0].0, series(0));
    assert_eq!(picked[0].1, [(10_000, 10.0), (11_000, 11.0), (12_000, 12.0)]);
    assert_eq!(db.label_values("instance"), ["i0", "i1", "i2"]);
    assert!(db.label_names().contains(&"job".to_string()));
}

#[test]
fn closed_chunks_live_in_files_and_are_rebuilt_from_the_log_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let labels: Vec<Labels> = (0..100).map(series).collect();
    let expected = |i: usize| -> Vec<(i64, f64)> { (0..1800).map(|t| (t * 1000, (t * 7 + i as i64) as f64)).collect() };
    {
        let db = Db::open(DbOptions::new(dir.path())).unwrap();
        for t in 0..1800i64 {
            db.append(labels.iter().enumerate().map(|(i, l)| (l, t * 1000, (t * 7 + i as i64) as f64))).unwrap();
        }
        let stats = db.stats();
        assert_eq!(stats.samples, 180_000);
        // 15 chunks a series, 14 closed: what memory keeps is the open ones and the
        // unwritten tail of the files.
        assert!(stats.chunk_file_bytes > 0, "{stats:?}");
        assert!(stats.chunk_memory_bytes < stats.chunk_bytes / 2, "{stats:?}");
        let all = db.select(&[Matcher::equal("__name__", "requests_total")], 0, i64::MAX);
        assert_eq!(all.len(), 100);
        for (labels, samples) in &all {
            let i: usize = labels.get("instance").unwrap()[1..].parse().unwrap();
            assert!(*samples == expected(i), "{labels}: {} samples differ", samples.len());
        }
    }
    // Files an earlier process left are a cache: a reopen rebuilds them from the log.
    std::fs::write(dir.path().join("chunks_head/00000000"), b"garbage").unwrap();
    let db = Db::open(DbOptions::new(dir.path())).unwrap();
    let stats = db.stats();
    assert_eq!(stats.samples, 180_000);
    assert!(stats.chunk_file_bytes > 0, "{stats:?}");
    let some = db.select(&[Matcher::equal("instance", "i42")], 500_000, 1_000_000);
    assert!(some[0].1 == expected(42)[500..=1000], "{} samples differ", some[0].1.len());
}

/// Run as a child process by the test below: ingests until killed, printing how far
/// the log has been synced.
#[test]
fn ingest_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return; // Only meaningful as the child of the kill -9 test.
    };
    let db = Db::open(DbOptions { sync_interval: Duration::from_millis(100), ..DbOptions::new(dir) }).unwrap();
    let labels: Vec<Labels> = (0..SERIES).map(series).collect();
    for step in 0..1_000_000i64 {
        db.append(labels.iter().map(|l| (l, step * 1000, step as f64))).unwrap();
        if step % 10 == 9 {
            db.sync().unwrap();
            println!("synced {step}");
        }
    }
}

#[test]
fn kill_9_during_ingestion_loses_nothing_that_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "ingest_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut synced = None;
    for line in lines.by_ref() {
        if let Some(step) = line.unwrap().strip_prefix("synced ") {
            synced = Some(step.parse::<i64>().unwrap());
            if synced >= Some(300) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the child ingests too slowly");
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no final sync
    child.wait().unwrap();
    // Lines printed before the kill may still be in the pipe.
    for line in lines {
        if let Some(step) = line.unwrap().strip_prefix("synced ") {
            synced = Some(step.parse::<i64>().unwrap());
        }
    }
    let synced = synced.expect("the child never synced");

    let db = Db::open(DbOptions::new(dir.path())).unwrap();
    assert!(db.replayed.records > 0);
    let all = db.select(&[Matcher::equal("__name__", "requests_total")], 0, i64::MAX);
    assert_eq!(all.len(), SERIES);
    for (labels, samples) in &all {
        assert!(samples.len() as i64 > synced, "{labels}: {} samples back, {} were synced", samples.len(), synced + 1);
        for (i, (t, v)) in samples.iter().enumerate() {
            assert_eq!((*t, *v), (i as i64 * 1000, i as f64), "{labels}");
        }
    }
}
