//! Health, metrics, the OpenAPI document and the answer for unknown paths.

use super::RESERVED;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::extract::{OriginalUri, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;

pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

pub async fn metrics(State(app): State<Arc<App>>) -> ApiResult<impl IntoResponse> {
    let counts = app.store.run_counts().await?;
    let queued = counts.by_status.iter().filter(|(s, _, _)| *s == mobius_core::Status::Queued).map(|(_, _, n)| n).sum();
    let live = app.ci.live.lock().map(|l| l.len()).unwrap_or(0);
    let mut body = app.metrics.render(&counts.by_status, queued, live, app.ci.job_slots.available_permits());
    // The router's per-version series: here, never on an environment's public listener.
    if let Some(agent) = mobius_deploy::stage::existing_agent(&*app).await {
        match agent.metrics().await {
            Ok(text) => body.push_str(&text),
            Err(e) => tracing::warn!(error = %e, "cannot read the host agent's metrics"),
        }
    }
    app.monitor.render(&mut body);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body))
}

/// Any valid token may read the API's description, generated once from the API's types.
pub async fn openapi(_caller: Caller) -> ApiResult<impl IntoResponse> {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| {
        serde_json::to_string(&mobius_api::openapi::document()).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], text.as_str()))
}

pub async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        let first = rest.split('/').next().unwrap_or_default();
        if RESERVED.contains(&first) {
            return ApiError::not_found(format!(
                "/api/v1/{first} is reserved for the Prometheus-compatible API of the monitor, not served yet"
            ));
        }
    }
    ApiError::not_found(format!("no such path: {path}"))
}
