//! Incidents on the API: the list, one incident with its timeline, acknowledging
//! (which stops escalation) and resolving.

use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/incidents?status=open|acknowledged|resolved|unresolved&limit=N`, newest first.
pub async fn list(State(app): State<Arc<App>>, caller: Caller, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let filter = match q.status.as_deref() {
        None => mobius_core::IncidentFilter::All,
        Some(s) => mobius_core::IncidentFilter::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("status: `{s}` is not one of open, acknowledged, resolved, unresolved"))
        })?,
    };
    let incidents = app.store.incidents(filter, q.limit.unwrap_or(100)).await?;
    Ok(Json(json!({ "incidents": incidents.iter().map(super::dto::incident).collect::<Vec<_>>() })))
}

/// `GET /api/v1/incidents/ID`: the incident and its timeline.
pub async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let incident = app.store.incident(id).await?.ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    let events = app.store.incident_events(id).await?;
    let events: Vec<Value> = events.iter().map(super::dto::incident_event).collect();
    Ok(Json(json!({ "incident": super::dto::incident(&incident), "events": events })))
}

/// `POST /api/v1/incidents/ID/acknowledge` (developers and above).
pub async fn acknowledge(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Developer)?;
    let incident = mobius_incidents::acknowledge(&app.store, id, &caller.actor(), &caller.remote).await?;
    Ok(Json(json!({ "incident": super::dto::incident(&incident) })))
}

/// `POST /api/v1/incidents/ID/resolve` (developers and above).
pub async fn resolve(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Developer)?;
    let incident = mobius_incidents::resolve(&app.store, id, &caller.actor(), &caller.remote).await?;
    Ok(Json(json!({ "incident": super::dto::incident(&incident) })))
}
