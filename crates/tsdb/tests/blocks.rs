//! Blocks on disk: the head's oldest range is persisted and dropped from memory and
//! from the write-ahead log, blocks are compacted, queries see one continuous series
//! across blocks and head (before and after a reopen), and retention deletes the
//! oldest blocks by time and by size.
#![allow(clippy::unwrap_used)]

use mobius_series::labels::{Labels, Matcher};
use mobius_tsdb::{Db, DbOptions};
use std::sync::Arc;
use std::time::Duration;

const S: i64 = 1000;

fn options(dir: &std::path::Path) -> DbOptions {
    DbOptions {
        block_range: Duration::from_secs(10),
        retention: None,
        // The test drives maintenance itself.
        sync_interval: Duration::from_secs(3600),
        ..DbOptions::new(dir)
    }
}

fn series(i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", "requests_total"), ("pod", &format!("p{i:02}"))])
}

/// Series `p00`..`p49` get a sample every second; `p49` stops at 50 s.
fn write(db: &Db, from: i64, to: i64) {
    for t in from..to {
        let batch: Vec<(Labels, i64, f64)> =
            (0..50).filter(|i| *i < 49 || t < 50).map(|i| (series(i), t * S, (t * 10 + i as i64) as f64)).collect();
        db.append(batch.iter().map(|(l, t, v)| (l, *t, *v))).unwrap();
    }
}

fn everything(db: &Db) -> Vec<(Labels, Vec<(i64, f64)>)> {
    db.select(&[Matcher::equal("__name__", "requests_total")], i64::MIN, i64::MAX)
}

fn wal_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn the_head_is_persisted_compacted_and_truncated_without_losing_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let db: Arc<Db> = Db::open(options(dir.path())).unwrap();
    write(&db, 0, 100);
    let before = everything(&db);
    assert_eq!(before.len(), 50);
    assert_eq!(before.iter().map(|(_, s)| s.len()).sum::<usize>(), 49 * 100 + 50);
    let head_before = db.stats();

    assert!(db.maintain().unwrap());
    let stats = db.stats();
    // [0, 90 s) went to disk, compacted 10 s → 30 s → 90 s into one block.
    assert_eq!(stats.blocks, 1, "{stats:?}");
    assert_eq!(stats.block_samples as usize, 49 * 90 + 50);
    assert_eq!(stats.samples, 49 * 10, "only the last 10 s stay in memory: {stats:?}");
    assert!(stats.chunk_bytes < head_before.chunk_bytes / 5, "{stats:?} vs {head_before:?}");
    assert_eq!(stats.series, 49, "the series that went quiet left memory");
    assert_eq!(everything(&db), before, "queries see blocks and head as one");
    let block_dirs: Vec<_> = std::fs::read_dir(dir.path().join("blocks")).unwrap().collect();
    assert_eq!(block_dirs.len(), 1, "compacted sources are deleted");

    // More data: the next cut lets the log drop the segment the first block covers.
    write(&db, 100, 120);
    db.maintain().unwrap();
    let files = wal_files(dir.path());
    assert!(files.iter().any(|f| f.starts_with("checkpoint.")), "{files:?}");
    assert!(!files.contains(&"00000001".to_string()), "{files:?}");
    let after = everything(&db);
    assert_eq!(after.iter().map(|(_, s)| s.len()).sum::<usize>(), 49 * 120 + 50);
    assert_eq!(after.iter().find(|(l, _)| l == &series(3)).unwrap().1.len(), 120);

    // Reopened: the checkpoint and the remaining log rebuild the head, blocks the rest,
    // and nothing is counted twice.
    drop(db);
    let db = Db::open(options(dir.path())).unwrap();
    assert_eq!(everything(&db), after);
    assert_eq!(db.stats().samples, 49 * 10, "the replay leaves what blocks hold on disk");
    // What blocks hold is closed: an older sample is refused, not silently hidden.
    let stats = db.append([(&series(1), 50 * S, 1.0)]).unwrap();
    assert_eq!((stats.appended, stats.out_of_bounds), (0, 1));
    // Appending goes on after a reopen without mixing series up.
    write(&db, 120, 121);
    let p7 = db.select(&[Matcher::equal("pod", "p07")], 120 * S, 120 * S);
    assert_eq!(p7[0].1, [(120 * S, 1207.0)]);
}

#[test]
fn retention_deletes_the_oldest_blocks_by_time_and_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(options(dir.path())).unwrap();
    write(&db, 0, 120);
    db.maintain().unwrap();
    drop(db);

    // Keep 25 s before the newest sample (119 s): blocks ending at or before 94 s go.
    let db = Db::open(DbOptions { retention: Some(Duration::from_secs(25)), ..options(dir.path()) }).unwrap();
    assert!(db.maintain().unwrap());
    let oldest = everything(&db).iter().filter_map(|(_, s)| s.first().map(|p| p.0)).min().unwrap();
    assert!((90 * S..=100 * S).contains(&oldest), "oldest sample at {oldest}");
    drop(db);

    // A size limit of one byte leaves no block at all; the head keeps its samples.
    let db = Db::open(DbOptions { retention_bytes: Some(1), ..options(dir.path()) }).unwrap();
    db.maintain().unwrap();
    assert_eq!(db.stats().blocks, 0);
    assert!(!everything(&db).is_empty());
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

#[test]
fn retention_by_size_counts_the_head_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(options(dir.path())).unwrap();
    // 6,000 series of values that compress badly. After the blocks are cut, the head
    // holds 50 s to 63 s: the full chunks of 50 s to 60 s outgrow the chunk files'
    // write buffer and reach the disk.
    let labels: Vec<Labels> =
        (0..6000).map(|i| Labels::from_pairs(&[("__name__", "noise"), ("i", &i.to_string())])).collect();
    let write = |db: &Db, from: i64, to: i64| {
        for t in from..to {
            let value = |i: usize| ((t * 7919 + i as i64 * 104_729) % 65_521) as f64 / 7.0;
            db.append(labels.iter().enumerate().map(|(i, l)| (l, t * S, value(i)))).unwrap();
        }
    };
    write(&db, 0, 60);
    while db.maintain().unwrap() {}
    write(&db, 60, 64);
    drop(db);
    // Sizes after a replay, which rebuilds the same chunk files every time.
    let db = Db::open(options(dir.path())).unwrap();
    let stats = db.stats();
    let wal = dir_bytes(&dir.path().join("wal"));
    assert!(stats.chunk_file_bytes > 0 && stats.blocks > 1, "{stats:?}");
    drop(db);
    // Blocks and log alone fit the limit; with the chunk files they do not.
    let limit = stats.block_bytes + wal + stats.chunk_file_bytes - 1;
    let db = Db::open(DbOptions { retention_bytes: Some(limit), ..options(dir.path()) }).unwrap();
    assert_eq!(db.stats().chunk_file_bytes, stats.chunk_file_bytes);
    assert!(db.maintain().unwrap());
    assert_eq!(db.stats().blocks, stats.blocks - 1, "the oldest block goes");
}
