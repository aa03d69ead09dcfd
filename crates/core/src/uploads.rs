//! Blob uploads: sessions, chunks, monolithic pushes, mounts.
//!
//! Bytes are hashed while they stream to the store. The running hash of a
//! session is kept in memory between chunks; when it is missing (after a
//! restart, or on another node) it is rebuilt by reading back what the store
//! holds, so sessions never depend on one process's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_meta::{UploadRow, now_millis};
use berth_oci::{Algorithm, ByteRange, Digest, Hasher, RepoName};
use berth_storage::ByteStream;
use futures::StreamExt;

use crate::{Error, Registry, Result};

/// Where an upload session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

pub enum MountOutcome {
    Mounted,
    /// The source did not have the blob: a fresh session to upload it into.
    Started(UploadStatus),
}

/// The running hash of a session, valid for the first `offset` bytes.
struct HashState {
    offset: u64,
    hasher: Hasher,
}

type Slot = Arc<tokio::sync::Mutex<Option<HashState>>>;

/// Per-session slots. Holding a slot's lock serialises requests on one
/// session, so two concurrent PATCHes cannot interleave their bytes.
#[derive(Default)]
pub(crate) struct HashStates(Mutex<HashMap<String, Slot>>);

impl HashStates {
    fn slot(&self, id: &str) -> Slot {
        let mut map = self.0.lock().expect("hash state map poisoned");
        map.entry(id.to_string()).or_default().clone()
    }

    pub(crate) fn forget(&self, id: &str) {
        self.0.lock().expect("hash state map poisoned").remove(id);
    }

    /// Whether a request on this node holds the session's lock right now.
    pub(crate) fn busy(&self, id: &str) -> bool {
        let map = self.0.lock().expect("hash state map poisoned");
        map.get(id).is_some_and(|slot| slot.try_lock().is_err())
    }
}

fn new_upload_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Registry {
    /// Opens an upload session.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadStatus> {
        let id = new_upload_id();
        // Store first: the database must never name a session the store lacks.
        self.inner.store.upload_start(&id).await?;
        let mut tx = self.inner.meta.begin().await?;
        tx.insert_upload(&id, repo).await?;
        tx.commit().await?;
        metrics::gauge!("berth_uploads_in_progress").increment(1.0);
        Ok(UploadStatus { id, offset: 0 })
    }

    /// Pushes a whole blob in one request (`POST ?digest=`). No session row
    /// is written: the request is the session.
    pub async fn push_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<()> {
        let id = new_upload_id();
        self.inner.store.upload_start(&id).await?;
        let result = async {
            let (size, hasher) = self
                .inner
                .store
                .upload_append(&id, 0, body, Hasher::new(digest.algorithm()))
                .await?;
            check_digest(digest, hasher.finish())?;
            self.commit_blob(repo, &id, digest, size, false).await
        }
        .await;
        if result.is_err() {
            let _ = self.inner.store.upload_abort(&id).await;
        }
        result
    }

    /// Links a blob from `from` into `repo`, or opens a session when `from`
    /// does not have it (the spec's fallback, so clients just upload).
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<MountOutcome> {
        let mut tx = self.inner.meta.begin().await?;
        tx.lock_digests(&[digest.as_str()], false).await?;
        // Without `from` there is no automatic discovery: a session, as the
        // spec prescribes for registries that do not search other repositories.
        let linked = match from {
            Some(from) => tx.is_linked(from, digest).await? || tx.is_linked(repo, digest).await?,
            None => false,
        };
        if linked {
            let warning = self.check_blob_link(&mut tx, repo, digest, None).await?;
            tx.link_blob(repo, digest).await?;
            tx.commit().await?;
            self.quota_warned(warning);
            return Ok(MountOutcome::Mounted);
        }
        drop(tx);
        Ok(MountOutcome::Started(self.start_upload(repo).await?))
    }

    /// Where a session stands, or `UploadUnknown` if it is not in `repo`.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        self.check_session(repo, id).await?;
        let offset = self
            .inner
            .store
            .upload_size(id)
            .await?
            .ok_or_else(|| Error::UploadUnknown(id.to_string()))?;
        Ok(UploadStatus {
            id: id.to_string(),
            offset,
        })
    }

    /// Appends a chunk. With a `Content-Range`, the chunk must start where the
    /// upload ends (else `UploadRange`); without, it is appended as streamed.
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<ByteRange>,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        if let (Some(range), Some(length)) = (range, length)
            && range.len() != length
        {
            return Err(Error::SizeInvalid(format!(
                "Content-Range {}-{} covers {} bytes but Content-Length is {length}",
                range.start,
                range.end,
                range.len()
            )));
        }
        let (mut state, offset, hasher) = self.lock_session(repo, id, range).await?;
        let (offset, hasher) = self.append(id, offset, body, hasher).await?;
        *state = Some(HashState { offset, hasher });
        Ok(UploadStatus {
            id: id.to_string(),
            offset,
        })
    }

    /// Completes a session with an optional last chunk and makes the blob
    /// visible in `repo` if its digest matches.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<ByteRange>,
        body: ByteStream,
    ) -> Result<()> {
        let (mut state, offset, hasher) = self.lock_session(repo, id, range).await?;
        let before = hasher.clone();
        let (size, hasher) = self.append(id, offset, body, hasher).await?;
        let actual = match digest.algorithm() {
            Algorithm::Sha256 => hasher.finish(),
            // Sessions stream sha256; another algorithm needs one more pass.
            other => self.rehash(id, other).await?.1.finish(),
        };
        if let Err(e) = check_digest(digest, actual) {
            // A failed request changes nothing: its last chunk is dropped so
            // the client can retry the same PUT.
            self.inner.store.upload_truncate(id, offset).await?;
            *state = Some(HashState {
                offset,
                hasher: before,
            });
            return Err(e);
        }
        self.commit_blob(repo, id, digest, size, true).await?;
        *state = None;
        drop(state);
        self.inner.uploads.forget(id);
        metrics::gauge!("berth_uploads_in_progress").decrement(1.0);
        Ok(())
    }

    /// Cancels a session and removes its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        self.check_session(repo, id).await?;
        let slot = self.inner.uploads.slot(id);
        let _held = slot.lock().await;
        let mut tx = self.inner.meta.begin().await?;
        tx.delete_upload(id).await?;
        tx.commit().await?;
        self.inner.store.upload_abort(id).await?;
        self.inner.uploads.forget(id);
        metrics::gauge!("berth_uploads_in_progress").decrement(1.0);
        Ok(())
    }

    /// Takes the session's lock and its hash state at the current end,
    /// checking that a chunk with `range` starts there.
    async fn lock_session(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<ByteRange>,
    ) -> Result<(tokio::sync::OwnedMutexGuard<Option<HashState>>, u64, Hasher)> {
        // Touching the session checks it is in `repo` and tells the reaper it
        // is in use; one the reaper already took is unknown before any byte
        // is written (see reaper.rs).
        if !berth_storage::valid_upload_id(id) {
            return Err(Error::UploadUnknown(id.to_string()));
        }
        if !self.kept_alive_recently(repo, id).await? {
            // A transaction of its own (shared with other writers' commits).
            let mut tx = self.inner.meta.begin().await?;
            let alive = tx.keep_upload_alive(repo, id).await?;
            tx.commit().await?;
            if !alive {
                return Err(Error::UploadUnknown(id.to_string()));
            }
        }
        let mut state = self.inner.uploads.slot(id).lock_owned().await;
        let (offset, hasher) = self.resume_hash(id, state.take()).await?;
        if let Some(range) = range
            && range.start != offset
        {
            *state = Some(HashState { offset, hasher });
            return Err(Error::UploadRange { current: offset });
        }
        Ok((state, offset, hasher))
    }

    /// Whether the session is in `repo` and was kept alive less than
    /// `Options::upload_keepalive` ago, so that this request need not write:
    /// the reaper leaves it alone for at least the TTL minus that (reaper.rs).
    /// `UploadUnknown` if it is not in `repo`.
    async fn kept_alive_recently(&self, repo: &RepoName, id: &str) -> Result<bool> {
        let keepalive = self.inner.options.upload_keepalive;
        if keepalive.is_zero() {
            return Ok(false);
        }
        let row = self.session_row(repo, id).await?;
        let age = now_millis().saturating_sub(row.updated_at);
        Ok(age < i64::try_from(keepalive.as_millis()).unwrap_or(i64::MAX))
    }

    async fn check_session(&self, repo: &RepoName, id: &str) -> Result<()> {
        if !berth_storage::valid_upload_id(id) {
            return Err(Error::UploadUnknown(id.to_string()));
        }
        self.session_row(repo, id).await.map(drop)
    }

    /// The session's row, or `UploadUnknown` if it is not in `repo`.
    async fn session_row(&self, repo: &RepoName, id: &str) -> Result<UploadRow> {
        match self.inner.meta.upload(id).await? {
            Some(row) if row.repo == repo.as_str() => Ok(row),
            _ => Err(Error::UploadUnknown(id.to_string())),
        }
    }

    /// The session's hash state at its current end, from memory when it is
    /// current, else rebuilt from the stored bytes.
    async fn resume_hash(&self, id: &str, state: Option<HashState>) -> Result<(u64, Hasher)> {
        let size = self
            .inner
            .store
            .upload_size(id)
            .await?
            .ok_or_else(|| Error::UploadUnknown(id.to_string()))?;
        match state {
            Some(s) if s.offset == size => Ok((s.offset, s.hasher)),
            _ => self.rehash(id, Algorithm::Sha256).await,
        }
    }

    async fn rehash(&self, id: &str, algorithm: Algorithm) -> Result<(u64, Hasher)> {
        let mut hasher = Hasher::new(algorithm);
        let mut size = 0u64;
        let mut stream = self.inner.store.upload_read(id).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(berth_storage::Error::Io)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok((size, hasher))
    }

    async fn append(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        hasher: Hasher,
    ) -> Result<(u64, Hasher)> {
        match self
            .inner
            .store
            .upload_append(id, offset, body, hasher)
            .await
        {
            Ok((size, hasher)) => {
                metrics::counter!("berth_blob_bytes_in_total").increment(size - offset);
                Ok((size, hasher))
            }
            Err(berth_storage::Error::OffsetMismatch { current }) => {
                Err(Error::UploadRange { current })
            }
            Err(berth_storage::Error::NotFound) => Err(Error::UploadUnknown(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves the bytes into place (durable), then records and links the blob
    /// in one transaction, closing the session if it had a row.
    async fn commit_blob(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        size: u64,
        session: bool,
    ) -> Result<()> {
        self.precheck_blob_link(repo, digest, size).await?;
        // The digest's lock before the bytes become visible: GC deleting
        // this digest (row and object) runs wholly before or after (gc.rs).
        // Under the lock the store checks for the object itself, so bytes a
        // crashed GC deleted under a surviving row are written again.
        self.inner.store.upload_prepare(id).await?;
        let mut tx = self.inner.meta.begin().await?;
        tx.lock_digests(&[digest.as_str()], true).await?;
        let committed = self.inner.store.upload_commit_deferred(id, digest).await?;
        // The directory fsync runs while the rows are written (and, on
        // SQLite, beside other pushes' commits); the commit waits for it.
        tx.before_commit(async move { committed.durable().await.map_err(|e| e.to_string()) });
        // Before the blob's row: the quota's usage probe looks at links,
        // which the row does not change, and then all the writes go in one
        // round trip.
        let warning = self
            .check_blob_link(&mut tx, repo, digest, Some(size))
            .await?;
        tx.store_blob(repo, digest, Some(size), session.then_some(id))
            .await?;
        tx.commit().await?;
        self.quota_warned(warning);
        Ok(())
    }
}

fn check_digest(expected: &Digest, actual: Digest) -> Result<()> {
    if *expected == actual {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual,
        })
    }
}
