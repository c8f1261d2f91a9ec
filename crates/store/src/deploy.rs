//! Releases, rollouts and deploy events.

use crate::{now_ms, EventFilter, NewEvent, Result, Store, StoreError};
use mobius_core::{DeployEventKind, EventKind, Phase, StrategyKind};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// An immutable release of one service, made from a successful run.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub id: i64,
    pub project_id: i64,
    pub project: String,
    pub service: String,
    pub number: i64,
    pub version: String,
    pub run_id: i64,
    pub commit_sha: String,
    pub author: String,
    pub artifact: String,
    /// `sha256:` of the manifest (`sha256sum`-style lines, one per file, sorted by path).
    pub digest: String,
    pub manifest: String,
    /// The in-toto statement with its SLSA v1 provenance predicate.
    pub provenance: serde_json::Value,
    /// Commits since the previous release: `[{sha, author, message}]`.
    pub changelog: serde_json::Value,
    pub created_at: i64,
}

/// What a new release records.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub project_id: i64,
    pub service: String,
    pub run_id: i64,
    pub commit_sha: String,
    pub author: String,
    pub artifact: String,
    pub digest: String,
    pub manifest: String,
    pub changelog: serde_json::Value,
}

/// One rollout of a release to an environment.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    pub id: i64,
    pub project_id: i64,
    pub project: String,
    pub service: String,
    pub environment: String,
    pub release_id: i64,
    pub version: String,
    pub strategy: StrategyKind,
    pub phase: Phase,
    pub message: String,
    /// The controller's last status (weights, rates, step), as JSON.
    pub status: serde_json::Value,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// The service's newest release, when it is newer than the one this rollout ships.
    pub newer_version: Option<String>,
}

/// One event of a rollout's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct DeployEvent {
    pub id: i64,
    pub rollout_id: i64,
    pub project: String,
    pub service: String,
    pub environment: String,
    pub version: String,
    pub kind: DeployEventKind,
    pub actor: String,
    pub message: String,
    pub at: i64,
}

const RELEASE_COLUMNS: &str = "r.id, r.project_id, p.name AS project, r.service, r.number, r.version, r.run_id, \
     r.commit_sha, r.author, r.artifact, r.digest, r.manifest, r.provenance, r.changelog, r.created_at";

const ROLLOUT_COLUMNS: &str = "o.id, o.project_id, p.name AS project, o.service, o.environment, o.release_id, \
     r.version, o.strategy, o.phase, o.message, o.status, o.created_by, o.created_at, o.updated_at, o.finished_at, \
     (SELECT n.version FROM releases n WHERE n.project_id = o.project_id AND n.service = o.service \
        AND n.id > o.release_id ORDER BY n.id DESC LIMIT 1) AS newer_version";

fn json(row: &AnyRow, column: &str) -> Result<serde_json::Value> {
    let text: String = row.try_get(column)?;
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

fn release(row: &AnyRow) -> Result<Release> {
    Ok(Release {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        project: row.try_get("project")?,
        service: row.try_get("service")?,
        number: row.try_get("number")?,
        version: row.try_get("version")?,
        run_id: row.try_get("run_id")?,
        commit_sha: row.try_get("commit_sha")?,
        author: row.try_get("author")?,
        artifact: row.try_get("artifact")?,
        digest: row.try_get("digest")?,
        manifest: row.try_get("manifest")?,
        provenance: json(row, "provenance")?,
        changelog: json(row, "changelog")?,
        created_at: row.try_get("created_at")?,
    })
}

fn rollout(row: &AnyRow) -> Result<Rollout> {
    Ok(Rollout {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        project: row.try_get("project")?,
        service: row.try_get("service")?,
        environment: row.try_get("environment")?,
        release_id: row.try_get("release_id")?,
        version: row.try_get("version")?,
        strategy: crate::state_of(row, "rollouts", "strategy", StrategyKind::parse)?,
        phase: crate::state_of(row, "rollouts", "phase", Phase::parse)?,
        message: row.try_get("message")?,
        status: json(row, "status")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        newer_version: row.try_get("newer_version")?,
    })
}

/// Which rollouts to list.
#[derive(Debug, Clone, Default)]
pub struct RolloutFilter {
    pub project_id: Option<i64>,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// Only rollouts not in a final phase.
    pub active: bool,
    pub limit: i64,
}

impl Store {
    /// Records a release; its number and version (`v<number>`) follow the service's
    /// previous release. The provenance statement is built by `provenance(number, version)`.
    pub async fn create_release(
        &self,
        new: &NewRelease,
        provenance: impl FnOnce(i64, &str) -> serde_json::Value,
    ) -> Result<Release> {
        let mut tx = self.begin_write().await?;
        let previous: Option<i64> =
            sqlx::query("SELECT MAX(number) AS n FROM releases WHERE project_id = $1 AND service = $2")
                .bind(new.project_id)
                .bind(&new.service)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        let number = previous.unwrap_or(0) + 1;
        let version = format!("v{number}");
        let statement = provenance(number, &version);
        let row = sqlx::query(
            "INSERT INTO releases (project_id, service, number, version, run_id, commit_sha, author, artifact,
                 digest, manifest, provenance, changelog, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(new.project_id)
        .bind(&new.service)
        .bind(number)
        .bind(&version)
        .bind(new.run_id)
        .bind(&new.commit_sha)
        .bind(&new.author)
        .bind(&new.artifact)
        .bind(&new.digest)
        .bind(&new.manifest)
        .bind(statement.to_string())
        .bind(new.changelog.to_string())
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        let project: String = sqlx::query_scalar("SELECT name FROM projects WHERE id = $1")
            .bind(new.project_id)
            .fetch_one(&mut *tx)
            .await?;
        let event = NewEvent::new(EventKind::ReleaseCreated, "mobius")
            .project(&project)
            .release(id)
            .run(new.run_id)
            .data(serde_json::json!({"service": new.service, "version": version, "commit": new.commit_sha,
                               "digest": new.digest, "author": new.author}));
        self.commit_with(tx, &[event]).await?;
        self.release(id)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("release {id} vanished after it was written")))
    }

    pub async fn release(&self, id: i64) -> Result<Option<Release>> {
        let row = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases r JOIN projects p ON p.id = r.project_id WHERE r.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(release).transpose()
    }

    /// Releases newest first, of one project's service or of every project's service of that name.
    pub async fn releases(&self, project_id: Option<i64>, service: Option<&str>, limit: i64) -> Result<Vec<Release>> {
        let mut sql = format!("SELECT {RELEASE_COLUMNS} FROM releases r JOIN projects p ON p.id = r.project_id");
        let mut clauses = Vec::new();
        if project_id.is_some() {
            clauses.push(format!("r.project_id = ${}", clauses.len() + 1));
        }
        if service.is_some() {
            clauses.push(format!("r.service = ${}", clauses.len() + 1));
        }
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY r.id DESC LIMIT {}", limit.clamp(1, 1000)));
        let mut query = sqlx::query(&sql);
        if let Some(p) = project_id {
            query = query.bind(p);
        }
        if let Some(s) = service {
            query = query.bind(s.to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(release).collect()
    }

    /// The release of a project's service with this digest, if one was made already.
    pub async fn release_by_digest(&self, project_id: i64, service: &str, digest: &str) -> Result<Option<Release>> {
        let row = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases r JOIN projects p ON p.id = r.project_id
             WHERE r.project_id = $1 AND r.service = $2 AND r.digest = $3 ORDER BY r.id LIMIT 1"
        ))
        .bind(project_id)
        .bind(service)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(release).transpose()
    }

    /// The release a run made of a service, if any (a run makes at most one per service).
    pub async fn release_of_run(&self, run_id: i64, service: &str) -> Result<Option<Release>> {
        let row = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases r JOIN projects p ON p.id = r.project_id
             WHERE r.run_id = $1 AND r.service = $2"
        ))
        .bind(run_id)
        .bind(service)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(release).transpose()
    }

    /// Records a new rollout and its `rollout.started` event (saying `message`).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_rollout(
        &self,
        project_id: i64,
        service: &str,
        environment: &str,
        release_id: i64,
        strategy: StrategyKind,
        created_by: &str,
        message: &str,
    ) -> Result<Rollout> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO rollouts (project_id, service, environment, release_id, strategy, phase, message, status,
                 created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'progressing', 'queued', '{}', $6, $7, $7) RETURNING id",
        )
        .bind(project_id)
        .bind(service)
        .bind(environment)
        .bind(release_id)
        .bind(strategy.as_str())
        .bind(created_by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        let created = Self::rollout_in(&mut tx, id).await?;
        let event = deploy_event(&created, DeployEventKind::Started, created_by, message);
        self.commit_with(tx, &[event]).await?;
        Ok(created)
    }

    async fn rollout_in(tx: &mut sqlx::Transaction<'static, sqlx::Any>, id: i64) -> Result<Rollout> {
        let row = sqlx::query(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts o JOIN projects p ON p.id = o.project_id
             JOIN releases r ON r.id = o.release_id WHERE o.id = $1"
        ))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
        rollout(&row)
    }

    pub async fn rollout(&self, id: i64) -> Result<Option<Rollout>> {
        let row = sqlx::query(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts o JOIN projects p ON p.id = o.project_id
             JOIN releases r ON r.id = o.release_id WHERE o.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rollout).transpose()
    }

    /// Rollouts newest first.
    pub async fn rollouts(&self, filter: &RolloutFilter) -> Result<Vec<Rollout>> {
        let mut sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts o JOIN projects p ON p.id = o.project_id
             JOIN releases r ON r.id = o.release_id"
        );
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if let Some(p) = filter.project_id {
            clauses.push(format!("o.project_id = {p}"));
        }
        if let Some(s) = &filter.service {
            binds.push(s.clone());
            clauses.push(format!("o.service = ${}", binds.len()));
        }
        if let Some(e) = &filter.environment {
            binds.push(e.clone());
            clauses.push(format!("o.environment = ${}", binds.len()));
        }
        if filter.active {
            clauses.push("o.finished_at IS NULL".into());
        }
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        let limit = if filter.limit <= 0 { 50 } else { filter.limit.min(1000) };
        sql.push_str(&format!(" ORDER BY o.id DESC LIMIT {limit}"));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(rollout).collect()
    }

    /// Stores the controller's latest status, with the timeline's event when one is
    /// given (`(kind, actor, message)`); a final phase also sets `finished_at` and
    /// records which release the environment now serves.
    pub async fn update_rollout(
        &self,
        id: i64,
        phase: Phase,
        message: &str,
        status: &serde_json::Value,
        event: Option<(DeployEventKind, &str, &str)>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        // Most updates are progress (weights, rates) and record no event: only those
        // that do read the rollout as it was.
        let before = match event.is_some() || phase.is_final() {
            true => Some(Self::rollout_in(&mut tx, id).await?),
            false => None,
        };
        sqlx::query(
            "UPDATE rollouts SET phase = $1, message = $2, status = $3, updated_at = $4,
                 finished_at = CASE WHEN $5 = 1 THEN $4 ELSE finished_at END
             WHERE id = $6",
        )
        .bind(phase.as_str())
        .bind(message)
        .bind(status.to_string())
        .bind(now)
        .bind(i64::from(phase.is_final()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let mut events = Vec::new();
        let Some(before) = before else { return Ok(tx.commit().await?) };
        if let Some((kind, actor, message)) = event {
            events.push(deploy_event(&before, kind, actor, message));
        }
        if phase.is_final() && !before.phase.is_final() {
            // What the environment serves now: this release, or the last one that
            // succeeded before it (none, for a first deploy that did not).
            let serving = sqlx::query(
                "SELECT o.release_id, r.version FROM rollouts o JOIN releases r ON r.id = o.release_id
                 WHERE o.project_id = $1 AND o.environment = $2 AND o.service = $3 AND o.phase = 'succeeded'
                 ORDER BY o.id DESC LIMIT 1",
            )
            .bind(before.project_id)
            .bind(&before.environment)
            .bind(&before.service)
            .fetch_optional(&mut *tx)
            .await?;
            let mut serving_event = NewEvent::new(EventKind::EnvironmentServing, "mobius")
                .project(&before.project)
                .rollout(id)
                .environment(&before.environment);
            let mut version = None;
            if let Some(row) = serving {
                serving_event = serving_event.release(row.try_get("release_id")?);
                version = Some(row.try_get::<String, _>("version")?);
            }
            events.push(serving_event.data(serde_json::json!({"service": before.service, "version": version,
                                                              "phase": phase, "rollout_version": before.version})));
        }
        self.commit_with(tx, &events).await
    }

    /// Appends to a rollout's timeline (the event log's `rollout.*` entries).
    pub async fn add_deploy_event(
        &self,
        rollout: &Rollout,
        kind: DeployEventKind,
        actor: &str,
        message: &str,
    ) -> Result<()> {
        self.append(deploy_event(rollout, kind, actor, message)).await?;
        Ok(())
    }

    /// Deploy events newest first, of one rollout or of all.
    pub async fn deploy_events(&self, rollout_id: Option<i64>, limit: i64) -> Result<Vec<DeployEvent>> {
        let filter = EventFilter {
            rollout: rollout_id,
            kinds: DeployEventKind::ALL.iter().map(|k| EventKind::from(*k)).collect(),
            limit: limit.clamp(1, 1000),
            ..Default::default()
        };
        let events = self.events_newest(&filter, None).await?;
        Ok(events
            .into_iter()
            .filter_map(|e| {
                let data = e.data();
                let text = |key: &str| data.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                Some(DeployEvent {
                    id: e.id,
                    rollout_id: e.refs.rollout?,
                    project: e.project.clone().unwrap_or_default(),
                    service: text("service"),
                    environment: e.refs.environment.clone().unwrap_or_default(),
                    version: text("version"),
                    kind: e.kind.deploy_kind()?,
                    actor: e.actor.clone(),
                    message: text("message"),
                    at: e.at,
                })
            })
            .collect())
    }
}

/// The log entry of a rollout's timeline.
pub fn deploy_event(rollout: &Rollout, kind: DeployEventKind, actor: &str, message: &str) -> NewEvent {
    NewEvent::new(kind.into(), actor)
        .project(&rollout.project)
        .rollout(rollout.id)
        .release(rollout.release_id)
        .environment(&rollout.environment)
        .data(serde_json::json!({"service": rollout.service, "version": rollout.version, "message": message}))
}
