//! Writes, always inside a transaction the core opened. Dropping a `Tx`
//! without `commit` rolls it back. On SQLite a `Tx` is a member of a group
//! commit (`group`); on PostgreSQL a transaction of its own.

use berth_oci::{Digest, ManifestRef, RefKind, RepoName, Tag};
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use crate::group::{GroupTx, PreCommit};
use crate::policy::is_postgres;
use crate::{Result, now_millis, values_rows};

/// References per statement when a manifest's are read or written at once
/// (well under SQLite's and PostgreSQL's limits on bound parameters).
const REFS_PER_STATEMENT: usize = 500;

pub struct Tx(Inner);

/// Statements written both alone and inside a multi-statement batch, with
/// the same parameter numbers in both.
const INSERT_MANIFEST: &str = "INSERT INTO manifests (repo, digest, media_type, artifact_type, subject, annotations, size, body, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo, digest) DO NOTHING";
const LINK_BLOB: &str = "INSERT INTO repo_blobs (repo, digest, linked_at) VALUES ($1, $2, $3) \
     ON CONFLICT (repo, digest) DO UPDATE SET linked_at = excluded.linked_at";

fn ref_kind(kind: RefKind) -> &'static str {
    match kind {
        RefKind::Blob => "blob",
        RefKind::Manifest => "manifest",
    }
}

enum Inner {
    Own(Transaction<'static, Any>, Vec<PreCommit>),
    Grouped(GroupTx),
}

/// What a manifest insert needs beyond its bytes.
pub struct NewManifest<'a> {
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a Digest>,
    pub annotations: Option<String>,
    pub body: &'a [u8],
    pub refs: &'a [ManifestRef],
}

impl Tx {
    pub(crate) fn own(tx: Transaction<'static, Any>) -> Tx {
        Tx(Inner::Own(tx, Vec::new()))
    }

    pub(crate) fn grouped(tx: GroupTx) -> Tx {
        Tx(Inner::Grouped(tx))
    }

    /// Returns once the transaction is durably committed.
    pub async fn commit(self) -> Result<()> {
        match self.0 {
            Inner::Own(tx, pre_commit) => {
                for work in pre_commit {
                    // Dropping `tx` rolls it back.
                    work.await.map_err(crate::Error::CommitFailed)?;
                }
                tx.commit().await?
            }
            Inner::Grouped(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Makes the commit wait for `work` (already running: the blob store's
    /// fsync of a rename): nothing this transaction records becomes durable
    /// before it has succeeded, and its failure fails the commit. On SQLite
    /// the work of a whole group of transactions is awaited together, just
    /// before their shared `COMMIT` — even a member that is later dropped
    /// keeps its work in the batch, as others may rely on what it did.
    pub fn before_commit(
        &mut self,
        work: impl std::future::Future<Output = std::result::Result<(), String>> + Send + 'static,
    ) {
        match &mut self.0 {
            Inner::Own(_, pre_commit) => pre_commit.push(Box::pin(work)),
            Inner::Grouped(tx) => tx.before_commit(Box::pin(work)),
        }
    }

    /// The transaction's connection, for this crate's other modules that
    /// keep their SQL beside their own types (`policy`).
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        match &mut self.0 {
            Inner::Own(tx, _) => tx,
            Inner::Grouped(tx) => tx.conn(),
        }
    }

    pub async fn ensure_repo(&mut self, repo: &RepoName) -> Result<()> {
        sqlx::query("INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(repo.as_str())
            .bind(now_millis())
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Records that the store durably holds `digest` (idempotent).
    pub async fn insert_blob(&mut self, digest: &Digest, size: u64) -> Result<()> {
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING")
            .bind(digest.as_str())
            .bind(size as i64)
            .bind(now_millis())
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Size of a blob the store holds, whatever repository it is linked to.
    pub async fn blob_size(&mut self, digest: &Digest) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(self.conn())
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(|s| s as u64))
    }

    /// Links a blob (again: a new upload or mount renews `linked_at`, so GC
    /// gives the push that follows its full grace period).
    pub async fn link_blob(&mut self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.store_blob(repo, digest, None, None).await
    }

    /// What a finished blob push writes: the blob's row when `size` is
    /// given (idempotent), the repository, the link (renewed, see
    /// `link_blob`), and the end of upload session `upload`. On SQLite, where
    /// each statement of a write transaction is a round trip while the other
    /// writers wait, one multi-statement round trip.
    pub async fn store_blob(
        &mut self,
        repo: &RepoName,
        digest: &Digest,
        size: Option<u64>,
        upload: Option<&str>,
    ) -> Result<()> {
        if is_postgres(self.conn()) {
            if let Some(size) = size {
                self.insert_blob(digest, size).await?;
            }
            self.ensure_repo(repo).await?;
            sqlx::query(LINK_BLOB)
                .bind(repo.as_str())
                .bind(digest.as_str())
                .bind(now_millis())
                .execute(self.conn())
                .await?;
            if let Some(id) = upload {
                self.delete_upload(id).await?;
            }
            return Ok(());
        }
        // SQLite binds by number and leaves unused numbers alone.
        let mut sql = String::new();
        if size.is_some() {
            sql.push_str(
                "INSERT INTO blobs (digest, size, created_at) VALUES ($2, $4, $3) \
                 ON CONFLICT (digest) DO NOTHING; ",
            );
        }
        sql.push_str(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $3) ON CONFLICT (name) DO NOTHING; ",
        );
        sql.push_str(LINK_BLOB);
        sql.push(';');
        if upload.is_some() {
            sql.push_str(" DELETE FROM uploads WHERE id = $5;");
        }
        sqlx::query(AssertSqlSafe(sql))
            .bind(repo.as_str())
            .bind(digest.as_str())
            .bind(now_millis())
            .bind(size.map(|s| s as i64))
            .bind(upload)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn is_linked(&mut self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM repo_blobs WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(self.conn())
            .await?;
        Ok(row.is_some())
    }

    /// Returns false when there was no such link.
    pub async fn unlink_blob(&mut self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let done = sqlx::query("DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn manifest_exists(&mut self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(self.conn())
            .await?;
        Ok(row.is_some())
    }

    /// Size of what each manifest reference points at in `repo` (a linked
    /// blob or a manifest), in order; `None` where it is not there. One
    /// query per kind and 500 references, as a push checks them all.
    pub async fn ref_sizes(
        &mut self,
        repo: &RepoName,
        refs: &[ManifestRef],
    ) -> Result<Vec<Option<u64>>> {
        let mut blobs = std::collections::HashMap::new();
        let mut manifests = std::collections::HashMap::new();
        for (kind, found) in [
            (RefKind::Blob, &mut blobs),
            (RefKind::Manifest, &mut manifests),
        ] {
            let digests: Vec<&str> = refs
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.digest.as_str())
                .collect();
            for chunk in digests.chunks(REFS_PER_STATEMENT) {
                let list = (0..chunk.len())
                    .map(|i| format!("${}", i + 2))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = match kind {
                    RefKind::Blob => format!(
                        "SELECT l.digest, b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest \
                         WHERE l.repo = $1 AND l.digest IN ({list})"
                    ),
                    RefKind::Manifest => format!(
                        "SELECT digest, size FROM manifests WHERE repo = $1 AND digest IN ({list})"
                    ),
                };
                let mut query = sqlx::query(AssertSqlSafe(sql)).bind(repo.as_str());
                for d in chunk {
                    query = query.bind(*d);
                }
                for row in query.fetch_all(self.conn()).await? {
                    found.insert(
                        row.try_get::<String, _>(0)?,
                        row.try_get::<i64, _>(1)? as u64,
                    );
                }
            }
        }
        Ok(refs
            .iter()
            .map(|r| match r.kind {
                RefKind::Blob => blobs.get(r.digest.as_str()).copied(),
                RefKind::Manifest => manifests.get(r.digest.as_str()).copied(),
            })
            .collect())
    }

    /// Inserts a manifest and its references; a manifest already present with
    /// the same digest is left as it is (same digest, same bytes).
    pub async fn insert_manifest(&mut self, repo: &RepoName, m: NewManifest<'_>) -> Result<()> {
        self.insert_manifest_tagged(repo, m, None).await
    }

    /// Inserts a manifest (idempotent) with its references, creating the
    /// repository, and points `tag` at it. On SQLite, where every statement
    /// of a write transaction is a round trip to the one writer thread while
    /// the other writers wait, this is one multi-statement round trip.
    pub async fn insert_manifest_tagged(
        &mut self,
        repo: &RepoName,
        m: NewManifest<'_>,
        tag: Option<&Tag>,
    ) -> Result<()> {
        if is_postgres(self.conn()) || m.refs.len() > REFS_PER_STATEMENT {
            self.insert_manifest_statements(repo, &m).await?;
            if let Some(tag) = tag {
                self.set_tag(repo, tag, m.digest).await?;
            }
            return Ok(());
        }
        // $1 repo, $2 digest, $3-$8 the manifest's columns, $9 now, $10 the
        // tag, then a (child, kind) pair per reference. A manifest that was
        // there already has these references already (same digest, same
        // body): inserting them again changes nothing.
        let mut sql = format!(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $9) ON CONFLICT (name) DO NOTHING; \
             {INSERT_MANIFEST};"
        );
        if !m.refs.is_empty() {
            let rows: Vec<String> = (0..m.refs.len())
                .map(|i| format!("($1, $2, ${}, ${})", 11 + 2 * i, 12 + 2 * i))
                .collect();
            sql.push_str(&format!(
                " INSERT INTO manifest_refs (repo, manifest_digest, child_digest, kind) VALUES {} \
                 ON CONFLICT DO NOTHING;",
                rows.join(", ")
            ));
        }
        if tag.is_some() {
            sql.push_str(
                " INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $10, $2, $9) \
                 ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at;",
            );
        }
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(repo.as_str())
            .bind(m.digest.as_str())
            .bind(m.media_type)
            .bind(m.artifact_type)
            .bind(m.subject.map(|s| s.as_str()))
            .bind(m.annotations)
            .bind(m.body.len() as i64)
            .bind(m.body.to_vec())
            .bind(now_millis())
            .bind(tag.map(|t| t.as_str()));
        for r in m.refs {
            query = query.bind(r.digest.as_str()).bind(ref_kind(r.kind));
        }
        query.execute(self.conn()).await?;
        Ok(())
    }

    /// The manifest insert as separate statements (PostgreSQL, and indexes
    /// with more references than one statement takes).
    async fn insert_manifest_statements(
        &mut self,
        repo: &RepoName,
        m: &NewManifest<'_>,
    ) -> Result<()> {
        self.ensure_repo(repo).await?;
        let inserted = sqlx::query(INSERT_MANIFEST)
            .bind(repo.as_str())
            .bind(m.digest.as_str())
            .bind(m.media_type)
            .bind(m.artifact_type)
            .bind(m.subject.map(|s| s.as_str()))
            .bind(m.annotations.as_deref())
            .bind(m.body.len() as i64)
            .bind(m.body.to_vec())
            .bind(now_millis())
            .execute(self.conn())
            .await?;
        if inserted.rows_affected() == 0 {
            return Ok(());
        }
        // One statement per 500 references, not one per reference.
        for chunk in m.refs.chunks(REFS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO manifest_refs (repo, manifest_digest, child_digest, kind) VALUES {} \
                 ON CONFLICT DO NOTHING",
                values_rows(chunk.len(), 4)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                query = query
                    .bind(repo.as_str())
                    .bind(m.digest.as_str())
                    .bind(r.digest.as_str())
                    .bind(ref_kind(r.kind));
            }
            query.execute(self.conn()).await?;
        }
        Ok(())
    }

    pub async fn set_tag(&mut self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<()> {
        sqlx::query(
            "INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .bind(digest.as_str())
        .bind(now_millis())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Returns false when there was no such tag.
    pub async fn delete_tag(&mut self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo.as_str())
            .bind(tag.as_str())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a manifest, its references and the tags pointing at it.
    /// Returns false when there was no such manifest.
    pub async fn delete_manifest(&mut self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        for sql in [
            "DELETE FROM tags WHERE repo = $1 AND digest = $2",
            "DELETE FROM manifest_refs WHERE repo = $1 AND manifest_digest = $2",
        ] {
            sqlx::query(sql)
                .bind(repo.as_str())
                .bind(digest.as_str())
                .execute(self.conn())
                .await?;
        }
        let done = sqlx::query("DELETE FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn insert_upload(&mut self, id: &str, repo: &RepoName) -> Result<()> {
        let now = now_millis();
        if is_postgres(self.conn()) {
            self.ensure_repo(repo).await?;
            sqlx::query(
                "INSERT INTO uploads (id, repo, created_at, updated_at) VALUES ($1, $2, $3, $3)",
            )
            .bind(id)
            .bind(repo.as_str())
            .bind(now)
            .execute(self.conn())
            .await?;
            return Ok(());
        }
        // One round trip on SQLite (see `store_blob`).
        sqlx::query(
            "INSERT INTO repositories (name, created_at) VALUES ($2, $3) ON CONFLICT (name) DO NOTHING; \
             INSERT INTO uploads (id, repo, created_at, updated_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(id)
        .bind(repo.as_str())
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Marks a session of `repo` as in use now, so a reaper leaves it alone.
    /// False when there is no such session (any more): a reaper may have
    /// deleted it, so its bytes must not be written to.
    pub async fn keep_upload_alive(&mut self, repo: &RepoName, id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE uploads SET updated_at = $3 WHERE id = $1 AND repo = $2")
            .bind(id)
            .bind(repo.as_str())
            .bind(now_millis())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_upload(&mut self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
