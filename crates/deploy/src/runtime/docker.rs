//! The Docker runtime: an instance is a container of the service's image on the local
//! Docker Engine (`DOCKER_HOST` honoured), its port published on loopback at the port
//! the agent chose, with the service's env, resource limits and stop grace; its output
//! is appended to the instance's log file, as a process's is.

use super::{InstanceSpec, RunningInstance, Runtime, RuntimeError, Started};
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Instance containers carry this label (the instance id). They belong to the agent
/// and outlive `mobius serve`, like instance processes; `mobius run`'s cleanup never
/// touches them (they have no run owner).
pub const LABEL_INSTANCE: &str = "dev.mobius.instance";
pub const LABEL_SERVICE: &str = "dev.mobius.service";

/// Which agent a container belongs to (its directory), so two agents on one engine
/// never take each other's instances.
pub const LABEL_AGENT: &str = "dev.mobius.agent";

/// Runs instances as containers.
#[derive(Debug)]
pub struct DockerRuntime {
    docker: tokio::sync::OnceCell<Docker>,
    /// The agent's directory: part of every container's name and a label.
    agent: String,
}

fn failed(what: String, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Container(format!("{what}: {e}"))
}

/// The local Docker Engine as the docker CLI finds it (`DOCKER_HOST`, else the
/// socket), at an API version it speaks.
pub(crate) async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_defaults().map_err(|e| format!("cannot reach the Docker Engine: {e}"))?;
    docker.negotiate_version().await.map_err(|e| format!("cannot reach the Docker Engine: {e}"))
}

impl DockerRuntime {
    /// A runtime for the agent whose directory is `agent_dir`.
    pub fn for_agent(agent_dir: &Path) -> Self {
        DockerRuntime { docker: tokio::sync::OnceCell::new(), agent: agent_dir.display().to_string() }
    }

    async fn docker(&self) -> Result<&Docker, RuntimeError> {
        self.docker.get_or_try_init(|| async { connect().await.map_err(RuntimeError::Container) }).await
    }
}

/// A container name from the agent and an instance id (`production.web.v3.r7.1`):
/// the same after the agent restarts, never another agent's.
fn container_name(agent: &str, id: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    agent.hash(&mut hasher);
    let safe: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' }).collect();
    format!("mobius-{:08x}-{safe}", hasher.finish() as u32)
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    async fn start(
        &self,
        spec: &InstanceSpec,
        port: u16,
        log: &Path,
    ) -> Result<Box<dyn RunningInstance>, RuntimeError> {
        let image = spec.image.clone().unwrap_or_default();
        let docker = self.docker().await?.clone();
        if docker.inspect_image(&image).await.is_err() {
            let (name, tag) = image.rsplit_once(':').filter(|(_, t)| !t.contains('/')).unwrap_or((&image, "latest"));
            let mut pull = docker.create_image(
                Some(CreateImageOptionsBuilder::new().from_image(name).tag(tag).build()),
                None,
                None,
            );
            while let Some(step) = pull.next().await {
                step.map_err(|e| failed(format!("cannot pull {image}"), e))?;
            }
        }
        let name = container_name(&self.agent, &spec.id);
        // What an earlier start of this instance left (a crash of the agent) goes first.
        let _ = docker
            .remove_container(&name, Some(RemoveContainerOptionsBuilder::new().force(true).v(true).build()))
            .await;
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend([
            format!("PORT={port}"),
            format!("MOBIUS_SERVICE={}", spec.service),
            format!("MOBIUS_VERSION={}", spec.version),
            format!("MOBIUS_INSTANCE={}", spec.id),
        ]);
        let key = format!("{port}/tcp");
        let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(port.to_string()) };
        let mut binds = Vec::new();
        if spec.dir.is_dir() {
            binds.push(format!("{}:/release:ro", spec.dir.display()));
        }
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            // An empty `run` keeps the image's own command.
            cmd: (!spec.run.trim().is_empty())
                .then(|| vec!["sh".into(), "-c".into(), spec.run.replace("{port}", &port.to_string())]),
            env: Some(env),
            working_dir: spec.workdir.as_ref().map(|w| format!("/release/{w}")),
            labels: Some(HashMap::from([
                (LABEL_INSTANCE.to_string(), spec.id.clone()),
                (LABEL_SERVICE.to_string(), spec.service.clone()),
                (LABEL_AGENT.to_string(), self.agent.clone()),
            ])),
            exposed_ports: Some(vec![key.clone()]),
            stop_timeout: Some(spec.stop_grace.as_secs().max(1) as i64),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(key, Some(vec![binding]))])),
                binds: Some(binds),
                nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
                memory: spec.memory,
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body)
            .await
            .map_err(|e| failed(format!("cannot create a container of {image}"), e))?;
        if let Err(e) = docker.start_container(&created.id, None).await {
            let _ = docker
                .remove_container(&created.id, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
                .await;
            return Err(failed(format!("cannot start a container of {image}"), e));
        }
        let pid = docker
            .inspect_container(&created.id, None)
            .await
            .ok()
            .and_then(|i| i.state.and_then(|s| s.pid))
            .unwrap_or_default();
        // Its output, followed into the log file while it runs.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| RuntimeError::Log { path: log.display().to_string(), source })?;
        let (logs_docker, id) = (docker.clone(), created.id.clone());
        tokio::spawn(async move {
            let options = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true).build();
            let mut stream = logs_docker.logs(&id, Some(options));
            while let Some(Ok(chunk)) = stream.next().await {
                if file.write_all(&chunk.into_bytes()).is_err() {
                    break;
                }
            }
        });
        Ok(Box::new(ContainerInstance {
            docker,
            id: created.id,
            started: Started {
                pid: u32::try_from(pid).unwrap_or_default(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            },
        }))
    }
}

#[derive(Debug)]
struct ContainerInstance {
    docker: Docker,
    id: String,
    started: Started,
}

impl ContainerInstance {
    async fn exit_description(&self) -> String {
        let mut wait = self.docker.wait_container(&self.id, None::<WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(r)) => format!("exited with code {}", r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                format!("exited with code {code}")
            }
            Some(Err(e)) => format!("could not be waited for: {e}"),
            None => "exited".to_string(),
        }
    }

    async fn remove(&self) {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        if let Err(e) = self.docker.remove_container(&self.id, Some(options)).await {
            tracing::warn!(container = %self.id, error = %e, "cannot remove an instance container");
        }
    }
}

#[async_trait::async_trait]
impl RunningInstance for ContainerInstance {
    fn started(&self) -> &Started {
        &self.started
    }

    async fn wait(&mut self) -> String {
        let description = self.exit_description().await;
        self.remove().await;
        description
    }

    async fn stop(&mut self, grace: Duration) -> String {
        // SIGTERM (or the image's STOPSIGNAL), then SIGKILL after the grace period.
        let options = StopContainerOptionsBuilder::new().t(grace.as_secs().max(1) as i32).build();
        let stopped = self.docker.stop_container(&self.id, Some(options)).await;
        let description = match stopped {
            Ok(()) => self.exit_description().await,
            Err(e) => format!("could not be stopped: {e}"),
        };
        self.remove().await;
        description
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_ids_make_valid_container_names_of_their_agent() {
        let a = super::container_name("/srv/a", "production.web.v3.r7.1");
        assert!(a.starts_with("mobius-") && a.ends_with("-production.web.v3.r7.1"), "{a}");
        assert_eq!(a, super::container_name("/srv/a", "production.web.v3.r7.1"));
        assert_ne!(a, super::container_name("/srv/b", "production.web.v3.r7.1"));
        assert!(super::container_name("/srv/a", "a/b c").ends_with("-a_b_c"));
    }
}
