//! OpenID Connect: browser logins (authorization code with PKCE) that end
//! in a session cookie, and CI workload identity (a pipeline's ID token as
//! the password of a robot account).
//!
//! Nothing is kept in node memory between the two legs of a login: the
//! pending login (state, nonce, PKCE verifier) rides in a short-lived
//! cookie signed with the registry's token keys, so the callback may land
//! on any node. Sessions are signed the same way, with another audience
//! than registry tokens so neither can stand in for the other.

use std::time::Duration;

use berth_meta::NewUser;
use berth_oidc::{OidcClient, OidcIdentity, PendingLogin, WorkloadVerifier};
use serde_json::json;

use super::audit::AuditEvent;
use super::login::{Login, LoginMethod, robot_principal};
use super::{Access, Origin, now_millis, now_secs};
use crate::{Error, Result};

const LOGIN_USE: &str = "oidc_login";
const SESSION_USE: &str = "session";
/// How long a browser has to come back from the provider.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(600);
/// A session lasts a working day; an OIDC session can be refreshed.
const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

#[derive(Clone, Debug)]
pub struct OidcSettings {
    pub client: OidcClient,
}

/// A browser session, as the session cookie carries it.
#[derive(Debug, Clone)]
pub struct Session {
    pub login: Login,
    /// The cookie value.
    pub token: String,
    pub max_age: Duration,
}

impl Access {
    fn session_config(&self) -> berth_auth::TokenConfig {
        let mut c = self.inner.token.clone();
        c.service = format!("{}#session", c.service);
        c
    }

    pub fn oidc_enabled(&self) -> bool {
        self.inner.settings.oidc.is_some()
    }

    fn oidc(&self) -> Result<&OidcSettings> {
        self.inner
            .settings
            .oidc
            .as_ref()
            .ok_or_else(|| Error::NotFound("OIDC login is not configured ([auth.oidc])".into()))
    }

    /// Starts a browser login: the provider URL to redirect to, and the
    /// value of the cookie that must come back with the callback.
    pub fn oidc_begin(&self) -> Result<(String, String)> {
        let oidc = self.oidc()?;
        let (url, pending) = oidc.client.begin_login();
        let ext = serde_json::to_value(&pending)
            .map_err(|e| Error::Invalid(format!("pending login: {e}")))?;
        let cookie = self.sign_special(LOGIN_USE, "", ext, LOGIN_WINDOW)?;
        Ok((url, cookie))
    }

    /// Finishes a browser login: checks the state against the cookie,
    /// exchanges the code, mirrors the user and groups, opens a session.
    pub async fn oidc_complete(
        &self,
        login_cookie: &str,
        state: &str,
        code: &str,
        origin: Origin,
    ) -> Result<Session> {
        let oidc = self.oidc()?;
        let claims = self.verify_special(LOGIN_USE, login_cookie)?;
        let pending: PendingLogin = serde_json::from_value(claims.ext.unwrap_or_default())
            .map_err(|_| unauthenticated("the login cookie is not a pending login"))?;
        let identity = match oidc.client.complete_login(&pending, state, code).await {
            Ok(identity) => identity,
            Err(e) => {
                self.auditor().record(
                    AuditEvent::by_subject("", "login", "oidc")
                        .result("failure")
                        .from_addr(origin.addr)
                        .details(e.to_string()),
                );
                return Err(unauthenticated(&format!("OIDC login failed: {e}")));
            }
        };
        self.open_oidc_session(&identity, origin).await
    }

    /// Renews an OIDC session with the provider's refresh token: the
    /// provider must still accept the user, whose groups and admin right
    /// are taken afresh.
    pub async fn oidc_refresh(&self, session_token: &str, origin: Origin) -> Result<Session> {
        let oidc = self.oidc()?;
        let claims = self.verify_special(SESSION_USE, session_token)?;
        let ext = claims.ext.unwrap_or_default();
        let refresh = ext
            .get("refresh_token")
            .and_then(|v| v.as_str())
            .ok_or_else(|| unauthenticated("this session cannot be refreshed"))?;
        let subject = ext.get("oidc_subject").and_then(|v| v.as_str());
        let identity = oidc
            .client
            .refresh(refresh)
            .await
            .map_err(|e| unauthenticated(&format!("OIDC refresh failed: {e}")))?;
        if subject != Some(identity.subject.as_str()) {
            return Err(unauthenticated("OIDC refresh returned another subject"));
        }
        self.open_oidc_session(&identity, origin).await
    }

    async fn open_oidc_session(&self, identity: &OidcIdentity, origin: Origin) -> Result<Session> {
        let user = self.mirror_oidc_user(identity).await?;
        if user.disabled {
            return Err(unauthenticated("the account is disabled"));
        }
        let principal = self.user_principal(&user, None).await?;
        self.auditor().record(
            AuditEvent::by(&principal, "login", format!("user/{}", user.name))
                .from_addr(origin.addr)
                .details("oidc"),
        );
        let mut ext = json!({ "oidc_subject": identity.subject });
        if let Some(rt) = &identity.refresh_token {
            ext["refresh_token"] = json!(rt);
        }
        let token = self.sign_special(SESSION_USE, &user.name, ext, SESSION_LIFETIME)?;
        Ok(Session {
            login: Login {
                principal,
                method: LoginMethod::Password,
            },
            token,
            max_age: SESSION_LIFETIME,
        })
    }

    /// The login a session cookie stands for; the account must still be
    /// enabled. Robots never get sessions.
    pub async fn session(&self, token: &str) -> Result<Login> {
        let claims = self.verify_special(SESSION_USE, token)?;
        match self.principal_by_subject(&claims.sub).await? {
            Some(principal @ berth_auth::Principal::User { .. }) => Ok(Login {
                principal,
                method: LoginMethod::Password,
            }),
            _ => Err(unauthenticated("the session's account is disabled or gone")),
        }
    }

    /// A session for a user who logged in with a password (the UI's local
    /// login). Robots may not use the UI.
    pub fn open_session(&self, login: &Login) -> Result<Session> {
        if !login.principal.may_use_ui() || login.method != LoginMethod::Password {
            return Err(Error::Denied(
                "robot accounts and personal access tokens cannot open a session".into(),
            ));
        }
        let token = self.sign_special(
            SESSION_USE,
            login.principal.subject(),
            json!({}),
            SESSION_LIFETIME,
        )?;
        Ok(Session {
            login: login.clone(),
            token,
            max_age: SESSION_LIFETIME,
        })
    }

    async fn mirror_oidc_user(&self, id: &OidcIdentity) -> Result<berth_meta::UserRow> {
        let meta = self.meta();
        let external = format!("{}|{}", id.issuer, id.subject);
        berth_auth::validate_user_name(&id.username)
            .map_err(|e| Error::Invalid(format!("OIDC username claim: {e}")))?;
        let mut tx = meta.begin_identity().await?;
        let user_id = match meta.user_by_external_id("oidc", &external).await? {
            Some(u) => {
                if u.email.as_deref() != id.email.as_deref() {
                    tx.set_user_email(u.id, id.email.as_deref()).await?;
                }
                if u.system_admin != id.is_admin {
                    tx.set_system_admin(u.id, id.is_admin).await?;
                }
                u.id
            }
            None => tx
                .insert_user(NewUser {
                    name: &id.username,
                    email: id.email.as_deref(),
                    source: "oidc",
                    external_id: Some(&external),
                    password_hash: None,
                    system_admin: id.is_admin,
                })
                .await?
                .ok_or_else(|| {
                    Error::Conflict(format!(
                        "user {:?} already exists with another source; the OIDC login is refused",
                        id.username
                    ))
                })?,
        };
        let mut group_ids = Vec::with_capacity(id.groups.len());
        for g in &id.groups {
            group_ids.push(tx.upsert_group("oidc", g, None).await?);
        }
        tx.set_user_groups(user_id, &group_ids).await?;
        tx.commit().await?;
        meta.user_by_id(user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {:?} vanished", id.username)))
    }

    /// Workload identity: `token` is a CI system's ID token; a configured
    /// rule maps it to a robot. The username must be that robot's name (or
    /// `workload`, to let the rules pick). `Ok(None)` when nothing matches.
    pub(super) async fn login_workload(
        &self,
        verifier: &WorkloadVerifier,
        username: &str,
        token: &str,
    ) -> Result<Option<Login>> {
        let robot_name = match verifier.robot_for(token).await {
            Ok(Some(name)) => name,
            Ok(None) | Err(_) => return Ok(None),
        };
        if username != robot_name && username != "workload" {
            return Ok(None);
        }
        let Some(robot) = self.meta().robot_by_name(&robot_name).await? else {
            return Ok(None);
        };
        if robot.disabled || robot.expires_at.is_some_and(|t| now_millis() >= t) {
            return Ok(None);
        }
        Ok(Some(Login {
            principal: robot_principal(&robot)?,
            method: LoginMethod::WorkloadIdentity,
        }))
    }

    fn sign_special(
        &self,
        token_use: &str,
        subject: &str,
        ext: serde_json::Value,
        lifetime: Duration,
    ) -> Result<String> {
        let config = self.session_config();
        self.inner
            .keys
            .with(|k| k.issue_special(&config, subject, token_use, ext, lifetime, now_secs()))
            .map(|t| t.token)
            .map_err(|e| Error::Invalid(format!("signing a {token_use} token: {e}")))
    }

    fn verify_special(&self, token_use: &str, token: &str) -> Result<berth_auth::Claims> {
        let config = self.session_config();
        self.inner
            .keys
            .with(|k| k.verify_special(&config, token, token_use, now_secs()))
            .map_err(|e| unauthenticated(&format!("{token_use} cookie rejected: {e}")))
    }
}

fn unauthenticated(message: &str) -> Error {
    Error::Unauthenticated {
        message: message.to_string(),
        problem: None,
    }
}

/// Whether a password looks like a JWT (a CI ID token), cheaply.
pub(super) fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|b| *b == b'.').count() == 2 && s.len() < 16 * 1024
}
