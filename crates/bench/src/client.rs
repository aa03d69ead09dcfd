//! A plain OCI Distribution HTTP client: uploads (monolithic, chunked,
//! docker-style), pulls, manifests, listings, with basic auth and the Docker
//! Bearer token flow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use crate::auth::{Challenge, parse_www_authenticate, token_from_json};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Resolves a `Location` header value against the URL of the request that
/// returned it: absolute URLs stay as they are, `/v2/...` keeps the
/// request's scheme and authority, anything else is relative to the request
/// path.
pub fn resolve_location(request_url: &Url, location: &str) -> Result<Url> {
    request_url
        .join(location.trim())
        .with_context(|| format!("bad Location {location:?}"))
}

/// The `rel="next"` target of a `Link` header (RFC 8288), resolved against
/// the request URL. Several comma-separated links may be present.
pub fn next_link(request_url: &Url, link: &str) -> Option<Url> {
    let mut rest = link;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        // Parameters run up to the next link, which starts with '<'.
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return request_url.join(target).ok();
        }
        rest = &after[params_end..];
    }
    None
}

#[derive(Default)]
struct AuthState {
    /// The server asked for Basic: send it on every request.
    basic: bool,
    /// Bearer tokens by scope key (`repository:NAME` or `catalog`).
    tokens: HashMap<String, String>,
}

/// Cheap to clone; clones share the connection pool and the tokens.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    creds: Option<(String, String)>,
    auth: Arc<Mutex<AuthState>>,
}

/// A request's body: `Bytes` so a 401 can be retried without a copy.
type Body = Option<Bytes>;

impl Client {
    pub fn new(base: &str, user: Option<String>, password: Option<String>) -> Result<Client> {
        let base = Url::parse(base).with_context(|| format!("bad --url {base:?}"))?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        let creds = user.map(|u| (u, password.unwrap_or_default()));
        Ok(Client {
            http,
            base,
            creds,
            auth: Arc::default(),
        })
    }

    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("path joins the base URL")
    }

    /// Sends a request, answering one 401 challenge (Basic, or Bearer via
    /// the token endpoint) and retrying once.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        scope: &str,
        headers: &[(header::HeaderName, &str)],
        body: Body,
    ) -> Result<Response> {
        let mut retried = false;
        loop {
            let mut req = self.http.request(method.clone(), url.clone());
            for (k, v) in headers {
                req = req.header(k, *v);
            }
            {
                let st = self.auth.lock().expect("auth lock");
                if let Some(tok) = st.tokens.get(scope_key(scope)) {
                    req = req.bearer_auth(tok);
                } else if st.basic
                    && let Some((u, p)) = &self.creds
                {
                    req = req.basic_auth(u, Some(p));
                }
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("{method} {url}"))?;
            if resp.status() != StatusCode::UNAUTHORIZED || retried {
                return Ok(resp);
            }
            retried = true;
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_www_authenticate)
                .collect();
            if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
                let token = self.fetch_token(c, scope).await?;
                self.auth
                    .lock()
                    .expect("auth lock")
                    .tokens
                    .insert(scope_key(scope).to_string(), token);
            } else if challenges.iter().any(|c| c.scheme == "basic") && self.creds.is_some() {
                self.auth.lock().expect("auth lock").basic = true;
            } else {
                return Ok(resp);
            }
        }
    }

    /// GET the challenge's realm with its service and scope (or the scope we
    /// need), with basic credentials when we have them.
    async fn fetch_token(&self, c: &Challenge, scope: &str) -> Result<String> {
        let realm = c
            .param("realm")
            .ok_or_else(|| anyhow!("Bearer challenge without realm"))?;
        let mut url = Url::parse(realm)
            .or_else(|_| self.base.join(realm))
            .with_context(|| format!("bad realm {realm:?}"))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = c.param("service") {
                q.append_pair("service", s);
            }
            match c.param("scope") {
                Some(s) => q.append_pair("scope", s),
                None => q.append_pair("scope", scope),
            };
        }
        let mut req = self.http.get(url.clone());
        if let Some((u, p)) = &self.creds {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            bail!("token endpoint {url} answered {status}");
        }
        token_from_json(&body).ok_or_else(|| anyhow!("token endpoint {url} gave no token"))
    }

    /// `GET /v2/`: the registry answers (after authentication).
    pub async fn ping(&self) -> Result<()> {
        let resp = self
            .send(Method::GET, self.url("/v2/"), "", &[], None)
            .await?;
        expect(resp, &[StatusCode::OK]).await.map(drop)
    }

    /// POST `/v2/NAME/blobs/uploads/`, returning the session's URL.
    pub async fn start_upload(&self, repo: &str) -> Result<Url> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send(Method::POST, url.clone(), &push_scope(repo), &[], None)
            .await?;
        let resp = expect(resp, &[StatusCode::ACCEPTED]).await?;
        location(&url, &resp)
    }

    /// Monolithic push: POST, then PUT `?digest=` with the whole body.
    pub async fn push_blob(&self, repo: &str, data: &Bytes, digest: &str) -> Result<()> {
        let mut url = self.start_upload(repo).await?;
        url.query_pairs_mut().append_pair("digest", digest);
        let resp = self
            .send(
                Method::PUT,
                url,
                &push_scope(repo),
                &[(header::CONTENT_TYPE, "application/octet-stream")],
                Some(data.clone()),
            )
            .await?;
        expect(resp, &[StatusCode::CREATED]).await.map(drop)
    }

    /// Chunked push: POST, PATCHes of `chunk` bytes with `Content-Range`,
    /// then an empty PUT `?digest=`.
    pub async fn push_blob_chunked(
        &self,
        repo: &str,
        data: &Bytes,
        digest: &str,
        chunk: usize,
    ) -> Result<()> {
        let mut url = self.start_upload(repo).await?;
        let mut offset = 0usize;
        while offset < data.len() {
            let end = (offset + chunk).min(data.len());
            let range = format!("{}-{}", offset, end - 1);
            let resp = self
                .send(
                    Method::PATCH,
                    url.clone(),
                    &push_scope(repo),
                    &[
                        (header::CONTENT_TYPE, "application/octet-stream"),
                        (header::CONTENT_RANGE, &range),
                    ],
                    Some(data.slice(offset..end)),
                )
                .await?;
            let resp = expect(resp, &[StatusCode::ACCEPTED]).await?;
            url = location(&url, &resp)?;
            offset = end;
        }
        self.finish_upload(repo, url, digest).await
    }

    /// As docker does: POST, one PATCH with the whole blob (no
    /// `Content-Range`), then an empty PUT `?digest=`.
    pub async fn push_blob_docker(&self, repo: &str, data: &Bytes, digest: &str) -> Result<()> {
        let url = self.start_upload(repo).await?;
        let resp = self
            .send(
                Method::PATCH,
                url.clone(),
                &push_scope(repo),
                &[(header::CONTENT_TYPE, "application/octet-stream")],
                Some(data.clone()),
            )
            .await?;
        let resp = expect(resp, &[StatusCode::ACCEPTED]).await?;
        let url = location(&url, &resp)?;
        self.finish_upload(repo, url, digest).await
    }

    async fn finish_upload(&self, repo: &str, mut url: Url, digest: &str) -> Result<()> {
        url.query_pairs_mut().append_pair("digest", digest);
        let resp = self
            .send(
                Method::PUT,
                url,
                &push_scope(repo),
                &[(header::CONTENT_TYPE, "application/octet-stream")],
                Some(Bytes::new()),
            )
            .await?;
        expect(resp, &[StatusCode::CREATED]).await.map(drop)
    }

    /// Cross-repository mount. `Ok(false)` when the registry opened an
    /// upload session instead (202); the session is left to expire.
    pub async fn mount_blob(&self, repo: &str, digest: &str, from: &str) -> Result<bool> {
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let resp = self
            .send(Method::POST, url, &push_scope(repo), &[], None)
            .await?;
        let resp = expect(resp, &[StatusCode::CREATED, StatusCode::ACCEPTED]).await?;
        Ok(resp.status() == StatusCode::CREATED)
    }

    /// HEAD a blob: `true` if present (200), `false` if 404.
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send(Method::HEAD, url, &pull_scope(repo), &[], None)
            .await?;
        let resp = expect(resp, &[StatusCode::OK, StatusCode::NOT_FOUND]).await?;
        Ok(resp.status() == StatusCode::OK)
    }

    /// GET a blob, streaming it; with `verify`, hashes the bytes and fails
    /// on a digest mismatch. Returns the byte count.
    pub async fn pull_blob(&self, repo: &str, digest: &str, verify: bool) -> Result<u64> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send(Method::GET, url, &pull_scope(repo), &[], None)
            .await?;
        let mut resp = expect(resp, &[StatusCode::OK]).await?;
        let expected_len = resp.content_length();
        let mut hasher = verify.then(Sha256::new);
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            n += chunk.len() as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
        }
        if let Some(len) = expected_len
            && len != n
        {
            bail!("blob {digest}: Content-Length {len} but {n} bytes");
        }
        if let Some(h) = hasher {
            let got = format!("sha256:{}", hex::encode(h.finalize()));
            if got != digest {
                bail!("blob {digest}: body hashes to {got}");
            }
        }
        Ok(n)
    }

    /// PUT a manifest; returns the body length.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<u64> {
        let len = body.len() as u64;
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(
                Method::PUT,
                url,
                &push_scope(repo),
                &[(header::CONTENT_TYPE, media_type)],
                Some(body),
            )
            .await?;
        expect(resp, &[StatusCode::CREATED]).await.map(|_| len)
    }

    /// GET (or HEAD) a manifest; returns the bytes received (GET) or the
    /// announced length (HEAD).
    pub async fn get_manifest(&self, repo: &str, reference: &str, head: bool) -> Result<u64> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let method = if head { Method::HEAD } else { Method::GET };
        let resp = self
            .send(
                method,
                url,
                &pull_scope(repo),
                &[(header::ACCEPT, ACCEPT_MANIFESTS)],
                None,
            )
            .await?;
        let resp = expect(resp, &[StatusCode::OK]).await?;
        if head {
            if resp.headers().get("docker-content-digest").is_none() {
                bail!("HEAD manifest {repo}:{reference}: no Docker-Content-Digest");
            }
            Ok(resp.content_length().unwrap_or(0))
        } else {
            let body = resp.bytes().await?;
            if body.is_empty() {
                bail!("GET manifest {repo}:{reference}: empty body");
            }
            Ok(body.len() as u64)
        }
    }

    /// One page of a tag list or the catalog: its entries and the next
    /// page's URL from `Link`.
    pub async fn list_page(&self, url: Url, scope: &str) -> Result<ListPage> {
        let resp = self
            .send(Method::GET, url.clone(), scope, &[], None)
            .await?;
        let resp = expect(resp, &[StatusCode::OK]).await?;
        let next = resp
            .headers()
            .get_all(header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| next_link(&url, v));
        let body = resp.bytes().await?;
        let len = body.len() as u64;
        let v: serde_json::Value =
            serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))?;
        let items = v
            .get("tags")
            .or_else(|| v.get("repositories"))
            .ok_or_else(|| anyhow!("GET {url}: no tags or repositories"))?;
        let entries = match items {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|e| e.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| anyhow!("GET {url}: a non-string entry"))?,
            _ => bail!("GET {url}: entries are not a list"),
        };
        Ok(ListPage {
            entries,
            next,
            bytes: len,
        })
    }
}

#[derive(Debug)]
pub struct ListPage {
    pub entries: Vec<String>,
    pub next: Option<Url>,
    pub bytes: u64,
}

pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// Tokens are cached per repository (or the catalog), whatever the actions.
fn scope_key(scope: &str) -> &str {
    match scope.rsplit_once(':') {
        Some((key, _)) => key,
        None => scope,
    }
}

/// Fails unless the status is one of `ok`, with the start of the body.
pub async fn expect(resp: Response, ok: &[StatusCode]) -> Result<Response> {
    if ok.contains(&resp.status()) {
        return Ok(resp);
    }
    let status = resp.status();
    let url = resp.url().clone();
    let body = resp.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    bail!("{url} answered {status}: {text}")
}

fn location(request_url: &Url, resp: &Response) -> Result<Url> {
    let loc = header_str(resp.headers(), header::LOCATION)
        .ok_or_else(|| anyhow!("{request_url}: {} without Location", resp.status()))?;
    resolve_location(request_url, loc)
}

fn header_str(h: &HeaderMap<HeaderValue>, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_relative_and_absolute() {
        let req = Url::parse("http://127.0.0.1:5000/v2/team/app/blobs/uploads/").unwrap();
        assert_eq!(
            resolve_location(&req, "/v2/team/app/blobs/uploads/abc?_state=x")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5000/v2/team/app/blobs/uploads/abc?_state=x"
        );
        assert_eq!(
            resolve_location(&req, "http://other:6000/v2/team/app/blobs/uploads/abc")
                .unwrap()
                .as_str(),
            "http://other:6000/v2/team/app/blobs/uploads/abc"
        );
        // Path-relative: against the request's directory.
        assert_eq!(
            resolve_location(&req, "abc").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/team/app/blobs/uploads/abc"
        );
        // A later PUT adds ?digest= to whatever query the session URL had.
        let mut u = resolve_location(&req, "/v2/x/blobs/uploads/1?_state=a%2Bb").unwrap();
        u.query_pairs_mut().append_pair("digest", "sha256:00");
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/1?_state=a%2Bb&digest=sha256%3A00"
        );
    }

    #[test]
    fn link_next() {
        let req = Url::parse("http://r:5000/v2/_catalog?n=100").unwrap();
        assert_eq!(
            next_link(&req, r#"</v2/_catalog?n=100&last=team%2Fapp>; rel="next""#)
                .unwrap()
                .as_str(),
            "http://r:5000/v2/_catalog?n=100&last=team%2Fapp"
        );
        assert_eq!(
            next_link(&req, "<http://x/v2/a/tags/list?last=t9&n=2>;rel=next")
                .unwrap()
                .as_str(),
            "http://x/v2/a/tags/list?last=t9&n=2"
        );
        assert_eq!(
            next_link(
                &req,
                r#"</v2/_catalog?last=a>; rel="prev", </v2/_catalog?last=z>; rel="next""#
            )
            .unwrap()
            .as_str(),
            "http://r:5000/v2/_catalog?last=z"
        );
        assert!(next_link(&req, r#"</v2/_catalog?last=a>; rel="prev""#).is_none());
        assert!(next_link(&req, "").is_none());
    }

    #[test]
    fn scopes_and_digest() {
        assert_eq!(scope_key("repository:a/b:pull,push"), "repository:a/b");
        assert_eq!(scope_key("repository:a/b:pull"), "repository:a/b");
        assert_eq!(scope_key(CATALOG_SCOPE), "registry:catalog");
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
