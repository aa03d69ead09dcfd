-- Identity and access: accounts, groups, projects and their members, robot
-- accounts, personal access tokens, token signing keys and the audit log.
-- Times are milliseconds since the Unix epoch; flags are BIGINT 0/1 so the
-- same SQL reads them on SQLite and PostgreSQL. Secrets are never stored:
-- passwords as argon2id PHC strings, robot secrets and personal access
-- tokens as SHA-256 (see berth-auth's `secret` module for why).

-- People: local accounts (with a password hash), LDAP and OIDC accounts
-- (without one; `external_id` is the DN or the issuer and subject).
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL UNIQUE,
    email          TEXT,
    source         TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'ldap', 'oidc')),
    external_id    TEXT,
    password_hash  TEXT,
    system_admin   BIGINT NOT NULL DEFAULT 0 CHECK (system_admin IN (0, 1)),
    disabled       BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_by_external_id ON users(source, external_id) WHERE external_id IS NOT NULL;

-- Groups: local ones, and LDAP/OIDC groups seen at login (by DN or claim).
CREATE TABLE groups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    source       TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'ldap', 'oidc')),
    external_id  TEXT,
    created_at   BIGINT NOT NULL,
    UNIQUE (source, name)
);
CREATE UNIQUE INDEX groups_by_external_id ON groups(source, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE user_groups (
    user_id   BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id  BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX user_groups_by_group ON user_groups(group_id);

-- A repository `p/...` belongs to project `p`; single-segment names to
-- `library`, which always exists (private until an admin opens it).
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    is_public   BIGINT NOT NULL DEFAULT 0 CHECK (is_public IN (0, 1)),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO projects (name, is_public, created_at, updated_at)
VALUES ('library', 0,
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

-- A member is a user or a group, with one role per project.
CREATE TABLE project_members (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id     BIGINT REFERENCES users(id) ON DELETE CASCADE,
    group_id    BIGINT REFERENCES groups(id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('project_admin', 'maintainer', 'developer', 'guest', 'limited_guest')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CHECK ((user_id IS NULL) <> (group_id IS NULL))
);
CREATE UNIQUE INDEX project_members_user ON project_members(project_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX project_members_group ON project_members(project_id, group_id) WHERE group_id IS NOT NULL;
CREATE INDEX project_members_by_user ON project_members(user_id) WHERE user_id IS NOT NULL;
CREATE INDEX project_members_by_group ON project_members(group_id) WHERE group_id IS NOT NULL;

-- Robot accounts: system level (project_id NULL) or in one project, with an
-- explicit permission list (JSON) and a hashed secret.
CREATE TABLE robots (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    description  TEXT NOT NULL DEFAULT '',
    project_id   BIGINT REFERENCES projects(id) ON DELETE CASCADE,
    permissions  TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    expires_at   BIGINT,
    disabled     BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX robots_by_project ON robots(project_id);

-- Personal access tokens, found by their hash at login. `scopes` (JSON
-- grants) narrows what the user may do with the token; NULL does not.
CREATE TABLE personal_access_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    scopes        TEXT,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    created_at    BIGINT NOT NULL,
    UNIQUE (user_id, name)
);

-- Token signing keys, shared by every node. A key verifies until
-- `retired_at` (NULL: not rotated out); the newest unretired key signs.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    algorithm    TEXT NOT NULL,
    private_pem  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT
);

-- Security-relevant events, read newest first, filtered by time, actor,
-- project and action.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at  BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    actor_kind   TEXT NOT NULL CHECK (actor_kind IN ('anonymous', 'user', 'robot', 'system')),
    action       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    project      TEXT,
    result       TEXT NOT NULL CHECK (result IN ('success', 'failure', 'denied')),
    source_addr  TEXT,
    details      TEXT
);
CREATE INDEX audit_log_by_time ON audit_log(occurred_at, id);
CREATE INDEX audit_log_by_actor ON audit_log(actor, occurred_at, id);
CREATE INDEX audit_log_by_project ON audit_log(project, occurred_at, id) WHERE project IS NOT NULL;
CREATE INDEX audit_log_by_action ON audit_log(action, occurred_at, id);
