//! Role-based access control: projects, roles, the permission table and the
//! one function that decides, [`decide`].
//!
//! The model is Harbor's (anchors §6.2): permissions are `(resource, action)`
//! pairs evaluated in a project or at system level. Project members hold a
//! [`Role`]; [`ROLE_TABLE`] says what each role may do, written once as data.
//! Public projects add [`PUBLIC_PROJECT_TABLE`] for everybody, anonymous
//! included. System admins may do everything. Robots hold an explicit list of
//! [`Grant`]s and nothing else (plus what a public project gives anybody).
//!
//! This module does no I/O: the caller looks up the project and the
//! principal's roles in it (direct and through groups) and passes them in.
//! Anything not granted is denied; unknown or expired is denied.

use std::fmt;
use std::str::FromStr;

use berth_oci::RepoName;
use serde::{Deserialize, Serialize};

use crate::principal::Principal;

/// The project that owns single-segment repository names (`alpine` is
/// `library/alpine`'s project), as in Harbor and Docker Hub.
pub const DEFAULT_PROJECT: &str = "library";

/// The project a repository belongs to: its first path segment, or
/// [`DEFAULT_PROJECT`] for a single-segment name.
pub fn project_of(repo: &RepoName) -> &str {
    match repo.as_str().split_once('/') {
        Some((project, _)) => project,
        None => DEFAULT_PROJECT,
    }
}

/// Checks a project name: 1 to 255 characters of `[a-z0-9._-]`, starting
/// and ending with a letter or digit (Harbor's rule; it is also a valid
/// first component of a repository name).
pub fn validate_project_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "project name must be 1 to 255 characters, got {}",
            name.len()
        ));
    }
    if !name.chars().all(ok_char) || !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err(format!(
            "project name {name:?} must be lowercase letters, digits, '.', '_' or '-', \
             starting and ending with a letter or digit"
        ));
    }
    if RepoName::parse(name).is_err() {
        return Err(format!(
            "project name {name:?} is not a valid repository name component"
        ));
    }
    Ok(())
}

/// A project as authorization needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    /// Public projects allow anybody, anonymous included, to pull.
    pub public: bool,
}

/// A member's role in a project. Harbor's ids are kept for reference
/// ([`Role::harbor_id`]); storage uses [`Role::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    LimitedGuest,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
}

impl Role {
    /// Every role, weakest first: the column order of [`ROLE_TABLE`].
    pub const ALL: [Role; 5] = [
        Role::LimitedGuest,
        Role::Guest,
        Role::Developer,
        Role::Maintainer,
        Role::ProjectAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::LimitedGuest => "limited_guest",
            Role::Guest => "guest",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::ProjectAdmin => "project_admin",
        }
    }

    /// Harbor's numeric role id (`src/common/const.go`).
    pub fn harbor_id(self) -> u8 {
        match self {
            Role::ProjectAdmin => 1,
            Role::Developer => 2,
            Role::Guest => 3,
            Role::Maintainer => 4,
            Role::LimitedGuest => 5,
        }
    }

    fn column(self) -> usize {
        self as usize
    }

    /// Whether this role's row in [`ROLE_TABLE`] allows `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        ROLE_TABLE
            .iter()
            .any(|(p, roles)| *p == permission && roles[self.column()])
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}"))
    }
}

/// What a permission is about. Names (serde, [`Resource::as_str`]) are
/// Harbor's, so robot permission lists read the same. Helm and preheat are
/// left out; `Project` is Harbor's project "self" inside a project and
/// "project" (create, list) at system level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    // In a project.
    Project,
    Member,
    Metadata,
    Log,
    Label,
    Quota,
    Repository,
    TagRetention,
    ImmutableTag,
    Configuration,
    Robot,
    NotificationPolicy,
    Scan,
    Scanner,
    Sbom,
    Artifact,
    ArtifactAddition,
    ArtifactLabel,
    Tag,
    Accessory,
    // System level only.
    Catalog,
    User,
    UserGroup,
    AuditLog,
    Registry,
    Replication,
    GarbageCollection,
    ScanAll,
}

impl Resource {
    pub const ALL: [Resource; 28] = [
        Resource::Project,
        Resource::Member,
        Resource::Metadata,
        Resource::Log,
        Resource::Label,
        Resource::Quota,
        Resource::Repository,
        Resource::TagRetention,
        Resource::ImmutableTag,
        Resource::Configuration,
        Resource::Robot,
        Resource::NotificationPolicy,
        Resource::Scan,
        Resource::Scanner,
        Resource::Sbom,
        Resource::Artifact,
        Resource::ArtifactAddition,
        Resource::ArtifactLabel,
        Resource::Tag,
        Resource::Accessory,
        Resource::Catalog,
        Resource::User,
        Resource::UserGroup,
        Resource::AuditLog,
        Resource::Registry,
        Resource::Replication,
        Resource::GarbageCollection,
        Resource::ScanAll,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Project => "project",
            Resource::Member => "member",
            Resource::Metadata => "metadata",
            Resource::Log => "log",
            Resource::Label => "label",
            Resource::Quota => "quota",
            Resource::Repository => "repository",
            Resource::TagRetention => "tag-retention",
            Resource::ImmutableTag => "immutable-tag",
            Resource::Configuration => "configuration",
            Resource::Robot => "robot",
            Resource::NotificationPolicy => "notification-policy",
            Resource::Scan => "scan",
            Resource::Scanner => "scanner",
            Resource::Sbom => "sbom",
            Resource::Artifact => "artifact",
            Resource::ArtifactAddition => "artifact-addition",
            Resource::ArtifactLabel => "artifact-label",
            Resource::Tag => "tag",
            Resource::Accessory => "accessory",
            Resource::Catalog => "catalog",
            Resource::User => "user",
            Resource::UserGroup => "user-group",
            Resource::AuditLog => "audit-log",
            Resource::Registry => "registry",
            Resource::Replication => "replication",
            Resource::GarbageCollection => "garbage-collection",
            Resource::ScanAll => "scan-all",
        }
    }

    /// Whether the resource exists only at system level (robots may not be
    /// granted it in a project namespace).
    pub fn is_system_only(self) -> bool {
        matches!(
            self,
            Resource::Catalog
                | Resource::User
                | Resource::UserGroup
                | Resource::AuditLog
                | Resource::Registry
                | Resource::Replication
                | Resource::GarbageCollection
                | Resource::ScanAll
        )
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resource {
    type Err = String;

    fn from_str(s: &str) -> Result<Resource, String> {
        Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown resource {s:?}"))
    }
}

/// What is done to a resource (Harbor's action names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Pull,
    Push,
    Create,
    Read,
    Update,
    Delete,
    List,
    Operate,
    ScannerPull,
    Stop,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::Pull,
        Action::Push,
        Action::Create,
        Action::Read,
        Action::Update,
        Action::Delete,
        Action::List,
        Action::Operate,
        Action::ScannerPull,
        Action::Stop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::List => "list",
            Action::Operate => "operate",
            Action::ScannerPull => "scanner-pull",
            Action::Stop => "stop",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Action, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}"))
    }
}

/// One `(resource, action)` pair: the unit of every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permission {
    pub resource: Resource,
    pub action: Action,
}

impl Permission {
    pub const fn new(resource: Resource, action: Action) -> Permission {
        Permission { resource, action }
    }

    // The registry's own operations, named for the API layer's mapping from
    // endpoint to required access.
    /// Read manifests, blobs, tags and referrers.
    pub const PULL: Permission = Permission::new(Resource::Repository, Action::Pull);
    /// Upload blobs, put manifests, move tags.
    pub const PUSH: Permission = Permission::new(Resource::Repository, Action::Push);
    /// Delete a manifest (an artifact) or a blob link.
    pub const DELETE_ARTIFACT: Permission = Permission::new(Resource::Artifact, Action::Delete);
    /// Delete a tag.
    pub const DELETE_TAG: Permission = Permission::new(Resource::Tag, Action::Delete);
    /// List every repository (`/v2/_catalog`); system level.
    pub const CATALOG: Permission = Permission::new(Resource::Catalog, Action::Read);
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

// Columns of ROLE_TABLE, weakest role first: limited guest, guest, developer,
// maintainer, project admin. Harbor's table grows monotonically with the
// role, so each row names the weakest role allowed; the test
// `stronger_roles_include_weaker_ones` keeps it that way.
const LG: [bool; 5] = [true, true, true, true, true];
const G: [bool; 5] = [false, true, true, true, true];
const D: [bool; 5] = [false, false, true, true, true];
const M: [bool; 5] = [false, false, false, true, true];
const PA: [bool; 5] = [false, false, false, false, true];

const fn p(resource: Resource, action: Action) -> Permission {
    Permission::new(resource, action)
}

use Action as A;
use Resource as R;

/// What each project role may do in its project: Harbor's
/// `rolePoliciesMap` (`src/common/rbac/project/rbac_role.go`) without helm
/// charts and preheat. A pair that is not listed is allowed to no role.
pub const ROLE_TABLE: &[(Permission, [bool; 5])] = &[
    // The project itself ("self" in Harbor).
    (p(R::Project, A::Read), LG),
    (p(R::Project, A::Update), PA),
    (p(R::Project, A::Delete), PA),
    (p(R::Member, A::Create), PA),
    (p(R::Member, A::Read), G),
    (p(R::Member, A::Update), PA),
    (p(R::Member, A::Delete), PA),
    (p(R::Member, A::List), G),
    (p(R::Metadata, A::Create), M),
    (p(R::Metadata, A::Read), M),
    (p(R::Metadata, A::Update), M),
    (p(R::Metadata, A::Delete), M),
    (p(R::Log, A::List), G),
    (p(R::Label, A::Create), M),
    (p(R::Label, A::Read), G),
    (p(R::Label, A::Update), M),
    (p(R::Label, A::Delete), M),
    (p(R::Label, A::List), G),
    (p(R::Quota, A::Read), LG),
    // Repositories: pull for every member, push from developer, delete
    // from maintainer.
    (p(R::Repository, A::Create), D),
    (p(R::Repository, A::Read), G),
    (p(R::Repository, A::Update), D),
    (p(R::Repository, A::Delete), M),
    (p(R::Repository, A::List), LG),
    (p(R::Repository, A::Pull), LG),
    (p(R::Repository, A::Push), D),
    (p(R::TagRetention, A::Create), D),
    (p(R::TagRetention, A::Read), D),
    (p(R::TagRetention, A::Update), D),
    (p(R::TagRetention, A::Delete), D),
    (p(R::TagRetention, A::List), D),
    (p(R::TagRetention, A::Operate), D),
    (p(R::ImmutableTag, A::Create), M),
    (p(R::ImmutableTag, A::Update), M),
    (p(R::ImmutableTag, A::Delete), M),
    (p(R::ImmutableTag, A::List), M),
    (p(R::Configuration, A::Read), LG),
    (p(R::Configuration, A::Update), PA),
    (p(R::Robot, A::Create), PA),
    (p(R::Robot, A::Read), G),
    (p(R::Robot, A::Update), PA),
    (p(R::Robot, A::Delete), PA),
    (p(R::Robot, A::List), G),
    (p(R::NotificationPolicy, A::Create), PA),
    (p(R::NotificationPolicy, A::Read), PA),
    (p(R::NotificationPolicy, A::Update), PA),
    (p(R::NotificationPolicy, A::Delete), PA),
    (p(R::NotificationPolicy, A::List), M),
    (p(R::Scan, A::Create), M),
    (p(R::Scan, A::Read), LG),
    (p(R::Scan, A::Stop), M),
    (p(R::Scanner, A::Create), PA),
    (p(R::Scanner, A::Read), LG),
    (p(R::Sbom, A::Create), M),
    (p(R::Sbom, A::Read), LG),
    (p(R::Sbom, A::Stop), M),
    (p(R::Artifact, A::Create), D),
    (p(R::Artifact, A::Read), LG),
    (p(R::Artifact, A::Delete), M),
    (p(R::Artifact, A::List), LG),
    (p(R::ArtifactAddition, A::Read), LG),
    (p(R::ArtifactLabel, A::Create), D),
    (p(R::ArtifactLabel, A::Delete), D),
    (p(R::Tag, A::Create), D),
    (p(R::Tag, A::Delete), M),
    (p(R::Tag, A::List), LG),
    (p(R::Accessory, A::List), LG),
];

/// What anybody, anonymous included, may do in a public project (Harbor's
/// `publicProjectPolicies`): read-only.
pub const PUBLIC_PROJECT_TABLE: &[Permission] = &[
    p(R::Project, A::Read),
    p(R::Label, A::Read),
    p(R::Label, A::List),
    p(R::Repository, A::List),
    p(R::Repository, A::Pull),
    p(R::Scan, A::Read),
    p(R::Scanner, A::Read),
    p(R::Sbom, A::Read),
    p(R::Tag, A::List),
    p(R::Artifact, A::Read),
    p(R::Artifact, A::List),
    p(R::ArtifactAddition, A::Read),
    p(R::Accessory, A::List),
];

/// Where a robot's (or a scoped token's) permissions apply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "project", rename_all = "snake_case")]
pub enum Namespace {
    /// System-level resources (catalog, users, …).
    System,
    /// Every project, present and future (Harbor's `*` namespace).
    AllProjects,
    /// One project, by name.
    Project(String),
}

impl Namespace {
    /// Whether permissions in `self` apply to `target` (`None` = system).
    fn covers(&self, target: Option<&str>) -> bool {
        match (self, target) {
            (Namespace::System, None) => true,
            (Namespace::AllProjects, Some(_)) => true,
            (Namespace::Project(name), Some(project)) => name == project,
            _ => false,
        }
    }

    /// Whether everything `self` covers, `outer` covers too.
    fn within(&self, outer: &Namespace) -> bool {
        match (self, outer) {
            (Namespace::System, Namespace::System) => true,
            (Namespace::AllProjects, Namespace::AllProjects) => true,
            (Namespace::Project(_), Namespace::AllProjects) => true,
            (Namespace::Project(a), Namespace::Project(b)) => a == b,
            _ => false,
        }
    }
}

/// Permissions in one namespace: an element of a robot's (or scoped
/// token's) permission list, Harbor's `{kind, namespace, access}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub namespace: Namespace,
    pub access: Vec<Permission>,
}

/// Whether a grant list allows `permission` on `target` (`None` = system).
pub fn grants_allow(grants: &[Grant], target: Option<&str>, permission: Permission) -> bool {
    grants
        .iter()
        .any(|g| g.namespace.covers(target) && g.access.contains(&permission))
}

/// Whether every permission in `inner` is also held through `outer`: a
/// robot may create robots only with a scope inside its own (Harbor ≥ 2.12).
pub fn grants_within(inner: &[Grant], outer: &[Grant]) -> bool {
    inner.iter().all(|g| {
        g.access.iter().all(|perm| {
            outer
                .iter()
                .any(|o| g.namespace.within(&o.namespace) && o.access.contains(perm))
        })
    })
}

/// Checks a permission list before it is stored: no system-only resource
/// in a project namespace, push only together with pull (Harbor's rule),
/// valid project names, at least one permission.
pub fn validate_grants(grants: &[Grant]) -> Result<(), String> {
    if grants.iter().all(|g| g.access.is_empty()) {
        return Err("a permission list must grant at least one permission".into());
    }
    for g in grants {
        if let Namespace::Project(name) = &g.namespace {
            validate_project_name(name)?;
        }
        if g.namespace != Namespace::System
            && let Some(perm) = g.access.iter().find(|p| p.resource.is_system_only())
        {
            return Err(format!(
                "{perm} is a system-level permission and cannot be granted in a project"
            ));
        }
        if g.access.contains(&Permission::PUSH) && !g.access.contains(&Permission::PULL) {
            return Err("repository:push requires repository:pull in the same namespace".into());
        }
    }
    Ok(())
}

/// What is being accessed: a project (with the principal's roles in it,
/// direct and through groups, looked up by the caller) or the system.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    System,
    Project {
        project: &'a Project,
        roles: &'a [Role],
    },
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Why access was denied, so the API can answer 401 (authenticate, then
/// retry) or 403 (authenticated and still not allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Anonymous and not allowed: logging in might help (401).
    AuthenticationRequired,
    /// Authenticated and not allowed (403).
    Forbidden,
    /// The robot's expiry has passed (401: its credential is no good).
    Expired,
}

/// Decides whether `principal` may do `permission` on `target` at
/// `now_millis` (milliseconds since the Unix epoch). Pure and fail-closed:
/// whatever no rule allows is denied.
///
/// - System admins may do everything (unless they authenticated with a
///   scoped token, whose grants then also apply).
/// - A user's scoped token narrows what the user's roles give.
/// - In a public project anybody may do what [`PUBLIC_PROJECT_TABLE`] lists.
/// - Users may do what [`ROLE_TABLE`] gives any of their `roles` in the
///   project; at system level, nothing (project creation by ordinary users
///   is a configuration question the caller answers).
/// - Robots may do what their grants list, until they expire; `roles` is
///   ignored for them (robots are not members).
pub fn decide(
    principal: &Principal,
    target: Target<'_>,
    permission: Permission,
    now_millis: i64,
) -> Decision {
    let allowed = match principal {
        Principal::Anonymous => public_allows(target, permission),
        Principal::User {
            system_admin,
            limited_to,
            ..
        } => {
            let by_role = *system_admin
                || match target {
                    Target::System => false,
                    Target::Project { roles, .. } => roles.iter().any(|r| r.allows(permission)),
                };
            // A scoped token narrows what the roles give, never what
            // anybody may do in a public project (anonymous could anyway).
            public_allows(target, permission)
                || by_role
                    && limited_to
                        .as_ref()
                        .is_none_or(|grants| grants_allow(grants, target_name(target), permission))
        }
        Principal::Robot {
            permissions,
            expires_at,
            ..
        } => {
            if expires_at.is_some_and(|t| now_millis >= t) {
                return Decision::Deny(Denial::Expired);
            }
            public_allows(target, permission)
                || grants_allow(permissions, target_name(target), permission)
        }
    };
    match (allowed, principal) {
        (true, _) => Decision::Allow,
        (false, Principal::Anonymous) => Decision::Deny(Denial::AuthenticationRequired),
        (false, _) => Decision::Deny(Denial::Forbidden),
    }
}

fn public_allows(target: Target<'_>, permission: Permission) -> bool {
    match target {
        Target::Project { project, .. } => {
            project.public && PUBLIC_PROJECT_TABLE.contains(&permission)
        }
        Target::System => false,
    }
}

fn target_name(target: Target<'_>) -> Option<&str> {
    match target {
        Target::System => None,
        Target::Project { project, .. } => Some(&project.name),
    }
}

#[cfg(test)]
mod tests;
