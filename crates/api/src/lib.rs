//! The JSON API's types: what `mobius serve` answers and accepts under `/api/v1`,
//! and what the CLI reads. Field names are GitHub's where GitHub has the concept.
//! The OpenAPI document ([`openapi::document`]) takes its schemas from these types.

#![forbid(unsafe_code)]

pub mod openapi;

use mobius_core::{AnnotationLevel, Conclusion, EventKind, IncidentStatus, Phase, Status, StrategyKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// RFC 3339 with milliseconds, UTC; `None` for a time that cannot be shown (chrono
/// prints any time it can hold, years past 9999 with a sign, so no stored value can
/// make an answer fail).
pub fn time(ms: Option<i64>) -> Option<String> {
    ms.filter(|ms| *ms >= 0)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Every error answer: what went wrong, naming the field or bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Error {
    pub error: String,
}

/// A project: a repository whose workflows run here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: i64,
    pub name: String,
    /// A local path or the URL the server mirrors.
    pub repo: String,
    /// The default branch.
    pub branch: String,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// Where its jobs without `container:` run.
    pub executor: Executor,
}

/// Where a project's jobs without `container:` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// On the server's host, in the job sandbox.
    #[default]
    Host,
    /// In a container of `image` on the Docker Engine, with GitHub's paths.
    Docker,
}

/// A project's executor: `{"kind": "docker", "image": "debian:12"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Executor {
    pub kind: ExecutorKind,
    /// The image, for `docker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// `POST /projects`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// A local path of a git repository, or an `http(s)://` URL to mirror.
    pub repo: String,
    /// The default branch (the repository's HEAD when absent).
    pub branch: Option<String>,
    /// The webhook secret (generated and shown once when absent).
    #[schema(min_length = 16)]
    pub webhook_secret: Option<String>,
    /// Where its jobs without `container:` run (the host when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Executor>,
}

/// The answer to `POST /projects`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectCreated {
    pub project: Project,
    /// The runs its first poll started.
    pub runs: Vec<Run>,
    /// Only when generated; shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// `PUT` of a secret or a variable.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetValue {
    pub value: String,
}

/// A secret's name and when it was last set (its value is never shown).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretEntry {
    pub name: String,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

/// A variable and its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VariableEntry {
    pub name: String,
    pub value: String,
}

/// `POST /projects/{project}/workflows/{workflow}/dispatches`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    /// A branch or tag; the project's branch when absent.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// The workflow's `workflow_dispatch` inputs.
    #[serde(default)]
    pub inputs: Map<String, Value>,
}

/// `POST /runs/{id}/rerun`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rerun {
    /// Run again only the jobs that failed (and what needs them); the rest is reused.
    #[serde(default)]
    pub failed_only: bool,
}

/// The runs a request started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// A workflow run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: i64,
    pub project: String,
    /// The workflow file's path.
    pub workflow: String,
    /// The workflow's `name`.
    pub name: String,
    pub event: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub head_branch: String,
    pub head_sha: String,
    pub actor: String,
    pub author: String,
    pub message: String,
    pub run_number: i64,
    pub run_attempt: i64,
    pub status: Status,
    pub conclusion: Option<Conclusion>,
    pub reason: Option<String>,
    pub concurrency_group: Option<String>,
    pub rerun_of: Option<i64>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// In lists: the names of the jobs that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs: Option<Vec<String>>,
}

/// A run with its jobs, tests, checks and annotations (`GET /runs/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: Run,
    pub jobs: Vec<Job>,
    pub tests: TestSummary,
    /// Checks the server made of the run (its commit's `mobius.yaml`); they never
    /// change the run's conclusion.
    pub checks: Vec<Check>,
    /// Annotations raised by steps (`::error::`, `::warning::`, `::notice::`; at most
    /// 50 per job) and by checks (`job` empty, `source` the check's name).
    pub annotations: Vec<RunAnnotation>,
}

/// A check the server made of a run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Check {
    pub name: String,
    pub conclusion: Conclusion,
    pub summary: String,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

/// An annotation on a run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunAnnotation {
    pub job: String,
    /// The step's name or the check's.
    pub source: String,
    pub level: AnnotationLevel,
    pub message: String,
    pub title: Option<String>,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub col: Option<u64>,
}

/// A job of a run, with its steps.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    pub status: Status,
    pub conclusion: Option<Conclusion>,
    pub reason: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    pub steps: Vec<Step>,
}

/// A step of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Step {
    pub number: i64,
    pub name: String,
    pub status: Status,
    pub conclusion: Option<Conclusion>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    pub log_bytes: i64,
}

/// An artifact a run uploaded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Artifact {
    pub name: String,
    pub size: i64,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    pub files: Vec<ArtifactFile>,
}

/// One file of an artifact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactFile {
    pub path: String,
    pub size: i64,
}

/// A run's test results: the totals and each JUnit report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TestSummary {
    pub total: i64,
    pub passed: i64,
    pub failures: i64,
    pub errors: i64,
    pub skipped: i64,
    pub reports: Vec<TestReport>,
}

/// One JUnit report a job uploaded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TestReport {
    pub id: i64,
    pub run_id: i64,
    pub job: String,
    pub file: String,
    pub tests: i64,
    pub failures: i64,
    pub errors: i64,
    pub skipped: i64,
    /// The failed cases.
    pub cases: Vec<TestCase>,
}

/// A failed test case.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TestCase {
    #[serde(default)]
    pub suite: String,
    #[serde(default)]
    pub classname: String,
    pub name: String,
    pub kind: TestFailureKind,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: String,
}

/// How a test case did not pass, as JUnit writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TestFailureKind {
    /// An assertion failed (`<failure>`).
    Failure,
    /// The test could not run to its end (`<error>`).
    Error,
}

/// A role a token holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Developer,
    Maintainer,
    Admin,
}

/// An API token (never its secret, which is shown once at creation).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The one project it may reach; every project when null.
    pub project: Option<String>,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
}

/// `POST /tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: Option<String>,
    /// `viewer`, `developer`, `maintainer` or `admin` (checked by the server, which
    /// names the field when it is none of them).
    pub role: String,
    pub project: Option<String>,
    /// A duration such as `30d` or `12h`.
    pub expires_in: Option<String>,
}

/// The answer to `POST /tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub token: Token,
    /// The secret; shown once.
    #[serde(rename = "token")]
    pub secret: String,
}

/// An entry of the audit trail (a reader of the event log).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[schema(format = DateTime)]
    pub at: Option<String>,
    pub actor: String,
    pub action: EventKind,
    pub target: String,
    /// What the entry records, by action.
    pub detail: Value,
    pub remote: String,
}

/// One commit of a release's changelog.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangelogEntry {
    pub sha: String,
    pub author: String,
    pub message: String,
}

/// An immutable release of a service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub id: i64,
    pub project: String,
    pub service: String,
    /// `v1`, `v2`, … per service.
    pub version: String,
    pub run_id: i64,
    pub commit: String,
    pub author: String,
    pub artifact: String,
    /// `sha256:` of the manifest (sha256sum lines of the artifact's files, sorted by path).
    pub digest: String,
    pub changelog: Vec<ChangelogEntry>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

/// A release with its manifest and provenance (`GET /releases/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseDetail {
    #[serde(flatten)]
    pub release: Release,
    pub manifest: String,
    /// An in-toto v1 Statement with an SLSA v1 provenance predicate.
    pub provenance: Value,
}

/// `POST /deployments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeployment {
    /// Needed when several projects have the service.
    pub project: Option<String>,
    pub service: String,
    pub environment: String,
    /// A release id, a version (`v3`), a commit, or `latest` (the default).
    pub release: Option<String>,
}

/// `POST /rollbacks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRollback {
    pub project: Option<String>,
    pub service: String,
    pub environment: String,
    /// The version to go back to (the last one that succeeded before when absent).
    pub to: Option<String>,
}

/// The release a rollout deploys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseRef {
    pub id: i64,
    pub version: String,
}

/// A rollout with the controller's last status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    pub id: i64,
    pub project: String,
    pub service: String,
    pub environment: String,
    pub release: ReleaseRef,
    pub strategy: StrategyKind,
    pub phase: Phase,
    pub message: String,
    /// The version serving before.
    pub stable: Option<String>,
    /// The version being rolled out.
    pub canary: Value,
    /// Percent of new requests per version.
    #[schema(value_type = Object)]
    pub weights: Value,
    /// The canary step under way.
    pub step: Value,
    pub steps: Value,
    /// Per version: `requests`, `requests_per_second`, `error_ratio`, `p99_ms`.
    #[schema(value_type = Object)]
    pub rates: Value,
    /// A canary's steps in order (`weight`, `pause_seconds`; null: until promoted).
    pub plan: Value,
    /// Where a paused blue-green's new version answers before the switch.
    pub preview: Value,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// A newer release of the service that waits while this rollout is under way.
    pub newer_release: Option<String>,
}

/// A rollout with its timeline (`GET /rollouts/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutDetail {
    #[serde(flatten)]
    pub rollout: Rollout,
    pub events: Vec<RolloutEvent>,
}

/// A line of a rollout's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutEvent {
    pub kind: mobius_core::DeployEventKind,
    pub actor: String,
    pub message: String,
    #[schema(format = DateTime)]
    pub at: Option<String>,
}

/// What runs where: an environment's service, the version serving, any rollout under way.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Place {
    pub project: String,
    pub environment: String,
    pub service: String,
    /// The router's public address for the service here.
    pub address: Option<String>,
    pub version: Option<String>,
    #[schema(format = DateTime)]
    pub deployed_at: Option<String>,
    pub rollout: Option<Rollout>,
}

/// An entry of the event log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Strictly increasing, and visible in that order.
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    #[schema(format = DateTime)]
    pub time: Option<String>,
    pub kind: EventKind,
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<i64>,
    pub actor: String,
    pub target: Option<String>,
    /// Shown to administrators only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// What the event records, by kind.
    pub data: Value,
    /// One line that says what happened.
    pub summary: String,
}

/// A page of the event log (`GET /events`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// The last id of the page (the `after` asked when the page is empty): pass it as
    /// the next `after`.
    pub last_id: i64,
}

/// An incident: an alert group that pages, with its escalation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    pub id: i64,
    pub group_key: String,
    pub title: String,
    pub status: IncidentStatus,
    pub receiver: String,
    /// The alert group's labels.
    #[schema(value_type = Object)]
    pub labels: Value,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// The last rollout of the service and environment before the alert started.
    pub rollout_id: Option<i64>,
    pub policy: Option<String>,
    /// The next escalation level to page (0 before the first).
    pub level: i64,
    /// How many times the policy's levels have run through.
    pub rounds: i64,
    #[schema(format = DateTime)]
    pub next_escalation_at: Option<String>,
    #[schema(format = DateTime)]
    pub opened_at: Option<String>,
    #[schema(format = DateTime)]
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    #[schema(format = DateTime)]
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    /// Resolved minus opened, in milliseconds (DORA's time to restore).
    pub time_to_restore_ms: Option<i64>,
}

/// A line of an incident's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentEvent {
    pub id: i64,
    pub incident_id: i64,
    pub kind: mobius_core::IncidentEventKind,
    pub actor: String,
    pub message: String,
    #[schema(format = DateTime)]
    pub at: Option<String>,
}

/// The answer to an incident's change (`acknowledge`, `resolve`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentAnswer {
    pub incident: Incident,
}

/// An incident with its timeline (`GET /incidents/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub events: Vec<IncidentEvent>,
}

/// A page of incidents (`GET /incidents`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
}

/// The answer to `POST /-/reload`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reloaded {
    pub status: String,
    /// How many targets the reloaded files name.
    pub targets: u64,
}
