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

/// Milliseconds since the Unix epoch, the unit of every timestamp column.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
