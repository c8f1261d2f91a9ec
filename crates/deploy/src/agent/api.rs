//! The agent's control API on loopback, for the server only (bearer token from `agent.json`).

use super::recreate::{self, RecreatePlan};
use super::{supervise, Agent};
use crate::runtime::InstanceSpec;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use mobius_router::ListenerConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn routes(agent: Arc<Agent>, token: String) -> Router {
    let token = Arc::new(format!("Bearer {token}"));
    Router::new()
        .route("/v1/instances", get(list_instances))
        .route("/v1/instances/{id}", put(put_instance).delete(delete_instance))
        .route("/v1/backends/{id}", put(put_backend).delete(delete_backend))
        .route("/v1/listeners", get(list_listeners))
        .route("/v1/listeners/{name}", put(put_listener).delete(delete_listener))
        .route("/v1/listeners/{name}/recreate", get(get_recreate).post(post_recreate))
        .route("/v1/samples", post(samples))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let token = Arc::clone(&token);
            async move {
                let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
                    next.run(req).await
                } else {
                    failure(StatusCode::UNAUTHORIZED, "missing or wrong agent token")
                }
            }
        }))
        .with_state(agent)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn list_instances(State(agent): State<Arc<Agent>>) -> Response {
    Json(agent.instances()).into_response()
}

async fn put_instance(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    Json(spec): Json<InstanceSpec>,
) -> Response {
    if spec.id != id {
        return failure(StatusCode::BAD_REQUEST, "the path and the body name different instances");
    }
    if let Some(existing) = supervise::spec_of(&agent, &id) {
        if existing != spec {
            return failure(StatusCode::CONFLICT, format!("instance `{id}` runs with another spec"));
        }
    }
    match supervise::start_instance(&agent, spec) {
        Ok(status) => Json(status).into_response(),
        Err(e) => failure(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

#[derive(Deserialize)]
struct DrainQuery {
    #[serde(default)]
    drain_ms: u64,
}

async fn delete_instance(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    Query(q): Query<DrainQuery>,
) -> Response {
    match supervise::stop_instance(&agent, &id, Duration::from_millis(q.drain_ms)).await {
        Some(status) => Json(status).into_response(),
        None => failure(StatusCode::NOT_FOUND, format!("no instance `{id}`")),
    }
}

/// An upstream the agent routes to but does not run (an external service).
#[derive(Debug, Deserialize)]
struct ExternalBackend {
    addr: SocketAddr,
}

async fn put_backend(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    Json(backend): Json<ExternalBackend>,
) -> Response {
    if supervise::spec_of(&agent, &id).is_some() {
        return failure(StatusCode::CONFLICT, format!("`{id}` is a supervised instance"));
    }
    agent.router.upsert_backend(&id, backend.addr);
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_backend(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Response {
    if supervise::spec_of(&agent, &id).is_some() {
        return failure(StatusCode::CONFLICT, format!("`{id}` is a supervised instance; stop it instead"));
    }
    agent.router.remove_backend(&id);
    StatusCode::NO_CONTENT.into_response()
}

/// A listener as the agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerState {
    pub config: ListenerConfig,
    pub addr: SocketAddr,
}

async fn list_listeners(State(agent): State<Arc<Agent>>) -> Response {
    let listeners: BTreeMap<String, ListenerState> = agent
        .router
        .listeners()
        .into_iter()
        .map(|(name, (config, addr))| (name, ListenerState { config, addr }))
        .collect();
    Json(listeners).into_response()
}

async fn put_listener(
    State(agent): State<Arc<Agent>>,
    Path(name): Path<String>,
    Json(config): Json<ListenerConfig>,
) -> Response {
    match agent.router.configure(&name, config.clone()).await {
        Ok(addr) => Json(ListenerState { config, addr }).into_response(),
        Err(e) => failure(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

async fn delete_listener(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Response {
    if agent.router.remove_listener(&name) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        failure(StatusCode::NOT_FOUND, format!("no listener `{name}`"))
    }
}

/// Accepts a recreate plan, carried out by the agent whatever happens to the server.
async fn post_recreate(
    State(agent): State<Arc<Agent>>,
    Path(name): Path<String>,
    Json(plan): Json<RecreatePlan>,
) -> Response {
    match recreate::begin(&agent, &name, plan) {
        Ok(status) => (StatusCode::ACCEPTED, Json(status)).into_response(),
        Err(e) => failure(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn get_recreate(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Response {
    match recreate::status(&agent, &name) {
        Some(status) => Json(status).into_response(),
        None => failure(StatusCode::NOT_FOUND, format!("no recreate of listener `{name}`")),
    }
}

/// Which samples the caller has already seen, per version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SamplesRequest {
    pub listener: String,
    #[serde(default)]
    pub since: BTreeMap<String, u64>,
}

async fn samples(State(agent): State<Arc<Agent>>, Json(request): Json<SamplesRequest>) -> Response {
    Json(agent.router.samples(&request.listener, &request.since)).into_response()
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let mut text = agent.router.render_metrics();
    text.push_str("# HELP mobius_instance_restarts_total Unexpected exits of a service instance.\n");
    text.push_str("# TYPE mobius_instance_restarts_total counter\n");
    for i in agent.instances() {
        text.push_str(&format!(
            "mobius_instance_restarts_total{{service=\"{}\",version=\"{}\",instance=\"{}\"}} {}\n",
            i.service, i.version, i.id, i.restarts
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
