//! The store: the head behind the write-ahead log, synced to disk every second by a
//! thread of its own (and when the store is dropped). Opening replays the log, so
//! everything appended before the last sync is back after a crash.

use crate::head::{AppendError, Head, SeriesRef};
use crate::labels::{Labels, Matcher};
use crate::wal::{Record, Replayed, Wal};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where and how the store keeps its data.
#[derive(Clone, Debug)]
pub struct DbOptions {
    pub dir: PathBuf,
    /// How often the write-ahead log is made durable.
    pub sync_interval: Duration,
}

impl DbOptions {
    pub fn new(dir: impl Into<PathBuf>) -> DbOptions {
        DbOptions { dir: dir.into(), sync_interval: Duration::from_secs(1) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("write-ahead log in {dir}: {source}")]
    Wal { dir: PathBuf, source: io::Error },
}

/// What one append did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendStats {
    pub appended: usize,
    pub new_series: usize,
    /// Older than the series' last sample: dropped.
    pub out_of_order: usize,
    /// Another value at the series' last timestamp: dropped.
    pub duplicate: usize,
}

/// Sizes, for memory and compression figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadStats {
    pub series: usize,
    pub samples: usize,
    pub chunk_bytes: usize,
    pub label_bytes: usize,
}

#[derive(Debug, Default)]
struct Counters {
    samples_appended: AtomicU64,
    series_created: AtomicU64,
}

#[derive(Debug)]
pub struct Db {
    head: RwLock<Head>,
    wal: Mutex<Wal>,
    wal_dir: PathBuf,
    counters: Counters,
    /// What opening replayed.
    pub replayed: Replayed,
}

impl Db {
    /// Opens (or creates) the store in `options.dir`, replaying its log.
    pub fn open(options: DbOptions) -> Result<Arc<Db>, DbError> {
        let wal_dir = options.dir.join("wal");
        let mut head = Head::default();
        // Series numbers in the log map to the head's (equal unless the log was edited).
        let mut refs: HashMap<u32, SeriesRef> = HashMap::new();
        let (wal, replayed) = Wal::open(&wal_dir, |record| match record {
            Record::Series { series, labels } => {
                refs.insert(series, head.get_or_create(&labels).0);
            }
            Record::Samples(samples) => {
                for (series, t, v) in samples {
                    if let Some(r) = refs.get(&series) {
                        let _ = head.append(*r, t, v);
                    }
                }
            }
        })
        .map_err(|source| DbError::Wal { dir: wal_dir.clone(), source })?;
        drop(refs);
        tracing::info!(series = head.len(), records = replayed.records, "write-ahead log replayed");
        let db = Arc::new(Db {
            head: RwLock::new(head),
            wal: Mutex::new(wal),
            wal_dir,
            counters: Counters::default(),
            replayed,
        });
        let weak = Arc::downgrade(&db);
        let interval = options.sync_interval;
        std::thread::Builder::new()
            .name("mobius-wal-sync".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(db) = weak.upgrade() else { return };
                if let Err(e) = db.sync() {
                    tracing::error!(error = %e, "cannot sync the write-ahead log");
                }
            })
            .map_err(|source| DbError::Wal { dir: db.wal_dir.clone(), source })?;
        Ok(db)
    }

    /// Appends samples, creating series as needed; returns once the log holds them
    /// (durable at the next sync, at most `sync_interval` later).
    pub fn append<'a>(
        &self,
        samples: impl IntoIterator<Item = (&'a Labels, i64, f64)>,
    ) -> Result<AppendStats, DbError> {
        let mut new_series = 0;
        let mut refs = Vec::new();
        for (labels, t, v) in samples {
            let (r, created) = self.resolve(labels)?;
            new_series += usize::from(created);
            refs.push((r, t, v));
        }
        let stats = self.append_refs(&refs)?;
        Ok(AppendStats { new_series, ..stats })
    }

    /// The series with these labels, created (and logged) when new.
    pub fn series_ref(&self, labels: &Labels) -> Result<SeriesRef, DbError> {
        self.resolve(labels).map(|(r, _)| r)
    }

    fn resolve(&self, labels: &Labels) -> Result<(SeriesRef, bool), DbError> {
        if let Some(r) = self.head.read().lookup(labels) {
            return Ok((r, false));
        }
        let mut head = self.head.write();
        let (r, created) = head.get_or_create(labels);
        if created {
            let record = Record::Series { series: r, labels: labels.clone() };
            self.wal.lock().log(&[record]).map_err(|source| DbError::Wal { dir: self.wal_dir.clone(), source })?;
            self.counters.series_created.fetch_add(1, Ordering::Relaxed);
        }
        Ok((r, created))
    }

    /// Appends samples of series already known by number (see [`Db::series_ref`]).
    pub fn append_refs(&self, samples: &[(SeriesRef, i64, f64)]) -> Result<AppendStats, DbError> {
        let mut head = self.head.write();
        let mut stats = AppendStats::default();
        let mut accepted = Vec::with_capacity(samples.len());
        for &(r, t, v) in samples {
            match head.check(r, t, v) {
                Ok(true) => {
                    head.push(r, t, v);
                    accepted.push((r, t, v));
                }
                Ok(false) => {}
                Err(AppendError::OutOfOrder { .. }) => stats.out_of_order += 1,
                Err(_) => stats.duplicate += 1,
            }
        }
        stats.appended = accepted.len();
        self.counters.samples_appended.fetch_add(accepted.len() as u64, Ordering::Relaxed);
        if !accepted.is_empty() {
            self.wal
                .lock()
                .log(&[Record::Samples(accepted)])
                .map_err(|source| DbError::Wal { dir: self.wal_dir.clone(), source })?;
        }
        Ok(stats)
    }

    /// Samples appended and series created since the store was opened.
    pub fn counters(&self) -> (u64, u64) {
        (self.counters.samples_appended.load(Ordering::Relaxed), self.counters.series_created.load(Ordering::Relaxed))
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.wal.lock().sync()
    }

    /// The series every matcher accepts, with their samples in `[mint, maxt]`.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let head = self.head.read();
        head.select(matchers)
            .into_iter()
            .filter_map(|r| Some((head.labels(r)?, head.series(r)?.samples(mint, maxt))))
            .collect()
    }

    /// The label sets of the series any of the matcher sets accepts, sorted.
    pub fn series_labels(&self, sets: &[Vec<Matcher>]) -> Vec<Labels> {
        let head = self.head.read();
        let mut out: Vec<Labels> =
            sets.iter().flat_map(|set| head.select(set)).filter_map(|r| head.labels(r)).collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn label_names(&self) -> Vec<String> {
        self.head.read().label_names().into_iter().map(str::to_string).collect()
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.head.read().label_values(name).into_iter().map(str::to_string).collect()
    }

    pub fn stats(&self) -> HeadStats {
        let head = self.head.read();
        let (samples, chunk_bytes, label_bytes) = head.sizes();
        HeadStats { series: head.len(), samples, chunk_bytes, label_bytes }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.wal.get_mut().sync() {
            tracing::error!(error = %e, "cannot sync the write-ahead log on close");
        }
    }
}
