//! The restore window (issue 5, scope 4): a manifest deleted by digest (with
//! its bytes, references and tags) or a tag deleted by name goes to the
//! trash in the deleting transaction (`Registry::delete_manifest_as`).
//! Nothing that answers `/v2` reads the trash; garbage collection counts
//! trash entries as references (their blobs, child manifests and subjects
//! stay) and purges entries older than the restore window.
//!
//! A restore puts the entry back if its tag names are free (a tag that now
//! names another manifest is a conflict naming the tag), its child
//! manifests are present and its blobs still exist (they do: the entry
//! kept them); it re-links the blobs to the repository if a link went.
//! What it brings back is checked against the project's quota exactly as
//! a push of it would be (each re-linked blob, then the manifest: one more
//! artifact and its body's bytes), in the same transaction, and refused
//! with the push's `DENIED` message when it does not fit.
//! Listing and restoring are checked with `decide()`: Harbor's
//! `artifact:delete` to list (maintainers and up see what was deleted),
//! and `artifact:create` plus `artifact:delete` to restore.

use berth_auth::{
    Action, DEFAULT_PROJECT, Decision, Denial, Permission, Project, Resource, Role, Target, decide,
};
use berth_meta::{RepoRange, TrashRow};
use berth_oci::{Digest, Reference, RepoName};

use crate::access::manage::Actor;
use crate::access::now_millis;
use crate::{Access, Error, Registry, Result};

/// A trash entry as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashItem {
    pub id: i64,
    pub repository: String,
    /// `manifest` (deleted by digest, with its tags) or `tag` (a tag deleted
    /// by name; the manifest stayed).
    pub kind: String,
    pub digest: String,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    /// The tags it had (a `tag` entry: that one tag).
    pub tags: Vec<String>,
    /// Milliseconds since the epoch.
    pub deleted_at: i64,
    /// Who deleted it (a user, robot, or `system`).
    pub deleted_by: String,
    /// When GC may purge it (the end of the restore window).
    pub expires_at: i64,
}

/// The repositories of `project`: `project/…`, and for the default project
/// also single-segment names.
fn range(project: &str) -> (String, String, bool) {
    (
        format!("{project}/"),
        format!("{project}0"),
        project == DEFAULT_PROJECT,
    )
}

fn conflict(message: String) -> Error {
    Error::Conflict(message)
}

impl Registry {
    fn trash_item(&self, row: TrashRow) -> TrashItem {
        let window = self.inner.options.gc.restore_window.as_millis() as i64;
        TrashItem {
            id: row.id,
            repository: row.repo,
            kind: row.kind,
            digest: row.digest,
            media_type: row.media_type,
            size: row.size.map(|s| s as u64),
            tags: row.tags,
            deleted_at: row.deleted_at,
            deleted_by: row.deleted_by,
            expires_at: row.deleted_at.saturating_add(window),
        }
    }

    /// The trash of a project, oldest first, after id `after`. The caller
    /// checked permissions ([`Access::authorize_trash`]).
    pub async fn list_trash(
        &self,
        project: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<TrashItem>> {
        let (from, to, top_level) = range(project);
        let rows = self
            .inner
            .meta
            .trash(
                RepoRange {
                    from: &from,
                    to: &to,
                    top_level,
                },
                after.unwrap_or(0),
                limit.clamp(1, 1000) as i64,
            )
            .await?;
        Ok(rows.into_iter().map(|r| self.trash_item(r)).collect())
    }

    /// Brings a trash entry of `project` back (see the module
    /// documentation) and removes it from the trash; returns what was
    /// restored. The caller checked permissions.
    pub async fn restore_trash(&self, project: &str, id: i64) -> Result<TrashItem> {
        let (from, to, top_level) = range(project);
        let mut tx = self.inner.meta.begin().await?;
        let Some(entry) = tx
            .trash_entry(
                id,
                RepoRange {
                    from: &from,
                    to: &to,
                    top_level,
                },
            )
            .await?
        else {
            return Err(Error::NotFound(format!(
                "trash entry {id} does not exist in project {project:?}"
            )));
        };
        // GC may not delete what this restore relies on until it commits.
        let mut locked: Vec<&str> = entry.refs.iter().map(|(d, _)| d.as_str()).collect();
        locked.push(&entry.row.digest);
        locked.extend(entry.subject.as_deref());
        tx.lock_digests(&locked, false).await?;
        if !tx.remove_trash(id).await? {
            return Err(Error::NotFound(format!(
                "trash entry {id} was restored or purged meanwhile"
            )));
        }
        let row = &entry.row;
        let repo = RepoName::parse(&row.repo)
            .map_err(|e| Error::Meta(berth_meta::Error::Corrupt(format!("trash repo: {e}"))))?;
        let digest = Digest::parse(&row.digest)
            .map_err(|e| Error::Meta(berth_meta::Error::Corrupt(format!("trash digest: {e}"))))?;
        let present = tx.manifest_exists(&repo, &digest).await?;
        // What the restore brings back counts against the project's quota
        // as a push of it would: each blob it re-links, then the manifest
        // (an artifact, and its body's bytes). Checked here, in the
        // restoring transaction, with the push's own checks.
        let mut warning = None;
        match row.kind.as_str() {
            "manifest" if !present => {
                for (child, kind) in &entry.refs {
                    let child_digest = Digest::parse(child).map_err(|e| {
                        Error::Meta(berth_meta::Error::Corrupt(format!("trash ref: {e}")))
                    })?;
                    if kind == "manifest" {
                        if !tx.manifest_exists(&repo, &child_digest).await? {
                            return Err(conflict(format!(
                                "manifest {child} that {} references is no longer in {}; \
                                 restore it first",
                                row.digest, row.repo
                            )));
                        }
                    } else if tx.blob_size(&child_digest).await?.is_none() {
                        return Err(conflict(format!(
                            "blob {child} that {} references is gone",
                            row.digest
                        )));
                    } else if !tx.is_linked(&repo, &child_digest).await? {
                        if let Some(w) = self
                            .check_blob_link(&mut tx, &repo, &child_digest, None)
                            .await?
                        {
                            warning = Some(w);
                        }
                        tx.link_blob(&repo, &child_digest).await?;
                    }
                }
                let size = match (&entry.body, row.size) {
                    (Some(body), _) => body.len(),
                    (None, size) => size.unwrap_or(0).max(0) as usize,
                };
                if let Some(w) = self
                    .check_manifest_put(
                        &mut tx,
                        &repo,
                        &Reference::Digest(digest.clone()),
                        &digest,
                        size,
                    )
                    .await?
                {
                    warning = Some(w);
                }
                tx.restore_manifest(&entry).await?;
            }
            "manifest" => {}
            _ if !present => {
                return Err(conflict(format!(
                    "manifest {} that tag {} pointed at was deleted too; restore it first",
                    row.digest,
                    row.tags.join(", ")
                )));
            }
            _ => {}
        }
        for (name, updated_at) in &entry.tag_times {
            match tx.tag_now(&row.repo, name).await? {
                Some(now) if now != row.digest => {
                    return Err(conflict(format!(
                        "tag {name} of {} now points at {now}; delete or move it first",
                        row.repo
                    )));
                }
                Some(_) => {}
                None => {
                    tx.restore_tag(&row.repo, name, &row.digest, *updated_at)
                        .await?
                }
            }
        }
        tx.commit().await?;
        self.quota_warned(warning);
        metrics::counter!("berth_trash_restored_total").increment(1);
        Ok(self.trash_item(entry.row))
    }
}

impl Access {
    /// Checks that `actor` may list (`restore == false`) or restore a
    /// project's trash: `artifact:delete`, and to restore also
    /// `artifact:create`. `NotFound` when the project does not exist.
    pub async fn authorize_trash(&self, actor: &Actor, project: &str, restore: bool) -> Result<()> {
        let row = self
            .meta()
            .project_by_name(project)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project {project:?} does not exist")))?;
        let roles: Vec<Role> = match &actor.principal {
            berth_auth::Principal::User { id, groups, .. } => self
                .meta()
                .member_roles(row.id, Some(*id), groups)
                .await?
                .iter()
                .filter_map(|r| r.parse::<Role>().ok())
                .collect(),
            _ => Vec::new(),
        };
        let project_ref = Project {
            name: row.name.clone(),
            public: row.public,
        };
        let mut needs = vec![Permission::new(Resource::Artifact, Action::Delete)];
        if restore {
            needs.push(Permission::new(Resource::Artifact, Action::Create));
        }
        let what = if restore {
            format!("restoring from the trash of project {project:?}")
        } else {
            format!("reading the trash of project {project:?}")
        };
        for permission in needs {
            let target = Target::Project {
                project: &project_ref,
                roles: &roles,
            };
            deny_unless(
                actor,
                decide(&actor.principal, target, permission, now_millis()),
                permission,
                &what,
            )?;
        }
        Ok(())
    }

    /// Checks that `actor` may run garbage collection (`run`) or read its
    /// history: Harbor's system-level `garbage-collection:create` /
    /// `garbage-collection:list` (system admins).
    pub fn authorize_gc(&self, actor: &Actor, run: bool) -> Result<()> {
        let permission = Permission::new(
            Resource::GarbageCollection,
            if run { Action::Create } else { Action::List },
        );
        let what = if run {
            "running garbage collection"
        } else {
            "reading garbage collection runs"
        };
        deny_unless(
            actor,
            decide(&actor.principal, Target::System, permission, now_millis()),
            permission,
            what,
        )
    }
}

/// The error for a denial: 401 for anonymous or an expired robot, 403
/// naming the permission otherwise.
fn deny_unless(
    actor: &Actor,
    decision: Decision,
    permission: Permission,
    what: &str,
) -> Result<()> {
    match decision {
        Decision::Allow => Ok(()),
        Decision::Deny(Denial::AuthenticationRequired) => Err(Error::Unauthenticated {
            message: "authentication required".into(),
            problem: None,
        }),
        Decision::Deny(Denial::Expired) => Err(Error::Unauthenticated {
            message: "the robot account has expired".into(),
            problem: None,
        }),
        Decision::Deny(Denial::Forbidden) => Err(Error::Denied(format!(
            "{what} needs the {permission} permission, which {} does not have",
            actor.principal.subject()
        ))),
    }
}
