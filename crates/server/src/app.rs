//! The server's shared state: store, blobs, master key, configuration, the engine's
//! bookkeeping of live runs, and metrics.

use crate::metrics::Metrics;
use crate::ServeConfig;
use anyhow::Context;
use mobius_store::{BlobStore, FsBlobStore, MasterKey, Store};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything the HTTP handlers and background tasks share.
pub struct App {
    pub config: ServeConfig,
    pub store: Store,
    pub blobs: Arc<dyn BlobStore>,
    /// File contents of `actions/cache` entries: a blob store of their own, so retention
    /// (which removes log and artifact blobs) never takes a file a cache entry still needs.
    pub cache_blobs: Arc<dyn BlobStore>,
    pub key: MasterKey,
    pub metrics: Metrics,
    /// CI's state: runs executing here, job slots and groups, creation and polling locks.
    pub ci: mobius_ci::Ci,
    /// Stops background tasks on shutdown.
    pub stopping: CancellationToken,
    /// Releases and rollouts: the host agent and the controllers running here.
    pub deploys: mobius_deploy::stage::Deploys,
    /// The time-series store, scrapers, rules and alert manager, with
    /// `--prometheus-config` or `--alertmanager-config`.
    pub monitor: mobius_monitor::runtime::Monitor,
    /// How host jobs are sandboxed (or why they cannot run).
    pub sandbox: mobius_runner::options::SandboxPolicy,
    /// Each commit's `mobius.yaml`, parsed once for the deploy stage and the monitor.
    pub project_files: Arc<mobius_project::ProjectFiles>,
}

/// The data directory is the server's alone: 0700, and the database files in it
/// 0600 (the keys already are).
fn restrict_data_dir(data: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
    for name in ["mobius.db", "mobius.db-wal", "mobius.db-shm"] {
        let path = data.join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// The sandbox host jobs run in: the data directory hidden, as the job user. When
/// it cannot be had, host jobs fail with the reason instead of running unsandboxed.
fn job_sandbox(config: &ServeConfig) -> mobius_runner::options::SandboxPolicy {
    use mobius_runner::options::SandboxPolicy;
    let exe = match config.agent_exe.clone().map_or_else(std::env::current_exe, Ok) {
        Ok(exe) => exe,
        Err(e) => return SandboxPolicy::Unavailable(format!("cannot find the mobius binary: {e}")),
    };
    let data = config.data_dir.canonicalize().unwrap_or_else(|_| config.data_dir.clone());
    match mobius_runner::sandbox::Sandbox::for_server(exe, vec![data]) {
        Ok(sandbox) => {
            tracing::info!(user = ?sandbox.user, "host jobs run sandboxed");
            SandboxPolicy::Required(sandbox)
        }
        Err(e) => {
            tracing::warn!(error = %e, "host jobs cannot be sandboxed and will not run");
            SandboxPolicy::Unavailable(e.to_string())
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("data", &self.config.data_dir).finish_non_exhaustive()
    }
}

impl App {
    pub async fn open(config: ServeConfig) -> anyhow::Result<Arc<App>> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create the data directory {}", data.display()))?;
        let sandbox = job_sandbox(&config);
        let key = MasterKey::load_or_create(&data.join("master.key"))?;
        let url = config.database.clone().unwrap_or_else(|| Store::sqlite_url(&data.join("mobius.db")));
        let store = Store::open(&url).await.with_context(|| format!("cannot open the database {}", redact(&url)))?;
        restrict_data_dir(data).with_context(|| format!("cannot restrict the data directory {}", data.display()))?;
        let blobs = FsBlobStore::new(data.join("blobs"))
            .with_context(|| format!("cannot create the blob store in {}", data.display()))?;
        let cache_blobs = FsBlobStore::new(data.join("blobs-cache"))
            .with_context(|| format!("cannot create the cache blob store in {}", data.display()))?;
        // The write-ahead log is replayed before the server answers anything.
        // The monitor always runs (it scrapes Mobius and the instances rollouts start);
        // the files add targets, rules and alert routing.
        let external_url = config.external_url.clone().unwrap_or_else(|| format!("http://{}", config.listen));
        let mut storage = mobius_tsdb::DbOptions::new(data.join("monitor"));
        storage.retention = Some(config.monitor_retention);
        storage.retention_bytes = config.monitor_retention_bytes;
        let monitor = mobius_monitor::runtime::Monitor::start(
            data,
            storage,
            config.prometheus_config.as_deref(),
            config.alertmanager_config.as_deref(),
            config.oncall_config.as_deref(),
            &external_url,
        )?;
        Ok(Arc::new(App {
            monitor,
            cache_blobs: Arc::new(cache_blobs),
            ci: mobius_ci::Ci::new(config.max_parallel_jobs.max(1)),
            config,
            store,
            blobs: Arc::new(blobs),
            key,
            metrics: Metrics::default(),
            stopping: CancellationToken::new(),
            sandbox,
            deploys: Default::default(),
            project_files: Default::default(),
        }))
    }

    /// Where runs execute: `DATA/work/<run>` (checkout) and `DATA/state/runs/<run>` (runner).
    pub fn work_dir(&self, run_id: i64) -> PathBuf {
        self.config.data_dir.join("work").join(run_id.to_string())
    }

    /// Where a project's git objects are read: its local repository, or the server's bare
    /// mirror of its URL (`DATA/mirrors/<project>.git`, kept current by [`mobius_ci::sync_repo`]).
    pub fn repo_dir(&self, project: &mobius_store::Project) -> PathBuf {
        if mobius_code::git::is_remote_url(&project.repo) {
            self.config.data_dir.join("mirrors").join(format!("{}.git", project.name))
        } else {
            PathBuf::from(&project.repo)
        }
    }

    /// The project's `mobius.yaml` at a commit, read and parsed once for every stage
    /// (`Ok(None)` without one). Reads git: call it off the async runtime.
    pub fn project_file(
        &self,
        project: &mobius_store::Project,
        commit: &str,
    ) -> Result<Option<Arc<mobius_project::ProjectFile>>, mobius_project::ReadError> {
        self.project_files.read_at(&self.repo_dir(project), commit, &project.name)
    }

    /// [`App::project_file`] from async code.
    pub async fn project_file_async(
        &self,
        project: &mobius_store::Project,
        commit: &str,
    ) -> Result<Option<Arc<mobius_project::ProjectFile>>, ProjectFileError> {
        let (files, dir, name, commit) =
            (Arc::clone(&self.project_files), self.repo_dir(project), project.name.clone(), commit.to_string());
        Ok(tokio::task::spawn_blocking(move || files.read_at(&dir, &commit, &name)).await??)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.config.data_dir.join("state")
    }

    /// Stops background tasks and cancels live runs (they end `cancelled`).
    pub fn shutdown(&self) {
        self.stopping.cancel();
        if let Ok(live) = self.ci.live.lock() {
            for run in live.values() {
                run.cancel.cancel();
            }
        }
    }

    /// A receiver that changes whenever the run makes progress (None once it is not live).
    pub fn watch_run(&self, run_id: i64) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.ci.live.lock().ok()?.get(&run_id).map(|r| r.progress.subscribe())
    }
}

/// Why a commit's `mobius.yaml` could not be had from async code.
#[derive(Debug, thiserror::Error)]
pub enum ProjectFileError {
    #[error(transparent)]
    Read(#[from] mobius_project::ReadError),
    #[error("reading mobius.yaml stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
