//! Credentials → [`Principal`]: local passwords (argon2id), robot secrets
//! and personal access tokens. Every failure looks the same to the caller
//! ("invalid username or password"), costs the same work for unknown and
//! known accounts, and counts towards the failed-login limiter.
//!
//! Successful logins are cached for [`CACHE_TTL`] under a keyed hash of the
//! credentials, so clients that send Basic credentials on every request
//! (curl, simple scripts) do not pay an argon2 verification per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_auth::secret::{self, SecretKind};
use berth_auth::{Grant, Principal, is_robot_name};
use berth_meta::UserRow;
use sha2::{Digest as _, Sha256};

use super::audit::AuditEvent;
use super::{Access, Origin, now_millis};
use crate::{Error, Result};

const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 10_000;

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    Password,
    RobotSecret,
    PersonalToken,
    /// A CI system's OIDC ID token mapped to a robot.
    WorkloadIdentity,
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct Login {
    pub principal: Principal,
    pub method: LoginMethod,
}

pub(super) struct LoginCache {
    key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], (Login, Instant)>>,
}

impl Default for LoginCache {
    fn default() -> LoginCache {
        LoginCache {
            key: rand_key(),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

fn rand_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .enumerate()
    {
        k[i] = *b;
    }
    k
}

impl LoginCache {
    fn slot(&self, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((username.len() as u64).to_le_bytes());
        h.update(username.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn get(&self, slot: &[u8; 32]) -> Option<Login> {
        let map = self.entries.lock().expect("login cache lock");
        map.get(slot)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(l, _)| l.clone())
    }

    fn put(&self, slot: [u8; 32], login: Login) {
        let mut map = self.entries.lock().expect("login cache lock");
        if map.len() >= CACHE_MAX {
            map.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(slot, (login, Instant::now()));
    }

    /// Forgets every cached login (after a password, robot or token change).
    pub(super) fn clear(&self) {
        self.entries.lock().expect("login cache lock").clear();
    }
}

fn invalid() -> Error {
    Error::Unauthenticated {
        message: "invalid username or password".into(),
        problem: None,
    }
}

impl Access {
    /// Checks a username and password (or robot secret, or personal access
    /// token in the password field).
    pub async fn login(&self, username: &str, password: &str, origin: Origin) -> Result<Login> {
        if username.is_empty() || password.is_empty() {
            return Err(invalid());
        }
        let inner = &self.inner;
        let slot = inner.logins.slot(username, password);
        if let Some(hit) = inner.logins.get(&slot) {
            return Ok(hit);
        }
        let workload = inner
            .settings
            .workload
            .as_ref()
            .filter(|_| super::oidc::looks_like_jwt(password));
        if let Some(retry_after_secs) = inner.limiter.blocked(username, origin.addr) {
            self.auditor().record(
                AuditEvent::by_subject(username, "login", format!("user/{username}"))
                    .result("denied")
                    .from_addr(origin.addr)
                    .details("rate limited"),
            );
            return Err(Error::TooManyRequests { retry_after_secs });
        }
        let outcome = if let Some(verifier) = workload {
            self.login_workload(verifier, username, password).await?
        } else if SecretKind::of(password) == Some(SecretKind::PersonalAccessToken) {
            self.login_token(username, password).await?
        } else if is_robot_name(username) {
            self.login_robot(username, password).await?
        } else {
            self.login_password(username, password).await?
        };
        let method = match &outcome {
            Some(l) => format!("{:?}", l.method),
            None => "unknown".into(),
        };
        let event = AuditEvent::by_subject(username, "login", format!("user/{username}"))
            .from_addr(origin.addr)
            .details(method);
        match outcome {
            Some(login) => {
                inner.limiter.succeeded(username);
                self.auditor().record(event);
                // An ID token is short-lived and checked each time.
                if login.method != LoginMethod::WorkloadIdentity {
                    inner.logins.put(slot, login.clone());
                }
                Ok(login)
            }
            None => {
                inner.limiter.failed(username, origin.addr);
                self.auditor().record(event.result("failure"));
                Err(invalid())
            }
        }
    }

    async fn login_password(&self, username: &str, password: &str) -> Result<Option<Login>> {
        let user = self.meta().user_by_name(username).await?;
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let passwords = self.inner.passwords.clone();
        let candidate = password.to_string();
        let matched =
            tokio::task::spawn_blocking(move || passwords.verify(&candidate, stored.as_deref()))
                .await
                .map_err(|e| Error::Invalid(format!("password check task: {e}")))?;
        match user {
            Some(u) if matched && !u.disabled => Ok(Some(Login {
                principal: self.user_principal(&u, None).await?,
                method: LoginMethod::Password,
            })),
            // Not a local account (or a directory one): ask the directory.
            ref u if u.as_ref().is_none_or(|u| u.source == "ldap") => {
                match &self.inner.settings.ldap {
                    Some(ldap) => self.login_ldap(ldap, username, password).await,
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    async fn login_robot(&self, name: &str, secret_text: &str) -> Result<Option<Login>> {
        let Some(robot) = self.meta().robot_by_name(name).await? else {
            // The same hash work as a real check.
            let _ = secret::verify(secret_text, "sha256:0");
            return Ok(None);
        };
        if !secret::verify(secret_text, &robot.secret_hash) || robot.disabled {
            return Ok(None);
        }
        if robot.expires_at.is_some_and(|t| now_millis() >= t) {
            return Ok(None);
        }
        Ok(Some(Login {
            principal: robot_principal(&robot)?,
            method: LoginMethod::RobotSecret,
        }))
    }

    async fn login_token(&self, username: &str, token: &str) -> Result<Option<Login>> {
        if !secret::well_formed(SecretKind::PersonalAccessToken, token) {
            return Ok(None);
        }
        let Some(row) = self.meta().token_by_hash(&secret::hash(token)).await? else {
            return Ok(None);
        };
        let now = now_millis();
        if row.expires_at.is_some_and(|t| now >= t) {
            return Ok(None);
        }
        let Some(user) = self.meta().user_by_id(row.user_id).await? else {
            return Ok(None);
        };
        if user.disabled || user.name != username {
            return Ok(None);
        }
        let scopes = match &row.scopes {
            Some(json) => Some(parse_grants(json)?),
            None => None,
        };
        let _ = self.meta().touch_token(row.id, now).await;
        Ok(Some(Login {
            principal: self.user_principal(&user, scopes).await?,
            method: LoginMethod::PersonalToken,
        }))
    }

    pub(crate) async fn user_principal(
        &self,
        user: &UserRow,
        limited_to: Option<Vec<Grant>>,
    ) -> Result<Principal> {
        let groups = self
            .meta()
            .groups_of_user(user.id)
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect();
        Ok(Principal::User {
            id: user.id,
            name: user.name.clone(),
            system_admin: user.system_admin,
            groups,
            limited_to,
        })
    }

    /// The principal a refresh token's subject names now: the account must
    /// still exist and be enabled (and a robot unexpired).
    pub(crate) async fn principal_by_subject(&self, subject: &str) -> Result<Option<Principal>> {
        if is_robot_name(subject) {
            let Some(robot) = self.meta().robot_by_name(subject).await? else {
                return Ok(None);
            };
            if robot.disabled || robot.expires_at.is_some_and(|t| now_millis() >= t) {
                return Ok(None);
            }
            return Ok(Some(robot_principal(&robot)?));
        }
        match self.meta().user_by_name(subject).await? {
            Some(u) if !u.disabled => Ok(Some(self.user_principal(&u, None).await?)),
            _ => Ok(None),
        }
    }

    /// Forgets cached logins, so a changed password, disabled account or
    /// revoked secret stops working on this node at once (other nodes
    /// within the cache's 30 seconds).
    pub fn forget_logins(&self) {
        self.inner.logins.clear();
    }
}

pub(crate) fn robot_principal(robot: &berth_meta::RobotRow) -> Result<Principal> {
    Ok(Principal::Robot {
        id: robot.id,
        name: robot.name.clone(),
        permissions: parse_grants(&robot.permissions)?,
        expires_at: robot.expires_at,
    })
}

pub(crate) fn parse_grants(json: &str) -> Result<Vec<Grant>> {
    serde_json::from_str(json).map_err(|e| Error::Invalid(format!("stored permissions: {e}")))
}
