//! The monitor as `mobius serve` runs it: the time-series store in `DATA/monitor`, the
//! scrape loops and rule groups of `--prometheus-config`, and the alert manager of
//! `--alertmanager-config`, all started before the server answers and reloaded
//! together (SIGHUP, `POST /-/reload`), a broken file changing nothing. Each
//! project's `monitoring` in its `mobius.yaml` (at the head of its default branch)
//! is composed with the server's files: its jobs, rule groups, a route under the
//! root route with its receivers, and its on-call people, schedules and policies.

use crate::config::{parse_prometheus_config, PrometheusConfig};
use crate::config::{ScrapeConfig, StaticConfig};
use crate::project::ProjectMonitoring;
use crate::scrape::{job_targets_and_dropped, static_targets, Scraper, Target};
use anyhow::Context;
use mobius_alerting::config::{parse_alertmanager_config, AlertmanagerConfig};
use mobius_alerting::oncall::{parse_oncall_config, OnCallConfig};
use mobius_alerting::rules::{parse_rule_file, EvalContext, GroupState, OutgoingAlert, RuleGroup};
use mobius_alerting::{Alert, AlertManager};
use mobius_config::SourceFile;
use mobius_logs::{LogLine, LogOptions, LogStore};
use mobius_series::Labels;
use mobius_tsdb::{Db, DbOptions};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// After a restart, an alert is not sent sooner than this (Prometheus'
/// `--rules.alert.for-grace-period` default), and rules whose `for` is shorter
/// start it again.
const FOR_GRACE_PERIOD: std::time::Duration = std::time::Duration::from_secs(600);

/// A rule group being evaluated, and the task evaluating it.
#[derive(Debug)]
pub struct RunningGroup {
    pub state: Arc<Mutex<GroupState>>,
    task: tokio::task::JoinHandle<()>,
}

/// The store, scrapers, rule groups and alert manager.
#[derive(Debug)]
pub struct Monitor {
    pub db: Arc<Db>,
    pub scraper: Arc<Scraper>,
    pub alerts: Option<Arc<AlertManager>>,
    /// Instance, job and pushed logs (`DATA/logs`).
    pub logs: Arc<LogStore>,
    /// How far each instance's log file has been read (kept in `DATA/logs/offsets.json`).
    log_offsets: Mutex<HashMap<PathBuf, u64>>,
    data_dir: PathBuf,
    pub groups: Mutex<Vec<RunningGroup>>,
    /// People, schedules and escalation policies (empty without `--oncall-config`).
    pub oncall: Mutex<Arc<OnCallConfig>>,
    /// Targets of `prometheus.yml` and those discovered (Mobius itself, the instances
    /// rollouts started); the scraper gets both.
    configured: Mutex<Vec<Target>>,
    discovered: Mutex<Vec<Target>>,
    /// How often discovered targets are scraped (`global.scrape_interval`, 15 s without a file).
    discovered_interval: Mutex<Duration>,
    /// Jobs with `file_sd_configs`, and each file's last good groups by modification time.
    file_sd_jobs: Mutex<Vec<ScrapeConfig>>,
    file_sd_cache: Mutex<HashMap<PathBuf, (SystemTime, Vec<StaticConfig>)>>,
    file_sd_targets: Mutex<Vec<Target>>,
    /// Discovered label sets that relabelling dropped: of static configs, of files.
    dropped_static: Mutex<Vec<Labels>>,
    dropped_file_sd: Mutex<Vec<Labels>>,
    prometheus_config: Option<PathBuf>,
    alertmanager_config: Option<PathBuf>,
    oncall_config: Option<PathBuf>,
    /// What the server's files say, last read.
    files: Mutex<FileConfigs>,
    /// What each project's `mobius.yaml` says, by project name.
    projects: Mutex<BTreeMap<String, ProjectMonitoring>>,
    pub external_url: String,
}

/// The server's own configuration files, parsed.
#[derive(Clone, Debug, Default)]
struct FileConfigs {
    prometheus: Option<(PrometheusConfig, Vec<RuleGroup>)>,
    alertmanager: Option<AlertmanagerConfig>,
    oncall: OnCallConfig,
}

/// Without `--prometheus-config`: discovered targets every 15 s, rules every 15 s.
fn default_prometheus() -> PrometheusConfig {
    PrometheusConfig {
        scrape_interval: Duration::from_secs(15),
        scrape_timeout: Duration::from_secs(10),
        evaluation_interval: Duration::from_secs(15),
        external_labels: Vec::new(),
        scrape_configs: Vec::new(),
        rule_files: Vec::new(),
    }
}

/// Without `--alertmanager-config`: one route to a receiver that notifies no one, so
/// alerts still group into incidents (and projects' routes have a root to hang from).
fn default_alertmanager() -> AlertmanagerConfig {
    let text = "route:\n  receiver: default\nreceivers:\n  - name: default\n";
    match parse_alertmanager_config(SourceFile::new("(default alertmanager configuration)", text)) {
        Ok(config) => config,
        Err(e) => unreachable!("the default Alertmanager configuration is valid: {}", e.render(false)),
    }
}

fn read_file(path: &Path) -> anyhow::Result<SourceFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(SourceFile::new(path.display().to_string(), text))
}

fn read_prometheus(path: &Path) -> anyhow::Result<(PrometheusConfig, Vec<RuleGroup>)> {
    let config = parse_prometheus_config(read_file(path)?).map_err(|e| anyhow::anyhow!("{}", e.render(false)))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut groups = Vec::new();
    for pattern in &config.rule_files {
        let files = matching_files(base, pattern)?;
        for file in files {
            let parsed = parse_rule_file(read_file(&file)?, config.evaluation_interval)
                .map_err(|e| anyhow::anyhow!("{}", e.render(false)))?;
            groups.extend(parsed);
        }
    }
    Ok((config, groups))
}

/// The files a `rule_files` or `file_sd_configs` entry names: a path relative to the configuration's
/// directory, whose file name may hold `*`, `?` or `[...]` (none matching is fine,
/// as in Prometheus).
fn matching_files(base: &Path, pattern: &str) -> anyhow::Result<Vec<PathBuf>> {
    let path = base.join(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?', '[']) {
        return Ok(vec![path]);
    }
    let dir = path.parent().unwrap_or(base);
    let glob =
        globset::Glob::new(name).with_context(|| format!("rule_files: bad pattern `{pattern}`"))?.compile_matcher();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| glob.is_match(n)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    files.sort();
    Ok(files)
}

fn read_alertmanager(path: &Path) -> anyhow::Result<AlertmanagerConfig> {
    parse_alertmanager_config(read_file(path)?).map_err(|e| anyhow::anyhow!("{}", e.render(false)))
}

fn read_oncall(path: &Path, alertmanager: Option<&AlertmanagerConfig>) -> anyhow::Result<OnCallConfig> {
    let receivers: Vec<String> =
        alertmanager.map(|c| c.receivers.iter().map(|r| r.name.clone()).collect()).unwrap_or_default();
    parse_oncall_config(read_file(path)?, &receivers).map_err(|e| anyhow::anyhow!("{}", e.render(false)))
}

use mobius_series::now_ms;

fn to_alert(a: OutgoingAlert) -> Alert {
    Alert {
        labels: a.labels,
        annotations: a.annotations,
        starts_at: a.starts_at,
        ends_at: a.ends_at,
        generator_url: a.generator_url,
        updated_at: 0,
    }
}

impl Monitor {
    /// Reads the configurations (every problem with file, line and column), replays
    /// the write-ahead log, then starts scraping, evaluating rules and routing alerts.
    pub fn start(
        data_dir: &Path,
        storage: DbOptions,
        prometheus_config: Option<&Path>,
        alertmanager_config: Option<&Path>,
        oncall_config: Option<&Path>,
        external_url: &str,
    ) -> anyhow::Result<Monitor> {
        let prometheus = prometheus_config.map(read_prometheus).transpose()?;
        let alertmanager = alertmanager_config.map(read_alertmanager).transpose()?;
        let oncall = oncall_config.map(|p| read_oncall(p, alertmanager.as_ref())).transpose()?.unwrap_or_default();
        let logs = LogStore::open(
            &data_dir.join("logs"),
            LogOptions { retention: storage.retention, retention_bytes: storage.retention_bytes },
        )
        .with_context(|| format!("cannot open the log store in {}", data_dir.join("logs").display()))?;
        let log_offsets: HashMap<PathBuf, u64> = std::fs::read(data_dir.join("logs").join("offsets.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        {
            let logs = Arc::clone(&logs);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let logs = Arc::clone(&logs);
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || logs.sync()).await {
                        tracing::error!(error = %e, "cannot sync the log store");
                    }
                }
            });
        }
        let db = Db::open(storage)?;
        let scraper = Scraper::new(Arc::clone(&db));
        let am = AlertManager::new(
            alertmanager.clone().unwrap_or_else(default_alertmanager),
            Some(data_dir.join("monitor")),
            external_url.to_string(),
        )
        .context("cannot read the stored silences")?;
        am.start();
        let alerts = Some(am);
        let monitor = Monitor {
            db,
            scraper,
            alerts,
            logs,
            log_offsets: Mutex::new(log_offsets),
            data_dir: data_dir.to_path_buf(),
            groups: Mutex::new(Vec::new()),
            oncall: Mutex::new(Arc::new(OnCallConfig::default())),
            configured: Mutex::new(Vec::new()),
            discovered: Mutex::new(Vec::new()),
            discovered_interval: Mutex::new(Duration::from_secs(15)),
            file_sd_jobs: Mutex::new(Vec::new()),
            file_sd_cache: Mutex::new(HashMap::new()),
            file_sd_targets: Mutex::new(Vec::new()),
            dropped_static: Mutex::new(Vec::new()),
            dropped_file_sd: Mutex::new(Vec::new()),
            prometheus_config: prometheus_config.map(Path::to_path_buf),
            alertmanager_config: alertmanager_config.map(Path::to_path_buf),
            oncall_config: oncall_config.map(Path::to_path_buf),
            files: Mutex::new(FileConfigs { prometheus, alertmanager, oncall }),
            projects: Mutex::new(BTreeMap::new()),
            external_url: external_url.to_string(),
        };
        monitor.compose();
        tracing::info!(
            series = monitor.db.stats().series,
            rule_groups = monitor.groups.lock().len(),
            "monitor started"
        );
        Ok(monitor)
    }

    /// Scrapes the configuration's targets and evaluates its rule groups; a group that
    /// stays (same file and name) keeps its alerts.
    fn apply(&self, config: &PrometheusConfig, groups: Vec<RuleGroup>) {
        let mut dropped = Vec::new();
        *self.configured.lock() = config
            .scrape_configs
            .iter()
            .flat_map(|job| {
                let (targets, gone) = job_targets_and_dropped(job, &job.static_configs);
                dropped.extend(gone);
                targets
            })
            .collect();
        *self.dropped_static.lock() = dropped;
        *self.discovered_interval.lock() = config.scrape_interval;
        *self.file_sd_jobs.lock() =
            config.scrape_configs.iter().filter(|j| !j.file_sd_configs.is_empty()).cloned().collect();
        self.refresh_file_sd();
        self.publish_targets();
        let ctx = Arc::new(EvalContext {
            external_labels: config.external_labels.clone(),
            external_url: self.external_url.clone(),
        });
        let mut running = self.groups.lock();
        let mut old: Vec<RunningGroup> = std::mem::take(&mut *running);
        for group in groups {
            let mut state = GroupState::new(group);
            if let Some(i) = old.iter().position(|g| {
                let s = g.state.lock();
                s.group.name == state.group.name && s.group.file == state.group.file
            }) {
                let previous = old.remove(i);
                previous.task.abort();
                let taken = std::mem::replace(&mut *previous.state.lock(), GroupState::new(state.group.clone()));
                state.carry_over(taken);
            } else {
                // A group new to this process: `for` goes on from before a restart.
                state.restore_for_state(&self.db, now_ms(), FOR_GRACE_PERIOD);
            }
            let state = Arc::new(Mutex::new(state));
            let task = tokio::spawn(evaluate_group(
                Arc::clone(&state),
                Arc::clone(&self.db),
                self.alerts.clone(),
                Arc::clone(&ctx),
            ));
            running.push(RunningGroup { state, task });
        }
        for gone in old {
            gone.task.abort();
        }
    }

    /// Reads both configurations again: targets that stay are scraped on, rule groups
    /// that stay keep their alerts, the alert manager takes the new routes. A file with
    /// errors changes nothing. Returns how many targets are scraped.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let prometheus = self.prometheus_config.as_deref().map(read_prometheus).transpose()?;
        let alertmanager = self.alertmanager_config.as_deref().map(read_alertmanager).transpose()?;
        let oncall = self.oncall_config.as_deref().map(|p| read_oncall(p, alertmanager.as_ref())).transpose()?;
        let count = prometheus.as_ref().map_or(0, |(config, _)| static_targets(config).len());
        {
            let mut files = self.files.lock();
            if let Some(oncall) = oncall {
                files.oncall = oncall;
            }
            if prometheus.is_some() {
                files.prometheus = prometheus;
            }
            if alertmanager.is_some() {
                files.alertmanager = alertmanager;
            }
        }
        self.compose();
        tracing::info!(targets = count, "monitor configuration reloaded");
        Ok(count)
    }

    /// Takes a project's monitoring (`None`: it declares none any more) and applies
    /// the server's files and every project's together.
    pub fn set_project(&self, project: &str, monitoring: Option<ProjectMonitoring>) {
        match monitoring {
            Some(m) => self.projects.lock().insert(project.to_string(), m),
            None => self.projects.lock().remove(project),
        };
        self.compose();
    }

    /// The discovered labels of every target relabelling dropped.
    pub fn dropped_targets(&self) -> Vec<Labels> {
        let mut out = self.dropped_static.lock().clone();
        out.extend(self.dropped_file_sd.lock().iter().cloned());
        out
    }

    /// The projects whose `mobius.yaml` declares monitoring.
    pub fn projects(&self) -> Vec<String> {
        self.projects.lock().keys().cloned().collect()
    }

    /// Applies the server's files with every project's monitoring composed in: the
    /// projects' jobs and rule groups after the file's, their routes first under the
    /// root route (each takes only its project's alerts), their people, schedules and
    /// policies beside the file's.
    fn compose(&self) {
        let files = self.files.lock().clone();
        let projects: Vec<ProjectMonitoring> = self.projects.lock().values().cloned().collect();
        let (mut config, mut groups) = files.prometheus.unwrap_or_else(|| (default_prometheus(), Vec::new()));
        let mut alerting = files.alertmanager.unwrap_or_else(default_alertmanager);
        let mut oncall = files.oncall;
        let mut routes = Vec::new();
        for p in &projects {
            for job in &p.scrape_configs {
                if config.scrape_configs.iter().any(|j| j.job_name == job.job_name) {
                    tracing::warn!(project = %p.project, job = %job.job_name, "a scrape job of this name exists; the project's is not scraped");
                    continue;
                }
                config.scrape_configs.push(job.clone());
            }
            groups.extend(p.groups.iter().cloned());
            if let Some(am) = &p.alertmanager {
                alerting.receivers.extend(am.receivers.iter().cloned());
                alerting.inhibit_rules.extend(am.inhibit_rules.iter().cloned());
                routes.push(am.route.clone());
            }
            oncall.people.extend(p.oncall.people.iter().cloned());
            oncall.schedules.extend(p.oncall.schedules.iter().cloned());
            oncall.policies.extend(p.oncall.policies.iter().cloned());
            oncall.without_incidents.extend(p.oncall.without_incidents.iter().cloned());
        }
        routes.append(&mut alerting.route.routes);
        alerting.route.routes = routes;
        *self.oncall.lock() = Arc::new(oncall);
        self.apply(&config, groups);
        if let Some(am) = &self.alerts {
            am.reload(alerting);
        }
    }

    fn publish_targets(&self) {
        let mut targets = self.configured.lock().clone();
        targets.extend(self.file_sd_targets.lock().iter().cloned());
        targets.extend(self.discovered.lock().iter().cloned());
        self.scraper.set_targets(targets);
    }

    /// Reads the `file_sd_configs` files that changed; a file that does not parse keeps
    /// its previous groups (and says why in the log). Returns whether targets changed.
    fn refresh_file_sd(&self) -> bool {
        let jobs = self.file_sd_jobs.lock().clone();
        let base = self.prometheus_config.as_deref().and_then(Path::parent).unwrap_or(Path::new(".")).to_path_buf();
        let mut cache = self.file_sd_cache.lock();
        let mut targets = Vec::new();
        let mut dropped = Vec::new();
        let mut seen = Vec::new();
        for job in &jobs {
            let mut groups = Vec::new();
            for sd in &job.file_sd_configs {
                for pattern in &sd.files {
                    let files = match matching_files(&base, pattern) {
                        Ok(files) => files,
                        Err(e) => {
                            tracing::warn!(error = format!("{e:#}"), "file_sd: cannot list files");
                            continue;
                        }
                    };
                    for file in files {
                        let Ok(modified) = std::fs::metadata(&file).and_then(|m| m.modified()) else { continue };
                        seen.push(file.clone());
                        let fresh = cache.get(&file).is_some_and(|(at, _)| *at == modified);
                        if !fresh {
                            let parsed = read_file(&file).and_then(|f| {
                                crate::config::parse_file_sd(f).map_err(|e| anyhow::anyhow!("{}", e.render(false)))
                            });
                            match parsed {
                                Ok(g) => {
                                    cache.insert(file.clone(), (modified, g));
                                }
                                Err(e) => {
                                    tracing::warn!(error = format!("{e:#}"), "file_sd: keeping the previous targets")
                                }
                            }
                        }
                        if let Some((_, g)) = cache.get(&file) {
                            groups.extend(g.iter().cloned());
                        }
                    }
                }
            }
            let (found, gone) = job_targets_and_dropped(job, &groups);
            targets.extend(found);
            dropped.extend(gone);
        }
        *self.dropped_file_sd.lock() = dropped;
        cache.retain(|path, _| seen.contains(path));
        drop(cache);
        let mut current = self.file_sd_targets.lock();
        if *current == targets {
            return false;
        }
        *current = targets;
        true
    }

    /// Replaces the discovered targets (scraping starts and stops as they change) and
    /// reads `file_sd_configs` files again.
    pub fn set_discovered(&self, mut targets: Vec<Target>) {
        let files_changed = self.refresh_file_sd();
        let interval = *self.discovered_interval.lock();
        for t in &mut targets {
            t.interval = interval;
            t.timeout = interval.min(Duration::from_secs(10));
        }
        let mut current = self.discovered.lock();
        if *current == targets && !files_changed {
            return;
        }
        *current = targets;
        drop(current);
        self.publish_targets();
    }

    /// The store's own series for `/metrics`.
    pub fn render(&self, out: &mut String) {
        let (samples, series_created) = self.db.counters();
        let head = self.db.stats();
        let up = self.scraper.targets().iter().filter(|(_, h)| h.up).count();
        let _ = write!(
            out,
            "# HELP mobius_monitor_samples_appended_total Samples stored since the server started.\n\
             # TYPE mobius_monitor_samples_appended_total counter\n\
             mobius_monitor_samples_appended_total {samples}\n\
             # HELP mobius_monitor_series_created_total Series created since the server started.\n\
             # TYPE mobius_monitor_series_created_total counter\n\
             mobius_monitor_series_created_total {series_created}\n\
             # HELP mobius_monitor_head_series Series in memory.\n\
             # TYPE mobius_monitor_head_series gauge\n\
             mobius_monitor_head_series {}\n\
             # HELP mobius_monitor_head_chunk_bytes Bytes of the head's compressed samples, in memory and in its chunk files.\n\
             # TYPE mobius_monitor_head_chunk_bytes gauge\n\
             mobius_monitor_head_chunk_bytes {}\n\
             # HELP mobius_monitor_head_chunk_memory_bytes Bytes of compressed samples in memory (open chunks and chunks not yet written to files).\n\
             # TYPE mobius_monitor_head_chunk_memory_bytes gauge\n\
             mobius_monitor_head_chunk_memory_bytes {}\n\
             # HELP mobius_monitor_head_chunk_file_bytes Bytes of the head chunk files.\n\
             # TYPE mobius_monitor_head_chunk_file_bytes gauge\n\
             mobius_monitor_head_chunk_file_bytes {}\n\
             # HELP mobius_monitor_targets_up Scrape targets whose last scrape succeeded.\n\
             # TYPE mobius_monitor_targets_up gauge\n\
             mobius_monitor_targets_up {up}\n",
            head.series, head.chunk_bytes, head.chunk_memory_bytes, head.chunk_file_bytes
        );
        if let Some(am) = &self.alerts {
            use std::sync::atomic::Ordering::Relaxed;
            let c = &am.counters;
            let _ = write!(
                out,
                "# HELP mobius_alerts_received_total Alerts received from rules and the API.\n\
                 # TYPE mobius_alerts_received_total counter\n\
                 mobius_alerts_received_total {}\n\
                 # HELP mobius_notifications_total Notifications delivered.\n\
                 # TYPE mobius_notifications_total counter\n\
                 mobius_notifications_total {}\n\
                 # HELP mobius_notifications_failed_total Notification attempts that failed.\n\
                 # TYPE mobius_notifications_failed_total counter\n\
                 mobius_notifications_failed_total {}\n",
                c.received.load(Relaxed),
                c.notifications.load(Relaxed),
                c.failed.load(Relaxed)
            );
        }
    }
}

/// Evaluates a group at its interval and hands what is due to the alert manager.
async fn evaluate_group(
    state: Arc<Mutex<GroupState>>,
    db: Arc<Db>,
    alerts: Option<Arc<AlertManager>>,
    ctx: Arc<EvalContext>,
) {
    let interval = state.lock().group.interval;
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let (state, db, ctx) = (Arc::clone(&state), Arc::clone(&db), Arc::clone(&ctx));
        let due = tokio::task::spawn_blocking(move || state.lock().evaluate(&db, now_ms(), &ctx)).await;
        match (due, &alerts) {
            (Ok(due), Some(am)) if !due.is_empty() => am.put(due.into_iter().map(to_alert).collect()),
            (Err(e), _) => tracing::error!(error = %e, "rule evaluation stopped"),
            _ => {}
        }
    }
}

impl Monitor {
    /// Reads what each instance wrote to its log file since the last look (whole lines)
    /// into the log store, and remembers how far it got.
    pub fn read_instance_logs(&self, files: &[(PathBuf, Labels)]) {
        use std::io::{Read, Seek, SeekFrom};
        let mut offsets = self.log_offsets.lock();
        let before = offsets.clone();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        for (path, labels) in files {
            let Ok(mut file) = std::fs::File::open(path) else { continue };
            let len = file.metadata().map_or(0, |m| m.len());
            let mut offset = offsets.get(path).copied().unwrap_or(0);
            if offset > len {
                offset = 0; // the file was replaced
            }
            if offset == len || file.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut bytes = Vec::new();
            if file.take(4 << 20).read_to_end(&mut bytes).is_err() {
                continue;
            }
            let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else { continue };
            let lines: Vec<LogLine> = String::from_utf8_lossy(&bytes[..end])
                .lines()
                .enumerate()
                .map(|(i, line)| LogLine { labels: labels.clone(), ts: now + i as i64, line: line.to_string() })
                .collect();
            match self.logs.push(lines) {
                Ok(()) => {
                    offsets.insert(path.clone(), offset + end as u64 + 1);
                }
                Err(e) => tracing::error!(error = %e, "cannot store instance logs"),
            }
        }
        offsets.retain(|path, _| files.iter().any(|(p, _)| p == path));
        if *offsets != before {
            let path = self.data_dir.join("logs").join("offsets.json");
            let tmp = path.with_extension("tmp");
            let written = serde_json::to_vec(&*offsets)
                .map_err(std::io::Error::other)
                .and_then(|b| std::fs::write(&tmp, b))
                .and_then(|()| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot remember how far instance logs were read");
            }
        }
    }
}

/// A target Mobius finds by itself.
pub fn discovered_target(address: String, metrics_path: &str, labels: &[(&str, &str)]) -> Target {
    Target {
        address,
        metrics_path: metrics_path.to_string(),
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(10),
        honor_labels: false,
        honor_timestamps: true,
        labels: Labels::new(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        metric_relabel: Vec::new().into(),
    }
}
