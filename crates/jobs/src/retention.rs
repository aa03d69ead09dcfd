//! Tag retention's scheduler as a periodic worker: once per period, in the
//! whole cluster, it runs every project policy whose cron schedule is due
//! (`Registry::run_scheduled_retention` lets exactly one node take each due
//! time, so a period that two nodes both see runs once), and marks runs
//! whose node died as failed.

use std::time::Duration;

use berth_core::{Access, Registry};
use berth_meta::now_millis;

use crate::{CancellationToken, WorkError, Worker};

/// Due policies read per round trip.
const BATCH: i64 = 50;

pub struct RetentionScheduler {
    registry: Registry,
    access: Access,
    period: Duration,
}

impl RetentionScheduler {
    /// Looks for due retention schedules once per `period` in the cluster
    /// (a schedule fires at most this much late).
    pub fn new(registry: Registry, access: Access, period: Duration) -> RetentionScheduler {
        RetentionScheduler {
            registry,
            access,
            period,
        }
    }
}

#[async_trait::async_trait]
impl Worker for RetentionScheduler {
    fn name(&self) -> &'static str {
        "retention_scheduler"
    }

    fn period(&self) -> Option<Duration> {
        Some(self.period)
    }

    async fn work(&self, _payload: &str, cancel: CancellationToken) -> Result<(), WorkError> {
        let stale = self.registry.fail_stale_retention_runs().await?;
        if stale > 0 {
            tracing::warn!(
                runs = stale,
                "retention runs interrupted by a node that stopped"
            );
        }
        let now = now_millis();
        let mut failures = Vec::new();
        // Each due policy's schedule moves past `now` when it is taken (run
        // or not); the bound is for a schedule that somehow does not.
        for _ in 0..100 {
            let due = self.registry.due_retention(now, BATCH).await?;
            if due.is_empty() || cancel.is_cancelled() {
                break;
            }
            for d in &due {
                if cancel.is_cancelled() {
                    break;
                }
                match self
                    .registry
                    .run_scheduled_retention(&self.access, d, now)
                    .await
                {
                    Ok(Some(run)) => {
                        tracing::info!(project = %d.project, execution = run.id,
                            deleted = run.deleted, retained = run.retained,
                            "scheduled retention run finished");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // The schedule moved on before the run: the next
                        // period tries again; report after the others ran.
                        tracing::error!(project = %d.project, error = %e,
                            "scheduled retention run failed");
                        failures.push(format!("{}: {e}", d.project));
                    }
                }
            }
            if (due.len() as i64) < BATCH {
                break;
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!("retention failed for {}", failures.join("; ")).into())
        }
    }
}
