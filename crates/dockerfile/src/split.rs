//! Splitting a logical line into keyword, `--flags` and the argument text (BuildKit's
//! `splitCommand` and `extractBuilderFlags`).

/// A logical line taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitLine {
    /// The instruction keyword, lower-cased.
    pub keyword: String,
    /// Leading `--name[=value]` words, quotes and backslash escapes removed.
    pub flags: Vec<String>,
    /// The rest of the line, trimmed, raw.
    pub args: String,
}

/// The separator between keyword and arguments: BuildKit's `[\t\v\f\r ]+`.
pub(crate) fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

pub(crate) fn split_line(line: &str) -> SplitLine {
    let line = line.trim();
    let (keyword, rest) = match line.find(is_separator) {
        Some(at) => {
            let (keyword, rest) = line.split_at(at);
            (keyword, rest.trim_start_matches(is_separator))
        }
        None => (line, ""),
    };
    let (args, flags) = extract_flags(rest);
    SplitLine {
        keyword: keyword.to_lowercase(),
        flags,
        args: args.trim().to_string(),
    }
}

#[derive(PartialEq)]
enum Phase {
    BetweenWords,
    InWord,
    InQuote(char),
}

/// Takes the leading words that start with `--` off `rest`; a bare `--` ends the flags and is
/// dropped. Returns the remaining text and the flags. Inside flags, quotes group and vanish and
/// a backslash (always backslash, whatever the escape directive says) escapes the next
/// character, as in BuildKit.
fn extract_flags(rest: &str) -> (&str, Vec<String>) {
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut flags = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::BetweenWords;
    let mut index = 0;
    loop {
        let Some(&(at, c)) = chars.get(index) else {
            if phase != Phase::BetweenWords && word != "--" && (blank_ok || !word.is_empty()) {
                flags.push(word);
            }
            return ("", flags);
        };
        index += 1;
        match phase {
            Phase::BetweenWords => {
                if c.is_whitespace() {
                    continue;
                }
                let next_is_dash = chars.get(index).is_some_and(|&(_, next)| next == '-');
                if c != '-' || !next_is_dash {
                    return (rest.get(at..).unwrap_or(""), flags);
                }
                phase = Phase::InWord;
                word.push(c);
            }
            Phase::InWord => {
                if c.is_whitespace() {
                    if word == "--" {
                        return (rest.get(at..).unwrap_or(""), flags);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    phase = Phase::BetweenWords;
                } else if c == '\'' || c == '"' {
                    blank_ok = true;
                    phase = Phase::InQuote(c);
                } else if c == '\\' {
                    if let Some(&(_, escaped)) = chars.get(index) {
                        word.push(escaped);
                        index += 1;
                    }
                } else {
                    word.push(c);
                }
            }
            Phase::InQuote(quote) => {
                if c == quote {
                    phase = Phase::InWord;
                } else if c == '\\' {
                    match chars.get(index) {
                        Some(&(_, escaped)) => {
                            word.push(escaped);
                            index += 1;
                        }
                        None => phase = Phase::InWord,
                    }
                } else {
                    word.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> (String, Vec<String>, String) {
        let s = split_line(line);
        (s.keyword, s.flags, s.args)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keyword_is_lower_cased_and_args_trimmed() {
        assert_eq!(
            split("  CoPy   a b  "),
            ("copy".into(), vec![], "a b".into())
        );
        assert_eq!(split("RUN"), ("run".into(), vec![], "".into()));
        assert_eq!(split("RUN\tx"), ("run".into(), vec![], "x".into()));
    }

    #[test]
    fn flags_come_before_arguments() {
        assert_eq!(
            split("COPY --from=build --chown=1:1 --link a b"),
            (
                "copy".into(),
                strings(&["--from=build", "--chown=1:1", "--link"]),
                "a b".into()
            )
        );
    }

    #[test]
    fn flags_stop_at_the_first_plain_word() {
        assert_eq!(
            split("RUN echo --not-a-flag"),
            ("run".into(), vec![], "echo --not-a-flag".into())
        );
        assert_eq!(split("RUN -x --y"), ("run".into(), vec![], "-x --y".into()));
    }

    #[test]
    fn double_dash_ends_flags() {
        assert_eq!(
            split("COPY --link -- --odd /dst"),
            ("copy".into(), strings(&["--link"]), "--odd /dst".into())
        );
        assert_eq!(
            split("COPY --link --"),
            ("copy".into(), strings(&["--link"]), "".into())
        );
    }

    #[test]
    fn quotes_and_backslashes_in_flags_are_removed() {
        assert_eq!(
            split(r#"COPY --chown="a b" --from='x' --chmod=7\55 s d"#).1,
            strings(&["--chown=a b", "--from=x", "--chmod=755"])
        );
        assert_eq!(split(r#"COPY --x="" a"#).1, strings(&["--x="]));
    }

    #[test]
    fn flags_only_line_has_no_arguments() {
        assert_eq!(
            split("COPY --link"),
            ("copy".into(), strings(&["--link"]), "".into())
        );
    }

    #[test]
    fn unicode_is_kept_whole() {
        assert_eq!(
            split("COPY --chown=jérôme ünï /dé"),
            (
                "copy".into(),
                strings(&["--chown=jérôme"]),
                "ünï /dé".into()
            )
        );
    }
}
