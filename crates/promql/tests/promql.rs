//! PromQL over the store, each expected value worked out by hand from Prometheus'
//! rules (lookback, staleness, extrapolation, matching); the differential suite
//! against a real Prometheus comes with the query API.
#![allow(clippy::unwrap_used)]

use mobius_promql::{self as promql, Value};
use mobius_series::labels::Labels;
use mobius_series::STALE_NAN_BITS;
use mobius_tsdb::{Db, DbOptions};
use std::sync::Arc;

const S: i64 = 1000;

fn store() -> (tempfile::TempDir, Arc<Db>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(DbOptions::new(dir.path())).unwrap();
    let series = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs);
    let a = series(&[("__name__", "http_requests_total"), ("job", "api"), ("instance", "a")]);
    let b = series(&[("__name__", "http_requests_total"), ("job", "api"), ("instance", "b")]);
    let c = series(&[("__name__", "http_requests_total"), ("job", "web"), ("instance", "c")]);
    let gone = series(&[("__name__", "temperature"), ("room", "1")]);
    for i in 0..=40 {
        let t = i * 15;
        // a: 1/s, b: 2/s, c: 1/s with a reset at 300 s.
        let c_value = if t < 300 { t } else { t - 300 };
        db.append([(&a, t * S, t as f64), (&b, t * S, 2.0 * t as f64), (&c, t * S, c_value as f64)]).unwrap();
        if t <= 480 {
            let v = if t == 480 { f64::from_bits(STALE_NAN_BITS) } else { 21.5 };
            db.append([(&gone, t * S, v)]).unwrap();
        }
    }
    for (le, count) in [("0.1", 10.0), ("0.5", 20.0), ("+Inf", 20.0)] {
        let bucket = series(&[("__name__", "latency_bucket"), ("le", le)]);
        db.append([(&bucket, 600 * S, count)]).unwrap();
    }
    (dir, db)
}

fn vector(db: &Db, query: &str) -> Vec<(String, f64)> {
    match promql::instant(db, &promql::parse(query).unwrap(), 600 * S).unwrap() {
        Value::Vector(v) => v.into_iter().map(|(l, v)| (l.to_string(), v)).collect(),
        Value::Scalar(v) => vec![("scalar".into(), v)],
        other => panic!("{query}: {other:?}"),
    }
}

/// The error an instant query at 600 s answers.
fn error(db: &Db, query: &str) -> String {
    promql::instant(db, &promql::parse(query).unwrap(), 600 * S).unwrap_err().to_string()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn assert_values(db: &Db, query: &str, expected: &[(&str, f64)]) {
    let mut got = vector(db, query);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), expected.len(), "{query}: {got:?}");
    for ((labels, value), (want_labels, want)) in got.iter().zip(expected) {
        assert_eq!(labels, want_labels, "{query}");
        assert!(close(*value, *want), "{query}: {labels} = {value}, expected {want}");
    }
}

#[test]
fn selectors_rates_aggregations_and_matching_follow_prometheus() {
    let (_dir, db) = store();
    assert_values(
        &db,
        "http_requests_total",
        &[
            ("http_requests_total{instance=\"a\", job=\"api\"}", 600.0),
            ("http_requests_total{instance=\"b\", job=\"api\"}", 1200.0),
            ("http_requests_total{instance=\"c\", job=\"web\"}", 300.0),
        ],
    );
    // The stale marker at 480 s ends the series; without it the lookback would find 21.5.
    assert_values(&db, "temperature", &[]);
    assert_values(&db, "temperature offset 3m", &[("temperature{room=\"1\"}", 21.5)]);
    // (540, 600]: 4 samples 45 s apart in all, extrapolated 15 s to the start: 60 / 60 s.
    assert_values(&db, "rate(http_requests_total{instance=\"a\"}[1m])", &[("{instance=\"a\", job=\"api\"}", 1.0)]);
    assert_values(&db, "irate(http_requests_total{instance=\"b\"}[1m])", &[("{instance=\"b\", job=\"api\"}", 2.0)]);
    assert_values(&db, "increase(http_requests_total{job=\"web\"}[2m])", &[("{instance=\"c\", job=\"web\"}", 120.0)]);
    // Over the reset: 300 - 0 + 285 = 585 over the whole 600 s (Prometheus 2.x includes
    // the sample at the range's start, t = 0), so nothing is extrapolated.
    assert_values(&db, "increase(http_requests_total{job=\"web\"}[10m])", &[("{instance=\"c\", job=\"web\"}", 585.0)]);
    assert_values(
        &db,
        "sum by (job) (rate(http_requests_total[1m]))",
        &[("{job=\"api\"}", 3.0), ("{job=\"web\"}", 1.0)],
    );
    assert_values(
        &db,
        "count without (instance) (http_requests_total)",
        &[("{job=\"api\"}", 2.0), ("{job=\"web\"}", 1.0)],
    );
    assert_values(&db, "max(http_requests_total)", &[("{}", 1200.0)]);
    assert_values(&db, "topk(1, http_requests_total)", &[("http_requests_total{instance=\"b\", job=\"api\"}", 1200.0)]);
    assert_values(
        &db,
        "http_requests_total > 500",
        &[
            ("http_requests_total{instance=\"a\", job=\"api\"}", 600.0),
            ("http_requests_total{instance=\"b\", job=\"api\"}", 1200.0),
        ],
    );
    assert_values(&db, "http_requests_total{instance=\"c\"} > bool 500", &[("{instance=\"c\", job=\"web\"}", 0.0)]);
    assert_values(
        &db,
        "http_requests_total{job=\"api\"} / on(instance) http_requests_total{job=\"api\"} * 2",
        &[("{instance=\"a\"}", 2.0), ("{instance=\"b\"}", 2.0)],
    );
    assert_values(
        &db,
        "http_requests_total{job=\"api\"} / ignoring(job) group_left sum by (instance) (http_requests_total)",
        &[("{instance=\"a\", job=\"api\"}", 1.0), ("{instance=\"b\", job=\"api\"}", 1.0)],
    );
    assert_values(
        &db,
        "http_requests_total and on(job) http_requests_total{job=\"web\"}",
        &[("http_requests_total{instance=\"c\", job=\"web\"}", 300.0)],
    );
    assert_values(&db, "histogram_quantile(0.5, latency_bucket)", &[("{}", 0.1)]);
    assert_values(&db, "histogram_quantile(0.75, latency_bucket)", &[("{}", 0.3)]);
    assert_values(&db, "absent(nothing{job=\"x\"})", &[("{job=\"x\"}", 1.0)]);
    assert_values(
        &db,
        "clamp_max(http_requests_total{instance=\"b\"}, 100)",
        &[("{instance=\"b\", job=\"api\"}", 100.0)],
    );
    assert_values(
        &db,
        "avg_over_time(http_requests_total{instance=\"a\"}[1m])",
        // 540, 555, 570, 585 and 600: the range's start is included, as in Prometheus 2.x.
        &[("{instance=\"a\", job=\"api\"}", 570.0)],
    );
    assert_values(&db, "time() - 60", &[("scalar", 540.0)]);
    // `@` fixes the time a selector reads at; a subquery evaluates at its own steps.
    assert_values(
        &db,
        "http_requests_total{instance=\"b\"} @ 300",
        &[("http_requests_total{instance=\"b\", job=\"api\"}", 600.0)],
    );
    assert_values(
        &db,
        "max_over_time(rate(http_requests_total{job=\"web\"}[1m])[10m:1m])",
        // c grows 1/s except across its reset at 300 s, where rate still sees 1/s.
        &[("{instance=\"c\", job=\"web\"}", 1.0)],
    );
    assert_values(
        &db,
        "count_over_time(http_requests_total{instance=\"a\"}[5m:1m])",
        // Steps at 300, 360, … 600: both ends of the window included.
        &[("{instance=\"a\", job=\"api\"}", 6.0)],
    );
}

#[test]
fn range_queries_step_through_time_and_bad_queries_say_why() {
    let (_dir, db) = store();
    let expr = promql::parse("rate(http_requests_total{instance=\"a\"}[1m])").unwrap();
    let series = promql::range(&db, &expr, 300 * S, 600 * S, 60 * S).unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].1.len(), 6);
    assert!(series[0].1.iter().all(|(_, v)| close(*v, 1.0)), "{series:?}");
    assert!(promql::parse("sum(").is_err());
    let err = promql::range(&db, &promql::parse("http_requests_total[5m]").unwrap(), 0, 60 * S, 15 * S).unwrap_err();
    assert!(err.to_string().contains("must be Scalar or instant Vector"), "{err}");
}

#[test]
fn label_replace_and_label_join_rewrite_labels_and_refuse_a_clash() {
    let (_dir, db) = store();
    assert_values(
        &db,
        "label_replace(http_requests_total{job=\"api\"}, \"host\", \"node-$1\", \"instance\", \"(a|z)\")",
        &[
            ("http_requests_total{host=\"node-a\", instance=\"a\", job=\"api\"}", 600.0),
            ("http_requests_total{instance=\"b\", job=\"api\"}", 1200.0),
        ],
    );
    assert_values(
        &db,
        "label_join(http_requests_total{instance=\"c\"}, \"id\", \"/\", \"job\", \"instance\", \"missing\")",
        &[("http_requests_total{id=\"web/c/\", instance=\"c\", job=\"web\"}", 300.0)],
    );
    assert_values(
        &db,
        "label_replace(http_requests_total{instance=\"a\"}, \"job\", \"\", \"job\", \".*\")",
        &[("http_requests_total{instance=\"a\"}", 600.0)],
    );
    let clash = error(&db, "label_replace(http_requests_total, \"instance\", \"x\", \"\", \"\")");
    assert!(clash.contains("same labelset"), "{clash}");
    let bad = error(&db, "label_replace(http_requests_total, \"1x\", \"x\", \"job\", \".*\")");
    assert!(bad.contains("invalid destination label name"), "{bad}");
}

#[test]
fn count_values_counts_members_by_value() {
    let (_dir, db) = store();
    // At 600 s: a = 600, b = 1200, c = 300.
    assert_values(&db, "count_values(\"v\", http_requests_total / 300 > 1)", &[("{v=\"2\"}", 1.0), ("{v=\"4\"}", 1.0)]);
    assert_values(&db, "count_values(\"v\", http_requests_total * 0 + 1.5)", &[("{v=\"1.5\"}", 3.0)]);
    assert_values(
        &db,
        "count_values by (job) (\"v\", http_requests_total > bool 400)",
        &[("{job=\"api\", v=\"1\"}", 2.0), ("{job=\"web\", v=\"0\"}", 1.0)],
    );
    let bad = error(&db, "count_values(\"1x\", http_requests_total)");
    assert!(bad.contains("invalid label name"), "{bad}");
}

#[test]
fn changes_regressions_and_window_statistics_follow_prometheus() {
    let (_dir, db) = store();
    // a = t and b = 2t every 15 s; c resets at 300 s.
    assert_values(&db, "changes(http_requests_total{instance=\"a\"}[5m])", &[("{instance=\"a\", job=\"api\"}", 20.0)]);
    assert_values(&db, "resets(http_requests_total{job=\"web\"}[10m])", &[("{instance=\"c\", job=\"web\"}", 1.0)]);
    assert_values(&db, "deriv(http_requests_total{instance=\"b\"}[5m])", &[("{instance=\"b\", job=\"api\"}", 2.0)]);
    assert_values(
        &db,
        "predict_linear(http_requests_total{instance=\"a\"}[5m], 60)",
        &[("{instance=\"a\", job=\"api\"}", 660.0)],
    );
    // 570, 585 and 600 in the window.
    assert_values(
        &db,
        "stdvar_over_time(http_requests_total{instance=\"a\"}[30s])",
        &[("{instance=\"a\", job=\"api\"}", 150.0)],
    );
    assert_values(
        &db,
        "quantile_over_time(0.25, http_requests_total{instance=\"a\"}[30s])",
        &[("{instance=\"a\", job=\"api\"}", 577.5)],
    );
    // Linear samples are smoothed to themselves.
    assert_values(
        &db,
        "holt_winters(http_requests_total{instance=\"a\"}[1m], 0.5, 0.5)",
        &[("{instance=\"a\", job=\"api\"}", 600.0)],
    );
    let bad = error(&db, "holt_winters(http_requests_total[1m], 1, 0.5)");
    assert!(bad.contains("invalid smoothing factor"), "{bad}");
    assert_values(&db, "absent_over_time(nope{job=\"x\", job!=\"y\", env=\"p\"}[1m])", &[("{env=\"p\"}", 1.0)]);
    assert_values(&db, "absent_over_time(http_requests_total[1m])", &[]);
    // A selector's samples keep their own times; a computed value has the instant's.
    assert_values(
        &db,
        "timestamp(http_requests_total{instance=\"a\"} offset 7s)",
        &[("{instance=\"a\", job=\"api\"}", 585.0)],
    );
    assert_values(&db, "timestamp(sum(http_requests_total offset 7s))", &[("{}", 600.0)]);
}

#[test]
fn sort_orders_an_instant_answer_and_dates_read_unix_seconds_in_utc() {
    let (_dir, db) = store();
    let instances = |query: &str| -> Vec<String> { vector(&db, query).into_iter().map(|(l, _)| l).collect() };
    let desc = instances("sort_desc(http_requests_total)");
    assert!(desc[0].contains("\"b\"") && desc[1].contains("\"a\"") && desc[2].contains("\"c\""), "{desc:?}");
    let asc = instances("sort(http_requests_total)");
    assert!(asc[0].contains("\"c\"") && asc[2].contains("\"b\""), "{asc:?}");
    // 1972-02-29 is day 60 of a leap year; 1970-01-04 was a Sunday.
    let leap_day = 86_400.0 * (730.0 + 59.0) + 3600.0 * 5.0 + 61.0;
    for (f, want) in [
        ("year", 1972.0),
        ("month", 2.0),
        ("day_of_month", 29.0),
        ("day_of_year", 60.0),
        ("days_in_month", 29.0),
        ("hour", 5.0),
        ("minute", 1.0),
    ] {
        assert_values(&db, &format!("{f}(vector({leap_day}))"), &[("{}", want)]);
    }
    assert_values(&db, "day_of_week(vector(86400 * 3))", &[("{}", 0.0)]);
    assert_values(&db, "days_in_month(vector(86400 * 31))", &[("{}", 28.0)]);
    // Without an argument, the instant itself (600 s after the epoch).
    assert_values(&db, "minute()", &[("{}", 10.0)]);
    assert_values(
        &db,
        "deg(vector(pi())) + rad(vector(180)) - sin(vector(0))",
        &[("{}", 180.0 + std::f64::consts::PI)],
    );
}

/// Issue 15, item 2: 3,000 chained `+` and 10,000 nested calls used to overflow the
/// stack and abort the process; they are refused before parsing, naming the limit,
/// while an expression just inside the limit still parses and evaluates (on a test
/// thread's 2 MiB stack, as the server's blocking threads have).
#[test]
fn deep_expressions_are_refused_at_the_depth_limit() {
    let (_dir, db) = store();
    let chained = vec!["1"; 3000].join("+");
    let err = promql::parse(&chained).unwrap_err();
    assert!(matches!(err, promql::QueryError::BadData(_)), "{err:?}");
    assert!(err.to_string().contains("more than the limit of 1000"), "{err}");
    let nested = format!("{}vector(1){}", "abs(".repeat(10_000), ")".repeat(10_000));
    assert!(promql::parse(&nested).unwrap_err().to_string().contains("limit of 1000"));
    let parens = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
    assert!(promql::parse(&parens).unwrap_err().to_string().contains("limit of 1000"));

    // Inside the limit: 999 terms (998 operators), and 990 nested calls.
    let terms = vec!["1"; 999].join("+");
    assert_eq!(vector(&db, &terms), [("scalar".to_string(), 999.0)]);
    let nested = format!("{}vector(2){}", "abs(".repeat(990), ")".repeat(990));
    assert_eq!(vector(&db, &nested), [("{}".to_string(), 2.0)]);
    // Operators inside strings and label matchers do not count.
    let matcher = format!("http_requests_total{{job!=\"{}\"}}", "+".repeat(5000));
    assert_eq!(vector(&db, &matcher).len(), 3);
}

/// Issue 15, item 2: Prometheus' `--query.max-samples` and `--query.timeout`, with its messages.
#[test]
fn queries_stop_at_the_sample_limit_and_the_timeout() {
    let (_dir, db) = store();
    let expr = promql::parse("sum(rate(http_requests_total[10m]))").unwrap();
    let few = promql::Limits { max_samples: 50, ..promql::Limits::default() };
    let err = promql::instant_within(&db, &expr, 600 * S, few).unwrap_err();
    assert_eq!(err, promql::QueryError::TooManySamples);
    assert_eq!(err.to_string(), "query processing would load too many samples into memory in query execution");
    let enough = promql::Limits { max_samples: 1000, ..promql::Limits::default() };
    promql::instant_within(&db, &expr, 600 * S, enough).unwrap();
    let no_time = promql::Limits { timeout: std::time::Duration::ZERO, ..promql::Limits::default() };
    let err = promql::range_within(&db, &expr, 0, 600 * S, 15 * S, no_time).unwrap_err();
    assert_eq!(err, promql::QueryError::Timeout);
    assert_eq!(err.to_string(), "query timed out in expression evaluation");
}

/// Issue 15, item 3: times whose difference overflows `i64` are refused instead of
/// wrapping into a wrong single point.
#[test]
fn query_times_that_would_overflow_are_refused() {
    let (_dir, db) = store();
    let expr = promql::parse("vector(1)").unwrap();
    let err = promql::range(&db, &expr, -9_000_000_000_000_000_000, 1_000_000_000_000_000_000, 1000).unwrap_err();
    assert!(err.to_string().contains("invalid parameter \"start\""), "{err}");
    let err = promql::instant(&db, &expr, i64::MAX).unwrap_err();
    assert!(err.to_string().contains("invalid parameter \"time\""), "{err}");
    // The largest range, offset and `@` a query can write stay finite.
    let far = promql::parse("count_over_time(http_requests_total[100000y] offset -100000y @ 1e15)").unwrap();
    promql::instant(&db, &far, 600 * S).unwrap();
}

/// Found by the `promql` fuzz target: promql-parser panicked on an offset too large
/// for a `Duration`; the query is refused instead.
#[test]
fn an_offset_too_large_for_a_duration_is_refused() {
    // Each of these panicked inside promql-parser; now refused before it sees them.
    for query in [
        ".4 offset 9999999999999999999999999999",
        "x offset -99999999999999999999",
        "x offset 1e30",
        "x offset Inf",
        "x offset NaN",
        "x[1e30]",
        "x[ 1e30 ]",
        "x[5m:1e30]",
    ] {
        let err = std::panic::catch_unwind(|| promql::parse(query)).expect("no panic").unwrap_err();
        assert!(err.to_string().contains("is out of range"), "{query}: {err}");
    }
    // Ordinary durations, offsets and numbers elsewhere are untouched.
    for query in ["x offset 5m", "x[5m:30s] offset -1h", "x offset 3600", "x > 1e30", "x{a=\"[1e30]\"}"] {
        promql::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    }
}
