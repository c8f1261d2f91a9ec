//! The host agent: one process per host that holds the router's listeners and supervises
//! service instances, configured by `mobius serve` over an authenticated loopback API.
//!
//! It is a separate process so that production traffic outlives the control plane: a
//! restart or crash of the server leaves listeners, weights and instances as they were,
//! and the server reattaches through `agent.json` when it comes back.

mod api;
pub mod client;
pub mod recreate;
mod supervise;

use crate::runtime::{HostRuntime, InstanceSpec, Runtime};
use mobius_router::{Router, RouterOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

pub use client::{AgentClient, AgentError};

/// What the agent writes to `DIR/agent.json` (mode 0600) so the server can find it.
#[derive(Clone, Serialize, Deserialize)]
pub struct AgentInfo {
    pub pid: u32,
    pub addr: SocketAddr,
    pub token: String,
}

impl std::fmt::Debug for AgentInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentInfo").field("pid", &self.pid).field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// The life of an instance as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Started, not yet through its health check.
    Starting,
    Healthy,
    /// Running but failing its health check; it receives no requests.
    Unhealthy,
    /// It exited and will be started again after a back-off.
    Restarting,
    /// Draining and then stopping.
    Stopping,
}

/// One instance's state, as `GET /v1/instances` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub id: String,
    pub service: String,
    pub version: String,
    #[serde(default)]
    pub environment: String,
    /// Where it exposes Prometheus metrics, when it does.
    #[serde(default)]
    pub metrics_path: Option<String>,
    pub state: InstanceState,
    pub pid: u32,
    pub addr: SocketAddr,
    /// Times the process exited unexpectedly and was started again.
    pub restarts: u32,
    /// At least three unexpected exits within 30 seconds.
    pub crash_loop: bool,
    pub last_exit: Option<String>,
    /// Where its standard output and error go.
    pub log: PathBuf,
}

#[derive(Debug)]
struct Instance {
    spec: InstanceSpec,
    status: Arc<Mutex<InstanceStatus>>,
    stop: Option<oneshot::Sender<()>>,
    stopped: watch::Receiver<Option<String>>,
}

/// The agent's shared state.
#[derive(Debug)]
pub struct Agent {
    dir: PathBuf,
    router: Router,
    runtime: Arc<dyn Runtime>,
    instances: Mutex<BTreeMap<String, Instance>>,
    /// The newest recreate of each listener, carried out here (see `recreate`).
    recreates: Mutex<BTreeMap<String, recreate::RecreateStatus>>,
    http: reqwest::Client,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(Agent {
            runtime: Arc::new(HostRuntime::for_agent(&dir)),
            dir,
            router: Router::new(RouterOptions::default()),
            instances: Mutex::default(),
            recreates: Mutex::default(),
            http: reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap_or_default(),
        })
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn instances(&self) -> Vec<InstanceStatus> {
        lock(&self.instances).values().map(|i| lock(&i.status).clone()).collect()
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{id}.log"))
    }
}

/// Runs the agent until SIGTERM, Ctrl-C, or its `agent.json` disappearing (the data
/// directory was removed). Instances are stopped on the way out.
pub async fn run_agent(dir: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("logs"))?;
    let agent = Agent::new(dir.to_path_buf());
    let token = {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the agent token: {e}"))?;
        hex::encode(bytes)
    };
    let socket = tokio::net::TcpListener::bind(listen).await?;
    let addr = socket.local_addr()?;
    let info = AgentInfo { pid: std::process::id(), addr, token: token.clone() };
    write_info(dir, &info)?;
    tracing::info!(%addr, dir = %dir.display(), "agent ready");
    let app = api::routes(Arc::clone(&agent), token);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let watcher = tokio::spawn(watch_for_exit(dir.join("agent.json"), info.pid, stop_tx));
    let server = axum::serve(socket, app).with_graceful_shutdown(async move {
        let _ = stop_rx.await;
    });
    server.await?;
    watcher.abort();
    let ids: Vec<String> = lock(&agent.instances).keys().cloned().collect();
    for id in ids {
        supervise::stop_instance(&agent, &id, Duration::ZERO).await;
    }
    // Leave the file alone if another agent has taken over meanwhile.
    let info_path = dir.join("agent.json");
    let still_ours = std::fs::read(&info_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<AgentInfo>(&b).ok())
        .is_some_and(|i| i.pid == info.pid);
    if still_ours {
        let _ = std::fs::remove_file(info_path);
    }
    Ok(())
}

fn write_info(dir: &Path, info: &AgentInfo) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join("agent.json.tmp");
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(&serde_json::to_vec(info)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join("agent.json"))?;
    Ok(())
}

async fn watch_for_exit(info_path: PathBuf, pid: u32, stop: oneshot::Sender<()>) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for SIGTERM");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                // Another agent took over, or the data directory is gone.
                let ours = std::fs::read(&info_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<AgentInfo>(&b).ok())
                    .is_some_and(|info| info.pid == pid);
                if !ours {
                    tracing::info!("agent.json is gone or names another agent; stopping");
                    break;
                }
            }
        }
    }
    let _ = stop.send(());
}
