//! Whole-file parsing: directives, comments, continuations, line numbers and error reporting.

use super::*;

fn parsed(text: &str) -> Dockerfile {
    match parse(text) {
        Ok(dockerfile) => dockerfile,
        Err(error) => panic!("parse failed: {error}"),
    }
}

fn lines_and_texts(dockerfile: &Dockerfile) -> Vec<(usize, &str)> {
    dockerfile
        .instructions
        .iter()
        .map(|instruction| (instruction.line, instruction.text.as_str()))
        .collect()
}

#[test]
fn a_typical_dockerfile() {
    let dockerfile = parsed(
        "# syntax=docker/dockerfile:1\n\
         ARG BASE=debian:bookworm\n\
         FROM ${BASE} AS build\n\
         # install tools\n\
         RUN apt-get update \\\n\
         \x20   && apt-get install -y curl\n\
         COPY . /src\n\
         WORKDIR /src\n\
         CMD [\"make\"]\n",
    );
    assert_eq!(dockerfile.escape, '\\');
    assert_eq!(
        lines_and_texts(&dockerfile),
        vec![
            (2, "ARG BASE=debian:bookworm"),
            (3, "FROM ${BASE} AS build"),
            (5, "RUN apt-get update     && apt-get install -y curl"),
            (7, "COPY . /src"),
            (8, "WORKDIR /src"),
            (9, "CMD [\"make\"]"),
        ]
    );
    assert_eq!(
        dockerfile.instructions[2].command,
        Command::Run(Run {
            command: CommandLine::Shell("apt-get update     && apt-get install -y curl".into()),
            flags: RunFlags::default(),
            heredocs: vec![],
        })
    );
}

#[test]
fn comments_and_blank_lines_inside_continuations_keep_line_numbers_right() {
    let dockerfile = parsed(
        "FROM a\n\
         RUN one \\\n\
         # a comment in the middle\n\
         \n\
         \x20   two \\\n\
         \x20   # indented comment\n\
         \x20   three\n\
         ENV X=1\n",
    );
    assert_eq!(
        lines_and_texts(&dockerfile),
        vec![
            (1, "FROM a"),
            (2, "RUN one     two     three"),
            (8, "ENV X=1")
        ]
    );
}

#[test]
fn error_lines_point_at_the_start_of_the_instruction() {
    let error = parse("FROM a\n# c\n\nCOPY --bogus=1 \\\n  a \\\n  b\n").unwrap_err();
    assert_eq!(error.line, 4);
    assert!(
        error.message.contains("unknown flag --bogus for COPY"),
        "{error}"
    );
    assert!(error.to_string().starts_with("line 4: "), "{error}");

    let error = parse("FROM a\nRUN x \\\n\n# c\n  y\nFROBNICATE z\n").unwrap_err();
    assert_eq!(error.line, 6);
    assert!(
        error.message.contains("unknown instruction \"FROBNICATE\""),
        "{error}"
    );
}

#[test]
fn escape_directive_switches_to_backtick() {
    let dockerfile = parsed(
        "# escape=`\n\
         FROM mcr.microsoft.com/windows/servercore\n\
         COPY testfile.txt C:\\\n\
         RUN dir C:\\ `\n\
         \x20   && echo done\n",
    );
    assert_eq!(dockerfile.escape, '`');
    assert_eq!(
        lines_and_texts(&dockerfile),
        vec![
            (2, "FROM mcr.microsoft.com/windows/servercore"),
            (3, "COPY testfile.txt C:\\"),
            (4, "RUN dir C:\\     && echo done"),
        ]
    );
    let Command::Copy(copy) = &dockerfile.instructions[1].command else {
        panic!("expected COPY");
    };
    assert_eq!(copy.dest, "C:\\");
}

#[test]
fn without_the_directive_a_trailing_backslash_continues() {
    let dockerfile = parsed("FROM a\nCOPY testfile.txt C:\\\nRUN dir c:\\\n");
    assert_eq!(
        lines_and_texts(&dockerfile),
        vec![(1, "FROM a"), (2, "COPY testfile.txt C:RUN dir c:")]
    );
}

#[test]
fn directives_only_count_at_the_top() {
    assert_eq!(parsed("FROM a\n# escape=`\n").escape, '\\');
    assert_eq!(parsed("# hello\n# escape=`\nFROM a").escape, '\\');
    assert_eq!(parsed("\n# escape=`\nFROM a").escape, '\\');
    assert_eq!(parsed("# syntax=x\n# escape=`\nFROM a").escape, '`');
}

#[test]
fn directive_errors_have_their_line() {
    let error = parse("# syntax=a\n# escape=a\nFROM x").unwrap_err();
    assert_eq!(error.line, 2);
    let error = parse("# escape=`\n# escape=`\nFROM x").unwrap_err();
    assert_eq!(
        (error.line, error.message.contains("only one escape")),
        (2, true)
    );
}

#[test]
fn bom_and_crlf_are_handled() {
    let dockerfile = parsed("\u{feff}# escape=`\r\nFROM a\r\nRUN b `\r\n  c\r\n");
    assert_eq!(dockerfile.escape, '`');
    assert_eq!(
        lines_and_texts(&dockerfile),
        vec![(2, "FROM a"), (3, "RUN b   c")]
    );
}

#[test]
fn unicode_everywhere() {
    let dockerfile = parsed(
        "FROM alpine\n\
         LABEL description=\"Ünïcödé 日本語 🚀\"\n\
         ENV GRÜSS=\"grüß gott\" \\\n\
         \x20   名前=値\n\
         COPY données/ /opt/データ/\n",
    );
    assert_eq!(
        dockerfile.instructions[2].command,
        Command::Env(vec![
            KeyValue {
                key: "GRÜSS".into(),
                value: "\"grüß gott\"".into()
            },
            KeyValue {
                key: "名前".into(),
                value: "値".into()
            },
        ])
    );
    let Command::Copy(copy) = &dockerfile.instructions[3].command else {
        panic!("expected COPY");
    };
    assert_eq!(
        (copy.sources.as_slice(), copy.dest.as_str()),
        (&["données/".to_string()][..], "/opt/データ/")
    );
}

#[test]
fn instruction_text_is_trimmed_and_joined() {
    let dockerfile = parsed("   FROM a   \nRUN a \\\n   b   \n");
    assert_eq!(
        lines_and_texts(&dockerfile),
        vec![(1, "FROM a"), (2, "RUN a    b")]
    );
}

#[test]
fn only_arg_may_precede_the_first_from() {
    assert!(parse("ARG A\nARG B=1\nFROM a\nRUN x").is_ok());
    let error = parse("ARG A\n\nRUN x\nFROM a").unwrap_err();
    assert_eq!(error.line, 3);
    assert!(
        error.message.contains("RUN comes before the first FROM"),
        "{error}"
    );
}

#[test]
fn a_dockerfile_needs_a_from() {
    for text in ["", "\n\n", "# just a comment\n", "ARG A\n", "\\\n"] {
        let error = parse(text).unwrap_err();
        assert!(error.message.contains("no FROM"), "{text:?}: {error}");
        assert!(error.line >= 1);
    }
}

fn heredoc(name: &str, chomp: bool, expand: bool, body: &str) -> super::Heredoc {
    super::Heredoc {
        name: name.into(),
        chomp,
        expand,
        body: body.into(),
    }
}

#[test]
fn heredocs_take_the_lines_after_their_instruction() {
    let dockerfile = parsed(
        "FROM a\nRUN <<EOF\necho hi\n# kept, not a comment\nEOF\nRUN python3 <<'PY' && \\\n  true\nprint(1)\nPY\nRUN true\n",
    );
    let runs: Vec<(usize, &super::Run)> = dockerfile
        .instructions
        .iter()
        .filter_map(|i| match &i.command {
            Command::Run(run) => Some((i.line, run)),
            _ => None,
        })
        .collect();
    assert_eq!(runs[0].0, 2);
    assert_eq!(
        runs[0].1.heredocs,
        [heredoc(
            "EOF",
            false,
            true,
            "echo hi\n# kept, not a comment\n"
        )]
    );
    assert_eq!(runs[0].1.command, CommandLine::Shell("<<EOF".into()));
    assert_eq!(runs[1].0, 6);
    assert_eq!(
        runs[1].1.heredocs,
        [heredoc("PY", false, false, "print(1)\n")]
    );
    assert_eq!((runs[2].0, runs[2].1.heredocs.len()), (10, 0));
}

#[test]
fn copy_heredocs_become_inline_files() {
    let dockerfile = parsed("FROM a\nCOPY <<-A file.txt <<\"B\" /dir/\n\tone $X\n\tA\ntwo\nB\n");
    let Command::Copy(copy) = &dockerfile.instructions[1].command else {
        panic!("{dockerfile:?}")
    };
    assert_eq!(copy.sources, ["file.txt"]);
    assert_eq!(
        copy.inline,
        [
            heredoc("A", true, true, "\tone $X\n"),
            heredoc("B", false, false, "two\n")
        ]
    );
    assert_eq!(copy.inline[0].content(), "one $X\n");
}

#[test]
fn the_syntax_directive_is_kept_for_a_notice() {
    assert_eq!(
        parsed("# syntax=docker/dockerfile:1.7\nFROM a\n")
            .syntax
            .as_deref(),
        Some("docker/dockerfile:1.7")
    );
    assert_eq!(parsed("FROM a\n# syntax=x\n").syntax, None);
}

#[test]
fn heredoc_errors_name_the_line() {
    let error = parse("FROM a\nRUN <<EOF\necho hi\n").unwrap_err();
    assert_eq!(error.line, 2);
    assert!(error.message.contains("<<EOF is never closed"), "{error}");
    let error = parse("FROM a\nCOPY x <<EOF\nhi\nEOF\n").unwrap_err();
    assert!(error.message.contains("destination"), "{error}");
}

#[test]
fn onbuild_heredocs_travel_in_the_trigger() {
    let dockerfile = parsed("FROM a\nONBUILD RUN <<EOF\necho later\nEOF\n");
    let Command::Onbuild(trigger) = &dockerfile.instructions[1].command else {
        panic!("{dockerfile:?}")
    };
    assert_eq!(trigger, "RUN <<EOF\necho later\nEOF");
    let run = super::parse_trigger(trigger, 9).unwrap();
    assert_eq!(run.line, 9);
    let Command::Run(run) = run.command else {
        panic!()
    };
    assert_eq!(run.heredocs, [heredoc("EOF", false, true, "echo later\n")]);
}

#[test]
fn several_stages() {
    let dockerfile = parsed(
        "FROM golang:1.22 AS build\nRUN go build -o /app\n\
         FROM scratch\nCOPY --from=build /app /app\nENTRYPOINT [\"/app\"]\n",
    );
    let keywords: Vec<&str> = dockerfile
        .instructions
        .iter()
        .map(|instruction| instruction.command.keyword())
        .collect();
    assert_eq!(keywords, vec!["FROM", "RUN", "FROM", "COPY", "ENTRYPOINT"]);
}

/// A small deterministic generator so the fuzz test needs no extra crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "FROM ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "LABEL ",
    "CMD ",
    "ENTRYPOINT ",
    "SHELL ",
    "WORKDIR ",
    "USER ",
    "EXPOSE ",
    "VOLUME ",
    "STOPSIGNAL ",
    "HEALTHCHECK ",
    "ONBUILD ",
    "MAINTAINER ",
    "CMD ",
    "NONE ",
    " AS ",
    "--from=",
    "--chown=",
    "--link",
    "--mount=",
    "--interval=",
    "--",
    "-",
    "=",
    "\"",
    "'",
    "\\",
    "`",
    "$",
    "${",
    "}",
    "{",
    ":-",
    ":+",
    ":?",
    "?",
    "#",
    "##",
    "%",
    "%%",
    "/",
    "//",
    "*",
    "[",
    "]",
    ",",
    "\"a\"",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\\\n",
    "`\n",
    "# escape=`\n",
    "# escape=\\\n",
    "# syntax=x\n",
    "<<",
    "<<EOF",
    "EOF",
    "A",
    "b",
    "1",
    "30s",
    "é",
    "日本",
    "🚀",
    "\u{feff}",
    "\u{a0}",
    "\0",
    "$A",
    "${A:-x}",
    "${A#*}",
    "${A/b/c}",
    "${A//}",
];

fn random_text(rng: &mut XorShift) -> String {
    let mut text = String::new();
    if rng.below(3) == 0 {
        text.push_str("FROM a\n");
    }
    for _ in 0..rng.below(40) {
        if rng.below(10) == 0 {
            let bytes: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
            text.push_str(&String::from_utf8_lossy(&bytes));
        } else {
            text.push_str(PIECES[rng.below(PIECES.len())]);
        }
    }
    text
}

#[test]
fn random_input_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let vars = |name: &str| match name {
        "A" => Some("a/b*c d".to_string()),
        "b" => Some(String::new()),
        _ => None,
    };
    let mut parsed_ok = 0;
    for _ in 0..20_000 {
        let text = random_text(&mut rng);
        if let Ok(dockerfile) = parse(&text) {
            parsed_ok += 1;
            for instruction in &dockerfile.instructions {
                let _ = instruction.command.expand(dockerfile.escape, &vars);
            }
        }
        for word in text.split('\n') {
            let _ = expand_word(word, '\\', &vars);
            let _ = expand_words(word, '`', &vars);
        }
    }
    assert!(
        parsed_ok > 100,
        "the generator should produce some valid files ({parsed_ok})"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(42);
    for _ in 0..5_000 {
        let bytes: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text);
        let _ = expand_word(&text, '\\', &|_| Some("x".to_string()));
    }
}

#[test]
fn triggers_parse_as_one_instruction_at_the_from_line() {
    let env = super::parse_trigger("ENV A=b", 3).unwrap();
    assert_eq!((env.line, env.text.as_str()), (3, "ENV A=b"));
    assert!(matches!(env.command, super::Command::Env(_)));
    for refused in ["FROM scratch", "ONBUILD RUN x", "MAINTAINER me", "NOSUCH x"] {
        assert!(super::parse_trigger(refused, 1).is_err(), "{refused}");
    }
}
