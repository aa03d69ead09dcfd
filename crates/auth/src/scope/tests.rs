//! Scope parsing (good and bad input) and granting: the granted access is
//! the intersection of what was asked and what `decide()` allows.

use std::collections::HashMap;

use super::*;
use crate::rbac::{Grant, Namespace};

const NOW: i64 = 1_700_000_000_000;

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

#[test]
fn parses_good_scopes() {
    use ScopeAction::*;
    let cases: &[(&str, ScopeTarget, &[ScopeAction])] = &[
        (
            "repository:team/app:pull",
            ScopeTarget::Repository(repo("team/app")),
            &[Pull],
        ),
        (
            "repository:team/app:push,pull",
            ScopeTarget::Repository(repo("team/app")),
            &[Pull, Push],
        ),
        (
            "repository:alpine:pull,pull",
            ScopeTarget::Repository(repo("alpine")),
            &[Pull],
        ),
        (
            "repository:a/b/c:*",
            ScopeTarget::Repository(repo("a/b/c")),
            &[All],
        ),
        (
            "repository:team/app:delete",
            ScopeTarget::Repository(repo("team/app")),
            &[Delete],
        ),
        (
            "repository(plugin):team/app:pull",
            ScopeTarget::Repository(repo("team/app")),
            &[Pull],
        ),
        ("registry:catalog:*", ScopeTarget::Catalog, &[All]),
        // Unknown actions are dropped, unknown types kept but never granted.
        (
            "repository:team/app:pull,metadata-read",
            ScopeTarget::Repository(repo("team/app")),
            &[Pull],
        ),
        (
            "registry:other:*",
            ScopeTarget::Other {
                kind: "registry".into(),
                name: "other".into(),
            },
            &[All],
        ),
        (
            "helm:team/chart:pull",
            ScopeTarget::Other {
                kind: "helm".into(),
                name: "team/chart".into(),
            },
            &[Pull],
        ),
    ];
    for (input, target, actions) in cases {
        let scope = Scope::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(&scope.target, target, "{input}");
        assert_eq!(scope.actions, *actions, "{input}");
    }
}

#[test]
fn rejects_bad_scopes() {
    let long = format!("repository:{}:pull", "a".repeat(600));
    let bad = [
        "",
        "repository",
        "repository:team/app",
        "repository::pull",
        "repository:team/app:",
        ":team/app:pull",
        "Repository:team/app:pull",
        "repository(:team/app:pull",
        "repository(x:team/app:pull",
        "repository():team/app:pull",
        "repository:Team/App:pull",
        "repository:team//app:pull",
        "repository:team/app/:pull",
        "repository:../etc:pull",
        "repository:team/app:pull,",
        "repository:team/app:,pull",
        "repository:team/app:PULL",
        "repository:team/app:pu ll",
        "repository:team/app:pull;push",
        long.as_str(),
    ];
    for input in bad {
        assert!(Scope::parse(input).is_err(), "{input:?} parsed");
    }
}

#[test]
fn display_round_trips() {
    for s in [
        "repository:team/app:pull,push",
        "repository:alpine:*",
        "registry:catalog:*",
        "repository:team/app:pull,push,delete",
    ] {
        let scope = Scope::parse(s).unwrap();
        assert_eq!(Scope::parse(&scope.to_string()).unwrap(), scope);
    }
    assert_eq!(
        Scope::repository(repo("team/app"), &[ScopeAction::Push, ScopeAction::Pull]).to_string(),
        "repository:team/app:pull,push"
    );
    assert_eq!(Scope::catalog().to_string(), "registry:catalog:*");
}

#[test]
fn parse_scopes_splits_and_merges() {
    let scopes = parse_scopes([
        "repository:team/app:pull",
        "repository:team/app:push repository:other/base:pull",
        "  ",
    ])
    .unwrap();
    assert_eq!(
        scopes,
        vec![
            Scope::repository(repo("team/app"), &[ScopeAction::Pull, ScopeAction::Push]),
            Scope::repository(repo("other/base"), &[ScopeAction::Pull]),
        ]
    );
    assert_eq!(parse_scopes([]).unwrap(), vec![]);
    assert!(parse_scopes(["repository:team/app:pull bad"]).is_err());
    let many = vec!["repository:a:pull"; MAX_SCOPES + 1];
    assert_eq!(parse_scopes(many), Err(ScopeError::TooMany));
    assert_eq!(projects_of(&scopes), vec!["other", "team"]);
    let single = parse_scopes(["repository:alpine:pull registry:catalog:*"]).unwrap();
    assert_eq!(projects_of(&single), vec!["library"]);
}

/// A principal's roles, per project name.
type Roles<'a> = &'a [(&'a str, &'a [Role])];

/// Projects known to the grant tests: `team` private, `pub` public,
/// `library` private. Roles are per principal, so each test builds its map.
fn projects(roles: Roles<'_>) -> HashMap<String, ProjectAccess> {
    [("team", false), ("pub", true), ("library", false)]
        .into_iter()
        .map(|(name, public)| {
            let roles = roles
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, r)| r.to_vec())
                .unwrap_or_default();
            (
                name.to_string(),
                ProjectAccess {
                    project: Project {
                        name: name.into(),
                        public,
                    },
                    roles,
                },
            )
        })
        .collect()
}

fn user(system_admin: bool) -> Principal {
    Principal::User {
        id: 1,
        name: "u".into(),
        system_admin,
        groups: vec![],
        limited_to: None,
    }
}

/// Grants `requested` (space-separated scopes) and renders the result as
/// `type:name:actions` strings, for compact expectations.
fn granted(principal: &Principal, roles: Roles<'_>, requested: &str) -> Vec<String> {
    let map = projects(roles);
    let scopes = parse_scopes([requested]).unwrap();
    grant(principal, &scopes, |p| map.get(p), NOW)
        .into_iter()
        .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
        .collect()
}

#[test]
fn grants_the_intersection_of_asked_and_allowed() {
    let dev: Roles = &[("team", &[Role::Developer])];
    let guest: Roles = &[("team", &[Role::Guest])];
    let maintainer: Roles = &[("team", &[Role::Maintainer])];
    let none: Roles = &[];
    let cases: &[(Principal, Roles, &str, &[&str])] = &[
        // Asked pull only: pull only, even if push is allowed.
        (
            user(false),
            dev,
            "repository:team/app:pull",
            &["repository:team/app:pull"],
        ),
        (
            user(false),
            dev,
            "repository:team/app:pull,push",
            &["repository:team/app:pull,push"],
        ),
        // Allowed pull only: push is dropped.
        (
            user(false),
            guest,
            "repository:team/app:pull,push",
            &["repository:team/app:pull"],
        ),
        // Developers may not delete; maintainers may.
        (user(false), dev, "repository:team/app:delete", &[]),
        (
            user(false),
            maintainer,
            "repository:team/app:delete",
            &["repository:team/app:delete"],
        ),
        // `*` is expanded into what is allowed.
        (
            user(false),
            dev,
            "repository:team/app:*",
            &["repository:team/app:pull,push"],
        ),
        (
            user(false),
            maintainer,
            "repository:team/app:*",
            &["repository:team/app:pull,push,delete"],
        ),
        // Not a member of a private project: nothing.
        (user(false), none, "repository:team/app:pull", &[]),
        // Public project: pull for anybody, never push.
        (
            user(false),
            none,
            "repository:pub/app:pull,push",
            &["repository:pub/app:pull"],
        ),
        (
            Principal::Anonymous,
            none,
            "repository:pub/app:*",
            &["repository:pub/app:pull"],
        ),
        (Principal::Anonymous, none, "repository:team/app:pull", &[]),
        // Single-segment names are in `library` (private here).
        (Principal::Anonymous, none, "repository:alpine:pull", &[]),
        (
            user(true),
            none,
            "repository:alpine:pull",
            &["repository:alpine:pull"],
        ),
        // A project that does not exist grants nothing, even to admins.
        (user(true), none, "repository:ghost/app:pull,push", &[]),
        // Cross-repository mount: each scope on its own.
        (
            user(false),
            dev,
            "repository:team/app:pull,push repository:pub/base:pull",
            &["repository:team/app:pull,push", "repository:pub/base:pull"],
        ),
        // The catalog is for system admins.
        (user(false), dev, "registry:catalog:*", &[]),
        (
            user(true),
            none,
            "registry:catalog:*",
            &["registry:catalog:*"],
        ),
        (user(true), none, "registry:catalog:pull", &[]),
        // Unknown types and actions are never granted.
        (user(true), none, "helm:team/chart:pull", &[]),
        (user(true), none, "registry:other:*", &[]),
        (user(true), none, "repository:team/app:metadata-read", &[]),
        // Admins get everything asked in existing projects.
        (
            user(true),
            none,
            "repository:team/app:*",
            &["repository:team/app:pull,push,delete"],
        ),
    ];
    for (principal, roles, requested, want) in cases {
        assert_eq!(
            granted(principal, roles, requested),
            want.to_vec(),
            "{principal:?} {roles:?} {requested}"
        );
    }
}

#[test]
fn robots_get_their_grants_only() {
    let robot = |expires_at| Principal::Robot {
        id: 2,
        name: "robot$team+ci".into(),
        permissions: vec![Grant {
            namespace: Namespace::Project("team".into()),
            access: vec![Permission::PULL, Permission::PUSH],
        }],
        expires_at,
    };
    // Robots are not members: roles given for them are ignored.
    let roles: Roles = &[("team", &[Role::ProjectAdmin])];
    assert_eq!(
        granted(&robot(None), roles, "repository:team/app:*"),
        vec!["repository:team/app:pull,push"]
    );
    assert_eq!(
        granted(
            &robot(None),
            roles,
            "repository:library/x:pull registry:catalog:*"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        granted(&robot(None), roles, "repository:pub/x:pull,push"),
        vec!["repository:pub/x:pull"]
    );
    assert_eq!(
        granted(&robot(Some(NOW - 1)), roles, "repository:team/app:pull"),
        Vec::<String>::new()
    );
}

#[test]
fn access_entries_check_requests() {
    let entry = AccessEntry {
        kind: "repository".into(),
        name: "team/app".into(),
        actions: vec!["pull".into()],
    };
    let app = ScopeTarget::Repository(repo("team/app"));
    assert!(entry.allows(&app, ScopeAction::Pull));
    assert!(!entry.allows(&app, ScopeAction::Push));
    assert!(!entry.allows(
        &ScopeTarget::Repository(repo("team/other")),
        ScopeAction::Pull
    ));
    let star = AccessEntry {
        kind: "registry".into(),
        name: "catalog".into(),
        actions: vec!["*".into()],
    };
    assert!(star.allows(&ScopeTarget::Catalog, ScopeAction::All));
    assert!(!star.allows(&app, ScopeAction::Pull));
}
