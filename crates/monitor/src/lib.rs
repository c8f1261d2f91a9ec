//! Monitoring: reading Prometheus' exposition formats, and a time-series store made
//! of an in-memory head of XOR-compressed chunks behind a crash-safe write-ahead log.
//!
//! `exposition` parses what targets serve; `labels` is a series' identity; `chunk`
//! packs samples as Prometheus does (delta-of-delta timestamps, XOR'd values);
//! `head` holds the series and their chunks with a postings index for label
//! matchers; `wal` makes every appended batch durable and is replayed at start;
//! `db` ties the head and the log together. `promql` answers queries; `rules` evaluates
//! recording and alerting rules, whose templates `template` expands.
#![forbid(unsafe_code)]

pub mod alerting;
pub mod block;
pub mod chunk;
pub mod config;
pub mod db;
pub mod exposition;
#[doc(hidden)]
pub mod fuzz;
pub mod head;
pub mod head_chunks;
pub mod labels;
pub mod logql;
pub mod logs;
pub mod oncall;
pub mod project;
pub mod promql;
pub mod relabel;
pub mod remote;
pub mod rules;
pub mod scrape;
pub mod template;
pub mod wal;

pub use db::{Db, DbOptions};

/// Milliseconds since the Unix epoch: the time of samples, alerts and queries.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
pub use labels::{Labels, MatchOp, Matcher};
