//! The registry's use cases: push, pull, mount, delete, list and referrers,
//! over a metadata store and a blob store.
//!
//! This crate never sees HTTP: callers pass parsed values (`RepoName`,
//! `Digest`, `Reference`, byte streams) and get typed results or an
//! [`Error`] whose [`Error::code`] names the distribution-spec error.
//!
//! Invariants kept here (DESIGN.md, data rules):
//! - blob bytes are hashed while streaming and durable in the store before
//!   the metadata transaction that makes them visible commits;
//! - a blob is readable in a repository only through a link;
//! - a manifest is stored only when everything it references is present;
//! - each mutation is one metadata transaction.

pub mod access;
mod blobs;
mod error;
mod gc;
mod listing;
mod manifests;
pub mod policy;
mod reaper;
pub mod retention;
mod stats;
mod trash;
mod uploads;

use std::sync::Arc;

use berth_meta::MetaStore;
use berth_storage::BlobStore;

pub use access::{Access, AccessSettings, Caller, Origin};
pub use berth_storage::ByteStream;
pub use blobs::BlobRead;
pub use error::{Error, Result};
pub use gc::{GC_ACTOR, GcOptions, GcReport, StopFlag};
pub use listing::{Page, Referrers};
pub use manifests::{ManifestPushed, ServedManifest};
pub use reaper::ReapReport;
pub use stats::ArtifactInfo;
pub use trash::TrashItem;
pub use uploads::{MountOutcome, UploadStatus};

/// The registry façade the HTTP layer calls. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// Deployment choices the use cases depend on.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Answer blob reads with a presigned URL of this lifetime when the
    /// store can sign one (S3), instead of proxying the bytes.
    pub blob_redirect: Option<std::time::Duration>,
    /// Garbage collection and the restore window.
    pub gc: GcOptions,
    /// A chunk or finishing PUT on a session kept alive less than this long
    /// ago does not keep it alive again (one write transaction less per
    /// request; see reaper.rs). Zero, the default, keeps it alive on every
    /// request; the server uses a quarter of the upload TTL.
    pub upload_keepalive: std::time::Duration,
}

struct Inner {
    meta: MetaStore,
    store: Arc<dyn BlobStore>,
    options: Options,
    uploads: uploads::HashStates,
    manifests: manifests::Cache,
    policies: policy::State,
    pulls: stats::PullCounter,
}

impl Registry {
    pub fn new(meta: MetaStore, store: Arc<dyn BlobStore>) -> Registry {
        Registry::with_options(meta, store, Options::default())
    }

    pub fn with_options(meta: MetaStore, store: Arc<dyn BlobStore>, options: Options) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                meta,
                store,
                options,
                uploads: uploads::HashStates::default(),
                manifests: manifests::Cache::default(),
                policies: policy::State::default(),
                pulls: stats::PullCounter::default(),
            }),
        }
    }

    /// Readiness: the database answers and the store accepts writes.
    pub async fn ready(&self) -> Result<()> {
        self.inner.meta.ready().await?;
        self.inner.store.ready().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.inner.meta.close().await;
    }
}
