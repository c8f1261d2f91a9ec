//! Runtimes start and stop service instances; the agent supervises them through this seam
//! so Docker and Kubernetes runtimes can plug in beside the local process one.

pub mod docker;
pub mod process;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything needed to start one instance of one release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Unique on the host, for example `production-web-v3-1`.
    pub id: String,
    pub service: String,
    pub version: String,
    /// The environment it serves (labels its metrics).
    #[serde(default)]
    pub environment: String,
    /// Where it exposes Prometheus metrics, when it does.
    #[serde(default)]
    pub metrics_path: Option<String>,
    /// The unpacked release.
    pub dir: PathBuf,
    /// A directory inside `dir` to start in.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Run by `sh -c` after `{port}` is replaced.
    pub run: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub health_path: String,
    #[serde(with = "millis")]
    pub health_interval: Duration,
    #[serde(with = "millis")]
    pub health_timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    #[serde(with = "millis")]
    pub stop_grace: Duration,
    /// The image of a `runtime: docker` service: the instance is a container of it
    /// (`run`, when not empty, is its command); a process when absent.
    #[serde(default)]
    pub image: Option<String>,
    /// CPUs a container may use (`--cpus`).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Bytes of memory a container may use (`--memory`).
    #[serde(default)]
    pub memory: Option<i64>,
}

/// A started process, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub pid: u32,
    pub addr: SocketAddr,
}

/// Why a runtime could not start an instance.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot start `{command}` in {dir}: {source}")]
    Spawn { command: String, dir: String, source: std::io::Error },
    #[error("no free port: {0}")]
    Port(std::io::Error),
    #[error("cannot open the log file {path}: {source}")]
    Log { path: String, source: std::io::Error },
    #[error("{0}")]
    Container(String),
}

/// Processes for services without an image, containers for those with one.
#[derive(Debug)]
pub struct HostRuntime {
    process: process::ProcessRuntime,
    docker: docker::DockerRuntime,
}

impl HostRuntime {
    /// The runtime of the agent whose directory is `agent_dir`.
    pub fn for_agent(agent_dir: &std::path::Path) -> Self {
        HostRuntime { process: process::ProcessRuntime, docker: docker::DockerRuntime::for_agent(agent_dir) }
    }
}

#[async_trait::async_trait]
impl Runtime for HostRuntime {
    async fn start(
        &self,
        spec: &InstanceSpec,
        port: u16,
        log: &std::path::Path,
    ) -> Result<Box<dyn RunningInstance>, RuntimeError> {
        match spec.image {
            Some(_) => self.docker.start(spec, port, log).await,
            None => self.process.start(spec, port, log).await,
        }
    }
}

/// A way to run instances on a port the agent chose (kept across restarts, so the
/// router's backend address stays valid). `start` returns once the process exists (not once it is
/// healthy: the agent's health checks decide that); `wait` resolves when it exits.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + std::fmt::Debug {
    async fn start(
        &self,
        spec: &InstanceSpec,
        port: u16,
        log: &std::path::Path,
    ) -> Result<Box<dyn RunningInstance>, RuntimeError>;
}

/// One running process (or container) of an instance.
#[async_trait::async_trait]
pub trait RunningInstance: Send + Sync + std::fmt::Debug {
    fn started(&self) -> &Started;
    /// Waits for the instance to exit and returns a description of how it ended.
    async fn wait(&mut self) -> String;
    /// Asks it to stop, waits up to `grace`, then kills it.
    async fn stop(&mut self, grace: Duration) -> String;
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
