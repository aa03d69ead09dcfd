//! `/me`, `/users`: accounts (system admin), and a user's own email and
//! password.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use berth_core::access::manage::{self, Grant, Me, UserInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, Body, Params, opt_time, present, time};
use crate::App;
use crate::error::ApiError;

/// The caller.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct MeDto {
    pub(crate) name: String,
    /// `user` or `robot`.
    pub(crate) kind: String,
    pub(crate) system_admin: bool,
    /// Group names (users).
    pub(crate) groups: Vec<String>,
    pub(crate) email: Option<String>,
    /// A robot's permissions, or a scoped personal access token's scopes.
    #[schema(value_type = Option<Vec<super::schema::Grant>>)]
    pub(crate) permissions: Option<Vec<Grant>>,
    /// A robot's expiry (RFC 3339).
    pub(crate) expires_at: Option<String>,
    /// `password`, `robot_secret`, `personal_token`, ….
    pub(crate) auth_method: Option<String>,
}

impl From<Me> for MeDto {
    fn from(m: Me) -> MeDto {
        MeDto {
            name: m.name,
            kind: m.kind.to_string(),
            system_admin: m.system_admin,
            groups: m.groups,
            email: m.email,
            permissions: m.permissions,
            expires_at: opt_time(m.expires_at),
            auth_method: m.auth_method,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct UserDto {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) email: Option<String>,
    /// `local`, `ldap` or `oidc`.
    pub(crate) source: String,
    pub(crate) system_admin: bool,
    pub(crate) disabled: bool,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl From<UserInfo> for UserDto {
    fn from(u: UserInfo) -> UserDto {
        UserDto {
            id: u.id,
            name: u.name,
            email: u.email,
            source: u.source,
            system_admin: u.system_admin,
            disabled: u.disabled,
            created_at: time(u.created_at),
            updated_at: time(u.updated_at),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct UserList {
    pub(crate) items: Vec<UserDto>,
    /// Pass as `after` for the next page; absent on the last page.
    pub(crate) next: Option<String>,
}

/// A local account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    pub(crate) name: String,
    pub(crate) email: Option<String>,
    /// At least 8 characters.
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) system_admin: bool,
}

/// Fields to change; absent fields stay. `email: null` removes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) email: Option<Option<String>>,
    /// System admin only; the last enabled system admin cannot be demoted.
    pub(crate) system_admin: Option<bool>,
    /// System admin only; disabled accounts cannot log in.
    pub(crate) disabled: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    /// Required unless a system admin sets another user's password.
    pub(crate) old_password: Option<String>,
    /// At least 8 characters.
    pub(crate) new_password: String,
}

/// The caller: a user or a robot.
#[utoipa::path(get, operation_id = "get_me", path = "/api/v1/me", tag = "users",
    responses((status = 200, body = MeDto), Errors), security(("basic" = [])))]
pub(crate) async fn me(State(app): State<App>, Auth(actor): Auth) -> Result<Json<MeDto>, ApiError> {
    Ok(Json(app.access.me(&actor).await?.into()))
}

/// Every user account (system admin).
#[utoipa::path(get, operation_id = "list_users", path = "/api/v1/users", tag = "users",
    params(super::PageParams),
    responses((status = 200, body = UserList), Errors), security(("basic" = [])))]
pub(crate) async fn list(
    State(app): State<App>,
    Auth(actor): Auth,
    RawQuery(q): RawQuery,
) -> Result<Json<UserList>, ApiError> {
    let params = Params::parse(q.as_deref());
    let page = app.access.list_users(&actor, params.page()?).await?;
    Ok(Json(UserList {
        items: page.items.into_iter().map(UserDto::from).collect(),
        next: page.next,
    }))
}

/// Creates a local account (system admin).
#[utoipa::path(post, operation_id = "create_user", path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserDto), Errors), security(("basic" = [])))]
pub(crate) async fn create(
    State(app): State<App>,
    Auth(actor): Auth,
    Body(body): Body<CreateUser>,
) -> Result<(StatusCode, Json<UserDto>), ApiError> {
    let user = app
        .access
        .create_user(
            &actor,
            manage::NewUser {
                name: body.name,
                email: body.email,
                password: body.password,
                system_admin: body.system_admin,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// One user (system admin, or the user itself).
#[utoipa::path(get, operation_id = "get_user", path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, body = UserDto), Errors), security(("basic" = [])))]
pub(crate) async fn get(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<Json<UserDto>, ApiError> {
    Ok(Json(app.access.get_user(&actor, &name).await?.into()))
}

/// Changes email (the user itself or a system admin), system_admin and
/// disabled (system admin).
#[utoipa::path(patch, operation_id = "update_user", path = "/api/v1/users/{name}", tag = "users", request_body = UpdateUser,
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, body = UserDto), Errors), security(("basic" = [])))]
pub(crate) async fn update(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    Body(body): Body<UpdateUser>,
) -> Result<Json<UserDto>, ApiError> {
    let patch = manage::UserPatch {
        email: body.email,
        system_admin: body.system_admin,
        disabled: body.disabled,
    };
    Ok(Json(
        app.access.update_user(&actor, &name, patch).await?.into(),
    ))
}

/// Deletes a user with their memberships and tokens (system admin; never
/// the last enabled system admin).
#[utoipa::path(delete, operation_id = "delete_user", path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Deleted"), Errors), security(("basic" = [])))]
pub(crate) async fn delete(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.access.delete_user(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a local user's password: the user with the old password, or a
/// system admin for another user without it.
#[utoipa::path(put, operation_id = "set_user_password", path = "/api/v1/users/{name}/password", tag = "users",
    request_body = ChangePassword,
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Changed"), Errors), security(("basic" = [])))]
pub(crate) async fn password(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    Body(body): Body<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    app.access
        .change_password(
            &actor,
            &name,
            body.old_password.as_deref(),
            &body.new_password,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
