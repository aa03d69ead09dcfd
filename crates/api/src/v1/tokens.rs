//! `/users/me/tokens`: the caller's personal access tokens.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use berth_core::access::manage::{self, CreatedToken, Grant, TokenInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, Body, Params, id, opt_time, time};
use crate::App;
use crate::error::ApiError;

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenDto {
    pub(crate) id: i64,
    pub(crate) name: String,
    /// Grants narrowing what the token may do; absent: all its user may.
    #[schema(value_type = Option<Vec<super::schema::Grant>>)]
    pub(crate) scopes: Option<Vec<Grant>>,
    pub(crate) expires_at: Option<String>,
    pub(crate) last_used_at: Option<String>,
    pub(crate) created_at: String,
}

impl From<TokenInfo> for TokenDto {
    fn from(t: TokenInfo) -> TokenDto {
        TokenDto {
            id: t.id,
            name: t.name,
            scopes: t.scopes,
            expires_at: opt_time(t.expires_at),
            last_used_at: opt_time(t.last_used_at),
            created_at: time(t.created_at),
        }
    }
}

/// A token with its secret, shown once.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenWithSecret {
    #[serde(flatten)]
    pub(crate) token: TokenDto,
    /// Use as the password with your user name; never shown again.
    pub(crate) secret: String,
}

impl From<CreatedToken> for TokenWithSecret {
    fn from(c: CreatedToken) -> TokenWithSecret {
        TokenWithSecret {
            secret: c.secret.expose().to_string(),
            token: c.token.into(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenList {
    pub(crate) items: Vec<TokenDto>,
    pub(crate) next: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    pub(crate) name: String,
    /// 1 to 365.
    pub(crate) expires_in_days: i64,
    /// Projects you are a member of (any namespace for system admins).
    #[schema(value_type = Option<Vec<super::schema::Grant>>)]
    pub(crate) scopes: Option<Vec<Grant>>,
}

/// The caller's tokens (users only).
#[utoipa::path(get, operation_id = "list_tokens", path = "/api/v1/users/me/tokens", tag = "tokens", params(super::PageParams),
    responses((status = 200, body = TokenList), Errors), security(("basic" = [])))]
pub(crate) async fn list(
    State(app): State<App>,
    Auth(actor): Auth,
    RawQuery(q): RawQuery,
) -> Result<Json<TokenList>, ApiError> {
    let params = Params::parse(q.as_deref());
    let page = app.access.list_tokens(&actor, params.page()?).await?;
    Ok(Json(TokenList {
        items: page.items.into_iter().map(TokenDto::from).collect(),
        next: page.next,
    }))
}

/// Creates a token for the caller (a user logged in with a password).
#[utoipa::path(post, operation_id = "create_token", path = "/api/v1/users/me/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = TokenWithSecret), Errors), security(("basic" = [])))]
pub(crate) async fn create(
    State(app): State<App>,
    Auth(actor): Auth,
    Body(body): Body<CreateToken>,
) -> Result<(StatusCode, Json<TokenWithSecret>), ApiError> {
    let created = app
        .access
        .create_token(
            &actor,
            manage::NewToken {
                name: body.name,
                expires_in_days: body.expires_in_days,
                scopes: body.scopes,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Revokes one of the caller's tokens.
#[utoipa::path(delete, operation_id = "delete_token", path = "/api/v1/users/me/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), Errors), security(("basic" = [])))]
pub(crate) async fn delete(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.access.delete_token(&actor, id("id", &token)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
