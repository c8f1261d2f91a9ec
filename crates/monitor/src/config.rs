//! `prometheus.yml`, read as Prometheus reads it: `global` and `scrape_configs` with
//! static targets. Keys Mobius does not handle yet are refused by name and position
//! rather than ignored, so a configuration never means less than it says.

use crate::relabel::{anchored, Action, RelabelConfig};
use mobius_config::yaml::{self, Node};
use mobius_config::Checker;
use mobius_config::{Diagnostic, FileErrors, SourceFile};
use std::time::Duration;

/// The parts of a Prometheus configuration Mobius acts on.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub evaluation_interval: Duration,
    pub external_labels: Vec<(String, String)>,
    pub scrape_configs: Vec<ScrapeConfig>,
    pub rule_files: Vec<String>,
}

/// One `scrape_configs` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub metrics_path: String,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub static_configs: Vec<StaticConfig>,
    /// Files of target groups (JSON or YAML), paths relative to the configuration.
    pub file_sd_configs: Vec<FileSdConfig>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

/// `file_sd_configs`: file patterns (`*` allowed in the file name) read again when they change.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSdConfig {
    pub files: Vec<String>,
    pub refresh_interval: Duration,
}

/// Targets (`host:port`) sharing labels.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: Vec<(String, String)>,
}

const SCRAPE_LATER: [&str; 11] = [
    "params",
    "scheme",
    "basic_auth",
    "authorization",
    "tls_config",
    "sample_limit",
    "label_limit",
    "body_size_limit",
    "kubernetes_sd_configs",
    "dns_sd_configs",
    "http_sd_configs",
];

/// Reads a `prometheus.yml`; every problem is reported with its position.
pub fn parse_prometheus_config(file: SourceFile) -> Result<PrometheusConfig, FileErrors> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return Err(FileErrors { file, diagnostics: vec![Diagnostic::new(e.pos, e.message)] }),
    };
    let mut c = Checker { diagnostics: Vec::new() };
    let config = prometheus_config(&mut c, &root);
    c.finish(file, config)
}

/// A `prometheus.yml`'s content at `root` (the file itself, or a project's `monitoring.prometheus`).
pub(crate) fn prometheus_config(c: &mut Checker, root: &Node) -> PrometheusConfig {
    let mut config = PrometheusConfig {
        scrape_interval: Duration::from_secs(60),
        scrape_timeout: Duration::from_secs(10),
        evaluation_interval: Duration::from_secs(60),
        external_labels: Vec::new(),
        scrape_configs: Vec::new(),
        rule_files: Vec::new(),
    };
    let mut scrape_nodes = None;
    for (key, value) in c.entries(
        root,
        "the configuration",
        &["global", "scrape_configs", "rule_files"],
        &["alerting", "remote_write", "remote_read", "storage", "tracing", "scrape_config_files"],
    ) {
        match key {
            "global" => {
                for (key, value) in c.entries(
                    value,
                    "`global`",
                    &["scrape_interval", "scrape_timeout", "evaluation_interval", "external_labels"],
                    &["query_log_file", "body_size_limit", "sample_limit"],
                ) {
                    match key {
                        "scrape_interval" => {
                            config.scrape_interval = c.duration(value, key).unwrap_or(config.scrape_interval)
                        }
                        "scrape_timeout" => {
                            config.scrape_timeout = c.duration(value, key).unwrap_or(config.scrape_timeout)
                        }
                        "evaluation_interval" => {
                            config.evaluation_interval = c.duration(value, key).unwrap_or(config.evaluation_interval)
                        }
                        _ => {
                            config.external_labels =
                                c.labels(value, "`external_labels`", mobius_series::valid_label_name)
                        }
                    }
                }
            }
            "rule_files" => config.rule_files = c.strings(value, "`rule_files`"),
            _ => scrape_nodes = Some(value),
        }
    }
    if config.scrape_timeout > config.scrape_interval {
        config.scrape_timeout = config.scrape_interval;
    }
    if let Some(node) = scrape_nodes {
        let items = node.as_seq().unwrap_or_else(|| {
            c.error(node.pos, "`scrape_configs` must be a list");
            &[]
        });
        for item in items {
            if let Some(job) = scrape_config(c, item, &config) {
                if config.scrape_configs.iter().any(|j| j.job_name == job.job_name) {
                    c.error(item.pos, format!("job `{}` is configured twice", job.job_name));
                }
                config.scrape_configs.push(job);
            }
        }
    }
    config
}

fn scrape_config(c: &mut Checker, node: &Node, global: &PrometheusConfig) -> Option<ScrapeConfig> {
    let mut job = ScrapeConfig {
        job_name: String::new(),
        scrape_interval: global.scrape_interval,
        scrape_timeout: global.scrape_timeout,
        metrics_path: "/metrics".into(),
        honor_labels: false,
        honor_timestamps: true,
        static_configs: Vec::new(),
        file_sd_configs: Vec::new(),
        relabel_configs: Vec::new(),
        metric_relabel_configs: Vec::new(),
    };
    let mut timeout_given = false;
    for (key, value) in c.entries(
        node,
        "a scrape config",
        &[
            "job_name",
            "scrape_interval",
            "scrape_timeout",
            "metrics_path",
            "honor_labels",
            "honor_timestamps",
            "static_configs",
            "file_sd_configs",
            "relabel_configs",
            "metric_relabel_configs",
        ],
        &SCRAPE_LATER,
    ) {
        match key {
            "job_name" => job.job_name = c.string(value, key).unwrap_or_default(),
            "scrape_interval" => job.scrape_interval = c.duration(value, key).unwrap_or(job.scrape_interval),
            "scrape_timeout" => {
                timeout_given = true;
                job.scrape_timeout = c.duration(value, key).unwrap_or(job.scrape_timeout);
            }
            "metrics_path" => job.metrics_path = c.string(value, key).unwrap_or(job.metrics_path),
            "honor_labels" => job.honor_labels = c.boolean(value, key).unwrap_or(false),
            "honor_timestamps" => job.honor_timestamps = c.boolean(value, key).unwrap_or(true),
            "relabel_configs" => job.relabel_configs = relabel_configs(c, value, key),
            "metric_relabel_configs" => job.metric_relabel_configs = relabel_configs(c, value, key),
            "file_sd_configs" => {
                for item in value.as_seq().unwrap_or(&[]) {
                    let mut sd = FileSdConfig { files: Vec::new(), refresh_interval: Duration::from_secs(300) };
                    for (key, value) in c.entries(item, "a file_sd config", &["files", "refresh_interval"], &[]) {
                        if key == "files" {
                            sd.files = c.strings(value, "`files`");
                        } else {
                            sd.refresh_interval =
                                c.duration(value, "`refresh_interval`").unwrap_or(sd.refresh_interval);
                        }
                    }
                    if sd.files.is_empty() {
                        c.error(item.pos, "a file_sd config needs `files`");
                    }
                    job.file_sd_configs.push(sd);
                }
                if value.as_seq().is_none() {
                    c.error(value.pos, "`file_sd_configs` must be a list");
                }
            }
            _ => {
                let Some(groups) = value.as_seq() else {
                    c.error(value.pos, "`static_configs` must be a list");
                    continue;
                };
                for group in groups {
                    let mut targets = StaticConfig { targets: Vec::new(), labels: Vec::new() };
                    for (key, value) in c.entries(group, "a static config", &["targets", "labels"], &[]) {
                        if key == "targets" {
                            for (i, t) in c.strings(value, "`targets`").into_iter().enumerate() {
                                if t.contains('/') || !t.contains(':') {
                                    let pos = value.as_seq().and_then(|s| s.get(i)).map_or(value.pos, |n| n.pos);
                                    c.error(pos, format!("target `{t}` must be host:port"));
                                }
                                targets.targets.push(t);
                            }
                        } else {
                            targets.labels = c.labels(value, "`labels`", mobius_series::valid_label_name);
                        }
                    }
                    job.static_configs.push(targets);
                }
            }
        }
    }
    if job.job_name.is_empty() {
        c.error(node.pos, "a scrape config needs a `job_name`");
        return None;
    }
    if timeout_given && job.scrape_timeout > job.scrape_interval {
        c.error(node.pos, format!("job `{}`: scrape_timeout is longer than scrape_interval", job.job_name));
    }
    job.scrape_timeout = job.scrape_timeout.min(job.scrape_interval);
    if !job.metrics_path.starts_with('/') {
        c.error(node.pos, format!("job `{}`: metrics_path must start with `/`", job.job_name));
    }
    Some(job)
}

/// A `file_sd_configs` file: a list of `{targets: [host:port...], labels: {...}}` in
/// JSON or YAML, every problem with its position.
pub fn parse_file_sd(file: SourceFile) -> Result<Vec<StaticConfig>, FileErrors> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return Err(FileErrors { file, diagnostics: vec![Diagnostic::new(e.pos, e.message)] }),
    };
    let mut c = Checker { diagnostics: Vec::new() };
    let mut out = Vec::new();
    match root.as_seq() {
        Some(groups) => {
            for group in groups {
                let mut targets = StaticConfig { targets: Vec::new(), labels: Vec::new() };
                for (key, value) in c.entries(group, "a target group", &["targets", "labels"], &[]) {
                    if key == "targets" {
                        targets.targets = c.strings(value, "`targets`");
                    } else {
                        targets.labels = c.labels(value, "`labels`", mobius_series::valid_label_name);
                    }
                }
                out.push(targets);
            }
        }
        None if root.is_null() => {}
        None => c.error(root.pos, "a file_sd file must be a list of target groups"),
    }
    if c.diagnostics.is_empty() {
        Ok(out)
    } else {
        Err(FileErrors { file, diagnostics: c.diagnostics })
    }
}

/// `relabel_configs` and `metric_relabel_configs` entries, checked as Prometheus checks them.
fn relabel_configs(c: &mut Checker, node: &Node, what: &str) -> Vec<RelabelConfig> {
    let Some(items) = node.as_seq() else {
        c.error(node.pos, format!("`{what}` must be a list"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let mut step = RelabelConfig::new(Action::Replace);
        let mut target_given = false;
        let mut action_known = true;
        for (key, value) in c.entries(
            item,
            "a relabel config",
            &["source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action"],
            &[],
        ) {
            match key {
                "source_labels" => step.source_labels = c.strings(value, "`source_labels`"),
                "separator" => step.separator = c.string(value, "`separator`").unwrap_or_default(),
                "regex" => {
                    let pattern = c.string(value, "`regex`").unwrap_or_default();
                    match anchored(&pattern) {
                        Ok(re) => step.regex = re,
                        Err(e) => c.error(value.pos, format!("`regex` does not compile: {e}")),
                    }
                }
                "modulus" => match value.scalar_string().and_then(|s| s.parse().ok()) {
                    Some(n) => step.modulus = n,
                    None => c.error(value.pos, "`modulus` must be a whole number"),
                },
                "target_label" => {
                    target_given = true;
                    step.target_label = c.string(value, "`target_label`").unwrap_or_default();
                }
                "replacement" => step.replacement = c.string(value, "`replacement`").unwrap_or_default(),
                _ => {
                    let name = c.string(value, "`action`").unwrap_or_default();
                    match Action::parse(&name.to_lowercase()) {
                        Some(a) => step.action = a,
                        None => {
                            action_known = false;
                            c.error(value.pos, format!("unknown relabel action `{name}` (expected one of: replace, keep, drop, keepequal, dropequal, labelmap, labeldrop, labelkeep, lowercase, uppercase, hashmod)"));
                        }
                    }
                }
            }
        }
        let needs_target = matches!(
            step.action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if action_known && needs_target && !target_given {
            c.error(item.pos, "this relabel action needs a `target_label`");
        }
        if step.action == Action::HashMod && step.modulus == 0 {
            c.error(item.pos, "`hashmod` needs a `modulus` above 0");
        }
        if matches!(step.action, Action::LabelDrop | Action::LabelKeep) && !step.source_labels.is_empty() {
            c.error(item.pos, "`labeldrop` and `labelkeep` take no `source_labels`");
        }
        out.push(step);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PrometheusConfig, Vec<String>> {
        parse_prometheus_config(SourceFile::new("prometheus.yml", text))
            .map_err(|e| e.diagnostics.iter().map(|d| d.short()).collect())
    }

    #[test]
    fn a_usual_configuration_reads_with_prometheus_defaults() {
        let text = [
            "global:",
            "  scrape_interval: 15s",
            "  external_labels: { site: lab }",
            "rule_files: [rules.yml]",
            "scrape_configs:",
            "  - job_name: api",
            "    static_configs:",
            "      - targets: ['127.0.0.1:9100', 'localhost:9101']",
            "        labels: { team: core }",
            "  - job_name: fast",
            "    scrape_interval: 1s",
            "    metrics_path: /m",
        ]
        .join("\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.scrape_interval, Duration::from_secs(15));
        assert_eq!(config.rule_files, ["rules.yml"]);
        let api = &config.scrape_configs[0];
        assert_eq!((api.scrape_interval, api.scrape_timeout), (Duration::from_secs(15), Duration::from_secs(10)));
        assert_eq!(api.static_configs[0].targets, ["127.0.0.1:9100", "localhost:9101"]);
        assert_eq!(api.static_configs[0].labels, [("team".to_string(), "core".to_string())]);
        let fast = &config.scrape_configs[1];
        assert_eq!((fast.scrape_timeout, fast.metrics_path.as_str()), (Duration::from_secs(1), "/m"));
    }

    #[test]
    fn problems_are_all_reported_with_positions() {
        let errors = parse(
            "global:\n  scrape_interval: soon\nscrape_configs:\n  - job_name: a\n    relabel_configs: [{ action: mangle }]\n    static_configs:\n      - targets: [nohost]\n  - scrape_interval: 1s\n  - job_name: a\n    bogus: 1\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "2:20 scrape_interval must be a duration such as `15s`, `1m` or `500ms`",
                "5:33 unknown relabel action `mangle` (expected one of: replace, keep, drop, keepequal, dropequal, labelmap, labeldrop, labelkeep, lowercase, uppercase, hashmod)",
                "7:19 target `nohost` must be host:port",
                "8:5 a scrape config needs a `job_name`",
                "10:5 unknown key `bogus` in a scrape config (expected one of: job_name, scrape_interval, scrape_timeout, metrics_path, honor_labels, honor_timestamps, static_configs, file_sd_configs, relabel_configs, metric_relabel_configs)",
                "9:5 job `a` is configured twice",
            ]
        );
    }
}
