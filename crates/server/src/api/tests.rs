//! The API in-process (`tower::ServiceExt::oneshot` on the router), beside the
//! real-process tests in `crates/cli/tests/server/`: authentication, the audit of
//! refusals, input bounds and the event log's answers, without sockets or sleeps.

use crate::app::App;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use mobius_core::EventKind;
use mobius_store::EventFilter;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt as _;

async fn app(limit: Option<usize>) -> (tempfile::TempDir, Arc<App>, String) {
    let dir = tempfile::tempdir().expect("a directory");
    let mut config = crate::ServeConfig::new(dir.path().join("data"));
    if let Some(limit) = limit {
        config.max_body_bytes = limit;
    }
    let app = App::open(config).await.expect("the server's state");
    let (token, _) = crate::first_admin_token(&app).await.expect("a token").expect("the first token");
    (dir, app, token)
}

async fn call(app: &Arc<App>, method: &str, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Body::from(body.to_string())).expect("a request");
    let response = super::router(app.clone()).oneshot(request).await.expect("an answer");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_call_without_a_token_is_refused_and_the_refusal_is_in_the_log() {
    let (_dir, app, token) = app(None).await;
    let (status, body) = call(&app, "GET", "/api/v1/runs", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("bearer token")), "{body}");
    let (status, _) = call(&app, "GET", "/api/v1/runs", Some("not-a-token"), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let denied = EventFilter { after: -1, kinds: vec![EventKind::RequestDenied], limit: 100, ..Default::default() };
    let events = app.store.events(&denied).await.expect("the log");
    assert_eq!(events.len(), 2, "each refusal is one entry");
    let (status, runs) = call(&app, "GET", "/api/v1/runs", Some(&token), "").await;
    assert_eq!((status, runs.as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{runs}");
    app.shutdown();
}

#[tokio::test]
async fn the_event_log_answers_in_order_and_an_unknown_kind_names_the_known_ones() {
    let (_dir, app, token) = app(None).await;
    let (status, page) = call(&app, "GET", "/api/v1/events", Some(&token), "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let kinds: Vec<&str> =
        page["events"].as_array().expect("events").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"token.create"), "the first token is the log's first entry: {page}");
    let (status, refused) = call(&app, "GET", "/api/v1/events?kind=nope", Some(&token), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let message = refused["error"].as_str().unwrap_or_default();
    assert!(message.contains("nope") && message.contains("run.completed"), "{message}");
    app.shutdown();
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_naming_the_limit() {
    let (_dir, app, token) = app(Some(1024)).await;
    let body = format!(r#"{{"name": "{}", "role": "viewer"}}"#, "x".repeat(4096));
    let (status, answer) = call(&app, "POST", "/api/v1/tokens", Some(&token), &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("1024")), "{answer}");
    app.shutdown();
}

/// Issue 17, item 6: the generated document describes every route the server has, and
/// only those (the paths as clients write them, `{*path}` as `{path}`).
#[test]
fn every_routed_path_and_method_is_documented() {
    let routed: std::collections::BTreeSet<(mobius_api::openapi::Method, String)> =
        super::api_routes().routed.into_iter().map(|(m, p)| (m, p.replace("{*", "{"))).collect();
    let documented: std::collections::BTreeSet<(mobius_api::openapi::Method, String)> =
        mobius_api::openapi::documented().into_iter().map(|(m, p)| (m, p.to_string())).collect();
    let missing: Vec<_> = routed.difference(&documented).map(|(m, p)| format!("{} {p}", m.as_str())).collect();
    assert!(missing.is_empty(), "routed but not in the OpenAPI document: {missing:?}");
    let extra: Vec<_> = documented.difference(&routed).map(|(m, p)| format!("{} {p}", m.as_str())).collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    assert!(routed.len() > 70, "{}", routed.len());
}

#[tokio::test]
async fn the_openapi_document_is_served_with_full_paths() {
    let (_dir, app, token) = app(None).await;
    let (status, doc) = call(&app, "GET", "/api/v1/openapi.json", Some(&token), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/events"]["get"].is_object(), "{}", doc["paths"]);
    assert!(doc["components"]["schemas"]["Run"]["properties"]["status"].is_object(), "{}", doc["components"]);
}
