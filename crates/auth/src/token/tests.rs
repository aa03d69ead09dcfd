//! Token round trips and every way verification must fail.

use super::*;

const NOW: u64 = 1_750_000_000;

fn config() -> TokenConfig {
    TokenConfig::new("berth-issuer", "berth-registry")
}

fn access() -> Vec<AccessEntry> {
    vec![AccessEntry {
        kind: "repository".into(),
        name: "team/app".into(),
        actions: vec!["pull".into(), "push".into()],
    }]
}

fn keys() -> KeySet {
    KeySet::new(SigningKey::generate().unwrap(), vec![])
}

#[test]
fn round_trip() {
    let keys = keys();
    let cfg = config();
    let issued = keys.issue(&cfg, "alice", access(), NOW).unwrap();
    assert_eq!(issued.expires_in, 300);
    assert_eq!(issued.issued_at, NOW);
    let claims = keys.verify(&cfg, &issued.token, NOW + 10).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.iss, "berth-issuer");
    assert_eq!(claims.aud, "berth-registry");
    assert_eq!((claims.iat, claims.nbf, claims.exp), (NOW, NOW, NOW + 300));
    assert_eq!(claims.access, access());
    assert_eq!(claims.jti.len(), 32);
    let app = ScopeTarget::Repository(berth_oci::RepoName::parse("team/app").unwrap());
    assert!(claims.allows(&app, ScopeAction::Push));
    assert!(!claims.allows(&app, ScopeAction::Delete));
    // Two tokens never share an id.
    let again = keys.issue(&cfg, "alice", access(), NOW).unwrap();
    assert_ne!(
        keys.verify(&cfg, &again.token, NOW).unwrap().jti,
        claims.jti
    );
}

#[test]
fn anonymous_tokens_have_an_empty_subject() {
    let keys = keys();
    let cfg = config();
    let issued = keys.issue(&cfg, "", access(), NOW).unwrap();
    assert_eq!(keys.verify(&cfg, &issued.token, NOW).unwrap().sub, "");
}

#[test]
fn header_names_the_key() {
    let keys = keys();
    let issued = keys.issue(&config(), "alice", vec![], NOW).unwrap();
    let header = jsonwebtoken::decode_header(&issued.token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(keys.current().kid()));
    assert_eq!(header.typ.as_deref(), Some("JWT"));
}

#[test]
fn expiry_and_not_before_with_leeway() {
    let keys = keys();
    let mut cfg = config();
    cfg.lifetime = Duration::from_secs(60);
    cfg.leeway = Duration::from_secs(5);
    let token = keys.issue(&cfg, "alice", access(), NOW).unwrap().token;
    assert!(keys.verify(&cfg, &token, NOW + 64).is_ok());
    assert_eq!(
        keys.verify(&cfg, &token, NOW + 65),
        Err(TokenError::Expired)
    );
    assert_eq!(
        keys.verify(&cfg, &token, NOW + 10_000),
        Err(TokenError::Expired)
    );
    assert!(keys.verify(&cfg, &token, NOW - 5).is_ok());
    assert_eq!(
        keys.verify(&cfg, &token, NOW - 6),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn wrong_audience_or_issuer() {
    let keys = keys();
    let token = keys.issue(&config(), "alice", access(), NOW).unwrap().token;
    let mut other = config();
    other.service = "another-registry".into();
    assert_eq!(
        keys.verify(&other, &token, NOW),
        Err(TokenError::WrongAudience)
    );
    let mut other = config();
    other.issuer = "someone-else".into();
    assert_eq!(
        keys.verify(&other, &token, NOW),
        Err(TokenError::WrongIssuer)
    );
}

#[test]
fn unknown_key_and_bad_signature() {
    let cfg = config();
    let ours = keys();
    let theirs = keys();
    let token = theirs.issue(&cfg, "alice", access(), NOW).unwrap().token;
    assert_eq!(ours.verify(&cfg, &token, NOW), Err(TokenError::UnknownKey));
    // Their signature under our kid: the kid is known, the signature is not.
    let (rest, _) = token.rsplit_once('.').unwrap();
    let (_, payload) = rest.split_once('.').unwrap();
    let ours_token = ours.issue(&cfg, "alice", access(), NOW).unwrap().token;
    let (our_header, _) = ours_token.split_once('.').unwrap();
    let their_sig = token.rsplit_once('.').unwrap().1;
    let forged = format!("{our_header}.{payload}.{their_sig}");
    assert_eq!(
        ours.verify(&cfg, &forged, NOW),
        Err(TokenError::BadSignature)
    );
    // Tampered claims under a genuine signature.
    let (h, rest) = ours_token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let tampered_claims = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&json!({
            "iss": "berth-issuer", "sub": "admin", "aud": "berth-registry",
            "exp": NOW + 300, "nbf": NOW, "iat": NOW, "jti": "x",
            "access": [{"type": "registry", "name": "catalog", "actions": ["*"]}],
        }))
        .unwrap(),
    );
    let tampered = format!("{h}.{tampered_claims}.{sig}");
    assert_eq!(
        ours.verify(&cfg, &tampered, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn malformed_tokens() {
    let keys = keys();
    let cfg = config();
    for bad in ["", "abc", "a.b.c", "..", "eyJhbGciOiJFUzI1NiJ9.e30."] {
        assert!(
            matches!(
                keys.verify(&cfg, bad, NOW),
                Err(TokenError::Malformed(_) | TokenError::UnknownKey)
            ),
            "{bad:?}"
        );
    }
    // No kid in the header.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let token = format!("{header}.e30.AAAA");
    assert_eq!(keys.verify(&cfg, &token, NOW), Err(TokenError::UnknownKey));
    // Another algorithm (alg=none, HS256) is refused before any key is used.
    for alg in ["none", "HS256"] {
        let header = URL_SAFE_NO_PAD
            .encode(format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, keys.current().kid()).as_bytes());
        let token = format!("{header}.e30.");
        assert!(
            matches!(
                keys.verify(&cfg, &token, NOW),
                Err(TokenError::Malformed(_))
            ),
            "{alg}"
        );
    }
}

#[test]
fn rotated_keys_still_verify_until_retired() {
    let cfg = config();
    let mut keys = keys();
    let old_kid = keys.current().kid().to_string();
    let old_token = keys.issue(&cfg, "alice", access(), NOW).unwrap().token;
    keys.rotate(SigningKey::generate().unwrap());
    assert_ne!(keys.current().kid(), old_kid);
    let new_token = keys.issue(&cfg, "alice", access(), NOW).unwrap().token;
    let new_header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(new_header.kid.as_deref(), Some(keys.current().kid()));
    assert!(keys.verify(&cfg, &old_token, NOW).is_ok());
    assert!(keys.verify(&cfg, &new_token, NOW).is_ok());
    assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
    // The current key cannot be retired; the old one can.
    let current = keys.current().kid().to_string();
    assert!(!keys.retire(&current));
    assert!(keys.retire(&old_kid));
    assert!(!keys.retire(&old_kid));
    assert_eq!(
        keys.verify(&cfg, &old_token, NOW),
        Err(TokenError::UnknownKey)
    );
    assert!(keys.verify(&cfg, &new_token, NOW).is_ok());
}

#[test]
fn keys_survive_pem_round_trip() {
    let cfg = config();
    let key = SigningKey::generate().unwrap();
    let pem_text = key.to_pem().to_string();
    assert!(
        pem_text.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{pem_text}"
    );
    let loaded = SigningKey::from_pem(&pem_text).unwrap();
    assert_eq!(loaded.kid(), key.kid());
    assert_eq!(loaded.public_jwk(), key.public_jwk());
    // A token signed before a restart verifies with the reloaded key, and
    // the other way round.
    let before = KeySet::new(key, vec![]);
    let after = KeySet::new(loaded, vec![]);
    let token = before.issue(&cfg, "alice", access(), NOW).unwrap().token;
    assert!(after.verify(&cfg, &token, NOW).is_ok());
    let token = after.issue(&cfg, "alice", access(), NOW).unwrap().token;
    assert!(before.verify(&cfg, &token, NOW).is_ok());
    // Debug shows the kid, never the key.
    let shown = format!("{:?}", after.current());
    assert!(shown.contains(after.current().kid()) && !shown.contains("PRIVATE"));
}

#[test]
fn bad_pem_is_an_error() {
    assert!(matches!(SigningKey::from_pem(""), Err(KeyError::Pem(_))));
    assert!(matches!(
        SigningKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        Err(KeyError::Pem(_))
    ));
    assert_eq!(
        SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err(),
        KeyError::NotP256
    );
}

#[test]
fn jwks_lists_public_keys_only() {
    let keys = keys();
    let jwks = keys.jwks();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], keys.current().kid());
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(key["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(key["y"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert!(key.get("d").is_none());
    // The kid is the RFC 7638 thumbprint of exactly these members.
    assert_eq!(
        keys.current().kid(),
        thumbprint(key["x"].as_str().unwrap(), key["y"].as_str().unwrap())
    );
    // jsonwebtoken itself can verify with a key built from the JWK.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let decoding = DecodingKey::from_jwk(&jwk).unwrap();
    let token = keys.issue(&config(), "alice", access(), NOW).unwrap().token;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["berth-registry"]);
    validation.validate_exp = false;
    assert!(jsonwebtoken::decode::<Claims>(&token, &decoding, &validation).is_ok());
}

#[test]
fn refresh_and_access_tokens_are_not_interchangeable() {
    let keys = keys();
    let cfg = config();
    let refresh = keys.issue_refresh(&cfg, "alice", NOW).unwrap();
    assert_eq!(refresh.expires_in, 7 * 24 * 3600);
    let claims = keys
        .verify_refresh(&cfg, &refresh.token, NOW + 3600)
        .unwrap();
    assert_eq!(claims.sub, "alice");
    assert!(claims.access.is_empty());
    assert_eq!(
        keys.verify(&cfg, &refresh.token, NOW),
        Err(TokenError::WrongUse)
    );
    let access_token = keys.issue(&cfg, "alice", access(), NOW).unwrap().token;
    assert_eq!(
        keys.verify_refresh(&cfg, &access_token, NOW),
        Err(TokenError::WrongUse)
    );
    assert_eq!(
        keys.verify_refresh(&cfg, &refresh.token, NOW + 8 * 24 * 3600),
        Err(TokenError::Expired)
    );
}

#[test]
fn token_response_json() {
    let keys = keys();
    let cfg = config();
    let access_token = keys.issue(&cfg, "alice", access(), 1_700_000_000).unwrap();
    let body = serde_json::to_value(TokenResponse::new(access_token.clone(), None)).unwrap();
    assert_eq!(body["token"], access_token.token);
    assert_eq!(body["access_token"], access_token.token);
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["issued_at"], "2023-11-14T22:13:20Z");
    assert!(body.get("refresh_token").is_none());
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
}
