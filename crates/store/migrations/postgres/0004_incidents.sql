-- Incidents: one per firing alert group, with escalation state and a timeline
-- (alerts, notifications, acknowledgements, rollbacks, resolution). Time to
-- restore is resolved_at - opened_at (DORA reads it).
CREATE TABLE incidents (
    id BIGSERIAL PRIMARY KEY,
    group_key TEXT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    receiver TEXT NOT NULL,
    labels TEXT NOT NULL,
    service TEXT,
    environment TEXT,
    rollout_id BIGINT,
    policy TEXT,
    level BIGINT NOT NULL,
    rounds BIGINT NOT NULL,
    next_escalation_at BIGINT,
    opened_at BIGINT NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    resolved_at BIGINT,
    resolved_by TEXT
);
CREATE INDEX incidents_by_group ON incidents (group_key, resolved_at);
CREATE INDEX incidents_escalating ON incidents (next_escalation_at);
CREATE TABLE incident_events (
    id BIGSERIAL PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    message TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);
