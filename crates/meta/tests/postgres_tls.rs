//! TLS to PostgreSQL: `metadata.url` takes libpq's `sslmode` and
//! `sslrootcert`, and they reach sqlx (built with rustls on aws-lc-rs).
//! Runs against the cluster scripts/start-services.sh starts, which serves
//! plain and TLS connections with a certificate from a private CA
//! (`BERTH_TEST_POSTGRES_CA`). A missing variable fails the test: it never
//! skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_meta::MetaStore;
use sqlx::{AnyPool, Row};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run scripts/start-services.sh, then \
             `set -a; . target/test-services.env; set +a`"
        )
    })
}

/// The test server's URL (`postgres://berth@127.0.0.1:PORT/postgres`) with
/// the database replaced and `params` added to its query.
fn url(database: &str, params: &str) -> String {
    let base = env("BERTH_TEST_POSTGRES_URL");
    let (base, query) = match base.split_once('?') {
        Some((b, q)) => (b.to_string(), Some(q.to_string())),
        None => (base, None),
    };
    let (server, _) = base.rsplit_once('/').expect("URL ends in /database");
    let query: Vec<String> = query.into_iter().chain([params.to_string()]).collect();
    format!("{server}/{database}?{}", query.join("&"))
}

fn ca() -> PathBuf {
    let ca = PathBuf::from(env("BERTH_TEST_POSTGRES_CA"));
    assert!(
        ca.is_file(),
        "BERTH_TEST_POSTGRES_CA={} is not a file: run scripts/start-services.sh",
        ca.display()
    );
    ca
}

/// Another private CA, which did not sign the server's certificate.
fn wrong_ca(dir: &Path) -> PathBuf {
    let cert = dir.join("other-ca.crt");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            "/CN=Not the Berth test PostgreSQL CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .output()
        .expect("running openssl");
    assert!(status.status.success(), "openssl: {status:?}");
    cert
}

async fn connect(url: &str) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    sqlx::pool::PoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
}

/// Whether this connection runs over TLS, as the server sees it.
async fn ssl_of(pool: &AnyPool) -> bool {
    sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
        .get::<bool, _>(0)
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects_over_tls() {
    let ca = ca();
    let verified = url(
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let pool = connect(&verified).await.unwrap();
    assert!(ssl_of(&pool).await, "verify-full connected without TLS");
    pool.close().await;

    // The metadata store itself, opened from such a URL: a fresh database,
    // migrated, every connection of its pool over TLS.
    let name = format!("berth_tls_{}", std::process::id());
    let admin = connect(&url("postgres", "sslmode=disable")).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let store = MetaStore::open(&url(
        &name,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    ))
    .await
    .expect("MetaStore::open over verify-full");
    store.ready().await.unwrap();
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(bool_and(s.ssl), false) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.datname = $1",
    )
    .bind(&name)
    .fetch_one(&admin)
    .await
    .unwrap();
    let (connections, all_tls): (i64, bool) = (row.get(0), row.get(1));
    assert!(connections >= 1, "the store holds no connection");
    assert!(all_tls, "a connection of the store is not over TLS");
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
}

#[tokio::test]
async fn verify_full_refuses_a_server_the_ca_did_not_sign() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = wrong_ca(dir.path());
    let url = url(
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={}", wrong.display()),
    );
    let err = match MetaStore::open(&url).await {
        Ok(_) => panic!("verify-full accepted a certificate the given CA did not sign"),
        Err(e) => e,
    };
    assert!(matches!(err, berth_meta::Error::Tls(_)), "{err:?}");
    let text = err.to_string();
    for part in ["TLS to the database", "UnknownIssuer", "sslrootcert"] {
        assert!(text.contains(part), "{part} in {text}");
    }

    // Without sslrootcert, verification uses public roots: refused too.
    let err = match MetaStore::open(&self::url("postgres", "sslmode=verify-full")).await {
        Ok(_) => panic!("verify-full accepted a private CA's certificate without sslrootcert"),
        Err(e) => e,
    };
    assert!(matches!(err, berth_meta::Error::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn plain_and_unverified_modes_still_connect() {
    let plain = connect(&url("postgres", "sslmode=disable")).await.unwrap();
    assert!(!ssl_of(&plain).await, "sslmode=disable used TLS");
    plain.close().await;
    // `require` encrypts without checking the certificate (libpq's meaning).
    let required = connect(&url("postgres", "sslmode=require")).await.unwrap();
    assert!(
        ssl_of(&required).await,
        "sslmode=require connected without TLS"
    );
    required.close().await;
    // The URL the other suites use (sslmode unset: prefer) keeps working.
    sqlx::any::install_default_drivers();
    let default = sqlx::AnyPool::connect(&env("BERTH_TEST_POSTGRES_URL"))
        .await
        .unwrap();
    sqlx::query("SELECT 1").fetch_one(&default).await.unwrap();
    default.close().await;
}
