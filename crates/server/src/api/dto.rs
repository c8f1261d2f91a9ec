//! The store's rows as the API's types (`mobius_api`): GitHub's field names where
//! GitHub has the concept, times in RFC 3339.

use mobius_api as api;
use mobius_store::{JobRow, Project, Release, Rollout, Run, StepRow};
use serde_json::{json, Value};

/// RFC 3339 with milliseconds, UTC (null for a time that cannot be shown).
pub fn time(ms: Option<i64>) -> Value {
    api::time(ms).map_or(Value::Null, Value::String)
}

pub fn project(p: &Project) -> api::Project {
    api::Project {
        id: p.id,
        name: p.name.clone(),
        repo: p.repo.clone(),
        branch: p.branch.clone(),
        created_at: api::time(Some(p.created_at)),
        executor: match &p.executor_image {
            Some(image) => api::Executor { kind: api::ExecutorKind::Docker, image: Some(image.clone()) },
            None => api::Executor::default(),
        },
    }
}

pub fn run(r: &Run) -> api::Run {
    api::Run {
        id: r.id,
        project: r.project.clone(),
        workflow: r.workflow.clone(),
        name: r.workflow_name.clone(),
        event: r.event.clone(),
        git_ref: r.ref_name.clone(),
        head_branch: mobius_runner::repo::short_ref(&r.ref_name).to_string(),
        head_sha: r.head_sha.clone(),
        actor: r.actor.clone(),
        author: r.author.clone(),
        message: r.message.clone(),
        run_number: r.number,
        run_attempt: r.attempt,
        status: r.status,
        conclusion: r.conclusion,
        reason: r.reason.clone(),
        concurrency_group: r.concurrency_group.as_deref().map(|g| g.split_once(':').map_or(g, |(_, g)| g).to_string()),
        rerun_of: r.rerun_of,
        created_at: api::time(Some(r.created_at)),
        started_at: api::time(r.started_at),
        completed_at: api::time(r.completed_at),
        duration_ms: r.started_at.zip(r.completed_at).map(|(s, c)| c - s),
        failed_jobs: None,
    }
}

pub fn step(s: &StepRow) -> api::Step {
    api::Step {
        number: s.number,
        name: s.name.clone(),
        status: s.status,
        conclusion: s.conclusion,
        started_at: api::time(s.started_at),
        completed_at: api::time(s.completed_at),
        log_bytes: s.log_size,
    }
}

pub fn job(j: &JobRow, steps: &[StepRow]) -> api::Job {
    api::Job {
        id: j.id,
        run_id: j.run_id,
        name: j.name.clone(),
        status: j.status,
        conclusion: j.conclusion,
        reason: j.reason.clone(),
        started_at: api::time(j.started_at),
        completed_at: api::time(j.completed_at),
        steps: steps.iter().map(step).collect(),
    }
}

pub fn release(r: &Release) -> api::Release {
    api::Release {
        id: r.id,
        project: r.project.clone(),
        service: r.service.clone(),
        version: r.version.clone(),
        run_id: r.run_id,
        commit: r.commit_sha.clone(),
        author: r.author.clone(),
        artifact: r.artifact.clone(),
        digest: r.digest.clone(),
        // Written by the server as a list of commits; an entry it cannot read is left out.
        changelog: serde_json::from_value(r.changelog.clone()).unwrap_or_default(),
        created_at: api::time(Some(r.created_at)),
    }
}

/// A rollout with the controller's last status: `phase`, `stable`, `canary`, `weights`
/// (percent of new requests per version), the canary step and per-version rates.
pub fn rollout(r: &Rollout) -> api::Rollout {
    let status = &r.status;
    let field = |name: &str, default: Value| status.get(name).cloned().unwrap_or(default);
    api::Rollout {
        id: r.id,
        project: r.project.clone(),
        service: r.service.clone(),
        environment: r.environment.clone(),
        release: api::ReleaseRef { id: r.release_id, version: r.version.clone() },
        strategy: r.strategy,
        phase: r.phase,
        message: r.message.clone(),
        stable: status.get("stable").and_then(Value::as_str).map(str::to_string),
        canary: field("canary", json!(r.version)),
        weights: field("weights", json!({})),
        step: field("step", Value::Null),
        steps: field("steps", json!(0)),
        rates: field("rates", json!({})),
        plan: field("plan", json!([])),
        preview: field("preview", Value::Null),
        created_by: r.created_by.clone(),
        created_at: api::time(Some(r.created_at)),
        updated_at: api::time(Some(r.updated_at)),
        finished_at: api::time(r.finished_at),
        newer_release: r.newer_version.clone().filter(|_| r.finished_at.is_none()),
    }
}

/// An incident, its times in RFC 3339 (`time_to_restore_ms` stays a duration in milliseconds).
pub fn incident(i: &mobius_store::Incident) -> api::Incident {
    api::Incident {
        id: i.id,
        group_key: i.group_key.clone(),
        title: i.title.clone(),
        status: i.status,
        receiver: i.receiver.clone(),
        labels: i.labels.clone(),
        service: i.service.clone(),
        environment: i.environment.clone(),
        rollout_id: i.rollout_id,
        policy: i.policy.clone(),
        level: i.level,
        rounds: i.rounds,
        next_escalation_at: api::time(i.next_escalation_at),
        opened_at: api::time(Some(i.opened_at)),
        acknowledged_at: api::time(i.acknowledged_at),
        acknowledged_by: i.acknowledged_by.clone(),
        resolved_at: api::time(i.resolved_at),
        resolved_by: i.resolved_by.clone(),
        time_to_restore_ms: i.time_to_restore_ms,
    }
}

/// One line of an incident's timeline, its time in RFC 3339.
pub fn incident_event(e: &mobius_store::IncidentEvent) -> api::IncidentEvent {
    api::IncidentEvent {
        id: e.id,
        incident_id: e.incident_id,
        kind: e.kind,
        actor: e.actor.clone(),
        message: e.message.clone(),
        at: api::time(Some(e.at)),
    }
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
