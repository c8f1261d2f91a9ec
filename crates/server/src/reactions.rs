//! Cross-stage reactions, each a subscriber to the event log with a stored position:
//! a completed run is checked for `mobius.yaml` and, green on the default branch,
//! released (`releases`); a new release is deployed where an environment asks for it
//! (`auto-deploy`). Subscribers wake on append, resume after a restart from their
//! position, and react idempotently (see [`mobius_store::follow`]).

use crate::app::App;
use mobius_core::EventKind;
use mobius_store::Event;
use std::sync::Arc;

/// Starts every subscriber (on the leader only: reactions change state).
pub fn start(app: &Arc<App>) {
    subscribe(app, "releases", &[EventKind::RunCompleted], release_after_run);
    subscribe(app, "auto-deploy", &[EventKind::ReleaseCreated], deploy_new_release);
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
    // A run that never started (an invalid workflow, cancelled while queued) ships nothing.
    if event.data().get("started_at").is_none_or(serde_json::Value::is_null) {
        return Ok(());
    }
    crate::deploy::releases::after_run(&app, run).await;
    Ok(())
}

/// `release.created` → a rollout to each environment that deploys it automatically.
async fn deploy_new_release(app: Arc<App>, event: Event) -> Result<(), String> {
    let Some(id) = event.refs.release else { return Ok(()) };
    let release = app.store.release(id).await.map_err(|e| e.to_string())?;
    let Some(release) = release else { return Ok(()) };
    let project = app.store.project_by_id(release.project_id).await.map_err(|e| e.to_string())?;
    let Some(project) = project else { return Ok(()) };
    crate::deploy::auto_deploy(&app, &project, &[release]).await;
    Ok(())
}
