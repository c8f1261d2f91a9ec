//! What the monitor watches and keeps quiet: scrape targets with their health and last
//! error, rule groups with each rule's state, and silences (list, create, expire), as
//! Prometheus' and Alertmanager's own pages show them.

use super::{error_page, render, when, Session};
use crate::api;
use crate::app::App;
use crate::auth::Role;
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mobius_alerting::{now_ms, Silence, SilenceState};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A Go zero time (`0001-01-01T00:00:00Z`, "never") as `-`, others as the pages show times.
fn stamp(v: &Value) -> String {
    match v.as_str() {
        Some(t) if !t.starts_with("0001-") => t.get(..19).unwrap_or(t).replace('T', " "),
        _ => "-".into(),
    }
}

fn labels(v: &Value) -> String {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default())).collect::<Vec<_>>())
        .unwrap_or_default()
        .join(", ")
}

pub(super) struct TargetRow {
    pool: String,
    url: String,
    health: String,
    labels: String,
    last_scrape: String,
    duration: String,
    error: String,
}

#[derive(Template)]
#[template(path = "targets.html")]
pub(super) struct TargetsPage {
    user: String,
    targets: Vec<TargetRow>,
    dropped: usize,
}

/// `GET /ui/targets`.
pub(super) async fn targets_page(State(app): State<Arc<App>>, s: Session) -> Response {
    if let Err(e) = s.caller.require_global(Role::Viewer) {
        return error_page(e);
    }
    let (active, dropped) = api::monitor::target_lists(&app);
    let mut targets: Vec<TargetRow> = active
        .iter()
        .map(|t| TargetRow {
            pool: text(&t["scrapePool"]),
            url: text(&t["scrapeUrl"]),
            health: text(&t["health"]),
            labels: labels(&t["labels"]),
            last_scrape: stamp(&t["lastScrape"]),
            duration: t["lastScrapeDuration"]
                .as_f64()
                .filter(|_| t["health"] != "unknown")
                .map_or("-".into(), |s| mobius_core::duration::human((s * 1000.0) as u64)),
            error: text(&t["lastError"]),
        })
        .collect();
    targets.sort_by(|a, b| (&a.pool, &a.url).cmp(&(&b.pool, &b.url)));
    render(TargetsPage { user: s.caller.name.clone(), targets, dropped: dropped.len() })
}

pub(super) struct RuleRow {
    name: String,
    kind: String,
    query: String,
    state: String,
    health: String,
    error: String,
    last: String,
    active: usize,
}

pub(super) struct GroupView {
    name: String,
    file: String,
    interval: String,
    last: String,
    rules: Vec<RuleRow>,
}

#[derive(Template)]
#[template(path = "rules.html")]
pub(super) struct RulesPage {
    user: String,
    groups: Vec<GroupView>,
}

/// `GET /ui/rules`.
pub(super) async fn rules_page(State(app): State<Arc<App>>, s: Session) -> Response {
    if let Err(e) = s.caller.require_global(Role::Viewer) {
        return error_page(e);
    }
    let groups = api::alerting::rule_groups(&app.monitor, None)
        .iter()
        .map(|g| GroupView {
            name: text(&g["name"]),
            file: text(&g["file"]),
            interval: g["interval"]
                .as_f64()
                .map_or("-".into(), |s| humantime::format_duration(std::time::Duration::from_secs_f64(s)).to_string()),
            last: stamp(&g["lastEvaluation"]),
            rules: g["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| RuleRow {
                    name: text(&r["name"]),
                    kind: text(&r["type"]),
                    query: text(&r["query"]),
                    // Recording rules have no state; Prometheus shows their health alone.
                    state: r["state"].as_str().unwrap_or("-").to_string(),
                    health: text(&r["health"]),
                    error: text(&r["lastError"]),
                    last: stamp(&r["lastEvaluation"]),
                    active: r["alerts"].as_array().map_or(0, Vec::len),
                })
                .collect(),
        })
        .collect();
    render(RulesPage { user: s.caller.name.clone(), groups })
}

pub(super) struct SilenceRow {
    id: String,
    matchers: String,
    state: String,
    /// Over: no Expire button.
    expired: bool,
    starts: String,
    ends: String,
    created_by: String,
    comment: String,
}

#[derive(Template)]
#[template(path = "silences.html")]
pub(super) struct SilencesPage {
    user: String,
    csrf: String,
    configured: bool,
    /// New silences and the Expire buttons, for developers and above.
    can_silence: bool,
    silences: Vec<SilenceRow>,
    /// The form's values (prefilled from an alert, or kept after a refusal).
    matchers: String,
    duration: String,
    comment: String,
    error: String,
}

fn silences_page_for(app: &App, s: &Session, form: &HashMap<String, String>, error: String) -> SilencesPage {
    let now = now_ms();
    let mut silences: Vec<Silence> = app.monitor.alerts.as_ref().map(|am| am.silences()).unwrap_or_default();
    // Active first, then pending, then expired (the enum's order); newest end first within each.
    silences.sort_by(|a, b| a.state(now).cmp(&b.state(now)).then(b.ends_at.cmp(&a.ends_at)));
    SilencesPage {
        user: s.caller.name.clone(),
        csrf: s.csrf.clone(),
        configured: app.monitor.alerts.is_some(),
        can_silence: s.caller.may_globally(Role::Developer),
        silences: silences
            .iter()
            .map(|x| SilenceRow {
                id: x.id.clone(),
                matchers: x.matchers.join(", "),
                state: x.state(now).to_string(),
                expired: x.state(now) == SilenceState::Expired,
                starts: when(x.starts_at),
                ends: when(x.ends_at),
                created_by: x.created_by.rsplit(':').next().unwrap_or_default().to_string(),
                comment: x.comment.clone(),
            })
            .collect(),
        matchers: form.get("matchers").cloned().unwrap_or_default(),
        duration: form.get("duration").cloned().unwrap_or_else(|| "2h".into()),
        comment: form.get("comment").cloned().unwrap_or_default(),
        error: super::message_html(&error),
    }
}

/// `GET /ui/silences` (`?matchers=` prefills the form, as an alert's Silence link does).
pub(super) async fn silences_page(
    State(app): State<Arc<App>>,
    s: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = s.caller.require_global(Role::Viewer) {
        return error_page(e);
    }
    render(silences_page_for(&app, &s, &q, String::new()))
}

/// The silence a form describes: matchers in Alertmanager's syntax, a duration, a comment.
fn silence_from(form: &HashMap<String, String>, by: String) -> Result<Silence, String> {
    let text = form.get("matchers").map(|m| m.trim()).unwrap_or_default();
    if text.is_empty() {
        return Err("matchers: name at least one label, as alertname=\"QueueTooDeep\"".into());
    }
    let matchers = mobius_alerting::config::parse_matchers(text).map_err(|e| format!("matchers: {e}"))?;
    let duration = form.get("duration").map(|d| d.trim()).unwrap_or_default();
    let duration =
        humantime::parse_duration(duration).map_err(|e| format!("duration: `{duration}` is not a duration ({e})"))?;
    let comment = form.get("comment").map(|c| c.trim().to_string()).unwrap_or_default();
    if comment.is_empty() {
        return Err("comment: say why the alerts are silenced".into());
    }
    let now = now_ms();
    Ok(Silence {
        id: String::new(),
        matchers: matchers.iter().map(ToString::to_string).collect(),
        starts_at: now,
        ends_at: now.saturating_add(duration.as_millis().min(i64::MAX as u128) as i64),
        created_by: by,
        comment,
        updated_at: 0,
    })
}

/// `POST /ui/silences`: creates a silence (developers and above, audited).
pub(super) async fn create_silence(
    State(app): State<Arc<App>>,
    s: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = s.refusal(&form) {
        return refused;
    }
    let silence = match silence_from(&form, s.caller.actor()) {
        Ok(silence) => silence,
        Err(message) => {
            return (StatusCode::UNPROCESSABLE_ENTITY, render(silences_page_for(&app, &s, &form, message)))
                .into_response()
        }
    };
    match api::alerting::put_silence(&app, &s.caller, silence).await {
        Ok(_) => Redirect::to("/ui/silences").into_response(),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            (StatusCode::UNPROCESSABLE_ENTITY, render(silences_page_for(&app, &s, &form, e.message))).into_response()
        }
        Err(e) => error_page(e),
    }
}

/// `POST /ui/silences/{id}/expire`.
pub(super) async fn expire_silence(
    State(app): State<Arc<App>>,
    s: Session,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = s.refusal(&form) {
        return refused;
    }
    match api::alerting::expire_silence(&app, &s.caller, &id).await {
        Ok(()) => Redirect::to("/ui/silences").into_response(),
        Err(e) => error_page(e),
    }
}

/// The matchers that silence exactly this alert's labels (its Silence link).
pub(super) fn matchers_of(labels: &mobius_series::Labels) -> String {
    labels.iter().map(|(k, v)| mobius_series::Matcher::equal(k, v).to_string()).collect::<Vec<_>>().join(", ")
}
