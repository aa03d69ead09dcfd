//! Immutable tag rules, quotas and the project usage queries (migration
//! 0005), on SQLite and on a real PostgreSQL whose database collates with
//! ICU en-US (so the range scans over project names must not depend on the
//! locale).

mod common;

use std::time::Duration;

use berth_meta::{ImmutableRuleFields, MetaStore, NewManifest, PendingDeletion, ProjectUsage};
use berth_oci::{Digest, ManifestRef, RefKind, RepoName, Tag};

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn digest(seed: &str) -> Digest {
    Digest::sha256_of(seed.as_bytes())
}

async fn project(s: &MetaStore, name: &str) -> i64 {
    let mut tx = s.begin_identity().await.unwrap();
    let id = tx.insert_project(name, false).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    id
}

async fn blob(s: &MetaStore, r: &str, d: &Digest, size: u64) {
    let mut tx = s.begin().await.unwrap();
    tx.insert_blob(d, size).await.unwrap();
    tx.link_blob(&repo(r), d).await.unwrap();
    tx.commit().await.unwrap();
}

/// Stores a manifest whose body is `body`, referencing `blobs`; returns
/// its digest and size.
async fn manifest(s: &MetaStore, r: &str, body: &str, blobs: &[&Digest]) -> (Digest, i64) {
    let d = Digest::sha256_of(body.as_bytes());
    let refs: Vec<ManifestRef> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| ManifestRef {
            digest: (*b).clone(),
            kind: RefKind::Blob,
            size: 0,
            field: format!("layers[{i}]"),
        })
        .collect();
    let mut tx = s.begin().await.unwrap();
    tx.insert_manifest(
        &repo(r),
        NewManifest {
            digest: &d,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            artifact_type: None,
            subject: None,
            annotations: None,
            body: body.as_bytes(),
            refs: &refs,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (d, body.len() as i64)
}

async fn usage_counts_shared_blobs_once(s: &MetaStore) {
    project(s, "qa").await;
    let shared = digest("qa-shared");
    let layer = digest("qa-layer");
    let loose = digest("qa-loose");
    let foreign = digest("qa-foreign");
    blob(s, "qa/a", &shared, 100).await;
    blob(s, "qa/b", &shared, 100).await;
    blob(s, "qa/a", &layer, 50).await;
    blob(s, "qa/b", &loose, 7).await;
    // Names around the project's range belong to other projects.
    blob(s, "qaz/x", &foreign, 1000).await;
    blob(s, "qa-x/y", &foreign, 1000).await;
    blob(s, "q/a", &foreign, 1000).await;
    let empty = s.project_usage("qa").await.unwrap();
    assert_eq!(
        empty,
        ProjectUsage {
            linked_only_blobs: 3,
            linked_only_bytes: 157,
            ..ProjectUsage::default()
        }
    );

    let (m1, m1_len) = manifest(s, "qa/a", "qa manifest one", &[&shared, &layer]).await;
    // The same manifest in a second repository: two artifacts, one body.
    manifest(s, "qa/b", "qa manifest one", &[&shared, &layer]).await;
    let (_, m2_len) = manifest(s, "qa/sub/c", "qa manifest two, longer", &[]).await;
    manifest(s, "qaz/x", "not qa", &[&foreign]).await;
    let u = s.project_usage("qa").await.unwrap();
    assert_eq!(
        u,
        ProjectUsage {
            referenced_blobs: 2,
            referenced_bytes: 150,
            linked_only_blobs: 1,
            linked_only_bytes: 7,
            manifests: 3,
            manifest_bytes: m1_len + m2_len,
        }
    );
    assert_eq!(u.storage_bytes(), 157 + m1_len + m2_len);

    // A referenced blob stays counted after its link goes.
    let mut tx = s.begin().await.unwrap();
    assert!(tx.unlink_blob(&repo("qa/a"), &layer).await.unwrap());
    let probe = tx
        .probe_project_usage("qa", shared.as_str(), m1.as_str())
        .await
        .unwrap();
    assert_eq!(probe.usage, u);
    assert!(probe.blob_counted && probe.manifest_counted);
    let probe = tx
        .probe_project_usage("qa", layer.as_str(), "")
        .await
        .unwrap();
    assert!(probe.blob_counted, "referenced, not linked");
    let probe = tx
        .probe_project_usage("qa", foreign.as_str(), digest("nope").as_str())
        .await
        .unwrap();
    assert!(!probe.blob_counted && !probe.manifest_counted);
    tx.commit().await.unwrap();
    assert_eq!(s.project_usage("qa").await.unwrap(), u);
    // From the read pool, the same.
    let probe = s
        .probe_project_usage("qa", loose.as_str(), "")
        .await
        .unwrap();
    assert!(probe.blob_counted);
    assert_eq!(probe.usage, u);

    assert_eq!(
        s.project_usage("qaz").await.unwrap(),
        ProjectUsage {
            referenced_blobs: 1,
            referenced_bytes: 1000,
            manifests: 1,
            manifest_bytes: 6,
            ..ProjectUsage::default()
        }
    );
    assert_eq!(
        s.project_usage("nothing-here").await.unwrap(),
        ProjectUsage::default()
    );
}

async fn library_holds_single_segment_names(s: &MetaStore) {
    let d = digest("lib-blob");
    blob(s, "alpine", &d, 10).await;
    blob(s, "library/busybox", &digest("lib-blob-2"), 20).await;
    blob(s, "libraryx/other", &digest("lib-blob-3"), 40).await;
    manifest(s, "alpine", "alpine manifest", &[&d]).await;
    let u = s.project_usage("library").await.unwrap();
    assert_eq!(u.referenced_bytes, 10);
    assert_eq!(u.linked_only_bytes, 20);
    assert_eq!(u.manifests, 1);
}

async fn quotas_are_set_and_locked(s: &MetaStore) {
    let id = project(s, "quota-p").await;
    assert_eq!(s.quota(id).await.unwrap(), None);
    assert_eq!(s.limited_quota("quota-p").await.unwrap(), None);

    let mut tx = s.begin().await.unwrap();
    tx.set_quota(id, -1, -1, 85).await.unwrap();
    tx.commit().await.unwrap();
    let q = s.quota(id).await.unwrap().unwrap();
    assert_eq!(
        (q.storage_limit, q.artifact_limit, q.warn_percent),
        (-1, -1, 85)
    );
    assert!(!q.limited());
    assert_eq!(s.limited_quota("quota-p").await.unwrap(), None, "unlimited");

    let mut tx = s.begin().await.unwrap();
    tx.set_quota(id, 1000, -1, 90).await.unwrap();
    tx.set_quota_warned(id, true).await.unwrap();
    let locked = tx
        .limited_quota_for_update("quota-p")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(locked.storage_limit, 1000);
    assert!(locked.warned);
    tx.commit().await.unwrap();
    assert_eq!(s.limited_quota("quota-p").await.unwrap(), Some(locked));

    // A new limit re-arms the warning.
    let mut tx = s.begin().await.unwrap();
    tx.set_quota(id, 1000, 5, 90).await.unwrap();
    tx.commit().await.unwrap();
    let q = s.quota(id).await.unwrap().unwrap();
    assert_eq!((q.artifact_limit, q.warned), (5, false));

    // The quota goes with its project.
    let mut tx = s.begin_identity().await.unwrap();
    assert!(tx.delete_project(id).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(s.quota(id).await.unwrap(), None);
}

/// The one-query probe a manifest push makes: enabled rules only, limits
/// only (an unlimited quota row is no limit), and per project.
async fn policies_in_force_per_project(s: &MetaStore) {
    let id = project(s, "force").await;
    project(s, "force-other").await;
    let in_force = |name: &'static str| async move {
        let mut tx = s.begin().await.unwrap();
        let p = tx.policies_in_force(name).await.unwrap();
        drop(tx);
        (p.immutable_rules, p.quota_limit)
    };
    assert_eq!(in_force("force").await, (false, false));
    assert_eq!(in_force("no-such-project").await, (false, false));

    let mut fields = ImmutableRuleFields {
        repo_pattern: "**",
        repo_excludes: false,
        tag_pattern: "v*",
        tag_excludes: false,
        disabled: true,
    };
    let mut tx = s.begin().await.unwrap();
    let rule = tx.insert_immutable_rule(id, fields, "admin").await.unwrap();
    tx.set_quota(id, -1, -1, 85).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        in_force("force").await,
        (false, false),
        "disabled, unlimited"
    );

    fields.disabled = false;
    let mut tx = s.begin().await.unwrap();
    assert!(tx.update_immutable_rule(id, rule, fields).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(in_force("force").await, (true, false));

    let mut tx = s.begin().await.unwrap();
    tx.set_quota(id, -1, 10, 85).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(in_force("force").await, (true, true));
    assert_eq!(in_force("force-other").await, (false, false));
}

/// While one transaction holds a project's quota, another waits for it:
/// the check of one push and its insert happen before the next push checks.
async fn quota_checks_serialize(s: &MetaStore) {
    let id = project(s, "quota-race").await;
    let mut tx = s.begin().await.unwrap();
    tx.set_quota(id, 10, -1, 85).await.unwrap();
    tx.commit().await.unwrap();

    let mut first = s.begin().await.unwrap();
    assert!(
        first
            .limited_quota_for_update("quota-race")
            .await
            .unwrap()
            .is_some()
    );
    let other = s.clone();
    let second = tokio::spawn(async move {
        let mut tx = other.begin().await.unwrap();
        let q = tx.limited_quota_for_update("quota-race").await.unwrap();
        let u = tx.probe_project_usage("quota-race", "", "").await.unwrap();
        tx.commit().await.unwrap();
        (q, u.usage)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second check did not wait");
    first.insert_blob(&digest("race-blob"), 9).await.unwrap();
    first
        .link_blob(&repo("quota-race/app"), &digest("race-blob"))
        .await
        .unwrap();
    first.commit().await.unwrap();
    let (q, usage) = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second check went on after the commit")
        .unwrap();
    assert!(q.is_some());
    assert_eq!(usage.linked_only_bytes, 9, "it saw the first push");
}

async fn immutable_rules_crud(s: &MetaStore) {
    let id = project(s, "imm").await;
    let other = project(s, "imm-other").await;
    let fields = |tag: &'static str, disabled: bool| ImmutableRuleFields {
        repo_pattern: "**",
        repo_excludes: false,
        tag_pattern: tag,
        tag_excludes: false,
        disabled,
    };
    let mut tx = s.begin().await.unwrap();
    let r1 = tx
        .insert_immutable_rule(id, fields("release-*", false), "admin")
        .await
        .unwrap();
    let r2 = tx
        .insert_immutable_rule(id, fields("v*", true), "alice")
        .await
        .unwrap();
    let r3 = tx
        .insert_immutable_rule(other, fields("*", false), "admin")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(r1 < r2 && r2 < r3);

    let all = s.immutable_rules(id).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r1, r2]);
    assert_eq!(all[0].tag_pattern, "release-*");
    assert_eq!(all[1].created_by, "alice");
    assert!(all[1].disabled);
    let enabled = s.enabled_immutable_rules("imm").await.unwrap();
    assert_eq!(enabled.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r1]);
    assert_eq!(
        s.immutable_rule(id, r3).await.unwrap(),
        None,
        "another project's"
    );
    assert_eq!(
        s.immutable_rule(other, r3)
            .await
            .unwrap()
            .unwrap()
            .tag_pattern,
        "*"
    );

    let mut tx = s.begin().await.unwrap();
    let changed = ImmutableRuleFields {
        repo_pattern: "app",
        repo_excludes: true,
        tag_pattern: "v*",
        tag_excludes: true,
        disabled: false,
    };
    assert!(tx.update_immutable_rule(id, r2, changed).await.unwrap());
    assert!(!tx.update_immutable_rule(other, r2, changed).await.unwrap());
    let enabled = tx.enabled_immutable_rules("imm").await.unwrap();
    assert_eq!(enabled.len(), 2);
    assert!(enabled[1].repo_excludes && enabled[1].tag_excludes);
    assert!(tx.delete_immutable_rule(id, r1).await.unwrap());
    assert!(!tx.delete_immutable_rule(id, r1).await.unwrap());
    assert!(!tx.delete_immutable_rule(id, r3).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(s.immutable_rules(id).await.unwrap().len(), 1);

    let mut tx = s.begin_identity().await.unwrap();
    assert!(tx.delete_project(other).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(s.immutable_rules(other).await.unwrap(), vec![]);
}

async fn tags_read_in_the_transaction(s: &MetaStore) {
    let r = repo("tagq/app");
    let (d, _) = manifest(s, "tagq/app", "tagq manifest", &[]).await;
    let mut tx = s.begin().await.unwrap();
    tx.set_tag(&r, &Tag::parse("b").unwrap(), &d).await.unwrap();
    tx.set_tag(&r, &Tag::parse("a").unwrap(), &d).await.unwrap();
    tx.lock_tag_name("tagq/app", "a").await.unwrap();
    tx.lock_tag_name("tagq/app", "a").await.unwrap();
    assert_eq!(
        tx.tag_target("tagq/app", "a").await.unwrap().as_deref(),
        Some(d.as_str())
    );
    assert_eq!(tx.tag_target("tagq/app", "zzz").await.unwrap(), None);
    assert_eq!(
        tx.tags_of_manifest("tagq/app", d.as_str()).await.unwrap(),
        vec!["a".to_string(), "b".to_string()]
    );
    tx.commit().await.unwrap();
}

/// Deleted manifests in the restore window (the GC helper's trash) hold
/// their blobs until GC may collect them.
async fn pending_deletion_counts_the_trash(s: &MetaStore) {
    let kept = digest("pend-kept");
    let only_trash = digest("pend-only-trash");
    blob(s, "pend/a", &kept, 11).await;
    blob(s, "pend/a", &only_trash, 22).await;
    let (gone, gone_len) = manifest(s, "pend/a", "pend manifest gone", &[&kept, &only_trash]).await;
    let (back, _) = manifest(s, "pend/b", "pend manifest back", &[]).await;
    manifest(s, "pend/a", "pend manifest live", &[&kept]).await;
    assert_eq!(
        s.project_pending_deletion("pend").await.unwrap(),
        PendingDeletion::default()
    );
    let mut tx = s.begin().await.unwrap();
    for (r, d) in [("pend/a", &gone), ("pend/b", &back)] {
        assert!(
            tx.trash_manifest(r, d.as_str(), "admin")
                .await
                .unwrap()
                .is_some()
        );
        assert!(tx.delete_manifest(&repo(r), d).await.unwrap());
    }
    tx.commit().await.unwrap();
    // `back` is pushed again: live, not pending.
    manifest(s, "pend/b", "pend manifest back", &[]).await;
    assert_eq!(
        s.project_pending_deletion("pend").await.unwrap(),
        PendingDeletion {
            blobs: 1,
            blob_bytes: 22,
            manifests: 1,
            manifest_bytes: gone_len,
        }
    );
    let u = s.project_usage("pend").await.unwrap();
    assert_eq!((u.referenced_bytes, u.linked_only_bytes), (11, 22));
    assert_eq!(
        s.project_pending_deletion("pen").await.unwrap(),
        PendingDeletion::default()
    );
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
        usage_counts_shared_blobs_once,
        library_holds_single_segment_names,
        quotas_are_set_and_locked,
        policies_in_force_per_project,
        quota_checks_serialize,
        immutable_rules_crud,
        tags_read_in_the_transaction,
        pending_deletion_counts_the_trash,
    );
}

mod postgres {
    use super::common::open_postgres;

    suite!(open_postgres:
        usage_counts_shared_blobs_once,
        library_holds_single_segment_names,
        quotas_are_set_and_locked,
        policies_in_force_per_project,
        quota_checks_serialize,
        immutable_rules_crud,
        tags_read_in_the_transaction,
        pending_deletion_counts_the_trash,
    );
}
