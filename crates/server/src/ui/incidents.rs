//! Incident pages: the list with acknowledge and resolve buttons, one incident with its
//! timeline, and the page a signed link in a notification opens (no sign-in needed:
//! the link is the credential).

use super::{error_page, render, when, EventView, Session};
use crate::app::App;
use crate::auth::Role;
use crate::error::ApiError;
use askama::Template;
use axum::extract::{ConnectInfo, Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use mobius_core::IncidentStatus;
use mobius_store::Incident;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) struct IncidentRow {
    id: i64,
    title: String,
    status: String,
    /// Open: the Acknowledge button (for those who may act).
    can_acknowledge: bool,
    /// Not resolved: the Resolve button.
    can_resolve: bool,
    acknowledged: bool,
    place: String,
    rollout: Option<i64>,
    opened: String,
    by: String,
    restore: String,
}

fn row(i: &Incident) -> IncidentRow {
    let place = match (&i.service, &i.environment) {
        (Some(s), Some(e)) => format!("{s} in {e}"),
        (Some(s), None) => s.clone(),
        _ => "-".into(),
    };
    let by = match i.status {
        IncidentStatus::Acknowledged => i.acknowledged_by.clone(),
        IncidentStatus::Resolved => i.resolved_by.clone(),
        IncidentStatus::Open => None,
    };
    IncidentRow {
        id: i.id,
        title: i.title.clone(),
        status: i.status.as_str().to_string(),
        can_acknowledge: i.status == IncidentStatus::Open,
        acknowledged: i.status == IncidentStatus::Acknowledged,
        can_resolve: i.status != IncidentStatus::Resolved,
        place,
        rollout: i.rollout_id,
        opened: when(i.opened_at),
        by: by.map(|b| b.rsplit(':').next().unwrap_or_default().to_string()).unwrap_or_default(),
        restore: i.time_to_restore_ms.map(mobius_core::duration::human_signed).unwrap_or_else(|| "-".into()),
    }
}

#[derive(Template)]
#[template(path = "incidents.html")]
pub(super) struct IncidentsPage {
    user: String,
    csrf: String,
    /// Acknowledge and resolve, for developers and above.
    can_act: bool,
    incidents: Vec<IncidentRow>,
}

pub(super) async fn incidents_page(State(app): State<Arc<App>>, s: Session) -> Response {
    if let Err(e) = s.caller.require_global(Role::Viewer) {
        return error_page(e);
    }
    match app.store.incidents(mobius_core::IncidentFilter::All, 200).await {
        Ok(list) => render(IncidentsPage {
            user: s.caller.name.clone(),
            csrf: s.csrf.clone(),
            can_act: s.caller.may_globally(Role::Developer),
            incidents: list.iter().map(row).collect(),
        }),
        Err(e) => error_page(e.into()),
    }
}

#[derive(Template)]
#[template(path = "incident.html")]
pub(super) struct IncidentPage {
    user: String,
    csrf: String,
    /// Acknowledge and resolve, for developers and above.
    can_act: bool,
    incident: IncidentRow,
    policy: String,
    events: Vec<EventView>,
}

pub(super) async fn incident_page(State(app): State<Arc<App>>, s: Session, Path(id): Path<i64>) -> Response {
    if let Err(e) = s.caller.require_global(Role::Viewer) {
        return error_page(e);
    }
    let incident = match app.store.incident(id).await {
        Ok(Some(i)) => i,
        Ok(None) => return error_page(ApiError::not_found(format!("no incident {id}"))),
        Err(e) => return error_page(e.into()),
    };
    let events = app.store.incident_events(id).await.unwrap_or_default();
    render(IncidentPage {
        user: s.caller.name.clone(),
        csrf: s.csrf.clone(),
        can_act: s.caller.may_globally(Role::Developer),
        policy: incident.policy.clone().unwrap_or_else(|| "none".into()),
        incident: row(&incident),
        events: events.iter().map(|e| EventView::new(e.at, e.kind.as_str(), &e.actor, &e.message)).collect(),
    })
}

/// `POST /ui/incidents/ID/acknowledge|resolve` from the pages' buttons.
pub(super) async fn incident_command(
    State(app): State<Arc<App>>,
    s: Session,
    Path((id, which)): Path<(i64, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = s.refusal(&form) {
        return refused;
    }
    if let Err(e) = s.caller.require_global(Role::Developer) {
        return error_page(e);
    }
    let done = match which.as_str() {
        "acknowledge" => mobius_incidents::acknowledge(&app.store, id, &s.caller.actor(), &s.caller.remote).await,
        "resolve" => mobius_incidents::resolve(&app.store, id, &s.caller.actor(), &s.caller.remote).await,
        _ => return error_page(ApiError::not_found(format!("no command `{which}`"))),
    };
    match done {
        Ok(_) => Redirect::to(&format!("/ui/incidents/{id}")).into_response(),
        Err(e) => error_page(e.into()),
    }
}

#[derive(Template)]
#[template(path = "ack.html")]
pub(super) struct AckPage {
    user: String,
    incident: IncidentRow,
    person: String,
    done: bool,
}

async fn linked(app: &App, token: &str) -> Result<(Incident, String), Response> {
    let refused = || error_page(ApiError::new(axum::http::StatusCode::FORBIDDEN, "this link is not valid"));
    let (id, person) = crate::incidents::read_ack_token(app, token).ok_or_else(refused)?;
    match app.store.incident(id).await {
        Ok(Some(i)) => Ok((i, person)),
        Ok(None) => Err(error_page(ApiError::not_found(format!("no incident {id}")))),
        Err(e) => Err(error_page(e.into())),
    }
}

/// `GET /ack/TOKEN`: what the link acknowledges, with a button (a GET changes nothing,
/// so link previews cannot acknowledge).
pub(crate) async fn ack_page(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    match linked(&app, &token).await {
        Ok((incident, person)) => {
            render(AckPage { user: String::new(), incident: row(&incident), person, done: false })
        }
        Err(refused) => refused,
    }
}

/// `POST /ack/TOKEN`: acknowledges for the person the link was sent to.
pub(crate) async fn ack_link(
    State(app): State<Arc<App>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Response {
    let (incident, person) = match linked(&app, &token).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let actor = format!("link:{person}");
    match mobius_incidents::acknowledge(&app.store, incident.id, &actor, &remote.ip().to_string()).await {
        Ok(updated) => render(AckPage { user: String::new(), incident: row(&updated), person, done: true }),
        Err(mobius_incidents::ChangeError::NotOpen { .. }) => {
            render(AckPage { user: String::new(), incident: row(&incident), person, done: true })
        }
        Err(e) => error_page(e.into()),
    }
}
