//! Reaping abandoned upload sessions: rows untouched for longer than a TTL
//! are deleted, then their bytes are removed from the store.
//!
//! Safe when several nodes reap at once and when a client comes back to a
//! session at the moment it is reaped:
//! - a session is deleted only if its `updated_at` is still the value the
//!   reaper read, and every chunk and finishing `PUT` first moves
//!   `updated_at` (`Tx::keep_upload_alive`), so whichever commits
//!   first wins: the client's request answers `BLOB_UPLOAD_UNKNOWN` before
//!   writing a byte, or the reaper leaves the session alone;
//! - a request on a session moved less than `Options::upload_keepalive`
//!   ago (a PUT right after its POST) skips that write: the reaper will not
//!   take the session for another TTL minus the keepalive, which the server
//!   sets to a quarter of the TTL, so that margin outlasts the request as
//!   the TTL itself did;
//! - only the node whose delete removed the row removes the bytes;
//! - a session with a request in flight on this node is skipped.
//!
//! The row goes first, then the bytes (STYLE §9.8): a crash in between
//! leaves orphaned bytes for the orphan sweep, never a row without bytes.
//! Deciding when to run is the job runner's (`berth-jobs`), not this module's.

use std::time::Duration;

use berth_meta::now_millis;

use crate::{Registry, Result};

/// What one reaping pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Sessions idle for longer than the TTL when the reaper looked.
    pub expired: u64,
    /// Sessions deleted, with their bytes.
    pub reaped: u64,
    /// Sessions left alone: touched since, busy on this node, or already
    /// gone (finished, cancelled, or reaped by another node).
    pub skipped: u64,
    /// Sessions deleted whose bytes the store failed to remove (logged; the
    /// bytes are orphans now).
    pub store_errors: u64,
}

impl Registry {
    /// Reaps up to `limit` sessions untouched for longer than `older_than`,
    /// stalest first. A report with `expired == limit` means there may be
    /// more.
    pub async fn reap_uploads(&self, older_than: Duration, limit: u64) -> Result<ReapReport> {
        let cutoff = now_millis().saturating_sub(older_than.as_millis() as i64);
        let idle = self
            .inner
            .meta
            .idle_uploads(cutoff, limit.min(i64::MAX as u64) as i64)
            .await?;
        let mut report = ReapReport {
            expired: idle.len() as u64,
            ..ReapReport::default()
        };
        for upload in idle {
            // A request holding the session's lock on this node is using it
            // right now (a chunk can stream for longer than a short TTL).
            if self.inner.uploads.busy(&upload.id) {
                report.skipped += 1;
                continue;
            }
            if !self
                .inner
                .meta
                .delete_idle_upload(&upload.id, upload.updated_at)
                .await?
            {
                report.skipped += 1;
                continue;
            }
            self.inner.uploads.forget(&upload.id);
            metrics::gauge!("berth_uploads_in_progress").decrement(1.0);
            match self.inner.store.upload_abort(&upload.id).await {
                Ok(()) => report.reaped += 1,
                Err(e) => {
                    report.store_errors += 1;
                    tracing::warn!(upload = %upload.id, repo = %upload.repo, error = %e,
                        "reaped upload session but could not remove its bytes");
                }
            }
        }
        metrics::counter!("berth_uploads_reaped_total").increment(report.reaped);
        Ok(report)
    }
}
