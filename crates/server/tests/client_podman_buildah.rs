//! buildah and podman against the real `berth` binary. Every tool instance
//! gets its own storage (vfs driver, `--root`/`--runroot` in a temp dir), so
//! a pull really goes through the registry and tests do not collide. Each
//! push and pull passes `--creds` (the admin), so the tools go through the
//! registry's token endpoint.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Berth, digest_of, http_get, require_tool, run, unique};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// One containers/storage store used by buildah or podman.
struct Store {
    tool: &'static str,
    dir: PathBuf,
}

impl Store {
    fn new(tool: &'static str, base: &Path) -> Store {
        require_tool(tool);
        let dir = base.join(unique(tool));
        for sub in ["root", "run", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Store { tool, dir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.tool);
        c.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--storage-driver")
            .arg("vfs");
        if self.tool == "podman" {
            c.arg("--tmpdir")
                .arg(self.dir.join("tmp"))
                .arg("--events-backend")
                .arg("file")
                .arg("--cgroup-manager")
                .arg("cgroupfs");
        }
        c.env("TMPDIR", self.dir.join("tmp")).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        run(&mut self.cmd(args))
    }

    fn digest_file(&self) -> PathBuf {
        self.dir.join(format!("{}.digest", unique("d")))
    }

    /// The image id (config digest without the `sha256:` prefix).
    fn image_id(&self, image: &str) -> String {
        let format = if self.tool == "podman" {
            "{{.Id}}"
        } else {
            "{{.FromImageID}}"
        };
        self.run(&["inspect", "--format", format, image])
            .trim()
            .trim_start_matches("sha256:")
            .to_string()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Everything lives under `dir` (vfs has no mounts); the tools keep no
        // global state outside it. Remove containers first for buildah.
        if self.tool == "buildah" {
            let _ = self.cmd(&["rm", "--all"]).output();
        }
        let _ = self.cmd(&["rmi", "--all", "--force"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_digest(path: &Path) -> String {
    let d = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("digest file {}: {e}", path.display()))
        .trim()
        .to_string();
    assert!(
        d.starts_with("sha256:") && d.len() == 71,
        "bad digest {d:?}"
    );
    d
}

#[test]
fn buildah_push_podman_pull_and_push_formats() {
    let server = Berth::start();
    let creds = common::admin_creds();
    let work = tempfile::tempdir().unwrap();
    let buildah = Store::new("buildah", work.path());
    let repo = format!("team/{}", unique("bb"));
    let reg = format!("{}/{repo}", server.addr);

    // buildah: from scratch, one file, commit, push.
    let hello = format!("built by buildah {}\n", unique("x"));
    let file = work.path().join("hello.txt");
    std::fs::write(&file, &hello).unwrap();
    let ctr = buildah.run(&["from", "scratch"]).trim().to_string();
    buildah.run(&["copy", &ctr, file.to_str().unwrap(), "/hello.txt"]);
    buildah.run(&[
        "config",
        "--cmd",
        "/hello",
        "--label",
        "org.berth.test=buildah",
        &ctr,
    ]);
    let local = format!("localhost/{}:1", unique("bb"));
    let built_id = buildah
        .run(&["commit", "--format", "oci", &ctr, &local])
        .trim()
        .to_string();
    buildah.run(&["rm", &ctr]);
    let df = buildah.digest_file();
    buildah.run(&[
        "push",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--digestfile",
        df.to_str().unwrap(),
        &local,
        &format!("docker://{reg}:1"),
    ]);
    let pushed = read_digest(&df);

    let m = http_get(
        &format!("{}/v2/{repo}/manifests/1", server.url),
        OCI_MANIFEST,
    );
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(digest_of(&m.body), pushed);
    assert_eq!(m.header("docker-content-digest"), pushed);
    assert_eq!(m.header("content-type"), OCI_MANIFEST);
    let manifest = m.json();
    assert_eq!(
        manifest["config"]["digest"],
        format!("sha256:{built_id}").as_str()
    );

    // podman, in its own store: pull, compare, look inside.
    let podman = Store::new("podman", work.path());
    podman.run(&[
        "pull",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{reg}:1"),
    ]);
    let image = format!("{reg}:1");
    assert_eq!(podman.image_id(&image), built_id);
    assert_eq!(
        podman
            .run(&["image", "inspect", "--format", "{{.Digest}}", &image])
            .trim(),
        pushed
    );
    assert_eq!(
        podman
            .run(&[
                "image",
                "inspect",
                "--format",
                "{{index .Labels \"org.berth.test\"}}",
                &image
            ])
            .trim(),
        "buildah"
    );
    let mnt = podman.run(&["image", "mount", &image]).trim().to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&mnt).join("hello.txt")).unwrap(),
        hello
    );
    podman.run(&["image", "unmount", &image]);

    // podman push under another tag as Docker schema 2 and as OCI.
    let df2 = podman.digest_file();
    podman.run(&[
        "push",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--format",
        "v2s2",
        "--digestfile",
        df2.to_str().unwrap(),
        &image,
        &format!("docker://{reg}:2-v2s2"),
    ]);
    let v2s2 = read_digest(&df2);
    let m2 = http_get(
        &format!("{}/v2/{repo}/manifests/2-v2s2", server.url),
        DOCKER_V2,
    );
    assert_eq!(m2.status, 200, "{m2:?}");
    assert_eq!(m2.header("content-type"), DOCKER_V2);
    assert_eq!(digest_of(&m2.body), v2s2);
    assert_eq!(m2.json()["mediaType"], DOCKER_V2);
    assert_ne!(v2s2, pushed);

    let df3 = podman.digest_file();
    podman.run(&[
        "push",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--format",
        "oci",
        "--digestfile",
        df3.to_str().unwrap(),
        &image,
        &format!("docker://{reg}:3-oci"),
    ]);
    let oci_digest = read_digest(&df3);
    let m3 = http_get(
        &format!("{}/v2/{repo}/manifests/3-oci", server.url),
        OCI_MANIFEST,
    );
    assert_eq!(m3.status, 200, "{m3:?}");
    assert_eq!(digest_of(&m3.body), oci_digest);

    let tags = http_get(&format!("{}/v2/{repo}/tags/list", server.url), "*/*");
    let mut tags: Vec<String> = serde_json::from_value(tags.json()["tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, vec!["1", "2-v2s2", "3-oci"]);

    // A third, empty store pulls the schema 2 tag: same image id.
    let podman2 = Store::new("podman", work.path());
    podman2.run(&[
        "pull",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{reg}:2-v2s2"),
    ]);
    let image2 = format!("{reg}:2-v2s2");
    assert_eq!(podman2.image_id(&image2), built_id);
    assert_eq!(
        podman2
            .run(&["image", "inspect", "--format", "{{.Digest}}", &image2])
            .trim(),
        v2s2
    );
    let mnt = podman2.run(&["image", "mount", &image2]).trim().to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&mnt).join("hello.txt")).unwrap(),
        hello
    );
    podman2.run(&["image", "unmount", &image2]);

    // And by digest.
    podman2.run(&[
        "pull",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{reg}@{pushed}"),
    ]);
    assert_eq!(podman2.image_id(&format!("{reg}@{pushed}")), built_id);
}

#[test]
fn podman_import_push_manifest_without_media_type() {
    let server = Berth::start();
    let creds = common::admin_creds();
    let work = tempfile::tempdir().unwrap();
    require_tool("tar");
    let podman = Store::new("podman", work.path());
    let repo = format!("team/{}", unique("imported"));
    let reg = format!("{}/{repo}", server.addr);

    let root = work.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let marker = format!("imported {}\n", unique("m"));
    std::fs::write(root.join("etc/marker"), &marker).unwrap();
    let tarball = work.path().join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));

    let local = format!("localhost/{}:1", unique("imp"));
    let imported = podman
        .run(&["import", tarball.to_str().unwrap(), &local])
        .trim()
        .trim_start_matches("sha256:")
        .to_string();
    assert_eq!(podman.image_id(&local), imported);

    let df = podman.digest_file();
    podman.run(&[
        "push",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--digestfile",
        df.to_str().unwrap(),
        &local,
        &format!("docker://{reg}:1"),
    ]);
    let pushed = read_digest(&df);

    // containers/image writes this OCI manifest without a `mediaType` field;
    // the registry has to take the type from the PUT's Content-Type.
    let m = http_get(
        &format!("{}/v2/{repo}/manifests/1", server.url),
        OCI_MANIFEST,
    );
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(digest_of(&m.body), pushed);
    assert_eq!(m.header("content-type"), OCI_MANIFEST);
    let manifest = m.json();
    assert!(
        manifest.get("mediaType").is_none(),
        "expected the podman-import manifest to have no mediaType: {manifest}"
    );
    assert_eq!(
        manifest["config"]["digest"],
        format!("sha256:{imported}").as_str()
    );

    // Pull it into a fresh store: same id, same file.
    let other = Store::new("podman", work.path());
    other.run(&[
        "pull",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{reg}:1"),
    ]);
    let image = format!("{reg}:1");
    assert_eq!(other.image_id(&image), imported);
    assert_eq!(
        other
            .run(&["image", "inspect", "--format", "{{.Digest}}", &image])
            .trim(),
        pushed
    );
    let mnt = other.run(&["image", "mount", &image]).trim().to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&mnt).join("etc/marker")).unwrap(),
        marker
    );
    other.run(&["image", "unmount", &image]);
}

#[test]
fn podman_manifest_list_push_all_and_pull_by_arch() {
    let server = Berth::start();
    let creds = common::admin_creds();
    let work = tempfile::tempdir().unwrap();
    require_tool("tar");
    let podman = Store::new("podman", work.path());
    let repo = format!("team/{}", unique("list"));
    let reg = format!("{}/{repo}", server.addr);

    // Two single-platform images, made locally with `podman import --arch`.
    let mut ids = Vec::new();
    for arch in ["amd64", "arm64"] {
        let root = work.path().join(format!("rootfs-{arch}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("arch"), format!("{arch} {}\n", unique("a"))).unwrap();
        let tarball = work.path().join(format!("{arch}.tar"));
        run(Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tarball)
            .arg("."));
        let local = format!("localhost/{}:{arch}", unique("plat"));
        let id = podman
            .run(&[
                "import",
                "--os",
                "linux",
                "--arch",
                arch,
                tarball.to_str().unwrap(),
                &local,
            ])
            .trim()
            .trim_start_matches("sha256:")
            .to_string();
        ids.push((arch, id, local));
    }

    let list = format!("localhost/{}:1", unique("ml"));
    podman.run(&["manifest", "create", &list]);
    for (_, _, local) in &ids {
        podman.run(&[
            "manifest",
            "add",
            &list,
            &format!("containers-storage:{local}"),
        ]);
    }
    let df = podman.digest_file();
    podman.run(&[
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--digestfile",
        df.to_str().unwrap(),
        &list,
        &format!("docker://{reg}:multi"),
    ]);
    let list_digest = read_digest(&df);

    let accept = "application/vnd.oci.image.index.v1+json, \
                  application/vnd.docker.distribution.manifest.list.v2+json";
    let m = http_get(&format!("{}/v2/{repo}/manifests/multi", server.url), accept);
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(digest_of(&m.body), list_digest);
    assert_eq!(m.header("docker-content-digest"), list_digest);
    let index = m.json();
    let media_type = index["mediaType"].as_str().unwrap_or("").to_string();
    assert!(
        accept.contains(media_type.as_str()) && !media_type.is_empty(),
        "not a list: {index}"
    );
    assert_eq!(m.header("content-type"), media_type);
    let mut arches: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|e| {
            let d = e["digest"].as_str().unwrap();
            let child = http_get(
                &format!("{}/v2/{repo}/manifests/{d}", server.url),
                common::ACCEPT_ALL_MANIFESTS,
            );
            assert_eq!(child.status, 200, "child {d}: {child:?}");
            assert_eq!(digest_of(&child.body), d);
            e["platform"]["architecture"].as_str().unwrap().to_string()
        })
        .collect();
    arches.sort();
    assert_eq!(arches, vec!["amd64", "arm64"]);

    // The children were pushed by digest only: one tag in the repository.
    let tags = http_get(&format!("{}/v2/{repo}/tags/list", server.url), "*/*");
    assert_eq!(tags.json()["tags"], serde_json::json!(["multi"]));

    // A fresh store pulls the arm64 image through the list.
    let other = Store::new("podman", work.path());
    other.run(&[
        "pull",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--arch",
        "arm64",
        &format!("docker://{reg}:multi"),
    ]);
    let image = format!("{reg}:multi");
    assert_eq!(
        other
            .run(&["image", "inspect", "--format", "{{.Architecture}}", &image])
            .trim(),
        "arm64"
    );
    let (_, arm_id, _) = &ids[1];
    assert_eq!(&other.image_id(&image), arm_id);
}
