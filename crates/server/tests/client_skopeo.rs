//! skopeo (containers/image) against the real `berth` binary: copies between
//! an OCI image layout built by the test and the registry, byte for byte;
//! inspect, list-tags, conversion to Docker schema 2, an OCI image index with
//! `--all`, and delete by digest. Every registry access passes the admin's
//! `--creds`/`--src-creds`/`--dest-creds`, so skopeo goes through the
//! registry's token endpoint.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Berth, digest_of, http_get, require_tool, run, run_status, sha256_hex, unique};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// An OCI image layout being written by the test.
struct Layout {
    dir: PathBuf,
    index: Vec<serde_json::Value>,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        }
    }

    /// Stores a blob and returns its descriptor.
    fn blob(&self, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        std::fs::write(self.dir.join("blobs/sha256").join(sha256_hex(bytes)), bytes).unwrap();
        serde_json::json!({
            "mediaType": media_type,
            "digest": digest_of(bytes),
            "size": bytes.len(),
        })
    }

    /// Adds a tagged entry to index.json.
    fn tag(&mut self, mut desc: serde_json::Value, tag: &str) {
        desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(desc);
    }

    fn finish(&self) {
        let index = serde_json::json!({"schemaVersion": 2, "manifests": self.index});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// Tars `root` reproducibly with the `tar` command.
fn tar_dir(root: &Path) -> Vec<u8> {
    let out = root.with_extension("tar");
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(root)
        .arg("-cf")
        .arg(&out)
        .arg("."));
    std::fs::read(out).unwrap()
}

fn gzip(data: &[u8], scratch: &Path) -> Vec<u8> {
    let f = scratch.join(format!("{}.raw", unique("gz")));
    std::fs::write(&f, data).unwrap();
    let out = Command::new("gzip")
        .arg("-n")
        .arg("-c")
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

fn make_rootfs(base: &Path, name: &str, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let root = base.join(name);
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    tar_dir(&root)
}

/// One image: config + layers (each `(media type, bytes, uncompressed bytes)`).
fn add_image(
    layout: &Layout,
    arch: &str,
    layers: &[(&str, Vec<u8>, Vec<u8>)],
    manifest_annotations: serde_json::Value,
) -> (serde_json::Value, Vec<u8>) {
    let config = serde_json::json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/true"], "Labels": {"berth.test": "skopeo"}},
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|(_, _, raw)| digest_of(raw)).collect::<Vec<_>>(),
        },
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "berth test"})).collect::<Vec<_>>(),
    });
    let config_desc = layout.blob(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|(mt, bytes, _)| layout.blob(mt, bytes))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
        "annotations": manifest_annotations,
    });
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let mut desc = layout.blob(OCI_MANIFEST, &bytes);
    desc["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
    (desc, bytes)
}

/// All blobs of a layout, by file name.
fn layout_blobs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        m.insert(
            e.file_name().to_string_lossy().to_string(),
            std::fs::read(e.path()).unwrap(),
        );
    }
    m
}

fn layout_index(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

/// Byte equality with a readable failure message.
fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    assert!(
        actual == expected,
        "{what}: bytes differ\n  actual:   {}\n  expected: {}",
        String::from_utf8_lossy(actual),
        String::from_utf8_lossy(expected)
    );
}

fn skopeo(args: &[&str]) -> String {
    run(Command::new("skopeo").arg("--insecure-policy").args(args))
}

struct Fixture {
    server: Berth,
    work: tempfile::TempDir,
    src: PathBuf,
    /// manifest bytes of the tag "1.0" (gzip + plain tar layers)
    m1: Vec<u8>,
    /// manifest bytes of the tag "gz" (one gzip layer)
    mgz: Vec<u8>,
    /// index bytes of the tag "multi" (amd64 + arm64)
    index: Vec<u8>,
}

fn fixture() -> Fixture {
    require_tool("skopeo");
    require_tool("tar");
    require_tool("gzip");
    let server = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src-layout");
    let mut layout = Layout::new(&src);
    let scratch = work.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();

    let mut random = vec![0u8; 300 * 1024];
    rand::Rng::fill(&mut rand::rng(), &mut random[..]);
    let base = make_rootfs(
        &scratch,
        "base",
        &[
            ("etc/os-release", b"NAME=berth-test\n".to_vec()),
            ("data/random.bin", random),
            ("hello.txt", unique("hello ").into_bytes()),
        ],
    );
    let base_gz = gzip(&base, &scratch);
    let top = make_rootfs(
        &scratch,
        "top",
        &[("app/run.sh", b"#!/bin/sh\necho berth\n".to_vec())],
    );
    let (d1, m1) = add_image(
        &layout,
        "amd64",
        &[
            (OCI_LAYER_GZIP, base_gz.clone(), base.clone()),
            (OCI_LAYER_TAR, top.clone(), top.clone()),
        ],
        serde_json::json!({"org.opencontainers.image.description": "gzip + tar"}),
    );
    layout.tag(d1.clone(), "1.0");
    let (dgz, mgz) = add_image(
        &layout,
        "amd64",
        &[(OCI_LAYER_GZIP, base_gz.clone(), base.clone())],
        serde_json::json!({"org.opencontainers.image.description": "gzip only"}),
    );
    layout.tag(dgz, "gz");

    // An index: the "1.0" image for amd64 and another one for arm64.
    let arm = make_rootfs(&scratch, "arm", &[("arch", b"arm64\n".to_vec())]);
    let arm_gz = gzip(&arm, &scratch);
    let (darm, _) = add_image(
        &layout,
        "arm64",
        &[(OCI_LAYER_GZIP, arm_gz, arm)],
        serde_json::json!({}),
    );
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [d1, darm],
        "annotations": {"org.opencontainers.image.description": "two platforms"},
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let dindex = layout.blob(OCI_INDEX, &index_bytes);
    layout.tag(dindex, "multi");
    layout.finish();

    Fixture {
        server,
        work,
        src,
        m1,
        mgz,
        index: index_bytes,
    }
}

#[test]
fn skopeo_oci_layout_round_trip_is_byte_identical() {
    let f = fixture();
    let creds = common::admin_creds();
    let repo = format!("skopeo/{}", unique("img"));
    let dest = format!("docker://{}/{repo}", f.server.addr);
    let src = f.src.to_str().unwrap();

    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{src}:1.0"),
        &format!("{dest}:1.0"),
    ]);

    // The registry serves the manifest exactly as it was in the layout.
    let m = http_get(
        &format!("{}/v2/{repo}/manifests/1.0", f.server.url),
        OCI_MANIFEST,
    );
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(
        m.body, f.m1,
        "stored manifest bytes differ from the pushed ones"
    );
    assert_eq!(m.header("content-type"), OCI_MANIFEST);
    assert_eq!(m.header("docker-content-digest"), digest_of(&f.m1));

    // HEAD agrees with GET.
    let h = common::http(
        "HEAD",
        &format!("{}/v2/{repo}/manifests/1.0", f.server.url),
        &[("Accept", OCI_MANIFEST)],
        None,
    );
    assert_eq!(h.status, 200);
    assert_eq!(h.header("docker-content-digest"), digest_of(&f.m1));
    assert_eq!(h.header("content-length"), f.m1.len().to_string());

    // Back into a fresh layout: manifest and every blob byte-identical.
    let out = f.work.path().join("out-layout");
    let out_s = out.to_str().unwrap();
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("{dest}:1.0"),
        &format!("oci:{out_s}:1.0"),
    ]);
    let out_index = layout_index(&out);
    assert_eq!(
        out_index["manifests"][0]["digest"],
        digest_of(&f.m1).as_str()
    );
    let src_blobs = layout_blobs(&f.src);
    let out_blobs = layout_blobs(&out);
    assert_eq!(out_blobs.len(), 4, "manifest + config + 2 layers expected");
    for (name, bytes) in &out_blobs {
        let original = src_blobs
            .get(name)
            .unwrap_or_else(|| panic!("pulled blob {name} was never pushed"));
        assert!(
            original == bytes,
            "blob {name} differs after the round trip"
        );
        assert_eq!(sha256_hex(bytes), *name);
    }

    // inspect --raw is the manifest; inspect shows digest and layers.
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--raw",
        &format!("{dest}:1.0"),
    ]);
    assert_same(raw.as_bytes(), &f.m1, "inspect --raw vs pushed");
    let config_raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--config",
        "--raw",
        &format!("{dest}:1.0"),
    ]);
    let manifest: serde_json::Value = serde_json::from_slice(&f.m1).unwrap();
    assert_eq!(
        digest_of(config_raw.as_bytes()),
        manifest["config"]["digest"].as_str().unwrap()
    );
    let info: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("{dest}:1.0"),
    ]))
    .unwrap();
    assert_eq!(info["Digest"], digest_of(&f.m1).as_str());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Labels"]["berth.test"], "skopeo");
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(2));
    let mut tags: Vec<String> = serde_json::from_value(info["RepoTags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, vec!["1.0".to_string()]);

    // More tags (one is a copy registry -> registry), then list-tags.
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{src}:gz"),
        &format!("{dest}:gz"),
    ]);
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("{dest}:1.0"),
        &format!("{dest}:latest"),
    ]);
    let latest = http_get(
        &format!("{}/v2/{repo}/manifests/latest", f.server.url),
        OCI_MANIFEST,
    );
    assert_eq!(
        latest.body, f.m1,
        "registry-to-registry copy changed the manifest"
    );
    let listed: serde_json::Value = serde_json::from_str(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &creds,
        &dest,
    ]))
    .unwrap();
    let mut listed_tags: Vec<String> = serde_json::from_value(listed["Tags"].clone()).unwrap();
    listed_tags.sort();
    assert_eq!(listed_tags, vec!["1.0", "gz", "latest"]);
    assert_eq!(listed["Repository"], format!("{}/{repo}", f.server.addr));

    // The gzip-only image shares its base layer: a cross-check of its bytes.
    let gz = http_get(
        &format!("{}/v2/{repo}/manifests/gz", f.server.url),
        OCI_MANIFEST,
    );
    assert_same(&gz.body, &f.mgz, "gz manifest");

    // Moving a tag: `latest` now names the gzip-only image; the image it
    // named before stays reachable by digest and under `1.0`.
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{src}:gz"),
        &format!("{dest}:latest"),
    ]);
    let latest = http_get(
        &format!("{}/v2/{repo}/manifests/latest", f.server.url),
        OCI_MANIFEST,
    );
    assert_same(&latest.body, &f.mgz, "latest after the tag moved");
    let old = http_get(
        &format!("{}/v2/{repo}/manifests/{}", f.server.url, digest_of(&f.m1)),
        OCI_MANIFEST,
    );
    assert_eq!(old.status, 200, "{old:?}");
    assert_same(&old.body, &f.m1, "previous image by digest");
}

#[test]
fn skopeo_zstd_compressed_layers() {
    let f = fixture();
    let creds = common::admin_creds();
    let repo = format!("skopeo/{}", unique("zstd"));
    let dest = format!("docker://{}/{repo}", f.server.addr);
    let src = f.src.to_str().unwrap();

    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        "--dest-compress-format",
        "zstd",
        &format!("oci:{src}:gz"),
        &format!("{dest}:zstd"),
    ]);
    let m = http_get(
        &format!("{}/v2/{repo}/manifests/zstd", f.server.url),
        OCI_MANIFEST,
    );
    assert_eq!(m.status, 200, "{m:?}");
    let manifest = m.json();
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let d = layer["digest"].as_str().unwrap();
    let blob = http_get(&format!("{}/v2/{repo}/blobs/{d}", f.server.url), "*/*");
    assert_eq!(blob.status, 200, "{blob:?}");
    assert_eq!(digest_of(&blob.body), d);
    assert_eq!(blob.body.len() as u64, layer["size"].as_u64().unwrap());
    assert_eq!(
        &blob.body[..4],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "not a zstd frame"
    );

    // Pulled back unchanged.
    let out = f.work.path().join("out-zstd");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("{dest}:zstd"),
        &format!("oci:{}:zstd", out.to_str().unwrap()),
    ]);
    assert_eq!(
        layout_index(&out)["manifests"][0]["digest"],
        digest_of(&m.body).as_str()
    );
    let pulled = std::fs::read(
        out.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_same(&pulled, &blob.body, "zstd layer");
}

#[test]
fn skopeo_converts_to_docker_schema2_and_deletes_by_digest() {
    let f = fixture();
    let creds = common::admin_creds();
    let repo = format!("skopeo/{}", unique("v2s2"));
    let dest = format!("docker://{}/{repo}", f.server.addr);
    let src = f.src.to_str().unwrap();

    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        "--format",
        "v2s2",
        &format!("oci:{src}:gz"),
        &format!("{dest}:v2s2"),
    ]);
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{src}:1.0"),
        &format!("{dest}:keep"),
    ]);

    let m = http_get(
        &format!("{}/v2/{repo}/manifests/v2s2", f.server.url),
        DOCKER_V2,
    );
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(m.header("content-type"), DOCKER_V2);
    let v2 = m.json();
    let v2_digest = digest_of(&m.body);
    assert_eq!(m.header("docker-content-digest"), v2_digest);
    assert_eq!(v2["mediaType"], DOCKER_V2);
    assert_eq!(v2["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(v2["layers"][0]["mediaType"], DOCKER_LAYER_GZIP);
    // The conversion keeps the config and the (already gzip) layer blobs.
    let oci: serde_json::Value = serde_json::from_slice(&f.mgz).unwrap();
    assert_eq!(v2["config"]["digest"], oci["config"]["digest"]);
    assert_eq!(v2["layers"][0]["digest"], oci["layers"][0]["digest"]);

    // Pull the schema 2 image into a `dir:` and compare everything.
    let out = f.work.path().join("out-dir");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("{dest}:v2s2"),
        &format!("dir:{}", out.to_str().unwrap()),
    ]);
    assert_same(
        &std::fs::read(out.join("manifest.json")).unwrap(),
        &m.body,
        "dir: manifest vs registry",
    );
    for d in [&v2["config"]["digest"], &v2["layers"][0]["digest"]] {
        let d = d.as_str().unwrap();
        let hex = d.trim_start_matches("sha256:");
        let pulled = std::fs::read(out.join(hex)).unwrap();
        let original = std::fs::read(f.src.join("blobs/sha256").join(hex)).unwrap();
        assert!(pulled == original, "blob {d} differs");
    }

    // Delete by digest; the manifest and its tag are gone, the other stays.
    skopeo(&[
        "delete",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{}/{repo}@{v2_digest}", f.server.addr),
    ]);
    let by_digest = http_get(
        &format!("{}/v2/{repo}/manifests/{v2_digest}", f.server.url),
        DOCKER_V2,
    );
    assert_eq!(
        by_digest.status, 404,
        "deleted manifest still served: {by_digest:?}"
    );
    assert_eq!(by_digest.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    let by_tag = http_get(
        &format!("{}/v2/{repo}/manifests/v2s2", f.server.url),
        DOCKER_V2,
    );
    assert_eq!(
        by_tag.status, 404,
        "tag of a deleted manifest still resolves: {by_tag:?}"
    );
    let gone = run_status(Command::new("skopeo").args([
        "--insecure-policy",
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--raw",
        &format!("{dest}:v2s2"),
    ]));
    assert!(
        !gone.status.success(),
        "skopeo still finds the deleted image"
    );
    let listed: serde_json::Value = serde_json::from_str(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &creds,
        &dest,
    ]))
    .unwrap();
    assert_eq!(listed["Tags"], serde_json::json!(["keep"]));
    let keep = http_get(
        &format!("{}/v2/{repo}/manifests/keep", f.server.url),
        OCI_MANIFEST,
    );
    assert_eq!(keep.status, 200);
    assert_same(&keep.body, &f.m1, "kept manifest");
    // Its blobs are still readable in the repository.
    let shared_layer = oci["layers"][0]["digest"].as_str().unwrap();
    let blob = http_get(
        &format!("{}/v2/{repo}/blobs/{shared_layer}", f.server.url),
        "*/*",
    );
    assert_eq!(blob.status, 200);
    assert_eq!(digest_of(&blob.body), shared_layer);

    // A second delete of the same digest is a 404 as well.
    let again = run_status(Command::new("skopeo").args([
        "--insecure-policy",
        "delete",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{}/{repo}@{v2_digest}", f.server.addr),
    ]));
    assert!(!again.status.success(), "deleting twice succeeded");
}

#[test]
fn skopeo_copy_all_oci_index() {
    let f = fixture();
    let creds = common::admin_creds();
    let repo = format!("skopeo/{}", unique("index"));
    let dest = format!("docker://{}/{repo}", f.server.addr);
    let src = f.src.to_str().unwrap();

    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{src}:multi"),
        &format!("{dest}:multi"),
    ]);
    let m = http_get(
        &format!("{}/v2/{repo}/manifests/multi", f.server.url),
        OCI_INDEX,
    );
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(m.header("content-type"), OCI_INDEX);
    assert_same(&m.body, &f.index, "stored index vs pushed");
    let index: serde_json::Value = serde_json::from_slice(&f.index).unwrap();
    for child in index["manifests"].as_array().unwrap() {
        let d = child["digest"].as_str().unwrap();
        let c = http_get(
            &format!("{}/v2/{repo}/manifests/{d}", f.server.url),
            OCI_MANIFEST,
        );
        assert_eq!(c.status, 200, "child {d}: {c:?}");
        assert_eq!(digest_of(&c.body), d);
    }

    // Back with --all: index, both manifests and all their blobs identical.
    let out = f.work.path().join("out-index");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("{dest}:multi"),
        &format!("oci:{}:multi", out.to_str().unwrap()),
    ]);
    let out_index = layout_index(&out);
    assert_eq!(
        out_index["manifests"][0]["digest"],
        digest_of(&f.index).as_str()
    );
    let src_blobs = layout_blobs(&f.src);
    let out_blobs = layout_blobs(&out);
    // index + 2 manifests + 2 configs + (2 + 1) layers
    assert_eq!(
        out_blobs.len(),
        8,
        "{:?}",
        out_blobs.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &out_blobs {
        assert!(
            src_blobs.get(name) == Some(bytes),
            "blob {name} differs or was never pushed"
        );
    }

    // Without --all, skopeo picks the platform it is told to.
    let single = f.work.path().join("out-arm");
    skopeo(&[
        "--override-arch",
        "arm64",
        "copy",
        "--dest-oci-accept-uncompressed-layers",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("{dest}:multi"),
        &format!("oci:{}:arm", single.to_str().unwrap()),
    ]);
    let arm_index = layout_index(&single);
    assert_eq!(
        arm_index["manifests"][0]["digest"],
        index["manifests"][1]["digest"]
    );
}
