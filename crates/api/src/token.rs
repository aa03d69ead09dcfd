//! The Docker token endpoint (`/service/token`) and the JWKS that verifies
//! its tokens.
//!
//! - `GET` with optional Basic credentials, `scope` parameters, and
//!   `offline_token=true` for a refresh token (the Docker token spec);
//! - `POST` with a form: `grant_type=password` or `refresh_token` (the
//!   OAuth2 flavour `docker login` prefers).
//!
//! Anonymous requests get a token with what anybody may do (pull from
//! public projects), possibly nothing.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::access::{Credentials, Scope, parse_scopes};
use berth_core::{Error as CoreError, Origin};
use serde_json::json;

use crate::App;
use crate::dist::origin;
use crate::error::ApiError;

/// Form bodies larger than this are refused: a token request is small.
const MAX_FORM: usize = 64 * 1024;

pub(crate) async fn get(State(app): State<App>, req: Request) -> Response {
    let origin = origin(&req);
    let pairs: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    match get_inner(&app, req.headers(), &pairs, origin).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn get_inner(
    app: &App,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    origin: Origin,
) -> Result<Response, ApiError> {
    let param = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    check_service(app, param("service"))?;
    let scopes = scopes(
        pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    )?;
    let offline = param("offline_token") == Some("true");
    let login = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(berth_core::access::parse_authorization)
    {
        None => None,
        Some(Some(Credentials::Basic { username, password })) => {
            Some(app.access.login(&username, &password, origin).await?)
        }
        Some(_) => {
            return Err(CoreError::Unauthenticated {
                message: "the token endpoint takes Basic credentials".into(),
                problem: None,
            }
            .into());
        }
    };
    let token = app
        .access
        .issue_token(login.as_ref(), &scopes, offline)
        .await?;
    Ok((StatusCode::OK, Json(token)).into_response())
}

pub(crate) async fn post(State(app): State<App>, req: Request) -> Response {
    let origin = origin(&req);
    let body = match axum::body::to_bytes(req.into_body(), MAX_FORM).await {
        Ok(b) => b,
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the form is larger than 64 KiB or could not be read",
            );
        }
    };
    match post_inner(&app, &body, origin).await {
        Ok(resp) => resp,
        Err(e) => {
            let (status, code) = match &e {
                CoreError::Unauthenticated { .. } => (StatusCode::UNAUTHORIZED, "invalid_grant"),
                CoreError::TooManyRequests { .. } => {
                    return ApiError::Core(e).into_response();
                }
                CoreError::Invalid(_) | CoreError::Unsupported(_) => {
                    (StatusCode::BAD_REQUEST, "invalid_request")
                }
                _ => return ApiError::Core(e).into_response(),
            };
            oauth_error(status, code, &e.to_string())
        }
    }
}

async fn post_inner(app: &App, body: &Bytes, origin: Origin) -> Result<Response, CoreError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(service) = field("service")
        && service != app.access.service()
    {
        return Err(CoreError::Invalid(format!(
            "service: {service:?} is not this registry's service {:?}",
            app.access.service()
        )));
    }
    let scopes =
        parse_scopes(field("scope")).map_err(|e| CoreError::Invalid(format!("scope: {e}")))?;
    let token = match field("grant_type") {
        Some("password") => {
            let username = field("username").unwrap_or_default();
            let password = field("password").unwrap_or_default();
            let login = app.access.login(username, password, origin).await?;
            let offline = field("access_type") == Some("offline");
            app.access
                .issue_token(Some(&login), &scopes, offline)
                .await?
        }
        Some("refresh_token") => {
            let refresh = field("refresh_token").unwrap_or_default();
            app.access.refresh_token(refresh, &scopes, origin).await?
        }
        Some(other) => {
            return Err(CoreError::Invalid(format!(
                "grant_type: {other:?} is not supported (password, refresh_token)"
            )));
        }
        None => return Err(CoreError::Invalid("grant_type: missing".into())),
    };
    let scope_text: Vec<String> = scopes.iter().map(Scope::to_string).collect();
    let mut body = serde_json::to_value(&token).unwrap_or_else(|_| json!({}));
    body["scope"] = json!(scope_text.join(" "));
    Ok((StatusCode::OK, Json(body)).into_response())
}

pub(crate) async fn jwks(State(app): State<App>) -> Response {
    (StatusCode::OK, Json(app.access.jwks())).into_response()
}

fn check_service(app: &App, service: Option<&str>) -> Result<(), ApiError> {
    match service {
        Some(s) if s != app.access.service() => Err(CoreError::Invalid(format!(
            "service: {s:?} is not this registry's service {:?}",
            app.access.service()
        ))
        .into()),
        _ => Ok(()),
    }
}

fn scopes<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>, ApiError> {
    parse_scopes(values).map_err(|e| CoreError::Invalid(format!("scope: {e}")).into())
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}
