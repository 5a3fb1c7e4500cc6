//! `COPY` and `ADD`: flags, then a JSON array or whitespace-separated words, the last of
//! which is the destination.

use super::args::{JsonArgs, json_array, whitespace_words};
use super::flags::{FlagKind, check_flags};
use super::{Add, Command, Copy};

const COPY_FLAGS: &[(&str, FlagKind)] = &[
    ("from", FlagKind::Value),
    ("chown", FlagKind::Value),
    ("chmod", FlagKind::Value),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::Repeated),
    ("parents", FlagKind::Bool),
];

const ADD_FLAGS: &[(&str, FlagKind)] = &[
    ("chown", FlagKind::Value),
    ("chmod", FlagKind::Value),
    ("link", FlagKind::Bool),
    ("keep-git-dir", FlagKind::Bool),
    ("checksum", FlagKind::Value),
    ("unpack", FlagKind::Bool),
    ("exclude", FlagKind::Repeated),
];

pub(crate) fn parse_copy(args: &str, flags: &[String]) -> Result<Command, String> {
    let (sources, dest) = sources_and_dest("COPY", args)?;
    let flags = check_flags("COPY", flags, COPY_FLAGS)?;
    Ok(Command::Copy(Copy {
        sources,
        dest,
        from: non_empty(flags.value("from")),
        chown: non_empty(flags.value("chown")),
        chmod: non_empty(flags.value("chmod")),
        link: flags.bool("link").unwrap_or(false),
        exclude: non_empty_values(flags.values("exclude")),
        parents: flags.bool("parents").unwrap_or(false),
        inline: Vec::new(),
    }))
}

pub(crate) fn parse_add(args: &str, flags: &[String]) -> Result<Command, String> {
    let (sources, dest) = sources_and_dest("ADD", args)?;
    let flags = check_flags("ADD", flags, ADD_FLAGS)?;
    Ok(Command::Add(Add {
        sources,
        dest,
        chown: non_empty(flags.value("chown")),
        chmod: non_empty(flags.value("chmod")),
        checksum: non_empty(flags.value("checksum")),
        keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
        link: flags.bool("link").unwrap_or(false),
        unpack: flags.bool("unpack"),
        exclude: non_empty_values(flags.values("exclude")),
        inline: Vec::new(),
    }))
}

/// `--exclude` patterns, empty ones dropped.
fn non_empty_values(values: Vec<String>) -> Vec<String> {
    values.into_iter().filter(|v| !v.is_empty()).collect()
}

/// BuildKit treats an empty flag value as not given.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

fn sources_and_dest(keyword: &str, args: &str) -> Result<(Vec<String>, String), String> {
    let words = match json_array(args)? {
        JsonArgs::Strings(words) => words,
        // Text that only looks like JSON is read as words, as BuildKit does.
        JsonArgs::Malformed(_) | JsonArgs::NotJson => whitespace_words(args),
    };
    match words.split_last() {
        Some((dest, sources)) if !sources.is_empty() => Ok((sources.to_vec(), dest.clone())),
        _ => Err(format!(
            "{keyword} requires at least one source and a destination: \
             {keyword} <src>... <dest> or {keyword} [\"<src>\", ..., \"<dest>\"]"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn copy(args: &str, flags: &[&str]) -> Result<Copy, String> {
        match parse_copy(args, &strings(flags))? {
            Command::Copy(copy) => Ok(copy),
            other => panic!("expected COPY, got {other:?}"),
        }
    }

    fn add(args: &str, flags: &[&str]) -> Result<Add, String> {
        match parse_add(args, &strings(flags))? {
            Command::Add(add) => Ok(add),
            other => panic!("expected ADD, got {other:?}"),
        }
    }

    #[test]
    fn words_form() {
        let parsed = copy("a b  /dst/", &[]).unwrap();
        assert_eq!(parsed.sources, strings(&["a", "b"]));
        assert_eq!(parsed.dest, "/dst/");
        assert_eq!(
            (parsed.from, parsed.chown, parsed.chmod, parsed.link),
            (None, None, None, false)
        );
    }

    #[test]
    fn json_form_allows_spaces() {
        let parsed = copy(r#"["my file", "/my dir/"]"#, &[]).unwrap();
        assert_eq!(parsed.sources, strings(&["my file"]));
        assert_eq!(parsed.dest, "/my dir/");
    }

    #[test]
    fn malformed_json_falls_back_to_words() {
        let parsed = copy("[a, b]", &[]).unwrap();
        assert_eq!(parsed.sources, strings(&["[a,"]));
        assert_eq!(parsed.dest, "b]");
    }

    #[test]
    fn quotes_are_not_grouping_in_words_form() {
        let parsed = copy(r#""a b" /d"#, &[]).unwrap();
        assert_eq!(parsed.sources, strings(&["\"a", "b\""]));
    }

    #[test]
    fn needs_source_and_destination() {
        for args in ["", "only", "[\"only\"]", "[]"] {
            let error = copy(args, &[]).unwrap_err();
            assert!(
                error.contains("at least one source and a destination"),
                "{args}: {error}"
            );
        }
        assert!(add("x", &[]).unwrap_err().starts_with("ADD requires"));
    }

    #[test]
    fn non_string_json_is_an_error() {
        assert!(
            copy(r#"["a", 1]"#, &[])
                .unwrap_err()
                .contains("only strings")
        );
    }

    #[test]
    fn copy_flags() {
        let parsed = copy(
            "a /b",
            &["--from=build", "--chown=1:2", "--chmod=0644", "--link"],
        )
        .unwrap();
        assert_eq!(parsed.from.as_deref(), Some("build"));
        assert_eq!(parsed.chown.as_deref(), Some("1:2"));
        assert_eq!(parsed.chmod.as_deref(), Some("0644"));
        assert!(parsed.link);
        assert_eq!(copy("a /b", &["--from="]).unwrap().from, None);
    }

    #[test]
    fn add_flags() {
        let parsed = add(
            "https://x/a.tgz /b",
            &[
                "--checksum=sha256:abc",
                "--keep-git-dir",
                "--link=false",
                "--unpack=true",
                "--chown=u",
            ],
        )
        .unwrap();
        assert_eq!(parsed.checksum.as_deref(), Some("sha256:abc"));
        assert!(parsed.keep_git_dir);
        assert!(!parsed.link);
        assert_eq!(parsed.unpack, Some(true));
        assert_eq!(parsed.chown.as_deref(), Some("u"));
        assert_eq!(add("a b", &[]).unwrap().unpack, None);
    }

    #[test]
    fn flags_of_the_other_instruction_are_unknown() {
        let error = add("a /b", &["--from=x"]).unwrap_err();
        assert!(error.contains("unknown flag --from for ADD"), "{error}");
        let error = copy("a /b", &["--checksum=x"]).unwrap_err();
        assert!(
            error.contains("unknown flag --checksum for COPY"),
            "{error}"
        );
    }
}
