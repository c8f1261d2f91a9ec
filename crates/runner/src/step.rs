//! Steps: conditions, environment layering, `run` scripts under GitHub's shells,
//! environment files, and the `steps` context of a job or composite action.

use crate::envfile;
use crate::job::{env_object, slug, JobRun, PostKind, PostStep};
use crate::output::StepOutput;
use crate::process::{self, Exit, ProcessSpec};
use crate::uses;
use mobius_core::Conclusion;
use mobius_workflow::evaluate::{evaluate_bool, evaluate_node, evaluate_number, evaluate_string, evaluate_string_map};
use mobius_workflow::expr::{self, Contexts, Status};
use mobius_workflow::{Step, StepAction};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where steps run: the job itself, or inside a composite action.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub steps_ctx: Map<String, Value>,
    pub inputs: Option<Value>,
    /// Env inherited by a composite action's steps from the step that used it.
    pub extra_env: Vec<(String, String)>,
    pub action_path: Option<PathBuf>,
    pub action_repository: String,
    pub failed: bool,
    pub composite: bool,
    pub name_prefix: String,
    /// How many composite actions enclose these steps.
    pub depth: usize,
}

impl Scope {
    pub fn top() -> Self {
        Scope::default()
    }
}

/// The result of executing a step.
#[derive(Debug, Clone)]
pub(crate) struct StepExec {
    pub outcome: Conclusion,
    pub outputs: Map<String, Value>,
}

impl StepExec {
    pub fn failure() -> Self {
        StepExec { outcome: Conclusion::Failure, outputs: Map::new() }
    }
    pub fn success() -> Self {
        StepExec { outcome: Conclusion::Success, outputs: Map::new() }
    }
}

/// What a step needs from its evaluation: name, contexts and env.
pub(crate) struct Prepared {
    pub name: String,
    pub contexts: Contexts,
    /// The step's full env layers merged (workflow, job, files, inherited, step).
    pub env: Vec<(String, String)>,
    /// The step's own `env:` layer, inherited by a composite action's steps.
    pub step_env: Vec<(String, String)>,
    pub number: usize,
    pub log_path: PathBuf,
}

/// Runs steps in order under a scope, recording each in the scope's `steps` context.
/// Boxed because composite actions recurse into it.
pub(crate) fn run_steps<'a>(
    run: &'a mut JobRun,
    steps: &'a [Step],
    scope: &'a mut Scope,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        for step in steps {
            run_one(run, step, scope).await;
        }
    })
}

fn scope_contexts(run: &JobRun, scope: &Scope) -> Contexts {
    let mut ctx = run.contexts.clone();
    ctx.set("steps", Value::Object(scope.steps_ctx.clone()));
    if let Some(inputs) = &scope.inputs {
        ctx.set("inputs", inputs.clone());
    }
    if let Some(path) = &scope.action_path {
        if let Some(Value::Object(github)) = ctx.values.get_mut("github") {
            github.insert("action_path".into(), Value::String(path.display().to_string()));
            github.insert("action_repository".into(), Value::String(scope.action_repository.clone()));
        }
    }
    let cancelled = run.is_cancelled();
    ctx.status = Status { success: !scope.failed && !cancelled, failure: scope.failed, cancelled };
    let job_status = if cancelled {
        "cancelled"
    } else if scope.failed {
        "failure"
    } else {
        "success"
    };
    let mut job = run.contexts.get("job").cloned().unwrap_or_else(|| json!({"container": {}, "services": {}}));
    if let Value::Object(map) = &mut job {
        map.insert("status".into(), Value::String(job_status.into()));
    }
    ctx.set("job", job);
    ctx
}

/// The env layers below the step's own env.
pub(crate) fn base_env(run: &JobRun, scope: &Scope) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if let Some(slot) = env.iter_mut().find(|(name, _)| name == k) {
            slot.1 = v.to_string();
        } else {
            env.push((k.to_string(), v.to_string()));
        }
    };
    for (k, v) in run.workflow_env.iter().chain(run.job_env.iter()) {
        set(k, v);
    }
    for (k, v) in &run.file_env {
        set(k, v);
    }
    for (k, v) in &scope.extra_env {
        set(k, v);
    }
    env
}

pub(crate) fn merge(env: &mut Vec<(String, String)>, layer: &[(String, String)]) {
    for (k, v) in layer {
        if let Some(slot) = env.iter_mut().find(|(name, _)| name == k) {
            slot.1 = v.clone();
        } else {
            env.push((k.clone(), v.clone()));
        }
    }
}

async fn run_one(run: &mut JobRun, step: &Step, scope: &mut Scope) {
    let mut ctx = scope_contexts(run, scope);
    let mut env = base_env(run, scope);
    ctx.set("env", env_object(&[&env]));
    let number = run.next_step_number();
    let mut name = format!(
        "{}{}",
        scope.name_prefix,
        step.name
            .as_ref()
            .and_then(|n| evaluate_string(n, &ctx).ok())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| step.default_name())
    );
    if name.len() > 200 {
        name.truncate((0..=200).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0));
    }
    // A name may interpolate a secret; names reach events and file names.
    let name = run.shared.masker.mask(&name).into_owned();
    let mut problems = Vec::new();
    let mut own_env = Vec::new();
    if let Some(node) = &step.env {
        match evaluate_string_map(node, &ctx) {
            Ok(step_env) => {
                merge(&mut env, &step_env);
                own_env = step_env;
            }
            Err(e) => problems.push(format!("env: {e}")),
        }
    }
    ctx.set("env", env_object(&[&env]));
    let run_it = match run.check_condition(step.condition.as_ref(), &ctx, false) {
        Ok(v) => v,
        Err(e) => {
            problems.push(e);
            true
        }
    };
    let record = |scope: &mut Scope, outcome: Conclusion, conclusion: Conclusion, outputs: Map<String, Value>| {
        if let Some(id) = &step.id {
            scope.steps_ctx.insert(
                id.clone(),
                json!({"outputs": outputs, "outcome": outcome.as_str(), "conclusion": conclusion.as_str()}),
            );
        }
    };
    if !run_it {
        run.step_finished(name, Conclusion::Skipped, Conclusion::Skipped, None);
        record(scope, Conclusion::Skipped, Conclusion::Skipped, Map::new());
        return;
    }
    let started = Instant::now();
    let log_path = run.logs_dir.join(format!("{number:02}-{}.log", slug(&name)));
    run.step_started(&name, &log_path);
    let prepared = Prepared { name: name.clone(), contexts: ctx, env, step_env: own_env, number, log_path };
    let exec = if !problems.is_empty() {
        let mut out = StepOutput::new(run.shared.clone(), &run.display, &name, &prepared.log_path, false);
        for p in &problems {
            out.message(&format!("Error: {p}"));
        }
        out.flush();
        StepExec::failure()
    } else {
        let timeout = match step.timeout_minutes.as_ref().map(|n| evaluate_number(n, &prepared.contexts)) {
            Some(Ok(m)) => Some(Duration::from_secs_f64((m * 60.0).max(0.0))),
            _ => None,
        };
        match &step.action {
            StepAction::Run { script, shell, working_directory } => {
                run_script(run, scope, &prepared, step, script, shell.as_ref(), working_directory.as_ref(), timeout)
                    .await
            }
            StepAction::Uses { uses } => uses::run_uses(run, scope, &prepared, step, uses, timeout).await,
        }
    };
    let continue_on_error =
        step.continue_on_error.as_ref().is_some_and(|n| evaluate_bool(n, &prepared.contexts).unwrap_or(false));
    let conclusion =
        if exec.outcome == Conclusion::Failure && continue_on_error { Conclusion::Success } else { exec.outcome };
    if conclusion == Conclusion::Failure {
        scope.failed = true;
    }
    run.step_finished(name, exec.outcome, conclusion, Some(started));
    record(scope, exec.outcome, conclusion, exec.outputs);
}

/// The files a step communicates through.
pub(crate) struct StepFiles {
    pub env: PathBuf,
    pub output: PathBuf,
    pub path: PathBuf,
    pub state: PathBuf,
    pub summary: PathBuf,
}

impl StepFiles {
    /// `GITHUB_ENV` and its siblings, pointing at these files.
    pub fn variables(&self) -> Vec<(String, String)> {
        [
            ("GITHUB_ENV", &self.env),
            ("GITHUB_OUTPUT", &self.output),
            ("GITHUB_PATH", &self.path),
            ("GITHUB_STATE", &self.state),
            ("GITHUB_STEP_SUMMARY", &self.summary),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.display().to_string()))
        .collect()
    }

    pub fn create(dir: &Path, number: usize, tag: &str) -> std::io::Result<StepFiles> {
        let f = |kind: &str| dir.join(format!("{kind}_{number:03}{tag}"));
        let files = StepFiles {
            env: f("set_env"),
            output: f("set_output"),
            path: f("add_path"),
            state: f("save_state"),
            summary: f("step_summary"),
        };
        for p in [&files.env, &files.output, &files.path, &files.state, &files.summary] {
            std::fs::write(p, b"")?;
        }
        Ok(files)
    }
}

/// The full environment of a step's process: the host's, GitHub's variables, the
/// step's layers, then `PATH` with the `GITHUB_PATH` additions in front.
pub(crate) fn process_env(
    run: &JobRun,
    prepared: &Prepared,
    files: Option<&StepFiles>,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    // In the server's sandbox a job starts from a clean environment, never the
    // server's: PATH, the job's own HOME and LANG. Mobius's own variables never reach a job.
    let mut env: Vec<(String, String)> = match (&run.container, &run.home) {
        // A job container has its image's environment; GitHub's HOME in it is /github/home.
        (Some(_), Some(home)) => vec![("HOME".into(), home.display().to_string())],
        (Some(_), None) => Vec::new(),
        (None, Some(home)) => vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into())),
            ("HOME".into(), home.display().to_string()),
            ("LANG".into(), std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".into())),
        ],
        (None, None) => std::env::vars()
            .filter(|(k, _)| {
                !k.starts_with("GITHUB_")
                    && !k.starts_with("RUNNER_")
                    && !k.starts_with("INPUT_")
                    && !k.starts_with("MOBIUS_")
            })
            .collect(),
    };
    let github = prepared.contexts.get("github").cloned().unwrap_or(Value::Null);
    let runner = prepared.contexts.get("runner").cloned().unwrap_or(Value::Null);
    merge(&mut env, &crate::context::default_env(&github, &runner));
    if let Some(files) = files {
        merge(&mut env, &files.variables());
    }
    merge(&mut env, &prepared.env);
    merge(&mut env, extra);
    if !run.paths.is_empty() {
        let current = match &run.container {
            Some(c) => env.iter().find(|(k, _)| k == "PATH").map_or_else(|| c.path.clone(), |(_, v)| v.clone()),
            None => env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_default(),
        };
        let mut parts = run.paths.clone();
        if !current.is_empty() {
            parts.push(current);
        }
        merge(&mut env, &[("PATH".to_string(), parts.join(":"))]);
    }
    env
}

/// Applies what a finished step wrote to its files and commands to the job.
pub(crate) fn apply_files(
    run: &mut JobRun,
    files: &StepFiles,
    out: &mut StepOutput,
) -> (Map<String, Value>, Vec<(String, String)>, bool) {
    let mut ok = true;
    let mut outputs = Map::new();
    for (k, v) in out.effects.outputs.drain(..) {
        outputs.insert(k, Value::String(v));
    }
    for (k, v) in out.effects.env.drain(..) {
        run.file_env.insert(k, v);
    }
    for p in out.effects.paths.drain(..).rev() {
        run.paths.insert(0, p);
    }
    let mut state: Vec<(String, String)> = out.effects.state.drain(..).collect();
    match envfile::read_key_values(&files.env) {
        Ok(entries) => {
            for (k, v) in entries {
                run.file_env.insert(k, v);
            }
        }
        Err(e) => {
            out.message(&format!("Error: {e}"));
            ok = false;
        }
    }
    match envfile::read_key_values(&files.output) {
        Ok(entries) => {
            for (k, v) in entries {
                outputs.insert(k, Value::String(v));
            }
        }
        Err(e) => {
            out.message(&format!("Error: {e}"));
            ok = false;
        }
    }
    match envfile::read_key_values(&files.state) {
        Ok(entries) => state.extend(entries),
        Err(e) => {
            out.message(&format!("Error: {e}"));
            ok = false;
        }
    }
    for p in envfile::read_paths(&files.path) {
        run.paths.insert(0, p);
    }
    if let Ok(summary) = std::fs::read_to_string(&files.summary) {
        if !summary.trim().is_empty() {
            let path = run.shared.run_dir.join("summary.md");
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                use std::io::Write;
                let _ = writeln!(f, "{}", run.shared.masker.mask(&summary));
            }
        }
    }
    (outputs, state, ok)
}

/// A custom `shell:` whose quotes do not close.
#[derive(Debug, thiserror::Error)]
#[error("the shell '{0}' has a quote that is not closed")]
struct UnclosedQuote(String);

/// GitHub's shell templates; `{0}` is the script file. A custom shell is a command, its
/// options and `{0}` (appended when absent), split as a POSIX shell splits words, so a
/// quoted argument stays one: `script -q -e -c "bash {0}"` passes `bash {0}` whole.
fn shell_command(shell: Option<&str>, has_bash: bool) -> Result<(Vec<String>, &'static str), UnclosedQuote> {
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    Ok(match shell.map(str::trim) {
        None | Some("") => {
            if has_bash {
                (words("bash -e {0}"), ".sh")
            } else {
                (words("sh -e {0}"), ".sh")
            }
        }
        Some("bash") => (words("bash --noprofile --norc -eo pipefail {0}"), ".sh"),
        Some("sh") => (words("sh -e {0}"), ".sh"),
        Some("python") => {
            let python = if crate::run::find_program("python").is_some() { "python" } else { "python3" };
            (vec![python.to_string(), "{0}".into()], ".py")
        }
        Some("pwsh") => (words("pwsh -command . '{0}'"), ".ps1"),
        Some("powershell") => (words("powershell -command . '{0}'"), ".ps1"),
        Some("cmd") => (words("cmd /D /E:ON /V:OFF /S /C CALL \"{0}\""), ".cmd"),
        Some(custom) => {
            let mut parts = shlex::split(custom).ok_or_else(|| UnclosedQuote(custom.to_string()))?;
            if !parts.iter().any(|p| p.contains("{0}")) {
                parts.push("{0}".into());
            }
            (parts, "")
        }
    })
}

#[allow(clippy::too_many_arguments)] // reason: the pieces of one step, kept explicit
async fn run_script(
    run: &mut JobRun,
    scope: &Scope,
    prepared: &Prepared,
    step: &Step,
    script: &mobius_workflow::yaml::Node,
    shell: Option<&mobius_workflow::yaml::Node>,
    working_directory: Option<&mobius_workflow::yaml::Node>,
    timeout: Option<Duration>,
) -> StepExec {
    let allow_unsecure = prepared.env.iter().any(|(k, v)| k == "ACTIONS_ALLOW_UNSECURE_COMMANDS" && v == "true");
    let mut out = StepOutput::new(run.shared.clone(), &run.display, &prepared.name, &prepared.log_path, allow_unsecure);
    let ctx = &prepared.contexts;
    let text = match script.as_str() {
        Some(s) => expr::evaluate_template(s, ctx).map(|v| expr::to_display_string(&v)).map_err(|e| e.message),
        None => Ok(script.scalar_string().unwrap_or_default()),
    };
    let shell = match shell.map(|s| evaluate_string(s, ctx)) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            out.message(&format!("Error: shell: {e}"));
            return StepExec::failure();
        }
        None if scope.composite => None,
        None => run.defaults.shell.clone(),
    };
    let wd = match working_directory.map(|w| evaluate_string(w, ctx)) {
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => {
            out.message(&format!("Error: working-directory: {e}"));
            return StepExec::failure();
        }
        None if scope.composite => None,
        None => run.defaults.working_directory.clone().map(|w| {
            // defaults.run values may hold expressions too.
            expr::evaluate_template(&w, ctx).map(|v| expr::to_display_string(&v)).unwrap_or(w)
        }),
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            out.message(&format!("Error: the script's expression failed: {e}"));
            return StepExec::failure();
        }
    };
    // In a job container an absolute directory is the container's: checked on the host
    // when it is inside a mount, left to the container otherwise.
    let (cwd, on_host) = match wd {
        Some(w) if Path::new(&w).is_absolute() => match run.container.as_ref().map(|c| c.paths.to_host(&w)) {
            Some(Some(host)) => (host, true),
            Some(None) => (PathBuf::from(w), false),
            None => (PathBuf::from(w), true),
        },
        Some(w) => (run.workspace.join(w), true),
        None => (run.workspace.clone(), true),
    };
    if on_host && !cwd.is_dir() {
        out.message(&format!("Error: the working directory '{}' does not exist", cwd.display()));
        return StepExec::failure();
    }
    // In a container GitHub's default is `sh -e {0}`: the image may have no bash.
    let has_bash = run.shared.has_bash && run.container.is_none();
    let (template, extension) = match shell_command(shell.as_deref(), has_bash) {
        Ok(command) => command,
        Err(e) => {
            out.message(&format!("Error: {e}"));
            return StepExec::failure();
        }
    };
    let script_path = run.temp.join(format!("step-{:03}{extension}", prepared.number));
    if let Err(e) = std::fs::write(&script_path, text.as_bytes()) {
        out.message(&format!("Error: cannot write the script: {e}"));
        return StepExec::failure();
    }
    let script_arg = script_path.display().to_string();
    let mut argv: Vec<String> = template.iter().map(|w| w.replace("{0}", &script_arg)).collect();
    let program = argv.remove(0);
    let files = match StepFiles::create(&run.files_dir, prepared.number, "") {
        Ok(f) => f,
        Err(e) => {
            out.message(&format!("Error: cannot create the step's files: {e}"));
            return StepExec::failure();
        }
    };
    let action_id = step.id.clone().unwrap_or_else(|| format!("__run_{}", prepared.number));
    let mut extra = vec![("GITHUB_ACTION".to_string(), action_id)];
    if let Some(path) = &scope.action_path {
        extra.push(("GITHUB_ACTION_PATH".into(), path.display().to_string()));
        extra.push(("GITHUB_ACTION_REPOSITORY".into(), scope.action_repository.clone()));
    }
    let env = process_env(run, prepared, Some(&files), &extra);
    let spec = ProcessSpec { program: program.clone(), args: argv, cwd, env };
    let (exit, mut out) = spawn(run, spec, out, timeout).await;
    let (outputs, _state, files_ok) = apply_files(run, &files, &mut out);
    let outcome = outcome_of(exit, files_ok, &program, &mut out);
    out.flush();
    StepExec { outcome, outputs }
}

/// A job's PATH when the host has none to give.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs a process with the step's output sink; returns the exit and the sink back.
pub(crate) async fn spawn(
    run: &JobRun,
    spec: ProcessSpec,
    out: StepOutput,
    timeout: Option<Duration>,
) -> (std::io::Result<Exit>, StepOutput) {
    let spec = match &run.sandbox {
        Some(sandbox) if run.container.is_none() => sandbox.wrap(spec),
        _ => spec,
    };
    let sink = Arc::new(Mutex::new(out));
    let token = step_token(run);
    let exit = match &run.container {
        Some(container) => container.exec(&spec, sink.clone(), timeout, &token, Duration::from_secs(5)).await,
        None => process::run(&spec, sink.clone(), timeout, &token, Duration::from_secs(5), &run.groups).await,
    };
    // A background process may still hold the pipe; take the effects gathered so far.
    let out = match Arc::try_unwrap(sink) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(shared) => {
            let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
            let effects = std::mem::take(&mut guard.effects);
            StepOutput::detached(run.shared.clone(), &run.display, effects)
        }
    };
    (exit, out)
}

/// What stops a step: the job's cancellation, or, for the `always()` and post steps
/// that run after it, the end of the grace period.
pub(crate) fn step_token(run: &JobRun) -> tokio_util::sync::CancellationToken {
    if !run.cancel.is_cancelled() {
        return run.cancel.clone();
    }
    let token = tokio_util::sync::CancellationToken::new();
    let later = token.clone();
    let grace = run.shared.options.cancel_grace;
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        later.cancel();
    });
    token
}

/// Runs a queued post step.
pub(crate) async fn run_post(run: &mut JobRun, post: &PostStep) -> StepExec {
    let started = Instant::now();
    let number = run.next_step_number();
    let log_path = run.logs_dir.join(format!("{number:02}-{}.log", slug(&post.name)));
    run.step_started(&post.name, &log_path);
    let exec = match &post.kind {
        PostKind::Node { action_dir, script, env, state_key } => {
            let state = run.states.get(state_key).cloned().unwrap_or_default();
            let mut env = env.clone();
            merge(&mut env, &state.iter().map(|(k, v)| (format!("STATE_{k}"), v.clone())).collect::<Vec<_>>());
            uses::run_node_script(run, &post.name, &log_path, number, action_dir, script, env, None).await.0
        }
        PostKind::Docker { docker, state_key } => {
            let state = run.states.get(state_key).cloned().unwrap_or_default();
            let mut docker = docker.clone();
            merge(&mut docker.env, &state.iter().map(|(k, v)| (format!("STATE_{k}"), v.clone())).collect::<Vec<_>>());
            let out = StepOutput::new(run.shared.clone(), &run.display, &post.name, &log_path, false);
            crate::docker_step::run(run, out, number, &docker, None).await.0
        }
        PostKind::CacheSave { key, paths } => {
            let mut out = StepOutput::new(run.shared.clone(), &run.display, &post.name, &log_path, false);
            let exec = crate::builtin::cache::save(run, key, paths, &mut out);
            out.flush();
            exec
        }
    };
    run.step_finished(post.name.clone(), exec.outcome, exec.outcome, Some(started));
    exec
}

/// Evaluates a `with:` mapping against the step's contexts.
pub(crate) fn evaluate_with(step: &Step, ctx: &Contexts) -> Result<Vec<(String, String)>, String> {
    match &step.with {
        None => Ok(Vec::new()),
        Some(node) => match evaluate_node(node, ctx).map_err(|e| format!("with: {e}"))? {
            Value::Object(map) => Ok(map.into_iter().map(|(k, v)| (k, expr::to_display_string(&v))).collect()),
            Value::Null => Ok(Vec::new()),
            _ => Err("with: expected a mapping".into()),
        },
    }
}

/// A step's outcome from how its process ended, with the reason in its log. A
/// cancelled step counts as failed, as on GitHub; malformed environment files fail
/// the step (their error is already in the log).
pub(crate) fn outcome_of(
    exit: std::io::Result<Exit>,
    files_ok: bool,
    program: &str,
    out: &mut StepOutput,
) -> Conclusion {
    let reason = match exit {
        Ok(Exit::Code(0)) if files_ok => return Conclusion::Success,
        Ok(Exit::Code(0)) => return Conclusion::Failure,
        Ok(Exit::Code(code)) => format!("Process completed with exit code {code}."),
        Ok(Exit::Signal(sig)) => format!("Process was killed by signal {sig}."),
        Ok(Exit::TimedOut) => "The step exceeded its timeout and was stopped.".to_string(),
        Ok(Exit::Cancelled) => {
            // As on GitHub, a step stopped by the run's cancellation is cancelled, not failed.
            out.message("Error: The operation was canceled.");
            return Conclusion::Cancelled;
        }
        Err(e) => format!("cannot start '{program}': {e}"),
    };
    out.message(&format!("Error: {reason}"));
    out.error_annotation(&reason);
    Conclusion::Failure
}
