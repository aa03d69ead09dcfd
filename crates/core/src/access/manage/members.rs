//! Project members: users and groups with a role. Listing needs
//! `member:list` (guest and up); adding, changing and removing need
//! `member:create/update/delete` (project admin), as Harbor's table says.

use berth_auth::{Action, Permission, Role};
use berth_meta::{MemberRef, MemberRow};

use super::groups::check_source;
use super::{Actor, PageRequest, Paged, check, invalid};
use crate::access::Access;
use crate::{Error, Result};

const MEMBER_LIST: Permission = Permission::new(berth_auth::Resource::Member, Action::List);
const MEMBER_CREATE: Permission = Permission::new(berth_auth::Resource::Member, Action::Create);
const MEMBER_UPDATE: Permission = Permission::new(berth_auth::Resource::Member, Action::Update);
const MEMBER_DELETE: Permission = Permission::new(berth_auth::Resource::Member, Action::Delete);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::User => "user",
            MemberKind::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Result<MemberKind> {
        match s {
            "user" => Ok(MemberKind::User),
            "group" => Ok(MemberKind::Group),
            other => Err(invalid(
                "member kind",
                format!("{other:?} is not user or group"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub kind: MemberKind,
    /// Id of the user or group.
    pub id: i64,
    pub name: String,
    /// A group's source (`local`, `ldap`, `oidc`).
    pub group_source: Option<String>,
    pub role: Role,
}

impl MemberInfo {
    /// Listing order and cursor: users before groups, by name, then id.
    fn cursor(&self) -> String {
        format!("{}:{}:{}", self.kind.as_str(), self.id, self.name)
    }

    fn key(&self) -> (MemberKind, &str, i64) {
        (self.kind, &self.name, self.id)
    }
}

/// Who to add: exactly one of a user or a group (with its source when
/// the name exists in more than one).
#[derive(Debug, Clone)]
pub struct NewMember {
    pub user: Option<String>,
    pub group: Option<String>,
    pub group_source: Option<String>,
    pub role: Role,
}

fn parse_cursor(after: &str) -> Result<(MemberKind, String, i64)> {
    let bad = || invalid("after", format!("{after:?} is not a member cursor"));
    let mut parts = after.splitn(3, ':');
    let kind = MemberKind::parse(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
    let id = parts.next().and_then(|i| i.parse().ok()).ok_or_else(bad)?;
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok((kind, name, id))
}

impl Access {
    pub async fn list_members(
        &self,
        actor: &Actor,
        project: &str,
        page: PageRequest<'_>,
    ) -> Result<Paged<MemberInfo>> {
        let ctx = self.project_ctx(&actor.principal, project).await?;
        check(&actor.principal, ctx.target(), MEMBER_LIST, || {
            format!("listing the members of project {project:?}")
        })?;
        let mut items = self.members_of(ctx.row.id).await?;
        items.sort_by(|a, b| a.key().cmp(&b.key()));
        if let Some(after) = page.after {
            let (kind, name, id) = parse_cursor(after)?;
            items.retain(|m| m.key() > (kind, name.as_str(), id));
        }
        items.truncate(page.limit() + 1);
        Ok(Paged::cut(items, page.limit(), MemberInfo::cursor))
    }

    async fn members_of(&self, project_id: i64) -> Result<Vec<MemberInfo>> {
        let rows = self.meta().project_members(project_id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for MemberRow { member, name, role } in rows {
            let Ok(role) = role.parse::<Role>() else {
                continue;
            };
            out.push(match member {
                MemberRef::User(id) => MemberInfo {
                    kind: MemberKind::User,
                    id,
                    name,
                    group_source: None,
                    role,
                },
                MemberRef::Group(id) => MemberInfo {
                    kind: MemberKind::Group,
                    id,
                    name,
                    group_source: self.meta().group_by_id(id).await?.map(|g| g.source),
                    role,
                },
            });
        }
        Ok(out)
    }

    /// The user or group a member name refers to.
    async fn resolve_member(
        &self,
        kind: MemberKind,
        name: &str,
        group_source: Option<&str>,
    ) -> Result<MemberRef> {
        let meta = self.meta();
        match kind {
            MemberKind::User => meta
                .user_by_name(name)
                .await?
                .map(|u| MemberRef::User(u.id))
                .ok_or_else(|| Error::NotFound(format!("user {name:?} does not exist"))),
            MemberKind::Group => {
                let sources: Vec<&str> = match group_source {
                    Some(s) => {
                        check_source("group_source", s)?;
                        vec![s]
                    }
                    None => super::groups::SOURCES.to_vec(),
                };
                let mut found = Vec::new();
                for s in sources {
                    if let Some(g) = meta.group_by_name(s, name).await? {
                        found.push(g);
                    }
                }
                match found.as_slice() {
                    [] => Err(Error::NotFound(format!("group {name:?} does not exist"))),
                    [g] => Ok(MemberRef::Group(g.id)),
                    _ => Err(invalid(
                        "group_source",
                        format!("group {name:?} exists in several sources; name one"),
                    )),
                }
            }
        }
    }

    pub async fn add_member(
        &self,
        actor: &Actor,
        project: &str,
        new: NewMember,
    ) -> Result<MemberInfo> {
        let ctx = self.project_ctx(&actor.principal, project).await?;
        check(&actor.principal, ctx.target(), MEMBER_CREATE, || {
            format!("adding members to project {project:?}")
        })?;
        let (kind, name) = match (&new.user, &new.group) {
            (Some(u), None) => (MemberKind::User, u.as_str()),
            (None, Some(g)) => (MemberKind::Group, g.as_str()),
            _ => return Err(invalid("user", "give exactly one of user or group")),
        };
        let member = match self
            .resolve_member(kind, name, new.group_source.as_deref())
            .await
        {
            // A directory group is named by its DN (LDAP) or claim value
            // (OIDC) and may get a role before any member has logged in;
            // logins find it by that name.
            Err(Error::NotFound(_))
                if kind == MemberKind::Group
                    && matches!(new.group_source.as_deref(), Some("ldap" | "oidc")) =>
            {
                let source = new.group_source.as_deref().unwrap_or_default();
                super::check_label("group", name, 1024)?;
                let mut tx = self.meta().begin_identity().await?;
                let id = tx.upsert_group(source, name, Some(name)).await?;
                tx.commit().await?;
                self.auditor().record(
                    actor
                        .event("group.create", format!("group/{source}/{name}"))
                        .details(format!("id={id}, on adding it to project {project}")),
                );
                MemberRef::Group(id)
            }
            other => other?,
        };
        let existing = self.members_of(ctx.row.id).await?;
        if existing.iter().any(|m| same(m, member)) {
            return Err(Error::Conflict(format!(
                "{} {name:?} is already a member of project {project:?}; change its role with PUT",
                kind.as_str()
            )));
        }
        self.write_member(
            actor,
            &ctx.row.name,
            ctx.row.id,
            member,
            new.role,
            "member.add",
            kind,
            name,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn update_member(
        &self,
        actor: &Actor,
        project: &str,
        kind: MemberKind,
        name: &str,
        group_source: Option<&str>,
        role: Role,
    ) -> Result<MemberInfo> {
        let ctx = self.project_ctx(&actor.principal, project).await?;
        check(&actor.principal, ctx.target(), MEMBER_UPDATE, || {
            format!("changing members of project {project:?}")
        })?;
        let member = self.resolve_member(kind, name, group_source).await?;
        let existing = self.members_of(ctx.row.id).await?;
        if !existing.iter().any(|m| same(m, member)) {
            return Err(not_member(kind, name, project));
        }
        self.write_member(
            actor,
            project,
            ctx.row.id,
            member,
            role,
            "member.update",
            kind,
            name,
        )
        .await
    }

    pub async fn remove_member(
        &self,
        actor: &Actor,
        project: &str,
        kind: MemberKind,
        name: &str,
        group_source: Option<&str>,
    ) -> Result<()> {
        let ctx = self.project_ctx(&actor.principal, project).await?;
        check(&actor.principal, ctx.target(), MEMBER_DELETE, || {
            format!("removing members of project {project:?}")
        })?;
        let member = self.resolve_member(kind, name, group_source).await?;
        let mut tx = self.meta().begin_identity().await?;
        let removed = tx.remove_member(ctx.row.id, member).await?;
        tx.commit().await?;
        if !removed {
            return Err(not_member(kind, name, project));
        }
        self.auditor().record(
            actor
                .event(
                    "member.remove",
                    format!("project/{project}/{}/{name}", kind.as_str()),
                )
                .project(project),
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_member(
        &self,
        actor: &Actor,
        project: &str,
        project_id: i64,
        member: MemberRef,
        role: Role,
        action: &str,
        kind: MemberKind,
        name: &str,
    ) -> Result<MemberInfo> {
        let mut tx = self.meta().begin_identity().await?;
        tx.set_member(project_id, member, role.as_str()).await?;
        tx.commit().await?;
        self.auditor().record(
            actor
                .event(
                    action,
                    format!("project/{project}/{}/{name}", kind.as_str()),
                )
                .project(project)
                .details(format!("role={role}")),
        );
        self.members_of(project_id)
            .await?
            .into_iter()
            .find(|m| same(m, member))
            .ok_or_else(|| not_member(kind, name, project))
    }
}

fn same(m: &MemberInfo, member: MemberRef) -> bool {
    match member {
        MemberRef::User(id) => m.kind == MemberKind::User && m.id == id,
        MemberRef::Group(id) => m.kind == MemberKind::Group && m.id == id,
    }
}

fn not_member(kind: MemberKind, name: &str, project: &str) -> Error {
    Error::NotFound(format!(
        "{} {name:?} is not a member of project {project:?}",
        kind.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_order() {
        let m = MemberInfo {
            kind: MemberKind::Group,
            id: 7,
            name: "cn=dev:ops,dc=x".into(),
            group_source: Some("ldap".into()),
            role: Role::Developer,
        };
        let (kind, name, id) = parse_cursor(&m.cursor()).unwrap();
        assert_eq!((kind, name.as_str(), id), m.key());
        assert!((MemberKind::User, "zed", 9) < (MemberKind::Group, "alice", 1));
        assert!(parse_cursor("robot:1:x").is_err());
        assert!(parse_cursor("user:x:y").is_err());
    }
}
