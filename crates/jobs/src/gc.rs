//! Garbage collection as a periodic worker: one run per `[gc]
//! interval_secs` in the whole cluster (`Registry::collect_garbage_until`
//! does the work and keeps it safe against concurrent pushes and runs).

use std::time::Duration;

use berth_core::Registry;

use crate::{CancellationToken, WorkError, Worker};

pub struct GarbageCollector {
    registry: Registry,
    period: Duration,
}

impl GarbageCollector {
    /// Collects once per `period` in the cluster.
    pub fn new(registry: Registry, period: Duration) -> GarbageCollector {
        GarbageCollector { registry, period }
    }
}

#[async_trait::async_trait]
impl Worker for GarbageCollector {
    fn name(&self) -> &'static str {
        "gc"
    }

    fn period(&self) -> Option<Duration> {
        Some(self.period)
    }

    async fn work(&self, _payload: &str, cancel: CancellationToken) -> Result<(), WorkError> {
        let stop = move || cancel.is_cancelled();
        let report = self
            .registry
            .collect_garbage_until(false, "schedule", &stop)
            .await?;
        if let Some(error) = report.error {
            return Err(error.into());
        }
        if report.blobs_deleted + report.orphans_deleted + report.manifests_deleted > 0
            || report.trash_purged + report.links_removed > 0
        {
            tracing::info!(
                blobs = report.blobs_deleted,
                bytes = report.bytes_reclaimed,
                manifests = report.manifests_deleted,
                links = report.links_removed,
                trash = report.trash_purged,
                orphans = report.orphans_deleted,
                ms = report.duration().as_millis() as u64,
                "garbage collected"
            );
        }
        Ok(())
    }
}
