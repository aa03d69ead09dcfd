//! What each `/v2` endpoint needs, as token scopes, and the challenge a
//! refused request carries.

use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use berth_core::access::{Scope, ScopeAction, bearer_challenge};
use berth_core::{Access, Caller, Error as CoreError};
use berth_oci::RepoName;

use super::{Endpoint, Query};
use crate::AuthConfig;

/// The scopes a request needs. The base endpoint needs none, but only an
/// authenticated caller may use it (that 401 is how clients discover the
/// token endpoint).
pub(super) fn needs(endpoint: &Endpoint, method: &Method) -> Vec<Scope> {
    let repo =
        |name: &RepoName, action: ScopeAction| vec![Scope::repository(name.clone(), &[action])];
    // Writes need pull as well as push, as in Distribution, so the
    // challenge asks for `pull,push` and one token covers a whole push
    // (clients such as oras-py keep a single token per repository).
    let push = |name: &RepoName| {
        vec![Scope::repository(
            name.clone(),
            &[ScopeAction::Pull, ScopeAction::Push],
        )]
    };
    match endpoint {
        Endpoint::Base => vec![],
        Endpoint::Catalog => vec![Scope::catalog()],
        Endpoint::Tags(name) | Endpoint::Referrers(name, _) => repo(name, ScopeAction::Pull),
        Endpoint::Manifest(name, _) | Endpoint::Blob(name, _) => match *method {
            Method::PUT => push(name),
            Method::DELETE => repo(name, ScopeAction::Delete),
            _ => repo(name, ScopeAction::Pull),
        },
        Endpoint::UploadStart(name) | Endpoint::Upload(name, _) => push(name),
    }
}

/// A cross-repository mount needs pull on the source. Without it the
/// mount is not attempted and an ordinary upload session opens (what the
/// spec allows a registry to do when it cannot mount), so knowing a
/// digest in a repository one cannot read grants nothing.
pub(super) async fn mount_source_allowed(access: &Access, caller: &Caller, query: &Query) -> bool {
    let Some(from) = query.get("from").and_then(|f| RepoName::parse(f).ok()) else {
        return true;
    };
    let scope = Scope::repository(from, &[ScopeAction::Pull]);
    access.authorize(caller, &[scope]).await.is_ok()
}

/// The token endpoint's URL: configured, or derived from the request.
pub(crate) fn realm(auth: &AuthConfig, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(r) = &auth.realm {
        return r.clone();
    }
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "http" || *p == "https")
        .unwrap_or(if auth.tls { "https" } else { "http" });
    // HTTP/2 carries the host in the `:authority` pseudo-header, which
    // hyper puts in the URI rather than in a `Host` header.
    let authority = uri.authority().map(|a| a.as_str());
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(authority)
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!("{proto}://{host}/service/token")
}

/// The `WWW-Authenticate` value of a 401, so the client knows where to get
/// a token and for which scopes.
pub(super) fn challenge(
    err: &CoreError,
    access: &Access,
    auth: &AuthConfig,
    headers: &HeaderMap,
    uri: &Uri,
    scopes: &[Scope],
) -> Option<HeaderValue> {
    let CoreError::Unauthenticated { problem, .. } = err else {
        return None;
    };
    let value = bearer_challenge(
        &realm(auth, headers, uri),
        access.service(),
        scopes,
        *problem,
    );
    HeaderValue::from_str(&value).ok()
}
