//! Runs: listing, details with jobs and steps, artifacts, test reports, cancel and re-run.

use super::{dto, JsonBody};
use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mobius_api as api;
use mobius_ci::{self as engine};
use mobius_core::EventKind;
use mobius_core::{Conclusion, Status};
use mobius_store::NewEvent;
use mobius_store::{Run, RunFilter};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Default, Clone, Deserialize)]
pub struct ListQuery {
    pub project: Option<String>,
    /// A status (`queued`, `in_progress`, `completed`) or a conclusion (`success`,
    /// `failure`, `cancelled`, `skipped`), as GitHub's `status` parameter.
    pub status: Option<String>,
    /// A workflow file: its name (`ci.yml`) or path.
    pub workflow: Option<String>,
    pub branch: Option<String>,
    pub event: Option<String>,
    pub actor: Option<String>,
    pub limit: Option<i64>,
    pub before: Option<i64>,
}

impl ListQuery {
    /// The same query with empty fields (an untouched form field) left out.
    pub fn without_empty(self) -> ListQuery {
        let keep = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        ListQuery {
            project: keep(self.project),
            status: keep(self.status),
            workflow: keep(self.workflow),
            branch: keep(self.branch),
            event: keep(self.event),
            actor: keep(self.actor),
            ..self
        }
    }
}

pub async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<api::Run>>> {
    let filter = run_filter(&app, &caller, &q).await?;
    let runs = app.store.runs(&filter).await?;
    let failed = app.store.failed_jobs(&runs.iter().map(|r| r.id).collect::<Vec<_>>()).await?;
    Ok(Json(
        runs.iter()
            .map(|r| {
                let mut run = dto::run(r);
                run.failed_jobs = Some(failed.get(&r.id).cloned().unwrap_or_default());
                run
            })
            .collect(),
    ))
}

/// The store's filter for a runs query, checked: the project the caller may see, a
/// known status or conclusion, a limit between 1 and 100.
pub async fn run_filter(app: &App, caller: &Caller, q: &ListQuery) -> ApiResult<RunFilter> {
    let project_id = match &q.project {
        Some(name) => Some(super::projects::find(app, caller, name, Role::Viewer).await?.id),
        None => caller.project_id,
    };
    let (mut status, mut conclusion) = (None, None);
    if let Some(wanted) = &q.status {
        if let Some(s) = Status::parse(wanted) {
            status = Some(s);
        } else if let Some(c) = Conclusion::parse(wanted) {
            conclusion = Some(c);
        } else {
            return Err(ApiError::bad_request(format!(
                "status: '{wanted}' is not a status (queued, in_progress, completed) or a conclusion \
                 (success, failure, cancelled, skipped)"
            )));
        }
    }
    let limit = q.limit.unwrap_or(30);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit: between 1 and 100"));
    }
    let workflow =
        q.workflow.as_ref().map(|w| if w.contains('/') { w.clone() } else { format!(".github/workflows/{w}") });
    Ok(RunFilter {
        project_id,
        status,
        conclusion,
        workflow,
        ref_name: q.branch.as_ref().map(|b| format!("refs/heads/{b}")),
        event: q.event.clone(),
        actor: q.actor.clone(),
        before: q.before,
        limit,
    })
}

/// The run with this id, if the caller holds `role` on its project.
pub async fn find_run(app: &App, caller: &Caller, id: i64, role: Role) -> ApiResult<Run> {
    let Some(run) = app.store.run(id).await? else { return Err(ApiError::not_found(format!("no run {id}"))) };
    if !caller.sees(run.project_id) {
        // Answered as if it did not exist; recorded as the refusal it is.
        return Err(ApiError::denied(StatusCode::NOT_FOUND, caller.actor(), format!("no run {id}")));
    }
    caller.require(role, run.project_id, &run.project)?;
    Ok(run)
}

async fn jobs_of(app: &App, run_id: i64) -> ApiResult<Vec<api::Job>> {
    let mut jobs = Vec::new();
    for job in app.store.jobs(run_id).await? {
        let steps = app.store.steps(job.id).await?;
        jobs.push(dto::job(&job, &steps));
    }
    Ok(jobs)
}

async fn tests_of(app: &App, run_id: i64) -> ApiResult<api::TestSummary> {
    let reports = app.store.test_reports(run_id).await?;
    let totals = mobius_store::TestTotals::of(&reports);
    Ok(api::TestSummary {
        total: totals.total,
        passed: totals.passed,
        failures: totals.failures,
        errors: totals.errors,
        skipped: totals.skipped,
        reports: reports
            .into_iter()
            .map(|r| api::TestReport {
                id: r.id,
                run_id: r.run_id,
                job: r.job,
                file: r.file,
                tests: r.tests,
                failures: r.failures,
                errors: r.errors,
                skipped: r.skipped,
                // Written by the server's JUnit reader; a case it cannot read is left out.
                cases: serde_json::from_value(r.cases).unwrap_or_default(),
            })
            .collect(),
    })
}

pub async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<api::RunDetail>> {
    let run = find_run(&app, &caller, id, Role::Viewer).await?;
    let checks = app.store.checks(run.id).await?;
    let annotations = app.store.annotations(run.id).await?;
    Ok(Json(api::RunDetail {
        run: dto::run(&run),
        jobs: jobs_of(&app, run.id).await?,
        tests: tests_of(&app, run.id).await?,
        checks: checks
            .into_iter()
            .map(|c| api::Check {
                name: c.name,
                conclusion: c.conclusion,
                summary: c.summary,
                created_at: api::time(Some(c.created_at)),
            })
            .collect(),
        annotations: annotations
            .into_iter()
            .map(|a| api::RunAnnotation {
                job: a.job,
                source: a.source,
                level: a.annotation.level,
                message: a.annotation.message,
                title: a.annotation.title,
                file: a.annotation.file,
                line: a.annotation.line,
                col: a.annotation.col,
            })
            .collect(),
    }))
}

pub async fn jobs(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<Vec<api::Job>>> {
    let run = find_run(&app, &caller, id, Role::Viewer).await?;
    Ok(Json(jobs_of(&app, run.id).await?))
}

pub async fn tests(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<api::TestSummary>> {
    let run = find_run(&app, &caller, id, Role::Viewer).await?;
    Ok(Json(tests_of(&app, run.id).await?))
}

pub async fn artifacts(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<api::Artifact>>> {
    let run = find_run(&app, &caller, id, Role::Viewer).await?;
    let files = app.store.artifacts(run.id).await?;
    let mut out: Vec<api::Artifact> = Vec::new();
    for file in files {
        let entry = api::ArtifactFile { path: file.path, size: file.size };
        match out.last_mut().filter(|a| a.name == file.name) {
            Some(artifact) => {
                artifact.size += file.size;
                artifact.files.push(entry);
            }
            None => out.push(api::Artifact {
                name: file.name,
                size: file.size,
                created_at: api::time(Some(file.created_at)),
                files: vec![entry],
            }),
        }
    }
    Ok(Json(out))
}

/// Artifact names and paths never climb out of their folder.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.split('/').any(|c| c.is_empty() || c == "." || c == "..")
}

pub async fn artifact_file(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, name, path)): Path<(i64, String, String)>,
) -> ApiResult<Response> {
    let run = find_run(&app, &caller, id, Role::Viewer).await?;
    if !safe_relative(&name) || !safe_relative(&path) {
        return Err(ApiError::bad_request(format!(
            "invalid artifact path '{name}/{path}': no '..', '.', empty or absolute parts"
        )));
    }
    let files = app.store.artifacts(run.id).await?;
    let Some(file) = files.into_iter().find(|f| f.name == name && f.path == path) else {
        return Err(ApiError::not_found(format!("run {id} has no artifact file '{name}/{path}'")));
    };
    let handle = app.blobs.open(&file.blob).map_err(|_| ApiError::new(StatusCode::GONE, "the artifact has expired"))?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(handle));
    let filename = path.rsplit('/').next().unwrap_or("artifact").replace('"', "");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, file.size.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

pub async fn cancel(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<impl IntoResponse> {
    let run = find_run(&app, &caller, id, Role::Developer).await?;
    if run.status == Status::Completed {
        return Err(ApiError::conflict(format!("run {id} has already completed")));
    }
    engine::cancel_run(&app.ci_host(), &run, &format!("cancelled by {}", caller.name)).await?;
    let event = NewEvent::audit(EventKind::RunCancel, &caller.actor(), &format!("run/{id}"), &caller.remote)
        .project(&run.project)
        .run(id);
    app.store.append(event).await?;
    let run = app.store.run(id).await?.unwrap_or(run);
    Ok((StatusCode::ACCEPTED, Json(dto::run(&run))))
}

pub async fn rerun(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<api::Rerun>,
) -> ApiResult<impl IntoResponse> {
    let runs = rerun_run(&app, &caller, id, body.failed_only).await?;
    Ok((StatusCode::CREATED, Json(api::RunList { runs: runs.iter().map(dto::run).collect() })))
}

/// Queues the next attempt of a completed run (`mobius_ci::rerun`), audited.
pub async fn rerun_run(app: &Arc<App>, caller: &Caller, id: i64, failed_only: bool) -> ApiResult<Vec<Run>> {
    use mobius_ci::rerun::RerunError;
    let run = find_run(app, caller, id, Role::Developer).await?;
    let runs = match mobius_ci::rerun::rerun(&app.ci_host(), &run, &caller.name, failed_only).await {
        Ok(runs) => runs,
        Err(e @ RerunError::NotCompleted { .. }) => return Err(ApiError::conflict(e.to_string())),
        Err(e @ RerunError::NothingFailed(_)) => return Err(ApiError::unprocessable(e.to_string())),
        Err(e @ RerunError::ProjectGone) => return Err(ApiError::not_found(e.to_string())),
        Err(RerunError::Trigger(e)) => return Err(e.into()),
        Err(RerunError::Store(e)) => return Err(e.into()),
    };
    app.store
        .append(
            NewEvent::audit(EventKind::RunRerun, &caller.actor(), &format!("run/{id}"), &caller.remote)
                .project(&run.project)
                .run(id)
                .data(json!({"runs": runs.iter().map(|r| r.id).collect::<Vec<_>>()})),
        )
        .await?;
    Ok(runs)
}
