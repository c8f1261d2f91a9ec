//! Where a run's events go: the CLI prints them, tests collect them.

use mobius_core::RunEvent;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Receives events as a run progresses. Log lines arrive in batches (already masked)
/// so that a step printing hundreds of megabytes costs one call per chunk, not per line.
pub trait Reporter: Send + Sync {
    fn event(&self, event: RunEvent);
    fn log_lines(&self, job: &str, step: &str, lines: &str);
}

/// Passes every event on, and appends each one except log lines (which have their
/// own files) to the run's `events.jsonl`: the run's append-only record, one JSON
/// object per line with a `time`, written before the event is shown.
pub(crate) struct RecordingReporter {
    inner: Arc<dyn Reporter>,
    file: Mutex<Option<std::fs::File>>,
}

impl RecordingReporter {
    pub(crate) fn new(inner: Arc<dyn Reporter>, path: &std::path::Path) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).ok();
        RecordingReporter { inner, file: Mutex::new(file) }
    }
}

impl Reporter for RecordingReporter {
    fn event(&self, event: RunEvent) {
        if !matches!(event, RunEvent::Log { .. }) {
            if let Ok(serde_json::Value::Object(mut map)) = serde_json::to_value(&event) {
                let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
                map.insert("time".into(), serde_json::Value::String(time));
                if let (Ok(mut guard), Ok(mut line)) = (self.file.lock(), serde_json::to_vec(&map)) {
                    line.push(b'\n');
                    if let Some(file) = guard.as_mut() {
                        // One write per line, so a crash leaves whole lines behind.
                        let _ = file.write_all(&line);
                    }
                }
            }
        }
        self.inner.event(event);
    }

    fn log_lines(&self, job: &str, step: &str, lines: &str) {
        self.inner.log_lines(job, step, lines);
    }
}
