//! A job's containers: its own `container:` (steps run in it with GitHub's paths) and
//! its `services:` on a network of the job's, health-checked before the first step,
//! their logs printed and everything removed when the job ends.

use super::engine::{DockerError, Engine, HealthState, PullPolicy};
use super::spec::{self, ContainerSpec};
use crate::output::StepOutput;
use crate::process::{Exit, OutputSink, ProcessSpec};
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig, PortBinding};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Host paths and where a job container sees them, longest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathMap {
    pairs: Vec<(String, String)>,
}

impl PathMap {
    pub fn add(&mut self, host: &Path, container: &str) {
        self.pairs.push((host.display().to_string(), container.to_string()));
        self.pairs.sort_by_key(|(h, _)| std::cmp::Reverse(h.len()));
    }

    /// The mounts: host path and container path.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(h, c)| (h.as_str(), c.as_str()))
    }

    /// A value with a leading host path rewritten to the container's path; anything
    /// else unchanged. `PATH`-like lists are rewritten part by part.
    pub fn to_container(&self, value: &str) -> String {
        if value.contains(':') && value.split(':').all(|p| p.starts_with('/')) {
            return value.split(':').map(|p| self.one_to_container(p)).collect::<Vec<_>>().join(":");
        }
        self.one_to_container(value)
    }

    fn one_to_container(&self, value: &str) -> String {
        for (host, container) in &self.pairs {
            if let Some(rest) = value.strip_prefix(host.as_str()) {
                if rest.is_empty() || rest.starts_with('/') {
                    return format!("{container}{rest}");
                }
            }
        }
        value.to_string()
    }

    /// The host path behind a container path, when it is inside a mount.
    pub fn to_host(&self, value: &str) -> Option<PathBuf> {
        let mut best: Option<(&str, &str)> = None;
        for (host, container) in &self.pairs {
            if let Some(rest) = value.strip_prefix(container.as_str()) {
                if (rest.is_empty() || rest.starts_with('/')) && best.is_none_or(|(_, c)| c.len() < container.len()) {
                    best = Some((host, container));
                }
            }
        }
        best.map(|(host, container)| PathBuf::from(format!("{host}{}", &value[container.len()..])))
    }
}

/// The job's own container, where its steps run.
pub(crate) struct JobContainer {
    pub engine: Engine,
    pub id: String,
    pub paths: PathMap,
    /// The image's `PATH`, under the steps' `GITHUB_PATH` additions.
    pub path: String,
}

impl JobContainer {
    /// Runs a step's process in the container: paths in its arguments, working
    /// directory and environment are rewritten to the container's.
    pub async fn exec<S: OutputSink>(
        &self,
        spec: &ProcessSpec,
        sink: Arc<Mutex<S>>,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> std::io::Result<Exit> {
        let mut argv = vec![self.paths.to_container(&spec.program)];
        argv.extend(spec.args.iter().map(|a| self.paths.to_container(a)));
        let env = spec.env.iter().map(|(k, v)| format!("{k}={}", self.paths.to_container(v))).collect();
        let cwd = self.paths.to_container(&spec.cwd.display().to_string());
        self.engine.exec(&self.id, argv, env, Some(cwd), sink, timeout, cancel, grace).await
    }
}

/// Everything created for one job; removed by [`JobDocker::stop`].
pub(crate) struct JobDocker {
    engine: Engine,
    network: Option<String>,
    /// The network's name, which container steps join too.
    pub network_name: Option<String>,
    services: Vec<(String, String)>,
    pub container: Option<Arc<JobContainer>>,
    /// `job.container` and `job.services` for expressions.
    pub container_ctx: Value,
    pub services_ctx: Value,
}

/// Where a job's directories are on the host.
pub(crate) struct JobDirs<'a> {
    pub workspace: &'a Path,
    pub temp: &'a Path,
    pub files: &'a Path,
    pub home: &'a Path,
    pub tool_cache: &'a Path,
    pub event: &'a Path,
    pub action_dir: Option<&'a Path>,
    pub repository: &'a str,
    /// The host's node, mounted for JavaScript actions as GitHub mounts its own.
    pub node: Option<&'a Path>,
}

/// GitHub's paths in a job container.
pub(crate) fn container_paths(dirs: &JobDirs) -> PathMap {
    let name = dirs.repository.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("repository");
    let mut map = PathMap::default();
    map.add(dirs.workspace, &format!("/__w/{name}/{name}"));
    map.add(dirs.temp, "/__w/_temp");
    map.add(dirs.files, "/__w/_temp/_runner_file_commands");
    map.add(dirs.home, "/github/home");
    map.add(dirs.tool_cache, "/__t");
    map.add(dirs.event, "/github/workflow/event.json");
    if let Some(actions) = dirs.action_dir {
        map.add(actions, "/__w/_actions");
    }
    if let Some(node) = dirs.node {
        map.add(node, "/__e/node/bin/node");
    }
    map
}

/// The directories a workspace's git borrows objects from (alternates, followed),
/// mounted read-only at the same path so git works inside the container.
fn borrowed_objects(workspace: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut queue = vec![workspace.join(".git/objects")];
    while let Some(objects) = queue.pop() {
        let Ok(text) = std::fs::read_to_string(objects.join("info/alternates")) else { continue };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let p = PathBuf::from(line);
            if p.is_dir() && !out.contains(&p) && out.len() < 16 {
                out.push(p.clone());
                queue.push(p);
            }
        }
    }
    out
}

/// Where a job's container or service setup went wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("{0}")]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("service '{service}' is unhealthy: {output}")]
    Unhealthy { service: String, output: String },
    #[error("service '{service}' stopped (exit code {code}) before it was ready:\n{logs}")]
    Exited { service: String, code: i64, logs: String },
    #[error("the job was cancelled while its services started")]
    Cancelled,
}

/// What the job asked for: its container and its services, evaluated.
pub(crate) struct Wanted {
    pub container: Option<ContainerSpec>,
    pub services: Vec<(String, ContainerSpec)>,
}

impl Wanted {
    pub fn read(container: Option<&Value>, services: Option<&Value>) -> Result<Wanted, spec::SpecError> {
        let container = match container {
            Some(v) => spec::parse(v, "container")?,
            None => None,
        };
        let mut list = Vec::new();
        match services {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, v) in map {
                    if let Some(s) = spec::parse(v, &format!("services.{key}"))? {
                        list.push((key.clone(), s));
                    }
                }
            }
            Some(_) => {
                return Err(spec::SpecError {
                    field: "services".into(),
                    message: "expected a mapping of services".into(),
                })
            }
        }
        Ok(Wanted { container, services: list })
    }

    pub fn is_empty(&self) -> bool {
        self.container.is_none() && self.services.is_empty()
    }
}

fn credentials(spec: &ContainerSpec) -> Option<DockerCredentials> {
    spec.credentials.as_ref().map(|c| DockerCredentials {
        username: Some(c.username.clone()),
        password: Some(c.password.clone()),
        serveraddress: Some(super::engine::registry_of(&spec.image)),
        ..Default::default()
    })
}

/// The container's create body from its spec; `binds` and the network are the job's.
fn body(
    spec: &ContainerSpec,
    labels: HashMap<String, String>,
    network: Option<(&str, &str)>,
    binds: Vec<String>,
) -> ContainerCreateBody {
    let o = &spec.options;
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(o.env.iter().map(|(k, v)| format!("{k}={v}")));
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        port_bindings.insert(
            p.key(),
            Some(vec![PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host.map(|h| h.to_string()).unwrap_or_default()),
            }]),
        );
    }
    let healthcheck = if o.no_healthcheck {
        Some(HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() })
    } else {
        o.health.as_ref().map(|h| HealthConfig {
            test: h.cmd.as_ref().map(|c| vec!["CMD-SHELL".to_string(), c.clone()]),
            interval: h.interval.map(|d| d.as_nanos() as i64),
            timeout: h.timeout.map(|d| d.as_nanos() as i64),
            retries: h.retries,
            start_period: h.start_period.map(|d| d.as_nanos() as i64),
            ..Default::default()
        })
    };
    let mut all_binds = binds;
    all_binds.extend(spec.volumes.iter().cloned());
    all_binds.extend(o.volumes.iter().cloned());
    let mut all_labels = labels;
    all_labels.extend(o.labels.iter().cloned());
    let networking_config = network.map(|(name, alias)| {
        let mut aliases = vec![alias.to_string()];
        aliases.extend(o.network_aliases.iter().cloned());
        NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                name.to_string(),
                EndpointSettings { aliases: Some(aliases), ..Default::default() },
            )])),
        }
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(env),
        user: o.user.clone(),
        hostname: o.hostname.clone(),
        labels: Some(all_labels),
        exposed_ports: Some(spec.ports.iter().map(|p| p.key()).collect()),
        healthcheck,
        entrypoint: o.entrypoint.as_ref().map(|e| vec![e.clone()]),
        working_dir: o.workdir.clone(),
        host_config: Some(HostConfig {
            binds: Some(all_binds),
            port_bindings: Some(port_bindings),
            network_mode: network.map(|(n, _)| n.to_string()),
            nano_cpus: o.nano_cpus,
            memory: o.memory,
            shm_size: o.shm_size,
            privileged: Some(o.privileged),
            init: Some(o.init),
            cap_add: Some(o.cap_add.clone()),
            cap_drop: Some(o.cap_drop.clone()),
            extra_hosts: Some(o.add_hosts.clone()),
            tmpfs: (!o.tmpfs.is_empty()).then(|| o.tmpfs.iter().cloned().collect()),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

/// A name Docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn docker_name(parts: &[&str]) -> String {
    let raw = parts.join("-");
    let s: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' }).take(120).collect();
    format!("mobius-{}", s.trim_start_matches(['_', '.', '-']))
}

/// What a job's containers are started with.
pub(crate) struct Setup<'a> {
    pub engine: &'a Engine,
    pub pull: PullPolicy,
    pub run_id: &'a str,
    /// The job's folder name, which names and labels its containers.
    pub job: &'a str,
    pub dirs: &'a JobDirs<'a>,
}

/// Starts the job's services and container. Progress goes to `out`, the job's
/// "Initialize containers" step. On failure what was created is removed again.
pub(crate) async fn start(
    setup: &Setup<'_>,
    wanted: Wanted,
    out: &mut StepOutput,
    cancel: &CancellationToken,
) -> Result<JobDocker, SetupError> {
    let mut docker = JobDocker {
        engine: setup.engine.clone(),
        network: None,
        network_name: None,
        services: Vec::new(),
        container: None,
        container_ctx: json!({}),
        services_ctx: json!({}),
    };
    match start_inner(&mut docker, setup, wanted, out, cancel).await {
        Ok(()) => Ok(docker),
        Err(e) => {
            docker.remove().await;
            Err(e)
        }
    }
}

async fn start_inner(
    docker: &mut JobDocker,
    setup: &Setup<'_>,
    wanted: Wanted,
    out: &mut StepOutput,
    cancel: &CancellationToken,
) -> Result<(), SetupError> {
    let (pull, run_id, job, dirs) = (setup.pull, setup.run_id, setup.job, setup.dirs);
    let engine = docker.engine.clone();
    let labels = engine.labels(run_id, job);
    let mut say = |line: &str| out.message(line);
    for image in wanted.container.iter().chain(wanted.services.iter().map(|(_, s)| s)) {
        engine.ensure_image(&image.image, pull, credentials(image), &mut say).await?;
    }
    let network_name = docker_name(&[run_id, job]);
    if !wanted.services.is_empty() {
        let id = engine.create_network(&network_name, labels.clone()).await?;
        docker.network = Some(id);
        docker.network_name = Some(network_name.clone());
        say(&format!("Created network {network_name}"));
    }
    let network = docker.network.as_ref().map(|_| network_name.as_str());
    let mut services_ctx = Map::new();
    for (key, service) in &wanted.services {
        let name = docker_name(&[run_id, job, key]);
        let id =
            engine.start(&name, body(service, labels.clone(), network.map(|n| (n, key.as_str())), Vec::new())).await?;
        docker.services.push((key.clone(), id.clone()));
        let ports = engine.describe(&id).await?.ports;
        say(&format!("Started service {key} ({}) as {name}", service.image));
        let ports: Map<String, Value> =
            ports.into_iter().map(|(k, v)| (k.split('/').next().unwrap_or(&k).to_string(), Value::String(v))).collect();
        services_ctx.insert(key.clone(), json!({"id": id, "network": network_name, "ports": ports}));
    }
    docker.services_ctx = Value::Object(services_ctx);
    if let Some(spec) = &wanted.container {
        let paths = container_paths(dirs);
        let mut binds: Vec<String> = Vec::new();
        for (host, container) in &paths.pairs {
            let ro = [dirs.action_dir, dirs.node].iter().flatten().any(|p| p.display().to_string() == *host);
            // A symlinked node is mounted from the file it names.
            let source = match dirs.node.filter(|n| n.display().to_string() == *host) {
                Some(node) => std::fs::canonicalize(node).unwrap_or_else(|_| node.to_path_buf()).display().to_string(),
                None => host.clone(),
            };
            binds.push(format!("{source}:{container}{}", if ro { ":ro" } else { "" }));
        }
        for p in borrowed_objects(dirs.workspace) {
            binds.push(format!("{0}:{0}:ro", p.display()));
        }
        let mut spec = spec.clone();
        // GitHub keeps its job container idling; steps are `exec`ed into it.
        let mut body = body(&spec, labels.clone(), network.map(|n| (n, job)), binds);
        if spec.options.entrypoint.is_none() {
            body.entrypoint = Some(vec!["tail".into()]);
            body.cmd = Some(vec!["-f".into(), "/dev/null".into()]);
        }
        let workspace = paths.to_container(&dirs.workspace.display().to_string());
        body.working_dir = Some(spec.options.workdir.take().unwrap_or_else(|| workspace.clone()));
        let name = docker_name(&[run_id, job]);
        let id = engine.start(&name, body).await?;
        say(&format!("Started job container ({}) as {name}", spec.image));
        let described = engine.describe(&id).await?;
        let path = described
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        let ports: Map<String, Value> = described
            .ports
            .into_iter()
            .map(|(k, v)| (k.split('/').next().unwrap_or(&k).to_string(), Value::String(v)))
            .collect();
        docker.container_ctx = json!({"id": id, "network": if network.is_some() { network_name.clone() } else { String::new() }, "ports": ports});
        docker.container = Some(Arc::new(JobContainer { engine: engine.clone(), id, paths, path }));
    }
    wait_healthy(&engine, &docker.services, out, cancel).await
}

/// Waits until every service is healthy (or running, without a health check).
async fn wait_healthy(
    engine: &Engine,
    services: &[(String, String)],
    out: &mut StepOutput,
    cancel: &CancellationToken,
) -> Result<(), SetupError> {
    let started = Instant::now();
    for (key, id) in services {
        // An inspect costs a millisecond or two: poll often, so no job waits long
        // after its service turned healthy.
        let delay = Duration::from_millis(20);
        loop {
            let health = engine.health(id).await?;
            if !health.running {
                return Err(SetupError::Exited {
                    service: key.clone(),
                    code: health.exit_code.unwrap_or(-1),
                    logs: tail(&engine.logs(id).await, 40),
                });
            }
            match health.status {
                HealthState::NoCheck | HealthState::Healthy => break,
                HealthState::Unhealthy => {
                    return Err(SetupError::Unhealthy {
                        service: key.clone(),
                        output: health.last_output.trim().into(),
                    })
                }
                HealthState::Starting => {}
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return Err(SetupError::Cancelled),
            }
        }
        out.message(&format!("Service {key} is ready ({} ms)", started.elapsed().as_millis()));
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl JobDocker {
    /// Prints each service's logs to `out` (as GitHub does in "Stop containers"),
    /// then removes every container and the network.
    pub async fn stop(self, out: &mut StepOutput) {
        let logs = futures_util::future::join_all(self.services.iter().map(|(_, id)| self.engine.logs(id))).await;
        for ((key, _), logs) in self.services.iter().zip(logs) {
            out.message(&format!("##[group]Logs of service {key}"));
            for line in logs.lines() {
                out.message(line);
            }
            out.message("##[endgroup]");
        }
        self.remove().await;
    }

    /// Removes the containers at once, then the network they were on.
    async fn remove(&self) {
        let ids = self.container.iter().map(|c| c.id.as_str()).chain(self.services.iter().map(|(_, id)| id.as_str()));
        futures_util::future::join_all(ids.map(|id| self.engine.remove_container(id))).await;
        if let Some(n) = &self.network {
            self.engine.remove_network(n).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_both_ways_and_leave_the_rest_alone() {
        let mut m = PathMap::default();
        m.add(Path::new("/state/run/jobs/001/workspace"), "/__w/app/app");
        m.add(Path::new("/state/run/jobs/001/temp"), "/__w/_temp");
        m.add(Path::new("/state/run/jobs/001/files"), "/__w/_temp/_runner_file_commands");
        assert_eq!(m.to_container("/state/run/jobs/001/workspace/src"), "/__w/app/app/src");
        assert_eq!(m.to_container("/state/run/jobs/001/workspaces"), "/state/run/jobs/001/workspaces");
        assert_eq!(
            m.to_container("/state/run/jobs/001/files/set_env_001"),
            "/__w/_temp/_runner_file_commands/set_env_001"
        );
        assert_eq!(m.to_container("/x/bin:/state/run/jobs/001/temp/bin"), "/x/bin:/__w/_temp/bin");
        assert_eq!(m.to_container("a:b"), "a:b");
        assert_eq!(m.to_host("/__w/_temp/_runner_file_commands/x"), Some(PathBuf::from("/state/run/jobs/001/files/x")));
        assert_eq!(m.to_host("/__w/_temp/y"), Some(PathBuf::from("/state/run/jobs/001/temp/y")));
        assert_eq!(m.to_host("/etc"), None);
    }

    #[test]
    fn docker_names_are_valid() {
        assert_eq!(docker_name(&["17", "001-build (a, b)"]), "mobius-17-001-build__a__b_");
    }
}
