//! Shell patterns for `${VAR#p}`, `${VAR%p}` and `${VAR/p/r}`: `*` matches any run of
//! characters, `?` one character, and `\*`, `\?`, `\\` match themselves (no `[...]` classes).
//!
//! BuildKit compiles these to Go regular expressions, where `.` does not match a newline; the
//! matcher here keeps that. Shortest and longest matches are what Go's lazy and greedy
//! quantifiers find for these patterns.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters other than newline.
    Star,
    /// `?`: one character other than newline.
    One,
    Literal(char),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    pub fn compile(pattern: &str) -> Result<Pattern, String> {
        let mut tokens: Vec<Token> = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                // Runs of stars match the same as one star.
                '*' if tokens.last() == Some(&Token::Star) => continue,
                '*' => Token::Star,
                '?' => Token::One,
                // `\}` and `\/` only protected the character from ending the `${...}`.
                '\\' if matches!(chars.peek(), Some('}' | '/')) => continue,
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '?' | '\\')) => Token::Literal(escaped),
                    Some(other) => {
                        return Err(format!(
                            "invalid escape '\\{other}': only \\*, \\? and \\\\ are allowed"
                        ));
                    }
                    None => return Err("the pattern ends with a lone '\\'".to_string()),
                },
                other => Token::Literal(other),
            };
            tokens.push(token);
        }
        Ok(Pattern { tokens })
    }

    /// The end of the shortest (or, if `longest`, the longest) match starting at `start`.
    fn match_at(&self, text: &[char], start: usize, longest: bool) -> Option<usize> {
        // Positions reachable after each token, swept left to right: O(tokens × text).
        let mut reachable = vec![false; text.len() + 1];
        *reachable.get_mut(start)? = true;
        for token in &self.tokens {
            let mut next = vec![false; text.len() + 1];
            match token {
                Token::Star => {
                    let mut open = false;
                    for (at, slot) in next.iter_mut().enumerate().skip(start) {
                        open |= reachable.get(at).copied().unwrap_or(false);
                        *slot = open;
                        if text.get(at) == Some(&'\n') {
                            open = false;
                        }
                    }
                }
                Token::One | Token::Literal(_) => {
                    for (at, c) in text.iter().enumerate().skip(start) {
                        let matches = match token {
                            Token::Literal(expected) => c == expected,
                            _ => *c != '\n',
                        };
                        if matches
                            && reachable.get(at).copied().unwrap_or(false)
                            && let Some(slot) = next.get_mut(at + 1)
                        {
                            *slot = true;
                        }
                    }
                }
            }
            if !next.contains(&true) {
                return None;
            }
            reachable = next;
        }
        let mut ends = reachable
            .iter()
            .enumerate()
            .filter(|(_, reached)| **reached)
            .map(|(at, _)| at);
        if longest {
            ends.next_back()
        } else {
            ends.next()
        }
    }

    /// The leftmost match at or after `from`, longest at that position: `(start, end)`.
    fn find(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=text.len())
            .find_map(|start| self.match_at(text, start, true).map(|end| (start, end)))
    }
}

/// `${VAR#pattern}` (shortest) and `${VAR##pattern}` (longest): remove a matching prefix.
pub(crate) fn trim_prefix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let compiled = Pattern::compile(pattern)?;
    let text: Vec<char> = value.chars().collect();
    Ok(match compiled.match_at(&text, 0, longest) {
        Some(end) => text.iter().skip(end).collect(),
        None => value.to_string(),
    })
}

/// `${VAR%pattern}` (shortest) and `${VAR%%pattern}` (longest): remove a matching suffix. As
/// BuildKit does, both pattern and value are reversed so the suffix becomes a prefix.
pub(crate) fn trim_suffix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let compiled = Pattern::compile(&reverse_pattern(pattern))?;
    let reversed: Vec<char> = value.chars().rev().collect();
    Ok(match compiled.match_at(&reversed, 0, longest) {
        Some(end) => {
            let keep = reversed.len() - end;
            value.chars().take(keep).collect()
        }
        None => value.to_string(),
    })
}

/// Reverses a pattern but keeps each backslash before the character it escapes.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::new();
    let mut rest = chars.as_slice();
    while !rest.is_empty() {
        let length = if rest.first() == Some(&'\\') && rest.len() > 1 {
            2
        } else {
            1
        };
        let (unit, after) = rest.split_at(length);
        units.push(unit);
        rest = after;
    }
    units.iter().rev().flat_map(|unit| unit.iter()).collect()
}

/// `${VAR/pattern/replacement}` (first match) and `${VAR//pattern/replacement}` (all matches).
pub(crate) fn replace(
    pattern: &str,
    value: &str,
    replacement: &str,
    all: bool,
) -> Result<String, String> {
    let compiled = Pattern::compile(pattern)?;
    let text: Vec<char> = value.chars().collect();
    if !all {
        // BuildKit splices the replacement in as is for the first-match form.
        return Ok(match compiled.find(&text, 0) {
            Some((start, end)) => {
                let mut out: String = text.iter().take(start).collect();
                out.push_str(replacement);
                out.extend(text.iter().skip(end));
                out
            }
            None => value.to_string(),
        });
    }
    // Go's Regexp.ReplaceAllString: successive leftmost matches; an empty match right after a
    // previous match is not replaced; the search always advances.
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= text.len() {
        let Some((start, end)) = compiled.find(&text, search) else {
            break;
        };
        out.extend(text.iter().take(start).skip(last_end));
        if end > last_end || start == 0 {
            let matched: String = text.iter().take(end).skip(start).collect();
            out.push_str(&expand_template(replacement, &matched));
        }
        last_end = end;
        search = if search + 1 > end { search + 1 } else { end };
    }
    out.extend(text.iter().skip(last_end));
    Ok(out)
}

/// Go's `Regexp.Expand` for a pattern without groups: `$$` is `$`, `$0`/`${0}` the whole
/// match, any other `$name` nothing, and a malformed `$` stays as is.
fn expand_template(template: &str, matched: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('$') {
        out.push_str(before);
        rest = after;
        if let Some(after_dollar) = rest.strip_prefix('$') {
            out.push('$');
            rest = after_dollar;
            continue;
        }
        match template_reference(rest) {
            Some((name, after_reference)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after_reference;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// Reads `name` or `{name}` after a `$`; returns the name and the text after it.
fn template_reference(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let length = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphabetic() || c.is_numeric() || c == '_'))
        .map_or(body.len(), |(at, _)| at);
    if length == 0 {
        return None;
    }
    let (name, after) = body.split_at(length);
    if braced {
        return after.strip_prefix('}').map(|after| (name, after));
    }
    Some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_shortest_and_longest() {
        assert_eq!(trim_prefix("*/", "a/b/c", false).unwrap(), "b/c");
        assert_eq!(trim_prefix("*/", "a/b/c", true).unwrap(), "c");
        assert_eq!(trim_prefix("x", "abc", false).unwrap(), "abc");
        assert_eq!(trim_prefix("a?", "abc", false).unwrap(), "c");
        assert_eq!(trim_prefix("", "abc", false).unwrap(), "abc");
        assert_eq!(trim_prefix("*", "abc", false).unwrap(), "abc");
        assert_eq!(trim_prefix("*", "abc", true).unwrap(), "");
    }

    #[test]
    fn suffix_shortest_and_longest() {
        assert_eq!(trim_suffix(".*", "file.tar.gz", false).unwrap(), "file.tar");
        assert_eq!(trim_suffix(".*", "file.tar.gz", true).unwrap(), "file");
        assert_eq!(trim_suffix("z", "abc", false).unwrap(), "abc");
        assert_eq!(trim_suffix("b?", "abc", false).unwrap(), "a");
    }

    #[test]
    fn escaped_wildcards_are_literal() {
        assert_eq!(trim_prefix(r"a\*", "a*b", false).unwrap(), "b");
        assert_eq!(trim_prefix(r"a\*", "aab", false).unwrap(), "aab");
        assert_eq!(trim_suffix(r"\*b", "a*b", false).unwrap(), "a");
        assert_eq!(trim_prefix(r"\\", r"\x", false).unwrap(), "x");
        assert_eq!(trim_prefix(r"\}", "}x", false).unwrap(), "x");
    }

    #[test]
    fn invalid_escape_is_an_error() {
        assert!(
            trim_prefix(r"\a", "x", false)
                .unwrap_err()
                .contains("invalid escape")
        );
        assert!(trim_prefix("\\", "x", false).is_err());
    }

    #[test]
    fn regex_special_characters_are_literal() {
        assert_eq!(trim_prefix("a.c", "abc", false).unwrap(), "abc");
        assert_eq!(trim_prefix("a.c", "a.cd", false).unwrap(), "d");
        assert_eq!(trim_prefix("(x)[y]^$", "(x)[y]^$!", false).unwrap(), "!");
    }

    #[test]
    fn wildcards_do_not_cross_newlines() {
        assert_eq!(trim_prefix("*", "a\nb", true).unwrap(), "\nb");
        assert_eq!(trim_prefix("a?b", "a\nb", false).unwrap(), "a\nb");
    }

    #[test]
    fn unicode_counts_characters() {
        assert_eq!(trim_prefix("?", "éa", false).unwrap(), "a");
        assert_eq!(trim_suffix("?", "aé", false).unwrap(), "a");
        assert_eq!(replace("ö", "höhö", "o", true).unwrap(), "hoho");
    }

    #[test]
    fn replace_first_and_all() {
        assert_eq!(replace(".", "1.2.3", "-", false).unwrap(), "1-2.3");
        assert_eq!(replace(".", "1.2.3", "-", true).unwrap(), "1-2-3");
        assert_eq!(replace("x", "abc", "-", true).unwrap(), "abc");
        assert_eq!(replace("b*", "abbbc", "X", false).unwrap(), "aX");
        assert_eq!(replace("b?", "abbbc", "X", true).unwrap(), "aXX");
        assert_eq!(replace("a*c", "abcabc", "X", true).unwrap(), "X");
    }

    #[test]
    fn replace_with_empty_pattern_matches_everywhere() {
        assert_eq!(replace("", "abc", "-", true).unwrap(), "-a-b-c-");
        assert_eq!(replace("", "abc", "-", false).unwrap(), "-abc");
        assert_eq!(replace("*", "abc", "-", true).unwrap(), "-");
    }

    #[test]
    fn replace_all_expands_go_templates() {
        assert_eq!(replace("b", "abc", "[$0]", true).unwrap(), "a[b]c");
        assert_eq!(replace("b", "abc", "${0}", true).unwrap(), "abc");
        assert_eq!(replace("b", "abc", "$1", true).unwrap(), "ac");
        assert_eq!(replace("b", "abc", "$$", true).unwrap(), "a$c");
        assert_eq!(replace("b", "abc", "$", true).unwrap(), "a$c");
        assert_eq!(replace("b", "abc", "${x", true).unwrap(), "a${xc");
        assert_eq!(replace("b", "abc", "$0", false).unwrap(), "a$0c");
    }

    #[test]
    fn reversing_keeps_escapes_in_front() {
        assert_eq!(reverse_pattern(r"a\*b"), r"b\*a");
        assert_eq!(reverse_pattern("abc"), "cba");
        assert_eq!(reverse_pattern("a\\"), "\\a");
    }

    #[test]
    fn many_stars_and_long_text_stay_fast() {
        let value = "a".repeat(2000);
        let pattern = "*a".repeat(200);
        assert_eq!(trim_prefix(&pattern, &value, false).unwrap().len(), 1800);
    }
}
