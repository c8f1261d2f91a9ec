//! The monitor inside `mobius serve`: the time-series store in `DATA/monitor` and the
//! scrape loops of `--prometheus-config`, started before the server answers.

use anyhow::Context;
use mobius_monitor::config::parse_prometheus_config;
use mobius_monitor::scrape::{static_targets, Scraper};
use mobius_monitor::{Db, DbOptions};
use mobius_workflow::SourceFile;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The store and its scrapers, when a configuration asks for them.
#[derive(Debug)]
pub struct Monitor {
    pub db: Arc<Db>,
    pub scraper: Arc<Scraper>,
    config_path: PathBuf,
}

fn read_config(path: &Path) -> anyhow::Result<mobius_monitor::config::PrometheusConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_prometheus_config(SourceFile::new(path.display().to_string(), text))
        .map_err(|e| anyhow::anyhow!("{}", e.render(false)))
}

impl Monitor {
    /// Reads the configuration (every problem with file, line and column), replays the
    /// write-ahead log and starts scraping.
    pub fn start(data_dir: &Path, config_path: &Path) -> anyhow::Result<Monitor> {
        let config = read_config(config_path)?;
        let db = Db::open(DbOptions::new(data_dir.join("monitor")))?;
        let scraper = Scraper::new(Arc::clone(&db));
        let targets = static_targets(&config);
        tracing::info!(targets = targets.len(), series = db.stats().series, "monitor started");
        scraper.set_targets(targets);
        Ok(Monitor { db, scraper, config_path: config_path.to_path_buf() })
    }

    /// Reads the configuration again (on SIGHUP or `POST /-/reload`): targets that
    /// stay are scraped on, others stop, new ones start. A configuration with errors
    /// changes nothing. Returns how many targets are scraped.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let targets = static_targets(&read_config(&self.config_path)?);
        let count = targets.len();
        self.scraper.set_targets(targets);
        tracing::info!(targets = count, "monitor configuration reloaded");
        Ok(count)
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
             # HELP mobius_monitor_head_chunk_bytes Bytes of compressed samples in memory.\n\
             # TYPE mobius_monitor_head_chunk_bytes gauge\n\
             mobius_monitor_head_chunk_bytes {}\n\
             # HELP mobius_monitor_targets_up Scrape targets whose last scrape succeeded.\n\
             # TYPE mobius_monitor_targets_up gauge\n\
             mobius_monitor_targets_up {up}\n",
            head.series, head.chunk_bytes
        );
    }
}
