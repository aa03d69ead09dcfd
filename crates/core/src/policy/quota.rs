//! Project quotas: storage bytes and artifact (manifest) count, `-1`
//! unlimited. Usage is computed from the metadata, exactly, when a push
//! into a project with a limit is checked: the distinct blobs linked or
//! referenced in the project's repositories (a blob shared by several of
//! them counts once) plus its distinct manifest bodies; artifacts are its
//! manifests. The check and the insert it guards are one transaction,
//! with the quota row locked on PostgreSQL, so two concurrent pushes
//! cannot both take the last bytes. A project without limits costs one
//! indexed row lookup per push.

use berth_meta::{MetaStore, ProjectUsage, QuotaRow, Tx};
use berth_oci::{Digest, RepoName};

use crate::{Error, Result};

/// The warning threshold of a new quota, in percent of a limit.
pub const DEFAULT_WARN_PERCENT: i64 = 85;

/// What a push adds to a project.
pub(crate) enum Addition<'a> {
    /// A blob committed or mounted into a repository of the project.
    Blob { digest: &'a Digest, size: u64 },
    /// A manifest stored in `repo`.
    Manifest {
        repo: &'a RepoName,
        digest: &'a Digest,
        size: u64,
    },
}

/// Bytes and artifacts, used or added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Amount {
    pub(crate) bytes: i64,
    pub(crate) artifacts: i64,
}

/// The limits a check applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) storage: i64,
    pub(crate) artifacts: i64,
    pub(crate) warn_percent: i64,
    pub(crate) warned: bool,
}

impl From<&QuotaRow> for Limits {
    fn from(q: &QuotaRow) -> Limits {
        Limits {
            storage: q.storage_limit,
            artifacts: q.artifact_limit,
            warn_percent: q.warn_percent,
            warned: q.warned,
        }
    }
}

/// What a check that let a push through decided about warnings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    /// Usage over limit after the push, the larger of the two; `None`
    /// when no limit is set.
    pub(crate) ratio: Option<f64>,
    /// The new value of the quota row's `warned` flag, when it changes.
    pub(crate) set_warned: Option<bool>,
}

/// A push took a project's usage across its warning threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaWarning {
    pub project: String,
    pub used: (i64, i64),
    pub storage_limit: i64,
    pub artifact_limit: i64,
    pub warn_percent: i64,
}

impl QuotaWarning {
    /// "project team uses 10.6 MiB of 12.0 MiB storage (88%)…".
    pub fn details(&self) -> String {
        let mut parts = Vec::new();
        if self.storage_limit >= 0 {
            parts.push(format!(
                "{} of {} storage ({}%)",
                human_bytes(self.used.0),
                human_bytes(self.storage_limit),
                percent(self.used.0, self.storage_limit)
            ));
        }
        if self.artifact_limit >= 0 {
            parts.push(format!(
                "{} of {} artifacts ({}%)",
                self.used.1,
                self.artifact_limit,
                percent(self.used.1, self.artifact_limit)
            ));
        }
        format!(
            "project {} uses {}; the warning threshold is {}%",
            self.project,
            parts.join(" and "),
            self.warn_percent
        )
    }
}

fn percent(used: i64, limit: i64) -> i64 {
    (ratio(used, limit) * 100.0).floor() as i64
}

fn ratio(used: i64, limit: i64) -> f64 {
    used as f64 / limit.max(1) as f64
}

/// Bytes for people: `512 B`, `4.0 KiB`, `10.5 MiB`.
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n.abs() < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Decides whether adding `add` to `used` fits `limits`; the error is the
/// message the client sees. Only what grows is checked, so a push that
/// adds nothing (a blob or manifest the project already holds) passes even
/// when a lowered limit is already exceeded.
pub(crate) fn evaluate(
    project: &str,
    limits: Limits,
    used: Amount,
    add: Amount,
) -> std::result::Result<Verdict, String> {
    if add.bytes > 0 && limits.storage >= 0 && used.bytes + add.bytes > limits.storage {
        return Err(format!(
            "quota of project {project} exceeded: {} used + {} > {} limit ({} + {} > {} bytes)",
            human_bytes(used.bytes),
            human_bytes(add.bytes),
            human_bytes(limits.storage),
            used.bytes,
            add.bytes,
            limits.storage
        ));
    }
    if add.artifacts > 0
        && limits.artifacts >= 0
        && used.artifacts + add.artifacts > limits.artifacts
    {
        return Err(format!(
            "quota of project {project} exceeded: {} artifacts used + {} > {} artifact limit",
            used.artifacts, add.artifacts, limits.artifacts
        ));
    }
    let after = Amount {
        bytes: used.bytes + add.bytes,
        artifacts: used.artifacts + add.artifacts,
    };
    let mut r: Option<f64> = None;
    if limits.storage >= 0 {
        r = Some(ratio(after.bytes, limits.storage));
    }
    if limits.artifacts >= 0 {
        let a = ratio(after.artifacts, limits.artifacts);
        r = Some(r.map_or(a, |b| b.max(a)));
    }
    let over = r.is_some_and(|r| r * 100.0 >= limits.warn_percent as f64);
    let set_warned = (over != limits.warned && r.is_some()).then_some(over);
    Ok(Verdict {
        ratio: r,
        set_warned,
    })
}

fn usage_amount(u: &ProjectUsage) -> Amount {
    Amount {
        bytes: u.storage_bytes(),
        artifacts: u.manifests,
    }
}

fn record_ratio(project: &str, ratio: Option<f64>) {
    if let Some(r) = ratio {
        metrics::gauge!("berth_quota_usage_ratio", "project" => project.to_string()).set(r);
    }
}

/// The check inside a push's transaction (the quota row stays locked on
/// PostgreSQL until the push commits or rolls back). Returns the warning
/// to report once the push has committed.
pub(crate) async fn check(
    tx: &mut Tx,
    project: &str,
    addition: Addition<'_>,
) -> Result<Option<QuotaWarning>> {
    let Some(q) = tx.limited_quota_for_update(project).await? else {
        return Ok(None);
    };
    let (blob, manifest) = match &addition {
        Addition::Blob { digest, .. } => (digest.as_str(), ""),
        Addition::Manifest { digest, .. } => ("", digest.as_str()),
    };
    let probe = tx.probe_project_usage(project, blob, manifest).await?;
    let add = match addition {
        Addition::Blob { size, .. } => Amount {
            bytes: if probe.blob_counted { 0 } else { size as i64 },
            artifacts: 0,
        },
        Addition::Manifest { repo, digest, size } => Amount {
            bytes: if probe.manifest_counted {
                0
            } else {
                size as i64
            },
            artifacts: if tx.manifest_exists(repo, digest).await? {
                0
            } else {
                1
            },
        },
    };
    let limits = Limits::from(&q);
    let used = usage_amount(&probe.usage);
    let verdict = match evaluate(project, limits, used, add) {
        Ok(v) => v,
        Err(message) => {
            record_ratio(
                project,
                evaluate(project, limits, used, Amount::default())
                    .ok()
                    .and_then(|v| v.ratio),
            );
            metrics::counter!("berth_quota_refusals_total").increment(1);
            return Err(Error::Denied(message));
        }
    };
    record_ratio(project, verdict.ratio);
    let Some(warned) = verdict.set_warned else {
        return Ok(None);
    };
    tx.set_quota_warned(q.project_id, warned).await?;
    if !warned {
        return Ok(None);
    }
    Ok(Some(QuotaWarning {
        project: project.to_string(),
        used: (used.bytes + add.bytes, used.artifacts + add.artifacts),
        storage_limit: q.storage_limit,
        artifact_limit: q.artifact_limit,
        warn_percent: q.warn_percent,
    }))
}

/// The same decision from the read pool, before a blob's bytes are moved
/// into place; never reports a warning (the transaction's check does).
pub(crate) async fn precheck(
    meta: &MetaStore,
    project: &str,
    addition: Addition<'_>,
) -> Result<()> {
    let Addition::Blob { digest, size } = addition else {
        return Ok(());
    };
    let Some(q) = meta.limited_quota(project).await? else {
        return Ok(());
    };
    let probe = meta
        .probe_project_usage(project, digest.as_str(), "")
        .await?;
    let add = Amount {
        bytes: if probe.blob_counted { 0 } else { size as i64 },
        artifacts: 0,
    };
    evaluate(project, Limits::from(&q), usage_amount(&probe.usage), add)
        .map(drop)
        .map_err(|message| {
            metrics::counter!("berth_quota_refusals_total").increment(1);
            Error::Denied(message)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: i64 = 1024 * 1024;

    fn limits(storage: i64, artifacts: i64) -> Limits {
        Limits {
            storage,
            artifacts,
            warn_percent: 85,
            warned: false,
        }
    }

    fn amount(bytes: i64, artifacts: i64) -> Amount {
        Amount { bytes, artifacts }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(4 * MIB), "4.0 MiB");
        assert_eq!(human_bytes(10 * MIB + MIB / 2), "10.5 MiB");
        assert_eq!(human_bytes(12 * MIB), "12.0 MiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * MIB), "3.0 TiB");
    }

    #[test]
    fn storage_limit_refuses_what_would_exceed() {
        let l = limits(12 * MIB, -1);
        let used = amount(10 * MIB + MIB / 2, 3);
        let e = evaluate("team", l, used, amount(4 * MIB, 0)).unwrap_err();
        assert_eq!(
            e,
            "quota of project team exceeded: 10.5 MiB used + 4.0 MiB > 12.0 MiB limit \
             (11010048 + 4194304 > 12582912 bytes)"
        );
        // Exactly at the limit fits.
        assert!(evaluate("team", l, used, amount(12 * MIB - used.bytes, 0)).is_ok());
        assert!(evaluate("team", l, used, amount(12 * MIB - used.bytes + 1, 0)).is_err());
    }

    #[test]
    fn artifact_limit_refuses_one_more() {
        let l = limits(-1, 3);
        let e = evaluate("team", l, amount(100, 3), amount(10, 1)).unwrap_err();
        assert_eq!(
            e,
            "quota of project team exceeded: 3 artifacts used + 1 > 3 artifact limit"
        );
        assert!(evaluate("team", l, amount(100, 2), amount(10, 1)).is_ok());
    }

    #[test]
    fn adding_nothing_passes_even_over_a_lowered_limit() {
        let l = limits(MIB, 1);
        assert!(evaluate("team", l, amount(5 * MIB, 9), amount(0, 0)).is_ok());
    }

    #[test]
    fn zero_allows_nothing_and_unlimited_everything() {
        assert!(evaluate("p", limits(0, -1), amount(0, 0), amount(1, 0)).is_err());
        assert!(evaluate("p", limits(-1, 0), amount(0, 0), amount(0, 1)).is_err());
        let v = evaluate(
            "p",
            limits(-1, -1),
            amount(1 << 50, 1 << 30),
            amount(1 << 40, 1),
        )
        .unwrap();
        assert_eq!(v.ratio, None);
        assert_eq!(v.set_warned, None);
    }

    #[test]
    fn warnings_fire_once_per_crossing() {
        let mut l = limits(100, -1);
        // Below the threshold: nothing to change.
        let v = evaluate("p", l, amount(50, 0), amount(30, 0)).unwrap();
        assert_eq!(v.ratio, Some(0.8));
        assert_eq!(v.set_warned, None);
        // Crossing 85%: warn.
        let v = evaluate("p", l, amount(80, 0), amount(5, 0)).unwrap();
        assert_eq!(v.set_warned, Some(true));
        // Still above: already warned, no second event.
        l.warned = true;
        let v = evaluate("p", l, amount(85, 0), amount(10, 0)).unwrap();
        assert_eq!(v.set_warned, None);
        // Back below (after deletions): re-armed.
        let v = evaluate("p", l, amount(40, 0), amount(1, 0)).unwrap();
        assert_eq!(v.set_warned, Some(false));
    }

    #[test]
    fn the_ratio_is_the_fuller_of_the_two_limits() {
        let v = evaluate("p", limits(1000, 10), amount(100, 8), amount(0, 1)).unwrap();
        assert_eq!(v.ratio, Some(0.9));
        assert_eq!(v.set_warned, Some(true));
    }

    #[test]
    fn warning_details() {
        let w = QuotaWarning {
            project: "team".into(),
            used: (11 * MIB, 2),
            storage_limit: 12 * MIB,
            artifact_limit: 10,
            warn_percent: 85,
        };
        assert_eq!(
            w.details(),
            "project team uses 11.0 MiB of 12.0 MiB storage (91%) and 2 of 10 artifacts (20%); \
             the warning threshold is 85%"
        );
    }
}
