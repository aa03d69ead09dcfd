//! `/projects` and their members.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use berth_core::access::manage::{self, MemberInfo, MemberKind, ProjectInfo, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, Body, MaybeAuth, Params, time};
use crate::App;
use crate::error::ApiError;

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ProjectDto {
    pub(crate) id: i64,
    pub(crate) name: String,
    /// Anybody, anonymous included, may pull from a public project.
    pub(crate) public: bool,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    /// The caller's roles here (when one project is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<super::schema::Role>>)]
    pub(crate) roles: Option<Vec<Role>>,
}

impl From<ProjectInfo> for ProjectDto {
    fn from(p: ProjectInfo) -> ProjectDto {
        ProjectDto {
            id: p.id,
            name: p.name,
            public: p.public,
            created_at: time(p.created_at),
            updated_at: time(p.updated_at),
            roles: p.roles,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ProjectList {
    pub(crate) items: Vec<ProjectDto>,
    pub(crate) next: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProject {
    /// Lowercase letters, digits, `.`, `_`, `-`.
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) public: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateProject {
    pub(crate) public: Option<bool>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct MemberDto {
    /// `user` or `group`.
    pub(crate) kind: String,
    pub(crate) id: i64,
    pub(crate) name: String,
    /// A group's source: `local`, `ldap` or `oidc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group_source: Option<String>,
    #[schema(value_type = super::schema::Role)]
    pub(crate) role: Role,
}

impl From<MemberInfo> for MemberDto {
    fn from(m: MemberInfo) -> MemberDto {
        MemberDto {
            kind: m.kind.as_str().to_string(),
            id: m.id,
            name: m.name,
            group_source: m.group_source,
            role: m.role,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct MemberList {
    pub(crate) items: Vec<MemberDto>,
    pub(crate) next: Option<String>,
}

/// Exactly one of `user` or `group`. An LDAP or OIDC group (named by its
/// DN or claim value, with `group_source`) that no login has brought in
/// yet is registered on the way.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMember {
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
    /// When the group name exists in several sources.
    pub(crate) group_source: Option<String>,
    #[schema(value_type = super::schema::Role)]
    pub(crate) role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateMember {
    #[schema(value_type = super::schema::Role)]
    pub(crate) role: Role,
}

/// Projects the caller may see: all for a system admin; public ones and
/// those the caller is a member of otherwise; public ones for anonymous.
#[utoipa::path(get, operation_id = "list_projects", path = "/api/v1/projects", tag = "projects", params(super::PageParams),
    responses((status = 200, body = ProjectList), Errors), security((), ("basic" = [])))]
pub(crate) async fn list(
    State(app): State<App>,
    MaybeAuth(actor): MaybeAuth,
    RawQuery(q): RawQuery,
) -> Result<Json<ProjectList>, ApiError> {
    let params = Params::parse(q.as_deref());
    let page = app.access.list_projects(&actor, params.page()?).await?;
    Ok(Json(ProjectList {
        items: page.items.into_iter().map(ProjectDto::from).collect(),
        next: page.next,
    }))
}

/// Creates a project (system admin, or a robot granted project:create at
/// system level); a user who creates one becomes its project admin.
#[utoipa::path(post, operation_id = "create_project", path = "/api/v1/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, body = ProjectDto), Errors), security(("basic" = [])))]
pub(crate) async fn create(
    State(app): State<App>,
    Auth(actor): Auth,
    Body(body): Body<CreateProject>,
) -> Result<(StatusCode, Json<ProjectDto>), ApiError> {
    let p = app
        .access
        .create_project(&actor, &body.name, body.public)
        .await?;
    Ok((StatusCode::CREATED, Json(p.into())))
}

/// One project (project:read: members, or anybody for a public project).
#[utoipa::path(get, operation_id = "get_project", path = "/api/v1/projects/{name}", tag = "projects",
    params(("name" = String, Path, description = "Project name")),
    responses((status = 200, body = ProjectDto), Errors), security(("basic" = [])))]
pub(crate) async fn get(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<Json<ProjectDto>, ApiError> {
    Ok(Json(app.access.get_project(&actor, &name).await?.into()))
}

/// Makes a project public or private (project admin).
#[utoipa::path(patch, operation_id = "update_project", path = "/api/v1/projects/{name}", tag = "projects",
    request_body = UpdateProject,
    params(("name" = String, Path, description = "Project name")),
    responses((status = 200, body = ProjectDto), Errors), security(("basic" = [])))]
pub(crate) async fn update(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    Body(body): Body<UpdateProject>,
) -> Result<Json<ProjectDto>, ApiError> {
    Ok(Json(
        app.access
            .update_project(&actor, &name, body.public)
            .await?
            .into(),
    ))
}

/// Deletes an empty project with its members and robots (system admin;
/// never `library`).
#[utoipa::path(delete, operation_id = "delete_project", path = "/api/v1/projects/{name}", tag = "projects",
    params(("name" = String, Path, description = "Project name")),
    responses((status = 204, description = "Deleted"), Errors), security(("basic" = [])))]
pub(crate) async fn delete(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.access.delete_project(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members of a project (member:list: guest and up).
#[utoipa::path(get, operation_id = "list_members", path = "/api/v1/projects/{name}/members", tag = "members",
    params(("name" = String, Path, description = "Project name"), super::PageParams),
    responses((status = 200, body = MemberList), Errors), security(("basic" = [])))]
pub(crate) async fn members(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<MemberList>, ApiError> {
    let params = Params::parse(q.as_deref());
    let page = app
        .access
        .list_members(&actor, &name, params.page()?)
        .await?;
    Ok(Json(MemberList {
        items: page.items.into_iter().map(MemberDto::from).collect(),
        next: page.next,
    }))
}

/// Adds a user or group with a role (member:create: project admin).
#[utoipa::path(post, operation_id = "add_member", path = "/api/v1/projects/{name}/members", tag = "members",
    request_body = AddMember,
    params(("name" = String, Path, description = "Project name")),
    responses((status = 201, body = MemberDto), Errors), security(("basic" = [])))]
pub(crate) async fn add_member(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    Body(body): Body<AddMember>,
) -> Result<(StatusCode, Json<MemberDto>), ApiError> {
    let m = app
        .access
        .add_member(
            &actor,
            &name,
            manage::NewMember {
                user: body.user,
                group: body.group,
                group_source: body.group_source,
                role: body.role,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(m.into())))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GroupSourceParam {
    /// For a group member whose name exists in several sources.
    #[allow(dead_code)]
    pub(crate) group_source: Option<String>,
}

/// Changes a member's role (member:update: project admin).
#[utoipa::path(put, operation_id = "update_member", path = "/api/v1/projects/{name}/members/{kind}/{member}", tag = "members",
    request_body = UpdateMember,
    params(
        ("name" = String, Path, description = "Project name"),
        ("kind" = String, Path, description = "`user` or `group`"),
        ("member" = String, Path, description = "User or group name"),
        GroupSourceParam,
    ),
    responses((status = 200, body = MemberDto), Errors), security(("basic" = [])))]
pub(crate) async fn update_member(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((name, kind, member)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    Body(body): Body<UpdateMember>,
) -> Result<Json<MemberDto>, ApiError> {
    let params = Params::parse(q.as_deref());
    let kind = MemberKind::parse(&kind)?;
    let m = app
        .access
        .update_member(
            &actor,
            &name,
            kind,
            &member,
            params.get("group_source"),
            body.role,
        )
        .await?;
    Ok(Json(m.into()))
}

/// Removes a member (member:delete: project admin).
#[utoipa::path(delete, operation_id = "remove_member", path = "/api/v1/projects/{name}/members/{kind}/{member}", tag = "members",
    params(
        ("name" = String, Path, description = "Project name"),
        ("kind" = String, Path, description = "`user` or `group`"),
        ("member" = String, Path, description = "User or group name"),
        GroupSourceParam,
    ),
    responses((status = 204, description = "Removed"), Errors), security(("basic" = [])))]
pub(crate) async fn remove_member(
    State(app): State<App>,
    Auth(actor): Auth,
    Path((name, kind, member)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let params = Params::parse(q.as_deref());
    let kind = MemberKind::parse(&kind)?;
    app.access
        .remove_member(&actor, &name, kind, &member, params.get("group_source"))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
