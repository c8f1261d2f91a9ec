//! The router against real backends on loopback: splits, switches, retries, ejection,
//! sticky keys, HTTP/2, streaming, upgrades, draining and metrics.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mobius_router::{ListenerConfig, Router, RouterOptions, Sticky, VersionConfig};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A small backend: `/` answers its name, `/fail` 500, `/slow` after 300 ms,
/// `/sse` three events 100 ms apart, `/echo` upgrades and echoes bytes.
async fn backend(name: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(answer(name, req).await)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).boxed()
}

async fn answer(name: &'static str, mut req: Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/fail" => Response::builder().status(500).body(full("boom")).unwrap(),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Response::new(full(name))
        }
        "/sse" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                for i in 0..3 {
                    let _ = tx.send(Ok(Frame::data(Bytes::from(format!("data: {i}\n\n"))))).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        "/echo" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(upgrade.await.unwrap());
                let mut buf = [0u8; 64];
                loop {
                    let n = io.read(&mut buf).await.unwrap_or(0);
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .body(full(""))
                .unwrap()
        }
        "/post" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Response::new(full(body))
        }
        "/headers" => {
            let text: String =
                req.headers().iter().map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("?"))).collect();
            Response::new(full(text))
        }
        _ => Response::new(full(name)),
    }
}

/// A backend that answers every request with a body delimited by closing the connection.
async fn close_delimited_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end").await;
            });
        }
    });
    addr
}

/// Reads one response from a raw connection: status, head (lower-cased) and body
/// (`Content-Length` framed, or until the connection closes).
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> (u16, String, Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response head: {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf.drain(..end).collect()).unwrap().to_lowercase();
    let status = head[9..12].parse().unwrap();
    let length =
        head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(|v| v.trim().parse::<usize>().unwrap());
    let body = match (head_request, length) {
        (true, _) => Vec::new(),
        (false, Some(length)) => {
            while buf.len() < length {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside a body");
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..length).collect()
        }
        (false, None) => {
            stream.read_to_end(buf).await.unwrap();
            std::mem::take(buf)
        }
    };
    (status, head, body)
}

fn listener(versions: &[(&str, u32, &[&str])]) -> ListenerConfig {
    ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        versions: versions
            .iter()
            .map(|(v, w, b)| VersionConfig {
                version: v.to_string(),
                weight: *w,
                backends: b.iter().map(|s| s.to_string()).collect(),
            })
            .collect(),
        sticky: None,
        retries: 2,
    }
}

async fn get(client: &reqwest::Client, url: String) -> (u16, String, String) {
    let response = client.get(url).send().await.unwrap();
    let version =
        response.headers().get("x-mobius-version").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let status = response.status().as_u16();
    (status, version, response.text().await.unwrap())
}

#[tokio::test]
async fn weights_split_and_a_switch_holds_for_every_later_request() {
    let router = Router::new(RouterOptions::default());
    let (a, _ta) = backend("blue").await;
    let (b, _tb) = backend("green").await;
    router.upsert_backend("blue-1", a);
    router.upsert_backend("green-1", b);
    let addr =
        router.configure("web", listener(&[("blue", 80, &["blue-1"]), ("green", 20, &["green-1"])])).await.unwrap();
    let client = reqwest::Client::new();
    let mut green = 0;
    for _ in 0..200 {
        let (status, version, body) = get(&client, format!("http://{addr}/")).await;
        assert_eq!(status, 200);
        assert_eq!(version, body, "the version header names the backend that answered");
        green += usize::from(version == "green");
    }
    assert!((38..=42).contains(&green), "20% of 200 went to green: {green}");

    // Switch on the same keep-alive connections: nothing after the switch reaches blue.
    let same =
        router.configure("web", listener(&[("blue", 0, &["blue-1"]), ("green", 100, &["green-1"])])).await.unwrap();
    assert_eq!(same, addr, "reconfiguring keeps the listener");
    for _ in 0..100 {
        assert_eq!(get(&client, format!("http://{addr}/")).await.1, "green");
    }
    let counters = router.counters(Some("web"));
    let blue = counters.iter().find(|s| s.version == "blue").unwrap();
    assert_eq!(blue.requests, 160);
    let metrics = router.render_metrics();
    assert!(
        metrics.contains(r#"mobius_router_requests_total{listener="web",version="green",code="2xx"} 140"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_another_backend_and_dead_ones_ejected() {
    let router = Router::new(RouterOptions::default());
    let (live, _t) = backend("live").await;
    // A port nobody listens on.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    router.upsert_backend("live", live);
    router.upsert_backend("dead", dead);
    let addr = router.configure("web", listener(&[("v1", 100, &["live", "dead"])])).await.unwrap();
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let (status, _, body) = get(&client, format!("http://{addr}/")).await;
        assert_eq!((status, body.as_str()), (200, "live"));
    }
    assert!(router.is_ejected("dead"), "three refused connections eject the backend");
    // A POST with a body is not retried: it fails with an upstream error when it hits the dead one.
    router.configure("web", listener(&[("v1", 100, &["dead"])])).await.unwrap();
    let response = client.post(format!("http://{addr}/")).body("x").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 502);
    assert_eq!(response.headers()["x-mobius-error"], "upstream");
    let counters = router.counters(Some("web"));
    assert_eq!(counters[0].upstream_errors, 1);
}

#[tokio::test]
async fn sticky_cookie_keeps_a_user_on_one_version() {
    let router = Router::new(RouterOptions::default());
    let (a, _ta) = backend("a").await;
    let (b, _tb) = backend("b").await;
    router.upsert_backend("a", a);
    router.upsert_backend("b", b);
    let mut config = listener(&[("a", 50, &["a"]), ("b", 50, &["b"])]);
    config.sticky = Some(Sticky::Cookie("session".into()));
    let addr = router.configure("web", config).await.unwrap();
    let client = reqwest::Client::new();
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..20 {
        let mut versions = std::collections::BTreeSet::new();
        for _ in 0..5 {
            let response = client
                .get(format!("http://{addr}/"))
                .header("cookie", format!("session=user{user}"))
                .send()
                .await
                .unwrap();
            versions.insert(response.text().await.unwrap());
        }
        assert_eq!(versions.len(), 1, "user{user} stayed on one version");
        seen.extend(versions);
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn http2_streaming_upgrades_and_draining() {
    let router = Router::new(RouterOptions::default());
    let (a, _ta) = backend("v1").await;
    router.upsert_backend("a", a);
    let addr = router.configure("web", listener(&[("v1", 100, &["a"])])).await.unwrap();

    // HTTP/2 with prior knowledge downstream.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "v1");

    // Server-sent events arrive one by one, not buffered until the end.
    let started = std::time::Instant::now();
    let mut response = reqwest::get(format!("http://{addr}/sse")).await.unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: 0\n\n");
    assert!(started.elapsed() < Duration::from_millis(150), "first event was not held back");
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"data: 1\n\ndata: 2\n\n");

    // An upgraded connection carries bytes both ways.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("x-mobius-version: v1"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    drop(stream);

    // A slow request in flight is counted until its response is delivered.
    let slow = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(router.backend("a").unwrap().in_flight(), 1);
    router.configure("web", listener(&[("v1", 0, &["a"])])).await.unwrap();
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.text().await.unwrap(), "v1", "removal from traffic lets a request finish");
    assert_eq!(router.backend("a").unwrap().in_flight(), 0);
    // With no version in traffic the router answers 503 itself.
    let response = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["x-mobius-error"], "internal");
}

#[tokio::test]
async fn configuration_errors_are_reported() {
    let router = Router::new(RouterOptions::default());
    let err = router.configure("web", listener(&[("v1", 100, &["nope"])])).await.unwrap_err();
    assert!(err.to_string().contains("unknown backend `nope`"), "{err}");
    let (a, _t) = backend("a").await;
    router.upsert_backend("a", a);
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = listener(&[("v1", 100, &["a"])]);
    config.listen = taken.local_addr().unwrap();
    let err = router.configure("web", config).await.unwrap_err();
    assert!(err.to_string().starts_with("cannot listen on"), "{err}");
}

#[tokio::test]
async fn http1_bodies_pipelining_framing_and_headers() {
    let router = Router::new(RouterOptions::default());
    let (a, _ta) = backend("v1").await;
    router.upsert_backend("a", a);
    router.upsert_backend("until-close", close_delimited_backend().await);
    let addr = router.configure("web", listener(&[("v1", 100, &["a"])])).await.unwrap();

    // Three pipelined requests in one write, answered in order on one connection:
    // a body, hop-by-hop headers dropped and X-Forwarded-For extended, a HEAD.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
              GET /headers HTTP/1.1\r\nHost: x\r\nConnection: x-drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n\
              HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (status, head, body) = read_response(&mut stream, &mut buf, false).await;
    assert_eq!((status, body.as_slice()), (200, &b"hello"[..]), "{head}");
    assert!(head.contains("x-mobius-version: v1"), "{head}");
    let (_, _, body) = read_response(&mut stream, &mut buf, false).await;
    let seen = String::from_utf8(body).unwrap();
    assert!(seen.contains("x-forwarded-for: 10.1.1.1, 127.0.0.1"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(!seen.contains("x-drop") && !seen.contains("keep-alive"), "hop-by-hop headers forwarded: {seen}");
    let (status, head, body) = read_response(&mut stream, &mut buf, true).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-length: 2"), "{head}");
    assert!(body.is_empty());
    // HTTP/1.0 on the same connection is served too (by hyper), and closes it.
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let (status, _, body) = read_response(&mut stream, &mut buf, false).await;
    assert_eq!((status, body.as_slice()), (200, &b"v1"[..]));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());

    // A 4 MiB upload streams through; so does a chunked one (through hyper).
    let client = reqwest::Client::new();
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let echoed = client.post(format!("http://{addr}/post")).body(big.clone()).send().await.unwrap();
    assert_eq!(echoed.bytes().await.unwrap().as_ref(), big.as_slice());
    let chunks =
        tokio_stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from("chunk 1, ")), Ok(Bytes::from("chunk 2"))]);
    let echoed =
        client.post(format!("http://{addr}/post")).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(echoed.text().await.unwrap(), "chunk 1, chunk 2");

    // A body that ends with the backend's connection ends the client's too, whole.
    router.configure("web", listener(&[("v1", 100, &["until-close"])])).await.unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let (status, head, body) = read_response(&mut stream, &mut buf, false).await;
    assert_eq!((status, body.as_slice()), (200, &b"until the end"[..]));
    assert!(head.contains("connection: close"), "{head}");
}

/// Issue 17, item 7: both forwarding paths (the fast HTTP/1.1 path and hyper's, taken by
/// HTTP/2) answer a backend that does not answer in time with 504 and a refused
/// connection with 502, decided by the failure's type.
#[tokio::test]
async fn timeouts_are_504_and_refusals_502_on_both_paths() {
    let router =
        Router::new(RouterOptions { response_timeout: Duration::from_millis(100), ..RouterOptions::default() });
    let (slow, _t) = backend("slow").await;
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    router.upsert_backend("slow", slow);
    router.upsert_backend("dead", dead);
    let mut config = listener(&[("v1", 100, &["slow"])]);
    config.retries = 0;
    let addr = router.configure("web", config).await.unwrap();
    let h1 = reqwest::Client::new();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    for client in [&h1, &h2] {
        let response = client.get(format!("http://{addr}/slow")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 504, "{:?}", response.version());
        assert_eq!(response.headers()["x-mobius-error"], "upstream");
        assert_eq!(response.text().await.unwrap().trim(), "the backend did not answer in time");
    }
    let mut config = listener(&[("v1", 100, &["dead"])]);
    config.retries = 0;
    router.configure("web", config).await.unwrap();
    for client in [&h1, &h2] {
        let response = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 502, "{:?}", response.version());
        assert_eq!(response.text().await.unwrap().trim(), "cannot connect to the backend");
    }
}
