//! The runner: one per node. It polls the metadata database for due
//! schedules and claimable jobs, runs them one at a time under a renewed
//! lease, and records what happened in the database, in its
//! [`StatusBoard`] and in metrics.
//!
//! It must not keep anything the cluster depends on in memory: the status
//! board is this node's view, for operators; the `jobs` table is the truth.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_meta::{ClaimedJob, JobStatus, MetaStore, now_millis};
use tokio::task::JoinHandle;

use crate::{CancellationToken, WorkError, Worker};

/// How the runner polls, leases and retries.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// How often the runner looks for due schedules and queued jobs.
    pub poll_interval: Duration,
    /// How long a claim holds without renewal. It is renewed every third of
    /// this while the job runs, so a node that dies gives its job back to
    /// the cluster after at most this long.
    pub lease: Duration,
    /// Attempts before a job fails for good.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles with each attempt.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a running job may take to stop once shutdown begins; then it
    /// is dropped and handed back for another node to run.
    pub shutdown_grace: Duration,
    /// Finished jobs are deleted this long after they finished.
    pub keep_finished: Duration,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            poll_interval: Duration::from_secs(5),
            lease: Duration::from_secs(60),
            max_attempts: 5,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(10),
            keep_finished: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl RunnerConfig {
    /// When attempt `attempt` (1-based) failed, the delay before the next.
    pub fn backoff(&self, attempt: i64) -> Duration {
        let doublings = attempt.saturating_sub(1).clamp(0, 30) as u32;
        self.backoff_base
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

/// What this node saw of one worker's runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStatus {
    pub name: String,
    /// A job of this kind is running on this node now.
    pub running: bool,
    /// Attempts finished here, successful or not.
    pub runs: u64,
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_errors: u64,
    pub last_error: Option<String>,
    /// Milliseconds since the epoch.
    pub last_started_at: Option<i64>,
    pub last_success_at: Option<i64>,
}

/// The workers' statuses on this node, shared with whoever shows them
/// (the future `/api/v1/jobs`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<BTreeMap<String, WorkerStatus>>>);

impl StatusBoard {
    pub fn snapshot(&self) -> Vec<WorkerStatus> {
        self.0
            .lock()
            .expect("status board poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<WorkerStatus> {
        self.0
            .lock()
            .expect("status board poisoned")
            .get(name)
            .cloned()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut WorkerStatus)) {
        let mut map = self.0.lock().expect("status board poisoned");
        let status = map.entry(name.to_string()).or_insert_with(|| WorkerStatus {
            name: name.to_string(),
            ..WorkerStatus::default()
        });
        f(status);
    }
}

/// How an attempt ended.
enum Outcome {
    Finished(Result<(), WorkError>),
    /// Shutdown outlasted the grace period; the job goes back to the queue.
    Abandoned,
}

/// How often finished jobs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Runner {
    meta: MetaStore,
    node: String,
    config: RunnerConfig,
    workers: BTreeMap<&'static str, Arc<dyn Worker>>,
    status: StatusBoard,
}

impl Runner {
    /// A runner for the node called `node` (see [`crate::node_id`]).
    pub fn new(meta: MetaStore, node: impl Into<String>, config: RunnerConfig) -> Runner {
        Runner {
            meta,
            node: node.into(),
            config,
            workers: BTreeMap::new(),
            status: StatusBoard::default(),
        }
    }

    /// Adds a worker; it replaces one with the same name.
    pub fn with_worker(mut self, worker: impl Worker) -> Runner {
        let name = worker.name();
        self.status.update(name, |_| {});
        self.workers.insert(name, Arc::new(worker));
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn status(&self) -> StatusBoard {
        self.status.clone()
    }

    pub fn spawn(self, cancel: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(cancel))
    }

    /// Polls and runs jobs until `cancel` fires. Database errors are logged
    /// and retried at the next poll; they never stop the runner.
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!(node = %self.node, workers = ?self.workers.keys().collect::<Vec<_>>(), "job runner started");
        let mut schedules_ready = false;
        let mut last_prune: Option<Instant> = None;
        while !cancel.is_cancelled() {
            if !schedules_ready {
                schedules_ready = self.ensure_schedules().await.map_err(runner_error).is_ok();
            }
            if schedules_ready {
                let _ = self.run_pending(&cancel).await.map_err(runner_error);
            }
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                let before = now_millis() - self.config.keep_finished.as_millis() as i64;
                if self
                    .meta
                    .prune_jobs(before)
                    .await
                    .map_err(runner_error)
                    .is_ok()
                {
                    last_prune = Some(Instant::now());
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = cancel.cancelled() => {}
            }
        }
        tracing::info!(node = %self.node, "job runner stopped");
    }

    /// Records the period of every periodic worker (the first run is one
    /// period from now unless the cluster already has a schedule).
    pub async fn ensure_schedules(&self) -> berth_meta::Result<()> {
        for worker in self.workers.values() {
            if let Some(period) = worker.period() {
                let period_ms = period.as_millis().max(1) as i64;
                self.meta
                    .ensure_job_schedule(worker.name(), period_ms, now_millis())
                    .await?;
            }
        }
        Ok(())
    }

    /// One pass: enqueues the due periodic jobs this node wins, then claims
    /// and runs jobs until none is claimable or `cancel` fires. Returns how
    /// many jobs ran.
    pub async fn run_pending(&self, cancel: &CancellationToken) -> berth_meta::Result<usize> {
        let periodic: Vec<&str> = self
            .workers
            .values()
            .filter(|w| w.period().is_some())
            .map(|w| w.name())
            .collect();
        let max_attempts = i64::from(self.config.max_attempts);
        for run in self
            .meta
            .enqueue_due_jobs(&periodic, now_millis(), max_attempts)
            .await?
        {
            tracing::debug!(kind = %run.kind, scheduled_for = run.scheduled_for, job = ?run.job,
                "periodic job scheduled");
        }
        let kinds: Vec<&str> = self.workers.keys().copied().collect();
        let lease_ms = self.config.lease.as_millis() as i64;
        let mut ran = 0;
        while !cancel.is_cancelled() {
            let Some(job) = self
                .meta
                .claim_job(&self.node, &kinds, now_millis(), lease_ms)
                .await?
            else {
                break;
            };
            self.execute(job, cancel).await;
            ran += 1;
        }
        Ok(ran)
    }

    async fn execute(&self, mut job: ClaimedJob, cancel: &CancellationToken) {
        let Some(worker) = self.workers.get(job.kind.as_str()).cloned() else {
            // Claims name only this runner's kinds; hand back anything else.
            let _ = self.meta.release_job(&job).await.map_err(runner_error);
            return;
        };
        let kind = worker.name();
        let started = Instant::now();
        self.status.update(kind, |s| {
            s.running = true;
            s.last_started_at = Some(now_millis());
        });
        tracing::debug!(job = job.id, kind, attempt = job.attempt, "job started");
        let outcome = self.supervise(&*worker, &mut job, cancel).await;
        let elapsed = started.elapsed();
        match outcome {
            Outcome::Finished(Ok(())) => self.succeeded(kind, &job, elapsed).await,
            Outcome::Finished(Err(error)) => self.failed(kind, &job, &error.to_string()).await,
            Outcome::Abandoned => {
                tracing::warn!(
                    job = job.id,
                    kind,
                    "job did not stop within the shutdown grace; handing it back"
                );
                let _ = self.meta.release_job(&job).await.map_err(runner_error);
            }
        }
        self.status.update(kind, |s| s.running = false);
    }

    /// Runs the worker while renewing the lease; on shutdown, waits up to
    /// the grace period for it to return.
    async fn supervise(
        &self,
        worker: &dyn Worker,
        job: &mut ClaimedJob,
        cancel: &CancellationToken,
    ) -> Outcome {
        // The worker's token also fires when the lease is lost to another node.
        let job_cancel = cancel.child_token();
        let payload = job.payload.clone();
        let work = worker.work(&payload, job_cancel.clone());
        tokio::pin!(work);
        let lease_ms = self.config.lease.as_millis() as i64;
        let every = (self.config.lease / 3).max(Duration::from_millis(10));
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let grace_over = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = &mut work => return Outcome::Finished(result),
                _ = renew.tick() => match self.meta.extend_job_lease(job, now_millis() + lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = job.id, kind = %job.kind, "job's lease was taken over; stopping it");
                        job_cancel.cancel();
                    }
                    Err(e) => runner_error(e),
                },
                _ = cancel.cancelled(), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + self.config.shutdown_grace);
                }
                _ = grace_over => return Outcome::Abandoned,
            }
        }
    }

    async fn succeeded(&self, kind: &'static str, job: &ClaimedJob, elapsed: Duration) {
        let now = now_millis();
        match self.meta.complete_job(job).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    job = job.id,
                    kind,
                    "job finished after its lease was taken over; result not recorded"
                );
            }
            Err(e) => runner_error(e),
        }
        tracing::debug!(
            job = job.id,
            kind,
            elapsed_ms = elapsed.as_millis() as u64,
            "job done"
        );
        metrics::counter!("berth_jobs_run_total", "kind" => kind).increment(1);
        metrics::histogram!("berth_job_duration_seconds", "kind" => kind)
            .record(elapsed.as_secs_f64());
        metrics::gauge!("berth_job_last_run_timestamp_seconds", "kind" => kind)
            .set(now as f64 / 1e3);
        metrics::gauge!("berth_job_last_success_timestamp_seconds", "kind" => kind)
            .set(now as f64 / 1e3);
        metrics::gauge!("berth_job_consecutive_errors", "kind" => kind).set(0.0);
        self.status.update(kind, |s| {
            s.runs += 1;
            s.consecutive_errors = 0;
            s.last_success_at = Some(now);
        });
    }

    async fn failed(&self, kind: &'static str, job: &ClaimedJob, error: &str) {
        let now = now_millis();
        let retry_at = now + self.config.backoff(job.attempt).as_millis() as i64;
        match self.meta.fail_job(job, error, retry_at).await {
            Ok(Some(JobStatus::Failed)) => tracing::error!(
                job = job.id,
                kind,
                attempt = job.attempt,
                error,
                "job failed for good after its last attempt"
            ),
            Ok(Some(_)) => tracing::warn!(
                job = job.id,
                kind,
                attempt = job.attempt,
                error,
                retry_at,
                "job failed; it will be retried"
            ),
            Ok(None) => tracing::warn!(
                job = job.id,
                kind,
                error,
                "job failed after its lease was taken over; result not recorded"
            ),
            Err(e) => runner_error(e),
        }
        metrics::counter!("berth_jobs_run_total", "kind" => kind).increment(1);
        metrics::counter!("berth_jobs_failed_total", "kind" => kind).increment(1);
        metrics::gauge!("berth_job_last_run_timestamp_seconds", "kind" => kind)
            .set(now as f64 / 1e3);
        let mut consecutive = 0;
        self.status.update(kind, |s| {
            s.runs += 1;
            s.failures += 1;
            s.consecutive_errors += 1;
            s.last_error = Some(error.to_string());
            consecutive = s.consecutive_errors;
        });
        metrics::gauge!("berth_job_consecutive_errors", "kind" => kind).set(consecutive as f64);
    }
}

/// A database error of the runner's own bookkeeping: logged and counted;
/// the next poll tries again (and an unrecorded claim's lease runs out).
fn runner_error(e: berth_meta::Error) {
    tracing::warn!(error = %e, "job runner: database error");
    metrics::counter!("berth_jobs_runner_errors_total").increment(1);
}
