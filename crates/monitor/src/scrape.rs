//! Scraping: a task per target asks for OpenMetrics or the text format on a kept-alive
//! connection at its interval, stores the samples at the scrape's timestamp, adds
//! `up` and the `scrape_*` series, and marks series that went away (or every series,
//! when a scrape fails) stale, as Prometheus does.

use crate::config::{PrometheusConfig, ScrapeConfig, StaticConfig};
use crate::exposition::{parse_series, Entry, Format, Parser};
use crate::relabel::{relabel, RelabelConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mobius_series::labels::Labels;
use mobius_series::STALE_NAN_BITS;
use mobius_tsdb::db::Db;
use mobius_tsdb::head::{RefHasher, SeriesRef};
use parking_lot::Mutex;
use siphasher::sip128::SipHasher13;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The largest scrape answer read (a target answering more fails the scrape, as
/// Prometheus' `body_size_limit` fails it).
pub const MAX_SCRAPE_BYTES: usize = 64 << 20;

/// One endpoint to scrape, with the labels its series get.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    pub metrics_path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// `job`, `instance` and the configured labels.
    pub labels: Labels,
    /// Applied to every scraped series before it is stored (a series relabelled
    /// away is not stored).
    pub metric_relabel: Arc<[RelabelConfig]>,
}

/// The targets of every static config of a Prometheus configuration.
pub fn static_targets(config: &PrometheusConfig) -> Vec<Target> {
    config.scrape_configs.iter().flat_map(|job| job_targets(job, &job.static_configs)).collect()
}

/// The targets of a job's target groups, after its `relabel_configs`, as Prometheus
/// makes them: `__address__`, `__metrics_path__`, `__scheme__` and `job` to start
/// with, group labels over those, `instance` from the address when relabelling left
/// none, and every `__` label removed at the end. A target relabelled away is not
/// scraped.
pub fn job_targets(job: &ScrapeConfig, groups: &[StaticConfig]) -> Vec<Target> {
    job_targets_and_dropped(job, groups).0
}

/// A target's labels as discovered, before relabelling (Prometheus' `discoveredLabels`).
fn discovered_labels(job: &ScrapeConfig, group: &StaticConfig, address: &str) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("job".to_string(), job.job_name.clone()),
        ("__address__".to_string(), address.to_string()),
        ("__metrics_path__".to_string(), job.metrics_path.clone()),
        ("__scheme__".to_string(), "http".to_string()),
        ("__scrape_interval__".to_string(), format!("{}s", job.scrape_interval.as_secs_f64())),
        ("__scrape_timeout__".to_string(), format!("{}s", job.scrape_timeout.as_secs_f64())),
    ];
    for (k, v) in &group.labels {
        pairs.retain(|(name, _)| name != k);
        pairs.push((k.clone(), v.clone()));
    }
    pairs
}

/// [`job_targets`], and the discovered labels of the targets relabelling dropped
/// (Prometheus' `droppedTargets`).
pub fn job_targets_and_dropped(job: &ScrapeConfig, groups: &[StaticConfig]) -> (Vec<Target>, Vec<Labels>) {
    let metric_relabel: Arc<[RelabelConfig]> = job.metric_relabel_configs.clone().into();
    let mut out = Vec::new();
    let mut dropped = Vec::new();
    for group in groups {
        for address in &group.targets {
            let pairs = discovered_labels(job, group, address);
            let Some(mut pairs) = relabel(pairs.clone(), &job.relabel_configs) else {
                dropped.push(Labels::new(pairs));
                continue;
            };
            let get = |pairs: &[(String, String)], name: &str| {
                pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
            };
            let address = get(&pairs, "__address__");
            if address.is_empty() {
                tracing::warn!(job = %job.job_name, "a target without __address__ after relabelling is skipped");
                continue;
            }
            let metrics_path = match get(&pairs, "__metrics_path__") {
                p if p.starts_with('/') => p,
                _ => job.metrics_path.clone(),
            };
            if get(&pairs, "instance").is_empty() {
                pairs.push(("instance".to_string(), address.clone()));
            }
            pairs.retain(|(k, _)| !k.starts_with("__"));
            out.push(Target {
                address,
                metrics_path,
                interval: job.scrape_interval,
                timeout: job.scrape_timeout,
                honor_labels: job.honor_labels,
                honor_timestamps: job.honor_timestamps,
                labels: Labels::new(pairs),
                metric_relabel: Arc::clone(&metric_relabel),
            });
        }
    }
    (out, dropped)
}

/// How a target's last scrape went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetHealth {
    pub up: bool,
    /// Milliseconds since the epoch of the last scrape, 0 before the first.
    pub last_scrape_ms: i64,
    pub last_duration: Duration,
    pub last_error: Option<String>,
    pub samples: usize,
}

struct Running {
    target: Target,
    health: Arc<Mutex<TargetHealth>>,
    /// Dropped (or sent) to stop the loop, which then ends its series.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// What targets say about a metric (`# TYPE`, `# HELP`, `# UNIT`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricMeta {
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// Metric metadata by metric name, as the targets last described it.
pub type Metadata = Arc<Mutex<std::collections::BTreeMap<String, MetricMeta>>>;

/// Every scrape loop, replaced as a whole when the configuration changes.
pub struct Scraper {
    db: Arc<Db>,
    running: Mutex<Vec<Running>>,
    pub metadata: Metadata,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").field("targets", &self.running.lock().len()).finish()
    }
}

impl Scraper {
    pub fn new(db: Arc<Db>) -> Arc<Scraper> {
        Arc::new(Scraper { db, running: Mutex::new(Vec::new()), metadata: Metadata::default() })
    }

    /// Scrapes exactly these targets from now on: loops of unchanged targets go on,
    /// others stop, new ones start.
    pub fn set_targets(&self, targets: Vec<Target>) {
        let mut running = self.running.lock();
        // A target that goes away ends its series with staleness markers, as in Prometheus.
        running.retain_mut(|r| {
            let keep = targets.contains(&r.target);
            if !keep {
                drop(r.stop.take());
            }
            keep
        });
        for target in targets {
            if running.iter().any(|r| r.target == target) {
                continue;
            }
            let health = Arc::new(Mutex::new(TargetHealth::default()));
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(scrape_loop(
                Arc::clone(&self.db),
                Arc::clone(&self.metadata),
                target.clone(),
                Arc::clone(&health),
                stopped,
            ));
            running.push(Running { target, health, stop: Some(stop), task });
        }
    }

    pub fn targets(&self) -> Vec<(Target, TargetHealth)> {
        self.running.lock().iter().map(|r| (r.target.clone(), r.health.lock().clone())).collect()
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        for r in self.running.get_mut().iter() {
            r.task.abort();
        }
    }
}

use mobius_series::now_ms;

/// How far a scrape may start from one interval after the last and still be
/// stamped exactly one interval after it (Prometheus' 2 ms).
const TIMESTAMP_TOLERANCE_MS: i64 = 2;

/// The time of a scrape's samples: exactly one interval after the last scrape's when
/// the scrape started within the tolerance of that, as Prometheus aligns them. Equal
/// gaps cost one bit a sample in a chunk; a gap off by a millisecond costs sixteen.
fn scrape_time(last: Option<i64>, now: i64, interval: i64) -> i64 {
    match last.map(|l| l.saturating_add(interval)) {
        Some(expected)
            if interval > 100 * TIMESTAMP_TOLERANCE_MS && (now - expected).abs() < TIMESTAMP_TOLERANCE_MS =>
        {
            expected
        }
        _ => now,
    }
}

/// The largest read buffer of a scrape connection.
const READ_BUFFER: usize = 32 << 10;

/// A series of the target as last seen (`None`: dropped by `metric_relabel_configs`).
struct Cached {
    series: Option<SeriesRef>,
    seen: u64,
}

struct Loop {
    db: Arc<Db>,
    target: Target,
    connection: Option<SendRequest<Empty<Bytes>>>,
    /// The target's series by the 128-bit SipHash-1-3 of their text as exposed,
    /// under random keys, rather than by a copy of the text (about 90 bytes a
    /// series): two distinct series of one target share a key with odds near 2^-128.
    cache: HashMap<u128, Cached, BuildHasherDefault<RefHasher>>,
    keyer: SipHasher13,
    scrape: u64,
    /// The time given to the last scrape's samples.
    last_t: Option<i64>,
    batch: Vec<(SeriesRef, i64, f64)>,
    report: HashMap<&'static str, SeriesRef>,
    metadata: Metadata,
}

async fn scrape_loop(
    db: Arc<Db>,
    metadata: Metadata,
    target: Target,
    health: Arc<Mutex<TargetHealth>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    // Targets are spread over the interval, each at an offset of its own.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    target.address.hash(&mut hasher);
    target.metrics_path.hash(&mut hasher);
    let interval_ms = u64::try_from(target.interval.as_millis()).unwrap_or(u64::MAX).max(1);
    let now = u64::try_from(now_ms()).unwrap_or(0);
    let offset = (hasher.finish() % interval_ms + interval_ms - now % interval_ms) % interval_ms;
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_millis(offset), target.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut state = Loop {
        db,
        target,
        connection: None,
        cache: HashMap::default(),
        // Random keys: std's RandomState draws its own from the operating system.
        keyer: SipHasher13::new_with_keys(RandomState::new().hash_one(0u8), RandomState::new().hash_one(1u8)),
        scrape: 0,
        last_t: None,
        batch: Vec::new(),
        report: HashMap::new(),
        metadata,
    };
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let outcome = state.scrape_once().await;
                *health.lock() = outcome;
            }
            _ = &mut stopped => {
                state.end_series();
                return;
            }
        }
    }
}

impl Loop {
    async fn scrape_once(&mut self) -> TargetHealth {
        self.scrape += 1;
        let interval = i64::try_from(self.target.interval.as_millis()).unwrap_or(i64::MAX);
        let t = scrape_time(self.last_t, now_ms(), interval);
        self.last_t = Some(t);
        let started = Instant::now();
        let fetched = match tokio::time::timeout(self.target.timeout, self.fetch()).await {
            Ok(result) => result,
            Err(_) => {
                self.connection = None;
                Err(format!("scrape timed out after {:?}", self.target.timeout))
            }
        };
        let result = fetched.and_then(|(body, format)| self.ingest(&body, format, t));
        let duration = started.elapsed();
        let (up, samples, added, error) = match result {
            Ok((samples, added)) => (true, samples, added, None),
            Err(e) => {
                tracing::debug!(target = %self.target.address, error = %e, "scrape failed");
                (false, 0, 0, Some(e))
            }
        };
        // Series of the previous scrape that this one did not return end here.
        let previous = self.scrape - 1;
        let scrape = self.scrape;
        self.batch.clear();
        self.cache.retain(|_, c| {
            if let (true, Some(series)) = (c.seen == previous, c.series) {
                self.batch.push((series, t, f64::from_bits(STALE_NAN_BITS)));
            }
            c.seen == scrape
        });
        let report = [
            ("up", if up { 1.0 } else { 0.0 }),
            ("scrape_duration_seconds", duration.as_secs_f64()),
            ("scrape_samples_scraped", samples as f64),
            ("scrape_samples_post_metric_relabeling", samples as f64),
            ("scrape_series_added", added as f64),
        ];
        for (name, value) in report {
            if let Some(series) = self.report_series(name) {
                self.batch.push((series, t, value));
            }
        }
        // Numbers of series the store dropped from memory (gone quiet for a block range)
        // are resolved from their labels again at the next scrape.
        match self.db.append_refs(&self.batch) {
            Ok(stats) if stats.unknown_series > 0 => self.report.clear(),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot store scraped samples"),
        }
        TargetHealth { up, last_scrape_ms: t, last_duration: duration, last_error: error, samples }
    }

    /// Marks every series of the target stale: it is no longer scraped.
    fn end_series(&mut self) {
        let t = now_ms();
        let stale = f64::from_bits(STALE_NAN_BITS);
        let mut batch: Vec<(SeriesRef, i64, f64)> =
            self.cache.values().filter_map(|c| c.series).map(|series| (series, t, stale)).collect();
        batch.extend(self.report.values().map(|r| (*r, t, stale)));
        if let Err(e) = self.db.append_refs(&batch) {
            tracing::error!(error = %e, "cannot end the series of a removed target");
        }
    }

    fn report_series(&mut self, name: &'static str) -> Option<SeriesRef> {
        if let Some(r) = self.report.get(name) {
            return Some(*r);
        }
        let mut pairs: Vec<(String, String)> =
            self.target.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        pairs.push((mobius_series::labels::METRIC_NAME.to_string(), name.to_string()));
        let r = self.db.series_ref(&Labels::new(pairs)).ok()?;
        self.report.insert(name, r);
        Some(r)
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(&self.target.address).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        // Each kept-alive connection keeps its read buffer: a small one, reused while
        // the body streams through it, rather than one as large as a whole body.
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Scrapes once. A kept-alive connection the target closed in the meantime is
    /// replaced and the request sent again (a scrape is idempotent).
    async fn fetch(&mut self) -> Result<(Bytes, Format), String> {
        let reused = self.connection.take().filter(|s| !s.is_closed());
        let answer = match reused {
            Some(sender) => match self.exchange(sender).await {
                Ok(answer) => answer,
                Err(_) => self.exchange(self.connect().await?).await?,
            },
            None => self.exchange(self.connect().await?).await?,
        };
        let (status, body, format) = answer;
        if !status.is_success() {
            return Err(format!("server returned HTTP status {status}"));
        }
        Ok((body, format))
    }

    /// One request and its whole response (at most [`MAX_SCRAPE_BYTES`]) on
    /// `sender`; errors are the transport's.
    async fn exchange(
        &mut self,
        mut sender: SendRequest<Empty<Bytes>>,
    ) -> Result<(hyper::StatusCode, Bytes, Format), String> {
        sender.ready().await.map_err(|e| e.to_string())?;
        let request = hyper::Request::get(self.target.metrics_path.as_str())
            .header(hyper::header::HOST, self.target.address.as_str())
            .header(hyper::header::ACCEPT, Format::ACCEPT)
            .header(hyper::header::USER_AGENT, concat!("mobius/", env!("CARGO_PKG_VERSION")))
            .header("x-prometheus-scrape-timeout-seconds", format!("{}", self.target.timeout.as_secs_f64()))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let format = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or(Format::Text, Format::from_content_type);
        // A target is a service a project runs: its answer is bounded like any input.
        let limited = http_body_util::Limited::new(response.into_body(), MAX_SCRAPE_BYTES);
        let body = limited
            .collect()
            .await
            .map_err(|e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => {
                    format!("body size limit exceeded: the scrape is larger than {MAX_SCRAPE_BYTES} bytes (64 MiB)")
                }
                None => e.to_string(),
            })?
            .to_bytes();
        self.connection = Some(sender);
        Ok((status, body, format))
    }

    /// Records what a target says about a metric; allocates only when it changed.
    fn describe(&self, metric: &str, field: fn(&mut MetricMeta) -> &mut String, value: &str) {
        let mut all = self.metadata.lock();
        match all.get_mut(metric) {
            Some(meta) => {
                let slot = field(meta);
                if slot != value {
                    *slot = value.to_string();
                }
            }
            None => {
                let mut meta = MetricMeta::default();
                *field(&mut meta) = value.to_string();
                all.insert(metric.to_string(), meta);
            }
        }
    }

    /// Stores a body's samples (all or none); returns how many, and how many series were new.
    fn ingest(&mut self, body: &[u8], format: Format, t: i64) -> Result<(usize, usize), String> {
        let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
        self.batch.clear();
        let mut added = 0;
        let scrape = self.scrape;
        for entry in Parser::new(text, format) {
            let sample = match entry.map_err(|e| e.to_string())? {
                Entry::Sample(sample) => sample,
                Entry::Help { metric, text } => {
                    self.describe(metric, |m| &mut m.help, text);
                    continue;
                }
                Entry::Type { metric, kind } => {
                    self.describe(metric, |m| &mut m.kind, kind.as_str());
                    continue;
                }
                Entry::Unit { metric, unit } => {
                    self.describe(metric, |m| &mut m.unit, unit);
                    continue;
                }
            };
            let at = match sample.timestamp_ms {
                Some(ts) if self.target.honor_timestamps => ts,
                _ => t,
            };
            let key = self.keyer.hash(sample.series.as_bytes()).as_u128();
            let series = match self.cache.get_mut(&key) {
                Some(cached) => {
                    cached.seen = scrape;
                    cached.series
                }
                None => {
                    let labels = target_labels(parse_series(sample.series)?, &self.target);
                    let kept = if self.target.metric_relabel.is_empty() {
                        Some(labels)
                    } else {
                        let pairs = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                        relabel(pairs, &self.target.metric_relabel).map(Labels::new).filter(|l| l.metric().is_some())
                    };
                    let series = match kept {
                        Some(labels) => Some(self.db.series_ref(&labels).map_err(|e| e.to_string())?),
                        None => None,
                    };
                    self.cache.insert(key, Cached { series, seen: scrape });
                    added += usize::from(series.is_some());
                    series
                }
            };
            if let Some(series) = series {
                self.batch.push((series, at, sample.value));
            }
        }
        let samples = self.batch.len();
        let stats = self.db.append_refs(&self.batch).map_err(|e| e.to_string())?;
        if stats.unknown_series > 0 {
            self.cache.clear();
        }
        if stats.out_of_order + stats.duplicate > 0 {
            tracing::debug!(target = %self.target.address, out_of_order = stats.out_of_order, duplicate = stats.duplicate, "samples dropped");
        }
        Ok((samples, added))
    }
}

/// The scraped labels with the target's: a clash keeps the scraped value as
/// `exported_NAME`, unless `honor_labels` keeps it as it is.
fn target_labels(mut pairs: Vec<(String, String)>, target: &Target) -> Labels {
    for (name, value) in target.labels.iter() {
        match pairs.iter_mut().find(|(k, _)| k == name) {
            Some(_) if target.honor_labels => {}
            Some(existing) => {
                existing.0 = format!("exported_{name}");
                pairs.push((name.to_string(), value.to_string()));
            }
            None => pairs.push((name.to_string(), value.to_string())),
        }
    }
    Labels::new(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_times_snap_to_the_interval_within_two_milliseconds() {
        assert_eq!(scrape_time(None, 10_003, 1000), 10_003);
        assert_eq!(scrape_time(Some(10_003), 11_004, 1000), 11_003);
        assert_eq!(scrape_time(Some(10_003), 11_002, 1000), 11_003);
        assert_eq!(scrape_time(Some(10_003), 11_005, 1000), 11_005, "2 ms late is a new start");
        assert_eq!(scrape_time(Some(10_003), 11_001, 1000), 11_001);
        assert_eq!(scrape_time(Some(10_003), 10_104, 100), 10_104, "too short an interval to snap");
    }

    #[test]
    fn target_labels_win_unless_honoured() {
        let mut target = Target {
            address: "h:1".into(),
            metrics_path: "/metrics".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            honor_labels: false,
            honor_timestamps: true,
            labels: Labels::from_pairs(&[("job", "api"), ("instance", "h:1")]),
            metric_relabel: Vec::new().into(),
        };
        let scraped = parse_series("x{job=\"other\"}").unwrap();
        let labels = target_labels(scraped.clone(), &target);
        assert_eq!(labels.to_string(), "x{exported_job=\"other\", instance=\"h:1\", job=\"api\"}");
        target.honor_labels = true;
        assert_eq!(target_labels(scraped, &target).to_string(), "x{instance=\"h:1\", job=\"other\"}");
    }
}
