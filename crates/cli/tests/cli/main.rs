//! Integration tests of `mobius run`, one file per feature.

mod actions;
mod cancel;
mod conformance;
mod containers;
mod contexts;
mod fuzz;
mod masking;
mod output;
mod semantics;
mod strategy;
mod support;
mod tidy;
mod triggers;
mod validation;
