//! Store constructors shared by the meta suites: every check runs once on a
//! fresh SQLite file and once on a fresh PostgreSQL database.
#![allow(dead_code, unreachable_pub)]

use berth_meta::MetaStore;
use tempfile::TempDir;

pub async fn open_sqlite() -> (TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    (dir, store)
}

/// A fresh database on the PostgreSQL server that `BERTH_TEST_POSTGRES_URL`
/// names (scripts/start-services.sh starts one). Missing is a failure, never
/// a skip.
pub async fn open_postgres() -> (String, MetaStore) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var("BERTH_TEST_POSTGRES_URL").expect(
        "BERTH_TEST_POSTGRES_URL is not set: run scripts/start-services.sh (scripts/test does) \
         and export the variables it writes to target/test-services.env",
    );
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&url)
        .await
        .expect("connect to PostgreSQL");
    // Test binaries run in parallel processes: the pid keeps names apart.
    let name = format!(
        "berth_meta_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    // ICU en-US would sort "B" after "a"; the migrations must not depend on
    // the database's locale, so test under one that differs from bytes.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    let (base, _) = url.rsplit_once('/').expect("URL ends in /database");
    let store = MetaStore::open(&format!("{base}/{name}")).await.unwrap();
    (name, store)
}
