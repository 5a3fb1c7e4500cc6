use super::*;

fn rules(text: &str) -> IgnoreRules {
    IgnoreRules::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn stored_patterns(text: &str) -> Vec<String> {
    go_lines(text.strip_prefix('\u{feff}').unwrap_or(text))
        .filter_map(read_line)
        .collect()
}

/// Asserts the verdict for each path under one `.dockerignore` text.
fn check(text: &str, cases: &[(&str, bool)]) {
    let rules = rules(text);
    for (path, excluded) in cases {
        assert_eq!(
            rules.is_excluded(path),
            *excluded,
            "{path:?} under {text:?} should be {}",
            if *excluded { "excluded" } else { "kept" }
        );
    }
}

#[test]
fn reading_follows_ignorefile_read_all() {
    // moby's ReadAll test, re-expressed.
    let text =
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
    assert_eq!(
        stored_patterns(text),
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path",
            "!",
            "!"
        ]
    );
}

#[test]
fn reading_details() {
    // BOM, CRLF, comments only in column one, trimming, cleaning.
    let text = "\u{feff}# comment\r\n  spaced  \r\n #not-a-comment\n./a/../b/\n\t/x//y/.\n//\n/";
    assert_eq!(
        stored_patterns(text),
        ["spaced", "#not-a-comment", "b", "x/y", "/", "/"]
    );
    assert!(stored_patterns("").is_empty());
    assert!(stored_patterns("\n\n   \n").is_empty());
}

#[test]
fn lone_exclamation_is_an_error_naming_the_line() {
    let error = IgnoreRules::parse("a\n# c\n!\n").err();
    assert_eq!(
        error,
        Some(IgnoreError::EmptyException {
            line: 3,
            pattern: "!".to_owned()
        })
    );
    // `!/` cleans to `!` too.
    assert!(matches!(
        IgnoreRules::parse("!/"),
        Err(IgnoreError::EmptyException { line: 1, .. })
    ));
}

#[test]
fn malformed_patterns_are_errors_naming_line_and_pattern() {
    let error = IgnoreRules::parse("ok\n  [abc  \n").err();
    match error {
        Some(IgnoreError::BadPattern { line, pattern, .. }) => {
            assert_eq!(line, 2);
            assert_eq!(pattern, "[abc");
        }
        other => panic!("unexpected {other:?}"),
    }
    let message = IgnoreRules::parse("x\n[Local-Only]/\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("line 2") && message.contains("[Local-Only]/"),
        "{message}"
    );
    // A malformed exception is an error too, even if nothing would ever reach it.
    assert!(IgnoreRules::parse("!a[").is_err());
}

#[test]
fn empty_rules_exclude_nothing() {
    let rules = IgnoreRules::empty();
    assert!(!rules.is_excluded("a"));
    assert!(!rules.is_excluded("a/b/c"));
    assert!(!rules.must_walk_excluded_dir("a"));
    assert!(
        !IgnoreRules::parse("")
            .map(|r| r.is_excluded("x"))
            .unwrap_or(true)
    );
}

#[test]
fn documented_example_temp_patterns() {
    check(
        "# comment\n*/temp*\n*/*/temp*\ntemp?\n",
        &[
            ("somedir/temporary.txt", true),
            ("somedir/temp", true),
            ("somedir/temp/inside", true),
            ("somedir/subdir/temporary.txt", true),
            ("tempa", true),
            ("tempb", true),
            ("temp", false),
            ("tempab", false),
            ("temporary.txt", false),
            ("a/b/c/temp", false),
            ("somedir/xtemp", false),
        ],
    );
}

#[test]
fn documented_example_double_star_go() {
    check(
        "**/*.go",
        &[
            ("main.go", true),
            ("a/b/c.go", true),
            ("a/b/c.go/x", true),
            ("a/b/c.gox", false),
            ("go", false),
        ],
    );
}

#[test]
fn documented_example_markdown_exceptions() {
    check(
        "*.md\n!README.md\n",
        &[
            ("CHANGES.md", true),
            ("README.md", false),
            ("docs/x.md", false),
        ],
    );
    check(
        "*.md\n!README*.md\nREADME-secret.md\n",
        &[
            ("a.md", true),
            ("README.md", false),
            ("README-public.md", false),
            ("README-secret.md", true),
        ],
    );
    check(
        "*.md\nREADME-secret.md\n!README*.md\n",
        &[("a.md", true), ("README-secret.md", false)],
    );
}

#[test]
fn directory_pattern_excludes_children() {
    check(
        "docs",
        &[
            ("docs", true),
            ("docs/a", true),
            ("docs/a/b", true),
            ("docsx", false),
            ("x/docs", false),
        ],
    );
    check("docs/", &[("docs/a/b", true)]);
    check("/docs", &[("docs/a/b", true)]);
    check("./docs", &[("docs/a/b", true)]);
}

#[test]
fn exception_under_an_excluded_directory() {
    // moby: `docs` then `!docs/README.md` keeps the README.
    check(
        "docs\n!docs/README.md\n",
        &[("docs", true), ("docs/a", true), ("docs/README.md", false)],
    );
    check("docs/\n!docs/README.md\n", &[("docs/README.md", false)]);
    check("docs/*\n!docs/README.md\n", &[("docs/README.md", false)]);
    check(
        "docs\n!docs/keep\n",
        &[
            ("docs/keep", false),
            ("docs/keep/deep/file", false),
            ("docs/other", true),
        ],
    );
    let rules = rules("docs\n!docs/keep\n");
    assert!(rules.must_walk_excluded_dir("docs"));
    assert!(rules.must_walk_excluded_dir("docs/keep"));
    assert!(!rules.must_walk_excluded_dir("docs/other"));
    assert!(!rules.must_walk_excluded_dir("doc"));
    assert!(!rules.must_walk_excluded_dir("docsx"));
}

#[test]
fn walking_rule_follows_buildkit() {
    // No exceptions: an excluded directory is never walked.
    assert!(!rules("docs\n").must_walk_excluded_dir("docs"));
    // An exception with a wildcard could match anywhere: always walk.
    let wild = rules("docs\n!**/*.keep\n");
    assert!(wild.must_walk_excluded_dir("docs"));
    assert!(wild.must_walk_excluded_dir("anything/else"));
    // A trailing `/**` or `/*` on the exception still names a plain directory.
    let trailing = rules("*\n!src/app/**\n");
    assert!(trailing.must_walk_excluded_dir("src"));
    assert!(trailing.must_walk_excluded_dir("src/app"));
    assert!(!trailing.must_walk_excluded_dir("lib"));
    assert!(trailing.is_excluded("lib/x"));
    assert!(!trailing.is_excluded("src/app/main.rs"));
}

#[test]
fn last_matching_pattern_wins() {
    check(
        "*.go\n!fileutils.go\n",
        &[("fileutils.go", false), ("x.go", true)],
    );
    check("!fileutils.go\n*.go\n", &[("fileutils.go", true)]);
    check(
        "**\n!util/docker/web\n",
        &[("util/docker/web/foo", false), ("util/docker/other", true)],
    );
    check(
        "**\n!util/docker/web\nutil/docker/web/foo\n",
        &[
            ("util/docker/web/foo", true),
            ("util/docker/web/bar", false),
        ],
    );
    check(
        "**\n!dist/*.whl\n",
        &[
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            ("dist/other.tar", true),
        ],
    );
}

#[test]
fn parent_results_are_carried_like_docker() {
    // `a/b` excludes; `!a` was skipped at level `a` (nothing excluded there yet), so it is not
    // remembered and does not re-include `a/b`. MatchesOrParentMatches would keep `a/b`.
    check("a/b\n!a\n", &[("a", false), ("a/b", true), ("a/b/c", true)]);
}

/// moby's single-pattern table, as seen through the parent-aware matcher.
#[test]
fn moby_match_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**/**", "dir/file", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/dir2/file", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        ("a\\\\", "a\\", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        ("*", "fileutils.go", true),
        ("*.go", "fileutils.go", true),
        ("*.go", ".", false),
    ];
    for (pattern, path, excluded) in cases {
        let rules = rules(pattern);
        assert_eq!(
            rules.is_excluded(path),
            *excluded,
            "pattern {pattern:?} on {path:?}"
        );
    }
}

#[test]
fn spaces_unicode_and_escapes() {
    check(
        "my file.txt\nrépertoire/*\n日本/**\n",
        &[
            ("my file.txt", true),
            ("my  file.txt", false),
            ("répertoire/été.txt", true),
            ("repertoire/ete.txt", false),
            ("日本/語/x", true),
            ("日本", false),
        ],
    );
    check(
        "\\[literal\\]\nq\\?\n",
        &[
            ("[literal]", true),
            ("l", false),
            ("q?", true),
            ("qx", false),
        ],
    );
    check("dir with space/**\n", &[("dir with space/a b", true)]);
}

#[test]
fn dot_relative_and_odd_paths() {
    check(
        "./build\n./a/./b/../c\n",
        &[("build/out", true), ("a/c", true), ("a/b", false)],
    );
    let rules = rules("*\n");
    assert!(!rules.is_excluded(""));
    assert!(!rules.is_excluded("."));
    assert!(!rules.is_excluded("/"));
    assert!(rules.is_excluded("./x"));
    assert!(rules.is_excluded("/x"));
    assert!(rules.is_excluded("x/"));
    // A pattern that climbs out of the context matches nothing inside it.
    check("../x\n", &[("x", false)]);
}

#[test]
fn go_regexp_meanings_are_kept() {
    // `^` in a regexp pattern is an anchor in Docker, so this never matches...
    check("a^b*\n", &[("a^bc", false)]);
    // ...but without other metacharacters the pattern is an exact match and `^` is literal.
    check("a^b\n", &[("a^b", true)]);
    // POSIX classes work the way Go's regexp reads them.
    check("[[:digit:]]*\n", &[("7up", true), ("up", false)]);
    // Perl classes are ASCII, `&&` in a class is two members, `\<` is the character.
    check("\\d*\n", &[("7up", true), ("٣up", false)]);
    check("[a&&b]*\n", &[("&x", true), ("ax", true), ("cx", false)]);
    check("\\<*\\>\n", &[("<x>", true), ("x", false)]);
}
