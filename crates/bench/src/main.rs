//! `berth-bench`: see the crate documentation and scripts/bench.sh.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_bench::client::Client;
use berth_bench::scenarios::{Ctx, GROUPS, Sizes};
use berth_bench::stats::ServerProbe;
use berth_bench::{limits, parse_duration, report, startup};
use clap::{Args, Parser, Subcommand};

/// Benchmarks an OCI Distribution registry over plain HTTP. Each scenario
/// prints one JSON line on stdout; progress goes to stderr. Exits 1 if any
/// scenario had errors.
#[derive(Parser)]
#[command(name = "berth-bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Registry base URL.
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    url: String,
    /// User for basic auth or the token endpoint.
    #[arg(long)]
    user: Option<String>,
    #[arg(long, env = "BERTH_BENCH_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The server's pid: adds its CPU time and peak RSS to each line.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Registry name written in each line.
    #[arg(long, default_value = "registry")]
    label: String,
    /// `all`, or a comma-separated list of: push-mono, push-chunked, pull,
    /// small-blobs, manifest-put, manifest-get, tags-list, catalog,
    /// image-push, tiny-images.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// How long each fixed-duration scenario runs (manifests, listings).
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Small sizes (8 MiB blobs, 1,000 tags...) to check things work.
    #[arg(long)]
    quick: bool,
    /// Repository name prefix.
    #[arg(long, default_value = "bench")]
    prefix: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// The scenario groups, one per line, in the order `all` runs them.
    Scenarios,
    /// Medians of JSON-lines files -> markdown (docs/PERFORMANCE.md).
    Report {
        files: Vec<PathBuf>,
        /// File to write (the part between the bench markers is replaced).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The registry compared (numerator of the ratio).
        #[arg(long, default_value = "berth")]
        a: String,
        /// The reference registry (denominator).
        #[arg(long, default_value = "distribution")]
        b: String,
        /// KEY=VALUE lines for the run table (machine, versions...).
        #[arg(long)]
        meta: Vec<String>,
    },
    /// Loopback TCP throughput.
    Loopback {
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// MiB per stream.
        #[arg(long, default_value_t = 4096)]
        mib: u64,
    },
    /// All machine limits (SHA-256, disk, cache, fsync, loopback).
    Limits {
        /// A directory on the data disk.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        quick: bool,
    },
    /// Start-to-ready time and idle RSS of a registry command.
    Startup {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "registry")]
        label: String,
        /// Idle time before reading RSS.
        #[arg(long, default_value = "1s")]
        idle: String,
        /// The command, after `--`.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(real_main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print(f: &berth_bench::stats::Figures) {
    println!("{}", serde_json::to_string(f).expect("figures serialize"));
}

async fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Some(Cmd::Report {
            files,
            out,
            a,
            b,
            meta,
        }) => {
            let t = report::read_files(&files)?;
            let meta: Vec<(String, String)> = meta
                .iter()
                .map(|m| {
                    let (k, v) = m.split_once('=').unwrap_or((m, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let md = report::render(&t, &a, &b, &meta);
            match out {
                Some(path) => {
                    let old = std::fs::read_to_string(&path).ok();
                    let doc = report::splice(old.as_deref(), &md);
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    std::fs::write(&path, doc)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{md}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Scenarios) => {
            for g in GROUPS {
                println!("{g}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Loopback { streams, mib }) => {
            let f = limits::loopback(streams, mib << 20)?;
            print(&f);
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Limits { dir, quick }) => {
            let mut failed = false;
            for f in limits::all(&dir, quick) {
                failed |= f.errors > 0;
                eprintln!("[machine] {}: {:.1} MiB/s", f.scenario, f.mib_s);
                print(&f);
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Some(Cmd::Startup {
            url,
            label,
            idle,
            cmd,
        }) => {
            let f = startup::startup(&url, &label, &cmd, parse_duration(&idle)?).await?;
            eprintln!(
                "[{label}] startup: ready in {:.1} ms",
                f.p50_ms.unwrap_or(0.0)
            );
            print(&f);
            Ok(ExitCode::SUCCESS)
        }
        None => run(cli.run).await,
    }
}

async fn run(a: RunArgs) -> Result<ExitCode> {
    let groups: Vec<String> = if a.scenario == "all" {
        GROUPS.iter().map(|g| g.to_string()).collect()
    } else {
        a.scenario
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    for g in &groups {
        anyhow::ensure!(
            GROUPS.contains(&g.as_str()),
            "unknown scenario {g:?}; known: all, {}",
            GROUPS.join(", ")
        );
    }
    let client = Client::new(&a.url, a.user, a.password)?;
    client
        .ping()
        .await
        .with_context(|| format!("registry at {} does not answer GET /v2/", a.url))?;
    let mut ctx = Ctx {
        client,
        label: a.label,
        probe: a.server_pid.map(|pid| ServerProbe { pid }),
        sizes: if a.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        },
        duration: parse_duration(&a.duration)?,
        prefix: a.prefix,
        failed: Vec::new(),
        lines: Vec::new(),
    };
    for g in &groups {
        ctx.run_group(g).await?;
    }
    if ctx.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "[{}] scenarios with errors: {}",
            ctx.label,
            ctx.failed.join("; ")
        );
        Ok(ExitCode::FAILURE)
    }
}
