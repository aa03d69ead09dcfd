//! The text of authentication headers, without HTTP types: the
//! `WWW-Authenticate` challenges a 401 carries, and parsing the
//! `Authorization` header's Basic and Bearer credentials.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::scope::Scope;

/// Why a bearer challenge is sent again to a client that presented a token
/// (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// The token is malformed, expired, or not ours.
    InvalidToken,
    /// The token is valid but does not carry the access needed.
    InsufficientScope,
}

/// `Bearer realm="…",service="…",scope="…"` for a 401 from `/v2/`. The
/// scopes are those the request needs (space-separated in one parameter,
/// as Distribution writes them); none for `/v2/` itself.
pub fn bearer_challenge(
    realm: &str,
    service: &str,
    scopes: &[Scope],
    error: Option<BearerError>,
) -> String {
    let mut out = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        quote(realm),
        quote(service)
    );
    if !scopes.is_empty() {
        let joined: Vec<String> = scopes.iter().map(Scope::to_string).collect();
        out.push_str(&format!(",scope=\"{}\"", quote(&joined.join(" "))));
    }
    match error {
        Some(BearerError::InvalidToken) => out.push_str(",error=\"invalid_token\""),
        Some(BearerError::InsufficientScope) => out.push_str(",error=\"insufficient_scope\""),
        None => {}
    }
    out
}

/// `Basic realm="…"`, for endpoints that take only Basic credentials.
pub fn basic_challenge(realm: &str) -> String {
    format!("Basic realm=\"{}\",charset=\"UTF-8\"", quote(realm))
}

/// Escapes a quoted-string value (RFC 9110 §5.6.4): backslash and double
/// quote are escaped; control characters, which no legitimate realm,
/// service or scope contains, are dropped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Credentials from an `Authorization` header value.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Parses `Basic base64(user:password)` or `Bearer token`. The scheme is
/// case-insensitive; anything else, or a Basic value that is not base64 of
/// UTF-8 `user:password`, is `None` (the caller answers 401).
pub fn parse_authorization(value: &str) -> Option<Credentials> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Bearer(rest.to_string()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use berth_oci::RepoName;

    use super::*;
    use crate::scope::ScopeAction;

    #[test]
    fn bearer_challenges() {
        let realm = "https://reg.example/service/token";
        assert_eq!(
            bearer_challenge(realm, "berth", &[], None),
            r#"Bearer realm="https://reg.example/service/token",service="berth""#
        );
        let push = Scope::repository(
            RepoName::parse("team/app").unwrap(),
            &[ScopeAction::Push, ScopeAction::Pull],
        );
        let mount = Scope::repository(RepoName::parse("other/base").unwrap(), &[ScopeAction::Pull]);
        assert_eq!(
            bearer_challenge(realm, "berth", &[push.clone(), mount], None),
            r#"Bearer realm="https://reg.example/service/token",service="berth",scope="repository:team/app:pull,push repository:other/base:pull""#
        );
        assert_eq!(
            bearer_challenge(
                realm,
                "berth",
                &[push],
                Some(BearerError::InsufficientScope)
            ),
            r#"Bearer realm="https://reg.example/service/token",service="berth",scope="repository:team/app:pull,push",error="insufficient_scope""#
        );
        assert_eq!(
            bearer_challenge(
                realm,
                "berth",
                &[Scope::catalog()],
                Some(BearerError::InvalidToken)
            ),
            r#"Bearer realm="https://reg.example/service/token",service="berth",scope="registry:catalog:*",error="invalid_token""#
        );
    }

    #[test]
    fn values_are_quoted() {
        assert_eq!(
            bearer_challenge("a\"b\\c\nd", "s", &[], None),
            r#"Bearer realm="a\"b\\cd",service="s""#
        );
        assert_eq!(
            basic_challenge("berth"),
            r#"Basic realm="berth",charset="UTF-8""#
        );
    }

    #[test]
    fn authorization_headers() {
        let basic = |s: &str| format!("Basic {}", STANDARD.encode(s));
        assert_eq!(
            parse_authorization(&basic("alice:pa:ss")),
            Some(Credentials::Basic {
                username: "alice".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            parse_authorization(&basic("robot$team+ci:")),
            Some(Credentials::Basic {
                username: "robot$team+ci".into(),
                password: "".into()
            })
        );
        assert_eq!(
            parse_authorization("bearer abc.def.ghi"),
            Some(Credentials::Bearer("abc.def.ghi".into()))
        );
        for bad in [
            "",
            "Basic",
            "Basic ",
            "Basic !!!notbase64",
            &basic("no-colon"),
            "Digest abc",
            "Bearer ",
        ] {
            assert_eq!(parse_authorization(bad), None, "{bad:?}");
        }
        let shown = format!("{:?}", parse_authorization(&basic("alice:secret")).unwrap());
        assert!(!shown.contains("secret"), "{shown}");
    }
}
