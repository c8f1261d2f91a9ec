//! The data plane: a reverse proxy per environment with weighted versions, sticky keys,
//! active and passive health, retries, draining and per-version request metrics.
//!
//! The rollout controller changes weights with [`Router::configure`]; each request is
//! routed by the table current when it arrived, so a switch acknowledged to the caller
//! is never undone by a request that started later.
#![forbid(unsafe_code)]

pub mod config;
mod fast;
mod forward;
#[doc(hidden)]
pub mod fuzz;
mod pool;
mod proxy;
pub mod stats;
pub mod table;

pub use config::{ListenerConfig, RouterOptions, Sticky, VersionConfig};
pub use proxy::{Router, RouterError, ERROR_HEADER, VERSION_HEADER};
pub use stats::{ErrorSide, Sample, VersionSnapshot};
