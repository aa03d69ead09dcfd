//! The OCI distribution API under `/v2`: one catch-all route whose path is
//! parsed into an [`Endpoint`], then dispatched by method to a thin handler
//! that makes one core call and shapes the response.

mod blobs;
mod endpoint;
mod listing;
mod manifests;
mod uploads;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::{ByteStream, Registry};
use futures::{StreamExt, TryStreamExt};

use crate::error::ApiError;
pub(crate) use endpoint::Endpoint;

pub(crate) const DIGEST_HEADER: &str = "docker-content-digest";
pub(crate) const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";
pub(crate) const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// The label of the route a response answered, for metrics.
#[derive(Clone, Copy)]
pub(crate) struct RouteLabel(pub(crate) &'static str);

pub(crate) async fn dispatch(State(registry): State<Registry>, req: Request) -> Response {
    let path = req.uri().path();
    let rest = path.strip_prefix("/v2").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest).to_string();
    let (label, mut resp) = match Endpoint::parse(req.method(), &rest) {
        Ok(endpoint) => {
            let label = endpoint.route();
            let resp = match handle(&registry, endpoint, req).await {
                Ok(resp) => resp,
                Err(e) => e.into_response(),
            };
            (label, resp)
        }
        Err(e) => ("unknown", e.into_response()),
    };
    resp.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    resp.extensions_mut().insert(RouteLabel(label));
    resp
}

async fn handle(
    registry: &Registry,
    endpoint: Endpoint,
    req: Request,
) -> Result<Response, ApiError> {
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
            manifests::delete(registry, &repo, &reference).await
        }
        (Endpoint::Blob(repo, digest), m @ (Method::GET | Method::HEAD)) => {
            blobs::get(registry, &repo, &digest, &headers, m == Method::GET).await
        }
        (Endpoint::Blob(repo, digest), Method::DELETE) => {
            blobs::delete(registry, &repo, &digest).await
        }
        (Endpoint::UploadStart(repo), Method::POST) => {
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

/// Query parameters, decoded. Repeated keys keep the first value.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
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
