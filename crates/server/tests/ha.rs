//! High availability: three `berth serve` nodes, each with its own scratch
//! data directory, sharing one fresh PostgreSQL database and one S3 prefix
//! (the services scripts/start-services.sh starts).
//!
//! - `docker push` through node 1, `docker pull` through node 2;
//! - a chunked upload started on node 1, continued on node 2, finished on
//!   node 3;
//! - node 2 killed with SIGKILL in the middle of pushes: clients retry on
//!   another node, and every acknowledged push pulls back intact;
//! - a rolling restart of all three nodes under a steady push/pull load with
//!   zero failed client operations.
//!
//! Clients behave like docker behind a load balancer without sticky
//! sessions: every request goes to the next live node, and a step that
//! fails with a connection error or a 5xx is retried on another node.
//! Timing only decides when to kill or restart; no assertion depends on it.
//! Each test prints its figures. The random data comes from one seed,
//! printed first; set `BERTH_HA_SEED` to replay it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{
    Berth, DockerCli, digest_of, require_tool, run, run_status, service_env, shared_backends,
    unique,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const OCTET: &str = "application/octet-stream";
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

// ---------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------

/// One node: its process and its scratch directory (kept across restarts).
struct Node {
    berth: Berth,
    dir: tempfile::TempDir,
}

/// Starts `n` nodes at once, as a Deployment's replicas do: on a fresh
/// database their migrations race (and must not conflict).
fn start_cluster(env: &[(String, String)], n: usize) -> Vec<Node> {
    std::thread::scope(|s| {
        let starting: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let berth = Berth::start_env(dir.path(), "127.0.0.1:0", &[], env);
                    Node { berth, dir }
                })
            })
            .collect();
        starting
            .into_iter()
            .map(|h| h.join().expect("start a node"))
            .collect()
    })
}

fn http_client() -> reqwest::Client {
    common::client_builder()
        .no_proxy()
        // A guard against a hung test, not a performance assertion.
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

async fn assert_ready(http: &reqwest::Client, url: &str) {
    let r = http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}/readyz: {e}"));
    assert_eq!(r.status(), StatusCode::OK, "{url}/readyz");
}

fn seed() -> u64 {
    let seed = match std::env::var("BERTH_HA_SEED") {
        Ok(s) => s.parse().expect("BERTH_HA_SEED is a number"),
        Err(_) => rand::rng().random(),
    };
    println!("seed {seed} (BERTH_HA_SEED={seed} replays it)");
    seed
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

// ---------------------------------------------------------------------------
// A client behind a load balancer
// ---------------------------------------------------------------------------

/// The URLs a load balancer currently sends traffic to.
#[derive(Clone)]
struct Live(Arc<RwLock<Vec<String>>>);

impl Live {
    fn new(urls: Vec<String>) -> Live {
        Live(Arc::new(RwLock::new(urls)))
    }

    fn pick(&self, n: usize) -> String {
        let urls = self.0.read().unwrap();
        assert!(!urls.is_empty(), "no live node");
        urls[n % urls.len()].clone()
    }

    fn remove(&self, url: &str) {
        self.0.write().unwrap().retain(|u| u != url);
    }

    fn add(&self, url: String) {
        self.0.write().unwrap().push(url);
    }
}

/// What the clients saw, shared by all of them.
#[derive(Default)]
struct Figures {
    /// Client operations finished (an image pushed or pulled).
    ops: AtomicUsize,
    pushes: AtomicUsize,
    pulls: AtomicUsize,
    requests: AtomicUsize,
    /// Requests that failed with a connection error or a 5xx.
    failures_seen: AtomicUsize,
    /// Steps attempted again (on another node).
    retries: AtomicUsize,
    /// Upload sessions continued on another node after a failed request.
    sessions_continued: AtomicUsize,
    /// Blob uploads started over because their session was gone.
    blobs_restarted: AtomicUsize,
    /// 404/416 answers about a session after a node died under it.
    session_conflicts: AtomicUsize,
    /// Manifest PUTs answered 201.
    acknowledged: AtomicUsize,
    /// Operations that failed after all their retries.
    failed_ops: AtomicUsize,
}

fn get(n: &AtomicUsize) -> usize {
    n.load(Ordering::SeqCst)
}

fn bump(n: &AtomicUsize) {
    n.fetch_add(1, Ordering::SeqCst);
}

#[derive(Clone, Copy)]
struct Policy {
    /// Attempts per step, the first included.
    attempts: usize,
    backoff: Duration,
    /// After a SIGKILL a session may have lost its last request's effect
    /// (a 404 or 416 about it); after a graceful stop it never may.
    tolerate_lost_sessions: bool,
}

enum StepError {
    /// A connection error or a 5xx (or, when tolerated, a session a dead
    /// node left behind): try the step again on another node.
    Retry(String),
    /// Anything else: the registry gave a wrong answer.
    Fatal(String),
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    what: String,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn unexpected(&self) -> StepError {
        StepError::Fatal(format!(
            "{}: unexpected {}: {}",
            self.what,
            self.status,
            String::from_utf8_lossy(&self.body)
        ))
    }
}

/// An image as pushed, to pull back and compare.
#[derive(Clone, Debug)]
struct Pushed {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    /// (digest, size) of the config and every layer.
    blobs: Vec<(String, usize)>,
}

struct Image {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

impl Image {
    /// A config and two layers: `base` (shared by a client's images, so
    /// later pushes find it already there, as docker does) and a fresh one.
    fn random(rng: &mut StdRng, label: &str, base: &[u8]) -> Image {
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"berth.ha": label}},
        })
        .to_string()
        .into_bytes();
        let mut layer = vec![0u8; rng.random_range(1..=1_200 * KIB)];
        rng.fill_bytes(&mut layer);
        Image {
            config,
            layers: vec![base.to_vec(), layer],
        }
    }

    fn manifest(&self) -> Vec<u8> {
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| json!({"mediaType": LAYER_TYPE, "digest": digest_of(l), "size": l.len()}))
            .collect();
        json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(&self.config), "size": self.config.len()},
            "layers": layers,
        })
        .to_string()
        .into_bytes()
    }
}

/// Where a blob upload stands between attempts.
struct Session {
    location: String,
}

/// Upload chunk size: blobs bigger than this go as POST, PATCH…, PUT.
const CHUNK: usize = 256 * KIB;

struct Client {
    http: reqwest::Client,
    live: Live,
    /// Round robin: every request goes to the next live node.
    next: usize,
    figs: Arc<Figures>,
    policy: Policy,
}

impl Client {
    fn new(live: &Live, figs: &Arc<Figures>, policy: Policy, start: usize) -> Client {
        Client {
            http: http_client(),
            live: live.clone(),
            next: start,
            figs: figs.clone(),
            policy,
        }
    }

    /// Sends one request to the next live node and reads the whole answer.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, StepError> {
        let node = self.live.pick(self.next);
        self.next += 1;
        bump(&self.figs.requests);
        let url = format!("{node}{path}");
        let what = format!("{method} {url}");
        let mut req = self.http.request(method, &url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await.map_err(|e| self.transport(&what, &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport(&what, &e))?
            .to_vec();
        if status.is_server_error() {
            bump(&self.figs.failures_seen);
            return Err(StepError::Retry(format!(
                "{what}: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(Resp {
            status,
            headers,
            body,
            what,
        })
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> StepError {
        let text = format!("{what}: {}", error_chain(e));
        if e.is_timeout() {
            return StepError::Fatal(format!("{text} (the node hung)"));
        }
        bump(&self.figs.failures_seen);
        StepError::Retry(text)
    }

    /// After a failed attempt: Ok to try again (after the backoff), Err to
    /// give up.
    async fn again(&self, attempt: &mut usize, step: &str, e: StepError) -> Result<(), String> {
        match e {
            StepError::Fatal(text) => Err(format!("{step}: {text}")),
            StepError::Retry(text) => {
                *attempt += 1;
                if *attempt >= self.policy.attempts {
                    return Err(format!(
                        "{step}: gave up after {attempt} attempts; last: {text}"
                    ));
                }
                println!("retrying {step} ({text})");
                bump(&self.figs.retries);
                tokio::time::sleep(self.policy.backoff).await;
                Ok(())
            }
        }
    }

    /// A 404 or 416 about a session: tolerated (retry) only after a kill.
    fn lost_session(&self, r: &Resp) -> StepError {
        if self.policy.tolerate_lost_sessions {
            bump(&self.figs.session_conflicts);
            StepError::Retry(format!(
                "{}: {} (session state lost with the dead node)",
                r.what, r.status
            ))
        } else {
            r.unexpected()
        }
    }

    /// Pushes one blob, retrying the step on another node: continues the
    /// upload session where the registry says it stands, or starts over
    /// when the session is gone.
    async fn push_blob(&mut self, repo: &str, data: &[u8]) -> Result<(), String> {
        let digest = digest_of(data);
        let mut session = None;
        let mut attempt = 0;
        loop {
            match self.try_push_blob(repo, data, &digest, &mut session).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.again(&mut attempt, &format!("blob {digest} to {repo}"), e)
                        .await?
                }
            }
        }
    }

    async fn try_push_blob(
        &mut self,
        repo: &str,
        data: &[u8],
        digest: &str,
        session: &mut Option<Session>,
    ) -> Result<(), StepError> {
        // As docker does: a blob the repository has is not sent again (also
        // how a finished upload whose answer was lost is recognized).
        let r = self
            .send(
                Method::HEAD,
                &format!("/v2/{repo}/blobs/{digest}"),
                &[],
                None,
            )
            .await?;
        match r.status {
            StatusCode::OK => return Ok(()),
            StatusCode::NOT_FOUND => {}
            _ => return Err(r.unexpected()),
        }
        let mut offset = 0;
        if let Some(s) = session.as_ref() {
            let r = self.send(Method::GET, &s.location, &[], None).await?;
            match r.status {
                StatusCode::NO_CONTENT => {
                    offset = range_end(&r)?;
                    bump(&self.figs.sessions_continued);
                }
                StatusCode::NOT_FOUND if self.policy.tolerate_lost_sessions => {
                    // Finished or cancelled by the node that died: start over.
                    bump(&self.figs.session_conflicts);
                    bump(&self.figs.blobs_restarted);
                    *session = None;
                }
                _ => return Err(r.unexpected()),
            }
        }
        if session.is_none() {
            if data.len() <= CHUNK {
                // Monolithic: the request is the session.
                let r = self
                    .send(
                        Method::POST,
                        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                        &[(CONTENT_TYPE.as_str(), OCTET.into())],
                        Some(data.to_vec()),
                    )
                    .await?;
                return match r.status {
                    StatusCode::CREATED => Ok(()),
                    _ => Err(r.unexpected()),
                };
            }
            let r = self
                .send(
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/"),
                    &[],
                    None,
                )
                .await?;
            if r.status != StatusCode::ACCEPTED || r.header(LOCATION.as_str()).is_empty() {
                return Err(r.unexpected());
            }
            *session = Some(Session {
                location: r.header(LOCATION.as_str()).to_string(),
            });
        }
        let location = session.as_ref().expect("a session").location.clone();
        while offset < data.len() {
            let end = (offset + CHUNK).min(data.len());
            let r = self
                .send(
                    Method::PATCH,
                    &location,
                    &[
                        (CONTENT_TYPE.as_str(), OCTET.into()),
                        (CONTENT_RANGE.as_str(), format!("{offset}-{}", end - 1)),
                        (CONTENT_LENGTH.as_str(), (end - offset).to_string()),
                    ],
                    Some(data[offset..end].to_vec()),
                )
                .await?;
            match r.status {
                StatusCode::ACCEPTED => {
                    let now = range_end(&r)?;
                    if now != end {
                        return Err(StepError::Fatal(format!(
                            "{}: Range says {now} bytes, sent {end}",
                            r.what
                        )));
                    }
                    offset = end;
                }
                StatusCode::NOT_FOUND | StatusCode::RANGE_NOT_SATISFIABLE => {
                    return Err(self.lost_session(&r));
                }
                _ => return Err(r.unexpected()),
            }
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = self
            .send(
                Method::PUT,
                &format!("{location}{sep}digest={digest}"),
                &[(CONTENT_LENGTH.as_str(), "0".into())],
                Some(Vec::new()),
            )
            .await?;
        match r.status {
            StatusCode::CREATED if r.header("docker-content-digest") == digest => {
                *session = None;
                Ok(())
            }
            StatusCode::NOT_FOUND | StatusCode::RANGE_NOT_SATISFIABLE => Err(self.lost_session(&r)),
            _ => Err(r.unexpected()),
        }
    }

    /// PUT of a manifest by tag, retried on another node; Ok once a node
    /// acknowledged it with 201.
    async fn push_manifest(
        &mut self,
        repo: &str,
        tag: &str,
        manifest: &[u8],
    ) -> Result<(), String> {
        let mut attempt = 0;
        let step = format!("manifest {repo}:{tag}");
        loop {
            let result = self
                .send(
                    Method::PUT,
                    &format!("/v2/{repo}/manifests/{tag}"),
                    &[(CONTENT_TYPE.as_str(), MANIFEST_TYPE.into())],
                    Some(manifest.to_vec()),
                )
                .await
                .and_then(|r| {
                    if r.status == StatusCode::CREATED
                        && r.header("docker-content-digest") == digest_of(manifest)
                    {
                        Ok(())
                    } else {
                        Err(r.unexpected())
                    }
                });
            match result {
                Ok(()) => return Ok(()),
                Err(e) => self.again(&mut attempt, &step, e).await?,
            }
        }
    }

    /// Config and layers, then the manifest, each step retried.
    async fn push_image(&mut self, repo: &str, tag: &str, image: &Image) -> Result<Pushed, String> {
        let mut blobs = vec![(digest_of(&image.config), image.config.len())];
        self.push_blob(repo, &image.config).await?;
        for layer in &image.layers {
            self.push_blob(repo, layer).await?;
            blobs.push((digest_of(layer), layer.len()));
        }
        let manifest = image.manifest();
        self.push_manifest(repo, tag, &manifest).await?;
        bump(&self.figs.acknowledged);
        Ok(Pushed {
            repo: repo.to_string(),
            tag: tag.to_string(),
            manifest,
            blobs,
        })
    }

    /// One GET, retried on another node; the body must have `digest`.
    async fn get_verified(
        &mut self,
        path: &str,
        accept: &str,
        digest: &str,
    ) -> Result<Vec<u8>, String> {
        let mut attempt = 0;
        loop {
            let result = self
                .send(Method::GET, path, &[(ACCEPT.as_str(), accept.into())], None)
                .await
                .and_then(|r| {
                    if r.status == StatusCode::OK && digest_of(&r.body) == digest {
                        Ok(r.body)
                    } else {
                        Err(r.unexpected())
                    }
                });
            match result {
                Ok(body) => return Ok(body),
                Err(e) => self.again(&mut attempt, path, e).await?,
            }
        }
    }

    /// Pulls an acknowledged image: manifest by tag (byte-identical), then
    /// every blob (digest checked).
    async fn pull_image(&mut self, p: &Pushed) -> Result<(), String> {
        let manifest = self
            .get_verified(
                &format!("/v2/{}/manifests/{}", p.repo, p.tag),
                MANIFEST_TYPE,
                &digest_of(&p.manifest),
            )
            .await?;
        assert_eq!(manifest, p.manifest);
        for (digest, _) in &p.blobs {
            self.get_verified(&format!("/v2/{}/blobs/{digest}", p.repo), "*/*", digest)
                .await?;
        }
        Ok(())
    }
}

/// The number of bytes a session holds, from its `Range: 0-<last>` header
/// (`0-0` reads as empty: chunks here are never one byte long).
fn range_end(r: &Resp) -> Result<usize, StepError> {
    let range = r.header("range");
    let last = range
        .strip_prefix("0-")
        .and_then(|l| l.parse::<usize>().ok())
        .ok_or_else(|| StepError::Fatal(format!("{}: bad Range {range:?}", r.what)))?;
    Ok(if last == 0 { 0 } else { last + 1 })
}

/// Pulls every acknowledged push through `url` directly (a few images at
/// a time): manifest by tag and by digest byte-identical, every blob with
/// its digest and size. Returns the number of images verified.
async fn verify_through(http: &reqwest::Client, url: &str, pushed: &[Pushed]) -> usize {
    use futures::StreamExt as _;
    futures::stream::iter(pushed)
        .map(|p| verify_image(http, url, p))
        .buffer_unordered(4)
        .count()
        .await
}

async fn verify_image(http: &reqwest::Client, url: &str, p: &Pushed) {
    let digest = digest_of(&p.manifest);
    for reference in [p.tag.as_str(), digest.as_str()] {
        let r = http
            .get(format!("{url}/v2/{}/manifests/{reference}", p.repo))
            .header(ACCEPT, MANIFEST_TYPE)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{}:{reference} via {url}",
            p.repo
        );
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        let body = r.bytes().await.unwrap();
        assert_eq!(
            body.as_ref(),
            p.manifest.as_slice(),
            "{}:{reference} via {url}",
            p.repo
        );
    }
    for (digest, size) in &p.blobs {
        let r = http
            .get(format!("{url}/v2/{}/blobs/{digest}", p.repo))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}@{digest} via {url}", p.repo);
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), *size, "{}@{digest} via {url}", p.repo);
        assert_eq!(digest_of(&body), *digest, "{}@{digest} via {url}", p.repo);
    }
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// a. docker push through node 1, docker pull through node 2
// ---------------------------------------------------------------------------

/// Removes the local images a test made, even when it fails.
struct LocalImages<'a> {
    docker: &'a DockerCli,
    refs: Vec<String>,
}

impl Drop for LocalImages<'_> {
    fn drop(&mut self) {
        for r in &self.refs {
            let _ = run_status(&mut self.docker.cmd(&["rmi", "-f", r]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_push_through_node_1_pulls_through_node_2() {
    let docker = DockerCli::new(&require_tool("docker"));
    let tar_tool = require_tool("tar");
    let env = shared_backends("ha").await;
    let nodes = tokio::task::block_in_place(|| start_cluster(&env, 3));
    let http = http_client();
    for n in &nodes {
        assert_ready(&http, &n.berth.url).await;
    }

    tokio::task::block_in_place(|| {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let content = unique("berth ha docker test ");
        std::fs::write(root.join("etc/ha.txt"), &content).unwrap();
        std::fs::write(root.join("data.bin"), vec![7u8; 300 * KIB]).unwrap();
        let tar = work.path().join("rootfs.tar");
        run(Command::new(&tar_tool)
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        let repo = unique("ha/docker");
        let pushed_ref = format!("{}/{repo}:1.0", nodes[0].berth.addr);
        let pulled_ref = format!("{}/{repo}:1.0", nodes[1].berth.addr);
        let _cleanup = LocalImages {
            docker: &docker,
            refs: vec![pushed_ref.clone(), pulled_ref.clone()],
        };
        run(docker.cmd(&["import"]).arg(&tar).arg(&pushed_ref));
        // One login per node address, as docker keys credentials by
        // registry host; the token endpoint of either node serves it.
        docker.login(&nodes[0].berth.addr);
        docker.login(&nodes[1].berth.addr);
        let push = run(&mut docker.cmd(&["push", &pushed_ref]));
        let pushed_digest = push
            .split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .unwrap_or_else(|| panic!("no digest in: {push}"))
            .to_string();
        run(&mut docker.cmd(&["rmi", &pushed_ref]));
        run(&mut docker.cmd(&["pull", &pulled_ref]));
        let repo_digests = run(&mut docker.cmd(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &pulled_ref,
        ]));
        assert!(
            repo_digests.contains(&pushed_digest),
            "{repo_digests} lacks {pushed_digest}"
        );
        // The pulled image has the file we put in.
        let container = run(&mut docker.cmd(&["create", &pulled_ref, "/x"]))
            .trim()
            .to_string();
        let out = work.path().join("ha.txt");
        let copied = run_status(
            docker
                .cmd(&["cp"])
                .arg(format!("{container}:/etc/ha.txt"))
                .arg(&out),
        );
        let _ = run_status(&mut docker.cmd(&["rm", "-f", &container]));
        assert!(copied.status.success(), "docker cp: {copied:?}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), content);
        // Node 3 serves the same manifest, to a bearer token node 1 issued
        // (the signing keys are shared through the database).
        let token = common::http(
            "GET",
            &format!(
                "{}/service/token?service=berth&scope=repository:{repo}:pull",
                nodes[0].berth.url
            ),
            &[],
            None,
        );
        assert_eq!(token.status, 200, "{token:?}");
        let bearer = format!("Bearer {}", token.json()["token"].as_str().unwrap());
        let r = common::http(
            "GET",
            &format!("{}/v2/{repo}/manifests/1.0", nodes[2].berth.url),
            &[
                ("Accept", common::ACCEPT_ALL_MANIFESTS),
                ("Authorization", &bearer),
            ],
            None,
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("docker-content-digest"), pushed_digest);
        docker.logout(&nodes[0].berth.addr);
        docker.logout(&nodes[1].berth.addr);
        println!(
            "docker: pushed {repo}:1.0 ({pushed_digest}) through node 1 ({}), \
             pulled through node 2 ({}), manifest also on node 3",
            nodes[0].berth.addr, nodes[1].berth.addr
        );
    });
}

// ---------------------------------------------------------------------------
// b. a chunked upload visiting all three nodes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_starts_on_node_1_continues_on_node_2_finishes_on_node_3() {
    let mut rng = StdRng::seed_from_u64(seed());
    let env = shared_backends("ha").await;
    let nodes = tokio::task::block_in_place(|| start_cluster(&env, 3));
    let url = |i: usize| nodes[i].berth.url.clone();
    let http = http_client();
    for n in &nodes {
        assert_ready(&http, &n.berth.url).await;
    }
    let repo = "ha/chunked";
    // Over the S3 store's 8 MiB part size, so finishing composes parts.
    let mut blob = vec![0u8; 9 * MIB + rng.random_range(1..64 * KIB)];
    rng.fill_bytes(&mut blob);
    let digest = digest_of(&blob);
    let cuts = [0, 4 * MIB, 7 * MIB, blob.len()];

    let r = http
        .post(format!("{}/v2/{repo}/blobs/uploads/", url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()[LOCATION].to_str().unwrap().to_string();
    let mut trail = vec![format!("POST node 1")];
    // Chunk 1 on node 1, chunk 2 on node 2.
    for (i, node) in [0, 1].into_iter().enumerate() {
        let (start, end) = (cuts[i], cuts[i + 1]);
        let r = http
            .patch(format!("{}{location}", url(node)))
            .header(CONTENT_TYPE, OCTET)
            .header(CONTENT_RANGE, format!("{start}-{}", end - 1))
            .body(blob[start..end].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
        assert_eq!(r.headers()["range"], format!("0-{}", end - 1));
        trail.push(format!("PATCH {start}-{} node {}", end - 1, node + 1));
    }
    // Node 3 knows where the session stands, and takes the last chunk with
    // the finishing PUT.
    let r = http
        .get(format!("{}{location}", url(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], format!("0-{}", cuts[2] - 1));
    trail.push("GET status node 3".to_string());
    let r = http
        .put(format!("{}{location}?digest={digest}", url(2)))
        .header(CONTENT_TYPE, OCTET)
        .header(CONTENT_RANGE, format!("{}-{}", cuts[2], blob.len() - 1))
        .body(blob[cuts[2]..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    trail.push(format!("PUT {}-{} node 3", cuts[2], blob.len() - 1));

    // Byte-identical through each node; the session is gone everywhere.
    for i in 0..3 {
        let r = http
            .head(format!("{}/v2/{repo}/blobs/{digest}", url(i)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_LENGTH], blob.len().to_string().as_str());
        let got = http
            .get(format!("{}/v2/{repo}/blobs/{digest}", url(i)))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            got.as_ref() == blob.as_slice(),
            "blob differs through node {}",
            i + 1
        );
        let r = http
            .get(format!("{}{location}", url(i)))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "finished session via node {}",
            i + 1
        );
    }
    println!(
        "chunked upload: {} bytes ({digest}) in 3 chunks: {}; byte-identical through 3 nodes",
        blob.len(),
        trail.join(", ")
    );
}

// ---------------------------------------------------------------------------
// c. SIGKILL of node 2 in the middle of pushes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_killed_during_pushes_loses_no_acknowledged_push() {
    const CLIENTS: usize = 4;
    const PUSHES: usize = 6;
    let started = Instant::now();
    let seed = seed();
    let env = shared_backends("ha").await;
    let mut nodes = tokio::task::block_in_place(|| start_cluster(&env, 3));
    let http = http_client();
    for n in &nodes {
        assert_ready(&http, &n.berth.url).await;
    }
    // The clients HEAD each blob before uploading it: the project must exist.
    common::create_project(&nodes[0].berth.url, "ha").await;
    let live = Live::new(nodes.iter().map(|n| n.berth.url.clone()).collect());
    let figs = Arc::new(Figures::default());
    let policy = Policy {
        attempts: 10,
        backoff: Duration::from_millis(100),
        tolerate_lost_sessions: true,
    };
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = Client::new(&live, &figs, policy, c);
            let done = done.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed + c as u64);
                let repo = format!("ha/kill/c{c}");
                let mut base = vec![0u8; 400 * KIB];
                rng.fill_bytes(&mut base);
                let mut pushed = Vec::new();
                let mut result = Ok(());
                for i in 0..PUSHES {
                    let image = Image::random(&mut rng, &format!("c{c}-{i}"), &base);
                    match client.push_image(&repo, &format!("v{i}"), &image).await {
                        Ok(p) => {
                            bump(&client.figs.pushes);
                            bump(&client.figs.ops);
                            pushed.push(p);
                        }
                        Err(e) => {
                            bump(&client.figs.failed_ops);
                            result = Err(e);
                            break;
                        }
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
                (pushed, result)
            })
        })
        .collect();

    // Partway: a third of the pushes acknowledged.
    wait_until(|| get(&figs.acknowledged) >= CLIENTS * PUSHES / 3 || get(&done) == CLIENTS).await;
    assert!(get(&done) < CLIENTS, "the clients finished before the kill");
    let victim = nodes[1].berth.url.clone();
    let before = get(&figs.failures_seen);
    let acked_at_kill = get(&figs.acknowledged);
    nodes[1].berth.kill9();
    let kills = 1;
    // The load balancer takes the dead node out once its checks fail; until
    // then requests still reach it and fail.
    let since = Instant::now();
    wait_until(|| {
        (get(&figs.failures_seen) >= before + 3 && since.elapsed() > Duration::from_millis(200))
            || get(&done) == CLIENTS
            || since.elapsed() > Duration::from_secs(3)
    })
    .await;
    live.remove(&victim);

    let mut pushed = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (p, result) = t.await.expect("client task");
        pushed.extend(p);
        if let Err(e) = result {
            errors.push(e);
        }
    }
    let mut verified = 0;
    for survivor in [&nodes[0], &nodes[2]] {
        verified += verify_through(&http, &survivor.berth.url, &pushed).await;
    }
    println!(
        "kill -9 during pushes: operations {} ({} requests), kills {kills} (after {acked_at_kill} \
         acknowledged), failures seen {} and retried {} (sessions continued {}, blobs restarted {}, \
         session conflicts {}), acknowledged {}, verified {verified} (image x surviving node), \
         failed operations {}; {:.1} s",
        get(&figs.ops),
        get(&figs.requests),
        get(&figs.failures_seen),
        get(&figs.retries),
        get(&figs.sessions_continued),
        get(&figs.blobs_restarted),
        get(&figs.session_conflicts),
        get(&figs.acknowledged),
        get(&figs.failed_ops),
        started.elapsed().as_secs_f64(),
    );
    assert!(errors.is_empty(), "client operations failed: {errors:#?}");
    assert_eq!(get(&figs.acknowledged), CLIENTS * PUSHES);
    assert_eq!(pushed.len(), CLIENTS * PUSHES);
    assert_eq!(verified, 2 * pushed.len());
    assert!(
        get(&figs.failures_seen) >= 1,
        "the kill interrupted nothing"
    );
    assert_eq!(
        get(&figs.retries),
        get(&figs.failures_seen) + get(&figs.session_conflicts) - get(&figs.blobs_restarted),
        "every failure was retried"
    );
}

// ---------------------------------------------------------------------------
// d. rolling restart under load
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_under_load_fails_no_client_operation() {
    const CLIENTS: usize = 4;
    /// Client operations between two restarts (and before the first and
    /// after the last), so each restart happens under load.
    const OPS_BETWEEN: usize = 10;
    let started = Instant::now();
    let seed = seed();
    let env = shared_backends("ha").await;
    let mut nodes = tokio::task::block_in_place(|| start_cluster(&env, 3));
    let http = http_client();
    for n in &nodes {
        assert_ready(&http, &n.berth.url).await;
    }
    // The clients HEAD each blob before uploading it: the project must exist.
    common::create_project(&nodes[0].berth.url, "ha").await;
    let live = Live::new(nodes.iter().map(|n| n.berth.url.clone()).collect());
    let figs = Arc::new(Figures::default());
    let policy = Policy {
        attempts: 6, // the first and 5 retries
        backoff: Duration::from_millis(100),
        tolerate_lost_sessions: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Pushed>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = Client::new(&live, &figs, policy, c);
            let (stop, acked, errors) = (stop.clone(), acked.clone(), errors.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed + c as u64);
                let repo = format!("ha/rolling/c{c}");
                let mut base = vec![0u8; 300 * KIB];
                rng.fill_bytes(&mut base);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let image = Image::random(&mut rng, &format!("c{c}-{i}"), &base);
                    match client.push_image(&repo, &format!("v{i}"), &image).await {
                        Ok(p) => {
                            bump(&client.figs.pushes);
                            acked.lock().unwrap().push(p);
                        }
                        Err(e) => {
                            bump(&client.figs.failed_ops);
                            errors.lock().unwrap().push(e);
                        }
                    }
                    bump(&client.figs.ops);
                    i += 1;
                    // Pull an acknowledged image, any client's.
                    let pick = {
                        let all = acked.lock().unwrap();
                        (!all.is_empty()).then(|| all[rng.random_range(0..all.len())].clone())
                    };
                    if let Some(p) = pick {
                        match client.pull_image(&p).await {
                            Ok(()) => bump(&client.figs.pulls),
                            Err(e) => {
                                bump(&client.figs.failed_ops);
                                errors.lock().unwrap().push(e);
                            }
                        }
                        bump(&client.figs.ops);
                    }
                }
            })
        })
        .collect();

    let mut restarts = 0;
    let mut mark = 0;
    for node in nodes.iter_mut() {
        wait_until(|| get(&figs.ops) >= mark + OPS_BETWEEN).await;
        let old = node.berth.url.clone();
        let before = get(&figs.failures_seen);
        let stopping = Instant::now();
        node.berth.sigterm();
        // The load balancer notices a moment later (once a client was
        // refused, or after half a second): until then clients are refused
        // by the stopping node and retry elsewhere.
        wait_until(|| {
            get(&figs.failures_seen) > before || stopping.elapsed() > Duration::from_millis(500)
        })
        .await;
        live.remove(&old);
        let status = tokio::task::block_in_place(|| node.berth.stop()).expect("exit status");
        assert!(status.success(), "{old} exited with {status} after SIGTERM");
        let drained = stopping.elapsed();
        let fresh = tokio::task::block_in_place(|| {
            Berth::start_env(node.dir.path(), "127.0.0.1:0", &[], &env)
        });
        assert_ready(&http, &fresh.url).await;
        live.add(fresh.url.clone());
        println!(
            "restarted {old} as {} (exited {:.2} s after SIGTERM)",
            fresh.url,
            drained.as_secs_f64()
        );
        node.berth = fresh;
        restarts += 1;
        mark = get(&figs.ops);
    }
    wait_until(|| get(&figs.ops) >= mark + OPS_BETWEEN).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("client task");
    }

    let pushed = acked.lock().unwrap().clone();
    let mut verified = 0;
    for n in &nodes {
        verified += verify_through(&http, &n.berth.url, &pushed).await;
    }
    let errors = errors.lock().unwrap().clone();
    println!(
        "rolling restart: operations {} ({} pushes, {} pulls, {} requests), restarts {restarts}, \
         failures seen {}, retries {}, sessions continued {}, failures {}, acknowledged {}, \
         verified {verified} (image x node); {:.1} s",
        get(&figs.ops),
        get(&figs.pushes),
        get(&figs.pulls),
        get(&figs.requests),
        get(&figs.failures_seen),
        get(&figs.retries),
        get(&figs.sessions_continued),
        get(&figs.failed_ops),
        get(&figs.acknowledged),
        started.elapsed().as_secs_f64(),
    );
    assert!(errors.is_empty(), "client operations failed: {errors:#?}");
    assert_eq!(get(&figs.failed_ops), 0);
    assert_eq!(restarts, 3);
    assert_eq!(get(&figs.acknowledged), pushed.len());
    assert_eq!(verified, 3 * pushed.len());
}

// ---------------------------------------------------------------------------
// deploy/kubernetes: the manifests parse, and their berth.toml starts berth
// ---------------------------------------------------------------------------

fn kubernetes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// Every document of a YAML file, through PyYAML (`python3 -m pip install
/// pyyaml` if missing).
fn yaml_documents(python: &Path, file: &Path) -> Vec<Value> {
    let out = run_status(
        Command::new(python)
            .arg("-c")
            .arg(
                "import json, sys\n\
         try:\n    import yaml\n\
         except ImportError:\n    sys.exit('PyYAML is missing: python3 -m pip install pyyaml')\n\
         print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
            )
            .arg(file),
    );
    assert!(
        out.status.success(),
        "{} does not parse: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_manifests_parse_and_their_config_starts_berth() {
    let python = require_tool("python3");
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(kubernetes_dir())
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in &files {
        let d = yaml_documents(&python, f);
        assert!(!d.is_empty(), "{} is empty", f.display());
        docs.extend(d);
    }
    let of_kind =
        |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
    let deployment = of_kind("Deployment");
    assert_eq!(deployment.len(), 1);
    let spec = &deployment[0]["spec"];
    assert_eq!(spec["replicas"], 3);
    let pod = &spec["template"]["spec"];
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 35);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    let data_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v.get("emptyDir").is_some())
        .expect("an emptyDir volume");
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == data_volume["name"] && m["mountPath"] == "/var/lib/berth"),
        "the emptyDir is the data dir"
    );
    assert_eq!(of_kind("Service").len(), 1);
    let secret = of_kind("Secret");
    assert_eq!(secret.len(), 1);
    // The system admin's first password comes from the Secret.
    let admin = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "BERTH_ADMIN_PASSWORD")
        .expect("BERTH_ADMIN_PASSWORD in the pod environment");
    let key = &admin["valueFrom"]["secretKeyRef"];
    assert_eq!(key["name"], secret[0]["metadata"]["name"], "{admin}");
    let key = key["key"].as_str().expect("a Secret key");
    assert!(
        secret[0]["stringData"][key].is_string(),
        "the Secret has no {key}"
    );

    // Every BERTH_* variable the pods get is a documented setting.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        if name.starts_with("BERTH_") {
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} is not in README.md"
            );
        }
    }

    // The ConfigMap's berth.toml is accepted by `berth serve`, with the
    // test services in place of the example endpoint and secrets (the
    // environment overrides the file, as in the pods).
    let config = of_kind("ConfigMap")
        .iter()
        .find_map(|m| m["data"]["berth.toml"].as_str())
        .expect("a ConfigMap with berth.toml")
        .to_string();
    // Authentication is always on: there is no switch to turn it off.
    assert!(!config.contains("allow_unauthenticated"), "{config}");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("berth.toml");
    std::fs::write(&file, &config).unwrap();
    let secret = work.path().join("s3-secret-access-key");
    std::fs::write(&secret, service_env("BERTH_TEST_S3_SECRET_KEY")).unwrap();
    let mut env: Vec<(String, String)> = shared_backends("ha")
        .await
        .into_iter()
        .filter(|(k, _)| k != "BERTH_S3_SECRET_ACCESS_KEY")
        .collect();
    env.push(("BERTH_CONFIG".into(), file.display().to_string()));
    env.push((
        "BERTH_S3_SECRET_ACCESS_KEY_FILE".into(),
        secret.display().to_string(),
    ));
    let data = work.path().join("data");
    let node = tokio::task::block_in_place(|| Berth::start_env(&data, "127.0.0.1:0", &[], &env));
    assert_ready(&http_client(), &node.url).await;
    let v2 = http_client()
        .get(format!("{}/v2/", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(v2.status(), StatusCode::OK);
    println!(
        "kubernetes: {} files, {} objects parse; berth.toml from the ConfigMap serves on {}",
        files.len(),
        docs.len(),
        node.url
    );
}
