//! Shell-style globs with the exact semantics of Go's `path.Match` (equivalently `path/filepath.Match`
//! on Unix), the matcher Docker uses for `COPY`/`ADD` source globs.
//!
//! Syntax: `*` matches any run of non-`/` characters, `?` one non-`/` character, `[...]` a character
//! class (ranges `a-z`, negation with a leading `^`, `\` escapes inside), and `\c` the character `c`.
//! Go has no `!` negation in classes: `[!a]` matches `!` or `a`, and so does this module.
//!
//! Go checks the whole pattern for syntax errors even when the match fails early, and reports a
//! malformed pattern as an error instead of a non-match; [`path_match`] does the same. Matching is
//! done on bytes, decoding runes only where Go does (for `?` and classes), so every corner case
//! (including a `*` that skips into the middle of a multi-byte character) answers as Go answers.

/// The pattern is malformed (Go's `filepath.ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "malformed glob pattern `{pattern}`: every `[` needs a closing `]` and a non-empty class, \
         `-` and `]` inside a class must be escaped with `\\`, and a `\\` cannot end the pattern"
    )]
    BadPattern { pattern: String },
}

/// Go's `utf8.RuneError`, returned for bytes that do not start a valid UTF-8 sequence.
const RUNE_ERROR: u32 = 0xFFFD;

/// Internal marker: the pattern is malformed. The public error adds the pattern text.
struct Malformed;

/// Reports whether `name` matches the shell pattern `pattern` as a whole (not a substring).
pub(crate) fn path_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    match_bytes(pattern.as_bytes(), name.as_bytes()).map_err(|Malformed| PatternError::BadPattern {
        pattern: pattern.to_owned(),
    })
}

/// Reports whether a `COPY`/`ADD` source is a glob: it contains an unescaped `*`, `?` or `[`.
/// This is BuildKit's `containsWildcards`, which makes that decision in Docker: a `\` hides the
/// character after it, so `file\[1\].txt` is not a glob (and Docker then uses it as a literal
/// path, backslashes included).
pub fn has_glob_meta(s: &str) -> bool {
    let mut bytes = s.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'\\' => {
                bytes.next();
            }
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
    }
    false
}

fn match_bytes(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, Malformed> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest of the name unless it has a `/`.
            return Ok(!name.contains(&b'/'));
        }
        // Look for a match at the current position. When this is the last chunk the name must be
        // used up, otherwise a later position reached through the star could still match.
        let (rest_of_name, ok) = match_chunk(chunk, name)?;
        if ok && (rest_of_name.is_empty() || !pattern.is_empty()) {
            name = rest_of_name;
            continue;
        }
        if star {
            // Try again after skipping i+1 bytes; a star cannot skip a `/`.
            let mut i = 0;
            while i < name.len() && name.get(i) != Some(&b'/') {
                let skipped = name.get(i + 1..).unwrap_or_default();
                let (rest_of_name, ok) = match_chunk(chunk, skipped)?;
                if ok && (rest_of_name.is_empty() || !pattern.is_empty()) {
                    name = rest_of_name;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        // Before answering "no match", check that the rest of the pattern is well-formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off the next segment of the pattern: a run of stars (reported as `star`) followed by the
/// non-star text up to the next star outside a class.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let stars = pattern.iter().take_while(|&&b| b == b'*').count();
    let pattern = pattern.get(stars..).unwrap_or_default();
    let mut in_range = false;
    let mut i = 0;
    while let Some(&b) = pattern.get(i) {
        match b {
            // A trailing `\` is reported as malformed by match_chunk.
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    let (chunk, rest) = pattern.split_at(i.min(pattern.len()));
    (stars > 0, chunk, rest)
}

/// Checks whether `chunk` (literals, classes and `?`, no stars) matches the start of `s`, returning
/// the rest of `s` when it does. After a mismatch the chunk is still parsed to the end so that a
/// malformed pattern is reported whatever the name.
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<(&'a [u8], bool), Malformed> {
    let mut failed = false;
    while let Some(&first) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match first {
            b'[' => {
                let mut rune = 0;
                if !failed {
                    let (r, n) = decode_rune(s);
                    rune = r;
                    s = s.get(n..).unwrap_or_default();
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_escaped(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (h, rest) = get_escaped(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= rune && rune <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s.first() == Some(&b'/') {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = s.get(n..).unwrap_or_default();
                }
                chunk = &chunk[1..];
            }
            _ => {
                if first == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(Malformed);
                    }
                }
                if !failed {
                    if chunk.first() != s.first() {
                        failed = true;
                    }
                    s = s.get(1..).unwrap_or_default();
                }
                chunk = chunk.get(1..).unwrap_or_default();
            }
        }
    }
    if failed {
        Ok((b"", false))
    } else {
        Ok((s, true))
    }
}

/// Reads one possibly escaped character of a class; Go's `getEsc`. A class character may not be an
/// unescaped `-` or `]`, and something (at least the closing `]`) must follow it.
fn get_escaped(chunk: &[u8]) -> Result<(u32, &[u8]), Malformed> {
    let mut chunk = match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(Malformed),
        Some(_) => chunk,
    };
    if chunk.first() == Some(&b'\\') {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(Malformed);
        }
    }
    let (rune, n) = decode_rune(chunk);
    if rune == RUNE_ERROR && n == 1 {
        return Err(Malformed);
    }
    let rest = chunk.get(n..).unwrap_or_default();
    if rest.is_empty() {
        return Err(Malformed);
    }
    Ok((rune, rest))
}

/// Go's `utf8.DecodeRune`: the first rune of `b` and its length; `(RUNE_ERROR, 1)` for an invalid
/// sequence and `(RUNE_ERROR, 0)` for empty input.
fn decode_rune(b: &[u8]) -> (u32, usize) {
    let len = match b.first() {
        None => return (RUNE_ERROR, 0),
        Some(&c) if c < 0x80 => return (u32::from(c), 1),
        Some(&c) if c & 0xE0 == 0xC0 => 2,
        Some(&c) if c & 0xF0 == 0xE0 => 3,
        Some(&c) if c & 0xF8 == 0xF0 => 4,
        Some(_) => return (RUNE_ERROR, 1),
    };
    b.get(..len)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|s| s.chars().next())
        .map_or((RUNE_ERROR, 1), |c| (u32::from(c), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(pattern: &str) -> Result<bool, PatternError> {
        Err(PatternError::BadPattern {
            pattern: pattern.to_owned(),
        })
    }

    /// Go's own table for `path.Match` (re-expressed), plus the error-reporting cases added when Go
    /// began validating the whole pattern.
    #[test]
    fn go_match_table() {
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(())),
            ("[-]", "-", Err(())),
            ("[x-]", "x", Err(())),
            ("[x-]", "-", Err(())),
            ("[x-]", "z", Err(())),
            ("[-x]", "x", Err(())),
            ("[-x]", "-", Err(())),
            ("[-x]", "a", Err(())),
            ("\\", "a", Err(())),
            ("[a-b-c]", "a", Err(())),
            ("[", "a", Err(())),
            ("[^", "a", Err(())),
            ("[^bc", "a", Err(())),
            ("a[", "a", Err(())),
            ("a[", "ab", Err(())),
            ("a[", "x", Err(())),
            ("a/b[", "x", Err(())),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            let got = path_match(pattern, name);
            match want {
                Ok(want) => assert_eq!(got, Ok(*want), "Match({pattern:?}, {name:?})"),
                Err(()) => assert_eq!(got, bad(pattern), "Match({pattern:?}, {name:?})"),
            }
        }
    }

    #[test]
    fn malformed_rest_is_reported_even_after_an_early_mismatch() {
        // The first chunk already fails on "x", but the unclosed class later is still an error.
        assert_eq!(path_match("a*[", "x"), bad("a*["));
        assert_eq!(path_match("abc/[z", "xyz"), bad("abc/[z"));
        assert_eq!(path_match("q*\\", "a"), bad("q*\\"));
        // A well-formed pattern that fails is just a non-match.
        assert_eq!(path_match("a*[b]", "x"), Ok(false));
    }

    #[test]
    fn go_has_no_bang_negation() {
        assert_eq!(path_match("[!a]", "!"), Ok(true));
        assert_eq!(path_match("[!a]", "a"), Ok(true));
        assert_eq!(path_match("[!a]", "b"), Ok(false));
    }

    #[test]
    fn separators_are_never_crossed() {
        assert_eq!(path_match("*", "a/b"), Ok(false));
        assert_eq!(path_match("*/*", "a/b"), Ok(true));
        assert_eq!(path_match("?", "/"), Ok(false));
        assert_eq!(
            path_match("[^a]", "/"),
            Ok(true),
            "a class may match `/`, as in Go"
        );
        assert_eq!(path_match("a/*.go", "a/b.go"), Ok(true));
        assert_eq!(path_match("a/*.go", "a/b/c.go"), Ok(false));
    }

    #[test]
    fn escapes_and_unicode() {
        assert_eq!(path_match("\\[a\\]", "[a]"), Ok(true));
        assert_eq!(path_match("\\?", "?"), Ok(true));
        assert_eq!(path_match("\\?", "x"), Ok(false));
        assert_eq!(path_match("日本*", "日本語"), Ok(true));
        assert_eq!(path_match("?本語", "日本語"), Ok(true));
        assert_eq!(path_match("[日月]本語", "月本語"), Ok(true));
        assert_eq!(path_match("file with spaces", "file with spaces"), Ok(true));
        assert_eq!(path_match("", ""), Ok(true));
        assert_eq!(path_match("", "a"), Ok(false));
    }

    #[test]
    fn glob_meta() {
        assert!(has_glob_meta("*.go"));
        assert!(has_glob_meta("a?"));
        assert!(has_glob_meta("[ab]"));
        assert!(has_glob_meta("dir/*/x"));
        assert!(
            has_glob_meta("a\\\\*"),
            "an escaped backslash does not hide the star"
        );
        assert!(!has_glob_meta("a\\*b"), "an escaped star is not a wildcard");
        assert!(!has_glob_meta("file\\[1\\].txt"));
        assert!(!has_glob_meta("a\\b"));
        assert!(!has_glob_meta("trailing\\"));
        assert!(!has_glob_meta("plain/path.txt"));
        assert!(!has_glob_meta("a]b"));
    }
}
