//! Docker's word processing: quotes, escapes and `$VAR` expansion (BuildKit's `shell/lex.go`,
//! `ProcessWord` and `ProcessWords`).
//!
//! Single quotes keep everything literal; double quotes expand `$` and let the escape
//! character escape `"`, `$` and itself; outside quotes the escape character makes the next
//! character literal. Supported references: `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`,
//! `${VAR:+word}`, `${VAR+word}`, `${VAR:?message}`, `${VAR?message}`, `${VAR#pattern}`,
//! `${VAR##pattern}`, `${VAR%pattern}`, `${VAR%%pattern}`, `${VAR/pattern/replacement}` and
//! `${VAR//pattern/replacement}`. Unset variables expand to nothing.

use super::ExpandError;
use super::pattern;

/// Options for the uses other than expansion (heredoc detection).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LexOptions {
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
    /// Quotes are ordinary characters (BuildKit's `SkipProcessQuotes`, for heredoc bodies).
    pub skip_quotes: bool,
}

/// The processed text, and the same split into words on unquoted whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Processed {
    pub word: String,
    pub words: Vec<String>,
}

/// Deeper `${a:-${b:-...}}` nesting than this is refused rather than risking the stack.
const MAX_NESTING: usize = 100;

const MISSING_BRACE: &str = "missing '}' to close '${'";

/// Expands one word the way Docker does for ENV, COPY, WORKDIR and the other instructions that
/// take variables (BuildKit's `ProcessWord`). `vars` returns a variable's value, or `None` if
/// it is not set (which differs from set-but-empty for `${VAR-w}`, `${VAR+w}`, `${VAR?m}`).
pub fn expand_word(
    word: &str,
    escape: char,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    process(word, escape, vars, LexOptions::default())
        .map(|processed| processed.word)
        .map_err(|message| ExpandError {
            word: word.to_string(),
            message,
        })
}

/// Expands like [`expand_word`], then splits the result on unquoted whitespace (BuildKit's
/// `ProcessWords`, which EXPOSE uses so that `EXPOSE $PORTS` can name several ports).
pub fn expand_words(
    word: &str,
    escape: char,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    process(word, escape, vars, LexOptions::default())
        .map(|processed| processed.words)
        .map_err(|message| ExpandError {
            word: word.to_string(),
            message,
        })
}

/// Expands the variables of a heredoc body that COPY or ADD writes (an unquoted heredoc
/// name), as BuildKit does: quotes are ordinary characters, escapes still escape.
pub(crate) fn expand_heredoc(
    body: &str,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let options = LexOptions {
        skip_quotes: true,
        ..LexOptions::default()
    };
    process(body, '\\', vars, options)
        .map(|processed| processed.word)
        .map_err(|message| ExpandError {
            word: body.to_string(),
            message,
        })
}

pub(crate) fn process(
    input: &str,
    escape: char,
    vars: &dyn Fn(&str) -> Option<String>,
    options: LexOptions,
) -> Result<Processed, String> {
    let mut lexer = Lexer {
        chars: input.chars().collect(),
        position: 0,
        escape,
        vars,
        options,
        raw_escapes: options.raw_escapes,
        depth: 0,
    };
    let (word, words) = lexer.process_until(None)?;
    Ok(Processed { word, words })
}

struct Lexer<'a> {
    chars: Vec<char>,
    position: usize,
    escape: char,
    vars: &'a dyn Fn(&str) -> Option<String>,
    options: LexOptions,
    /// Whether escapes are kept right now: patterns keep them so `\*` reaches the matcher.
    raw_escapes: bool,
    depth: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.position += 1;
        }
        c
    }

    /// Processes up to `stop` (consumed) or the end of the input.
    fn process_until(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = WordSplitter::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.position += 1;
                return Ok((result, words.finish()));
            }
            match c {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.add_text(&value);
                }
                '\'' if !self.options.skip_quotes => {
                    let value = self.single_quoted()?;
                    result.push_str(&value);
                    words.add_quoted(&value);
                }
                '"' if !self.options.skip_quotes => {
                    let value = self.double_quoted()?;
                    result.push_str(&value);
                    words.add_quoted(&value);
                }
                _ => {
                    self.position += 1;
                    let mut literal = c;
                    if c == self.escape {
                        if self.raw_escapes {
                            words.add_quoted_char(c);
                            result.push(c);
                        }
                        // An escape at the very end is dropped.
                        let Some(escaped) = self.next() else {
                            break;
                        };
                        words.add_quoted_char(escaped);
                        literal = escaped;
                    } else {
                        words.add_char(c);
                    }
                    result.push(literal);
                }
            }
        }
        match stop {
            Some(stop) => Err(format!("missing closing '{stop}'")),
            None => Ok((result, words.finish())),
        }
    }

    /// A nested `process_until` for the word inside `${...}`, with escapes kept or not.
    fn nested_until(
        &mut self,
        stop: char,
        raw_escapes: bool,
        at_end: &str,
    ) -> Result<String, String> {
        if self.depth >= MAX_NESTING {
            return Err(format!(
                "variable references are nested more than {MAX_NESTING} levels deep"
            ));
        }
        self.depth += 1;
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.process_until(Some(stop));
        self.raw_escapes = saved;
        self.depth -= 1;
        match result {
            Ok((word, _)) => Ok(word),
            // Running out of input is reported as the unclosed `${`, whatever ran out inside.
            Err(_) if self.peek().is_none() => Err(at_end.to_string()),
            Err(error) => Err(error),
        }
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        self.position += 1;
        let mut out = String::new();
        if self.options.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next() {
                None => return Err("unterminated single quote: add the closing '".to_string()),
                Some('\'') => {
                    if self.options.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        self.position += 1;
        let mut out = String::new();
        if self.options.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => return Err("unterminated double quote: add the closing \"".to_string()),
                Some('"') => {
                    self.position += 1;
                    if self.options.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(c) => {
                    self.position += 1;
                    let mut literal = c;
                    if c == self.escape {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            // Left for the loop to report the missing closing quote.
                            None => continue,
                            // Only these can be escaped inside double quotes; before anything
                            // else the escape character is literal.
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.position += 1;
                                literal = next;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(literal);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.vars)(name)
    }

    /// Processes a `$` reference; the input is at the `$`.
    fn dollar(&mut self) -> Result<String, String> {
        self.position += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.position += 1;
        match self.peek() {
            None => return Err(MISSING_BRACE.to_string()),
            Some('{' | '}' | ':') => {
                return Err(
                    "bad substitution: '${' must be followed by a variable name".to_string()
                );
            }
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            None => Err(MISSING_BRACE.to_string()),
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(operator @ (':' | '+' | '-' | '?' | '#' | '%')) => self.modifier(&name, operator),
            Some('/') => self.substitution(&name),
            Some(other) => Err(unsupported(&name, &other.to_string())),
        }
    }

    /// `${name:-word}` and the other `${name<modifier>word}` forms; the input is after the
    /// first modifier character.
    fn modifier(&mut self, name: &str, operator: char) -> Result<String, String> {
        let null_is_unset = operator == ':';
        let modifier = if null_is_unset {
            self.next()
        } else {
            Some(operator)
        };
        let shown = match (null_is_unset, modifier) {
            (true, Some(m)) => format!(":{m}"),
            (true, None) => ":".to_string(),
            (false, _) => operator.to_string(),
        };
        let pattern_modifier = matches!(modifier, Some('#' | '%'));
        if null_is_unset && pattern_modifier {
            return Err(unsupported(name, &shown));
        }
        let word = self.nested_until('}', pattern_modifier, MISSING_BRACE)?;
        let value = self.lookup(name);
        if self.options.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{shown}{word}}}"));
        }
        let unset_or_null = match &value {
            None => true,
            Some(value) => null_is_unset && value.is_empty(),
        };
        match modifier {
            Some('-') if unset_or_null => Ok(word),
            Some('-') => Ok(value.unwrap_or_default()),
            Some('+') if unset_or_null => Ok(String::new()),
            Some('+') => Ok(word),
            Some('?') if value.is_none() => {
                Err(required(name, &word, "is not allowed to be unset"))
            }
            Some('?') if unset_or_null => Err(required(name, &word, "is not allowed to be empty")),
            Some('?') => Ok(value.unwrap_or_default()),
            Some(side @ ('#' | '%')) => {
                let (longest, pattern) = match word.strip_prefix(side) {
                    Some(pattern) => (true, pattern),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let trimmed = if side == '%' {
                    pattern::trim_suffix(pattern, &value, longest)
                } else {
                    pattern::trim_prefix(pattern, &value, longest)
                };
                trimmed.map_err(|error| {
                    format!("invalid pattern {pattern:?} in substitution: {error}")
                })
            }
            _ => Err(unsupported(name, &shown)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`; the input is after the
    /// first `/`.
    fn substitution(&mut self, name: &str) -> Result<String, String> {
        let all = self.peek() == Some('/');
        if all {
            self.position += 1;
        }
        let pattern = self.nested_until(
            '/',
            true,
            "missing '/' between pattern and replacement in '${name/pattern/replacement}'",
        )?;
        let replacement = self.nested_until('}', true, MISSING_BRACE)?;
        let value = self.lookup(name);
        if self.options.skip_unset && value.is_none() {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        pattern::replace(&pattern, &value.unwrap_or_default(), &replacement, all)
            .map_err(|error| format!("invalid pattern {pattern:?} in substitution: {error}"))
    }

    /// A variable name: letters, digits and `_`; or a run of digits; or one special parameter
    /// character such as `@` or `#`.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(digit) = self.peek().filter(|&d| is_digit(d)) {
                    name.push(digit);
                    self.position += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_parameter(c) {
                self.position += 1;
                return c.to_string();
            }
            if !(c.is_alphabetic() || is_digit(c) || c == '_') {
                break;
            }
            name.push(c);
            self.position += 1;
        }
        name
    }
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// POSIX special parameters (`0` is caught as a digit first).
fn is_special_parameter(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

fn unsupported(name: &str, modifier: &str) -> String {
    format!(
        "unsupported modifier '{modifier}' in '${{{name}{modifier}...}}': expected one of \
         :- - :+ + :? ? # ## % %% / //"
    )
}

/// The error of `${name?message}`: BuildKit's `name: message`.
fn required(name: &str, message: &str, default: &str) -> String {
    let message = if message.is_empty() { default } else { message };
    format!("{name}: {message}")
}

/// Splits processed text into words on whitespace that was not quoted or escaped.
#[derive(Default)]
struct WordSplitter {
    current: String,
    words: Vec<String>,
    in_word: bool,
}

impl WordSplitter {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.current.is_empty() {
                self.words.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.add_quoted_char(c);
        }
    }

    fn add_quoted_char(&mut self, c: char) {
        self.current.push(c);
        self.in_word = true;
    }

    /// Text from a variable: its whitespace splits words.
    fn add_text(&mut self, text: &str) {
        text.chars().for_each(|c| self.add_char(c));
    }

    /// Text from quotes: kept whole.
    fn add_quoted(&mut self, text: &str) {
        self.current.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.words.push(self.current);
        }
        self.words
    }
}

#[cfg(test)]
mod tests;
