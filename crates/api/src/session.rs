//! Browser sessions: OIDC login (redirect to the provider, callback),
//! session refresh and logout under `/api/v1/auth`. The session cookie is
//! HttpOnly, SameSite=Lax, and Secure when the server speaks HTTPS.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::Error as CoreError;
use berth_core::access::Session;
use serde_json::json;

use crate::App;
use crate::dist::origin;
use crate::error::ApiError;

pub(crate) const SESSION_COOKIE: &str = "berth_session";
const LOGIN_COOKIE: &str = "berth_oidc_login";

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(resp: &mut Response, app: &App, name: &str, value: &str, max_age: u64) {
    let secure = if app.auth.tls { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    if let Ok(v) = HeaderValue::from_str(&text) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `GET /api/v1/auth/oidc/login`: redirect to the provider.
pub(crate) async fn oidc_login(State(app): State<App>) -> Response {
    match app.access.oidc_begin() {
        Ok((url, pending)) => {
            let mut resp = StatusCode::FOUND.into_response();
            if let Ok(v) = HeaderValue::from_str(&url) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            let window = berth_core::access::OIDC_LOGIN_WINDOW.as_secs();
            set_cookie(&mut resp, &app, LOGIN_COOKIE, &pending, window);
            resp
        }
        Err(e) => ApiError::Core(e).into_response(),
    }
}

/// `GET /api/v1/auth/oidc/callback?state=…&code=…`: finish the login and
/// open a session.
pub(crate) async fn oidc_callback(State(app): State<App>, req: Request) -> Response {
    let origin = origin(&req);
    let pairs: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(error) = param("error") {
        return ApiError::Core(CoreError::Unauthenticated {
            message: format!("the OpenID provider refused the login: {error}"),
            problem: None,
        })
        .into_response();
    }
    let (Some(state), Some(code)) = (param("state"), param("code")) else {
        return ApiError::Core(CoreError::Invalid(
            "state and code: both query parameters are required".into(),
        ))
        .into_response();
    };
    let Some(pending) = cookie(req.headers(), LOGIN_COOKIE) else {
        return ApiError::Core(CoreError::Unauthenticated {
            message: "no login in progress (the login cookie is missing or expired)".into(),
            problem: None,
        })
        .into_response();
    };
    match app.access.oidc_complete(pending, state, code, origin).await {
        Ok(session) => session_response(&app, &session, true),
        Err(e) => ApiError::Core(e).into_response(),
    }
}

/// `POST /api/v1/auth/oidc/refresh`: renew an OIDC session with the
/// provider (groups and admin right taken afresh).
pub(crate) async fn oidc_refresh(State(app): State<App>, req: Request) -> Response {
    let origin = origin(&req);
    let Some(token) = cookie(req.headers(), SESSION_COOKIE) else {
        return ApiError::Core(CoreError::Unauthenticated {
            message: "no session cookie".into(),
            problem: None,
        })
        .into_response();
    };
    match app.access.oidc_refresh(token, origin).await {
        Ok(session) => session_response(&app, &session, false),
        Err(e) => ApiError::Core(e).into_response(),
    }
}

/// `POST /api/v1/auth/login` with `{"username", "password"}`: a session for
/// a user who logs in with a password (the UI's login form). Robots and
/// personal access tokens are refused: they are for the CLI and API.
pub(crate) async fn login(State(app): State<App>, req: Request) -> Response {
    let origin = origin(&req);
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::Core(CoreError::Invalid("request body: too large".into()))
                .into_response();
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Form {
        username: String,
        password: String,
    }
    let form: Form = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return ApiError::Core(CoreError::Invalid(format!("request body: {e}")))
                .into_response();
        }
    };
    let result = async {
        let login = app
            .access
            .login(&form.username, &form.password, origin)
            .await?;
        app.access.open_session(&login)
    }
    .await;
    match result {
        Ok(session) => session_response(&app, &session, false),
        Err(e) => ApiError::Core(e).into_response(),
    }
}

/// `POST /api/v1/auth/logout`: forget the session cookie.
pub(crate) async fn logout(State(app): State<App>) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut resp, &app, SESSION_COOKIE, "", 0);
    resp
}

fn session_response(app: &App, session: &Session, clear_login: bool) -> Response {
    let p = &session.login.principal;
    let mut resp = (
        StatusCode::OK,
        Json(json!({
            "name": p.subject(),
            "kind": p.kind(),
            "system_admin": p.is_system_admin(),
            "expires_in": session.max_age.as_secs(),
        })),
    )
        .into_response();
    set_cookie(
        &mut resp,
        app,
        SESSION_COOKIE,
        &session.token,
        session.max_age.as_secs(),
    );
    if clear_login {
        set_cookie(&mut resp, app, LOGIN_COOKIE, "", 0);
    }
    resp
}
