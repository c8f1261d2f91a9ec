//! Events a run emits as it progresses; the CLI renders them, the server will store them.

use crate::Conclusion;
use serde::{Deserialize, Serialize};

/// Severity of a workflow-command annotation (`::error`, `::warning`, `::notice`).
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationLevel {
    Debug,
    Notice,
    Warning,
    Error,
}

impl AnnotationLevel {
    /// GitHub's name of the level, as in `::error::`.
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationLevel::Debug => "debug",
            AnnotationLevel::Notice => "notice",
            AnnotationLevel::Warning => "warning",
            AnnotationLevel::Error => "error",
        }
    }

    /// The level of a name given by [`AnnotationLevel::as_str`].
    pub fn parse(name: &str) -> Option<AnnotationLevel> {
        [AnnotationLevel::Debug, AnnotationLevel::Notice, AnnotationLevel::Warning, AnnotationLevel::Error]
            .into_iter()
            .find(|l| l.as_str() == name)
    }
}

/// An annotation raised by a step, with the optional file position it points at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Annotation {
    pub level: AnnotationLevel,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub col: Option<u64>,
}

/// One thing that happened during a run. `job` is the job's display key, which
/// includes matrix values (`build (ubuntu, 18)`); `step` is the step's display name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run_id: String,
        event_name: String,
        workflows: Vec<String>,
        run_dir: String,
    },
    JobStarted {
        job: String,
        workflow: String,
    },
    /// A job that did not run: `conclusion` says how it ends (skipped by its `if` or
    /// `runs-on`, cancelled with its run or by fail-fast or its concurrency group,
    /// failed when its concurrency group cannot be evaluated) and `reason` why.
    JobSkipped {
        job: String,
        reason: String,
        conclusion: Conclusion,
    },
    JobFinished {
        job: String,
        conclusion: Conclusion,
        duration_ms: u64,
        /// The job's outputs (values holding a secret are left out).
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        outputs: std::collections::BTreeMap<String, String>,
    },
    /// A job not run again: a re-run of failed jobs takes its result and outputs from
    /// the previous attempt.
    JobReused {
        job: String,
        conclusion: Conclusion,
    },
    StepStarted {
        job: String,
        step: String,
        /// The step's log file (timestamped, masked lines), complete once the step finishes.
        log: String,
    },
    StepFinished {
        job: String,
        step: String,
        outcome: Conclusion,
        conclusion: Conclusion,
        duration_ms: u64,
    },
    Log {
        job: String,
        step: String,
        line: String,
    },
    Annotation {
        job: String,
        step: String,
        #[serde(flatten)]
        annotation: Annotation,
    },
    Warning {
        message: String,
    },
    RunFinished {
        conclusion: Conclusion,
        duration_ms: u64,
    },
}
