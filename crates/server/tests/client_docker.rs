//! The real Docker client and engine against the real `berth` binary,
//! logged in with `docker login` (so the engine uses the token endpoint):
//! push, pull, digests and content of a single-platform image, and a
//! multi-platform manifest list made with `docker manifest`.
//!
//! Needs a running Docker engine (dockerd treats 127.0.0.0/8 as an insecure
//! registry by default, so plain HTTP on loopback works) and `tar`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Berth, DockerCli, http_get, require_tool, run, run_status, unique};

const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Runs docker commands with a private client config directory (so logins
/// and manifest lists made by `docker manifest create` do not leak between
/// tests) and removes every local image it tagged when dropped.
struct Docker {
    cli: DockerCli,
    images: Vec<String>,
    containers: Vec<String>,
}

impl Docker {
    fn new() -> Docker {
        let bin = require_tool("docker");
        require_tool("tar");
        let d = Docker {
            cli: DockerCli::new(&bin),
            images: Vec::new(),
            containers: Vec::new(),
        };
        let out = run_status(&mut d.cmd(&["info", "--format", "{{.ServerVersion}}"]));
        assert!(
            out.status.success(),
            "the Docker engine is not reachable (is dockerd running?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    }

    fn cmd(&self, args: &[&str]) -> Command {
        self.cli.cmd(args)
    }

    fn run(&self, args: &[&str]) -> String {
        run(&mut self.cmd(args))
    }

    /// Remembers a local image reference to remove at the end.
    fn track(&mut self, image: &str) {
        self.images.push(image.to_string());
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.cmd(&["rm", "-f", c]).output();
        }
        for i in &self.images {
            let _ = self.cmd(&["rmi", "-f", i]).output();
        }
    }
}

/// Writes a small root filesystem with unique content and tars it with the
/// `tar` command. Returns (tar path, content of /hello.txt).
fn make_rootfs_tar(dir: &Path, label: &str) -> (PathBuf, String) {
    let root = dir.join(format!("rootfs-{label}"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    let hello = format!("hello from berth {label} {}\n", unique("c"));
    std::fs::write(root.join("hello.txt"), &hello).unwrap();
    std::fs::write(root.join("etc/berth-test"), format!("label={label}\n")).unwrap();
    let blob: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(root.join("data/blob.bin"), blob).unwrap();
    let tar = dir.join(format!("rootfs-{label}.tar"));
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    (tar, hello)
}

/// Builds a `docker load` archive holding one image for the given
/// architecture (daemon 20.10 ignores `docker import --platform` without
/// experimental mode, so a foreign-architecture image is loaded instead).
fn make_load_archive(dir: &Path, layer_tar: &Path, arch: &str, repo_tag: &str) -> PathBuf {
    let root = dir.join(format!("load-{arch}"));
    std::fs::create_dir_all(root.join("layer")).unwrap();
    let layer = std::fs::read(layer_tar).unwrap();
    std::fs::write(root.join("layer/layer.tar"), &layer).unwrap();
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [common::digest_of(&layer)]},
        "history": [{"created_by": format!("berth client_docker test ({arch})")}],
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", common::sha256_hex(&config));
    std::fs::write(root.join(&config_name), &config).unwrap();
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [repo_tag],
        "Layers": ["layer/layer.tar"],
    }]);
    std::fs::write(
        root.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let archive = dir.join(format!("load-{arch}.tar"));
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    archive
}

/// The `digest: sha256:… size: N` line that `docker push` prints.
fn pushed_digest(push_output: &str) -> String {
    push_output
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("digest: ")?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{push_output}"))
}

fn assert_sha256_digest(d: &str) {
    assert!(
        d.len() == 71 && d.starts_with("sha256:"),
        "not a sha256 digest: {d:?}"
    );
}

#[test]
fn docker_push_rmi_pull_round_trip() {
    let server = Berth::start();
    let mut docker = Docker::new();
    let work = tempfile::tempdir().unwrap();
    let repo = format!("team/{}", unique("app"));
    let image = format!("{}/{repo}:1.0", server.addr);

    let (tar, hello) = make_rootfs_tar(work.path(), "single");
    let tar_s = tar.to_str().unwrap();
    docker.track(&image);
    docker.run(&["import", "--change", "CMD [\"/hello\"]", tar_s, &image]);
    let local_id = docker
        .run(&["image", "inspect", "--format", "{{.Id}}", &image])
        .trim()
        .to_string();

    // Without a login the registry refuses the push.
    let anonymous = run_status(&mut docker.cmd(&["push", &image]));
    assert!(
        !anonymous.status.success(),
        "an anonymous docker push was accepted: {anonymous:?}"
    );
    let refusal = String::from_utf8_lossy(&anonymous.stderr).to_lowercase();
    assert!(
        refusal.contains("denied")
            || refusal.contains("unauthorized")
            || refusal.contains("no basic auth credentials"),
        "{refusal}"
    );

    docker.cli.login(&server.addr);
    let push = docker.run(&["push", &image]);
    let digest = pushed_digest(&push);
    assert_sha256_digest(&digest);

    // What the registry now serves under the tag is exactly what docker pushed.
    let m = http_get(
        &format!("{}/v2/{repo}/manifests/1.0", server.url),
        DOCKER_V2,
    );
    assert_eq!(m.status, 200, "GET manifest by tag: {m:?}");
    assert_eq!(m.header("docker-content-digest"), digest);
    assert_eq!(common::digest_of(&m.body), digest);
    assert_eq!(m.header("content-type"), DOCKER_V2);
    let manifest = m.json();
    assert_eq!(manifest["mediaType"], DOCKER_V2);
    // The config blob is the local image id.
    assert_eq!(manifest["config"]["digest"], local_id.as_str());
    let cfg = http_get(&format!("{}/v2/{repo}/blobs/{local_id}", server.url), "*/*");
    assert_eq!(cfg.status, 200, "GET config blob: {cfg:?}");
    assert_eq!(common::digest_of(&cfg.body), local_id);

    // Tags list.
    let tags = http_get(&format!("{}/v2/{repo}/tags/list", server.url), "*/*");
    assert_eq!(tags.status, 200);
    assert_eq!(
        tags.json(),
        serde_json::json!({"name": repo, "tags": ["1.0"]})
    );

    // Forget the image locally, then pull it back from berth.
    docker.run(&["rmi", &image]);
    let gone = run_status(&mut docker.cmd(&["image", "inspect", &image]));
    assert!(!gone.status.success(), "image still present after rmi");

    let pull = docker.run(&["pull", &image]);
    assert!(
        pull.contains(&format!("Digest: {digest}")),
        "docker pull reported another digest than the push ({digest}):\n{pull}"
    );
    let repo_digests = docker.run(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]);
    let repo_digests: Vec<String> = serde_json::from_str(repo_digests.trim()).unwrap();
    assert_eq!(
        repo_digests,
        vec![format!("{}/{repo}@{digest}", server.addr)]
    );
    let pulled_id = docker
        .run(&["image", "inspect", "--format", "{{.Id}}", &image])
        .trim()
        .to_string();
    assert_eq!(
        pulled_id, local_id,
        "pulled image id differs from pushed one"
    );

    // Content: copy a file out of a (never started) container.
    let ctr = docker.run(&["create", &image]).trim().to_string();
    docker.containers.push(ctr.clone());
    let out = work.path().join("hello-out.txt");
    docker.run(&["cp", &format!("{ctr}:/hello.txt"), out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), hello);
    let out2 = work.path().join("blob-out.bin");
    docker.run(&[
        "cp",
        &format!("{ctr}:/data/blob.bin"),
        out2.to_str().unwrap(),
    ]);
    let expected: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    assert_eq!(std::fs::read(&out2).unwrap(), expected);

    // Pull by digest works as well and names the same image.
    let by_digest = format!("{}/{repo}@{digest}", server.addr);
    docker.track(&by_digest);
    docker.run(&["pull", &by_digest]);
    let id_by_digest = docker
        .run(&["image", "inspect", "--format", "{{.Id}}", &by_digest])
        .trim()
        .to_string();
    assert_eq!(id_by_digest, local_id);

    // A second push of the same image under another tag reuses every blob.
    let image2 = format!("{}/{repo}:1.0-again", server.addr);
    docker.track(&image2);
    docker.run(&["tag", &image, &image2]);
    let push2 = docker.run(&["push", &image2]);
    assert_eq!(pushed_digest(&push2), digest);
    assert!(
        push2.contains("Layer already exists"),
        "second push uploaded the layer again:\n{push2}"
    );

    // Pushing to another repository of the same registry: docker asks for a
    // cross-repository mount (POST …/blobs/uploads/?mount=…&from=…).
    let repo3 = format!("team/{}", unique("other"));
    let image3 = format!("{}/{repo3}:1", server.addr);
    docker.track(&image3);
    docker.run(&["tag", &image, &image3]);
    let push3 = docker.run(&["push", &image3]);
    assert_eq!(pushed_digest(&push3), digest);
    assert!(
        push3.contains(&format!("Mounted from {repo}")),
        "push to a second repository did not mount the layer from {repo}:\n{push3}"
    );
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let mounted = http_get(&format!("{}/v2/{repo3}/blobs/{layer}", server.url), "*/*");
    assert_eq!(mounted.status, 200, "mounted layer not readable in {repo3}");
    assert_eq!(common::digest_of(&mounted.body), layer);
    docker.run(&["rmi", &image3]);
    docker.run(&["pull", &image3]);
    assert_eq!(
        docker
            .run(&["image", "inspect", "--format", "{{.Id}}", &image3])
            .trim(),
        local_id
    );

    // Logged out, the private repository cannot be pulled any more.
    docker.cli.logout(&server.addr);
    docker.run(&["rmi", &image3]);
    let anonymous = run_status(&mut docker.cmd(&["pull", &image3]));
    assert!(
        !anonymous.status.success(),
        "an anonymous docker pull of a private repository succeeded: {anonymous:?}"
    );
}

#[test]
fn docker_manifest_list_multi_platform() {
    let server = Berth::start();
    let mut docker = Docker::new();
    docker.cli.login(&server.addr);
    let work = tempfile::tempdir().unwrap();
    let repo = format!("team/{}", unique("multi"));
    let amd = format!("{}/{repo}:amd64", server.addr);
    let arm = format!("{}/{repo}:arm64", server.addr);
    let list = format!("{}/{repo}:1", server.addr);

    // amd64 image with `docker import`, arm64 image with `docker load`.
    let (amd_tar, _) = make_rootfs_tar(work.path(), "amd64");
    docker.track(&amd);
    docker.run(&[
        "import",
        "--platform",
        "linux/amd64",
        amd_tar.to_str().unwrap(),
        &amd,
    ]);
    let (arm_tar, arm_hello) = make_rootfs_tar(work.path(), "arm64");
    let archive = make_load_archive(work.path(), &arm_tar, "arm64", &arm);
    docker.track(&arm);
    docker.run(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(
        docker
            .run(&[
                "image",
                "inspect",
                "--format",
                "{{.Os}}/{{.Architecture}}",
                &arm
            ])
            .trim(),
        "linux/arm64"
    );
    let arm_id = docker
        .run(&["image", "inspect", "--format", "{{.Id}}", &arm])
        .trim()
        .to_string();

    let amd_digest = pushed_digest(&docker.run(&["push", &amd]));
    let arm_digest = pushed_digest(&docker.run(&["push", &arm]));
    assert_ne!(amd_digest, arm_digest);

    docker.run(&["manifest", "create", "--insecure", &list, &amd, &arm]);
    let push = docker.run(&["manifest", "push", "--insecure", &list]);
    // `docker manifest push` prints the digest of the list on its last line.
    let list_digest = push
        .split_whitespace()
        .rev()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in `docker manifest push` output:\n{push}"))
        .to_string();
    assert_sha256_digest(&list_digest);

    let resp = http_get(
        &format!("{}/v2/{repo}/manifests/1", server.url),
        &format!("{DOCKER_LIST}, {OCI_INDEX}"),
    );
    assert_eq!(resp.status, 200, "GET manifest list: {resp:?}");
    assert_eq!(resp.header("content-type"), DOCKER_LIST);
    assert_eq!(resp.header("docker-content-digest"), list_digest);
    assert_eq!(common::digest_of(&resp.body), list_digest);
    let index = resp.json();
    assert_eq!(index["mediaType"], DOCKER_LIST);
    let entries = index["manifests"].as_array().expect("manifests array");
    assert_eq!(entries.len(), 2, "{index}");
    let mut platforms: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["platform"]["os"].as_str().unwrap_or("").to_string(),
                e["platform"]["architecture"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                e["digest"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(
        platforms,
        vec![
            ("linux".into(), "amd64".into(), amd_digest.clone()),
            ("linux".into(), "arm64".into(), arm_digest.clone()),
        ]
    );
    // Each child is retrievable by digest from the list's repository.
    for (_, _, d) in &platforms {
        let child = http_get(
            &format!("{}/v2/{repo}/manifests/{d}", server.url),
            DOCKER_V2,
        );
        assert_eq!(child.status, 200, "GET child {d}: {child:?}");
        assert_eq!(common::digest_of(&child.body), *d);
    }
    // Pull the arm64 variant through the list.
    docker.run(&["rmi", &arm]);
    docker.track(&list);
    let pull = docker.run(&["pull", "--platform", "linux/arm64", &list]);
    assert!(
        pull.contains(&format!("Digest: {list_digest}")),
        "docker pull did not resolve the list digest {list_digest}:\n{pull}"
    );
    assert_eq!(
        docker
            .run(&[
                "image",
                "inspect",
                "--format",
                "{{.Os}}/{{.Architecture}}",
                &list
            ])
            .trim(),
        "linux/arm64"
    );
    assert_eq!(
        docker
            .run(&["image", "inspect", "--format", "{{.Id}}", &list])
            .trim(),
        arm_id
    );
    let ctr = docker.run(&["create", &list, "/hello"]).trim().to_string();
    docker.containers.push(ctr.clone());
    let out = work.path().join("arm-hello.txt");
    docker.run(&["cp", &format!("{ctr}:/hello.txt"), out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), arm_hello);

    // `docker manifest inspect` reads the list back through the registry API.
    let inspect = docker.run(&["manifest", "inspect", "--insecure", &list]);
    let inspected: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspected["manifests"].as_array().map(Vec::len), Some(2));
    let _ = docker.cmd(&["manifest", "rm", &list]).output();
    docker.cli.logout(&server.addr);
}
