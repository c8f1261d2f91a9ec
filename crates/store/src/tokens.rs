//! API tokens: stored as SHA-256 hashes with a role, an optional project, expiry and revocation.

use crate::{now_ms, NewEvent, Result, Store, Token};
use sqlx::any::AnyRow;
use sqlx::Row;

fn token(row: &AnyRow) -> Result<Token> {
    Ok(Token {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        project_id: row.try_get("project_id")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, role, project_id, created_by, created_at, expires_at, revoked_at";

impl Store {
    /// Stores a token with its `event` (whose target becomes `token/ID`).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_token(
        &self,
        name: &str,
        hash: &str,
        role: &str,
        project_id: Option<i64>,
        created_by: &str,
        expires_at: Option<i64>,
        event: NewEvent,
    ) -> Result<Token> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO tokens (name, hash, role, project_id, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(name)
        .bind(hash)
        .bind(role)
        .bind(project_id)
        .bind(created_by)
        .bind(now_ms())
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await?;
        let token = token(&row)?;
        let event = NewEvent { target: Some(format!("token/{}", token.id)), ..event.token(token.id) };
        self.commit_with(tx, &[event]).await?;
        Ok(token)
    }

    /// The live token with this hash: not revoked, not expired.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<Token>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND revoked_at IS NULL
             AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token).transpose()
    }

    pub async fn tokens(&self) -> Result<Vec<Token>> {
        let rows =
            sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id")).fetch_all(&self.pool).await?;
        rows.iter().map(token).collect()
    }

    pub async fn token_count(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tokens").fetch_one(&self.pool).await?;
        Ok(n)
    }

    /// Revokes a token; whether a live one was revoked.
    pub async fn revoke_token(&self, id: i64, event: NewEvent) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.commit_with(tx, &[event.token(id)]).await?;
        Ok(true)
    }
}
