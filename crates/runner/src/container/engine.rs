//! The Docker Engine through bollard (`DOCKER_HOST` honoured): images pulled by
//! policy, labelled containers and networks, commands run with `exec` and their output
//! streamed line by line, and what a killed Mobius left behind reaped by label.

use crate::process::{Exit, OutputSink};
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, ExecConfig, HealthStatusEnum, NetworkCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, StopContainerOptionsBuilder, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Every object Mobius creates carries this label...
pub const LABEL_MANAGED: &str = "dev.mobius.managed";
/// ...and its owner, `host:pid:start-ticks`, so a later start can tell a live owner from a dead one.
pub const LABEL_OWNER: &str = "dev.mobius.owner";
/// The run and job it belongs to, for people reading `docker ps`.
pub const LABEL_RUN: &str = "dev.mobius.run";
pub const LABEL_JOB: &str = "dev.mobius.job";

/// A Docker API call that failed, with what Mobius was doing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct DockerError {
    pub what: String,
    #[source]
    pub source: bollard::errors::Error,
}

fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    let what = what.into();
    move |source| DockerError { what, source }
}

/// When an image is pulled (`--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only when the engine does not have it (the default).
    #[default]
    Missing,
    Always,
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(format!("'{other}' is not a pull policy; expected missing, always or never")),
        }
    }
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    owner: String,
}

/// This process as an owner label: host name, pid and the kernel's start time of the
/// process (so a reused pid is not mistaken for a live owner).
fn owner_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{}:{pid}:{start}", host_name()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// Whether the owner named by a label is a process still alive on this host. Owners
/// on other hosts (a shared remote engine) are never judged dead from here.
fn owner_is_gone(label: &str) -> bool {
    let mut parts = label.rsplitn(3, ':');
    let (Some(_start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != host_name() {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) => owner_of(pid).as_deref() != Some(label),
        Err(_) => false,
    }
}

impl Engine {
    /// Connects as the docker CLI would (`DOCKER_HOST`, else the local socket) and
    /// agrees on an API version the engine speaks.
    pub async fn connect() -> Result<Engine, DockerError> {
        let where_ = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let docker =
            Docker::connect_with_defaults().map_err(api(format!("cannot reach the Docker Engine at {where_}")))?;
        let docker =
            docker.negotiate_version().await.map_err(api(format!("cannot reach the Docker Engine at {where_}")))?;
        // Negotiating asked the engine for its version: it answers.
        let owner = owner_of(std::process::id()).unwrap_or_else(|| format!("{}:{}:0", host_name(), std::process::id()));
        Ok(Engine { docker, owner })
    }

    /// The labels of an object created for a job of a run.
    pub fn labels(&self, run: &str, job: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_OWNER.to_string(), self.owner.clone()),
            (LABEL_RUN.to_string(), run.to_string()),
            (LABEL_JOB.to_string(), job.to_string()),
        ])
    }

    /// Removes the containers, networks and volumes that a Mobius process which is no
    /// longer running (killed with `kill -9`, say) left behind. Returns how many.
    pub async fn reap_orphans(&self) -> Result<usize, DockerError> {
        let filters = HashMap::from([("label".to_string(), vec![LABEL_MANAGED.to_string()])]);
        let orphaned = |labels: Option<&HashMap<String, String>>| {
            labels.and_then(|l| l.get(LABEL_OWNER)).is_some_and(|o| owner_is_gone(o))
        };
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&filters).build()))
            .await
            .map_err(api("cannot list Mobius's containers"))?;
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(api("cannot list Mobius's networks"))?;
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filters).build()))
            .await
            .map_err(api("cannot list Mobius's volumes"))?;
        // Containers first: a network or volume in use cannot go.
        let containers: Vec<String> =
            containers.into_iter().filter(|c| orphaned(c.labels.as_ref())).filter_map(|c| c.id).collect();
        let networks: Vec<String> =
            networks.into_iter().filter(|n| orphaned(n.labels.as_ref())).filter_map(|n| n.id).collect();
        let volumes: Vec<String> = volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|v| orphaned(Some(&v.labels)))
            .map(|v| v.name)
            .collect();
        for id in &containers {
            self.remove_container(id).await;
        }
        for id in &networks {
            self.remove_network(id).await;
        }
        for name in &volumes {
            let _ = self.docker.remove_volume(name, Some(RemoveVolumeOptions { force: true })).await;
        }
        let removed = containers.len() + networks.len() + volumes.len();
        if removed > 0 {
            tracing::info!(removed, "removed Docker objects left by a Mobius process that is gone");
        }
        Ok(removed)
    }

    /// Makes sure the engine has `image`, pulling it as the policy says; progress lines
    /// go to `say`.
    pub async fn ensure_image(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: Option<DockerCredentials>,
        say: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), DockerError> {
        let present = self.docker.inspect_image(image).await.is_ok();
        match (policy, present) {
            (PullPolicy::Never, true) | (PullPolicy::Missing, true) => return Ok(()),
            (PullPolicy::Never, false) => {
                return Err(DockerError {
                    what: format!("the image '{image}' is not on this engine and --pull never forbids pulling it"),
                    source: bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        message: "no such image".into(),
                    },
                })
            }
            _ => {}
        }
        say(&format!("Pulling {image}"));
        let credentials = credentials.or_else(|| config_credentials(image));
        let (name, tag) = split_reference(image);
        let options = CreateImageOptionsBuilder::new().from_image(name).tag(tag).build();
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(progress) = stream.next().await {
            let progress = progress.map_err(api(format!("cannot pull '{image}'")))?;
            if let Some(status) = progress.status.filter(|s| s.starts_with("Status") || s.starts_with("Digest")) {
                say(&status);
            }
        }
        Ok(())
    }

    pub async fn create_network(&self, name: &str, labels: HashMap<String, String>) -> Result<String, DockerError> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        let created =
            self.docker.create_network(request).await.map_err(api(format!("cannot create network {name}")))?;
        Ok(created.id)
    }

    /// Creates and starts a container; returns its id.
    pub async fn start(&self, name: &str, body: ContainerCreateBody) -> Result<String, DockerError> {
        let image = body.image.clone().unwrap_or_default();
        let created = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::new().name(name).build()), body)
            .await
            .map_err(api(format!("cannot create a container from '{image}'")))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            self.remove_container(&created.id).await;
            return Err(api(format!("cannot start a container from '{image}'"))(e));
        }
        Ok(created.id)
    }

    /// What the engine says of a running container: the host ports it published, by
    /// container port (`5432/tcp` → `49153`), and the image's environment.
    pub async fn describe(&self, id: &str) -> Result<Described, DockerError> {
        let info = self.docker.inspect_container(id, None).await.map_err(api("cannot inspect a container"))?;
        let mut ports = HashMap::new();
        for (key, bindings) in info.network_settings.and_then(|n| n.ports).unwrap_or_default() {
            if let Some(port) = bindings.unwrap_or_default().into_iter().find_map(|b| b.host_port) {
                ports.insert(key, port);
            }
        }
        let env = info
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Ok(Described { ports, env })
    }

    /// The container's health: whether it runs, its health status (if it has a check)
    /// and the output of its last check.
    pub async fn health(&self, id: &str) -> Result<Health, DockerError> {
        let info = self.docker.inspect_container(id, None).await.map_err(api("cannot inspect a container"))?;
        let state = info.state.unwrap_or_default();
        let health = state.health.unwrap_or_default();
        let last = health.log.unwrap_or_default().pop().and_then(|r| r.output).unwrap_or_default();
        let status = match health.status {
            None | Some(HealthStatusEnum::EMPTY) | Some(HealthStatusEnum::NONE) => HealthState::NoCheck,
            Some(HealthStatusEnum::STARTING) => HealthState::Starting,
            Some(HealthStatusEnum::HEALTHY) => HealthState::Healthy,
            Some(HealthStatusEnum::UNHEALTHY) => HealthState::Unhealthy,
        };
        Ok(Health { running: state.running.unwrap_or(false), exit_code: state.exit_code, status, last_output: last })
    }

    /// Everything a container printed, stdout and stderr in order.
    pub async fn logs(&self, id: &str) -> String {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            if text.len() > 4 * 1024 * 1024 {
                text.push_str("\n[logs cut at 4 MiB]\n");
                break;
            }
        }
        text
    }

    /// Removes a container with its anonymous volumes, running or not; failures are logged.
    pub async fn remove_container(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        if let Err(e) = self.docker.remove_container(id, Some(options)).await {
            tracing::warn!(container = id, error = %e, "cannot remove a container");
        }
    }

    pub async fn remove_network(&self, id: &str) {
        if let Err(e) = self.docker.remove_network(id).await {
            tracing::warn!(network = id, error = %e, "cannot remove a network");
        }
    }

    /// Runs a command in a running container, its output to `sink`. A timeout or
    /// cancellation stops the command's process group (TERM, `grace`, KILL).
    #[allow(clippy::too_many_arguments)] // reason: one exec's parameters, kept explicit
    pub async fn exec<S: OutputSink>(
        &self,
        container: &str,
        argv: Vec<String>,
        env: Vec<String>,
        cwd: Option<String>,
        sink: Arc<Mutex<S>>,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> std::io::Result<Exit> {
        let io = |e: bollard::errors::Error| std::io::Error::other(e);
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(argv),
            env: Some(env),
            working_dir: cwd,
            ..Default::default()
        };
        let exec = self.docker.create_exec(container, config).await.map_err(io)?;
        let started = self.docker.start_exec(&exec.id, None).await.map_err(io)?;
        let bollard::exec::StartExecResults::Attached { output, .. } = started else {
            return Err(std::io::Error::other("the exec did not attach"));
        };
        let exec_id = exec.id.clone();
        let stopped = stream_output(output, &sink, timeout, cancel, || self.stop_exec(&exec_id, grace)).await;
        if let Some(exit) = stopped {
            return Ok(exit);
        }
        let info = self.docker.inspect_exec(&exec.id).await.map_err(io)?;
        Ok(Exit::Code(info.exit_code.unwrap_or(-1) as i32))
    }

    /// Creates a container, streams its output to `sink` until it exits, and removes it:
    /// a `docker://` step or a Docker action. A timeout or cancellation stops it (TERM,
    /// `grace`, KILL).
    #[allow(clippy::too_many_arguments)] // reason: one container's run, kept explicit
    pub async fn run_to_end<S: OutputSink>(
        &self,
        name: &str,
        body: ContainerCreateBody,
        sink: Arc<Mutex<S>>,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> std::io::Result<Exit> {
        let io = |e: bollard::errors::Error| std::io::Error::other(e);
        let image = body.image.clone().unwrap_or_default();
        let created = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::new().name(name).build()), body)
            .await
            .map_err(|e| std::io::Error::other(format!("cannot create a container from '{image}': {e}")))?;
        let id = created.id;
        let result = async {
            let attach = AttachContainerOptionsBuilder::new().stream(true).logs(true).stdout(true).stderr(true).build();
            let output = self.docker.attach_container(&id, Some(attach)).await.map_err(io)?.output;
            self.docker.start_container(&id, None).await.map_err(io)?;
            let stopped = stream_output(output, &sink, timeout, cancel, || self.stop_container(&id, grace)).await;
            if let Some(exit) = stopped {
                return Ok(exit);
            }
            let mut wait = self.docker.wait_container(&id, None::<WaitContainerOptions>);
            let code = match wait.next().await {
                Some(Ok(r)) => r.status_code,
                // A non-zero exit arrives as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(io(e)),
                None => -1,
            };
            Ok(Exit::Code(code as i32))
        }
        .await;
        self.remove_container(&id).await;
        result
    }

    async fn stop_container(&self, id: &str, grace: Duration) {
        let options = StopContainerOptionsBuilder::new().t(grace.as_secs().max(1) as i32).build();
        if let Err(e) = self.docker.stop_container(id, Some(options)).await {
            tracing::debug!(container = id, error = %e, "cannot stop a container");
        }
    }

    /// Builds `dockerfile` in `context` as `tag`, unless the engine has `tag` already
    /// (tags carry the context's content hash). Build output goes to `say`.
    pub async fn build(
        &self,
        context: &std::path::Path,
        dockerfile: &str,
        tag: &str,
        say: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), DockerError> {
        if self.docker.inspect_image(tag).await.is_ok() {
            return Ok(());
        }
        self.build_tagged(context, dockerfile, &[tag.to_string()], HashMap::new(), say).await.map(|_| ())
    }

    /// Builds `dockerfile` (a path inside `context`) with build args, tags the image
    /// with every tag, and returns its id (`sha256:...`).
    pub async fn build_tagged(
        &self,
        context: &std::path::Path,
        dockerfile: &str,
        tags: &[String],
        build_args: HashMap<String, String>,
        say: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String, DockerError> {
        let first = tags.first().cloned().unwrap_or_else(|| format!("mobius-build:{}", std::process::id()));
        let tag = first.as_str();
        let context_dir = context.to_path_buf();
        let archive = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut builder = tar::Builder::new(Vec::new());
            builder.follow_symlinks(false);
            builder.append_dir_all(".", &context_dir)?;
            builder.into_inner()
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| DockerError {
            what: format!("cannot pack the build context {}", context.display()),
            source: bollard::errors::Error::IOError { err: e },
        })?;
        say(&format!("Building {tag} from {dockerfile}"));
        let options = BuildImageOptionsBuilder::new()
            .dockerfile(dockerfile)
            .t(tag)
            .rm(true)
            .forcerm(true)
            .buildargs(&build_args)
            .build();
        let mut stream = self.docker.build_image(options, None, Some(bollard::body_full(bytes::Bytes::from(archive))));
        while let Some(step) = stream.next().await {
            let info = step.map_err(api(format!("cannot build {tag}")))?;
            if let Some(detail) = info.error_detail {
                return Err(DockerError {
                    what: format!("cannot build {tag}"),
                    source: bollard::errors::Error::DockerResponseServerError {
                        status_code: 500,
                        message: detail.message.unwrap_or_default(),
                    },
                });
            }
            if let Some(text) = info.stream {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    say(line);
                }
            }
        }
        let id = self.docker.inspect_image(tag).await.map_err(api(format!("cannot inspect {tag}")))?.id;
        for extra in tags.iter().skip(1) {
            let (repo, version) = split_reference(extra);
            let options =
                bollard::query_parameters::TagImageOptions { repo: Some(repo.into()), tag: Some(version.into()) };
            self.docker.tag_image(tag, Some(options)).await.map_err(api(format!("cannot tag {tag} as {extra}")))?;
        }
        Ok(id.unwrap_or_default())
    }

    /// Signals an exec's process group: the exec's process leads its own session, so
    /// this reaches what it started too. The engine reports the host's pid of it; a
    /// remote engine's process is out of reach and stops with its container.
    async fn stop_exec(&self, exec_id: &str, grace: Duration) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let Ok(info) = self.docker.inspect_exec(exec_id).await else { return };
        let Some(pid) = info.pid.filter(|p| *p > 0) else { return };
        let pid = Pid::from_raw(pid as i32);
        if killpg(pid, Signal::SIGTERM).is_err() {
            tracing::debug!(exec = exec_id, "cannot signal the exec's process; it stops with its container");
            return;
        }
        let docker = self.docker.clone();
        let exec_id = exec_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if docker.inspect_exec(&exec_id).await.ok().and_then(|i| i.running).unwrap_or(false) {
                let _ = killpg(pid, Signal::SIGKILL);
            }
        });
    }
}

/// A running container's published ports and environment.
#[derive(Debug, Clone, Default)]
pub struct Described {
    pub ports: HashMap<String, String>,
    pub env: Vec<(String, String)>,
}

/// Streams a process's output to `sink` line by line until it ends. A timeout or a
/// cancellation calls `stop` once (the stream then ends with the process) and is
/// returned as the way it ended.
async fn stream_output<S, F, Fut>(
    mut output: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    sink: &Arc<Mutex<S>>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    mut stop: F,
) -> Option<Exit>
where
    S: OutputSink,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut lines = LineBuffer::default();
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(deadline);
    let mut stopped: Option<Exit> = None;
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message })) => {
                    lines.push(&message, sink);
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "output ended with an error");
                    break;
                }
                None => break,
            },
            () = &mut deadline, if stopped.is_none() => {
                stopped = Some(Exit::TimedOut);
                stop().await;
            }
            () = cancel.cancelled(), if stopped.is_none() => {
                stopped = Some(Exit::Cancelled);
                stop().await;
            }
        }
    }
    lines.finish(sink);
    stopped
}

/// A container's health as the job waits for it.
#[derive(Debug, Clone)]
pub struct Health {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub status: HealthState,
    pub last_output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    NoCheck,
    Starting,
    Healthy,
    Unhealthy,
}

/// The registry an image reference names: its first part when that looks like a host
/// (`127.0.0.1:5000/app`, `ghcr.io/o/app`, `localhost/app`), else Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => "https://index.docker.io/v1/".to_string(),
    }
}

/// Credentials for the image's registry from Docker's own configuration
/// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): an `auths` entry's
/// `auth` (base64 of `user:password`). Credential helpers (`credsStore`) are not run.
pub fn config_credentials(image: &str) -> Option<DockerCredentials> {
    use base64::Engine as _;
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker")))?;
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let registry = registry_of(image);
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.get(&registry).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| {
                k.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/') == registry
            })
            .map(|(_, v)| v)
    })?;
    let auth = entry.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth).ok()?;
    let (username, password) =
        String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some(DockerCredentials {
        username: Some(username),
        password: Some(password),
        serveraddress: Some(registry),
        ..Default::default()
    })
}

/// `name:tag` (or `name@digest`) split as the pull API wants it.
fn split_reference(image: &str) -> (&str, &str) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name, digest);
    }
    match image.rsplit_once(':') {
        // A colon inside the last path part is a tag; before a slash it is a registry port.
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

/// Splits streamed bytes into whole lines for an [`OutputSink`].
#[derive(Default)]
struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    const CAP: usize = 256 * 1024;

    fn push<S: OutputSink>(&mut self, bytes: &[u8], sink: &Arc<Mutex<S>>) {
        self.pending.extend_from_slice(bytes);
        if let Some(last) = memchr::memrchr(b'\n', &self.pending) {
            let rest = self.pending.split_off(last + 1);
            emit(sink, &self.pending);
            self.pending = rest;
        }
        if self.pending.len() >= Self::CAP {
            self.pending.push(b'\n');
            emit(sink, &self.pending);
            self.pending.clear();
        }
    }

    fn finish<S: OutputSink>(&mut self, sink: &Arc<Mutex<S>>) {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            emit(sink, &self.pending);
            self.pending.clear();
        }
    }
}

fn emit<S: OutputSink>(sink: &Arc<Mutex<S>>, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut guard = sink.lock().unwrap_or_else(|p| p.into_inner());
    guard.lines(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_names_its_registry() {
        assert_eq!(registry_of("127.0.0.1:5000/app:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/o/app"), "ghcr.io");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("library/debian"), "https://index.docker.io/v1/");
        assert_eq!(registry_of("debian:12"), "https://index.docker.io/v1/");
    }

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(split_reference("debian:12"), ("debian", "12"));
        assert_eq!(split_reference("debian"), ("debian", "latest"));
        assert_eq!(split_reference("127.0.0.1:5000/team/app"), ("127.0.0.1:5000/team/app", "latest"));
        assert_eq!(split_reference("127.0.0.1:5000/app:v1"), ("127.0.0.1:5000/app", "v1"));
        assert_eq!(split_reference("app@sha256:abc"), ("app", "sha256:abc"));
    }

    #[test]
    fn a_live_owner_is_never_reaped_and_a_dead_one_is() {
        let me = owner_of(std::process::id()).expect("this process has a stat");
        assert!(!owner_is_gone(&me));
        // The same pid with another start time is a reused pid: its owner is gone.
        let (prefix, _) = me.rsplit_once(':').expect("three parts");
        assert!(owner_is_gone(&format!("{prefix}:1")));
        // An owner on another host is left to that host.
        assert!(!owner_is_gone("another-host:1:1"));
    }
}
