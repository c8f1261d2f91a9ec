//! Incidents and escalation, the monitor stage's decisions over the store. Every
//! firing alert group opens an incident (unless its receiver is listed in
//! `without_incidents`), linked to the last rollout of the alert's service and
//! environment; each alert that joins it is an `incident.alert` entry of the event
//! log, on which the server's `incident-rollback` subscriber aborts the service's
//! running rollouts. The group's escalation policy pages level after level
//! (receivers, people, whoever a schedule has on call) until someone acknowledges
//! (from the API, the CLI, the UI or the signed link each page carries) or the group
//! resolves. What this needs from the store is [`IncidentStore`]; from the server
//! that runs it, [`Host`].
#![forbid(unsafe_code)]

use async_trait::async_trait;
use mobius_alerting::notify::Notification;
use mobius_alerting::oncall::{Level, OnCallConfig};
use mobius_alerting::{common_labels, Alert, AlertManager, GroupEvent, GroupStatus};
use mobius_core::{Clock, EventKind, IncidentEventKind, IncidentStatus};
use mobius_store::{Incident, NewEvent, NewIncident, RolloutFilter, Store, StoreError};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// What incidents read and write in the store.
#[async_trait]
pub trait IncidentStore: Send + Sync {
    async fn append_all(&self, events: &[NewEvent]) -> Result<(), StoreError>;
    /// The fingerprints of the alerts already on an incident's timeline.
    async fn alerts_on(&self, id: i64) -> Result<HashSet<u64>, StoreError>;
    /// The last `alert.firing` and `alert.resolved` entries (at most `limit`), oldest first.
    async fn alert_entries(&self, limit: i64) -> Result<Vec<mobius_store::Event>, StoreError>;
    /// Opens the group's incident (true), or answers the one already open (false).
    async fn open_incident(&self, new: &NewIncident) -> Result<(Incident, bool), StoreError>;
    async fn open_incident_of(&self, group_key: &str) -> Result<Option<Incident>, StoreError>;
    async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError>;
    /// The last rollout of a service to an environment created at or before `at`.
    async fn latest_rollout_before(&self, service: &str, environment: &str, at: i64)
        -> Result<Option<i64>, StoreError>;
    async fn add_incident_event_data(
        &self,
        id: i64,
        kind: IncidentEventKind,
        actor: &str,
        data: Value,
    ) -> Result<(), StoreError>;
    async fn acknowledge_incident(&self, id: i64, actor: &str) -> Result<bool, StoreError>;
    async fn resolve_incident(&self, id: i64, actor: &str, message: &str) -> Result<bool, StoreError>;
    async fn due_escalations(&self, now: i64) -> Result<Vec<Incident>, StoreError>;
    /// Moves an incident from `from_level` on; false when someone else moved it first.
    async fn advance_escalation(
        &self,
        id: i64,
        from_level: i64,
        to_level: i64,
        rounds: i64,
        next_at: Option<i64>,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
impl IncidentStore for Store {
    async fn append_all(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        Store::append_all(self, events).await.map(drop)
    }
    async fn alerts_on(&self, id: i64) -> Result<HashSet<u64>, StoreError> {
        let filter = mobius_store::EventFilter {
            after: -1,
            incident: Some(id),
            kinds: vec![EventKind::IncidentAlert],
            limit: mobius_store::MAX_EVENT_PAGE,
            ..Default::default()
        };
        let mut out = HashSet::new();
        for event in self.events(&filter).await? {
            let data = event.data();
            let Some(labels) = data.get("labels").and_then(Value::as_object) else { continue };
            let pairs = labels.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect();
            out.insert(mobius_alerting::fingerprint(&mobius_series::Labels::new(pairs)));
        }
        Ok(out)
    }
    async fn alert_entries(&self, limit: i64) -> Result<Vec<mobius_store::Event>, StoreError> {
        let filter = mobius_store::EventFilter {
            kinds: vec![EventKind::AlertFiring, EventKind::AlertResolved],
            limit,
            ..Default::default()
        };
        let mut newest = self.events_newest(&filter, None).await?;
        newest.reverse();
        Ok(newest)
    }
    async fn open_incident(&self, new: &NewIncident) -> Result<(Incident, bool), StoreError> {
        Store::open_incident(self, new).await
    }
    async fn open_incident_of(&self, group_key: &str) -> Result<Option<Incident>, StoreError> {
        Store::open_incident_of(self, group_key).await
    }
    async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        Store::incident(self, id).await
    }
    async fn latest_rollout_before(
        &self,
        service: &str,
        environment: &str,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let filter = RolloutFilter {
            service: Some(service.to_string()),
            environment: Some(environment.to_string()),
            limit: 20,
            ..Default::default()
        };
        Ok(self.rollouts(&filter).await?.iter().find(|r| r.created_at <= at).map(|r| r.id))
    }
    async fn add_incident_event_data(
        &self,
        id: i64,
        kind: IncidentEventKind,
        actor: &str,
        data: Value,
    ) -> Result<(), StoreError> {
        Store::add_incident_event_data(self, id, kind, actor, data).await
    }
    async fn acknowledge_incident(&self, id: i64, actor: &str) -> Result<bool, StoreError> {
        Store::acknowledge_incident(self, id, actor).await
    }
    async fn resolve_incident(&self, id: i64, actor: &str, message: &str) -> Result<bool, StoreError> {
        Store::resolve_incident(self, id, actor, message).await
    }
    async fn due_escalations(&self, now: i64) -> Result<Vec<Incident>, StoreError> {
        Store::due_escalations(self, now).await
    }
    async fn advance_escalation(
        &self,
        id: i64,
        from_level: i64,
        to_level: i64,
        rounds: i64,
        next_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        Store::advance_escalation(self, id, from_level, to_level, rounds, next_at).await
    }
}

/// What incidents need from the server running them.
pub trait Host: Send + Sync + 'static {
    fn store(&self) -> &dyn IncidentStore;
    /// The alert manager whose groups become incidents (none: no incidents).
    fn alerts(&self) -> Option<Arc<AlertManager>>;
    /// People, schedules and policies in force.
    fn oncall(&self) -> Arc<OnCallConfig>;
    /// The signed link that acknowledges `incident` on behalf of `person`.
    fn ack_link(&self, incident: i64, person: &str) -> Option<String>;
    fn clock(&self) -> &dyn Clock;
}

/// Starts following alert groups and paging escalation levels, when the host has an
/// alert manager, until `stopping`.
pub fn start<H: Host>(app: &Arc<H>, stopping: CancellationToken) {
    let Some(am) = app.alerts() else { return };
    let mut events = am.subscribe();
    let follower = Arc::clone(app);
    tokio::spawn(async move {
        let mut seen: HashMap<i64, HashSet<u64>> = HashMap::new();
        // What the log says fires, so a restart does not announce it again.
        let mut firing = match firing_in_log(follower.store()).await {
            Ok(firing) => firing,
            Err(e) => {
                tracing::error!(error = %e, "cannot read which alerts fire from the event log");
                HashMap::new()
            }
        };
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Err(e) = record_alerts(&*follower, &event, &mut firing).await {
                        tracing::error!(group = %event.group_key, error = %e, "cannot record the alerts in the event log");
                    }
                    if let Err(e) = on_group_event(&*follower, &event, &mut seen).await {
                        tracing::error!(group = %event.group_key, error = %e, "cannot record the incident");
                    }
                }
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "incident follower fell behind"),
                Err(RecvError::Closed) => return,
            }
        }
    });
    let pager = Arc::clone(app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopping.cancelled() => return,
            }
            if let Err(e) = escalate_due(&*pager).await {
                tracing::error!(error = %e, "escalation failed");
            }
        }
    });
}

/// How many of the log's newest alert entries a restart reads to learn what fires.
const FIRING_HORIZON: i64 = 10_000;

/// The alerts firing as the event log tells it (fingerprints per group): each
/// `alert.firing` not followed by its `alert.resolved`.
async fn firing_in_log(store: &dyn IncidentStore) -> Result<HashMap<String, HashSet<u64>>, StoreError> {
    let mut firing: HashMap<String, HashSet<u64>> = HashMap::new();
    for event in store.alert_entries(FIRING_HORIZON).await? {
        let data = event.data();
        let group = data.get("group").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(fingerprint) =
            data.get("fingerprint").and_then(Value::as_str).and_then(|f| u64::from_str_radix(f, 16).ok())
        else {
            continue;
        };
        if event.kind == EventKind::AlertFiring {
            firing.entry(group).or_default().insert(fingerprint);
        } else if let Some(known) = firing.get_mut(&group) {
            known.remove(&fingerprint);
            if known.is_empty() {
                firing.remove(&group);
            }
        }
    }
    Ok(firing)
}

/// Appends `alert.firing` for each alert of the group that starts firing and
/// `alert.resolved` for each that stops (`firing` holds the fingerprints seen firing,
/// per group, as the log tells it).
async fn record_alerts<H: Host>(
    app: &H,
    event: &GroupEvent,
    firing: &mut HashMap<String, HashSet<u64>>,
) -> anyhow::Result<()> {
    let known = firing.entry(event.group_key.clone()).or_default();
    let mut appended = Vec::new();
    for alert in &event.alerts {
        let fingerprint = alert.fingerprint();
        let resolved = event.status == GroupStatus::Resolved || alert.resolved(event.at);
        let kind = match (resolved, known.contains(&fingerprint)) {
            (false, false) => EventKind::AlertFiring,
            (true, true) => EventKind::AlertResolved,
            _ => continue,
        };
        if resolved {
            known.remove(&fingerprint);
        } else {
            known.insert(fingerprint);
        }
        let name = alert.labels.get("alertname").unwrap_or("alert");
        let mut record = NewEvent::new(kind, "alertmanager").alert(name).data(json!({
            "labels": alert.labels.iter().collect::<HashMap<_, _>>(),
            "fingerprint": format!("{fingerprint:016x}"),
            "group": event.group_key,
            "starts_at": alert.starts_at,
        }));
        if let Some(environment) = alert.labels.get("env").or_else(|| alert.labels.get("environment")) {
            record = record.environment(environment);
        }
        if let Some(project) = alert.labels.get("project") {
            record = record.project(project);
        }
        appended.push(record);
    }
    if known.is_empty() {
        firing.remove(&event.group_key);
    }
    if !appended.is_empty() {
        app.store().append_all(&appended).await?;
    }
    Ok(())
}

async fn on_group_event<H: Host>(
    app: &H,
    event: &GroupEvent,
    seen: &mut HashMap<i64, HashSet<u64>>,
) -> anyhow::Result<()> {
    let oncall = app.oncall();
    match event.status {
        GroupStatus::Resolved => {
            if let Some(incident) = app.store().open_incident_of(&event.group_key).await? {
                app.store().resolve_incident(incident.id, "alertmanager", "every alert of the group resolved").await?;
                seen.remove(&incident.id);
            }
            return Ok(());
        }
        GroupStatus::Muted => {
            // The condition still holds: the incident stays open; paging waits (escalate_due).
            if let Some(incident) = app.store().open_incident_of(&event.group_key).await? {
                let message = "every firing alert of the group is silenced or inhibited: paging and \
                               notifications pause until the silence ends; the incident stays open until the alerts resolve";
                app.store()
                    .add_incident_event_data(
                        incident.id,
                        IncidentEventKind::Silenced,
                        "alertmanager",
                        json!({ "message": message }),
                    )
                    .await?;
            }
            return Ok(());
        }
        GroupStatus::Firing => {}
    }
    if oncall.without_incidents.contains(&event.receiver) {
        return Ok(());
    }
    let firing: Vec<Alert> = event.alerts.iter().filter(|a| !a.resolved(event.at)).cloned().collect();
    // What every firing alert says alike: where it is, and what the policy matches on.
    let common = if firing.is_empty() { event.group_labels.clone() } else { common_labels(&firing) };
    let service = common.get("service").map(str::to_string);
    let environment = common.get("env").or_else(|| common.get("environment")).map(str::to_string);
    let started = firing.iter().map(|a| a.starts_at).min().unwrap_or(event.at);
    let mut rollout_id = None;
    if let (Some(service), Some(environment)) = (&service, &environment) {
        rollout_id = app.store().latest_rollout_before(service, environment, started).await?;
    }
    let policy = oncall.policy_for(&event.receiver, &common);
    let alertname = common.get("alertname").unwrap_or("alerts").to_string();
    // The alert's own words first: its `summary` annotation (the first firing alert's).
    let summary =
        firing.iter().find_map(|a| a.annotations.iter().find(|(k, _)| k == "summary").map(|(_, v)| v.clone()));
    let title = summary.unwrap_or_else(|| format!("{alertname} {}", event.group_labels).trim().to_string());
    let new = NewIncident {
        group_key: event.group_key.clone(),
        title,
        receiver: event.receiver.clone(),
        labels: json!(event.group_labels.iter().collect::<HashMap<_, _>>()),
        service: service.clone(),
        environment: environment.clone(),
        rollout_id,
        policy: policy.map(|p| p.name.clone()),
        // Paging is scheduled once the alerts that opened it are on its timeline (below).
        next_escalation_at: None,
        opened_at: event.at,
    };
    let (incident, opened) = app.store().open_incident(&new).await?;
    // Alerts recorded before a restart are on the timeline already.
    let known = match seen.entry(incident.id) {
        std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
        std::collections::hash_map::Entry::Vacant(slot) => slot.insert(app.store().alerts_on(incident.id).await?),
    };
    for alert in &firing {
        if known.insert(alert.fingerprint()) {
            let summary = alert.annotations.iter().find(|(k, _)| k == "summary").map(|(_, v)| v.as_str());
            let message = match summary {
                Some(s) => format!("firing: {} ({s})", alert.labels),
                None => format!("firing: {}", alert.labels),
            };
            // The alert's labels go with it: the `incident-rollback` subscriber reads them.
            let labels = json!(alert.labels.iter().collect::<HashMap<_, _>>());
            let data = json!({"message": message, "labels": labels});
            app.store().add_incident_event_data(incident.id, IncidentEventKind::Alert, "alertmanager", data).await?;
        }
    }
    // Scheduled once, also when a crash came between opening and scheduling.
    let unscheduled = incident.level == 0 && incident.rounds == 0 && incident.next_escalation_at.is_none();
    let first_page = policy.and_then(|p| p.levels.first()).map(|l| event.at + l.delay.as_millis() as i64);
    if (opened || unscheduled) && first_page.is_some() {
        app.store().advance_escalation(incident.id, 0, 0, 0, first_page).await?;
    }
    Ok(())
}

/// Pages the levels that are due.
async fn escalate_due<H: Host>(app: &H) -> anyhow::Result<()> {
    let Some(am) = app.alerts() else { return Ok(()) };
    let now = app.clock().now_ms();
    for incident in app.store().due_escalations(now).await? {
        let oncall = app.oncall();
        let policy = incident.policy.as_deref().and_then(|name| oncall.policies.iter().find(|p| p.name == name));
        let Some(level) = policy.and_then(|p| p.levels.get(incident.level as usize)) else {
            app.store().advance_escalation(incident.id, incident.level, incident.level, incident.rounds, None).await?;
            continue;
        };
        let Some(policy) = policy else { continue };
        if am.group_muted(&incident.group_key) {
            // Silenced: nobody is paged; the level waits for the silence to end.
            app.store()
                .advance_escalation(incident.id, incident.level, incident.level, incident.rounds, Some(now + 1_000))
                .await?;
            continue;
        }
        let index = incident.level as usize;
        let (next_level, rounds, next_at) = if let Some(next) = policy.levels.get(index + 1) {
            (index + 1, incident.rounds, Some(now + next.delay.as_millis() as i64))
        } else if incident.rounds < i64::from(policy.repeat) {
            (0, incident.rounds + 1, policy.levels.first().map(|l| now + l.delay.as_millis() as i64))
        } else {
            (index + 1, incident.rounds, None)
        };
        // Taking the level first means an acknowledgement that wins the race pages no one.
        if !app.store().advance_escalation(incident.id, incident.level, next_level as i64, rounds, next_at).await? {
            continue;
        }
        page(app, &am, &incident, level, index + 1, &oncall, now).await?;
    }
    Ok(())
}

async fn page<H: Host>(
    app: &H,
    am: &AlertManager,
    incident: &Incident,
    level: &Level,
    number: usize,
    oncall: &OnCallConfig,
    now: i64,
) -> anyhow::Result<()> {
    let group = am.groups().into_iter().find(|g| g.key == incident.group_key);
    let Some(group) = group else {
        app.store()
            .add_incident_event_data(
                incident.id,
                IncidentEventKind::Escalation,
                "mobius",
                json!({ "message": "the alert group is gone; nobody paged" }),
            )
            .await?;
        return Ok(());
    };
    for (receiver, person) in oncall.resolve(level, now) {
        let who = person.clone().unwrap_or_else(|| receiver.clone());
        let n = Notification {
            receiver: receiver.clone(),
            group_key: incident.group_key.clone(),
            group_labels: group.labels.clone(),
            alerts: group.alerts.clone(),
            external_url: am.external_url.clone(),
            now,
            incident: Some(json!({
                "incident": incident.id,
                "level": number,
                "policy": incident.policy,
                "acknowledgeURL": app.ack_link(incident.id, &who),
            })),
        };
        let message = match am.notify_receiver(&receiver, &n).await {
            Ok(()) => format!("level {number}: paged {who} through {receiver}"),
            Err(e) => format!("level {number}: paging {who} through {receiver} failed: {e}"),
        };
        tracing::info!(incident = incident.id, level = number, %who, "escalation");
        app.store()
            .add_incident_event_data(incident.id, IncidentEventKind::Escalated, "mobius", json!({ "message": message }))
            .await?;
    }
    Ok(())
}

/// Why an incident could not be acknowledged or resolved.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no incident {0}")]
    NotFound(i64),
    #[error("incident {id} is {status}")]
    NotOpen { id: i64, status: IncidentStatus },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Acknowledges an open incident for `actor` (audited): escalation stops.
pub async fn acknowledge(
    store: &dyn IncidentStore,
    id: i64,
    actor: &str,
    remote: &str,
) -> Result<Incident, ChangeError> {
    change(store, id, actor, remote, EventKind::IncidentAcknowledge).await
}

/// Resolves an incident by hand (audited): escalation stops, time to restore is recorded.
pub async fn resolve(store: &dyn IncidentStore, id: i64, actor: &str, remote: &str) -> Result<Incident, ChangeError> {
    change(store, id, actor, remote, EventKind::IncidentResolve).await
}

async fn change(
    store: &dyn IncidentStore,
    id: i64,
    actor: &str,
    remote: &str,
    action: EventKind,
) -> Result<Incident, ChangeError> {
    let Some(incident) = store.incident(id).await? else { return Err(ChangeError::NotFound(id)) };
    let done = if action == EventKind::IncidentAcknowledge {
        store.acknowledge_incident(id, actor).await?
    } else {
        store.resolve_incident(id, actor, &format!("resolved by {actor}")).await?
    };
    if !done {
        return Err(ChangeError::NotOpen { id, status: incident.status });
    }
    let event = NewEvent::audit(action, actor, &format!("incident/{id}"), remote)
        .incident(id)
        .data(json!({"title": incident.title}));
    store.append_all(std::slice::from_ref(&event)).await?;
    store.incident(id).await?.ok_or(ChangeError::NotFound(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobius_alerting::config::parse_alertmanager_config;
    use mobius_alerting::oncall::parse_oncall_config;
    use mobius_config::SourceFile;
    use mobius_core::ManualClock;

    struct TestHost {
        store: Store,
        am: Arc<AlertManager>,
        oncall: Arc<OnCallConfig>,
        clock: ManualClock,
    }

    impl Host for TestHost {
        fn store(&self) -> &dyn IncidentStore {
            &self.store
        }
        fn alerts(&self) -> Option<Arc<AlertManager>> {
            Some(Arc::clone(&self.am))
        }
        fn oncall(&self) -> Arc<OnCallConfig> {
            Arc::clone(&self.oncall)
        }
        fn ack_link(&self, _: i64, _: &str) -> Option<String> {
            None
        }
        fn clock(&self) -> &dyn Clock {
            &self.clock
        }
    }

    const ALERTMANAGER: &str = "route:\n  receiver: team\n  group_by: [alertname]\nreceivers:\n  - name: team\n  - name: lead\n  - name: director\n";
    const ONCALL: &str = "policies:\n  - name: queues\n    receiver: team\n    levels:\n      - { delay: 0s, targets: [{ receiver: team }] }\n      - { delay: 2s, targets: [{ receiver: lead }] }\n      - { delay: 4s, targets: [{ receiver: director }] }\n";

    /// A fresh store, the test alert manager, and the on-call configuration for it.
    async fn fixture() -> (tempfile::TempDir, Store, Arc<AlertManager>, mobius_alerting::oncall::OnCallConfig) {
        let dir = tempfile::tempdir().expect("a directory");
        let store = Store::open(&Store::sqlite_url(&dir.path().join("mobius.db"))).await.expect("the store");
        let am_config = parse_alertmanager_config(SourceFile::new("am.yml", ALERTMANAGER)).expect("a valid file");
        let receivers: Vec<String> = am_config.receivers.iter().map(|r| r.name.clone()).collect();
        let oncall = parse_oncall_config(SourceFile::new("oncall.yml", ONCALL), &receivers).expect("a valid file");
        let am = AlertManager::new(am_config, None, "http://mobius.test".into()).expect("an alert manager");
        (dir, store, am, oncall)
    }

    /// An alert with `labels`, firing from `t0` for a day.
    fn firing(labels: &[(&str, &str)], t0: i64) -> Alert {
        Alert {
            labels: mobius_series::Labels::from_pairs(labels),
            annotations: Vec::new(),
            starts_at: t0,
            ends_at: t0 + 86_400_000,
            generator_url: String::new(),
            updated_at: t0,
        }
    }

    async fn pages(store: &Store, id: i64) -> Vec<String> {
        let events = store.incident_events(id).await.expect("the timeline");
        events.into_iter().filter(|e| e.kind == IncidentEventKind::Escalated).map(|e| e.message).collect()
    }

    /// Issue 17, item 9: escalation reads time from its clock, so a test moves time
    /// by hand and proves that nobody is paged early, or after an acknowledgement,
    /// without sleeping.
    #[tokio::test]
    async fn escalation_pages_each_level_when_its_clock_says_and_nobody_after_an_acknowledgement() {
        let (_dir, store, am, oncall) = fixture().await;
        let t0 = mobius_alerting::now_ms();
        let alert = Alert {
            annotations: vec![("summary".into(), "jobs holds 10 items".into())],
            ..firing(&[("alertname", "QueueTooDeep")], t0)
        };
        am.put(vec![alert.clone()]);
        let group = am.groups().into_iter().next().expect("the alert's group");
        let host = TestHost { store, am, oncall: Arc::new(oncall), clock: ManualClock::new(t0) };
        let event = GroupEvent {
            group_key: group.key.clone(),
            receiver: "team".into(),
            group_labels: group.labels.clone(),
            status: GroupStatus::Firing,
            alerts: vec![alert],
            at: t0,
        };
        on_group_event(&host, &event, &mut HashMap::new()).await.expect("an incident");
        let incident = host.store.open_incident_of(&group.key).await.expect("the store").expect("an open incident");

        escalate_due(&host).await.expect("escalation");
        assert_eq!(pages(&host.store, incident.id).await, ["level 1: paged team through team"]);
        host.clock.advance(Duration::from_millis(1_999));
        escalate_due(&host).await.expect("escalation");
        assert_eq!(pages(&host.store, incident.id).await.len(), 1, "level 2 waits its 2 s");
        host.clock.advance(Duration::from_millis(1));
        escalate_due(&host).await.expect("escalation");
        assert_eq!(pages(&host.store, incident.id).await[1], "level 2: paged lead through lead");

        acknowledge(&host.store, incident.id, "ada", "test").await.expect("acknowledged");
        host.clock.advance(Duration::from_secs(3600));
        escalate_due(&host).await.expect("escalation");
        assert_eq!(pages(&host.store, incident.id).await.len(), 2, "nobody is paged after the acknowledgement");
        let kinds: Vec<IncidentEventKind> =
            host.store.incident_events(incident.id).await.expect("the timeline").into_iter().map(|e| e.kind).collect();
        use IncidentEventKind as K;
        assert_eq!(kinds, [K::Opened, K::Alert, K::Escalated, K::Escalated, K::Acknowledged]);
    }

    /// After a restart, an alert that still fires is not announced again: what fires
    /// is read back from the log.
    #[tokio::test]
    async fn an_alert_still_firing_after_a_restart_is_not_announced_twice() {
        let (_dir, store, am, _) = fixture().await;
        let t0 = mobius_alerting::now_ms();
        let alert = firing(&[("alertname", "Down"), ("project", "p")], t0);
        let host = TestHost { store, am, oncall: Arc::default(), clock: ManualClock::new(t0) };
        let event = |status| GroupEvent {
            group_key: "g".into(),
            receiver: "team".into(),
            group_labels: mobius_series::Labels::default(),
            status,
            alerts: vec![alert.clone()],
            at: t0,
        };
        let entries = |store: &Store| {
            let filter = mobius_store::EventFilter {
                after: -1,
                kinds: vec![EventKind::AlertFiring, EventKind::AlertResolved],
                limit: 100,
                ..Default::default()
            };
            let store = store.clone();
            async move { store.events(&filter).await.expect("the log").into_iter().map(|e| e.kind).collect::<Vec<_>>() }
        };
        let mut before = firing_in_log(&host.store).await.expect("the log");
        record_alerts(&host, &event(GroupStatus::Firing), &mut before).await.expect("recorded");
        // A restart: the follower starts again from the log.
        let mut after = firing_in_log(&host.store).await.expect("the log");
        record_alerts(&host, &event(GroupStatus::Firing), &mut after).await.expect("recorded");
        assert_eq!(entries(&host.store).await, [EventKind::AlertFiring], "announced once");
        record_alerts(&host, &event(GroupStatus::Resolved), &mut after).await.expect("recorded");
        let mut again = firing_in_log(&host.store).await.expect("the log");
        assert!(again.is_empty(), "{again:?}");
        record_alerts(&host, &event(GroupStatus::Resolved), &mut again).await.expect("recorded");
        assert_eq!(entries(&host.store).await, [EventKind::AlertFiring, EventKind::AlertResolved]);
    }

    /// After a restart, the alerts an open incident already shows are not added to
    /// its timeline again.
    #[tokio::test]
    async fn a_restart_adds_no_alert_twice_to_an_open_incident() {
        let (_dir, store, am, _) = fixture().await;
        let t0 = mobius_alerting::now_ms();
        let alert = firing(&[("alertname", "Down"), ("instance", "a")], t0);
        let host = TestHost { store, am, oncall: Arc::default(), clock: ManualClock::new(t0) };
        let event = GroupEvent {
            group_key: "g".into(),
            receiver: "team".into(),
            group_labels: mobius_series::Labels::from_pairs(&[("alertname", "Down")]),
            status: GroupStatus::Firing,
            alerts: vec![alert],
            at: t0,
        };
        on_group_event(&host, &event, &mut HashMap::new()).await.expect("an incident");
        // A restart: the follower's memory is empty again.
        on_group_event(&host, &event, &mut HashMap::new()).await.expect("the same incident");
        let incident = host.store.open_incident_of("g").await.expect("the store").expect("open");
        let kinds: Vec<IncidentEventKind> =
            host.store.incident_events(incident.id).await.expect("the timeline").into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [IncidentEventKind::Opened, IncidentEventKind::Alert], "one alert entry");
    }

    /// The store, noting whether any incident could be paged at the moment an
    /// incident's alert is recorded: paging must wait until its alerts are there.
    struct Watching {
        store: Store,
        paged_too_early: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl IncidentStore for Watching {
        async fn append_all(&self, events: &[NewEvent]) -> Result<(), StoreError> {
            IncidentStore::append_all(&self.store, events).await
        }
        async fn alerts_on(&self, id: i64) -> Result<HashSet<u64>, StoreError> {
            self.store.alerts_on(id).await
        }
        async fn alert_entries(&self, limit: i64) -> Result<Vec<mobius_store::Event>, StoreError> {
            self.store.alert_entries(limit).await
        }
        async fn open_incident(&self, new: &NewIncident) -> Result<(Incident, bool), StoreError> {
            IncidentStore::open_incident(&self.store, new).await
        }
        async fn open_incident_of(&self, group_key: &str) -> Result<Option<Incident>, StoreError> {
            IncidentStore::open_incident_of(&self.store, group_key).await
        }
        async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
            IncidentStore::incident(&self.store, id).await
        }
        async fn latest_rollout_before(&self, service: &str, env: &str, at: i64) -> Result<Option<i64>, StoreError> {
            self.store.latest_rollout_before(service, env, at).await
        }
        async fn add_incident_event_data(
            &self,
            id: i64,
            kind: IncidentEventKind,
            actor: &str,
            data: Value,
        ) -> Result<(), StoreError> {
            if kind == IncidentEventKind::Alert && !self.store.due_escalations(i64::MAX).await?.is_empty() {
                self.paged_too_early.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            IncidentStore::add_incident_event_data(&self.store, id, kind, actor, data).await
        }
        async fn acknowledge_incident(&self, id: i64, actor: &str) -> Result<bool, StoreError> {
            IncidentStore::acknowledge_incident(&self.store, id, actor).await
        }
        async fn resolve_incident(&self, id: i64, actor: &str, message: &str) -> Result<bool, StoreError> {
            IncidentStore::resolve_incident(&self.store, id, actor, message).await
        }
        async fn due_escalations(&self, now: i64) -> Result<Vec<Incident>, StoreError> {
            IncidentStore::due_escalations(&self.store, now).await
        }
        async fn advance_escalation(
            &self,
            id: i64,
            from_level: i64,
            to_level: i64,
            rounds: i64,
            next_at: Option<i64>,
        ) -> Result<bool, StoreError> {
            IncidentStore::advance_escalation(&self.store, id, from_level, to_level, rounds, next_at).await
        }
    }

    struct WatchingHost(TestHost, Watching);

    impl Host for WatchingHost {
        fn store(&self) -> &dyn IncidentStore {
            &self.1
        }
        fn alerts(&self) -> Option<Arc<AlertManager>> {
            self.0.alerts()
        }
        fn oncall(&self) -> Arc<OnCallConfig> {
            self.0.oncall()
        }
        fn ack_link(&self, incident: i64, person: &str) -> Option<String> {
            self.0.ack_link(incident, person)
        }
        fn clock(&self) -> &dyn Clock {
            self.0.clock()
        }
    }

    /// An incident can be paged only once the alerts that opened it are on its
    /// timeline (the pager runs beside the follower), and an incident a crash left
    /// opened but unscheduled is scheduled when its group is seen again.
    #[tokio::test]
    async fn paging_waits_for_the_opening_alerts_and_a_crash_in_between_still_pages() {
        let (_dir, store, am, oncall) = fixture().await;
        let t0 = mobius_alerting::now_ms();
        let alert = |name: &str| firing(&[("alertname", name)], t0);
        am.put(vec![alert("QueueTooDeep"), alert("Crashed")]);
        let groups = am.groups();
        let group =
            |name: &str| groups.iter().find(|g| g.labels.get("alertname") == Some(name)).expect("a group").clone();
        let host = WatchingHost(
            TestHost { store: store.clone(), am, oncall: Arc::new(oncall), clock: ManualClock::new(t0) },
            Watching { store, paged_too_early: std::sync::atomic::AtomicBool::new(false) },
        );
        let event = |g: &mobius_alerting::GroupView| GroupEvent {
            group_key: g.key.clone(),
            receiver: "team".into(),
            group_labels: g.labels.clone(),
            status: GroupStatus::Firing,
            alerts: g.alerts.clone(),
            at: t0,
        };
        let first = group("QueueTooDeep");
        on_group_event(&host, &event(&first), &mut HashMap::new()).await.expect("an incident");
        assert!(
            !host.1.paged_too_early.load(std::sync::atomic::Ordering::SeqCst),
            "paging was due before the alert was recorded"
        );

        // A crash after opening, before scheduling: the incident is open, nothing due.
        let crashed = group("Crashed");
        let new = NewIncident {
            group_key: crashed.key.clone(),
            title: "Crashed".into(),
            receiver: "team".into(),
            labels: json!({}),
            service: None,
            environment: None,
            rollout_id: None,
            policy: Some("queues".into()),
            next_escalation_at: None,
            opened_at: t0,
        };
        let (opened, _) = host.0.store.open_incident(&new).await.expect("opened");
        on_group_event(&host, &event(&crashed), &mut HashMap::new()).await.expect("seen again");
        escalate_due(&host).await.expect("escalation");
        assert_eq!(pages(&host.0.store, opened.id).await, ["level 1: paged team through team"]);
    }
}
