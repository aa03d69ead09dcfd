//! Group commit for SQLite's single writer.
//!
//! SQLite commits one transaction at a time, and with `synchronous=FULL`
//! each commit waits for a WAL fsync. Under concurrent pushes that fsync
//! (and, for blobs, the directory fsync that makes a blob's name durable)
//! is what writers queue for: sixteen clients each pushing a small blob
//! wait for sixteen fsyncs in a row.
//!
//! So the core's transactions (`MetaStore::begin`) share physical ones. A
//! physical transaction (`BEGIN IMMEDIATE`) stays open while callers queue
//! for the connection; each caller's transaction is a savepoint inside it,
//! released on `commit` or rolled back on drop, so one caller's failure
//! never undoes another's work. The last caller of a run (nobody else
//! waiting), or one that finds the batch full or old, issues the `COMMIT`
//! for all of them, after the batch's pre-commit work (`Tx::before_commit`:
//! the blob store's fsyncs, started in parallel as members ran) has
//! finished. Durability is unchanged: no caller's `commit` returns before
//! the `COMMIT` covering its work has returned, and a failed `COMMIT` or
//! pre-commit step is every member's failure.
//!
//! Callers are still serialized on the connection (each holds it for its
//! whole transaction, as before), so what SQLite's write lock guaranteed —
//! GC's digest exclusion (`Tx::lock_digests`) included — still holds;
//! members of a batch see each other's uncommitted rows, exactly as they
//! would see committed ones in the same order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use crate::{Error, Result};

/// A batch commits once it holds this many transactions...
const MAX_MEMBERS: usize = 64;
/// ...or has been open this long, so that writers outside the group (the
/// identity tables, jobs) wait on the pool's one connection no longer.
const MAX_AGE: Duration = Duration::from_millis(10);
/// How long a committed member waits before checking that somebody will
/// commit its batch (normally the last member of the run does at once).
const STALL_CHECK: Duration = Duration::from_millis(20);

/// Work that must finish before the `COMMIT` that depends on it.
pub(crate) type PreCommit =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<(), String>> + Send>>;

/// Group-committing access to the write pool (one connection).
#[derive(Clone)]
pub(crate) struct GroupWriter {
    pool: AnyPool,
    state: Arc<Mutex<State>>,
    /// Callers queued for `state` to begin: while any are, a committing
    /// member leaves the `COMMIT` to them.
    waiting: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    open: Option<Open>,
}

/// The physical transaction in progress.
struct Open {
    conn: PoolConnection<Any>,
    batch: Arc<Batch>,
    started: Instant,
    members: usize,
    /// A member dropped without `commit` left its savepoint open: rolled
    /// back before the connection runs anything else.
    abandoned: bool,
    pre_commit: Vec<PreCommit>,
}

/// One physical transaction's outcome, awaited by its members.
struct Batch {
    outcome: watch::Sender<Option<std::result::Result<(), String>>>,
}

/// One caller's transaction: the savepoint `member`, with the connection
/// held. Members run one at a time, so one name serves them all.
pub(crate) struct GroupTx {
    guard: Option<OwnedMutexGuard<State>>,
    writer: GroupWriter,
}

impl GroupWriter {
    pub(crate) fn new(pool: AnyPool) -> GroupWriter {
        GroupWriter {
            pool,
            state: Arc::default(),
            waiting: Arc::default(),
        }
    }

    pub(crate) async fn begin(&self) -> Result<GroupTx> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.state.clone().lock_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        settle_abandoned(&mut guard).await;
        match guard.open.as_mut() {
            Some(open) => {
                if let Err(e) = open.conn.execute("SAVEPOINT member").await {
                    fail(&mut guard, format!("opening a savepoint: {e}")).await;
                    return Err(e.into());
                }
            }
            None => {
                let mut conn = self.pool.acquire().await?;
                // One round trip to the connection's thread for both.
                if let Err(e) = conn.execute("BEGIN IMMEDIATE; SAVEPOINT member").await {
                    // Never hand the pool a connection left inside a
                    // transaction (the BEGIN may have run).
                    if conn.execute("ROLLBACK").await.is_err() {
                        let _ = conn.close().await;
                    }
                    return Err(e.into());
                }
                guard.open = Some(Open {
                    conn,
                    batch: Arc::new(Batch {
                        outcome: watch::channel(None).0,
                    }),
                    started: Instant::now(),
                    members: 0,
                    abandoned: false,
                    pre_commit: Vec::new(),
                });
            }
        }
        Ok(GroupTx {
            guard: Some(guard),
            writer: self.clone(),
        })
    }

    /// Commits `batch` if it is still the open one (a member waited too
    /// long, or one was dropped with nobody queued behind it).
    async fn close(&self, batch: &Arc<Batch>) {
        let mut guard = self.state.clone().lock_owned().await;
        if guard
            .open
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(&o.batch, batch))
        {
            flush(&mut guard, false).await;
        }
    }
}

impl GroupTx {
    fn open(&mut self) -> &mut Open {
        self.guard
            .as_mut()
            .and_then(|g| g.open.as_mut())
            .expect("a member's batch is open while it runs")
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.open().conn
    }

    /// Runs `work` to completion before the batch commits, whatever becomes
    /// of this member.
    pub(crate) fn before_commit(&mut self, work: PreCommit) {
        self.open().pre_commit.push(work);
    }

    /// Releases the savepoint, then returns once the batch holding it has
    /// committed (durably) or failed.
    pub(crate) async fn commit(mut self) -> Result<()> {
        let mut guard = self.guard.take().expect("not yet committed");
        let open = guard.open.as_mut().expect("a member's batch is open");
        open.members += 1;
        let batch = open.batch.clone();
        let last = self.writer.waiting.load(Ordering::SeqCst) == 0
            || open.members >= MAX_MEMBERS
            || open.started.elapsed() >= MAX_AGE;
        if last {
            // RELEASE and COMMIT in one round trip when nothing else must
            // run in between.
            flush(&mut guard, true).await;
        } else if let Err(e) = open.conn.execute("RELEASE SAVEPOINT member").await {
            // The connection failed under a member: nothing in the batch
            // can be trusted to commit.
            fail(&mut guard, format!("releasing a savepoint: {e}")).await;
        }
        drop(guard);
        let mut outcome = batch.outcome.subscribe();
        loop {
            if let Some(result) = outcome.borrow_and_update().clone() {
                return result.map_err(Error::CommitFailed);
            }
            match tokio::time::timeout(STALL_CHECK, outcome.changed()).await {
                Ok(Ok(())) => {}
                // Only a batch that was dropped unfinished ends like this.
                Ok(Err(_)) => {
                    return Err(Error::CommitFailed(
                        "the batch ended without committing".into(),
                    ));
                }
                Err(_) => self.writer.close(&batch).await,
            }
        }
    }
}

impl Drop for GroupTx {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        let Some(open) = guard.open.as_mut() else {
            return;
        };
        open.abandoned = true;
        let batch = open.batch.clone();
        drop(guard);
        // Somebody must close the batch: a queued caller will; otherwise a
        // task does, so that the connection (and SQLite's write lock) is
        // not held with nobody to release it.
        if self.writer.waiting.load(Ordering::SeqCst) == 0
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let writer = self.writer.clone();
            runtime.spawn(async move { writer.close(&batch).await });
        }
    }
}

/// Rolls back a dropped member's savepoint. If that fails the physical
/// transaction is in an unknown state: the whole batch fails.
async fn settle_abandoned(state: &mut State) {
    let Some(open) = state.open.as_mut() else {
        return;
    };
    if !std::mem::take(&mut open.abandoned) {
        return;
    }
    let undo = "ROLLBACK TO SAVEPOINT member; RELEASE SAVEPOINT member";
    if let Err(e) = open.conn.execute(undo).await {
        fail(state, format!("rolling back a dropped transaction: {e}")).await;
    }
}

/// Commits the open batch and tells its members. `release`: the member
/// that calls still holds its savepoint.
async fn flush(state: &mut State, release: bool) {
    settle_abandoned(state).await;
    let Some(open) = state.open.as_mut() else {
        return;
    };
    for work in std::mem::take(&mut open.pre_commit) {
        if let Err(e) = work.await {
            fail(state, format!("before commit: {e}")).await;
            return;
        }
    }
    let sql = if release {
        "RELEASE SAVEPOINT member; COMMIT"
    } else {
        "COMMIT"
    };
    let Some(mut open) = state.open.take() else {
        return;
    };
    match open.conn.execute(sql).await {
        Ok(_) => {
            open.batch.outcome.send_replace(Some(Ok(())));
        }
        Err(e) => {
            state.open = Some(open);
            fail(state, format!("commit: {e}")).await;
        }
    }
}

/// Rolls the open batch back and fails every member. A connection that
/// cannot even roll back is closed, so the pool opens a clean one.
async fn fail(state: &mut State, why: String) {
    let Some(mut open) = state.open.take() else {
        return;
    };
    tracing::error!(error = %why, members = open.members, "metadata group commit failed");
    open.batch.outcome.send_replace(Some(Err(why)));
    if open.conn.execute("ROLLBACK").await.is_err() {
        let _ = open.conn.close().await;
    }
}
