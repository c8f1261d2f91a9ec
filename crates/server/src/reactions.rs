//! Cross-stage reactions, each a subscriber to the event log with a stored position:
//! a completed run is checked for `mobius.yaml` and, green on the default branch,
//! released (`releases`); a new release is deployed where an environment asks for it
//! (`auto-deploy`); an alert that joins an incident of a service aborts that service's
//! rollouts in the incident's environment (`incident-rollback`). Subscribers wake on append, resume after a restart from their
//! position, and react idempotently (see [`mobius_store::follow`]).

use crate::app::App;
use mobius_core::EventKind;
use mobius_store::Event;
use std::sync::Arc;

/// Starts every subscriber (on the leader only: reactions change state).
pub fn start(app: &Arc<App>) {
    subscribe(app, "releases", &[EventKind::RunCompleted], release_after_run);
    subscribe(app, "auto-deploy", &[EventKind::ReleaseCreated], deploy_new_release);
    subscribe(app, "incident-rollback", &[EventKind::IncidentAlert], roll_back_on_alert);
}

fn subscribe<Fut>(app: &Arc<App>, name: &'static str, kinds: &'static [EventKind], reaction: fn(Arc<App>, Event) -> Fut)
where
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let stopped = app.stopping.clone();
        let outcome = mobius_store::follow(&app.store.clone(), name, kinds, stopped.cancelled_owned(), |event| {
            reaction(Arc::clone(&app), event)
        })
        .await;
        if let Err(e) = outcome {
            tracing::error!(subscriber = name, error = %e, "a subscriber to the event log stopped");
        }
    });
}

/// `run.completed` → the run's `mobius.yaml` check and its releases.
async fn release_after_run(app: Arc<App>, event: Event) -> Result<(), String> {
    let Some(run) = event.refs.run else { return Ok(()) };
    mobius_deploy::stage::releases::after_run(&app.deployer(), run).await;
    Ok(())
}

/// `release.created` → a rollout to each environment that deploys it automatically.
async fn deploy_new_release(app: Arc<App>, event: Event) -> Result<(), String> {
    let Some(id) = event.refs.release else { return Ok(()) };
    let release = app.store.release(id).await.map_err(|e| e.to_string())?;
    let Some(release) = release else { return Ok(()) };
    let project = app.store.project_by_id(release.project_id).await.map_err(|e| e.to_string())?;
    let Some(project) = project else { return Ok(()) };
    mobius_deploy::stage::auto_deploy(&app.deployer(), &project, &[release]).await;
    Ok(())
}

/// `incident.alert` → each rollout of the incident's service in its environment that
/// still runs is aborted (unless it is a first deploy, with nothing to go back to), and
/// the incident's timeline says so. A rollout the incident already rolled back is left.
async fn roll_back_on_alert(app: Arc<App>, event: Event) -> Result<(), String> {
    let Some(id) = event.refs.incident else { return Ok(()) };
    let Some(incident) = app.store.incident(id).await.map_err(|e| e.to_string())? else { return Ok(()) };
    let (Some(service), Some(environment)) = (&incident.service, &incident.environment) else { return Ok(()) };
    if incident.status == mobius_core::IncidentStatus::Resolved {
        return Ok(());
    }
    let data = event.data();
    let alertname = data.pointer("/labels/alertname").and_then(|v| v.as_str()).unwrap_or("alerts").to_string();
    let filter = mobius_store::RolloutFilter {
        service: Some(service.clone()),
        environment: Some(environment.clone()),
        active: true,
        limit: 20,
        ..Default::default()
    };
    let active = app.store.rollouts(&filter).await.map_err(|e| e.to_string())?;
    for rollout in active {
        // Aborted for this incident already (its `incident.rollback` names the rollout).
        let done = mobius_store::EventFilter {
            incident: Some(id),
            rollout: Some(rollout.id),
            kinds: vec![EventKind::IncidentRollback],
            limit: 1,
            ..Default::default()
        };
        if !app.store.events(&done).await.map_err(|e| e.to_string())?.is_empty() {
            continue;
        }
        if !mobius_deploy::stage::protects_a_version(&*app, &rollout).await.unwrap_or(true) {
            // A first deploy: nothing to protect or roll back to.
            continue;
        }
        let reason = format!("alert {alertname} fired for {service} in {environment} (incident #{id})");
        let abort = mobius_deploy::rollout::Command::Abort(reason.clone());
        match mobius_deploy::stage::command(&app.deployer(), &rollout, abort, "alertmanager").await {
            Ok(()) => {
                let message = format!("rollout {} aborted: {reason}", rollout.id);
                let kind = mobius_core::IncidentEventKind::Rollback;
                let entry = mobius_store::incident_event(id, Some(environment), kind, "alertmanager", &message);
                app.store.append(entry.rollout(rollout.id)).await.map_err(|e| e.to_string())?;
                tracing::warn!(rollout = rollout.id, incident = id, "rollout aborted by a firing alert");
            }
            Err(e) => tracing::warn!(rollout = rollout.id, error = %e, "cannot abort the rollout"),
        }
    }
    Ok(())
}
