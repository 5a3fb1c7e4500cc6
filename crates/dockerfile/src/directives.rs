//! Parser directives: `# escape=` and `# syntax=` comment lines at the very top of the file.
//!
//! As in BuildKit, directives are read only until the first line that is not one (an
//! instruction, a blank line, an ordinary comment, or a comment naming an unknown directive);
//! after that, a line like `# escape=x` is just a comment.

use super::ParseError;

/// The directives BuildKit recognises. Only `escape` changes parsing; `syntax` (the frontend
/// image) and `check` (lint configuration) are accepted and ignored.
const KNOWN_DIRECTIVES: [&str; 3] = ["escape", "syntax", "check"];

pub(crate) const DEFAULT_ESCAPE: char = '\\';

/// The `# syntax=` directive at the top of `lines`, if any: BuildKit would fetch that frontend;
/// dockless reads the Dockerfile itself.
pub(crate) fn syntax(lines: &[&str]) -> Option<String> {
    lines
        .iter()
        .map_while(|line| directive(line))
        .take_while(|(name, _)| KNOWN_DIRECTIVES.contains(&name.as_str()))
        .find(|(name, _)| name == "syntax")
        .map(|(_, value)| value.to_string())
}

/// Reads the directives at the top of `lines` (physical lines, newline already removed) and
/// returns the escape character they select.
pub(crate) fn escape_character(lines: &[&str]) -> Result<char, ParseError> {
    let mut escape = DEFAULT_ESCAPE;
    let mut seen: Vec<String> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let line_number = index + 1;
        let Some((name, value)) = directive(line) else {
            break;
        };
        if !KNOWN_DIRECTIVES.contains(&name.as_str()) {
            break;
        }
        if seen.contains(&name) {
            return Err(ParseError::new(
                line_number,
                format!("only one {name} parser directive can be used; remove the repeated one"),
            ));
        }
        if name == "escape" {
            escape = match value {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(ParseError::new(
                        line_number,
                        format!("invalid escape character {other:?}: expected `\\` or `` ` ``"),
                    ));
                }
            };
        }
        seen.push(name);
    }
    Ok(escape)
}

/// Splits `# name = value` into the lower-cased name and the value, or `None` if the line does
/// not have that shape (BuildKit's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.trim_start().strip_prefix('#')?.trim_start();
    let name_length = rest
        .char_indices()
        .find(|&(_, c)| !c.is_ascii_alphanumeric())
        .map_or(rest.len(), |(at, _)| at);
    let name = rest.get(..name_length)?;
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let after_name = rest.get(name_length..)?.trim_start_matches(is_regex_space);
    let value = after_name
        .strip_prefix('=')?
        .trim_start_matches(is_regex_space)
        .trim_end_matches(is_regex_space);
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value))
}

/// Go's regexp `\s`: ASCII space, tab, newline, form feed and carriage return (not `\v`).
fn is_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape_of(text: &str) -> Result<char, ParseError> {
        let lines: Vec<&str> = text.lines().collect();
        escape_character(&lines)
    }

    #[test]
    fn default_is_backslash() {
        assert_eq!(escape_of("FROM x"), Ok('\\'));
        assert_eq!(escape_of(""), Ok('\\'));
    }

    #[test]
    fn backtick_and_backslash_are_accepted() {
        assert_eq!(escape_of("# escape=`\nFROM x"), Ok('`'));
        assert_eq!(escape_of("# escape=\\\nFROM x"), Ok('\\'));
    }

    #[test]
    fn spacing_and_case_are_flexible() {
        assert_eq!(escape_of("#escape=`"), Ok('`'));
        assert_eq!(escape_of("  #   ESCAPE =  `   "), Ok('`'));
        assert_eq!(escape_of("# Escape\t=\t`"), Ok('`'));
    }

    #[test]
    fn syntax_and_check_are_accepted_before_escape() {
        assert_eq!(
            escape_of("# syntax=docker/dockerfile:1\n# check=skip=all\n# escape=`"),
            Ok('`')
        );
    }

    #[test]
    fn directives_stop_at_the_first_other_line() {
        assert_eq!(escape_of("FROM x\n# escape=`"), Ok('\\'));
        assert_eq!(escape_of("\n# escape=`"), Ok('\\'));
        assert_eq!(escape_of("# a comment\n# escape=`"), Ok('\\'));
        assert_eq!(escape_of("# unknown=1\n# escape=`"), Ok('\\'));
        assert_eq!(escape_of("#\n# escape=`"), Ok('\\'));
    }

    #[test]
    fn invalid_escape_is_an_error_on_its_line() {
        let error = escape_of("# syntax=x\n# escape=x").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("\"x\""), "{error}");
    }

    #[test]
    fn repeated_directive_is_an_error() {
        let error = escape_of("# escape=`\n# escape=\\").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("only one escape"), "{error}");
        let error = escape_of("# syntax=a\n# SYNTAX=b").unwrap_err();
        assert!(error.message.contains("only one syntax"), "{error}");
    }

    #[test]
    fn a_directive_needs_a_value_and_a_proper_name() {
        assert_eq!(directive("# escape="), None);
        assert_eq!(directive("# 1escape=`"), None);
        assert_eq!(directive("# esc-ape=`"), None);
        assert_eq!(directive("escape=`"), None);
        assert_eq!(
            directive("# syntax = a b  "),
            Some(("syntax".to_string(), "a b"))
        );
    }
}
