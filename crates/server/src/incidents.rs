//! Incidents and escalation. Every firing alert group opens an incident (unless its
//! receiver is listed in `without_incidents`), linked to the last rollout of the
//! alert's service and environment; each alert that joins it is an `incident.alert`
//! entry of the event log, on which the `incident-rollback` subscriber
//! (`reactions.rs`) aborts the service's running rollouts. The group's escalation
//! policy pages level after level (receivers, people, whoever a schedule has on call)
//! until someone acknowledges — from the API, the CLI, the UI or the signed link each
//! page carries — or the group resolves.

use crate::app::App;
use crate::error::ApiError;
use axum::http::StatusCode;
use base64::Engine as _;
use mobius_alerting::notify::Notification;
use mobius_alerting::{common_labels, now_ms, Alert, GroupEvent, GroupStatus};
use mobius_core::{EventKind, IncidentEventKind};
use mobius_store::{Incident, NewEvent, NewIncident, RolloutFilter};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const ACK_CONTEXT: &str = "incident-ack";

/// Starts following alert groups and paging escalation levels, when the server has
/// an alert manager.
pub fn start(app: &Arc<App>) {
    let Some(am) = app.monitor.alerts.clone() else { return };
    let mut events = am.subscribe();
    let follower = Arc::clone(app);
    tokio::spawn(async move {
        let mut seen: HashMap<i64, HashSet<u64>> = HashMap::new();
        let mut firing: HashMap<String, HashSet<u64>> = HashMap::new();
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Err(e) = record_alerts(&follower, &event, &mut firing).await {
                        tracing::error!(group = %event.group_key, error = %e, "cannot record the alerts in the event log");
                    }
                    if let Err(e) = on_group_event(&follower, &event, &mut seen).await {
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
                () = pager.stopping.cancelled() => return,
            }
            if let Err(e) = escalate_due(&pager).await {
                tracing::error!(error = %e, "escalation failed");
            }
        }
    });
}

/// Appends `alert.firing` for each alert of the group that starts firing and
/// `alert.resolved` for each that stops (`firing` holds the fingerprints seen firing,
/// per group, since this process started).
async fn record_alerts(
    app: &App,
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
        app.store.append_all(&appended).await?;
    }
    Ok(())
}

async fn on_group_event(
    app: &Arc<App>,
    event: &GroupEvent,
    seen: &mut HashMap<i64, HashSet<u64>>,
) -> anyhow::Result<()> {
    let monitor = &app.monitor;
    let oncall = Arc::clone(&monitor.oncall.lock());
    match event.status {
        GroupStatus::Resolved => {
            if let Some(incident) = app.store.open_incident_of(&event.group_key).await? {
                app.store.resolve_incident(incident.id, "alertmanager", "every alert of the group resolved").await?;
                seen.remove(&incident.id);
            }
            return Ok(());
        }
        GroupStatus::Muted => {
            // The condition still holds: the incident stays open; paging waits (escalate_due).
            if let Some(incident) = app.store.open_incident_of(&event.group_key).await? {
                let message = "every firing alert of the group is silenced or inhibited: paging and \
                               notifications pause until the silence ends; the incident stays open until the alerts resolve";
                app.store.add_incident_event(incident.id, IncidentEventKind::Silenced, "alertmanager", message).await?;
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
        let filter = RolloutFilter {
            service: Some(service.clone()),
            environment: Some(environment.clone()),
            limit: 20,
            ..Default::default()
        };
        let rollouts = app.store.rollouts(&filter).await?;
        rollout_id = rollouts.iter().find(|r| r.created_at <= started).map(|r| r.id);
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
        next_escalation_at: policy.and_then(|p| p.levels.first()).map(|l| event.at + l.delay.as_millis() as i64),
        opened_at: event.at,
    };
    let (incident, _) = app.store.open_incident(&new).await?;
    let known = seen.entry(incident.id).or_default();
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
            app.store.add_incident_event_data(incident.id, IncidentEventKind::Alert, "alertmanager", data).await?;
        }
    }
    Ok(())
}

/// The signed link that acknowledges `incident` on behalf of `person`, valid without
/// a token (the master key seals it).
pub fn ack_link(app: &App, incident: i64, person: &str) -> Option<String> {
    let sealed = app.key.seal(ACK_CONTEXT, format!("{incident}:{person}").as_bytes()).ok()?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed);
    let base = app.config.external_url.clone().unwrap_or_else(|| format!("http://{}", app.config.listen));
    Some(format!("{}/ack/{token}", base.trim_end_matches('/')))
}

/// The incident and person a link's token names, when the master key sealed it.
pub fn read_ack_token(app: &App, token: &str) -> Option<(i64, String)> {
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let plain = app.key.open(ACK_CONTEXT, &sealed).ok()?;
    let text = String::from_utf8(plain).ok()?;
    let (id, person) = text.split_once(':')?;
    Some((id.parse().ok()?, person.to_string()))
}

/// Pages the levels that are due.
async fn escalate_due(app: &Arc<App>) -> anyhow::Result<()> {
    let monitor = &app.monitor;
    let Some(am) = monitor.alerts.clone() else { return Ok(()) };
    let now = now_ms();
    for incident in app.store.due_escalations(now).await? {
        let oncall = Arc::clone(&monitor.oncall.lock());
        let policy = incident.policy.as_deref().and_then(|name| oncall.policies.iter().find(|p| p.name == name));
        let Some(level) = policy.and_then(|p| p.levels.get(incident.level as usize)) else {
            app.store.advance_escalation(incident.id, incident.level, incident.level, incident.rounds, None).await?;
            continue;
        };
        let Some(policy) = policy else { continue };
        if am.group_muted(&incident.group_key) {
            // Silenced: nobody is paged; the level waits for the silence to end.
            app.store
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
        if !app.store.advance_escalation(incident.id, incident.level, next_level as i64, rounds, next_at).await? {
            continue;
        }
        page(app, &am, &incident, level, index + 1, &oncall, now).await?;
    }
    Ok(())
}

async fn page(
    app: &Arc<App>,
    am: &mobius_alerting::AlertManager,
    incident: &Incident,
    level: &mobius_alerting::oncall::Level,
    number: usize,
    oncall: &mobius_alerting::oncall::OnCallConfig,
    now: i64,
) -> anyhow::Result<()> {
    let group = am.groups().into_iter().find(|g| g.key == incident.group_key);
    let Some(group) = group else {
        app.store
            .add_incident_event(
                incident.id,
                IncidentEventKind::Escalation,
                "mobius",
                "the alert group is gone; nobody paged",
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
                "acknowledgeURL": ack_link(app, incident.id, &who),
            })),
        };
        let message = match am.notify_receiver(&receiver, &n).await {
            Ok(()) => format!("level {number}: paged {who} through {receiver}"),
            Err(e) => format!("level {number}: paging {who} through {receiver} failed: {e}"),
        };
        tracing::info!(incident = incident.id, level = number, %who, "escalation");
        app.store.add_incident_event(incident.id, IncidentEventKind::Escalated, "mobius", &message).await?;
    }
    Ok(())
}

/// Acknowledges an open incident for `actor` (audited): escalation stops.
pub async fn acknowledge(app: &App, id: i64, actor: &str, remote: &str) -> Result<Incident, ApiError> {
    change(app, id, actor, remote, EventKind::IncidentAcknowledge).await
}

/// Resolves an incident by hand (audited): escalation stops, time to restore is recorded.
pub async fn resolve(app: &App, id: i64, actor: &str, remote: &str) -> Result<Incident, ApiError> {
    change(app, id, actor, remote, EventKind::IncidentResolve).await
}

async fn change(app: &App, id: i64, actor: &str, remote: &str, action: EventKind) -> Result<Incident, ApiError> {
    let Some(incident) = app.store.incident(id).await? else {
        return Err(ApiError::not_found(format!("no incident {id}")));
    };
    let done = if action == EventKind::IncidentAcknowledge {
        app.store.acknowledge_incident(id, actor).await?
    } else {
        app.store.resolve_incident(id, actor, &format!("resolved by {actor}")).await?
    };
    if !done {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("incident {id} is {}", incident.status)));
    }
    let event = NewEvent::audit(action, actor, &format!("incident/{id}"), remote)
        .incident(id)
        .data(json!({"title": incident.title}));
    app.store.append(event).await?;
    app.store.incident(id).await?.ok_or_else(|| ApiError::not_found(format!("no incident {id}")))
}
