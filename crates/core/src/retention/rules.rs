//! Harbor's tag-retention rule model (anchors §6.1), its validation and
//! its evaluation, with no I/O.
//!
//! A policy's rules say what to *retain*; they are OR-ed. Each rule names
//! the repositories it applies to (a doublestar pattern on the repository's
//! path inside the project, `repoMatches` or `repoExcludes`), the artifacts
//! it looks at (a doublestar pattern on tags, `matches` or `excludes`, and
//! whether untagged artifacts count) and a template. Evaluation is per
//! repository, on artifacts (manifests), never on single tags: an artifact
//! is a candidate of a rule when *any* of its tags passes the rule's tag
//! selector, and a retained artifact keeps *all* its tags. A repository no
//! enabled rule applies to is left alone; in one that a rule applies to,
//! every candidate artifact no rule retains is deleted.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::Pattern;

/// Rules per policy, as Harbor allows.
pub const MAX_RULES: usize = 15;
/// Largest count of `latestPushedK` / `latestPulledN` (Harbor: below 2^15-1).
pub const MAX_COUNT: i64 = 32_766;
/// Largest number of days of `nDaysSinceLastPush` / `nDaysSinceLastPull`.
pub const MAX_DAYS: i64 = 36_500;

const DAY_MS: i64 = 86_400_000;

/// A project's policy: rules, and an optional cron schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    pub rules: Vec<RetentionRule>,
    /// Cron expression, UTC: five fields (minute granularity) or six (with
    /// seconds first, as Harbor writes them: `0 0 0 * * *`). `null`: runs
    /// only on demand.
    #[serde(default)]
    pub schedule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// A disabled rule retains nothing and brings no repository into scope.
    #[serde(default)]
    pub disabled: bool,
    pub template: Template,
    /// The template's parameter, under the template's name, as in Harbor:
    /// `{"latestPushedK": 10}`, `{"nDaysSinceLastPull": 30}`; `{}` for
    /// `always`.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Which repositories of the project the rule applies to.
    pub repositories: RepoSelector,
    /// Which artifacts of those repositories it looks at.
    pub tags: TagSelector,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Template {
    /// Retain the K most recently pushed artifacts.
    #[serde(rename = "latestPushedK")]
    LatestPushedK,
    /// Retain the N most recently pulled artifacts (never-pulled ones are
    /// not retained by this rule).
    #[serde(rename = "latestPulledN")]
    LatestPulledN,
    /// Retain artifacts pushed within the last D days.
    #[serde(rename = "nDaysSinceLastPush")]
    NDaysSinceLastPush,
    /// Retain artifacts pulled within the last D days.
    #[serde(rename = "nDaysSinceLastPull")]
    NDaysSinceLastPull,
    /// Retain every artifact the selectors pick.
    #[serde(rename = "always")]
    Always,
}

impl Template {
    pub fn as_str(self) -> &'static str {
        match self {
            Template::LatestPushedK => "latestPushedK",
            Template::LatestPulledN => "latestPulledN",
            Template::NDaysSinceLastPush => "nDaysSinceLastPush",
            Template::NDaysSinceLastPull => "nDaysSinceLastPull",
            Template::Always => "always",
        }
    }

    fn bound(self) -> Option<i64> {
        match self {
            Template::LatestPushedK | Template::LatestPulledN => Some(MAX_COUNT),
            Template::NDaysSinceLastPush | Template::NDaysSinceLastPull => Some(MAX_DAYS),
            Template::Always => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepoDecoration {
    #[serde(rename = "repoMatches")]
    RepoMatches,
    #[serde(rename = "repoExcludes")]
    RepoExcludes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagDecoration {
    #[serde(rename = "matches")]
    Matches,
    #[serde(rename = "excludes")]
    Excludes,
}

/// `repoMatches PATTERN` applies the rule to repositories whose path inside
/// the project (`app`, `sub/app`) matches; `repoExcludes` to the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSelector {
    pub decoration: RepoDecoration,
    pub pattern: String,
}

/// `matches PATTERN` looks at artifacts with a tag that matches;
/// `excludes` at artifacts with a tag that does not. Untagged artifacts are
/// looked at only with `untagged: true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagSelector {
    pub decoration: TagDecoration,
    pub pattern: String,
    #[serde(default)]
    pub untagged: bool,
}

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The rule's index in the policy.
    pub index: usize,
    pub template: Template,
    /// K, N or D; 0 for `always`.
    pub param: i64,
    pub disabled: bool,
    repo_excludes: bool,
    repo: Pattern,
    tag_excludes: bool,
    tag: Pattern,
    untagged: bool,
}

impl CompiledRule {
    /// "rule 2 (latestPushedK 10)".
    pub fn describe(&self) -> String {
        match self.template {
            Template::Always => format!("rule {} (always)", self.index),
            t => format!("rule {} ({} {})", self.index, t.as_str(), self.param),
        }
    }

    /// Whether the rule applies to a repository, by its path inside the
    /// project.
    pub fn applies_to(&self, repo_path: &str) -> bool {
        !self.disabled && (self.repo.matches(repo_path) != self.repo_excludes)
    }

    /// Whether the tag selector picks an artifact with these tags.
    fn picks(&self, tags: &[String]) -> bool {
        if tags.is_empty() {
            return self.untagged;
        }
        tags.iter()
            .any(|t| self.tag.matches(t) != self.tag_excludes)
    }
}

fn invalid(field: String, message: impl std::fmt::Display) -> String {
    format!("{field}: {message}")
}

impl RetentionPolicy {
    /// Checks everything and compiles the rules; errors start with the
    /// field at fault (`rules[1].params.latestPushedK: …`).
    pub fn compile(&self) -> Result<Vec<CompiledRule>, String> {
        if self.rules.len() > MAX_RULES {
            return Err(invalid(
                "rules".into(),
                format!("at most {MAX_RULES} rules, got {}", self.rules.len()),
            ));
        }
        if let Some(s) = &self.schedule {
            parse_schedule(s).map_err(|e| invalid("schedule".into(), e))?;
        }
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| r.compile(i))
            .collect()
    }
}

impl RetentionRule {
    fn compile(&self, index: usize) -> Result<CompiledRule, String> {
        let at = |field: &str| format!("rules[{index}].{field}");
        let name = self.template.as_str();
        let param = match self.template.bound() {
            None => {
                if let Some(k) = self.params.keys().next() {
                    return Err(invalid(
                        at(&format!("params.{k}")),
                        "the always template takes no parameter",
                    ));
                }
                0
            }
            Some(max) => {
                if let Some(k) = self.params.keys().find(|k| k.as_str() != name) {
                    return Err(invalid(
                        at(&format!("params.{k}")),
                        format!("unknown parameter; the {name} template takes `{name}`"),
                    ));
                }
                let v = self
                    .params
                    .get(name)
                    .ok_or_else(|| invalid(at(&format!("params.{name}")), "required"))?;
                match v.as_i64() {
                    Some(n) if (0..=max).contains(&n) => n,
                    _ => {
                        return Err(invalid(
                            at(&format!("params.{name}")),
                            format!("must be a whole number from 0 to {max}, got {v}"),
                        ));
                    }
                }
            }
        };
        let repo = Pattern::parse(&self.repositories.pattern)
            .map_err(|e| invalid(at("repositories.pattern"), e))?;
        let tag = Pattern::parse(&self.tags.pattern).map_err(|e| invalid(at("tags.pattern"), e))?;
        Ok(CompiledRule {
            index,
            template: self.template,
            param,
            disabled: self.disabled,
            repo_excludes: self.repositories.decoration == RepoDecoration::RepoExcludes,
            repo,
            tag_excludes: self.tags.decoration == TagDecoration::Excludes,
            tag,
            untagged: self.tags.untagged,
        })
    }
}

/// Parses a cron schedule (UTC): 5 fields, or 6 with seconds first.
pub fn parse_schedule(text: &str) -> Result<croner::Cron, String> {
    let fields = text.split_whitespace().count();
    if !(5..=6).contains(&fields) && !text.trim_start().starts_with('@') {
        return Err(format!(
            "{text:?} has {fields} fields; write 5 (minute hour day month weekday) or 6 \
             (second first, as Harbor does: \"0 0 0 * * *\")"
        ));
    }
    let cron = croner::Cron::from_str(text).map_err(|e| format!("{text:?}: {e}"))?;
    if next_run(&cron, 0).is_none() {
        return Err(format!("{text:?} never fires"));
    }
    Ok(cron)
}

/// The first time the schedule fires strictly after `after` (milliseconds
/// since the epoch, UTC).
pub fn next_run(cron: &croner::Cron, after: i64) -> Option<i64> {
    let start = chrono::DateTime::from_timestamp_millis(after)?;
    cron.find_next_occurrence(&start, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// An artifact as rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub digest: String,
    pub tags: Vec<String>,
    /// The latest push of the manifest or of any of its tags.
    pub pushed_at: i64,
    pub pulled_at: Option<i64>,
}

/// Applies the rules that apply to a repository to its candidates at time
/// `now`. Returns, per candidate (same order), the indices of the rules
/// that retain it: empty means delete.
pub fn evaluate(rules: &[&CompiledRule], candidates: &[Candidate], now: i64) -> Vec<Vec<usize>> {
    let mut retained: Vec<Vec<usize>> = vec![Vec::new(); candidates.len()];
    for rule in rules {
        let picked: Vec<usize> = (0..candidates.len())
            .filter(|&i| rule.picks(&candidates[i].tags))
            .collect();
        let keep: Vec<usize> = match rule.template {
            Template::Always => picked,
            Template::LatestPushedK => {
                let mut order = picked;
                // Newest first; equal times by digest, so runs agree.
                order.sort_by(|&a, &b| {
                    let (a, b) = (&candidates[a], &candidates[b]);
                    b.pushed_at
                        .cmp(&a.pushed_at)
                        .then_with(|| a.digest.cmp(&b.digest))
                });
                order.truncate(rule.param as usize);
                order
            }
            Template::LatestPulledN => {
                let mut order: Vec<usize> = picked
                    .into_iter()
                    .filter(|&i| candidates[i].pulled_at.is_some())
                    .collect();
                order.sort_by(|&a, &b| {
                    let (a, b) = (&candidates[a], &candidates[b]);
                    b.pulled_at
                        .cmp(&a.pulled_at)
                        .then_with(|| a.digest.cmp(&b.digest))
                });
                order.truncate(rule.param as usize);
                order
            }
            Template::NDaysSinceLastPush => {
                let since = now.saturating_sub(rule.param.saturating_mul(DAY_MS));
                picked
                    .into_iter()
                    .filter(|&i| candidates[i].pushed_at >= since)
                    .collect()
            }
            Template::NDaysSinceLastPull => {
                let since = now.saturating_sub(rule.param.saturating_mul(DAY_MS));
                picked
                    .into_iter()
                    .filter(|&i| candidates[i].pulled_at.is_some_and(|t| t >= since))
                    .collect()
            }
        };
        for i in keep {
            retained[i].push(rule.index);
        }
    }
    retained
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(rules: serde_json::Value) -> RetentionPolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    fn rule(template: &str, param: Option<i64>, repo: &str, tags: &str) -> serde_json::Value {
        let params = match param {
            Some(n) => json!({ template: n }),
            None => json!({}),
        };
        json!({
            "template": template,
            "params": params,
            "repositories": {"decoration": "repoMatches", "pattern": repo},
            "tags": {"decoration": "matches", "pattern": tags},
        })
    }

    fn cand(digest: &str, tags: &[&str], pushed: i64, pulled: Option<i64>) -> Candidate {
        Candidate {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: pushed,
            pulled_at: pulled,
        }
    }

    fn run(p: &RetentionPolicy, repo: &str, c: &[Candidate], now: i64) -> Vec<Vec<usize>> {
        let compiled = p.compile().unwrap();
        let applying: Vec<&CompiledRule> = compiled.iter().filter(|r| r.applies_to(repo)).collect();
        evaluate(&applying, c, now)
    }

    #[test]
    fn harbor_json_shape_round_trips() {
        let p = policy(json!([rule("latestPushedK", Some(3), "**", "**")]));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["rules"][0]["template"], "latestPushedK");
        assert_eq!(v["rules"][0]["params"]["latestPushedK"], 3);
        assert_eq!(v["rules"][0]["repositories"]["decoration"], "repoMatches");
        assert_eq!(v["rules"][0]["tags"]["untagged"], false);
        let back: RetentionPolicy = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn latest_pushed_k_counts_artifacts_not_tags() {
        // Artifact "b" has three tags; it is one artifact.
        let c = [
            cand("a", &["1"], 100, None),
            cand("b", &["2", "2.0", "stable"], 300, None),
            cand("c", &["3"], 200, None),
            cand("d", &["4"], 50, None),
        ];
        let p = policy(json!([rule("latestPushedK", Some(2), "**", "**")]));
        assert_eq!(
            run(&p, "app", &c, 0),
            vec![vec![], vec![0], vec![0], vec![]]
        );
    }

    #[test]
    fn any_matching_tag_makes_the_artifact_a_candidate_and_keeps_all_its_tags() {
        let c = [
            cand("a", &["dev-1", "release-1"], 100, None),
            cand("b", &["dev-2"], 300, None),
        ];
        let p = policy(json!([rule("always", None, "**", "release-*")]));
        assert_eq!(run(&p, "app", &c, 0), vec![vec![0], vec![]]);
    }

    #[test]
    fn excludes_pick_artifacts_with_a_tag_outside_the_pattern() {
        let mut r = rule("always", None, "**", "dev-*");
        r["tags"]["decoration"] = json!("excludes");
        let p = policy(json!([r]));
        let c = [
            cand("a", &["dev-1"], 1, None),
            cand("b", &["dev-2", "v2"], 2, None),
            cand("c", &["v3"], 3, None),
        ];
        assert_eq!(run(&p, "app", &c, 0), vec![vec![], vec![0], vec![0]]);
    }

    #[test]
    fn untagged_artifacts_only_when_asked() {
        let c = [cand("a", &[], 100, None), cand("b", &["x"], 50, None)];
        let p = policy(json!([rule("latestPushedK", Some(5), "**", "**")]));
        assert_eq!(run(&p, "app", &c, 0), vec![vec![], vec![0]]);
        let mut r = rule("latestPushedK", Some(1), "**", "**");
        r["tags"]["untagged"] = json!(true);
        let p = policy(json!([r]));
        assert_eq!(run(&p, "app", &c, 0), vec![vec![0], vec![]]);
    }

    #[test]
    fn pulled_rules_ignore_never_pulled_artifacts() {
        let c = [
            cand("a", &["1"], 1, Some(500)),
            cand("b", &["2"], 2, None),
            cand("c", &["3"], 3, Some(900)),
            cand("d", &["4"], 4, Some(100)),
        ];
        let p = policy(json!([rule("latestPulledN", Some(2), "**", "**")]));
        assert_eq!(
            run(&p, "app", &c, 0),
            vec![vec![0], vec![], vec![0], vec![]]
        );
        let p = policy(json!([rule("latestPulledN", Some(10), "**", "**")]));
        assert_eq!(
            run(&p, "app", &c, 0),
            vec![vec![0], vec![], vec![0], vec![0]]
        );
        let now = 10 * DAY_MS;
        let c = [
            cand("a", &["1"], 1, Some(now - 2 * DAY_MS)),
            cand("b", &["2"], 2, Some(now - 8 * DAY_MS)),
            cand("c", &["3"], 3, None),
        ];
        let p = policy(json!([rule("nDaysSinceLastPull", Some(7), "**", "**")]));
        assert_eq!(run(&p, "app", &c, now), vec![vec![0], vec![], vec![]]);
    }

    #[test]
    fn days_since_push() {
        let now = 100 * DAY_MS;
        let c = [
            cand("a", &["1"], now - DAY_MS, None),
            cand("b", &["2"], now - 30 * DAY_MS, None),
        ];
        let p = policy(json!([rule("nDaysSinceLastPush", Some(7), "**", "**")]));
        assert_eq!(run(&p, "app", &c, now), vec![vec![0], vec![]]);
    }

    #[test]
    fn rules_are_or_ed_and_name_themselves() {
        let c = [
            cand("a", &["v1"], 100, None),
            cand("b", &["latest"], 50, None),
            cand("c", &["v0"], 10, None),
        ];
        let p = policy(json!([
            rule("latestPushedK", Some(1), "**", "v*"),
            rule("always", None, "**", "latest"),
        ]));
        assert_eq!(run(&p, "app", &c, 0), vec![vec![0], vec![1], vec![]]);
        let compiled = p.compile().unwrap();
        assert_eq!(compiled[0].describe(), "rule 0 (latestPushedK 1)");
        assert_eq!(compiled[1].describe(), "rule 1 (always)");
    }

    #[test]
    fn ties_in_push_time_break_by_digest() {
        let c = [cand("b", &["1"], 5, None), cand("a", &["2"], 5, None)];
        let p = policy(json!([rule("latestPushedK", Some(1), "**", "**")]));
        assert_eq!(run(&p, "app", &c, 0), vec![vec![], vec![0]]);
    }

    #[test]
    fn repository_selectors() {
        let mut excl = rule("always", None, "tools/**", "**");
        excl["repositories"]["decoration"] = json!("repoExcludes");
        let p = policy(json!([rule("always", None, "app", "**"), excl]));
        let compiled = p.compile().unwrap();
        let applying = |repo: &str| -> Vec<usize> {
            compiled
                .iter()
                .filter(|r| r.applies_to(repo))
                .map(|r| r.index)
                .collect()
        };
        assert_eq!(applying("app"), vec![0, 1]);
        assert_eq!(applying("tools/x"), Vec::<usize>::new());
        assert_eq!(applying("web"), vec![1]);
        let mut disabled = rule("always", None, "**", "**");
        disabled["disabled"] = json!(true);
        let compiled = policy(json!([disabled])).compile().unwrap();
        assert!(!compiled[0].applies_to("app"));
    }

    #[test]
    fn validation_names_the_field() {
        let err = |rules: serde_json::Value| policy(rules).compile().unwrap_err();
        let e = err(json!([rule("latestPushedK", None, "**", "**")]));
        assert_eq!(e, "rules[0].params.latestPushedK: required");
        let e = err(json!([rule("latestPushedK", Some(-1), "**", "**")]));
        assert!(
            e.starts_with("rules[0].params.latestPushedK: must be"),
            "{e}"
        );
        let e = err(json!([rule("latestPushedK", Some(40_000), "**", "**")]));
        assert!(e.contains("32766"), "{e}");
        let mut r = rule("always", None, "**", "**");
        r["params"] = json!({"latestPushedK": 1});
        assert!(err(json!([r])).starts_with("rules[0].params.latestPushedK:"));
        let mut r = rule("nDaysSinceLastPush", Some(1), "**", "**");
        r["params"] = json!({"days": 1});
        assert!(err(json!([r])).starts_with("rules[0].params.days: unknown"));
        let e = err(json!([rule("always", None, "**", "v[0-"),]));
        assert!(e.starts_with("rules[0].tags.pattern:"), "{e}");
        let e = err(json!([rule("always", None, "", "**")]));
        assert!(e.starts_with("rules[0].repositories.pattern:"), "{e}");
        let many: Vec<_> = (0..16).map(|_| rule("always", None, "**", "**")).collect();
        assert!(err(json!(many)).starts_with("rules: at most 15"));
        let mut p = policy(json!([]));
        p.schedule = Some("61 * * * *".into());
        assert!(p.compile().unwrap_err().starts_with("schedule:"));
        p.schedule = Some("* * *".into());
        assert!(p.compile().unwrap_err().contains("3 fields"));
        let bad: Result<RetentionPolicy, _> = serde_json::from_value(
            json!({"rules": [{"template": "latestActiveK", "params": {}, "repositories": {"decoration": "repoMatches", "pattern": "**"}, "tags": {"decoration": "matches", "pattern": "**"}}]}),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn schedules_in_utc() {
        // Harbor's daily "0 0 0 * * *": the next midnight UTC.
        let cron = parse_schedule("0 0 0 * * *").unwrap();
        let t = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(next_run(&cron, t), Some(1_700_006_400_000)); // 2023-11-15T00:00:00Z
        let cron = parse_schedule("*/15 * * * *").unwrap();
        assert_eq!(next_run(&cron, t), Some(1_700_000_100_000)); // 22:15:00
        let cron = parse_schedule("* * * * * *").unwrap();
        assert_eq!(next_run(&cron, t), Some(t + 1000));
    }
}
