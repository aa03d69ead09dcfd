//! Robot accounts (anchors §6.3): system robots (created with system-level
//! `robot:create`) and project robots (`robot:create` in the project,
//! project admin), each with an explicit permission list, an expiry and a
//! secret shown once and stored hashed. A robot creating or changing a
//! robot may only give what it holds itself, and no longer than it lives;
//! changing a robot or rotating its secret needs the authority to have
//! given its permissions.

use berth_auth::secret::{self, SecretKind};
use berth_auth::{
    Action, Grant, Namespace, Permission, Principal, Resource, RevealedSecret, Target,
    robot_account_name,
};
use berth_meta::RobotRow;

use super::{Actor, PageRequest, Paged, ProjectCtx, check, expiry_from_days, invalid};
use crate::access::Access;
use crate::access::login::parse_grants;
use crate::{Error, Result};

const ROBOT_LIST: Permission = Permission::new(Resource::Robot, Action::List);
const ROBOT_READ: Permission = Permission::new(Resource::Robot, Action::Read);
const ROBOT_CREATE: Permission = Permission::new(Resource::Robot, Action::Create);
const ROBOT_UPDATE: Permission = Permission::new(Resource::Robot, Action::Update);
const ROBOT_DELETE: Permission = Permission::new(Resource::Robot, Action::Delete);

/// Default robot lifetime (Harbor's "Robot Token Expiration (Days)").
pub const DEFAULT_ROBOT_DAYS: i64 = 30;
/// Longest robot lifetime in days, other than never.
pub const MAX_ROBOT_DAYS: i64 = 36_500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotInfo {
    pub id: i64,
    /// The login name, `robot$name` or `robot$project+name`.
    pub name: String,
    pub description: String,
    /// `None` for a system robot.
    pub project: Option<String>,
    pub permissions: Vec<Grant>,
    pub expires_at: Option<i64>,
    pub disabled: bool,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A robot with its secret, returned once by creation and rotation.
#[derive(Debug, Clone)]
pub struct CreatedRobot {
    pub robot: RobotInfo,
    pub secret: RevealedSecret,
}

#[derive(Debug, Clone)]
pub struct NewRobot {
    /// The short name; the account name adds `robot$` (and `project+`).
    pub name: String,
    pub description: String,
    pub permissions: Vec<Grant>,
    /// Days until it expires; `-1` never; default 30.
    pub expires_in_days: Option<i64>,
}

/// Changes to a robot; `None` leaves a field alone. `expires_at:
/// Some(None)` makes it never expire.
#[derive(Debug, Clone, Default)]
pub struct RobotPatch {
    pub description: Option<String>,
    pub disabled: Option<bool>,
    pub expires_at: Option<Option<i64>>,
    pub permissions: Option<Vec<Grant>>,
}

/// Harbor's robot name rule: lowercase letters and digits, separated by
/// single `.`, `_` or `-`; at most 255 characters.
fn check_robot_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !name.is_empty()
        && name.len() <= 255
        && bytes.iter().all(|&b| alnum(b) || b"._-".contains(&b))
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && !bytes.windows(2).any(|w| !alnum(w[0]) && !alnum(w[1]));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!(
                "{name:?} must be lowercase letters and digits, separated by single '.', '_' or '-' (at most 255)"
            ),
        ))
    }
}

fn check_description(description: &str) -> Result<()> {
    if description.chars().count() > 1024 {
        return Err(invalid("description", "must be at most 1024 characters"));
    }
    Ok(())
}

/// Project robots hold permissions in their project only.
fn check_project_scope(project: Option<&str>, grants: &[Grant]) -> Result<()> {
    let Some(project) = project else {
        return Ok(());
    };
    if let Some(g) = grants
        .iter()
        .find(|g| g.namespace != Namespace::Project(project.to_string()))
    {
        return Err(invalid(
            "permissions",
            format!(
                "a robot of project {project:?} may only hold permissions in that project, not {:?}",
                g.namespace
            ),
        ));
    }
    Ok(())
}

fn check_grants(grants: &[Grant]) -> Result<()> {
    berth_auth::validate_grants(grants).map_err(|e| invalid("permissions", e))
}

/// A robot acting on robots may not make one outlive itself.
fn check_robot_lifetime(actor: &Actor, expires_at: Option<i64>) -> Result<()> {
    if let Principal::Robot {
        expires_at: Some(own),
        ..
    } = &actor.principal
        && expires_at.is_none_or(|t| t > *own)
    {
        return Err(Error::Denied(
            "a robot account may not give a robot a longer life than its own".into(),
        ));
    }
    Ok(())
}

fn not_found(id: i64) -> Error {
    Error::NotFound(format!("robot {id} does not exist"))
}

impl Access {
    fn robot_info(&self, row: RobotRow, project: Option<String>) -> Result<RobotInfo> {
        Ok(RobotInfo {
            id: row.id,
            permissions: parse_grants(&row.permissions)?,
            name: row.name,
            description: row.description,
            project,
            expires_at: row.expires_at,
            disabled: row.disabled,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// Checks `permission` where a robot lives: system level or its project.
    fn check_robot_level(
        &self,
        actor: &Actor,
        project: Option<&ProjectCtx>,
        permission: Permission,
        what: &str,
    ) -> Result<()> {
        match project {
            Some(ctx) => check(&actor.principal, ctx.target(), permission, || {
                format!("{what} in project {:?}", ctx.row.name)
            }),
            None => check(&actor.principal, Target::System, permission, || {
                format!("{what} at system level")
            }),
        }
    }

    /// A robot with its project's context (for the checks).
    async fn robot_with_ctx(
        &self,
        actor: &Actor,
        id: i64,
    ) -> Result<(RobotRow, Option<ProjectCtx>)> {
        let row = self
            .meta()
            .robot_by_id(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let ctx = match row.project_id {
            Some(pid) => {
                let project = self
                    .meta()
                    .project_by_id(pid)
                    .await?
                    .ok_or_else(|| not_found(id))?;
                Some(self.ctx_of(&actor.principal, project).await?)
            }
            None => None,
        };
        Ok((row, ctx))
    }

    /// The system robots (`project: None`) or a project's robots.
    pub async fn list_robots(
        &self,
        actor: &Actor,
        project: Option<&str>,
        page: PageRequest<'_>,
    ) -> Result<Paged<RobotInfo>> {
        let ctx = match project {
            Some(name) => Some(self.project_ctx(&actor.principal, name).await?),
            None => None,
        };
        self.check_robot_level(actor, ctx.as_ref(), ROBOT_LIST, "listing robots")?;
        let after = page
            .after
            .map(|a| {
                a.parse::<i64>()
                    .map_err(|_| invalid("after", "must be a robot id"))
            })
            .transpose()?;
        let mut rows = self.meta().robots(ctx.as_ref().map(|c| c.row.id)).await?;
        rows.sort_by_key(|r| r.id);
        rows.retain(|r| after.is_none_or(|a| r.id > a));
        rows.truncate(page.limit() + 1);
        let items = rows
            .into_iter()
            .map(|r| self.robot_info(r, project.map(str::to_string)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Paged::cut(items, page.limit(), |r: &RobotInfo| {
            r.id.to_string()
        }))
    }

    pub async fn create_robot(
        &self,
        actor: &Actor,
        project: Option<&str>,
        new: NewRobot,
    ) -> Result<CreatedRobot> {
        let ctx = match project {
            Some(name) => Some(self.project_ctx(&actor.principal, name).await?),
            None => None,
        };
        self.check_robot_level(actor, ctx.as_ref(), ROBOT_CREATE, "creating robots")?;
        check_robot_name(&new.name)?;
        check_description(&new.description)?;
        check_grants(&new.permissions)?;
        check_project_scope(project, &new.permissions)?;
        let days = new.expires_in_days.unwrap_or(DEFAULT_ROBOT_DAYS);
        let expires_at = expiry_from_days("expires_in_days", days, MAX_ROBOT_DAYS, true)?;
        check_robot_lifetime(actor, expires_at)?;
        self.check_projects_exist(&new.permissions).await?;
        self.check_delegation(actor, &new.permissions).await?;
        let name = robot_account_name(project, &new.name);
        let permissions = serde_json::to_string(&new.permissions)
            .map_err(|e| Error::Invalid(format!("permissions: {e}")))?;
        let secret = secret::generate(SecretKind::Robot);
        let mut tx = self.meta().begin_identity().await?;
        let id = tx
            .insert_robot(berth_meta::NewRobot {
                name: &name,
                description: &new.description,
                project_id: ctx.as_ref().map(|c| c.row.id),
                permissions: &permissions,
                secret_hash: &secret.hash,
                expires_at,
                created_by: actor.principal.subject(),
            })
            .await?
            .ok_or_else(|| Error::Conflict(format!("robot {name:?} already exists")))?;
        tx.commit().await?;
        let mut event = actor
            .event("robot.create", format!("robot/{name}"))
            .details(format!("permissions={permissions}"));
        if let Some(p) = project {
            event = event.project(p);
        }
        self.auditor().record(event);
        let row = self
            .meta()
            .robot_by_id(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(CreatedRobot {
            robot: self.robot_info(row, project.map(str::to_string))?,
            secret: secret.plaintext,
        })
    }

    pub async fn get_robot(&self, actor: &Actor, id: i64) -> Result<RobotInfo> {
        let (row, ctx) = self.robot_with_ctx(actor, id).await?;
        let itself = matches!(&actor.principal, Principal::Robot { id: own, .. } if *own == id);
        if !itself {
            self.check_robot_level(actor, ctx.as_ref(), ROBOT_READ, "reading robots")?;
        }
        self.robot_info(row, ctx.map(|c| c.row.name))
    }

    pub async fn update_robot(
        &self,
        actor: &Actor,
        id: i64,
        patch: RobotPatch,
    ) -> Result<RobotInfo> {
        let (row, ctx) = self.robot_with_ctx(actor, id).await?;
        self.check_robot_level(actor, ctx.as_ref(), ROBOT_UPDATE, "changing robots")?;
        // Re-enabling or extending a robot gives its power back: only to
        // whom could have given it.
        self.check_delegation(actor, &parse_grants(&row.permissions)?)
            .await?;
        let project = ctx.as_ref().map(|c| c.row.name.clone());
        let mut changed = Vec::new();
        let permissions = match &patch.permissions {
            Some(grants) => {
                check_grants(grants)?;
                check_project_scope(project.as_deref(), grants)?;
                self.check_projects_exist(grants).await?;
                self.check_delegation(actor, grants).await?;
                changed.push("permissions");
                serde_json::to_string(grants)
                    .map_err(|e| Error::Invalid(format!("permissions: {e}")))?
            }
            None => row.permissions.clone(),
        };
        let expires_at = match patch.expires_at {
            Some(at) => {
                check_robot_lifetime(actor, at)?;
                changed.push("expires_at");
                at
            }
            None => row.expires_at,
        };
        if patch.disabled.is_some() {
            changed.push("disabled");
        }
        let disabled = patch.disabled.unwrap_or(row.disabled);
        if let Some(d) = &patch.description {
            check_description(d)?;
            changed.push("description");
        }
        let mut tx = self.meta().begin_identity().await?;
        tx.update_robot(id, &permissions, expires_at, disabled)
            .await?;
        if let Some(d) = &patch.description {
            tx.set_robot_description(id, d).await?;
        }
        tx.commit().await?;
        self.forget_logins();
        let mut event = actor
            .event("robot.update", format!("robot/{}", row.name))
            .details(format!("changed={}", changed.join(",")));
        if let Some(p) = &project {
            event = event.project(p.clone());
        }
        self.auditor().record(event);
        let row = self
            .meta()
            .robot_by_id(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.robot_info(row, project)
    }

    pub async fn delete_robot(&self, actor: &Actor, id: i64) -> Result<()> {
        let (row, ctx) = self.robot_with_ctx(actor, id).await?;
        self.check_robot_level(actor, ctx.as_ref(), ROBOT_DELETE, "deleting robots")?;
        let mut tx = self.meta().begin_identity().await?;
        tx.delete_robot(id).await?;
        tx.commit().await?;
        self.forget_logins();
        let mut event = actor.event("robot.delete", format!("robot/{}", row.name));
        if let Some(c) = &ctx {
            event = event.project(c.row.name.clone());
        }
        self.auditor().record(event);
        Ok(())
    }

    /// A new secret for a robot (the robot itself may rotate its own); the
    /// old one stops working at once on this node.
    pub async fn rotate_robot_secret(&self, actor: &Actor, id: i64) -> Result<CreatedRobot> {
        let (row, ctx) = self.robot_with_ctx(actor, id).await?;
        let itself = matches!(&actor.principal, Principal::Robot { id: own, .. } if *own == id);
        if !itself {
            self.check_robot_level(actor, ctx.as_ref(), ROBOT_UPDATE, "rotating robot secrets")?;
            // The new secret is the robot's power: only for whom could
            // have given it.
            self.check_delegation(actor, &parse_grants(&row.permissions)?)
                .await?;
        }
        let secret = secret::generate(SecretKind::Robot);
        let mut tx = self.meta().begin_identity().await?;
        tx.set_robot_secret(id, &secret.hash).await?;
        tx.commit().await?;
        self.forget_logins();
        let mut event = actor.event("robot.rotate", format!("robot/{}", row.name));
        if let Some(c) = &ctx {
            event = event.project(c.row.name.clone());
        }
        self.auditor().record(event);
        let row = self
            .meta()
            .robot_by_id(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(CreatedRobot {
            robot: self.robot_info(row, ctx.map(|c| c.row.name))?,
            secret: secret.plaintext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_names_follow_harbor() {
        for ok in ["ci", "a", "ci-1", "build.bot", "a_b-c.d9"] {
            assert!(check_robot_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "CI",
            "-ci",
            "ci-",
            "a--b",
            "a+b",
            "a$b",
            "a:b",
            "a b",
            &"a".repeat(256),
        ] {
            assert!(check_robot_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn project_robots_stay_in_their_project() {
        let grant = |ns: Namespace| Grant {
            namespace: ns,
            access: vec![Permission::PULL],
        };
        let own = [grant(Namespace::Project("team".into()))];
        assert!(check_project_scope(Some("team"), &own).is_ok());
        assert!(check_project_scope(None, &[grant(Namespace::AllProjects)]).is_ok());
        for other in [
            Namespace::Project("other".into()),
            Namespace::AllProjects,
            Namespace::System,
        ] {
            let e = check_project_scope(Some("team"), &[grant(other)]).unwrap_err();
            assert!(e.to_string().starts_with("permissions:"), "{e}");
        }
    }

    #[test]
    fn robots_do_not_outlive_their_creator() {
        let origin = crate::access::Origin::default();
        let robot = |expires_at| Actor {
            principal: Principal::Robot {
                id: 1,
                name: "robot$ci".into(),
                permissions: vec![],
                expires_at,
            },
            method: None,
            origin,
        };
        assert!(check_robot_lifetime(&robot(Some(100)), Some(100)).is_ok());
        assert!(check_robot_lifetime(&robot(Some(100)), Some(101)).is_err());
        assert!(check_robot_lifetime(&robot(Some(100)), None).is_err());
        assert!(check_robot_lifetime(&robot(None), None).is_ok());
        assert!(check_robot_lifetime(&Actor::anonymous(origin), None).is_ok());
    }
}
