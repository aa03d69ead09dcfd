//! Berth nodes sharing PostgreSQL metadata and S3-compatible blob storage
//! (the services scripts/start-services.sh starts): pushes through one node
//! pull through another, an upload started on one node finishes on another,
//! and blob reads can redirect to presigned URLs.

mod common;

use std::process::Command;

use common::{Berth, DockerCli, digest_of, require_tool, run, shared_backends, unique};
use reqwest::StatusCode;
use serde_json::json;

async fn backends(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = shared_backends("so").await;
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn node(env: &[(String, String)]) -> (tempfile::TempDir, Berth) {
    let dir = tempfile::tempdir().unwrap();
    let b = Berth::start_env(dir.path(), "127.0.0.1:0", &[], env);
    (dir, b)
}

async fn push_blob(client: &reqwest::Client, url: &str, repo: &str, data: &[u8]) -> String {
    let digest = digest_of(data);
    let resp = client
        .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{:?}",
        resp.text().await
    );
    digest
}

#[tokio::test]
async fn two_nodes_share_postgres_and_s3() {
    let env = backends(&[]).await;
    let (_d1, n1) = node(&env);
    let (_d2, n2) = node(&env);
    let client = common::client();
    for n in [&n1, &n2] {
        let r = client
            .get(format!("{}/readyz", n.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    // A monolithic push through node 1 is visible through node 2.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let config_d = push_blob(&client, &n1.url, "ha/app", &config).await;
    let r = client
        .head(format!("{}/v2/ha/app/blobs/{config_d}", n2.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A chunked upload started on node 1 continues and finishes on node 2,
    // which has no hash state for it and rebuilds it from S3.
    let layer: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let layer_d = digest_of(&layer);
    let r = client
        .post(format!("{}/v2/ha/app/blobs/uploads/", n1.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let (a, b) = layer.split_at(2 * 1024 * 1024);
    let r = client
        .patch(format!("{}{location}", n1.url))
        .header("content-range", format!("0-{}", a.len() - 1))
        .body(a.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = client
        .get(format!("{}{location}", n2.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], format!("0-{}", a.len() - 1));
    let r = client
        .patch(format!("{}{location}", n2.url))
        .header("content-range", format!("{}-{}", a.len(), layer.len() - 1))
        .body(b.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
    let r = client
        .put(format!("{}{location}?digest={layer_d}", n2.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let got = client
        .get(format!("{}/v2/ha/app/blobs/{layer_d}", n1.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(digest_of(&got), layer_d);

    // A manifest pushed through node 2 pulls through node 1, by tag.
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer.len()}],
    })
    .to_string();
    let r = client
        .put(format!("{}/v2/ha/app/manifests/1.0", n2.url))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = client
        .get(format!("{}/v2/ha/app/manifests/1.0", n1.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), manifest);
    let tags: serde_json::Value = client
        .get(format!("{}/v2/ha/app/tags/list", n1.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["1.0"]));
}

#[tokio::test]
async fn blob_reads_redirect_to_presigned_urls_when_configured() {
    let env = backends(&[("BERTH_S3_REDIRECT", "true")]).await;
    let (_d, n) = node(&env);
    let client = common::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let data = b"redirected bytes".repeat(1000);
    let digest = push_blob(&client, &n.url, "redir/app", &data).await;
    let r = client
        .get(format!("{}/v2/redir/app/blobs/{digest}", n.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("X-Amz-Signature"), "{location}");
    // The presigned URL is the credential: no registry login goes to S3.
    let fetched = reqwest::Client::new().get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), data);
    // HEAD answers from metadata; unknown blobs are not signed.
    let r = client
        .head(format!("{}/v2/redir/app/blobs/{digest}", n.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let other = digest_of(b"never pushed");
    let r = client
        .get(format!("{}/v2/redir/app/blobs/{other}", n.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn docker_push_through_one_node_pulls_through_another() {
    let docker = DockerCli::new(&require_tool("docker"));
    let env = backends(&[]).await;
    let (_d1, n1) = node(&env);
    let (_d2, n2) = node(&env);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), unique("scale-out content ")).unwrap();
    let tar = work.path().join("rootfs.tar");
    run(Command::new(require_tool("tar"))
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let repo = unique("ha/docker");
    let pushed_ref = format!("{}/{repo}:1.0", n1.addr);
    let pulled_ref = format!("{}/{repo}:1.0", n2.addr);
    run(docker.cmd(&["import"]).arg(&tar).arg(&pushed_ref));
    docker.login(&n1.addr);
    docker.login(&n2.addr);
    let push = run(&mut docker.cmd(&["push", &pushed_ref]));
    let pushed_digest = push
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in: {push}"))
        .to_string();
    run(&mut docker.cmd(&["rmi", &pushed_ref]));
    run(&mut docker.cmd(&["pull", &pulled_ref]));
    let repo_digests = run(&mut docker.cmd(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &pulled_ref,
    ]));
    run(&mut docker.cmd(&["rmi", &pulled_ref]));
    docker.logout(&n1.addr);
    docker.logout(&n2.addr);
    assert!(
        repo_digests.contains(&pushed_digest),
        "{repo_digests} lacks {pushed_digest}"
    );
}
