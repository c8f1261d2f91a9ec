//! The rollout controller: takes one service in one environment from its stable release
//! to a new one with the environment's strategy, reading the router's numbers every
//! analysis interval and rolling back in any phase.
//!
//! It owns no state but what it reads from the agent (listeners, weights, instances),
//! so a server that restarts finds traffic exactly as it was left.

pub mod analysis;

use crate::agent::{AgentClient, AgentError, InstanceState, InstanceStatus};
use crate::config::{Environment, Pause, Service, Strategy};
use crate::runtime::InstanceSpec;
use analysis::{Verdict, Window};
use mobius_router::{ListenerConfig, VersionConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Where a rollout is (the vocabulary is shared with the store and the API).
pub use mobius_core::{DeployEventKind, Phase};

/// Live numbers of one version during a rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionRates {
    pub requests: u64,
    pub requests_per_second: f64,
    pub error_ratio: f64,
    pub p99_ms: Option<f64>,
}

/// What the controller reports after every change and every analysis tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub phase: Phase,
    pub message: String,
    pub stable: Option<String>,
    pub canary: String,
    /// Current weight per version, in percent of new requests.
    pub weights: BTreeMap<String, u32>,
    /// The canary step in progress (1-based) and how many there are.
    pub step: Option<usize>,
    pub steps: usize,
    pub rates: BTreeMap<String, VersionRates>,
    /// A canary's steps in order (what `step` counts through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedStep>,
    /// Where the new version of a blue-green rollout answers before the switch (its
    /// `rates` then count what the preview served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// One canary step as planned: its weight, and how long it holds (`None`: until promoted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub weight: u32,
    pub pause_seconds: Option<u64>,
}

impl PlannedStep {
    fn of(step: &crate::config::CanaryStep) -> PlannedStep {
        PlannedStep {
            weight: step.weight,
            pause_seconds: match step.pause {
                Pause::For(d) => Some(d.as_secs()),
                Pause::UntilPromoted => None,
            },
        }
    }
}

/// Something a person asked for while the rollout runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Go past the current pause (or switch, for blue-green without auto-promotion).
    Promote,
    /// Roll back now, whatever the phase.
    Abort(String),
    /// The approval a protected environment waits for.
    Approve,
}

impl Command {
    /// The event log's kind of someone asking for this.
    pub fn requested(&self) -> mobius_core::EventKind {
        match self {
            Command::Promote => mobius_core::EventKind::RolloutPromote,
            Command::Abort(_) => mobius_core::EventKind::RolloutAbort,
            Command::Approve => mobius_core::EventKind::RolloutApprove,
        }
    }
}

/// A change worth recording: the status, and an event when something happened.
#[derive(Debug, Clone)]
pub struct Update {
    pub status: RolloutStatus,
    /// `(kind, message)`, for example `(Promoted, "step 2 of 2")`.
    pub event: Option<(DeployEventKind, String)>,
}

/// The release to roll out.
#[derive(Debug, Clone)]
pub struct Target {
    pub version: String,
    /// The unpacked release.
    pub dir: PathBuf,
    /// The image id the release recorded (`runtime: docker`): its instances run that
    /// image, whatever the tag names later.
    pub image: Option<String>,
}

/// Answers an analysis' PromQL checks: the single value of a query now, or `None`
/// when it has none (the server's monitor implements it).
pub trait MetricSource: Send + Sync + std::fmt::Debug {
    fn value(&self, query: &str) -> Result<Option<f64>, String>;
}

/// Everything a rollout needs.
#[derive(Debug, Clone)]
pub struct RolloutSpec {
    pub id: i64,
    pub service: Service,
    pub environment: Environment,
    pub target: Target,
    pub needs_approval: bool,
    /// The unpacked release the stable version runs from, to start its instances again
    /// when a rolling update that retired some of them rolls back.
    pub stable_dir: Option<PathBuf>,
    /// Where the analysis' PromQL checks are answered (none: they hold the rollout).
    pub metrics: Option<std::sync::Arc<dyn MetricSource>>,
    /// The time steps are held by and start deadlines are counted in.
    pub clock: std::sync::Arc<dyn mobius_core::Clock>,
}

/// The router listener of one service in one environment.
pub fn listener_name(environment: &str, service: &str) -> String {
    format!("{environment}.{service}")
}

fn preview_name(environment: &str, service: &str) -> String {
    format!("{environment}.{service}.preview")
}

struct Rollback(String);

/// What a held canary step does after a look at its analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDecision {
    /// Go on to the next step (or promotion).
    Next,
    /// Roll back, for this reason.
    Rollback(String),
    /// Keep holding; the analysis says why when it has no verdict yet.
    Hold(Option<String>),
    /// Wait for `mobius promote`.
    AwaitPromotion,
}

/// A canary step being held: for its pause while the analysis passes (a step with no
/// verdict holds as long as it has none), or until promoted. Decided on the clock the
/// controller was given, so a test moves time instead of waiting.
#[derive(Debug, Clone, Copy)]
pub struct StepHold {
    pause: Option<Duration>,
    started_ms: i64,
}

impl StepHold {
    /// A step whose pause is `pause` (`None`: until promoted), begun at `now_ms`.
    pub fn new(pause: Option<Duration>, now_ms: i64) -> StepHold {
        StepHold { pause, started_ms: now_ms }
    }

    /// The decision at `now_ms`, given whether someone promoted and the verdict.
    pub fn decide(&self, now_ms: i64, promoted: bool, verdict: &Verdict) -> StepDecision {
        if let Verdict::Fail(reason) = verdict {
            return StepDecision::Rollback(reason.clone());
        }
        if promoted {
            return StepDecision::Next;
        }
        let held = Duration::from_millis(u64::try_from(now_ms.saturating_sub(self.started_ms)).unwrap_or(0));
        match (self.pause, verdict) {
            (Some(pause), Verdict::Pass) if held >= pause => StepDecision::Next,
            (Some(_), Verdict::Hold(why)) => StepDecision::Hold(Some(why.clone())),
            (Some(_), _) => StepDecision::Hold(None),
            (None, _) => StepDecision::AwaitPromotion,
        }
    }
}

/// Runs one rollout to a final phase, reporting through `updates`.
pub async fn drive(
    agent: AgentClient,
    spec: RolloutSpec,
    commands: mpsc::UnboundedReceiver<Command>,
    updates: mpsc::UnboundedSender<Update>,
) -> Phase {
    let plan: Vec<PlannedStep> = match &spec.environment.strategy {
        Strategy::Canary { steps } => steps.iter().map(PlannedStep::of).collect(),
        _ => Vec::new(),
    };
    let mut controller = Controller {
        listener: listener_name(&spec.environment.name, &spec.service.name),
        status: RolloutStatus {
            phase: Phase::Progressing,
            message: "starting".into(),
            stable: None,
            canary: spec.target.version.clone(),
            weights: BTreeMap::new(),
            step: None,
            steps: plan.len(),
            rates: BTreeMap::new(),
            plan,
            preview: None,
        },
        agent,
        spec,
        commands,
        updates,
        new_instances: Vec::new(),
        stable_instances: Vec::new(),
        cursors: BTreeMap::new(),
        canary_window: Window::default(),
        stable_window: Window::default(),
        window_started: Instant::now(),
        restarts_seen: BTreeMap::new(),
    };
    let phase = match controller.run().await {
        Ok(phase) => phase,
        Err(e) => {
            let message = format!("the host agent failed: {e}");
            controller.finish(Phase::Failed, DeployEventKind::Failed, &message);
            Phase::Failed
        }
    };
    tracing::info!(rollout = controller.spec.id, phase = phase.as_str(), "rollout finished");
    phase
}

struct Controller {
    agent: AgentClient,
    spec: RolloutSpec,
    listener: String,
    status: RolloutStatus,
    commands: mpsc::UnboundedReceiver<Command>,
    updates: mpsc::UnboundedSender<Update>,
    new_instances: Vec<String>,
    stable_instances: Vec<String>,
    cursors: BTreeMap<String, u64>,
    canary_window: Window,
    stable_window: Window,
    window_started: Instant,
    restarts_seen: BTreeMap<String, u32>,
}

impl Controller {
    fn report(&mut self, phase: Phase, message: impl Into<String>, event: Option<(DeployEventKind, String)>) {
        self.status.phase = phase;
        self.status.message = message.into();
        let _ = self.updates.send(Update { status: self.status.clone(), event });
    }

    fn finish(&mut self, phase: Phase, kind: DeployEventKind, message: &str) {
        self.report(phase, message, Some((kind, message.to_string())));
    }

    fn stable_version(&self) -> Option<String> {
        self.status.stable.clone()
    }

    async fn run(&mut self) -> Result<Phase, AgentError> {
        if self.spec.needs_approval {
            self.report(Phase::Paused, "waiting for an approval by someone other than the release's author", None);
            loop {
                match self.commands.recv().await {
                    Some(Command::Approve) => {
                        self.report(
                            Phase::Progressing,
                            "approved",
                            Some((DeployEventKind::Approved, "approved".into())),
                        );
                        break;
                    }
                    Some(Command::Abort(_)) | None => {
                        self.finish(
                            Phase::RolledBack,
                            DeployEventKind::Aborted,
                            "aborted before it started; nothing changed",
                        );
                        return Ok(Phase::RolledBack);
                    }
                    _ => {}
                }
            }
        }
        self.discover().await?;
        let Some(stable) = self.stable_version() else {
            return self.first_deploy().await;
        };
        if stable == self.spec.target.version {
            let message = format!("{stable} is already serving");
            self.finish(Phase::Succeeded, DeployEventKind::Succeeded, &message);
            return Ok(Phase::Succeeded);
        }
        let outcome = match self.spec.environment.strategy.clone() {
            Strategy::Recreate => return self.recreate().await,
            Strategy::Rolling { max_surge, max_unavailable } => self.rolling(max_surge, max_unavailable).await,
            Strategy::BlueGreen { auto_promote, preview, rollback_window } => {
                self.blue_green(auto_promote, preview, rollback_window).await
            }
            Strategy::Canary { steps } => self.canary(&steps).await,
        };
        match outcome {
            Ok(Ok(phase)) => Ok(phase),
            Ok(Err(Rollback(reason))) => self.roll_back(&reason).await,
            Err(e) => Err(e),
        }
    }

    /// Reads what serves now: the version with the most weight is stable; versions
    /// kept warm at weight 0 (a blue-green rollback window) are stopped unless they are
    /// the target, whose instances are then reused.
    async fn discover(&mut self) -> Result<(), AgentError> {
        let listeners = self.agent.listeners().await?;
        let Some(current) = listeners.get(&self.listener) else {
            return Ok(());
        };
        let mut versions = current.config.versions.clone();
        versions.sort_by_key(|v| std::cmp::Reverse(v.weight));
        let instances = self.agent.instances().await?;
        for (i, v) in versions.iter().enumerate() {
            if i == 0 && v.weight > 0 {
                self.status.stable = Some(v.version.clone());
                self.stable_instances = v.backends.clone();
            } else if v.version == self.spec.target.version
                && v.backends
                    .iter()
                    .all(|id| instances.iter().any(|s| &s.id == id && s.state == InstanceState::Healthy))
                && !v.backends.is_empty()
            {
                self.new_instances = v.backends.clone();
            } else {
                for id in &v.backends {
                    self.agent.stop_instance(id, Duration::ZERO).await?;
                }
            }
        }
        if let Some(stable) = self.status.stable.clone() {
            self.status.weights.insert(stable, 100);
        }
        Ok(())
    }

    fn instance_spec(&self, index: usize) -> InstanceSpec {
        let service = &self.spec.service;
        InstanceSpec {
            id: format!(
                "{}.{}.{}.r{}.{}",
                self.spec.environment.name, service.name, self.spec.target.version, self.spec.id, index
            ),
            service: service.name.clone(),
            version: self.spec.target.version.clone(),
            environment: self.spec.environment.name.clone(),
            metrics_path: service.metrics_path.clone(),
            dir: self.spec.target.dir.clone(),
            workdir: service.workdir.clone(),
            run: service.run.clone(),
            env: service.env.clone(),
            health_path: service.health.path.clone(),
            health_interval: service.health.interval,
            health_timeout: service.health.timeout,
            healthy_threshold: service.health.healthy_threshold,
            unhealthy_threshold: service.health.unhealthy_threshold,
            stop_grace: service.stop_grace,
            image: self.spec.target.image.clone().or_else(|| service.image.clone()),
            cpus: service.cpus,
            memory: service.memory,
        }
    }

    /// Starts `count` more instances of the new version and waits until they are healthy.
    async fn start_new(&mut self, count: usize) -> Result<Result<(), String>, AgentError> {
        let first = self.new_instances.len();
        let mut started = Vec::new();
        for i in first..first + count {
            let spec = self.instance_spec(i + 1);
            let status = self.agent.start_instance(&spec).await?;
            started.push(status.id);
        }
        self.new_instances.extend(started.iter().cloned());
        self.report(Phase::Progressing, format!("starting {count} instance(s) of {}", self.spec.target.version), None);
        let timeout_ms = i64::try_from(self.spec.service.health.start_timeout.as_millis()).unwrap_or(i64::MAX);
        let deadline_ms = self.spec.clock.now_ms().saturating_add(timeout_ms);
        loop {
            let instances = self.agent.instances().await?;
            let mine: Vec<&InstanceStatus> = instances.iter().filter(|s| started.contains(&s.id)).collect();
            if let Some(looping) = mine.iter().find(|s| s.crash_loop) {
                return Ok(Err(format!(
                    "instance {} keeps exiting ({})",
                    looping.id,
                    looping.last_exit.as_deref().unwrap_or("no exit status")
                )));
            }
            if mine.len() == started.len() && mine.iter().all(|s| s.state == InstanceState::Healthy) {
                for s in mine {
                    self.restarts_seen.insert(s.id.clone(), s.restarts);
                }
                return Ok(Ok(()));
            }
            if self.spec.clock.now_ms() >= deadline_ms {
                return Ok(Err(format!(
                    "the new instances were not healthy within {} s (health check {})",
                    self.spec.service.health.start_timeout.as_secs(),
                    self.spec.service.health.path
                )));
            }
            tokio::select! {
                command = self.commands.recv() => {
                    if let Some(Command::Abort(who)) = command {
                        return Ok(Err(format!("aborted by {}", why_or_default(&who))));
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    async fn stop_all(&mut self, ids: &[String]) -> Result<(), AgentError> {
        let drain = self.spec.service.drain_timeout;
        let stops = ids.iter().map(|id| self.agent.stop_instance(id, drain));
        for result in futures_util::future::join_all(stops).await {
            result?;
        }
        Ok(())
    }

    /// Applies weights: `(version, weight, backends)`; returns once the router uses them.
    async fn route(&mut self, versions: Vec<(String, u32, Vec<String>)>) -> Result<(), AgentError> {
        let total: u32 = versions.iter().map(|v| v.1).sum();
        self.status.weights =
            versions.iter().map(|(v, w, _)| (v.clone(), (w * 100).checked_div(total).unwrap_or(0))).collect();
        let config = self.listener_config(versions)?;
        self.agent.configure(&self.listener, &config).await?;
        Ok(())
    }

    /// The listener's table for these `(version, weight, backends)`.
    fn listener_config(&self, versions: Vec<(String, u32, Vec<String>)>) -> Result<ListenerConfig, AgentError> {
        let Some(listen) = self.spec.environment.listen.get(&self.spec.service.name).copied() else {
            return Err(AgentError::Refused(format!(
                "environment `{}` has no address for `{}`",
                self.spec.environment.name, self.spec.service.name
            )));
        };
        Ok(ListenerConfig {
            listen,
            versions: versions
                .into_iter()
                .map(|(version, weight, backends)| VersionConfig { version, weight, backends })
                .collect(),
            sticky: self.spec.environment.sticky.clone(),
            retries: 2,
        })
    }

    async fn first_deploy(&mut self) -> Result<Phase, AgentError> {
        let count = self.spec.service.instances as usize;
        if let Err(reason) = self.start_new(count.saturating_sub(self.new_instances.len())).await? {
            let ids = std::mem::take(&mut self.new_instances);
            self.stop_all(&ids).await?;
            self.finish(Phase::Failed, DeployEventKind::Failed, &reason);
            return Ok(Phase::Failed);
        }
        let version = self.spec.target.version.clone();
        self.route(vec![(version.clone(), 100, self.new_instances.clone())]).await?;
        self.status.stable = Some(version.clone());
        let message = format!("{version} serves all traffic (first deploy to an empty environment)");
        self.finish(Phase::Succeeded, DeployEventKind::Succeeded, &message);
        Ok(Phase::Succeeded)
    }

    /// Recreate is handed to the agent as one plan (stop the old instances, start
    /// the new, route to them), so a crash of the server in the middle of it cannot
    /// leave the environment without instances until the server is back.
    async fn recreate(&mut self) -> Result<Phase, AgentError> {
        use crate::agent::recreate::{RecreatePlan, RecreateState};
        let stable = self.stable_version().unwrap_or_default();
        let version = self.spec.target.version.clone();
        let count = self.spec.service.instances as usize;
        let start: Vec<InstanceSpec> = (1..=count).map(|i| self.instance_spec(i)).collect();
        let ids: Vec<String> = start.iter().map(|s| s.id.clone()).collect();
        let config = self.listener_config(vec![(version.clone(), 100, ids.clone())])?;
        let plan = RecreatePlan {
            stop: std::mem::take(&mut self.stable_instances),
            drain_ms: self.spec.service.drain_timeout.as_millis() as u64,
            start,
            start_timeout_ms: self.spec.service.health.start_timeout.as_millis() as u64,
            config,
        };
        let mut status = self.agent.recreate(&self.listener, &plan).await?;
        // Reported once the agent holds the plan: from here it finishes without us.
        self.report(
            Phase::Progressing,
            format!("stopping {stable}, then starting {version} (the agent carries it out)"),
            None,
        );
        while !status.finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            status = self.agent.recreate_status(&self.listener).await?;
        }
        if status.state == RecreateState::Succeeded {
            self.new_instances = ids;
            self.status.weights = BTreeMap::from([(version.clone(), 100)]);
            self.status.stable = Some(version.clone());
            self.finish(Phase::Succeeded, DeployEventKind::Succeeded, &format!("{version} serves all traffic"));
            Ok(Phase::Succeeded)
        } else {
            // Recreate has no second version to fall back on: the old release is started again.
            self.finish(
                Phase::Failed,
                DeployEventKind::Failed,
                &format!("{}; {stable} must be deployed again", status.message),
            );
            Ok(Phase::Failed)
        }
    }

    async fn rolling(&mut self, max_surge: u32, max_unavailable: u32) -> Result<Result<Phase, Rollback>, AgentError> {
        let stable = self.stable_version().unwrap_or_default();
        let version = self.spec.target.version.clone();
        let total = self.spec.service.instances as usize;
        let batch = (max_surge.max(max_unavailable) as usize).max(1);
        self.begin_windows().await?;
        while self.new_instances.len() < total {
            let count = batch.min(total - self.new_instances.len());
            if max_surge == 0 {
                // No surge: make room first.
                self.retire_stable(count, &stable, &version).await?;
            }
            if let Err(reason) = self.start_new(count).await? {
                return Ok(Err(Rollback(reason)));
            }
            if max_surge > 0 {
                self.retire_stable(count, &stable, &version).await?;
            } else {
                self.route_by_instances(&stable, &version).await?;
            }
            let message = format!("{} of {total} instances on {version}", self.new_instances.len());
            self.report(Phase::Progressing, message, None);
            // One analysis interval per batch: errors roll back, missing traffic does not hold.
            let until = Instant::now() + self.spec.environment.analysis.interval;
            if let Some(reason) = self.watch_until(until).await? {
                return Ok(Err(Rollback(reason)));
            }
        }
        let old = std::mem::take(&mut self.stable_instances);
        self.stop_all(&old).await?;
        self.route(vec![(version.clone(), 100, self.new_instances.clone())]).await?;
        self.finish(Phase::Succeeded, DeployEventKind::Succeeded, &format!("{version} serves all traffic"));
        Ok(Ok(Phase::Succeeded))
    }

    /// Weights in proportion to each version's instances (a rolling update's split).
    async fn route_by_instances(&mut self, stable: &str, version: &str) -> Result<(), AgentError> {
        self.route(vec![
            (stable.to_string(), self.stable_instances.len() as u32, self.stable_instances.clone()),
            (version.to_string(), self.new_instances.len() as u32, self.new_instances.clone()),
        ])
        .await
    }

    /// Takes `count` stable instances out of traffic, then stops them.
    async fn retire_stable(&mut self, count: usize, stable: &str, version: &str) -> Result<(), AgentError> {
        let retire: Vec<String> = self.stable_instances.drain(..count.min(self.stable_instances.len())).collect();
        self.route_by_instances(stable, version).await?;
        self.stop_all(&retire).await
    }

    async fn blue_green(
        &mut self,
        auto_promote: bool,
        preview: Option<std::net::SocketAddr>,
        rollback_window: Duration,
    ) -> Result<Result<Phase, Rollback>, AgentError> {
        let stable = self.stable_version().unwrap_or_default();
        let version = self.spec.target.version.clone();
        let count = (self.spec.service.instances as usize).saturating_sub(self.new_instances.len());
        if let Err(reason) = self.start_new(count).await? {
            return Ok(Err(Rollback(reason)));
        }
        let preview_name = preview_name(&self.spec.environment.name, &self.spec.service.name);
        if let Some(addr) = preview {
            let config = ListenerConfig {
                listen: addr,
                versions: vec![VersionConfig {
                    version: version.clone(),
                    weight: 100,
                    backends: self.new_instances.clone(),
                }],
                sticky: None,
                retries: 2,
            };
            self.agent.configure(&preview_name, &config).await?;
        }
        if !auto_promote {
            let message = format!(
                "{version} is ready{}; waiting for promote",
                preview.map(|a| format!(" at {a}")).unwrap_or_default()
            );
            self.status.preview = preview.map(|a| a.to_string());
            self.report(Phase::Paused, message.clone(), None);
            // While it waits, what the preview serves is measured and shown as the new
            // version's traffic.
            let mut measured = Window::default();
            let mut cursors = self.preview_cursors(&preview_name, &version, preview.is_some()).await?;
            let since = Instant::now();
            let mut tick = tokio::time::interval(self.spec.environment.analysis.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    command = self.commands.recv() => match command {
                        Some(Command::Promote) => {
                            self.status.preview = None;
                            self.report(Phase::Progressing, "promoted", Some((DeployEventKind::Promoted, format!("{version} promoted"))));
                            break;
                        }
                        Some(Command::Abort(who)) => {
                            return Ok(Err(Rollback(format!("aborted by {}", why_or_default(&who)))))
                        }
                        None => return Ok(Err(Rollback("the server stopped the rollout".into()))),
                        _ => {}
                    },
                    _ = tick.tick(), if preview.is_some() => {
                        let snapshots = self.agent.samples(&preview_name, &cursors).await?;
                        let before = measured.requests;
                        for s in snapshots.into_iter().filter(|s| s.version == version) {
                            for sample in &s.samples {
                                measured.add(sample.micros, sample.failed);
                            }
                            cursors.insert(s.version, s.next_seq);
                        }
                        let rates = VersionRates {
                            requests: measured.requests,
                            requests_per_second: measured.requests as f64 / since.elapsed().as_secs_f64().max(0.001),
                            error_ratio: measured.error_ratio(),
                            p99_ms: measured.p99().map(|us| us as f64 / 1000.0),
                        };
                        if measured.requests != before || !self.status.rates.contains_key(&version) {
                            self.status.rates.insert(version.clone(), rates);
                            self.report(Phase::Paused, message.clone(), None);
                        }
                    }
                }
            }
        }
        // The switch: from here on, every new request goes to the new version; the old
        // one stays in the table at weight 0, running, for a fast rollback.
        self.route(vec![
            (stable.clone(), 0, self.stable_instances.clone()),
            (version.clone(), 100, self.new_instances.clone()),
        ])
        .await?;
        if preview.is_some() {
            self.agent.remove_listener(&preview_name).await?;
        }
        let message =
            format!("{version} serves all traffic; {stable} is kept running for {} s", rollback_window.as_secs());
        self.finish(Phase::Succeeded, DeployEventKind::Succeeded, &message);
        // Retire the old version after the window, unless a later rollout took it back.
        let agent = self.agent.clone();
        let listener = self.listener.clone();
        let old = self.stable_instances.clone();
        let drain = self.spec.service.drain_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(rollback_window).await;
            retire_warm(&agent, &listener, &stable, &old, drain).await;
        });
        Ok(Ok(Phase::Succeeded))
    }

    async fn canary(&mut self, steps: &[crate::config::CanaryStep]) -> Result<Result<Phase, Rollback>, AgentError> {
        let stable = self.stable_version().unwrap_or_default();
        let version = self.spec.target.version.clone();
        let count = (self.spec.service.instances as usize).saturating_sub(self.new_instances.len());
        if let Err(reason) = self.start_new(count).await? {
            return Ok(Err(Rollback(reason)));
        }
        self.begin_windows().await?;
        for (index, step) in steps.iter().enumerate() {
            self.status.step = Some(index + 1);
            self.route(vec![
                (stable.clone(), 100 - step.weight, self.stable_instances.clone()),
                (version.clone(), step.weight, self.new_instances.clone()),
            ])
            .await?;
            self.reset_windows();
            let message = format!("step {} of {}: {}% to {version}", index + 1, steps.len(), step.weight);
            self.report(Phase::Progressing, message.clone(), Some((DeployEventKind::Step, message)));
            let passed = match step.pause {
                Pause::For(d) => self.hold_step(Some(d)).await?,
                Pause::UntilPromoted => self.hold_step(None).await?,
            };
            if let Err(reason) = passed {
                return Ok(Err(Rollback(reason)));
            }
            let analysis = &self.spec.environment.analysis;
            if analysis.enabled {
                if let Verdict::Fail(reason) =
                    analysis::compare_latencies(analysis, &self.canary_window, &self.stable_window)
                {
                    return Ok(Err(Rollback(reason)));
                }
            }
        }
        // Promotion: all traffic to the new version, then the old one goes.
        self.route(vec![
            (stable.clone(), 0, self.stable_instances.clone()),
            (version.clone(), 100, self.new_instances.clone()),
        ])
        .await?;
        self.status.step = None;
        let old = std::mem::take(&mut self.stable_instances);
        self.stop_all(&old).await?;
        self.route(vec![(version.clone(), 100, self.new_instances.clone())]).await?;
        self.finish(Phase::Succeeded, DeployEventKind::Succeeded, &format!("{version} serves all traffic"));
        Ok(Ok(Phase::Succeeded))
    }

    /// Holds a canary step: for `duration` with passing analysis (no data holds it
    /// longer), or until promoted when `None`. Returns the reason to roll back, if any.
    async fn hold_step(&mut self, duration: Option<Duration>) -> Result<Result<(), String>, AgentError> {
        let hold = StepHold::new(duration, self.spec.clock.now_ms());
        let interval = self.spec.environment.analysis.interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut promoted = false;
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Abort(who)) => return Ok(Err(format!("aborted by {}", why_or_default(&who)))),
                    Some(Command::Promote) => {
                        promoted = true;
                        self.report(self.status.phase, "promoted", Some((DeployEventKind::Promoted, format!("step {:?} promoted", self.status.step))));
                    }
                    Some(Command::Approve) => {}
                    None => return Ok(Err("the server stopped the rollout".into())),
                },
                _ = tick.tick() => {}
            }
            if let Some(reason) = self.observe().await? {
                return Ok(Err(reason));
            }
            let analysis = self.spec.environment.analysis.clone();
            let verdict = if analysis.enabled {
                analysis::evaluate(&analysis, &self.canary_window, &self.stable_window)
            } else {
                Verdict::Pass
            };
            let verdict = match verdict {
                Verdict::Fail(reason) => Verdict::Fail(reason),
                builtin => match self.metric_verdict().await {
                    Verdict::Pass => builtin,
                    other => other,
                },
            };
            match hold.decide(self.spec.clock.now_ms(), promoted, &verdict) {
                StepDecision::Rollback(reason) => return Ok(Err(reason)),
                StepDecision::Next => return Ok(Ok(())),
                StepDecision::Hold(Some(why)) => {
                    let message = format!("holding: {why}");
                    self.report(Phase::Progressing, message, None);
                }
                StepDecision::Hold(None) => {
                    let message = self.status.message.clone();
                    self.report(Phase::Progressing, message, None);
                }
                StepDecision::AwaitPromotion => {
                    let message = format!(
                        "paused at step {} of {}; `mobius promote` goes on",
                        self.status.step.unwrap_or(0),
                        self.status.steps
                    );
                    self.report(Phase::Paused, message, None);
                }
            }
        }
    }

    /// Watches until `until` (for rolling batches): errors and crashes roll back,
    /// too little traffic is not waited for.
    async fn watch_until(&mut self, until: Instant) -> Result<Option<String>, AgentError> {
        while Instant::now() < until {
            tokio::select! {
                command = self.commands.recv() => {
                    if let Some(Command::Abort(who)) = command {
                        return Ok(Some(format!("aborted by {}", why_or_default(&who))));
                    }
                }
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
        if let Some(reason) = self.observe().await? {
            return Ok(Some(reason));
        }
        let analysis = &self.spec.environment.analysis;
        if analysis.enabled {
            if let Verdict::Fail(reason) = analysis::evaluate(analysis, &self.canary_window, &self.stable_window) {
                return Ok(Some(reason));
            }
        }
        if let Verdict::Fail(reason) = self.metric_verdict().await {
            return Ok(Some(reason));
        }
        Ok(None)
    }

    /// The analysis' PromQL checks: a value out of bounds fails, no value holds.
    async fn metric_verdict(&self) -> Verdict {
        let checks = &self.spec.environment.analysis.queries;
        if checks.is_empty() {
            return Verdict::Pass;
        }
        let Some(source) = self.spec.metrics.clone() else {
            return Verdict::Hold("no monitor answers the analysis queries".into());
        };
        let stable = self.stable_version().unwrap_or_default();
        let mut hold = None;
        for check in checks {
            let query =
                check.render(&self.spec.target.version, &stable, &self.spec.service.name, &self.spec.environment.name);
            let source = std::sync::Arc::clone(&source);
            let answer =
                tokio::task::spawn_blocking(move || source.value(&query)).await.unwrap_or_else(|e| Err(e.to_string()));
            match answer {
                Err(e) => return Verdict::Fail(format!("analysis query `{}` failed: {e}", check.name)),
                Ok(None) => hold = Some(format!("no data yet for analysis query `{}`", check.name)),
                Ok(Some(v)) if check.max.is_some_and(|max| v > max) => {
                    return Verdict::Fail(format!(
                        "analysis query `{}` is {v}, above its max {}",
                        check.name,
                        check.max.unwrap_or_default()
                    ))
                }
                Ok(Some(v)) if check.min.is_some_and(|min| v < min) => {
                    return Verdict::Fail(format!(
                        "analysis query `{}` is {v}, below its min {}",
                        check.name,
                        check.min.unwrap_or_default()
                    ))
                }
                Ok(Some(_)) => {}
            }
        }
        hold.map_or(Verdict::Pass, Verdict::Hold)
    }

    /// Where the preview listener's samples of `version` start: after any it served in an
    /// earlier rollout (empty when there is no preview).
    async fn preview_cursors(
        &self,
        preview_name: &str,
        version: &str,
        has_preview: bool,
    ) -> Result<BTreeMap<String, u64>, AgentError> {
        let mut cursors = BTreeMap::new();
        if !has_preview {
            return Ok(cursors);
        }
        cursors.insert(version.to_string(), u64::MAX);
        let earlier = self.agent.samples(preview_name, &cursors).await?;
        // No series yet: every sample to come is this rollout's.
        cursors.insert(version.to_string(), 0);
        for s in earlier.into_iter().filter(|s| s.version == version) {
            cursors.insert(s.version, s.next_seq);
        }
        Ok(cursors)
    }

    /// Skips the samples taken before the rollout.
    async fn begin_windows(&mut self) -> Result<(), AgentError> {
        let mut since = BTreeMap::new();
        for v in [self.stable_version().unwrap_or_default(), self.spec.target.version.clone()] {
            since.insert(v, u64::MAX);
        }
        for snapshot in self.agent.samples(&self.listener, &since).await? {
            self.cursors.insert(snapshot.version, snapshot.next_seq);
        }
        self.reset_windows();
        Ok(())
    }

    fn reset_windows(&mut self) {
        self.canary_window = Window::default();
        self.stable_window = Window::default();
        self.window_started = Instant::now();
    }

    /// Reads new samples into the windows and checks the new instances; returns a reason
    /// to roll back when one of them exited or turned unhealthy.
    async fn observe(&mut self) -> Result<Option<String>, AgentError> {
        let snapshots = self.agent.samples(&self.listener, &self.cursors).await?;
        let stable = self.stable_version().unwrap_or_default();
        let elapsed = self.window_started.elapsed().as_secs_f64().max(0.001);
        for s in snapshots {
            let window = if s.version == self.spec.target.version {
                &mut self.canary_window
            } else if s.version == stable {
                &mut self.stable_window
            } else {
                continue;
            };
            for sample in &s.samples {
                window.add(sample.micros, sample.failed);
            }
            self.cursors.insert(s.version.clone(), s.next_seq);
            self.status.rates.insert(
                s.version.clone(),
                VersionRates {
                    requests: window.requests,
                    requests_per_second: window.requests as f64 / elapsed,
                    error_ratio: window.error_ratio(),
                    p99_ms: window.p99().map(|us| us as f64 / 1000.0),
                },
            );
        }
        let instances = self.agent.instances().await?;
        for id in &self.new_instances {
            let Some(s) = instances.iter().find(|s| &s.id == id) else {
                return Ok(Some(format!("instance {id} is gone")));
            };
            let seen = self.restarts_seen.get(id).copied().unwrap_or(0);
            if s.restarts > seen {
                return Ok(Some(format!(
                    "instance {id} exited ({})",
                    s.last_exit.as_deref().unwrap_or("no exit status")
                )));
            }
            if s.state == InstanceState::Unhealthy {
                return Ok(Some(format!("instance {id} failed its health check")));
            }
        }
        Ok(None)
    }

    /// Takes the new version out of traffic at once, restores the stable one, then stops
    /// the new instances.
    async fn roll_back(&mut self, reason: &str) -> Result<Phase, AgentError> {
        let stable = self.stable_version().unwrap_or_default();
        let version = self.spec.target.version.clone();
        let total = self.spec.service.instances as usize;
        if self.stable_instances.len() < total {
            // Rolling retired some stable instances: start them again first, keeping the
            // new ones (at their weights) until there is capacity.
            let missing = total - self.stable_instances.len();
            let spec_version = std::mem::replace(&mut self.spec.target.version, stable.clone());
            let saved_new = std::mem::take(&mut self.new_instances);
            let saved_dir = self.spec.target.dir.clone();
            if let Some(dir) = self.spec.stable_dir.clone() {
                self.spec.target.dir = dir;
            }
            let restarted = self.start_new(missing).await?;
            self.stable_instances.append(&mut self.new_instances);
            self.new_instances = saved_new;
            self.spec.target.version = spec_version;
            self.spec.target.dir = saved_dir;
            if let Err(e) = restarted {
                tracing::warn!(rollout = self.spec.id, error = %e, "stable instances did not all come back");
            }
        }
        self.route(vec![
            (stable.clone(), 100, self.stable_instances.clone()),
            (version.clone(), 0, self.new_instances.clone()),
        ])
        .await?;
        self.status.step = None;
        let message = format!("rolled back to {stable}: {reason}");
        self.report(Phase::Progressing, message.clone(), None);
        let new = std::mem::take(&mut self.new_instances);
        self.stop_all(&new).await?;
        self.route(vec![(stable.clone(), 100, self.stable_instances.clone())]).await?;
        self.finish(Phase::RolledBack, DeployEventKind::RolledBack, &message);
        Ok(Phase::RolledBack)
    }
}

fn why_or_default(who: &str) -> String {
    if who.is_empty() {
        "a user".to_string()
    } else {
        who.to_string()
    }
}

/// Stops a version kept warm after a blue-green switch, if it is still at weight 0.
async fn retire_warm(agent: &AgentClient, listener: &str, version: &str, ids: &[String], drain: Duration) {
    let Ok(listeners) = agent.listeners().await else { return };
    let Some(current) = listeners.get(listener) else { return };
    if current.config.versions.iter().any(|v| v.version == version && v.weight > 0) {
        return;
    }
    let mut config = current.config.clone();
    config.versions.retain(|v| v.version != version);
    if let Err(e) = agent.configure(listener, &config).await {
        tracing::warn!(error = %e, "cannot drop the old version from the table");
        return;
    }
    for id in ids {
        let _ = agent.stop_instance(id, drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobius_core::{Clock, ManualClock};

    /// Issue 17, item 9: a step's pause is kept on the controller's clock; a test
    /// moves the clock instead of sleeping to prove that a step did not move on.
    #[test]
    fn a_step_moves_on_after_its_pause_and_never_without_a_verdict() {
        let clock = ManualClock::new(1_000_000);
        let hold = StepHold::new(Some(Duration::from_secs(30)), clock.now_ms());
        clock.advance(Duration::from_millis(29_999));
        assert_eq!(hold.decide(clock.now_ms(), false, &Verdict::Pass), StepDecision::Hold(None));
        clock.advance(Duration::from_millis(1));
        assert_eq!(hold.decide(clock.now_ms(), false, &Verdict::Pass), StepDecision::Next);
        // Without traffic there is no verdict: an hour later the step still holds, and says why.
        clock.advance(Duration::from_secs(3600));
        let no_data = Verdict::Hold("no verdict yet: 0 requests".into());
        assert_eq!(
            hold.decide(clock.now_ms(), false, &no_data),
            StepDecision::Hold(Some("no verdict yet: 0 requests".into()))
        );
        // A failing analysis rolls back at any time; a promote goes on at any time.
        let failing = Verdict::Fail("error ratio 0.5".into());
        assert_eq!(hold.decide(clock.now_ms(), true, &failing), StepDecision::Rollback("error ratio 0.5".into()));
        assert_eq!(hold.decide(clock.now_ms(), true, &no_data), StepDecision::Next);
    }

    #[test]
    fn a_step_until_promoted_waits_for_promote_however_long() {
        let clock = ManualClock::new(0);
        let hold = StepHold::new(None, clock.now_ms());
        clock.advance(Duration::from_secs(86_400 * 30));
        assert_eq!(hold.decide(clock.now_ms(), false, &Verdict::Pass), StepDecision::AwaitPromotion);
        assert_eq!(hold.decide(clock.now_ms(), true, &Verdict::Pass), StepDecision::Next);
    }
}
