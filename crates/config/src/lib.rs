//! Configuration: a raw, all-optional layer read from the TOML file, the
//! `BERTH_*` environment and the command line, merged with that precedence
//! (file < env < CLI), then validated into a typed [`Config`]. Validation
//! reports every problem at once, each naming its field.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Every setting, each optional, as one source gives it.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on, e.g. `127.0.0.1:5000`; port 0 picks a free port.
    pub listen: Option<String>,
    /// Directory holding the blobs (`blobs/`, `uploads/`) and the SQLite
    /// metadata database (`meta.db`).
    pub data_dir: Option<PathBuf>,
    /// `text` (default) or `json`.
    pub log_format: Option<String>,
    pub tls: Option<RawTls>,
    pub auth: Option<RawAuth>,
    pub storage: Option<RawStorage>,
    pub metadata: Option<RawMetadata>,
    pub uploads: Option<RawUploads>,
    pub gc: Option<RawGc>,
}

/// Authentication and access.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Token endpoint URL advertised in challenges, e.g.
    /// `https://registry.example.com/service/token`. Default: derived from
    /// each request's `Host` (set it behind a load balancer).
    pub realm: Option<String>,
    /// The `service` of challenges and tokens (default `berth`).
    pub service: Option<String>,
    /// Access token lifetime in seconds (default 300, 30 to 3600).
    pub token_lifetime_secs: Option<u64>,
    /// Let system admins create a project by pushing to it (default false).
    pub auto_create_projects: Option<bool>,
    /// Append every audit event as a JSON line to this file.
    pub audit_file: Option<PathBuf>,
    /// Also send every audit event to this syslog socket (e.g. `/dev/log`).
    pub audit_syslog: Option<PathBuf>,
    /// Failed logins per account name before logins are refused for the
    /// rest of the window (default 10).
    pub max_failed_logins: Option<u32>,
    /// Failed logins per source address in the window (default 50).
    pub max_failed_logins_per_address: Option<u32>,
    /// The failed-login window in seconds (default 300).
    pub failed_login_window_secs: Option<u64>,
    /// LDAP/AD logins (`[auth.ldap]`, see berth-ldap's `LdapConfig`). The
    /// search account's password may come from `BERTH_AUTH_LDAP_BIND_PASSWORD`.
    pub ldap: Option<berth_ldap::LdapConfig>,
    /// Members of this LDAP group (DN) are system admins.
    pub ldap_admin_group_dn: Option<String>,
    /// Browser logins through an OpenID provider (`[auth.oidc]`, see
    /// berth-oidc's `OidcConfig`); the client secret may come from
    /// `BERTH_AUTH_OIDC_CLIENT_SECRET`.
    pub oidc: Option<berth_oidc::OidcConfig>,
    /// CI workload identity: `[[auth.workload]]` rules mapping a
    /// pipeline's ID token (issuer, audience, claims) to a robot account.
    pub workload: Option<Vec<berth_oidc::WorkloadRule>>,
}

/// Garbage collection and the restore window (`[gc]`).
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawGc {
    /// Seconds between two scheduled GC runs in the cluster (default 86400).
    pub interval_secs: Option<u64>,
    /// Seconds a blob link or an untagged manifest must have existed
    /// unreferenced before GC may collect it (default 3600).
    pub grace_secs: Option<u64>,
    /// Collect untagged manifests that nothing references (default false).
    pub delete_untagged: Option<bool>,
    /// Seconds deleted manifests and tags stay restorable (default 604800,
    /// seven days).
    pub restore_window_secs: Option<u64>,
    /// Store keys the orphan sweep lists per run (default 1000; 0 turns the
    /// sweep off).
    pub orphan_batch: Option<u64>,
}

/// Upload sessions.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawUploads {
    /// Seconds a session may stay untouched before it is reaped with its
    /// bytes (default 86400, one day).
    pub ttl_secs: Option<u64>,
    /// Seconds between two runs of the reaper in the cluster (default 3600).
    pub reap_interval_secs: Option<u64>,
}

/// Where blob bytes live. One flat `[storage]` table: each key says which
/// backends use it; a key of another backend than the chosen one is an error
/// (except with `fs`, which ignores them all).
#[derive(Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// `fs` (default: `<data_dir>`), `s3`, `gcs` or `azure`.
    pub backend: Option<String>,
    /// S3: endpoint URL of an S3-compatible server; unset means AWS.
    /// Azure: blob service URL; unset means `https://<account>.blob.core.windows.net`.
    pub endpoint: Option<String>,
    /// S3: region (default `us-east-1`).
    pub region: Option<String>,
    /// S3, GCS: bucket (required).
    pub bucket: Option<String>,
    /// S3, GCS, Azure: key prefix for everything Berth writes.
    pub prefix: Option<String>,
    /// S3: path-style requests, which most self-hosted servers need (default true).
    pub path_style: Option<bool>,
    /// S3: access key id; unset means the standard AWS environment.
    pub access_key_id: Option<String>,
    /// S3: secret access key. Prefer `secret_access_key_file` or the environment.
    pub secret_access_key: Option<String>,
    /// S3: file holding the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
    /// S3, Azure: allow a plain-HTTP endpoint (default false).
    pub allow_http: Option<bool>,
    /// S3, GCS, Azure: answer blob GETs with a redirect to a presigned URL
    /// instead of proxying the bytes (default false).
    pub redirect: Option<bool>,
    /// S3, GCS, Azure: lifetime of presigned URLs in seconds (default 300,
    /// at most 604800).
    pub redirect_expiry_secs: Option<u64>,
    /// GCS: JSON key file of a service account; unset means the application
    /// default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, the metadata server).
    pub service_account_key_file: Option<PathBuf>,
    /// Azure: storage account name (required).
    pub account: Option<String>,
    /// Azure: container (required).
    pub container: Option<String>,
    /// Azure: the storage account's access key (base64). Prefer
    /// `access_key_file` or the environment; unset means the `AZURE_*`
    /// environment (service principal, workload or managed identity).
    pub access_key: Option<String>,
    /// Azure: file holding the access key.
    pub access_key_file: Option<PathBuf>,
}

impl fmt::Debug for RawStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawStorage")
            .field("backend", &self.backend)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("account", &self.account)
            .field("container", &self.container)
            .field(
                "access_key",
                &self.access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// Where metadata lives.
#[derive(Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMetadata {
    /// `sqlite://PATH` (default `<data_dir>/meta.db`) or
    /// `postgres://user:password@host:port/database`.
    pub url: Option<String>,
}

impl fmt::Debug for RawMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMetadata")
            .field("url", &self.url.as_deref().map(redact_url))
            .finish()
    }
}

/// `scheme://user:secret@host/...?password=secret` with the secrets
/// replaced; every other part (host, database, `sslmode`, `sslrootcert`) kept.
pub fn redact_url(url: &str) -> String {
    let Some(s) = url.find("://") else {
        return url.to_string();
    };
    // The user info ends at the last `@` before the query; a password may
    // hold `@`, `/` or even `?`, so when no `@` precedes the first `?`, the
    // last `@` anywhere is taken (over-redacting rather than leaking).
    let query_at = url.find('?').unwrap_or(url.len());
    let at = url[..query_at]
        .rfind('@')
        .or_else(|| url.rfind('@'))
        .filter(|&at| at > s);
    let (head, rest) = match at {
        Some(at) => {
            let head = match url[s + 3..at].split_once(':') {
                Some((user, _secret)) => format!("{}{user}:<redacted>", &url[..s + 3]),
                None => url[..at].to_string(),
            };
            (head, &url[at..])
        }
        None => (String::new(), url),
    };
    let Some((path, query)) = rest.split_once('?') else {
        return format!("{head}{rest}");
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                format!("{key}=<redacted>")
            }
            _ => pair.to_string(),
        })
        .collect();
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    format!("{head}{path}?{}{fragment}", query.join("&"))
}

/// The `key=value` pairs of a URL's query, percent-decoded as sqlx reads
/// them (`+` is a space).
fn query_pairs(url: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |b: u8| (b as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(hi), Some(lo)) => {
                            out.push((hi * 16 + lo) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The PostgreSQL TLS modes (libpq's, as sqlx takes them).
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Problems with a `postgres://` URL's TLS parameters, found before a
/// connection is tried: an unknown `sslmode`, unreadable certificate files.
fn check_postgres_url(url: &str, problems: &mut Vec<String>) {
    for (key, value) in query_pairs(url) {
        let file = matches!(
            key.as_str(),
            "sslrootcert"
                | "ssl-root-cert"
                | "ssl-ca"
                | "sslcert"
                | "ssl-cert"
                | "sslkey"
                | "ssl-key"
        );
        if matches!(key.as_str(), "sslmode" | "ssl-mode") && !SSL_MODES.contains(&value.as_str()) {
            problems.push(format!(
                "metadata.url: {key}={value:?} is not one of {}",
                SSL_MODES.join(", ")
            ));
        } else if file && let Err(e) = std::fs::File::open(&value) {
            problems.push(format!("metadata.url: {key}={value}: {e}"));
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain file.
    pub cert: Option<PathBuf>,
    /// PEM private key file.
    pub key: Option<PathBuf>,
}

impl RawConfig {
    /// Fields set in `over` replace those of `self`.
    pub fn merge(self, over: RawConfig) -> RawConfig {
        let tls = match (self.tls, over.tls) {
            (Some(a), Some(b)) => Some(RawTls {
                cert: b.cert.or(a.cert),
                key: b.key.or(a.key),
            }),
            (a, b) => b.or(a),
        };
        let storage = match (self.storage, over.storage) {
            (Some(a), Some(b)) => Some(RawStorage {
                backend: b.backend.or(a.backend),
                endpoint: b.endpoint.or(a.endpoint),
                region: b.region.or(a.region),
                bucket: b.bucket.or(a.bucket),
                prefix: b.prefix.or(a.prefix),
                path_style: b.path_style.or(a.path_style),
                access_key_id: b.access_key_id.or(a.access_key_id),
                secret_access_key: b.secret_access_key.or(a.secret_access_key),
                secret_access_key_file: b.secret_access_key_file.or(a.secret_access_key_file),
                allow_http: b.allow_http.or(a.allow_http),
                redirect: b.redirect.or(a.redirect),
                redirect_expiry_secs: b.redirect_expiry_secs.or(a.redirect_expiry_secs),
                service_account_key_file: b.service_account_key_file.or(a.service_account_key_file),
                account: b.account.or(a.account),
                container: b.container.or(a.container),
                access_key: b.access_key.or(a.access_key),
                access_key_file: b.access_key_file.or(a.access_key_file),
            }),
            (a, b) => b.or(a),
        };
        let metadata = match (self.metadata, over.metadata) {
            (Some(a), Some(b)) => Some(RawMetadata {
                url: b.url.or(a.url),
            }),
            (a, b) => b.or(a),
        };
        let uploads = match (self.uploads, over.uploads) {
            (Some(a), Some(b)) => Some(RawUploads {
                ttl_secs: b.ttl_secs.or(a.ttl_secs),
                reap_interval_secs: b.reap_interval_secs.or(a.reap_interval_secs),
            }),
            (a, b) => b.or(a),
        };
        let gc = match (self.gc, over.gc) {
            (Some(a), Some(b)) => Some(RawGc {
                interval_secs: b.interval_secs.or(a.interval_secs),
                grace_secs: b.grace_secs.or(a.grace_secs),
                delete_untagged: b.delete_untagged.or(a.delete_untagged),
                restore_window_secs: b.restore_window_secs.or(a.restore_window_secs),
                orphan_batch: b.orphan_batch.or(a.orphan_batch),
            }),
            (a, b) => b.or(a),
        };
        let auth = match (self.auth, over.auth) {
            (Some(a), Some(b)) => Some(RawAuth {
                realm: b.realm.or(a.realm),
                service: b.service.or(a.service),
                token_lifetime_secs: b.token_lifetime_secs.or(a.token_lifetime_secs),
                auto_create_projects: b.auto_create_projects.or(a.auto_create_projects),
                audit_file: b.audit_file.or(a.audit_file),
                audit_syslog: b.audit_syslog.or(a.audit_syslog),
                max_failed_logins: b.max_failed_logins.or(a.max_failed_logins),
                max_failed_logins_per_address: b
                    .max_failed_logins_per_address
                    .or(a.max_failed_logins_per_address),
                failed_login_window_secs: b.failed_login_window_secs.or(a.failed_login_window_secs),
                ldap: match (a.ldap, b.ldap) {
                    (Some(mut l), Some(o)) => {
                        // The environment only carries the bind password.
                        if o.bind_password.is_some() {
                            l.bind_password = o.bind_password;
                        }
                        Some(l)
                    }
                    (l, o) => l.or(o),
                },
                ldap_admin_group_dn: b.ldap_admin_group_dn.or(a.ldap_admin_group_dn),
                oidc: match (a.oidc, b.oidc) {
                    (Some(mut o), Some(env)) => {
                        if env.client_secret.is_some() {
                            o.client_secret = env.client_secret;
                        }
                        Some(o)
                    }
                    (o, env) => o.or(env),
                },
                workload: b.workload.or(a.workload),
            }),
            (a, b) => b.or(a),
        };
        RawConfig {
            storage,
            metadata,
            uploads,
            gc,
            auth,
            listen: over.listen.or(self.listen),
            data_dir: over.data_dir.or(self.data_dir),
            log_format: over.log_format.or(self.log_format),
            tls,
        }
    }

    /// Reads `BERTH_LISTEN`, `BERTH_DATA_DIR`, `BERTH_LOG_FORMAT`,
    /// `BERTH_AUTH_*` (one per `[auth]` key, upper-cased), `BERTH_TLS_CERT`, `BERTH_TLS_KEY`,
    /// `BERTH_METADATA_URL`, `BERTH_STORAGE_BACKEND`, `BERTH_S3_*`,
    /// `BERTH_GCS_*` and `BERTH_AZURE_*` (one per `[storage]` key the backend
    /// uses, upper-cased; the table is on `storage_env`), `BERTH_UPLOAD_TTL_SECS`,
    /// `BERTH_UPLOAD_REAP_INTERVAL_SECS` and `BERTH_GC_*` (one per `[gc]`
    /// key, upper-cased) through `var` (the process environment in
    /// production).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<RawConfig, ConfigError> {
        let mut problems = Vec::new();
        let mut boolean = |name: &str| {
            var(name).and_then(|v| match v.as_str() {
                "1" | "true" | "yes" => Some(true),
                "0" | "false" | "no" | "" => Some(false),
                other => {
                    problems.push(format!("{name}: {other:?} is not a boolean (true/false)"));
                    None
                }
            })
        };
        let auto_create_projects = boolean("BERTH_AUTH_AUTO_CREATE_PROJECTS");
        let delete_untagged = boolean("BERTH_GC_DELETE_UNTAGGED");
        let storage = storage_env(&var, &mut problems);
        let mut seconds = |name: &str| {
            var(name).and_then(|v| {
                v.parse()
                    .map_err(|_| problems.push(format!("{name}: {v:?} is not a number of seconds")))
                    .ok()
            })
        };
        let uploads = RawUploads {
            ttl_secs: seconds("BERTH_UPLOAD_TTL_SECS"),
            reap_interval_secs: seconds("BERTH_UPLOAD_REAP_INTERVAL_SECS"),
        };
        let uploads = (uploads != RawUploads::default()).then_some(uploads);
        let gc = RawGc {
            interval_secs: seconds("BERTH_GC_INTERVAL_SECS"),
            grace_secs: seconds("BERTH_GC_GRACE_SECS"),
            delete_untagged,
            restore_window_secs: seconds("BERTH_GC_RESTORE_WINDOW_SECS"),
            orphan_batch: seconds("BERTH_GC_ORPHAN_BATCH"),
        };
        let gc = (gc != RawGc::default()).then_some(gc);
        let mut count = |name: &str| {
            var(name).and_then(|v| {
                v.parse()
                    .map_err(|_| problems.push(format!("{name}: {v:?} is not a number")))
                    .ok()
            })
        };
        let max_failed_logins = count("BERTH_AUTH_MAX_FAILED_LOGINS");
        let max_failed_logins_per_address = count("BERTH_AUTH_MAX_FAILED_LOGINS_PER_ADDRESS");
        let mut seconds = |name: &str| {
            var(name).and_then(|v| {
                v.parse()
                    .map_err(|_| problems.push(format!("{name}: {v:?} is not a number of seconds")))
                    .ok()
            })
        };
        let auth = RawAuth {
            realm: var("BERTH_AUTH_REALM"),
            service: var("BERTH_AUTH_SERVICE"),
            token_lifetime_secs: seconds("BERTH_AUTH_TOKEN_LIFETIME_SECS"),
            auto_create_projects,
            audit_file: var("BERTH_AUTH_AUDIT_FILE").map(PathBuf::from),
            audit_syslog: var("BERTH_AUTH_AUDIT_SYSLOG").map(PathBuf::from),
            max_failed_logins,
            max_failed_logins_per_address,
            failed_login_window_secs: seconds("BERTH_AUTH_FAILED_LOGIN_WINDOW_SECS"),
            ldap: var("BERTH_AUTH_LDAP_BIND_PASSWORD").map(|pw| {
                let mut l = berth_ldap::LdapConfig::new("", "");
                l.bind_password = Some(pw);
                l
            }),
            ldap_admin_group_dn: var("BERTH_AUTH_LDAP_ADMIN_GROUP_DN"),
            oidc: var("BERTH_AUTH_OIDC_CLIENT_SECRET")
                .map(|secret| berth_oidc::OidcConfig::new("", "", Some(&secret), "")),
            workload: None,
        };
        let auth = (auth != RawAuth::default()).then_some(auth);
        let metadata = var("BERTH_METADATA_URL").map(|url| RawMetadata { url: Some(url) });
        let cert = var("BERTH_TLS_CERT").map(PathBuf::from);
        let key = var("BERTH_TLS_KEY").map(PathBuf::from);
        let tls = (cert.is_some() || key.is_some()).then_some(RawTls { cert, key });
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(RawConfig {
            listen: var("BERTH_LISTEN"),
            data_dir: var("BERTH_DATA_DIR").map(PathBuf::from),
            log_format: var("BERTH_LOG_FORMAT"),
            auth,
            tls,
            storage,
            metadata,
            uploads,
            gc,
        })
    }

    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("config file {}: {e}", path.display())]))?;
        toml::from_str(&text)
            .map_err(|e| ConfigError(vec![format!("config file {}: {e}", path.display())]))
    }
}

/// The `[storage]` keys from the environment. Each backend has its own
/// variables (`BERTH_S3_BUCKET`, `BERTH_GCS_BUCKET`); those of several
/// backends set the same key, and setting it twice differently is an error:
///
/// | key | variables |
/// |---|---|
/// | backend | `BERTH_STORAGE_BACKEND` |
/// | endpoint | `BERTH_S3_ENDPOINT`, `BERTH_AZURE_ENDPOINT` |
/// | region, path_style, access_key_id, secret_access_key(_file) | `BERTH_S3_*` |
/// | bucket | `BERTH_S3_BUCKET`, `BERTH_GCS_BUCKET` |
/// | prefix, redirect, redirect_expiry_secs | `BERTH_S3_*`, `BERTH_GCS_*`, `BERTH_AZURE_*` |
/// | allow_http | `BERTH_S3_ALLOW_HTTP`, `BERTH_AZURE_ALLOW_HTTP` |
/// | service_account_key_file | `BERTH_GCS_SERVICE_ACCOUNT_KEY_FILE` |
/// | account, container, access_key(_file) | `BERTH_AZURE_*` |
fn storage_env(
    var: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<RawStorage> {
    const S3: &[&str] = &["S3"];
    const GCS: &[&str] = &["GCS"];
    const AZURE: &[&str] = &["AZURE"];
    // The variable (name, value) setting `key` for one of `backends`.
    let mut get = |key: &str, backends: &[&str]| -> Option<(String, String)> {
        let mut found: Option<(String, String)> = None;
        for backend in backends {
            let name = format!("BERTH_{backend}_{key}");
            let Some(value) = var(&name) else { continue };
            match &found {
                None => found = Some((name, value)),
                Some((first, v)) if *v != value => problems.push(format!(
                    "{name}: conflicts with {first} (both set [storage] {}); set one",
                    key.to_ascii_lowercase()
                )),
                Some(_) => {}
            }
        }
        found
    };
    let endpoint = get("ENDPOINT", &["S3", "AZURE"]);
    let region = get("REGION", S3);
    let bucket = get("BUCKET", &["S3", "GCS"]);
    let prefix = get("PREFIX", &["S3", "GCS", "AZURE"]);
    let path_style = get("PATH_STYLE", S3);
    let access_key_id = get("ACCESS_KEY_ID", S3);
    let secret_access_key = get("SECRET_ACCESS_KEY", S3);
    let secret_access_key_file = get("SECRET_ACCESS_KEY_FILE", S3);
    let allow_http = get("ALLOW_HTTP", &["S3", "AZURE"]);
    let redirect = get("REDIRECT", &["S3", "GCS", "AZURE"]);
    let redirect_expiry_secs = get("REDIRECT_EXPIRY_SECS", &["S3", "GCS", "AZURE"]);
    let service_account_key_file = get("SERVICE_ACCOUNT_KEY_FILE", GCS);
    let account = get("ACCOUNT", AZURE);
    let container = get("CONTAINER", AZURE);
    let access_key = get("ACCESS_KEY", AZURE);
    let access_key_file = get("ACCESS_KEY_FILE", AZURE);
    let mut boolean = |found: Option<(String, String)>| {
        found.and_then(|(name, v)| match v.as_str() {
            "1" | "true" | "yes" => Some(true),
            "0" | "false" | "no" | "" => Some(false),
            other => {
                problems.push(format!("{name}: {other:?} is not a boolean (true/false)"));
                None
            }
        })
    };
    let path_style = boolean(path_style);
    let allow_http = boolean(allow_http);
    let redirect = boolean(redirect);
    let redirect_expiry_secs = redirect_expiry_secs.and_then(|(name, v)| {
        v.parse()
            .map_err(|_| problems.push(format!("{name}: {v:?} is not a number of seconds")))
            .ok()
    });
    let value = |found: Option<(String, String)>| found.map(|(_, v)| v);
    let storage = RawStorage {
        backend: var("BERTH_STORAGE_BACKEND"),
        endpoint: value(endpoint),
        region: value(region),
        bucket: value(bucket),
        prefix: value(prefix),
        path_style,
        access_key_id: value(access_key_id),
        secret_access_key: value(secret_access_key),
        secret_access_key_file: value(secret_access_key_file).map(PathBuf::from),
        allow_http,
        redirect,
        redirect_expiry_secs,
        service_account_key_file: value(service_account_key_file).map(PathBuf::from),
        account: value(account),
        container: value(container),
        access_key: value(access_key),
        access_key_file: value(access_key_file).map(PathBuf::from),
    };
    (storage != RawStorage::default()).then_some(storage)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub tls: Option<Tls>,
    pub storage: Storage,
    /// `sqlite://…` or `postgres://…`; may hold a password (see [`redact_url`]).
    pub metadata_url: String,
    pub uploads: Uploads,
    pub gc: Gc,
    pub auth: Auth,
}

/// Authentication and access (see [`RawAuth`] for each field's meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub realm: Option<String>,
    pub service: String,
    pub token_lifetime: Duration,
    pub auto_create_projects: bool,
    pub audit_file: Option<PathBuf>,
    pub audit_syslog: Option<PathBuf>,
    pub max_failed_logins: u32,
    pub max_failed_logins_per_address: u32,
    pub failed_login_window: Duration,
    pub ldap: Option<berth_ldap::LdapConfig>,
    pub ldap_admin_group_dn: Option<String>,
    pub oidc: Option<berth_oidc::OidcConfig>,
    pub workload: Vec<berth_oidc::WorkloadRule>,
}

fn validate_auth(raw: Option<RawAuth>, problems: &mut Vec<String>) -> Auth {
    let raw = raw.unwrap_or_default();
    if let Some(realm) = &raw.realm
        && !(realm.starts_with("http://") || realm.starts_with("https://"))
    {
        problems.push(format!(
            "auth.realm: {realm:?} is not an http:// or https:// URL"
        ));
    }
    let service = raw.service.unwrap_or_else(|| "berth".into());
    if service.is_empty()
        || !service
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        problems.push(format!(
            "auth.service: {service:?} must be non-empty printable ASCII without quotes"
        ));
    }
    let lifetime = raw.token_lifetime_secs.unwrap_or(300);
    if !(30..=3600).contains(&lifetime) {
        problems.push(format!(
            "auth.token_lifetime_secs: {lifetime} is outside 30..=3600 (tokens are short-lived)"
        ));
    }
    let window = raw.failed_login_window_secs.unwrap_or(300);
    if window == 0 {
        problems.push("auth.failed_login_window_secs: must be at least 1".into());
    }
    let per_account = raw.max_failed_logins.unwrap_or(10);
    let per_address = raw.max_failed_logins_per_address.unwrap_or(50);
    if per_account == 0 {
        problems.push("auth.max_failed_logins: must be at least 1".into());
    }
    if per_address == 0 {
        problems.push("auth.max_failed_logins_per_address: must be at least 1".into());
    }
    if let Some(l) = &raw.ldap {
        if l.url.is_empty() && l.user_base_dn.is_empty() {
            problems.push(
                "auth.ldap: BERTH_AUTH_LDAP_BIND_PASSWORD is set but no [auth.ldap] section is"
                    .into(),
            );
        } else if let Err(e) = l.validate() {
            problems.push(e);
        }
    }
    if let Some(o) = &raw.oidc {
        if o.issuer_url.is_empty() && o.client_id.is_empty() {
            problems.push(
                "auth.oidc: BERTH_AUTH_OIDC_CLIENT_SECRET is set but no [auth.oidc] section is"
                    .into(),
            );
        } else if let Err(e) = o.validate() {
            problems.push(e);
        }
    }
    if let Some(rules) = &raw.workload
        && let Err(e) = berth_oidc::WorkloadVerifier::new(rules.clone())
    {
        problems.push(e.to_string());
    }
    if raw.ldap_admin_group_dn.is_some() && raw.ldap.is_none() {
        problems.push("auth.ldap_admin_group_dn: set, but no [auth.ldap] section is".into());
    }
    Auth {
        oidc: raw.oidc,
        workload: raw.workload.unwrap_or_default(),
        ldap: raw.ldap,
        ldap_admin_group_dn: raw.ldap_admin_group_dn,
        realm: raw.realm,
        service,
        token_lifetime: Duration::from_secs(lifetime),
        auto_create_projects: raw.auto_create_projects.unwrap_or(false),
        audit_file: raw.audit_file,
        audit_syslog: raw.audit_syslog,
        max_failed_logins: per_account,
        max_failed_logins_per_address: per_address,
        failed_login_window: Duration::from_secs(window),
    }
}

/// When abandoned upload sessions are reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploads {
    /// A session untouched for this long is deleted with its bytes.
    pub ttl: Duration,
    /// How often the reaper runs (once per period in the whole cluster).
    pub reap_interval: Duration,
}

pub const DEFAULT_UPLOAD_TTL_SECS: u64 = 24 * 60 * 60;
pub const DEFAULT_UPLOAD_REAP_INTERVAL_SECS: u64 = 60 * 60;

fn validate_uploads(raw: Option<RawUploads>, problems: &mut Vec<String>) -> Uploads {
    let raw = raw.unwrap_or_default();
    let mut positive = |field: &str, value: Option<u64>, default: u64| match value {
        Some(0) => {
            problems.push(format!("uploads.{field}: must be at least 1 second"));
            Duration::from_secs(default)
        }
        other => Duration::from_secs(other.unwrap_or(default)),
    };
    Uploads {
        ttl: positive("ttl_secs", raw.ttl_secs, DEFAULT_UPLOAD_TTL_SECS),
        reap_interval: positive(
            "reap_interval_secs",
            raw.reap_interval_secs,
            DEFAULT_UPLOAD_REAP_INTERVAL_SECS,
        ),
    }
}

/// Garbage collection and the restore window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gc {
    /// How often GC runs (once per period in the whole cluster).
    pub interval: Duration,
    /// How long a link or untagged manifest stays unreferenced before GC
    /// may collect it.
    pub grace: Duration,
    /// Whether GC collects untagged, unreferenced manifests.
    pub delete_untagged: bool,
    /// How long deleted manifests and tags stay restorable.
    pub restore_window: Duration,
    /// Store keys the orphan sweep lists per run; 0: no sweep.
    pub orphan_batch: u64,
}

pub const DEFAULT_GC_INTERVAL_SECS: u64 = 24 * 60 * 60;
pub const DEFAULT_GC_GRACE_SECS: u64 = 60 * 60;
pub const DEFAULT_GC_RESTORE_WINDOW_SECS: u64 = 7 * 24 * 60 * 60;
pub const DEFAULT_GC_ORPHAN_BATCH: u64 = 1000;

fn validate_gc(raw: Option<RawGc>, problems: &mut Vec<String>) -> Gc {
    let raw = raw.unwrap_or_default();
    if raw.interval_secs == Some(0) {
        problems.push("gc.interval_secs: must be at least 1 second".to_string());
    }
    Gc {
        interval: Duration::from_secs(
            raw.interval_secs
                .filter(|s| *s > 0)
                .unwrap_or(DEFAULT_GC_INTERVAL_SECS),
        ),
        grace: Duration::from_secs(raw.grace_secs.unwrap_or(DEFAULT_GC_GRACE_SECS)),
        delete_untagged: raw.delete_untagged.unwrap_or(false),
        restore_window: Duration::from_secs(
            raw.restore_window_secs
                .unwrap_or(DEFAULT_GC_RESTORE_WINDOW_SECS),
        ),
        orphan_batch: raw.orphan_batch.unwrap_or(DEFAULT_GC_ORPHAN_BATCH),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Blobs under the data directory.
    Fs,
    S3(S3),
    /// Google Cloud Storage.
    Gcs(Gcs),
    /// Azure Blob Storage.
    Azure(Azure),
}

impl Storage {
    /// Lifetime of presigned URLs when blob GETs redirect; `None` proxies.
    pub fn redirect(&self) -> Option<Duration> {
        match self {
            Storage::Fs => None,
            Storage::S3(s) => s.redirect,
            Storage::Gcs(g) => g.redirect,
            Storage::Azure(a) => a.redirect,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct S3 {
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
    /// Lifetime of presigned URLs when blob GETs redirect; `None` proxies.
    pub redirect: Option<std::time::Duration>,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("redirect", &self.redirect)
            .finish_non_exhaustive()
    }
}

/// A Google Cloud Storage bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gcs {
    pub bucket: String,
    pub prefix: String,
    /// A service account's JSON key file (checked readable); `None` means the
    /// application default credentials.
    pub service_account_key_file: Option<PathBuf>,
    /// Lifetime of presigned URLs when blob GETs redirect; `None` proxies.
    pub redirect: Option<Duration>,
}

/// An Azure Blob Storage container.
#[derive(Clone, PartialEq, Eq)]
pub struct Azure {
    pub account: String,
    pub container: String,
    pub prefix: String,
    /// The account's access key (base64), from `access_key` or
    /// `access_key_file`; `None` means the `AZURE_*` environment.
    pub access_key: Option<String>,
    pub endpoint: Option<String>,
    pub allow_http: bool,
    /// Lifetime of presigned URLs when blob GETs redirect; `None` proxies.
    pub redirect: Option<Duration>,
}

impl fmt::Debug for Azure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Azure")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field(
                "access_key",
                &self.access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .field("redirect", &self.redirect)
            .finish()
    }
}

/// The longest a presigned URL may live (S3 and GCS refuse more).
pub const MAX_REDIRECT_EXPIRY_SECS: u64 = 7 * 24 * 60 * 60;

/// Which backends use each `[storage]` key (`fs` uses none and ignores them).
const STORAGE_KEYS: &[(&str, &[&str])] = &[
    ("endpoint", &["s3", "azure"]),
    ("region", &["s3"]),
    ("bucket", &["s3", "gcs"]),
    ("path_style", &["s3"]),
    ("access_key_id", &["s3"]),
    ("secret_access_key", &["s3"]),
    ("secret_access_key_file", &["s3"]),
    ("allow_http", &["s3", "azure"]),
    ("service_account_key_file", &["gcs"]),
    ("account", &["azure"]),
    ("container", &["azure"]),
    ("access_key", &["azure"]),
    ("access_key_file", &["azure"]),
];

fn validate_storage(raw: Option<RawStorage>, problems: &mut Vec<String>) -> Storage {
    let raw = raw.unwrap_or_default();
    let backend = raw.backend.clone().unwrap_or_else(|| "fs".to_string());
    if ["s3", "gcs", "azure"].contains(&backend.as_str()) {
        let set = |key: &str| match key {
            "endpoint" => raw.endpoint.is_some(),
            "region" => raw.region.is_some(),
            "bucket" => raw.bucket.is_some(),
            "path_style" => raw.path_style.is_some(),
            "access_key_id" => raw.access_key_id.is_some(),
            "secret_access_key" => raw.secret_access_key.is_some(),
            "secret_access_key_file" => raw.secret_access_key_file.is_some(),
            "allow_http" => raw.allow_http.is_some(),
            "service_account_key_file" => raw.service_account_key_file.is_some(),
            "account" => raw.account.is_some(),
            "container" => raw.container.is_some(),
            "access_key" => raw.access_key.is_some(),
            "access_key_file" => raw.access_key_file.is_some(),
            _ => false,
        };
        for (key, backends) in STORAGE_KEYS {
            if set(key) && !backends.contains(&backend.as_str()) {
                problems.push(format!(
                    "storage.{key}: not used by the {backend:?} backend (only by {})",
                    backends.join(", ")
                ));
            }
        }
    }
    let mut required = |key: &str, value: Option<String>| {
        value.filter(|v| !v.is_empty()).unwrap_or_else(|| {
            problems.push(format!(
                "storage.{key}: required when storage.backend is {backend:?}"
            ));
            String::new()
        })
    };
    let redirect = |problems: &mut Vec<String>| {
        let expiry = raw.redirect_expiry_secs.unwrap_or(300);
        if !(1..=MAX_REDIRECT_EXPIRY_SECS).contains(&expiry) {
            problems.push(format!(
                "storage.redirect_expiry_secs: {expiry} is outside 1..={MAX_REDIRECT_EXPIRY_SECS} \
                 (7 days, the longest a presigned URL lives)"
            ));
        }
        raw.redirect
            .unwrap_or(false)
            .then(|| Duration::from_secs(expiry))
    };
    match backend.as_str() {
        "fs" => Storage::Fs,
        "s3" => {
            let bucket = required("bucket", raw.bucket.clone());
            let secret_access_key = read_secret(
                raw.secret_access_key.clone(),
                raw.secret_access_key_file.as_deref(),
                "secret_access_key_file",
                problems,
            );
            Storage::S3(S3 {
                endpoint: raw.endpoint.clone(),
                region: raw
                    .region
                    .clone()
                    .unwrap_or_else(|| "us-east-1".to_string()),
                bucket,
                prefix: raw.prefix.clone().unwrap_or_default(),
                path_style: raw.path_style.unwrap_or(true),
                access_key_id: raw.access_key_id.clone(),
                secret_access_key,
                allow_http: raw.allow_http.unwrap_or(false),
                redirect: redirect(problems),
            })
        }
        "gcs" => {
            let bucket = required("bucket", raw.bucket.clone());
            if let Some(path) = &raw.service_account_key_file
                && let Err(e) = std::fs::File::open(path)
            {
                problems.push(format!(
                    "storage.service_account_key_file: {}: {e}",
                    path.display()
                ));
            }
            Storage::Gcs(Gcs {
                bucket,
                prefix: raw.prefix.clone().unwrap_or_default(),
                service_account_key_file: raw.service_account_key_file.clone(),
                redirect: redirect(problems),
            })
        }
        "azure" => {
            let account = required("account", raw.account.clone());
            let container = required("container", raw.container.clone());
            let access_key = read_secret(
                raw.access_key.clone(),
                raw.access_key_file.as_deref(),
                "access_key_file",
                problems,
            );
            if let Some(key) = &access_key
                && !is_base64(key)
            {
                let field = if raw.access_key.is_some() {
                    "access_key"
                } else {
                    "access_key_file"
                };
                problems.push(format!(
                    "storage.{field}: not base64 (an Azure storage account key is, \
                     as the portal shows it)"
                ));
            }
            let allow_http = raw.allow_http.unwrap_or(false);
            if let Some(endpoint) = &raw.endpoint {
                if endpoint.starts_with("http://") {
                    if !allow_http {
                        problems.push(format!(
                            "storage.allow_http: must be true for the plain-HTTP \
                             storage.endpoint {endpoint:?}"
                        ));
                    }
                } else if !endpoint.starts_with("https://") {
                    problems.push(format!(
                        "storage.endpoint: {endpoint:?} is not an http:// or https:// URL"
                    ));
                }
            }
            Storage::Azure(Azure {
                account,
                container,
                prefix: raw.prefix.clone().unwrap_or_default(),
                access_key,
                endpoint: raw.endpoint.clone(),
                allow_http,
                redirect: redirect(problems),
            })
        }
        other => {
            problems.push(format!(
                "storage.backend: {other:?} is none of \"fs\", \"s3\", \"gcs\", \"azure\""
            ));
            Storage::Fs
        }
    }
}

/// A secret given inline or as a file (`file_key` names the file's field).
fn read_secret(
    inline: Option<String>,
    file: Option<&Path>,
    file_key: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    match (inline, file) {
        (Some(s), _) => Some(s),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                problems.push(format!("storage.{file_key}: {}: {e}", path.display()));
                None
            }
        },
        (None, None) => None,
    }
}

/// Standard base64 with padding, as Azure shows account keys.
fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.len().is_multiple_of(4)
        && s.trim_end_matches('=').len() + 2 >= s.len()
        && s.trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
pub const DEFAULT_DATA_DIR: &str = "./berth-data";

/// All the problems found, one per line, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let listen_text = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!(
                    "listen: {listen_text:?} is not an address like 127.0.0.1:5000"
                ));
                None
            }
        };
        let log_format = match self.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                problems.push(format!(
                    "log_format: {other:?} is neither \"text\" nor \"json\""
                ));
                LogFormat::Text
            }
        };
        let tls = match self.tls {
            None
            | Some(RawTls {
                cert: None,
                key: None,
            }) => None,
            Some(RawTls {
                cert: Some(cert),
                key: Some(key),
            }) => Some(Tls { cert, key }),
            Some(RawTls { cert: None, .. }) => {
                problems.push("tls.cert: required when tls.key is set".to_string());
                None
            }
            Some(RawTls { key: None, .. }) => {
                problems.push("tls.key: required when tls.cert is set".to_string());
                None
            }
        };
        let storage = validate_storage(self.storage, &mut problems);
        let uploads = validate_uploads(self.uploads, &mut problems);
        let gc = validate_gc(self.gc, &mut problems);
        let auth = validate_auth(self.auth, &mut problems);
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let metadata_url = self
            .metadata
            .and_then(|m| m.url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("meta.db").display()));
        if !["sqlite://", "postgres://", "postgresql://"]
            .iter()
            .any(|s| metadata_url.starts_with(s))
        {
            problems.push(format!(
                "metadata.url: {:?} is neither sqlite://PATH nor postgres://…",
                redact_url(&metadata_url)
            ));
        } else if !metadata_url.starts_with("sqlite://") {
            check_postgres_url(&metadata_url, &mut problems);
        }
        match (listen, problems.is_empty()) {
            (Some(listen), true) => Ok(Config {
                listen,
                data_dir,
                log_format,
                tls,
                storage,
                metadata_url,
                uploads,
                gc,
                auth,
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

/// Loads the configuration: `file` (if any) < environment < `cli`.
pub fn load(
    file: Option<&Path>,
    var: impl Fn(&str) -> Option<String>,
    cli: RawConfig,
) -> Result<Config, ConfigError> {
    let base = match file {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    base.merge(RawConfig::from_env(var)?).merge(cli).validate()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults() {
        let c = load(None, env(&[]), RawConfig::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.tls, None);
    }

    #[test]
    fn precedence_file_env_cli() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/from/file\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let c = load(
            Some(&file),
            env(&[("BERTH_LISTEN", "127.0.0.1:2")]),
            RawConfig::default(),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.log_format, LogFormat::Json);
        let cli = RawConfig {
            listen: Some("127.0.0.1:3".into()),
            ..RawConfig::default()
        };
        let c = load(Some(&file), env(&[("BERTH_LISTEN", "127.0.0.1:2")]), cli).unwrap();
        assert_eq!(c.listen.port(), 3);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let raw = RawConfig {
            listen: Some("nowhere".into()),
            log_format: Some("xml".into()),
            tls: Some(RawTls {
                cert: Some("c.pem".into()),
                key: None,
            }),
            ..RawConfig::default()
        };
        let err = raw.validate().unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(err.to_string().contains("listen:"));
        assert!(err.to_string().contains("log_format:"));
        assert!(err.to_string().contains("tls.key:"));
    }

    #[test]
    fn auth_settings_layer_and_validate() {
        let c = load(None, env(&[]), RawConfig::default()).unwrap();
        assert_eq!(c.auth.service, "berth");
        assert_eq!(c.auth.token_lifetime, Duration::from_secs(300));
        assert!(!c.auth.auto_create_projects);
        // Any address may listen: every request is authenticated.
        let remote = RawConfig {
            listen: Some("0.0.0.0:5000".into()),
            ..RawConfig::default()
        };
        assert!(remote.validate().is_ok());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "[auth]\nservice = \"reg\"\ntoken_lifetime_secs = 600\nauto_create_projects = true\n",
        )
        .unwrap();
        let c = load(
            Some(&file),
            env(&[
                ("BERTH_AUTH_TOKEN_LIFETIME_SECS", "120"),
                ("BERTH_AUTH_REALM", "https://reg.example/service/token"),
            ]),
            RawConfig::default(),
        )
        .unwrap();
        assert_eq!(c.auth.service, "reg");
        assert_eq!(c.auth.token_lifetime, Duration::from_secs(120));
        assert!(c.auth.auto_create_projects);
        assert_eq!(
            c.auth.realm.as_deref(),
            Some("https://reg.example/service/token")
        );

        let err = load(
            None,
            env(&[
                ("BERTH_AUTH_TOKEN_LIFETIME_SECS", "86400"),
                ("BERTH_AUTH_REALM", "reg.example"),
                ("BERTH_AUTH_SERVICE", "a\"b"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err()
        .to_string();
        for field in ["auth.token_lifetime_secs", "auth.realm", "auth.service"] {
            assert!(err.contains(field), "{field} in {err}");
        }
        assert!(RawConfig::from_env(env(&[("BERTH_AUTH_AUTO_CREATE_PROJECTS", "maybe")])).is_err());
    }

    #[test]
    fn storage_and_metadata_backends() {
        let c = load(None, env(&[]), RawConfig::default()).unwrap();
        assert_eq!(c.storage, Storage::Fs);
        assert_eq!(c.metadata_url, "sqlite://./berth-data/meta.db");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        std::fs::write(
            &file,
            format!(
                "[storage]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9\"\n\
                 secret_access_key_file = \"{}\"\nredirect = true\n[metadata]\nurl = \"postgres://u:pw@h/db\"\n",
                secret.display()
            ),
        )
        .unwrap();
        let c = load(
            Some(&file),
            env(&[("BERTH_S3_PREFIX", "p/")]),
            RawConfig::default(),
        )
        .unwrap();
        let Storage::S3(s3) = &c.storage else {
            panic!("{:?}", c.storage)
        };
        assert_eq!(s3.bucket, "b");
        assert_eq!(s3.prefix, "p/");
        assert_eq!(s3.secret_access_key.as_deref(), Some("s3cr3t"));
        assert_eq!(s3.redirect, Some(std::time::Duration::from_secs(300)));
        assert!(s3.path_style);
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(c.metadata_url, "postgres://u:pw@h/db");
        assert_eq!(redact_url(&c.metadata_url), "postgres://u:<redacted>@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://./meta.db"), "sqlite://./meta.db");

        let err = load(
            None,
            env(&[
                ("BERTH_STORAGE_BACKEND", "s3"),
                ("BERTH_S3_ALLOW_HTTP", "perhaps"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("BERTH_S3_ALLOW_HTTP"), "{err}");
        let err = load(
            None,
            env(&[
                ("BERTH_STORAGE_BACKEND", "s3"),
                ("BERTH_METADATA_URL", "mysql://x"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("storage.bucket"), "{err}");
        assert!(err.to_string().contains("metadata.url"), "{err}");
        let err = load(
            None,
            env(&[("BERTH_STORAGE_BACKEND", "tape")]),
            RawConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("storage.backend"), "{err}");
    }

    #[test]
    fn gcs_and_azure_backends() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("sa.json");
        std::fs::write(&key_file, "{}").unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            format!(
                "[storage]\nbackend = \"gcs\"\nbucket = \"blobs\"\nprefix = \"berth/\"\n\
                 service_account_key_file = \"{}\"\nredirect = true\nredirect_expiry_secs = 600\n",
                key_file.display()
            ),
        )
        .unwrap();
        let c = load(Some(&file), env(&[]), RawConfig::default()).unwrap();
        assert_eq!(
            c.storage,
            Storage::Gcs(Gcs {
                bucket: "blobs".into(),
                prefix: "berth/".into(),
                service_account_key_file: Some(key_file.clone()),
                redirect: Some(Duration::from_secs(600)),
            })
        );
        assert_eq!(c.storage.redirect(), Some(Duration::from_secs(600)));
        // The environment overrides the file, with the backend's own names.
        let c = load(
            Some(&file),
            env(&[
                ("BERTH_GCS_BUCKET", "other"),
                ("BERTH_GCS_REDIRECT", "false"),
            ]),
            RawConfig::default(),
        )
        .unwrap();
        let Storage::Gcs(gcs) = &c.storage else {
            panic!("{:?}", c.storage)
        };
        assert_eq!(gcs.bucket, "other");
        assert_eq!(gcs.redirect, None);
        // Application default credentials: no key file at all.
        let c = load(
            None,
            env(&[("BERTH_STORAGE_BACKEND", "gcs"), ("BERTH_GCS_BUCKET", "b")]),
            RawConfig::default(),
        )
        .unwrap();
        assert!(matches!(&c.storage, Storage::Gcs(g) if g.service_account_key_file.is_none()));

        let key = dir.path().join("azure-key");
        std::fs::write(&key, "c2VjcmV0LWF6dXJlLWtleQ==\n").unwrap();
        let c = load(
            None,
            env(&[
                ("BERTH_STORAGE_BACKEND", "azure"),
                ("BERTH_AZURE_ACCOUNT", "berthacct"),
                ("BERTH_AZURE_CONTAINER", "blobs"),
                ("BERTH_AZURE_PREFIX", "p/"),
                ("BERTH_AZURE_ACCESS_KEY_FILE", key.to_str().unwrap()),
                ("BERTH_AZURE_ENDPOINT", "http://127.0.0.1:10000/berthacct"),
                ("BERTH_AZURE_ALLOW_HTTP", "true"),
                ("BERTH_AZURE_REDIRECT", "yes"),
            ]),
            RawConfig::default(),
        )
        .unwrap();
        assert_eq!(
            c.storage,
            Storage::Azure(Azure {
                account: "berthacct".into(),
                container: "blobs".into(),
                prefix: "p/".into(),
                access_key: Some("c2VjcmV0LWF6dXJlLWtleQ==".into()),
                endpoint: Some("http://127.0.0.1:10000/berthacct".into()),
                allow_http: true,
                redirect: Some(Duration::from_secs(300)),
            })
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let raw = RawConfig::from_env(env(&[("BERTH_AZURE_ACCESS_KEY", "c2VjcmV0")])).unwrap();
        assert!(!format!("{raw:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn gcs_and_azure_problems_name_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent.json");
        let err = load(
            None,
            env(&[
                ("BERTH_STORAGE_BACKEND", "gcs"),
                (
                    "BERTH_GCS_SERVICE_ACCOUNT_KEY_FILE",
                    absent.to_str().unwrap(),
                ),
                ("BERTH_GCS_REDIRECT_EXPIRY_SECS", "0"),
                ("BERTH_S3_REGION", "eu-west-1"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 4, "{text}");
        for field in [
            "storage.bucket: required when storage.backend is \"gcs\"",
            "storage.service_account_key_file:",
            "storage.redirect_expiry_secs: 0",
            "storage.region: not used by the \"gcs\" backend",
        ] {
            assert!(text.contains(field), "{field} in {text}");
        }

        let err = load(
            None,
            env(&[
                ("BERTH_STORAGE_BACKEND", "azure"),
                ("BERTH_AZURE_ACCESS_KEY", "not base64!"),
                ("BERTH_AZURE_ENDPOINT", "http://127.0.0.1:10000/acct"),
                ("BERTH_GCS_SERVICE_ACCOUNT_KEY_FILE", "/nowhere.json"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 5, "{text}");
        for field in [
            "storage.account: required",
            "storage.container: required",
            "storage.access_key: not base64",
            "storage.allow_http: must be true",
            "storage.service_account_key_file: not used by the \"azure\" backend",
        ] {
            assert!(text.contains(field), "{field} in {text}");
        }
        assert!(
            !text.contains("not base64!"),
            "the key is not echoed: {text}"
        );
        let err = load(
            None,
            env(&[
                ("BERTH_STORAGE_BACKEND", "azure"),
                ("BERTH_AZURE_ACCOUNT", "a"),
                ("BERTH_AZURE_CONTAINER", "c"),
                ("BERTH_AZURE_ACCESS_KEY_FILE", absent.to_str().unwrap()),
                ("BERTH_AZURE_ENDPOINT", "ftp://example"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("storage.access_key_file:"), "{err}");
        assert!(err.contains("storage.endpoint:"), "{err}");

        // Two backends' variables for one key must agree.
        let err = RawConfig::from_env(env(&[
            ("BERTH_S3_PREFIX", "a/"),
            ("BERTH_GCS_PREFIX", "b/"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("BERTH_GCS_PREFIX: conflicts with BERTH_S3_PREFIX"),
            "{err}"
        );
        assert!(
            RawConfig::from_env(env(&[
                ("BERTH_S3_PREFIX", "a/"),
                ("BERTH_AZURE_PREFIX", "a/")
            ]))
            .is_ok()
        );
        let err = RawConfig::from_env(env(&[("BERTH_AZURE_ALLOW_HTTP", "sometimes")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BERTH_AZURE_ALLOW_HTTP"), "{err}");
        let err = load(
            None,
            env(&[("BERTH_STORAGE_BACKEND", "ceph")]),
            RawConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"gcs\", \"azure\""), "{err}");
        // fs ignores the other backends' keys, as it always did.
        assert!(load(None, env(&[("BERTH_S3_BUCKET", "b")]), RawConfig::default()).is_ok());
    }

    #[test]
    fn postgres_urls_keep_tls_parameters_and_hide_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let url = format!(
            "postgres://berth:pw@db.internal:5432/berth?sslmode=verify-full&sslrootcert={}",
            ca.display()
        );
        let c = load(
            None,
            env(&[("BERTH_METADATA_URL", &url)]),
            RawConfig::default(),
        )
        .unwrap();
        assert_eq!(c.metadata_url, url);
        assert_eq!(
            redact_url(&url),
            format!(
                "postgres://berth:<redacted>@db.internal:5432/berth?sslmode=verify-full&sslrootcert={}",
                ca.display()
            )
        );
        for (url, shown) in [
            ("postgres://u:p@ss@h/db", "postgres://u:<redacted>@h/db"),
            (
                "postgres://u:pw@h/db?application_name=a@b",
                "postgres://u:<redacted>@h/db?application_name=a@b",
            ),
            (
                "postgres://u@h/db?password=pw&sslmode=require",
                "postgres://u@h/db?password=<redacted>&sslmode=require",
            ),
            ("postgres://u:p?w@h/db", "postgres://u:<redacted>@h/db"),
            (
                "postgres://h/db?sslmode=disable",
                "postgres://h/db?sslmode=disable",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }

        let err = load(
            None,
            env(&[(
                "BERTH_METADATA_URL",
                "postgres://u:secret@h/db?sslmode=verify_full&sslrootcert=/nowhere/ca.crt",
            )]),
            RawConfig::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 2, "{text}");
        assert!(
            text.contains("metadata.url: sslmode=\"verify_full\" is not one of"),
            "{text}"
        );
        assert!(
            text.contains("metadata.url: sslrootcert=/nowhere/ca.crt:"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        // Percent-encoded paths are decoded as sqlx decodes them.
        let spaced = dir.path().join("my ca.crt");
        std::fs::write(&spaced, "x").unwrap();
        let url = format!(
            "postgres://h/db?sslmode=verify-ca&sslrootcert={}",
            spaced.display().to_string().replace(' ', "%20")
        );
        assert!(
            load(
                None,
                env(&[("BERTH_METADATA_URL", &url)]),
                RawConfig::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn upload_ttl_and_reap_interval() {
        let c = load(None, env(&[]), RawConfig::default()).unwrap();
        assert_eq!(c.uploads.ttl, Duration::from_secs(86400));
        assert_eq!(c.uploads.reap_interval, Duration::from_secs(3600));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "[uploads]\nttl_secs = 600\nreap_interval_secs = 60\n",
        )
        .unwrap();
        let c = load(
            Some(&file),
            env(&[("BERTH_UPLOAD_TTL_SECS", "5")]),
            RawConfig::default(),
        )
        .unwrap();
        assert_eq!(c.uploads.ttl, Duration::from_secs(5));
        assert_eq!(c.uploads.reap_interval, Duration::from_secs(60));

        let err = load(
            None,
            env(&[
                ("BERTH_UPLOAD_TTL_SECS", "a day"),
                ("BERTH_UPLOAD_REAP_INTERVAL_SECS", "0"),
            ]),
            RawConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("BERTH_UPLOAD_TTL_SECS"), "{err}");
        let err = load(
            None,
            env(&[("BERTH_UPLOAD_REAP_INTERVAL_SECS", "0")]),
            RawConfig::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("uploads.reap_interval_secs"),
            "{err}"
        );
    }

    #[test]
    fn gc_settings_layer_and_validate() {
        let c = load(None, env(&[]), RawConfig::default()).unwrap();
        assert_eq!(c.gc.interval, Duration::from_secs(86400));
        assert_eq!(c.gc.grace, Duration::from_secs(3600));
        assert!(!c.gc.delete_untagged);
        assert_eq!(c.gc.restore_window, Duration::from_secs(7 * 86400));
        assert_eq!(c.gc.orphan_batch, 1000);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "[gc]\ninterval_secs = 60\ngrace_secs = 10\ndelete_untagged = true\n",
        )
        .unwrap();
        let c = load(
            Some(&file),
            env(&[
                ("BERTH_GC_GRACE_SECS", "2"),
                ("BERTH_GC_RESTORE_WINDOW_SECS", "0"),
            ]),
            RawConfig::default(),
        )
        .unwrap();
        assert_eq!(c.gc.interval, Duration::from_secs(60));
        assert_eq!(c.gc.grace, Duration::from_secs(2));
        assert!(c.gc.delete_untagged);
        assert_eq!(c.gc.restore_window, Duration::ZERO);

        let err = load(
            None,
            env(&[("BERTH_GC_INTERVAL_SECS", "0")]),
            RawConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("gc.interval_secs"), "{err}");
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "listn = \"127.0.0.1:1\"\n").unwrap();
        let err = load(Some(&file), env(&[]), RawConfig::default()).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
