//! The `MetaStore` suite: every check is an `async fn(&MetaStore)` so the same
//! checks can run against each backend (SQLite here; PostgreSQL later through
//! the `suite!` macro with another constructor).
//!
//! Checks use names under their own prefix and measure row counts as deltas,
//! so they share a database with each other (`all_checks_share_one_store`);
//! they do expect their own names to be absent at the start, so a backend's
//! constructor gives each run a fresh database (on PostgreSQL: `CREATE
//! DATABASE` per test, and a `C` collation, see `tags_keyset_pagination`).

mod common;

use berth_meta::{MetaStore, NewManifest};
use berth_oci::{Digest, ManifestRef, RefKind, RepoName, Tag};

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

fn digest(seed: &str) -> Digest {
    Digest::sha256_of(seed.as_bytes())
}

fn blob_ref(d: &Digest, size: u64, field: &str) -> ManifestRef {
    ManifestRef {
        digest: d.clone(),
        kind: RefKind::Blob,
        size,
        field: field.to_string(),
    }
}

async fn count(s: &MetaStore, table: &str) -> i64 {
    s.table_counts()
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| t == table)
        .unwrap_or_else(|| panic!("table_counts lacks {table}"))
        .1
}

/// A manifest row to insert: its body decides its digest.
struct M {
    body: Vec<u8>,
    digest: Digest,
    media_type: &'static str,
    artifact_type: Option<&'static str>,
    subject: Option<Digest>,
    annotations: Option<String>,
    refs: Vec<ManifestRef>,
}

impl M {
    fn new(body: &str) -> M {
        M {
            body: body.as_bytes().to_vec(),
            digest: Digest::sha256_of(body.as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json",
            artifact_type: None,
            subject: None,
            annotations: None,
            refs: Vec::new(),
        }
    }

    fn new_manifest(&self) -> NewManifest<'_> {
        NewManifest {
            digest: &self.digest,
            media_type: self.media_type,
            artifact_type: self.artifact_type,
            subject: self.subject.as_ref(),
            annotations: self.annotations.clone(),
            body: &self.body,
            refs: &self.refs,
        }
    }
}

async fn insert_blob_linked(s: &MetaStore, r: &RepoName, d: &Digest, size: u64) {
    let mut tx = s.begin().await.unwrap();
    tx.insert_blob(d, size).await.unwrap();
    tx.link_blob(r, d).await.unwrap();
    tx.commit().await.unwrap();
}

async fn insert_manifest(s: &MetaStore, r: &RepoName, m: &M) {
    let mut tx = s.begin().await.unwrap();
    tx.insert_manifest(r, m.new_manifest()).await.unwrap();
    tx.commit().await.unwrap();
}

async fn set_tag(s: &MetaStore, r: &RepoName, t: &str, d: &Digest) {
    let mut tx = s.begin().await.unwrap();
    tx.set_tag(r, &tag(t), d).await.unwrap();
    tx.commit().await.unwrap();
}

async fn put_tagged(s: &MetaStore, r: &RepoName, m: &M, t: &str) {
    let mut tx = s.begin().await.unwrap();
    tx.insert_manifest_tagged(r, m.new_manifest(), Some(&tag(t)))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn all_tags(s: &MetaStore, r: &RepoName) -> Vec<String> {
    s.tags(r, None, 1000).await.unwrap()
}

// ---------------------------------------------------------------------------
// The suite.
// ---------------------------------------------------------------------------

async fn repositories_are_created_once(s: &MetaStore) {
    let r = repo("suite-repos/app");
    assert!(!s.repo_exists(&r).await.unwrap());
    let before = count(s, "repositories").await;
    for _ in 0..2 {
        let mut tx = s.begin().await.unwrap();
        tx.ensure_repo(&r).await.unwrap();
        tx.ensure_repo(&r).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert!(s.repo_exists(&r).await.unwrap());
    assert!(!s.repo_exists(&repo("suite-repos/other")).await.unwrap());
    assert_eq!(count(s, "repositories").await, before + 1);
    // Listed only once it holds a manifest.
    let listed = s.repositories(Some("suite-repos/"), 10).await.unwrap();
    assert!(
        !listed.contains(&"suite-repos/app".to_string()),
        "{listed:?}"
    );
    insert_manifest(s, &r, &M::new("suite-repos manifest")).await;
    let listed = s.repositories(Some("suite-repos/"), 10).await.unwrap();
    assert_eq!(listed, vec!["suite-repos/app".to_string()]);
}

async fn blobs_link_and_unlink(s: &MetaStore) {
    let a = repo("suite-blobs/a");
    let b = repo("suite-blobs/b");
    let d = digest("suite-blobs-1");
    let blobs_before = count(s, "blobs").await;

    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.blob_size(&d).await.unwrap(), None);
    tx.insert_blob(&d, 5).await.unwrap();
    // Idempotent: a second insert keeps the first row.
    tx.insert_blob(&d, 5).await.unwrap();
    assert_eq!(tx.blob_size(&d).await.unwrap(), Some(5));
    assert!(!tx.is_linked(&a, &d).await.unwrap());
    tx.link_blob(&a, &d).await.unwrap();
    tx.link_blob(&a, &d).await.unwrap();
    assert!(tx.is_linked(&a, &d).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(count(s, "blobs").await, blobs_before + 1);

    // Linking creates the repository; the blob is visible only where linked.
    assert!(s.repo_exists(&a).await.unwrap());
    assert_eq!(s.linked_blob(&a, &d).await.unwrap(), Some(5));
    assert_eq!(s.linked_blob(&b, &d).await.unwrap(), None);
    assert!(!s.repo_exists(&b).await.unwrap());

    let mut tx = s.begin().await.unwrap();
    assert!(!tx.is_linked(&b, &d).await.unwrap());
    assert!(tx.unlink_blob(&a, &d).await.unwrap());
    assert!(!tx.unlink_blob(&a, &d).await.unwrap());
    assert!(!tx.unlink_blob(&b, &d).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(s.linked_blob(&a, &d).await.unwrap(), None);

    // Unlinking leaves the blob row for garbage collection.
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.blob_size(&d).await.unwrap(), Some(5));
    drop(tx);

    // A link needs the blob row.
    let mut tx = s.begin().await.unwrap();
    let missing = digest("suite-blobs-never-inserted");
    assert!(tx.link_blob(&a, &missing).await.is_err());
    drop(tx);
    assert_eq!(s.linked_blob(&a, &missing).await.unwrap(), None);
}

async fn ref_sizes_resolve_blobs_and_manifests(s: &MetaStore) {
    let r = repo("suite-refsize/app");
    let other = repo("suite-refsize/other");
    let linked = digest("suite-refsize-linked");
    let elsewhere = digest("suite-refsize-elsewhere");
    insert_blob_linked(s, &r, &linked, 7).await;
    insert_blob_linked(s, &other, &elsewhere, 9).await;
    let m = M::new("suite-refsize-manifest");
    insert_manifest(s, &r, &m).await;
    let m_len = m.body.len() as u64;
    let unknown = digest("nothing");

    let cases: Vec<(&str, &RepoName, &Digest, RefKind, Option<u64>)> = vec![
        ("linked blob", &r, &linked, RefKind::Blob, Some(7)),
        ("blob linked elsewhere", &r, &elsewhere, RefKind::Blob, None),
        (
            "blob in its own repo",
            &other,
            &elsewhere,
            RefKind::Blob,
            Some(9),
        ),
        ("manifest", &r, &m.digest, RefKind::Manifest, Some(m_len)),
        (
            "manifest in other repo",
            &other,
            &m.digest,
            RefKind::Manifest,
            None,
        ),
        ("manifest asked as blob", &r, &m.digest, RefKind::Blob, None),
        (
            "blob asked as manifest",
            &r,
            &linked,
            RefKind::Manifest,
            None,
        ),
        ("unknown", &r, &unknown, RefKind::Blob, None),
    ];
    let mut tx = s.begin().await.unwrap();
    for (name, in_repo, d, kind, want) in &cases {
        let reference = ManifestRef {
            digest: (*d).clone(),
            kind: *kind,
            size: 0,
            field: "x".into(),
        };
        assert_eq!(
            tx.ref_sizes(in_repo, &[reference]).await.unwrap(),
            vec![*want],
            "{name}"
        );
    }
    // All of `r`'s cases at once, in order, with a repeated reference and
    // more references than one statement takes (500).
    let mut refs = Vec::new();
    let mut want = Vec::new();
    for (_, in_repo, d, kind, w) in cases.iter().filter(|c| c.1 == &r) {
        assert_eq!(*in_repo, &r);
        refs.push(ManifestRef {
            digest: (*d).clone(),
            kind: *kind,
            size: 0,
            field: "x".into(),
        });
        want.push(*w);
    }
    for i in 0..600 {
        let (d, w) = if i % 2 == 0 {
            (linked.clone(), Some(7))
        } else {
            (digest(&format!("suite-refsize-absent-{i}")), None)
        };
        refs.push(ManifestRef {
            digest: d,
            kind: RefKind::Blob,
            size: 0,
            field: "x".into(),
        });
        want.push(w);
    }
    assert_eq!(tx.ref_sizes(&r, &refs).await.unwrap(), want);
}

/// A manifest with more references than one statement takes (500), one of
/// them repeated: every distinct reference is stored once.
async fn many_references_are_stored_in_batches(s: &MetaStore) {
    let r = repo("suite-manyrefs/app");
    let mut m = M::new("suite-manyrefs-index");
    for i in 0..600 {
        m.refs.push(ManifestRef {
            digest: digest(&format!("suite-manyrefs-child-{i}")),
            kind: if i % 3 == 0 {
                RefKind::Manifest
            } else {
                RefKind::Blob
            },
            size: 1,
            field: format!("manifests[{i}]"),
        });
    }
    m.refs.push(m.refs[7].clone());
    let before = count(s, "manifest_refs").await;
    insert_manifest(s, &r, &m).await;
    assert_eq!(count(s, "manifest_refs").await - before, 600);
}

/// A push's single write: repository, manifest, references and tag
/// together (one round trip on SQLite), a tag moved by the next push, the
/// same manifest again under a second tag, and an index too large for one
/// statement.
async fn a_tagged_insert_stores_everything_at_once(s: &MetaStore) {
    let r = repo("suite-tagged/app");
    let config = digest("suite-tagged-config");
    insert_blob_linked(s, &r, &config, 2).await;
    let mut m1 = M::new("suite-tagged-1");
    m1.refs = vec![
        blob_ref(&config, 2, "config"),
        blob_ref(&digest("suite-tagged-layer"), 3, "layers[0]"),
    ];
    m1.annotations = Some(r#"{"a":"b"}"#.into());
    let refs_before = count(s, "manifest_refs").await;
    put_tagged(s, &r, &m1, "v1").await;
    assert!(s.repo_exists(&r).await.unwrap());
    assert_eq!(
        s.tag(&r, &tag("v1")).await.unwrap(),
        Some(m1.digest.clone())
    );
    assert_eq!(count(s, "manifest_refs").await - refs_before, 2);
    let stored = s.manifest(&r, &m1.digest).await.unwrap().unwrap();
    assert_eq!(stored.body, m1.body);

    let mut m2 = M::new("suite-tagged-2");
    m2.refs = vec![blob_ref(&config, 2, "config")];
    put_tagged(s, &r, &m2, "v1").await;
    put_tagged(s, &r, &m2, "v2").await;
    assert_eq!(
        s.tag(&r, &tag("v1")).await.unwrap(),
        Some(m2.digest.clone())
    );
    assert_eq!(
        s.tag(&r, &tag("v2")).await.unwrap(),
        Some(m2.digest.clone())
    );
    assert!(s.manifest(&r, &m1.digest).await.unwrap().is_some());
    assert_eq!(count(s, "manifest_refs").await - refs_before, 3);

    let mut big = M::new("suite-tagged-big");
    big.refs = (0..700)
        .map(|i| blob_ref(&digest(&format!("suite-tagged-child-{i}")), 1, "layers"))
        .collect();
    put_tagged(s, &r, &big, "big").await;
    assert_eq!(
        s.tag(&r, &tag("big")).await.unwrap(),
        Some(big.digest.clone())
    );
    assert_eq!(count(s, "manifest_refs").await - refs_before, 703);

    // Without a tag: the manifest only.
    let m3 = M::new("suite-tagged-3");
    let mut tx = s.begin().await.unwrap();
    tx.insert_manifest_tagged(&r, m3.new_manifest(), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(s.manifest(&r, &m3.digest).await.unwrap().is_some());
    assert_eq!(all_tags(s, &r).await, vec!["big", "v1", "v2"]);
}

async fn insert_manifest_is_idempotent(s: &MetaStore) {
    let r = repo("suite-idem/app");
    let config = digest("suite-idem-config");
    let layer = digest("suite-idem-layer");
    insert_blob_linked(s, &r, &config, 2).await;
    insert_blob_linked(s, &r, &layer, 3).await;
    let mut m = M::new("suite-idem-manifest");
    m.refs = vec![
        blob_ref(&config, 2, "config"),
        blob_ref(&layer, 3, "layers[0]"),
    ];
    m.subject = Some(digest("suite-idem-subject"));
    let manifests_before = count(s, "manifests").await;
    let refs_before = count(s, "manifest_refs").await;

    let mut tx = s.begin().await.unwrap();
    assert!(!tx.manifest_exists(&r, &m.digest).await.unwrap());
    tx.insert_manifest(&r, m.new_manifest()).await.unwrap();
    assert!(tx.manifest_exists(&r, &m.digest).await.unwrap());
    tx.commit().await.unwrap();
    // Again, in a second transaction and with a different media type: the
    // first row stays as it is.
    let mut again = M::new("suite-idem-manifest");
    again.media_type = "application/vnd.oci.image.index.v1+json";
    again.refs = m.refs.clone();
    insert_manifest(s, &r, &again).await;

    assert_eq!(count(s, "manifests").await, manifests_before + 1);
    assert_eq!(count(s, "manifest_refs").await, refs_before + 2);
    let stored = s.manifest(&r, &m.digest).await.unwrap().unwrap();
    assert_eq!(stored.digest, m.digest);
    assert_eq!(stored.body, m.body);
    assert_eq!(stored.media_type, m.media_type);
    assert_eq!(
        stored.subject.as_deref(),
        Some(digest("suite-idem-subject").as_str())
    );
    let head = s.manifest_head(&r, &m.digest).await.unwrap().unwrap();
    assert_eq!(head.size, m.body.len() as u64);
    assert_eq!(head.media_type, m.media_type);
    assert_eq!(head.subject, stored.subject);
    // Manifests belong to their repository.
    let other = repo("suite-idem/other");
    assert!(s.manifest(&other, &m.digest).await.unwrap().is_none());
    assert!(s.manifest_head(&other, &m.digest).await.unwrap().is_none());
}

async fn set_tag_moves_a_tag(s: &MetaStore) {
    let r = repo("suite-settag/app");
    let m1 = M::new("suite-settag-1");
    let m2 = M::new("suite-settag-2");
    insert_manifest(s, &r, &m1).await;
    insert_manifest(s, &r, &m2).await;
    let tags_before = count(s, "tags").await;

    set_tag(s, &r, "latest", &m1.digest).await;
    assert_eq!(
        s.tag(&r, &tag("latest")).await.unwrap(),
        Some(m1.digest.clone())
    );
    set_tag(s, &r, "latest", &m2.digest).await;
    assert_eq!(
        s.tag(&r, &tag("latest")).await.unwrap(),
        Some(m2.digest.clone())
    );
    set_tag(s, &r, "latest", &m2.digest).await;
    assert_eq!(all_tags(s, &r).await, vec!["latest".to_string()]);
    assert_eq!(count(s, "tags").await, tags_before + 1);
    // Tags are per repository.
    assert_eq!(
        s.tag(&repo("suite-settag/other"), &tag("latest"))
            .await
            .unwrap(),
        None
    );
    // A tag must name a manifest of its repository.
    let mut tx = s.begin().await.unwrap();
    assert!(
        tx.set_tag(&r, &tag("dangling"), &digest("suite-settag-missing"))
            .await
            .is_err()
    );
    drop(tx);
    assert_eq!(s.tag(&r, &tag("dangling")).await.unwrap(), None);
}

async fn delete_tag_keeps_the_manifest(s: &MetaStore) {
    let r = repo("suite-deltag/app");
    let m = M::new("suite-deltag");
    insert_manifest(s, &r, &m).await;
    set_tag(s, &r, "a", &m.digest).await;
    set_tag(s, &r, "b", &m.digest).await;

    let mut tx = s.begin().await.unwrap();
    assert!(tx.delete_tag(&r, &tag("a")).await.unwrap());
    assert!(!tx.delete_tag(&r, &tag("a")).await.unwrap());
    assert!(!tx.delete_tag(&r, &tag("never")).await.unwrap());
    tx.commit().await.unwrap();

    assert_eq!(s.tag(&r, &tag("a")).await.unwrap(), None);
    assert_eq!(s.tag(&r, &tag("b")).await.unwrap(), Some(m.digest.clone()));
    assert!(s.manifest(&r, &m.digest).await.unwrap().is_some());
}

async fn delete_manifest_cascades(s: &MetaStore) {
    let r = repo("suite-delman/app");
    let layer = digest("suite-delman-layer");
    insert_blob_linked(s, &r, &layer, 4).await;
    let subject = M::new("suite-delman-subject");
    insert_manifest(s, &r, &subject).await;
    let mut m = M::new("suite-delman-target");
    m.refs = vec![blob_ref(&layer, 4, "layers[0]")];
    m.subject = Some(subject.digest.clone());
    m.artifact_type = Some("application/vnd.example.sig");
    insert_manifest(s, &r, &m).await;
    let keep = M::new("suite-delman-keep");
    insert_manifest(s, &r, &keep).await;
    // The same digest in another repository is a different row.
    let other = repo("suite-delman/other");
    insert_blob_linked(s, &other, &layer, 4).await;
    insert_manifest(s, &other, &m).await;
    set_tag(s, &other, "t1", &m.digest).await;
    set_tag(s, &r, "t1", &m.digest).await;
    set_tag(s, &r, "t2", &m.digest).await;
    set_tag(s, &r, "t3", &keep.digest).await;
    assert_eq!(
        s.referrers(&r, &subject.digest, None).await.unwrap().len(),
        1
    );
    let refs_before = count(s, "manifest_refs").await;
    let manifests_before = count(s, "manifests").await;

    let mut tx = s.begin().await.unwrap();
    assert!(tx.delete_manifest(&r, &m.digest).await.unwrap());
    assert!(!tx.delete_manifest(&r, &m.digest).await.unwrap());
    assert!(!tx.delete_manifest(&r, &digest("never")).await.unwrap());
    tx.commit().await.unwrap();

    assert!(s.manifest(&r, &m.digest).await.unwrap().is_none());
    assert!(s.manifest_head(&r, &m.digest).await.unwrap().is_none());
    assert_eq!(all_tags(s, &r).await, vec!["t3".to_string()]);
    assert_eq!(count(s, "manifests").await, manifests_before - 1);
    assert_eq!(count(s, "manifest_refs").await, refs_before - 1);
    assert!(
        s.referrers(&r, &subject.digest, None)
            .await
            .unwrap()
            .is_empty()
    );
    // The blob link stays; the other repository is untouched.
    assert_eq!(s.linked_blob(&r, &layer).await.unwrap(), Some(4));
    assert!(s.manifest(&other, &m.digest).await.unwrap().is_some());
    assert_eq!(
        s.tag(&other, &tag("t1")).await.unwrap(),
        Some(m.digest.clone())
    );
    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.ref_sizes(&r, &[blob_ref(&layer, 4, "layers[0]")])
            .await
            .unwrap(),
        vec![Some(4)]
    );
}

async fn tags_keyset_pagination(s: &MetaStore) {
    let r = repo("suite-tagpage/app");
    let m = M::new("suite-tagpage");
    insert_manifest(s, &r, &m).await;
    // Inserted out of order; listed in lexical byte order, as Distribution
    // sorts them (on PostgreSQL this needs the C collation for `name`).
    for t in ["d", "B", "a", "c", "b", "a1"] {
        set_tag(s, &r, t, &m.digest).await;
    }
    // A tag in another repository never shows up.
    let other = repo("suite-tagpage/other");
    insert_manifest(s, &other, &m).await;
    set_tag(s, &other, "aa", &m.digest).await;

    let cases: [(Option<&str>, i64, &[&str]); 8] = [
        (None, 100, &["B", "a", "a1", "b", "c", "d"]),
        (None, 2, &["B", "a"]),
        (Some("a"), 2, &["a1", "b"]),
        (Some("b"), 2, &["c", "d"]),
        (Some("c"), 10, &["d"]),
        (Some("d"), 10, &[]),
        (Some("a0"), 1, &["a1"]),
        (None, 0, &[]),
    ];
    for (last, n, want) in cases {
        let got = s.tags(&r, last, n).await.unwrap();
        assert_eq!(got, want, "last={last:?} n={n}");
    }
    // Walking page by page visits every tag once.
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = s.tags(&r, last.as_deref(), 4).await.unwrap();
        if page.is_empty() {
            break;
        }
        last = page.last().cloned();
        seen.extend(page);
    }
    assert_eq!(seen, ["B", "a", "a1", "b", "c", "d"]);
}

async fn repositories_keyset_pagination(s: &MetaStore) {
    let names = [
        "suite-catalog/b",
        "suite-catalog/a/x",
        "suite-catalog/a",
        "suite-catalog/c",
    ];
    for n in names {
        insert_manifest(s, &repo(n), &M::new(&format!("catalog manifest of {n}"))).await;
    }
    let cases: [(&str, i64, &[&str]); 5] = [
        (
            "suite-catalog/",
            4,
            &[
                "suite-catalog/a",
                "suite-catalog/a/x",
                "suite-catalog/b",
                "suite-catalog/c",
            ],
        ),
        (
            "suite-catalog/",
            2,
            &["suite-catalog/a", "suite-catalog/a/x"],
        ),
        (
            "suite-catalog/a/x",
            2,
            &["suite-catalog/b", "suite-catalog/c"],
        ),
        ("suite-catalog/b", 1, &["suite-catalog/c"]),
        ("suite-catalog/a", 0, &[]),
    ];
    for (last, n, want) in cases {
        let got = s.repositories(Some(last), n).await.unwrap();
        assert_eq!(got, want, "last={last:?} n={n}");
    }
    // Nothing of this suite sorts after its last name.
    let after = s.repositories(Some("suite-catalog/c"), 10).await.unwrap();
    assert!(
        after.iter().all(|n| !n.starts_with("suite-catalog/")),
        "{after:?}"
    );
}

async fn referrers_with_and_without_filter(s: &MetaStore) {
    let r = repo("suite-referrers/app");
    let subject = M::new("suite-referrers-subject");
    insert_manifest(s, &r, &subject).await;
    let mut sig = M::new("suite-referrers-sig");
    sig.subject = Some(subject.digest.clone());
    sig.artifact_type = Some("application/vnd.example.sig");
    sig.annotations = Some(r#"{"org.example.k":"v"}"#.into());
    let mut sbom = M::new("suite-referrers-sbom");
    sbom.subject = Some(subject.digest.clone());
    sbom.artifact_type = Some("application/vnd.example.sbom");
    let mut untyped = M::new("suite-referrers-untyped");
    untyped.subject = Some(subject.digest.clone());
    untyped.media_type = "application/vnd.oci.image.index.v1+json";
    let unrelated = M::new("suite-referrers-unrelated");
    for m in [&sig, &sbom, &untyped, &unrelated] {
        insert_manifest(s, &r, m).await;
    }
    // A referrer in another repository is not listed here.
    let other = repo("suite-referrers/other");
    let mut foreign = M::new("suite-referrers-foreign");
    foreign.subject = Some(subject.digest.clone());
    foreign.artifact_type = Some("application/vnd.example.sig");
    insert_manifest(s, &other, &foreign).await;

    let mut all = vec![&sig, &sbom, &untyped];
    all.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
    let cases: Vec<(Option<&str>, Vec<&M>)> = vec![
        (None, all),
        (Some("application/vnd.example.sig"), vec![&sig]),
        (Some("application/vnd.example.sbom"), vec![&sbom]),
        (Some("application/vnd.example.none"), vec![]),
    ];
    for (filter, want) in cases {
        let rows = s.referrers(&r, &subject.digest, filter).await.unwrap();
        let got: Vec<&str> = rows.iter().map(|row| row.digest.as_str()).collect();
        let want_digests: Vec<&str> = want.iter().map(|m| m.digest.as_str()).collect();
        assert_eq!(got, want_digests, "filter {filter:?}");
        for (row, m) in rows.iter().zip(&want) {
            assert_eq!(row.media_type, m.media_type);
            assert_eq!(row.size, m.body.len() as i64);
            assert_eq!(row.artifact_type.as_deref(), m.artifact_type);
            assert_eq!(row.annotations, m.annotations);
        }
    }
    // Unknown subjects and repositories have no referrers.
    assert!(
        s.referrers(&r, &digest("suite-referrers-nothing"), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.referrers(&repo("suite-referrers/none"), &subject.digest, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.referrers(&r, &unrelated.digest, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A finished push's writes in one call: the blob's row, its repository,
/// the link and the end of the session; again for an existing blob, in a
/// second repository, without a session.
async fn a_finished_push_stores_blob_link_and_ends_the_session(s: &MetaStore) {
    let r = repo("suite-store/app");
    let other = repo("suite-store/other");
    let d = digest("suite-store-blob");
    let (id, id2) = ("suite-store-upload-1", "suite-store-upload-2");
    let mut tx = s.begin().await.unwrap();
    tx.insert_upload(id, &r).await.unwrap();
    tx.insert_upload(id2, &r).await.unwrap();
    tx.commit().await.unwrap();
    assert!(s.repo_exists(&r).await.unwrap());

    let mut tx = s.begin().await.unwrap();
    tx.store_blob(&r, &d, Some(7), Some(id)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.linked_blob(&r, &d).await.unwrap(), Some(7));
    assert!(s.upload(id).await.unwrap().is_none());
    assert!(
        s.upload(id2).await.unwrap().is_some(),
        "only its own session"
    );

    // The first size stays; a repository appears with its first link.
    let mut tx = s.begin().await.unwrap();
    tx.store_blob(&other, &d, Some(9), None).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.linked_blob(&other, &d).await.unwrap(), Some(7));
    assert!(s.repo_exists(&other).await.unwrap());
    assert!(s.upload(id2).await.unwrap().is_some());
}

async fn uploads_insert_and_delete(s: &MetaStore) {
    let r = repo("suite-uploads/app");
    let id = "suite-upload-0001";
    assert!(s.upload(id).await.unwrap().is_none());
    let before = count(s, "uploads").await;
    let start = berth_meta::now_millis();

    let mut tx = s.begin().await.unwrap();
    tx.insert_upload(id, &r).await.unwrap();
    assert!(tx.keep_upload_alive(&r, id).await.unwrap());
    // Only in its own repository, and only while it exists.
    assert!(
        !tx.keep_upload_alive(&repo("suite-uploads/other"), id)
            .await
            .unwrap()
    );
    assert!(!tx.keep_upload_alive(&r, "suite-upload-none").await.unwrap());
    tx.commit().await.unwrap();
    let row = s.upload(id).await.unwrap().unwrap();
    assert_eq!(row.id, id);
    assert_eq!(row.repo, r.as_str());
    assert!(
        row.created_at >= start && row.created_at <= berth_meta::now_millis(),
        "created_at {} not in [{start}, now]",
        row.created_at
    );
    assert_eq!(count(s, "uploads").await, before + 1);
    // Starting an upload creates the repository.
    assert!(s.repo_exists(&r).await.unwrap());

    // Ids are unique.
    let mut tx = s.begin().await.unwrap();
    assert!(tx.insert_upload(id, &r).await.is_err());
    drop(tx);

    let mut tx = s.begin().await.unwrap();
    assert!(tx.delete_upload(id).await.unwrap());
    assert!(!tx.delete_upload(id).await.unwrap());
    assert!(!tx.delete_upload("suite-upload-never").await.unwrap());
    tx.commit().await.unwrap();
    assert!(s.upload(id).await.unwrap().is_none());
    assert_eq!(count(s, "uploads").await, before);
}

/// Everything one transaction can write, for the visibility checks.
async fn write_everything(tx: &mut berth_meta::Tx, r: &RepoName, m: &M, blob: &Digest, up: &str) {
    tx.ensure_repo(r).await.unwrap();
    tx.insert_blob(blob, 1).await.unwrap();
    tx.link_blob(r, blob).await.unwrap();
    tx.insert_manifest(r, m.new_manifest()).await.unwrap();
    tx.set_tag(r, &tag("latest"), &m.digest).await.unwrap();
    tx.insert_upload(up, r).await.unwrap();
}

async fn visible(s: &MetaStore, r: &RepoName, m: &M, blob: &Digest, up: &str) -> [bool; 5] {
    [
        s.repo_exists(r).await.unwrap(),
        s.linked_blob(r, blob).await.unwrap().is_some(),
        s.manifest(r, &m.digest).await.unwrap().is_some(),
        s.tag(r, &tag("latest")).await.unwrap().is_some(),
        s.upload(up).await.unwrap().is_some(),
    ]
}

async fn transaction_rollback_on_drop(s: &MetaStore) {
    let r = repo("suite-rollback/app");
    let m = M::new("suite-rollback-manifest");
    let blob = digest("suite-rollback-blob");
    let up = "suite-rollback-upload";
    let counts_before = s.table_counts().await.unwrap();

    let mut tx = s.begin().await.unwrap();
    write_everything(&mut tx, &r, &m, &blob, up).await;
    // Readers do not see uncommitted writes...
    assert_eq!(visible(s, &r, &m, &blob, up).await, [false; 5]);
    drop(tx);
    // ...and after the drop they never will.
    assert_eq!(visible(s, &r, &m, &blob, up).await, [false; 5]);
    assert_eq!(s.table_counts().await.unwrap(), counts_before);
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.blob_size(&blob).await.unwrap(), None);
    drop(tx);

    // The same writes committed are all visible.
    let mut tx = s.begin().await.unwrap();
    write_everything(&mut tx, &r, &m, &blob, up).await;
    tx.commit().await.unwrap();
    assert_eq!(visible(s, &r, &m, &blob, up).await, [true; 5]);
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
        repositories_are_created_once,
        blobs_link_and_unlink,
        ref_sizes_resolve_blobs_and_manifests,
        many_references_are_stored_in_batches,
        a_tagged_insert_stores_everything_at_once,
        insert_manifest_is_idempotent,
        set_tag_moves_a_tag,
        delete_tag_keeps_the_manifest,
        delete_manifest_cascades,
        tags_keyset_pagination,
        repositories_keyset_pagination,
        referrers_with_and_without_filter,
        uploads_insert_and_delete,
        a_finished_push_stores_blob_link_and_ends_the_session,
        transaction_rollback_on_drop,
    );

    /// The whole suite in sequence on one store: checks must not depend on
    /// an empty database.
    #[tokio::test]
    async fn all_checks_share_one_store() {
        let (_guard, s) = open_sqlite().await;
        super::repositories_are_created_once(&s).await;
        super::blobs_link_and_unlink(&s).await;
        super::ref_sizes_resolve_blobs_and_manifests(&s).await;
        super::many_references_are_stored_in_batches(&s).await;
        super::a_tagged_insert_stores_everything_at_once(&s).await;
        super::insert_manifest_is_idempotent(&s).await;
        super::set_tag_moves_a_tag(&s).await;
        super::delete_tag_keeps_the_manifest(&s).await;
        super::delete_manifest_cascades(&s).await;
        super::tags_keyset_pagination(&s).await;
        super::repositories_keyset_pagination(&s).await;
        super::referrers_with_and_without_filter(&s).await;
        super::uploads_insert_and_delete(&s).await;
        super::a_finished_push_stores_blob_link_and_ends_the_session(&s).await;
        super::transaction_rollback_on_drop(&s).await;
        s.close().await;
    }
}

mod postgres {
    use super::common::open_postgres;

    suite!(open_postgres:
        repositories_are_created_once,
        blobs_link_and_unlink,
        ref_sizes_resolve_blobs_and_manifests,
        many_references_are_stored_in_batches,
        a_tagged_insert_stores_everything_at_once,
        insert_manifest_is_idempotent,
        set_tag_moves_a_tag,
        delete_tag_keeps_the_manifest,
        delete_manifest_cascades,
        tags_keyset_pagination,
        repositories_keyset_pagination,
        referrers_with_and_without_filter,
        uploads_insert_and_delete,
        a_finished_push_stores_blob_link_and_ends_the_session,
        transaction_rollback_on_drop,
    );
}

/// SQLite keeps committed data in its file across a close and reopen, and
/// never what was rolled back.
#[tokio::test]
async fn sqlite_reopen_keeps_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let r = repo("reopen/app");
    let m = M::new("reopen-manifest");
    let blob = digest("reopen-blob");
    let lost = M::new("reopen-rolled-back");

    let s = MetaStore::open_sqlite(&path).await.unwrap();
    let mut tx = s.begin().await.unwrap();
    write_everything(&mut tx, &r, &m, &blob, "reopen-upload").await;
    tx.commit().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.insert_manifest(&r, lost.new_manifest()).await.unwrap();
    drop(tx);
    let counts = s.table_counts().await.unwrap();
    s.close().await;

    // Opening again runs the migrations again, which must be a no-op.
    let s = MetaStore::open_sqlite(&path).await.unwrap();
    s.ready().await.unwrap();
    assert_eq!(visible(&s, &r, &m, &blob, "reopen-upload").await, [true; 5]);
    assert!(s.manifest(&r, &lost.digest).await.unwrap().is_none());
    assert_eq!(s.table_counts().await.unwrap(), counts);
    assert_eq!(
        s.manifest(&r, &m.digest).await.unwrap().unwrap().body,
        m.body
    );
    s.close().await;
}
