//! Tokens (create, list, revoke) and the audit log.

use super::{dto, JsonBody};
use crate::app::App;
use crate::auth::{hash_token, new_token, Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use mobius_api as api;
use mobius_core::EventKind;
use mobius_store::NewEvent;
use mobius_store::Token;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn token_of(t: &Token, project: Option<&str>) -> api::Token {
    let role = match Role::parse(&t.role) {
        Some(Role::Admin) => api::Role::Admin,
        Some(Role::Maintainer) => api::Role::Maintainer,
        Some(Role::Developer) => api::Role::Developer,
        // The store holds only the four names; anything else reaches nothing.
        Some(Role::Viewer) | None => api::Role::Viewer,
    };
    api::Token {
        id: t.id,
        name: t.name.clone(),
        role,
        project: project.map(str::to_string),
        created_by: t.created_by.clone(),
        created_at: api::time(Some(t.created_at)),
        expires_at: api::time(t.expires_at),
        revoked_at: api::time(t.revoked_at),
    }
}

/// The longest `expires_in` a token may have (ten years).
pub const MAX_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3650 * 86_400);

pub async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    JsonBody(body): JsonBody<api::NewToken>,
) -> ApiResult<impl IntoResponse> {
    caller.require_global(Role::Admin)?;
    let Some(role) = Role::parse(&body.role) else {
        return Err(ApiError::unprocessable(format!(
            "role: '{}' is not viewer, developer, maintainer or admin",
            body.role
        )));
    };
    let project = match &body.project {
        Some(name) => Some(
            app.store
                .project_by_name(name)
                .await?
                .ok_or_else(|| ApiError::unprocessable(format!("project: no project named '{name}'")))?,
        ),
        None => None,
    };
    let expires_at = match &body.expires_in {
        Some(text) => {
            let d = humantime::parse_duration(text).map_err(|e| {
                ApiError::unprocessable(format!("expires_in: '{text}' is not a duration such as 30d: {e}"))
            })?;
            if d > MAX_TOKEN_LIFETIME {
                return Err(ApiError::bad_request(format!(
                    "expires_in: '{text}' is longer than the maximum of 3650d (ten years); \
                     leave expires_in out for a token that does not expire"
                )));
            }
            // Within ten years of now, so the sum is far inside i64 and printable.
            Some(mobius_store::now_ms().saturating_add(d.as_millis() as i64))
        }
        None => None,
    };
    let secret = new_token().map_err(ApiError::internal)?;
    let name = body.name.clone().unwrap_or_else(|| format!("{}-token", role.as_str()));
    let created = NewEvent::audit(EventKind::TokenCreate, &caller.actor(), "token", &caller.remote).data(
        json!({"name": name, "role": role.as_str(), "project": body.project, "expires_at": dto::time(expires_at)}),
    );
    let created = match &body.project {
        Some(project) => created.project(project),
        None => created,
    };
    let token = app
        .store
        .create_token(
            &name,
            &hash_token(&secret),
            role.as_str(),
            project.as_ref().map(|p| p.id),
            &caller.actor(),
            expires_at,
            created,
        )
        .await?;
    // The only time the token is shown.
    let answer = api::TokenCreated { token: token_of(&token, body.project.as_deref()), secret };
    Ok((StatusCode::CREATED, Json(answer)))
}

pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Vec<api::Token>>> {
    caller.require_global(Role::Admin)?;
    let projects = app.store.projects().await?;
    let tokens = app.store.tokens().await?;
    Ok(Json(
        tokens
            .iter()
            .map(|t| {
                let project = t.project_id.and_then(|id| projects.iter().find(|p| p.id == id)).map(|p| p.name.as_str());
                token_of(t, project)
            })
            .collect(),
    ))
}

pub async fn revoke(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    caller.require_global(Role::Admin)?;
    let revoked = NewEvent::audit(EventKind::TokenRevoke, &caller.actor(), &format!("token/{id}"), &caller.remote);
    if !app.store.revoke_token(id, revoked).await? {
        return Err(ApiError::not_found(format!("no live token {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

pub async fn audit(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<api::AuditEntry>>> {
    caller.require_global(Role::Admin)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: between 1 and 1000"));
    }
    let entries = app.store.audit_log(limit, q.before).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| api::AuditEntry {
                id: e.id,
                at: api::time(Some(e.at)),
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
                remote: e.remote,
            })
            .collect(),
    ))
}
