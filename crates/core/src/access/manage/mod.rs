//! Management use cases behind `/api/v1`: users, groups, projects and
//! their members, robot accounts, personal access tokens, the audit log
//! and signing key rotation. Each checks the caller with `decide()` first
//! (Harbor's role table, a robot's grants, a scoped token's limits), makes
//! its change in one identity transaction, records an audit event, and
//! forgets cached logins when the change revokes a credential.
//!
//! Times are milliseconds since the Unix epoch; the HTTP layer formats
//! them.

mod audit_log;
mod groups;
mod keys;
mod members;
mod projects;
mod robots;
mod system;
mod tokens;
mod users;

use berth_auth::{Decision, Denial, Project, Target, decide};
use berth_meta::ProjectRow;

pub use audit_log::{AuditQuery, AuditRecord};
pub use berth_auth::{
    Action, Grant, Namespace, Permission, Principal, Resource, RevealedSecret, Role,
    basic_challenge,
};
pub use groups::{GroupInfo, NewGroup};
pub use keys::RotatedKey;
pub use members::{MemberInfo, MemberKind, NewMember};
pub use projects::ProjectInfo;
pub use robots::{
    CreatedRobot, DEFAULT_ROBOT_DAYS, MAX_ROBOT_DAYS, NewRobot, RobotInfo, RobotPatch,
};
pub use tokens::{CreatedToken, MAX_TOKEN_DAYS, NewToken, TokenInfo};
pub use users::{Me, NewUser, UserInfo, UserPatch};

use super::audit::AuditEvent;
use super::login::{Login, LoginMethod};
use super::{Access, Origin, now_millis};
use crate::{Error, Result};

/// Default page size of the list endpoints.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size a caller may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Who asks: the authenticated principal, how it proved it, and where the
/// request came from (for the audit log).
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    /// `None` for anonymous.
    pub method: Option<LoginMethod>,
    pub origin: Origin,
}

impl Actor {
    pub fn anonymous(origin: Origin) -> Actor {
        Actor {
            principal: Principal::Anonymous,
            method: None,
            origin,
        }
    }

    pub fn from_login(login: Login, origin: Origin) -> Actor {
        Actor {
            principal: login.principal,
            method: Some(login.method),
            origin,
        }
    }

    /// An audit event done by this actor, from its address.
    fn event(&self, action: &str, resource: impl Into<String>) -> AuditEvent {
        AuditEvent::by(&self.principal, action, resource).from_addr(self.origin.addr)
    }

    /// The user id when the actor is a user (robots and anonymous: `None`).
    fn user_id(&self) -> Option<i64> {
        match &self.principal {
            Principal::User { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// One page of a listing; `next` is the `after` of the following page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Paged<T> {
    /// Cuts `items` (fetched with one more than `limit`) to `limit`,
    /// naming the last kept item's key as the next cursor when more exist.
    fn cut(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Paged<T> {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(key)
        } else {
            None
        };
        Paged { items, next }
    }
}

/// A page request: `after` a cursor, at most `limit` items.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    pub after: Option<&'a str>,
    pub limit: usize,
}

impl PageRequest<'_> {
    fn fetch(&self) -> i64 {
        self.limit.clamp(1, MAX_LIMIT) as i64 + 1
    }

    fn limit(&self) -> usize {
        self.limit.clamp(1, MAX_LIMIT)
    }
}

/// A project with the principal's roles in it, as `decide()` wants them.
pub(super) struct ProjectCtx {
    pub(super) row: ProjectRow,
    pub(super) project: Project,
    pub(super) roles: Vec<Role>,
}

impl ProjectCtx {
    fn target(&self) -> Target<'_> {
        Target::Project {
            project: &self.project,
            roles: &self.roles,
        }
    }
}

/// Turns a decision into the error the caller sees: 401 for anonymous or
/// an expired robot, 403 otherwise, naming what was refused.
fn check(
    principal: &Principal,
    target: Target<'_>,
    permission: Permission,
    what: impl FnOnce() -> String,
) -> Result<()> {
    match decide(principal, target, permission, now_millis()) {
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
            principal.subject()
        ))),
    }
}

/// Whether `decide()` allows, without building an error.
fn allows(principal: &Principal, target: Target<'_>, permission: Permission) -> bool {
    decide(principal, target, permission, now_millis()).is_allowed()
}

/// At system level.
fn check_system(principal: &Principal, permission: Permission, what: &str) -> Result<()> {
    check(principal, Target::System, permission, || what.to_string())
}

fn require_authenticated(actor: &Actor) -> Result<()> {
    if matches!(actor.principal, Principal::Anonymous) {
        return Err(Error::Unauthenticated {
            message: "authentication required".into(),
            problem: None,
        });
    }
    Ok(())
}

fn invalid(field: &str, message: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{field}: {message}"))
}

/// Milliseconds `days` from now; `-1` never expires. `max` bounds `days`.
fn expiry_from_days(field: &str, days: i64, max: i64, allow_never: bool) -> Result<Option<i64>> {
    if allow_never && days == -1 {
        return Ok(None);
    }
    if !(1..=max).contains(&days) {
        let never = if allow_never { " or -1 (never)" } else { "" };
        return Err(invalid(
            field,
            format!("must be 1 to {max}{never}, got {days}"),
        ));
    }
    Ok(Some(now_millis() + days * 86_400_000))
}

/// Checks a short display name (groups, tokens): 1 to `max` characters, no
/// control characters, no surrounding spaces.
fn check_label(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() || value.chars().count() > max {
        return Err(invalid(field, format!("must be 1 to {max} characters")));
    }
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(invalid(
            field,
            format!("{value:?} must not contain control characters or surrounding spaces"),
        ));
    }
    Ok(())
}

impl Access {
    /// The project `name` with the principal's roles in it; `NotFound`
    /// when it does not exist.
    pub(super) async fn project_ctx(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<ProjectCtx> {
        let row = self
            .meta()
            .project_by_name(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project {name:?} does not exist")))?;
        self.ctx_of(principal, row).await
    }

    async fn ctx_of(&self, principal: &Principal, row: ProjectRow) -> Result<ProjectCtx> {
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
        Ok(ProjectCtx {
            project: Project {
                name: row.name.clone(),
                public: row.public,
            },
            row,
            roles,
        })
    }

    /// Checks that every project `grants` name exists (new permissions).
    async fn check_projects_exist(&self, grants: &[Grant]) -> Result<()> {
        for g in grants {
            if let Namespace::Project(name) = &g.namespace
                && self.meta().project_by_name(name).await?.is_none()
            {
                return Err(invalid(
                    "permissions",
                    format!("project {name:?} does not exist"),
                ));
            }
        }
        Ok(())
    }

    /// Checks that `actor` may hand out `grants` (to a robot it creates or
    /// changes), or manage a robot holding them: a robot only what it
    /// holds itself (Harbor ≥ 2.12), a system admin anything (within a
    /// scoped token's limits), another user only project permissions its
    /// roles give it.
    async fn check_delegation(&self, actor: &Actor, grants: &[Grant]) -> Result<()> {
        match &actor.principal {
            Principal::Anonymous => require_authenticated(actor),
            Principal::Robot { permissions, .. } => {
                if berth_auth::grants_within(grants, permissions) {
                    Ok(())
                } else {
                    Err(Error::Denied(
                        "a robot account may only give permissions it holds itself".into(),
                    ))
                }
            }
            Principal::User {
                system_admin: true,
                limited_to,
                ..
            } => match limited_to {
                Some(limits) if !berth_auth::grants_within(grants, limits) => Err(Error::Denied(
                    "this personal access token's scopes do not cover those permissions".into(),
                )),
                _ => Ok(()),
            },
            principal @ Principal::User { .. } => {
                for g in grants {
                    let Namespace::Project(name) = &g.namespace else {
                        return Err(Error::Denied(
                            "only a system admin may give system-level or all-project permissions"
                                .into(),
                        ));
                    };
                    let ctx = match self.project_ctx(principal, name).await {
                        Ok(ctx) => ctx,
                        Err(Error::NotFound(_)) => {
                            return Err(Error::Denied(format!(
                                "you may not give permissions in project {name:?}"
                            )));
                        }
                        Err(e) => return Err(e),
                    };
                    if let Some(p) = g
                        .access
                        .iter()
                        .find(|p| !allows(principal, ctx.target(), **p))
                    {
                        return Err(Error::Denied(format!(
                            "you may not give {p} in project {name:?}: your role there does not allow it"
                        )));
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cut_at_the_limit_and_name_the_next_cursor() {
        let p = Paged::cut(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(p.next.as_deref(), Some("2"));
        let p = Paged::cut(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(p.next, None);
    }

    #[test]
    fn expiry_days_are_bounded() {
        assert_eq!(expiry_from_days("d", -1, 365, true).unwrap(), None);
        assert!(expiry_from_days("d", -1, 365, false).is_err());
        assert!(expiry_from_days("d", 0, 365, true).is_err());
        assert!(expiry_from_days("d", 366, 365, true).is_err());
        let at = expiry_from_days("d", 1, 365, false).unwrap().unwrap();
        assert!((at - now_millis() - 86_400_000).abs() < 5_000);
        let e = expiry_from_days("expires_in_days", 0, 365, false).unwrap_err();
        assert!(e.to_string().starts_with("expires_in_days:"), "{e}");
    }

    #[test]
    fn labels() {
        assert!(check_label("name", "ci token", 100).is_ok());
        for bad in ["", " x", "x ", "a\nb"] {
            assert!(check_label("name", bad, 100).is_err(), "{bad:?}");
        }
        assert!(check_label("name", &"a".repeat(101), 100).is_err());
    }

    #[test]
    fn denials_name_the_permission() {
        let user = Principal::User {
            id: 1,
            name: "alice".into(),
            system_admin: false,
            groups: vec![],
            limited_to: None,
        };
        let perm = Permission::new(Resource::User, Action::List);
        match check_system(&user, perm, "listing users") {
            Err(Error::Denied(m)) => assert!(m.contains("user:list") && m.contains("alice"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_system(&Principal::Anonymous, perm, "listing users"),
            Err(Error::Unauthenticated { .. })
        ));
    }
}
