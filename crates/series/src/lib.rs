//! The data model that storage, queries, rules, alerts and logs share: a series'
//! identity (its label set) and the matchers that select series, a series with its
//! samples, the staleness marker, and what Prometheus accepts as names and values.
#![forbid(unsafe_code)]

pub mod labels;

pub use labels::{Labels, MatchOp, Matcher, METRIC_NAME};

/// A series with its samples `(milliseconds, value)`.
pub type Series = (Labels, Vec<(i64, f64)>);

/// Milliseconds since the Unix epoch: the time of samples, alerts and queries.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The value Prometheus writes to end a series (a NaN no computation produces).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether a sample is the staleness marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A byte that may follow the first of a metric name.
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// A metric name as Prometheus accepts it: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':') && bytes.all(is_name_byte)
}

/// A label name as Prometheus accepts it: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A bucket bound as written in `le` (`0.5`, `+Inf`).
pub fn parse_le(text: &str) -> Option<f64> {
    parse_value(text.trim())
}

/// A sample value as Prometheus writes it (`0.5`, `+Inf`, `NaN`).
pub fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ if text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) => {
            text.parse().ok()
        }
        _ => None,
    }
}
