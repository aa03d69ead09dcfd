//! The management REST API under `/api/v1`, with its OpenAPI document
//! (generated from the handlers, served at `/api/v1/openapi.json`).
//!
//! Callers authenticate with Basic credentials: a user's password or
//! personal access token, or a robot's secret. Registry bearer tokens are
//! for `/v2` and refused here. Only `openapi.json`, `system/info` and the
//! project listing answer anonymous requests. Every handler asks the core's
//! management use cases (`berth_core::access::manage`), which check the
//! caller with `decide()`; errors go through `crate::error` like `/v2`'s.

mod audit;
mod extract;
mod gc;
mod groups;
mod policies;
mod projects;
mod retention;
mod robots;
mod schema;
pub(crate) mod settings;
mod system;
mod tokens;
mod users;

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use berth_core::access::manage::basic_challenge;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};

use crate::App;
use crate::dist::RouteLabel;
use crate::error::ApiError;

pub(crate) fn routes(app: &App) -> Router<App> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/system/info", get(system::info))
        .route("/system/keys/rotate", post(system::rotate_keys))
        .route("/system/settings", get(settings::get))
        .route("/system/ldap/test", post(settings::test_ldap))
        .route("/me", get(users::me))
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{name}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route("/users/{name}/password", put(users::password))
        .route("/users/me/tokens", get(tokens::list).post(tokens::create))
        .route(
            "/users/me/tokens/{id}",
            axum::routing::delete(tokens::delete),
        )
        .route("/groups", get(groups::list).post(groups::create))
        .route("/groups/{id}", get(groups::get).delete(groups::delete))
        .route(
            "/groups/{id}/members/{user}",
            post(groups::add_member).delete(groups::remove_member),
        )
        .route("/projects", get(projects::list).post(projects::create))
        .route(
            "/projects/{name}",
            get(projects::get)
                .patch(projects::update)
                .delete(projects::delete),
        )
        .route(
            "/projects/{name}/members",
            get(projects::members).post(projects::add_member),
        )
        .route(
            "/projects/{name}/members/{kind}/{member}",
            put(projects::update_member).delete(projects::remove_member),
        )
        .route(
            "/projects/{name}/robots",
            get(robots::list_in_project).post(robots::create_in_project),
        )
        .route("/robots", get(robots::list).post(robots::create))
        .route(
            "/robots/{id}",
            get(robots::get)
                .patch(robots::update)
                .delete(robots::delete),
        )
        .route("/robots/{id}/secret", post(robots::rotate))
        .route("/audit", get(audit::list))
        .merge(policies::routes())
        .merge(retention::routes())
        .merge(gc::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(app.clone(), finish))
}

/// Labels responses for metrics and tells a client answered 401 how to
/// authenticate.
async fn finish(State(app): State<App>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(RouteLabel("api_v1"));
    if resp.status() == StatusCode::UNAUTHORIZED
        && !resp.headers().contains_key(header::WWW_AUTHENTICATE)
        && let Ok(v) = HeaderValue::from_str(&basic_challenge(app.access.service()))
    {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

async fn not_found(req: Request) -> Response {
    ApiError::from(berth_core::Error::NotFound(format!(
        "{} is not a management API endpoint; see /api/v1/openapi.json",
        req.uri().path()
    )))
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    let mut resp = ApiError::from(berth_core::Error::Unsupported(format!(
        "{} does not take {}; see /api/v1/openapi.json",
        req.uri().path(),
        req.method()
    )))
    .into_response();
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

/// The OpenAPI document (public).
#[utoipa::path(get, operation_id = "openapi_document", path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "This document", content_type = "application/json")),
    security(()))]
async fn openapi() -> Response {
    static DOC: LazyLock<String> = LazyLock::new(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], DOC.as_str()).into_response()
}

/// `limit` and `after` of the list endpoints.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageParams {
    /// Items per page: 1 to 1000, default 100.
    limit: Option<u32>,
    /// The `next` of the previous page.
    after: Option<String>,
}

/// The errors every management endpoint may answer, with the JSON body
/// `{"errors":[{"code","message","detail"}]}`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Errors {
    /// `INVALID`: a field is wrong; the message names it.
    #[response(status = 400)]
    Invalid(schema::ErrorBody),
    /// `UNAUTHORIZED`: no or bad credentials (with `WWW-Authenticate: Basic`).
    #[response(status = 401)]
    Unauthorized(schema::ErrorBody),
    /// `DENIED`: authenticated, and not allowed.
    #[response(status = 403)]
    Denied(schema::ErrorBody),
    /// `NOT_FOUND`: the user, project, robot, … does not exist.
    #[response(status = 404)]
    NotFound(schema::ErrorBody),
    /// `CONFLICT`: the name is taken, or the change would break a rule
    /// (the last system admin, a project that still holds repositories).
    #[response(status = 409)]
    Conflict(schema::ErrorBody),
    /// `TOOMANYREQUESTS`: too many failed logins (with `Retry-After`).
    #[response(status = 429)]
    TooManyRequests(schema::ErrorBody),
}

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth management API",
        description = "Users, groups, projects and members, robot accounts, personal access \
                       tokens, the audit log and signing keys. Authenticate with Basic \
                       credentials: a password, a personal access token, or a robot secret."
    ),
    paths(
        openapi,
        system::info,
        system::rotate_keys,
        settings::get,
        settings::test_ldap,
        users::me,
        users::list,
        users::create,
        users::get,
        users::update,
        users::delete,
        users::password,
        tokens::list,
        tokens::create,
        tokens::delete,
        groups::list,
        groups::create,
        groups::get,
        groups::delete,
        groups::add_member,
        groups::remove_member,
        projects::list,
        projects::create,
        projects::get,
        projects::update,
        projects::delete,
        projects::members,
        projects::add_member,
        projects::update_member,
        projects::remove_member,
        robots::list,
        robots::create,
        robots::list_in_project,
        robots::create_in_project,
        robots::get,
        robots::update,
        robots::delete,
        robots::rotate,
        audit::list,
        policies::list_rules,
        policies::create_rule,
        policies::get_rule,
        policies::update_rule,
        policies::delete_rule,
        policies::get_quota,
        policies::set_quota,
        retention::get_policy,
        retention::put_policy,
        retention::delete_policy,
        retention::run,
        retention::executions,
        retention::execution,
        retention::execution_items,
        retention::artifacts,
        gc::run,
        gc::runs,
        gc::trash,
        gc::restore,
    ),
    components(schemas(schema::ErrorBody, schema::Grant, schema::Role)),
    modifiers(&BasicAuth),
    security(("basic" = [])),
    tags(
        (name = "users", description = "Accounts, the caller, passwords"),
        (name = "tokens", description = "Personal access tokens"),
        (name = "groups", description = "Local, LDAP and OIDC groups"),
        (name = "projects", description = "Projects"),
        (name = "members", description = "Project members and their roles"),
        (name = "robots", description = "Robot accounts"),
        (name = "audit", description = "The audit log"),
        (name = "policies", description = "Immutable tag rules and quotas"),
        (name = "retention", description = "Tag retention policies, runs and their history"),
        (name = "artifacts", description = "Artifacts with push and pull times and pull counts"),
        (name = "trash", description = "Deleted manifests and tags, and restoring them"),
        (name = "system", description = "Registry facts, signing keys and garbage collection"),
    )
)]
pub(crate) struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route() {
        let doc: serde_json::Value =
            serde_json::from_str(&ApiDoc::openapi().to_json().unwrap()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/api/v1/me", &["get"][..]),
            ("/api/v1/users", &["get", "post"]),
            ("/api/v1/users/{name}", &["get", "patch", "delete"]),
            ("/api/v1/users/{name}/password", &["put"]),
            ("/api/v1/users/me/tokens", &["get", "post"]),
            ("/api/v1/users/me/tokens/{id}", &["delete"]),
            ("/api/v1/groups", &["get", "post"]),
            ("/api/v1/groups/{id}", &["get", "delete"]),
            ("/api/v1/groups/{id}/members/{user}", &["post", "delete"]),
            ("/api/v1/projects", &["get", "post"]),
            ("/api/v1/projects/{name}", &["get", "patch", "delete"]),
            ("/api/v1/projects/{name}/members", &["get", "post"]),
            (
                "/api/v1/projects/{name}/members/{kind}/{member}",
                &["put", "delete"],
            ),
            ("/api/v1/projects/{name}/robots", &["get", "post"]),
            ("/api/v1/robots", &["get", "post"]),
            ("/api/v1/robots/{id}", &["get", "patch", "delete"]),
            ("/api/v1/robots/{id}/secret", &["post"]),
            ("/api/v1/audit", &["get"]),
            ("/api/v1/system/info", &["get"]),
            ("/api/v1/system/keys/rotate", &["post"]),
            ("/api/v1/system/settings", &["get"]),
            ("/api/v1/system/ldap/test", &["post"]),
            ("/api/v1/openapi.json", &["get"]),
            ("/api/v1/projects/{name}/immutable-rules", &["get", "post"]),
            (
                "/api/v1/projects/{name}/immutable-rules/{id}",
                &["get", "patch", "delete"],
            ),
            ("/api/v1/projects/{name}/quota", &["get", "put"]),
            ("/api/v1/system/gc", &["post"]),
            ("/api/v1/system/gc/runs", &["get"]),
            ("/api/v1/projects/{name}/trash", &["get"]),
            ("/api/v1/projects/{name}/trash/{id}/restore", &["post"]),
        ] {
            let entry = paths.get(path).unwrap_or_else(|| panic!("{path} missing"));
            for m in methods {
                assert!(entry.get(*m).is_some(), "{m} {path} missing");
            }
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for s in [
            "UserDto",
            "CreateRobot",
            "RobotWithSecret",
            "Grant",
            "ErrorBody",
            "AuditList",
        ] {
            assert!(schemas.contains_key(s), "schema {s} missing");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["basic"]["scheme"],
            "basic"
        );
        // Operation ids are unique (code generators name methods by them).
        let mut ids: Vec<&str> = paths
            .values()
            .flat_map(|methods| methods.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "duplicate operation ids");
        assert_eq!(count, 58, "every handler is documented");
    }
}
