use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::check_issuer_url;
use crate::http::build_client;
use crate::jwt::{self, Expect, IssuerKeys, claim, value_matches};
use crate::{DEFAULT_LEEWAY_SECS, OidcError};

/// Workload identity: a CI system's ID token accepted as the credential of a
/// configured robot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRule {
    /// The token's `iss`, exactly (e.g. `https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// A value the token's `aud` must contain.
    pub audience: String,
    /// claim name -> required value; a value may end with `*` as a prefix
    /// match (`refs/heads/*`; `*` alone: any value). Array claims match when
    /// one element does; numbers and booleans compare by their JSON text.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// The robot the token authenticates as.
    pub robot: String,
}

impl WorkloadRule {
    /// Whether this rule accepts a verified token's claims.
    fn accepts(&self, claims: &serde_json::Map<String, Value>) -> bool {
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return false;
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|aud| aud.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        audience_ok
            && self.claims.iter().all(|(name, pattern)| {
                claim(claims, name).is_some_and(|v| value_matches(v, pattern))
            })
    }
}

/// Verifies workload ID tokens against [`WorkloadRule`]s. Each rule's issuer
/// is discovered lazily on its first token (a failed discovery is retried
/// on the next); its JWKS is cached and fetched again for an unknown `kid`.
/// Cheap to clone; clones share the caches.
#[derive(Clone)]
pub struct WorkloadVerifier {
    inner: Arc<VerifierInner>,
    leeway: Duration,
}

struct VerifierInner {
    rules: Vec<WorkloadRule>,
    issuers: HashMap<String, tokio::sync::OnceCell<IssuerKeys>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for WorkloadVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadVerifier")
            .field("rules", &self.inner.rules)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl WorkloadVerifier {
    /// Checks the rules (each problem names `auth.workload[i].field`).
    pub fn new(rules: Vec<WorkloadRule>) -> Result<WorkloadVerifier, OidcError> {
        let mut problems = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if let Err(why) = check_issuer_url(&rule.issuer) {
                problems.push(format!("auth.workload[{i}].issuer: {why}"));
            }
            if rule.audience.trim().is_empty() {
                problems.push(format!("auth.workload[{i}].audience: must not be empty"));
            }
            if rule.robot.trim().is_empty() {
                problems.push(format!("auth.workload[{i}].robot: must not be empty"));
            }
            for (name, value) in &rule.claims {
                if name.trim().is_empty() {
                    problems.push(format!("auth.workload[{i}].claims: a claim name is empty"));
                }
                if value.is_empty() {
                    problems.push(format!("auth.workload[{i}].claims.{name}: must not be empty (use \"*\" for any value)"));
                }
            }
        }
        if !problems.is_empty() {
            return Err(OidcError::Config(problems.join("; ")));
        }
        let issuers = rules
            .iter()
            .map(|rule| (rule.issuer.clone(), tokio::sync::OnceCell::new()))
            .collect();
        Ok(WorkloadVerifier {
            inner: Arc::new(VerifierInner {
                rules,
                issuers,
                http: build_client()?,
            }),
            leeway: Duration::from_secs(DEFAULT_LEEWAY_SECS),
        })
    }

    /// The same verifier with another clock leeway for `exp`/`iat`/`nbf`.
    pub fn with_leeway(self, leeway: Duration) -> WorkloadVerifier {
        WorkloadVerifier { leeway, ..self }
    }

    /// Verifies the signature (JWKS of the token's issuer — only issuers
    /// that appear in the rules), `iss`, `exp`/`iat`/`nbf` (with the
    /// leeway), then returns the robot of the FIRST rule whose issuer,
    /// audience and claims all match; `Ok(None)` when no rule matches.
    /// A token from an issuer no rule names is an error
    /// ([`OidcError::UntrustedIssuer`]): it cannot be verified.
    pub async fn robot_for(&self, id_token: &str) -> Result<Option<String>, OidcError> {
        let unverified = jwt::decode_unverified(id_token)?;
        let issuer = match unverified.payload.get("iss") {
            Some(Value::String(issuer)) => issuer.clone(),
            _ => return Err(OidcError::MalformedToken("no iss claim".into())),
        };
        let Some(cell) = self.inner.issuers.get(&issuer) else {
            return Err(OidcError::UntrustedIssuer(issuer));
        };
        let keys = cell
            .get_or_try_init(|| async {
                let (keys, _metadata) = IssuerKeys::discover(&issuer, &self.inner.http).await?;
                Ok::<_, OidcError>(keys)
            })
            .await?;
        let verified = jwt::verify(
            keys,
            &self.inner.http,
            id_token,
            // The audience is each rule's business; there is no nonce.
            Expect {
                audience: None,
                nonce: None,
                access_token: None,
                leeway: self.leeway,
            },
        )
        .await?;
        let robot = self
            .inner
            .rules
            .iter()
            .find(|rule| rule.accepts(&verified.claims))
            .map(|rule| rule.robot.clone());
        match &robot {
            Some(robot) => {
                tracing::debug!(%issuer, subject = %verified.subject, %robot, "workload token accepted")
            }
            None => {
                tracing::debug!(%issuer, subject = %verified.subject, "workload token matches no rule")
            }
        }
        Ok(robot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(claims: &[(&str, &str)], robot: &str) -> WorkloadRule {
        WorkloadRule {
            issuer: "https://token.actions.example".into(),
            audience: "berth".into(),
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            robot: robot.into(),
        }
    }

    fn token_claims(extra: Value) -> serde_json::Map<String, Value> {
        let mut claims = json!({
            "iss": "https://token.actions.example",
            "aud": "berth",
            "sub": "repo:team-a/app:ref:refs/heads/main",
            "repository": "team-a/app",
            "ref": "refs/heads/main",
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims.as_object().unwrap().clone()
    }

    #[test]
    fn a_rule_needs_issuer_audience_and_every_claim() {
        let r = rule(
            &[("repository", "team-a/app"), ("ref", "refs/heads/*")],
            "ci",
        );
        assert!(r.accepts(&token_claims(json!({}))));
        assert!(r.accepts(&token_claims(json!({"aud": ["other", "berth"]}))));
        assert!(!r.accepts(&token_claims(json!({"aud": "other"}))));
        assert!(!r.accepts(&token_claims(json!({"aud": ["other"]}))));
        assert!(!r.accepts(&token_claims(json!({"aud": null}))));
        assert!(!r.accepts(&token_claims(
            json!({"iss": "https://token.actions.example/"})
        )));
        assert!(!r.accepts(&token_claims(json!({"ref": "refs/tags/v1"}))));
        assert!(!r.accepts(&token_claims(json!({"repository": "team-a/app-fork"}))));
        let mut missing = token_claims(json!({}));
        missing.remove("repository");
        assert!(!r.accepts(&missing));
        // No claims: issuer and audience suffice.
        assert!(rule(&[], "any").accepts(&token_claims(json!({"repository": "x"}))));
    }

    #[test]
    fn rules_are_validated_with_field_names() {
        let mut bad = rule(&[("", "x"), ("ref", "")], " ");
        bad.issuer = "http://ci.example".into();
        bad.audience = String::new();
        let err = WorkloadVerifier::new(vec![rule(&[], "ok"), bad])
            .err()
            .unwrap()
            .to_string();
        for field in [
            "auth.workload[1].issuer",
            "auth.workload[1].audience",
            "auth.workload[1].robot",
            "auth.workload[1].claims:",
            "auth.workload[1].claims.ref",
        ] {
            assert!(err.contains(field), "{field} missing from {err}");
        }
        assert!(!err.contains("auth.workload[0]"), "{err}");
        WorkloadVerifier::new(vec![rule(&[("ref", "*")], "ok")]).unwrap();
    }

    #[test]
    fn rules_deserialize_strictly() {
        let r: WorkloadRule = serde_json::from_value(json!({
            "issuer": "https://token.actions.example", "audience": "berth", "robot": "ci",
            "claims": {"repository": "team-a/*"}
        }))
        .unwrap();
        assert_eq!(r.claims["repository"], "team-a/*");
        let err = serde_json::from_value::<WorkloadRule>(json!({
            "issuer": "https://x.example", "audience": "a", "robot": "r", "subject": "s"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[tokio::test]
    async fn tokens_from_unknown_issuers_or_with_bad_algs_are_refused_offline() {
        use base64::Engine as _;
        let b64 = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
        };
        let verifier = WorkloadVerifier::new(vec![rule(&[], "ci")]).unwrap();
        let payload = json!({"iss": "https://evil.example", "aud": "berth", "sub": "x", "exp": 4e9, "iat": 1});
        let token = format!(
            "{}.{}.c2ln",
            b64(json!({"alg": "RS256"})),
            b64(payload.clone())
        );
        assert!(matches!(
            verifier.robot_for(&token).await,
            Err(OidcError::UntrustedIssuer(_))
        ));
        let trusted = json!({"iss": "https://token.actions.example", "aud": "berth", "sub": "x", "exp": 4e9, "iat": 1});
        for alg in ["none", "HS256"] {
            let token = format!("{}.{}.c2ln", b64(json!({"alg": alg})), b64(trusted.clone()));
            assert!(
                matches!(
                    verifier.robot_for(&token).await,
                    Err(OidcError::DisallowedAlgorithm(_))
                ),
                "{alg}"
            );
        }
        let unsigned = format!("{}.{}.", b64(json!({"alg": "none"})), b64(trusted));
        assert!(matches!(
            verifier.robot_for(&unsigned).await,
            Err(OidcError::DisallowedAlgorithm(_))
        ));
    }

    #[test]
    fn futures_are_send() {
        fn is_send<T: Send>(_: &T) {}
        let verifier = WorkloadVerifier::new(vec![]).unwrap();
        is_send(&verifier.robot_for("x"));
    }
}
