//! What both forwarding paths (the fast path and hyper's) share, so they cannot drift
//! apart: the hop-by-hop list, the failure type that decides the answer's status, and
//! the retry policy.

use crate::table::{Backend, Table};
use std::sync::Arc;

/// Hop-by-hop headers (RFC 9110 section 7.6.1, with the legacy `keep-alive` and
/// `proxy-connection`): never forwarded as they came. Each path re-creates what it
/// must (a chunked body's framing, an upgrade's `connection: upgrade`) itself.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is one of [`HOP_BY_HOP`] (ASCII case-insensitive).
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Why a request could not be forwarded to a backend. The variant, never the message,
/// decides the status of the answer and whether the connection may be tried again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpstreamFailure {
    /// No connection to the backend could be opened.
    #[error("cannot connect to the backend")]
    Connect,
    /// Opening the connection took longer than the connect timeout.
    #[error("connecting to the backend timed out")]
    ConnectTimeout,
    /// The connection broke before the response head was whole. `stale`: it was a
    /// kept-alive connection that broke before any byte came back (the backend had
    /// closed it while idle), so the same request may go again on a new one.
    #[error("the backend closed the connection")]
    Closed { stale: bool },
    /// No response head within the response timeout.
    #[error("the backend did not answer in time")]
    Timeout,
    /// The backend answered something that is not HTTP/1.1.
    #[error("{0}")]
    Protocol(String),
}

impl UpstreamFailure {
    /// The status the client gets when no backend is left to try: 504 for a backend
    /// that did not answer in time, 502 for every other failure of the backend.
    pub(crate) fn status(&self) -> u16 {
        match self {
            UpstreamFailure::Timeout => 504,
            UpstreamFailure::Connect
            | UpstreamFailure::ConnectTimeout
            | UpstreamFailure::Closed { .. }
            | UpstreamFailure::Protocol(_) => 502,
        }
    }

    /// Whether the same backend may be asked again at once on a new connection.
    pub(crate) fn stale_connection(&self) -> bool {
        matches!(self, UpstreamFailure::Closed { stale: true })
    }
}

/// The retry policy of one request: the table's pick, never the backend that just
/// failed, at most `retries` more backends, and only for a request that can be sent
/// again (no body streamed, not an upgrade, an idempotent method).
pub(crate) struct Attempts {
    retries: u32,
    retryable: bool,
    made: u32,
    failed: Option<Arc<Backend>>,
}

impl Attempts {
    pub(crate) fn new(table: &Table, retryable: bool) -> Attempts {
        Attempts { retries: table.retries, retryable, made: 0, failed: None }
    }

    /// The backend the next pick avoids (the one that failed last).
    pub(crate) fn avoid(&self) -> Option<&Backend> {
        self.failed.as_deref()
    }

    /// After a failure on `backend`: whether to try another backend (true) or answer
    /// with the failure (false).
    pub(crate) fn again(&mut self, backend: Arc<Backend>) -> bool {
        if self.retryable && self.made < self.retries {
            self.made += 1;
            self.failed = Some(backend);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_follows_the_failure_not_its_message() {
        assert_eq!(UpstreamFailure::Timeout.status(), 504);
        for failure in [
            UpstreamFailure::Connect,
            UpstreamFailure::ConnectTimeout,
            UpstreamFailure::Closed { stale: false },
            // A backend's message that happens to say "in time" is still a 502.
            UpstreamFailure::Protocol("the backend did not answer in time".into()),
        ] {
            assert_eq!(failure.status(), 502, "{failure:?}");
        }
        assert!(UpstreamFailure::Closed { stale: true }.stale_connection());
        assert!(!UpstreamFailure::Closed { stale: false }.stale_connection());
    }

    #[test]
    fn one_hop_by_hop_list_covers_rfc_9110_and_the_legacy_headers() {
        for name in ["Connection", "KEEP-ALIVE", "proxy-connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade"] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["content-length", "x-forwarded-for", "host"] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
    }

    #[test]
    fn retries_stop_at_the_limit_and_never_for_a_request_that_cannot_go_again() {
        let table = Table::new(Vec::new(), None, 2);
        let backend = || Arc::new(Backend::new("a", "127.0.0.1:1".parse().unwrap()));
        let mut attempts = Attempts::new(&table, true);
        assert!(attempts.again(backend()) && attempts.avoid().is_some());
        assert!(attempts.again(backend()));
        assert!(!attempts.again(backend()), "two retries, then the failure is answered");
        let mut once = Attempts::new(&table, false);
        assert!(!once.again(backend()), "a streamed body is never sent twice");
    }
}
