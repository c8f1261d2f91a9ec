//! The time-series store: an in-memory head of XOR-compressed chunks behind a
//! crash-safe write-ahead log, persisted blocks, compaction and retention.
//!
//! `chunk` packs samples as Prometheus does (delta-of-delta timestamps, XOR'd
//! values); `head` holds the series and their chunks with a postings index for label
//! matchers, `head_chunks` keeps its closed chunks in files; `wal` makes every
//! appended batch durable and is replayed at start; `block` writes and reads
//! immutable blocks; `db` ties them together. Storage knows nothing of queries: it
//! answers `select(matchers, mint, maxt)` with `mobius_series::Series`.
#![forbid(unsafe_code)]

pub mod block;
pub mod chunk;
pub mod db;
pub mod head;
pub mod head_chunks;
pub mod wal;

pub use db::{Db, DbOptions};
