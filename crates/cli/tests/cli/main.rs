//! Integration tests of `mobius run`, one file per feature.

mod actions;
mod cancel;
mod conformance;
mod containers;
mod contexts;
mod fuzz;
#[path = "../common/http_git.rs"]
mod http_git;
mod masking;
mod output;
mod remote;
mod semantics;
mod strategy;
mod support;
mod tidy;
mod triggers;
mod validation;
