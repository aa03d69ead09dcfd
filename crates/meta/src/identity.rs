//! Identity and access rows: users, groups, projects and members, robot
//! accounts, personal access tokens, token signing keys, the audit log.
//!
//! This module stores and finds; it decides nothing. Roles, permission
//! lists and hashes are opaque text here (`berth-auth` owns their meaning),
//! and flags are BIGINT 0/1 so the SQL is the same on SQLite and
//! PostgreSQL. Reads go to the read pool; writes go through an
//! [`IdentityTx`], so a change and its audit entry commit together.
//!
//! Inserts of things with unique names answer `None` when the name is
//! taken (`ON CONFLICT DO NOTHING`), so callers can report a conflict
//! without parsing database errors.

mod manage;

use std::fmt;
use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use crate::{MetaStore, Result, now_millis};

/// A user account. `Debug` leaves out the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    /// `local`, `ldap` or `oidc`.
    pub source: String,
    /// LDAP DN, or OIDC issuer and subject.
    pub external_id: Option<String>,
    /// argon2id PHC string; `None` without a local password.
    pub password_hash: Option<String>,
    pub system_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl fmt::Debug for UserRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("source", &self.source)
            .field("system_admin", &self.system_admin)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub name: &'a str,
    pub email: Option<&'a str>,
    pub source: &'a str,
    pub external_id: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub system_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub source: String,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    pub id: i64,
    pub name: String,
    pub public: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Who a membership is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRef {
    User(i64),
    Group(i64),
}

impl MemberRef {
    /// The `project_members` column naming this member, and its id.
    fn column(self) -> (&'static str, i64) {
        match self {
            MemberRef::User(id) => ("user_id", id),
            MemberRef::Group(id) => ("group_id", id),
        }
    }
}

/// A project membership with the member's name, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub member: MemberRef,
    pub name: String,
    /// `project_admin`, `maintainer`, `developer`, `guest`, `limited_guest`.
    pub role: String,
}

/// A robot account. `Debug` leaves out the secret hash.
#[derive(Clone, PartialEq, Eq)]
pub struct RobotRow {
    pub id: i64,
    /// The login name, e.g. `robot$team+ci`.
    pub name: String,
    pub description: String,
    /// `None` for a system-level robot.
    pub project_id: Option<i64>,
    /// JSON permission list (berth-auth `Vec<Grant>`).
    pub permissions: String,
    pub secret_hash: String,
    pub expires_at: Option<i64>,
    pub disabled: bool,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl fmt::Debug for RobotRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RobotRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("project_id", &self.project_id)
            .field("permissions", &self.permissions)
            .field("expires_at", &self.expires_at)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct NewRobot<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub project_id: Option<i64>,
    pub permissions: &'a str,
    pub secret_hash: &'a str,
    pub expires_at: Option<i64>,
    pub created_by: &'a str,
}

/// A personal access token (its hash; the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub token_hash: String,
    /// JSON grants narrowing the user's rights; `None` does not narrow.
    pub scopes: Option<String>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
}

/// A token signing key. `Debug` leaves out the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub algorithm: String,
    pub private_pem: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// An audit event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub occurred_at: i64,
    /// Account name, empty for anonymous.
    pub actor: String,
    /// `anonymous`, `user`, `robot` or `system`.
    pub actor_kind: String,
    /// e.g. `login`, `push`, `pull`, `delete`, `member.set`, `robot.create`.
    pub action: String,
    /// What was acted on, e.g. `team/app:1.0` or `user:alice`.
    pub resource: String,
    pub project: Option<String>,
    /// `success`, `failure` or `denied`.
    pub result: String,
    pub source_addr: Option<String>,
    /// JSON object with anything else worth keeping.
    pub details: Option<String>,
}

/// A recorded audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub entry: AuditEntry,
}

impl AuditRow {
    /// Where the next page starts after this row.
    pub fn cursor(&self) -> AuditCursor {
        AuditCursor {
            occurred_at: self.entry.occurred_at,
            id: self.id,
        }
    }
}

/// Keyset position in the audit log (newest first): the last row seen.
/// Its text form (`<millis>.<id>`) is what an API hands out as `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub occurred_at: i64,
    pub id: i64,
}

impl fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.occurred_at, self.id)
    }
}

impl FromStr for AuditCursor {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<AuditCursor, String> {
        let bad = || format!("audit cursor {s:?} is not <millis>.<id>");
        let (at, id) = s.split_once('.').ok_or_else(bad)?;
        Ok(AuditCursor {
            occurred_at: at.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// Which audit rows to read: every set field must match. Rows come newest
/// first, at most `limit`, after `after` when given.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    /// Inclusive lower bound on `occurred_at`.
    pub since: Option<i64>,
    /// Exclusive upper bound on `occurred_at`.
    pub until: Option<i64>,
    pub actor: Option<&'a str>,
    pub project: Option<&'a str>,
    pub action: Option<&'a str>,
    pub after: Option<AuditCursor>,
    pub limit: i64,
}

const USER_COLUMNS: &str = "id, name, email, source, external_id, password_hash, system_admin, \
                            disabled, created_at, updated_at";
const PROJECT_COLUMNS: &str = "id, name, is_public, created_at, updated_at";
const ROBOT_COLUMNS: &str = "id, name, description, project_id, permissions, secret_hash, \
                             expires_at, disabled, created_by, created_at, updated_at";
const TOKEN_COLUMNS: &str =
    "id, user_id, name, token_hash, scopes, expires_at, last_used_at, created_at";
const AUDIT_COLUMNS: &str = "id, occurred_at, actor, actor_kind, action, resource, project, \
                             result, source_addr, details";

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn user_row(r: &AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        email: r.try_get(2)?,
        source: r.try_get(3)?,
        external_id: r.try_get(4)?,
        password_hash: r.try_get(5)?,
        system_admin: r.try_get::<i64, _>(6)? != 0,
        disabled: r.try_get::<i64, _>(7)? != 0,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
    })
}

fn group_row(r: &AnyRow) -> Result<GroupRow> {
    Ok(GroupRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        source: r.try_get(2)?,
        external_id: r.try_get(3)?,
    })
}

fn project_row(r: &AnyRow) -> Result<ProjectRow> {
    Ok(ProjectRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        public: r.try_get::<i64, _>(2)? != 0,
        created_at: r.try_get(3)?,
        updated_at: r.try_get(4)?,
    })
}

fn robot_row(r: &AnyRow) -> Result<RobotRow> {
    Ok(RobotRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        project_id: r.try_get(3)?,
        permissions: r.try_get(4)?,
        secret_hash: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        disabled: r.try_get::<i64, _>(7)? != 0,
        created_by: r.try_get(8)?,
        created_at: r.try_get(9)?,
        updated_at: r.try_get(10)?,
    })
}

fn token_row(r: &AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        name: r.try_get(2)?,
        token_hash: r.try_get(3)?,
        scopes: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        last_used_at: r.try_get(6)?,
        created_at: r.try_get(7)?,
    })
}

fn audit_row(r: &AnyRow) -> Result<AuditRow> {
    Ok(AuditRow {
        id: r.try_get(0)?,
        entry: AuditEntry {
            occurred_at: r.try_get(1)?,
            actor: r.try_get(2)?,
            actor_kind: r.try_get(3)?,
            action: r.try_get(4)?,
            resource: r.try_get(5)?,
            project: r.try_get(6)?,
            result: r.try_get(7)?,
            source_addr: r.try_get(8)?,
            details: r.try_get(9)?,
        },
    })
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value bound to a query assembled at run time.
enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

impl MetaStore {
    /// Opens a transaction for identity changes; dropping it rolls back.
    pub async fn begin_identity(&self) -> Result<IdentityTx> {
        let (write, _) = self.pools();
        Ok(IdentityTx(write.begin().await?))
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        let (_, read) = self.pools();
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(read)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        let (_, read) = self.pools();
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(read)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// An LDAP or OIDC account by its directory identity.
    pub async fn user_by_external_id(
        &self,
        source: &str,
        external_id: &str,
    ) -> Result<Option<UserRow>> {
        let (_, read) = self.pools();
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE source = $1 AND external_id = $2");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(source)
            .bind(external_id)
            .fetch_optional(read)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// Up to `limit` users sorted by name after `after`.
    pub async fn users(&self, after: Option<&str>, limit: i64) -> Result<Vec<UserRow>> {
        let (_, read) = self.pools();
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE name > $1 ORDER BY name LIMIT $2");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(read)
            .await?;
        rows.iter().map(user_row).collect()
    }

    pub async fn group_by_name(&self, source: &str, name: &str) -> Result<Option<GroupRow>> {
        let (_, read) = self.pools();
        let row = sqlx::query(
            "SELECT id, name, source, external_id FROM groups WHERE source = $1 AND name = $2",
        )
        .bind(source)
        .bind(name)
        .fetch_optional(read)
        .await?;
        row.as_ref().map(group_row).transpose()
    }

    /// The groups a user is recorded in, by name.
    pub async fn groups_of_user(&self, user_id: i64) -> Result<Vec<GroupRow>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(
            "SELECT g.id, g.name, g.source, g.external_id FROM user_groups ug \
             JOIN groups g ON g.id = ug.group_id WHERE ug.user_id = $1 ORDER BY g.name, g.id",
        )
        .bind(user_id)
        .fetch_all(read)
        .await?;
        rows.iter().map(group_row).collect()
    }

    pub async fn project_by_name(&self, name: &str) -> Result<Option<ProjectRow>> {
        let (_, read) = self.pools();
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(read)
            .await?;
        row.as_ref().map(project_row).transpose()
    }

    /// Up to `limit` projects sorted by name after `after`.
    pub async fn projects(&self, after: Option<&str>, limit: i64) -> Result<Vec<ProjectRow>> {
        let (_, read) = self.pools();
        let sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE name > $1 ORDER BY name LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(read)
            .await?;
        rows.iter().map(project_row).collect()
    }

    /// The roles `user_id` holds in a project, directly or through one of
    /// `group_ids` (the principal's groups, as its login resolved them).
    /// Sorted, without duplicates; empty for a non-member.
    pub async fn member_roles(
        &self,
        project_id: i64,
        user_id: Option<i64>,
        group_ids: &[i64],
    ) -> Result<Vec<String>> {
        let (_, read) = self.pools();
        let mut sql = String::from(
            "SELECT DISTINCT role FROM project_members WHERE project_id = $1 AND (user_id = $2",
        );
        if !group_ids.is_empty() {
            sql.push_str(&format!(
                " OR group_id IN ({})",
                placeholders(3, group_ids.len())
            ));
        }
        sql.push_str(") ORDER BY role");
        // A user id no account has (-1) matches nothing: anonymous and
        // robots are members through nothing.
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(project_id)
            .bind(user_id.unwrap_or(-1));
        for id in group_ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(read).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Members of a project with their names: users first, then groups,
    /// each by name.
    pub async fn project_members(&self, project_id: i64) -> Result<Vec<MemberRow>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(
            "SELECT CAST(0 AS BIGINT), u.id, u.name, m.role FROM project_members m JOIN users u ON u.id = m.user_id \
             WHERE m.project_id = $1 \
             UNION ALL \
             SELECT CAST(1 AS BIGINT), g.id, g.name, m.role FROM project_members m JOIN groups g ON g.id = m.group_id \
             WHERE m.project_id = $1 \
             ORDER BY 1, 3, 2",
        )
        .bind(project_id)
        .fetch_all(read)
        .await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(1)?;
                let member = match r.try_get::<i64, _>(0)? {
                    0 => MemberRef::User(id),
                    _ => MemberRef::Group(id),
                };
                Ok(MemberRow {
                    member,
                    name: r.try_get(2)?,
                    role: r.try_get(3)?,
                })
            })
            .collect()
    }

    pub async fn robot_by_name(&self, name: &str) -> Result<Option<RobotRow>> {
        let (_, read) = self.pools();
        let sql = format!("SELECT {ROBOT_COLUMNS} FROM robots WHERE name = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(read)
            .await?;
        row.as_ref().map(robot_row).transpose()
    }

    /// The robots of a project, or the system-level robots for `None`.
    pub async fn robots(&self, project_id: Option<i64>) -> Result<Vec<RobotRow>> {
        let (_, read) = self.pools();
        let (sql, bind) = match project_id {
            Some(id) => (
                format!("SELECT {ROBOT_COLUMNS} FROM robots WHERE project_id = $1 ORDER BY name"),
                Some(id),
            ),
            None => (
                format!(
                    "SELECT {ROBOT_COLUMNS} FROM robots WHERE project_id IS NULL ORDER BY name"
                ),
                None,
            ),
        };
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(id) = bind {
            query = query.bind(id);
        }
        let rows = query.fetch_all(read).await?;
        rows.iter().map(robot_row).collect()
    }

    /// A personal access token by the hash of the presented secret.
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRow>> {
        let (_, read) = self.pools();
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM personal_access_tokens WHERE token_hash = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(token_hash)
            .fetch_optional(read)
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    pub async fn tokens_of_user(&self, user_id: i64) -> Result<Vec<TokenRow>> {
        let (_, read) = self.pools();
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM personal_access_tokens WHERE user_id = $1 ORDER BY name"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_all(read)
            .await?;
        rows.iter().map(token_row).collect()
    }

    /// Records that a token was used (one statement, own transaction).
    pub async fn touch_token(&self, id: i64, now: i64) -> Result<()> {
        let (write, _) = self.pools();
        sqlx::query("UPDATE personal_access_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(write)
            .await?;
        Ok(())
    }

    /// Signing keys that still verify at `now` (not retired, or retired
    /// later than `now`), newest first. The first one with no `retired_at`
    /// signs. Read from the write side so a key just inserted is seen.
    pub async fn signing_keys(&self, now: i64) -> Result<Vec<SigningKeyRow>> {
        let (write, _) = self.pools();
        let rows = sqlx::query(
            "SELECT kid, algorithm, private_pem, created_at, retired_at FROM signing_keys \
             WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC, kid DESC",
        )
        .bind(now)
        .fetch_all(write)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRow {
                    kid: r.try_get(0)?,
                    algorithm: r.try_get(1)?,
                    private_pem: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    retired_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Records one audit event in its own transaction. Do not call it while
    /// holding a [`crate::Tx`] or an [`IdentityTx`] on SQLite, which has one
    /// write connection: write the entry in that transaction instead.
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<i64> {
        let mut tx = self.begin_identity().await?;
        let id = tx.insert_audit(entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Audit rows matching `filter`, newest first (keyset pagination on
    /// `(occurred_at, id)`).
    pub async fn audit(&self, filter: &AuditFilter<'_>) -> Result<Vec<AuditRow>> {
        let (_, read) = self.pools();
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1");
        let mut binds: Vec<Bind<'_>> = Vec::new();
        // Appends `condition` with its `?` numbered as the next parameter.
        let mut add = |sql: &mut String, condition: &str, value| {
            binds.push(value);
            sql.push_str(&condition.replace('?', &format!("${}", binds.len())));
        };
        if let Some(t) = filter.since {
            add(&mut sql, " AND occurred_at >= ?", Bind::Int(t));
        }
        if let Some(t) = filter.until {
            add(&mut sql, " AND occurred_at < ?", Bind::Int(t));
        }
        if let Some(actor) = filter.actor {
            add(&mut sql, " AND actor = ?", Bind::Text(actor));
        }
        if let Some(project) = filter.project {
            add(&mut sql, " AND project = ?", Bind::Text(project));
        }
        if let Some(action) = filter.action {
            add(&mut sql, " AND action = ?", Bind::Text(action));
        }
        if let Some(c) = filter.after {
            add(&mut sql, " AND (occurred_at < ?", Bind::Int(c.occurred_at));
            add(&mut sql, " OR (occurred_at = ?", Bind::Int(c.occurred_at));
            add(&mut sql, " AND id < ?))", Bind::Int(c.id));
        }
        add(
            &mut sql,
            " ORDER BY occurred_at DESC, id DESC LIMIT ?",
            Bind::Int(filter.limit.max(0)),
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(read).await?;
        rows.iter().map(audit_row).collect()
    }

    /// Deletes audit rows older than `before`; returns how many.
    pub async fn purge_audit(&self, before: i64) -> Result<u64> {
        let (write, _) = self.pools();
        let done = sqlx::query("DELETE FROM audit_log WHERE occurred_at < $1")
            .bind(before)
            .execute(write)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Identity writes, in one transaction. Dropping it without
/// [`IdentityTx::commit`] rolls back.
pub struct IdentityTx(Transaction<'static, Any>);

impl IdentityTx {
    pub async fn commit(self) -> Result<()> {
        self.0.commit().await?;
        Ok(())
    }

    /// Creates a user; `None` when the name is taken.
    pub async fn insert_user(&mut self, user: NewUser<'_>) -> Result<Option<i64>> {
        let now = now_millis();
        let row = sqlx::query(
            "INSERT INTO users (name, email, source, external_id, password_hash, system_admin, \
             disabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(user.name)
        .bind(user.email)
        .bind(user.source)
        .bind(user.external_id)
        .bind(user.password_hash)
        .bind(flag(user.system_admin))
        .bind(now)
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Replaces a user's password hash (`None` removes the local password).
    pub async fn set_password_hash(&mut self, user_id: i64, hash: Option<&str>) -> Result<bool> {
        self.update_user(user_id, "password_hash", UserValue::Text(hash))
            .await
    }

    pub async fn set_system_admin(&mut self, user_id: i64, system_admin: bool) -> Result<bool> {
        self.update_user(user_id, "system_admin", UserValue::Int(flag(system_admin)))
            .await
    }

    pub async fn set_user_disabled(&mut self, user_id: i64, disabled: bool) -> Result<bool> {
        self.update_user(user_id, "disabled", UserValue::Int(flag(disabled)))
            .await
    }

    pub async fn set_user_email(&mut self, user_id: i64, email: Option<&str>) -> Result<bool> {
        self.update_user(user_id, "email", UserValue::Text(email))
            .await
    }

    async fn update_user(
        &mut self,
        user_id: i64,
        column: &str,
        value: UserValue<'_>,
    ) -> Result<bool> {
        let sql = format!("UPDATE users SET {column} = $2, updated_at = $3 WHERE id = $1");
        let query = sqlx::query(AssertSqlSafe(sql)).bind(user_id);
        let query = match value {
            UserValue::Int(v) => query.bind(v),
            UserValue::Text(v) => query.bind(v),
        };
        let done = query.bind(now_millis()).execute(&mut *self.0).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a user with their memberships, group links and tokens.
    pub async fn delete_user(&mut self, user_id: i64) -> Result<bool> {
        self.delete_by_id("users", user_id).await
    }

    /// Finds or creates a group; returns its id. An existing group's
    /// `external_id` is updated.
    pub async fn upsert_group(
        &mut self,
        source: &str,
        name: &str,
        external_id: Option<&str>,
    ) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO groups (name, source, external_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (source, name) DO UPDATE SET external_id = excluded.external_id \
             RETURNING id",
        )
        .bind(name)
        .bind(source)
        .bind(external_id)
        .bind(now_millis())
        .fetch_one(&mut *self.0)
        .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn delete_group(&mut self, group_id: i64) -> Result<bool> {
        self.delete_by_id("groups", group_id).await
    }

    /// Makes `group_ids` exactly the groups of a user (what a directory
    /// login found).
    pub async fn set_user_groups(&mut self, user_id: i64, group_ids: &[i64]) -> Result<()> {
        sqlx::query("DELETE FROM user_groups WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *self.0)
            .await?;
        for group_id in group_ids {
            sqlx::query(
                "INSERT INTO user_groups (user_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(user_id)
            .bind(*group_id)
            .execute(&mut *self.0)
            .await?;
        }
        Ok(())
    }

    /// Creates a project; `None` when the name is taken.
    pub async fn insert_project(&mut self, name: &str, public: bool) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO projects (name, is_public, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(flag(public))
        .bind(now_millis())
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    pub async fn set_project_public(&mut self, project_id: i64, public: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE projects SET is_public = $2, updated_at = $3 WHERE id = $1")
            .bind(project_id)
            .bind(flag(public))
            .bind(now_millis())
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a project with its memberships and robots. The caller makes
    /// sure it holds no repositories first.
    pub async fn delete_project(&mut self, project_id: i64) -> Result<bool> {
        self.delete_by_id("projects", project_id).await
    }

    /// Gives a user or group `role` in a project, replacing any role it had.
    pub async fn set_member(
        &mut self,
        project_id: i64,
        member: MemberRef,
        role: &str,
    ) -> Result<()> {
        let now = now_millis();
        let (column, id) = member.column();
        let sql = format!(
            "UPDATE project_members SET role = $3, updated_at = $4 WHERE project_id = $1 AND {column} = $2"
        );
        let updated = sqlx::query(AssertSqlSafe(sql))
            .bind(project_id)
            .bind(id)
            .bind(role)
            .bind(now)
            .execute(&mut *self.0)
            .await?;
        if updated.rows_affected() == 0 {
            let sql = format!(
                "INSERT INTO project_members (project_id, {column}, role, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4)"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(project_id)
                .bind(id)
                .bind(role)
                .bind(now)
                .execute(&mut *self.0)
                .await?;
        }
        Ok(())
    }

    /// Returns false when it was not a member.
    pub async fn remove_member(&mut self, project_id: i64, member: MemberRef) -> Result<bool> {
        let (column, id) = member.column();
        let sql = format!("DELETE FROM project_members WHERE project_id = $1 AND {column} = $2");
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(project_id)
            .bind(id)
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Creates a robot account; `None` when the name is taken.
    pub async fn insert_robot(&mut self, robot: NewRobot<'_>) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO robots (name, description, project_id, permissions, secret_hash, expires_at, \
             disabled, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $8) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(robot.name)
        .bind(robot.description)
        .bind(robot.project_id)
        .bind(robot.permissions)
        .bind(robot.secret_hash)
        .bind(robot.expires_at)
        .bind(robot.created_by)
        .bind(now_millis())
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Replaces a robot's secret (rotation).
    pub async fn set_robot_secret(&mut self, robot_id: i64, secret_hash: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE robots SET secret_hash = $2, updated_at = $3 WHERE id = $1")
            .bind(robot_id)
            .bind(secret_hash)
            .bind(now_millis())
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces a robot's permissions, expiry and disabled flag.
    pub async fn update_robot(
        &mut self,
        robot_id: i64,
        permissions: &str,
        expires_at: Option<i64>,
        disabled: bool,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE robots SET permissions = $2, expires_at = $3, disabled = $4, updated_at = $5 \
             WHERE id = $1",
        )
        .bind(robot_id)
        .bind(permissions)
        .bind(expires_at)
        .bind(flag(disabled))
        .bind(now_millis())
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_robot(&mut self, robot_id: i64) -> Result<bool> {
        self.delete_by_id("robots", robot_id).await
    }

    /// Stores a personal access token's hash; `None` when the user already
    /// has a token of that name.
    pub async fn insert_token(
        &mut self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        scopes: Option<&str>,
        expires_at: Option<i64>,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO personal_access_tokens (user_id, name, token_hash, scopes, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, name) DO NOTHING RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(scopes)
        .bind(expires_at)
        .bind(now_millis())
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Revokes one of a user's tokens; false when the user has no such token.
    pub async fn delete_token(&mut self, user_id: i64, token_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM personal_access_tokens WHERE id = $1 AND user_id = $2")
            .bind(token_id)
            .bind(user_id)
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stores a new signing key; false when its kid is already there.
    pub async fn insert_signing_key(
        &mut self,
        kid: &str,
        algorithm: &str,
        private_pem: &str,
        created_at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_pem, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kid) DO NOTHING",
        )
        .bind(kid)
        .bind(algorithm)
        .bind(private_pem)
        .bind(created_at)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Makes every unretired key except `keep` stop verifying at `at`
    /// (after a rotation: once the tokens they signed have expired).
    /// Returns how many keys were scheduled for retirement.
    pub async fn retire_signing_keys_except(&mut self, keep: &str, at: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE signing_keys SET retired_at = $2 WHERE kid <> $1 AND retired_at IS NULL",
        )
        .bind(keep)
        .bind(at)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes keys retired before `before`; their tokens are long expired.
    pub async fn delete_retired_signing_keys(&mut self, before: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1",
        )
        .bind(before)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected())
    }

    /// Records an audit event in this transaction; returns its id.
    pub async fn insert_audit(&mut self, entry: &AuditEntry) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO audit_log (occurred_at, actor, actor_kind, action, resource, project, result, \
             source_addr, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(entry.occurred_at)
        .bind(entry.actor.as_str())
        .bind(entry.actor_kind.as_str())
        .bind(entry.action.as_str())
        .bind(entry.resource.as_str())
        .bind(entry.project.as_deref())
        .bind(entry.result.as_str())
        .bind(entry.source_addr.as_deref())
        .bind(entry.details.as_deref())
        .fetch_one(&mut *self.0)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Inserts `entries` in order, many rows per statement: the audit log's
    /// write-behind flushes thousands of pull events a second under load,
    /// and one statement per row (a driver round trip each) fell behind.
    pub async fn insert_audit_batch(&mut self, entries: &[AuditEntry]) -> Result<()> {
        // 9 parameters a row: well under SQLite's and PostgreSQL's limits.
        const ROWS: usize = 100;
        for chunk in entries.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO audit_log (occurred_at, actor, actor_kind, action, resource, project, \
                 result, source_addr, details) VALUES {}",
                crate::values_rows(chunk.len(), 9)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for e in chunk {
                query = query
                    .bind(e.occurred_at)
                    .bind(e.actor.as_str())
                    .bind(e.actor_kind.as_str())
                    .bind(e.action.as_str())
                    .bind(e.resource.as_str())
                    .bind(e.project.as_deref())
                    .bind(e.result.as_str())
                    .bind(e.source_addr.as_deref())
                    .bind(e.details.as_deref());
            }
            query.execute(&mut *self.0).await?;
        }
        Ok(())
    }

    /// Deletes a row by id from one of this module's tables. Foreign keys
    /// cascade to memberships, group links, tokens and robots.
    async fn delete_by_id(&mut self, table: &'static str, id: i64) -> Result<bool> {
        let sql = format!("DELETE FROM {table} WHERE id = $1");
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

enum UserValue<'a> {
    Int(i64),
    Text(Option<&'a str>),
}
