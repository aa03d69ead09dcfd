//! The job queue and the runner on SQLite and on the real PostgreSQL:
//! concurrent claimers each get different jobs, every job runs once, a dead
//! node's lease runs out and another node finishes its job, failures back
//! off and retry, and a periodic job runs once per period across nodes.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_jobs::{CancellationToken, Runner, RunnerConfig, WorkError, Worker};
use berth_meta::{JobStatus, MetaStore, now_millis};
use common::Db;

on_both_backends!(
    concurrent_claims_are_exclusive,
    runners_on_several_nodes_run_each_job_once,
    expired_lease_is_reclaimed_and_fenced,
    dead_node_job_is_finished_by_another_node,
    failures_back_off_then_succeed,
    schedule_periods_are_won_once,
    periodic_job_runs_once_per_period_across_three_runners,
);

/// Records the payload of every job it runs.
#[derive(Clone)]
struct Recorder {
    kind: &'static str,
    period: Option<Duration>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn new(kind: &'static str) -> Recorder {
        Recorder {
            kind,
            period: None,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Worker for Recorder {
    fn name(&self) -> &'static str {
        self.kind
    }

    fn period(&self) -> Option<Duration> {
        self.period
    }

    async fn work(&self, payload: &str, _cancel: CancellationToken) -> Result<(), WorkError> {
        self.seen.lock().unwrap().push(payload.to_string());
        // Long enough that other runners poll while this one works.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }
}

fn fast_config() -> RunnerConfig {
    RunnerConfig {
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(30),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
        ..RunnerConfig::default()
    }
}

async fn enqueue_many(meta: &MetaStore, kind: &str, n: usize) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    for i in 0..n {
        ids.insert(
            meta.enqueue_job(kind, &format!("job-{i}"), 0, 5)
                .await
                .unwrap(),
        );
    }
    ids
}

/// Waits until `check` holds, failing after `timeout`.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------

/// 4 nodes (own pools) × 4 tasks race to claim 240 jobs: every job is
/// claimed exactly once and completes.
async fn concurrent_claims_are_exclusive(db: &Db) {
    let first = db.open().await;
    let ids = enqueue_many(&first, "race", 240).await;
    let claimed = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..4 {
        let meta = if n == 0 {
            first.clone()
        } else {
            db.open().await
        };
        for t in 0..4 {
            let meta = meta.clone();
            let claimed = claimed.clone();
            let node = format!("node-{n}-{t}");
            tasks.push(tokio::spawn(async move {
                while let Some(job) = meta
                    .claim_job(&node, &["race", "other"], now_millis(), 30_000)
                    .await
                    .unwrap()
                {
                    assert_eq!(job.attempt, 1);
                    claimed.lock().unwrap().push(job.id);
                    assert!(meta.complete_job(&job).await.unwrap(), "{job:?}");
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut claimed = claimed.lock().unwrap().clone();
    claimed.sort();
    let unique: BTreeSet<i64> = claimed.iter().copied().collect();
    assert_eq!(unique.len(), claimed.len(), "a job was claimed twice");
    assert_eq!(unique, ids);
    for row in first.jobs("race", 1000).await.unwrap() {
        assert_eq!(row.status, JobStatus::Done, "{row:?}");
        assert_eq!(row.attempts, 1);
        assert_eq!(row.locked_by, None);
    }
    // Kinds are filtered: nothing else was claimable.
    let other = first.enqueue_job("unclaimed", "{}", 0, 1).await.unwrap();
    assert!(
        first
            .claim_job("n", &["race"], now_millis(), 1000)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        first.job(other).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
}

/// Three runners, each on its own pools, drain one queue together.
async fn runners_on_several_nodes_run_each_job_once(db: &Db) {
    let meta = db.open().await;
    enqueue_many(&meta, "count", 90).await;
    let recorder = Recorder::new("count");
    let cancel = CancellationToken::new();
    let mut handles = Vec::new();
    for n in 0..3 {
        let runner = Runner::new(db.open().await, format!("node-{n}"), fast_config())
            .with_worker(recorder.clone());
        handles.push(runner.spawn(cancel.clone()));
    }
    eventually(Duration::from_secs(30), "all jobs ran", || async {
        meta.jobs("count", 1000)
            .await
            .unwrap()
            .iter()
            .all(|j| j.status == JobStatus::Done)
    })
    .await;
    cancel.cancel();
    for h in handles {
        h.await.unwrap();
    }
    let mut seen = recorder.seen();
    seen.sort();
    let expected: Vec<String> = {
        let mut v: Vec<String> = (0..90).map(|i| format!("job-{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(seen, expected, "each job runs exactly once");
}

/// A claim holds until its lease ends; then another node re-claims the job
/// (one more attempt), and the first node can no longer record anything.
async fn expired_lease_is_reclaimed_and_fenced(db: &Db) {
    let a = db.open().await;
    let b = db.open().await;
    let t = now_millis();
    let id = a.enqueue_job("lease", "{}", 0, 3).await.unwrap();
    let mut first = a
        .claim_job("node-a", &["lease"], t, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.id, first.attempt), (id, 1));
    let row = a.job(id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Running);
    assert_eq!(row.locked_by.as_deref(), Some("node-a"));
    assert_eq!(row.locked_until, Some(t + 1000));

    // Within the lease: nobody else gets it.
    assert!(
        b.claim_job("node-b", &["lease"], t + 999, 1000)
            .await
            .unwrap()
            .is_none()
    );
    // Node A dies (stops renewing). After the lease, B takes over.
    let second = b
        .claim_job("node-b", &["lease"], t + 1001, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.id, second.attempt), (id, 2));
    let row = b.job(id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 2);
    assert_eq!(row.locked_by.as_deref(), Some("node-b"));
    assert!(
        row.last_error
            .as_deref()
            .is_some_and(|e| e.contains("node-a") && e.contains("expired")),
        "{row:?}"
    );

    // A comes back: its claim is fenced off.
    assert!(!a.extend_job_lease(&mut first, t + 5000).await.unwrap());
    assert!(!a.complete_job(&first).await.unwrap());
    assert_eq!(a.fail_job(&first, "late", t).await.unwrap(), None);
    assert!(!a.release_job(&first).await.unwrap());
    assert_eq!(b.job(id).await.unwrap().unwrap().status, JobStatus::Running);

    assert!(b.complete_job(&second).await.unwrap());
    let row = b.job(id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Done);
    assert_eq!(row.locked_by, None);

    // A job whose last attempt's lease runs out fails instead of running again.
    let id = a.enqueue_job("lease", "{}", 0, 1).await.unwrap();
    let t = now_millis();
    let only = a
        .claim_job("node-a", &["lease"], t, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(only.id, id);
    assert!(
        b.claim_job("node-b", &["lease"], t + 200, 100)
            .await
            .unwrap()
            .is_none()
    );
    let row = b.job(id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Failed, "{row:?}");
    assert!(row.last_error.unwrap().contains("last attempt"));

    // A renewed lease holds past its first end.
    let id = a.enqueue_job("lease", "{}", 0, 3).await.unwrap();
    let t = now_millis();
    let mut held = a
        .claim_job("node-a", &["lease"], t, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.id, id);
    assert!(a.extend_job_lease(&mut held, t + 10_000).await.unwrap());
    assert!(
        b.claim_job("node-b", &["lease"], t + 5000, 100)
            .await
            .unwrap()
            .is_none()
    );
    // Released at shutdown: claimable at once, and the attempt is not counted.
    assert!(a.release_job(&held).await.unwrap());
    let again = b
        .claim_job("node-b", &["lease"], now_millis(), 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempt), (id, 1));
}

/// Runs until its token fires, then never returns: a node that hangs, then
/// is killed.
struct Hang {
    started: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl Worker for Hang {
    fn name(&self) -> &'static str {
        "death"
    }

    async fn work(&self, _payload: &str, _cancel: CancellationToken) -> Result<(), WorkError> {
        self.started.notify_one();
        std::future::pending().await
    }
}

/// Node A's runner claims a job and keeps renewing its lease while it is
/// alive (node B must not steal it), then A is killed (its task aborted: no
/// release, no renewal). Once the lease runs out, B runs the job.
async fn dead_node_job_is_finished_by_another_node(db: &Db) {
    let meta = db.open().await;
    let id = meta.enqueue_job("death", "victim", 0, 5).await.unwrap();
    let config = RunnerConfig {
        lease: Duration::from_millis(600),
        ..fast_config()
    };
    let started = Arc::new(tokio::sync::Notify::new());
    let a = Runner::new(db.open().await, "node-a", config.clone()).with_worker(Hang {
        started: started.clone(),
    });
    let a = a.spawn(CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("node A started the job");

    let recorder = Recorder::new("death");
    let cancel = CancellationToken::new();
    let b = Runner::new(db.open().await, "node-b", config).with_worker(recorder.clone());
    let b = b.spawn(cancel.clone());
    // Three lease lengths: A's renewals keep the job.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(recorder.seen().is_empty(), "node B stole a live lease");
    let row = meta.job(id).await.unwrap().unwrap();
    assert_eq!(row.locked_by.as_deref(), Some("node-a"));
    assert_eq!(row.attempts, 1);

    a.abort();
    let _ = a.await;
    eventually(
        Duration::from_secs(15),
        "node B finished the job",
        || async { meta.job(id).await.unwrap().unwrap().status == JobStatus::Done },
    )
    .await;
    cancel.cancel();
    b.await.unwrap();
    assert_eq!(recorder.seen(), ["victim"]);
    let row = meta.job(id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 2);
    assert!(row.last_error.unwrap().contains("node-a"));
}

/// Fails its first `failures` attempts.
struct Flaky {
    kind: &'static str,
    failures: u32,
    calls: Arc<Mutex<u32>>,
}

#[async_trait::async_trait]
impl Worker for Flaky {
    fn name(&self) -> &'static str {
        self.kind
    }

    async fn work(&self, _payload: &str, _cancel: CancellationToken) -> Result<(), WorkError> {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        if *calls <= self.failures {
            return Err(format!("boom {calls}").into());
        }
        Ok(())
    }
}

async fn failures_back_off_then_succeed(db: &Db) {
    let meta = db.open().await;
    // A backoff long enough that "not claimable during the backoff" holds
    // on a loaded machine (at 50 ms it once did not, under a full CI run).
    let config = RunnerConfig {
        backoff_base: Duration::from_millis(500),
        backoff_max: Duration::from_secs(1),
        ..fast_config()
    };
    let runner = Runner::new(meta.clone(), "node", config).with_worker(Flaky {
        kind: "flaky",
        failures: 2,
        calls: Arc::default(),
    });
    let status = runner.status();
    let cancel = CancellationToken::new();
    let id = meta.enqueue_job("flaky", "{}", 0, 5).await.unwrap();

    let before = now_millis();
    assert_eq!(runner.run_pending(&cancel).await.unwrap(), 1);
    let row = meta.job(id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Queued, "{row:?}");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error.as_deref(), Some("boom 1"));
    assert!(row.not_before >= before + 500, "backoff: {row:?}");
    let s = status.get("flaky").unwrap();
    assert_eq!((s.runs, s.failures, s.consecutive_errors), (1, 1, 1));
    assert_eq!(s.last_error.as_deref(), Some("boom 1"));
    // Not claimable during the backoff.
    assert_eq!(runner.run_pending(&cancel).await.unwrap(), 0);

    eventually(Duration::from_secs(10), "the job succeeded", || async {
        runner.run_pending(&cancel).await.unwrap();
        meta.job(id).await.unwrap().unwrap().status == JobStatus::Done
    })
    .await;
    let row = meta.job(id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 3);
    let s = status.get("flaky").unwrap();
    assert_eq!((s.runs, s.failures, s.consecutive_errors), (3, 2, 0));
    assert!(s.last_success_at.is_some() && !s.running);

    // Out of attempts: failed for good, with the last error.
    let runner = Runner::new(meta.clone(), "node", fast_config()).with_worker(Flaky {
        kind: "doomed",
        failures: u32::MAX,
        calls: Arc::default(),
    });
    let id = meta.enqueue_job("doomed", "{}", 0, 2).await.unwrap();
    eventually(Duration::from_secs(10), "the job gave up", || async {
        runner.run_pending(&cancel).await.unwrap();
        meta.job(id).await.unwrap().unwrap().status == JobStatus::Failed
    })
    .await;
    let row = meta.job(id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 2);
    assert_eq!(row.last_error.as_deref(), Some("boom 2"));
    assert_eq!(runner.status().get("doomed").unwrap().consecutive_errors, 2);
}

/// With the clock in the test's hands: many claimers on three nodes try to
/// advance one schedule in the same instant; exactly one wins each period.
async fn schedule_periods_are_won_once(db: &Db) {
    let nodes = [db.open().await, db.open().await, db.open().await];
    let t0 = 1_000_000;
    for n in &nodes {
        n.ensure_job_schedule("tick", 1000, t0).await.unwrap();
    }
    let s = nodes[0].job_schedule("tick").await.unwrap().unwrap();
    assert_eq!((s.period_ms, s.next_run_at), (1000, t0 + 1000));

    let race = |now: i64| {
        let nodes = nodes.clone();
        async move {
            let mut tasks = Vec::new();
            for n in nodes.iter() {
                for _ in 0..4 {
                    let n = n.clone();
                    tasks.push(tokio::spawn(async move {
                        n.enqueue_due_jobs(&["tick"], now, 3).await.unwrap()
                    }));
                }
            }
            let mut won = Vec::new();
            for t in tasks {
                won.extend(t.await.unwrap());
            }
            won
        }
    };
    assert!(race(t0 + 999).await.is_empty(), "not due yet");
    let won = race(t0 + 1500).await;
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(won[0].scheduled_for, t0 + 1000);
    let job = won[0].job.expect("a job for the period");
    let row = nodes[1].job(job).await.unwrap().unwrap();
    assert_eq!(row.payload, format!("{{\"scheduled_for\":{}}}", t0 + 1000));
    assert!(race(t0 + 1999).await.is_empty(), "one job per period");

    // The period's job is still queued: the next period folds into it.
    let won = race(t0 + 2000).await;
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(won[0].job, None);
    let claimed = nodes[2]
        .claim_job("n", &["tick"], now_millis(), 1000)
        .await
        .unwrap()
        .unwrap();
    assert!(nodes[2].complete_job(&claimed).await.unwrap());

    // After a long outage, one run, and the schedule keeps its phase.
    let won = race(t0 + 7500).await;
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(won[0].scheduled_for, t0 + 3000);
    assert!(won[0].job.is_some());
    let s = nodes[0].job_schedule("tick").await.unwrap().unwrap();
    assert_eq!(s.next_run_at, t0 + 8000);

    // A shorter period takes effect within one period; the same period is
    // a no-op.
    nodes[0]
        .ensure_job_schedule("tick", 100, t0 + 7600)
        .await
        .unwrap();
    let s = nodes[0].job_schedule("tick").await.unwrap().unwrap();
    assert_eq!((s.period_ms, s.next_run_at), (100, t0 + 7700));
    nodes[1]
        .ensure_job_schedule("tick", 100, t0 + 7650)
        .await
        .unwrap();
    assert_eq!(
        nodes[0]
            .job_schedule("tick")
            .await
            .unwrap()
            .unwrap()
            .next_run_at,
        t0 + 7700
    );
}

/// Three runners with the same periodic worker, each on its own pools, for
/// about eight periods: the job runs once per period, never twice.
async fn periodic_job_runs_once_per_period_across_three_runners(db: &Db) {
    let period = Duration::from_millis(400);
    let meta = db.open().await;
    let recorder = Recorder {
        period: Some(period),
        ..Recorder::new("tick")
    };
    let cancel = CancellationToken::new();
    let mut handles = Vec::new();
    let started = Instant::now();
    for n in 0..3 {
        let runner = Runner::new(db.open().await, format!("node-{n}"), fast_config())
            .with_worker(recorder.clone());
        handles.push(runner.spawn(cancel.clone()));
    }
    tokio::time::sleep(Duration::from_millis(3400)).await;
    cancel.cancel();
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed();

    let seen = recorder.seen();
    let slots: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(slots.len(), seen.len(), "a period ran twice: {seen:?}");
    let periods = (elapsed.as_millis() / period.as_millis()) as usize;
    assert!(
        seen.len() <= periods && seen.len() + 3 >= periods,
        "{} runs in {periods} periods: {seen:?}",
        seen.len()
    );
    // Each run is one distinct slot of the schedule, a period apart or more.
    let times: Vec<i64> = seen
        .iter()
        .map(|p| {
            p.trim_start_matches("{\"scheduled_for\":")
                .trim_end_matches('}')
                .parse()
                .unwrap()
        })
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    for w in sorted.windows(2) {
        assert!(w[1] - w[0] >= period.as_millis() as i64, "{sorted:?}");
    }
    let rows = meta.jobs("tick", 1000).await.unwrap();
    assert_eq!(rows.len(), seen.len());
    assert!(
        rows.iter()
            .all(|r| r.status == JobStatus::Done && r.attempts == 1),
        "{rows:?}"
    );
}
