//! Immutable tag rules (Harbor's model). A rule selects repositories by
//! their path inside the project (`app`, `sub/app` for `team/sub/app`;
//! `alpine` for `library/alpine` and for `alpine`) and tags by name, each
//! with a doublestar pattern that selects what matches it or, when
//! `excludes`, everything else. A tag an enabled rule selects may be
//! created, and pushed again with the same manifest; moving it to another
//! manifest, deleting it, or deleting the manifest it points at is refused
//! with `DENIED` naming the rule. Nobody is exempt, system admins included.

use std::fmt;

use berth_meta::{ImmutableRuleRow, Tx};
use berth_oci::{Digest, Reference, RepoName, Tag};

use super::pattern::Pattern;
use crate::access::project_of;
use crate::{Error, Registry, Result};

/// A pattern that selects what matches it, or everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub pattern: Pattern,
    pub excludes: bool,
}

impl Selector {
    pub fn parse(pattern: &str, excludes: bool) -> std::result::Result<Selector, String> {
        Ok(Selector {
            pattern: Pattern::parse(pattern)?,
            excludes,
        })
    }

    pub fn selects(&self, text: &str) -> bool {
        self.pattern.matches(text) != self.excludes
    }

    fn describe(&self, what: &str) -> String {
        let how = if self.excludes {
            "not matching"
        } else {
            "matching"
        };
        format!("{what} {how} {:?}", self.pattern.as_str())
    }
}

/// An immutable tag rule, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableRule {
    pub id: i64,
    pub repositories: Selector,
    pub tags: Selector,
    pub disabled: bool,
}

impl fmt::Display for ImmutableRule {
    /// `immutable rule 3 (repositories matching "**", tags matching "release-*")`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "immutable rule {} ({}, {})",
            self.id,
            self.repositories.describe("repositories"),
            self.tags.describe("tags")
        )
    }
}

impl ImmutableRule {
    pub fn from_row(row: &ImmutableRuleRow) -> Result<ImmutableRule> {
        let corrupt = |e: String| {
            Error::Meta(berth_meta::Error::Corrupt(format!(
                "immutable rule {}: {e}",
                row.id
            )))
        };
        Ok(ImmutableRule {
            id: row.id,
            repositories: Selector::parse(&row.repo_pattern, row.repo_excludes).map_err(corrupt)?,
            tags: Selector::parse(&row.tag_pattern, row.tag_excludes).map_err(corrupt)?,
            disabled: row.disabled,
        })
    }

    /// Whether the rule protects `tag` in the repository whose path inside
    /// its project is `repo_path` (see [`repo_path`]).
    pub fn protects(&self, repo_path: &str, tag: &str) -> bool {
        !self.disabled && self.repositories.selects(repo_path) && self.tags.selects(tag)
    }
}

/// A repository's path inside its project, what repository selectors
/// match: `team/sub/app` → `sub/app`; `alpine` and `library/alpine` →
/// `alpine`.
pub fn repo_path(repo: &RepoName) -> &str {
    let name = repo.as_str();
    match name.split_once('/') {
        Some((_, rest)) => rest,
        None => name,
    }
}

/// The first rule (by id) protecting `repo:tag` among `rows`.
fn first_protecting(
    rows: &[ImmutableRuleRow],
    repo: &RepoName,
    tag: &str,
) -> Result<Option<ImmutableRule>> {
    let path = repo_path(repo);
    for row in rows {
        let rule = ImmutableRule::from_row(row)?;
        if rule.protects(path, tag) {
            return Ok(Some(rule));
        }
    }
    Ok(None)
}

fn protected_by(rule: &ImmutableRule, project: &str) -> String {
    format!("{rule} of project {project} protects it")
}

/// Refuses a push of `digest` under `tag` when the tag exists, points at
/// another manifest, and a rule protects it.
pub(crate) async fn check_tag_move(
    tx: &mut Tx,
    repo: &RepoName,
    tag: &Tag,
    digest: &Digest,
) -> Result<()> {
    let project = project_of(repo);
    let rows = tx.enabled_immutable_rules(project).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let Some(rule) = first_protecting(&rows, repo, tag.as_str())? else {
        return Ok(());
    };
    // Two first pushes of the tag must not both find it absent.
    tx.lock_tag_name(repo.as_str(), tag.as_str()).await?;
    match tx.tag_target(repo.as_str(), tag.as_str()).await? {
        Some(current) if current != digest.as_str() => {
            metrics::counter!("berth_immutable_refusals_total").increment(1);
            Err(Error::Denied(format!(
                "immutable tag {repo}:{tag} cannot be moved from {current} to another manifest: {}",
                protected_by(&rule, project)
            )))
        }
        _ => Ok(()),
    }
}

/// Refuses deleting a protected tag, or a manifest a protected tag points at.
pub(crate) async fn check_delete(
    tx: &mut Tx,
    repo: &RepoName,
    reference: &Reference,
) -> Result<()> {
    let project = project_of(repo);
    let rows = tx.enabled_immutable_rules(project).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let refused = match reference {
        Reference::Tag(tag) => {
            if tx.tag_target(repo.as_str(), tag.as_str()).await?.is_none() {
                return Ok(());
            }
            first_protecting(&rows, repo, tag.as_str())?.map(|rule| {
                format!(
                    "immutable tag {repo}:{tag} cannot be deleted: {}",
                    protected_by(&rule, project)
                )
            })
        }
        Reference::Digest(digest) => {
            let mut found = None;
            for tag in tx.tags_of_manifest(repo.as_str(), digest.as_str()).await? {
                if let Some(rule) = first_protecting(&rows, repo, &tag)? {
                    found = Some(format!(
                        "manifest {digest} of {repo} cannot be deleted: it carries the immutable \
                         tag {tag}, and {}",
                        protected_by(&rule, project)
                    ));
                    break;
                }
            }
            found
        }
    };
    match refused {
        Some(message) => {
            metrics::counter!("berth_immutable_refusals_total").increment(1);
            Err(Error::Denied(message))
        }
        None => Ok(()),
    }
}

impl Registry {
    /// The enabled rule that makes `repo:tag` immutable, if any: for other
    /// use cases that remove tags (retention must keep such tags).
    pub async fn immutable_rule_for(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ImmutableRule>> {
        let rows = self
            .inner
            .meta
            .enabled_immutable_rules(project_of(repo))
            .await?;
        first_protecting(&rows, repo, tag.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: i64, repo: (&str, bool), tag: (&str, bool)) -> ImmutableRule {
        ImmutableRule {
            id,
            repositories: Selector::parse(repo.0, repo.1).unwrap(),
            tags: Selector::parse(tag.0, tag.1).unwrap(),
            disabled: false,
        }
    }

    fn name(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn paths_inside_the_project() {
        assert_eq!(repo_path(&name("team/app")), "app");
        assert_eq!(repo_path(&name("team/sub/app")), "sub/app");
        assert_eq!(repo_path(&name("alpine")), "alpine");
        assert_eq!(repo_path(&name("library/alpine")), "alpine");
    }

    #[test]
    fn selectors_include_and_exclude() {
        let r = rule(1, ("**", false), ("release-*", false));
        assert!(r.protects("app", "release-1"));
        assert!(r.protects("sub/app", "release-2"));
        assert!(!r.protects("app", "latest"));

        let r = rule(2, ("app", false), ("latest", true));
        assert!(r.protects("app", "v1"), "every tag but latest");
        assert!(!r.protects("app", "latest"));
        assert!(!r.protects("other", "v1"));

        let r = rule(3, ("tmp/**", true), ("*", false));
        assert!(r.protects("app", "v1"));
        assert!(!r.protects("tmp/scratch", "v1"));

        let mut r = rule(4, ("**", false), ("**", false));
        assert!(r.protects("a/b", "x"));
        r.disabled = true;
        assert!(!r.protects("a/b", "x"));
    }

    #[test]
    fn a_rule_describes_itself() {
        let r = rule(7, ("**", false), ("release-*", false));
        assert_eq!(
            r.to_string(),
            "immutable rule 7 (repositories matching \"**\", tags matching \"release-*\")"
        );
        let r = rule(8, ("app", true), ("v*", true));
        assert_eq!(
            r.to_string(),
            "immutable rule 8 (repositories not matching \"app\", tags not matching \"v*\")"
        );
    }

    #[test]
    fn the_first_protecting_rule_wins() {
        let row = |id: i64, repo: &str, tag: &str| ImmutableRuleRow {
            id,
            project_id: 1,
            repo_pattern: repo.into(),
            repo_excludes: false,
            tag_pattern: tag.into(),
            tag_excludes: false,
            disabled: false,
            created_by: "admin".into(),
            created_at: 0,
            updated_at: 0,
        };
        let rows = vec![row(1, "other", "*"), row(2, "**", "v*"), row(3, "*", "*")];
        let found = first_protecting(&rows, &name("team/app"), "v1").unwrap();
        assert_eq!(found.map(|r| r.id), Some(2));
        assert!(
            first_protecting(&rows, &name("team/a/b"), "x")
                .unwrap()
                .is_none()
        );
    }
}
