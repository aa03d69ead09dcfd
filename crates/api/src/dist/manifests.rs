//! Manifest pull, push and delete.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use berth_core::Registry;
use berth_oci::{MANIFEST_SIZE_LIMIT, Reference, RepoName};

use super::{DIGEST_HEADER, header_str, respond};
use crate::error::ApiError;

/// Media types named in `Accept` headers, without parameters or weights.
fn accepted_types(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

pub(super) async fn get(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
    with_body: bool,
) -> Result<Response, ApiError> {
    let m = registry
        .get_manifest(repo, reference, &accepted_types(headers), with_body)
        .await?;
    let h = [
        (header::CONTENT_TYPE.as_str(), m.media_type),
        (header::CONTENT_LENGTH.as_str(), m.size.to_string()),
        (DIGEST_HEADER, m.digest.to_string()),
        (header::ETAG.as_str(), format!("\"{}\"", m.digest)),
    ];
    let body = if with_body {
        Body::from(m.body)
    } else {
        Body::empty()
    };
    Ok(respond(StatusCode::OK, &h, body))
}

pub(super) async fn put(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, MANIFEST_SIZE_LIMIT + 1)
        .await
        .map_err(|e| {
            if exceeded_limit(&e) {
                ApiError::Core(berth_core::Error::ManifestTooLarge {
                    size: MANIFEST_SIZE_LIMIT + 1,
                    limit: MANIFEST_SIZE_LIMIT,
                })
            } else {
                ApiError::manifest_invalid(format!("reading the manifest body failed: {e}"))
            }
        })?;
    let pushed = registry
        .put_manifest(
            repo,
            reference,
            header_str(headers, header::CONTENT_TYPE),
            bytes,
        )
        .await?;
    let mut h = vec![
        (
            header::LOCATION.as_str(),
            format!("/v2/{repo}/manifests/{}", pushed.digest),
        ),
        (DIGEST_HEADER, pushed.digest.to_string()),
        (header::CONTENT_LENGTH.as_str(), "0".into()),
    ];
    if let Some(subject) = pushed.subject {
        h.push(("oci-subject", subject.to_string()));
    }
    Ok(respond(StatusCode::CREATED, &h, Body::empty()))
}

pub(super) async fn delete(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
    who: &str,
) -> Result<Response, ApiError> {
    registry.delete_manifest_as(repo, reference, who).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        &[(header::CONTENT_LENGTH.as_str(), "0".into())],
        Body::empty(),
    ))
}

/// Whether a body read failed on the size limit rather than the connection.
fn exceeded_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}
