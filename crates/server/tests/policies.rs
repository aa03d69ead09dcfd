//! Immutable tag rules and quotas against the real `berth` binary: refusals
//! seen through a real `docker push` (the registry's message shows in
//! docker's output), deletions through `/v2`, the management API with its
//! permissions, exact quota usage, warnings in the audit log and metrics,
//! `berth admin`, and two concurrent pushes racing for the last bytes of a
//! quota on PostgreSQL.
//!
//! Needs a running Docker engine and `tar`; the race needs the test
//! PostgreSQL (scripts/start-services.sh).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    ACCEPT_ALL_MANIFESTS, ADMIN_PASSWORD, ADMIN_USER, Berth, HttpResponse, http, require_tool,
    run_status, unique,
};
use serde_json::{Value, json};

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A `/api/v1` request as `who` (user, password); the admin when `None`.
fn api(
    server: &Berth,
    method: &str,
    path: &str,
    body: Option<Value>,
    who: Option<(&str, &str)>,
) -> HttpResponse {
    let auth = who.map(|(u, p)| basic(u, p));
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    http(
        method,
        &format!("{}/api/v1{path}", server.url),
        &headers,
        body.map(|b| serde_json::to_vec(&b).unwrap()),
    )
}

fn api_ok(server: &Berth, method: &str, path: &str, body: Option<Value>) -> Value {
    let r = api(server, method, path, body, None);
    assert!(
        (200..300).contains(&r.status),
        "{method} {path}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

/// The message of an error answer.
fn message(r: &HttpResponse) -> String {
    r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn code(r: &HttpResponse) -> String {
    r.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn create_user(server: &Berth, name: &str, password: &str) {
    api_ok(
        server,
        "POST",
        "/users",
        Some(json!({"name": name, "password": password})),
    );
}

fn add_member(server: &Berth, project: &str, user: &str, role: &str) {
    api_ok(
        server,
        "POST",
        &format!("/projects/{project}/members"),
        Some(json!({"user": user, "role": role})),
    );
}

/// docker with a private config directory, logged in as the admin; removes
/// the images it made when dropped.
struct Docker {
    config: tempfile::TempDir,
    images: Vec<String>,
    work: tempfile::TempDir,
}

impl Docker {
    fn new(addr: &str) -> Docker {
        require_tool("docker");
        require_tool("tar");
        let d = Docker {
            config: tempfile::tempdir().unwrap(),
            images: Vec::new(),
            work: tempfile::tempdir().unwrap(),
        };
        common::login_with_stdin(
            d.cmd(&["login", addr, "-u", ADMIN_USER, "--password-stdin"]),
            ADMIN_PASSWORD,
        );
        d
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", self.config.path()).args(args);
        c
    }

    /// Runs docker; (success, stdout + stderr).
    fn try_run(&self, args: &[&str]) -> (bool, String) {
        let out = run_status(&mut self.cmd(args));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn run(&self, args: &[&str]) -> String {
        let (ok, text) = self.try_run(args);
        assert!(ok, "docker {args:?}: {text}");
        text
    }

    /// Imports a one-layer image as `reference` whose layer holds
    /// `random_bytes` of incompressible data (so its pushed size is
    /// about that). Returns the image id (its config digest).
    fn image(&mut self, reference: &str, random_bytes: usize) -> String {
        let root = self.work.path().join(unique("rootfs"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.txt"), unique("content")).unwrap();
        let data: Vec<u8> = (0..random_bytes).map(|_| rand::random::<u8>()).collect();
        std::fs::write(root.join("random.bin"), data).unwrap();
        let tar = root.with_extension("tar");
        tar_dir(&root, &tar);
        self.run(&["import", tar.to_str().unwrap(), reference]);
        self.images.push(reference.to_string());
        self.run(&["image", "inspect", "--format", "{{.Id}}", reference])
            .trim()
            .to_string()
    }

    fn tag(&mut self, from: &str, to: &str) {
        self.run(&["tag", from, to]);
        self.images.push(to.to_string());
    }

    fn push(&self, reference: &str) -> String {
        self.run(&["push", reference])
    }

    /// A push that must fail; returns docker's output.
    fn push_refused(&self, reference: &str) -> String {
        let (ok, text) = self.try_run(&["push", reference]);
        assert!(!ok, "docker push {reference} was accepted:\n{text}");
        text
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for i in &self.images {
            let _ = self.cmd(&["rmi", "-f", i]).output();
        }
    }
}

fn tar_dir(root: &Path, tar: &Path) {
    let out = run_status(
        Command::new("tar")
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(tar)
            .arg("."),
    );
    assert!(out.status.success(), "tar: {out:?}");
}

/// The `digest: sha256:…` that `docker push` prints.
fn pushed_digest(push_output: &str) -> String {
    push_output
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("digest: ")?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{push_output}"))
}

fn v2(server: &Berth, method: &str, path: &str) -> HttpResponse {
    http(
        method,
        &format!("{}/v2/{path}", server.url),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
        None,
    )
}

/// Audit events with `action` in `project`, waiting up to 5 s for the
/// write-behind log to hold at least `at_least` of them.
fn audit_events(server: &Berth, action: &str, project: &str, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = api_ok(
            server,
            "GET",
            &format!("/audit?action={action}&project={project}&limit=100"),
            None,
        );
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= at_least || Instant::now() > deadline {
            return items;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn immutable_tags_refuse_moves_and_deletions_through_docker_and_v2() {
    let server = Berth::start();
    let project = "team";
    api_ok(&server, "POST", "/projects", Some(json!({"name": project})));

    // Permissions: maintainers and up manage rules; developers do not.
    create_user(&server, "dev", "devpass123");
    create_user(&server, "mai", "maipass123");
    add_member(&server, project, "dev", "developer");
    add_member(&server, project, "mai", "maintainer");
    let rule_body = json!({"repositories": {"pattern": "**"}, "tags": {"pattern": "release-*"}});
    let r = api(
        &server,
        "POST",
        "/projects/team/immutable-rules",
        Some(rule_body.clone()),
        Some(("dev", "devpass123")),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        message(&r).contains("immutable-tag:create"),
        "{}",
        message(&r)
    );
    let r = api(
        &server,
        "GET",
        "/projects/team/immutable-rules",
        None,
        Some(("dev", "devpass123")),
    );
    assert_eq!(r.status, 403, "developers do not list rules: {r:?}");
    let r = api(
        &server,
        "POST",
        "/projects/team/immutable-rules",
        Some(rule_body.clone()),
        Some(("mai", "maipass123")),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let rule = r.json();
    let id = rule["id"].as_i64().unwrap();
    assert_eq!(
        rule["tags"],
        json!({"pattern": "release-*", "decoration": "matches"})
    );
    assert_eq!(rule["created_by"], "mai");
    // The same selectors again: a conflict.
    let r = api(
        &server,
        "POST",
        "/projects/team/immutable-rules",
        Some(rule_body),
        None,
    );
    assert_eq!(r.status, 409, "{r:?}");
    // A bad pattern names the field.
    let r = api(
        &server,
        "POST",
        "/projects/team/immutable-rules",
        Some(json!({"repositories": {"pattern": "**"}, "tags": {"pattern": "v[1-"}})),
        None,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(message(&r).starts_with("tags.pattern:"), "{}", message(&r));
    // A second rule that protects nothing we push (another repository).
    let other = api_ok(
        &server,
        "POST",
        "/projects/team/immutable-rules",
        Some(json!({"repositories": {"pattern": "other/**"}, "tags": {"pattern": "*"}})),
    );
    let listed = api_ok(&server, "GET", "/projects/team/immutable-rules", None);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    let mut docker = Docker::new(&server.addr);
    let repo = format!("{project}/{}", unique("app"));
    let release = format!("{}/{repo}:release-1", server.addr);
    let latest = format!("{}/{repo}:latest", server.addr);

    // The first push of the tag creates it.
    let first_id = docker.image(&release, 4096);
    let first = pushed_digest(&docker.push(&release));

    // A different image under the same tag is refused, naming the rule.
    docker.image(&release, 4096);
    let out = docker.push_refused(&release);
    assert!(
        out.contains(&format!("immutable rule {id}")) && out.contains("release-*"),
        "docker's output does not name the rule:\n{out}"
    );
    assert!(out.contains("denied"), "{out}");
    let m = v2(&server, "GET", &format!("{repo}/manifests/release-1"));
    assert_eq!(m.header("docker-content-digest"), first, "the tag moved");

    // The same image again is fine.
    docker.tag(&first_id, &release);
    assert_eq!(pushed_digest(&docker.push(&release)), first);

    // `latest` matches no rule: it moves freely.
    docker.tag(&first_id, &latest);
    docker.push(&latest);
    let second_id = docker.image(&latest, 4096);
    let second = pushed_digest(&docker.push(&latest));
    assert_ne!(first, second);
    assert_ne!(first_id, second_id);

    // Deleting the protected tag, or the manifest it points at, is refused.
    let r = v2(&server, "DELETE", &format!("{repo}/manifests/release-1"));
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(code(&r), "DENIED");
    assert!(
        message(&r).contains(&format!("immutable rule {id}")) && message(&r).contains("release-*"),
        "{}",
        message(&r)
    );
    let r = v2(&server, "DELETE", &format!("{repo}/manifests/{first}"));
    assert_eq!(r.status, 403, "{r:?}");
    assert!(message(&r).contains("release-1"), "{}", message(&r));
    // An unprotected tag goes, and so does a manifest only it pointed at.
    let r = v2(&server, "DELETE", &format!("{repo}/manifests/latest"));
    assert_eq!(r.status, 202, "{r:?}");
    let r = v2(&server, "DELETE", &format!("{repo}/manifests/{second}"));
    assert_eq!(r.status, 202, "{r:?}");

    // Disabled, the rule protects nothing: the tag moves.
    let patched = api_ok(
        &server,
        "PATCH",
        &format!("/projects/team/immutable-rules/{id}"),
        Some(json!({"disabled": true})),
    );
    assert_eq!(patched["disabled"], true);
    assert_eq!(patched["tags"]["pattern"], "release-*");
    docker.tag(&second_id, &release);
    assert_eq!(pushed_digest(&docker.push(&release)), second);

    // Excluding: every tag but `latest` of this repository is protected.
    let path = repo.split_once('/').unwrap().1.to_string();
    api_ok(
        &server,
        "PATCH",
        &format!("/projects/team/immutable-rules/{id}"),
        Some(json!({
            "repositories": {"pattern": path, "decoration": "repoMatches"},
            "tags": {"pattern": "latest", "decoration": "excludes"},
            "disabled": false,
        })),
    );
    docker.tag(&first_id, &release);
    let out = docker.push_refused(&release);
    assert!(
        out.contains("tags not matching \\\"latest\\\"")
            || out.contains("tags not matching \"latest\""),
        "{out}"
    );
    docker.tag(&first_id, &latest);
    docker.push(&latest);

    // Rules go with DELETE; deleting one twice is 404.
    for rule in [id, other["id"].as_i64().unwrap()] {
        let r = api(
            &server,
            "DELETE",
            &format!("/projects/team/immutable-rules/{rule}"),
            None,
            None,
        );
        assert_eq!(r.status, 204, "{r:?}");
    }
    let r = api(
        &server,
        "DELETE",
        &format!("/projects/team/immutable-rules/{id}"),
        None,
        None,
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = v2(&server, "DELETE", &format!("{repo}/manifests/release-1"));
    assert_eq!(r.status, 202, "no rule left: {r:?}");

    let events = audit_events(&server, "immutable_rule.create", project, 2);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().any(|e| e["actor"] == "mai"), "{events:?}");
    assert_eq!(
        audit_events(&server, "immutable_rule.update", project, 2).len(),
        2
    );
    assert_eq!(
        audit_events(&server, "immutable_rule.delete", project, 2).len(),
        2
    );
}

/// The sizes of what a manifest references (config and layers) by digest.
fn manifest_blobs(server: &Berth, repo: &str, reference: &str) -> (Vec<(String, i64)>, i64) {
    let m = v2(server, "GET", &format!("{repo}/manifests/{reference}"));
    assert_eq!(m.status, 200, "{m:?}");
    let body = m.json();
    let mut blobs = vec![(
        body["config"]["digest"].as_str().unwrap().to_string(),
        body["config"]["size"].as_i64().unwrap(),
    )];
    for l in body["layers"].as_array().unwrap() {
        blobs.push((
            l["digest"].as_str().unwrap().to_string(),
            l["size"].as_i64().unwrap(),
        ));
    }
    (blobs, m.body.len() as i64)
}

fn quota(server: &Berth, project: &str) -> Value {
    api_ok(server, "GET", &format!("/projects/{project}/quota"), None)
}

#[test]
fn quotas_refuse_docker_pushes_that_would_exceed_and_count_exactly() {
    let server = Berth::start();
    let project = "quota";
    api_ok(&server, "POST", "/projects", Some(json!({"name": project})));

    // New projects are unlimited.
    let q = quota(&server, project);
    assert_eq!(q["limits"], json!({"storage_bytes": -1, "artifacts": -1}));
    assert_eq!(q["usage"], json!({"storage_bytes": 0, "artifacts": 0}));
    assert_eq!(q["usage_ratio"], Value::Null);

    // Only a system admin sets quotas; members read them.
    create_user(&server, "owner", "ownerpass1");
    add_member(&server, project, "owner", "project_admin");
    create_user(&server, "guest", "guestpass1");
    add_member(&server, project, "guest", "limited_guest");
    let r = api(
        &server,
        "PUT",
        "/projects/quota/quota",
        Some(json!({"storage_bytes": 1})),
        Some(("owner", "ownerpass1")),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(message(&r).contains("quota:update"), "{}", message(&r));
    let r = api(
        &server,
        "GET",
        "/projects/quota/quota",
        None,
        Some(("guest", "guestpass1")),
    );
    assert_eq!(r.status, 200, "{r:?}");
    create_user(&server, "stranger", "strangerpass");
    let r = api(
        &server,
        "GET",
        "/projects/quota/quota",
        None,
        Some(("stranger", "strangerpass")),
    );
    assert_eq!(r.status, 403, "{r:?}");
    for (body, field) in [
        (json!({"storage_bytes": -2}), "storage_bytes:"),
        (json!({"artifacts": -5}), "artifacts:"),
        (json!({"warn_percent": 0}), "warn_percent:"),
        (json!({"warn_percent": 101}), "warn_percent:"),
    ] {
        let r = api(&server, "PUT", "/projects/quota/quota", Some(body), None);
        assert_eq!(r.status, 400, "{r:?}");
        assert!(message(&r).starts_with(field), "{}", message(&r));
    }

    // 1 MiB, warning at 1%: the first push crosses the threshold.
    const LIMIT: i64 = 1024 * 1024;
    let set = api_ok(
        &server,
        "PUT",
        "/projects/quota/quota",
        Some(json!({"storage_bytes": LIMIT, "warn_percent": 1})),
    );
    assert_eq!(
        set["limits"],
        json!({"storage_bytes": LIMIT, "artifacts": -1})
    );
    assert_eq!(set["warn_percent"], 1);

    let mut docker = Docker::new(&server.addr);
    let app = format!("{project}/app");
    let small = format!("{}/{app}:small", server.addr);
    docker.image(&small, 48 * 1024);
    let small_digest = pushed_digest(&docker.push(&small));

    // Usage is exactly the pushed blobs plus the manifest.
    let (blobs, manifest_len) = manifest_blobs(&server, &app, "small");
    let blob_bytes: i64 = blobs.iter().map(|(_, s)| s).sum();
    let q = quota(&server, project);
    assert_eq!(
        q["usage"]["storage_bytes"],
        blob_bytes + manifest_len,
        "{q}"
    );
    assert_eq!(q["usage"]["artifacts"], 1);
    assert_eq!(q["explain"]["referenced_bytes"], blob_bytes);
    assert_eq!(q["explain"]["referenced_blobs"], blobs.len());
    assert_eq!(q["explain"]["linked_only_bytes"], 0);
    assert_eq!(q["explain"]["manifest_bytes"], manifest_len);
    let used = blob_bytes + manifest_len;
    let ratio = q["usage_ratio"].as_f64().unwrap();
    assert!((ratio - used as f64 / LIMIT as f64).abs() < 1e-9, "{q}");
    assert_eq!(q["warned"], true);

    // The same image in a second repository: the shared blobs and the same
    // manifest body count once; it is one more artifact.
    let copy = format!("{}/{project}/copy:small", server.addr);
    docker.tag(&small, &copy);
    assert_eq!(pushed_digest(&docker.push(&copy)), small_digest);
    let q = quota(&server, project);
    assert_eq!(q["usage"]["storage_bytes"], used, "{q}");
    assert_eq!(q["usage"]["artifacts"], 2);

    // A 2 MiB layer does not fit: refused, with the quota message in
    // docker's output, and nothing of the layer is linked.
    let big = format!("{}/{app}:big", server.addr);
    let big_config = docker.image(&big, 2 * 1024 * 1024);
    let out = docker.push_refused(&big);
    assert!(
        out.contains("quota of project quota exceeded") && out.contains("1.0 MiB limit"),
        "docker's output lacks the quota message:\n{out}"
    );
    let q = quota(&server, project);
    let config = v2(&server, "HEAD", &format!("{app}/blobs/{big_config}"));
    let config_bytes = if config.status == 200 {
        config.header("content-length").parse::<i64>().unwrap()
    } else {
        0
    };
    assert_eq!(q["explain"]["linked_only_bytes"], config_bytes, "{q}");
    assert_eq!(q["usage"]["storage_bytes"], used + config_bytes, "{q}");
    assert_eq!(q["usage"]["artifacts"], 2);
    let tags = v2(&server, "GET", &format!("{app}/tags/list"));
    assert_eq!(tags.json()["tags"], json!(["small"]));

    // One warning for the one crossing, however many pushes stayed above.
    let warnings = audit_events(&server, "quota.warning", project, 1);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["actor"], "system");
    assert!(
        warnings[0]["details"]
            .as_str()
            .unwrap()
            .contains("threshold is 1%"),
        "{warnings:?}"
    );
    let metrics =
        String::from_utf8(http("GET", &format!("{}/metrics", server.url), &[], None).body).unwrap();
    assert!(
        metrics.contains("berth_quota_usage_ratio{project=\"quota\"}"),
        "{metrics}"
    );

    // The artifact limit: storage unlimited, at most the 2 artifacts held.
    let set = api_ok(
        &server,
        "PUT",
        "/projects/quota/quota",
        Some(json!({"storage_bytes": -1, "artifacts": 2})),
    );
    assert_eq!(set["limits"], json!({"storage_bytes": -1, "artifacts": 2}));
    assert_eq!(set["warn_percent"], 1, "left out, kept");
    let out = docker.push_refused(&big);
    assert!(
        out.contains("quota of project quota exceeded: 2 artifacts used + 1 > 2 artifact limit"),
        "{out}"
    );
    // Another tag for a manifest the repository holds is no new artifact.
    let again = format!("{}/{app}:again", server.addr);
    docker.tag(&small, &again);
    assert_eq!(pushed_digest(&docker.push(&again)), small_digest);
    let q = quota(&server, project);
    assert_eq!(q["usage"]["artifacts"], 2);
    // The refused manifest's blobs are in; only the manifest was refused.
    assert!(
        q["explain"]["linked_only_bytes"].as_i64().unwrap() > 2 * 1024 * 1024,
        "{q}"
    );

    // Lifting the limit lets it through.
    api_ok(
        &server,
        "PUT",
        "/projects/quota/quota",
        Some(json!({"artifacts": -1})),
    );
    let big_digest = pushed_digest(&docker.push(&big));
    let q = quota(&server, project);
    assert_eq!(q["usage"]["artifacts"], 3);
    assert_eq!(q["explain"]["linked_only_bytes"], 0, "{q}");
    assert_eq!(q["explain"]["pending_deletion_bytes"], 0, "{q}");
    assert_eq!(q["usage_ratio"], Value::Null);

    // A deleted manifest waits in the restore window: its blobs (still
    // linked, nothing else references them) and its body are pending
    // deletion.
    let (big_blobs, big_len) = manifest_blobs(&server, &app, "big");
    let big_blob_bytes: i64 = big_blobs.iter().map(|(_, s)| s).sum();
    let r = v2(&server, "DELETE", &format!("{app}/manifests/{big_digest}"));
    assert_eq!(r.status, 202, "{r:?}");
    let q = quota(&server, project);
    assert_eq!(q["usage"]["artifacts"], 2);
    assert_eq!(q["explain"]["pending_deletion_artifacts"], 1, "{q}");
    assert_eq!(
        q["explain"]["pending_deletion_bytes"],
        big_blob_bytes + big_len,
        "{q}"
    );
    assert_eq!(q["explain"]["linked_only_bytes"], big_blob_bytes, "{q}");

    let updates = audit_events(&server, "quota.update", project, 3);
    assert_eq!(updates.len(), 3, "{updates:?}");
}

/// A mount from another project brings bytes into the project, so it is
/// checked like an upload; a blob the project already holds is free.
#[test]
fn mounts_into_a_project_count_against_its_quota() {
    let server = Berth::start();
    for p in ["src", "dst"] {
        api_ok(&server, "POST", "/projects", Some(json!({"name": p})));
    }
    let body: Vec<u8> = (0..64 * 1024).map(|_| rand::random::<u8>()).collect();
    let d = common::digest_of(&body);
    let push = http(
        "POST",
        &format!("{}/v2/src/app/blobs/uploads/?digest={d}", server.url),
        &[],
        Some(body.clone()),
    );
    assert_eq!(push.status, 201, "{push:?}");
    api_ok(
        &server,
        "PUT",
        "/projects/dst/quota",
        Some(json!({"storage_bytes": 1024})),
    );
    let mount = |repo: &str, from: &str| {
        http(
            "POST",
            &format!(
                "{}/v2/{repo}/blobs/uploads/?mount={d}&from={from}",
                server.url
            ),
            &[],
            None,
        )
    };
    let r = mount("dst/app", "src/app");
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(code(&r), "DENIED");
    assert!(
        message(&r).contains("quota of project dst exceeded: 0 B used + 64.0 KiB > 1.0 KiB limit"),
        "{}",
        message(&r)
    );
    assert_eq!(quota(&server, "dst")["usage"]["storage_bytes"], 0);
    // Within the source project (no limit there), mounting is free anyway;
    // with a limit, a blob the project holds costs nothing more.
    api_ok(
        &server,
        "PUT",
        "/projects/src/quota",
        Some(json!({"storage_bytes": 64 * 1024})),
    );
    let r = mount("src/other", "src/app");
    assert_eq!(r.status, 201, "{r:?}");
    let q = quota(&server, "src");
    assert_eq!(q["usage"]["storage_bytes"], 64 * 1024, "{q}");
    assert_eq!(q["explain"]["linked_only_blobs"], 1, "{q}");
}

/// A restore from the trash brings an artifact and its bytes back into the
/// project: over the quota it is refused like a push (403 `DENIED`, the
/// same message), through the API and `berth admin trash restore`, and the
/// entry stays restorable once the quota allows it.
#[test]
fn restores_from_the_trash_are_checked_against_the_quota() {
    let server = Berth::start();
    api_ok(&server, "POST", "/projects", Some(json!({"name": "rq"})));
    let push_blob = |data: &[u8]| {
        let d = common::digest_of(data);
        let r = http(
            "POST",
            &format!("{}/v2/rq/app/blobs/uploads/?digest={d}", server.url),
            &[],
            Some(data.to_vec()),
        );
        assert_eq!(r.status, 201, "{r:?}");
        d
    };
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#;
    let layer: Vec<u8> = (0..32 * 1024).map(|_| rand::random::<u8>()).collect();
    let (c, l) = (push_blob(config), push_blob(&layer));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": c, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": l, "size": layer.len()}],
    }))
    .unwrap();
    let r = http(
        "PUT",
        &format!("{}/v2/rq/app/manifests/v1", server.url),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        Some(manifest.clone()),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let digest = common::digest_of(&manifest);
    let r = v2(&server, "DELETE", &format!("rq/app/manifests/{digest}"));
    assert_eq!(r.status, 202, "{r:?}");
    let trash = api_ok(&server, "GET", "/projects/rq/trash", None);
    let id = trash["items"][0]["id"].as_i64().unwrap();
    let restore = || {
        api(
            &server,
            "POST",
            &format!("/projects/rq/trash/{id}/restore"),
            None,
            None,
        )
    };
    let still_in_trash = || {
        api_ok(&server, "GET", "/projects/rq/trash", None)["items"]
            .as_array()
            .unwrap()
            .len()
            == 1
    };

    // The artifact count: none held, none allowed.
    api_ok(
        &server,
        "PUT",
        "/projects/rq/quota",
        Some(json!({"artifacts": 0})),
    );
    let r = restore();
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(code(&r), "DENIED");
    assert_eq!(
        message(&r),
        "quota of project rq exceeded: 0 artifacts used + 1 > 0 artifact limit"
    );
    assert!(still_in_trash());
    assert_eq!(v2(&server, "GET", "rq/app/manifests/v1").status, 404);

    // Storage: with its layer unlinked meanwhile, the restore re-links the
    // 32 KiB layer and brings the manifest body back; 1 KiB more does not
    // hold that.
    let r = v2(&server, "DELETE", &format!("rq/app/blobs/{l}"));
    assert_eq!(r.status, 202, "{r:?}");
    let used = quota(&server, "rq")["usage"]["storage_bytes"]
        .as_i64()
        .unwrap();
    assert_eq!(used, config.len() as i64);
    api_ok(
        &server,
        "PUT",
        "/projects/rq/quota",
        Some(json!({"artifacts": -1, "storage_bytes": used + 1024})),
    );
    let r = restore();
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(code(&r), "DENIED");
    assert!(
        message(&r).starts_with(&format!(
            "quota of project rq exceeded: {} B used + 32.0 KiB > ",
            used
        )),
        "{}",
        message(&r)
    );
    assert!(still_in_trash());
    assert_eq!(quota(&server, "rq")["usage"]["storage_bytes"], used);
    // The admin CLI shows the same refusal.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["admin", "--url", &server.url, "--user", ADMIN_USER])
        .args(["trash", "restore", "rq", &id.to_string()])
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("quota of project rq exceeded"), "{stderr}");

    // Room for it: restored, tag and all.
    let total = used + layer.len() as i64 + manifest.len() as i64;
    api_ok(
        &server,
        "PUT",
        "/projects/rq/quota",
        Some(json!({"storage_bytes": total})),
    );
    let r = restore();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(v2(&server, "GET", "rq/app/manifests/v1").status, 200);
    assert_eq!(v2(&server, "GET", &format!("rq/app/blobs/{l}")).status, 200);
    let q = quota(&server, "rq");
    assert_eq!(q["usage"]["storage_bytes"], total, "{q}");
    assert_eq!(q["usage"]["artifacts"], 1, "{q}");
}

/// `berth admin immutable-rules …` and `berth admin quota …`.
#[test]
fn admin_cli_manages_rules_and_quotas() {
    let server = Berth::start();
    api_ok(&server, "POST", "/projects", Some(json!({"name": "cli"})));
    let admin = |args: &[&str]| -> (bool, String) {
        let out = run_status(
            Command::new(env!("CARGO_BIN_EXE_berth"))
                .args(["admin", "--url", &server.url, "--user", ADMIN_USER])
                .args(args)
                .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD),
        );
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = admin(&["immutable-rules", "create", "cli", "--tags", "v*"]);
    assert!(ok, "{out}");
    assert!(out.contains("repositories **, tags v*"), "{out}");
    let (ok, out) = admin(&[
        "immutable-rules",
        "create",
        "cli",
        "--tags",
        "latest",
        "--exclude-tags",
        "--repositories",
        "app",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = admin(&["immutable-rules", "list", "cli"]);
    assert!(ok, "{out}");
    assert!(out.contains("not latest") && out.contains("v*"), "{out}");
    let (ok, out) = admin(&["immutable-rules", "update", "cli", "1", "--disable"]);
    assert!(ok && out.contains("(disabled)"), "{out}");
    let (ok, out) = admin(&["immutable-rules", "delete", "cli", "1"]);
    assert!(ok, "{out}");
    let (ok, out) = admin(&["--json", "immutable-rules", "list", "cli"]);
    assert!(ok, "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let (ok, out) = admin(&[
        "quota",
        "set",
        "cli",
        "--storage",
        "12MiB",
        "--artifacts",
        "10",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("12.0 MiB (12582912 bytes)"), "{out}");
    let (ok, out) = admin(&["--json", "quota", "show", "cli"]);
    assert!(ok, "{out}");
    let q: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        q["limits"],
        json!({"storage_bytes": 12582912, "artifacts": 10})
    );
    let (ok, out) = admin(&["quota", "set", "cli", "--storage", "unlimited"]);
    assert!(ok && out.contains("storage limit:   unlimited"), "{out}");
    let (ok, out) = admin(&["quota", "set", "cli", "--warn-percent", "0"]);
    assert!(!ok && out.contains("warn_percent"), "{out}");
    let (ok, out) = admin(&["quota", "show", "nope"]);
    assert!(!ok && out.contains("404"), "{out}");
}

/// Two pushes race for the last bytes of a quota, on PostgreSQL: both pass
/// the check before their bytes are stored, but the check in the
/// transaction (quota row locked) lets exactly one through.
#[test]
fn concurrent_pushes_cannot_both_take_the_last_bytes_on_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(common::fresh_postgres_db("berth_policies_"));
    let temp = tempfile::tempdir().unwrap();
    let server = Berth::start_env(
        temp.path(),
        "127.0.0.1:0",
        &[],
        &[("BERTH_METADATA_URL".to_string(), db)],
    );
    api_ok(&server, "POST", "/projects", Some(json!({"name": "race"})));
    const SIZE: usize = 256 * 1024;
    api_ok(
        &server,
        "PUT",
        "/projects/race/quota",
        Some(json!({"storage_bytes": SIZE + SIZE / 2})),
    );
    for round in 0..3 {
        let bodies: Vec<Vec<u8>> = (0..4)
            .map(|_| (0..SIZE).map(|_| rand::random::<u8>()).collect())
            .collect();
        let url = server.url.clone();
        let statuses: Vec<(u16, String)> = rt.block_on(async {
            let client = common::client();
            let pushes = bodies.iter().enumerate().map(|(i, body)| {
                let client = client.clone();
                let url = format!(
                    "{url}/v2/race/r{round}-{i}/blobs/uploads/?digest={}",
                    common::digest_of(body)
                );
                let body = body.clone();
                async move {
                    let r = client.post(&url).body(body).send().await.unwrap();
                    let status = r.status().as_u16();
                    (status, r.text().await.unwrap_or_default())
                }
            });
            futures::future::join_all(pushes).await
        });
        let accepted = statuses.iter().filter(|(s, _)| *s == 201).count();
        let refused: Vec<&String> = statuses
            .iter()
            .filter(|(s, _)| *s == 403)
            .map(|(_, b)| b)
            .collect();
        let expected_accepted = usize::from(round == 0);
        assert_eq!(accepted, expected_accepted, "round {round}: {statuses:?}");
        assert_eq!(refused.len(), 4 - expected_accepted, "{statuses:?}");
        assert!(
            refused
                .iter()
                .all(|b| b.contains("quota of project race exceeded")),
            "{refused:?}"
        );
        let q = quota(&server, "race");
        assert_eq!(q["usage"]["storage_bytes"], SIZE, "round {round}: {q}");
    }
}
