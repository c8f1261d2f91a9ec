//! Release and deploy: `mobius.yaml`, the rollout controller with its strategies and
//! analysis, the host agent that runs the router and the service instances, and
//! `stage`, the decisions: releases with provenance, gates, approvals, auto-deploy.
#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod rollout;
pub mod runtime;
pub mod stage;

pub use config::{parse_delivery, DeliveryConfig, Environment, Service, Strategy};
