//! Opening the database and the read-only queries, served from a read pool
//! so they never queue behind writers.

use std::path::Path;
use std::str::FromStr;

use berth_oci::{Digest, RepoName, Tag};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

use crate::group::GroupWriter;
use crate::{Error, Result, Tx};

/// Wraps a query of one ordered `name` column so that the page comes back as
/// one newline-joined row. A page holds up to 10,000 names and sqlx hands
/// rows over one at a time (a channel message each on SQLite), which cost
/// more than the query itself; repository names and tags cannot hold a
/// newline, so the join is lossless.
fn joined_names(pool: &AnyPool, page: &str) -> String {
    let agg = if is_postgres(pool) {
        "string_agg(name, E'\\n' ORDER BY name)"
    } else {
        "group_concat(name, char(10) ORDER BY name)"
    };
    format!("SELECT COALESCE({agg}, '') FROM ({page}) AS page")
}

fn split_names(joined: String) -> Result<Vec<String>> {
    if joined.is_empty() {
        return Ok(Vec::new());
    }
    Ok(joined.split('\n').map(str::to_owned).collect())
}

pub(crate) fn is_postgres(pool: &AnyPool) -> bool {
    pool.connect_options()
        .database_url
        .scheme()
        .starts_with("postgres")
}

/// A manifest as stored: the exact bytes pushed plus what the API serves in
/// headers without re-parsing.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
    pub subject: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ManifestHead {
    pub media_type: String,
    pub size: u64,
    pub subject: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ReferrerRow {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub id: String,
    pub repo: String,
    pub created_at: i64,
    /// When a request last kept the session alive (`Tx::keep_upload_alive`).
    pub updated_at: i64,
}

#[derive(Clone)]
pub struct MetaStore {
    write: AnyPool,
    read: AnyPool,
    /// SQLite: the core's transactions share commits (see `group`).
    group: Option<GroupWriter>,
}

/// A failed first connection, with a hint when TLS is what failed.
fn connect_error(e: sqlx::Error) -> Error {
    let text = e.to_string();
    if text.contains("invalid peer certificate") {
        return Error::Tls(format!(
            "{text}: the server's certificate is not trusted. With sslmode=verify-ca or \
             verify-full it must chain to the CA in sslrootcert (without sslrootcert: to a \
             public root), and verify-full also checks the host name against it"
        ));
    }
    match e {
        sqlx::Error::Tls(_) => Error::Tls(text),
        e => Error::Db(e),
    }
}

impl MetaStore {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<MetaStore> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let options = AnyConnectOptions::from_str(&url)?;
        // WAL lets readers run beside the writer; synchronous=FULL makes every
        // commit durable before it returns, which the API promises clients.
        let pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                       PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000;";
        // SQLite has one writer at a time; a single write connection queues
        // writers in the pool instead of failing them with SQLITE_BUSY.
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(pragmas).await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        // Migrations commit at synchronous=NORMAL: in WAL mode that keeps
        // the database consistent and may lose only the last commits on
        // power loss; a lost migration runs again at the next start (its
        // _sqlx_migrations row commits with it). The first FULL commit after
        // them syncs the WAL, migrations included. A first start makes about
        // twenty commits here: twenty fsyncs saved.
        sqlx::query("PRAGMA synchronous=NORMAL")
            .execute(&write)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        sqlx::query("PRAGMA synchronous=FULL")
            .execute(&write)
            .await?;
        let read = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(pragmas).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(MetaStore {
            group: Some(GroupWriter::new(write.clone())),
            write,
            read,
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://user:pass@host:port/db`)
    /// and migrates it. Several nodes may share the database.
    ///
    /// The URL's libpq-style parameters reach sqlx unchanged: `sslmode`
    /// (`disable`, `prefer` (the default), `require`, `verify-ca`,
    /// `verify-full`), `sslrootcert` (the CA to trust instead of the public
    /// roots), `sslcert`/`sslkey` (client certificate), `application_name`.
    /// TLS is rustls on aws-lc-rs.
    pub async fn open_postgres(url: &str) -> Result<MetaStore> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        // Several nodes may start at once; sqlx's migrator takes an advisory
        // lock on PostgreSQL so exactly one applies each migration.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(MetaStore {
            write: pool.clone(),
            read: pool,
            group: None,
        })
    }

    /// Opens the store a URL names: `sqlite://PATH` or `postgres://…`.
    pub async fn open(url: &str) -> Result<MetaStore> {
        if let Some(path) = crate::sqlite_path(url) {
            MetaStore::open_sqlite(path).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            MetaStore::open_postgres(url).await
        } else {
            Err(Error::Url(format!(
                "metadata URL {url:?} is neither sqlite:// nor postgres://"
            )))
        }
    }

    /// Opens a write transaction. On SQLite it is a member of a group
    /// commit whose physical transaction holds the database write lock
    /// (`BEGIN IMMEDIATE`): another process (`berth gc`) cannot commit
    /// between its reads and its writes, and, as members run one at a time,
    /// it holds the per-digest lock of `Tx::lock_digests` for every digest.
    pub async fn begin(&self) -> Result<Tx> {
        if let Some(group) = &self.group {
            return Ok(Tx::grouped(group.begin().await?));
        }
        Ok(Tx::own(self.write.begin().await?))
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    pub async fn ready(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.read).await?;
        Ok(())
    }

    pub async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.is_some())
    }

    /// Size of `digest` if it is linked to `repo`.
    pub async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest \
             WHERE l.repo = $1 AND l.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| r.try_get::<i64, _>(0).map(|s| s as u64))
            .transpose()
            .map_err(Error::from)
    }

    pub async fn tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let row = sqlx::query("SELECT digest FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| parse_digest(&r.try_get::<String, _>(0)?))
            .transpose()
    }

    /// The manifest a tag points at, with what headers need, in one query.
    pub async fn tagged_manifest_head(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<(Digest, ManifestHead)>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.subject FROM tags t \
             JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest \
             WHERE t.repo = $1 AND t.name = $2",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let digest = parse_digest(&row.try_get::<String, _>(0)?)?;
        Ok(Some((
            digest,
            ManifestHead {
                media_type: row.try_get(1)?,
                size: row.try_get::<i64, _>(2)? as u64,
                subject: row.try_get(3)?,
            },
        )))
    }

    /// What headers need about a manifest, without its bytes.
    pub async fn manifest_head(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestHead>> {
        let row = sqlx::query(
            "SELECT media_type, size, subject FROM manifests WHERE repo = $1 AND digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ManifestHead {
            media_type: row.try_get(0)?,
            size: row.try_get::<i64, _>(1)? as u64,
            subject: row.try_get(2)?,
        }))
    }

    pub async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        let row = sqlx::query(
            "SELECT media_type, body, subject FROM manifests WHERE repo = $1 AND digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredManifest {
            digest: digest.clone(),
            media_type: row.try_get(0)?,
            body: row.try_get(1)?,
            subject: row.try_get(2)?,
        }))
    }

    /// Up to `n` tags of `repo` sorted after `last`, in lexical order.
    pub async fn tags(&self, repo: &RepoName, last: Option<&str>, n: i64) -> Result<Vec<String>> {
        let sql = joined_names(
            &self.read,
            "SELECT name FROM tags WHERE repo = $1 AND name > $2 ORDER BY name LIMIT $3",
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(repo.as_str())
            .bind(last.unwrap_or(""))
            .bind(n)
            .fetch_one(&self.read)
            .await?;
        split_names(row.try_get(0)?)
    }

    pub async fn repositories(&self, last: Option<&str>, n: i64) -> Result<Vec<String>> {
        // Repositories appear once they hold a manifest, as in Distribution; an
        // upload session alone does not make a repository worth listing.
        let sql = joined_names(
            &self.read,
            "SELECT r.name FROM repositories r WHERE r.name > $1 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo = r.name) ORDER BY r.name LIMIT $2",
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(last.unwrap_or(""))
            .bind(n)
            .fetch_one(&self.read)
            .await?;
        split_names(row.try_get(0)?)
    }

    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRow>> {
        let rows = sqlx::query(
            "SELECT digest, media_type, size, artifact_type, annotations FROM manifests \
             WHERE repo = $1 AND subject = $2 AND ($3 = '' OR artifact_type = $3) ORDER BY digest",
        )
        .bind(repo.as_str())
        .bind(subject.as_str())
        .bind(artifact_type.unwrap_or(""))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReferrerRow {
                    digest: r.try_get(0)?,
                    media_type: r.try_get(1)?,
                    size: r.try_get(2)?,
                    artifact_type: r.try_get(3)?,
                    annotations: r.try_get(4)?,
                })
            })
            .collect()
    }

    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>> {
        let row = sqlx::query("SELECT id, repo, created_at, updated_at FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(UploadRow {
                id: r.try_get(0)?,
                repo: r.try_get(1)?,
                created_at: r.try_get(2)?,
                updated_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Counts for tests and diagnostics: rows per table.
    pub async fn table_counts(&self) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for table in [
            "repositories",
            "blobs",
            "repo_blobs",
            "manifests",
            "manifest_refs",
            "tags",
            "uploads",
        ] {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"
            )))
            .fetch_one(&self.read)
            .await?;
            out.push((table.to_string(), row.try_get(0)?));
        }
        Ok(out)
    }

    /// The write and read pools, for this crate's other modules (`jobs`),
    /// which keep their SQL beside their own types.
    pub(crate) fn pools(&self) -> (&AnyPool, &AnyPool) {
        (&self.write, &self.read)
    }
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| Error::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migrations run at synchronous=NORMAL; every commit after them must be
    /// durable again (FULL is 2), on the write connection and on readers.
    #[tokio::test]
    async fn commits_after_the_migrations_are_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open_sqlite(&dir.path().join("meta.db"))
            .await
            .unwrap();
        let (write, read) = store.pools();
        for pool in [write, read] {
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(level, 2);
        }
        store.close().await;
    }
}
