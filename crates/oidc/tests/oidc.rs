//! berth-oidc against a real OpenID provider (IdentityPython's idpyoidc,
//! started by scripts/start-services.sh; see scripts/services/oidc.sh for
//! its users and clients). The test acts as the browser: it opens the
//! authorize URL, posts the login form, and reads `code` and `state` from
//! the redirect's Location instead of following it.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_oidc::{OidcClient, OidcConfig, OidcError, PendingLogin, WorkloadRule, WorkloadVerifier};
use openidconnect::url::{Url, form_urlencoded};
use serde_json::Value;

/// A variable written by scripts/start-services.sh; missing is a failure.
fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: run scripts/start-services.sh and load target/test-services.env \
             (`set -a; . target/test-services.env; set +a`), as scripts/test does"
        ),
    }
}

fn issuer() -> String {
    env("BERTH_TEST_OIDC_ISSUER")
}

fn berth_config() -> OidcConfig {
    let mut config = OidcConfig::new(
        &issuer(),
        &env("BERTH_TEST_OIDC_CLIENT_ID"),
        Some(&env("BERTH_TEST_OIDC_CLIENT_SECRET")),
        &env("BERTH_TEST_OIDC_REDIRECT_URL"),
    );
    config.admin_group = Some("registry-admins".to_string());
    config
}

async fn berth_client() -> OidcClient {
    OidcClient::discover(berth_config())
        .await
        .expect("discovery of the test provider")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The browser: no redirects followed, so the callback's Location is read.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs `user` in at the provider's form; returns the callback's (code, state).
async fn log_in(authorize_url: &str, user: &str, password: &str) -> (String, String) {
    let browser = browser();
    let page = browser.get(authorize_url).send().await.unwrap();
    let status = page.status();
    let html = page.text().await.unwrap();
    assert_eq!(status, 200, "authorize page: {html}");
    let action = attribute(&html, "action=\"").expect("login form action");
    let form_token = attribute(&html, "name=\"token\" value=\"").expect("login form token");
    let action = Url::parse(authorize_url).unwrap().join(&action).unwrap();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", &form_token)
        .append_pair("username", user)
        .append_pair("password", password)
        .finish();
    let answer = browser
        .post(action)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        302,
        "login of {user}: {}",
        answer.text().await.unwrap_or_default()
    );
    let location = answer.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let location = Url::parse(&location).unwrap();
    let query: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
    assert!(!query.contains_key("error"), "provider error: {query:?}");
    (query["code"].clone(), query["state"].clone())
}

fn attribute(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(prefix)? + prefix.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&amp;", "&"))
}

async fn login_as(
    client: &OidcClient,
    user: &str,
    password: &str,
) -> Result<berth_oidc::OidcIdentity, OidcError> {
    let (url, pending) = client.begin_login();
    let (code, state) = log_in(&url, user, password).await;
    client.complete_login(&pending, &state, &code).await
}

#[tokio::test]
async fn an_admin_logs_in_with_code_flow_and_pkce() {
    let client = berth_client().await;
    let (url, pending) = client.begin_login();
    // What the browser is sent to: PKCE S256, state, nonce, the scopes.
    let query: BTreeMap<String, String> = Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["state"], pending.state);
    assert_eq!(query["nonce"], pending.nonce);
    assert_eq!(query["scope"], "openid profile email groups");
    assert!(!url.contains(&pending.pkce_verifier));
    assert!((unix_now() - pending.created_at).abs() <= 5);

    let (code, state) = log_in(
        &url,
        &env("BERTH_TEST_OIDC_ADMIN_USER"),
        &env("BERTH_TEST_OIDC_ADMIN_PASSWORD"),
    )
    .await;
    let dana = client
        .complete_login(&pending, &state, &code)
        .await
        .unwrap();
    assert_eq!(dana.issuer, issuer());
    assert!(!dana.subject.is_empty());
    assert_eq!(dana.username, "dana");
    assert_eq!(dana.email.as_deref(), Some("dana@example.test"));
    assert_eq!(dana.groups, ["registry-admins", "team-a"]);
    assert!(dana.is_admin);
    assert_eq!(dana.refresh_token, None, "no offline_access asked");
    let expires_at = dana.expires_at.unwrap();
    assert!(
        expires_at > unix_now() && expires_at < unix_now() + 3600,
        "{expires_at}"
    );
}

#[tokio::test]
async fn a_user_outside_the_admin_group_is_not_admin() {
    let client = berth_client().await;
    let erin = login_as(
        &client,
        &env("BERTH_TEST_OIDC_USER"),
        &env("BERTH_TEST_OIDC_USER_PASSWORD"),
    )
    .await
    .unwrap();
    assert_eq!(erin.username, "erin");
    assert_eq!(erin.groups, ["team-a"]);
    assert!(!erin.is_admin);

    // Another username claim and no admin group at all.
    let mut config = berth_config();
    config.username_claim = "email".to_string();
    config.admin_group = None;
    let client = OidcClient::discover(config).await.unwrap();
    let dana = login_as(
        &client,
        &env("BERTH_TEST_OIDC_ADMIN_USER"),
        &env("BERTH_TEST_OIDC_ADMIN_PASSWORD"),
    )
    .await
    .unwrap();
    assert_eq!(dana.username, "dana@example.test");
    assert!(!dana.is_admin);
}

#[tokio::test]
async fn a_wrong_state_is_refused() {
    let client = berth_client().await;
    let (url, pending) = client.begin_login();
    let (code, state) = log_in(
        &url,
        &env("BERTH_TEST_OIDC_USER"),
        &env("BERTH_TEST_OIDC_USER_PASSWORD"),
    )
    .await;
    assert_eq!(state, pending.state);
    for wrong in [
        String::new(),
        "x".to_string(),
        format!("{state}x"),
        state[..state.len() - 1].to_string(),
    ] {
        let err = client
            .complete_login(&pending, &wrong, &code)
            .await
            .unwrap_err();
        assert!(matches!(err, OidcError::StateMismatch), "{err}");
    }
    // Another login's pending state (a CSRF attempt with the attacker's code).
    let (_, other) = client.begin_login();
    let err = client
        .complete_login(&other, &state, &code)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::StateMismatch), "{err}");
    // The code was never spent: the right state still works.
    client
        .complete_login(&pending, &state, &code)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_code_works_once() {
    let client = berth_client().await;
    let (url, pending) = client.begin_login();
    let (code, state) = log_in(
        &url,
        &env("BERTH_TEST_OIDC_USER"),
        &env("BERTH_TEST_OIDC_USER_PASSWORD"),
    )
    .await;
    client
        .complete_login(&pending, &state, &code)
        .await
        .unwrap();
    let err = client
        .complete_login(&pending, &state, &code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OidcError::TokenRequest(ref why) if why.starts_with("invalid_grant")),
        "{err}"
    );
    assert!(
        !err.to_string().contains(&code),
        "the code must not be in the message: {err}"
    );
}

#[tokio::test]
async fn the_pkce_verifier_and_nonce_are_checked() {
    let client = berth_client().await;
    let user = env("BERTH_TEST_OIDC_USER");
    let password = env("BERTH_TEST_OIDC_USER_PASSWORD");

    // The provider refuses a code with another verifier.
    let (url, pending) = client.begin_login();
    let (code, state) = log_in(&url, &user, &password).await;
    let (_, other) = client.begin_login();
    let wrong_verifier = PendingLogin {
        pkce_verifier: other.pkce_verifier,
        ..pending.clone()
    };
    let err = client
        .complete_login(&wrong_verifier, &state, &code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OidcError::TokenRequest(ref why) if why.starts_with("invalid_grant")),
        "{err}"
    );
    assert!(!err.to_string().contains(&wrong_verifier.pkce_verifier));

    // An ID token whose nonce is not the pending login's.
    let (url, pending) = client.begin_login();
    let (code, state) = log_in(&url, &user, &password).await;
    let wrong_nonce = PendingLogin {
        nonce: "another-nonce".into(),
        ..pending
    };
    let err = client
        .complete_login(&wrong_nonce, &state, &code)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::InvalidNonce), "{err}");

    // A login that took too long.
    let (url, pending) = client.begin_login();
    let (code, state) = log_in(&url, &user, &password).await;
    let stale = PendingLogin {
        created_at: pending.created_at - berth_oidc::LOGIN_TIMEOUT_SECS - 1,
        ..pending
    };
    let err = client
        .complete_login(&stale, &state, &code)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::LoginExpired), "{err}");
}

#[tokio::test]
async fn a_refresh_token_gives_a_fresh_identity() {
    let mut config = berth_config();
    config.scopes.push("offline_access".to_string());
    let client = OidcClient::discover(config).await.unwrap();
    let (url, pending) = client.begin_login();
    assert!(
        url.contains("prompt=consent"),
        "offline_access needs prompt=consent: {url}"
    );
    let (code, state) = log_in(
        &url,
        &env("BERTH_TEST_OIDC_ADMIN_USER"),
        &env("BERTH_TEST_OIDC_ADMIN_PASSWORD"),
    )
    .await;
    let dana = client
        .complete_login(&pending, &state, &code)
        .await
        .unwrap();
    let refresh_token = dana
        .refresh_token
        .clone()
        .expect("a refresh token for offline_access");
    assert!(
        !format!("{dana:?}").contains(&refresh_token),
        "Debug must redact the refresh token"
    );
    assert!(
        !serde_json::to_string(&dana)
            .unwrap()
            .contains(&refresh_token)
    );

    let again = client.refresh(&refresh_token).await.unwrap();
    assert_eq!(
        (
            &again.issuer,
            &again.subject,
            &again.username,
            &again.email,
            &again.groups,
            again.is_admin
        ),
        (
            &dana.issuer,
            &dana.subject,
            &dana.username,
            &dana.email,
            &dana.groups,
            dana.is_admin
        )
    );
    assert!(again.refresh_token.is_some());
    assert!(again.expires_at.unwrap() > unix_now());

    let err = client.refresh("not-a-refresh-token").await.unwrap_err();
    assert!(matches!(err, OidcError::TokenRequest(_)), "{err}");
    assert!(!err.to_string().contains("not-a-refresh-token"), "{err}");
}

#[tokio::test]
async fn discovery_checks_the_issuer() {
    // Discovery answers, but for an issuer without the trailing slash.
    let mut config = berth_config();
    config.issuer_url = format!("{}/", issuer());
    let err = OidcClient::discover(config).await.err().unwrap();
    assert!(matches!(err, OidcError::Discovery { .. }), "{err}");

    let mut config = berth_config();
    config.issuer_url = "http://127.0.0.1:9".to_string();
    let err = OidcClient::discover(config).await.err().unwrap();
    assert!(matches!(err, OidcError::Discovery { .. }), "{err}");

    let mut config = berth_config();
    config.issuer_url = "http://login.example.com".to_string();
    let err = OidcClient::discover(config).await.err().unwrap();
    assert!(
        matches!(err, OidcError::Config(ref why) if why.starts_with("auth.oidc.issuer_url")),
        "{err}"
    );
}

// Workload identity --------------------------------------------------------

/// An ID token for a CI job, obtained from the provider through the code
/// flow of a CI client (the token endpoint is called directly, as a CI
/// system's own token service would be).
async fn ci_token(client_id: &str, secret: &str, user: &str, password: &str) -> String {
    let mut config = OidcConfig::new(
        &issuer(),
        client_id,
        Some(secret),
        &env("BERTH_TEST_OIDC_CI_REDIRECT_URL"),
    );
    config.scopes = vec!["openid".into(), "profile".into(), "ci".into()];
    let client = OidcClient::discover(config).await.unwrap();
    let (url, pending) = client.begin_login();
    let (code, _state) = log_in(&url, user, password).await;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", &env("BERTH_TEST_OIDC_CI_REDIRECT_URL"))
        .append_pair("code_verifier", &pending.pkce_verifier)
        .finish();
    let response = browser()
        .post(format!("{}/token", issuer()))
        .basic_auth(client_id, Some(secret))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    json["id_token"].as_str().expect("an id_token").to_string()
}

async fn main_branch_token() -> String {
    ci_token(
        &env("BERTH_TEST_OIDC_CI_CLIENT_ID"),
        &env("BERTH_TEST_OIDC_CI_CLIENT_SECRET"),
        &env("BERTH_TEST_OIDC_CI_USER"),
        &env("BERTH_TEST_OIDC_CI_PASSWORD"),
    )
    .await
}

fn rule(audience: &str, claims: &[(&str, &str)], robot: &str) -> WorkloadRule {
    WorkloadRule {
        issuer: issuer(),
        audience: audience.to_string(),
        claims: claims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        robot: robot.to_string(),
    }
}

fn payload(token: &str) -> serde_json::Map<String, Value> {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn a_workload_token_matching_a_rule_names_its_robot() {
    let token = main_branch_token().await;
    let claims = payload(&token);
    assert_eq!(claims["repository"], "team-a/app");
    let aud = env("BERTH_TEST_OIDC_CI_CLIENT_ID");

    let verifier = WorkloadVerifier::new(vec![
        rule(&aud, &[("repository", "team-b/*")], "team-b+ci"),
        rule(
            &aud,
            &[("repository", "team-a/app"), ("ref", "refs/heads/*")],
            "team-a+release",
        ),
        rule(&aud, &[("repository", "team-a/*")], "team-a+any"),
    ])
    .unwrap();
    assert_eq!(
        verifier.robot_for(&token).await.unwrap().as_deref(),
        Some("team-a+release"),
        "first match wins"
    );
    // The cached keys serve the next token.
    assert_eq!(
        verifier.robot_for(&token).await.unwrap().as_deref(),
        Some("team-a+release")
    );

    let verifier = WorkloadVerifier::new(vec![rule(&aud, &[], "anything-from-ci")]).unwrap();
    assert_eq!(
        verifier.robot_for(&token).await.unwrap().as_deref(),
        Some("anything-from-ci")
    );
}

#[tokio::test]
async fn a_wrong_audience_or_claim_matches_no_rule() {
    let token = main_branch_token().await;
    let aud = env("BERTH_TEST_OIDC_CI_CLIENT_ID");

    let verifier = WorkloadVerifier::new(vec![rule("another-audience", &[], "x")]).unwrap();
    assert_eq!(verifier.robot_for(&token).await.unwrap(), None);

    let verifier = WorkloadVerifier::new(vec![
        rule(
            &aud,
            &[("repository", "team-a/app"), ("ref", "refs/tags/*")],
            "tags",
        ),
        rule(
            &aud,
            &[("repository", "team-a/app"), ("environment", "*")],
            "needs-environment",
        ),
        rule(&aud, &[("repository", "team-a")], "exact-is-exact"),
    ])
    .unwrap();
    assert_eq!(verifier.robot_for(&token).await.unwrap(), None);

    // A fork's job: same client, another repository.
    let fork = ci_token(
        &aud,
        &env("BERTH_TEST_OIDC_CI_CLIENT_SECRET"),
        &env("BERTH_TEST_OIDC_CI_FORK_USER"),
        &env("BERTH_TEST_OIDC_CI_FORK_PASSWORD"),
    )
    .await;
    let verifier = WorkloadVerifier::new(vec![
        rule(&aud, &[("repository", "team-a/*")], "team-a+ci"),
        rule(&aud, &[("repository", "mallory/*")], "mallory+ci"),
    ])
    .unwrap();
    assert_eq!(
        verifier.robot_for(&token).await.unwrap().as_deref(),
        Some("team-a+ci")
    );
    assert_eq!(
        verifier.robot_for(&fork).await.unwrap().as_deref(),
        Some("mallory+ci")
    );

    // A user's login ID token is for Berth's client, not the CI audience.
    let dana = {
        let client = berth_client().await;
        let (url, pending) = client.begin_login();
        let (code, _) = log_in(
            &url,
            &env("BERTH_TEST_OIDC_ADMIN_USER"),
            &env("BERTH_TEST_OIDC_ADMIN_PASSWORD"),
        )
        .await;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", &env("BERTH_TEST_OIDC_REDIRECT_URL"))
            .append_pair("code_verifier", &pending.pkce_verifier)
            .finish();
        let response: Value = browser()
            .post(format!("{}/token", issuer()))
            .basic_auth(
                env("BERTH_TEST_OIDC_CLIENT_ID"),
                Some(env("BERTH_TEST_OIDC_CLIENT_SECRET")),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["id_token"].as_str().unwrap().to_string()
    };
    assert_eq!(verifier.robot_for(&dana).await.unwrap(), None);
}

#[tokio::test]
async fn a_tampered_workload_token_is_refused() {
    let fork = ci_token(
        &env("BERTH_TEST_OIDC_CI_CLIENT_ID"),
        &env("BERTH_TEST_OIDC_CI_CLIENT_SECRET"),
        &env("BERTH_TEST_OIDC_CI_FORK_USER"),
        &env("BERTH_TEST_OIDC_CI_FORK_PASSWORD"),
    )
    .await;
    let aud = env("BERTH_TEST_OIDC_CI_CLIENT_ID");
    let verifier = WorkloadVerifier::new(vec![rule(
        &aud,
        &[("repository", "team-a/app")],
        "team-a+ci",
    )])
    .unwrap();
    assert_eq!(verifier.robot_for(&fork).await.unwrap(), None);

    // The fork rewrites its repository claim and keeps the signature.
    let parts: Vec<&str> = fork.split('.').collect();
    let mut claims = payload(&fork);
    claims.insert("repository".into(), "team-a/app".into());
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let err = verifier.robot_for(&forged).await.unwrap_err();
    assert!(matches!(err, OidcError::InvalidSignature(_)), "{err}");
    assert!(
        !err.to_string().contains(parts[2]),
        "no token material in messages: {err}"
    );

    // A flipped signature byte.
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert!(matches!(
        verifier.robot_for(&flipped).await,
        Err(OidcError::InvalidSignature(_))
    ));

    // Re-labelled as unsigned or HMAC.
    for alg in ["none", "HS256"] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
        let relabelled = format!("{header}.{forged_payload}.{}", parts[2]);
        assert!(
            matches!(
                verifier.robot_for(&relabelled).await,
                Err(OidcError::DisallowedAlgorithm(_))
            ),
            "{alg}"
        );
    }

    // A kid the issuer never published: the JWKS is fetched again, still no key.
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    header.insert("kid".into(), "rotated-away".into());
    let unknown_kid = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        verifier.robot_for(&unknown_kid).await,
        Err(OidcError::InvalidSignature(_))
    ));
}

#[tokio::test]
async fn an_expired_or_foreign_workload_token_is_refused() {
    // ci-expired's ID tokens expired an hour before they were issued.
    let expired = ci_token(
        &env("BERTH_TEST_OIDC_CI_EXPIRED_CLIENT_ID"),
        &env("BERTH_TEST_OIDC_CI_EXPIRED_CLIENT_SECRET"),
        &env("BERTH_TEST_OIDC_CI_USER"),
        &env("BERTH_TEST_OIDC_CI_PASSWORD"),
    )
    .await;
    let claims = payload(&expired);
    assert!(claims["exp"].as_i64().unwrap() < unix_now() - 600);
    let verifier = WorkloadVerifier::new(vec![rule(
        &env("BERTH_TEST_OIDC_CI_EXPIRED_CLIENT_ID"),
        &[],
        "ci",
    )])
    .unwrap();
    let err = verifier.robot_for(&expired).await.unwrap_err();
    assert!(matches!(err, OidcError::Expired(_)), "{err}");

    // Only the rules' issuers are trusted, even with a valid signature.
    let token = main_branch_token().await;
    let foreign = WorkloadVerifier::new(vec![WorkloadRule {
        issuer: "https://token.actions.githubusercontent.com".into(),
        audience: env("BERTH_TEST_OIDC_CI_CLIENT_ID"),
        claims: BTreeMap::new(),
        robot: "gh".into(),
    }])
    .unwrap();
    assert!(matches!(
        foreign.robot_for(&token).await,
        Err(OidcError::UntrustedIssuer(_))
    ));
}

#[tokio::test]
async fn rotated_signing_keys_are_fetched_again() {
    let aud = env("BERTH_TEST_OIDC_CI_CLIENT_ID");
    let verifier = WorkloadVerifier::new(vec![rule(&aud, &[], "ci")]).unwrap();
    let before = main_branch_token().await;
    assert_eq!(
        verifier.robot_for(&before).await.unwrap().as_deref(),
        Some("ci")
    );
    let client = berth_client().await;

    // The provider publishes new keys and signs with them from now on.
    let rotated: Value = browser()
        .post(format!("{}/test/rotate-signing-keys", issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_kids: Vec<&str> = rotated["kids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let after = main_branch_token().await;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(after.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        new_kids.contains(&header["kid"].as_str().unwrap()),
        "signed with a new key: {header}"
    );

    // Both the verifier and the login client discovered the old key set.
    assert_eq!(
        verifier.robot_for(&after).await.unwrap().as_deref(),
        Some("ci")
    );
    assert_eq!(
        verifier.robot_for(&before).await.unwrap().as_deref(),
        Some("ci")
    );
    login_as(
        &client,
        &env("BERTH_TEST_OIDC_USER"),
        &env("BERTH_TEST_OIDC_USER_PASSWORD"),
    )
    .await
    .unwrap();
}
