//! What a run needs to know from its caller: the event, secrets, variables, inputs and limits.

use indexmap::IndexMap;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Options of one run, as `mobius run` or the server fills them.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The repository (or folder) whose copy the jobs run in.
    pub source_dir: PathBuf,
    /// Where runs, caches and logs live (`$XDG_STATE_HOME/mobius`).
    pub state_dir: PathBuf,
    pub event_name: String,
    /// The event payload (`github.event`); `inputs` in it feed dispatch and call inputs.
    pub event_payload: Value,
    pub secrets: IndexMap<String, String>,
    pub vars: IndexMap<String, String>,
    /// Inputs given on the command line, coerced by each workflow's declared types.
    pub inputs: IndexMap<String, String>,
    /// Workflow-level environment added to every workflow's `env`.
    pub env: IndexMap<String, String>,
    pub actor: Option<String>,
    /// `owner/name`; derived from the `origin` remote when absent.
    pub repository: Option<String>,
    /// Extra host labels besides the defaults.
    pub labels: Vec<String>,
    /// Jobs running at once across the run.
    pub parallel: usize,
    /// Where vendored actions live: `owner/repo[/path]@ref` is the repository at
    /// `DIR/owner/repo@ref` (the action at `path` inside it); it wins over fetching.
    pub action_dir: Option<PathBuf>,
    /// Only run this job id (and, as GitHub would need, nothing else).
    pub job_filter: Option<String>,
    /// Time granted after a cancellation for `always()` and post steps.
    pub cancel_grace: Duration,
    /// Runs kept in the state directory; 0 keeps every run (the caller tidies up).
    pub keep_runs: usize,
    /// Leave out of the jobs' copies what `.gitignore` excludes (act's `--use-gitignore`).
    pub use_gitignore: bool,
    /// Keep the job workspaces of older runs too (by default only the newest run's stay).
    pub keep_workspaces: bool,
    /// The run's id and `github.run_number` when the caller numbers runs (the server);
    /// otherwise the time and a counter in the state directory.
    pub run_id: Option<String>,
    pub run_number: Option<u64>,
    /// `github.run_attempt`: 1, then 2, 3... for re-runs.
    pub run_attempt: u64,
    /// Job slots shared with other runs (the server's global limit); otherwise `parallel` per run.
    pub job_slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// Where `actions/cache` keeps file contents (the server's blob store for caches);
    /// otherwise a content-addressed folder in the state directory.
    pub cache_blobs: Option<std::sync::Arc<dyn mobius_blob::BlobStore>>,
    /// Whose `actions/cache` entries this run reads and writes: a folder name under
    /// the state directory's `cache` (the server gives each project its own, by id);
    /// otherwise the repository's name.
    pub cache_namespace: Option<String>,
    /// Whether this run may save cache entries (not for pull requests from forks, as on GitHub).
    pub cache_writes: bool,
    /// Whether host jobs run in a sandbox (the server's), and as whom.
    pub sandbox: SandboxPolicy,
    /// Job concurrency groups shared with other runs (the server); otherwise one set per run.
    pub concurrency: Option<std::sync::Arc<crate::concurrency::ConcurrencyGroups>>,
    /// Top-level jobs not run again (a re-run of failed jobs): their result and outputs
    /// from the previous attempt, by job id.
    pub reuse: IndexMap<String, ReusedJob>,
    /// When images for `container:`, `services:` and `docker://` are pulled (`--pull`).
    pub pull: crate::container::PullPolicy,
    /// `-P LABEL=IMAGE`: jobs whose `runs-on` names LABEL run in IMAGE (act's platforms).
    pub platforms: IndexMap<String, String>,
    /// Where remote actions are fetched from and cached.
    pub actions: crate::fetch::ActionSource,
    /// The image jobs without `container:` (or a `-P` platform) run in: a project
    /// of the server with `executor: docker`.
    pub default_image: Option<String>,
}

/// How host jobs are isolated.
#[derive(Debug, Clone, Default)]
pub enum SandboxPolicy {
    /// As the invoking user, with the invoking user's environment (`mobius run`).
    #[default]
    None,
    /// In the server's sandbox, as its job user, with a clean environment.
    Required(crate::sandbox::Sandbox),
    /// The server cannot sandbox jobs: host jobs fail with this reason.
    Unavailable(String),
}

/// A job's result carried over from a previous attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ReusedJob {
    pub conclusion: mobius_core::Conclusion,
    pub outputs: serde_json::Map<String, Value>,
}

impl RunOptions {
    pub fn new(source_dir: PathBuf, state_dir: PathBuf) -> Self {
        RunOptions {
            source_dir,
            state_dir,
            event_name: "push".into(),
            event_payload: Value::Object(Default::default()),
            secrets: IndexMap::new(),
            vars: IndexMap::new(),
            inputs: IndexMap::new(),
            env: IndexMap::new(),
            actor: None,
            repository: None,
            labels: Vec::new(),
            parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
            action_dir: None,
            job_filter: None,
            cancel_grace: Duration::from_secs(10),
            keep_runs: 20,
            use_gitignore: true,
            keep_workspaces: false,
            run_id: None,
            run_number: None,
            run_attempt: 1,
            job_slots: None,
            reuse: IndexMap::new(),
            concurrency: None,
            cache_blobs: None,
            cache_namespace: None,
            cache_writes: true,
            sandbox: SandboxPolicy::None,
            pull: crate::container::PullPolicy::Missing,
            platforms: IndexMap::new(),
            actions: crate::fetch::ActionSource::new(crate::fetch::ActionSource::default_cache()),
            default_image: None,
        }
    }
}

/// The default host labels of a Linux host runner; `ubuntu-*` matches any `ubuntu-` label.
pub const DEFAULT_LABELS: &[&str] = &["self-hosted", "linux", "x64", "ubuntu-latest", "ubuntu-*"];

/// Whether every label a job asks for is offered by the host.
pub(crate) fn labels_match(wanted: &[String], extra: &[String]) -> Result<(), String> {
    let offered: Vec<String> = DEFAULT_LABELS.iter().map(|s| s.to_string()).chain(extra.iter().cloned()).collect();
    for label in wanted {
        let l = label.to_ascii_lowercase();
        let ok = offered.iter().any(|o| {
            let o = o.to_ascii_lowercase();
            match o.strip_suffix('*') {
                Some(prefix) => l.starts_with(prefix),
                None => o == l,
            }
        });
        if !ok {
            return Err(label.clone());
        }
    }
    Ok(())
}
