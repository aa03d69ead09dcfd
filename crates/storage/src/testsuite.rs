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

/// Deterministic, non-repeating test bytes (`seed` varies the content).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `data` as a request body arriving in `piece`-sized network chunks.
pub fn body_of(data: &[u8], piece: usize) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> = data
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(items).boxed()
}

/// Appends each of `chunks` in turn to a new upload `id`; returns the digest.
pub async fn upload_chunks(store: &dyn BlobStore, id: &str, chunks: &[&[u8]]) -> Digest {
    store.upload_start(id).await.unwrap();
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut offset = 0;
    for chunk in chunks {
        let (size, h) = store
            .upload_append(id, offset, body_of(chunk, 64 * 1024), hasher)
            .await
            .unwrap();
        assert_eq!(size, offset + chunk.len() as u64);
        offset = size;
        hasher = h;
    }
    assert_eq!(store.upload_size(id).await.unwrap(), Some(offset));
    hasher.finish()
}

/// Reads a whole blob.
pub async fn read_blob(store: &dyn BlobStore, digest: &Digest) -> Vec<u8> {
    collect(store.get(digest, None).await.unwrap()).await
}

/// Runs every check against `store`, panicking on the first difference.
pub async fn run_all(store: &dyn BlobStore) {
    upload_append_commit_get(store).await;
    offset_mismatch_writes_nothing(store).await;
    failed_body_appends_nothing(store).await;
    commit_of_existing_blob_is_idempotent(store).await;
    absent_things(store).await;
    large_single_append(store).await;
    many_chunks_compose(store).await;
    large_failed_body_appends_nothing(store).await;
    truncate_to_chunk_boundary_then_append(store).await;
    empty_upload_and_empty_append(store).await;
    concurrent_commits_of_one_digest(store).await;
    deferred_commit_is_visible_at_once_and_durable_after(store).await;
    presigned_url_is_for_the_blob_or_none(store).await;
    listing_blobs_pages_in_digest_order(store).await;
    store.ready().await.unwrap();
}

/// The orphan sweep's listing: committed blobs only (no upload staging),
/// in digest order, resumable after any digest; deleted blobs are gone.
async fn listing_blobs_pages_in_digest_order(store: &dyn BlobStore) {
    let id = "suite-list-staging";
    store.upload_start(id).await.unwrap();
    let mut mine = Vec::new();
    for seed in 0..5u64 {
        let id = format!("suite-list-{seed}");
        let data = pattern(100 + seed as usize, 900 + seed);
        store.upload_start(&id).await.unwrap();
        store
            .upload_append(&id, 0, body_of(&data, 64), Hasher::new(Algorithm::Sha256))
            .await
            .unwrap();
        store.upload_prepare(&id).await.unwrap();
        let digest = Digest::sha256_of(&data);
        store.upload_commit(&id, &digest).await.unwrap();
        mine.push((digest, data.len() as u64));
    }
    let all = store.list_blobs(None, 100_000).await.unwrap();
    let digests: Vec<String> = all.iter().map(|b| b.digest.to_string()).collect();
    let mut sorted = digests.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(digests, sorted, "listed in digest order, once each");
    for (d, size) in &mine {
        let listed = all
            .iter()
            .find(|b| &b.digest == d)
            .expect("a committed blob is listed");
        assert_eq!(listed.size, *size);
    }
    // Pages of two from a cursor give the same list.
    let mut paged = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.list_blobs(after.as_ref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map(|b| b.digest.clone());
        paged.extend(page.into_iter().map(|b| b.digest.to_string()));
    }
    assert_eq!(paged, digests);
    for (d, _) in &mine {
        store.delete(d).await.unwrap();
    }
    let after_delete = store.list_blobs(None, 100_000).await.unwrap();
    assert!(
        after_delete
            .iter()
            .all(|b| mine.iter().all(|(d, _)| b.digest != *d))
    );
    store.upload_abort(id).await.unwrap();
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

/// A 12 MiB append arriving in small network pieces: streamed, hashed, whole.
async fn large_single_append(store: &dyn BlobStore) {
    let data = pattern(12 * 1024 * 1024 + 5, 1);
    let digest = upload_chunks(store, "suite-upload-6", &[&data]).await;
    assert_eq!(digest, Digest::sha256_of(&data));
    assert_eq!(
        collect(store.upload_read("suite-upload-6").await.unwrap()).await,
        data
    );
    store
        .upload_commit("suite-upload-6", &digest)
        .await
        .unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    assert_eq!(read_blob(store, &digest).await, data);
    let r = ByteRange {
        start: 5 * 1024 * 1024 - 3,
        end: 9 * 1024 * 1024,
    };
    let part = collect(store.get(&digest, Some(r)).await.unwrap()).await;
    assert_eq!(part, &data[r.start as usize..=r.end as usize]);
    store.delete(&digest).await.unwrap();
}

/// Chunks below the 5 MiB S3 part minimum, adding up to more than it.
async fn many_chunks_compose(store: &dyn BlobStore) {
    let chunks: Vec<Vec<u8>> = (0..4)
        .map(|i| pattern(3 * 1024 * 1024 + i, 10 + i as u64))
        .collect();
    let mut all: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    all.push(b"tail");
    let digest = upload_chunks(store, "suite-upload-7", &all).await;
    let whole = all.concat();
    assert_eq!(digest, Digest::sha256_of(&whole));
    store
        .upload_commit("suite-upload-7", &digest)
        .await
        .unwrap();
    assert_eq!(store.upload_size("suite-upload-7").await.unwrap(), None);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(whole.len() as u64));
    assert_eq!(read_blob(store, &digest).await, whole);
    // A range across the first chunk boundary.
    let r = ByteRange {
        start: 3 * 1024 * 1024 - 10,
        end: 3 * 1024 * 1024 + 10,
    };
    let part = collect(store.get(&digest, Some(r)).await.unwrap()).await;
    assert_eq!(part, &whole[r.start as usize..=r.end as usize]);
    store.delete(&digest).await.unwrap();
}

/// A big body that fails after several MiB appends nothing, and the upload
/// goes on from where it was.
async fn large_failed_body_appends_nothing(store: &dyn BlobStore) {
    let id = "suite-upload-8";
    let first = pattern(1000, 20);
    upload_chunks(store, id, &[&first]).await;
    let big = pattern(10 * 1024 * 1024, 21);
    let broken: ByteStream = body_of(&big, 256 * 1024)
        .chain(futures::stream::iter(vec![Err(std::io::Error::other(
            "client went away",
        ))]))
        .boxed();
    let err = store
        .upload_append(id, 1000, broken, Hasher::new(Algorithm::Sha256))
        .await
        .err()
        .expect("a broken body must fail the append");
    assert!(matches!(err, Error::Body(_)), "{err:?}");
    assert_eq!(store.upload_size(id).await.unwrap(), Some(1000));
    assert_eq!(collect(store.upload_read(id).await.unwrap()).await, first);
    let (size, _) = store
        .upload_append(
            id,
            1000,
            stream_of(&[b"more"]),
            Hasher::new(Algorithm::Sha256),
        )
        .await
        .unwrap();
    assert_eq!(size, 1004);
    store.upload_abort(id).await.unwrap();
}

/// The core's use of truncate: back to where a failed chunk started.
async fn truncate_to_chunk_boundary_then_append(store: &dyn BlobStore) {
    let id = "suite-upload-9";
    let (a, b, c) = (pattern(700, 30), pattern(800, 31), pattern(900, 32));
    upload_chunks(store, id, &[&a, &b, &c]).await;
    store.upload_truncate(id, 700).await.unwrap();
    assert_eq!(store.upload_size(id).await.unwrap(), Some(700));
    assert_eq!(collect(store.upload_read(id).await.unwrap()).await, a);
    let err = store
        .upload_append(id, 1500, stream_of(&[b"x"]), Hasher::new(Algorithm::Sha256))
        .await
        .err()
        .expect("the old end is gone");
    assert!(
        matches!(err, Error::OffsetMismatch { current: 700 }),
        "{err:?}"
    );
    let d = pattern(50, 33);
    let (size, _) = store
        .upload_append(id, 700, body_of(&d, 7), Hasher::new(Algorithm::Sha256))
        .await
        .unwrap();
    assert_eq!(size, 750);
    // Nothing of the cut chunks comes back.
    assert_eq!(store.upload_size(id).await.unwrap(), Some(750));
    let whole = [a.as_slice(), d.as_slice()].concat();
    assert_eq!(collect(store.upload_read(id).await.unwrap()).await, whole);
    let digest = Digest::sha256_of(&whole);
    store.upload_commit(id, &digest).await.unwrap();
    assert_eq!(read_blob(store, &digest).await, whole);
    store.delete(&digest).await.unwrap();
}

async fn empty_upload_and_empty_append(store: &dyn BlobStore) {
    let id = "suite-upload-10";
    store.upload_start(id).await.unwrap();
    let (size, hasher) = store
        .upload_append(id, 0, stream_of(&[]), Hasher::new(Algorithm::Sha256))
        .await
        .unwrap();
    assert_eq!(size, 0);
    assert_eq!(store.upload_size(id).await.unwrap(), Some(0));
    let digest = hasher.finish();
    assert_eq!(digest, Digest::sha256_of(b""));
    assert!(
        collect(store.upload_read(id).await.unwrap())
            .await
            .is_empty()
    );
    store.upload_commit(id, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(0));
    assert!(read_blob(store, &digest).await.is_empty());
    store.delete(&digest).await.unwrap();
}

/// Two sessions pushing the same bytes commit at the same time: both succeed.
async fn concurrent_commits_of_one_digest(store: &dyn BlobStore) {
    let small = pattern(100, 40);
    let large = pattern(9 * 1024 * 1024, 41);
    for (n, data) in [small, large].iter().enumerate() {
        let (a, b) = (format!("suite-race-{n}-a"), format!("suite-race-{n}-b"));
        let half = data.len() / 2;
        let (h, _) = data.split_at(half);
        let d1 = upload_chunks(store, &a, &[h, &data[half..]]).await;
        let d2 = upload_chunks(store, &b, &[data]).await;
        assert_eq!(d1, d2);
        let (r1, r2) = futures::join!(store.upload_commit(&a, &d1), store.upload_commit(&b, &d2));
        r1.unwrap();
        r2.unwrap();
        assert_eq!(store.upload_size(&a).await.unwrap(), None);
        assert_eq!(store.upload_size(&b).await.unwrap(), None);
        assert_eq!(&read_blob(store, &d1).await, data);
        store.delete(&d1).await.unwrap();
    }
}

/// `upload_commit_deferred`: the blob is readable as soon as it returns;
/// its durability resolves `Ok`; a second commit of the same digest (the
/// blob exists) just removes its upload.
async fn deferred_commit_is_visible_at_once_and_durable_after(store: &dyn BlobStore) {
    let data = pattern(70_000, 42);
    let digest = upload_chunks(store, "suite-deferred-a", &[&data]).await;
    let committed = store
        .upload_commit_deferred("suite-deferred-a", &digest)
        .await
        .unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(70_000));
    assert_eq!(store.upload_size("suite-deferred-a").await.unwrap(), None);
    committed.durable().await.unwrap();
    let again = upload_chunks(store, "suite-deferred-b", &[&data]).await;
    store
        .upload_commit_deferred("suite-deferred-b", &again)
        .await
        .unwrap()
        .durable()
        .await
        .unwrap();
    assert_eq!(store.upload_size("suite-deferred-b").await.unwrap(), None);
    assert_eq!(read_blob(store, &digest).await, data);
    store.delete(&digest).await.unwrap();
}

async fn presigned_url_is_for_the_blob_or_none(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(b"signed");
    let url = store
        .presigned_get(&digest, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    if let Some(url) = url {
        assert!(url.contains(digest.hex()), "{url}");
    }
}
