//! `uses:` steps: built-in actions, local and vendored actions, composite actions
//! and JavaScript actions run with the host's node (main, pre-registered post).

use crate::builtin;
use crate::job::{JobRun, PostKind, PostStep};
use crate::output::StepOutput;
use crate::plan::BUILTIN_ACTIONS;
use crate::process::ProcessSpec;
use crate::step::{self, apply_files, evaluate_with, process_env, Prepared, Scope, StepExec, StepFiles};
use mobius_core::Conclusion;
use mobius_workflow::evaluate::evaluate_node;
use mobius_workflow::expr;
use mobius_workflow::{parse_action, ActionRuns, SourceFile, Step};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// GitHub's limit on composite actions inside composite actions.
const MAX_COMPOSITE_DEPTH: usize = 10;

/// Where an action's files are, and the name it is known by: the workspace for
/// `./path`, a vendored copy (`DIR/owner/repo@ref`, the action at `path` inside), or
/// the run's fetched copy; an action first met here (inside a composite action) is
/// fetched now.
async fn resolve(run: &JobRun, uses: &str) -> Result<(PathBuf, String), String> {
    if let Some(rel) = uses.strip_prefix("./") {
        return Ok((run.workspace.join(rel), String::new()));
    }
    if uses.starts_with('/') {
        return Ok((PathBuf::from(uses), String::new()));
    }
    if let Some(problem) = crate::plan::check_uses(uses, &run.shared.options) {
        return Err(problem);
    }
    let Some(action) = crate::fetch::ActionRef::parse(uses) else {
        return Err(format!("'{uses}' is not owner/repo[/path]@ref"));
    };
    let repository = format!("{}/{}", action.owner, action.repo);
    if let Some(dir) = run.shared.options.action_dir.as_ref().map(|d| action.vendored(d)).filter(|d| d.is_dir()) {
        return Ok((dir, repository));
    }
    let known = run.shared.fetched.lock().unwrap_or_else(|p| p.into_inner()).get(uses).cloned();
    if let Some((dir, _)) = known {
        return Ok((dir, repository));
    }
    let (source, owned) = (run.shared.options.actions.clone(), uses.to_string());
    let (fetched, action) = tokio::task::spawn_blocking(move || {
        crate::fetch::fetch_on_thread(&source, &action, &owned).map(|f| (f, action))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let dir = if action.path.is_empty() { fetched.dir.clone() } else { fetched.dir.join(&action.path) };
    run.shared
        .fetched
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(uses.to_string(), (dir.clone(), fetched.commit));
    Ok((dir, repository))
}

fn find_metadata(dir: &Path) -> Option<PathBuf> {
    ["action.yml", "action.yaml"].iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

pub(crate) async fn run_uses(
    run: &mut JobRun,
    scope: &Scope,
    prepared: &Prepared,
    step: &Step,
    uses: &str,
    timeout: Option<Duration>,
) -> StepExec {
    let mut out = StepOutput::new(run.shared.clone(), &run.display, &prepared.name, &prepared.log_path, false);
    let with = match evaluate_with(step, &prepared.contexts) {
        Ok(w) => w,
        Err(e) => {
            out.message(&format!("Error: {e}"));
            out.flush();
            return StepExec::failure();
        }
    };
    if let Some(image) = uses.strip_prefix("docker://") {
        return docker_uri_step(run, prepared, step, image, &with, out, timeout).await;
    }
    let bare = uses.split('@').next().unwrap_or(uses);
    if bare == "mobius/docker-build" {
        let exec = crate::docker_step::docker_build(run, &with, &mut out).await;
        out.flush();
        return exec;
    }
    if BUILTIN_ACTIONS.contains(&bare) {
        let exec = builtin::run(run, bare, &with, prepared, &mut out);
        out.flush();
        return exec;
    }
    let (dir, repository) = match resolve(run, uses).await {
        Ok(r) => r,
        Err(e) => {
            out.message(&format!("Error: {e}"));
            out.flush();
            return StepExec::failure();
        }
    };
    let commit = run.shared.fetched.lock().unwrap_or_else(|p| p.into_inner()).get(uses).map(|(_, c)| c.clone());
    if let Some(commit) = commit {
        out.message(&format!("Using {uses} at commit {commit}"));
    }
    let Some(meta_path) = find_metadata(&dir) else {
        out.message(&format!(
            "Error: can't find 'action.yml' or 'action.yaml' in '{}' for '{uses}'. Did you forget to run actions/checkout, or to create the action in an earlier step?",
            dir.display()
        ));
        out.flush();
        return StepExec::failure();
    };
    let text = match std::fs::read_to_string(&meta_path) {
        Ok(t) => t,
        Err(e) => {
            out.message(&format!("Error: cannot read {}: {e}", meta_path.display()));
            out.flush();
            return StepExec::failure();
        }
    };
    let display_path = meta_path.strip_prefix(&run.workspace).unwrap_or(&meta_path).display().to_string();
    let action = match parse_action(SourceFile::new(display_path, text)) {
        Ok(a) => a,
        Err(errors) => {
            out.message(&format!("Error: invalid action metadata:\n{}", errors.render(false)));
            out.flush();
            return StepExec::failure();
        }
    };
    let inputs = match action_inputs(&action, &with, &prepared.contexts, uses, &mut out) {
        Ok(inputs) => inputs,
        Err(()) => {
            out.flush();
            return StepExec::failure();
        }
    };
    match action.runs {
        ActionRuns::Composite { steps } => {
            if scope.depth >= MAX_COMPOSITE_DEPTH {
                out.message(&format!(
                    "Error: composite actions nest more than {MAX_COMPOSITE_DEPTH} levels at '{uses}'; does an action use itself?"
                ));
                out.flush();
                return StepExec::failure();
            }
            out.flush();
            let mut extra_env = scope.extra_env.clone();
            for (k, v) in &prepared.step_env {
                extra_env.retain(|(name, _)| name != k);
                extra_env.push((k.clone(), v.clone()));
            }
            let mut inner = Scope {
                steps_ctx: Map::new(),
                inputs: Some(Value::Object(inputs.clone())),
                extra_env,
                action_path: Some(dir.clone()),
                action_repository: repository,
                failed: false,
                composite: true,
                name_prefix: format!("{} / ", prepared.name),
                depth: scope.depth + 1,
            };
            step::run_steps(run, &steps, &mut inner).await;
            let mut ctx = prepared.contexts.clone();
            ctx.set("steps", Value::Object(inner.steps_ctx.clone()));
            ctx.set("inputs", Value::Object(inputs));
            let mut outputs = Map::new();
            for (name, value) in &action.outputs {
                let v = match value {
                    Some(node) => evaluate_node(node, &ctx).map(|v| expr::to_display_string(&v)).unwrap_or_default(),
                    None => String::new(),
                };
                outputs.insert(name.clone(), Value::String(v));
            }
            let outcome = if inner.failed { Conclusion::Failure } else { Conclusion::Success };
            StepExec { outcome, outputs }
        }
        ActionRuns::Node { using, main, post, post_if, .. } => {
            if run.shared.node.is_none() {
                out.message(&format!(
                    "Error: '{uses}' is a JavaScript action ('using: {using}') and needs node on PATH; install Node.js (Debian: apt install nodejs)"
                ));
                out.flush();
                return StepExec::failure();
            }
            out.flush();
            let mut extra = input_variables(&inputs);
            extra.push(("GITHUB_ACTION_PATH".into(), dir.display().to_string()));
            extra.push(("GITHUB_ACTION_REPOSITORY".into(), repository));
            extra.push((
                "GITHUB_ACTION".into(),
                step.id.clone().unwrap_or_else(|| format!("__action_{}", prepared.number)),
            ));
            // The environment files are created by run_node_script, fresh for main and for post.
            let env = process_env(run, prepared, None, &extra);
            // State saved by the action's pre step (top-level steps only) reaches main and post.
            let pre_state = if scope.composite {
                Vec::new()
            } else {
                run.states.get(&format!("pre:{}", step.index)).cloned().unwrap_or_default()
            };
            let mut env = env;
            for (k, v) in &pre_state {
                env.push((format!("STATE_{k}"), v.clone()));
            }
            let state_key = format!("{}:{}", prepared.number, dir.display());
            let (exec, state) = run_node_script(
                run,
                &prepared.name,
                &prepared.log_path,
                prepared.number,
                &dir,
                &main,
                env.clone(),
                timeout,
            )
            .await;
            let mut all_state = pre_state;
            all_state.extend(state);
            run.states.insert(state_key.clone(), all_state);
            if let Some(post) = post {
                run.post_steps.push(PostStep {
                    name: format!("Post {}", prepared.name),
                    condition: post_if,
                    kind: PostKind::Node { action_dir: dir, script: post, env, state_key },
                });
            }
            exec
        }
        ActionRuns::Docker { image, args, entrypoint, env, post_entrypoint, post_if, .. } => {
            let image = match crate::docker_step::action_image(run, &dir, &image, &mut out).await {
                Ok(i) => i,
                Err(e) => {
                    out.message(&format!("Error: {e}"));
                    out.flush();
                    return StepExec::failure();
                }
            };
            let mut ctx = prepared.contexts.clone();
            ctx.set("inputs", Value::Object(inputs.clone()));
            let docker = match docker_action_run(&ctx, &with, image, &args, entrypoint, env.as_ref()) {
                Ok(d) => d,
                Err(e) => {
                    out.message(&format!("Error: {e}"));
                    out.flush();
                    return StepExec::failure();
                }
            };
            let mut extra = input_variables(&inputs);
            extra.extend(docker.env.iter().cloned());
            extra.push(("GITHUB_ACTION_PATH".into(), dir.display().to_string()));
            extra.push(("GITHUB_ACTION_REPOSITORY".into(), repository));
            extra.push((
                "GITHUB_ACTION".into(),
                step.id.clone().unwrap_or_else(|| format!("__action_{}", prepared.number)),
            ));
            let docker = crate::docker_step::DockerRun {
                env: crate::docker_step::step_env(run, &prepared.contexts, &prepared.env, &extra),
                ..docker
            };
            let state_key = format!("{}:{}", prepared.number, dir.display());
            let (exec, state) = crate::docker_step::run(run, out, prepared.number, &docker, timeout).await;
            run.states.insert(state_key.clone(), state);
            if let Some(post) = post_entrypoint {
                run.post_steps.push(PostStep {
                    name: format!("Post {}", prepared.name),
                    condition: post_if,
                    kind: PostKind::Docker {
                        docker: crate::docker_step::DockerRun { entrypoint: Some(post), ..docker },
                        state_key,
                    },
                });
            }
            exec
        }
    }
}

/// A Docker action's container: `with.args` (split as a shell would) or `runs.args`
/// evaluated over `inputs`; `with.entrypoint` or `runs.entrypoint`; `runs.env`.
fn docker_action_run(
    ctx: &mobius_workflow::expr::Contexts,
    with: &[(String, String)],
    image: String,
    args: &[mobius_workflow::yaml::Node],
    entrypoint: Option<String>,
    env: Option<&mobius_workflow::yaml::Node>,
) -> Result<crate::docker_step::DockerRun, String> {
    let given = |key: &str| with.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone());
    let args = match given("args") {
        Some(a) => crate::docker_step::split_args(&a)?,
        None => args
            .iter()
            .map(|n| evaluate_node(n, ctx).map(|v| expr::to_display_string(&v)).map_err(|e| format!("runs.args: {e}")))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let env = match env {
        Some(node) => {
            mobius_workflow::evaluate::evaluate_string_map(node, ctx).map_err(|e| format!("runs.env: {e}"))?
        }
        None => Vec::new(),
    };
    Ok(crate::docker_step::DockerRun { image, entrypoint: given("entrypoint").or(entrypoint), args, env })
}

/// `uses: docker://IMAGE`: the image pulled by the run's policy, run with `with.args`
/// and `with.entrypoint`; every `with` key is also an `INPUT_` variable.
async fn docker_uri_step(
    run: &mut JobRun,
    prepared: &Prepared,
    step: &Step,
    image: &str,
    with: &[(String, String)],
    mut out: StepOutput,
    timeout: Option<Duration>,
) -> StepExec {
    let engine = match run.shared.engine().await {
        Ok(e) => e.clone(),
        Err(e) => {
            out.message(&format!("Error: {e}"));
            out.flush();
            return StepExec::failure();
        }
    };
    let mut say = |line: &str| out.message(line);
    if let Err(e) = engine.ensure_image(image, run.shared.options.pull, None, &mut say).await {
        out.message(&format!("Error: {e}"));
        out.flush();
        return StepExec::failure();
    }
    let docker = match docker_action_run(&prepared.contexts, with, image.to_string(), &[], None, None) {
        Ok(d) => d,
        Err(e) => {
            out.message(&format!("Error: {e}"));
            out.flush();
            return StepExec::failure();
        }
    };
    let inputs: Map<String, Value> = with.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let mut extra = input_variables(&inputs);
    extra.push(("GITHUB_ACTION".into(), step.id.clone().unwrap_or_else(|| format!("__run_{}", prepared.number))));
    let docker = crate::docker_step::DockerRun {
        env: crate::docker_step::step_env(run, &prepared.contexts, &prepared.env, &extra),
        ..docker
    };
    crate::docker_step::run(run, out, prepared.number, &docker, timeout).await.0
}

/// Runs `node <dir>/<script>` with fresh environment files; returns the result and saved state.
#[allow(clippy::too_many_arguments)] // reason: main and post steps share this with different sources
pub(crate) async fn run_node_script(
    run: &mut JobRun,
    name: &str,
    log_path: &Path,
    number: usize,
    dir: &Path,
    script: &str,
    mut env: Vec<(String, String)>,
    timeout: Option<Duration>,
) -> (StepExec, Vec<(String, String)>) {
    let out = StepOutput::new(run.shared.clone(), &run.display, name, log_path, false);
    let Some(node) = run.shared.node.clone() else {
        return (StepExec::failure(), Vec::new());
    };
    let files = match StepFiles::create(&run.files_dir, number, "-node") {
        Ok(f) => f,
        Err(_) => return (StepExec::failure(), Vec::new()),
    };
    step::merge(&mut env, &files.variables());
    let spec = ProcessSpec {
        program: node.display().to_string(),
        args: vec![dir.join(script).display().to_string()],
        cwd: run.workspace.clone(),
        env,
    };
    let (exit, mut out) = step::spawn(run, spec, out, timeout).await;
    let (outputs, state, files_ok) = apply_files(run, &files, &mut out);
    let outcome = step::outcome_of(exit, files_ok, "node", &mut out);
    out.flush();
    (StepExec { outcome, outputs }, state)
}

/// The action's inputs: given values, else defaults evaluated in the caller's contexts.
fn action_inputs(
    action: &mobius_workflow::Action,
    with: &[(String, String)],
    contexts: &mobius_workflow::expr::Contexts,
    uses: &str,
    out: &mut StepOutput,
) -> Result<Map<String, Value>, ()> {
    let mut inputs = Map::new();
    for (name, input) in &action.inputs {
        let given = with.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let value = match given {
            Some(v) => v,
            None => match &input.default {
                Some(node) => match evaluate_node(node, contexts) {
                    Ok(v) => expr::to_display_string(&v),
                    Err(e) => {
                        out.message(&format!("Error: default of input '{name}': {e}"));
                        return Err(());
                    }
                },
                None => {
                    if input.required {
                        out.message(&format!("Warning: input required and not supplied: {name}"));
                    }
                    String::new()
                }
            },
        };
        inputs.insert(name.clone(), Value::String(value));
    }
    for (k, v) in with {
        if !inputs.keys().any(|n| n.eq_ignore_ascii_case(k)) {
            // Unknown inputs still reach the action as INPUT_ variables, as on GitHub.
            if !action.inputs.is_empty() && !matches!(action.runs, ActionRuns::Composite { .. }) {
                out.message(&format!("Warning: unexpected input '{k}' for '{uses}'"));
            }
            inputs.insert(k.clone(), Value::String(v.clone()));
        }
    }
    Ok(inputs)
}

/// Pre steps of the job's vendored JavaScript actions, run at job start as GitHub does
/// (local actions are resolved when their step starts, so they have none).
/// Returns false when a pre step failed.
pub(crate) async fn run_pre_steps(run: &mut JobRun, steps: &[Step]) -> bool {
    let mut ok = true;
    for step in steps {
        let mobius_workflow::StepAction::Uses { uses } = &step.action else { continue };
        let bare = uses.split('@').next().unwrap_or(uses);
        if uses.starts_with("./")
            || uses.starts_with('/')
            || uses.starts_with("docker://")
            || BUILTIN_ACTIONS.contains(&bare)
        {
            continue;
        }
        let Ok((dir, repository)) = resolve(run, uses).await else { continue };
        let Some(action) = find_metadata(&dir)
            .and_then(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
            .and_then(|(p, t)| parse_action(SourceFile::new(p.display().to_string(), t)).ok())
        else {
            continue;
        };
        let (pre_if, docker_pre) = match &action.runs {
            ActionRuns::Node { pre: Some(_), pre_if, .. } => (pre_if, None),
            ActionRuns::Docker { pre_entrypoint: Some(pre), pre_if, image, args, env, .. } => {
                (pre_if, Some((pre.clone(), image.clone(), args.clone(), env.clone())))
            }
            _ => continue,
        };
        let mut ctx = run.contexts.clone();
        let env = step::base_env(run, &Scope::top());
        ctx.set("env", crate::job::env_object(&[&env]));
        let shown = step
            .name
            .as_ref()
            .and_then(|n| mobius_workflow::evaluate::evaluate_string(n, &ctx).ok())
            .unwrap_or_else(|| step.default_name());
        let name = format!("Pre {shown}");
        if !matches!(run.check_condition(pre_if.as_ref(), &ctx, true), Ok(true)) {
            continue;
        }
        let number = run.next_step_number();
        let log_path = run.logs_dir.join(format!("{number:02}-pre.log"));
        let started = std::time::Instant::now();
        run.step_started(&name, &log_path);
        let prepared = Prepared { name: name.clone(), contexts: ctx, env, step_env: Vec::new(), number, log_path };
        let mut out = StepOutput::new(run.shared.clone(), &run.display, &name, &prepared.log_path, false);
        let inputs = match evaluate_with(step, &prepared.contexts) {
            Ok(with) => action_inputs(&action, &with, &prepared.contexts, uses, &mut out),
            Err(e) => {
                out.message(&format!("Error: {e}"));
                Err(())
            }
        };
        let exec = match inputs {
            Err(()) => StepExec::failure(),
            Ok(inputs) if docker_pre.is_some() => {
                let Some((pre, image, args, env)) = docker_pre else { continue };
                let with = evaluate_with(step, &prepared.contexts).unwrap_or_default();
                let mut ctx = prepared.contexts.clone();
                ctx.set("inputs", Value::Object(inputs.clone()));
                let ready = match crate::docker_step::action_image(run, &dir, &image, &mut out).await {
                    Ok(image) => docker_action_run(&ctx, &with, image, &args, Some(pre.clone()), env.as_ref()),
                    Err(e) => Err(e),
                };
                match ready {
                    Err(e) => {
                        out.message(&format!("Error: {e}"));
                        out.flush();
                        StepExec::failure()
                    }
                    Ok(docker) => {
                        let mut extra = input_variables(&inputs);
                        extra.extend(docker.env.iter().cloned());
                        extra.push(("GITHUB_ACTION_PATH".into(), dir.display().to_string()));
                        extra.push(("GITHUB_ACTION_REPOSITORY".into(), repository));
                        let docker = crate::docker_step::DockerRun {
                            env: crate::docker_step::step_env(run, &prepared.contexts, &prepared.env, &extra),
                            entrypoint: Some(pre),
                            ..docker
                        };
                        let (exec, state) = crate::docker_step::run(run, out, number, &docker, None).await;
                        run.states.insert(format!("pre:{}", step.index), state);
                        run.step_finished(name, exec.outcome, exec.outcome, Some(started));
                        if exec.outcome == Conclusion::Failure {
                            ok = false;
                        }
                        continue;
                    }
                }
            }
            Ok(inputs) => {
                let ActionRuns::Node { pre: Some(pre), .. } = &action.runs else { continue };
                out.flush();
                let mut extra = input_variables(&inputs);
                extra.push(("GITHUB_ACTION_PATH".into(), dir.display().to_string()));
                extra.push(("GITHUB_ACTION_REPOSITORY".into(), repository));
                let env = process_env(run, &prepared, None, &extra);
                let (exec, state) = run_node_script(run, &name, &prepared.log_path, number, &dir, pre, env, None).await;
                run.states.insert(format!("pre:{}", step.index), state);
                exec
            }
        };
        out.flush();
        if exec.outcome == Conclusion::Failure {
            ok = false;
        }
        run.step_finished(name, exec.outcome, exec.outcome, Some(started));
    }
    ok
}

/// `INPUT_<NAME>` variables of a JavaScript action (spaces become `_`, as on GitHub).
fn input_variables(inputs: &Map<String, Value>) -> Vec<(String, String)> {
    inputs
        .iter()
        .map(|(k, v)| (format!("INPUT_{}", k.replace(' ', "_").to_uppercase()), expr::to_display_string(v)))
        .collect()
}
