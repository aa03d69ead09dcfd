//! Retention's and pull statistics' queries, each check run on a fresh
//! SQLite file and on a fresh PostgreSQL database (`suite!` below).

mod common;

use berth_meta::{
    KEPT_EXECUTIONS, MetaStore, NewManifest, NewRetentionExecution, PullDelta, RetentionCounts,
    RetentionItemRow,
};
use berth_oci::{Digest, ManifestRef, RefKind, RepoName, Tag};

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

async fn project(s: &MetaStore, name: &str) -> i64 {
    let mut tx = s.begin_identity().await.unwrap();
    let id = tx.insert_project(name, false).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    id
}

/// Stores a manifest `body` in `r` referencing `blobs` (digest, size) and
/// `children` (manifests already in `r`), with an optional subject; returns
/// its digest.
async fn manifest(
    s: &MetaStore,
    r: &RepoName,
    body: &str,
    blobs: &[(Digest, u64)],
    children: &[&Digest],
    subject: Option<&Digest>,
) -> Digest {
    let digest = Digest::sha256_of(body.as_bytes());
    let mut refs: Vec<ManifestRef> = Vec::new();
    let mut tx = s.begin().await.unwrap();
    for (d, size) in blobs {
        tx.insert_blob(d, *size).await.unwrap();
        tx.link_blob(r, d).await.unwrap();
        refs.push(ManifestRef {
            digest: d.clone(),
            kind: RefKind::Blob,
            size: *size,
            field: "layers".into(),
        });
    }
    for c in children {
        refs.push(ManifestRef {
            digest: (*c).clone(),
            kind: RefKind::Manifest,
            size: 1,
            field: "manifests".into(),
        });
    }
    tx.insert_manifest(
        r,
        NewManifest {
            digest: &digest,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            artifact_type: None,
            subject,
            annotations: None,
            body: body.as_bytes(),
            refs: &refs,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    digest
}

async fn tag(s: &MetaStore, r: &RepoName, t: &str, d: &Digest) {
    let mut tx = s.begin().await.unwrap();
    tx.set_tag(r, &Tag::parse(t).unwrap(), d).await.unwrap();
    tx.commit().await.unwrap();
}

async fn delete(s: &MetaStore, r: &RepoName, d: &Digest) {
    let mut tx = s.begin().await.unwrap();
    assert!(tx.delete_manifest(r, d).await.unwrap());
    tx.commit().await.unwrap();
}

fn delta(r: &RepoName, d: &Digest, count: u64, at: i64) -> PullDelta {
    PullDelta {
        repo: r.to_string(),
        digest: d.to_string(),
        count,
        last_pulled_at: at,
    }
}

// ---------------------------------------------------------------------------
// The checks.

async fn pulls_add_up_and_only_move_forward(s: &MetaStore) {
    let r = repo("pulls/app");
    let d = manifest(s, &r, "pulls-1", &[], &[], None).await;
    let gone = manifest(s, &r, "pulls-2", &[], &[], None).await;
    assert_eq!(s.pull_stats(r.as_str(), d.as_str()).await.unwrap(), None);
    let n = s
        .record_pulls(&[delta(&r, &d, 3, 1_000), delta(&r, &gone, 1, 1_000)])
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Another node's older, smaller batch adds its count, not its time.
    s.record_pulls(&[delta(&r, &d, 2, 500)]).await.unwrap();
    let st = s.pull_stats(r.as_str(), d.as_str()).await.unwrap().unwrap();
    assert_eq!((st.pull_count, st.last_pulled_at), (5, 1_000));
    s.record_pulls(&[delta(&r, &d, 1, 2_000)]).await.unwrap();
    let st = s.pull_stats(r.as_str(), d.as_str()).await.unwrap().unwrap();
    assert_eq!((st.pull_count, st.last_pulled_at), (6, 2_000));
    // The row goes with its manifest; pulls of a deleted manifest are dropped.
    delete(s, &r, &gone).await;
    assert_eq!(s.pull_stats(r.as_str(), gone.as_str()).await.unwrap(), None);
    let n = s.record_pulls(&[delta(&r, &gone, 4, 3_000)]).await.unwrap();
    assert_eq!(n, 0);
    assert_eq!(s.pull_stats(r.as_str(), gone.as_str()).await.unwrap(), None);
    // A re-push starts from zero.
    let again = manifest(s, &r, "pulls-2", &[], &[], None).await;
    assert_eq!(again, gone);
    assert_eq!(s.pull_stats(r.as_str(), gone.as_str()).await.unwrap(), None);
    assert_eq!(s.record_pulls(&[]).await.unwrap(), 0);
}

async fn artifacts_list_tags_sizes_and_roles(s: &MetaStore) {
    let r = repo("arts/app");
    let layer = Digest::sha256_of(b"arts-layer");
    let config = Digest::sha256_of(b"arts-config");
    let image = manifest(
        s,
        &r,
        "arts-image",
        &[(layer.clone(), 1000), (config.clone(), 20)],
        &[],
        None,
    )
    .await;
    let child = manifest(s, &r, "arts-child", &[(layer.clone(), 1000)], &[], None).await;
    let index = manifest(s, &r, "arts-index", &[], &[&child], None).await;
    let sig = manifest(s, &r, "arts-sig", &[], &[], Some(&image)).await;
    let orphan_ref = Digest::sha256_of(b"not here");
    let dangling = manifest(s, &r, "arts-dangling", &[], &[], Some(&orphan_ref)).await;
    for t in ["v1", "latest", "1"] {
        tag(s, &r, t, &image).await;
    }
    tag(s, &r, "multi", &index).await;
    s.record_pulls(&[delta(&r, &image, 7, 4_242)])
        .await
        .unwrap();

    let all = s.artifacts(r.as_str(), None, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    let mut digests: Vec<&str> = all.iter().map(|a| a.digest.as_str()).collect();
    let listed = digests.clone();
    digests.sort();
    assert_eq!(listed, digests, "digest order");
    let get = |d: &Digest| all.iter().find(|a| a.digest == d.as_str()).unwrap();

    let a = get(&image);
    assert_eq!(
        a.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["1", "latest", "v1"]
    );
    assert_eq!(a.size, "arts-image".len() as i64 + 1020);
    assert_eq!((a.pull_count, a.last_pulled_at), (7, Some(4_242)));
    assert!(!a.in_index && !a.subject_present);
    let latest_tag = a.tags.iter().map(|t| t.pushed_at).max().unwrap();
    assert_eq!(a.pushed_at(), latest_tag.max(a.created_at));

    let c = get(&child);
    assert!(c.in_index && c.tags.is_empty());
    assert_eq!((c.pull_count, c.last_pulled_at), (0, None));
    let i = get(&index);
    assert_eq!(
        i.size,
        "arts-index".len() as i64,
        "an index counts its own bytes"
    );
    assert!(!i.in_index);
    assert!(get(&sig).subject_present);
    assert!(
        !get(&dangling).subject_present,
        "a subject elsewhere is no subject here"
    );

    // Keyset pages put together are the whole list.
    let first = s.artifacts(r.as_str(), None, 2).await.unwrap();
    let second = s
        .artifacts(r.as_str(), Some(&first[1].digest), 2)
        .await
        .unwrap();
    let third = s
        .artifacts(r.as_str(), Some(&second[1].digest), 2)
        .await
        .unwrap();
    let paged: Vec<_> = first.into_iter().chain(second).chain(third).collect();
    assert_eq!(paged, all);

    assert_eq!(
        s.artifact_tags(r.as_str(), image.as_str()).await.unwrap(),
        Some(vec!["1".to_string(), "latest".into(), "v1".into()])
    );
    assert_eq!(
        s.artifact_tags(r.as_str(), child.as_str()).await.unwrap(),
        Some(vec![])
    );
    assert_eq!(
        s.artifact_tags(r.as_str(), orphan_ref.as_str())
            .await
            .unwrap(),
        None
    );
}

async fn repositories_of_a_project(s: &MetaStore) {
    for name in ["proj/a", "proj/sub/b", "proj2/c", "projx", "proj-other/d"] {
        manifest(s, &repo(name), &format!("repos-{name}"), &[], &[], None).await;
    }
    // An upload alone does not make a repository worth listing.
    let mut tx = s.begin().await.unwrap();
    tx.insert_upload("repos-upload", &repo("proj/empty"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        s.project_repositories("proj").await.unwrap(),
        ["proj/a", "proj/sub/b"]
    );
    manifest(s, &repo("alpine"), "repos-alpine", &[], &[], None).await;
    manifest(s, &repo("library/busybox"), "repos-bb", &[], &[], None).await;
    let lib = s.project_repositories("library").await.unwrap();
    assert!(lib.contains(&"alpine".to_string()), "{lib:?}");
    assert!(lib.contains(&"library/busybox".to_string()), "{lib:?}");
    assert!(lib.contains(&"projx".to_string()), "{lib:?}");
    assert!(!lib.iter().any(|n| n.starts_with("proj/")), "{lib:?}");
}

async fn policies_and_schedules(s: &MetaStore) {
    let p = project(s, "pol").await;
    let q = project(s, "pol2").await;
    assert_eq!(s.retention_policy(p).await.unwrap(), None);
    assert!(
        s.put_retention_policy(p, "[1]", Some("0 0 * * *"), Some(1_000))
            .await
            .unwrap()
    );
    assert!(
        !s.put_retention_policy(p, "[2]", Some("0 0 * * *"), Some(2_000))
            .await
            .unwrap()
    );
    let row = s.retention_policy(p).await.unwrap().unwrap();
    assert_eq!(
        (row.rules.as_str(), row.schedule.as_deref(), row.next_run_at),
        ("[2]", Some("0 0 * * *"), Some(2_000))
    );
    assert!(row.updated_at >= row.created_at);
    assert!(s.put_retention_policy(q, "[]", None, None).await.unwrap());

    // Due: only p (q has no schedule), and not before its time.
    assert!(
        s.due_retention_policies(1_999, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = s.due_retention_policies(2_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].project_id, due[0].project.as_str()), (p, "pol"));
    // One node wins the period.
    assert!(
        s.advance_retention_schedule(p, 2_000, Some(3_000))
            .await
            .unwrap()
    );
    assert!(
        !s.advance_retention_schedule(p, 2_000, Some(3_000))
            .await
            .unwrap()
    );
    assert!(
        s.due_retention_policies(2_500, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.advance_retention_schedule(p, 3_000, None).await.unwrap());
    assert!(
        s.due_retention_policies(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(s.delete_retention_policy(p).await.unwrap());
    assert!(!s.delete_retention_policy(p).await.unwrap());
    assert_eq!(s.retention_policy(p).await.unwrap(), None);

    // A deleted project takes its policy and history along.
    let e = s
        .insert_retention_execution(NewRetentionExecution {
            project_id: q,
            trigger: "manual",
            dry_run: true,
            actor: "alice",
            rules: "[]",
        })
        .await
        .unwrap();
    let mut tx = s.begin_identity().await.unwrap();
    assert!(tx.delete_project(q).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(s.retention_policy(q).await.unwrap(), None);
    assert_eq!(s.retention_execution(q, e).await.unwrap(), None);
}

fn item(seq: i64, digest: &str, outcome: &str) -> RetentionItemRow {
    RetentionItemRow {
        seq,
        repo: "hist/app".into(),
        digest: digest.into(),
        tags: r#"["v1"]"#.into(),
        action: if outcome == "retained" {
            "retain"
        } else {
            "delete"
        }
        .into(),
        outcome: outcome.into(),
        rules: "[0]".into(),
        reason: "because".into(),
        pushed_at: 10 + seq,
        pulled_at: (seq % 2 == 0).then_some(99),
    }
}

async fn executions_and_items(s: &MetaStore) {
    let p = project(s, "hist").await;
    let new = |dry_run: bool, trigger: &'static str| NewRetentionExecution {
        project_id: p,
        trigger,
        dry_run,
        actor: "alice",
        rules: r#"[{"template":"always"}]"#,
    };
    let a = s
        .insert_retention_execution(new(true, "manual"))
        .await
        .unwrap();
    let b = s
        .insert_retention_execution(new(false, "schedule"))
        .await
        .unwrap();
    assert!(b > a);
    let running = s.retention_execution(p, a).await.unwrap().unwrap();
    assert_eq!(
        (
            running.status.as_str(),
            running.trigger.as_str(),
            running.dry_run
        ),
        ("running", "manual", true)
    );
    assert_eq!(running.finished_at, None);

    let items: Vec<RetentionItemRow> = (0..5)
        .map(|i| {
            item(
                i,
                &format!("sha256:{i}"),
                if i < 2 { "retained" } else { "would_delete" },
            )
        })
        .collect();
    s.add_retention_items(a, &items[..3]).await.unwrap();
    s.add_retention_items(a, &items[3..]).await.unwrap();
    let counts = RetentionCounts {
        artifacts: 5,
        retained: 2,
        deleted: 3,
        errors: 0,
    };
    s.finish_retention_execution(a, true, counts, None)
        .await
        .unwrap();
    let done = s.retention_execution(p, a).await.unwrap().unwrap();
    assert_eq!(done.status, "succeeded");
    assert_eq!(done.counts, counts);
    assert!(done.finished_at.is_some());
    assert_eq!(done.rules, r#"[{"template":"always"}]"#);

    let all = s.retention_execution_items(a, None, 100).await.unwrap();
    assert_eq!(all, items);
    let page = s.retention_execution_items(a, Some(1), 2).await.unwrap();
    assert_eq!(page, items[2..4].to_vec());
    assert!(
        s.retention_execution_items(b, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Newest first; `before` pages.
    let list = s.retention_executions(p, None, 10).await.unwrap();
    assert_eq!(list.iter().map(|e| e.id).collect::<Vec<_>>(), [b, a]);
    let older = s.retention_executions(p, Some(b), 10).await.unwrap();
    assert_eq!(older.iter().map(|e| e.id).collect::<Vec<_>>(), [a]);
    // Another project's run is not this project's.
    let other = project(s, "hist-other").await;
    assert_eq!(s.retention_execution(other, a).await.unwrap(), None);

    // A run nobody has written to for a while failed with its node.
    assert_eq!(
        s.fail_stale_retention_executions(berth_meta::now_millis() + 1)
            .await
            .unwrap(),
        1
    );
    let stale = s.retention_execution(p, b).await.unwrap().unwrap();
    assert_eq!(stale.status, "failed");
    assert!(stale.error.unwrap().contains("interrupted"));
    assert_eq!(
        s.retention_execution(p, a).await.unwrap().unwrap().status,
        "succeeded"
    );

    // Only the latest KEPT_EXECUTIONS runs stay, with their items.
    let mut last = b;
    for _ in 0..KEPT_EXECUTIONS {
        last = s
            .insert_retention_execution(new(true, "manual"))
            .await
            .unwrap();
        s.add_retention_items(last, &items[..1]).await.unwrap();
    }
    s.finish_retention_execution(last, false, RetentionCounts::default(), Some("boom"))
        .await
        .unwrap();
    let kept = s
        .retention_executions(p, None, KEPT_EXECUTIONS * 2)
        .await
        .unwrap();
    assert_eq!(kept.len() as i64, KEPT_EXECUTIONS);
    assert_eq!(kept[0].id, last);
    assert_eq!(kept[0].error.as_deref(), Some("boom"));
    assert_eq!(kept[0].status, "failed");
    assert_eq!(s.retention_execution(p, a).await.unwrap(), None);
    assert!(
        s.retention_execution_items(a, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Declares one test per check for a backend built by `$open`.
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
        pulls_add_up_and_only_move_forward,
        artifacts_list_tags_sizes_and_roles,
        repositories_of_a_project,
        policies_and_schedules,
        executions_and_items,
    );
}

mod postgres {
    use super::common::open_postgres;

    suite!(open_postgres:
        pulls_add_up_and_only_move_forward,
        artifacts_list_tags_sizes_and_roles,
        repositories_of_a_project,
        policies_and_schedules,
        executions_and_items,
    );
}
