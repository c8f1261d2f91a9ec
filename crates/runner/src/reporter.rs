//! Where a run's events go: the CLI prints them, tests collect them.

use mobius_core::RunEvent;
use std::sync::Mutex;

/// Receives events as a run progresses. Log lines arrive in batches (already masked)
/// so that a step printing hundreds of megabytes costs one call per chunk, not per line.
pub trait Reporter: Send + Sync {
    fn event(&self, event: RunEvent);
    fn log_lines(&self, job: &str, step: &str, lines: &str);
}

/// Keeps everything in memory; for tests and embedding.
#[derive(Debug, Default)]
pub struct CollectingReporter {
    pub events: Mutex<Vec<RunEvent>>,
}

impl CollectingReporter {
    /// All log lines of a job, in order.
    pub fn log_of(&self, job: &str) -> Vec<String> {
        self.events
            .lock()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| match e {
                        RunEvent::Log { job: j, line, .. } if j == job => Some(line.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Reporter for CollectingReporter {
    fn event(&self, event: RunEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    fn log_lines(&self, job: &str, step: &str, lines: &str) {
        if let Ok(mut events) = self.events.lock() {
            for line in lines.lines() {
                events.push(RunEvent::Log { job: job.into(), step: step.into(), line: line.into() });
            }
        }
    }
}
