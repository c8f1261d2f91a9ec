//! The server as CI's host (`mobius_ci::Host`): its store, blobs, key, directories,
//! sandbox and settings, `/metrics`, the log store job logs also go to, and the
//! monitor reading a project's `mobius.yaml` when its default branch moves.

use crate::app::App;
use async_trait::async_trait;
use mobius_ci::{Ci, Host};
use mobius_runner::options::SandboxPolicy;
use mobius_store::{BlobStore, Project, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl App {
    /// This server as CI sees it.
    pub fn ci_host(self: &Arc<Self>) -> Arc<dyn Host> {
        Arc::clone(self) as Arc<dyn Host>
    }
}

#[async_trait]
impl Host for App {
    fn store(&self) -> &Store {
        &self.store
    }
    fn ci(&self) -> &Ci {
        &self.ci
    }
    fn blobs(&self) -> Arc<dyn BlobStore> {
        Arc::clone(&self.blobs)
    }
    fn cache_blobs(&self) -> Arc<dyn BlobStore> {
        Arc::clone(&self.cache_blobs)
    }
    fn open_secret(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, mobius_store::crypto::KeyError> {
        self.key.open(context, sealed)
    }
    fn sandbox(&self) -> SandboxPolicy {
        self.sandbox.clone()
    }
    fn action_dir(&self) -> Option<PathBuf> {
        self.config.action_dir.clone()
    }
    fn actions(&self) -> mobius_runner::fetch::ActionSource {
        let mut source = mobius_runner::fetch::ActionSource::new(self.config.data_dir.join("actions"));
        source.url = self.config.actions_url.clone();
        source.token = self.config.actions_token.clone();
        source.offline = self.config.actions_offline;
        source
    }
    fn poll_interval(&self) -> Duration {
        self.config.poll_interval
    }
    fn retention(&self) -> Duration {
        self.config.retention
    }
    fn work_dir(&self, run_id: i64) -> PathBuf {
        App::work_dir(self, run_id)
    }
    fn repo_dir(&self, project: &Project) -> PathBuf {
        App::repo_dir(self, project)
    }
    fn state_dir(&self) -> PathBuf {
        App::state_dir(self)
    }
    fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }
    fn job_finished(&self, seconds: f64) {
        self.metrics.job_finished(seconds);
    }
    fn job_log(&self, labels: Vec<(String, String)>, lines: &str) {
        let labels = mobius_series::Labels::new(labels);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let batch: Vec<mobius_logs::LogLine> = lines
            .lines()
            .enumerate()
            .map(|(i, line)| mobius_logs::LogLine {
                labels: labels.clone(),
                ts: now + i as i64,
                line: line.to_string(),
            })
            .collect();
        if let Err(e) = self.monitor.logs.push(batch) {
            tracing::warn!(error = %e, "cannot store job log lines in the log store");
        }
    }
    async fn pushed(&self, project: &Project, sha: &str) {
        crate::monitor::load_project(self, project, sha).await;
    }
}

#[cfg(test)]
mod tests {
    use crate::app::App;
    use chrono::TimeZone;
    use std::path::Path;

    fn git(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[tokio::test]
    async fn schedules_fire_in_the_minutes_their_cron_matches() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
        let wf = "on:\n  schedule:\n    - cron: '*/15 * * * *'\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo tick\n";
        std::fs::write(repo.join(".github/workflows/nightly.yml"), wf).unwrap();
        std::fs::write(
            repo.join(".github/workflows/push.yml"),
            wf.replace("schedule:\n    - cron: '*/15 * * * *'", "push:"),
        )
        .unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "init"]);
        let app = App::open(crate::ServeConfig::new(dir.path().join("data"))).await.unwrap();
        let created = mobius_store::NewEvent::new(mobius_core::EventKind::ProjectCreate, "test");
        app.store.create_project("p", &repo.display().to_string(), "main", b"x", 1000, None, created).await.unwrap();

        mobius_ci::fire_schedules(&app.ci_host(), chrono::Utc.with_ymd_and_hms(2026, 1, 1, 3, 14, 0).unwrap())
            .await
            .unwrap();
        assert!(app.store.unfinished_runs().await.unwrap().is_empty(), "03:14 does not match */15");
        mobius_ci::fire_schedules(&app.ci_host(), chrono::Utc.with_ymd_and_hms(2026, 1, 1, 3, 15, 0).unwrap())
            .await
            .unwrap();
        let runs = app.store.unfinished_runs().await.unwrap();
        assert_eq!(runs.len(), 1, "only the scheduled workflow runs");
        assert_eq!((runs[0].event.as_str(), runs[0].workflow.as_str()), ("schedule", ".github/workflows/nightly.yml"));
        assert!(runs[0].payload.contains("*/15 * * * *"), "github.event.schedule is the cron: {}", runs[0].payload);
        app.shutdown();
    }
}
