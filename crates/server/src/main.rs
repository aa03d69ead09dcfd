//! The `berth` binary: command line, composition root and process lifecycle
//! (listening, TLS, graceful shutdown). Everything else lives in the library
//! crates; this file only wires them together.

mod admin;
mod gc;
mod migrate;
mod serve;
mod settings;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth", version, about = "A private OCI container registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server.
    Serve(serve::ServeArgs),
    /// Move an installation (metadata and blobs) to other backends, e.g. an
    /// embedded one (SQLite + files) to PostgreSQL + S3. Resumable: rerun it
    /// after an interruption. The source should be stopped; it is only read.
    Migrate(migrate::MigrateArgs),
    /// Manage users, projects, members, robots, tokens, the audit log and
    /// signing keys through a running registry's REST API (/api/v1).
    Admin(admin::AdminArgs),
    /// Collect garbage once, now: unreferenced blobs, expired trash and
    /// (with [gc] delete_untagged) untagged manifests. Safe while servers
    /// run against the same database and store.
    Gc(gc::GcArgs),
}

/// glibc's malloc raises its mmap threshold after the first large block is
/// freed, so every 19 MiB argon2id buffer after that came from a heap and
/// stayed resident (measured: +19 MiB of anonymous memory per thread that
/// ever verified a password), and each of up to 16 arenas kept its own
/// high-water mark. A fixed 4 MiB threshold sends such blocks to mmap
/// (returned on free) while the 1 MiB blob read and write buffers stay on
/// the heap and are reused (at 256 KiB each buffer was an mmap, page faults
/// and munmap: pull fell to half its throughput); the trim threshold is
/// what glibc's own adjustment would have set. Two arenas suit a server
/// whose threads mostly wait on I/O.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; it runs first thing
    // in main, before any other thread exists or any allocation matters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 * 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Migrate(args) => runtime.block_on(migrate::run(args)),
        Command::Gc(args) => runtime.block_on(gc::run(args)),
        Command::Admin(args) => {
            // The API's message, without a backtrace: this is a user's tool.
            if let Err(e) = runtime.block_on(admin::run(args)) {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
