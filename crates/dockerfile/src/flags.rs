//! Checking an instruction's `--flags` against the ones it accepts (BuildKit's `BFlags`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--name`, `--name=true` or `--name=false`.
    Bool,
    /// `--name=value`, at most once.
    Value,
    /// `--name=value`, any number of times (e.g. `RUN --mount`).
    Repeated,
}

/// Flags that passed the check, in the order given. Bool values are `"true"` or `"false"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    pub given: Vec<(String, String)>,
}

impl Flags {
    /// The value of a single-valued flag, if given.
    pub fn value(&self, name: &str) -> Option<String> {
        self.given
            .iter()
            .find(|(given, _)| given == name)
            .map(|(_, value)| value.clone())
    }

    /// Every value of a repeated flag, in order.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.given
            .iter()
            .filter(|(given, _)| given == name)
            .map(|(_, value)| value.clone())
            .collect()
    }

    /// The value of a bool flag, if given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.value(name).map(|value| value == "true")
    }
}

/// Checks `given` (words such as `--from=x`) for `keyword` (upper case) against `accepted`.
/// Returns a message naming the flag and the instruction on error.
pub(crate) fn check_flags(
    keyword: &str,
    given: &[String],
    accepted: &[(&str, FlagKind)],
) -> Result<Flags, String> {
    let mut flags = Flags::default();
    for word in given {
        let Some(flag) = word.strip_prefix("--") else {
            return Err(format!("{keyword} flag {word:?} must start with --"));
        };
        if flag.is_empty() {
            break;
        }
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        };
        let Some(&(_, kind)) = accepted.iter().find(|(known, _)| *known == name) else {
            return Err(unknown_flag(keyword, name, accepted));
        };
        if kind != FlagKind::Repeated && flags.given.iter().any(|(seen, _)| seen == name) {
            return Err(format!(
                "flag --{name} is given more than once for {keyword}; give it once"
            ));
        }
        let value = match (kind, value) {
            (FlagKind::Bool, None) => "true".to_string(),
            (FlagKind::Bool, Some(value)) => match value.to_lowercase().as_str() {
                "true" => "true".to_string(),
                "false" => "false".to_string(),
                _ => {
                    return Err(format!(
                        "flag --{name} of {keyword} expects true or false, not {value:?}"
                    ));
                }
            },
            (_, Some(value)) => value.to_string(),
            (_, None) => {
                return Err(format!(
                    "flag --{name} of {keyword} needs a value: --{name}=<value>"
                ));
            }
        };
        flags.given.push((name.to_string(), value));
    }
    Ok(flags)
}

fn unknown_flag(keyword: &str, name: &str, accepted: &[(&str, FlagKind)]) -> String {
    if accepted.is_empty() {
        return format!("unknown flag --{name}: {keyword} takes no flags");
    }
    let names: Vec<String> = accepted.iter().map(|(n, _)| format!("--{n}")).collect();
    format!(
        "unknown flag --{name} for {keyword}; {keyword} accepts {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &[(&str, FlagKind)] = &[
        ("from", FlagKind::Value),
        ("link", FlagKind::Bool),
        ("mount", FlagKind::Repeated),
    ];

    fn check(given: &[&str]) -> Result<Flags, String> {
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        check_flags("COPY", &given, COPY)
    }

    #[test]
    fn values_and_bools() {
        let flags = check(&["--from=a=b", "--link"]).unwrap();
        assert_eq!(flags.value("from").as_deref(), Some("a=b"));
        assert_eq!(flags.bool("link"), Some(true));
        assert_eq!(flags.bool("other"), None);
        let flags = check(&["--link=FALSE"]).unwrap();
        assert_eq!(flags.bool("link"), Some(false));
    }

    #[test]
    fn empty_value_is_allowed_for_value_flags() {
        assert_eq!(
            check(&["--from="]).unwrap().value("from").as_deref(),
            Some("")
        );
    }

    #[test]
    fn repeated_flags_keep_order() {
        let flags = check(&["--mount=a", "--from=x", "--mount=b"]).unwrap();
        assert_eq!(
            flags.given,
            vec![
                ("mount".to_string(), "a".to_string()),
                ("from".to_string(), "x".to_string()),
                ("mount".to_string(), "b".to_string()),
            ]
        );
    }

    #[test]
    fn unknown_flag_names_flag_instruction_and_choices() {
        let error = check(&["--chwon=1"]).unwrap_err();
        assert!(error.contains("--chwon"), "{error}");
        assert!(error.contains("COPY"), "{error}");
        assert!(error.contains("--from, --link, --mount"), "{error}");
        let error = check_flags("ENV", &["--x".to_string()], &[]).unwrap_err();
        assert_eq!(error, "unknown flag --x: ENV takes no flags");
    }

    #[test]
    fn bad_values() {
        assert!(check(&["--from"]).unwrap_err().contains("needs a value"));
        assert!(
            check(&["--link=yes"])
                .unwrap_err()
                .contains("true or false")
        );
        assert!(check(&["--link="]).unwrap_err().contains("true or false"));
        assert!(
            check(&["--from=a", "--from=b"])
                .unwrap_err()
                .contains("more than once")
        );
    }
}
