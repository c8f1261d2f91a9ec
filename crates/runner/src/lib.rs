//! Executes workflow job graphs on the host: scheduling, steps, actions, logs and masking.
#![forbid(unsafe_code)]

mod builtin;
pub mod commands;
pub mod concurrency;
pub mod container;
mod context;
mod docker_step;
pub mod envfile;
pub mod fetch;
pub mod git;
mod job;
pub mod mask;
pub mod options;
mod output;
pub mod plan;
pub mod process;
pub mod repo;
pub mod reporter;
mod run;
pub mod sandbox;
mod step;
pub mod toolcache;
mod uses;

pub use options::{ReusedJob, RunOptions};
pub use reporter::Reporter;
pub use run::{execute, RunError, RunSummary};
pub use tokio_util::sync::CancellationToken;
