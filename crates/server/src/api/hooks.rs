//! `POST /api/v1/hooks/github/{project}`: GitHub and Gitea push and pull_request webhooks,
//! verified with `X-Hub-Signature-256` (HMAC-SHA256 of the body with the project's secret).
//! Nothing is queued unless the signature matches.

use super::dto;
use super::projects::webhook_context;
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use mobius_ci::{self as engine, Trigger};
use mobius_code::webhook::{self, signature_matches, Kind};
use mobius_core::EventKind;
use mobius_store::NewEvent;
use serde_json::json;
use std::sync::Arc;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn github(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(e.status(), format!("payload larger than {} bytes", app.config.max_body_bytes))
        } else {
            ApiError::bad_request(format!("cannot read the payload: {e}"))
        }
    })?;
    // A missing signature, an unknown project and a wrong signature are told apart
    // only in the audit log: to a caller, an unknown project's hook answers like a
    // known one's, so the hook is no oracle of project names.
    let Some(signature) = header(&headers, "x-hub-signature-256") else {
        refuse(&app, &name, "missing X-Hub-Signature-256 header").await;
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing X-Hub-Signature-256 header"));
    };
    let bad_signature = || ApiError::new(StatusCode::UNAUTHORIZED, "the X-Hub-Signature-256 signature does not match");
    let Some(project) = app.store.project_by_name(&name).await? else {
        refuse(&app, &name, "no such project").await;
        return Err(bad_signature());
    };
    let secret = app.key.open(&webhook_context(&project.name), &project.webhook_secret).map_err(ApiError::internal)?;
    if !signature_matches(&secret, &body, signature) {
        refuse(&app, &name, "the signature does not match").await;
        return Err(bad_signature());
    }
    let event_header = header(&headers, "x-github-event")
        .or_else(|| header(&headers, "x-gitea-event"))
        .or_else(|| header(&headers, "x-gogs-event"));
    let delivered = webhook::parse(event_header, header(&headers, "content-type"), &body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (event, actor, payload) = (delivered.event, delivered.actor, delivered.payload);
    let trigger = match delivered.kind {
        Kind::Ping => return Ok((StatusCode::OK, Json(json!({"ok": true, "runs": []})))),
        Kind::Ignored => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({"ignored": format!("event '{event}' does not trigger runs"), "runs": []})),
            ))
        }
        Kind::Deleted { git_ref } => {
            let event = NewEvent::new(EventKind::PushReceived, &actor)
                .project(&project.name)
                .data(json!({"ref": git_ref, "after": null, "deleted": true, "via": "webhook"}));
            app.store.set_ref(project.id, &git_ref, None, Some(event)).await?;
            return Ok((StatusCode::OK, Json(json!({"runs": [], "note": "ref deleted"}))));
        }
        Kind::Push { git_ref, after, before } => {
            let seen = app.store.refs(project.id).await?;
            if seen.iter().any(|(n, s)| *n == git_ref && *s == after) {
                return Ok((StatusCode::OK, Json(json!({"runs": [], "note": "this push was already seen"}))));
            }
            let mut trigger = Trigger::new("push", &git_ref, &after, &actor);
            trigger.before = before;
            trigger
        }
        Kind::PullRequest { number, head_sha } => {
            Trigger::new("pull_request", &format!("refs/pull/{number}/merge"), &head_sha, &actor)
        }
    };
    // A delivery seen before (a replay, even correctly signed) starts nothing again.
    let delivery = header(&headers, "x-github-delivery").or_else(|| header(&headers, "x-gitea-delivery"));
    if let Some(delivery) = delivery {
        if delivery.len() > 200 {
            return Err(ApiError::bad_request("X-GitHub-Delivery: longer than 200 characters"));
        }
        if !app.store.record_delivery(project.id, delivery).await? {
            tracing::info!(project = %project.name, delivery, "webhook delivery replayed; ignored");
            app.store
                .append(
                    NewEvent::audit(EventKind::WebhookReplay, &format!("webhook:{event}"), &project.name, "webhook")
                        .project(&project.name)
                        .data(json!({"delivery": delivery})),
                )
                .await?;
            return Ok((StatusCode::OK, Json(json!({"runs": [], "note": "this delivery was already received"}))));
        }
    }
    // A mirrored repository fetches first, so the pushed commit is there.
    if let Err(e) = engine::sync_repo(&*app, &project).await {
        tracing::warn!(project = %project.name, error = %e, "cannot fetch before a webhook's runs");
    }
    let mut trigger = trigger;
    trigger.payload = Some(payload);
    let pushed = (event == "push").then(|| (trigger.ref_name.clone(), trigger.sha.clone()));
    let runs = match engine::create_runs(&app.ci_host(), &project, trigger).await {
        Ok(runs) => runs,
        Err(e) => {
            // Not acted on: a redelivery of the same id may try again.
            if let Some(delivery) = delivery {
                app.store.forget_delivery(project.id, delivery).await?;
            }
            return Err(e.into());
        }
    };
    // Recorded once queued, so the poller does not run the same push again.
    if let Some((git_ref, sha)) = pushed {
        let event = NewEvent::new(EventKind::PushReceived, &actor)
            .project(&project.name)
            .data(json!({"ref": git_ref, "after": sha, "runs": runs.iter().map(|r| r.id).collect::<Vec<_>>(),
                         "via": "webhook"}));
        app.store.set_ref(project.id, &git_ref, Some(&sha), Some(event)).await?;
    }
    app.store
        .append(
            NewEvent::audit(EventKind::WebhookReceive, &format!("webhook:{event}"), &project.name, "webhook")
                .project(&project.name)
                .data(json!({"event": event, "runs": runs.iter().map(|r| r.id).collect::<Vec<_>>()})),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!(mobius_api::RunList { runs: runs.iter().map(dto::run).collect() }))))
}

/// Records a refused delivery in the audit log (the refusal is answered regardless).
async fn refuse(app: &App, project: &str, reason: &str) {
    tracing::warn!(project, reason, "webhook refused");
    if let Err(e) = app
        .store
        .append(
            NewEvent::audit(EventKind::WebhookRefused, "webhook", project, "webhook")
                .data(json!({"reason": reason, "status": 401})),
        )
        .await
    {
        tracing::warn!(error = %e, "cannot record a refused webhook in the audit log");
    }
}
