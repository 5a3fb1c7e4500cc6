//! Cases mostly from BuildKit's `envVarTest` and `wordsTest`, with the same environment.

use super::*;

fn environment(name: &str) -> Option<String> {
    match name {
        "PWD" => Some("/home".to_string()),
        "SHELL" => Some("bash".to_string()),
        "KOREAN" => Some("한국어".to_string()),
        "NULL" => Some(String::new()),
        "FILE" => Some("archive.tar.gz".to_string()),
        "PATHS" => Some("/usr/local/bin".to_string()),
        _ => None,
    }
}

fn word(input: &str) -> Result<String, String> {
    expand_word(input, '\\', &environment).map_err(|error| error.message)
}

fn check(cases: &[(&str, &str)]) {
    for &(input, expected) in cases {
        match word(input) {
            Ok(result) => assert_eq!(result, expected, "input {input:?}"),
            Err(error) => panic!("input {input:?} failed: {error}"),
        }
    }
}

fn check_errors(inputs: &[&str]) {
    for input in inputs {
        assert!(
            word(input).is_err(),
            "input {input:?} should fail, got {:?}",
            word(input)
        );
    }
}

#[test]
fn quotes_and_escapes() {
    check(&[
        ("hello", "hello"),
        ("he'll'o", "hello"),
        (r"he\'llo", "he'llo"),
        (r"abc\tdef", "abctdef"),
        (r#""abc\tdef""#, r"abc\tdef"),
        (r#""abc\\tdef""#, r"abc\tdef"),
        (r"'abc\tdef'", r"abc\tdef"),
        (r"hello\", "hello"),
        (r"hello\\", r"hello\"),
        (r#""hel'lo""#, "hel'lo"),
        (r"'hello\'", r"hello\"),
        (r"'hello\there'", r"hello\there"),
        (r#""''""#, "''"),
        (r#"'"hello"'"#, r#""hello""#),
        (r#""a\"b""#, r#"a"b"#),
        ("\"\"", ""),
        ("a\" b \"c", "a b c"),
    ]);
    check_errors(&["he'llo", r"he\\'llo", "\"hello", r#""hello\""#, "'hello"]);
}

#[test]
fn plain_references() {
    check(&[
        ("$.", "$."),
        ("$", "$"),
        ("he$1x", "hex"),
        ("he$.x", "he$.x"),
        ("he$pwd.", "he."),
        ("he$PWD", "he/home"),
        (r"he\$PWD", "he$PWD"),
        (r"he\\$PWD", r"he\/home"),
        (r#""he\$PWD""#, "he$PWD"),
        (r#""he\\$PWD""#, r"he\/home"),
        ("'$PWD'", "$PWD"),
        (r"'\$PWD'", r"\$PWD"),
        ("\"$PWD\"", "/home"),
        ("\"he'$PWD'\"", "he'/home'"),
        ("$PWD$SHELL", "/homebash"),
        ("$PWD-x", "/home-x"),
        ("$PWD_x", ""),
        ("$@", ""),
        ("$$", ""),
    ]);
}

#[test]
fn braced_references() {
    check(&[
        (r"\${}", "${}"),
        (r"\${}aaa", "${}aaa"),
        (r"he\${}xx", "he${}xx"),
        ("he${hi}", "he"),
        ("he${hi}xx", "hexx"),
        ("he${PWD}", "he/home"),
        ("'he${XX}'", "he${XX}"),
        ("\"he${PWD}\"", "he/home"),
    ]);
    check_errors(&[
        "${}", "${}aaa", "he${}xx", "he${.}", "he${PWD", "${", "${:}", "${{a}}",
    ]);
}

#[test]
fn default_and_alternative_values() {
    check(&[
        ("he${XXX:-000}xx", "he000xx"),
        ("he${PWD:-000}xx", "he/homexx"),
        ("he${XXX:-$PWD}xx", "he/homexx"),
        ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
        ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
        ("he${XXX:+${PWD}}xx", "hexx"),
        ("he${PWD:+${XXX}}xx", "hexx"),
        ("he${PWD:+${SHELL}}xx", "hebashxx"),
        ("he${XXX:+000}xx", "hexx"),
        ("he${PWD:+000}xx", "he000xx"),
        ("he${PWD:+${PWD}:}xx", "he/home:xx"),
        (r"he${XXX:-\$PWD:}xx", "he$PWD:xx"),
        (r"he${XXX:-\${PWD}z}xx", "he${PWDz}xx"),
        ("${XXX:-\"a b\"}", "a b"),
        ("${XXX:-'$PWD'}", "$PWD"),
        (r"${XXX:-\}}", "}"),
    ]);
    check_errors(&["he${XXX:YYY}", "he${PWD:=000}xx", "${XXX:-", "${XXX:-'x}"]);
}

#[test]
fn unset_differs_from_empty_without_colon() {
    check(&[
        ("${XXX-b}", "b"),
        ("${NULL-b}", ""),
        ("${NULL:-b}", "b"),
        ("${XXX+b}", ""),
        ("${NULL+b}", "b"),
        ("${NULL:+b}", ""),
        ("${PWD+b}", "b"),
    ]);
}

#[test]
fn required_variables() {
    check(&[
        ("he${PWD?}", "he/home"),
        ("he${PWD:?}", "he/home"),
        ("he${NULL?}", "he"),
    ]);
    assert_eq!(
        word("${XXX?}").unwrap_err(),
        "XXX: is not allowed to be unset"
    );
    assert_eq!(
        word("${NULL:?}").unwrap_err(),
        "NULL: is not allowed to be empty"
    );
    assert_eq!(
        word("${XXX:?}").unwrap_err(),
        "XXX: is not allowed to be unset"
    );
    assert_eq!(
        word("${XXX?set it with --build-arg $SHELL}").unwrap_err(),
        "XXX: set it with --build-arg bash"
    );
    assert_eq!(
        word("${NULL:?need a value}").unwrap_err(),
        "NULL: need a value"
    );
}

#[test]
fn expand_error_names_the_word() {
    let error = expand_word("a${XXX?missing}", '\\', &environment).unwrap_err();
    assert_eq!(error.word, "a${XXX?missing}");
    assert_eq!(
        error.to_string(),
        "cannot expand \"a${XXX?missing}\": XXX: missing"
    );
}

#[test]
fn prefix_and_suffix_removal() {
    check(&[
        ("${PWD#*/}", "home"),
        ("${PATHS#*/}", "usr/local/bin"),
        ("${PATHS##*/}", "bin"),
        ("${PATHS%/*}", "/usr/local"),
        ("${PATHS%%/*}", ""),
        ("${FILE%.*}", "archive.tar"),
        ("${FILE%%.*}", "archive"),
        ("${FILE#*.}", "tar.gz"),
        ("${FILE##*.}", "gz"),
        ("${FILE#nomatch}", "archive.tar.gz"),
        ("${FILE#}", "archive.tar.gz"),
        ("${XXX#a}", ""),
        ("${FILE%.???}", "archive.tar.gz"),
        ("${FILE%.??}", "archive.tar"),
    ]);
    check_errors(&["${FILE:#a}", "${FILE:%a}", r"${FILE#\a}"]);
}

#[test]
fn pattern_escapes_reach_the_matcher() {
    let vars = |name: &str| (name == "V").then(|| "a*b".to_string());
    let expand = |input: &str| expand_word(input, '\\', &vars).unwrap();
    assert_eq!(expand(r"${V#a\*}"), "b");
    assert_eq!(expand("${V#a*}"), "*b");
    assert_eq!(expand(r"${V%\*b}"), "a");
}

#[test]
fn substitution() {
    check(&[
        ("${FILE/./-}", "archive-tar.gz"),
        ("${FILE//./-}", "archive-tar-gz"),
        ("${FILE/.*/}", "archive"),
        ("${FILE//a/}", "rchive.tr.gz"),
        ("${XXX/a/b}", ""),
        ("${PATHS//\\//:}", ":usr:local:bin"),
        ("${FILE/archive/$SHELL}", "bash.tar.gz"),
    ]);
    check_errors(&["${FILE/a}", "${FILE/a/b", "${FILE/\\x/b}"]);
}

#[test]
fn unicode_text_and_names() {
    check(&[
        ("안녕하세요", "안녕하세요"),
        ("안'녕'하세요", "안녕하세요"),
        (r"안녕\'하세요", "안녕'하세요"),
        (r"안녕\t하세요", "안녕t하세요"),
        (r#""안녕\t하세요""#, r"안녕\t하세요"),
        ("안녕$PWD", "안녕/home"),
        ("안녕${XXX:-${YYY:-yyy}}xx", "안녕yyyxx"),
        ("$KOREAN", "한국어"),
        ("안녕$KOREAN", "안녕한국어"),
        ("${KOREAN#한}", "국어"),
        ("$변수", ""),
    ]);
    check_errors(&["안'녕하세요", r"안\\'녕하세요", "'안녕\\t하세요"]);
}

#[test]
fn backtick_escape() {
    let expand = |input: &str| expand_word(input, '`', &environment);
    assert_eq!(expand(r"C:\dir\$PWD").unwrap(), r"C:\dir\/home");
    assert_eq!(expand("`$PWD").unwrap(), "$PWD");
    assert_eq!(expand("a` b").unwrap(), "a b");
    assert_eq!(expand(r#""x`"y""#).unwrap(), r#"x"y"#);
    assert_eq!(expand(r#""C:\path""#).unwrap(), r"C:\path");
    assert_eq!(expand("``").unwrap(), "`");
}

#[test]
fn words_split_on_unquoted_whitespace_after_expansion() {
    let vars = |name: &str| match name {
        "space" => Some("abc  def".to_string()),
        "leading" => Some("  ab c".to_string()),
        "trailing" => Some("ab c   ".to_string()),
        "tab" => Some("ab\tc".to_string()),
        _ => None,
    };
    let words = |input: &str| expand_words(input, '\\', &vars).unwrap();
    assert_eq!(words("hello"), vec!["hello"]);
    assert_eq!(words("hello${hi}bye"), vec!["hellobye"]);
    assert_eq!(words("hello${space}bye"), vec!["helloabc", "defbye"]);
    assert_eq!(words("hello\"${space}\"bye"), vec!["helloabc  defbye"]);
    assert_eq!(words("hello \"${space}\"bye"), vec!["hello", "abc  defbye"]);
    assert_eq!(words("hello${leading}def"), vec!["hello", "ab", "cdef"]);
    assert_eq!(words("hello\"${leading}\" def"), vec!["hello  ab c", "def"]);
    assert_eq!(words("hello${trailing}d"), vec!["helloab", "c", "d"]);
    assert_eq!(words("hello${tab}d"), vec!["helloab", "cd"]);
    assert_eq!(words(r"a\ b c"), vec!["a b", "c"]);
    assert_eq!(words("  "), Vec::<String>::new());
    assert_eq!(words("\"\""), Vec::<String>::new());
    assert_eq!(words("80 443/tcp"), vec!["80", "443/tcp"]);
}

#[test]
fn raw_options_keep_quotes_escapes_and_unset_references() {
    let options = LexOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        skip_quotes: false,
    };
    let processed = process(r#"cat <<"EOF" a\ b $X ${Y:-z}"#, '\\', &|_| None, options).unwrap();
    assert_eq!(processed.word, r#"cat <<"EOF" a\ b $X ${Y:-z}"#);
    assert_eq!(
        processed.words,
        vec!["cat", "<<\"EOF\"", r"a\ b", "$X", "${Y:-z}"]
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    let deep = "${a:-".repeat(5000) + &"}".repeat(5000);
    assert!(word(&deep).unwrap_err().contains("nested"));
    let fine = "${a:-".repeat(50) + "x" + &"}".repeat(50);
    assert_eq!(word(&fine).unwrap(), "x");
}
