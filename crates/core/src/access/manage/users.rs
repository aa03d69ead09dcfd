//! Users: the caller itself (`/me`), accounts (system admin, or a user
//! reading and updating their own email and password), the last-admin
//! guard.

use berth_auth::{Action, Grant, Permission, Principal, Resource};
use berth_meta::UserRow;

use super::{Actor, PageRequest, Paged, check_system, invalid, require_authenticated};
use crate::access::{Access, LoginMethod};
use crate::{Error, Result};

const USER_LIST: Permission = Permission::new(Resource::User, Action::List);
const USER_READ: Permission = Permission::new(Resource::User, Action::Read);
const USER_CREATE: Permission = Permission::new(Resource::User, Action::Create);
const USER_UPDATE: Permission = Permission::new(Resource::User, Action::Update);
const USER_DELETE: Permission = Permission::new(Resource::User, Action::Delete);

/// A user account as the API shows it (never its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    /// `local`, `ldap` or `oidc`.
    pub source: String,
    pub system_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<UserRow> for UserInfo {
    fn from(u: UserRow) -> UserInfo {
        UserInfo {
            id: u.id,
            name: u.name,
            email: u.email,
            source: u.source,
            system_admin: u.system_admin,
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// The caller, as `/me` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub name: String,
    /// `user` or `robot`.
    pub kind: &'static str,
    pub system_admin: bool,
    /// Group names (users).
    pub groups: Vec<String>,
    pub email: Option<String>,
    /// A robot's permissions, or a scoped token's scopes.
    pub permissions: Option<Vec<Grant>>,
    /// A robot's expiry.
    pub expires_at: Option<i64>,
    /// `password`, `robot_secret`, `personal_token`, ….
    pub auth_method: Option<String>,
}

/// A local account to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub email: Option<String>,
    pub password: String,
    pub system_admin: bool,
}

/// Changes to a user; `None` leaves a field alone (`email: Some(None)`
/// removes the address).
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub email: Option<Option<String>>,
    pub system_admin: Option<bool>,
    pub disabled: Option<bool>,
}

/// `password`, `robot_secret`, `personal_token`, … (the method's name in
/// snake case).
pub(super) fn method_name(method: LoginMethod) -> String {
    let mut out = String::new();
    for (i, c) in format!("{method:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn check_email(email: &str) -> Result<()> {
    let ok = email.len() <= 255
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "email",
            format!("{email:?} is not an email address"),
        ))
    }
}

fn check_password(field: &str, password: &str) -> Result<()> {
    berth_auth::check_new_password(password).map_err(|e| invalid(field, e))
}

/// Whether the actor is `user` itself, logged in without a scoped token
/// (a scoped token does not manage its own account).
fn is_self(actor: &Actor, user: &UserRow) -> bool {
    matches!(&actor.principal, Principal::User { id, limited_to: None, .. } if *id == user.id)
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("user {name:?} does not exist"))
}

impl Access {
    /// The caller itself.
    pub async fn me(&self, actor: &Actor) -> Result<Me> {
        require_authenticated(actor)?;
        let auth_method = actor.method.map(method_name);
        match &actor.principal {
            Principal::User {
                id,
                name,
                system_admin,
                limited_to,
                ..
            } => {
                let groups = self
                    .meta()
                    .groups_of_user(*id)
                    .await?
                    .into_iter()
                    .map(|g| g.name)
                    .collect();
                let email = self.meta().user_by_id(*id).await?.and_then(|u| u.email);
                Ok(Me {
                    name: name.clone(),
                    kind: "user",
                    system_admin: *system_admin,
                    groups,
                    email,
                    permissions: limited_to.clone(),
                    expires_at: None,
                    auth_method,
                })
            }
            Principal::Robot {
                name,
                permissions,
                expires_at,
                ..
            } => Ok(Me {
                name: name.clone(),
                kind: "robot",
                system_admin: false,
                groups: Vec::new(),
                email: None,
                permissions: Some(permissions.clone()),
                expires_at: *expires_at,
                auth_method,
            }),
            Principal::Anonymous => unreachable!("checked above"),
        }
    }

    pub async fn list_users(
        &self,
        actor: &Actor,
        page: PageRequest<'_>,
    ) -> Result<Paged<UserInfo>> {
        check_system(&actor.principal, USER_LIST, "listing users")?;
        let rows = self.meta().users(page.after, page.fetch()).await?;
        let items = rows.into_iter().map(UserInfo::from).collect();
        Ok(Paged::cut(items, page.limit(), |u: &UserInfo| {
            u.name.clone()
        }))
    }

    pub async fn get_user(&self, actor: &Actor, name: &str) -> Result<UserInfo> {
        require_authenticated(actor)?;
        let user = self.meta().user_by_name(name).await?;
        let own = matches!((&actor.principal, &user), (Principal::User { id, .. }, Some(u)) if *id == u.id);
        if !own {
            check_system(&actor.principal, USER_READ, "reading another user")?;
        }
        user.map(UserInfo::from).ok_or_else(|| not_found(name))
    }

    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<UserInfo> {
        check_system(&actor.principal, USER_CREATE, "creating users")?;
        if new.system_admin && !actor.principal.is_system_admin() {
            return Err(Error::Denied(
                "only a system admin may create system admins".into(),
            ));
        }
        berth_auth::validate_user_name(&new.name).map_err(|e| invalid("name", e))?;
        if let Some(email) = &new.email {
            check_email(email)?;
        }
        check_password("password", &new.password)?;
        let hash = self.hash_password(&new.password).await?;
        let mut tx = self.meta().begin_identity().await?;
        let id = tx
            .insert_user(berth_meta::NewUser {
                name: &new.name,
                email: new.email.as_deref(),
                source: "local",
                external_id: None,
                password_hash: Some(&hash),
                system_admin: new.system_admin,
            })
            .await?
            .ok_or_else(|| Error::Conflict(format!("user {:?} already exists", new.name)))?;
        tx.commit().await?;
        self.auditor().record(
            actor
                .event("user.create", format!("user/{}", new.name))
                .details(format!("system_admin={}", new.system_admin)),
        );
        self.meta()
            .user_by_id(id)
            .await?
            .map(UserInfo::from)
            .ok_or_else(|| not_found(&new.name))
    }

    pub async fn update_user(
        &self,
        actor: &Actor,
        name: &str,
        patch: UserPatch,
    ) -> Result<UserInfo> {
        require_authenticated(actor)?;
        let user = self
            .meta()
            .user_by_name(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        let admin_fields = patch.system_admin.is_some() || patch.disabled.is_some();
        if admin_fields || !is_self(actor, &user) {
            check_system(&actor.principal, USER_UPDATE, "changing another user")?;
        }
        if (patch.system_admin.is_some() || (admin_fields && user.system_admin))
            && !actor.principal.is_system_admin()
        {
            return Err(Error::Denied(
                "only a system admin may grant or revoke system admin, or disable a system admin"
                    .into(),
            ));
        }
        if let Some(Some(email)) = &patch.email {
            check_email(email)?;
        }
        let mut tx = self.meta().begin_identity().await?;
        let stays_admin = patch.system_admin.unwrap_or(user.system_admin)
            && !patch.disabled.unwrap_or(user.disabled);
        if user.system_admin && !user.disabled && !stays_admin {
            last_admin_guard(&mut tx, &user).await?;
        }
        let mut changed = Vec::new();
        if let Some(email) = &patch.email
            && *email != user.email
        {
            tx.set_user_email(user.id, email.as_deref()).await?;
            changed.push("email".to_string());
        }
        if let Some(admin) = patch.system_admin
            && admin != user.system_admin
        {
            tx.set_system_admin(user.id, admin).await?;
            changed.push(format!("system_admin={admin}"));
        }
        if let Some(disabled) = patch.disabled
            && disabled != user.disabled
        {
            tx.set_user_disabled(user.id, disabled).await?;
            changed.push(format!("disabled={disabled}"));
        }
        tx.commit().await?;
        if !changed.is_empty() {
            if patch.system_admin.is_some() || patch.disabled.is_some() {
                self.forget_logins();
            }
            self.auditor().record(
                actor
                    .event("user.update", format!("user/{name}"))
                    .details(changed.join(", ")),
            );
        }
        self.meta()
            .user_by_id(user.id)
            .await?
            .map(UserInfo::from)
            .ok_or_else(|| not_found(name))
    }

    pub async fn delete_user(&self, actor: &Actor, name: &str) -> Result<()> {
        check_system(&actor.principal, USER_DELETE, "deleting users")?;
        let user = self
            .meta()
            .user_by_name(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        if user.system_admin && !actor.principal.is_system_admin() {
            return Err(Error::Denied(
                "only a system admin may delete a system admin".into(),
            ));
        }
        let mut tx = self.meta().begin_identity().await?;
        if user.system_admin && !user.disabled {
            last_admin_guard(&mut tx, &user).await?;
        }
        tx.delete_user(user.id).await?;
        tx.commit().await?;
        self.forget_logins();
        self.auditor()
            .record(actor.event("user.delete", format!("user/{name}")));
        Ok(())
    }

    /// Sets a user's password: the user with their old password, or a
    /// system admin for somebody else without it.
    pub async fn change_password(
        &self,
        actor: &Actor,
        name: &str,
        old_password: Option<&str>,
        new_password: &str,
    ) -> Result<()> {
        require_authenticated(actor)?;
        let user = self.meta().user_by_name(name).await?;
        let own = matches!((&actor.principal, &user), (Principal::User { id, .. }, Some(u)) if *id == u.id);
        if !own {
            check_system(
                &actor.principal,
                USER_UPDATE,
                "changing another user's password",
            )?;
            if !actor.principal.is_system_admin() {
                return Err(Error::Denied(
                    "only a system admin may set another user's password".into(),
                ));
            }
        }
        let user = user.ok_or_else(|| not_found(name))?;
        if user.source != "local" {
            return Err(invalid(
                "new_password",
                format!(
                    "user {name:?} is an {} account; its password is managed there",
                    user.source.to_uppercase()
                ),
            ));
        }
        if own {
            let old = old_password.filter(|p| !p.is_empty()).ok_or_else(|| {
                invalid("old_password", "is required to change your own password")
            })?;
            if let Some(retry_after_secs) = self.inner.limiter.blocked(name, actor.origin.addr) {
                return Err(Error::TooManyRequests { retry_after_secs });
            }
            let passwords = self.inner.passwords.clone();
            let stored = user.password_hash.clone();
            let candidate = old.to_string();
            let matched = tokio::task::spawn_blocking(move || {
                passwords.verify(&candidate, stored.as_deref())
            })
            .await
            .map_err(|e| Error::Invalid(format!("password check task: {e}")))?;
            if !matched {
                self.inner.limiter.failed(name, actor.origin.addr);
                self.auditor().record(
                    actor
                        .event("user.password", format!("user/{name}"))
                        .result("failure")
                        .details("wrong old password"),
                );
                return Err(invalid(
                    "old_password",
                    "does not match the current password",
                ));
            }
        }
        check_password("new_password", new_password)?;
        let hash = self.hash_password(new_password).await?;
        let mut tx = self.meta().begin_identity().await?;
        tx.set_password_hash(user.id, Some(&hash)).await?;
        tx.commit().await?;
        self.forget_logins();
        self.auditor()
            .record(actor.event("user.password", format!("user/{name}")));
        Ok(())
    }
}

/// Refuses a change that would leave no enabled system admin.
async fn last_admin_guard(tx: &mut berth_meta::IdentityTx, user: &UserRow) -> Result<()> {
    if tx.enabled_admins_except(user.id).await? == 0 {
        return Err(Error::Conflict(format!(
            "user {:?} is the last enabled system admin; make another user a system admin first",
            user.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_snake_case() {
        assert_eq!(method_name(LoginMethod::Password), "password");
        assert_eq!(method_name(LoginMethod::RobotSecret), "robot_secret");
        assert_eq!(method_name(LoginMethod::PersonalToken), "personal_token");
    }

    #[test]
    fn emails() {
        assert!(check_email("a@example.com").is_ok());
        for bad in ["", "a", "@x", "a@", "a b@x", "a@x\n"] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }
}
