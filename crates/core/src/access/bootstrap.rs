//! The system admin, created on first start. Its password's argon2id hash
//! is the slowest step of a first start (tens of milliseconds), so the
//! server may start it on a blocking thread before the database has even
//! migrated ([`AdminPassword::choose`] with parameters) and the two
//! overlap.

use berth_auth::{PasswordParams, Passwords};
use tokio::task::JoinHandle;

use super::Access;
use super::audit::AuditEvent;
use crate::{Error, Result};

/// The admin's password: `BERTH_ADMIN_PASSWORD` or a generated one, maybe
/// already being hashed.
pub struct AdminPassword {
    /// The password, or why the given one is refused (reported only if an
    /// admin has to be created: a restart does not re-check it).
    text: std::result::Result<String, String>,
    generated: bool,
    hashing: Option<JoinHandle<std::result::Result<String, String>>>,
}

impl AdminPassword {
    /// `given`, or a generated password. With `hash_with`, hashing starts
    /// at once on a blocking thread (call it on a first start only: on a
    /// restart the admin exists and the work would be wasted).
    pub fn choose(given: Option<&str>, hash_with: Option<PasswordParams>) -> AdminPassword {
        let (text, generated) = match given {
            Some(p) => (
                berth_auth::check_new_password(p)
                    .map(|()| p.to_string())
                    .map_err(|e| format!("BERTH_ADMIN_PASSWORD: {e}")),
                false,
            ),
            None => {
                let secret =
                    berth_auth::secret::generate(berth_auth::SecretKind::PersonalAccessToken);
                // Shorter than a token, still ~190 bits from the CSPRNG.
                (Ok(secret.plaintext.expose()[10..42].to_string()), true)
            }
        };
        let hashing = match (&text, hash_with) {
            (Ok(password), Some(params)) => {
                let password = password.clone();
                Some(tokio::task::spawn_blocking(move || {
                    Passwords::new(params)
                        .and_then(|p| p.hash(&password))
                        .map_err(|e| format!("password: {e}"))
                }))
            }
            _ => None,
        };
        AdminPassword {
            text,
            generated,
            hashing,
        }
    }
}

impl Access {
    /// Creates the system admin `admin` on first start. Returns the
    /// password when one was generated (to print once); `None` when the
    /// account existed or `password` was given.
    pub async fn bootstrap_admin(&self, password: Option<&str>) -> Result<Option<String>> {
        self.bootstrap_admin_with(AdminPassword::choose(password, None))
            .await
    }

    /// [`Access::bootstrap_admin`] with a password chosen (and maybe
    /// hashed) ahead of time. A hash started with other parameters than
    /// this registry's is used all the same: verification reads the
    /// parameters from the hash.
    pub async fn bootstrap_admin_with(&self, password: AdminPassword) -> Result<Option<String>> {
        let meta = &self.inner.meta;
        if meta.user_by_name("admin").await?.is_some() {
            return Ok(None);
        }
        let text = password.text.map_err(Error::Invalid)?;
        let hash = match password.hashing {
            Some(hashing) => hashing
                .await
                .map_err(|e| Error::Invalid(format!("hashing task: {e}")))?
                .map_err(Error::Invalid)?,
            None => self.hash_password(&text).await?,
        };
        let mut tx = meta.begin_identity().await?;
        let created = tx
            .insert_user(berth_meta::NewUser {
                name: "admin",
                email: None,
                source: "local",
                external_id: None,
                password_hash: Some(&hash),
                system_admin: true,
            })
            .await?;
        tx.commit().await?;
        if created.is_none() {
            // Another node created it first.
            return Ok(None);
        }
        self.inner.audit.record(AuditEvent::system(
            "user.create",
            "user/admin",
            None,
            "bootstrap system admin",
        ));
        Ok(password.generated.then_some(text))
    }
}
