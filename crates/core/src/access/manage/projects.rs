//! Projects: listing what the caller may see, creation (system level),
//! reading, making public or private (project admin), deletion (system
//! admin; never `library`, never with repositories in it).

use berth_auth::{Action, DEFAULT_PROJECT, Permission, Principal, Resource, Role, Target};
use berth_meta::{MemberRef, ProjectRow};

use super::{Actor, PageRequest, Paged, ProjectCtx, allows, check, check_system, invalid};
use crate::access::Access;
use crate::{Error, Result};

const PROJECT_LIST: Permission = Permission::new(Resource::Project, Action::List);
const PROJECT_CREATE: Permission = Permission::new(Resource::Project, Action::Create);
const PROJECT_READ: Permission = Permission::new(Resource::Project, Action::Read);
const PROJECT_UPDATE: Permission = Permission::new(Resource::Project, Action::Update);
const PROJECT_DELETE: Permission = Permission::new(Resource::Project, Action::Delete);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    pub id: i64,
    pub name: String,
    pub public: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The caller's roles in the project (direct and through groups);
    /// filled in when one project is read.
    pub roles: Option<Vec<Role>>,
}

impl From<ProjectRow> for ProjectInfo {
    fn from(p: ProjectRow) -> ProjectInfo {
        ProjectInfo {
            id: p.id,
            name: p.name,
            public: p.public,
            created_at: p.created_at,
            updated_at: p.updated_at,
            roles: None,
        }
    }
}

impl ProjectCtx {
    fn info(&self) -> ProjectInfo {
        let mut info = ProjectInfo::from(self.row.clone());
        info.roles = Some(self.roles.clone());
        info
    }
}

/// Whether a project shows up in the principal's listing: it may read it,
/// or pull from it (a robot whose grants name the project).
fn visible(principal: &Principal, ctx: &ProjectCtx) -> bool {
    allows(principal, ctx.target(), PROJECT_READ)
        || allows(principal, ctx.target(), Permission::PULL)
}

impl Access {
    /// Every project for a system admin (or a robot allowed to list them
    /// at system level); otherwise public ones plus those the caller is a
    /// member of (a user) or holds permissions in (a robot).
    pub async fn list_projects(
        &self,
        actor: &Actor,
        page: PageRequest<'_>,
    ) -> Result<Paged<ProjectInfo>> {
        let principal = &actor.principal;
        let meta = self.meta();
        let limit = page.limit();
        if allows(principal, Target::System, PROJECT_LIST) {
            let rows = meta.projects(page.after, page.fetch()).await?;
            let items = rows.into_iter().map(ProjectInfo::from).collect();
            return Ok(Paged::cut(items, limit, |p: &ProjectInfo| p.name.clone()));
        }
        // Candidates from the database, checked one by one where the
        // database cannot tell (robots, scoped tokens).
        let needs_check = match principal {
            Principal::Robot { .. } => true,
            Principal::User { limited_to, .. } => limited_to.is_some(),
            Principal::Anonymous => false,
        };
        let mut items: Vec<ProjectInfo> = Vec::new();
        let mut after = page.after.map(str::to_string);
        loop {
            let batch = match principal {
                Principal::User { id, groups, .. } => {
                    meta.projects_visible_to(Some(*id), groups, after.as_deref(), page.fetch())
                        .await?
                }
                Principal::Anonymous => {
                    meta.projects_visible_to(None, &[], after.as_deref(), page.fetch())
                        .await?
                }
                Principal::Robot { .. } => meta.projects(after.as_deref(), page.fetch()).await?,
            };
            let full = batch.len() as i64 == page.fetch();
            after = batch.last().map(|p| p.name.clone());
            for row in batch {
                if needs_check {
                    let ctx = self.ctx_of(principal, row).await?;
                    if visible(principal, &ctx) {
                        items.push(ProjectInfo::from(ctx.row));
                    }
                } else {
                    items.push(ProjectInfo::from(row));
                }
                if items.len() > limit {
                    break;
                }
            }
            if items.len() > limit || !full {
                break;
            }
        }
        Ok(Paged::cut(items, limit, |p: &ProjectInfo| p.name.clone()))
    }

    pub async fn create_project(
        &self,
        actor: &Actor,
        name: &str,
        public: bool,
    ) -> Result<ProjectInfo> {
        check_system(&actor.principal, PROJECT_CREATE, "creating projects")?;
        berth_auth::validate_project_name(name).map_err(|e| invalid("name", e))?;
        let mut tx = self.meta().begin_identity().await?;
        let id = tx
            .insert_project(name, public)
            .await?
            .ok_or_else(|| Error::Conflict(format!("project {name:?} already exists")))?;
        // As in Harbor, the user who creates a project administers it.
        if let Some(user_id) = actor.user_id() {
            tx.set_member(id, MemberRef::User(user_id), Role::ProjectAdmin.as_str())
                .await?;
        }
        tx.commit().await?;
        self.auditor().record(
            actor
                .event("project.create", format!("project/{name}"))
                .project(name)
                .details(format!("public={public}")),
        );
        self.get_project(actor, name).await
    }

    pub async fn get_project(&self, actor: &Actor, name: &str) -> Result<ProjectInfo> {
        let ctx = self.project_ctx(&actor.principal, name).await?;
        check(&actor.principal, ctx.target(), PROJECT_READ, || {
            format!("reading project {name:?}")
        })?;
        Ok(ctx.info())
    }

    pub async fn update_project(
        &self,
        actor: &Actor,
        name: &str,
        public: Option<bool>,
    ) -> Result<ProjectInfo> {
        let ctx = self.project_ctx(&actor.principal, name).await?;
        check(&actor.principal, ctx.target(), PROJECT_UPDATE, || {
            format!("changing project {name:?}")
        })?;
        if let Some(public) = public
            && public != ctx.row.public
        {
            let mut tx = self.meta().begin_identity().await?;
            tx.set_project_public(ctx.row.id, public).await?;
            tx.commit().await?;
            self.auditor().record(
                actor
                    .event("project.update", format!("project/{name}"))
                    .project(name)
                    .details(format!("public={public}")),
            );
        }
        self.get_project(actor, name).await
    }

    pub async fn delete_project(&self, actor: &Actor, name: &str) -> Result<()> {
        check_system(&actor.principal, PROJECT_DELETE, "deleting projects")?;
        let ctx = self.project_ctx(&actor.principal, name).await?;
        if name == DEFAULT_PROJECT {
            return Err(Error::Conflict(format!(
                "project {DEFAULT_PROJECT:?} holds single-segment repository names and cannot be deleted"
            )));
        }
        if let Some(repo) = self.meta().project_content(name).await? {
            return Err(Error::Conflict(format!(
                "project {name:?} still holds repositories (e.g. {repo}); delete them first"
            )));
        }
        let mut tx = self.meta().begin_identity().await?;
        tx.delete_project(ctx.row.id).await?;
        tx.commit().await?;
        // Its robots are gone with it.
        self.forget_logins();
        self.auditor().record(
            actor
                .event("project.delete", format!("project/{name}"))
                .project(name),
        );
        Ok(())
    }
}
