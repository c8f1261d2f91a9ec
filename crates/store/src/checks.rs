//! What a run says besides its jobs' conclusions: the server's checks of a run (its
//! `mobius.yaml`) and annotations raised by steps or by a check, as GitHub's check runs.

use crate::{now_ms, Result, Store};
use mobius_core::{Annotation, AnnotationLevel, Conclusion};
use serde::Serialize;
use sqlx::Row;

/// At most this many annotations are kept per job (or check), as GitHub keeps 50.
pub const ANNOTATIONS_PER_SOURCE: i64 = 50;
/// Annotation texts are cut to this many bytes.
pub const ANNOTATION_TEXT_BYTES: usize = 4096;

/// A check the server made of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunCheck {
    pub name: String,
    pub conclusion: Conclusion,
    pub summary: String,
    pub created_at: i64,
}

/// An annotation kept with its run: from a job's step, or from a check (`job` empty).
#[derive(Debug, Clone, Serialize)]
pub struct RunAnnotation {
    pub job: String,
    /// The step's name, or the check's.
    pub source: String,
    #[serde(flatten)]
    pub annotation: Annotation,
}

fn cut(text: &str) -> &str {
    if text.len() <= ANNOTATION_TEXT_BYTES {
        return text;
    }
    let mut end = ANNOTATION_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One annotation row, texts cut to [`ANNOTATION_TEXT_BYTES`].
async fn insert_annotation(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    run_id: i64,
    job: &str,
    source: &str,
    a: &Annotation,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO annotations (run_id, job, source, level, title, message, file, line, col, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(run_id)
    .bind(job)
    .bind(source)
    .bind(a.level.as_str())
    .bind(a.title.as_deref().map(cut))
    .bind(cut(&a.message))
    .bind(a.file.as_deref().map(cut))
    .bind(a.line.and_then(|l| i64::try_from(l).ok()))
    .bind(a.col.and_then(|c| i64::try_from(c).ok()))
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Records an annotation; beyond [`ANNOTATIONS_PER_SOURCE`] for one job or check it is
    /// dropped (returns false), so a step printing errors in a loop cannot fill the store.
    pub async fn add_annotation(&self, run_id: i64, job: &str, source: &str, a: &Annotation) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let (key, key_value) = if job.is_empty() { ("source", source) } else { ("job", job) };
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM annotations WHERE run_id = $1 AND job = $2 AND {key} = $3"
        ))
        .bind(run_id)
        .bind(job)
        .bind(key_value)
        .fetch_one(&mut *tx)
        .await?;
        if count >= ANNOTATIONS_PER_SOURCE {
            return Ok(false);
        }
        insert_annotation(&mut tx, run_id, job, source, a, now_ms()).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A run's annotations, in the order they were raised.
    pub async fn annotations(&self, run_id: i64) -> Result<Vec<RunAnnotation>> {
        let rows = sqlx::query(
            "SELECT job, source, level, title, message, file, line, col FROM annotations
             WHERE run_id = $1 ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let level: String = r.try_get("level")?;
                let line: Option<i64> = r.try_get("line")?;
                let col: Option<i64> = r.try_get("col")?;
                Ok(RunAnnotation {
                    job: r.try_get("job")?,
                    source: r.try_get("source")?,
                    annotation: Annotation {
                        level: AnnotationLevel::parse(&level).unwrap_or(AnnotationLevel::Error),
                        message: r.try_get("message")?,
                        title: r.try_get("title")?,
                        file: r.try_get("file")?,
                        line: line.and_then(|l| u64::try_from(l).ok()),
                        col: col.and_then(|c| u64::try_from(c).ok()),
                    },
                })
            })
            .collect()
    }

    /// Records a check of a run with its annotations, replacing an earlier result of the
    /// same check (a re-evaluation after a restart writes it once).
    pub async fn set_check(
        &self,
        run_id: i64,
        name: &str,
        result: Conclusion,
        summary: &str,
        annotations: &[Annotation],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM run_checks WHERE run_id = $1 AND name = $2")
            .bind(run_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM annotations WHERE run_id = $1 AND job = '' AND source = $2")
            .bind(run_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO run_checks (run_id, name, conclusion, summary, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(run_id)
        .bind(name)
        .bind(result.as_str())
        .bind(cut(summary))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for a in annotations.iter().take(ANNOTATIONS_PER_SOURCE as usize) {
            insert_annotation(&mut tx, run_id, "", name, a, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A run's checks, by name.
    pub async fn checks(&self, run_id: i64) -> Result<Vec<RunCheck>> {
        let rows =
            sqlx::query("SELECT name, conclusion, summary, created_at FROM run_checks WHERE run_id = $1 ORDER BY name")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let stored: String = r.try_get("conclusion")?;
                Ok(RunCheck {
                    name: r.try_get("name")?,
                    conclusion: Conclusion::parse(&stored).unwrap_or(Conclusion::Failure),
                    summary: r.try_get("summary")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
