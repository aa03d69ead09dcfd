-- Per-project policies that guard pushes and deletions: immutable tag rules
-- and quotas (storage bytes, artifact count). Times are milliseconds since
-- the Unix epoch; flags are BIGINT 0/1.

-- Immutable tag rules (Harbor's model): a tag whose repository (its path
-- inside the project) and name match a rule's selectors may be created once
-- and never moved to another manifest or deleted. Each selector is a
-- doublestar pattern that selects what matches it, or, with `*_excludes`,
-- everything else.
CREATE TABLE immutable_rules (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id     BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    repo_pattern   TEXT NOT NULL,
    repo_excludes  BIGINT NOT NULL DEFAULT 0 CHECK (repo_excludes IN (0, 1)),
    tag_pattern    TEXT NOT NULL,
    tag_excludes   BIGINT NOT NULL DEFAULT 0 CHECK (tag_excludes IN (0, 1)),
    disabled       BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX immutable_rules_by_project ON immutable_rules(project_id, id);

-- Quotas: -1 is unlimited (a project without a row is unlimited). Usage is
-- computed from the registry tables when a push is checked, never stored.
-- `warned` is set when usage crossed `warn_percent` (one audit event per
-- crossing) and cleared when a check finds usage below it again.
CREATE TABLE project_quotas (
    project_id      BIGINT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    storage_limit   BIGINT NOT NULL DEFAULT -1 CHECK (storage_limit >= -1),
    artifact_limit  BIGINT NOT NULL DEFAULT -1 CHECK (artifact_limit >= -1),
    warn_percent    BIGINT NOT NULL DEFAULT 85 CHECK (warn_percent BETWEEN 1 AND 100),
    warned          BIGINT NOT NULL DEFAULT 0 CHECK (warned IN (0, 1)),
    updated_at      BIGINT NOT NULL
);
