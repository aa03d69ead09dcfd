//! `/system`: public facts about this registry, and signing key rotation.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, time};
use crate::App;
use crate::error::ApiError;

/// What a client may know without logging in.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct SystemInfo {
    #[schema(example = "0.1.0")]
    pub(crate) version: String,
    /// Login sources: `local`, and `ldap`/`oidc` when configured.
    pub(crate) auth: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct RotatedKeyDto {
    /// The key that signs from now on (it is in the JWKS).
    pub(crate) kid: String,
    /// How many older keys stop verifying at `retire_at`.
    pub(crate) retiring: u64,
    /// RFC 3339: two token lifetimes from now.
    pub(crate) retire_at: String,
}

/// Version and login sources (public).
#[utoipa::path(get, operation_id = "system_info", path = "/api/v1/system/info", tag = "system",
    responses((status = 200, body = SystemInfo)), security(()))]
pub(crate) async fn info(State(app): State<App>) -> Json<SystemInfo> {
    Json(SystemInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        auth: app
            .access
            .sources()
            .into_iter()
            .map(str::to_string)
            .collect(),
    })
}

/// A new token signing key (system admin). Tokens signed by older keys
/// keep verifying for two token lifetimes.
#[utoipa::path(post, operation_id = "rotate_signing_key", path = "/api/v1/system/keys/rotate", tag = "system",
    responses((status = 200, body = RotatedKeyDto), Errors), security(("basic" = [])))]
pub(crate) async fn rotate_keys(
    State(app): State<App>,
    Auth(actor): Auth,
) -> Result<Json<RotatedKeyDto>, ApiError> {
    let rotated = app.access.rotate_signing_key(&actor).await?;
    Ok(Json(RotatedKeyDto {
        kid: rotated.kid,
        retiring: rotated.retiring,
        retire_at: time(rotated.retire_at),
    }))
}
