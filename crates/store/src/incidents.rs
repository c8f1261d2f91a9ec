//! Incidents and their timelines: opened when an alert group fires, escalated level by
//! level until acknowledged, closed when the group resolves or someone resolves it.

use crate::{now_ms, EventFilter, NewEvent, Result, Store, StoreError};
use mobius_core::{EventKind, IncidentEventKind, IncidentFilter, IncidentStatus};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub group_key: String,
    pub title: String,
    pub status: IncidentStatus,
    pub receiver: String,
    /// The alert group's labels.
    pub labels: serde_json::Value,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// The last rollout of the service and environment before the alert started.
    pub rollout_id: Option<i64>,
    pub policy: Option<String>,
    /// The next escalation level to page (0 before the first).
    pub level: i64,
    /// How many times the policy's levels have run through.
    pub rounds: i64,
    pub next_escalation_at: Option<i64>,
    pub opened_at: i64,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    /// Resolved minus opened, in milliseconds (DORA's time to restore).
    pub time_to_restore_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentEvent {
    pub id: i64,
    pub incident_id: i64,
    pub kind: IncidentEventKind,
    pub actor: String,
    pub message: String,
    pub at: i64,
}

/// What opening an incident records.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub group_key: String,
    pub title: String,
    pub receiver: String,
    pub labels: serde_json::Value,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub rollout_id: Option<i64>,
    pub policy: Option<String>,
    pub next_escalation_at: Option<i64>,
    pub opened_at: i64,
}

const COLUMNS: &str = "id, group_key, title, status, receiver, labels, service, environment, rollout_id, policy, \
     level, rounds, next_escalation_at, opened_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by";

fn incident(row: &AnyRow) -> Result<Incident> {
    let labels: String = row.try_get("labels")?;
    let opened_at: i64 = row.try_get("opened_at")?;
    let resolved_at: Option<i64> = row.try_get("resolved_at")?;
    Ok(Incident {
        id: row.try_get("id")?,
        group_key: row.try_get("group_key")?,
        title: row.try_get("title")?,
        status: crate::state_of(row, "incidents", "status", IncidentStatus::parse)?,
        receiver: row.try_get("receiver")?,
        labels: serde_json::from_str(&labels).unwrap_or(serde_json::Value::Null),
        service: row.try_get("service")?,
        environment: row.try_get("environment")?,
        rollout_id: row.try_get("rollout_id")?,
        policy: row.try_get("policy")?,
        level: row.try_get("level")?,
        rounds: row.try_get("rounds")?,
        next_escalation_at: row.try_get("next_escalation_at")?,
        opened_at,
        acknowledged_at: row.try_get("acknowledged_at")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        resolved_at,
        resolved_by: row.try_get("resolved_by")?,
        time_to_restore_ms: resolved_at.map(|r| r - opened_at),
    })
}

impl Store {
    /// Opens an incident for an alert group unless one is unresolved for it; returns the
    /// incident and whether it is new.
    pub async fn open_incident(&self, new: &NewIncident) -> Result<(Incident, bool)> {
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM incidents WHERE group_key = $1 AND resolved_at IS NULL ORDER BY id DESC LIMIT 1"
        ))
        .bind(&new.group_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            tx.commit().await?;
            return Ok((incident(&row)?, false));
        }
        let row = sqlx::query(
            "INSERT INTO incidents (group_key, title, status, receiver, labels, service, environment, rollout_id,
                 policy, level, rounds, next_escalation_at, opened_at)
             VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, 0, 0, $9, $10) RETURNING id",
        )
        .bind(&new.group_key)
        .bind(&new.title)
        .bind(&new.receiver)
        .bind(new.labels.to_string())
        .bind(&new.service)
        .bind(&new.environment)
        .bind(new.rollout_id)
        .bind(&new.policy)
        .bind(new.next_escalation_at)
        .bind(new.opened_at)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        let event =
            incident_event(id, new.environment.as_deref(), IncidentEventKind::Opened, "alertmanager", &new.title)
                .data(serde_json::json!({"message": new.title, "service": new.service, "labels": new.labels}));
        let last = self.append_in(&mut tx, &[event]).await?;
        tx.commit().await?;
        self.appended(last);
        let opened = self
            .incident(id)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("incident {id} vanished after it was written")))?;
        Ok((opened, true))
    }

    pub async fn incident(&self, id: i64) -> Result<Option<Incident>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM incidents WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(incident).transpose()
    }

    /// The unresolved incident of an alert group.
    pub async fn open_incident_of(&self, group_key: &str) -> Result<Option<Incident>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM incidents WHERE group_key = $1 AND resolved_at IS NULL ORDER BY id DESC LIMIT 1"
        ))
        .bind(group_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(incident).transpose()
    }

    /// Incidents newest first, narrowed by `filter`.
    pub async fn incidents(&self, filter: IncidentFilter, limit: i64) -> Result<Vec<Incident>> {
        let clause = match filter {
            IncidentFilter::Unresolved => " WHERE resolved_at IS NULL",
            IncidentFilter::Only(_) => " WHERE status = $1",
            IncidentFilter::All => "",
        };
        let sql = format!("SELECT {COLUMNS} FROM incidents{clause} ORDER BY id DESC LIMIT {}", limit.clamp(1, 1000));
        let mut query = sqlx::query(&sql);
        if let IncidentFilter::Only(status) = filter {
            query = query.bind(status.as_str());
        }
        query.fetch_all(&self.pool).await?.iter().map(incident).collect()
    }

    /// Incidents whose next escalation is due at `now`.
    pub async fn due_escalations(&self, now: i64) -> Result<Vec<Incident>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM incidents WHERE next_escalation_at IS NOT NULL AND next_escalation_at <= $1
                 AND status = 'open' ORDER BY next_escalation_at"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(incident)
        .collect()
    }

    /// Moves an open incident to its next level; false when it was acknowledged or
    /// resolved meanwhile (nothing is paged then).
    pub async fn advance_escalation(
        &self,
        id: i64,
        from_level: i64,
        level: i64,
        rounds: i64,
        next: Option<i64>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE incidents SET level = $1, rounds = $2, next_escalation_at = $3
             WHERE id = $4 AND status = 'open' AND level = $5",
        )
        .bind(level)
        .bind(rounds)
        .bind(next)
        .bind(id)
        .bind(from_level)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Acknowledges an open incident, which stops its escalation; false when it was
    /// not open.
    pub async fn acknowledge_incident(&self, id: i64, actor: &str) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE incidents SET status = 'acknowledged', acknowledged_at = $1, acknowledged_by = $2,
                 next_escalation_at = NULL WHERE id = $3 AND status = 'open'",
        )
        .bind(now)
        .bind(actor)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let last = if done.rows_affected() == 1 {
            Some(
                self.incident_event_in(&mut tx, id, IncidentEventKind::Acknowledged, actor, "escalation stopped")
                    .await?,
            )
        } else {
            None
        };
        tx.commit().await?;
        if let Some(last) = last {
            self.appended(last);
        }
        Ok(done.rows_affected() == 1)
    }

    /// Resolves an unresolved incident; false when it was already resolved.
    pub async fn resolve_incident(&self, id: i64, actor: &str, message: &str) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE incidents SET status = 'resolved', resolved_at = $1, resolved_by = $2, next_escalation_at = NULL
             WHERE id = $3 AND resolved_at IS NULL",
        )
        .bind(now)
        .bind(actor)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let last = if done.rows_affected() == 1 {
            Some(self.incident_event_in(&mut tx, id, IncidentEventKind::Resolved, actor, message).await?)
        } else {
            None
        };
        tx.commit().await?;
        if let Some(last) = last {
            self.appended(last);
        }
        Ok(done.rows_affected() == 1)
    }

    /// Appends to an incident's timeline inside a writing transaction.
    async fn incident_event_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: i64,
        kind: IncidentEventKind,
        actor: &str,
        message: &str,
    ) -> Result<i64> {
        let environment: Option<String> =
            sqlx::query_scalar("SELECT environment FROM incidents WHERE id = $1").bind(id).fetch_one(&mut **tx).await?;
        self.append_in(tx, &[incident_event(id, environment.as_deref(), kind, actor, message)]).await
    }

    pub async fn add_incident_event(&self, id: i64, kind: IncidentEventKind, actor: &str, message: &str) -> Result<()> {
        self.add_incident_event_data(id, kind, actor, serde_json::json!({ "message": message })).await
    }

    /// Appends to an incident's timeline with more than its message: `data` holds
    /// `message` (what the timeline shows) and whatever else the entry records.
    pub async fn add_incident_event_data(
        &self,
        id: i64,
        kind: IncidentEventKind,
        actor: &str,
        data: serde_json::Value,
    ) -> Result<()> {
        let environment = self.incident(id).await?.and_then(|i| i.environment);
        self.append(incident_event(id, environment.as_deref(), kind, actor, "").data(data)).await?;
        Ok(())
    }

    /// An incident's timeline, oldest first (the event log's `incident.*` entries).
    pub async fn incident_events(&self, id: i64) -> Result<Vec<IncidentEvent>> {
        let filter = EventFilter {
            incident: Some(id),
            kinds: IncidentEventKind::ALL.iter().map(|k| EventKind::from(*k)).collect(),
            limit: crate::MAX_EVENT_PAGE,
            ..Default::default()
        };
        let events = self.events(&filter).await?;
        Ok(events
            .into_iter()
            .filter_map(|e| {
                Some(IncidentEvent {
                    id: e.id,
                    incident_id: e.refs.incident?,
                    kind: e.kind.incident_kind()?,
                    message: e.data().get("message").and_then(|m| m.as_str()).unwrap_or_default().to_string(),
                    actor: e.actor,
                    at: e.at,
                })
            })
            .collect())
    }
}

/// The log entry of an incident's timeline.
pub fn incident_event(
    id: i64,
    environment: Option<&str>,
    kind: IncidentEventKind,
    actor: &str,
    message: &str,
) -> NewEvent {
    let event = NewEvent::new(kind.into(), actor).incident(id).data(serde_json::json!({ "message": message }));
    match environment {
        Some(environment) => event.environment(environment),
        None => event,
    }
}
