//! `/system/settings` and `/system/ldap/test`: the effective configuration
//! (secrets left out) and a check of the directory connection, for system
//! admins. The server fills [`Settings`] from its validated configuration
//! once at start; nothing here reads the config file.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::Auth;
use crate::App;
use crate::error::ApiError;

/// The settings this node runs with. Secrets (passwords, client secrets,
/// access keys, the password in a database URL) are never included.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Settings {
    /// Whether `/v2` and the API are served over HTTPS.
    pub tls: bool,
    pub auth: AuthSettings,
    pub storage: StorageSettings,
    pub metadata: MetadataSettings,
    pub uploads: UploadSettings,
    pub gc: GcSettings,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AuthSettings {
    /// The `service` of challenges and the audience of tokens.
    pub service: String,
    /// The token endpoint advertised in challenges; `null`: derived from
    /// each request's `Host`.
    pub realm: Option<String>,
    pub token_lifetime_secs: u64,
    pub auto_create_projects: bool,
    pub max_failed_logins: u32,
    pub max_failed_logins_per_address: u32,
    pub failed_login_window_secs: u64,
    pub audit_file: Option<String>,
    pub audit_syslog: Option<String>,
    pub ldap: Option<LdapSettings>,
    pub oidc: Option<OidcSettings>,
    /// CI workload identity rules.
    pub workload: Vec<WorkloadSettings>,
}

/// `[auth.ldap]` without the search account's password.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LdapSettings {
    pub url: String,
    pub start_tls: bool,
    pub ca_file: Option<String>,
    pub bind_dn: Option<String>,
    /// Whether a search account password is configured.
    pub bind_password_set: bool,
    pub user_base_dn: String,
    pub user_filter: String,
    pub username_attribute: String,
    pub email_attribute: String,
    pub group_base_dn: Option<String>,
    pub group_filter: String,
    pub group_member_attribute: String,
    pub group_name_attribute: String,
    pub use_member_of: bool,
    pub member_of_attribute: String,
    pub nested_groups: bool,
    pub max_nesting_depth: u32,
    pub pool_size: usize,
    pub timeout_secs: u64,
    /// Members of this group are system admins.
    pub admin_group_dn: Option<String>,
}

/// `[auth.oidc]` without the client secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct OidcSettings {
    pub issuer_url: String,
    pub client_id: String,
    /// Whether a client secret is configured (else a public client).
    pub client_secret_set: bool,
    pub redirect_url: String,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub username_claim: String,
    pub admin_group: Option<String>,
}

/// One `[[auth.workload]]` rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct WorkloadSettings {
    pub issuer: String,
    pub audience: String,
    pub claims: BTreeMap<String, String>,
    pub robot: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StorageSettings {
    /// `fs`, `s3`, `gcs` or `azure`.
    pub backend: String,
    /// The data directory (`fs`), or the endpoint of the object store.
    pub location: Option<String>,
    /// Bucket or container.
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    /// Lifetime of presigned redirects; `null`: blob bytes are proxied.
    pub redirect_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MetadataSettings {
    /// `sqlite` or `postgres`.
    pub engine: String,
    /// The database URL with any password replaced by `<redacted>`.
    pub url: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UploadSettings {
    pub ttl_secs: u64,
    pub reap_interval_secs: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct GcSettings {
    pub interval_secs: u64,
    pub grace_secs: u64,
    pub delete_untagged: bool,
    pub restore_window_secs: u64,
    pub orphan_batch: u64,
}

/// The outcome of a directory check.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct LdapTestDto {
    /// Whether `[auth.ldap]` is configured; the other fields are absent
    /// when it is not.
    pub(crate) configured: bool,
    /// The search account's bind was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bind_ok: Option<bool>,
    /// Users matching the user filter (a sample: at most 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) users_found: Option<usize>,
    /// The connection was encrypted (LDAPS or StartTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) elapsed_ms: Option<u64>,
}

/// The effective settings, secrets left out (system admin). They are
/// changed in the configuration file or the `BERTH_*` environment.
#[utoipa::path(get, operation_id = "system_settings", path = "/api/v1/system/settings", tag = "system",
    responses((status = 200, body = Settings), Errors), security(("basic" = [])))]
pub(crate) async fn get(
    State(app): State<App>,
    Auth(actor): Auth,
) -> Result<Json<Settings>, ApiError> {
    app.access.authorize_settings_read(&actor)?;
    Ok(Json((*app.settings).clone()))
}

/// Connects to the configured LDAP server, binds with the search account
/// and searches a sample of users (system admin). An unreachable server,
/// a TLS failure or a bad base DN answers 400 naming the problem.
#[utoipa::path(post, operation_id = "test_ldap_connection", path = "/api/v1/system/ldap/test", tag = "system",
    responses((status = 200, body = LdapTestDto), Errors), security(("basic" = [])))]
pub(crate) async fn test_ldap(
    State(app): State<App>,
    Auth(actor): Auth,
) -> Result<Json<LdapTestDto>, ApiError> {
    let dto = match app.access.test_ldap(&actor).await? {
        None => LdapTestDto {
            configured: false,
            bind_ok: None,
            users_found: None,
            tls: None,
            elapsed_ms: None,
        },
        Some(r) => LdapTestDto {
            configured: true,
            bind_ok: Some(r.bind_ok),
            users_found: Some(r.users_found),
            tls: Some(r.tls),
            elapsed_ms: Some(r.elapsed_ms),
        },
    };
    Ok(Json(dto))
}
