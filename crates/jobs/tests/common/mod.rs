//! The databases the job tests run on: a SQLite file in a temporary
//! directory, or a fresh database on the real PostgreSQL server that
//! scripts/start-services.sh starts. Each `open` is a separate store with
//! its own pools, as a separate node would have.
#![allow(dead_code, unreachable_pub)]

use berth_meta::MetaStore;
use tempfile::TempDir;

pub struct Db {
    pub url: String,
    _dir: Option<TempDir>,
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        Db {
            url,
            _dir: Some(dir),
        }
    }

    /// A fresh database on the server `BERTH_TEST_POSTGRES_URL` names.
    /// Missing is a failure, never a skip.
    pub async fn postgres() -> Db {
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
        let name = format!(
            "berth_jobs_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
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
        admin.close().await;
        let (base, _) = url.rsplit_once('/').expect("URL ends in /database");
        Db {
            url: format!("{base}/{name}"),
            _dir: None,
        }
    }

    /// A store of its own, as one node would open it.
    pub async fn open(&self) -> MetaStore {
        MetaStore::open(&self.url).await.unwrap()
    }
}

/// Defines `sqlite::NAME` and `postgres::NAME` tests that run
/// `NAME(&Db)` on each backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&$crate::common::Db::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&$crate::common::Db::postgres().await).await;
                }
            )*
        }
    };
}
