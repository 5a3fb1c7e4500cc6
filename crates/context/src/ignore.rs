//! `.dockerignore` with Docker's semantics (moby's `ignorefile.ReadAll` and `patternmatcher`, and the
//! walk rules BuildKit's context sender applies), not `.gitignore`'s.
//!
//! Reading: a UTF-8 byte-order mark is dropped; a line whose very first character is `#` is a comment
//! (` # x` is a pattern); surrounding whitespace is trimmed; `!` starts an exception; each pattern is
//! `filepath.Clean`ed and a leading `/` removed, so patterns are always anchored at the context root.
//!
//! Matching: patterns are tried in order and the last one that matches decides; `*` and `?` stay
//! within one path element, `**` spans any number of them; a pattern that matches a directory
//! matches everything below it. The verdict for a path is computed the way Docker computes it while
//! walking: level by level from the root, each pattern remembering whether it matched the parent
//! (moby's `MatchesUsingParentResults`). This differs from the simpler `MatchesOrParentMatches` only
//! for unusual orders such as `a/b` followed by `!a`, where Docker still excludes `a/b`.

mod clean;
mod go_regexp;
mod matcher;

use clean::go_clean;
use matcher::CompiledPattern;

use crate::pattern::path_match;

/// A `.dockerignore` file that could not be read as Docker would read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(
        ".dockerignore line {line}: `{pattern}` is an exception with nothing after the `!`; \
         write the path to keep (`!path/to/keep`) or delete the line"
    )]
    EmptyException { line: usize, pattern: String },
    #[error(
        ".dockerignore line {line}: `{pattern}` is not a valid pattern ({reason}); fix or delete the line"
    )]
    BadPattern {
        line: usize,
        pattern: String,
        reason: String,
    },
}

/// The parsed rules of a `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// An exception (`!pattern`): a match re-includes the path.
    exception: bool,
    pattern: CompiledPattern,
}

impl IgnoreRules {
    /// Reads the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (index, line) in go_lines(text).enumerate() {
            let line_number = index + 1;
            let Some(pattern) = read_line(line) else {
                continue;
            };
            let rule = compile_rule(&pattern).map_err(|reason| match reason {
                RuleError::EmptyException => IgnoreError::EmptyException {
                    line: line_number,
                    pattern: line.trim().to_owned(),
                },
                RuleError::Bad(reason) => IgnoreError::BadPattern {
                    line: line_number,
                    pattern: line.trim().to_owned(),
                    reason,
                },
            })?;
            rules.push(rule);
        }
        Ok(IgnoreRules { rules })
    }

    /// Rules that exclude nothing (no `.dockerignore`).
    pub fn empty() -> Self {
        IgnoreRules::default()
    }

    /// Whether the path (relative to the context root, `/`-separated, no leading `/`) is left out of
    /// the context. The root itself is never excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let cleaned = go_clean(rel_path);
        let path = cleaned.trim_start_matches('/');
        if path.is_empty() || path == "." || self.rules.is_empty() {
            return false;
        }
        // Evaluate every ancestor first, carrying which patterns matched the parent, exactly as
        // Docker does while it walks down to this path.
        let mut parent_matches: Option<Vec<bool>> = None;
        let mut excluded = false;
        let ends = path
            .match_indices('/')
            .map(|(i, _)| i)
            .chain(std::iter::once(path.len()));
        for end in ends {
            let prefix = path.get(..end).unwrap_or(path);
            let (verdict, matches) = self.match_level(prefix, parent_matches.as_deref());
            excluded = verdict;
            parent_matches = Some(matches);
        }
        excluded
    }

    /// Whether a directory that [`is_excluded`](Self::is_excluded) must still be walked because an
    /// exception could re-include something below it. When this is false the whole subtree can be
    /// skipped. Same rule as BuildKit: with no exceptions, never; if any exception has wildcards,
    /// always; otherwise only when some exception names a path inside this directory. A directory
    /// that is walked this way is itself sent only if something below it is re-included.
    pub fn must_walk_excluded_dir(&self, rel_dir: &str) -> bool {
        let exceptions: Vec<&str> = self
            .rules
            .iter()
            .filter(|rule| rule.exception)
            .map(|rule| without_trailing_glob(rule.pattern.cleaned()))
            .collect();
        if exceptions.is_empty() {
            return false;
        }
        let has_wildcards = |p: &&str| p.contains(['*', '[', ']', '?', '^', '\\']);
        if exceptions.iter().any(has_wildcards) {
            return true;
        }
        let cleaned = go_clean(rel_dir);
        let dir_slash = format!("{}/", cleaned.trim_start_matches('/'));
        exceptions
            .iter()
            .any(|exception| format!("{exception}/").starts_with(&dir_slash))
    }

    /// One level of moby's `MatchesUsingParentResults`: the verdict for `path` and, per pattern,
    /// whether it matched `path` or an ancestor (for the next level down).
    fn match_level(&self, path: &str, parent_matches: Option<&[bool]>) -> (bool, Vec<bool>) {
        let mut excluded = false;
        let mut matches = vec![false; self.rules.len()];
        for (index, rule) in self.rules.iter().enumerate() {
            let mut matched = parent_matches
                .and_then(|parent| parent.get(index).copied())
                .unwrap_or(false);
            if !matched {
                // An exclusion cannot change a path not yet excluded, nor an exception one that
                // is not excluded: Docker does not even evaluate it (nor remember it for children).
                if rule.exception != excluded {
                    continue;
                }
                matched = rule.pattern.matches(path);
            }
            if let Some(slot) = matches.get_mut(index) {
                *slot = matched;
            }
            if matched {
                excluded = !rule.exception;
            }
        }
        (excluded, matches)
    }
}

/// Go's `bufio.ScanLines`: lines end at `\n`, one `\r` before it is dropped, and a last line
/// without a newline still counts.
fn go_lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = body.split('\n');
    if text.is_empty() {
        // No lines at all, as in Go (the loop below would yield one empty line).
        lines.next();
    }
    lines.map(|line| line.strip_suffix('\r').unwrap_or(line))
}

/// `ignorefile.ReadAll` for one line: `None` for comments and blank lines, otherwise the pattern
/// as Docker stores it (trimmed, cleaned, leading `/` removed, `!` kept in front).
fn read_line(line: &str) -> Option<String> {
    // Only a `#` in the very first column starts a comment.
    if line.starts_with('#') {
        return None;
    }
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return None;
    }
    let (exception, body) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut pattern = String::new();
    if !body.is_empty() {
        pattern = go_clean(body);
        if pattern.len() > 1 && pattern.starts_with('/') {
            pattern.remove(0);
        }
    }
    Some(if exception {
        format!("!{pattern}")
    } else {
        pattern
    })
}

enum RuleError {
    EmptyException,
    Bad(String),
}

/// `patternmatcher.New` for one pattern: clean again, split off `!`, check the syntax with
/// `filepath.Match`, then compile.
fn compile_rule(pattern: &str) -> Result<Rule, RuleError> {
    let cleaned = go_clean(pattern.trim());
    let (exception, body) = match cleaned.strip_prefix('!') {
        Some("") => return Err(RuleError::EmptyException),
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    path_match(body, ".").map_err(|error| RuleError::Bad(error.to_string()))?;
    let pattern = CompiledPattern::compile(body).map_err(|reason| {
        RuleError::Bad(format!(
            "as a Docker pattern it is an invalid regexp: {reason}"
        ))
    })?;
    Ok(Rule { exception, pattern })
}

/// fsutil's `patternWithoutTrailingGlob`: `a/b/**` and `a/b/*` name the directory `a/b`.
fn without_trailing_glob(pattern: &str) -> &str {
    let pattern = pattern.strip_suffix("/**").unwrap_or(pattern);
    pattern.strip_suffix("/*").unwrap_or(pattern)
}

#[cfg(test)]
mod tests;
