//! What a listener routes: the versions behind it, their weights and backends, and the knobs.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// One public address and how its traffic is split across versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerConfig {
    /// Where the listener accepts connections; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Versions in traffic; a version with weight 0 receives no new request.
    pub versions: Vec<VersionConfig>,
    /// Requests carrying this key go to the same version while the weights stay the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// How many more backends an idempotent request without a body may try after a failed attempt.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_retries() -> u32 {
    2
}

/// One version (release) behind a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionConfig {
    pub version: String,
    pub weight: u32,
    /// Backend ids, registered with [`crate::Router::upsert_backend`].
    pub backends: Vec<String>,
}

/// Where the sticky key is read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sticky {
    Header(String),
    Cookie(String),
}

/// Process-wide settings of the router.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// Time allowed to open a connection to a backend.
    pub connect_timeout: Duration,
    /// Time allowed for a backend to answer with its response headers.
    pub response_timeout: Duration,
    /// Consecutive failed attempts (connection refused, reset, timeout) that eject a backend.
    pub eject_after_failures: u32,
    /// How long an ejected backend receives no request.
    pub ejection_time: Duration,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(60),
            eject_after_failures: 3,
            ejection_time: Duration::from_secs(10),
        }
    }
}
