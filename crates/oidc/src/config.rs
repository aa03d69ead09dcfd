use std::fmt;
use std::net::IpAddr;

use openidconnect::url::{Host, Url};

/// `[auth.oidc]`: the provider Berth's users log in with.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer identifier; discovery is `<issuer_url>/.well-known/openid-configuration`.
    pub issuer_url: String,
    pub client_id: String,
    /// None for a public client (PKCE only, no client authentication).
    pub client_secret: Option<String>,
    /// Berth's callback, registered at the provider.
    pub redirect_url: String,
    /// Requested scopes; `openid` is always sent. Add `offline_access` to
    /// ask for a refresh token from providers that require it (the request
    /// then carries `prompt=consent`, as OpenID Connect Core §11 asks).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim holding the user's groups: an array of strings or one
    /// string. A dotted name (`realm_access.roles`) walks nested objects
    /// when no top-level claim has that exact name.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim Berth takes as the username.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Members of this group are Berth administrators.
    pub admin_group: Option<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "groups"]
        .map(String::from)
        .to_vec()
}

fn default_groups_claim() -> String {
    "groups".to_string()
}

fn default_username_claim() -> String {
    "preferred_username".to_string()
}

impl OidcConfig {
    /// A config with the defaults for everything optional.
    pub fn new(
        issuer_url: &str,
        client_id: &str,
        client_secret: Option<&str>,
        redirect_url: &str,
    ) -> OidcConfig {
        OidcConfig {
            issuer_url: issuer_url.to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.map(str::to_string),
            redirect_url: redirect_url.to_string(),
            scopes: default_scopes(),
            groups_claim: default_groups_claim(),
            username_claim: default_username_claim(),
            admin_group: None,
        }
    }

    /// Checks every field; all problems are reported, joined by "; ", each
    /// naming its field (`auth.oidc.issuer_url: ...`).
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Err(why) = check_issuer_url(&self.issuer_url) {
            problems.push(format!("auth.oidc.issuer_url: {why}"));
        }
        if self.client_id.trim().is_empty() {
            problems.push("auth.oidc.client_id: must not be empty".to_string());
        }
        if let Some(secret) = &self.client_secret
            && secret.is_empty()
        {
            problems.push(
                "auth.oidc.client_secret: must not be empty (omit it for a public client)"
                    .to_string(),
            );
        }
        if let Err(why) = check_redirect_url(&self.redirect_url) {
            problems.push(format!("auth.oidc.redirect_url: {why}"));
        }
        for scope in &self.scopes {
            if scope.is_empty()
                || scope
                    .chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '\\')
            {
                problems.push(format!(
                    "auth.oidc.scopes: {scope:?} is not a valid scope token"
                ));
            }
        }
        if self.groups_claim.trim().is_empty() {
            problems.push("auth.oidc.groups_claim: must not be empty".to_string());
        }
        if self.username_claim.trim().is_empty() {
            problems.push("auth.oidc.username_claim: must not be empty".to_string());
        }
        if let Some(group) = &self.admin_group
            && group.trim().is_empty()
        {
            problems.push(
                "auth.oidc.admin_group: must not be empty (omit it for no admin group)".to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("username_claim", &self.username_claim)
            .field("admin_group", &self.admin_group)
            .finish()
    }
}

/// An issuer URL: https (http only on a loopback host, for tests), no
/// query, no fragment, no credentials.
pub(crate) fn check_issuer_url(value: &str) -> Result<Url, String> {
    let url = check_web_url(value)?;
    if url.query().is_some() {
        return Err(format!("{value:?} must not have a query"));
    }
    Ok(url)
}

fn check_redirect_url(value: &str) -> Result<Url, String> {
    check_web_url(value)
}

fn check_web_url(value: &str) -> Result<Url, String> {
    if value.is_empty() {
        return Err("must not be empty".to_string());
    }
    let url = Url::parse(value).map_err(|err| format!("{value:?} is not a URL: {err}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{value:?} must use https (http only on a loopback address)"
            ));
        }
        other => return Err(format!("{value:?} has scheme {other:?}; must be https")),
    }
    if url.host().is_none() {
        return Err(format!("{value:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{value:?} must not hold credentials"));
    }
    if url.fragment().is_some() {
        return Err(format!("{value:?} must not have a fragment"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> OidcConfig {
        OidcConfig::new(
            "https://login.example.com/realms/berth",
            "berth",
            Some("s3cret"),
            "https://registry.example.com/api/v1/auth/oidc/callback",
        )
    }

    #[test]
    fn a_good_config_passes() {
        good().validate().unwrap();
        let mut local = good();
        local.issuer_url = "http://127.0.0.1:9100".to_string();
        local.redirect_url = "http://localhost:5000/cb".to_string();
        local.client_secret = None;
        local.validate().unwrap();
    }

    #[test]
    fn defaults_apply_when_deserializing() {
        let config: OidcConfig = from_json(
            r#"{"issuer_url":"https://a.example","client_id":"c","redirect_url":"https://r.example/cb"}"#,
        );
        assert_eq!(config.scopes, ["openid", "profile", "email", "groups"]);
        assert_eq!(config.groups_claim, "groups");
        assert_eq!(config.username_claim, "preferred_username");
        assert!(config.client_secret.is_none() && config.admin_group.is_none());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<OidcConfig>(
            r#"{"issuer_url":"https://a.example","client_id":"c","redirect_url":"https://r.example/cb","secret":"x"}"#,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("unknown field `secret`"), "{err}");
    }

    fn from_json(json: &str) -> OidcConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn each_problem_names_its_field() {
        type Breaker = fn(&mut OidcConfig);
        let cases: Vec<(Breaker, &str)> = vec![
            (
                |c| c.issuer_url = "http://login.example.com".into(),
                "auth.oidc.issuer_url: ",
            ),
            (
                |c| c.issuer_url = "not a url".into(),
                "auth.oidc.issuer_url: ",
            ),
            (
                |c| c.issuer_url = "https://login.example.com/?x=1".into(),
                "auth.oidc.issuer_url: ",
            ),
            (
                |c| c.issuer_url = "ftp://login.example.com".into(),
                "auth.oidc.issuer_url: ",
            ),
            (
                |c| c.issuer_url = "https://user:pw@login.example.com".into(),
                "auth.oidc.issuer_url: ",
            ),
            (|c| c.client_id = " ".into(), "auth.oidc.client_id: "),
            (
                |c| c.client_secret = Some(String::new()),
                "auth.oidc.client_secret: ",
            ),
            (
                |c| c.redirect_url = "http://registry.example.com/cb".into(),
                "auth.oidc.redirect_url: ",
            ),
            (
                |c| c.redirect_url = "https://registry.example.com/cb#x".into(),
                "auth.oidc.redirect_url: ",
            ),
            (
                |c| c.scopes = vec!["openid".into(), "a b".into()],
                "auth.oidc.scopes: ",
            ),
            (
                |c| c.groups_claim = String::new(),
                "auth.oidc.groups_claim: ",
            ),
            (
                |c| c.username_claim = String::new(),
                "auth.oidc.username_claim: ",
            ),
            (
                |c| c.admin_group = Some(String::new()),
                "auth.oidc.admin_group: ",
            ),
        ];
        for (break_it, field) in cases {
            let mut config = good();
            break_it(&mut config);
            let err = config.validate().unwrap_err();
            assert!(
                err.starts_with(field),
                "{err:?} should start with {field:?}"
            );
        }
    }

    #[test]
    fn all_problems_are_reported() {
        let mut config = good();
        config.client_id = String::new();
        config.redirect_url = String::new();
        let err = config.validate().unwrap_err();
        assert!(
            err.contains("auth.oidc.client_id") && err.contains("auth.oidc.redirect_url"),
            "{err}"
        );
    }

    #[test]
    fn debug_redacts_the_secret() {
        let shown = format!("{:?}", good());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
