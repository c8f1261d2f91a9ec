//! Per-version request counters, latency histograms and a ring of recent samples.
//!
//! The counters and histogram feed `/metrics`; the samples feed the rollout
//! controller, which needs individual latencies for its rank test.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds (Prometheus' `le`).
pub const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How many recent samples each version keeps for the controller.
const SAMPLE_CAPACITY: usize = 16384;

/// Where a failed request went wrong, as pingora tags proxy errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSide {
    /// The backend refused, reset, timed out or broke its response.
    Upstream,
    /// The client went away before the response was complete.
    Downstream,
    /// The router itself could not route the request (no backend available).
    Internal,
}

impl ErrorSide {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSide::Upstream => "upstream",
            ErrorSide::Downstream => "downstream",
            ErrorSide::Internal => "internal",
        }
    }
}

/// One finished request: its latency to the response headers and whether it failed
/// (a 5xx answer or an upstream error).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub seq: u64,
    pub micros: u64,
    pub failed: bool,
}

#[derive(Debug, Default)]
struct Ring {
    next_seq: u64,
    samples: VecDeque<Sample>,
}

/// Counters for one version behind one listener. They live as long as the router, so a
/// version that leaves traffic and comes back keeps counting from where it was.
#[derive(Debug, Default)]
pub struct VersionStats {
    requests: AtomicU64,
    failed: AtomicU64,
    by_class: [AtomicU64; 5],
    errors: [AtomicU64; 3],
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    ring: Mutex<Ring>,
}

impl VersionStats {
    /// Records a response that reached the client's side of the router.
    pub fn record_response(&self, status: u16, latency: Duration) {
        let failed = status >= 500;
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.record(latency, failed);
    }

    /// Records a request that failed in the router or at the backend.
    pub fn record_error(&self, side: ErrorSide, latency: Duration) {
        self.errors[side as usize].fetch_add(1, Ordering::Relaxed);
        if side != ErrorSide::Downstream {
            self.by_class[4].fetch_add(1, Ordering::Relaxed);
            self.record(latency, true);
        }
    }

    /// Counts an error after the response began (a broken body or a client that left);
    /// the request itself was already recorded.
    pub fn count_error(&self, side: ErrorSide) {
        self.errors[side as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, latency: Duration, failed: bool) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.samples.len() == SAMPLE_CAPACITY {
            ring.samples.pop_front();
        }
        ring.samples.push_back(Sample { seq, micros, failed });
    }

    /// Everything counted so far, with the samples whose sequence number is at least `since`.
    pub fn snapshot(&self, listener: &str, version: &str, since: u64) -> VersionSnapshot {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let samples: Vec<Sample> = ring.samples.iter().filter(|s| s.seq >= since).copied().collect();
        let next_seq = ring.next_seq;
        drop(ring);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        VersionSnapshot {
            listener: listener.to_string(),
            version: version.to_string(),
            requests: load(&self.requests),
            failed: load(&self.failed),
            by_class: self.by_class.each_ref().map(load),
            upstream_errors: load(&self.errors[ErrorSide::Upstream as usize]),
            downstream_errors: load(&self.errors[ErrorSide::Downstream as usize]),
            internal_errors: load(&self.errors[ErrorSide::Internal as usize]),
            buckets: self.buckets.iter().map(load).collect(),
            sum_seconds: load(&self.sum_micros) as f64 / 1e6,
            samples,
            next_seq,
        }
    }
}

/// A copy of one version's counters, as the agent's control API returns them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionSnapshot {
    pub listener: String,
    pub version: String,
    pub requests: u64,
    /// Requests answered 5xx or failed upstream or inside the router.
    pub failed: u64,
    /// Responses by status class, 1xx to 5xx (router errors count as 5xx).
    pub by_class: [u64; 5],
    pub upstream_errors: u64,
    pub downstream_errors: u64,
    pub internal_errors: u64,
    /// Non-cumulative counts per bucket of [`BUCKETS`]; slower requests are only in `requests`.
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub samples: Vec<Sample>,
    /// The sequence number the next sample will get: the cursor for the next snapshot.
    pub next_seq: u64,
}

/// Appends one version's series in Prometheus' text format.
pub fn render_prometheus(out: &mut String, snapshots: &[VersionSnapshot]) {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    out.push_str("# HELP mobius_router_requests_total Requests routed, by listener, version and status class.\n");
    out.push_str("# TYPE mobius_router_requests_total counter\n");
    for s in snapshots {
        for (i, n) in s.by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "mobius_router_requests_total{{listener=\"{}\",version=\"{}\",code=\"{}xx\"}} {n}",
                esc(&s.listener),
                esc(&s.version),
                i + 1
            );
        }
    }
    out.push_str("# HELP mobius_router_errors_total Failed requests by the side that failed.\n");
    out.push_str("# TYPE mobius_router_errors_total counter\n");
    for s in snapshots {
        for (side, n) in
            [("upstream", s.upstream_errors), ("downstream", s.downstream_errors), ("internal", s.internal_errors)]
        {
            let _ = writeln!(
                out,
                "mobius_router_errors_total{{listener=\"{}\",version=\"{}\",side=\"{side}\"}} {n}",
                esc(&s.listener),
                esc(&s.version)
            );
        }
    }
    out.push_str("# HELP mobius_router_request_duration_seconds Time to the response headers.\n");
    out.push_str("# TYPE mobius_router_request_duration_seconds histogram\n");
    for s in snapshots {
        let labels = format!("listener=\"{}\",version=\"{}\"", esc(&s.listener), esc(&s.version));
        let mut cumulative = 0;
        for (le, n) in BUCKETS.iter().zip(&s.buckets) {
            cumulative += n;
            let _ = writeln!(out, "mobius_router_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "mobius_router_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.requests);
        let _ = writeln!(out, "mobius_router_request_duration_seconds_sum{{{labels}}} {}", s.sum_seconds);
        let _ = writeln!(out, "mobius_router_request_duration_seconds_count{{{labels}}} {}", s.requests);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_from_a_cursor_and_failures_counted() {
        let stats = VersionStats::default();
        stats.record_response(200, Duration::from_millis(2));
        stats.record_response(503, Duration::from_millis(4));
        stats.record_error(ErrorSide::Upstream, Duration::from_millis(1));
        stats.record_error(ErrorSide::Downstream, Duration::from_millis(1));
        let all = stats.snapshot("web", "v1", 0);
        assert_eq!(all.requests, 3);
        assert_eq!(all.failed, 2);
        assert_eq!(all.by_class, [0, 1, 0, 0, 2]);
        assert_eq!(all.downstream_errors, 1);
        assert_eq!(all.next_seq, 3);
        let later = stats.snapshot("web", "v1", 2);
        assert_eq!(later.samples.len(), 1);
        assert!(later.samples[0].failed);
        let mut text = String::new();
        render_prometheus(&mut text, &[all]);
        assert!(text.contains("mobius_router_requests_total{listener=\"web\",version=\"v1\",code=\"5xx\"} 2"));
        assert!(text
            .contains("mobius_router_request_duration_seconds_bucket{listener=\"web\",version=\"v1\",le=\"0.005\"} 3"));
    }
}
