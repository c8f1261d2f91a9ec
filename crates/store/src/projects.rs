//! Projects, the refs last seen in their repositories, their secrets and variables, and the audit log.

use crate::{now_ms, AuditEntry, NewEvent, Project, Result, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

fn project(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        repo: row.try_get("repo")?,
        branch: row.try_get("branch")?,
        poll_interval_ms: row.try_get("poll_interval_ms")?,
        created_at: row.try_get("created_at")?,
        webhook_secret: row.try_get("webhook_secret")?,
        executor_image: row.try_get("executor_image")?,
    })
}

const PROJECT_COLUMNS: &str = "id, name, repo, branch, poll_interval_ms, created_at, webhook_secret, executor_image";

impl Store {
    #[allow(clippy::too_many_arguments)] // reason: the columns of one row, kept explicit
    pub async fn create_project(
        &self,
        name: &str,
        repo: &str,
        branch: &str,
        webhook_secret: &[u8],
        poll_interval_ms: i64,
        executor_image: Option<&str>,
        event: NewEvent,
    ) -> Result<Project> {
        let existing = self.project_by_name(name).await?;
        if existing.is_some() {
            return Err(StoreError::Conflict(format!("a project named '{name}' already exists")));
        }
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO projects (name, repo, branch, webhook_secret, poll_interval_ms, created_at, executor_image)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {PROJECT_COLUMNS}"
        ))
        .bind(name)
        .bind(repo)
        .bind(branch)
        .bind(webhook_secret.to_vec())
        .bind(poll_interval_ms)
        .bind(now_ms())
        .bind(executor_image)
        .fetch_one(&mut *tx)
        .await?;
        self.commit_with(tx, &[event.project(name)]).await?;
        project(&row)
    }

    pub async fn projects(&self) -> Result<Vec<Project>> {
        let rows =
            sqlx::query(&format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name")).fetch_all(&self.pool).await?;
        rows.iter().map(project).collect()
    }

    pub async fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(project).transpose()
    }

    pub async fn project_by_id(&self, id: i64) -> Result<Option<Project>> {
        let row = sqlx::query(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(project).transpose()
    }

    /// The refs last seen in the project's repository: `(name, sha)`.
    pub async fn refs(&self, project_id: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, sha FROM refs WHERE project_id = $1 ORDER BY name")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("sha")?))).collect()
    }

    /// Records a ref's new position (`None` when it was deleted), with the event that
    /// says so when one is given (`push.received`).
    pub async fn set_ref(&self, project_id: i64, name: &str, sha: Option<&str>, event: Option<NewEvent>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM refs WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if let Some(sha) = sha {
            sqlx::query("INSERT INTO refs (project_id, name, sha) VALUES ($1, $2, $3)")
                .bind(project_id)
                .bind(name)
                .bind(sha)
                .execute(&mut *tx)
                .await?;
        }
        self.commit_with(tx, event.as_slice()).await
    }

    /// Stores a sealed secret value (see [`crate::MasterKey::seal`]).
    pub async fn set_secret(&self, project_id: i64, name: &str, sealed: &[u8], event: NewEvent) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM secrets WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO secrets (project_id, name, sealed, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(project_id)
            .bind(name)
            .bind(sealed.to_vec())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        self.commit_with(tx, &[event]).await
    }

    /// Sealed secrets of a project: `(name, sealed, updated_at)`.
    pub async fn secrets(&self, project_id: i64) -> Result<Vec<(String, Vec<u8>, i64)>> {
        let rows = sqlx::query("SELECT name, sealed, updated_at FROM secrets WHERE project_id = $1 ORDER BY name")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("sealed")?, r.try_get("updated_at")?))).collect()
    }

    /// Removes a secret; whether it existed.
    pub async fn delete_secret(&self, project_id: i64, name: &str, event: NewEvent) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM secrets WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.commit_with(tx, &[event]).await?;
        Ok(true)
    }

    pub async fn set_variable(&self, project_id: i64, name: &str, value: &str, event: NewEvent) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO variables (project_id, name, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (project_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(project_id)
        .bind(name)
        .bind(value)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        self.commit_with(tx, &[event]).await
    }

    /// Variables of a project: `(name, value)`.
    pub async fn variables(&self, project_id: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, value FROM variables WHERE project_id = $1 ORDER BY name")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("value")?))).collect()
    }

    /// Records a webhook delivery id for a project; `false` when it was recorded
    /// before (a replay). Deliveries older than 30 days are forgotten.
    pub async fn record_delivery(&self, project_id: i64, delivery: &str) -> Result<bool> {
        let now = now_ms();
        sqlx::query("DELETE FROM webhook_deliveries WHERE received_at < $1")
            .bind(now - 30 * 86_400_000)
            .execute(&self.pool)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries (project_id, delivery, received_at) VALUES ($1, $2, $3)
             ON CONFLICT (project_id, delivery) DO NOTHING",
        )
        .bind(project_id)
        .bind(delivery)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Forgets a delivery id, so a redelivery of it is acted on (its first try failed).
    pub async fn forget_delivery(&self, project_id: i64, delivery: &str) -> Result<()> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE project_id = $1 AND delivery = $2")
            .bind(project_id)
            .bind(delivery)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest audit entries first (events a request caused or was refused), at most
    /// `limit`, older than `before` when given.
    pub async fn audit_log(&self, limit: i64, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        let filter = crate::EventFilter { audited: true, limit, ..Default::default() };
        let events = self.events_newest(&filter, before).await?;
        Ok(events
            .into_iter()
            .map(|e| AuditEntry {
                detail: e.data(),
                id: e.id,
                at: e.at,
                actor: e.actor,
                action: e.kind,
                target: e.target.unwrap_or_default(),
                remote: e.remote.unwrap_or_default(),
            })
            .collect())
    }
}
