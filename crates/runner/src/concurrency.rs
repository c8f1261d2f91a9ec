//! Concurrency groups (`concurrency:` of jobs, and of workflows on the server): at most
//! one running and one pending member per group; a newer pending member replaces the
//! older one (which ends cancelled), and `cancel-in-progress` cancels the running one.

use mobius_workflow::evaluate::evaluate_node;
use mobius_workflow::expr::{self, Contexts};
use mobius_workflow::yaml::Node;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The group and `cancel-in-progress` of a `concurrency:` value (a string or a mapping);
/// `None` for an empty group.
pub fn evaluate(node: &Node, ctx: &Contexts) -> Result<Option<(String, bool)>, String> {
    let value = evaluate_node(node, ctx).map_err(|e| e.message)?;
    let (group, cancel) = match value {
        Value::Object(map) => (
            map.get("group").map(expr::to_display_string).unwrap_or_default(),
            map.get("cancel-in-progress").is_some_and(expr::truthy),
        ),
        other => (expr::to_display_string(&other), false),
    };
    Ok((!group.is_empty()).then_some((group, cancel)))
}

struct Member {
    id: u64,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Group {
    running: Option<Member>,
    /// The pending member and the channel that tells it whether it may run.
    pending: Option<(Member, oneshot::Sender<bool>)>,
}

/// Groups shared by the jobs of one run (`mobius run`) or of every run (the server).
#[derive(Default)]
pub struct ConcurrencyGroups {
    groups: Mutex<HashMap<String, Group>>,
    next: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ConcurrencyGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConcurrencyGroups")
    }
}

/// Membership of a running member; leaving the group lets the pending member run.
pub struct GroupGuard {
    groups: Arc<ConcurrencyGroups>,
    group: String,
    id: u64,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Ok(mut groups) = self.groups.groups.lock() else { return };
        let Some(group) = groups.get_mut(&self.group) else { return };
        if group.running.as_ref().is_some_and(|m| m.id == self.id) {
            group.running = None;
            // Hand over to the pending member (skipping one that gave up meanwhile).
            while let Some((member, tx)) = group.pending.take() {
                let cancel = member.cancel.clone();
                group.running = Some(member);
                if !cancel.is_cancelled() && tx.send(true).is_ok() {
                    break;
                }
                group.running = None;
            }
        }
        if group.running.is_none() && group.pending.is_none() {
            groups.remove(&self.group);
        }
    }
}

impl ConcurrencyGroups {
    /// Joins `group`; waits while another member runs. `None` when this member was
    /// superseded by a newer pending one, or `cancel` fired while it waited.
    pub async fn enter(
        self: &Arc<Self>,
        group: &str,
        cancel_in_progress: bool,
        cancel: CancellationToken,
    ) -> Option<GroupGuard> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let guard = || GroupGuard { groups: self.clone(), group: group.to_string(), id };
        let rx = {
            let mut groups = self.groups.lock().ok()?;
            let entry = groups.entry(group.to_string()).or_default();
            if entry.running.is_none() {
                entry.running = Some(Member { id, cancel });
                return Some(guard());
            }
            if let Some((older, tx)) = entry.pending.take() {
                let _ = tx.send(false);
                drop(older);
            }
            if cancel_in_progress {
                if let Some(running) = &entry.running {
                    running.cancel.cancel();
                }
            }
            let (tx, rx) = oneshot::channel();
            entry.pending = Some((Member { id, cancel: cancel.clone() }, tx));
            rx
        };
        let admitted = tokio::select! {
            answer = rx => answer.unwrap_or(false),
            () = cancel.cancelled() => false,
        };
        if admitted {
            Some(guard())
        } else {
            // Not running: leave without handing anything over.
            if let Ok(mut groups) = self.groups.lock() {
                if let Some(entry) = groups.get_mut(group) {
                    if entry.pending.as_ref().is_some_and(|(m, _)| m.id == id) {
                        entry.pending = None;
                    }
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_runs_one_waits_and_newer_pending_members_win() {
        let groups = Arc::new(ConcurrencyGroups::default());
        let first = groups.enter("g", false, CancellationToken::new()).await.unwrap();
        let g2 = groups.clone();
        let second = tokio::spawn(async move { g2.enter("g", false, CancellationToken::new()).await.is_some() });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let g3 = groups.clone();
        let third = tokio::spawn(async move { g3.enter("g", false, CancellationToken::new()).await.map(|g| g.id) });
        assert!(!second.await.unwrap(), "the older pending member is superseded");
        drop(first);
        assert!(third.await.unwrap().is_some(), "the pending member runs once the running one leaves");

        let running_token = CancellationToken::new();
        let running = groups.enter("h", false, running_token.clone()).await.unwrap();
        let g4 = groups.clone();
        let newer = tokio::spawn(async move { g4.enter("h", true, CancellationToken::new()).await.is_some() });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(running_token.is_cancelled(), "cancel-in-progress cancels the running member");
        drop(running);
        assert!(newer.await.unwrap());
    }
}
