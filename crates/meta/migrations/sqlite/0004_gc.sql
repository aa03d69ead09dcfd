-- Garbage collection and the restore window (issue 5, scopes 1 and 4).
-- Times are milliseconds since the Unix epoch; flags are BIGINT 0/1.

-- GC asks "does any manifest, in any repository, reference this digest?";
-- the index of 0001 starts with the repository.
CREATE INDEX manifest_refs_by_child_digest ON manifest_refs(child_digest);
-- GC walks blobs by digest; links older than the grace are candidates.
CREATE INDEX repo_blobs_by_linked_at ON repo_blobs(linked_at);

-- Deleted manifests and tags, recoverable until the restore window ends.
-- `kind` 'manifest': a manifest deleted by digest, with its bytes, its
-- references (trash_refs) and the tags it had (trash_tags).
-- `kind` 'tag': a tag deleted by name (trash_tags holds it); the manifest
-- stayed. Nothing reads these tables to answer /v2; GC counts them as
-- references (their blobs, child manifests and subjects are kept).
CREATE TABLE trash (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    repo           TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('manifest', 'tag')),
    digest         TEXT NOT NULL,
    media_type     TEXT,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    size           BIGINT,
    body           BLOB,
    created_at     BIGINT,
    deleted_at     BIGINT NOT NULL,
    deleted_by     TEXT NOT NULL
);
CREATE INDEX trash_by_repo ON trash(repo, id);
CREATE INDEX trash_by_deleted_at ON trash(deleted_at);
CREATE INDEX trash_by_digest ON trash(repo, digest);

CREATE TABLE trash_refs (
    trash_id      BIGINT NOT NULL REFERENCES trash(id) ON DELETE CASCADE,
    child_digest  TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (trash_id, child_digest)
);
CREATE INDEX trash_refs_by_child ON trash_refs(child_digest);

CREATE TABLE trash_tags (
    trash_id    BIGINT NOT NULL REFERENCES trash(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (trash_id, name)
);

-- One row per GC run (dry or not): what it reclaimed and how long it took.
CREATE TABLE gc_runs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger_kind       TEXT NOT NULL,
    dry_run            BIGINT NOT NULL CHECK (dry_run IN (0, 1)),
    started_at         BIGINT NOT NULL,
    finished_at        BIGINT NOT NULL,
    blobs_deleted      BIGINT NOT NULL,
    bytes_reclaimed    BIGINT NOT NULL,
    manifests_deleted  BIGINT NOT NULL,
    links_removed      BIGINT NOT NULL,
    trash_purged       BIGINT NOT NULL,
    orphans_deleted    BIGINT NOT NULL,
    orphan_bytes       BIGINT NOT NULL,
    error              TEXT
);

-- Small persistent GC state, e.g. the orphan sweep's listing cursor.
CREATE TABLE gc_state (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
