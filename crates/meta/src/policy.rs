//! Per-project policies (migration 0005): immutable tag rules and quotas,
//! with the usage queries that quota checks and the quota API run.
//!
//! Usage is never stored: it is computed from the registry tables when a
//! push into a project with a limit is checked, and when the quota API is
//! read. A project's repositories are found by a range scan on the
//! `repositories` primary key (`p/` ≤ name < `p0`, since `0` follows `/`),
//! then each table is reached through its `repo`-leading primary key. On
//! PostgreSQL `repositories.name` collates as bytes while the other `repo`
//! columns use the database's collation, so the join names the column's
//! collation (`COLLATE "default"`) to keep those indexes usable.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::{MetaStore, Result, Tx, now_millis};

/// The project that holds single-segment repository names (migration 0003
/// creates it; `berth_auth::DEFAULT_PROJECT`).
const DEFAULT_PROJECT: &str = "library";

/// An immutable tag rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableRuleRow {
    pub id: i64,
    pub project_id: i64,
    /// Doublestar pattern over the repository's path inside the project.
    pub repo_pattern: String,
    /// The rule applies to repositories that do NOT match.
    pub repo_excludes: bool,
    pub tag_pattern: String,
    /// The rule applies to tags that do NOT match.
    pub tag_excludes: bool,
    pub disabled: bool,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What creating or changing a rule sets.
#[derive(Debug, Clone, Copy)]
pub struct ImmutableRuleFields<'a> {
    pub repo_pattern: &'a str,
    pub repo_excludes: bool,
    pub tag_pattern: &'a str,
    pub tag_excludes: bool,
    pub disabled: bool,
}

/// Whether a project has enabled immutable rules and a quota that limits
/// something (`Tx::policies_in_force`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoliciesInForce {
    pub immutable_rules: bool,
    pub quota_limit: bool,
}

/// A project's quota; `-1` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRow {
    pub project_id: i64,
    pub storage_limit: i64,
    pub artifact_limit: i64,
    pub warn_percent: i64,
    /// Usage was last seen at or above `warn_percent`.
    pub warned: bool,
    pub updated_at: i64,
}

impl QuotaRow {
    /// Whether any limit is set.
    pub fn limited(&self) -> bool {
        self.storage_limit >= 0 || self.artifact_limit >= 0
    }
}

/// What a project holds, exactly. A blob is counted once however many of
/// the project's repositories link or reference it; so is a manifest body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectUsage {
    /// Distinct blobs referenced by a manifest of the project.
    pub referenced_blobs: i64,
    pub referenced_bytes: i64,
    /// Distinct blobs linked into the project's repositories (uploaded or
    /// mounted) that none of its manifests references.
    pub linked_only_blobs: i64,
    pub linked_only_bytes: i64,
    /// Manifests (artifacts): one per repository and digest.
    pub manifests: i64,
    /// Bytes of the project's distinct manifest bodies.
    pub manifest_bytes: i64,
}

impl ProjectUsage {
    /// Everything the project's storage quota counts.
    pub fn storage_bytes(&self) -> i64 {
        self.referenced_bytes + self.linked_only_bytes + self.manifest_bytes
    }
}

/// What the project's trash (manifests deleted within the restore window,
/// migration 0004) holds on to until garbage collection may take it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingDeletion {
    /// Distinct blobs that only deleted manifests reference (still linked,
    /// so also in [`ProjectUsage::linked_only_bytes`], until GC unlinks them).
    pub blobs: i64,
    pub blob_bytes: i64,
    /// Distinct deleted manifests not live again, and their body bytes
    /// (kept in the trash, not in [`ProjectUsage::manifest_bytes`]).
    pub manifests: i64,
    pub manifest_bytes: i64,
}

/// Usage plus whether a blob or manifest about to be added is already
/// counted in the project (then adding it costs no bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageProbe {
    pub usage: ProjectUsage,
    pub blob_counted: bool,
    pub manifest_counted: bool,
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

pub(crate) fn is_postgres(conn: &AnyConnection) -> bool {
    conn.backend_name() == "PostgreSQL"
}

fn rule_row(r: &AnyRow) -> Result<ImmutableRuleRow> {
    Ok(ImmutableRuleRow {
        id: r.try_get(0)?,
        project_id: r.try_get(1)?,
        repo_pattern: r.try_get(2)?,
        repo_excludes: r.try_get::<i64, _>(3)? != 0,
        tag_pattern: r.try_get(4)?,
        tag_excludes: r.try_get::<i64, _>(5)? != 0,
        disabled: r.try_get::<i64, _>(6)? != 0,
        created_by: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
    })
}

const RULE_COLUMNS: &str = "r.id, r.project_id, r.repo_pattern, r.repo_excludes, r.tag_pattern, \
     r.tag_excludes, r.disabled, r.created_by, r.created_at, r.updated_at";

fn quota_row(r: &AnyRow) -> Result<QuotaRow> {
    Ok(QuotaRow {
        project_id: r.try_get(0)?,
        storage_limit: r.try_get(1)?,
        artifact_limit: r.try_get(2)?,
        warn_percent: r.try_get(3)?,
        warned: r.try_get::<i64, _>(4)? != 0,
        updated_at: r.try_get(5)?,
    })
}

/// A quota row that limits something.
const LIMITED: &str = "(q.storage_limit >= 0 OR q.artifact_limit >= 0)";

const QUOTA_COLUMNS: &str =
    "q.project_id, q.storage_limit, q.artifact_limit, q.warn_percent, q.warned, q.updated_at";

/// The bounds of the range scan over `repositories.name` for `project`:
/// every name starting with `project/`.
fn name_range(project: &str) -> (String, String) {
    (format!("{project}/"), format!("{project}0"))
}

/// The predicate on `r.name` (`$1`, `$2` are the range) selecting the
/// project's repositories, and the join column expression.
fn scope_sql(conn: &AnyConnection, project: &str) -> (&'static str, &'static str) {
    let range = if project == DEFAULT_PROJECT {
        // `alpine` is `library`'s as much as `library/alpine` is.
        "((r.name >= $1 AND r.name < $2) OR r.name NOT LIKE '%/%')"
    } else {
        "(r.name >= $1 AND r.name < $2)"
    };
    let name = if is_postgres(conn) {
        "r.name COLLATE \"default\""
    } else {
        "r.name"
    };
    (range, name)
}

/// The project's usage, plus whether `blob` and `manifest` (digests; `""`
/// for none) are already counted in it.
async fn usage(
    conn: &mut AnyConnection,
    project: &str,
    blob: &str,
    manifest: &str,
) -> Result<UsageProbe> {
    let (range, name) = scope_sql(conn, project);
    let (lo, hi) = name_range(project);
    // Every distinct blob, flagged when some manifest references it.
    let blobs = format!(
        "WITH u AS ( \
           SELECT l.digest AS digest, 0 AS referenced FROM repositories r \
             JOIN repo_blobs l ON l.repo = {name} WHERE {range} \
           UNION ALL \
           SELECT mr.child_digest, 1 FROM repositories r \
             JOIN manifest_refs mr ON mr.repo = {name} WHERE {range} AND mr.kind = 'blob' \
         ), d AS (SELECT digest, MAX(referenced) AS referenced FROM u GROUP BY digest) \
         SELECT CAST(COALESCE(SUM(d.referenced), 0) AS BIGINT), \
                CAST(COALESCE(SUM(d.referenced * b.size), 0) AS BIGINT), \
                CAST(COALESCE(SUM(1 - d.referenced), 0) AS BIGINT), \
                CAST(COALESCE(SUM((1 - d.referenced) * b.size), 0) AS BIGINT), \
                CAST(COALESCE(MAX(CASE WHEN d.digest = $3 THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM d JOIN blobs b ON b.digest = d.digest"
    );
    let row = sqlx::query(AssertSqlSafe(blobs))
        .bind(&lo)
        .bind(&hi)
        .bind(blob)
        .fetch_one(&mut *conn)
        .await?;
    let mut probe = UsageProbe {
        usage: ProjectUsage {
            referenced_blobs: row.try_get(0)?,
            referenced_bytes: row.try_get(1)?,
            linked_only_blobs: row.try_get(2)?,
            linked_only_bytes: row.try_get(3)?,
            ..ProjectUsage::default()
        },
        blob_counted: row.try_get::<i64, _>(4)? != 0,
        manifest_counted: false,
    };
    let manifests = format!(
        "WITH pm AS (SELECT m.digest AS digest, m.size AS size FROM repositories r \
           JOIN manifests m ON m.repo = {name} WHERE {range}), \
         d AS (SELECT digest, MAX(size) AS size FROM pm GROUP BY digest) \
         SELECT (SELECT CAST(COUNT(*) AS BIGINT) FROM pm), \
                (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM d), \
                (SELECT CAST(COUNT(*) AS BIGINT) FROM d WHERE digest = $3)"
    );
    let row = sqlx::query(AssertSqlSafe(manifests))
        .bind(&lo)
        .bind(&hi)
        .bind(manifest)
        .fetch_one(&mut *conn)
        .await?;
    probe.usage.manifests = row.try_get(0)?;
    probe.usage.manifest_bytes = row.try_get(1)?;
    probe.manifest_counted = row.try_get::<i64, _>(2)? != 0;
    Ok(probe)
}

impl MetaStore {
    /// A project's immutable tag rules, by id.
    pub async fn immutable_rules(&self, project_id: i64) -> Result<Vec<ImmutableRuleRow>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM immutable_rules r WHERE r.project_id = $1 ORDER BY r.id"
        )))
        .bind(project_id)
        .fetch_all(read)
        .await?;
        rows.iter().map(rule_row).collect()
    }

    pub async fn immutable_rule(
        &self,
        project_id: i64,
        id: i64,
    ) -> Result<Option<ImmutableRuleRow>> {
        let (_, read) = self.pools();
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM immutable_rules r WHERE r.project_id = $1 AND r.id = $2"
        )))
        .bind(project_id)
        .bind(id)
        .fetch_optional(read)
        .await?;
        row.as_ref().map(rule_row).transpose()
    }

    /// A project's quota row; `None` is unlimited.
    pub async fn quota(&self, project_id: i64) -> Result<Option<QuotaRow>> {
        let (_, read) = self.pools();
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {QUOTA_COLUMNS} FROM project_quotas q WHERE q.project_id = $1"
        )))
        .bind(project_id)
        .fetch_optional(read)
        .await?;
        row.as_ref().map(quota_row).transpose()
    }

    /// What the trash of the project named `project` holds on to.
    pub async fn project_pending_deletion(&self, project: &str) -> Result<PendingDeletion> {
        let (_, read) = self.pools();
        let mut conn = read.acquire().await?;
        let (range, name) = scope_sql(&conn, project);
        let (lo, hi) = name_range(project);
        let sql = format!(
            "WITH live_refs AS (SELECT mr.child_digest AS digest FROM repositories r \
               JOIN manifest_refs mr ON mr.repo = {name} WHERE {range} AND mr.kind = 'blob'), \
             live_manifests AS (SELECT m.digest AS digest FROM repositories r \
               JOIN manifests m ON m.repo = {name} WHERE {range}), \
             tr AS (SELECT t.id AS id, t.kind AS kind, t.digest AS digest, t.size AS size \
               FROM repositories r JOIN trash t ON t.repo = {name} WHERE {range}), \
             tb AS (SELECT DISTINCT x.child_digest AS digest FROM tr \
               JOIN trash_refs x ON x.trash_id = tr.id WHERE x.kind = 'blob' \
               AND NOT EXISTS (SELECT 1 FROM live_refs l WHERE l.digest = x.child_digest)), \
             tm AS (SELECT digest, MAX(size) AS size FROM tr WHERE kind = 'manifest' \
               AND NOT EXISTS (SELECT 1 FROM live_manifests l WHERE l.digest = tr.digest) \
               GROUP BY digest) \
             SELECT (SELECT CAST(COUNT(*) AS BIGINT) FROM tb), \
                    (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM tb JOIN blobs b ON b.digest = tb.digest), \
                    (SELECT CAST(COUNT(*) AS BIGINT) FROM tm), \
                    (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM tm)"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&lo)
            .bind(&hi)
            .fetch_one(&mut *conn)
            .await?;
        Ok(PendingDeletion {
            blobs: row.try_get(0)?,
            blob_bytes: row.try_get(1)?,
            manifests: row.try_get(2)?,
            manifest_bytes: row.try_get(3)?,
        })
    }

    /// The quota of the project named `project` when it sets a limit.
    pub async fn limited_quota(&self, project: &str) -> Result<Option<QuotaRow>> {
        let (_, read) = self.pools();
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {QUOTA_COLUMNS} FROM project_quotas q JOIN projects p ON p.id = q.project_id \
             WHERE p.name = $1 AND {LIMITED}"
        )))
        .bind(project)
        .fetch_optional(read)
        .await?;
        row.as_ref().map(quota_row).transpose()
    }

    /// [`Tx::probe_project_usage`] from the read pool.
    pub async fn probe_project_usage(
        &self,
        project: &str,
        blob: &str,
        manifest: &str,
    ) -> Result<UsageProbe> {
        let (_, read) = self.pools();
        let mut conn = read.acquire().await?;
        usage(&mut conn, project, blob, manifest).await
    }

    /// The enabled immutable rules of the project named `project`.
    pub async fn enabled_immutable_rules(&self, project: &str) -> Result<Vec<ImmutableRuleRow>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM immutable_rules r JOIN projects p ON p.id = r.project_id \
             WHERE p.name = $1 AND r.disabled = 0 ORDER BY r.id"
        )))
        .bind(project)
        .fetch_all(read)
        .await?;
        rows.iter().map(rule_row).collect()
    }

    /// What the project `project` (by name) holds now.
    pub async fn project_usage(&self, project: &str) -> Result<ProjectUsage> {
        let (_, read) = self.pools();
        let mut conn = read.acquire().await?;
        Ok(usage(&mut conn, project, "", "").await?.usage)
    }
}

impl Tx {
    pub async fn insert_immutable_rule(
        &mut self,
        project_id: i64,
        fields: ImmutableRuleFields<'_>,
        created_by: &str,
    ) -> Result<i64> {
        let now = now_millis();
        let row = sqlx::query(
            "INSERT INTO immutable_rules (project_id, repo_pattern, repo_excludes, tag_pattern, \
             tag_excludes, disabled, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
        )
        .bind(project_id)
        .bind(fields.repo_pattern)
        .bind(flag(fields.repo_excludes))
        .bind(fields.tag_pattern)
        .bind(flag(fields.tag_excludes))
        .bind(flag(fields.disabled))
        .bind(created_by)
        .bind(now)
        .fetch_one(self.conn())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Returns false when the project has no such rule.
    pub async fn update_immutable_rule(
        &mut self,
        project_id: i64,
        id: i64,
        fields: ImmutableRuleFields<'_>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE immutable_rules SET repo_pattern = $3, repo_excludes = $4, tag_pattern = $5, \
             tag_excludes = $6, disabled = $7, updated_at = $8 WHERE project_id = $1 AND id = $2",
        )
        .bind(project_id)
        .bind(id)
        .bind(fields.repo_pattern)
        .bind(flag(fields.repo_excludes))
        .bind(fields.tag_pattern)
        .bind(flag(fields.tag_excludes))
        .bind(flag(fields.disabled))
        .bind(now_millis())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Returns false when the project has no such rule.
    pub async fn delete_immutable_rule(&mut self, project_id: i64, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM immutable_rules WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Which policies apply to the project named `project`, in one query:
    /// most pushes go to projects with neither, and on SQLite each query in
    /// a write transaction is a round trip while every other writer waits.
    pub async fn policies_in_force(&mut self, project: &str) -> Result<PoliciesInForce> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT \
               CAST(CASE WHEN EXISTS (SELECT 1 FROM immutable_rules r JOIN projects p ON p.id = r.project_id \
                    WHERE p.name = $1 AND r.disabled = 0) THEN 1 ELSE 0 END AS BIGINT), \
               CAST(CASE WHEN EXISTS (SELECT 1 FROM project_quotas q JOIN projects p ON p.id = q.project_id \
                    WHERE p.name = $1 AND {LIMITED}) THEN 1 ELSE 0 END AS BIGINT)"
        )))
        .bind(project)
        .fetch_one(self.conn())
        .await?;
        Ok(PoliciesInForce {
            immutable_rules: row.try_get::<i64, _>(0)? != 0,
            quota_limit: row.try_get::<i64, _>(1)? != 0,
        })
    }

    /// The enabled immutable rules of the project named `project`.
    pub async fn enabled_immutable_rules(
        &mut self,
        project: &str,
    ) -> Result<Vec<ImmutableRuleRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RULE_COLUMNS} FROM immutable_rules r JOIN projects p ON p.id = r.project_id \
             WHERE p.name = $1 AND r.disabled = 0 ORDER BY r.id"
        )))
        .bind(project)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(rule_row).collect()
    }

    /// The digest a tag points at, read in this transaction.
    pub async fn tag_target(&mut self, repo: &str, tag: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT digest FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo)
            .bind(tag)
            .fetch_optional(self.conn())
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// The tags pointing at a manifest, by name.
    pub async fn tags_of_manifest(&mut self, repo: &str, digest: &str) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT name FROM tags WHERE repo = $1 AND digest = $2 ORDER BY name")
                .bind(repo)
                .bind(digest)
                .fetch_all(self.conn())
                .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Serializes, until this transaction ends, the transactions that
    /// decide about one tag, so two first pushes of an immutable tag cannot
    /// both see it absent. PostgreSQL only (a transaction-scoped advisory
    /// lock); SQLite's single writer already serializes them.
    pub async fn lock_tag_name(&mut self, repo: &str, tag: &str) -> Result<()> {
        if is_postgres(self.conn()) {
            sqlx::query("SELECT CAST(1 AS BIGINT) FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 5005))) l")
                .bind(format!("{repo}:{tag}"))
                .fetch_one(self.conn())
                .await?;
        }
        Ok(())
    }

    /// Sets a project's limits (creating its row); a new limit re-arms the
    /// usage warning.
    pub async fn set_quota(
        &mut self,
        project_id: i64,
        storage_limit: i64,
        artifact_limit: i64,
        warn_percent: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO project_quotas (project_id, storage_limit, artifact_limit, warn_percent, warned, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (project_id) DO UPDATE SET \
             storage_limit = excluded.storage_limit, artifact_limit = excluded.artifact_limit, \
             warn_percent = excluded.warn_percent, warned = 0, updated_at = excluded.updated_at",
        )
        .bind(project_id)
        .bind(storage_limit)
        .bind(artifact_limit)
        .bind(warn_percent)
        .bind(now_millis())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The quota of the project named `project` when it sets a limit,
    /// locked until this transaction ends on PostgreSQL (`FOR UPDATE`), so
    /// concurrent pushes into one project check and insert one after the
    /// other; on SQLite the single writer connection already does. A
    /// project without a limit locks nothing.
    pub async fn limited_quota_for_update(&mut self, project: &str) -> Result<Option<QuotaRow>> {
        let lock = if is_postgres(self.conn()) {
            " FOR UPDATE OF q"
        } else {
            ""
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {QUOTA_COLUMNS} FROM project_quotas q JOIN projects p ON p.id = q.project_id \
             WHERE p.name = $1 AND {LIMITED}{lock}"
        )))
        .bind(project)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(quota_row).transpose()
    }

    pub async fn set_quota_warned(&mut self, project_id: i64, warned: bool) -> Result<()> {
        sqlx::query("UPDATE project_quotas SET warned = $2 WHERE project_id = $1")
            .bind(project_id)
            .bind(flag(warned))
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// The project's usage as this transaction sees it, and whether the
    /// blob and manifest digests given (`""`: none) are already counted.
    pub async fn probe_project_usage(
        &mut self,
        project: &str,
        blob: &str,
        manifest: &str,
    ) -> Result<UsageProbe> {
        usage(self.conn(), project, blob, manifest).await
    }
}
