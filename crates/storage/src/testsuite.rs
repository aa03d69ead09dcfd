//! The conformance suite every [`BlobStore`] backend runs: the semantics
//! documented on the trait, checked the same way for each.

use berth_oci::{Algorithm, ByteRange, Digest, Hasher};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::{BlobStore, ByteStream, Error};

fn stream_of(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    futures::stream::iter(items).boxed()
}

async fn collect(s: ByteStream) -> Vec<u8> {
    let parts: Vec<Bytes> = s.try_collect().await.unwrap();
    parts.concat()
}

/// Runs every check against `store`, panicking on the first difference.
pub async fn run_all(store: &dyn BlobStore) {
    upload_append_commit_get(store).await;
    offset_mismatch_writes_nothing(store).await;
    failed_body_appends_nothing(store).await;
    commit_of_existing_blob_is_idempotent(store).await;
    absent_things(store).await;
    store.ready().await.unwrap();
}

async fn upload_append_commit_get(store: &dyn BlobStore) {
    let id = "suite-upload-1";
    store.upload_start(id).await.unwrap();
    assert_eq!(store.upload_size(id).await.unwrap(), Some(0));
    let (size, hasher) = store
        .upload_append(
            id,
            0,
            stream_of(&[b"hello ", b"wor"]),
            Hasher::new(Algorithm::Sha256),
        )
        .await
        .unwrap();
    assert_eq!(size, 9);
    let (size, hasher) = store
        .upload_append(id, 9, stream_of(&[b"ld"]), hasher)
        .await
        .unwrap();
    assert_eq!(size, 11);
    let digest = hasher.finish();
    assert_eq!(digest, Digest::sha256_of(b"hello world"));
    assert_eq!(
        collect(store.upload_read(id).await.unwrap()).await,
        b"hello world"
    );
    store.upload_commit(id, &digest).await.unwrap();
    assert_eq!(store.upload_size(id).await.unwrap(), None);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
    assert_eq!(
        collect(store.get(&digest, None).await.unwrap()).await,
        b"hello world"
    );
    let part = store
        .get(&digest, Some(ByteRange { start: 6, end: 10 }))
        .await
        .unwrap();
    assert_eq!(collect(part).await, b"world");
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

async fn offset_mismatch_writes_nothing(store: &dyn BlobStore) {
    let id = "suite-upload-2";
    store.upload_start(id).await.unwrap();
    let (size, _) = store
        .upload_append(id, 0, stream_of(&[b"abc"]), Hasher::new(Algorithm::Sha256))
        .await
        .unwrap();
    assert_eq!(size, 3);
    let err = store
        .upload_append(id, 1, stream_of(&[b"zzz"]), Hasher::new(Algorithm::Sha256))
        .await
        .err()
        .expect("append at the wrong offset must fail");
    assert!(
        matches!(err, Error::OffsetMismatch { current: 3 }),
        "{err:?}"
    );
    assert_eq!(store.upload_size(id).await.unwrap(), Some(3));
    store.upload_truncate(id, 1).await.unwrap();
    assert_eq!(store.upload_size(id).await.unwrap(), Some(1));
    assert_eq!(collect(store.upload_read(id).await.unwrap()).await, b"a");
    store.upload_abort(id).await.unwrap();
    store.upload_abort(id).await.unwrap();
    assert_eq!(store.upload_size(id).await.unwrap(), None);
}

async fn failed_body_appends_nothing(store: &dyn BlobStore) {
    let id = "suite-upload-3";
    store.upload_start(id).await.unwrap();
    let broken: ByteStream = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::other("client went away")),
    ])
    .boxed();
    let err = store
        .upload_append(id, 0, broken, Hasher::new(Algorithm::Sha256))
        .await
        .err()
        .expect("a broken body must fail the append");
    assert!(matches!(err, Error::Body(_)), "{err:?}");
    assert_eq!(store.upload_size(id).await.unwrap(), Some(0));
    store.upload_abort(id).await.unwrap();
}

async fn commit_of_existing_blob_is_idempotent(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(b"same");
    for id in ["suite-upload-4", "suite-upload-5"] {
        store.upload_start(id).await.unwrap();
        store
            .upload_append(id, 0, stream_of(&[b"same"]), Hasher::new(Algorithm::Sha256))
            .await
            .unwrap();
        store.upload_commit(id, &digest).await.unwrap();
        assert_eq!(store.upload_size(id).await.unwrap(), None);
    }
    assert_eq!(
        collect(store.get(&digest, None).await.unwrap()).await,
        b"same"
    );
    store.delete(&digest).await.unwrap();
}

async fn absent_things(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(b"never stored");
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(matches!(
        store.get(&digest, None).await,
        Err(Error::NotFound)
    ));
    store.delete(&digest).await.unwrap();
    assert!(matches!(
        store
            .upload_append(
                "no-such-upload",
                0,
                stream_of(&[b"x"]),
                Hasher::new(Algorithm::Sha256)
            )
            .await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.upload_read("no-such-upload").await,
        Err(Error::NotFound)
    ));
    assert_eq!(store.upload_size("no-such-upload").await.unwrap(), None);
    assert!(matches!(
        store.upload_truncate("no-such-upload", 0).await,
        Err(Error::NotFound)
    ));
}
