//! Generated secrets: robot account secrets and personal access tokens.
//!
//! A secret is `PREFIX` + 43 random base62 characters (256 bits) + a
//! 6-character checksum, e.g. `berth_pat_…`. The prefix says what it is (so
//! a login can route it, and secret scanners can recognise a leaked one);
//! the checksum lets a typo or a random string be refused without a
//! database lookup. The secret is shown once; only its hash is stored.
//!
//! The stored hash is a plain SHA-256 (`sha256:<hex>`), not argon2id: a
//! slow hash protects low-entropy passwords from guessing, but nobody can
//! enumerate 2^256 secrets, fast hash or slow. A slow hash would instead
//! cost tens of milliseconds of CPU on every Basic-authenticated registry
//! request (simple clients send the secret with each one), an easy way to
//! overload the server. A server-side pepper (HMAC key) was considered and
//! left out: it only helps if kept outside the database, it would be one
//! more secret to configure and rotate, and the entropy already makes a
//! stolen hash useless. Being deterministic, the hash also serves as the
//! lookup key of a personal access token (a unique index).

use std::fmt;

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const RANDOM_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
const HASH_PREFIX: &str = "sha256:";

/// What a generated secret is for; decides its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A robot account's secret (the password of `robot$…`).
    Robot,
    /// A user's personal access token.
    PersonalAccessToken,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::Robot => "berth_rbt_",
            SecretKind::PersonalAccessToken => "berth_pat_",
        }
    }

    /// The kind whose prefix `s` carries, if any.
    pub fn of(s: &str) -> Option<SecretKind> {
        [SecretKind::Robot, SecretKind::PersonalAccessToken]
            .into_iter()
            .find(|k| s.starts_with(k.prefix()))
    }
}

/// A secret in plain text. Its `Debug` does not show it, so it cannot end
/// up in a log line by accident; [`RevealedSecret::expose`] is explicit.
#[derive(Clone, PartialEq, Eq)]
pub struct RevealedSecret(String);

impl RevealedSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RevealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RevealedSecret(<redacted>)")
    }
}

/// A freshly generated secret: the plain text to show once, and the hash
/// to store.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub plaintext: RevealedSecret,
    pub hash: String,
}

/// Generates a secret of `kind` from the operating system's CSPRNG.
pub fn generate(kind: SecretKind) -> NewSecret {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(RANDOM_LEN)
        .map(char::from)
        .collect();
    let body = format!("{}{random}", kind.prefix());
    let plaintext = format!("{body}{}", checksum(&body));
    NewSecret {
        hash: hash(&plaintext),
        plaintext: RevealedSecret(plaintext),
    }
}

/// Whether `s` has the shape of a generated secret of `kind`: prefix,
/// length, alphabet and checksum. Cheap; says nothing of validity.
pub fn well_formed(kind: SecretKind, s: &str) -> bool {
    let Some(rest) = s.strip_prefix(kind.prefix()) else {
        return false;
    };
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, sum) = s.split_at(s.len() - CHECKSUM_LEN);
    checksum(body).as_bytes().ct_eq(sum.as_bytes()).into()
}

/// The stored form of a secret: `sha256:<hex>`. Deterministic, so it is
/// also the lookup key of a personal access token.
pub fn hash(secret: &str) -> String {
    format!("{HASH_PREFIX}{}", hex(&Sha256::digest(secret.as_bytes())))
}

/// Whether `candidate` is the secret `stored` was made from, compared in
/// constant time. An unknown stored format never verifies.
pub fn verify(candidate: &str, stored: &str) -> bool {
    if !stored.starts_with(HASH_PREFIX) {
        return false;
    }
    hash(candidate).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// First 4 bytes of SHA-256 of the body, as 6 base62 digits.
fn checksum(body: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(body.as_bytes());
    let mut n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_verify_against_their_hash_only() {
        for kind in [SecretKind::Robot, SecretKind::PersonalAccessToken] {
            let a = generate(kind);
            let b = generate(kind);
            let plain = a.plaintext.expose();
            assert!(plain.starts_with(kind.prefix()), "{plain}");
            assert_eq!(plain.len(), kind.prefix().len() + RANDOM_LEN + CHECKSUM_LEN);
            assert_eq!(SecretKind::of(plain), Some(kind));
            assert!(well_formed(kind, plain));
            assert!(verify(plain, &a.hash));
            assert!(!verify(plain, &b.hash));
            assert!(!verify(b.plaintext.expose(), &a.hash));
            assert_ne!(a.plaintext, b.plaintext);
            assert!(a.hash.starts_with("sha256:") && a.hash.len() == 7 + 64);
            assert_eq!(hash(plain), a.hash);
        }
    }

    #[test]
    fn malformed_secrets_are_recognised_without_lookup() {
        let s = generate(SecretKind::PersonalAccessToken);
        let plain = s.plaintext.expose().to_string();
        assert!(!well_formed(SecretKind::Robot, &plain));
        // One character changed breaks the checksum.
        let mut typo = plain.clone().into_bytes();
        let i = SecretKind::PersonalAccessToken.prefix().len() + 3;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert!(!well_formed(SecretKind::PersonalAccessToken, &typo));
        assert!(!well_formed(
            SecretKind::PersonalAccessToken,
            &plain[..plain.len() - 1]
        ));
        assert!(!well_formed(SecretKind::PersonalAccessToken, "berth_pat_"));
        assert!(!well_formed(SecretKind::PersonalAccessToken, "hunter2"));
        assert_eq!(SecretKind::of("hunter2"), None);
    }

    #[test]
    fn unknown_stored_formats_never_verify() {
        assert!(!verify("x", ""));
        assert!(!verify("x", "$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA"));
        assert!(!verify("x", &hash("y")));
        assert!(verify("x", &hash("x")));
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let s = generate(SecretKind::Robot);
        let shown = format!("{s:?}");
        assert!(!shown.contains(s.plaintext.expose()), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
