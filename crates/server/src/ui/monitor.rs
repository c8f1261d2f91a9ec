//! Monitor pages: the query explorer (PromQL over a range, drawn as an SVG chart), the
//! service dashboard (request rate, error ratio and p99 per version from the router's
//! series, instance health), alerts with silences, and log search.

use super::chart::line_chart;
use super::{error_page, render, when, Session};
use crate::app::App;
use crate::auth::Role;
use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use mobius_promql::{self as promql, Value};
use mobius_series::Labels;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mobius_series::now_ms;

fn series_name(labels: &Labels) -> String {
    let text = labels.to_string();
    if text == "{}" {
        "value".into()
    } else {
        text
    }
}

/// A range query drawn as a chart, with the last value of each series.
fn chart(app: &App, expr: &str, range_ms: i64) -> Result<(String, Vec<(String, String)>), String> {
    let parsed = promql::parse(expr).map_err(|e| e.to_string())?;
    let end = now_ms();
    let start = end - range_ms;
    let step = (range_ms / 120).max(1000);
    let series = promql::range(&app.monitor.db, &parsed, start, end, step).map_err(|e| e.to_string())?;
    let named: Vec<(String, Vec<(i64, f64)>)> =
        series.iter().take(20).map(|(l, p)| (series_name(l), p.clone())).collect();
    let last = named
        .iter()
        .map(|(n, p)| (n.clone(), p.last().map_or_else(|| "-".into(), |(_, v)| format!("{v:.4}"))))
        .collect();
    Ok((line_chart(&named, start, end, step), last))
}

#[derive(Template)]
#[template(path = "query.html")]
pub(super) struct QueryPage {
    user: String,
    expr: String,
    range: String,
    chart: String,
    values: Vec<(String, String)>,
    error: String,
}

/// `GET /ui/query?expr=...&range=1h`.
pub(super) async fn query_page(
    State(app): State<Arc<App>>,
    s: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = s.caller.require_global(Role::Viewer) {
        return error_page(e);
    }
    let expr = q.get("expr").cloned().unwrap_or_default();
    let range = q.get("range").cloned().unwrap_or_else(|| "1h".into());
    let mut page = QueryPage {
        user: s.caller.name.clone(),
        expr,
        range,
        chart: String::new(),
        values: Vec::new(),
        error: String::new(),
    };
    if !page.expr.trim().is_empty() {
        let range_ms = humantime::parse_duration(&page.range).map_or(3_600_000, |d| d.as_millis() as i64);
        let (app, expr) = (Arc::clone(&app), page.expr.clone());
        match tokio::task::spawn_blocking(move || chart(&app, &expr, range_ms)).await {
            Ok(Ok((chart, values))) => (page.chart, page.values) = (chart, values),
            Ok(Err(e)) => page.error = e,
            Err(e) => page.error = e.to_string(),
        }
    }
    render(page)
}

pub(super) struct VersionRow {
    version: String,
    rate: String,
    errors: String,
    p99: String,
}

pub(super) struct InstanceRow {
    instance: String,
    version: String,
    up: bool,
}

pub(super) struct ServiceView {
    service: String,
    env: String,
    versions: Vec<VersionRow>,
    instances: Vec<InstanceRow>,
    chart: String,
}

#[derive(Template)]
#[template(path = "services.html")]
pub(super) struct ServicesPage {
    user: String,
    services: Vec<ServiceView>,
}

fn by_version(db: &mobius_tsdb::Db, expr: &str, at: i64) -> BTreeMap<String, f64> {
    let Ok(parsed) = promql::parse(expr) else { return BTreeMap::new() };
    match promql::instant(db, &parsed, at) {
        Ok(Value::Vector(samples)) => {
            samples.into_iter().map(|(l, v)| (l.get("version").unwrap_or("-").to_string(), v)).collect()
        }
        _ => BTreeMap::new(),
    }
}

fn services(app: &App) -> Vec<ServiceView> {
    let db = &app.monitor.db;
    let at = now_ms();
    let mut places: BTreeMap<(String, String), Vec<InstanceRow>> = BTreeMap::new();
    if let Ok(Value::Vector(ups)) = promql::parse("up{service!=\"\"}").and_then(|e| promql::instant(db, &e, at)) {
        for (labels, v) in ups {
            let key = (labels.get("service").unwrap_or("").to_string(), labels.get("env").unwrap_or("").to_string());
            places.entry(key).or_default().push(InstanceRow {
                instance: labels.get("instance").unwrap_or("").to_string(),
                version: labels.get("version").unwrap_or("").to_string(),
                up: v == 1.0,
            });
        }
    }
    let mut out = Vec::new();
    for ((service, env), instances) in places {
        let listener = format!("{env}.{service}").replace('"', "");
        let sel = format!("listener=\"{listener}\"");
        let rate = by_version(db, &format!("sum by (version) (rate(mobius_router_requests_total{{{sel}}}[1m]))"), at);
        let errors = by_version(
            db,
            &format!("sum by (version) (rate(mobius_router_requests_total{{{sel},code=\"5xx\"}}[1m])) / sum by (version) (rate(mobius_router_requests_total{{{sel}}}[1m]))"),
            at,
        );
        let p99 = by_version(
            db,
            &format!("histogram_quantile(0.99, sum by (version, le) (rate(mobius_router_request_duration_seconds_bucket{{{sel}}}[1m])))"),
            at,
        );
        let mut versions: Vec<String> = rate.keys().chain(instances.iter().map(|i| &i.version)).cloned().collect();
        versions.sort();
        versions.dedup();
        let rows = versions
            .into_iter()
            .map(|v| VersionRow {
                rate: rate.get(&v).map_or("-".into(), |r| format!("{r:.2}/s")),
                errors: errors.get(&v).filter(|e| e.is_finite()).map_or("-".into(), |e| format!("{:.2}%", e * 100.0)),
                p99: p99.get(&v).filter(|p| p.is_finite()).map_or("-".into(), |p| format!("{:.1} ms", p * 1000.0)),
                version: v,
            })
            .collect();
        let query = format!("sum by (version) (rate(mobius_router_requests_total{{{sel}}}[1m]))");
        let chart = chart(app, &query, 30 * 60 * 1000).map(|(c, _)| c).unwrap_or_default();
        out.push(ServiceView { service, env, versions: rows, instances, chart });
    }
    out
}

/// `GET /ui/services`.
pub(super) async fn services_page(State(app): State<Arc<App>>, s: Session) -> Response {
    if let Err(e) = s.caller.require_global(Role::Viewer) {
        return error_page(e);
    }
    let found = {
        let app = Arc::clone(&app);
        tokio::task::spawn_blocking(move || services(&app)).await.unwrap_or_default()
    };
    render(ServicesPage { user: s.caller.name.clone(), services: found })
}

pub(super) struct AlertRow {
    name: String,
    labels: String,
    state: String,
    since: String,
    receivers: String,
    summary: String,
    /// `matchers=…` for the Silence link: these labels exactly.
    silence_query: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
pub(super) struct AlertsPage {
    user: String,
    configured: bool,
    alerts: Vec<AlertRow>,
    /// The Silence links, for developers and above.
    can_silence: bool,
    /// Silences in force now.
    active_silences: usize,
}

/// `GET /ui/alerts`.
pub(super) async fn alerts_page(State(app): State<Arc<App>>, s: Session) -> Response {
    if let Err(e) = s.caller.require_global(Role::Viewer) {
        return error_page(e);
    }
    let Some(am) = app.monitor.alerts.clone() else {
        return render(AlertsPage {
            user: s.caller.name.clone(),
            configured: false,
            alerts: Vec::new(),
            can_silence: false,
            active_silences: 0,
        });
    };
    let now = now_ms();
    let alerts = am
        .alerts()
        .into_iter()
        .map(|v| AlertRow {
            name: v.alert.labels.get("alertname").unwrap_or("-").to_string(),
            labels: v.alert.labels.to_string(),
            state: if v.silenced_by.is_empty() && v.inhibited_by.is_empty() {
                "active".into()
            } else {
                "suppressed".into()
            },
            since: when(v.alert.starts_at),
            receivers: v.receivers.join(", "),
            summary: v
                .alert
                .annotations
                .iter()
                .find(|(k, _)| k == "summary")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            silence_query: form_urlencoded::Serializer::new(String::new())
                .append_pair("matchers", &super::watch::matchers_of(&v.alert.labels))
                .finish(),
        })
        .collect();
    let active_silences =
        am.silences().iter().filter(|x| x.state(now) == mobius_alerting::SilenceState::Active).count();
    render(AlertsPage {
        user: s.caller.name.clone(),
        configured: true,
        alerts,
        can_silence: s.caller.may_globally(Role::Developer),
        active_silences,
    })
}

pub(super) struct LogRow {
    at: String,
    stream: String,
    line: String,
}

#[derive(Template)]
#[template(path = "logs.html")]
pub(super) struct LogsPage {
    user: String,
    query: String,
    since: String,
    rows: Vec<LogRow>,
    error: String,
}

/// `GET /ui/logs?query={service="web"} |= "error"&since=1h`.
pub(super) async fn logs_page(
    State(app): State<Arc<App>>,
    s: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = s.caller.require_global(Role::Viewer) {
        return error_page(e);
    }
    let query = q.get("query").cloned().unwrap_or_default();
    let since = q.get("since").cloned().unwrap_or_else(|| "1h".into());
    let mut page = LogsPage { user: s.caller.name.clone(), query, since, rows: Vec::new(), error: String::new() };
    if !page.query.trim().is_empty() {
        match mobius_logs::parse_log_query(&page.query) {
            Err(e) => page.error = e.to_string(),
            Ok(parsed) => {
                let end = now_ms() * 1_000_000;
                let span = humantime::parse_duration(&page.since).map_or(3_600_000_000_000, |d| d.as_nanos() as i64);
                let logs = Arc::clone(&app.monitor.logs);
                match tokio::task::spawn_blocking(move || logs.query(&parsed, end - span, end, 500, true)).await {
                    Ok(Ok(lines)) => {
                        page.rows = lines
                            .into_iter()
                            .map(|l| LogRow { at: when(l.ts / 1_000_000), stream: l.labels.to_string(), line: l.line })
                            .collect()
                    }
                    Ok(Err(e)) => page.error = e.to_string(),
                    Err(e) => page.error = e.to_string(),
                }
            }
        }
    }
    render(page)
}
