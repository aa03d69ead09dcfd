//! Identity and access, pure: who a request is ([`Principal`]), what it may
//! do ([`decide`], [`grant`]), and the credentials that prove it
//! (passwords, generated secrets, token JWTs).
//!
//! This crate has no HTTP types and no SQL. The API layer parses headers
//! with [`parse_authorization`], looks accounts up through `berth-meta`,
//! checks the credential here, builds a [`Principal`], and asks [`decide`]
//! (or [`grant`] at the token endpoint) with the project and roles it
//! looked up. Everything not explicitly allowed is denied.
//!
//! - [`password`]: argon2id PHC hashes; unknown users cost the same.
//! - [`secret`]: robot secrets and personal access tokens (prefixed,
//!   checksummed, stored as SHA-256).
//! - [`rbac`]: Harbor's roles and permission table, robots' grants,
//!   [`decide`].
//! - [`scope`]: Docker token scopes, parsing and [`grant`].
//! - [`token`]: ES256 JWTs, key rotation, JWKS.
//! - [`challenge`]: `WWW-Authenticate` values, `Authorization` parsing.

pub mod challenge;
pub mod password;
pub mod principal;
pub mod rbac;
pub mod scope;
pub mod secret;
pub mod token;

pub use challenge::{
    BearerError, Credentials, basic_challenge, bearer_challenge, parse_authorization,
};
pub use password::{PasswordError, PasswordParams, Passwords, check_new_password};
pub use principal::{
    Principal, ROBOT_NAME_PREFIX, is_robot_name, robot_account_name, validate_user_name,
};
pub use rbac::{
    Action, DEFAULT_PROJECT, Decision, Denial, Grant, Namespace, Permission, Project, Resource,
    Role, Target, decide, grants_allow, grants_within, project_of, validate_grants,
    validate_project_name,
};
pub use scope::{
    AccessEntry, ProjectAccess, Scope, ScopeAction, ScopeError, ScopeTarget, grant, parse_scopes,
    projects_of,
};
pub use secret::{NewSecret, RevealedSecret, SecretKind};
pub use token::{
    Claims, IssuedToken, KeyError, KeySet, SigningKey, TokenConfig, TokenError, TokenResponse,
    rfc3339, seed_random_generator,
};
