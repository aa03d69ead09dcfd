//! Writes, always inside a transaction the core opened. Dropping a `Tx`
//! without `commit` rolls it back.

use berth_oci::{Digest, ManifestRef, RefKind, RepoName, Tag};
use sqlx::{Any, Row, Transaction};

use crate::{Result, now_millis};

pub struct Tx(Transaction<'static, Any>);

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
    pub(crate) fn new(tx: Transaction<'static, Any>) -> Tx {
        Tx(tx)
    }

    pub async fn commit(self) -> Result<()> {
        self.0.commit().await?;
        Ok(())
    }

    /// The transaction's connection, for this crate's other modules that
    /// keep their SQL beside their own types (`policy`).
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.0
    }

    pub async fn ensure_repo(&mut self, repo: &RepoName) -> Result<()> {
        sqlx::query("INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(repo.as_str())
            .bind(now_millis())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    /// Records that the store durably holds `digest` (idempotent).
    pub async fn insert_blob(&mut self, digest: &Digest, size: u64) -> Result<()> {
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING")
            .bind(digest.as_str())
            .bind(size as i64)
            .bind(now_millis())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    /// Size of a blob the store holds, whatever repository it is linked to.
    pub async fn blob_size(&mut self, digest: &Digest) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&mut *self.0)
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(|s| s as u64))
    }

    /// Links a blob (again: a new upload or mount renews `linked_at`, so GC
    /// gives the push that follows its full grace period).
    pub async fn link_blob(&mut self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.ensure_repo(repo).await?;
        sqlx::query(
            "INSERT INTO repo_blobs (repo, digest, linked_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (repo, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .bind(now_millis())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    pub async fn is_linked(&mut self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM repo_blobs WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&mut *self.0)
            .await?;
        Ok(row.is_some())
    }

    /// Returns false when there was no such link.
    pub async fn unlink_blob(&mut self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let done = sqlx::query("DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn manifest_exists(&mut self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&mut *self.0)
            .await?;
        Ok(row.is_some())
    }

    /// Size of what a manifest reference points at in `repo`: a linked blob
    /// or a manifest. `None` when it is not there.
    pub async fn ref_size(&mut self, repo: &RepoName, r: &ManifestRef) -> Result<Option<u64>> {
        let sql = match r.kind {
            RefKind::Blob => {
                "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest \
                 WHERE l.repo = $1 AND l.digest = $2"
            }
            RefKind::Manifest => "SELECT size FROM manifests WHERE repo = $1 AND digest = $2",
        };
        let row = sqlx::query(sql)
            .bind(repo.as_str())
            .bind(r.digest.as_str())
            .fetch_optional(&mut *self.0)
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(|s| s as u64))
    }

    /// Inserts a manifest and its references; a manifest already present with
    /// the same digest is left as it is (same digest, same bytes).
    pub async fn insert_manifest(&mut self, repo: &RepoName, m: NewManifest<'_>) -> Result<()> {
        self.ensure_repo(repo).await?;
        let inserted = sqlx::query(
            "INSERT INTO manifests (repo, digest, media_type, artifact_type, subject, annotations, size, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo, digest) DO NOTHING",
        )
        .bind(repo.as_str())
        .bind(m.digest.as_str())
        .bind(m.media_type)
        .bind(m.artifact_type)
        .bind(m.subject.map(|s| s.as_str()))
        .bind(m.annotations)
        .bind(m.body.len() as i64)
        .bind(m.body.to_vec())
        .bind(now_millis())
        .execute(&mut *self.0)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(());
        }
        for r in m.refs {
            let kind = match r.kind {
                RefKind::Blob => "blob",
                RefKind::Manifest => "manifest",
            };
            sqlx::query(
                "INSERT INTO manifest_refs (repo, manifest_digest, child_digest, kind) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(repo.as_str())
            .bind(m.digest.as_str())
            .bind(r.digest.as_str())
            .bind(kind)
            .execute(&mut *self.0)
            .await?;
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
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    /// Returns false when there was no such tag.
    pub async fn delete_tag(&mut self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo.as_str())
            .bind(tag.as_str())
            .execute(&mut *self.0)
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
                .execute(&mut *self.0)
                .await?;
        }
        let done = sqlx::query("DELETE FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn insert_upload(&mut self, id: &str, repo: &RepoName) -> Result<()> {
        self.ensure_repo(repo).await?;
        let now = now_millis();
        sqlx::query(
            "INSERT INTO uploads (id, repo, created_at, updated_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(id)
        .bind(repo.as_str())
        .bind(now)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    pub async fn touch_upload(&mut self, id: &str) -> Result<()> {
        sqlx::query("UPDATE uploads SET updated_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_millis())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    pub async fn delete_upload(&mut self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
