//! `berth migrate` from an embedded installation (SQLite + blob files) to the
//! real PostgreSQL and S3-compatible server scripts/start-services.sh starts:
//! a dry run writes nothing and counts right; a migration pulls back
//! byte-identical through a server on the target; a migration killed with
//! SIGKILL finishes when run again; a corrupted source blob fails the run,
//! naming its digest, and leaves nothing of that blob on the target. Users,
//! projects, members, the projects' immutable rules, quotas and retention
//! policies, robots, tokens, signing keys and the audit log move with their
//! ids (every credential of the source works on the target); a
//! target where a node already made its own admin is refused untouched.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_oci::Digest;
use berth_storage::{BlobStore, S3Config, S3Store};
use common::{ADMIN_PASSWORD, ADMIN_USER, Berth, digest_of, service_env, unique};
use rand::{Rng, RngCore};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";
const MIB: usize = 1024 * 1024;

/// A fresh, empty target: a new PostgreSQL database and S3 prefix.
struct TargetEnv {
    metadata_url: String,
    /// `BERTH_STORAGE_BACKEND` and `BERTH_S3_*`, as a server on the target uses them.
    storage: Vec<(String, String)>,
    s3: S3Config,
}

impl TargetEnv {
    async fn fresh() -> TargetEnv {
        let admin_url = service_env("BERTH_TEST_POSTGRES_URL");
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&admin_url)
            .await
            .expect("connect to PostgreSQL");
        let db = unique("berth_migrate_").replace('-', "_");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let s3 = S3Config {
            endpoint: Some(service_env("BERTH_TEST_S3_ENDPOINT")),
            region: "us-east-1".into(),
            bucket: service_env("BERTH_TEST_S3_BUCKET"),
            prefix: unique("migrate"),
            path_style: true,
            access_key_id: Some(service_env("BERTH_TEST_S3_ACCESS_KEY")),
            secret_access_key: Some(service_env("BERTH_TEST_S3_SECRET_KEY")),
            allow_http: true,
        };
        let storage = [
            ("BERTH_STORAGE_BACKEND", "s3".to_string()),
            ("BERTH_S3_ENDPOINT", s3.endpoint.clone().unwrap()),
            ("BERTH_S3_BUCKET", s3.bucket.clone()),
            ("BERTH_S3_ACCESS_KEY_ID", s3.access_key_id.clone().unwrap()),
            (
                "BERTH_S3_SECRET_ACCESS_KEY",
                s3.secret_access_key.clone().unwrap(),
            ),
            ("BERTH_S3_ALLOW_HTTP", "true".into()),
            ("BERTH_S3_PREFIX", s3.prefix.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        TargetEnv {
            metadata_url: format!("{base}/{db}"),
            storage,
            s3,
        }
    }

    /// Everything a server on the target needs.
    fn server_env(&self) -> Vec<(String, String)> {
        let mut env = self.storage.clone();
        env.push(("BERTH_METADATA_URL".into(), self.metadata_url.clone()));
        env
    }

    /// `berth migrate --from-data-dir SOURCE --to-metadata-url … [extra]`
    /// with the target storage in the environment.
    fn migrate(&self, source: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("migrate")
            .arg("--from-data-dir")
            .arg(source)
            .arg("--to-metadata-url")
            .arg(&self.metadata_url)
            .args(extra)
            .envs(self.storage.iter().map(|(k, v)| (k, v)))
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_DATA_DIR")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null());
        cmd
    }

    async fn pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.metadata_url)
            .await
            .expect("connect to the target database")
    }

    /// Tables in the target database (none before the first real run).
    async fn table_count(&self) -> i64 {
        let pool = self.pool().await;
        let n = scalar(
            &pool,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_catalog.pg_tables WHERE schemaname = 'public'",
        )
        .await;
        pool.close().await;
        n
    }

    fn store(&self) -> S3Store {
        S3Store::new(&self.s3).expect("S3 client")
    }

    /// Removes the test's blobs from the shared bucket (the database is
    /// left, like the other tests' throw-away databases).
    async fn remove_blobs(&self, pushed: &Pushed) {
        let store = self.store();
        for (_, d) in &pushed.blobs {
            store.delete(&Digest::parse(d).unwrap()).await.unwrap();
        }
    }
}

async fn scalar(pool: &sqlx::AnyPool, sql: &'static str) -> i64 {
    use sqlx::Row as _;
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("run berth migrate");
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    (stdout, stderr)
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The table `berth migrate` prints: row name → (source, already on target,
/// moved or to move).
fn figures(stdout: &str) -> BTreeMap<String, (u64, u64, u64)> {
    let mut rows = BTreeMap::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 4 {
            continue;
        }
        let (name, numbers) = words.split_at(words.len() - 3);
        let numbers: Vec<u64> = numbers.iter().filter_map(|w| w.parse().ok()).collect();
        if numbers.len() == 3 {
            rows.insert(name.join(" "), (numbers[0], numbers[1], numbers[2]));
        }
    }
    for row in [
        "repositories",
        "blobs",
        "blob bytes",
        "repository links",
        "manifests",
        "tags",
    ]
    .iter()
    .chain(&IDENTITY_TABLES)
    {
        assert!(rows.contains_key(*row), "no {row:?} row in:\n{stdout}");
    }
    rows
}

/// The identity tables `berth migrate` moves, with the projects' lifecycle
/// policies, in its order.
const IDENTITY_TABLES: [&str; 12] = [
    "users",
    "groups",
    "user_groups",
    "projects",
    "project_members",
    "immutable_rules",
    "project_quotas",
    "retention_policies",
    "robots",
    "personal_access_tokens",
    "signing_keys",
    "audit_log",
];

// ---------------------------------------------------------------------------
// Identity: the management API and credentials
// ---------------------------------------------------------------------------

/// `Basic …` for `user:password`.
fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn admin() -> String {
    basic(ADMIN_USER, ADMIN_PASSWORD)
}

/// One request with exactly the `Authorization` given: its status and body.
async fn send(
    url: &str,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    json_body: Option<&Value>,
) -> (StatusCode, Vec<u8>) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client
        .request(method.clone(), format!("{url}{path}"))
        .header("authorization", auth);
    if let Some(b) = body {
        req = req.body(b);
    }
    if let Some(v) = json_body {
        req = req.json(v);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = r.status();
    (status, r.bytes().await.unwrap().to_vec())
}

/// A management API call (`/api/v1…`) that must succeed; its JSON answer.
async fn api_ok(url: &str, auth: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, bytes) = send(
        url,
        auth,
        method,
        &format!("/api/v1{path}"),
        None,
        body.as_ref(),
    )
    .await;
    assert!(
        status.is_success(),
        "{method} /api/v1{path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// The status of a management API call.
async fn api_status(url: &str, auth: &str, method: &str, path: &str) -> StatusCode {
    send(url, auth, method, &format!("/api/v1{path}"), None, None)
        .await
        .0
}

/// Pushes `data` to `repo` in one request (`POST …?digest=`) as `auth`.
async fn push_blob_as(url: &str, auth: &str, repo: &str, data: &[u8]) -> StatusCode {
    let digest = digest_of(data);
    let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
    send(url, auth, "POST", &path, Some(data.to_vec()), None)
        .await
        .0
}

/// Every audit event, newest first, paging with `next`.
async fn audit_events(url: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("/audit?limit=1000&after={a}"),
            None => "/audit?limit=1000".into(),
        };
        let page = api_ok(url, &admin(), "GET", &q, None).await;
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return all,
        }
    }
}

/// What identifies an audit event across installations.
fn event_key(e: &Value) -> String {
    format!(
        "{} {} {} {} {} {}",
        e["id"], e["time_ms"], e["actor"], e["action"], e["resource"], e["result"]
    )
}

const DEV_PASSWORD: &str = "dev-password-1";
const OPS_PASSWORD: &str = "ops-password-1";

/// Credentials made on the source through the management API.
struct Identity {
    robot: String,
    robot_secret: String,
    pat: String,
    /// A registry token for `team/app` pull, signed by the source's key.
    token: String,
    /// A blob of `team/app` pushed on the source.
    team_blob: String,
}

/// A project `team` with the user `dev` as developer and the local group
/// `builders` (with the user `ops` in it) as guest, a project robot and a
/// personal access token of dev's, an image in `team/app`, and a registry
/// token dev got for it.
async fn seed_identity(reg: &Registry, pushed: &mut Pushed) -> Identity {
    let url = &reg.url;
    api_ok(
        url,
        &admin(),
        "POST",
        "/projects",
        Some(json!({"name": "team"})),
    )
    .await;
    api_ok(
        url,
        &admin(),
        "POST",
        "/users",
        Some(json!({"name": "dev", "password": DEV_PASSWORD})),
    )
    .await;
    api_ok(
        url,
        &admin(),
        "POST",
        "/projects/team/members",
        Some(json!({"user": "dev", "role": "developer"})),
    )
    .await;
    api_ok(
        url,
        &admin(),
        "POST",
        "/users",
        Some(json!({"name": "ops", "password": OPS_PASSWORD})),
    )
    .await;
    let group = api_ok(
        url,
        &admin(),
        "POST",
        "/groups",
        Some(json!({"name": "builders"})),
    )
    .await;
    let gid = group["id"].as_i64().unwrap();
    api_ok(
        url,
        &admin(),
        "POST",
        &format!("/groups/{gid}/members/ops"),
        None,
    )
    .await;
    api_ok(
        url,
        &admin(),
        "POST",
        "/projects/team/members",
        Some(json!({"group": "builders", "role": "guest"})),
    )
    .await;
    let access: Vec<Value> = ["pull", "push"]
        .iter()
        .map(|a| json!({"resource": "repository", "action": a}))
        .collect();
    let robot = api_ok(
        url,
        &admin(),
        "POST",
        "/projects/team/robots",
        Some(json!({"name": "ci", "permissions": [{
            "namespace": {"kind": "project", "project": "team"},
            "access": access,
        }]})),
    )
    .await;
    let pat = api_ok(
        url,
        &basic("dev", DEV_PASSWORD),
        "POST",
        "/users/me/tokens",
        Some(json!({"name": "laptop", "expires_in_days": 30})),
    )
    .await;
    let layer = random_bytes(64 * 1024);
    pushed
        .image(reg, "team/app", &["1.0"], MANIFEST, &[&layer])
        .await;
    let (status, body) = send(
        url,
        &basic("dev", DEV_PASSWORD),
        "GET",
        "/service/token?service=berth&scope=repository:team/app:pull",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let token: Value = serde_json::from_slice(&body).unwrap();
    // The team's lifecycle policies, none of which gets in the test's way:
    // an immutable rule, a generous quota, and a retention policy that
    // keeps everything, with a daily schedule. Its dry run is history,
    // which stays behind.
    api_ok(
        url,
        &admin(),
        "POST",
        "/projects/team/immutable-rules",
        Some(json!({"repositories": {"pattern": "**"}, "tags": {"pattern": "release-*"}})),
    )
    .await;
    api_ok(
        url,
        &admin(),
        "PUT",
        "/projects/team/quota",
        Some(json!({"storage_bytes": 1i64 << 30, "artifacts": 1000})),
    )
    .await;
    api_ok(
        url,
        &admin(),
        "PUT",
        "/projects/team/retention",
        Some(
            json!({"rules": [{"template": "latestPushedK", "params": {"latestPushedK": 100},
            "repositories": {"decoration": "repoMatches", "pattern": "**"},
            "tags": {"decoration": "matches", "pattern": "**"}}],
            "schedule": "0 0 0 * * *"}),
        ),
    )
    .await;
    api_ok(
        url,
        &admin(),
        "POST",
        "/projects/team/retention/run",
        Some(json!({"dry_run": true})),
    )
    .await;
    Identity {
        robot: robot["name"].as_str().unwrap().to_string(),
        robot_secret: robot["secret"].as_str().unwrap().to_string(),
        pat: pat["secret"].as_str().unwrap().to_string(),
        token: token["token"].as_str().unwrap().to_string(),
        team_blob: digest_of(&layer),
    }
}

/// Every credential of the source works on the server at `url`; returns
/// the digest of the blob dev pushed there.
async fn check_credentials(url: &str, id: &Identity) -> String {
    let dev = basic("dev", DEV_PASSWORD);
    assert_eq!(
        api_status(url, &admin(), "GET", "/me").await,
        StatusCode::OK
    );
    let me = api_ok(url, &dev, "GET", "/me", None).await;
    assert_eq!(me["name"], "dev");
    assert_eq!(
        api_status(url, &basic("dev", "not-the-password"), "GET", "/me").await,
        StatusCode::UNAUTHORIZED
    );
    // dev pushes to the project, as a developer may.
    let mine = random_bytes(32 * 1024);
    assert_eq!(
        push_blob_as(url, &dev, "team/app", &mine).await,
        StatusCode::CREATED
    );
    let blob = |d: &str| format!("/v2/team/app/blobs/{d}");
    // The robot's secret and dev's personal access token.
    let robot = basic(&id.robot, &id.robot_secret);
    assert_eq!(
        api_ok(url, &robot, "GET", "/me", None).await["kind"],
        "robot"
    );
    assert_eq!(
        send(url, &robot, "GET", &blob(&digest_of(&mine)), None, None)
            .await
            .0,
        StatusCode::OK
    );
    // ops reads the project through the group: pull, not push.
    let ops = basic("ops", OPS_PASSWORD);
    assert_eq!(
        api_ok(url, &ops, "GET", "/me", None).await["groups"],
        json!(["builders"])
    );
    assert_eq!(
        send(url, &ops, "GET", &blob(&id.team_blob), None, None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        push_blob_as(url, &ops, "team/app", b"not from a guest").await,
        StatusCode::FORBIDDEN
    );
    let pat = basic("dev", &id.pat);
    assert_eq!(api_ok(url, &pat, "GET", "/me", None).await["name"], "dev");
    assert_eq!(
        send(url, &pat, "GET", &blob(&id.team_blob), None, None)
            .await
            .0,
        StatusCode::OK
    );
    // A registry token signed on the source before the migration.
    let bearer = format!("Bearer {}", id.token);
    let (status, body) = send(url, &bearer, "GET", &blob(&id.team_blob), None, None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(digest_of(&body), id.team_blob);
    digest_of(&mine)
}

// ---------------------------------------------------------------------------
// A small registry client
// ---------------------------------------------------------------------------

struct Registry {
    http: reqwest::Client,
    url: String,
}

struct Got {
    status: StatusCode,
    content_type: String,
    digest: String,
    body: Vec<u8>,
}

impl Registry {
    fn new(url: &str) -> Registry {
        Registry {
            http: common::client_builder()
                .no_proxy()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            url: url.to_string(),
        }
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = digest_of(data);
        let r = self
            .http
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?digest={digest}",
                self.url
            ))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        digest
    }

    async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        let r = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.url))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    }

    async fn get(&self, path: &str) -> Got {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (status, content_type, digest) = (
            r.status(),
            header("content-type"),
            header("docker-content-digest"),
        );
        let body = r.bytes().await.unwrap().to_vec();
        Got {
            status,
            content_type,
            digest,
            body,
        }
    }

    async fn json(&self, path: &str) -> Value {
        let got = self.get(path).await;
        assert_eq!(got.status, StatusCode::OK, "GET {path}");
        serde_json::from_slice(&got.body).unwrap()
    }
}

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest_of(data), "size": data.len()})
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    data
}

/// What was pushed, so both servers can be asked the same questions.
#[derive(Default)]
struct Pushed {
    repos: Vec<String>,
    /// (repo, reference) for every manifest, by tag and by digest.
    manifests: Vec<(String, String)>,
    /// (repo, subject digest) whose referrers are listed.
    subjects: Vec<(String, String)>,
    /// (repo, digest) of every blob.
    blobs: Vec<(String, String)>,
}

impl Pushed {
    async fn image(
        &mut self,
        reg: &Registry,
        repo: &str,
        tags: &[&str],
        media_type: &str,
        layers: &[&[u8]],
    ) -> Vec<u8> {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","repo":"{repo}"}}"#);
        let config_type = if media_type == DOCKER_MANIFEST {
            "application/vnd.docker.container.image.v1+json"
        } else {
            "application/vnd.oci.image.config.v1+json"
        };
        let layer_type = if media_type == DOCKER_MANIFEST {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        self.blob(reg, repo, config.as_bytes()).await;
        for l in layers {
            self.blob(reg, repo, l).await;
        }
        let manifest = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(config_type, config.as_bytes()),
            "layers": layers.iter().map(|l| descriptor(layer_type, l)).collect::<Vec<_>>(),
        }))
        .unwrap();
        self.manifest(reg, repo, tags, media_type, &manifest).await;
        manifest
    }

    async fn blob(&mut self, reg: &Registry, repo: &str, data: &[u8]) {
        let digest = reg.push_blob(repo, data).await;
        if !self.repos.iter().any(|r| r == repo) {
            self.repos.push(repo.to_string());
        }
        self.blobs.push((repo.to_string(), digest));
    }

    async fn manifest(
        &mut self,
        reg: &Registry,
        repo: &str,
        tags: &[&str],
        media_type: &str,
        body: &[u8],
    ) {
        let digest = digest_of(body);
        reg.put_manifest(repo, &digest, media_type, body).await;
        self.manifests.push((repo.to_string(), digest.clone()));
        for tag in tags {
            reg.put_manifest(repo, tag, media_type, body).await;
            self.manifests.push((repo.to_string(), tag.to_string()));
        }
    }
}

/// Everything a client can see of what was pushed.
#[derive(Debug, PartialEq, Eq)]
struct View {
    catalog: Value,
    tags: BTreeMap<String, Value>,
    /// repo:reference → (content type, digest header, bytes)
    manifests: BTreeMap<String, (String, String, Vec<u8>)>,
    referrers: BTreeMap<String, Value>,
    /// repo@digest → digest of the bytes served
    blobs: BTreeMap<String, String>,
}

async fn view(reg: &Registry, pushed: &Pushed) -> View {
    let catalog = reg.json("/v2/_catalog").await;
    let mut tags = BTreeMap::new();
    for repo in &pushed.repos {
        tags.insert(
            repo.clone(),
            reg.json(&format!("/v2/{repo}/tags/list")).await,
        );
    }
    let mut manifests = BTreeMap::new();
    for (repo, reference) in &pushed.manifests {
        let got = reg.get(&format!("/v2/{repo}/manifests/{reference}")).await;
        assert_eq!(got.status, StatusCode::OK, "{repo}:{reference}");
        manifests.insert(
            format!("{repo}:{reference}"),
            (got.content_type, got.digest, got.body),
        );
    }
    let mut referrers = BTreeMap::new();
    for (repo, subject) in &pushed.subjects {
        referrers.insert(
            format!("{repo}@{subject}"),
            reg.json(&format!("/v2/{repo}/referrers/{subject}")).await,
        );
    }
    let mut blobs = BTreeMap::new();
    for (repo, digest) in &pushed.blobs {
        let got = reg.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        assert_eq!(got.status, StatusCode::OK, "{repo}@{digest}");
        let served = digest_of(&got.body);
        assert_eq!(&served, digest, "{repo}@{digest} serves other bytes");
        blobs.insert(format!("{repo}@{digest}"), served);
    }
    View {
        catalog,
        tags,
        manifests,
        referrers,
        blobs,
    }
}

/// Pushes images sharing layers across repositories, an index, a referrer
/// with a subject, a Docker manifest, several tags and a multipart-sized layer.
async fn push_sample(reg: &Registry) -> Pushed {
    let mut p = Pushed::default();
    let shared = random_bytes(300 * 1024);
    let big = random_bytes(9 * MIB);
    let small = b"small layer".to_vec();
    let amd = p
        .image(
            reg,
            "mig/app",
            &["1.0", "stable"],
            MANIFEST,
            &[&shared, &small],
        )
        .await;
    let arm = p
        .image(reg, "mig/app", &["1.0-arm"], MANIFEST, &[&shared, &big])
        .await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {"mediaType": MANIFEST, "digest": digest_of(&amd), "size": amd.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": MANIFEST, "digest": digest_of(&arm), "size": arm.len(),
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    p.manifest(reg, "mig/app", &["multi", "latest"], INDEX, &index)
        .await;

    // A referrer (an SBOM) of the amd64 image, pushed by digest only.
    let sbom = br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec();
    let empty = b"{}".to_vec();
    p.blob(reg, "mig/app", &sbom).await;
    p.blob(reg, "mig/app", &empty).await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": "application/spdx+json",
        "config": descriptor("application/vnd.oci.empty.v1+json", &empty),
        "layers": [descriptor("application/spdx+json", &sbom)],
        "subject": {"mediaType": MANIFEST, "digest": digest_of(&amd), "size": amd.len()},
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }))
    .unwrap();
    p.manifest(reg, "mig/app", &[], MANIFEST, &referrer).await;
    p.subjects.push(("mig/app".into(), digest_of(&amd)));

    // Another repository sharing a layer, with a Docker schema 2 manifest.
    p.image(reg, "mig/tools", &["v1"], DOCKER_MANIFEST, &[&shared])
        .await;
    p.image(reg, "mig/tools", &["v2"], MANIFEST, &[&small])
        .await;
    p
}

fn distinct_blobs(p: &Pushed) -> usize {
    let mut d: Vec<&String> = p.blobs.iter().map(|(_, d)| d).collect();
    d.sort();
    d.dedup();
    d.len()
}

#[tokio::test]
async fn round_trip_to_postgres_and_s3_pulls_back_identical() {
    let target = TargetEnv::fresh().await;
    let source_dir = tempfile::tempdir().unwrap();
    // Registry tokens live an hour, so the one got before the migration
    // still verifies after it.
    let long_tokens = [(
        "BERTH_AUTH_TOKEN_LIFETIME_SECS".to_string(),
        "3600".to_string(),
    )];
    let mut source = Berth::start_env(source_dir.path(), "127.0.0.1:0", &[], &long_tokens);
    let reg = Registry::new(&source.url);
    let mut pushed = push_sample(&reg).await;
    let identity = seed_identity(&reg, &mut pushed).await;
    let before = view(&reg, &pushed).await;
    // The source's users and audit log (its events are written behind the
    // requests: those still queued are written when it stops, and move too).
    let source_users = api_ok(&source.url, &admin(), "GET", "/users", None).await;
    let policies = |url: String| async move {
        let mut out = Vec::new();
        for path in [
            "/projects/team/immutable-rules",
            "/projects/team/quota",
            "/projects/team/retention",
        ] {
            let mut got = api_ok(&url, &admin(), "GET", path, None).await;
            if path.ends_with("/quota") {
                // The limits; usage depends on what is pushed meanwhile.
                got = json!([got["limits"], got["warn_percent"]]);
            }
            out.push(got);
        }
        out
    };
    let source_policies = policies(source.url.clone()).await;
    let source_events = audit_events(&source.url).await;
    assert!(source_events.len() >= 5, "{source_events:?}");
    source.stop();

    let blobs = distinct_blobs(&pushed);
    let manifests = pushed
        .manifests
        .iter()
        .filter(|(_, r)| r.starts_with("sha256:"))
        .count() as u64;
    let tags = pushed
        .manifests
        .iter()
        .filter(|(_, r)| !r.starts_with("sha256:"))
        .count() as u64;
    let links = pushed
        .blobs
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;

    // Dry run: right figures, nothing on the target.
    let (out, _) = run_ok(&mut target.migrate(source_dir.path(), &["--dry-run"]));
    let dry = figures(&out);
    let repos = pushed.repos.len() as u64;
    assert_eq!(dry["repositories"], (repos, 0, repos), "{out}");
    assert_eq!(dry["blobs"], (blobs as u64, 0, blobs as u64), "{out}");
    assert_eq!(dry["repository links"], (links, 0, links), "{out}");
    assert_eq!(dry["manifests"], (manifests, 0, manifests), "{out}");
    assert_eq!(dry["tags"], (tags, 0, tags), "{out}");
    let bytes = dry["blob bytes"].0;
    assert!(bytes > 9 * MIB as u64, "{out}");
    // admin, dev and ops; one group with ops in it; library (seeded on the
    // target too), mig and team; one robot, one token, one signing key.
    assert_eq!(dry["users"], (3, 0, 3), "{out}");
    assert_eq!(dry["groups"], (1, 0, 1), "{out}");
    assert_eq!(dry["user_groups"], (1, 0, 1), "{out}");
    assert_eq!(dry["projects"], (3, 1, 2), "{out}");
    assert_eq!(dry["robots"], (1, 0, 1), "{out}");
    assert_eq!(dry["personal_access_tokens"], (1, 0, 1), "{out}");
    assert_eq!(dry["signing_keys"], (1, 0, 1), "{out}");
    // The team's rule, quota and retention policy; not its run history.
    assert_eq!(dry["immutable_rules"], (1, 0, 1), "{out}");
    assert_eq!(dry["project_quotas"], (1, 0, 1), "{out}");
    assert_eq!(dry["retention_policies"], (1, 0, 1), "{out}");
    // dev, builders, and the admin wherever it created a project.
    let members = dry["project_members"].0;
    assert!(members >= 2, "{out}");
    assert_eq!(dry["project_members"], (members, 0, members), "{out}");
    let events = dry["audit_log"].0;
    assert!(events >= source_events.len() as u64, "{out}");
    assert_eq!(dry["audit_log"], (events, 0, events), "{out}");
    assert!(!out.contains("does not know these tables"), "{out}");
    assert_eq!(target.table_count().await, 0, "a dry run created tables");
    let store = target.store();
    for (_, d) in &pushed.blobs {
        assert_eq!(
            store.stat(&Digest::parse(d).unwrap()).await.unwrap(),
            None,
            "a dry run wrote {d}"
        );
    }

    // The migration.
    let meta_db = std::fs::read(source_dir.path().join("meta.db")).unwrap();
    let started = Instant::now();
    let (out, err) = run_ok(&mut target.migrate(source_dir.path(), &[]));
    let elapsed = started.elapsed();
    let moved = figures(&out);
    assert_eq!(moved["blobs"], (blobs as u64, 0, blobs as u64), "{out}");
    assert_eq!(moved["blob bytes"], (bytes, 0, bytes), "{out}");
    assert_eq!(moved["manifests"], (manifests, 0, manifests), "{out}");
    assert_eq!(moved["tags"], (tags, 0, tags), "{out}");
    assert_eq!(moved["repository links"], (links, 0, links), "{out}");
    for table in IDENTITY_TABLES {
        assert_eq!(moved[table], dry[table], "{table}: {out}");
    }
    assert!(out.contains("blobs copied and verified:"), "{out}");
    assert!(
        out.contains("identity rows moved (ids kept): 3 users, 1 groups, 1 user_groups,"),
        "{out}"
    );
    assert!(err.contains("copying"), "no progress lines: {err}");
    // The source was only read.
    assert!(std::fs::read(source_dir.path().join("meta.db")).unwrap() == meta_db);

    // A second run finds everything there.
    let (again, _) = run_ok(&mut target.migrate(source_dir.path(), &[]));
    let again = figures(&again);
    assert_eq!(again["blobs"], (blobs as u64, blobs as u64, 0));
    assert_eq!(again["manifests"], (manifests, manifests, 0));
    assert_eq!(again["tags"], (tags, tags, 0));
    for table in IDENTITY_TABLES {
        let (total, present, moved) = again[table];
        assert_eq!((present, moved), (total, 0), "{table}");
    }

    // A server on PostgreSQL + S3 serves the same thing, byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let node = Berth::start_env(dir.path(), "127.0.0.1:0", &[], &target.server_env());
    let after = view(&Registry::new(&node.url), &pushed).await;
    assert_eq!(after.catalog, before.catalog);
    assert_eq!(after.tags, before.tags);
    assert_eq!(after.referrers, before.referrers);
    assert_eq!(
        after.referrers.values().next().unwrap()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for (k, v) in &before.manifests {
        assert_eq!(after.manifests.get(k), Some(v), "manifest {k}");
    }
    assert_eq!(after, before);

    // Every account and credential of the source works on the target.
    let pushed_on_target = check_credentials(&node.url, &identity).await;
    let users = api_ok(&node.url, &admin(), "GET", "/users", None).await;
    assert_eq!(
        users["items"], source_users["items"],
        "same users, same ids"
    );
    // So did the team's lifecycle policies; the retention history did not.
    assert_eq!(policies(node.url.clone()).await, source_policies);
    let history = api_ok(
        &node.url,
        &admin(),
        "GET",
        "/projects/team/retention/executions",
        None,
    )
    .await;
    assert_eq!(history["items"], json!([]), "{history}");
    // The audit log came along, ids and all.
    let target_events: std::collections::BTreeSet<String> = audit_events(&node.url)
        .await
        .iter()
        .map(event_key)
        .collect();
    for e in &source_events {
        assert!(
            target_events.contains(&event_key(e)),
            "{e} is missing from the target's audit log"
        );
    }
    // New rows get ids past the copied ones (PostgreSQL's sequences moved).
    let max_id = source_users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .max()
        .unwrap();
    let newcomer = api_ok(
        &node.url,
        &admin(),
        "POST",
        "/users",
        Some(json!({"name": "newcomer", "password": "newcomer-password-1"})),
    )
    .await;
    assert!(newcomer["id"].as_i64().unwrap() > max_id, "{newcomer}");
    api_ok(
        &node.url,
        &admin(),
        "POST",
        "/projects",
        Some(json!({"name": "fresh"})),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !audit_events(&node.url).await.iter().any(|e| {
        e["action"] == "user.create" && e["resource"].as_str().unwrap_or("").contains("newcomer")
    }) {
        assert!(
            Instant::now() < deadline,
            "the target records no new audit events"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The blobs are in S3 under their digests.
    for (_, d) in &pushed.blobs {
        assert!(
            store
                .stat(&Digest::parse(d).unwrap())
                .await
                .unwrap()
                .is_some()
        );
    }
    let mut node = node;
    node.stop();

    // And back again, from PostgreSQL + S3 (described by a config file) to a
    // fresh embedded installation: any backends to any others.
    let back = tempfile::tempdir().unwrap();
    let config = back.path().join("source.toml");
    let s3 = &target.s3;
    std::fs::write(
        &config,
        format!(
            "[metadata]\nurl = {:?}\n[storage]\nbackend = \"s3\"\nendpoint = {:?}\n\
             bucket = {:?}\nprefix = {:?}\naccess_key_id = {:?}\nsecret_access_key = {:?}\n\
             allow_http = true\n",
            target.metadata_url,
            s3.endpoint.as_deref().unwrap(),
            s3.bucket,
            s3.prefix,
            s3.access_key_id.as_deref().unwrap(),
            s3.secret_access_key.as_deref().unwrap(),
        ),
    )
    .unwrap();
    let embedded = back.path().join("data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("migrate")
        .arg("--from-config")
        .arg(&config)
        .arg("--to-data-dir")
        .arg(&embedded)
        .env_remove("BERTH_CONFIG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    for (k, _) in target.server_env() {
        cmd.env_remove(k);
    }
    let (out, _) = run_ok(&mut cmd);
    // With the blob dev pushed on the target.
    let back = figures(&out);
    assert_eq!(
        back["blobs"],
        (blobs as u64 + 1, 0, blobs as u64 + 1),
        "{out}"
    );
    assert_eq!(back["users"], (4, 0, 4), "{out}");
    assert_eq!(back["projects"], (4, 1, 3), "{out}");
    let home = Berth::start_in(&embedded, &[]);
    assert_eq!(view(&Registry::new(&home.url), &pushed).await, before);
    check_credentials(&home.url, &identity).await;
    target.remove_blobs(&pushed).await;
    let store = target.store();
    store
        .delete(&Digest::parse(&pushed_on_target).unwrap())
        .await
        .unwrap();
    let count = |t: &str| moved[t].2;
    println!(
        "migrate round trip: {} repositories, {manifests} artifacts (manifests) and {tags} tags \
         moved, {blobs} blobs ({bytes} bytes) copied and verified on arrival in {:.2}s; identity \
         moved with ids kept: {} users, {} groups with {} members, {} projects besides library, \
         {} project members, {} immutable rules, {} quotas, {} retention policies, {} robots, \
         {} personal access tokens, {} signing keys, {} audit events; pulled back \
         through PostgreSQL + S3: {} manifests by tag and digest byte-identical, {} blob \
         digests verified, referrers and catalog identical; on the target the admin's and the \
         users' passwords, the developer's push, the group member's pull, the robot secret, the \
         personal access token and a registry token signed before the migration were accepted, \
         all {} source audit events \
         listed; migrated back to SQLite + files identical too, credentials included",
        pushed.repos.len(),
        elapsed.as_secs_f64(),
        count("users"),
        count("groups"),
        count("user_groups"),
        count("projects"),
        count("project_members"),
        count("immutable_rules"),
        count("project_quotas"),
        count("retention_policies"),
        count("robots"),
        count("personal_access_tokens"),
        count("signing_keys"),
        count("audit_log"),
        after.manifests.len(),
        after.blobs.len(),
        source_events.len(),
    );
}

#[tokio::test]
async fn a_migration_killed_midway_finishes_when_run_again() {
    let target = TargetEnv::fresh().await;
    let source_dir = tempfile::tempdir().unwrap();
    let mut source = Berth::start_in(source_dir.path(), &[]);
    let reg = Registry::new(&source.url);
    let mut pushed = Pushed::default();
    let layers: Vec<Vec<u8>> = (0..6).map(|_| random_bytes(24 * MIB)).collect();
    let refs: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    pushed
        .image(&reg, "big/app", &["1.0"], MANIFEST, &refs)
        .await;
    pushed
        .image(&reg, "big/other", &["2.0"], MANIFEST, &refs[..2])
        .await;
    let before = view(&reg, &pushed).await;
    source.stop();
    let blobs = distinct_blobs(&pushed) as u64;

    // One blob at a time, so it is surely mid-copy when the first blob row
    // appears on the target; then a short random delay and SIGKILL.
    let mut child = target
        .migrate(source_dir.path(), &["--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let pool = target.pool().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // An error until migrate has created the schema.
        let rows = sqlx::query("SELECT 1 FROM blobs LIMIT 1")
            .fetch_all(&pool)
            .await
            .map(|r| r.len())
            .unwrap_or(0);
        if rows > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no blob copied within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "migrate ended early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delay = rand::rng().random_range(0..150);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "migrate finished before the kill");
    let log = log.join().unwrap().join("\n");
    let copied = scalar(&pool, "SELECT CAST(COUNT(*) AS BIGINT) FROM blobs").await;
    let tags = scalar(&pool, "SELECT CAST(COUNT(*) AS BIGINT) FROM tags").await;
    assert!(
        (copied as u64) < blobs && tags == 0,
        "killed too late: {copied} blobs, {tags} tags\n{log}"
    );

    // What the kill left half-copied: staging uploads on the target.
    let store = target.store();
    let mut staged = Vec::new();
    for (_, d) in &pushed.blobs {
        let hex = Digest::parse(d).unwrap().hex().to_string();
        staged.push(format!("migrate-{}", &hex[..56]));
    }
    staged.sort();
    staged.dedup();
    let mut half_copied = 0;
    for id in &staged {
        if store.upload_size(id).await.unwrap().is_some() {
            half_copied += 1;
        }
    }

    let (out, _) = run_ok(&mut target.migrate(source_dir.path(), &[]));
    let f = figures(&out);
    let (total, present, moved) = f["blobs"];
    assert_eq!(total, blobs, "{out}");
    assert_eq!(present, copied as u64, "{out}");
    assert_eq!(present + moved, blobs, "{out}");
    assert_eq!(f["manifests"], (2, 0, 2), "{out}");
    assert_eq!(f["tags"], (2, 0, 2), "{out}");
    pool.close().await;
    // The rerun cleared every staging upload the kill left.
    for id in &staged {
        assert_eq!(
            store.upload_size(id).await.unwrap(),
            None,
            "{id} left behind"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let node = Berth::start_env(dir.path(), "127.0.0.1:0", &[], &target.server_env());
    let after = view(&Registry::new(&node.url), &pushed).await;
    assert_eq!(after, before);
    target.remove_blobs(&pushed).await;
    println!(
        "migrate resumed after SIGKILL {delay} ms after the first blob landed: {copied} of \
         {blobs} blobs were there ({half_copied} half-copied in staging), the rerun copied \
         {moved}; all pulled back identical"
    );
}

#[tokio::test]
async fn a_corrupt_source_blob_fails_naming_it_and_writes_nothing_of_it() {
    let target = TargetEnv::fresh().await;
    let source_dir = tempfile::tempdir().unwrap();
    let mut source = Berth::start_in(source_dir.path(), &[]);
    let reg = Registry::new(&source.url);
    let mut pushed = Pushed::default();
    let good = random_bytes(64 * 1024);
    let bad = random_bytes(3 * MIB);
    pushed
        .image(&reg, "bad/app", &["1.0"], MANIFEST, &[&good, &bad])
        .await;
    let before = view(&reg, &pushed).await;
    source.stop();

    let bad_digest = Digest::parse(&digest_of(&bad)).unwrap();
    let hex = bad_digest.hex();
    let file = source_dir
        .path()
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[MIB] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let out = target.migrate(source_dir.path(), &[]).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(bad_digest.as_str()) && stderr.contains("do not match"),
        "the error does not name {bad_digest}:\n{stderr}"
    );

    // Nothing of that blob on the target; the good ones are there; no
    // metadata beyond blob rows.
    let pool = target.pool().await;
    let rows = sqlx::query("SELECT digest FROM blobs")
        .fetch_all(&pool)
        .await
        .unwrap();
    let digests: Vec<String> = rows
        .iter()
        .map(|r| sqlx::Row::try_get(r, 0).unwrap())
        .collect();
    assert!(!digests.contains(&bad_digest.to_string()), "{digests:?}");
    assert!(digests.contains(&digest_of(&good)), "{digests:?}");
    assert_eq!(
        scalar(&pool, "SELECT CAST(COUNT(*) AS BIGINT) FROM manifests").await,
        0
    );
    let store = target.store();
    assert_eq!(store.stat(&bad_digest).await.unwrap(), None);
    assert!(
        store
            .stat(&Digest::parse(&digest_of(&good)).unwrap())
            .await
            .unwrap()
            .is_some()
    );

    // Once the source is repaired, a rerun finishes the job.
    bytes[MIB] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let (out, _) = run_ok(&mut target.migrate(source_dir.path(), &[]));
    let f = figures(&out);
    assert_eq!(f["blobs"].2, 1, "only the repaired blob moves: {out}");
    pool.close().await;
    let dir = tempfile::tempdir().unwrap();
    let node = Berth::start_env(dir.path(), "127.0.0.1:0", &[], &target.server_env());
    assert_eq!(view(&Registry::new(&node.url), &pushed).await, before);
    target.remove_blobs(&pushed).await;
}

#[tokio::test]
async fn a_source_a_server_holds_open_is_refused() {
    let target = TargetEnv::fresh().await;
    let source_dir = tempfile::tempdir().unwrap();
    let source = Berth::start_in(source_dir.path(), &[]);
    let out = target
        .migrate(source_dir.path(), &["--dry-run"])
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("process {}", source.pid())) && stderr.contains("open"),
        "{stderr}"
    );
    // With consent, a dry run reads a snapshot.
    let (out, _) =
        run_ok(&mut target.migrate(source_dir.path(), &["--dry-run", "--allow-live-source"]));
    assert_eq!(figures(&out)["manifests"], (0, 0, 0));
}

#[tokio::test]
async fn a_target_where_a_node_made_its_own_admin_is_refused_untouched() {
    let target = TargetEnv::fresh().await;
    // A node started on the target before the migration: it bootstrapped
    // its own admin (another account, another password) and signing key.
    let dir = tempfile::tempdir().unwrap();
    let mut env = target.server_env();
    env.push(("BERTH_ADMIN_PASSWORD".into(), "target-own-admin".into()));
    let their_admin = basic(ADMIN_USER, "target-own-admin");
    let mut early = Berth::start_env(dir.path(), "127.0.0.1:0", &[], &env);
    assert_eq!(
        api_status(&early.url, &their_admin, "GET", "/me").await,
        StatusCode::OK
    );
    early.stop();

    let source_dir = tempfile::tempdir().unwrap();
    let mut source = Berth::start_in(source_dir.path(), &[]);
    let reg = Registry::new(&source.url);
    let mut pushed = Pushed::default();
    let layer = random_bytes(128 * 1024);
    pushed
        .image(&reg, "mig/app", &["1.0"], MANIFEST, &[&layer])
        .await;
    source.stop();

    let pool = target.pool().await;
    let users = scalar(&pool, "SELECT CAST(COUNT(*) AS BIGINT) FROM users").await;
    let keys = scalar(&pool, "SELECT CAST(COUNT(*) AS BIGINT) FROM signing_keys").await;
    let events = scalar(&pool, "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log").await;
    assert_eq!((users, keys), (1, 1));

    // Refused, the dry run as well as the real one, naming the tables and
    // the way out.
    for extra in [&["--dry-run"][..], &[][..]] {
        let out = target.migrate(source_dir.path(), extra).output().unwrap();
        let (stdout, stderr) = texts(&out);
        assert!(!out.status.success(), "{extra:?}: {stdout}\n{stderr}");
        for needle in [
            "users: 1 row(s) of the target are not the source's",
            "name=\"admin\"",
            "signing_keys: 1 row(s)",
            "nothing was copied",
            "never merges",
            "Migrate into a fresh, empty database",
        ] {
            assert!(
                stderr.contains(needle),
                "{extra:?}: no {needle:?} in:\n{stderr}"
            );
        }
    }

    // Nothing was copied: no registry rows, no blob, the target's own
    // identity rows only.
    for (sql, expected) in [
        ("SELECT CAST(COUNT(*) AS BIGINT) FROM blobs", 0),
        ("SELECT CAST(COUNT(*) AS BIGINT) FROM repositories", 0),
        ("SELECT CAST(COUNT(*) AS BIGINT) FROM manifests", 0),
        ("SELECT CAST(COUNT(*) AS BIGINT) FROM tags", 0),
        ("SELECT CAST(COUNT(*) AS BIGINT) FROM users", users),
        ("SELECT CAST(COUNT(*) AS BIGINT) FROM signing_keys", keys),
        ("SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log", events),
        ("SELECT CAST(COUNT(*) AS BIGINT) FROM projects", 1),
    ] {
        assert_eq!(scalar(&pool, sql).await, expected, "{sql}");
    }
    pool.close().await;
    let store = target.store();
    for (_, d) in &pushed.blobs {
        assert_eq!(store.stat(&Digest::parse(d).unwrap()).await.unwrap(), None);
    }
    // The target's admin is still its own.
    let node = Berth::start_env(dir.path(), "127.0.0.1:0", &[], &env);
    assert_eq!(
        api_status(&node.url, &their_admin, "GET", "/me").await,
        StatusCode::OK
    );
    assert_eq!(
        api_status(&node.url, &admin(), "GET", "/me").await,
        StatusCode::UNAUTHORIZED
    );
    println!(
        "migrate into a target with its own admin: refused before copying anything ({users} \
         user, {keys} signing key, {events} audit events of its own left as they were)"
    );
}
