//! The Prometheus-compatible surface of the monitor: scrape targets and reloading
//! the configuration, and PromQL queries (`/api/v1/query`, `/api/v1/query_range`).

use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mobius_core::EventKind;
use mobius_promql as promql;
use mobius_store::NewEvent;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

pub(super) fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// `GET /api/v1/targets` in Prometheus' shape.
pub async fn targets(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let (active, dropped) = target_lists(&app);
    Ok(Json(json!({"status": "success", "data": {"activeTargets": active, "droppedTargets": dropped}})))
}

/// The scrape targets in Prometheus' shape: the active ones with their health and last
/// error, and the ones relabelling dropped.
pub(crate) fn target_lists(app: &App) -> (Vec<Value>, Vec<Value>) {
    let active: Vec<Value> = {
        app.monitor
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
    };
    let dropped: Vec<Value> = app
        .monitor
        .dropped_targets()
        .into_iter()
        .map(|labels| {
            let labels: serde_json::Map<String, Value> =
                labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            json!({"discoveredLabels": labels})
        })
        .collect();
    (active, dropped)
}

/// `POST /-/reload`: reads `--prometheus-config` again (admins only, audited).
pub async fn reload(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Admin)?;
    let targets =
        app.monitor.reload().map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))?;
    app.store
        .append(
            NewEvent::audit(EventKind::MonitorReload, &caller.actor(), "prometheus-config", &caller.remote)
                .data(json!({"targets": targets})),
        )
        .await?;
    Ok(Json(json!({"status": "success", "targets": targets})))
}

/// The parameters of the query endpoints, from the query string (GET) or a form body
/// (POST), as Prometheus takes them; `match[]` may repeat.
pub struct PromParams(Vec<(String, String)>);

impl PromParams {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl axum::extract::FromRequest<Arc<App>> for PromParams {
    type Rejection = Refused;

    async fn from_request(request: axum::extract::Request, state: &Arc<App>) -> Result<Self, Refused> {
        let raw = if request.method() == axum::http::Method::GET {
            request.uri().query().unwrap_or_default().as_bytes().to_vec()
        } else {
            axum::body::Bytes::from_request(request, state)
                .await
                .map_err(|e| prom_error(StatusCode::BAD_REQUEST, "bad_data", e))?
                .to_vec()
        };
        Ok(PromParams(form_urlencoded::parse(&raw).into_owned().collect()))
    }
}

/// A refusal: Mobius' own error shape for authentication, Prometheus' for the rest.
pub struct Refused(Box<axum::response::Response>);

impl axum::response::IntoResponse for Refused {
    fn into_response(self) -> axum::response::Response {
        *self.0
    }
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        use axum::response::IntoResponse;
        Refused(Box::new(e.into_response()))
    }
}

/// Prometheus' error answer: 400 for a bad query, 422 for one that cannot be executed.
pub(super) fn prom_error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Refused {
    use axum::response::IntoResponse;
    let body = json!({"status": "error", "errorType": kind, "error": message.to_string()});
    Refused(Box::new((status, Json(body)).into_response()))
}

fn query_error(e: promql::QueryError) -> Refused {
    match e {
        promql::QueryError::BadData(e) => prom_error(StatusCode::BAD_REQUEST, "bad_data", e),
        promql::QueryError::Execution(e) => prom_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", e),
        e @ promql::QueryError::TooManySamples => prom_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", e),
        e @ promql::QueryError::Timeout => prom_error(StatusCode::SERVICE_UNAVAILABLE, "timeout", e),
    }
}

/// The store, for a caller allowed to read it (any role on the whole server).
fn readable_store(app: &App, caller: &Caller) -> Result<Arc<mobius_tsdb::Db>, Refused> {
    caller.require_global(Role::Viewer)?;
    Ok(Arc::clone(&app.monitor.db))
}

/// Runs store work off the async threads and wraps it in Prometheus' success shape.
async fn answer(
    work: impl FnOnce() -> Result<Value, promql::QueryError> + Send + 'static,
) -> Result<Json<Value>, Refused> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(data)) => Ok(Json(json!({"status": "success", "data": data}))),
        Ok(Err(e)) => Err(query_error(e)),
        Err(e) => Err(prom_error(StatusCode::SERVICE_UNAVAILABLE, "internal", e)),
    }
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
    mobius_config::parse_duration(text)
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("invalid parameter \"step\": cannot parse \"{text}\" to a valid duration"))
}

/// A sample value as Prometheus writes it.
pub(super) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

pub(super) fn metric_json(labels: &mobius_series::Labels) -> Value {
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

use mobius_series::now_ms;

fn parsed_query(params: &PromParams) -> Result<promql::Expr, Refused> {
    let query = params
        .get("query")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| prom_error(StatusCode::BAD_REQUEST, "bad_data", "invalid parameter \"query\": empty query"))?;
    promql::parse(query).map_err(query_error)
}

/// `/api/v1/query`: an expression at one instant (`time`, default now).
pub async fn query(State(app): State<Arc<App>>, caller: Caller, params: PromParams) -> Result<Json<Value>, Refused> {
    let db = readable_store(&app, &caller)?;
    let expr = parsed_query(&params)?;
    let at = match params.get("time") {
        Some(t) => parse_time("time", t).map_err(|e| prom_error(StatusCode::BAD_REQUEST, "bad_data", e))?,
        None => now_ms(),
    };
    let limits = app.config.query_limits;
    answer(move || {
        let seconds = at as f64 / 1000.0;
        Ok(match promql::instant_within(&db, &expr, at, limits)? {
            promql::Value::Scalar(v) => json!({"resultType": "scalar", "result": [seconds, format_value(v)]}),
            promql::Value::String(s) => json!({"resultType": "string", "result": [seconds, s]}),
            promql::Value::Vector(samples) => {
                let result: Vec<Value> = samples
                    .iter()
                    .map(|(labels, v)| json!({"metric": metric_json(labels), "value": [seconds, format_value(*v)]}))
                    .collect();
                json!({"resultType": "vector", "result": result})
            }
            promql::Value::Matrix(series) => matrix_json(&series),
        })
    })
    .await
}

/// `/api/v1/query_range`: an expression at every `step` from `start` to `end`.
pub async fn query_range(
    State(app): State<Arc<App>>,
    caller: Caller,
    params: PromParams,
) -> Result<Json<Value>, Refused> {
    let db = readable_store(&app, &caller)?;
    let expr = parsed_query(&params)?;
    let required = |name: &str| params.get(name).ok_or_else(|| format!("invalid parameter \"{name}\": missing"));
    let times = (|| -> Result<(i64, i64, i64), String> {
        let start = parse_time("start", required("start")?)?;
        let end = parse_time("end", required("end")?)?;
        let step = parse_step(required("step")?)?;
        if end < start {
            return Err("invalid parameter \"end\": end timestamp must not be before start time".into());
        }
        Ok((start, end, step))
    })();
    let (start, end, step) = times.map_err(|e| prom_error(StatusCode::BAD_REQUEST, "bad_data", e))?;
    let limits = app.config.query_limits;
    answer(move || Ok(matrix_json(&promql::range_within(&db, &expr, start, end, step, limits)?))).await
}

/// The matcher sets of every `match[]`.
fn match_params(params: &PromParams) -> Result<Vec<Vec<mobius_series::labels::Matcher>>, Refused> {
    let mut sets = Vec::new();
    for selector in params.all("match[]") {
        sets.extend(promql::selector_matchers(selector).map_err(query_error)?);
    }
    Ok(sets)
}

/// `/api/v1/series`: the label sets `match[]` (required) selects.
pub async fn series(State(app): State<Arc<App>>, caller: Caller, params: PromParams) -> Result<Json<Value>, Refused> {
    let db = readable_store(&app, &caller)?;
    let sets = match_params(&params)?;
    if sets.is_empty() {
        return Err(prom_error(StatusCode::BAD_REQUEST, "bad_data", "no match[] parameter provided"));
    }
    answer(move || Ok(json!(db.series_labels(&sets).iter().map(metric_json).collect::<Vec<_>>()))).await
}

/// `/api/v1/labels`: label names, of every series or of those `match[]` selects.
pub async fn labels(State(app): State<Arc<App>>, caller: Caller, params: PromParams) -> Result<Json<Value>, Refused> {
    let db = readable_store(&app, &caller)?;
    let sets = match_params(&params)?;
    answer(move || {
        if sets.is_empty() {
            return Ok(json!(db.label_names()));
        }
        let series = db.series_labels(&sets);
        let names: std::collections::BTreeSet<&str> = series.iter().flat_map(|l| l.iter().map(|(k, _)| k)).collect();
        Ok(json!(names))
    })
    .await
}

/// `/api/v1/label/NAME/values`: a label's values, of every series or of those `match[]` selects.
pub async fn label_values(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    params: PromParams,
) -> Result<Json<Value>, Refused> {
    let db = readable_store(&app, &caller)?;
    let sets = match_params(&params)?;
    answer(move || {
        if sets.is_empty() {
            return Ok(json!(db.label_values(&name)));
        }
        let series = db.series_labels(&sets);
        let values: std::collections::BTreeSet<&str> = series.iter().filter_map(|l| l.get(&name)).collect();
        Ok(json!(values))
    })
    .await
}

/// `POST /api/v1/write`: Prometheus remote write 1.0 (snappy-compressed protobuf),
/// for developers and above. Samples the store refuses (older than the series' last)
/// make the answer a 400 naming how many, after the others are stored, as Prometheus
/// answers; a body that does not decode stores nothing.
pub async fn remote_write(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    caller.require_global(Role::Developer)?;
    let series = mobius_monitor::remote::decode_write_request(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let db = Arc::clone(&app.monitor.db);
    let stats = tokio::task::spawn_blocking(move || {
        let mut refused = (0usize, 0usize);
        for (labels, samples) in &series {
            let stats = db.append(samples.iter().map(|(t, v)| (labels, *t, *v)))?;
            refused.0 += stats.out_of_order + stats.out_of_bounds;
            refused.1 += stats.duplicate;
        }
        Ok::<_, mobius_tsdb::db::DbError>(refused)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    match stats {
        (0, 0) => Ok(StatusCode::NO_CONTENT),
        (out_of_order, duplicate) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{out_of_order} samples out of order (or older than the stored blocks) and {duplicate} duplicate samples were not stored"),
        )),
    }
}
