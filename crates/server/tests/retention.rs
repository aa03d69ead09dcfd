//! Tag retention and pull statistics through the real binary (issue 5,
//! scopes 3 and 7).
//!
//! The fixture is a project of four repositories, three with 30 tags each,
//! with shared digests (several tags on one manifest; the same manifests
//! in two repositories), distinct ones, untagged manifests, an image index
//! with its children and a signature. Push order and pulls are recorded in
//! a model as they happen; the test computes from that model, on its own,
//! what the policy must keep and delete, checks the dry run's list against
//! it exactly, runs the policy, and checks that exactly those tags and
//! manifests answer 404 on `/v2` while everything else pulls back
//! byte-identical.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{ACCEPT_ALL_MANIFESTS, Berth, HttpResponse, digest_of, http, http_anonymous};
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A management API call as the admin; its status and JSON body.
fn api(url: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    api_as(url, None, method, path, body)
}

fn api_as(
    url: &str,
    auth: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    // `Some("")`: anonymous.
    if let Some(a) = auth.filter(|a| !a.is_empty()) {
        headers.push(("Authorization", a));
    }
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    let full = format!("{url}/api/v1{path}");
    let r = if auth.is_some() {
        http_anonymous(method, &full, &headers, body)
    } else {
        http(method, &full, &headers, body)
    };
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, v)
}

fn api_ok(url: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = api(url, method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {v}"
    );
    v
}

fn put_blob(url: &str, repo: &str, data: &[u8]) -> String {
    let digest = digest_of(data);
    let r = http(
        "POST",
        &format!("{url}/v2/{repo}/blobs/uploads/?digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        Some(data.to_vec()),
    );
    assert_eq!(r.status, 201, "blob to {repo}: {}", text(&r));
    digest
}

fn put_manifest(url: &str, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
    let r = http(
        "PUT",
        &format!("{url}/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        Some(body.to_vec()),
    );
    assert_eq!(r.status, 201, "manifest {repo}:{reference}: {}", text(&r));
    let digest = r.header("Docker-Content-Digest");
    assert_eq!(digest, digest_of(body));
    digest
}

fn get_manifest(url: &str, repo: &str, reference: &str) -> HttpResponse {
    http(
        "GET",
        &format!("{url}/v2/{repo}/manifests/{reference}"),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
        None,
    )
}

/// A manifest `HEAD`: not a pull, so it leaves the pull statistics (and
/// what the `…Pulled…` rules decide) as they are.
fn head_manifest(url: &str, repo: &str, reference: &str) -> HttpResponse {
    http(
        "HEAD",
        &format!("{url}/v2/{repo}/manifests/{reference}"),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
        None,
    )
}

fn text(r: &HttpResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// An image whose one layer is made from `key`: the same key gives the
/// same manifest (and digest) in any repository.
fn image_body(url: &str, repo: &str, key: &str) -> Vec<u8> {
    let config = put_blob(url, repo, CONFIG);
    let layer_bytes = format!("layer of {key}").into_bytes();
    let layer = put_blob(url, repo, &layer_bytes);
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config, "size": CONFIG.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer, "size": layer_bytes.len()}],
    }))
    .unwrap()
}

/// One artifact of the model.
#[derive(Debug, Clone)]
struct Art {
    body: Vec<u8>,
    /// Logical time of the manifest's first push.
    created: u64,
    /// Logical time of the latest pull.
    pulled: Option<u64>,
    pulls: u64,
    /// Not a retention candidate (an index child or a referrer).
    attached: bool,
}

/// What the test knows it pushed and pulled, with logical times.
#[derive(Default)]
struct Model {
    clock: u64,
    /// repo → digest → artifact
    arts: BTreeMap<String, BTreeMap<String, Art>>,
    /// repo → tag → (digest, logical time it was set)
    tags: BTreeMap<String, BTreeMap<String, (String, u64)>>,
}

impl Model {
    fn tick(&mut self) -> u64 {
        // The server's clock is in milliseconds: keep pushes apart.
        sleep(Duration::from_millis(3));
        self.clock += 1;
        self.clock
    }

    fn record(&mut self, repo: &str, digest: &str, body: &[u8], tag: Option<&str>, attached: bool) {
        let t = self.tick();
        self.arts
            .entry(repo.into())
            .or_default()
            .entry(digest.into())
            .or_insert_with(|| Art {
                body: body.to_vec(),
                created: t,
                pulled: None,
                pulls: 0,
                attached,
            });
        if let Some(tag) = tag {
            self.tags
                .entry(repo.into())
                .or_default()
                .insert(tag.into(), (digest.into(), t));
        }
    }

    fn push_image(&mut self, url: &str, repo: &str, key: &str, tag: &str) -> String {
        let body = image_body(url, repo, key);
        let d = put_manifest(url, repo, tag, OCI_MANIFEST, &body);
        self.record(repo, &d, &body, Some(tag), false);
        d
    }

    /// Tags an artifact already in `repo` (the same bytes pushed again).
    fn retag(&mut self, url: &str, repo: &str, digest: &str, tag: &str) {
        let body = self.arts[repo][digest].body.clone();
        put_manifest(url, repo, tag, OCI_MANIFEST, &body);
        self.record(repo, digest, &body, Some(tag), false);
    }

    fn push_untagged(&mut self, url: &str, repo: &str, key: &str, attached: bool) -> String {
        let body = image_body(url, repo, key);
        let d = put_manifest(url, repo, &digest_of(&body), OCI_MANIFEST, &body);
        self.record(repo, &d, &body, None, attached);
        d
    }

    fn pull(&mut self, url: &str, repo: &str, tag: &str) {
        let r = get_manifest(url, repo, tag);
        assert_eq!(r.status, 200, "pull {repo}:{tag}: {}", text(&r));
        let t = self.tick();
        let digest = self.tags[repo][tag].0.clone();
        let art = self.arts.get_mut(repo).unwrap().get_mut(&digest).unwrap();
        art.pulled = Some(t);
        art.pulls += 1;
    }

    fn tags_of(&self, repo: &str, digest: &str) -> Vec<String> {
        self.tags
            .get(repo)
            .map(|tags| {
                tags.iter()
                    .filter(|(_, (d, _))| d == digest)
                    .map(|(t, _)| t.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The latest push of the manifest or of one of its current tags.
    fn pushed(&self, repo: &str, digest: &str) -> u64 {
        let created = self.arts[repo][digest].created;
        self.tags[repo]
            .values()
            .filter(|(d, _)| d == digest)
            .map(|(_, t)| *t)
            .fold(created, u64::max)
    }
}

/// Pushes one repository's 30 tags on 21 images: `v0`…`v19` on images
/// 0…19, then more tags on some of them (two more on image 12, `latest`
/// moved from 18 to 19, …) and image 20 tagged only `dev-20`. Images
/// below `shared` use keys common to every repository that shares them.
fn push_repo(m: &mut Model, url: &str, repo: &str, shared: usize, stable: usize) -> Vec<String> {
    let mut images = Vec::new();
    for i in 0..20 {
        let key = if i < shared {
            format!("common-{i}")
        } else {
            format!("{repo}-{i}")
        };
        images.push(m.push_image(url, repo, &key, &format!("v{i}")));
    }
    for (tag, i) in [
        ("stable", stable),
        ("7.0", 7),
        ("latest", 18),
        ("dev-3", 3),
        ("dev-4", 4),
        ("rc-12", 12),
        ("12.0", 12),
        ("old-1", 1),
        ("beta", 15),
        ("latest", 19),
    ] {
        m.retag(url, repo, &images[i].clone(), tag);
    }
    images.push(m.push_image(url, repo, &format!("{repo}-20"), "dev-20"));
    assert_eq!(m.tags[repo].len(), 30, "{repo} has 30 tags");
    images
}

/// The policy under test; the model below restates it by hand.
fn policy() -> Value {
    json!({
        "rules": [
            // 0: the 5 most recently pushed, in app and web.
            {"template": "latestPushedK", "params": {"latestPushedK": 5},
             "repositories": {"decoration": "repoMatches", "pattern": "{app,web}"},
             "tags": {"decoration": "matches", "pattern": "**"}},
            // 1: whatever is tagged `stable`, in app, web and tools/…
            {"template": "always", "params": {},
             "repositories": {"decoration": "repoMatches", "pattern": "{app,web,tools/**}"},
             "tags": {"decoration": "matches", "pattern": "stable"}},
            // 2: the 2 most recently pulled with a v* tag, except in web and archive.
            {"template": "latestPulledN", "params": {"latestPulledN": 2},
             "repositories": {"decoration": "repoExcludes", "pattern": "{web,archive}"},
             "tags": {"decoration": "matches", "pattern": "v*"}},
            // 3: in tools/…, anything pushed within a day with a tag that is
            //    not dev-*, untagged ones too.
            {"template": "nDaysSinceLastPush", "params": {"nDaysSinceLastPush": 1},
             "repositories": {"decoration": "repoMatches", "pattern": "tools/**"},
             "tags": {"decoration": "excludes", "pattern": "dev-*", "untagged": true}},
            // 4: disabled: retains nothing, brings nothing into scope.
            {"disabled": true, "template": "always", "params": {},
             "repositories": {"decoration": "repoMatches", "pattern": "**"},
             "tags": {"decoration": "matches", "pattern": "**", "untagged": true}},
        ],
    })
}

/// Per (repository, digest): tags, action, outcome, retaining rules.
type Lines = BTreeMap<(String, String), (Vec<String>, String, String, Vec<usize>)>;

/// The policy's rules as the API answers them: defaults filled in.
fn normalized_rules() -> Value {
    let mut rules = policy()["rules"].clone();
    for r in rules.as_array_mut().unwrap() {
        let r = r.as_object_mut().unwrap();
        r.entry("disabled").or_insert(json!(false));
        r["tags"]
            .as_object_mut()
            .unwrap()
            .entry("untagged")
            .or_insert(json!(false));
    }
    rules
}

/// The policy evaluated on the model: for each repository in scope, each
/// artifact's (tags, action, outcome, retaining rules). `immutable` names
/// artifacts an immutable tag keeps.
fn expected(m: &Model, dry_run: bool, immutable: &BTreeSet<(String, String)>) -> Lines {
    let mut out = BTreeMap::new();
    let repos: [(&str, &[usize]); 3] = [
        ("ret/app", &[0, 1, 2]),
        ("ret/web", &[0, 1]),
        ("ret/tools/cli", &[1, 2, 3]),
    ];
    for (repo, rules) in repos {
        let arts = &m.arts[repo];
        let candidates: Vec<&String> = arts
            .iter()
            .filter(|(_, a)| !a.attached)
            .map(|(d, _)| d)
            .collect();
        let mut kept: BTreeMap<&String, Vec<usize>> = BTreeMap::new();
        for &rule in rules {
            let picked: Vec<&String> = candidates
                .iter()
                .copied()
                .filter(|d| {
                    let tags = m.tags_of(repo, d);
                    match rule {
                        0 => !tags.is_empty(),
                        1 => tags.iter().any(|t| t == "stable"),
                        2 => tags.iter().any(|t| t.starts_with('v')),
                        3 => tags.is_empty() || tags.iter().any(|t| !t.starts_with("dev-")),
                        _ => unreachable!(),
                    }
                })
                .collect();
            let keep: Vec<&String> = match rule {
                0 => {
                    let mut by_push = picked.clone();
                    by_push.sort_by_key(|d| std::cmp::Reverse(m.pushed(repo, d)));
                    by_push.into_iter().take(5).collect()
                }
                2 => {
                    let mut pulled: Vec<&String> = picked
                        .into_iter()
                        .filter(|d| arts[*d].pulled.is_some())
                        .collect();
                    pulled.sort_by_key(|d| std::cmp::Reverse(arts[*d].pulled));
                    pulled.into_iter().take(2).collect()
                }
                _ => picked,
            };
            for d in keep {
                kept.entry(d).or_default().push(rule);
            }
        }
        for (d, a) in arts {
            let tags = m.tags_of(repo, d);
            let line = if a.attached {
                ("retain".into(), "retained".into(), vec![])
            } else if let Some(rules) = kept.get(d) {
                ("retain".into(), "retained".into(), rules.clone())
            } else if immutable.contains(&(repo.to_string(), d.clone())) {
                ("delete".into(), "kept_immutable".into(), vec![])
            } else if dry_run {
                ("delete".into(), "would_delete".into(), vec![])
            } else {
                ("delete".into(), "deleted".into(), vec![])
            };
            out.insert(
                (repo.to_string(), d.clone()),
                (tags, line.0, line.1, line.2),
            );
        }
    }
    out
}

fn items_of(items: &Value) -> Lines {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let tags: Vec<String> = i["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            let rules: Vec<usize> = i["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_u64().unwrap() as usize)
                .collect();
            (
                (
                    i["repository"].as_str().unwrap().to_string(),
                    i["digest"].as_str().unwrap().to_string(),
                ),
                (
                    tags,
                    i["action"].as_str().unwrap().to_string(),
                    i["outcome"].as_str().unwrap().to_string(),
                    rules,
                ),
            )
        })
        .collect()
}

fn artifacts(url: &str, repo: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/projects/ret/artifacts?repository={repo}&limit=7");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let v = api_ok(url, "GET", &path, None);
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

/// Waits until the artifact listing shows `count` pulls of `digest`.
fn wait_for_pulls(url: &str, repo: &str, digest: &str, count: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = artifacts(url, repo)
            .into_iter()
            .find(|a| a["digest"] == digest)
            .unwrap_or_else(|| panic!("{repo}@{digest} is not listed"));
        if found["pull_count"].as_u64() == Some(count) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{repo}@{digest}: pull count still {} (want {count})",
            found["pull_count"]
        );
        sleep(Duration::from_millis(200));
    }
}

fn run(url: &str, dry_run: bool) -> Value {
    api_ok(
        url,
        "POST",
        "/projects/ret/retention/run",
        Some(json!({ "dry_run": dry_run })),
    )
}

/// Every tag and manifest of the model, checked against `/v2`: what the
/// run deleted answers 404, the rest pulls back byte-identical.
/// Every artifact of the model is there (its tags naming it) unless
/// `deleted`. With `bytes`, by `GET`, comparing the bytes; otherwise by
/// `HEAD`, comparing the digest: `GET`s are pulls, which would change what
/// the `latestPulledN` rule retains in the runs that follow.
fn check_registry(url: &str, m: &Model, deleted: &BTreeSet<(String, String)>, bytes: bool) {
    let fetch = if bytes { get_manifest } else { head_manifest };
    let same = |r: &HttpResponse, digest: &str, body: &[u8], what: &str| {
        assert_eq!(r.status, 200, "{what} should stay: {}", text(r));
        if bytes {
            assert_eq!(r.body, body, "{what} bytes");
        } else {
            assert_eq!(r.header("Docker-Content-Digest"), digest, "{what} digest");
        }
    };
    for (repo, arts) in &m.arts {
        for (digest, art) in arts {
            let gone = deleted.contains(&(repo.clone(), digest.clone()));
            let r = fetch(url, repo, digest);
            if gone {
                assert_eq!(r.status, 404, "{repo}@{digest} should be gone");
            } else {
                same(&r, digest, &art.body, &format!("{repo}@{digest}"));
            }
            for tag in m.tags_of(repo, digest) {
                let r = fetch(url, repo, &tag);
                if gone {
                    assert_eq!(r.status, 404, "{repo}:{tag} should be gone");
                } else {
                    same(&r, digest, &art.body, &format!("{repo}:{tag}"));
                }
            }
        }
    }
}

#[test]
fn dry_run_and_run_delete_exactly_what_no_rule_retains() {
    let berth = Berth::start();
    retention_scenario(&berth.url);
}

/// The same on PostgreSQL and S3, as a cluster deploys it.
#[test]
fn dry_run_and_run_on_postgres_and_s3() {
    let envs = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(common::shared_backends("retention"));
    let dir = tempfile::tempdir().unwrap();
    let berth = Berth::start_env(dir.path(), "127.0.0.1:0", &[], &envs);
    retention_scenario(&berth.url);
}

fn retention_scenario(url: &str) {
    api_ok(url, "POST", "/projects", Some(json!({"name": "ret"})));
    let mut m = Model::default();

    // app and web share images 0-4 (same digests); tools/cli shares none.
    let app = push_repo(&mut m, url, "ret/app", 5, 7);
    let web = push_repo(&mut m, url, "ret/web", 5, 2);
    push_repo(&mut m, url, "ret/tools/cli", 0, 7);
    assert_eq!(app[..5], web[..5], "shared manifests have one digest");
    // app: two untagged images, an index with two untagged children, and a
    // signature of the `stable` image.
    m.push_untagged(url, "ret/app", "app-untagged-a", false);
    m.push_untagged(url, "ret/app", "app-untagged-b", false);
    let child_a = m.push_untagged(url, "ret/app", "app-child-a", true);
    let child_b = m.push_untagged(url, "ret/app", "app-child-b", true);
    let size_of = |m: &Model, d: &str| m.arts["ret/app"][d].body.len();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": child_a, "size": size_of(&m, &child_a),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": child_b, "size": size_of(&m, &child_b),
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let index_digest = put_manifest(url, "ret/app", "multi", OCI_INDEX, &index);
    m.record("ret/app", &index_digest, &index, Some("multi"), false);
    let empty = put_blob(url, "ret/app", b"{}");
    let sig_layer = put_blob(url, "ret/app", b"signature");
    let stable = m.tags["ret/app"]["stable"].0.clone();
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig_layer, "size": 9}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": stable,
                    "size": size_of(&m, &stable)},
    }))
    .unwrap();
    let sig_digest = put_manifest(url, "ret/app", &digest_of(&sig), OCI_MANIFEST, &sig);
    m.record("ret/app", &sig_digest, &sig, None, true);
    // tools/cli: one untagged image (rule 3 takes untagged ones).
    m.push_untagged(url, "ret/tools/cli", "cli-untagged", false);
    // archive: no enabled rule applies to it.
    for i in 0..3 {
        m.push_image(
            url,
            "ret/archive",
            &format!("archive-{i}"),
            &format!("a{i}"),
        );
    }

    // Pulls: in app v2, v2 again by digest, v9, then v5 (v9 and v5 are
    // the two most recent); in tools/cli v0 then v1. A HEAD is not a pull.
    m.pull(url, "ret/app", "v2");
    let v2 = m.tags["ret/app"]["v2"].0.clone();
    let r = get_manifest(url, "ret/app", &v2);
    assert_eq!(r.status, 200);
    {
        let t = m.tick();
        let art = m.arts.get_mut("ret/app").unwrap().get_mut(&v2).unwrap();
        art.pulled = Some(t);
        art.pulls += 1;
    }
    m.pull(url, "ret/app", "v9");
    m.pull(url, "ret/app", "v5");
    m.pull(url, "ret/tools/cli", "v0");
    m.pull(url, "ret/tools/cli", "v1");
    let head = http(
        "HEAD",
        &format!("{url}/v2/ret/app/manifests/v9"),
        &[("Accept", ACCEPT_ALL_MANIFESTS)],
        None,
    );
    assert_eq!(head.status, 200);

    // Pull statistics arrive within a few seconds; HEADs do not count.
    let listed = wait_for_pulls(url, "ret/app", &v2, 2);
    assert!(listed["pulled_at"].is_string(), "{listed}");
    let v5 = m.tags["ret/app"]["v5"].0.clone();
    wait_for_pulls(url, "ret/app", &v5, 1);
    let v9 = m.tags["ret/app"]["v9"].0.clone();
    assert_eq!(wait_for_pulls(url, "ret/app", &v9, 1)["pull_count"], 1);
    // The pulls in tools/cli may come in a later write than app's.
    for tag in ["v0", "v1"] {
        let d = m.tags["ret/tools/cli"][tag].0.clone();
        wait_for_pulls(url, "ret/tools/cli", &d, 1);
    }

    // The listing agrees with the model: tags, push order, pulls, sizes.
    for repo in ["ret/app", "ret/web", "ret/tools/cli", "ret/archive"] {
        let listed = artifacts(url, repo);
        assert_eq!(listed.len(), m.arts[repo].len(), "{repo}");
        let mut by_server: Vec<(String, String)> = listed
            .iter()
            .map(|a| {
                (
                    a["pushed_at"].as_str().unwrap().to_string(),
                    a["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        by_server.sort();
        let mut by_model: Vec<(u64, String)> = m.arts[repo]
            .keys()
            .map(|d| (m.pushed(repo, d), d.clone()))
            .collect();
        by_model.sort();
        assert_eq!(
            by_server.iter().map(|(_, d)| d).collect::<Vec<_>>(),
            by_model.iter().map(|(_, d)| d).collect::<Vec<_>>(),
            "{repo}: push order"
        );
        for a in &listed {
            let d = a["digest"].as_str().unwrap();
            let art = &m.arts[repo][d];
            let tags: Vec<String> = a["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            assert_eq!(tags, m.tags_of(repo, d), "{repo}@{d} tags");
            assert_eq!(
                a["pull_count"].as_u64(),
                Some(art.pulls),
                "{repo}@{d} pulls"
            );
            assert_eq!(a["pulled_at"].is_null(), art.pulled.is_none());
            assert!(a["size"].as_u64().unwrap() >= art.body.len() as u64);
        }
    }

    // An immutable tag keeps its artifact: v0 in app.
    api_ok(
        url,
        "POST",
        "/projects/ret/immutable-rules",
        Some(json!({"repositories": {"pattern": "app"}, "tags": {"pattern": "v0"}})),
    );
    let immutable: BTreeSet<(String, String)> = [("ret/app".to_string(), app[0].clone())].into();

    // No policy yet.
    let (status, _) = api(url, "POST", "/projects/ret/retention/run", Some(json!({})));
    assert_eq!(status, 404);
    let (status, v) = api(url, "PUT", "/projects/ret/retention", Some(policy()));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["rules"].as_array().unwrap().len(), 5);
    assert!(v["schedule"].is_null() && v["next_run_at"].is_null());
    let (status, _) = api(url, "PUT", "/projects/ret/retention", Some(policy()));
    assert_eq!(status, 200, "replacing answers 200");
    assert_eq!(
        api_ok(url, "GET", "/projects/ret/retention", None)["rules"],
        normalized_rules()
    );

    // Dry run: the exact list, nothing deleted.
    let dry = run(url, true);
    let want = expected(&m, true, &immutable);
    assert_eq!(items_of(&dry["items"]), want);
    let would: BTreeSet<(String, String)> = want
        .iter()
        .filter(|(_, v)| v.2 == "would_delete")
        .map(|(k, _)| k.clone())
        .collect();
    // The fixture exercises every path: deletions in each repository in
    // scope, a shared digest deleted in one repository and kept in the
    // other, an artifact kept by one of several tags, untagged ones.
    for repo in ["ret/app", "ret/web", "ret/tools/cli"] {
        assert!(
            would.iter().any(|(r, _)| r == repo),
            "{repo} loses something"
        );
    }
    assert!(!would.iter().any(|(r, _)| r == "ret/archive"));
    assert!(would.contains(&("ret/app".into(), app[2].clone())));
    assert!(
        !would.contains(&("ret/web".into(), web[2].clone())),
        "web keeps its stable image 2"
    );
    assert_eq!(want[&("ret/app".to_string(), app[12].clone())].1, "delete");
    assert_eq!(
        want[&("ret/app".to_string(), app[7].clone())].3,
        vec![1],
        "stable and 7.0"
    );
    assert_eq!(want[&("ret/app".to_string(), app[9].clone())].3, vec![2]);
    assert_eq!(
        want[&(
            "ret/tools/cli".to_string(),
            app_free(&m, "ret/tools/cli", "dev-20")
        )]
            .1,
        "delete"
    );
    let e = &dry["execution"];
    assert_eq!(e["dry_run"], true);
    assert_eq!(e["status"], "succeeded");
    assert_eq!(e["trigger"], "manual");
    assert_eq!(e["actor"], "admin");
    assert_eq!(e["deleted"].as_u64().unwrap() as usize, would.len());
    assert_eq!(e["artifacts"].as_u64().unwrap() as usize, want.len());
    assert_eq!(e["errors"], 0);
    for (k, v) in &want {
        if v.2 == "kept_immutable" {
            let item = dry["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["digest"] == k.1.as_str() && i["repository"] == k.0.as_str())
                .unwrap();
            assert!(
                item["reason"].as_str().unwrap().contains("immutable"),
                "{item}"
            );
        }
    }
    check_registry(url, &m, &BTreeSet::new(), false);

    // The run deletes exactly that.
    let done = run(url, false);
    let want_run = expected(&m, false, &immutable);
    assert_eq!(items_of(&done["items"]), want_run);
    assert_eq!(
        done["execution"]["deleted"].as_u64().unwrap() as usize,
        would.len()
    );
    check_registry(url, &m, &would, false);
    let tags: usize = m.tags.values().map(BTreeMap::len).sum();
    let manifests: usize = m.arts.values().map(BTreeMap::len).sum();
    eprintln!(
        "retention fixture: {} repositories, {tags} tags, {manifests} manifests; run: {} \
         artifact(s) in scope, {} deleted, {} retained ({} by an immutable tag)",
        m.arts.len(),
        done["execution"]["artifacts"],
        done["execution"]["deleted"],
        done["execution"]["retained"],
        want_run
            .values()
            .filter(|v| v.2 == "kept_immutable")
            .count(),
    );
    // The retained artifact with several tags kept all of them.
    for tag in ["v12", "rc-12", "12.0"] {
        assert_eq!(head_manifest(url, "ret/app", tag).status, 404, "{tag}");
    }
    for tag in ["v7", "7.0", "stable"] {
        assert_eq!(head_manifest(url, "ret/app", tag).status, 200, "{tag}");
    }

    // Nothing more to delete: a second dry run keeps everything.
    let again = run(url, true);
    assert_eq!(again["execution"]["deleted"], 0, "{}", again["execution"]);

    // The history: newest first, each with its items.
    let history = api_ok(url, "GET", "/projects/ret/retention/executions", None);
    let ids: Vec<i64> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            again["execution"]["id"].as_i64().unwrap(),
            done["execution"]["id"].as_i64().unwrap(),
            dry["execution"]["id"].as_i64().unwrap()
        ]
    );
    let run_id = ids[1];
    let one = api_ok(
        url,
        "GET",
        &format!("/projects/ret/retention/executions/{run_id}"),
        None,
    );
    assert_eq!(one["dry_run"], false);
    assert_eq!(one["rules"], normalized_rules());
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/projects/ret/retention/executions/{run_id}/items?limit=10");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = api_ok(url, "GET", &path, None);
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(Value::Array(items), done["items"]);
    let (status, _) = api(
        url,
        "GET",
        "/projects/ret/retention/executions/999999",
        None,
    );
    assert_eq!(status, 404);

    // The audit log has the policy change, the runs, and each deletion.
    let events = |action: &str| -> Vec<Value> {
        api_ok(
            url,
            "GET",
            &format!("/audit?project=ret&action={action}&limit=1000"),
            None,
        )["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let deletions = events("artifact.delete")
            .iter()
            .filter(|e| {
                e["details"]
                    .as_str()
                    .unwrap_or("")
                    .contains("retention execution")
            })
            .count();
        let counts = [
            events("retention.policy.create").len(),
            events("retention.policy.update").len(),
            events("retention.dry_run").len(),
            events("retention.run").len(),
            deletions,
        ];
        if counts == [1, 1, 2, 1, would.len()] {
            break;
        }
        assert!(Instant::now() < deadline, "audit log counts: {counts:?}");
        sleep(Duration::from_millis(200));
    }
    // Each deletion names the run as its actor: `retention`, with the
    // project, the execution and who started it in the details; exactly
    // the artifacts the run deleted, and the run's own event is the
    // admin's.
    let by_retention = api_ok(
        url,
        "GET",
        "/audit?project=ret&actor=retention&limit=1000",
        None,
    )["items"]
        .as_array()
        .unwrap()
        .clone();
    let done_id = done["execution"]["id"].as_i64().unwrap();
    let mut deleted = BTreeSet::new();
    for e in &by_retention {
        assert_eq!(e["action"], "artifact.delete", "{e}");
        assert_eq!(e["actor"], "retention", "{e}");
        assert_eq!(e["actor_kind"], "system", "{e}");
        assert_eq!(e["project"], "ret", "{e}");
        assert_eq!(e["result"], "success", "{e}");
        let details = e["details"].as_str().unwrap();
        assert!(
            details.starts_with(&format!(
                "retention execution {done_id} of project ret (manual run by admin); "
            )),
            "{e}"
        );
        let resource = e["resource"].as_str().unwrap();
        let (repo, digest) = resource
            .strip_prefix("repository/")
            .and_then(|r| r.split_once('@'))
            .unwrap_or_else(|| panic!("{e}"));
        deleted.insert((repo.to_string(), digest.to_string()));
    }
    assert_eq!(by_retention.len(), would.len());
    assert_eq!(deleted, would);
    assert!(
        events("artifact.delete")
            .iter()
            .all(|e| e["actor"] == "retention"),
        "retention's deletions are by the run, not by the one who started it"
    );
    let runs = events("retention.run");
    assert_eq!(runs[0]["actor"], "admin", "{}", runs[0]);
    assert!(
        runs[0]["details"]
            .as_str()
            .unwrap()
            .starts_with(&format!("execution {done_id}: ")),
        "{}",
        runs[0]
    );
    // The trash says the same.
    let trash = api_ok(url, "GET", "/projects/ret/trash?limit=1000", None);
    let trashed = trash["items"].as_array().unwrap();
    assert_eq!(trashed.len(), would.len(), "{trash}");
    for t in trashed {
        assert_eq!(
            t["deleted_by"],
            format!("retention (execution {done_id}, manual run by admin)"),
            "{t}"
        );
    }

    // Deleting the policy keeps the history.
    let (status, _) = api(url, "DELETE", "/projects/ret/retention", None);
    assert_eq!(status, 204);
    assert_eq!(api(url, "GET", "/projects/ret/retention", None).0, 404);
    assert_eq!(api(url, "DELETE", "/projects/ret/retention", None).0, 404);
    let history = api_ok(url, "GET", "/projects/ret/retention/executions", None);
    assert_eq!(history["items"].as_array().unwrap().len(), 3);

    // What stayed is byte for byte what was pushed.
    check_registry(url, &m, &would, true);
}

/// The digest a tag points at in the model.
fn app_free(m: &Model, repo: &str, tag: &str) -> String {
    m.tags[repo][tag].0.clone()
}

#[test]
fn policies_are_validated_and_need_developer_rights() {
    let berth = Berth::start();
    let url = berth.url.as_str();
    api_ok(url, "POST", "/projects", Some(json!({"name": "perm"})));
    for (user, role) in [
        ("dev", Some("developer")),
        ("guest", Some("guest")),
        ("outsider", None),
    ] {
        api_ok(
            url,
            "POST",
            "/users",
            Some(json!({"name": user, "password": format!("{user}-password-1")})),
        );
        if let Some(role) = role {
            api_ok(
                url,
                "POST",
                "/projects/perm/members",
                Some(json!({"user": user, "role": role})),
            );
        }
    }
    let dev = basic("dev", "dev-password-1");
    let guest = basic("guest", "guest-password-1");
    let outsider = basic("outsider", "outsider-password-1");
    let mut m = Model::default();
    m.push_image(url, "perm/app", "perm-1", "one");
    m.push_image(url, "perm/app", "perm-2", "two");
    let simple = json!({"rules": [{"template": "latestPushedK", "params": {"latestPushedK": 1},
        "repositories": {"decoration": "repoMatches", "pattern": "**"},
        "tags": {"decoration": "matches", "pattern": "**"}}],
        "schedule": "0 0 0 * * *"});

    // Anonymous: authenticate; guest and outsider: no; developer: yes.
    let (s, _) = api_as(url, Some(""), "GET", "/projects/perm/retention", None);
    assert_eq!(s, 401);
    for who in [&guest, &outsider] {
        let (s, v) = api_as(
            url,
            Some(who),
            "PUT",
            "/projects/perm/retention",
            Some(simple.clone()),
        );
        assert_eq!(s, 403, "{v}");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("tag-retention:create"),
            "{v}"
        );
        let (s, _) = api_as(
            url,
            Some(who),
            "GET",
            "/projects/perm/retention/executions",
            None,
        );
        assert_eq!(s, 403);
    }
    let (s, v) = api_as(
        url,
        Some(&dev),
        "PUT",
        "/projects/perm/retention",
        Some(simple.clone()),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["schedule"], "0 0 0 * * *");
    let next = v["next_run_at"].as_str().unwrap();
    assert!(
        next.ends_with("T00:00:00.000Z"),
        "daily at midnight UTC: {next}"
    );
    let (s, v) = api_as(
        url,
        Some(&dev),
        "POST",
        "/projects/perm/retention/run",
        Some(json!({"dry_run": true})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["execution"]["actor"], "dev");
    assert_eq!(v["execution"]["deleted"], 1);
    let (s, _) = api_as(
        url,
        Some(&guest),
        "POST",
        "/projects/perm/retention/run",
        Some(json!({"dry_run": true})),
    );
    assert_eq!(s, 403);
    // A guest may list artifacts (artifact:list); an outsider may not.
    let (s, v) = api_as(
        url,
        Some(&guest),
        "GET",
        "/projects/perm/artifacts?repository=perm/app",
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (s, _) = api_as(
        url,
        Some(&outsider),
        "GET",
        "/projects/perm/artifacts?repository=perm/app",
        None,
    );
    assert_eq!(s, 403);

    // Bad input names the field.
    for (body, field) in [
        (
            json!({"rules": [{"template": "latestPushedK", "params": {},
            "repositories": {"decoration": "repoMatches", "pattern": "**"},
            "tags": {"decoration": "matches", "pattern": "**"}}]}),
            "rules[0].params.latestPushedK",
        ),
        (
            json!({"rules": [{"template": "always", "params": {},
            "repositories": {"decoration": "repoMatches", "pattern": "{a"},
            "tags": {"decoration": "matches", "pattern": "**"}}]}),
            "rules[0].repositories.pattern",
        ),
        (
            json!({"rules": [{"template": "sometimes", "params": {},
            "repositories": {"decoration": "repoMatches", "pattern": "**"},
            "tags": {"decoration": "matches", "pattern": "**"}}]}),
            "rules[0].template",
        ),
        (json!({"rules": [], "schedule": "every day"}), "schedule"),
        (json!({"rules": [], "bogus": 1}), "bogus"),
    ] {
        let (s, v) = api(url, "PUT", "/projects/perm/retention", Some(body));
        assert_eq!(s, 400, "{v}");
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{field}: {msg}");
    }
    let (s, v) = api(url, "GET", "/projects/perm/artifacts", None);
    assert_eq!(s, 400, "{v}");
    let (s, _) = api(
        url,
        "GET",
        "/projects/perm/artifacts?repository=other/app",
        None,
    );
    assert_eq!(s, 400);
    let (s, _) = api(
        url,
        "GET",
        "/projects/perm/artifacts?repository=perm/none",
        None,
    );
    assert_eq!(s, 404);
    let (s, _) = api(url, "GET", "/projects/nope/retention", None);
    assert_eq!(s, 404);

    // The admin CLI: the dry run's table, then the run.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["admin", "--url", url, "--user", "dev"])
            .args(args)
            .env("BERTH_ADMIN_PASSWORD", "dev-password-1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = cli(&["retention", "show", "perm"]);
    assert!(shown.contains("latestPushedK 1"), "{shown}");
    let dry = cli(&["retention", "run", "perm", "--dry-run"]);
    assert!(dry.contains("would_delete") && dry.contains("one"), "{dry}");
    assert!(dry.contains("1 to delete"), "{dry}");
    let ran = cli(&["retention", "run", "perm"]);
    assert!(ran.contains("1 deleted"), "{ran}");
    assert_eq!(get_manifest(url, "perm/app", "one").status, 404);
    assert_eq!(get_manifest(url, "perm/app", "two").status, 200);
    let listed = cli(&["artifacts", "perm", "perm/app"]);
    assert!(
        listed.contains("two") && !listed.contains("one"),
        "{listed}"
    );
    let history = cli(&["retention", "executions", "perm"]);
    assert_eq!(history.lines().count(), 1 + 3, "{history}");
    let set = cli(&[
        "retention",
        "set",
        "perm",
        "--template",
        "always",
        "--tags",
        "t*",
        "--untagged",
    ]);
    assert!(set.contains("1 rule(s), schedule none"), "{set}");
}

#[test]
fn pulls_counted_before_a_graceful_stop_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut berth = Berth::start_in(dir.path(), &[]);
    let url = berth.url.clone();
    api_ok(&url, "POST", "/projects", Some(json!({"name": "ret"})));
    let mut m = Model::default();
    let d = m.push_image(&url, "ret/app", "stop-1", "v1");
    for _ in 0..3 {
        m.pull(&url, "ret/app", "v1");
    }
    // SIGTERM at once: the last flush happens at shutdown.
    assert!(berth.stop().unwrap().success());
    let berth = Berth::start_in(dir.path(), &[]);
    let a = wait_for_pulls(&berth.url, "ret/app", &d, 3);
    assert!(a["pulled_at"].is_string());
}

#[test]
fn a_scheduled_policy_runs_by_itself() {
    let berth = Berth::start();
    let url = berth.url.as_str();
    api_ok(url, "POST", "/projects", Some(json!({"name": "ret"})));
    let mut m = Model::default();
    let old = m.push_image(url, "ret/app", "sched-1", "old");
    let new = m.push_image(url, "ret/app", "sched-2", "new");
    let policy = json!({"rules": [{"template": "latestPushedK", "params": {"latestPushedK": 1},
        "repositories": {"decoration": "repoMatches", "pattern": "**"},
        "tags": {"decoration": "matches", "pattern": "**"}}],
        "schedule": "* * * * * *"});
    api_ok(url, "PUT", "/projects/ret/retention", Some(policy));
    // The cluster looks for due schedules every 30 s.
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let history = api_ok(url, "GET", "/projects/ret/retention/executions", None);
        if let Some(run) = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["trigger"] == "schedule" && e["status"] != "running")
        {
            break run.clone();
        }
        assert!(Instant::now() < deadline, "no scheduled run: {history}");
        sleep(Duration::from_secs(1));
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["actor"], "system");
    assert_eq!(run["dry_run"], false);
    assert_eq!(run["deleted"], 1);
    assert_eq!(get_manifest(url, "ret/app", &old).status, 404);
    assert_eq!(get_manifest(url, "ret/app", &new).status, 200);
    let policy = api_ok(url, "GET", "/projects/ret/retention", None);
    assert!(policy["next_run_at"].is_string(), "{policy}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = api_ok(url, "GET", "/audit?project=ret&action=retention.run", None);
        if log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "system")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        sleep(Duration::from_millis(200));
    }
    // The deletion is the run's, named by its execution id.
    let log = api_ok(
        url,
        "GET",
        "/audit?project=ret&action=artifact.delete",
        None,
    );
    let deletions = log["items"].as_array().unwrap();
    assert_eq!(deletions.len(), 1, "{log}");
    let e = &deletions[0];
    assert_eq!(e["actor"], "retention", "{e}");
    assert_eq!(e["actor_kind"], "system", "{e}");
    assert_eq!(e["resource"], format!("repository/ret/app@{old}"), "{e}");
    assert_eq!(
        e["details"],
        format!(
            "retention execution {} of project ret (scheduled run); tags: old",
            run["id"]
        ),
        "{e}"
    );
}
