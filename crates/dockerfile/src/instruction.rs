//! From one logical line to a typed [`Command`], instruction by instruction, following
//! BuildKit's line parsers and `instructions/parse.go`.

use super::args::{JsonArgs, json_array, quoted_words, whitespace_words};
use super::copy::{parse_add, parse_copy};
use super::flags::{FlagKind, check_flags};
use super::healthcheck::parse_healthcheck;
use super::split::{is_separator, split_line};
use super::{ArgDecl, Command, CommandLine, From, KeyValue, Run, RunFlags};

const INSTRUCTIONS: &str = "ADD, ARG, CMD, COPY, ENTRYPOINT, ENV, EXPOSE, FROM, HEALTHCHECK, \
                            LABEL, MAINTAINER, ONBUILD, RUN, SHELL, STOPSIGNAL, USER, VOLUME, WORKDIR";

const RUN_FLAGS: &[(&str, FlagKind)] = &[
    ("mount", FlagKind::Repeated),
    ("network", FlagKind::Value),
    ("security", FlagKind::Value),
];

const FROM_FLAGS: &[(&str, FlagKind)] = &[("platform", FlagKind::Value)];

/// Parses one logical line; the error message is completed with the line number by the caller.
pub(crate) fn parse_command(line: &str, escape: char) -> Result<Command, String> {
    let split = split_line(line);
    let args = split.args.as_str();
    let flags = split.flags.as_slice();
    let keyword = split.keyword.to_uppercase();
    let keyword = keyword.as_str();
    match split.keyword.as_str() {
        "from" => parse_from(args, flags),
        "run" => parse_run(args, flags, escape),
        "cmd" => {
            no_flags(keyword, flags)?;
            command_line(keyword, args).map(Command::Cmd)
        }
        "entrypoint" => {
            no_flags(keyword, flags)?;
            command_line(keyword, args).map(Command::Entrypoint)
        }
        "shell" => {
            no_flags(keyword, flags)?;
            parse_shell(args).map(Command::Shell)
        }
        "copy" => parse_copy(args, flags),
        "add" => parse_add(args, flags),
        "env" => {
            no_flags(keyword, flags)?;
            key_values(keyword, args, escape).map(Command::Env)
        }
        "label" => {
            no_flags(keyword, flags)?;
            key_values(keyword, args, escape).map(Command::Label)
        }
        "arg" => {
            no_flags(keyword, flags)?;
            parse_arg(args, escape).map(Command::Arg)
        }
        "workdir" => one_argument(keyword, args, flags, "/app").map(Command::Workdir),
        "user" => one_argument(keyword, args, flags, "1000:1000").map(Command::User),
        "stopsignal" => one_argument(keyword, args, flags, "SIGTERM").map(Command::StopSignal),
        "maintainer" => one_argument(keyword, args, flags, "name").map(Command::Maintainer),
        "expose" => {
            no_flags(keyword, flags)?;
            let ports = whitespace_words(args);
            if ports.is_empty() {
                return Err("EXPOSE requires at least one port: e.g. EXPOSE 80 443/tcp".to_string());
            }
            Ok(Command::Expose(ports))
        }
        "volume" => {
            no_flags(keyword, flags)?;
            parse_volume(args).map(Command::Volume)
        }
        "healthcheck" => parse_healthcheck(args, flags).map(Command::Healthcheck),
        "onbuild" => {
            no_flags(keyword, flags)?;
            parse_onbuild(args, escape).map(Command::Onbuild)
        }
        _ => Err(format!(
            "unknown instruction {keyword:?}: expected one of {INSTRUCTIONS}"
        )),
    }
}

fn no_flags(keyword: &str, flags: &[String]) -> Result<(), String> {
    check_flags(keyword, flags, &[]).map(|_| ())
}

fn parse_from(args: &str, flags: &[String]) -> Result<Command, String> {
    let flags = check_flags("FROM", flags, FROM_FLAGS)?;
    let words = whitespace_words(args);
    let (image, stage_name) = match words.as_slice() {
        [image] => (image.clone(), None),
        [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            (image.clone(), Some(stage_name(name)?))
        }
        _ => {
            return Err(
                "FROM requires either one or three arguments: FROM [--platform=<platform>] <image> [AS <name>]"
                    .to_string(),
            );
        }
    };
    Ok(Command::From(From {
        image,
        stage_name,
        platform: flags.value("platform").filter(|p| !p.is_empty()),
    }))
}

/// Lower-cases a stage name and checks it against BuildKit's `^[a-z][a-z0-9-_.]*$`.
fn stage_name(name: &str) -> Result<String, String> {
    let lowered = name.to_lowercase();
    let mut chars = lowered.chars();
    let valid_start = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let valid_rest =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if valid_start && valid_rest {
        Ok(lowered)
    } else {
        Err(format!(
            "invalid name for build stage: {name:?}: it must start with a letter and contain only \
             letters, digits, '-', '_' and '.'"
        ))
    }
}

fn parse_run(args: &str, flags: &[String], escape: char) -> Result<Command, String> {
    let flags = RunFlags::parse(&check_flags("RUN", flags, RUN_FLAGS)?, escape)?;
    let command = command_line("RUN", args)?;
    match &command {
        CommandLine::Exec(arguments) if arguments.is_empty() => {
            return Err("RUN [] has no command to run: e.g. RUN [\"make\", \"all\"]".to_string());
        }
        CommandLine::Shell(_) | CommandLine::Exec(_) => {}
    }
    Ok(Command::Run(Run {
        command,
        flags,
        heredocs: Vec::new(),
    }))
}

/// RUN, CMD and ENTRYPOINT: a JSON array of strings is the exec form; anything else (including
/// text that only looks like JSON) is the shell form, as in BuildKit.
fn command_line(keyword: &str, args: &str) -> Result<CommandLine, String> {
    match json_array(args)? {
        JsonArgs::Strings(arguments) => Ok(CommandLine::Exec(arguments)),
        JsonArgs::Malformed(_) | JsonArgs::NotJson if args.is_empty() => Err(format!(
            "{keyword} requires a command: {keyword} [\"executable\", \"arg\"...] or {keyword} command arg..."
        )),
        JsonArgs::Malformed(_) | JsonArgs::NotJson => Ok(CommandLine::Shell(args.to_string())),
    }
}

fn parse_shell(args: &str) -> Result<Vec<String>, String> {
    const EXAMPLE: &str = "e.g. SHELL [\"/bin/sh\", \"-c\"]";
    match json_array(args)? {
        JsonArgs::Strings(shell) if shell.is_empty() => {
            Err(format!("SHELL requires at least one argument: {EXAMPLE}"))
        }
        JsonArgs::Strings(shell) => Ok(shell),
        JsonArgs::NotJson if args.is_empty() => {
            Err(format!("SHELL requires at least one argument: {EXAMPLE}"))
        }
        JsonArgs::NotJson => Err(format!(
            "SHELL requires the arguments in JSON form: {EXAMPLE}"
        )),
        JsonArgs::Malformed(reason) => Err(format!(
            "SHELL requires the arguments in JSON form ({EXAMPLE}); this is not valid JSON: {reason}"
        )),
    }
}

/// ENV and LABEL: `key=value...` (quotes kept for expansion), or the legacy `key value` form
/// where the value is the rest of the line.
fn key_values(keyword: &str, args: &str, escape: char) -> Result<Vec<KeyValue>, String> {
    let words = quoted_words(args, escape);
    let Some(first) = words.first() else {
        return Err(format!(
            "{keyword} requires at least one argument: {keyword} <key>=<value> ..."
        ));
    };
    if !first.contains('=') {
        let Some((key, value)) = args.split_once(is_separator) else {
            return Err(format!(
                "{keyword} {first} has no value: write {keyword} {first}=<value>"
            ));
        };
        return Ok(vec![KeyValue {
            key: key.to_string(),
            value: value.trim_start_matches(is_separator).to_string(),
        }]);
    }
    words
        .iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(format!("{keyword} names can not be blank: {word:?}")),
            Some((key, value)) => Ok(KeyValue {
                key: key.to_string(),
                value: value.to_string(),
            }),
            None => Err(format!(
                "{keyword}: can't find '=' in {word:?}; once one pair uses <key>=<value>, all \
                 must (e.g. {keyword} A=1 B=2)"
            )),
        })
        .collect()
}

fn parse_arg(args: &str, escape: char) -> Result<Vec<ArgDecl>, String> {
    let words = quoted_words(args, escape);
    if words.is_empty() {
        return Err("ARG requires at least one argument: ARG <name>[=<default>] ...".to_string());
    }
    words
        .iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(format!("ARG names can not be blank: {word:?}")),
            Some((name, default)) => Ok(ArgDecl {
                name: name.to_string(),
                default: Some(default.to_string()),
            }),
            None => Ok(ArgDecl {
                name: word.clone(),
                default: None,
            }),
        })
        .collect()
}

/// WORKDIR, USER, STOPSIGNAL and MAINTAINER take the rest of the line as one argument.
fn one_argument(
    keyword: &str,
    args: &str,
    flags: &[String],
    example: &str,
) -> Result<String, String> {
    no_flags(keyword, flags)?;
    if args.is_empty() {
        return Err(format!(
            "{keyword} requires exactly one argument: e.g. {keyword} {example}"
        ));
    }
    Ok(args.to_string())
}

fn parse_volume(args: &str) -> Result<Vec<String>, String> {
    let volumes = match json_array(args)? {
        JsonArgs::Strings(volumes) => volumes,
        JsonArgs::Malformed(_) | JsonArgs::NotJson => whitespace_words(args),
    };
    if volumes.is_empty() {
        return Err("VOLUME requires at least one argument: e.g. VOLUME /data".to_string());
    }
    volumes
        .into_iter()
        .map(|volume| {
            let volume = volume.trim();
            if volume.is_empty() {
                Err("VOLUME specified can not be an empty string".to_string())
            } else {
                Ok(volume.to_string())
            }
        })
        .collect()
}

/// ONBUILD keeps its trigger as text (it runs in a later build), but the trigger is parsed
/// now so that mistakes show up here rather than in someone else's build.
fn parse_onbuild(args: &str, escape: char) -> Result<String, String> {
    if args.is_empty() {
        return Err("ONBUILD requires a trigger instruction: e.g. ONBUILD RUN make".to_string());
    }
    let trigger = split_line(args).keyword.to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string());
        }
        "FROM" | "MAINTAINER" => {
            return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"));
        }
        _ => {}
    }
    parse_command(args, escape).map_err(|error| format!("invalid ONBUILD trigger: {error}"))?;
    Ok(args.to_string())
}

#[cfg(test)]
mod tests;
