//! Signing key rotation (system admin): a new key signs from now on; the
//! others keep verifying until the tokens they signed have expired
//! (refresh tokens included), then stop verifying.

use berth_auth::{Action, Permission, Resource, SigningKey};

use super::{Actor, check_system};
use crate::access::{Access, now_millis};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedKey {
    /// The key that signs from now on.
    pub kid: String,
    /// How many older keys were scheduled for retirement.
    pub retiring: u64,
    /// When they stop verifying (milliseconds).
    pub retire_at: i64,
}

impl Access {
    pub async fn rotate_signing_key(&self, actor: &Actor) -> Result<RotatedKey> {
        check_system(
            &actor.principal,
            Permission::new(Resource::Configuration, Action::Update),
            "rotating the token signing key",
        )?;
        if !actor.principal.is_system_admin() {
            return Err(Error::Denied(
                "only a system admin may rotate the token signing key".into(),
            ));
        }
        let key = SigningKey::generate()
            .map_err(|e| Error::Invalid(format!("token signing key: {e}")))?;
        let now = now_millis();
        // Old keys verify until what they signed has expired: access tokens
        // within minutes, refresh tokens (kept by `docker login`) in days.
        let lifetime = self
            .inner
            .token
            .refresh_lifetime
            .max(2 * self.inner.settings.token_lifetime)
            .as_millis() as i64;
        let retire_at = now + lifetime;
        let mut tx = self.meta().begin_identity().await?;
        tx.insert_signing_key(key.kid(), "ES256", key.to_pem(), now)
            .await?;
        let retiring = tx.retire_signing_keys_except(key.kid(), retire_at).await?;
        tx.commit().await?;
        // This node signs with the new key at once; the others within a
        // minute (or as soon as they meet a token it signed).
        self.inner.keys.reload(self.meta()).await?;
        self.auditor().record(
            actor
                .event("keys.rotate", format!("signing-key/{}", key.kid()))
                .details(format!("retiring={retiring}, retire_at={retire_at}")),
        );
        Ok(RotatedKey {
            kid: key.kid().to_string(),
            retiring,
            retire_at,
        })
    }
}
