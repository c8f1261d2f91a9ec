//! The HTTP surface: `/healthz`, `/metrics`, and the JSON API under `/api/v1`.

pub(crate) mod alerting;
pub(crate) mod deploy;
pub(crate) mod dto;
pub(crate) mod events;
mod hooks;
mod incidents;
mod logs;
mod loki;
mod meta;
pub(crate) mod monitor;
pub(crate) mod projects;
pub(crate) mod runs;
#[cfg(test)]
mod tests;
mod tokens;

use crate::app::App;
use crate::error::ApiError;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use mobius_core::EventKind;
use mobius_store::NewEvent;
use routed::{delete, get, post, put, Routes};
use std::sync::Arc;

/// Paths kept for the Prometheus-compatible API of the monitor.
pub const RESERVED: &[&str] = &["status"];

/// Every route of the API (not the UI), with the `(method, path)` of each: the
/// OpenAPI document must describe every one (`tests::every_routed_path_and_method_is_documented`).
pub fn api_routes() -> Routes {
    let api = Routes::new("/api/v1")
        .route("/openapi.json", get(meta::openapi))
        .route("/projects", get(projects::list).post(projects::create))
        .route("/projects/{project}", get(projects::show))
        .route("/projects/{project}/secrets", get(projects::list_secrets))
        .route("/projects/{project}/secrets/{name}", put(projects::set_secret).delete(projects::delete_secret))
        .route("/projects/{project}/variables", get(projects::list_variables))
        .route("/projects/{project}/variables/{name}", put(projects::set_variable))
        .route("/projects/{project}/workflows/{workflow}/dispatches", post(projects::dispatch))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/jobs", get(runs::jobs))
        .route("/runs/{id}/logs", get(logs::text))
        .route("/runs/{id}/logs/stream", get(logs::stream))
        .route("/runs/{id}/artifacts", get(runs::artifacts))
        .route("/runs/{id}/artifacts/{name}/{*path}", get(runs::artifact_file))
        .route("/runs/{id}/tests", get(runs::tests))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/rerun", post(runs::rerun))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route("/audit", get(tokens::audit))
        .route("/events", get(events::list))
        .route("/events/stream", get(events::stream))
        .route("/hooks/github/{project}", post(hooks::github))
        .route("/releases", get(deploy::list_releases))
        .route("/releases/{id}", get(deploy::show_release))
        .route("/deployments", post(deploy::create_deployment))
        .route("/rollouts", get(deploy::list_rollouts))
        .route("/rollouts/{id}", get(deploy::show_rollout))
        .route("/rollouts/{id}/promote", post(deploy::promote))
        .route("/rollouts/{id}/abort", post(deploy::abort))
        .route("/rollouts/{id}/approve", post(deploy::approve))
        .route("/rollbacks", post(deploy::rollback))
        .route("/environments", get(deploy::environments))
        .route("/incidents", get(incidents::list))
        .route("/incidents/{id}", get(incidents::show))
        .route("/incidents/{id}/acknowledge", post(incidents::acknowledge))
        .route("/incidents/{id}/resolve", post(incidents::resolve))
        .route("/targets", get(monitor::targets))
        .route("/query", get(monitor::query).post(monitor::query))
        .route("/write", post(monitor::remote_write))
        .route("/logs/tail", get(loki::tail))
        .route("/query_range", get(monitor::query_range).post(monitor::query_range))
        .route("/series", get(monitor::series).post(monitor::series))
        .route("/labels", get(monitor::labels).post(monitor::labels))
        .route("/label/{name}/values", get(monitor::label_values))
        .route("/rules", get(alerting::rules))
        .route("/metadata", get(alerting::metadata))
        .route("/alerts", get(alerting::alerts_v1))
        .route("/status/buildinfo", get(alerting::buildinfo));
    let alertmanager = Routes::new("/api/v2")
        .route("/alerts", get(alerting::get_alerts).post(alerting::post_alerts))
        .route("/alerts/groups", get(alerting::get_groups))
        .route("/silences", get(alerting::get_silences).post(alerting::post_silence))
        .route("/silence/{id}", get(alerting::get_silence).delete(alerting::delete_silence))
        .route("/receivers", get(alerting::receivers))
        .route("/status", get(alerting::status));
    Routes::new("")
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .route("/-/reload", post(monitor::reload))
        .nest(api)
        .nest(alertmanager)
        .route("/loki/api/v1/push", post(loki::push))
        .route("/loki/api/v1/query_range", get(loki::query_range))
        .route("/loki/api/v1/query", get(loki::query))
        .route("/loki/api/v1/labels", get(loki::labels))
        .route("/loki/api/v1/label/{name}/values", get(loki::label_values))
}

pub fn router(app: Arc<App>) -> Router {
    api_routes()
        .router
        // The UI and the acknowledgement links in pages are HTML, not the API.
        .route("/ack/{token}", axum::routing::get(crate::ui::ack_page).post(crate::ui::ack_link))
        .nest(
            "/ui",
            crate::ui::router()
                .layer(axum::middleware::from_fn(crate::ui::conditional))
                .layer(axum::middleware::map_response(crate::ui::security_headers)),
        )
        .fallback(meta::not_found)
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(app.clone(), refuse_oversize))
        .layer(axum::middleware::from_fn_with_state(app.clone(), audit_denials))
        .layer(axum::middleware::from_fn(json_rejections))
        .layer(axum::middleware::from_fn_with_state(app.clone(), count_requests))
        .with_state(app)
}

/// Records every request a permission check refused (401, 403, or a 404 hiding what
/// the caller may not see) in the audit log: who, which route, why.
async fn audit_denials(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    // Kept aside cheaply; the route is written out only for a refusal.
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let remote = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let response = next.run(request).await;
    if let Some(denial) = response.extensions().get::<crate::error::Denial>() {
        let route = format!("{method} {}", uri.path());
        let remote = remote.map_or_else(String::new, |ip| ip.to_string());
        let detail = serde_json::json!({"route": route, "status": response.status().as_u16(), "reason": denial.reason});
        if let Err(e) = app
            .store
            .append(NewEvent::audit(EventKind::RequestDenied, &denial.actor, &route, &remote).data(detail))
            .await
        {
            tracing::warn!(error = %e, "cannot record a refused request in the audit log");
        }
    }
    response
}

/// Refuses a body announced larger than the limit at once, before reading any of it.
async fn refuse_oversize(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > app.config.max_body_bytes as u64) {
        let message = format!("request body larger than {} bytes", app.config.max_body_bytes);
        return axum::response::IntoResponse::into_response(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            message,
        ));
    }
    next.run(request).await
}

/// Answers axum's own rejections (a path or query that does not parse) in the API's
/// `{"error": ...}` shape, like every other error of the API.
async fn json_rejections(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // The Loki-compatible paths answer their own errors in the API's shape too.
    let api = path.starts_with("/api/") || path.starts_with("/loki/");
    let response = next.run(request).await;
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !api || !plain || !response.status().is_client_error() {
        return response;
    }
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    axum::response::IntoResponse::into_response(ApiError::new(
        status,
        String::from_utf8_lossy(&bytes).trim().to_string(),
    ))
}

/// Counts every answer by route template, method and status.
async fn count_requests(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = request.method().to_string();
    let response = next.run(request).await;
    app.metrics.http_request(&route, &method, response.status().as_u16());
    response
}

/// A JSON body whose problems are answered as `{"error": ...}` naming the field.
pub struct JsonBody<T>(pub T);

impl<T> FromRequest<Arc<App>> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, app).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                // A body sent without a length is stopped where it passes the limit.
                ApiError::new(e.status(), format!("request body larger than {} bytes", app.config.max_body_bytes))
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        let slice = if bytes.is_empty() { &b"{}"[..] } else { &bytes[..] };
        serde_json::from_slice(slice)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Routing that remembers what it routed, so the OpenAPI document can be held
/// against it. `get(a).post(b)` reads as axum's.
pub mod routed {
    use crate::app::App;
    use axum::handler::Handler;
    use axum::routing::MethodRouter;
    use axum::Router;
    use mobius_api::openapi::Method;
    use std::sync::Arc;

    /// The handlers of one path, by method.
    pub struct Methods {
        router: MethodRouter<Arc<App>>,
        methods: Vec<Method>,
    }

    macro_rules! method {
        ($name:ident, $variant:ident) => {
            pub fn $name<H, T>(handler: H) -> Methods
            where
                H: Handler<T, Arc<App>>,
                T: 'static,
            {
                Methods { router: axum::routing::$name(handler), methods: vec![Method::$variant] }
            }

            #[allow(dead_code, reason = "any method may follow another; not every pair is routed")]
            impl Methods {
                pub fn $name<H, T>(mut self, handler: H) -> Methods
                where
                    H: Handler<T, Arc<App>>,
                    T: 'static,
                {
                    self.router = self.router.$name(handler);
                    self.methods.push(Method::$variant);
                    self
                }
            }
        };
    }
    method!(get, Get);
    method!(post, Post);
    method!(put, Put);
    method!(delete, Delete);

    /// Routes under a prefix, and the full path of each with its methods.
    pub struct Routes {
        prefix: &'static str,
        pub router: Router<Arc<App>>,
        pub routed: Vec<(Method, String)>,
    }

    impl Routes {
        pub fn new(prefix: &'static str) -> Routes {
            Routes { prefix, router: Router::new(), routed: Vec::new() }
        }

        pub fn route(mut self, path: &str, methods: Methods) -> Routes {
            for method in methods.methods {
                self.routed.push((method, format!("{}{path}", self.prefix)));
            }
            self.router = self.router.route(path, methods.router);
            self
        }

        /// `inner`'s routes under its prefix.
        pub fn nest(mut self, inner: Routes) -> Routes {
            self.router = self.router.nest(inner.prefix, inner.router);
            self.routed.extend(inner.routed.into_iter().map(|(m, p)| (m, format!("{}{p}", self.prefix))));
            self
        }
    }
}
