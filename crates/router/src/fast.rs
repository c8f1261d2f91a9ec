//! The HTTP/1.1 fast path. A plain request (origin-form target, `Host`, no body or a
//! `Content-Length` one, no `Upgrade`, `Expect` or `Transfer-Encoding`) is parsed with
//! httparse and forwarded by the client connection's own task on a pooled backend
//! connection; the response is relayed as it arrives, chunked framing passed through
//! unchanged. Anything else (HTTP/2, HTTP/1.0, upgrades, chunked uploads, malformed
//! input) hands the connection, with the bytes already read, to hyper.

use crate::forward::{is_hop_by_hop, Attempts, UpstreamFailure};
use crate::proxy::{Inner, ERROR_HEADER, VERSION_HEADER};
use crate::stats::ErrorSide;
use crate::table::{millis_since, Backend, Table};
use arc_swap::ArcSwap;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The longest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
const READ_CHUNK: usize = 16 * 1024;
/// Idle backend connections kept per address.
const MAX_IDLE_PER_BACKEND: usize = 512;

/// How the fast path left a client connection.
pub(crate) enum End {
    /// Closed, by either side or after an answered error.
    Closed,
    /// Not a request for the fast path: hyper serves the rest, starting with these bytes.
    HandOver(BytesMut),
}

/// Serves requests on one client connection until it closes or needs hyper.
pub(crate) async fn serve(inner: &Inner, table: &ArcSwap<Table>, client: &mut TcpStream, peer: SocketAddr) -> End {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let (head, table) = loop {
            if !buf.is_empty() {
                let table = table.load_full();
                match parse_request(&buf, peer, &table) {
                    Parsed::Complete(head) => break (head, table),
                    Parsed::Partial if buf.len() < MAX_HEAD => {}
                    Parsed::Partial => {
                        let _ = client
                            .write_all(&error_bytes(431, ErrorSide::Downstream, "request head too large", None, true))
                            .await;
                        return End::Closed;
                    }
                    Parsed::HandOver => return End::HandOver(buf),
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            match client.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return End::Closed,
                Ok(_) => {}
            }
        };
        if !exchange(inner, &table, client, &mut buf, head).await {
            return End::Closed;
        }
    }
}

enum Parsed {
    Complete(RequestHead),
    Partial,
    HandOver,
}

/// A parsed request, its head already rewritten for the backend.
struct RequestHead {
    head_len: usize,
    body_len: u64,
    /// The client asked to close the connection after this exchange.
    close: bool,
    /// Idempotent and without a body: may be tried on another backend.
    retryable: bool,
    is_head: bool,
    sticky: Option<u64>,
    upstream: Vec<u8>,
}

fn name_is(name: &str, expected: &str) -> bool {
    name.eq_ignore_ascii_case(expected)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(trim).filter(|t| !t.is_empty())
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The request-head parser on arbitrary bytes, for the fuzz target: whether it
/// took a complete head, wanted more, or handed the connection over.
pub(crate) fn parse_request_outcome(buf: &[u8], peer: SocketAddr, table: &Table) -> &'static str {
    match parse_request(buf, peer, table) {
        Parsed::Complete(_) => "complete",
        Parsed::Partial => "partial",
        Parsed::HandOver => "hand-over",
    }
}

fn parse_request(buf: &[u8], peer: SocketAddr, table: &Table) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::HandOver,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::HandOver;
    };
    if !path.starts_with('/') {
        return Parsed::HandOver;
    }
    let (mut body_len, mut close, mut has_host, mut has_proto) = (None, false, false, false);
    let mut forwarded_for: Option<&[u8]> = None;
    let mut listed: Vec<&[u8]> = Vec::new();
    for h in req.headers.iter() {
        let name = h.name;
        if name_is(name, "content-length") {
            match parse_length(h.value) {
                Some(n) if body_len.is_none_or(|seen| seen == n) => body_len = Some(n),
                _ => return Parsed::HandOver,
            }
        } else if name_is(name, "transfer-encoding") || name_is(name, "upgrade") || name_is(name, "expect") {
            return Parsed::HandOver;
        } else if name_is(name, "connection") {
            for token in tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    listed.push(token);
                }
            }
        } else if name_is(name, "host") {
            has_host = true;
        } else if name_is(name, "x-forwarded-for") {
            if forwarded_for.is_some() {
                return Parsed::HandOver;
            }
            forwarded_for = Some(h.value);
        } else if name_is(name, "x-forwarded-proto") {
            has_proto = true;
        }
    }
    if !has_host {
        return Parsed::HandOver;
    }
    let body_len = body_len.unwrap_or(0);
    let mut upstream = Vec::with_capacity(head_len + 96);
    upstream.extend_from_slice(method.as_bytes());
    upstream.push(b' ');
    upstream.extend_from_slice(path.as_bytes());
    upstream.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name;
        // Requests with `transfer-encoding` never take the fast path.
        let hop = is_hop_by_hop(name)
            || name_is(name, "x-forwarded-for")
            || listed.iter().any(|l| l.eq_ignore_ascii_case(name.as_bytes()));
        if !hop {
            push_header(&mut upstream, name.as_bytes(), h.value);
        }
    }
    let ip = peer.ip().to_string();
    match forwarded_for {
        Some(earlier) => {
            let mut value = trim(earlier).to_vec();
            value.extend_from_slice(b", ");
            value.extend_from_slice(ip.as_bytes());
            push_header(&mut upstream, b"x-forwarded-for", &value);
        }
        None => push_header(&mut upstream, b"x-forwarded-for", ip.as_bytes()),
    }
    if !has_proto {
        push_header(&mut upstream, b"x-forwarded-proto", b"http");
    }
    upstream.extend_from_slice(b"\r\n");
    let retryable = body_len == 0 && matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE");
    let sticky = table.sticky_hash_in(req.headers.iter().map(|h| (h.name, h.value)));
    Parsed::Complete(RequestHead { head_len, body_len, close, retryable, is_head: method == "HEAD", sticky, upstream })
}

/// A response made by the router itself.
fn error_bytes(status: u16, side: ErrorSide, message: &str, version: Option<&str>, close: bool) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n{ERROR_HEADER}: {}\r\ncontent-length: {}\r\n",
        side.as_str(),
        message.len() + 1
    );
    if let Some(version) = version {
        out.push_str(&format!("{VERSION_HEADER}: {version}\r\n"));
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(message);
    out.push('\n');
    out.into_bytes()
}

/// Why an attempt at a backend failed.
enum Failure {
    /// The backend failed: another backend may be tried.
    Upstream(UpstreamFailure),
    /// The client went away while its request body was being forwarded.
    ClientGone,
}

impl From<UpstreamFailure> for Failure {
    fn from(failure: UpstreamFailure) -> Failure {
        Failure::Upstream(failure)
    }
}

/// Forwards one request and relays its response; `false` when the client connection must close.
async fn exchange(inner: &Inner, table: &Table, client: &mut TcpStream, buf: &mut BytesMut, head: RequestHead) -> bool {
    let started = Instant::now();
    buf.advance(head.head_len);
    let first_body = usize::try_from(head.body_len).unwrap_or(usize::MAX).min(buf.len());
    let mut request = head.upstream;
    request.extend_from_slice(&buf[..first_body]);
    buf.advance(first_body);
    let mut rest_of_body = head.body_len - first_body as u64;
    let mut attempts = Attempts::new(table, head.retryable);
    let mut fresh = false;
    loop {
        let now = millis_since(inner.epoch);
        let Some((index, backend)) = table.pick(head.sticky, attempts.avoid(), now) else {
            let close = head.close || rest_of_body > 0;
            let answer = error_bytes(503, ErrorSide::Internal, "no backend available", None, close);
            return client.write_all(&answer).await.is_ok() && !close;
        };
        let route = &table.versions[index];
        let in_flight = backend.start_request();
        let attempt_result = tokio::time::timeout(
            inner.options.response_timeout,
            send(inner, &backend, &request, client, buf, &mut rest_of_body, head.is_head, fresh),
        )
        .await;
        let failure = match attempt_result {
            Ok(Ok((mut upstream, response))) => {
                backend.record_success();
                route.stats.record_response(response.status, started.elapsed());
                let close = head.close || response.close_client;
                let mut out = response.client_head;
                push_header(&mut out, VERSION_HEADER.as_bytes(), route.version.as_bytes());
                if close {
                    out.extend_from_slice(b"connection: close\r\n");
                }
                out.extend_from_slice(b"\r\n");
                upstream.buf.advance(response.head_len);
                let relayed = relay(&mut upstream, client, out, response.framing).await;
                drop(in_flight);
                return match relayed {
                    Relayed::Done { reusable } => {
                        if reusable && response.reusable {
                            inner.fast_pool.put(backend.addr, upstream);
                        }
                        !close
                    }
                    Relayed::UpstreamFailed => {
                        route.stats.count_error(ErrorSide::Upstream);
                        false
                    }
                    Relayed::ClientFailed => {
                        route.stats.count_error(ErrorSide::Downstream);
                        false
                    }
                };
            }
            Ok(Err(Failure::ClientGone)) => {
                route.stats.record_error(ErrorSide::Downstream, started.elapsed());
                return false;
            }
            Ok(Err(Failure::Upstream(failure))) => {
                // A kept-alive connection the backend had closed: one more try on a new one.
                if failure.stale_connection() && !fresh && rest_of_body == 0 && head.retryable {
                    fresh = true;
                    continue;
                }
                failure
            }
            Err(_) => UpstreamFailure::Timeout,
        };
        drop(in_flight);
        tracing::debug!(backend = %backend.id, error = %failure, "upstream request failed");
        inner.count_failure(&backend, now);
        if attempts.again(Arc::clone(&backend)) {
            fresh = false;
            continue;
        }
        route.stats.record_error(ErrorSide::Upstream, started.elapsed());
        let close = head.close || rest_of_body > 0;
        let answer =
            error_bytes(failure.status(), ErrorSide::Upstream, &failure.to_string(), Some(&route.version), close);
        return client.write_all(&answer).await.is_ok() && !close;
    }
}

/// A backend connection and what has been read from it.
pub(crate) struct UpConn {
    stream: TcpStream,
    buf: BytesMut,
    reused: bool,
}

/// A backend's response head, rewritten for the client (without its final empty line).
struct ResponseHead {
    status: u16,
    head_len: usize,
    framing: Framing,
    /// The backend keeps the connection open after this response.
    reusable: bool,
    /// The client connection must close after it (the body ends with the connection).
    close_client: bool,
    client_head: Vec<u8>,
}

async fn connect(inner: &Inner, addr: SocketAddr) -> Result<UpConn, Failure> {
    let stream = tokio::time::timeout(inner.options.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| UpstreamFailure::ConnectTimeout)?
        .map_err(|_| UpstreamFailure::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(UpConn { stream, buf: BytesMut::with_capacity(READ_CHUNK), reused: false })
}

/// Sends the request (streaming the rest of its body from the client) and reads the
/// response head; informational responses are passed to the client on the way.
#[allow(clippy::too_many_arguments)]
async fn send(
    inner: &Inner,
    backend: &Backend,
    request: &[u8],
    client: &mut TcpStream,
    client_buf: &mut BytesMut,
    rest_of_body: &mut u64,
    is_head: bool,
    fresh: bool,
) -> Result<(UpConn, ResponseHead), Failure> {
    let idle = if fresh { None } else { inner.fast_pool.take(backend.addr) };
    let mut up = match idle {
        Some(up) => up,
        None => connect(inner, backend.addr).await?,
    };
    let stale = up.reused;
    up.stream.write_all(request).await.map_err(|_| UpstreamFailure::Closed { stale })?;
    while *rest_of_body > 0 {
        if client_buf.is_empty() {
            client_buf.reserve(READ_CHUNK);
            match client.read_buf(client_buf).await {
                Ok(0) | Err(_) => return Err(Failure::ClientGone),
                Ok(_) => {}
            }
        }
        let n = usize::try_from(*rest_of_body).unwrap_or(usize::MAX).min(client_buf.len());
        up.stream.write_all(&client_buf[..n]).await.map_err(|_| UpstreamFailure::Closed { stale: false })?;
        client_buf.advance(n);
        *rest_of_body -= n as u64;
    }
    let mut received = false;
    loop {
        if !up.buf.is_empty() {
            match parse_response(&up.buf, is_head).map_err(UpstreamFailure::Protocol)? {
                Some(Response::Final(head)) => return Ok((up, head)),
                Some(Response::Interim(len)) => {
                    client.write_all(&up.buf[..len]).await.map_err(|_| Failure::ClientGone)?;
                    up.buf.advance(len);
                    continue;
                }
                None if up.buf.len() >= MAX_HEAD => {
                    return Err(UpstreamFailure::Protocol("the backend's response head is too large".into()).into())
                }
                None => {}
            }
        }
        if up.buf.capacity() - up.buf.len() < 1024 {
            up.buf.reserve(READ_CHUNK);
        }
        match up.stream.read_buf(&mut up.buf).await {
            Ok(0) | Err(_) => return Err(UpstreamFailure::Closed { stale: stale && !received }.into()),
            Ok(_) => received = true,
        }
    }
}

enum Response {
    Final(ResponseHead),
    /// A 1xx response of this many bytes, relayed as it is.
    Interim(usize),
}

fn parse_response(buf: &[u8], is_head: bool) -> Result<Option<Response>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("the backend's response is not HTTP/1.1: {e}")),
    };
    let (Some(version), Some(status)) = (res.version, res.code) else {
        return Err("the backend's response has no status".into());
    };
    if status == 101 {
        return Err("the backend switched protocols without being asked to".into());
    }
    if (100..200).contains(&status) {
        return Ok(Some(Response::Interim(head_len)));
    }
    let (mut length, mut chunked, mut encoded, mut close) = (None, false, false, version == 0);
    let mut listed: Vec<&[u8]> = Vec::new();
    for h in res.headers.iter() {
        let name = h.name;
        if name_is(name, "content-length") {
            match parse_length(h.value) {
                Some(n) if length.is_none_or(|seen| seen == n) => length = Some(n),
                _ => return Err("the backend sent an invalid Content-Length".into()),
            }
        } else if name_is(name, "transfer-encoding") {
            encoded = true;
            chunked = tokens(h.value).last().is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if name_is(name, "connection") {
            for token in tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                } else {
                    listed.push(token);
                }
            }
        }
    }
    let framing = if is_head || status == 204 || status == 304 {
        Framing::Length(0)
    } else if encoded {
        if chunked {
            Framing::Chunked(Chunked::default())
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let close_client = matches!(framing, Framing::UntilClose);
    let reason = res.reason.unwrap_or("");
    let mut client_head = Vec::with_capacity(head_len + 64);
    client_head.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    for h in res.headers.iter() {
        let name = h.name;
        // A response's chunked framing (and its trailer announcement) is passed through.
        let passed_through = name_is(name, "transfer-encoding") || chunked && name_is(name, "trailer");
        let dropped = is_hop_by_hop(name) && !passed_through
            || name_is(name, VERSION_HEADER)
            || encoded && name_is(name, "content-length")
            || listed.iter().any(|l| l.eq_ignore_ascii_case(name.as_bytes()));
        if !dropped {
            push_header(&mut client_head, name.as_bytes(), h.value);
        }
    }
    Ok(Some(Response::Final(ResponseHead {
        status,
        head_len,
        reusable: !close && !close_client,
        close_client,
        framing,
        client_head,
    })))
}

/// Where a response body ends.
#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl Framing {
    /// How many of `bytes` belong to the body, and whether the body ends there.
    fn advance(&mut self, bytes: &[u8]) -> Result<(usize, bool), String> {
        match self {
            Framing::Length(rest) => {
                let n = usize::try_from(*rest).unwrap_or(usize::MAX).min(bytes.len());
                *rest -= n as u64;
                Ok((n, *rest == 0))
            }
            Framing::Chunked(state) => state.advance(bytes),
            Framing::UntilClose => Ok((bytes.len(), false)),
        }
    }
}

/// Follows chunked framing (RFC 9112 section 7.1) over bytes relayed as they are.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    /// Bytes in the current size line or trailer line, bounded.
    line: usize,
}

#[derive(Debug, Default, PartialEq)]
enum ChunkState {
    #[default]
    SizeStart,
    Size(u64),
    Extension(u64),
    Data(u64),
    DataEnd,
    TrailerStart,
    TrailerLine,
    Done,
}

impl Chunked {
    fn advance(&mut self, bytes: &[u8]) -> Result<(usize, bool), String> {
        let bad = || "the backend's chunked body is malformed".to_string();
        let mut i = 0;
        while i < bytes.len() {
            if let ChunkState::Data(rest) = self.state {
                let n = usize::try_from(rest).unwrap_or(usize::MAX).min(bytes.len() - i);
                i += n;
                let rest = rest - n as u64;
                self.state = if rest == 0 { ChunkState::DataEnd } else { ChunkState::Data(rest) };
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.line += 1;
            if self.line > MAX_HEAD {
                return Err(bad());
            }
            self.state = match (&self.state, b) {
                (ChunkState::SizeStart, _) => ChunkState::Size(hex(b).ok_or_else(bad)?),
                (ChunkState::Size(n), b'\r') => ChunkState::Size(*n),
                (ChunkState::Size(n) | ChunkState::Extension(n), b'\n') => {
                    self.line = 0;
                    if *n == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data(*n)
                    }
                }
                (ChunkState::Size(n), b';' | b' ' | b'\t') => ChunkState::Extension(*n),
                (ChunkState::Size(n), _) => {
                    let digit = hex(b).ok_or_else(bad)?;
                    ChunkState::Size(n.checked_mul(16).and_then(|v| v.checked_add(digit)).ok_or_else(bad)?)
                }
                (ChunkState::Extension(n), _) => ChunkState::Extension(*n),
                (ChunkState::DataEnd, b'\r') => ChunkState::DataEnd,
                (ChunkState::DataEnd, b'\n') => {
                    self.line = 0;
                    ChunkState::SizeStart
                }
                (ChunkState::DataEnd, _) => return Err(bad()),
                (ChunkState::TrailerStart, b'\r') => ChunkState::TrailerStart,
                (ChunkState::TrailerStart, b'\n') => ChunkState::Done,
                (ChunkState::TrailerLine, b'\n') => {
                    self.line = 0;
                    ChunkState::TrailerStart
                }
                (ChunkState::TrailerStart | ChunkState::TrailerLine, _) => ChunkState::TrailerLine,
                (ChunkState::Data(_) | ChunkState::Done, _) => return Err(bad()),
            };
            if self.state == ChunkState::Done {
                return Ok((i, true));
            }
        }
        Ok((i, false))
    }
}

fn hex(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

enum Relayed {
    Done { reusable: bool },
    UpstreamFailed,
    ClientFailed,
}

/// Sends the response head and relays the body until its framing says it ended.
async fn relay(up: &mut UpConn, client: &mut TcpStream, mut head: Vec<u8>, mut framing: Framing) -> Relayed {
    let mut first = true;
    loop {
        let (used, done) = match framing.advance(&up.buf) {
            Ok(step) => step,
            Err(e) => {
                tracing::debug!(error = %e, "upstream body failed");
                // The head may not have gone out yet: the client gets a truncated answer.
                let _ = client.write_all(&head).await;
                return Relayed::UpstreamFailed;
            }
        };
        let written = if first {
            head.extend_from_slice(&up.buf[..used]);
            first = false;
            client.write_all(&head).await
        } else if used > 0 {
            client.write_all(&up.buf[..used]).await
        } else {
            Ok(())
        };
        up.buf.advance(used);
        if written.is_err() {
            return Relayed::ClientFailed;
        }
        if done {
            return Relayed::Done { reusable: up.buf.is_empty() };
        }
        if up.buf.capacity() - up.buf.len() < 1024 {
            up.buf.reserve(READ_CHUNK);
        }
        match up.stream.read_buf(&mut up.buf).await {
            Ok(0) if matches!(framing, Framing::UntilClose) => return Relayed::Done { reusable: false },
            Ok(0) | Err(_) => return Relayed::UpstreamFailed,
            Ok(_) => {}
        }
    }
}

/// Idle backend connections of the fast path, most recently used last.
#[derive(Debug, Default)]
pub(crate) struct FastPool {
    idle: Mutex<HashMap<SocketAddr, Vec<UpConn>>>,
}

impl std::fmt::Debug for UpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpConn").field("peer", &self.stream.peer_addr().ok()).finish_non_exhaustive()
    }
}

impl FastPool {
    fn take(&self, addr: SocketAddr) -> Option<UpConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let connections = idle.get_mut(&addr)?;
        while let Some(up) = connections.pop() {
            if still_open(&up.stream) {
                return Some(up);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, mut up: UpConn) {
        up.reused = true;
        up.buf.clear();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let connections = idle.entry(addr).or_default();
        if connections.len() < MAX_IDLE_PER_BACKEND {
            connections.push(up);
        }
    }
}

/// Whether an idle connection is still open: nothing (not even its end) arrived on it
/// since its last response. Costs no system call unless the socket became readable.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut byte = [0u8; 1];
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// A client connection handed to hyper: the bytes the fast path already read come first.
pub(crate) struct Rewind {
    prefix: Bytes,
    stream: TcpStream,
}

impl Rewind {
    pub(crate) fn new(prefix: Bytes, stream: TcpStream) -> Self {
        Rewind { prefix, stream }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Result<(usize, bool), String> {
        Chunked::default().advance(input)
    }

    #[test]
    fn chunked_framing_finds_the_end_whatever_the_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        assert_eq!(run(body), Ok((body.len() - 4, true)));
        // Fed a byte at a time, it ends at the same place.
        let mut state = Chunked::default();
        let mut consumed = 0;
        for b in body.iter() {
            let (n, done) = state.advance(std::slice::from_ref(b)).unwrap();
            consumed += n;
            if done {
                break;
            }
        }
        assert_eq!(consumed, body.len() - 4);
        assert_eq!(run(b"5\r\nhel"), Ok((6, false)));
        assert!(run(b"zz\r\n").is_err());
        assert!(run(b"3\r\nabcX").is_err());
        assert!(run(b"ffffffffffffffffff\r\n").is_err());
    }

    #[test]
    fn requests_that_are_not_plain_go_to_hyper() {
        let table = Table::new(Vec::new(), None, 2);
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let parse = |raw: &str| parse_request(raw.as_bytes(), peer, &table);
        for raw in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(parse(raw), Parsed::HandOver), "{raw:?}");
        }
        assert!(matches!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Parsed::Partial));
        let Parsed::Complete(head) =
            parse("GET /x?y HTTP/1.1\r\nHost: a\r\nConnection: close, x-secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
        else {
            panic!("not parsed");
        };
        let sent = String::from_utf8(head.upstream).unwrap();
        assert_eq!(
            sent,
            "GET /x?y HTTP/1.1\r\nHost: a\r\nx-forwarded-for: 10.0.0.1, 127.0.0.1\r\nx-forwarded-proto: http\r\n\r\n"
        );
        assert!(head.close && head.retryable && !head.is_head);
    }
}
