//! The Docker executor: job containers, services, and the engine they run on.

pub mod engine;
pub(crate) mod job;
pub(crate) mod spec;

pub use engine::{DockerError, Engine, PullPolicy};
