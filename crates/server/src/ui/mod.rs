//! The web UI under `/ui`: server-rendered askama pages, assets embedded in the binary,
//! a little JavaScript of our own for live logs. The session is the API token in an
//! HttpOnly, SameSite=Strict cookie; forms carry a CSRF value derived from it.

mod activity;
mod chart;
mod deploy;
mod graph;
mod incidents;
mod monitor;
mod releases;
mod watch;
pub(crate) use incidents::{ack_link, ack_page};

use crate::api::{self, dto};
use crate::app::App;
use crate::auth::{cookie_token, hash_token, Caller, Role};
use crate::error::ApiError;
use askama::Template;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use mobius_core::EventKind;
use mobius_core::{Conclusion, State as RunState, Status};
use mobius_store::NewEvent;
use mobius_store::{Run, RunFilter};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/runs") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/runs", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/rerun", post(rerun))
        .route("/projects", get(projects_page))
        .route("/activity", get(activity::activity_page))
        .route("/releases", get(releases::releases_page))
        .route("/releases/{id}", get(releases::release_page))
        .route("/targets", get(watch::targets_page))
        .route("/rules", get(watch::rules_page))
        .route("/silences", get(watch::silences_page).post(watch::create_silence))
        .route("/silences/{id}/expire", post(watch::expire_silence))
        .route("/deploys", get(deploy::deploys_page))
        .route("/incidents", get(incidents::incidents_page))
        .route("/query", get(monitor::query_page))
        .route("/services", get(monitor::services_page))
        .route("/alerts", get(monitor::alerts_page))
        .route("/logs", get(monitor::logs_page))
        .route("/incidents/{id}", get(incidents::incident_page))
        .route("/incidents/{id}/{command}", post(incidents::incident_command))
        .route("/rollouts/{id}", get(deploy::rollout_page))
        .route("/rollouts/{id}/{command}", post(deploy::rollout_command))
        .route("/projects/{name}", get(project_page))
        .route("/projects/{name}/dispatch/{workflow}", get(dispatch_page).post(dispatch))
        .route(
            "/static/app.js",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../assets/app.js"))
            }),
        )
        .route(
            "/static/app.css",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../assets/app.css"))
            }),
        )
}

/// What a UI page may load: its own script and stylesheet, nothing inline, never
/// inside another site's frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the UI's security headers to every answer under `/ui`.
pub async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
    response
}

/// The largest page [`conditional`] tags (it is read whole to hash it).
const TAGGED_PAGE_LIMIT: u64 = 16 << 20;

/// Conditional GETs of the pages: each answer carries an ETag of its body, and a
/// request that already holds it gets 304 without the body (what a live list's
/// refresh asks every second).
pub async fn conditional(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let get = request.method() == axum::http::Method::GET;
    let held = request.headers().get(header::IF_NONE_MATCH).cloned();
    let response = next.run(request).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    // Pages are small; one that is not (or whose size is unknown) is answered whole,
    // without a tag.
    let size = axum::body::HttpBody::size_hint(response.body()).upper();
    if !get || response.status() != StatusCode::OK || !html || size.is_none_or(|n| n > TAGGED_PAGE_LIMIT) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, TAGGED_PAGE_LIMIT as usize).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let tag = format!("W/\"{}\"", hex::encode(&Sha256::digest(&bytes)[..16]));
    let Ok(value) = header::HeaderValue::from_str(&tag) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    parts.headers.insert(header::ETAG, value.clone());
    parts.headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("private, no-cache"));
    if held.as_ref() == Some(&value) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

const COOKIE: &str = "mobius_token";

/// The CSRF value of a session: only a page that knows the token can compute it.
fn csrf_for(token: &str) -> String {
    hex::encode(Sha256::digest(format!("mobius-csrf:{}", hash_token(token)).as_bytes()))
}

/// The signed-in user, or a redirect to the sign-in page.
struct Session {
    caller: Caller,
    csrf: String,
}

impl FromRequestParts<Arc<App>> for Session {
    /// Not signed in: to the sign-in page.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let remote = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        let token = cookie_token(&parts.headers).ok_or_else(to_login)?;
        match Caller::from_token(app, token, remote).await {
            Ok(Some(caller)) => Ok(Session { csrf: csrf_for(token), caller }),
            Ok(None) => Err(to_login()),
            Err(e) => Err(e.into_response()),
        }
    }
}

impl Session {
    /// The answer refusing a form post without the session's CSRF value, if it lacks it.
    fn refusal(&self, form: &HashMap<String, String>) -> Option<Response> {
        let ok = form.get("csrf").is_some_and(|value| *value == self.csrf);
        (!ok).then(|| error_page(ApiError::new(StatusCode::FORBIDDEN, "missing or wrong CSRF value; reload the page")))
    }
}

/// A time as the pages show it: `2026-11-23 04:05:06` (UTC).
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// One line of a timeline (a rollout's or an incident's events).
pub(super) struct EventView {
    at: String,
    kind: String,
    actor: String,
    /// As HTML: escaped, the CLI's `code` spans as `<code>`.
    message: String,
}

impl EventView {
    /// `actor` is shown by name (`token:3:alice` → `alice`).
    fn new(at: i64, kind: &str, actor: &str, message: &str) -> EventView {
        EventView {
            at: when(at),
            kind: kind.to_string(),
            actor: actor.rsplit(':').next().unwrap_or_default().to_string(),
            message: message_html(message),
        }
    }
}

fn render(template: impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    user: String,
    heading: String,
    /// Escaped, with the CLI's `code` spans as `<code>`.
    message: String,
}

/// A message written for the CLI, as HTML: escaped, and `name` in backticks shown as code.
pub(super) fn message_html(message: &str) -> String {
    let escaped = graph::escape(message);
    let mut out = String::with_capacity(escaped.len());
    let mut parts = escaped.split('`').peekable();
    let mut inside = false;
    while let Some(part) = parts.next() {
        if inside && parts.peek().is_some() {
            out.push_str(&format!("<code>{part}</code>"));
        } else if inside {
            // An unpaired backtick stays as it was.
            out.push('`');
            out.push_str(part);
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    out
}

/// The UI's own page for a refusal or a failure, with the status of the answer.
fn error_page(e: ApiError) -> Response {
    let heading = match e.status {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not now",
        s if s.is_client_error() => "Cannot do that",
        _ => "Something went wrong",
    };
    let page = ErrorPage { user: String::new(), heading: heading.to_string(), message: message_html(&e.message) };
    match page.render() {
        Ok(html) => (e.status, Html(html)).into_response(),
        Err(_) => (e.status, e.message).into_response(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    user: String,
    error: String,
}

async fn login_page() -> Response {
    render(LoginPage { user: String::new(), error: String::new() })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = form.token.trim().to_string();
    match Caller::from_token(&app, &token, remote.ip().to_string()).await {
        Ok(Some(caller)) => {
            let _ = app.store.append(NewEvent::audit(EventKind::UiSignIn, &caller.actor(), "ui", &caller.remote)).await;
            let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/runs")).into_response()
        }
        Ok(None) => {
            let detail = serde_json::json!({"route": "POST /ui/login", "status": 401, "reason": "invalid, expired or revoked token"});
            if let Err(e) = app
                .store
                .append(
                    NewEvent::audit(EventKind::UiSignInFailed, "unknown token", "ui", &remote.ip().to_string())
                        .data(detail),
                )
                .await
            {
                tracing::warn!(error = %e, "cannot record a failed sign-in in the audit log");
            }
            let page =
                LoginPage { user: String::new(), error: "That token is not valid (wrong, expired or revoked).".into() };
            (StatusCode::UNAUTHORIZED, render(page)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response()
}

/// A run as the pages show it.
struct RunView {
    id: i64,
    number: i64,
    attempt: i64,
    name: String,
    project: String,
    event: String,
    branch: String,
    short_sha: String,
    message: String,
    author: String,
    status: Status,
    state: RunState,
    /// Completed: Re-run rather than Cancel.
    completed: bool,
    /// Succeeded: nothing failed to re-run.
    succeeded: bool,
    reason: String,
    duration: String,
    created: String,
}

fn run_view(run: &Run) -> RunView {
    let duration = match (run.started_at, run.completed_at) {
        (Some(s), Some(c)) => mobius_core::duration::human_signed(c - s),
        (Some(s), None) => format!("{} so far", mobius_core::duration::human_signed(mobius_store::now_ms() - s)),
        _ => "-".into(),
    };
    let created = dto::time(Some(run.created_at)).as_str().unwrap_or_default().replace('T', " ");
    RunView {
        id: run.id,
        number: run.number,
        attempt: run.attempt,
        name: run.workflow_name.clone(),
        project: run.project.clone(),
        event: run.event.clone(),
        branch: mobius_runner::repo::short_ref(&run.ref_name).to_string(),
        short_sha: run.head_sha.chars().take(7).collect(),
        message: run.message.clone(),
        author: run.author.clone(),
        status: run.status,
        state: RunState::of(run.status, run.conclusion),
        completed: run.status == Status::Completed,
        succeeded: run.conclusion == Some(Conclusion::Success),
        reason: run.reason.clone().unwrap_or_default(),
        duration,
        created: created.split('.').next().unwrap_or_default().to_string(),
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    user: String,
    /// The filters as given (an empty string: not filtered).
    project: String,
    status: String,
    workflow: String,
    branch: String,
    event: String,
    actor: String,
    filtered: bool,
    runs: Vec<RunView>,
}

impl RunsPage {
    /// The choices of the status filter: statuses, then conclusions.
    fn run_states(&self) -> Vec<&'static str> {
        Status::ALL.iter().map(|s| s.as_str()).chain(Conclusion::ALL.iter().map(|c| c.as_str())).collect()
    }
}
/// The choices of its event filter.
const RUN_EVENTS: [&str; 5] = ["push", "pull_request", "workflow_dispatch", "schedule", "workflow_call"];

/// `GET /ui/runs`: the newest 50 runs, filtered as `mobius runs` and `GET /api/v1/runs` filter.
async fn runs_page(State(app): State<Arc<App>>, s: Session, Query(q): Query<api::runs::ListQuery>) -> Response {
    let q = api::runs::ListQuery { limit: Some(50), before: None, ..q.without_empty() };
    let filter = match api::runs::run_filter(&app, &s.caller, &q).await {
        Ok(filter) => filter,
        Err(e) => return error_page(e),
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    match app.store.runs(&filter).await {
        Ok(runs) => render(RunsPage {
            user: s.caller.name,
            filtered: [&q.status, &q.workflow, &q.branch, &q.event, &q.actor].iter().any(|v| v.is_some()),
            project: text(&q.project),
            status: text(&q.status),
            workflow: text(&q.workflow),
            branch: text(&q.branch),
            event: text(&q.event),
            actor: text(&q.actor),
            runs: runs.iter().map(run_view).collect(),
        }),
        Err(e) => error_page(e.into()),
    }
}

struct StepView {
    number: i64,
    name: String,
    state: RunState,
    /// A failed step's log is shown unfolded.
    failed: bool,
}

struct JobView {
    id: i64,
    name: String,
    state: RunState,
    steps: Vec<StepView>,
}

struct FailureView {
    name: String,
    message: String,
    detail: String,
}

/// A check of the run (`mobius.yaml`) or a step's annotation, as shown on the run page.
struct CheckView {
    name: String,
    state: String,
    summary: String,
}

struct AnnotationView {
    level: String,
    origin: String,
    place: String,
    message: String,
}

struct ArtifactView {
    label: String,
    href: String,
    size: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    user: String,
    csrf: String,
    run: RunView,
    graph: String,
    jobs: Vec<JobView>,
    tests: mobius_store::TestTotals,
    failures: Vec<FailureView>,
    checks: Vec<CheckView>,
    annotations: Vec<AnnotationView>,
    artifacts: Vec<ArtifactView>,
    /// Cancel and re-run, for developers and above.
    can_act: bool,
}

/// `file:line:col` of an annotation, as much of it as it has.
pub(crate) fn annotation_place(a: &mobius_core::Annotation) -> String {
    match (&a.file, a.line, a.col) {
        (Some(f), Some(l), Some(c)) => format!("{f}:{l}:{c}"),
        (Some(f), Some(l), None) => format!("{f}:{l}"),
        (Some(f), None, _) => f.clone(),
        _ => String::new(),
    }
}

fn human_size(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} kB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The graph's nodes: the workflow's jobs (read at the run's commit) with the state of their rows.
async fn graph_nodes(app: &App, run: &Run, jobs: &[JobView]) -> Vec<graph::Node> {
    let project = app.store.project_by_id(run.project_id).await.ok().flatten();
    let (repo, sha, path) = (project.map(|p| app.repo_dir(&p)), run.head_sha.clone(), run.workflow.clone());
    let workflow = tokio::task::spawn_blocking(move || {
        let files = mobius_code::git::workflow_files(&repo?, &sha).ok()?;
        let (path, text) = files.into_iter().find(|(p, _)| *p == path)?;
        mobius_workflow::parse_workflow(mobius_workflow::SourceFile::new(path, text)).ok()
    })
    .await
    .ok()
    .flatten();
    let Some(workflow) = workflow else {
        // Without the workflow (an invalid file), the rows alone, without edges.
        return jobs
            .iter()
            .map(|j| graph::Node {
                id: j.name.clone(),
                label: j.name.clone(),
                needs: vec![],
                state: j.state.as_str().to_string(),
            })
            .collect();
    };
    workflow
        .jobs
        .values()
        .map(|job| {
            let label = job
                .name
                .as_ref()
                .and_then(|n| n.as_str())
                .filter(|n| !n.contains("${{"))
                .unwrap_or(&job.id)
                .to_string();
            let rows: Vec<&JobView> = jobs
                .iter()
                .filter(|j| {
                    j.name == label
                        || j.name == job.id
                        || j.name.starts_with(&format!("{label} ("))
                        || j.name.starts_with(&format!("{} / ", job.id))
                })
                .collect();
            // A matrix job's node shows its most telling leg: failed, running or cancelled first.
            let telling = |s: &RunState| {
                matches!(
                    s,
                    RunState::Done(Conclusion::Failure | Conclusion::Cancelled) | RunState::Waiting(Status::InProgress)
                )
            };
            let state = if rows.is_empty() {
                if run.status == Status::Completed {
                    RunState::Done(Conclusion::Skipped)
                } else {
                    RunState::Waiting(Status::Queued)
                }
            } else {
                rows.iter().map(|r| r.state).find(telling).unwrap_or(rows[0].state)
            };
            let state = state.as_str().to_string();
            graph::Node { id: job.id.clone(), label, needs: job.needs.clone(), state }
        })
        .collect()
}

async fn run_page(State(app): State<Arc<App>>, s: Session, Path(id): Path<i64>) -> Response {
    let run = match api::runs::find_run(&app, &s.caller, id, Role::Viewer).await {
        Ok(run) => run,
        Err(e) => return error_page(e),
    };
    let page = async {
        let mut jobs = Vec::new();
        for job in app.store.jobs(run.id).await? {
            let steps = app.store.steps(job.id).await?;
            jobs.push(JobView {
                id: job.id,
                name: job.name.clone(),
                state: RunState::of(job.status, job.conclusion),
                steps: steps
                    .iter()
                    .map(|st| StepView {
                        number: st.number,
                        name: st.name.clone(),
                        state: RunState::of(st.status, st.conclusion),
                        failed: st.conclusion == Some(Conclusion::Failure),
                    })
                    .collect(),
            });
        }
        let reports = app.store.test_reports(run.id).await?;
        let failures = reports
            .iter()
            .flat_map(|r| r.cases.as_array().cloned().unwrap_or_default())
            .map(|c| FailureView {
                name: format!(
                    "{} {}",
                    c["classname"].as_str().unwrap_or_default(),
                    c["name"].as_str().unwrap_or_default()
                )
                .trim()
                .to_string(),
                message: c["message"].as_str().unwrap_or_default().to_string(),
                detail: c["detail"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        let artifacts = app
            .store
            .artifacts(run.id)
            .await?
            .iter()
            .map(|a| ArtifactView {
                label: format!("{}/{}", a.name, a.path),
                href: format!("/api/v1/runs/{}/artifacts/{}/{}", run.id, a.name, a.path),
                size: human_size(a.size),
            })
            .collect();
        let checks = app
            .store
            .checks(run.id)
            .await?
            .into_iter()
            .map(|c| CheckView {
                name: c.name,
                state: c.conclusion.as_str().to_string(),
                summary: message_html(&c.summary),
            })
            .collect();
        let annotations = app
            .store
            .annotations(run.id)
            .await?
            .into_iter()
            .map(|a| AnnotationView {
                level: a.annotation.level.as_str().to_string(),
                origin: if a.job.is_empty() { a.source } else { format!("{} · {}", a.job, a.source) },
                place: annotation_place(&a.annotation),
                message: a.annotation.message,
            })
            .collect();
        let nodes = graph_nodes(&app, &run, &jobs).await;
        let tests = mobius_store::TestTotals::of(&reports);
        Ok::<_, mobius_store::StoreError>(RunPage {
            user: s.caller.name.clone(),
            csrf: s.csrf.clone(),
            run: run_view(&run),
            graph: graph::render(&nodes),
            jobs,
            tests,
            failures,
            checks,
            annotations,
            artifacts,
            can_act: s.caller.may(Role::Developer, run.project_id),
        })
    };
    match page.await {
        Ok(page) => render(page),
        Err(e) => error_page(e.into()),
    }
}

async fn cancel(
    State(app): State<Arc<App>>,
    s: Session,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = s.refusal(&form) {
        return refused;
    }
    match api::runs::cancel(State(app), s.caller, Path(id)).await {
        Ok(_) => Redirect::to(&format!("/ui/runs/{id}")).into_response(),
        Err(e) => error_page(e),
    }
}

async fn rerun(
    State(app): State<Arc<App>>,
    s: Session,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = s.refusal(&form) {
        return refused;
    }
    let failed_only = form.get("failed_only").is_some_and(|v| v == "true");
    match api::runs::rerun_run(&app, &s.caller, id, failed_only).await {
        Ok(runs) => Redirect::to(&runs.first().map_or(format!("/ui/runs/{id}"), |r| format!("/ui/runs/{}", r.id)))
            .into_response(),
        Err(e) => error_page(e),
    }
}

struct ProjectView {
    name: String,
    branch: String,
    repo: String,
    /// The newest run of the project, if it has one.
    last: Option<RunView>,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    user: String,
    projects: Vec<ProjectView>,
}

async fn projects_page(State(app): State<Arc<App>>, s: Session) -> Response {
    let projects = match app.store.projects().await {
        Ok(projects) => projects,
        Err(e) => return error_page(e.into()),
    };
    let mut views = Vec::new();
    for p in projects.into_iter().filter(|p| s.caller.sees(p.id)) {
        let newest = RunFilter { project_id: Some(p.id), limit: 1, ..RunFilter::default() };
        let last = match app.store.runs(&newest).await {
            Ok(runs) => runs.first().map(run_view),
            Err(e) => return error_page(e.into()),
        };
        views.push(ProjectView { name: p.name, branch: p.branch, repo: p.repo, last });
    }
    render(ProjectsPage { user: s.caller.name.clone(), projects: views })
}

struct WorkflowView {
    name: String,
    file: String,
    dispatchable: bool,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    user: String,
    name: String,
    repo: String,
    branch: String,
    workflows: Vec<WorkflowView>,
    /// Whether the caller may dispatch (a viewer is not offered "Run workflow").
    can_dispatch: bool,
}

/// The workflows at the head of the project's branch.
async fn branch_workflows(app: &App, project: &mobius_store::Project) -> Vec<mobius_workflow::Workflow> {
    let (repo, branch) = (app.repo_dir(project), format!("refs/heads/{}", project.branch));
    tokio::task::spawn_blocking(move || {
        let files = mobius_code::git::workflow_files(&repo, &branch).unwrap_or_default();
        files
            .into_iter()
            .filter_map(|(path, text)| {
                mobius_workflow::parse_workflow(mobius_workflow::SourceFile::new(path, text)).ok()
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

async fn project_page(State(app): State<Arc<App>>, s: Session, Path(name): Path<String>) -> Response {
    let project = match api::projects::find(&app, &s.caller, &name, Role::Viewer).await {
        Ok(p) => p,
        Err(e) => return error_page(e),
    };
    let workflows = branch_workflows(&app, &project)
        .await
        .iter()
        .map(|w| WorkflowView {
            name: w.display_name().to_string(),
            file: w.file.path.rsplit('/').next().unwrap_or_default().to_string(),
            dispatchable: w.triggers.contains_key("workflow_dispatch"),
        })
        .collect();
    render(ProjectPage {
        can_dispatch: s.caller.may(Role::Developer, project.id),
        user: s.caller.name,
        name: project.name,
        repo: project.repo,
        branch: project.branch,
        workflows,
    })
}

struct InputView {
    name: String,
    description: String,
    kind: String,
    required: bool,
    default: String,
    options: Vec<String>,
}

#[derive(Template)]
#[template(path = "dispatch.html")]
struct DispatchPage {
    user: String,
    csrf: String,
    name: String,
    workflow: String,
    git_ref: String,
    inputs: Vec<InputView>,
    error: String,
}

async fn dispatch_form(app: &App, s: &Session, name: &str, workflow: &str, error: String) -> Response {
    let project = match api::projects::find(app, &s.caller, name, Role::Developer).await {
        Ok(p) => p,
        Err(e) => return error_page(e),
    };
    let workflows = branch_workflows(app, &project).await;
    let Some(found) = workflows.iter().find(|w| w.file.path.rsplit('/').next() == Some(workflow)) else {
        return error_page(ApiError::not_found(format!("no workflow file '{workflow}' on {}", project.branch)));
    };
    let inputs = found
        .triggers
        .get("workflow_dispatch")
        .map(|t| {
            t.inputs
                .iter()
                .map(|(input, spec)| {
                    let (kind, options) = match &spec.kind {
                        mobius_workflow::InputType::Boolean => ("boolean", vec![]),
                        mobius_workflow::InputType::Number => ("number", vec![]),
                        mobius_workflow::InputType::Choice(options) => ("choice", options.clone()),
                        _ => ("string", vec![]),
                    };
                    InputView {
                        name: input.clone(),
                        description: spec.description.clone().unwrap_or_default(),
                        kind: kind.into(),
                        required: spec.required,
                        default: spec
                            .default
                            .as_ref()
                            .map(|d| mobius_workflow::expr::to_display_string(&d.to_json()))
                            .unwrap_or_default(),
                        options,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = DispatchPage {
        user: s.caller.name.clone(),
        csrf: s.csrf.clone(),
        name: project.name,
        workflow: workflow.to_string(),
        git_ref: project.branch,
        inputs,
        error: message_html(&error),
    };
    (status, render(page)).into_response()
}

async fn dispatch_page(
    State(app): State<Arc<App>>,
    s: Session,
    Path((name, workflow)): Path<(String, String)>,
) -> Response {
    dispatch_form(&app, &s, &name, &workflow, String::new()).await
}

async fn dispatch(
    State(app): State<Arc<App>>,
    s: Session,
    Path((name, workflow)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = s.refusal(&form) {
        return refused;
    }
    // Unchecked boxes are absent from a form post: booleans default to false.
    let mut inputs: Map<String, Value> = Map::new();
    for (key, value) in &form {
        if let Some(input) = key.strip_prefix("input.") {
            inputs.insert(input.to_string(), Value::String(value.clone()));
        }
    }
    let git_ref = form.get("ref").filter(|r| !r.is_empty()).cloned();
    match api::projects::dispatch_workflow(&app, &s.caller, &name, &workflow, git_ref, inputs).await {
        Ok(runs) => {
            Redirect::to(&runs.first().map_or(format!("/ui/projects/{name}"), |r| format!("/ui/runs/{}", r.id)))
                .into_response()
        }
        Err(e) if e.status.is_client_error() => dispatch_form(&app, &s, &name, &workflow, e.message).await,
        Err(e) => error_page(e),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::response::Html;
    use tower::ServiceExt as _;

    /// A page is tagged and a held tag answered 304; a page above the limit is answered
    /// whole, untagged (it was a 500: its body was consumed by the failed read).
    #[tokio::test]
    async fn conditional_gets_tag_pages_up_to_the_limit_and_answer_larger_ones_whole() {
        let big = "x".repeat(super::TAGGED_PAGE_LIMIT as usize + 1);
        let app = axum::Router::new()
            .route("/small", axum::routing::get(|| async { Html("<p>small</p>") }))
            .route("/big", axum::routing::get(move || async move { Html(big) }))
            .layer(axum::middleware::from_fn(super::conditional));
        let get = |path: &str, tag: Option<&str>| {
            let mut request = Request::get(path);
            if let Some(tag) = tag {
                request = request.header(header::IF_NONE_MATCH, tag);
            }
            app.clone().oneshot(request.body(Body::empty()).expect("a request"))
        };
        let small = get("/small", None).await.expect("an answer");
        let tag = small.headers().get(header::ETAG).expect("a tag").to_str().expect("ascii").to_string();
        let again = get("/small", Some(&tag)).await.expect("an answer");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let big = get("/big", None).await.expect("an answer");
        assert_eq!(big.status(), StatusCode::OK);
        assert!(big.headers().get(header::ETAG).is_none());
        let body = axum::body::to_bytes(big.into_body(), usize::MAX).await.expect("the body");
        assert_eq!(body.len() as u64, super::TAGGED_PAGE_LIMIT + 1);
    }

    /// Issue 16, item 16: UI messages show code as code, never the CLI's backticks.
    #[test]
    fn ui_messages_show_code_not_backticks() {
        assert_eq!(
            super::message_html("v2 must succeed in `staging` before `production`"),
            "v2 must succeed in <code>staging</code> before <code>production</code>"
        );
        assert_eq!(super::message_html("a <b> and `x"), "a &lt;b&gt; and `x");
    }
}
