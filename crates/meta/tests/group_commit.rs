//! Transactions sharing commits (SQLite's group commit; on PostgreSQL each
//! is its own, and the same checks hold): many concurrent writers all
//! commit, a dropped or failed one leaves nothing and takes nobody else's
//! work with it, and a batch never stays open with nobody to close it.

mod common;

use std::time::Duration;

use berth_meta::MetaStore;
use berth_oci::RepoName;

fn repo() -> RepoName {
    RepoName::parse("group/commit").unwrap()
}

/// What each of the concurrent writers does.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fate {
    Commit,
    /// Writes, then drops the transaction.
    Drop,
    /// Writes, then fails on a duplicate key, then drops.
    Fail,
}

fn fate(i: usize) -> Fate {
    match i % 7 {
        3 => Fate::Drop,
        5 => Fate::Fail,
        _ => Fate::Commit,
    }
}

async fn many_writers_keep_exactly_the_committed_work(meta: &MetaStore) {
    const WRITERS: usize = 300;
    // A row every `Fail` writer collides with.
    let mut tx = meta.begin().await.unwrap();
    tx.insert_upload("taken", &repo()).await.unwrap();
    tx.commit().await.unwrap();

    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("upload-{i}");
            let mut tx = meta.begin().await.unwrap();
            tx.insert_upload(&id, &repo()).await.unwrap();
            match fate(i) {
                Fate::Commit => tx.commit().await.unwrap(),
                Fate::Drop => drop(tx),
                Fate::Fail => {
                    assert!(tx.insert_upload("taken", &repo()).await.is_err());
                    drop(tx);
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("a writer hung")
            .unwrap();
    }
    // Read through the read pool: only what was physically committed.
    for i in 0..WRITERS {
        let found = meta.upload(&format!("upload-{i}")).await.unwrap().is_some();
        assert_eq!(found, fate(i) == Fate::Commit, "writer {i} ({:?})", fate(i));
    }
    assert!(meta.upload("taken").await.unwrap().is_some());
}

/// A transaction dropped while nobody queues behind it: the batch must be
/// closed for it, or the pool's one writer connection stays taken.
async fn a_lone_dropped_transaction_frees_the_writer(meta: &MetaStore) {
    let mut tx = meta.begin().await.unwrap();
    tx.insert_upload("lonely", &repo()).await.unwrap();
    drop(tx);
    // Writers outside the group use the pool directly.
    let other = tokio::time::timeout(Duration::from_secs(5), meta.begin_identity())
        .await
        .expect("the writer connection is still held by a dropped transaction")
        .unwrap();
    other.commit().await.unwrap();
    assert!(meta.upload("lonely").await.unwrap().is_none());
    // And the group carries on.
    let mut tx = meta.begin().await.unwrap();
    tx.insert_upload("after", &repo()).await.unwrap();
    tx.commit().await.unwrap();
    assert!(meta.upload("after").await.unwrap().is_some());
}

/// Committed means durable and visible to a store opened afresh.
async fn committed_work_survives_reopening(path: &std::path::Path) {
    let meta = MetaStore::open_sqlite(path).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = meta.begin().await.unwrap();
            tx.insert_upload(&format!("durable-{i}"), &repo())
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(meta);
    let reopened = MetaStore::open_sqlite(path).await.unwrap();
    for i in 0..50 {
        assert!(
            reopened
                .upload(&format!("durable-{i}"))
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    let (_dir, meta) = common::open_sqlite().await;
    many_writers_keep_exactly_the_committed_work(&meta).await;
    a_lone_dropped_transaction_frees_the_writer(&meta).await;
    let dir = tempfile::tempdir().unwrap();
    committed_work_survives_reopening(&dir.path().join("meta.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    let (_url, meta) = common::open_postgres().await;
    many_writers_keep_exactly_the_committed_work(&meta).await;
    a_lone_dropped_transaction_frees_the_writer(&meta).await;
}
