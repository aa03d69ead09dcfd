//! Parsing a `/v2/...` path into a typed [`Endpoint`].
//!
//! Repository names may contain slashes, so the path is split on the *last*
//! `/manifests/`, `/blobs/`, `/blobs/uploads/`, `/referrers/` or `/tags/list`
//! whose tail has no further slash. The raw (still percent-encoded) path is
//! parsed, so `%2e%2e` or `%2F` never decode into something the grammar
//! would have refused.

use axum::http::Method;
use berth_oci::{Digest, NameError, Reference, RepoName};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Base,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, Reference),
    Blob(RepoName, Digest),
    UploadStart(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, Digest),
}

impl Endpoint {
    /// A short, bounded label for metrics and logs.
    pub(crate) fn route(&self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Tags(_) => "tags",
            Endpoint::Manifest(..) => "manifest",
            Endpoint::Blob(..) => "blob",
            Endpoint::UploadStart(_) => "upload_start",
            Endpoint::Upload(..) => "upload",
            Endpoint::Referrers(..) => "referrers",
        }
    }

    /// Parses the part of the path after `/v2/`. The method matters only for
    /// an invalid tag: a read of it finds nothing (404), a push of it is an
    /// invalid manifest reference (400).
    pub(crate) fn parse(method: &Method, rest: &str) -> Result<Endpoint, ApiError> {
        if rest.is_empty() {
            return Ok(Endpoint::Base);
        }
        if rest == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Ok(Endpoint::Tags(repo(name)?));
        }
        if let Some(name) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Ok(Endpoint::UploadStart(repo(name)?));
        }
        const MARKERS: [&str; 4] = ["/blobs/uploads/", "/manifests/", "/blobs/", "/referrers/"];
        let mut best: Option<(usize, &str)> = None;
        for marker in MARKERS {
            if let Some(at) = rest.rfind(marker) {
                let tail = &rest[at + marker.len()..];
                let better = best.is_none_or(|(b, _)| at > b);
                if !tail.contains('/') && !tail.is_empty() && better {
                    best = Some((at, marker));
                }
            }
        }
        let Some((at, marker)) = best else {
            return Err(ApiError::not_found(format!(
                "no OCI endpoint at /v2/{rest}"
            )));
        };
        let name = repo(&rest[..at])?;
        let tail = &rest[at + marker.len()..];
        Ok(match marker {
            "/blobs/uploads/" => Endpoint::Upload(name, tail.to_string()),
            "/manifests/" => Endpoint::Manifest(name, reference(method, tail)?),
            "/blobs/" => Endpoint::Blob(name, digest(tail)?),
            _ => Endpoint::Referrers(name, digest(tail)?),
        })
    }
}

fn repo(name: &str) -> Result<RepoName, ApiError> {
    RepoName::parse(name).map_err(|e| ApiError::name_invalid(e.to_string()))
}

pub(crate) fn digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::digest_invalid(e.to_string()))
}

fn reference(method: &Method, s: &str) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| match e {
        NameError::Digest(d) => ApiError::digest_invalid(d.to_string()),
        other if *method == Method::PUT => ApiError::manifest_invalid(other.to_string()),
        other => ApiError::manifest_unknown(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use berth_oci::ErrorCode;

    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn name(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn parses_every_endpoint() {
        let cases = [
            ("", Endpoint::Base),
            ("_catalog", Endpoint::Catalog),
            ("a/b/tags/list", Endpoint::Tags(name("a/b"))),
            (
                "a/manifests/latest",
                Endpoint::Manifest(name("a"), Reference::parse("latest").unwrap()),
            ),
            (
                &format!("a/b/manifests/{D}"),
                Endpoint::Manifest(name("a/b"), Reference::parse(D).unwrap()),
            ),
            (
                &format!("x/blobs/{D}"),
                Endpoint::Blob(name("x"), Digest::parse(D).unwrap()),
            ),
            ("x/blobs/uploads/", Endpoint::UploadStart(name("x"))),
            ("x/blobs/uploads", Endpoint::UploadStart(name("x"))),
            (
                "x/blobs/uploads/abc-1",
                Endpoint::Upload(name("x"), "abc-1".into()),
            ),
            (
                &format!("x/referrers/{D}"),
                Endpoint::Referrers(name("x"), Digest::parse(D).unwrap()),
            ),
            // Names may contain the markers' words as components.
            (
                "manifests/blobs/manifests/v1",
                Endpoint::Manifest(name("manifests/blobs"), Reference::parse("v1").unwrap()),
            ),
            (
                "blobs/uploads/tags/list",
                Endpoint::Tags(name("blobs/uploads")),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(Endpoint::parse(&Method::GET, path).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn rejects_with_the_right_code() {
        let cases = [
            ("A/manifests/v1", ErrorCode::NameInvalid),
            ("a/../b/manifests/v1", ErrorCode::NameInvalid),
            ("%2e%2e/manifests/v1", ErrorCode::NameInvalid),
            ("a//b/tags/list", ErrorCode::NameInvalid),
            ("a/blobs/sha256:abc", ErrorCode::DigestInvalid),
            ("a/manifests/sha256:abc", ErrorCode::DigestInvalid),
            ("a/manifests/-bad", ErrorCode::ManifestInvalid),
            ("a/referrers/latest", ErrorCode::DigestInvalid),
            ("a", ErrorCode::NameUnknown),
            ("a/manifests/.bad", ErrorCode::ManifestInvalid),
            ("a/blobs/", ErrorCode::NameUnknown),
        ];
        for (path, code) in cases {
            let err = Endpoint::parse(&Method::PUT, path).unwrap_err();
            assert_eq!(err.code(), Some(code), "{path}");
        }
        // Reading an invalid tag finds nothing, as the conformance suite wants.
        let err = Endpoint::parse(&Method::GET, "a/manifests/.bad").unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::ManifestUnknown));
    }
}
