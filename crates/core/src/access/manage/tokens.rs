//! Personal access tokens: a user's own, for `docker login` and scripts.
//! Each expires (1 to 365 days) and may be scoped to grants that narrow
//! what the user's roles allow. Robots have none; a token cannot make
//! tokens (it could otherwise outlive or widen itself).

use berth_auth::secret::{self, SecretKind};
use berth_auth::{Grant, Namespace, Principal, RevealedSecret};
use berth_meta::TokenRow;

use super::{
    Actor, PageRequest, Paged, check_label, expiry_from_days, invalid, require_authenticated,
};
use crate::access::login::parse_grants;
use crate::access::{Access, LoginMethod};
use crate::{Error, Result};

/// Longest token lifetime in days.
pub const MAX_TOKEN_DAYS: i64 = 365;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    /// `None`: the token does everything its user may.
    pub scopes: Option<Vec<Grant>>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
}

/// A token with its secret, returned once at creation.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub token: TokenInfo,
    pub secret: RevealedSecret,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub expires_in_days: i64,
    pub scopes: Option<Vec<Grant>>,
}

fn token_info(row: TokenRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.id,
        scopes: row.scopes.as_deref().map(parse_grants).transpose()?,
        name: row.name,
        expires_at: row.expires_at,
        last_used_at: row.last_used_at,
        created_at: row.created_at,
    })
}

/// The user behind the actor; robots have no tokens.
fn token_owner(actor: &Actor) -> Result<(i64, &str)> {
    require_authenticated(actor)?;
    match &actor.principal {
        Principal::User { id, name, .. } => Ok((*id, name)),
        _ => Err(Error::Denied(
            "robot accounts cannot have personal access tokens".into(),
        )),
    }
}

impl Access {
    pub async fn list_tokens(
        &self,
        actor: &Actor,
        page: PageRequest<'_>,
    ) -> Result<Paged<TokenInfo>> {
        let (user_id, _) = token_owner(actor)?;
        let after = page
            .after
            .map(|a| {
                a.parse::<i64>()
                    .map_err(|_| invalid("after", "must be a token id"))
            })
            .transpose()?;
        let mut rows = self.meta().tokens_of_user(user_id).await?;
        rows.sort_by_key(|t| t.id);
        rows.retain(|t| after.is_none_or(|a| t.id > a));
        rows.truncate(page.limit() + 1);
        let items = rows
            .into_iter()
            .map(token_info)
            .collect::<Result<Vec<_>>>()?;
        Ok(Paged::cut(items, page.limit(), |t: &TokenInfo| {
            t.id.to_string()
        }))
    }

    pub async fn create_token(&self, actor: &Actor, new: NewToken) -> Result<CreatedToken> {
        let (user_id, user_name) = token_owner(actor)?;
        if actor.method == Some(LoginMethod::PersonalToken) {
            return Err(Error::Denied(
                "a personal access token cannot create tokens; authenticate with your password"
                    .into(),
            ));
        }
        check_label("name", &new.name, 100)?;
        let expires_at = expiry_from_days(
            "expires_in_days",
            new.expires_in_days,
            MAX_TOKEN_DAYS,
            false,
        )?;
        let scopes = match &new.scopes {
            Some(grants) => {
                berth_auth::validate_grants(grants).map_err(|e| invalid("scopes", e))?;
                self.check_token_scopes(actor, grants).await?;
                Some(
                    serde_json::to_string(grants)
                        .map_err(|e| Error::Invalid(format!("scopes: {e}")))?,
                )
            }
            None => None,
        };
        let secret = secret::generate(SecretKind::PersonalAccessToken);
        let mut tx = self.meta().begin_identity().await?;
        let id = tx
            .insert_token(
                user_id,
                &new.name,
                &secret.hash,
                scopes.as_deref(),
                expires_at,
            )
            .await?
            .ok_or_else(|| {
                Error::Conflict(format!("you already have a token named {:?}", new.name))
            })?;
        tx.commit().await?;
        self.auditor().record(
            actor
                .event(
                    "token.create",
                    format!("user/{user_name}/token/{}", new.name),
                )
                .details(format!(
                    "id={id}, scopes={}",
                    scopes.as_deref().unwrap_or("all")
                )),
        );
        let row = self
            .meta()
            .tokens_of_user(user_id)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::NotFound(format!("token {id} vanished")))?;
        Ok(CreatedToken {
            token: token_info(row)?,
            secret: secret.plaintext,
        })
    }

    /// Scopes must stay where the user works: projects it is a member of
    /// (directly or through a group); system admins may scope anything.
    async fn check_token_scopes(&self, actor: &Actor, grants: &[Grant]) -> Result<()> {
        if actor.principal.is_system_admin() {
            return Ok(());
        }
        for g in grants {
            let Namespace::Project(name) = &g.namespace else {
                return Err(invalid(
                    "scopes",
                    "only a system admin may scope a token to the system or to all projects",
                ));
            };
            let ctx = match self.project_ctx(&actor.principal, name).await {
                Ok(ctx) => ctx,
                Err(Error::NotFound(m)) => return Err(invalid("scopes", m)),
                Err(e) => return Err(e),
            };
            if ctx.roles.is_empty() {
                return Err(invalid(
                    "scopes",
                    format!("you are not a member of project {name:?}"),
                ));
            }
        }
        Ok(())
    }

    pub async fn delete_token(&self, actor: &Actor, id: i64) -> Result<()> {
        let (user_id, user_name) = token_owner(actor)?;
        let name = self
            .meta()
            .tokens_of_user(user_id)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.name)
            .ok_or_else(|| Error::NotFound(format!("you have no token {id}")))?;
        let mut tx = self.meta().begin_identity().await?;
        tx.delete_token(user_id, id).await?;
        tx.commit().await?;
        self.forget_logins();
        self.auditor().record(
            actor
                .event("token.delete", format!("user/{user_name}/token/{name}"))
                .details(format!("id={id}")),
        );
        Ok(())
    }
}
