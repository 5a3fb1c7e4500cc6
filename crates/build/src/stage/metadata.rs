//! Instructions that change only the image config (and the stage's ARG values): ARG, ENV,
//! LABEL, MAINTAINER, USER, CMD, ENTRYPOINT, SHELL, EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK,
//! ONBUILD. Each leaves an empty-layer history record.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::dispatch::StageExecutor;
use super::{Invalid, StepError};
use dockless_dockerfile::{Command, CommandLine, Healthcheck};

impl StageExecutor<'_, '_> {
    /// Applies a config-only instruction (other than ARG) to the stage.
    pub(super) fn apply_metadata(&mut self, command: Command) -> Result<(), StepError> {
        let stage = &mut self.stage;
        let config = &mut stage.config.config;
        match command {
            Command::Env(pairs) => {
                for pair in pairs {
                    config.set_env(&pair.key, &pair.value);
                }
            }
            Command::Label(pairs) => {
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                for pair in pairs {
                    labels.insert(pair.key, pair.value);
                }
            }
            Command::Maintainer(name) => stage.config.author = Some(name),
            Command::User(user) => config.user = Some(user),
            Command::Cmd(line) => {
                config.cmd = Some(command_line(line, &stage.shell));
                stage.cmd_set_here = true;
            }
            Command::Entrypoint(line) => {
                config.entrypoint = Some(command_line(line, &stage.shell));
                if !stage.cmd_set_here {
                    config.cmd = None;
                }
            }
            Command::Shell(shell) => {
                stage.shell = shell.clone();
                config.shell = Some(shell);
            }
            Command::Expose(ports) => {
                let exposed = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for port in ports {
                    for p in expand_port(&port)? {
                        exposed.insert(p, json!({}));
                    }
                }
            }
            Command::Volume(volumes) => {
                let map = config.volumes.get_or_insert_with(BTreeMap::new);
                for v in volumes {
                    if v.is_empty() {
                        return Err(Invalid("VOLUME needs a non-empty path".into()).into());
                    }
                    map.insert(v, json!({}));
                }
            }
            Command::StopSignal(signal) => config.stop_signal = Some(signal),
            Command::Healthcheck(check) => config.healthcheck = Some(healthcheck_json(check)),
            Command::Onbuild(trigger) => config.on_build.get_or_insert_with(Vec::new).push(trigger),
            Command::From(_)
            | Command::Arg(_)
            | Command::Run(_)
            | Command::Copy(_)
            | Command::Add(_)
            | Command::Workdir(_) => {
                unreachable!(
                    "ARG and the instructions that may write a layer are applied elsewhere"
                )
            }
        }
        Ok(())
    }

    /// ARG: each name takes the build argument given, else its default, else the global ARG's,
    /// else keeps the value it already has: BuildKit's `dispatchArg` sets nothing then, so a
    /// stage built on another keeps what that stage gave the name.
    pub(super) fn declare_args(&mut self, decls: Vec<dockless_dockerfile::ArgDecl>) {
        for decl in decls {
            self.used_args.insert(decl.name.clone());
            let value = self
                .build
                .options
                .build_args
                .get(&decl.name)
                .cloned()
                .or(decl.default)
                .or_else(|| self.global_args.get(&decl.name).cloned().flatten())
                .or_else(|| self.stage.args.get(&decl.name).cloned().flatten());
            self.stage.args.insert(decl.name, value);
        }
    }
}

/// The exec form as given; the shell form wrapped in the current SHELL (as Docker does).
pub(super) fn command_line(line: CommandLine, shell: &[String]) -> Vec<String> {
    match line {
        CommandLine::Exec(args) => args,
        CommandLine::Shell(text) => shell.iter().cloned().chain([text]).collect(),
    }
}

/// An EXPOSE value Docker would refuse.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("EXPOSE {0}: protocol must be tcp, udp or sctp")]
    Protocol(String),
    #[error("EXPOSE {0}: expected PORT[-PORT][/PROTOCOL] with ports from 1 to 65535")]
    Ports(String),
}

/// `80` → `80/tcp`; `53/udp`; `8000-8002` → three ports, as Docker records them.
fn expand_port(spec: &str) -> Result<Vec<String>, PortError> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(PortError::Protocol(spec.to_owned()));
    }
    let bad = || PortError::Ports(spec.to_owned());
    let parse = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Docker's Healthcheck object (durations in nanoseconds).
fn healthcheck_json(check: Healthcheck) -> Value {
    match check {
        Healthcheck::None => json!({"Test": ["NONE"]}),
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let mut object = serde_json::Map::new();
            object.insert("Test".into(), json!(test));
            for (key, value) in [
                ("Interval", interval),
                ("Timeout", timeout),
                ("StartPeriod", start_period),
                ("StartInterval", start_interval),
            ] {
                if let Some(d) = value {
                    object.insert(key.into(), json!(d.as_nanos() as u64));
                }
            }
            if let Some(r) = retries {
                object.insert("Retries".into(), json!(r));
            }
            Value::Object(object)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_expand_like_docker() {
        assert_eq!(expand_port("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_port("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            expand_port("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expand_port("0").is_err());
        assert!(expand_port("70000").is_err());
        assert!(expand_port("80/xyz").is_err());
        assert!(expand_port("9-8").is_err());
    }
}
