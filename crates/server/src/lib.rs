//! `mobius serve`: the platform in one process. Projects are watched (polling, webhooks,
//! schedules, dispatch), every trigger becomes runs executed by the runner crate, and
//! runs, logs, artifacts and test reports are served over an authenticated JSON API.
#![forbid(unsafe_code)]

mod api;
mod app;
mod auth;
mod ci;
mod deploy;
mod error;
mod incidents;
mod metrics;
mod monitor;
mod reactions;
mod ui;

pub use app::App;
pub use auth::{hash_token, Role};

use anyhow::Context;
use mobius_core::EventKind;
use mobius_store::NewEvent;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the server is set up (`mobius serve` flags).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`; `DATA/mobius.db` when absent.
    pub database: Option<String>,
    /// How often each repository's refs are read.
    pub poll_interval: Duration,
    /// Jobs running at once across every run.
    pub max_parallel_jobs: usize,
    /// Logs and artifacts of runs completed longer ago are removed.
    pub retention: Duration,
    /// Largest request body accepted (webhooks and API).
    pub max_body_bytes: usize,
    /// Where vendored actions live (`owner/repo@ref` resolves to `DIR/owner/repo@ref`).
    pub action_dir: Option<PathBuf>,
    /// Where remote actions are fetched from; cached in `DATA/actions` unless set otherwise.
    pub actions_url: String,
    /// A token for fetching actions (`MOBIUS_ACTIONS_TOKEN`).
    pub actions_token: Option<String>,
    /// Use only cached or vendored actions.
    pub actions_offline: bool,
    /// The `mobius` binary that runs the host agent (`mobius agent`); this process's own when absent.
    pub agent_exe: Option<PathBuf>,
    /// A `prometheus.yml` whose targets the monitor scrapes into `DATA/monitor`.
    pub prometheus_config: Option<PathBuf>,
    /// An `alertmanager.yml` routing the alerts of the rules and of `POST /api/v2/alerts`.
    pub alertmanager_config: Option<PathBuf>,
    /// People, on-call schedules and escalation policies for incidents (needs
    /// `alertmanager_config`, whose receivers it pages).
    pub oncall_config: Option<PathBuf>,
    /// Monitor blocks older than this (before the newest sample) are deleted.
    pub monitor_retention: Duration,
    /// Monitor blocks are deleted, oldest first, while blocks and log take more bytes.
    pub monitor_retention_bytes: Option<u64>,
    /// The address users reach the server at, for links in notifications
    /// (`http://LISTEN` when absent).
    pub external_url: Option<String>,
    /// What one PromQL query may spend (`--query.timeout`, `--query.max-samples`).
    pub query_limits: mobius_promql::Limits,
    /// Serve the API and UI only, leaving background work (polling, runs, rollouts,
    /// alerting) to the server holding the database's leader lock.
    pub replica: bool,
}

impl ServeConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        ServeConfig {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 7300)),
            database: None,
            poll_interval: Duration::from_secs(10),
            max_parallel_jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            retention: Duration::from_secs(90 * 24 * 3600),
            max_body_bytes: 25 * 1024 * 1024,
            action_dir: None,
            actions_url: "https://github.com".into(),
            actions_token: None,
            actions_offline: false,
            agent_exe: None,
            prometheus_config: None,
            alertmanager_config: None,
            oncall_config: None,
            monitor_retention: Duration::from_secs(15 * 86_400),
            monitor_retention_bytes: None,
            external_url: None,
            query_limits: mobius_promql::Limits::default(),
            replica: false,
        }
    }
}

/// What starting the server reports to its caller.
#[derive(Debug)]
pub struct Started {
    pub addr: SocketAddr,
    /// Set on first start: the admin token and the file it was written to.
    pub admin_token: Option<(String, PathBuf)>,
}

/// Opens the store, recovers runs a previous process left unfinished, starts the
/// background tasks and serves HTTP until `shutdown` completes.
pub async fn serve(
    config: ServeConfig,
    on_start: impl FnOnce(&Started),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut config = config;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    // Steps run in other working directories: every path the server hands out is absolute.
    config.data_dir = config.data_dir.canonicalize()?;
    // One server per data directory, for as long as this process lives.
    let _data_lock = lock_data_dir(&config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    if config.external_url.is_none() {
        config.external_url = Some(format!("http://{addr}"));
    }
    let replica = config.replica;
    let app = App::open(config).await?;
    let admin_token = first_admin_token(&app).await?;
    // One leader per database runs the background work; replicas serve the API and UI.
    let _leader = if replica {
        tracing::info!("replica: serving the API and UI; the leader runs the background work");
        None
    } else {
        let lock = app.store.try_leader_lock().await.context("cannot take the database's leader lock")?;
        let Some(lock) = lock else {
            anyhow::bail!(
                "another mobius server runs the background work of this database (it holds the leader lock); \
                 start this one with --replica to serve the API and UI only"
            );
        };
        mobius_ci::recover(&app.ci_host()).await.context("cannot recover unfinished runs")?;
        mobius_ci::start_background(&app.ci_host());
        // Rollouts a previous process left unfinished; their traffic never stopped (the agent kept it).
        mobius_deploy::stage::resume(&app.deployer()).await;
        mobius_incidents::start(&app, app.stopping.clone());
        reactions::start(&app);
        monitor::start_discovery(&app, addr);
        Some(lock)
    };
    reload_on_hangup(&app)?;
    let router = api::router(app.clone());
    tracing::info!(%addr, data = %app.config.data_dir.display(), "mobius server ready");
    on_start(&Started { addr, admin_token });
    let app_for_shutdown = app.clone();
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            app_for_shutdown.shutdown();
        })
        .await?;
    // Cancelled runs finish their `always()` and post steps and record how they ended
    // before the store closes (the runner's grace period, and a little more).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while app.ci.live.lock().map(|l| !l.is_empty()).unwrap_or(false) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.store.close().await;
    Ok(())
}

/// Takes `DATA/mobius.lock` with `flock`: the kernel releases it when this process ends,
/// however it ends, and it is opened close-on-exec, so the host agent and jobs never hold
/// it. A second server on the same directory is refused with the holder's PID.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("mobius.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let holder = if holder.is_empty() { "unknown".to_string() } else { holder.to_string() };
            anyhow::bail!(
                "the data directory {} is in use by another mobius server (PID {holder}, holding {})",
                dir.display(),
                path.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// SIGHUP reads `--prometheus-config` and `--alertmanager-config` again, as it does
/// for Prometheus and Alertmanager.
fn reload_on_hangup(app: &Arc<App>) -> anyhow::Result<()> {
    let mut hangups =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let app = Arc::clone(app);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if let Err(e) = app.monitor.reload() {
                tracing::error!(error = format!("{e:#}"), "the monitor configuration was not reloaded");
            }
        }
    });
    Ok(())
}

/// On first start (no token at all), creates an admin token and writes it to `DATA/admin-token` (0600).
pub(crate) async fn first_admin_token(app: &Arc<App>) -> anyhow::Result<Option<(String, PathBuf)>> {
    if app.store.token_count().await? > 0 {
        return Ok(None);
    }
    let token = auth::new_token()?;
    let path = app.config.data_dir.join("admin-token");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    let created = NewEvent::audit(EventKind::TokenCreate, "mobius serve", "token", "local")
        .data(serde_json::json!({"name": "admin", "role": "admin"}));
    app.store.create_token("admin", &hash_token(&token), "admin", None, "mobius serve", None, created).await?;
    Ok(Some((token, path)))
}
