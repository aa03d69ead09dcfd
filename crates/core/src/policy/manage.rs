//! The `/api/v1` use cases of immutable tag rules and quotas. Each checks
//! the caller with `decide()` (Harbor's permissions: `immutable-tag:*` for
//! maintainers and above, `quota:read` for members, `quota:update` for
//! system admins only), makes its change in one transaction and records an
//! audit event.

use berth_auth::{
    Action, Decision, Denial, Permission, Principal, Project, Resource, Role, Target, decide,
};
use berth_meta::{
    ImmutableRuleFields, ImmutableRuleRow, PendingDeletion, ProjectRow, ProjectUsage,
};

use super::immutable::Selector;
use super::quota::{DEFAULT_WARN_PERCENT, human_bytes};
use crate::access::manage::Actor;
use crate::access::{Access, AuditEvent};
use crate::{Error, Result};

const RULE_LIST: Permission = Permission::new(Resource::ImmutableTag, Action::List);
const RULE_CREATE: Permission = Permission::new(Resource::ImmutableTag, Action::Create);
const RULE_UPDATE: Permission = Permission::new(Resource::ImmutableTag, Action::Update);
const RULE_DELETE: Permission = Permission::new(Resource::ImmutableTag, Action::Delete);
const QUOTA_READ: Permission = Permission::new(Resource::Quota, Action::Read);
const QUOTA_UPDATE: Permission = Permission::new(Resource::Quota, Action::Update);

/// Most immutable rules one project may have.
pub const MAX_IMMUTABLE_RULES: usize = 50;

/// One side of a rule as the API shows and takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorSpec {
    pub pattern: String,
    /// The rule applies to what does NOT match.
    pub excludes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableRuleInfo {
    pub id: i64,
    pub project: String,
    pub repositories: SelectorSpec,
    pub tags: SelectorSpec,
    pub disabled: bool,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ImmutableRuleInfo {
    fn from_row(project: &str, r: ImmutableRuleRow) -> ImmutableRuleInfo {
        ImmutableRuleInfo {
            id: r.id,
            project: project.to_string(),
            repositories: SelectorSpec {
                pattern: r.repo_pattern,
                excludes: r.repo_excludes,
            },
            tags: SelectorSpec {
                pattern: r.tag_pattern,
                excludes: r.tag_excludes,
            },
            disabled: r.disabled,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A new rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImmutableRule {
    pub repositories: SelectorSpec,
    pub tags: SelectorSpec,
    pub disabled: bool,
}

/// A change to a rule: what is `None` stays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImmutableRulePatch {
    pub repositories: Option<SelectorSpec>,
    pub tags: Option<SelectorSpec>,
    pub disabled: Option<bool>,
}

/// A project's limits (`-1` unlimited), usage and what the usage is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaInfo {
    pub project: String,
    pub storage_limit: i64,
    pub artifact_limit: i64,
    pub warn_percent: i64,
    pub usage: ProjectUsage,
    /// What deleted manifests still in the restore window hold on to.
    pub pending_deletion: PendingDeletion,
    /// Usage over limit, the fuller of the two; `None` when unlimited.
    pub ratio: Option<f64>,
    /// Usage is at or above the warning threshold (as last checked).
    pub warned: bool,
}

/// A change to a quota: what is `None` stays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaPatch {
    pub storage_limit: Option<i64>,
    pub artifact_limit: Option<i64>,
    pub warn_percent: Option<i64>,
}

/// A project and the caller's roles in it.
struct Ctx {
    row: ProjectRow,
    project: Project,
    roles: Vec<Role>,
}

impl Ctx {
    fn target(&self) -> Target<'_> {
        Target::Project {
            project: &self.project,
            roles: &self.roles,
        }
    }
}

fn check(principal: &Principal, ctx: &Ctx, permission: Permission, what: &str) -> Result<()> {
    match decide(
        principal,
        ctx.target(),
        permission,
        crate::access::now_millis(),
    ) {
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
            "{what} in project {:?} needs the {permission} permission, which {} does not have",
            ctx.row.name,
            principal.subject()
        ))),
    }
}

fn invalid(field: &str, message: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{field}: {message}"))
}

fn selector(field: &str, spec: &SelectorSpec) -> Result<()> {
    Selector::parse(&spec.pattern, spec.excludes)
        .map(drop)
        .map_err(|e| invalid(&format!("{field}.pattern"), e))
}

fn limit(field: &str, value: i64) -> Result<i64> {
    if value < -1 {
        return Err(invalid(
            field,
            format!("must be -1 (unlimited) or at least 0, got {value}"),
        ));
    }
    Ok(value)
}

fn event(actor: &Actor, action: &str, resource: String, project: &str) -> AuditEvent {
    AuditEvent::by(&actor.principal, action, resource)
        .project(project)
        .from_addr(actor.origin.addr)
}

fn describe(fields: &ImmutableRuleFields<'_>) -> String {
    let side = |pattern: &str, excludes: bool| {
        format!(
            "{}{pattern:?}",
            if excludes { "excludes " } else { "matches " }
        )
    };
    format!(
        "repositories {}, tags {}{}",
        side(fields.repo_pattern, fields.repo_excludes),
        side(fields.tag_pattern, fields.tag_excludes),
        if fields.disabled { ", disabled" } else { "" }
    )
}

impl Access {
    async fn policy_ctx(&self, principal: &Principal, name: &str) -> Result<Ctx> {
        let row = self
            .meta()
            .project_by_name(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project {name:?} does not exist")))?;
        let roles = match principal {
            Principal::User { id, groups, .. } => self
                .meta()
                .member_roles(row.id, Some(*id), groups)
                .await?
                .iter()
                .filter_map(|r| r.parse::<Role>().ok())
                .collect(),
            _ => Vec::new(),
        };
        Ok(Ctx {
            project: Project {
                name: row.name.clone(),
                public: row.public,
            },
            row,
            roles,
        })
    }

    pub async fn list_immutable_rules(
        &self,
        actor: &Actor,
        project: &str,
    ) -> Result<Vec<ImmutableRuleInfo>> {
        let ctx = self.policy_ctx(&actor.principal, project).await?;
        check(
            &actor.principal,
            &ctx,
            RULE_LIST,
            "listing immutable tag rules",
        )?;
        let rows = self.meta().immutable_rules(ctx.row.id).await?;
        Ok(rows
            .into_iter()
            .map(|r| ImmutableRuleInfo::from_row(project, r))
            .collect())
    }

    pub async fn get_immutable_rule(
        &self,
        actor: &Actor,
        project: &str,
        id: i64,
    ) -> Result<ImmutableRuleInfo> {
        let ctx = self.policy_ctx(&actor.principal, project).await?;
        check(
            &actor.principal,
            &ctx,
            RULE_LIST,
            "reading immutable tag rules",
        )?;
        self.rule_of(&ctx, id).await
    }

    async fn rule_of(&self, ctx: &Ctx, id: i64) -> Result<ImmutableRuleInfo> {
        self.meta()
            .immutable_rule(ctx.row.id, id)
            .await?
            .map(|r| ImmutableRuleInfo::from_row(&ctx.row.name, r))
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "project {:?} has no immutable tag rule {id}",
                    ctx.row.name
                ))
            })
    }

    pub async fn create_immutable_rule(
        &self,
        actor: &Actor,
        project: &str,
        new: NewImmutableRule,
    ) -> Result<ImmutableRuleInfo> {
        let ctx = self.policy_ctx(&actor.principal, project).await?;
        check(
            &actor.principal,
            &ctx,
            RULE_CREATE,
            "creating immutable tag rules",
        )?;
        selector("repositories", &new.repositories)?;
        selector("tags", &new.tags)?;
        let fields = ImmutableRuleFields {
            repo_pattern: &new.repositories.pattern,
            repo_excludes: new.repositories.excludes,
            tag_pattern: &new.tags.pattern,
            tag_excludes: new.tags.excludes,
            disabled: new.disabled,
        };
        let existing = self.meta().immutable_rules(ctx.row.id).await?;
        if existing.len() >= MAX_IMMUTABLE_RULES {
            return Err(Error::Conflict(format!(
                "project {project:?} already has {MAX_IMMUTABLE_RULES} immutable tag rules, the most it may have"
            )));
        }
        if let Some(same) = existing.iter().find(|r| same_selectors(r, &fields)) {
            return Err(Error::Conflict(format!(
                "immutable tag rule {} of project {project:?} has the same selectors",
                same.id
            )));
        }
        let mut tx = self.meta().begin().await?;
        let id = tx
            .insert_immutable_rule(ctx.row.id, fields, actor.principal.subject())
            .await?;
        tx.commit().await?;
        self.auditor().record(
            event(
                actor,
                "immutable_rule.create",
                format!("project/{project}/immutable-rules/{id}"),
                project,
            )
            .details(describe(&fields)),
        );
        self.rule_of(&ctx, id).await
    }

    pub async fn update_immutable_rule(
        &self,
        actor: &Actor,
        project: &str,
        id: i64,
        patch: ImmutableRulePatch,
    ) -> Result<ImmutableRuleInfo> {
        let ctx = self.policy_ctx(&actor.principal, project).await?;
        check(
            &actor.principal,
            &ctx,
            RULE_UPDATE,
            "changing immutable tag rules",
        )?;
        let current = self.rule_of(&ctx, id).await?;
        let repositories = patch.repositories.unwrap_or(current.repositories);
        let tags = patch.tags.unwrap_or(current.tags);
        selector("repositories", &repositories)?;
        selector("tags", &tags)?;
        let fields = ImmutableRuleFields {
            repo_pattern: &repositories.pattern,
            repo_excludes: repositories.excludes,
            tag_pattern: &tags.pattern,
            tag_excludes: tags.excludes,
            disabled: patch.disabled.unwrap_or(current.disabled),
        };
        if let Some(same) = self
            .meta()
            .immutable_rules(ctx.row.id)
            .await?
            .iter()
            .find(|r| r.id != id && same_selectors(r, &fields))
        {
            return Err(Error::Conflict(format!(
                "immutable tag rule {} of project {project:?} has the same selectors",
                same.id
            )));
        }
        let mut tx = self.meta().begin().await?;
        let found = tx.update_immutable_rule(ctx.row.id, id, fields).await?;
        tx.commit().await?;
        if !found {
            return Err(Error::NotFound(format!(
                "project {project:?} has no immutable tag rule {id}"
            )));
        }
        self.auditor().record(
            event(
                actor,
                "immutable_rule.update",
                format!("project/{project}/immutable-rules/{id}"),
                project,
            )
            .details(describe(&fields)),
        );
        self.rule_of(&ctx, id).await
    }

    pub async fn delete_immutable_rule(&self, actor: &Actor, project: &str, id: i64) -> Result<()> {
        let ctx = self.policy_ctx(&actor.principal, project).await?;
        check(
            &actor.principal,
            &ctx,
            RULE_DELETE,
            "deleting immutable tag rules",
        )?;
        let mut tx = self.meta().begin().await?;
        let found = tx.delete_immutable_rule(ctx.row.id, id).await?;
        tx.commit().await?;
        if !found {
            return Err(Error::NotFound(format!(
                "project {project:?} has no immutable tag rule {id}"
            )));
        }
        self.auditor().record(event(
            actor,
            "immutable_rule.delete",
            format!("project/{project}/immutable-rules/{id}"),
            project,
        ));
        Ok(())
    }

    /// A project's limits and usage (members; `quota:read`).
    pub async fn get_quota(&self, actor: &Actor, project: &str) -> Result<QuotaInfo> {
        let ctx = self.policy_ctx(&actor.principal, project).await?;
        check(&actor.principal, &ctx, QUOTA_READ, "reading the quota")?;
        self.quota_info(&ctx).await
    }

    async fn quota_info(&self, ctx: &Ctx) -> Result<QuotaInfo> {
        let meta = self.meta();
        let q = meta.quota(ctx.row.id).await?;
        let usage = meta.project_usage(&ctx.row.name).await?;
        let pending_deletion = meta.project_pending_deletion(&ctx.row.name).await?;
        let (storage_limit, artifact_limit, warn_percent, warned) = match q {
            Some(q) => (q.storage_limit, q.artifact_limit, q.warn_percent, q.warned),
            None => (-1, -1, DEFAULT_WARN_PERCENT, false),
        };
        let fraction = |used: i64, limit: i64| used as f64 / limit.max(1) as f64;
        let mut ratio: Option<f64> = None;
        if storage_limit >= 0 {
            ratio = Some(fraction(usage.storage_bytes(), storage_limit));
        }
        if artifact_limit >= 0 {
            let a = fraction(usage.manifests, artifact_limit);
            ratio = Some(ratio.map_or(a, |r| r.max(a)));
        }
        if let Some(r) = ratio {
            metrics::gauge!("berth_quota_usage_ratio", "project" => ctx.row.name.clone()).set(r);
        }
        Ok(QuotaInfo {
            project: ctx.row.name.clone(),
            storage_limit,
            artifact_limit,
            warn_percent,
            usage,
            pending_deletion,
            ratio,
            warned,
        })
    }

    /// Sets a project's limits (system admins; `quota:update`). A limit
    /// below current usage is allowed: pushes that add anything are then
    /// refused until usage drops.
    pub async fn set_quota(
        &self,
        actor: &Actor,
        project: &str,
        patch: QuotaPatch,
    ) -> Result<QuotaInfo> {
        let ctx = self.policy_ctx(&actor.principal, project).await?;
        check(&actor.principal, &ctx, QUOTA_UPDATE, "setting the quota")?;
        let current = self.meta().quota(ctx.row.id).await?;
        let storage = patch
            .storage_limit
            .or(current.map(|q| q.storage_limit))
            .unwrap_or(-1);
        let artifacts = patch
            .artifact_limit
            .or(current.map(|q| q.artifact_limit))
            .unwrap_or(-1);
        let warn = patch
            .warn_percent
            .or(current.map(|q| q.warn_percent))
            .unwrap_or(DEFAULT_WARN_PERCENT);
        limit("storage_bytes", storage)?;
        limit("artifacts", artifacts)?;
        if !(1..=100).contains(&warn) {
            return Err(invalid(
                "warn_percent",
                format!("must be 1 to 100, got {warn}"),
            ));
        }
        let mut tx = self.meta().begin().await?;
        tx.set_quota(ctx.row.id, storage, artifacts, warn).await?;
        tx.commit().await?;
        let shown = |v: i64, f: &dyn Fn(i64) -> String| {
            if v < 0 { "unlimited".to_string() } else { f(v) }
        };
        self.auditor().record(
            event(
                actor,
                "quota.update",
                format!("project/{project}/quota"),
                project,
            )
            .details(format!(
                "storage {}, artifacts {}, warn at {warn}%",
                shown(storage, &|v| format!("{} ({v} bytes)", human_bytes(v))),
                shown(artifacts, &|v| v.to_string())
            )),
        );
        self.quota_info(&ctx).await
    }
}

fn same_selectors(r: &ImmutableRuleRow, f: &ImmutableRuleFields<'_>) -> bool {
    r.repo_pattern == f.repo_pattern
        && r.repo_excludes == f.repo_excludes
        && r.tag_pattern == f.tag_pattern
        && r.tag_excludes == f.tag_excludes
}
