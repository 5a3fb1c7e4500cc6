//! Go's regexp syntax, as moby's `.dockerignore` translation produces it, rewritten for the `regex`
//! crate. Both read RE2 syntax with the same defaults (`^`/`$` anchor the whole text, `.` excludes
//! `\n`, a negated class includes it) and match in linear time; this rewrites only where they differ.
//!
//! moby passes `[`, `]`, `^` and `\x` escapes of a pattern through to Go, so these differences can be
//! reached from a `.dockerignore` line:
//! - inside a class Go reads `[` (except `[:name:]`), `&&`, `--` and `~~` as plain characters where
//!   the crate nests classes and applies set operations, so every class member is written escaped;
//! - `\d`, `\s`, `\w` and `\b` are ASCII in Go and Unicode in the crate (Go's `\s` has no `\v`);
//! - Go reads `\1`..`\7`-prefixed octal (`\101` is `A`), and rejects `\u`, `\<`, `\>` and other
//!   escapes of letters and digits that the crate would accept with another meaning;
//! - a `]` that closes nothing is a literal in Go.
//!
//! Two Go constructs that nobody writes in a `.dockerignore` on purpose, `\p` Unicode classes (whose
//! names differ between the two) and `\Q...\E` quoting, are rejected with an explanation rather
//! than silently misread.

use regex::{Regex, RegexBuilder};

/// Go keeps no limit a `.dockerignore` line could reach; the crate's default could be reached by
/// a line of a few thousand `?`.
const COMPILED_SIZE_LIMIT: usize = 256 << 20;

/// Compiles the Go regexp `source` with Go's meaning, or says why Go (or this subset) rejects it.
/// Text errors, as in a lexer: they become the `reason` of a line-numbered `IgnoreError`.
pub(super) fn compile(source: &str) -> Result<Regex, String> {
    let translated = to_crate_syntax(source)?;
    RegexBuilder::new(&translated)
        .size_limit(COMPILED_SIZE_LIMIT)
        .build()
        .map_err(|error| match error {
            // The syntax error's last line names what is wrong; the lines above repeat the text.
            regex::Error::Syntax(text) => text
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned(),
            other => other.to_string(),
        })
}

/// The same regexp in the `regex` crate's syntax.
fn to_crate_syntax(source: &str) -> Result<String, String> {
    let mut reader = Reader {
        chars: source.chars().collect(),
        pos: 0,
    };
    let mut out = String::with_capacity(source.len() * 2);
    while let Some(c) = reader.next() {
        match c {
            '\\' => out.push_str(&reader.escape_outside_class()?),
            '[' => out.push_str(&reader.class()?),
            ']' => out.push_str(r"\]"),
            // Repetitions, groups, `.`, `^` and `$` read the same in both.
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// A Go character as a literal in the crate's syntax, in or out of a class.
fn literal(c: char) -> String {
    regex::escape(c.encode_utf8(&mut [0; 4]))
}

/// Go's Perl classes, ASCII only, as the inside of a crate class.
fn perl_class(letter: char) -> Option<&'static str> {
    Some(match letter {
        'd' => "0-9",
        'D' => "^0-9",
        's' => r"\t\n\f\r ",
        'S' => r"^\t\n\f\r ",
        'w' => "0-9A-Za-z_",
        'W' => "^0-9A-Za-z_",
        _ => return None,
    })
}

/// The ASCII classes Go knows by name; the crate knows the same ones, with the same members.
const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

struct Reader {
    chars: Vec<char>,
    pos: usize,
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// After a `\` outside a class: assertions, Perl classes, then single-character escapes.
    fn escape_outside_class(&mut self) -> Result<String, String> {
        let Some(c) = self.peek() else {
            return Err("trailing backslash at end of expression".to_owned());
        };
        match c {
            'A' | 'z' => {
                self.pos += 1;
                Ok(format!(r"\{c}"))
            }
            'b' | 'B' => {
                self.pos += 1;
                Ok(format!(r"(?-u:\{c})"))
            }
            'Q' => Err(r"`\Q...\E` quoting is not supported".to_owned()),
            'p' | 'P' => Err(format!(r"Unicode classes `\{c}` are not supported")),
            _ => match perl_class(c) {
                Some(body) => {
                    self.pos += 1;
                    Ok(format!("[{body}]"))
                }
                None => self.escaped_char().map(literal),
            },
        }
    }

    /// Go's `parseEscape`, after the `\`: the character the escape names.
    fn escaped_char(&mut self) -> Result<char, String> {
        let start = self.pos - 1;
        let Some(c) = self.next() else {
            return Err("trailing backslash at end of expression".to_owned());
        };
        let invalid = |reader: &Self| {
            let text: String = reader
                .chars
                .get(start..reader.pos)
                .unwrap_or_default()
                .iter()
                .collect();
            format!("invalid escape sequence `{text}`")
        };
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            return Ok(c);
        }
        let is_octal = |c: Option<char>| c.is_some_and(|c| ('0'..='7').contains(&c));
        match c {
            // A lone `\1`..`\7` would be a backreference, which Go does not have.
            '1'..='7' if !is_octal(self.peek()) => Err(invalid(self)),
            '0'..='7' => {
                let mut value = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    if !is_octal(self.peek()) {
                        break;
                    }
                    value = value * 8 + self.next().and_then(|d| d.to_digit(8)).unwrap_or(0);
                }
                char::from_u32(value).ok_or_else(|| invalid(self))
            }
            'x' => {
                let high = self.next().and_then(|d| d.to_digit(16));
                let low = self.next().and_then(|d| d.to_digit(16));
                match (high, low) {
                    (Some(high), Some(low)) => {
                        char::from_u32(high * 16 + low).ok_or_else(|| invalid(self))
                    }
                    _ => Err(invalid(self)),
                }
            }
            'a' => Ok('\u{7}'),
            'f' => Ok('\u{c}'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\u{b}'),
            _ => Err(invalid(self)),
        }
    }

    /// Go's `parseClass`, after the `[`, written as a crate class whose members are all escaped.
    fn class(&mut self) -> Result<String, String> {
        let mut out = String::from("[");
        if self.peek() == Some('^') {
            self.pos += 1;
            out.push('^');
        }
        // `]` right after `[` or `[^` is a member.
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err("missing closing `]`".to_owned()),
                Some(']') if !first => break,
                _ => {}
            }
            first = false;
            if self.peek() == Some('[')
                && self.peek_at(1) == Some(':')
                && let Some(named) = self.posix_class()?
            {
                out.push_str(&named);
                continue;
            }
            if self.peek() == Some('\\') {
                let letter = self.peek_at(1).unwrap_or_default();
                if matches!(letter, 'p' | 'P') {
                    return Err(r"Unicode classes `\p` are not supported".to_owned());
                }
                if let Some(body) = perl_class(letter) {
                    self.pos += 2;
                    out.push_str(&format!("[{body}]"));
                    continue;
                }
            }
            let lo = self.class_char()?;
            out.push_str(&literal(lo));
            // `[a-]` is `a` or `-`: a `-` only makes a range when something other than `]` follows.
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.pos += 1;
                let hi = self.class_char()?;
                if hi < lo {
                    return Err(format!("invalid character class range `{lo}-{hi}`"));
                }
                out.push('-');
                out.push_str(&literal(hi));
            }
        }
        self.pos += 1;
        out.push(']');
        Ok(out)
    }

    fn class_char(&mut self) -> Result<char, String> {
        match self.next() {
            None => Err("missing closing `]`".to_owned()),
            Some('\\') => self.escaped_char(),
            Some(c) => Ok(c),
        }
    }

    /// Go's `parseNamedClass` at `[:`: `[:name:]` or `[:^name:]`. Go looks for the closing `:]`
    /// anywhere in the rest of the expression, so this does too; none at all means a literal `[`.
    fn posix_class(&mut self) -> Result<Option<String>, String> {
        let rest = self.chars.get(self.pos..).unwrap_or_default();
        let Some(end) = rest
            .windows(2)
            .skip(2)
            .position(|w| w == [':', ']'])
            .map(|i| i + 2)
        else {
            return Ok(None);
        };
        let name: String = rest.get(2..end).unwrap_or_default().iter().collect();
        if !POSIX_CLASSES.contains(&name.strip_prefix('^').unwrap_or(&name)) {
            return Err(format!("invalid character class range `[:{name}:]`"));
        }
        self.pos += end + 2;
        Ok(Some(format!("[:{name}:]")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(re: &str, text: &str) -> bool {
        compile(re)
            .unwrap_or_else(|e| panic!("{re}: {e}"))
            .is_match(text)
    }

    #[test]
    fn translated_shapes() {
        assert!(matches("^[^/]*$", "abc"));
        assert!(!matches("^[^/]*$", "a/c"));
        assert!(matches("^(.*/)?dir2/[^/]*$", "dir/dir2/file"));
        assert!(matches("^(.*/)?dir2/[^/]*$", "dir2/file"));
        assert!(!matches("^(.*/)?dir2/[^/]*$", "dir/dir2/file/x"));
        assert!(matches("^(.*/)?(.*/)?[^/]*\\.txt$", "a/b/c.txt"));
        assert!(!matches("^(.*/)?(.*/)?[^/]*\\.txt$", "a/b/ctxt"));
        assert!(matches("^a[b-d]e$", "ace"));
        assert!(!matches("^a[b-d]e$", "aae"));
        assert!(matches("^a[^b-d]e$", "aze"));
    }

    #[test]
    fn go_meanings_of_pass_through_characters() {
        // A class closed by the generated `[^/]`, then a literal `]`.
        assert!(matches("^[a[^/]*]$", "a[^/]"));
        assert!(matches("^[a[^/]*]$", "]"));
        // POSIX classes.
        assert!(matches("^[[:alpha:]]$", "q"));
        assert!(!matches("^[[:alpha:]]$", "1"));
        assert!(matches("^[[:^alpha:]]$", "1"));
        // A `^` in the middle is an anchor, so this cannot match.
        assert!(!matches("^a^b$", "a^b"));
        // Perl classes and escapes.
        assert!(matches("^\\d\\d$", "42"));
        assert!(matches("^a\\_b$", "a_b"));
        assert!(matches("^\\x41$", "A"));
        assert!(matches("^\\bab\\b$", "ab"));
        // `.` does not match a newline, a negated class does.
        assert!(!matches("^.$", "\n"));
        assert!(matches("^[^/]$", "\n"));
        // A `]` that closes nothing is itself; a Perl class joins a class.
        assert!(matches("^a]$", "a]"));
        assert!(matches("^[x\\s]$", " "));
    }

    /// Each of these reads differently in the crate's own syntax: the crate, given the Go text,
    /// rejects it or answers the other way.
    #[test]
    fn differences_from_the_crate_are_translated() {
        // `[` inside a class is a member, not a nested class.
        assert!(matches("^[a[b]$", "["));
        assert!(matches("^[[b]$", "b"));
        // `&&`, `--` and `~~` in a class are members, not set operations.
        assert!(matches("^[a&&b]$", "&"));
        assert!(matches("^[a&&b]$", "a"));
        assert!(matches("^[a~~b]$", "~"));
        assert!(matches("^[--/]$", "."));
        // Perl classes and word boundaries are ASCII.
        assert!(!matches("^\\d$", "٣"));
        assert!(matches("^\\D$", "٣"));
        assert!(!matches("^\\w$", "é"));
        assert!(matches("^[\\W]$", "é"));
        assert!(!matches("^\\s$", "\u{b}"));
        assert!(!matches("^\\s$", "\u{a0}"));
        assert!(matches("^[x\\s]$", " "));
        assert!(matches("^é\\ba$", "éa"));
        assert!(!matches("^é\\Ba$", "éa"));
        // Octal escapes.
        assert!(matches("^\\101$", "A"));
        assert!(matches("^[\\101-\\103]$", "B"));
        // `\<` and `\>` are the characters, not word-start and word-end.
        assert!(matches("^\\<a\\>$", "<a>"));
    }

    #[test]
    fn go_errors() {
        for bad in [
            "^[l-O]$",
            "^[[:nope:]]$",
            "^\\q$",
            "^\\é$",
            "^\\8$",
            "^\\1$",
            "^\\u0041$",
            "^\\e$",
            "^\\Z$",
            "^\\C$",
            "^\\x4$",
            "^[a-\\d]$",
            "*a",
            "^(*a)$",
            "^[a$",
            "^(a$",
            "^a)$",
            "^\\",
            "^\\pN$",
            "^\\Qa\\E$",
        ] {
            assert!(compile(bad).is_err(), "{bad} should be rejected");
        }
        assert!(compile("^[]a]$").is_ok(), "`]` first in a class is literal");
        assert!(compile("^a*?$").is_ok(), "non-greedy is fine");
        assert!(compile("^*$").is_ok(), "Go lets an assertion repeat");
    }

    #[test]
    fn errors_are_one_line() {
        let error = compile("^[l-O]$").err().unwrap_or_default();
        assert_eq!(error, "invalid character class range `l-O`");
        let error = compile("^(a$").err().unwrap_or_default();
        assert!(!error.contains('\n') && !error.is_empty(), "{error}");
    }

    #[test]
    fn many_stars_stay_fast() {
        let re =
            compile("^[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*b$").unwrap_or_else(|e| panic!("{e}"));
        assert!(!re.is_match(&"a".repeat(5000)));
    }

    #[test]
    fn a_long_line_of_wildcards_compiles() {
        let source = format!("^{}$", "[^/]".repeat(20_000));
        assert!(compile(&source).is_ok());
    }
}
