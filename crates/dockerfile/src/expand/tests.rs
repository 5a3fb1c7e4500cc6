use std::collections::HashMap;

use super::*;
use crate::{Healthcheck, Run, parse};

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Parses one instruction (after a FROM) and expands it with `scope`.
fn expand_line(line: &str, scope: &HashMap<String, String>) -> Result<Command, ExpandError> {
    let dockerfile = parse(&format!("FROM scratch\n{line}")).unwrap();
    let lookup = |name: &str| scope.get(name).cloned();
    dockerfile.instructions[1]
        .command
        .expand(dockerfile.escape, &lookup)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn env_keys_and_values_lose_quotes_and_gain_values() {
    let scope = vars(&[("HOME", "/root"), ("K", "KEY")]);
    assert_eq!(
        expand_line(r#"ENV A="$HOME/x y" B='$HOME' ${K}2=v C=a\ b"#, &scope).unwrap(),
        Command::Env(vec![
            KeyValue {
                key: "A".into(),
                value: "/root/x y".into()
            },
            KeyValue {
                key: "B".into(),
                value: "$HOME".into()
            },
            KeyValue {
                key: "KEY2".into(),
                value: "v".into()
            },
            KeyValue {
                key: "C".into(),
                value: "a b".into()
            },
        ])
    );
}

#[test]
fn env_sees_the_variables_from_before_the_instruction() {
    // The caller passes a snapshot taken before the instruction, so B sees the old A.
    let dockerfile = parse("FROM scratch\nENV A=1\nENV A=2 B=$A\n").unwrap();
    let mut scope: HashMap<String, String> = HashMap::new();
    let mut results = Vec::new();
    for instruction in &dockerfile.instructions[1..] {
        let snapshot = scope.clone();
        let lookup = |name: &str| snapshot.get(name).cloned();
        let Command::Env(pairs) = instruction
            .command
            .expand(dockerfile.escape, &lookup)
            .unwrap()
        else {
            panic!("expected ENV");
        };
        for pair in pairs {
            scope.insert(pair.key.clone(), pair.value.clone());
            results.push((pair.key, pair.value));
        }
    }
    assert_eq!(
        results,
        vec![
            ("A".into(), "1".into()),
            ("A".into(), "2".into()),
            ("B".into(), "1".into())
        ]
    );
}

#[test]
fn env_legacy_value_is_one_word_with_spaces() {
    let scope = vars(&[("X", "x")]);
    assert_eq!(
        expand_line("ENV A  $X and \"quoted  text\"", &scope).unwrap(),
        Command::Env(vec![KeyValue {
            key: "A".into(),
            value: "x and quoted  text".into()
        }])
    );
}

#[test]
fn label_and_arg() {
    let scope = vars(&[("V", "1.0")]);
    assert_eq!(
        expand_line(r#"LABEL "org.version"="$V""#, &scope).unwrap(),
        Command::Label(vec![KeyValue {
            key: "org.version".into(),
            value: "1.0".into()
        }])
    );
    assert_eq!(
        expand_line("ARG A B=$V C=${U:-d}", &scope).unwrap(),
        Command::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("1.0".into())
            },
            ArgDecl {
                name: "C".into(),
                default: Some("d".into())
            },
        ])
    );
    assert_eq!(
        expand_line("ARG E=$UNSET", &scope).unwrap(),
        Command::Arg(vec![ArgDecl {
            name: "E".into(),
            default: Some(String::new())
        }])
    );
}

#[test]
fn copy_fields() {
    let scope = vars(&[
        ("SRC", "app"),
        ("DST", "/opt"),
        ("U", "1000"),
        ("STAGE", "build"),
        ("M", "755"),
    ]);
    assert_eq!(
        expand_line(
            "COPY --from=$STAGE --chown=$U:$U --chmod=$M --link $SRC/*.go ${DST}/",
            &scope
        )
        .unwrap(),
        Command::Copy(Copy {
            sources: strings(&["app/*.go"]),
            dest: "/opt/".into(),
            from: Some("build".into()),
            chown: Some("1000:1000".into()),
            chmod: Some("755".into()),
            link: true,
            inline: vec![],
            exclude: vec![],
            parents: false,
        })
    );
}

#[test]
fn copy_json_sources_are_expanded_too() {
    let scope = vars(&[("F", "my file")]);
    assert_eq!(
        expand_line(r#"COPY ["$F", "/d/"]"#, &scope).unwrap(),
        Command::Copy(Copy {
            sources: strings(&["my file"]),
            dest: "/d/".into(),
            from: None,
            chown: None,
            chmod: None,
            link: false,
            inline: vec![],
            exclude: vec![],
            parents: false,
        })
    );
}

#[test]
fn flags_that_expand_to_nothing_are_dropped() {
    let scope = vars(&[]);
    let Command::Copy(copy) = expand_line("COPY --chown=$NOBODY --from=$NONE a b", &scope).unwrap()
    else {
        panic!("expected COPY");
    };
    assert_eq!((copy.chown, copy.from), (None, None));
}

#[test]
fn add_fields() {
    let scope = vars(&[("SUM", "sha256:0123"), ("URL", "https://example.com/a.tgz")]);
    assert_eq!(
        expand_line(
            "ADD --checksum=$SUM --keep-git-dir --chown=${U:-0} $URL /x",
            &scope
        )
        .unwrap(),
        Command::Add(Add {
            sources: strings(&["https://example.com/a.tgz"]),
            dest: "/x".into(),
            chown: Some("0".into()),
            chmod: None,
            checksum: Some("sha256:0123".into()),
            keep_git_dir: true,
            link: false,
            unpack: None,
            inline: vec![],
            exclude: vec![],
        })
    );
}

#[test]
fn single_word_instructions() {
    let scope = vars(&[("D", "/srv"), ("U", "app"), ("S", "SIGQUIT")]);
    assert_eq!(
        expand_line("WORKDIR $D/\"my dir\"", &scope).unwrap(),
        Command::Workdir("/srv/my dir".into())
    );
    assert_eq!(
        expand_line("USER ${U}:${U}", &scope).unwrap(),
        Command::User("app:app".into())
    );
    assert_eq!(
        expand_line("STOPSIGNAL $S", &scope).unwrap(),
        Command::StopSignal("SIGQUIT".into())
    );
    assert_eq!(
        expand_line("VOLUME $D/a \"$D\"", &scope).unwrap(),
        Command::Volume(strings(&["/srv/a", "/srv"]))
    );
}

#[test]
fn expose_may_split_into_several_ports() {
    let scope = vars(&[("PORTS", "80 443/tcp"), ("ONE", "8080")]);
    assert_eq!(
        expand_line("EXPOSE $PORTS $ONE/udp \"$ONE\"", &scope).unwrap(),
        Command::Expose(strings(&["80", "443/tcp", "8080/udp", "8080"]))
    );
    assert_eq!(
        expand_line("EXPOSE $NONE", &scope).unwrap(),
        Command::Expose(vec![])
    );
}

#[test]
fn from_image_name_and_platform() {
    let dockerfile = parse("ARG V=3\nARG P\nFROM --platform=$P alpine:$V AS base").unwrap();
    let scope = vars(&[("V", "3.20"), ("P", "linux/arm64")]);
    let lookup = |name: &str| scope.get(name).cloned();
    assert_eq!(
        dockerfile.instructions[2]
            .command
            .expand(dockerfile.escape, &lookup)
            .unwrap(),
        Command::From(From {
            image: "alpine:3.20".into(),
            stage_name: Some("base".into()),
            platform: Some("linux/arm64".into()),
        })
    );
    let empty = |_: &str| None;
    let Command::From(from) = dockerfile.instructions[2]
        .command
        .expand('\\', &empty)
        .unwrap()
    else {
        panic!("expected FROM");
    };
    assert_eq!((from.image.as_str(), from.platform), ("alpine:", None));
}

#[test]
fn commands_run_by_a_shell_are_not_expanded() {
    let scope = vars(&[("X", "expanded")]);
    for line in [
        "RUN echo $X",
        "RUN [\"echo\", \"$X\"]",
        "CMD echo $X",
        "ENTRYPOINT [\"$X\"]",
        "SHELL [\"$X\"]",
        "HEALTHCHECK CMD echo $X",
        "ONBUILD RUN echo $X",
        "MAINTAINER $X",
    ] {
        let dockerfile = parse(&format!("FROM scratch\n{line}")).unwrap();
        let command = &dockerfile.instructions[1].command;
        assert_eq!(&expand_line(line, &scope).unwrap(), command, "{line}");
    }
    // RUN's mount values wait for the WORKDIR too: `RunFlags::mounts` expands them.
    let line = "RUN --mount=type=cache,target=$X echo";
    let written = parse(&format!("FROM scratch\n{line}"))
        .unwrap()
        .instructions[1]
        .command
        .clone();
    assert_eq!(expand_line(line, &scope).unwrap(), written);
    let Command::Run(Run { flags, .. }) = written else {
        panic!("{written:?}")
    };
    let mounts = flags
        .mounts('\\', &|name| scope.get(name).cloned(), "/")
        .unwrap();
    assert_eq!(mounts[0].target, format!("/{}", scope["X"]));
    assert_eq!(
        expand_line("HEALTHCHECK NONE", &scope).unwrap(),
        Command::Healthcheck(Healthcheck::None)
    );
}

#[test]
fn errors_name_the_word_and_the_variable() {
    let scope = vars(&[]);
    let error = expand_line("WORKDIR ${DIR:?set DIR first}", &scope).unwrap_err();
    assert_eq!(error.word, "${DIR:?set DIR first}");
    assert_eq!(error.message, "DIR: set DIR first");
    let error = expand_line("COPY \"a b\" /x", &scope).unwrap_err();
    assert_eq!(error.word, "\"a");
    assert!(error.message.contains("double quote"), "{error}");
    let error = expand_line("ENV A=${B", &scope).unwrap_err();
    assert!(error.to_string().contains("missing '}'"), "{error}");
}

#[test]
fn backtick_escape_file_expands_with_backtick() {
    let dockerfile =
        parse("# escape=`\nFROM scratch\nENV P=C:\\app `\n    Q=`$X\nWORKDIR $P\\bin").unwrap();
    assert_eq!(dockerfile.escape, '`');
    let scope = vars(&[("P", r"C:\app")]);
    let lookup = |name: &str| scope.get(name).cloned();
    assert_eq!(
        dockerfile.instructions[1]
            .command
            .expand('`', &lookup)
            .unwrap(),
        Command::Env(vec![
            KeyValue {
                key: "P".into(),
                value: r"C:\app".into()
            },
            KeyValue {
                key: "Q".into(),
                value: "$X".into()
            },
        ])
    );
    assert_eq!(
        dockerfile.instructions[2]
            .command
            .expand('`', &lookup)
            .unwrap(),
        Command::Workdir(r"C:\app\bin".into())
    );
}
