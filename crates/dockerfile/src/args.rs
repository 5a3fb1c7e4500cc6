//! Reading the argument text of an instruction: JSON arrays, whitespace-separated words, and
//! quote-aware words for ENV, LABEL and ARG. Nothing here removes quotes or expands variables;
//! that happens later, per instruction, in [`super::lex`].

use super::split::is_separator;

/// How an argument text that may be a JSON array turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonArgs {
    /// A JSON array of strings.
    Strings(Vec<String>),
    /// Starts with `[` but is not valid JSON; BuildKit then reads it the non-JSON way.
    Malformed(String),
    /// Does not start with `[`.
    NotJson,
}

/// The error for a valid JSON array holding something other than strings, which BuildKit
/// rejects rather than reading as text.
pub(crate) const NOT_STRINGS: &str =
    "when using JSON array syntax, arrays must contain only strings (e.g. [\"a\", \"b\"])";

/// Reads `args` as a JSON array of strings if it starts with `[`.
pub(crate) fn json_array(args: &str) -> Result<JsonArgs, &'static str> {
    let text = args.trim_start();
    if !text.starts_with('[') {
        return Ok(JsonArgs::NotJson);
    }
    let values: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(values) => values,
        Err(error) => return Ok(JsonArgs::Malformed(error.to_string())),
    };
    values
        .into_iter()
        .map(|value| match value {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NOT_STRINGS),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(JsonArgs::Strings)
}

/// Splits on runs of spaces and tabs (BuildKit's `[\t\v\f\r ]+`), keeping quotes as text.
pub(crate) fn whitespace_words(args: &str) -> Vec<String> {
    args.split(is_separator)
        .filter(|word| !word.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits into words on unquoted whitespace, keeping quotes and escapes in the words (they
/// are removed at expansion). An escape inside single quotes is literal; an escape at the very
/// end is dropped. BuildKit's `parseWords`.
pub(crate) fn quoted_words(args: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = args.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut index = 0;
    while let Some(&c) = chars.get(index) {
        index += 1;
        let is_last = index == chars.len();
        if let Some(open) = quote {
            if c == open {
                quote = None;
            } else if c == escape && open != '\'' {
                if is_last {
                    quote = None;
                    continue;
                }
                word.push(c);
                if let Some(&escaped) = chars.get(index) {
                    word.push(escaped);
                    index += 1;
                }
                continue;
            }
            word.push(c);
            continue;
        }
        if !in_word {
            if c.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        if c.is_whitespace() {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            blank_ok = false;
            in_word = false;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            blank_ok = true;
        } else if c == escape {
            if is_last {
                continue;
            }
            word.push(c);
            if let Some(&escaped) = chars.get(index) {
                word.push(escaped);
                index += 1;
            }
            continue;
        }
        word.push(c);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn json_arrays_of_strings() {
        assert_eq!(
            json_array(r#"  ["a", "b c", "é\u00e9"] "#),
            Ok(JsonArgs::Strings(strings(&["a", "b c", "éé"])))
        );
        assert_eq!(json_array("[]"), Ok(JsonArgs::Strings(vec![])));
    }

    #[test]
    fn not_json_and_malformed_json() {
        assert_eq!(json_array("echo [a]"), Ok(JsonArgs::NotJson));
        assert!(matches!(json_array("[a, b]"), Ok(JsonArgs::Malformed(_))));
        assert!(matches!(
            json_array(r#"["a"] trailing"#),
            Ok(JsonArgs::Malformed(_))
        ));
        assert!(matches!(json_array(r#"['a']"#), Ok(JsonArgs::Malformed(_))));
    }

    #[test]
    fn json_with_other_values_is_an_error() {
        assert_eq!(json_array(r#"["a", 1]"#), Err(NOT_STRINGS));
        assert_eq!(json_array(r#"[null]"#), Err(NOT_STRINGS));
        assert_eq!(json_array(r#"[["a"]]"#), Err(NOT_STRINGS));
    }

    #[test]
    fn whitespace_words_keep_quotes() {
        assert_eq!(
            whitespace_words("a  \"b c\"\t d"),
            strings(&["a", "\"b", "c\"", "d"])
        );
        assert!(whitespace_words("").is_empty());
    }

    #[test]
    fn quoted_words_group_but_keep_quotes() {
        assert_eq!(
            quoted_words(r#"A="x y" B='p q' C=z"#, '\\'),
            strings(&[r#"A="x y""#, "B='p q'", "C=z"])
        );
    }

    #[test]
    fn quoted_words_keep_escapes() {
        assert_eq!(
            quoted_words(r#"A=a\ b B="q\"r""#, '\\'),
            strings(&[r#"A=a\ b"#, r#"B="q\"r""#])
        );
        assert_eq!(quoted_words(r"A='x\' B", '\\'), strings(&[r"A='x\'", "B"]));
    }

    #[test]
    fn quoted_words_drop_a_final_escape() {
        assert_eq!(quoted_words("A=b\\", '\\'), strings(&["A=b"]));
        assert_eq!(quoted_words("A=\"b\\", '\\'), strings(&["A=\"b"]));
    }

    #[test]
    fn quoted_words_use_the_escape_directive() {
        assert_eq!(
            quoted_words(r"A=C:\dir B=x` y", '`'),
            strings(&[r"A=C:\dir", "B=x` y"])
        );
    }

    #[test]
    fn empty_quotes_make_a_word() {
        assert_eq!(
            quoted_words(r#"A="" """#, '\\'),
            strings(&[r#"A="""#, r#""""#])
        );
        assert!(quoted_words("   ", '\\').is_empty());
    }

    #[test]
    fn unicode_words() {
        assert_eq!(
            quoted_words("NAME=\"héllo wörld\" 日本=語", '\\'),
            strings(&["NAME=\"héllo wörld\"", "日本=語"])
        );
    }
}
