//! The reverse proxy: listeners, forwarding, retries, upgrades and the response's version tag.

use crate::config::{ListenerConfig, RouterOptions};
use crate::forward::UpstreamFailure;
use crate::pool::{Checked, Pool, SendError};
use crate::stats::{ErrorSide, VersionSnapshot, VersionStats};
use crate::table::{millis_since, Backend, InFlight, Table, VersionRoute};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::pool::ProxyBody;

/// The header naming the version that answered.
pub const VERSION_HEADER: &str = "x-mobius-version";
/// The header on responses the router made itself, naming the side that failed.
pub const ERROR_HEADER: &str = "x-mobius-error";

/// Why the router refused a configuration.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("unknown backend `{0}` (register it before routing to it)")]
    UnknownBackend(String),
    #[error("version `{0}` appears twice")]
    DuplicateVersion(String),
}

/// The data plane of one host: any number of listeners sharing backends and counters.
#[derive(Clone, Debug)]
pub struct Router {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) options: RouterOptions,
    pub(crate) epoch: Instant,
    pool: Arc<Pool>,
    pub(crate) fast_pool: crate::fast::FastPool,
    listeners: Mutex<BTreeMap<String, Listener>>,
    backends: Mutex<HashMap<String, Arc<Backend>>>,
    stats: Mutex<BTreeMap<(String, String), Arc<VersionStats>>>,
}

#[derive(Debug)]
struct Listener {
    config: ListenerConfig,
    local_addr: SocketAddr,
    table: Arc<ArcSwap<Table>>,
    accept: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Router {
    pub fn new(options: RouterOptions) -> Self {
        let pool = Pool::new(options.connect_timeout);
        Router {
            inner: Arc::new(Inner {
                options,
                epoch: Instant::now(),
                pool,
                fast_pool: crate::fast::FastPool::default(),
                listeners: Mutex::default(),
                backends: Mutex::default(),
                stats: Mutex::default(),
            }),
        }
    }

    /// Registers (or moves) a backend. It starts healthy: callers register instances
    /// once their health check passed.
    pub fn upsert_backend(&self, id: &str, addr: SocketAddr) -> Arc<Backend> {
        let mut backends = lock(&self.inner.backends);
        match backends.get(id) {
            Some(existing) if existing.addr == addr => Arc::clone(existing),
            _ => {
                let backend = Arc::new(Backend::new(id, addr));
                backends.insert(id.to_string(), Arc::clone(&backend));
                backend
            }
        }
    }

    pub fn backend(&self, id: &str) -> Option<Arc<Backend>> {
        lock(&self.inner.backends).get(id).cloned()
    }

    /// Forgets a backend; tables still naming it keep their reference until replaced.
    pub fn remove_backend(&self, id: &str) {
        lock(&self.inner.backends).remove(id);
    }

    /// Creates or replaces a listener's table. New requests use the new table as soon
    /// as this returns; requests already routed finish where they are. Returns the
    /// address actually bound.
    pub async fn configure(&self, name: &str, config: ListenerConfig) -> Result<SocketAddr, RouterError> {
        let table = Arc::new(self.build_table(name, &config)?);
        let existing = {
            let listeners = lock(&self.inner.listeners);
            listeners.get(name).map(|l| (l.config.listen, l.local_addr, Arc::clone(&l.table)))
        };
        if let Some((listen, local_addr, current)) = existing {
            if listen == config.listen || config.listen.port() == 0 && listen.ip() == config.listen.ip() {
                current.store(table);
                if let Some(l) = lock(&self.inner.listeners).get_mut(name) {
                    l.config = config;
                }
                return Ok(local_addr);
            }
        }
        let socket = TcpListener::bind(config.listen)
            .await
            .map_err(|source| RouterError::Bind { addr: config.listen, source })?;
        let local_addr = socket.local_addr().map_err(|source| RouterError::Bind { addr: config.listen, source })?;
        let swap = Arc::new(ArcSwap::new(table));
        let accept = tokio::spawn(accept_loop(Arc::clone(&self.inner), name.to_string(), socket, Arc::clone(&swap)));
        tracing::info!(listener = name, addr = %local_addr, "router listening");
        let listener = Listener { config, local_addr, table: swap, accept };
        lock(&self.inner.listeners).insert(name.to_string(), listener);
        Ok(local_addr)
    }

    /// Stops accepting on a listener; open connections finish their requests.
    pub fn remove_listener(&self, name: &str) -> bool {
        lock(&self.inner.listeners).remove(name).is_some()
    }

    /// The configuration and bound address of every listener.
    pub fn listeners(&self) -> BTreeMap<String, (ListenerConfig, SocketAddr)> {
        lock(&self.inner.listeners).iter().map(|(k, l)| (k.clone(), (l.config.clone(), l.local_addr))).collect()
    }

    fn build_table(&self, name: &str, config: &ListenerConfig) -> Result<Table, RouterError> {
        let backends = lock(&self.inner.backends);
        let mut stats = lock(&self.inner.stats);
        let mut versions = Vec::with_capacity(config.versions.len());
        for v in &config.versions {
            if versions.iter().any(|r: &VersionRoute| r.version == v.version) {
                return Err(RouterError::DuplicateVersion(v.version.clone()));
            }
            let resolved = v
                .backends
                .iter()
                .map(|id| backends.get(id).cloned().ok_or_else(|| RouterError::UnknownBackend(id.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            let counters = stats.entry((name.to_string(), v.version.clone())).or_default();
            versions.push(VersionRoute {
                version: v.version.clone(),
                weight: v.weight,
                backends: resolved,
                stats: Arc::clone(counters),
            });
        }
        Ok(Table::new(versions, config.sticky.clone(), config.retries))
    }

    /// Counters of every version ever routed by `listener` (all listeners when `None`), without samples.
    pub fn counters(&self, listener: Option<&str>) -> Vec<VersionSnapshot> {
        lock(&self.inner.stats)
            .iter()
            .filter(|((l, _), _)| listener.is_none_or(|want| want == l))
            .map(|((l, v), s)| s.snapshot(l, v, u64::MAX))
            .collect()
    }

    /// Counters and samples of one listener's versions from the given cursors on.
    pub fn samples(&self, listener: &str, since: &BTreeMap<String, u64>) -> Vec<VersionSnapshot> {
        lock(&self.inner.stats)
            .iter()
            .filter(|((l, _), _)| l == listener)
            .map(|((l, v), s)| s.snapshot(l, v, since.get(v).copied().unwrap_or(0)))
            .collect()
    }

    /// The router's series in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        crate::stats::render_prometheus(&mut out, &self.counters(None));
        let backends: Vec<Arc<Backend>> = lock(&self.inner.backends).values().cloned().collect();
        let now = millis_since(self.inner.epoch);
        out.push_str(
            "# HELP mobius_router_backend_up Whether a backend receives requests (healthy and not ejected).\n",
        );
        out.push_str("# TYPE mobius_router_backend_up gauge\n");
        for b in &backends {
            let up = u8::from(b.is_healthy() && !b.is_ejected(now));
            out.push_str(&format!("mobius_router_backend_up{{backend=\"{}\"}} {up}\n", b.id));
        }
        out.push_str("# HELP mobius_router_backend_in_flight Requests in flight per backend.\n");
        out.push_str("# TYPE mobius_router_backend_in_flight gauge\n");
        for b in &backends {
            out.push_str(&format!("mobius_router_backend_in_flight{{backend=\"{}\"}} {}\n", b.id, b.in_flight()));
        }
        out
    }

    /// Whether a backend is ejected right now by passive health checking.
    pub fn is_ejected(&self, id: &str) -> bool {
        let now = millis_since(self.inner.epoch);
        self.backend(id).is_some_and(|b| b.is_ejected(now))
    }
}

impl Inner {
    /// Counts a failed attempt at a backend; enough in a row eject it for a while.
    pub(crate) fn count_failure(&self, backend: &Backend, now_ms: u64) {
        let ejection_ms = u64::try_from(self.options.ejection_time.as_millis()).unwrap_or(u64::MAX);
        if backend.record_failure(now_ms, self.options.eject_after_failures, ejection_ms) {
            tracing::warn!(backend = %backend.id, "backend ejected after consecutive failures");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(inner: Arc<Inner>, name: String, socket: TcpListener, table: Arc<ArcSwap<Table>>) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inner = Arc::clone(&inner);
        let table = Arc::clone(&table);
        let builder = builder.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let prefix = match crate::fast::serve(&inner, &table, &mut stream, peer).await {
                crate::fast::End::Closed => return,
                crate::fast::End::HandOver(prefix) => prefix,
            };
            let io = TokioIo::new(crate::fast::Rewind::new(prefix.freeze(), stream));
            let service = hyper::service::service_fn(move |req| {
                let inner = Arc::clone(&inner);
                let table = table.load_full();
                async move { Ok::<_, Infallible>(forward(&inner, &table, peer, req).await) }
            });
            if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
                tracing::debug!(peer = %peer, error = %e, "downstream connection ended with an error");
            }
        });
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !(keep_upgrade && name == header::UPGRADE))
        .collect();
    for name in listed {
        headers.remove(name);
    }
    // hyper frames bodies itself; an upgrade keeps its `upgrade` and gets its
    // `connection: upgrade` back.
    let upgrade = keep_upgrade.then(|| headers.get(header::UPGRADE).cloned()).flatten();
    for name in crate::forward::HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

fn error_response(status: StatusCode, side: ErrorSide, message: &str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(format!("{message}\n"))).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(ERROR_HEADER, HeaderValue::from_static(side.as_str()));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

async fn forward(inner: &Inner, table: &Table, peer: SocketAddr, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let upgrade = is_upgrade(req.headers());
    let bodyless = req.body().is_end_stream();
    let retryable = bodyless
        && !upgrade
        && matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
        );
    let sticky = table.sticky_hash(req.headers());
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let mut attempts = crate::forward::Attempts::new(table, retryable);
    loop {
        let now = millis_since(inner.epoch);
        let Some((index, backend)) = table.pick(sticky, attempts.avoid(), now) else {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorSide::Internal, "no backend available");
        };
        let route = &table.versions[index];
        let upstream_body = match body.take() {
            Some(b) if !bodyless => b.boxed(),
            _ => Empty::new().map_err(|never| match never {}).boxed(),
        };
        let upstream_req = match upstream_request(&parts, peer, &backend, upgrade, upstream_body) {
            Ok(r) => r,
            Err(message) => {
                route.stats.record_error(ErrorSide::Internal, started.elapsed());
                return error_response(StatusCode::BAD_REQUEST, ErrorSide::Internal, &message);
            }
        };
        let in_flight = backend.start_request();
        let result =
            tokio::time::timeout(inner.options.response_timeout, inner.pool.send(backend.addr, upstream_req)).await;
        let failure = match result {
            Ok(Ok((mut response, connection))) => {
                backend.record_success();
                let latency = started.elapsed();
                route.stats.record_response(response.status().as_u16(), latency);
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(downstream) = downstream_upgrade {
                        let upstream = hyper::upgrade::on(&mut response);
                        // The backend connection now carries the upgraded protocol: not reused.
                        drop(connection);
                        tokio::spawn(tunnel(downstream, upstream, in_flight));
                        let (mut parts, _) = response.into_parts();
                        parts.headers.insert(VERSION_HEADER, version_value(&route.version));
                        return Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed());
                    }
                }
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers, false);
                parts.headers.insert(VERSION_HEADER, version_value(&route.version));
                let body = Tracked {
                    inner: body.boxed(),
                    stats: Arc::clone(&route.stats),
                    _in_flight: in_flight,
                    connection: Some(connection),
                    ended: false,
                };
                return Response::from_parts(parts, body.boxed());
            }
            Ok(Err(SendError::Connect(e))) => {
                tracing::debug!(backend = %backend.id, error = %e, "cannot connect to a backend");
                UpstreamFailure::Connect
            }
            Ok(Err(SendError::Exchange(e))) => {
                tracing::debug!(backend = %backend.id, error = %e, "upstream request failed");
                UpstreamFailure::Closed { stale: false }
            }
            Err(_) => UpstreamFailure::Timeout,
        };
        drop(in_flight);
        inner.count_failure(&backend, now);
        if attempts.again(Arc::clone(&backend)) {
            continue;
        }
        route.stats.record_error(ErrorSide::Upstream, started.elapsed());
        let status = StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut response = error_response(status, ErrorSide::Upstream, &failure.to_string());
        response.headers_mut().insert(VERSION_HEADER, version_value(&route.version));
        return response;
    }
}

fn version_value(version: &str) -> HeaderValue {
    HeaderValue::from_str(version).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn upstream_request(
    parts: &http::request::Parts,
    peer: SocketAddr,
    backend: &Backend,
    upgrade: bool,
    body: ProxyBody,
) -> Result<Request<ProxyBody>, String> {
    let authority = backend.authority.clone().ok_or("the backend's address is not a URI authority")?;
    let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let uri = http::Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("invalid request target: {e}"))?;
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers, upgrade);
    if !headers.contains_key(header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                headers.insert(header::HOST, v);
            }
        }
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    headers.entry("x-forwarded-proto").or_insert(HeaderValue::from_static("http"));
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Copies bytes both ways between an upgraded client and backend connection
/// (WebSocket and other `Upgrade:` protocols).
async fn tunnel(downstream: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade, _in_flight: InFlight) {
    let (client, server) = match tokio::try_join!(downstream, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut server = TokioIo::new(server);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}

/// A response body that keeps its backend's in-flight count and counts how the
/// response ended: a broken upstream body, or a client that left before the end.
struct Tracked {
    inner: ProxyBody,
    stats: Arc<VersionStats>,
    _in_flight: InFlight,
    /// Goes back to the pool when the body ends cleanly.
    connection: Option<Checked>,
    ended: bool,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                self.ended = true;
                if let Some(connection) = self.connection.take() {
                    connection.release();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.ended = true;
                self.stats.count_error(ErrorSide::Upstream);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            if self.ended || self.inner.is_end_stream() {
                connection.release();
            }
        }
        if !self.ended && !self.inner.is_end_stream() {
            self.stats.count_error(ErrorSide::Downstream);
        }
    }
}
