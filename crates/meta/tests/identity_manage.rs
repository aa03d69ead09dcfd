//! The identity queries behind the management API
//! (`identity/manage.rs`), on SQLite and on a real PostgreSQL.

mod common;

use berth_meta::{MemberRef, MetaStore, NewRobot, NewUser};
use berth_oci::{Digest, RepoName};

fn user(name: &str, system_admin: bool) -> NewUser<'_> {
    NewUser {
        name,
        email: None,
        source: "local",
        external_id: None,
        password_hash: None,
        system_admin,
    }
}

async fn lookups_groups_and_robots(s: &MetaStore) {
    let mut tx = s.begin_identity().await.unwrap();
    let alice = tx
        .insert_user(user("m-alice", false))
        .await
        .unwrap()
        .unwrap();
    let bob = tx.insert_user(user("m-bob", false)).await.unwrap().unwrap();
    let team = tx.insert_project("m-team", false).await.unwrap().unwrap();
    let g1 = tx.upsert_group("local", "m-builders", None).await.unwrap();
    let g2 = tx
        .upsert_group("ldap", "cn=m-ops", Some("cn=m-ops"))
        .await
        .unwrap();
    let robot = tx
        .insert_robot(NewRobot {
            name: "robot$m-team+ci",
            description: "",
            project_id: Some(team),
            permissions: "[]",
            secret_hash: "sha256:00",
            expires_at: None,
            created_by: "admin",
        })
        .await
        .unwrap()
        .unwrap();
    assert!(tx.add_user_to_group(bob, g1).await.unwrap());
    assert!(tx.add_user_to_group(alice, g1).await.unwrap());
    assert!(
        !tx.add_user_to_group(alice, g1).await.unwrap(),
        "already there"
    );
    assert!(tx.set_robot_description(robot, "builds").await.unwrap());
    assert!(!tx.set_robot_description(robot + 1000, "x").await.unwrap());
    tx.commit().await.unwrap();

    assert_eq!(s.project_by_id(team).await.unwrap().unwrap().name, "m-team");
    assert!(s.project_by_id(team + 1000).await.unwrap().is_none());
    let r = s.robot_by_id(robot).await.unwrap().unwrap();
    assert_eq!(
        (r.name.as_str(), r.description.as_str()),
        ("robot$m-team+ci", "builds")
    );
    assert_eq!(r.project_id, Some(team));
    assert!(s.robot_by_id(robot + 1000).await.unwrap().is_none());
    let g = s.group_by_id(g2).await.unwrap().unwrap();
    assert_eq!(
        (g.source.as_str(), g.external_id.as_deref()),
        ("ldap", Some("cn=m-ops"))
    );
    assert_eq!(
        s.group_member_names(g1).await.unwrap(),
        ["m-alice", "m-bob"]
    );
    assert!(s.group_member_names(g2).await.unwrap().is_empty());

    // Groups page by id.
    let all = s.groups(None, 1000).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|g| g.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(ids.contains(&g1) && ids.contains(&g2));
    let first = s.groups(None, 1).await.unwrap();
    let rest = s.groups(Some(first[0].id), 1000).await.unwrap();
    assert_eq!(first.len() + rest.len(), all.len());

    let mut tx = s.begin_identity().await.unwrap();
    assert!(tx.remove_user_from_group(bob, g1).await.unwrap());
    assert!(!tx.remove_user_from_group(bob, g1).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(s.group_member_names(g1).await.unwrap(), ["m-alice"]);
}

async fn visible_projects(s: &MetaStore) {
    let mut tx = s.begin_identity().await.unwrap();
    let carol = tx
        .insert_user(user("v-carol", false))
        .await
        .unwrap()
        .unwrap();
    let open = tx.insert_project("v-open", true).await.unwrap().unwrap();
    let direct = tx.insert_project("v-direct", false).await.unwrap().unwrap();
    let via_group = tx.insert_project("v-group", false).await.unwrap().unwrap();
    tx.insert_project("v-hidden", false).await.unwrap().unwrap();
    let group = tx.upsert_group("local", "v-devs", None).await.unwrap();
    tx.set_member(direct, MemberRef::User(carol), "guest")
        .await
        .unwrap();
    tx.set_member(via_group, MemberRef::Group(group), "developer")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let _ = open;

    let names = |rows: Vec<berth_meta::ProjectRow>| -> Vec<String> {
        rows.into_iter()
            .map(|p| p.name)
            .filter(|n| n.starts_with("v-"))
            .collect()
    };
    let anon = s.projects_visible_to(None, &[], None, 1000).await.unwrap();
    assert_eq!(names(anon), ["v-open"]);
    let without_group = s
        .projects_visible_to(Some(carol), &[], None, 1000)
        .await
        .unwrap();
    assert_eq!(names(without_group), ["v-direct", "v-open"]);
    let with_group = s
        .projects_visible_to(Some(carol), &[group], None, 1000)
        .await
        .unwrap();
    assert_eq!(names(with_group), ["v-direct", "v-group", "v-open"]);
    // Keyset paging by name.
    let page = s
        .projects_visible_to(Some(carol), &[group], Some("v-direct"), 1)
        .await
        .unwrap();
    assert_eq!(names(page), ["v-group"]);
}

async fn the_last_admin_count(s: &MetaStore) {
    let mut tx = s.begin_identity().await.unwrap();
    let before_a = tx.enabled_admins_except(-1).await.unwrap();
    let a = tx
        .insert_user(user("l-admin-a", true))
        .await
        .unwrap()
        .unwrap();
    let b = tx
        .insert_user(user("l-admin-b", true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tx.enabled_admins_except(a).await.unwrap(), before_a + 1);
    tx.set_user_disabled(b, true).await.unwrap();
    assert_eq!(tx.enabled_admins_except(a).await.unwrap(), before_a);
    tx.set_system_admin(a, false).await.unwrap();
    assert_eq!(tx.enabled_admins_except(-1).await.unwrap(), before_a);
    tx.commit().await.unwrap();
}

async fn project_content_counts_blobs_and_manifests_only(s: &MetaStore) {
    let digest = Digest::parse(&format!("sha256:{}", "c".repeat(64))).unwrap();
    let repo = |n: &str| RepoName::parse(n).unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.insert_blob(&digest, 3).await.unwrap();
    tx.link_blob(&repo("c-team/app"), &digest).await.unwrap();
    // Names that share a prefix with the project but are not in it.
    tx.link_blob(&repo("c-team0/app"), &digest).await.unwrap();
    tx.link_blob(&repo("c-team-x/app"), &digest).await.unwrap();
    tx.link_blob(&repo("c-tea"), &digest).await.unwrap();
    // An upload session alone makes a repository row, not content.
    tx.insert_upload("c-upload-1", &repo("c-empty/app"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        s.project_content("c-team").await.unwrap().as_deref(),
        Some("c-team/app")
    );
    assert_eq!(s.project_content("c-empty").await.unwrap(), None);
    assert_eq!(s.project_content("c-te").await.unwrap(), None);
    assert_eq!(
        s.project_content("c-team0").await.unwrap().as_deref(),
        Some("c-team0/app")
    );
    assert_eq!(s.project_content("c-nothing").await.unwrap(), None);
}

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
        lookups_groups_and_robots,
        visible_projects,
        the_last_admin_count,
        project_content_counts_blobs_and_manifests_only,
    );
}

mod postgres {
    use super::common::open_postgres;

    suite!(open_postgres:
        lookups_groups_and_robots,
        visible_projects,
        the_last_admin_count,
        project_content_counts_blobs_and_manifests_only,
    );
}
