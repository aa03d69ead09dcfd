//! `WWW-Authenticate` challenges and the Docker token flow's pieces.

use std::collections::BTreeMap;

/// One parsed challenge: the scheme (lower-cased) and its parameters
/// (names lower-cased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` value such as
/// `Bearer realm="https://auth/token",service="reg",scope="repository:a/b:pull,push"`.
///
/// Several challenges in one header (`Basic realm="x", Bearer realm="y"`)
/// are returned in order. Quoted values may hold commas and `\"` escapes.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = value.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        // A token: either a new scheme or a parameter name.
        let start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b',' | b'=') {
            i += 1;
        }
        let token = &value[start..i];
        // Look past spaces for '='.
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' {
            let mut k = j;
            while k < b.len() && b[k] == b'=' {
                k += 1;
            }
            let mut m = k;
            while m < b.len() && (b[m] == b' ' || b[m] == b'\t') {
                m += 1;
            }
            let ends = m >= b.len() || b[m] == b',';
            if k - j > 1 || ends || out.is_empty() {
                // A `token68` credential (base64 padding), not a parameter.
                if let Some(last) = out.last_mut() {
                    last.params
                        .insert("token68".into(), value[start..k].to_string());
                }
                i = k;
                continue;
            }
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            continue;
        }
        i = j + 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                // Push whole UTF-8 characters.
                let ch = value[i..].chars().next().unwrap_or('\u{fffd}');
                val.push(ch);
                i += ch.len_utf8();
            }
            i += 1; // closing quote
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' && b[i] != b' ' && b[i] != b'\t' {
                i += 1;
            }
            val.push_str(&value[s..i]);
        }
        if let Some(last) = out.last_mut() {
            last.params.insert(token.to_ascii_lowercase(), val);
        }
    }
    out
}

/// The token from a token endpoint's JSON answer (`token`, or the OAuth2
/// `access_token`).
pub fn token_from_json(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_commas_in_scope() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[0].param("service"), Some("registry.example.com"));
        assert_eq!(c[0].param("scope"), Some("repository:team/app:pull,push"));
    }

    #[test]
    fn basic_and_spaces_and_case() {
        let c = parse_www_authenticate(r#"Basic realm="Registry Realm" , charset=UTF-8"#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[0].param("charset"), Some("UTF-8"));

        let c = parse_www_authenticate(r#"BEARER Realm = "http://x/t", Service="s""#);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("http://x/t"));
        assert_eq!(c[0].param("service"), Some("s"));
    }

    #[test]
    fn several_challenges_and_escapes() {
        let c = parse_www_authenticate(
            r#"Basic realm="a \"quoted\" realm", Bearer realm="http://t/token",scope="repository:x:pull""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("scope"), Some("repository:x:pull"));
    }

    #[test]
    fn bare_scheme_and_token68() {
        let c = parse_www_authenticate("Negotiate abc123==");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "negotiate");
        assert_eq!(c[0].param("token68"), Some("abc123=="));
        let c = parse_www_authenticate("Bearer");
        assert_eq!(c.len(), 1);
        assert!(c[0].params.is_empty());
    }

    #[test]
    fn token_json() {
        assert_eq!(
            token_from_json(br#"{"token":"abc"}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(
            token_from_json(br#"{"access_token":"xyz","expires_in":60}"#).as_deref(),
            Some("xyz")
        );
        assert_eq!(token_from_json(br#"{"token":""}"#), None);
        assert_eq!(token_from_json(b"not json"), None);
    }
}
