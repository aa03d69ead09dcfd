//! System configuration through the management API (system admin): the
//! effective settings and the LDAP "test connection". Settings come from
//! the configuration file and environment, which every node of a cluster
//! reads alike; the API shows them (secrets left out) rather than changing
//! them, so a node's behaviour never depends on which node last took a write.

use berth_auth::{Action, Permission, Resource};
use berth_ldap::ConnectionReport;

use super::{Actor, check_system};
use crate::access::Access;
use crate::{Error, Result};

impl Access {
    /// Whether `actor` may read the effective settings: system admins only
    /// (they name hosts, directories and group DNs an attacker would like).
    pub fn authorize_settings_read(&self, actor: &Actor) -> Result<()> {
        system_admin_only(actor, Action::Read, "reading the system settings")
    }

    /// Connects to the configured directory, binds with the search account
    /// and searches a sample of users; `None` when no directory is
    /// configured. An unreachable server or a TLS failure is an error
    /// naming it; a rejected search account is a report with `bind_ok`
    /// false.
    pub async fn test_ldap(&self, actor: &Actor) -> Result<Option<ConnectionReport>> {
        system_admin_only(actor, Action::Update, "testing the LDAP connection")?;
        let Some(ldap) = &self.inner.settings.ldap else {
            return Ok(None);
        };
        ldap.directory
            .test_connection()
            .await
            .map(Some)
            .map_err(|e| Error::Invalid(format!("LDAP: {e}")))
    }
}

fn system_admin_only(actor: &Actor, action: Action, what: &str) -> Result<()> {
    check_system(
        &actor.principal,
        Permission::new(Resource::Configuration, action),
        what,
    )?;
    // A robot granted configuration rights still may not read them: robots
    // are for pipelines, which never need the registry's own settings.
    if !actor.principal.is_system_admin() {
        return Err(Error::Denied(format!("{what} is for system admins only")));
    }
    Ok(())
}
