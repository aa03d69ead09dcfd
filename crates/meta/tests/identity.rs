//! The identity tables (migration 0003) and `identity.rs`, on SQLite and on
//! a real PostgreSQL: every check is an `async fn(&MetaStore)` run against
//! both, as in `meta_store.rs`.
//!
//! Checks use their own names so they can share a store
//! (`all_checks_share_one_store`); each backend's constructor still gives
//! every test a fresh database.

mod common;

use berth_meta::{
    AuditCursor, AuditEntry, AuditFilter, MemberRef, MetaStore, NewRobot, NewUser, now_millis,
};

fn new_user(name: &str) -> NewUser<'_> {
    NewUser {
        name,
        email: None,
        source: "local",
        external_id: None,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"),
        system_admin: false,
    }
}

async fn create_user(s: &MetaStore, name: &str) -> i64 {
    let mut tx = s.begin_identity().await.unwrap();
    let id = tx.insert_user(new_user(name)).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    id
}

async fn create_project(s: &MetaStore, name: &str, public: bool) -> i64 {
    let mut tx = s.begin_identity().await.unwrap();
    let id = tx.insert_project(name, public).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    id
}

async fn create_group(s: &MetaStore, name: &str) -> i64 {
    let mut tx = s.begin_identity().await.unwrap();
    let id = tx.upsert_group("ldap", name, None).await.unwrap();
    tx.commit().await.unwrap();
    id
}

fn entry(at: i64, actor: &str, action: &str, project: Option<&str>) -> AuditEntry {
    AuditEntry {
        occurred_at: at,
        actor: actor.into(),
        actor_kind: "user".into(),
        action: action.into(),
        resource: format!("{}/app:1.0", project.unwrap_or("library")),
        project: project.map(str::to_string),
        result: "success".into(),
        source_addr: Some("192.0.2.1".into()),
        details: Some(r#"{"digest":"sha256:00"}"#.into()),
    }
}

// ---------------------------------------------------------------------------
// The suite.
// ---------------------------------------------------------------------------

async fn migration_creates_private_library(s: &MetaStore) {
    let library = s.project_by_name("library").await.unwrap().unwrap();
    assert!(!library.public);
    assert!(library.created_at > 1_600_000_000_000, "{library:?}");
    assert!(library.created_at <= now_millis());
    assert!(s.project_by_name("nope-id").await.unwrap().is_none());
}

async fn users_are_created_found_and_changed(s: &MetaStore) {
    let alice = create_user(s, "id-users-alice").await;
    let mut tx = s.begin_identity().await.unwrap();
    assert_eq!(
        tx.insert_user(new_user("id-users-alice")).await.unwrap(),
        None,
        "a taken name is reported, not an error"
    );
    let dn = "uid=bob,ou=people,dc=example";
    let bob = tx
        .insert_user(NewUser {
            name: "id-users-bob",
            email: Some("bob@example.com"),
            source: "ldap",
            external_id: Some(dn),
            password_hash: None,
            system_admin: true,
        })
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_ne!(alice, bob);

    let a = s.user_by_name("id-users-alice").await.unwrap().unwrap();
    assert_eq!(a.id, alice);
    assert_eq!(a.source, "local");
    assert!(
        a.password_hash
            .as_deref()
            .unwrap()
            .starts_with("$argon2id$")
    );
    assert!(!a.system_admin && !a.disabled);
    assert!(!format!("{a:?}").contains("argon2"), "Debug shows the hash");
    let b = s.user_by_external_id("ldap", dn).await.unwrap().unwrap();
    assert_eq!(b.id, bob);
    assert_eq!(b.email.as_deref(), Some("bob@example.com"));
    assert!(b.system_admin && b.password_hash.is_none());
    assert_eq!(
        s.user_by_id(bob).await.unwrap().unwrap().name,
        "id-users-bob"
    );
    assert!(s.user_by_name("id-users-carol").await.unwrap().is_none());
    assert!(s.user_by_external_id("oidc", dn).await.unwrap().is_none());

    let mut tx = s.begin_identity().await.unwrap();
    assert!(
        tx.set_password_hash(alice, Some("$argon2id$new"))
            .await
            .unwrap()
    );
    assert!(tx.set_system_admin(alice, true).await.unwrap());
    assert!(tx.set_user_disabled(alice, true).await.unwrap());
    assert!(
        tx.set_user_email(alice, Some("a@example.com"))
            .await
            .unwrap()
    );
    assert!(!tx.set_user_disabled(-5, true).await.unwrap());
    tx.commit().await.unwrap();
    let a2 = s.user_by_name("id-users-alice").await.unwrap().unwrap();
    assert_eq!(a2.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(a2.system_admin && a2.disabled);
    assert_eq!(a2.email.as_deref(), Some("a@example.com"));
    assert!(a2.updated_at >= a.updated_at);

    let mut tx = s.begin_identity().await.unwrap();
    assert!(tx.set_password_hash(alice, None).await.unwrap());
    assert!(tx.delete_user(bob).await.unwrap());
    assert!(!tx.delete_user(bob).await.unwrap());
    tx.commit().await.unwrap();
    assert!(
        s.user_by_name("id-users-alice")
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .is_none()
    );
    assert!(s.user_by_id(bob).await.unwrap().is_none());
}

async fn users_keyset_pagination(s: &MetaStore) {
    // Byte order: uppercase before lowercase, '-' before letters.
    for name in ["id-page-b", "id-page-a", "id-page-C", "id-page-a-2"] {
        create_user(s, name).await;
    }
    let mut seen = Vec::new();
    let mut after = Some("id-page-".to_string());
    loop {
        let page = s.users(after.as_deref(), 2).await.unwrap();
        let mine: Vec<String> = page
            .iter()
            .map(|u| u.name.clone())
            .filter(|n| n.starts_with("id-page-"))
            .collect();
        seen.extend(mine.iter().cloned());
        if page.len() < 2 || mine.len() < page.len() {
            break;
        }
        after = page.last().map(|u| u.name.clone());
    }
    assert_eq!(seen, ["id-page-C", "id-page-a", "id-page-a-2", "id-page-b"]);
}

async fn projects_members_and_roles(s: &MetaStore) {
    let team = create_project(s, "id-proj-team", false).await;
    let public = create_project(s, "id-proj-pub", true).await;
    let mut tx = s.begin_identity().await.unwrap();
    assert_eq!(tx.insert_project("id-proj-team", true).await.unwrap(), None);
    tx.commit().await.unwrap();
    let p = s.project_by_name("id-proj-pub").await.unwrap().unwrap();
    assert_eq!((p.id, p.public), (public, true));
    let listed: Vec<String> = s
        .projects(Some("id-proj-"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n.starts_with("id-proj-"))
        .collect();
    assert_eq!(listed, ["id-proj-pub", "id-proj-team"]);

    let dev = create_user(s, "id-proj-dev").await;
    let other = create_user(s, "id-proj-other").await;
    let readers = create_group(s, "id-proj-readers").await;
    let admins = create_group(s, "id-proj-admins").await;
    let mut tx = s.begin_identity().await.unwrap();
    tx.set_member(team, MemberRef::User(dev), "guest")
        .await
        .unwrap();
    // Setting again replaces the role.
    tx.set_member(team, MemberRef::User(dev), "developer")
        .await
        .unwrap();
    tx.set_member(team, MemberRef::Group(readers), "guest")
        .await
        .unwrap();
    tx.set_member(team, MemberRef::Group(admins), "project_admin")
        .await
        .unwrap();
    tx.set_member(public, MemberRef::User(other), "maintainer")
        .await
        .unwrap();
    tx.set_user_groups(dev, &[readers]).await.unwrap();
    tx.commit().await.unwrap();

    // Direct role only, then direct and through groups (deduplicated).
    assert_eq!(
        s.member_roles(team, Some(dev), &[]).await.unwrap(),
        ["developer"]
    );
    assert_eq!(
        s.member_roles(team, Some(dev), &[readers, admins])
            .await
            .unwrap(),
        ["developer", "guest", "project_admin"]
    );
    // A non-member, through a group only, nobody at all.
    assert!(
        s.member_roles(team, Some(other), &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.member_roles(team, Some(other), &[readers]).await.unwrap(),
        ["guest"]
    );
    assert!(s.member_roles(team, None, &[]).await.unwrap().is_empty());
    assert_eq!(
        s.member_roles(public, Some(other), &[]).await.unwrap(),
        ["maintainer"]
    );

    let members = s.project_members(team).await.unwrap();
    let shown: Vec<(MemberRef, &str, &str)> = members
        .iter()
        .map(|m| (m.member, m.name.as_str(), m.role.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            (MemberRef::User(dev), "id-proj-dev", "developer"),
            (MemberRef::Group(admins), "id-proj-admins", "project_admin"),
            (MemberRef::Group(readers), "id-proj-readers", "guest"),
        ]
    );
    let groups: Vec<String> = s
        .groups_of_user(dev)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(groups, ["id-proj-readers"]);

    // An unknown role is refused by the database.
    let mut tx = s.begin_identity().await.unwrap();
    assert!(
        tx.set_member(team, MemberRef::User(other), "owner")
            .await
            .is_err()
    );
    drop(tx);

    let mut tx = s.begin_identity().await.unwrap();
    assert!(
        tx.remove_member(team, MemberRef::Group(admins))
            .await
            .unwrap()
    );
    assert!(
        !tx.remove_member(team, MemberRef::Group(admins))
            .await
            .unwrap()
    );
    assert!(tx.set_project_public(team, true).await.unwrap());
    tx.commit().await.unwrap();
    assert!(
        s.project_by_name("id-proj-team")
            .await
            .unwrap()
            .unwrap()
            .public
    );
    assert_eq!(
        s.member_roles(team, Some(dev), &[readers, admins])
            .await
            .unwrap(),
        ["developer", "guest"]
    );

    // Deleting a group, a user or the project takes their memberships along.
    let mut tx = s.begin_identity().await.unwrap();
    assert!(tx.delete_group(readers).await.unwrap());
    tx.commit().await.unwrap();
    assert!(s.groups_of_user(dev).await.unwrap().is_empty());
    assert_eq!(
        s.member_roles(team, Some(dev), &[readers]).await.unwrap(),
        ["developer"]
    );
    let mut tx = s.begin_identity().await.unwrap();
    assert!(tx.delete_user(dev).await.unwrap());
    assert!(tx.delete_project(public).await.unwrap());
    tx.commit().await.unwrap();
    assert!(s.project_members(team).await.unwrap().is_empty());
    assert!(s.project_members(public).await.unwrap().is_empty());
    assert!(s.project_by_name("id-proj-pub").await.unwrap().is_none());
}

async fn groups_are_upserted(s: &MetaStore) {
    let mut tx = s.begin_identity().await.unwrap();
    let a = tx
        .upsert_group("ldap", "id-grp-devs", Some("cn=devs,dc=x"))
        .await
        .unwrap();
    let again = tx
        .upsert_group("ldap", "id-grp-devs", Some("cn=devs,ou=new,dc=x"))
        .await
        .unwrap();
    let oidc = tx.upsert_group("oidc", "id-grp-devs", None).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(a, again);
    assert_ne!(a, oidc);
    let g = s
        .group_by_name("ldap", "id-grp-devs")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.external_id.as_deref(), Some("cn=devs,ou=new,dc=x"));
    assert!(
        s.group_by_name("local", "id-grp-devs")
            .await
            .unwrap()
            .is_none()
    );
}

async fn robots_are_stored_with_their_permissions(s: &MetaStore) {
    let team = create_project(s, "id-robot-team", false).await;
    let permissions = r#"[{"namespace":{"kind":"project","project":"id-robot-team"},"access":[{"resource":"repository","action":"pull"}]}]"#;
    let robot = |name, project_id, expires_at| NewRobot {
        name,
        description: "ci",
        project_id,
        permissions,
        secret_hash: "sha256:aaaa",
        expires_at,
        created_by: "admin",
    };
    let mut tx = s.begin_identity().await.unwrap();
    let ci = tx
        .insert_robot(robot(
            "robot$id-robot-team+ci",
            Some(team),
            Some(4_000_000_000_000),
        ))
        .await
        .unwrap()
        .unwrap();
    let sys = tx
        .insert_robot(robot("robot$id-robot-sys", None, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tx.insert_robot(robot("robot$id-robot-sys", None, None))
            .await
            .unwrap(),
        None
    );
    tx.commit().await.unwrap();

    let r = s
        .robot_by_name("robot$id-robot-team+ci")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.id, ci);
    assert_eq!(r.project_id, Some(team));
    assert_eq!(r.permissions, permissions);
    assert_eq!(r.expires_at, Some(4_000_000_000_000));
    assert_eq!(r.created_by, "admin");
    assert!(!r.disabled);
    assert!(
        !format!("{r:?}").contains("sha256:aaaa"),
        "Debug shows the hash"
    );
    let in_team: Vec<i64> = s
        .robots(Some(team))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(in_team, [ci]);
    let system: Vec<i64> = s.robots(None).await.unwrap().iter().map(|r| r.id).collect();
    assert!(system.contains(&sys) && !system.contains(&ci));

    let mut tx = s.begin_identity().await.unwrap();
    assert!(tx.set_robot_secret(ci, "sha256:bbbb").await.unwrap());
    assert!(tx.update_robot(ci, "[]", None, true).await.unwrap());
    tx.commit().await.unwrap();
    let r = s
        .robot_by_name("robot$id-robot-team+ci")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.secret_hash, "sha256:bbbb");
    assert_eq!(
        (r.permissions.as_str(), r.expires_at, r.disabled),
        ("[]", None, true)
    );

    // A project's robots go with it; system robots are deleted one by one.
    let mut tx = s.begin_identity().await.unwrap();
    assert!(tx.delete_project(team).await.unwrap());
    assert!(tx.delete_robot(sys).await.unwrap());
    tx.commit().await.unwrap();
    assert!(
        s.robot_by_name("robot$id-robot-team+ci")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.robot_by_name("robot$id-robot-sys")
            .await
            .unwrap()
            .is_none()
    );
}

async fn personal_access_tokens(s: &MetaStore) {
    let alice = create_user(s, "id-pat-alice").await;
    let bob = create_user(s, "id-pat-bob").await;
    let mut tx = s.begin_identity().await.unwrap();
    let laptop = tx
        .insert_token(alice, "laptop", "sha256:01", None, None)
        .await
        .unwrap()
        .unwrap();
    let ci = tx
        .insert_token(
            alice,
            "ci",
            "sha256:02",
            Some("[]"),
            Some(4_000_000_000_000),
        )
        .await
        .unwrap()
        .unwrap();
    // Names are per user; hashes are unique.
    assert_eq!(
        tx.insert_token(alice, "laptop", "sha256:03", None, None)
            .await
            .unwrap(),
        None
    );
    tx.insert_token(bob, "laptop", "sha256:04", None, None)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = s.begin_identity().await.unwrap();
    assert!(
        tx.insert_token(bob, "other", "sha256:01", None, None)
            .await
            .is_err()
    );
    drop(tx);

    let t = s.token_by_hash("sha256:02").await.unwrap().unwrap();
    assert_eq!((t.id, t.user_id, t.name.as_str()), (ci, alice, "ci"));
    assert_eq!(t.scopes.as_deref(), Some("[]"));
    assert_eq!(t.expires_at, Some(4_000_000_000_000));
    assert_eq!(t.last_used_at, None);
    assert!(s.token_by_hash("sha256:99").await.unwrap().is_none());
    s.touch_token(laptop, 1234).await.unwrap();
    let names: Vec<(String, Option<i64>)> = s
        .tokens_of_user(alice)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.last_used_at))
        .collect();
    assert_eq!(
        names,
        [("ci".to_string(), None), ("laptop".to_string(), Some(1234))]
    );

    let mut tx = s.begin_identity().await.unwrap();
    // Only the owner's tokens can be revoked through their id.
    assert!(!tx.delete_token(bob, laptop).await.unwrap());
    assert!(tx.delete_token(alice, laptop).await.unwrap());
    assert!(tx.delete_user(alice).await.unwrap());
    tx.commit().await.unwrap();
    assert!(s.token_by_hash("sha256:01").await.unwrap().is_none());
    assert!(s.token_by_hash("sha256:02").await.unwrap().is_none());
    assert_eq!(s.tokens_of_user(bob).await.unwrap().len(), 1);
}

async fn signing_keys_rotate_and_retire(s: &MetaStore) {
    let t0 = 1_000_000;
    let mut tx = s.begin_identity().await.unwrap();
    assert!(
        tx.insert_signing_key("id-key-1", "ES256", "PEM-1", t0)
            .await
            .unwrap()
    );
    assert!(
        !tx.insert_signing_key("id-key-1", "ES256", "PEM-x", t0)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let kids = |rows: Vec<berth_meta::SigningKeyRow>| -> Vec<String> {
        rows.into_iter()
            .map(|k| k.kid)
            .filter(|k| k.starts_with("id-key-"))
            .collect()
    };
    let keys = s.signing_keys(t0).await.unwrap();
    assert!(
        !format!("{keys:?}").contains("PEM-1"),
        "Debug shows the key"
    );
    assert_eq!(
        keys.iter()
            .find(|k| k.kid == "id-key-1")
            .unwrap()
            .private_pem,
        "PEM-1"
    );

    // Rotation: a newer key signs; the old one verifies until `retired_at`.
    let mut tx = s.begin_identity().await.unwrap();
    tx.insert_signing_key("id-key-2", "ES256", "PEM-2", t0 + 10)
        .await
        .unwrap();
    assert_eq!(
        tx.retire_signing_keys_except("id-key-2", t0 + 500)
            .await
            .unwrap(),
        1
    );
    // Already scheduled keys keep their time.
    assert_eq!(
        tx.retire_signing_keys_except("id-key-2", t0 + 900)
            .await
            .unwrap(),
        0
    );
    tx.commit().await.unwrap();
    let at = s.signing_keys(t0 + 100).await.unwrap();
    assert_eq!(kids(at.clone()), ["id-key-2", "id-key-1"]);
    assert_eq!(at[0].retired_at, None);
    assert_eq!(at[1].retired_at, Some(t0 + 500));
    assert_eq!(kids(s.signing_keys(t0 + 500).await.unwrap()), ["id-key-2"]);

    let mut tx = s.begin_identity().await.unwrap();
    assert_eq!(tx.delete_retired_signing_keys(t0 + 500).await.unwrap(), 0);
    assert_eq!(tx.delete_retired_signing_keys(t0 + 501).await.unwrap(), 1);
    tx.commit().await.unwrap();
    assert_eq!(kids(s.signing_keys(0).await.unwrap()), ["id-key-2"]);
}

async fn audit_log_filters_and_pages(s: &MetaStore) {
    let base = 2_000_000_000_000;
    let mut tx = s.begin_identity().await.unwrap();
    let mut ids = Vec::new();
    // 12 events: two actors, two projects, three actions; times repeat so
    // that pagination must use the id as a tie-breaker.
    for i in 0..12i64 {
        let actor = if i % 2 == 0 {
            "id-audit-alice"
        } else {
            "id-audit-bob"
        };
        let project = if i % 3 == 0 {
            None
        } else {
            Some("id-audit-team")
        };
        let action = ["push", "pull", "login"][(i % 3) as usize];
        ids.push(
            tx.insert_audit(&entry(base + i / 2, actor, action, project))
                .await
                .unwrap(),
        );
    }
    tx.commit().await.unwrap();
    let mut failed = entry(base + 100, "id-audit-mallory", "login", None);
    failed.result = "failure".into();
    failed.actor_kind = "anonymous".into();
    failed.source_addr = None;
    failed.details = None;
    let failed_id = s.record_audit(&failed).await.unwrap();

    let mine = AuditFilter {
        since: Some(base),
        until: Some(base + 1000),
        limit: 100,
        ..AuditFilter::default()
    };
    let all = s.audit(&mine).await.unwrap();
    assert_eq!(all.len(), 13);
    assert_eq!(all[0].id, failed_id);
    assert_eq!(all[0].entry, failed);
    // Newest first, ties by id descending.
    for pair in all.windows(2) {
        assert!(
            (pair[0].entry.occurred_at, pair[0].id) > (pair[1].entry.occurred_at, pair[1].id),
            "{pair:?}"
        );
    }
    let oldest = all.last().unwrap();
    assert_eq!(oldest.id, ids[0]);
    assert_eq!(oldest.entry, entry(base, "id-audit-alice", "push", None));

    // Filters, alone and together.
    assert_eq!(
        count(
            s,
            AuditFilter {
                actor: Some("id-audit-alice"),
                ..mine.clone()
            }
        )
        .await,
        6
    );
    assert_eq!(
        count(
            s,
            AuditFilter {
                project: Some("id-audit-team"),
                ..mine.clone()
            }
        )
        .await,
        8
    );
    assert_eq!(
        count(
            s,
            AuditFilter {
                action: Some("login"),
                ..mine.clone()
            }
        )
        .await,
        5
    );
    assert_eq!(
        count(
            s,
            AuditFilter {
                actor: Some("id-audit-bob"),
                project: Some("id-audit-team"),
                action: Some("pull"),
                ..mine.clone()
            }
        )
        .await,
        2
    );
    assert_eq!(
        count(
            s,
            AuditFilter {
                since: Some(base + 5),
                ..mine.clone()
            }
        )
        .await,
        3
    );
    assert_eq!(
        count(
            s,
            AuditFilter {
                until: Some(base + 1),
                ..mine.clone()
            }
        )
        .await,
        2
    );
    assert_eq!(
        count(
            s,
            AuditFilter {
                limit: 0,
                ..mine.clone()
            }
        )
        .await,
        0
    );

    // Keyset pages of 5 read every row once, in order.
    let mut paged = Vec::new();
    let mut after: Option<AuditCursor> = None;
    loop {
        let page = s
            .audit(&AuditFilter {
                after,
                limit: 5,
                ..mine.clone()
            })
            .await
            .unwrap();
        paged.extend(page.iter().map(|r| r.id));
        match page.last() {
            Some(last) if page.len() == 5 => {
                // The cursor survives its text form, as an API hands it out.
                let text = last.cursor().to_string();
                after = Some(text.parse().unwrap());
            }
            _ => break,
        }
    }
    assert_eq!(paged, all.iter().map(|r| r.id).collect::<Vec<_>>());
    assert!("12".parse::<AuditCursor>().is_err());
    assert!("a.b".parse::<AuditCursor>().is_err());

    // A bad result value is refused; purging removes old rows only.
    let mut bad = entry(base, "id-audit-alice", "push", None);
    bad.result = "maybe".into();
    assert!(s.record_audit(&bad).await.is_err());
    assert_eq!(s.purge_audit(base + 3).await.unwrap(), 6);
    assert_eq!(s.audit(&mine).await.unwrap().len(), 7);
}

async fn audit_batches_keep_every_event_in_order(s: &MetaStore) {
    let base = 4_000_000_000_000i64;
    // 250 events: more than one statement's worth of rows, the last
    // statement a partial one; NULLs where the columns allow them.
    let events: Vec<AuditEntry> = (0..250i64)
        .map(|i| {
            let mut e = entry(base, &format!("id-batch-{i:03}"), "pull", None);
            if i % 7 == 0 {
                e.source_addr = None;
                e.details = None;
            }
            e
        })
        .collect();
    let mut tx = s.begin_identity().await.unwrap();
    tx.insert_audit_batch(&events).await.unwrap();
    tx.insert_audit_batch(&[]).await.unwrap();
    tx.commit().await.unwrap();
    let stored = s
        .audit(&AuditFilter {
            since: Some(base),
            until: Some(base + 1),
            limit: 1000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    // Newest first (same time: by id), so reversed they are in insertion
    // order.
    let got: Vec<AuditEntry> = stored.into_iter().rev().map(|r| r.entry).collect();
    assert_eq!(got.len(), events.len());
    assert!(got == events, "events differ or are out of order");
}

async fn dropped_transactions_leave_nothing(s: &MetaStore) {
    let mut tx = s.begin_identity().await.unwrap();
    let user = tx
        .insert_user(new_user("id-rollback-user"))
        .await
        .unwrap()
        .unwrap();
    let project = tx
        .insert_project("id-rollback-project", false)
        .await
        .unwrap()
        .unwrap();
    tx.set_member(project, MemberRef::User(user), "developer")
        .await
        .unwrap();
    tx.insert_audit(&entry(
        3_000_000_000_000,
        "id-rollback-user",
        "member.set",
        None,
    ))
    .await
    .unwrap();
    drop(tx);
    assert!(s.user_by_name("id-rollback-user").await.unwrap().is_none());
    assert!(
        s.project_by_name("id-rollback-project")
            .await
            .unwrap()
            .is_none()
    );
    let audit = s
        .audit(&AuditFilter {
            actor: Some("id-rollback-user"),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(audit.is_empty());
}

async fn count(s: &MetaStore, filter: AuditFilter<'_>) -> usize {
    s.audit(&filter).await.unwrap().len()
}

/// Declares one test per suite check for a backend built by `$open`, which
/// returns `(guard, MetaStore)`; the guard lives as long as the test.
macro_rules! suite {
    ($open:ident: $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (_guard, store) = $open().await;
                super::$check(&store).await;
                store.close().await;
            }
        )*
    };
}

mod sqlite {
    use super::common::open_sqlite;

    suite!(open_sqlite:
        migration_creates_private_library,
        users_are_created_found_and_changed,
        users_keyset_pagination,
        projects_members_and_roles,
        groups_are_upserted,
        robots_are_stored_with_their_permissions,
        personal_access_tokens,
        signing_keys_rotate_and_retire,
        audit_log_filters_and_pages,
        audit_batches_keep_every_event_in_order,
        dropped_transactions_leave_nothing,
    );

    /// The whole suite in sequence on one store: checks must not depend on
    /// an empty database.
    #[tokio::test]
    async fn all_checks_share_one_store() {
        let (_guard, s) = open_sqlite().await;
        super::migration_creates_private_library(&s).await;
        super::users_are_created_found_and_changed(&s).await;
        super::users_keyset_pagination(&s).await;
        super::projects_members_and_roles(&s).await;
        super::groups_are_upserted(&s).await;
        super::robots_are_stored_with_their_permissions(&s).await;
        super::personal_access_tokens(&s).await;
        super::signing_keys_rotate_and_retire(&s).await;
        super::audit_batches_keep_every_event_in_order(&s).await;
        super::audit_log_filters_and_pages(&s).await;
        super::dropped_transactions_leave_nothing(&s).await;
        s.close().await;
    }
}

mod postgres {
    use super::common::open_postgres;

    suite!(open_postgres:
        migration_creates_private_library,
        users_are_created_found_and_changed,
        users_keyset_pagination,
        projects_members_and_roles,
        groups_are_upserted,
        robots_are_stored_with_their_permissions,
        personal_access_tokens,
        signing_keys_rotate_and_retire,
        audit_log_filters_and_pages,
        audit_batches_keep_every_event_in_order,
        dropped_transactions_leave_nothing,
    );
}
