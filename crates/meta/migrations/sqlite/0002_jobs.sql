-- Background work that must run once in the cluster, not once per node:
-- a durable queue (claimed under a lease, so a node that dies mid-job gives
-- it back when the lease runs out) and one schedule row per periodic kind
-- (whichever node advances `next_run_at` enqueues that period's job).
-- Times are milliseconds since the Unix epoch, as everywhere else.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts      BIGINT NOT NULL DEFAULT 0,
    max_attempts  BIGINT NOT NULL,
    not_before    BIGINT NOT NULL,
    locked_by     TEXT,
    locked_until  BIGINT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
-- Claims look only at unfinished jobs, oldest due first.
CREATE INDEX jobs_unfinished ON jobs(not_before, id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_by_kind ON jobs(kind, id);

CREATE TABLE job_schedules (
    kind         TEXT PRIMARY KEY,
    period_ms    BIGINT NOT NULL,
    next_run_at  BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- The upload reaper looks for sessions idle since before a cutoff.
CREATE INDEX uploads_by_updated_at ON uploads(updated_at);
