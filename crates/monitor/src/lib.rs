//! Monitoring, composed: scraping targets (Prometheus' exposition formats,
//! relabelling, `prometheus.yml`), remote write, and per-project monitor files, over
//! the stage's crates: `mobius-tsdb` stores samples, `mobius-promql` queries them,
//! `mobius-alerting` evaluates rules and routes alerts, `mobius-logs` keeps logs.
//! `runtime` is the monitor a server runs: its files composed with every project's,
//! rule groups as tasks, `file_sd`, discovered targets and instance logs.
#![forbid(unsafe_code)]

pub mod config;
pub mod exposition;
#[doc(hidden)]
pub mod fuzz;
pub mod project;
pub mod relabel;
pub mod remote;
pub mod runtime;
pub mod scrape;
