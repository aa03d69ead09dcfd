//! `/groups` (system admin): local groups and their members, and LDAP or
//! OIDC groups registered ahead of their first login.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use berth_core::access::manage::{self, GroupInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, Body, Params, id};
use crate::App;
use crate::error::ApiError;

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct GroupDto {
    pub(crate) id: i64,
    pub(crate) name: String,
    /// `local`, `ldap` or `oidc`.
    pub(crate) source: String,
    /// The LDAP DN or OIDC group claim value.
    pub(crate) external_id: Option<String>,
    /// Member user names (when one group is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) members: Option<Vec<String>>,
}

impl From<GroupInfo> for GroupDto {
    fn from(g: GroupInfo) -> GroupDto {
        GroupDto {
            id: g.id,
            name: g.name,
            source: g.source,
            external_id: g.external_id,
            members: g.members,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct GroupList {
    pub(crate) items: Vec<GroupDto>,
    pub(crate) next: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGroup {
    /// For LDAP, the group's DN (as logins record it).
    pub(crate) name: String,
    /// `local` (default), `ldap` or `oidc`.
    #[serde(default = "local")]
    pub(crate) source: String,
    /// Defaults to the name for LDAP and OIDC groups; none for local ones.
    pub(crate) external_id: Option<String>,
}

fn local() -> String {
    "local".into()
}

/// Every group (system admin).
#[utoipa::path(get, operation_id = "list_groups", path = "/api/v1/groups", tag = "groups", params(super::PageParams),
    responses((status = 200, body = GroupList), Errors), security(("basic" = [])))]
pub(crate) async fn list(
    State(app): State<App>,
    Auth(actor): Auth,
    RawQuery(q): RawQuery,
) -> Result<Json<GroupList>, ApiError> {
    let params = Params::parse(q.as_deref());
    let page = app.access.list_groups(&actor, params.page()?).await?;
    Ok(Json(GroupList {
        items: page.items.into_iter().map(GroupDto::from).collect(),
        next: page.next,
    }))
}

/// Creates a group (system admin).
#[utoipa::path(post, operation_id = "create_group", path = "/api/v1/groups", tag = "groups", request_body = CreateGroup,
    responses((status = 201, body = GroupDto), Errors), security(("basic" = [])))]
pub(crate) async fn create(
    State(app): State<App>,
    Auth(actor): Auth,
    Body(body): Body<CreateGroup>,
) -> Result<(StatusCode, Json<GroupDto>), ApiError> {
    let group = app
        .access
        .create_group(
            &actor,
            manage::NewGroup {
                name: body.name,
                source: body.source,
                external_id: body.external_id,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(group.into())))
}

/// One group with its members (system admin).
#[utoipa::path(get, operation_id = "get_group", path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = i64, Path, description = "Group id")),
    responses((status = 200, body = GroupDto), Errors), security(("basic" = [])))]
pub(crate) async fn get(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(group): Path<String>,
) -> Result<Json<GroupDto>, ApiError> {
    let group = id("id", &group)?;
    Ok(Json(app.access.get_group(&actor, group).await?.into()))
}

/// Deletes a group with its memberships (system admin).
#[utoipa::path(delete, operation_id = "delete_group", path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = i64, Path, description = "Group id")),
    responses((status = 204, description = "Deleted"), Errors), security(("basic" = [])))]
pub(crate) async fn delete(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(group): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.access.delete_group(&actor, id("id", &group)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a user to a local group (system admin).
#[utoipa::path(post, operation_id = "add_group_member", path = "/api/v1/groups/{id}/members/{user}", tag = "groups",
    params(("id" = i64, Path, description = "Group id"), ("user" = String, Path, description = "User name")),
    responses((status = 204, description = "Added"), Errors), security(("basic" = [])))]
pub(crate) async fn add_member(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((group, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    app.access
        .set_group_member(&actor, id("id", &group)?, &user, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a user from a local group (system admin).
#[utoipa::path(delete, operation_id = "remove_group_member", path = "/api/v1/groups/{id}/members/{user}", tag = "groups",
    params(("id" = i64, Path, description = "Group id"), ("user" = String, Path, description = "User name")),
    responses((status = 204, description = "Removed"), Errors), security(("basic" = [])))]
pub(crate) async fn remove_member(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((group, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    app.access
        .set_group_member(&actor, id("id", &group)?, &user, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
