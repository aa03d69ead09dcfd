//! Configuration: a raw, all-optional layer read from the TOML file, the
//! `BERTH_*` environment and the command line, merged with that precedence
//! (file < env < CLI), then validated into a typed [`Config`]. Validation
//! reports every problem at once, each naming its field.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// Serve on a non-loopback address even though no authentication exists
    /// yet: anyone who reaches the port can push, pull and delete.
    pub allow_unauthenticated_remote: Option<bool>,
    pub tls: Option<RawTls>,
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
        RawConfig {
            listen: over.listen.or(self.listen),
            data_dir: over.data_dir.or(self.data_dir),
            log_format: over.log_format.or(self.log_format),
            allow_unauthenticated_remote: over
                .allow_unauthenticated_remote
                .or(self.allow_unauthenticated_remote),
            tls,
        }
    }

    /// Reads `BERTH_LISTEN`, `BERTH_DATA_DIR`, `BERTH_LOG_FORMAT`,
    /// `BERTH_ALLOW_UNAUTHENTICATED_REMOTE`, `BERTH_TLS_CERT`, `BERTH_TLS_KEY`
    /// through `var` (the process environment in production).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<RawConfig, ConfigError> {
        let mut problems = Vec::new();
        let allow = var("BERTH_ALLOW_UNAUTHENTICATED_REMOTE").and_then(|v| match v.as_str() {
            "1" | "true" | "yes" => Some(true),
            "0" | "false" | "no" | "" => Some(false),
            other => {
                problems.push(format!(
                    "BERTH_ALLOW_UNAUTHENTICATED_REMOTE: {other:?} is not a boolean (true/false)"
                ));
                None
            }
        });
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
            allow_unauthenticated_remote: allow,
            tls,
        })
    }

    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("config file {}: {e}", path.display())]))?;
        toml::from_str(&text)
            .map_err(|e| ConfigError(vec![format!("config file {}: {e}", path.display())]))
    }
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
        if let Some(addr) = listen
            && !addr.ip().is_loopback()
            && self.allow_unauthenticated_remote != Some(true)
        {
            problems.push(format!(
                "listen: {addr} is not a loopback address and Berth has no authentication yet; \
                 set allow_unauthenticated_remote = true (or pass --allow-unauthenticated-remote) \
                 to serve anyone who can reach it"
            ));
        }
        match (listen, problems.is_empty()) {
            (Some(listen), true) => Ok(Config {
                listen,
                data_dir: self
                    .data_dir
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
                log_format,
                tls,
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
    fn remote_listen_needs_explicit_consent() {
        let raw = RawConfig {
            listen: Some("0.0.0.0:5000".into()),
            ..RawConfig::default()
        };
        assert!(
            raw.clone()
                .validate()
                .unwrap_err()
                .to_string()
                .contains("allow_unauthenticated_remote")
        );
        let ok = RawConfig {
            allow_unauthenticated_remote: Some(true),
            ..raw
        };
        assert!(ok.validate().is_ok());
        assert!(
            RawConfig::from_env(env(&[("BERTH_ALLOW_UNAUTHENTICATED_REMOTE", "maybe")])).is_err()
        );
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
