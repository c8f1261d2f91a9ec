//! The activity feed: the event log as a page, global or of one project, newest first,
//! each line linking to what it is about (run, release, rollout, incident).

use super::{error_page, render, when, Session};
use crate::api;
use crate::app::App;
use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use mobius_core::EventKind;
use mobius_store::{Event, EventFilter};
use serde::Deserialize;
use std::sync::Arc;

pub(super) struct ActivityRow {
    id: i64,
    at: String,
    kind: &'static str,
    project: String,
    actor: String,
    summary: String,
    /// Where the line links, and what the link says.
    link: Option<(String, String)>,
    /// A failed or firing thing: the line is marked.
    bad: bool,
}

fn row(e: &Event) -> ActivityRow {
    let link = if let Some(id) = e.refs.incident {
        Some((format!("/ui/incidents/{id}"), format!("incident {id}")))
    } else if let Some(id) = e.refs.rollout {
        Some((format!("/ui/rollouts/{id}"), format!("rollout {id}")))
    } else if let Some(id) = e.refs.release {
        Some((format!("/ui/releases/{id}"), format!("release {id}")))
    } else if let Some(id) = e.refs.run {
        Some((format!("/ui/runs/{id}"), format!("run {id}")))
    } else {
        e.project.as_ref().map(|p| (format!("/ui/projects/{p}"), p.clone()))
    };
    let data = e.data();
    let conclusion = data.get("conclusion").and_then(|c| c.as_str());
    let bad =
        matches!(
            e.kind,
            EventKind::AlertFiring
                | EventKind::IncidentOpened
                | EventKind::RolloutRolledBack
                | EventKind::RolloutFailed
                | EventKind::RequestDenied
                | EventKind::WebhookRefused
                | EventKind::MobiusYamlInvalid
                | EventKind::MobiusYamlRefused
                | EventKind::MonitoringInvalid
        ) || conclusion.and_then(mobius_core::Conclusion::parse).is_some_and(|c| c == mobius_core::Conclusion::Failure);
    ActivityRow {
        id: e.id,
        at: when(e.at),
        kind: e.kind.as_str(),
        project: e.project.clone().unwrap_or_default(),
        actor: e.actor.clone(),
        summary: e.summary(),
        link,
        bad,
    }
}

#[derive(Template)]
#[template(path = "activity.html")]
pub(super) struct ActivityPage {
    user: String,
    project: String,
    kind: String,
    kinds: Vec<&'static str>,
    events: Vec<ActivityRow>,
}

#[derive(Deserialize, Default)]
pub(super) struct ActivityQuery {
    project: Option<String>,
    kind: Option<String>,
}

/// `GET /ui/activity`: the newest 200 events the caller may see.
pub(super) async fn activity_page(State(app): State<Arc<App>>, s: Session, Query(q): Query<ActivityQuery>) -> Response {
    let kind = q.kind.filter(|k| !k.is_empty());
    let project = match api::events::project_of(&app, &s.caller, q.project.filter(|p| !p.is_empty())).await {
        Ok(project) => project,
        Err(e) => return error_page(e),
    };
    let kinds = kind.as_deref().map(EventKind::matching).unwrap_or_default();
    let filter = EventFilter { project: project.clone(), kinds, limit: 200, ..Default::default() };
    match app.store.events_newest(&filter, None).await {
        Ok(events) => render(ActivityPage {
            user: s.caller.name.clone(),
            project: project.unwrap_or_default(),
            kind: kind.unwrap_or_default(),
            kinds: ["run.*", "job.*", "push.*", "release.*", "rollout.*", "environment.*", "alert.*", "incident.*"]
                .to_vec(),
            events: events.iter().map(row).collect(),
        }),
        Err(e) => error_page(e.into()),
    }
}
