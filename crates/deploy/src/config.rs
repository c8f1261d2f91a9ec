//! `mobius.yaml`: services, environments and their rollout strategies, parsed with
//! positions and validated into a model that holds only valid settings.

use indexmap::IndexMap;
use mobius_config::yaml::{self, Node, NodeValue, Pos};
use mobius_config::{Diagnostic, FileErrors, SourceFile};
use mobius_core::StrategyKind;
use mobius_router::Sticky;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The file name, at the repository root.
pub const FILE_NAME: &str = "mobius.yaml";

/// A project's delivery: what its services are and where they go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryConfig {
    pub services: IndexMap<String, Service>,
    pub environments: IndexMap<String, Environment>,
}

/// A long-running program built by a workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    /// The artifact name the workflow gave `actions/upload-artifact`.
    pub artifact: String,
    /// The command line, run by `sh -c` in the unpacked artifact; `{port}` is the instance's port.
    pub run: String,
    /// A directory inside the artifact to start in.
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub instances: u32,
    pub health: HealthCheck,
    /// Where the instances expose Prometheus metrics (scraped by the monitor).
    pub metrics_path: Option<String>,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Time requests in flight get to finish once an instance leaves traffic.
    pub drain_timeout: Duration,
    /// `runtime: docker`: the image its instances are containers of (`run`, when
    /// given, is their command); `None` for `runtime: process`, the default.
    pub image: Option<String>,
    /// `resources.cpus` of a container.
    pub cpus: Option<f64>,
    /// `resources.memory` of a container, in bytes.
    pub memory: Option<i64>,
}

/// How an instance proves it is ready and stays alive.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passing checks that make an instance healthy.
    pub healthy_threshold: u32,
    /// Consecutive failing checks that make it unhealthy.
    pub unhealthy_threshold: u32,
    /// Time a new instance has to become healthy before the rollout fails.
    pub start_timeout: Duration,
}

/// A place releases are deployed to, with its own public address per service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    pub name: String,
    /// The router's public address for each service deployed here.
    pub listen: IndexMap<String, SocketAddr>,
    pub strategy: Strategy,
    pub analysis: Analysis,
    pub sticky: Option<Sticky>,
    /// Deploys need an approval by someone other than the release's author.
    pub protected: bool,
    /// An environment a release must have succeeded in first.
    pub after: Option<String>,
    /// Deploy each new release here as soon as it exists (and `after` allows).
    pub auto_deploy: bool,
}

/// How a new release replaces the running one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Strategy {
    /// Stop the old instances, then start the new ones.
    Recreate,
    /// Replace instances a few at a time.
    Rolling { max_surge: u32, max_unavailable: u32 },
    /// Start the new version beside the old one, then switch all traffic at once.
    BlueGreen {
        auto_promote: bool,
        preview: Option<SocketAddr>,
        /// How long the old version stays running after the switch, for a fast rollback.
        rollback_window: Duration,
    },
    /// Shift traffic step by step under analysis.
    Canary { steps: Vec<CanaryStep> },
}

impl Strategy {
    /// The kind of strategy, as a rollout records it.
    pub fn kind(&self) -> StrategyKind {
        match self {
            Strategy::Recreate => StrategyKind::Recreate,
            Strategy::Rolling { .. } => StrategyKind::Rolling,
            Strategy::BlueGreen { .. } => StrategyKind::BlueGreen,
            Strategy::Canary { .. } => StrategyKind::Canary,
        }
    }
}

/// One canary step: a weight and how long to hold it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryStep {
    pub weight: u32,
    pub pause: Pause,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pause {
    /// Hold for this long (while analysis passes), then go on.
    For(Duration),
    /// Hold until someone promotes.
    UntilPromoted,
}

/// Automatic analysis of the new version against the stable one, from the router's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub enabled: bool,
    pub interval: Duration,
    /// Requests the new version must have served before any verdict; fewer holds the rollout.
    pub min_requests: u64,
    /// Fail when the new version's error ratio exceeds this…
    pub max_error_ratio: f64,
    /// …or this many times the stable version's.
    pub max_error_ratio_vs_stable: f64,
    /// Fail when the new version's p99 exceeds this many times the stable one's…
    pub max_p99_vs_stable: f64,
    /// …by more than this (so sub-millisecond noise never fails a rollout).
    pub p99_slack: Duration,
    /// Significance of the Mann-Whitney test of latencies at the end of each step (0 turns it off).
    pub mann_whitney_alpha: f64,
    /// PromQL checks against the monitor, templated with `{{version}}`, `{{stable}}`,
    /// `{{service}}` and `{{env}}`.
    pub queries: Vec<MetricCheck>,
}

/// A PromQL query whose single value must stay within bounds while the new version
/// takes traffic; no value yet holds the rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricCheck {
    pub name: String,
    pub query: String,
    pub max: Option<f64>,
    pub min: Option<f64>,
}

impl MetricCheck {
    /// The query with the template variables filled in.
    pub fn render(&self, version: &str, stable: &str, service: &str, env: &str) -> String {
        let mut out = self.query.clone();
        for (name, value) in [("version", version), ("stable", stable), ("service", service), ("env", env)] {
            out = out.replace(&format!("{{{{{name}}}}}"), value).replace(&format!("{{{{ {name} }}}}"), value);
        }
        out
    }
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            enabled: true,
            interval: Duration::from_secs(1),
            min_requests: 20,
            max_error_ratio: 0.05,
            max_error_ratio_vs_stable: 2.0,
            max_p99_vs_stable: 2.0,
            p99_slack: Duration::from_millis(25),
            mann_whitney_alpha: 0.001,
            queries: Vec::new(),
        }
    }
}

/// Reads and validates a `mobius.yaml` for its delivery alone; every problem is
/// reported at once. The server reads the whole file once with `mobius_project`,
/// which calls [`delivery`]; this is for tools and tests that only deploy.
pub fn parse_delivery(file: SourceFile) -> Result<DeliveryConfig, FileErrors> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return Err(FileErrors { file, diagnostics: vec![Diagnostic::new(e.pos, e.message)] }),
    };
    let mut diagnostics = Vec::new();
    let config = delivery(&root, &mut diagnostics);
    if diagnostics.is_empty() {
        Ok(config)
    } else {
        Err(FileErrors { file, diagnostics })
    }
}

/// The delivery a parsed `mobius.yaml` declares (its top-level keys, `services` and
/// `environments`), with every problem added to `diagnostics`. `monitoring` is the
/// monitor's: `mobius_monitor::project::monitoring`.
pub fn delivery(root: &Node, diagnostics: &mut Vec<Diagnostic>) -> DeliveryConfig {
    let mut checker = Checker::default();
    let config = checker.delivery(root);
    diagnostics.append(&mut checker.diagnostics);
    config
}

#[derive(Default)]
struct Checker {
    diagnostics: Vec<Diagnostic>,
}

impl Checker {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(pos, message));
    }

    /// The entries of a mapping, reporting keys that are not in `known`.
    fn mapping<'a>(&mut self, node: &'a Node, what: &str, known: &[&str]) -> Vec<(&'a str, &'a Node)> {
        let Some(entries) = node.as_map() else {
            if !node.is_null() {
                self.error(node.pos, format!("{what} must be a mapping, not a {}", node.kind()));
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.error(key.pos, format!("keys of {what} must be strings"));
                continue;
            };
            if !known.is_empty() && !known.contains(&name) {
                self.diagnostics.push(mobius_config::unknown_key(key.pos, name, what, known));
                continue;
            }
            out.push((name, value));
        }
        out
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            NodeValue::String(s) if !s.is_empty() => Some(s.clone()),
            NodeValue::Number(_) | NodeValue::Bool(_) => node.scalar_string(),
            _ => {
                self.error(node.pos, format!("{what} must be a non-empty string"));
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            NodeValue::Bool(b) => Some(b),
            _ => {
                self.error(node.pos, format!("{what} must be true or false, not a {}", node.kind()));
                None
            }
        }
    }

    fn count(&mut self, node: &Node, what: &str, min: u32, max: u32) -> Option<u32> {
        match node.value {
            NodeValue::Number(n) if n.fract() == 0.0 && n >= f64::from(min) && n <= f64::from(max) => Some(n as u32),
            _ => {
                self.error(node.pos, format!("{what} must be a whole number from {min} to {max}"));
                None
            }
        }
    }

    fn ratio(&mut self, node: &Node, what: &str, max: f64) -> Option<f64> {
        match node.value {
            NodeValue::Number(n) if (0.0..=max).contains(&n) => Some(n),
            _ => {
                self.error(node.pos, format!("{what} must be a number from 0 to {max}"));
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let text = match &node.value {
            NodeValue::String(s) => s.clone(),
            NodeValue::Number(n) if *n >= 0.0 => return Some(Duration::from_secs_f64(*n)),
            _ => String::new(),
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(_) => {
                self.diagnostics.push(
                    Diagnostic::new(node.pos, format!("{what} must be a duration such as `500ms`, `30s` or `5m`"))
                        .with_len(text.chars().count()),
                );
                None
            }
        }
    }

    fn address(&mut self, node: &Node, what: &str) -> Option<SocketAddr> {
        let text = self.string(node, what)?;
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.diagnostics.push(
                    Diagnostic::new(node.pos, format!("{what} must be an IP address and port such as 127.0.0.1:8080"))
                        .with_len(text.chars().count()),
                );
                None
            }
        }
    }

    fn delivery(&mut self, root: &Node) -> DeliveryConfig {
        let mut config = DeliveryConfig { services: IndexMap::new(), environments: IndexMap::new() };
        if root.as_map().is_none() {
            self.error(root.pos, "mobius.yaml must be a mapping with `services` and `environments`");
            return config;
        }
        // `monitoring` is the monitor's (`mobius_monitor::project::monitoring`).
        let entries = self.mapping(root, "mobius.yaml", &["services", "environments", "monitoring"]);
        let mut environment_nodes = Vec::new();
        for (key, value) in entries {
            match key {
                "monitoring" => {}
                "services" => {
                    for (name, node) in self.mapping(value, "services", &[]) {
                        if let Some(service) = self.service(name, node) {
                            config.services.insert(name.to_string(), service);
                        }
                    }
                }
                _ => environment_nodes = self.mapping(value, "environments", &[]),
            }
        }
        if root.get("services").is_none() {
            self.error(root.pos, "mobius.yaml has no `services`");
        }
        for (name, node) in &environment_nodes {
            if let Some(env) = self.environment(name, node, &config.services) {
                config.environments.insert(name.to_string(), env);
            }
        }
        for (name, node) in &environment_nodes {
            if let Some(after) = node.get("after") {
                let target = after.as_str().unwrap_or_default();
                if !config.environments.contains_key(target) && environment_nodes.iter().all(|(n, _)| *n != target) {
                    self.error(after.pos, format!("`after` names `{target}`, which is not an environment"));
                } else if target == *name {
                    self.error(after.pos, "an environment cannot come after itself");
                }
            }
        }
        // Two listeners on one address would fight over it.
        let mut seen: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (name, node) in &environment_nodes {
            let Some(env) = config.environments.get(*name) else { continue };
            let previews = match &env.strategy {
                Strategy::BlueGreen { preview: Some(p), .. } => vec![("preview".to_string(), *p)],
                _ => Vec::new(),
            };
            for (service, addr) in env.listen.iter().map(|(s, a)| (s.clone(), *a)).chain(previews) {
                if addr.port() == 0 {
                    continue;
                }
                let here = format!("{name}/{service}");
                if let Some(other) = seen.insert(addr, here.clone()) {
                    let pos = node.get("listen").map_or(node.pos, |n| n.pos);
                    self.error(pos, format!("{here} listens on {addr}, as {other} does"));
                }
            }
        }
        config
    }

    fn service(&mut self, name: &str, node: &Node) -> Option<Service> {
        const KEYS: &[&str] = &[
            "artifact",
            "run",
            "workdir",
            "env",
            "instances",
            "health",
            "metrics",
            "stop_grace",
            "drain_timeout",
            "runtime",
            "image",
            "resources",
        ];
        if node.as_map().is_none() {
            self.error(node.pos, format!("service `{name}` must be a mapping"));
            return None;
        }
        let before = self.diagnostics.len();
        let mut service = Service {
            name: name.to_string(),
            artifact: name.to_string(),
            run: String::new(),
            workdir: None,
            env: BTreeMap::new(),
            instances: 1,
            health: HealthCheck {
                path: "/".into(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                healthy_threshold: 1,
                unhealthy_threshold: 3,
                start_timeout: Duration::from_secs(30),
            },
            metrics_path: None,
            stop_grace: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            image: None,
            cpus: None,
            memory: None,
        };
        let mut docker = false;
        for (key, value) in self.mapping(node, &format!("service `{name}`"), KEYS) {
            match key {
                "artifact" => service.artifact = self.string(value, "`artifact`").unwrap_or_default(),
                "run" => service.run = self.string(value, "`run`").unwrap_or_default(),
                "workdir" => service.workdir = self.string(value, "`workdir`"),
                "env" => {
                    for (k, v) in self.mapping(value, "`env`", &[]) {
                        match v.scalar_string() {
                            Some(text) if !matches!(v.value, NodeValue::Null) => {
                                service.env.insert(k.to_string(), text);
                            }
                            _ => self.error(v.pos, format!("env `{k}` must be a string, number or boolean")),
                        }
                    }
                }
                "instances" => service.instances = self.count(value, "`instances`", 1, 64).unwrap_or(1),
                "health" => self.health(value, &mut service.health),
                "metrics" => {
                    for (k, v) in self.mapping(value, "`metrics`", &["path"]) {
                        if k == "path" {
                            service.metrics_path = self.path(v, "`metrics.path`");
                        }
                    }
                }
                "stop_grace" => service.stop_grace = self.duration(value, "`stop_grace`").unwrap_or_default(),
                "runtime" => match self.string(value, "`runtime`").as_deref() {
                    Some("docker") => docker = true,
                    Some("process") | None => {}
                    Some(other) => {
                        self.error(value.pos, format!("unknown runtime `{other}`: expected process or docker"))
                    }
                },
                "image" => service.image = self.string(value, "`image`").filter(|i| !i.trim().is_empty()),
                "resources" => {
                    for (k, v) in self.mapping(value, "`resources`", &["cpus", "memory"]) {
                        let text = v.scalar_string().unwrap_or_default();
                        match k {
                            "cpus" => match text.parse::<f64>() {
                                Ok(c) if c > 0.0 => service.cpus = Some(c),
                                _ => self
                                    .error(v.pos, format!("`resources.cpus` must be a positive number, not `{text}`")),
                            },
                            _ => match parse_bytes(&text) {
                                Some(b) => service.memory = Some(b),
                                None => self.error(
                                    v.pos,
                                    format!("`resources.memory` must be a size like 256m or 1g, not `{text}`"),
                                ),
                            },
                        }
                    }
                }
                _ => service.drain_timeout = self.duration(value, "`drain_timeout`").unwrap_or_default(),
            }
        }
        match (docker, &service.image) {
            (true, None) => self.error(node.pos, format!("service `{name}` has `runtime: docker` but no `image`")),
            (false, Some(_)) => {
                let pos = node.get("image").map_or(node.pos, |n| n.pos);
                self.error(
                    pos,
                    format!("service `{name}` has an `image` but `runtime: process`; add `runtime: docker`"),
                );
            }
            _ => {}
        }
        if docker {
            // The image's own command may read PORT; `run` is optional.
        } else if node.get("run").is_none() {
            self.error(node.pos, format!("service `{name}` has no `run` command"));
        } else if !service.run.contains("{port}") && !service.run.contains("PORT") {
            let pos = node.get("run").map_or(node.pos, |n| n.pos);
            self.diagnostics.push(
                Diagnostic::new(pos, format!("service `{name}` never learns its port"))
                    .with_help("use `{port}` in `run` or read the PORT environment variable"),
            );
        }
        if let Some(dir) = &service.workdir {
            if dir.starts_with('/') || dir.split('/').any(|part| part == "..") {
                let pos = node.get("workdir").map_or(node.pos, |n| n.pos);
                self.error(pos, "`workdir` must be a relative path inside the artifact");
            }
        }
        (self.diagnostics.len() == before).then_some(service)
    }

    fn path(&mut self, node: &Node, what: &str) -> Option<String> {
        let path = self.string(node, what)?;
        if !path.starts_with('/') {
            self.error(node.pos, format!("{what} must start with `/`"));
            return None;
        }
        Some(path)
    }

    fn health(&mut self, node: &Node, health: &mut HealthCheck) {
        const KEYS: &[&str] = &["path", "interval", "timeout", "healthy", "unhealthy", "start_timeout"];
        for (key, value) in self.mapping(node, "`health`", KEYS) {
            match key {
                "path" => health.path = self.path(value, "`health.path`").unwrap_or_default(),
                "interval" => health.interval = self.duration(value, "`health.interval`").unwrap_or_default(),
                "timeout" => health.timeout = self.duration(value, "`health.timeout`").unwrap_or_default(),
                "healthy" => health.healthy_threshold = self.count(value, "`health.healthy`", 1, 100).unwrap_or(1),
                "unhealthy" => {
                    health.unhealthy_threshold = self.count(value, "`health.unhealthy`", 1, 100).unwrap_or(1)
                }
                _ => health.start_timeout = self.duration(value, "`health.start_timeout`").unwrap_or_default(),
            }
        }
        if health.interval.is_zero() {
            self.error(node.pos, "`health.interval` must be longer than zero");
        }
    }

    fn environment(&mut self, name: &str, node: &Node, services: &IndexMap<String, Service>) -> Option<Environment> {
        const KEYS: &[&str] = &["listen", "strategy", "analysis", "sticky", "protected", "after", "auto_deploy"];
        if node.as_map().is_none() {
            self.error(node.pos, format!("environment `{name}` must be a mapping"));
            return None;
        }
        let before = self.diagnostics.len();
        let mut env = Environment {
            name: name.to_string(),
            listen: IndexMap::new(),
            strategy: Strategy::Recreate,
            analysis: Analysis::default(),
            sticky: None,
            protected: false,
            after: None,
            auto_deploy: false,
        };
        for (key, value) in self.mapping(node, &format!("environment `{name}`"), KEYS) {
            match key {
                "listen" => match &value.value {
                    NodeValue::Map(_) => {
                        for (service, addr) in self.mapping(value, "`listen`", &[]) {
                            if !services.contains_key(service) {
                                self.error(addr.pos, format!("`listen` names `{service}`, which is not a service"));
                            } else if let Some(a) = self.address(addr, &format!("`listen.{service}`")) {
                                env.listen.insert(service.to_string(), a);
                            }
                        }
                    }
                    _ => {
                        if let Some(addr) = self.address(value, "`listen`") {
                            if services.len() == 1 {
                                let service = services.keys().next().cloned().unwrap_or_default();
                                env.listen.insert(service, addr);
                            } else if !services.is_empty() {
                                self.diagnostics.push(
                                    Diagnostic::new(value.pos, "with several services, `listen` must name each one")
                                        .with_help(
                                            "for example `listen: { web: 127.0.0.1:8801, api: 127.0.0.1:8802 }`",
                                        ),
                                );
                            }
                        }
                    }
                },
                "strategy" => {
                    if let Some(s) = self.strategy(value) {
                        env.strategy = s;
                    }
                }
                "analysis" => self.analysis(value, &mut env.analysis),
                "sticky" => {
                    let entries = self.mapping(value, "`sticky`", &["header", "cookie"]);
                    match entries.as_slice() {
                        [("header", v)] => env.sticky = self.string(v, "`sticky.header`").map(Sticky::Header),
                        [("cookie", v)] => env.sticky = self.string(v, "`sticky.cookie`").map(Sticky::Cookie),
                        _ => self.error(value.pos, "`sticky` takes one of `header: NAME` or `cookie: NAME`"),
                    }
                }
                "protected" => env.protected = self.boolean(value, "`protected`").unwrap_or(false),
                "after" => env.after = self.string(value, "`after`"),
                _ => env.auto_deploy = self.boolean(value, "`auto_deploy`").unwrap_or(false),
            }
        }
        if node.get("listen").is_none() {
            self.error(node.pos, format!("environment `{name}` has no `listen` address"));
        }
        (self.diagnostics.len() == before).then_some(env)
    }

    fn strategy(&mut self, node: &Node) -> Option<Strategy> {
        const NAMES: &[&str] = &["recreate", "rolling", "blue-green", "canary"];
        let (kind, settings) = match &node.value {
            NodeValue::String(s) => (s.as_str(), None),
            NodeValue::Map(entries) if entries.len() == 1 => {
                (entries[0].0.as_str().unwrap_or_default(), Some(&entries[0].1))
            }
            _ => ("", None),
        };
        let empty = Node::new(node.pos, NodeValue::Null);
        let settings = settings.unwrap_or(&empty);
        match kind {
            "recreate" => {
                self.mapping(settings, "`recreate`", &["-"]);
                Some(Strategy::Recreate)
            }
            "rolling" => {
                let (mut max_surge, mut max_unavailable) = (1, 0);
                for (k, v) in self.mapping(settings, "`rolling`", &["max_surge", "max_unavailable"]) {
                    let n = self.count(v, &format!("`{k}`"), 0, 64)?;
                    if k == "max_surge" {
                        max_surge = n;
                    } else {
                        max_unavailable = n;
                    }
                }
                if max_surge == 0 && max_unavailable == 0 {
                    self.error(settings.pos, "`max_surge` and `max_unavailable` cannot both be 0");
                }
                Some(Strategy::Rolling { max_surge, max_unavailable })
            }
            "blue-green" => {
                let mut strategy = Strategy::BlueGreen {
                    auto_promote: true,
                    preview: None,
                    rollback_window: Duration::from_secs(600),
                };
                if let Strategy::BlueGreen { auto_promote, preview, rollback_window } = &mut strategy {
                    for (k, v) in
                        self.mapping(settings, "`blue-green`", &["auto_promote", "preview", "rollback_window"])
                    {
                        match k {
                            "auto_promote" => *auto_promote = self.boolean(v, "`auto_promote`").unwrap_or(true),
                            "preview" => *preview = self.address(v, "`preview`"),
                            _ => *rollback_window = self.duration(v, "`rollback_window`").unwrap_or_default(),
                        }
                    }
                }
                Some(strategy)
            }
            "canary" => {
                let mut steps = vec![
                    CanaryStep { weight: 10, pause: Pause::For(Duration::from_secs(30)) },
                    CanaryStep { weight: 50, pause: Pause::For(Duration::from_secs(30)) },
                ];
                for (_, v) in self.mapping(settings, "`canary`", &["steps"]) {
                    steps = self.steps(v);
                }
                Some(Strategy::Canary { steps })
            }
            _ => {
                self.diagnostics.push(
                    Diagnostic::new(node.pos, "unknown strategy")
                        .with_help(format!("use one of: {}", NAMES.join(", "))),
                );
                None
            }
        }
    }

    fn steps(&mut self, node: &Node) -> Vec<CanaryStep> {
        let Some(items) = node.as_seq() else {
            self.error(node.pos, "`steps` must be a list of `{ weight, pause }`");
            return Vec::new();
        };
        let mut steps: Vec<CanaryStep> = Vec::new();
        for item in items {
            let mut step = CanaryStep { weight: 0, pause: Pause::UntilPromoted };
            for (k, v) in self.mapping(item, "a canary step", &["weight", "pause"]) {
                if k == "weight" {
                    step.weight = self.count(v, "`weight`", 1, 99).unwrap_or(0);
                } else if matches!(v.value, NodeValue::Null) || v.as_map().is_some_and(|m| m.is_empty()) {
                    step.pause = Pause::UntilPromoted;
                } else if let Some(d) = self.duration(v, "`pause`") {
                    step.pause = Pause::For(d);
                }
            }
            if item.get("weight").is_none() {
                self.error(item.pos, "a canary step needs a `weight` (1 to 99)");
            } else if steps.last().is_some_and(|last| last.weight > step.weight) {
                self.error(item.pos, "canary weights must not decrease from one step to the next");
            }
            steps.push(step);
        }
        if steps.is_empty() {
            self.error(node.pos, "`steps` needs at least one step");
        }
        steps
    }

    fn analysis(&mut self, node: &Node, analysis: &mut Analysis) {
        const KEYS: &[&str] = &[
            "enabled",
            "interval",
            "min_requests",
            "max_error_ratio",
            "max_error_ratio_vs_stable",
            "max_p99_vs_stable",
            "p99_slack",
            "mann_whitney_alpha",
            "queries",
        ];
        for (k, v) in self.mapping(node, "`analysis`", KEYS) {
            if k == "queries" {
                self.metric_checks(v, &mut analysis.queries);
                continue;
            }
            match k {
                "enabled" => analysis.enabled = self.boolean(v, "`enabled`").unwrap_or(true),
                "interval" => analysis.interval = self.duration(v, "`interval`").unwrap_or(analysis.interval),
                "min_requests" => {
                    analysis.min_requests = u64::from(self.count(v, "`min_requests`", 1, 1_000_000).unwrap_or(1))
                }
                "max_error_ratio" => analysis.max_error_ratio = self.ratio(v, "`max_error_ratio`", 1.0).unwrap_or(0.0),
                "max_error_ratio_vs_stable" => {
                    analysis.max_error_ratio_vs_stable =
                        self.ratio(v, "`max_error_ratio_vs_stable`", 1000.0).unwrap_or(0.0)
                }
                "max_p99_vs_stable" => {
                    analysis.max_p99_vs_stable = self.ratio(v, "`max_p99_vs_stable`", 1000.0).unwrap_or(0.0)
                }
                "p99_slack" => analysis.p99_slack = self.duration(v, "`p99_slack`").unwrap_or_default(),
                _ => analysis.mann_whitney_alpha = self.ratio(v, "`mann_whitney_alpha`", 0.5).unwrap_or(0.0),
            }
        }
        if analysis.interval.is_zero() {
            self.error(node.pos, "`analysis.interval` must be longer than zero");
        }
    }

    fn metric_checks(&mut self, node: &Node, out: &mut Vec<MetricCheck>) {
        let Some(items) = node.as_seq() else {
            self.error(node.pos, "`analysis.queries` must be a list");
            return;
        };
        for item in items {
            let mut check = MetricCheck { name: String::new(), query: String::new(), max: None, min: None };
            let mut query_pos = item.pos;
            for (k, v) in self.mapping(item, "an analysis query", &["name", "query", "max", "min"]) {
                match k {
                    "name" => check.name = self.string(v, "`name`").unwrap_or_default(),
                    "query" => {
                        query_pos = v.pos;
                        check.query = self.string(v, "`query`").unwrap_or_default();
                    }
                    bound => {
                        let value = match v.value {
                            NodeValue::Number(n) if n.is_finite() => Some(n),
                            _ => {
                                self.error(v.pos, format!("`{bound}` must be a number"));
                                None
                            }
                        };
                        if bound == "max" {
                            check.max = value;
                        } else {
                            check.min = value;
                        }
                    }
                }
            }
            if check.name.is_empty() || check.query.is_empty() {
                self.error(item.pos, "an analysis query needs a `name` and a `query`");
                continue;
            }
            if check.max.is_none() && check.min.is_none() {
                self.error(item.pos, format!("analysis query `{}` needs `max` or `min`", check.name));
            }
            if let Err(e) = promql_parser::parser::parse(&check.render("v1", "v0", "service", "env")) {
                self.error(query_pos, format!("analysis query `{}` does not parse: {e}", check.name));
            }
            out.push(check);
        }
    }
}

/// `256m`, `1g`, `512k`, `1048576` as bytes.
fn parse_bytes(text: &str) -> Option<i64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, scale) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1024.0),
        'm' => (&t[..t.len() - 1], 1024.0 * 1024.0),
        'g' => (&t[..t.len() - 1], 1024.0 * 1024.0 * 1024.0),
        _ => (t, 1.0),
    };
    let n: f64 = digits.parse().ok()?;
    (n > 0.0).then_some((n * scale) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DeliveryConfig, Vec<String>> {
        parse_delivery(SourceFile::new("mobius.yaml", text))
            .map_err(|e| e.diagnostics.iter().map(|d| format!("{}: {}", d.pos, d.message)).collect())
    }

    #[test]
    fn the_issue_example_parses_with_defaults() {
        let config = parse(
            "services:\n  web:\n    artifact: web\n    run: python3 app.py --port {port}\n    health: { path: /healthz }\n    instances: 2\nenvironments:\n  staging:\n    listen: 127.0.0.1:8801\n    strategy: blue-green\n  production:\n    listen: 127.0.0.1:8802\n    after: staging\n    protected: true\n    strategy:\n      canary:\n        steps: [ { weight: 10, pause: 30s }, { weight: 50, pause: {} } ]\n",
        )
        .unwrap();
        let web = &config.services["web"];
        assert_eq!((web.instances, web.health.path.as_str()), (2, "/healthz"));
        let prod = &config.environments["production"];
        assert_eq!(prod.listen["web"], "127.0.0.1:8802".parse().unwrap());
        assert_eq!(prod.after.as_deref(), Some("staging"));
        let Strategy::Canary { steps } = &prod.strategy else { panic!() };
        assert_eq!(steps[0].pause, Pause::For(Duration::from_secs(30)));
        assert_eq!(steps[1].pause, Pause::UntilPromoted);
        assert!(matches!(config.environments["staging"].strategy, Strategy::BlueGreen { auto_promote: true, .. }));
        assert!(prod.analysis.enabled);
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let errors = parse(
            "services:\n  web:\n    run: ./web\n    instances: 0\n    colour: red\nenvironments:\n  prod:\n    listen: localhost\n    strategy: { canary: { steps: [ { weight: 50 }, { weight: 10, pause: soon } ] } }\n    after: nowhere\n",
        )
        .unwrap_err();
        let joined = errors.join("\n");
        for expected in [
            "3:10: service `web` never learns its port",
            "4:16: `instances` must be a whole number from 1 to 64",
            "5:5: unknown key `colour` in service `web`",
            "8:13: `listen` must be an IP address and port",
            "`pause` must be a duration",
            "canary weights must not decrease",
            "10:12: `after` names `nowhere`, which is not an environment",
        ] {
            assert!(joined.contains(expected), "missing {expected:?} in:\n{joined}");
        }
    }

    #[test]
    fn duplicate_addresses_and_unknown_strategies_are_refused() {
        let errors = parse(
            "services:\n  web: { run: 'x {port}' }\nenvironments:\n  a: { listen: 127.0.0.1:9000 }\n  b: { listen: 127.0.0.1:9000 }\n  c: { listen: 127.0.0.1:9001, strategy: yolo }\n",
        )
        .unwrap_err()
        .join("\n");
        assert!(errors.contains("unknown strategy"), "{errors}");
        assert!(errors.contains("b/web listens on 127.0.0.1:9000, as a/web does"), "{errors}");
    }

    #[test]
    fn a_docker_service_names_its_image_and_limits_and_an_image_needs_the_docker_runtime() {
        let ok = "services:\n  web:\n    runtime: docker\n    image: registry.local/web:1\n    resources: { cpus: 0.5, memory: 128m }\nenvironments:\n  prod: { listen: 127.0.0.1:8080 }\n";
        let parsed =
            parse_delivery(SourceFile::new("mobius.yaml", ok)).unwrap_or_else(|e| panic!("{}", e.render(false)));
        let web = &parsed.services["web"];
        assert_eq!(
            (web.image.as_deref(), web.cpus, web.memory),
            (Some("registry.local/web:1"), Some(0.5), Some(128 << 20))
        );
        let no_image = "services:\n  web:\n    runtime: docker\nenvironments:\n  prod: { listen: 127.0.0.1:8080 }\n";
        let e = parse_delivery(SourceFile::new("mobius.yaml", no_image)).expect_err("an image is needed").render(false);
        assert!(e.contains("`runtime: docker` but no `image`"), "{e}");
        let no_runtime = "services:\n  web:\n    run: ./web {port}\n    image: web:1\nenvironments:\n  prod: { listen: 127.0.0.1:8080 }\n";
        let e = parse_delivery(SourceFile::new("mobius.yaml", no_runtime))
            .expect_err("runtime: docker is needed")
            .render(false);
        assert!(e.contains("add `runtime: docker`"), "{e}");
    }
}
