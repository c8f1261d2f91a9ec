//! Supervision of one instance: start, health-check, restart with back-off, drain and stop.

use super::{lock, Agent, Instance, InstanceState, InstanceStatus};
use crate::runtime::process::free_port;
use crate::runtime::{InstanceSpec, RuntimeError};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Exits within this window count towards a crash loop.
const CRASH_WINDOW: Duration = Duration::from_secs(30);
const CRASH_LOOP_EXITS: usize = 3;

/// Starts an instance (or returns the one already running under that id).
pub(crate) fn start_instance(agent: &Arc<Agent>, spec: InstanceSpec) -> Result<InstanceStatus, RuntimeError> {
    let mut instances = lock(&agent.instances);
    if let Some(existing) = instances.get(&spec.id) {
        return Ok(lock(&existing.status).clone());
    }
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let backend = agent.router.upsert_backend(&spec.id, addr);
    backend.set_healthy(false);
    let status = Arc::new(Mutex::new(InstanceStatus {
        id: spec.id.clone(),
        service: spec.service.clone(),
        version: spec.version.clone(),
        environment: spec.environment.clone(),
        metrics_path: spec.metrics_path.clone(),
        state: InstanceState::Starting,
        pid: 0,
        addr,
        restarts: 0,
        crash_loop: false,
        last_exit: None,
        log: agent.log_path(&spec.id),
    }));
    let (stop_tx, stop_rx) = oneshot::channel();
    let (stopped_tx, stopped_rx) = watch::channel(None);
    tokio::spawn(supervise(Arc::clone(agent), spec.clone(), port, Arc::clone(&status), stop_rx, stopped_tx));
    tokio::spawn(health_loop(Arc::clone(agent), spec.clone(), addr, Arc::clone(&status)));
    let snapshot = lock(&status).clone();
    instances.insert(spec.id.clone(), Instance { spec, status, stop: Some(stop_tx), stopped: stopped_rx });
    Ok(snapshot)
}

async fn supervise(
    agent: Arc<Agent>,
    spec: InstanceSpec,
    port: u16,
    status: Arc<Mutex<InstanceStatus>>,
    mut stop: oneshot::Receiver<()>,
    stopped: watch::Sender<Option<String>>,
) {
    let log = agent.log_path(&spec.id);
    let mut exits: VecDeque<Instant> = VecDeque::new();
    loop {
        let mut running = match agent.runtime.start(&spec, port, &log).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(instance = %spec.id, error = %e, "instance did not start");
                {
                    let mut s = lock(&status);
                    s.last_exit = Some(e.to_string());
                    s.state = InstanceState::Restarting;
                    s.crash_loop = true;
                }
                if wait_or_stop(&mut stop, Duration::from_secs(1)).await {
                    let _ = stopped.send(Some(e.to_string()));
                    return;
                }
                continue;
            }
        };
        lock(&status).pid = running.started().pid;
        tracing::info!(instance = %spec.id, pid = running.started().pid, port, "instance started");
        let ended = tokio::select! {
            description = running.wait() => Some(description),
            _ = &mut stop => None,
        };
        let Some(description) = ended else {
            let description = running.stop(spec.stop_grace).await;
            tracing::info!(instance = %spec.id, how = %description, "instance stopped");
            let _ = stopped.send(Some(description));
            return;
        };
        // An exit nobody asked for: out of traffic at once, then start again.
        if let Some(b) = agent.router.backend(&spec.id) {
            b.set_healthy(false);
        }
        let now = Instant::now();
        exits.push_back(now);
        while exits.front().is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW) {
            exits.pop_front();
        }
        let backoff = Duration::from_millis(250 * (1 << exits.len().min(6))).min(Duration::from_secs(10));
        {
            let mut s = lock(&status);
            s.restarts += 1;
            s.crash_loop = exits.len() >= CRASH_LOOP_EXITS;
            s.state = InstanceState::Restarting;
            s.last_exit = Some(description.clone());
        }
        tracing::warn!(instance = %spec.id, how = %description, backoff_ms = backoff.as_millis() as u64, "instance exited; restarting");
        if wait_or_stop(&mut stop, backoff).await {
            let _ = stopped.send(Some(description));
            return;
        }
    }
}

/// Sleeps for `d`; true when a stop was asked for meanwhile.
async fn wait_or_stop(stop: &mut oneshot::Receiver<()>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop => true,
    }
}

async fn health_loop(agent: Arc<Agent>, spec: InstanceSpec, addr: SocketAddr, status: Arc<Mutex<InstanceStatus>>) {
    let url = format!("http://{addr}{}", spec.health_path);
    let (mut passes, mut failures) = (0u32, 0u32);
    let mut tick = tokio::time::interval(spec.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A new instance is checked often until it first passes, so a deploy is not held
    // up by a whole interval.
    let mut fast = true;
    loop {
        if fast {
            tokio::time::sleep(Duration::from_millis(50).min(spec.health_interval)).await;
        } else {
            tick.tick().await;
        }
        if lock(&status).state == InstanceState::Stopping {
            return;
        }
        let ok = match agent.http.get(&url).timeout(spec.health_timeout).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        };
        if ok {
            passes += 1;
            failures = 0;
        } else {
            failures += 1;
            passes = 0;
        }
        let mut s = lock(&status);
        let backend = agent.router.backend(&spec.id);
        match s.state {
            InstanceState::Starting | InstanceState::Restarting | InstanceState::Unhealthy
                if ok && passes >= spec.healthy_threshold =>
            {
                s.state = InstanceState::Healthy;
                fast = false;
                if let Some(b) = &backend {
                    b.set_healthy(true);
                }
            }
            InstanceState::Healthy if !ok && failures >= spec.unhealthy_threshold => {
                s.state = InstanceState::Unhealthy;
                if let Some(b) = &backend {
                    b.set_healthy(false);
                }
            }
            InstanceState::Stopping => return,
            _ => {}
        }
        if s.state == InstanceState::Restarting {
            fast = true;
        }
    }
}

/// Takes an instance out of traffic, lets requests in flight finish (up to `drain`),
/// stops it and forgets it. Returns how it ended, or `None` if it was unknown.
pub(crate) async fn stop_instance(agent: &Arc<Agent>, id: &str, drain: Duration) -> Option<InstanceStatus> {
    let (stop, mut stopped, status) = {
        let mut instances = lock(&agent.instances);
        let instance = instances.get_mut(id)?;
        lock(&instance.status).state = InstanceState::Stopping;
        (instance.stop.take(), instance.stopped.clone(), Arc::clone(&instance.status))
    };
    if let Some(backend) = agent.router.backend(id) {
        backend.set_healthy(false);
        let deadline = Instant::now() + drain;
        while backend.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    let description = loop {
        if let Some(d) = stopped.borrow().clone() {
            break d;
        }
        if stopped.changed().await.is_err() {
            break "the supervisor ended".to_string();
        }
    };
    agent.router.remove_backend(id);
    lock(&agent.instances).remove(id);
    let mut final_status = lock(&status).clone();
    final_status.last_exit = Some(description);
    Some(final_status)
}

/// The spec an instance was started with.
pub(crate) fn spec_of(agent: &Agent, id: &str) -> Option<InstanceSpec> {
    lock(&agent.instances).get(id).map(|i| i.spec.clone())
}
