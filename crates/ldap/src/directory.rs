//! `LdapDirectory`: search-then-bind authentication, group resolution and
//! the pool of search-account connections.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::LdapConfig;
use crate::error::LdapError;
use crate::filter::{self, USERNAME_PLACEHOLDER, is_under, normalize_dn};
use crate::tls;

/// LDAP result codes (RFC 4511 appendix A) this module acts on.
const RC_SUCCESS: u32 = 0;
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
const RC_NO_SUCH_OBJECT: u32 = 32;
const RC_INVALID_CREDENTIALS: u32 = 49;

/// Longer login names are refused without asking the directory.
const MAX_USERNAME_BYTES: usize = 256;
/// Longer passwords are refused without a bind (no directory accepts them;
/// this bounds the work an attacker can make us send).
const MAX_PASSWORD_BYTES: usize = 1024;
/// Group resolution stops (with a warning) past this many groups.
const MAX_GROUPS: usize = 10_000;
/// Member DNs per group search: `(|(member=a)(member=b)…)`.
const GROUP_FILTER_CHUNK: usize = 32;
/// A pooled connection idle longer than this is dropped, not reused
/// (servers close idle connections: AD after 900 s by default).
const POOL_IDLE_MAX: Duration = Duration::from_secs(120);
/// Entries `test_connection` asks for at most.
const TEST_SAMPLE_LIMIT: i32 = 10;

/// A user the directory vouched for (or found, for [`LdapDirectory::find_user`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LdapUser {
    /// The entry's DN, as the server spells it.
    pub dn: String,
    /// The `username_attribute` value (the directory's spelling, which may
    /// differ in case from what was typed), else the name as given.
    pub username: String,
    /// First value of `email_attribute`.
    pub email: Option<String>,
    /// Direct and (with `nested_groups`) transitive groups, deduplicated,
    /// sorted by DN.
    pub groups: Vec<LdapGroup>,
}

/// A group the user belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LdapGroup {
    pub dn: String,
    /// First value of `group_name_attribute`, else the DN.
    pub name: String,
}

/// What [`LdapDirectory::test_connection`] saw.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// The search account's bind was accepted (always true for anonymous).
    pub bind_ok: bool,
    /// Entries matching `user_filter` with any username, at most 10.
    pub users_found: usize,
    /// The connection is encrypted (`ldaps://` or StartTLS).
    pub tls: bool,
    pub elapsed_ms: u64,
}

/// The directory: cheap to clone (an `Arc` inside), `Send + Sync`.
#[derive(Clone)]
pub struct LdapDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    config: LdapConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    /// Idle search-account connections (bound, or anonymous).
    idle: Mutex<Vec<Idle>>,
    /// One permit per search-account connection in use.
    permits: Semaphore,
}

struct Idle {
    ldap: Ldap,
    since: Instant,
}

/// A search-account connection taken from the pool (or opened for it).
struct Checkout<'a> {
    ldap: Ldap,
    reused: bool,
    _permit: SemaphorePermit<'a>,
}

/// The user's entry as the search account saw it.
struct UserEntry {
    dn: String,
    username: String,
    email: Option<String>,
    member_of: Vec<String>,
}

impl UserEntry {
    fn into_user(self, groups: Vec<LdapGroup>) -> LdapUser {
        LdapUser {
            dn: self.dn,
            username: self.username,
            email: self.email,
            groups,
        }
    }
}

/// Runs `$body` (a future using `$ldap: &mut Ldap`) on a pooled
/// search-account connection. A reused connection that fails at the
/// transport level (the server closed it while idle) is replaced once.
macro_rules! with_search_conn {
    ($inner:expr, |$ldap:ident| $body:expr) => {{
        let inner: &Inner = $inner;
        let mut conn = inner.checkout().await?;
        let mut result = {
            let $ldap = &mut conn.ldap;
            $body.await
        };
        if conn.reused && matches!(&result, Err(e) if e.is_connection()) {
            tracing::debug!("LDAP pooled connection failed; retrying on a fresh one");
            conn.ldap = inner.search_connection().await?;
            conn.reused = false;
            result = {
                let $ldap = &mut conn.ldap;
                $body.await
            };
        }
        match &result {
            Ok(_) | Err(LdapError::Directory { .. } | LdapError::AmbiguousUser { .. }) => inner.checkin(conn),
            // Timeouts and broken connections: drop it (its driver ends).
            Err(_) => {}
        }
        result
    }};
}

impl LdapDirectory {
    /// Validates `config` and builds the TLS configuration (reading
    /// `ca_file`). Opens no connection: the pool fills on demand.
    pub fn new(config: LdapConfig) -> Result<LdapDirectory, LdapError> {
        config.validate().map_err(LdapError::Config)?;
        let tls = tls::client_config(&config)?;
        if !config.uses_tls() {
            tracing::warn!(
                url = %config.url,
                "LDAP connection without TLS: passwords are sent in clear text (use ldaps:// or start_tls)"
            );
        }
        let timeout = Duration::from_secs(config.timeout_secs);
        let permits = Semaphore::new(config.pool_size);
        Ok(LdapDirectory {
            inner: Arc::new(Inner {
                config,
                tls,
                timeout,
                idle: Mutex::new(Vec::new()),
                permits,
            }),
        })
    }

    /// The validated configuration.
    pub fn config(&self) -> &LdapConfig {
        &self.inner.config
    }

    /// Checks `username`/`password` against the directory.
    ///
    /// `Ok(None)` for an unknown user or a wrong password alike (callers
    /// cannot tell them apart, so cannot enumerate users); an empty password
    /// is `Ok(None)` before any connection is made. `Err` only for directory
    /// or connection problems.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<LdapUser>, LdapError> {
        // An empty password makes a simple bind "unauthenticated": servers
        // answer success without checking anything (RFC 4513 5.1.2).
        if password.is_empty()
            || password.len() > MAX_PASSWORD_BYTES
            || !acceptable_username(username)
        {
            return Ok(None);
        }
        let inner = &*self.inner;
        let Some(entry) = inner.search_user(username).await? else {
            tracing::debug!(username, "LDAP: no such user");
            // The same round trips as a wrong password, so that response
            // times do not tell unknown users from known ones.
            inner.decoy_bind(password).await;
            return Ok(None);
        };
        if !inner.user_bind(&entry.dn, password).await? {
            tracing::debug!(username, dn = %entry.dn, "LDAP: password rejected");
            return Ok(None);
        }
        let groups = inner.groups(&entry).await?;
        Ok(Some(entry.into_user(groups)))
    }

    /// Looks a user up without a password (group refresh, admin lookups).
    pub async fn find_user(&self, username: &str) -> Result<Option<LdapUser>, LdapError> {
        if !acceptable_username(username) {
            return Ok(None);
        }
        let inner = &*self.inner;
        let Some(entry) = inner.search_user(username).await? else {
            return Ok(None);
        };
        let groups = inner.groups(&entry).await?;
        Ok(Some(entry.into_user(groups)))
    }

    /// Connects (fresh, not pooled), binds with the search account and
    /// searches the user base for a bounded sample of users. A rejected
    /// search account is `Ok` with `bind_ok: false`; an unreachable server,
    /// a TLS failure or a bad base DN is `Err`.
    pub async fn test_connection(&self) -> Result<ConnectionReport, LdapError> {
        let start = Instant::now();
        let inner = &*self.inner;
        let c = &inner.config;
        let (bind_ok, users_found) = match inner.search_connection().await {
            Ok(mut ldap) => {
                let mut sample = c.user_filter.replace(USERNAME_PLACEHOLDER, "*");
                if ldap3::parse_filter(&sample).is_err() {
                    sample = "(objectClass=*)".to_owned();
                }
                let (entries, _) = inner
                    .search(
                        &mut ldap,
                        "test search",
                        &c.user_base_dn,
                        Scope::Subtree,
                        &sample,
                        vec!["1.1"],
                        Some(TEST_SAMPLE_LIMIT),
                    )
                    .await?;
                inner.unbind(ldap).await;
                (true, entries.len())
            }
            Err(LdapError::SearchBindRejected { .. }) => (false, 0),
            Err(e) => return Err(e),
        };
        Ok(ConnectionReport {
            bind_ok,
            users_found,
            tls: c.uses_tls(),
            elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

impl fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapDirectory")
            .field("config", &self.inner.config)
            .field("tls", &self.inner.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Non-empty, bounded, no control characters. Anything else cannot be a
/// login name and is refused without asking the directory.
fn acceptable_username(username: &str) -> bool {
    !username.trim().is_empty()
        && username.len() <= MAX_USERNAME_BYTES
        && !username.chars().any(char::is_control)
}

/// `fut` within `limit`, its ldap3 error mapped.
async fn timed<T>(
    op: &'static str,
    limit: Duration,
    fut: impl Future<Output = ldap3::result::Result<T>>,
) -> Result<T, LdapError> {
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(LdapError::Timeout {
            op,
            secs: limit.as_secs(),
        }),
        Ok(r) => r.map_err(|e| LdapError::from_ldap3(op, limit.as_secs(), e)),
    }
}

/// Values of `attr` (attribute names compare case-insensitively).
fn values<'e>(entry: &'e SearchEntry, attr: &str) -> &'e [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map_or(&[], |(_, v)| v.as_slice())
}

fn first_value(entry: &SearchEntry, attr: &str) -> Option<String> {
    values(entry, attr).first().cloned()
}

impl Inner {
    /// A new connection (TCP, then TLS or StartTLS as configured), its
    /// driver spawned. Not bound.
    async fn connect(&self) -> Result<Ldap, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.config.start_tls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(Arc::clone(tls));
        }
        let url = &self.config.url;
        let secs = self.timeout.as_secs();
        let (conn, ldap) =
            match tokio::time::timeout(self.timeout, LdapConnAsync::with_settings(settings, url))
                .await
            {
                Err(_) | Ok(Err(ldap3::LdapError::Timeout { .. })) => {
                    return Err(LdapError::Timeout {
                        op: "connect",
                        secs,
                    });
                }
                Ok(Err(e)) => {
                    return Err(LdapError::Connect {
                        url: url.clone(),
                        message: e.to_string(),
                    });
                }
                Ok(Ok(pair)) => pair,
            };
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended with an error");
            }
        });
        Ok(ldap)
    }

    /// A new connection bound as the search account (or anonymous).
    async fn search_connection(&self) -> Result<Ldap, LdapError> {
        let mut ldap = self.connect().await?;
        if let (Some(dn), Some(pw)) = (&self.config.bind_dn, &self.config.bind_password) {
            let op = "search account bind";
            let res = timed(op, self.timeout, ldap.simple_bind(dn, pw)).await?;
            match res.rc {
                RC_SUCCESS => {}
                RC_INVALID_CREDENTIALS => {
                    return Err(LdapError::SearchBindRejected {
                        bind_dn: dn.clone(),
                    });
                }
                rc => {
                    return Err(LdapError::Directory {
                        op,
                        rc,
                        text: res.text,
                    });
                }
            }
        }
        Ok(ldap)
    }

    /// Best effort: tell the server, then drop (which ends the driver).
    async fn unbind(&self, mut ldap: Ldap) {
        let _ = tokio::time::timeout(self.timeout, ldap.unbind()).await;
    }

    async fn checkout(&self) -> Result<Checkout<'_>, LdapError> {
        let permit = match tokio::time::timeout(self.timeout, self.permits.acquire()).await {
            Err(_) => {
                return Err(LdapError::Timeout {
                    op: "wait for a pooled connection",
                    secs: self.timeout.as_secs(),
                });
            }
            Ok(permit) => permit.expect("the pool's semaphore is never closed"),
        };
        if let Some(ldap) = self.take_idle() {
            return Ok(Checkout {
                ldap,
                reused: true,
                _permit: permit,
            });
        }
        let ldap = self.search_connection().await?;
        Ok(Checkout {
            ldap,
            reused: false,
            _permit: permit,
        })
    }

    fn take_idle(&self) -> Option<Ldap> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(mut c) = idle.pop() {
            if c.since.elapsed() < POOL_IDLE_MAX && !c.ldap.is_closed() {
                return Some(c.ldap);
            }
        }
        None
    }

    fn checkin(&self, conn: Checkout<'_>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.config.pool_size {
            idle.push(Idle {
                ldap: conn.ldap,
                since: Instant::now(),
            });
        }
    }

    /// One search within the timeout (client side, and as the server's
    /// time limit). Size-limit-exceeded is not an error: the caller gets the
    /// entries and the code.
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        ldap: &mut Ldap,
        op: &'static str,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: Vec<&str>,
        size_limit: Option<i32>,
    ) -> Result<(Vec<SearchEntry>, u32), LdapError> {
        let secs = self.timeout.as_secs();
        let mut opts = SearchOptions::new().timelimit(i32::try_from(secs).unwrap_or(i32::MAX));
        if let Some(n) = size_limit {
            opts = opts.sizelimit(n);
        }
        let fut = ldap
            .with_search_options(opts)
            .with_timeout(self.timeout)
            .search(base, scope, filter, attrs);
        let ldap3::SearchResult(entries, result) = timed(op, self.timeout, fut).await?;
        match result.rc {
            RC_SUCCESS | RC_SIZE_LIMIT_EXCEEDED => Ok((
                entries.into_iter().map(SearchEntry::construct).collect(),
                result.rc,
            )),
            rc => Err(LdapError::Directory {
                op,
                rc,
                text: result.text,
            }),
        }
    }

    async fn search_user(&self, username: &str) -> Result<Option<UserEntry>, LdapError> {
        with_search_conn!(self, |ldap| self.search_user_on(ldap, username))
    }

    async fn search_user_on(
        &self,
        ldap: &mut Ldap,
        username: &str,
    ) -> Result<Option<UserEntry>, LdapError> {
        let c = &self.config;
        let filter = filter::user_filter(&c.user_filter, username);
        let mut attrs = vec![c.username_attribute.as_str(), c.email_attribute.as_str()];
        if c.use_member_of {
            attrs.push(c.member_of_attribute.as_str());
        }
        // Two are enough to know the filter is ambiguous.
        let (mut entries, rc) = self
            .search(
                ldap,
                "user search",
                &c.user_base_dn,
                Scope::Subtree,
                &filter,
                attrs,
                Some(2),
            )
            .await?;
        if entries.len() > 1 || rc == RC_SIZE_LIMIT_EXCEEDED {
            return Err(LdapError::AmbiguousUser {
                username: username.to_owned(),
                count: entries.len().max(2),
            });
        }
        let Some(entry) = entries.pop() else {
            return Ok(None);
        };
        Ok(Some(UserEntry {
            username: first_value(&entry, &c.username_attribute)
                .unwrap_or_else(|| username.to_owned()),
            email: first_value(&entry, &c.email_attribute),
            member_of: values(&entry, &c.member_of_attribute).to_vec(),
            dn: entry.dn,
        }))
    }

    /// Binds as `dn` with `password` on a fresh connection: `Ok(true)`
    /// accepted, `Ok(false)` invalid credentials (wrong password, and in AD
    /// also disabled, locked or expired accounts).
    async fn user_bind(&self, dn: &str, password: &str) -> Result<bool, LdapError> {
        if password.is_empty() || dn.is_empty() {
            // Never reached through authenticate(); an unauthenticated bind
            // would "succeed".
            return Ok(false);
        }
        let mut ldap = self.connect().await?;
        let op = "user bind";
        let res = timed(op, self.timeout, ldap.simple_bind(dn, password)).await;
        self.unbind(ldap).await;
        let res = res?;
        match res.rc {
            RC_SUCCESS => Ok(true),
            RC_INVALID_CREDENTIALS => Ok(false),
            rc => Err(LdapError::Directory {
                op,
                rc,
                text: res.text,
            }),
        }
    }

    /// A bind that fails like a wrong password: to a DN under the user base
    /// that no entry has (a constant, never the typed name). Its outcome is
    /// ignored.
    async fn decoy_bind(&self, password: &str) {
        let dn = format!("cn=berth-no-such-user,{}", self.config.user_base_dn);
        if let Err(e) = self.user_bind(&dn, password).await {
            tracing::debug!(error = %e, "LDAP decoy bind failed");
        }
    }

    async fn groups(&self, entry: &UserEntry) -> Result<Vec<LdapGroup>, LdapError> {
        if self.config.use_member_of {
            with_search_conn!(self, |ldap| self.groups_by_member_of(ldap, entry))
        } else if let Some(base) = &self.config.group_base_dn {
            with_search_conn!(self, |ldap| self.groups_by_search(ldap, base, &entry.dn))
        } else {
            Ok(Vec::new())
        }
    }

    /// Groups whose member attribute holds the user's DN, then (nested)
    /// groups holding those groups' DNs, level by level.
    async fn groups_by_search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        user_dn: &str,
    ) -> Result<Vec<LdapGroup>, LdapError> {
        let c = &self.config;
        let mut found = BTreeMap::new();
        let mut seen = HashSet::from([normalize_dn(user_dn)]);
        let mut frontier = vec![user_dn.to_owned()];
        let mut depth = 0;
        loop {
            let mut next = Vec::new();
            for chunk in frontier.chunks(GROUP_FILTER_CHUNK) {
                let filter = filter::any_of(&c.group_filter, &c.group_member_attribute, chunk);
                let attrs = vec![c.group_name_attribute.as_str()];
                let (entries, rc) = self
                    .search(
                        ldap,
                        "group search",
                        base,
                        Scope::Subtree,
                        &filter,
                        attrs,
                        None,
                    )
                    .await?;
                if rc == RC_SIZE_LIMIT_EXCEEDED {
                    tracing::warn!(
                        user_dn,
                        "LDAP group search hit the server's size limit; groups are incomplete"
                    );
                }
                for entry in entries {
                    if seen.insert(normalize_dn(&entry.dn)) {
                        let name = first_value(&entry, &c.group_name_attribute)
                            .unwrap_or_else(|| entry.dn.clone());
                        found.insert(entry.dn.clone(), name);
                        next.push(entry.dn);
                    }
                }
            }
            if !self.continue_nesting(&mut depth, &next, found.len(), user_dn) {
                break;
            }
            frontier = next;
        }
        Ok(found
            .into_iter()
            .map(|(dn, name)| LdapGroup { dn, name })
            .collect())
    }

    /// Groups named by the user's memberOf, each read (base search with
    /// `group_filter`) for its name and, nested, its own memberOf.
    async fn groups_by_member_of(
        &self,
        ldap: &mut Ldap,
        entry: &UserEntry,
    ) -> Result<Vec<LdapGroup>, LdapError> {
        let c = &self.config;
        let mut found = BTreeMap::new();
        let mut seen = HashSet::from([normalize_dn(&entry.dn)]);
        let mut frontier = entry.member_of.clone();
        let mut depth = 0;
        let mut attrs = vec![c.group_name_attribute.as_str()];
        if c.nested_groups && c.max_nesting_depth > 0 {
            attrs.push(c.member_of_attribute.as_str());
        }
        loop {
            let mut next = Vec::new();
            for dn in frontier {
                if !seen.insert(normalize_dn(&dn)) {
                    continue;
                }
                if let Some(base) = &c.group_base_dn
                    && !is_under(&dn, base)
                {
                    continue;
                }
                let read = self
                    .search(
                        ldap,
                        "group read",
                        &dn,
                        Scope::Base,
                        &c.group_filter,
                        attrs.clone(),
                        None,
                    )
                    .await;
                let groups = match read {
                    Ok((groups, _)) => groups,
                    // A dangling memberOf value, or a group we may not see.
                    Err(LdapError::Directory {
                        rc: RC_NO_SUCH_OBJECT,
                        ..
                    }) => continue,
                    Err(e) => return Err(e),
                };
                for group in groups {
                    let name = first_value(&group, &c.group_name_attribute)
                        .unwrap_or_else(|| group.dn.clone());
                    next.extend(values(&group, &c.member_of_attribute).iter().cloned());
                    found.insert(group.dn, name);
                }
            }
            if !self.continue_nesting(&mut depth, &next, found.len(), &entry.dn) {
                break;
            }
            frontier = next;
        }
        Ok(found
            .into_iter()
            .map(|(dn, name)| LdapGroup { dn, name })
            .collect())
    }

    /// Whether to follow another level of nesting; counts it.
    fn continue_nesting(
        &self,
        depth: &mut u32,
        next: &[String],
        found: usize,
        user_dn: &str,
    ) -> bool {
        let c = &self.config;
        if found >= MAX_GROUPS {
            tracing::warn!(
                user_dn,
                found,
                "LDAP group resolution stopped at the group limit"
            );
            return false;
        }
        if next.is_empty() || !c.nested_groups {
            return false;
        }
        if *depth >= c.max_nesting_depth {
            tracing::debug!(
                user_dn,
                depth = *depth,
                "LDAP nested groups: depth limit reached"
            );
            return false;
        }
        *depth += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn directory_is_send_sync_clone_and_futures_are_send() {
        assert_send_sync_clone::<LdapDirectory>();
        let dir = LdapDirectory::new(LdapConfig::new("ldap://127.0.0.1:1", "dc=x")).unwrap();
        assert_send(&dir.authenticate("a", "b"));
        assert_send(&dir.find_user("a"));
        assert_send(&dir.test_connection());
    }

    #[test]
    fn usernames_refused_without_asking() {
        assert!(acceptable_username("alice"));
        assert!(acceptable_username("star*(x)"));
        assert!(!acceptable_username(""));
        assert!(!acceptable_username("   "));
        assert!(!acceptable_username("alice\0"));
        assert!(!acceptable_username("alice\n"));
        assert!(!acceptable_username(&"a".repeat(MAX_USERNAME_BYTES + 1)));
    }

    #[test]
    fn new_rejects_invalid_config_and_unreadable_ca() {
        let err = LdapDirectory::new(LdapConfig::new("http://x", "dc=x")).unwrap_err();
        assert!(err.to_string().starts_with("auth.ldap.url:"), "{err}");
        let mut c = LdapConfig::new("ldaps://127.0.0.1:1", "dc=x");
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let err = LdapDirectory::new(c).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("auth.ldap.ca_file: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn debug_shows_no_password() {
        let mut c = LdapConfig::new("ldap://127.0.0.1:1", "dc=x");
        c.bind_dn = Some("cn=reader".into());
        c.bind_password = Some("hunter2-secret".into());
        let dir = LdapDirectory::new(c).unwrap();
        let dbg = format!("{dir:?}");
        assert!(!dbg.contains("hunter2-secret"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }
}
