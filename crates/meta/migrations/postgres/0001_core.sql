-- Names collate as bytes ("C"), so tag lists, the catalog and keyset
-- pagination order the same way as on SQLite whatever the server's locale.
-- The registry's metadata: the single source of truth about which blobs and
-- manifests exist in which repository. Blob bytes live in the blob store.
CREATE TABLE repositories (
    name        TEXT COLLATE "C" PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

-- Blobs whose bytes are durable in the store.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- A blob is readable in a repository only through a link (data rule 3).
CREATE TABLE repo_blobs (
    repo        TEXT NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest      TEXT NOT NULL REFERENCES blobs(digest),
    linked_at   BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX repo_blobs_by_digest ON repo_blobs(digest);

CREATE TABLE manifests (
    repo           TEXT NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    size           BIGINT NOT NULL,
    body           BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repo, subject) WHERE subject IS NOT NULL;

-- What each manifest references: blobs (config, layers) and child manifests.
CREATE TABLE manifest_refs (
    repo             TEXT NOT NULL,
    manifest_digest  TEXT NOT NULL,
    child_digest     TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repo, manifest_digest, child_digest),
    FOREIGN KEY (repo, manifest_digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_refs_by_child ON manifest_refs(repo, child_digest);

CREATE TABLE tags (
    repo        TEXT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (repo, name),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);

-- Upload sessions survive restarts; the bytes so far are in the store.
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    repo        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
