//! Blob reads and deletes.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use berth_core::Registry;
use berth_oci::{Digest, RepoName};

use super::{DIGEST_HEADER, header_str, respond};
use crate::error::ApiError;

pub(super) async fn get(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    with_body: bool,
) -> Result<Response, ApiError> {
    let common = |len: u64| {
        vec![
            (DIGEST_HEADER, digest.to_string()),
            (
                header::CONTENT_TYPE.as_str(),
                "application/octet-stream".to_string(),
            ),
            (header::ACCEPT_RANGES.as_str(), "bytes".to_string()),
            (header::CONTENT_LENGTH.as_str(), len.to_string()),
            (header::ETAG.as_str(), format!("\"{digest}\"")),
            (
                header::CACHE_CONTROL.as_str(),
                "max-age=31536000".to_string(),
            ),
        ]
    };
    if !with_body {
        let size = registry.stat_blob(repo, digest).await?;
        return Ok(respond(StatusCode::OK, &common(size), Body::empty()));
    }
    if let Some(url) = registry.blob_redirect(repo, digest).await? {
        return Ok(respond(
            StatusCode::TEMPORARY_REDIRECT,
            &[
                (header::LOCATION.as_str(), url),
                (DIGEST_HEADER, digest.to_string()),
                (header::CONTENT_LENGTH.as_str(), "0".into()),
            ],
            Body::empty(),
        ));
    }
    let read = registry
        .get_blob(repo, digest, header_str(headers, header::RANGE))
        .await?;
    let body = Body::from_stream(read.body);
    Ok(match read.range {
        None => respond(StatusCode::OK, &common(read.size), body),
        Some(r) => {
            let mut h = common(r.len());
            h.push((
                header::CONTENT_RANGE.as_str(),
                format!("bytes {}-{}/{}", r.start, r.end, read.size),
            ));
            respond(StatusCode::PARTIAL_CONTENT, &h, body)
        }
    })
}

pub(super) async fn delete(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    registry.delete_blob(repo, digest).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        &[(header::CONTENT_LENGTH.as_str(), "0".into())],
        Body::empty(),
    ))
}
