//! Test harness shared by the integration tests: starts the real `berth`
//! binary on a free port with its own data directory, and finds real client
//! tools (failing loudly when one is missing, never skipping).
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// The system admin every test server is bootstrapped with (through
/// `BERTH_ADMIN_PASSWORD`, see [`Berth::start_env`]).
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "berth-test-admin";

/// `user:password` of the admin, as skopeo's `--creds` wants it.
pub fn admin_creds() -> String {
    format!("{ADMIN_USER}:{ADMIN_PASSWORD}")
}

/// The `Authorization` header value of the admin's Basic credentials.
pub fn admin_basic() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(admin_creds())
    )
}

/// A reqwest client builder that sends the admin's Basic credentials on
/// every request (a header set on a request replaces it).
pub fn client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&admin_basic()).expect("header value");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder().default_headers(headers)
}

/// A reqwest client with the admin's Basic credentials.
pub fn client() -> reqwest::Client {
    client_builder().build().expect("HTTP client")
}

/// Makes sure `project` exists, as an administrator would before clients
/// use it: the admin's first push to a project creates it (the harness
/// starts servers with `BERTH_AUTH_AUTO_CREATE_PROJECTS=true`); here an
/// upload session in `PROJECT/created`, opened and cancelled (it leaves
/// that repository, empty). Tests whose clients read before they write (a
/// HEAD before each blob upload, as registry clients do) call it first:
/// reading a project that does not exist is refused (403), even to the
/// admin. (docker and other token clients ask for pull and push at once,
/// which creates the project.)
pub async fn create_project(url: &str, project: &str) {
    let base = url.trim_end_matches('/');
    let client = client();
    let start = format!("{base}/v2/{project}/created/blobs/uploads/");
    let resp = client
        .post(&start)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {start}: {e}"));
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 202, "creating project {project}: {body}");
    let location = location.expect("Location of the upload session");
    let session = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let resp = client
        .delete(&session)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE {session}: {e}"));
    assert_eq!(resp.status().as_u16(), 204, "cancelling {session}");
}

/// A running `berth serve` process.
pub struct Berth {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`, as clients like docker want it.
    pub addr: String,
    pub data_dir: PathBuf,
    /// The admin password `berth serve` printed on first start when
    /// started without `BERTH_ADMIN_PASSWORD` (see [`Launch::admin_password`]).
    pub printed_admin_password: Option<String>,
    /// Every line the server wrote to stdout so far.
    stdout: Arc<Mutex<Vec<String>>>,
    child: Option<Child>,
    _temp: Option<tempfile::TempDir>,
}

/// How [`Berth::launch`] starts the server.
pub struct Launch<'a> {
    pub listen: &'a str,
    pub extra: &'a [&'a str],
    /// Extra environment (`BERTH_*`, `RUST_LOG`); these win over the
    /// defaults (`RUST_LOG=warn` and those below).
    pub envs: &'a [(String, String)],
    /// Set `BERTH_ADMIN_PASSWORD` to [`ADMIN_PASSWORD`] (the default); when
    /// false the variable is removed, so a first start prints a generated
    /// password.
    pub admin_password: bool,
    /// Write the server's stderr (its logs) to this file instead of the
    /// test's stderr.
    pub stderr: Option<&'a Path>,
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Launch {
            listen: "127.0.0.1:0",
            extra: &[],
            envs: &[],
            admin_password: true,
            stderr: None,
        }
    }
}

/// The line `berth serve` prints (once, on stdout) when it generated the
/// admin password.
pub const PRINTED_ADMIN_PREFIX: &str = "berth: created system admin \"admin\" with password: ";

impl Berth {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> Berth {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut b = Berth::start_in(temp.path(), &[]);
        b._temp = Some(temp);
        b
    }

    /// Starts a server on `data_dir` (kept after the test), with extra args.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Berth {
        Berth::start_on(data_dir, "127.0.0.1:0", extra)
    }

    pub fn start_on(data_dir: &Path, listen: &str, extra: &[&str]) -> Berth {
        Berth::start_env(data_dir, listen, extra, &[])
    }

    /// Starts a server with extra environment variables (`BERTH_*`). Unless
    /// `envs` sets them, the admin is bootstrapped with [`ADMIN_PASSWORD`]
    /// (`BERTH_ADMIN_PASSWORD`) and may create projects by pushing
    /// (`BERTH_AUTH_AUTO_CREATE_PROJECTS=true`), since the tests push to
    /// many project names.
    pub fn start_env(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        envs: &[(String, String)],
    ) -> Berth {
        Berth::launch(
            data_dir,
            Launch {
                listen,
                extra,
                envs,
                ..Launch::default()
            },
        )
    }

    /// Starts a server as `how` says and waits until it listens.
    pub fn launch(data_dir: &Path, how: Launch<'_>) -> Berth {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(how.listen)
            .arg("--data-dir")
            .arg(data_dir)
            .args(how.extra)
            .env_remove("BERTH_ADMIN_PASSWORD")
            .env("BERTH_AUTH_AUTO_CREATE_PROJECTS", "true")
            .env("RUST_LOG", "warn");
        if how.admin_password {
            cmd.env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD);
        }
        let stderr = match how.stderr {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("create stderr file")),
            None => Stdio::inherit(),
        };
        let mut child = cmd
            .envs(how.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the berth binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let seen = lines.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                seen.lock().expect("stdout lines").push(line.clone());
                if !sent && let Some(url) = line.strip_prefix("berth listening on ") {
                    let _ = tx.send(url.trim().to_string());
                    sent = true;
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("berth did not report its address within 30 s");
            }
        };
        let addr = url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        // The password line comes before the listening line.
        let printed_admin_password = lines
            .lock()
            .expect("stdout lines")
            .iter()
            .find_map(|l| l.strip_prefix(PRINTED_ADMIN_PREFIX))
            .map(|p| p.trim().to_string());
        Berth {
            url,
            addr,
            data_dir: data_dir.to_path_buf(),
            printed_admin_password,
            stdout: lines,
            child: Some(child),
            _temp: None,
        }
    }

    /// Every line the server wrote to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lines").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: the crash case.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the graceful case. Returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().ok()
    }

    /// Restarts on the same data directory and port-0 listen address.
    pub fn restart(&mut self) {
        self.kill9();
        let temp = self._temp.take();
        let mut fresh = Berth::start_in(&self.data_dir, &[]);
        fresh._temp = temp;
        std::mem::swap(self, &mut fresh);
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Path of a required external tool; panics with an install hint when absent.
pub fn require_tool(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .expect("run sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !path.is_empty(),
        "required tool `{name}` is not installed: run scripts/install-test-deps.sh (CI does)"
    );
    PathBuf::from(path)
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

// ---------------------------------------------------------------------------
// Helpers for the real-client tests (client_*.rs).

/// A name part unique to this process and call, for repositories, local
/// image names and temp files, so tests can run in parallel.
pub fn unique(prefix: &str) -> String {
    use rand::Rng as _;
    let n: u32 = rand::rng().random();
    format!("{prefix}{}-{n:08x}", std::process::id())
}

/// Runs a command and returns its full output without judging the status
/// (for steps that are expected to fail).
pub fn run_status(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

/// A plain HTTP response read to the end.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One HTTP request with reqwest from synchronous test code (a private
/// current-thread runtime per call), as the admin (Basic credentials)
/// unless `headers` holds an `Authorization` of its own.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> HttpResponse {
    let basic = admin_basic();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        all.push(("Authorization", &basic));
    }
    http_anonymous(method, url, &all, body)
}

/// [`http`] without credentials: exactly the given headers.
pub fn http_anonymous(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> HttpResponse {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = client.request(method.clone(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading body: {e}"))
            .to_vec();
        HttpResponse {
            status,
            headers,
            body,
        }
    })
}

/// GET with an Accept header.
pub fn http_get(url: &str, accept: &str) -> HttpResponse {
    http("GET", url, &[("Accept", accept)], None)
}

/// Every manifest media type a registry client usually accepts.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

impl Berth {
    /// Sends SIGTERM and returns at once, so a test can keep a request in
    /// flight while the server shuts down; see [`Berth::try_exit`].
    pub fn sigterm(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
    }

    /// The exit status if the process has exited (it is then no longer
    /// running, and [`Berth::restart`] starts a fresh one); `None` while it
    /// still runs or when it was already reaped.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }
}

// ---------------------------------------------------------------------------
// Shared PostgreSQL + S3 backends (scripts/start-services.sh starts them).

/// A `BERTH_TEST_*` variable; missing is a failure with a hint, never a skip.
pub fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run scripts/start-services.sh and source \
             target/test-services.env (scripts/test does)"
        )
    })
}

/// Creates a fresh database named after `prefix` on the test PostgreSQL
/// server and returns its URL.
pub async fn fresh_postgres_db(prefix: &str) -> String {
    let admin_url = service_env("BERTH_TEST_POSTGRES_URL");
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&admin_url)
        .await
        .expect("connect to PostgreSQL");
    let db = unique(prefix).replace('-', "_");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("URL ends in /database");
    format!("{base}/{db}")
}

/// A fresh PostgreSQL database and S3 prefix, as the `BERTH_*` variables
/// every node of one test shares.
pub async fn shared_backends(prefix: &str) -> Vec<(String, String)> {
    let metadata_url = fresh_postgres_db(&format!("berth_{prefix}_")).await;
    [
        ("BERTH_METADATA_URL", metadata_url),
        ("BERTH_STORAGE_BACKEND", "s3".into()),
        ("BERTH_S3_ENDPOINT", service_env("BERTH_TEST_S3_ENDPOINT")),
        ("BERTH_S3_BUCKET", service_env("BERTH_TEST_S3_BUCKET")),
        (
            "BERTH_S3_ACCESS_KEY_ID",
            service_env("BERTH_TEST_S3_ACCESS_KEY"),
        ),
        (
            "BERTH_S3_SECRET_ACCESS_KEY",
            service_env("BERTH_TEST_S3_SECRET_KEY"),
        ),
        ("BERTH_S3_ALLOW_HTTP", "true".into()),
        ("BERTH_S3_PREFIX", unique(prefix)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

// ---------------------------------------------------------------------------
// The docker CLI, logged in as a user would be.

/// The docker CLI with a private client configuration directory
/// (`DOCKER_CONFIG`): `docker login` writes credentials there, so parallel
/// tests neither share nor clobber each other's logins (or manifest lists).
pub struct DockerCli {
    pub bin: PathBuf,
    pub config: tempfile::TempDir,
}

impl DockerCli {
    pub fn new(bin: &Path) -> DockerCli {
        DockerCli {
            bin: bin.to_path_buf(),
            config: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `docker ARGS` with this client's configuration.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("DOCKER_CONFIG", self.config.path()).args(args);
        c
    }

    /// `docker login ADDR -u admin --password-stdin`, as a user would (the
    /// password never on the command line). Pushes and pulls then go through
    /// the registry's token endpoint.
    pub fn login(&self, addr: &str) {
        login_with_stdin(
            self.cmd(&["login", addr, "-u", ADMIN_USER, "--password-stdin"]),
            ADMIN_PASSWORD,
        );
    }

    /// `docker logout ADDR`: the credentials leave the configuration.
    pub fn logout(&self, addr: &str) {
        let out = run(&mut self.cmd(&["logout", addr]));
        let config =
            std::fs::read_to_string(self.config.path().join("config.json")).unwrap_or_default();
        assert!(
            !config.contains(addr),
            "docker logout {addr} left credentials behind ({out}):\n{config}"
        );
    }
}

/// Runs a `… login … --password-stdin` command with `password` on stdin and
/// checks that it succeeded.
pub fn login_with_stdin(mut cmd: Command, password: &str) {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(password.as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("wait for login");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Login Succeeded"),
        "{cmd:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `[auth.ldap]` (slapd over StartTLS) and `[auth.oidc]` (the idpyoidc
/// provider) for the servers `scripts/start-services.sh` runs. The text
/// ends inside `[auth.oidc]`, so a caller may append more of its keys.
pub fn directory_and_provider_config() -> String {
    let base = service_env("BERTH_TEST_LDAP_BASE_DN");
    format!(
        r#"
[auth.ldap]
url = "{ldap}"
start_tls = true
ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password = "{bind_pw}"
user_base_dn = "ou=people,{base}"
group_base_dn = "ou=groups,{base}"

[auth.oidc]
issuer_url = "{issuer}"
client_id = "{client_id}"
client_secret = "{client_secret}"
redirect_url = "{redirect}"
"#,
        ldap = service_env("BERTH_TEST_LDAP_URL"),
        ca = service_env("BERTH_TEST_LDAP_CA"),
        bind_dn = service_env("BERTH_TEST_LDAP_BIND_DN"),
        bind_pw = service_env("BERTH_TEST_LDAP_BIND_PASSWORD"),
        issuer = service_env("BERTH_TEST_OIDC_ISSUER"),
        client_id = service_env("BERTH_TEST_OIDC_CLIENT_ID"),
        client_secret = service_env("BERTH_TEST_OIDC_CLIENT_SECRET"),
        redirect = service_env("BERTH_TEST_OIDC_REDIRECT_URL"),
    )
}
