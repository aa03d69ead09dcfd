//! The `berth` binary: command line, composition root and process lifecycle
//! (listening, TLS, graceful shutdown). Everything else lives in the library
//! crates; this file only wires them together.

mod admin;
mod gc;
mod migrate;
mod serve;

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

fn main() -> anyhow::Result<()> {
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
