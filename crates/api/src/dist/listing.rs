//! Tag lists, the catalog and referrers.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use berth_core::{Page, Registry};
use berth_oci::{Digest, RepoName};
use serde_json::json;

use super::{Query, respond};
use crate::error::ApiError;

fn page_params(query: &Query) -> Result<(Option<i64>, Option<&str>), ApiError> {
    let n = query
        .get("n")
        .map(|n| {
            n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_parameter(format!(
                    "query parameter n={n:?} is not a non-negative integer"
                ))
            })
        })
        .transpose()?;
    Ok((n, query.get("last")))
}

/// The JSON body plus a `Link` to the next page when there is one.
fn paged(path: &str, n: Option<i64>, page: &Page, body: serde_json::Value) -> Response {
    let mut h = vec![(
        header::CONTENT_TYPE.as_str(),
        "application/json".to_string(),
    )];
    if let Some(last) = &page.next_last {
        let mut link = format!("<{path}?");
        if let Some(n) = n {
            link.push_str(&format!("n={n}&"));
        }
        link.push_str(&format!("last={last}>; rel=\"next\""));
        h.push((header::LINK.as_str(), link));
    }
    respond(StatusCode::OK, &h, Body::from(body.to_string()))
}

pub(super) async fn tags(
    registry: &Registry,
    repo: &RepoName,
    query: &Query,
) -> Result<Response, ApiError> {
    let (n, last) = page_params(query)?;
    let page = registry.tags(repo, n, last).await?;
    let body = json!({ "name": repo.as_str(), "tags": page.items });
    Ok(paged(&format!("/v2/{repo}/tags/list"), n, &page, body))
}

pub(super) async fn catalog(registry: &Registry, query: &Query) -> Result<Response, ApiError> {
    let (n, last) = page_params(query)?;
    let page = registry.catalog(n, last).await?;
    let body = json!({ "repositories": page.items });
    Ok(paged("/v2/_catalog", n, &page, body))
}

pub(super) async fn referrers(
    registry: &Registry,
    repo: &RepoName,
    subject: &Digest,
    query: &Query,
) -> Result<Response, ApiError> {
    let artifact_type = query.get("artifactType").filter(|a| !a.is_empty());
    let referrers = registry.referrers(repo, subject, artifact_type).await?;
    let mut h = vec![(
        header::CONTENT_TYPE.as_str(),
        berth_oci::media_types::OCI_INDEX.to_string(),
    )];
    if referrers.filtered {
        h.push(("oci-filters-applied", "artifactType".to_string()));
    }
    Ok(respond(StatusCode::OK, &h, Body::from(referrers.index)))
}
