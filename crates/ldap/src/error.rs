//! Errors: directory, connection and configuration problems. A wrong
//! password or an unknown user is not an error (`Ok(None)`).
//!
//! No variant carries a password: messages hold the operation, the server's
//! result code and diagnostic text, and transport errors.

/// Why the directory could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// Invalid settings; the message names the field (`auth.ldap.url: ...`).
    #[error("{0}")]
    Config(String),
    /// The TLS client configuration could not be built (CA file unreadable,
    /// no certificate in it, no system roots).
    #[error("auth.ldap.ca_file: {0}")]
    Tls(String),
    /// TCP connect, TLS handshake or StartTLS failed.
    #[error("cannot connect to LDAP server {url}: {message}")]
    Connect { url: String, message: String },
    /// An operation did not finish within `timeout_secs`.
    #[error("LDAP {op} timed out after {secs}s")]
    Timeout { op: &'static str, secs: u64 },
    /// The connection broke during an operation.
    #[error("LDAP connection failed during {op}: {message}")]
    Connection { op: &'static str, message: String },
    /// The search account's bind was refused (result code 49).
    #[error("LDAP search account {bind_dn:?} was rejected: invalid credentials")]
    SearchBindRejected { bind_dn: String },
    /// The server answered an operation with an error result code.
    #[error("LDAP {op} failed: result code {rc}{}", text_suffix(.text))]
    Directory {
        op: &'static str,
        rc: u32,
        text: String,
    },
    /// `user_filter` matched more than one entry for this username.
    #[error(
        "LDAP user_filter matched {count} entries for username {username:?}; it must match at most one"
    )]
    AmbiguousUser { username: String, count: usize },
}

fn text_suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

impl LdapError {
    /// Transport-level failure: a pooled connection that fails this way is
    /// worth one retry on a fresh connection.
    pub(crate) fn is_connection(&self) -> bool {
        matches!(self, LdapError::Connection { .. })
    }

    /// Maps an ldap3 error of operation `op`.
    pub(crate) fn from_ldap3(op: &'static str, secs: u64, e: ldap3::LdapError) -> LdapError {
        match e {
            ldap3::LdapError::Timeout { .. } => LdapError::Timeout { op, secs },
            ldap3::LdapError::FilterParsing => {
                LdapError::Config(format!("LDAP {op}: the filter does not parse"))
            }
            ldap3::LdapError::LdapResult { result } => LdapError::Directory {
                op,
                rc: result.rc,
                text: result.text,
            },
            other => LdapError::Connection {
                op,
                message: other.to_string(),
            },
        }
    }
}
