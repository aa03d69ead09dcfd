//! `berth serve`: load configuration, open the stores, serve HTTP(S) until
//! SIGTERM or Ctrl-C, then let in-flight requests finish.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_config::{Config, LogFormat, RawConfig, RawTls, Storage, redact_url};
use berth_core::access::{AdminPassword, AuditForwarding, LdapSettings, LoginLimits, OidcSettings};
use berth_core::{Access, AccessSettings, Options, Registry};
use berth_meta::MetaStore;
use berth_storage::{AzureConfig, BlobStore, FsStore, GcsConfig, ObjectBlobStore, S3Config};
use metrics_exporter_prometheus::PrometheusBuilder;

/// How long in-flight requests may run after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long background jobs may take to stop after the last request
/// (a job that outlasts its runner's grace is handed back to the cluster).
const JOBS_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often pull statistics counted in memory are written.
const PULL_STATS_FLUSH: Duration = Duration::from_secs(3);
/// How often the cluster looks for retention policies whose cron schedule
/// is due (a schedule fires at most this late).
const RETENTION_SCHEDULE_CHECK: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000]; port 0 picks one.
    #[arg(long)]
    listen: Option<String>,
    /// Data directory [default: ./berth-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// PEM certificate chain for HTTPS.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Metadata database: sqlite://PATH or postgres://… [default: sqlite://DATA_DIR/meta.db].
    #[arg(long)]
    metadata_url: Option<String>,
}

impl ServeArgs {
    fn raw(&self) -> RawConfig {
        RawConfig {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            log_format: self.log_format.clone(),
            tls: (self.tls_cert.is_some() || self.tls_key.is_some()).then(|| RawTls {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            }),
            metadata: self
                .metadata_url
                .clone()
                .map(|url| berth_config::RawMetadata { url: Some(url) }),
            storage: None,
            uploads: None,
            gc: None,
            auth: None,
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config: Config = berth_config::load(
        args.config.as_deref(),
        |k| std::env::var(k).ok(),
        args.raw(),
    )?;
    init_logging(config.log_format);
    let metrics = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ])
        .context("metrics buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;

    // Beside the database's opening, not in front of the first key or token.
    tokio::task::spawn_blocking(berth_auth::seed_random_generator);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let (store, options) = open_store(&config)?;
    // A first start hashes the admin's password (tens of milliseconds of
    // argon2id) while the database is created and migrated, not after.
    let admin_password = AdminPassword::choose(
        std::env::var("BERTH_ADMIN_PASSWORD").ok().as_deref(),
        // The parameters `open_access` gives the registry (the defaults).
        first_start(&config.metadata_url).then(|| AccessSettings::default().password_params),
    );
    let meta = MetaStore::open(&config.metadata_url)
        .await
        .with_context(|| {
            format!(
                "opening the metadata database {}",
                redact_url(&config.metadata_url)
            )
        })?;
    let registry = Registry::with_options(meta.clone(), store, options);
    let access = open_access(&config, meta.clone(), admin_password).await?;
    registry.set_auditor(access.auditor().clone());
    let stop_jobs = berth_jobs::CancellationToken::new();
    let jobs = spawn_jobs(&config, meta, &registry, &access, stop_jobs.clone());
    let pull_stats = registry.spawn_pull_stats_flusher(PULL_STATS_FLUSH);
    let app = berth_api::router(
        berth_api::App {
            registry: registry.clone(),
            access: access.clone(),
            auth: berth_api::AuthConfig {
                realm: config.auth.realm.clone(),
                tls: config.tls.is_some(),
            },
            settings: std::sync::Arc::new(crate::settings::view(&config)),
        },
        Some(metrics),
    );

    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    // Registered here, before "listening" is printed: a SIGTERM that comes
    // right after must drain, not kill (a handler installed inside the
    // spawned task could still be missing when the signal arrives).
    let signals = ShutdownSignals::register().context("listening for SIGTERM and SIGINT")?;
    tokio::spawn(shutdown_on_signal(signals, handle.clone()));

    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(%addr, scheme, data_dir = %config.data_dir.display(), "berth ready");
    // Tests and scripts wait for this exact line on stdout.
    println!("berth listening on {scheme}://{addr}");
    std::io::stdout().flush()?;

    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    match &config.tls {
        Some(tls) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .with_context(|| {
                    format!(
                        "loading TLS certificate {} and key {}",
                        tls.cert.display(),
                        tls.key.display()
                    )
                })?;
            let mut server = axum_server::from_tcp_rustls(listener, rustls)?;
            bound_read_buffer(server.http_builder());
            server.handle(handle).serve(service).await?;
        }
        None => {
            let mut server = axum_server::from_tcp(listener)?;
            bound_read_buffer(server.http_builder());
            server.handle(handle).serve(service).await?;
        }
    }
    stop_jobs.cancel();
    if tokio::time::timeout(JOBS_STOP_TIMEOUT, jobs).await.is_err() {
        tracing::warn!("background jobs did not stop in time");
    }
    // Pulls counted since the last flush (the flusher runs until here).
    pull_stats.abort();
    if let Err(e) = registry.flush_pull_stats().await {
        tracing::warn!(error = %e, "could not write the last pull statistics");
    }
    access.flush_audit().await;
    registry.close().await;
    tracing::info!("berth stopped");
    Ok(())
}

/// hyper's HTTP/1 read buffer grows to 400 KiB by default, and a blob
/// chunk queued for the disk keeps the whole buffer it was read into
/// alive, so every push held several. At 128 KiB, four concurrent pushes
/// peaked at 11 MiB of anonymous memory instead of 20, at the same
/// throughput (a read syscall per 128 KiB is still a small cost next to
/// the copy).
const HTTP1_READ_BUFFER: usize = 128 * 1024;

fn bound_read_buffer(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
) {
    builder.http1().max_buf_size(HTTP1_READ_BUFFER);
}

/// Opens identity and access, and creates the system admin on first start:
/// with `BERTH_ADMIN_PASSWORD`, or a generated password printed once.
async fn open_access(
    config: &Config,
    meta: MetaStore,
    admin_password: AdminPassword,
) -> anyhow::Result<Access> {
    let auth = &config.auth;
    let settings = AccessSettings {
        service: auth.service.clone(),
        token_lifetime: auth.token_lifetime,
        auto_create_projects: auth.auto_create_projects,
        limits: LoginLimits {
            per_account: auth.max_failed_logins,
            per_address: auth.max_failed_logins_per_address,
            window: auth.failed_login_window,
        },
        audit: AuditForwarding {
            file: auth.audit_file.clone(),
            syslog: auth.audit_syslog.clone(),
        },
        ldap: match &auth.ldap {
            Some(ldap) => Some(LdapSettings {
                directory: berth_ldap::LdapDirectory::new(ldap.clone())
                    .context("configuring LDAP ([auth.ldap])")?,
                admin_group_dn: auth.ldap_admin_group_dn.clone(),
            }),
            None => None,
        },
        oidc: match &auth.oidc {
            // Discovery needs the provider up; a registry that cannot reach
            // it still serves everything else, with browser login off.
            Some(oidc) => match berth_oidc::OidcClient::discover(oidc.clone()).await {
                Ok(client) => Some(OidcSettings { client }),
                Err(e) => {
                    tracing::error!(error = %e, "OIDC discovery failed; browser login is off");
                    None
                }
            },
            None => None,
        },
        workload: if auth.workload.is_empty() {
            None
        } else {
            Some(
                berth_oidc::WorkloadVerifier::new(auth.workload.clone())
                    .context("configuring workload identity ([[auth.workload]])")?,
            )
        },
        ..AccessSettings::default()
    };
    let access = Access::open(meta, settings)
        .await
        .context("opening identity and access")?;
    if let Some(generated) = access
        .bootstrap_admin_with(admin_password)
        .await
        .context("creating the system admin")?
    {
        // Printed, never logged: logs are shipped and kept.
        println!("berth: created system admin \"admin\" with password: {generated}");
        println!("berth: this password is shown once; change it or keep it safe");
    }
    Ok(access)
}

/// Whether the metadata database does not exist yet: a SQLite file that is
/// not there. PostgreSQL cannot tell without connecting; it says no.
fn first_start(metadata_url: &str) -> bool {
    berth_meta::sqlite_path(metadata_url).is_some_and(|path| !path.exists())
}

/// Starts this node's job runner: the upload reaper, once per interval in
/// the whole cluster. It polls at least as often as its shortest period.
fn spawn_jobs(
    config: &Config,
    meta: MetaStore,
    registry: &Registry,
    access: &Access,
    stop: berth_jobs::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let defaults = berth_jobs::RunnerConfig::default();
    let runner_config = berth_jobs::RunnerConfig {
        poll_interval: defaults
            .poll_interval
            .min(config.uploads.reap_interval)
            .min(config.gc.interval),
        ..defaults
    };
    berth_jobs::Runner::new(meta, berth_jobs::node_id(), runner_config)
        .with_worker(berth_jobs::UploadReaper::new(
            registry.clone(),
            config.uploads.ttl,
            config.uploads.reap_interval,
        ))
        .with_worker(berth_jobs::GarbageCollector::new(
            registry.clone(),
            config.gc.interval,
        ))
        .with_worker(berth_jobs::RetentionScheduler::new(
            registry.clone(),
            access.clone(),
            RETENTION_SCHEDULE_CHECK,
        ))
        .spawn(stop)
}

/// The blob store the configuration names, and the options that depend on it.
/// S3, GCS and Azure share one implementation over `object_store`; each can
/// answer blob GETs with presigned redirects (`storage.redirect`).
pub(crate) fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn BlobStore>, Options)> {
    let options = Options {
        blob_redirect: config.storage.redirect(),
        gc: crate::gc::options(config),
        upload_keepalive: config.uploads.ttl / 4,
    };
    let store: Arc<dyn BlobStore> = match &config.storage {
        Storage::Fs => {
            let store = FsStore::open(&config.data_dir)
                .with_context(|| format!("opening blob store in {}", config.data_dir.display()))?;
            return Ok((Arc::new(store), options));
        }
        Storage::S3(s3) => Arc::new(
            ObjectBlobStore::s3(&S3Config {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                path_style: s3.path_style,
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3.secret_access_key.clone(),
                allow_http: s3.allow_http,
            })
            .with_context(|| format!("configuring S3 bucket {} ([storage])", s3.bucket))?,
        ),
        Storage::Gcs(gcs) => Arc::new(
            ObjectBlobStore::gcs(&GcsConfig {
                bucket: gcs.bucket.clone(),
                prefix: gcs.prefix.clone(),
                service_account_key_file: gcs.service_account_key_file.clone(),
            })
            .with_context(|| {
                format!(
                    "configuring GCS bucket {} ([storage], storage.service_account_key_file)",
                    gcs.bucket
                )
            })?,
        ),
        Storage::Azure(azure) => Arc::new(
            ObjectBlobStore::azure(&AzureConfig {
                account: azure.account.clone(),
                container: azure.container.clone(),
                prefix: azure.prefix.clone(),
                access_key: azure.access_key.clone(),
                endpoint: azure.endpoint.clone(),
                allow_http: azure.allow_http,
            })
            .with_context(|| {
                format!(
                    "configuring Azure container {} of account {} ([storage])",
                    azure.container, azure.account
                )
            })?,
        ),
    };
    Ok((store, options))
}

struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn register() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

async fn shutdown_on_signal(
    mut signals: ShutdownSignals,
    handle: axum_server::Handle<std::net::SocketAddr>,
) {
    tokio::select! {
        _ = signals.term.recv() => {}
        _ = signals.int.recv() => {}
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        berth_config::load(
            None,
            |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            RawConfig::default(),
        )
        .unwrap()
    }

    /// Each object storage backend is built from the configuration without
    /// a request; presigning works offline where the credentials allow it.
    #[tokio::test]
    async fn open_store_builds_every_backend() {
        let digest = berth_oci::Digest::sha256_of(b"x");
        let azure = config(&[
            ("BERTH_STORAGE_BACKEND", "azure"),
            ("BERTH_AZURE_ACCOUNT", "berthtest"),
            ("BERTH_AZURE_CONTAINER", "blobs"),
            ("BERTH_AZURE_ACCESS_KEY", "YmVydGgtdGVzdC1rZXk="),
            ("BERTH_AZURE_REDIRECT", "true"),
        ]);
        let (store, options) = open_store(&azure).unwrap();
        assert_eq!(options.blob_redirect, Some(Duration::from_secs(300)));
        let url = store
            .presigned_get(&digest, Duration::from_secs(300))
            .await
            .unwrap()
            .expect("an access key signs");
        assert!(
            url.starts_with("https://berthtest.blob.core.windows.net/blobs/blobs/sha256/"),
            "{url}"
        );

        let s3 = config(&[
            ("BERTH_STORAGE_BACKEND", "s3"),
            ("BERTH_S3_BUCKET", "b"),
            ("BERTH_S3_ACCESS_KEY_ID", "k"),
            ("BERTH_S3_SECRET_ACCESS_KEY", "s"),
        ]);
        let (_, options) = open_store(&s3).unwrap();
        assert_eq!(options.blob_redirect, None);

        // A key file that is readable (the configuration checks that) but
        // holds no key fails here, naming the bucket and the field.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sa.json");
        std::fs::write(&key, "{}").unwrap();
        let gcs = config(&[
            ("BERTH_STORAGE_BACKEND", "gcs"),
            ("BERTH_GCS_BUCKET", "berth-blobs"),
            ("BERTH_GCS_SERVICE_ACCOUNT_KEY_FILE", key.to_str().unwrap()),
        ]);
        let err = format!("{:#}", open_store(&gcs).err().expect("no key in the file"));
        assert!(err.contains("GCS bucket berth-blobs"), "{err}");
        assert!(err.contains("storage.service_account_key_file"), "{err}");
    }
}
