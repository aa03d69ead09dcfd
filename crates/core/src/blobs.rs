//! Reading and deleting blobs in a repository.

use berth_oci::{ByteRange, Digest, RangeError, RepoName, parse_range_header};
use berth_storage::ByteStream;

use crate::{Error, Registry, Result};

/// A blob being served: its full size, the range served (if any) and the bytes.
pub struct BlobRead {
    pub size: u64,
    pub range: Option<ByteRange>,
    pub body: ByteStream,
}

impl Registry {
    /// Size of a blob linked to `repo` whose bytes the store holds (a
    /// `HEAD`: a client that hears "present" skips the upload, so a row
    /// whose bytes a crash took must answer `BLOB_UNKNOWN`; see gc.rs).
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let size = self.linked_size(repo, digest).await?;
        if self.inner.store.stat(digest).await?.is_none() {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        Ok(size)
    }

    /// Size of a blob linked to `repo`, from the database alone.
    async fn linked_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        self.inner
            .meta
            .linked_blob(repo, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))
    }

    /// Streams a linked blob, whole or the range of a `Range` header.
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<&str>,
    ) -> Result<BlobRead> {
        let size = self.linked_size(repo, digest).await?;
        let range = match range {
            None => None,
            Some(header) => match parse_range_header(header, size) {
                Ok(r) => Some(r),
                Err(RangeError::Unsatisfiable { size }) => {
                    return Err(Error::RangeNotSatisfiable { size });
                }
                // RFC 9110: an unparseable Range is ignored and the whole blob served.
                Err(RangeError::Malformed(_)) => None,
            },
        };
        let body = match self.inner.store.get(digest, range).await {
            Ok(body) => body,
            // Linked but missing from the store: treat as unknown, never 5xx loop.
            Err(berth_storage::Error::NotFound) => return Err(Error::BlobUnknown(digest.clone())),
            Err(e) => return Err(e.into()),
        };
        metrics::counter!("berth_blob_bytes_out_total").increment(range.map_or(size, |r| r.len()));
        Ok(BlobRead { size, range, body })
    }

    /// A presigned URL to fetch a linked blob from the store directly, when
    /// redirects are configured and the store can sign; `None` means proxy.
    pub async fn blob_redirect(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        let Some(expiry) = self.inner.options.blob_redirect else {
            return Ok(None);
        };
        let size = self.linked_size(repo, digest).await?;
        let url = self.inner.store.presigned_get(digest, expiry).await?;
        if url.is_some() {
            metrics::counter!("berth_blob_redirects_total").increment(1);
            metrics::counter!("berth_blob_bytes_redirected_total").increment(size);
        }
        Ok(url)
    }

    /// Removes the blob's link from `repo`; the bytes stay for other
    /// repositories and are reclaimed by garbage collection.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let mut tx = self.inner.meta.begin().await?;
        if !tx.unlink_blob(repo, digest).await? {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        tx.commit().await?;
        Ok(())
    }
}
