-- Event kinds are the enums' names (mobius-core's DeployEventKind and IncidentEventKind);
-- triggers stand in for the check constraints SQLite cannot add to existing tables.

CREATE TRIGGER deploy_events_kind_known_insert BEFORE INSERT ON deploy_events
  WHEN NEW.kind NOT IN ('started', 'step', 'promoted', 'approved', 'aborted', 'succeeded', 'rolled_back', 'failed', 'resumed', 'newer_release')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: deploy_events_kind_known'); END;
CREATE TRIGGER deploy_events_kind_known_update BEFORE UPDATE OF kind ON deploy_events
  WHEN NEW.kind NOT IN ('started', 'step', 'promoted', 'approved', 'aborted', 'succeeded', 'rolled_back', 'failed', 'resumed', 'newer_release')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: deploy_events_kind_known'); END;
CREATE TRIGGER incident_events_kind_known_insert BEFORE INSERT ON incident_events
  WHEN NEW.kind NOT IN ('opened', 'alert', 'silenced', 'escalated', 'escalation', 'rollback', 'acknowledged', 'resolved')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: incident_events_kind_known'); END;
CREATE TRIGGER incident_events_kind_known_update BEFORE UPDATE OF kind ON incident_events
  WHEN NEW.kind NOT IN ('opened', 'alert', 'silenced', 'escalated', 'escalation', 'rollback', 'acknowledged', 'resolved')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: incident_events_kind_known'); END;
