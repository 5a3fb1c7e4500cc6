//! Errors of parsing and of variable expansion.

/// A Dockerfile that cannot be parsed. Displays as `line N: message`; the caller adds the file
/// name in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The 1-based line where the faulty instruction (or directive) starts.
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// A word whose variables cannot be expanded: a syntax error such as an unclosed quote or
/// `${`, an unsupported modifier, or a `${VAR?message}` whose variable is unset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot expand {word:?}: {message}")]
pub struct ExpandError {
    /// The word as written.
    pub word: String,
    /// What is wrong; names the variable for `${VAR?}` errors.
    pub message: String,
}
