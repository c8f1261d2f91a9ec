//! Entry points for the fuzz targets in `fuzz/` and the bounded property tests that
//! run the same functions in CI: each takes arbitrary bytes and must not panic,
//! overflow its stack or run unbounded.

use mobius_logs::logql;
use mobius_promql as promql;
use mobius_series::labels::Labels;
use mobius_tsdb::{Db, DbOptions};
use std::sync::{Arc, OnceLock};

/// What a fuzzed query may spend: small, so one input never stalls the fuzzer.
const LIMITS: promql::Limits = promql::Limits { timeout: std::time::Duration::from_secs(2), max_samples: 1_000_000 };

/// A small store shared by every PromQL input of the process: two counters and a gauge.
fn store() -> Option<&'static Arc<Db>> {
    static STORE: OnceLock<Option<(std::path::PathBuf, Arc<Db>)>> = OnceLock::new();
    let entry = STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mobius-fuzz-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Db::open(DbOptions::new(&dir)).ok()?;
        let series = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs);
        let a = series(&[("__name__", "requests_total"), ("job", "api"), ("instance", "a")]);
        let b = series(&[("__name__", "requests_total"), ("job", "web"), ("instance", "b")]);
        let g = series(&[("__name__", "temperature"), ("room", "1")]);
        for i in 0..40i64 {
            let t = i * 15_000;
            db.append([(&a, t, i as f64), (&b, t, 2.0 * i as f64), (&g, t, 20.0 + (i % 5) as f64)]).ok()?;
        }
        Some((dir, db))
    });
    entry.as_ref().map(|(_, db)| db)
}

/// PromQL: parsing, then an instant and a range evaluation over a small store.
pub fn promql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(expr) = promql::parse(text) else { return };
    let Some(db) = store() else { return };
    let _ = promql::instant_within(db, &expr, 600_000, LIMITS);
    let _ = promql::range_within(db, &expr, 0, 600_000, 15_000, LIMITS);
}

/// LogQL: parsing, then a metric query evaluated over a few lines.
pub fn logql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(expr) = logql::parse(text) else { return };
    let stream = Labels::from_pairs(&[("service", "web")]);
    let lines = [
        "status=200 duration=12ms bytes=120",
        r#"{"level":"error","status":500,"took":"1.5s"}"#,
        "level=warn msg=\"slow request\" took=250ms",
        "not a structured line",
    ];
    let mut read = |q: &logql::LogQuery, func, from: i64, to: i64| -> Result<logql::Samples, logql::QueryError> {
        let mut samples = logql::Samples::new();
        for (i, line) in lines.iter().enumerate() {
            let ts = (i as i64 + 1) * 10_000_000_000;
            if ts < from || ts > to {
                continue;
            }
            if let Some((labels, point)) = logql::sample(q, func, &stream, ts, line)? {
                samples.entry(labels).or_default().push(point);
            }
        }
        Ok(samples)
    };
    let steps: Vec<i64> = (0..10).map(|i| i * 10_000_000_000).collect();
    let _ = logql::evaluate(&expr, &steps, &mut read);
    if let logql::Expr::Log(query) = &expr {
        for line in lines {
            let _ = query.process(&stream, line);
        }
    }
}

/// The Prometheus text and OpenMetrics exposition parsers, every entry.
pub fn exposition(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for format in [crate::exposition::Format::Text, crate::exposition::Format::OpenMetrics] {
        for entry in crate::exposition::Parser::new(text, format).take(100_000) {
            let _ = entry;
        }
    }
}

/// The remote-write decoder (snappy, then protobuf).
pub fn remote_write(data: &[u8]) {
    let _ = crate::remote::decode_write_request(data);
}

/// Loki's JSON push decoder.
pub fn loki_push(data: &[u8]) {
    let _ = mobius_logs::decode_push(data);
}
