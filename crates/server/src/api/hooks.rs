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
use hmac::{Hmac, KeyInit, Mac};
use mobius_ci::{self as engine, Trigger};
use mobius_core::EventKind;
use mobius_store::NewEvent;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Arc;

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`, compared in constant time.
pub fn signature_matches(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.strip_prefix("sha256=") else { return false };
    let Ok(expected) = hex::decode(hex_digest.trim()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
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
    let event = header(&headers, "x-github-event")
        .or_else(|| header(&headers, "x-gitea-event"))
        .or_else(|| header(&headers, "x-gogs-event"))
        .ok_or_else(|| ApiError::bad_request("missing X-GitHub-Event (or X-Gitea-Event) header"))?
        .to_string();
    if event == "ping" {
        return Ok((StatusCode::OK, Json(json!({"ok": true, "runs": []}))));
    }
    if event != "push" && event != "pull_request" {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"ignored": format!("event '{event}' does not trigger runs"), "runs": []})),
        ));
    }
    let payload = payload_of(&headers, &body)?;
    let field = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    let need = |pointer: &str| {
        field(pointer).ok_or_else(|| ApiError::bad_request(format!("the {event} payload has no '{}'", &pointer[1..])))
    };
    let actor = field("/sender/login").or_else(|| field("/pusher/name")).unwrap_or_else(|| "webhook".into());

    let trigger = if event == "push" {
        let git_ref = need("/ref")?;
        let after = need("/after")?;
        if !git_ref.starts_with("refs/") || !is_sha(&after) {
            return Err(ApiError::bad_request("the push payload needs a full 'ref' and a 40-digit 'after'"));
        }
        if after == ZERO_SHA || payload.get("deleted").and_then(Value::as_bool) == Some(true) {
            let event = NewEvent::new(EventKind::PushReceived, &actor)
                .project(&project.name)
                .data(json!({"ref": git_ref, "after": null, "deleted": true, "via": "webhook"}));
            app.store.set_ref(project.id, &git_ref, None, Some(event)).await?;
            return Ok((StatusCode::OK, Json(json!({"runs": [], "note": "ref deleted"}))));
        }
        let seen = app.store.refs(project.id).await?;
        if seen.iter().any(|(n, s)| *n == git_ref && *s == after) {
            return Ok((StatusCode::OK, Json(json!({"runs": [], "note": "this push was already seen"}))));
        }
        let mut trigger = Trigger::new("push", &git_ref, &after, &actor);
        // `before == after` (a push that moved nothing, or a re-push): the head commit alone.
        trigger.before = field("/before").filter(|b| b != ZERO_SHA && is_sha(b) && *b != after);
        trigger
    } else {
        let number = payload
            .pointer("/number")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::bad_request("the pull_request payload has no 'number'"))?;
        let sha = need("/pull_request/head/sha")?;
        need("/pull_request/base/ref")?;
        if !is_sha(&sha) {
            return Err(ApiError::bad_request("pull_request.head.sha is not a 40-digit commit id"));
        }
        Trigger::new("pull_request", &format!("refs/pull/{number}/merge"), &sha, &actor)
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
    Ok((StatusCode::ACCEPTED, Json(json!({"runs": runs.iter().map(dto::run).collect::<Vec<_>>()}))))
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

/// The delivery's JSON: the body, or its `payload` field when GitHub sends the
/// form content type (`application/x-www-form-urlencoded`).
fn payload_of(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let form = header(headers, "content-type")
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let json: std::borrow::Cow<'_, [u8]> = if form {
        let payload = form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| ApiError::bad_request("the form-encoded delivery has no 'payload' field"))?;
        std::borrow::Cow::Owned(payload.into_bytes())
    } else {
        std::borrow::Cow::Borrowed(body)
    };
    serde_json::from_slice(&json).map_err(|e| ApiError::bad_request(format!("the payload is not valid JSON: {e}")))
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
