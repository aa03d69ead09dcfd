//! Docker registry token JWTs: ES256 signing keys (P-256, persisted as
//! PKCS#8 PEM), a key set with rotation, the JWKS document, issuing and
//! verifying tokens.
//!
//! A token names its key in the header (`kid`, the key's RFC 7638
//! thumbprint), so after a rotation tokens signed by the previous key stay
//! valid until they expire while new ones use the new key. Tokens are short
//! (5 minutes by default): a revoked membership stops working within one
//! lifetime, which is what the Docker token flow trades for not checking
//! the database on every request.
//!
//! Times are Unix seconds (the JWT unit) and passed in, so expiry is tested
//! without waiting.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::scope::{AccessEntry, ScopeAction, ScopeTarget};

const PEM_TAG: &str = "PRIVATE KEY";
const REFRESH_USE: &str = "refresh";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("generating a P-256 key failed")]
    Generate,
    #[error("signing key PEM: {0}")]
    Pem(String),
    #[error("signing key is not a PKCS#8 P-256 private key")]
    NotP256,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token is signed by an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token is for another audience")]
    WrongAudience,
    #[error("token is from another issuer")]
    WrongIssuer,
    #[error("token is of the wrong kind (access vs refresh)")]
    WrongUse,
    #[error("signing the token failed: {0}")]
    Sign(String),
}

/// An ES256 signing key. `Debug` shows only the key id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    pem: String,
    x: String,
    y: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Draws once from aws-lc's random generator. Its first use seeds it, which
/// takes about 25 ms of CPU here; a server calls this on a blocking thread
/// as it starts, so that neither the first start's key generation nor the
/// first token's signature waits for the seeding.
pub fn seed_random_generator() {
    let mut byte = [0u8; 1];
    // A failure here would fail again, loudly, where randomness is needed.
    let _ = aws_lc_rs::rand::fill(&mut byte);
}

impl SigningKey {
    /// A new random P-256 key.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| KeyError::Generate)?;
        let der = pair.to_pkcs8v1().map_err(|_| KeyError::Generate)?;
        let pem = pem::encode(&pem::Pem::new(PEM_TAG, der.as_ref()));
        SigningKey::from_pem(&pem)
    }

    /// Loads a key from its PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the
    /// form [`SigningKey::to_pem`] writes.
    pub fn from_pem(pem_text: &str) -> Result<SigningKey, KeyError> {
        let parsed = pem::parse(pem_text).map_err(|e| KeyError::Pem(e.to_string()))?;
        if parsed.tag() != PEM_TAG {
            return Err(KeyError::Pem(format!(
                "expected a {PEM_TAG:?} block, found {:?}",
                parsed.tag()
            )));
        }
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, parsed.contents())
            .map_err(|_| KeyError::NotP256)?;
        // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 0x04 {
            return Err(KeyError::NotP256);
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..]);
        let encoding =
            EncodingKey::from_ec_pem(pem_text.as_bytes()).map_err(|_| KeyError::NotP256)?;
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|_| KeyError::NotP256)?;
        Ok(SigningKey {
            kid: thumbprint(&x, &y),
            pem: pem::encode(&parsed),
            x,
            y,
            encoding,
            decoding,
        })
    }

    /// The private key as PKCS#8 PEM, to persist. A secret: never log it.
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    /// The key id: the RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> serde_json::Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        })
    }
}

/// RFC 7638: SHA-256 of the required members in lexicographic order.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Who issues tokens for which service, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim: the `service` of the challenge and token request.
    pub service: String,
    /// Access token lifetime; 5 minutes by default.
    pub lifetime: Duration,
    /// Refresh token lifetime (`docker login` keeps one); 7 days by default.
    pub refresh_lifetime: Duration,
    /// Clock skew tolerated between nodes when checking `exp` and `nbf`.
    pub leeway: Duration,
}

impl TokenConfig {
    pub fn new(issuer: impl Into<String>, service: impl Into<String>) -> TokenConfig {
        TokenConfig {
            issuer: issuer.into(),
            service: service.into(),
            lifetime: Duration::from_secs(300),
            refresh_lifetime: Duration::from_secs(7 * 24 * 3600),
            leeway: Duration::from_secs(30),
        }
    }
}

/// The claims of a Berth token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<AccessEntry>,
    /// `refresh` on refresh tokens; absent on access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
    /// Data of special-use tokens (a browser session's or a pending OIDC
    /// login's); absent on access and refresh tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<serde_json::Value>,
}

impl Claims {
    /// Whether the token allows `action` on `target` (the registry's check
    /// for a bearer-authenticated request).
    pub fn allows(&self, target: &ScopeTarget, action: ScopeAction) -> bool {
        self.access.iter().any(|a| a.allows(target, action))
    }
}

/// A signed token and what the token response says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    /// Unix seconds.
    pub issued_at: u64,
}

/// The token endpoint's JSON body (Docker token spec and OAuth2 both:
/// `token` and `access_token` carry the same value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    /// RFC 3339, UTC.
    pub issued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    pub fn new(access: IssuedToken, refresh: Option<IssuedToken>) -> TokenResponse {
        TokenResponse {
            access_token: access.token.clone(),
            issued_at: rfc3339(access.issued_at),
            expires_in: access.expires_in,
            token: access.token,
            refresh_token: refresh.map(|r| r.token),
        }
    }
}

/// The keys tokens are signed and verified with: the current key signs,
/// the current and the previous keys verify.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// Current first.
    keys: Vec<SigningKey>,
}

impl KeySet {
    pub fn new(current: SigningKey, previous: Vec<SigningKey>) -> KeySet {
        let mut keys = vec![current];
        keys.extend(previous);
        KeySet { keys }
    }

    pub fn current(&self) -> &SigningKey {
        &self.keys[0]
    }

    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Makes `next` the signing key; the current one still verifies.
    pub fn rotate(&mut self, next: SigningKey) {
        self.keys.insert(0, next);
    }

    /// Stops accepting a previous key (once every token it signed has
    /// expired). The current key cannot be retired; returns whether a key
    /// was removed.
    pub fn retire(&mut self, kid: &str) -> bool {
        let before = self.keys.len();
        let current = self.keys[0].kid.clone();
        self.keys.retain(|k| k.kid == current || k.kid != kid);
        self.keys.len() != before
    }

    /// The JWKS document (`{"keys": [...]}`) of every accepted key.
    pub fn jwks(&self) -> serde_json::Value {
        json!({ "keys": self.keys.iter().map(SigningKey::public_jwk).collect::<Vec<_>>() })
    }

    /// Signs an access token for `subject` carrying `access`.
    pub fn issue(
        &self,
        config: &TokenConfig,
        subject: &str,
        access: Vec<AccessEntry>,
        now: u64,
    ) -> Result<IssuedToken, TokenError> {
        self.sign(config, subject, access, None, config.lifetime, now)
    }

    /// Signs a refresh token for `subject`: no access, longer lifetime,
    /// accepted only by [`KeySet::verify_refresh`]. The token endpoint must
    /// still check that the account exists and is enabled when it is used.
    pub fn issue_refresh(
        &self,
        config: &TokenConfig,
        subject: &str,
        now: u64,
    ) -> Result<IssuedToken, TokenError> {
        let lifetime = config.refresh_lifetime;
        self.sign(
            config,
            subject,
            vec![],
            Some(REFRESH_USE.into()),
            lifetime,
            now,
        )
    }

    fn sign(
        &self,
        config: &TokenConfig,
        subject: &str,
        access: Vec<AccessEntry>,
        token_use: Option<String>,
        lifetime: Duration,
        now: u64,
    ) -> Result<IssuedToken, TokenError> {
        let key = self.current();
        let claims = Claims {
            iss: config.issuer.clone(),
            sub: subject.to_string(),
            aud: config.service.clone(),
            exp: now + lifetime.as_secs(),
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
            token_use,
            ext: None,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(IssuedToken {
            token,
            expires_in: lifetime.as_secs(),
            issued_at: now,
        })
    }

    /// Signs a special-use token (`token_use` other than access and
    /// refresh, e.g. a browser session) carrying `ext`. Such tokens are
    /// refused by [`KeySet::verify`] and [`KeySet::verify_refresh`].
    pub fn issue_special(
        &self,
        config: &TokenConfig,
        subject: &str,
        token_use: &str,
        ext: serde_json::Value,
        lifetime: Duration,
        now: u64,
    ) -> Result<IssuedToken, TokenError> {
        assert!(
            token_use != REFRESH_USE,
            "refresh tokens come from issue_refresh"
        );
        let key = self.current();
        let claims = Claims {
            iss: config.issuer.clone(),
            sub: subject.to_string(),
            aud: config.service.clone(),
            exp: now + lifetime.as_secs(),
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access: vec![],
            token_use: Some(token_use.to_string()),
            ext: Some(ext),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(IssuedToken {
            token,
            expires_in: lifetime.as_secs(),
            issued_at: now,
        })
    }

    /// Verifies a special-use token of exactly `token_use`.
    pub fn verify_special(
        &self,
        config: &TokenConfig,
        token: &str,
        token_use: &str,
        now: u64,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify_any(config, token, now)?;
        match claims.token_use.as_deref() {
            Some(u) if u == token_use && u != REFRESH_USE => Ok(claims),
            _ => Err(TokenError::WrongUse),
        }
    }

    /// Verifies an access token: known key, ES256 signature, issuer,
    /// audience (`config.service`), `nbf` ≤ now < `exp` (with leeway).
    pub fn verify(
        &self,
        config: &TokenConfig,
        token: &str,
        now: u64,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify_any(config, token, now)?;
        match claims.token_use {
            None => Ok(claims),
            Some(_) => Err(TokenError::WrongUse),
        }
    }

    /// Verifies a refresh token, as [`KeySet::verify`] does access tokens.
    pub fn verify_refresh(
        &self,
        config: &TokenConfig,
        token: &str,
        now: u64,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify_any(config, token, now)?;
        match claims.token_use.as_deref() {
            Some(REFRESH_USE) => Ok(claims),
            _ => Err(TokenError::WrongUse),
        }
    }

    fn verify_any(
        &self,
        config: &TokenConfig,
        token: &str,
        now: u64,
    ) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Malformed(format!(
                "algorithm {:?} is not ES256",
                header.alg
            )));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[&config.service]);
        validation.set_issuer(&[&config.issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked below against the `now` passed in.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                _ => TokenError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        let leeway = config.leeway.as_secs();
        if now >= claims.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if now.saturating_add(leeway) < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// Unix seconds as RFC 3339 UTC (`2026-05-01T12:00:00Z`).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests;
