//! Pull statistics per artifact (issue 5, scope 7), written behind the
//! request: a manifest GET adds one to an in-memory counter (a map under a
//! mutex, no I/O); a background task ([`Registry::spawn_pull_stats_flusher`])
//! adds what was counted to the database every few seconds in one
//! transaction, and the server flushes once more at shutdown. Each node
//! counts its own pulls, and counts add up in the database. A crash loses
//! at most the pulls counted since the last flush; pull statistics feed
//! retention's `latestPulledN` and `nDaysSinceLastPull`, never correctness.
//!
//! Also here: the artifact listing of `/api/v1` (digest, tags, size, push
//! and pull times, pull count).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use berth_auth::{Action, Permission, Resource};
use berth_meta::{ArtifactRow, PullDelta, now_millis};
use berth_oci::{Digest, RepoName};

use crate::access::Access;
use crate::access::manage::{Actor, PageRequest, Paged};
use crate::retention::project_scope;
use crate::{Error, Registry, Result};

/// Artifacts counted before a flush is forced from the request path is not
/// wanted: the map only grows with distinct artifacts, so it stays small.
#[derive(Default)]
pub(crate) struct PullCounter {
    pending: Mutex<HashMap<(String, String), (u64, i64)>>,
}

impl PullCounter {
    /// Counts one pull of `digest` in `repo` at `at`.
    pub(crate) fn record(&self, repo: &RepoName, digest: &Digest, at: i64) {
        let mut map = self.pending.lock().expect("pull counter poisoned");
        let entry = map
            .entry((repo.as_str().to_string(), digest.as_str().to_string()))
            .or_insert((0, at));
        entry.0 += 1;
        entry.1 = entry.1.max(at);
    }

    fn take(&self) -> Vec<PullDelta> {
        let map = std::mem::take(&mut *self.pending.lock().expect("pull counter poisoned"));
        map.into_iter()
            .map(|((repo, digest), (count, last))| PullDelta {
                repo,
                digest,
                count,
                last_pulled_at: last,
            })
            .collect()
    }

    /// Puts back what a failed flush took, to try again next time.
    fn restore(&self, deltas: Vec<PullDelta>) {
        let mut map = self.pending.lock().expect("pull counter poisoned");
        for d in deltas {
            let entry = map
                .entry((d.repo, d.digest))
                .or_insert((0, d.last_pulled_at));
            entry.0 += d.count;
            entry.1 = entry.1.max(d.last_pulled_at);
        }
    }
}

/// An artifact as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// Bytes of the manifest plus, for an image, of what it references
    /// directly (config and layers); an index counts its own bytes only.
    pub size: i64,
    /// Tags, sorted by name.
    pub tags: Vec<String>,
    /// The latest push of the manifest or of one of its tags.
    pub pushed_at: i64,
    /// When the manifest itself was first pushed.
    pub created_at: i64,
    pub pulled_at: Option<i64>,
    pub pull_count: i64,
    pub subject: Option<String>,
}

impl From<ArtifactRow> for ArtifactInfo {
    fn from(a: ArtifactRow) -> ArtifactInfo {
        ArtifactInfo {
            pushed_at: a.pushed_at(),
            repository: a.repo,
            digest: a.digest,
            media_type: a.media_type,
            artifact_type: a.artifact_type,
            size: a.size,
            tags: a.tags.into_iter().map(|t| t.name).collect(),
            created_at: a.created_at,
            pulled_at: a.last_pulled_at,
            pull_count: a.pull_count,
            subject: a.subject,
        }
    }
}

const ARTIFACT_LIST: Permission = Permission::new(Resource::Artifact, Action::List);

impl Registry {
    /// Counts a pull (a manifest GET that answered with the body).
    pub(crate) fn record_pull(&self, repo: &RepoName, digest: &Digest) {
        self.inner.pulls.record(repo, digest, now_millis());
    }

    /// Adds the pulls counted so far to the database, in one transaction.
    /// Returns how many artifacts were updated. On failure the counts are
    /// kept for the next flush.
    pub async fn flush_pull_stats(&self) -> Result<u64> {
        let deltas = self.inner.pulls.take();
        if deltas.is_empty() {
            return Ok(0);
        }
        match self.inner.meta.record_pulls(&deltas).await {
            Ok(n) => {
                metrics::counter!("berth_pull_stats_flushed_total").increment(deltas.len() as u64);
                Ok(n)
            }
            Err(e) => {
                self.inner.pulls.restore(deltas);
                Err(e.into())
            }
        }
    }

    /// Flushes pull statistics every `every` until the task is aborted;
    /// call [`Registry::flush_pull_stats`] once more after aborting it.
    pub fn spawn_pull_stats_flusher(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = registry.flush_pull_stats().await {
                    tracing::warn!(error = %e, "could not write pull statistics; will retry");
                }
            }
        })
    }

    /// The artifacts of `repository` (a full name in `project`), in digest
    /// order, with tags, push and pull times and pull counts
    /// (`artifact:list` in the project).
    pub async fn list_artifacts(
        &self,
        access: &Access,
        actor: &Actor,
        project: &str,
        repository: &str,
        page: PageRequest<'_>,
    ) -> Result<Paged<ArtifactInfo>> {
        let repo =
            RepoName::parse(repository).map_err(|e| Error::Invalid(format!("repository: {e}")))?;
        if berth_auth::project_of(&repo) != project {
            return Err(Error::Invalid(format!(
                "repository: {repository:?} is not in project {project:?} (give the full name, \
                 e.g. {project}/app)"
            )));
        }
        project_scope(access, actor, project, ARTIFACT_LIST, || {
            format!("listing artifacts of {repository}")
        })
        .await?;
        if !self.inner.meta.repo_exists(&repo).await? {
            return Err(Error::NotFound(format!(
                "repository {repository:?} does not exist"
            )));
        }
        let limit = page.limit.clamp(1, crate::access::manage::MAX_LIMIT);
        let mut rows = self
            .inner
            .meta
            .artifacts(repo.as_str(), page.after, limit as i64 + 1)
            .await?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|a| a.digest.clone())
        } else {
            None
        };
        Ok(Paged {
            items: rows.into_iter().map(ArtifactInfo::from).collect(),
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_failed_flushes_keep_them() {
        let c = PullCounter::default();
        let repo = RepoName::parse("team/app").unwrap();
        let d = Digest::sha256_of(b"m");
        c.record(&repo, &d, 10);
        c.record(&repo, &d, 30);
        c.record(&repo, &d, 20);
        let taken = c.take();
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].count, taken[0].last_pulled_at), (3, 30));
        assert!(c.take().is_empty());
        c.record(&repo, &d, 40);
        c.restore(taken);
        let again = c.take();
        assert_eq!((again[0].count, again[0].last_pulled_at), (4, 40));
    }
}
