//! Tag lists, the catalog and the referrers index, all answered from the
//! database with keyset pagination (never by listing storage).

use berth_oci::{Digest, RepoName, media_types};
use serde_json::{Map, Value, json};

use crate::{Error, Registry, Result};

/// Upper bound of one page; a larger `n` is clamped, as Distribution does.
pub(crate) const MAX_PAGE: i64 = 10_000;

/// One page of names; `next_last` is set when more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    pub next_last: Option<String>,
}

fn page(mut items: Vec<String>, n: i64) -> Page {
    let more = items.len() as i64 > n;
    items.truncate(n as usize);
    let next_last = if more { items.last().cloned() } else { None };
    Page { items, next_last }
}

pub struct Referrers {
    /// An OCI image index listing the referrers.
    pub index: Vec<u8>,
    /// Whether the artifactType filter was applied.
    pub filtered: bool,
}

impl Registry {
    /// Tags of `repo` in lexical order after `last`, at most `n` (all when
    /// `n` is `None`).
    pub async fn tags(&self, repo: &RepoName, n: Option<i64>, last: Option<&str>) -> Result<Page> {
        if !self.inner.meta.repo_exists(repo).await? {
            return Err(Error::NameUnknown(repo.to_string()));
        }
        let n = n.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE);
        let items = self.inner.meta.tags(repo, last, n + 1).await?;
        Ok(page(items, n))
    }

    pub async fn catalog(&self, n: Option<i64>, last: Option<&str>) -> Result<Page> {
        let n = n.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE);
        let items = self.inner.meta.repositories(last, n + 1).await?;
        Ok(page(items, n))
    }

    /// The manifests in `repo` whose subject is `subject`, optionally only
    /// those of one artifact type. Unknown subjects give an empty index.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers> {
        let rows = self
            .inner
            .meta
            .referrers(repo, subject, artifact_type)
            .await?;
        let manifests: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                let mut d = Map::new();
                d.insert("mediaType".into(), r.media_type.into());
                d.insert("digest".into(), r.digest.into());
                d.insert("size".into(), r.size.into());
                if let Some(a) = r.artifact_type {
                    d.insert("artifactType".into(), a.into());
                }
                if let Some(a) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                {
                    d.insert("annotations".into(), a);
                }
                Value::Object(d)
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": manifests,
        });
        Ok(Referrers {
            index: serde_json::to_vec(&index).expect("json value serializes"),
            filtered: artifact_type.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            page(names(&["a", "b", "c"]), 2),
            Page {
                items: names(&["a", "b"]),
                next_last: Some("b".into())
            }
        );
        assert_eq!(
            page(names(&["a", "b"]), 2),
            Page {
                items: names(&["a", "b"]),
                next_last: None
            }
        );
        assert_eq!(page(names(&["a"]), 0).items.len(), 0);
    }
}
