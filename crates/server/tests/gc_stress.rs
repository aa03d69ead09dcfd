//! Online garbage collection never loses a pushed image (issue 5, scope 2;
//! DESIGN.md data rule 5): a real `berth` with GC in a tight loop (through
//! the API, and the scheduled job every second) and a one-second grace,
//! while eight clients do at least 10,000 operations: pushing small images
//! (random layers, some shared between images, clients and repositories),
//! re-tagging, deleting tags and manifests, pulling, mounting across
//! repositories. Each pull of a tag a client believes exists must come back
//! byte-identical during the run; at the end, after two more GC runs, every
//! believed tag pulls back byte-identical, every tag that exists is one a
//! client believes in, and the store holds exactly the blobs those tags
//! reference.
//!
//! Also the restore window and GC's bookkeeping, deterministically.

mod common;
#[path = "gc_load/mod.rs"]
mod gc_load;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Berth;
use gc_load::{Client, GcTotals, Load, Stats, Target, gc_loop, gc_once, store_blobs, verify};

const CLIENTS: usize = 8;
const OPERATIONS: u64 = 10_000;

/// Operations of a run: `BERTH_GC_STRESS_OPS`, at least (and by default)
/// [`OPERATIONS`] unless set lower for a quick look.
fn operations() -> u64 {
    std::env::var("BERTH_GC_STRESS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(OPERATIONS)
}

fn gc_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut envs: Vec<(String, String)> = [
        ("BERTH_GC_INTERVAL_SECS", "1"),
        ("BERTH_GC_GRACE_SECS", "1"),
        ("BERTH_GC_DELETE_UNTAGGED", "true"),
        ("BERTH_GC_RESTORE_WINDOW_SECS", "2"),
        ("BERTH_GC_ORPHAN_BATCH", "100000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    envs
}

/// The rows of the `blobs` table.
async fn blob_rows(metadata_url: &str) -> BTreeSet<String> {
    use sqlx::Row as _;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(metadata_url).await.unwrap();
    let rows = sqlx::query("SELECT digest FROM blobs")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter().map(|r| r.get::<String, _>(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_in_a_tight_loop_never_loses_a_pushed_image() {
    // SQLite + filesystem. PostgreSQL's advisory locks are covered by
    // core/tests/gc.rs: the S3 emulator here takes 1-2 s per blob upload,
    // too slow for a load of this size.
    let backends = "SQLite + filesystem";
    let data = tempfile::tempdir().unwrap();
    let envs = gc_env(&[]);
    let server = Berth::start_env(data.path(), "127.0.0.1:0", &[], &envs);
    common::create_project(&server.url, "gcs").await;
    let target = Target::new(&server.url);
    let stats = Arc::new(Stats::default());
    let totals = Arc::new(GcTotals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let paused = Arc::new(AtomicBool::new(false));
    let gc = tokio::spawn(gc_loop(
        target.clone(),
        totals.clone(),
        stop.clone(),
        paused,
    ));
    let progress = tokio::spawn(gc_load::progress(
        stats.clone(),
        totals.clone(),
        stop.clone(),
    ));
    let operations = operations();
    let load = Load::new("gcs", 4, CLIENTS, operations);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let c = Client::new(i, target.clone(), stats.clone(), load.clone(), false);
            tokio::spawn(c.run())
        })
        .collect();
    let mut models = Vec::new();
    for c in clients {
        models.push(c.await.unwrap().model);
    }
    let load_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    gc.await.unwrap();
    progress.await.unwrap();

    // Past the grace and the restore window, two more runs: what is left
    // is what the live tags reference.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let http = common::client();
    for _ in 0..2 {
        totals.add(&gc_once(&http, &server.url).await.expect("GC answers"));
    }
    let (referenced, missing, tags) = verify(&server.url, &load, &models, &stats).await;
    let store = store_blobs(data.path());
    let metadata_url = format!("sqlite://{}?mode=ro", data.path().join("meta.db").display());
    let rows = blob_rows(&metadata_url).await;
    let referenced: BTreeSet<String> = referenced.into_iter().collect();
    let leaked: Vec<&String> = store.difference(&referenced).collect();
    let lost: Vec<&String> = referenced.difference(&store).collect();

    println!(
        "gc_stress ({backends}, {CLIENTS} clients, {:.1} s of load):",
        load_time.as_secs_f64()
    );
    println!("  {}", stats.summary());
    println!("  {}", totals.summary());
    println!(
        "  end: {tags} tags, {} blobs referenced, {} store objects, {} blob rows, \
         leaked {}, missing blobs {}",
        referenced.len(),
        store.len(),
        rows.len(),
        leaked.len(),
        missing + Stats::get(&stats.missing) + lost.len() as u64
    );
    let problems = stats.problems.lock().unwrap().clone();
    assert!(
        Stats::get(&stats.ops) >= operations,
        "only {} operations",
        Stats::get(&stats.ops)
    );
    assert_eq!(
        Stats::get(&stats.missing),
        0,
        "lost during the run: {problems:#?}"
    );
    assert_eq!(missing, 0, "lost at the end");
    assert_eq!(Stats::get(&stats.unexpected), 0, "{problems:#?}");
    assert!(
        lost.is_empty(),
        "referenced blobs missing from the store: {lost:?}"
    );
    assert!(
        leaked.is_empty(),
        "store objects nothing references: {leaked:?}"
    );
    assert_eq!(rows, store, "blob rows and store objects differ");
    assert!(
        totals.cycles.load(Ordering::Relaxed) >= 10,
        "GC ran only {} times",
        totals.cycles.load(Ordering::Relaxed)
    );
    assert!(
        totals.blobs.load(Ordering::Relaxed) > 0,
        "GC reclaimed nothing"
    );
}

// ---------------------------------------------------------------------------
// The restore window and GC's bookkeeping, step by step.

fn push(url: &str, repo: &str, tag: &str, blobs: &[&[u8]]) -> gc_load::Image {
    let blobs: Vec<(String, bytes::Bytes)> = blobs
        .iter()
        .map(|b| (gc_load::digest_of(b), bytes::Bytes::copy_from_slice(b)))
        .collect();
    for (d, b) in &blobs {
        let r = common::http(
            "POST",
            &format!("{url}/v2/{repo}/blobs/uploads/?digest={d}"),
            &[],
            Some(b.to_vec()),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let image = gc_load::image_of(blobs);
    put_manifest(url, repo, tag, &image, 201);
    image
}

fn put_manifest(url: &str, repo: &str, tag: &str, image: &gc_load::Image, status: u16) {
    let r = common::http(
        "PUT",
        &format!("{url}/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", gc_load::OCI_MANIFEST)],
        Some(image.manifest.to_vec()),
    );
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
}

fn delete(url: &str, repo: &str, reference: &str) {
    let r = common::http(
        "DELETE",
        &format!("{url}/v2/{repo}/manifests/{reference}"),
        &[],
        None,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
}

fn manifest_status(url: &str, repo: &str, reference: &str) -> u16 {
    common::http_get(
        &format!("{url}/v2/{repo}/manifests/{reference}"),
        gc_load::OCI_MANIFEST,
    )
    .status
}

fn trash(url: &str, project: &str) -> Vec<serde_json::Value> {
    let r = common::http(
        "GET",
        &format!("{url}/api/v1/projects/{project}/trash"),
        &[],
        None,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["items"].as_array().unwrap().clone()
}

fn restore(url: &str, project: &str, id: i64) -> common::HttpResponse {
    common::http(
        "POST",
        &format!("{url}/api/v1/projects/{project}/trash/{id}/restore"),
        &[],
        None,
    )
}

fn gc(url: &str, dry_run: bool) -> serde_json::Value {
    let r = common::http(
        "POST",
        &format!("{url}/api/v1/system/gc"),
        &[("Content-Type", "application/json")],
        Some(format!("{{\"dry_run\":{dry_run}}}").into_bytes()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn blob_path(data: &std::path::Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

#[test]
fn deleted_images_are_restorable_until_the_window_ends_then_collected() {
    let data = tempfile::tempdir().unwrap();
    let envs = gc_env(&[
        ("BERTH_GC_INTERVAL_SECS", "86400"),
        ("BERTH_GC_RESTORE_WINDOW_SECS", "4"),
        ("BERTH_GC_ORPHAN_BATCH", "1000"),
    ]);
    let server = Berth::start_env(data.path(), "127.0.0.1:0", &[], &envs);
    let url = server.url.clone();
    let repo = "gct/app";
    let a = push(
        &url,
        repo,
        "v1",
        &[b"{\"config\":\"a\"}", b"layer-a-only", b"layer-shared"],
    );
    put_manifest(&url, repo, "v2", &a, 201);
    let b = push(&url, repo, "b", &[b"{\"config\":\"b\"}", b"layer-shared"]);

    // A tag deleted by name goes to the trash and comes back.
    delete(&url, repo, "v1");
    assert_eq!(manifest_status(&url, repo, "v1"), 404);
    let items = trash(&url, "gct");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "tag");
    assert_eq!(items[0]["tags"], serde_json::json!(["v1"]));
    assert_eq!(items[0]["deleted_by"], common::ADMIN_USER);
    let r = restore(&url, "gct", items[0]["id"].as_i64().unwrap());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(manifest_status(&url, repo, "v1"), 200);
    assert!(trash(&url, "gct").is_empty());

    // A manifest deleted by digest takes its tags with it; reads never see
    // the trash, and GC keeps what the trash references.
    delete(&url, repo, &a.digest);
    for reference in ["v1", "v2", a.digest.as_str()] {
        assert_eq!(manifest_status(&url, repo, reference), 404, "{reference}");
    }
    let items = trash(&url, "gct");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "manifest");
    assert_eq!(items[0]["tags"], serde_json::json!(["v1", "v2"]));
    let a_entry = items[0]["id"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let report = gc(&url, false);
    assert_eq!(report["blobs_deleted"], 0, "{report}");
    assert!(blob_path(data.path(), &a.blobs[1].0).exists());

    // Restoring needs its tag names free: a conflict names the tag.
    let c = push(&url, repo, "v2", &[b"{\"config\":\"c\"}", b"layer-c"]);
    let r = restore(&url, "gct", a_entry);
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("v2"));
    assert_eq!(
        trash(&url, "gct").len(),
        1,
        "a refused restore keeps the entry"
    );
    delete(&url, repo, "v2");
    let r = restore(&url, "gct", a_entry);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for tag in ["v1", "v2"] {
        let pulled = common::http_get(
            &format!("{url}/v2/{repo}/manifests/{tag}"),
            gc_load::OCI_MANIFEST,
        );
        assert_eq!(pulled.status, 200);
        assert_eq!(gc_load::digest_of(&pulled.body), a.digest);
    }
    // Unknown ids and other projects' ids are not found.
    assert_eq!(restore(&url, "gct", a_entry).status, 404);
    assert_eq!(restore(&url, "gct", 999_999).status, 404);

    // Past the restore window GC purges the entry, then what only it kept.
    delete(&url, repo, &a.digest);
    std::thread::sleep(Duration::from_millis(4300));
    let dry = gc(&url, true);
    assert!(dry["dry_run"].as_bool().unwrap());
    assert!(dry["trash_purged"].as_u64().unwrap() >= 1, "{dry}");
    assert!(
        blob_path(data.path(), &a.blobs[1].0).exists(),
        "a dry run deletes nothing"
    );
    let report = gc(&url, false);
    assert!(report["trash_purged"].as_u64().unwrap() >= 1, "{report}");
    // a's config and its own layer; c's config and layer (untagged, then
    // collected with delete_untagged); the shared layer stays for b.
    for gone in [&a.blobs[0].0, &a.blobs[1].0, &c.blobs[0].0, &c.blobs[1].0] {
        assert!(!blob_path(data.path(), gone).exists(), "{gone} was kept");
    }
    assert!(report["blobs_deleted"].as_u64().unwrap() >= 4, "{report}");
    assert!(report["bytes_reclaimed"].as_u64().unwrap() > 0, "{report}");
    for (d, _) in &b.blobs {
        assert!(blob_path(data.path(), d).exists(), "{d} of b was collected");
    }
    assert_eq!(manifest_status(&url, repo, "b"), 200);
    assert!(trash(&url, "gct").is_empty());
    assert_eq!(restore(&url, "gct", a_entry).status, 404);

    // A store object without a row, older than the grace, is an orphan the
    // sweep removes; a young one stays.
    let orphan = gc_load::digest_of(b"orphan bytes");
    let young = gc_load::digest_of(b"young orphan");
    for (d, bytes) in [
        (&orphan, &b"orphan bytes"[..]),
        (&young, &b"young orphan"[..]),
    ] {
        let path = blob_path(data.path(), d);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    common::run(
        std::process::Command::new("touch")
            .arg("-d")
            .arg("1 hour ago")
            .arg(blob_path(data.path(), &orphan)),
    );
    let report = gc(&url, false);
    assert_eq!(report["orphans_deleted"], 1, "{report}");
    assert!(!blob_path(data.path(), &orphan).exists());
    assert!(blob_path(data.path(), &young).exists());

    // A blob HEAD asks the store too: a row whose bytes are gone is unknown.
    let shared = &b.blobs[1].0;
    let bytes = std::fs::read(blob_path(data.path(), shared)).unwrap();
    std::fs::remove_file(blob_path(data.path(), shared)).unwrap();
    let head = common::http(
        "HEAD",
        &format!("{url}/v2/{repo}/blobs/{shared}"),
        &[],
        None,
    );
    assert_eq!(head.status, 404);
    std::fs::write(blob_path(data.path(), shared), bytes).unwrap();
    let head = common::http(
        "HEAD",
        &format!("{url}/v2/{repo}/blobs/{shared}"),
        &[],
        None,
    );
    assert_eq!(head.status, 200);

    // The history lists the runs, newest first; `berth gc` runs from the
    // command line beside the server and records its run too.
    let out = common::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("gc")
            .arg("--dry-run")
            .arg("--json")
            .arg("--data-dir")
            .arg(data.path())
            .envs(envs.iter().map(|(k, v)| (k, v))),
    );
    let cli: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(cli["dry_run"], true, "{cli}");
    assert_eq!(cli["trigger"], "cli", "{cli}");
    let runs = common::http(
        "GET",
        &format!("{url}/api/v1/system/gc/runs?limit=2"),
        &[],
        None,
    );
    assert_eq!(runs.status, 200);
    let runs = runs.json();
    assert_eq!(runs["items"][0]["trigger"], "cli", "{runs}");
    assert_eq!(runs["items"].as_array().unwrap().len(), 2);
    assert!(runs["next"].is_string(), "{runs}");

    // Maintainers may read and restore a project's trash; developers
    // (who may push but not delete) may not; neither may run GC.
    for (user, role) in [("gc-dev", "developer"), ("gc-maint", "maintainer")] {
        let body = serde_json::json!({"name": user, "password": "gc-test-password"});
        let r = common::http(
            "POST",
            &format!("{url}/api/v1/users"),
            &[("Content-Type", "application/json")],
            Some(body.to_string().into_bytes()),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let body = serde_json::json!({"user": user, "role": role});
        let r = common::http(
            "POST",
            &format!("{url}/api/v1/projects/gct/members"),
            &[("Content-Type", "application/json")],
            Some(body.to_string().into_bytes()),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let as_user = |user: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:gc-test-password"))
        )
    };
    let dev = as_user("gc-dev");
    let maint = as_user("gc-maint");
    let r = common::http(
        "GET",
        &format!("{url}/api/v1/projects/gct/trash"),
        &[("Authorization", &dev)],
        None,
    );
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("artifact:delete"));
    delete(&url, repo, "b");
    let r = common::http(
        "GET",
        &format!("{url}/api/v1/projects/gct/trash"),
        &[("Authorization", &maint)],
        None,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["items"][0]["id"].as_i64().unwrap();
    let r = common::http(
        "POST",
        &format!("{url}/api/v1/projects/gct/trash/{id}/restore"),
        &[("Authorization", &dev)],
        None,
    );
    assert_eq!(r.status, 403);
    let r = common::http(
        "POST",
        &format!("{url}/api/v1/projects/gct/trash/{id}/restore"),
        &[("Authorization", &maint)],
        None,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(manifest_status(&url, repo, "b"), 200);
    let r = common::http(
        "POST",
        &format!("{url}/api/v1/system/gc"),
        &[("Authorization", &maint)],
        None,
    );
    assert_eq!(r.status, 403);

    // The same from the command line: `berth admin trash list|restore`.
    delete(&url, repo, "b");
    let admin = |args: &[&str]| {
        common::run(
            std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
                .args(["admin", "--url", &url, "--user", common::ADMIN_USER])
                .args(args)
                .env("BERTH_ADMIN_PASSWORD", common::ADMIN_PASSWORD),
        )
    };
    let listed: serde_json::Value =
        serde_json::from_str(&admin(&["--json", "trash", "list", "gct"])).unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tags"] == serde_json::json!(["b"]))
        .unwrap_or_else(|| panic!("{listed}"));
    let out = admin(&["trash", "restore", "gct", &entry["id"].to_string()]);
    assert!(out.contains("restored gct/app@"), "{out}");
    assert_eq!(manifest_status(&url, repo, "b"), 200);

    // Only system admins run GC; anonymous callers authenticate first.
    let anon = common::http_anonymous("POST", &format!("{url}/api/v1/system/gc"), &[], None);
    assert_eq!(anon.status, 401);
    let anon = common::http_anonymous(
        "GET",
        &format!("{url}/api/v1/projects/gct/trash"),
        &[],
        None,
    );
    assert_eq!(anon.status, 401);
}
