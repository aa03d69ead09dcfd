//! `[auth.ldap]` settings and their validation.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::filter::{USERNAME_PLACEHOLDER, is_attribute_description};

/// Where the settings live in Berth's configuration; every validation
/// message starts with `auth.ldap.<field>`.
const PREFIX: &str = "auth.ldap";

/// How to reach the directory and where users and groups are.
///
/// `Debug` is written by hand: it shows `bind_password` as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything else.
    #[serde(default)]
    pub start_tls: bool,
    /// PEM CA bundle that verifies the server for `ldaps://` or StartTLS.
    /// Unset: the system's trust store (rustls-native-certs).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// DN of the search account. Unset: anonymous search.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// Password of the search account; required with `bind_dn`.
    #[serde(default)]
    pub bind_password: Option<String>,
    /// Subtree searched for users.
    pub user_base_dn: String,
    /// Filter finding one user; `{username}` is replaced by the RFC 4515
    /// escaped login name. AD: `(sAMAccountName={username})`.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Attribute holding the canonical username (`uid`; AD: `sAMAccountName`).
    #[serde(default = "default_username_attribute")]
    pub username_attribute: String,
    /// Attribute holding the e-mail address.
    #[serde(default = "default_email_attribute")]
    pub email_attribute: String,
    /// Subtree searched for groups. Unset (and `use_member_of` off): no
    /// group lookup. With `use_member_of`, only groups under it are kept.
    #[serde(default)]
    pub group_base_dn: Option<String>,
    /// Filter selecting group entries.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// Attribute of a group listing member DNs (`member`; `uniqueMember`).
    #[serde(default = "default_group_member_attribute")]
    pub group_member_attribute: String,
    /// Attribute holding a group's name.
    #[serde(default = "default_group_name_attribute")]
    pub group_name_attribute: String,
    /// Read groups from the user's (and, nested, the groups') `memberOf`
    /// instead of searching groups by member.
    #[serde(default)]
    pub use_member_of: bool,
    /// Attribute read when `use_member_of` is on.
    #[serde(default = "default_member_of_attribute")]
    pub member_of_attribute: String,
    /// Resolve groups of groups transitively.
    #[serde(default = "default_true")]
    pub nested_groups: bool,
    /// How many levels of nesting above the direct groups are followed.
    #[serde(default = "default_max_nesting_depth")]
    pub max_nesting_depth: u32,
    /// Pooled connections of the search account.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Limit for each network operation (connect, TLS, bind, search).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_user_filter() -> String {
    "(uid={username})".to_owned()
}
fn default_username_attribute() -> String {
    "uid".to_owned()
}
fn default_email_attribute() -> String {
    "mail".to_owned()
}
fn default_group_filter() -> String {
    "(objectClass=groupOfNames)".to_owned()
}
fn default_group_member_attribute() -> String {
    "member".to_owned()
}
fn default_group_name_attribute() -> String {
    "cn".to_owned()
}
fn default_member_of_attribute() -> String {
    "memberOf".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_max_nesting_depth() -> u32 {
    10
}
fn default_pool_size() -> usize {
    4
}
fn default_timeout_secs() -> u64 {
    10
}

/// Upper bounds that validation enforces.
const MAX_POOL_SIZE: usize = 64;
const MAX_TIMEOUT_SECS: u64 = 300;
const MAX_NESTING_DEPTH: u32 = 64;

impl LdapConfig {
    /// A configuration with every optional field at its default.
    pub fn new(url: impl Into<String>, user_base_dn: impl Into<String>) -> LdapConfig {
        LdapConfig {
            url: url.into(),
            start_tls: false,
            ca_file: None,
            bind_dn: None,
            bind_password: None,
            user_base_dn: user_base_dn.into(),
            user_filter: default_user_filter(),
            username_attribute: default_username_attribute(),
            email_attribute: default_email_attribute(),
            group_base_dn: None,
            group_filter: default_group_filter(),
            group_member_attribute: default_group_member_attribute(),
            group_name_attribute: default_group_name_attribute(),
            use_member_of: false,
            member_of_attribute: default_member_of_attribute(),
            nested_groups: true,
            max_nesting_depth: default_max_nesting_depth(),
            pool_size: default_pool_size(),
            timeout_secs: default_timeout_secs(),
        }
    }

    /// Whether the connection is `ldaps://` (scheme compared case-insensitively).
    pub(crate) fn is_ldaps(&self) -> bool {
        scheme_and_rest(&self.url).is_some_and(|(s, _)| s == Scheme::Ldaps)
    }

    /// Whether connections are encrypted (`ldaps://` or StartTLS).
    pub(crate) fn uses_tls(&self) -> bool {
        self.is_ldaps() || self.start_tls
    }

    /// Checks every field; all problems are reported, joined by `"; "`, each
    /// naming its field (`auth.ldap.url: ...`). Does no I/O: `ca_file` is
    /// read by [`crate::LdapDirectory::new`].
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, msg: String| problems.push(format!("{PREFIX}.{field}: {msg}"));

        match scheme_and_rest(&self.url) {
            None => bad(
                "url",
                format!("{:?} must start with ldap:// or ldaps://", self.url),
            ),
            Some((scheme, rest)) => {
                let hostport = rest.strip_suffix('/').unwrap_or(rest);
                if hostport.is_empty() {
                    bad("url", format!("{:?} has no host", self.url));
                } else if hostport.contains(['/', '?', '#', '@', ' ']) {
                    bad(
                        "url",
                        format!(
                            "{:?} must be just scheme://host[:port] (no DN, path, query or credentials)",
                            self.url
                        ),
                    );
                } else if let Some(port) = port_of(hostport)
                    && port.parse::<u16>().map_or(true, |p| p == 0)
                {
                    bad("url", format!("{:?} has an invalid port", self.url));
                }
                if scheme == Scheme::Ldaps && self.start_tls {
                    bad(
                        "start_tls",
                        "cannot be combined with an ldaps:// url (already TLS)".into(),
                    );
                }
            }
        }
        if self.ca_file.is_some() && !self.uses_tls() {
            bad(
                "ca_file",
                "is set but the connection is not encrypted: use an ldaps:// url or start_tls = true".into(),
            );
        }
        if self
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            bad("ca_file", "must not be empty".into());
        }

        match (&self.bind_dn, &self.bind_password) {
            (Some(dn), _) if dn.trim().is_empty() => bad(
                "bind_dn",
                "must not be empty (leave it out for anonymous search)".into(),
            ),
            (Some(_), None) => bad("bind_password", "is required when bind_dn is set".into()),
            (Some(_), Some(pw)) if pw.is_empty() => bad(
                "bind_password",
                "must not be empty: LDAP treats an empty-password bind as anonymous".into(),
            ),
            (None, Some(_)) => bad("bind_password", "is set but bind_dn is not".into()),
            _ => {}
        }

        if self.user_base_dn.trim().is_empty() {
            bad("user_base_dn", "must not be empty".into());
        }
        if !self.user_filter.contains(USERNAME_PLACEHOLDER) {
            bad(
                "user_filter",
                format!("{:?} must contain {USERNAME_PLACEHOLDER}", self.user_filter),
            );
        } else if let Err(msg) = check_filter(&self.user_filter.replace(USERNAME_PLACEHOLDER, "x"))
        {
            bad("user_filter", format!("{:?} {msg}", self.user_filter));
        }
        if let Err(msg) = check_filter(&self.group_filter) {
            bad("group_filter", format!("{:?} {msg}", self.group_filter));
        }
        for (field, value) in [
            ("username_attribute", &self.username_attribute),
            ("email_attribute", &self.email_attribute),
            ("group_member_attribute", &self.group_member_attribute),
            ("group_name_attribute", &self.group_name_attribute),
            ("member_of_attribute", &self.member_of_attribute),
        ] {
            if !is_attribute_description(value) {
                bad(field, format!("{value:?} is not an attribute name"));
            }
        }
        if self
            .group_base_dn
            .as_ref()
            .is_some_and(|b| b.trim().is_empty())
        {
            bad(
                "group_base_dn",
                "must not be empty (leave it out for no group lookup)".into(),
            );
        }
        if self.max_nesting_depth > MAX_NESTING_DEPTH {
            bad(
                "max_nesting_depth",
                format!("must be at most {MAX_NESTING_DEPTH}"),
            );
        }
        if self.pool_size == 0 || self.pool_size > MAX_POOL_SIZE {
            bad(
                "pool_size",
                format!("must be between 1 and {MAX_POOL_SIZE}"),
            );
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            bad(
                "timeout_secs",
                format!("must be between 1 and {MAX_TIMEOUT_SECS}"),
            );
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("ca_file", &self.ca_file)
            .field("bind_dn", &self.bind_dn)
            .field(
                "bind_password",
                &self.bind_password.as_ref().map(|_| "<redacted>"),
            )
            .field("user_base_dn", &self.user_base_dn)
            .field("user_filter", &self.user_filter)
            .field("username_attribute", &self.username_attribute)
            .field("email_attribute", &self.email_attribute)
            .field("group_base_dn", &self.group_base_dn)
            .field("group_filter", &self.group_filter)
            .field("group_member_attribute", &self.group_member_attribute)
            .field("group_name_attribute", &self.group_name_attribute)
            .field("use_member_of", &self.use_member_of)
            .field("member_of_attribute", &self.member_of_attribute)
            .field("nested_groups", &self.nested_groups)
            .field("max_nesting_depth", &self.max_nesting_depth)
            .field("pool_size", &self.pool_size)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Ldap,
    Ldaps,
}

fn scheme_and_rest(url: &str) -> Option<(Scheme, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.eq_ignore_ascii_case("ldap") {
        Some((Scheme::Ldap, rest))
    } else if scheme.eq_ignore_ascii_case("ldaps") {
        Some((Scheme::Ldaps, rest))
    } else {
        None
    }
}

/// The port part of `host:port` or `[v6]:port`, if any.
fn port_of(hostport: &str) -> Option<&str> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (_, after) = rest.split_once(']')?;
        after.strip_prefix(':')
    } else {
        hostport.rsplit_once(':').map(|(_, p)| p)
    }
}

/// A filter must be one parenthesised filter that ldap3 can encode.
fn check_filter(filter: &str) -> Result<(), &'static str> {
    let f = filter.trim();
    if !(f.starts_with('(') && f.ends_with(')')) {
        return Err("must be enclosed in parentheses");
    }
    ldap3::parse_filter(f)
        .map(|_| ())
        .map_err(|_| "is not a valid LDAP filter")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> LdapConfig {
        let mut c = LdapConfig::new("ldap://127.0.0.1:3890", "ou=people,dc=example,dc=org");
        c.bind_dn = Some("cn=reader,dc=example,dc=org".into());
        c.bind_password = Some("s3cret-pw".into());
        c.group_base_dn = Some("ou=groups,dc=example,dc=org".into());
        c
    }

    fn problems(c: &LdapConfig) -> String {
        c.validate().expect_err("should be invalid")
    }

    #[test]
    fn defaults_validate() {
        good().validate().unwrap();
        LdapConfig::new("ldaps://ldap.example.org", "dc=example,dc=org")
            .validate()
            .unwrap();
        LdapConfig::new("LDAP://[::1]:389/", "dc=example,dc=org")
            .validate()
            .unwrap();
    }

    #[test]
    fn url_problems_name_the_field() {
        for url in [
            "",
            "http://x",
            "ldap://",
            "ldap:///",
            "ldap://h/dc=x",
            "ldap://u@h",
            "ldap://h:0",
            "ldap://h:99999",
            "ldap://h:x",
        ] {
            let mut c = good();
            c.url = url.into();
            let p = problems(&c);
            assert!(p.starts_with("auth.ldap.url: "), "{url}: {p}");
        }
        let mut c = good();
        c.url = "ldaps://h".into();
        c.start_tls = true;
        assert!(problems(&c).contains("auth.ldap.start_tls:"));
        let mut c = good();
        c.ca_file = Some("/ca.pem".into());
        assert!(problems(&c).contains("auth.ldap.ca_file:"));
        c.start_tls = true;
        c.validate().unwrap();
    }

    #[test]
    fn bind_account_problems() {
        let mut c = good();
        c.bind_password = None;
        assert!(problems(&c).contains("auth.ldap.bind_password: is required"));
        c.bind_password = Some(String::new());
        assert!(problems(&c).contains("auth.ldap.bind_password: must not be empty"));
        c.bind_dn = None;
        assert!(problems(&c).contains("auth.ldap.bind_password: is set but bind_dn is not"));
        c.bind_password = None;
        c.validate().unwrap(); // anonymous search
        c.bind_dn = Some(" ".into());
        assert!(problems(&c).contains("auth.ldap.bind_dn:"));
    }

    #[test]
    fn filter_and_attribute_problems() {
        let mut c = good();
        c.user_filter = "(uid=alice)".into();
        assert!(problems(&c).contains("auth.ldap.user_filter:"));
        c.user_filter = "uid={username}".into();
        assert!(problems(&c).contains("must be enclosed in parentheses"));
        c.user_filter = "(&(uid={username})".into();
        assert!(problems(&c).contains("auth.ldap.user_filter:"));
        c.user_filter = "(&(objectClass=person)(sAMAccountName={username}))".into();
        c.validate().unwrap();
        c.group_filter = "objectClass=group".into();
        assert!(problems(&c).contains("auth.ldap.group_filter:"));
        let mut c = good();
        c.email_attribute = "mail)(x".into();
        assert!(problems(&c).contains("auth.ldap.email_attribute:"));
        let mut c = good();
        c.group_base_dn = Some(String::new());
        assert!(problems(&c).contains("auth.ldap.group_base_dn:"));
    }

    #[test]
    fn limits_and_all_problems_reported() {
        let mut c = good();
        c.pool_size = 0;
        c.timeout_secs = 0;
        c.max_nesting_depth = 1000;
        c.user_base_dn = String::new();
        let p = problems(&c);
        for field in [
            "pool_size",
            "timeout_secs",
            "max_nesting_depth",
            "user_base_dn",
        ] {
            assert!(p.contains(&format!("auth.ldap.{field}:")), "{field} in {p}");
        }
        assert_eq!(p.matches("; ").count(), 3, "{p}");
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let c: LdapConfig = toml::from_str(
            r#"
            url = "ldap://127.0.0.1:3890"
            user_base_dn = "ou=people,dc=example,dc=org"
            "#,
        )
        .unwrap();
        assert_eq!(c.user_filter, "(uid={username})");
        assert_eq!(c.username_attribute, "uid");
        assert_eq!(c.email_attribute, "mail");
        assert_eq!(c.group_filter, "(objectClass=groupOfNames)");
        assert_eq!(c.group_member_attribute, "member");
        assert_eq!(c.group_name_attribute, "cn");
        assert_eq!(c.member_of_attribute, "memberOf");
        assert!(c.nested_groups && !c.use_member_of && !c.start_tls);
        assert_eq!(
            (c.pool_size, c.timeout_secs, c.max_nesting_depth),
            (4, 10, 10)
        );
        c.validate().unwrap();

        let err = toml::from_str::<LdapConfig>(
            r#"
            url = "ldap://h"
            user_base_dn = "dc=x"
            bind_pasword = "typo"
            "#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bind_pasword"), "{err}");
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = good();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret-pw"), "{dbg}");
        assert!(dbg.contains("bind_password: Some(\"<redacted>\")"), "{dbg}");
        let dbg = format!("{c:#?}");
        assert!(!dbg.contains("s3cret-pw"));
    }
}
