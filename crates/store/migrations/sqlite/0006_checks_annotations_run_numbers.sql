-- What a run says besides its jobs' conclusions, as GitHub's check runs do: checks the
-- server makes of a run (`mobius.yaml` after it) and annotations, raised by steps
-- (::error file=...,line=...::) or by a check. A check never changes the run's conclusion.
CREATE TABLE run_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    conclusion TEXT NOT NULL,
    summary TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (run_id, name)
);
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    -- The job's key for a step's annotation, '' for a check's.
    job TEXT NOT NULL,
    -- The step's name, or the check's name.
    source TEXT NOT NULL,
    level TEXT NOT NULL,
    title TEXT,
    message TEXT NOT NULL,
    file TEXT,
    line BIGINT,
    col BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX annotations_by_run ON annotations (run_id, id);
-- run_number is counted per workflow file, as GitHub counts it.
CREATE INDEX runs_by_workflow ON runs (project_id, workflow, number);
