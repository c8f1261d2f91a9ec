//! The in-memory head: every series with its chunks, found by labels through a
//! postings index (label name → value → series, in creation order).
//!
//! Label strings are interned: a series holds pairs of symbol numbers (8 bytes a
//! label), each distinct string is kept once, and series are found by the hash of
//! their label set. A full chunk goes to the head chunk files (`head_chunks`) and
//! the series keeps a 16-byte reference to it. Chunks are cut at multiples of the
//! block range, so every chunk belongs to exactly one block window, named by its
//! first sample's time; truncation drops the chunks a block took over and the series
//! left without samples.

use crate::chunk::{iter_bytes, ClosedChunk, XorChunk};
use crate::head_chunks::{ChunkFiles, ChunkRef};
use mobius_series::labels::{Labels, MatchOp, Matcher};
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::Arc;

/// A series' number, given in creation order (the write-ahead log relies on it).
pub type SeriesRef = u32;

/// Hashes keys that need no SipHash: series numbers (ours, dense and never chosen
/// from outside, on the hottest lookup of ingestion) and 128-bit keys that are keyed
/// hashes already (the scrape cache's), by their low half.
///
/// A series number is its own bucket index: hashbrown picks the bucket from the low
/// bits, so series made one after another (a target's, in the order it exposes them)
/// sit side by side, and a scrape's appends walk the table in order instead of missing
/// the cache on every sample (a quarter of ingestion's CPU when they were spread). The
/// top seven bits, hashbrown's tag, are mixed so that probing still tells keys apart.
#[derive(Clone, Copy, Default)]
pub struct RefHasher(u64);

impl Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        let mixed = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = u64::from(n) | (mixed & (0x7f << 57));
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// Why a sample was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("sample at {t} is older than the series' last sample at {last}")]
    OutOfOrder { t: i64, last: i64 },
    #[error("another value for the series' last timestamp {t}")]
    Duplicate { t: i64 },
    #[error("unknown series {0}")]
    UnknownSeries(SeriesRef),
}

/// One series: its labels as symbol pairs, where its closed chunks are, oldest
/// first, and the chunk being appended to.
#[derive(Debug)]
pub struct MemSeries {
    labels: Box<[(u32, u32)]>,
    closed: Vec<ChunkRef>,
    open: XorChunk,
}

impl MemSeries {
    /// The last sample's time, if any.
    pub fn last_time(&self) -> Option<i64> {
        (!self.open.is_empty()).then(|| self.open.last_time())
    }

    /// Checks a sample without storing it; `Ok(false)` for an exact repeat (ignored).
    fn check(&self, t: i64, v: f64) -> Result<bool, AppendError> {
        match self.last_time() {
            Some(last) if t < last => Err(AppendError::OutOfOrder { t, last }),
            Some(last) if t == last => {
                if self.open.last_value().to_bits() == v.to_bits() {
                    Ok(false)
                } else {
                    Err(AppendError::Duplicate { t })
                }
            }
            _ => Ok(true),
        }
    }

    /// Stores a sample, keeping the head's totals.
    fn push(&mut self, t: i64, v: f64, range: i64, files: &mut ChunkFiles, totals: &mut Totals) {
        let before = self.open.bytes().len();
        let other_window = !self.open.is_empty() && t.div_euclid(range) != self.open.first_time().div_euclid(range);
        if self.open.is_full() || other_window {
            let chunk = files.write(&self.open);
            self.open.clear();
            totals.closed_bytes += chunk.bytes();
            // Grown one at a time: a series lives for hours, doubling would waste up to half.
            self.closed.reserve_exact(1);
            self.closed.push(chunk);
        }
        self.open.append(t, v);
        totals.open_bytes = (totals.open_bytes + self.open.bytes().len()).saturating_sub(before);
        totals.samples += 1;
        totals.bounds = Some(totals.bounds.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
    }

    /// The first and last sample times.
    fn bounds(&self) -> Option<(i64, i64)> {
        let first =
            self.closed.first().map(ChunkRef::first_time).or((!self.open.is_empty()).then(|| self.open.first_time()));
        // Closed chunks are older than the open one, which only a new series lacks.
        let last = self.last_time().or(self.closed.last().map(ChunkRef::first_time));
        first.zip(last)
    }

    pub fn sample_count(&self) -> usize {
        self.closed.iter().map(|c| usize::from(c.count())).sum::<usize>() + self.open.len()
    }

    /// Drops chunks whose samples are all before `t`, a multiple of the chunk range;
    /// true when nothing is left.
    fn truncate(&mut self, t: i64) -> bool {
        self.closed.retain(|c| c.first_time() >= t);
        if !self.open.is_empty() && self.open.last_time() < t {
            if self.closed.is_empty() {
                return true;
            }
            // The open chunk's window ended: it goes, the next sample opens a new one.
            self.open = XorChunk::new();
        }
        self.closed.is_empty() && self.open.is_empty()
    }
}

/// Each distinct label string, once.
#[derive(Debug, Default)]
struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
}

impl Symbols {
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        let shared: Arc<str> = Arc::from(text);
        self.strings.push(Arc::clone(&shared));
        self.ids.insert(shared, id);
        id
    }

    fn get(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    fn text(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", |s| s)
    }
}

fn labels_hash(labels: &Labels) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut hasher);
    hasher.finish()
}

/// What the head holds, kept as samples are appended so that metrics and the
/// maintenance thread (every second) need not walk every series.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    samples: usize,
    closed_bytes: usize,
    open_bytes: usize,
    bounds: Option<(i64, i64)>,
}

/// Every series in memory.
#[derive(Debug)]
pub struct Head {
    symbols: Symbols,
    series: HashMap<SeriesRef, MemSeries, BuildHasherDefault<RefHasher>>,
    next_ref: SeriesRef,
    /// Chunks end at multiples of this many milliseconds (the block range).
    chunk_range: i64,
    /// The closed chunks' bytes.
    files: ChunkFiles,
    totals: Totals,
    /// Series by the hash of their labels; the rare second series with a hash in `collisions`.
    by_hash: HashMap<u64, SeriesRef>,
    collisions: HashMap<u64, Vec<SeriesRef>>,
    postings: HashMap<u32, HashMap<u32, Vec<SeriesRef>>>,
}

impl Default for Head {
    fn default() -> Head {
        Head::new(i64::MAX)
    }
}

impl Head {
    /// A head whose chunks end at multiples of `chunk_range` milliseconds, keeping
    /// its closed chunks in memory.
    pub fn new(chunk_range: i64) -> Head {
        Head::with_files(chunk_range, ChunkFiles::in_memory())
    }

    /// A head keeping its closed chunks in `files`.
    pub fn with_files(chunk_range: i64, files: ChunkFiles) -> Head {
        Head {
            files,
            totals: Totals::default(),
            symbols: Symbols::default(),
            series: HashMap::default(),
            next_ref: 0,
            chunk_range: chunk_range.max(1),
            by_hash: HashMap::new(),
            collisions: HashMap::new(),
            postings: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn same(&self, r: SeriesRef, labels: &Labels) -> bool {
        let Some(series) = self.series.get(&r) else { return false };
        series.labels.len() == labels.len()
            && series
                .labels
                .iter()
                .zip(labels.iter())
                .all(|((n, v), (name, value))| self.symbols.text(*n) == name && self.symbols.text(*v) == value)
    }

    pub fn lookup(&self, labels: &Labels) -> Option<SeriesRef> {
        let hash = labels_hash(labels);
        match self.by_hash.get(&hash) {
            Some(r) if self.same(*r, labels) => Some(*r),
            Some(_) => self.collisions.get(&hash)?.iter().copied().find(|r| self.same(*r, labels)),
            None => None,
        }
    }

    /// The series with these labels, created when new (`true`).
    pub fn get_or_create(&mut self, labels: &Labels) -> (SeriesRef, bool) {
        self.get_or_create_as(labels, None)
    }

    /// Like [`Head::get_or_create`], giving a new series the number `wanted` (a replay
    /// keeps the log's numbers, so records written later still name the right series).
    pub fn get_or_create_as(&mut self, labels: &Labels, wanted: Option<SeriesRef>) -> (SeriesRef, bool) {
        if let Some(r) = self.lookup(labels) {
            return (r, false);
        }
        let r = match wanted {
            Some(w) if !self.series.contains_key(&w) => w,
            _ => self.next_ref,
        };
        self.next_ref = self.next_ref.max(r.saturating_add(1));
        let mut pairs = Vec::with_capacity(labels.len());
        for (name, value) in labels.iter() {
            let pair = (self.symbols.intern(name), self.symbols.intern(value));
            self.postings.entry(pair.0).or_default().entry(pair.1).or_default().push(r);
            pairs.push(pair);
        }
        let hash = labels_hash(labels);
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => self.collisions.entry(hash).or_default().push(r),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(r);
            }
        }
        self.series
            .insert(r, MemSeries { labels: pairs.into_boxed_slice(), closed: Vec::new(), open: XorChunk::new() });
        (r, true)
    }

    pub fn series(&self, r: SeriesRef) -> Option<&MemSeries> {
        self.series.get(&r)
    }

    /// The earliest and latest sample times in memory.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        self.totals.bounds
    }

    /// Counts the totals again (after a truncation; appends keep them up to date).
    fn recount(&mut self) {
        let mut totals = Totals::default();
        for s in self.series.values() {
            totals.samples += s.sample_count();
            totals.closed_bytes += s.closed.iter().map(ChunkRef::bytes).sum::<usize>();
            totals.open_bytes += s.open.bytes().len();
            if let Some((f, l)) = s.bounds() {
                totals.bounds = Some(totals.bounds.map_or((f, l), |(a, b)| (a.min(f), b.max(l))));
            }
        }
        self.totals = totals;
    }

    /// Every series number, ascending.
    pub fn refs(&self) -> Vec<SeriesRef> {
        let mut refs: Vec<SeriesRef> = self.series.keys().copied().collect();
        refs.sort_unstable();
        refs
    }

    /// Drops every chunk whose samples are all before `t` and the series left empty
    /// (they are created again, with a new number, if samples come back).
    pub fn truncate(&mut self, t: i64) -> usize {
        let gone: Vec<SeriesRef> = self.series.iter_mut().filter_map(|(r, s)| s.truncate(t).then_some(*r)).collect();
        self.files.truncate(t);
        for r in &gone {
            let Some(series) = self.series.remove(r) else { continue };
            for (n, v) in series.labels.iter() {
                if let Some(values) = self.postings.get_mut(n) {
                    if let Some(list) = values.get_mut(v) {
                        list.retain(|x| x != r);
                        if list.is_empty() {
                            values.remove(v);
                        }
                    }
                    if values.is_empty() {
                        self.postings.remove(n);
                    }
                }
            }
        }
        let series = &self.series;
        self.by_hash.retain(|_, r| series.contains_key(r));
        self.collisions.retain(|_, refs| {
            refs.retain(|r| series.contains_key(r));
            !refs.is_empty()
        });
        self.recount();
        gone.len()
    }

    /// A series' labels.
    pub fn labels(&self, r: SeriesRef) -> Option<Labels> {
        let series = self.series.get(&r)?;
        Some(Labels::new(
            series
                .labels
                .iter()
                .map(|(n, v)| (self.symbols.text(*n).to_string(), self.symbols.text(*v).to_string()))
                .collect(),
        ))
    }

    fn value_of(&self, series: &MemSeries, name: &str) -> &str {
        series.labels.iter().find(|(n, _)| self.symbols.text(*n) == name).map_or("", |(_, v)| self.symbols.text(*v))
    }

    /// Checks a sample for a series; `Ok(false)` for an exact repeat, which is ignored.
    pub fn check(&self, r: SeriesRef, t: i64, v: f64) -> Result<bool, AppendError> {
        self.series.get(&r).ok_or(AppendError::UnknownSeries(r))?.check(t, v)
    }

    /// Checks a sample and stores it when it is new, with one lookup of the series:
    /// `Ok(false)` for an exact repeat (ignored).
    pub fn check_and_push(&mut self, r: SeriesRef, t: i64, v: f64) -> Result<bool, AppendError> {
        let range = self.chunk_range;
        let series = self.series.get_mut(&r).ok_or(AppendError::UnknownSeries(r))?;
        let new = series.check(t, v)?;
        if new {
            series.push(t, v, range, &mut self.files, &mut self.totals);
        }
        Ok(new)
    }

    /// Stores a sample that passed [`Head::check`].
    pub fn push(&mut self, r: SeriesRef, t: i64, v: f64) {
        let range = self.chunk_range;
        if let Some(series) = self.series.get_mut(&r) {
            series.push(t, v, range, &mut self.files, &mut self.totals);
        }
    }

    /// A series' samples with `mint <= t <= maxt`, oldest first.
    pub fn samples(&self, r: SeriesRef, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        let Some(series) = self.series.get(&r) else { return out };
        let mut buf = Vec::new();
        for (i, chunk) in series.closed.iter().enumerate() {
            // A chunk ends before the next one starts.
            let next = series.closed.get(i + 1).map_or(series.open.first_time(), ChunkRef::first_time);
            if chunk.first_time() > maxt || next <= mint {
                continue;
            }
            match self.files.read(*chunk, &mut buf) {
                Ok((_, bytes)) => {
                    out.extend(iter_bytes(bytes, chunk.count()).filter(|(t, _)| (mint..=maxt).contains(t)))
                }
                Err(e) => tracing::error!(series = r, error = %e, "cannot read a head chunk"),
            }
        }
        let open = &series.open;
        if !open.is_empty() && open.last_time() >= mint && open.first_time() <= maxt {
            out.extend(open.iter().filter(|(t, _)| (mint..=maxt).contains(t)));
        }
        out
    }

    /// Copies of a series' chunks in the window `[mint, maxt)` of the chunk range, the
    /// open one included.
    pub fn chunks_in(&self, r: SeriesRef, mint: i64, maxt: i64) -> io::Result<Vec<ClosedChunk>> {
        let Some(series) = self.series.get(&r) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for chunk in series.closed.iter().filter(|c| (mint..maxt).contains(&c.first_time())) {
            out.push(self.files.closed(*chunk)?);
        }
        let open = &series.open;
        if !open.is_empty() && open.first_time() >= mint && open.last_time() < maxt {
            out.push(open.clone().into_closed());
        }
        Ok(out)
    }

    /// Checks and stores a sample.
    pub fn append(&mut self, r: SeriesRef, t: i64, v: f64) -> Result<(), AppendError> {
        if self.check(r, t, v)? {
            self.push(r, t, v);
        }
        Ok(())
    }

    /// The series every matcher accepts, in creation order.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        // Start from the postings of a matcher that needs its label present.
        let mut candidates: Option<Vec<SeriesRef>> = None;
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let Some(values) = self.symbols.get(&m.name).and_then(|n| self.postings.get(&n)) else {
                return Vec::new();
            };
            let mut refs: Vec<SeriesRef> = match m.op {
                MatchOp::Equal => self.symbols.get(&m.value).and_then(|v| values.get(&v)).cloned().unwrap_or_default(),
                _ => values
                    .iter()
                    .filter(|(v, _)| m.matches(self.symbols.text(**v)))
                    .flat_map(|(_, r)| r.iter().copied())
                    .collect(),
            };
            refs.sort_unstable();
            candidates = Some(match candidates {
                None => refs,
                Some(current) => intersect(&current, &refs),
            });
        }
        candidates
            .unwrap_or_else(|| self.refs())
            .into_iter()
            .filter(|r| {
                self.series
                    .get(r)
                    .is_some_and(|series| matchers.iter().all(|m| m.matches(self.value_of(series, &m.name))))
            })
            .collect()
    }

    pub fn label_names(&self) -> BTreeSet<&str> {
        self.postings.keys().map(|n| self.symbols.text(*n)).collect()
    }

    pub fn label_values(&self, name: &str) -> BTreeSet<&str> {
        self.symbols
            .get(name)
            .and_then(|n| self.postings.get(&n))
            .map(|values| values.keys().map(|v| self.symbols.text(*v)).collect())
            .unwrap_or_default()
    }

    /// Bytes of the head chunk files on disk.
    pub fn chunk_file_bytes(&self) -> u64 {
        self.files.sizes().0
    }

    /// What the head holds and where.
    pub fn sizes(&self) -> HeadSizes {
        let (file_bytes, buffered) = self.files.sizes();
        HeadSizes {
            samples: self.totals.samples,
            chunk_bytes: self.totals.closed_bytes + self.totals.open_bytes,
            chunk_memory_bytes: self.totals.open_bytes + usize::try_from(buffered).unwrap_or(usize::MAX),
            chunk_file_bytes: file_bytes,
            label_bytes: self.symbols.strings.iter().map(|s| s.len()).sum(),
        }
    }
}

/// The head's contents, as its metrics report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadSizes {
    pub samples: usize,
    /// Bytes of compressed samples, in memory and in files.
    pub chunk_bytes: usize,
    /// Of those, the bytes in memory: open chunks and chunks not yet written out.
    pub chunk_memory_bytes: usize,
    /// Bytes in the head chunk files (chunk headers included).
    pub chunk_file_bytes: u64,
    /// Bytes of distinct label strings.
    pub label_bytes: usize,
}

fn intersect(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobius_series::labels::MatchOp;

    #[test]
    fn series_numbers_made_in_a_row_hash_to_buckets_in_a_row_with_varied_tags() {
        let hash = |n: u32| {
            let mut h = RefHasher::default();
            h.write_u32(n);
            h.finish()
        };
        let low = |h: u64| h & ((1 << 57) - 1);
        assert!((0..10_000u32).all(|n| low(hash(n)) == u64::from(n)));
        let tags: BTreeSet<u64> = (0..1000u32).map(|n| hash(n) >> 57).collect();
        assert!(tags.len() > 100, "only {} distinct tags", tags.len());
    }

    #[test]
    fn matchers_select_through_postings_and_order_is_enforced() {
        let mut head = Head::default();
        let a = head.get_or_create(&Labels::from_pairs(&[("__name__", "up"), ("job", "api")])).0;
        let b = head.get_or_create(&Labels::from_pairs(&[("__name__", "up"), ("job", "web")])).0;
        let c = head.get_or_create(&Labels::from_pairs(&[("__name__", "down")])).0;
        assert_eq!(head.get_or_create(&Labels::from_pairs(&[("job", "api"), ("__name__", "up")])), (a, false));
        let sel = |ms: Vec<Matcher>| head.select(&ms);
        assert_eq!(sel(vec![Matcher::equal("__name__", "up")]), [a, b]);
        assert_eq!(
            sel(vec![Matcher::equal("__name__", "up"), Matcher::new(MatchOp::NotEqual, "job", "api").unwrap()]),
            [b]
        );
        assert_eq!(sel(vec![Matcher::new(MatchOp::Regex, "job", "a.*|w.*").unwrap()]), [a, b]);
        assert_eq!(sel(vec![Matcher::equal("job", "")]), [c], "absent label equals empty");
        assert_eq!(sel(vec![Matcher::equal("nope", "x")]), Vec::<SeriesRef>::new());

        head.append(a, 1000, 1.0).unwrap();
        head.append(a, 1000, 1.0).unwrap();
        assert_eq!(head.append(a, 999, 1.0), Err(AppendError::OutOfOrder { t: 999, last: 1000 }));
        assert_eq!(head.append(a, 1000, 2.0), Err(AppendError::Duplicate { t: 1000 }));
        for i in 1..300 {
            head.append(a, 1000 + i * 1000, i as f64).unwrap();
        }
        let series = head.series(a).unwrap();
        assert_eq!(series.sample_count(), 300);
        assert_eq!(head.samples(a, 100_000, 102_000), [(100_000, 99.0), (101_000, 100.0), (102_000, 101.0)]);
        // Across the closed chunks (120 samples each) and the open one.
        let all = head.samples(a, 0, i64::MAX);
        assert_eq!(all.len(), 300);
        assert_eq!((all[119], all[120], all[299]), ((120_000, 119.0), (121_000, 120.0), (300_000, 299.0)));
        assert_eq!(head.samples(a, 120_500, 121_000), [(121_000, 120.0)]);

        // The running totals agree with a count from scratch, before and after a truncation.
        head.append(b, 5_000, 1.0).unwrap();
        let kept = head.sizes();
        assert_eq!((kept.samples, head.time_bounds()), (301, Some((1000, 300_000))));
        head.recount();
        assert_eq!((head.sizes(), head.time_bounds()), (kept, Some((1000, 300_000))));
        head.truncate(121_000);
        let after = head.sizes();
        assert_eq!((after.samples, head.time_bounds()), (180, Some((121_000, 300_000))));
        assert!(after.chunk_bytes < kept.chunk_bytes);
        head.append(a, 301_000, 1.0).unwrap();
        let appended = head.sizes();
        head.recount();
        assert_eq!(head.sizes(), appended);
    }
}
