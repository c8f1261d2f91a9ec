//! Releases, deployments, rollouts and their commands, and what runs where.

use super::{dto, JsonBody};
use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use mobius_api as api;
use mobius_core::EventKind;
use mobius_deploy::rollout::Command;
use mobius_deploy::stage as deploy;
use mobius_store::NewEvent;
use mobius_store::{Project, Rollout, RolloutFilter};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The project named, or the only project with a release of `service`.
async fn resolve_project(
    app: &App,
    caller: &Caller,
    project: Option<&str>,
    service: Option<&str>,
    role: Role,
) -> ApiResult<Project> {
    if let Some(name) = project {
        return super::projects::find(app, caller, name, role).await;
    }
    let Some(service) = service else {
        return Err(ApiError::bad_request("name a project or a service"));
    };
    let mut ids: Vec<(i64, String)> = app
        .store
        .releases(None, Some(service), 1000)
        .await?
        .into_iter()
        .filter(|r| caller.sees(r.project_id))
        .map(|r| (r.project_id, r.project))
        .collect();
    ids.sort();
    ids.dedup();
    match ids.as_slice() {
        [] => Err(ApiError::not_found(format!("no project has a release of service `{service}`"))),
        [(_, name)] => super::projects::find(app, caller, name, role).await,
        many => Err(ApiError::unprocessable(format!(
            "service `{service}` exists in projects {}: name one with `project`",
            many.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The project a listing is limited to (the named one, the service's only one, or the
/// token's) and its checked `limit`.
async fn list_scope(
    app: &App,
    caller: &Caller,
    project: &Option<String>,
    service: &Option<String>,
    limit: Option<i64>,
) -> ApiResult<(Option<i64>, i64)> {
    let project_id = match (project, service) {
        (None, None) => caller.project_id,
        (p, s) => Some(resolve_project(app, caller, p.as_deref(), s.as_deref(), Role::Viewer).await?.id),
    };
    let limit = limit.unwrap_or(30);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: must be from 1 to 1000"));
    }
    Ok((project_id, limit))
}

#[derive(Debug, Deserialize)]
pub struct ReleaseQuery {
    project: Option<String>,
    service: Option<String>,
    limit: Option<i64>,
}

pub async fn list_releases(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<ReleaseQuery>,
) -> ApiResult<Json<Vec<api::Release>>> {
    let (project_id, limit) = list_scope(&app, &caller, &q.project, &q.service, q.limit).await?;
    let releases = app.store.releases(project_id, q.service.as_deref(), limit).await?;
    Ok(Json(releases.iter().filter(|r| caller.sees(r.project_id)).map(dto::release).collect()))
}

pub async fn show_release(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<api::ReleaseDetail>> {
    let release = app
        .store
        .release(id)
        .await?
        .filter(|r| caller.sees(r.project_id))
        .ok_or_else(|| ApiError::not_found(format!("no release {id}")))?;
    Ok(Json(api::ReleaseDetail {
        release: dto::release(&release),
        manifest: release.manifest.clone(),
        provenance: release.provenance.clone(),
    }))
}

/// The audit entry of someone asking for `kind` (a deploy, a rollback, a command) of a
/// rollout, naming its project, environment and service.
pub(crate) fn requested(kind: EventKind, actor: &str, remote: &str, rollout: &Rollout) -> NewEvent {
    let target = format!("{}/{}/{}", rollout.project, rollout.environment, rollout.service);
    NewEvent::audit(kind, actor, &target, remote)
        .project(&rollout.project)
        .rollout(rollout.id)
        .environment(&rollout.environment)
}

pub async fn create_deployment(
    State(app): State<Arc<App>>,
    caller: Caller,
    JsonBody(body): JsonBody<api::NewDeployment>,
) -> ApiResult<(StatusCode, Json<api::Rollout>)> {
    let project = resolve_project(&app, &caller, body.project.as_deref(), Some(&body.service), Role::Developer).await?;
    let wanted = body.release.as_deref().unwrap_or("latest");
    let release = deploy::find_release(&*app, &project, &body.service, wanted).await?;
    let rollout = deploy::deploy(
        &app.deployer(),
        &project,
        &release,
        &body.environment,
        &caller.actor(),
        None,
        deploy::Intent::Forward,
    )
    .await?;
    let event = requested(EventKind::Deploy, &caller.actor(), &caller.remote, &rollout);
    app.store.append(event.data(json!({ "release": release.version, "rollout": rollout.id }))).await?;
    Ok((StatusCode::CREATED, Json(dto::rollout(&rollout))))
}

#[derive(Debug, Deserialize)]
pub struct RolloutQuery {
    project: Option<String>,
    service: Option<String>,
    environment: Option<String>,
    limit: Option<i64>,
}

pub async fn list_rollouts(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<RolloutQuery>,
) -> ApiResult<Json<Vec<api::Rollout>>> {
    let (project_id, limit) = list_scope(&app, &caller, &q.project, &q.service, q.limit).await?;
    let rollouts = app
        .store
        .rollouts(&RolloutFilter {
            project_id,
            service: q.service.clone(),
            environment: q.environment.clone(),
            active: false,
            limit,
        })
        .await?;
    Ok(Json(rollouts.iter().filter(|r| caller.sees(r.project_id)).map(dto::rollout).collect()))
}

async fn find_rollout(app: &App, caller: &Caller, id: i64) -> ApiResult<Rollout> {
    app.store
        .rollout(id)
        .await?
        .filter(|r| caller.sees(r.project_id))
        .ok_or_else(|| ApiError::not_found(format!("no rollout {id}")))
}

pub async fn show_rollout(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<api::RolloutDetail>> {
    let rollout = find_rollout(&app, &caller, id).await?;
    let events = app.store.deploy_events(Some(id), 1000).await?;
    Ok(Json(api::RolloutDetail {
        rollout: dto::rollout(&rollout),
        events: events
            .iter()
            .rev()
            .map(|e| api::RolloutEvent {
                kind: e.kind,
                actor: e.actor.clone(),
                message: e.message.clone(),
                at: mobius_api::time(Some(e.at)),
            })
            .collect(),
    }))
}

async fn rollout_command(app: Arc<App>, caller: Caller, id: i64, which: &str) -> ApiResult<Json<api::Rollout>> {
    let rollout = find_rollout(&app, &caller, id).await?;
    let (role, command) = match which {
        "promote" => (Role::Developer, Command::Promote),
        "abort" => (Role::Developer, Command::Abort(caller.name.clone())),
        _ => (Role::Maintainer, Command::Approve),
    };
    caller.require(role, rollout.project_id, &rollout.project)?;
    let kind = command.requested();
    deploy::command(&app.deployer(), &rollout, command, &caller.actor()).await?;
    let event = requested(kind, &caller.actor(), &caller.remote, &rollout);
    app.store.append(event.data(json!({ "rollout": rollout.id }))).await?;
    Ok(Json(dto::rollout(&rollout)))
}

pub async fn promote(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<api::Rollout>> {
    rollout_command(app, caller, id, "promote").await
}

pub async fn abort(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<api::Rollout>> {
    rollout_command(app, caller, id, "abort").await
}

pub async fn approve(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<api::Rollout>> {
    rollout_command(app, caller, id, "approve").await
}

pub async fn rollback(
    State(app): State<Arc<App>>,
    caller: Caller,
    JsonBody(body): JsonBody<api::NewRollback>,
) -> ApiResult<(StatusCode, Json<api::Rollout>)> {
    let project = resolve_project(&app, &caller, body.project.as_deref(), Some(&body.service), Role::Developer).await?;
    let rollout = deploy::rollback(
        &app.deployer(),
        &project,
        &body.service,
        &body.environment,
        body.to.as_deref(),
        &caller.actor(),
    )
    .await?;
    let event = requested(EventKind::Rollback, &caller.actor(), &caller.remote, &rollout);
    app.store.append(event.data(json!({ "rollout": rollout.id, "to": body.to }))).await?;
    Ok((StatusCode::CREATED, Json(dto::rollout(&rollout))))
}

#[derive(Debug, Deserialize)]
pub struct EnvironmentsQuery {
    project: Option<String>,
}

/// What runs where: per project, environment and service, the version serving and any
/// rollout in progress.
pub async fn environments(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<EnvironmentsQuery>,
) -> ApiResult<Json<Vec<api::Place>>> {
    let project_id = match &q.project {
        Some(name) => Some(super::projects::find(&app, &caller, name, Role::Viewer).await?.id),
        None => caller.project_id,
    };
    let rollouts = app.store.rollouts(&RolloutFilter { project_id, limit: 1000, ..RolloutFilter::default() }).await?;
    // (project, environment, service) → (last succeeded, in progress)
    type Place<'a> = (Option<&'a Rollout>, Option<&'a Rollout>);
    let mut places: BTreeMap<(String, String, String), Place> = BTreeMap::new();
    for r in rollouts.iter().filter(|r| caller.sees(r.project_id)) {
        let entry = places.entry((r.project.clone(), r.environment.clone(), r.service.clone())).or_default();
        if r.finished_at.is_none() && entry.1.is_none() {
            entry.1 = Some(r);
        }
        if r.phase == mobius_core::Phase::Succeeded && entry.0.is_none() {
            entry.0 = Some(r);
        }
    }
    let mut out = Vec::with_capacity(places.len());
    for ((project, environment, service), (current, active)) in places {
        let newest = active.or(current);
        let address = match newest {
            Some(r) => deploy::addresses::address_of(&app.deployer(), r).await.map(|a| a.to_string()),
            None => None,
        };
        out.push(api::Place {
            project,
            environment,
            service,
            address,
            version: current.map(|r| r.version.clone()),
            deployed_at: mobius_api::time(current.and_then(|r| r.finished_at)),
            rollout: active.map(dto::rollout),
        });
    }
    Ok(Json(out))
}
