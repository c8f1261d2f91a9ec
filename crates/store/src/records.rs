//! Rows as the rest of the server sees them.

use mobius_core::{Conclusion, EventKind, Status};
use serde::Serialize;

/// A git repository the server watches.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub repo: String,
    pub branch: String,
    pub poll_interval_ms: i64,
    pub created_at: i64,
    /// Sealed with the master key; never serialised.
    #[serde(skip)]
    pub webhook_secret: Vec<u8>,
    /// The image its host jobs run in (`executor: docker`); `None` runs them on the host.
    pub executor_image: Option<String>,
}

/// What a new run starts from.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub project_id: i64,
    pub workflow: String,
    pub workflow_name: String,
    pub event: String,
    pub ref_name: String,
    pub head_sha: String,
    pub actor: String,
    pub author: String,
    pub message: String,
    pub payload: String,
    pub inputs: String,
    pub concurrency_group: Option<String>,
    pub cancel_in_progress: bool,
    pub rerun_of: Option<i64>,
    pub attempt: i64,
    /// JSON object: jobs carried over from the previous attempt (`{id: {conclusion, outputs}}`).
    pub reuse: String,
    /// Set for runs that end before they start (invalid workflow files): the
    /// conclusion and the reason.
    pub finished: Option<(Conclusion, String)>,
}

/// One workflow run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub project_id: i64,
    pub project: String,
    pub number: i64,
    pub attempt: i64,
    pub workflow: String,
    pub workflow_name: String,
    pub event: String,
    pub ref_name: String,
    pub head_sha: String,
    pub actor: String,
    pub author: String,
    pub message: String,
    #[serde(skip)]
    pub payload: String,
    #[serde(skip)]
    pub inputs: String,
    pub status: Status,
    pub conclusion: Option<Conclusion>,
    pub reason: Option<String>,
    pub concurrency_group: Option<String>,
    pub cancel_in_progress: bool,
    pub cancel_requested: bool,
    pub rerun_of: Option<i64>,
    #[serde(skip)]
    pub reuse: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
}

/// One job of a run (a matrix leg is a job of its own, as on GitHub).
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    pub status: Status,
    pub conclusion: Option<Conclusion>,
    pub reason: Option<String>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// JSON object of the job's outputs.
    #[serde(skip)]
    pub outputs: String,
}

/// One step of a job, with where its log is.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub id: i64,
    pub job_id: i64,
    pub number: i64,
    pub name: String,
    pub status: Status,
    pub conclusion: Option<Conclusion>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// The spool file (relative to the data directory) while the step runs.
    #[serde(skip)]
    pub spool: String,
    #[serde(skip)]
    pub log_blob: Option<String>,
    pub log_size: i64,
}

/// A file of an uploaded artifact.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactFile {
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    pub path: String,
    #[serde(skip)]
    pub blob: String,
    pub size: i64,
    pub created_at: i64,
}

/// A parsed JUnit XML file.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub id: i64,
    pub run_id: i64,
    pub job: String,
    pub file: String,
    pub tests: i64,
    pub failures: i64,
    pub errors: i64,
    pub skipped: i64,
    /// JSON array of the failed cases: `{suite, name, message, detail}`.
    pub cases: serde_json::Value,
}

/// The sums over a run's test reports.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TestTotals {
    pub total: i64,
    pub passed: i64,
    pub failures: i64,
    pub errors: i64,
    pub skipped: i64,
}

impl TestTotals {
    pub fn of(reports: &[TestReport]) -> TestTotals {
        let mut t = TestTotals::default();
        for r in reports {
            t.total += r.tests;
            t.failures += r.failures;
            t.errors += r.errors;
            t.skipped += r.skipped;
        }
        t.passed = t.total - t.failures - t.errors - t.skipped;
        t
    }
}

/// An API token (the secret itself is only ever shown at creation).
#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub project_id: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// One entry of the audit trail: an event a request caused (or a refusal).
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// The event's id in the log.
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: EventKind,
    pub target: String,
    pub detail: serde_json::Value,
    pub remote: String,
}

/// Counts the metrics endpoint reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunCounts {
    /// `(status, conclusion, count)`.
    pub by_status: Vec<(Status, Option<Conclusion>, i64)>,
}
