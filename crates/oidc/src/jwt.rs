//! ID token verification shared by login and workload identity: the JOSE
//! header pre-checks, an issuer's JWKS with refresh on an unknown `kid`, and
//! openidconnect's verifier for signature and standard claims.

use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AccessToken, AccessTokenHash, ClaimsVerificationError, ClientId, DiscoveryError, IssuerUrl,
    JsonWebKey as _, JsonWebKeySet, JsonWebKeySetUrl, Nonce, SignatureVerificationError,
};
use serde_json::{Map, Value};

use crate::OidcError;
use crate::http::{TransportError, http_fn};

/// The only signature algorithms accepted: asymmetric ones. `none` and
/// HS256/384/512 (whose key would be the client secret, or anything for a
/// public client) are refused before any other check.
pub(crate) const ACCEPTED_ALGS: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];
const ACCEPTED_ALG_NAMES: [&str; 10] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

/// A JWKS is fetched again for an unknown `kid` at most this often.
const MIN_JWKS_REFRESH: Duration = Duration::from_secs(10);

/// The unverified parts of a compact JWS, decoded for routing and pre-checks.
pub(crate) struct Unverified {
    pub(crate) kid: Option<String>,
    pub(crate) payload: Map<String, Value>,
}

/// Splits and decodes a compact JWS without verifying it. Refuses anything
/// that is not three base64url parts of JSON objects, and any `alg` outside
/// [`ACCEPTED_ALG_NAMES`].
pub(crate) fn decode_unverified(token: &str) -> Result<Unverified, OidcError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::MalformedToken(
            "not a compact JWS (three dot-separated parts)".into(),
        ));
    };
    let header = decode_object(header, "header")?;
    let payload = decode_object(payload, "payload")?;
    if signature.is_empty() {
        return Err(OidcError::DisallowedAlgorithm("none".into()));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(OidcError::MalformedToken("the header has no alg".into())),
    };
    if !ACCEPTED_ALG_NAMES.contains(&alg.as_str()) {
        return Err(OidcError::DisallowedAlgorithm(alg));
    }
    if header.contains_key("crit") {
        return Err(OidcError::MalformedToken(
            "critical header extensions are not supported".into(),
        ));
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(OidcError::MalformedToken("kid is not a string".into())),
    };
    Ok(Unverified { kid, payload })
}

fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, OidcError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| OidcError::MalformedToken(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(OidcError::MalformedToken(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// A claim by name: the top-level claim of exactly that name, else (for a
/// dotted name) the value found by walking nested objects.
pub(crate) fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    if !name.contains('.') {
        return None;
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A claim as a list of strings: an array's string elements, or one string.
pub(crate) fn claim_strings(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    match claim(claims, name) {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a claim value satisfies a rule's required value: an exact match,
/// or a prefix match when `pattern` ends with `*` (`*` alone: any value).
/// Strings compare as they are; numbers and booleans by their JSON text;
/// an array matches when any element does; objects and null never match.
pub(crate) fn value_matches(value: &Value, pattern: &str) -> bool {
    let text_matches = |text: &str| match pattern.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => text == pattern,
    };
    match value {
        Value::String(text) => text_matches(text),
        Value::Number(number) => text_matches(&number.to_string()),
        Value::Bool(flag) => text_matches(if *flag { "true" } else { "false" }),
        Value::Array(items) => items
            .iter()
            .any(|item| !item.is_array() && value_matches(item, pattern)),
        Value::Object(_) | Value::Null => false,
    }
}

/// One issuer's metadata and signing keys.
pub(crate) struct IssuerKeys {
    pub(crate) issuer: IssuerUrl,
    jwks_uri: JsonWebKeySetUrl,
    current: RwLock<Arc<FetchedKeys>>,
    refreshing: tokio::sync::Mutex<()>,
}

struct FetchedKeys {
    set: Arc<CoreJsonWebKeySet>,
    /// When the set was last fetched for an unknown key id.
    forced_at: Option<Instant>,
}

impl FetchedKeys {
    fn forced_recently(&self) -> bool {
        self.forced_at
            .is_some_and(|at| at.elapsed() < MIN_JWKS_REFRESH)
    }
}

impl IssuerKeys {
    /// Discovery (`<issuer>/.well-known/openid-configuration`; the document's
    /// `issuer` must be exactly `issuer`) and the first JWKS fetch.
    pub(crate) async fn discover(
        issuer: &str,
        http: &reqwest::Client,
    ) -> Result<(IssuerKeys, CoreProviderMetadata), OidcError> {
        let fail = |reason: String| OidcError::Discovery {
            issuer: issuer.to_string(),
            reason,
        };
        let issuer_url = IssuerUrl::new(issuer.to_string()).map_err(|err| fail(err.to_string()))?;
        let client = http_fn(http);
        let metadata = CoreProviderMetadata::discover_async(issuer_url.clone(), &client)
            .await
            .map_err(|err| fail(describe(err)))?;
        let keys = IssuerKeys {
            issuer: issuer_url,
            jwks_uri: metadata.jwks_uri().clone(),
            current: RwLock::new(Arc::new(FetchedKeys {
                set: Arc::new(metadata.jwks().clone()),
                forced_at: None,
            })),
            refreshing: tokio::sync::Mutex::new(()),
        };
        Ok((keys, metadata))
    }

    /// The key set, fetched again first when it has no key with `kid` (or
    /// no key at all): the provider rotated its keys. Such a forced fetch
    /// happens at most once per [`MIN_JWKS_REFRESH`], so a flood of tokens
    /// with made-up key ids cannot turn into a flood of JWKS requests.
    async fn keys_for(
        &self,
        kid: Option<&str>,
        http: &reqwest::Client,
    ) -> Result<Arc<CoreJsonWebKeySet>, OidcError> {
        let current = self.snapshot();
        if knows(&current.set, kid) || current.forced_recently() {
            return Ok(current.set.clone());
        }
        let _one_at_a_time = self.refreshing.lock().await;
        let current = self.snapshot();
        if knows(&current.set, kid) || current.forced_recently() {
            return Ok(current.set.clone());
        }
        tracing::info!(issuer = %self.issuer.as_str(), "unknown signing key id; fetching the JWKS again");
        let client = http_fn(http);
        let fetched = JsonWebKeySet::fetch_async(&self.jwks_uri, &client).await;
        // A failed fetch counts too: a provider that is down is not asked again at once.
        let (set, result) = match fetched {
            Ok(set) => {
                let set = Arc::new(set);
                (set.clone(), Ok(set))
            }
            Err(err) => (
                current.set.clone(),
                Err(OidcError::Discovery {
                    issuer: self.issuer.to_string(),
                    reason: format!("JWKS: {}", describe(err)),
                }),
            ),
        };
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(FetchedKeys {
            set,
            forced_at: Some(Instant::now()),
        });
        result
    }

    fn snapshot(&self) -> Arc<FetchedKeys> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

fn knows(set: &CoreJsonWebKeySet, kid: Option<&str>) -> bool {
    match kid {
        Some(kid) => set
            .keys()
            .iter()
            .any(|key| key.key_id().is_some_and(|id| id.as_str() == kid)),
        None => !set.keys().is_empty(),
    }
}

fn describe(err: DiscoveryError<TransportError>) -> String {
    match err {
        DiscoveryError::Request(err) => err.to_string(),
        DiscoveryError::Response(status, _body, why) => format!("HTTP {status}: {why}"),
        DiscoveryError::Parse(err) => format!("unparseable document at {}", err.path()),
        other => other.to_string(),
    }
}

/// What to check beyond signature, `iss`, `exp`, `iat` and `nbf`.
pub(crate) struct Expect<'a> {
    /// The client id `aud` must contain (and no untrusted other audience);
    /// None: the caller checks the audience itself.
    pub(crate) audience: Option<&'a str>,
    /// The nonce of the pending login; None: any or no nonce.
    pub(crate) nonce: Option<&'a str>,
    /// The access token issued with the ID token, for `at_hash` when present.
    pub(crate) access_token: Option<&'a AccessToken>,
    pub(crate) leeway: Duration,
}

/// A verified ID token's claims.
pub(crate) struct Verified {
    pub(crate) claims: Map<String, Value>,
    pub(crate) subject: String,
    pub(crate) expires_at: i64,
}

/// Verifies `token` against `keys`' issuer: algorithm, signature (JWKS),
/// `iss`, `aud` (if asked), `exp`/`iat`/`nbf` with `leeway`, `nonce` (if
/// asked), `at_hash` (if present and an access token is given).
pub(crate) async fn verify(
    keys: &IssuerKeys,
    http: &reqwest::Client,
    token: &str,
    expect: Expect<'_>,
) -> Result<Verified, OidcError> {
    let unverified = decode_unverified(token)?;
    let jwks = keys.keys_for(unverified.kid.as_deref(), http).await?;
    let id_token = CoreIdToken::from_str(token).map_err(|_| {
        OidcError::MalformedToken("not an OpenID Connect ID token (iss, sub, aud, exp, iat)".into())
    })?;

    let leeway = chrono::TimeDelta::from_std(expect.leeway).unwrap_or(chrono::TimeDelta::MAX);
    let audience = expect.audience.unwrap_or_default();
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(audience.to_string()),
        keys.issuer.clone(),
        (*jwks).clone(),
    )
    .set_allowed_algs(ACCEPTED_ALGS)
    .require_audience_match(expect.audience.is_some())
    // exp is checked against "now - leeway", iat must not be beyond "now + leeway".
    .set_time_fn(move || chrono::Utc::now() - leeway)
    .set_issue_time_verifier_fn(move |iat| {
        if iat > chrono::Utc::now() + leeway {
            Err(format!("issued in the future ({iat})"))
        } else {
            Ok(())
        }
    });
    let claims = match expect.nonce {
        Some(nonce) => id_token.claims(&verifier, &Nonce::new(nonce.to_string())),
        None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    }
    .map_err(map_claims_error)?;

    if let (Some(expected), Some(access_token)) = (claims.access_token_hash(), expect.access_token)
    {
        let alg = id_token
            .signing_alg()
            .map_err(|err| OidcError::InvalidSignature(err.to_string()))?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(|err| OidcError::InvalidSignature(err.to_string()))?;
        let actual = AccessTokenHash::from_token(access_token, alg, key)
            .map_err(|err| OidcError::InvalidClaims(format!("at_hash: {err}")))?;
        if actual != *expected {
            return Err(OidcError::InvalidClaims(
                "at_hash does not match the access token".into(),
            ));
        }
    }

    // The signature covers the payload decoded above: its claims are now
    // trusted, including the non-standard ones openidconnect does not model.
    let payload = unverified.payload;
    if let Some(nbf) = payload.get("nbf") {
        let nbf = nbf
            .as_f64()
            .ok_or_else(|| OidcError::MalformedToken("nbf is not a number".into()))?;
        let now = chrono::Utc::now().timestamp() as f64;
        if nbf > now + expect.leeway.as_secs_f64() {
            return Err(OidcError::NotYetValid);
        }
    }
    Ok(Verified {
        subject: claims.subject().as_str().to_string(),
        expires_at: claims.expiration().timestamp(),
        claims: payload,
    })
}

fn map_claims_error(err: ClaimsVerificationError) -> OidcError {
    match err {
        ClaimsVerificationError::Expired(why) => OidcError::Expired(why),
        ClaimsVerificationError::InvalidAudience(why) => OidcError::InvalidAudience(why),
        ClaimsVerificationError::InvalidIssuer(why) => OidcError::InvalidIssuer(why),
        ClaimsVerificationError::InvalidNonce(_) => OidcError::InvalidNonce,
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::DisallowedAlg(why),
        ) => OidcError::DisallowedAlgorithm(why),
        ClaimsVerificationError::SignatureVerification(err) => {
            OidcError::InvalidSignature(err.to_string())
        }
        other => OidcError::InvalidClaims(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    fn token(header: Value, payload: Value, signature: &str) -> String {
        format!("{}.{}.{}", b64(&header), b64(&payload), signature)
    }

    #[test]
    fn alg_none_and_hmac_are_refused_before_anything_else() {
        let payload =
            json!({"iss": "https://a.example", "sub": "x", "aud": "c", "exp": 1, "iat": 1});
        for alg in ["none", "None", "HS256", "HS384", "HS512", "RS1", ""] {
            let err = decode_unverified(&token(json!({"alg": alg}), payload.clone(), "c2ln"))
                .err()
                .unwrap();
            assert!(
                matches!(err, OidcError::DisallowedAlgorithm(ref got) if got == alg),
                "{alg}: {err}"
            );
        }
        // An empty signature is an unsigned token whatever the header says.
        let err = decode_unverified(&token(json!({"alg": "RS256"}), payload.clone(), ""))
            .err()
            .unwrap();
        assert!(matches!(err, OidcError::DisallowedAlgorithm(_)), "{err}");
        let ok = decode_unverified(&token(
            json!({"alg": "ES256", "kid": "k1"}),
            payload,
            "c2ln",
        ))
        .unwrap();
        assert_eq!(ok.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn malformed_tokens_are_refused_without_echoing_them() {
        let secretish = "eyJzZWNyZXQiOiJ0b3Btb3N0In0";
        for bad in [
            String::new(),
            "a.b".to_string(),
            "a.b.c.d".to_string(),
            format!("{secretish}.!!!.sig"),
            format!("{}.{}.sig", b64(&json!([1])), b64(&json!({}))),
            token(json!({"alg": "RS256", "crit": ["exp"]}), json!({}), "c2ln"),
            token(json!({"alg": "RS256", "kid": 5}), json!({}), "c2ln"),
        ] {
            let err = decode_unverified(&bad).err().unwrap();
            assert!(matches!(err, OidcError::MalformedToken(_)), "{bad}: {err}");
            assert!(!err.to_string().contains(secretish), "{err}");
        }
    }

    #[test]
    fn claims_match_exactly_or_by_prefix() {
        assert!(value_matches(&json!("team-a/app"), "team-a/app"));
        assert!(!value_matches(&json!("team-a/app2"), "team-a/app"));
        assert!(!value_matches(&json!("team-a/ap"), "team-a/app"));
        assert!(value_matches(&json!("refs/heads/main"), "refs/heads/*"));
        assert!(!value_matches(&json!("refs/tags/v1"), "refs/heads/*"));
        assert!(value_matches(&json!("anything"), "*"));
        assert!(value_matches(&json!(""), "*"));
        assert!(!value_matches(&json!("a"), ""));
        assert!(value_matches(&json!(""), ""));
        assert!(value_matches(&json!(42), "42"));
        assert!(value_matches(&json!(true), "true"));
        assert!(!value_matches(&json!(false), "true"));
        assert!(value_matches(&json!(["x", "team-a"]), "team-a"));
        assert!(!value_matches(&json!(["x", ["team-a"]]), "team-a"));
        assert!(!value_matches(&json!({"team-a": 1}), "*"));
        assert!(!value_matches(&Value::Null, "*"));
        // Case matters; a `*` inside the pattern is literal.
        assert!(!value_matches(&json!("Team-A/app"), "team-a/app"));
        assert!(!value_matches(&json!("team-a/app"), "team-*/app"));
        assert!(value_matches(&json!("team-*/app"), "team-*/app"));
    }

    #[test]
    fn claims_are_found_top_level_first_then_by_path() {
        let claims = json!({
            "groups": ["a", "b", 3],
            "realm_access": {"roles": ["admin"]},
            "realm_access.roles": "flat-wins",
            "single": "one",
        });
        let claims = claims.as_object().unwrap();
        assert_eq!(claim_strings(claims, "groups"), ["a", "b"]);
        assert_eq!(claim_strings(claims, "single"), ["one"]);
        assert_eq!(claim_strings(claims, "realm_access.roles"), ["flat-wins"]);
        assert!(claim_strings(claims, "missing").is_empty());
        let mut nested = claims.clone();
        nested.remove("realm_access.roles");
        assert_eq!(claim_strings(&nested, "realm_access.roles"), ["admin"]);
        assert!(claim_strings(&nested, "realm_access.nope").is_empty());
    }
}
