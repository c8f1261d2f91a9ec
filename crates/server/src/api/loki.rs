//! Logs on Loki's HTTP API: `POST /loki/api/v1/push` (JSON), `GET
//! /loki/api/v1/query_range` and `/loki/api/v1/query` (LogQL: log queries answer
//! `streams`, metric queries `matrix` or `vector`), the label endpoints, and a live
//! tail over Server-Sent Events (`GET /api/v1/logs/tail`).

use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::Stream;
use mobius_logs::logql::{self, Expr};
use mobius_logs::{parse_log_query, LogLine, LogQuery, LogStore, QueryError};
use mobius_series::Labels;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A time as Loki takes it: nanoseconds, (fractional) seconds, or RFC 3339.
fn parse_time(name: &str, text: &str) -> ApiResult<i64> {
    if let Ok(n) = text.parse::<i64>() {
        // Loki reads a bare integer as nanoseconds unless it is plainly seconds.
        return Ok(if n.abs() < 100_000_000_000 { n.saturating_mul(1_000_000_000) } else { n });
    }
    if let Ok(s) = text.parse::<f64>() {
        return Ok((s * 1e9) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(text).ok().and_then(|t| t.timestamp_nanos_opt()).ok_or_else(|| {
        ApiError::bad_request(format!("{name}: `{text}` is not a time (nanoseconds, seconds or RFC 3339)"))
    })
}

fn labels_json(labels: &Labels) -> Value {
    Value::Object(labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>())
}

/// `POST /loki/api/v1/push` with Loki's JSON body (developers and above).
pub async fn push(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    caller.require_global(Role::Developer)?;
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.contains("protobuf") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only Loki's JSON push format is accepted (Content-Type: application/json)",
        ));
    }
    let lines = mobius_logs::decode_push(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let logs = Arc::clone(&app.monitor.logs);
    tokio::task::spawn_blocking(move || logs.push(lines))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct RangeQuery {
    query: String,
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
    direction: Option<String>,
    since: Option<String>,
    step: Option<String>,
    time: Option<String>,
}

/// At most this many steps in a metric query, as Prometheus.
const MAX_STEPS: i64 = 11_000;

/// A step as Loki takes it: seconds (`15`, `0.5`) or a duration (`1m`); nanoseconds.
fn parse_step(text: &str) -> ApiResult<i64> {
    let ns = match text.parse::<f64>() {
        Ok(s) => (s * 1e9) as i64,
        Err(_) => humantime::parse_duration(text)
            .ok()
            .and_then(|d| i64::try_from(d.as_nanos()).ok())
            .ok_or_else(|| ApiError::bad_request(format!("step: `{text}` is not a duration or a number of seconds")))?,
    };
    if ns <= 0 {
        return Err(ApiError::bad_request("step: must be more than zero"));
    }
    Ok(ns)
}

/// Evaluates a metric query at `steps` over the store, off the async runtime.
async fn evaluate(logs: Arc<LogStore>, expr: Expr, steps: Vec<i64>) -> ApiResult<(Vec<i64>, logql::Value)> {
    tokio::task::spawn_blocking(move || {
        let mut read = |q: &LogQuery, func, from: i64, to: i64| -> Result<logql::Samples, QueryError> {
            let mut samples = logql::Samples::new();
            let mut failed = None;
            logs.scan(&q.matchers, from, to, &mut |labels, ts, line| {
                if failed.is_some() {
                    return;
                }
                match logql::sample(q, func, labels, ts, line) {
                    Ok(Some((labels, point))) => samples.entry(labels).or_default().push(point),
                    Ok(None) => {}
                    Err(e) => failed = Some(e),
                }
            })
            .map_err(QueryError::Read)?;
            failed.map_or(Ok(samples), Err)
        };
        logql::evaluate(&expr, &steps, &mut read).map(|v| (steps, v))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match e {
        // The store failing is the server's fault, not the query's.
        e @ QueryError::Read(_) => ApiError::internal(e),
        e => ApiError::bad_request(format!("query: {e}")),
    })
}

/// A value as Loki writes it: Prometheus' number format, in a string.
fn sample_json(ts: i64, v: f64) -> Value {
    json!([ts as f64 / 1e9, super::monitor::format_value(v)])
}

fn parsed(query: &str) -> ApiResult<LogQuery> {
    parse_log_query(query).map_err(|e| ApiError::bad_request(format!("query: {e}")))
}

/// `GET /loki/api/v1/query_range`: a log query's lines in Loki's `streams` shape, or a
/// metric query's series over `start`..`end` every `step` as a `matrix`.
pub async fn query_range(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let expr = logql::parse(&q.query).map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
    let end = match &q.end {
        Some(t) => parse_time("end", t)?,
        None => now_ns(),
    };
    let start = match (&q.start, &q.since) {
        (Some(t), _) => parse_time("start", t)?,
        (None, Some(since)) => {
            let d = humantime::parse_duration(since).map_err(|e| ApiError::bad_request(format!("since: {e}")))?;
            end.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        }
        (None, None) => end.saturating_sub(3_600_000_000_000),
    };
    if start > end {
        return Err(ApiError::bad_request("start: after end"));
    }
    // Checked: a start and end from either end of i64 must not wrap past the step limit.
    let span = end.checked_sub(start).ok_or_else(|| {
        ApiError::bad_request(format!(
            "start, end: {start} to {end} ns is a longer range than a query may span ({} ns)",
            i64::MAX
        ))
    })?;
    let query = match expr {
        Expr::Log(query) => query,
        expr => {
            // Loki's default step gives about 250 points.
            let step = match &q.step {
                Some(s) => parse_step(s)?,
                None => (span / 250).max(1_000_000_000),
            };
            if span / step >= MAX_STEPS {
                return Err(ApiError::bad_request(format!(
                    "step: {MAX_STEPS} points at most; use a larger step for this range"
                )));
            }
            let steps: Vec<i64> = (0..)
                .map_while(|i: i64| i.checked_mul(step).and_then(|offset| start.checked_add(offset)))
                .take_while(|t| *t <= end)
                .collect();
            let (steps, value) = evaluate(Arc::clone(&app.monitor.logs), expr, steps).await?;
            let result: Vec<Value> = match value {
                logql::Value::Scalar(v) => {
                    vec![json!({"metric": {}, "values": steps.iter().map(|t| sample_json(*t, v)).collect::<Vec<_>>()})]
                }
                logql::Value::Vector(series) => series
                    .into_iter()
                    .map(|(labels, values)| {
                        let points: Vec<Value> =
                            steps.iter().zip(values).filter_map(|(t, v)| v.map(|v| sample_json(*t, v))).collect();
                        json!({"metric": labels_json(&labels), "values": points})
                    })
                    .collect(),
            };
            return Ok(Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}})));
        }
    };
    let backward = match q.direction.as_deref() {
        None | Some("backward") | Some("BACKWARD") => true,
        Some("forward") | Some("FORWARD") => false,
        Some(other) => return Err(ApiError::bad_request(format!("direction: `{other}` is not forward or backward"))),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 5000);
    let logs = Arc::clone(&app.monitor.logs);
    let found = tokio::task::spawn_blocking(move || logs.query(&query, start, end, limit, backward))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"status": "success", "data": {"resultType": "streams", "result": streams_json(found)}})))
}

/// `GET /loki/api/v1/query`: a metric query at one instant (`time`, default now)
/// as a `vector`, or a log query's lines up to that instant as `streams`.
pub async fn query(State(app): State<Arc<App>>, caller: Caller, Query(q): Query<RangeQuery>) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let expr = logql::parse(&q.query).map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
    let time = match &q.time {
        Some(t) => parse_time("time", t)?,
        None => now_ns(),
    };
    let (steps, value) = match expr {
        Expr::Log(query) => {
            let limit = q.limit.unwrap_or(100).clamp(1, 5000);
            let logs = Arc::clone(&app.monitor.logs);
            let start = time.saturating_sub(3_600_000_000_000);
            let found = tokio::task::spawn_blocking(move || logs.query(&query, start, time, limit, true))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            return Ok(Json(
                json!({"status": "success", "data": {"resultType": "streams", "result": streams_json(found)}}),
            ));
        }
        expr => evaluate(Arc::clone(&app.monitor.logs), expr, vec![time]).await?,
    };
    let result = match value {
        logql::Value::Scalar(v) => {
            return Ok(Json(
                json!({"status": "success", "data": {"resultType": "scalar", "result": sample_json(steps[0], v)}}),
            ))
        }
        logql::Value::Vector(series) => series
            .into_iter()
            .filter_map(|(labels, values)| {
                values
                    .first()
                    .copied()
                    .flatten()
                    .map(|v| json!({"metric": labels_json(&labels), "value": sample_json(time, v)}))
            })
            .collect::<Vec<_>>(),
    };
    Ok(Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}})))
}

/// Lines grouped by their labels, in Loki's `streams` shape.
fn streams_json(found: Vec<LogLine>) -> Vec<Value> {
    let mut streams: BTreeMap<Labels, Vec<Value>> = BTreeMap::new();
    for line in found {
        streams.entry(line.labels).or_default().push(json!([line.ts.to_string(), line.line]));
    }
    streams.into_iter().map(|(labels, values)| json!({"stream": labels_json(&labels), "values": values})).collect()
}

/// `GET /loki/api/v1/labels`.
pub async fn labels(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let names: BTreeSet<String> = app
        .monitor
        .logs
        .streams()
        .iter()
        .flat_map(|l| l.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>())
        .collect();
    Ok(Json(json!({"status": "success", "data": names})))
}

/// `GET /loki/api/v1/label/NAME/values`.
pub async fn label_values(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let values: BTreeSet<String> =
        app.monitor.logs.streams().iter().filter_map(|l| l.get(&name).map(str::to_string)).collect();
    Ok(Json(json!({"status": "success", "data": values})))
}

/// `GET /api/v1/logs/tail?query=...`: every new matching line as an SSE `line` event
/// (`{ts, labels, line}`), until the client goes.
pub async fn tail(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    caller.require_global(Role::Viewer)?;
    let query = parsed(q.get("query").map(String::as_str).unwrap_or(""))?;
    let mut lines = app.monitor.logs.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        loop {
            let line = match lines.recv().await {
                Ok(line) => line,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let _ = tx.send(Event::default().event("dropped").data(n.to_string())).await;
                    continue;
                }
                Err(_) => return,
            };
            let Some((labels, text)) = query.process(&line.labels, &line.line) else { continue };
            let data = json!({"ts": line.ts.to_string(), "labels": labels_json(&labels), "line": text});
            if tx.send(Event::default().event("line").data(data.to_string())).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
