//! Runs, their jobs and steps, artifacts and test reports.

use crate::{now_ms, ArtifactFile, JobRow, NewEvent, NewRun, Result, Run, RunCounts, StepRow, Store, TestReport};
use mobius_core::{Conclusion, EventKind, Status};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A stored status, parsed (the stored names are GitHub's).
fn status_of(row: &AnyRow, table: &'static str) -> Result<Status> {
    crate::state_of(row, table, "status", Status::parse)
}

/// A stored conclusion, parsed; none while the row is not completed.
fn conclusion_of(row: &AnyRow, table: &'static str) -> Result<Option<Conclusion>> {
    let value: Option<String> = row.try_get("conclusion")?;
    value
        .map(|value| {
            Conclusion::parse(&value).ok_or(crate::StoreError::UnknownState { table, column: "conclusion", value })
        })
        .transpose()
}

fn run(row: &AnyRow) -> Result<Run> {
    Ok(Run {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        project: row.try_get("project")?,
        number: row.try_get("number")?,
        attempt: row.try_get("attempt")?,
        workflow: row.try_get("workflow")?,
        workflow_name: row.try_get("workflow_name")?,
        event: row.try_get("event")?,
        ref_name: row.try_get("ref_name")?,
        head_sha: row.try_get("head_sha")?,
        actor: row.try_get("actor")?,
        author: row.try_get("author")?,
        message: row.try_get("message")?,
        payload: row.try_get("payload")?,
        inputs: row.try_get("inputs")?,
        status: status_of(row, "runs")?,
        conclusion: conclusion_of(row, "runs")?,
        reason: row.try_get("reason")?,
        concurrency_group: row.try_get("concurrency_group")?,
        cancel_in_progress: row.try_get::<i64, _>("cancel_in_progress")? != 0,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        rerun_of: row.try_get("rerun_of")?,
        reuse: row.try_get("reuse")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

const RUN_SELECT: &str = "SELECT r.id, r.project_id, p.name AS project, r.number, r.attempt, r.workflow,
    r.workflow_name, r.event, r.ref_name, r.head_sha, r.actor, r.author, r.message, r.payload, r.inputs,
    r.status, r.conclusion, r.reason, r.concurrency_group, r.cancel_in_progress, r.cancel_requested,
    r.rerun_of, r.reuse, r.created_at, r.started_at, r.completed_at FROM runs r JOIN projects p ON p.id = r.project_id";

fn job(row: &AnyRow) -> Result<JobRow> {
    Ok(JobRow {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        name: row.try_get("name")?,
        status: status_of(row, "jobs")?,
        conclusion: conclusion_of(row, "jobs")?,
        reason: row.try_get("reason")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        outputs: row.try_get("outputs")?,
    })
}

const JOB_COLUMNS: &str = "id, run_id, name, status, conclusion, reason, started_at, completed_at, outputs";

fn step(row: &AnyRow) -> Result<StepRow> {
    Ok(StepRow {
        id: row.try_get("id")?,
        job_id: row.try_get("job_id")?,
        number: row.try_get("number")?,
        name: row.try_get("name")?,
        status: status_of(row, "steps")?,
        conclusion: conclusion_of(row, "steps")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        spool: row.try_get("spool")?,
        log_blob: row.try_get("log_blob")?,
        log_size: row.try_get("log_size")?,
    })
}

const STEP_COLUMNS: &str =
    "id, job_id, number, name, status, conclusion, started_at, completed_at, spool, log_blob, log_size";

/// Which runs a listing wants.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub project_id: Option<i64>,
    pub status: Option<Status>,
    pub conclusion: Option<Conclusion>,
    /// The workflow file's path (`.github/workflows/ci.yml`).
    pub workflow: Option<String>,
    /// The full ref (`refs/heads/main`).
    pub ref_name: Option<String>,
    pub event: Option<String>,
    pub actor: Option<String>,
    /// Only runs with a smaller id (paging backwards).
    pub before: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// Inserts a run, numbered after the project's last one (a re-run keeps its number).
    pub async fn create_run(&self, new: &NewRun) -> Result<Run> {
        let mut tx = self.begin_write().await?;
        let number: i64 = match new.rerun_of {
            Some(original) => {
                sqlx::query_scalar("SELECT number FROM runs WHERE id = $1").bind(original).fetch_one(&mut *tx).await?
            }
            None => {
                // As GitHub's run_number: counted per workflow file.
                sqlx::query_scalar(
                    "SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE project_id = $1 AND workflow = $2",
                )
                .bind(new.project_id)
                .bind(&new.workflow)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let now = now_ms();
        let (status, conclusion, reason, completed_at) = match &new.finished {
            Some((conclusion, reason)) => {
                (Status::Completed, Some(conclusion.as_str()), Some(reason.clone()), Some(now))
            }
            None => (Status::Queued, None, None, None),
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (project_id, number, attempt, workflow, workflow_name, event, ref_name, head_sha,
               actor, author, message, payload, inputs, status, conclusion, reason, concurrency_group,
               cancel_in_progress, cancel_requested, rerun_of, created_at, completed_at, reuse)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 0, $19, $20, $21, $22)
             RETURNING id",
        )
        .bind(new.project_id)
        .bind(number)
        .bind(new.attempt)
        .bind(&new.workflow)
        .bind(&new.workflow_name)
        .bind(&new.event)
        .bind(&new.ref_name)
        .bind(&new.head_sha)
        .bind(&new.actor)
        .bind(&new.author)
        .bind(&new.message)
        .bind(&new.payload)
        .bind(&new.inputs)
        .bind(status.as_str())
        .bind(conclusion)
        .bind(reason)
        .bind(new.concurrency_group.clone())
        .bind(i64::from(new.cancel_in_progress))
        .bind(new.rerun_of)
        .bind(now)
        .bind(completed_at)
        .bind(&new.reuse)
        .fetch_one(&mut *tx)
        .await?;
        let kind = if new.finished.is_some() { EventKind::RunCompleted } else { EventKind::RunQueued };
        let event = self.run_event_in(&mut tx, id, kind).await?;
        let last = self.append_in(&mut tx, &[event]).await?;
        tx.commit().await?;
        self.appended(last);
        self.run(id).await?.ok_or_else(|| crate::StoreError::Conflict(format!("run {id} vanished")))
    }

    pub async fn run(&self, id: i64) -> Result<Option<Run>> {
        let row = sqlx::query(&format!("{RUN_SELECT} WHERE r.id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(run).transpose()
    }

    /// Runs, newest first. Only the filters given appear in the query, so each can use
    /// its index (`runs_by_project`, `runs_by_status`).
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut conditions = vec!["r.id < $1".to_string()];
        if filter.project_id.is_some() {
            conditions.push(format!("r.project_id = ${}", conditions.len() + 1));
        }
        let status = filter.status.map(|s| s.as_str().to_string());
        let conclusion = filter.conclusion.map(|c| c.as_str().to_string());
        let text_filters = [
            ("r.status", &status),
            ("r.conclusion", &conclusion),
            ("r.workflow", &filter.workflow),
            ("r.ref_name", &filter.ref_name),
            ("r.event", &filter.event),
            ("r.actor", &filter.actor),
        ];
        for (column, value) in &text_filters {
            if value.is_some() {
                conditions.push(format!("{column} = ${}", conditions.len() + 1));
            }
        }
        let sql = format!(
            "{RUN_SELECT} WHERE {} ORDER BY r.id DESC LIMIT ${}",
            conditions.join(" AND "),
            conditions.len() + 1
        );
        let mut query = sqlx::query(&sql).bind(filter.before.unwrap_or(i64::MAX));
        if let Some(project) = filter.project_id {
            query = query.bind(project);
        }
        for value in text_filters.iter().filter_map(|(_, v)| v.as_ref()) {
            query = query.bind(value.clone());
        }
        let rows = query.bind(filter.limit).fetch_all(&self.pool).await?;
        rows.iter().map(run).collect()
    }

    /// The failed jobs of each of these runs, by run id (jobs in the order they started).
    pub async fn failed_jobs(&self, run_ids: &[i64]) -> Result<std::collections::HashMap<i64, Vec<String>>> {
        let mut out: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
        if run_ids.is_empty() {
            return Ok(out);
        }
        let placeholders: Vec<String> = (1..=run_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT run_id, name FROM jobs WHERE conclusion = 'failure' AND run_id IN ({}) ORDER BY id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in run_ids {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&self.pool).await? {
            out.entry(row.try_get("run_id")?).or_default().push(row.try_get("name")?);
        }
        Ok(out)
    }

    /// Runs not completed, oldest first.
    pub async fn unfinished_runs(&self) -> Result<Vec<Run>> {
        let rows = sqlx::query(&format!("{RUN_SELECT} WHERE r.status <> 'completed' ORDER BY r.id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run).collect()
    }

    /// Marks a queued run as started; false when it was no longer queued.
    pub async fn start_run(&self, id: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done =
            sqlx::query("UPDATE runs SET status = 'in_progress', started_at = $1 WHERE id = $2 AND status = 'queued'")
                .bind(now_ms())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        self.commit_run_event(tx, id, EventKind::RunStarted, done.rows_affected() > 0).await
    }

    /// Completes a run (once: a completed run keeps its first conclusion).
    pub async fn finish_run(&self, id: i64, conclusion: Conclusion, reason: Option<&str>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE runs SET status = 'completed', conclusion = $1, reason = $2, completed_at = $3
             WHERE id = $4 AND status <> 'completed'",
        )
        .bind(conclusion.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        self.commit_run_event(tx, id, EventKind::RunCompleted, done.rows_affected() > 0).await
    }

    /// Appends the run's event when `changed`, commits, and says whether it changed.
    async fn commit_run_event(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        id: i64,
        kind: EventKind,
        changed: bool,
    ) -> Result<bool> {
        let last = if changed {
            let event = self.run_event_in(&mut tx, id, kind).await?;
            Some(self.append_in(&mut tx, &[event]).await?)
        } else {
            None
        };
        tx.commit().await?;
        if let Some(last) = last {
            self.appended(last);
        }
        Ok(changed)
    }

    /// A run's event as the run now stands in the transaction.
    async fn run_event_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: i64,
        kind: EventKind,
    ) -> Result<NewEvent> {
        let row = sqlx::query(&format!("{RUN_SELECT} WHERE r.id = $1")).bind(id).fetch_one(&mut **tx).await?;
        let r = run(&row)?;
        let mut data = serde_json::json!({
            "workflow": r.workflow, "workflow_name": r.workflow_name, "number": r.number, "attempt": r.attempt,
            "event": r.event, "ref": r.ref_name, "head_sha": r.head_sha, "status": r.status,
        });
        if let Some(conclusion) = r.conclusion {
            data["conclusion"] = serde_json::json!(conclusion);
            data["reason"] = serde_json::json!(r.reason);
            data["created_at"] = serde_json::json!(r.created_at);
            data["started_at"] = serde_json::json!(r.started_at);
        }
        Ok(NewEvent::new(kind, r.actor).project(&r.project).run(id).data(data))
    }

    /// Records that the run should stop.
    pub async fn request_cancel(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn run_counts(&self) -> Result<RunCounts> {
        let rows = sqlx::query("SELECT status, conclusion, COUNT(*) AS n FROM runs GROUP BY status, conclusion")
            .fetch_all(&self.pool)
            .await?;
        let by_status = rows
            .iter()
            .map(|r| Ok((status_of(r, "runs")?, conclusion_of(r, "runs")?, r.try_get("n")?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(RunCounts { by_status })
    }

    /// Inserts a job; `at` is when it started (or was decided, for a skipped job).
    pub async fn create_job(&self, run_id: i64, name: &str, status: Status, at: i64) -> Result<i64> {
        let now = at;
        let id = sqlx::query_scalar(
            "INSERT INTO jobs (run_id, name, status, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(run_id)
        .bind(name)
        .bind(status.as_str())
        .bind((status == Status::InProgress).then_some(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Completes a job with its outputs (a JSON object).
    pub async fn finish_job(
        &self,
        job_id: i64,
        conclusion: Conclusion,
        reason: Option<&str>,
        outputs: &str,
        at: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'completed', conclusion = $1, reason = $2, completed_at = $3, outputs = $4
             WHERE id = $5 AND status <> 'completed'",
        )
        .bind(conclusion.as_str())
        .bind(reason)
        .bind(at)
        .bind(outputs)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        let mut last = None;
        if done.rows_affected() > 0 {
            let row = sqlx::query(
                "SELECT j.name, j.run_id, j.started_at, p.name AS project FROM jobs j JOIN runs r ON r.id = j.run_id
                 JOIN projects p ON p.id = r.project_id WHERE j.id = $1",
            )
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
            let project: String = row.try_get("project")?;
            let name: String = row.try_get("name")?;
            let started_at: Option<i64> = row.try_get("started_at")?;
            let event =
                job_completed(&project, row.try_get("run_id")?, job_id, &name, conclusion, reason, started_at, at);
            last = Some(self.append_in(&mut tx, &[event]).await?);
        }
        tx.commit().await?;
        if let Some(last) = last {
            self.appended(last);
        }
        Ok(())
    }

    pub async fn jobs(&self, run_id: i64) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = $1 ORDER BY id"))
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job).collect()
    }

    pub async fn job(&self, job_id: i64) -> Result<Option<JobRow>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job).transpose()
    }

    pub async fn create_step(&self, job_id: i64, number: i64, name: &str, spool: &str, at: i64) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO steps (job_id, number, name, status, started_at, spool, log_size)
             VALUES ($1, $2, $3, 'in_progress', $4, $5, 0) RETURNING id",
        )
        .bind(job_id)
        .bind(number)
        .bind(name)
        .bind(at)
        .bind(spool)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn finish_step(&self, step_id: i64, conclusion: Conclusion, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE steps SET status = 'completed', conclusion = $1, completed_at = $2
             WHERE id = $3 AND status <> 'completed'",
        )
        .bind(conclusion.as_str())
        .bind(at)
        .bind(step_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that a step's log now lives in the blob store.
    pub async fn set_step_log(&self, step_id: i64, blob: &str, size: i64) -> Result<()> {
        sqlx::query("UPDATE steps SET log_blob = $1, log_size = $2 WHERE id = $3")
            .bind(blob)
            .bind(size)
            .bind(step_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn steps(&self, job_id: i64) -> Result<Vec<StepRow>> {
        let rows = sqlx::query(&format!("SELECT {STEP_COLUMNS} FROM steps WHERE job_id = $1 ORDER BY number"))
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(step).collect()
    }

    /// Steps whose log has not reached the blob store (after a crash, or still running).
    pub async fn steps_without_log(&self, run_id: i64) -> Result<Vec<StepRow>> {
        let columns = STEP_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM steps s JOIN jobs j ON j.id = s.job_id WHERE j.run_id = $1 AND s.log_blob IS NULL"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(step).collect()
    }

    /// Puts a run that was started but never started a job (it waited for a job slot
    /// or a concurrency group) back in the queue, forgetting the jobs it decided to
    /// skip or reuse; `false` when a job had started, or it is no longer in progress.
    pub async fn requeue_unstarted_run(&self, run_id: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let started: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE run_id = $1 AND started_at IS NOT NULL")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        if started > 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM jobs WHERE run_id = $1").bind(run_id).execute(&mut *tx).await?;
        let moved = sqlx::query(
            "UPDATE runs SET status = 'queued', started_at = NULL WHERE id = $1 AND status = 'in_progress'",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(moved.rows_affected() == 1)
    }

    /// Completes every unfinished job and step of a run with this conclusion, each job
    /// with its `job.completed` event.
    pub async fn finish_open_jobs(&self, run_id: i64, conclusion: Conclusion, reason: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let open = sqlx::query(
            "SELECT j.id, j.name, j.started_at, p.name AS project FROM jobs j JOIN runs r ON r.id = j.run_id
             JOIN projects p ON p.id = r.project_id WHERE j.run_id = $1 AND j.status <> 'completed' ORDER BY j.id",
        )
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE steps SET status = 'completed', conclusion = $1, completed_at = $2
             WHERE status <> 'completed' AND job_id IN (SELECT id FROM jobs WHERE run_id = $3)",
        )
        .bind(conclusion.as_str())
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET status = 'completed', conclusion = $1, reason = $2, completed_at = $3
             WHERE run_id = $4 AND status <> 'completed'",
        )
        .bind(conclusion.as_str())
        .bind(reason)
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        let mut events = Vec::new();
        for row in &open {
            let project: String = row.try_get("project")?;
            events.push(job_completed(
                &project,
                run_id,
                row.try_get("id")?,
                &row.try_get::<String, _>("name")?,
                conclusion,
                Some(reason),
                row.try_get("started_at")?,
                now,
            ));
        }
        self.commit_with(tx, &events).await
    }

    pub async fn add_artifact(&self, run_id: i64, name: &str, path: &str, blob: &str, size: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO artifacts (run_id, name, path, blob, size, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(run_id)
        .bind(name)
        .bind(path)
        .bind(blob)
        .bind(size)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn artifacts(&self, run_id: i64) -> Result<Vec<ArtifactFile>> {
        let rows = sqlx::query(
            "SELECT id, run_id, name, path, blob, size, created_at FROM artifacts WHERE run_id = $1 ORDER BY name, path",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ArtifactFile {
                    id: r.try_get("id")?,
                    run_id: r.try_get("run_id")?,
                    name: r.try_get("name")?,
                    path: r.try_get("path")?,
                    blob: r.try_get("blob")?,
                    size: r.try_get("size")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)] // reason: one column each, named at the call site
    pub async fn add_test_report(
        &self,
        run_id: i64,
        job: &str,
        file: &str,
        counts: [i64; 4],
        cases: &serde_json::Value,
    ) -> Result<()> {
        let [tests, failures, errors, skipped] = counts;
        sqlx::query(
            "INSERT INTO test_reports (run_id, job, file, tests, failures, errors, skipped, cases)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(run_id)
        .bind(job)
        .bind(file)
        .bind(tests)
        .bind(failures)
        .bind(errors)
        .bind(skipped)
        .bind(cases.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn test_reports(&self, run_id: i64) -> Result<Vec<TestReport>> {
        let rows = sqlx::query(
            "SELECT id, run_id, job, file, tests, failures, errors, skipped, cases FROM test_reports
             WHERE run_id = $1 ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let cases: String = r.try_get("cases")?;
                Ok(TestReport {
                    id: r.try_get("id")?,
                    run_id: r.try_get("run_id")?,
                    job: r.try_get("job")?,
                    file: r.try_get("file")?,
                    tests: r.try_get("tests")?,
                    failures: r.try_get("failures")?,
                    errors: r.try_get("errors")?,
                    skipped: r.try_get("skipped")?,
                    cases: serde_json::from_str(&cases).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Blob digests of logs and artifacts of runs completed before `cutoff`, which retention drops.
    pub async fn expire_before(&self, cutoff: i64) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let mut blobs: Vec<String> = sqlx::query_scalar(
            "SELECT s.log_blob FROM steps s JOIN jobs j ON j.id = s.job_id JOIN runs r ON r.id = j.run_id
             WHERE r.completed_at < $1 AND s.log_blob IS NOT NULL",
        )
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let artifact_blobs: Vec<String> = sqlx::query_scalar(
            "SELECT a.blob FROM artifacts a JOIN runs r ON r.id = a.run_id WHERE r.completed_at < $1",
        )
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        blobs.extend(artifact_blobs);
        sqlx::query(
            "UPDATE steps SET log_blob = NULL, log_size = 0 WHERE log_blob IS NOT NULL AND job_id IN
             (SELECT j.id FROM jobs j JOIN runs r ON r.id = j.run_id WHERE r.completed_at < $1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM artifacts WHERE run_id IN (SELECT id FROM runs WHERE completed_at < $1)")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(blobs)
    }

    /// Whether any log or artifact still refers to this blob.
    pub async fn blob_in_use(&self, digest: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM steps WHERE log_blob = $1) + (SELECT COUNT(*) FROM artifacts WHERE blob = $2)",
        )
        .bind(digest)
        .bind(digest)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }
}

/// The `job.completed` event of a job.
#[allow(clippy::too_many_arguments)]
fn job_completed(
    project: &str,
    run_id: i64,
    job_id: i64,
    name: &str,
    conclusion: Conclusion,
    reason: Option<&str>,
    started_at: Option<i64>,
    completed_at: i64,
) -> NewEvent {
    NewEvent::new(EventKind::JobCompleted, "runner").project(project).run(run_id).job(job_id).data(serde_json::json!({
        "job": name, "conclusion": conclusion, "reason": reason, "started_at": started_at, "completed_at": completed_at,
    }))
}
