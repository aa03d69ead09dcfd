//! The GC stress workload shared by `gc_stress.rs` and `gc_crash.rs`
//! (issue 5, scope 2): clients pushing small images (random layers, some
//! shared between images, clients and repositories), re-tagging, deleting
//! tags and manifests, pulling and mounting across repositories over the
//! raw distribution API, while garbage collection runs in a tight loop.
//!
//! Each client owns its tags (`c<client>-<n>`) and its manifests (the
//! config blob names the client and a counter, so digests never collide
//! between clients) and keeps a model: the tags it believes exist
//! (acknowledged pushes minus its own deletes). A request whose answer was
//! lost (the server was killed) makes the tag "maybe": it may or may not
//! exist afterwards, and if it does it must still pull whole.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Digest as _;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Where the server is now (it moves to a new port on every restart).
pub struct Target {
    url: RwLock<String>,
    /// False while the server is down (crash test).
    up: AtomicBool,
}

impl Target {
    pub fn new(url: &str) -> Arc<Target> {
        Arc::new(Target {
            url: RwLock::new(url.trim_end_matches('/').to_string()),
            up: AtomicBool::new(true),
        })
    }

    pub fn url(&self) -> String {
        self.url.read().unwrap().clone()
    }

    pub fn set_down(&self) {
        self.up.store(false, Ordering::SeqCst);
    }

    pub fn set_up(&self, url: &str) {
        *self.url.write().unwrap() = url.trim_end_matches('/').to_string();
        self.up.store(true, Ordering::SeqCst);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
}

/// Counters the test prints.
#[derive(Default)]
pub struct Stats {
    pub ops: AtomicU64,
    pub pushes: AtomicU64,
    pub retags: AtomicU64,
    /// Pushes of an image the client deleted a moment ago: its blobs are
    /// what GC is deleting right then.
    pub repushes: AtomicU64,
    pub tag_deletes: AtomicU64,
    pub manifest_deletes: AtomicU64,
    pub pulls: AtomicU64,
    pub blob_uploads: AtomicU64,
    pub blob_skips: AtomicU64,
    pub mounts: AtomicU64,
    pub mount_fallbacks: AtomicU64,
    /// Pushes that waited past the grace before their manifest.
    pub slow_pushes: AtomicU64,
    pub requests: AtomicU64,
    /// `MANIFEST_BLOB_UNKNOWN` answers (GC took a link between the upload
    /// and the manifest): the client uploads again, as rule 5 says.
    pub blob_unknown_retries: AtomicU64,
    /// Requests that got no answer (the server was killed).
    pub lost_answers: AtomicU64,
    /// A believed tag or one of its blobs that did not pull back whole.
    pub missing: AtomicU64,
    /// Answers no correct registry gives (logged).
    pub unexpected: AtomicU64,
    pub problems: Mutex<Vec<String>>,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn problem(&self, counter: &AtomicU64, text: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        eprintln!("gc load: {text}");
        let mut p = self.problems.lock().unwrap();
        if p.len() < 50 {
            p.push(text);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        let g = Stats::get;
        format!(
            "operations {} (pushes {}, re-pushes of deleted images {}, retags {}, tag deletes {}, \
             manifest deletes {}, pulls {}); \
             requests {}; blob uploads {}, blob HEAD hits {}, mounts {} (+{} fell back to upload); \
             slow pushes {}, MANIFEST_BLOB_UNKNOWN re-uploads {}; lost answers {}; missing {}; \
             unexpected {}",
            g(&self.ops),
            g(&self.pushes),
            g(&self.repushes),
            g(&self.retags),
            g(&self.tag_deletes),
            g(&self.manifest_deletes),
            g(&self.pulls),
            g(&self.requests),
            g(&self.blob_uploads),
            g(&self.blob_skips),
            g(&self.mounts),
            g(&self.mount_fallbacks),
            g(&self.slow_pushes),
            g(&self.blob_unknown_retries),
            g(&self.lost_answers),
            g(&self.missing),
            g(&self.unexpected),
        )
    }
}

/// An image a client pushed: manifest bytes and every blob's bytes.
#[derive(Clone)]
pub struct Image {
    pub digest: String,
    pub manifest: Bytes,
    pub blobs: Vec<(String, Bytes)>,
}

/// What a client knows at the end.
#[derive(Default)]
pub struct Model {
    /// (repo, tag) → image: acknowledged and not deleted by the client.
    pub believed: BTreeMap<(String, String), Image>,
    /// (repo, tag) whose last write got no answer: it may exist.
    pub maybe: BTreeMap<(String, String), Image>,
}

/// The workload's knobs.
#[derive(Clone)]
pub struct Load {
    pub repos: Vec<String>,
    pub clients: usize,
    pub ops_per_client: u64,
    /// Shared layers, drawn from by every client.
    pub shared: Arc<Vec<Bytes>>,
}

impl Load {
    pub fn new(project: &str, repos: usize, clients: usize, total_ops: u64) -> Load {
        let mut rng = StdRng::seed_from_u64(7);
        let shared = (0..24)
            .map(|i| {
                let mut b = vec![0u8; 512 + 64 * i];
                rng.fill(&mut b[..]);
                Bytes::from(b)
            })
            .collect();
        Load {
            repos: (0..repos).map(|i| format!("{project}/r{i}")).collect(),
            clients,
            ops_per_client: total_ops.div_ceil(clients as u64),
            shared: Arc::new(shared),
        }
    }
}

/// A failed request: no answer, or an answer the client cannot use.
enum Fail {
    /// The connection failed: the server may have done it or not.
    Lost,
    /// `MANIFEST_BLOB_UNKNOWN` on a manifest push.
    BlobUnknown,
    Status(u16, String),
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

pub struct Client {
    id: usize,
    http: reqwest::Client,
    target: Arc<Target>,
    stats: Arc<Stats>,
    load: Load,
    rng: StdRng,
    next: u64,
    pub model: Model,
    /// (repo, image) this client deleted lately, newest last.
    deleted: std::collections::VecDeque<(String, Image)>,
    /// Whether lost answers are expected (crash test) rather than failures.
    crash: bool,
}

fn join(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

impl Client {
    pub fn new(
        id: usize,
        target: Arc<Target>,
        stats: Arc<Stats>,
        load: Load,
        crash: bool,
    ) -> Client {
        Client {
            id,
            http: super::common::client_builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            target,
            stats,
            load,
            rng: StdRng::seed_from_u64(1000 + id as u64),
            next: 0,
            model: Model::default(),
            deleted: std::collections::VecDeque::new(),
            crash,
        }
    }

    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Resp, Fail> {
        Stats::bump(&self.stats.requests);
        let mut req = self.http.request(method.clone(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return self.lost(format!("{method} {url}: {e}")),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        match resp.bytes().await {
            Ok(body) => Ok(Resp {
                status,
                headers,
                body,
            }),
            Err(e) => self.lost(format!("{method} {url}: reading: {e}")),
        }
    }

    fn lost<T>(&self, text: String) -> Result<T, Fail> {
        if self.crash {
            Stats::bump(&self.stats.lost_answers);
        } else {
            self.stats.problem(&self.stats.unexpected, text);
        }
        Err(Fail::Lost)
    }

    fn unexpected<T>(&self, what: &str, r: &Resp) -> Result<T, Fail> {
        let body = String::from_utf8_lossy(&r.body).to_string();
        // While the server is being killed, a 5xx is a lost answer too.
        if self.crash && r.status >= 500 {
            Stats::bump(&self.stats.lost_answers);
            return Err(Fail::Lost);
        }
        self.stats.problem(
            &self.stats.unexpected,
            format!("client {}: {what}: {} {body}", self.id, r.status),
        );
        Err(Fail::Status(r.status, body))
    }

    /// Runs this client's share of operations.
    pub async fn run(mut self) -> Client {
        for _ in 0..self.load.ops_per_client {
            while !self.target.is_up() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let roll: u32 = self.rng.random_range(0..100);
            let has_images = !self.model.believed.is_empty();
            let result = match roll {
                _ if !has_images => self.push().await,
                0..=29 => self.push().await,
                30..=39 if !self.deleted.is_empty() => self.repush().await,
                30..=49 => self.retag().await,
                50..=59 => self.delete_tag().await,
                60..=66 => self.delete_manifest().await,
                _ => self.pull_one().await,
            };
            Stats::bump(&self.stats.ops);
            if let Err(Fail::Lost) = result {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self
    }

    fn new_image(&mut self, repo: &str) -> Image {
        self.next += 1;
        let mut blobs = Vec::new();
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"berth-gc-test\":\"client {} image {} {}\"}}",
            self.id,
            self.next,
            self.rng.random::<u64>()
        );
        blobs.push((digest_of(config.as_bytes()), Bytes::from(config)));
        let layers = self.rng.random_range(1..=3);
        for _ in 0..layers {
            let layer = if self.rng.random_bool(0.5) {
                let i = self.rng.random_range(0..self.load.shared.len());
                self.load.shared[i].clone()
            } else {
                let mut b = vec![0u8; self.rng.random_range(256..4096)];
                self.rng.fill(&mut b[..]);
                Bytes::from(b)
            };
            if blobs.iter().all(|(d, _)| *d != digest_of(&layer)) {
                blobs.push((digest_of(&layer), layer));
            }
        }
        let _ = repo;
        image_of(blobs)
    }

    fn pick_repo(&mut self) -> String {
        let i = self.rng.random_range(0..self.load.repos.len());
        self.load.repos[i].clone()
    }

    fn pick_believed(&mut self) -> Option<((String, String), Image)> {
        if self.model.believed.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..self.model.believed.len());
        self.model
            .believed
            .iter()
            .nth(i)
            .map(|(k, v)| (k.clone(), v.clone()))
    }

    /// A repository other than `repo` where one of this client's live
    /// images uses `digest` (so it is linked there).
    fn mount_source(&self, repo: &str, digest: &str) -> Option<String> {
        self.model
            .believed
            .iter()
            .find(|((r, _), img)| r != repo && img.blobs.iter().any(|(d, _)| d == digest))
            .map(|((r, _), _)| r.clone())
    }

    async fn upload(
        &mut self,
        repo: &str,
        digest: &str,
        data: &Bytes,
        check: bool,
    ) -> Result<(), Fail> {
        let base = self.target.url();
        if check {
            if let Some(from) = self.mount_source(repo, digest)
                && self.rng.random_bool(0.5)
            {
                let url = format!("{base}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
                let r = self.request(reqwest::Method::POST, &url, &[], None).await?;
                match r.status {
                    201 => {
                        Stats::bump(&self.stats.mounts);
                        return Ok(());
                    }
                    202 => {
                        Stats::bump(&self.stats.mount_fallbacks);
                        let location = r.headers.get("location").and_then(|v| v.to_str().ok());
                        let Some(location) = location else {
                            return self.unexpected("mount without Location", &r);
                        };
                        return self
                            .finish_session(&join(&base, location), digest, data)
                            .await;
                    }
                    _ => return self.unexpected("mount", &r),
                }
            }
            let url = format!("{base}/v2/{repo}/blobs/{digest}");
            let r = self.request(reqwest::Method::HEAD, &url, &[], None).await?;
            match r.status {
                200 => {
                    Stats::bump(&self.stats.blob_skips);
                    return Ok(());
                }
                404 => {}
                _ => return self.unexpected("blob HEAD", &r),
            }
        }
        if self.rng.random_bool(0.7) {
            let url = format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}");
            let r = self
                .request(reqwest::Method::POST, &url, &[], Some(data.clone()))
                .await?;
            if r.status != 201 {
                return self.unexpected("monolithic upload", &r);
            }
        } else {
            let url = format!("{base}/v2/{repo}/blobs/uploads/");
            let r = self.request(reqwest::Method::POST, &url, &[], None).await?;
            let location = r.headers.get("location").and_then(|v| v.to_str().ok());
            let (202, Some(location)) = (r.status, location) else {
                return self.unexpected("upload start", &r);
            };
            self.finish_session(&join(&base, location), digest, data)
                .await?;
        }
        Stats::bump(&self.stats.blob_uploads);
        Ok(())
    }

    async fn finish_session(&self, location: &str, digest: &str, data: &Bytes) -> Result<(), Fail> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let r = self
            .request(
                reqwest::Method::PUT,
                &url,
                &[("Content-Type", "application/octet-stream")],
                Some(data.clone()),
            )
            .await?;
        if r.status != 201 {
            return self.unexpected("upload finish", &r);
        }
        Ok(())
    }

    async fn put_manifest(&mut self, repo: &str, tag: &str, image: &Image) -> Result<(), Fail> {
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.target.url());
        let r = self
            .request(
                reqwest::Method::PUT,
                &url,
                &[("Content-Type", OCI_MANIFEST)],
                Some(image.manifest.clone()),
            )
            .await?;
        match r.status {
            201 => {
                let got = r
                    .headers
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if got != image.digest {
                    return self.unexpected("manifest digest header", &r);
                }
                Ok(())
            }
            400 if String::from_utf8_lossy(&r.body).contains("MANIFEST_BLOB_UNKNOWN") => {
                Stats::bump(&self.stats.blob_unknown_retries);
                Err(Fail::BlobUnknown)
            }
            _ => self.unexpected("manifest PUT", &r),
        }
    }

    /// Pushes `image` as `repo:tag`: blobs (HEAD, mount or upload), then
    /// the manifest; on `MANIFEST_BLOB_UNKNOWN` everything again.
    async fn push_image(
        &mut self,
        repo: &str,
        tag: &str,
        image: &Image,
        upload: bool,
    ) -> Result<(), Fail> {
        let key = (repo.to_string(), tag.to_string());
        let mut check = true;
        let mut upload = upload;
        for _ in 0..20 {
            if upload {
                for (d, b) in &image.blobs {
                    self.upload(repo, d, b, check).await?;
                }
                // Now and then a slow client: GC's grace runs out between
                // the blobs and the manifest, so the links may be gone.
                if self.rng.random_bool(0.02) {
                    Stats::bump(&self.stats.slow_pushes);
                    tokio::time::sleep(Duration::from_millis(1300)).await;
                }
            }
            self.model.maybe.insert(key.clone(), image.clone());
            match self.put_manifest(repo, tag, image).await {
                Ok(()) => {
                    self.model.maybe.remove(&key);
                    self.model.believed.insert(key, image.clone());
                    return Ok(());
                }
                Err(Fail::BlobUnknown) => {
                    // The client's answer to rule 5: upload again, no HEAD.
                    self.model.maybe.remove(&key);
                    check = false;
                    upload = true;
                }
                Err(e) => return Err(e),
            }
        }
        self.model.maybe.remove(&key);
        self.stats.problem(
            &self.stats.unexpected,
            format!("client {}: {repo}:{tag} never went through", self.id),
        );
        Err(Fail::Status(0, "retries exhausted".into()))
    }

    async fn push(&mut self) -> Result<(), Fail> {
        let repo = self.pick_repo();
        let image = self.new_image(&repo);
        let tag = format!("c{}-{}", self.id, self.next);
        Stats::bump(&self.stats.pushes);
        self.push_image(&repo, &tag, &image, true).await
    }

    /// An image this client deleted lately, pushed again under a new tag:
    /// its blobs may be going right now (restore window and grace are
    /// seconds), so the upload meets GC on the same digests.
    async fn repush(&mut self) -> Result<(), Fail> {
        let i = self.rng.random_range(0..self.deleted.len());
        let Some((repo, image)) = self.deleted.remove(i) else {
            return Ok(());
        };
        self.next += 1;
        let tag = format!("c{}-{}", self.id, self.next);
        Stats::bump(&self.stats.repushes);
        self.push_image(&repo, &tag, &image, true).await
    }

    /// Remembers an image this client no longer tags anywhere.
    fn forget(&mut self, repo: &str, image: &Image) {
        let still = self
            .model
            .believed
            .iter()
            .any(|((r, _), img)| r == repo && img.digest == image.digest);
        if !still {
            self.deleted.push_back((repo.to_string(), image.clone()));
            if self.deleted.len() > 24 {
                self.deleted.pop_front();
            }
        }
    }

    /// The same manifest under a new tag (its blobs are referenced, so no
    /// upload is needed; GC may still have taken them if the image went
    /// untagged meanwhile: then the push uploads them again).
    async fn retag(&mut self) -> Result<(), Fail> {
        let Some(((repo, _), image)) = self.pick_believed() else {
            return Ok(());
        };
        self.next += 1;
        let tag = format!("c{}-{}", self.id, self.next);
        Stats::bump(&self.stats.retags);
        self.push_image(&repo, &tag, &image, false).await
    }

    async fn delete(&mut self, repo: &str, reference: &str) -> Result<(), Fail> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.target.url());
        let r = self
            .request(reqwest::Method::DELETE, &url, &[], None)
            .await?;
        if r.status != 202 {
            return self.unexpected("DELETE", &r);
        }
        Ok(())
    }

    async fn delete_tag(&mut self) -> Result<(), Fail> {
        let Some(((repo, tag), image)) = self.pick_believed() else {
            return Ok(());
        };
        Stats::bump(&self.stats.tag_deletes);
        let key = (repo.clone(), tag.clone());
        self.model.believed.remove(&key);
        self.model.maybe.insert(key.clone(), image);
        self.delete(&repo, &tag).await?;
        if let Some(image) = self.model.maybe.remove(&key) {
            self.forget(&repo, &image);
        }
        Ok(())
    }

    async fn delete_manifest(&mut self) -> Result<(), Fail> {
        let Some(((repo, _), image)) = self.pick_believed() else {
            return Ok(());
        };
        Stats::bump(&self.stats.manifest_deletes);
        let keys: Vec<(String, String)> = self
            .model
            .believed
            .iter()
            .filter(|((r, _), img)| *r == repo && img.digest == image.digest)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.model.believed.remove(k);
            self.model.maybe.insert(k.clone(), image.clone());
        }
        self.delete(&repo, &image.digest).await?;
        for k in &keys {
            self.model.maybe.remove(k);
        }
        self.forget(&repo, &image);
        Ok(())
    }

    async fn pull_one(&mut self) -> Result<(), Fail> {
        let Some(((repo, tag), image)) = self.pick_believed() else {
            return Ok(());
        };
        Stats::bump(&self.stats.pulls);
        let base = self.target.url();
        match pull(&self.http, &self.stats, &base, &repo, &tag).await {
            Ok(pulled) if pulled.digest == image.digest && pulled.blobs == image.blobs => Ok(()),
            Ok(_) => {
                self.stats.problem(
                    &self.stats.missing,
                    format!("client {}: {repo}:{tag} pulled back different", self.id),
                );
                Ok(())
            }
            Err(PullError::Lost) => Err(Fail::Lost),
            Err(PullError::Missing(what)) => {
                self.stats.problem(
                    &self.stats.missing,
                    format!("client {}: believed {repo}:{tag}: {what}", self.id),
                );
                Ok(())
            }
        }
    }
}

/// Builds the OCI manifest of `blobs` (the first is the config).
pub fn image_of(blobs: Vec<(String, Bytes)>) -> Image {
    let desc = |media: &str, (d, b): &(String, Bytes)| serde_json::json!({"mediaType": media, "digest": d, "size": b.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &blobs[0]),
        "layers": blobs[1..].iter().map(|b| desc("application/vnd.oci.image.layer.v1.tar", b)).collect::<Vec<_>>(),
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    Image {
        digest: digest_of(&manifest),
        manifest,
        blobs,
    }
}

pub enum PullError {
    Lost,
    Missing(String),
}

/// Pulls `repo:tag` and every blob, re-hashing each.
pub async fn pull(
    http: &reqwest::Client,
    stats: &Stats,
    base: &str,
    repo: &str,
    tag: &str,
) -> Result<Image, PullError> {
    let get = |url: String, accept: &'static str| async move {
        Stats::bump(&stats.requests);
        let resp = http
            .get(&url)
            .header("Accept", accept)
            .send()
            .await
            .map_err(|_| PullError::Lost)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|_| PullError::Lost)?;
        if status >= 500 {
            return Err(PullError::Lost);
        }
        if status != 200 {
            return Err(PullError::Missing(format!(
                "GET {url}: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(body)
    };
    let manifest = get(format!("{base}/v2/{repo}/manifests/{tag}"), OCI_MANIFEST).await?;
    let parsed: serde_json::Value = serde_json::from_slice(&manifest)
        .map_err(|e| PullError::Missing(format!("manifest is not JSON: {e}")))?;
    let mut descs = vec![parsed["config"].clone()];
    descs.extend(parsed["layers"].as_array().cloned().unwrap_or_default());
    let mut blobs = Vec::new();
    for desc in descs {
        let d = desc["digest"].as_str().unwrap_or_default().to_string();
        let body = get(
            format!("{base}/v2/{repo}/blobs/{d}"),
            "application/octet-stream",
        )
        .await?;
        if digest_of(&body) != d {
            return Err(PullError::Missing(format!(
                "blob {d} of {repo}:{tag} re-hashes to {}",
                digest_of(&body)
            )));
        }
        blobs.push((d, body));
    }
    Ok(Image {
        digest: digest_of(&manifest),
        manifest,
        blobs,
    })
}

/// Figures from a GC loop.
#[derive(Default)]
pub struct GcTotals {
    pub cycles: AtomicU64,
    pub blobs: AtomicU64,
    pub bytes: AtomicU64,
    pub manifests: AtomicU64,
    pub links: AtomicU64,
    pub trash: AtomicU64,
    pub orphans: AtomicU64,
    pub failed: AtomicU64,
}

impl GcTotals {
    pub fn add(&self, report: &serde_json::Value) {
        let n = |k: &str| report[k].as_u64().unwrap_or(0);
        self.cycles.fetch_add(1, Ordering::Relaxed);
        self.blobs.fetch_add(n("blobs_deleted"), Ordering::Relaxed);
        self.bytes
            .fetch_add(n("bytes_reclaimed") + n("orphan_bytes"), Ordering::Relaxed);
        self.manifests
            .fetch_add(n("manifests_deleted"), Ordering::Relaxed);
        self.links.fetch_add(n("links_removed"), Ordering::Relaxed);
        self.trash.fetch_add(n("trash_purged"), Ordering::Relaxed);
        self.orphans
            .fetch_add(n("orphans_deleted"), Ordering::Relaxed);
    }

    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "GC cycles {} (failed {}): blobs deleted {}, bytes reclaimed {}, untagged manifests {}, \
             links removed {}, trash entries purged {}, orphans {}",
            g(&self.cycles),
            g(&self.failed),
            g(&self.blobs),
            g(&self.bytes),
            g(&self.manifests),
            g(&self.links),
            g(&self.trash),
            g(&self.orphans),
        )
    }
}

/// One GC run through the API; the report, or `None` when the server did
/// not answer.
pub async fn gc_once(http: &reqwest::Client, base: &str) -> Option<serde_json::Value> {
    let resp = http
        .post(format!("{base}/api/v1/system/gc"))
        .header("Content-Type", "application/json")
        .body(r#"{"dry_run":false}"#)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.ok()?;
    assert_eq!(
        status,
        200,
        "POST /api/v1/system/gc: {}",
        String::from_utf8_lossy(&body)
    );
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    Some(report)
}

/// Runs GC through the API in a loop until `stop`, idle while `paused`.
pub async fn gc_loop(
    target: Arc<Target>,
    totals: Arc<GcTotals>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
) {
    let http = super::common::client_builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    while !stop.load(Ordering::SeqCst) {
        if !target.is_up() || paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        match gc_once(&http, &target.url()).await {
            Some(report) => {
                if report["error"].is_string() {
                    totals.failed.fetch_add(1, Ordering::Relaxed);
                }
                totals.add(&report);
            }
            None => {
                totals.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every blob file under the filesystem store.
pub fn store_blobs(data_dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let root = data_dir.join("blobs");
    let Ok(algs) = std::fs::read_dir(&root) else {
        return out;
    };
    for alg in algs.flatten() {
        let alg_name = alg.file_name().to_string_lossy().to_string();
        for shard in std::fs::read_dir(alg.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for file in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                out.insert(format!("{alg_name}:{}", file.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// Every tag of `repo`, through the API.
pub async fn list_tags(http: &reqwest::Client, base: &str, repo: &str) -> BTreeSet<String> {
    let resp = http
        .get(format!("{base}/v2/{repo}/tags/list?n=100000"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if status == 404 {
        return BTreeSet::new();
    }
    assert_eq!(status, 200, "tags of {repo}: {body}");
    body["tags"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}

/// The end state, checked: every believed tag pulls back byte-identical;
/// every tag that exists is believed or maybe, and pulls back whole.
/// Returns the blobs the live tags reference, the number of problems and
/// the number of tags.
pub async fn verify(
    base: &str,
    load: &Load,
    models: &[Model],
    stats: &Stats,
) -> (HashSet<String>, u64, usize) {
    use futures::StreamExt as _;
    let http = super::common::client();
    let mut believed: HashMap<(String, String), &Image> = HashMap::new();
    let mut maybe: HashMap<(String, String), &Image> = HashMap::new();
    for m in models {
        believed.extend(m.believed.iter().map(|(k, v)| (k.clone(), v)));
        maybe.extend(m.maybe.iter().map(|(k, v)| (k.clone(), v)));
    }
    let mut missing = 0u64;
    let mut to_pull = Vec::new();
    for repo in &load.repos {
        let existing = list_tags(&http, base, repo).await;
        for key in believed.keys().filter(|(r, _)| r == repo) {
            if !existing.contains(&key.1) {
                missing += 1;
                eprintln!("believed tag {}:{} is not listed", key.0, key.1);
            }
        }
        for tag in existing {
            let key = (repo.clone(), tag);
            match believed.get(&key).or_else(|| maybe.get(&key)) {
                Some(expected) => to_pull.push((key, (*expected).clone())),
                None => {
                    missing += 1;
                    eprintln!(
                        "tag {}:{} exists but no client believes it might",
                        key.0, key.1
                    );
                }
            }
        }
    }
    let tags = to_pull.len();
    let results: Vec<Result<Vec<String>, String>> = futures::stream::iter(to_pull)
        .map(|((repo, tag), expected)| {
            let http = http.clone();
            async move {
                match pull(&http, stats, base, &repo, &tag).await {
                    Ok(img) if img.digest == expected.digest && img.blobs == expected.blobs => {
                        Ok(img.blobs.into_iter().map(|(d, _)| d).collect())
                    }
                    Ok(_) => Err(format!("{repo}:{tag} pulled back different")),
                    Err(PullError::Lost) => panic!("the server stopped answering"),
                    Err(PullError::Missing(what)) => Err(format!("{repo}:{tag}: {what}")),
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut referenced = HashSet::new();
    for r in results {
        match r {
            Ok(blobs) => referenced.extend(blobs),
            Err(what) => {
                missing += 1;
                eprintln!("{what}");
            }
        }
    }
    (referenced, missing, tags)
}

/// Prints the operation count every ten seconds until `stop`.
pub async fn progress(stats: Arc<Stats>, totals: Arc<GcTotals>, stop: Arc<AtomicBool>) {
    let mut ticks = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        ticks += 1;
        if ticks.is_multiple_of(20) {
            eprintln!(
                "gc load: {} s: {} operations, {} requests, {} GC cycles",
                ticks / 2,
                Stats::get(&stats.ops),
                Stats::get(&stats.requests),
                totals.cycles.load(Ordering::Relaxed)
            );
        }
    }
}
