//! The upload reaper as a periodic worker: deletes upload sessions nobody
//! touched for longer than the TTL, with their bytes
//! (`Registry::reap_uploads` does the work and keeps it safe against
//! concurrent reapers and clients).

use std::time::Duration;

use berth_core::{ReapReport, Registry};

use crate::{CancellationToken, WorkError, Worker};

/// Sessions reaped per database round trip.
const BATCH: u64 = 500;

pub struct UploadReaper {
    registry: Registry,
    ttl: Duration,
    period: Duration,
}

impl UploadReaper {
    /// Reaps sessions idle for longer than `ttl`, once per `period` in the
    /// cluster.
    pub fn new(registry: Registry, ttl: Duration, period: Duration) -> UploadReaper {
        UploadReaper {
            registry,
            ttl,
            period,
        }
    }
}

#[async_trait::async_trait]
impl Worker for UploadReaper {
    fn name(&self) -> &'static str {
        "upload_reaper"
    }

    fn period(&self) -> Option<Duration> {
        Some(self.period)
    }

    async fn work(&self, _payload: &str, cancel: CancellationToken) -> Result<(), WorkError> {
        let mut total = ReapReport::default();
        loop {
            let report = self.registry.reap_uploads(self.ttl, BATCH).await?;
            total.expired += report.expired;
            total.reaped += report.reaped;
            total.skipped += report.skipped;
            total.store_errors += report.store_errors;
            // A full batch may hide more; stop when a batch made no progress
            // (every session in it busy) so a pass always ends.
            let progressed = report.reaped + report.store_errors > 0;
            if report.expired < BATCH || !progressed || cancel.is_cancelled() {
                break;
            }
        }
        if total.expired > 0 {
            tracing::info!(
                reaped = total.reaped,
                skipped = total.skipped,
                store_errors = total.store_errors,
                ttl_secs = self.ttl.as_secs(),
                "reaped abandoned upload sessions"
            );
        }
        Ok(())
    }
}
