//! Crash safety of the real `berth` binary: kill it with SIGKILL (and stop it
//! with SIGTERM) while clients push, restart it on the same data directory,
//! and check that every acknowledged write survived, that nothing
//! half-written became visible, and that upload sessions resume
//! (DESIGN.md, data rules 1, 2, 4 and 6).
//!
//! Timing only decides when to kill; no assertion depends on it. The random
//! data and delays come from one seed, printed first; set `BERTH_CRASH_SEED`
//! to replay it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Berth, digest_of, sha256_hex};
use futures::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Client, RequestBuilder, StatusCode, Url};

const CYCLES: usize = 8;
const PUSHERS: usize = 8;
/// Pushers share repositories, two per repository.
const REPOS: usize = 4;
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const OCTET: &str = "application/octet-stream";
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

/// One running server as the clients see it.
struct Server {
    client: Client,
    base: Url,
    /// Set just before the server is killed: transport errors after that are
    /// expected, before it they are problems.
    killed: AtomicBool,
}

impl Server {
    fn new(url: &str) -> Arc<Server> {
        let client = common::client_builder()
            .no_proxy()
            // A guard against a hung test, not a performance assertion.
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client");
        Arc::new(Server {
            client,
            base: Url::parse(url).expect("server url"),
            killed: AtomicBool::new(false),
        })
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("url")
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Sends a request and reads the whole response. A 5xx answer and a
    /// transport error while the server should be alive go to `sink`.
    async fn exec(&self, req: RequestBuilder, sink: &mut Vec<String>) -> Option<Resp> {
        let req = match req.build() {
            Ok(req) => req,
            Err(e) => {
                sink.push(format!("building a request: {}", error_chain(&e)));
                return None;
            }
        };
        let what = format!("{} {}", req.method(), req.url());
        let result = async {
            let resp = self.client.execute(req).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>((status, headers, body))
        }
        .await;
        match result {
            Ok((status, headers, body)) => {
                let resp = Resp {
                    what,
                    status,
                    headers,
                    body,
                };
                if status.is_server_error() {
                    sink.push(format!("server error: {}", resp.describe()));
                }
                Some(resp)
            }
            Err(e) => {
                if !self.is_killed() {
                    sink.push(format!("{what}: transport error: {}", error_chain(&e)));
                }
                None
            }
        }
    }

    /// Like [`Server::exec`] for the sequential tests: panics on any failure.
    async fn must(&self, req: RequestBuilder) -> Resp {
        let mut sink = Vec::new();
        let resp = self.exec(req, &mut sink).await;
        assert_clean(&sink);
        resp.expect("a response")
    }

    /// The `Location` of a response, resolved against this server.
    fn location(&self, resp: &Resp, sink: &mut Vec<String>) -> Option<Url> {
        match resp.header(LOCATION.as_str()).map(|l| self.base.join(l)) {
            Some(Ok(url)) => Some(url),
            _ => {
                sink.push(format!("no usable Location: {}", resp.describe()));
                None
            }
        }
    }

    /// The same path and query on this server (an upload URL handed out by a
    /// previous process, which listened on another port).
    fn rebase(&self, old: &Url) -> Url {
        let mut path = old.path().to_string();
        if let Some(q) = old.query() {
            path.push('?');
            path.push_str(q);
        }
        self.url(&path)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

struct Resp {
    /// Method and URL, for messages.
    what: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn describe(&self) -> String {
        let body = match std::str::from_utf8(&self.body) {
            Ok(text) => text.chars().take(300).collect::<String>(),
            Err(_) => format!("<{} bytes of binary>", self.body.len()),
        };
        let mut headers: Vec<String> = ["location", "range", DOCKER_CONTENT_DIGEST]
            .iter()
            .filter_map(|h| self.header(h).map(|v| format!("{h}: {v}")))
            .collect();
        headers.sort();
        format!(
            "{} -> {} [{}] {body}",
            self.what,
            self.status,
            headers.join(", ")
        )
    }

    /// The upload size a `Range: 0-<end>` header reports.
    fn upload_size(&self) -> Option<u64> {
        let v = self.header("range")?.trim();
        let v = v
            .strip_prefix("bytes=")
            .or_else(|| v.strip_prefix("bytes "))
            .unwrap_or(v);
        let (start, end) = v.split_once('-')?;
        if start.trim() != "0" {
            return None;
        }
        end.trim().parse::<u64>().ok().map(|end| end + 1)
    }
}

/// `Some(())` when `resp` has status `code`; otherwise records why not.
fn want(resp: &Resp, code: u16, sink: &mut Vec<String>) -> Option<()> {
    if resp.status.as_u16() == code {
        return Some(());
    }
    if !resp.status.is_server_error() {
        // A 5xx is already recorded by `exec`.
        sink.push(format!("expected {code}: {}", resp.describe()));
    }
    None
}

fn assert_clean(sink: &[String]) {
    assert!(sink.is_empty(), "{}", sink.join("\n"));
}

/// Problems found by concurrent tasks, reported together at the end so one
/// run shows all of them.
#[derive(Clone, Default)]
struct Problems(Arc<Mutex<Vec<String>>>);

impl Problems {
    fn extend(&self, found: impl IntoIterator<Item = String>) {
        self.0.lock().unwrap().extend(found);
    }

    fn assert_none(&self) {
        let all = self.0.lock().unwrap();
        if all.is_empty() {
            return;
        }
        let shown: Vec<&str> = all.iter().take(60).map(String::as_str).collect();
        panic!(
            "{} problem(s), the first {}:\n{}",
            all.len(),
            shown.len(),
            shown.join("\n")
        );
    }
}

fn seed() -> u64 {
    let seed = std::env::var("BERTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("seed {seed} (BERTH_CRASH_SEED={seed} replays the data and delays)");
    seed
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

// ---------------------------------------------------------------------------
// Pushing
// ---------------------------------------------------------------------------

struct BlobRec {
    digest: String,
    size: u64,
    /// The upload returned 201 (or a HEAD found the blob): it must survive.
    acked: bool,
}

struct ImageRec {
    cycle: usize,
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    /// The config first, then the layers.
    blobs: Vec<BlobRec>,
    /// The manifest PUT was sent.
    manifest_sent: bool,
    /// The manifest PUT returned 201.
    acked: bool,
}

impl ImageRec {
    fn label(&self) -> String {
        format!(
            "cycle {} image {}:{} ({})",
            self.cycle,
            self.repo,
            self.tag,
            if self.acked {
                "acknowledged"
            } else {
                "not acknowledged"
            }
        )
    }
}

/// Appends `digest=` to an upload URL (which may carry its own query).
fn with_digest(mut url: Url, digest: &str) -> Url {
    url.query_pairs_mut().append_pair("digest", digest);
    url
}

/// PATCHes one chunk at `start`; returns the next upload URL.
async fn patch_chunk(
    srv: &Server,
    loc: &Url,
    chunk: &[u8],
    start: u64,
    sink: &mut Vec<String>,
) -> Option<Url> {
    let end = start + chunk.len() as u64 - 1;
    let req = srv
        .client
        .patch(loc.clone())
        .header(CONTENT_TYPE, OCTET)
        .header(CONTENT_RANGE, format!("{start}-{end}"))
        .body(chunk.to_vec());
    let resp = srv.exec(req, sink).await?;
    want(&resp, 202, sink)?;
    if resp.upload_size() != Some(end + 1) {
        sink.push(format!("expected Range 0-{end}: {}", resp.describe()));
        return None;
    }
    srv.location(&resp, sink)
}

/// Uploads one blob the way a random client would. `Some(())` once the
/// registry acknowledged it.
async fn push_blob(
    srv: &Server,
    rng: &mut StdRng,
    repo: &str,
    data: &[u8],
    digest: &str,
    check_first: bool,
    sink: &mut Vec<String>,
) -> Option<()> {
    if check_first {
        let url = srv.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = srv.exec(srv.client.head(url), sink).await?;
        match resp.status.as_u16() {
            200 => return Some(()),
            404 => {}
            _ => {
                want(&resp, 404, sink);
                return None;
            }
        }
    }
    let uploads = srv.url(&format!("/v2/{repo}/blobs/uploads/"));
    let put_url = match rng.random_range(0..3) {
        // Monolithic POST with the digest.
        0 => {
            let req = srv
                .client
                .post(with_digest(uploads, digest))
                .header(CONTENT_TYPE, OCTET)
                .body(data.to_vec());
            let resp = srv.exec(req, sink).await?;
            want(&resp, 201, sink)?;
            return check_blob_digest_header(&resp, digest, sink);
        }
        // POST, then one PUT with the whole body.
        1 => {
            let resp = srv.exec(srv.client.post(uploads), sink).await?;
            want(&resp, 202, sink)?;
            let loc = srv.location(&resp, sink)?;
            let req = srv
                .client
                .put(with_digest(loc, digest))
                .header(CONTENT_TYPE, OCTET)
                .body(data.to_vec());
            let resp = srv.exec(req, sink).await?;
            want(&resp, 201, sink)?;
            return check_blob_digest_header(&resp, digest, sink);
        }
        // Chunked: PATCHes, the last chunk sometimes carried by the PUT.
        _ => {
            let resp = srv.exec(srv.client.post(uploads), sink).await?;
            want(&resp, 202, sink)?;
            let mut loc = srv.location(&resp, sink)?;
            let final_chunk_in_put = rng.random_bool(0.3);
            let mut offset = 0;
            while offset < data.len() {
                let n = rng.random_range(64 * KIB..=MIB).min(data.len() - offset);
                if offset + n == data.len() && final_chunk_in_put {
                    break;
                }
                let chunk = &data[offset..offset + n];
                loc = patch_chunk(srv, &loc, chunk, offset as u64, sink).await?;
                offset += n;
            }
            let mut req = srv.client.put(with_digest(loc, digest));
            if offset < data.len() {
                req = req
                    .header(CONTENT_TYPE, OCTET)
                    .body(data[offset..].to_vec());
            }
            req
        }
    };
    let resp = srv.exec(put_url, sink).await?;
    want(&resp, 201, sink)?;
    check_blob_digest_header(&resp, digest, sink)
}

fn check_blob_digest_header(resp: &Resp, digest: &str, sink: &mut Vec<String>) -> Option<()> {
    match resp.header(DOCKER_CONTENT_DIGEST) {
        Some(d) if d != digest => {
            sink.push(format!("expected digest {digest}: {}", resp.describe()));
            // The blob was acknowledged all the same.
            Some(())
        }
        _ => Some(()),
    }
}

/// Pushes the blobs, then the manifest. True when the manifest PUT returned 201.
async fn push_image(
    srv: &Server,
    rng: &mut StdRng,
    img: &mut ImageRec,
    blobs: &[Vec<u8>],
    shared_digest: &str,
    sink: &mut Vec<String>,
) -> bool {
    for (rec, data) in img.blobs.iter_mut().zip(blobs) {
        let check_first = rec.digest == shared_digest || rng.random_bool(0.25);
        if push_blob(srv, rng, &img.repo, data, &rec.digest, check_first, sink)
            .await
            .is_none()
        {
            return false;
        }
        rec.acked = true;
    }
    img.manifest_sent = true;
    let url = srv.url(&format!("/v2/{}/manifests/{}", img.repo, img.tag));
    let req = srv
        .client
        .put(url)
        .header(CONTENT_TYPE, MANIFEST_TYPE)
        .body(img.manifest.clone());
    let Some(resp) = srv.exec(req, sink).await else {
        return false;
    };
    if want(&resp, 201, sink).is_none() {
        return false;
    }
    if resp.header(DOCKER_CONTENT_DIGEST) != Some(img.manifest_digest.as_str()) {
        sink.push(format!(
            "expected Docker-Content-Digest {}: {}",
            img.manifest_digest,
            resp.describe()
        ));
    }
    img.acked = true;
    true
}

/// Random image contents: a config and 1 to 3 layers of 2 KiB to 4 MiB
/// (log-uniform), sometimes plus the layer every pusher shares.
fn random_image(
    rng: &mut StdRng,
    cycle: usize,
    repo: &str,
    tag: &str,
    shared: &[u8],
) -> (ImageRec, Vec<Vec<u8>>) {
    let mut layers: Vec<Vec<u8>> = (0..rng.random_range(1..=3))
        .map(|_| {
            let len = 2f64.powf(rng.random_range(11.0..22.0)) as usize;
            random_bytes(rng, len)
        })
        .collect();
    if rng.random_bool(0.4) {
        let at = rng.random_range(0..=layers.len());
        layers.insert(at, shared.to_vec());
    }
    let layer_digests: Vec<String> = layers.iter().map(|l| digest_of(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": { "berth.test.tag": tag } },
        "rootfs": { "type": "layers", "diff_ids": layer_digests },
    }))
    .expect("config json");
    let descriptor = |media_type: &str, data: &[u8]| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": digest_of(data),
            "size": data.len(),
        })
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, &config),
        "layers": layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect::<Vec<_>>(),
        "annotations": { "org.opencontainers.image.ref.name": tag },
    }))
    .expect("manifest json");
    let mut blobs = vec![config];
    blobs.extend(layers);
    let rec = ImageRec {
        cycle,
        repo: repo.to_string(),
        tag: tag.to_string(),
        manifest_digest: digest_of(&manifest),
        manifest,
        blobs: blobs
            .iter()
            .map(|b| BlobRec {
                digest: digest_of(b),
                size: b.len() as u64,
                acked: false,
            })
            .collect(),
        manifest_sent: false,
        acked: false,
    };
    (rec, blobs)
}

/// One client: pushes whole images with unique tags until the server dies.
async fn pusher(
    srv: Arc<Server>,
    cycle: usize,
    task: usize,
    seed: u64,
    shared: Arc<Vec<u8>>,
    acks: Arc<AtomicUsize>,
) -> (Vec<ImageRec>, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sink = Vec::new();
    let mut images = Vec::new();
    let repo = format!("crash/repo-{}", task % REPOS);
    let shared_digest = digest_of(&shared);
    for n in 0.. {
        if srv.is_killed() {
            break;
        }
        let tag = format!("c{cycle}-t{task}-n{n}");
        let (rec, blobs) = random_image(&mut rng, cycle, &repo, &tag, &shared);
        images.push(rec);
        let img = images.last_mut().expect("just pushed");
        if !push_image(&srv, &mut rng, img, &blobs, &shared_digest, &mut sink).await {
            break;
        }
        acks.fetch_add(1, Ordering::SeqCst);
    }
    (images, sink)
}

// ---------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------

/// Whether `reference` (tag or digest) resolves, checking the bytes if so.
async fn manifest_state(
    srv: &Server,
    img: &ImageRec,
    reference: &str,
    sink: &mut Vec<String>,
) -> Option<bool> {
    let url = srv.url(&format!("/v2/{}/manifests/{reference}", img.repo));
    let resp = srv
        .exec(srv.client.get(url).header(ACCEPT, MANIFEST_TYPE), sink)
        .await?;
    match resp.status.as_u16() {
        200 => {
            if resp.body != img.manifest {
                sink.push(format!(
                    "returned a different manifest ({} bytes, {}): {}",
                    resp.body.len(),
                    digest_of(&resp.body),
                    resp.describe()
                ));
            }
            if let Some(d) = resp.header(DOCKER_CONTENT_DIGEST)
                && d != img.manifest_digest
            {
                sink.push(format!(
                    "expected Docker-Content-Digest {}: {}",
                    img.manifest_digest,
                    resp.describe()
                ));
            }
            Some(true)
        }
        404 => Some(false),
        _ => {
            want(&resp, 200, sink);
            None
        }
    }
}

/// Checks one image after a restart. With `full`, every blob is downloaded
/// and hashed; otherwise a HEAD checks its size. Returns whether the tag
/// resolves and the problems found.
async fn verify_image(
    srv: &Server,
    data_dir: &Path,
    img: &ImageRec,
    full: bool,
) -> (bool, Vec<String>) {
    let mut sink = Vec::new();
    let by_tag = manifest_state(srv, img, &img.tag, &mut sink).await;
    let by_digest = manifest_state(srv, img, &img.manifest_digest, &mut sink).await;
    if img.acked && by_tag == Some(false) {
        sink.push("the acknowledged tag is gone (404)".to_string());
    }
    if img.acked && by_digest == Some(false) {
        sink.push("the acknowledged manifest is gone by digest (404)".to_string());
    }
    if let (Some(t), Some(d)) = (by_tag, by_digest)
        && t != d
    {
        sink.push(format!(
            "half-written manifest PUT: tag resolves: {t}, manifest by digest resolves: {d}"
        ));
    }
    let visible = by_tag == Some(true) || by_digest == Some(true);
    for blob in &img.blobs {
        let must_exist = visible || blob.acked || img.acked;
        let url = srv.url(&format!("/v2/{}/blobs/{}", img.repo, blob.digest));
        let req = if full {
            srv.client.get(url)
        } else {
            srv.client.head(url)
        };
        let Some(resp) = srv.exec(req, &mut sink).await else {
            continue;
        };
        match resp.status.as_u16() {
            200 if full => {
                let got = digest_of(&resp.body);
                if got != blob.digest || resp.body.len() as u64 != blob.size {
                    sink.push(format!(
                        "blob GET returned {} bytes hashing to {got}, expected {} bytes: {}",
                        resp.body.len(),
                        blob.size,
                        resp.what
                    ));
                }
            }
            200 => {
                let len = resp.header(CONTENT_LENGTH.as_str());
                if len != Some(blob.size.to_string().as_str()) {
                    sink.push(format!(
                        "blob HEAD Content-Length {len:?}, expected {}: {}",
                        blob.size,
                        resp.describe()
                    ));
                }
            }
            404 if !must_exist => {}
            _ => {
                sink.push(format!(
                    "blob (acknowledged: {}, manifest visible: {visible}) not readable: {}",
                    blob.acked,
                    resp.describe()
                ));
            }
        }
        if must_exist {
            let hex = blob.digest.trim_start_matches("sha256:");
            let path = data_dir.join("blobs/sha256").join(&hex[..2]).join(hex);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() == blob.size => {}
                Ok(m) => sink.push(format!(
                    "{} holds {} bytes, expected {}",
                    path.display(),
                    m.len(),
                    blob.size
                )),
                Err(e) => sink.push(format!("{}: {e}", path.display())),
            }
        }
    }
    let label = img.label();
    let sink = sink.into_iter().map(|m| format!("{label}: {m}")).collect();
    (by_tag == Some(true), sink)
}

/// Verifies images a few at a time; results in the order given.
async fn verify_all(
    srv: &Server,
    data_dir: &Path,
    images: &[&ImageRec],
    full: bool,
) -> Vec<(bool, Vec<String>)> {
    futures::stream::iter(
        images
            .iter()
            .map(|img| verify_image(srv, data_dir, img, full)),
    )
    .buffered(6)
    .collect()
    .await
}

/// `/tags/list` of every repository must show exactly the tags that resolve.
async fn check_tag_lists(
    srv: &Server,
    expected: &BTreeMap<String, BTreeSet<String>>,
    sink: &mut Vec<String>,
) {
    for i in 0..REPOS {
        let repo = format!("crash/repo-{i}");
        let want_tags = expected.get(&repo).cloned().unwrap_or_default();
        let mut listed = BTreeSet::new();
        let mut next = Some(srv.url(&format!("/v2/{repo}/tags/list")));
        while let Some(url) = next.take() {
            let Some(resp) = srv.exec(srv.client.get(url), sink).await else {
                return;
            };
            if resp.status.as_u16() == 404 && want_tags.is_empty() {
                break;
            }
            if want(&resp, 200, sink).is_none() {
                return;
            }
            let body: serde_json::Value = match serde_json::from_slice(&resp.body) {
                Ok(v) => v,
                Err(e) => {
                    sink.push(format!("tag list is not JSON ({e}): {}", resp.describe()));
                    return;
                }
            };
            for tag in body["tags"].as_array().into_iter().flatten() {
                listed.insert(tag.as_str().unwrap_or_default().to_string());
            }
            next = resp
                .header("link")
                .and_then(|l| Some(&l[l.find('<')? + 1..l.find('>')?]))
                .map(|l| srv.url(l));
        }
        let missing: Vec<_> = want_tags.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&want_tags).collect();
        if !missing.is_empty() || !extra.is_empty() {
            sink.push(format!(
                "{repo}/tags/list: resolving tags missing from the list: {missing:?}; \
                 listed tags that do not resolve: {extra:?}"
            ));
        }
    }
}

/// Every file under `blobs/` must be `sha256/<2 hex>/<hex>` and hash to its
/// name: no torn, misplaced or temporary blob file. Returns how many.
fn check_blob_files(data_dir: &Path, sink: &mut Vec<String>) -> usize {
    let root = data_dir.join("blobs");
    let mut count = 0;
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                sink.push(format!("reading {}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                dirs.push(path);
                continue;
            }
            count += 1;
            let rel = path.strip_prefix(&root).expect("under blobs/");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let well_named = parts.len() == 3
                && parts[0] == "sha256"
                && parts[2].len() == 64
                && parts[2]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && parts[2].starts_with(parts[1].as_str());
            if !well_named {
                sink.push(format!("unexpected file blobs/{}", rel.display()));
                continue;
            }
            let bytes = std::fs::read(&path).expect("read blob file");
            let got = sha256_hex(&bytes);
            if got != parts[2] {
                sink.push(format!(
                    "torn blob file blobs/{}: its {} bytes hash to {got}",
                    rel.display(),
                    bytes.len()
                ));
            }
        }
    }
    count
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Figures {
    started: usize,
    acked: usize,
    interrupted: usize,
    interrupted_in_manifest_put: usize,
    interrupted_left_no_tag: usize,
    interrupted_but_complete: usize,
    blob_uploads_acked: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_concurrent_pushes() {
    let mut rng = StdRng::seed_from_u64(seed());
    let problems = Problems::default();
    let mut berth = tokio::task::block_in_place(Berth::start);
    let data_dir = berth.data_dir.clone();
    // A pusher's first request may be a HEAD: the project must exist.
    common::create_project(&berth.url, "crash").await;
    let shared = Arc::new(random_bytes(&mut rng, MIB));
    let mut all: Vec<ImageRec> = Vec::new();
    // repository -> tags that resolve after the last restart
    let mut resolving: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut figures = Figures::default();

    for cycle in 0..CYCLES {
        let srv = Server::new(&berth.url);
        let acks = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..PUSHERS)
            .map(|task| {
                tokio::spawn(pusher(
                    srv.clone(),
                    cycle,
                    task,
                    rng.random(),
                    shared.clone(),
                    acks.clone(),
                ))
            })
            .collect();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..900))).await;
        // On a slow machine, give the cycle something to lose first.
        while acks.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let killed_after = started.elapsed();
        srv.killed.store(true, Ordering::SeqCst);
        tokio::task::block_in_place(|| berth.kill9());

        let mut images = Vec::new();
        for task in tasks {
            let (imgs, sink) = task.await.expect("pusher task");
            images.extend(imgs);
            problems.extend(sink);
        }
        // The server is dead: nothing can be mid-write now.
        let mut sink = Vec::new();
        let blob_files = check_blob_files(&data_dir, &mut sink);
        problems.extend(sink);
        let upload_files = count_files(&data_dir.join("uploads"));

        let restarted = std::panic::catch_unwind(AssertUnwindSafe(|| {
            tokio::task::block_in_place(|| berth.restart())
        }));
        if restarted.is_err() {
            problems.extend([format!("the restart after kill -9 in cycle {cycle} failed")]);
            problems.assert_none();
        }
        let srv = Server::new(&berth.url);

        // This cycle's images, acknowledged or not, in full.
        let refs: Vec<&ImageRec> = images.iter().collect();
        let results = verify_all(&srv, &data_dir, &refs, true).await;
        let mut cycle_acked = 0;
        let mut cycle_interrupted = 0;
        for (img, (tag_resolves, sink)) in images.iter().zip(results) {
            problems.extend(sink);
            figures.blob_uploads_acked += img.blobs.iter().filter(|b| b.acked).count();
            if img.acked {
                cycle_acked += 1;
            } else {
                cycle_interrupted += 1;
                if img.manifest_sent {
                    figures.interrupted_in_manifest_put += 1;
                }
                if tag_resolves {
                    figures.interrupted_but_complete += 1;
                } else {
                    figures.interrupted_left_no_tag += 1;
                }
            }
            if img.acked || tag_resolves {
                resolving
                    .entry(img.repo.clone())
                    .or_default()
                    .insert(img.tag.clone());
            }
        }
        figures.started += images.len();
        figures.acked += cycle_acked;
        figures.interrupted += cycle_interrupted;

        // Earlier cycles' acknowledged images survived this crash too.
        let earlier: Vec<&ImageRec> = all.iter().filter(|i| i.acked).collect();
        for (_, sink) in verify_all(&srv, &data_dir, &earlier, false).await {
            problems.extend(sink);
        }
        let mut sink = Vec::new();
        check_tag_lists(&srv, &resolving, &mut sink).await;
        problems.extend(sink);

        println!(
            "cycle {cycle}: killed after {} ms; {} pushes started, {cycle_acked} acknowledged, \
             {cycle_interrupted} interrupted; {blob_files} blob files hashed, \
             {upload_files} upload files left",
            killed_after.as_millis(),
            images.len(),
        );
        all.extend(images);
    }

    // Final pass: every acknowledged image of every cycle, in full.
    let acked: Vec<&ImageRec> = all.iter().filter(|i| i.acked).collect();
    let mut verified = 0;
    for (_, sink) in verify_all(&Server::new(&berth.url), &data_dir, &acked, true).await {
        if sink.is_empty() {
            verified += 1;
        }
        problems.extend(sink);
    }
    let mut sink = Vec::new();
    let blob_files = check_blob_files(&data_dir, &mut sink);
    problems.extend(sink);

    println!(
        "figures: cycles {CYCLES}, pushes started {}, pushes acknowledged {}, pushes verified {verified}, \
         non-acknowledged pushes observed {} (in the manifest PUT: {}; tag absent after restart: {}, \
         tag present and complete: {}), blob uploads acknowledged {}, blob files hashed at the end {blob_files}",
        figures.started,
        figures.acked,
        figures.interrupted,
        figures.interrupted_in_manifest_put,
        figures.interrupted_left_no_tag,
        figures.interrupted_but_complete,
        figures.blob_uploads_acked,
    );
    problems.assert_none();
    assert!(
        figures.acked > 0,
        "no push was acknowledged: nothing was tested"
    );
    assert!(
        figures.interrupted > 0,
        "no push was interrupted: nothing was tested"
    );
    assert_eq!(verified, figures.acked);
}

/// Starts an upload session; returns its URL.
async fn start_upload(srv: &Server, repo: &str) -> Url {
    let resp = srv
        .must(
            srv.client
                .post(srv.url(&format!("/v2/{repo}/blobs/uploads/"))),
        )
        .await;
    let mut sink = Vec::new();
    let loc = want(&resp, 202, &mut sink).and_then(|()| srv.location(&resp, &mut sink));
    assert_clean(&sink);
    loc.expect("upload location")
}

/// GETs the upload's status at `loc` (rebased onto `srv`): the size its
/// Range reports and the URL to continue with.
async fn upload_status(srv: &Server, loc: &Url) -> (u64, Url) {
    let url = srv.rebase(loc);
    let resp = srv.must(srv.client.get(url.clone())).await;
    assert_eq!(
        resp.status.as_u16(),
        204,
        "upload status after the restart: {}",
        resp.describe()
    );
    let size = resp
        .upload_size()
        .unwrap_or_else(|| panic!("no Range 0-<end> in the upload status: {}", resp.describe()));
    let next = match resp.header(LOCATION.as_str()) {
        Some(l) => srv.base.join(l).expect("status Location"),
        None => url,
    };
    (size, next)
}

/// PATCHes `data[from..]` in chunks, PUTs the digest, and reads the blob back.
async fn finish_upload(srv: &Server, repo: &str, mut loc: Url, data: &[u8], from: usize) {
    let mut sink = Vec::new();
    let mut offset = from;
    while offset < data.len() {
        let n = (data.len() - offset).min(MIB + 12_345);
        let next = patch_chunk(
            srv,
            &loc,
            &data[offset..offset + n],
            offset as u64,
            &mut sink,
        )
        .await;
        assert_clean(&sink);
        loc = next.expect("next upload location");
        offset += n;
    }
    let digest = digest_of(data);
    let resp = srv.must(srv.client.put(with_digest(loc, &digest))).await;
    assert_eq!(
        resp.status.as_u16(),
        201,
        "closing the upload: {}",
        resp.describe()
    );
    let url = srv.url(&format!("/v2/{repo}/blobs/{digest}"));
    let resp = srv.must(srv.client.get(url)).await;
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.describe());
    assert!(
        resp.body == data,
        "the blob read back differs: {} bytes hashing to {}, expected {} bytes {digest}",
        resp.body.len(),
        digest_of(&resp.body),
        data.len()
    );
}

/// A PATCH whose body the test feeds piece by piece through the sender.
type BodyTx = futures::channel::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;
type PatchOutcome = tokio::task::JoinHandle<Result<Resp, String>>;

fn streaming_patch(srv: &Arc<Server>, loc: &Url, start: u64, len: u64) -> (BodyTx, PatchOutcome) {
    let (tx, rx) = futures::channel::mpsc::channel(1);
    let req = srv
        .client
        .patch(loc.clone())
        .header(CONTENT_TYPE, OCTET)
        .header(CONTENT_RANGE, format!("{start}-{}", start + len - 1))
        .header(CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(rx));
    let outcome = tokio::spawn(async move {
        let resp = req.send().await.map_err(|e| error_chain(&e))?;
        let what = format!("PATCH {}", resp.url());
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| error_chain(&e))?.to_vec();
        Ok(Resp {
            what,
            status,
            headers,
            body,
        })
    });
    (tx, outcome)
}

/// Feeds `data` in 64 KiB pieces; false once the request dropped its body.
async fn feed(tx: &mut BodyTx, data: &[u8], pause: Duration) -> bool {
    for piece in data.chunks(64 * KIB) {
        if tx.send(Ok(piece.to_vec())).await.is_err() {
            return false;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_resumes_after_restart() {
    let mut rng = StdRng::seed_from_u64(seed());
    let repo = "crash/resume";
    let data = random_bytes(&mut rng, 6 * MIB + 4321);
    let mut berth = tokio::task::block_in_place(Berth::start);
    let srv = Server::new(&berth.url);
    let mut loc = start_upload(&srv, repo).await;
    let mut acked = 0;
    let mut sink = Vec::new();
    for n in [MIB, 1536 * KIB, 777_777] {
        let next = patch_chunk(&srv, &loc, &data[acked..acked + n], acked as u64, &mut sink).await;
        assert_clean(&sink);
        loc = next.expect("next upload location");
        acked += n;
    }

    tokio::task::block_in_place(|| berth.restart());
    let srv = Server::new(&berth.url);
    let (size, loc) = upload_status(&srv, &loc).await;
    assert_eq!(size, acked as u64, "the restarted server's upload Range");
    finish_upload(&srv, repo, loc, &data, acked).await;
    println!(
        "kill -9 between chunks: {acked} bytes acknowledged, Range after restart 0-{}",
        size - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_resumes_after_kill9_mid_chunk() {
    let mut rng = StdRng::seed_from_u64(seed());
    let repo = "crash/resume-mid";
    let data = random_bytes(&mut rng, 7 * MIB + 99);
    let mut berth = tokio::task::block_in_place(Berth::start);
    let srv = Server::new(&berth.url);
    let loc = start_upload(&srv, repo).await;
    let mut sink = Vec::new();
    let first = MIB;
    let loc = patch_chunk(&srv, &loc, &data[..first], 0, &mut sink).await;
    assert_clean(&sink);
    let loc = loc.expect("next upload location");

    // A 4 MiB chunk, killed after half of it went out.
    let chunk = 4 * MIB;
    let (mut tx, outcome) = streaming_patch(&srv, &loc, first as u64, chunk as u64);
    assert!(feed(&mut tx, &data[first..first + chunk / 2], Duration::ZERO).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.killed.store(true, Ordering::SeqCst);
    tokio::task::block_in_place(|| berth.kill9());
    drop(tx);
    let outcome = outcome.await.expect("patch task");
    if let Ok(resp) = &outcome {
        panic!("a PATCH with half its body answered: {}", resp.describe());
    }

    tokio::task::block_in_place(|| berth.restart());
    let srv = Server::new(&berth.url);
    let (size, loc) = upload_status(&srv, &loc).await;
    let size = size as usize;
    assert!(
        (first..=first + chunk).contains(&size),
        "after kill -9 mid-chunk the Range reports {size} bytes; {first} were acknowledged \
         and at most {} sent",
        first + chunk / 2
    );
    // Resuming where the server says must give the original blob.
    finish_upload(&srv, repo, loc, &data, size).await;
    println!(
        "kill -9 mid-chunk: {first} bytes acknowledged, {} sent, Range after restart 0-{} \
         (resumed from there)",
        first + chunk / 2,
        size - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_survives_graceful_stop_mid_patch() {
    let mut rng = StdRng::seed_from_u64(seed());
    let repo = "crash/resume-term";
    let data = random_bytes(&mut rng, 10 * MIB + 7);
    let mut berth = tokio::task::block_in_place(Berth::start);
    let srv = Server::new(&berth.url);
    let loc = start_upload(&srv, repo).await;
    let mut sink = Vec::new();
    let before = MIB;
    let loc = patch_chunk(&srv, &loc, &data[..before], 0, &mut sink).await;
    assert_clean(&sink);
    let loc = loc.expect("next upload location");

    // An 8 MiB PATCH: SIGTERM after a quarter of it, then keep feeding it.
    let chunk = 8 * MIB;
    let after = before + chunk;
    let (mut tx, outcome) = streaming_patch(&srv, &loc, before as u64, chunk as u64);
    let quarter = before + chunk / 4;
    assert!(feed(&mut tx, &data[before..quarter], Duration::ZERO).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.killed.store(true, Ordering::SeqCst);
    berth.sigterm();
    let body_complete = feed(&mut tx, &data[quarter..after], Duration::from_millis(3)).await;
    drop(tx);
    let outcome = outcome.await.expect("patch task");
    let waited = Instant::now();
    let status = loop {
        if let Some(status) = berth.try_exit() {
            break status;
        }
        // A guard against a hung test, not a performance assertion.
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "berth still runs 60 s after SIGTERM (PATCH outcome: {})",
            match &outcome {
                Ok(resp) => resp.describe(),
                Err(e) => e.clone(),
            }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let patch = match &outcome {
        Ok(resp) => resp.describe(),
        Err(e) => format!("no response ({e})"),
    };
    assert!(
        status.success(),
        "berth exited with {status} on SIGTERM; the PATCH in flight got: {patch}"
    );
    if let Ok(resp) = &outcome {
        assert!(
            resp.status.as_u16() == 202 && resp.upload_size() == Some(after as u64),
            "the PATCH in flight during SIGTERM got {} (expected 202 with Range 0-{} \
             or no answer)",
            resp.describe(),
            after - 1
        );
    }

    tokio::task::block_in_place(|| berth.restart());
    let srv = Server::new(&berth.url);
    let (size, loc) = upload_status(&srv, &loc).await;
    let size = size as usize;
    assert!(
        size == before || size == after,
        "after SIGTERM mid-PATCH the Range reports {size} bytes: a torn chunk \
         (expected {before} or {after}); the PATCH got: {patch}"
    );
    if outcome.is_ok() {
        assert_eq!(size, after, "a 202-acknowledged chunk was lost");
    }
    finish_upload(&srv, repo, loc, &data, size).await;
    println!(
        "SIGTERM mid-PATCH: exit {status}, body fully sent: {body_complete}, PATCH: {patch}; \
         Range after restart 0-{} (chunk {before}..{after})",
        size - 1
    );
}
