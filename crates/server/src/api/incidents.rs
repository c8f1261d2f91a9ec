//! Incidents on the API: the list, one incident with its timeline, acknowledging
//! (which stops escalation) and resolving.

use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::Json;
use mobius_api as api;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/incidents?status=open|acknowledged|resolved|unresolved&limit=N`, newest first.
pub async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<api::IncidentList>> {
    caller.require_global(Role::Viewer)?;
    let filter = match q.status.as_deref() {
        None => mobius_core::IncidentFilter::All,
        Some(s) => mobius_core::IncidentFilter::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("status: `{s}` is not one of open, acknowledged, resolved, unresolved"))
        })?,
    };
    let incidents = app.store.incidents(filter, q.limit.unwrap_or(100)).await?;
    Ok(Json(api::IncidentList { incidents: incidents.iter().map(super::dto::incident).collect() }))
}

/// `GET /api/v1/incidents/ID`: the incident and its timeline.
pub async fn show(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<api::IncidentDetail>> {
    caller.require_global(Role::Viewer)?;
    let incident = app.store.incident(id).await?.ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    let events = app.store.incident_events(id).await?;
    let events = events.iter().map(super::dto::incident_event).collect();
    Ok(Json(api::IncidentDetail { incident: super::dto::incident(&incident), events }))
}

/// `POST /api/v1/incidents/ID/acknowledge` (developers and above).
pub async fn acknowledge(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<api::IncidentAnswer>> {
    caller.require_global(Role::Developer)?;
    let incident = mobius_incidents::acknowledge(&app.store, id, &caller.actor(), &caller.remote).await?;
    Ok(Json(api::IncidentAnswer { incident: super::dto::incident(&incident) }))
}

/// `POST /api/v1/incidents/ID/resolve` (developers and above).
pub async fn resolve(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<api::IncidentAnswer>> {
    caller.require_global(Role::Developer)?;
    let incident = mobius_incidents::resolve(&app.store, id, &caller.actor(), &caller.remote).await?;
    Ok(Json(api::IncidentAnswer { incident: super::dto::incident(&incident) }))
}
