//! The benchmark scenarios. Each group prepares its data (not timed), then
//! measures one or more variants, each printing one JSON line.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use rand::{Rng, RngCore};
use serde_json::json;

use crate::client::{
    CATALOG_SCOPE, Client, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, pull_scope, sha256_digest,
};
use crate::runner::{Limit, Run, run};
use crate::stats::{Figures, ServerProbe};

const MIB: usize = 1024 * 1024;
const KIB: usize = 1024;

/// Every scenario group, in the order `all` runs them.
pub const GROUPS: &[&str] = &[
    "push-mono",
    "push-chunked",
    "pull",
    "small-blobs",
    "manifest-put",
    "manifest-get",
    "tags-list",
    "catalog",
    "image-push",
    "tiny-images",
];

/// Sizes and counts of the scenarios.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub blob: usize,
    pub mono_counts: [(usize, usize); 2],
    pub chunk: usize,
    pub chunked_count: usize,
    pub pull_blob: usize,
    pub pull_counts: [(usize, usize); 2],
    pub small_min: usize,
    pub small_max: usize,
    pub small_count: usize,
    pub small_concurrency: [usize; 2],
    pub manifest_concurrency: [usize; 3],
    pub small_tags: usize,
    pub tags: usize,
    pub small_repos: usize,
    pub repos: usize,
    pub page: usize,
    pub setup_concurrency: usize,
    pub layers: usize,
    pub layer: usize,
    pub images: usize,
    pub tiny_images: usize,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            blob: 64 * MIB,
            mono_counts: [(1, 8), (4, 16)],
            chunk: 8 * MIB,
            chunked_count: 6,
            pull_blob: 256 * MIB,
            pull_counts: [(1, 8), (4, 16)],
            small_min: 4 * KIB,
            small_max: 64 * KIB,
            small_count: 2000,
            small_concurrency: [1, 16],
            manifest_concurrency: [1, 16, 64],
            small_tags: 100,
            tags: 10_000,
            small_repos: 100,
            repos: 10_000,
            page: 100,
            setup_concurrency: 16,
            layers: 5,
            layer: 20 * MIB,
            images: 5,
            tiny_images: 200,
        }
    }

    /// Small sizes to check that everything works end to end.
    pub fn quick() -> Sizes {
        Sizes {
            blob: 8 * MIB,
            mono_counts: [(1, 3), (4, 4)],
            chunk: 2 * MIB,
            chunked_count: 2,
            pull_blob: 32 * MIB,
            pull_counts: [(1, 2), (4, 4)],
            small_count: 200,
            small_tags: 100,
            tags: 1_000,
            small_repos: 100,
            repos: 500,
            layer: 2 * MIB,
            images: 2,
            tiny_images: 20,
            ..Sizes::full()
        }
    }
}

/// What every scenario needs, and the record of which ones had errors.
pub struct Ctx {
    pub client: Client,
    pub label: String,
    pub probe: Option<ServerProbe>,
    pub sizes: Sizes,
    pub duration: Duration,
    pub prefix: String,
    /// Scenarios (with concurrency) that had errors.
    pub failed: Vec<String>,
    /// Every line printed, for callers that want them (tests).
    pub lines: Vec<Figures>,
}

impl Ctx {
    /// Runs and measures one variant (with the server's CPU and peak RSS
    /// over exactly the measured part).
    async fn measure<F, Fut>(
        &mut self,
        scenario: &str,
        concurrency: usize,
        limit: Limit,
        op: F,
    ) -> Figures
    where
        F: Fn(u64) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<u64>> + Send + 'static,
    {
        let start = self.probe.map(|p| (p, p.start()));
        let Run {
            mut outcome,
            first_errors,
        } = run(concurrency, limit, op).await;
        let usage = start.and_then(|(p, s)| p.finish(&s));
        for e in &first_errors {
            eprintln!("[{}] {scenario} c{concurrency}: error: {e}", self.label);
        }
        Figures::from_outcome(scenario, &self.label, concurrency, &mut outcome).with_server(usage)
    }

    /// Prints the JSON line and remembers failures.
    pub fn emit(&mut self, f: Figures) {
        if f.errors > 0 {
            eprintln!(
                "[{}] {} c{}: {} ERRORS",
                self.label, f.scenario, f.concurrency, f.errors
            );
            self.failed.push(format!(
                "{} c{} ({} errors)",
                f.scenario, f.concurrency, f.errors
            ));
        } else {
            eprintln!(
                "[{}] {} c{}: {:.1} MiB/s, {:.1} ops/s, p50 {:.2} ms, p99 {:.2} ms",
                self.label,
                f.scenario,
                f.concurrency,
                f.mib_s,
                f.ops_s,
                f.p50_ms.unwrap_or(0.0),
                f.p99_ms.unwrap_or(0.0)
            );
        }
        println!("{}", serde_json::to_string(&f).expect("figures serialize"));
        self.lines.push(f);
    }

    /// A group that failed before measuring: one line with one error.
    fn setup_failed(&mut self, group: &str, e: &anyhow::Error) {
        eprintln!("[{}] {group}: setup failed: {e:#}", self.label);
        let f = Figures {
            scenario: group.to_string(),
            registry: self.label.clone(),
            errors: 1,
            ..Figures::default()
        }
        .extra("error", format!("{e:#}"));
        self.emit(f);
    }

    fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    /// Runs one group by name.
    pub async fn run_group(&mut self, group: &str) -> Result<()> {
        let r = match group {
            "push-mono" => self.push_mono().await,
            "push-chunked" => self.push_chunked().await,
            "pull" => self.pull().await,
            "small-blobs" => self.small_blobs().await,
            "manifest-put" => self.manifest_put().await,
            "manifest-get" => self.manifest_get().await,
            "tags-list" => self.tags_list().await,
            "catalog" => self.catalog().await,
            "image-push" => self.image_push().await,
            "tiny-images" => self.tiny_images().await,
            other => bail!(
                "unknown scenario {other:?}; known: all, {}",
                GROUPS.join(", ")
            ),
        };
        if let Err(e) = r {
            self.setup_failed(group, &e);
        }
        Ok(())
    }

    async fn push_mono(&mut self) -> Result<()> {
        let base = random_bytes(self.sizes.blob);
        let repo = Arc::new(self.repo("push-mono"));
        for (c, count) in self.sizes.mono_counts {
            let blobs = Arc::new(unique_blobs(&base, count));
            let (client, repo) = (self.client.clone(), repo.clone());
            let f = self
                .measure("push-mono", c, Limit::Count(count as u64), move |i| {
                    let (client, repo, blobs) = (client.clone(), repo.clone(), blobs.clone());
                    async move {
                        let (data, digest) = &blobs[i as usize];
                        client.push_blob(&repo, data, digest).await?;
                        Ok(data.len() as u64)
                    }
                })
                .await;
            self.emit(f.extra("blob_mib", (self.sizes.blob / MIB) as u64));
        }
        Ok(())
    }

    async fn push_chunked(&mut self) -> Result<()> {
        let base = random_bytes(self.sizes.blob);
        let repo = Arc::new(self.repo("push-chunked"));
        let blobs = Arc::new(unique_blobs(&base, self.sizes.chunked_count));
        let chunk = self.sizes.chunk;
        let client = self.client.clone();
        let f = self
            .measure(
                "push-chunked",
                1,
                Limit::Count(blobs.len() as u64),
                move |i| {
                    let (client, repo, blobs) = (client.clone(), repo.clone(), blobs.clone());
                    async move {
                        let (data, digest) = &blobs[i as usize];
                        client.push_blob_chunked(&repo, data, digest, chunk).await?;
                        Ok(data.len() as u64)
                    }
                },
            )
            .await;
        self.emit(
            f.extra("blob_mib", (self.sizes.blob / MIB) as u64)
                .extra("chunk_mib", (chunk / MIB) as u64),
        );
        Ok(())
    }

    async fn pull(&mut self) -> Result<()> {
        let repo = Arc::new(self.repo("pull"));
        let data = Bytes::from(random_bytes(self.sizes.pull_blob));
        let digest = Arc::new(sha256_digest(&data));
        self.client.push_blob(&repo, &data, &digest).await?;
        drop(data);
        // Warm the page cache (and the connection) before measuring.
        self.client.pull_blob(&repo, &digest, true).await?;
        for verify in [false, true] {
            let name = if verify { "pull-verify" } else { "pull" };
            for (c, count) in self.sizes.pull_counts {
                let (client, repo, digest) = (self.client.clone(), repo.clone(), digest.clone());
                let f = self
                    .measure(name, c, Limit::Count(count as u64), move |_| {
                        let (client, repo, digest) = (client.clone(), repo.clone(), digest.clone());
                        async move { client.pull_blob(&repo, &digest, verify).await }
                    })
                    .await;
                self.emit(f.extra("blob_mib", (self.sizes.pull_blob / MIB) as u64));
            }
        }
        Ok(())
    }

    async fn small_blobs(&mut self) -> Result<()> {
        let repo = Arc::new(self.repo("small-blobs"));
        for c in self.sizes.small_concurrency {
            let mut rng = rand::rng();
            let blobs: Vec<(Bytes, String)> = (0..self.sizes.small_count)
                .map(|_| {
                    let n = rng.random_range(self.sizes.small_min..=self.sizes.small_max);
                    let b = Bytes::from(random_bytes(n));
                    let d = sha256_digest(&b);
                    (b, d)
                })
                .collect();
            let blobs = Arc::new(blobs);
            let (client, repo) = (self.client.clone(), repo.clone());
            let f = self
                .measure(
                    "small-blobs",
                    c,
                    Limit::Count(blobs.len() as u64),
                    move |i| {
                        let (client, repo, blobs) = (client.clone(), repo.clone(), blobs.clone());
                        async move {
                            let (data, digest) = &blobs[i as usize];
                            client.push_blob(&repo, data, digest).await?;
                            Ok(data.len() as u64)
                        }
                    },
                )
                .await;
            self.emit(f);
        }
        Ok(())
    }

    /// A repository holding one small image tagged `latest`; returns the
    /// config and layer descriptors and the manifest's digest.
    async fn manifest_fixture(&self, repo: &str) -> Result<(Desc, Desc, String)> {
        let config = Bytes::from(config_json("fixture"));
        let layer = Bytes::from(random_bytes(2 * KIB));
        let cd = Desc::of(&config);
        let ld = Desc::of(&layer);
        self.client.push_blob(repo, &config, &cd.digest).await?;
        self.client.push_blob(repo, &layer, &ld.digest).await?;
        let m = image_manifest(&cd, std::slice::from_ref(&ld), None);
        let md = sha256_digest(&m);
        self.client
            .put_manifest(repo, "latest", OCI_MANIFEST, m)
            .await?;
        Ok((cd, ld, md))
    }

    async fn manifest_put(&mut self) -> Result<()> {
        let repo = Arc::new(self.repo("manifests"));
        let (cd, ld, _) = self.manifest_fixture(&repo).await?;
        let (cd, ld) = (Arc::new(cd), Arc::new(ld));
        for c in self.sizes.manifest_concurrency {
            let (client, repo, cd, ld) =
                (self.client.clone(), repo.clone(), cd.clone(), ld.clone());
            let f = self
                .measure("manifest-put", c, Limit::For(self.duration), move |i| {
                    let (client, repo, cd, ld) =
                        (client.clone(), repo.clone(), cd.clone(), ld.clone());
                    async move {
                        let note = format!("c{c}-{i}");
                        let m = image_manifest(&cd, std::slice::from_ref(&ld), Some(&note));
                        client
                            .put_manifest(&repo, &format!("p{note}"), OCI_MANIFEST, m)
                            .await
                    }
                })
                .await;
            self.emit(f);
        }
        Ok(())
    }

    async fn manifest_get(&mut self) -> Result<()> {
        let repo = Arc::new(self.repo("manifests"));
        let (_, _, md) = self.manifest_fixture(&repo).await?;
        let variants = [
            ("manifest-get-tag", false, false),
            ("manifest-get-digest", false, true),
            ("manifest-head-tag", true, false),
            ("manifest-head-digest", true, true),
        ];
        for (name, head, by_digest) in variants {
            let reference = Arc::new(if by_digest {
                md.clone()
            } else {
                "latest".into()
            });
            for c in self.sizes.manifest_concurrency {
                let (client, repo, reference) =
                    (self.client.clone(), repo.clone(), reference.clone());
                let f = self
                    .measure(name, c, Limit::For(self.duration), move |_| {
                        let (client, repo, reference) =
                            (client.clone(), repo.clone(), reference.clone());
                        async move { client.get_manifest(&repo, &reference, head).await }
                    })
                    .await;
                self.emit(f);
            }
        }
        Ok(())
    }

    /// Tags `count` tags (`t00000`...) on one image in `repo`.
    async fn make_tags(&self, repo: &str, count: usize) -> Result<()> {
        let config = Bytes::from(config_json(repo));
        let cd = Desc::of(&config);
        self.client.push_blob(repo, &config, &cd.digest).await?;
        let m = image_manifest(&cd, std::slice::from_ref(&cd.as_layer()), None);
        let (client, repo) = (self.client.clone(), Arc::new(repo.to_string()));
        let r = run(
            self.sizes.setup_concurrency,
            Limit::Count(count as u64),
            move |i| {
                let (client, repo, m) = (client.clone(), repo.clone(), m.clone());
                async move {
                    client
                        .put_manifest(&repo, &tag_name(i as usize), OCI_MANIFEST, m)
                        .await
                }
            },
        )
        .await;
        setup_ok(&r)
    }

    /// Fetches a paginated list from `first` to its end.
    async fn walk(client: &Client, first: reqwest::Url, scope: &str) -> Result<Walk> {
        let mut w = Walk::default();
        let mut next = Some(first);
        while let Some(url) = next {
            let page = client.list_page(url, scope).await?;
            w.pages += 1;
            w.bytes += page.bytes;
            w.entries += page.entries.len() as u64;
            ensure!(
                w.last.as_deref() < page.entries.last().map(String::as_str)
                    || page.entries.is_empty(),
                "list went backwards"
            );
            if let Some(l) = page.entries.last() {
                w.last = Some(l.clone());
            }
            ensure!(w.pages <= 1_000_000, "more than a million pages");
            next = page.next;
        }
        Ok(w)
    }

    async fn tags_list(&mut self) -> Result<()> {
        let page = self.sizes.page;
        for (count, name) in [
            (
                self.sizes.small_tags,
                format!("tags-page-{}", self.sizes.small_tags),
            ),
            (self.sizes.tags, format!("tags-page-{}", self.sizes.tags)),
        ] {
            let repo = Arc::new(self.repo(&format!("tags-{count}")));
            self.make_tags(&repo, count).await?;
            // A page from the middle of the list (the first one for a list
            // of a single page).
            let mut url = self.client.url(&format!("/v2/{repo}/tags/list"));
            url.query_pairs_mut().append_pair("n", &page.to_string());
            if count > page {
                url.query_pairs_mut()
                    .append_pair("last", &tag_name(count / 2));
            }
            let sample = self
                .client
                .list_page(url.clone(), &pull_scope(&repo))
                .await?;
            let per_page = sample.entries.len();
            let (client, scope) = (self.client.clone(), Arc::new(pull_scope(&repo)));
            let url = Arc::new(url);
            let f = self
                .measure(&name, 1, Limit::For(self.duration), move |_| {
                    let (client, scope, url) = (client.clone(), scope.clone(), url.clone());
                    async move {
                        let p = client.list_page((*url).clone(), &scope).await?;
                        ensure!(!p.entries.is_empty(), "empty tag page");
                        Ok(p.bytes)
                    }
                })
                .await;
            self.emit(
                f.extra("tags_in_repo", count as u64)
                    .extra("entries_per_page", per_page as u64),
            );
            if count == self.sizes.tags {
                self.measure_walk(
                    &format!("tags-walk-{count}"),
                    &format!("/v2/{repo}/tags/list"),
                    pull_scope(&repo),
                    Some(count as u64),
                )
                .await;
            }
        }
        Ok(())
    }

    /// Walks a whole paginated list for the duration; `exact` is the entry
    /// count a walk must find (else at least the configured repositories).
    async fn measure_walk(&mut self, name: &str, path: &str, scope: String, exact: Option<u64>) {
        let page = self.sizes.page;
        let mut first = self.client.url(path);
        first.query_pairs_mut().append_pair("n", &page.to_string());
        let at_least = self.sizes.repos as u64;
        let (client, scope, first) = (self.client.clone(), Arc::new(scope), Arc::new(first));
        let pages = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let entries = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (p2, e2) = (pages.clone(), entries.clone());
        let f = self
            .measure(name, 1, Limit::For(self.duration), move |_| {
                let (client, scope, first) = (client.clone(), scope.clone(), first.clone());
                let (pages, entries) = (p2.clone(), e2.clone());
                async move {
                    let w = Self::walk(&client, (*first).clone(), &scope).await?;
                    match exact {
                        Some(n) => {
                            ensure!(w.entries == n, "walk found {} entries, not {n}", w.entries)
                        }
                        None => ensure!(
                            w.entries >= at_least,
                            "walk found {} entries, fewer than {at_least}",
                            w.entries
                        ),
                    }
                    pages.store(w.pages, std::sync::atomic::Ordering::Relaxed);
                    entries.store(w.entries, std::sync::atomic::Ordering::Relaxed);
                    Ok(w.bytes)
                }
            })
            .await;
        let pages = pages.load(std::sync::atomic::Ordering::Relaxed);
        let entries = entries.load(std::sync::atomic::Ordering::Relaxed);
        let ms_per_page = if f.ops > 0 && pages > 0 {
            crate::stats::round3(f.seconds * 1000.0 / (f.ops * pages) as f64)
        } else {
            0.0
        };
        self.emit(
            f.extra("pages_per_walk", pages)
                .extra("entries", entries)
                .extra("ms_per_page", ms_per_page),
        );
    }

    /// Creates repositories `cat/rNNNNN` for `range`, each with one image,
    /// mounting its one blob from `src`.
    async fn make_repos(
        &self,
        range: std::ops::Range<usize>,
        src: &str,
        blob: &Bytes,
    ) -> Result<()> {
        let cd = Desc::of(blob);
        let m = image_manifest(&cd, std::slice::from_ref(&cd.as_layer()), None);
        let (client, src, blob, prefix) = (
            self.client.clone(),
            Arc::new(src.to_string()),
            blob.clone(),
            Arc::new(self.prefix.clone()),
        );
        let start = range.start as u64;
        let r = run(
            self.sizes.setup_concurrency,
            Limit::Count(range.len() as u64),
            move |i| {
                let (client, src, blob, prefix, m) = (
                    client.clone(),
                    src.clone(),
                    blob.clone(),
                    prefix.clone(),
                    m.clone(),
                );
                let digest = cd.digest.clone();
                async move {
                    let repo = format!("{prefix}/cat/r{:05}", start + i);
                    if !client.mount_blob(&repo, &digest, &src).await? {
                        client.push_blob(&repo, &blob, &digest).await?;
                    }
                    client.put_manifest(&repo, "v1", OCI_MANIFEST, m).await
                }
            },
        )
        .await;
        setup_ok(&r)
    }

    async fn catalog(&mut self) -> Result<()> {
        let page = self.sizes.page;
        // Not "cat-src": Distribution lists a repository tree depth-first, so
        // "cat-src" would come after "cat/r…" although '-' sorts before '/',
        // and the walk's order check would fail on a registry holding only
        // these.
        let src = self.repo("catalog-src");
        let blob = Bytes::from(config_json("catalog"));
        self.client
            .push_blob(&src, &blob, &sha256_digest(&blob))
            .await?;
        let mut made = 0;
        for target in [self.sizes.small_repos, self.sizes.repos] {
            self.make_repos(made..target, &src, &blob).await?;
            made = target;
            let all = Self::walk(&self.client, self.client.url("/v2/_catalog"), CATALOG_SCOPE)
                .await?
                .entries;
            let mut url = self.client.url("/v2/_catalog");
            url.query_pairs_mut().append_pair("n", &page.to_string());
            if target > page {
                url.query_pairs_mut()
                    .append_pair("last", &format!("{}/cat/r{:05}", self.prefix, target / 2));
            }
            let (client, url) = (self.client.clone(), Arc::new(url));
            let f = self
                .measure(
                    &format!("catalog-page-{target}"),
                    1,
                    Limit::For(self.duration),
                    move |_| {
                        let (client, url) = (client.clone(), url.clone());
                        async move {
                            let p = client.list_page((*url).clone(), CATALOG_SCOPE).await?;
                            ensure!(
                                p.entries.len() == page,
                                "catalog page has {} entries, not {page}",
                                p.entries.len()
                            );
                            Ok(p.bytes)
                        }
                    },
                )
                .await;
            self.emit(f.extra("repositories", all));
        }
        let name = format!("catalog-walk-{}", self.sizes.repos);
        self.measure_walk(&name, "/v2/_catalog", CATALOG_SCOPE.to_string(), None)
            .await;
        Ok(())
    }

    async fn image_push(&mut self) -> Result<()> {
        let base = random_bytes(self.sizes.layer);
        let images: Vec<Image> = (0..self.sizes.images)
            .map(|i| Image::new(unique_blobs(&base, self.sizes.layers), &format!("img{i}")))
            .collect();
        let (client, repo, images) = (
            self.client.clone(),
            Arc::new(self.repo("image-push")),
            Arc::new(images),
        );
        let f = self
            .measure(
                "image-push",
                1,
                Limit::Count(images.len() as u64),
                move |i| {
                    let (client, repo, images) = (client.clone(), repo.clone(), images.clone());
                    async move {
                        push_image(&client, &repo, &images[i as usize], &format!("v{i}")).await
                    }
                },
            )
            .await;
        self.emit(
            f.extra("layers", self.sizes.layers as u64)
                .extra("layer_mib", (self.sizes.layer / MIB) as u64),
        );
        Ok(())
    }

    async fn tiny_images(&mut self) -> Result<()> {
        let images: Vec<Image> = (0..self.sizes.tiny_images)
            .map(|i| {
                let layer = Bytes::from(random_bytes(2 * KIB));
                let d = sha256_digest(&layer);
                Image::new(vec![(layer, d)], &format!("tiny{i}"))
            })
            .collect();
        let (client, repo, images) = (
            self.client.clone(),
            Arc::new(self.repo("tiny-images")),
            Arc::new(images),
        );
        let f = self
            .measure(
                "tiny-images",
                1,
                Limit::Count(images.len() as u64),
                move |i| {
                    let (client, repo, images) = (client.clone(), repo.clone(), images.clone());
                    async move {
                        push_image(&client, &repo, &images[i as usize], &format!("v{i}")).await
                    }
                },
            )
            .await;
        self.emit(f);
        Ok(())
    }
}

fn setup_ok(r: &Run) -> Result<()> {
    if r.outcome.errors > 0 {
        bail!(
            "{} of {} setup requests failed, first: {}",
            r.outcome.errors,
            r.outcome.errors + r.outcome.ops,
            r.first_errors.first().map(String::as_str).unwrap_or("")
        );
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Walk {
    pages: u64,
    entries: u64,
    bytes: u64,
    last: Option<String>,
}

fn tag_name(i: usize) -> String {
    format!("t{i:05}")
}

/// A content descriptor.
#[derive(Debug, Clone)]
pub struct Desc {
    pub media_type: &'static str,
    pub digest: String,
    pub size: u64,
}

impl Desc {
    fn of(config: &[u8]) -> Desc {
        Desc {
            media_type: OCI_CONFIG,
            digest: sha256_digest(config),
            size: config.len() as u64,
        }
    }

    fn layer(data: &[u8], digest: &str) -> Desc {
        Desc {
            media_type: OCI_LAYER,
            digest: digest.to_string(),
            size: data.len() as u64,
        }
    }

    fn as_layer(&self) -> Desc {
        Desc {
            media_type: OCI_LAYER,
            ..self.clone()
        }
    }
}

/// An OCI image manifest; `note` makes it unique.
pub fn image_manifest(config: &Desc, layers: &[Desc], note: Option<&str>) -> Bytes {
    let d = |d: &Desc| json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": d(config),
        "layers": layers.iter().map(d).collect::<Vec<_>>(),
    });
    if let Some(n) = note {
        m["annotations"] = json!({ "org.example.bench": n });
    }
    Bytes::from(serde_json::to_vec(&m).expect("manifest serializes"))
}

fn config_json(note: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"bench": note}},
    }))
    .expect("config serializes")
}

/// An image ready to push: layers, config, manifest.
pub struct Image {
    layers: Vec<(Bytes, String)>,
    config: (Bytes, String),
    manifest: Bytes,
}

impl Image {
    fn new(layers: Vec<(Bytes, String)>, note: &str) -> Image {
        let config = Bytes::from(config_json(note));
        let cd = Desc::of(&config);
        let descs: Vec<Desc> = layers.iter().map(|(b, d)| Desc::layer(b, d)).collect();
        let manifest = image_manifest(&cd, &descs, None);
        Image {
            layers,
            config: (config, cd.digest),
            manifest,
        }
    }
}

/// Pushes an image as `docker push` does: every layer in parallel (HEAD,
/// then POST/PATCH/PUT if missing), then the config likewise, then the
/// manifest by tag. Returns the bytes uploaded.
pub async fn push_image(client: &Client, repo: &str, image: &Image, tag: &str) -> Result<u64> {
    let mut set = tokio::task::JoinSet::new();
    for (data, digest) in &image.layers {
        let (client, repo, data, digest) = (
            client.clone(),
            repo.to_string(),
            data.clone(),
            digest.clone(),
        );
        set.spawn(async move {
            if client.blob_exists(&repo, &digest).await? {
                return Ok(0);
            }
            client.push_blob_docker(&repo, &data, &digest).await?;
            anyhow::Ok(data.len() as u64)
        });
    }
    let mut bytes = 0;
    while let Some(r) = set.join_next().await {
        bytes += r??;
    }
    let (config, cd) = &image.config;
    if !client.blob_exists(repo, cd).await? {
        client.push_blob_docker(repo, config, cd).await?;
        bytes += config.len() as u64;
    }
    client
        .put_manifest(repo, tag, OCI_MANIFEST, image.manifest.clone())
        .await?;
    Ok(bytes)
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

/// `count` distinct blobs of `base`'s size: each is `base` with its first
/// 32 bytes made random. Returns them with their digests.
pub fn unique_blobs(base: &[u8], count: usize) -> Vec<(Bytes, String)> {
    (0..count)
        .map(|_| {
            let mut v = base.to_vec();
            let n = v.len().min(32);
            rand::rng().fill_bytes(&mut v[..n]);
            let d = sha256_digest(&v);
            (Bytes::from(v), d)
        })
        .collect()
}
