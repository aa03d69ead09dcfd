//! Authorization of `/v2` requests and the tokens the token endpoint
//! issues. Both go through [`berth_auth::grant`], so a token never carries
//! more than a Basic-authenticated request of the same principal could do.

use std::collections::HashMap;

use berth_auth::{
    AccessEntry, BearerError, Claims, Principal, Project, ProjectAccess, Role, Scope, ScopeAction,
    ScopeTarget, TokenError, TokenResponse, parse_authorization, projects_of,
};

use super::audit::AuditEvent;
use super::login::{Login, LoginMethod};
use super::{Access, Origin, now_millis, now_secs};
use crate::{Error, Result};

/// Who a request is, as its `Authorization` header says.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// Basic credentials, checked.
    Login(Login),
    /// A bearer token from the token endpoint, verified.
    Token(Claims),
}

impl Caller {
    /// The audit log's actor name (`""` for anonymous).
    pub fn subject(&self) -> &str {
        match self {
            Caller::Anonymous => "",
            Caller::Login(l) => l.principal.subject(),
            Caller::Token(c) => &c.sub,
        }
    }

    pub fn audit(&self, action: &str, resource: impl Into<String>) -> AuditEvent {
        AuditEvent::by_subject(self.subject(), action, resource)
    }
}

fn unauthenticated(message: impl Into<String>, problem: Option<BearerError>) -> Error {
    Error::Unauthenticated {
        message: message.into(),
        problem,
    }
}

impl Access {
    /// Reads an `Authorization` header value: none is anonymous; Basic is
    /// checked like a login; Bearer must be a valid token of ours.
    pub async fn identify(&self, authorization: Option<&str>, origin: Origin) -> Result<Caller> {
        let Some(value) = authorization else {
            return Ok(Caller::Anonymous);
        };
        match parse_authorization(value) {
            None => Err(unauthenticated(
                "the Authorization header is neither Basic nor Bearer credentials",
                Some(BearerError::InvalidToken),
            )),
            Some(berth_auth::Credentials::Basic { username, password }) => Ok(Caller::Login(
                self.login(&username, &password, origin).await?,
            )),
            Some(berth_auth::Credentials::Bearer(token)) => {
                Ok(Caller::Token(self.verify_access_token(&token).await?))
            }
        }
    }

    async fn verify_access_token(&self, token: &str) -> Result<Claims> {
        let inner = &self.inner;
        let slot = TokenCache::slot(token);
        if let Some(claims) = inner
            .tokens
            .get(&slot, now_secs(), inner.token.leeway.as_secs())
        {
            return Ok(claims);
        }
        let verify = || {
            inner
                .keys
                .with(|k| k.verify(&inner.token, token, now_secs()))
        };
        let result = match verify() {
            Err(TokenError::UnknownKey) => {
                let kid = jsonwebtoken_kid(token);
                if inner.keys.knows_after_reload(&inner.meta, &kid).await? {
                    verify()
                } else {
                    Err(TokenError::UnknownKey)
                }
            }
            other => other,
        };
        let claims = result.map_err(|e| {
            unauthenticated(
                format!("bearer token rejected: {e}"),
                Some(BearerError::InvalidToken),
            )
        })?;
        inner.tokens.put(slot, claims.clone());
        Ok(claims)
    }

    /// Checks that `caller` may do every action of every scope in `needs`.
    /// Anonymous callers and tokens lacking a scope get
    /// [`Error::Unauthenticated`] (the client fetches a token and retries);
    /// logged-in principals get [`Error::Denied`].
    pub async fn authorize(&self, caller: &Caller, needs: &[Scope]) -> Result<()> {
        let missing: Vec<(&Scope, ScopeAction)> = match caller {
            Caller::Token(claims) => needs
                .iter()
                .flat_map(|s| s.actions.iter().map(move |a| (s, *a)))
                .filter(|(s, a)| !claims.allows(&s.target, *a))
                .collect(),
            Caller::Anonymous | Caller::Login(_) => {
                let principal = match caller {
                    Caller::Login(l) => &l.principal,
                    _ => &Principal::Anonymous,
                };
                let granted = self.grant(principal, needs).await?;
                needs
                    .iter()
                    .flat_map(|s| s.actions.iter().map(move |a| (s, *a)))
                    .filter(|(s, a)| !granted.iter().any(|g| g.allows(&s.target, *a)))
                    .collect()
            }
        };
        let Some((scope, action)) = missing.first() else {
            return Ok(());
        };
        // Anonymous callers learn nothing about which projects exist.
        let why = if matches!(caller, Caller::Anonymous) {
            "authentication required".to_string()
        } else {
            self.denial_reason(scope, *action).await?
        };
        match caller {
            Caller::Login(_) => Err(Error::Denied(why)),
            Caller::Anonymous => Err(unauthenticated(why, None)),
            Caller::Token(claims) => {
                // A new token helps only if its subject would be granted
                // the scope; otherwise say why with 403, which clients show
                // (a 401 would send them back to the token endpoint).
                if !claims.sub.is_empty()
                    && let Some(principal) = self.principal_by_subject(&claims.sub).await?
                {
                    let only = Scope {
                        target: scope.target.clone(),
                        actions: vec![*action],
                    };
                    let granted = self.grant(&principal, std::slice::from_ref(&only)).await?;
                    if !granted.iter().any(|g| g.allows(&scope.target, *action)) {
                        return Err(Error::Denied(why));
                    }
                }
                Err(unauthenticated(why, Some(BearerError::InsufficientScope)))
            }
        }
    }

    async fn denial_reason(&self, scope: &Scope, action: ScopeAction) -> Result<String> {
        if let Some(project) = scope.target.project()
            && self.meta().project_by_name(project).await?.is_none()
        {
            return Ok(format!(
                "project {project:?} does not exist; a system administrator must create it first"
            ));
        }
        Ok(match &scope.target {
            ScopeTarget::Catalog => "listing the catalog needs the catalog permission".into(),
            target => format!(
                "requested access to {} {} ({}) is denied",
                target.kind(),
                target.name(),
                action.as_str()
            ),
        })
    }

    /// The access `principal` has to `requested`: never more than asked,
    /// never more than its roles, grants or a public project allow.
    pub async fn grant(
        &self,
        principal: &Principal,
        requested: &[Scope],
    ) -> Result<Vec<AccessEntry>> {
        let mut accesses: HashMap<String, ProjectAccess> = HashMap::new();
        for name in projects_of(requested) {
            let wants_push = requested.iter().any(|s| {
                s.target.project() == Some(name)
                    && (s.actions.contains(&ScopeAction::Push)
                        || s.actions.contains(&ScopeAction::All))
            });
            if let Some(access) = self.project_access(principal, name, wants_push).await? {
                accesses.insert(name.to_string(), access);
            }
        }
        Ok(berth_auth::grant(
            principal,
            requested,
            |name| accesses.get(name),
            now_millis(),
        ))
    }

    /// The project and the principal's roles in it; `None` when it does not
    /// exist (created first when a system admin pushes and
    /// `auto_create_projects` is on).
    async fn project_access(
        &self,
        principal: &Principal,
        name: &str,
        wants_push: bool,
    ) -> Result<Option<ProjectAccess>> {
        let meta = self.meta();
        let mut row = meta.project_by_name(name).await?;
        if row.is_none()
            && wants_push
            && principal.is_system_admin()
            && self.inner.settings.auto_create_projects
            && berth_auth::validate_project_name(name).is_ok()
        {
            let mut tx = meta.begin_identity().await?;
            let created = tx.insert_project(name, false).await?;
            tx.commit().await?;
            if created.is_some() {
                self.auditor().record(
                    AuditEvent::by(principal, "project.create", format!("project/{name}"))
                        .project(name)
                        .details("created by the first push (auto_create_projects)"),
                );
            }
            row = meta.project_by_name(name).await?;
        }
        let Some(row) = row else {
            return Ok(None);
        };
        let roles = match principal {
            Principal::User { id, groups, .. } => meta
                .member_roles(row.id, Some(*id), groups)
                .await?
                .iter()
                .filter_map(|r| r.parse::<Role>().ok())
                .collect(),
            _ => Vec::new(),
        };
        Ok(Some(ProjectAccess {
            project: Project {
                name: row.name,
                public: row.public,
            },
            roles,
        }))
    }

    /// The token endpoint: a token for `login` (anonymous when `None`)
    /// carrying what it may do of `scopes`; with a refresh token when
    /// `offline` is asked and the login was a password or robot secret (a
    /// personal access token's limits cannot ride on a refresh token).
    pub async fn issue_token(
        &self,
        login: Option<&Login>,
        scopes: &[Scope],
        offline: bool,
    ) -> Result<TokenResponse> {
        let principal = login.map_or(&Principal::Anonymous, |l| &l.principal);
        let access = self.grant(principal, scopes).await?;
        let inner = &self.inner;
        inner.keys.refresh_if_stale(&inner.meta).await?;
        let now = now_secs();
        let subject = principal.subject();
        let (access, refresh) = inner
            .keys
            .with(|keys| {
                let access = keys.issue(&inner.token, subject, access, now)?;
                let refresh = match login {
                    Some(l)
                        if offline
                            && matches!(
                                l.method,
                                LoginMethod::Password | LoginMethod::RobotSecret
                            ) =>
                    {
                        Some(keys.issue_refresh(&inner.token, subject, now)?)
                    }
                    _ => None,
                };
                Ok::<_, TokenError>((access, refresh))
            })
            .map_err(|e| Error::Invalid(format!("signing a token: {e}")))?;
        Ok(TokenResponse::new(access, refresh))
    }

    /// The token endpoint's refresh grant: the account must still exist and
    /// be enabled; its current roles decide the new token's access.
    pub async fn refresh_token(
        &self,
        refresh: &str,
        scopes: &[Scope],
        origin: Origin,
    ) -> Result<TokenResponse> {
        let inner = &self.inner;
        let verify = || {
            inner
                .keys
                .with(|k| k.verify_refresh(&inner.token, refresh, now_secs()))
        };
        let claims = match verify() {
            Err(TokenError::UnknownKey)
                if inner
                    .keys
                    .knows_after_reload(&inner.meta, &jsonwebtoken_kid(refresh))
                    .await? =>
            {
                verify()
            }
            other => other,
        }
        .map_err(|e| unauthenticated(format!("refresh token rejected: {e}"), None))?;
        let Some(principal) = self.principal_by_subject(&claims.sub).await? else {
            self.auditor().record(
                AuditEvent::by_subject(&claims.sub, "login", format!("user/{}", claims.sub))
                    .result("failure")
                    .from_addr(origin.addr)
                    .details("refresh token of a disabled or deleted account"),
            );
            return Err(unauthenticated(
                "refresh token rejected: account is disabled",
                None,
            ));
        };
        let login = Login {
            principal,
            method: LoginMethod::Password,
        };
        self.issue_token(Some(&login), scopes, false).await
    }
}

/// Access tokens already verified, by SHA-256 of the token, until they
/// expire: a client sends the same token with every request of a push or
/// pull, and an ES256 verification costs more than the rest of a manifest
/// GET. Only successes are kept; the map is bounded.
#[derive(Default)]
pub(super) struct TokenCache {
    entries: std::sync::Mutex<HashMap<[u8; 32], Claims>>,
}

const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    fn slot(token: &str) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    fn get(&self, slot: &[u8; 32], now: u64, leeway: u64) -> Option<Claims> {
        let map = self.entries.lock().expect("token cache lock");
        map.get(slot)
            .filter(|c| now < c.exp.saturating_add(leeway))
            .cloned()
    }

    fn put(&self, slot: [u8; 32], claims: Claims) {
        let mut map = self.entries.lock().expect("token cache lock");
        if map.len() >= TOKEN_CACHE_MAX {
            let now = now_secs();
            map.retain(|_, c| now < c.exp);
            if map.len() >= TOKEN_CACHE_MAX {
                map.clear();
            }
        }
        map.insert(slot, claims);
    }
}

/// The `kid` of a JWT's header, or empty.
fn jsonwebtoken_kid(token: &str) -> String {
    use base64::Engine;
    token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v.get("kid").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_default()
}
