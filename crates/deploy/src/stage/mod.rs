//! The deploy stage's decisions: releases made from green runs of the default branch
//! (manifest, digest, SLSA provenance), promotion gates (`after:`), the approval
//! rule, holds on firing alerts, auto-deploy, starting, resuming and commanding
//! rollouts through the host agent, and the listen addresses projects claim. What
//! it needs from the server that runs it is [`Host`].

pub mod addresses;
pub mod releases;

use crate::agent::AgentClient;
use crate::config::{Environment, Strategy};
use crate::rollout::{self, Command, Phase, RolloutSpec, Target, Update};
use mobius_blob::BlobStore;
use mobius_core::DeployEventKind;
use mobius_store::{Project, Release, Rollout, RolloutFilter, Store, StoreError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The server's deploy bookkeeping.
#[derive(Debug, Default)]
pub struct Deploys {
    agent: tokio::sync::Mutex<Option<AgentClient>>,
    /// Controllers running in this process, by rollout id.
    active: Mutex<HashMap<i64, mpsc::UnboundedSender<Command>>>,
    /// Serialises the start of rollouts, so two never begin for one target.
    start_lock: tokio::sync::Mutex<()>,
}

/// What the deploy stage needs from the server that runs it.
pub trait Host: Send + Sync + 'static {
    fn store(&self) -> &Store;
    fn deploys(&self) -> &Deploys;
    /// Where release files are stored.
    fn blobs(&self) -> Arc<dyn BlobStore>;
    /// The server's data directory (`releases/`, `agent/`).
    fn data_dir(&self) -> &Path;
    /// The binary that runs the host agent (the server's own without one).
    fn agent_exe(&self) -> Option<PathBuf>;
    /// The address the server listens on, named as the builder in provenance.
    fn listen(&self) -> SocketAddr;
    /// The project's mirror.
    fn repo_dir(&self, project: &Project) -> PathBuf;
    /// The alerts firing now (neither silenced nor inhibited) for a service in an
    /// environment, by name.
    fn firing_alerts(&self, service: &str, environment: &str) -> Vec<String>;
    /// Answers the analysis queries of rollouts.
    fn metrics(&self) -> Arc<dyn rollout::MetricSource>;
    /// The delivery the project's `mobius.yaml` declares at a commit (`Ok(None)`
    /// without the file), from the one model the host reads the file into. It may
    /// read git: callers are off the async runtime.
    fn delivery_at(
        &self,
        project: &Project,
        commit: &str,
    ) -> Result<Option<Arc<crate::DeliveryConfig>>, releases::DeliveryError>;
}

/// Why a deploy or a command was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// The release's files could not be unpacked.
    #[error(transparent)]
    Materialize(#[from] releases::MaterializeError),
    #[error("{0}")]
    Internal(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every rollout of a service to an environment, newest first.
async fn history(
    app: &dyn Host,
    project: &Project,
    service: &str,
    environment: &str,
) -> Result<Vec<Rollout>, DeployError> {
    Ok(app
        .store()
        .rollouts(&RolloutFilter {
            project_id: Some(project.id),
            service: Some(service.to_string()),
            environment: Some(environment.to_string()),
            active: false,
            limit: 1000,
        })
        .await?)
}

/// The host agent, started (detached, so it outlives this process) when none runs.
pub async fn agent(app: &dyn Host) -> Result<AgentClient, DeployError> {
    let mut slot = app.deploys().agent.lock().await;
    if let Some(client) = slot.as_ref() {
        if client.instances().await.is_ok() {
            return Ok(client.clone());
        }
    }
    let exe = match app.agent_exe() {
        Some(exe) => exe,
        None => {
            std::env::current_exe().map_err(|e| DeployError::Internal(format!("cannot find the mobius binary: {e}")))?
        }
    };
    let client = AgentClient::connect_or_spawn(&app.data_dir().join("agent"), &exe).await?;
    *slot = Some(client.clone());
    Ok(client)
}

/// The agent if one already runs; never starts one (for metrics and status reads).
pub async fn existing_agent(app: &dyn Host) -> Option<AgentClient> {
    let slot = app.deploys().agent.lock().await;
    if let Some(client) = slot.as_ref() {
        return Some(client.clone());
    }
    drop(slot);
    let client = AgentClient::connect(&app.data_dir().join("agent")).await?;
    *app.deploys().agent.lock().await = Some(client.clone());
    Some(client)
}

/// Resolves `latest`, a release id, a version (`v3`) or a commit (prefix) of a service.
pub async fn find_release(
    app: &dyn Host,
    project: &Project,
    service: &str,
    wanted: &str,
) -> Result<Release, DeployError> {
    let releases = app.store().releases(Some(project.id), Some(service), 1000).await?;
    let found = match wanted {
        "latest" | "" => releases.first().cloned(),
        _ => releases
            .iter()
            .find(|r| r.id.to_string() == wanted || r.version == wanted)
            .or_else(|| {
                (wanted.len() >= 4).then(|| releases.iter().find(|r| r.commit_sha.starts_with(wanted))).flatten()
            })
            .cloned(),
    };
    found.ok_or_else(|| {
        DeployError::NotFound(format!("service `{service}` of project `{}` has no release `{wanted}`", project.name))
    })
}

/// What a deploy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A release goes out: held while an alert fires for the service and environment.
    Forward,
    /// Back to an earlier release: what one does while an alert fires, so never held.
    Rollback,
}

/// Whether a rollout has a running version to protect: an earlier rollout of its
/// service to its environment succeeded. A first deploy has none, and as Argo Rollouts
/// skips analysis for the initial version, alerts do not hold or abort it.
pub async fn protects_a_version(app: &dyn Host, rollout: &Rollout) -> Result<bool, DeployError> {
    let project = app
        .store()
        .project_by_id(rollout.project_id)
        .await?
        .ok_or_else(|| DeployError::NotFound("the project is gone".into()))?;
    succeeded_before(app, &project, &rollout.service, &rollout.environment, rollout.id).await
}

/// Whether a rollout of `service` to `environment` older than `before` (a rollout id) succeeded.
async fn succeeded_before(
    app: &dyn Host,
    project: &Project,
    service: &str,
    environment: &str,
    before: i64,
) -> Result<bool, DeployError> {
    Ok(history(app, project, service, environment)
        .await?
        .iter()
        .any(|r| r.id < before && r.phase == mobius_core::Phase::Succeeded))
}

/// Starts a rollout of `release` to `environment`; returns once it is recorded and its
/// controller runs.
pub async fn deploy(
    app: &Arc<dyn Host>,
    project: &Project,
    release: &Release,
    environment: &str,
    actor: &str,
    strategy_override: Option<Strategy>,
    intent: Intent,
) -> Result<Rollout, DeployError> {
    let config = releases::delivery_at(app, project, &release.commit_sha)
        .await
        .map_err(|e| DeployError::Invalid(format!("mobius.yaml at {}: {e}", short(&release.commit_sha))))?
        .ok_or_else(|| DeployError::Invalid(format!("commit {} has no mobius.yaml", short(&release.commit_sha))))?;
    let service = config
        .services
        .get(&release.service)
        .ok_or_else(|| {
            DeployError::Invalid(format!(
                "mobius.yaml at {} has no service `{}`",
                short(&release.commit_sha),
                release.service
            ))
        })?
        .clone();
    let mut env: Environment = config
        .environments
        .get(environment)
        .ok_or_else(|| DeployError::NotFound(format!("mobius.yaml has no environment `{environment}`")))?
        .clone();
    let Some(&addr) = env.listen.get(&service.name) else {
        return Err(DeployError::Invalid(format!(
            "environment `{environment}` has no `listen` address for `{}`",
            service.name
        )));
    };
    if let Some(before) = &env.after {
        let done = history(&**app, project, &service.name, before)
            .await?
            .iter()
            .any(|r| r.phase == mobius_core::Phase::Succeeded && r.version == release.version);
        if !done {
            return Err(DeployError::Conflict(format!(
                "{} {} must succeed in `{before}` before `{environment}`",
                service.name, release.version
            )));
        }
    }
    let claim = addresses::Claim {
        project: project.name.clone(),
        environment: env.name.clone(),
        service: service.name.clone(),
        addr,
    };
    if let Err(conflict) = addresses::check_deploy(app, project, claim).await {
        return Err(DeployError::Conflict(conflict.to_string()));
    }
    // As Argo Rollouts skips analysis for the first version: an empty environment has
    // nothing to protect or roll back to. Every later rollout waits for a quiet service.
    if intent == Intent::Forward && succeeded_before(&**app, project, &service.name, environment, i64::MAX).await? {
        let firing = app.firing_alerts(&service.name, environment);
        if !firing.is_empty() {
            return Err(DeployError::Conflict(format!(
                "alert {} is firing for {} in {environment}; no rollout starts while it fires (a rollback does): \
                 wait for it to resolve or silence it",
                firing.join(", "),
                service.name
            )));
        }
    }
    if let Some(strategy) = strategy_override {
        env.strategy = strategy;
    }
    let _guard = app.deploys().start_lock.lock().await;
    let active = app
        .store()
        .rollouts(&RolloutFilter {
            project_id: Some(project.id),
            service: Some(service.name.clone()),
            environment: Some(environment.to_string()),
            active: true,
            limit: 1,
        })
        .await?;
    if let Some(running) = active.first() {
        return Err(DeployError::Conflict(format!(
            "rollout {} of {} {} to `{environment}` is {}; abort it first",
            running.id, service.name, running.version, running.phase
        )));
    }
    let agent = agent(&**app).await?;
    let dir = releases::materialize(app, release).await?;
    let rollout = app
        .store()
        .create_rollout(
            project.id,
            &service.name,
            environment,
            release.id,
            env.strategy.kind(),
            actor,
            &format!("deploy {} {} to {environment}", service.name, release.version),
        )
        .await?;
    let stable_dir = stable_release_dir(app, project, &service.name, environment).await;
    let spec = RolloutSpec {
        clock: Arc::new(mobius_core::SystemClock),
        id: rollout.id,
        needs_approval: env.protected,
        service,
        environment: env,
        target: Target {
            version: release.version.clone(),
            dir,
            image: releases::release_image(&release.manifest).map(|(id, _)| id.to_string()),
        },
        stable_dir,
        metrics: Some(app.metrics()),
    };
    spawn_controller(app, agent, rollout.clone(), spec);
    Ok(rollout)
}

/// The unpacked release of the last rollout that succeeded in this environment.
async fn stable_release_dir(
    app: &Arc<dyn Host>,
    project: &Project,
    service: &str,
    environment: &str,
) -> Option<std::path::PathBuf> {
    let rollouts = history(&**app, project, service, environment).await.ok()?;
    let last = rollouts.iter().find(|r| r.phase == mobius_core::Phase::Succeeded)?;
    let release = app.store().release(last.release_id).await.ok()??;
    releases::materialize(app, &release).await.ok()
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn spawn_controller(app: &Arc<dyn Host>, agent: AgentClient, rollout: Rollout, spec: RolloutSpec) {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (updates_tx, mut updates) = mpsc::unbounded_channel::<Update>();
    lock(&app.deploys().active).insert(rollout.id, commands);
    let recorder = {
        let app = Arc::clone(app);
        let rollout = rollout.clone();
        tokio::spawn(async move {
            while let Some(update) = updates.recv().await {
                let status = serde_json::to_value(&update.status).unwrap_or_default();
                let phase = update.status.phase;
                // People's commands are recorded by the API with their names.
                let event = update
                    .event
                    .as_ref()
                    .filter(|(kind, _)| {
                        !matches!(
                            kind,
                            DeployEventKind::Promoted | DeployEventKind::Approved | DeployEventKind::Aborted
                        ) || phase.is_final()
                    })
                    .map(|(kind, message)| (*kind, "mobius", message.as_str()));
                if let Err(e) =
                    app.store().update_rollout(rollout.id, phase, &update.status.message, &status, event).await
                {
                    tracing::error!(rollout = rollout.id, error = %e, "cannot record the rollout's status");
                }
            }
        })
    };
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let phase = rollout::drive(agent, spec, command_rx, updates_tx).await;
        let _ = recorder.await;
        lock(&app.deploys().active).remove(&rollout.id);
        tracing::info!(rollout = rollout.id, phase = phase.as_str(), "rollout ended");
    });
}

/// Where a rollout stands with approvals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Approval {
    /// Its environment is not protected: nothing to approve.
    NotNeeded,
    /// Someone approved it already.
    Given,
    /// Protected and not approved yet.
    Awaited,
}

/// Whether a rollout's environment (as its release's `mobius.yaml` says) wants an
/// approval, and whether it was given.
async fn approval(app: &Arc<dyn Host>, rollout: &Rollout, release: &Release) -> Result<Approval, DeployError> {
    let project = app
        .store()
        .project_by_id(rollout.project_id)
        .await?
        .ok_or_else(|| DeployError::NotFound("the project is gone".into()))?;
    let environment = rollout.environment.clone();
    let config = releases::delivery_at(app, &project, &release.commit_sha)
        .await
        .map_err(|e| DeployError::Invalid(e.to_string()))?;
    let protected = config.and_then(|c| c.environments.get(&environment).map(|e| e.protected)).unwrap_or(false);
    if !protected {
        return Ok(Approval::NotNeeded);
    }
    let approved =
        app.store().deploy_events(Some(rollout.id), 1000).await?.iter().any(|e| e.kind == DeployEventKind::Approved);
    Ok(if approved { Approval::Given } else { Approval::Awaited })
}

/// Whether a rollout waits for an approval now: it is paused in a protected
/// environment and nobody approved it yet.
pub async fn awaits_approval(app: &Arc<dyn Host>, rollout: &Rollout) -> Result<bool, DeployError> {
    if rollout.finished_at.is_some() || rollout.phase != mobius_core::Phase::Paused {
        return Ok(false);
    }
    let Some(release) = app.store().release(rollout.release_id).await? else { return Ok(false) };
    Ok(approval(app, rollout, &release).await? == Approval::Awaited)
}

/// Sends a person's command to a running rollout.
pub async fn command(app: &Arc<dyn Host>, rollout: &Rollout, command: Command, actor: &str) -> Result<(), DeployError> {
    if rollout.finished_at.is_some() {
        return Err(DeployError::Conflict(format!("rollout {} has ended ({})", rollout.id, rollout.phase)));
    }
    let (kind, message) = match &command {
        Command::Promote => (DeployEventKind::Promoted, "promote".to_string()),
        Command::Abort(_) => (DeployEventKind::Aborted, "abort: roll back now".to_string()),
        Command::Approve => {
            let release = app
                .store()
                .release(rollout.release_id)
                .await?
                .ok_or_else(|| DeployError::NotFound("the release is gone".into()))?;
            let refusal = match approval(app, rollout, &release).await? {
                Approval::NotNeeded => Some(format!(
                    "environment {} is not protected: its rollouts need no approval (promote moves a paused one on)",
                    rollout.environment
                )),
                Approval::Given => Some(format!("rollout {} is approved already", rollout.id)),
                Approval::Awaited => None,
            };
            if let Some(refusal) = refusal {
                return Err(DeployError::Conflict(refusal));
            }
            let name = actor.rsplit(':').next().unwrap_or(actor);
            if name == release.author || actor == rollout.created_by {
                return Err(DeployError::Forbidden(format!(
                    "{actor} wrote or deployed {} {}; someone else must approve it",
                    rollout.service, rollout.version
                )));
            }
            (DeployEventKind::Approved, "approved".to_string())
        }
    };
    let sender = lock(&app.deploys().active).get(&rollout.id).cloned();
    let Some(sender) = sender else {
        return Err(DeployError::Conflict(format!("rollout {} has no controller in this server", rollout.id)));
    };
    sender.send(command).map_err(|_| DeployError::Conflict(format!("rollout {} is ending", rollout.id)))?;
    app.store().add_deploy_event(rollout, kind, actor, &message).await?;
    Ok(())
}

/// The release to go back to: the one before the current stable version, or `to`.
pub async fn rollback(
    app: &Arc<dyn Host>,
    project: &Project,
    service: &str,
    environment: &str,
    to: Option<&str>,
    actor: &str,
) -> Result<Rollout, DeployError> {
    let rollouts = history(&**app, project, service, environment).await?;
    if let Some(active) = rollouts.iter().find(|r| r.finished_at.is_none()) {
        // Rolling back a rollout in progress is aborting it.
        command(app, active, Command::Abort(actor.to_string()), actor).await?;
        return Ok(active.clone());
    }
    let release = match to {
        Some(wanted) => find_release(&**app, project, service, wanted).await?,
        None => {
            let mut succeeded = rollouts.iter().filter(|r| r.phase == mobius_core::Phase::Succeeded);
            let current = succeeded.next().ok_or_else(|| {
                DeployError::Conflict(format!("nothing of `{service}` was deployed to `{environment}`"))
            })?;
            let previous = succeeded.find(|r| r.version != current.version).ok_or_else(|| {
                DeployError::Conflict(format!("`{environment}` has no earlier release of `{service}` to go back to"))
            })?;
            app.store()
                .release(previous.release_id)
                .await?
                .ok_or_else(|| DeployError::NotFound("the earlier release is gone".into()))?
        }
    };
    // A rollback is a fast switch: instances kept warm are reused, no analysis steps.
    let fast = Strategy::BlueGreen { auto_promote: true, preview: None, rollback_window: Duration::from_secs(600) };
    deploy(app, project, &release, environment, actor, Some(fast), Intent::Rollback).await
}

/// Deploys new releases to the environments that ask for it (`auto_deploy`, and no `after`
/// or an `after` already passed).
pub async fn auto_deploy(app: &Arc<dyn Host>, project: &Project, made: &[Release]) {
    for release in made {
        let Ok(Some(config)) = releases::delivery_at(app, project, &release.commit_sha).await else { continue };
        for env in config.environments.values() {
            if env.auto_deploy && env.after.is_none() && env.listen.contains_key(&release.service) {
                // Deployed there already (the release was handed again after a restart).
                let filter = RolloutFilter {
                    project_id: Some(project.id),
                    service: Some(release.service.clone()),
                    environment: Some(env.name.clone()),
                    limit: 1000,
                    ..RolloutFilter::default()
                };
                match app.store().rollouts(&filter).await {
                    Ok(rollouts) if rollouts.iter().any(|r| r.release_id == release.id) => continue,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(release = release.id, error = %e, "cannot read the environment's rollouts");
                        continue;
                    }
                }
                if let Err(e) = deploy(app, project, release, &env.name, "mobius", None, Intent::Forward).await {
                    tracing::warn!(release = release.id, environment = %env.name, error = %e, "automatic deploy refused");
                }
            }
        }
    }
}

/// Takes up rollouts a previous server process left unfinished: traffic is as that
/// process left it (the agent kept it); the controller starts again from the first
/// step, reusing the new version's running instances.
pub async fn resume(app: &Arc<dyn Host>) {
    let Ok(active) =
        app.store().rollouts(&RolloutFilter { active: true, limit: 1000, ..RolloutFilter::default() }).await
    else {
        return;
    };
    for rollout in active {
        let outcome = resume_one(app, &rollout).await;
        if let Err(e) = outcome {
            tracing::warn!(rollout = rollout.id, error = %e, "cannot resume the rollout");
            let message = format!("could not be resumed after a restart: {e}");
            let event = Some((DeployEventKind::Failed, "mobius", message.as_str()));
            let _ = app.store().update_rollout(rollout.id, Phase::Failed, &message, &rollout.status, event).await;
        }
    }
}

async fn resume_one(app: &Arc<dyn Host>, rollout: &Rollout) -> Result<(), DeployError> {
    let project = app
        .store()
        .project_by_id(rollout.project_id)
        .await?
        .ok_or_else(|| DeployError::NotFound("the project is gone".into()))?;
    let release = app
        .store()
        .release(rollout.release_id)
        .await?
        .ok_or_else(|| DeployError::NotFound("the release is gone".into()))?;
    let config = releases::delivery_at(app, &project, &release.commit_sha)
        .await
        .map_err(|e| DeployError::Invalid(e.to_string()))?
        .ok_or_else(|| DeployError::Invalid("mobius.yaml is gone".into()))?;
    let service =
        config.services.get(&rollout.service).cloned().ok_or_else(|| DeployError::Invalid("service is gone".into()))?;
    let env = config
        .environments
        .get(&rollout.environment)
        .cloned()
        .ok_or_else(|| DeployError::Invalid("environment is gone".into()))?;
    let agent = agent(&**app).await?;
    let dir = releases::materialize(app, &release).await?;
    let approved =
        app.store().deploy_events(Some(rollout.id), 1000).await?.iter().any(|e| e.kind == DeployEventKind::Approved);
    let stable_dir = stable_release_dir(app, &project, &service.name, &env.name).await;
    app.store()
        .add_deploy_event(
            rollout,
            DeployEventKind::Resumed,
            "mobius",
            "the server restarted; the rollout starts again from its first step",
        )
        .await?;
    let spec = RolloutSpec {
        clock: Arc::new(mobius_core::SystemClock),
        id: rollout.id,
        needs_approval: env.protected && !approved,
        service,
        environment: env,
        target: Target {
            version: release.version.clone(),
            dir,
            image: releases::release_image(&release.manifest).map(|(id, _)| id.to_string()),
        },
        stable_dir,
        metrics: Some(app.metrics()),
    };
    spawn_controller(app, agent, rollout.clone(), spec);
    Ok(())
}
