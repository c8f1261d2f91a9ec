//! The server's side of the agent: find it through `agent.json` (starting one when there
//! is none), then configure listeners and instances and read the router's numbers.

use super::api::{ListenerState, SamplesRequest};
use super::{AgentInfo, InstanceStatus};
use crate::runtime::InstanceSpec;
use mobius_router::{ListenerConfig, VersionSnapshot};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Talking to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the host agent is unreachable: {0}")]
    Unreachable(String),
    #[error("the host agent refused: {0}")]
    Refused(String),
    #[error("cannot start the host agent: {0}")]
    Spawn(String),
}

/// A connection to the host agent.
#[derive(Clone)]
pub struct AgentClient {
    base: String,
    token: String,
    pid: u32,
    http: reqwest::Client,
}

impl std::fmt::Debug for AgentClient {
    // The token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").field("base", &self.base).field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl AgentClient {
    fn from_info(info: AgentInfo) -> Self {
        AgentClient {
            base: format!("http://{}", info.addr),
            token: info.token,
            pid: info.pid,
            http: reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().unwrap_or_default(),
        }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The running agent of `dir`, if there is one that answers.
    pub async fn connect(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join("agent.json")).ok()?;
        let info: AgentInfo = serde_json::from_slice(&bytes).ok()?;
        let client = AgentClient::from_info(info);
        client.instances().await.ok().map(|_| client)
    }

    /// The running agent of `dir`, or a new one started from `exe` (`mobius agent --dir DIR`),
    /// detached in its own session so it outlives the server.
    pub async fn connect_or_spawn(dir: &Path, exe: &Path) -> Result<Self, AgentError> {
        if let Some(client) = Self::connect(dir).await {
            return Ok(client);
        }
        std::fs::create_dir_all(dir).map_err(|e| AgentError::Spawn(format!("{}: {e}", dir.display())))?;
        let _ = std::fs::remove_file(dir.join("agent.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .map_err(|e| AgentError::Spawn(format!("agent.log: {e}")))?;
        let log2 = log.try_clone().map_err(|e| AgentError::Spawn(e.to_string()))?;
        let child = std::process::Command::new(exe)
            .arg("agent")
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| AgentError::Spawn(format!("{}: {e}", exe.display())))?;
        // The child is reaped by whoever inherits it; we only wait for it to be ready.
        let pid = child.id();
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(client) = Self::connect(dir).await {
                if client.pid == pid {
                    tracing::info!(pid, "host agent started");
                    return Ok(client);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(AgentError::Spawn(format!("it did not become ready in 10 s (see {})", dir.join("agent.log").display())))
    }

    async fn call<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, AgentError> {
        let response =
            request.bearer_auth(&self.token).send().await.map_err(|e| AgentError::Unreachable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let message = body["error"].as_str().unwrap_or("no reason given").to_string();
            return Err(AgentError::Refused(format!("{status}: {message}")));
        }
        if status == reqwest::StatusCode::NO_CONTENT {
            return serde_json::from_value(serde_json::Value::Null).map_err(|e| AgentError::Refused(e.to_string()));
        }
        response.json().await.map_err(|e| AgentError::Unreachable(e.to_string()))
    }

    pub async fn instances(&self) -> Result<Vec<InstanceStatus>, AgentError> {
        self.call(self.http.get(format!("{}/v1/instances", self.base))).await
    }

    pub async fn start_instance(&self, spec: &InstanceSpec) -> Result<InstanceStatus, AgentError> {
        self.call(self.http.put(format!("{}/v1/instances/{}", self.base, spec.id)).json(spec)).await
    }

    /// Drains (up to `drain`), stops and forgets an instance; `None` if it was not there.
    pub async fn stop_instance(&self, id: &str, drain: Duration) -> Result<Option<InstanceStatus>, AgentError> {
        let url = format!("{}/v1/instances/{id}?drain_ms={}", self.base, drain.as_millis());
        match self.call(self.http.delete(url)).await {
            Ok(status) => Ok(Some(status)),
            Err(AgentError::Refused(m)) if m.starts_with("404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn listeners(&self) -> Result<BTreeMap<String, ListenerState>, AgentError> {
        self.call(self.http.get(format!("{}/v1/listeners", self.base))).await
    }

    /// Applies a listener's table; when this returns, every new request uses it.
    pub async fn configure(&self, name: &str, config: &ListenerConfig) -> Result<ListenerState, AgentError> {
        self.call(self.http.put(format!("{}/v1/listeners/{name}", self.base)).json(config)).await
    }

    /// Hands a recreate to the agent, which finishes it on its own; the same plan
    /// again answers the status of the one under way.
    pub async fn recreate(
        &self,
        listener: &str,
        plan: &super::recreate::RecreatePlan,
    ) -> Result<super::recreate::RecreateStatus, AgentError> {
        self.call(self.http.post(format!("{}/v1/listeners/{listener}/recreate", self.base)).json(plan)).await
    }

    /// Where the newest recreate of a listener stands.
    pub async fn recreate_status(&self, listener: &str) -> Result<super::recreate::RecreateStatus, AgentError> {
        self.call(self.http.get(format!("{}/v1/listeners/{listener}/recreate", self.base))).await
    }

    pub async fn remove_listener(&self, name: &str) -> Result<(), AgentError> {
        match self.call::<()>(self.http.delete(format!("{}/v1/listeners/{name}", self.base))).await {
            Err(AgentError::Refused(m)) if m.starts_with("404") => Ok(()),
            other => other,
        }
    }

    /// Per-version counters of a listener, with the samples after each version's cursor.
    pub async fn samples(
        &self,
        listener: &str,
        since: &BTreeMap<String, u64>,
    ) -> Result<Vec<VersionSnapshot>, AgentError> {
        let request = SamplesRequest { listener: listener.to_string(), since: since.clone() };
        self.call(self.http.post(format!("{}/v1/samples", self.base)).json(&request)).await
    }

    /// The router's and instances' series in Prometheus' text format.
    pub async fn metrics(&self) -> Result<String, AgentError> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| AgentError::Unreachable(e.to_string()))?;
        response.text().await.map_err(|e| AgentError::Unreachable(e.to_string()))
    }
}
