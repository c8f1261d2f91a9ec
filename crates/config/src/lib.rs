//! The configuration kit: every file Mobius reads (workflows, actions, `mobius.yaml`,
//! `prometheus.yml`, rule files, `alertmanager.yml`, on-call schedules) goes through
//! the same YAML tree with positions, the same diagnostics (`file:line:column`, a
//! caret under the problem, "did you mean"), and the same checks for mappings.
#![forbid(unsafe_code)]

pub mod check;
pub mod diagnostic;
pub mod yaml;

pub use check::{closest, parse_duration, unknown_key, Checker};
pub use diagnostic::{Diagnostic, FileErrors, SourceFile};
