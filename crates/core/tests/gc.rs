//! Garbage collection's per-digest protocol (`core/src/gc.rs`), made
//! deterministic with a store that pauses an upload right after its bytes
//! became visible: on SQLite and on a real PostgreSQL (advisory locks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_core::{Error, GC_ACTOR, GcOptions, Options, Registry};
use berth_meta::{AuditFilter, MetaStore};
use berth_oci::{ByteRange, Digest, Hasher, RepoName};
use berth_storage::{BlobStore, ByteStream, FsStore, ListedBlob};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tempfile::TempDir;

/// A filesystem store whose next `upload_commit`, once armed, stops after
/// making the bytes visible until released.
struct Gated {
    inner: FsStore,
    armed: AtomicBool,
    reached: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl BlobStore for Gated {
    async fn stat(&self, d: &Digest) -> berth_storage::Result<Option<u64>> {
        self.inner.stat(d).await
    }
    async fn get(&self, d: &Digest, r: Option<ByteRange>) -> berth_storage::Result<ByteStream> {
        self.inner.get(d, r).await
    }
    async fn delete(&self, d: &Digest) -> berth_storage::Result<()> {
        self.inner.delete(d).await
    }
    async fn upload_start(&self, id: &str) -> berth_storage::Result<()> {
        self.inner.upload_start(id).await
    }
    async fn upload_size(&self, id: &str) -> berth_storage::Result<Option<u64>> {
        self.inner.upload_size(id).await
    }
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
        hasher: Hasher,
    ) -> berth_storage::Result<(u64, Hasher)> {
        self.inner.upload_append(id, offset, data, hasher).await
    }
    async fn upload_truncate(&self, id: &str, size: u64) -> berth_storage::Result<()> {
        self.inner.upload_truncate(id, size).await
    }
    async fn upload_read(&self, id: &str) -> berth_storage::Result<ByteStream> {
        self.inner.upload_read(id).await
    }
    async fn upload_prepare(&self, id: &str) -> berth_storage::Result<()> {
        self.inner.upload_prepare(id).await
    }
    async fn upload_commit(&self, id: &str, d: &Digest) -> berth_storage::Result<()> {
        self.inner.upload_commit(id, d).await?;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
        Ok(())
    }
    async fn upload_abort(&self, id: &str) -> berth_storage::Result<()> {
        self.inner.upload_abort(id).await
    }
    async fn ready(&self) -> berth_storage::Result<()> {
        self.inner.ready().await
    }
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> berth_storage::Result<Vec<ListedBlob>> {
        self.inner.list_blobs(after, limit).await
    }
}

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn stream(data: &'static [u8]) -> ByteStream {
    futures::stream::iter([Ok(Bytes::from_static(data))]).boxed()
}

/// GC with no grace and no restore window: whatever is unreferenced goes.
fn eager() -> Options {
    Options {
        gc: GcOptions {
            grace: Duration::ZERO,
            restore_window: Duration::ZERO,
            delete_untagged: true,
            orphan_batch: 1000,
        },
        ..Options::default()
    }
}

async fn fresh_postgres() -> String {
    let admin = std::env::var("BERTH_TEST_POSTGRES_URL").expect(
        "BERTH_TEST_POSTGRES_URL is not set: run scripts/start-services.sh and source \
         target/test-services.env",
    );
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
    let db = format!("berth_gc_{}", uuid_like());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

async fn setup(dir: &TempDir, postgres: bool) -> (Registry, Arc<Gated>) {
    let (reg, store, _) = setup_with_meta(dir, postgres).await;
    (reg, store)
}

/// [`setup`], and the registry's metadata store for the test's own rows.
async fn setup_with_meta(dir: &TempDir, postgres: bool) -> (Registry, Arc<Gated>, MetaStore) {
    let meta = if postgres {
        MetaStore::open(&fresh_postgres().await).await.unwrap()
    } else {
        MetaStore::open_sqlite(&dir.path().join("meta.db"))
            .await
            .unwrap()
    };
    let store = Arc::new(Gated {
        inner: FsStore::open(dir.path()).unwrap(),
        armed: AtomicBool::new(false),
        reached: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    (
        Registry::with_options(meta.clone(), store.clone(), eager()),
        store,
        meta,
    )
}

async fn read(reg: &Registry, r: &RepoName, d: &Digest) -> Result<Vec<u8>, Error> {
    let read = reg.get_blob(r, d, None).await?;
    let parts: Vec<Bytes> = read.body.try_collect().await.unwrap();
    Ok(parts.concat())
}

/// The race of the issue: GC is about to delete a blob (row and bytes)
/// that nothing links any more, just as an upload of the same digest has
/// made its bytes visible. The upload holds the digest's lock from before
/// that moment, so GC waits, then sees the new link and keeps the blob.
async fn upload_holds_off_gc(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(&dir, postgres).await;
    let (a, b) = (repo("p/a"), repo("p/b"));
    const DATA: &[u8] = b"bytes GC wants and a push needs";
    let d = Digest::sha256_of(DATA);
    reg.push_blob(&a, &d, stream(DATA)).await.unwrap();
    reg.delete_blob(&a, &d).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;

    store.armed.store(true, Ordering::SeqCst);
    let upload = {
        let (reg, b, d) = (reg.clone(), b.clone(), d.clone());
        tokio::spawn(async move { reg.push_blob(&b, &d, stream(DATA)).await })
    };
    store.reached.notified().await;
    let gc = {
        let reg = reg.clone();
        tokio::spawn(async move { reg.collect_garbage(false, "test").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !gc.is_finished(),
        "GC ran while an upload of the digest was committing"
    );
    store.release.notify_one();
    upload.await.unwrap().unwrap();
    let report = gc.await.unwrap().unwrap();
    assert_eq!(report.blobs_deleted, 0, "{report:?}");
    assert_eq!(read(&reg, &b, &d).await.unwrap(), DATA);

    // Unlinked again and nothing in flight: now it goes, row and bytes.
    reg.delete_blob(&b, &d).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = reg.collect_garbage(false, "test").await.unwrap();
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    assert_eq!(report.bytes_reclaimed, DATA.len() as u64);
    assert_eq!(store.stat(&d).await.unwrap(), None);
    reg.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_holds_off_gc_on_its_digest_sqlite() {
    upload_holds_off_gc(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_holds_off_gc_on_its_digest_postgres() {
    upload_holds_off_gc(true).await;
}

/// GC deleted the bytes and crashed before its commit: the row survives
/// without bytes, with no link. A HEAD never calls that present, and the
/// next upload of the digest writes the bytes again.
#[tokio::test]
async fn a_row_left_without_bytes_is_repaired_by_the_next_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(&dir, false).await;
    let r = repo("p/a");
    const DATA: &[u8] = b"bytes a crash took";
    let d = Digest::sha256_of(DATA);
    reg.push_blob(&r, &d, stream(DATA)).await.unwrap();
    // What the crash left: the row, no bytes (and no link, which GC
    // removed in an earlier commit).
    reg.delete_blob(&r, &d).await.unwrap();
    store.delete(&d).await.unwrap();
    assert!(matches!(
        reg.stat_blob(&r, &d).await,
        Err(Error::BlobUnknown(_))
    ));
    reg.push_blob(&r, &d, stream(DATA)).await.unwrap();
    assert_eq!(reg.stat_blob(&r, &d).await.unwrap(), DATA.len() as u64);
    assert_eq!(read(&reg, &r, &d).await.unwrap(), DATA);
    // Linked with bytes gone (should never happen): HEAD says unknown.
    store.delete(&d).await.unwrap();
    assert!(matches!(
        reg.stat_blob(&r, &d).await,
        Err(Error::BlobUnknown(_))
    ));
    reg.close().await;
}

/// A manifest checked after GC took its blob is refused with
/// MANIFEST_BLOB_UNKNOWN (the client uploads again); a blob a manifest
/// references is never collected.
#[tokio::test]
async fn gc_and_manifest_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(&dir, false).await;
    let r = repo("p/a");
    const CONFIG: &[u8] = b"{}";
    const LAYER: &[u8] = b"a layer";
    let (c, l) = (Digest::sha256_of(CONFIG), Digest::sha256_of(LAYER));
    reg.push_blob(&r, &c, stream(CONFIG)).await.unwrap();
    reg.push_blob(&r, &l, stream(LAYER)).await.unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.to_string(), "size": CONFIG.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.to_string(), "size": LAYER.len()}],
    });
    let body = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let tag = berth_oci::Reference::parse("v1").unwrap();
    let ct = Some("application/vnd.oci.image.manifest.v1+json");
    // Unreferenced for longer than the (zero) grace: GC takes the layer.
    tokio::time::sleep(Duration::from_millis(5)).await;
    reg.delete_blob(&r, &l).await.unwrap();
    let report = reg.collect_garbage(false, "test").await.unwrap();
    assert_eq!(report.blobs_deleted, 2, "{report:?}");
    assert!(matches!(
        reg.put_manifest(&r, &tag, ct, body.clone()).await,
        Err(Error::ManifestBlobUnknown { .. })
    ));
    reg.push_blob(&r, &c, stream(CONFIG)).await.unwrap();
    reg.push_blob(&r, &l, stream(LAYER)).await.unwrap();
    reg.put_manifest(&r, &tag, ct, body).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = reg.collect_garbage(false, "test").await.unwrap();
    assert_eq!(report.blobs_deleted, 0, "{report:?}");
    assert!(store.stat(&l).await.unwrap().is_some());
    reg.close().await;
}

/// Deleting moves to the trash; restoring brings manifests and tags back
/// (or refuses, naming the tag); an index keeps its children and the
/// trash keeps what it references until the window ends.
async fn trash_round_trip(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = setup(&dir, postgres).await;
    let r = repo("p/app");
    const CONFIG: &[u8] = b"{\"trash\":1}";
    const LAYER: &[u8] = b"a trashed layer";
    let (c, l) = (Digest::sha256_of(CONFIG), Digest::sha256_of(LAYER));
    reg.push_blob(&r, &c, stream(CONFIG)).await.unwrap();
    reg.push_blob(&r, &l, stream(LAYER)).await.unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.to_string(), "size": CONFIG.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.to_string(), "size": LAYER.len()}],
    });
    let body = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let ct = Some("application/vnd.oci.image.manifest.v1+json");
    let reference = |s: &str| berth_oci::Reference::parse(s).unwrap();
    let pushed = reg
        .put_manifest(&r, &reference("v1"), ct, body.clone())
        .await
        .unwrap();
    reg.put_manifest(&r, &reference("v2"), ct, body.clone())
        .await
        .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": pushed.digest.to_string(), "size": body.len()}],
    });
    let index = Bytes::from(serde_json::to_vec(&index).unwrap());
    let ict = Some("application/vnd.oci.image.index.v1+json");
    reg.put_manifest(&r, &reference("multi"), ict, index)
        .await
        .unwrap();

    // The tags go with the manifest; GC (eager) keeps everything: the
    // trash references the blobs, the index the manifest.
    reg.delete_manifest_as(&r, &reference(&pushed.digest.to_string()), "alice")
        .await
        .unwrap();
    let any = ["application/vnd.oci.image.manifest.v1+json".to_string()];
    assert!(
        reg.get_manifest(&r, &reference("v1"), &any, true)
            .await
            .is_err()
    );
    let items = reg.list_trash("p", None, 100).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].tags, ["v1", "v2"]);
    assert_eq!(items[0].deleted_by, "alice");
    assert_eq!(items[0].size, Some(body.len() as u64));
    assert!(reg.list_trash("q", None, 100).await.unwrap().is_empty());
    assert!(matches!(
        reg.restore_trash("q", items[0].id).await,
        Err(Error::NotFound(_))
    ));

    // A tag name taken meanwhile is a conflict that names it.
    reg.put_manifest(&r, &reference("v2"), ict, Bytes::from(serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []
    })).unwrap()))
    .await
    .unwrap();
    match reg.restore_trash("p", items[0].id).await {
        Err(Error::Conflict(m)) => assert!(m.contains("v2"), "{m}"),
        other => panic!("{other:?}"),
    }
    reg.delete_manifest_as(&r, &reference("v2"), "alice")
        .await
        .unwrap();
    let restored = reg.restore_trash("p", items[0].id).await.unwrap();
    assert_eq!(restored.digest, pushed.digest.to_string());
    for tag in ["v1", "v2"] {
        let m = reg
            .get_manifest(&r, &reference(tag), &any, true)
            .await
            .unwrap();
        assert_eq!(m.digest, pushed.digest);
    }
    assert_eq!(read(&reg, &r, &l).await.unwrap(), LAYER);

    // Deleted again and the window (zero) over: GC purges the entries,
    // then the blobs only they kept (the index still names the manifest,
    // but a delete by digest is the user's word).
    reg.delete_manifest_as(&r, &reference(&pushed.digest.to_string()), "alice")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = reg.collect_garbage(false, "test").await.unwrap();
    assert!(report.trash_purged >= 2, "{report:?}");
    assert_eq!(report.blobs_deleted, 2, "{report:?}");
    assert_eq!(store.stat(&l).await.unwrap(), None);
    assert!(reg.list_trash("p", None, 100).await.unwrap().is_empty());
    let runs = reg.gc_runs(None, 10).await.unwrap();
    assert_eq!(runs[0].id, report.id);
    assert_eq!(runs[0].blobs_deleted, 2);
    reg.close().await;
}

#[tokio::test]
async fn trash_round_trip_sqlite() {
    trash_round_trip(false).await;
}

#[tokio::test]
async fn trash_round_trip_postgres() {
    trash_round_trip(true).await;
}

/// Pushes an image (its config and layer, then the manifest, tagged or by
/// digest) into `r`; returns the manifest's digest and body.
async fn push_image(
    reg: &Registry,
    r: &RepoName,
    config: &'static [u8],
    layer: &'static [u8],
    tag: Option<&str>,
) -> (Digest, Bytes) {
    let (c, l) = (Digest::sha256_of(config), Digest::sha256_of(layer));
    reg.push_blob(r, &c, stream(config)).await.unwrap();
    reg.push_blob(r, &l, stream(layer)).await.unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.to_string(), "size": layer.len()}],
    });
    let body = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let reference = match tag {
        Some(t) => berth_oci::Reference::parse(t).unwrap(),
        None => berth_oci::Reference::Digest(Digest::sha256_of(&body)),
    };
    let pushed = reg
        .put_manifest(
            r,
            &reference,
            Some("application/vnd.oci.image.manifest.v1+json"),
            body.clone(),
        )
        .await
        .unwrap();
    (pushed.digest, body)
}

/// A restore brings an artifact back into its project, with its bytes: it
/// is checked against the project's quota as a push of it would be (each
/// blob it re-links, then the manifest), refused with the push's message,
/// and leaves the entry in the trash and nothing re-linked.
async fn restore_respects_quota(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (reg, _store, meta) = setup_with_meta(&dir, postgres).await;
    let mut itx = meta.begin_identity().await.unwrap();
    let project = itx.insert_project("q", false).await.unwrap().unwrap();
    itx.commit().await.unwrap();
    let set_quota = |storage: i64, artifacts: i64| {
        let meta = meta.clone();
        async move {
            let mut tx = meta.begin().await.unwrap();
            tx.set_quota(project, storage, artifacts, 100)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    let r = repo("q/app");
    const LAYER: &[u8] = &[7u8; 1000];
    let (a, body_a) = push_image(&reg, &r, b"{\"quota\":\"a\"}", LAYER, Some("a")).await;
    push_image(&reg, &r, b"{\"quota\":\"b\"}", b"another layer", Some("b")).await;
    let any = ["application/vnd.oci.image.manifest.v1+json".to_string()];
    let digest_ref = berth_oci::Reference::Digest(a.clone());
    reg.delete_manifest_as(&r, &digest_ref, "alice")
        .await
        .unwrap();
    let id = reg.list_trash("q", None, 10).await.unwrap()[0].id;
    let in_trash =
        |reg: Registry| async move { reg.list_trash("q", None, 10).await.unwrap().len() };

    // The artifact limit: the project holds 1, the restore would make 2.
    set_quota(-1, 1).await;
    match reg.restore_trash("q", id).await {
        Err(Error::Denied(m)) => assert_eq!(
            m,
            "quota of project q exceeded: 1 artifacts used + 1 > 1 artifact limit"
        ),
        other => panic!("restored over the artifact limit: {other:?}"),
    }
    assert_eq!(in_trash(reg.clone()).await, 1);
    assert!(
        reg.get_manifest(&r, &digest_ref, &any, false)
            .await
            .is_err()
    );
    set_quota(-1, 2).await;
    reg.restore_trash("q", id).await.unwrap();
    assert!(reg.get_manifest(&r, &digest_ref, &any, false).await.is_ok());
    assert_eq!(in_trash(reg.clone()).await, 0);

    // The storage limit: deleted again and its layer unlinked, a restore
    // re-links the layer (1000 bytes) and brings the manifest body back.
    set_quota(-1, -1).await;
    reg.delete_manifest_as(&r, &digest_ref, "alice")
        .await
        .unwrap();
    let layer = Digest::sha256_of(LAYER);
    reg.delete_blob(&r, &layer).await.unwrap();
    let id = reg.list_trash("q", None, 10).await.unwrap()[0].id;
    let used = meta.project_usage("q").await.unwrap().storage_bytes();
    let (l, m) = (LAYER.len() as i64, body_a.len() as i64);
    // Not even the layer fits.
    set_quota(used + l - 1, -1).await;
    match reg.restore_trash("q", id).await {
        Err(Error::Denied(msg)) => {
            assert!(
                msg.starts_with("quota of project q exceeded: ")
                    && msg.ends_with(&format!("({used} + {l} > {} bytes)", used + l - 1)),
                "{msg}"
            )
        }
        other => panic!("restored over the storage limit: {other:?}"),
    }
    // The layer fits, the manifest body does not.
    set_quota(used + l + m - 1, -1).await;
    match reg.restore_trash("q", id).await {
        Err(Error::Denied(msg)) => assert!(
            msg.ends_with(&format!(
                "({} + {m} > {} bytes)",
                used + l,
                used + l + m - 1
            )),
            "{msg}"
        ),
        other => panic!("restored over the storage limit: {other:?}"),
    }
    // Nothing of the refused restores stayed: not the link, not the entry.
    assert_eq!(in_trash(reg.clone()).await, 1);
    assert!(matches!(
        read(&reg, &r, &layer).await,
        Err(Error::BlobUnknown(_))
    ));
    assert_eq!(meta.project_usage("q").await.unwrap().storage_bytes(), used);
    // Exactly at the limit fits.
    set_quota(used + l + m, -1).await;
    reg.restore_trash("q", id).await.unwrap();
    assert_eq!(read(&reg, &r, &layer).await.unwrap(), LAYER);
    assert_eq!(
        meta.project_usage("q").await.unwrap().storage_bytes(),
        used + l + m
    );
    reg.close().await;
}

#[tokio::test]
async fn a_restore_is_checked_against_the_quota_sqlite() {
    restore_respects_quota(false).await;
}

#[tokio::test]
async fn a_restore_is_checked_against_the_quota_postgres() {
    restore_respects_quota(true).await;
}

/// The untagged manifests GC deletes (for good) are in the audit log: an
/// `artifact.delete` each, by the actor `gc`, naming the run and its
/// trigger. Without an auditor (as `berth gc` runs) straight into the
/// table.
async fn gc_deletions_are_audited(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (reg, _store, meta) = setup_with_meta(&dir, postgres).await;
    let r = repo("p/app");
    push_image(&reg, &r, b"{\"gc\":1}", b"a kept layer", Some("v1")).await;
    let (gone, _) = push_image(&reg, &r, b"{\"gc\":2}", b"a gone layer", None).await;
    let other = repo("solo");
    let (solo, _) = push_image(&reg, &other, b"{\"gc\":3}", b"a solo layer", None).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // A dry run deletes nothing and records nothing.
    let dry = reg.collect_garbage(true, "test").await.unwrap();
    assert_eq!(dry.manifests_deleted, 2, "{dry:?}");
    let gc_events = || async {
        meta.audit(&AuditFilter {
            actor: Some(GC_ACTOR),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
    };
    assert!(gc_events().await.is_empty());
    let report = reg.collect_garbage(false, "test").await.unwrap();
    assert_eq!(report.manifests_deleted, 2, "{report:?}");
    let mut rows: Vec<_> = gc_events().await.into_iter().map(|r| r.entry).collect();
    rows.sort_by(|a, b| a.resource.cmp(&b.resource));
    let expected = |repo: &str, digest: &Digest, project: &str| {
        (
            "gc".to_string(),
            "system".to_string(),
            "artifact.delete".to_string(),
            format!("repository/{repo}@{digest}"),
            Some(project.to_string()),
            "success".to_string(),
            Some(format!(
                "garbage collection run {} (test): untagged, referenced by nothing, older than \
                 the grace; deleted for good",
                report.id
            )),
        )
    };
    let got: Vec<_> = rows
        .into_iter()
        .map(|e| {
            (
                e.actor,
                e.actor_kind,
                e.action,
                e.resource,
                e.project,
                e.result,
                e.details,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            expected("p/app", &gone, "p"),
            expected("solo", &solo, "library")
        ]
    );
    reg.close().await;
}

#[tokio::test]
async fn gc_deletions_are_audited_sqlite() {
    gc_deletions_are_audited(false).await;
}

#[tokio::test]
async fn gc_deletions_are_audited_postgres() {
    gc_deletions_are_audited(true).await;
}
