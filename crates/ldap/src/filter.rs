//! RFC 4515 search-filter escaping and the few DN string helpers the group
//! walk needs (comparison only: DNs are never built from user input).

/// Escapes `value` for use as an assertion value inside an LDAP search
/// filter (RFC 4515 section 3): `*`, `(`, `)`, `\` and NUL become `\2a`,
/// `\28`, `\29`, `\5c` and `\00`. Everything else, UTF-8 included, is kept.
///
/// The result matches `value` literally: `*` is no wildcard, and `)(` cannot
/// close the filter.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// The placeholder that `user_filter` must contain.
pub(crate) const USERNAME_PLACEHOLDER: &str = "{username}";

/// `template` with every `{username}` replaced by the escaped `username`.
pub(crate) fn user_filter(template: &str, username: &str) -> String {
    template.replace(USERNAME_PLACEHOLDER, &escape_filter_value(username))
}

/// `(&<base>(<attr>=<v1>))` or `(&<base>(|(<attr>=<v1>)(<attr>=<v2>)…))`,
/// each value escaped. `base` is a validated, parenthesised filter.
pub(crate) fn any_of(base: &str, attr: &str, values: &[String]) -> String {
    let mut out = format!("(&{base}");
    if values.len() > 1 {
        out.push_str("(|");
    }
    for v in values {
        out.push('(');
        out.push_str(attr);
        out.push('=');
        out.push_str(&escape_filter_value(v));
        out.push(')');
    }
    if values.len() > 1 {
        out.push(')');
    }
    out.push(')');
    out
}

/// A DN reduced for comparison: ASCII-lowercased, spaces around `,` and `=`
/// removed. Attribute types and the usual string attributes (cn, ou, dc,
/// uid) compare case-insensitively in LDAP; this is good enough for cycle
/// detection and base-DN scoping, never for building a DN.
pub(crate) fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut chars = dn.trim().chars().peekable();
    let mut escaped = false;
    while let Some(c) = chars.next() {
        if escaped {
            out.extend(c.to_lowercase());
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                out.push(c);
                escaped = true;
            }
            ',' | '=' => {
                while out.ends_with(' ') && !out.ends_with("\\ ") {
                    out.pop();
                }
                out.push(c);
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Whether `dn` is `base` or below it (both compared normalized).
pub(crate) fn is_under(dn: &str, base: &str) -> bool {
    let (dn, base) = (normalize_dn(dn), normalize_dn(base));
    if dn == base {
        return true;
    }
    match dn.strip_suffix(&base) {
        // The remaining RDNs end with an unescaped comma.
        Some(prefix) => prefix.ends_with(',') && !prefix.ends_with("\\,"),
        None => false,
    }
}

/// Whether `name` is an attribute description we can put in a filter or an
/// attribute list unescaped: a name (`mail`, `sAMAccountName`) or a numeric
/// OID, with optional `;options`.
pub(crate) fn is_attribute_description(name: &str) -> bool {
    let mut parts = name.split(';');
    let ty = parts.next().unwrap_or("");
    let ty_ok = if ty.starts_with(|c: char| c.is_ascii_digit()) {
        ty.split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    } else {
        ty.starts_with(|c: char| c.is_ascii_alphabetic())
            && ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    ty_ok
        && parts.all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_rfc4515_specials() {
        assert_eq!(escape_filter_value("alice"), "alice");
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(escape_filter_value("bob)(uid=*"), "bob\\29\\28uid=\\2a");
        assert_eq!(escape_filter_value("a\\b"), "a\\5cb");
        assert_eq!(escape_filter_value("nul\0"), "nul\\00");
        assert_eq!(escape_filter_value("star*(x)"), "star\\2a\\28x\\29");
        // Escaping the escape: a pre-escaped value stays literal.
        assert_eq!(escape_filter_value("\\2a"), "\\5c2a");
        // UTF-8 is allowed as is (RFC 4515 UTF1SUBSET / UTFMB).
        assert_eq!(escape_filter_value("zoë=é"), "zoë=é");
    }

    #[test]
    fn escaped_filters_parse_and_stay_one_equality_match() {
        for hostile in [
            "*",
            "bob)(uid=*",
            "*)(|(uid=*",
            "x)(objectClass=*))(&(a=b",
            "\\",
            "\0",
        ] {
            let f = user_filter("(uid={username})", hostile);
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
            // One "(" opens the filter, every other one is escaped.
            assert_eq!(f.matches('(').count(), 1, "{f}");
            assert_eq!(f.matches(')').count(), 1, "{f}");
        }
    }

    #[test]
    fn user_filter_replaces_every_placeholder() {
        assert_eq!(
            user_filter("(|(uid={username})(mail={username}))", "a*"),
            "(|(uid=a\\2a)(mail=a\\2a))"
        );
    }

    #[test]
    fn any_of_builds_one_or_many() {
        assert_eq!(
            any_of(
                "(objectClass=groupOfNames)",
                "member",
                &["cn=a\\2Cb,dc=x".into()]
            ),
            "(&(objectClass=groupOfNames)(member=cn=a\\5c2Cb,dc=x))"
        );
        let f = any_of(
            "(objectClass=groupOfNames)",
            "member",
            &["cn=a".into(), "cn=b".into()],
        );
        assert_eq!(
            f,
            "(&(objectClass=groupOfNames)(|(member=cn=a)(member=cn=b)))"
        );
        assert!(ldap3::parse_filter(&f).is_ok());
    }

    #[test]
    fn dn_normalization_and_scoping() {
        assert_eq!(
            normalize_dn("CN=Dev Ops , OU=Groups,dc=Example, dc=org"),
            "cn=dev ops,ou=groups,dc=example,dc=org"
        );
        assert!(is_under(
            "cn=a,ou=groups,dc=example,dc=org",
            "OU=Groups, DC=example,DC=org"
        ));
        assert!(is_under(
            "ou=groups,dc=example,dc=org",
            "ou=groups,dc=example,dc=org"
        ));
        assert!(!is_under(
            "cn=a,ou=people,dc=example,dc=org",
            "ou=groups,dc=example,dc=org"
        ));
        assert!(!is_under(
            "cn=a,xou=groups,dc=example,dc=org",
            "ou=groups,dc=example,dc=org"
        ));
        assert!(!is_under(
            "cn=a\\,ou=groups,dc=example,dc=org",
            "ou=groups,dc=example,dc=org"
        ));
    }

    #[test]
    fn attribute_descriptions() {
        for ok in [
            "uid",
            "mail",
            "sAMAccountName",
            "memberOf",
            "cn;lang-en",
            "1.2.840.113556.1.4.221",
        ] {
            assert!(is_attribute_description(ok), "{ok}");
        }
        for bad in [
            "", "u id", "uid=x", "(uid)", "1uid", "1..2", "uid;", "*", "uid)(x",
        ] {
            assert!(!is_attribute_description(bad), "{bad}");
        }
    }
}
