//! Release and deploy: `mobius.yaml`, releases with provenance, the rollout controller
//! with its strategies and analysis, and the host agent that runs the router and the
//! service instances.
#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod rollout;
pub mod runtime;

pub use config::{parse_delivery, DeliveryConfig, Environment, Service, Strategy};
