//! Docker token scopes (`repository:team/app:pull,push`,
//! `registry:catalog:*`): parsing with validation, and granting, which
//! intersects what was asked with what [`decide`] allows.
//!
//! The grammar is Distribution's: `type[(class)]:name:action[,action…]`,
//! split at the first and the last colon. A malformed scope is an error
//! (the token endpoint answers 400); a well-formed scope for a type or an
//! action Berth does not know is kept and simply never granted.

use std::fmt;

use berth_oci::RepoName;
use serde::{Deserialize, Serialize};

use crate::principal::Principal;
use crate::rbac::{Permission, Project, Role, Target, decide, project_of};

/// Longest scope string accepted, and most scopes in one request: far
/// above what clients send (one per repository of a cross-mount), low
/// enough that a request cannot make the token endpoint do much work.
pub const MAX_SCOPE_LEN: usize = 512;
pub const MAX_SCOPES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope {0:?} is not of the form type:name:actions")]
    Shape(String),
    #[error("scope {scope:?}: resource type {kind:?} is not a lowercase word")]
    Type { scope: String, kind: String },
    #[error("scope {scope:?}: {reason}")]
    Name { scope: String, reason: String },
    #[error("scope {scope:?}: action {action:?} is not a lowercase word or *")]
    Action { scope: String, action: String },
    #[error("scope is longer than {MAX_SCOPE_LEN} characters")]
    TooLong,
    #[error("more than {MAX_SCOPES} scopes in one request")]
    TooMany,
}

/// What a scope is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeTarget {
    /// `repository:NAME` (any class, e.g. `repository(plugin)`, is read as
    /// a plain repository).
    Repository(RepoName),
    /// `registry:catalog`.
    Catalog,
    /// A well-formed scope of a type Berth does not serve; never granted.
    Other { kind: String, name: String },
}

impl ScopeTarget {
    /// The `type` of a token access entry.
    pub fn kind(&self) -> &str {
        match self {
            ScopeTarget::Repository(_) => "repository",
            ScopeTarget::Catalog => "registry",
            ScopeTarget::Other { kind, .. } => kind,
        }
    }

    /// The `name` of a token access entry.
    pub fn name(&self) -> &str {
        match self {
            ScopeTarget::Repository(repo) => repo.as_str(),
            ScopeTarget::Catalog => "catalog",
            ScopeTarget::Other { name, .. } => name,
        }
    }

    /// The project a repository scope is about.
    pub fn project(&self) -> Option<&str> {
        match self {
            ScopeTarget::Repository(repo) => Some(project_of(repo)),
            _ => None,
        }
    }
}

/// A scope action Berth knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeAction {
    Pull,
    Push,
    Delete,
    /// `*`: every action.
    All,
}

impl ScopeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeAction::Pull => "pull",
            ScopeAction::Push => "push",
            ScopeAction::Delete => "delete",
            ScopeAction::All => "*",
        }
    }

    fn parse(s: &str) -> Option<ScopeAction> {
        match s {
            "pull" => Some(ScopeAction::Pull),
            "push" => Some(ScopeAction::Push),
            "delete" => Some(ScopeAction::Delete),
            "*" => Some(ScopeAction::All),
            _ => None,
        }
    }

    /// The RBAC permission a repository action needs. Deleting a manifest
    /// or a blob needs `artifact:delete`, as in Harbor.
    pub fn repository_permission(self) -> Option<Permission> {
        match self {
            ScopeAction::Pull => Some(Permission::PULL),
            ScopeAction::Push => Some(Permission::PUSH),
            ScopeAction::Delete => Some(Permission::DELETE_ARTIFACT),
            ScopeAction::All => None,
        }
    }
}

/// One requested (or required) scope: a target and the actions on it,
/// sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub target: ScopeTarget,
    pub actions: Vec<ScopeAction>,
}

impl Scope {
    /// A repository scope, e.g. for the challenge of a push:
    /// `Scope::repository(repo, &[Pull, Push])`.
    pub fn repository(repo: RepoName, actions: &[ScopeAction]) -> Scope {
        let mut actions = actions.to_vec();
        actions.sort();
        actions.dedup();
        Scope {
            target: ScopeTarget::Repository(repo),
            actions,
        }
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope {
            target: ScopeTarget::Catalog,
            actions: vec![ScopeAction::All],
        }
    }

    /// Parses one scope. Unknown actions are dropped (never granted); a
    /// scope may thus end up with no actions.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        if s.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong);
        }
        let shape = || ScopeError::Shape(s.to_string());
        let (kind, rest) = s.split_once(':').ok_or_else(shape)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(shape)?;
        if name.is_empty() || actions.is_empty() {
            return Err(shape());
        }
        let base = parse_type(kind).ok_or_else(|| ScopeError::Type {
            scope: s.to_string(),
            kind: kind.to_string(),
        })?;
        let target = match base {
            "repository" => {
                ScopeTarget::Repository(RepoName::parse(name).map_err(|e| ScopeError::Name {
                    scope: s.to_string(),
                    reason: e.to_string(),
                })?)
            }
            "registry" if name == "catalog" => ScopeTarget::Catalog,
            _ => ScopeTarget::Other {
                kind: base.to_string(),
                name: name.to_string(),
            },
        };
        let mut parsed = Vec::new();
        for action in actions.split(',') {
            let well_formed = !action.is_empty()
                && action
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_' || b == b'*');
            if !well_formed {
                return Err(ScopeError::Action {
                    scope: s.to_string(),
                    action: action.to_string(),
                });
            }
            parsed.extend(ScopeAction::parse(action));
        }
        parsed.sort();
        parsed.dedup();
        Ok(Scope {
            target,
            actions: parsed,
        })
    }
}

/// `type` or `type(class)`, lowercase alphanumerics; returns the type.
fn parse_type(kind: &str) -> Option<&str> {
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let base = match kind.split_once('(') {
        Some((base, class)) => {
            let class = class.strip_suffix(')')?;
            if !word(class) {
                return None;
            }
            base
        }
        None => kind,
    };
    word(base).then_some(base)
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.target.kind(), self.target.name())?;
        for (i, action) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(action.as_str())?;
        }
        Ok(())
    }
}

/// Parses the scopes of a token request: each `scope` query parameter (GET)
/// or the space-separated `scope` form field (POST) goes through here;
/// scopes on the same target are merged.
pub fn parse_scopes<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Scope>, ScopeError> {
    let mut scopes: Vec<Scope> = Vec::new();
    let mut count = 0;
    for value in values {
        for s in value.split_ascii_whitespace() {
            count += 1;
            if count > MAX_SCOPES {
                return Err(ScopeError::TooMany);
            }
            let scope = Scope::parse(s)?;
            match scopes.iter_mut().find(|x| x.target == scope.target) {
                Some(existing) => {
                    existing.actions.extend(scope.actions);
                    existing.actions.sort();
                    existing.actions.dedup();
                }
                None => scopes.push(scope),
            }
        }
    }
    Ok(scopes)
}

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl AccessEntry {
    /// Whether this entry allows `action` on `target` (`*` allows all).
    pub fn allows(&self, target: &ScopeTarget, action: ScopeAction) -> bool {
        self.kind == target.kind()
            && self.name == target.name()
            && self
                .actions
                .iter()
                .any(|a| a == "*" || a == action.as_str())
    }
}

/// A project and the principal's roles in it (direct and through groups),
/// looked up by the caller before granting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectAccess {
    pub project: Project,
    pub roles: Vec<Role>,
}

/// The projects whose [`ProjectAccess`] [`grant`] will ask for.
pub fn projects_of(scopes: &[Scope]) -> Vec<&str> {
    let mut out: Vec<&str> = scopes.iter().filter_map(|s| s.target.project()).collect();
    out.sort();
    out.dedup();
    out
}

/// The access a token for `principal` carries when `requested` was asked:
/// for each scope, the requested actions that [`decide`] allows. Never more
/// than asked, never more than allowed; a scope with nothing granted is
/// left out. `lookup` answers for each project of [`projects_of`], `None`
/// when the project does not exist (then nothing in it is granted).
///
/// `*` on a repository is granted as the individual actions allowed
/// (`pull`, `push`, `delete`); `*` on the catalog needs `catalog:read` at
/// system level.
pub fn grant<'a>(
    principal: &Principal,
    requested: &[Scope],
    lookup: impl Fn(&str) -> Option<&'a ProjectAccess>,
    now_millis: i64,
) -> Vec<AccessEntry> {
    let mut out = Vec::new();
    for scope in requested {
        let actions: Vec<String> = match &scope.target {
            ScopeTarget::Repository(repo) => {
                let Some(access) = lookup(project_of(repo)) else {
                    continue;
                };
                let target = Target::Project {
                    project: &access.project,
                    roles: &access.roles,
                };
                let wanted = |a: ScopeAction| {
                    scope.actions.contains(&a) || scope.actions.contains(&ScopeAction::All)
                };
                [ScopeAction::Pull, ScopeAction::Push, ScopeAction::Delete]
                    .into_iter()
                    .filter(|&a| wanted(a))
                    .filter(|&a| {
                        a.repository_permission().is_some_and(|perm| {
                            decide(principal, target, perm, now_millis).is_allowed()
                        })
                    })
                    .map(|a| a.as_str().to_string())
                    .collect()
            }
            ScopeTarget::Catalog => {
                let allowed = scope.actions.contains(&ScopeAction::All)
                    && decide(principal, Target::System, Permission::CATALOG, now_millis)
                        .is_allowed();
                if allowed {
                    vec!["*".to_string()]
                } else {
                    vec![]
                }
            }
            ScopeTarget::Other { .. } => vec![],
        };
        if !actions.is_empty() {
            out.push(AccessEntry {
                kind: scope.target.kind().to_string(),
                name: scope.target.name().to_string(),
                actions,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
