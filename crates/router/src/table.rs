//! The routing table of one listener and the choice of a version and a backend per request.
//!
//! A table is immutable once built; reconfiguring swaps in a new one, so every request
//! is routed by exactly one table, the one current when it arrived.

use crate::config::Sticky;
use crate::stats::VersionStats;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One instance of one version, shared by every table that routes to it.
#[derive(Debug)]
pub struct Backend {
    pub id: String,
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once rather than per request.
    pub(crate) authority: Option<http::uri::Authority>,
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the router's epoch until which the backend receives nothing.
    ejected_until: AtomicU64,
    in_flight: AtomicUsize,
}

impl Backend {
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Self {
        Backend {
            id: id.into(),
            addr,
            authority: addr.to_string().parse().ok(),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        if healthy {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms
    }

    fn available(&self, now_ms: u64) -> bool {
        self.is_healthy() && !self.is_ejected(now_ms)
    }

    /// Requests sent to this backend whose responses have not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    pub(crate) fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failed attempt; returns true when it ejected the backend.
    pub(crate) fn record_failure(&self, now_ms: u64, eject_after: u32, ejection_ms: u64) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= eject_after {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.ejected_until.store(now_ms + ejection_ms, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Keeps a backend's in-flight count up while a response is being delivered.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Backend>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One version in a table.
#[derive(Debug)]
pub struct VersionRoute {
    pub version: String,
    pub weight: u32,
    pub backends: Vec<Arc<Backend>>,
    pub stats: Arc<VersionStats>,
}

/// The routing table of one listener.
#[derive(Debug)]
pub struct Table {
    pub versions: Vec<VersionRoute>,
    pub sticky: Option<Sticky>,
    pub retries: u32,
    total_weight: u64,
    counter: AtomicU64,
}

impl Table {
    pub fn new(versions: Vec<VersionRoute>, sticky: Option<Sticky>, retries: u32) -> Self {
        let total_weight = versions.iter().map(|v| u64::from(v.weight)).sum();
        Table { versions, sticky, retries, total_weight, counter: AtomicU64::new(0) }
    }

    /// The sticky key's hash, if the table has one and the request carries it.
    pub fn sticky_hash(&self, headers: &http::HeaderMap) -> Option<u64> {
        self.sticky_hash_in(headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())))
    }

    /// The sticky key's hash, read from a request's headers as `(name, value)` pairs.
    pub(crate) fn sticky_hash_in<'a>(&self, mut headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Option<u64> {
        let value: &[u8] = match self.sticky.as_ref()? {
            Sticky::Header(wanted) => headers.find(|(name, _)| name.eq_ignore_ascii_case(wanted))?.1,
            Sticky::Cookie(wanted) => headers
                .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
                .filter_map(|(_, v)| std::str::from_utf8(v).ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k == wanted)
                .map(|(_, v)| v.as_bytes())?,
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut hasher);
        Some(hasher.finish())
    }

    /// Chooses a version and one of its backends. Versions are chosen in proportion to
    /// their weights: by the sticky hash when given, else along a low-discrepancy sequence,
    /// so the split is exact to within a few requests rather than a random walk. A version
    /// without an available backend passes its request to the others that have weight;
    /// a version with weight 0 never receives one. `exclude` is the backend that just failed.
    pub fn pick(&self, sticky: Option<u64>, exclude: Option<&Backend>, now_ms: u64) -> Option<(usize, Arc<Backend>)> {
        if self.total_weight == 0 {
            return None;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let point_source = sticky.unwrap_or_else(|| n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let point = ((u128::from(point_source) * u128::from(self.total_weight)) >> 64) as u64;
        let mut chosen = 0;
        let mut cumulative = 0;
        for (i, v) in self.versions.iter().enumerate() {
            cumulative += u64::from(v.weight);
            if point < cumulative {
                chosen = i;
                break;
            }
        }
        let usable = |b: &Arc<Backend>, strict: bool| {
            exclude.is_none_or(|x| !std::ptr::eq(x, b.as_ref())) && (!strict || b.available(now_ms))
        };
        // First the chosen version, then the others by weight; healthy backends first,
        // and only when none is left, any backend (a guess beats a certain 503).
        // No allocation: this runs for every request.
        let fallback = |rank: usize| -> Option<usize> {
            // The rank-th version other than `chosen`, by decreasing weight.
            let mut taken = 0usize;
            let mut last: Option<(u32, usize)> = None;
            while taken <= rank {
                let next = (0..self.versions.len())
                    .filter(|i| *i != chosen)
                    .filter(|i| {
                        let key = (self.versions[*i].weight, *i);
                        last.is_none_or(|(w, j)| key.0 < w || key.0 == w && key.1 > j)
                    })
                    .max_by_key(|i| (self.versions[*i].weight, std::cmp::Reverse(*i)))?;
                last = Some((self.versions[next].weight, next));
                taken += 1;
            }
            last.map(|(_, i)| i)
        };
        for strict in [true, false] {
            for rank in 0..self.versions.len() {
                let i = if rank == 0 {
                    chosen
                } else {
                    match fallback(rank - 1) {
                        Some(i) => i,
                        None => break,
                    }
                };
                let v = &self.versions[i];
                if v.weight == 0 {
                    continue;
                }
                let count = v.backends.iter().filter(|b| usable(b, strict)).count();
                if count == 0 {
                    continue;
                }
                let nth = |k: usize| v.backends.iter().filter(|b| usable(b, strict)).nth(k % count);
                let (Some(a), Some(b)) = (nth(n as usize), nth(n as usize + 1)) else { continue };
                // Of two candidates, the one with fewer requests in flight.
                let best = if b.in_flight() < a.in_flight() { b } else { a };
                return Some((i, Arc::clone(best)));
            }
        }
        None
    }
}

/// Milliseconds since `epoch`.
pub(crate) fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(version: &str, weight: u32, backends: &[&Arc<Backend>]) -> VersionRoute {
        VersionRoute {
            version: version.into(),
            weight,
            backends: backends.iter().map(|b| Arc::clone(b)).collect(),
            stats: Arc::default(),
        }
    }

    fn backend(port: u16) -> Arc<Backend> {
        Arc::new(Backend::new(format!("b{port}"), SocketAddr::from(([127, 0, 0, 1], port))))
    }

    #[test]
    fn the_split_follows_the_weights_closely() {
        let (a, b, c) = (backend(1), backend(2), backend(3));
        let table = Table::new(vec![route("v1", 90, &[&a, &b]), route("v2", 10, &[&c])], None, 0);
        let mut counts = [0u32; 2];
        for _ in 0..100_000 {
            let (i, _) = table.pick(None, None, 0).unwrap();
            counts[i] += 1;
        }
        assert!((counts[1] as i64 - 10_000).abs() <= 20, "{counts:?}");
    }

    #[test]
    fn weight_zero_gets_nothing_and_unavailable_versions_spill_over() {
        let (a, c) = (backend(1), backend(3));
        let table = Table::new(vec![route("v1", 100, &[&a]), route("v2", 0, &[&c])], None, 0);
        for _ in 0..100 {
            assert_eq!(table.pick(None, None, 0).unwrap().0, 0);
        }
        let table = Table::new(vec![route("v1", 50, &[&a]), route("v2", 50, &[&c])], None, 0);
        c.set_healthy(false);
        for _ in 0..100 {
            assert_eq!(table.pick(None, None, 0).unwrap().1.id, "b1");
        }
        assert!(a.record_failure(5, 1, 1000) && a.is_ejected(10));
        // Nothing available: any backend with weight, rather than a certain error.
        assert!(table.pick(None, None, 10).is_some());
    }

    #[test]
    fn sticky_keys_keep_their_version() {
        let (a, c) = (backend(1), backend(3));
        let table =
            Table::new(vec![route("v1", 50, &[&a]), route("v2", 50, &[&c])], Some(Sticky::Cookie("user".into())), 0);
        let mut seen = std::collections::HashSet::new();
        for user in 0..50 {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::COOKIE, format!("a=b; user={user}").parse().unwrap());
            let hash = table.sticky_hash(&headers);
            assert!(hash.is_some());
            let first = table.pick(hash, None, 0).unwrap().0;
            for _ in 0..5 {
                assert_eq!(table.pick(hash, None, 0).unwrap().0, first);
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 2, "users are spread over both versions");
    }
}
