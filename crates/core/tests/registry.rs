//! The core's use cases through `berth_core::Registry`, over the real
//! filesystem store and SQLite in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use berth_core::{Error, ManifestPushed, MountOutcome, Options, Registry};
use berth_meta::MetaStore;
use berth_oci::{Algorithm, Digest, ErrorCode, Reference, RepoName};
use berth_storage::{ByteStream, FsStore};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tempfile::TempDir;

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn stream(data: &[u8]) -> ByteStream {
    // Several small parts, as a network body arrives.
    let parts: Vec<std::io::Result<Bytes>> = data
        .chunks(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(parts).boxed()
}

/// A body that trickles in `parts` pieces with a pause between them, so a
/// concurrent request has time to start while it is still streaming.
fn slow_stream(data: &[u8], parts: usize) -> ByteStream {
    let size = data.len().div_ceil(parts).max(1);
    let pieces: Vec<Bytes> = data.chunks(size).map(Bytes::copy_from_slice).collect();
    futures::stream::iter(pieces)
        .then(|p| async move {
            tokio::time::sleep(Duration::from_millis(15)).await;
            Ok(p)
        })
        .boxed()
}

async fn open(dir: &TempDir) -> Registry {
    let meta = MetaStore::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    Registry::new(meta, Arc::new(store))
}

async fn read_blob(reg: &Registry, r: &RepoName, d: &Digest, range: Option<&str>) -> Vec<u8> {
    let read = reg.get_blob(r, d, range).await.unwrap();
    let parts: Vec<Bytes> = read.body.try_collect().await.unwrap();
    parts.concat()
}

fn upload_files(dir: &TempDir) -> Vec<String> {
    std::fs::read_dir(dir.path().join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn unknown<T>(res: Result<T, Error>) -> bool {
    matches!(res, Err(Error::UploadUnknown(_)))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

// ---------------------------------------------------------------------------
// push_blob + get_blob
// ---------------------------------------------------------------------------

#[tokio::test]
async fn push_blob_then_get_blob() {
    // (name, content, algorithm)
    let cases: Vec<(&str, Vec<u8>, Algorithm)> = vec![
        ("empty", Vec::new(), Algorithm::Sha256),
        ("one byte", b"x".to_vec(), Algorithm::Sha256),
        ("text", b"hello world".to_vec(), Algorithm::Sha256),
        // Larger than the store's write batch and read chunk.
        ("3 MiB", pattern(3 * 1024 * 1024 + 5), Algorithm::Sha256),
        ("sha512", b"hello sha512".to_vec(), Algorithm::Sha512),
    ];
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir).await;
    let r = repo("push/app");
    for (name, data, alg) in cases {
        let d = Digest::of(alg, &data);
        reg.push_blob(&r, &d, stream(&data)).await.unwrap();
        assert_eq!(
            reg.stat_blob(&r, &d).await.unwrap(),
            data.len() as u64,
            "{name}"
        );
        let read = reg.get_blob(&r, &d, None).await.unwrap();
        assert_eq!(read.size, data.len() as u64, "{name}");
        assert_eq!(read.range, None, "{name}");
        assert_eq!(read_blob(&reg, &r, &d, None).await, data, "{name}");
        // Pushing the same blob again is fine.
        reg.push_blob(&r, &d, stream(&data)).await.unwrap();
        // Not readable from another repository.
        assert!(
            matches!(
                reg.get_blob(&repo("push/other"), &d, None).await,
                Err(Error::BlobUnknown(_))
            ),
            "{name}"
        );
    }
    assert!(upload_files(&dir).is_empty(), "{:?}", upload_files(&dir));
}

#[tokio::test]
async fn push_blob_with_wrong_digest_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir).await;
    let r = repo("push/wrong");
    let claimed = Digest::sha256_of(b"what the client claims");
    let err = reg
        .push_blob(&r, &claimed, stream(b"what it sends"))
        .await
        .unwrap_err();
    match &err {
        Error::DigestMismatch { expected, actual } => {
            assert_eq!(expected, &claimed);
            assert_eq!(actual, &Digest::sha256_of(b"what it sends"));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_eq!(err.code(), Some(ErrorCode::DigestInvalid));
    assert!(matches!(
        reg.stat_blob(&r, &claimed).await,
        Err(Error::BlobUnknown(_))
    ));
    assert!(matches!(
        reg.stat_blob(&r, &Digest::sha256_of(b"what it sends"))
            .await,
        Err(Error::BlobUnknown(_))
    ));
    assert!(upload_files(&dir).is_empty(), "{:?}", upload_files(&dir));
}

#[tokio::test]
async fn get_blob_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir).await;
    let r = repo("range/app");
    let data = pattern(100);
    let d = Digest::sha256_of(&data);
    reg.push_blob(&r, &d, stream(&data)).await.unwrap();
    // (Range header, Ok(start..=end served) or Err(size for unsatisfiable))
    /// `Ok(served range)` (None: the whole blob) or `Err(size)` for 416.
    type Want = Result<Option<(u64, u64)>, u64>;
    let cases: [(&str, Want); 8] = [
        ("bytes=0-9", Ok(Some((0, 9)))),
        ("bytes=90-", Ok(Some((90, 99)))),
        ("bytes=-5", Ok(Some((95, 99)))),
        ("bytes=50-500", Ok(Some((50, 99)))),
        ("bytes=99-99", Ok(Some((99, 99)))),
        // Malformed ranges are ignored: the whole blob.
        ("items=0-1", Ok(None)),
        ("bytes=100-", Err(100)),
        ("bytes=-0", Err(100)),
    ];
    for (header, want) in cases {
        match (reg.get_blob(&r, &d, Some(header)).await, want) {
            (Ok(read), Ok(want)) => {
                assert_eq!(read.size, 100, "{header}");
                assert_eq!(read.range.map(|r| (r.start, r.end)), want, "{header}");
                let (start, end) = want.unwrap_or((0, 99));
                let parts: Vec<Bytes> = read.body.try_collect().await.unwrap();
                assert_eq!(
                    parts.concat(),
                    &data[start as usize..=end as usize],
                    "{header}"
                );
            }
            (Err(Error::RangeNotSatisfiable { size }), Err(want)) => {
                assert_eq!(size, want, "{header}");
            }
            (got, want) => panic!(
                "{header}: got {:?}, want {want:?}",
                got.map(|r| r.range).map_err(|e| e.to_string())
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Chunked uploads across restarts and nodes
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Node `n` appends a chunk (by index into the chunks).
    Chunk(usize, usize),
    /// Node `n` is rebuilt over the same directory: its memory is lost.
    Restart(usize),
    /// Node `n` finishes the upload, with the remaining chunk if `true`.
    Finish(usize, bool),
}

/// Runs `steps` over two "nodes" (registries over the same directory) and
/// checks the finished blob has exactly the concatenated chunks.
async fn check_upload_steps(name: &str, chunks: &[&[u8]], alg: Algorithm, steps: &[Step]) {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = vec![open(&dir).await, open(&dir).await];
    let r = repo("restart/app");
    let whole: Vec<u8> = chunks.concat();
    let d = Digest::of(alg, &whole);
    let id = nodes[0].start_upload(&r).await.unwrap().id;
    let mut next = 0;
    let mut offset = 0u64;
    for step in steps {
        match *step {
            Step::Chunk(n, i) => {
                assert_eq!(i, next, "{name}: steps must append chunks in order");
                let status = nodes[n]
                    .upload_chunk(&r, &id, None, None, stream(chunks[i]))
                    .await
                    .unwrap();
                offset += chunks[i].len() as u64;
                next += 1;
                assert_eq!(status.offset, offset, "{name}: after chunk {i}");
                // Either node sees the same progress.
                for node in &nodes {
                    assert_eq!(node.upload_status(&r, &id).await.unwrap().offset, offset);
                }
            }
            Step::Restart(n) => {
                nodes[n].close().await;
                nodes[n] = open(&dir).await;
            }
            Step::Finish(n, with_last) => {
                let rest: Vec<u8> = if with_last {
                    chunks[next..].concat()
                } else {
                    assert_eq!(next, chunks.len(), "{name}: finish without last chunk");
                    Vec::new()
                };
                nodes[n]
                    .finish_upload(&r, &id, &d, None, stream(&rest))
                    .await
                    .unwrap_or_else(|e| panic!("{name}: finish failed: {e}"));
            }
        }
    }
    for node in &nodes {
        assert_eq!(read_blob(node, &r, &d, None).await, whole, "{name}");
        assert!(
            matches!(
                node.upload_status(&r, &id).await,
                Err(Error::UploadUnknown(_))
            ),
            "{name}: the session is closed"
        );
    }
    assert!(upload_files(&dir).is_empty(), "{name}");
}

#[tokio::test]
async fn chunked_upload_survives_lost_hash_state() {
    use Step::*;
    let big = pattern(1024 * 1024 + 3);
    let chunks: [&[u8]; 3] = [b"hello ", &big, b"world"];
    let cases: Vec<(&str, Algorithm, Vec<Step>)> = vec![
        (
            "no restart",
            Algorithm::Sha256,
            vec![Chunk(0, 0), Chunk(0, 1), Chunk(0, 2), Finish(0, false)],
        ),
        (
            "restart between chunks",
            Algorithm::Sha256,
            vec![
                Chunk(0, 0),
                Restart(0),
                Chunk(0, 1),
                Chunk(0, 2),
                Finish(0, false),
            ],
        ),
        (
            "restart before finish",
            Algorithm::Sha256,
            vec![
                Chunk(0, 0),
                Chunk(0, 1),
                Chunk(0, 2),
                Restart(0),
                Finish(0, false),
            ],
        ),
        (
            "restart before finish with last chunk",
            Algorithm::Sha256,
            vec![Chunk(0, 0), Chunk(0, 1), Restart(0), Finish(0, true)],
        ),
        (
            "restart after every chunk",
            Algorithm::Sha256,
            vec![
                Restart(0),
                Chunk(0, 0),
                Restart(0),
                Chunk(0, 1),
                Restart(0),
                Chunk(0, 2),
                Restart(0),
                Finish(0, false),
            ],
        ),
        // Node 0 keeps a stale in-memory hash state while node 1 appends.
        (
            "other node appends in between",
            Algorithm::Sha256,
            vec![Chunk(0, 0), Chunk(1, 1), Chunk(0, 2), Finish(0, false)],
        ),
        (
            "other node finishes",
            Algorithm::Sha256,
            vec![Chunk(0, 0), Chunk(0, 1), Finish(1, true)],
        ),
        (
            "stale node finishes",
            Algorithm::Sha256,
            vec![Chunk(0, 0), Chunk(1, 1), Chunk(1, 2), Finish(0, false)],
        ),
        (
            "sha512 with restart",
            Algorithm::Sha512,
            vec![Chunk(0, 0), Restart(0), Chunk(0, 1), Finish(0, true)],
        ),
        (
            "sha512 across nodes",
            Algorithm::Sha512,
            vec![Chunk(1, 0), Chunk(0, 1), Chunk(1, 2), Finish(0, false)],
        ),
    ];
    for (name, alg, steps) in cases {
        check_upload_steps(name, &chunks, alg, &steps).await;
    }
}

#[tokio::test]
async fn digest_mismatch_keeps_the_session_usable() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir).await;
    let r = repo("mismatch/app");
    let id = reg.start_upload(&r).await.unwrap().id;
    reg.upload_chunk(&r, &id, None, None, stream(b"abc"))
        .await
        .unwrap();
    for wrong in [
        Digest::sha256_of(b"abcd"),
        Digest::of(Algorithm::Sha512, b"abcd"),
    ] {
        let err = reg
            .finish_upload(&r, &id, &wrong, None, stream(b""))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::DigestMismatch { expected, .. } if *expected == wrong),
            "{err:?}"
        );
        assert_eq!(reg.upload_status(&r, &id).await.unwrap().offset, 3);
        assert!(matches!(
            reg.stat_blob(&r, &wrong).await,
            Err(Error::BlobUnknown(_))
        ));
    }
    reg.upload_chunk(&r, &id, None, None, stream(b"d"))
        .await
        .unwrap();
    let d = Digest::sha256_of(b"abcd");
    reg.finish_upload(&r, &id, &d, None, stream(b""))
        .await
        .unwrap();
    assert_eq!(read_blob(&reg, &r, &d, None).await, b"abcd");
}

/// With a keepalive, a request on a session kept alive moments ago skips
/// the write that keeps it alive; a request on an older one still moves it
/// (what the reaper's safety rests on), and the repository is checked
/// either way.
#[tokio::test]
async fn a_session_is_kept_alive_at_most_once_per_keepalive() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let store = Arc::new(FsStore::open(dir.path()).unwrap());
    let with_keepalive = |keepalive| {
        let options = Options {
            upload_keepalive: keepalive,
            ..Options::default()
        };
        Registry::with_options(meta.clone(), store.clone(), options)
    };
    let lazy = with_keepalive(Duration::from_secs(3600));
    let eager = with_keepalive(Duration::from_millis(50));
    let updated_at = |id: String| {
        let meta = meta.clone();
        async move { meta.upload(&id).await.unwrap().unwrap().updated_at }
    };
    let r = repo("keepalive/app");
    let id = lazy.start_upload(&r).await.unwrap().id;
    let opened = updated_at(id.clone()).await;
    tokio::time::sleep(Duration::from_millis(60)).await;

    lazy.upload_chunk(&r, &id, None, None, stream(b"abc"))
        .await
        .unwrap();
    assert_eq!(updated_at(id.clone()).await, opened, "kept alive 60 ms ago");
    let elsewhere = lazy
        .upload_chunk(&repo("keepalive/other"), &id, None, None, stream(b"x"))
        .await;
    assert!(
        unknown(elsewhere),
        "another repository's request is refused"
    );

    eager
        .upload_chunk(&r, &id, None, None, stream(b"def"))
        .await
        .unwrap();
    let moved = updated_at(id.clone()).await;
    assert!(moved > opened, "older than the keepalive: kept alive again");

    let digest = Digest::sha256_of(b"abcdef");
    lazy.finish_upload(&r, &id, &digest, None, stream(b""))
        .await
        .unwrap();
    assert_eq!(read_blob(&lazy, &r, &digest, None).await, b"abcdef");
    assert!(meta.upload(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn upload_range_and_session_checks() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir).await;
    let r = repo("ranges/app");
    let id = reg.start_upload(&r).await.unwrap().id;
    let range = |start, end| Some(berth_oci::ByteRange { start, end });
    reg.upload_chunk(&r, &id, range(0, 4), Some(5), stream(b"01234"))
        .await
        .unwrap();
    // (name, range, length, expected error, its code)
    type Case = (
        &'static str,
        Option<berth_oci::ByteRange>,
        Option<u64>,
        fn(&Error) -> bool,
        ErrorCode,
    );
    let cases: Vec<Case> = vec![
        (
            "gap",
            range(10, 14),
            Some(5),
            |e| matches!(e, Error::UploadRange { current: 5 }),
            ErrorCode::BlobUploadInvalid,
        ),
        (
            "overlap",
            range(0, 4),
            Some(5),
            |e| matches!(e, Error::UploadRange { current: 5 }),
            ErrorCode::BlobUploadInvalid,
        ),
        (
            "one byte back",
            range(4, 8),
            Some(5),
            |e| matches!(e, Error::UploadRange { current: 5 }),
            ErrorCode::BlobUploadInvalid,
        ),
        (
            "length disagrees with range",
            range(5, 9),
            Some(3),
            |e| matches!(e, Error::SizeInvalid(_)),
            ErrorCode::SizeInvalid,
        ),
    ];
    for (name, range, length, check, code) in cases {
        let err = reg
            .upload_chunk(&r, &id, range, length, stream(b"56789"))
            .await
            .unwrap_err();
        assert!(check(&err), "{name}: {err:?}");
        assert_eq!(err.code(), Some(code), "{name}");
        assert_eq!(
            reg.upload_status(&r, &id).await.unwrap().offset,
            5,
            "{name}"
        );
    }
    // A finish whose last chunk starts at the wrong offset is refused too.
    let d = Digest::sha256_of(b"0123456789");
    assert!(matches!(
        reg.finish_upload(&r, &id, &d, range(6, 10), stream(b"56789"))
            .await,
        Err(Error::UploadRange { current: 5 })
    ));
    reg.finish_upload(&r, &id, &d, range(5, 9), stream(b"56789"))
        .await
        .unwrap();
    assert_eq!(read_blob(&reg, &r, &d, None).await, b"0123456789");

    // Sessions are per repository and closed ones are gone.
    let other = reg.start_upload(&r).await.unwrap().id;
    assert!(unknown(
        reg.upload_status(&repo("ranges/else"), &other).await
    ));
    assert!(unknown(
        reg.upload_chunk(&repo("ranges/else"), &other, None, None, stream(b"x"))
            .await
    ));
    assert!(unknown(reg.upload_status(&r, &id).await));
    for bad in [
        "",
        "../../meta.db",
        "no such id",
        "00000000-0000-0000-0000-000000000000",
    ] {
        assert!(unknown(reg.upload_status(&r, bad).await), "{bad:?}");
    }
    reg.cancel_upload(&r, &other).await.unwrap();
    assert!(unknown(reg.upload_status(&r, &other).await));
    assert!(unknown(reg.cancel_upload(&r, &other).await));
    assert!(unknown(
        reg.finish_upload(&r, &other, &d, None, stream(b"")).await
    ));
    assert!(upload_files(&dir).is_empty(), "{:?}", upload_files(&dir));
}

// ---------------------------------------------------------------------------
// Concurrent chunks on one session
// ---------------------------------------------------------------------------

/// Two concurrent `upload_chunk` calls on one session: with `ranged`, each
/// claims to start at offset 0. The bytes of the two must never interleave:
/// either both land one after the other, or one is refused with UploadRange.
async fn check_concurrent_chunks(name: &str, ranged: [bool; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(&dir).await;
    let r = repo("concurrent/app");
    let id = reg.start_upload(&r).await.unwrap().id;
    let data: [Vec<u8>; 2] = [vec![b'a'; 4000], vec![b'b'; 3000]];
    let tasks: Vec<_> = (0..2)
        .map(|i| {
            let reg = reg.clone();
            let r = r.clone();
            let id = id.clone();
            let bytes = data[i].clone();
            let range = ranged[i].then(|| berth_oci::ByteRange {
                start: 0,
                end: bytes.len() as u64 - 1,
            });
            let len = ranged[i].then_some(bytes.len() as u64);
            tokio::spawn(async move {
                reg.upload_chunk(&r, &id, range, len, slow_stream(&bytes, 8))
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    // The order the chunks landed in, from the offsets they report.
    let expected: Vec<u8> = match (&results[0], &results[1]) {
        (Ok(a), Ok(b)) => {
            let (first, second) = if a.offset < b.offset { (0, 1) } else { (1, 0) };
            assert!(
                !ranged[second],
                "{name}: a chunk claiming offset 0 was appended at {}",
                data[first].len()
            );
            assert_eq!(
                results[first].as_ref().unwrap().offset,
                data[first].len() as u64,
                "{name}"
            );
            assert_eq!(
                results[second].as_ref().unwrap().offset,
                (data[0].len() + data[1].len()) as u64,
                "{name}"
            );
            [data[first].clone(), data[second].clone()].concat()
        }
        (Ok(a), Err(Error::UploadRange { current })) => {
            assert!(ranged[1], "{name}: an unranged chunk was refused");
            assert_eq!(*current, a.offset, "{name}");
            data[0].clone()
        }
        (Err(Error::UploadRange { current }), Ok(b)) => {
            assert!(ranged[0], "{name}: an unranged chunk was refused");
            assert_eq!(*current, b.offset, "{name}");
            data[1].clone()
        }
        (a, b) => panic!(
            "{name}: unexpected results {:?} / {:?}",
            a.as_ref().map_err(|e| e.to_string()),
            b.as_ref().map_err(|e| e.to_string())
        ),
    };
    assert_eq!(
        reg.upload_status(&r, &id).await.unwrap().offset,
        expected.len() as u64,
        "{name}"
    );
    let d = Digest::sha256_of(&expected);
    reg.finish_upload(&r, &id, &d, None, stream(b""))
        .await
        .unwrap_or_else(|e| panic!("{name}: stored bytes are not one chunk after the other: {e}"));
    assert_eq!(read_blob(&reg, &r, &d, None).await, expected, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_chunks_never_interleave() {
    let cases = [
        ("both streamed", [false, false]),
        ("both claim offset 0", [true, true]),
        ("first claims offset 0", [true, false]),
        ("second claims offset 0", [false, true]),
    ];
    for (name, ranged) in cases {
        for round in 0..3 {
            check_concurrent_chunks(&format!("{name} #{round}"), ranged).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------

const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn image_manifest(config: &[u8], layer: &[u8]) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": CONFIG_TYPE,
                "digest": Digest::sha256_of(config).to_string(),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": LAYER_TYPE,
                "digest": Digest::sha256_of(layer).to_string(),
                "size": layer.len(),
            }],
        }))
        .unwrap(),
    )
}

async fn put(
    reg: &Registry,
    r: &RepoName,
    reference: &str,
    body: Bytes,
) -> Result<ManifestPushed, Error> {
    reg.put_manifest(r, &self::reference(reference), Some(OCI_MANIFEST), body)
        .await
}

#[tokio::test]
async fn put_manifest_needs_blobs_linked_in_its_repository() {
    let config = b"{\"architecture\":\"amd64\"}".as_slice();
    let layer = b"layer bytes".as_slice();
    let body = image_manifest(config, layer);
    let cd = Digest::sha256_of(config);
    let ld = Digest::sha256_of(layer);
    // (name, blobs to link into the target first, expected missing field)
    type Missing<'a> = Option<(&'a str, &'a Digest)>;
    let cases: Vec<(&str, Vec<&Digest>, Missing)> = vec![
        ("nothing linked", vec![], Some(("config", &cd))),
        ("only the layer", vec![&ld], Some(("config", &cd))),
        ("only the config", vec![&cd], Some(("layers[0]", &ld))),
        ("both linked", vec![&cd, &ld], None),
    ];
    for (name, mounts, missing) in cases {
        let dir = tempfile::tempdir().unwrap();
        let reg = open(&dir).await;
        let source = repo("source/app");
        let target = repo("target/app");
        // The blobs exist in the registry, but only in `source`.
        reg.push_blob(&source, &cd, stream(config)).await.unwrap();
        reg.push_blob(&source, &ld, stream(layer)).await.unwrap();
        for d in mounts {
            assert!(matches!(
                reg.mount_blob(&target, d, Some(&source)).await.unwrap(),
                MountOutcome::Mounted
            ));
        }
        let result = put(&reg, &target, "v1", body.clone()).await;
        match (result, missing) {
            (Ok(pushed), None) => {
                assert_eq!(pushed.digest, Digest::sha256_of(&body), "{name}");
                assert_eq!(pushed.subject, None, "{name}");
                let got = reg
                    .get_manifest(&target, &reference("v1"), &[], true)
                    .await
                    .unwrap();
                assert_eq!(got.body, body, "{name}");
            }
            (Err(Error::ManifestBlobUnknown { field, digest }), Some((want_field, want))) => {
                assert_eq!(field, want_field, "{name}");
                assert_eq!(&digest, want, "{name}");
                assert!(
                    matches!(
                        reg.get_manifest(&target, &reference("v1"), &[], true).await,
                        Err(Error::ManifestUnknown(_))
                    ),
                    "{name}: nothing stored"
                );
                assert!(
                    matches!(
                        reg.tags(&target, None, None).await,
                        Err(Error::NameUnknown(_))
                    ) || reg
                        .tags(&target, None, None)
                        .await
                        .unwrap()
                        .items
                        .is_empty(),
                    "{name}: no tag"
                );
            }
            (got, want) => panic!(
                "{name}: got {:?}, want missing {want:?}",
                got.map(|p| p.digest)
            ),
        }
        // The source repository is unaffected either way.
        assert_eq!(read_blob(&reg, &source, &cd, None).await, config, "{name}");
    }
}

#[tokio::test]
async fn delete_manifest_by_tag_or_digest() {
    #[derive(Debug, Clone, Copy)]
    enum By {
        Tag(&'static str),
        Digest,
        UnknownTag,
        UnknownDigest,
    }
    // (deleted by, tags left afterwards, manifest still present, result ok)
    let cases = [
        (By::Tag("v1"), vec!["v2"], true, true),
        (By::Digest, vec![], false, true),
        (By::UnknownTag, vec!["v1", "v2"], true, false),
        (By::UnknownDigest, vec!["v1", "v2"], true, false),
    ];
    for (by, tags_left, present, ok) in cases {
        let dir = tempfile::tempdir().unwrap();
        let reg = open(&dir).await;
        let r = repo("delete/app");
        let (config, layer) = (b"{}".as_slice(), b"l".as_slice());
        reg.push_blob(&r, &Digest::sha256_of(config), stream(config))
            .await
            .unwrap();
        reg.push_blob(&r, &Digest::sha256_of(layer), stream(layer))
            .await
            .unwrap();
        let body = image_manifest(config, layer);
        let d = put(&reg, &r, "v1", body.clone()).await.unwrap().digest;
        put(&reg, &r, "v2", body.clone()).await.unwrap();
        let target = match by {
            By::Tag(t) => reference(t),
            By::Digest => Reference::Digest(d.clone()),
            By::UnknownTag => reference("nope"),
            By::UnknownDigest => Reference::Digest(Digest::sha256_of(b"nope")),
        };
        let result = reg.delete_manifest(&r, &target).await;
        assert_eq!(result.is_ok(), ok, "{by:?}: {result:?}");
        if let Err(e) = &result {
            assert!(matches!(e, Error::ManifestUnknown(_)), "{by:?}: {e:?}");
        }
        assert_eq!(
            reg.tags(&r, None, None).await.unwrap().items,
            tags_left,
            "{by:?}"
        );
        let by_digest = reg
            .get_manifest(&r, &Reference::Digest(d.clone()), &[], true)
            .await;
        assert_eq!(by_digest.is_ok(), present, "{by:?}");
        // Layers stay linked: deleting a manifest never deletes blobs.
        assert_eq!(
            read_blob(&reg, &r, &Digest::sha256_of(layer), None).await,
            layer
        );
    }
}

// ---------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------

/// The variant's name; the exhaustive match makes a new variant fail to
/// compile here until it has a row in `error_codes`.
fn variant(e: &Error) -> &'static str {
    match e {
        Error::NameUnknown(_) => "NameUnknown",
        Error::BlobUnknown(_) => "BlobUnknown",
        Error::UploadUnknown(_) => "UploadUnknown",
        Error::UploadRange { .. } => "UploadRange",
        Error::UploadInvalid(_) => "UploadInvalid",
        Error::DigestMismatch { .. } => "DigestMismatch",
        Error::DigestInvalid(_) => "DigestInvalid",
        Error::SizeInvalid(_) => "SizeInvalid",
        Error::ManifestUnknown(_) => "ManifestUnknown",
        Error::ManifestInvalid(_) => "ManifestInvalid",
        Error::ManifestBlobUnknown { .. } => "ManifestBlobUnknown",
        Error::ManifestTooLarge { .. } => "ManifestTooLarge",
        Error::RangeNotSatisfiable { .. } => "RangeNotSatisfiable",
        Error::Unsupported(_) => "Unsupported",
        Error::Unauthenticated { .. } => "Unauthenticated",
        Error::Denied(_) => "Denied",
        Error::TooManyRequests { .. } => "TooManyRequests",
        Error::NotFound(_) => "NotFound",
        Error::Conflict(_) => "Conflict",
        Error::Invalid(_) => "Invalid",
        Error::Storage(_) => "Storage",
        Error::Meta(_) => "Meta",
    }
}

#[test]
fn error_codes() {
    let d = Digest::sha256_of(b"x");
    let cases: Vec<(Error, Option<ErrorCode>)> = vec![
        (Error::NameUnknown("a".into()), Some(ErrorCode::NameUnknown)),
        (Error::BlobUnknown(d.clone()), Some(ErrorCode::BlobUnknown)),
        (
            Error::UploadUnknown("u".into()),
            Some(ErrorCode::BlobUploadUnknown),
        ),
        (
            Error::UploadRange { current: 3 },
            Some(ErrorCode::BlobUploadInvalid),
        ),
        (
            Error::UploadInvalid("x".into()),
            Some(ErrorCode::BlobUploadInvalid),
        ),
        (
            Error::DigestMismatch {
                expected: d.clone(),
                actual: Digest::sha256_of(b"y"),
            },
            Some(ErrorCode::DigestInvalid),
        ),
        (
            Error::DigestInvalid("x".into()),
            Some(ErrorCode::DigestInvalid),
        ),
        (Error::SizeInvalid("x".into()), Some(ErrorCode::SizeInvalid)),
        (
            Error::ManifestUnknown("v1".into()),
            Some(ErrorCode::ManifestUnknown),
        ),
        (
            Error::ManifestInvalid("x".into()),
            Some(ErrorCode::ManifestInvalid),
        ),
        (
            Error::ManifestBlobUnknown {
                field: "config".into(),
                digest: d.clone(),
            },
            Some(ErrorCode::ManifestBlobUnknown),
        ),
        (
            Error::ManifestTooLarge { size: 5, limit: 4 },
            Some(ErrorCode::ManifestInvalid),
        ),
        (
            Error::RangeNotSatisfiable { size: 10 },
            Some(ErrorCode::SizeInvalid),
        ),
        (Error::Unsupported("x".into()), Some(ErrorCode::Unsupported)),
        (
            Error::Unauthenticated {
                message: "authentication required".into(),
                problem: None,
            },
            Some(ErrorCode::Unauthorized),
        ),
        (Error::Denied("x".into()), Some(ErrorCode::Denied)),
        (
            Error::TooManyRequests {
                retry_after_secs: 7,
            },
            Some(ErrorCode::TooManyRequests),
        ),
        // Management outcomes: the HTTP layer gives them their own codes;
        // these are what a distribution client would see.
        (Error::NotFound("x".into()), Some(ErrorCode::NameUnknown)),
        (Error::Conflict("x".into()), Some(ErrorCode::Unsupported)),
        (Error::Invalid("x".into()), Some(ErrorCode::Unsupported)),
        // A client that went away mid-body is the client's problem...
        (
            Error::Storage(berth_storage::Error::Body(std::io::Error::other("reset"))),
            Some(ErrorCode::BlobUploadInvalid),
        ),
        // ...while store and database failures are internal (no code, 500).
        (Error::Storage(berth_storage::Error::NotFound), None),
        (
            Error::Storage(berth_storage::Error::OffsetMismatch { current: 1 }),
            None,
        ),
        (
            Error::Storage(berth_storage::Error::Io(std::io::Error::other("disk"))),
            None,
        ),
        (Error::Meta(berth_meta::Error::Corrupt("row".into())), None),
    ];
    let mut covered: Vec<&str> = Vec::new();
    for (err, want) in &cases {
        assert_eq!(err.code(), *want, "{err:?}");
        assert!(!err.to_string().is_empty(), "{err:?}");
        covered.push(variant(err));
    }
    covered.sort();
    covered.dedup();
    assert_eq!(covered.len(), 22, "every variant has a case: {covered:?}");
    // Messages carry what a client needs to act on.
    assert!(
        Error::UploadRange { current: 42 }
            .to_string()
            .contains("42"),
        "the offset to resume from"
    );
    assert!(
        Error::TooManyRequests {
            retry_after_secs: 7
        }
        .to_string()
        .contains('7'),
        "when to retry"
    );
    assert!(
        Error::ManifestBlobUnknown {
            field: "layers[3]".into(),
            digest: d.clone()
        }
        .to_string()
        .contains("layers[3]")
    );
}
