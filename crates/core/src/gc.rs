//! Online garbage collection (DESIGN.md, data rule 5): mark-and-sweep in the
//! metadata database while the registry serves, never read-only, never
//! listing the store to decide what is live.
//!
//! One run, in order:
//! 1. trash entries older than the restore window are purged (until then
//!    they count as references: their blobs and child manifests stay);
//! 2. with `delete_untagged`, untagged manifests older than the grace that
//!    no index (live or trashed) references, that are not the subject of a
//!    live referrer and that are not referrers of a present subject;
//! 3. links older than the grace that nothing in their repository
//!    references (live or trashed);
//! 4. blobs with no link and no reference anywhere (rows and objects);
//! 5. a bounded orphan sweep: at most `orphan_batch` store keys, from a
//!    persisted cursor, that have no row (crash leftovers).
//!
//! Each untagged manifest a run deletes (for good: it does not go to the
//! trash) is recorded in the audit log once the run is in the history: an
//! `artifact.delete` by the actor [`GC_ACTOR`] (kind `system`) whose
//! details name the run's id and trigger. Through the registry's auditor
//! when it has one (`berth serve`), otherwise (`berth gc`) straight into
//! the `audit_log` table.
//!
//! # The protocol with pushes
//!
//! Every deletion runs in its own transaction holding the digest's lock
//! exclusively (`berth_meta::Tx::lock_digests`: `pg_advisory_xact_lock` on
//! PostgreSQL, the single write transaction on SQLite) and re-checks its
//! condition there. An upload commit takes the same lock exclusively
//! *before* the store makes the bytes visible, then inserts the row and
//! the link; manifest pushes, mounts and restores take it shared for every
//! digest they check. So for one digest, "GC deletes the row and the
//! object" and "an upload makes the bytes visible and inserts the row"
//! never interleave, and a manifest push either commits first (GC then
//! sees the reference and keeps the blob) or checks after GC committed
//! (and answers `MANIFEST_BLOB_UNKNOWN`: the client uploads again).
//!
//! A blob is deleted as: commit the link removal (one transaction), then
//! in a second one re-check "no link, no reference", delete the row,
//! delete the object, commit. A crash between the object delete and the
//! commit leaves a row without bytes, but only for a blob no link and no
//! manifest names: nothing can read it or reference it (both need a
//! link), the next upload of the digest writes the bytes again (the store
//! checks for the object under the lock) and the next run deletes the
//! row. A blob `HEAD` also asks the store, so it never says "present" for
//! bytes that are gone.

use std::collections::HashSet;
use std::time::{Duration, Instant, UNIX_EPOCH};

use berth_meta::{GcRunRow, now_millis};
use berth_oci::{Digest, RepoName};

use crate::access::{AuditEvent, project_of};
use crate::{Error, Registry, Result};

/// The audit log's actor for the manifests garbage collection deletes.
pub const GC_ACTOR: &str = "gc";

/// Candidates read per query.
const BATCH: i64 = 500;
/// Passes over untagged manifests per run: deleting an index can leave
/// its children untagged and unreferenced for the next pass.
const MANIFEST_PASSES: usize = 8;
/// `gc_state` row holding the orphan sweep's position in the store.
const ORPHAN_CURSOR: &str = "orphan_cursor";

/// How garbage collection and the restore window behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// A link, untagged manifest or orphaned object must be at least this
    /// old before GC may collect it.
    pub grace: Duration,
    /// Deleted manifests and tags stay restorable (and keep what they
    /// reference) this long.
    pub restore_window: Duration,
    /// Collect untagged manifests nothing references.
    pub delete_untagged: bool,
    /// Store keys the orphan sweep lists per run (0: no sweep).
    pub orphan_batch: u64,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            grace: Duration::from_secs(3600),
            restore_window: Duration::from_secs(7 * 24 * 3600),
            delete_untagged: false,
            orphan_batch: 1000,
        }
    }
}

/// What one run did, or (dry) would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The run's id in the history (`gc_runs`).
    pub id: i64,
    /// `schedule`, `api` or `cli`.
    pub trigger: String,
    pub dry_run: bool,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    pub finished_at: i64,
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
    pub manifests_deleted: u64,
    pub links_removed: u64,
    pub trash_purged: u64,
    /// Store objects without a row removed by the orphan sweep.
    pub orphans_deleted: u64,
    pub orphan_bytes: u64,
    /// Why the run stopped early (what it did until then is counted).
    pub error: Option<String>,
}

impl GcReport {
    pub fn duration(&self) -> Duration {
        Duration::from_millis((self.finished_at - self.started_at).max(0) as u64)
    }

    fn from_row(r: GcRunRow) -> GcReport {
        GcReport {
            id: r.id,
            trigger: r.trigger,
            dry_run: r.dry_run,
            started_at: r.started_at,
            finished_at: r.finished_at,
            blobs_deleted: r.blobs_deleted as u64,
            bytes_reclaimed: r.bytes_reclaimed as u64,
            manifests_deleted: r.manifests_deleted as u64,
            links_removed: r.links_removed as u64,
            trash_purged: r.trash_purged as u64,
            orphans_deleted: r.orphans_deleted as u64,
            orphan_bytes: r.orphan_bytes as u64,
            error: r.error,
        }
    }

    fn to_row(&self) -> GcRunRow {
        GcRunRow {
            id: self.id,
            trigger: self.trigger.clone(),
            dry_run: self.dry_run,
            started_at: self.started_at,
            finished_at: self.finished_at,
            blobs_deleted: self.blobs_deleted as i64,
            bytes_reclaimed: self.bytes_reclaimed as i64,
            manifests_deleted: self.manifests_deleted as i64,
            links_removed: self.links_removed as i64,
            trash_purged: self.trash_purged as i64,
            orphans_deleted: self.orphans_deleted as i64,
            orphan_bytes: self.orphan_bytes as i64,
            error: self.error.clone(),
        }
    }
}

/// Whether the run should stop early (shutdown, lost job lease).
pub type StopFlag<'a> = &'a (dyn Fn() -> bool + Send + Sync);

fn never() -> bool {
    false
}

impl Registry {
    /// The GC settings this registry was opened with.
    pub fn gc_options(&self) -> GcOptions {
        self.inner.options.gc
    }

    /// One GC run (see the module documentation), recorded in the run
    /// history. `trigger` says who asked (`schedule`, `api`, `cli`). Safe
    /// while pushes run and while other runs run (on other nodes too).
    pub async fn collect_garbage(&self, dry_run: bool, trigger: &str) -> Result<GcReport> {
        self.collect_garbage_until(dry_run, trigger, &never).await
    }

    /// [`Registry::collect_garbage`], stopping between steps when `stop`
    /// says so.
    pub async fn collect_garbage_until(
        &self,
        dry_run: bool,
        trigger: &str,
        stop: StopFlag<'_>,
    ) -> Result<GcReport> {
        let clock = Instant::now();
        let mut report = GcReport {
            trigger: trigger.to_string(),
            dry_run,
            started_at: now_millis(),
            ..GcReport::default()
        };
        let mut deleted = Vec::new();
        if let Err(e) = self.gc_pass(&mut report, &mut deleted, stop).await {
            tracing::warn!(error = %e, "garbage collection stopped early");
            report.error = Some(e.to_string());
        }
        report.finished_at = report.started_at + clock.elapsed().as_millis() as i64;
        let stored = self.inner.meta.insert_gc_run(&report.to_row()).await;
        if let Ok(id) = stored {
            report.id = id;
        }
        // Also when the history could not take the run: the deletions
        // happened.
        self.audit_gc_deletions(&report, &deleted).await;
        report.id = stored?;
        metrics::counter!("berth_gc_runs_total", "dry_run" => if dry_run { "true" } else { "false" })
            .increment(1);
        if !dry_run {
            metrics::counter!("berth_gc_blobs_deleted_total")
                .increment(report.blobs_deleted + report.orphans_deleted);
            metrics::counter!("berth_gc_bytes_reclaimed_total")
                .increment(report.bytes_reclaimed + report.orphan_bytes);
            metrics::counter!("berth_gc_manifests_deleted_total")
                .increment(report.manifests_deleted);
            metrics::counter!("berth_gc_links_removed_total").increment(report.links_removed);
            metrics::counter!("berth_gc_trash_purged_total").increment(report.trash_purged);
        }
        metrics::histogram!("berth_gc_duration_seconds").record(report.duration().as_secs_f64());
        Ok(report)
    }

    /// Past runs, newest first, with an id below `before` (all: `None`).
    pub async fn gc_runs(&self, before: Option<i64>, limit: usize) -> Result<Vec<GcReport>> {
        let rows = self
            .inner
            .meta
            .gc_runs(before.unwrap_or(i64::MAX), limit.clamp(1, 1000) as i64)
            .await?;
        Ok(rows.into_iter().map(GcReport::from_row).collect())
    }

    /// Records the untagged manifests a run deleted (`(repository,
    /// digest)`) in the audit log (see the module documentation). A failure
    /// to write is logged; it never fails the run.
    async fn audit_gc_deletions(&self, report: &GcReport, deleted: &[(String, String)]) {
        if deleted.is_empty() {
            return;
        }
        let run = if report.id > 0 {
            format!("garbage collection run {}", report.id)
        } else {
            "a garbage collection run (not in the history)".to_string()
        };
        let details = format!(
            "{run} ({}): untagged, referenced by nothing, older than the grace; deleted for good",
            report.trigger
        );
        let events = deleted.iter().map(|(repo, digest)| {
            let project = RepoName::parse(repo).ok();
            AuditEvent::by_system_actor(
                GC_ACTOR,
                "artifact.delete",
                format!("repository/{repo}@{digest}"),
                project.as_ref().map(project_of),
                &details,
            )
        });
        if let Some(auditor) = self.auditor() {
            for event in events {
                auditor.record(event);
            }
            return;
        }
        let write = crate::access::store_audit_now(&self.inner.meta, events.collect());
        if let Err(e) = write.await {
            tracing::error!(error = %e, manifests = deleted.len(),
                "recording garbage collection's deletions in the audit log failed");
        }
    }

    async fn gc_pass(
        &self,
        report: &mut GcReport,
        deleted: &mut Vec<(String, String)>,
        stop: StopFlag<'_>,
    ) -> Result<()> {
        let options = self.inner.options.gc;
        let now = now_millis();
        let cutoff = now - options.grace.as_millis() as i64;
        let trash_before = now - options.restore_window.as_millis() as i64;
        let meta = &self.inner.meta;

        // 1. The restore window is over for these.
        if report.dry_run {
            report.trash_purged = meta.expired_trash_count(trash_before).await?;
        } else {
            let mut tx = meta.begin().await?;
            report.trash_purged = tx.purge_trash(trash_before).await?;
            tx.commit().await?;
        }

        // 2. Untagged manifests.
        if options.delete_untagged {
            for _ in 0..MANIFEST_PASSES {
                let gone = self
                    .collect_manifests(report, deleted, cutoff, stop)
                    .await?;
                if report.dry_run || gone == 0 || stop() {
                    break;
                }
            }
        }
        if stop() {
            return Ok(());
        }

        // 3. Links nothing in their repository references.
        let mut after = (String::new(), String::new());
        loop {
            let page = meta
                .gc_link_candidates(cutoff, (&after.0, &after.1), BATCH)
                .await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            if report.dry_run {
                report.links_removed += page.len() as u64;
            } else {
                let mut digests: Vec<&str> = page.iter().map(|(d, _)| d.as_str()).collect();
                digests.dedup();
                for digest in digests {
                    let mut tx = meta.begin().await?;
                    tx.lock_digests(&[digest], true).await?;
                    let (removed, _) = tx.remove_unreferenced_links(digest, cutoff).await?;
                    tx.commit().await?;
                    report.links_removed += removed;
                }
            }
            if (page.len() as i64) < BATCH || stop() {
                break;
            }
            after = last;
        }

        // 4. Blobs with no link and no reference.
        let mut after = String::new();
        loop {
            let page = meta.gc_blob_candidates(cutoff, &after, BATCH).await?;
            let Some((last, _)) = page.last().cloned() else {
                break;
            };
            for (digest, size) in &page {
                if report.dry_run {
                    report.blobs_deleted += 1;
                    report.bytes_reclaimed += size;
                } else if let Some(size) = self.collect_blob(report, digest, cutoff).await? {
                    report.blobs_deleted += 1;
                    report.bytes_reclaimed += size;
                }
            }
            if (page.len() as i64) < BATCH || stop() {
                break;
            }
            after = last;
        }
        if stop() {
            return Ok(());
        }

        // 5. A bounded slice of the store: objects left without a row.
        self.sweep_orphans(report, cutoff).await
    }

    /// One pass over untagged manifests; returns how many went (dry: would
    /// go). Adds those that went to `gone`.
    async fn collect_manifests(
        &self,
        report: &mut GcReport,
        gone: &mut Vec<(String, String)>,
        cutoff: i64,
        stop: StopFlag<'_>,
    ) -> Result<u64> {
        let meta = &self.inner.meta;
        let mut deleted = 0;
        let mut after = (String::new(), String::new());
        loop {
            let page = meta
                .gc_manifest_candidates(cutoff, (&after.0, &after.1), BATCH)
                .await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for (repo, digest) in &page {
                if report.dry_run {
                    deleted += 1;
                    continue;
                }
                let mut tx = meta.begin().await?;
                tx.lock_digests(&[digest], true).await?;
                if tx.delete_untagged_manifest(repo, digest, cutoff).await? {
                    tx.commit().await?;
                    deleted += 1;
                    gone.push((repo.clone(), digest.clone()));
                    tracing::debug!(%repo, %digest, "GC deleted an untagged manifest");
                }
            }
            if (page.len() as i64) < BATCH || stop() {
                break;
            }
            after = last;
        }
        report.manifests_deleted += deleted;
        Ok(deleted)
    }

    /// Deletes one candidate blob if it still qualifies: its size when it
    /// went.
    async fn collect_blob(
        &self,
        report: &mut GcReport,
        digest: &str,
        cutoff: i64,
    ) -> Result<Option<u64>> {
        let meta = &self.inner.meta;
        let parsed = Digest::parse(digest)
            .map_err(|e| Error::Meta(berth_meta::Error::Corrupt(format!("blob digest: {e}"))))?;
        let mut tx = meta.begin().await?;
        tx.lock_digests(&[digest], true).await?;
        let (removed, left) = tx.remove_unreferenced_links(digest, cutoff).await?;
        if left > 0 {
            tx.commit().await?;
            report.links_removed += removed;
            return Ok(None);
        }
        if removed > 0 {
            // The links go in their own commit: should the blob's deletion
            // below be cut short by a crash, no link is left naming a blob
            // whose bytes may be gone.
            tx.commit().await?;
            report.links_removed += removed;
            tx = meta.begin().await?;
            tx.lock_digests(&[digest], true).await?;
        }
        let Some(size) = tx.delete_unreferenced_blob(digest, cutoff).await? else {
            return Ok(None);
        };
        // Still under the lock: no upload of this digest can make its bytes
        // visible (and insert a row) until this commits.
        if let Err(e) = self.inner.store.delete(&parsed).await {
            tracing::warn!(%digest, error = %e, "GC could not delete a blob's bytes; kept its row");
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(size))
    }

    /// Lists at most `orphan_batch` store keys after the persisted cursor
    /// and deletes those older than the grace that have no row, re-checking
    /// under the digest's lock.
    async fn sweep_orphans(&self, report: &mut GcReport, cutoff: i64) -> Result<()> {
        let batch = self.inner.options.gc.orphan_batch;
        if batch == 0 {
            return Ok(());
        }
        let meta = &self.inner.meta;
        let cursor = meta
            .gc_state(ORPHAN_CURSOR)
            .await?
            .and_then(|c| Digest::parse(&c).ok());
        let listed = self
            .inner
            .store
            .list_blobs(cursor.as_ref(), batch as usize)
            .await?;
        let keys: Vec<String> = listed.iter().map(|b| b.digest.to_string()).collect();
        let rows: HashSet<String> = meta.blob_rows_among(&keys).await?;
        let cutoff_time = UNIX_EPOCH + Duration::from_millis(cutoff.max(0) as u64);
        for blob in &listed {
            let key = blob.digest.to_string();
            if rows.contains(&key) || blob.modified > cutoff_time {
                continue;
            }
            if report.dry_run {
                report.orphans_deleted += 1;
                report.orphan_bytes += blob.size;
                continue;
            }
            let mut tx = meta.begin().await?;
            tx.lock_digests(&[&key], true).await?;
            // Gone already (another run deleted the blob with its row)?
            if tx.blob_row_exists(&key).await?
                || self.inner.store.stat(&blob.digest).await?.is_none()
            {
                continue;
            }
            self.inner.store.delete(&blob.digest).await?;
            tx.commit().await?;
            report.orphans_deleted += 1;
            report.orphan_bytes += blob.size;
            tracing::info!(digest = %key, size = blob.size, "GC removed an orphaned store object");
        }
        if !report.dry_run {
            // A short page means the end of the store: start over next time.
            let next = match listed.last() {
                Some(last) if listed.len() as u64 >= batch => last.digest.to_string(),
                _ => String::new(),
            };
            meta.set_gc_state(ORPHAN_CURSOR, &next).await?;
        }
        Ok(())
    }
}
