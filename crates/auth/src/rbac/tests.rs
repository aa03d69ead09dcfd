//! The permission matrix, written a second time by hand from Harbor's role
//! table, checked cell by cell against `ROLE_TABLE` through `decide()`:
//! every resource × action × role, plus system admins, anonymous and
//! non-members on public and private projects, and robots.

use super::*;

/// `resource:action` then one column per role (limited guest, guest,
/// developer, maintainer, project admin): `x` allowed, `.` denied. Pairs
/// that are not listed are denied to every role.
const EXPECTED: &str = "
    project:read                 x x x x x
    project:update               . . . . x
    project:delete               . . . . x
    member:create                . . . . x
    member:read                  . x x x x
    member:update                . . . . x
    member:delete                . . . . x
    member:list                  . x x x x
    metadata:create              . . . x x
    metadata:read                . . . x x
    metadata:update              . . . x x
    metadata:delete              . . . x x
    log:list                     . x x x x
    label:create                 . . . x x
    label:read                   . x x x x
    label:update                 . . . x x
    label:delete                 . . . x x
    label:list                   . x x x x
    quota:read                   x x x x x
    repository:create            . . x x x
    repository:read              . x x x x
    repository:update            . . x x x
    repository:delete            . . . x x
    repository:list              x x x x x
    repository:pull              x x x x x
    repository:push              . . x x x
    tag-retention:create         . . x x x
    tag-retention:read           . . x x x
    tag-retention:update         . . x x x
    tag-retention:delete         . . x x x
    tag-retention:list           . . x x x
    tag-retention:operate        . . x x x
    immutable-tag:create         . . . x x
    immutable-tag:update         . . . x x
    immutable-tag:delete         . . . x x
    immutable-tag:list           . . . x x
    configuration:read           x x x x x
    configuration:update         . . . . x
    robot:create                 . . . . x
    robot:read                   . x x x x
    robot:update                 . . . . x
    robot:delete                 . . . . x
    robot:list                   . x x x x
    notification-policy:create   . . . . x
    notification-policy:read     . . . . x
    notification-policy:update   . . . . x
    notification-policy:delete   . . . . x
    notification-policy:list     . . . x x
    scan:create                  . . . x x
    scan:read                    x x x x x
    scan:stop                    . . . x x
    scanner:create               . . . . x
    scanner:read                 x x x x x
    sbom:create                  . . . x x
    sbom:read                    x x x x x
    sbom:stop                    . . . x x
    artifact:create              . . x x x
    artifact:read                x x x x x
    artifact:delete              . . . x x
    artifact:list                x x x x x
    artifact-addition:read       x x x x x
    artifact-label:create        . . x x x
    artifact-label:delete        . . x x x
    tag:create                   . . x x x
    tag:delete                   . . . x x
    tag:list                     x x x x x
    accessory:list               x x x x x
";

/// What anybody may do in a public project.
const EXPECTED_PUBLIC: &[&str] = &[
    "project:read",
    "label:read",
    "label:list",
    "repository:list",
    "repository:pull",
    "scan:read",
    "scanner:read",
    "sbom:read",
    "tag:list",
    "artifact:read",
    "artifact:list",
    "artifact-addition:read",
    "accessory:list",
];

const NOW: i64 = 1_700_000_000_000;

fn expected() -> Vec<(Permission, [bool; 5])> {
    EXPECTED
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut cols = line.split_whitespace();
            let perm = parse_perm(cols.next().unwrap());
            let marks: Vec<bool> = cols.map(|c| c == "x").collect();
            assert_eq!(marks.len(), 5, "{line}");
            (perm, marks.try_into().unwrap())
        })
        .collect()
}

fn parse_perm(s: &str) -> Permission {
    let (r, a) = s.split_once(':').unwrap();
    Permission::new(r.parse().unwrap(), a.parse().unwrap())
}

fn all_permissions() -> impl Iterator<Item = Permission> {
    Resource::ALL
        .into_iter()
        .flat_map(|r| Action::ALL.into_iter().map(move |a| Permission::new(r, a)))
}

fn user(name: &str) -> Principal {
    Principal::User {
        id: 7,
        name: name.into(),
        system_admin: false,
        groups: vec![],
        limited_to: None,
    }
}

fn admin() -> Principal {
    Principal::User {
        id: 1,
        name: "admin".into(),
        system_admin: true,
        groups: vec![],
        limited_to: None,
    }
}

fn robot(permissions: Vec<Grant>, expires_at: Option<i64>) -> Principal {
    Principal::Robot {
        id: 3,
        name: "robot$team+ci".into(),
        permissions,
        expires_at,
    }
}

fn project(name: &str, public: bool) -> Project {
    Project {
        name: name.into(),
        public,
    }
}

fn in_project<'a>(project: &'a Project, roles: &'a [Role]) -> Target<'a> {
    Target::Project { project, roles }
}

fn ns(name: &str) -> Namespace {
    Namespace::Project(name.into())
}

#[test]
fn every_role_times_every_permission() {
    let expected = expected();
    let private = project("team", false);
    let mut cells = 0;
    for perm in all_permissions() {
        let row = expected.iter().find(|(p, _)| *p == perm).map(|(_, r)| *r);
        for role in Role::ALL {
            let want = row.is_some_and(|r| r[role as usize]);
            assert_eq!(role.allows(perm), want, "{role} {perm}");
            let got = decide(&user("u"), in_project(&private, &[role]), perm, NOW);
            let want_decision = if want {
                Decision::Allow
            } else {
                Decision::Deny(Denial::Forbidden)
            };
            assert_eq!(got, want_decision, "{role} {perm}");
            cells += 1;
        }
    }
    assert_eq!(cells, 28 * 10 * 5);
}

#[test]
fn table_has_no_rows_the_expectation_lacks() {
    let expected = expected();
    for (perm, roles) in ROLE_TABLE {
        let row = expected.iter().find(|(p, _)| p == perm);
        assert_eq!(row.map(|(_, r)| r), Some(roles), "{perm}");
    }
    assert_eq!(ROLE_TABLE.len(), expected.len());
    for (i, (perm, _)) in ROLE_TABLE.iter().enumerate() {
        assert!(
            !ROLE_TABLE[..i].iter().any(|(p, _)| p == perm),
            "{perm} listed twice"
        );
    }
}

#[test]
fn stronger_roles_include_weaker_ones() {
    for perm in all_permissions() {
        for pair in Role::ALL.windows(2) {
            if pair[0].allows(perm) {
                assert!(
                    pair[1].allows(perm),
                    "{} lacks {perm} of {}",
                    pair[1],
                    pair[0]
                );
            }
        }
    }
}

#[test]
fn system_admins_may_do_everything() {
    let private = project("team", false);
    for perm in all_permissions() {
        assert_eq!(decide(&admin(), Target::System, perm, NOW), Decision::Allow);
        assert_eq!(
            decide(&admin(), in_project(&private, &[]), perm, NOW),
            Decision::Allow
        );
    }
}

#[test]
fn anonymous_and_non_members() {
    let public = project("pub", true);
    let private = project("team", false);
    let public_set: Vec<Permission> = EXPECTED_PUBLIC.iter().map(|s| parse_perm(s)).collect();
    for perm in all_permissions() {
        let in_public = public_set.contains(&perm);
        // Anonymous: public read-only, otherwise "log in first".
        let anon_public = decide(&Principal::Anonymous, in_project(&public, &[]), perm, NOW);
        assert_eq!(anon_public.is_allowed(), in_public, "{perm}");
        if !in_public {
            assert_eq!(anon_public, Decision::Deny(Denial::AuthenticationRequired));
        }
        assert_eq!(
            decide(&Principal::Anonymous, in_project(&private, &[]), perm, NOW),
            Decision::Deny(Denial::AuthenticationRequired),
            "{perm}"
        );
        assert_eq!(
            decide(&Principal::Anonymous, Target::System, perm, NOW),
            Decision::Deny(Denial::AuthenticationRequired)
        );
        // A user who is not a member: the same as anonymous, but 403.
        let outsider = user("outsider");
        assert_eq!(
            decide(&outsider, in_project(&public, &[]), perm, NOW).is_allowed(),
            in_public,
            "{perm}"
        );
        assert_eq!(
            decide(&outsider, in_project(&private, &[]), perm, NOW),
            Decision::Deny(Denial::Forbidden),
            "{perm}"
        );
        // Ordinary users have nothing at system level.
        assert_eq!(
            decide(&outsider, Target::System, perm, NOW),
            Decision::Deny(Denial::Forbidden)
        );
    }
}

#[test]
fn several_roles_give_their_union() {
    let private = project("team", false);
    let roles = [Role::LimitedGuest, Role::Developer];
    let u = user("u");
    assert!(decide(&u, in_project(&private, &roles), Permission::PUSH, NOW).is_allowed());
    assert!(
        !decide(
            &u,
            in_project(&private, &roles),
            Permission::DELETE_ARTIFACT,
            NOW
        )
        .is_allowed()
    );
}

#[test]
fn robots_have_exactly_their_grants() {
    let team = project("team", false);
    let other = project("other", false);
    let public = project("pub", true);
    let r = robot(
        vec![Grant {
            namespace: ns("team"),
            access: vec![Permission::PULL, Permission::PUSH],
        }],
        None,
    );
    // Roles passed for a robot are ignored: robots are not members.
    let admin_role = [Role::ProjectAdmin];
    assert!(decide(&r, in_project(&team, &admin_role), Permission::PULL, NOW).is_allowed());
    assert!(decide(&r, in_project(&team, &[]), Permission::PUSH, NOW).is_allowed());
    assert_eq!(
        decide(
            &r,
            in_project(&team, &admin_role),
            Permission::DELETE_ARTIFACT,
            NOW
        ),
        Decision::Deny(Denial::Forbidden)
    );
    assert!(!decide(&r, in_project(&other, &[]), Permission::PULL, NOW).is_allowed());
    assert!(!decide(&r, Target::System, Permission::CATALOG, NOW).is_allowed());
    // Public projects are readable by anybody, robots too.
    assert!(decide(&r, in_project(&public, &[]), Permission::PULL, NOW).is_allowed());
    assert!(!decide(&r, in_project(&public, &[]), Permission::PUSH, NOW).is_allowed());
}

#[test]
fn all_projects_and_system_namespaces() {
    let r = robot(
        vec![
            Grant {
                namespace: Namespace::AllProjects,
                access: vec![Permission::PULL],
            },
            Grant {
                namespace: Namespace::System,
                access: vec![Permission::CATALOG],
            },
        ],
        None,
    );
    for name in ["team", "other", "library"] {
        let p = project(name, false);
        assert!(decide(&r, in_project(&p, &[]), Permission::PULL, NOW).is_allowed());
        assert!(!decide(&r, in_project(&p, &[]), Permission::PUSH, NOW).is_allowed());
        // A system grant does not reach into projects.
        assert!(!decide(&r, in_project(&p, &[]), Permission::CATALOG, NOW).is_allowed());
    }
    assert!(decide(&r, Target::System, Permission::CATALOG, NOW).is_allowed());
    // An all-projects grant does not reach the system level.
    assert!(!decide(&r, Target::System, Permission::PULL, NOW).is_allowed());
}

#[test]
fn expired_robots_are_denied_even_public_reads() {
    let public = project("pub", true);
    let grants = vec![Grant {
        namespace: Namespace::AllProjects,
        access: vec![Permission::PULL],
    }];
    let r = robot(grants, Some(NOW));
    assert_eq!(
        decide(&r, in_project(&public, &[]), Permission::PULL, NOW),
        Decision::Deny(Denial::Expired)
    );
    assert!(decide(&r, in_project(&public, &[]), Permission::PULL, NOW - 1).is_allowed());
}

#[test]
fn scoped_tokens_narrow_a_user() {
    let team = project("team", false);
    let other = project("other", false);
    let limited = |system_admin| Principal::User {
        id: 9,
        name: "dev".into(),
        system_admin,
        groups: vec![],
        limited_to: Some(vec![Grant {
            namespace: ns("team"),
            access: vec![Permission::PULL],
        }]),
    };
    let dev = limited(false);
    let roles = [Role::Developer];
    assert!(decide(&dev, in_project(&team, &roles), Permission::PULL, NOW).is_allowed());
    assert!(!decide(&dev, in_project(&team, &roles), Permission::PUSH, NOW).is_allowed());
    // The token's grant alone gives nothing without a role.
    assert!(!decide(&dev, in_project(&team, &[]), Permission::PULL, NOW).is_allowed());
    // Even a system admin's token is limited to its grants.
    let admin = limited(true);
    assert!(decide(&admin, in_project(&team, &[]), Permission::PULL, NOW).is_allowed());
    assert!(!decide(&admin, in_project(&team, &[]), Permission::PUSH, NOW).is_allowed());
    assert!(!decide(&admin, in_project(&other, &[]), Permission::PULL, NOW).is_allowed());
    assert!(!decide(&admin, Target::System, Permission::CATALOG, NOW).is_allowed());
    // What anybody may do in a public project, a token does not take away.
    let public = project("pub", true);
    assert!(decide(&dev, in_project(&public, &[]), Permission::PULL, NOW).is_allowed());
    assert!(!decide(&dev, in_project(&public, &roles), Permission::PUSH, NOW).is_allowed());
}

#[test]
fn repositories_belong_to_projects() {
    let repo = |s: &str| RepoName::parse(s).unwrap();
    assert_eq!(project_of(&repo("team/app")), "team");
    assert_eq!(project_of(&repo("team/sub/app")), "team");
    assert_eq!(project_of(&repo("alpine")), "library");
    assert_eq!(project_of(&repo("library/alpine")), "library");
}

#[test]
fn project_names() {
    for ok in ["team", "a", "my-team", "t.e_am", "0team9"] {
        assert!(validate_project_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "Team",
        "-team",
        "team-",
        "te/am",
        "te am",
        "te..am",
        &"a".repeat(256),
    ] {
        assert!(validate_project_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn names_round_trip() {
    for r in Role::ALL {
        assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!("\"{}\"", r.as_str())
        );
    }
    for r in Resource::ALL {
        assert_eq!(r.as_str().parse::<Resource>().unwrap(), r);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!("\"{}\"", r.as_str())
        );
    }
    for a in Action::ALL {
        assert_eq!(a.as_str().parse::<Action>().unwrap(), a);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            format!("\"{}\"", a.as_str())
        );
    }
    assert!("owner".parse::<Role>().is_err());
    let ids: Vec<u8> = Role::ALL.iter().map(|r| r.harbor_id()).collect();
    assert_eq!(ids, [5, 3, 2, 4, 1]);
}

#[test]
fn grant_lists_serialize_like_harbor() {
    let grants = vec![
        Grant {
            namespace: ns("team"),
            access: vec![Permission::PULL, Permission::PUSH],
        },
        Grant {
            namespace: Namespace::AllProjects,
            access: vec![Permission::PULL],
        },
        Grant {
            namespace: Namespace::System,
            access: vec![Permission::CATALOG],
        },
    ];
    let json = serde_json::to_value(&grants).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"namespace": {"kind": "project", "project": "team"},
             "access": [{"resource": "repository", "action": "pull"},
                        {"resource": "repository", "action": "push"}]},
            {"namespace": {"kind": "all_projects"},
             "access": [{"resource": "repository", "action": "pull"}]},
            {"namespace": {"kind": "system"},
             "access": [{"resource": "catalog", "action": "read"}]},
        ])
    );
    let back: Vec<Grant> = serde_json::from_value(json).unwrap();
    assert_eq!(back, grants);
    assert!(serde_json::from_str::<Vec<Grant>>(
        r#"[{"namespace":{"kind":"project","project":"t"},"access":[{"resource":"nope","action":"pull"}]}]"#
    )
    .is_err());
}

#[test]
fn grant_validation() {
    let g = |namespace, access: Vec<Permission>| vec![Grant { namespace, access }];
    assert!(validate_grants(&g(ns("team"), vec![Permission::PULL, Permission::PUSH])).is_ok());
    assert!(validate_grants(&g(Namespace::System, vec![Permission::CATALOG])).is_ok());
    // Push needs pull.
    assert!(validate_grants(&g(ns("team"), vec![Permission::PUSH])).is_err());
    // System-only resources stay at system level.
    assert!(validate_grants(&g(ns("team"), vec![Permission::CATALOG])).is_err());
    assert!(validate_grants(&g(Namespace::AllProjects, vec![Permission::CATALOG])).is_err());
    // Nothing granted, bad project name.
    assert!(validate_grants(&g(ns("team"), vec![])).is_err());
    assert!(validate_grants(&[]).is_err());
    assert!(validate_grants(&g(ns("Team"), vec![Permission::PULL])).is_err());
}

#[test]
fn robots_create_robots_only_inside_their_scope() {
    let creator = vec![
        Grant {
            namespace: Namespace::AllProjects,
            access: vec![Permission::PULL],
        },
        Grant {
            namespace: ns("team"),
            access: vec![Permission::PULL, Permission::PUSH],
        },
    ];
    let g = |namespace, access: Vec<Permission>| vec![Grant { namespace, access }];
    assert!(grants_within(
        &g(ns("team"), vec![Permission::PULL, Permission::PUSH]),
        &creator
    ));
    assert!(grants_within(
        &g(ns("other"), vec![Permission::PULL]),
        &creator
    ));
    assert!(grants_within(
        &g(Namespace::AllProjects, vec![Permission::PULL]),
        &creator
    ));
    assert!(!grants_within(
        &g(ns("other"), vec![Permission::PUSH]),
        &creator
    ));
    assert!(!grants_within(
        &g(Namespace::AllProjects, vec![Permission::PUSH]),
        &creator
    ));
    assert!(!grants_within(
        &g(Namespace::System, vec![Permission::CATALOG]),
        &creator
    ));
    assert!(!grants_within(
        &g(ns("team"), vec![Permission::DELETE_ARTIFACT]),
        &creator
    ));
    // A project grant never covers all projects.
    let narrow = g(ns("team"), vec![Permission::PULL]);
    assert!(!grants_within(
        &g(Namespace::AllProjects, vec![Permission::PULL]),
        &narrow
    ));
}
