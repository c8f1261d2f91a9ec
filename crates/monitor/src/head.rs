//! The in-memory head: every series with its chunks, found by labels through a
//! postings index (label name → value → series, in creation order).

use crate::chunk::XorChunk;
use crate::labels::{Labels, Matcher};
use std::collections::{BTreeSet, HashMap};

/// A series' number, given in creation order (the write-ahead log relies on it).
pub type SeriesRef = u32;

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

/// One series: closed chunks and the one being appended to.
#[derive(Debug)]
pub struct MemSeries {
    pub labels: Labels,
    closed: Vec<XorChunk>,
    open: XorChunk,
}

impl MemSeries {
    fn new(labels: Labels) -> MemSeries {
        MemSeries { labels, closed: Vec::new(), open: XorChunk::new() }
    }

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

    fn push(&mut self, t: i64, v: f64) {
        if self.open.is_full() {
            let full = std::mem::replace(&mut self.open, XorChunk::new());
            self.closed.push(full);
        }
        self.open.append(t, v);
    }

    /// Samples with `mint <= t <= maxt`, oldest first.
    pub fn samples(&self, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for chunk in self.closed.iter().chain(std::iter::once(&self.open)) {
            if chunk.is_empty() || chunk.last_time() < mint || chunk.first_time() > maxt {
                continue;
            }
            out.extend(chunk.iter().filter(|(t, _)| (mint..=maxt).contains(t)));
        }
        out
    }

    pub fn chunk_bytes(&self) -> usize {
        self.closed.iter().chain(std::iter::once(&self.open)).map(|c| c.bytes().len()).sum()
    }

    pub fn sample_count(&self) -> usize {
        self.closed.iter().chain(std::iter::once(&self.open)).map(XorChunk::len).sum()
    }
}

/// Every series in memory.
#[derive(Debug, Default)]
pub struct Head {
    series: Vec<MemSeries>,
    by_labels: HashMap<Labels, SeriesRef>,
    postings: HashMap<String, HashMap<String, Vec<SeriesRef>>>,
}

impl Head {
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn lookup(&self, labels: &Labels) -> Option<SeriesRef> {
        self.by_labels.get(labels).copied()
    }

    /// The series with these labels, created when new (`true`).
    pub fn get_or_create(&mut self, labels: &Labels) -> (SeriesRef, bool) {
        if let Some(r) = self.by_labels.get(labels) {
            return (*r, false);
        }
        let r = SeriesRef::try_from(self.series.len()).unwrap_or(SeriesRef::MAX);
        for (name, value) in labels.iter() {
            self.postings.entry(name.to_string()).or_default().entry(value.to_string()).or_default().push(r);
        }
        self.by_labels.insert(labels.clone(), r);
        self.series.push(MemSeries::new(labels.clone()));
        (r, true)
    }

    pub fn series(&self, r: SeriesRef) -> Option<&MemSeries> {
        self.series.get(r as usize)
    }

    /// Checks a sample for a series; `Ok(false)` for an exact repeat, which is ignored.
    pub fn check(&self, r: SeriesRef, t: i64, v: f64) -> Result<bool, AppendError> {
        self.series.get(r as usize).ok_or(AppendError::UnknownSeries(r))?.check(t, v)
    }

    /// Stores a sample that passed [`Head::check`].
    pub fn push(&mut self, r: SeriesRef, t: i64, v: f64) {
        if let Some(series) = self.series.get_mut(r as usize) {
            series.push(t, v);
        }
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
            let Some(values) = self.postings.get(&m.name) else {
                return Vec::new();
            };
            let mut refs: Vec<SeriesRef> = match m.op {
                crate::labels::MatchOp::Equal => values.get(&m.value).cloned().unwrap_or_default(),
                _ => values.iter().filter(|(v, _)| m.matches(v)).flat_map(|(_, r)| r.iter().copied()).collect(),
            };
            refs.sort_unstable();
            candidates = Some(match candidates {
                None => refs,
                Some(current) => intersect(&current, &refs),
            });
        }
        let all = || (0..self.series.len()).filter_map(|i| SeriesRef::try_from(i).ok()).collect();
        candidates
            .unwrap_or_else(all)
            .into_iter()
            .filter(|r| {
                let labels = &self.series[*r as usize].labels;
                matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            })
            .collect()
    }

    pub fn label_names(&self) -> BTreeSet<&str> {
        self.postings.keys().map(String::as_str).collect()
    }

    pub fn label_values(&self, name: &str) -> BTreeSet<&str> {
        self.postings.get(name).map(|v| v.keys().map(String::as_str).collect()).unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = &MemSeries> {
        self.series.iter()
    }
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
    use crate::labels::MatchOp;

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
        assert_eq!(series.samples(100_000, 102_000), [(100_000, 99.0), (101_000, 100.0), (102_000, 101.0)]);
    }
}
