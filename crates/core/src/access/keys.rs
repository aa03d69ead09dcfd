//! Token signing keys, shared by every node through the `signing_keys`
//! table: the first node to start creates one; a node that meets a token
//! signed by a key it has not loaded (another node rotated) reloads.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use berth_auth::{KeySet, SigningKey};
use berth_meta::MetaStore;

use super::now_millis;
use crate::{Error, Result};

/// A reload for an unknown `kid` happens at most this often, so forged
/// tokens with random kids cannot make every request hit the database.
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// A node picks up keys rotated elsewhere within this long.
const MAX_AGE: Duration = Duration::from_secs(60);

pub(super) struct Keys {
    set: RwLock<KeySet>,
    loaded_at: RwLock<Instant>,
    /// When an unknown `kid` last made this node reload. Kept apart from
    /// `loaded_at`: nodes that start together against an empty database can
    /// each create a key and load before the other's insert is visible, so
    /// the first unknown `kid` right after start must be looked up, not
    /// refused for a reload interval.
    unknown_kid_reload: RwLock<Option<Instant>>,
}

impl Keys {
    pub(super) async fn load_or_create(meta: &MetaStore) -> Result<Keys> {
        let set = match load(meta).await? {
            Some(set) => set,
            None => {
                let key = SigningKey::generate().map_err(key_error)?;
                let mut tx = meta.begin_identity().await?;
                tx.insert_signing_key(key.kid(), "ES256", key.to_pem(), now_millis())
                    .await?;
                tx.commit().await?;
                // Another node may have inserted one at the same time: the
                // newest signs, both verify.
                load(meta)
                    .await?
                    .ok_or_else(|| Error::Invalid("signing key vanished after insert".into()))?
            }
        };
        Ok(Keys {
            set: RwLock::new(set),
            loaded_at: RwLock::new(Instant::now()),
            unknown_kid_reload: RwLock::new(None),
        })
    }

    /// Runs `f` with the loaded key set (the current key signs).
    pub(super) fn with<R>(&self, f: impl FnOnce(&KeySet) -> R) -> R {
        f(&self.set.read().expect("key set lock"))
    }

    pub(super) fn jwks(&self) -> serde_json::Value {
        self.set.read().expect("key set lock").jwks()
    }

    /// Reloads from the database now (after a rotation on this node).
    pub(super) async fn reload(&self, meta: &MetaStore) -> Result<()> {
        *self.loaded_at.write().expect("lock") = Instant::now();
        if let Some(set) = load(meta).await? {
            *self.set.write().expect("key set lock") = set;
        }
        Ok(())
    }

    /// Reloads when the loaded set is older than [`MAX_AGE`], so a key
    /// rotated on another node starts signing here too.
    pub(super) async fn refresh_if_stale(&self, meta: &MetaStore) -> Result<()> {
        if self.loaded_at.read().expect("lock").elapsed() >= MAX_AGE {
            self.reload(meta).await?;
        }
        Ok(())
    }

    /// Reloads from the database when `kid` is unknown here and the last
    /// reload is old enough. Returns whether the key is known now.
    pub(super) async fn knows_after_reload(&self, meta: &MetaStore, kid: &str) -> Result<bool> {
        if self.set.read().expect("key set lock").get(kid).is_some() {
            return Ok(true);
        }
        {
            let mut last = self.unknown_kid_reload.write().expect("lock");
            if last.is_some_and(|at| at.elapsed() < RELOAD_INTERVAL) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        *self.loaded_at.write().expect("lock") = Instant::now();
        if let Some(set) = load(meta).await? {
            let known = set.get(kid).is_some();
            *self.set.write().expect("key set lock") = set;
            return Ok(known);
        }
        Ok(false)
    }
}

async fn load(meta: &MetaStore) -> Result<Option<KeySet>> {
    let rows = meta.signing_keys(now_millis()).await?;
    let mut current = None;
    let mut previous = Vec::new();
    for row in rows {
        let key = SigningKey::from_pem(&row.private_pem).map_err(key_error)?;
        if current.is_none() && row.retired_at.is_none() {
            current = Some(key);
        } else {
            previous.push(key);
        }
    }
    Ok(current.map(|c| KeySet::new(c, previous)))
}

fn key_error(e: berth_auth::KeyError) -> Error {
    Error::Invalid(format!("token signing key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes starting together each create a key; the one that loaded
    /// before the other's insert was visible must still accept the other's
    /// tokens at once, not after a reload interval.
    #[tokio::test]
    async fn a_key_another_node_created_at_start_is_found_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open_sqlite(&dir.path().join("meta.db"))
            .await
            .unwrap();
        let keys = Keys::load_or_create(&meta).await.unwrap();
        let other = SigningKey::generate().unwrap();
        let mut tx = meta.begin_identity().await.unwrap();
        tx.insert_signing_key(other.kid(), "ES256", other.to_pem(), now_millis())
            .await
            .unwrap();
        tx.commit().await.unwrap();

        assert!(keys.knows_after_reload(&meta, other.kid()).await.unwrap());
        // A forged kid right after is refused without another reload.
        assert!(!keys.knows_after_reload(&meta, "forged").await.unwrap());
        meta.close().await;
    }
}
