//! The scenarios against a tiny in-process registry that can fail on
//! purpose: errors are counted, Bearer auth is followed, digests are
//! verified, pagination is walked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use berth_bench::client::{Client, sha256_digest};
use berth_bench::scenarios::{Ctx, Sizes};

#[derive(Default)]
struct Fake {
    /// Every Nth finishing PUT of an upload answers 500 (0: never).
    fail_every: u64,
    puts: AtomicU64,
    /// Require `Authorization: Bearer good-token`, issued to user:pass.
    bearer: bool,
    token_requests: AtomicU64,
    /// Serve blobs with one byte flipped.
    corrupt: bool,
    base: String,
    uploads: Mutex<HashMap<String, Vec<u8>>>,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    tags: Mutex<BTreeMap<String, BTreeSet<String>>>,
    next_id: AtomicU64,
}

fn resp(status: StatusCode, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(body.into()).unwrap()
}

fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2F", "/")))
        .collect()
}

async fn handle(State(st): State<Arc<Fake>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = query(req.uri().query());
    let headers: HeaderMap = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();

    if path == "/token" {
        st.token_requests.fetch_add(1, Ordering::SeqCst);
        // "user:pass" in base64.
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some("Basic dXNlcjpwYXNz");
        if !ok || q.get("service").map(String::as_str) != Some("fake") {
            return resp(StatusCode::UNAUTHORIZED, &[], "");
        }
        return resp(StatusCode::OK, &[], r#"{"token":"good-token"}"#);
    }
    if st.bearer
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some("Bearer good-token")
    {
        let challenge = format!(
            r#"Bearer realm="{}/token",service="fake",scope="repository:x:pull,push""#,
            st.base
        );
        return resp(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", challenge)],
            "",
        );
    }
    if path == "/v2/" {
        return resp(StatusCode::OK, &[], "{}");
    }
    let rest = path.strip_prefix("/v2/").unwrap();
    if let Some(repo) = rest.strip_suffix("/blobs/uploads/")
        && method == Method::POST
    {
        let id = st.next_id.fetch_add(1, Ordering::SeqCst);
        st.uploads
            .lock()
            .unwrap()
            .insert(id.to_string(), Vec::new());
        // Alternate absolute and relative Locations.
        let loc = if id % 2 == 0 {
            format!("/v2/{repo}/blobs/uploads/{id}?_state=s{id}")
        } else {
            format!("{}/v2/{repo}/blobs/uploads/{id}", st.base)
        };
        return resp(StatusCode::ACCEPTED, &[("location", loc)], "");
    }
    if let Some((repo, id)) = rest.split_once("/blobs/uploads/") {
        let mut uploads = st.uploads.lock().unwrap();
        let Some(buf) = uploads.get_mut(id) else {
            return resp(StatusCode::NOT_FOUND, &[], "no session");
        };
        if method == Method::PATCH {
            if let Some(range) = headers.get(header::CONTENT_RANGE) {
                let start: usize = range
                    .to_str()
                    .unwrap()
                    .split('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                if start != buf.len() {
                    return resp(StatusCode::RANGE_NOT_SATISFIABLE, &[], "");
                }
            }
            buf.extend_from_slice(&body);
            let loc = format!("/v2/{repo}/blobs/uploads/{id}");
            return resp(StatusCode::ACCEPTED, &[("location", loc)], "");
        }
        if method == Method::PUT {
            let n = st.puts.fetch_add(1, Ordering::SeqCst) + 1;
            if st.fail_every > 0 && n % st.fail_every == 0 {
                return resp(StatusCode::INTERNAL_SERVER_ERROR, &[], "boom");
            }
            buf.extend_from_slice(&body);
            let digest = q.get("digest").cloned().unwrap_or_default();
            if sha256_digest(buf) != digest {
                return resp(StatusCode::BAD_REQUEST, &[], "DIGEST_INVALID");
            }
            let data = uploads.remove(id).unwrap();
            st.blobs.lock().unwrap().insert(digest, data);
            return resp(StatusCode::CREATED, &[], "");
        }
    }
    if let Some((_repo, digest)) = rest.split_once("/blobs/") {
        let blobs = st.blobs.lock().unwrap();
        let Some(data) = blobs.get(digest) else {
            return resp(StatusCode::NOT_FOUND, &[], "");
        };
        let mut data = data.clone();
        if st.corrupt {
            data[0] ^= 1;
        }
        let len = data.len().to_string();
        if method == Method::HEAD {
            return resp(StatusCode::OK, &[("content-length", len)], "");
        }
        return resp(StatusCode::OK, &[], Bytes::from(data));
    }
    if let Some((repo, reference)) = rest.split_once("/manifests/")
        && method == Method::PUT
    {
        st.tags
            .lock()
            .unwrap()
            .entry(repo.to_string())
            .or_default()
            .insert(reference.to_string());
        return resp(StatusCode::CREATED, &[], "");
    }
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        let tags = st.tags.lock().unwrap();
        let all = tags.get(repo).cloned().unwrap_or_default();
        let n: usize = q.get("n").map(|n| n.parse().unwrap()).unwrap_or(usize::MAX);
        let after: Vec<&String> = all
            .iter()
            .filter(|t| q.get("last").is_none_or(|l| t.as_str() > l.as_str()))
            .collect();
        let page: Vec<&String> = after.iter().take(n).copied().collect();
        let mut h = vec![];
        if after.len() > n {
            h.push((
                "link",
                format!(
                    "</v2/{repo}/tags/list?n={n}&last={}>; rel=\"next\"",
                    page.last().unwrap()
                ),
            ));
        }
        let body = serde_json::json!({"name": repo, "tags": page}).to_string();
        return resp(StatusCode::OK, &h, body);
    }
    resp(StatusCode::NOT_FOUND, &[], "")
}

async fn start(mut fake: Fake) -> (Arc<Fake>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    fake.base = base.clone();
    let st = Arc::new(fake);
    let app = Router::new().fallback(handle).with_state(st.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (st, base)
}

fn ctx(base: &str, creds: bool, sizes: Sizes) -> Ctx {
    let (u, p) = if creds {
        (Some("user".to_string()), Some("pass".to_string()))
    } else {
        (None, None)
    };
    Ctx {
        client: Client::new(base, u, p).unwrap(),
        label: "fake".into(),
        probe: None,
        sizes,
        duration: Duration::from_millis(200),
        prefix: "bench".into(),
        failed: Vec::new(),
        lines: Vec::new(),
    }
}

#[tokio::test]
async fn counts_500s_as_errors() {
    let (st, base) = start(Fake {
        fail_every: 3,
        ..Fake::default()
    })
    .await;
    let mut c = ctx(
        &base,
        false,
        Sizes {
            small_count: 30,
            small_concurrency: [1, 4],
            small_min: 100,
            small_max: 200,
            ..Sizes::quick()
        },
    );
    c.run_group("small-blobs").await.unwrap();
    assert_eq!(c.lines.len(), 2);
    for l in &c.lines {
        assert_eq!(l.errors, 10, "{l:?}");
        assert_eq!(l.ops, 20, "{l:?}");
    }
    assert_eq!(c.failed.len(), 2);
    assert_eq!(st.puts.load(Ordering::SeqCst), 60);
}

#[tokio::test]
async fn no_errors_when_the_registry_behaves() {
    let (_st, base) = start(Fake::default()).await;
    let mut c = ctx(
        &base,
        false,
        Sizes {
            blob: 1 << 20,
            chunk: 300 * 1024,
            mono_counts: [(1, 2), (4, 4)],
            chunked_count: 2,
            ..Sizes::quick()
        },
    );
    c.run_group("push-mono").await.unwrap();
    c.run_group("push-chunked").await.unwrap();
    assert!(c.failed.is_empty(), "{:?}", c.failed);
    assert_eq!(c.lines.len(), 3);
    assert_eq!(c.lines[0].ops, 2);
    assert_eq!(c.lines[0].bytes, 2 << 20);
    assert_eq!(c.lines[2].scenario, "push-chunked");
    assert_eq!(c.lines[2].bytes, 2 << 20);
}

#[tokio::test]
async fn follows_the_bearer_token_flow() {
    let (st, base) = start(Fake {
        bearer: true,
        ..Fake::default()
    })
    .await;
    let mut c = ctx(
        &base,
        true,
        Sizes {
            pull_blob: 1 << 20,
            pull_counts: [(1, 2), (4, 4)],
            ..Sizes::quick()
        },
    );
    c.client.ping().await.unwrap();
    c.run_group("pull").await.unwrap();
    assert!(c.failed.is_empty(), "{:?}", c.failed);
    assert_eq!(c.lines.len(), 4);
    // Tokens are cached: one for the ping, one for the repository.
    assert!(st.token_requests.load(Ordering::SeqCst) <= 3);

    // Without credentials the token endpoint refuses: an error, not a hang.
    let anon = Client::new(&base, None, None).unwrap();
    assert!(anon.ping().await.is_err());
}

#[tokio::test]
async fn verifying_pulls_catch_corrupt_bodies() {
    let (_st, base) = start(Fake {
        corrupt: true,
        ..Fake::default()
    })
    .await;
    let c = ctx(&base, false, Sizes::quick());
    let data = Bytes::from(vec![7u8; 5000]);
    let d = sha256_digest(&data);
    c.client.push_blob("bench/x", &data, &d).await.unwrap();
    assert_eq!(
        c.client.pull_blob("bench/x", &d, false).await.unwrap(),
        5000
    );
    let e = c.client.pull_blob("bench/x", &d, true).await.unwrap_err();
    assert!(e.to_string().contains("hashes to"), "{e}");
}

#[tokio::test]
async fn walks_paginated_tag_lists() {
    let (_st, base) = start(Fake::default()).await;
    let mut c = ctx(
        &base,
        false,
        Sizes {
            small_tags: 5,
            tags: 25,
            page: 10,
            ..Sizes::quick()
        },
    );
    c.run_group("tags-list").await.unwrap();
    assert!(c.failed.is_empty(), "{:?}", c.failed);
    let names: Vec<&str> = c.lines.iter().map(|l| l.scenario.as_str()).collect();
    assert_eq!(names, ["tags-page-5", "tags-page-25", "tags-walk-25"]);
    let walk = &c.lines[2];
    assert_eq!(walk.extra["pages_per_walk"], 3);
    assert_eq!(walk.extra["entries"], 25);
    assert_eq!(c.lines[1].extra["entries_per_page"], 10);
}
