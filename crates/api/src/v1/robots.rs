//! `/robots` (system robots and any robot by id) and
//! `/projects/{name}/robots`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use berth_core::access::manage::{self, CreatedRobot, Grant, RobotInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Auth, Body, Params, id, opt_time, parse_time, present, time};
use crate::App;
use crate::error::ApiError;

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct RobotDto {
    pub(crate) id: i64,
    /// The login name: `robot$name` or `robot$project+name`.
    pub(crate) name: String,
    pub(crate) description: String,
    /// `system` or `project`.
    pub(crate) level: String,
    /// The project of a project robot.
    pub(crate) project: Option<String>,
    #[schema(value_type = Vec<super::schema::Grant>)]
    pub(crate) permissions: Vec<Grant>,
    /// RFC 3339; absent: never expires.
    pub(crate) expires_at: Option<String>,
    pub(crate) disabled: bool,
    pub(crate) created_by: String,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl From<RobotInfo> for RobotDto {
    fn from(r: RobotInfo) -> RobotDto {
        RobotDto {
            id: r.id,
            name: r.name,
            description: r.description,
            level: if r.project.is_some() {
                "project"
            } else {
                "system"
            }
            .into(),
            project: r.project,
            permissions: r.permissions,
            expires_at: opt_time(r.expires_at),
            disabled: r.disabled,
            created_by: r.created_by,
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

/// A robot with its secret: shown once, at creation and rotation.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct RobotWithSecret {
    #[serde(flatten)]
    pub(crate) robot: RobotDto,
    /// The robot's password for `docker login -u NAME`; never shown again.
    pub(crate) secret: String,
}

impl From<CreatedRobot> for RobotWithSecret {
    fn from(c: CreatedRobot) -> RobotWithSecret {
        RobotWithSecret {
            secret: c.secret.expose().to_string(),
            robot: c.robot.into(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct RobotList {
    pub(crate) items: Vec<RobotDto>,
    pub(crate) next: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRobot {
    /// Lowercase letters and digits separated by `.`, `_` or `-`.
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    /// A project robot holds permissions in its own project only. A robot
    /// creating a robot may only give permissions it holds itself.
    #[schema(value_type = Vec<super::schema::Grant>)]
    pub(crate) permissions: Vec<Grant>,
    /// Days until it expires; -1 never; default 30.
    pub(crate) expires_in_days: Option<i64>,
}

/// Fields to change; absent fields stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateRobot {
    pub(crate) description: Option<String>,
    pub(crate) disabled: Option<bool>,
    /// RFC 3339 or milliseconds; `null`: never expires.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub(crate) expires_at: Option<Option<serde_json::Value>>,
    #[schema(value_type = Option<Vec<super::schema::Grant>>)]
    pub(crate) permissions: Option<Vec<Grant>>,
}

fn expires_at(value: Option<Option<serde_json::Value>>) -> Result<Option<Option<i64>>, ApiError> {
    Ok(match value {
        None => None,
        Some(None) => Some(None),
        Some(Some(serde_json::Value::Number(n))) => Some(Some(n.as_i64().ok_or_else(|| {
            ApiError::from(berth_core::Error::Invalid(format!(
                "expires_at: {n} is not whole milliseconds"
            )))
        })?)),
        Some(Some(serde_json::Value::String(s))) => Some(Some(parse_time("expires_at", &s)?)),
        Some(Some(other)) => {
            return Err(berth_core::Error::Invalid(format!(
                "expires_at: {other} is neither a time nor null"
            ))
            .into());
        }
    })
}

async fn list_page(
    app: &App,
    actor: &manage::Actor,
    project: Option<&str>,
    q: Option<String>,
) -> Result<Json<RobotList>, ApiError> {
    let params = Params::parse(q.as_deref());
    let page = app
        .access
        .list_robots(actor, project, params.page()?)
        .await?;
    Ok(Json(RobotList {
        items: page.items.into_iter().map(RobotDto::from).collect(),
        next: page.next,
    }))
}

async fn create_in(
    app: &App,
    actor: &manage::Actor,
    project: Option<&str>,
    body: CreateRobot,
) -> Result<(StatusCode, Json<RobotWithSecret>), ApiError> {
    let created = app
        .access
        .create_robot(
            actor,
            project,
            manage::NewRobot {
                name: body.name,
                description: body.description,
                permissions: body.permissions,
                expires_in_days: body.expires_in_days,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// System robots (robot:list at system level: system admin).
#[utoipa::path(get, operation_id = "list_system_robots", path = "/api/v1/robots", tag = "robots", params(super::PageParams),
    responses((status = 200, body = RobotList), Errors), security(("basic" = [])))]
pub(crate) async fn list(
    State(app): State<App>,
    Auth(actor): Auth,
    RawQuery(q): RawQuery,
) -> Result<Json<RobotList>, ApiError> {
    list_page(&app, &actor, None, q).await
}

/// Creates a system robot (robot:create at system level: system admin, or
/// a robot granted it, within its own permissions).
#[utoipa::path(post, operation_id = "create_system_robot", path = "/api/v1/robots", tag = "robots", request_body = CreateRobot,
    responses((status = 201, body = RobotWithSecret), Errors), security(("basic" = [])))]
pub(crate) async fn create(
    State(app): State<App>,
    Auth(actor): Auth,
    Body(body): Body<CreateRobot>,
) -> Result<(StatusCode, Json<RobotWithSecret>), ApiError> {
    create_in(&app, &actor, None, body).await
}

/// A project's robots (robot:list in the project).
#[utoipa::path(get, operation_id = "list_project_robots", path = "/api/v1/projects/{name}/robots", tag = "robots",
    params(("name" = String, Path, description = "Project name"), super::PageParams),
    responses((status = 200, body = RobotList), Errors), security(("basic" = [])))]
pub(crate) async fn list_in_project(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<RobotList>, ApiError> {
    list_page(&app, &actor, Some(&name), q).await
}

/// Creates a project robot (robot:create in the project: project admin).
#[utoipa::path(post, operation_id = "create_project_robot", path = "/api/v1/projects/{name}/robots", tag = "robots",
    request_body = CreateRobot,
    params(("name" = String, Path, description = "Project name")),
    responses((status = 201, body = RobotWithSecret), Errors), security(("basic" = [])))]
pub(crate) async fn create_in_project(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    Body(body): Body<CreateRobot>,
) -> Result<(StatusCode, Json<RobotWithSecret>), ApiError> {
    create_in(&app, &actor, Some(&name), body).await
}

/// One robot (robot:read where it lives, or the robot itself).
#[utoipa::path(get, operation_id = "get_robot", path = "/api/v1/robots/{id}", tag = "robots",
    params(("id" = i64, Path, description = "Robot id")),
    responses((status = 200, body = RobotDto), Errors), security(("basic" = [])))]
pub(crate) async fn get(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(robot): Path<String>,
) -> Result<Json<RobotDto>, ApiError> {
    Ok(Json(
        app.access
            .get_robot(&actor, id("id", &robot)?)
            .await?
            .into(),
    ))
}

/// Changes description, disabled, expiry or permissions (robot:update
/// where it lives).
#[utoipa::path(patch, operation_id = "update_robot", path = "/api/v1/robots/{id}", tag = "robots", request_body = UpdateRobot,
    params(("id" = i64, Path, description = "Robot id")),
    responses((status = 200, body = RobotDto), Errors), security(("basic" = [])))]
pub(crate) async fn update(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(robot): Path<String>,
    Body(body): Body<UpdateRobot>,
) -> Result<Json<RobotDto>, ApiError> {
    let patch = manage::RobotPatch {
        description: body.description,
        disabled: body.disabled,
        expires_at: expires_at(body.expires_at)?,
        permissions: body.permissions,
    };
    Ok(Json(
        app.access
            .update_robot(&actor, id("id", &robot)?, patch)
            .await?
            .into(),
    ))
}

/// Deletes a robot (robot:delete where it lives).
#[utoipa::path(delete, operation_id = "delete_robot", path = "/api/v1/robots/{id}", tag = "robots",
    params(("id" = i64, Path, description = "Robot id")),
    responses((status = 204, description = "Deleted"), Errors), security(("basic" = [])))]
pub(crate) async fn delete(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(robot): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.access.delete_robot(&actor, id("id", &robot)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret, shown once; the old one stops working (robot:update
/// where it lives, or the robot itself).
#[utoipa::path(post, operation_id = "rotate_robot_secret", path = "/api/v1/robots/{id}/secret", tag = "robots",
    params(("id" = i64, Path, description = "Robot id")),
    responses((status = 200, body = RobotWithSecret), Errors), security(("basic" = [])))]
pub(crate) async fn rotate(
    State(app): State<App>,
    Auth(actor): Auth,
    Path(robot): Path<String>,
) -> Result<Json<RobotWithSecret>, ApiError> {
    Ok(Json(
        app.access
            .rotate_robot_secret(&actor, id("id", &robot)?)
            .await?
            .into(),
    ))
}
