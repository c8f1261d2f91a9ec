-- Event kinds are the enums' names (mobius-core's DeployEventKind and IncidentEventKind).

ALTER TABLE deploy_events ADD CONSTRAINT deploy_events_kind_known CHECK (kind IN ('started', 'step', 'promoted', 'approved', 'aborted', 'succeeded', 'rolled_back', 'failed', 'resumed', 'newer_release'));
ALTER TABLE incident_events ADD CONSTRAINT incident_events_kind_known CHECK (kind IN ('opened', 'alert', 'silenced', 'escalated', 'escalation', 'rollback', 'acknowledged', 'resolved'));
