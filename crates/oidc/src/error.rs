/// Everything that can go wrong. Messages name what failed and why, never a
/// token, a code, a client secret or a response body that could hold one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// Invalid configuration; the message names the field.
    #[error("{0}")]
    Config(String),
    /// The issuer's discovery document or JWKS could not be fetched or used.
    #[error("OIDC discovery for {issuer} failed: {reason}")]
    Discovery { issuer: String, reason: String },
    /// A request to the provider failed at the transport level.
    #[error("OIDC request failed: {0}")]
    Http(String),
    /// The `state` returned to the callback is not the one of the pending login.
    #[error("OIDC login state mismatch")]
    StateMismatch,
    /// The pending login is older than the login timeout (or from the future).
    #[error("OIDC login expired; start again")]
    LoginExpired,
    /// The token endpoint refused the request (e.g. `invalid_grant` for a
    /// reused code or a wrong PKCE verifier). Holds the provider's error code
    /// and description.
    #[error("OIDC token request refused: {0}")]
    TokenRequest(String),
    /// The token response had no ID token.
    #[error("OIDC token response carries no ID token")]
    MissingIdToken,
    /// The token is not a well-formed signed JWT.
    #[error("malformed ID token: {0}")]
    MalformedToken(String),
    /// The token's `alg` is not an accepted asymmetric signature algorithm.
    #[error("ID token signature algorithm {0:?} is not accepted")]
    DisallowedAlgorithm(String),
    /// The token's issuer is not one this verifier trusts.
    #[error("ID token issuer {0:?} is not trusted")]
    UntrustedIssuer(String),
    /// The signature does not verify, or no key of the issuer's JWKS fits.
    #[error("ID token signature invalid: {0}")]
    InvalidSignature(String),
    /// `exp` is in the past (beyond the leeway), or `iat` is in the future.
    #[error("ID token expired or not yet issued: {0}")]
    Expired(String),
    /// `nbf` is in the future (beyond the leeway).
    #[error("ID token not valid yet")]
    NotYetValid,
    /// The `aud` claim does not name this client.
    #[error("ID token audience invalid: {0}")]
    InvalidAudience(String),
    /// The `iss` claim is not the configured issuer.
    #[error("ID token issuer invalid: {0}")]
    InvalidIssuer(String),
    /// The `nonce` claim is missing or not the one of the pending login.
    #[error("ID token nonce invalid")]
    InvalidNonce,
    /// Some other claim check failed (e.g. `at_hash`).
    #[error("ID token claims invalid: {0}")]
    InvalidClaims(String),
    /// A claim needed to build the identity is missing or has the wrong type.
    #[error("ID token claim {0:?} missing or not a string")]
    MissingClaim(String),
    /// The userinfo endpoint failed or answered for another subject.
    #[error("OIDC userinfo failed: {0}")]
    UserInfo(String),
}
