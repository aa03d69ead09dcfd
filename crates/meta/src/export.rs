//! Moving a whole installation's metadata to another database (`berth
//! migrate`): an [`ExportSource`] opened read-only with paged readers over every
//! table, and an [`ImportTarget`] whose writes are idempotent and keep the source's
//! timestamps, so an interrupted migration can simply be run again.
//!
//! Readers use keyset pagination on each table's primary key (never an
//! unbounded `SELECT`), all inside one read transaction, so every page comes
//! from the same snapshot even if something still writes to the source
//! (SQLite in WAL mode lets readers run beside a writer; PostgreSQL runs the
//! transaction as `REPEATABLE READ, READ ONLY`).
//!
//! The target's writes are `INSERT … ON CONFLICT DO NOTHING`: a row already
//! there is left as it is and reported as such. The identity tables (users,
//! projects, members, robots, tokens, signing keys, the audit log) and the
//! projects' lifecycle policies (immutable tag rules, quotas, retention
//! policies) are moved with their ids by the generic copier in
//! [`identity`], which first makes sure the target holds no identity rows
//! of its own. `Tx`'s methods would
//! stamp every row with the time of the migration; these keep the source's
//! `created_at`, `linked_at` and `updated_at`, which retention and listings
//! may depend on. SQL stays portable (`$N`, row values, `VALUES` lists) for
//! sqlx's Any driver on SQLite and PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

use crate::{Error, MetaStore, Result};

mod identity;

/// The registry tables a migration copies (the identity tables are listed
/// in [`identity`]).
pub(crate) const MIGRATED_TABLES: [&str; 6] = [
    "repositories",
    "blobs",
    "repo_blobs",
    "manifests",
    "manifest_refs",
    "tags",
];

/// Tables a migration leaves behind on purpose: upload sessions in progress
/// (their clients restart them) and the cluster's job queue and schedules
/// (nodes on the target recreate them), plus the migrations' own table.
/// Pull statistics (`artifact_pulls`) are left too: they start afresh on
/// the target (a gap `berth migrate` should close). So is the retention
/// run history (`retention_executions` and their items): it is a record of
/// what runs on the source did, not configuration; the policies themselves
/// move with the identity tables. GC's run history and state start afresh
/// too, and so does the trash: its entries' blobs are not referenced by any
/// live manifest, so they are not copied, and a restore on the target could
/// not work. `trash` itself is not listed here so that a source with
/// entries in its restore window is reported (see `berth migrate`).
pub(crate) const NOT_MIGRATED_TABLES: [&str; 11] = [
    "uploads",
    "jobs",
    "job_schedules",
    "_sqlx_migrations",
    "artifact_pulls",
    "retention_executions",
    "retention_execution_items",
    "trash_refs",
    "trash_tags",
    "gc_runs",
    "gc_state",
];

/// Keys per presence query: well under SQLite's and PostgreSQL's limits on
/// bound parameters.
const LOOKUP_CHUNK: usize = 400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryRow {
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    pub digest: String,
    pub size: i64,
    pub created_at: i64,
}

/// A `repo_blobs` row: the blob is readable in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub repo: String,
    pub digest: String,
    pub linked_at: i64,
}

/// A manifest with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    pub repo: String,
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    pub annotations: Option<String>,
    pub size: i64,
    pub body: Vec<u8>,
    pub created_at: i64,
}

/// One `manifest_refs` row of a manifest: `kind` is `blob` or `manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRefRow {
    pub child_digest: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub repo: String,
    pub name: String,
    pub digest: String,
    pub updated_at: i64,
}

/// Rows per table (and blob bytes) of a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    pub repositories: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub links: u64,
    pub manifests: u64,
    pub manifest_refs: u64,
    pub tags: u64,
    /// Upload sessions in progress; a migration does not move them.
    pub uploads: u64,
}

/// What a tag insert found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOutcome {
    Inserted,
    /// The target already has the tag on the same manifest.
    Present,
    /// The target already has the tag on another manifest (this digest); it
    /// is left as it is.
    Conflict(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Engine {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Engine {
    fn of(url: &str) -> Result<Engine> {
        if let Some(path) = crate::sqlite_path(url) {
            Ok(Engine::Sqlite(path.to_path_buf()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres(url.to_string()))
        } else {
            Err(Error::Url(format!(
                "metadata URL {url:?} is neither sqlite:// nor postgres://"
            )))
        }
    }
}

/// The newest migration this build knows for an engine.
fn latest_migration(engine: &Engine) -> i64 {
    let migrator = match engine {
        Engine::Sqlite(_) => sqlx::migrate!("./migrations/sqlite"),
        Engine::Postgres(_) => sqlx::migrate!("./migrations/postgres"),
    };
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// A read-only pool on an existing SQLite file: nothing is created, and
/// `query_only` refuses writes even if the file could be written.
async fn sqlite_read_only(path: &Path) -> Result<AnyPool> {
    if !path.is_file() {
        return Err(Error::Url(format!(
            "no SQLite database at {}",
            path.display()
        )));
    }
    let options = AnyConnectOptions::from_str(&format!("sqlite://{}?mode=ro", path.display()))?;
    Ok(AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA query_only=ON; PRAGMA busy_timeout=10000;")
                    .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?)
}

/// Whether the database has the migrations table (without creating it).
async fn has_schema(pool: &AnyPool, engine: &Engine) -> Result<bool> {
    let sql = match engine {
        Engine::Sqlite(_) => {
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Engine::Postgres(_) => {
            "SELECT 1 FROM pg_catalog.pg_tables \
             WHERE tablename = '_sqlx_migrations' AND schemaname = current_schema()"
        }
    };
    Ok(sqlx::query(sql).fetch_optional(pool).await?.is_some())
}

/// `$1, $2, …, $n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2), ($3, $4), …` for `rows` tuples of `arity` parameters.
fn values_list(rows: usize, arity: usize) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=arity).map(|c| format!("${}", r * arity + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The installation being moved, opened read-only, read through one
/// snapshot. Dropping it ends the read transaction.
pub struct ExportSource {
    tx: Transaction<'static, Any>,
    pool: AnyPool,
    engine: Engine,
}

impl ExportSource {
    /// Opens `url` (`sqlite://PATH` or `postgres://…`) for reading only and
    /// starts the snapshot. Fails unless the database has exactly the schema
    /// this build writes, so no column is silently dropped on the way.
    pub async fn open(url: &str) -> Result<ExportSource> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of(url)?;
        let pool = match &engine {
            Engine::Sqlite(path) => sqlite_read_only(path).await?,
            Engine::Postgres(url) => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .connect_with(AnyConnectOptions::from_str(url)?)
                    .await?
            }
        };
        if !has_schema(&pool, &engine).await? {
            return Err(Error::Url(
                "the source database has no Berth schema (no _sqlx_migrations table)".into(),
            ));
        }
        let mut tx = pool.begin().await?;
        if let Engine::Postgres(_) = engine {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(
            "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&mut *tx)
        .await?;
        let version: i64 = row.try_get(0)?;
        let latest = latest_migration(&engine);
        if version != latest {
            return Err(Error::Url(format!(
                "the source database is at schema version {version} but this berth writes version \
                 {latest}: run the berth release that matches the source (`berth serve` on it once \
                 upgrades an older source)"
            )));
        }
        Ok(ExportSource { tx, pool, engine })
    }

    /// Ends the snapshot and closes the connection.
    pub async fn close(self) {
        let ExportSource { tx, pool, .. } = self;
        let _ = tx.rollback().await;
        pool.close().await;
    }

    async fn count(&mut self, sql: &'static str) -> Result<u64> {
        let row = sqlx::query(sql).fetch_one(&mut *self.tx).await?;
        Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
    }

    pub async fn counts(&mut self) -> Result<SourceCounts> {
        Ok(SourceCounts {
            repositories: self
                .count("SELECT CAST(COUNT(*) AS BIGINT) FROM repositories")
                .await?,
            blobs: self
                .count("SELECT CAST(COUNT(*) AS BIGINT) FROM blobs")
                .await?,
            blob_bytes: self
                .count("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs")
                .await?,
            links: self
                .count("SELECT CAST(COUNT(*) AS BIGINT) FROM repo_blobs")
                .await?,
            manifests: self
                .count("SELECT CAST(COUNT(*) AS BIGINT) FROM manifests")
                .await?,
            manifest_refs: self
                .count("SELECT CAST(COUNT(*) AS BIGINT) FROM manifest_refs")
                .await?,
            tags: self
                .count("SELECT CAST(COUNT(*) AS BIGINT) FROM tags")
                .await?,
            uploads: self
                .count("SELECT CAST(COUNT(*) AS BIGINT) FROM uploads")
                .await?,
        })
    }

    /// Tables of the source that are neither migrated nor left behind on
    /// purpose (see `MIGRATED_TABLES`, the identity tables and
    /// `NOT_MIGRATED_TABLES`), with their row counts: data a migration would
    /// not move.
    pub async fn other_tables(&mut self) -> Result<Vec<(String, u64)>> {
        let sql = match self.engine {
            Engine::Sqlite(_) => {
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Engine::Postgres(_) => {
                "SELECT CAST(tablename AS TEXT) FROM pg_catalog.pg_tables \
                 WHERE schemaname = current_schema() ORDER BY tablename"
            }
        };
        let names: Vec<String> = sqlx::query(sql)
            .fetch_all(&mut *self.tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::new();
        for name in names {
            if MIGRATED_TABLES.contains(&name.as_str())
                || identity::table_names().any(|t| t == name)
                || NOT_MIGRATED_TABLES.contains(&name.as_str())
            {
                continue;
            }
            // The name comes from the catalog; quoted as an identifier.
            let sql = format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM \"{}\"",
                name.replace('"', "\"\"")
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut *self.tx)
                .await?;
            out.push((name, row.try_get::<i64, _>(0)?.max(0) as u64));
        }
        Ok(out)
    }

    /// Up to `n` repositories named after `after`, by name.
    pub async fn repositories(
        &mut self,
        after: Option<&str>,
        n: i64,
    ) -> Result<Vec<RepositoryRow>> {
        let rows = sqlx::query(
            "SELECT name, created_at FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(n)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RepositoryRow {
                    name: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Up to `n` blob rows with digests after `after`, by digest.
    pub async fn blobs(&mut self, after: Option<&str>, n: i64) -> Result<Vec<BlobRow>> {
        let rows = sqlx::query(
            "SELECT digest, size, created_at FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(n)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BlobRow {
                    digest: r.try_get(0)?,
                    size: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Up to `n` repository links after `(repo, digest)`.
    pub async fn links(&mut self, after: Option<(&str, &str)>, n: i64) -> Result<Vec<LinkRow>> {
        let (repo, digest) = after.unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT repo, digest, linked_at FROM repo_blobs WHERE (repo, digest) > ($1, $2) \
             ORDER BY repo, digest LIMIT $3",
        )
        .bind(repo)
        .bind(digest)
        .bind(n)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LinkRow {
                    repo: r.try_get(0)?,
                    digest: r.try_get(1)?,
                    linked_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Up to `n` manifests, with their bytes, after `(repo, digest)`. Bodies
    /// are at most a few MiB each: keep `n` small.
    pub async fn manifests(
        &mut self,
        after: Option<(&str, &str)>,
        n: i64,
    ) -> Result<Vec<ManifestRow>> {
        let (repo, digest) = after.unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT repo, digest, media_type, artifact_type, subject, annotations, size, body, created_at \
             FROM manifests WHERE (repo, digest) > ($1, $2) ORDER BY repo, digest LIMIT $3",
        )
        .bind(repo)
        .bind(digest)
        .bind(n)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ManifestRow {
                    repo: r.try_get(0)?,
                    digest: r.try_get(1)?,
                    media_type: r.try_get(2)?,
                    artifact_type: r.try_get(3)?,
                    subject: r.try_get(4)?,
                    annotations: r.try_get(5)?,
                    size: r.try_get(6)?,
                    body: r.try_get(7)?,
                    created_at: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// The references of one manifest (bounded by what its bytes can list).
    pub async fn manifest_refs(&mut self, repo: &str, digest: &str) -> Result<Vec<ManifestRefRow>> {
        let rows = sqlx::query(
            "SELECT child_digest, kind FROM manifest_refs WHERE repo = $1 AND manifest_digest = $2 \
             ORDER BY child_digest",
        )
        .bind(repo)
        .bind(digest)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ManifestRefRow {
                    child_digest: r.try_get(0)?,
                    kind: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Up to `n` tags after `(repo, name)`.
    pub async fn tags(&mut self, after: Option<(&str, &str)>, n: i64) -> Result<Vec<TagRow>> {
        let (repo, name) = after.unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT repo, name, digest, updated_at FROM tags WHERE (repo, name) > ($1, $2) \
             ORDER BY repo, name LIMIT $3",
        )
        .bind(repo)
        .bind(name)
        .bind(n)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TagRow {
                    repo: r.try_get(0)?,
                    name: r.try_get(1)?,
                    digest: r.try_get(2)?,
                    updated_at: r.try_get(3)?,
                })
            })
            .collect()
    }
}

/// The PostgreSQL advisory lock a writing [`ImportTarget`] holds ("berthmig").
const IMPORT_LOCK: i64 = 0x6265_7274_686d_6967;

/// What keeps a second migration off a target while one writes it.
enum ImportLock {
    /// A session holding the advisory lock; closing it releases the lock.
    Postgres(sqlx::AnyConnection),
    /// An exclusive `flock` on the database file (which SQLite's own
    /// `fcntl` locks ignore), released when the file is closed.
    Sqlite(#[allow(dead_code)] std::fs::File),
    /// Read-only handles lock nothing.
    None,
}

/// The database an installation moves to.
pub struct ImportTarget {
    pool: AnyPool,
    engine: Engine,
    _lock: ImportLock,
}

impl ImportTarget {
    /// Opens the target for writing, creating and migrating its schema as
    /// `berth serve` does, and locks it against a second migration (which
    /// fails here, naming the reason).
    pub async fn open(url: &str) -> Result<ImportTarget> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of(url)?;
        // MetaStore applies the migrations (under PostgreSQL's advisory lock).
        MetaStore::open(url).await?.close().await;
        let lock = match &engine {
            Engine::Sqlite(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    Error::Url(format!("opening {} to lock it: {e}", path.display()))
                })?;
                match file.try_lock() {
                    Ok(()) => ImportLock::Sqlite(file),
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(Error::Url(format!(
                            "another berth migrate is writing {}",
                            path.display()
                        )));
                    }
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(Error::Url(format!("locking {}: {e}", path.display())));
                    }
                }
            }
            Engine::Postgres(url) => {
                use sqlx::Connection as _;
                let mut conn = sqlx::AnyConnection::connect(url).await?;
                let row = sqlx::query("SELECT pg_try_advisory_lock($1)")
                    .bind(IMPORT_LOCK)
                    .fetch_one(&mut conn)
                    .await?;
                if !row.try_get::<bool, _>(0)? {
                    return Err(Error::Url(
                        "another berth migrate is writing this database".into(),
                    ));
                }
                ImportLock::Postgres(conn)
            }
        };
        let pool = match &engine {
            Engine::Sqlite(path) => {
                let options =
                    AnyConnectOptions::from_str(&format!("sqlite://{}?mode=rw", path.display()))?;
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                                 PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Engine::Postgres(url) => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .connect_with(AnyConnectOptions::from_str(url)?)
                    .await?
            }
        };
        Ok(ImportTarget {
            pool,
            engine,
            _lock: lock,
        })
    }

    /// Opens the target only to read what it already holds, writing nothing
    /// (no schema, no file): `None` when it has no Berth schema yet, so
    /// nothing is there. For a dry run.
    pub async fn open_existing(url: &str) -> Result<Option<ImportTarget>> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of(url)?;
        let pool = match &engine {
            Engine::Sqlite(path) if !path.exists() => return Ok(None),
            Engine::Sqlite(path) => sqlite_read_only(path).await?,
            Engine::Postgres(url) => {
                AnyPoolOptions::new()
                    .max_connections(2)
                    .connect_with(AnyConnectOptions::from_str(url)?)
                    .await?
            }
        };
        if !has_schema(&pool, &engine).await? {
            pool.close().await;
            return Ok(None);
        }
        Ok(Some(ImportTarget {
            pool,
            engine,
            _lock: ImportLock::None,
        }))
    }

    pub async fn close(self) {
        self.pool.close().await;
        if let ImportLock::Postgres(conn) = self._lock {
            use sqlx::Connection as _;
            let _ = conn.close().await;
        }
    }

    pub async fn begin(&self) -> Result<ImportTx> {
        Ok(ImportTx(self.pool.begin().await?))
    }

    /// Sizes of those of `digests` the target has blob rows for.
    pub async fn blobs_present(&self, digests: &[&str]) -> Result<HashMap<String, i64>> {
        let mut out = HashMap::new();
        for chunk in digests.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT digest, size FROM blobs WHERE digest IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for d in chunk {
                q = q.bind(*d);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.try_get(0)?, r.try_get(1)?);
            }
        }
        Ok(out)
    }

    /// Those of `names` the target has.
    pub async fn repositories_present(&self, names: &[&str]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for chunk in names.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT name FROM repositories WHERE name IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in chunk {
                q = q.bind(*n);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.try_get(0)?);
            }
        }
        Ok(out)
    }

    /// Rows of `table` whose `(a, b)` key is among `keys`, with `value`.
    async fn pairs_present(
        &self,
        table: &str,
        key: (&str, &str),
        value: &str,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), String>> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT {a}, {b}, {value} FROM {table} WHERE ({a}, {b}) IN (VALUES {list})",
                a = key.0,
                b = key.1,
                list = values_list(chunk.len(), 2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (a, b) in chunk {
                q = q.bind(*a).bind(*b);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
            }
        }
        Ok(out)
    }

    /// Those of the `(repo, digest)` links the target has.
    pub async fn links_present(&self, keys: &[(&str, &str)]) -> Result<HashSet<(String, String)>> {
        let found = self
            .pairs_present("repo_blobs", ("repo", "digest"), "digest", keys)
            .await?;
        Ok(found.into_keys().collect())
    }

    /// Those of the `(repo, digest)` manifests the target has.
    pub async fn manifests_present(
        &self,
        keys: &[(&str, &str)],
    ) -> Result<HashSet<(String, String)>> {
        let found = self
            .pairs_present("manifests", ("repo", "digest"), "digest", keys)
            .await?;
        Ok(found.into_keys().collect())
    }

    /// Those of the `(repo, name)` tags the target has, with their digests.
    pub async fn tags_present(
        &self,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), String>> {
        self.pairs_present("tags", ("repo", "name"), "digest", keys)
            .await
    }
}

/// A transaction on the target. Every insert leaves an existing row as it
/// is and says whether it wrote one. Dropping it without `commit` rolls back.
pub struct ImportTx(Transaction<'static, Any>);

impl ImportTx {
    pub async fn commit(self) -> Result<()> {
        self.0.commit().await?;
        Ok(())
    }

    pub async fn insert_repository(&mut self, r: &RepositoryRow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&r.name)
        .bind(r.created_at)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a blob the target store durably holds (bytes first: call this
    /// only once they were verified and committed).
    pub async fn insert_blob(&mut self, b: &BlobRow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&b.digest)
        .bind(b.size)
        .bind(b.created_at)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Needs the repository and the blob row on the target.
    pub async fn insert_link(&mut self, l: &LinkRow) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO repo_blobs (repo, digest, linked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repo, digest) DO NOTHING",
        )
        .bind(&l.repo)
        .bind(&l.digest)
        .bind(l.linked_at)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Inserts a manifest with its references (those already there are
    /// kept). Needs the repository on the target. Returns whether the
    /// manifest row was new.
    pub async fn insert_manifest(
        &mut self,
        m: &ManifestRow,
        refs: &[ManifestRefRow],
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO manifests (repo, digest, media_type, artifact_type, subject, annotations, size, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo, digest) DO NOTHING",
        )
        .bind(&m.repo)
        .bind(&m.digest)
        .bind(&m.media_type)
        .bind(m.artifact_type.as_deref())
        .bind(m.subject.as_deref())
        .bind(m.annotations.as_deref())
        .bind(m.size)
        .bind(m.body.clone())
        .bind(m.created_at)
        .execute(&mut *self.0)
        .await?;
        for r in refs {
            sqlx::query(
                "INSERT INTO manifest_refs (repo, manifest_digest, child_digest, kind) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&m.repo)
            .bind(&m.digest)
            .bind(&r.child_digest)
            .bind(&r.kind)
            .execute(&mut *self.0)
            .await?;
        }
        Ok(done.rows_affected() > 0)
    }

    /// Inserts a tag unless the target has one of that name already (which
    /// is kept, even when it points elsewhere). Needs the manifest.
    pub async fn insert_tag(&mut self, t: &TagRow) -> Result<TagOutcome> {
        let done = sqlx::query(
            "INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repo, name) DO NOTHING",
        )
        .bind(&t.repo)
        .bind(&t.name)
        .bind(&t.digest)
        .bind(t.updated_at)
        .execute(&mut *self.0)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(TagOutcome::Inserted);
        }
        let row = sqlx::query("SELECT digest FROM tags WHERE repo = $1 AND name = $2")
            .bind(&t.repo)
            .bind(&t.name)
            .fetch_one(&mut *self.0)
            .await?;
        let existing: String = row.try_get(0)?;
        Ok(if existing == t.digest {
            TagOutcome::Present
        } else {
            TagOutcome::Conflict(existing)
        })
    }
}

#[cfg(test)]
mod tests {
    use berth_oci::{Digest, ManifestRef, RefKind, RepoName, Tag};

    use super::*;
    use crate::NewManifest;

    /// A source with two repositories sharing a blob, a manifest with a
    /// reference, a tag and an upload session.
    async fn sample_source(dir: &Path) -> String {
        let url = format!("sqlite://{}", dir.join("src.db").display());
        let meta = MetaStore::open(&url).await.unwrap();
        let mut tx = meta.begin().await.unwrap();
        let layer = Digest::sha256_of(b"layer");
        let body = br#"{"schemaVersion":2}"#;
        let manifest = Digest::sha256_of(body);
        for repo in ["a/app", "b/app"] {
            let repo = RepoName::parse(repo).unwrap();
            tx.insert_blob(&layer, 5).await.unwrap();
            tx.link_blob(&repo, &layer).await.unwrap();
            let refs = [ManifestRef {
                digest: layer.clone(),
                kind: RefKind::Blob,
                size: 5,
                field: "layers[0]".into(),
            }];
            tx.insert_manifest(
                &repo,
                NewManifest {
                    digest: &manifest,
                    media_type: "application/vnd.oci.image.manifest.v1+json",
                    artifact_type: Some("application/x-test"),
                    subject: None,
                    annotations: Some(r#"{"k":"v"}"#.into()),
                    body,
                    refs: &refs,
                },
            )
            .await
            .unwrap();
            tx.set_tag(&repo, &Tag::parse("1.0").unwrap(), &manifest)
                .await
                .unwrap();
        }
        tx.insert_upload("u1", &RepoName::parse("a/app").unwrap())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        meta.close().await;
        // A table a migration does not know.
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query(
            "CREATE TABLE extra_things (x TEXT); INSERT INTO extra_things VALUES ('a'), ('b')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        url
    }

    async fn copy_all(source: &mut ExportSource, target: &ImportTarget) -> (u64, u64) {
        let (mut written, mut present) = (0, 0);
        let mut count = |new: bool| if new { written += 1 } else { present += 1 };
        let mut tx = target.begin().await.unwrap();
        // Keyset pages of one row each walk the whole table.
        let mut after = None;
        loop {
            let page = source.repositories(after.as_deref(), 1).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for r in &page {
                count(tx.insert_repository(r).await.unwrap());
            }
        }
        for b in source.blobs(None, 10).await.unwrap() {
            count(tx.insert_blob(&b).await.unwrap());
        }
        for l in source.links(None, 10).await.unwrap() {
            count(tx.insert_link(&l).await.unwrap());
        }
        let mut after: Option<(String, String)> = None;
        loop {
            let key = after.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
            let page = source.manifests(key, 1).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.repo.clone(), last.digest.clone()));
            for m in &page {
                let refs = source.manifest_refs(&m.repo, &m.digest).await.unwrap();
                assert_eq!(refs.len(), 1);
                count(tx.insert_manifest(m, &refs).await.unwrap());
            }
        }
        for t in source.tags(None, 10).await.unwrap() {
            count(tx.insert_tag(&t).await.unwrap() == TagOutcome::Inserted);
        }
        tx.commit().await.unwrap();
        (written, present)
    }

    #[tokio::test]
    async fn sqlite_to_sqlite_is_exact_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let src_url = sample_source(dir.path()).await;
        let mut source = ExportSource::open(&src_url).await.unwrap();
        let counts = source.counts().await.unwrap();
        assert_eq!(
            counts,
            SourceCounts {
                repositories: 2,
                blobs: 1,
                blob_bytes: 5,
                links: 2,
                manifests: 2,
                manifest_refs: 2,
                tags: 2,
                uploads: 1,
            }
        );
        let others = source.other_tables().await.unwrap();
        assert!(
            others.contains(&("extra_things".to_string(), 2)),
            "{others:?}"
        );
        assert!(others.iter().all(|(t, _)| t != "tags" && t != "uploads"));
        // The source is read-only through this handle.
        assert!(
            sqlx::query("DELETE FROM tags")
                .execute(&mut *source.tx)
                .await
                .is_err()
        );

        let dst_url = format!("sqlite://{}", dir.path().join("dst.db").display());
        assert!(
            ImportTarget::open_existing(&dst_url)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !dir.path().join("dst.db").exists(),
            "a dry run creates nothing"
        );
        let target = ImportTarget::open(&dst_url).await.unwrap();
        let second = ImportTarget::open(&dst_url).await.err().unwrap();
        assert!(
            second.to_string().contains("another berth migrate"),
            "{second}"
        );
        assert_eq!(copy_all(&mut source, &target).await, (9, 0));
        assert_eq!(copy_all(&mut source, &target).await, (0, 9));

        let present = target
            .blobs_present(&[&Digest::sha256_of(b"layer").to_string(), "sha256:nope"])
            .await
            .unwrap();
        assert_eq!(present.len(), 1);
        let m = Digest::sha256_of(br#"{"schemaVersion":2}"#).to_string();
        let found = target
            .manifests_present(&[("a/app", &m), ("c/app", &m), ("b/app", &m)])
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
        let tags = target
            .tags_present(&[("a/app", "1.0"), ("a/app", "2.0")])
            .await
            .unwrap();
        assert_eq!(tags[&("a/app".to_string(), "1.0".to_string())], m);
        assert_eq!(
            target
                .repositories_present(&["a/app", "z"])
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            target
                .links_present(&[("b/app", &Digest::sha256_of(b"layer").to_string())])
                .await
                .unwrap()
                .len(),
            1
        );

        // Exact rows, timestamps included.
        let mut dst = ExportSource::open(&dst_url).await.unwrap();
        assert_eq!(
            dst.manifests(None, 10).await.unwrap(),
            source.manifests(None, 10).await.unwrap()
        );
        assert_eq!(
            dst.tags(None, 10).await.unwrap(),
            source.tags(None, 10).await.unwrap()
        );
        assert_eq!(
            dst.links(None, 10).await.unwrap(),
            source.links(None, 10).await.unwrap()
        );
        assert_eq!(dst.counts().await.unwrap().uploads, 0);

        // A tag that already points elsewhere on the target is kept.
        let mut tx = target.begin().await.unwrap();
        let mut moved = source.tags(None, 1).await.unwrap().remove(0);
        moved.digest = "sha256:other".into();
        assert_eq!(
            tx.insert_tag(&moved).await.unwrap(),
            TagOutcome::Conflict(m.clone())
        );
        drop(tx);
        dst.close().await;
        source.close().await;
        target.close().await;
    }

    /// Identity rows of every table, a deleted user leaving a gap in the
    /// ids, and 1200 audit events (more than one page).
    async fn identity_source(url: &str) {
        use crate::{AuditEntry, MemberRef, NewRobot, NewUser};
        let meta = MetaStore::open(url).await.unwrap();
        let mut tx = meta.begin_identity().await.unwrap();
        let user = |name| NewUser {
            name,
            email: None,
            source: "local",
            external_id: None,
            password_hash: Some("$argon2id$hash"),
            system_admin: false,
        };
        tx.insert_user(NewUser {
            system_admin: true,
            ..user("admin")
        })
        .await
        .unwrap();
        let gone = tx.insert_user(user("gone")).await.unwrap().unwrap();
        let alice = tx.insert_user(user("alice")).await.unwrap().unwrap();
        tx.delete_user(gone).await.unwrap();
        let devs = tx
            .upsert_group("ldap", "cn=devs", Some("cn=devs"))
            .await
            .unwrap();
        tx.set_user_groups(alice, &[devs]).await.unwrap();
        let team = tx.insert_project("team", false).await.unwrap().unwrap();
        tx.set_member(team, MemberRef::User(alice), "developer")
            .await
            .unwrap();
        tx.set_member(team, MemberRef::Group(devs), "guest")
            .await
            .unwrap();
        tx.insert_robot(NewRobot {
            name: "robot$team+ci",
            description: "",
            project_id: Some(team),
            permissions: "[]",
            secret_hash: "sha256:robot",
            expires_at: None,
            created_by: "admin",
        })
        .await
        .unwrap();
        tx.insert_token(alice, "laptop", "sha256:token", None, Some(1))
            .await
            .unwrap();
        tx.insert_signing_key("kid-1", "ES256", "PEM", 7)
            .await
            .unwrap();
        for i in 0..1200 {
            tx.insert_audit(&AuditEntry {
                occurred_at: i,
                actor: "admin".into(),
                actor_kind: "user".into(),
                action: "push".into(),
                resource: format!("team/app:{i}"),
                project: Some("team".into()),
                result: "success".into(),
                source_addr: None,
                details: None,
            })
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let mut tx = meta.begin_identity().await.unwrap();
        let library = meta.project_by_name("library").await.unwrap().unwrap();
        tx.set_project_public(library.id, true).await.unwrap();
        tx.commit().await.unwrap();
        // The team's lifecycle policies: an immutable rule, a quota and a
        // retention policy (which move), and a retention run with an item
        // (history, which stays).
        let mut tx = meta.begin().await.unwrap();
        tx.insert_immutable_rule(
            team,
            crate::ImmutableRuleFields {
                repo_pattern: "**",
                repo_excludes: false,
                tag_pattern: "release-*",
                tag_excludes: false,
                disabled: false,
            },
            "admin",
        )
        .await
        .unwrap();
        tx.set_quota(team, 1 << 30, 100, 85).await.unwrap();
        tx.commit().await.unwrap();
        let rules = r#"[{"template":"latestPushedK","params":{"latestPushedK":3}}]"#;
        meta.put_retention_policy(team, rules, Some("0 0 0 * * *"), Some(86_400_000))
            .await
            .unwrap();
        let run = meta
            .insert_retention_execution(crate::NewRetentionExecution {
                project_id: team,
                trigger: "manual",
                dry_run: true,
                actor: "admin",
                rules,
            })
            .await
            .unwrap();
        meta.add_retention_items(
            run,
            &[crate::RetentionItemRow {
                seq: 0,
                repo: "team/app".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                tags: "[\"v1\"]".into(),
                action: "retain".into(),
                outcome: "retained".into(),
                rules: "[0]".into(),
                reason: "retained by rule 0".into(),
                pushed_at: 1,
                pulled_at: None,
            }],
        )
        .await
        .unwrap();
        meta.close().await;
    }

    async fn copy_identity(source: &mut ExportSource, target: &ImportTarget) -> Vec<(u64, u64)> {
        let (figures, conflicts) = source.identity_survey(Some(target)).await.unwrap();
        assert!(conflicts.is_empty(), "{conflicts:?}");
        let mut out = Vec::new();
        for (table, _, _) in figures {
            let got = source
                .copy_identity_table(target, table, 500, |_| {})
                .await
                .unwrap();
            out.push(got);
        }
        out
    }

    #[tokio::test]
    async fn identity_rows_move_with_their_ids_once() {
        let dir = tempfile::tempdir().unwrap();
        let src_url = format!("sqlite://{}", dir.path().join("src.db").display());
        identity_source(&src_url).await;
        let dst_url = format!("sqlite://{}", dir.path().join("dst.db").display());

        let mut source = ExportSource::open(&src_url).await.unwrap();
        // Not "unknown tables" any more; the retention history is left
        // behind on purpose, so it is no unknown table either.
        let others = source.other_tables().await.unwrap();
        assert!(
            others
                .iter()
                .all(|(t, _)| t != "users" && t != "audit_log" && !t.starts_with("retention_")),
            "{others:?}"
        );
        // A dry run on no target: only the seeded library is there.
        let (dry, conflicts) = source.identity_survey(None).await.unwrap();
        assert!(conflicts.is_empty());
        let expected = [
            ("users", 2, 0),
            ("groups", 1, 0),
            ("user_groups", 1, 0),
            ("projects", 2, 1),
            ("project_members", 2, 0),
            ("immutable_rules", 1, 0),
            ("project_quotas", 1, 0),
            ("retention_policies", 1, 0),
            ("robots", 1, 0),
            ("personal_access_tokens", 1, 0),
            ("signing_keys", 1, 0),
            ("audit_log", 1200, 0),
        ];
        assert_eq!(dry, expected);

        let target = ImportTarget::open(&dst_url).await.unwrap();
        let (before, _) = source.identity_survey(Some(&target)).await.unwrap();
        assert_eq!(before, expected);
        // An interrupted run that copied the users only: not rows of the
        // target's own, the next run goes on.
        assert_eq!(
            source
                .copy_identity_table(&target, "users", 1, |_| {})
                .await
                .unwrap(),
            (2, 2)
        );
        let (partial, conflicts) = source.identity_survey(Some(&target)).await.unwrap();
        assert!(conflicts.is_empty(), "{conflicts:?}");
        assert_eq!(partial[0], ("users", 2, 2));
        let moved = copy_identity(&mut source, &target).await;
        assert_eq!(
            moved,
            [
                (2, 0),
                (1, 1),
                (1, 1),
                (2, 1),
                (2, 2),
                (1, 1),
                (1, 1),
                (1, 1),
                (1, 1),
                (1, 1),
                (1, 1),
                (1200, 1200)
            ]
        );
        // Again: everything is there, nothing is written twice.
        let again = copy_identity(&mut source, &target).await;
        assert!(again.iter().all(|(_, written)| *written == 0), "{again:?}");
        let (after, _) = source.identity_survey(Some(&target)).await.unwrap();
        assert!(after.iter().all(|(_, total, present)| total == present));
        target.close().await;
        source.close().await;

        // Same ids, same rows; library took the source's settings; later
        // inserts get ids past the copied ones.
        let src = MetaStore::open(&src_url).await.unwrap();
        let dst = MetaStore::open(&dst_url).await.unwrap();
        let alice = src.user_by_name("alice").await.unwrap().unwrap();
        assert_eq!(
            dst.user_by_name("alice").await.unwrap(),
            Some(alice.clone())
        );
        assert_eq!(
            dst.project_by_name("library").await.unwrap(),
            src.project_by_name("library").await.unwrap()
        );
        assert!(
            dst.project_by_name("library")
                .await
                .unwrap()
                .unwrap()
                .public
        );
        let team = dst.project_by_name("team").await.unwrap().unwrap();
        assert_eq!(
            dst.member_roles(team.id, Some(alice.id), &[])
                .await
                .unwrap(),
            src.member_roles(team.id, Some(alice.id), &[])
                .await
                .unwrap()
        );
        assert_eq!(
            dst.token_by_hash("sha256:token").await.unwrap(),
            src.token_by_hash("sha256:token").await.unwrap()
        );
        assert_eq!(
            dst.signing_keys(0).await.unwrap(),
            src.signing_keys(0).await.unwrap()
        );
        // The lifecycle policies, exactly; the retention history stayed.
        assert_eq!(
            dst.immutable_rules(team.id).await.unwrap(),
            src.immutable_rules(team.id).await.unwrap()
        );
        assert_eq!(dst.immutable_rules(team.id).await.unwrap().len(), 1);
        assert_eq!(
            dst.quota(team.id).await.unwrap(),
            src.quota(team.id).await.unwrap()
        );
        let policy = src.retention_policy(team.id).await.unwrap();
        assert!(policy.is_some());
        assert_eq!(dst.retention_policy(team.id).await.unwrap(), policy);
        assert_eq!(
            src.retention_executions(team.id, None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            dst.retention_executions(team.id, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let mut tx = dst.begin_identity().await.unwrap();
        let bob = tx
            .insert_user(crate::NewUser {
                name: "bob",
                email: None,
                source: "local",
                external_id: None,
                password_hash: None,
                system_admin: false,
            })
            .await
            .unwrap()
            .unwrap();
        let other = tx.insert_project("other", false).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        assert!(bob > alice.id && other > team.id, "{bob} {other}");
        src.close().await;
        dst.close().await;
    }

    #[tokio::test]
    async fn a_target_with_identity_rows_of_its_own_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let src_url = format!("sqlite://{}", dir.path().join("src.db").display());
        identity_source(&src_url).await;
        // A node started on the target: its own admin and signing key.
        let dst_url = format!("sqlite://{}", dir.path().join("dst.db").display());
        let meta = MetaStore::open(&dst_url).await.unwrap();
        let mut tx = meta.begin_identity().await.unwrap();
        tx.insert_user(crate::NewUser {
            name: "admin",
            email: None,
            source: "local",
            external_id: None,
            password_hash: Some("$argon2id$other"),
            system_admin: true,
        })
        .await
        .unwrap();
        tx.insert_signing_key("kid-target", "ES256", "PEM2", 9)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        meta.close().await;
        // Make the admin's creation time surely differ from the source's.
        let pool = sqlx::AnyPool::connect(&dst_url).await.unwrap();
        sqlx::query("UPDATE users SET created_at = 1 WHERE name = 'admin'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        let mut source = ExportSource::open(&src_url).await.unwrap();
        let target = ImportTarget::open(&dst_url).await.unwrap();
        let (_, conflicts) = source.identity_survey(Some(&target)).await.unwrap();
        assert_eq!(conflicts.len(), 2, "{conflicts:?}");
        assert!(
            conflicts[0].starts_with("users: 1 row(s)") && conflicts[0].contains("name=\"admin\""),
            "{conflicts:?}"
        );
        assert!(
            conflicts[1].starts_with("signing_keys: 1 row(s)")
                && conflicts[1].contains("kid-target")
                && conflicts[1].contains("not in the source")
                && !conflicts[1].contains("PEM"),
            "{conflicts:?}"
        );
        target.close().await;
        source.close().await;
    }

    #[tokio::test]
    async fn a_source_without_the_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = format!("sqlite://{}", dir.path().join("none.db").display());
        assert!(ExportSource::open(&missing).await.is_err());
        assert!(!dir.path().join("none.db").exists());
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        let err = ExportSource::open(&format!("sqlite://{}", empty.display()))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("no Berth schema"), "{err}");
    }
}
