//! `mobius serve`: flags into a `ServeConfig`, signals into a graceful shutdown.

use clap::Args;
use mobius_server::ServeConfig;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the database, blobs, keys and work directories live.
    #[arg(long = "data", value_name = "DIR", default_value = "./mobius-data")]
    data: PathBuf,
    /// The address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:7300")]
    listen: SocketAddr,
    /// sqlite://PATH or postgres://USER:PASSWORD@HOST/DB (default: DATA/mobius.db).
    #[arg(long = "database", value_name = "URL", env = "MOBIUS_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// How often each repository's refs are read.
    #[arg(long = "poll-interval", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    poll_interval: std::time::Duration,
    /// Jobs running at once across every run (default: the number of CPUs).
    #[arg(long = "max-parallel-jobs", value_name = "N")]
    max_parallel_jobs: Option<usize>,
    /// Logs and artifacts of runs completed longer ago are removed.
    #[arg(long = "retention", value_name = "DURATION", default_value = "90d", value_parser = humantime::parse_duration)]
    retention: std::time::Duration,
    /// Where vendored actions live: owner/repo@ref resolves to DIR/owner/repo@ref.
    #[arg(long = "action-dir", value_name = "DIR")]
    action_dir: Option<PathBuf>,
    /// Where remote actions are fetched from (cached in DATA/actions); a token for it
    /// is read from MOBIUS_ACTIONS_TOKEN.
    #[arg(long = "actions-url", value_name = "URL", default_value = "https://github.com")]
    actions_url: String,
    /// Run only actions already cached or vendored; fetch nothing.
    #[arg(long = "offline")]
    offline: bool,
    /// A prometheus.yml (global, scrape_configs with static targets, rule_files): its
    /// targets are scraped into DATA/monitor and its rules evaluated.
    #[arg(long = "prometheus-config", value_name = "FILE")]
    prometheus_config: Option<PathBuf>,
    /// An alertmanager.yml (route, receivers, inhibit_rules): where the alerts of the
    /// rules and of POST /api/v2/alerts are sent.
    #[arg(long = "alertmanager-config", value_name = "FILE")]
    alertmanager_config: Option<PathBuf>,
    /// People, on-call schedules and escalation policies: incidents page them level by
    /// level until acknowledged (needs --alertmanager-config).
    #[arg(long = "oncall-config", value_name = "FILE", requires = "alertmanager_config")]
    oncall_config: Option<PathBuf>,
    /// The URL users reach this server at, used in notification links
    /// (default: http://LISTEN).
    #[arg(long = "external-url", value_name = "URL")]
    external_url: Option<String>,
    /// How long the monitor keeps samples (as Prometheus' storage.tsdb.retention.time).
    #[arg(long = "monitor-retention", value_name = "DURATION", default_value = "15d", value_parser = humantime::parse_duration)]
    monitor_retention: std::time::Duration,
    /// At most this many bytes of monitor blocks, log and head chunk files (e.g. 10GB); the oldest blocks go first.
    #[arg(long = "monitor-retention-size", value_name = "BYTES", value_parser = parse_bytes)]
    monitor_retention_size: Option<u64>,
    /// The longest a PromQL query may run (as Prometheus' flag of the same name).
    #[arg(long = "query.timeout", value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    query_timeout: std::time::Duration,
    /// The most samples a PromQL query may load (as Prometheus' flag of the same name).
    #[arg(long = "query.max-samples", value_name = "N", default_value_t = mobius_promql::DEFAULT_MAX_SAMPLES)]
    query_max_samples: usize,
    /// Serve the API and UI from a PostgreSQL database another server leads, without
    /// background work (polling, runs, rollouts, alerting). Without it, a second server
    /// on one database refuses to start.
    #[arg(long = "replica")]
    replica: bool,
}

/// `512MB`, `10GB`, `1TB` or a plain number of bytes (powers of 1024, as Prometheus counts).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a size such as 512MB or 10GB"))?;
    let factor: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return Err(format!("`{text}`: the unit must be B, KB, MB, GB or TB")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("`{text}` is too large"))
}

pub fn main(args: ServeArgs) -> ExitCode {
    let mut config = ServeConfig::new(args.data);
    config.listen = args.listen;
    config.database = args.database;
    config.poll_interval = args.poll_interval;
    config.retention = args.retention;
    config.action_dir = args.action_dir;
    config.actions_url = args.actions_url;
    config.actions_offline = args.offline;
    config.actions_token = std::env::var("MOBIUS_ACTIONS_TOKEN").ok().filter(|t| !t.is_empty());
    config.prometheus_config = args.prometheus_config;
    config.alertmanager_config = args.alertmanager_config;
    config.oncall_config = args.oncall_config;
    config.monitor_retention = args.monitor_retention;
    config.monitor_retention_bytes = args.monitor_retention_size;
    config.external_url = args.external_url;
    config.replica = args.replica;
    config.query_limits = mobius_promql::Limits { timeout: args.query_timeout, max_samples: args.query_max_samples };
    if let Some(n) = args.max_parallel_jobs {
        config.max_parallel_jobs = n.max(1);
    }
    // Queries recurse once per level of their expression (at most 1,000, as
    // promql::MAX_DEPTH and logql::MAX_DEPTH bound them): 8 MiB stacks leave a wide
    // margin over what that takes. The memory is reserved, not committed.
    let runtime = match tokio::runtime::Builder::new_multi_thread().thread_stack_size(8 << 20).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mobius: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(mobius_server::serve(
        config,
        |started| {
            if let Some((token, path)) = &started.admin_token {
                println!("mobius: admin token written to {}", path.display());
                if std::io::stdout().is_terminal() {
                    println!("mobius: admin token: {token}");
                }
            }
            println!("mobius: listening on http://{}", started.addr);
        },
        shutdown_signal(),
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mobius: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
