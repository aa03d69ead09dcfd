//! Reading the audit log: a system admin reads everything; a project
//! admin (or a robot granted `log:list` there) reads its project's events
//! by asking for that project.

use berth_auth::{Action, Permission, Principal, Resource, Role, Target};
use berth_meta::{AuditCursor, AuditFilter, AuditRow};

use super::{Actor, Paged, allows, check, invalid, require_authenticated};
use crate::access::Access;
use crate::{Error, Result};

const AUDIT_LIST: Permission = Permission::new(Resource::AuditLog, Action::List);
const LOG_LIST: Permission = Permission::new(Resource::Log, Action::List);

/// Which events to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Inclusive, milliseconds.
    pub since: Option<i64>,
    /// Exclusive, milliseconds.
    pub until: Option<i64>,
    pub actor: Option<String>,
    pub project: Option<String>,
    pub action: Option<String>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub occurred_at: i64,
    pub actor: String,
    pub actor_kind: String,
    pub action: String,
    pub resource: String,
    pub project: Option<String>,
    pub result: String,
    pub source_addr: Option<String>,
    pub details: Option<String>,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> AuditRecord {
        let e = r.entry;
        AuditRecord {
            id: r.id,
            occurred_at: e.occurred_at,
            actor: e.actor,
            actor_kind: e.actor_kind,
            action: e.action,
            resource: e.resource,
            project: e.project,
            result: e.result,
            source_addr: e.source_addr,
            details: e.details,
        }
    }
}

impl Access {
    pub async fn query_audit(
        &self,
        actor: &Actor,
        query: AuditQuery,
    ) -> Result<Paged<AuditRecord>> {
        require_authenticated(actor)?;
        let principal = &actor.principal;
        if !allows(principal, Target::System, AUDIT_LIST) {
            let Some(project) = &query.project else {
                return Err(Error::Denied(
                    "reading the audit log needs a system admin; a project admin may read \
                     their project's events with project=NAME"
                        .into(),
                ));
            };
            let ctx = self.project_ctx(principal, project).await?;
            check(principal, ctx.target(), LOG_LIST, || {
                format!("reading the audit log of project {project:?}")
            })?;
            if matches!(principal, Principal::User { .. })
                && !ctx.roles.contains(&Role::ProjectAdmin)
            {
                return Err(Error::Denied(format!(
                    "reading the audit log of project {project:?} needs its project_admin role"
                )));
            }
        }
        let after = query
            .after
            .as_deref()
            .map(|a| a.parse::<AuditCursor>().map_err(|e| invalid("after", e)))
            .transpose()?;
        let limit = query.limit.clamp(1, super::MAX_LIMIT);
        let filter = AuditFilter {
            since: query.since,
            until: query.until,
            actor: query.actor.as_deref(),
            project: query.project.as_deref(),
            action: query.action.as_deref(),
            after,
            limit: limit as i64 + 1,
        };
        // Events of this node's own recent requests are still queued.
        self.auditor().flush().await;
        let rows = self.meta().audit(&filter).await?;
        let next = (rows.len() > limit).then(|| rows[limit - 1].cursor().to_string());
        let items = rows
            .into_iter()
            .take(limit)
            .map(AuditRecord::from)
            .collect();
        Ok(Paged { items, next })
    }
}
