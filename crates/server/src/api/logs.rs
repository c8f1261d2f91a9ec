//! Step logs: the whole text of a run (or one job), and a live follow over Server-Sent
//! Events that reads each step's log as it grows and ends when the run completes.

use super::runs::find_run;
use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream::Stream;
use mobius_core::Status;
use mobius_store::{JobRow, StepRow};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// A job name or id.
    job: Option<String>,
}

fn job_matches(job: &JobRow, wanted: Option<&str>) -> bool {
    wanted.is_none_or(|w| job.name == w || job.id.to_string() == w)
}

/// Reads a step's log from `offset`: from the blob store once stored, else from the
/// file the runner is writing.
fn read_log(app: &App, step: &StepRow, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = match &step.log_blob {
        Some(digest) => app.blobs.open(digest)?,
        None if !step.spool.is_empty() => std::fs::File::open(&step.spool)?,
        None => return Ok(Vec::new()),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    file.read_to_end(&mut out)?;
    Ok(out)
}

async fn selected_jobs(app: &App, run_id: i64, wanted: Option<&str>) -> ApiResult<Vec<JobRow>> {
    let jobs: Vec<JobRow> = app.store.jobs(run_id).await?.into_iter().filter(|j| job_matches(j, wanted)).collect();
    Ok(jobs)
}

/// `GET /runs/{id}/logs`: every line as `job<TAB>step<TAB>line`, as `gh run view --log` prints.
pub async fn text(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> ApiResult<impl IntoResponse> {
    let run = find_run(&app, &caller, id, Role::Viewer).await?;
    let jobs = selected_jobs(&app, run.id, q.job.as_deref()).await?;
    if jobs.is_empty() && q.job.is_some() {
        return Err(ApiError::not_found(format!("run {id} has no job '{}'", q.job.unwrap_or_default())));
    }
    let mut out = String::new();
    for job in jobs {
        for step in app.store.steps(job.id).await? {
            let bytes = read_log(&app, &step, 0).unwrap_or_default();
            for line in String::from_utf8_lossy(&bytes).lines() {
                out.push_str(&format!("{}\t{}\t{line}\n", job.name, step.name));
            }
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out))
}

/// `GET /runs/{id}/logs/stream`: SSE events `log` (`{job, step, lines}`), `step`
/// (status changes) and finally `end` (`{status, conclusion}`).
pub async fn stream(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    let run = find_run(&app, &caller, id, Role::Viewer).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(follow(app, run.id, q.job, tx));
    let stream = futures_util::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Sends what is new in each step's log until the run completes and everything was sent.
async fn follow(app: Arc<App>, run_id: i64, job: Option<String>, tx: tokio::sync::mpsc::Sender<Event>) {
    // Bytes sent per step, and the last status sent per step.
    let mut sent: HashMap<i64, u64> = HashMap::new();
    let mut statuses: HashMap<i64, mobius_core::State> = HashMap::new();
    loop {
        let mut watch = app.watch_run(run_id);
        let Ok(Some(run)) = app.store.run(run_id).await else { return };
        let Ok(jobs) = selected_jobs(&app, run_id, job.as_deref()).await else { return };
        for job in &jobs {
            let Ok(steps) = app.store.steps(job.id).await else { return };
            for step in steps {
                let offset = sent.get(&step.id).copied().unwrap_or(0);
                let bytes = read_log(&app, &step, offset).unwrap_or_default();
                // Only whole lines while the step runs; the rest once it is complete.
                let complete = step.status == Status::Completed;
                let upto =
                    if complete { bytes.len() } else { bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) };
                if upto > 0 {
                    let lines = String::from_utf8_lossy(&bytes[..upto]).to_string();
                    let data = json!({"job": job.name, "job_id": job.id, "step": step.name, "number": step.number, "lines": lines});
                    if tx.send(Event::default().event("log").data(data.to_string())).await.is_err() {
                        return;
                    }
                    sent.insert(step.id, offset + upto as u64);
                }
                let status = mobius_core::State::of(step.status, step.conclusion);
                if statuses.get(&step.id) != Some(&status) {
                    let data = json!({"job": job.name, "job_id": job.id, "step": step.name, "number": step.number,
                        "status": step.status, "conclusion": step.conclusion});
                    if tx.send(Event::default().event("step").data(data.to_string())).await.is_err() {
                        return;
                    }
                    statuses.insert(step.id, status);
                }
            }
        }
        if run.status == Status::Completed {
            let data = json!({"status": run.status, "conclusion": run.conclusion, "reason": run.reason});
            let _ = tx.send(Event::default().event("end").data(data.to_string())).await;
            return;
        }
        // Wake on progress of a live run, or poll (queued runs, or a run on another server).
        match watch.as_mut() {
            Some(w) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), w.changed()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(500)).await,
        }
        if tx.is_closed() {
            return;
        }
    }
}
