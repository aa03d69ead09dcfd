//! `berth gc`: one garbage collection run from the command line, against
//! the configured database and blob store (opened as `berth serve` opens
//! them). Safe while servers run: it takes the same per-digest locks
//! (DESIGN.md data rule 5, `core/src/gc.rs`). Prints the report and
//! records it in the run history like a scheduled or API run.

use std::path::PathBuf;

use anyhow::Context;
use berth_config::{Config, RawConfig, redact_url};
use berth_core::{GcOptions, GcReport, Registry};
use berth_meta::MetaStore;

#[derive(clap::Args)]
pub(crate) struct GcArgs {
    /// Count what would be collected; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// TOML configuration file (the server's).
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./berth-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Metadata database: sqlite://PATH or postgres://… [default: sqlite://DATA_DIR/meta.db].
    #[arg(long)]
    metadata_url: Option<String>,
}

/// The GC settings of a configuration.
pub(crate) fn options(config: &Config) -> GcOptions {
    GcOptions {
        grace: config.gc.grace,
        restore_window: config.gc.restore_window,
        delete_untagged: config.gc.delete_untagged,
        orphan_batch: config.gc.orphan_batch,
    }
}

pub(crate) async fn run(args: GcArgs) -> anyhow::Result<()> {
    let raw = RawConfig {
        data_dir: args.data_dir.clone(),
        metadata: args
            .metadata_url
            .clone()
            .map(|url| berth_config::RawMetadata { url: Some(url) }),
        ..RawConfig::default()
    };
    let config = berth_config::load(args.config.as_deref(), |k| std::env::var(k).ok(), raw)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if matches!(config.storage, berth_config::Storage::Fs)
        && !config.data_dir.join("blobs").is_dir()
    {
        anyhow::bail!(
            "{} is not a Berth data directory (it has no blobs/ directory)",
            config.data_dir.display()
        );
    }
    let (store, options) = crate::serve::open_store(&config)?;
    let meta = MetaStore::open(&config.metadata_url)
        .await
        .with_context(|| {
            format!(
                "opening the metadata database {}",
                redact_url(&config.metadata_url)
            )
        })?;
    let registry = Registry::with_options(meta, store, options);
    let report = registry.collect_garbage(args.dry_run, "cli").await;
    registry.close().await;
    let report = report.context("garbage collection")?;
    if args.json {
        println!("{}", json(&report));
    } else {
        print!("{}", text(&report));
    }
    if let Some(error) = &report.error {
        anyhow::bail!("garbage collection stopped early: {error}");
    }
    Ok(())
}

fn json(r: &GcReport) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "trigger": r.trigger,
        "dry_run": r.dry_run,
        "duration_ms": r.duration().as_millis() as u64,
        "blobs_deleted": r.blobs_deleted,
        "bytes_reclaimed": r.bytes_reclaimed,
        "manifests_deleted": r.manifests_deleted,
        "links_removed": r.links_removed,
        "trash_purged": r.trash_purged,
        "orphans_deleted": r.orphans_deleted,
        "orphan_bytes": r.orphan_bytes,
        "error": r.error,
    })
}

fn text(r: &GcReport) -> String {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    format!(
        "garbage collection run {} ({}) in {} ms:\n  \
         blobs {verb}:        {} ({} bytes)\n  \
         manifests {verb}:    {}\n  \
         links removed:        {}\n  \
         trash entries purged: {}\n  \
         orphaned objects:     {} ({} bytes)\n",
        r.id,
        if r.dry_run { "dry run" } else { "run" },
        r.duration().as_millis(),
        r.blobs_deleted,
        r.bytes_reclaimed,
        r.manifests_deleted,
        r.links_removed,
        r.trash_purged,
        r.orphans_deleted,
        r.orphan_bytes,
    )
}
