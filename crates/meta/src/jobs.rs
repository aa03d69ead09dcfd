//! The durable job queue (`jobs`), the cluster-wide periodic schedules
//! (`job_schedules`) and the upload reaper's queries.
//!
//! Every node of a cluster polls the same tables, so each statement here is
//! written to be safe when several nodes run it at once:
//! - a claim hands a job to exactly one node, under a lease
//!   (`locked_by`, `locked_until`): on PostgreSQL with `SELECT … FOR UPDATE
//!   SKIP LOCKED` in a transaction, on SQLite (one writer) with a single
//!   `UPDATE … WHERE id = (SELECT …) RETURNING`;
//! - a node that dies mid-job stops renewing its lease; once it has run out,
//!   another node re-claims the job (one more attempt);
//! - outcomes are fenced by node and attempt, so a node whose lease was
//!   taken over cannot overwrite the new holder's result;
//! - a periodic kind enqueues one job per period for the whole cluster: the
//!   node whose conditional `UPDATE … WHERE next_run_at = $old` changes the
//!   schedule row is the one that enqueues it.
//!
//! Time is the caller's `now` (milliseconds since the epoch) so that leases
//! and schedules can be tested without sleeping; nodes are assumed to have
//! clocks that agree to well within a lease.
//!
//! This module decides nothing about what a job does or when to retry: that
//! is the `berth-jobs` runner's.

use sqlx::{AssertSqlSafe, Row};

use crate::store::is_postgres;
use crate::{Error, MetaStore, Result, now_millis};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for `not_before`, then for a node to claim it.
    Queued,
    /// Claimed by `locked_by` until `locked_until`.
    Running,
    Done,
    /// Gave up after `max_attempts`; `last_error` says why.
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<JobStatus> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            other => return Err(Error::Corrupt(format!("job status {other:?}"))),
        })
    }
}

/// A job one node holds under a lease. Only the holder of this claim (this
/// node, this attempt) can extend it or record the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    /// 1 on the first claim; every re-claim (after a failure or an expired
    /// lease) adds one.
    pub attempt: i64,
    pub max_attempts: i64,
    /// The claiming node.
    pub node: String,
    pub locked_until: i64,
}

/// A row of `jobs`, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub status: JobStatus,
    pub attempts: i64,
    pub max_attempts: i64,
    pub not_before: i64,
    pub locked_by: Option<String>,
    pub locked_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What one due schedule gave: the period it stands for, and the job
/// enqueued for it (`None` when the previous period's job was still
/// unfinished, so this period was folded into it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRun {
    pub kind: String,
    /// The `next_run_at` this node advanced past.
    pub scheduled_for: i64,
    pub job: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub kind: String,
    pub period_ms: i64,
    pub next_run_at: i64,
}

/// An upload session nobody has touched since `updated_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleUpload {
    pub id: String,
    pub repo: String,
    pub updated_at: i64,
}

const JOB_COLUMNS: &str = "id, kind, payload, status, attempts, max_attempts, not_before, \
     locked_by, locked_until, last_error, created_at, updated_at";

/// The claim's fence: the job is still running under this node and attempt.
const FENCE: &str = "id = $1 AND status = 'running' AND locked_by = $2 AND attempts = $3";

/// The condition of a claimable job: `$1` is now; the kinds are bound from
/// `$first` on. A running job whose lease ran out is claimable again while
/// it has attempts left.
fn claimable(first: usize, kinds: usize) -> String {
    let list = (first..first + kinds)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "kind IN ({list}) AND ((status = 'queued' AND not_before <= $1) \
         OR (status = 'running' AND locked_until < $1 AND attempts < max_attempts))"
    )
}

impl MetaStore {
    /// Adds a job that may run from `not_before` on; returns its id.
    pub async fn enqueue_job(
        &self,
        kind: &str,
        payload: &str,
        not_before: i64,
        max_attempts: i64,
    ) -> Result<i64> {
        let (write, _) = self.pools();
        let row = sqlx::query(
            "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, not_before, created_at, updated_at) \
             VALUES ($1, $2, 'queued', 0, $3, $4, $5, $5) RETURNING id",
        )
        .bind(kind)
        .bind(payload)
        .bind(max_attempts.max(1))
        .bind(not_before)
        .bind(now_millis())
        .fetch_one(write)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Claims the oldest due job of one of `kinds` for `node` until
    /// `now + lease_ms`, or `None` when there is none. Running jobs whose
    /// lease expired with no attempts left are marked failed on the way.
    pub async fn claim_job(
        &self,
        node: &str,
        kinds: &[&str],
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<ClaimedJob>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let (write, _) = self.pools();
        sqlx::query(
            "UPDATE jobs SET status = 'failed', locked_by = NULL, locked_until = NULL, updated_at = $1, \
             last_error = 'the lease of ' || locked_by || ' expired on the last attempt' \
             WHERE status = 'running' AND locked_until < $1 AND attempts >= max_attempts",
        )
        .bind(now)
        .execute(write)
        .await?;
        let until = now + lease_ms;
        // `last_error` keeps why the previous attempt ended: a lease that ran
        // out means its node died or lost the database.
        let set = "SET status = 'running', attempts = attempts + 1, locked_by = $2, \
                   locked_until = $3, updated_at = $1, last_error = CASE WHEN status = 'running' \
                   THEN 'the lease of ' || locked_by || ' expired' ELSE last_error END";
        let returning = "RETURNING id, kind, payload, attempts, max_attempts";
        let row = if is_postgres(write) {
            // SKIP LOCKED: concurrent claimers each take a different row
            // instead of queueing on the first one.
            let mut tx = write.begin().await?;
            let sql = format!(
                "SELECT id FROM jobs WHERE {} ORDER BY not_before, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                claimable(2, kinds.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for kind in kinds {
                query = query.bind(*kind);
            }
            let Some(found) = query.fetch_optional(&mut *tx).await? else {
                return Ok(None);
            };
            let id: i64 = found.try_get(0)?;
            let sql = format!("UPDATE jobs {set} WHERE id = $4 {returning}");
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(now)
                .bind(node)
                .bind(until)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        } else {
            // SQLite has one writer: the statement runs alone, so the row the
            // subquery picks cannot be claimed by anyone in between.
            let sql = format!(
                "UPDATE jobs {set} WHERE id = (SELECT id FROM jobs WHERE {} \
                 ORDER BY not_before, id LIMIT 1) {returning}",
                claimable(4, kinds.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .bind(now)
                .bind(node)
                .bind(until);
            for kind in kinds {
                query = query.bind(*kind);
            }
            let Some(row) = query.fetch_optional(write).await? else {
                return Ok(None);
            };
            row
        };
        Ok(Some(ClaimedJob {
            id: row.try_get(0)?,
            kind: row.try_get(1)?,
            payload: row.try_get(2)?,
            attempt: row.try_get(3)?,
            max_attempts: row.try_get(4)?,
            node: node.to_string(),
            locked_until: until,
        }))
    }

    /// Moves the lease's end to `until`. False when the claim is no longer
    /// this node's (its lease ran out and another node took the job).
    pub async fn extend_job_lease(&self, job: &mut ClaimedJob, until: i64) -> Result<bool> {
        let (write, _) = self.pools();
        let sql = format!("UPDATE jobs SET locked_until = $4, updated_at = $5 WHERE {FENCE}");
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(job.id)
            .bind(&job.node)
            .bind(job.attempt)
            .bind(until)
            .bind(now_millis())
            .execute(write)
            .await?;
        let held = done.rows_affected() == 1;
        if held {
            job.locked_until = until;
        }
        Ok(held)
    }

    /// Records success. False when the claim was no longer this node's, in
    /// which case nothing is recorded.
    pub async fn complete_job(&self, job: &ClaimedJob) -> Result<bool> {
        let (write, _) = self.pools();
        let sql = format!(
            "UPDATE jobs SET status = 'done', locked_by = NULL, locked_until = NULL, updated_at = $4 \
             WHERE {FENCE}"
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(job.id)
            .bind(&job.node)
            .bind(job.attempt)
            .bind(now_millis())
            .execute(write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt: the job is queued again from `retry_at`, or
    /// failed for good when it has used its attempts. Returns the new status,
    /// `None` when the claim was no longer this node's.
    pub async fn fail_job(
        &self,
        job: &ClaimedJob,
        error: &str,
        retry_at: i64,
    ) -> Result<Option<JobStatus>> {
        let (write, _) = self.pools();
        let sql = format!(
            "UPDATE jobs SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, \
             not_before = $5, last_error = $4, locked_by = NULL, locked_until = NULL, updated_at = $6 \
             WHERE {FENCE} RETURNING status"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(job.id)
            .bind(&job.node)
            .bind(job.attempt)
            .bind(error)
            .bind(retry_at)
            .bind(now_millis())
            .fetch_optional(write)
            .await?;
        row.map(|r| JobStatus::parse(&r.try_get::<String, _>(0)?))
            .transpose()
    }

    /// Gives a claimed job back without counting the attempt (the node is
    /// shutting down): any node may claim it at once. False when the claim
    /// was no longer this node's.
    pub async fn release_job(&self, job: &ClaimedJob) -> Result<bool> {
        let (write, _) = self.pools();
        let now = now_millis();
        let sql = format!(
            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, not_before = $4, \
             locked_by = NULL, locked_until = NULL, updated_at = $4 WHERE {FENCE}"
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(job.id)
            .bind(&job.node)
            .bind(job.attempt)
            .bind(now)
            .execute(write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRow>> {
        let (write, _) = self.pools();
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(write)
            .await?;
        row.as_ref().map(job_row).transpose()
    }

    /// The jobs of `kind`, oldest first, at most `limit`.
    pub async fn jobs(&self, kind: &str, limit: i64) -> Result<Vec<JobRow>> {
        let (write, _) = self.pools();
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE kind = $1 ORDER BY id LIMIT $2");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(kind)
            .bind(limit)
            .fetch_all(write)
            .await?;
        rows.iter().map(job_row).collect()
    }

    /// Deletes finished (done or failed) jobs last updated before `before`.
    pub async fn prune_jobs(&self, before: i64) -> Result<u64> {
        let (write, _) = self.pools();
        let done =
            sqlx::query("DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_at < $1")
                .bind(before)
                .execute(write)
                .await?;
        Ok(done.rows_affected())
    }

    /// Makes `kind` run every `period_ms` in the cluster, first at
    /// `now + period_ms` unless a schedule exists. A changed period replaces
    /// the stored one, and a shorter one takes effect within one period.
    pub async fn ensure_job_schedule(&self, kind: &str, period_ms: i64, now: i64) -> Result<()> {
        let (write, _) = self.pools();
        let period_ms = period_ms.max(1);
        sqlx::query(
            "INSERT INTO job_schedules (kind, period_ms, next_run_at, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind) DO UPDATE SET period_ms = excluded.period_ms, \
             next_run_at = CASE WHEN job_schedules.next_run_at > excluded.next_run_at \
             THEN excluded.next_run_at ELSE job_schedules.next_run_at END, updated_at = excluded.updated_at \
             WHERE job_schedules.period_ms <> excluded.period_ms",
        )
        .bind(kind)
        .bind(period_ms)
        .bind(now + period_ms)
        .bind(now)
        .execute(write)
        .await?;
        Ok(())
    }

    pub async fn job_schedule(&self, kind: &str) -> Result<Option<ScheduleRow>> {
        let (write, _) = self.pools();
        let row =
            sqlx::query("SELECT kind, period_ms, next_run_at FROM job_schedules WHERE kind = $1")
                .bind(kind)
                .fetch_optional(write)
                .await?;
        row.map(|r| {
            Ok(ScheduleRow {
                kind: r.try_get(0)?,
                period_ms: r.try_get(1)?,
                next_run_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// For each schedule of `kinds` that is due at `now`, tries to advance it
    /// to its first slot after `now`; the node whose update wins enqueues the
    /// period's job (payload `{"scheduled_for":MILLIS}`), in the same
    /// transaction, unless one of that kind is still unfinished. Returns what
    /// this node won; losers get nothing, so each period runs once.
    pub async fn enqueue_due_jobs(
        &self,
        kinds: &[&str],
        now: i64,
        max_attempts: i64,
    ) -> Result<Vec<ScheduledRun>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let (write, read) = self.pools();
        let list = (2..2 + kinds.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT kind, period_ms, next_run_at FROM job_schedules \
             WHERE next_run_at <= $1 AND kind IN ({list})"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for kind in kinds {
            query = query.bind(*kind);
        }
        let due = query.fetch_all(read).await?;
        let mut won = Vec::new();
        for row in due {
            let kind: String = row.try_get(0)?;
            let period: i64 = row.try_get::<i64, _>(1)?.max(1);
            let old: i64 = row.try_get(2)?;
            // The first slot after now, in the schedule's phase: a cluster that
            // was down for several periods runs once, not once per period missed.
            let next = old + period * ((now - old) / period + 1);
            let mut tx = write.begin().await?;
            let advanced = sqlx::query(
                "UPDATE job_schedules SET next_run_at = $3, updated_at = $4 \
                 WHERE kind = $1 AND next_run_at = $2",
            )
            .bind(&kind)
            .bind(old)
            .bind(next)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if advanced.rows_affected() != 1 {
                continue;
            }
            let pending = sqlx::query(
                "SELECT 1 FROM jobs WHERE kind = $1 AND status IN ('queued', 'running') LIMIT 1",
            )
            .bind(&kind)
            .fetch_optional(&mut *tx)
            .await?;
            let job = match pending {
                Some(_) => None,
                None => {
                    let row = sqlx::query(
                        "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, not_before, created_at, updated_at) \
                         VALUES ($1, $2, 'queued', 0, $3, $4, $4, $4) RETURNING id",
                    )
                    .bind(&kind)
                    .bind(format!("{{\"scheduled_for\":{old}}}"))
                    .bind(max_attempts.max(1))
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    Some(row.try_get(0)?)
                }
            };
            tx.commit().await?;
            won.push(ScheduledRun {
                kind,
                scheduled_for: old,
                job,
            });
        }
        Ok(won)
    }

    // -- Upload reaping ------------------------------------------------------

    /// Upload sessions last touched before `idle_since`, stalest first.
    pub async fn idle_uploads(&self, idle_since: i64, limit: i64) -> Result<Vec<IdleUpload>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(
            "SELECT id, repo, updated_at FROM uploads WHERE updated_at < $1 \
             ORDER BY updated_at, id LIMIT $2",
        )
        .bind(idle_since)
        .bind(limit)
        .fetch_all(read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IdleUpload {
                    id: r.try_get(0)?,
                    repo: r.try_get(1)?,
                    updated_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Deletes a session only if nobody touched it since the reaper read
    /// `updated_at`. False when it was touched, or already gone (another
    /// node reaped, finished or cancelled it).
    pub async fn delete_idle_upload(&self, id: &str, updated_at: i64) -> Result<bool> {
        let (write, _) = self.pools();
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1 AND updated_at = $2")
            .bind(id)
            .bind(updated_at)
            .execute(write)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn job_row(r: &sqlx::any::AnyRow) -> Result<JobRow> {
    Ok(JobRow {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        payload: r.try_get(2)?,
        status: JobStatus::parse(&r.try_get::<String, _>(3)?)?,
        attempts: r.try_get(4)?,
        max_attempts: r.try_get(5)?,
        not_before: r.try_get(6)?,
        locked_by: r.try_get(7)?,
        locked_until: r.try_get(8)?,
        last_error: r.try_get(9)?,
        created_at: r.try_get(10)?,
        updated_at: r.try_get(11)?,
    })
}
