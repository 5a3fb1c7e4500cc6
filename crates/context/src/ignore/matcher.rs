//! One `.dockerignore` pattern compiled the way moby's `patternmatcher` compiles it: classified as an
//! exact, prefix (`dir/**`), suffix (`**/name`) or regexp match, with the regexp text built by the
//! same character-by-character rewrite (`*` → `[^/]*`, `?` → `[^/]`, `**/` → `(.*/)?`, a trailing
//! `**` → `.*`, `.+()|{}$` escaped, everything else passed through to Go's regexp syntax, which `go_regexp` reads with Go's meaning).
//!
//! The classification matters beyond speed: a suffix pattern such as `**foo` matches `a/barfoo`
//! (plain suffix test) where the regexp would not, and Docker answers with the suffix test.

use regex::Regex;

use super::go_regexp;

#[derive(Debug, Clone)]
pub(super) struct CompiledPattern {
    /// The pattern after `filepath.Clean`, without the `!` of an exception.
    cleaned: String,
    kind: MatchKind,
}

#[derive(Debug, Clone)]
enum MatchKind {
    Exact,
    /// `cleaned` ends in `**` and everything before it is literal.
    Prefix,
    /// `cleaned` starts with `**`.
    Suffix,
    Regexp(Regex),
}

impl CompiledPattern {
    /// Compiles a cleaned pattern; the error explains why Go's regexp parser rejects the translation
    /// (text, the `reason` of the line-numbered `IgnoreError` the caller makes).
    pub(super) fn compile(cleaned: &str) -> Result<Self, String> {
        let (kind, regexp_source) = translate(cleaned);
        let kind = match kind {
            Kind::Exact => MatchKind::Exact,
            Kind::Prefix => MatchKind::Prefix,
            Kind::Suffix => MatchKind::Suffix,
            Kind::Regexp => MatchKind::Regexp(go_regexp::compile(&regexp_source)?),
        };
        Ok(CompiledPattern {
            cleaned: cleaned.to_owned(),
            kind,
        })
    }

    pub(super) fn cleaned(&self) -> &str {
        &self.cleaned
    }

    /// Whether the `/`-separated `path` matches this pattern (moby's `Pattern.match`). Prefix and
    /// suffix tests are on bytes, as in Go, so a pattern starting with a multi-byte character
    /// cannot cause a slicing panic.
    pub(super) fn matches(&self, path: &str) -> bool {
        let pattern = self.cleaned.as_bytes();
        let path_bytes = path.as_bytes();
        match &self.kind {
            MatchKind::Exact => path == self.cleaned,
            MatchKind::Prefix => {
                let prefix = pattern
                    .get(..pattern.len().saturating_sub(2))
                    .unwrap_or_default();
                path_bytes.starts_with(prefix)
            }
            MatchKind::Suffix => {
                let suffix = pattern.get(2..).unwrap_or_default();
                if path_bytes.ends_with(suffix) {
                    return true;
                }
                // `**/foo` also matches `foo` itself.
                match suffix.split_first() {
                    Some((b'/', rest)) => path_bytes == rest,
                    _ => false,
                }
            }
            MatchKind::Regexp(regexp) => regexp.is_match(path),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

/// moby's `Pattern.compile` for `/` as separator: the match kind, and the regexp text (meaningful
/// only for `Kind::Regexp`).
fn translate(cleaned: &str) -> (Kind, String) {
    let mut chars = cleaned.chars().peekable();
    // Go's text/scanner skips a byte-order mark at the very start.
    if chars.peek() == Some(&'\u{feff}') {
        chars.next();
    }
    let mut regexp = String::from("^");
    let mut kind = Kind::Exact;
    let mut iteration = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is treated as `**`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    // A trailing `**` accepts everything, as in .gitignore.
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        regexp.push_str(".*");
                        kind = Kind::Regexp;
                    }
                } else {
                    // Any number of directories, including none.
                    regexp.push_str("(.*/)?");
                    kind = Kind::Regexp;
                }
                if iteration == 0 {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                regexp.push_str("[^/]*");
                kind = Kind::Regexp;
            }
            '?' => {
                regexp.push_str("[^/]");
                kind = Kind::Regexp;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                regexp.push('\\');
                regexp.push(c);
            }
            '\\' => match chars.next() {
                Some(escaped) => {
                    regexp.push('\\');
                    regexp.push(escaped);
                    kind = Kind::Regexp;
                }
                None => regexp.push('\\'),
            },
            '[' | ']' => {
                regexp.push(c);
                kind = Kind::Regexp;
            }
            _ => regexp.push(c),
        }
        iteration += 1;
    }
    if kind == Kind::Regexp {
        regexp.push('$');
    }
    (kind, regexp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// moby's compile table: the kind, and the regexp text for regexp patterns.
    #[test]
    fn compile_table() {
        let cases: &[(&str, Kind, &str)] = &[
            ("*", Kind::Regexp, "^[^/]*$"),
            ("file*", Kind::Regexp, "^file[^/]*$"),
            ("*file", Kind::Regexp, "^[^/]*file$"),
            ("a*/b", Kind::Regexp, "^a[^/]*/b$"),
            ("**", Kind::Suffix, ""),
            ("**/**", Kind::Regexp, "^(.*/)?.*$"),
            ("dir/**", Kind::Prefix, ""),
            ("**/dir", Kind::Suffix, ""),
            ("**/dir2/*", Kind::Regexp, "^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", Kind::Regexp, "^(.*/)?dir2/.*$"),
            ("**file", Kind::Suffix, ""),
            ("**/file*txt", Kind::Regexp, "^(.*/)?file[^/]*txt$"),
            ("**/**/*.txt", Kind::Regexp, "^(.*/)?(.*/)?[^/]*\\.txt$"),
            ("a[b-d]e", Kind::Regexp, "^a[b-d]e$"),
            (".*", Kind::Regexp, "^\\.[^/]*$"),
            ("abc.def", Kind::Exact, ""),
            ("abc?def", Kind::Regexp, "^abc[^/]def$"),
            ("**/foo/bar", Kind::Suffix, ""),
            ("a(b)c/def", Kind::Exact, ""),
            ("a.|)$(}+{bc", Kind::Exact, ""),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                Kind::Exact,
                "",
            ),
        ];
        for (pattern, kind, regexp) in cases {
            let (got_kind, got_regexp) = translate(pattern);
            assert_eq!(got_kind, *kind, "kind of {pattern}");
            if *kind == Kind::Regexp {
                assert_eq!(got_regexp, *regexp, "regexp of {pattern}");
            }
        }
    }

    #[test]
    fn suffix_is_a_plain_suffix_test() {
        let pattern = CompiledPattern::compile("**foo").unwrap_or_else(|e| panic!("{e}"));
        assert!(pattern.matches("a/barfoo"));
        let pattern = CompiledPattern::compile("**/foo").unwrap_or_else(|e| panic!("{e}"));
        assert!(pattern.matches("foo"));
        assert!(pattern.matches("a/foo"));
        assert!(!pattern.matches("a/barfoo"));
    }

    #[test]
    fn multibyte_prefix_and_suffix_do_not_panic() {
        for pattern in ["é**", "**é", "\u{feff}**/x", "ü/**"] {
            let compiled = CompiledPattern::compile(pattern).unwrap_or_else(|e| panic!("{e}"));
            for path in ["", "é", "ü/a", "x", "a/x"] {
                let _ = compiled.matches(path);
            }
        }
    }

    #[test]
    fn regexp_errors_are_reported_at_compile_time() {
        // Passes Go's filepath.Match check (it does not order ranges) but not Go's regexp parser.
        assert!(CompiledPattern::compile("[Local-Only]").is_err());
        assert!(CompiledPattern::compile("a\\é").is_err());
    }
}
