//! `berth serve` as a process: configuration sources, the loopback guard,
//! TLS, health/readiness/metrics, JSON logs and graceful shutdown.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Berth, require_tool, run};

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn non_loopback_listen_is_refused_without_explicit_consent() {
    let dir = tempfile::tempdir().unwrap();
    let out = berth()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("allow_unauthenticated_remote"), "{stderr}");
    assert!(stderr.contains("listen:"), "{stderr}");

    let b = Berth::start_on(dir.path(), "0.0.0.0:0", &["--allow-unauthenticated-remote"]);
    let port = b.addr.rsplit(':').next().unwrap();
    let body =
        run(Command::new(require_tool("curl"))
            .args(["-sf", &format!("http://127.0.0.1:{port}/v2/")]));
    assert_eq!(body, "{}");
}

#[test]
fn invalid_configuration_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "listen = \"nowhere\"\nlog_format = \"xml\"\n").unwrap();
    let out = berth()
        .args(["serve", "--config"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listen:") && stderr.contains("log_format:"),
        "{stderr}"
    );
}

#[test]
fn config_file_environment_and_flags_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    let from_file = dir.path().join("from-file");
    let from_env = dir.path().join("from-env");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"{}\"\n",
            from_file.display()
        ),
    )
    .unwrap();
    // The flag's listen address beats the file's; the environment's data
    // directory beats the file's.
    let mut child = berth()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env("BERTH_DATA_DIR", &from_env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("berth listening on http://127.0.0.1:"),
        "{line}"
    );
    assert!(!line.contains("127.0.0.1:1\n"), "{line}");
    assert!(from_env.join("meta.db").exists());
    assert!(!from_file.exists());
}

#[test]
fn health_readiness_and_metrics() {
    let b = Berth::start();
    let curl = require_tool("curl");
    assert_eq!(
        run(Command::new(&curl).args(["-sf", &format!("{}/healthz", b.url)])),
        "ok"
    );
    assert_eq!(
        run(Command::new(&curl).args(["-sf", &format!("{}/readyz", b.url)])),
        "ready"
    );
    run(Command::new(&curl).args([
        "-sf",
        "-X",
        "POST",
        &format!("{}/v2/m/blobs/uploads/", b.url),
    ]));
    let metrics = run(Command::new(&curl).args(["-sf", &format!("{}/metrics", b.url)]));
    assert!(
        metrics.contains(
            r#"berth_http_requests_total{route="upload_start",method="POST",status="202"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("berth_uploads_in_progress 1"), "{metrics}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = berth()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("berth listening on"), "{line}");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{l}");
    }
}

#[test]
fn tls_from_certificate_and_key_files() {
    let openssl = require_tool("openssl");
    let curl = require_tool("curl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A CA and a leaf for 127.0.0.1: rustls refuses a self-signed CA:TRUE leaf.
    run(Command::new(&openssl).current_dir(d).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=berth test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]));
    run(Command::new(&openssl).current_dir(d).args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]));
    std::fs::write(
        d.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new(&openssl).current_dir(d).args([
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.crt",
    ]));
    let data = d.join("data");
    let cert = d.join("leaf.crt");
    let key = d.join("leaf.key");
    let b = Berth::start_in(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(b.url.starts_with("https://"), "{}", b.url);
    let out = run(Command::new(&curl).args([
        "-sS",
        "-i",
        "--cacert",
        d.join("ca.crt").to_str().unwrap(),
        &format!("{}/v2/", b.url),
    ]));
    assert!(
        out.starts_with("HTTP/2 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    assert!(
        out.to_lowercase()
            .contains("docker-distribution-api-version: registry/2.0"),
        "{out}"
    );
    // Plain HTTP on the TLS port is not served.
    let plain = Command::new(&curl)
        .args(["-sf", "--max-time", "5", &format!("http://{}/v2/", b.addr)])
        .output()
        .unwrap();
    assert!(!plain.status.success());
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut b = Berth::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{}/v2/drain/blobs/uploads/", b.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        // A PATCH whose body trickles in: it is in flight when SIGTERM arrives.
        let chunks = futures::stream::unfold(0, |i| async move {
            if i == 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<_, std::io::Error>(vec![b'x'; 1000]), i + 1))
        });
        let url = format!("{}{location}", b.url);
        let patch = tokio::spawn(async move {
            reqwest::Client::new()
                .patch(url)
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = tokio::task::spawn_blocking(move || b.stop()).await.unwrap();
        let resp = patch.await.unwrap().expect("in-flight request completed");
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()["range"], "0-9999");
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    });
}
