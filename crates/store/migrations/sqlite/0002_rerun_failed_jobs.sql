-- Re-running failed jobs: each job's outputs are kept, and a run names the jobs it reuses.
ALTER TABLE jobs ADD COLUMN outputs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN reuse TEXT NOT NULL DEFAULT '{}';
