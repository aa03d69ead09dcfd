//! Tag retention's tables (issue 5, scope 3): one policy per project with
//! its cron schedule, the history of runs with what each decided per
//! artifact, and the artifact listing that retention and the API read
//! (tags with their push times, pull statistics).
//!
//! The rules are stored as the JSON the core validated; this module does
//! not read them. Scheduling is cluster-safe the same way `job_schedules`
//! is: the node whose conditional UPDATE moves `next_run_at` past the due
//! time runs that period.

use sqlx::{AnyPool, Row};

use crate::{Error, MetaStore, Result, now_millis};

/// A project's retention policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicyRow {
    pub project_id: i64,
    /// The rules, as JSON.
    pub rules: String,
    /// A cron expression (UTC), or `None` for on-demand runs only.
    pub schedule: Option<String>,
    /// When the schedule runs next.
    pub next_run_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A scheduled run that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRetention {
    pub project_id: i64,
    pub project: String,
    pub next_run_at: i64,
}

/// A run about to start.
#[derive(Debug, Clone, Copy)]
pub struct NewRetentionExecution<'a> {
    pub project_id: i64,
    /// `manual` or `schedule`.
    pub trigger: &'a str,
    pub dry_run: bool,
    /// Who started it (`system` for the schedule).
    pub actor: &'a str,
    /// The rules applied, as JSON.
    pub rules: &'a str,
}

/// What a run found and did, counted per artifact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionCounts {
    pub artifacts: i64,
    pub retained: i64,
    /// Deleted, or (in a dry run) to be deleted.
    pub deleted: i64,
    pub errors: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionExecutionRow {
    pub id: i64,
    pub project_id: i64,
    pub trigger: String,
    pub dry_run: bool,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub actor: String,
    pub rules: String,
    pub counts: RetentionCounts,
    pub error: Option<String>,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// One artifact's line in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionItemRow {
    /// Order within the run, from 0.
    pub seq: i64,
    pub repo: String,
    pub digest: String,
    /// The artifact's tags when it was evaluated, as a JSON list.
    pub tags: String,
    /// `retain` or `delete`: what the rules decided.
    pub action: String,
    /// What came of it (`retained`, `deleted`, `would_delete`, …).
    pub outcome: String,
    /// The indices of the rules that retained it, as a JSON list.
    pub rules: String,
    /// Why, in words.
    pub reason: String,
    pub pushed_at: i64,
    pub pulled_at: Option<i64>,
}

/// A tag of an artifact and when it was last pushed (moved onto it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPush {
    pub name: String,
    pub pushed_at: i64,
}

/// An artifact (a manifest in a repository) with what listings and
/// retention need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    pub repo: String,
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// Bytes of the manifest and of the blobs it references directly
    /// (config and layers); an index counts its own bytes only.
    pub size: i64,
    /// When the manifest was pushed (first stored).
    pub created_at: i64,
    pub subject: Option<String>,
    /// Sorted by name.
    pub tags: Vec<TagPush>,
    pub pull_count: i64,
    pub last_pulled_at: Option<i64>,
    /// An image index in the same repository lists it.
    pub in_index: bool,
    /// Its subject is a manifest of the same repository (it is a referrer:
    /// a signature, an SBOM, …).
    pub subject_present: bool,
}

impl ArtifactRow {
    /// The latest push of the manifest or of any of its tags.
    pub fn pushed_at(&self) -> i64 {
        self.tags
            .iter()
            .map(|t| t.pushed_at)
            .fold(self.created_at, i64::max)
    }
}

const EXECUTION_COLUMNS: &str = "id, project_id, trigger_kind, dry_run, status, actor, rules, \
     artifacts, retained, deleted, errors, error, started_at, updated_at, finished_at";

/// Executions kept per project; older ones (and their items) are deleted
/// when a run finishes.
pub const KEPT_EXECUTIONS: i64 = 100;

fn writer(store: &MetaStore) -> &AnyPool {
    store.pools().0
}

fn reader(store: &MetaStore) -> &AnyPool {
    store.pools().1
}

impl MetaStore {
    // -- Policies -------------------------------------------------------------

    pub async fn retention_policy(&self, project_id: i64) -> Result<Option<RetentionPolicyRow>> {
        let row = sqlx::query(
            "SELECT project_id, rules, schedule, next_run_at, created_at, updated_at \
             FROM retention_policies WHERE project_id = $1",
        )
        .bind(project_id)
        .fetch_optional(reader(self))
        .await?;
        row.map(|r| {
            Ok(RetentionPolicyRow {
                project_id: r.try_get(0)?,
                rules: r.try_get(1)?,
                schedule: r.try_get(2)?,
                next_run_at: r.try_get(3)?,
                created_at: r.try_get(4)?,
                updated_at: r.try_get(5)?,
            })
        })
        .transpose()
    }

    /// Creates or replaces a project's policy. Returns true when it was
    /// created.
    pub async fn put_retention_policy(
        &self,
        project_id: i64,
        rules: &str,
        schedule: Option<&str>,
        next_run_at: Option<i64>,
    ) -> Result<bool> {
        let now = now_millis();
        let mut tx = writer(self).begin().await?;
        let updated = sqlx::query(
            "UPDATE retention_policies SET rules = $2, schedule = $3, next_run_at = $4, updated_at = $5 \
             WHERE project_id = $1",
        )
        .bind(project_id)
        .bind(rules)
        .bind(schedule)
        .bind(next_run_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let created = updated.rows_affected() == 0;
        if created {
            sqlx::query(
                "INSERT INTO retention_policies (project_id, rules, schedule, next_run_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(project_id)
            .bind(rules)
            .bind(schedule)
            .bind(next_run_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// False when the project had no policy.
    pub async fn delete_retention_policy(&self, project_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM retention_policies WHERE project_id = $1")
            .bind(project_id)
            .execute(writer(self))
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Scheduled policies due at `now`, most overdue first.
    pub async fn due_retention_policies(&self, now: i64, limit: i64) -> Result<Vec<DueRetention>> {
        let rows = sqlx::query(
            "SELECT p.project_id, pr.name, p.next_run_at FROM retention_policies p \
             JOIN projects pr ON pr.id = p.project_id \
             WHERE p.next_run_at IS NOT NULL AND p.next_run_at <= $1 \
             ORDER BY p.next_run_at, p.project_id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(writer(self))
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueRetention {
                    project_id: r.try_get(0)?,
                    project: r.try_get(1)?,
                    next_run_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Moves a due schedule from `due` to `next` (`None`: no further run).
    /// True for the one caller whose update won; false when another node
    /// already took this period, or the policy changed meanwhile.
    pub async fn advance_retention_schedule(
        &self,
        project_id: i64,
        due: i64,
        next: Option<i64>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE retention_policies SET next_run_at = $3 WHERE project_id = $1 AND next_run_at = $2",
        )
        .bind(project_id)
        .bind(due)
        .bind(next)
        .execute(writer(self))
        .await?;
        Ok(done.rows_affected() == 1)
    }

    // -- Executions -----------------------------------------------------------

    /// Records a run as running; returns its id.
    pub async fn insert_retention_execution(&self, new: NewRetentionExecution<'_>) -> Result<i64> {
        let now = now_millis();
        let row = sqlx::query(
            "INSERT INTO retention_executions (project_id, trigger_kind, dry_run, status, actor, rules, \
             started_at, updated_at) VALUES ($1, $2, $3, 'running', $4, $5, $6, $6) RETURNING id",
        )
        .bind(new.project_id)
        .bind(new.trigger)
        .bind(i64::from(new.dry_run))
        .bind(new.actor)
        .bind(new.rules)
        .bind(now)
        .fetch_one(writer(self))
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Adds a run's items in one transaction and marks the run as alive.
    pub async fn add_retention_items(
        &self,
        execution_id: i64,
        items: &[RetentionItemRow],
    ) -> Result<()> {
        let mut tx = writer(self).begin().await?;
        for item in items {
            sqlx::query(
                "INSERT INTO retention_execution_items (execution_id, seq, repo, digest, tags, action, \
                 outcome, rules, reason, pushed_at, pulled_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(execution_id)
            .bind(item.seq)
            .bind(&item.repo)
            .bind(&item.digest)
            .bind(&item.tags)
            .bind(&item.action)
            .bind(&item.outcome)
            .bind(&item.rules)
            .bind(&item.reason)
            .bind(item.pushed_at)
            .bind(item.pulled_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE retention_executions SET updated_at = $2 WHERE id = $1")
            .bind(execution_id)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records how a run ended, then keeps only the project's latest
    /// [`KEPT_EXECUTIONS`] runs.
    pub async fn finish_retention_execution(
        &self,
        execution_id: i64,
        succeeded: bool,
        counts: RetentionCounts,
        error: Option<&str>,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = writer(self).begin().await?;
        let row = sqlx::query(
            "UPDATE retention_executions SET status = $2, artifacts = $3, retained = $4, deleted = $5, \
             errors = $6, error = $7, finished_at = $8, updated_at = $8 WHERE id = $1 RETURNING project_id",
        )
        .bind(execution_id)
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(counts.artifacts)
        .bind(counts.retained)
        .bind(counts.deleted)
        .bind(counts.errors)
        .bind(error)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let project_id: i64 = row.try_get(0)?;
            let cutoff = sqlx::query(
                "SELECT id FROM retention_executions WHERE project_id = $1 \
                 ORDER BY id DESC LIMIT 1 OFFSET $2",
            )
            .bind(project_id)
            .bind(KEPT_EXECUTIONS)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(cutoff) = cutoff {
                let cutoff: i64 = cutoff.try_get(0)?;
                // Items first: SQLite enforces the cascade only with the
                // foreign_keys pragma, which another opener may not set.
                sqlx::query(
                    "DELETE FROM retention_execution_items WHERE execution_id IN \
                     (SELECT id FROM retention_executions WHERE project_id = $1 AND id <= $2)",
                )
                .bind(project_id)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM retention_executions WHERE project_id = $1 AND id <= $2")
                    .bind(project_id)
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks runs that stopped making progress before `stale_before` (their
    /// node died) as failed. Returns how many.
    pub async fn fail_stale_retention_executions(&self, stale_before: i64) -> Result<u64> {
        let now = now_millis();
        let done = sqlx::query(
            "UPDATE retention_executions SET status = 'failed', \
             error = 'interrupted: the node running it stopped', finished_at = $2, updated_at = $2 \
             WHERE status = 'running' AND updated_at < $1",
        )
        .bind(stale_before)
        .bind(now)
        .execute(writer(self))
        .await?;
        Ok(done.rows_affected())
    }

    /// A project's runs, newest first, with ids below `before`.
    pub async fn retention_executions(
        &self,
        project_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RetentionExecutionRow>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM retention_executions \
             WHERE project_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(writer(self))
            .await?;
        rows.iter().map(execution_row).collect()
    }

    pub async fn retention_execution(
        &self,
        project_id: i64,
        id: i64,
    ) -> Result<Option<RetentionExecutionRow>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM retention_executions WHERE project_id = $1 AND id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(id)
            .fetch_optional(writer(self))
            .await?;
        row.as_ref().map(execution_row).transpose()
    }

    /// A run's items in order, after `after` (a `seq`), at most `limit`.
    pub async fn retention_execution_items(
        &self,
        execution_id: i64,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RetentionItemRow>> {
        let rows = sqlx::query(
            "SELECT seq, repo, digest, tags, action, outcome, rules, reason, pushed_at, pulled_at \
             FROM retention_execution_items WHERE execution_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(execution_id)
        .bind(after.unwrap_or(-1))
        .bind(limit)
        .fetch_all(writer(self))
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RetentionItemRow {
                    seq: r.try_get(0)?,
                    repo: r.try_get(1)?,
                    digest: r.try_get(2)?,
                    tags: r.try_get(3)?,
                    action: r.try_get(4)?,
                    outcome: r.try_get(5)?,
                    rules: r.try_get(6)?,
                    reason: r.try_get(7)?,
                    pushed_at: r.try_get(8)?,
                    pulled_at: r.try_get(9)?,
                })
            })
            .collect()
    }

    // -- Artifacts ------------------------------------------------------------

    /// The repositories of `project` that hold at least one manifest, in
    /// byte order: `project/…`, plus the single-segment names for
    /// `library`.
    pub async fn project_repositories(&self, project: &str) -> Result<Vec<String>> {
        // Repository names sort as bytes; `0` follows `/`.
        let rows = sqlx::query(
            "SELECT r.name FROM repositories r \
             WHERE ((r.name > $1 AND r.name < $2) OR ($3 = 1 AND r.name NOT LIKE '%/%')) \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo = r.name) ORDER BY r.name",
        )
        .bind(format!("{project}/"))
        .bind(format!("{project}0"))
        .bind(i64::from(project == "library"))
        .fetch_all(reader(self))
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The tags pointing at `digest` in `repo` now, by name; `None` when
    /// the manifest is not there (any more).
    pub async fn artifact_tags(&self, repo: &str, digest: &str) -> Result<Option<Vec<String>>> {
        let read = reader(self);
        let exists = sqlx::query("SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo)
            .bind(digest)
            .fetch_optional(read)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows =
            sqlx::query("SELECT name FROM tags WHERE repo = $1 AND digest = $2 ORDER BY name")
                .bind(repo)
                .bind(digest)
                .fetch_all(read)
                .await?;
        rows.iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect::<Result<Vec<String>>>()
            .map(Some)
    }

    /// Up to `limit` artifacts of `repo` after the digest `after`, in digest
    /// order, with their tags and pull statistics.
    pub async fn artifacts(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ArtifactRow>> {
        let read = reader(self);
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.artifact_type, \
             m.size + CAST(COALESCE((SELECT SUM(b.size) FROM manifest_refs r \
               JOIN blobs b ON b.digest = r.child_digest WHERE r.repo = m.repo \
               AND r.manifest_digest = m.digest AND r.kind = 'blob'), 0) AS BIGINT), \
             m.created_at, m.subject, \
             p.pull_count, p.last_pulled_at, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo \
               AND r.child_digest = m.digest AND r.kind = 'manifest') THEN 1 ELSE 0 END AS BIGINT), \
             CAST(CASE WHEN m.subject IS NOT NULL AND EXISTS (SELECT 1 FROM manifests s \
               WHERE s.repo = m.repo AND s.digest = m.subject) THEN 1 ELSE 0 END AS BIGINT) \
             FROM manifests m LEFT JOIN artifact_pulls p ON p.repo = m.repo AND p.digest = m.digest \
             WHERE m.repo = $1 AND m.digest > $2 ORDER BY m.digest LIMIT $3",
        )
        .bind(repo)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(ArtifactRow {
                repo: repo.to_string(),
                digest: r.try_get(0)?,
                media_type: r.try_get(1)?,
                artifact_type: r.try_get(2)?,
                size: r.try_get(3)?,
                created_at: r.try_get(4)?,
                subject: r.try_get(5)?,
                tags: Vec::new(),
                pull_count: r.try_get::<Option<i64>, _>(6)?.unwrap_or(0),
                last_pulled_at: r.try_get(7)?,
                in_index: r.try_get::<i64, _>(8)? != 0,
                subject_present: r.try_get::<i64, _>(9)? != 0,
            });
        }
        let (Some(first), Some(last)) = (out.first(), out.last()) else {
            return Ok(out);
        };
        let tags = sqlx::query(
            "SELECT digest, name, updated_at FROM tags \
             WHERE repo = $1 AND digest >= $2 AND digest <= $3 ORDER BY name",
        )
        .bind(repo)
        .bind(&first.digest)
        .bind(&last.digest)
        .fetch_all(read)
        .await?;
        let index: std::collections::HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, a)| (a.digest.clone(), i))
            .collect();
        for t in &tags {
            let digest: String = t.try_get(0)?;
            if let Some(&i) = index.get(&digest) {
                out[i].tags.push(TagPush {
                    name: t.try_get(1)?,
                    pushed_at: t.try_get(2)?,
                });
            }
        }
        Ok(out)
    }
}

fn execution_row(r: &sqlx::any::AnyRow) -> Result<RetentionExecutionRow> {
    let trigger: String = r.try_get(2)?;
    if trigger != "manual" && trigger != "schedule" {
        return Err(Error::Corrupt(format!("retention trigger {trigger:?}")));
    }
    Ok(RetentionExecutionRow {
        id: r.try_get(0)?,
        project_id: r.try_get(1)?,
        trigger,
        dry_run: r.try_get::<i64, _>(3)? != 0,
        status: r.try_get(4)?,
        actor: r.try_get(5)?,
        rules: r.try_get(6)?,
        counts: RetentionCounts {
            artifacts: r.try_get(7)?,
            retained: r.try_get(8)?,
            deleted: r.try_get(9)?,
            errors: r.try_get(10)?,
        },
        error: r.try_get(11)?,
        started_at: r.try_get(12)?,
        updated_at: r.try_get(13)?,
        finished_at: r.try_get(14)?,
    })
}
