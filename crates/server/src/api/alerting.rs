//! Rules and alerts on Prometheus' API (`/api/v1/rules`, `/api/v1/alerts`,
//! `/api/v1/status/buildinfo`) and Alertmanager's v2 API (`/api/v2/alerts`,
//! `/api/v2/alerts/groups`, `/api/v2/silences`, `/api/v2/silence/ID`,
//! `/api/v2/status`, `/api/v2/receivers`), with the server's bearer tokens.

use super::monitor::{format_value, metric_json, prom_error, rfc3339, Refused};
use crate::app::App;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use mobius_alerting::notify::rfc3339 as go_time;
use mobius_alerting::rules::{AlertState, RuleKind};
use mobius_alerting::{now_ms, Alert, AlertManager, Silence, SilenceError};
use mobius_core::EventKind;
use mobius_series::{Labels, MatchOp, Matcher};
use mobius_store::NewEvent;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn pairs_json(pairs: &[(String, String)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn seconds(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

fn monitor<'a>(app: &'a App, caller: &Caller) -> Result<&'a mobius_monitor::runtime::Monitor, Refused> {
    caller.require_global(Role::Viewer)?;
    Ok(&app.monitor)
}

/// `GET /api/v1/rules` (`type=alert|record` filters), in Prometheus' shape.
pub async fn rules(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refused> {
    let monitor = monitor(&app, &caller)?;
    let want = q.get("type").map(String::as_str);
    if want.is_some_and(|t| t != "alert" && t != "record") {
        return Err(prom_error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"type\": must be alert or record",
        ));
    }
    Ok(Json(json!({"status": "success", "data": {"groups": rule_groups(monitor, want)}})))
}

/// The rule groups with each rule's state, health and last error, in Prometheus' shape
/// (`want`: `alert` or `record` keeps one kind).
pub(crate) fn rule_groups(monitor: &mobius_monitor::runtime::Monitor, want: Option<&str>) -> Vec<Value> {
    let mut groups = Vec::new();
    for running in monitor.groups.lock().iter() {
        let g = running.state.lock();
        let mut rules = Vec::new();
        for r in &g.rules {
            let last = r.last_evaluation.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339);
            let common = |kind: &str| {
                json!({
                    "name": r.rule.name,
                    "query": r.rule.query,
                    "labels": pairs_json(&r.rule.labels),
                    "health": r.health,
                    "lastError": r.last_error.clone().unwrap_or_default(),
                    "evaluationTime": r.evaluation_seconds,
                    "lastEvaluation": last,
                    "type": kind,
                })
            };
            match &r.rule.kind {
                RuleKind::Record if want != Some("alert") => rules.push(common("recording")),
                RuleKind::Alert { hold, keep_firing_for, annotations } if want != Some("record") => {
                    let mut rule = common("alerting");
                    let alerts: Vec<Value> =
                        r.active.values().filter(|a| a.state != AlertState::Inactive).map(alert_v1).collect();
                    let state = r
                        .active
                        .values()
                        .map(|a| a.state)
                        .max_by_key(|s| match s {
                            AlertState::Firing => 2,
                            AlertState::Pending => 1,
                            AlertState::Inactive => 0,
                        })
                        .unwrap_or(AlertState::Inactive);
                    rule["state"] = json!(state.as_str());
                    rule["duration"] = json!(seconds(*hold));
                    rule["keepFiringFor"] = json!(seconds(*keep_firing_for));
                    rule["annotations"] = pairs_json(annotations);
                    rule["alerts"] = json!(alerts);
                    rules.push(rule);
                }
                _ => {}
            }
        }
        groups.push(json!({
            "name": g.group.name,
            "file": g.group.file,
            "interval": seconds(g.group.interval),
            "limit": g.group.limit,
            "rules": rules,
            "evaluationTime": g.evaluation_seconds,
            "lastEvaluation": g.last_evaluation.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
        }));
    }
    groups
}

fn alert_v1(a: &mobius_alerting::rules::ActiveAlert) -> Value {
    json!({
        "labels": metric_json(&a.labels),
        "annotations": pairs_json(&a.annotations),
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at),
        "value": format_value(a.value),
    })
}

/// `GET /api/v1/alerts`: pending and firing alerts of every alerting rule.
pub async fn alerts_v1(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Value>, Refused> {
    let monitor = monitor(&app, &caller)?;
    let mut alerts = Vec::new();
    for running in monitor.groups.lock().iter() {
        let g = running.state.lock();
        for r in &g.rules {
            alerts.extend(r.active.values().filter(|a| a.state != AlertState::Inactive).map(alert_v1));
        }
    }
    Ok(Json(json!({"status": "success", "data": {"alerts": alerts}})))
}

/// `GET /api/v1/status/buildinfo`.
pub async fn buildinfo(caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    Ok(Json(json!({"status": "success", "data": {
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("MOBIUS_REVISION").unwrap_or("unknown"),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "none (Mobius is written in Rust)",
    }})))
}

fn alert_manager(app: &App) -> ApiResult<Arc<AlertManager>> {
    app.monitor
        .alerts
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "the server was started without --alertmanager-config"))
}

fn labels_json(labels: &Labels) -> Value {
    Value::Object(labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>())
}

/// An alert posted to `/api/v2/alerts` (Alertmanager's postable alert).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostableAlert {
    labels: HashMap<String, String>,
    #[serde(default)]
    annotations: HashMap<String, String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
}

/// Go's zero time (`0001-01-01T00:00:00Z`), which `amtool alert add` sends for a time it
/// was not given: Alertmanager reads it as unset.
const GO_ZERO_TIME_MS: i64 = -62_135_596_800_000;

fn parse_time(field: &str, text: &Option<String>) -> ApiResult<i64> {
    let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else { return Ok(0) };
    let ms = chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis()).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("{field}: `{text}` is not an RFC 3339 time: {e}"))
    })?;
    Ok(if ms <= GO_ZERO_TIME_MS { 0 } else { ms })
}

/// What `GET /api/v2/alerts` and `/alerts/groups` are asked to keep: Alertmanager's
/// `filter` (matchers, repeatable), `receiver` (an anchored regular expression),
/// `active`, `silenced` and `inhibited` (true by default).
struct AlertQuery {
    filters: Vec<mobius_series::Matcher>,
    receiver: Option<mobius_series::Matcher>,
    active: bool,
    silenced: bool,
    inhibited: bool,
}

impl AlertQuery {
    fn parse(q: &[(String, String)]) -> ApiResult<AlertQuery> {
        let flag = |name: &str| -> ApiResult<bool> {
            match q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()) {
                None | Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(other) => Err(ApiError::bad_request(format!("{name}: `{other}` is not true or false"))),
            }
        };
        let receiver = match q.iter().find(|(k, _)| k == "receiver") {
            Some((_, r)) => Some(
                mobius_series::Matcher::new(mobius_series::MatchOp::Regex, "receiver", r)
                    .map_err(|e| ApiError::bad_request(format!("receiver: {e}")))?,
            ),
            None => None,
        };
        Ok(AlertQuery {
            filters: filters(q)?,
            receiver,
            active: flag("active")?,
            silenced: flag("silenced")?,
            inhibited: flag("inhibited")?,
        })
    }

    fn keeps(&self, v: &mobius_alerting::AlertView) -> bool {
        let silenced = !v.silenced_by.is_empty();
        let inhibited = !v.inhibited_by.is_empty();
        (self.silenced || !silenced)
            && (self.inhibited || !inhibited)
            && (self.active || silenced || inhibited)
            && mobius_alerting::config::matches(&self.filters, &v.alert.labels)
            && self.receiver.as_ref().is_none_or(|m| v.receivers.iter().any(|r| m.matches(r)))
    }
}

/// The `filter` parameters of a request, as matchers.
fn filters(q: &[(String, String)]) -> ApiResult<Vec<mobius_series::Matcher>> {
    let mut out = Vec::new();
    for (_, f) in q.iter().filter(|(k, _)| k == "filter") {
        out.extend(
            mobius_alerting::config::parse_matchers(f)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("filter: {e}")))?,
        );
    }
    Ok(out)
}

/// `POST /api/v2/alerts`: alerts from other systems (developers and above; audited
/// as one entry per request).
pub async fn post_alerts(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(alerts): Json<Vec<PostableAlert>>,
) -> ApiResult<StatusCode> {
    caller.require_global(Role::Developer)?;
    let am = alert_manager(&app)?;
    let mut parsed = Vec::with_capacity(alerts.len());
    for (i, a) in alerts.into_iter().enumerate() {
        if a.labels.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("[{i}].labels: an alert needs at least one label"),
            ));
        }
        if let Some(name) = a.labels.keys().find(|k| !mobius_series::valid_label_name(k)) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("[{i}].labels: invalid label name `{name}`")));
        }
        let starts_at = parse_time(&format!("[{i}].startsAt"), &a.starts_at)?;
        let ends_at = parse_time(&format!("[{i}].endsAt"), &a.ends_at)?;
        if starts_at != 0 && ends_at != 0 && ends_at < starts_at {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("[{i}]: endsAt is before startsAt")));
        }
        let mut annotations: Vec<(String, String)> = a.annotations.into_iter().collect();
        annotations.sort();
        parsed.push(Alert {
            labels: Labels::new(a.labels.into_iter().collect()),
            annotations,
            starts_at,
            ends_at,
            generator_url: a.generator_url,
            updated_at: 0,
        });
    }
    let count = parsed.len();
    am.put(parsed);
    app.store
        .append(
            NewEvent::audit(EventKind::AlertsPost, &caller.actor(), "alertmanager", &caller.remote)
                .data(json!({"alerts": count})),
        )
        .await?;
    Ok(StatusCode::OK)
}

fn gettable(view: &mobius_alerting::AlertView) -> Value {
    let a = &view.alert;
    let suppressed = !view.silenced_by.is_empty() || !view.inhibited_by.is_empty();
    json!({
        "labels": labels_json(&a.labels),
        "annotations": pairs_json(&a.annotations),
        "startsAt": go_time(a.starts_at),
        "endsAt": go_time(a.ends_at),
        "updatedAt": go_time(a.updated_at),
        "generatorURL": a.generator_url,
        "fingerprint": format!("{:016x}", a.fingerprint()),
        "receivers": view.receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "status": {
            "state": if suppressed { "suppressed" } else { "active" },
            "silencedBy": view.silenced_by,
            "inhibitedBy": view.inhibited_by,
        },
    })
}

/// `GET /api/v2/alerts`: `active`, `silenced`, `inhibited` (true/false) and
/// `filter` (matchers) narrow the list, as in Alertmanager.
pub async fn get_alerts(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let am = alert_manager(&app)?;
    let query = AlertQuery::parse(&q)?;
    let out: Vec<Value> = am.alerts().iter().filter(|v| query.keeps(v)).map(gettable).collect();
    Ok(Json(json!(out)))
}

/// `GET /api/v2/alerts/groups`: the same parameters as `/alerts`; groups left without
/// alerts are not listed, as in Alertmanager.
pub async fn get_groups(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let am = alert_manager(&app)?;
    let query = AlertQuery::parse(&q)?;
    let views: HashMap<u64, _> = am.alerts().into_iter().map(|v| (v.alert.fingerprint(), v)).collect();
    let groups: Vec<Value> = am
        .groups()
        .iter()
        .filter(|g| query.receiver.as_ref().is_none_or(|m| m.matches(&g.receiver)))
        .filter_map(|g| {
            let alerts: Vec<Value> = g
                .alerts
                .iter()
                .filter_map(|a| views.get(&a.fingerprint()))
                .filter(|v| query.keeps(v))
                .map(gettable)
                .collect();
            (!alerts.is_empty())
                .then(|| json!({"labels": labels_json(&g.labels), "receiver": {"name": g.receiver}, "alerts": alerts}))
        })
        .collect();
    Ok(Json(json!(groups)))
}

fn silence_json(s: &Silence) -> Value {
    let matchers: Vec<Value> = s
        .matchers
        .iter()
        .filter_map(|m| mobius_alerting::config::parse_matchers(m).ok())
        .flatten()
        .map(|m| {
            json!({
                "name": m.name,
                "value": m.value,
                "isRegex": m.op.is_regex(),
                "isEqual": m.op.is_equal(),
            })
        })
        .collect();
    json!({
        "id": s.id,
        "matchers": matchers,
        "startsAt": go_time(s.starts_at),
        "endsAt": go_time(s.ends_at),
        "updatedAt": go_time(s.updated_at),
        "createdBy": s.created_by,
        "comment": s.comment,
        "status": {"state": s.state(now_ms())},
    })
}

/// `GET /api/v2/silences`.
pub async fn get_silences(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let am = alert_manager(&app)?;
    let wanted = filters(&q)?;
    // As Alertmanager: a silence matches a filter when the labels its matchers name
    // (each with its matcher's value) satisfy the filter.
    let kept = am.silences().into_iter().filter(|s| {
        let pairs: Vec<(String, String)> = s
            .matchers
            .iter()
            .filter_map(|m| mobius_alerting::config::parse_matchers(m).ok())
            .flatten()
            .map(|m| (m.name, m.value))
            .collect();
        mobius_alerting::config::matches(&wanted, &Labels::new(pairs))
    });
    Ok(Json(json!(kept.map(|s| silence_json(&s)).collect::<Vec<_>>())))
}

/// `GET /api/v2/silence/ID`.
pub async fn get_silence(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let am = alert_manager(&app)?;
    let found = am.silences().into_iter().find(|s| s.id == id);
    found
        .map(|s| Json(silence_json(&s)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("silence {id} not found")))
}

#[derive(Deserialize)]
pub struct MatcherBody {
    name: String,
    value: String,
    #[serde(default, rename = "isRegex")]
    is_regex: bool,
    #[serde(default = "yes", rename = "isEqual")]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableSilence {
    #[serde(default)]
    id: String,
    matchers: Vec<MatcherBody>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/v2/silences`: creates a silence, or updates the one with `id`
/// (developers and above, audited).
pub async fn post_silence(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(body): Json<PostableSilence>,
) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Developer)?;
    let matchers = body
        .matchers
        .iter()
        .map(|m| {
            Matcher::new(MatchOp::from_flags(m.is_equal, m.is_regex), &m.name, &m.value)
                .map(|m| m.to_string())
                .map_err(|e| ApiError::bad_request(format!("matchers: `{}`: invalid regular expression: {e}", m.value)))
        })
        .collect::<Result<_, _>>()?;
    let silence = Silence {
        id: body.id,
        matchers,
        starts_at: parse_time("startsAt", &Some(body.starts_at))?,
        ends_at: parse_time("endsAt", &Some(body.ends_at))?,
        created_by: if body.created_by.is_empty() { caller.actor() } else { body.created_by },
        comment: body.comment,
        updated_at: 0,
    };
    let id = put_silence(&app, &caller, silence).await?;
    Ok(Json(json!({"silenceID": id})))
}

/// Creates or updates a silence (developers and above, audited): the API's and the UI's way.
pub(crate) async fn put_silence(app: &App, caller: &Caller, silence: Silence) -> ApiResult<String> {
    caller.require_global(Role::Developer)?;
    let am = alert_manager(app)?;
    let id = am.put_silence(silence.clone()).map_err(silence_error)?;
    app.store
        .append(
            NewEvent::audit(EventKind::SilencePut, &caller.actor(), &id, &caller.remote)
                .data(json!({"matchers": silence.matchers, "comment": silence.comment})),
        )
        .await?;
    Ok(id)
}

/// `DELETE /api/v2/silence/ID`: expires the silence (audited).
pub async fn delete_silence(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    expire_silence(&app, &caller, &id).await?;
    Ok(StatusCode::OK)
}

/// Expires a silence (developers and above, audited): the API's and the UI's way.
pub(crate) async fn expire_silence(app: &App, caller: &Caller, id: &str) -> ApiResult<()> {
    caller.require_global(Role::Developer)?;
    let am = alert_manager(app)?;
    match am.expire_silence(id) {
        Ok(true) => {
            app.store.append(NewEvent::audit(EventKind::SilenceExpire, &caller.actor(), id, &caller.remote)).await?;
            Ok(())
        }
        Ok(false) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("silence {id} not found"))),
        Err(e) => Err(silence_error(e)),
    }
}

/// The status of a refused silence, by what went wrong: the caller's mistake, an
/// unknown silence, or the server failing to store it.
fn silence_error(e: SilenceError) -> ApiError {
    match e {
        SilenceError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        SilenceError::Store(_) => ApiError::internal(e),
        SilenceError::NoMatcher
        | SilenceError::BadMatcher(_)
        | SilenceError::EndsBeforeStart
        | SilenceError::AlreadyExpired(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `GET /api/v2/receivers`.
pub async fn receivers(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let am = alert_manager(&app)?;
    Ok(Json(json!(am.config().receivers.iter().map(|r| json!({"name": r.name})).collect::<Vec<_>>())))
}

/// `GET /api/v2/status`.
pub async fn status(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_global(Role::Viewer)?;
    let am = alert_manager(&app)?;
    let config = am.config();
    Ok(Json(json!({
        "cluster": {"status": "disabled", "peers": []},
        "versionInfo": {"version": env!("CARGO_PKG_VERSION"), "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": ""},
        "config": {"original": format!("route receiver: {}; {} receivers; {} inhibit rules", config.route.receiver, config.receivers.len(), config.inhibit_rules.len())},
        "uptime": go_time(now_ms()),
    })))
}

/// `GET /api/v1/metadata` (`metric`, `limit`): what targets say about their metrics,
/// in Prometheus' shape.
pub async fn metadata(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refused> {
    let monitor = monitor(&app, &caller)?;
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
    let all = monitor.scraper.metadata.lock().clone();
    let data: Map<String, Value> = all
        .into_iter()
        .filter(|(name, _)| q.get("metric").is_none_or(|m| m == name))
        .take(limit)
        .map(|(name, m)| {
            let kind = if m.kind.is_empty() { "unknown".to_string() } else { m.kind };
            (name, json!([{"type": kind, "help": m.help, "unit": m.unit}]))
        })
        .collect();
    Ok(Json(json!({"status": "success", "data": data})))
}
