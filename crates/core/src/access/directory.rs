//! Directory logins (LDAP/AD): the directory checks the password; Berth
//! keeps a user row (source `ldap`, the DN as external id) and mirrors the
//! user's groups, nested ones included, at every login, so project roles
//! given to a directory group apply at once and removals take effect at
//! the next login.

use berth_ldap::{LdapDirectory, LdapUser};
use berth_meta::NewUser;

use super::Access;
use super::login::{Login, LoginMethod};
use crate::{Error, Result};

/// The directory and how its groups map to Berth.
#[derive(Clone, Debug)]
pub struct LdapSettings {
    pub directory: LdapDirectory,
    /// Members of this group (DN, nested membership counts) are system
    /// admins; losing the membership removes the right at the next login.
    pub admin_group_dn: Option<String>,
}

impl Access {
    /// Tries the directory. `Ok(None)`: not a directory user, or a wrong
    /// password (the caller answers both the same way).
    pub(super) async fn login_ldap(
        &self,
        ldap: &LdapSettings,
        username: &str,
        password: &str,
    ) -> Result<Option<Login>> {
        let found = ldap
            .directory
            .authenticate(username, password)
            .await
            .map_err(|e| Error::Invalid(format!("LDAP: {e}")))?;
        let Some(found) = found else {
            return Ok(None);
        };
        let user = self.mirror_ldap_user(ldap, &found).await?;
        if user.disabled {
            return Ok(None);
        }
        Ok(Some(Login {
            principal: self.user_principal(&user, None).await?,
            method: LoginMethod::Password,
        }))
    }

    /// Creates or updates the user row and its groups from the directory.
    async fn mirror_ldap_user(
        &self,
        ldap: &LdapSettings,
        found: &LdapUser,
    ) -> Result<berth_meta::UserRow> {
        let meta = self.meta();
        let admin = ldap
            .admin_group_dn
            .as_deref()
            .is_some_and(|dn| found.groups.iter().any(|g| g.dn.eq_ignore_ascii_case(dn)));
        let mut tx = meta.begin_identity().await?;
        let existing = meta.user_by_name(&found.username).await?;
        let id = match &existing {
            Some(u) if u.source == "ldap" => {
                if u.email.as_deref() != found.email.as_deref() {
                    tx.set_user_email(u.id, found.email.as_deref()).await?;
                }
                if u.system_admin != admin {
                    tx.set_system_admin(u.id, admin).await?;
                }
                u.id
            }
            // A local (or OIDC) account of the same name: the directory
            // does not take it over.
            Some(_) => {
                return Err(Error::Conflict(format!(
                    "user {:?} exists with another source; the directory login is refused",
                    found.username
                )));
            }
            None => tx
                .insert_user(NewUser {
                    name: &found.username,
                    email: found.email.as_deref(),
                    source: "ldap",
                    external_id: Some(&found.dn),
                    password_hash: None,
                    system_admin: admin,
                })
                .await?
                .ok_or_else(|| Error::Conflict(format!("user {:?} exists", found.username)))?,
        };
        let mut group_ids = Vec::with_capacity(found.groups.len());
        for g in &found.groups {
            group_ids.push(tx.upsert_group("ldap", &g.dn, Some(&g.dn)).await?);
        }
        tx.set_user_groups(id, &group_ids).await?;
        tx.commit().await?;
        meta.user_by_id(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {:?} vanished", found.username)))
    }
}
