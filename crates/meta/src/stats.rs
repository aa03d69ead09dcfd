//! Pull statistics per artifact (repository, manifest digest): how often
//! and when it was last pulled (issue 5, scope 7).
//!
//! Pulls are counted in memory by the core and added here in batches, one
//! transaction per batch, so a pull never waits for a write. Counts add up
//! (several nodes flush their own counts) and the last pull time only moves
//! forward. A manifest deleted before its pulls are flushed takes nothing:
//! the row is written only while the manifest exists, and goes with it.

use sqlx::Row;

use crate::{MetaStore, Result};

/// Pulls of one artifact counted since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullDelta {
    pub repo: String,
    pub digest: String,
    pub count: u64,
    /// The latest of those pulls, milliseconds since the epoch.
    pub last_pulled_at: i64,
}

/// What the database holds about an artifact's pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullStats {
    pub pull_count: i64,
    pub last_pulled_at: i64,
}

impl MetaStore {
    /// Adds `deltas` in one transaction. Returns how many artifacts were
    /// updated (those whose manifest no longer exists are dropped).
    pub async fn record_pulls(&self, deltas: &[PullDelta]) -> Result<u64> {
        if deltas.is_empty() {
            return Ok(0);
        }
        let (write, _) = self.pools();
        let mut tx = write.begin().await?;
        let mut updated = 0;
        for d in deltas {
            // `WHERE EXISTS` keeps the foreign key satisfied when the
            // manifest was deleted since the pull (and disambiguates SQLite's
            // INSERT … SELECT … ON CONFLICT).
            let done = sqlx::query(
                "INSERT INTO artifact_pulls (repo, digest, pull_count, last_pulled_at) \
                 SELECT $1, $2, $3, $4 \
                 WHERE EXISTS (SELECT 1 FROM manifests m WHERE m.repo = $1 AND m.digest = $2) \
                 ON CONFLICT (repo, digest) DO UPDATE SET \
                 pull_count = artifact_pulls.pull_count + excluded.pull_count, \
                 last_pulled_at = CASE WHEN excluded.last_pulled_at > artifact_pulls.last_pulled_at \
                 THEN excluded.last_pulled_at ELSE artifact_pulls.last_pulled_at END",
            )
            .bind(&d.repo)
            .bind(&d.digest)
            .bind(d.count.min(i64::MAX as u64) as i64)
            .bind(d.last_pulled_at)
            .execute(&mut *tx)
            .await?;
            updated += done.rows_affected();
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// The pull statistics of one artifact, `None` when never pulled (or
    /// not flushed yet).
    pub async fn pull_stats(&self, repo: &str, digest: &str) -> Result<Option<PullStats>> {
        let (_, read) = self.pools();
        let row = sqlx::query(
            "SELECT pull_count, last_pulled_at FROM artifact_pulls WHERE repo = $1 AND digest = $2",
        )
        .bind(repo)
        .bind(digest)
        .fetch_optional(read)
        .await?;
        row.map(|r| {
            Ok(PullStats {
                pull_count: r.try_get(0)?,
                last_pulled_at: r.try_get(1)?,
            })
        })
        .transpose()
    }
}
