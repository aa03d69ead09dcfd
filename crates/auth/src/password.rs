//! Passwords of local accounts: argon2id hashes stored as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), verification that compares
//! in constant time, and the same amount of work for unknown users, so the
//! time a login takes does not tell which accounts exist.
//!
//! Hashing costs tens of milliseconds of CPU on purpose: call these from a
//! blocking thread (`tokio::task::spawn_blocking`), not from an async task.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest and longest passwords accepted for new local accounts. The
/// upper bound keeps a login from hashing megabytes.
pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2 parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
}

/// Argon2id cost parameters. The default is OWASP's recommendation
/// (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> PasswordParams {
        PasswordParams {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

/// Hashes and verifies passwords with one set of parameters. Cheap to
/// clone (shared inside), so it can move into a blocking task.
#[derive(Clone)]
pub struct Passwords(Arc<Inner>);

struct Inner {
    argon2: Argon2<'static>,
    /// A hash of a random password with the same parameters, verified
    /// against when the account does not exist.
    dummy: String,
}

/// An argon2id PHC string with `params`, a random salt and a random output
/// of the default length: no password hashes to it.
fn dummy_hash(params: &Params) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let salt: [u8; 16] = rand::random();
    let output: [u8; Params::DEFAULT_OUTPUT_LEN] = rand::random();
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        b64.encode(salt),
        b64.encode(output)
    )
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("params", self.0.argon2.params())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// Builds the hasher and its dummy hash. The dummy is not hashed from
    /// anything: verifying a password against it costs the same work
    /// whatever its output bytes are, so random bytes in a PHC string with
    /// these parameters do (and a first start does not pay for a hash no
    /// login may ever need).
    pub fn new(params: PasswordParams) -> Result<Passwords, PasswordError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        let dummy = dummy_hash(&params);
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        Ok(Passwords(Arc::new(Inner { argon2, dummy })))
    }

    /// The PHC string to store for `password` (fresh random salt).
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(PasswordError::TooLong);
        }
        Ok(self
            .0
            .argon2
            .hash_password(password.as_bytes())
            .map_err(|e| PasswordError::Hash(e.to_string()))?
            .to_string())
    }

    /// Whether `password` matches `stored`. Pass `None` when the account
    /// does not exist or has no local password: the dummy hash is verified
    /// instead and the answer is `false`, after the same work. A disabled
    /// account should still be verified, then refused, for the same reason.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        // Overlong input is refused after the same work as any other, so
        // its length alone says nothing either.
        let candidate = if password.len() > MAX_PASSWORD_LEN {
            ""
        } else {
            password
        };
        let (hash, real) = match stored {
            Some(hash) if hash.starts_with("$argon2") => (hash, true),
            _ => (self.0.dummy.as_str(), false),
        };
        // The comparison inside is constant-time (password_hash's `Output`).
        let matched = self
            .0
            .argon2
            .verify_password(candidate.as_bytes(), hash)
            .is_ok();
        matched && real && candidate.len() == password.len()
    }

    /// Whether `stored` was made with other parameters than these (or
    /// another algorithm), so it should be replaced after a successful
    /// login.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(stored) else {
            return true;
        };
        if parsed.algorithm.as_str() != "argon2id" {
            return true;
        }
        match Params::try_from(&parsed) {
            Ok(p) => {
                let current = self.0.argon2.params();
                p.m_cost() != current.m_cost()
                    || p.t_cost() != current.t_cost()
                    || p.p_cost() != current.p_cost()
            }
            Err(_) => true,
        }
    }
}

/// Checks a new password against the policy: 8 characters at least, 256
/// bytes at most. Composition rules are left out on purpose (NIST SP
/// 800-63B): length is what makes a password strong.
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Cheap parameters: the tests check behaviour, not cost.
    fn fast() -> Passwords {
        Passwords::new(PasswordParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn hash_then_verify() {
        let p = fast();
        let hash = p.hash("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(p.verify("correct horse", Some(&hash)));
        assert!(!p.verify("correct horsE", Some(&hash)));
        assert!(!p.verify("", Some(&hash)));
        // A fresh salt each time.
        assert_ne!(hash, p.hash("correct horse").unwrap());
    }

    #[test]
    fn unknown_user_and_garbage_hashes_never_verify() {
        let p = fast();
        assert!(!p.verify("anything", None));
        assert!(!p.verify("", None));
        assert!(!p.verify("x", Some("not a phc string")));
        assert!(!p.verify("x", Some("$argon2id$garbage")));
        assert!(!p.verify("x", Some("")));
    }

    #[test]
    fn overlong_passwords_are_refused() {
        let p = fast();
        let long = "a".repeat(MAX_PASSWORD_LEN + 1);
        assert_eq!(p.hash(&long), Err(PasswordError::TooLong));
        let hash = p.hash("").unwrap();
        // Truncation to "" must not make it match the empty password's hash.
        assert!(!p.verify(&long, Some(&hash)));
    }

    #[test]
    fn hashes_from_other_parameters_verify_and_ask_for_rehash() {
        let old = fast();
        let hash = old.hash("pw-123456").unwrap();
        let new = Passwords::new(PasswordParams {
            memory_kib: 2048,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        assert!(new.verify("pw-123456", Some(&hash)));
        assert!(new.needs_rehash(&hash));
        assert!(!old.needs_rehash(&hash));
        assert!(old.needs_rehash("garbage"));
    }

    #[test]
    fn default_parameters_are_owasp() {
        let p = Passwords::new(PasswordParams::default()).unwrap();
        let hash = p.hash("pw-123456").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(p.verify("pw-123456", Some(&hash)));
    }

    /// The unknown-user path does the same argon2 work as a real check.
    /// The fastest of several interleaved runs of each is compared, which
    /// other load on the machine only slows down, never speeds up; a
    /// skipped verification would cost microseconds against milliseconds.
    #[test]
    fn unknown_user_costs_as_much_as_a_wrong_password() {
        let p = Passwords::new(PasswordParams {
            memory_kib: 8 * 1024,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        let hash = p.hash("right-password").unwrap();
        let once = |stored: Option<&str>| {
            let start = Instant::now();
            assert!(!p.verify("wrong-password", stored));
            start.elapsed()
        };
        let (mut known, mut unknown) = (Duration::MAX, Duration::MAX);
        for _ in 0..7 {
            known = known.min(once(Some(&hash)));
            unknown = unknown.min(once(None));
        }
        assert!(
            unknown * 2 >= known && known * 2 >= unknown,
            "known {known:?} vs unknown {unknown:?}"
        );
    }

    /// The dummy is shaped like a real hash with these parameters: same
    /// parameters, salt and output lengths, so verifying against it is the
    /// same work; and every registry start draws a new one.
    #[test]
    fn the_dummy_hash_looks_like_a_real_one() {
        let p = fast();
        let real = p.hash("pw-123456").unwrap();
        let dummy = p.0.dummy.clone();
        assert!(!p.needs_rehash(&dummy), "{dummy}");
        let parts = |h: &str| -> Vec<usize> { h.split('$').map(str::len).collect() };
        assert_eq!(parts(&dummy), parts(&real), "{dummy} vs {real}");
        assert_ne!(dummy, fast().0.dummy);
    }

    #[test]
    fn policy() {
        assert_eq!(check_new_password("short"), Err(PasswordError::TooShort));
        assert_eq!(check_new_password("ééééééé"), Err(PasswordError::TooShort));
        assert!(check_new_password("eight ch").is_ok());
        assert_eq!(
            check_new_password(&"a".repeat(257)),
            Err(PasswordError::TooLong)
        );
    }
}
