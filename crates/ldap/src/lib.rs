//! LDAP / Active Directory authentication for Berth.
//!
//! The flow is the usual *search, then bind*:
//!
//! 1. A search account (`bind_dn`/`bind_password`, or anonymous) looks the
//!    user up under `user_base_dn` with `user_filter`, the username escaped
//!    per RFC 4515. Exactly one entry must match. DNs are never built from
//!    the username.
//! 2. The user's password is checked by a simple bind **as that entry's DN on
//!    a fresh connection** (never on a pooled search connection). An empty
//!    password is refused before any connection is made: LDAP treats a simple
//!    bind with an empty password as an *unauthenticated* bind that succeeds.
//! 3. Groups are resolved by searching `group_base_dn` for groups whose
//!    `member` is the user (or, with `use_member_of`, by reading `memberOf`),
//!    then, with `nested_groups`, groups of those groups, breadth first, with
//!    a visited set (cycles end) and a depth limit.
//!
//! Search-account connections are pooled (`pool_size`); every operation has
//! a timeout (`timeout_secs`). TLS (`ldaps://` or StartTLS) uses rustls with
//! the aws-lc-rs provider passed explicitly, so no process-wide default
//! provider is needed. Passwords never appear in `Debug` output or errors.

mod config;
mod directory;
mod error;
mod filter;
mod tls;

pub use config::LdapConfig;
pub use directory::{ConnectionReport, LdapDirectory, LdapGroup, LdapUser};
pub use error::LdapError;
pub use filter::escape_filter_value;
