-- The stored names of every state are the enums' names (mobius-core). SQLite cannot add
-- a CHECK constraint to an existing table without rebuilding it, so triggers refuse any
-- other name on insert and update, as a constraint would. No data changes.

CREATE TRIGGER runs_status_known_insert BEFORE INSERT ON runs
  WHEN NEW.status NOT IN ('queued', 'in_progress', 'completed')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: runs_status_known'); END;
CREATE TRIGGER runs_status_known_update BEFORE UPDATE OF status ON runs
  WHEN NEW.status NOT IN ('queued', 'in_progress', 'completed')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: runs_status_known'); END;
CREATE TRIGGER runs_conclusion_known_insert BEFORE INSERT ON runs
  WHEN NEW.conclusion NOT IN ('success', 'failure', 'cancelled', 'skipped') AND NEW.conclusion IS NOT NULL
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: runs_conclusion_known'); END;
CREATE TRIGGER runs_conclusion_known_update BEFORE UPDATE OF conclusion ON runs
  WHEN NEW.conclusion NOT IN ('success', 'failure', 'cancelled', 'skipped') AND NEW.conclusion IS NOT NULL
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: runs_conclusion_known'); END;
CREATE TRIGGER jobs_status_known_insert BEFORE INSERT ON jobs
  WHEN NEW.status NOT IN ('queued', 'in_progress', 'completed')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: jobs_status_known'); END;
CREATE TRIGGER jobs_status_known_update BEFORE UPDATE OF status ON jobs
  WHEN NEW.status NOT IN ('queued', 'in_progress', 'completed')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: jobs_status_known'); END;
CREATE TRIGGER jobs_conclusion_known_insert BEFORE INSERT ON jobs
  WHEN NEW.conclusion NOT IN ('success', 'failure', 'cancelled', 'skipped') AND NEW.conclusion IS NOT NULL
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: jobs_conclusion_known'); END;
CREATE TRIGGER jobs_conclusion_known_update BEFORE UPDATE OF conclusion ON jobs
  WHEN NEW.conclusion NOT IN ('success', 'failure', 'cancelled', 'skipped') AND NEW.conclusion IS NOT NULL
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: jobs_conclusion_known'); END;
CREATE TRIGGER steps_status_known_insert BEFORE INSERT ON steps
  WHEN NEW.status NOT IN ('queued', 'in_progress', 'completed')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: steps_status_known'); END;
CREATE TRIGGER steps_status_known_update BEFORE UPDATE OF status ON steps
  WHEN NEW.status NOT IN ('queued', 'in_progress', 'completed')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: steps_status_known'); END;
CREATE TRIGGER steps_conclusion_known_insert BEFORE INSERT ON steps
  WHEN NEW.conclusion NOT IN ('success', 'failure', 'cancelled', 'skipped') AND NEW.conclusion IS NOT NULL
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: steps_conclusion_known'); END;
CREATE TRIGGER steps_conclusion_known_update BEFORE UPDATE OF conclusion ON steps
  WHEN NEW.conclusion NOT IN ('success', 'failure', 'cancelled', 'skipped') AND NEW.conclusion IS NOT NULL
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: steps_conclusion_known'); END;
CREATE TRIGGER rollouts_phase_known_insert BEFORE INSERT ON rollouts
  WHEN NEW.phase NOT IN ('progressing', 'paused', 'succeeded', 'rolled_back', 'failed')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: rollouts_phase_known'); END;
CREATE TRIGGER rollouts_phase_known_update BEFORE UPDATE OF phase ON rollouts
  WHEN NEW.phase NOT IN ('progressing', 'paused', 'succeeded', 'rolled_back', 'failed')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: rollouts_phase_known'); END;
CREATE TRIGGER incidents_status_known_insert BEFORE INSERT ON incidents
  WHEN NEW.status NOT IN ('open', 'acknowledged', 'resolved')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: incidents_status_known'); END;
CREATE TRIGGER incidents_status_known_update BEFORE UPDATE OF status ON incidents
  WHEN NEW.status NOT IN ('open', 'acknowledged', 'resolved')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: incidents_status_known'); END;
