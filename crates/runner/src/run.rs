//! A run: its directory, the job graph of every workflow, `needs` with result
//! propagation, job `if`, matrices with fail-fast and max-parallel, and reusable workflows.

use crate::context;
use crate::job::{self, Leg};
use crate::mask::Masker;
use crate::options::{labels_match, RunOptions};
use crate::plan;
use crate::repo::{copy_source, RepoInfo};
use crate::reporter::Reporter;
use mobius_core::{Conclusion, RunEvent};
use mobius_workflow::evaluate::{evaluate_bool, evaluate_node, evaluate_number};
use mobius_workflow::expr::{self, Contexts, Status};
use mobius_workflow::{matrix, ConditionKind, Job, JobSecrets, Workflow};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// State shared by every job of a run.
pub(crate) struct Shared {
    pub options: RunOptions,
    pub reporter: Arc<dyn Reporter>,
    pub masker: Masker,
    pub run_id: String,
    pub run_number: u64,
    pub run_dir: PathBuf,
    pub snapshot: PathBuf,
    pub repo: RepoInfo,
    pub repository: String,
    pub actor: String,
    pub event_path: PathBuf,
    pub job_slots: Arc<Semaphore>,
    pub concurrency: Arc<crate::concurrency::ConcurrencyGroups>,
    /// File contents of `actions/cache` entries.
    pub cache_blobs: Arc<dyn mobius_blob::BlobStore>,
    pub cancel: CancellationToken,
    pub job_counter: AtomicUsize,
    pub node: Option<PathBuf>,
    /// Whether `bash` is on PATH (looked up once; an unspecified shell falls back to `sh`).
    pub has_bash: bool,
    /// Remote actions fetched for this run: `uses` to the action's folder and commit.
    pub fetched: std::sync::Mutex<HashMap<String, (PathBuf, String)>>,
    /// The Docker Engine, connected when a job first needs it.
    pub docker: tokio::sync::OnceCell<Result<crate::container::Engine, String>>,
}

impl Shared {
    /// The Docker Engine, connected once per run; the error says why it cannot be used.
    pub async fn engine(&self) -> Result<&crate::container::Engine, String> {
        self.docker
            .get_or_init(|| async { crate::container::Engine::connect().await.map_err(|e| e.to_string()) })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Why a run did not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Invalid inputs or unsupported features: nothing ran (exit 2).
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let context = context.into();
    move |source| RunError::Io { context, source }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub conclusion: Conclusion,
    pub run_dir: PathBuf,
    pub jobs: Vec<(String, Conclusion)>,
    /// The run's secrets and `::add-mask::` values: what the caller must mask in
    /// anything it keeps from the run (test reports, summaries).
    pub masker: Masker,
}

/// The result of a job as seen by the jobs that need it.
#[derive(Debug, Clone)]
pub(crate) struct JobOutcome {
    pub result: Conclusion,
    /// `continue-on-error` turns a failure into success for dependents and the run.
    pub effective: Conclusion,
    pub outputs: Map<String, Value>,
}

/// A reusable workflow call: its inputs, secrets and the display prefix of its jobs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Call {
    pub inputs: Map<String, Value>,
    pub secrets: indexmap::IndexMap<String, String>,
    pub prefix: String,
    pub depth: usize,
}

/// Runs the given (already selected and validated) workflows to completion.
/// `repo` is what the plan read of the source directory (`RepoInfo::read`), used again here.
pub async fn execute(
    mut options: RunOptions,
    repo: RepoInfo,
    workflows: Vec<Workflow>,
    reporter: Arc<dyn Reporter>,
    cancel: CancellationToken,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    // Inputs are checked before anything runs: a missing required input is an invalid invocation.
    let mut calls = Vec::new();
    let mut problems = Vec::new();
    for wf in &workflows {
        match root_inputs(wf, &options) {
            Ok(inputs) => {
                calls.push(Call { inputs, secrets: options.secrets.clone(), prefix: String::new(), depth: 0 })
            }
            Err(e) => problems.push(format!("{}: {e}", wf.file.path)),
        }
    }
    if !problems.is_empty() {
        return Err(RunError::Invalid(problems));
    }
    // GitHub puts the dispatch inputs (defaults applied, as strings) into the event payload.
    if options.event_name == "workflow_dispatch" && options.event_payload.get("inputs").is_none() {
        if let (Some(call), Value::Object(payload)) = (calls.first(), &mut options.event_payload) {
            let inputs: Map<String, Value> =
                call.inputs.iter().map(|(k, v)| (k.clone(), Value::String(expr::to_display_string(v)))).collect();
            payload.insert("inputs".into(), Value::Object(inputs));
        }
    }
    // Remote actions are fetched (or found in the cache) now, each ref resolved once:
    // one that cannot be had stops the run before anything runs (exit 2).
    let wanted = plan::remote_actions(&workflows, &options);
    let mut fetched: HashMap<String, (PathBuf, String)> = HashMap::new();
    if !wanted.is_empty() {
        let source = options.actions.clone();
        let fetching = tokio::task::spawn_blocking(move || {
            let mut by_repo: HashMap<String, Result<crate::fetch::Fetched, String>> = HashMap::new();
            let mut out = Vec::new();
            for (uses, action, at) in wanted {
                let result = by_repo
                    .entry(action.repository_at_ref())
                    .or_insert_with(|| {
                        crate::fetch::fetch_on_thread(&source, &action, &uses).map_err(|e| e.to_string())
                    })
                    .clone();
                out.push((uses, action, at, result));
            }
            out
        });
        let results = fetching.await.map_err(|e| io_err("cannot fetch the actions")(std::io::Error::other(e)))?;
        let mut problems = Vec::new();
        for (uses, action, at, result) in results {
            match result {
                Ok(repo) => {
                    let dir = if action.path.is_empty() { repo.dir.clone() } else { repo.dir.join(&action.path) };
                    fetched.insert(uses, (dir, repo.commit));
                }
                Err(e) => problems.push(format!("{at}: {e}")),
            }
        }
        if !problems.is_empty() {
            return Err(RunError::Invalid(problems));
        }
    }
    let dirs: HashMap<String, PathBuf> = fetched.iter().map(|(k, (d, _))| (k.clone(), d.clone())).collect();
    // A JavaScript action that asks for a newer node than the host's stops the run now.
    let node_version = || {
        let node = find_program("node").or_else(|| find_program("nodejs"))?;
        let out = std::process::Command::new(node).arg("--version").output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let node_problems = plan::node_problems(&workflows, &options, &dirs, node_version);
    if !node_problems.is_empty() {
        return Err(RunError::Invalid(node_problems));
    }
    // What needs the Docker Engine is checked now: without one, nothing runs (exit 2).
    let docker = tokio::sync::OnceCell::new();
    let mut reap = None;
    let needs_docker = plan::docker_needs(&workflows, &options, &dirs);
    if !needs_docker.is_empty() {
        match crate::container::Engine::connect().await {
            Ok(engine) => {
                // What a killed Mobius left behind goes while this run starts (it owns
                // none of it); the run waits for it before it ends.
                let reaper = engine.clone();
                reap = Some(tokio::spawn(async move {
                    if let Err(e) = reaper.reap_orphans().await {
                        tracing::warn!(error = %e, "cannot look for containers left behind");
                    }
                }));
                let _ = docker.set(Ok(engine));
            }
            Err(e) => {
                return Err(RunError::Invalid(
                    needs_docker
                        .into_iter()
                        .map(|what| format!("{what}, which needs the Docker Engine: {e}"))
                        .collect(),
                ))
            }
        }
    }
    let runs_root = options.state_dir.join("runs");
    std::fs::create_dir_all(&runs_root).map_err(io_err(format!("cannot create {}", runs_root.display())))?;
    let run_number = options.run_number.unwrap_or_else(|| next_run_number(&options.state_dir));
    let run_id = options.run_id.clone().unwrap_or_else(|| {
        format!(
            "{}{:03}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()),
            std::process::id() % 1000
        )
    });
    let run_dir = runs_root.join(&run_id);
    std::fs::create_dir_all(&run_dir).map_err(io_err(format!("cannot create {}", run_dir.display())))?;
    // Held until this run ends (the kernel drops it if the process dies): retention
    // in another `mobius run` sharing this state directory leaves a locked run alone.
    let _running = hold_run_lock(&run_dir).map_err(io_err(format!("cannot lock {}", run_dir.display())))?;
    let trash = if options.keep_runs == 0 {
        Vec::new()
    } else {
        prune_runs(&runs_root, options.keep_runs, &run_id, options.keep_workspaces)
    };
    let snapshot = run_dir.join("source");
    copy_source(&options.source_dir, &snapshot, options.use_gitignore)
        .map_err(io_err(format!("cannot copy {} into the run directory", options.source_dir.display())))?;
    let repository = options.repository.clone().or_else(|| repo.remote_repository.clone()).unwrap_or_else(|| {
        let name = options.source_dir.file_name().map_or("repository".into(), |n| n.to_string_lossy().to_string());
        format!("local/{name}")
    });
    let actor = options.actor.clone().unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "mobius".into()));
    // Without --eventpath, a push gets the payload GitHub would send for the head commit.
    if options.event_name == "push" && options.event_payload.as_object().is_some_and(|o| o.is_empty()) {
        options.event_payload = push_payload(&options, &repo, &repository, &actor);
    }
    let event_path = run_dir.join("event.json");
    let payload = serde_json::to_vec_pretty(&options.event_payload).unwrap_or_default();
    std::fs::write(&event_path, payload).map_err(io_err("cannot write the event payload"))?;
    // Building the automaton is CPU work proportional to the secrets' size: off the
    // async workers, so a large secret never stalls the server's other requests.
    let secrets: Vec<String> = options.secrets.values().cloned().collect();
    let masker = tokio::task::spawn_blocking(move || {
        let masker = Masker::new();
        for secret in &secrets {
            masker.add(secret);
        }
        masker
    })
    .await
    .map_err(|e| io_err("cannot build the secret masker")(std::io::Error::other(e)))?;
    let reporter: Arc<dyn Reporter> =
        Arc::new(crate::reporter::RecordingReporter::new(reporter, &run_dir.join("events.jsonl")));
    let shared = Arc::new(Shared {
        job_slots: options.job_slots.clone().unwrap_or_else(|| Arc::new(Semaphore::new(options.parallel.max(1)))),
        concurrency: options.concurrency.clone().unwrap_or_default(),
        cache_blobs: match options.cache_blobs.clone() {
            Some(blobs) => blobs,
            None => Arc::new(
                mobius_blob::FsBlobStore::new(options.state_dir.join("cache").join("blobs"))
                    .map_err(io_err("cannot create the cache store"))?,
            ),
        },
        node: find_program("node").or_else(|| find_program("nodejs")),
        has_bash: find_program("bash").is_some(),
        docker,
        fetched: std::sync::Mutex::new(fetched),
        options,
        reporter: reporter.clone(),
        masker,
        run_id: run_id.clone(),
        run_number,
        run_dir: run_dir.clone(),
        snapshot,
        repo,
        repository,
        actor,
        event_path,
        cancel,
        job_counter: AtomicUsize::new(0),
    });
    remove_detached(&trash);
    tracing::info!(run = %shared.run_id, dir = %run_dir.display(), event = %shared.options.event_name, "run started");
    reporter.event(RunEvent::RunStarted {
        run_id,
        event_name: shared.options.event_name.clone(),
        workflows: workflows.iter().map(|w| w.display_name().to_string()).collect(),
        run_dir: run_dir.display().to_string(),
    });
    let mut set = JoinSet::new();
    for (wf, call) in workflows.into_iter().zip(calls) {
        let shared = shared.clone();
        set.spawn(async move { run_workflow(shared, Arc::new(wf), call).await });
    }
    let mut jobs = Vec::new();
    while let Some(result) = set.join_next().await {
        if let Ok(outcomes) = result {
            jobs.extend(outcomes.into_iter().map(|(name, o)| (name, o.effective)));
        }
    }
    let mut conclusion = Conclusion::combine(jobs.iter().map(|(_, c)| *c));
    if conclusion == Conclusion::Skipped {
        conclusion = Conclusion::Success;
    }
    if shared.cancel.is_cancelled() && conclusion == Conclusion::Success {
        conclusion = Conclusion::Cancelled;
    }
    if let Some(reap) = reap {
        let _ = reap.await;
    }
    reporter.event(RunEvent::RunFinished { conclusion, duration_ms: started.elapsed().as_millis() as u64 });
    Ok(RunSummary { conclusion, run_dir, jobs, masker: shared.masker.clone() })
}

/// `inputs` for a workflow run directly: dispatch and call inputs coerced by type.
fn root_inputs(wf: &Workflow, options: &RunOptions) -> Result<Map<String, Value>, String> {
    let mut given: Map<String, Value> =
        options.event_payload.get("inputs").and_then(Value::as_object).cloned().unwrap_or_default();
    for (k, v) in &options.inputs {
        given.insert(k.clone(), Value::String(v.clone()));
    }
    match wf.triggers.get(&options.event_name) {
        Some(trigger) if matches!(options.event_name.as_str(), "workflow_dispatch" | "workflow_call") => {
            plan::coerce_inputs(&trigger.inputs, &given, &options.event_name)
        }
        _ => Ok(given),
    }
}

fn next_run_number(state_dir: &std::path::Path) -> u64 {
    let path = state_dir.join("run-number");
    let n = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0) + 1;
    let _ = std::fs::write(&path, n.to_string());
    n
}

/// The file a run holds locked while it runs.
const RUN_LOCK: &str = "running.lock";

fn hold_run_lock(run_dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::File::create(run_dir.join(RUN_LOCK))?;
    file.lock()?;
    Ok(file)
}

/// Whether a run is in progress: another process holds its lock.
fn is_running(run_dir: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(run_dir.join(RUN_LOCK)) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
}

/// Keeps the newest `keep` runs, and the job workspaces of the newest only (logs and
/// artifacts stay with every kept run); a run still in progress (another `mobius
/// run` on the same state directory) is never touched and does not count. What goes
/// is first moved into `.trash`, which costs one rename, and returned to be deleted
/// off the critical path.
fn prune_runs(root: &std::path::Path, keep: usize, current: &str, keep_workspaces: bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut runs: Vec<(u128, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            (name != current).then(|| name.parse::<u128>().ok().map(|n| (n, e.path()))).flatten()
        })
        .filter(|(_, path)| !is_running(path))
        .collect();
    runs.sort();
    let excess = (runs.len() + 1).saturating_sub(keep);
    let trash = root.join(".trash");
    let discard = |path: &std::path::Path, name: String| {
        let _ = std::fs::create_dir_all(&trash);
        if std::fs::rename(path, trash.join(name)).is_err() {
            let _ = std::fs::remove_dir_all(path);
        }
    };
    for (index, (number, path)) in runs.iter().enumerate() {
        if index < excess {
            discard(path, number.to_string());
        } else if !keep_workspaces && path.join("jobs").is_dir() {
            discard(&path.join("jobs"), format!("{number}-jobs"));
        }
    }
    std::fs::read_dir(&trash).map(|e| e.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default()
}

/// Deletes paths in a detached `rm -rf`, in its own process group, which finishes even
/// after this process exits (as `git gc --auto` detaches): a run of a hundred jobs
/// holds thousands of files, and no run should wait for an older one to be deleted.
fn remove_detached(paths: &[PathBuf]) {
    if paths.is_empty() {
        return;
    }
    let spawned = std::process::Command::new("rm")
        .arg("-rf")
        .arg("--")
        .args(paths)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    if spawned.is_err() {
        for path in paths {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Transitive ancestors of a job.
pub(crate) fn ancestors(wf: &Workflow, id: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<&str> = vec![id];
    while let Some(j) = stack.pop() {
        if let Some(job) = wf.jobs.get(j) {
            for need in &job.needs {
                if out.insert(need.clone()) {
                    stack.push(need);
                }
            }
        }
    }
    out
}

type Outcomes = Vec<(String, JobOutcome)>;

/// Runs one workflow's job graph; returns each job's outcome by id. Boxed because
/// reusable workflows recurse into it from spawned tasks.
pub(crate) fn run_workflow(
    shared: Arc<Shared>,
    wf: Arc<Workflow>,
    call: Call,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcomes> + Send>> {
    Box::pin(run_workflow_graph(shared, wf, call))
}

async fn run_workflow_graph(shared: Arc<Shared>, wf: Arc<Workflow>, call: Call) -> Outcomes {
    let call = Arc::new(call);
    let mut done: HashMap<String, JobOutcome> = HashMap::new();
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    let mut set: JoinSet<(String, JobOutcome)> = JoinSet::new();
    let only = shared.options.job_filter.as_deref().filter(|_| call.depth == 0);
    let wanted = crate::plan::selected_jobs(&wf, only);
    let selected: Vec<String> = wf.jobs.keys().filter(|id| wanted.contains(*id)).cloned().collect();
    loop {
        let mut reused_any = false;
        for id in &selected {
            if started.contains(id) {
                continue;
            }
            let Some(job) = wf.jobs.get(id) else { continue };
            let ready = job.needs.iter().all(|n| done.contains_key(n) || !selected.contains(n));
            if !ready {
                continue;
            }
            started.insert(id.clone());
            if let Some(reused) = shared.options.reuse.get(id).filter(|_| call.depth == 0) {
                shared.reporter.event(RunEvent::JobReused { job: id.clone(), conclusion: reused.conclusion });
                let outcome = JobOutcome {
                    result: reused.conclusion,
                    effective: reused.conclusion,
                    outputs: reused.outputs.clone(),
                };
                order.push(id.clone());
                done.insert(id.clone(), outcome);
                reused_any = true;
                continue;
            }
            let needs: Map<String, Value> = job
                .needs
                .iter()
                .map(|n| {
                    let o = done.get(n);
                    (
                        n.clone(),
                        json!({
                            "result": o.map_or("success", |o| o.result.as_str()),
                            "outputs": o.map(|o| Value::Object(o.outputs.clone())).unwrap_or(json!({})),
                        }),
                    )
                })
                .collect();
            let ancestor_results: Vec<Conclusion> =
                ancestors(&wf, id).iter().filter_map(|a| done.get(a)).map(|o| o.effective).collect();
            let status = Status {
                success: ancestor_results.iter().all(|r| *r == Conclusion::Success),
                failure: ancestor_results.contains(&Conclusion::Failure),
                cancelled: shared.cancel.is_cancelled(),
            };
            let (shared, wf, call, id) = (shared.clone(), wf.clone(), call.clone(), id.clone());
            set.spawn(async move {
                let outcome = run_job(shared, wf, call, &id, needs, status).await;
                (id, outcome)
            });
        }
        match set.join_next().await {
            Some(Ok((id, outcome))) => {
                order.push(id.clone());
                done.insert(id, outcome);
            }
            Some(Err(e)) => {
                shared.reporter.event(RunEvent::Warning { message: format!("a job task failed: {e}") });
            }
            // Reused jobs may have made others ready: look again before stopping.
            None if reused_any => continue,
            None => break,
        }
    }
    order.into_iter().filter_map(|id| done.remove(&id).map(|o| (format!("{}{id}", call.prefix), o))).collect()
}

fn base_contexts(shared: &Shared, wf: &Workflow, call: &Call, job_id: &str, needs: &Map<String, Value>) -> Contexts {
    let mut ctx = Contexts::default();
    ctx.set("github", context::github(shared, wf, job_id, None));
    ctx.set("vars", json!(shared.options.vars));
    ctx.set("secrets", json!(call.secrets));
    ctx.set("inputs", Value::Object(call.inputs.clone()));
    ctx.set("needs", Value::Object(needs.clone()));
    ctx.set("env", json!({}));
    ctx.set("runner", context::runner(shared, None));
    ctx
}

async fn run_job(
    shared: Arc<Shared>,
    wf: Arc<Workflow>,
    call: Arc<Call>,
    id: &str,
    needs: Map<String, Value>,
    status: Status,
) -> JobOutcome {
    let Some(job) = wf.jobs.get(id) else {
        return JobOutcome { result: Conclusion::Skipped, effective: Conclusion::Skipped, outputs: Map::new() };
    };
    let display = format!("{}{}", call.prefix, job.id);
    let mut ctx = base_contexts(&shared, &wf, &call, id, &needs);
    ctx.status = status;
    let skipped = |reason: String| {
        shared.reporter.event(RunEvent::JobSkipped { job: display.clone(), reason, conclusion: Conclusion::Skipped });
        JobOutcome { result: Conclusion::Skipped, effective: Conclusion::Skipped, outputs: Map::new() }
    };
    // Job `if`: GitHub adds `success() &&` unless a status function is used.
    let run = match &job.condition {
        None => status.success && !status.cancelled,
        Some(cond) => {
            let value = match &cond.kind {
                ConditionKind::Expr(e) => expr::evaluate(e, &ctx).map(|v| expr::truthy(&v)),
                ConditionKind::Template(t) => expr::evaluate_template(t, &ctx).map(|v| expr::truthy(&v)),
            };
            match value {
                Ok(v) if cond.uses_status_function() => v,
                Ok(v) => v && status.success && !status.cancelled,
                Err(e) => {
                    shared.reporter.event(RunEvent::Warning {
                        message: format!("{}:{}: job '{id}': error in 'if': {e}", wf.file.path, cond.pos.line),
                    });
                    return JobOutcome {
                        result: Conclusion::Failure,
                        effective: Conclusion::Failure,
                        outputs: Map::new(),
                    };
                }
            }
        }
    };
    if !run {
        let reason =
            if job.condition.is_some() { "its 'if' condition is false" } else { "a job it needs did not succeed" };
        return skipped(reason.to_string());
    }
    if let Some((uses, _)) = &job.uses {
        return run_reusable(shared, &call, job, uses, ctx).await;
    }
    // Matrix legs.
    let legs: Vec<Map<String, Value>> = match job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) {
        None => vec![Map::new()],
        Some(node) => match evaluate_node(node, &ctx).map_err(|e| e.to_string()).and_then(|m| matrix::expand(&m)) {
            Ok(legs) if legs.is_empty() => return skipped("its matrix is empty".into()),
            Ok(legs) => legs,
            Err(e) => {
                shared
                    .reporter
                    .event(RunEvent::Warning { message: format!("{}: job '{id}': invalid matrix: {e}", wf.file.path) });
                return JobOutcome { result: Conclusion::Failure, effective: Conclusion::Failure, outputs: Map::new() };
            }
        },
    };
    let has_matrix = job.strategy.as_ref().is_some_and(|s| s.matrix.is_some());
    let strategy = job.strategy.clone().unwrap_or_default();
    let fail_fast = strategy.fail_fast.as_ref().map_or(Ok(true), |n| evaluate_bool(n, &ctx)).unwrap_or(true);
    let max_parallel = strategy
        .max_parallel
        .as_ref()
        .and_then(|n| evaluate_number(n, &ctx).ok())
        .map_or(legs.len(), |n| (n.max(1.0)) as usize);
    let leg_slots = Arc::new(Semaphore::new(max_parallel));
    let job_cancel = shared.cancel.child_token();
    let total = legs.len();
    let mut set = JoinSet::new();
    for (index, combo) in legs.into_iter().enumerate() {
        let mut leg_ctx = ctx.clone();
        let matrix_value = if has_matrix { Value::Object(combo.clone()) } else { Value::Null };
        leg_ctx.set("matrix", matrix_value);
        leg_ctx.set(
            "strategy",
            json!({"fail-fast": fail_fast, "job-index": index, "job-total": total, "max-parallel": max_parallel}),
        );
        let name = leg_name(job, &leg_ctx, &combo, has_matrix);
        let display = format!("{}{}", call.prefix, name);
        // runs-on is matched per leg, since it may use the matrix.
        let mut platform = None;
        if let Some(runs_on) = &job.runs_on {
            let labels = match evaluate_node(runs_on, &leg_ctx) {
                Ok(v) => runs_on_labels(&v),
                Err(e) => {
                    shared.reporter.event(RunEvent::Warning { message: format!("job '{display}': runs-on: {e}") });
                    Vec::new()
                }
            };
            platform = labels.iter().find_map(|label| {
                shared
                    .options
                    .platforms
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(label))
                    .map(|(_, i)| i.clone())
            });
            if let Err(label) = labels_match(&labels, &shared.options.labels) {
                shared.reporter.event(RunEvent::Warning {
                    message: format!(
                        "job '{display}' skipped: no host label matches runs-on label '{label}' (add --label {label} to run it on this host)"
                    ),
                });
                shared.reporter.event(RunEvent::JobSkipped {
                    job: display,
                    reason: format!("runs-on '{label}'"),
                    conclusion: Conclusion::Skipped,
                });
                set.spawn(async move { (index, Conclusion::Skipped, false, Map::new()) });
                continue;
            }
        }
        // continue-on-error may depend on the matrix (`${{ matrix.experimental }}`), so it is per leg.
        let allowed_to_fail =
            job.continue_on_error.as_ref().is_some_and(|n| evaluate_bool(n, &leg_ctx).unwrap_or(false));
        let leg = Leg {
            display,
            contexts: leg_ctx,
            cancel: job_cancel.child_token(),
            workflow: wf.clone(),
            job_id: id.to_string(),
            platform,
        };
        let shared = shared.clone();
        let job_cancel = job_cancel.clone();
        // Legs take their slot here, in the matrix's order, before their task exists:
        // tasks racing for a slot start in whatever order the scheduler polls them
        // (the newest first, with tokio's LIFO slot).
        let permit = leg_slots.clone().acquire_owned().await;
        set.spawn(async move {
            if job_cancel.is_cancelled() && !shared.cancel.is_cancelled() {
                // Cancelled by fail-fast before it started.
                shared.reporter.event(RunEvent::JobSkipped {
                    job: leg.display.clone(),
                    reason: "fail-fast".into(),
                    conclusion: Conclusion::Cancelled,
                });
                return (index, Conclusion::Cancelled, false, Map::new());
            }
            let (conclusion, outputs) = job::run_leg(shared, leg).await;
            drop(permit);
            // A leg allowed to fail does not cancel its siblings.
            if conclusion == Conclusion::Failure && fail_fast && !allowed_to_fail {
                job_cancel.cancel();
            }
            (index, conclusion, allowed_to_fail, outputs)
        });
    }
    let mut results = Vec::new();
    let mut effective_results = Vec::new();
    let mut outputs = Map::new();
    while let Some(joined) = set.join_next().await {
        if let Ok((_, conclusion, allowed_to_fail, leg_outputs)) = joined {
            results.push(conclusion);
            effective_results.push(if allowed_to_fail && conclusion == Conclusion::Failure {
                Conclusion::Success
            } else {
                conclusion
            });
            outputs.extend(leg_outputs);
        }
    }
    let not_run_cancelled = |c: Conclusion| {
        if c == Conclusion::Cancelled && !shared.cancel.is_cancelled() {
            Conclusion::Failure
        } else {
            c
        }
    };
    let result = not_run_cancelled(Conclusion::combine(results));
    let effective = not_run_cancelled(Conclusion::combine(effective_results));
    JobOutcome { result, effective, outputs }
}

/// The leg's display name: the job's `name` (evaluated), or its id with the matrix values.
fn leg_name(job: &Job, ctx: &Contexts, combo: &Map<String, Value>, has_matrix: bool) -> String {
    let base = job
        .name
        .as_ref()
        .and_then(|n| mobius_workflow::evaluate::evaluate_string(n, ctx).ok())
        .unwrap_or_else(|| job.id.clone());
    let name_uses_matrix = job.name.as_ref().and_then(|n| n.as_str()).is_some_and(|s| s.contains("matrix"));
    if has_matrix && !combo.is_empty() && !name_uses_matrix {
        format!("{base} ({})", matrix::display_values(combo))
    } else {
        base
    }
}

fn runs_on_labels(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(expr::to_display_string).collect(),
        Value::Object(map) => map.get("labels").map(runs_on_labels).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A job that calls a local reusable workflow: its jobs run as `caller / callee`.
async fn run_reusable(shared: Arc<Shared>, call: &Call, job: &Job, uses: &str, ctx: Contexts) -> JobOutcome {
    let failed = |message: String| {
        shared.reporter.event(RunEvent::Warning { message });
        JobOutcome { result: Conclusion::Failure, effective: Conclusion::Failure, outputs: Map::new() }
    };
    if call.depth >= 4 {
        return failed(format!("job '{}': reusable workflows nest more than 4 levels", job.id));
    }
    // A remote one was fetched before the run: its ref is not resolved again.
    let mut cached = shared.options.clone();
    cached.actions.offline = true;
    let (path, rel) = match plan::reusable_path(uses, &shared.snapshot, &cached) {
        Ok(found) => found,
        Err(e) => return failed(format!("job '{}': {e}", job.id)),
    };
    let callee = match mobius_workflow::load_workflow(&path, &rel) {
        Ok(w) => w,
        Err(e) => return failed(format!("job '{}': cannot load the reusable workflow:\n{e}", job.id)),
    };
    let Some(trigger) = callee.triggers.get("workflow_call").cloned() else {
        return failed(format!("job '{}': {rel} has no 'on: workflow_call', so it cannot be called", job.id));
    };
    let with = match job.with.as_ref().map(|w| evaluate_node(w, &ctx)) {
        Some(Ok(Value::Object(m))) => m,
        Some(Err(e)) => return failed(format!("job '{}': with: {e}", job.id)),
        _ => Map::new(),
    };
    let inputs = match plan::coerce_inputs(&trigger.inputs, &with, "workflow_call") {
        Ok(i) => i,
        Err(e) => return failed(format!("job '{}': {e}", job.id)),
    };
    let secrets = match &job.secrets {
        Some(JobSecrets::Inherit) => call.secrets.clone(),
        Some(JobSecrets::Map(node)) => match evaluate_node(node, &ctx) {
            Ok(Value::Object(m)) => m.into_iter().map(|(k, v)| (k, expr::to_display_string(&v))).collect(),
            _ => Default::default(),
        },
        None => Default::default(),
    };
    for (name, required) in &trigger.secrets {
        if *required && !secrets.contains_key(name) {
            return failed(format!("job '{}': the called workflow requires secret '{name}'", job.id));
        }
    }
    let display = job
        .name
        .as_ref()
        .and_then(|n| mobius_workflow::evaluate::evaluate_string(n, &ctx).ok())
        .unwrap_or_else(|| job.id.clone());
    let inner =
        Call { inputs: inputs.clone(), secrets, prefix: format!("{}{display} / ", call.prefix), depth: call.depth + 1 };
    let callee = Arc::new(callee);
    let results = run_workflow(shared.clone(), callee.clone(), inner).await;
    let result = Conclusion::combine(results.iter().map(|(_, o)| o.effective));
    let mut jobs_ctx = Map::new();
    for (name, o) in &results {
        let id = name.rsplit(" / ").next().unwrap_or(name);
        jobs_ctx.insert(id.to_string(), json!({"result": o.result.as_str(), "outputs": o.outputs}));
    }
    let mut out_ctx = ctx.clone();
    out_ctx.set("jobs", Value::Object(jobs_ctx));
    out_ctx.set("inputs", Value::Object(inputs));
    let mut outputs = Map::new();
    for (name, node) in &trigger.outputs {
        if let Ok(v) = evaluate_node(node, &out_ctx) {
            outputs.insert(name.clone(), Value::String(expr::to_display_string(&v)));
        }
    }
    let result = if result == Conclusion::Skipped { Conclusion::Success } else { result };
    JobOutcome { result, effective: result, outputs }
}

/// A push event payload for the repository's head, in GitHub's shape.
fn push_payload(options: &RunOptions, repo: &RepoInfo, repository: &str, actor: &str) -> Value {
    let (owner, name) = repository.split_once('/').unwrap_or(("local", repository));
    let commit = crate::git::head_commit(&options.source_dir);
    // As GitHub sends it: `before` is the ref's previous commit, and forty zeros only
    // when the push created the ref (here: a head without a parent).
    let parent = commit.as_ref().and_then(|c| c.parent.clone());
    let created = commit.is_some() && parent.is_none();
    let before = parent.unwrap_or_else(|| "0".repeat(40));
    let head = commit.map(|c| {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.time.max(0) as u64);
        json!({
            "id": c.id,
            "tree_id": "",
            "message": c.message,
            "timestamp": humantime::format_rfc3339_seconds(when).to_string(),
            "author": {"name": c.author_name, "email": c.author_email},
            "committer": {"name": c.author_name, "email": c.author_email},
        })
    });
    json!({
        "ref": repo.git_ref,
        "before": before,
        "after": repo.sha,
        "created": created,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "head_commit": head,
        "pusher": {"name": actor},
        "sender": {"login": actor},
        "repository": {
            "name": name,
            "full_name": repository,
            "owner": {"login": owner, "name": owner},
            "default_branch": repo.ref_name(),
            "master_branch": repo.ref_name(),
        },
    })
}
