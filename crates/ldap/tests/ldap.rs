//! berth-ldap against a real OpenLDAP slapd (scripts/services/ldap.sh:
//! fixture in tests/fixtures/data.ldif, memberof overlay, private CA).
//!
//! The server's address comes from `BERTH_TEST_LDAP_*`; a missing variable
//! fails the test with a hint, never skips it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_ldap::{LdapConfig, LdapDirectory, LdapError, LdapGroup, LdapUser};

fn service_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: run scripts/start-services.sh, then \
             `set -a; . target/test-services.env; set +a` before cargo test \
             (scripts/test does both)"
        ),
    }
}

fn base_dn() -> String {
    service_env("BERTH_TEST_LDAP_BASE_DN")
}

fn ca_file() -> PathBuf {
    PathBuf::from(service_env("BERTH_TEST_LDAP_CA"))
}

fn unrelated_ca() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unrelated-ca.crt")
}

/// Plain ldap://, the fixture's search account, group search mode.
fn config() -> LdapConfig {
    let base = base_dn();
    let mut c = LdapConfig::new(
        service_env("BERTH_TEST_LDAP_URL"),
        format!("ou=people,{base}"),
    );
    c.bind_dn = Some(service_env("BERTH_TEST_LDAP_BIND_DN"));
    c.bind_password = Some(service_env("BERTH_TEST_LDAP_BIND_PASSWORD"));
    c.group_base_dn = Some(format!("ou=groups,{base}"));
    c.timeout_secs = 5;
    c
}

fn ldaps_config() -> LdapConfig {
    let mut c = config();
    c.url = service_env("BERTH_TEST_LDAPS_URL");
    c.ca_file = Some(ca_file());
    c
}

fn start_tls_config() -> LdapConfig {
    let mut c = config();
    c.start_tls = true;
    c.ca_file = Some(ca_file());
    c
}

fn dir(c: LdapConfig) -> LdapDirectory {
    LdapDirectory::new(c).expect("valid config")
}

fn group_dn(rdn: &str) -> String {
    format!("{rdn},ou=groups,{}", base_dn())
}

fn names(user: &LdapUser) -> Vec<&str> {
    user.groups.iter().map(|g| g.name.as_str()).collect()
}

async fn login(d: &LdapDirectory, user: &str, password: &str) -> LdapUser {
    d.authenticate(user, password)
        .await
        .unwrap_or_else(|e| panic!("authenticate {user}: {e}"))
        .unwrap_or_else(|| panic!("{user} should authenticate"))
}

async fn refused(d: &LdapDirectory, user: &str, password: &str) {
    let got = d
        .authenticate(user, password)
        .await
        .unwrap_or_else(|e| panic!("authenticate {user:?}: {e}"));
    assert_eq!(got, None, "{user:?} must not authenticate");
}

#[tokio::test]
async fn right_password_gives_user_with_email_and_groups() {
    let d = dir(config());
    let alice = login(&d, "alice", "alicepass").await;
    assert_eq!(
        alice,
        LdapUser {
            dn: format!("uid=alice,ou=people,{}", base_dn()),
            username: "alice".into(),
            email: Some("alice@example.org".into()),
            groups: vec![LdapGroup {
                dn: group_dn("cn=admins"),
                name: "admins".into()
            }],
        }
    );
    // What the lead stores/serves: plain JSON.
    let json = serde_json::to_value(&alice).unwrap();
    assert_eq!(json["groups"][0]["name"], "admins");

    // No mail attribute: None.
    let carol = login(&d, "carol", "carolpass").await;
    assert_eq!(carol.email, None);
}

#[tokio::test]
async fn username_matching_is_the_directorys_and_the_result_is_canonical() {
    let d = dir(config());
    let alice = login(&d, "ALICE", "alicepass").await;
    assert_eq!(alice.username, "alice");
}

#[tokio::test]
async fn nested_groups_are_resolved_transitively() {
    let d = dir(config());
    // bob is in developers; developers is a member of platform.
    let bob = login(&d, "bob", "bobpass").await;
    assert_eq!(names(&bob), ["developers", "platform"]);
    assert_eq!(
        bob.groups.iter().map(|g| g.dn.clone()).collect::<Vec<_>>(),
        [group_dn("cn=developers"), group_dn("cn=platform")]
    );
    // carol: platform directly, "qa, nightly" (a DN with an escaped comma)
    // directly, and release through it. Sorted by DN.
    let carol = login(&d, "carol", "carolpass").await;
    assert_eq!(names(&carol), ["platform", "qa, nightly", "release"]);
    assert!(carol.groups.windows(2).all(|w| w[0].dn < w[1].dn));
}

#[tokio::test]
async fn nesting_off_or_depth_zero_gives_direct_groups_only() {
    let mut c = config();
    c.nested_groups = false;
    assert_eq!(
        names(&login(&dir(c), "bob", "bobpass").await),
        ["developers"]
    );
    let mut c = config();
    c.max_nesting_depth = 0;
    assert_eq!(
        names(&login(&dir(c), "carol", "carolpass").await),
        ["platform", "qa, nightly"]
    );
    let mut c = config();
    c.use_member_of = true;
    c.nested_groups = false;
    assert_eq!(
        names(&login(&dir(c), "bob", "bobpass").await),
        ["developers"]
    );
}

#[tokio::test]
async fn no_group_base_means_no_groups() {
    let mut c = config();
    c.group_base_dn = None;
    assert!(login(&dir(c), "bob", "bobpass").await.groups.is_empty());
}

#[tokio::test]
async fn wrong_password_is_none() {
    let d = dir(config());
    refused(&d, "alice", "wrong").await;
    refused(&d, "alice", "bobpass").await;
    refused(&d, "alice", "alicepass ").await;
}

#[tokio::test]
async fn unknown_user_is_none() {
    let d = dir(config());
    refused(&d, "mallory", "alicepass").await;
    // An existing entry that is not under the user base (the search account).
    refused(&d, "reader", "readerpass").await;
    assert_eq!(d.find_user("mallory").await.unwrap(), None);
}

#[tokio::test]
async fn empty_password_is_none_without_any_connection() {
    // A listener that would see any connection attempt.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = config();
    c.url = format!("ldap://{}", listener.local_addr().unwrap());
    let d = dir(c);
    assert_eq!(d.authenticate("alice", "").await.unwrap(), None);
    assert_eq!(d.authenticate("", "").await.unwrap(), None);
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "an empty password must not open a connection"
    );

    // And against the real server, for every user.
    let d = dir(config());
    for user in ["alice", "bob", "carol", "mallory"] {
        refused(&d, user, "").await;
    }
}

#[tokio::test]
async fn filter_injection_attempts_are_none() {
    let d = dir(config());
    for (user, password) in [
        ("*", "alicepass"),
        ("*", "bobpass"),
        ("bob)(uid=*", "bobpass"),
        ("bob)(|(uid=*", "bobpass"),
        ("*)(uid=*))(|(uid=*", "bobpass"),
        ("b*", "bobpass"),
        ("*ob", "bobpass"),
        ("bo\\62", "bobpass"),
        ("\\2a", "bobpass"),
        ("bob\0", "bobpass"),
        ("uid=bob,ou=people,dc=example,dc=org", "bobpass"),
        ("star*", "starpass"),
    ] {
        refused(&d, user, password).await;
        assert_eq!(d.find_user(user).await.unwrap(), None, "{user:?}");
    }
    // The metacharacters are matched literally: this user exists.
    let star = login(&d, "star*(x)", "starpass").await;
    assert_eq!(star.username, "star*(x)");
}

#[tokio::test]
async fn find_user_needs_no_password() {
    let d = dir(config());
    let bob = d.find_user("bob").await.unwrap().expect("bob exists");
    assert_eq!(bob.email.as_deref(), Some("bob@example.org"));
    assert_eq!(names(&bob), ["developers", "platform"]);
    assert_eq!(bob, login(&d, "bob", "bobpass").await);
}

#[tokio::test]
async fn ldaps_with_the_ca_file_works() {
    let d = dir(ldaps_config());
    let alice = login(&d, "alice", "alicepass").await;
    assert_eq!(names(&alice), ["admins"]);
    refused(&d, "alice", "wrong").await;
    let report = d.test_connection().await.unwrap();
    assert!(report.tls && report.bind_ok);
}

#[tokio::test]
async fn start_tls_with_the_ca_file_works() {
    let d = dir(start_tls_config());
    let bob = login(&d, "bob", "bobpass").await;
    assert_eq!(names(&bob), ["developers", "platform"]);
    refused(&d, "bob", "wrong").await;
    let report = d.test_connection().await.unwrap();
    assert!(report.tls && report.bind_ok);
}

/// A TLS failure is an error (not a refused login), at construction (no
/// trust store at all) or at connection (the server's CA is not trusted).
async fn assert_tls_fails(c: LdapConfig) {
    let d = match LdapDirectory::new(c) {
        Err(e @ LdapError::Tls(_)) => {
            eprintln!("refused at construction: {e}");
            return;
        }
        Err(e) => panic!("unexpected construction error: {e}"),
        Ok(d) => d,
    };
    match d.authenticate("alice", "alicepass").await {
        Err(e @ LdapError::Connect { .. }) => {
            let msg = e.to_string();
            eprintln!("refused at connection: {msg}");
            assert!(
                msg.contains("certificate") || msg.contains("issuer"),
                "{msg}"
            );
            assert!(
                !msg.contains("alicepass") && !msg.contains("readerpass"),
                "{msg}"
            );
        }
        other => panic!("expected a TLS connection error, got {other:?}"),
    }
    assert!(matches!(
        d.test_connection().await,
        Err(LdapError::Connect { .. })
    ));
}

#[tokio::test]
async fn ldaps_without_the_right_ca_fails() {
    let mut c = ldaps_config();
    c.ca_file = None; // system roots: do not include the test CA
    assert_tls_fails(c).await;
    let mut c = ldaps_config();
    c.ca_file = Some(unrelated_ca());
    assert_tls_fails(c).await;
}

#[tokio::test]
async fn start_tls_without_the_right_ca_fails() {
    let mut c = start_tls_config();
    c.ca_file = Some(unrelated_ca());
    assert_tls_fails(c).await;
}

#[tokio::test]
async fn member_of_mode_gives_the_same_groups() {
    let search = dir(config());
    let mut c = config();
    c.use_member_of = true;
    let member_of = dir(c);
    for (user, password) in [
        ("alice", "alicepass"),
        ("bob", "bobpass"),
        ("carol", "carolpass"),
        ("dave", "davepass"),
        ("star*(x)", "starpass"),
    ] {
        let a = login(&search, user, password).await;
        let b = login(&member_of, user, password).await;
        assert_eq!(a, b, "{user}");
    }
    assert_eq!(
        names(&login(&member_of, "carol", "carolpass").await),
        ["platform", "qa, nightly", "release"]
    );

    // memberOf without a group base: the same here (all groups are there).
    let mut c = config();
    c.use_member_of = true;
    c.group_base_dn = None;
    assert_eq!(
        names(&login(&dir(c), "bob", "bobpass").await),
        ["developers", "platform"]
    );
    // A group base that holds none of them: no groups.
    let mut c = config();
    c.use_member_of = true;
    c.group_base_dn = Some(format!("ou=people,{}", base_dn()));
    assert!(login(&dir(c), "bob", "bobpass").await.groups.is_empty());
}

#[tokio::test]
async fn a_group_cycle_terminates() {
    // cycle-a <-> cycle-b, dave in cycle-a: both modes, each group once.
    for use_member_of in [false, true] {
        let mut c = config();
        c.use_member_of = use_member_of;
        c.max_nesting_depth = 64;
        let d = dir(c);
        let dave = tokio::time::timeout(Duration::from_secs(10), login(&d, "dave", "davepass"))
            .await
            .expect("a cycle must not hang");
        assert_eq!(
            names(&dave),
            ["cycle-a", "cycle-b"],
            "use_member_of={use_member_of}"
        );
    }
}

#[tokio::test]
async fn test_connection_reports_bind_and_a_bounded_sample() {
    let d = dir(config());
    let report = d.test_connection().await.unwrap();
    assert!(report.bind_ok);
    assert!(!report.tls);
    // alice, bob, carol, dave, star*(x).
    assert_eq!(report.users_found, 5);
    assert!(report.elapsed_ms < 5_000);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["bind_ok"], true);

    // The sample is bounded: the whole directory has more than 10 entries.
    let mut c = config();
    c.user_base_dn = base_dn();
    c.user_filter = "(|(uid={username})(cn={username}))".into();
    let report = dir(c).test_connection().await.unwrap();
    assert_eq!(report.users_found, 10);
}

#[tokio::test]
async fn a_rejected_search_account_is_reported_and_is_an_error_for_logins() {
    let mut c = config();
    c.bind_password = Some("not-the-reader-password".into());
    let d = dir(c);
    let report = d.test_connection().await.unwrap();
    assert!(!report.bind_ok);
    assert_eq!(report.users_found, 0);
    let err = d.authenticate("alice", "alicepass").await.unwrap_err();
    assert!(
        matches!(err, LdapError::SearchBindRejected { .. }),
        "{err:?}"
    );
    let msg = format!("{err} {err:?}");
    assert!(
        !msg.contains("not-the-reader-password") && !msg.contains("alicepass"),
        "{msg}"
    );
}

#[tokio::test]
async fn directory_problems_are_errors_not_refusals() {
    // Nothing listens on port 1.
    let mut c = config();
    c.url = "ldap://127.0.0.1:1".into();
    let err = dir(c).authenticate("alice", "alicepass").await.unwrap_err();
    assert!(matches!(err, LdapError::Connect { .. }), "{err:?}");

    // A user base that does not exist: noSuchObject (32).
    let mut c = config();
    c.user_base_dn = format!("ou=nowhere,{}", base_dn());
    let err = dir(c).authenticate("alice", "alicepass").await.unwrap_err();
    assert!(
        matches!(err, LdapError::Directory { rc: 32, .. }),
        "{err:?}"
    );

    // A filter matching several users for one name.
    let mut c = config();
    c.user_filter = "(|(uid={username})(objectClass=inetOrgPerson))".into();
    let err = dir(c).authenticate("alice", "alicepass").await.unwrap_err();
    assert!(matches!(err, LdapError::AmbiguousUser { .. }), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts TCP connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut c = config();
    c.url = format!("ldap://{addr}");
    c.timeout_secs = 1;
    let started = Instant::now();
    let err = dir(c).authenticate("alice", "alicepass").await.unwrap_err();
    assert!(matches!(err, LdapError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    let mut c = config();
    c.url = format!("ldaps://{addr}");
    c.ca_file = Some(ca_file());
    c.timeout_secs = 1;
    let err = dir(c).test_connection().await.unwrap_err();
    assert!(matches!(err, LdapError::Timeout { .. }), "{err:?}");
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_logins_through_a_small_pool() {
    let mut c = ldaps_config();
    c.pool_size = 3;
    let d = dir(c);
    let users = [
        ("alice", "alicepass", Some(vec!["admins"])),
        ("bob", "bobpass", Some(vec!["developers", "platform"])),
        (
            "carol",
            "carolpass",
            Some(vec!["platform", "qa, nightly", "release"]),
        ),
        ("dave", "davepass", Some(vec!["cycle-a", "cycle-b"])),
        ("bob", "wrong", None),
    ];
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let d = d.clone();
            let (user, password, expected) = users[i % users.len()].clone();
            tokio::spawn(async move {
                let got = d.authenticate(user, password).await.unwrap();
                let got = got.map(|u| u.groups.into_iter().map(|g| g.name).collect::<Vec<_>>());
                let expected =
                    expected.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
                assert_eq!(got, expected, "{user}/{password}");
            })
        })
        .collect();
    for result in futures::future::join_all(tasks).await {
        result.expect("task");
    }
    // The pool is still usable afterwards.
    assert_eq!(names(&login(&d, "alice", "alicepass").await), ["admins"]);
}
