//! `ObjectBlobStore` over `object_store`'s in-memory store: the code path
//! S3, GCS and Azure share, without a server. The S3 suite (`tests/s3.rs`)
//! runs the same checks against a real S3 server.

use std::sync::Arc;

use berth_storage::testsuite::{self, pattern, read_blob, upload_chunks};
use berth_storage::{BlobStore, ObjectBlobStore};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let memory = Arc::new(InMemory::new());
    let store = ObjectBlobStore::from_object_store(memory.clone(), None, "berth/");
    testsuite::run_all(&store).await;
    // Without a signer, blob GETs are proxied.
    let digest = berth_oci::Digest::sha256_of(b"x");
    let url = store
        .presigned_get(&digest, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(url, None);
    // Everything the suite made was committed, aborted or deleted.
    let left: Vec<_> = memory
        .list(Some(&Path::from("berth")))
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn single_chunk_commit_copies_within_the_prefix() {
    let memory = Arc::new(InMemory::new());
    let store = ObjectBlobStore::from_object_store(memory.clone(), None, "p");
    let data = pattern(1024 * 1024, 7);
    let digest = upload_chunks(&store, "one", &[&data]).await;
    store.upload_commit("one", &digest).await.unwrap();
    assert_eq!(read_blob(&store, &digest).await, data);
    let keys: Vec<String> = memory
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        keys,
        vec![format!(
            "p/blobs/sha256/{}/{}",
            &digest.hex()[..2],
            digest.hex()
        )]
    );
    // The raw store sees the same bytes.
    let raw = memory
        .get(&Path::from(keys[0].as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(raw.as_ref(), data.as_slice());
}
