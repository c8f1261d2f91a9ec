//! The store: the head behind the write-ahead log, synced to disk every second by a
//! thread of its own (and when the store is dropped), and the persisted blocks.
//! Opening replays the log, so everything appended before the last sync is back after
//! a crash.
//!
//! The same thread keeps memory flat: once the head spans one and a half block
//! ranges, its oldest range is written as a block, dropped from memory and from the
//! log; adjacent blocks are compacted into ranges three times larger; blocks past
//! the retention time, or beyond the retention size, are deleted oldest first.

use crate::block::{merge_series, write_block, Block};
use crate::head::{AppendError, Head, SeriesRef};
use crate::head_chunks::ChunkFiles;
use crate::wal::{Record, Replayed, Wal};
use mobius_series::labels::{Labels, Matcher};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where and how the store keeps its data.
#[derive(Clone, Debug)]
pub struct DbOptions {
    pub dir: PathBuf,
    /// How often the write-ahead log is made durable (and blocks are looked after).
    pub sync_interval: Duration,
    /// The time range of a block cut from the head (Prometheus: 2 hours).
    pub block_range: Duration,
    /// Blocks whose samples are all older than this (before the newest sample) go.
    pub retention: Option<Duration>,
    /// Blocks go, oldest first, while blocks and log take more bytes than this.
    pub retention_bytes: Option<u64>,
}

impl DbOptions {
    pub fn new(dir: impl Into<PathBuf>) -> DbOptions {
        DbOptions {
            dir: dir.into(),
            sync_interval: Duration::from_secs(1),
            block_range: Duration::from_secs(2 * 3600),
            retention: Some(Duration::from_secs(15 * 86_400)),
            retention_bytes: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("write-ahead log in {dir}: {source}")]
    Wal { dir: PathBuf, source: io::Error },
    #[error("blocks in {dir}: {source}")]
    Blocks { dir: PathBuf, source: io::Error },
    #[error("head chunk files in {dir}: {source}")]
    Chunks { dir: PathBuf, source: io::Error },
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
    /// Numbers of series no longer in memory (the caller resolves labels again).
    pub unknown_series: usize,
    /// Older than what blocks already hold (Prometheus' "out of bounds"): dropped.
    pub out_of_bounds: usize,
}

/// Sizes, for memory and compression figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadStats {
    pub series: usize,
    pub samples: usize,
    /// Bytes of the head's compressed samples, in memory and in its chunk files.
    pub chunk_bytes: usize,
    /// Of those, the bytes in memory (open chunks, chunks not yet written out).
    pub chunk_memory_bytes: usize,
    /// Bytes of the head chunk files.
    pub chunk_file_bytes: u64,
    pub label_bytes: usize,
    pub blocks: usize,
    pub block_bytes: u64,
    pub block_samples: u64,
}

/// The persisted blocks (oldest first) and the time before which the head holds nothing.
#[derive(Debug, Default)]
struct Persisted {
    blocks: Vec<Arc<Block>>,
    head_min: Option<i64>,
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
    blocks_dir: PathBuf,
    persisted: RwLock<Persisted>,
    options: DbOptions,
    counters: Counters,
    /// What opening replayed.
    pub replayed: Replayed,
}

impl Db {
    /// Opens (or creates) the store in `options.dir`, replaying its log.
    pub fn open(options: DbOptions) -> Result<Arc<Db>, DbError> {
        let wal_dir = options.dir.join("wal");
        let blocks_dir = options.dir.join("blocks");
        let blocks = open_blocks(&blocks_dir).map_err(|source| DbError::Blocks { dir: blocks_dir.clone(), source })?;
        let head_min = blocks.iter().map(|b| b.meta.max_time).max();
        let range = i64::try_from(options.block_range.as_millis()).unwrap_or(i64::MAX).max(1);
        let chunks_dir = options.dir.join("chunks_head");
        let files = ChunkFiles::open(&chunks_dir).map_err(|source| DbError::Chunks { dir: chunks_dir, source })?;
        let mut head = Head::with_files(range, files);
        // Series keep the log's numbers; a number naming labels already known maps to them.
        let mut refs: HashMap<u32, SeriesRef> = HashMap::new();
        let (wal, replayed) = Wal::open(&wal_dir, |record| match record {
            Record::Series { series, labels } => {
                refs.insert(series, head.get_or_create_as(&labels, Some(series)).0);
            }
            Record::Samples(samples) => {
                for (series, t, v) in samples {
                    // What blocks hold already is not taken twice.
                    if head_min.is_some_and(|m| t < m) {
                        continue;
                    }
                    if let Some(r) = refs.get(&series) {
                        let _ = head.append(*r, t, v);
                    }
                }
            }
        })
        .map_err(|source| DbError::Wal { dir: wal_dir.clone(), source })?;
        drop(refs);
        tracing::info!(
            series = head.len(),
            records = replayed.records,
            blocks = blocks.len(),
            "write-ahead log replayed"
        );
        let db = Arc::new(Db {
            head: RwLock::new(head),
            wal: Mutex::new(wal),
            wal_dir,
            blocks_dir,
            persisted: RwLock::new(Persisted { blocks, head_min }),
            options: options.clone(),
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
                if let Err(e) = db.maintain() {
                    tracing::error!(error = %e, "cannot persist, compact or retire blocks");
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
        let head_min = self.persisted.read().head_min.unwrap_or(i64::MIN);
        let mut head = self.head.write();
        let mut stats = AppendStats::default();
        let mut accepted = Vec::with_capacity(samples.len());
        for &(r, t, v) in samples {
            if t < head_min {
                stats.out_of_bounds += 1;
                continue;
            }
            match head.check_and_push(r, t, v) {
                Ok(true) => accepted.push((r, t, v)),
                Ok(false) => {}
                Err(AppendError::OutOfOrder { .. }) => stats.out_of_order += 1,
                Err(AppendError::UnknownSeries(_)) => stats.unknown_series += 1,
                Err(AppendError::Duplicate { .. }) => stats.duplicate += 1,
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

    /// The series every matcher accepts, with their samples in `[mint, maxt]`, from
    /// the blocks and the head.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<mobius_series::Series> {
        let persisted = self.persisted.read();
        let mut merged: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for block in &persisted.blocks {
            match block.select(matchers, mint, maxt) {
                Ok(found) => {
                    for (labels, samples) in found {
                        merged.entry(labels).or_default().extend(samples);
                    }
                }
                Err(e) => tracing::error!(block = %block.dir.display(), error = %e, "cannot read a block"),
            }
        }
        // The head holds nothing before `head_min`; between a block's cut and the head's
        // truncation it still has those samples, which must not count twice.
        let from = persisted.head_min.map_or(mint, |m| m.max(mint));
        let head = self.head.read();
        for r in head.select(matchers) {
            let Some(labels) = head.labels(r) else { continue };
            let samples = head.samples(r, from, maxt);
            if !samples.is_empty() || !merged.contains_key(&labels) {
                merged.entry(labels).or_default().extend(samples);
            }
        }
        merged.into_iter().collect()
    }

    /// The label sets of the series any of the matcher sets accepts, sorted.
    pub fn series_labels(&self, sets: &[Vec<Matcher>]) -> Vec<Labels> {
        let mut out: Vec<Labels> = {
            let head = self.head.read();
            sets.iter().flat_map(|set| head.select(set)).filter_map(|r| head.labels(r)).collect()
        };
        for block in &self.persisted.read().blocks {
            for (labels, _) in &block.series {
                if sets.iter().any(|set| set.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))) {
                    out.push(labels.clone());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    pub fn label_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.head.read().label_names().into_iter().map(str::to_string).collect();
        for block in &self.persisted.read().blocks {
            for (labels, _) in &block.series {
                names.extend(labels.iter().map(|(k, _)| k.to_string()));
            }
        }
        names.into_iter().collect()
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut values: BTreeSet<String> =
            self.head.read().label_values(name).into_iter().map(str::to_string).collect();
        for block in &self.persisted.read().blocks {
            values.extend(block.series.iter().filter_map(|(l, _)| l.get(name)).map(str::to_string));
        }
        values.into_iter().collect()
    }

    pub fn stats(&self) -> HeadStats {
        let (series, sizes) = {
            let head = self.head.read();
            (head.len(), head.sizes())
        };
        let persisted = self.persisted.read();
        HeadStats {
            series,
            samples: sizes.samples,
            chunk_bytes: sizes.chunk_bytes,
            chunk_memory_bytes: sizes.chunk_memory_bytes,
            chunk_file_bytes: sizes.chunk_file_bytes,
            label_bytes: sizes.label_bytes,
            blocks: persisted.blocks.len(),
            block_bytes: persisted.blocks.iter().map(|b| b.bytes).sum(),
            block_samples: persisted.blocks.iter().map(|b| b.meta.num_samples).sum(),
        }
    }

    fn range_ms(&self) -> i64 {
        i64::try_from(self.options.block_range.as_millis()).unwrap_or(i64::MAX).max(1)
    }

    /// Persists, compacts and retires blocks as needed (the sync thread calls it every
    /// second; tests call it directly). Returns whether anything changed.
    pub fn maintain(&self) -> io::Result<bool> {
        let mut changed = false;
        while self.cut_block()? {
            changed = true;
        }
        while self.compact()? {
            changed = true;
        }
        changed |= self.retire()?;
        Ok(changed)
    }

    /// Writes the head's oldest block range once the head spans one and a half ranges,
    /// then drops it from memory and from the log.
    fn cut_block(&self) -> io::Result<bool> {
        let range = self.range_ms();
        let Some((mint, maxt)) = self.head.read().time_bounds() else { return Ok(false) };
        let head_min = self.persisted.read().head_min;
        let start = head_min.map_or(mint, |m| m.max(mint));
        let a = start.div_euclid(range) * range;
        let b = a.saturating_add(range);
        if maxt < b.saturating_add(range / 2) {
            return Ok(false);
        }
        // Read in batches, so appends wait for one batch of chunk reads at most.
        let refs = self.head.read().refs();
        let mut series: Vec<crate::block::SeriesChunks> = Vec::new();
        for batch in refs.chunks(1024) {
            let head = self.head.read();
            for r in batch {
                let Some(labels) = head.labels(*r) else { continue };
                let chunks = head.chunks_in(*r, a, b)?;
                if !chunks.is_empty() {
                    series.push((labels, chunks));
                }
            }
        }
        let dir = write_block(&self.blocks_dir, a, b, 1, &series)?;
        let block = Arc::new(Block::open(&dir)?);
        tracing::info!(block = %dir.display(), series = block.meta.num_series, samples = block.meta.num_samples, "head block persisted");
        {
            let mut persisted = self.persisted.write();
            persisted.blocks.push(block);
            persisted.blocks.sort_by_key(|b| b.meta.min_time);
            persisted.head_min = Some(persisted.head_min.map_or(b, |m| m.max(b)));
        }
        let live: Vec<Record> = {
            let mut head = self.head.write();
            let gone = head.truncate(b);
            tracing::debug!(series_removed = gone, "head truncated");
            head.refs()
                .into_iter()
                .filter_map(|r| Some(Record::Series { series: r, labels: head.labels(r)? }))
                .collect()
        };
        self.wal.lock().truncate(b, &live)?;
        Ok(true)
    }

    /// Merges the blocks inside one window three (nine, 27…) times the block range,
    /// once the head has moved past the window; one merge per call.
    fn compact(&self) -> io::Result<bool> {
        let range = self.range_ms();
        let (blocks, head_min) = {
            let p = self.persisted.read();
            (p.blocks.clone(), p.head_min.unwrap_or(i64::MIN))
        };
        let max_window =
            self.options.retention.map_or(31 * 86_400_000, |r| i64::try_from(r.as_millis() / 10).unwrap_or(i64::MAX));
        let mut window = range.saturating_mul(3);
        while window <= max_window {
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for block in &blocks {
                let start = block.meta.min_time.div_euclid(window) * window;
                if block.meta.max_time <= start.saturating_add(window) {
                    groups.entry(start).or_default().push(Arc::clone(block));
                }
            }
            for (start, group) in groups {
                if group.len() < 2 || start.saturating_add(window) > head_min {
                    continue;
                }
                let parts = group.iter().map(|b| b.read_all()).collect::<io::Result<Vec<_>>>()?;
                let level = group.iter().map(|b| b.meta.level).max().unwrap_or(1) + 1;
                let min_time = group.iter().map(|b| b.meta.min_time).min().unwrap_or(start);
                let max_time = group.iter().map(|b| b.meta.max_time).max().unwrap_or(start + window);
                let dir = write_block(&self.blocks_dir, min_time, max_time, level, &merge_series(parts))?;
                let merged = Arc::new(Block::open(&dir)?);
                tracing::info!(block = %dir.display(), sources = group.len(), "blocks compacted");
                {
                    let mut p = self.persisted.write();
                    p.blocks.retain(|b| !group.iter().any(|g| Arc::ptr_eq(g, b)));
                    p.blocks.push(merged);
                    p.blocks.sort_by_key(|b| b.meta.min_time);
                }
                for old in &group {
                    fs::remove_dir_all(&old.dir)?;
                }
                return Ok(true);
            }
            window = window.saturating_mul(3);
        }
        Ok(false)
    }

    /// Deletes blocks past the retention time (counted from the newest sample) and,
    /// oldest first, while blocks, log and head chunk files together exceed the
    /// retention size.
    fn retire(&self) -> io::Result<bool> {
        let newest = {
            let p = self.persisted.read();
            let head_max = self.head.read().time_bounds().map(|(_, max)| max);
            head_max.into_iter().chain(p.blocks.iter().map(|b| b.meta.max_time)).max()
        };
        let Some(newest) = newest else { return Ok(false) };
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        {
            let p = self.persisted.read();
            if let Some(keep) = self.options.retention {
                let horizon = newest.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
                doomed.extend(p.blocks.iter().filter(|b| b.meta.max_time <= horizon).cloned());
            }
            if let Some(limit) = self.options.retention_bytes {
                // As Prometheus counts it: blocks, the log and the head chunk files.
                let chunk_files = self.head.read().chunk_file_bytes();
                let mut total: u64 =
                    self.wal.lock().disk_bytes() + chunk_files + p.blocks.iter().map(|b| b.bytes).sum::<u64>();
                for b in &p.blocks {
                    if total <= limit {
                        break;
                    }
                    total = total.saturating_sub(b.bytes);
                    if !doomed.iter().any(|d| Arc::ptr_eq(d, b)) {
                        doomed.push(Arc::clone(b));
                    }
                }
            }
        }
        if doomed.is_empty() {
            return Ok(false);
        }
        self.persisted.write().blocks.retain(|b| !doomed.iter().any(|d| Arc::ptr_eq(d, b)));
        for b in &doomed {
            tracing::info!(block = %b.dir.display(), "block past retention deleted");
            fs::remove_dir_all(&b.dir)?;
        }
        Ok(true)
    }
}

/// Opens every block; temporary directories of an interrupted write are removed, and
/// so are blocks a compaction already merged into a larger one.
fn open_blocks(dir: &std::path::Path) -> io::Result<Vec<Arc<Block>>> {
    fs::create_dir_all(dir)?;
    let mut blocks = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".tmp-") {
            fs::remove_dir_all(entry.path())?;
            continue;
        }
        if entry.file_type()?.is_dir() {
            blocks.push(Block::open(&entry.path())?);
        }
    }
    let covered = |b: &Block, all: &[Block]| {
        all.iter().any(|o| {
            o.meta.level > b.meta.level && o.meta.min_time <= b.meta.min_time && b.meta.max_time <= o.meta.max_time
        })
    };
    let mut kept = Vec::new();
    for b in &blocks {
        if covered(b, &blocks) {
            tracing::info!(block = %b.dir.display(), "block already compacted into a larger one; deleted");
            fs::remove_dir_all(&b.dir)?;
        }
    }
    for b in blocks {
        if b.dir.exists() {
            kept.push(Arc::new(b));
        }
    }
    kept.sort_by_key(|b| b.meta.min_time);
    Ok(kept)
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.wal.get_mut().sync() {
            tracing::error!(error = %e, "cannot sync the write-ahead log on close");
        }
    }
}
