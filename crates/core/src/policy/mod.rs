//! Per-project policies that guard pushes and deletions (Harbor's model):
//!
//! - [`immutable`]: immutable tag rules. A tag whose repository and name
//!   match an enabled rule is created once and then never moved to another
//!   manifest nor deleted, by anybody (system admins included).
//! - [`quota`]: storage bytes and artifact count limits, with usage computed
//!   exactly from the metadata (a blob shared by several repositories of a
//!   project counts once) inside the transaction of the push it checks.
//! - [`manage`]: the `/api/v1` use cases that read and change both.
//!
//! The registry's use cases call in here from inside their own metadata
//! transaction: [`Registry::check_manifest_put`],
//! [`Registry::check_manifest_delete`] and [`Registry::check_blob_link`];
//! a push that crossed a quota's warning threshold is reported after its
//! commit with [`Registry::quota_warned`].

pub mod immutable;
pub mod manage;
pub mod pattern;
pub mod quota;

use std::sync::OnceLock;

use berth_meta::Tx;
use berth_oci::{Digest, Reference, RepoName};

use crate::access::{AuditEvent, Auditor, project_of};
use crate::{Registry, Result};

pub use immutable::{ImmutableRule, Selector};
pub use pattern::Pattern;
pub use quota::{QuotaWarning, human_bytes};

/// What the registry keeps for its policies: where quota warnings go.
#[derive(Default)]
pub(crate) struct State {
    auditor: OnceLock<Auditor>,
}

impl Registry {
    /// Records quota warnings (`quota.warning`) in the audit log. Without
    /// it, a crossing is still noted in the quota row but not reported.
    pub fn set_auditor(&self, auditor: Auditor) {
        let _ = self.inner.policies.auditor.set(auditor);
    }

    /// The audit log the registry's own work (quota warnings, GC's
    /// deletions) goes to, when [`Registry::set_auditor`] gave it one.
    pub(crate) fn auditor(&self) -> Option<&Auditor> {
        self.inner.policies.auditor.get()
    }

    /// Inside a manifest push's transaction, before it stores anything:
    /// refuses moving an immutable tag and exceeding the project's quota.
    pub(crate) async fn check_manifest_put(
        &self,
        tx: &mut Tx,
        repo: &RepoName,
        reference: &Reference,
        digest: &Digest,
        size: usize,
    ) -> Result<Option<QuotaWarning>> {
        // One query finds out which checks apply; most projects have neither.
        let in_force = tx.policies_in_force(project_of(repo)).await?;
        if let (Reference::Tag(tag), true) = (reference, in_force.immutable_rules) {
            immutable::check_tag_move(tx, repo, tag, digest).await?;
        }
        if !in_force.quota_limit {
            return Ok(None);
        }
        quota::check(
            tx,
            project_of(repo),
            quota::Addition::Manifest {
                repo,
                digest,
                size: size as u64,
            },
        )
        .await
    }

    /// Inside a manifest or tag deletion's transaction: refuses deleting an
    /// immutable tag, or a manifest that carries one.
    pub(crate) async fn check_manifest_delete(
        &self,
        tx: &mut Tx,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<()> {
        immutable::check_delete(tx, repo, reference).await
    }

    /// Inside a blob commit's or mount's transaction, before the link:
    /// refuses exceeding the project's storage quota. `size` is the blob's
    /// (looked up when `None`).
    pub(crate) async fn check_blob_link(
        &self,
        tx: &mut Tx,
        repo: &RepoName,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Option<QuotaWarning>> {
        let size = match size {
            Some(s) => s,
            None => tx.blob_size(digest).await?.unwrap_or(0),
        };
        quota::check(tx, project_of(repo), quota::Addition::Blob { digest, size }).await
    }

    /// The same check, outside any transaction, before a blob's bytes are
    /// moved into place: a push that will be refused then leaves no stored
    /// blob behind (the check in the transaction still decides).
    pub(crate) async fn precheck_blob_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        quota::precheck(
            &self.inner.meta,
            project_of(repo),
            quota::Addition::Blob { digest, size },
        )
        .await
    }

    /// After the commit of a push the check let through: reports a quota
    /// warning threshold it crossed.
    pub(crate) fn quota_warned(&self, warning: Option<QuotaWarning>) {
        let Some(w) = warning else { return };
        tracing::warn!(project = %w.project, "{}", w.details());
        if let Some(auditor) = self.auditor() {
            auditor.record(AuditEvent::system(
                "quota.warning",
                format!("project/{}", w.project),
                Some(&w.project),
                &w.details(),
            ));
        }
    }
}
