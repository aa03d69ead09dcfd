//! Manifests: push with validation, pull with content negotiation, delete.
//!
//! Manifest bytes are cached in memory by digest. The cache is safe in any
//! deployment because a digest names immutable bytes; whether a manifest is
//! present in a repository is still asked of the database on every request.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_meta::NewManifest;
use berth_oci::{Digest, MANIFEST_SIZE_LIMIT, Manifest, Reference, RepoName};
use bytes::Bytes;

use crate::{Error, Registry, Result};

/// Bytes of cached manifests before the cache is emptied and refilled.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub(crate) struct Cache {
    entries: Mutex<(usize, HashMap<Digest, Bytes>)>,
}

impl Cache {
    fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.entries
            .lock()
            .expect("cache poisoned")
            .1
            .get(digest)
            .cloned()
    }

    fn put(&self, digest: &Digest, body: Bytes) {
        let mut guard = self.entries.lock().expect("cache poisoned");
        let (used, map) = &mut *guard;
        if *used + body.len() > CACHE_BYTES {
            map.clear();
            *used = 0;
        }
        *used += body.len();
        map.insert(digest.clone(), body);
    }
}

/// A manifest as served.
#[derive(Debug, Clone)]
pub struct ServedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
pub struct ManifestPushed {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

impl Registry {
    /// Finds a manifest. `accept` lists the media types the client takes;
    /// empty means anything.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
        with_body: bool,
    ) -> Result<ServedManifest> {
        let found = match reference {
            Reference::Digest(d) => self
                .inner
                .meta
                .manifest_head(repo, d)
                .await?
                .map(|head| (d.clone(), head)),
            Reference::Tag(t) => self.inner.meta.tagged_manifest_head(repo, t).await?,
        };
        let (digest, head) = found.ok_or_else(|| Error::ManifestUnknown(reference.to_string()))?;
        if !acceptable(accept, &head.media_type) {
            return Err(Error::ManifestUnknown(format!(
                "{reference} is a {}, which the request's Accept header excludes",
                head.media_type
            )));
        }
        let body = if !with_body {
            Bytes::new()
        } else if let Some(body) = self.inner.manifests.get(&digest) {
            body
        } else {
            let stored = self
                .inner
                .meta
                .manifest(repo, &digest)
                .await?
                .ok_or_else(|| Error::ManifestUnknown(reference.to_string()))?;
            let body = Bytes::from(stored.body);
            self.inner.manifests.put(&digest, body.clone());
            body
        };
        if with_body {
            // A pull (HEADs are not): counted in memory, written behind.
            self.record_pull(repo, &digest);
        }
        Ok(ServedManifest {
            digest,
            media_type: head.media_type,
            size: head.size,
            body,
        })
    }

    /// Validates and stores a manifest, tagging it when `reference` is a tag.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<ManifestPushed> {
        if body.len() > MANIFEST_SIZE_LIMIT {
            return Err(Error::ManifestTooLarge {
                size: body.len(),
                limit: MANIFEST_SIZE_LIMIT,
            });
        }
        let manifest = Manifest::parse(&body, content_type)
            .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &body);
                if actual != *expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&body),
        };
        let refs = manifest.references();
        let subject = manifest.subject.as_ref().map(|s| s.digest.clone());
        let annotations = manifest
            .annotations
            .as_ref()
            .map(|a| serde_json::to_string(a).expect("string map serializes"));

        let mut tx = self.inner.meta.begin().await?;
        // GC may not delete what this push checks until it commits (gc.rs).
        let mut locked: Vec<&str> = refs.iter().map(|r| r.digest.as_str()).collect();
        locked.push(digest.as_str());
        locked.extend(subject.as_ref().map(|s| s.as_str()));
        tx.lock_digests(&locked, false).await?;
        let sizes = tx.ref_sizes(repo, &refs).await?;
        for (r, size) in refs.iter().zip(sizes) {
            match size {
                None => {
                    return Err(Error::ManifestBlobUnknown {
                        field: r.field.clone(),
                        digest: r.digest.clone(),
                    });
                }
                Some(size) if size != r.size => {
                    return Err(Error::ManifestInvalid(format!(
                        "{}.size is {} but {} has {size} bytes",
                        r.field, r.size, r.digest
                    )));
                }
                Some(_) => {}
            }
        }
        let warning = self
            .check_manifest_put(&mut tx, repo, reference, &digest, body.len())
            .await?;
        let tag = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        tx.insert_manifest_tagged(
            repo,
            NewManifest {
                digest: &digest,
                media_type: manifest.media_type.as_str(),
                artifact_type: manifest.artifact_type.as_deref(),
                subject: subject.as_ref(),
                annotations,
                body: &body,
                refs: &refs,
            },
            tag,
        )
        .await?;
        tx.commit().await?;
        self.quota_warned(warning);
        // Not cached here: the first read fills the cache. Most pushed
        // manifests (CI builds) are never read from this node, and caching
        // them only grew the server's memory under push load.
        Ok(ManifestPushed { digest, subject })
    }

    /// Deletes a manifest by digest (with its tags), or just the tag, on
    /// behalf of the system (see [`Registry::delete_manifest_as`]).
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        self.delete_manifest_as(repo, reference, "system").await
    }

    /// Deletes a manifest by digest (with its tags), or just the tag, as
    /// `who`. What goes is moved to the trash first, restorable for the
    /// restore window (`trash.rs`).
    pub async fn delete_manifest_as(
        &self,
        repo: &RepoName,
        reference: &Reference,
        who: &str,
    ) -> Result<()> {
        let mut tx = self.inner.meta.begin().await?;
        self.check_manifest_delete(&mut tx, repo, reference).await?;
        let deleted = match reference {
            Reference::Digest(d) => {
                tx.trash_manifest(repo.as_str(), d.as_str(), who)
                    .await?
                    .is_some()
                    && tx.delete_manifest(repo, d).await?
            }
            Reference::Tag(t) => {
                tx.trash_tag(repo.as_str(), t.as_str(), who)
                    .await?
                    .is_some()
                    && tx.delete_tag(repo, t).await?
            }
        };
        if !deleted {
            return Err(Error::ManifestUnknown(reference.to_string()));
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Content negotiation. Clients that list manifest types get only those;
/// wildcards, `application/json` and no Accept at all take anything.
fn acceptable(accept: &[String], media_type: &str) -> bool {
    accept.is_empty()
        || accept.iter().any(|a| {
            a == media_type || a == "*/*" || a == "application/*" || a == "application/json"
        })
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    #[test]
    fn negotiation() {
        let oci = "application/vnd.oci.image.manifest.v1+json";
        assert!(acceptable(&[], oci));
        assert!(acceptable(&["*/*".into()], oci));
        assert!(acceptable(&[oci.into()], oci));
        assert!(!acceptable(
            &["application/vnd.docker.distribution.manifest.v2+json".into()],
            oci
        ));
    }
}
