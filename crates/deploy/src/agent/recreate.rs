//! A recreate rollout carried out by the agent itself: stop the old instances, start
//! the new ones, wait until they are healthy, route the listener to them. Once the
//! agent has accepted the plan, it finishes it whatever happens to the server, so a
//! crash of `mobius serve` in the middle of a recreate does not leave the
//! environment without instances until the server is back.

use super::{lock, supervise, Agent, InstanceState};
use crate::runtime::InstanceSpec;
use mobius_router::ListenerConfig;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the server asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecreatePlan {
    /// Instances to drain and stop first.
    pub stop: Vec<String>,
    pub drain_ms: u64,
    /// Instances to start once they are gone.
    pub start: Vec<InstanceSpec>,
    /// How long the new instances have to become healthy.
    pub start_timeout_ms: u64,
    /// The listener's table once they are: the new instances at full weight.
    pub config: ListenerConfig,
}

/// Where a recreate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecreateState {
    Stopping,
    Starting,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecreateStatus {
    pub state: RecreateState,
    pub message: String,
    pub plan: RecreatePlan,
}

impl RecreateStatus {
    pub fn finished(&self) -> bool {
        matches!(self.state, RecreateState::Succeeded | RecreateState::Failed)
    }
}

/// Why a plan is refused.
#[derive(Debug, thiserror::Error)]
pub enum RecreateRefusal {
    #[error("listener `{0}` is in the middle of another recreate")]
    Busy(String),
}

/// Accepts a plan for `listener` and carries it out in the background; the same plan
/// again (a server that restarted) answers the status of the one under way.
pub(crate) fn begin(agent: &Arc<Agent>, listener: &str, plan: RecreatePlan) -> Result<RecreateStatus, RecreateRefusal> {
    let mut recreates = lock(&agent.recreates);
    if let Some(current) = recreates.get(listener) {
        if current.plan == plan {
            return Ok(current.clone());
        }
        if !current.finished() {
            return Err(RecreateRefusal::Busy(listener.to_string()));
        }
    }
    let status = RecreateStatus { state: RecreateState::Stopping, message: "stopping the old instances".into(), plan };
    recreates.insert(listener.to_string(), status.clone());
    drop(recreates);
    let (agent, listener, plan) = (Arc::clone(agent), listener.to_string(), status.plan.clone());
    tokio::spawn(async move {
        let (state, message) = match carry_out(&agent, &listener, &plan).await {
            Ok(message) => (RecreateState::Succeeded, message),
            Err(message) => (RecreateState::Failed, message),
        };
        tracing::info!(listener = %listener, ?state, %message, "recreate finished");
        set(&agent, &listener, state, message);
    });
    Ok(status)
}

/// The status of the newest recreate of `listener`.
pub(crate) fn status(agent: &Agent, listener: &str) -> Option<RecreateStatus> {
    lock(&agent.recreates).get(listener).cloned()
}

fn set(agent: &Agent, listener: &str, state: RecreateState, message: String) {
    if let Some(status) = lock(&agent.recreates).get_mut(listener) {
        status.state = state;
        status.message = message;
    }
}

async fn carry_out(agent: &Arc<Agent>, listener: &str, plan: &RecreatePlan) -> Result<String, String> {
    let drain = Duration::from_millis(plan.drain_ms);
    futures_util::future::join_all(plan.stop.iter().map(|id| supervise::stop_instance(agent, id, drain))).await;
    set(agent, listener, RecreateState::Starting, "starting the new instances".into());
    let ids: Vec<String> = plan.start.iter().map(|s| s.id.clone()).collect();
    for spec in &plan.start {
        if supervise::spec_of(agent, &spec.id).is_none() {
            if let Err(e) = supervise::start_instance(agent, spec.clone()) {
                stop_all(agent, &ids).await;
                return Err(format!("instance {}: {e}", spec.id));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_millis(plan.start_timeout_ms);
    loop {
        let mine: Vec<_> = agent.instances().into_iter().filter(|s| ids.contains(&s.id)).collect();
        if let Some(looping) = mine.iter().find(|s| s.crash_loop) {
            let exit = looping.last_exit.clone().unwrap_or_else(|| "no exit status".into());
            stop_all(agent, &ids).await;
            return Err(format!("instance {} keeps exiting ({exit})", looping.id));
        }
        if mine.len() == ids.len() && mine.iter().all(|s| s.state == InstanceState::Healthy) {
            break;
        }
        if Instant::now() >= deadline {
            stop_all(agent, &ids).await;
            return Err(format!("the new instances were not healthy within {} ms", plan.start_timeout_ms));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.router.configure(listener, plan.config.clone()).await.map_err(|e| e.to_string())?;
    Ok("the new instances serve all traffic".into())
}

async fn stop_all(agent: &Arc<Agent>, ids: &[String]) {
    futures_util::future::join_all(ids.iter().map(|id| supervise::stop_instance(agent, id, Duration::ZERO))).await;
}
