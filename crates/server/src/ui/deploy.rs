//! Deploy pages: what runs where, rollout history, and one rollout live (weights drawn
//! as SVG, per-version request rate, error ratio and p99, events, and its commands).

use super::{error_page, graph::escape, render, when, EventView, Session};
use crate::app::App;
use crate::auth::Role;
use crate::error::ApiError;
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use mobius_core::{Phase, StrategyKind};
use mobius_deploy::rollout::Command;
use mobius_deploy::stage as deploy;
use mobius_store::{Rollout, RolloutFilter};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub(super) struct PlaceView {
    project: String,
    environment: String,
    service: String,
    version: String,
    active: Option<(i64, Phase)>,
    /// Where the environment listens for the service.
    address: String,
}

pub(super) struct RolloutRow {
    id: i64,
    project: String,
    service: String,
    environment: String,
    version: String,
    strategy: StrategyKind,
    phase: Phase,
    created_by: String,
    created_at: String,
    message: String,
    /// A newer release of the service, waiting while this rollout is under way.
    newer: Option<String>,
}

fn row(r: &Rollout) -> RolloutRow {
    RolloutRow {
        id: r.id,
        project: r.project.clone(),
        service: r.service.clone(),
        environment: r.environment.clone(),
        version: r.version.clone(),
        strategy: r.strategy,
        phase: r.phase,
        created_by: r.created_by.rsplit(':').next().unwrap_or_default().to_string(),
        created_at: when(r.created_at),
        message: super::message_html(&r.message),
        newer: r.newer_version.clone().filter(|_| r.finished_at.is_none()),
    }
}

#[derive(Template)]
#[template(path = "deploys.html")]
pub(super) struct DeploysPage {
    user: String,
    places: Vec<PlaceView>,
    rollouts: Vec<RolloutRow>,
}

pub(super) async fn deploys_page(State(app): State<Arc<App>>, s: Session) -> Response {
    let rollouts = match app
        .store
        .rollouts(&RolloutFilter { project_id: s.caller.project_id, limit: 500, ..RolloutFilter::default() })
        .await
    {
        Ok(r) => r,
        Err(e) => return error_page(e.into()),
    };
    let visible: Vec<&Rollout> = rollouts.iter().filter(|r| s.caller.sees(r.project_id)).collect();
    let mut places: BTreeMap<(String, String, String), PlaceView> = BTreeMap::new();
    for r in &visible {
        let place =
            places.entry((r.project.clone(), r.environment.clone(), r.service.clone())).or_insert_with(|| PlaceView {
                project: r.project.clone(),
                environment: r.environment.clone(),
                service: r.service.clone(),
                version: String::new(),
                active: None,
                address: String::new(),
            });
        if place.address.is_empty() {
            // The newest rollout's release says where the place listens.
            place.address =
                deploy::addresses::address_of(&app.deployer(), r).await.map_or_else(String::new, |a| a.to_string());
        }
        if r.finished_at.is_none() && place.active.is_none() {
            place.active = Some((r.id, r.phase));
        }
        if r.phase == Phase::Succeeded && place.version.is_empty() {
            place.version = r.version.clone();
        }
    }
    render(DeploysPage {
        user: s.caller.name.clone(),
        places: places.into_values().collect(),
        rollouts: visible.iter().take(50).map(|r| row(r)).collect(),
    })
}

pub(super) struct RateView {
    version: String,
    weight: String,
    rps: String,
    error_ratio: String,
    p99: String,
}

#[derive(Template)]
#[template(path = "rollout.html")]
pub(super) struct RolloutPage {
    user: String,
    csrf: String,
    rollout: RolloutRow,
    live: bool,
    /// Paused, waiting for an approval: the Approve button.
    approvable: bool,
    /// Paused at a step or a switch: the Promote button.
    promotable: bool,
    /// The Abort button, for developers and above.
    can_abort: bool,
    weights_svg: String,
    rates: Vec<RateView>,
    events: Vec<EventView>,
    /// A paused blue-green's preview address, while the new version waits there.
    preview: Option<String>,
    /// A canary's steps, the current one marked.
    steps: Vec<StepView>,
}

/// Where a canary step stands against the rollout.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StepState {
    Done,
    Current,
    Next,
}

impl StepState {
    /// The CSS class of the step's line.
    fn class(self) -> &'static str {
        match self {
            StepState::Done => "done",
            StepState::Current => "current",
            StepState::Next => "next",
        }
    }
}

pub(super) struct StepView {
    number: usize,
    weight: u64,
    hold: String,
    state: StepState,
}

impl StepView {
    fn class(&self) -> &'static str {
        self.state.class()
    }

    fn current(&self) -> bool {
        self.state == StepState::Current
    }
}

/// A canary's planned steps from the controller's status, marked against its current step.
fn steps(status: &serde_json::Value, finished: bool, succeeded: bool) -> Vec<StepView> {
    let current = status["step"].as_u64().map(|s| s as usize);
    status["plan"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, step)| {
            let number = i + 1;
            let state = match current {
                _ if finished && succeeded => StepState::Done,
                Some(c) if number < c => StepState::Done,
                Some(c) if number == c && !finished => StepState::Current,
                _ => StepState::Next,
            };
            StepView {
                number,
                weight: step["weight"].as_u64().unwrap_or(0),
                hold: step["pause_seconds"].as_u64().map_or_else(
                    || "until promoted".to_string(),
                    |s| format!("for {}", mobius_core::duration::human(s * 1000)),
                ),
                state,
            }
        })
        .collect()
}

/// A stacked bar of the weights, one colour per version.
fn weights_svg(weights: &BTreeMap<String, u64>, stable: &str) -> String {
    let mut svg = String::from(
        r#"<svg class="weights" viewBox="0 0 400 36" width="400" height="36" role="img" aria-label="traffic weights">"#,
    );
    let mut x = 0.0;
    for (version, weight) in weights {
        let width = *weight as f64 * 4.0;
        let class = if version == stable { "stable" } else { "canary" };
        svg.push_str(&format!(
            r#"<rect class="{class}" x="{x:.1}" y="0" width="{width:.1}" height="24"><title>{} {weight}%</title></rect>"#,
            escape(version)
        ));
        if *weight > 0 {
            svg.push_str(&format!(
                r#"<text x="{:.1}" y="34" font-size="10">{} {weight}%</text>"#,
                x + 2.0,
                escape(version)
            ));
        }
        x += width;
    }
    svg.push_str("</svg>");
    svg
}

pub(super) async fn rollout_page(State(app): State<Arc<App>>, s: Session, Path(id): Path<i64>) -> Response {
    let rollout = match app.store.rollout(id).await {
        Ok(Some(r)) if s.caller.sees(r.project_id) => r,
        Ok(_) => return error_page(ApiError::not_found(format!("no rollout {id}"))),
        Err(e) => return error_page(e.into()),
    };
    let events = app.store.deploy_events(Some(id), 200).await.unwrap_or_default();
    let weights: BTreeMap<String, u64> = rollout.status["weights"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default();
    let stable = rollout.status["stable"].as_str().unwrap_or_default().to_string();
    let live = rollout.finished_at.is_none();
    let preview = rollout.status["preview"].as_str().filter(|_| live).map(str::to_string);
    let rates = rollout.status["rates"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(version, r)| RateView {
                    version: version.clone(),
                    // A paused blue-green's new version serves the preview alone.
                    weight: match weights.get(version) {
                        _ if preview.is_some() && *version == rollout.version => "preview".into(),
                        Some(w) => format!("{w}%"),
                        None => "-".into(),
                    },
                    rps: format!("{:.1}", r["requests_per_second"].as_f64().unwrap_or(0.0)),
                    error_ratio: format!("{:.2}%", r["error_ratio"].as_f64().unwrap_or(0.0) * 100.0),
                    p99: r["p99_ms"].as_f64().map_or("-".into(), |p| format!("{p:.1} ms")),
                })
                .collect()
        })
        .unwrap_or_default();
    let approvable = deploy::awaits_approval(&app.deployer(), &rollout).await.unwrap_or(false);
    render(RolloutPage {
        user: s.caller.name.clone(),
        csrf: s.csrf.clone(),
        live,
        steps: steps(&rollout.status, !live, rollout.phase == Phase::Succeeded),
        preview,
        approvable: approvable && s.caller.may(Role::Maintainer, rollout.project_id),
        promotable: rollout.phase == Phase::Paused && !approvable && s.caller.may(Role::Developer, rollout.project_id),
        can_abort: s.caller.may(Role::Developer, rollout.project_id),
        weights_svg: weights_svg(&weights, &stable),
        rates,
        events: events.iter().rev().map(|e| EventView::new(e.at, e.kind.as_str(), &e.actor, &e.message)).collect(),
        rollout: row(&rollout),
    })
}

pub(super) async fn rollout_command(
    State(app): State<Arc<App>>,
    s: Session,
    Path((id, which)): Path<(i64, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = s.refusal(&form) {
        return refused;
    }
    let rollout = match app.store.rollout(id).await {
        Ok(Some(r)) if s.caller.sees(r.project_id) => r,
        Ok(_) => return error_page(ApiError::not_found(format!("no rollout {id}"))),
        Err(e) => return error_page(e.into()),
    };
    let (role, command) = match which.as_str() {
        "promote" => (Role::Developer, Command::Promote),
        "abort" => (Role::Developer, Command::Abort(s.caller.name.clone())),
        "approve" => (Role::Maintainer, Command::Approve),
        _ => return error_page(ApiError::not_found(format!("no command `{which}`"))),
    };
    if let Err(e) = s.caller.require(role, rollout.project_id, &rollout.project) {
        return error_page(e);
    }
    let kind = command.requested();
    if let Err(e) = deploy::command(&app.deployer(), &rollout, command, &s.caller.actor()).await {
        return error_page(e.into());
    }
    let event = crate::api::deploy::requested(kind, &s.caller.actor(), &s.caller.remote, &rollout)
        .data(serde_json::json!({"rollout": id}));
    if let Err(e) = app.store.append(event).await {
        tracing::error!(error = %e, "cannot record a rollout command in the event log");
    }
    Redirect::to(&format!("/ui/rollouts/{id}")).into_response()
}
