//! Projects, their secrets and variables, and workflow dispatch.

use super::{dto, JsonBody};
use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use mobius_api as api;
use mobius_ci::{self as engine, execute::secret_context, Trigger};
use mobius_core::EventKind;
use mobius_store::NewEvent;
use mobius_store::Project;
use serde_json::{json, Map, Value};
use sha2::Digest as _;
use std::sync::Arc;

/// Project names appear in URLs and paths: letters, digits, `.`, `_`, `-`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    JsonBody(body): JsonBody<api::NewProject>,
) -> ApiResult<impl IntoResponse> {
    caller.require_global(Role::Admin)?;
    if !valid_name(&body.name) {
        return Err(ApiError::unprocessable(format!(
            "name: '{}' is not a valid project name (1-64 letters, digits, '.', '_' or '-')",
            body.name
        )));
    }
    if app.store.project_by_name(&body.name).await?.is_some() {
        return Err(ApiError::conflict(format!("a project named '{}' already exists", body.name)));
    }
    // A URL is mirrored into the data directory (and fetched before each poll); a path is read in place.
    let mirror = app.config.data_dir.join("mirrors").join(format!("{}.git", body.name));
    let (repo, wanted) = (body.repo.clone(), body.branch.clone());
    let (repo_text, dir, branch) = tokio::task::spawn_blocking(move || {
        let adopted = mobius_code::git::adopt(&repo, &mirror).map_err(|e| format!("repo: {e}"))?;
        let head = mobius_runner::repo::RepoInfo::read(&adopted.dir).git_ref;
        let branch = mobius_code::git::default_branch(&adopted.refs, &head, wanted.as_deref())
            .map_err(|e| format!("branch: {e}"))?;
        Ok::<_, String>((adopted.repo, adopted.dir, branch))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::unprocessable)?;
    // Its environments' addresses must not be another project's.
    let file = {
        let (dir, head, name) = (dir.clone(), format!("refs/heads/{branch}"), body.name.clone());
        tokio::task::spawn_blocking(move || mobius_project::read_at(&dir, &head, &name))
            .await
            .map_err(ApiError::internal)?
    };
    if let Ok(Some(file)) = file {
        let mine = mobius_deploy::stage::addresses::claims_of(&body.name, &file.delivery);
        let others = mobius_deploy::stage::addresses::claims_of_others(&app.deployer(), None, true).await;
        if let Some(conflict) = mobius_deploy::stage::addresses::conflict(&mine, &others) {
            if mobius_code::git::is_remote_url(&body.repo) {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(ApiError::denied(StatusCode::CONFLICT, caller.actor(), format!("mobius.yaml: {conflict}")));
        }
    }
    // executor: docker needs an image and an engine that answers.
    let executor_image = match &body.executor {
        None | Some(api::Executor { kind: api::ExecutorKind::Host, image: None }) => None,
        Some(api::Executor { kind: api::ExecutorKind::Host, image: Some(_) }) => {
            return Err(ApiError::unprocessable("executor.image: only an executor of kind docker has an image"));
        }
        Some(api::Executor { kind: api::ExecutorKind::Docker, image }) => {
            let image = image.as_deref().map(str::trim).filter(|i| !i.is_empty()).ok_or_else(|| {
                ApiError::unprocessable("executor.image: an executor of kind docker needs the image its jobs run in")
            })?;
            if let Err(e) = mobius_runner::container::Engine::connect().await {
                return Err(ApiError::unprocessable(format!("executor: {e}")));
            }
            Some(image.to_string())
        }
    };
    let generated = body.webhook_secret.is_none();
    let secret = match body.webhook_secret {
        Some(s) if s.len() < 16 => {
            return Err(ApiError::unprocessable("webhook_secret: use at least 16 characters"));
        }
        Some(s) => s,
        None => hex::encode(mobius_store::crypto::random_bytes::<32>().map_err(ApiError::internal)?),
    };
    let sealed = app.key.seal(&webhook_context(&body.name), secret.as_bytes()).map_err(ApiError::internal)?;
    let poll_ms = app.config.poll_interval.as_millis() as i64;
    // The first poll belongs to this request: it returns the runs it starts.
    let polling = app.ci.poll_lock.lock().await;
    let created = NewEvent::audit(EventKind::ProjectCreate, &caller.actor(), &body.name, &caller.remote)
        .data(json!({"repo": repo_text, "branch": branch, "executor_image": executor_image}));
    let project = app
        .store
        .create_project(&body.name, &repo_text, &branch, &sealed, poll_ms, executor_image.as_deref(), created)
        .await?;
    let runs = engine::poll_project(&app.ci_host(), &project).await.map_err(ApiError::internal)?;
    drop(polling);
    let answer = api::ProjectCreated {
        project: dto::project(&project),
        runs: runs.iter().map(dto::run).collect(),
        // Shown once: the server keeps it sealed and never returns it again.
        webhook_secret: generated.then_some(secret),
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// What a project's webhook secret is bound to when sealed.
pub fn webhook_context(project: &str) -> String {
    format!("webhook:{project}")
}

pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Vec<api::Project>>> {
    let projects = app.store.projects().await?;
    Ok(Json(projects.iter().filter(|p| caller.sees(p.id)).map(dto::project).collect()))
}

/// The project named in the path, if the caller holds `role` on it.
pub async fn find(app: &App, caller: &Caller, name: &str, role: Role) -> ApiResult<Project> {
    let Some(project) = app.store.project_by_name(name).await? else {
        return Err(ApiError::not_found(format!("no project named '{name}'")));
    };
    if !caller.sees(project.id) {
        // Answered as if it did not exist; recorded as the refusal it is.
        return Err(ApiError::denied(StatusCode::NOT_FOUND, caller.actor(), format!("no project named '{name}'")));
    }
    caller.require(role, project.id, &project.name)?;
    Ok(project)
}

pub async fn show(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<api::Project>> {
    let project = find(&app, &caller, &name, Role::Viewer).await?;
    Ok(Json(dto::project(&project)))
}

/// GitHub's rule for secret and variable names.
fn valid_variable_name(name: &str) -> Result<(), ApiError> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
        && !name.to_ascii_uppercase().starts_with("GITHUB_");
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!(
            "name: '{name}' is not valid: letters, digits and '_', not starting with a digit or GITHUB_"
        )))
    }
}

/// The largest secret or variable value, in bytes: GitHub's 48 KB.
pub const MAX_VALUE_BYTES: usize = 48 * 1024;

/// Refuses a secret or variable value over [`MAX_VALUE_BYTES`] with 413, naming the limit.
fn within_value_limit(kind: &str, value: &str) -> ApiResult<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "value: the {kind} is {} bytes, more than the limit of {MAX_VALUE_BYTES} bytes (48 KiB)",
                value.len()
            ),
        ));
    }
    Ok(())
}

pub async fn set_secret(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((name, secret)): Path<(String, String)>,
    JsonBody(body): JsonBody<api::SetValue>,
) -> ApiResult<StatusCode> {
    let project = find(&app, &caller, &name, Role::Maintainer).await?;
    valid_variable_name(&secret)?;
    if body.value.is_empty() {
        return Err(ApiError::unprocessable("value: a secret cannot be empty"));
    }
    within_value_limit("secret", &body.value)?;
    let sealed =
        app.key.seal(&secret_context(project.id, &secret), body.value.as_bytes()).map_err(ApiError::internal)?;
    let event =
        NewEvent::audit(EventKind::SecretSet, &caller.actor(), &format!("{}/{secret}", project.name), &caller.remote)
            .project(&project.name);
    app.store.set_secret(project.id, &secret, &sealed, event).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_secret(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((name, secret)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let project = find(&app, &caller, &name, Role::Maintainer).await?;
    let event = NewEvent::audit(
        EventKind::SecretDelete,
        &caller.actor(),
        &format!("{}/{secret}", project.name),
        &caller.remote,
    )
    .project(&project.name);
    if !app.store.delete_secret(project.id, &secret, event).await? {
        return Err(ApiError::not_found(format!("project '{name}' has no secret '{secret}'")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Names and update times only: secret values never leave the server.
pub async fn list_secrets(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<api::SecretEntry>>> {
    let project = find(&app, &caller, &name, Role::Viewer).await?;
    let secrets = app.store.secrets(project.id).await?;
    Ok(Json(
        secrets
            .iter()
            .map(|(n, _, at)| api::SecretEntry { name: n.clone(), updated_at: api::time(Some(*at)) })
            .collect(),
    ))
}

pub async fn set_variable(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((name, variable)): Path<(String, String)>,
    JsonBody(body): JsonBody<api::SetValue>,
) -> ApiResult<StatusCode> {
    let project = find(&app, &caller, &name, Role::Maintainer).await?;
    valid_variable_name(&variable)?;
    within_value_limit("variable", &body.value)?;
    // The audit log keeps what identifies the change, not the value itself.
    let digest = hex::encode(sha2::Sha256::digest(body.value.as_bytes()));
    let event = NewEvent::audit(
        EventKind::VariableSet,
        &caller.actor(),
        &format!("{}/{variable}", project.name),
        &caller.remote,
    )
    .project(&project.name)
    .data(json!({"bytes": body.value.len(), "sha256": digest}));
    app.store.set_variable(project.id, &variable, &body.value, event).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_variables(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<api::VariableEntry>>> {
    let project = find(&app, &caller, &name, Role::Viewer).await?;
    let vars = app.store.variables(project.id).await?;
    Ok(Json(vars.into_iter().map(|(name, value)| api::VariableEntry { name, value }).collect()))
}

pub async fn dispatch(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((name, workflow)): Path<(String, String)>,
    JsonBody(body): JsonBody<api::Dispatch>,
) -> ApiResult<impl IntoResponse> {
    let runs = dispatch_workflow(&app, &caller, &name, &workflow, body.git_ref, body.inputs).await?;
    Ok((StatusCode::CREATED, Json(api::RunList { runs: runs.iter().map(dto::run).collect() })))
}

/// Dispatches a workflow by file name on a branch or tag (the project's branch by default).
pub async fn dispatch_workflow(
    app: &Arc<App>,
    caller: &Caller,
    name: &str,
    workflow: &str,
    git_ref: Option<String>,
    inputs: Map<String, Value>,
) -> ApiResult<Vec<mobius_store::Run>> {
    let project = find(app, caller, name, Role::Developer).await?;
    let wanted = git_ref.unwrap_or_else(|| project.branch.clone());
    let full = if wanted.starts_with("refs/") { wanted.clone() } else { format!("refs/heads/{wanted}") };
    let repo = engine::sync_repo(&**app, &project).await.map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let refs = tokio::task::spawn_blocking(move || mobius_code::git::refs(&repo))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let tag = format!("refs/tags/{wanted}");
    let Some((ref_name, sha)) = refs.into_iter().find(|(n, _)| *n == full || *n == tag) else {
        return Err(ApiError::unprocessable(format!("ref: no branch or tag '{wanted}' in the repository")));
    };
    let mut trigger = Trigger::new("workflow_dispatch", &ref_name, &sha, &caller.name);
    trigger.workflow = Some(workflow.to_string());
    trigger.inputs = inputs.clone();
    let runs = engine::create_runs(&app.ci_host(), &project, trigger).await?;
    app.store
        .append(
            NewEvent::audit(
                EventKind::WorkflowDispatch,
                &caller.actor(),
                &format!("{}/{workflow}", project.name),
                &caller.remote,
            )
            .project(&project.name)
            .data(json!({"ref": ref_name, "inputs": inputs, "runs": runs.iter().map(|r| r.id).collect::<Vec<_>>()})),
        )
        .await?;
    Ok(runs)
}
