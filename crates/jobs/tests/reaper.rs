//! The upload reaper on SQLite and on the real PostgreSQL, with the
//! filesystem store: idle sessions go with their bytes, fresh and touched
//! ones stay, a reaped session refuses late chunks, a session with a
//! request in flight is left alone, and reapers on several nodes reap each
//! session once.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use berth_core::{Error, ReapReport, Registry};
use berth_jobs::{CancellationToken, Runner, RunnerConfig, UploadReaper};
use berth_meta::{JobStatus, now_millis};
use berth_oci::{Digest, RepoName};
use berth_storage::{BlobStore, ByteStream, FsStore};
use bytes::Bytes;
use common::Db;
use futures::StreamExt;
use tempfile::TempDir;

on_both_backends!(
    idle_sessions_go_with_their_bytes,
    touched_session_is_left_alone,
    reaped_session_refuses_late_requests,
    session_in_use_is_skipped,
    reapers_on_several_nodes_reap_each_session_once,
    reaper_worker_runs_on_schedule,
);

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn stream(data: &[u8]) -> ByteStream {
    futures::stream::iter(vec![Ok(Bytes::copy_from_slice(data))]).boxed()
}

/// A body that takes about `parts` × 100 ms to arrive.
fn slow_stream(data: &[u8], parts: usize) -> ByteStream {
    let size = data.len().div_ceil(parts).max(1);
    let pieces: Vec<Bytes> = data.chunks(size).map(Bytes::copy_from_slice).collect();
    futures::stream::iter(pieces)
        .then(|p| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(p)
        })
        .boxed()
}

/// A node: its own metadata pools over the shared database, and the shared
/// blob directory.
struct Node {
    registry: Registry,
    store: Arc<FsStore>,
}

async fn node(db: &Db, blobs: &TempDir) -> Node {
    let store = Arc::new(FsStore::open(blobs.path()).unwrap());
    Node {
        registry: Registry::new(db.open().await, store.clone()),
        store,
    }
}

async fn start(reg: &Registry, r: &RepoName, data: &[u8]) -> String {
    let id = reg.start_upload(r).await.unwrap().id;
    reg.upload_chunk(r, &id, None, None, stream(data))
        .await
        .unwrap();
    id
}

async fn has_bytes(store: &FsStore, id: &str) -> bool {
    store.upload_size(id).await.unwrap().is_some()
}

fn is_unknown<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::UploadUnknown(_)))
}

// ---------------------------------------------------------------------------

async fn idle_sessions_go_with_their_bytes(db: &Db) {
    let blobs = tempfile::tempdir().unwrap();
    let n = node(db, &blobs).await;
    let r = repo("reaper/idle");
    let old = start(&n.registry, &r, b"old bytes").await;
    let empty = n.registry.start_upload(&r).await.unwrap().id;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let fresh = start(&n.registry, &r, b"fresh bytes").await;

    let report = n
        .registry
        .reap_uploads(Duration::from_millis(500), 100)
        .await
        .unwrap();
    assert_eq!(
        report,
        ReapReport {
            expired: 2,
            reaped: 2,
            skipped: 0,
            store_errors: 0
        }
    );
    for id in [&old, &empty] {
        assert!(is_unknown(n.registry.upload_status(&r, id).await));
        assert!(!has_bytes(&n.store, id).await);
        assert!(!blobs.path().join("uploads").join(id).exists());
    }
    // The fresh session is whole and finishes.
    assert_eq!(
        n.registry.upload_status(&r, &fresh).await.unwrap().offset,
        11
    );
    let digest = Digest::sha256_of(b"fresh bytes");
    n.registry
        .finish_upload(&r, &fresh, &digest, None, stream(b""))
        .await
        .unwrap();
    // Nothing left to reap.
    assert_eq!(
        n.registry
            .reap_uploads(Duration::ZERO, 100)
            .await
            .unwrap()
            .expired,
        0
    );
}

/// The reaper looked and saw an idle session; a client touched it before the
/// reaper's delete: the delete does nothing and the session stays.
async fn touched_session_is_left_alone(db: &Db) {
    let blobs = tempfile::tempdir().unwrap();
    let n = node(db, &blobs).await;
    let meta = db.open().await;
    let r = repo("reaper/touched");
    let id = start(&n.registry, &r, b"first").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let idle = meta.idle_uploads(now_millis() - 200, 10).await.unwrap();
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0].id, id);
    // The client sends the next chunk.
    n.registry
        .upload_chunk(&r, &id, None, None, stream(b"second"))
        .await
        .unwrap();
    assert!(
        !meta
            .delete_idle_upload(&idle[0].id, idle[0].updated_at)
            .await
            .unwrap()
    );
    assert!(has_bytes(&n.store, &id).await);
    // It is no longer idle.
    assert_eq!(
        n.registry
            .reap_uploads(Duration::from_millis(200), 10)
            .await
            .unwrap(),
        ReapReport::default()
    );
    let digest = Digest::sha256_of(b"firstsecond");
    n.registry
        .finish_upload(&r, &id, &digest, None, stream(b""))
        .await
        .unwrap();
}

/// A client that comes back after its session was reaped gets
/// `BLOB_UPLOAD_UNKNOWN` for every request, and no bytes are written.
async fn reaped_session_refuses_late_requests(db: &Db) {
    let blobs = tempfile::tempdir().unwrap();
    let n = node(db, &blobs).await;
    let r = repo("reaper/late");
    let id = start(&n.registry, &r, b"abc").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = n
        .registry
        .reap_uploads(Duration::from_millis(10), 10)
        .await
        .unwrap();
    assert_eq!(report.reaped, 1);
    assert!(is_unknown(
        n.registry
            .upload_chunk(&r, &id, None, None, stream(b"def"))
            .await
    ));
    let digest = Digest::sha256_of(b"abcdef");
    assert!(is_unknown(
        n.registry
            .finish_upload(&r, &id, &digest, None, stream(b"def"))
            .await
    ));
    assert!(is_unknown(n.registry.upload_status(&r, &id).await));
    assert!(is_unknown(n.registry.cancel_upload(&r, &id).await));
    assert!(!has_bytes(&n.store, &id).await);
}

/// A chunk still streaming when the reaper runs (longer than a tiny TTL) is
/// not pulled from under the request.
async fn session_in_use_is_skipped(db: &Db) {
    let blobs = tempfile::tempdir().unwrap();
    let n = node(db, &blobs).await;
    let r = repo("reaper/busy");
    let id = n.registry.start_upload(&r).await.unwrap().id;
    let data = vec![7u8; 10_000];
    let chunk = {
        let reg = n.registry.clone();
        let (r, id, data) = (r.clone(), id.clone(), data.clone());
        tokio::spawn(async move {
            reg.upload_chunk(&r, &id, None, None, slow_stream(&data, 8))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = n
        .registry
        .reap_uploads(Duration::from_millis(100), 10)
        .await
        .unwrap();
    assert_eq!((report.expired, report.skipped, report.reaped), (1, 1, 0));
    assert_eq!(chunk.await.unwrap().unwrap().offset, 10_000);
    n.registry
        .finish_upload(&r, &id, &Digest::sha256_of(&data), None, stream(b""))
        .await
        .unwrap();
}

/// Three nodes (own pools, one blob directory) reap 60 idle sessions at the
/// same time: each is reaped by exactly one of them.
async fn reapers_on_several_nodes_reap_each_session_once(db: &Db) {
    let blobs = tempfile::tempdir().unwrap();
    let nodes = [
        node(db, &blobs).await,
        node(db, &blobs).await,
        node(db, &blobs).await,
    ];
    let r = repo("reaper/many");
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(start(&nodes[i % 3].registry, &r, format!("bytes {i}").as_bytes()).await);
    }
    let keep = start(&nodes[0].registry, &r, b"keep").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The kept session is touched just before the reapers run.
    nodes[1]
        .registry
        .upload_chunk(&r, &keep, None, None, stream(b"!"))
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for n in &nodes {
        for _ in 0..2 {
            let reg = n.registry.clone();
            tasks.push(tokio::spawn(async move {
                reg.reap_uploads(Duration::from_millis(300), 1000)
                    .await
                    .unwrap()
            }));
        }
    }
    let mut reaped = 0;
    for t in tasks {
        let report = t.await.unwrap();
        assert_eq!(report.store_errors, 0);
        reaped += report.reaped;
    }
    assert_eq!(reaped, 60);
    for id in &ids {
        assert!(!has_bytes(&nodes[0].store, id).await);
        assert!(is_unknown(nodes[2].registry.upload_status(&r, id).await));
    }
    assert_eq!(
        nodes[2]
            .registry
            .upload_status(&r, &keep)
            .await
            .unwrap()
            .offset,
        5
    );
}

/// The worker through a runner: the schedule enqueues it, it reaps.
async fn reaper_worker_runs_on_schedule(db: &Db) {
    let blobs = tempfile::tempdir().unwrap();
    let n = node(db, &blobs).await;
    let r = repo("reaper/worker");
    let id = start(&n.registry, &r, b"abandoned").await;
    let meta = db.open().await;
    let runner = Runner::new(
        meta.clone(),
        "node",
        RunnerConfig {
            poll_interval: Duration::from_millis(50),
            ..RunnerConfig::default()
        },
    )
    .with_worker(UploadReaper::new(
        n.registry.clone(),
        Duration::from_millis(200),
        Duration::from_millis(300),
    ));
    let status = runner.status();
    let cancel = CancellationToken::new();
    let handle = runner.spawn(cancel.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !is_unknown(n.registry.upload_status(&r, &id).await) {
        assert!(std::time::Instant::now() < deadline, "never reaped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    handle.await.unwrap();
    assert!(!has_bytes(&n.store, &id).await);
    let jobs = meta.jobs("upload_reaper", 100).await.unwrap();
    assert!(!jobs.is_empty());
    assert!(jobs.iter().all(|j| j.status == JobStatus::Done), "{jobs:?}");
    let s = status.get("upload_reaper").unwrap();
    assert!(s.runs >= 1 && s.failures == 0, "{s:?}");
}
