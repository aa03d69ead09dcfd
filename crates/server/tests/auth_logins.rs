//! `docker login`, push and pull with every kind of credential Berth
//! accepts, against real servers: a local user, an LDAP user whose access
//! comes through a nested group (slapd), a project robot, a personal access
//! token, and a CI pipeline's OIDC ID token mapped to a robot (workload
//! identity, idpyoidc provider); plus the OIDC browser login flow ending in
//! a session. Afterwards the audit log must hold what happened.
//!
//! Needs `scripts/start-services.sh` (slapd and the OpenID provider) and a
//! running Docker engine.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{Berth, require_tool, run_status, service_env, unique};
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "auth-logins-admin";

/// A Berth with LDAP, OIDC and a workload rule configured.
fn start(dir: &Path) -> Berth {
    start_with(dir, &[])
}

fn start_with(dir: &Path, extra_env: &[(&str, &str)]) -> Berth {
    let base = service_env("BERTH_TEST_LDAP_BASE_DN");
    let config = format!(
        r#"
[auth]
ldap_admin_group_dn = "cn=admins,ou=groups,{base}"
{directory_and_provider}admin_group = "registry-admins"
scopes = ["openid", "profile", "email", "groups", "offline_access"]

[[auth.workload]]
issuer = "{issuer}"
audience = "{ci_client}"
robot = "robot$team-ci+deploy"
[auth.workload.claims]
repository = "team-a/app"
ref = "refs/heads/main"
"#,
        directory_and_provider = common::directory_and_provider_config(),
        issuer = service_env("BERTH_TEST_OIDC_ISSUER"),
        ci_client = service_env("BERTH_TEST_OIDC_CI_CLIENT_ID"),
    );
    let path = dir.join("berth.toml");
    std::fs::write(&path, config).unwrap();
    let data = dir.join("data");
    Berth::start_env(
        &data,
        "127.0.0.1:0",
        &["--config", path.to_str().unwrap()],
        &[
            ("BERTH_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("BERTH_AUTH_AUTO_CREATE_PROJECTS".into(), "false".into()),
        ]
        .into_iter()
        .chain(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .collect::<Vec<_>>(),
    )
}

/// The management API as the admin (or another Basic identity).
struct Api {
    url: String,
    http: reqwest::blocking::Client,
    user: String,
    password: String,
}

impl Api {
    fn new(berth: &Berth, user: &str, password: &str) -> Api {
        Api {
            url: format!("{}/api/v1", berth.url),
            http: reqwest::blocking::Client::new(),
            user: user.into(),
            password: password.into(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }
}

/// docker with a private config directory, so logins do not leak.
struct Docker {
    config: tempfile::TempDir,
    images: Vec<String>,
}

impl Docker {
    fn new() -> Docker {
        require_tool("docker");
        Docker {
            config: tempfile::tempdir().unwrap(),
            images: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", self.config.path()).args(args);
        c
    }

    fn try_run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let mut cmd = self.cmd(args);
        let out = match stdin {
            Some(input) => {
                use std::io::Write;
                cmd.stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                let mut child = cmd.spawn().unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(input.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
            None => run_status(&mut cmd),
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn login(&self, addr: &str, user: &str, secret: &str) -> (bool, String) {
        self.try_run(
            &["login", addr, "-u", user, "--password-stdin"],
            Some(secret),
        )
    }

    /// Imports a one-file image with unique content as `reference`.
    fn image(&mut self, dir: &Path, reference: &str) {
        require_tool("tar");
        let root = dir.join(unique("rootfs"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.txt"), unique("content")).unwrap();
        let tar = root.with_extension("tar");
        let out = run_status(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        assert!(out.status.success());
        let (ok, text) = self.try_run(&["import", tar.to_str().unwrap(), reference], None);
        assert!(ok, "docker import: {text}");
        self.images.push(reference.to_string());
    }

    /// Pushes, removes locally, pulls back, and checks the digest is the same.
    fn round_trip(&self, reference: &str) {
        let (ok, text) = self.try_run(&["push", reference], None);
        assert!(ok, "docker push {reference}: {text}");
        let pushed = text
            .split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .unwrap_or_else(|| panic!("no digest in: {text}"))
            .to_string();
        let (ok, text) = self.try_run(&["rmi", reference], None);
        assert!(ok, "docker rmi: {text}");
        let (ok, text) = self.try_run(&["pull", reference], None);
        assert!(ok, "docker pull {reference}: {text}");
        assert!(text.contains(&pushed), "pulled digest differs: {text}");
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for i in &self.images {
            let _ = self.cmd(&["rmi", "-f", i]).output();
        }
    }
}

fn grants(project: &str, actions: &[&str]) -> Value {
    json!([{
        "namespace": { "kind": "project", "project": project },
        "access": actions
            .iter()
            .map(|a| json!({ "resource": "repository", "action": a }))
            .collect::<Vec<_>>(),
    }])
}

#[test]
fn docker_works_with_every_kind_of_credential_and_the_audit_log_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let berth = start(dir.path());
    let admin = Api::new(&berth, "admin", ADMIN_PASSWORD);
    let addr = berth.addr.clone();

    admin.ok(
        "POST",
        "/projects",
        Some(json!({ "name": "team", "public": false })),
    );
    // A local user, developer of the project.
    admin.ok(
        "POST",
        "/users",
        Some(json!({ "name": "lou", "password": "lou-password-1", "email": "lou@example.org" })),
    );
    admin.ok(
        "POST",
        "/projects/team/members",
        Some(json!({ "user": "lou", "role": "developer" })),
    );
    // LDAP: bob is in `developers`, which is inside `platform`; only
    // `platform` gets a role, so bob's access comes through nesting.
    let base = service_env("BERTH_TEST_LDAP_BASE_DN");
    admin.ok(
        "POST",
        "/projects/team/members",
        Some(json!({
            "group": format!("cn=platform,ou=groups,{base}"),
            "group_source": "ldap",
            "role": "developer",
        })),
    );
    // A project robot that may push and pull.
    let robot = admin.ok(
        "POST",
        "/projects/team/robots",
        Some(json!({
            "name": "builder",
            "description": "CI",
            "permissions": grants("team", &["pull", "push"]),
            "expires_in_days": 1,
        })),
    );
    let robot_name = robot["name"].as_str().unwrap().to_string();
    let robot_secret = robot["secret"].as_str().unwrap().to_string();
    assert_eq!(robot_name, "robot$team+builder");
    // A personal access token of the local user.
    let lou = Api::new(&berth, "lou", "lou-password-1");
    let pat = lou.ok(
        "POST",
        "/users/me/tokens",
        Some(json!({ "name": "laptop", "expires_in_days": 7 })),
    );
    let pat_secret = pat["secret"].as_str().unwrap().to_string();

    let mut docker = Docker::new();
    let cases: [(&str, &str, &str); 4] = [
        ("local", "lou", "lou-password-1"),
        ("ldap", "bob", "bobpass"),
        ("robot", &robot_name, &robot_secret),
        ("pat", "lou", &pat_secret),
    ];
    for (kind, user, secret) in cases {
        let (ok, text) = docker.login(&addr, user, secret);
        assert!(ok, "docker login as {kind} ({user}): {text}");
        let reference = format!("{addr}/team/{kind}:v1");
        docker.image(dir.path(), &reference);
        docker.round_trip(&reference);
        let (ok, _) = docker.try_run(&["logout", &addr], None);
        assert!(ok);
    }
    // A wrong secret is refused, and so is a user of no project role.
    let (ok, text) = docker.login(&addr, "bob", "not-bobs-password");
    assert!(!ok && text.contains("unauthorized"), "{text}");
    let (ok, text) = docker.login(&addr, "alice", "alicepass");
    assert!(ok, "alice (LDAP, admins group) logs in: {text}");
    let reference = format!("{addr}/team/alice:v1");
    docker.image(dir.path(), &reference);
    let (ok, text) = docker.try_run(&["push", &reference], None);
    // alice is in `admins`, the admin group: a system admin may push.
    assert!(ok, "alice as LDAP admin pushes: {text}");
    let (ok, text) = docker.login(&addr, "carol", "carolpass");
    assert!(ok, "{text}");
    // carol is in `platform` directly: developer too.
    let reference = format!("{addr}/team/carol:v1");
    docker.image(dir.path(), &reference);
    docker.round_trip(&reference);

    // The LDAP users were mirrored with their nested groups.
    let me = Api::new(&berth, "bob", "bobpass").ok("GET", "/me", None);
    let groups = me["groups"].to_string();
    assert!(
        groups.contains("cn=developers") && groups.contains("cn=platform"),
        "{me}"
    );
    assert_eq!(me["system_admin"], json!(false));
    let alice = Api::new(&berth, "alice", "alicepass").ok("GET", "/me", None);
    assert_eq!(alice["system_admin"], json!(true), "{alice}");

    // The audit log holds logins of each kind, pushes, pulls and changes.
    let audit = admin.ok("GET", "/audit?limit=1000", None);
    let items = audit["items"].as_array().expect("audit items");
    let has = |actor: &str, action: &str, result: &str| {
        items.iter().any(|e| {
            e["actor"] == json!(actor)
                && e["action"] == json!(action)
                && e["result"] == json!(result)
        })
    };
    for actor in ["lou", "bob", robot_name.as_str(), "carol", "alice"] {
        assert!(
            has(actor, "login", "success"),
            "login of {actor} in {audit}"
        );
    }
    assert!(has("bob", "login", "failure"), "failed login of bob");
    for actor in ["lou", "bob", robot_name.as_str(), "carol"] {
        assert!(has(actor, "artifact.push", "success"), "push by {actor}");
        assert!(has(actor, "artifact.pull", "success"), "pull by {actor}");
    }
    for action in [
        "project.create",
        "user.create",
        "member.add",
        "robot.create",
        "token.create",
    ] {
        assert!(
            has("admin", action, "success") || has("lou", action, "success"),
            "{action}"
        );
    }
    let counts: BTreeMap<String, usize> = items.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e["action"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
        m
    });
    eprintln!("audit events by action: {counts:?}");
}

fn browser() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn attribute(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(prefix)? + prefix.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&amp;", "&"))
}

fn set_cookie(resp: &reqwest::blocking::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_string())
        })
}

/// Logs `user` in at the provider's form from `authorize_url`; returns the
/// query of the redirect back to the registry.
fn provider_login(authorize_url: &str, user: &str, password: &str) -> BTreeMap<String, String> {
    let b = browser();
    let page = b.get(authorize_url).send().unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    let action = attribute(&html, "action=\"").expect("login form action");
    let token = attribute(&html, "name=\"token\" value=\"").expect("login form token");
    let action = reqwest::Url::parse(authorize_url)
        .unwrap()
        .join(&action)
        .unwrap();
    let answer = b
        .post(action)
        .form(&[
            ("token", token.as_str()),
            ("username", user),
            ("password", password),
        ])
        .send()
        .unwrap();
    assert_eq!(answer.status(), 302, "provider login of {user}");
    let location = answer.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap();
    reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The whole browser flow through Berth; returns the session cookie.
fn oidc_session(berth: &Berth, user: &str, password: &str) -> (String, Value) {
    let b = browser();
    let start = b
        .get(format!("{}/api/v1/auth/oidc/login", berth.url))
        .send()
        .unwrap();
    assert_eq!(start.status(), 302);
    let pending = set_cookie(&start, "berth_oidc_login").expect("login cookie");
    let authorize = start.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let back = provider_login(&authorize, user, password);
    let callback = b
        .get(format!("{}/api/v1/auth/oidc/callback", berth.url))
        .query(&[("state", &back["state"]), ("code", &back["code"])])
        .header(
            reqwest::header::COOKIE,
            format!("berth_oidc_login={pending}"),
        )
        .send()
        .unwrap();
    let status = callback.status();
    let session = set_cookie(&callback, "berth_session");
    let body: Value = callback.json().unwrap();
    assert_eq!(status, 200, "{body}");
    (session.expect("session cookie"), body)
}

#[test]
fn oidc_browser_login_opens_a_session_with_groups_and_admin_right() {
    let dir = tempfile::tempdir().unwrap();
    let berth = start(dir.path());
    let (dana_session, body) = oidc_session(
        &berth,
        &service_env("BERTH_TEST_OIDC_ADMIN_USER"),
        &service_env("BERTH_TEST_OIDC_ADMIN_PASSWORD"),
    );
    assert_eq!(body["system_admin"], json!(true), "{body}");
    let b = browser();
    let me: Value = b
        .get(format!("{}/api/v1/me", berth.url))
        .header(
            reqwest::header::COOKIE,
            format!("berth_session={dana_session}"),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        me["name"],
        json!(service_env("BERTH_TEST_OIDC_ADMIN_USER")),
        "{me}"
    );
    assert!(me["groups"].to_string().contains("team-a"), "{me}");

    // Refresh renews the session through the provider.
    let refreshed = b
        .post(format!("{}/api/v1/auth/oidc/refresh", berth.url))
        .header(
            reqwest::header::COOKIE,
            format!("berth_session={dana_session}"),
        )
        .send()
        .unwrap();
    let status = refreshed.status();
    let cookie = set_cookie(&refreshed, "berth_session");
    assert_eq!(status, 200, "{}", refreshed.text().unwrap_or_default());
    assert!(cookie.is_some_and(|c| !c.is_empty() && c != dana_session));

    // A user outside the admin group is no system admin; with the session
    // the user makes a personal access token for `docker login`.
    let (erin_session, body) = oidc_session(
        &berth,
        &service_env("BERTH_TEST_OIDC_USER"),
        &service_env("BERTH_TEST_OIDC_USER_PASSWORD"),
    );
    assert_eq!(body["system_admin"], json!(false));
    let pat = b
        .post(format!("{}/api/v1/users/me/tokens", berth.url))
        .header(
            reqwest::header::COOKIE,
            format!("berth_session={erin_session}"),
        )
        .json(&json!({ "name": "cli", "expires_in_days": 30 }))
        .send()
        .unwrap();
    assert_eq!(pat.status(), 201);
    let pat: Value = pat.json().unwrap();
    let secret = pat["secret"].as_str().unwrap();
    let v2 = b
        .get(format!("{}/v2/", berth.url))
        .basic_auth(service_env("BERTH_TEST_OIDC_USER"), Some(secret))
        .send()
        .unwrap();
    assert_eq!(v2.status(), 200, "the OIDC user's token works on /v2");

    // A forged or foreign cookie is not a session.
    let forged = b
        .get(format!("{}/api/v1/me", berth.url))
        .header(
            reqwest::header::COOKIE,
            "berth_session=eyJhbGciOiJub25lIn0.e30.",
        )
        .send()
        .unwrap();
    assert_eq!(forged.status(), 401);
    // A callback without the login cookie is refused.
    let no_cookie = b
        .get(format!(
            "{}/api/v1/auth/oidc/callback?state=x&code=y",
            berth.url
        ))
        .send()
        .unwrap();
    assert_eq!(no_cookie.status(), 401);
}

/// A CI pipeline's ID token from the provider (authorization code flow of
/// the CI client, as a CI system's identity service would hold it).
fn ci_id_token(user: &str, password: &str) -> String {
    let issuer = service_env("BERTH_TEST_OIDC_ISSUER");
    let client_id = service_env("BERTH_TEST_OIDC_CI_CLIENT_ID");
    let secret = service_env("BERTH_TEST_OIDC_CI_CLIENT_SECRET");
    let redirect = service_env("BERTH_TEST_OIDC_CI_REDIRECT_URL");
    let verifier = unique("verifier-verifier-verifier-verifier-0123456789");
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&verifier))
    };
    let mut url = reqwest::Url::parse(&format!("{issuer}/authorization")).unwrap();
    let discovery: Value = browser()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    if let Some(ep) = discovery["authorization_endpoint"].as_str() {
        url = reqwest::Url::parse(ep).unwrap();
    }
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", "openid profile ci")
        .append_pair("state", &unique("state"))
        .append_pair("nonce", &unique("nonce"))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let back = provider_login(url.as_str(), user, password);
    let token_endpoint = discovery["token_endpoint"].as_str().unwrap().to_string();
    let resp: Value = browser()
        .post(token_endpoint)
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", back["code"].as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    resp["id_token"].as_str().expect("id_token").to_string()
}

#[test]
fn a_pipelines_id_token_logs_in_as_its_robot() {
    let dir = tempfile::tempdir().unwrap();
    let berth = start(dir.path());
    let admin = Api::new(&berth, "admin", ADMIN_PASSWORD);
    admin.ok(
        "POST",
        "/projects",
        Some(json!({ "name": "team-ci", "public": false })),
    );
    let robot = admin.ok(
        "POST",
        "/projects/team-ci/robots",
        Some(json!({
            "name": "deploy",
            "permissions": grants("team-ci", &["pull", "push"]),
            "expires_in_days": 1,
        })),
    );
    assert_eq!(robot["name"], json!("robot$team-ci+deploy"));

    let main = ci_id_token(
        &service_env("BERTH_TEST_OIDC_CI_USER"),
        &service_env("BERTH_TEST_OIDC_CI_PASSWORD"),
    );
    let mut docker = Docker::new();
    let addr = berth.addr.clone();
    let (ok, text) = docker.login(&addr, "robot$team-ci+deploy", &main);
    assert!(ok, "workload login: {text}");
    let reference = format!("{addr}/team-ci/app:v1");
    docker.image(dir.path(), &reference);
    docker.round_trip(&reference);
    // Outside the robot's permissions: refused.
    let other = format!("{addr}/library/app:v1");
    docker.image(dir.path(), &other);
    let (ok, text) = docker.try_run(&["push", &other], None);
    assert!(!ok, "push outside the robot's project: {text}");

    // A fork's pipeline token matches no rule.
    let fork = ci_id_token(
        &service_env("BERTH_TEST_OIDC_CI_FORK_USER"),
        &service_env("BERTH_TEST_OIDC_CI_FORK_PASSWORD"),
    );
    let (ok, text) = docker.login(&addr, "robot$team-ci+deploy", &fork);
    assert!(!ok, "fork token: {text}");
    // A tampered token neither.
    let mut parts: Vec<String> = main.split('.').map(str::to_string).collect();
    parts[2] = parts[2].chars().rev().collect();
    let (ok, _) = docker.login(&addr, "robot$team-ci+deploy", &parts.join("."));
    assert!(!ok, "tampered token");
}

#[test]
fn the_ui_login_opens_sessions_for_users_only() {
    let dir = tempfile::tempdir().unwrap();
    let berth = start(dir.path());
    let admin = Api::new(&berth, "admin", ADMIN_PASSWORD);
    admin.ok(
        "POST",
        "/projects",
        Some(json!({ "name": "ui", "public": false })),
    );
    let robot = admin.ok(
        "POST",
        "/projects/ui/robots",
        Some(json!({ "name": "r", "permissions": grants("ui", &["pull"]) })),
    );
    let b = browser();
    let login = |user: &str, password: &str| {
        b.post(format!("{}/api/v1/auth/login", berth.url))
            .json(&json!({ "username": user, "password": password }))
            .send()
            .unwrap()
    };
    let ok = login("admin", ADMIN_PASSWORD);
    assert_eq!(ok.status(), 200);
    let session = set_cookie(&ok, "berth_session").expect("session cookie");
    let me: Value = b
        .get(format!("{}/api/v1/me", berth.url))
        .header(reqwest::header::COOKIE, format!("berth_session={session}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(me["name"], json!("admin"));
    // LDAP users log in too; robots may not open a session.
    assert_eq!(login("bob", "bobpass").status(), 200);
    let refused = login(
        robot["name"].as_str().unwrap(),
        robot["secret"].as_str().unwrap(),
    );
    assert_eq!(refused.status(), 403);
    assert_eq!(login("admin", "wrong-password").status(), 401);
    // Logout clears the cookie.
    let out = b
        .post(format!("{}/api/v1/auth/logout", berth.url))
        .send()
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(set_cookie(&out, "berth_session").as_deref(), Some(""));
}

#[test]
fn failed_logins_are_rate_limited_and_say_nothing_about_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let berth = start_with(dir.path(), &[("BERTH_AUTH_MAX_FAILED_LOGINS", "3")]);
    let admin = Api::new(&berth, "admin", ADMIN_PASSWORD);
    admin.ok(
        "POST",
        "/users",
        Some(json!({ "name": "lou", "password": "lou-password-1" })),
    );
    let b = browser();
    let token = |user: &str, password: &str| {
        let resp = b
            .get(format!("{}/service/token?service=berth", berth.url))
            .basic_auth(user, Some(password))
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, retry, resp.text().unwrap())
    };
    // Unknown account and wrong password: the same answer.
    let (s1, _, unknown) = token("nobody-here", "whatever-password");
    let (s2, _, wrong) = token("lou", "not-lou-password");
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(unknown, wrong, "no user enumeration through messages");
    token("lou", "not-lou-password-2");
    token("lou", "not-lou-password-3");
    // Three failures: now even the right password is refused for a while.
    let (status, retry, body) = token("lou", "lou-password-1");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("TOOMANYREQUESTS"), "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // The same on /v2 with Basic credentials, and other accounts are not
    // affected.
    let v2 = b
        .get(format!("{}/v2/", berth.url))
        .basic_auth("lou", Some("lou-password-1"))
        .send()
        .unwrap();
    assert_eq!(v2.status(), 429);
    assert_eq!(token("admin", ADMIN_PASSWORD).0, 200);
    // The audit log says what happened.
    let audit = admin.ok("GET", "/audit?actor=lou&action=login&limit=100", None);
    let results: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| **r == "failure").count(),
        3,
        "{audit}"
    );
    assert!(results.contains(&"denied"), "{audit}");
}

/// `berth admin ldap test` and `berth admin settings` against the real
/// directory: the check binds over StartTLS and finds the fixture's users;
/// the settings name the servers and never a secret.
#[test]
fn the_directory_check_and_the_settings_answer_from_the_real_servers() {
    let dir = tempfile::tempdir().unwrap();
    let berth = start(dir.path());
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["admin", "--url", &berth.url, "--user", "admin"])
            .args(args)
            .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .output()
            .expect("run berth admin");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "berth admin {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let out = cli(&["ldap", "test"]);
    assert!(
        out.contains("LDAP: connected (TLS), search account accepted"),
        "{out}"
    );
    let report: Value = serde_json::from_str(&cli(&["--json", "ldap", "test"])).unwrap();
    assert_eq!(report["bind_ok"], json!(true));
    assert!(report["users_found"].as_u64().unwrap() >= 3, "{report}");

    let text = cli(&["settings"]);
    let settings: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        settings["auth"]["ldap"]["url"],
        json!(service_env("BERTH_TEST_LDAP_URL"))
    );
    assert_eq!(settings["auth"]["ldap"]["bind_password_set"], json!(true));
    assert_eq!(
        settings["auth"]["oidc"]["issuer_url"],
        json!(service_env("BERTH_TEST_OIDC_ISSUER"))
    );
    assert_eq!(settings["auth"]["oidc"]["client_secret_set"], json!(true));
    assert_eq!(
        settings["auth"]["workload"][0]["robot"],
        json!("robot$team-ci+deploy")
    );
    for secret in [
        service_env("BERTH_TEST_LDAP_BIND_PASSWORD"),
        service_env("BERTH_TEST_OIDC_CLIENT_SECRET"),
        ADMIN_PASSWORD.to_string(),
    ] {
        assert!(!text.contains(&secret), "a secret in the settings: {text}");
    }
}
