-- One append-only event log that every stage writes, in the transaction of the change
-- it records. The audit trail (entries with a remote: what a request did or was refused)
-- and the rollout and incident timelines are read from it; their rows move here, in
-- time order, and their tables go. `doc` is the whole entry as JSON (what a
-- reader gets, in one column); the other columns are what readers filter on.
-- Kinds are mobius-core's EventKind names. Writers take
-- a transaction-level advisory lock before appending, so ids become visible in order.

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    project TEXT,
    run_id BIGINT,
    rollout_id BIGINT,
    incident_id BIGINT,
    remote TEXT,
    doc TEXT NOT NULL
);

INSERT INTO events (at, kind, project, rollout_id, incident_id, remote, doc)
SELECT at, kind, project, rollout_id, incident_id, remote, doc FROM (
    SELECT at, 0 AS source, id, action AS kind, NULL::TEXT AS project, NULL::BIGINT AS rollout_id,
           NULL::BIGINT AS incident_id, remote,
           json_build_object('at', at, 'kind', action, 'actor', actor, 'target', target, 'remote', remote,
                       'data', (detail)::json)::TEXT AS doc
      FROM audit
    UNION ALL
    SELECT e.at, 1, e.id, 'rollout.' || e.kind, p.name, e.rollout_id, NULL, NULL,
           json_build_object('at', e.at, 'kind', 'rollout.' || e.kind, 'project', p.name, 'rollout', e.rollout_id,
                       'environment', e.environment, 'actor', e.actor,
                       'data', json_build_object('service', e.service, 'version', e.version, 'message', e.message))::TEXT
      FROM deploy_events e JOIN projects p ON p.id = e.project_id
    UNION ALL
    SELECT e.at, 2, e.id, 'incident.' || e.kind, NULL, i.rollout_id, e.incident_id, NULL,
           json_build_object('at', e.at, 'kind', 'incident.' || e.kind, 'rollout', i.rollout_id, 'incident', e.incident_id,
                       'environment', i.environment, 'actor', e.actor, 'data', json_build_object('message', e.message))::TEXT
      FROM incident_events e JOIN incidents i ON i.id = e.incident_id
) AS moved ORDER BY at, source, id;

DROP TABLE audit;
DROP TABLE deploy_events;
DROP TABLE incident_events;

CREATE INDEX events_by_project ON events (project, id);
CREATE INDEX events_by_kind ON events (kind, id);
CREATE INDEX events_by_run ON events (run_id, id) WHERE run_id IS NOT NULL;
CREATE INDEX events_by_rollout ON events (rollout_id, id) WHERE rollout_id IS NOT NULL;
CREATE INDEX events_by_incident ON events (incident_id, id) WHERE incident_id IS NOT NULL;
CREATE INDEX events_audited ON events (id) WHERE remote IS NOT NULL;

ALTER TABLE events ADD CONSTRAINT events_kind_known CHECK (kind IN ('push.received', 'webhook.receive', 'webhook.replay', 'webhook.refused', 'run.queued', 'run.started', 'run.completed', 'job.completed', 'run.cancel', 'run.rerun', 'workflow.dispatch', 'mobius_yaml.invalid', 'mobius_yaml.refused', 'monitoring.invalid', 'release.created', 'release.reuse', 'release.skip', 'deploy', 'rollback', 'rollout.promote', 'rollout.abort', 'rollout.approve', 'rollout.started', 'rollout.step', 'rollout.promoted', 'rollout.approved', 'rollout.aborted', 'rollout.succeeded', 'rollout.rolled_back', 'rollout.failed', 'rollout.resumed', 'rollout.newer_release', 'environment.serving', 'alert.firing', 'alert.resolved', 'alerts.post', 'monitor.reload', 'silence.put', 'silence.expire', 'incident.opened', 'incident.alert', 'incident.silenced', 'incident.escalated', 'incident.escalation', 'incident.rollback', 'incident.acknowledged', 'incident.resolved', 'incident.acknowledge', 'incident.resolve', 'project.create', 'secret.set', 'secret.delete', 'variable.set', 'token.create', 'token.revoke', 'request.denied', 'ui.sign_in', 'ui.sign_in_failed'));
-- Append-only: an entry is never changed (only retention deletes old ones).
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'events are append-only'; END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION events_append_only();

-- Where each subscriber to the log has got to (the last event id it handled).
CREATE TABLE event_cursors (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
