//! Prometheus rule files and their evaluation: groups of recording and alerting rules
//! evaluated in order at the group's interval; recorded series and the `ALERTS` and
//! `ALERTS_FOR_STATE` series are written back to the store (ended with staleness
//! markers when they go away), and alerts move through inactive, pending and firing
//! as Prometheus' rule manager moves them, with `for` and `keep_firing_for`.

use mobius_config::yaml::{self, Node};
use mobius_config::{parse_duration, Checker};
use mobius_config::{Diagnostic, FileErrors, SourceFile};
use mobius_promql::{self as promql, Expr, Value};
use mobius_series::labels::{Labels, METRIC_NAME};
use mobius_series::STALE_NAN_BITS;
use mobius_template::{self as template, TemplateData};
use mobius_tsdb::db::Db;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// How long a resolved alert is still sent (so receivers see it resolve).
const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// How often a firing alert is sent again to keep it alive at the receiver.
const RESEND_DELAY_MS: i64 = 60 * 1000;

/// One `groups` entry of a rule file.
#[derive(Clone, Debug)]
pub struct RuleGroup {
    pub name: String,
    pub file: String,
    pub interval: Duration,
    /// At most this many series or alerts per rule (0: no limit).
    pub limit: usize,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// The recorded metric or the alert's name.
    pub name: String,
    pub query: String,
    pub expr: Expr,
    pub labels: Vec<(String, String)>,
    pub kind: RuleKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RuleKind {
    Record,
    Alert { hold: Duration, keep_firing_for: Duration, annotations: Vec<(String, String)> },
}

/// Reads a Prometheus rule file; every problem is reported with its position.
pub fn parse_rule_file(file: SourceFile, default_interval: Duration) -> Result<Vec<RuleGroup>, FileErrors> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return Err(FileErrors { file, diagnostics: vec![Diagnostic::new(e.pos, e.message)] }),
    };
    let mut c = Checker { diagnostics: Vec::new() };
    let groups = rule_groups(&mut c, &root, &file.path, default_interval);
    c.finish(file, groups)
}

/// A rule file's content at `root` (the file itself, or a project's `monitoring.rules`).
pub fn rule_groups(c: &mut Checker, root: &Node, path: &str, default_interval: Duration) -> Vec<RuleGroup> {
    let mut groups: Vec<RuleGroup> = Vec::new();
    for (_, value) in c.entries(root, "a rule file", &["groups"], &[]) {
        let Some(items) = value.as_seq() else {
            c.error(value.pos, "`groups` must be a list");
            continue;
        };
        for item in items {
            let group = rule_group(c, item, path, default_interval);
            if groups.iter().any(|g| g.name == group.name) {
                c.error(item.pos, format!("group `{}` is defined twice", group.name));
            }
            groups.push(group);
        }
    }
    groups
}

fn rule_group(c: &mut Checker, node: &Node, file: &str, default_interval: Duration) -> RuleGroup {
    let mut group = RuleGroup {
        name: String::new(),
        file: file.to_string(),
        interval: default_interval,
        limit: 0,
        rules: Vec::new(),
    };
    for (key, value) in c.entries(node, "a rule group", &["name", "interval", "limit", "rules"], &["query_offset"]) {
        match key {
            "name" => group.name = c.string(value, "`name`").unwrap_or_default(),
            "interval" => group.interval = c.duration(value, "`interval`").unwrap_or(default_interval),
            "limit" => match value.scalar_string().and_then(|s| s.parse().ok()) {
                Some(n) => group.limit = n,
                None => c.error(value.pos, "`limit` must be a whole number"),
            },
            _ => match value.as_seq() {
                Some(items) => group.rules.extend(items.iter().filter_map(|r| rule(c, r))),
                None => c.error(value.pos, "`rules` must be a list"),
            },
        }
    }
    if group.name.is_empty() {
        c.error(node.pos, "a rule group needs a `name`");
    }
    group
}

fn templates(c: &mut Checker, node: &Node, what: &str) -> Vec<(String, String)> {
    let Some(map) = node.as_map() else {
        c.error(node.pos, format!("{what} must be a mapping"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in map {
        let name = key.as_str().unwrap_or("");
        if !mobius_series::valid_label_name(name) {
            c.error(key.pos, format!("invalid {what} name `{name}`"));
            continue;
        }
        let Some(text) = c.string(value, &format!("the value of `{name}`")) else { continue };
        if let Err(e) = template::check(&text) {
            c.error(value.pos, format!("the template of `{name}` does not parse: {e}"));
        }
        out.push((name.to_string(), text));
    }
    out
}

fn rule(c: &mut Checker, node: &Node) -> Option<Rule> {
    let mut record = None;
    let mut alert = None;
    let mut expr = None;
    let mut expr_given = false;
    let mut labels = Vec::new();
    let mut annotations = Vec::new();
    let (mut hold, mut keep_firing_for) = (Duration::ZERO, Duration::ZERO);
    let mut alert_only = Vec::new();
    for (key, value) in
        c.entries(node, "a rule", &["record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"], &[])
    {
        match key {
            "record" => record = c.string(value, "`record`").map(|s| (s, value.pos)),
            "alert" => alert = c.string(value, "`alert`"),
            "expr" => {
                expr_given = true;
                let Some(text) = c.string(value, "`expr`") else { continue };
                match promql::parse(&text) {
                    Ok(parsed) => expr = Some((text, parsed)),
                    Err(e) => c.error(
                        value.pos,
                        format!(
                            "`expr` does not parse: {}",
                            e.to_string().replace("invalid parameter \"query\": ", "")
                        ),
                    ),
                }
            }
            "for" | "keep_firing_for" => {
                alert_only.push((key, value.pos));
                match value.scalar_string().as_deref().and_then(parse_duration) {
                    Some(d) if key == "for" => hold = d,
                    Some(d) => keep_firing_for = d,
                    None => c.error(value.pos, format!("`{key}` must be a duration such as `5m` or `0s`")),
                }
            }
            "labels" => labels = templates(c, value, "label"),
            _ => {
                alert_only.push((key, value.pos));
                annotations = templates(c, value, "annotation");
            }
        }
    }
    let name = match (record, &alert) {
        (Some(_), Some(_)) => {
            c.error(node.pos, "a rule has either `record` or `alert`, not both");
            return None;
        }
        (None, None) => {
            c.error(node.pos, "a rule needs `record` or `alert`");
            return None;
        }
        (Some((name, pos)), None) => {
            if !mobius_series::valid_metric_name(&name) {
                c.error(pos, format!("`{name}` is not a valid metric name"));
            }
            for (key, pos) in alert_only {
                c.error(pos, format!("`{key}` is only for alerting rules"));
            }
            name
        }
        (None, Some(name)) => name.clone(),
    };
    let Some((query, expr)) = expr else {
        if !expr_given {
            c.error(node.pos, format!("rule `{name}` needs an `expr`"));
        }
        return None;
    };
    let kind = if alert.is_some() { RuleKind::Alert { hold, keep_firing_for, annotations } } else { RuleKind::Record };
    Some(Rule { name, query, expr, labels, kind })
}

/// Where an alert is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One series of an alerting rule's result, while it is active or recently resolved.
#[derive(Clone, Debug)]
pub struct ActiveAlert {
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub state: AlertState,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub keep_firing_since: Option<i64>,
    pub valid_until: i64,
}

/// An alert handed to the alert manager, in the shape Prometheus sends.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingAlert {
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub starts_at: i64,
    /// When it resolved, or until when it is valid without being sent again.
    pub ends_at: i64,
    pub generator_url: String,
}

/// A rule with what its last evaluation found.
#[derive(Clone, Debug)]
pub struct RuleState {
    pub rule: Rule,
    /// `unknown` before the first evaluation, then `ok` or `err`.
    pub health: &'static str,
    pub last_error: Option<String>,
    pub last_evaluation: Option<i64>,
    pub evaluation_seconds: f64,
    pub active: BTreeMap<Labels, ActiveAlert>,
}

/// A group with its rules' states, evaluated as one.
#[derive(Debug)]
pub struct GroupState {
    pub group: RuleGroup,
    pub rules: Vec<RuleState>,
    pub last_evaluation: Option<i64>,
    pub evaluation_seconds: f64,
    written: HashSet<Labels>,
}

/// What the templates and generator URLs see of the server.
#[derive(Clone, Debug, Default)]
pub struct EvalContext {
    pub external_labels: Vec<(String, String)>,
    pub external_url: String,
}

impl GroupState {
    pub fn new(group: RuleGroup) -> GroupState {
        let rules = group
            .rules
            .iter()
            .map(|rule| RuleState {
                rule: rule.clone(),
                health: "unknown",
                last_error: None,
                last_evaluation: None,
                evaluation_seconds: 0.0,
                active: BTreeMap::new(),
            })
            .collect();
        GroupState { group, rules, last_evaluation: None, evaluation_seconds: 0.0, written: HashSet::new() }
    }

    /// After a restart: alerts that were pending or firing within the last hour come
    /// back as pending since the time `ALERTS_FOR_STATE` recorded (Prometheus' "for
    /// state restoration"), with Prometheus' rules for the time the server was down:
    /// - a rule whose `for` is shorter than `grace` is not restored: it waits its
    ///   whole `for` again;
    /// - an alert that was firing is firing again at the next evaluation;
    /// - one with less than `grace` left to wait fires `grace` from now;
    /// - otherwise it waits what it had left, so the time down does not count.
    pub fn restore_for_state(&mut self, db: &Db, t: i64, grace: Duration) {
        const OUTAGE_TOLERANCE_MS: i64 = 3_600_000;
        let grace = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        for state in &mut self.rules {
            let RuleKind::Alert { hold, .. } = &state.rule.kind else { continue };
            let hold = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
            if hold < grace {
                continue;
            }
            let matchers = [
                mobius_series::labels::Matcher::equal(METRIC_NAME, "ALERTS_FOR_STATE"),
                mobius_series::labels::Matcher::equal("alertname", &state.rule.name),
            ];
            for (labels, samples) in db.select(&matchers, t - OUTAGE_TOLERANCE_MS, t) {
                let Some(&(down_at, since)) = samples.iter().rev().find(|(_, v)| !mobius_series::is_stale(*v)) else {
                    continue;
                };
                if samples.last().is_some_and(|(_, v)| mobius_series::is_stale(*v)) {
                    continue;
                }
                let since = (since * 1000.0) as i64;
                let remaining = hold - (down_at - since);
                let active_at = if remaining <= 0 {
                    since
                } else if remaining < grace {
                    t + grace - hold
                } else {
                    since + (t - down_at)
                };
                let labels = labels.without(METRIC_NAME);
                state.active.entry(labels.clone()).or_insert(ActiveAlert {
                    labels,
                    annotations: Vec::new(),
                    state: AlertState::Pending,
                    value: 0.0,
                    active_at,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    keep_firing_since: None,
                    valid_until: 0,
                });
            }
        }
    }

    /// Takes over the alerts of the same rules of a group being replaced by a reload,
    /// so a reload neither resets `for` nor forgets what fired.
    pub fn carry_over(&mut self, old: GroupState) {
        // As Prometheus does: a rule keeps its alerts when its name and labels stay,
        // even if its expression changed (its alerts then resolve as they should).
        let mut old_rules: Vec<_> = old.rules.into_iter().map(Some).collect();
        for new in &mut self.rules {
            let same = |o: &Option<RuleState>| {
                o.as_ref().is_some_and(|o| {
                    o.rule.name == new.rule.name
                        && o.rule.labels == new.rule.labels
                        && matches!(o.rule.kind, RuleKind::Alert { .. })
                            == matches!(new.rule.kind, RuleKind::Alert { .. })
                })
            };
            if let Some(found) = old_rules.iter_mut().find(|o| same(o)).and_then(Option::take) {
                new.active = found.active;
            }
        }
        self.written = old.written;
    }

    /// Evaluates every rule in order at `t` (milliseconds), writes the recorded and
    /// `ALERTS` series, and returns the alerts due to be sent.
    pub fn evaluate(&mut self, db: &Db, t: i64, ctx: &EvalContext) -> Vec<OutgoingAlert> {
        let started = std::time::Instant::now();
        let mut outgoing = Vec::new();
        let mut written = HashSet::new();
        let limit = self.group.limit;
        let interval_ms = self.group.interval.as_millis() as i64;
        for state in &mut self.rules {
            let rule_started = std::time::Instant::now();
            let samples = match evaluate_rule(db, state, t, ctx, limit) {
                Ok(samples) => {
                    state.health = "ok";
                    state.last_error = None;
                    samples
                }
                Err(message) => {
                    tracing::warn!(rule = %state.rule.name, group = %self.group.name, error = %message, "rule evaluation failed");
                    state.health = "err";
                    state.last_error = Some(message);
                    Vec::new()
                }
            };
            if let Err(e) = db.append(samples.iter().map(|(l, v)| (l, t, *v))) {
                tracing::error!(error = %e, "cannot store rule results");
            }
            written.extend(samples.into_iter().map(|(l, _)| l));
            if matches!(state.rule.kind, RuleKind::Alert { .. }) {
                outgoing.extend(due_alerts(state, t, interval_ms, ctx));
            }
            state.last_evaluation = Some(t);
            state.evaluation_seconds = rule_started.elapsed().as_secs_f64();
        }
        let gone: Vec<Labels> = self.written.difference(&written).cloned().collect();
        if let Err(e) = db.append(gone.iter().map(|l| (l, t, f64::from_bits(STALE_NAN_BITS)))) {
            tracing::error!(error = %e, "cannot end series of rules");
        }
        self.written = written;
        self.last_evaluation = Some(t);
        self.evaluation_seconds = started.elapsed().as_secs_f64();
        outgoing
    }
}

fn instant_vector(db: &Db, expr: &Expr, t: i64) -> Result<Vec<(Labels, f64)>, String> {
    match promql::instant(db, expr, t).map_err(|e| e.to_string())? {
        Value::Vector(v) => Ok(v),
        Value::Scalar(v) => Ok(vec![(Labels::default(), v)]),
        other => Err(format!("rule result is a {}, not a vector or scalar", other.type_name())),
    }
}

/// One rule's evaluation: the series it writes (recorded samples, or `ALERTS` and
/// `ALERTS_FOR_STATE`), updating an alerting rule's active alerts.
fn evaluate_rule(
    db: &Db,
    state: &mut RuleState,
    t: i64,
    ctx: &EvalContext,
    limit: usize,
) -> Result<Vec<(Labels, f64)>, String> {
    let vector = instant_vector(db, &state.rule.expr, t)?;
    let rule = &state.rule;
    match &rule.kind {
        RuleKind::Record => {
            let mut out = Vec::with_capacity(vector.len());
            let mut seen = HashSet::new();
            for (labels, v) in vector {
                let mut pairs: Vec<(String, String)> =
                    labels.iter().filter(|(k, _)| *k != METRIC_NAME).map(|(k, v)| (k.into(), v.into())).collect();
                pairs.extend(rule.labels.iter().cloned());
                pairs.push((METRIC_NAME.into(), rule.name.clone()));
                let labels = Labels::new(pairs);
                if !seen.insert(labels.clone()) {
                    return Err("vector contains metrics with the same labelset after applying rule labels".into());
                }
                out.push((labels, v));
            }
            if limit > 0 && out.len() > limit {
                return Err(format!("exceeded limit of {limit} with {} series", out.len()));
            }
            Ok(out)
        }
        RuleKind::Alert { hold, keep_firing_for, annotations } => {
            let mut found: BTreeMap<Labels, (f64, Vec<(String, String)>)> = BTreeMap::new();
            for (labels, v) in vector {
                let data = TemplateData {
                    labels: Some(&labels),
                    value: v,
                    external_labels: &ctx.external_labels,
                    external_url: &ctx.external_url,
                };
                let expand = |(name, text): &(String, String)| {
                    let value = template::expand(name, text, &data)
                        .unwrap_or_else(|e| format!("<error expanding template: {e}>"));
                    (name.clone(), value)
                };
                let mut pairs: Vec<(String, String)> =
                    labels.iter().filter(|(k, _)| *k != METRIC_NAME).map(|(k, v)| (k.into(), v.into())).collect();
                pairs.extend(rule.labels.iter().map(expand));
                pairs.push(("alertname".into(), rule.name.clone()));
                let alert_labels = Labels::new(pairs);
                let expanded = annotations.iter().map(expand).collect();
                if found.insert(alert_labels, (v, expanded)).is_some() {
                    return Err("vector contains metrics with the same labelset after applying alert labels".into());
                }
            }
            for (labels, (value, annotations)) in &found {
                match state.active.get_mut(labels) {
                    Some(alert) if alert.state != AlertState::Inactive => {
                        alert.value = *value;
                        alert.annotations.clone_from(annotations);
                    }
                    _ => {
                        state.active.insert(
                            labels.clone(),
                            ActiveAlert {
                                labels: labels.clone(),
                                annotations: annotations.clone(),
                                state: AlertState::Pending,
                                value: *value,
                                active_at: t,
                                fired_at: None,
                                resolved_at: None,
                                last_sent_at: None,
                                keep_firing_since: None,
                                valid_until: 0,
                            },
                        );
                    }
                }
            }
            let hold_ms = hold.as_millis() as i64;
            let keep_ms = keep_firing_for.as_millis() as i64;
            state.active.retain(|labels, alert| {
                if found.contains_key(labels) {
                    alert.keep_firing_since = None;
                } else {
                    let mut keep_firing = false;
                    if alert.state == AlertState::Firing && keep_ms > 0 {
                        let since = *alert.keep_firing_since.get_or_insert(t);
                        keep_firing = t - since < keep_ms;
                    }
                    if alert.state == AlertState::Pending
                        || alert.resolved_at.is_some_and(|r| t - r > RESOLVED_RETENTION_MS)
                    {
                        return false;
                    }
                    if !keep_firing {
                        if alert.state != AlertState::Inactive {
                            alert.state = AlertState::Inactive;
                            alert.resolved_at = Some(t);
                        }
                        return true;
                    }
                }
                if alert.state == AlertState::Pending && t - alert.active_at >= hold_ms {
                    alert.state = AlertState::Firing;
                    alert.fired_at = Some(t);
                }
                true
            });
            let active = state.active.values().filter(|a| a.state != AlertState::Inactive).count();
            if limit > 0 && active > limit {
                state.active.clear();
                return Err(format!("exceeded limit of {limit} with {active} alerts"));
            }
            let mut out = Vec::new();
            for alert in state.active.values().filter(|a| a.state != AlertState::Inactive) {
                let mut pairs: Vec<(String, String)> = alert.labels.iter().map(|(k, v)| (k.into(), v.into())).collect();
                pairs.push((METRIC_NAME.into(), "ALERTS_FOR_STATE".into()));
                out.push((Labels::new(pairs.clone()), alert.active_at as f64 / 1000.0));
                pairs.push((METRIC_NAME.into(), "ALERTS".into()));
                pairs.push(("alertstate".into(), alert.state.as_str().into()));
                out.push((Labels::new(pairs), 1.0));
            }
            Ok(out)
        }
    }
}

/// The alerts of a rule that are due to be sent at `t`: firing ones once a minute,
/// resolved ones once after resolving (and again until they are forgotten).
fn due_alerts(state: &mut RuleState, t: i64, interval_ms: i64, ctx: &EvalContext) -> Vec<OutgoingAlert> {
    let generator_url = format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        ctx.external_url.trim_end_matches('/'),
        form_urlencoded::byte_serialize(state.rule.query.as_bytes()).collect::<String>()
    );
    let mut out = Vec::new();
    for alert in state.active.values_mut() {
        if alert.state == AlertState::Pending {
            continue;
        }
        let resolved_since_sent = match (alert.resolved_at, alert.last_sent_at) {
            (Some(r), Some(s)) => r > s,
            (Some(_), None) => true,
            _ => false,
        };
        let due = resolved_since_sent || alert.last_sent_at.is_none_or(|s| s + RESEND_DELAY_MS < t);
        if !due {
            continue;
        }
        alert.last_sent_at = Some(t);
        alert.valid_until = t + 4 * interval_ms.max(RESEND_DELAY_MS);
        let mut labels: Vec<(String, String)> = ctx.external_labels.clone();
        labels.extend(alert.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        out.push(OutgoingAlert {
            labels: Labels::new(labels),
            annotations: alert.annotations.clone(),
            starts_at: alert.fired_at.unwrap_or(alert.active_at),
            ends_at: alert.resolved_at.unwrap_or(alert.valid_until),
            generator_url: generator_url.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<RuleGroup>, Vec<String>> {
        parse_rule_file(SourceFile::new("rules.yml", text), Duration::from_secs(60))
            .map_err(|e| e.diagnostics.iter().map(|d| d.short()).collect())
    }

    #[test]
    fn a_rule_file_reads_as_prometheus_writes_it() {
        let groups = parse(
            "groups:\n  - name: api\n    interval: 5s\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n      - alert: Down\n        expr: up == 0\n        for: 2s\n        keep_firing_for: 1m\n        labels: { severity: page }\n        annotations:\n          summary: '{{ $labels.instance }} is down'\n",
        )
        .unwrap();
        assert_eq!((groups[0].name.as_str(), groups[0].interval), ("api", Duration::from_secs(5)));
        assert_eq!(groups[0].rules[0].kind, RuleKind::Record);
        assert_eq!(
            groups[0].rules[1].kind,
            RuleKind::Alert {
                hold: Duration::from_secs(2),
                keep_firing_for: Duration::from_secs(60),
                annotations: vec![("summary".into(), "{{ $labels.instance }} is down".into())]
            }
        );
    }

    #[test]
    fn rule_file_problems_have_positions() {
        let errors = parse(
            "groups:\n  - name: a\n    rules:\n      - record: 'bad name'\n        expr: sum(\n      - alert: X\n        record: y\n        expr: up\n      - record: ok\n        expr: up\n        for: 1m\n      - alert: T\n        expr: up\n        annotations: { s: '{{ .Labels' }\n",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].starts_with("5:15 `expr` does not parse"), "{errors:?}");
        assert_eq!(errors[1], "4:17 `bad name` is not a valid metric name");
        assert_eq!(errors[2], "6:9 a rule has either `record` or `alert`, not both");
        assert_eq!(errors[3], "11:14 `for` is only for alerting rules");
        assert!(errors[4].starts_with("14:27 the template of `s` does not parse"), "{errors:?}");
    }
}
