//! Runs an operation from N concurrent workers, for a count or a duration,
//! counting successes, bytes, errors and latencies.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::stats::Outcome;

/// How many error messages a run keeps to show.
const KEEP_ERRORS: usize = 5;

/// Where a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Run operations `0..n` once each.
    Count(u64),
    /// Start operations until this much time has passed.
    For(Duration),
}

/// A finished run: the counts and the first few error messages.
#[derive(Debug, Default)]
pub struct Run {
    pub outcome: Outcome,
    pub first_errors: Vec<String>,
}

/// Runs `op(index)` from `concurrency` workers until `limit`. Each call
/// returns the bytes it moved; an `Err` counts as one error (its latency
/// is not recorded). Indexes are unique across workers. With
/// `Limit::For`, each worker does at least one operation.
pub async fn run<F, Fut>(concurrency: usize, limit: Limit, op: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = match limit {
        Limit::For(d) => Some(start + d),
        Limit::Count(_) => None,
    };
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let op = op.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            let mut w = Run::default();
            loop {
                // A timed run still does at least one operation per worker.
                let done = w.outcome.ops + w.outcome.errors;
                if let Some(d) = deadline
                    && done > 0
                    && Instant::now() >= d
                {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if let Limit::Count(n) = limit
                    && i >= n
                {
                    break;
                }
                let t0 = Instant::now();
                match op(i).await {
                    Ok(bytes) => {
                        w.outcome.ops += 1;
                        w.outcome.bytes += bytes;
                        w.outcome
                            .latencies_ms
                            .push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    Err(e) => {
                        w.outcome.errors += 1;
                        if w.first_errors.len() < KEEP_ERRORS {
                            w.first_errors.push(format!("{e:#}"));
                        }
                    }
                }
            }
            w
        }));
    }
    let mut total = Run::default();
    for h in handles {
        match h.await {
            Ok(w) => total.merge(w),
            Err(e) => {
                total.outcome.errors += 1;
                total.first_errors.push(format!("worker panicked: {e}"));
            }
        }
    }
    total.outcome.seconds = start.elapsed().as_secs_f64();
    total
}

impl Run {
    fn merge(&mut self, w: Run) {
        self.outcome.ops += w.outcome.ops;
        self.outcome.bytes += w.outcome.bytes;
        self.outcome.errors += w.outcome.errors;
        self.outcome.latencies_ms.extend(w.outcome.latencies_ms);
        for e in w.first_errors {
            if self.first_errors.len() < KEEP_ERRORS {
                self.first_errors.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    #[tokio::test]
    async fn counts_every_index_once_and_errors() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let r = run(4, Limit::Count(100), move |i| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(i);
                if i % 10 == 3 {
                    bail!("op {i} failed");
                }
                Ok(10)
            }
        })
        .await;
        assert_eq!(r.outcome.ops, 90);
        assert_eq!(r.outcome.errors, 10);
        assert_eq!(r.outcome.bytes, 900);
        assert_eq!(r.outcome.latencies_ms.len(), 90);
        assert_eq!(r.first_errors.len(), KEEP_ERRORS);
        let mut v = seen.lock().unwrap().clone();
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn runs_for_a_duration() {
        let r = run(2, Limit::For(Duration::from_millis(50)), |_| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(1)
        })
        .await;
        assert!(r.outcome.ops >= 2);
        assert_eq!(r.outcome.errors, 0);
        assert!(r.outcome.seconds >= 0.05);
    }
}
