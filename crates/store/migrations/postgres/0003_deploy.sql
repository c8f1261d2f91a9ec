-- Release and deploy: immutable releases of services, rollouts to environments, and
-- the append-only log of deploy events (DORA metrics read it).
CREATE TABLE releases (
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    number BIGINT NOT NULL,
    version TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    commit_sha TEXT NOT NULL,
    author TEXT NOT NULL,
    artifact TEXT NOT NULL,
    digest TEXT NOT NULL,
    manifest TEXT NOT NULL,
    provenance TEXT NOT NULL,
    changelog TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, service, number)
);
CREATE INDEX releases_by_service ON releases (project_id, service, id);
CREATE TABLE rollouts (
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    release_id BIGINT NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    strategy TEXT NOT NULL,
    phase TEXT NOT NULL,
    message TEXT NOT NULL,
    status TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX rollouts_by_target ON rollouts (project_id, environment, service, id);
CREATE TABLE deploy_events (
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    rollout_id BIGINT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    message TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX deploy_events_by_rollout ON deploy_events (rollout_id, id);
