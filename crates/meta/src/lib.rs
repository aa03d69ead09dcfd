//! The metadata store: repositories, blobs and their repository links,
//! manifests with their bytes, references, tags and upload sessions.
//!
//! All SQL lives here. Writes go through a [`Tx`] the core opens, so one use
//! case is one transaction (DESIGN.md, data rule 2). SQL is kept portable
//! (`$N` placeholders, BIGINT/TEXT types) because it runs through sqlx's Any
//! driver; SQLite is the embedded default.

mod export;
mod gc;
mod group;
mod identity;
mod jobs;
mod policy;
mod retention;
mod stats;
mod store;
mod tx;

pub use export::{
    BlobRow, ExportSource, ImportTarget, ImportTx, LinkRow, ManifestRefRow, ManifestRow,
    RepositoryRow, SourceCounts, TagOutcome, TagRow,
};
pub use gc::{GcRunRow, RepoRange, TakenTrash, TrashRow, digest_lock_key};
pub use identity::{
    AuditCursor, AuditEntry, AuditFilter, AuditRow, GroupRow, IdentityTx, MemberRef, MemberRow,
    NewRobot, NewUser, ProjectRow, RobotRow, SigningKeyRow, TokenRow, UserRow,
};
pub use jobs::{ClaimedJob, IdleUpload, JobRow, JobStatus, ScheduleRow, ScheduledRun};
pub use policy::{
    ImmutableRuleFields, ImmutableRuleRow, PendingDeletion, ProjectUsage, QuotaRow, UsageProbe,
};
pub use retention::{
    ArtifactRow, DueRetention, KEPT_EXECUTIONS, NewRetentionExecution, RetentionCounts,
    RetentionExecutionRow, RetentionItemRow, RetentionPolicyRow, TagPush,
};
pub use stats::{PullDelta, PullStats};
pub use store::{ManifestHead, MetaStore, ReferrerRow, StoredManifest, UploadRow};
pub use tx::{NewManifest, Tx};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Url(String),
    /// The TLS handshake with PostgreSQL failed (`sslmode`, `sslrootcert`).
    #[error("TLS to the database: {0}")]
    Tls(String),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    /// A commit failed, or the work it waited for (`Tx::before_commit`) did,
    /// or the shared commit of its group (see `group`): nothing of the
    /// transaction was committed.
    #[error("commit failed: {0}")]
    CommitFailed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `($1, …, $k), ($k+1, …)`: the placeholders of a multi-row `VALUES` of
/// `rows` rows of `columns` values each.
pub(crate) fn values_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The database file a `sqlite://PATH[?options]` URL names; `None` for
/// any other URL.
pub fn sqlite_path(url: &str) -> Option<&std::path::Path> {
    let rest = url.strip_prefix("sqlite://")?;
    Some(std::path::Path::new(rest.split('?').next().unwrap_or(rest)))
}

/// Milliseconds since the Unix epoch, the unit of every timestamp column.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite:///data/meta.db?mode=rwc"),
            Some(std::path::Path::new("/data/meta.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://meta.db"),
            Some(std::path::Path::new("meta.db"))
        );
        assert_eq!(sqlite_path("postgres://u:p@h/db?sslmode=require"), None);
    }

    #[test]
    fn values_rows_number_placeholders_row_by_row() {
        assert_eq!(values_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_rows(1, 1), "($1)");
    }
}
