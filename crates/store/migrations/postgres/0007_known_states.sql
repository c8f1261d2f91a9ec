-- The stored names of every state are the enums' names (mobius-core): a check
-- constraint refuses any other, so a state read back always parses. No data changes.

ALTER TABLE runs ADD CONSTRAINT runs_status_known CHECK (status IN ('queued', 'in_progress', 'completed'));
ALTER TABLE runs ADD CONSTRAINT runs_conclusion_known CHECK (conclusion IN ('success', 'failure', 'cancelled', 'skipped') OR conclusion IS NULL);
ALTER TABLE jobs ADD CONSTRAINT jobs_status_known CHECK (status IN ('queued', 'in_progress', 'completed'));
ALTER TABLE jobs ADD CONSTRAINT jobs_conclusion_known CHECK (conclusion IN ('success', 'failure', 'cancelled', 'skipped') OR conclusion IS NULL);
ALTER TABLE steps ADD CONSTRAINT steps_status_known CHECK (status IN ('queued', 'in_progress', 'completed'));
ALTER TABLE steps ADD CONSTRAINT steps_conclusion_known CHECK (conclusion IN ('success', 'failure', 'cancelled', 'skipped') OR conclusion IS NULL);
ALTER TABLE rollouts ADD CONSTRAINT rollouts_phase_known CHECK (phase IN ('progressing', 'paused', 'succeeded', 'rolled_back', 'failed'));
ALTER TABLE incidents ADD CONSTRAINT incidents_status_known CHECK (status IN ('open', 'acknowledged', 'resolved'));
