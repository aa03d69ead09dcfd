-- Tag retention (issue 5, scope 3) and pull statistics (scope 7).
-- Times are milliseconds since the Unix epoch; flags are BIGINT 0/1.

-- Pulls per artifact (repository, manifest digest), written behind the
-- request: each node counts manifest GETs in memory and adds them here in
-- one transaction every few seconds. The row goes with its manifest.
CREATE TABLE artifact_pulls (
    repo            TEXT NOT NULL,
    digest          TEXT NOT NULL,
    pull_count      BIGINT NOT NULL,
    last_pulled_at  BIGINT NOT NULL,
    PRIMARY KEY (repo, digest),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);

-- One retention policy per project: its rules (JSON, validated by the core)
-- and an optional cron schedule. `next_run_at` is the next scheduled run;
-- the node whose conditional UPDATE advances it runs that period.
CREATE TABLE retention_policies (
    project_id   BIGINT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    rules        TEXT NOT NULL,
    schedule     TEXT,
    next_run_at  BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX retention_policies_due ON retention_policies(next_run_at) WHERE next_run_at IS NOT NULL;

-- Each run, dry or not, manual or scheduled, with the rules it applied.
CREATE TABLE retention_executions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id   BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    trigger_kind TEXT NOT NULL CHECK (trigger_kind IN ('manual', 'schedule')),
    dry_run      BIGINT NOT NULL CHECK (dry_run IN (0, 1)),
    status       TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    actor        TEXT NOT NULL,
    rules        TEXT NOT NULL,
    artifacts    BIGINT NOT NULL DEFAULT 0,
    retained     BIGINT NOT NULL DEFAULT 0,
    deleted      BIGINT NOT NULL DEFAULT 0,
    errors       BIGINT NOT NULL DEFAULT 0,
    error        TEXT,
    started_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX retention_executions_by_project ON retention_executions(project_id, id);
CREATE INDEX retention_executions_running ON retention_executions(updated_at) WHERE status = 'running';

-- What a run decided for each artifact and what came of it.
CREATE TABLE retention_execution_items (
    execution_id  BIGINT NOT NULL REFERENCES retention_executions(id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    repo          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    tags          TEXT NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('retain', 'delete')),
    outcome       TEXT NOT NULL,
    rules         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    pushed_at     BIGINT NOT NULL,
    pulled_at     BIGINT,
    PRIMARY KEY (execution_id, seq)
);
