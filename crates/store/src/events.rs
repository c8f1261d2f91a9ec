//! The event log: one append-only, ordered record of what happened, written in the
//! transaction of the change it records, read by the API, the audit trail, the rollout
//! and incident timelines, and the subscribers that react to it.

use crate::{now_ms, Backend, Result, Store, StoreError};
use mobius_core::EventKind;
use serde::Serialize;

/// What an event refers to, beside its project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventRefs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<i64>,
}

/// An event to append. Built with [`NewEvent::new`] (what a stage did) or
/// [`NewEvent::audit`] (what a request did, or a refusal: it names where it came from).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub project: Option<String>,
    pub refs: EventRefs,
    pub actor: String,
    /// What a request acted on (`project/secret`, `run/12`).
    pub target: Option<String>,
    /// Where a request came from; set, the entry is part of the audit trail.
    pub remote: Option<String>,
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn new(kind: EventKind, actor: impl Into<String>) -> NewEvent {
        NewEvent {
            kind,
            project: None,
            refs: EventRefs::default(),
            actor: actor.into(),
            target: None,
            remote: None,
            data: serde_json::Value::Object(Default::default()),
        }
    }

    /// An audit entry: `actor` did `kind` to `target`, from `remote`.
    pub fn audit(kind: EventKind, actor: &str, target: &str, remote: &str) -> NewEvent {
        NewEvent { target: Some(target.into()), remote: Some(remote.into()), ..NewEvent::new(kind, actor) }
    }

    pub fn project(mut self, name: &str) -> NewEvent {
        self.project = Some(name.into());
        self
    }

    pub fn data(mut self, data: serde_json::Value) -> NewEvent {
        self.data = data;
        self
    }

    pub fn run(mut self, id: i64) -> NewEvent {
        self.refs.run = Some(id);
        self
    }

    pub fn job(mut self, id: i64) -> NewEvent {
        self.refs.job = Some(id);
        self
    }

    pub fn release(mut self, id: i64) -> NewEvent {
        self.refs.release = Some(id);
        self
    }

    pub fn rollout(mut self, id: i64) -> NewEvent {
        self.refs.rollout = Some(id);
        self
    }

    pub fn environment(mut self, name: &str) -> NewEvent {
        self.refs.environment = Some(name.into());
        self
    }

    pub fn incident(mut self, id: i64) -> NewEvent {
        self.refs.incident = Some(id);
        self
    }

    pub fn alert(mut self, name: &str) -> NewEvent {
        self.refs.alert = Some(name.into());
        self
    }

    pub fn token(mut self, id: i64) -> NewEvent {
        self.refs.token = Some(id);
        self
    }
}

/// One entry of the log.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Strictly increasing, and visible in that order: a reader that has seen id N
    /// never later finds an event with a smaller id.
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub kind: EventKind,
    pub project: Option<String>,
    #[serde(flatten)]
    pub refs: EventRefs,
    pub actor: String,
    pub target: Option<String>,
    pub remote: Option<String>,
    /// What the event records, by kind, as stored (read it with [`Event::data`]);
    /// pages are handed on without parsing it.
    pub data: Box<serde_json::value::RawValue>,
}

impl Event {
    /// What the event records, parsed (`{}` for an entry without data).
    pub fn data(&self) -> serde_json::Value {
        serde_json::from_str(self.data.get()).unwrap_or_default()
    }

    /// One line that says what happened, for lists (the CLI's `events`, the UI's feed).
    pub fn summary(&self) -> String {
        let data = self.data();
        let text = |key: &str| data.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let number = |key: &str| data.get(key).and_then(|v| v.as_i64());
        let mut parts: Vec<String> = Vec::new();
        match self.kind {
            EventKind::RunQueued | EventKind::RunStarted | EventKind::RunCompleted => {
                if let (Some(name), Some(n)) = (text("workflow_name"), number("number")) {
                    parts.push(format!("{name} #{n}"));
                }
                if let Some(r) = text("ref") {
                    parts.push(r.trim_start_matches("refs/heads/").to_string());
                }
                if let Some(c) = text("conclusion") {
                    parts.push(c);
                }
            }
            EventKind::JobCompleted => {
                parts.extend(text("job"));
                parts.extend(text("conclusion"));
            }
            EventKind::PushReceived => {
                parts.extend(text("ref").map(|r| r.trim_start_matches("refs/heads/").to_string()));
                match text("after") {
                    Some(sha) => parts.push(sha.chars().take(12).collect()),
                    None => parts.push("deleted".into()),
                }
            }
            EventKind::ReleaseCreated | EventKind::EnvironmentServing => {
                parts.extend(text("service"));
                parts.push(text("version").unwrap_or_else(|| "nothing".into()));
            }
            EventKind::AlertFiring | EventKind::AlertResolved => parts.extend(self.refs.alert.clone()),
            _ => {
                parts.extend(text("service"));
                parts.extend(text("version"));
                parts.extend(text("message"));
                if parts.is_empty() {
                    parts.extend(self.target.clone());
                }
            }
        }
        if let Some(environment) = &self.refs.environment {
            parts.push(format!("in {environment}"));
        }
        parts.join(" ")
    }
}

/// Which events to read: those after an id, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after: i64,
    pub project: Option<String>,
    /// Any of these kinds (all when empty).
    pub kinds: Vec<EventKind>,
    pub run: Option<i64>,
    pub rollout: Option<i64>,
    pub incident: Option<i64>,
    /// Only audit entries (those a request caused).
    pub audited: bool,
    pub limit: i64,
}

/// The most events one read returns.
pub const MAX_EVENT_PAGE: i64 = 10_000;

/// Serialises appends on PostgreSQL until commit, so ids become visible in order
/// (a sequence hands out ids at insert, not at commit). `mobius.ev` in ASCII.
const APPEND_LOCK_KEY: i64 = 0x6d6f_6269_7573_2e65;

/// An entry as stored in its `doc` column: everything but the id, in one JSON text
/// (one column is read far faster than sixteen). Written with `data` a value, read
/// with `data` kept as written (`RawValue`), so pages are handed on without parsing it.
#[derive(Serialize, serde::Deserialize)]
struct Doc<D> {
    at: i64,
    kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    release: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incident: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<i64>,
    actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remote: Option<String>,
    #[serde(default)]
    data: D,
}

pub(crate) fn event(id: i64, doc: &str) -> Result<Event> {
    let d: Doc<Option<Box<serde_json::value::RawValue>>> =
        serde_json::from_str(doc).map_err(|source| StoreError::BadDocument { table: "events", id, source })?;
    let data =
        match d.data {
            Some(data) => data,
            None => serde_json::value::RawValue::from_string("{}".into())
                .map_err(|source| StoreError::BadDocument { table: "events", id, source })?,
        };
    Ok(Event {
        id,
        at: d.at,
        kind: d.kind,
        project: d.project,
        refs: EventRefs {
            run: d.run,
            job: d.job,
            release: d.release,
            rollout: d.rollout,
            environment: d.environment,
            incident: d.incident,
            alert: d.alert,
            token: d.token,
        },
        actor: d.actor,
        target: d.target,
        remote: d.remote,
        data,
    })
}

impl Store {
    /// Appends events inside a writing transaction (from [`Store::begin_write`]); they
    /// are visible, and subscribers woken, when the caller commits and calls
    /// [`Store::appended`]. Returns the last id.
    pub(crate) async fn append_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        events: &[NewEvent],
    ) -> Result<i64> {
        if events.is_empty() {
            return Ok(0);
        }
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(APPEND_LOCK_KEY).execute(&mut **tx).await?;
        }
        let at = now_ms();
        let mut last = 0;
        for e in events {
            let doc = Doc {
                at,
                kind: e.kind,
                project: e.project.clone(),
                run: e.refs.run,
                job: e.refs.job,
                release: e.refs.release,
                rollout: e.refs.rollout,
                environment: e.refs.environment.clone(),
                incident: e.refs.incident,
                alert: e.refs.alert.clone(),
                token: e.refs.token,
                actor: e.actor.clone(),
                target: e.target.clone(),
                remote: e.remote.clone(),
                data: &e.data,
            };
            let doc = serde_json::to_string(&doc).map_err(|source| StoreError::BadDocument {
                table: "events",
                id: 0,
                source,
            })?;
            last = sqlx::query_scalar(
                "INSERT INTO events (at, kind, project, run_id, rollout_id, incident_id, remote, doc)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(at)
            .bind(e.kind.as_str())
            .bind(e.project.clone())
            .bind(e.refs.run)
            .bind(e.refs.rollout)
            .bind(e.refs.incident)
            .bind(e.remote.clone())
            .bind(doc)
            .fetch_one(&mut **tx)
            .await?;
        }
        Ok(last)
    }

    /// Appends `events` and commits: the change and its record land together or not at all.
    pub(crate) async fn commit_with(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        events: &[NewEvent],
    ) -> Result<()> {
        let last = self.append_in(&mut tx, events).await?;
        tx.commit().await?;
        self.appended(last);
        Ok(())
    }

    /// Wakes the log's subscribers: events up to `id` are committed.
    pub(crate) fn appended(&self, id: i64) {
        self.appended.send_if_modified(|last| {
            let newer = id > *last;
            if newer {
                *last = id;
            }
            newer
        });
    }

    /// Appends one event in a transaction of its own (for what changes nothing else:
    /// a refusal, a sign-in). Returns its id.
    pub async fn append(&self, event: NewEvent) -> Result<i64> {
        self.append_all(std::slice::from_ref(&event)).await
    }

    /// Appends events in one transaction. Returns the last id.
    pub async fn append_all(&self, events: &[NewEvent]) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let id = self.append_in(&mut tx, events).await?;
        tx.commit().await?;
        self.appended(id);
        Ok(id)
    }

    /// A receiver that changes whenever this process appends (the newest id), so a
    /// subscriber sleeps until there is something to read.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.appended.subscribe()
    }

    /// Events oldest first, after `filter.after`, at most `filter.limit` (up to
    /// [`MAX_EVENT_PAGE`]).
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let (sql, binds) = select(filter, false);
        self.read_events(&sql, binds).await
    }

    /// Events newest first, before `before` (all when `None`), at most `filter.limit`;
    /// `filter.after` is a lower bound.
    pub async fn events_newest(&self, filter: &EventFilter, before: Option<i64>) -> Result<Vec<Event>> {
        let (mut sql, mut binds) = select(filter, true);
        if let Some(before) = before {
            // `select` ends in ORDER BY ... LIMIT: put the bound before it.
            let at = sql.find(" ORDER BY").unwrap_or(sql.len());
            sql.insert_str(at, &format!(" AND id < ${}", binds.len() + 1));
            binds.push(Bind::Int(before));
        }
        self.read_events(&sql, binds).await
    }

    /// Runs a read of `(id, doc)` rows through the database's own driver: the `Any`
    /// driver's per-value conversion costs more than the read itself on a page of 500.
    async fn read_events(&self, sql: &str, binds: Vec<Bind>) -> Result<Vec<Event>> {
        macro_rules! fetch {
            ($pool:expr) => {{
                let mut query = sqlx::query_as::<_, (i64, String)>(sql);
                for b in binds {
                    query = match b {
                        Bind::Int(v) => query.bind(v),
                        Bind::Text(v) => query.bind(v),
                    };
                }
                query.fetch_all($pool).await?
            }};
        }
        let rows = match &self.reader {
            crate::Reader::Sqlite(pool) => fetch!(pool),
            crate::Reader::Postgres(pool) => fetch!(pool),
        };
        rows.into_iter().map(|(id, doc)| event(id, &doc)).collect()
    }

    /// The newest event id (0 when the log is empty).
    pub async fn last_event_id(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events").fetch_one(&self.pool).await?)
    }

    /// Where a subscriber has got to (0 for a new one).
    pub async fn cursor(&self, name: &str) -> Result<i64> {
        let position: Option<i64> = sqlx::query_scalar("SELECT position FROM event_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(position.unwrap_or(0))
    }

    /// Records where a subscriber has got to. A position never moves back.
    pub async fn set_cursor(&self, name: &str, position: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO event_cursors (name, position, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at
             WHERE event_cursors.position < excluded.position",
        )
        .bind(name)
        .bind(position)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Runs a subscriber to the log: hands `handle` each event of `kinds` after the
/// subscriber's stored position, oldest first, and stores the position after each one.
/// It sleeps until an append wakes it (or, for appends by another server sharing the
/// database, a second) and returns when `stopped` completes.
///
/// Delivery is at least once: a process killed after a reaction and before its position
/// was stored hands that event again on restart, so each reaction is idempotent by what
/// the event names (a release per run and service, a rollout per release and
/// environment). A failing reaction is retried, with a growing pause, until it succeeds:
/// the subscriber never skips an event.
pub async fn follow<F, Fut, E>(
    store: &Store,
    name: &str,
    kinds: &[EventKind],
    stopped: impl std::future::Future<Output = ()>,
    mut handle: F,
) -> Result<()>
where
    F: FnMut(Event) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(stopped);
    let mut appended = store.subscribe();
    let mut position = store.cursor(name).await?;
    loop {
        appended.borrow_and_update();
        let filter = EventFilter { after: position, kinds: kinds.to_vec(), limit: 100, ..Default::default() };
        let events = store.events(&filter).await?;
        let full = events.len() as i64 >= filter.limit;
        for event in events {
            let id = event.id;
            let mut pause = std::time::Duration::from_millis(200);
            loop {
                match handle(event.clone()).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(subscriber = name, event = id, error = %e, "a reaction failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = &mut stopped => return Ok(()),
                        }
                        pause = (pause * 2).min(std::time::Duration::from_secs(30));
                    }
                }
            }
            store.set_cursor(name, id).await?;
            position = id;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = appended.changed() => {}
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            () = &mut stopped => return Ok(()),
        }
    }
}

enum Bind {
    Int(i64),
    Text(String),
}

fn select(filter: &EventFilter, newest_first: bool) -> (String, Vec<Bind>) {
    let mut binds = vec![Bind::Int(filter.after)];
    let mut sql = String::from("SELECT id, doc FROM events WHERE id > $1");
    if let Some(project) = &filter.project {
        binds.push(Bind::Text(project.clone()));
        sql.push_str(&format!(" AND project = ${}", binds.len()));
    }
    for (column, value) in [("run_id", filter.run), ("rollout_id", filter.rollout), ("incident_id", filter.incident)] {
        if let Some(value) = value {
            binds.push(Bind::Int(value));
            sql.push_str(&format!(" AND {column} = ${}", binds.len()));
        }
    }
    if !filter.kinds.is_empty() {
        let mut names = Vec::new();
        for kind in &filter.kinds {
            binds.push(Bind::Text(kind.as_str().to_string()));
            names.push(format!("${}", binds.len()));
        }
        sql.push_str(&format!(" AND kind IN ({})", names.join(", ")));
    }
    if filter.audited {
        sql.push_str(" AND remote IS NOT NULL");
    }
    let order = if newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY id {order} LIMIT {}", filter.limit.clamp(1, MAX_EVENT_PAGE)));
    (sql, binds)
}
