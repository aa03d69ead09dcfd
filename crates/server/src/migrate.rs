//! `berth migrate`: move an installation to other metadata and blob
//! backends, typically an embedded one (SQLite `meta.db` and blob files
//! under a data directory) to PostgreSQL and S3 when a team outgrows one
//! machine.
//!
//! 1. **Survey.** Every table of the source is read in keyset pages through
//!    one read-only snapshot and compared with what the target already
//!    holds. `--dry-run` prints this and stops, having written nothing. A
//!    target holding identity rows of its own (a node started on it created
//!    its own `admin` and signing key) is refused here, before anything is
//!    written: two installations' accounts are never merged.
//! 2. **Blobs.** Each blob the target has no row for streams from the source
//!    store into a target upload, hashed on the way; only when the digest
//!    and size match is the upload committed and then the blob row written
//!    (bytes before metadata, as everywhere in Berth). A mismatch leaves
//!    nothing for that blob on the target and fails the run, naming it.
//! 3. **Metadata.** The identity tables first, with their ids and in
//!    foreign-key order (users, groups, group memberships, projects, project
//!    members, the projects' immutable tag rules, quotas and retention
//!    policies, robots, personal access tokens, signing keys, the audit log;
//!    the `library` project both schemas seed takes the source's settings;
//!    PostgreSQL id sequences are moved past the copied ids). Then
//!    repositories, links, manifests (exact bytes, digests re-verified) with
//!    their references, then tags, in that order. All with `INSERT … ON
//!    CONFLICT DO NOTHING` and the source's timestamps.
//!
//! Every step skips what is already on the target, so a run that was
//! interrupted (even by SIGKILL) is finished by running it again. A blob is
//! staged under an upload id derived from its digest, so the rerun first
//! removes whatever half-copied upload the interrupted run left. Two
//! migrations never write one target at once (an advisory lock on
//! PostgreSQL, a `flock` on a SQLite target). The target should not serve
//! clients before the migration has finished.
//!
//! The source is opened read-only. A SQLite source held open by another
//! process (a running `berth serve`) is refused unless
//! `--allow-live-source`: the copy is then a consistent snapshot, but
//! whatever is pushed after it starts is not migrated.
//!
//! Not moved: upload sessions in progress (clients restart them), the
//! job queue (nodes on the target recreate their schedules), pull
//! statistics, and the retention run history (what runs on the source did;
//! the policies themselves move). Tables this build does not know are
//! reported with their row counts.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_config::{Config, RawConfig, RawMetadata, Storage, redact_url};
use berth_meta::{
    BlobRow, ExportSource, ImportTarget, LinkRow, ManifestRow, RepositoryRow, TagOutcome, TagRow,
};
use berth_oci::{Digest, Hasher};
use berth_storage::BlobStore;
use futures::StreamExt;
use indicatif::{BinaryBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::serve::open_store;

/// Rows per page for the narrow tables.
const PAGE: i64 = 500;
/// Manifests per page: their bodies travel along (up to 4 MiB each).
const MANIFEST_PAGE: i64 = 16;
/// How often plain progress lines are written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub(crate) struct MigrateArgs {
    /// Data directory of the installation to move: its blob files, and its
    /// `meta.db` unless --from-metadata-url says otherwise.
    #[arg(long)]
    from_data_dir: Option<PathBuf>,
    /// Metadata database of the source [default: sqlite://FROM_DATA_DIR/meta.db].
    #[arg(long)]
    from_metadata_url: Option<String>,
    /// TOML file describing the source (`data_dir`, `[metadata]`,
    /// `[storage]`), for a source that is not a plain data directory. The
    /// environment never applies to the source.
    #[arg(long)]
    from_config: Option<PathBuf>,
    /// TOML configuration of the target, as `berth serve` will run with it;
    /// the `BERTH_*` environment applies on top, as for `berth serve`.
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    /// Target metadata database: postgres://user:pass@host:port/db (or
    /// sqlite://PATH); BERTH_METADATA_URL keeps a password off the command
    /// line. Target blob storage comes from the config file or
    /// BERTH_STORAGE_BACKEND and BERTH_S3_*.
    #[arg(long)]
    to_metadata_url: Option<String>,
    /// Target data directory, for a filesystem or SQLite target.
    #[arg(long)]
    to_data_dir: Option<PathBuf>,
    /// Report what would move and what the target already holds; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Blobs copied concurrently.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Read a SQLite source even though another process (a running server)
    /// has it open. The copy is a consistent snapshot; anything written
    /// after it starts is not migrated.
    #[arg(long)]
    allow_live_source: bool,
}

/// Counts for one table: in the source, already on the target, moved now.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    total: u64,
    present: u64,
    moved: u64,
}

#[derive(Debug, Default)]
struct Figures {
    /// The identity tables, in copy order.
    identity: Vec<(&'static str, Tally)>,
    repositories: Tally,
    blobs: Tally,
    blob_bytes: Tally,
    links: Tally,
    manifests: Tally,
    tags: Tally,
    /// Tags the target already has on another manifest: left as they are.
    tag_conflicts: Vec<String>,
    /// Upload sessions in progress on the source (not migrated).
    uploads: u64,
    /// Tables with rows that this build does not know how to migrate.
    unmigrated: Vec<(String, u64)>,
    manifests_verified: u64,
}

pub(crate) async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    init_logging();
    let progress = Progress::new(std::io::stderr().is_terminal());
    let result = migrate(&args, &progress).await;
    // Whatever happened, leave the terminal without a half-drawn bar.
    progress.clear();
    result
}

async fn migrate(args: &MigrateArgs, progress: &Arc<Progress>) -> anyhow::Result<()> {
    let started = Instant::now();
    let (source_cfg, target_cfg) = configs(args)?;
    progress.line(&format!("source: {}", describe(&source_cfg)));
    progress.line(&format!("target: {}", describe(&target_cfg)));

    if let Some(path) = berth_meta::sqlite_path(&source_cfg.metadata_url)
        && let Some(holder) = sqlite_holder(path)?
    {
        if !args.allow_live_source {
            bail!(
                "{holder} has the source database {} open (a running `berth serve`?): stop \
                 it first, or pass --allow-live-source to copy a consistent snapshot that \
                 misses whatever is pushed after the migration starts",
                path.display()
            );
        }
        progress.line(&format!(
            "warning: {holder} has the source database open; copying a snapshot, later \
             pushes to the source will not be migrated"
        ));
    }
    let mut source = ExportSource::open(&source_cfg.metadata_url)
        .await
        .with_context(|| {
            format!(
                "opening the source metadata {} read-only",
                redact_url(&source_cfg.metadata_url)
            )
        })?;
    let source_store = open_source_store(&source_cfg)?;

    if !args.dry_run {
        create_target_dirs(&target_cfg)?;
    }
    let target = if args.dry_run {
        ImportTarget::open_existing(&target_cfg.metadata_url).await
    } else {
        ImportTarget::open(&target_cfg.metadata_url).await.map(Some)
    }
    .with_context(|| {
        format!(
            "opening the target metadata {}",
            redact_url(&target_cfg.metadata_url)
        )
    })?;
    // A dry run touches the target store only to see that it answers, and
    // only where that reads nothing but a listing (S3, GCS, Azure).
    let target_store = if !args.dry_run || !matches!(target_cfg.storage, Storage::Fs) {
        if args.dry_run {
            progress.line("checking that the target store answers (a listing, nothing written)");
        }
        let (store, _) = open_store(&target_cfg)?;
        store
            .ready()
            .await
            .context("the target blob store is not usable")?;
        Some(store)
    } else {
        None
    };

    progress.line("surveying the source and the target");
    let mut figures = survey(&mut source, target.as_ref()).await?;
    for (table, rows) in &figures.unmigrated {
        progress.line(&if table == "trash" {
            trash_warning(*rows)
        } else {
            format!("warning: table {table} holds rows this berth migrate does not move: {rows}")
        });
    }
    if args.dry_run {
        source.close().await;
        if let Some(t) = target {
            t.close().await;
        }
        print_dry_run(&figures);
        return Ok(());
    }
    let target = target.expect("opened for writing");
    let target_store = target_store.expect("opened for writing");

    let blob_started = Instant::now();
    let failures = copy_blobs(
        &mut source,
        &target,
        source_store.as_ref(),
        target_store.as_ref(),
        usize::from(args.jobs),
        progress,
        &mut figures,
    )
    .await?;
    let blob_elapsed = blob_started.elapsed();
    if !failures.is_empty() {
        let mut msg = format!(
            "{} blob(s) could not be copied; nothing was written on the target for them and no \
             metadata was migrated (the {} blob(s) copied are kept and skipped by the next run):",
            failures.len(),
            figures.blobs.moved,
        );
        for f in &failures {
            write!(msg, "\n  {f}").expect("writing to a String");
        }
        bail!(msg);
    }

    copy_metadata(&mut source, &target, progress, &mut figures).await?;
    source.close().await;
    target.close().await;
    progress.clear();
    print_summary(&figures, started.elapsed(), blob_elapsed);
    Ok(())
}

fn init_logging() {
    // The storage and database libraries log through tracing; keep their
    // warnings, and leave the progress display alone otherwise.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The source's and the target's configurations.
fn configs(args: &MigrateArgs) -> anyhow::Result<(Config, Config)> {
    if args.from_data_dir.is_none() && args.from_config.is_none() {
        bail!("say what to migrate: --from-data-dir DIR (or --from-config FILE)");
    }
    let source_raw = RawConfig {
        data_dir: args.from_data_dir.clone(),
        metadata: args
            .from_metadata_url
            .clone()
            .map(|url| RawMetadata { url: Some(url) }),
        ..RawConfig::default()
    };
    let source = berth_config::load(args.from_config.as_deref(), |_| None, source_raw)
        .context("the source configuration")?;
    if matches!(source.storage, Storage::Fs) && !source.data_dir.join("blobs").is_dir() {
        bail!(
            "{} is not a Berth data directory (it has no blobs/ directory)",
            source.data_dir.display()
        );
    }

    let env = |k: &str| std::env::var(k).ok();
    let target_named = args.config.is_some()
        || args.to_metadata_url.is_some()
        || args.to_data_dir.is_some()
        || [
            "BERTH_METADATA_URL",
            "BERTH_STORAGE_BACKEND",
            "BERTH_DATA_DIR",
        ]
        .iter()
        .any(|k| env(k).is_some());
    if !target_named {
        bail!(
            "say where to migrate to: --to-metadata-url postgres://… with the target storage in \
             BERTH_STORAGE_BACKEND=s3 and BERTH_S3_* (or a --config file), or --to-data-dir DIR"
        );
    }
    let target_raw = RawConfig {
        data_dir: args.to_data_dir.clone(),
        metadata: args
            .to_metadata_url
            .clone()
            .map(|url| RawMetadata { url: Some(url) }),
        ..RawConfig::default()
    };
    let target = berth_config::load(args.config.as_deref(), env, target_raw)
        .context("the target configuration")?;

    if same_database(&source.metadata_url, &target.metadata_url) {
        bail!(
            "the source and the target are the same database ({})",
            redact_url(&source.metadata_url)
        );
    }
    let same_store = match (&source.storage, &target.storage) {
        (Storage::Fs, Storage::Fs) => same_path(&source.data_dir, &target.data_dir),
        (Storage::S3(a), Storage::S3(b)) => {
            a.endpoint == b.endpoint
                && a.bucket == b.bucket
                && a.prefix.trim_matches('/') == b.prefix.trim_matches('/')
        }
        (Storage::Gcs(a), Storage::Gcs(b)) => {
            a.bucket == b.bucket && a.prefix.trim_matches('/') == b.prefix.trim_matches('/')
        }
        (Storage::Azure(a), Storage::Azure(b)) => {
            a.account == b.account
                && a.endpoint == b.endpoint
                && a.container == b.container
                && a.prefix.trim_matches('/') == b.prefix.trim_matches('/')
        }
        _ => false,
    };
    if same_store {
        bail!("the source and the target are the same blob store");
    }
    Ok((source, target))
}

/// The directories an embedded target lives in, as `berth serve` creates them.
fn create_target_dirs(config: &Config) -> anyhow::Result<()> {
    let mut dirs = Vec::new();
    if matches!(config.storage, Storage::Fs) {
        dirs.push(config.data_dir.clone());
    }
    if let Some(parent) = berth_meta::sqlite_path(&config.metadata_url)
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
    {
        dirs.push(parent.to_path_buf());
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the target directory {}", dir.display()))?;
    }
    Ok(())
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn same_database(a: &str, b: &str) -> bool {
    match (berth_meta::sqlite_path(a), berth_meta::sqlite_path(b)) {
        (Some(a), Some(b)) => same_path(a, b),
        _ => a == b,
    }
}

fn describe(config: &Config) -> String {
    let blobs = match &config.storage {
        Storage::Fs => format!("blob files under {}", config.data_dir.display()),
        Storage::S3(s3) => format!(
            "blobs in S3 bucket {:?} prefix {:?}{}",
            s3.bucket,
            s3.prefix,
            s3.endpoint
                .as_deref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default()
        ),
        Storage::Gcs(gcs) => format!(
            "blobs in GCS bucket {:?} prefix {:?}",
            gcs.bucket, gcs.prefix
        ),
        Storage::Azure(azure) => format!(
            "blobs in Azure container {:?} of account {:?} prefix {:?}{}",
            azure.container,
            azure.account,
            azure.prefix,
            azure
                .endpoint
                .as_deref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default()
        ),
    };
    format!("metadata {}, {blobs}", redact_url(&config.metadata_url))
}

/// Who holds a lock on the SQLite file (every open connection does, SQLite
/// in WAL mode keeping a shared lock on it), asked without taking any lock.
/// Must run before this process opens the database itself.
fn sqlite_holder(db: &Path) -> anyhow::Result<Option<String>> {
    use rustix::process::{Flock, FlockOffsetType, FlockType, fcntl_getlk};
    let file = match std::fs::File::open(db) {
        Ok(f) => f,
        // Opening the source reports a missing file with more context.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", db.display())),
    };
    let whole_file = Flock {
        start: 0,
        length: 0,
        pid: None,
        typ: FlockType::WriteLock,
        offset_type: FlockOffsetType::Set,
    };
    let holder = fcntl_getlk(&file, &whole_file)
        .with_context(|| format!("checking the locks on {}", db.display()))?;
    Ok(holder.map(|lock| match lock.pid {
        Some(pid) => format!("process {}", pid.as_raw_nonzero()),
        None => "another process".to_string(),
    }))
}

fn open_source_store(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    let (store, _) = open_store(config).context("opening the source blob store")?;
    Ok(store)
}

/// Pages through every table of the source and asks the target (when it has
/// a schema) which rows it already holds. Manifest digests are checked here,
/// so a corrupt manifest fails the run before anything is written.
async fn survey(
    source: &mut ExportSource,
    target: Option<&ImportTarget>,
) -> anyhow::Result<Figures> {
    // Identity first: a target with accounts of its own is refused before
    // anything else is looked at (or written).
    let (identity, conflicts) = source.identity_survey(target).await?;
    if !conflicts.is_empty() {
        let mut msg = String::from(
            "the target database already holds identity rows (accounts, keys, events) that are \
             not this source's; nothing was copied:",
        );
        for c in &conflicts {
            write!(msg, "\n  {c}").expect("writing to a String");
        }
        msg.push_str(
            "\nA node was probably started on the target before the migration and created its \
             own admin account and signing key; berth migrate never merges two installations' \
             accounts. Migrate into a fresh, empty database (create a new one, run berth migrate \
             into it, and start the nodes on it only afterwards).",
        );
        bail!(msg);
    }
    let counts = source.counts().await?;
    let mut f = Figures {
        identity: identity
            .into_iter()
            .map(|(table, total, present)| {
                (
                    table,
                    Tally {
                        total,
                        present,
                        moved: 0,
                    },
                )
            })
            .collect(),
        uploads: counts.uploads,
        unmigrated: source
            .other_tables()
            .await?
            .into_iter()
            .filter(|(_, rows)| *rows > 0)
            .collect(),
        ..Figures::default()
    };

    let mut after: Option<String> = None;
    loop {
        let page = source.repositories(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        let present = match target {
            Some(t) => {
                t.repositories_present(&page.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
                    .await?
            }
            None => Default::default(),
        };
        f.repositories.total += page.len() as u64;
        f.repositories.present += present.len() as u64;
    }

    let mut after: Option<String> = None;
    loop {
        let page = source.blobs(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        let present = match target {
            Some(t) => {
                t.blobs_present(&page.iter().map(|b| b.digest.as_str()).collect::<Vec<_>>())
                    .await?
            }
            None => Default::default(),
        };
        for b in &page {
            f.blobs.total += 1;
            f.blob_bytes.total += b.size as u64;
            if present.contains_key(&b.digest) {
                f.blobs.present += 1;
                f.blob_bytes.present += b.size as u64;
            }
        }
    }

    let mut after: Option<(String, String)> = None;
    loop {
        let key = after.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        let page = source.links(key, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.repo.clone(), last.digest.clone()));
        let keys: Vec<_> = page
            .iter()
            .map(|l| (l.repo.as_str(), l.digest.as_str()))
            .collect();
        let present = match target {
            Some(t) => t.links_present(&keys).await?.len(),
            None => 0,
        };
        f.links.total += page.len() as u64;
        f.links.present += present as u64;
    }

    let mut after: Option<(String, String)> = None;
    loop {
        let key = after.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        let page = source.manifests(key, MANIFEST_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.repo.clone(), last.digest.clone()));
        for m in &page {
            verify_manifest(m)?;
        }
        f.manifests_verified += page.len() as u64;
        let keys: Vec<_> = page
            .iter()
            .map(|m| (m.repo.as_str(), m.digest.as_str()))
            .collect();
        let present = match target {
            Some(t) => t.manifests_present(&keys).await?.len(),
            None => 0,
        };
        f.manifests.total += page.len() as u64;
        f.manifests.present += present as u64;
    }

    let mut after: Option<(String, String)> = None;
    loop {
        let key = after.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        let page = source.tags(key, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.repo.clone(), last.name.clone()));
        let keys: Vec<_> = page
            .iter()
            .map(|t| (t.repo.as_str(), t.name.as_str()))
            .collect();
        let present = match target {
            Some(t) => t.tags_present(&keys).await?,
            None => Default::default(),
        };
        for t in &page {
            f.tags.total += 1;
            match present.get(&(t.repo.clone(), t.name.clone())) {
                Some(d) if *d == t.digest => f.tags.present += 1,
                Some(d) => {
                    f.tags.present += 1;
                    f.tag_conflicts.push(conflict_text(t, d));
                }
                None => {}
            }
        }
    }
    Ok(f)
}

fn conflict_text(t: &TagRow, target_digest: &str) -> String {
    format!(
        "{}:{} is {} on the target, {} on the source: kept as on the target",
        t.repo, t.name, target_digest, t.digest
    )
}

/// The manifest's bytes hash to its digest and its size column is theirs.
fn verify_manifest(m: &ManifestRow) -> anyhow::Result<()> {
    let digest = Digest::parse(&m.digest).with_context(|| {
        format!(
            "manifest {}@{}: the source holds an invalid digest",
            m.repo, m.digest
        )
    })?;
    let actual = Digest::of(digest.algorithm(), &m.body);
    if actual != digest || m.size != m.body.len() as i64 {
        bail!(
            "manifest {}@{}: the source's bytes hash to {actual} ({} bytes, recorded size {}); \
             the source is corrupt, nothing was migrated",
            m.repo,
            m.digest,
            m.body.len(),
            m.size
        );
    }
    Ok(())
}

/// Why one blob did not copy.
enum BlobFailure {
    /// This blob's source is bad (corrupt, missing, unreadable): report it
    /// and go on with the others.
    Source(String),
    /// The target or the database failed: stop.
    Fatal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for BlobFailure {
    fn from(e: E) -> Self {
        BlobFailure::Fatal(e.into())
    }
}

/// The upload id a blob is staged under on the target: fixed per digest, so
/// a rerun first clears what an interrupted run left there.
fn staging_id(digest: &Digest) -> String {
    // valid_upload_id: at most 64 characters of [A-Za-z0-9-].
    let hex = digest.hex();
    format!("migrate-{}", &hex[..hex.len().min(56)])
}

/// Copies every blob the target has no row for; returns the blobs that
/// failed because of their source (the run stops at the first target error).
async fn copy_blobs(
    source: &mut ExportSource,
    target: &ImportTarget,
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    jobs: usize,
    progress: &Arc<Progress>,
    figures: &mut Figures,
) -> anyhow::Result<Vec<String>> {
    let to_move = figures.blobs.total - figures.blobs.present;
    let bytes_to_move = figures.blob_bytes.total - figures.blob_bytes.present;
    progress.start_blobs(to_move, bytes_to_move);

    let (tx, mut rx) = tokio::sync::mpsc::channel::<BlobRow>(jobs * 2);
    let failures = Mutex::new(Vec::new());
    // Pages of the source's blob rows; those the target lacks go to the copiers.
    let producer = async {
        let mut after: Option<String> = None;
        loop {
            let page = source.blobs(after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let present = target
                .blobs_present(&page.iter().map(|b| b.digest.as_str()).collect::<Vec<_>>())
                .await?;
            for b in page {
                match present.get(&b.digest) {
                    Some(&size) if size == b.size => {}
                    Some(&size) => failures.lock().expect("not poisoned").push(format!(
                        "{}: the target already has it with {size} bytes, the source says {}",
                        b.digest, b.size
                    )),
                    None => {
                        if tx.send(b).await.is_err() {
                            // The copiers stopped on an error they report.
                            return Ok(());
                        }
                    }
                }
            }
        }
        drop(tx);
        anyhow::Ok(())
    };
    let copiers = async {
        // Owning the receiver: when the copiers stop, the producer's sends fail.
        let rows = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut copies = rows
            .map(|row| copy_blob(row, from, to, target, progress))
            .buffer_unordered(jobs);
        let (mut copied, mut bytes) = (0u64, 0u64);
        while let Some(result) = copies.next().await {
            match result {
                Ok(size) => {
                    copied += 1;
                    bytes += size;
                }
                Err(BlobFailure::Source(msg)) => {
                    progress.line(&format!("error: {msg}"));
                    failures.lock().expect("not poisoned").push(msg);
                }
                Err(BlobFailure::Fatal(e)) => return Err(e),
            }
        }
        anyhow::Ok((copied, bytes))
    };
    let (produced, copied) = futures::join!(producer, copiers);
    let (copied, bytes) = copied?;
    produced?;
    figures.blobs.moved = copied;
    figures.blob_bytes.moved = bytes;
    progress.finish_blobs();
    Ok(failures.into_inner().expect("not poisoned"))
}

/// Streams one blob from the source into the target, verifying it on arrival,
/// then records it. Returns its size.
async fn copy_blob(
    row: BlobRow,
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    target: &ImportTarget,
    progress: &Progress,
) -> Result<u64, BlobFailure> {
    let digest = Digest::parse(&row.digest).map_err(|e| {
        BlobFailure::Source(format!(
            "{}: the source database names an invalid digest: {e}",
            row.digest
        ))
    })?;
    let id = staging_id(&digest);
    to.upload_abort(&id)
        .await
        .with_context(|| format!("{digest}: clearing the target's staging upload {id}"))?;
    let stream = match from.get(&digest, None).await {
        Ok(s) => s,
        Err(berth_storage::Error::NotFound) => {
            return Err(BlobFailure::Source(format!(
                "{digest}: the source database lists this blob but the source store has no bytes for it"
            )));
        }
        Err(e) => {
            return Err(BlobFailure::Source(format!(
                "{digest}: reading the source: {e}"
            )));
        }
    };
    // Bytes of this blob so far, and of the whole run (for the display).
    let streamed = Arc::new(AtomicU64::new(0));
    let (this_blob, all_blobs) = (streamed.clone(), progress.bytes.clone());
    let stream = stream
        .inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                this_blob.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                all_blobs.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
        })
        .boxed();
    to.upload_start(&id)
        .await
        .with_context(|| format!("{digest}: starting the target upload"))?;
    let appended = to
        .upload_append(&id, 0, stream, Hasher::new(digest.algorithm()))
        .await;
    let (size, hasher) = match appended {
        Ok(done) => done,
        Err(berth_storage::Error::Body(e)) => {
            let msg = format!("{digest}: reading the source failed midway: {e}");
            return Err(discard(to, &id, &digest, &streamed, progress, msg).await);
        }
        Err(e) => {
            let _ = to.upload_abort(&id).await;
            return Err(BlobFailure::Fatal(
                anyhow::Error::new(e).context(format!("{digest}: writing to the target")),
            ));
        }
    };
    let actual = hasher.finish();
    if actual != digest || size != row.size as u64 {
        let msg = format!(
            "{digest}: the source's bytes do not match their digest: they hash to {actual} \
             ({size} bytes; the source database says {} bytes); the source is corrupt, nothing \
             was written on the target for this blob",
            row.size
        );
        return Err(discard(to, &id, &digest, &streamed, progress, msg).await);
    }
    to.upload_commit(&id, &digest)
        .await
        .with_context(|| format!("{digest}: committing on the target"))?;
    match to.stat(&digest).await {
        Ok(Some(stored)) if stored == size => {}
        other => {
            return Err(BlobFailure::Fatal(anyhow::anyhow!(
                "{digest}: after the commit the target store reports {other:?} instead of {size} bytes"
            )));
        }
    }
    let mut tx = target.begin().await?;
    tx.insert_blob(&row).await?;
    tx.commit().await?;
    progress.blob_done();
    Ok(size)
}

/// Removes the staging upload of a blob that failed because of its source.
async fn discard(
    to: &dyn BlobStore,
    id: &str,
    digest: &Digest,
    streamed: &AtomicU64,
    progress: &Progress,
    msg: String,
) -> BlobFailure {
    // Those bytes did not move after all.
    progress
        .bytes
        .fetch_sub(streamed.load(Ordering::Relaxed), Ordering::Relaxed);
    match to.upload_abort(id).await {
        Ok(()) => BlobFailure::Source(msg),
        Err(e) => BlobFailure::Fatal(anyhow::Error::new(e).context(format!(
            "{digest}: removing the target's staging upload {id}"
        ))),
    }
}

async fn copy_metadata(
    source: &mut ExportSource,
    target: &ImportTarget,
    progress: &Progress,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let rows = f.repositories.total
        + f.links.total
        + f.manifests.total
        + f.tags.total
        + f.identity.iter().map(|(_, t)| t.total).sum::<u64>();
    progress.start_rows(rows);

    // Identity rows with their ids, every table after those it points to.
    for (table, tally) in &mut f.identity {
        progress.phase(table);
        let (seen, written) = source
            .copy_identity_table(target, table, PAGE, |n| progress.rows(n))
            .await
            .with_context(|| format!("copying {table}"))?;
        tally.moved = written;
        tally.present = seen - written;
    }

    progress.phase("repositories");
    let mut after: Option<String> = None;
    let mut seen = 0;
    loop {
        let page: Vec<RepositoryRow> = source.repositories(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        let mut tx = target.begin().await?;
        for r in &page {
            if tx.insert_repository(r).await? {
                f.repositories.moved += 1;
            }
        }
        tx.commit().await?;
        seen += page.len() as u64;
        progress.rows(page.len() as u64);
    }
    f.repositories.present = seen - f.repositories.moved;

    progress.phase("repository links");
    let mut after: Option<(String, String)> = None;
    let mut seen = 0;
    loop {
        let key = after.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        let page: Vec<LinkRow> = source.links(key, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.repo.clone(), last.digest.clone()));
        let mut tx = target.begin().await?;
        for l in &page {
            if tx.insert_link(l).await? {
                f.links.moved += 1;
            }
        }
        tx.commit().await?;
        seen += page.len() as u64;
        progress.rows(page.len() as u64);
    }
    f.links.present = seen - f.links.moved;

    // Manifests after every blob and link they reference, each with its
    // references in the same transaction.
    progress.phase("manifests");
    let mut after: Option<(String, String)> = None;
    let mut seen = 0;
    loop {
        let key = after.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        let page = source.manifests(key, MANIFEST_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.repo.clone(), last.digest.clone()));
        let mut with_refs = Vec::with_capacity(page.len());
        for m in page {
            verify_manifest(&m)?;
            let refs = source.manifest_refs(&m.repo, &m.digest).await?;
            with_refs.push((m, refs));
        }
        let mut tx = target.begin().await?;
        for (m, refs) in &with_refs {
            if tx.insert_manifest(m, refs).await? {
                f.manifests.moved += 1;
            }
        }
        tx.commit().await?;
        seen += with_refs.len() as u64;
        progress.rows(with_refs.len() as u64);
    }
    f.manifests.present = seen - f.manifests.moved;

    // Tags last: a tag appears on the target only once its manifest is there.
    progress.phase("tags");
    let mut after: Option<(String, String)> = None;
    let mut seen = 0;
    f.tag_conflicts.clear();
    loop {
        let key = after.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        let page: Vec<TagRow> = source.tags(key, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.repo.clone(), last.name.clone()));
        let mut tx = target.begin().await?;
        for t in &page {
            match tx.insert_tag(t).await? {
                TagOutcome::Inserted => f.tags.moved += 1,
                TagOutcome::Present => {}
                TagOutcome::Conflict(d) => {
                    let text = conflict_text(t, &d);
                    progress.line(&format!("warning: tag {text}"));
                    f.tag_conflicts.push(text);
                }
            }
        }
        tx.commit().await?;
        seen += page.len() as u64;
        progress.rows(page.len() as u64);
    }
    f.tags.present = seen - f.tags.moved;
    progress.finish_rows();
    Ok(())
}

fn table(figures: &Figures, last_column: &str, moved: impl Fn(&Tally) -> u64) -> String {
    let mut out = format!(
        "{:<24}{:>14}{:>19}{:>14}\n",
        "", "source", "already on target", last_column
    );
    let registry = [
        ("repositories", &figures.repositories),
        ("blobs", &figures.blobs),
        ("blob bytes", &figures.blob_bytes),
        ("repository links", &figures.links),
        ("manifests", &figures.manifests),
        ("tags", &figures.tags),
    ];
    let identity = figures.identity.iter().map(|(name, t)| (*name, t));
    for (name, t) in registry.into_iter().chain(identity) {
        writeln!(
            out,
            "{name:<24}{:>14}{:>19}{:>14}",
            t.total,
            t.present,
            moved(t)
        )
        .expect("writing to a String");
    }
    out
}

fn print_dry_run(f: &Figures) {
    let mut out = String::from("berth migrate --dry-run: nothing was written\n");
    out += &table(f, "to move", |t| t.total - t.present);
    let blobs = f.blobs.total - f.blobs.present;
    let bytes = f.blob_bytes.total - f.blob_bytes.present;
    writeln!(
        out,
        "would move: {} artifacts (manifests: images, indexes, referrers), {blobs} blobs ({}, {bytes} bytes), {} tags",
        f.manifests.total - f.manifests.present,
        BinaryBytes(bytes),
        f.tags.total - f.tags.present,
    )
    .expect("writing to a String");
    writeln!(
        out,
        "would move identity rows: {}",
        identity_list(f, |t| t.total - t.present)
    )
    .expect("writing to a String");
    writeln!(
        out,
        "manifest digests verified in the source: {}",
        f.manifests_verified
    )
    .expect("writing to a String");
    tail(&mut out, f);
    print_out(&out);
}

fn print_summary(f: &Figures, elapsed: Duration, blob_elapsed: Duration) {
    let mut out = format!("berth migrate: complete in {:.2}s\n", elapsed.as_secs_f64());
    out += &table(f, "moved", |t| t.moved);
    let rate = f.blob_bytes.moved as f64 / blob_elapsed.as_secs_f64().max(0.001);
    writeln!(
        out,
        "artifacts moved: {} (manifests: images, indexes, referrers) in {} repositories, {} tags",
        f.manifests.moved, f.repositories.total, f.tags.moved
    )
    .expect("writing to a String");
    writeln!(
        out,
        "identity rows moved (ids kept): {}",
        identity_list(f, |t| t.moved)
    )
    .expect("writing to a String");
    writeln!(
        out,
        "blobs copied and verified: {} ({}, {} bytes, {}/s)",
        f.blobs.moved,
        BinaryBytes(f.blob_bytes.moved),
        f.blob_bytes.moved,
        BinaryBytes(rate as u64)
    )
    .expect("writing to a String");
    writeln!(
        out,
        "digests verified: {} blobs on arrival, {} manifests",
        f.blobs.moved, f.manifests_verified
    )
    .expect("writing to a String");
    writeln!(
        out,
        "skipped, already on the target: {} repositories, {} blobs ({} bytes), {} repository links, {} manifests, {} tags",
        f.repositories.present,
        f.blobs.present,
        f.blob_bytes.present,
        f.links.present,
        f.manifests.present,
        f.tags.present
    )
    .expect("writing to a String");
    writeln!(
        out,
        "identity rows skipped, already on the target: {}",
        identity_list(f, |t| t.present)
    )
    .expect("writing to a String");
    tail(&mut out, f);
    writeln!(out, "elapsed: {:.2}s", elapsed.as_secs_f64()).expect("writing to a String");
    print_out(&out);
}

/// `3 users, 1 groups, …`: one figure per identity table.
fn identity_list(f: &Figures, figure: impl Fn(&Tally) -> u64) -> String {
    f.identity
        .iter()
        .map(|(table, t)| format!("{} {table}", figure(t)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn tail(out: &mut String, f: &Figures) {
    writeln!(
        out,
        "tags kept as they are on the target (pointing elsewhere): {}",
        f.tag_conflicts.len()
    )
    .expect("writing to a String");
    for c in &f.tag_conflicts {
        writeln!(out, "  {c}").expect("writing to a String");
    }
    writeln!(
        out,
        "upload sessions in progress on the source (not migrated): {}",
        f.uploads
    )
    .expect("writing to a String");
    let (trash, unknown): (Vec<_>, Vec<_>) = f.unmigrated.iter().partition(|(t, _)| t == "trash");
    for (_, n) in trash {
        writeln!(out, "{}", trash_warning(*n)).expect("writing to a String");
    }
    if !unknown.is_empty() {
        let tables: Vec<String> = unknown
            .iter()
            .map(|(t, n)| format!("{t} (rows: {n})"))
            .collect();
        writeln!(
            out,
            "warning: not moved, this berth migrate does not know these tables: {}",
            tables.join(", ")
        )
        .expect("writing to a String");
    }
}

/// Trash entries stay behind: their blobs are not copied (see
/// `NOT_MIGRATED_TABLES` in berth-meta), so they could not be restored.
fn trash_warning(rows: u64) -> String {
    format!(
        "warning: not moved: {rows} deleted tag(s)/manifest(s) in the source's trash \
         (their restore window ends with the migration); restore what you need on the \
         source before migrating"
    )
}

fn print_out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Progress on stderr: bars on a terminal, a plain line every few seconds
/// otherwise (CI logs). Shared with a ticker task that redraws it.
struct Progress {
    /// Blob bytes streamed so far; copies add to it as bytes flow.
    bytes: Arc<AtomicU64>,
    terminal: bool,
    bar: Mutex<Option<ProgressBar>>,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    last_line: Mutex<Instant>,
    blobs_started: Mutex<Instant>,
    blobs_total: AtomicU64,
    bytes_total: AtomicU64,
    blobs_done: AtomicU64,
    rows_total: AtomicU64,
    rows_done: AtomicU64,
    phase: Mutex<&'static str>,
}

impl Progress {
    fn new(terminal: bool) -> Arc<Progress> {
        Arc::new(Progress {
            bytes: Arc::new(AtomicU64::new(0)),
            terminal,
            bar: Mutex::new(None),
            ticker: Mutex::new(None),
            last_line: Mutex::new(Instant::now()),
            blobs_started: Mutex::new(Instant::now()),
            blobs_total: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            blobs_done: AtomicU64::new(0),
            rows_total: AtomicU64::new(0),
            rows_done: AtomicU64::new(0),
            phase: Mutex::new(""),
        })
    }

    /// A line of its own, above the bar if there is one.
    fn line(&self, text: &str) {
        match self.bar.lock().expect("not poisoned").as_ref() {
            Some(b) => b.println(format!("berth migrate: {text}")),
            None => eprintln!("berth migrate: {text}"),
        }
    }

    fn set_bar(&self, bar: Option<ProgressBar>) {
        let mut slot = self.bar.lock().expect("not poisoned");
        if let Some(old) = slot.take() {
            old.finish_and_clear();
        }
        *slot = bar;
    }

    fn start_blobs(self: &Arc<Self>, blobs: u64, bytes: u64) {
        self.blobs_total.store(blobs, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
        *self.blobs_started.lock().expect("not poisoned") = Instant::now();
        *self.last_line.lock().expect("not poisoned") = Instant::now();
        self.line(&format!(
            "copying {blobs} blobs ({}, {bytes} bytes)",
            BinaryBytes(bytes)
        ));
        if self.terminal {
            let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} \
                     {binary_bytes_per_sec} eta {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix("blobs");
            bar.set_message(format!("0/{blobs} blobs"));
            self.set_bar(Some(bar));
        }
        let me = self.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                me.refresh();
            }
        });
        *self.ticker.lock().expect("not poisoned") = Some(ticker);
    }

    fn blob_done(&self) {
        self.blobs_done.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }

    fn refresh(&self) {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let done = self.blobs_done.load(Ordering::Relaxed);
        let total = self.blobs_total.load(Ordering::Relaxed);
        if let Some(bar) = self.bar.lock().expect("not poisoned").as_ref() {
            bar.set_position(bytes);
            bar.set_message(format!("{done}/{total} blobs"));
            return;
        }
        self.plain(|| {
            let bytes_total = self.bytes_total.load(Ordering::Relaxed);
            let secs = self
                .blobs_started
                .lock()
                .expect("not poisoned")
                .elapsed()
                .as_secs_f64()
                .max(0.001);
            let percent = if bytes_total == 0 {
                100.0
            } else {
                bytes as f64 * 100.0 / bytes_total as f64
            };
            format!(
                "blobs {done}/{total}, {} of {} ({percent:.0}%), {}/s",
                BinaryBytes(bytes),
                BinaryBytes(bytes_total),
                BinaryBytes((bytes as f64 / secs) as u64)
            )
        });
    }

    /// Writes a plain line if the last one is old enough.
    fn plain(&self, text: impl FnOnce() -> String) {
        let mut last = self.last_line.lock().expect("not poisoned");
        if last.elapsed() >= PLAIN_EVERY {
            *last = Instant::now();
            eprintln!("berth migrate: {}", text());
        }
    }

    fn finish_blobs(&self) {
        if let Some(ticker) = self.ticker.lock().expect("not poisoned").take() {
            ticker.abort();
        }
        self.set_bar(None);
        self.line(&format!(
            "blobs done: {} copied and verified, {}",
            self.blobs_done.load(Ordering::Relaxed),
            BinaryBytes(self.bytes.load(Ordering::Relaxed))
        ));
    }

    fn start_rows(&self, rows: u64) {
        self.rows_total.store(rows, Ordering::Relaxed);
        self.rows_done.store(0, Ordering::Relaxed);
        if self.terminal {
            let bar = ProgressBar::with_draw_target(Some(rows), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} {wide_bar} {pos}/{len} rows {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix("metadata");
            self.set_bar(Some(bar));
        }
    }

    fn phase(&self, name: &'static str) {
        *self.phase.lock().expect("not poisoned") = name;
        match self.bar.lock().expect("not poisoned").as_ref() {
            Some(bar) => bar.set_message(name),
            None => eprintln!("berth migrate: metadata: {name}"),
        }
    }

    fn rows(&self, n: u64) {
        let done = self.rows_done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = self.bar.lock().expect("not poisoned").as_ref() {
            bar.set_position(done);
            return;
        }
        let total = self.rows_total.load(Ordering::Relaxed);
        let phase = *self.phase.lock().expect("not poisoned");
        self.plain(|| format!("metadata: {phase}, {done}/{total} rows"));
    }

    fn finish_rows(&self) {
        self.set_bar(None);
        self.line(&format!(
            "metadata done: {} rows",
            self.rows_done.load(Ordering::Relaxed)
        ));
    }

    fn clear(&self) {
        if let Some(ticker) = self.ticker.lock().expect("not poisoned").take() {
            ticker.abort();
        }
        self.set_bar(None);
    }
}
