//! Executes one run with the runner crate: checkout of the commit with gix, secrets and
//! variables, the shared job slots, and a reporter that writes jobs and steps to the
//! store as they happen. Afterwards logs, artifacts and test reports go to the blob store.

use crate::trigger::repository_name;
use crate::{Host, LiveRun};
use mobius_core::{Conclusion, RunEvent, Status};
use mobius_runner::repo::RepoInfo;
use mobius_runner::{CancellationToken, Reporter, RunError, RunOptions};
use mobius_store::{Project, Run};
use mobius_workflow::{parse_workflow, SourceFile};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Passes runner events to the task that writes them to the store, in order.
struct StoreReporter {
    /// Events with the time they happened; `None` ends the stream (sent by the run once the runner returned).
    events: mpsc::UnboundedSender<Option<(RunEvent, i64)>>,
    progress: tokio::sync::watch::Sender<u64>,
    /// Job logs also go to the host's log store, labelled with where they come from.
    host: Arc<dyn Host>,
    /// `source="job"`, `project`, `workflow` and `run`.
    labels: Vec<(String, String)>,
}

impl Reporter for StoreReporter {
    fn event(&self, event: RunEvent) {
        let _ = self.events.send(Some((event, mobius_store::now_ms())));
    }
    fn log_lines(&self, job: &str, step: &str, lines: &str) {
        // The runner has already appended the lines to the step's log file; followers re-read it.
        self.progress.send_modify(|n| *n += 1);
        let mut labels = self.labels.clone();
        labels.push(("job".into(), job.to_string()));
        labels.push(("step".into(), step.to_string()));
        self.host.job_log(labels, lines);
    }
}

/// What the writer learnt of each job while the run went on.
#[derive(Default)]
struct JobTrack {
    id: i64,
    steps: i64,
    /// The step started last: its id, name and log file.
    current: Option<(i64, String, PathBuf)>,
    /// `run_dir/jobs/<dir>/workspace`, known from the first step's log path.
    workspace: Option<PathBuf>,
}

/// Writes the runner's events to the store; returns what it knows of each job.
async fn write_events(
    app: Arc<dyn Host>,
    run_id: i64,
    mut events: mpsc::UnboundedReceiver<Option<(RunEvent, i64)>>,
    progress: tokio::sync::watch::Sender<u64>,
) -> HashMap<String, JobTrack> {
    let mut jobs: HashMap<String, JobTrack> = HashMap::new();
    while let Some(Some((event, at))) = events.recv().await {
        if let Err(e) = write_event(&app, run_id, &mut jobs, event, at).await {
            tracing::error!(run = run_id, error = %e, "cannot record a run event");
        }
        progress.send_modify(|n| *n += 1);
    }
    jobs
}

async fn write_event(
    app: &Arc<dyn Host>,
    run_id: i64,
    jobs: &mut HashMap<String, JobTrack>,
    event: RunEvent,
    at: i64,
) -> Result<(), mobius_store::StoreError> {
    let store = &app.store();
    match event {
        RunEvent::JobStarted { job, .. } => {
            let id = store.create_job(run_id, &job, Status::InProgress, at).await?;
            jobs.insert(job, JobTrack { id, ..JobTrack::default() });
        }
        RunEvent::JobSkipped { job, reason, conclusion } => {
            let id = store.create_job(run_id, &job, Status::Queued, at).await?;
            store.finish_job(id, conclusion, Some(&reason), "{}", at).await?;
        }
        RunEvent::JobReused { job, conclusion } => {
            // The outputs the runner was given for it, kept for a later re-run too.
            let outputs = reused_outputs(&app.store().run(run_id).await?.map(|r| r.reuse).unwrap_or_default(), &job);
            let id = store.create_job(run_id, &job, Status::Queued, at).await?;
            store.finish_job(id, conclusion, Some("reused from the previous attempt"), &outputs, at).await?;
        }
        RunEvent::StepStarted { job, step, log } => {
            let Some(track) = jobs.get_mut(&job) else { return Ok(()) };
            track.steps += 1;
            let log = PathBuf::from(log);
            if track.workspace.is_none() {
                // run_dir/logs/<dir>/NN-step.log → run_dir/jobs/<dir>/workspace
                if let (Some(dir), Some(run_dir)) =
                    (log.parent(), log.parent().and_then(Path::parent).and_then(Path::parent))
                {
                    if let Some(name) = dir.file_name() {
                        track.workspace = Some(run_dir.join("jobs").join(name).join("workspace"));
                    }
                }
            }
            let id = store.create_step(track.id, track.steps, &step, &log.display().to_string(), at).await?;
            track.current = Some((id, step, log));
        }
        RunEvent::StepFinished { job, step, conclusion, .. } => {
            let Some(track) = jobs.get_mut(&job) else { return Ok(()) };
            match track.current.take() {
                Some((id, name, log)) if name == step => {
                    store.finish_step(id, conclusion, at).await?;
                    ingest_log(app, id, &log).await?;
                }
                other => {
                    // A skipped step never started.
                    track.current = other;
                    track.steps += 1;
                    let id = store.create_step(track.id, track.steps, &step, "", at).await?;
                    store.finish_step(id, conclusion, at).await?;
                }
            }
        }
        RunEvent::Annotation { job, step, annotation } => {
            let kept = store.add_annotation(run_id, &job, &step, &annotation).await?;
            if !kept {
                tracing::debug!(run = run_id, job = %job, "annotation dropped: the job has too many");
            }
        }
        RunEvent::JobFinished { job, conclusion, duration_ms, outputs } => {
            if let Some(track) = jobs.get(&job) {
                let outputs = serde_json::to_string(&outputs).unwrap_or_else(|_| "{}".into());
                store.finish_job(track.id, conclusion, None, &outputs, at).await?;
                app.job_finished(duration_ms as f64 / 1000.0);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The outputs of job `job` in a run's `reuse` object, as a JSON object text.
fn reused_outputs(reuse: &str, job: &str) -> String {
    serde_json::from_str::<Value>(reuse)
        .ok()
        .and_then(|v| v.get(job).and_then(|j| j.get("outputs")).cloned())
        .map_or_else(|| "{}".to_string(), |o| o.to_string())
}

/// Moves a finished step's log file into the blob store.
pub(crate) async fn ingest_log(app: &Arc<dyn Host>, step_id: i64, log: &Path) -> Result<(), mobius_store::StoreError> {
    if log.as_os_str().is_empty() || !log.exists() {
        return Ok(());
    }
    let blobs = app.blobs();
    let path = log.to_path_buf();
    match tokio::task::spawn_blocking(move || blobs.put_file(&path)).await {
        Ok(Ok((digest, size))) => app.store().set_step_log(step_id, &digest, size as i64).await,
        Ok(Err(e)) => {
            tracing::error!(step = step_id, log = %log.display(), error = %e, "cannot store a step log");
            Ok(())
        }
        Err(e) => {
            tracing::error!(step = step_id, error = %e, "log ingestion panicked");
            Ok(())
        }
    }
}

/// Runs a started run to completion and records how it ended.
pub async fn execute_run(app: Arc<dyn Host>, run: Run) {
    let cancel = CancellationToken::new();
    let (progress, _) = tokio::sync::watch::channel(0u64);
    if let Ok(mut live) = app.ci().live.lock() {
        live.insert(run.id, LiveRun { cancel: cancel.clone(), progress: progress.clone(), reason: Default::default() });
    }
    if run.cancel_requested {
        cancel.cancel();
    }
    let outcome = run_inner(&app, &run, cancel.clone(), progress.clone()).await;
    let (conclusion, reason) = match outcome {
        Ok(conclusion) => (conclusion, None),
        Err(failure) => (Conclusion::Failure, Some(failure.to_string())),
    };
    let conclusion =
        if cancel.is_cancelled() && conclusion != Conclusion::Failure || conclusion == Conclusion::Cancelled {
            Conclusion::Cancelled
        } else {
            conclusion
        };
    let cancel_reason =
        app.ci().live.lock().ok().and_then(|l| l.get(&run.id).and_then(|r| r.reason.lock().ok()?.clone()));
    let reason = reason.or_else(|| {
        (conclusion == Conclusion::Cancelled).then(|| cancel_reason.unwrap_or_else(|| "cancelled".to_string()))
    });
    if let Err(e) = app.store().finish_open_jobs(run.id, conclusion, reason.as_deref().unwrap_or("")).await {
        tracing::error!(run = run.id, error = %e, "cannot complete the run's jobs");
    }
    if let Err(e) = app.store().finish_run(run.id, conclusion, reason.as_deref()).await {
        tracing::error!(run = run.id, error = %e, "cannot record the run's conclusion");
    }
    tracing::info!(run = run.id, conclusion = conclusion.as_str(), "run completed");
    // Its releases follow from its `run.completed` event (the `releases` subscriber).
    if let Ok(mut live) = app.ci().live.lock() {
        live.remove(&run.id);
    }
    progress.send_modify(|n| *n += 1);
    // The checkout and the runner's directory are no longer needed: everything kept is in the store.
    let work = app.work_dir(run.id);
    let run_dir = app.state_dir().join("runs").join(run.id.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(work);
        let _ = std::fs::remove_dir_all(run_dir);
    })
    .await;
    app.ci().wake_scheduler.notify_one();
}

/// Why a run failed before or outside its jobs; its text is the run's `reason`.
#[derive(Debug, thiserror::Error)]
enum RunFailure {
    #[error(transparent)]
    Store(#[from] mobius_store::StoreError),
    #[error("the project was removed")]
    ProjectRemoved,
    #[error("checkout of {sha} failed: {source}")]
    Checkout {
        sha: String,
        #[source]
        source: mobius_runner::git::CheckoutError,
    },
    #[error("checkout of {sha} failed: cannot read {path}: {source}")]
    ReadWorkflow {
        sha: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("preparing the run stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
    /// The workflow file's problems, or the plan's, one per line.
    #[error("{0}")]
    Invalid(String),
    #[error("secret {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: mobius_store::crypto::KeyError,
    },
    #[error(transparent)]
    Runner(RunError),
}

async fn run_inner(
    app: &Arc<dyn Host>,
    run: &Run,
    cancel: CancellationToken,
    progress: tokio::sync::watch::Sender<u64>,
) -> Result<Conclusion, RunFailure> {
    let project = app.store().project_by_id(run.project_id).await?.ok_or(RunFailure::ProjectRemoved)?;
    let source = app.work_dir(run.id).join("src");
    let (repo, sha, target) = (app.repo_dir(&project), run.head_sha.clone(), source.clone());
    let workflow_path = run.workflow.clone();
    let text = tokio::task::spawn_blocking(move || {
        mobius_runner::git::checkout(&repo, &sha, &target, true)
            .map_err(|source| RunFailure::Checkout { sha: sha.clone(), source })?;
        std::fs::read_to_string(target.join(&workflow_path)).map_err(|source| RunFailure::ReadWorkflow {
            sha,
            path: workflow_path,
            source,
        })
    })
    .await??;
    let workflow = parse_workflow(SourceFile::new(run.workflow.clone(), text))
        .map_err(|errors| RunFailure::Invalid(errors.render(false)))?;

    let options = run_options(app, &project, run, source).await?;
    let info = RepoInfo { sha: run.head_sha.clone(), git_ref: run.ref_name.clone(), remote_repository: None };
    let problems = mobius_runner::plan::preflight(std::slice::from_ref(&workflow), &options);
    if !problems.is_empty() {
        return Err(RunFailure::Invalid(problems.join("\n")));
    }
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_events(app.clone(), run.id, events_rx, progress.clone()));
    let reporter: Arc<dyn Reporter> = Arc::new(StoreReporter {
        events: events_tx.clone(),
        progress,
        host: Arc::clone(app),
        labels: vec![
            ("source".into(), "job".into()),
            ("project".into(), project.name.clone()),
            ("workflow".into(), run.workflow_name.clone()),
            ("run".into(), run.id.to_string()),
        ],
    });
    let result = mobius_runner::execute(options, info, vec![workflow], reporter, cancel).await;
    // The writer drains what the run reported, then stops (a background process of a
    // step may still hold the reporter, so the end is said explicitly).
    let _ = events_tx.send(None);
    let jobs = writer.await.unwrap_or_default();
    let summary = match result {
        Ok(summary) => summary,
        Err(RunError::Invalid(problems)) => return Err(RunFailure::Invalid(problems.join("\n"))),
        Err(e) => return Err(RunFailure::Runner(e)),
    };
    super::collect::artifacts_and_reports(app, run.id, &summary.run_dir, &jobs_workspaces(&jobs), &summary.masker)
        .await;
    Ok(summary.conclusion)
}

fn jobs_workspaces(jobs: &HashMap<String, JobTrack>) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> =
        jobs.iter().filter_map(|(name, t)| t.workspace.clone().map(|w| (name.clone(), w))).collect();
    out.sort();
    out
}

/// Options for the runner: the project's secrets (opened with the master key) and variables.
async fn run_options(
    app: &Arc<dyn Host>,
    project: &Project,
    run: &Run,
    source: PathBuf,
) -> Result<RunOptions, RunFailure> {
    let mut options = RunOptions::new(source, app.state_dir());
    options.event_name = run.event.clone();
    options.event_payload = serde_json::from_str(&run.payload).unwrap_or(Value::Object(Default::default()));
    if let Ok(Value::Object(inputs)) = serde_json::from_str::<Value>(&run.inputs) {
        options.inputs = inputs.into_iter().map(|(k, v)| (k, mobius_workflow::expr::to_display_string(&v))).collect();
    }
    // A pull request from a fork runs code the project has not accepted: as on
    // GitHub, without the project's secrets and without writing its caches.
    let from_fork = is_fork_pull_request(&run.event, &options.event_payload);
    if from_fork {
        tracing::info!(run = run.id, project = %project.name, "pull request from a fork: no secrets, no cache writes");
        options.cache_writes = false;
    } else {
        for (name, sealed, _) in app.store().secrets(project.id).await? {
            let value = app
                .open_secret(&secret_context(project.id, &name), &sealed)
                .map_err(|source| RunFailure::Secret { name: name.clone(), source })?;
            options.secrets.insert(name, String::from_utf8_lossy(&value).to_string());
        }
    }
    options.vars = app.store().variables(project.id).await?.into_iter().collect();
    if let Ok(Value::Object(reuse)) = serde_json::from_str::<Value>(&run.reuse) {
        for (job, entry) in reuse {
            let conclusion = match entry.get("conclusion").and_then(Value::as_str) {
                Some("success") => Conclusion::Success,
                Some("skipped") => Conclusion::Skipped,
                _ => continue,
            };
            let outputs = entry.get("outputs").and_then(Value::as_object).cloned().unwrap_or_default();
            options.reuse.insert(job, mobius_runner::ReusedJob { conclusion, outputs });
        }
    }
    options.actor = Some(run.actor.clone());
    options.repository = Some(repository_name(project));
    options.run_id = Some(run.id.to_string());
    options.run_number = Some(run.number as u64);
    options.run_attempt = run.attempt.max(1) as u64;
    options.keep_runs = 0;
    options.keep_workspaces = true;
    options.use_gitignore = false;
    options.job_slots = Some(app.ci().job_slots.clone());
    options.concurrency = Some(app.ci().job_groups.clone());
    options.cache_blobs = Some(app.cache_blobs());
    // By project id: two projects whose repositories end alike never share entries.
    options.cache_namespace = Some(format!("project-{}", project.id));
    options.sandbox = app.sandbox();
    options.action_dir = app.action_dir();
    options.actions = app.actions();
    options.default_image = project.executor_image.clone();
    Ok(options)
}

/// Whether a `pull_request` event comes from a fork: its head repository is not its
/// base repository.
pub fn is_fork_pull_request(event: &str, payload: &Value) -> bool {
    if !matches!(event, "pull_request" | "pull_request_review" | "pull_request_review_comment") {
        return false;
    }
    let pr = &payload["pull_request"];
    let head = pr["head"]["repo"]["full_name"].as_str();
    let base = pr["base"]["repo"]["full_name"].as_str();
    match (head, base) {
        (Some(head), Some(base)) => !head.eq_ignore_ascii_case(base),
        // A pull request whose head repository was deleted is from a fork that is gone.
        (None, Some(_)) => pr["head"].is_object(),
        _ => pr["head"]["repo"]["fork"].as_bool().unwrap_or(false),
    }
}

/// What a project's secret is bound to when sealed.
pub fn secret_context(project_id: i64, name: &str) -> String {
    format!("secret:{project_id}:{name}")
}
