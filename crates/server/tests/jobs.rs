//! Background jobs through the real binary: an abandoned upload session is
//! reaped after its TTL (404 `BLOB_UPLOAD_UNKNOWN`, bytes gone) while a
//! session in use survives; on three nodes sharing PostgreSQL and S3 the
//! reaper runs once per period for the whole cluster.

mod common;

use std::time::{Duration, Instant};

use common::{Berth, digest_of, http, service_env, unique};

const TTL_SECS: &str = "2";
const INTERVAL_SECS: &str = "1";

fn reaper_env() -> Vec<(String, String)> {
    vec![
        ("BERTH_UPLOAD_TTL_SECS".into(), TTL_SECS.into()),
        (
            "BERTH_UPLOAD_REAP_INTERVAL_SECS".into(),
            INTERVAL_SECS.into(),
        ),
    ]
}

/// Opens a session and sends one chunk; returns its URL and id.
fn open_session(url: &str, repo: &str, chunk: &[u8]) -> (String, String) {
    let resp = http(
        "POST",
        &format!("{url}/v2/{repo}/blobs/uploads/"),
        &[],
        None,
    );
    assert_eq!(resp.status, 202, "{resp:?}");
    let location = resp.header("Location");
    let session = if location.starts_with('/') {
        format!("{url}{location}")
    } else {
        location
    };
    let resp = patch(&session, chunk, 0);
    assert_eq!(resp.status, 202, "{resp:?}");
    let id = session
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    (session, id)
}

fn patch(session: &str, chunk: &[u8], offset: usize) -> common::HttpResponse {
    let range = format!("{}-{}", offset, offset + chunk.len() - 1);
    http(
        "PATCH",
        session,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", &range),
        ],
        Some(chunk.to_vec()),
    )
}

fn error_code(resp: &common::HttpResponse) -> String {
    resp.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the session answers 404; fails after `timeout`.
fn wait_reaped(session: &str, timeout: Duration, mut meanwhile: impl FnMut()) {
    let start = Instant::now();
    loop {
        let resp = http("GET", session, &[], None);
        if resp.status == 404 {
            assert_eq!(error_code(&resp), "BLOB_UPLOAD_UNKNOWN", "{resp:?}");
            return;
        }
        assert_eq!(resp.status, 204, "{resp:?}");
        assert!(
            start.elapsed() < timeout,
            "the abandoned session was not reaped within {timeout:?}"
        );
        meanwhile();
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn abandoned_upload_is_reaped_and_unknown_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let berth = Berth::start_env(dir.path(), "127.0.0.1:0", &[], &reaper_env());
    let (abandoned, id) = open_session(&berth.url, "jobs/abandoned", b"half a layer");
    let bytes = dir.path().join("uploads").join(&id);
    assert!(
        bytes.exists(),
        "{} holds the session's bytes",
        bytes.display()
    );

    // Another session keeps sending chunks, more often than the TTL.
    let (alive, _) = open_session(&berth.url, "jobs/alive", b"0");
    let mut sent = b"0".to_vec();
    wait_reaped(&abandoned, Duration::from_secs(30), || {
        let resp = patch(&alive, b"1", sent.len());
        assert_eq!(resp.status, 202, "the session in use was reaped: {resp:?}");
        sent.push(b'1');
    });
    assert!(!bytes.exists(), "the reaped session's bytes are gone");
    let resp = patch(&abandoned, b" more", 12);
    assert_eq!(resp.status, 404, "{resp:?}");
    assert_eq!(error_code(&resp), "BLOB_UPLOAD_UNKNOWN");
    let resp = http(
        "PUT",
        &format!("{abandoned}?digest={}", digest_of(b"half a layer")),
        &[],
        Some(Vec::new()),
    );
    assert_eq!(resp.status, 404, "{resp:?}");
    assert_eq!(error_code(&resp), "BLOB_UPLOAD_UNKNOWN");

    // The session in use finishes.
    let sep = if alive.contains('?') { '&' } else { '?' };
    let resp = http(
        "PUT",
        &format!("{alive}{sep}digest={}", digest_of(&sent)),
        &[],
        Some(Vec::new()),
    );
    assert_eq!(resp.status, 201, "{resp:?}");

    let metrics =
        String::from_utf8(http("GET", &format!("{}/metrics", berth.url), &[], None).body).unwrap();
    assert!(
        metrics.contains("berth_jobs_run_total{kind=\"upload_reaper\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("berth_uploads_reaped_total"), "{metrics}");
    assert!(
        metrics.contains("berth_job_last_success_timestamp_seconds{kind=\"upload_reaper\"}"),
        "{metrics}"
    );
}

/// A fresh PostgreSQL database and S3 prefix for one cluster; returns the
/// nodes' environment and the database URL.
fn cluster_env() -> (Vec<(String, String)>, String) {
    let admin_url = service_env("BERTH_TEST_POSTGRES_URL");
    let db = unique("berth_jobs_").replace('-', "_");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&admin_url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    });
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let db_url = format!("{base}/{db}");
    let mut env: Vec<(String, String)> = [
        ("BERTH_METADATA_URL", db_url.clone()),
        ("BERTH_STORAGE_BACKEND", "s3".into()),
        ("BERTH_S3_ENDPOINT", service_env("BERTH_TEST_S3_ENDPOINT")),
        ("BERTH_S3_BUCKET", service_env("BERTH_TEST_S3_BUCKET")),
        (
            "BERTH_S3_ACCESS_KEY_ID",
            service_env("BERTH_TEST_S3_ACCESS_KEY"),
        ),
        (
            "BERTH_S3_SECRET_ACCESS_KEY",
            service_env("BERTH_TEST_S3_SECRET_KEY"),
        ),
        ("BERTH_S3_ALLOW_HTTP", "true".into()),
        ("BERTH_S3_PREFIX", unique("jobs")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(reaper_env());
    (env, db_url)
}

/// The reaper's jobs in the cluster's database: (scheduled_for, status).
fn reaper_jobs(db_url: &str) -> Vec<(i64, String)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Row;
        let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
        let rows = sqlx::query(
            "SELECT payload, status FROM jobs WHERE kind = 'upload_reaper' ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.iter()
            .map(|r| {
                let payload: String = r.get(0);
                let at = payload
                    .trim_start_matches("{\"scheduled_for\":")
                    .trim_end_matches('}')
                    .parse()
                    .unwrap_or_else(|_| panic!("payload {payload}"));
                (at, r.get::<String, _>(1))
            })
            .collect()
    })
}

#[test]
fn reaper_runs_once_per_period_across_three_nodes() {
    let (env, db_url) = cluster_env();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let started = Instant::now();
    let nodes: Vec<Berth> = dirs
        .iter()
        .map(|d| Berth::start_env(d.path(), "127.0.0.1:0", &[], &env))
        .collect();

    // A session opened on node 1, abandoned, is gone on every node.
    let (abandoned, _) = open_session(&nodes[0].url, "jobs/cluster", b"abandoned");
    let on_node_2 = abandoned.replacen(&nodes[0].url, &nodes[1].url, 1);
    wait_reaped(&on_node_2, Duration::from_secs(30), || {});
    let resp = patch(
        &abandoned.replacen(&nodes[0].url, &nodes[2].url, 1),
        b"x",
        9,
    );
    assert_eq!(resp.status, 404, "{resp:?}");
    assert_eq!(error_code(&resp), "BLOB_UPLOAD_UNKNOWN");

    // Let the three nodes poll for a few more periods.
    std::thread::sleep(Duration::from_secs(4));
    let elapsed = started.elapsed();
    drop(nodes);

    let jobs = reaper_jobs(&db_url);
    let mut slots: Vec<i64> = jobs.iter().map(|(at, _)| *at).collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), jobs.len(), "a period ran twice: {jobs:?}");
    let interval_ms: i64 = INTERVAL_SECS.parse::<i64>().unwrap() * 1000;
    for w in slots.windows(2) {
        assert!(w[1] - w[0] >= interval_ms, "{slots:?}");
    }
    let periods = elapsed.as_millis() as usize / interval_ms as usize;
    assert!(
        jobs.len() <= periods && jobs.len() + 3 >= periods,
        "{} reaper jobs in {periods} periods on 3 nodes: {jobs:?}",
        jobs.len()
    );
}
