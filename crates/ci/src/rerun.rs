//! Re-runs: the next attempt of a completed run, with the same commit, workflow, event,
//! payload and inputs. With `failed_only`, jobs that succeeded keep their result and
//! outputs and only the others (failed, cancelled, or skipped because of them) run
//! again, as on GitHub.

use crate::trigger::{create_runs, Trigger, TriggerError};
use crate::Host;
use mobius_core::{Conclusion, Status};
use mobius_store::{Run, StoreError};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Why a run cannot be run again.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    #[error("run {id} is still {status}; cancel it first")]
    NotCompleted { id: i64, status: Status },
    #[error("run {0} has no failed jobs to re-run")]
    NothingFailed(i64),
    #[error("the project was removed")]
    ProjectGone,
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queues the next attempt of `run` for `actor`.
pub async fn rerun(app: &Arc<dyn Host>, run: &Run, actor: &str, failed_only: bool) -> Result<Vec<Run>, RerunError> {
    if run.status != Status::Completed {
        return Err(RerunError::NotCompleted { id: run.id, status: run.status });
    }
    let reuse = if failed_only { succeeded_jobs(&**app, run).await? } else { Map::new() };
    let project = app.store().project_by_id(run.project_id).await?.ok_or(RerunError::ProjectGone)?;
    let mut trigger = Trigger::new(&run.event, &run.ref_name, &run.head_sha, actor);
    trigger.workflow = Some(run.workflow.clone());
    trigger.payload = serde_json::from_str(&run.payload).ok();
    trigger.inputs = serde_json::from_str(&run.inputs).unwrap_or_default();
    trigger.rerun_of = Some(run.clone());
    trigger.reuse = reuse;
    Ok(create_runs(app, &project, trigger).await?)
}

/// The top-level jobs of a run whose every row (matrix leg, called job) succeeded, with
/// their merged outputs; an error when nothing failed.
async fn succeeded_jobs(app: &dyn Host, run: &Run) -> Result<Map<String, Value>, RerunError> {
    let rows = app.store().jobs(run.id).await?;
    let mut by_job: std::collections::BTreeMap<String, Vec<&mobius_store::JobRow>> = Default::default();
    for row in &rows {
        // Rows are named by job id, with ` (matrix values)` or ` / called job` after it.
        let id = row.name.split([' ']).next().unwrap_or(&row.name).to_string();
        by_job.entry(id).or_default().push(row);
    }
    let mut reuse = Map::new();
    for (id, rows) in &by_job {
        if rows.iter().all(|r| r.conclusion == Some(Conclusion::Success)) {
            let mut outputs = Map::new();
            for row in rows {
                if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(&row.outputs) {
                    outputs.extend(o);
                }
            }
            reuse.insert(id.clone(), json!({"conclusion": "success", "outputs": outputs}));
        }
    }
    if run.conclusion == Some(Conclusion::Success) || reuse.len() == by_job.len() && !by_job.is_empty() {
        return Err(RerunError::NothingFailed(run.id));
    }
    Ok(reuse)
}
