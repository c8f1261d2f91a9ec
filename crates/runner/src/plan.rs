//! Before anything runs: finding the workflow files, validating them all, choosing the
//! ones the event triggers, and refusing what the host cannot run (exit 2 territory).

use crate::fetch::ActionRef;
use crate::options::RunOptions;
use crate::repo::RepoInfo;
use mobius_workflow::filter::{accepts, EventRef};
use mobius_workflow::{load_workflow, FileErrors, InputType, StepAction, Workflow};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Actions Mobius runs natively, without their code.
pub const BUILTIN_ACTIONS: &[&str] = &[
    "actions/checkout",
    "actions/upload-artifact",
    "actions/download-artifact",
    "actions/cache",
    "actions/cache/restore",
    "actions/cache/save",
    "mobius/docker-build",
];

/// The workflow files to consider: one file, or the `.yml`/`.yaml` files directly in a folder.
pub fn discover(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every file, returning all workflows or all files' errors.
pub fn load_all(files: &[PathBuf], base: &Path) -> Result<Vec<Workflow>, Vec<FileErrors>> {
    let mut workflows = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let display = file.strip_prefix(base).unwrap_or(file).display().to_string();
        match load_workflow(file, &display) {
            Ok(w) => workflows.push(w),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(workflows)
    } else {
        Err(errors)
    }
}

/// What the event refers to, from the payload or the repository.
pub fn event_ref(options: &RunOptions, repo: &RepoInfo) -> EventRef {
    let payload_ref = options.event_payload.get("ref").and_then(Value::as_str).map(str::to_string);
    let git_ref = payload_ref.unwrap_or_else(|| repo.git_ref.clone());
    let mut event = EventRef {
        event_name: options.event_name.clone(),
        activity: options.event_payload.get("action").and_then(Value::as_str).map(str::to_string),
        ..EventRef::default()
    };
    if options.event_name.starts_with("pull_request") {
        event.branch = options
            .event_payload
            .pointer("/pull_request/base/ref")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| Some(repo.ref_name()));
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        event.tag = Some(tag.to_string());
    } else if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        event.branch = Some(branch.to_string());
    }
    // Changed files from the payload's commits (GitHub's push payload shape).
    if let Some(commits) = options.event_payload.get("commits").and_then(Value::as_array) {
        let mut paths = Vec::new();
        for commit in commits {
            for key in ["added", "removed", "modified"] {
                if let Some(files) = commit.get(key).and_then(Value::as_array) {
                    paths.extend(files.iter().filter_map(Value::as_str).map(str::to_string));
                }
            }
        }
        event.changed_paths = Some(paths);
    } else if options.event_name == "push" {
        // Without a payload, a push is the head commit: its changes against its parent.
        event.changed_paths = crate::git::changed_paths(&options.source_dir);
    }
    event
}

/// The workflows the event triggers, honouring branch, tag and path filters.
pub fn select(workflows: Vec<Workflow>, event_name: &str, event: &EventRef) -> Vec<Workflow> {
    workflows.into_iter().filter(|w| w.triggers.get(event_name).is_some_and(|t| accepts(t, event))).collect()
}

/// The jobs `-j JOB` runs: the job and every job it needs, directly or not, as act
/// does (without them `needs.X.outputs` would be empty). Every job without a filter.
pub fn selected_jobs(wf: &Workflow, only: Option<&str>) -> BTreeSet<String> {
    match only {
        None => wf.jobs.keys().cloned().collect(),
        Some(only) if !wf.jobs.contains_key(only) => BTreeSet::new(),
        Some(only) => {
            let mut jobs = crate::run::ancestors(wf, only);
            jobs.insert(only.to_string());
            jobs
        }
    }
}

/// Problems that stop the run before it starts: Docker actions and remote actions
/// that are neither built in nor vendored.
pub fn preflight(workflows: &[Workflow], options: &RunOptions) -> Vec<String> {
    let mut problems = Vec::new();
    for wf in workflows {
        check_workflow(wf, options, options.job_filter.as_deref(), 0, &mut problems);
    }
    problems
}

/// Where a reusable workflow's file is: `./path` in the repository, or
/// `owner/repo/path@ref` vendored (`DIR/owner/repo@ref/path`) or fetched; with its
/// display path.
pub(crate) fn reusable_path(uses: &str, root: &Path, options: &RunOptions) -> Result<(PathBuf, String), String> {
    if let Some(rel) = uses.strip_prefix("./") {
        let rel = rel.split('@').next().unwrap_or(rel);
        return Ok((root.join(rel), rel.to_string()));
    }
    let action = ActionRef::parse(uses)
        .filter(|a| !a.path.is_empty())
        .ok_or_else(|| format!("'{uses}' is not owner/repo/path@ref or ./path"))?;
    if let Some(p) = options.action_dir.as_ref().map(|d| action.vendored(d)).filter(|p| p.is_file()) {
        return Ok((p, uses.to_string()));
    }
    let fetched = crate::fetch::fetch_on_thread(&options.actions, &action, uses).map_err(|e| e.to_string())?;
    let file = fetched.dir.join(&action.path);
    if !file.is_file() {
        return Err(format!(
            "the reusable workflow '{uses}': {} has no file {} at commit {}",
            action.repository_at_ref(),
            action.path,
            fetched.commit
        ));
    }
    Ok((file, uses.to_string()))
}

fn check_workflow(wf: &Workflow, options: &RunOptions, only: Option<&str>, depth: usize, problems: &mut Vec<String>) {
    let at = |pos: mobius_workflow::yaml::Pos| format!("{}:{}:{}", wf.file.path, pos.line, pos.col);
    let selected = selected_jobs(wf, only);
    for job in wf.jobs.values() {
        if !selected.contains(&job.id) || skipped_by_runs_on(job, options) {
            continue;
        }
        if let Some((uses, pos)) = &job.uses {
            // Called workflows are validated and checked now, so nothing fails halfway.
            match reusable_path(uses, &options.source_dir, options) {
                Err(e) => problems.push(format!("{}: {e}", at(*pos))),
                Ok(_) if depth >= 4 => {
                    problems.push(format!("{}: reusable workflows nest more than 4 levels", at(*pos)))
                }
                Ok((path, display)) => match mobius_workflow::load_workflow(&path, &display) {
                    Err(errors) => problems.push(format!(
                        "{}: the called workflow is invalid:\n{}",
                        at(*pos),
                        errors.render(false)
                    )),
                    Ok(callee) if !callee.triggers.contains_key("workflow_call") => problems
                        .push(format!("{}: {display} has no 'on: workflow_call', so it cannot be called", at(*pos))),
                    Ok(callee) => check_workflow(&callee, options, None, depth + 1, problems),
                },
            }
        }
        for step in &job.steps {
            if let StepAction::Uses { uses } = &step.action {
                if let Some(problem) = check_uses(uses, options) {
                    problems.push(format!("{}: {problem}", at(step.pos)));
                }
            }
        }
    }
}

/// What in the selected jobs needs the Docker Engine (`container:`, `services:`, a
/// `-P LABEL=IMAGE` platform, `docker://` steps), each as `file:line:col: what`.
/// Jobs skipped by their `runs-on` labels need nothing.
pub fn docker_needs(
    workflows: &[Workflow],
    options: &RunOptions,
    fetched: &std::collections::HashMap<String, PathBuf>,
) -> Vec<String> {
    let mut needs = Vec::new();
    for wf in workflows {
        let at = |pos: mobius_workflow::yaml::Pos| format!("{}:{}:{}", wf.file.path, pos.line, pos.col);
        let selected = selected_jobs(wf, options.job_filter.as_deref());
        for job in wf.jobs.values() {
            if !selected.contains(&job.id) || skipped_by_runs_on(job, options) {
                continue;
            }
            if let Some(c) = &job.container {
                needs.push(format!("{}: job '{}' uses 'container:'", at(c.pos), job.id));
            }
            if let Some(s) = &job.services {
                needs.push(format!("{}: job '{}' uses 'services:'", at(s.pos), job.id));
            }
            if let (Some(image), None, None) = (&options.default_image, &job.container, &job.uses) {
                needs.push(format!("job '{}' runs in the project's image {image} (executor: docker)", job.id));
            }
            if let Some(label) = platform_image(job, options) {
                needs.push(format!("job '{}' runs on '{}' (-P {}={})", job.id, label.0, label.0, label.1));
            }
            for step in &job.steps {
                if let StepAction::Uses { uses } = &step.action {
                    let docker_step = uses.starts_with("docker://") || uses.starts_with("mobius/docker-build");
                    if docker_step || is_docker_action(uses, options, fetched) {
                        needs.push(format!("{}: job '{}' uses '{uses}'", at(step.pos), job.id));
                    }
                }
            }
        }
    }
    needs
}

/// The metadata of a vendored or fetched action (`None` for any other `uses`, or
/// when its `action.yml` is missing or invalid; the step then says why).
fn action_metadata(
    uses: &str,
    options: &RunOptions,
    fetched: &std::collections::HashMap<String, PathBuf>,
) -> Option<mobius_workflow::Action> {
    let vendored = options.action_dir.as_ref().zip(ActionRef::parse(uses)).map(|(d, a)| a.vendored(d));
    let dir = vendored.filter(|d| d.is_dir()).or_else(|| fetched.get(uses).cloned())?;
    let meta = ["action.yml", "action.yaml"].iter().map(|n| dir.join(n)).find(|p| p.is_file())?;
    let text = std::fs::read_to_string(&meta).ok()?;
    mobius_workflow::parse_action(mobius_workflow::SourceFile::new(meta.display().to_string(), text)).ok()
}

/// Whether a vendored or fetched action is a Docker container action (`runs.using: docker`).
fn is_docker_action(uses: &str, options: &RunOptions, fetched: &std::collections::HashMap<String, PathBuf>) -> bool {
    action_metadata(uses, options, fetched)
        .is_some_and(|a| matches!(a.runs, mobius_workflow::ActionRuns::Docker { .. }))
}

/// The `-P LABEL=IMAGE` platform a job's literal `runs-on` labels pick, if any.
pub(crate) fn platform_image(job: &mobius_workflow::Job, options: &RunOptions) -> Option<(String, String)> {
    if options.platforms.is_empty() {
        return None;
    }
    let node = job.runs_on.as_ref()?;
    let node = if node.as_map().is_some() { node.get("labels")? } else { node };
    let labels: Vec<String> = match node.as_seq() {
        Some(items) => items.iter().filter_map(|n| n.scalar_string()).collect(),
        None => node.scalar_string().into_iter().collect(),
    };
    labels.iter().find_map(|label| {
        options
            .platforms
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(label))
            .map(|(name, image)| (name.clone(), image.clone()))
    })
}

/// Whether a job names its `runs-on` labels literally and none of this host's match:
/// it is skipped when the run reaches it, so what its steps need is not asked for. A
/// label from an expression (`${{ matrix.os }}`) is only known per leg; such a job is
/// checked.
fn skipped_by_runs_on(job: &mobius_workflow::Job, options: &RunOptions) -> bool {
    let Some(node) = &job.runs_on else { return false };
    // `runs-on: { group, labels }` names its labels under `labels`, as the run reads it.
    let node = if node.as_map().is_some() {
        match node.get("labels") {
            Some(labels) => labels,
            None => return false,
        }
    } else {
        node
    };
    let literal = |n: &mobius_workflow::yaml::Node| n.scalar_string().filter(|s| !s.contains("${{"));
    let labels: Option<Vec<String>> = match node.as_seq() {
        Some(items) => items.iter().map(literal).collect(),
        None => literal(node).map(|label| vec![label]),
    };
    labels.is_some_and(|labels| crate::options::labels_match(&labels, &options.labels).is_err())
}

/// Whether a `uses:` can be had: built in, local, a `docker://` image (the engine is
/// checked by `docker_needs`), vendored, or a remote `owner/repo[/path]@ref`, which
/// `remote_actions` lists for fetching. The message says what is wrong otherwise.
pub fn check_uses(uses: &str, _options: &RunOptions) -> Option<String> {
    if uses.starts_with("./") || uses.starts_with('/') || uses.starts_with("docker://") {
        return None;
    }
    let name = uses.split('@').next().unwrap_or(uses);
    if BUILTIN_ACTIONS.contains(&name) || ActionRef::parse(uses).is_some() {
        return None;
    }
    Some(format!("'{uses}' is not ./path, docker://IMAGE or owner/repo[/path]@ref"))
}

/// A remote action a step names that is neither built in nor vendored: what the run
/// fetches before it starts.
pub fn remote_action(uses: &str, options: &RunOptions) -> Option<ActionRef> {
    if uses.starts_with("./") || uses.starts_with('/') || uses.starts_with("docker://") {
        return None;
    }
    let name = uses.split('@').next().unwrap_or(uses);
    if BUILTIN_ACTIONS.contains(&name) {
        return None;
    }
    let action = ActionRef::parse(uses)?;
    match &options.action_dir {
        Some(dir) if action.vendored(dir).is_dir() => None,
        _ => Some(action),
    }
}

/// Every `uses:` of the selected jobs' steps (jobs skipped by their `runs-on`
/// excepted), once each, with where it is first used (`file:line:col`).
pub fn step_uses(workflows: &[Workflow], options: &RunOptions) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for wf in workflows {
        let selected = selected_jobs(wf, options.job_filter.as_deref());
        for job in wf.jobs.values() {
            if !selected.contains(&job.id) || skipped_by_runs_on(job, options) {
                continue;
            }
            for step in &job.steps {
                if let StepAction::Uses { uses } = &step.action {
                    if !found.iter().any(|(u, _)| u == uses) {
                        found.push((uses.clone(), format!("{}:{}:{}", wf.file.path, step.pos.line, step.pos.col)));
                    }
                }
            }
        }
    }
    found
}

/// Every remote action the selected jobs' steps use, with where each is first used, in order.
pub fn remote_actions(workflows: &[Workflow], options: &RunOptions) -> Vec<(String, ActionRef, String)> {
    step_uses(workflows, options)
        .into_iter()
        .filter_map(|(uses, at)| remote_action(&uses, options).map(|a| (uses, a, at)))
        .collect()
}

/// The actions (vendored or fetched) whose `runs.using: nodeNN` asks for a newer node
/// than the host's, each as `file:line:col: why`. `host` gives the host's `node
/// --version` (`None` without node); it is asked only when a JavaScript action is used.
pub fn node_problems(
    workflows: &[Workflow],
    options: &RunOptions,
    fetched: &std::collections::HashMap<String, PathBuf>,
    host: impl FnOnce() -> Option<String>,
) -> Vec<String> {
    let mut host = Some(host);
    let mut version: Option<Option<String>> = None;
    let mut problems = Vec::new();
    for (uses, at) in step_uses(workflows, options) {
        let Some(action) = action_metadata(&uses, options, fetched) else { continue };
        let mobius_workflow::ActionRuns::Node { using, .. } = &action.runs else { continue };
        let wanted = using.trim_start_matches("node").parse::<u32>().unwrap_or(0);
        let host = version.get_or_insert_with(|| host.take().and_then(|f| f())).as_deref();
        let host_major = host.and_then(|v| v.trim().trim_start_matches('v').split('.').next()?.parse::<u32>().ok());
        match (host, host_major) {
            (None, _) => problems.push(format!(
                "{at}: the action '{uses}' is a JavaScript action ('using: {using}') and this host has no node on PATH; install Node.js {wanted} or newer"
            )),
            (Some(version), Some(major)) if major < wanted => problems.push(format!(
                "{at}: the action '{uses}' asks for {using} and this host's node is {}; install Node.js {wanted} or newer",
                version.trim()
            )),
            _ => {}
        }
    }
    problems
}

/// Coerces raw inputs by the declared types, applying defaults; errors name the input.
pub fn coerce_inputs(
    specs: &indexmap::IndexMap<String, mobius_workflow::InputSpec>,
    given: &Map<String, Value>,
    what: &str,
) -> Result<Map<String, Value>, String> {
    // As GitHub: an input the workflow does not declare is refused, not ignored.
    let unknown: Vec<&str> =
        given.keys().filter(|k| !specs.keys().any(|n| n.eq_ignore_ascii_case(k))).map(String::as_str).collect();
    if !unknown.is_empty() {
        let known = if specs.is_empty() {
            "it declares no inputs".to_string()
        } else {
            format!("it declares {}", specs.keys().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", "))
        };
        let names = unknown.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
        return Err(format!("unexpected {what} input(s) {names}: {known}"));
    }
    let mut out = Map::new();
    for (name, spec) in specs {
        let raw = given.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let raw = match raw {
            Some(v) => Some(v),
            None => spec.default.as_ref().map(|d| d.to_json()),
        };
        let value = match raw {
            None => {
                if spec.required {
                    return Err(format!("{what} input '{name}' is required but was not given"));
                }
                match spec.kind {
                    InputType::Boolean => Value::Bool(false),
                    InputType::Number => Value::Null,
                    _ => Value::String(String::new()),
                }
            }
            Some(v) => coerce(name, &spec.kind, v, what)?,
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

fn coerce(name: &str, kind: &InputType, value: Value, what: &str) -> Result<Value, String> {
    let text = mobius_workflow::expr::to_display_string(&value);
    match kind {
        InputType::Boolean => match value {
            Value::Bool(b) => Ok(Value::Bool(b)),
            _ => match text.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" | "" => Ok(Value::Bool(false)),
                _ => Err(format!("{what} input '{name}' must be true or false, got '{text}'")),
            },
        },
        InputType::Number => {
            let n = mobius_workflow::expr::to_number(&value);
            if n.is_nan() {
                Err(format!("{what} input '{name}' must be a number, got '{text}'"))
            } else {
                Ok(mobius_workflow::expr::number_value(n))
            }
        }
        InputType::Choice(options) => {
            if options.iter().any(|o| o == &text) {
                Ok(Value::String(text))
            } else {
                Err(format!("{what} input '{name}' must be one of {}, got '{text}'", options.join(", ")))
            }
        }
        InputType::String | InputType::Environment => Ok(Value::String(text)),
    }
}
