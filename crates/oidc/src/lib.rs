//! OpenID Connect relying party for Berth.
//!
//! - **Browser login** ([`OidcClient`]): the authorization code flow with
//!   PKCE (S256, always), `state` compared in constant time, ID token checked
//!   for signature (the issuer's JWKS), `iss`, `aud`, `exp`, `iat`, `nbf` and
//!   `nonce`; groups and the username come from configurable claims.
//! - **Refresh** ([`OidcClient::refresh`]): a refresh token for a fresh,
//!   verified identity.
//! - **Workload identity** ([`WorkloadVerifier`]): a CI system's ID token
//!   (GitHub Actions, GitLab, …) used as a credential for a configured
//!   robot, by rules on issuer, audience and claims.
//!
//! Built on `openidconnect` 4.1 without its default features: its HTTP calls
//! go through a closure over the workspace's reqwest 0.13 client (redirects
//! disabled, bounded bodies), so oauth2's reqwest 0.12 is not compiled.
//!
//! Only asymmetric signatures are accepted (RS*, PS*, ES*, EdDSA): `none`
//! and the HMAC algorithms are refused before any other check. Error
//! messages never contain tokens, codes or secrets, and the `Debug` output of
//! the types that hold them is redacted.

mod client;
mod config;
mod error;
mod http;
mod jwt;
mod workload;

pub use client::{LOGIN_TIMEOUT_SECS, OidcClient, OidcIdentity, PendingLogin};
pub use config::OidcConfig;
pub use error::OidcError;
pub use workload::{WorkloadRule, WorkloadVerifier};

/// Default clock leeway for `exp`, `iat` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
