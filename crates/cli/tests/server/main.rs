//! Integration tests of `mobius serve` and the client commands, one file per feature,
//! against the real binary over loopback, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)] // reason: a test fails loudly on any unexpected error

mod alerting;
mod auth;
mod crash;
mod deploy;
mod events;
mod first_hour;
mod hardening;
#[path = "../common/http_git.rs"]
mod http_git;
mod logs_store;
mod monitor;
mod pipelines;
mod promql_diff;
mod remote_write;
mod support;
mod ui;
mod webhooks;
