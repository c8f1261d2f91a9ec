//! Entry point for the fuzz target in `fuzz/` and the bounded property test that
//! runs the same function in CI: the request-head parser of the fast path, on
//! arbitrary bytes, must not panic.

use crate::table::Table;

/// Parses `data` as the start of a client connection, as the fast path does.
pub fn request_head(data: &[u8]) {
    let table = Table::new(Vec::new(), None, 0);
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
    let _ = crate::fast::parse_request_outcome(data, peer, &table);
}
