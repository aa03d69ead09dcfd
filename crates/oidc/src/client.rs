use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreJsonWebKeySet,
    CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse,
    TokenResponse as _, TokenUrl, UserInfoUrl,
};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use crate::http::{TransportError, build_client, http_fn};
use crate::jwt::{self, Expect, IssuerKeys, claim, claim_strings};
use crate::{DEFAULT_LEEWAY_SECS, OidcConfig, OidcError};

/// How long a login may take between [`OidcClient::begin_login`] and
/// [`OidcClient::complete_login`], in seconds.
pub const LOGIN_TIMEOUT_SECS: i64 = 600;

/// The openidconnect client with the endpoints Berth uses set.
type RpClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

/// A relying party for one provider, made by [`OidcClient::discover`].
/// Cheap to clone; all clones share the provider's keys.
#[derive(Clone)]
pub struct OidcClient {
    inner: Arc<Inner>,
    leeway: Duration,
}

struct Inner {
    config: OidcConfig,
    http: reqwest::Client,
    keys: IssuerKeys,
    auth_url: AuthUrl,
    token_url: TokenUrl,
    userinfo_url: Option<UserInfoUrl>,
    redirect_url: RedirectUrl,
    auth_type: AuthType,
}

/// What to keep between the redirect to the provider and the callback (in a
/// short-lived signed cookie or a database row). Its `Debug` shows no secret.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("state", &"<redacted>")
            .field("nonce", &"<redacted>")
            .field("pkce_verifier", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A verified user. `refresh_token` is neither shown by `Debug` nor
/// serialized: store it apart, as the secret it is.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct OidcIdentity {
    pub issuer: String,
    pub subject: String,
    pub username: String,
    /// None when absent or when the provider says `email_verified: false`.
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// `admin_group` is one of `groups`.
    pub is_admin: bool,
    #[serde(skip_serializing)]
    pub refresh_token: Option<String>,
    /// Unix seconds: the access token's expiry when the provider gave one,
    /// else the ID token's `exp`. Refresh (or log in again) after it.
    pub expires_at: Option<i64>,
}

impl fmt::Debug for OidcIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcIdentity")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("username", &self.username)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("is_admin", &self.is_admin)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClient")
            .field("config", &self.inner.config)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl OidcClient {
    /// Validates `config`, fetches the provider's discovery document (whose
    /// `issuer` must equal `issuer_url` exactly) and its JWKS.
    pub async fn discover(config: OidcConfig) -> Result<OidcClient, OidcError> {
        config.validate().map_err(OidcError::Config)?;
        let http = build_client()?;
        let (keys, metadata) = IssuerKeys::discover(&config.issuer_url, &http).await?;
        let token_url = metadata
            .token_endpoint()
            .cloned()
            .ok_or_else(|| OidcError::Discovery {
                issuer: config.issuer_url.clone(),
                reason: "the provider has no token_endpoint".into(),
            })?;
        let redirect_url = RedirectUrl::new(config.redirect_url.clone())
            .map_err(|err| OidcError::Config(format!("auth.oidc.redirect_url: {err}")))?;
        Ok(OidcClient {
            inner: Arc::new(Inner {
                auth_type: auth_type(&metadata),
                auth_url: metadata.authorization_endpoint().clone(),
                token_url,
                userinfo_url: metadata.userinfo_endpoint().cloned(),
                redirect_url,
                keys,
                http,
                config,
            }),
            leeway: Duration::from_secs(DEFAULT_LEEWAY_SECS),
        })
    }

    /// The same client with another clock leeway for `exp`/`iat`/`nbf`.
    pub fn with_leeway(self, leeway: Duration) -> OidcClient {
        OidcClient { leeway, ..self }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.inner.config
    }

    /// Starts a login: the URL to redirect the browser to, and the state to
    /// keep (in a short-lived signed cookie or DB row) until the callback.
    /// Always PKCE S256, a fresh random `state` and `nonce`.
    pub fn begin_login(&self) -> (String, PendingLogin) {
        let config = &self.inner.config;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.rp_client(CoreJsonWebKeySet::new(Vec::new()));
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        // openidconnect always sends `openid`.
        for scope in config.scopes.iter().filter(|scope| *scope != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if config.scopes.iter().any(|scope| scope == "offline_access") {
            request = request.add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = request.url();
        let pending = PendingLogin {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            created_at: unix_now(),
        };
        (url.to_string(), pending)
    }

    /// Completes a login: checks `state` against the pending login (constant
    /// time) and its age, exchanges the code with the PKCE verifier, verifies
    /// the ID token (signature via JWKS, iss, aud, exp, iat, nbf, nonce,
    /// at_hash) and maps its claims (plus userinfo's, for those the ID token
    /// lacks) to an identity.
    pub async fn complete_login(
        &self,
        pending: &PendingLogin,
        state: &str,
        code: &str,
    ) -> Result<OidcIdentity, OidcError> {
        let age = unix_now() - pending.created_at;
        if !(-(self.leeway.as_secs() as i64)..=LOGIN_TIMEOUT_SECS).contains(&age) {
            return Err(OidcError::LoginExpired);
        }
        if !bool::from(pending.state.as_bytes().ct_eq(state.as_bytes())) || pending.state.is_empty()
        {
            return Err(OidcError::StateMismatch);
        }
        let client = self.rp_client(CoreJsonWebKeySet::new(Vec::new()));
        let http = http_fn(&self.inner.http);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&http)
            .await
            .map_err(token_error)?;
        self.identity(&response, Some(&pending.nonce), None).await
    }

    /// Exchanges a refresh token for a fresh identity. The provider's new
    /// refresh token, if it rotated it, is in the result; else the one given.
    /// When the provider answers without an ID token, the identity comes
    /// from the userinfo endpoint. Callers should check that `subject` is
    /// still the session's.
    pub async fn refresh(&self, refresh_token: &str) -> Result<OidcIdentity, OidcError> {
        let client = self.rp_client(CoreJsonWebKeySet::new(Vec::new()));
        let http = http_fn(&self.inner.http);
        let token = RefreshToken::new(refresh_token.to_string());
        let response = client
            .exchange_refresh_token(&token)
            .request_async(&http)
            .await
            .map_err(token_error)?;
        self.identity(&response, None, Some(refresh_token)).await
    }

    fn rp_client(&self, jwks: CoreJsonWebKeySet) -> RpClient {
        let inner = &*self.inner;
        let client = CoreClient::new(
            ClientId::new(inner.config.client_id.clone()),
            inner.keys.issuer.clone(),
            jwks,
        )
        .set_auth_uri(inner.auth_url.clone())
        .set_token_uri(inner.token_url.clone())
        .set_redirect_uri(inner.redirect_url.clone())
        .set_auth_type(inner.auth_type.clone());
        match &inner.config.client_secret {
            Some(secret) => client.set_client_secret(ClientSecret::new(secret.clone())),
            None => client,
        }
    }

    async fn identity(
        &self,
        response: &CoreTokenResponse,
        nonce: Option<&str>,
        old_refresh_token: Option<&str>,
    ) -> Result<OidcIdentity, OidcError> {
        let inner = &*self.inner;
        let config = &inner.config;
        let access_token = response.access_token();
        let (subject, mut claims, id_expiry) = match response.id_token() {
            Some(id_token) => {
                let verified = jwt::verify(
                    &inner.keys,
                    &inner.http,
                    &id_token.to_string(),
                    Expect {
                        audience: Some(&config.client_id),
                        nonce,
                        access_token: Some(access_token),
                        leeway: self.leeway,
                    },
                )
                .await?;
                (verified.subject, verified.claims, Some(verified.expires_at))
            }
            // A login must have one; a refresh may go without.
            None if nonce.is_some() => return Err(OidcError::MissingIdToken),
            None => {
                let claims = self
                    .userinfo(access_token, None)
                    .await?
                    .ok_or(OidcError::MissingIdToken)?;
                let subject = match claims.get("sub") {
                    Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
                    _ => return Err(OidcError::UserInfo("no sub".into())),
                };
                (subject, claims, None)
            }
        };
        let wanted = [
            config.username_claim.as_str(),
            config.groups_claim.as_str(),
            "email",
        ];
        if id_expiry.is_some() && wanted.iter().any(|name| claim(&claims, name).is_none()) {
            // Many providers keep groups or email for userinfo only.
            if let Some(extra) = self.userinfo(access_token, Some(&subject)).await? {
                for (name, value) in extra {
                    claims.entry(name).or_insert(value);
                }
            }
        }

        let username = match claim(&claims, &config.username_claim) {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => return Err(OidcError::MissingClaim(config.username_claim.clone())),
        };
        let email_verified = !matches!(claims.get("email_verified"), Some(Value::Bool(false)));
        let email = match claims.get("email") {
            Some(Value::String(email)) if email_verified && !email.is_empty() => {
                Some(email.clone())
            }
            _ => None,
        };
        let groups = claim_strings(&claims, &config.groups_claim);
        let is_admin = config
            .admin_group
            .as_ref()
            .is_some_and(|admin| groups.iter().any(|g| g == admin));
        let expires_at = response
            .expires_in()
            .map(|ttl| unix_now() + ttl.as_secs() as i64)
            .or(id_expiry);
        let refresh_token = response
            .refresh_token()
            .map(|token| token.secret().clone())
            .or_else(|| old_refresh_token.map(str::to_string));
        Ok(OidcIdentity {
            issuer: inner.keys.issuer.to_string(),
            subject,
            username,
            email,
            groups,
            is_admin,
            refresh_token,
            expires_at,
        })
    }

    /// The userinfo claims (JSON responses only), or None when the provider
    /// has no userinfo endpoint. `subject`: the `sub` they must be about.
    async fn userinfo(
        &self,
        access_token: &AccessToken,
        subject: Option<&str>,
    ) -> Result<Option<Map<String, Value>>, OidcError> {
        let Some(url) = &self.inner.userinfo_url else {
            return Ok(None);
        };
        let response = self
            .inner
            .http
            .get(url.url().clone())
            .bearer_auth(access_token.secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| OidcError::UserInfo(err.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(OidcError::UserInfo(format!("HTTP {}", response.status())));
        }
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if !is_json {
            // A signed (JWT) userinfo response: not supported; use the ID token alone.
            return Ok(None);
        }
        let claims: Map<String, Value> = response
            .json()
            .await
            .map_err(|_| OidcError::UserInfo("not a JSON object".into()))?;
        if let Some(subject) = subject
            && claims.get("sub").and_then(Value::as_str) != Some(subject)
        {
            return Err(OidcError::UserInfo(
                "the response is about another subject".into(),
            ));
        }
        Ok(Some(claims))
    }
}

/// client_secret_basic unless the provider lists only client_secret_post.
fn auth_type(metadata: &CoreProviderMetadata) -> AuthType {
    let Some(methods) = metadata.token_endpoint_auth_methods_supported() else {
        return AuthType::BasicAuth;
    };
    let names: Vec<String> = methods
        .iter()
        .filter_map(|m| serde_json::to_value(m).ok()?.as_str().map(String::from))
        .collect();
    if names.iter().any(|name| name == "client_secret_basic")
        || !names.iter().any(|name| name == "client_secret_post")
    {
        AuthType::BasicAuth
    } else {
        AuthType::RequestBody
    }
}

type TokenError = RequestTokenError<TransportError, StandardErrorResponse<CoreErrorResponseType>>;

/// A token request failure, without the response body (it could hold tokens).
fn token_error(err: TokenError) -> OidcError {
    match err {
        RequestTokenError::ServerResponse(response) => {
            let mut message = response.error().to_string();
            if let Some(description) = response.error_description() {
                message.push_str(": ");
                message.extend(description.chars().take(200));
            }
            OidcError::TokenRequest(message)
        }
        RequestTokenError::Request(err) => OidcError::Http(err.to_string()),
        RequestTokenError::Parse(err, _body) => {
            OidcError::TokenRequest(format!("unparseable token response (at {})", err.path()))
        }
        RequestTokenError::Other(why) => OidcError::TokenRequest(why),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}
