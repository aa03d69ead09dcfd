//! `berth serve` as a process: configuration sources, serving any address
//! with authentication, the admin bootstrap, TLS, health/readiness/metrics,
//! JSON logs and graceful shutdown.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    ADMIN_PASSWORD, ADMIN_USER, Berth, Launch, PRINTED_ADMIN_PREFIX, admin_creds, http,
    http_anonymous, require_tool, run,
};

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn non_loopback_listen_serves_and_challenges_unauthenticated_clients() {
    // Every request is authenticated, so any address may be served.
    let dir = tempfile::tempdir().unwrap();
    let b = Berth::start_on(dir.path(), "0.0.0.0:0", &[]);
    let port = b.addr.rsplit(':').next().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let anonymous = http_anonymous("GET", &format!("{base}/v2/"), &[], None);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert_eq!(
        anonymous.header("www-authenticate"),
        format!(r#"Bearer realm="{base}/service/token",service="berth""#),
        "{anonymous:?}"
    );
    assert_eq!(anonymous.json()["errors"][0]["code"], "UNAUTHORIZED");
    assert_eq!(
        anonymous.header("docker-distribution-api-version"),
        "registry/2.0"
    );
    let admin = http("GET", &format!("{base}/v2/"), &[], None);
    assert_eq!(admin.status, 200, "{admin:?}");
    assert_eq!(admin.body, b"{}");
}

#[test]
fn first_start_prints_a_generated_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("first.log");
    let mut b = Berth::launch(
        &data,
        Launch {
            admin_password: false,
            stderr: Some(&log),
            envs: &[("RUST_LOG".into(), "info".into())],
            ..Launch::default()
        },
    );
    let password = b
        .printed_admin_password
        .clone()
        .expect("a first start without BERTH_ADMIN_PASSWORD prints the admin password");
    assert!(password.len() >= 16, "{password:?}");
    let printed: Vec<String> = b
        .stdout_lines()
        .into_iter()
        .filter(|l| l.contains(&password))
        .collect();
    assert_eq!(
        printed,
        vec![format!("{PRINTED_ADMIN_PREFIX}{password}")],
        "the password is printed on exactly one line"
    );

    let basic = |user: &str, password: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let with = |auth: &str| {
        http(
            "GET",
            &format!("{}/v2/", b.url),
            &[("Authorization", auth)],
            None,
        )
    };
    assert_eq!(with(&basic(ADMIN_USER, &password)).status, 200);
    // The test default is not this server's password.
    assert_eq!(with(&basic(ADMIN_USER, ADMIN_PASSWORD)).status, 401);
    assert_eq!(with(&basic(ADMIN_USER, &password)).status, 200);

    // A restart finds the admin and prints nothing, with or without the
    // variable; the generated password still works.
    let status = b.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let second_log = dir.path().join("second.log");
    let again = Berth::launch(
        &data,
        Launch {
            admin_password: false,
            stderr: Some(&second_log),
            envs: &[("RUST_LOG".into(), "info".into())],
            ..Launch::default()
        },
    );
    assert_eq!(again.printed_admin_password, None);
    let admin_lines: Vec<String> = again
        .stdout_lines()
        .into_iter()
        .filter(|l| l.contains("system admin") || l.contains(&password))
        .collect();
    assert!(admin_lines.is_empty(), "{admin_lines:?}");
    let ok = http(
        "GET",
        &format!("{}/v2/", again.url),
        &[("Authorization", &basic(ADMIN_USER, &password))],
        None,
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    drop(again);
    let third = Berth::launch(&data, Launch::default());
    assert_eq!(third.printed_admin_password, None);
    let ok = http(
        "GET",
        &format!("{}/v2/", third.url),
        &[("Authorization", &basic(ADMIN_USER, &password))],
        None,
    );
    assert_eq!(
        ok.status, 200,
        "BERTH_ADMIN_PASSWORD does not reset an existing admin"
    );
    drop(third);

    // Printed, never logged.
    for file in [&log, &second_log] {
        let logs = std::fs::read_to_string(file).unwrap();
        assert!(
            !logs.is_empty(),
            "{} holds the server's logs",
            file.display()
        );
        assert!(
            !logs.contains(&password),
            "the admin password appears in the logs ({}):\n{logs}",
            file.display()
        );
    }
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
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
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
        "-u",
        &admin_creds(),
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
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
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
        "-u",
        &admin_creds(),
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
        .args([
            "-sf",
            "-u",
            &admin_creds(),
            "--max-time",
            "5",
            &format!("http://{}/v2/", b.addr),
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success());
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut b = Berth::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = common::client();
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
            common::client()
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

/// A first start refuses a `BERTH_ADMIN_PASSWORD` too weak to be a
/// password (the hash is started early, the check still comes first) and
/// says which variable; a restart, with the admin already there, ignores
/// the variable.
#[test]
fn a_weak_admin_password_stops_a_first_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = |password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("BERTH_ADMIN_PASSWORD", password)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run berth serve")
    };
    let refused = serve("abc");
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("BERTH_ADMIN_PASSWORD"), "{stderr}");

    let mut good = Berth::launch(&data, Launch::default());
    assert!(good.stop().is_some_and(|s| s.success()));
    let restarted = Berth::launch(
        &data,
        Launch {
            envs: &[("BERTH_ADMIN_PASSWORD".into(), "abc".into())],
            ..Launch::default()
        },
    );
    let basic = |password: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_USER}:{password}"))
        )
    };
    let v2 = |password: &str| {
        http(
            "GET",
            &format!("{}/v2/", restarted.url),
            &[("Authorization", &basic(password))],
            None,
        )
        .status
    };
    // The admin of the first start, not the variable's value.
    assert_eq!(v2(ADMIN_PASSWORD), 200);
    assert_eq!(v2("abc"), 401);
}
