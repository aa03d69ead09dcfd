//! Groups (system admin): local groups whose members are kept here, and
//! LDAP/OIDC groups that are created ahead of the first login (so project
//! roles can be given to them) and whose members come from the directory.

use berth_auth::{Action, Permission, Resource};
use berth_meta::GroupRow;

use super::{Actor, PageRequest, Paged, check_label, check_system, invalid};
use crate::access::Access;
use crate::{Error, Result};

const GROUP_LIST: Permission = Permission::new(Resource::UserGroup, Action::List);
const GROUP_READ: Permission = Permission::new(Resource::UserGroup, Action::Read);
const GROUP_CREATE: Permission = Permission::new(Resource::UserGroup, Action::Create);
const GROUP_UPDATE: Permission = Permission::new(Resource::UserGroup, Action::Update);
const GROUP_DELETE: Permission = Permission::new(Resource::UserGroup, Action::Delete);

pub(super) const SOURCES: [&str; 3] = ["local", "ldap", "oidc"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: i64,
    pub name: String,
    /// `local`, `ldap` or `oidc`.
    pub source: String,
    /// The LDAP DN or the OIDC group claim value.
    pub external_id: Option<String>,
    /// Member names; filled in when one group is read.
    pub members: Option<Vec<String>>,
}

impl From<GroupRow> for GroupInfo {
    fn from(g: GroupRow) -> GroupInfo {
        GroupInfo {
            id: g.id,
            name: g.name,
            source: g.source,
            external_id: g.external_id,
            members: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub name: String,
    pub source: String,
    /// Defaults to the name for LDAP (the DN) and OIDC (the claim value).
    pub external_id: Option<String>,
}

pub(super) fn check_source(field: &str, source: &str) -> Result<()> {
    if SOURCES.contains(&source) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{source:?} is not one of local, ldap, oidc"),
        ))
    }
}

fn not_found(id: i64) -> Error {
    Error::NotFound(format!("group {id} does not exist"))
}

impl Access {
    pub async fn list_groups(
        &self,
        actor: &Actor,
        page: PageRequest<'_>,
    ) -> Result<Paged<GroupInfo>> {
        check_system(&actor.principal, GROUP_LIST, "listing groups")?;
        let after = page
            .after
            .map(|a| {
                a.parse::<i64>()
                    .map_err(|_| invalid("after", "must be a group id"))
            })
            .transpose()?;
        let rows = self.meta().groups(after, page.fetch()).await?;
        let items = rows.into_iter().map(GroupInfo::from).collect();
        Ok(Paged::cut(items, page.limit(), |g: &GroupInfo| {
            g.id.to_string()
        }))
    }

    pub async fn get_group(&self, actor: &Actor, id: i64) -> Result<GroupInfo> {
        check_system(&actor.principal, GROUP_READ, "reading groups")?;
        let row = self
            .meta()
            .group_by_id(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let mut group = GroupInfo::from(row);
        group.members = Some(self.meta().group_member_names(id).await?);
        Ok(group)
    }

    pub async fn create_group(&self, actor: &Actor, new: NewGroup) -> Result<GroupInfo> {
        check_system(&actor.principal, GROUP_CREATE, "creating groups")?;
        check_label("name", &new.name, 1024)?;
        check_source("source", &new.source)?;
        let external_id = match (new.source.as_str(), new.external_id) {
            ("local", Some(_)) => {
                return Err(invalid("external_id", "a local group has no external id"));
            }
            ("local", None) => None,
            (_, Some(id)) => {
                check_label("external_id", &id, 1024)?;
                Some(id)
            }
            (_, None) => Some(new.name.clone()),
        };
        let meta = self.meta();
        if meta.group_by_name(&new.source, &new.name).await?.is_some() {
            return Err(Error::Conflict(format!(
                "{} group {:?} already exists",
                new.source, new.name
            )));
        }
        let mut tx = meta.begin_identity().await?;
        let id = tx
            .upsert_group(&new.source, &new.name, external_id.as_deref())
            .await
            .map_err(|e| match e {
                // The external id is unique per source.
                berth_meta::Error::Db(ref db)
                    if db
                        .as_database_error()
                        .is_some_and(|d| d.is_unique_violation()) =>
                {
                    Error::Conflict(format!(
                        "another {} group has the external id {:?}",
                        new.source,
                        external_id.as_deref().unwrap_or("")
                    ))
                }
                other => other.into(),
            })?;
        tx.commit().await?;
        self.auditor().record(
            actor
                .event("group.create", format!("group/{}/{}", new.source, new.name))
                .details(format!("id={id}")),
        );
        self.get_group(actor, id).await
    }

    pub async fn delete_group(&self, actor: &Actor, id: i64) -> Result<()> {
        check_system(&actor.principal, GROUP_DELETE, "deleting groups")?;
        let group = self
            .meta()
            .group_by_id(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let mut tx = self.meta().begin_identity().await?;
        tx.delete_group(id).await?;
        tx.commit().await?;
        // Cached logins carry their group ids.
        self.forget_logins();
        self.auditor().record(actor.event(
            "group.delete",
            format!("group/{}/{}", group.source, group.name),
        ));
        Ok(())
    }

    /// Adds (`add`) or removes a user to a local group.
    pub async fn set_group_member(
        &self,
        actor: &Actor,
        id: i64,
        user: &str,
        add: bool,
    ) -> Result<()> {
        check_system(&actor.principal, GROUP_UPDATE, "changing group members")?;
        let group = self
            .meta()
            .group_by_id(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if group.source != "local" {
            return Err(invalid(
                "group",
                format!(
                    "{:?} is an {} group; its members come from the directory at login",
                    group.name,
                    group.source.to_uppercase()
                ),
            ));
        }
        let user_row = self
            .meta()
            .user_by_name(user)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user:?} does not exist")))?;
        let mut tx = self.meta().begin_identity().await?;
        let changed = if add {
            tx.add_user_to_group(user_row.id, id).await?
        } else {
            tx.remove_user_from_group(user_row.id, id).await?
        };
        tx.commit().await?;
        if !add && !changed {
            return Err(Error::NotFound(format!(
                "user {user:?} is not in group {:?}",
                group.name
            )));
        }
        if changed {
            self.forget_logins();
            let action = if add {
                "group.member.add"
            } else {
                "group.member.remove"
            };
            self.auditor().record(
                actor
                    .event(action, format!("group/local/{}", group.name))
                    .details(format!("user={user}")),
            );
        }
        Ok(())
    }
}
