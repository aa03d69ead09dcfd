//! What `/api/v1` handlers take from a request: the authenticated actor
//! (Basic credentials only), a JSON body whose errors name the field, query
//! parameters and page requests; and how times are written.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use berth_core::access::manage::{Actor, DEFAULT_LIMIT, MAX_LIMIT, PageRequest};
use berth_core::access::{Credentials, parse_authorization};
use berth_core::{Caller, Error as CoreError, Origin};
use serde::de::DeserializeOwned;

use crate::App;
use crate::error::ApiError;

/// Request bodies larger than this are refused: management requests are small.
const MAX_BODY: usize = 1024 * 1024;

fn unauthenticated(message: &str) -> ApiError {
    CoreError::Unauthenticated {
        message: message.into(),
        problem: None,
    }
    .into()
}

fn origin(parts: &Parts) -> Origin {
    Origin {
        addr: parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip()),
    }
}

/// The caller, anonymous included. Basic credentials are checked like a
/// login (users with a password or personal access token, robots with
/// their secret); registry bearer tokens are for `/v2` and refused here.
pub(crate) struct MaybeAuth(pub(crate) Actor);

/// The caller, who must have authenticated.
pub(crate) struct Auth(pub(crate) Actor);

impl FromRequestParts<App> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<MaybeAuth, ApiError> {
        let origin = origin(parts);
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            // A browser session (OIDC or UI login). SameSite=Lax keeps the
            // cookie off cross-site POSTs, so it cannot be ridden by CSRF.
            if let Some(token) =
                crate::session::cookie(&parts.headers, crate::session::SESSION_COOKIE)
                && !token.is_empty()
            {
                let login = app.access.session(token).await?;
                return Ok(MaybeAuth(Actor::from_login(login, origin)));
            }
            return Ok(MaybeAuth(Actor::anonymous(origin)));
        };
        let value = value
            .to_str()
            .map_err(|_| unauthenticated("the Authorization header is not text"))?;
        match parse_authorization(value) {
            Some(Credentials::Basic { .. }) => {}
            Some(Credentials::Bearer(_)) => {
                return Err(unauthenticated(
                    "registry bearer tokens are for /v2; /api/v1 takes Basic credentials \
                     (a password, personal access token or robot secret)",
                ));
            }
            None => {
                return Err(unauthenticated(
                    "the Authorization header is not Basic credentials",
                ));
            }
        }
        match app.access.identify(Some(value), origin).await? {
            Caller::Login(login) => Ok(MaybeAuth(Actor::from_login(login, origin))),
            Caller::Anonymous => Ok(MaybeAuth(Actor::anonymous(origin))),
            Caller::Token(_) => Err(unauthenticated("/api/v1 takes Basic credentials")),
        }
    }
}

impl FromRequestParts<App> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Auth, ApiError> {
        let MaybeAuth(actor) = MaybeAuth::from_request_parts(parts, app).await?;
        if actor.method.is_none() {
            return Err(unauthenticated("authentication required"));
        }
        Ok(Auth(actor))
    }
}

/// A JSON request body. Malformed JSON, unknown fields and wrong types
/// answer 400 INVALID with a message that starts with the field's path
/// (`permissions[0].access[1].action: unknown variant …`).
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<App> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Body<T>, ApiError> {
        let bytes = Bytes::from_request(req, app).await.map_err(|_| {
            ApiError::from(CoreError::Invalid(format!(
                "request body: larger than {} KiB or unreadable",
                MAX_BODY / 1024
            )))
        })?;
        if bytes.len() > MAX_BODY {
            return Err(CoreError::Invalid("request body: too large".into()).into());
        }
        parse_json(&bytes).map(Body)
    }
}

/// Parses a JSON body; errors start with the path of the field at fault.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path.is_empty() || path == "." || path == "?" {
            format!("request body: {inner}")
        } else {
            format!("{path}: {inner}")
        };
        ApiError::from(CoreError::Invalid(message))
    })?;
    de.end()
        .map_err(|e| ApiError::from(CoreError::Invalid(format!("request body: {e}"))))?;
    Ok(value)
}

/// Query parameters, decoded.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(query: Option<&str>) -> Params {
        Params(
            query
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `limit` (default 100, at most 1000) and `after`.
    pub(crate) fn page(&self) -> Result<PageRequest<'_>, ApiError> {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(CoreError::Invalid(format!(
                        "limit: {v:?} is not a number from 1 to {MAX_LIMIT}"
                    ))
                    .into());
                }
            },
        };
        Ok(PageRequest {
            after: self.get("after"),
            limit,
        })
    }

    /// A time parameter: RFC 3339, or milliseconds since the Unix epoch.
    pub(crate) fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key).map(|v| parse_time(key, v)).transpose()
    }
}

/// RFC 3339 (`2026-05-01T12:00:00Z`) or milliseconds since the epoch.
pub(crate) fn parse_time(field: &str, value: &str) -> Result<i64, ApiError> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse()
            .map_err(|_| CoreError::Invalid(format!("{field}: {value:?} is too large")).into());
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            CoreError::Invalid(format!(
                "{field}: {value:?} is neither RFC 3339 nor milliseconds since the epoch ({e})"
            ))
            .into()
        })
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

pub(crate) fn opt_time(ms: Option<i64>) -> Option<String> {
    ms.map(time)
}

/// A numeric path segment (an id).
pub(crate) fn id(field: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse()
        .map_err(|_| CoreError::Invalid(format!("{field}: {value:?} is not a number")).into())
}

/// Deserializes a present field as `Some`, so `Option<Option<T>>` tells
/// "absent" (leave alone) from `null` (clear).
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print() {
        assert_eq!(parse_time("since", "0").unwrap(), 0);
        assert_eq!(
            parse_time("since", "1700000000123").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_time("since", "2023-11-14T22:13:20.123Z").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_time("since", "2023-11-14T23:13:20+01:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        for bad in ["yesterday", "2023-11-14", "-5", "1.5"] {
            let e = parse_time("since", bad).unwrap_err();
            let ApiError::Core(CoreError::Invalid(m)) = e else {
                panic!("{e:?}")
            };
            assert!(m.starts_with("since:"), "{m}");
        }
    }

    #[test]
    fn body_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            role: berth_core::access::manage::Role,
            permissions: Option<Vec<berth_core::access::manage::Grant>>,
        }
        let msg = |body: &str| match parse_json::<B>(body.as_bytes()).unwrap_err() {
            ApiError::Core(CoreError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(msg(r#"{"role":"boss"}"#).starts_with("role: unknown variant"));
        let m = msg(
            r#"{"role":"guest","permissions":[{"namespace":{"kind":"system"},"access":[{"resource":"repository","action":"fly"}]}]}"#,
        );
        assert!(m.starts_with("permissions[0].access[0].action:"), "{m}");
        assert!(msg(r#"{"role":"guest","x":1}"#).contains("unknown field `x`"));
        assert!(msg("{").starts_with("request body:"), "{}", msg("{"));
        assert!(msg(r#"{"role":"guest"} trailing"#).starts_with("request body:"));
        assert!(parse_json::<B>(br#"{"role":"guest"}"#).is_ok());
    }

    #[test]
    fn pages_are_bounded() {
        let p = Params::parse(Some("limit=5&after=b"));
        let page = p.page().unwrap();
        assert_eq!((page.limit, page.after), (5, Some("b")));
        assert_eq!(Params::parse(None).page().unwrap().limit, DEFAULT_LIMIT);
        for bad in ["limit=0", "limit=1001", "limit=x"] {
            assert!(Params::parse(Some(bad)).page().is_err(), "{bad}");
        }
    }
}
