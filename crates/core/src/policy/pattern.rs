//! Doublestar patterns, as Harbor's tag and repository selectors use them
//! (bmatcuk/doublestar): `*` any run of characters except `/`, `**` any run
//! including `/` (as a whole segment, `a/**/b` also matches `a/b`), `?` one
//! character except `/`, `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) one
//! character of a class, `{x,y}` alternatives (nestable), `\` escapes the
//! next character. A pattern matches the whole text.

use std::fmt;

/// Longest pattern accepted.
pub const MAX_PATTERN_LEN: usize = 255;
/// Most alternatives `{…}` may expand to.
const MAX_ALTERNATIVES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` inside a segment: anything, `/` included.
    Deep,
    /// `**/` at the start of a segment: nothing, or anything ending in `/`.
    DeepDir,
    /// `/**` at the end: nothing, or `/` and anything.
    DirDeep,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    alternatives: Vec<Vec<Tok>>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Pattern {
    /// Compiles `source`; the error says what is wrong with it.
    pub fn parse(source: &str) -> Result<Pattern, String> {
        if source.is_empty() {
            return Err("the pattern is empty".into());
        }
        if source.chars().count() > MAX_PATTERN_LEN {
            return Err(format!(
                "the pattern is longer than {MAX_PATTERN_LEN} characters"
            ));
        }
        if source.chars().any(char::is_control) {
            return Err(format!(
                "the pattern {source:?} contains control characters"
            ));
        }
        let chars: Vec<char> = source.chars().collect();
        let mut alternatives = Vec::new();
        for alt in expand_braces(&chars)? {
            alternatives.push(tokenize(&alt)?);
        }
        Ok(Pattern {
            source: source.to_string(),
            alternatives,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        self.alternatives
            .iter()
            .any(|toks| match_tokens(toks, &text))
    }
}

/// Expands `{a,b}` groups (outside classes, unescaped) into alternatives,
/// each still in pattern syntax.
fn expand_braces(chars: &[char]) -> Result<Vec<Vec<char>>, String> {
    // Find the first top-level `{`.
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '[' => i = class_end(chars, i)? + 1,
            '{' => break,
            '}' => return Err("the pattern has a '}' without its '{'".into()),
            _ => i += 1,
        }
    }
    if i >= chars.len() {
        return Ok(vec![chars.to_vec()]);
    }
    let open = i;
    let mut depth = 0usize;
    let mut parts: Vec<(usize, usize)> = Vec::new();
    let mut start = open + 1;
    let mut close = None;
    let mut j = open;
    while j < chars.len() {
        match chars[j] {
            '\\' => {
                j += 2;
                continue;
            }
            '[' => {
                j = class_end(chars, j)? + 1;
                continue;
            }
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    parts.push((start, j));
                    close = Some(j);
                    break;
                }
            }
            ',' if depth == 1 => {
                parts.push((start, j));
                start = j + 1;
            }
            _ => {}
        }
        j += 1;
    }
    let close = close.ok_or("the pattern has a '{' without its '}'")?;
    let mut out = Vec::new();
    for (a, b) in parts {
        let mut candidate = chars[..open].to_vec();
        candidate.extend_from_slice(&chars[a..b]);
        candidate.extend_from_slice(&chars[close + 1..]);
        for expanded in expand_braces(&candidate)? {
            out.push(expanded);
            if out.len() > MAX_ALTERNATIVES {
                return Err(format!(
                    "the pattern expands to more than {MAX_ALTERNATIVES} alternatives"
                ));
            }
        }
    }
    Ok(out)
}

/// Index of the `]` closing the class that opens at `open`.
fn class_end(chars: &[char], open: usize) -> Result<usize, String> {
    let mut i = open + 1;
    if matches!(chars.get(i), Some('!' | '^')) {
        i += 1;
    }
    // A `]` right after the opening is a member, not the end.
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            ']' => return Ok(i),
            _ => i += 1,
        }
    }
    Err("the pattern has a '[' without its ']'".into())
}

fn tokenize(chars: &[char]) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let c = *chars
                    .get(i + 1)
                    .ok_or("the pattern ends with a lone '\\'")?;
                toks.push(Tok::Lit(c));
                i += 2;
            }
            '?' => {
                toks.push(Tok::One);
                i += 1;
            }
            '*' => {
                let mut n = 0;
                while chars.get(i + n) == Some(&'*') {
                    n += 1;
                }
                if n == 1 {
                    toks.push(Tok::Star);
                    i += 1;
                    continue;
                }
                let segment_start = i == 0 || chars[i - 1] == '/';
                let next = chars.get(i + n);
                if segment_start && next == Some(&'/') {
                    toks.push(Tok::DeepDir);
                    i += n + 1;
                } else if segment_start && next.is_none() && toks.last() == Some(&Tok::Lit('/')) {
                    toks.pop();
                    toks.push(Tok::DirDeep);
                    i += n;
                } else {
                    toks.push(Tok::Deep);
                    i += n;
                }
            }
            '[' => {
                let end = class_end(chars, i)?;
                let mut j = i + 1;
                let negated = matches!(chars[j], '!' | '^');
                if negated {
                    j += 1;
                }
                let mut members = Vec::new();
                while j < end {
                    let c = if chars[j] == '\\' {
                        j += 1;
                        chars[j]
                    } else {
                        chars[j]
                    };
                    members.push(c);
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < members.len() {
                    if k + 2 < members.len() && members[k + 1] == '-' {
                        let (lo, hi) = (members[k], members[k + 2]);
                        if lo > hi {
                            return Err(format!("the class range {lo}-{hi} is reversed"));
                        }
                        ranges.push((lo, hi));
                        k += 3;
                    } else {
                        ranges.push((members[k], members[k]));
                        k += 1;
                    }
                }
                if ranges.is_empty() {
                    return Err("the pattern has an empty class '[]'".into());
                }
                toks.push(Tok::Class { negated, ranges });
                i = end + 1;
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    Ok(toks)
}

/// Whether `toks` match all of `text`: dynamic programming over (token,
/// position), so no pattern can make matching exponential.
fn match_tokens(toks: &[Tok], text: &[char]) -> bool {
    let m = text.len();
    // next[j]: toks[i+1..] match text[j..]; cur[j]: toks[i..] match text[j..].
    let mut next = vec![false; m + 1];
    next[m] = true;
    for tok in toks.iter().rev() {
        let mut cur = vec![false; m + 1];
        // For DeepDir: whether some `/` at k >= j has next[k + 1].
        let mut slash_then_rest = false;
        for j in (0..=m).rev() {
            let c = text.get(j).copied();
            cur[j] = match tok {
                Tok::Lit(l) => c == Some(*l) && next[j + 1],
                Tok::One => c.is_some_and(|c| c != '/') && next[j + 1],
                Tok::Class { negated, ranges } => {
                    c.is_some_and(|c| {
                        c != '/'
                            && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
                    }) && next[j + 1]
                }
                Tok::Star => next[j] || (c.is_some_and(|c| c != '/') && cur[j + 1]),
                Tok::Deep => next[j] || (c.is_some() && cur[j + 1]),
                Tok::DeepDir => {
                    if c == Some('/') && next[j + 1] {
                        slash_then_rest = true;
                    }
                    next[j] || slash_then_rest
                }
                // Only ever the last token: nothing more, or `/` and anything.
                Tok::DirDeep => j == m || c == Some('/'),
            };
        }
        next = cur;
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).unwrap().matches(t)
    }

    #[test]
    fn literals_and_stars() {
        assert!(m("latest", "latest"));
        assert!(!m("latest", "latest2"));
        assert!(!m("latest", "latesT"));
        assert!(m("release-*", "release-1"));
        assert!(m("release-*", "release-"));
        assert!(!m("release-*", "rc-release-1"));
        assert!(m("*", "anything.at-all_1"));
        assert!(m("v?.*", "v1.2"));
        assert!(!m("v?.*", "v10.2"));
        assert!(m("*-rc*", "1.0-rc2"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
    }

    #[test]
    fn stars_and_separators() {
        assert!(m("*", "app"));
        assert!(!m("*", "sub/app"));
        assert!(m("**", "sub/app"));
        assert!(m("**", "app"));
        assert!(m("sub/*", "sub/app"));
        assert!(!m("sub/*", "sub/x/app"));
        assert!(m("sub/**", "sub/x/app"));
        assert!(
            m("sub/**", "sub"),
            "a trailing /** also matches the directory itself"
        );
        assert!(!m("sub/**", "subway"));
        assert!(m("**/app", "app"));
        assert!(m("**/app", "a/b/app"));
        assert!(!m("**/app", "a/bapp"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/xb"));
        assert!(m("a**", "a/b/c"), "** inside a segment crosses /");
        assert!(m("?", "x"));
        assert!(!m("?", "/"));
    }

    #[test]
    fn classes() {
        assert!(m("v[0-9]", "v7"));
        assert!(!m("v[0-9]", "vx"));
        assert!(m("v[!0-9]", "vx"));
        assert!(m("v[^0-9]", "vx"));
        assert!(!m("v[!0-9]", "v1"));
        assert!(m("[]a]", "]"));
        assert!(m("[a-cx]", "x"));
        assert!(!m("[a-c]", "/"));
        assert!(m("[\\]]", "]"));
    }

    #[test]
    fn alternatives() {
        assert!(m("{release,hotfix}-*", "release-1"));
        assert!(m("{release,hotfix}-*", "hotfix-2"));
        assert!(!m("{release,hotfix}-*", "feature-3"));
        assert!(m("v{1,2{a,b}}", "v2b"));
        assert!(m("v{1,2{a,b}}", "v1"));
        assert!(!m("v{1,2{a,b}}", "v2"));
        assert!(m("x{,y}", "x"));
        assert!(m("{[{],b}", "{"));
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
        assert!(m("\\{x\\}", "{x}"));
    }

    #[test]
    fn invalid_patterns_say_why() {
        for (p, why) in [
            ("", "empty"),
            ("[a-", "'['"),
            ("{a,b", "'{'"),
            ("a}", "'}'"),
            ("a\\", "lone"),
            ("[z-a]", "reversed"),
            ("a\nb", "control"),
        ] {
            let e = Pattern::parse(p).unwrap_err();
            assert!(e.contains(why), "{p:?}: {e}");
        }
        assert!(Pattern::parse(&"a".repeat(256)).is_err());
        assert!(
            Pattern::parse(&"{a,b}".repeat(9)).is_err(),
            "2^9 alternatives"
        );
    }

    #[test]
    fn no_exponential_blowup() {
        let p = Pattern::parse(&"*a".repeat(30)).unwrap();
        let text = "a".repeat(29) + "b";
        let start = std::time::Instant::now();
        assert!(!p.matches(&text));
        assert!(start.elapsed() < std::time::Duration::from_millis(200));
    }
}
