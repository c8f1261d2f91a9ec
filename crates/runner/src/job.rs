//! One job leg on the host: its private workspace, the step loop with status
//! functions and `continue-on-error`, timeouts, post steps and job outputs.

use crate::context::{self, JobPaths};
use crate::options::SandboxPolicy;
use crate::process::ProcessGroups;
use crate::repo::copy_workspace;
use crate::run::Shared;
use crate::step::{self, Scope};
use indexmap::IndexMap;
use mobius_core::{Conclusion, RunEvent};
use mobius_workflow::evaluate::{evaluate_node, evaluate_number, evaluate_string_map};
use mobius_workflow::expr::{self, Contexts, Status};
use mobius_workflow::{Condition, ConditionKind, RunDefaults, Workflow};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A matrix leg ready to run.
pub(crate) struct Leg {
    pub display: String,
    pub contexts: Contexts,
    pub cancel: CancellationToken,
    pub workflow: Arc<Workflow>,
    pub job_id: String,
    /// The image of a `-P LABEL=IMAGE` platform its `runs-on` picked: the job runs in it.
    pub platform: Option<String>,
}

/// A step queued to run after the main steps (post steps of actions), newest first when run.
pub(crate) struct PostStep {
    pub name: String,
    pub condition: Option<Condition>,
    pub kind: PostKind,
}

pub(crate) enum PostKind {
    Node {
        action_dir: PathBuf,
        script: String,
        env: Vec<(String, String)>,
        state_key: String,
    },
    /// A Docker action's `post-entrypoint`.
    Docker {
        docker: crate::docker_step::DockerRun,
        state_key: String,
    },
    CacheSave {
        key: String,
        paths: Vec<String>,
    },
}

/// The mutable state of a running job leg.
pub(crate) struct JobRun {
    pub shared: Arc<Shared>,
    pub display: String,
    pub workspace: PathBuf,
    pub temp: PathBuf,
    pub files_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub contexts: Contexts,
    pub workflow_env: Vec<(String, String)>,
    pub job_env: Vec<(String, String)>,
    /// Variables from `GITHUB_ENV` and `::set-env`, which override workflow and job env.
    pub file_env: IndexMap<String, String>,
    /// Directories from `GITHUB_PATH`, newest first.
    pub paths: Vec<String>,
    pub post_steps: Vec<PostStep>,
    /// Saved state of actions for their post steps, by action instance key.
    pub states: IndexMap<String, Vec<(String, String)>>,
    pub groups: ProcessGroups,
    /// The job's sandbox, when the caller requires one; its steps run inside it.
    pub sandbox: Option<crate::sandbox::JobSandbox>,
    /// The job's `HOME` in a sandbox (its own, inside the job's directory).
    pub home: Option<PathBuf>,
    pub step_counter: usize,
    pub cancel: CancellationToken,
    pub defaults: RunDefaults,
    /// The job's own container, where its steps run (`container:` or a `-P` platform).
    pub container: Option<Arc<crate::container::job::JobContainer>>,
    /// The job's network (when it has services): container steps join it.
    pub docker_network: Option<String>,
}

impl JobRun {
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub fn step_started(&self, step: &str, log: &std::path::Path) {
        self.shared.reporter.event(RunEvent::StepStarted {
            job: self.display.clone(),
            step: step.to_string(),
            log: log.display().to_string(),
        });
    }

    /// Reports a finished step; `started` is absent for a skipped one.
    pub fn step_finished(&self, step: String, outcome: Conclusion, conclusion: Conclusion, started: Option<Instant>) {
        let duration_ms = started.map_or(0, |s| s.elapsed().as_millis() as u64);
        self.shared.reporter.event(RunEvent::StepFinished {
            job: self.display.clone(),
            step,
            outcome,
            conclusion,
            duration_ms,
        });
    }

    pub fn next_step_number(&mut self) -> usize {
        self.step_counter += 1;
        self.step_counter
    }

    /// Evaluates a condition under a status; GitHub's implicit `success() &&` applies.
    pub fn check_condition(
        &self,
        condition: Option<&Condition>,
        ctx: &Contexts,
        default_always: bool,
    ) -> Result<bool, String> {
        let status = ctx.status;
        let base = if default_always { true } else { status.success && !status.cancelled };
        let Some(cond) = condition else {
            return Ok(base);
        };
        let value = match &cond.kind {
            ConditionKind::Expr(e) => expr::evaluate(e, ctx).map(|v| expr::truthy(&v)),
            ConditionKind::Template(t) => expr::evaluate_template(t, ctx).map(|v| expr::truthy(&v)),
        }
        .map_err(|e| format!("error in 'if: {}': {e}", cond.source.trim()))?;
        if cond.uses_status_function() {
            Ok(value)
        } else {
            Ok(value && status.success && !status.cancelled)
        }
    }
}

/// A file-name-safe form of a job or step name.
pub(crate) fn slug(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .take(60)
        .collect();
    s.trim_matches('_').to_string()
}

/// Runs a leg; returns its conclusion and outputs.
pub(crate) async fn run_leg(shared: Arc<Shared>, leg: Leg) -> (Conclusion, Map<String, Value>) {
    // A job with a `concurrency` group waits while another member of it runs (without
    // holding a job slot); a newer member may supersede it or, with cancel-in-progress, cancel it.
    let concurrency = leg.workflow.jobs.get(&leg.job_id).and_then(|j| j.concurrency.as_ref());
    let _membership = match concurrency.map(|node| crate::concurrency::evaluate(node, &leg.contexts)) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some((group, cancel_in_progress)))) => {
            match shared.concurrency.enter(&group, cancel_in_progress, leg.cancel.clone()).await {
                Some(guard) => Some(guard),
                None => {
                    let reason = format!("cancelled: a newer job of concurrency group '{group}' replaced it");
                    shared.reporter.event(RunEvent::JobSkipped {
                        job: leg.display.clone(),
                        reason,
                        conclusion: Conclusion::Cancelled,
                    });
                    return (Conclusion::Cancelled, Map::new());
                }
            }
        }
        Some(Err(e)) => {
            shared.reporter.event(RunEvent::Warning {
                message: format!("{}: job '{}': concurrency: {e}", leg.workflow.file.path, leg.display),
            });
            shared.reporter.event(RunEvent::JobSkipped {
                job: leg.display.clone(),
                reason: format!("concurrency: {e}"),
                conclusion: Conclusion::Failure,
            });
            return (Conclusion::Failure, Map::new());
        }
    };
    // A job waits for a slot (shared with other runs on a server) unless its run is cancelled meanwhile.
    let permit = tokio::select! {
        permit = shared.job_slots.acquire() => permit.ok(),
        () = leg.cancel.cancelled() => None,
    };
    if permit.is_none() || leg.cancel.is_cancelled() {
        shared.reporter.event(RunEvent::JobSkipped {
            job: leg.display.clone(),
            reason: "the run was cancelled".into(),
            conclusion: Conclusion::Cancelled,
        });
        return (Conclusion::Cancelled, Map::new());
    }
    let started = Instant::now();
    let number = shared.job_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let dir_name = format!("{number:03}-{}", slug(&leg.display));
    let job_dir = shared.run_dir.join("jobs").join(&dir_name);
    let workspace = job_dir.join("workspace");
    let temp = job_dir.join("temp");
    let files_dir = job_dir.join("files");
    let logs_dir = shared.run_dir.join("logs").join(&dir_name);
    let tool_cache = shared.options.state_dir.join("tool-cache");
    tracing::debug!(job = %leg.display, dir = %job_dir.display(), "starting job");
    shared
        .reporter
        .event(RunEvent::JobStarted { job: leg.display.clone(), workflow: leg.workflow.display_name().to_string() });
    let setup = (|| -> std::io::Result<()> {
        for d in [&temp, &files_dir, &logs_dir, &tool_cache] {
            std::fs::create_dir_all(d)?;
        }
        copy_workspace(&shared.snapshot, &workspace)
    })();
    let finish = |conclusion: Conclusion, outputs: &Map<String, Value>| {
        shared.reporter.event(RunEvent::JobFinished {
            job: leg.display.clone(),
            conclusion,
            duration_ms: started.elapsed().as_millis() as u64,
            outputs: outputs.iter().map(|(k, v)| (k.clone(), expr::to_display_string(v))).collect(),
        });
    };
    if let Err(e) = setup {
        shared
            .reporter
            .event(RunEvent::Warning { message: format!("job '{}': cannot prepare its workspace: {e}", leg.display) });
        finish(Conclusion::Failure, &Map::new());
        return (Conclusion::Failure, Map::new());
    }
    let Some(job) = leg.workflow.jobs.get(&leg.job_id).cloned() else {
        finish(Conclusion::Failure, &Map::new());
        return (Conclusion::Failure, Map::new());
    };
    let paths = JobPaths { workspace: &workspace, temp: &temp, tool_cache: &tool_cache };
    let mut contexts = leg.contexts.clone();
    contexts.set("github", context::github(&shared, &leg.workflow, &leg.job_id, Some(&paths)));
    contexts.set("runner", context::runner(&shared, Some(&paths)));
    contexts.set("job", json!({"status": "success", "container": {}, "services": {}}));
    contexts.set("steps", json!({}));
    contexts.workspace = Some(workspace.clone());

    // Workflow env (command-line --env on top), then job env evaluated against it.
    let mut errors = Vec::new();
    let mut workflow_env: Vec<(String, String)> = Vec::new();
    if let Some(node) = &leg.workflow.env {
        match evaluate_string_map(node, &contexts) {
            Ok(env) => workflow_env = env,
            Err(e) => errors.push(format!("{}: workflow env: {e}", leg.workflow.file.path)),
        }
    }
    for (k, v) in &shared.options.env {
        workflow_env.retain(|(name, _)| name != k);
        workflow_env.push((k.clone(), v.clone()));
    }
    contexts.set("env", env_object(&[&workflow_env]));
    let mut job_env = Vec::new();
    if let Some(node) = &job.env {
        match evaluate_string_map(node, &contexts) {
            Ok(env) => job_env = env,
            Err(e) => errors.push(format!("{}: job '{}' env: {e}", leg.workflow.file.path, job.id)),
        }
    }
    let defaults = RunDefaults {
        shell: job.defaults.shell.clone().or_else(|| leg.workflow.defaults.shell.clone()),
        working_directory: job
            .defaults
            .working_directory
            .clone()
            .or_else(|| leg.workflow.defaults.working_directory.clone()),
    };
    let timeout_minutes = job.timeout_minutes.as_ref().map_or(Ok(360.0), |n| evaluate_number(n, &contexts));
    let timeout_minutes = timeout_minutes.unwrap_or_else(|e| {
        errors.push(format!("job '{}': timeout-minutes: {e}", job.id));
        360.0
    });
    // The job's container and services, evaluated against the job's contexts.
    let evaluate = |node: Option<&mobius_workflow::yaml::Node>, what: &str, errors: &mut Vec<String>| {
        node.and_then(|n| match evaluate_node(n, &contexts) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(format!("job '{}': {what}: {e}", job.id));
                None
            }
        })
    };
    let container_value = evaluate(job.container.as_ref(), "container", &mut errors);
    let services_value = evaluate(job.services.as_ref(), "services", &mut errors);
    let mut wanted = match crate::container::job::Wanted::read(container_value.as_ref(), services_value.as_ref()) {
        Ok(w) => w,
        Err(e) => {
            errors.push(format!("{}: job '{}': {e}", leg.workflow.file.path, job.id));
            crate::container::job::Wanted { container: None, services: Vec::new() }
        }
    };
    if wanted.container.is_none() {
        if let Some(image) = leg.platform.as_ref().or(shared.options.default_image.as_ref()) {
            wanted.container =
                Some(crate::container::spec::ContainerSpec { image: image.clone(), ..Default::default() });
        }
    }
    let in_container = wanted.container.is_some();
    // The server's jobs run sandboxed or not at all; a job in a container has its container.
    let (sandbox, home) = match &shared.options.sandbox {
        _ if in_container => (None, Some(job_dir.join("home"))),
        SandboxPolicy::None => (None, None),
        SandboxPolicy::Unavailable(reason) => {
            errors.push(format!("job '{}' cannot run: {reason}", job.id));
            (None, None)
        }
        SandboxPolicy::Required(sandbox) => {
            let home = job_dir.join("home");
            let tmp = job_dir.join("tmp");
            // The run's source (the workspace's git objects) and vendored actions stay
            // readable, wherever they are.
            let mut read_only = vec![shared.run_dir.join("source")];
            read_only.extend(shared.options.action_dir.iter().filter(|d| d.is_dir()).cloned());
            // Fetched actions too (the server keeps them in DATA/actions).
            let fetched = shared.options.actions.cache.join("trees");
            if fetched.is_dir() {
                read_only.push(fetched);
            }
            let (sandbox, job_dir, dirs) = (sandbox.clone(), job_dir.clone(), [home.clone(), tmp]);
            // Starting it waits for the helper: off the async workers.
            let started = tokio::task::spawn_blocking(move || {
                dirs.iter()
                    .try_for_each(std::fs::create_dir_all)
                    .map_err(|e| crate::sandbox::SandboxError::Start(e.to_string()))?;
                crate::sandbox::JobSandbox::start(&sandbox, &job_dir, &dirs[1], &read_only)
            })
            .await
            .unwrap_or_else(|e| Err(crate::sandbox::SandboxError::Start(e.to_string())));
            match started {
                Ok(s) => (Some(s), Some(home)),
                Err(e) => {
                    errors.push(format!("job '{}' cannot run: {e}", job.id));
                    (None, None)
                }
            }
        }
    };
    let mut run = JobRun {
        shared: shared.clone(),
        display: leg.display.clone(),
        workspace: workspace.clone(),
        temp,
        files_dir,
        logs_dir,
        contexts,
        workflow_env,
        job_env,
        file_env: IndexMap::new(),
        paths: Vec::new(),
        post_steps: Vec::new(),
        states: IndexMap::new(),
        groups: ProcessGroups::default(),
        sandbox,
        home,
        step_counter: 0,
        cancel: leg.cancel.clone(),
        defaults,
        container: None,
        docker_network: None,
    };
    let timed_out = Arc::new(AtomicBool::new(false));
    let timer = {
        let timed_out = timed_out.clone();
        let cancel = leg.cancel.clone();
        let limit = Duration::from_secs_f64((timeout_minutes * 60.0).max(0.0));
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            timed_out.store(true, Ordering::SeqCst);
            cancel.cancel();
        })
    };
    let mut failed = !errors.is_empty();
    for e in &errors {
        shared.reporter.event(RunEvent::Warning { message: e.clone() });
    }
    let mut docker = None;
    if !failed && !wanted.is_empty() {
        match start_containers(&mut run, &job_dir, wanted).await {
            Some(d) => docker = Some(d),
            None => failed = true,
        }
    }
    let mut scope = Scope::top();
    if !failed {
        let steps = job.steps.clone();
        if !crate::uses::run_pre_steps(&mut run, &steps).await {
            scope.failed = true;
        }
        step::run_steps(&mut run, &steps, &mut scope).await;
        failed = scope.failed;
    }
    // Post steps run newest first; they default to always().
    let posts: Vec<PostStep> = run.post_steps.drain(..).rev().collect();
    for post in posts {
        let mut ctx = run.contexts.clone();
        ctx.status = Status { success: !failed && !run.is_cancelled(), failure: failed, cancelled: run.is_cancelled() };
        ctx.set("steps", Value::Object(scope.steps_ctx.clone()));
        match run.check_condition(post.condition.as_ref(), &ctx, true) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                shared.reporter.event(RunEvent::Warning { message: format!("{}: {}: {e}", run.display, post.name) });
                failed = true;
                continue;
            }
        }
        let exec = step::run_post(&mut run, &post).await;
        if exec.outcome == Conclusion::Failure {
            failed = true;
        }
    }
    if let Some(docker) = docker {
        stop_containers(&mut run, docker).await;
    }
    timer.abort();
    run.groups.kill_all();

    let was_timed_out = timed_out.load(Ordering::SeqCst);
    if was_timed_out {
        shared.reporter.event(RunEvent::Warning {
            message: format!(
                "job '{}' exceeded its timeout of {timeout_minutes} minutes and was cancelled",
                run.display
            ),
        });
    }
    // Job outputs, evaluated against the final steps context; values holding secrets are dropped.
    let mut outputs = Map::new();
    let mut ctx = run.contexts.clone();
    ctx.set("steps", Value::Object(scope.steps_ctx.clone()));
    ctx.set("env", env_object(&[&run.workflow_env, &run.job_env]));
    for (name, node) in &job.outputs {
        match evaluate_node(node, &ctx) {
            Ok(v) => {
                let text = expr::to_display_string(&v);
                if shared.masker.contains_secret(&text) {
                    shared.reporter.event(RunEvent::Warning {
                        message: format!("job '{}': output '{name}' holds a secret and was skipped", run.display),
                    });
                    continue;
                }
                outputs.insert(name.clone(), Value::String(text));
            }
            Err(e) => shared
                .reporter
                .event(RunEvent::Warning { message: format!("job '{}': output '{name}': {e}", run.display) }),
        }
    }
    let conclusion = if failed || was_timed_out {
        Conclusion::Failure
    } else if run.is_cancelled() {
        Conclusion::Cancelled
    } else {
        Conclusion::Success
    };
    finish(conclusion, &outputs);
    drop(permit);
    (conclusion, outputs)
}

/// The "Initialize containers" step: pulls, the network, services (waited for until
/// healthy) and the job's container; the contexts then show the container's paths.
async fn start_containers(
    run: &mut JobRun,
    job_dir: &std::path::Path,
    wanted: crate::container::job::Wanted,
) -> Option<crate::container::job::JobDocker> {
    use crate::container::job::{self as cjob, JobDirs};
    let name = "Initialize containers";
    let number = run.next_step_number();
    let log_path = run.logs_dir.join(format!("{number:02}-{}.log", slug(name)));
    let started = Instant::now();
    run.step_started(name, &log_path);
    let shared = run.shared.clone();
    let mut out = crate::output::StepOutput::new(shared.clone(), &run.display, name, &log_path, false);
    let home = job_dir.join("home");
    let tool_cache = shared.options.state_dir.join("tool-cache");
    let dirs = JobDirs {
        workspace: &run.workspace,
        temp: &run.temp,
        files: &run.files_dir,
        home: &home,
        tool_cache: &tool_cache,
        event: &shared.event_path,
        action_dir: shared.options.action_dir.as_deref().filter(|d| d.is_dir()),
        repository: &shared.repository,
        node: shared.node.as_deref(),
    };
    let result = match (std::fs::create_dir_all(&home), shared.engine().await) {
        (Err(e), _) => Err(format!("cannot create the job's home {}: {e}", home.display())),
        (_, Err(e)) => Err(e),
        (Ok(()), Ok(engine)) => {
            let job = job_dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let setup =
                cjob::Setup { engine, pull: shared.options.pull, run_id: &shared.run_id, job: &job, dirs: &dirs };
            cjob::start(&setup, wanted, &mut out, &run.cancel).await.map_err(|e| e.to_string())
        }
    };
    let docker = match result {
        Ok(docker) => docker,
        Err(e) => {
            out.message(&format!("Error: {e}"));
            out.error_annotation(&e);
            out.flush();
            run.step_finished(name.into(), Conclusion::Failure, Conclusion::Failure, Some(started));
            return None;
        }
    };
    out.flush();
    if let Some(c) = &docker.container {
        // Expressions see the paths the steps see.
        for (ctx, keys) in [("github", &["workspace", "event_path"][..]), ("runner", &["temp", "tool_cache"][..])] {
            if let Some(Value::Object(map)) = run.contexts.values.get_mut(ctx) {
                for key in keys {
                    if let Some(Value::String(v)) = map.get_mut(*key) {
                        *v = c.paths.to_container(v);
                    }
                }
            }
        }
    }
    run.contexts
        .set("job", json!({"status": "success", "container": docker.container_ctx, "services": docker.services_ctx}));
    run.container = docker.container.clone();
    run.docker_network = docker.network_name.clone();
    run.step_finished(name.into(), Conclusion::Success, Conclusion::Success, Some(started));
    Some(docker)
}

/// The "Stop containers" step: the services' logs, then every container and the network removed.
async fn stop_containers(run: &mut JobRun, docker: crate::container::job::JobDocker) {
    let name = "Stop containers";
    let number = run.next_step_number();
    let log_path = run.logs_dir.join(format!("{number:02}-{}.log", slug(name)));
    let started = Instant::now();
    run.step_started(name, &log_path);
    let mut out = crate::output::StepOutput::new(run.shared.clone(), &run.display, name, &log_path, false);
    run.container = None;
    run.docker_network = None;
    docker.stop(&mut out).await;
    out.flush();
    run.step_finished(name.into(), Conclusion::Success, Conclusion::Success, Some(started));
}

/// Merges env layers (later wins) into an `env` context object.
pub(crate) fn env_object(layers: &[&[(String, String)]]) -> Value {
    let mut map = Map::new();
    for layer in layers {
        for (k, v) in *layer {
            map.insert(k.clone(), Value::String(v.clone()));
        }
    }
    Value::Object(map)
}
