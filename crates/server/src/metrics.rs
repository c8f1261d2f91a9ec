//! The server's own metrics in Prometheus' text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the job duration histogram, in seconds.
const JOB_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// Counters kept in memory since the process started.
#[derive(Debug, Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    jobs: Mutex<Histogram>,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Metrics {
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        if let Ok(mut http) = self.http.lock() {
            *http.entry((route.to_string(), method.to_string(), status)).or_default() += 1;
        }
    }

    pub fn job_finished(&self, seconds: f64) {
        if let Ok(mut h) = self.jobs.lock() {
            if h.counts.is_empty() {
                h.counts = vec![0; JOB_BUCKETS.len()];
            }
            for (i, bound) in JOB_BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        }
    }

    /// The exposition text, with the run counts and queue length read from the store.
    pub fn render(
        &self,
        runs: &[(mobius_core::Status, Option<mobius_core::Conclusion>, i64)],
        queued: i64,
        live_runs: usize,
        free_job_slots: usize,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP mobius_runs Workflow runs stored, by status and conclusion.\n# TYPE mobius_runs gauge\n");
        for (status, conclusion, n) in runs {
            let conclusion = conclusion.map_or("", |c| c.as_str());
            let _ = writeln!(out, "mobius_runs{{status=\"{status}\",conclusion=\"{conclusion}\"}} {n}");
        }
        out.push_str("# HELP mobius_queue_length Runs waiting to start.\n# TYPE mobius_queue_length gauge\n");
        let _ = writeln!(out, "mobius_queue_length {queued}");
        out.push_str(
            "# HELP mobius_runs_in_progress Runs executing in this process.\n# TYPE mobius_runs_in_progress gauge\n",
        );
        let _ = writeln!(out, "mobius_runs_in_progress {live_runs}");
        out.push_str(
            "# HELP mobius_job_slots_free Job slots free under the global limit.\n# TYPE mobius_job_slots_free gauge\n",
        );
        let _ = writeln!(out, "mobius_job_slots_free {free_job_slots}");
        out.push_str("# HELP mobius_job_duration_seconds Duration of finished jobs.\n# TYPE mobius_job_duration_seconds histogram\n");
        if let Ok(h) = self.jobs.lock() {
            for (i, bound) in JOB_BUCKETS.iter().enumerate() {
                let n = h.counts.get(i).copied().unwrap_or(0);
                let _ = writeln!(out, "mobius_job_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "mobius_job_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "mobius_job_duration_seconds_sum {}", h.sum);
            let _ = writeln!(out, "mobius_job_duration_seconds_count {}", h.count);
        }
        out.push_str(
            "# HELP mobius_http_requests_total HTTP requests answered, by route, method and status.\n# TYPE mobius_http_requests_total counter\n",
        );
        if let Ok(http) = self.http.lock() {
            for ((route, method, status), n) in http.iter() {
                let _ = writeln!(
                    out,
                    "mobius_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                    escape(route),
                    escape(method)
                );
            }
        }
        out
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
