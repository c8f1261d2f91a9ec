//! The JSON shapes of the API (GitHub's field names where GitHub has the concept).

use mobius_store::{JobRow, Project, Release, Rollout, Run, StepRow};
use serde_json::{json, Value};

/// RFC 3339 with milliseconds, UTC.
pub fn time(ms: Option<i64>) -> Value {
    // chrono prints any time it can hold (years past 9999 with a sign), so no stored
    // value can make an answer fail; one it cannot hold is shown as null.
    match ms.filter(|ms| *ms >= 0).and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => Value::Null,
    }
}

pub fn project(p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "repo": p.repo,
        "branch": p.branch,
        "created_at": time(Some(p.created_at)),
    })
}

pub fn run(r: &Run) -> Value {
    json!({
        "id": r.id,
        "project": r.project,
        "workflow": r.workflow,
        "name": r.workflow_name,
        "event": r.event,
        "ref": r.ref_name,
        "head_branch": mobius_runner::repo::short_ref(&r.ref_name),
        "head_sha": r.head_sha,
        "actor": r.actor,
        "author": r.author,
        "message": r.message,
        "run_number": r.number,
        "run_attempt": r.attempt,
        "status": r.status,
        "conclusion": r.conclusion,
        "reason": r.reason,
        "concurrency_group": r.concurrency_group.as_deref().map(|g| g.split_once(':').map_or(g, |(_, g)| g)),
        "rerun_of": r.rerun_of,
        "created_at": time(Some(r.created_at)),
        "started_at": time(r.started_at),
        "completed_at": time(r.completed_at),
        "duration_ms": r.started_at.zip(r.completed_at).map(|(s, c)| c - s),
    })
}

pub fn step(s: &StepRow) -> Value {
    json!({
        "number": s.number,
        "name": s.name,
        "status": s.status,
        "conclusion": s.conclusion,
        "started_at": time(s.started_at),
        "completed_at": time(s.completed_at),
        "log_bytes": s.log_size,
    })
}

pub fn job(j: &JobRow, steps: &[StepRow]) -> Value {
    json!({
        "id": j.id,
        "run_id": j.run_id,
        "name": j.name,
        "status": j.status,
        "conclusion": j.conclusion,
        "reason": j.reason,
        "started_at": time(j.started_at),
        "completed_at": time(j.completed_at),
        "steps": steps.iter().map(step).collect::<Vec<_>>(),
    })
}

pub fn release(r: &Release) -> Value {
    json!({
        "id": r.id,
        "project": r.project,
        "service": r.service,
        "version": r.version,
        "run_id": r.run_id,
        "commit": r.commit_sha,
        "author": r.author,
        "artifact": r.artifact,
        "digest": r.digest,
        "changelog": r.changelog,
        "created_at": time(Some(r.created_at)),
    })
}

/// A rollout with the controller's last status: `phase`, `stable`, `canary`, `weights`
/// (percent of new requests per version), the canary step and per-version rates.
pub fn rollout(r: &Rollout) -> Value {
    let status = &r.status;
    json!({
        "id": r.id,
        "project": r.project,
        "service": r.service,
        "environment": r.environment,
        "release": { "id": r.release_id, "version": r.version },
        "strategy": r.strategy,
        "phase": r.phase,
        "message": r.message,
        "stable": status.get("stable").cloned().unwrap_or(Value::Null),
        "canary": status.get("canary").cloned().unwrap_or_else(|| json!(r.version)),
        "weights": status.get("weights").cloned().unwrap_or_else(|| json!({})),
        "step": status.get("step").cloned().unwrap_or(Value::Null),
        "steps": status.get("steps").cloned().unwrap_or(json!(0)),
        "rates": status.get("rates").cloned().unwrap_or_else(|| json!({})),
        // A canary's steps (`weight`, `pause_seconds`, null: until promoted).
        "plan": status.get("plan").cloned().unwrap_or_else(|| json!([])),
        // Where a paused blue-green's new version answers before the switch.
        "preview": status.get("preview").cloned().unwrap_or(Value::Null),
        "created_by": r.created_by,
        "created_at": time(Some(r.created_at)),
        "updated_at": time(Some(r.updated_at)),
        "finished_at": time(r.finished_at),
        // A newer release of the service waits while this rollout is under way.
        "newer_release": r.newer_version.as_ref().filter(|_| r.finished_at.is_none()),
    })
}

/// An incident, its times in RFC 3339 (`time_to_restore_ms` stays a duration in milliseconds).
pub fn incident(i: &mobius_store::Incident) -> Value {
    let mut value = serde_json::to_value(i).unwrap_or(Value::Null);
    for (field, ms) in [
        ("opened_at", Some(i.opened_at)),
        ("acknowledged_at", i.acknowledged_at),
        ("resolved_at", i.resolved_at),
        ("next_escalation_at", i.next_escalation_at),
    ] {
        value[field] = time(ms);
    }
    value
}

/// One line of an incident's timeline, its time in RFC 3339.
pub fn incident_event(e: &mobius_store::IncidentEvent) -> Value {
    let mut value = serde_json::to_value(e).unwrap_or(Value::Null);
    value["at"] = time(Some(e.at));
    value
}

#[cfg(test)]
mod tests {
    /// Issue 15, item 7: no stored time can make an answer fail to print.
    #[test]
    fn any_stored_time_prints() {
        assert_eq!(super::time(Some(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::time(Some(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
        let far = super::time(Some(600_000_000_000_000));
        assert!(far.as_str().is_some_and(|t| t.starts_with('+')), "{far}");
        assert!(super::time(Some(i64::MAX)).is_null());
        assert!(super::time(Some(-1)).is_null());
    }
}
