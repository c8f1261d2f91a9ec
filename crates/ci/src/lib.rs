//! CI orchestration, the build-and-test stage's decisions around the runner: the
//! queue and the scheduler that starts queued runs (global job slots, run and job
//! concurrency groups, re-run reuse), the execution of a run with its reporter,
//! artifacts and JUnit reports, the repository poller and cron schedules, retention,
//! and recovery after a crash. What it needs from the server that runs it is
//! [`Host`]; its shared state is [`Ci`].
#![forbid(unsafe_code)]

mod collect;
pub mod execute;
pub mod junit;
pub mod rerun;
pub mod trigger;

use async_trait::async_trait;
use mobius_runner::options::SandboxPolicy;
use mobius_store::{BlobStore, Store};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use mobius_code::refs::RefChange;
use mobius_core::{Conclusion, EventKind, Status};
use mobius_store::{NewEvent, Project, Run};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
pub use trigger::{create_runs, Trigger, TriggerError};

/// What CI needs from the server that runs it.
#[async_trait]
pub trait Host: Send + Sync + 'static {
    fn store(&self) -> &Store;
    fn ci(&self) -> &Ci;
    /// Logs and artifacts.
    fn blobs(&self) -> Arc<dyn BlobStore>;
    /// `actions/cache` entries, apart from what retention removes.
    fn cache_blobs(&self) -> Arc<dyn BlobStore>;
    /// A secret's value, opened with the server's key.
    fn open_secret(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, mobius_store::crypto::KeyError>;
    fn sandbox(&self) -> SandboxPolicy;
    fn action_dir(&self) -> Option<PathBuf>;
    /// Where remote actions are fetched from and cached.
    fn actions(&self) -> mobius_runner::fetch::ActionSource;
    fn poll_interval(&self) -> Duration;
    /// How long logs and artifacts of completed runs are kept.
    fn retention(&self) -> Duration;
    fn work_dir(&self, run_id: i64) -> PathBuf;
    fn repo_dir(&self, project: &Project) -> PathBuf;
    fn state_dir(&self) -> PathBuf;
    /// Stops the background tasks.
    fn stopping(&self) -> &CancellationToken;
    /// A job finished after `seconds` (for `/metrics`).
    fn job_finished(&self, seconds: f64);
    /// Lines a job's step wrote, labelled with where they come from.
    fn job_log(&self, labels: Vec<(String, String)>, lines: &str);
    /// A project's default branch moved to `sha` (the monitor reads its `mobius.yaml`).
    async fn pushed(&self, project: &Project, sha: &str);
}

/// CI's state in a server: runs executing here, the job slots and job concurrency
/// groups every run shares, and the locks that keep run creation and polling in order.
pub struct Ci {
    /// Job slots shared by every run (the global parallel-jobs limit).
    pub job_slots: Arc<Semaphore>,
    /// Job-level concurrency groups, shared by every run.
    pub job_groups: Arc<mobius_runner::concurrency::ConcurrencyGroups>,
    /// Wakes the scheduler when runs are queued or finish.
    pub wake_scheduler: Notify,
    /// Runs executing in this process, with the token that cancels each.
    pub live: std::sync::Mutex<HashMap<i64, LiveRun>>,
    /// Serialises run creation, so numbers and ref bookkeeping stay consistent.
    pub trigger_lock: tokio::sync::Mutex<()>,
    /// Held while a project's refs are compared and recorded, so the poller and the
    /// adding of a project never both take the same push as new.
    pub poll_lock: tokio::sync::Mutex<()>,
}

impl Ci {
    /// At most `jobs` jobs at a time across every run.
    pub fn new(jobs: usize) -> Ci {
        Ci {
            job_slots: Arc::new(Semaphore::new(jobs)),
            job_groups: Arc::default(),
            wake_scheduler: Notify::new(),
            live: std::sync::Mutex::new(HashMap::new()),
            trigger_lock: tokio::sync::Mutex::new(()),
            poll_lock: tokio::sync::Mutex::new(()),
        }
    }
}

/// A run executing in this process.
#[derive(Debug)]
pub struct LiveRun {
    pub cancel: CancellationToken,
    /// Bumped whenever a log line or status change of the run is written.
    pub progress: tokio::sync::watch::Sender<u64>,
    /// Why the run was cancelled, recorded as the run's reason.
    pub reason: std::sync::Mutex<Option<String>>,
}

/// Why a repository could not be fetched or compared.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Git(#[from] mobius_code::git::GitError),
    #[error(transparent)]
    Store(#[from] mobius_store::StoreError),
    #[error("the git task stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

/// The reason recorded on runs a previous process left running.
pub const RESTART_REASON: &str = "server restarted";

/// Ends the runs a previous process was executing: their logs so far are kept, and
/// they complete with `failure` and the reason "server restarted". A run that had
/// not started any job yet (it waited for a job slot) goes back to the queue and
/// starts again after the restart.
pub async fn recover(app: &Arc<dyn Host>) -> anyhow::Result<()> {
    let runs_dir = app.state_dir().join("runs");
    for run in app.store().unfinished_runs().await? {
        if run.status != Status::InProgress {
            continue;
        }
        let run_dir = runs_dir.join(run.id.to_string());
        kill_processes_under(&app.work_dir(run.id));
        kill_processes_under(&run_dir);
        if app.store().requeue_unstarted_run(run.id).await? {
            tracing::info!(run = run.id, "run that had started no job requeued after a restart");
            let _ = std::fs::remove_dir_all(app.work_dir(run.id));
            let _ = std::fs::remove_dir_all(&run_dir);
            continue;
        }
        for step in app.store().steps_without_log(run.id).await? {
            execute::ingest_log(app, step.id, Path::new(&step.spool)).await?;
        }
        app.store().finish_open_jobs(run.id, Conclusion::Failure, RESTART_REASON).await?;
        app.store().finish_run(run.id, Conclusion::Failure, Some(RESTART_REASON)).await?;
        tracing::warn!(run = run.id, "run interrupted by a restart marked failed");
        let _ = std::fs::remove_dir_all(app.work_dir(run.id));
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    Ok(())
}

/// Kills the process groups of processes whose working directory is under `dir`:
/// the steps a killed server left behind.
fn kill_processes_under(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else { return };
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else { continue };
        if cwd.starts_with(&dir) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let group = nix::unistd::getpgid(Some(pid)).unwrap_or(pid);
            if group != nix::unistd::getpgrp() {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Starts the scheduler, the poller, cron and retention.
pub fn start_background(app: &Arc<dyn Host>) {
    tokio::spawn(scheduler(app.clone()));
    tokio::spawn(poller(app.clone()));
    tokio::spawn(cron(app.clone()));
    tokio::spawn(retention(app.clone()));
}

async fn scheduler(app: Arc<dyn Host>) {
    loop {
        if let Err(e) = schedule_once(&app).await {
            tracing::error!(error = %e, "scheduler pass failed");
        }
        tokio::select! {
            () = app.ci().wake_scheduler.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = app.stopping().cancelled() => return,
        }
    }
}

/// Cancels a run: a queued one completes at once, a running one stops its jobs.
pub async fn cancel_run(app: &Arc<dyn Host>, run: &Run, reason: &str) -> Result<(), mobius_store::StoreError> {
    app.store().request_cancel(run.id).await?;
    let live = app.ci().live.lock().ok().and_then(|l| {
        let live = l.get(&run.id)?;
        if let Ok(mut slot) = live.reason.lock() {
            slot.get_or_insert_with(|| reason.to_string());
        }
        Some(live.cancel.clone())
    });
    match live {
        Some(token) => token.cancel(),
        None if run.status == Status::Queued => {
            app.store().finish_run(run.id, Conclusion::Cancelled, Some(reason)).await?;
        }
        None => {}
    }
    app.ci().wake_scheduler.notify_one();
    Ok(())
}

/// One pass: supersede older pending runs of a group, cancel what a newer run of a
/// `cancel-in-progress` group replaces, and start what may start.
async fn schedule_once(app: &Arc<dyn Host>) -> Result<(), mobius_store::StoreError> {
    if app.stopping().is_cancelled() {
        return Ok(());
    }
    let unfinished = app.store().unfinished_runs().await?;
    let mut running: HashMap<String, Vec<Run>> = HashMap::new();
    let mut newest_queued: HashMap<String, i64> = HashMap::new();
    for run in &unfinished {
        if let Some(group) = &run.concurrency_group {
            if run.status == Status::InProgress {
                running.entry(group.clone()).or_default().push(run.clone());
            } else {
                newest_queued.insert(group.clone(), run.id);
            }
        }
    }
    for run in unfinished.into_iter().filter(|r| r.status == Status::Queued) {
        if run.cancel_requested {
            app.store().finish_run(run.id, Conclusion::Cancelled, Some("cancelled")).await?;
            continue;
        }
        if let Some(group) = &run.concurrency_group {
            // As on GitHub: a group holds one running and one pending run; a newer pending one replaces it.
            if newest_queued.get(group).is_some_and(|newest| *newest != run.id) {
                let newest = newest_queued.get(group).copied().unwrap_or_default();
                let reason = format!("superseded by run {newest} in concurrency group '{}'", display_group(group));
                app.store().finish_run(run.id, Conclusion::Cancelled, Some(&reason)).await?;
                continue;
            }
            if let Some(active) = running.get(group).filter(|runs| !runs.is_empty()) {
                if run.cancel_in_progress {
                    for other in active {
                        if !other.cancel_requested {
                            let reason = format!("cancelled by run {} (cancel-in-progress)", run.id);
                            cancel_run(app, other, &reason).await?;
                        }
                    }
                }
                continue;
            }
        }
        if app.store().start_run(run.id).await? {
            if let Some(group) = &run.concurrency_group {
                running.entry(group.clone()).or_default().push(run.clone());
            }
            tracing::info!(run = run.id, workflow = %run.workflow, "run started");
            let started = app.store().run(run.id).await?.unwrap_or(run);
            tokio::spawn(execute::execute_run(app.clone(), started));
        }
    }
    Ok(())
}

/// A group as the workflow named it (without the project prefix).
fn display_group(group: &str) -> &str {
    group.split_once(':').map_or(group, |(_, g)| g)
}

/// Reads every project's refs on an interval and triggers `push` for what moved.
async fn poller(app: Arc<dyn Host>) {
    loop {
        match app.store().projects().await {
            Ok(projects) => {
                for project in projects {
                    let polled = {
                        let _polling = app.ci().poll_lock.lock().await;
                        poll_project(&app, &project).await
                    };
                    if let Err(e) = polled {
                        tracing::warn!(project = %project.name, error = %e, "cannot poll the repository");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list projects"),
        }
        tokio::select! {
            () = tokio::time::sleep(app.poll_interval()) => {}
            () = app.stopping().cancelled() => return,
        }
    }
}

/// The project's repository, fetched first when it is a URL (into the server's mirror).
pub async fn sync_repo(app: &dyn Host, project: &Project) -> Result<PathBuf, PollError> {
    let dir = app.repo_dir(project);
    if mobius_code::git::is_remote_url(&project.repo) {
        let (url, target) = (project.repo.clone(), dir.clone());
        tokio::task::spawn_blocking(move || mobius_code::git::mirror(&url, &target)).await??;
    }
    Ok(dir)
}

/// Compares the repository's refs with those last seen; pushes trigger runs. A project
/// polled for the first time (no refs recorded yet) records every ref and runs its
/// branch head once. Callers hold `app.ci().poll_lock`.
pub async fn poll_project(app: &Arc<dyn Host>, project: &Project) -> Result<Vec<Run>, PollError> {
    let repo = sync_repo(&**app, project).await?;
    let current = tokio::task::spawn_blocking(move || mobius_code::git::refs(&repo)).await??;
    let seen: HashMap<String, String> = app.store().refs(project.id).await?.into_iter().collect();
    let mut runs = Vec::new();
    let mut pushes = Vec::new();
    for change in mobius_code::refs::changes(&seen, &current, &project.branch) {
        let pushed = |name: &str, before: Option<&String>, after: Option<&String>, deleted: bool| {
            let mut data = serde_json::json!({"ref": name, "before": before, "after": after});
            if deleted {
                data["deleted"] = true.into();
            }
            NewEvent::new(EventKind::PushReceived, "mobius").project(&project.name).data(data)
        };
        match change {
            RefChange::Pushed { name, sha, before } => {
                let event = pushed(&name, before.as_ref(), Some(&sha), false);
                app.store().set_ref(project.id, &name, Some(&sha), Some(event)).await?;
                pushes.push((name, sha, before));
            }
            RefChange::Recorded { name, sha } => {
                app.store().set_ref(project.id, &name, Some(&sha), None).await?;
            }
            RefChange::Deleted { name, before } => {
                let event = pushed(&name, Some(&before), None, true);
                app.store().set_ref(project.id, &name, None, Some(event)).await?;
            }
        }
    }
    for (name, sha, before) in pushes {
        let mut trigger = Trigger::new("push", &name, &sha, "mobius");
        trigger.before = before;
        match create_runs(app, project, trigger).await {
            Ok(new) => runs.extend(new),
            Err(e) => tracing::warn!(project = %project.name, git_ref = %name, error = %e, "push not run"),
        }
    }
    Ok(runs)
}

/// Fires `schedule` triggers at each minute whose cron matches (UTC, as on GitHub).
async fn cron(app: Arc<dyn Host>) {
    loop {
        let now = chrono::Utc::now();
        let into_minute = u64::from(chrono::Timelike::second(&now));
        let wait = Duration::from_secs(60 - into_minute.min(59));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = app.stopping().cancelled() => return,
        }
        let minute = chrono::Utc::now();
        if let Err(e) = fire_schedules(&app, minute).await {
            tracing::error!(error = %e, "schedule pass failed");
        }
    }
}

/// Why a pass over the schedules stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot list the projects: {0}")]
    Store(#[from] mobius_store::StoreError),
    #[error("reading a repository's workflows stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

/// Runs the scheduled workflows due at `at` on each project's default branch; a
/// repository that cannot be read is skipped (it is tried again next minute).
pub async fn fire_schedules(app: &Arc<dyn Host>, at: chrono::DateTime<chrono::Utc>) -> Result<(), ScheduleError> {
    for project in app.store().projects().await? {
        let branch = format!("refs/heads/{}", project.branch);
        let (repo, wanted) = (app.repo_dir(&project), branch.clone());
        let read = tokio::task::spawn_blocking(move || {
            let refs = mobius_code::git::refs(&repo)?;
            let Some(sha) = refs.into_iter().find(|(n, _)| *n == wanted).map(|(_, s)| s) else { return Ok(None) };
            let files = mobius_code::git::workflow_files(&repo, &sha)?;
            Ok::<_, mobius_code::git::GitError>(Some((sha, files)))
        })
        .await?;
        let (sha, files) = match read {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(project = %project.name, error = %e, "cannot read the scheduled workflows");
                continue;
            }
        };
        for expression in mobius_code::cron::due(&files, at) {
            let mut trigger = Trigger::new("schedule", &branch, &sha, "mobius");
            trigger.cron = Some(expression.clone());
            if let Err(e) = create_runs(app, &project, trigger).await {
                tracing::warn!(project = %project.name, cron = %expression, error = %e, "schedule not run");
            }
        }
    }
    Ok(())
}

/// Removes logs and artifacts of runs completed longer ago than the retention period.
async fn retention(app: Arc<dyn Host>) {
    loop {
        if let Err(e) = expire(&app).await {
            tracing::error!(error = %e, "retention pass failed");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            () = app.stopping().cancelled() => return,
        }
    }
}

/// One retention pass; returns how many blobs were deleted.
pub async fn expire(app: &Arc<dyn Host>) -> Result<usize, mobius_store::StoreError> {
    let cutoff = mobius_store::now_ms() - app.retention().as_millis() as i64;
    let mut deleted = 0;
    for digest in app.store().expire_before(cutoff).await? {
        if !app.store().blob_in_use(&digest).await? && app.blobs().delete(&digest).is_ok() {
            deleted += 1;
        }
    }
    if deleted > 0 {
        tracing::info!(blobs = deleted, "expired logs and artifacts removed");
    }
    Ok(deleted)
}
