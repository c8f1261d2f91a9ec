-- Mobius store, version 1 (SQLite). Times are milliseconds since the Unix epoch.
CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    webhook_secret BLOB NOT NULL,
    poll_interval_ms BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE refs (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    workflow TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    event TEXT NOT NULL,
    ref_name TEXT NOT NULL,
    head_sha TEXT NOT NULL,
    actor TEXT NOT NULL,
    author TEXT NOT NULL,
    message TEXT NOT NULL,
    payload TEXT NOT NULL,
    inputs TEXT NOT NULL,
    status TEXT NOT NULL,
    conclusion TEXT,
    reason TEXT,
    concurrency_group TEXT,
    cancel_in_progress BIGINT NOT NULL,
    cancel_requested BIGINT NOT NULL,
    rerun_of BIGINT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT
);
CREATE INDEX runs_by_project ON runs (project_id, id);
CREATE INDEX runs_by_status ON runs (status, id);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    conclusion TEXT,
    reason TEXT,
    started_at BIGINT,
    completed_at BIGINT
);
CREATE INDEX jobs_by_run ON jobs (run_id, id);
CREATE TABLE steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    conclusion TEXT,
    started_at BIGINT,
    completed_at BIGINT,
    spool TEXT NOT NULL,
    log_blob TEXT,
    log_size BIGINT NOT NULL
);
CREATE INDEX steps_by_job ON steps (job_id, number);
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    blob TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX artifacts_by_run ON artifacts (run_id, name);
CREATE TABLE test_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    job TEXT NOT NULL,
    file TEXT NOT NULL,
    tests BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    skipped BIGINT NOT NULL,
    cases TEXT NOT NULL
);
CREATE INDEX test_reports_by_run ON test_reports (run_id);
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    project_id BIGINT REFERENCES projects(id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    remote TEXT NOT NULL
);
CREATE TABLE secrets (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);
CREATE TABLE variables (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);
