//! `S3Store` against a real S3-compatible server (s3s-fs, started by
//! `scripts/start-services.sh`). Every test works under its own key prefix.
//! A missing server fails the tests: they never skip.

use std::time::{Duration, Instant};

use berth_oci::{Algorithm, Digest, Hasher};
use berth_storage::testsuite::{self, body_of, pattern, read_blob, upload_chunks};
use berth_storage::{BlobStore, Error, S3Config, S3Store};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run scripts/start-services.sh, then \
             `set -a; . target/test-services.env; set +a`"
        )
    })
}

fn config(test: &str) -> S3Config {
    S3Config {
        endpoint: Some(env("BERTH_TEST_S3_ENDPOINT")),
        region: "us-east-1".into(),
        bucket: env("BERTH_TEST_S3_BUCKET"),
        // Short: s3s-fs names a multipart upload's metadata file after the
        // base64 of the whole key, and file names stop at 255 bytes.
        prefix: format!(
            "{test}-{}/",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
        path_style: true,
        access_key_id: Some(env("BERTH_TEST_S3_ACCESS_KEY")),
        secret_access_key: Some(env("BERTH_TEST_S3_SECRET_KEY")),
        allow_http: true,
    }
}

/// Direct access to the bucket, to look behind the store's back.
fn raw(config: &S3Config) -> impl ObjectStore {
    AmazonS3Builder::new()
        .with_endpoint(config.endpoint.clone().unwrap())
        .with_region(&config.region)
        .with_bucket_name(&config.bucket)
        .with_access_key_id(config.access_key_id.clone().unwrap())
        .with_secret_access_key(config.secret_access_key.clone().unwrap())
        .with_allow_http(true)
        .build()
        .unwrap()
}

async fn keys_under(config: &S3Config, under: &str) -> Vec<String> {
    let prefix = Path::from(format!("{}{under}", config.prefix));
    let mut keys: Vec<String> = raw(config)
        .list(Some(&prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Removes everything a test left under its prefix.
async fn cleanup(config: &S3Config) {
    let store = raw(config);
    let prefix = Path::from(config.prefix.as_str());
    let paths = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
    let _: Vec<Path> = store.delete_stream(paths).try_collect().await.unwrap();
}

use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let config = config("suite");
    let store = S3Store::new(&config).unwrap();
    testsuite::run_all(&store).await;
    // Everything the suite made was committed, aborted or deleted.
    assert_eq!(keys_under(&config, "").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_chunks_compose_into_multipart_blob() {
    let config = config("compose");
    let store = S3Store::new(&config).unwrap();
    // 4 × 2 MiB (each under S3's 5 MiB part minimum) + a tail: 8 MiB + 7,
    // just over one 8 MiB part, so the last part is 7 bytes.
    let chunks: Vec<Vec<u8>> = (0..4).map(|i| pattern(2 * 1024 * 1024, i)).collect();
    let mut all: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    all.push(b"tail..!");
    let digest = upload_chunks(&store, "compose", &all).await;
    let whole = all.concat();
    assert_eq!(
        keys_under(&config, "uploads/compose").await.len(),
        6,
        "one object per append plus the marker"
    );
    store.upload_commit("compose", &digest).await.unwrap();
    assert_eq!(read_blob(&store, &digest).await, whole);
    assert_eq!(keys_under(&config, "uploads").await, Vec::<String>::new());
    let blob = keys_under(&config, "blobs").await;
    assert_eq!(
        blob,
        vec![format!(
            "{}blobs/sha256/{}/{}",
            config.prefix,
            &digest.hex()[..2],
            digest.hex()
        )]
    );
    cleanup(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_large_chunk_commits_by_copy() {
    let config = config("copy");
    let store = S3Store::new(&config).unwrap();
    let data = pattern(12 * 1024 * 1024, 7);
    let digest = upload_chunks(&store, "copy", &[&data]).await;
    assert_eq!(
        keys_under(&config, "uploads/copy").await,
        vec![
            format!("{}uploads/copy/.start", config.prefix),
            format!("{}uploads/copy/00000000000000000000", config.prefix),
        ]
    );
    store.upload_commit("copy", &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
    assert_eq!(read_blob(&store, &digest).await, data);
    cleanup(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_secret_is_a_clear_error() {
    let mut config = config("badkey");
    config.secret_access_key = Some("not-the-secret".into());
    let store = S3Store::new(&config).unwrap();
    let err = store.ready().await.expect_err("a wrong secret must fail");
    let text = err.to_string();
    assert!(text.contains("request refused"), "{text}");
    assert!(text.contains("check the access key"), "{text}");
    assert!(matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied));
    let err = store
        .stat(&Digest::sha256_of(b"x"))
        .await
        .expect_err("a wrong secret must fail");
    assert!(err.to_string().contains("request refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_not_ready() {
    let mut config = config("nobkt");
    config.bucket = "no-such-bucket-here".into();
    let store = S3Store::new(&config).unwrap();
    let err = store.ready().await.expect_err("a missing bucket must fail");
    assert!(err.to_string().contains("LIST"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_url_fetches_and_tampering_is_refused() {
    let config = config("presign");
    let store = S3Store::new(&config).unwrap();
    let data = pattern(300_000, 9);
    let digest = upload_chunks(&store, "presign", &[&data]).await;
    store.upload_commit("presign", &digest).await.unwrap();
    let url = store
        .presigned_get(&digest, Duration::from_secs(300))
        .await
        .unwrap()
        .expect("S3 signs URLs");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let http = reqwest::Client::new();
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), Bytes::from(data));

    // Another signature, another object, a longer life: all refused.
    let sig_at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut forged = url.clone();
    let last = if &url[sig_at..sig_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    forged.replace_range(sig_at..sig_at + 1, last);
    let someone_else = Digest::sha256_of(b"another blob");
    let other = url.replace(
        &format!("/{}/{}?", &digest.hex()[..2], digest.hex()),
        &format!("/{}/{}?", &someone_else.hex()[..2], someone_else.hex()),
    );
    assert_ne!(other, url);
    let longer = url.replace("X-Amz-Expires=300", "X-Amz-Expires=600");
    assert_ne!(longer, url);
    for bad in [forged, other, longer] {
        let status = http.get(&bad).send().await.unwrap().status();
        assert_eq!(status, 403, "{bad}");
    }
    cleanup(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_continue_one_upload() {
    let config = config("nodes");
    let node1 = S3Store::new(&config).unwrap();
    let node2 = S3Store::new(&config).unwrap();
    let a = pattern(6 * 1024 * 1024, 1);
    let b = pattern(3 * 1024 * 1024, 2);
    let c = pattern(123, 3);

    node1.upload_start("shared").await.unwrap();
    let (size, _) = node1
        .upload_append(
            "shared",
            0,
            body_of(&a, 65536),
            Hasher::new(Algorithm::Sha256),
        )
        .await
        .unwrap();
    // Node 2 knows nothing but the id: it finds the size and rebuilds the
    // hash from the stored bytes.
    assert_eq!(node2.upload_size("shared").await.unwrap(), Some(size));
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut stored = node2.upload_read("shared").await.unwrap();
    while let Some(piece) = stored.try_next().await.unwrap() {
        hasher.update(&piece);
    }
    let err = node2
        .upload_append("shared", 5, body_of(&b, 65536), hasher.clone())
        .await
        .err()
        .expect("wrong offset");
    assert!(matches!(err, Error::OffsetMismatch { current } if current == size));
    let (size, hasher) = node2
        .upload_append("shared", size, body_of(&b, 65536), hasher)
        .await
        .unwrap();
    // Back on node 1 with the hasher node 2 returned.
    let (size, hasher) = node1
        .upload_append("shared", size, body_of(&c, 65536), hasher)
        .await
        .unwrap();
    let whole = [a, b, c].concat();
    assert_eq!(size, whole.len() as u64);
    let digest = hasher.finish();
    assert_eq!(digest, Digest::sha256_of(&whole));
    node2.upload_commit("shared", &digest).await.unwrap();
    assert_eq!(node1.upload_size("shared").await.unwrap(), None);
    assert_eq!(read_blob(&node1, &digest).await, whole);
    cleanup(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stragglers_are_ignored_and_never_resurrected() {
    let config = config("strag");
    let store = S3Store::new(&config).unwrap();
    let raw = raw(&config);
    let a = pattern(100, 1);
    upload_chunks(&store, "s", &[&a]).await;
    // Debris past a gap (as an interrupted truncate leaves): not part of the
    // upload. An empty object at the end: not part of it either.
    let dir = format!("{}uploads/s", config.prefix);
    raw.put(
        &Path::from(format!("{dir}/00000000000000000150")),
        vec![7u8; 50].into(),
    )
    .await
    .unwrap();
    raw.put(
        &Path::from(format!("{dir}/00000000000000000100")),
        Bytes::new().into(),
    )
    .await
    .unwrap();
    assert_eq!(store.upload_size("s").await.unwrap(), Some(100));
    assert_eq!(
        testsuite_collect(store.upload_read("s").await.unwrap()).await,
        a
    );
    // Appending 50 bytes at 100 would make the debris at 150 contiguous:
    // the append removes it first.
    let b = pattern(50, 2);
    let (size, _) = store
        .upload_append("s", 100, body_of(&b, 10), Hasher::new(Algorithm::Sha256))
        .await
        .unwrap();
    assert_eq!(size, 150);
    assert_eq!(store.upload_size("s").await.unwrap(), Some(150));
    assert_eq!(
        keys_under(&config, "uploads/s").await,
        vec![
            format!("{dir}/.start"),
            format!("{dir}/00000000000000000000"),
            format!("{dir}/00000000000000000100"),
        ]
    );
    store.upload_abort("s").await.unwrap();
    assert_eq!(keys_under(&config, "").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_inside_a_large_chunk_rewrites_its_prefix() {
    let config = config("cut");
    let store = S3Store::new(&config).unwrap();
    let a = pattern(1000, 1);
    let b = pattern(10 * 1024 * 1024, 2);
    upload_chunks(&store, "cut", &[&a, &b]).await;
    let keep = 1000 + 9 * 1024 * 1024 + 3;
    store.upload_truncate("cut", keep as u64).await.unwrap();
    assert_eq!(store.upload_size("cut").await.unwrap(), Some(keep as u64));
    let whole = [a, b].concat();
    assert_eq!(
        testsuite_collect(store.upload_read("cut").await.unwrap()).await,
        &whole[..keep]
    );
    store.upload_abort("cut").await.unwrap();
    cleanup(&config).await;
}

async fn testsuite_collect(s: berth_storage::ByteStream) -> Vec<u8> {
    let parts: Vec<Bytes> = s.try_collect().await.unwrap();
    parts.concat()
}

/// Commit time of 64 MiB made of 8 × 8 MiB chunks (composed by a multipart
/// upload streamed through this process) against 1 × 64 MiB (server-side
/// copy). Prints the figures; run with `--nocapture` to see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_cost_of_64_mib() {
    let config = config("bench");
    let store = S3Store::new(&config).unwrap();
    let data = pattern(64 * 1024 * 1024, 5);
    let digest = Digest::sha256_of(&data);
    let eight: Vec<&[u8]> = data.chunks(8 * 1024 * 1024).collect();
    for (name, chunks) in [("8 x 8 MiB", eight), ("1 x 64 MiB", vec![data.as_slice()])] {
        let started = Instant::now();
        let d = upload_chunks(&store, "bench", &chunks).await;
        let appended = started.elapsed();
        assert_eq!(d, digest);
        // What a node that did not see the earlier chunks pays to rebuild
        // the running hash from the stored bytes.
        let started = Instant::now();
        let mut hasher = Hasher::new(Algorithm::Sha256);
        let mut stored = store.upload_read("bench").await.unwrap();
        while let Some(piece) = stored.try_next().await.unwrap() {
            hasher.update(&piece);
        }
        assert_eq!(hasher.finish(), digest);
        let rehashed = started.elapsed();
        let started = Instant::now();
        store.upload_commit("bench", &digest).await.unwrap();
        let committed = started.elapsed();
        println!(
            "64 MiB as {name}: appends {:.0} ms, re-hash from S3 {:.0} ms, commit {:.0} ms",
            appended.as_secs_f64() * 1e3,
            rehashed.as_secs_f64() * 1e3,
            committed.as_secs_f64() * 1e3
        );
        assert_eq!(store.stat(&digest).await.unwrap(), Some(data.len() as u64));
        store.delete(&digest).await.unwrap();
    }
    cleanup(&config).await;
}
