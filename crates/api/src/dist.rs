//! The OCI distribution API under `/v2`: one catch-all route whose path is
//! parsed into an [`Endpoint`], then dispatched by method to a thin handler
//! that makes one core call and shapes the response.

mod authz;
mod blobs;
mod endpoint;
mod listing;
mod manifests;
mod uploads;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::{ByteStream, Caller, Origin};
use futures::{StreamExt, TryStreamExt};

use crate::App;
use crate::error::ApiError;
pub(crate) use endpoint::Endpoint;

pub(crate) const DIGEST_HEADER: &str = "docker-content-digest";
pub(crate) const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";
pub(crate) const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// The label of the route a response answered, for metrics.
#[derive(Clone, Copy)]
pub(crate) struct RouteLabel(pub(crate) &'static str);

pub(crate) async fn dispatch(State(app): State<App>, req: Request) -> Response {
    let path = req.uri().path();
    let rest = path.strip_prefix("/v2").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest).to_string();
    let (label, mut resp) = match Endpoint::parse(req.method(), &rest) {
        Ok(endpoint) => {
            let label = endpoint.route();
            (label, authorized(&app, endpoint, req).await)
        }
        Err(e) => ("unknown", e.into_response()),
    };
    resp.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    resp.extensions_mut().insert(RouteLabel(label));
    resp
}

/// The client's address, when the server recorded it.
pub(crate) fn origin(req: &Request) -> Origin {
    Origin {
        addr: req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip()),
    }
}

/// Authenticates and authorizes the request, then handles it; a refusal
/// carries the challenge that tells the client where to get a token.
async fn authorized(app: &App, endpoint: Endpoint, req: Request) -> Response {
    let needs = authz::needs(&endpoint, req.method());
    let authorization = header_str(req.headers(), header::AUTHORIZATION).map(str::to_string);
    let origin = origin(&req);
    let checked = async {
        let caller = app
            .access
            .identify(authorization.as_deref(), origin)
            .await?;
        // An anonymous token (no subject) is no authentication either: the
        // base endpoint's 401 is how `docker login` learns it must log in.
        let anonymous = match &caller {
            Caller::Anonymous => true,
            Caller::Token(claims) => claims.sub.is_empty(),
            Caller::Login(_) => false,
        };
        if endpoint == Endpoint::Base && anonymous {
            return Err(berth_core::Error::Unauthenticated {
                message: "authentication required".into(),
                problem: None,
            });
        }
        app.access.authorize(&caller, &needs).await?;
        Ok(caller)
    }
    .await;
    let caller = match checked {
        Ok(caller) => caller,
        Err(e) => {
            let www =
                authz::challenge(&e, &app.access, &app.auth, req.headers(), req.uri(), &needs);
            let mut resp = ApiError::Core(e).into_response();
            if let Some(v) = www {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return resp;
        }
    };
    let audit = audit_event(&endpoint, req.method(), &caller);
    match handle(app, &caller, endpoint, req).await {
        Ok(resp) => {
            if let Some(event) = audit
                && resp.status().is_success()
            {
                app.access.auditor().record(event.from_addr(origin.addr));
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(
    app: &App,
    caller: &Caller,
    endpoint: Endpoint,
    req: Request,
) -> Result<Response, ApiError> {
    let registry = &app.registry;
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    match (endpoint, method) {
        (Endpoint::Base, Method::GET | Method::HEAD) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response()),
        (Endpoint::Catalog, Method::GET) => listing::catalog(registry, &query).await,
        (Endpoint::Tags(repo), Method::GET) => listing::tags(registry, &repo, &query).await,
        (Endpoint::Referrers(repo, digest), Method::GET) => {
            listing::referrers(registry, &repo, &digest, &query).await
        }
        (Endpoint::Manifest(repo, reference), m @ (Method::GET | Method::HEAD)) => {
            manifests::get(registry, &repo, &reference, &headers, m == Method::GET).await
        }
        (Endpoint::Manifest(repo, reference), Method::PUT) => {
            manifests::put(registry, &repo, &reference, &headers, body).await
        }
        (Endpoint::Manifest(repo, reference), Method::DELETE) => {
            manifests::delete(registry, &repo, &reference, caller.subject()).await
        }
        (Endpoint::Blob(repo, digest), m @ (Method::GET | Method::HEAD)) => {
            blobs::get(registry, &repo, &digest, &headers, m == Method::GET).await
        }
        (Endpoint::Blob(repo, digest), Method::DELETE) => {
            blobs::delete(registry, &repo, &digest).await
        }
        (Endpoint::UploadStart(repo), Method::POST) => {
            let query = if authz::mount_source_allowed(&app.access, caller, &query).await {
                query
            } else {
                query.without(&["mount", "from"])
            };
            uploads::start(registry, &repo, &query, body).await
        }
        (Endpoint::Upload(repo, id), Method::GET) => uploads::status(registry, &repo, &id).await,
        (Endpoint::Upload(repo, id), Method::PATCH) => {
            uploads::patch(registry, &repo, &id, &headers, body).await
        }
        (Endpoint::Upload(repo, id), Method::PUT) => {
            uploads::finish(registry, &repo, &id, &query, &headers, body).await
        }
        (Endpoint::Upload(repo, id), Method::DELETE) => uploads::cancel(registry, &repo, &id).await,
        (endpoint, method) => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on the {} endpoint",
            endpoint.route()
        ))),
    }
}

/// The audit event a successful request records: pushes, pulls (manifest
/// GETs, what a client does once per image) and deletions.
fn audit_event(
    endpoint: &Endpoint,
    method: &Method,
    caller: &Caller,
) -> Option<berth_core::access::AuditEvent> {
    let (action, repo, what) = match (endpoint, method) {
        (Endpoint::Manifest(repo, r), &Method::PUT) => ("artifact.push", repo, r.to_string()),
        (Endpoint::Manifest(repo, r), &Method::GET) => ("artifact.pull", repo, r.to_string()),
        (Endpoint::Manifest(repo, r), &Method::DELETE) => ("artifact.delete", repo, r.to_string()),
        (Endpoint::Blob(repo, d), &Method::DELETE) => ("blob.delete", repo, d.to_string()),
        _ => return None,
    };
    let sep = if what.contains(':') { "@" } else { ":" };
    Some(
        caller
            .audit(action, format!("repository/{repo}{sep}{what}"))
            .project(berth_core::access::project_of(repo)),
    )
}

/// Query parameters, decoded. Repeated keys keep the first value.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    /// The same parameters without `keys`.
    fn without(self, keys: &[&str]) -> Query {
        Query(
            self.0
                .into_iter()
                .filter(|(k, _)| !keys.contains(&k.as_str()))
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The request body as the core's byte stream.
pub(crate) fn body_stream(body: Body) -> ByteStream {
    body.into_data_stream()
        .map_err(std::io::Error::other)
        .boxed()
}

pub(crate) fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    header_str(headers, header::CONTENT_LENGTH)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::size_invalid(format!("Content-Length {v:?} is not a number"))
            })
        })
        .transpose()
}

/// Builds a response from a status and headers, ignoring values that are
/// not valid header text (all values built here are ASCII).
pub(crate) fn respond(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(
                header::HeaderName::from_bytes(name.as_bytes())
                    .expect("static header names are valid"),
                v,
            );
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("n=10&last=a%2Fb&x=%zz&from=team%2Fapp&empty="));
        assert_eq!(q.get("n"), Some("10"));
        assert_eq!(q.get("last"), Some("a/b"));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.get("from"), Some("team/app"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("missing"), None);
    }
}
