//! The Prometheus-compatible surface of the monitor: scrape targets and reloading
//! the configuration, and PromQL queries (`/api/v1/query`, `/api/v1/query_range`).

use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::Form;
use axum::Json;
use mobius_monitor::promql;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// `GET /api/v1/targets` in Prometheus' shape.
pub async fn targets(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let active: Vec<Value> = app.monitor.as_ref().map_or_else(Vec::new, |monitor| {
        monitor
            .scraper
            .targets()
            .into_iter()
            .map(|(target, health)| {
                let labels: serde_json::Map<String, Value> =
                    target.labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                let url = format!("http://{}{}", target.address, target.metrics_path);
                json!({
                    "discoveredLabels": labels,
                    "labels": labels,
                    "scrapePool": target.labels.get("job").unwrap_or(""),
                    "scrapeUrl": url,
                    "globalUrl": url,
                    "lastError": health.last_error.clone().unwrap_or_default(),
                    "lastScrape": if health.last_scrape_ms > 0 { rfc3339(health.last_scrape_ms) } else { "0001-01-01T00:00:00Z".into() },
                    "lastScrapeDuration": health.last_duration.as_secs_f64(),
                    "health": if health.last_scrape_ms == 0 { "unknown" } else if health.up { "up" } else { "down" },
                    "scrapeInterval": humantime::format_duration(target.interval).to_string(),
                    "scrapeTimeout": humantime::format_duration(target.timeout).to_string(),
                })
            })
            .collect()
    });
    Ok(Json(json!({"status": "success", "data": {"activeTargets": active, "droppedTargets": []}})))
}

/// `POST /-/reload`: reads `--prometheus-config` again (admins only, audited).
pub async fn reload(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Admin)?;
    let Some(monitor) = app.monitor.as_ref() else {
        return Err(ApiError::new(StatusCode::CONFLICT, "the server was started without --prometheus-config"));
    };
    let targets = monitor.reload().map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))?;
    app.store
        .audit(&caller.actor(), "monitor.reload", "prometheus-config", json!({"targets": targets}), &caller.remote)
        .await?;
    Ok(Json(json!({"status": "success", "targets": targets})))
}

/// The parameters of `/api/v1/query` and `/api/v1/query_range`, from the query string
/// (GET) or a form body (POST), as Prometheus takes them.
#[derive(Debug, Default, serde::Deserialize)]
pub struct QueryParams {
    query: Option<String>,
    time: Option<String>,
    start: Option<String>,
    end: Option<String>,
    step: Option<String>,
}

/// Prometheus' error answer: 400 for a bad query, 422 for one that cannot be executed.
fn prom_error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, Json(json!({"status": "error", "errorType": kind, "error": message.to_string()}))).into_response()
}

/// A timestamp as Prometheus accepts it: RFC 3339 or (fractional) Unix seconds.
fn parse_time(name: &str, text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() {
            return Ok((seconds * 1000.0).round() as i64);
        }
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("invalid parameter \"{name}\": cannot parse \"{text}\" to a valid timestamp"))
}

fn parse_step(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok((seconds * 1000.0).round() as i64);
    }
    mobius_monitor::config::parse_duration(text)
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("invalid parameter \"step\": cannot parse \"{text}\" to a valid duration"))
}

/// A sample value as Prometheus writes it.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn metric_json(labels: &mobius_monitor::Labels) -> Value {
    Value::Object(labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

/// Series with their points, as Prometheus writes a matrix.
fn matrix_json(series: &[promql::Series]) -> Value {
    let result: Vec<Value> = series
        .iter()
        .map(|(labels, points)| {
            let values: Vec<Value> =
                points.iter().map(|(t, v)| json!([*t as f64 / 1000.0, format_value(*v)])).collect();
            json!({"metric": metric_json(labels), "values": values})
        })
        .collect();
    json!({"resultType": "matrix", "result": result})
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

async fn evaluate(app: Arc<App>, caller: Caller, params: QueryParams, range: bool) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Err(e) = caller.require_global(Role::Viewer) {
        return e.into_response();
    }
    let Some(db) = app.monitor.as_ref().map(|m| Arc::clone(&m.db)) else {
        return prom_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unavailable",
            "the server was started without --prometheus-config",
        );
    };
    let Some(query) = params.query.filter(|q| !q.trim().is_empty()) else {
        return prom_error(StatusCode::BAD_REQUEST, "bad_data", "invalid parameter \"query\": empty query");
    };
    let expr = match promql::parse(&query) {
        Ok(expr) => expr,
        Err(e) => return prom_error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    let times = if range {
        let parse_all = || -> Result<(i64, i64, i64), String> {
            let start = parse_time("start", params.start.as_deref().ok_or("invalid parameter \"start\": missing")?)?;
            let end = parse_time("end", params.end.as_deref().ok_or("invalid parameter \"end\": missing")?)?;
            let step = parse_step(params.step.as_deref().ok_or("invalid parameter \"step\": missing")?)?;
            if end < start {
                return Err("invalid parameter \"end\": end timestamp must not be before start time".into());
            }
            Ok((start, end, step))
        };
        parse_all()
    } else {
        params.time.as_deref().map_or(Ok(now_ms()), |t| parse_time("time", t)).map(|t| (t, t, 0))
    };
    let (start, end, step) = match times {
        Ok(times) => times,
        Err(e) => return prom_error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    let answer = tokio::task::spawn_blocking(move || -> Result<Value, promql::QueryError> {
        let seconds = |t: i64| t as f64 / 1000.0;
        if range {
            return Ok(matrix_json(&promql::range(&db, &expr, start, end, step)?));
        }
        Ok(match promql::instant(&db, &expr, start)? {
            promql::Value::Scalar(v) => json!({"resultType": "scalar", "result": [seconds(start), format_value(v)]}),
            promql::Value::String(s) => json!({"resultType": "string", "result": [seconds(start), s]}),
            promql::Value::Vector(samples) => {
                let result: Vec<Value> = samples
                    .iter()
                    .map(|(labels, v)| json!({"metric": metric_json(labels), "value": [seconds(start), format_value(*v)]}))
                    .collect();
                json!({"resultType": "vector", "result": result})
            }
            promql::Value::Matrix(series) => matrix_json(&series),
        })
    })
    .await;
    match answer {
        Ok(Ok(data)) => Json(json!({"status": "success", "data": data})).into_response(),
        Ok(Err(promql::QueryError::BadData(e))) => prom_error(StatusCode::BAD_REQUEST, "bad_data", e),
        Ok(Err(promql::QueryError::Execution(e))) => prom_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", e),
        Err(e) => prom_error(StatusCode::SERVICE_UNAVAILABLE, "internal", e),
    }
}

pub async fn query_get(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(p): Query<QueryParams>,
) -> axum::response::Response {
    evaluate(app, caller, p, false).await
}

pub async fn query_post(
    State(app): State<Arc<App>>,
    caller: Caller,
    Form(p): Form<QueryParams>,
) -> axum::response::Response {
    evaluate(app, caller, p, false).await
}

pub async fn query_range_get(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(p): Query<QueryParams>,
) -> axum::response::Response {
    evaluate(app, caller, p, true).await
}

pub async fn query_range_post(
    State(app): State<Arc<App>>,
    caller: Caller,
    Form(p): Form<QueryParams>,
) -> axum::response::Response {
    evaluate(app, caller, p, true).await
}

/// The `match[]` selectors of a query string or form body.
fn match_params(raw: &[u8]) -> Result<Vec<Vec<mobius_monitor::labels::Matcher>>, promql::QueryError> {
    let mut sets = Vec::new();
    for (key, value) in form_urlencoded::parse(raw) {
        if key == "match[]" {
            sets.extend(promql::selector_matchers(&value)?);
        }
    }
    Ok(sets)
}

/// `series`, `labels` and `label/NAME/values`: what the store holds, optionally narrowed by `match[]`.
async fn metadata(app: Arc<App>, caller: Caller, raw: Vec<u8>, what: Metadata) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Err(e) = caller.require_global(Role::Viewer) {
        return e.into_response();
    }
    let Some(db) = app.monitor.as_ref().map(|m| Arc::clone(&m.db)) else {
        return prom_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unavailable",
            "the server was started without --prometheus-config",
        );
    };
    let sets = match match_params(&raw) {
        Ok(sets) => sets,
        Err(e) => return prom_error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    if sets.is_empty() && matches!(what, Metadata::Series) {
        return prom_error(StatusCode::BAD_REQUEST, "bad_data", "no match[] parameter provided");
    }
    let data = tokio::task::spawn_blocking(move || -> Value {
        let series = (!sets.is_empty()).then(|| db.series_labels(&sets));
        match what {
            Metadata::Series => json!(series.unwrap_or_default().iter().map(metric_json).collect::<Vec<_>>()),
            Metadata::Names => match series {
                Some(series) => {
                    let names: std::collections::BTreeSet<&str> =
                        series.iter().flat_map(|l| l.iter().map(|(k, _)| k)).collect();
                    json!(names)
                }
                None => json!(db.label_names()),
            },
            Metadata::Values(name) => match series {
                Some(series) => {
                    let values: std::collections::BTreeSet<&str> = series.iter().filter_map(|l| l.get(&name)).collect();
                    json!(values)
                }
                None => json!(db.label_values(&name)),
            },
        }
    })
    .await;
    match data {
        Ok(data) => Json(json!({"status": "success", "data": data})).into_response(),
        Err(e) => prom_error(StatusCode::SERVICE_UNAVAILABLE, "internal", e),
    }
}

enum Metadata {
    Series,
    Names,
    Values(String),
}

fn raw_query(query: Option<String>) -> Vec<u8> {
    query.unwrap_or_default().into_bytes()
}

pub async fn series_get(
    State(app): State<Arc<App>>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> axum::response::Response {
    metadata(app, caller, raw_query(q), Metadata::Series).await
}

pub async fn series_post(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> axum::response::Response {
    metadata(app, caller, body.to_vec(), Metadata::Series).await
}

pub async fn labels_get(
    State(app): State<Arc<App>>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> axum::response::Response {
    metadata(app, caller, raw_query(q), Metadata::Names).await
}

pub async fn labels_post(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> axum::response::Response {
    metadata(app, caller, body.to_vec(), Metadata::Names).await
}

pub async fn label_values(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> axum::response::Response {
    metadata(app, caller, raw_query(q), Metadata::Values(name)).await
}
