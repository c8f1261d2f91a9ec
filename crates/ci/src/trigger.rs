//! From a trigger (push, pull request, dispatch, schedule, re-run) to queued runs: the
//! workflow files are read from the commit through gix, parsed, filtered by the event,
//! and each matching workflow becomes one run with its concurrency group.

use crate::Host;
use mobius_code::git::{self, CommitInfo};
use mobius_core::Conclusion;
use mobius_runner::plan;
use mobius_runner::repo::{repository_from_url, RepoInfo};
use mobius_runner::RunOptions;
use mobius_store::{NewRun, Project, Run};
use mobius_workflow::expr::Contexts;
use mobius_workflow::{parse_workflow, SourceFile, Workflow};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Something that happened to a project.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub event: String,
    /// `refs/heads/main`, `refs/tags/v1`, `refs/pull/7/merge`.
    pub ref_name: String,
    pub sha: String,
    /// The ref's previous commit, for pushes.
    pub before: Option<String>,
    /// The payload a webhook delivered; synthesised when absent.
    pub payload: Option<Value>,
    pub inputs: Map<String, Value>,
    pub actor: String,
    /// For dispatch: the workflow file name (`ci.yml`) or path.
    pub workflow: Option<String>,
    /// For schedule: the cron expression that fired.
    pub cron: Option<String>,
    /// For a re-run: the run repeated.
    pub rerun_of: Option<Run>,
    /// For a re-run of failed jobs: the jobs carried over (`{id: {conclusion, outputs}}`).
    pub reuse: Map<String, Value>,
}

impl Trigger {
    pub fn new(event: &str, ref_name: &str, sha: &str, actor: &str) -> Self {
        Trigger {
            event: event.into(),
            ref_name: ref_name.into(),
            sha: sha.into(),
            before: None,
            payload: None,
            inputs: Map::new(),
            actor: actor.into(),
            workflow: None,
            cron: None,
            rerun_of: None,
            reuse: Map::new(),
        }
    }
}

/// Why a trigger queued nothing.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] mobius_store::StoreError),
    /// The commit or its workflow files could not be read.
    #[error(transparent)]
    Git(#[from] mobius_code::git::GitError),
    #[error("{0}")]
    Internal(String),
}

/// `owner/name` for `github.repository`: from the repository URL, else `local/<project>`.
pub fn repository_name(project: &Project) -> String {
    repository_from_url(&project.repo).unwrap_or_else(|| format!("local/{}", project.name))
}

/// Queues the runs a trigger starts; returns them (possibly none).
pub async fn create_runs(app: &Arc<dyn Host>, project: &Project, trigger: Trigger) -> Result<Vec<Run>, TriggerError> {
    if trigger.event == "push" && trigger.ref_name == format!("refs/heads/{}", project.branch) {
        // The default branch's head says what the project monitors.
        app.pushed(project, &trigger.sha).await;
    }
    let repo = app.repo_dir(project);
    let (sha, before) = (trigger.sha.clone(), trigger.before.clone());
    let read = tokio::task::spawn_blocking(move || {
        let files = git::workflow_files(&repo, &sha)?;
        let commits = git::commits_between(&repo, before.as_deref(), &sha, 20)?;
        Ok::<_, git::GitError>((files, commits))
    })
    .await
    .map_err(|e| TriggerError::Internal(e.to_string()))?;
    let (files, commits) = read?;
    let head =
        commits.last().cloned().ok_or_else(|| TriggerError::Invalid(format!("commit {} not found", trigger.sha)))?;
    let repository = repository_name(project);
    let payload =
        trigger.payload.clone().unwrap_or_else(|| synthesize_payload(project, &trigger, &commits, &repository));

    let mut names: Vec<String> =
        files.iter().map(|(path, _)| path.rsplit('/').next().unwrap_or(path).to_string()).collect();
    names.sort_unstable();
    let mut parsed = Vec::new();
    let mut broken = Vec::new();
    for (path, text) in files {
        match parse_workflow(SourceFile::new(path.clone(), text)) {
            Ok(workflow) => parsed.push(workflow),
            Err(errors) => broken.push((path, errors.render(false))),
        }
    }

    let mut inputs = Map::new();
    let selected: Vec<Workflow> = if let Some(wanted) = &trigger.workflow {
        let exact = |path: &str| path == wanted || path.rsplit('/').next() == Some(wanted.as_str());
        // `ci` finds ci.yml or ci.yaml.
        let matches =
            |path: &str| exact(path) || [".yml", ".yaml"].iter().any(|ext| path.strip_suffix(ext).is_some_and(exact));
        if let Some((_, rendered)) = broken.iter().find(|(path, _)| matches(path)) {
            return Err(TriggerError::Invalid(format!("the workflow file is invalid:\n{rendered}")));
        }
        let Some(workflow) = parsed.into_iter().find(|w| matches(&w.file.path)) else {
            let there =
                if names.is_empty() { "there are none".to_string() } else { format!("there are {}", names.join(", ")) };
            return Err(TriggerError::NotFound(format!(
                "no workflow file '{wanted}' in .github/workflows at {}: {there}",
                short(&trigger.sha)
            )));
        };
        if trigger.event == "workflow_dispatch" {
            let Some(spec) = workflow.triggers.get("workflow_dispatch") else {
                return Err(TriggerError::Invalid(format!(
                    "workflow '{}' does not have a 'workflow_dispatch' trigger",
                    workflow.file.path
                )));
            };
            inputs = plan::coerce_inputs(&spec.inputs, &trigger.inputs, "input").map_err(TriggerError::Invalid)?;
        }
        vec![workflow]
    } else if trigger.event == "schedule" {
        let cron = trigger.cron.clone().unwrap_or_default();
        parsed.into_iter().filter(|w| w.triggers.get("schedule").is_some_and(|t| t.crons.contains(&cron))).collect()
    } else {
        let mut options = RunOptions::new(app.repo_dir(project), app.state_dir());
        options.event_name = trigger.event.clone();
        options.event_payload = payload.clone();
        let info = RepoInfo { sha: trigger.sha.clone(), git_ref: trigger.ref_name.clone(), remote_repository: None };
        let event = plan::event_ref(&options, &info);
        plan::select(parsed, &trigger.event, &event)
    };

    let mut payload = payload;
    if trigger.event == "workflow_dispatch" {
        if let Value::Object(map) = &mut payload {
            let shown: Map<String, Value> = inputs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(mobius_workflow::expr::to_display_string(v))))
                .collect();
            map.insert("inputs".into(), Value::Object(shown));
        }
    }

    let _guard = app.ci().trigger_lock.lock().await;
    let mut runs = Vec::new();
    let attempt = trigger.rerun_of.as_ref().map_or(1, |r| r.attempt + 1);
    let base = |workflow: &str, name: &str| NewRun {
        project_id: project.id,
        workflow: workflow.to_string(),
        workflow_name: name.to_string(),
        event: trigger.event.clone(),
        ref_name: trigger.ref_name.clone(),
        head_sha: trigger.sha.clone(),
        actor: trigger.actor.clone(),
        author: head.author_name.clone(),
        message: head.message.lines().next().unwrap_or_default().to_string(),
        payload: payload.to_string(),
        inputs: Value::Object(inputs.clone()).to_string(),
        concurrency_group: None,
        cancel_in_progress: false,
        rerun_of: trigger.rerun_of.as_ref().map(|r| r.id),
        attempt,
        reuse: Value::Object(trigger.reuse.clone()).to_string(),
        finished: None,
    };
    // An invalid workflow file fails visibly on the events that would have run it.
    if trigger.workflow.is_none() && matches!(trigger.event.as_str(), "push" | "pull_request") {
        for (path, rendered) in &broken {
            let mut new = base(path, path);
            new.finished = Some((Conclusion::Failure, format!("invalid workflow file:\n{rendered}")));
            runs.push(app.store().create_run(&new).await?);
        }
    }
    for workflow in &selected {
        let mut new = base(&workflow.file.path, workflow.display_name());
        let github = github_context(&trigger, &repository, &payload, &workflow.file.path);
        match concurrency(workflow, &github, &inputs) {
            Ok(Some((group, cancel))) => {
                new.concurrency_group = Some(format!("{}:{group}", project.id));
                new.cancel_in_progress = cancel;
            }
            Ok(None) => {}
            Err(message) => new.finished = Some((Conclusion::Failure, message)),
        }
        runs.push(app.store().create_run(&new).await?);
    }
    drop(_guard);
    for run in &runs {
        tracing::info!(run = run.id, project = %project.name, workflow = %run.workflow, event = %run.event, sha = %short(&run.head_sha), "run queued");
    }
    app.ci().wake_scheduler.notify_one();
    Ok(runs)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// The `github` context as far as it is known before the run: enough for `concurrency`.
fn github_context(trigger: &Trigger, repository: &str, payload: &Value, workflow: &str) -> Value {
    let ref_name = mobius_runner::repo::short_ref(&trigger.ref_name);
    json!({
        "event_name": trigger.event,
        "event": payload,
        "ref": trigger.ref_name,
        "ref_name": ref_name,
        "sha": trigger.sha,
        "repository": repository,
        "actor": trigger.actor,
        "workflow": workflow,
        "head_ref": payload.pointer("/pull_request/head/ref").cloned().unwrap_or(Value::String(String::new())),
        "base_ref": payload.pointer("/pull_request/base/ref").cloned().unwrap_or(Value::String(String::new())),
    })
}

/// The workflow's `concurrency`: its group and whether it cancels the run in progress.
fn concurrency(
    workflow: &Workflow,
    github: &Value,
    inputs: &Map<String, Value>,
) -> Result<Option<(String, bool)>, String> {
    let Some(node) = &workflow.concurrency else { return Ok(None) };
    let mut ctx = Contexts::default();
    ctx.values.insert("github".into(), github.clone());
    ctx.values.insert("inputs".into(), Value::Object(inputs.clone()));
    ctx.values.insert("vars".into(), Value::Object(Map::new()));
    mobius_runner::concurrency::evaluate(node, &ctx).map_err(|e| format!("{}: concurrency: {e}", workflow.file.path))
}

fn commit_json(c: &CommitInfo, repository: &str) -> Value {
    let time = chrono::DateTime::from_timestamp(c.time, 0).map(|t| t.to_rfc3339()).unwrap_or_default();
    json!({
        "id": c.id,
        "tree_id": "",
        "message": c.message,
        "timestamp": time,
        "url": format!("{repository}/commit/{}", c.id),
        "author": {"name": c.author_name, "email": c.author_email},
        "committer": {"name": c.author_name, "email": c.author_email},
        "added": c.added,
        "removed": c.removed,
        "modified": c.modified,
    })
}

/// The payload GitHub would send for the event, when no webhook delivered one.
fn synthesize_payload(project: &Project, trigger: &Trigger, commits: &[CommitInfo], repository: &str) -> Value {
    let (owner, name) = repository.split_once('/').unwrap_or(("local", repository));
    let repo = json!({
        "name": name,
        "full_name": repository,
        "owner": {"login": owner, "name": owner},
        "default_branch": project.branch,
        "clone_url": project.repo,
    });
    let sender = json!({"login": trigger.actor});
    match trigger.event.as_str() {
        "push" => json!({
            "ref": trigger.ref_name,
            "before": trigger.before.clone().unwrap_or_else(|| "0".repeat(40)),
            "after": trigger.sha,
            "created": trigger.before.is_none(),
            "deleted": false,
            "forced": false,
            "commits": commits.iter().map(|c| commit_json(c, repository)).collect::<Vec<_>>(),
            "head_commit": commits.last().map(|c| commit_json(c, repository)),
            "repository": repo,
            "pusher": {"name": trigger.actor},
            "sender": sender,
        }),
        "workflow_dispatch" => json!({
            "ref": trigger.ref_name,
            "inputs": {},
            "workflow": trigger.workflow,
            "repository": repo,
            "sender": sender,
        }),
        "schedule" => json!({"schedule": trigger.cron, "repository": repo}),
        _ => json!({"ref": trigger.ref_name, "repository": repo, "sender": sender}),
    }
}
