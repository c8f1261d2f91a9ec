//! Which project owns which public address: an environment's `listen` address belongs
//! to one project. A second project claiming it is refused when it is added, when its
//! `mobius.yaml` changes and when it deploys, naming both projects and the address.

use super::Host;
use crate::DeliveryConfig;
use mobius_store::{Project, RolloutFilter};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// An address an environment of a project listens on, or will once deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub project: String,
    pub environment: String,
    pub service: String,
    pub addr: SocketAddr,
}

/// Two projects on one address: who holds it and who asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{addr} is already the address of project `{holder}` (environment `{holder_env}`, service `{holder_service}`); \
     project `{project}` cannot listen there for `{environment}`/`{service}`"
)]
pub struct Conflict {
    pub addr: SocketAddr,
    pub holder: String,
    pub holder_env: String,
    pub holder_service: String,
    pub project: String,
    pub environment: String,
    pub service: String,
}

/// Two addresses collide when the ports match and either is a wildcard or both are the same IP.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The addresses a delivery configuration claims.
pub fn claims_of(project: &str, config: &DeliveryConfig) -> Vec<Claim> {
    config
        .environments
        .values()
        .flat_map(|env| {
            env.listen.iter().map(|(service, addr)| Claim {
                project: project.to_string(),
                environment: env.name.clone(),
                service: service.clone(),
                addr: *addr,
            })
        })
        .collect()
}

/// What every other project claims: the addresses its deployed or deploying releases
/// listen on (at their own commits) and, `with_heads`, its `mobius.yaml` on its branch.
pub async fn claims_of_others(app: &Arc<dyn Host>, except: Option<i64>, with_heads: bool) -> Vec<Claim> {
    let Ok(projects) = app.store().projects().await else { return Vec::new() };
    let rollouts = app.store().rollouts(&RolloutFilter { limit: 1000, ..RolloutFilter::default() }).await;
    let rollouts = rollouts.unwrap_or_default();
    let mut out = Vec::new();
    for project in projects.into_iter().filter(|p| Some(p.id) != except) {
        // Commits whose mobius.yaml is in force: the branch head, and each place's live release.
        let mut commits = Vec::new();
        if with_heads {
            commits.push(format!("refs/heads/{}", project.branch));
        }
        let mut seen = HashSet::new();
        for r in rollouts.iter().filter(|r| r.project_id == project.id) {
            let live = r.finished_at.is_none() || r.phase == mobius_core::Phase::Succeeded;
            if live && seen.insert((r.environment.clone(), r.service.clone())) {
                if let Ok(Some(release)) = app.store().release(r.release_id).await {
                    commits.push(release.commit_sha);
                }
            }
        }
        commits.dedup();
        for commit in commits {
            let (app, project) = (Arc::clone(app), project.clone());
            let found = tokio::task::spawn_blocking(move || {
                app.delivery_at(&project, &commit).ok().flatten().map(|c| claims_of(&project.name, &c))
            })
            .await
            .ok()
            .flatten();
            for claim in found.into_iter().flatten() {
                if !out.contains(&claim) {
                    out.push(claim);
                }
            }
        }
    }
    out
}

/// The first address of `mine` that another project holds.
pub fn conflict(mine: &[Claim], others: &[Claim]) -> Option<Conflict> {
    mine.iter().find_map(|m| {
        others.iter().find(|o| overlaps(m.addr, o.addr)).map(|o| Conflict {
            addr: m.addr,
            holder: o.project.clone(),
            holder_env: o.environment.clone(),
            holder_service: o.service.clone(),
            project: m.project.clone(),
            environment: m.environment.clone(),
            service: m.service.clone(),
        })
    })
}

/// Whether `project`'s configuration may be used: no address of it belongs to another
/// project, deployed there or written in that project's `mobius.yaml`.
pub async fn check(app: &Arc<dyn Host>, project: &Project, config: &DeliveryConfig) -> Result<(), Conflict> {
    let mine = claims_of(&project.name, config);
    if mine.is_empty() {
        return Ok(());
    }
    match conflict(&mine, &claims_of_others(app, Some(project.id), true).await) {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// Whether a deploy may take `claim`'s address: no other project's release listens there
/// (deployed, or being deployed).
pub async fn check_deploy(app: &Arc<dyn Host>, project: &Project, claim: Claim) -> Result<(), Conflict> {
    match conflict(&[claim], &claims_of_others(app, Some(project.id), false).await) {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// The address a rollout's environment listens on for its service, as its release's
/// `mobius.yaml` says.
pub async fn address_of(app: &Arc<dyn Host>, rollout: &mobius_store::Rollout) -> Option<SocketAddr> {
    let release = app.store().release(rollout.release_id).await.ok()??;
    let project = app.store().project_by_id(rollout.project_id).await.ok()??;
    let (app, environment, service) = (Arc::clone(app), rollout.environment.clone(), rollout.service.clone());
    tokio::task::spawn_blocking(move || {
        let config = app.delivery_at(&project, &release.commit_sha).ok()??;
        config.environments.get(&environment)?.listen.get(&service).copied()
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // reason: a test fails loudly on any unexpected error
mod tests {
    use super::*;

    fn claim(project: &str, addr: &str) -> Claim {
        Claim {
            project: project.into(),
            environment: "prod".into(),
            service: "web".into(),
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn a_wildcard_address_overlaps_every_address_on_its_port() {
        let others = [claim("a", "0.0.0.0:8080")];
        assert!(conflict(&[claim("b", "127.0.0.1:8080")], &others).is_some());
        assert!(conflict(&[claim("b", "127.0.0.2:8080")], &[claim("a", "127.0.0.1:8080")]).is_none());
        assert!(conflict(&[claim("b", "127.0.0.1:8081")], &others).is_none());
        let c = conflict(&[claim("b", "127.0.0.1:8080")], &others).unwrap().to_string();
        assert!(c.contains("project `a`") && c.contains("project `b`") && c.contains("127.0.0.1:8080"), "{c}");
    }
}
