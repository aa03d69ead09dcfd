//! Who is calling and what they may do: the use cases behind `docker
//! login`, the token endpoint and every `/v2` request's authorization.
//!
//! The pure rules (password hashing, roles, scopes, JWTs) live in
//! `berth-auth`; this module looks accounts, projects and memberships up in
//! the metadata store, applies those rules, and records what happened in
//! the audit log.
//!
//! - [`login`]: credentials → [`Principal`] (local passwords, robot
//!   secrets, personal access tokens), with a short success cache and the
//!   failed-login limiter.
//! - [`check`]: the access a principal or a bearer token has to the scopes
//!   a request needs, and the tokens the token endpoint issues.
//! - [`keys`]: signing keys shared by every node through the database.
//! - [`audit`]: write-behind audit log.

mod audit;
mod bootstrap;
mod check;
mod directory;
mod keys;
mod limiter;
mod login;
pub mod manage;
mod oidc;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_auth::{PasswordParams, Passwords, TokenConfig};
use berth_meta::MetaStore;

pub(crate) use audit::store_now as store_audit_now;
pub use audit::{AuditEvent, AuditForwarding, Auditor};
pub use berth_auth::{
    BearerError, Credentials, Principal, Scope, ScopeAction, ScopeTarget, TokenResponse,
    bearer_challenge, parse_authorization, parse_scopes, project_of,
};
pub use bootstrap::AdminPassword;
pub use check::Caller;
pub use directory::LdapSettings;
pub use limiter::LoginLimits;
pub use login::{Login, LoginMethod};
pub use oidc::{LOGIN_WINDOW as OIDC_LOGIN_WINDOW, OidcSettings, Session};

use crate::{Error, Result};

/// Deployment choices for identity and access.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// The `service` of challenges and the `aud` of tokens.
    pub service: String,
    /// Access token lifetime.
    pub token_lifetime: Duration,
    /// Let system admins push to a project that does not exist yet,
    /// creating it (private). Off by default: a typo should not make a
    /// project.
    pub auto_create_projects: bool,
    pub limits: LoginLimits,
    pub password_params: PasswordParams,
    /// Where audit events also go (a JSON-lines file, syslog).
    pub audit: AuditForwarding,
    /// Check passwords of non-local users against this directory.
    pub ldap: Option<LdapSettings>,
    /// Browser logins through an OpenID provider.
    pub oidc: Option<OidcSettings>,
    /// CI ID tokens accepted as robot credentials.
    pub workload: Option<berth_oidc::WorkloadVerifier>,
}

impl Default for AccessSettings {
    fn default() -> AccessSettings {
        AccessSettings {
            service: "berth".into(),
            token_lifetime: Duration::from_secs(300),
            auto_create_projects: false,
            limits: LoginLimits::default(),
            password_params: PasswordParams::default(),
            audit: AuditForwarding::default(),
            ldap: None,
            oidc: None,
            workload: None,
        }
    }
}

/// The identity and access façade. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

struct Inner {
    meta: MetaStore,
    settings: AccessSettings,
    token: TokenConfig,
    passwords: Passwords,
    keys: keys::Keys,
    logins: login::LoginCache,
    tokens: check::TokenCache,
    limiter: limiter::Limiter,
    audit: Auditor,
}

/// Where a request came from, for the limiter and the audit log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    pub addr: Option<IpAddr>,
}

impl Access {
    /// Loads (or creates, on first start) the token signing keys and starts
    /// the audit writer.
    pub async fn open(meta: MetaStore, settings: AccessSettings) -> Result<Access> {
        let passwords = Passwords::new(settings.password_params)
            .map_err(|e| Error::Invalid(format!("password parameters: {e}")))?;
        let mut token = TokenConfig::new(settings.service.clone(), settings.service.clone());
        token.lifetime = settings.token_lifetime;
        let keys = keys::Keys::load_or_create(&meta).await?;
        let audit = Auditor::start(meta.clone(), settings.audit.clone())?;
        Ok(Access {
            inner: Arc::new(Inner {
                limiter: limiter::Limiter::new(settings.limits),
                meta,
                settings,
                token,
                passwords,
                keys,
                logins: login::LoginCache::default(),
                tokens: check::TokenCache::default(),
                audit,
            }),
        })
    }

    /// The login sources in use, for `/api/v1/system/info`.
    pub fn sources(&self) -> Vec<&'static str> {
        let mut out = vec!["local"];
        if self.inner.settings.ldap.is_some() {
            out.push("ldap");
        }
        if self.inner.settings.oidc.is_some() {
            out.push("oidc");
        }
        if self.inner.settings.workload.is_some() {
            out.push("workload_identity");
        }
        out
    }

    pub fn service(&self) -> &str {
        &self.inner.settings.service
    }

    /// The JWKS document of every key that verifies tokens.
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.keys.jwks()
    }

    pub fn auditor(&self) -> &Auditor {
        &self.inner.audit
    }

    /// Writes what the audit writer still holds (at shutdown).
    pub async fn flush_audit(&self) {
        self.inner.audit.flush().await;
    }

    /// argon2id on a blocking thread (it takes tens of milliseconds).
    pub async fn hash_password(&self, password: &str) -> Result<String> {
        let passwords = self.inner.passwords.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || passwords.hash(&password))
            .await
            .map_err(|e| Error::Invalid(format!("hashing task: {e}")))?
            .map_err(|e| Error::Invalid(format!("password: {e}")))
    }

    pub(crate) fn meta(&self) -> &MetaStore {
        &self.inner.meta
    }
}

pub(crate) fn now_millis() -> i64 {
    berth_meta::now_millis()
}

pub(crate) fn now_secs() -> u64 {
    (now_millis() / 1000) as u64
}
