//! The OCI distribution API through the axum router, without a network
//! (`tower::ServiceExt::oneshot`): every endpoint and method, the status
//! codes, the headers clients rely on and the JSON error bodies.
//!
//! Every `/v2` response passes through `Api::send`, which checks the
//! `Docker-Distribution-API-Version` header and, for errors, the body shape
//! `{"errors":[{"code","message","detail"}]}`. Requests carry the system
//! admin's Basic credentials (authentication has its own tests).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use berth_core::{Access, AccessSettings, Registry};
use berth_meta::MetaStore;
use berth_storage::FsStore;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::Digest as _;
use tempfile::TempDir;
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

struct Api {
    app: Router,
    _dir: TempDir,
}

struct Resp {
    method: String,
    uri: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {:?}",
                self.method,
                self.uri,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The first error code of an error body.
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn what(&self) -> String {
        format!(
            "{} {} -> {} {}",
            self.method,
            self.uri,
            self.status,
            String::from_utf8_lossy(&self.body)
        )
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Resp {
        assert_eq!(self.status.as_u16(), status, "{}", self.what());
        self
    }

    /// An error with this status and spec code.
    #[track_caller]
    fn expect_error(&self, status: u16, code: &str) -> &Resp {
        self.expect(status);
        assert_eq!(self.code(), code, "{}", self.what());
        self
    }

    #[track_caller]
    fn expect_header(&self, name: &str, value: &str) -> &Resp {
        assert_eq!(self.header(name), Some(value), "{name} of {}", self.what());
        self
    }
}

const ADMIN_PASSWORD: &str = "router-test-admin";

/// `Authorization` of the system admin, sent on every request that does not
/// carry its own.
fn admin_basic() -> String {
    use base64::Engine as _;
    let creds = format!("admin:{ADMIN_PASSWORD}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    )
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    // The tests push to many projects: the admin's pushes create them.
    let access = Access::open(
        meta.clone(),
        AccessSettings {
            auto_create_projects: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    access.bootstrap_admin(Some(ADMIN_PASSWORD)).await.unwrap();
    let app = berth_api::router(
        berth_api::App {
            registry: Registry::new(meta, Arc::new(store)),
            access,
            auth: berth_api::AuthConfig::default(),
            settings: Default::default(),
        },
        None,
    );
    Api { app, _dir: dir }
}

/// Checks the spec's error body: `{"errors":[{"code","message","detail"}]}`.
fn check_error_body(resp: &Resp) {
    let what = resp.what();
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let v = resp.json();
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {what}"));
    assert!(!errors.is_empty(), "{what}");
    for e in errors {
        let code = e["code"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "code {code:?}: {what}"
        );
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message: {what}"
        );
        assert!(
            e.as_object().unwrap().contains_key("detail"),
            "detail: {what}"
        );
    }
}

impl Api {
    /// Sends a request as the admin unless it has an `Authorization`.
    async fn request(&self, mut req: Request<Body>) -> Resp {
        if !req.headers().contains_key("authorization") {
            req.headers_mut()
                .insert("authorization", admin_basic().parse().unwrap());
        }
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let resp = Resp {
            method,
            uri,
            status: parts.status,
            headers: parts.headers,
            body,
        };
        if resp.uri.starts_with("/v2") {
            assert_eq!(
                resp.header("docker-distribution-api-version"),
                Some("registry/2.0"),
                "{}",
                resp.what()
            );
        }
        if resp.uri.starts_with("/v2")
            && resp.method != "HEAD"
            && (resp.status.is_client_error() || resp.status.is_server_error())
        {
            check_error_body(&resp);
        }
        if resp.method == "HEAD" {
            assert!(resp.body.is_empty(), "HEAD has a body: {}", resp.what());
        }
        resp
    }

    /// Sends a request; a non-empty body gets a Content-Length unless the
    /// headers name one.
    async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            req = req.header("content-length", body.len().to_string());
        }
        self.request(req.body(Body::from(body.to_vec())).unwrap())
            .await
    }

    /// Sends a body as a stream of small parts without a Content-Length, as
    /// a chunked transfer arrives.
    async fn send_streamed(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let parts: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(5)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = Body::from_stream(futures::stream::iter(parts).boxed());
        self.request(req.body(body).unwrap()).await
    }

    async fn get(&self, uri: &str) -> Resp {
        self.send("GET", uri, &[], b"").await
    }

    async fn head(&self, uri: &str) -> Resp {
        self.send("HEAD", uri, &[], b"").await
    }

    async fn delete(&self, uri: &str) -> Resp {
        self.send("DELETE", uri, &[], b"").await
    }

    /// Pushes a blob monolithically; returns its sha256 digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        self.send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[("content-type", "application/octet-stream")],
            data,
        )
        .await
        .expect(201);
        d
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body,
        )
        .await
    }

    /// Opens an upload session; returns its Location.
    async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"")
            .await;
        r.expect(202);
        r.header("location").unwrap().to_string()
    }
}

/// `location` with a query parameter appended.
fn with_query(location: &str, query: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{query}")
}

// ---------------------------------------------------------------------------
// Manifest fixtures
// ---------------------------------------------------------------------------

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(data), "size": data.len() })
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OciManifest,
    DockerManifest,
    OciIndex,
    DockerList,
    Artifact,
}

const ALL_KINDS: [Kind; 5] = [
    Kind::OciManifest,
    Kind::DockerManifest,
    Kind::OciIndex,
    Kind::DockerList,
    Kind::Artifact,
];

/// Pushes what a manifest of `kind` references (blobs, child manifests) to
/// `repo`; returns its media type and body.
async fn prepare(api: &Api, repo: &str, kind: Kind) -> (&'static str, Vec<u8>) {
    match kind {
        Kind::OciManifest => {
            let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
            let layer = b"oci layer bytes";
            api.push_blob(repo, config).await;
            api.push_blob(repo, layer).await;
            let m = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, layer)],
                "annotations": { "org.opencontainers.image.title": "app" },
            });
            (OCI_MANIFEST, to_vec(&m))
        }
        Kind::DockerManifest => {
            let config = br#"{"architecture":"arm64","os":"linux"}"#;
            let layer = b"docker layer bytes";
            api.push_blob(repo, config).await;
            api.push_blob(repo, layer).await;
            let m = json!({
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": descriptor(DOCKER_CONFIG, config),
                "layers": [descriptor(DOCKER_LAYER, layer)],
            });
            (DOCKER_MANIFEST, to_vec(&m))
        }
        Kind::OciIndex | Kind::DockerList => {
            let (child_kind, index_type) = if kind == Kind::OciIndex {
                (Kind::OciManifest, OCI_INDEX)
            } else {
                (Kind::DockerManifest, DOCKER_LIST)
            };
            let (child_type, child) = Box::pin(prepare(api, repo, child_kind)).await;
            api.put_manifest(repo, &sha256(&child), child_type, &child)
                .await
                .expect(201);
            let mut entry = descriptor(child_type, &child);
            entry["platform"] = json!({ "architecture": "amd64", "os": "linux" });
            let m = json!({
                "schemaVersion": 2,
                "mediaType": index_type,
                "manifests": [entry],
            });
            (index_type, to_vec(&m))
        }
        Kind::Artifact => {
            let file = br#"{"spdxVersion":"SPDX-2.3"}"#;
            api.push_blob(repo, b"{}").await;
            api.push_blob(repo, file).await;
            let m = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.example.sbom.v1",
                "config": descriptor(OCI_EMPTY, b"{}"),
                "layers": [descriptor("application/spdx+json", file)],
            });
            (OCI_MANIFEST, to_vec(&m))
        }
    }
}

/// Pushes an OCI image to `repo` under `tag`; returns (body, digest).
async fn push_image(api: &Api, repo: &str, tag: &str) -> (Vec<u8>, String) {
    let (mt, body) = prepare(api, repo, Kind::OciManifest).await;
    api.put_manifest(repo, tag, mt, &body).await.expect(201);
    let d = sha256(&body);
    (body, d)
}

// ---------------------------------------------------------------------------
// Base, health
// ---------------------------------------------------------------------------

#[tokio::test]
async fn base_and_health_endpoints() {
    let api = api().await;
    // (method, path, status, body)
    let cases: [(&str, &str, u16, &[u8]); 7] = [
        ("GET", "/v2/", 200, b"{}"),
        ("HEAD", "/v2/", 200, b""),
        ("GET", "/v2", 200, b"{}"),
        ("HEAD", "/v2", 200, b""),
        ("GET", "/healthz", 200, b"ok"),
        ("GET", "/readyz", 200, b"ready"),
        // Built without a metrics handle.
        ("GET", "/metrics", 404, b""),
    ];
    for (method, path, status, body) in cases {
        let r = api.send(method, path, &[], b"").await;
        r.expect(status);
        assert_eq!(&r.body[..], body, "{}", r.what());
        if path.starts_with("/v2") && method == "GET" {
            r.expect_header("content-type", "application/json");
        }
    }
}

// ---------------------------------------------------------------------------
// Blob reads and deletes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn blob_head_get_and_ranges() {
    let api = api().await;
    let data: Vec<u8> = (0..100u8).collect();
    let d = api.push_blob("blobs/app", &data).await;
    let uri = format!("/v2/blobs/app/blobs/{d}");
    // (method, Range header, status, Content-Range, served slice)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        u16,
        Option<&'a str>,
        Option<(usize, usize)>,
    );
    let cases: [Case; 11] = [
        ("HEAD", None, 200, None, Some((0, 99))),
        ("GET", None, 200, None, Some((0, 99))),
        (
            "GET",
            Some("bytes=0-9"),
            206,
            Some("bytes 0-9/100"),
            Some((0, 9)),
        ),
        (
            "GET",
            Some("bytes=90-"),
            206,
            Some("bytes 90-99/100"),
            Some((90, 99)),
        ),
        (
            "GET",
            Some("bytes=-5"),
            206,
            Some("bytes 95-99/100"),
            Some((95, 99)),
        ),
        (
            "GET",
            Some("bytes=50-500"),
            206,
            Some("bytes 50-99/100"),
            Some((50, 99)),
        ),
        (
            "GET",
            Some("bytes=99-99"),
            206,
            Some("bytes 99-99/100"),
            Some((99, 99)),
        ),
        // A malformed Range is ignored (RFC 9110): the whole blob.
        ("GET", Some("items=0-9"), 200, None, Some((0, 99))),
        ("GET", Some("bytes=100-"), 416, Some("bytes */100"), None),
        ("GET", Some("bytes=500-600"), 416, Some("bytes */100"), None),
        ("GET", Some("bytes=-0"), 416, Some("bytes */100"), None),
    ];
    for (method, range, status, content_range, slice) in cases {
        let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        let r = api.send(method, &uri, &headers, b"").await;
        r.expect(status);
        assert_eq!(r.header("content-range"), content_range, "{}", r.what());
        let Some((start, end)) = slice else { continue };
        r.expect_header("docker-content-digest", &d)
            .expect_header("accept-ranges", "bytes")
            .expect_header("content-length", &(end - start + 1).to_string());
        if method == "GET" {
            assert_eq!(&r.body[..], &data[start..=end], "{}", r.what());
        }
    }
}

#[tokio::test]
async fn blob_reads_need_a_link() {
    let api = api().await;
    let d = api.push_blob("links/a", b"secret bytes").await;
    api.push_blob("links/b", b"other").await;
    let unknown = sha256(b"never pushed");
    // (path, status, code)
    let cases = [
        (format!("/v2/links/a/blobs/{d}"), 200, None),
        // The digest exists, but not in this repository.
        (format!("/v2/links/b/blobs/{d}"), 404, Some("BLOB_UNKNOWN")),
        (
            format!("/v2/links/none/blobs/{d}"),
            404,
            Some("BLOB_UNKNOWN"),
        ),
        (
            format!("/v2/links/a/blobs/{unknown}"),
            404,
            Some("BLOB_UNKNOWN"),
        ),
    ];
    for (path, status, code) in cases {
        api.head(&path).await.expect(status);
        let r = api.get(&path).await;
        match code {
            Some(code) => r.expect_error(status, code),
            None => r.expect(status),
        };
    }
}

#[tokio::test]
async fn blob_delete() {
    let api = api().await;
    let d = api.push_blob("del/a", b"to delete").await;
    api.push_blob("del/b", b"to delete").await;
    let uri = format!("/v2/del/a/blobs/{d}");
    api.delete(&uri).await.expect(202);
    api.get(&uri).await.expect_error(404, "BLOB_UNKNOWN");
    api.head(&uri).await.expect(404);
    api.delete(&uri).await.expect_error(404, "BLOB_UNKNOWN");
    // Other repositories keep their link.
    let r = api.get(&format!("/v2/del/b/blobs/{d}")).await;
    r.expect(200);
    assert_eq!(&r.body[..], b"to delete");
    // Deleting an unknown blob is BLOB_UNKNOWN too.
    api.delete(&format!("/v2/del/a/blobs/{}", sha256(b"x")))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

// ---------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------

/// The headers of a session response: Location, Range, Docker-Upload-UUID.
#[track_caller]
fn check_session(r: &Resp, repo: &str, range: &str) -> String {
    let location = r
        .header("location")
        .unwrap_or_else(|| panic!("{}", r.what()));
    let prefix = format!("/v2/{repo}/blobs/uploads/");
    let id = location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("Location {location} not under {prefix}"));
    let id = id.split('?').next().unwrap();
    assert!(!id.is_empty(), "{}", r.what());
    r.expect_header("docker-upload-uuid", id)
        .expect_header("range", range);
    location.to_string()
}

#[track_caller]
fn check_blob_created(r: &Resp, repo: &str, digest: &str) {
    r.expect(201)
        .expect_header("location", &format!("/v2/{repo}/blobs/{digest}"))
        .expect_header("docker-content-digest", digest);
}

#[tokio::test]
async fn upload_post_starts_a_session() {
    let api = api().await;
    for repo in ["post", "team/app", "a/b/c"] {
        let r = api
            .send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"")
            .await;
        r.expect(202);
        let location = check_session(&r, repo, "0-0");
        let s = api.get(&location).await;
        s.expect(204);
        check_session(&s, repo, "0-0");
    }
}

#[tokio::test]
async fn monolithic_post_with_digest() {
    let api = api().await;
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    // (data, digest used, status, code)
    let cases: Vec<(&[u8], String, u16, Option<&str>)> = vec![
        (b"monolithic", sha256(b"monolithic"), 201, None),
        (b"", sha256(b""), 201, None),
        (&big, sha256(&big), 201, None),
        (
            b"sha512 monolithic",
            sha512(b"sha512 monolithic"),
            201,
            None,
        ),
        (
            b"actual bytes",
            sha256(b"claimed bytes"),
            400,
            Some("DIGEST_INVALID"),
        ),
        (
            b"actual bytes",
            sha512(b"claimed bytes"),
            400,
            Some("DIGEST_INVALID"),
        ),
        (b"x", "sha256:abc".into(), 400, Some("DIGEST_INVALID")),
        (
            b"x",
            "md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            400,
            Some("DIGEST_INVALID"),
        ),
    ];
    for (data, digest, status, code) in cases {
        let r = api
            .send(
                "POST",
                &format!("/v2/mono/app/blobs/uploads/?digest={digest}"),
                &[],
                data,
            )
            .await;
        match code {
            None => {
                check_blob_created(&r, "mono/app", &digest);
                let got = api.get(&format!("/v2/mono/app/blobs/{digest}")).await;
                got.expect(200)
                    .expect_header("docker-content-digest", &digest)
                    .expect_header("content-length", &data.len().to_string());
                assert!(got.body == data, "{digest}: served bytes differ");
            }
            Some(code) => {
                r.expect_error(status, code);
                // Nothing became visible under either digest.
                if digest.starts_with("sha") && digest.len() > 70 {
                    api.head(&format!("/v2/mono/app/blobs/{digest}"))
                        .await
                        .expect(404);
                }
                api.head(&format!("/v2/mono/app/blobs/{}", sha256(data)))
                    .await
                    .expect(404);
            }
        }
    }
}

#[tokio::test]
async fn cross_repository_mount() {
    #[derive(Debug)]
    enum Source {
        /// `from` has the blob.
        Has,
        /// `from` exists but never had the blob.
        Lacks,
        /// `from` had the blob and deleted it.
        Deleted,
        /// `from` names no repository.
        Unknown,
        /// No `from` at all.
        Missing,
        /// `from` is not a valid name.
        Malformed,
    }
    let cases = [
        (Source::Has, 201),
        (Source::Lacks, 202),
        (Source::Deleted, 202),
        (Source::Unknown, 202),
        (Source::Missing, 202),
        (Source::Malformed, 202),
    ];
    for (source, status) in cases {
        let api = api().await;
        let data = b"shared layer";
        let d = sha256(data);
        api.push_blob("mount/other", data).await;
        let from = match source {
            Source::Has => {
                api.push_blob("mount/src", data).await;
                "&from=mount/src"
            }
            Source::Lacks => {
                api.push_blob("mount/src", b"something else").await;
                "&from=mount/src"
            }
            Source::Deleted => {
                api.push_blob("mount/src", data).await;
                api.delete(&format!("/v2/mount/src/blobs/{d}"))
                    .await
                    .expect(202);
                "&from=mount/src"
            }
            Source::Unknown => "&from=mount/nowhere",
            Source::Missing => "",
            Source::Malformed => "&from=Mount/..",
        };
        let dst_blob = format!("/v2/mount/dst/blobs/{d}");
        // Knowing the digest grants nothing before the mount.
        api.get(&dst_blob).await.expect_error(404, "BLOB_UNKNOWN");
        let r = api
            .send(
                "POST",
                &format!("/v2/mount/dst/blobs/uploads/?mount={d}{from}"),
                &[],
                b"",
            )
            .await;
        r.expect(status);
        if status == 201 {
            check_blob_created(&r, "mount/dst", &d);
            let got = api.get(&dst_blob).await;
            got.expect(200);
            assert_eq!(&got.body[..], data, "{source:?}");
            continue;
        }
        // The fallback: a session to upload into, and still no access.
        let location = check_session(&r, "mount/dst", "0-0");
        api.get(&dst_blob).await.expect_error(404, "BLOB_UNKNOWN");
        let done = api
            .send(
                "PUT",
                &with_query(&location, &format!("digest={d}")),
                &[],
                data,
            )
            .await;
        check_blob_created(&done, "mount/dst", &d);
        api.get(&dst_blob).await.expect(200);
    }
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// PATCH with Content-Range and Content-Length.
    Ranged(&'static [u8]),
    /// PATCH streamed: no Content-Range, no Content-Length.
    Streamed(&'static [u8]),
}

/// A whole chunked upload: POST, PATCHes (checking the Range after each),
/// a status GET, the PUT (with an optional last chunk), then reads.
async fn check_chunked_upload(
    name: &str,
    chunks: &[Chunk],
    last: &'static [u8],
    digest_of: fn(&[u8]) -> String,
) {
    let api = api().await;
    let repo = "chunked/app";
    let mut location = api.start_upload(repo).await;
    let mut whole = Vec::new();
    for chunk in chunks {
        let start = whole.len();
        let r = match *chunk {
            Chunk::Ranged(data) => {
                whole.extend_from_slice(data);
                let range = format!("{start}-{}", whole.len() - 1);
                api.send(
                    "PATCH",
                    &location,
                    &[
                        ("content-range", &range),
                        ("content-type", "application/octet-stream"),
                    ],
                    data,
                )
                .await
            }
            Chunk::Streamed(data) => {
                whole.extend_from_slice(data);
                api.send_streamed("PATCH", &location, &[], data).await
            }
        };
        r.expect(202);
        let range = format!("0-{}", whole.len().saturating_sub(1));
        location = check_session(&r, repo, &range);
        let s = api.get(&location).await;
        s.expect(204);
        check_session(&s, repo, &range);
    }
    whole.extend_from_slice(last);
    let d = digest_of(&whole);
    let r = api
        .send(
            "PUT",
            &with_query(&location, &format!("digest={d}")),
            &[],
            last,
        )
        .await;
    check_blob_created(&r, repo, &d);
    let got = api.get(&format!("/v2/{repo}/blobs/{d}")).await;
    got.expect(200)
        .expect_header("docker-content-digest", &d)
        .expect_header("content-length", &whole.len().to_string());
    assert!(got.body == whole, "{name}: served bytes differ");
    // The session is closed.
    api.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn chunked_uploads() {
    use Chunk::*;
    type Case = (&'static str, Vec<Chunk>, &'static [u8], fn(&[u8]) -> String);
    let cases: Vec<Case> = vec![
        (
            "ranged chunks",
            vec![Ranged(b"hello "), Ranged(b"world")],
            b"",
            sha256,
        ),
        (
            "streamed chunks",
            vec![Streamed(b"hello "), Streamed(b"world")],
            b"",
            sha256,
        ),
        (
            "mixed chunks",
            vec![Streamed(b"a"), Ranged(b"bc"), Streamed(b"def")],
            b"",
            sha256,
        ),
        (
            "last chunk in the PUT",
            vec![Ranged(b"hello ")],
            b"world",
            sha256,
        ),
        ("whole blob in the PUT", vec![], b"hello world", sha256),
        ("empty blob", vec![], b"", sha256),
        (
            "one byte chunks",
            vec![Ranged(b"a"), Ranged(b"b"), Ranged(b"c")],
            b"",
            sha256,
        ),
        (
            "sha512 chunked",
            vec![Ranged(b"hello "), Streamed(b"wor")],
            b"ld",
            sha512,
        ),
        (
            "sha512 without last chunk",
            vec![Ranged(b"x"), Ranged(b"yz")],
            b"",
            sha512,
        ),
    ];
    for (name, chunks, last, digest_of) in cases {
        check_chunked_upload(name, &chunks, last, digest_of).await;
    }
}

#[tokio::test]
async fn out_of_order_patch_is_416_with_the_current_range() {
    // (bytes already uploaded, Content-Range of the next chunk)
    let cases: [(&[u8], &str); 5] = [
        (b"01234", "10-14"),
        (b"01234", "0-4"),
        (b"01234", "4-8"),
        (b"01234", "6-10"),
        (b"", "5-9"),
    ];
    for (done, bad) in cases {
        let api = api().await;
        let mut location = api.start_upload("order/app").await;
        if !done.is_empty() {
            let range = format!("0-{}", done.len() - 1);
            let r = api
                .send("PATCH", &location, &[("content-range", &range)], done)
                .await;
            location = check_session(r.expect(202), "order/app", &range);
        }
        let current = format!("0-{}", done.len().saturating_sub(1));
        let r = api
            .send("PATCH", &location, &[("content-range", bad)], b"56789")
            .await;
        r.expect_error(416, "BLOB_UPLOAD_INVALID")
            .expect_header("range", &current);
        // Nothing was written: the status is unchanged, and the right
        // chunk still goes in.
        let s = api.get(&location).await;
        check_session(s.expect(204), "order/app", &current);
        let next = format!("{}-{}", done.len(), done.len() + 4);
        let r = api
            .send("PATCH", &location, &[("content-range", &next)], b"56789")
            .await;
        r.expect(202);
        let whole = [done, b"56789"].concat();
        let d = sha256(&whole);
        let r = api
            .send(
                "PUT",
                &with_query(&location, &format!("digest={d}")),
                &[],
                b"",
            )
            .await;
        check_blob_created(&r, "order/app", &d);
    }
}

#[tokio::test]
async fn malformed_chunk_headers() {
    // (headers, status, code)
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers, u16, &str); 3] = [
        (&[("content-range", "abc")], 400, "BLOB_UPLOAD_INVALID"),
        (&[("content-range", "9-5")], 400, "BLOB_UPLOAD_INVALID"),
        // Content-Range covers 5 bytes, Content-Length says 3.
        (
            &[("content-range", "0-4"), ("content-length", "3")],
            400,
            "SIZE_INVALID",
        ),
    ];
    for (headers, status, code) in cases {
        let api = api().await;
        let location = api.start_upload("malformed/app").await;
        let body: &[u8] = if headers.iter().any(|(k, _)| *k == "content-length") {
            b"abc"
        } else {
            b"abcde"
        };
        api.send("PATCH", &location, headers, body)
            .await
            .expect_error(status, code);
        let s = api.get(&location).await;
        check_session(s.expect(204), "malformed/app", "0-0");
    }
}

#[tokio::test]
async fn put_digest_problems_keep_the_session() {
    // (digest query, status, code)
    let cases: [(Option<String>, u16, &str); 5] = [
        (Some(sha256(b"not the content")), 400, "DIGEST_INVALID"),
        (Some(sha512(b"not the content")), 400, "DIGEST_INVALID"),
        (Some("sha256:abc".into()), 400, "DIGEST_INVALID"),
        (Some("nonsense".into()), 400, "DIGEST_INVALID"),
        (None, 400, "DIGEST_INVALID"),
    ];
    for (digest, status, code) in cases {
        let api = api().await;
        let location = api.start_upload("finish/app").await;
        api.send("PATCH", &location, &[("content-range", "0-2")], b"abc")
            .await
            .expect(202);
        let uri = match &digest {
            Some(d) => with_query(&location, &format!("digest={d}")),
            None => location.clone(),
        };
        api.send("PUT", &uri, &[], b"")
            .await
            .expect_error(status, code);
        if let Some(d) = digest.filter(|d| d.starts_with("sha") && d.len() > 70) {
            api.head(&format!("/v2/finish/app/blobs/{d}"))
                .await
                .expect(404);
        }
        // The session is still usable.
        let s = api.get(&location).await;
        check_session(s.expect(204), "finish/app", "0-2");
        let d = sha256(b"abc");
        let r = api
            .send(
                "PUT",
                &with_query(&location, &format!("digest={d}")),
                &[],
                b"",
            )
            .await;
        check_blob_created(&r, "finish/app", &d);
    }
}

/// A finishing PUT that fails (wrong digest) leaves the session as it was
/// before the request, like a failed PATCH: its last chunk is not kept, so
/// the client can retry the PUT with the right bytes.
#[tokio::test]
async fn failed_put_with_last_chunk_appends_nothing() {
    // (last chunk of the failing PUT, digest it claims)
    let cases: [(&[u8], String); 3] = [
        (b"XYZ", sha256(b"abcdef")),
        (b"def", sha256(b"abcdefg")),
        (b"def", sha512(b"abcdefg")),
    ];
    for (chunk, wrong) in cases {
        let api = api().await;
        let location = api.start_upload("retry/app").await;
        api.send("PATCH", &location, &[("content-range", "0-2")], b"abc")
            .await
            .expect(202);
        api.send(
            "PUT",
            &with_query(&location, &format!("digest={wrong}")),
            &[],
            chunk,
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
        let s = api.get(&location).await;
        check_session(s.expect(204), "retry/app", "0-2");
        // The retry with the right last chunk succeeds.
        let d = sha256(b"abcdef");
        let r = api
            .send(
                "PUT",
                &with_query(&location, &format!("digest={d}")),
                &[],
                b"def",
            )
            .await;
        check_blob_created(&r, "retry/app", &d);
    }
}

#[tokio::test]
async fn upload_cancel_and_unknown_sessions() {
    let api = api().await;
    let location = api.start_upload("cancel/app").await;
    api.send("PATCH", &location, &[], b"partial")
        .await
        .expect(202);
    let r = api.delete(&location).await;
    r.expect(204);
    let id = location.rsplit('/').next().unwrap().to_string();
    let other_repo = format!("/v2/cancel/other/blobs/uploads/{id}");
    let live = api.start_upload("cancel/app").await;
    let live_id = live.rsplit('/').next().unwrap();
    let d = sha256(b"partial");
    // (method, uri, body) after the cancel, or on sessions that never were.
    let cases: Vec<(&str, String, &[u8])> = vec![
        ("GET", location.clone(), b""),
        ("PATCH", location.clone(), b"more"),
        ("PUT", with_query(&location, &format!("digest={d}")), b""),
        ("DELETE", location.clone(), b""),
        ("GET", other_repo.clone(), b""),
        // A live session is not reachable through another repository.
        (
            "GET",
            format!("/v2/cancel/other/blobs/uploads/{live_id}"),
            b"",
        ),
        (
            "PATCH",
            format!("/v2/cancel/other/blobs/uploads/{live_id}"),
            b"x",
        ),
        (
            "DELETE",
            format!("/v2/cancel/other/blobs/uploads/{live_id}"),
            b"",
        ),
        (
            "GET",
            "/v2/cancel/app/blobs/uploads/00000000-0000-0000-0000-000000000000".into(),
            b"",
        ),
        ("GET", "/v2/cancel/app/blobs/uploads/not_an_id".into(), b""),
        ("GET", "/v2/cancel/app/blobs/uploads/..".into(), b""),
    ];
    for (method, uri, body) in cases {
        api.send(method, &uri, &[], body)
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
    api.head(&format!("/v2/cancel/app/blobs/{d}"))
        .await
        .expect(404);
    // The live session survived all of that.
    let s = api.get(&live).await;
    check_session(s.expect(204), "cancel/app", "0-0");
}

// ---------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------

async fn check_manifest_lifecycle(kind: Kind) {
    let api = api().await;
    let repo = "life/app";
    let (mt, body) = prepare(&api, repo, kind).await;
    let d = sha256(&body);
    let by_tag = format!("/v2/{repo}/manifests/v1");
    let by_digest = format!("/v2/{repo}/manifests/{d}");

    let r = api.put_manifest(repo, "v1", mt, &body).await;
    r.expect(201)
        .expect_header("location", &by_digest)
        .expect_header("docker-content-digest", &d);
    assert_eq!(r.header("oci-subject"), None, "{kind:?}");
    for uri in [&by_tag, &by_digest] {
        for method in ["GET", "HEAD"] {
            let r = api.send(method, uri, &[], b"").await;
            r.expect(200)
                .expect_header("content-type", mt)
                .expect_header("docker-content-digest", &d)
                .expect_header("content-length", &body.len().to_string());
            if method == "GET" {
                assert!(r.body == body, "{kind:?}: {method} {uri} body differs");
            }
        }
    }
    // Pushing again, by digest or under a second tag, is idempotent.
    api.put_manifest(repo, &d, mt, &body)
        .await
        .expect(201)
        .expect_header("docker-content-digest", &d);
    api.put_manifest(repo, "v2", mt, &body).await.expect(201);
    let tags = api.get(&format!("/v2/{repo}/tags/list")).await;
    assert_eq!(
        tags.expect(200).json()["tags"],
        json!(["v1", "v2"]),
        "{kind:?}"
    );

    // DELETE by tag removes only the tag.
    api.delete(&by_tag).await.expect(202);
    api.get(&by_tag).await.expect_error(404, "MANIFEST_UNKNOWN");
    api.head(&by_tag).await.expect(404);
    api.get(&by_digest).await.expect(200);
    api.get(&format!("/v2/{repo}/manifests/v2"))
        .await
        .expect(200);
    api.delete(&by_tag)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");

    // DELETE by digest removes the manifest and its remaining tags.
    api.delete(&by_digest).await.expect(202);
    api.get(&by_digest)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    api.head(&by_digest).await.expect(404);
    api.get(&format!("/v2/{repo}/manifests/v2"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    api.delete(&by_digest)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    let tags = api.get(&format!("/v2/{repo}/tags/list")).await;
    assert_eq!(tags.expect(200).json()["tags"], json!([]), "{kind:?}");
}

#[tokio::test]
async fn manifest_lifecycle_for_every_type() {
    for kind in ALL_KINDS {
        check_manifest_lifecycle(kind).await;
    }
}

#[tokio::test]
async fn manifest_content_type_is_echoed() {
    // (kind, Content-Type sent, drop the body's mediaType, expected status)
    let cases: [(Kind, Option<&str>, bool, u16); 9] = [
        (Kind::OciManifest, Some(OCI_MANIFEST), false, 201),
        (Kind::OciManifest, None, false, 201),
        (Kind::OciManifest, Some("application/json"), false, 201),
        // The type may come from the header alone (OCI only).
        (Kind::OciManifest, Some(OCI_MANIFEST), true, 201),
        (Kind::OciIndex, Some(OCI_INDEX), true, 201),
        (Kind::DockerManifest, None, false, 201),
        // Disagreement between header and body.
        (Kind::OciManifest, Some(DOCKER_MANIFEST), false, 400),
        (Kind::DockerManifest, Some(OCI_MANIFEST), false, 400),
        // No type anywhere.
        (Kind::OciManifest, None, true, 400),
    ];
    for (kind, content_type, strip, status) in cases {
        let api = api().await;
        let (mt, body) = prepare(&api, "echo/app", kind).await;
        let body = if strip {
            let mut v: Value = serde_json::from_slice(&body).unwrap();
            v.as_object_mut().unwrap().remove("mediaType");
            to_vec(&v)
        } else {
            body
        };
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| ("content-type", c))
            .into_iter()
            .collect();
        let r = api
            .send("PUT", "/v2/echo/app/manifests/v1", &headers, &body)
            .await;
        let what = format!("{kind:?} {content_type:?} strip={strip}");
        if status != 201 {
            r.expect_error(status, "MANIFEST_INVALID");
            api.get("/v2/echo/app/manifests/v1")
                .await
                .expect_error(404, "MANIFEST_UNKNOWN");
            continue;
        }
        r.expect(201);
        let got = api.get("/v2/echo/app/manifests/v1").await;
        got.expect(200).expect_header("content-type", mt);
        assert!(got.body == body, "{what}: body differs");
    }
}

#[tokio::test]
async fn manifest_content_negotiation() {
    let api = api().await;
    let mut stored = Vec::new();
    for (kind, tag) in [
        (Kind::OciManifest, "oci"),
        (Kind::DockerManifest, "docker"),
        (Kind::OciIndex, "index"),
    ] {
        let (mt, body) = prepare(&api, "accept/app", kind).await;
        api.put_manifest("accept/app", tag, mt, &body)
            .await
            .expect(201);
        stored.push((tag, mt));
    }
    let all_docker = format!("{DOCKER_MANIFEST}, {DOCKER_LIST}");
    let all_oci = format!("{OCI_MANIFEST}, {OCI_INDEX}");
    let weighted = format!("{DOCKER_MANIFEST};q=0.5, {OCI_MANIFEST};q=0.9");
    // (tag, Accept header values, status)
    let cases: Vec<(&str, Vec<&str>, u16)> = vec![
        ("oci", vec![], 200),
        ("oci", vec!["*/*"], 200),
        ("oci", vec![OCI_MANIFEST], 200),
        ("oci", vec![&all_oci], 200),
        ("oci", vec![&weighted], 200),
        ("oci", vec![DOCKER_MANIFEST, OCI_MANIFEST], 200),
        ("oci", vec![DOCKER_MANIFEST], 404),
        ("oci", vec![&all_docker], 404),
        ("oci", vec![OCI_INDEX], 404),
        ("docker", vec![DOCKER_MANIFEST], 200),
        ("docker", vec![&all_oci], 404),
        ("docker", vec!["*/*"], 200),
        ("index", vec![OCI_MANIFEST], 404),
        ("index", vec![&all_oci], 200),
        ("index", vec![], 200),
    ];
    for (tag, accept, status) in cases {
        let uri = format!("/v2/accept/app/manifests/{tag}");
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        for method in ["GET", "HEAD"] {
            let r = api.send(method, &uri, &headers, b"").await;
            r.expect(status);
            if status == 200 {
                let mt = stored.iter().find(|(t, _)| *t == tag).unwrap().1;
                r.expect_header("content-type", mt);
            } else if method == "GET" {
                r.expect_error(404, "MANIFEST_UNKNOWN");
            }
        }
    }
}

#[tokio::test]
async fn manifests_that_are_refused() {
    #[derive(Debug, Clone, Copy)]
    enum Bad {
        TooLarge,
        UnknownLayer,
        LayerInOtherRepo,
        WrongLayerSize,
        WrongConfigSize,
        IndexMissingChild,
        IndexWrongChildSize,
        NotJson,
        SchemaVersion1,
        DigestMismatch,
    }
    let cases = [
        (Bad::TooLarge, 413, "MANIFEST_INVALID"),
        (Bad::UnknownLayer, 400, "MANIFEST_BLOB_UNKNOWN"),
        (Bad::LayerInOtherRepo, 400, "MANIFEST_BLOB_UNKNOWN"),
        (Bad::WrongLayerSize, 400, "MANIFEST_INVALID"),
        (Bad::WrongConfigSize, 400, "MANIFEST_INVALID"),
        (Bad::IndexMissingChild, 400, "MANIFEST_BLOB_UNKNOWN"),
        (Bad::IndexWrongChildSize, 400, "MANIFEST_INVALID"),
        (Bad::NotJson, 400, "MANIFEST_INVALID"),
        (Bad::SchemaVersion1, 400, "MANIFEST_INVALID"),
        (Bad::DigestMismatch, 400, "DIGEST_INVALID"),
    ];
    let repo = "refuse/app";
    for (bad, status, code) in cases {
        let api = api().await;
        let (_, good) = prepare(&api, repo, Kind::OciManifest).await;
        let mut m: Value = serde_json::from_slice(&good).unwrap();
        let mut media_type = OCI_MANIFEST;
        let mut reference = "v1".to_string();
        let body = match bad {
            Bad::TooLarge => {
                let mut b = good.clone();
                b.resize(MANIFEST_LIMIT + 1, b' ');
                b
            }
            Bad::UnknownLayer => {
                m["layers"][0] = descriptor(OCI_LAYER, b"never pushed");
                to_vec(&m)
            }
            Bad::LayerInOtherRepo => {
                let elsewhere = b"only in another repository";
                api.push_blob("refuse/other", elsewhere).await;
                m["layers"][0] = descriptor(OCI_LAYER, elsewhere);
                to_vec(&m)
            }
            Bad::WrongLayerSize => {
                m["layers"][0]["size"] = json!(m["layers"][0]["size"].as_u64().unwrap() + 1);
                to_vec(&m)
            }
            Bad::WrongConfigSize => {
                m["config"]["size"] = json!(1);
                to_vec(&m)
            }
            Bad::IndexMissingChild | Bad::IndexWrongChildSize => {
                media_type = OCI_INDEX;
                let mut entry = descriptor(OCI_MANIFEST, &good);
                if matches!(bad, Bad::IndexWrongChildSize) {
                    // The child is there, but with another size.
                    api.put_manifest(repo, &sha256(&good), OCI_MANIFEST, &good)
                        .await
                        .expect(201);
                    entry["size"] = json!(good.len() - 1);
                }
                to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [entry],
                }))
            }
            Bad::NotJson => b"{not json".to_vec(),
            Bad::SchemaVersion1 => {
                m["schemaVersion"] = json!(1);
                to_vec(&m)
            }
            Bad::DigestMismatch => {
                reference = sha256(b"some other manifest");
                good.clone()
            }
        };
        let r = api.put_manifest(repo, &reference, media_type, &body).await;
        r.expect_error(status, code);
        assert_eq!(r.header("docker-content-digest"), None, "{bad:?}");
        // Nothing was stored, under the tag or the digest.
        api.get(&format!("/v2/{repo}/manifests/{reference}"))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        api.get(&format!("/v2/{repo}/manifests/{}", sha256(&body)))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
}

#[tokio::test]
async fn manifest_size_limit_is_inclusive() {
    let api = api().await;
    let (mt, good) = prepare(&api, "limit/app", Kind::OciManifest).await;
    // Trailing whitespace keeps the JSON valid.
    let mut body = good.clone();
    body.resize(MANIFEST_LIMIT, b' ');
    let r = api.put_manifest("limit/app", "max", mt, &body).await;
    r.expect(201)
        .expect_header("docker-content-digest", &sha256(&body));
    let got = api.get("/v2/limit/app/manifests/max").await;
    got.expect(200)
        .expect_header("content-length", &MANIFEST_LIMIT.to_string());
    assert!(got.body == body);
    // One byte more is refused, also without a Content-Length.
    body.push(b' ');
    api.put_manifest("limit/app", "over", mt, &body)
        .await
        .expect_error(413, "MANIFEST_INVALID");
    api.send_streamed(
        "PUT",
        "/v2/limit/app/manifests/over",
        &[("content-type", mt)],
        &body,
    )
    .await
    .expect_error(413, "MANIFEST_INVALID");
    api.get("/v2/limit/app/manifests/over")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn put_moves_a_tag() {
    let api = api().await;
    let (first, d1) = push_image(&api, "move/app", "latest").await;
    // A second image under the same tag.
    let layer = b"a different layer";
    api.push_blob("move/app", layer).await;
    let mut m: Value = serde_json::from_slice(&first).unwrap();
    m["layers"][0] = descriptor(OCI_LAYER, layer);
    let second = to_vec(&m);
    let d2 = sha256(&second);
    api.put_manifest("move/app", "latest", OCI_MANIFEST, &second)
        .await
        .expect(201);
    let r = api.get("/v2/move/app/manifests/latest").await;
    r.expect(200).expect_header("docker-content-digest", &d2);
    assert!(r.body == second);
    api.get(&format!("/v2/move/app/manifests/{d1}"))
        .await
        .expect(200);
    let tags = api.get("/v2/move/app/tags/list").await;
    assert_eq!(tags.json()["tags"], json!(["latest"]));
}

#[tokio::test]
async fn manifests_of_unknown_things() {
    let api = api().await;
    push_image(&api, "unknown/app", "v1").await;
    let d = sha256(b"no such manifest");
    for uri in [
        "/v2/unknown/app/manifests/v2".to_string(),
        format!("/v2/unknown/app/manifests/{d}"),
        "/v2/unknown/none/manifests/v1".to_string(),
    ] {
        api.get(&uri).await.expect(404);
        api.head(&uri).await.expect(404);
        api.delete(&uri).await.expect(404);
    }
    api.get("/v2/unknown/app/manifests/v2")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    api.delete(&format!("/v2/unknown/app/manifests/{d}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // A manifest is per repository.
    api.get("/v2/unknown/other/manifests/v1").await.expect(404);
    let (_, d1) = push_image(&api, "unknown/app", "v3").await;
    for method in ["GET", "HEAD", "DELETE"] {
        api.send(
            method,
            &format!("/v2/unknown/other/manifests/{d1}"),
            &[],
            b"",
        )
        .await
        .expect(404);
    }
    api.get(&format!("/v2/unknown/app/manifests/{d1}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn manifests_pushed_by_sha512_digest() {
    let api = api().await;
    let repo = "sha512/app";
    let (mt, child) = prepare(&api, repo, Kind::OciManifest).await;
    let d = sha512(&child);
    let r = api.put_manifest(repo, &d, mt, &child).await;
    r.expect(201)
        .expect_header("location", &format!("/v2/{repo}/manifests/{d}"))
        .expect_header("docker-content-digest", &d);
    for method in ["GET", "HEAD"] {
        let r = api
            .send(method, &format!("/v2/{repo}/manifests/{d}"), &[], b"")
            .await;
        r.expect(200)
            .expect_header("docker-content-digest", &d)
            .expect_header("content-type", mt)
            .expect_header("content-length", &child.len().to_string());
    }
    // Stored under its sha512 digest only.
    api.get(&format!("/v2/{repo}/manifests/{}", sha256(&child)))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // An index may name the child by that digest.
    let index = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": mt, "digest": d, "size": child.len() }],
    }));
    api.put_manifest(repo, "multi", OCI_INDEX, &index)
        .await
        .expect(201);
    // A wrong sha512 reference is refused.
    api.put_manifest(repo, &sha512(b"other"), mt, &child)
        .await
        .expect_error(400, "DIGEST_INVALID");
    api.delete(&format!("/v2/{repo}/manifests/{d}"))
        .await
        .expect(202);
    api.get(&format!("/v2/{repo}/manifests/{d}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

// ---------------------------------------------------------------------------
// Tags and catalog
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tags_list_pagination() {
    let api = api().await;
    let (mt, body) = prepare(&api, "team/app", Kind::OciManifest).await;
    for tag in ["d", "b", "a", "c"] {
        api.put_manifest("team/app", tag, mt, &body)
            .await
            .expect(201);
    }
    // (query, tags, Link)
    let cases: [(&str, &[&str], Option<&str>); 8] = [
        ("", &["a", "b", "c", "d"], None),
        (
            "?n=2",
            &["a", "b"],
            Some(r#"</v2/team/app/tags/list?n=2&last=b>; rel="next""#),
        ),
        ("?n=2&last=b", &["c", "d"], None),
        (
            "?n=1&last=a",
            &["b"],
            Some(r#"</v2/team/app/tags/list?n=1&last=b>; rel="next""#),
        ),
        ("?n=3&last=a", &["b", "c", "d"], None),
        ("?last=b", &["c", "d"], None),
        ("?n=10", &["a", "b", "c", "d"], None),
        ("?n=2&last=d", &[], None),
    ];
    for (query, tags, link) in cases {
        let r = api.get(&format!("/v2/team/app/tags/list{query}")).await;
        r.expect(200)
            .expect_header("content-type", "application/json");
        assert_eq!(
            r.json(),
            json!({ "name": "team/app", "tags": tags }),
            "{query}"
        );
        assert_eq!(r.header("link"), link, "{query}");
    }
    // Following the Link walks every tag once.
    let mut uri = "/v2/team/app/tags/list?n=1".to_string();
    let mut seen = Vec::new();
    loop {
        let r = api.get(&uri).await;
        r.expect(200);
        for t in r.json()["tags"].as_array().unwrap() {
            seen.push(t.as_str().unwrap().to_string());
        }
        let Some(link) = r.header("link") else { break };
        uri = link
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .unwrap()
            .0
            .to_string();
    }
    assert_eq!(seen, ["a", "b", "c", "d"]);

    api.get("/v2/team/unknown/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    api.get("/v2/team/app/tags/list?n=-1").await.expect(400);
    api.get("/v2/team/app/tags/list?n=many").await.expect(400);
}

#[tokio::test]
async fn catalog_pagination() {
    let api = api().await;
    for repo in ["b", "a", "c/d", "c"] {
        push_image(&api, repo, "v1").await;
    }
    // A repository with blobs or an upload session but no manifest is not listed.
    api.push_blob("blobs-only", b"x").await;
    // (query, repositories, Link)
    let cases: [(&str, &[&str], Option<&str>); 5] = [
        ("", &["a", "b", "c", "c/d"], None),
        (
            "?n=2",
            &["a", "b"],
            Some(r#"</v2/_catalog?n=2&last=b>; rel="next""#),
        ),
        ("?n=2&last=b", &["c", "c/d"], None),
        (
            "?n=1&last=b",
            &["c"],
            Some(r#"</v2/_catalog?n=1&last=c>; rel="next""#),
        ),
        ("?last=c/d", &[], None),
    ];
    for (query, repos, link) in cases {
        let r = api.get(&format!("/v2/_catalog{query}")).await;
        r.expect(200)
            .expect_header("content-type", "application/json");
        assert_eq!(r.json(), json!({ "repositories": repos }), "{query}");
        assert_eq!(r.header("link"), link, "{query}");
    }
    api.get("/v2/_catalog?n=-2").await.expect(400);
}

// ---------------------------------------------------------------------------
// Referrers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn referrers_and_subject() {
    let api = api().await;
    let repo = "refs/app";
    let (subject_body, subject) = push_image(&api, repo, "v1").await;
    api.push_blob(repo, b"{}").await;
    let sig = b"signature bytes";
    api.push_blob(repo, sig).await;
    let subject_desc = descriptor(OCI_MANIFEST, &subject_body);

    // (artifactType, annotations, config media type)
    let artifacts = [
        (
            Some("application/vnd.example.signature"),
            Some(json!({ "org.example.signer": "ci" })),
            OCI_EMPTY,
        ),
        (Some("application/vnd.example.sbom"), None, OCI_EMPTY),
        // No artifactType: the config's media type stands in.
        (None, None, "application/vnd.example.config.v1+json"),
    ];
    let mut pushed: Vec<(String, usize, String, Option<Value>)> = Vec::new();
    for (i, (artifact_type, annotations, config_type)) in artifacts.iter().enumerate() {
        let config: &[u8] = if *config_type == OCI_EMPTY {
            b"{}"
        } else {
            br#"{"k":"v"}"#
        };
        api.push_blob(repo, config).await;
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config_type, config),
            "layers": [descriptor("application/octet-stream", sig)],
            "subject": subject_desc,
        });
        if let Some(a) = artifact_type {
            m["artifactType"] = json!(a);
        }
        if let Some(a) = annotations {
            m["annotations"] = a.clone();
        }
        let body = to_vec(&m);
        // By digest, as referrer-pushing clients do; and once by tag.
        let reference = if i == 0 {
            "sig".to_string()
        } else {
            sha256(&body)
        };
        let r = api
            .put_manifest(repo, &reference, OCI_MANIFEST, &body)
            .await;
        r.expect(201).expect_header("oci-subject", &subject);
        pushed.push((
            sha256(&body),
            body.len(),
            artifact_type.unwrap_or(config_type).to_string(),
            annotations.clone(),
        ));
    }
    // An unrelated manifest and a referrer in another repository.
    push_image(&api, "refs/other", "v1").await;

    let expect_entries = |types: &[&str]| -> Vec<Value> {
        let mut v: Vec<&(String, usize, String, Option<Value>)> = pushed
            .iter()
            .filter(|p| types.contains(&p.2.as_str()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter()
            .map(|(d, size, at, ann)| {
                let mut e = json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": d,
                    "size": size,
                    "artifactType": at,
                });
                if let Some(a) = ann {
                    e["annotations"] = a.clone();
                }
                e
            })
            .collect()
    };
    let all = [
        "application/vnd.example.signature",
        "application/vnd.example.sbom",
        "application/vnd.example.config.v1+json",
    ];
    let unknown = sha256(b"nobody refers to this");
    // (path, entries, filter applied)
    let cases: Vec<(String, Vec<Value>, bool)> = vec![
        (
            format!("/v2/{repo}/referrers/{subject}"),
            expect_entries(&all),
            false,
        ),
        (
            format!("/v2/{repo}/referrers/{subject}?artifactType=application/vnd.example.sbom"),
            expect_entries(&["application/vnd.example.sbom"]),
            true,
        ),
        (
            format!(
                "/v2/{repo}/referrers/{subject}?artifactType=application%2Fvnd.example.signature"
            ),
            expect_entries(&["application/vnd.example.signature"]),
            true,
        ),
        (
            format!("/v2/{repo}/referrers/{subject}?artifactType=application/vnd.example.none"),
            vec![],
            true,
        ),
        (format!("/v2/{repo}/referrers/{unknown}"), vec![], false),
        (format!("/v2/refs/other/referrers/{subject}"), vec![], false),
        (
            format!("/v2/refs/nowhere/referrers/{subject}"),
            vec![],
            false,
        ),
    ];
    for (path, entries, filtered) in cases {
        let r = api.get(&path).await;
        r.expect(200).expect_header("content-type", OCI_INDEX);
        assert_eq!(
            r.json(),
            json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries }),
            "{path}"
        );
        let applied = if filtered { Some("artifactType") } else { None };
        assert_eq!(r.header("oci-filters-applied"), applied, "{path}");
    }

    // Deleting a referrer removes it from the list.
    api.delete(&format!("/v2/{repo}/manifests/{}", pushed[1].0))
        .await
        .expect(202);
    let r = api.get(&format!("/v2/{repo}/referrers/{subject}")).await;
    assert_eq!(
        r.json()["manifests"].as_array().unwrap().len(),
        2,
        "{}",
        r.what()
    );
    // A subject need not exist when its referrer is pushed.
    let dangling = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor(OCI_EMPTY, b"{}"),
        "layers": [descriptor("application/octet-stream", sig)],
        "subject": descriptor(OCI_MANIFEST, b"a manifest not pushed yet"),
    });
    let body = to_vec(&dangling);
    api.put_manifest(repo, &sha256(&body), OCI_MANIFEST, &body)
        .await
        .expect(201)
        .expect_header("oci-subject", &sha256(b"a manifest not pushed yet"));
    let r = api
        .get(&format!(
            "/v2/{repo}/referrers/{}",
            sha256(b"a manifest not pushed yet")
        ))
        .await;
    assert_eq!(r.json()["manifests"][0]["digest"], json!(sha256(&body)));
}

// ---------------------------------------------------------------------------
// Methods and paths
// ---------------------------------------------------------------------------

#[tokio::test]
async fn wrong_methods_are_405_unsupported() {
    let api = api().await;
    let d = api.push_blob("m/app", b"blob").await;
    let upload = api.start_upload("m/app").await;
    let cases: Vec<(&str, String)> = vec![
        ("POST", "/v2/".into()),
        ("PUT", "/v2/".into()),
        ("DELETE", "/v2/".into()),
        ("PATCH", "/v2/".into()),
        ("POST", "/v2/_catalog".into()),
        ("DELETE", "/v2/_catalog".into()),
        ("PUT", "/v2/m/app/tags/list".into()),
        ("DELETE", "/v2/m/app/tags/list".into()),
        ("POST", "/v2/m/app/manifests/latest".into()),
        ("PATCH", "/v2/m/app/manifests/latest".into()),
        ("PUT", format!("/v2/m/app/blobs/{d}")),
        ("POST", format!("/v2/m/app/blobs/{d}")),
        ("PATCH", format!("/v2/m/app/blobs/{d}")),
        ("GET", "/v2/m/app/blobs/uploads/".into()),
        ("PUT", "/v2/m/app/blobs/uploads/".into()),
        ("PATCH", "/v2/m/app/blobs/uploads/".into()),
        ("DELETE", "/v2/m/app/blobs/uploads/".into()),
        ("POST", upload.clone()),
        ("HEAD", upload.clone()),
        ("POST", format!("/v2/m/app/referrers/{d}")),
        ("PUT", format!("/v2/m/app/referrers/{d}")),
        ("DELETE", format!("/v2/m/app/referrers/{d}")),
    ];
    for (method, uri) in cases {
        let r = api.send(method, &uri, &[], b"").await;
        if method == "HEAD" {
            r.expect(405);
        } else {
            r.expect_error(405, "UNSUPPORTED");
        }
    }
    // Nothing above changed state.
    api.get(&format!("/v2/m/app/blobs/{d}")).await.expect(200);
    let s = api.get(&upload).await;
    check_session(s.expect(204), "m/app", "0-0");
}

#[tokio::test]
async fn bad_paths() {
    let api = api().await;
    let d = sha256(b"x");
    let long = "a".repeat(256);
    // (method, path, status, code)
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "GET",
            "/v2/UPPER/manifests/latest".into(),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/a/../b/manifests/latest".into(),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/%2e%2e/manifests/latest".into(),
            400,
            "NAME_INVALID",
        ),
        ("GET", "/v2/a%2Fb/tags/list".into(), 400, "NAME_INVALID"),
        ("GET", "/v2/a//b/tags/list".into(), 400, "NAME_INVALID"),
        ("GET", "/v2/-a/tags/list".into(), 400, "NAME_INVALID"),
        ("GET", format!("/v2/{long}/tags/list"), 400, "NAME_INVALID"),
        ("PUT", "/v2/Bad/manifests/v1".into(), 400, "NAME_INVALID"),
        ("POST", "/v2/Bad/blobs/uploads/".into(), 400, "NAME_INVALID"),
        ("GET", format!("/v2/a_/blobs/{d}"), 400, "NAME_INVALID"),
        (
            "GET",
            "/v2/a/blobs/sha256:abc".into(),
            400,
            "DIGEST_INVALID",
        ),
        ("GET", "/v2/a/blobs/latest".into(), 400, "DIGEST_INVALID"),
        (
            "GET",
            "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "DELETE",
            "/v2/a/blobs/sha256:ABC".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/a/manifests/sha256:xyz".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/a/referrers/latest".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/a/referrers/sha256:abc".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "POST",
            "/v2/a/blobs/uploads/?digest=sha256:abc".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "POST",
            "/v2/a/blobs/uploads/?mount=nonsense&from=b".into(),
            400,
            "DIGEST_INVALID",
        ),
        ("GET", "/v2/nothing".into(), 404, "NAME_UNKNOWN"),
        ("GET", "/v2/a/blobs/".into(), 404, "NAME_UNKNOWN"),
        ("GET", "/v2/a/something/else".into(), 404, "NAME_UNKNOWN"),
    ];
    for (method, uri, status, code) in cases {
        api.send(method, &uri, &[], b"")
            .await
            .expect_error(status, code);
    }
    // Nothing was created along the way.
    let r = api.get("/v2/_catalog").await;
    assert_eq!(r.json(), json!({ "repositories": [] }));
}
