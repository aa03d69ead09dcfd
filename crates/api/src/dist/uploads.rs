//! Blob uploads: start (with monolithic and mount variants), chunk, status,
//! finish and cancel.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use berth_core::{MountOutcome, Registry, UploadStatus};
use berth_oci::{RepoName, parse_content_range};

use super::endpoint::digest;
use super::{
    DIGEST_HEADER, Query, UPLOAD_UUID_HEADER, body_stream, content_length, header_str, respond,
};
use crate::error::{ApiError, upload_range};

fn session_response(status: StatusCode, repo: &RepoName, upload: &UploadStatus) -> Response {
    respond(
        status,
        &[
            (
                header::LOCATION.as_str(),
                format!("/v2/{repo}/blobs/uploads/{}", upload.id),
            ),
            (header::RANGE.as_str(), upload_range(upload.offset)),
            (UPLOAD_UUID_HEADER, upload.id.clone()),
            (header::CONTENT_LENGTH.as_str(), "0".into()),
        ],
        Body::empty(),
    )
}

fn blob_created(repo: &RepoName, digest: &berth_oci::Digest) -> Response {
    respond(
        StatusCode::CREATED,
        &[
            (
                header::LOCATION.as_str(),
                format!("/v2/{repo}/blobs/{digest}"),
            ),
            (DIGEST_HEADER, digest.to_string()),
            (header::CONTENT_LENGTH.as_str(), "0".into()),
        ],
        Body::empty(),
    )
}

pub(super) async fn start(
    registry: &Registry,
    repo: &RepoName,
    query: &Query,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(mount) = query.get("mount") {
        let digest = digest(mount)?;
        // A malformed `from` is treated like a source without the blob.
        let from = query.get("from").and_then(|f| RepoName::parse(f).ok());
        return Ok(
            match registry.mount_blob(repo, &digest, from.as_ref()).await? {
                MountOutcome::Mounted => blob_created(repo, &digest),
                MountOutcome::Started(upload) => {
                    session_response(StatusCode::ACCEPTED, repo, &upload)
                }
            },
        );
    }
    if let Some(d) = query.get("digest") {
        let digest = digest(d)?;
        registry.push_blob(repo, &digest, body_stream(body)).await?;
        return Ok(blob_created(repo, &digest));
    }
    let upload = registry.start_upload(repo).await?;
    Ok(session_response(StatusCode::ACCEPTED, repo, &upload))
}

pub(super) async fn status(
    registry: &Registry,
    repo: &RepoName,
    id: &str,
) -> Result<Response, ApiError> {
    let upload = registry.upload_status(repo, id).await?;
    Ok(session_response(StatusCode::NO_CONTENT, repo, &upload))
}

fn chunk_range(headers: &HeaderMap) -> Result<Option<berth_oci::ByteRange>, ApiError> {
    header_str(headers, header::CONTENT_RANGE)
        .map(|v| parse_content_range(v).map_err(|e| ApiError::upload_invalid(e.to_string())))
        .transpose()
}

pub(super) async fn patch(
    registry: &Registry,
    repo: &RepoName,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let range = chunk_range(headers)?;
    let length = content_length(headers)?;
    let upload = registry
        .upload_chunk(repo, id, range, length, body_stream(body))
        .await?;
    Ok(session_response(StatusCode::ACCEPTED, repo, &upload))
}

pub(super) async fn finish(
    registry: &Registry,
    repo: &RepoName,
    id: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = match query.get("digest") {
        Some(d) => digest(d)?,
        None => {
            return Err(ApiError::digest_invalid(
                "the digest query parameter is required to finish an upload",
            ));
        }
    };
    let range = chunk_range(headers)?;
    registry
        .finish_upload(repo, id, &digest, range, body_stream(body))
        .await?;
    Ok(blob_created(repo, &digest))
}

pub(super) async fn cancel(
    registry: &Registry,
    repo: &RepoName,
    id: &str,
) -> Result<Response, ApiError> {
    registry.cancel_upload(repo, id).await?;
    Ok(respond(StatusCode::NO_CONTENT, &[], Body::empty()))
}
