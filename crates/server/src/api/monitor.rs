//! The Prometheus-compatible surface of the monitor: scrape targets and reloading
//! the configuration (queries come with the PromQL engine).

use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
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
