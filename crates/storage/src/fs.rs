//! Filesystem backend: `blobs/<alg>/<first two hex>/<hex>` and
//! `uploads/<id>` under a root directory.
//!
//! Writes go to the upload file, are fsynced, then renamed into place and the
//! directory fsynced, so a crash leaves either no blob or a whole one.
//! Hashing and writing run on a blocking thread fed through a channel, so the
//! network read, the hash and the disk write overlap.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_oci::{ByteRange, Digest, Hasher};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::{BlobStore, ByteStream, Committed, Error, ListedBlob, Result, valid_upload_id};

/// Read buffer for blob GETs: large enough that per-chunk overhead vanishes
/// next to the copy itself.
const READ_CHUNK: usize = 1024 * 1024;
/// Small network chunks are gathered to this size before they go to the
/// writer thread, one batch queued while it writes the last: an upload holds
/// a few hundred KiB of body. Four concurrent pushes peaked at 69 MiB of RSS
/// with 1 MiB batches and four queued, 37 MiB at 256 KiB and two, 25 MiB at
/// this size and one (with hyper's read buffer bounded, serve.rs), with no
/// throughput change measurable on this disk.
const WRITE_BATCH: usize = 128 * 1024;

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    /// Uploads fsynced by `upload_prepare` and not written since: their
    /// commit skips a second `fdatasync`, which on ext4 still flushes the
    /// device's cache although the file is clean.
    prepared: Arc<Mutex<HashSet<String>>>,
}

impl FsStore {
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsStore> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(FsStore {
            root,
            prepared: Arc::default(),
        })
    }

    /// Records that `id`'s bytes are durable as they stand (`true`), or
    /// forgets it because they are about to change (`false`).
    fn mark_prepared(&self, id: &str, prepared: bool) {
        let mut set = self.prepared.lock().expect("prepared set poisoned");
        if prepared {
            set.insert(id.to_string());
        } else {
            set.remove(id);
        }
    }

    /// Whether `id` is still as `upload_prepare` left it; forgets it.
    fn take_prepared(&self, id: &str) -> bool {
        self.prepared
            .lock()
            .expect("prepared set poisoned")
            .remove(id)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        if !valid_upload_id(id) {
            return Err(Error::NotFound);
        }
        Ok(self.root.join("uploads").join(id))
    }
}

fn not_found_as_none<T>(r: io::Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn fsync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Streams `len` bytes of `file` from `start` (to the end for `u64::MAX`).
/// One blocking thread reads straight into the buffers that go out, a few
/// chunks ahead of the network: one copy from the page cache, no per-chunk
/// hop through the blocking pool.
fn read_stream(mut file: File, start: u64, len: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        while left > 0 {
            let want = READ_CHUNK.min(usize::try_from(left).unwrap_or(usize::MAX));
            let mut buf = bytes::BytesMut::zeroed(want);
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            buf.truncate(n);
            left -= n as u64;
            // A closed channel means the client went away: stop reading.
            if tx.blocking_send(Ok(buf.freeze())).is_err() {
                return;
            }
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from(mut rx: mpsc::Receiver<io::Result<Bytes>>) -> ByteStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// Opens a file for reading; a missing file is `NotFound`.
async fn open_existing(path: PathBuf) -> Result<File> {
    blocking(move || File::open(path))
        .await
        .map_err(|e| match e {
            Error::Io(io) if io.kind() == io::ErrorKind::NotFound => Error::NotFound,
            other => other,
        })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(io::Error::other(e)))?
        .map_err(Error::from)
}

/// Names in `dir`, sorted; a missing directory is empty.
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                if let Ok(name) = entry?.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    names.sort();
    Ok(names)
}

/// Walks `blobs/<alg>/<xx>/<hex>` in digest order from after `after`
/// (`alg:hex`), reading only the shard directories it needs.
fn list_blobs(root: &Path, after: &str, limit: usize) -> io::Result<Vec<ListedBlob>> {
    let mut out = Vec::new();
    let (after_alg, after_hex) = after.split_once(':').unwrap_or(("", ""));
    for alg in sorted_names(root)? {
        if alg.as_str() < after_alg {
            continue;
        }
        for shard in sorted_names(&root.join(&alg))? {
            if alg == after_alg && shard.as_str() < after_hex.get(..2).unwrap_or("") {
                continue;
            }
            for hex in sorted_names(&root.join(&alg).join(&shard))? {
                let key = format!("{alg}:{hex}");
                if key.as_str() <= after {
                    continue;
                }
                let Ok(digest) = Digest::parse(&key) else {
                    continue;
                };
                let Ok(meta) = std::fs::metadata(root.join(&alg).join(&shard).join(&hex)) else {
                    continue;
                };
                out.push(ListedBlob {
                    digest,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl BlobStore for FsStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let meta = not_found_as_none(tokio::fs::metadata(self.blob_path(digest)).await)?;
        Ok(meta.map(|m| m.len()))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream> {
        let file = open_existing(self.blob_path(digest)).await?;
        let (start, len) = match range {
            None => (0, u64::MAX),
            Some(r) => (r.start, r.len()),
        };
        Ok(read_stream(file, start, len))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        not_found_as_none(tokio::fs::remove_file(self.blob_path(digest)).await)?;
        Ok(())
    }

    async fn upload_start(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        // Not fsynced: until the commit, losing a session to a power cut only
        // makes the client start it again.
        blocking(move || {
            File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map(drop)
        })
        .await
    }

    async fn upload_size(&self, id: &str) -> Result<Option<u64>> {
        let meta = not_found_as_none(tokio::fs::metadata(self.upload_path(id)?).await)?;
        Ok(meta.map(|m| m.len()))
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        mut data: ByteStream,
        hasher: Hasher,
    ) -> Result<(u64, Hasher)> {
        let path = self.upload_path(id)?;
        self.mark_prepared(id, false);
        let mut file =
            not_found_as_none(File::options().write(true).open(&path))?.ok_or(Error::NotFound)?;
        let current = file.seek(SeekFrom::End(0))?;
        if current != offset {
            return Err(Error::OffsetMismatch { current });
        }
        let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(1);
        let writer = tokio::task::spawn_blocking(move || -> io::Result<(u64, Hasher, File)> {
            let mut hasher = hasher;
            let mut size = offset;
            while let Some(batch) = rx.blocking_recv() {
                for chunk in batch {
                    hasher.update(&chunk);
                    file.write_all(&chunk)?;
                    size += chunk.len() as u64;
                }
            }
            Ok((size, hasher, file))
        });
        // Network chunks travel to the writer thread in batches (one channel
        // hop per `WRITE_BATCH`) without being copied into a bigger buffer.
        let mut batch = Vec::new();
        let mut batched = 0;
        let mut body_error = None;
        while let Some(item) = data.next().await {
            match item {
                Ok(chunk) => {
                    batched += chunk.len();
                    batch.push(chunk);
                    if batched >= WRITE_BATCH {
                        batched = 0;
                        if tx.send(std::mem::take(&mut batch)).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        if body_error.is_none() && !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        drop(tx);
        let (size, hasher, file) = writer.await.map_err(|e| Error::Io(io::Error::other(e)))??;
        if let Some(e) = body_error {
            // Keep the upload consistent with what the client was told: a failed
            // request appends nothing, so the next chunk can retry from `offset`.
            file.set_len(offset)?;
            return Err(Error::Body(e));
        }
        Ok((size, hasher))
    }

    async fn upload_truncate(&self, id: &str, size: u64) -> Result<()> {
        let path = self.upload_path(id)?;
        self.mark_prepared(id, false);
        blocking(move || {
            let file = File::options().write(true).open(&path)?;
            file.set_len(size)?;
            file.sync_data()
        })
        .await
        .map_err(|e| match e {
            Error::Io(io) if io.kind() == io::ErrorKind::NotFound => Error::NotFound,
            other => other,
        })
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream> {
        let file = open_existing(self.upload_path(id)?).await?;
        Ok(read_stream(file, 0, u64::MAX))
    }

    async fn upload_prepare(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        self.mark_prepared(id, false);
        blocking(move || File::open(&path)?.sync_data()).await?;
        self.mark_prepared(id, true);
        Ok(())
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<()> {
        self.upload_commit_deferred(id, digest)
            .await?
            .durable()
            .await
    }

    async fn upload_commit_deferred(&self, id: &str, digest: &Digest) -> Result<Committed> {
        let from = self.upload_path(id)?;
        let to = self.blob_path(digest);
        let synced = self.take_prepared(id);
        let dir = blocking(move || {
            let dir = to.parent().expect("blob path has a parent").to_path_buf();
            if to.exists() {
                // Content-addressed: the existing blob already has these
                // bytes. Its name is durable, or will be before the commit
                // that made it (holding the digest's lock, or ahead of this
                // one in SQLite's group commit) records it.
                std::fs::remove_file(&from).or_else(|e| match e.kind() {
                    io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })?;
                return Ok(None);
            }
            if !dir.exists() {
                std::fs::create_dir_all(&dir)?;
                fsync_dir(dir.parent().expect("blob dir has a parent"))?;
            }
            // Appends are not fsynced one by one: the data is made durable
            // once, before the blob gets its name (here, unless
            // `upload_prepare` did it and nothing was written since).
            if !synced {
                File::open(&from)?.sync_data()?;
            }
            std::fs::rename(&from, &to)?;
            Ok(Some(dir))
        })
        .await?;
        Ok(match dir {
            // The rename is durable once its directory is synced.
            Some(dir) => Committed(Some(tokio::task::spawn_blocking(move || fsync_dir(&dir)))),
            None => Committed::durable_now(),
        })
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        self.mark_prepared(id, false);
        not_found_as_none(tokio::fs::remove_file(self.upload_path(id)?).await)?;
        Ok(())
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<ListedBlob>> {
        let root = self.root.join("blobs");
        let after = after.map(|d| d.to_string()).unwrap_or_default();
        blocking(move || list_blobs(&root, &after, limit)).await
    }

    async fn ready(&self) -> Result<()> {
        let probe = self.root.join("uploads").join(".ready-probe");
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        crate::testsuite::run_all(&store).await;
    }

    /// The commit skips its own fdatasync only for bytes that
    /// `upload_prepare` synced and nothing changed since.
    #[tokio::test]
    async fn only_unchanged_prepared_uploads_skip_the_commit_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let body = |b: &'static [u8]| futures::stream::iter([Ok(Bytes::from_static(b))]).boxed();
        let sha = || Hasher::new(berth_oci::Algorithm::Sha256);
        store.upload_start("u1").await.unwrap();
        store
            .upload_append("u1", 0, body(b"ab"), sha())
            .await
            .unwrap();
        store.upload_prepare("u1").await.unwrap();
        assert!(store.prepared.lock().unwrap().contains("u1"));
        store
            .upload_append("u1", 2, body(b"cd"), sha())
            .await
            .unwrap();
        assert!(
            !store.take_prepared("u1"),
            "an append after prepare needs the sync"
        );

        store.upload_prepare("u1").await.unwrap();
        store.upload_truncate("u1", 3).await.unwrap();
        assert!(!store.take_prepared("u1"), "so does a truncate");

        store.upload_prepare("u1").await.unwrap();
        let digest = Digest::sha256_of(b"abc");
        store.upload_commit("u1", &digest).await.unwrap();
        assert!(
            store.prepared.lock().unwrap().is_empty(),
            "the commit forgets it"
        );
        assert_eq!(store.stat(&digest).await.unwrap(), Some(3));

        store.upload_start("u2").await.unwrap();
        store.upload_prepare("u2").await.unwrap();
        store.upload_abort("u2").await.unwrap();
        assert!(
            store.prepared.lock().unwrap().is_empty(),
            "so does an abort"
        );
    }

    #[tokio::test]
    async fn blob_layout_is_sharded_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"x");
        let path = store.blob_path(&d);
        assert!(path.ends_with(format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex())));
        assert!(store.upload_path("../../etc").is_err());
    }
}
