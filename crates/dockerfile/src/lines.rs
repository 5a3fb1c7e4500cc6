//! From text to logical lines: comments dropped, continuation lines joined.
//!
//! Follows BuildKit's scanner: a line whose first non-blank character is `#` is a comment
//! anywhere, even between continuation lines; blank lines inside a continuation are skipped; a
//! line continues when it ends with the escape character (trailing spaces and tabs allowed)
//! that is not itself escaped. A RUN, COPY or ADD line that opens heredocs takes the lines
//! after it as their bodies.

use super::error::ParseError;
use super::heredoc::{self, Heredoc};

/// One instruction's worth of text and the line where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    /// 1-based line number of the first physical line.
    pub start: usize,
    pub text: String,
    /// The heredocs the line opens, with their bodies.
    pub heredocs: Vec<Heredoc>,
}

const BYTE_ORDER_MARK: char = '\u{feff}';

/// Splits `text` into physical lines without their line endings (`\n`, `\r\n`, and any extra
/// trailing `\r`), after removing a UTF-8 byte-order mark.
pub(crate) fn physical_lines(text: &str) -> Vec<&str> {
    let text = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|line| line.trim_end_matches(['\r', '\n']))
        .collect()
}

/// Joins physical lines into logical lines, and reads the bodies of the heredocs they open.
pub(crate) fn logical_lines(lines: &[&str], escape: char) -> Result<Vec<LogicalLine>, ParseError> {
    let mut logical = Vec::new();
    let mut next = 0;
    while next < lines.len() {
        let index = next;
        next += 1;
        let first = lines[index].trim_start();
        let first = if is_comment(first) { "" } else { first };
        let (first, mut ended) = strip_continuation(first, escape);
        if ended && first.is_empty() {
            continue;
        }
        let mut text = first.to_string();
        while !ended && next < lines.len() {
            let line = lines[next];
            next += 1;
            if is_comment(line) || line.trim_start().is_empty() {
                continue;
            }
            let (part, part_ended) = strip_continuation(line, escape);
            text.push_str(part);
            ended = part_ended;
        }
        // Nothing but continuations up to the end of the file: no instruction there.
        if text.trim().is_empty() {
            continue;
        }
        let mut heredocs = Vec::new();
        if heredoc::may_open_heredocs(&text) {
            heredocs =
                heredoc::opened_by(&text).map_err(|message| ParseError::new(index + 1, message))?;
            next += heredoc::read_bodies(&mut heredocs, &lines[next..]).map_err(|name| {
                ParseError::new(
                    index + 1,
                    format!("the heredoc <<{name} is never closed: end it with a line holding only {name}"),
                )
            })?;
        }
        logical.push(LogicalLine {
            start: index + 1,
            text,
            heredocs,
        });
    }
    Ok(logical)
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing line-continuation escape (and the spaces or tabs after it). Returns the
/// text and whether the logical line ends here. An escape preceded by another escape is an
/// escaped escape, not a continuation.
fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(before) if !before.ends_with(escape) => (before, false),
        _ => (line, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logical(text: &str, escape: char) -> Vec<(usize, String)> {
        logical_lines(&physical_lines(text), escape)
            .unwrap()
            .into_iter()
            .map(|line| (line.start, line.text))
            .collect()
    }

    fn owned(pairs: &[(usize, &str)]) -> Vec<(usize, String)> {
        pairs.iter().map(|&(n, s)| (n, s.to_string())).collect()
    }

    #[test]
    fn physical_lines_drop_line_endings_and_bom() {
        assert_eq!(physical_lines("\u{feff}a\r\nb\n"), vec!["a", "b"]);
        assert_eq!(physical_lines("a\n\nb"), vec!["a", "", "b"]);
        assert_eq!(physical_lines("a\r\r\n"), vec!["a"]);
        assert!(physical_lines("").is_empty());
        assert_eq!(physical_lines("\n"), vec![""]);
    }

    #[test]
    fn simple_lines_keep_their_numbers() {
        assert_eq!(
            logical("FROM a\n\nRUN b\n", '\\'),
            owned(&[(1, "FROM a"), (3, "RUN b")])
        );
    }

    #[test]
    fn leading_whitespace_of_the_first_line_is_dropped() {
        assert_eq!(logical("   RUN a", '\\'), owned(&[(1, "RUN a")]));
    }

    #[test]
    fn continuations_join_and_keep_inner_whitespace() {
        assert_eq!(
            logical("RUN a \\\n    b \\\n  c\nRUN d", '\\'),
            owned(&[(1, "RUN a     b   c"), (4, "RUN d")])
        );
    }

    #[test]
    fn trailing_blanks_after_the_escape_are_allowed() {
        assert_eq!(logical("RUN a \\  \t\nb", '\\'), owned(&[(1, "RUN a b")]));
    }

    #[test]
    fn comments_and_blank_lines_inside_a_continuation_are_skipped() {
        let text = "RUN a \\\n# comment\n   # indented comment\n\n   \n  b\nRUN c";
        assert_eq!(
            logical(text, '\\'),
            owned(&[(1, "RUN a   b"), (7, "RUN c")])
        );
    }

    #[test]
    fn comments_are_dropped_anywhere() {
        assert_eq!(
            logical("# one\n  # two\nFROM a # not a comment", '\\'),
            owned(&[(3, "FROM a # not a comment")])
        );
    }

    #[test]
    fn an_escaped_escape_does_not_continue() {
        assert_eq!(
            logical("RUN a \\\\\nRUN b", '\\'),
            owned(&[(1, "RUN a \\\\"), (2, "RUN b")])
        );
    }

    #[test]
    fn backtick_escape_continues_and_backslash_does_not() {
        assert_eq!(
            logical("RUN dir C:\\ `\n  /b\nRUN c\\", '`'),
            owned(&[(1, "RUN dir C:\\   /b"), (3, "RUN c\\")])
        );
    }

    #[test]
    fn continuation_at_end_of_file_keeps_what_was_read() {
        assert_eq!(logical("RUN a \\", '\\'), owned(&[(1, "RUN a ")]));
        assert_eq!(logical("\\\n", '\\'), owned(&[]));
    }

    #[test]
    fn a_lone_escape_starts_a_continuation() {
        assert_eq!(logical("\\\nRUN a", '\\'), owned(&[(1, "RUN a")]));
    }
}
