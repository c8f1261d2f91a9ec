//! Keep-alive HTTP/1.1 connections to backends: idle senders per address, handed back
//! when a response body has been read to its end.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Idle connections kept per backend address.
const MAX_IDLE_PER_BACKEND: usize = 512;

/// Why a request could not be sent or answered.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened: nothing reached the backend.
    Connect(String),
    /// The connection failed during the exchange.
    Exchange(hyper::Error),
}

/// A sender that goes back to the pool when its response is done.
pub(crate) struct Checked {
    pool: Arc<Pool>,
    addr: SocketAddr,
    sender: SendRequest<ProxyBody>,
}

impl Checked {
    /// Returns the connection for reuse (call only once the response body ended cleanly).
    pub(crate) fn release(self) {
        self.pool.put(self.addr, self.sender);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<ProxyBody>>>>,
    connect_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Pool { idle: Mutex::default(), connect_timeout })
    }

    fn take(&self, addr: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let senders = idle.get_mut(&addr)?;
        while let Some(sender) = senders.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let senders = idle.entry(addr).or_default();
        if senders.len() < MAX_IDLE_PER_BACKEND {
            senders.push(sender);
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<ProxyBody>, SendError> {
        let stream = tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| SendError::Connect(format!("connecting to {addr} timed out")))?
            .map_err(|e| SendError::Connect(format!("cannot connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(format!("handshake with {addr}: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "backend connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends a request on an idle connection, or a new one. A request that an idle
    /// connection could not take (the backend had closed it) goes out on a new one.
    pub(crate) async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut request: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Checked), SendError> {
        // The connection may still be finishing the previous exchange: wait for it.
        let idle = match self.take(addr) {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        if let Some(mut sender) = idle {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, Checked { pool: Arc::clone(self), addr, sender })),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
        let mut sender = self.connect(addr).await?;
        let response = sender.send_request(request).await.map_err(SendError::Exchange)?;
        Ok((response, Checked { pool: Arc::clone(self), addr, sender }))
    }
}
