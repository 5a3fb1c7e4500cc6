use super::*;
use crate::{Healthcheck, RunNetwork, Security};

fn parsed(line: &str) -> Command {
    match parse_command(line, '\\') {
        Ok(command) => command,
        Err(error) => panic!("{line:?} failed: {error}"),
    }
}

fn error(line: &str) -> String {
    match parse_command(line, '\\') {
        Ok(command) => panic!("{line:?} should fail, got {command:?}"),
        Err(error) => error,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<KeyValue> {
    items
        .iter()
        .map(|&(key, value)| KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        })
        .collect()
}

#[test]
fn keywords_are_case_insensitive() {
    assert_eq!(parsed("from alpine"), parsed("FROM alpine"));
    assert_eq!(parsed("wOrKdIr /x"), Command::Workdir("/x".into()));
}

#[test]
fn unknown_instruction_lists_the_known_ones() {
    let message = error("FORM alpine");
    assert!(
        message.starts_with("unknown instruction \"FORM\""),
        "{message}"
    );
    assert!(message.contains("FROM, HEALTHCHECK"), "{message}");
}

#[test]
fn from_forms() {
    assert_eq!(
        parsed("FROM alpine:3.20"),
        Command::From(From {
            image: "alpine:3.20".into(),
            stage_name: None,
            platform: None,
        })
    );
    assert_eq!(
        parsed("FROM --platform=$BUILDPLATFORM golang:1.22 As Build-1.x"),
        Command::From(From {
            image: "golang:1.22".into(),
            stage_name: Some("build-1.x".into()),
            platform: Some("$BUILDPLATFORM".into()),
        })
    );
}

#[test]
fn from_errors() {
    for line in [
        "FROM",
        "FROM a b",
        "FROM a AS",
        "FROM a AS b c",
        "FROM a FOR b",
    ] {
        assert!(error(line).contains("one or three arguments"), "{line}");
    }
    assert!(error("FROM a AS 1st").contains("invalid name for build stage: \"1st\""));
    assert!(error("FROM a AS $NAME").contains("invalid name"));
    assert!(error("FROM a AS bäd").contains("invalid name"));
    assert!(error("FROM --plat=x a").contains("unknown flag --plat for FROM"));
}

#[test]
fn run_shell_and_exec_forms() {
    assert_eq!(
        parsed("RUN apt-get update && echo \"$HOME\""),
        Command::Run(Run {
            command: CommandLine::Shell("apt-get update && echo \"$HOME\"".into()),
            flags: RunFlags::default(),
            heredocs: vec![],
        })
    );
    assert_eq!(
        parsed(r#"RUN ["echo", "$HOME"]"#),
        Command::Run(Run {
            command: CommandLine::Exec(strings(&["echo", "$HOME"])),
            flags: RunFlags::default(),
            heredocs: vec![],
        })
    );
}

#[test]
fn run_malformed_json_is_shell_form() {
    assert_eq!(
        parsed("RUN [echo, hi]"),
        Command::Run(Run {
            command: CommandLine::Shell("[echo, hi]".into()),
            flags: RunFlags::default(),
            heredocs: vec![],
        })
    );
    assert!(error(r#"RUN ["echo", 1]"#).contains("only strings"));
}

#[test]
fn run_flags_are_typed_when_parsed() {
    let Command::Run(run) = parsed(
        "RUN --mount=type=cache,target=/root/.cache --network=none --mount=type=secret,id=x make",
    ) else {
        panic!("expected RUN");
    };
    assert_eq!(run.flags.network, RunNetwork::None);
    assert_eq!(run.flags.security, Security::Sandbox);
    let vars = |_: &str| None;
    let mounts = run.flags.mounts('\\', &vars, "/").unwrap();
    let targets: Vec<&str> = mounts.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["/root/.cache", "/run/secrets/x"]);
    assert_eq!(run.command, CommandLine::Shell("make".into()));
    let Command::Run(run) = parsed("RUN --network=host --security=insecure true") else {
        panic!("expected RUN");
    };
    assert_eq!(
        (run.flags.network, run.flags.security),
        (RunNetwork::Host, Security::Insecure)
    );
    assert!(error("RUN --network=a --network=b x").contains("more than once"));
    assert!(error("RUN --mount x").contains("needs a value"));
    assert!(error("RUN --network=bridge x").contains("invalid network mode \"bridge\""));
    assert!(error("RUN --network=$NET x").contains("invalid network mode"));
    assert!(error("RUN --security=privileged x").contains("security \"privileged\" is not valid"));
    assert_eq!(
        error("RUN --mount=type=bind,target=/x,mode=0700 x"),
        "--mount=type=bind,target=/x,mode=0700: mode not allowed for \"bind\" type mounts"
    );
}

#[test]
fn run_needs_a_command() {
    assert!(error("RUN").contains("RUN requires a command"));
    assert!(error("RUN --network=none").contains("RUN requires a command"));
    assert!(error("RUN []").contains("no command"));
}

#[test]
fn run_exec_form_keeps_heredoc_like_words_as_arguments() {
    assert_eq!(
        parsed(r#"RUN ["cat", "<<EOF"]"#),
        Command::Run(Run {
            command: CommandLine::Exec(strings(&["cat", "<<EOF"])),
            flags: RunFlags::default(),
            heredocs: vec![],
        })
    );
}

#[test]
fn cmd_and_entrypoint() {
    assert_eq!(
        parsed("CMD [\"a\", \"b\"]"),
        Command::Cmd(CommandLine::Exec(strings(&["a", "b"])))
    );
    assert_eq!(parsed("CMD []"), Command::Cmd(CommandLine::Exec(vec![])));
    assert_eq!(
        parsed("CMD echo  hi"),
        Command::Cmd(CommandLine::Shell("echo  hi".into()))
    );
    assert_eq!(
        parsed("ENTRYPOINT [\"/entry.sh\"]"),
        Command::Entrypoint(CommandLine::Exec(strings(&["/entry.sh"])))
    );
    assert!(error("CMD").contains("CMD requires a command"));
    assert!(error("ENTRYPOINT").contains("ENTRYPOINT requires a command"));
    let message = error("CMD --help");
    assert_eq!(message, "unknown flag --help: CMD takes no flags");
}

#[test]
fn shell_requires_json() {
    assert_eq!(
        parsed(r#"SHELL ["/bin/bash", "-o", "pipefail", "-c"]"#),
        Command::Shell(strings(&["/bin/bash", "-o", "pipefail", "-c"]))
    );
    assert!(error("SHELL /bin/bash -c").contains("JSON form"));
    assert!(error("SHELL [/bin/bash]").contains("not valid JSON"));
    assert!(error("SHELL []").contains("at least one argument"));
    assert!(error("SHELL").contains("at least one argument"));
}

#[test]
fn env_pairs_keep_quotes_raw() {
    assert_eq!(
        parsed(r#"ENV A=1 B="two words" C='$x' D=a\ b E="#),
        Command::Env(pairs(&[
            ("A", "1"),
            ("B", "\"two words\""),
            ("C", "'$x'"),
            ("D", r"a\ b"),
            ("E", ""),
        ]))
    );
}

#[test]
fn env_legacy_form_takes_the_rest_of_the_line() {
    assert_eq!(
        parsed("ENV PATH /usr/local/bin:$PATH  and more"),
        Command::Env(pairs(&[("PATH", "/usr/local/bin:$PATH  and more")]))
    );
    assert_eq!(parsed("ENV A\t\tb"), Command::Env(pairs(&[("A", "b")])));
}

#[test]
fn env_errors() {
    assert!(error("ENV").contains("at least one argument"));
    assert!(error("ENV A").contains("ENV A has no value"));
    assert!(error("ENV A=1 B").contains("can't find '=' in \"B\""));
    assert!(error("ENV =1").contains("names can not be blank"));
}

#[test]
fn label_is_like_env() {
    assert_eq!(
        parsed(r#"LABEL "com.example.vendor"="ACME" version=1.0"#),
        Command::Label(pairs(&[
            ("\"com.example.vendor\"", "\"ACME\""),
            ("version", "1.0")
        ]))
    );
    assert!(error("LABEL").contains("LABEL requires at least one argument"));
}

#[test]
fn arg_declarations() {
    assert_eq!(
        parsed(r#"ARG A B=2 C="x y" D="#),
        Command::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("2".into())
            },
            ArgDecl {
                name: "C".into(),
                default: Some("\"x y\"".into())
            },
            ArgDecl {
                name: "D".into(),
                default: Some(String::new())
            },
        ])
    );
    assert!(error("ARG").contains("at least one argument"));
    assert!(error("ARG =x").contains("names can not be blank"));
}

#[test]
fn single_argument_instructions_take_the_rest_of_the_line() {
    assert_eq!(
        parsed("WORKDIR /my dir"),
        Command::Workdir("/my dir".into())
    );
    assert_eq!(parsed("USER app:app"), Command::User("app:app".into()));
    assert_eq!(
        parsed("STOPSIGNAL SIGKILL"),
        Command::StopSignal("SIGKILL".into())
    );
    assert_eq!(
        parsed("MAINTAINER Jo <jo@x>"),
        Command::Maintainer("Jo <jo@x>".into())
    );
    for keyword in ["WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"] {
        let message = error(keyword);
        assert!(
            message.starts_with(&format!("{keyword} requires exactly one argument")),
            "{message}"
        );
    }
    assert!(error("USER --x=1 app").contains("USER takes no flags"));
}

#[test]
fn expose_words() {
    assert_eq!(
        parsed("EXPOSE 80 443/tcp  $P"),
        Command::Expose(strings(&["80", "443/tcp", "$P"]))
    );
    assert!(error("EXPOSE").contains("at least one port"));
}

#[test]
fn volume_json_or_words() {
    assert_eq!(
        parsed("VOLUME /a /b"),
        Command::Volume(strings(&["/a", "/b"]))
    );
    assert_eq!(
        parsed(r#"VOLUME ["/a b", " /c "]"#),
        Command::Volume(strings(&["/a b", "/c"]))
    );
    assert_eq!(parsed("VOLUME [/a]"), Command::Volume(strings(&["[/a]"])));
    assert!(error("VOLUME").contains("at least one argument"));
    assert!(error("VOLUME []").contains("at least one argument"));
    assert!(error(r#"VOLUME ["/a", " "]"#).contains("empty string"));
}

#[test]
fn healthcheck_through_the_dispatcher() {
    assert_eq!(
        parsed("HEALTHCHECK NONE"),
        Command::Healthcheck(Healthcheck::None)
    );
    let Command::Healthcheck(Healthcheck::Check { test, interval, .. }) =
        parsed("HEALTHCHECK --interval=5m CMD curl -f http://localhost/")
    else {
        panic!("expected a check");
    };
    assert_eq!(test, strings(&["CMD-SHELL", "curl -f http://localhost/"]));
    assert_eq!(interval, Some(std::time::Duration::from_secs(300)));
}

#[test]
fn onbuild_keeps_the_trigger_text() {
    assert_eq!(
        parsed("ONBUILD RUN make  all"),
        Command::Onbuild("RUN make  all".into())
    );
    assert_eq!(
        parsed("onbuild copy --from=x a b"),
        Command::Onbuild("copy --from=x a b".into())
    );
}

#[test]
fn onbuild_errors() {
    assert!(error("ONBUILD").contains("requires a trigger"));
    assert!(error("ONBUILD ONBUILD RUN x").contains("ONBUILD ONBUILD"));
    assert!(error("ONBUILD FROM x").contains("FROM isn't allowed as an ONBUILD trigger"));
    assert!(error("ONBUILD maintainer x").contains("MAINTAINER isn't allowed"));
    assert!(error("ONBUILD FOO x").contains("invalid ONBUILD trigger: unknown instruction"));
    assert!(error("ONBUILD COPY x").contains("invalid ONBUILD trigger"));
}

#[test]
fn flags_on_instructions_without_flags() {
    for line in [
        "ENV --a=b A=1",
        "LABEL --a x=y",
        "ARG --required A",
        "EXPOSE --x 80",
        "VOLUME --x /a",
        "SHELL --x [\"sh\"]",
        "ONBUILD --x RUN y",
        "STOPSIGNAL --x 9",
        "WORKDIR --x /a",
        "MAINTAINER --x me",
        "ENTRYPOINT --x a",
    ] {
        let message = error(line);
        assert!(message.contains("takes no flags"), "{line}: {message}");
        assert!(message.contains("unknown flag --"), "{line}: {message}");
    }
}

#[test]
fn backtick_escape_in_words() {
    assert_eq!(
        parse_command(r"ENV A=C:\dir B=x` y", '`').unwrap(),
        Command::Env(pairs(&[("A", r"C:\dir"), ("B", "x` y")]))
    );
}
