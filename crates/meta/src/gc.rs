//! Garbage collection, the restore window (trash) and the orphan sweep's
//! SQL (issue 5, scopes 1 and 4; migration 0004).
//!
//! # The per-digest lock
//!
//! GC deleting a blob (row and store object) and an upload making the same
//! digest's bytes visible and inserting its row must never interleave, or
//! the registry ends up with a row whose bytes GC deleted. Both run inside
//! a transaction holding [`Tx::lock_digests`] exclusively for the digest:
//! on PostgreSQL `pg_advisory_xact_lock(key)` (held until commit or
//! rollback, so a crash releases it), on SQLite the database write lock,
//! which every write transaction takes when it begins (`BEGIN IMMEDIATE`,
//! see `MetaStore::begin`). Manifest pushes, mounts and restores take the
//! lock shared for every digest they check, so a check and the insert it
//! justifies are not split by a GC deletion either.
//!
//! Candidates are read from the read pool without locks; every deletion
//! re-checks its condition in one statement inside the locked transaction.

use std::collections::HashSet;

use sqlx::{AssertSqlSafe, Row};

use crate::policy::is_postgres;
use crate::{MetaStore, Result, Tx, now_millis};

/// The advisory lock key of a digest: FNV-1a (64 bits) of its text, so
/// every node computes the same key.
pub fn digest_lock_key(digest: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in digest.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}

/// An entry of the trash as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashRow {
    pub id: i64,
    pub repo: String,
    /// `manifest` (deleted by digest, with its tags) or `tag` (a tag
    /// deleted by name; the manifest stayed).
    pub kind: String,
    pub digest: String,
    pub media_type: Option<String>,
    pub size: Option<i64>,
    /// The tags it had (a `tag` entry: the one tag).
    pub tags: Vec<String>,
    pub deleted_at: i64,
    pub deleted_by: String,
}

/// A trash entry taken out of the trash (by a restore), with everything
/// needed to put it back.
#[derive(Debug, Clone)]
pub struct TakenTrash {
    pub row: TrashRow,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    pub annotations: Option<String>,
    pub body: Option<Vec<u8>>,
    pub created_at: Option<i64>,
    /// `(child digest, kind)` with kind `blob` or `manifest`.
    pub refs: Vec<(String, String)>,
    /// `(name, updated_at)`.
    pub tag_times: Vec<(String, i64)>,
}

/// Runs the GC history keeps.
const KEPT_GC_RUNS: i64 = 1000;

/// What one GC run did (or, dry, would do), as recorded in `gc_runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcRunRow {
    pub id: i64,
    /// `schedule`, `api` or `cli`.
    pub trigger: String,
    pub dry_run: bool,
    pub started_at: i64,
    pub finished_at: i64,
    pub blobs_deleted: i64,
    pub bytes_reclaimed: i64,
    pub manifests_deleted: i64,
    pub links_removed: i64,
    pub trash_purged: i64,
    pub orphans_deleted: i64,
    pub orphan_bytes: i64,
    /// Set when the run stopped on an error (what it did so far is counted).
    pub error: Option<String>,
}

/// Which repositories a project holds: names in `[from, to)` (`p/` to
/// `p0`), and with `top_level` also names without a `/` (the default
/// project's).
#[derive(Debug, Clone, Copy)]
pub struct RepoRange<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub top_level: bool,
}

const IN_RANGE: &str = "((t.repo >= $1 AND t.repo < $2) OR ($3 = 1 AND t.repo NOT LIKE '%/%'))";

/// A manifest that is no longer wanted unless something references it.
const UNTAGGED_UNREFERENCED: &str = "m.created_at < $3 \
     AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest) \
     AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo AND r.child_digest = m.digest) \
     AND NOT EXISTS (SELECT 1 FROM trash x WHERE x.repo = m.repo AND x.digest = m.digest) \
     AND NOT EXISTS (SELECT 1 FROM trash x JOIN trash_refs xr ON xr.trash_id = x.id \
                     WHERE x.repo = m.repo AND xr.child_digest = m.digest) \
     AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.subject = m.digest) \
     AND (m.subject IS NULL OR (\
          NOT EXISTS (SELECT 1 FROM manifests p WHERE p.repo = m.repo AND p.digest = m.subject) \
          AND NOT EXISTS (SELECT 1 FROM trash x WHERE x.repo = m.repo AND x.digest = m.subject)))";

/// A link nothing in its repository references (live or in the trash).
const LINK_UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM manifest_refs r \
         WHERE r.repo = l.repo AND r.child_digest = l.digest) \
     AND NOT EXISTS (SELECT 1 FROM trash x JOIN trash_refs xr ON xr.trash_id = x.id \
         WHERE x.repo = l.repo AND xr.child_digest = l.digest)";

/// A blob no manifest references, in any repository, live or in the trash.
const BLOB_UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child_digest = b.digest) \
     AND NOT EXISTS (SELECT 1 FROM trash_refs xr WHERE xr.child_digest = b.digest)";

fn trash_row(r: &sqlx::any::AnyRow) -> Result<TrashRow> {
    Ok(TrashRow {
        id: r.try_get(0)?,
        repo: r.try_get(1)?,
        kind: r.try_get(2)?,
        digest: r.try_get(3)?,
        media_type: r.try_get(4)?,
        size: r.try_get(5)?,
        tags: Vec::new(),
        deleted_at: r.try_get(6)?,
        deleted_by: r.try_get(7)?,
    })
}

fn gc_run_row(r: &sqlx::any::AnyRow) -> Result<GcRunRow> {
    Ok(GcRunRow {
        id: r.try_get(0)?,
        trigger: r.try_get(1)?,
        dry_run: r.try_get::<i64, _>(2)? != 0,
        started_at: r.try_get(3)?,
        finished_at: r.try_get(4)?,
        blobs_deleted: r.try_get(5)?,
        bytes_reclaimed: r.try_get(6)?,
        manifests_deleted: r.try_get(7)?,
        links_removed: r.try_get(8)?,
        trash_purged: r.try_get(9)?,
        orphans_deleted: r.try_get(10)?,
        orphan_bytes: r.try_get(11)?,
        error: r.try_get(12)?,
    })
}

const TRASH_COLUMNS: &str =
    "t.id, t.repo, t.kind, t.digest, t.media_type, t.size, t.deleted_at, t.deleted_by";

const GC_RUN_COLUMNS: &str = "id, trigger_kind, dry_run, started_at, finished_at, blobs_deleted, \
     bytes_reclaimed, manifests_deleted, links_removed, trash_purged, orphans_deleted, \
     orphan_bytes, error";

impl Tx {
    /// Takes the per-digest lock (see the module documentation) for each
    /// digest, exclusively (GC deleting, an upload committing) or shared
    /// (a manifest push, mount or restore relying on the digest), until the
    /// transaction ends. Keys are taken in sorted order, so two
    /// transactions never wait on each other in a cycle.
    pub async fn lock_digests(&mut self, digests: &[&str], exclusive: bool) -> Result<()> {
        let conn = self.conn();
        if !is_postgres(conn) {
            // SQLite: this transaction already holds the database write lock.
            return Ok(());
        }
        let mut keys: Vec<i64> = digests.iter().map(|d| digest_lock_key(d)).collect();
        keys.sort_unstable();
        keys.dedup();
        let sql = if exclusive {
            "SELECT 1 FROM pg_advisory_xact_lock($1)"
        } else {
            "SELECT 1 FROM pg_advisory_xact_lock_shared($1)"
        };
        for key in keys {
            sqlx::query(sql).bind(key).fetch_one(&mut *conn).await?;
        }
        Ok(())
    }

    // -- Trash -----------------------------------------------------------------

    /// Copies a manifest (bytes, references, tags) into the trash; the
    /// caller then deletes it. `None` when there is no such manifest.
    pub async fn trash_manifest(
        &mut self,
        repo: &str,
        digest: &str,
        who: &str,
    ) -> Result<Option<i64>> {
        let conn = self.conn();
        let row = sqlx::query(
            "INSERT INTO trash (repo, kind, digest, media_type, artifact_type, subject, annotations, \
             size, body, created_at, deleted_at, deleted_by) \
             SELECT repo, 'manifest', digest, media_type, artifact_type, subject, annotations, size, \
             body, created_at, $3, $4 FROM manifests WHERE repo = $1 AND digest = $2 RETURNING id",
        )
        .bind(repo)
        .bind(digest)
        .bind(now_millis())
        .bind(who)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.try_get(0)?;
        sqlx::query(
            "INSERT INTO trash_refs (trash_id, child_digest, kind) \
             SELECT $1, child_digest, kind FROM manifest_refs WHERE repo = $2 AND manifest_digest = $3",
        )
        .bind(id)
        .bind(repo)
        .bind(digest)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO trash_tags (trash_id, name, updated_at) \
             SELECT $1, name, updated_at FROM tags WHERE repo = $2 AND digest = $3",
        )
        .bind(id)
        .bind(repo)
        .bind(digest)
        .execute(&mut *conn)
        .await?;
        Ok(Some(id))
    }

    /// Copies a tag into the trash; the caller then deletes it. `None` when
    /// there is no such tag.
    pub async fn trash_tag(&mut self, repo: &str, tag: &str, who: &str) -> Result<Option<i64>> {
        let conn = self.conn();
        let row = sqlx::query(
            "INSERT INTO trash (repo, kind, digest, media_type, size, created_at, deleted_at, deleted_by) \
             SELECT t.repo, 'tag', t.digest, m.media_type, m.size, m.created_at, $3, $4 FROM tags t \
             JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest \
             WHERE t.repo = $1 AND t.name = $2 RETURNING id",
        )
        .bind(repo)
        .bind(tag)
        .bind(now_millis())
        .bind(who)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.try_get(0)?;
        sqlx::query(
            "INSERT INTO trash_tags (trash_id, name, updated_at) \
             SELECT $1, name, updated_at FROM tags WHERE repo = $2 AND name = $3",
        )
        .bind(id)
        .bind(repo)
        .bind(tag)
        .execute(&mut *conn)
        .await?;
        Ok(Some(id))
    }

    /// Reads a trash entry of one of a project's repositories, without
    /// taking it.
    pub async fn trash_entry(
        &mut self,
        id: i64,
        range: RepoRange<'_>,
    ) -> Result<Option<TakenTrash>> {
        let conn = self.conn();
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TRASH_COLUMNS}, t.artifact_type, t.subject, t.annotations, t.body, t.created_at \
             FROM trash t WHERE {IN_RANGE} AND t.id = $4"
        )))
        .bind(range.from)
        .bind(range.to)
        .bind(i64::from(range.top_level))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut entry = TakenTrash {
            row: trash_row(&row)?,
            artifact_type: row.try_get(8)?,
            subject: row.try_get(9)?,
            annotations: row.try_get(10)?,
            body: row.try_get(11)?,
            created_at: row.try_get(12)?,
            refs: Vec::new(),
            tag_times: Vec::new(),
        };
        for r in sqlx::query("SELECT child_digest, kind FROM trash_refs WHERE trash_id = $1")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?
        {
            entry.refs.push((r.try_get(0)?, r.try_get(1)?));
        }
        for r in
            sqlx::query("SELECT name, updated_at FROM trash_tags WHERE trash_id = $1 ORDER BY name")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
        {
            let name: String = r.try_get(0)?;
            entry.row.tags.push(name.clone());
            entry.tag_times.push((name, r.try_get(1)?));
        }
        Ok(Some(entry))
    }

    /// Removes a trash entry; false when it was already gone (restored or
    /// purged by someone else first).
    pub async fn remove_trash(&mut self, id: i64) -> Result<bool> {
        let conn = self.conn();
        for sql in [
            "DELETE FROM trash_refs WHERE trash_id = $1",
            "DELETE FROM trash_tags WHERE trash_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *conn).await?;
        }
        let done = sqlx::query("DELETE FROM trash WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a trashed manifest back (row and references), unless a manifest
    /// with its digest is there already. The caller checked the references.
    pub async fn restore_manifest(&mut self, entry: &TakenTrash) -> Result<()> {
        let row = &entry.row;
        let conn = self.conn();
        sqlx::query(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&row.repo)
        .bind(now_millis())
        .execute(&mut *conn)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO manifests (repo, digest, media_type, artifact_type, subject, annotations, size, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo, digest) DO NOTHING",
        )
        .bind(&row.repo)
        .bind(&row.digest)
        .bind(row.media_type.clone().unwrap_or_default())
        .bind(entry.artifact_type.clone())
        .bind(entry.subject.clone())
        .bind(entry.annotations.clone())
        .bind(row.size.unwrap_or(0))
        .bind(entry.body.clone().unwrap_or_default())
        .bind(entry.created_at.unwrap_or_else(now_millis))
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(());
        }
        for (child, kind) in &entry.refs {
            sqlx::query(
                "INSERT INTO manifest_refs (repo, manifest_digest, child_digest, kind) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(&row.repo)
            .bind(&row.digest)
            .bind(child)
            .bind(kind)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// The digest a tag points at now.
    pub async fn tag_now(&mut self, repo: &str, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT digest FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo)
            .bind(name)
            .fetch_optional(&mut *self.conn())
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Sets a restored tag, keeping the time it was last pushed.
    pub async fn restore_tag(
        &mut self,
        repo: &str,
        name: &str,
        digest: &str,
        updated_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
        )
        .bind(repo)
        .bind(name)
        .bind(digest)
        .bind(updated_at)
        .execute(&mut *self.conn())
        .await?;
        Ok(())
    }

    /// Deletes trash entries deleted before `before` (the restore window is
    /// over); returns how many.
    pub async fn purge_trash(&mut self, before: i64) -> Result<u64> {
        let conn = self.conn();
        for sql in [
            "DELETE FROM trash_refs WHERE trash_id IN (SELECT id FROM trash WHERE deleted_at < $1)",
            "DELETE FROM trash_tags WHERE trash_id IN (SELECT id FROM trash WHERE deleted_at < $1)",
        ] {
            sqlx::query(sql).bind(before).execute(&mut *conn).await?;
        }
        let done = sqlx::query("DELETE FROM trash WHERE deleted_at < $1")
            .bind(before)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected())
    }

    // -- Collection (each under the digest's exclusive lock) --------------------

    /// Deletes a manifest if it is still untagged and unreferenced (see
    /// `UNTAGGED_UNREFERENCED`) and older than `cutoff`.
    pub async fn delete_untagged_manifest(
        &mut self,
        repo: &str,
        digest: &str,
        cutoff: i64,
    ) -> Result<bool> {
        let conn = self.conn();
        let still = sqlx::query(AssertSqlSafe(format!(
            "SELECT 1 FROM manifests m WHERE m.repo = $1 AND m.digest = $2 AND {UNTAGGED_UNREFERENCED}"
        )))
        .bind(repo)
        .bind(digest)
        .bind(cutoff)
        .fetch_optional(&mut *conn)
        .await?;
        if still.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM manifest_refs WHERE repo = $1 AND manifest_digest = $2")
            .bind(repo)
            .bind(digest)
            .execute(&mut *conn)
            .await?;
        let done = sqlx::query("DELETE FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo)
            .bind(digest)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes the links of `digest` older than `cutoff` that nothing in
    /// their repository references. Returns (removed, links left).
    pub async fn remove_unreferenced_links(
        &mut self,
        digest: &str,
        cutoff: i64,
    ) -> Result<(u64, u64)> {
        let conn = self.conn();
        let done = sqlx::query(
            "DELETE FROM repo_blobs WHERE digest = $1 AND linked_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM manifest_refs r \
                 WHERE r.repo = repo_blobs.repo AND r.child_digest = repo_blobs.digest) \
             AND NOT EXISTS (SELECT 1 FROM trash x JOIN trash_refs xr ON xr.trash_id = x.id \
                 WHERE x.repo = repo_blobs.repo AND xr.child_digest = repo_blobs.digest)",
        )
        .bind(digest)
        .bind(cutoff)
        .execute(&mut *conn)
        .await?;
        let left: i64 =
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM repo_blobs WHERE digest = $1")
                .bind(digest)
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
        Ok((done.rows_affected(), left as u64))
    }

    /// Deletes the row of a blob that has no link and no reference (live
    /// or in the trash) and was created before `cutoff`; its size when it
    /// did. The caller deletes the store object before committing.
    pub async fn delete_unreferenced_blob(
        &mut self,
        digest: &str,
        cutoff: i64,
    ) -> Result<Option<u64>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM blobs WHERE digest = $1 AND created_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = blobs.digest) \
             AND {} RETURNING size",
            BLOB_UNREFERENCED.replace("b.digest", "blobs.digest")
        )))
        .bind(digest)
        .bind(cutoff)
        .fetch_optional(&mut *self.conn())
        .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(|s| s as u64))
    }

    /// Whether a blob row exists (the orphan sweep's re-check).
    pub async fn blob_row_exists(&mut self, digest: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&mut *self.conn())
            .await?;
        Ok(row.is_some())
    }
}

impl MetaStore {
    // -- Trash -----------------------------------------------------------------

    /// Up to `limit` trash entries of a project's repositories with an id
    /// above `after`, oldest first, with their tags.
    pub async fn trash(
        &self,
        range: RepoRange<'_>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TrashRow>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TRASH_COLUMNS} FROM trash t WHERE {IN_RANGE} AND t.id > $4 \
             ORDER BY t.id LIMIT $5"
        )))
        .bind(range.from)
        .bind(range.to)
        .bind(i64::from(range.top_level))
        .bind(after)
        .bind(limit)
        .fetch_all(read)
        .await?;
        let mut out: Vec<TrashRow> = rows.iter().map(trash_row).collect::<Result<_>>()?;
        let (Some(first), Some(last)) = (out.first().map(|e| e.id), out.last().map(|e| e.id))
        else {
            return Ok(out);
        };
        let tags = sqlx::query(
            "SELECT trash_id, name FROM trash_tags WHERE trash_id >= $1 AND trash_id <= $2 \
             ORDER BY trash_id, name",
        )
        .bind(first)
        .bind(last)
        .fetch_all(read)
        .await?;
        for t in tags {
            let id: i64 = t.try_get(0)?;
            if let Some(entry) = out.iter_mut().find(|e| e.id == id) {
                entry.tags.push(t.try_get(1)?);
            }
        }
        Ok(out)
    }

    /// Trash entries deleted before `before`.
    pub async fn expired_trash_count(&self, before: i64) -> Result<u64> {
        let (_, read) = self.pools();
        let n: i64 =
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM trash WHERE deleted_at < $1")
                .bind(before)
                .fetch_one(read)
                .await?
                .try_get(0)?;
        Ok(n as u64)
    }

    // -- Candidates (read without locks; each deletion re-checks) ----------------

    /// Untagged manifests nothing references, created before `cutoff`,
    /// after `(repo, digest)` in key order.
    pub async fn gc_manifest_candidates(
        &self,
        cutoff: i64,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT m.repo, m.digest FROM manifests m \
             WHERE (m.repo > $1 OR (m.repo = $1 AND m.digest > $2)) AND {UNTAGGED_UNREFERENCED} \
             ORDER BY m.repo, m.digest LIMIT $4"
        )))
        .bind(after.0)
        .bind(after.1)
        .bind(cutoff)
        .bind(limit)
        .fetch_all(read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Links older than `cutoff` that nothing in their repository
    /// references, as `(digest, repo)`, after `after` in that order.
    pub async fn gc_link_candidates(
        &self,
        cutoff: i64,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT l.digest, l.repo FROM repo_blobs l \
             WHERE (l.digest > $1 OR (l.digest = $1 AND l.repo > $2)) AND l.linked_at < $3 \
             AND {LINK_UNREFERENCED} ORDER BY l.digest, l.repo LIMIT $4"
        )))
        .bind(after.0)
        .bind(after.1)
        .bind(cutoff)
        .bind(limit)
        .fetch_all(read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Blobs created before `cutoff` that no manifest references (live or
    /// in the trash) and that have no link made since `cutoff`, as
    /// `(digest, size)`, after `after`. Their old links are link candidates.
    pub async fn gc_blob_candidates(
        &self,
        cutoff: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, u64)>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT b.digest, b.size FROM blobs b WHERE b.digest > $1 AND b.created_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest AND l.linked_at >= $2) \
             AND {BLOB_UNREFERENCED} ORDER BY b.digest LIMIT $3"
        )))
        .bind(after)
        .bind(cutoff)
        .bind(limit)
        .fetch_all(read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64)))
            .collect()
    }

    /// Which of `digests` have a blob row.
    pub async fn blob_rows_among(&self, digests: &[String]) -> Result<HashSet<String>> {
        let (_, read) = self.pools();
        let mut found = HashSet::new();
        for chunk in digests.chunks(400) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT digest FROM blobs WHERE digest IN ({list})");
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for d in chunk {
                query = query.bind(d.as_str());
            }
            for r in query.fetch_all(read).await? {
                found.insert(r.try_get(0)?);
            }
        }
        Ok(found)
    }

    // -- State and history --------------------------------------------------------

    pub async fn gc_state(&self, name: &str) -> Result<Option<String>> {
        let (_, read) = self.pools();
        let row = sqlx::query("SELECT value FROM gc_state WHERE name = $1")
            .bind(name)
            .fetch_optional(read)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub async fn set_gc_state(&self, name: &str, value: &str) -> Result<()> {
        let (write, _) = self.pools();
        sqlx::query(
            "INSERT INTO gc_state (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(now_millis())
        .execute(write)
        .await?;
        Ok(())
    }

    /// Records a finished run (dropping all but the last `KEPT_GC_RUNS`);
    /// returns its id.
    pub async fn insert_gc_run(&self, run: &GcRunRow) -> Result<i64> {
        let (write, _) = self.pools();
        let row = sqlx::query(
            "INSERT INTO gc_runs (trigger_kind, dry_run, started_at, finished_at, blobs_deleted, \
             bytes_reclaimed, manifests_deleted, links_removed, trash_purged, orphans_deleted, \
             orphan_bytes, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(&run.trigger)
        .bind(i64::from(run.dry_run))
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(run.blobs_deleted)
        .bind(run.bytes_reclaimed)
        .bind(run.manifests_deleted)
        .bind(run.links_removed)
        .bind(run.trash_purged)
        .bind(run.orphans_deleted)
        .bind(run.orphan_bytes)
        .bind(run.error.clone())
        .fetch_one(write)
        .await?;
        let id: i64 = row.try_get(0)?;
        // The history keeps the last runs only.
        sqlx::query("DELETE FROM gc_runs WHERE id <= $1")
            .bind(id - KEPT_GC_RUNS)
            .execute(write)
            .await?;
        Ok(id)
    }

    /// Past runs, newest first, with an id below `before`.
    pub async fn gc_runs(&self, before: i64, limit: i64) -> Result<Vec<GcRunRow>> {
        let (_, read) = self.pools();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {GC_RUN_COLUMNS} FROM gc_runs WHERE id < $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(read)
        .await?;
        rows.iter().map(gc_run_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::digest_lock_key;

    #[test]
    fn lock_keys_are_stable_and_spread() {
        let a = "sha256:aaaa";
        assert_eq!(digest_lock_key(a), digest_lock_key(a));
        assert_ne!(digest_lock_key(a), digest_lock_key("sha256:aaab"));
    }
}
