//! The monitor's wiring in `mobius serve`: each project's `monitoring` read from its
//! `mobius.yaml` at the head of its default branch, the targets found without
//! configuration (the server itself, the agent's instances, their log files), and
//! the store answering rollout analysis queries. The monitor itself is
//! `mobius_monitor::runtime::Monitor`.

use crate::app::ProjectFileError;
use mobius_core::EventKind;
use mobius_monitor::runtime::discovered_target;
use mobius_project::ReadError;
use mobius_series::{now_ms, Labels};
use mobius_store::NewEvent;
use mobius_tsdb::Db;
use std::sync::Arc;
use std::time::Duration;

fn instance_labels(i: &mobius_deploy::agent::InstanceStatus) -> Labels {
    Labels::from_pairs(&[
        ("source", "instance"),
        ("service", &i.service),
        ("env", &i.environment),
        ("version", &i.version),
        ("instance", &i.id),
    ])
}

/// Every 2 seconds, scrapes what runs here without configuration: the server's own
/// `/metrics` (job `mobius`) and every instance the host agent runs whose service
/// declares `metrics.path`, labelled `service`, `env`, `version` and `instance`.
/// Takes the monitoring a project's `mobius.yaml` declares at `sha`. A file with
/// problems changes nothing: they are logged with their lines and audited.
pub async fn load_project(app: &crate::app::App, project: &mobius_store::Project, sha: &str) {
    let monitoring = match app.project_file_async(project, sha).await {
        Ok(file) => file.and_then(|f| f.monitoring.clone()),
        Err(ProjectFileError::Read(ReadError::Invalid(errors))) => {
            let problems = errors.render(false);
            tracing::warn!(project = %project.name, problems = %problems, "mobius.yaml's monitoring not applied");
            let detail = serde_json::json!({"commit": sha, "problems": problems});
            if let Err(e) = app
                .store
                .append(
                    NewEvent::audit(EventKind::MonitoringInvalid, "mobius", &project.name, "push")
                        .project(&project.name)
                        .data(detail),
                )
                .await
            {
                tracing::error!(error = %e, "cannot audit");
            }
            return;
        }
        Err(e @ ProjectFileError::Read(ReadError::Git(_))) => {
            tracing::warn!(project = %project.name, error = %e, "cannot read mobius.yaml for its monitoring");
            return;
        }
        Err(e @ ProjectFileError::Stopped(_)) => {
            tracing::warn!(project = %project.name, error = %e, "reading mobius.yaml for its monitoring stopped");
            return;
        }
    };
    let declared = monitoring.is_some();
    if declared || app.monitor.projects().contains(&project.name) {
        app.monitor.set_project(&project.name, monitoring.map(|m| (*m).clone()));
        tracing::info!(project = %project.name, commit = %short_sha(sha), declared, "project monitoring applied");
    }
}

fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Takes every project's monitoring from the head of its default branch as last seen.
async fn load_projects(app: &Arc<crate::app::App>) {
    let projects = match app.store.projects().await {
        Ok(projects) => projects,
        Err(e) => {
            tracing::error!(error = %e, "cannot list projects for their monitoring");
            return;
        }
    };
    for project in projects {
        let head = format!("refs/heads/{}", project.branch);
        match app.store.refs(project.id).await {
            Ok(refs) => {
                if let Some((_, sha)) = refs.into_iter().find(|(name, _)| *name == head) {
                    load_project(app, &project, &sha).await;
                }
            }
            Err(e) => tracing::error!(project = %project.name, error = %e, "cannot read refs"),
        }
    }
}

pub fn start_discovery(app: &Arc<crate::app::App>, addr: std::net::SocketAddr) {
    let app = Arc::clone(app);
    tokio::spawn(async move {
        load_projects(&app).await;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = app.stopping.cancelled() => return,
            }
            let monitor = &app.monitor;
            let own = addr.to_string();
            let mut targets =
                vec![discovered_target(own.clone(), "/metrics", &[("job", "mobius"), ("instance", &own)])];
            if let Some(agent) = mobius_deploy::stage::existing_agent(&*app).await {
                match agent.instances().await {
                    Ok(instances) => {
                        let logs = Arc::clone(&app);
                        let files: Vec<_> = instances.iter().map(|i| (i.log.clone(), instance_labels(i))).collect();
                        if let Err(e) =
                            tokio::task::spawn_blocking(move || logs.monitor.read_instance_logs(&files)).await
                        {
                            tracing::error!(error = %e, "reading instance logs stopped");
                        }
                        for i in instances {
                            let Some(path) = i.metrics_path.as_deref() else { continue };
                            if i.state == mobius_deploy::agent::InstanceState::Stopping {
                                continue;
                            }
                            let address = i.addr.to_string();
                            targets.push(discovered_target(
                                address.clone(),
                                path,
                                &[
                                    ("job", &i.service),
                                    ("service", &i.service),
                                    ("env", &i.environment),
                                    ("version", &i.version),
                                    ("instance", &address),
                                ],
                            ));
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot list the agent's instances"),
                }
            }
            monitor.set_discovered(targets);
        }
    });
}

/// Answers rollout analysis queries from the store: the one value of an instant query
/// now (a scalar, or a vector of one series).
#[derive(Debug)]
pub struct StoreMetrics(pub Arc<Db>);

impl mobius_deploy::rollout::MetricSource for StoreMetrics {
    fn value(&self, query: &str) -> Result<Option<f64>, String> {
        let expr = mobius_promql::parse(query).map_err(|e| e.to_string())?;
        match mobius_promql::instant(&self.0, &expr, now_ms()).map_err(|e| e.to_string())? {
            mobius_promql::Value::Scalar(v) => Ok(Some(v).filter(|v| !v.is_nan())),
            mobius_promql::Value::Vector(samples) => match samples.as_slice() {
                [] => Ok(None),
                [(_, v)] => Ok(Some(*v).filter(|v| !v.is_nan())),
                many => Err(format!("the query returns {} series; aggregate it to one (sum, max…)", many.len())),
            },
            other => Err(format!("the query returns a {}, not a number", other.type_name())),
        }
    }
}
