//! Tag retention (issue 5, scope 3), Harbor's model: one policy per
//! project whose rules say what to keep ([`rules`]); runs on a cron
//! schedule and on demand, dry or not; each run recorded with what it
//! decided for every artifact and why.
//!
//! A run goes through the project's repositories one by one. A repository
//! that no enabled rule applies to is left alone. In the others, the
//! candidates are the repository's artifacts that stand on their own:
//! manifests listed by an image index of the repository, and referrers
//! (signatures, SBOMs) whose subject is there, are not candidates (they
//! stay; once their index or subject is gone they are candidates of the
//! next run, untagged). A candidate is retained when any rule retains it;
//! every other candidate is deleted with all its tags, through
//! [`Registry::delete_manifest`] (so the restore window and immutable tag
//! rules apply). A candidate carrying an immutable tag stays, and the run
//! says so; so does one that got a new tag between evaluation and
//! deletion.
//!
//! Policy changes and runs are recorded in the audit log (`retention.*`,
//! by whoever changed or started it; `system` for the schedule). Each
//! artifact a run deletes is an `artifact.delete` by the actor
//! [`RETENTION_ACTOR`] (kind `system`) whose details name the project, the
//! execution and how it was started, so `?actor=retention` lists every
//! deletion retention made and the execution id leads to its items; the
//! trash entry says the same in `deleted_by`. Permissions are Harbor's
//! `tag-retention:*` (developer and up).

pub mod rules;

use std::time::Duration;

use berth_auth::{
    Action, Decision, Denial, Permission, Principal, Project, Resource, Role, Target,
};
use berth_meta::{
    ArtifactRow, NewRetentionExecution, ProjectRow, RetentionCounts, RetentionExecutionRow,
    RetentionItemRow, now_millis,
};
use berth_oci::{Digest, Reference, RepoName, Tag};
use serde_json::Value;

pub use berth_meta::DueRetention;
pub use rules::{
    Candidate, CompiledRule, MAX_RULES, RepoDecoration, RepoSelector, RetentionPolicy,
    RetentionRule, TagDecoration, TagSelector, Template,
};

use crate::access::manage::{Actor, MAX_LIMIT, PageRequest, Paged};
use crate::access::{Access, AuditEvent};
use crate::policy::immutable::repo_path;
use crate::{Error, Registry, Result};

const READ: Permission = Permission::new(Resource::TagRetention, Action::Read);
const CREATE: Permission = Permission::new(Resource::TagRetention, Action::Create);
const UPDATE: Permission = Permission::new(Resource::TagRetention, Action::Update);
const DELETE: Permission = Permission::new(Resource::TagRetention, Action::Delete);
const LIST: Permission = Permission::new(Resource::TagRetention, Action::List);
const OPERATE: Permission = Permission::new(Resource::TagRetention, Action::Operate);

/// Artifacts read per database round trip while evaluating a repository.
const PAGE: i64 = 1000;
/// Items written per transaction while a run goes.
const ITEM_BATCH: usize = 500;
/// A run whose node has not written for this long is marked failed.
pub const STALE_RUN: Duration = Duration::from_secs(15 * 60);
/// The audit log's actor for the artifacts a retention run deletes.
pub const RETENTION_ACTOR: &str = "retention";

/// A project and the caller's roles in it, for `decide()`.
pub(crate) struct ProjectScope {
    pub(crate) row: ProjectRow,
    project: Project,
    roles: Vec<Role>,
}

impl ProjectScope {
    /// Refuses what the caller may not do here: 401 for anonymous or an
    /// expired robot, 403 naming the permission otherwise.
    pub(crate) fn check(
        &self,
        actor: &Actor,
        permission: Permission,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let target = Target::Project {
            project: &self.project,
            roles: &self.roles,
        };
        match berth_auth::decide(&actor.principal, target, permission, now_millis()) {
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
                "{} needs the {permission} permission, which {} does not have",
                what(),
                actor.principal.subject()
            ))),
        }
    }
}

/// Looks `project` up with the caller's roles in it (`NotFound` when it
/// does not exist).
pub(crate) async fn project_roles(
    access: &Access,
    actor: &Actor,
    project: &str,
) -> Result<ProjectScope> {
    let meta = access.meta();
    let row = meta
        .project_by_name(project)
        .await?
        .ok_or_else(|| Error::NotFound(format!("project {project:?} does not exist")))?;
    let roles = match &actor.principal {
        Principal::User { id, groups, .. } => meta
            .member_roles(row.id, Some(*id), groups)
            .await?
            .iter()
            .filter_map(|r| r.parse::<Role>().ok())
            .collect(),
        _ => Vec::new(),
    };
    Ok(ProjectScope {
        project: Project {
            name: row.name.clone(),
            public: row.public,
        },
        row,
        roles,
    })
}

/// [`project_roles`], then [`ProjectScope::check`].
pub(crate) async fn project_scope(
    access: &Access,
    actor: &Actor,
    project: &str,
    permission: Permission,
    what: impl FnOnce() -> String,
) -> Result<ProjectScope> {
    let scope = project_roles(access, actor, project).await?;
    scope.check(actor, permission, what)?;
    Ok(scope)
}

/// A project's policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub project: String,
    pub policy: RetentionPolicy,
    /// When the schedule runs next (milliseconds since the epoch).
    pub next_run_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the rules decided for an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemAction {
    Retain,
    Delete,
}

impl ItemAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemAction::Retain => "retain",
            ItemAction::Delete => "delete",
        }
    }
}

/// What came of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A rule retained it, or it is not a candidate.
    Retained,
    /// Dry run: it would be deleted.
    WouldDelete,
    Deleted,
    /// It carries an immutable tag, so it stays.
    Immutable,
    /// It got a new tag after it was evaluated, so it stays until the next
    /// run looks at it again.
    Changed,
    /// Somebody else deleted it first.
    Gone,
    /// Deleting it failed; `reason` says why.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Retained => "retained",
            Outcome::WouldDelete => "would_delete",
            Outcome::Deleted => "deleted",
            Outcome::Immutable => "kept_immutable",
            Outcome::Changed => "kept_changed",
            Outcome::Gone => "already_gone",
            Outcome::Failed => "failed",
        }
    }
}

/// One artifact's line in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionItem {
    pub repository: String,
    pub digest: String,
    /// Its tags when evaluated, by name.
    pub tags: Vec<String>,
    pub action: String,
    pub outcome: String,
    /// The rules (indices in the policy) that retained it.
    pub rules: Vec<usize>,
    pub reason: String,
    pub pushed_at: i64,
    pub pulled_at: Option<i64>,
}

impl RetentionItem {
    fn row(&self, seq: i64) -> RetentionItemRow {
        RetentionItemRow {
            seq,
            repo: self.repository.clone(),
            digest: self.digest.clone(),
            tags: serde_json::to_string(&self.tags).expect("strings serialize"),
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            rules: serde_json::to_string(&self.rules).expect("numbers serialize"),
            reason: self.reason.clone(),
            pushed_at: self.pushed_at,
            pulled_at: self.pulled_at,
        }
    }

    fn from_row(r: RetentionItemRow) -> Result<RetentionItem> {
        let corrupt = |e: serde_json::Error| {
            Error::Meta(berth_meta::Error::Corrupt(format!("retention item: {e}")))
        };
        Ok(RetentionItem {
            repository: r.repo,
            digest: r.digest,
            tags: serde_json::from_str(&r.tags).map_err(corrupt)?,
            action: r.action,
            outcome: r.outcome,
            rules: serde_json::from_str(&r.rules).map_err(corrupt)?,
            reason: r.reason,
            pushed_at: r.pushed_at,
            pulled_at: r.pulled_at,
        })
    }
}

/// A run, as the history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionExecution {
    pub id: i64,
    pub project: String,
    /// `manual` or `schedule`.
    pub trigger: String,
    pub dry_run: bool,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub actor: String,
    /// The rules it applied.
    pub rules: Value,
    /// Artifacts looked at (candidates and the others of the repositories
    /// in scope).
    pub artifacts: i64,
    pub retained: i64,
    /// Deleted (a dry run: to be deleted).
    pub deleted: i64,
    pub errors: i64,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

impl RetentionExecution {
    fn from_row(r: RetentionExecutionRow, project: &str) -> RetentionExecution {
        RetentionExecution {
            id: r.id,
            project: project.to_string(),
            trigger: r.trigger,
            dry_run: r.dry_run,
            status: r.status,
            actor: r.actor,
            rules: serde_json::from_str(&r.rules).unwrap_or(Value::String(r.rules)),
            artifacts: r.counts.artifacts,
            retained: r.counts.retained,
            deleted: r.counts.deleted,
            errors: r.counts.errors,
            error: r.error,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// A finished run with every item.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionRun {
    pub execution: RetentionExecution,
    pub items: Vec<RetentionItem>,
}

/// Who starts a run.
enum Starter<'a> {
    Actor(&'a Actor),
    Schedule,
}

impl Starter<'_> {
    fn name(&self) -> String {
        match self {
            Starter::Actor(a) => a.principal.subject().to_string(),
            Starter::Schedule => "system".into(),
        }
    }

    fn trigger(&self) -> &'static str {
        match self {
            Starter::Actor(_) => "manual",
            Starter::Schedule => "schedule",
        }
    }

    /// How the run started, for people: `manual run by alice`,
    /// `scheduled run`.
    fn describe(&self) -> String {
        match self {
            Starter::Actor(a) => format!("manual run by {}", a.principal.subject()),
            Starter::Schedule => "scheduled run".into(),
        }
    }

    fn event(&self, action: &str, resource: String, project: &str, details: String) -> AuditEvent {
        match self {
            Starter::Actor(a) => AuditEvent::by(&a.principal, action, resource)
                .from_addr(a.origin.addr)
                .project(project)
                .details(details),
            Starter::Schedule => AuditEvent::system(action, resource, Some(project), &details),
        }
    }
}

fn stored_rules(project: &str, rules: &str) -> Result<Vec<RetentionRule>> {
    serde_json::from_str(rules).map_err(|e| {
        Error::Meta(berth_meta::Error::Corrupt(format!(
            "retention policy of project {project}: {e}"
        )))
    })
}

fn policy_summary(policy: &RetentionPolicy) -> String {
    let rules: Vec<String> = policy
        .rules
        .iter()
        .map(|r| {
            let param = r
                .params
                .get(r.template.as_str())
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            format!(
                "{}{param} repos {:?} tags {:?}{}",
                r.template.as_str(),
                r.repositories.pattern,
                r.tags.pattern,
                if r.disabled { " (disabled)" } else { "" }
            )
        })
        .collect();
    format!(
        "{} rule(s): {}; schedule: {}",
        policy.rules.len(),
        rules.join("; "),
        policy.schedule.as_deref().unwrap_or("none")
    )
}

/// The reason text of a retained candidate.
fn retained_by(compiled: &[CompiledRule], rules: &[usize]) -> String {
    let names: Vec<String> = rules.iter().map(|&i| compiled[i].describe()).collect();
    format!("retained by {}", names.join(", "))
}

impl Registry {
    /// The project's retention policy (`tag-retention:read`); `NotFound`
    /// when it has none.
    pub async fn retention_policy(
        &self,
        access: &Access,
        actor: &Actor,
        project: &str,
    ) -> Result<PolicyInfo> {
        let scope = project_scope(access, actor, project, READ, || {
            format!("reading the retention policy of project {project:?}")
        })
        .await?;
        self.stored_policy(&scope.row)
            .await?
            .ok_or_else(|| no_policy(project))
    }

    async fn stored_policy(&self, project: &ProjectRow) -> Result<Option<PolicyInfo>> {
        let Some(row) = self.inner.meta.retention_policy(project.id).await? else {
            return Ok(None);
        };
        Ok(Some(PolicyInfo {
            project: project.name.clone(),
            policy: RetentionPolicy {
                rules: stored_rules(&project.name, &row.rules)?,
                schedule: row.schedule,
            },
            next_run_at: row.next_run_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }))
    }

    /// Creates or replaces the project's policy (`tag-retention:create` or
    /// `:update`). Returns it, and whether it was created.
    pub async fn set_retention_policy(
        &self,
        access: &Access,
        actor: &Actor,
        project: &str,
        policy: RetentionPolicy,
    ) -> Result<(PolicyInfo, bool)> {
        let scope = project_roles(access, actor, project).await?;
        let exists = self
            .inner
            .meta
            .retention_policy(scope.row.id)
            .await?
            .is_some();
        scope.check(actor, if exists { UPDATE } else { CREATE }, || {
            format!("setting the retention policy of project {project:?}")
        })?;
        policy.compile().map_err(Error::Invalid)?;
        let next_run_at = match &policy.schedule {
            Some(s) => {
                let cron = rules::parse_schedule(s)
                    .map_err(|e| Error::Invalid(format!("schedule: {e}")))?;
                rules::next_run(&cron, now_millis())
            }
            None => None,
        };
        let rules_json = serde_json::to_string(&policy.rules).expect("rules serialize");
        let created = self
            .inner
            .meta
            .put_retention_policy(
                scope.row.id,
                &rules_json,
                policy.schedule.as_deref(),
                next_run_at,
            )
            .await?;
        let action = if created {
            "retention.policy.create"
        } else {
            "retention.policy.update"
        };
        access.auditor().record(
            AuditEvent::by(
                &actor.principal,
                action,
                format!("project/{project}/retention"),
            )
            .from_addr(actor.origin.addr)
            .project(project)
            .details(policy_summary(&policy)),
        );
        let info = self
            .stored_policy(&scope.row)
            .await?
            .ok_or_else(|| no_policy(project))?;
        Ok((info, created))
    }

    /// Removes the project's policy and its schedule (`tag-retention:delete`);
    /// the run history stays.
    pub async fn delete_retention_policy(
        &self,
        access: &Access,
        actor: &Actor,
        project: &str,
    ) -> Result<()> {
        let scope = project_scope(access, actor, project, DELETE, || {
            format!("deleting the retention policy of project {project:?}")
        })
        .await?;
        if !self
            .inner
            .meta
            .delete_retention_policy(scope.row.id)
            .await?
        {
            return Err(no_policy(project));
        }
        access.auditor().record(
            AuditEvent::by(
                &actor.principal,
                "retention.policy.delete",
                format!("project/{project}/retention"),
            )
            .from_addr(actor.origin.addr)
            .project(project),
        );
        Ok(())
    }

    /// Runs the project's policy now (`tag-retention:operate`); with
    /// `dry_run`, deletes nothing and reports what would go. The run goes
    /// on to its end even if the caller goes away.
    pub async fn run_retention(
        &self,
        access: &Access,
        actor: &Actor,
        project: &str,
        dry_run: bool,
    ) -> Result<RetentionRun> {
        let scope = project_scope(access, actor, project, OPERATE, || {
            format!("running the retention policy of project {project:?}")
        })
        .await?;
        let policy = self
            .stored_policy(&scope.row)
            .await?
            .ok_or_else(|| no_policy(project))?;
        let (registry, access, actor) = (self.clone(), access.clone(), actor.clone());
        let task = tokio::spawn(async move {
            registry
                .execute(
                    &access,
                    &scope.row,
                    &policy.policy,
                    Starter::Actor(&actor),
                    dry_run,
                )
                .await
        });
        match task.await {
            Ok(result) => result,
            // As if it had run here; the task is never aborted.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// A project's runs, newest first (`tag-retention:list`).
    pub async fn retention_executions(
        &self,
        access: &Access,
        actor: &Actor,
        project: &str,
        page: PageRequest<'_>,
    ) -> Result<Paged<RetentionExecution>> {
        let scope = project_scope(access, actor, project, LIST, || {
            format!("listing retention runs of project {project:?}")
        })
        .await?;
        let before = page
            .after
            .map(|a| {
                a.parse::<i64>()
                    .map_err(|_| Error::Invalid(format!("after: {a:?} is not a run id")))
            })
            .transpose()?;
        let limit = page.limit.clamp(1, MAX_LIMIT);
        let mut rows = self
            .inner
            .meta
            .retention_executions(scope.row.id, before, limit as i64 + 1)
            .await?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.id.to_string())
        } else {
            None
        };
        Ok(Paged {
            items: rows
                .into_iter()
                .map(|r| RetentionExecution::from_row(r, project))
                .collect(),
            next,
        })
    }

    /// One run (`tag-retention:read`).
    pub async fn retention_execution(
        &self,
        access: &Access,
        actor: &Actor,
        project: &str,
        id: i64,
    ) -> Result<RetentionExecution> {
        let scope = project_scope(access, actor, project, READ, || {
            format!("reading retention runs of project {project:?}")
        })
        .await?;
        let row = self
            .inner
            .meta
            .retention_execution(scope.row.id, id)
            .await?
            .ok_or_else(|| no_run(project, id))?;
        Ok(RetentionExecution::from_row(row, project))
    }

    /// What one run decided, per artifact, in order (`tag-retention:read`).
    pub async fn retention_execution_items(
        &self,
        access: &Access,
        actor: &Actor,
        project: &str,
        id: i64,
        page: PageRequest<'_>,
    ) -> Result<Paged<RetentionItem>> {
        let scope = project_scope(access, actor, project, READ, || {
            format!("reading retention runs of project {project:?}")
        })
        .await?;
        if self
            .inner
            .meta
            .retention_execution(scope.row.id, id)
            .await?
            .is_none()
        {
            return Err(no_run(project, id));
        }
        let after = page
            .after
            .map(|a| {
                a.parse::<i64>()
                    .map_err(|_| Error::Invalid(format!("after: {a:?} is not an item number")))
            })
            .transpose()?;
        let limit = page.limit.clamp(1, MAX_LIMIT);
        let mut rows = self
            .inner
            .meta
            .retention_execution_items(id, after, limit as i64 + 1)
            .await?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        Ok(Paged {
            items: rows
                .into_iter()
                .map(RetentionItem::from_row)
                .collect::<Result<_>>()?,
            next,
        })
    }

    /// Scheduled policies due at `now`.
    pub async fn due_retention(&self, now: i64, limit: i64) -> Result<Vec<DueRetention>> {
        Ok(self.inner.meta.due_retention_policies(now, limit).await?)
    }

    /// Runs a due schedule if this node wins it: moves the policy's next run
    /// to the schedule's next time after `now`, then runs. `None` when
    /// another node took it, or the policy changed or went away meanwhile.
    pub async fn run_scheduled_retention(
        &self,
        access: &Access,
        due: &DueRetention,
        now: i64,
    ) -> Result<Option<RetentionExecution>> {
        let Some(project) = self.inner.meta.project_by_name(&due.project).await? else {
            return Ok(None);
        };
        let Some(info) = self.stored_policy(&project).await? else {
            return Ok(None);
        };
        let next = match info.policy.schedule.as_deref().map(rules::parse_schedule) {
            Some(Ok(cron)) => rules::next_run(&cron, now),
            Some(Err(e)) => {
                tracing::warn!(project = %due.project, error = %e,
                    "retention schedule no longer parses; it will not run");
                None
            }
            None => None,
        };
        if !self
            .inner
            .meta
            .advance_retention_schedule(project.id, due.next_run_at, next)
            .await?
        {
            return Ok(None);
        }
        if info.policy.schedule.is_none() || next.is_none() {
            return Ok(None);
        }
        let run = self
            .execute(access, &project, &info.policy, Starter::Schedule, false)
            .await?;
        Ok(Some(run.execution))
    }

    /// Marks runs whose node stopped writing for [`STALE_RUN`] as failed.
    pub async fn fail_stale_retention_runs(&self) -> Result<u64> {
        let before = now_millis() - STALE_RUN.as_millis() as i64;
        Ok(self
            .inner
            .meta
            .fail_stale_retention_executions(before)
            .await?)
    }

    /// One run, recorded from start to end.
    async fn execute(
        &self,
        access: &Access,
        project: &ProjectRow,
        policy: &RetentionPolicy,
        starter: Starter<'_>,
        dry_run: bool,
    ) -> Result<RetentionRun> {
        let compiled = policy.compile().map_err(|e| {
            Error::Meta(berth_meta::Error::Corrupt(format!(
                "retention policy of project {}: {e}",
                project.name
            )))
        })?;
        let rules_json = serde_json::to_string(&policy.rules).expect("rules serialize");
        let actor_name = starter.name();
        let id = self
            .inner
            .meta
            .insert_retention_execution(NewRetentionExecution {
                project_id: project.id,
                trigger: starter.trigger(),
                dry_run,
                actor: &actor_name,
                rules: &rules_json,
            })
            .await?;
        let started = std::time::Instant::now();
        let mut run = RunState {
            id,
            items: Vec::new(),
            written: 0,
            counts: RetentionCounts::default(),
        };
        let result = self
            .apply(access, project, &compiled, &starter, dry_run, &mut run)
            .await;
        let result = match result {
            Ok(()) => run.flush(self).await,
            Err(e) => Err(e),
        };
        let error = result.as_ref().err().map(|e| e.to_string());
        self.inner
            .meta
            .finish_retention_execution(id, error.is_none(), run.counts, error.as_deref())
            .await?;
        let c = run.counts;
        let what = if dry_run {
            "retention.dry_run"
        } else {
            "retention.run"
        };
        let mut event = starter.event(
            what,
            format!("project/{}/retention", project.name),
            &project.name,
            format!(
                "execution {id}: {} artifact(s), {} retained, {} {}, {} error(s){}",
                c.artifacts,
                c.retained,
                c.deleted,
                if dry_run { "to delete" } else { "deleted" },
                c.errors,
                error
                    .as_deref()
                    .map(|e| format!("; failed: {e}"))
                    .unwrap_or_default()
            ),
        );
        if error.is_some() {
            event = event.result("failure");
        }
        access.auditor().record(event);
        metrics::counter!("berth_retention_runs_total", "dry_run" => if dry_run { "true" } else { "false" })
            .increment(1);
        if !dry_run {
            metrics::counter!("berth_retention_deleted_artifacts_total")
                .increment(c.deleted.max(0) as u64);
        }
        tracing::info!(project = %project.name, execution = id, dry_run,
            trigger = starter.trigger(), artifacts = c.artifacts, retained = c.retained,
            deleted = c.deleted, errors = c.errors, elapsed_ms = started.elapsed().as_millis() as u64,
            "retention run finished");
        result?;
        let row = self
            .inner
            .meta
            .retention_execution(project.id, id)
            .await?
            .ok_or_else(|| no_run(&project.name, id))?;
        Ok(RetentionRun {
            execution: RetentionExecution::from_row(row, &project.name),
            items: run.items,
        })
    }

    /// Evaluates every repository of the project in scope and, unless
    /// `dry_run`, deletes what no rule retains.
    async fn apply(
        &self,
        access: &Access,
        project: &ProjectRow,
        compiled: &[CompiledRule],
        starter: &Starter<'_>,
        dry_run: bool,
        run: &mut RunState,
    ) -> Result<()> {
        let now = now_millis();
        for name in self.inner.meta.project_repositories(&project.name).await? {
            let Ok(repo) = RepoName::parse(&name) else {
                continue;
            };
            let applying: Vec<&CompiledRule> = compiled
                .iter()
                .filter(|r| r.applies_to(repo_path(&repo)))
                .collect();
            if applying.is_empty() {
                continue;
            }
            let artifacts = self.all_artifacts(&name).await?;
            let (candidates, others): (Vec<ArtifactRow>, Vec<ArtifactRow>) = artifacts
                .into_iter()
                .partition(|a| !a.in_index && !a.subject_present);
            let input: Vec<Candidate> = candidates
                .iter()
                .map(|a| Candidate {
                    digest: a.digest.clone(),
                    tags: a.tags.iter().map(|t| t.name.clone()).collect(),
                    pushed_at: a.pushed_at(),
                    pulled_at: a.last_pulled_at,
                })
                .collect();
            let decisions = rules::evaluate(&applying, &input, now);
            for (artifact, (c, retained)) in candidates.iter().zip(input.into_iter().zip(decisions))
            {
                let item = if !retained.is_empty() {
                    RetentionItem {
                        repository: name.clone(),
                        digest: c.digest,
                        tags: c.tags,
                        action: ItemAction::Retain.as_str().into(),
                        outcome: Outcome::Retained.as_str().into(),
                        reason: retained_by(compiled, &retained),
                        rules: retained,
                        pushed_at: c.pushed_at,
                        pulled_at: c.pulled_at,
                    }
                } else {
                    let (outcome, reason) = self
                        .remove(access, &repo, artifact, &c.tags, starter, dry_run, run.id)
                        .await?;
                    RetentionItem {
                        repository: name.clone(),
                        digest: c.digest,
                        tags: c.tags,
                        action: ItemAction::Delete.as_str().into(),
                        outcome: outcome.as_str().into(),
                        rules: Vec::new(),
                        reason,
                        pushed_at: c.pushed_at,
                        pulled_at: c.pulled_at,
                    }
                };
                run.push(self, item).await?;
            }
            for a in others {
                let reason = if a.in_index {
                    "not a candidate: an image index of the repository lists it".to_string()
                } else {
                    format!(
                        "not a candidate: a referrer of {}, which is in the repository",
                        a.subject.as_deref().unwrap_or("its subject")
                    )
                };
                let pushed_at = a.pushed_at();
                let item = RetentionItem {
                    repository: name.clone(),
                    digest: a.digest,
                    tags: a.tags.into_iter().map(|t| t.name).collect(),
                    action: ItemAction::Retain.as_str().into(),
                    outcome: Outcome::Retained.as_str().into(),
                    rules: Vec::new(),
                    reason,
                    pushed_at,
                    pulled_at: a.last_pulled_at,
                };
                run.push(self, item).await?;
            }
        }
        Ok(())
    }

    async fn all_artifacts(&self, repo: &str) -> Result<Vec<ArtifactRow>> {
        let mut out: Vec<ArtifactRow> = Vec::new();
        loop {
            let after = out.last().map(|a| a.digest.clone());
            let page = self
                .inner
                .meta
                .artifacts(repo, after.as_deref(), PAGE)
                .await?;
            let full = page.len() as i64 == PAGE;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// Deletes (or, dry, checks) one artifact no rule retains.
    #[allow(clippy::too_many_arguments)]
    async fn remove(
        &self,
        access: &Access,
        repo: &RepoName,
        artifact: &ArtifactRow,
        tags: &[String],
        starter: &Starter<'_>,
        dry_run: bool,
        execution: i64,
    ) -> Result<(Outcome, String)> {
        let none_retained = "no rule retains it".to_string();
        // Immutable tags keep their artifact: say so before trying.
        for tag in tags {
            let Ok(t) = Tag::parse(tag) else { continue };
            if let Some(rule) = self.immutable_rule_for(repo, &t).await? {
                return Ok((
                    Outcome::Immutable,
                    format!("no rule retains it, but its tag {tag} is immutable ({rule})"),
                ));
            }
        }
        if dry_run {
            return Ok((Outcome::WouldDelete, none_retained));
        }
        let Ok(digest) = Digest::parse(&artifact.digest) else {
            return Ok((
                Outcome::Failed,
                format!("stored digest {:?} does not parse", artifact.digest),
            ));
        };
        // The tags it has now: one pushed since evaluation saves it.
        let Some(now) = self
            .inner
            .meta
            .artifact_tags(repo.as_str(), digest.as_str())
            .await?
        else {
            return Ok((Outcome::Gone, "deleted by somebody else first".into()));
        };
        let new: Vec<&String> = now.iter().filter(|t| !tags.contains(t)).collect();
        if !new.is_empty() {
            return Ok((
                Outcome::Changed,
                format!(
                    "no rule retained it, but it was tagged {} since; the next run looks again",
                    join(&new)
                ),
            ));
        }
        // Through the normal delete: immutable tags refuse it, the trash
        // keeps it for the restore window. The deleter is the run.
        let project = crate::access::project_of(repo);
        let who = format!(
            "{RETENTION_ACTOR} (execution {execution}, {})",
            starter.describe()
        );
        match self
            .delete_manifest_as(repo, &Reference::Digest(digest.clone()), &who)
            .await
        {
            Ok(()) => {
                let tags = if tags.is_empty() {
                    "untagged".to_string()
                } else {
                    format!("tags: {}", tags.join(", "))
                };
                access.auditor().record(AuditEvent::by_system_actor(
                    RETENTION_ACTOR,
                    "artifact.delete",
                    format!("repository/{repo}@{digest}"),
                    Some(project),
                    &format!(
                        "retention execution {execution} of project {project} ({}); {tags}",
                        starter.describe()
                    ),
                ));
                Ok((Outcome::Deleted, none_retained))
            }
            Err(Error::ManifestUnknown(_)) => {
                Ok((Outcome::Gone, "deleted by somebody else first".into()))
            }
            Err(Error::Denied(message)) => Ok((Outcome::Immutable, message)),
            Err(e @ (Error::Meta(_) | Error::Storage(_))) => Err(e),
            Err(e) => Ok((Outcome::Failed, e.to_string())),
        }
    }
}

fn join(tags: &[&String]) -> String {
    tags.iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_policy(project: &str) -> Error {
    Error::NotFound(format!(
        "project {project:?} has no retention policy (PUT one first)"
    ))
}

fn no_run(project: &str, id: i64) -> Error {
    Error::NotFound(format!("project {project:?} has no retention run {id}"))
}

/// A run's items and counts as it goes; items are written in batches.
struct RunState {
    id: i64,
    items: Vec<RetentionItem>,
    written: usize,
    counts: RetentionCounts,
}

impl RunState {
    async fn push(&mut self, registry: &Registry, item: RetentionItem) -> Result<()> {
        self.counts.artifacts += 1;
        match item.outcome.as_str() {
            o if o == Outcome::Failed.as_str() => {
                self.counts.errors += 1;
            }
            o if o == Outcome::Deleted.as_str() || o == Outcome::WouldDelete.as_str() => {
                self.counts.deleted += 1;
            }
            o if o == Outcome::Gone.as_str() => {}
            _ => self.counts.retained += 1,
        }
        self.items.push(item);
        if self.items.len() - self.written >= ITEM_BATCH {
            self.flush(registry).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, registry: &Registry) -> Result<()> {
        if self.written == self.items.len() {
            return Ok(());
        }
        let rows: Vec<RetentionItemRow> = self.items[self.written..]
            .iter()
            .enumerate()
            .map(|(i, item)| item.row((self.written + i) as i64))
            .collect();
        registry
            .inner
            .meta
            .add_retention_items(self.id, &rows)
            .await?;
        self.written = self.items.len();
        Ok(())
    }
}
