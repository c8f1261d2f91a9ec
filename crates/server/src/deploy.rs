//! The server as the deploy stage's host (`mobius_deploy::stage::Host`): its store,
//! blobs, data directory, repositories, each commit's delivery (from the one parse of
//! its `mobius.yaml`), firing alerts and the analysis queries the monitor answers.

use crate::app::App;
use mobius_deploy::rollout::MetricSource;
use mobius_deploy::stage::releases::DeliveryError;
use mobius_deploy::stage::{Deploys, Host};
use mobius_deploy::DeliveryConfig;
use mobius_project::ReadError;
use mobius_store::BlobStore;
use mobius_store::{Project, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl App {
    /// This server as the deploy stage sees it.
    pub fn deployer(self: &Arc<Self>) -> Arc<dyn Host> {
        Arc::clone(self) as Arc<dyn Host>
    }
}

impl Host for App {
    fn store(&self) -> &Store {
        &self.store
    }
    fn deploys(&self) -> &Deploys {
        &self.deploys
    }
    fn blobs(&self) -> Arc<dyn BlobStore> {
        Arc::clone(&self.blobs)
    }
    fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }
    fn agent_exe(&self) -> Option<PathBuf> {
        self.config.agent_exe.clone()
    }
    fn listen(&self) -> SocketAddr {
        self.config.listen
    }
    fn repo_dir(&self, project: &Project) -> PathBuf {
        App::repo_dir(self, project)
    }
    fn delivery_at(&self, project: &Project, commit: &str) -> Result<Option<Arc<DeliveryConfig>>, DeliveryError> {
        match self.project_file(project, commit) {
            Ok(file) => Ok(file.map(|f| Arc::clone(&f.delivery))),
            Err(ReadError::Git(e)) => Err(DeliveryError::Read(e)),
            Err(ReadError::Invalid(errors)) => Err(DeliveryError::Invalid(errors)),
        }
    }
    fn metrics(&self) -> Arc<dyn MetricSource> {
        Arc::new(crate::monitor::StoreMetrics(Arc::clone(&self.monitor.db)))
    }
    fn firing_alerts(&self, service: &str, environment: &str) -> Vec<String> {
        let Some(am) = self.monitor.alerts.as_ref() else { return Vec::new() };
        let mut names: Vec<String> = am
            .alerts()
            .into_iter()
            .filter(|v| v.silenced_by.is_empty() && v.inhibited_by.is_empty())
            .filter(|v| {
                let labels = &v.alert.labels;
                labels.get("service") == Some(service)
                    && (labels.get("env") == Some(environment) || labels.get("environment") == Some(environment))
            })
            .map(|v| v.alert.labels.get("alertname").unwrap_or("(no alertname)").to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
