//! LogQL: pipelines (parsers, label filters, formatting) and metric queries over
//! lines, with results worked out by hand.
#![allow(clippy::unwrap_used)]

use mobius_logs::logql::{self, Expr, Samples, Value};
use mobius_series::labels::Labels;
use std::collections::BTreeMap;

const S: i64 = 1_000_000_000;

fn stream(service: &str) -> Labels {
    Labels::from_pairs(&[("service", service), ("level", "stream")])
}

fn run(query: &str, line: &str) -> Option<(String, String)> {
    let q = logql::parse_log_query(query).unwrap();
    q.process(&stream("web"), line).map(|(labels, line)| (labels.to_string(), line))
}

#[test]
fn parsers_extract_labels_that_filters_and_formats_use() {
    let json = r#"{"status": 503, "path": "/cart", "took": "1.5s", "req": {"id": "a1", "size": "20KB"}, "level": "error", "tags": [1]}"#;
    let (labels, _) = run(r#"{service="web"} | json"#, json).unwrap();
    assert_eq!(
        labels,
        r#"{level="stream", level_extracted="error", path="/cart", req_id="a1", req_size="20KB", service="web", status="503", took="1.5s"}"#
    );
    assert!(run(r#"{service="web"} | json | status >= 500 and path="/cart""#, json).is_some());
    assert!(run(r#"{service="web"} | json | status < 500"#, json).is_none());
    assert!(run(r#"{service="web"} | json | took > 1s, took <= 1500ms"#, json).is_some());
    assert!(run(r#"{service="web"} | json | took > 2s or req_size >= 20KB"#, json).is_some());
    assert!(run(r#"{service="web"} | json | req_size > 20KB"#, json).is_none());
    assert!(run(r#"{service="web"} | json | path=~"/c.*" | level_extracted!="info""#, json).is_some());
    let (_, line) =
        run(r#"{service="web"} | json | line_format "{{.status}} {{.path | toUpper}} {{.absent}}""#, json).unwrap();
    assert_eq!(line, "503 /CART ");
    let (labels, _) = run(r#"{service="web"} | json | keep service, status"#, json).unwrap();
    assert_eq!(labels, r#"{service="web", status="503"}"#);
    let (labels, _) = run(r#"{service="web"} | json | drop req_id, req_size, took, level_extracted"#, json).unwrap();
    assert_eq!(labels, r#"{level="stream", path="/cart", service="web", status="503"}"#);

    // `flag` has no value: an empty label is no label.
    let logfmt = r#"at=info method=GET path="/a b" status=200 duration=12ms flag"#;
    let (labels, _) = run(r#"{service="web"} | logfmt"#, logfmt).unwrap();
    assert_eq!(
        labels,
        r#"{at="info", duration="12ms", level="stream", method="GET", path="/a b", service="web", status="200"}"#
    );
    let (labels, _) = run(
        r#"{service="web"} |= "GET" | regexp "(?P<method>[A-Z]+) (?P<path>/\\S*) (?P<status>\\d+)""#,
        "GET /cart 404",
    )
    .unwrap();
    assert_eq!(labels, r#"{level="stream", method="GET", path="/cart", service="web", status="404"}"#);

    // A line a parser cannot read keeps going with __error__, which a filter can drop.
    let (labels, _) = run(r#"{service="web"} | json"#, "not json").unwrap();
    assert!(labels.contains(r#"__error__="JSONParserErr""#), "{labels}");
    assert!(run(r#"{service="web"} | json | __error__="""#, "not json").is_none());
    assert!(run(r#"{service="other"} | json"#, json).is_none());
}

#[test]
fn bad_queries_name_the_column() {
    let error = |q: &str| logql::parse(q).unwrap_err().to_string();
    assert_eq!(
        error(r#"{service="web"} | json | status >> 5"#),
        "at column 34: `>` is not a quoted string, a number, a duration or a size"
    );
    assert_eq!(
        error(r#"sum_over_time({service="web"} | json [1m])"#),
        "at column 1: sum_over_time needs `| unwrap LABEL` in its log query"
    );
    assert_eq!(
        error(r#"{service="web"} | regexp "(\\d+)""#),
        "at column 25: regexp needs at least one named group, such as (?P<status>\\d+)"
    );
    assert!(error(r#"count_over_time({service="web"})"#).contains("expected `[`"));
    assert!(error(r#"rate({service="web"}[5x])"#).contains("`5x` is not a duration"));
    assert!(error(r#"sum by (x) ({service="web"})"#).contains("an aggregation takes a metric query"));
    assert!(logql::parse_log_query(r#"rate({service="web"}[1m])"#).unwrap_err().to_string().contains("metric query"));
}

/// Lines as a store would hand them to a metric query: (stream, seconds, line).
fn lines() -> Vec<(Labels, i64, String)> {
    let mut out = Vec::new();
    // web: a request every 10 s from 0 to 110 s; every third one fails and takes 300 ms.
    for i in 0..12 {
        let (status, ms) = if i % 3 == 0 { (500, 300) } else { (200, 100) };
        out.push((stream("web"), i * 10, format!("status={status} duration={ms}ms bytes={}", 100 + i)));
    }
    // api: one line at 55 s, one it cannot parse at 56 s.
    out.push((stream("api"), 55, "status=200 duration=50ms bytes=1".into()));
    out.push((stream("api"), 56, "status=\"unterminated".into()));
    out
}

fn eval(query: &str, steps: &[i64]) -> Result<BTreeMap<String, Vec<Option<f64>>>, String> {
    let expr = logql::parse(query).map_err(|e| e.to_string())?;
    let all = lines();
    let mut read = |q: &logql::LogQuery, func, from: i64, to: i64| -> Result<Samples, logql::QueryError> {
        let mut samples = Samples::new();
        for (labels, s, line) in &all {
            let ts = s * S;
            if ts < from || ts > to {
                continue;
            }
            if let Some((labels, point)) = logql::sample(q, func, labels, ts, line)? {
                samples.entry(labels).or_default().push(point);
            }
        }
        Ok(samples)
    };
    let steps: Vec<i64> = steps.iter().map(|s| s * S).collect();
    match logql::evaluate(&expr, &steps, &mut read).map_err(|e| e.to_string())? {
        Value::Scalar(v) => Ok(BTreeMap::from([(String::new(), vec![Some(v); steps.len()])])),
        Value::Vector(v) => Ok(v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
    }
}

#[test]
fn metric_queries_count_rate_and_aggregate_lines() {
    let web = r#"{level="stream", service="web"}"#;
    // (0, 60]: lines at 10..60 s, six of them; at 120 s, (60, 120]: 70..110, five.
    assert_eq!(eval(r#"count_over_time({service="web"}[1m])"#, &[60, 120]).unwrap()[web], [Some(6.0), Some(5.0)]);
    assert_eq!(eval(r#"rate({service="web"}[1m])"#, &[60]).unwrap()[web], [Some(0.1)]);
    // Line bytes: "status=200 duration=100ms bytes=1NN" is 35 bytes, "...500...300ms..." too.
    assert_eq!(eval(r#"bytes_over_time({service="web"}[10s])"#, &[20]).unwrap()[web], [Some(35.0)]);
    // By status, after logfmt; the api stream's unreadable line is dropped by a filter.
    let by_status =
        eval(r#"sum by (status) (count_over_time({service=~"web|api"} | logfmt | __error__="" [1m]))"#, &[60]).unwrap();
    assert_eq!(by_status[r#"{status="200"}"#], [Some(5.0)], "40, 50, 20, 10 s of web and 55 s of api");
    assert_eq!(by_status[r#"{status="500"}"#], [Some(2.0)], "30 and 60 s");
    // Without the filter, the parse error is the query's error.
    let error = eval(r#"count_over_time({service="api"} | logfmt [1m])"#, &[60]).unwrap_err();
    assert!(error.contains("LogfmtParserErr") && error.contains(r#"__error__="""#), "{error}");
    // The error ratio: failed requests over all.
    let ratio = eval(
        r#"sum(count_over_time({service="web"} | logfmt | status >= 500 [1m])) / sum(count_over_time({service="web"} [1m]))"#,
        &[60, 120],
    )
    .unwrap();
    assert_eq!(ratio["{}"], [Some(2.0 / 6.0), Some(1.0 / 5.0)]);
    // Unwrapped durations, in seconds; the unwrapped label leaves the series' labels.
    let latency =
        eval(r#"max by (service) (max_over_time({service="web"} | logfmt | unwrap duration(duration) [1m]))"#, &[60]);
    assert_eq!(latency.unwrap()[r#"{service="web"}"#], [Some(0.3)]);
    // Grouping inside an unwrapped range aggregation takes the points together: the
    // average of all six requests, per service.
    let grouped =
        eval(r#"avg_over_time({service="web"} | logfmt | unwrap duration(duration) [1m]) by (service)"#, &[60])
            .unwrap();
    assert_eq!(grouped[r#"{service="web"}"#], [Some((4.0 * 0.1 + 2.0 * 0.3) / 6.0)]);
    assert!(logql::parse(r#"count_over_time({service="web"}[1m]) by (service)"#).is_err());
    // The variance of 0.1 s four times and 0.3 s twice: 2/225.
    let spread =
        eval(r#"stdvar_over_time({service="web"} | logfmt | unwrap duration(duration) [1m]) by (service)"#, &[60]);
    let spread = spread.unwrap()[r#"{service="web"}"#][0].unwrap();
    assert!((spread - 2.0 / 225.0).abs() < 1e-12, "{spread}");
    let counts = eval(r#"stddev(count_over_time({service=~"web|api"}[1m]))"#, &[60]).unwrap();
    assert_eq!(counts["{}"], [Some(2.0)], "6 lines and 2: two either side of 4");
    let avg =
        eval(r#"avg_over_time({service="web"} | logfmt | keep service, bytes | unwrap bytes [1m])"#, &[60]).unwrap();
    assert_eq!(avg[r#"{service="web"}"#], [Some(103.5)], "bytes 101..106");
    let q =
        eval(r#"quantile_over_time(0.5, {service="web"} | logfmt | keep service, bytes | unwrap bytes [1m])"#, &[60])
            .unwrap();
    assert_eq!(q[r#"{service="web"}"#], [Some(103.5)]);
    // topk keeps series with their labels; arithmetic with numbers.
    let top = eval(r#"topk(1, count_over_time({service=~"web|api"}[2m]))"#, &[120]).unwrap();
    assert_eq!(top.keys().collect::<Vec<_>>(), [web]);
    let scaled = eval(r#"count_over_time({service="web"}[1m]) * 2 + 1"#, &[60]).unwrap();
    assert_eq!(scaled[web], [Some(13.0)]);
    // No line in the window: no value at that step, and no series at all if none anywhere.
    let sparse = eval(r#"count_over_time({service="api"} |= "status=200" [5s])"#, &[50, 58, 70]).unwrap();
    assert_eq!(sparse[r#"{level="stream", service="api"}"#], [None, Some(1.0), None]);
    assert!(eval(r#"count_over_time({service="none"}[1m])"#, &[60]).unwrap().is_empty());
    assert!(matches!(logql::parse(r#"{service="web"} |= "x""#).unwrap(), Expr::Log(_)));
}

/// Issue 15, item 2: 5,000 parentheses or terms used to overflow the stack; the
/// parser refuses more than 1,000 levels, naming the limit, and accepts what is within.
#[test]
fn deep_logql_is_refused_at_the_depth_limit() {
    let limit = |q: &str| logql::parse(q).unwrap_err().to_string();
    let parens = format!("{}count_over_time({{service=\"web\"}}[1m]){}", "(".repeat(5000), ")".repeat(5000));
    assert!(limit(&parens).contains("more than 1000 levels"), "{}", limit(&parens));
    let terms = vec!["count_over_time({service=\"web\"}[1m])"; 5000].join(" + ");
    assert!(limit(&terms).contains("more than 1000 levels"));
    let numbers = vec!["1"; 5000].join("+");
    assert!(limit(&numbers).contains("more than 1000 levels"));
    let filters = format!("{{service=\"web\"}} | logfmt | {}", vec!["status=200"; 5000].join(" and "));
    assert!(limit(&filters).contains("more than 1000 levels"));
    let nested =
        format!("{{service=\"web\"}} | logfmt | status=200 and {}status=200{}", "(".repeat(3000), ")".repeat(3000));
    assert!(limit(&nested).contains("more than 1000 levels"));
    let sums = format!("{}count_over_time({{service=\"web\"}}[1m]){}", "sum(".repeat(3000), ")".repeat(3000));
    assert!(limit(&sums).contains("more than 1000 levels"));

    // Within the limit, a long sum still evaluates on a test thread's stack.
    let terms = vec!["count_over_time({service=\"web\"}[1m])"; 400].join(" + ");
    let got = eval(&terms, &[60]).unwrap();
    assert_eq!(got[r#"{level="stream", service="web"}"#], [Some(2400.0)]);
}
