//! The `github` and `runner` contexts and the matching `GITHUB_*`/`RUNNER_*` variables.

use crate::run::Shared;
use mobius_workflow::Workflow;
use serde_json::{json, Value};
use std::path::Path;

/// Paths of one job leg that the contexts expose.
#[derive(Debug, Clone)]
pub struct JobPaths<'a> {
    pub workspace: &'a Path,
    pub temp: &'a Path,
    pub tool_cache: &'a Path,
}

/// The `github` context. `paths` is absent when evaluating job-level fields.
pub(crate) fn github(shared: &Shared, wf: &Workflow, job_id: &str, paths: Option<&JobPaths>) -> Value {
    let repo = &shared.repo;
    let payload = &shared.options.event_payload;
    let git_ref = payload.get("ref").and_then(Value::as_str).map_or(repo.git_ref.clone(), str::to_string);
    let ref_name = crate::repo::short_ref(&git_ref).to_string();
    let ref_type = if git_ref.starts_with("refs/tags/") { "tag" } else { "branch" };
    let owner = shared.repository.split('/').next().unwrap_or_default().to_string();
    let (base_ref, head_ref) = if shared.options.event_name.starts_with("pull_request") {
        (
            payload.pointer("/pull_request/base/ref").and_then(Value::as_str).unwrap_or_default(),
            payload.pointer("/pull_request/head/ref").and_then(Value::as_str).unwrap_or_default(),
        )
    } else {
        ("", "")
    };
    let workspace = paths.map(|p| p.workspace.display().to_string()).unwrap_or_default();
    json!({
        "action": "",
        "action_path": "",
        "action_ref": "",
        "action_repository": "",
        "action_status": "",
        "actor": shared.actor,
        "actor_id": "0",
        "api_url": "https://api.github.com",
        "base_ref": base_ref,
        "env": "",
        "event": payload,
        "event_name": shared.options.event_name,
        "event_path": shared.event_path.display().to_string(),
        "graphql_url": "https://api.github.com/graphql",
        "head_ref": head_ref,
        "job": job_id,
        "path": "",
        "ref": git_ref,
        "ref_name": ref_name,
        "ref_protected": false,
        "ref_type": ref_type,
        "repository": shared.repository,
        "repository_owner": owner,
        "repositoryUrl": format!("https://github.com/{}.git", shared.repository),
        "retention_days": "90",
        "run_attempt": shared.options.run_attempt.to_string(),
        "run_id": shared.run_id,
        "run_number": shared.run_number.to_string(),
        "secret_source": "Actions",
        "server_url": "https://github.com",
        "sha": repo.sha,
        "token": shared.options.secrets.get("GITHUB_TOKEN").cloned().unwrap_or_default(),
        "triggering_actor": shared.actor,
        "workflow": wf.display_name(),
        "workflow_ref": format!("{}/{}@{}", shared.repository, wf.file.path, git_ref),
        "workflow_sha": repo.sha,
        "workspace": workspace,
    })
}

/// The `runner` context.
pub(crate) fn runner(shared: &Shared, paths: Option<&JobPaths>) -> Value {
    json!({
        "name": format!("mobius-{}", hostname()),
        "os": "Linux",
        "arch": arch(),
        "temp": paths.map(|p| p.temp.display().to_string()).unwrap_or_default(),
        "tool_cache": paths.map(|p| p.tool_cache.display().to_string()).unwrap_or_default(),
        "debug": if shared.options.secrets.get("ACTIONS_STEP_DEBUG").is_some_and(|v| v == "true") { "1" } else { "" },
        "environment": "self-hosted",
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        "x86" => "X86",
        _ => "X64",
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into())
}

/// `GITHUB_*` and `RUNNER_*` variables derived from the contexts.
pub(crate) fn default_env(github: &Value, runner: &Value) -> Vec<(String, String)> {
    let g = |k: &str| github.get(k).map(mobius_workflow::expr::to_display_string).unwrap_or_default();
    let r = |k: &str| runner.get(k).map(mobius_workflow::expr::to_display_string).unwrap_or_default();
    let mut env = vec![
        ("CI".to_string(), "true".to_string()),
        ("GITHUB_ACTIONS".into(), "true".into()),
        ("GITHUB_ACTOR".into(), g("actor")),
        ("GITHUB_ACTOR_ID".into(), g("actor_id")),
        ("GITHUB_API_URL".into(), g("api_url")),
        ("GITHUB_BASE_REF".into(), g("base_ref")),
        ("GITHUB_EVENT_NAME".into(), g("event_name")),
        ("GITHUB_EVENT_PATH".into(), g("event_path")),
        ("GITHUB_GRAPHQL_URL".into(), g("graphql_url")),
        ("GITHUB_HEAD_REF".into(), g("head_ref")),
        ("GITHUB_JOB".into(), g("job")),
        ("GITHUB_REF".into(), g("ref")),
        ("GITHUB_REF_NAME".into(), g("ref_name")),
        ("GITHUB_REF_PROTECTED".into(), g("ref_protected")),
        ("GITHUB_REF_TYPE".into(), g("ref_type")),
        ("GITHUB_REPOSITORY".into(), g("repository")),
        ("GITHUB_REPOSITORY_OWNER".into(), g("repository_owner")),
        ("GITHUB_RETENTION_DAYS".into(), g("retention_days")),
        ("GITHUB_RUN_ATTEMPT".into(), g("run_attempt")),
        ("GITHUB_RUN_ID".into(), g("run_id")),
        ("GITHUB_RUN_NUMBER".into(), g("run_number")),
        ("GITHUB_SERVER_URL".into(), g("server_url")),
        ("GITHUB_SHA".into(), g("sha")),
        ("GITHUB_TRIGGERING_ACTOR".into(), g("triggering_actor")),
        ("GITHUB_WORKFLOW".into(), g("workflow")),
        ("GITHUB_WORKFLOW_REF".into(), g("workflow_ref")),
        ("GITHUB_WORKFLOW_SHA".into(), g("workflow_sha")),
        ("GITHUB_WORKSPACE".into(), g("workspace")),
        ("RUNNER_ARCH".into(), r("arch")),
        ("RUNNER_ENVIRONMENT".into(), r("environment")),
        ("RUNNER_NAME".into(), r("name")),
        ("RUNNER_OS".into(), r("os")),
        ("RUNNER_TEMP".into(), r("temp")),
        ("RUNNER_TOOL_CACHE".into(), r("tool_cache")),
        ("AGENT_TOOLSDIRECTORY".into(), r("tool_cache")),
    ];
    if !r("debug").is_empty() {
        env.push(("RUNNER_DEBUG".into(), "1".into()));
    }
    env
}
