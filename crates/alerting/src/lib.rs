//! The alert manager, compatible with Alertmanager: alerts from the rule evaluator
//! and from `POST /api/v2/alerts` are routed through the tree of `alertmanager.yml`
//! into groups (by route and `group_by` labels); a group notifies after `group_wait`,
//! then at most every `group_interval` when it changed and every `repeat_interval`
//! while it fires. Silenced and inhibited alerts are left out. Each receiver
//! integration keeps a notification log, so an unchanged group is not sent again.
//! Every flush is also published as a [`GroupEvent`], which incidents follow.
//!
//! Beside it: `rules` evaluates Prometheus rule files (alerts come from there),
//! `templates` expands notification templates, `time_intervals` mutes and activates
//! routes, and `oncall` holds schedules and escalation policies.
#![forbid(unsafe_code)]

pub mod config;
pub mod notify;
pub mod oncall;
pub mod rules;
pub mod templates;
pub mod time_intervals;

use config::{matches, AlertmanagerConfig, GroupBy, Route};
use mobius_series::labels::{Labels, Matcher};
use notify::{Notification, NotifyError};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub use mobius_series::now_ms;

/// Why a silence was not put or expired.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("a silence needs at least one matcher")]
    NoMatcher,
    #[error("{0}")]
    BadMatcher(String),
    #[error("the silence's end is not after its start")]
    EndsBeforeStart,
    #[error("silence {0} not found")]
    NotFound(String),
    #[error("silence {0} already expired")]
    AlreadyExpired(String),
    /// The silences could not be written to `silences.json`; nothing changed on disk.
    #[error("cannot store silences: {0}")]
    Store(#[from] std::io::Error),
}

/// An alert as the alert manager holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Vec<(String, String)>,
    pub starts_at: i64,
    /// When it resolved or stops being valid unless sent again (milliseconds).
    pub ends_at: i64,
    pub generator_url: String,
    pub updated_at: i64,
}

impl Alert {
    pub fn resolved(&self, now: i64) -> bool {
        self.ends_at != 0 && self.ends_at <= now
    }

    /// Alertmanager's fingerprint: FNV-1a over sorted names and values, 0xff separated.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }
}

pub fn fingerprint(labels: &Labels) -> u64 {
    fnv1a(labels.iter().flat_map(|(k, v)| [k.as_bytes(), &[0xff], v.as_bytes(), &[0xff]]))
}

/// FNV-1a, 64 bits, over byte slices in order (Alertmanager's hash).
pub(crate) fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The labels every alert has with the same value.
pub fn common_labels(alerts: &[Alert]) -> Labels {
    let Some(first) = alerts.first() else { return Labels::default() };
    Labels::new(
        first
            .labels
            .iter()
            .filter(|(k, v)| alerts.iter().all(|a| a.labels.get(k) == Some(v)))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// A silence: alerts matching every matcher are not notified between its times.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Silence {
    pub id: String,
    /// Alertmanager matcher syntax, one matcher each (`severity="page"`).
    pub matchers: Vec<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: String,
    pub comment: String,
    pub updated_at: i64,
}

/// Where a silence is at a moment: not started, in force, or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceState {
    Active,
    Pending,
    Expired,
}

impl SilenceState {
    /// Alertmanager's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Active => "active",
            SilenceState::Pending => "pending",
            SilenceState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<SilenceState> {
        [SilenceState::Active, SilenceState::Pending, SilenceState::Expired].into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for SilenceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Silence {
    pub fn state(&self, now: i64) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    fn compiled(&self) -> Vec<Matcher> {
        self.matchers.iter().filter_map(|m| config::parse_matchers(m).ok()).flatten().collect()
    }
}

/// What a group flush did, for incidents and escalation.
#[derive(Clone, Debug)]
pub struct GroupEvent {
    pub group_key: String,
    pub receiver: String,
    pub group_labels: Labels,
    pub status: GroupStatus,
    pub alerts: Vec<Alert>,
    pub at: i64,
}

/// Where an alert group stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStatus {
    /// Some alert fires and is neither silenced nor inhibited.
    Firing,
    /// Alerts fire, every one of them silenced or inhibited: nothing is notified.
    Muted,
    /// No alert of the group fires.
    Resolved,
}

/// What one integration was last told about a group (Alertmanager's notification log).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct LogEntry {
    firing: BTreeSet<u64>,
    resolved: BTreeSet<u64>,
    at: i64,
}

#[derive(Debug)]
struct Group {
    route: Route,
    labels: Labels,
    alerts: BTreeMap<u64, Alert>,
    next_flush: i64,
    in_flight: bool,
    log: HashMap<String, LogEntry>,
    /// Whether the last flush found the group muted.
    muted: bool,
    /// Whether the last flush found every alert of the group resolved (and said so).
    resolved: bool,
}

/// The grouped view of `/api/v2/alerts/groups` and the UI.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub key: String,
    pub receiver: String,
    pub labels: Labels,
    pub alerts: Vec<Alert>,
}

/// An alert with what the alert manager does with it (`/api/v2/alerts`).
#[derive(Clone, Debug)]
pub struct AlertView {
    pub alert: Alert,
    pub receivers: Vec<String>,
    pub silenced_by: Vec<String>,
    pub inhibited_by: Vec<String>,
}

#[derive(Debug)]
struct State {
    config: Arc<AlertmanagerConfig>,
    alerts: HashMap<u64, Alert>,
    groups: BTreeMap<String, Group>,
    silences: Vec<Silence>,
    /// The notification log read at start, by group key, until its group comes back.
    restored_log: HashMap<String, HashMap<String, LogEntry>>,
}

/// How long a group's notification log is kept across restarts (Alertmanager's
/// `--data.retention` default).
const LOG_RETENTION_MS: i64 = 120 * 3600 * 1000;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub notifications: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Debug)]
pub struct AlertManager {
    state: Mutex<State>,
    client: notify::HttpClient,
    events: broadcast::Sender<GroupEvent>,
    /// Where silences (`silences.json`) and the notification log (`nflog.json`) are kept.
    dir: Option<PathBuf>,
    /// Held while `nflog.json` is written.
    log_file: Mutex<()>,
    pub external_url: String,
    pub counters: Counters,
}

/// A JSON file written whole and synced, then renamed into place.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// A JSON file's value, or the default when there is none yet.
fn read_json<T: serde::de::DeserializeOwned + Default>(path: &std::path::Path) -> std::io::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// The key of a group: the route's position and the grouping labels' values.
fn group_key(route: &Route, labels: &Labels) -> String {
    format!("{}:{labels}", route_key(route))
}

fn route_key(route: &Route) -> String {
    let matchers: Vec<String> =
        route.matchers.iter().map(|m| format!("{}{}\"{}\"", m.name, m.op.as_str(), m.value)).collect();
    format!("{{}}/{{{}}}@{}", matchers.join(","), route.id)
}

fn group_labels(route: &Route, labels: &Labels) -> Labels {
    match &route.group_by {
        GroupBy::All => labels.clone(),
        GroupBy::Labels(names) => {
            Labels::new(names.iter().filter_map(|n| labels.get(n).map(|v| (n.clone(), v.to_string()))).collect())
        }
    }
}

impl AlertManager {
    /// An alert manager with `config`; silences and the notification log are kept in
    /// `dir` when given, so a restart neither forgets a silence nor sends a group again.
    pub fn new(
        config: AlertmanagerConfig,
        dir: Option<PathBuf>,
        external_url: String,
    ) -> std::io::Result<Arc<AlertManager>> {
        let (silences, mut restored_log): (Vec<Silence>, HashMap<String, HashMap<String, LogEntry>>) = match &dir {
            Some(dir) => (read_json(&dir.join("silences.json"))?, read_json(&dir.join("nflog.json"))?),
            None => Default::default(),
        };
        let oldest = now_ms() - LOG_RETENTION_MS;
        restored_log.retain(|_, log| {
            log.retain(|_, e| e.at >= oldest);
            !log.is_empty()
        });
        let (events, _) = broadcast::channel(256);
        Ok(Arc::new(AlertManager {
            state: Mutex::new(State {
                config: Arc::new(config),
                alerts: HashMap::new(),
                groups: BTreeMap::new(),
                silences,
                restored_log,
            }),
            client: notify::http_client().map_err(std::io::Error::other)?,
            events,
            dir,
            log_file: Mutex::new(()),
            external_url,
            counters: Counters::default(),
        }))
    }

    /// Starts the loop that flushes groups when they are due (every 100 ms it looks).
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let Some(am) = weak.upgrade() else { return };
                am.flush_due(now_ms());
            }
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<GroupEvent> {
        self.events.subscribe()
    }

    pub fn config(&self) -> Arc<AlertmanagerConfig> {
        Arc::clone(&self.state.lock().config)
    }

    /// Takes a new configuration: groups are rebuilt from the current alerts under the
    /// new routes, keeping the notification log of groups whose key stays.
    pub fn reload(&self, config: AlertmanagerConfig) {
        let mut state = self.state.lock();
        state.config = Arc::new(config);
        let old = std::mem::take(&mut state.groups);
        let alerts: Vec<Alert> = state.alerts.values().cloned().collect();
        let now = now_ms();
        for alert in alerts {
            Self::route_alert(&mut state, alert, now);
        }
        for (key, group) in old {
            if let Some(new) = state.groups.get_mut(&key) {
                new.log = group.log;
                new.next_flush = group.next_flush;
            }
        }
    }

    /// Receives alerts (from rules or the API). An alert without an end is valid for
    /// `resolve_timeout`; one already known keeps its start.
    pub fn put(&self, alerts: Vec<Alert>) {
        let now = now_ms();
        let mut state = self.state.lock();
        let timeout = state.config.resolve_timeout.as_millis() as i64;
        for mut alert in alerts {
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            alert.updated_at = now;
            if alert.starts_at == 0 {
                alert.starts_at = now;
            }
            if alert.ends_at == 0 {
                alert.ends_at = now + timeout;
            }
            let fp = alert.fingerprint();
            if let Some(old) = state.alerts.get(&fp) {
                // An alert overlapping the one known continues it.
                if old.ends_at >= alert.starts_at && old.starts_at < alert.starts_at {
                    alert.starts_at = old.starts_at;
                }
            }
            state.alerts.insert(fp, alert.clone());
            Self::route_alert(&mut state, alert, now);
        }
    }

    fn route_alert(state: &mut State, alert: Alert, now: i64) {
        let config = Arc::clone(&state.config);
        let fp = alert.fingerprint();
        for route in config.route.matching(&alert.labels) {
            let labels = group_labels(route, &alert.labels);
            let key = group_key(route, &labels);
            let restored = if state.groups.contains_key(&key) { None } else { state.restored_log.remove(&key) };
            let group = state.groups.entry(key).or_insert_with(|| Group {
                route: route.clone(),
                labels,
                alerts: BTreeMap::new(),
                // An alert that started long ago is sent right away.
                next_flush: if alert.starts_at + (route.group_wait.as_millis() as i64) < now {
                    now
                } else {
                    now + route.group_wait.as_millis() as i64
                },
                in_flight: false,
                muted: false,
                resolved: false,
                log: restored.unwrap_or_default(),
            });
            group.alerts.insert(fp, alert.clone());
        }
    }

    /// Whether a silence or an inhibit rule mutes `alert`, and by what.
    fn muted_by(state: &State, alert: &Alert, now: i64) -> (Vec<String>, Vec<String>) {
        let silenced: Vec<String> = state
            .silences
            .iter()
            .filter(|s| s.state(now) == SilenceState::Active && matches(&s.compiled(), &alert.labels))
            .map(|s| s.id.clone())
            .collect();
        let mut inhibited = Vec::new();
        for rule in &state.config.inhibit_rules {
            if !matches(&rule.target, &alert.labels) {
                continue;
            }
            for source in state.alerts.values() {
                if source.resolved(now)
                    || source.labels == alert.labels
                    || !matches(&rule.source, &source.labels)
                    || !rule.equal.iter().all(|n| source.labels.get(n) == alert.labels.get(n))
                {
                    continue;
                }
                inhibited.push(format!("{:016x}", source.fingerprint()));
            }
        }
        (silenced, inhibited)
    }

    /// Flushes the groups that are due at `now`.
    pub fn flush_due(self: &Arc<Self>, now: i64) {
        let mut jobs = Vec::new();
        {
            let mut state = self.state.lock();
            // Alerts resolved and notified long ago are forgotten.
            state.alerts.retain(|_, a| !(a.resolved(now) && now - a.ends_at > 3_600_000));
            let keys: Vec<String> = state
                .groups
                .iter()
                .filter(|(_, g)| g.next_flush <= now && !g.in_flight)
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                let visible: Vec<Alert> = {
                    let Some(group) = state.groups.get(&key) else { continue };
                    group
                        .alerts
                        .values()
                        .filter(|a| {
                            let (s, i) = Self::muted_by(&state, a, now);
                            s.is_empty() && i.is_empty()
                        })
                        .cloned()
                        .collect()
                };
                let config = Arc::clone(&state.config);
                let Some(group) = state.groups.get_mut(&key) else { continue };
                group.next_flush = now + group.route.group_interval.as_millis() as i64;
                let Some(receiver) = config.receivers.iter().find(|r| r.name == group.route.receiver) else {
                    continue;
                };
                let firing: BTreeSet<u64> =
                    visible.iter().filter(|a| !a.resolved(now)).map(Alert::fingerprint).collect();
                let resolved: BTreeSet<u64> =
                    visible.iter().filter(|a| a.resolved(now)).map(Alert::fingerprint).collect();
                let repeat = group.route.repeat_interval.as_millis() as i64;
                let mut sends = Vec::new();
                // In a mute interval (or outside the active ones) nothing is sent nor
                // logged, so the group is notified at the first flush after it.
                let held = config.muted_by_time(&group.route, now);
                for (id, send_resolved, integration) in integrations(receiver).into_iter().filter(|_| !held) {
                    let entry = group.log.get(&id);
                    if !needs_update(entry, &firing, &resolved, repeat, send_resolved, now) {
                        continue;
                    }
                    let alerts: Vec<Alert> = if send_resolved {
                        visible.clone()
                    } else {
                        visible.iter().filter(|a| !a.resolved(now)).cloned().collect()
                    };
                    sends.push((id, integration, alerts));
                }
                let any_firing = group.alerts.values().any(|a| !a.resolved(now));
                let status = match (firing.is_empty(), any_firing) {
                    (false, _) => GroupStatus::Firing,
                    (true, true) => GroupStatus::Muted,
                    (true, false) => GroupStatus::Resolved,
                };
                let newly_muted = status == GroupStatus::Muted && !group.muted;
                group.muted = status == GroupStatus::Muted;
                // A group's resolution is an event even when no integration is told of
                // it: none may be configured, or the last thing they were told was the
                // silence (Alertmanager does not send a resolution of what it did not
                // send firing), and the incident must still close.
                let newly_resolved = status == GroupStatus::Resolved && !group.resolved;
                group.resolved = status == GroupStatus::Resolved;
                let event = GroupEvent {
                    group_key: key.clone(),
                    receiver: receiver.name.clone(),
                    group_labels: group.labels.clone(),
                    status,
                    alerts: visible.clone(),
                    at: now,
                };
                if !sends.is_empty() || (group.log.is_empty() && !firing.is_empty()) || newly_muted || newly_resolved {
                    let _ = self.events.send(event);
                }
                group.in_flight = true;
                let notification = Notification {
                    receiver: receiver.name.clone(),
                    group_key: key.clone(),
                    group_labels: group.labels.clone(),
                    alerts: Vec::new(),
                    external_url: self.external_url.clone(),
                    now,
                    incident: None,
                };
                jobs.push((key, notification, sends, firing, resolved, group.route.group_interval));
            }
        }
        for (key, base, sends, firing, resolved, interval) in jobs {
            let am = Arc::clone(self);
            tokio::spawn(async move {
                let mut done = Vec::new();
                for (id, integration, alerts) in sends {
                    let ok = if alerts.is_empty() {
                        true
                    } else {
                        let n = Notification { alerts, ..base.clone() };
                        am.send_with_retry(&integration, &n, interval).await
                    };
                    if ok {
                        done.push(id);
                    }
                }
                am.finish_flush(&key, done, firing, resolved, now);
            });
        }
    }

    async fn send_with_retry(&self, integration: &Integration, n: &Notification, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.send(integration, n).await {
                Ok(()) => {
                    self.counters.notifications.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(e) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(receiver = %n.receiver, integration = integration.kind(), error = %e, "notification failed");
                    if tokio::time::Instant::now() + backoff >= deadline {
                        return false;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn send(&self, integration: &Integration, n: &Notification) -> Result<(), NotifyError> {
        let templates = Arc::clone(&self.config().templates);
        match integration {
            Integration::Webhook(c) => notify::send_webhook(&self.client, c, n).await,
            Integration::Slack(c) => notify::send_slack(&self.client, &templates, c, n).await,
            Integration::PagerDuty(c) => notify::send_pagerduty(&self.client, &templates, c, n).await,
            Integration::Email(c) => notify::send_email(&templates, c, n).await,
            Integration::Chat(c) => notify::send_chat(&self.client, &templates, c, n).await,
        }
    }

    fn finish_flush(&self, key: &str, done: Vec<String>, firing: BTreeSet<u64>, resolved: BTreeSet<u64>, at: i64) {
        let mut state = self.state.lock();
        let Some(group) = state.groups.get_mut(key) else { return };
        group.in_flight = false;
        for id in done {
            group.log.insert(id, LogEntry { firing: firing.clone(), resolved: resolved.clone(), at });
        }
        // Resolved alerts that every integration has been told about leave the group.
        let all_logged = !group.log.is_empty() && group.log.values().all(|e| e.at == at);
        if all_logged {
            group.alerts.retain(|fp, a| !(a.resolved(at) && resolved.contains(fp) && a.updated_at <= at));
        }
        if group.alerts.is_empty() {
            state.groups.remove(key);
        }
        // What was sent survives a restart. The snapshot is taken under the state lock
        // and the file lock taken before that is released, so snapshots reach the
        // disk in order while alerts keep flowing during the sync.
        let Some(dir) = &self.dir else { return };
        let mut log: HashMap<&String, &HashMap<String, LogEntry>> = state.restored_log.iter().collect();
        log.extend(state.groups.iter().filter(|(_, g)| !g.log.is_empty()).map(|(k, g)| (k, &g.log)));
        let bytes = serde_json::to_vec(&log);
        let _writing = self.log_file.lock();
        drop(state);
        let written =
            bytes.map_err(std::io::Error::other).and_then(|bytes| write_atomically(&dir.join("nflog.json"), &bytes));
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot store the notification log");
        }
    }

    /// Sends `n` to every integration of receiver `name` now (escalation levels use this).
    pub async fn notify_receiver(&self, name: &str, n: &Notification) -> Result<(), ReceiverError> {
        let receiver = self.config().receivers.iter().find(|r| r.name == name).cloned();
        let Some(receiver) = receiver else { return Err(ReceiverError::Unknown(name.to_string())) };
        let mut errors = Vec::new();
        for (_, send_resolved, integration) in integrations(&receiver) {
            let alerts: Vec<Alert> = n.alerts.iter().filter(|a| send_resolved || !a.resolved(n.now)).cloned().collect();
            if alerts.is_empty() {
                continue;
            }
            let n = Notification { receiver: name.to_string(), alerts, ..n.clone() };
            if let Err(e) = self.send(&integration, &n).await {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            self.counters.notifications.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            Err(ReceiverError::Failed(errors))
        }
    }

    /// The alerts known, with their receivers and what mutes them.
    pub fn alerts(&self) -> Vec<AlertView> {
        let state = self.state.lock();
        let now = now_ms();
        let mut out: Vec<AlertView> = state
            .alerts
            .values()
            .filter(|a| !a.resolved(now))
            .map(|a| {
                let (silenced_by, inhibited_by) = Self::muted_by(&state, a, now);
                let receivers = state.config.route.matching(&a.labels).iter().map(|r| r.receiver.clone()).collect();
                AlertView { alert: a.clone(), receivers, silenced_by, inhibited_by }
            })
            .collect();
        out.sort_by(|a, b| a.alert.labels.cmp(&b.alert.labels));
        out
    }

    pub fn groups(&self) -> Vec<GroupView> {
        let state = self.state.lock();
        state
            .groups
            .iter()
            .map(|(key, g)| GroupView {
                key: key.clone(),
                receiver: g.route.receiver.clone(),
                labels: g.labels.clone(),
                alerts: g.alerts.values().cloned().collect(),
            })
            .collect()
    }

    /// Whether the group's alerts fire and every firing one is silenced or inhibited now.
    pub fn group_muted(&self, key: &str) -> bool {
        let state = self.state.lock();
        let now = now_ms();
        let Some(group) = state.groups.get(key) else { return false };
        let mut firing = group.alerts.values().filter(|a| !a.resolved(now)).peekable();
        firing.peek().is_some()
            && firing.all(|a| {
                let (silenced, inhibited) = Self::muted_by(&state, a, now);
                !silenced.is_empty() || !inhibited.is_empty()
            })
    }

    pub fn silences(&self) -> Vec<Silence> {
        self.state.lock().silences.clone()
    }

    /// Creates a silence, or replaces the one with the same id; returns its id.
    pub fn put_silence(&self, mut silence: Silence) -> Result<String, SilenceError> {
        if silence.matchers.is_empty() {
            return Err(SilenceError::NoMatcher);
        }
        for m in &silence.matchers {
            config::parse_matchers(m).map_err(SilenceError::BadMatcher)?;
        }
        if silence.ends_at <= silence.starts_at {
            return Err(SilenceError::EndsBeforeStart);
        }
        let now = now_ms();
        silence.updated_at = now;
        let mut state = self.state.lock();
        // Stored first, then in force: a silence the disk refused mutes nothing.
        let mut next = state.silences.clone();
        if silence.id.is_empty() {
            silence.id = new_id();
            next.push(silence.clone());
        } else {
            let Some(old) = next.iter_mut().find(|s| s.id == silence.id) else {
                return Err(SilenceError::NotFound(silence.id));
            };
            *old = silence.clone();
        }
        self.save_silences(&next)?;
        state.silences = next;
        Ok(silence.id)
    }

    /// Ends a silence now; returns whether it existed.
    pub fn expire_silence(&self, id: &str) -> Result<bool, SilenceError> {
        let mut state = self.state.lock();
        let now = now_ms();
        let mut next = state.silences.clone();
        let Some(s) = next.iter_mut().find(|s| s.id == id) else { return Ok(false) };
        if s.state(now) == SilenceState::Expired {
            return Err(SilenceError::AlreadyExpired(id.to_string()));
        }
        s.ends_at = now;
        s.starts_at = s.starts_at.min(now);
        s.updated_at = now;
        self.save_silences(&next)?;
        state.silences = next;
        Ok(true)
    }

    fn save_silences(&self, silences: &[Silence]) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let bytes = serde_json::to_vec_pretty(silences).map_err(std::io::Error::other)?;
        write_atomically(&dir.join("silences.json"), &bytes)
    }
}

fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = now_ms().to_le_bytes().repeat(2).try_into().unwrap_or([0; 16]);
    }
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[derive(Clone, Debug)]
enum Integration {
    Webhook(config::WebhookConfig),
    Slack(config::SlackConfig),
    PagerDuty(config::PagerDutyConfig),
    Email(config::EmailConfig),
    Chat(config::ChatConfig),
}

impl Integration {
    fn kind(&self) -> &'static str {
        match self {
            Integration::Webhook(_) => "webhook",
            Integration::Slack(_) => "slack",
            Integration::PagerDuty(_) => "pagerduty",
            Integration::Email(_) => "email",
            Integration::Chat(c) => match c.kind {
                config::ChatKind::Discord => "discord",
                config::ChatKind::Teams => "msteams",
                config::ChatKind::Telegram => "telegram",
            },
        }
    }
}

/// A receiver's integrations with their log ids and `send_resolved`.
fn integrations(r: &config::Receiver) -> Vec<(String, bool, Integration)> {
    let mut out = Vec::new();
    for (i, c) in r.webhooks.iter().enumerate() {
        out.push((format!("{}/webhook/{i}", r.name), c.send_resolved, Integration::Webhook(c.clone())));
    }
    for (i, c) in r.slack.iter().enumerate() {
        out.push((format!("{}/slack/{i}", r.name), c.send_resolved, Integration::Slack(c.clone())));
    }
    for (i, c) in r.pagerduty.iter().enumerate() {
        out.push((format!("{}/pagerduty/{i}", r.name), c.send_resolved, Integration::PagerDuty(c.clone())));
    }
    for (i, c) in r.email.iter().enumerate() {
        out.push((format!("{}/email/{i}", r.name), c.send_resolved, Integration::Email(c.clone())));
    }
    for (i, c) in r.chat.iter().enumerate() {
        let integration = Integration::Chat(c.clone());
        out.push((format!("{}/{}/{i}", r.name, integration.kind()), c.send_resolved, integration));
    }
    out
}

/// Alertmanager's rule for sending a group again: new firing alerts, all resolved
/// after something fired, newly resolved ones (with `send_resolved`), or the repeat
/// interval passed.
fn needs_update(
    entry: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    repeat_ms: i64,
    send_resolved: bool,
    now: i64,
) -> bool {
    let Some(entry) = entry else { return !firing.is_empty() };
    if !firing.is_subset(&entry.firing) {
        return true;
    }
    if firing.is_empty() {
        return !entry.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&entry.resolved) {
        return true;
    }
    entry.at + repeat_ms <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A silence the disk refused is not in force and the error says the store
    /// failed (the API answers 500, not 400); an unknown id is not found.
    #[test]
    fn a_silence_that_cannot_be_stored_mutes_nothing_and_says_why() {
        let dir = tempfile::tempdir().expect("a directory");
        let data = dir.path().join("monitor");
        std::fs::create_dir_all(&data).expect("a directory");
        let config = config::parse_alertmanager_config(mobius_config::SourceFile::new(
            "am.yml",
            "route:\n  receiver: a\nreceivers:\n  - name: a\n",
        ))
        .expect("a valid file");
        let am = AlertManager::new(config, Some(data.clone()), "http://x".into()).expect("an alert manager");
        let now = now_ms();
        let silence = |id: &str| Silence {
            id: id.to_string(),
            matchers: vec!["alertname=\"Down\"".into()],
            starts_at: now,
            ends_at: now + 60_000,
            created_by: "ada".into(),
            comment: String::new(),
            updated_at: 0,
        };
        assert!(matches!(am.put_silence(silence("nope")), Err(SilenceError::NotFound(_))));
        std::fs::remove_dir_all(&data).expect("removed");
        assert!(matches!(am.put_silence(silence("")), Err(SilenceError::Store(_))));
        assert!(am.silences().is_empty(), "a silence the disk refused is not in force");
        std::fs::create_dir_all(&data).expect("a directory");
        let id = am.put_silence(silence("")).expect("stored");
        assert_eq!(am.silences().len(), 1);
        std::fs::remove_dir_all(&data).expect("removed");
        assert!(matches!(am.expire_silence(&id), Err(SilenceError::Store(_))));
        assert_eq!(am.silences()[0].state(now_ms()), SilenceState::Active, "still in force: the expiry was not stored");
    }

    #[test]
    fn fingerprints_are_alertmanagers() {
        // FNV-1a of `alertname` 0xff `Test` 0xff, as Prometheus' model.LabelSet.Fingerprint
        // hashes a label set; the constant was computed apart from this code.
        let labels = Labels::from_pairs(&[("alertname", "Test")]);
        let a = Alert {
            labels,
            annotations: vec![],
            starts_at: 0,
            ends_at: 0,
            generator_url: String::new(),
            updated_at: 0,
        };
        assert_eq!(a.fingerprint(), 0xe46a_aa9f_cf75_dd34);
        assert_eq!(fingerprint(&Labels::default()), 0xcbf2_9ce4_8422_2325, "an empty set hashes to the offset basis");
        assert_ne!(fingerprint(&Labels::from_pairs(&[("a", "bc")])), fingerprint(&Labels::from_pairs(&[("ab", "c")])));
    }

    /// A group whose alerts resolve says so even when no integration is told: here its
    /// receiver has none (before, the incident of such a group never closed; the same
    /// happened after a silence when the alert resolved before the next flush).
    #[tokio::test]
    async fn a_group_that_resolves_says_so_even_when_nobody_is_notified() {
        let text = "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1ms\nreceivers:\n  - name: team\n";
        let config =
            config::parse_alertmanager_config(mobius_config::SourceFile::new("am.yml", text.to_string())).unwrap();
        let am = AlertManager::new(config, None, String::new()).unwrap();
        let mut events = am.subscribe();
        let alert = |ends_at: i64| Alert {
            labels: Labels::from_pairs(&[("alertname", "DiskFull")]),
            annotations: vec![],
            starts_at: now_ms() - 10,
            ends_at,
            generator_url: String::new(),
            updated_at: 0,
        };
        am.put(vec![alert(now_ms() + 3_600_000)]);
        am.flush_due(now_ms() + 10);
        assert_eq!(events.recv().await.unwrap().status, GroupStatus::Firing);
        tokio::time::sleep(Duration::from_millis(20)).await;
        am.put(vec![alert(now_ms() - 1)]);
        let mut statuses = Vec::new();
        for _ in 0..5 {
            am.flush_due(now_ms() + 10);
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(event) = events.try_recv() {
                statuses.push(event.status);
            }
        }
        assert_eq!(statuses.iter().filter(|s| **s == GroupStatus::Resolved).count(), 1, "{statuses:?}");
        assert!(!statuses.contains(&GroupStatus::Firing), "{statuses:?}");
    }

    #[test]
    fn a_group_is_sent_again_only_when_it_changed_or_repeats() {
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        let entry = LogEntry { firing: set(&[1, 2]), resolved: set(&[]), at: 1000 };
        assert!(!needs_update(None, &set(&[]), &set(&[1]), 10_000, true, 2000), "only resolved, never sent");
        assert!(needs_update(None, &set(&[1]), &set(&[]), 10_000, true, 2000));
        assert!(!needs_update(Some(&entry), &set(&[1, 2]), &set(&[]), 10_000, true, 2000));
        assert!(needs_update(Some(&entry), &set(&[1, 2, 3]), &set(&[]), 10_000, true, 2000), "new alert");
        assert!(needs_update(Some(&entry), &set(&[1]), &set(&[2]), 10_000, true, 2000), "resolved, sent");
        assert!(!needs_update(Some(&entry), &set(&[1]), &set(&[2]), 10_000, false, 2000), "resolved, not sent");
        assert!(needs_update(Some(&entry), &set(&[]), &set(&[1, 2]), 10_000, false, 2000), "all resolved");
        assert!(needs_update(Some(&entry), &set(&[1, 2]), &set(&[]), 10_000, true, 11_000), "repeat");
    }
}

/// Why paging a receiver failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("receiver `{0}` is not configured")]
    Unknown(String),
    /// Every integration that failed, each with its error.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Failed(Vec<notify::NotifyError>),
}
