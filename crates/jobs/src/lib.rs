//! Background work that runs once in the cluster, not once per node (issue 3
//! item 5, STYLE §9.8): upload reaping now; garbage collection, retention and
//! scans later.
//!
//! - A [`Worker`] does one kind of job; its name is the job's `kind` in the
//!   metadata database. A worker with a period is scheduled once per period
//!   for the whole cluster.
//! - The [`Runner`] polls the database: it enqueues this period's job of each
//!   due schedule (only the node that advances the schedule does), claims
//!   jobs under a lease that it renews while they run, records the outcome
//!   (retries with exponential backoff), keeps each worker's
//!   [`WorkerStatus`] and exports metrics. A node that dies mid-job stops
//!   renewing; when the lease runs out another node runs the job again.
//! - [`UploadReaper`] is the first worker.
//!
//! The queue lives in the database (`berth_meta`'s `jobs` and
//! `job_schedules`), never in a node's memory, so nodes are stateless and
//! any of them may stop at any time. Delivery is at least once: a job whose
//! node stalls past its lease can run twice, so workers must be idempotent.
//! This crate never serves HTTP; the server spawns the runner and stops it
//! on shutdown through a [`CancellationToken`].

mod gc;
mod reaper;
mod retention;
mod runner;

use std::time::Duration;

pub use gc::GarbageCollector;
pub use reaper::UploadReaper;
pub use retention::RetentionScheduler;
pub use runner::{Runner, RunnerConfig, StatusBoard, WorkerStatus};
pub use tokio_util::sync::CancellationToken;

/// Why a job's attempt failed; its text is recorded as the job's
/// `last_error` and in the worker's status.
pub type WorkError = Box<dyn std::error::Error + Send + Sync>;

/// One kind of background job (garage's `Worker`, with the waiting and the
/// status kept by the [`Runner`], since the queue is in the database).
#[async_trait::async_trait]
pub trait Worker: Send + Sync + 'static {
    /// The job kind: its name in the `jobs` table, in logs and in metrics.
    fn name(&self) -> &'static str;

    /// Run once per this period somewhere in the cluster. `None`: only jobs
    /// someone enqueued run.
    fn period(&self) -> Option<Duration> {
        None
    }

    /// Does one job. `payload` is what was enqueued (periodic jobs get
    /// `{"scheduled_for":MILLIS}`). When `cancel` fires (shutdown, or the
    /// lease was lost to another node) the worker should return soon,
    /// `Ok` if what it did so far is consistent.
    async fn work(&self, payload: &str, cancel: CancellationToken) -> Result<(), WorkError>;
}

/// A name for this process among the cluster's nodes, recorded as
/// `locked_by` on the jobs it claims: host, process id and a random part.
pub fn node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "berth".to_string());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}
