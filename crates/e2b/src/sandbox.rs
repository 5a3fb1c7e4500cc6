//! What E2B drops from an image, given back to it the way E2B's own Dockerfile path does.
//!
//! E2B keeps only `Env` from a `fromImage` image's config; a sandbox runs as `user` in
//! `/home/user` unless the build's steps say otherwise, and starts nothing unless `startCmd`
//! says so. E2B's SDK (`packages/js-sdk/src/template/dockerfileParser.ts`) turns a Dockerfile's
//! final USER and WORKDIR into steps, using `user` and `/home/user` when the Dockerfile sets
//! none, and its CMD/ENTRYPOINT into the start command with a 20 s ready wait (`sleep 20`).
//!
//! dockless reads the values from the built image's config (so variables are expanded and
//! Docker's ENTRYPOINT+CMD meaning is kept) and asks the build whether the stage it built (the
//! `--target`, else the last) sets them itself, so an instruction inherited from the base image
//! counts as "not set", as in the SDK. The Dockerfile is not read a second time.

pub(crate) use dockless_build::StageSets;
use dockless_oci::image::config::ContainerConfig;

use super::api::Step;

pub(crate) const DEFAULT_USER: &str = "user";
pub(crate) const DEFAULT_WORKDIR: &str = "/home/user";
/// `waitForTimeout(20_000)` in the SDK.
pub(crate) const READY_AFTER_START: &str = "sleep 20";

/// The sandbox's user, directory and (if the image says) start command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxStart {
    pub user: String,
    pub workdir: String,
    /// The image's CMD/ENTRYPOINT as one shell command line, when the Dockerfile sets one.
    pub image_command: Option<String>,
}

impl SandboxStart {
    pub fn new(config: &ContainerConfig, sets: StageSets) -> Self {
        let set = |given: bool, value: &Option<String>, default: &str| {
            value
                .as_deref()
                .filter(|v| given && !v.trim().is_empty())
                .unwrap_or(default)
                .to_owned()
        };
        SandboxStart {
            user: set(sets.user, &config.user, DEFAULT_USER),
            workdir: set(sets.workdir, &config.working_dir, DEFAULT_WORKDIR),
            image_command: sets.command.then(|| command_line(config)).flatten(),
        }
    }

    /// The steps sent after `fromImage`: the final user, then the final directory (the order
    /// in which the SDK adds its defaults).
    pub fn steps(&self) -> Vec<Step> {
        vec![Step::user(&self.user), Step::workdir(&self.workdir)]
    }
}

/// ENTRYPOINT then CMD, as Docker runs them, written as a shell command line: a shell-form
/// instruction (`[shell…, "-c", text]`) gives its text back; exec-form words are quoted when
/// the shell would otherwise split or expand them.
fn command_line(config: &ContainerConfig) -> Option<String> {
    let default_shell = ["/bin/sh".to_owned(), "-c".to_owned()];
    let shell = config.shell.as_deref().unwrap_or(&default_shell);
    let shell_text = |words: &[String]| {
        (words.len() == shell.len() + 1 && words.starts_with(shell))
            .then(|| words[shell.len()].clone())
    };
    let entrypoint = config.entrypoint.as_deref().unwrap_or_default();
    let cmd = config.cmd.as_deref().unwrap_or_default();
    if !entrypoint.is_empty() {
        // A shell-form ENTRYPOINT ignores CMD.
        if let Some(text) = shell_text(entrypoint) {
            return Some(text);
        }
        let words: Vec<&String> = entrypoint.iter().chain(cmd).collect();
        return Some(join(&words));
    }
    if cmd.is_empty() {
        return None;
    }
    shell_text(cmd).or_else(|| Some(join(&cmd.iter().collect::<Vec<_>>())))
}

fn join(words: &[&String]) -> String {
    words
        .iter()
        .map(|word| quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        entrypoint: Option<&[&str]>,
        cmd: Option<&[&str]>,
        user: Option<&str>,
        dir: Option<&str>,
    ) -> ContainerConfig {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect();
        ContainerConfig {
            entrypoint: entrypoint.map(words),
            cmd: cmd.map(words),
            user: user.map(str::to_owned),
            working_dir: dir.map(str::to_owned),
            ..ContainerConfig::default()
        }
    }

    const ALL: StageSets = StageSets {
        user: true,
        workdir: true,
        command: true,
    };

    #[test]
    fn the_stage_decides_what_counts() {
        let dockerfile = dockless_dockerfile::parse(
            "FROM a AS build\nUSER x\nCMD [\"y\"]\nFROM b\nWORKDIR /w\nRUN true\n",
        )
        .unwrap();
        assert_eq!(
            StageSets::of(&dockerfile.instructions[4..]),
            StageSets {
                user: false,
                workdir: true,
                command: false
            }
        );
        // Inherited values are E2B's defaults, as in the SDK.
        let inherited = config(None, Some(&["/bin/bash"]), Some("node"), Some("/app"));
        let start = SandboxStart::new(&inherited, StageSets::default());
        assert_eq!(
            (
                start.user.as_str(),
                start.workdir.as_str(),
                start.image_command.clone()
            ),
            (DEFAULT_USER, DEFAULT_WORKDIR, None)
        );
        assert_eq!(
            start.steps(),
            [Step::user("user"), Step::workdir("/home/user")]
        );
    }

    type Words<'a> = Option<&'a [&'a str]>;

    #[test]
    fn commands_as_docker_runs_them() {
        let cases: [(Words, Words, Option<&str>); 6] = [
            (None, Some(&["node", "server.js"]), Some("node server.js")),
            (
                None,
                Some(&["/bin/sh", "-c", "npm start && echo ok"]),
                Some("npm start && echo ok"),
            ),
            (
                Some(&["python", "-m"]),
                Some(&["http.server", "8080"]),
                Some("python -m http.server 8080"),
            ),
            (
                Some(&["/bin/sh", "-c", "exec app"]),
                Some(&["ignored"]),
                Some("exec app"),
            ),
            (
                None,
                Some(&["echo", "hello world", "it's"]),
                Some("echo 'hello world' 'it'\\''s'"),
            ),
            (None, None, None),
        ];
        for (entrypoint, cmd, expected) in cases {
            let start = SandboxStart::new(&config(entrypoint, cmd, None, None), ALL);
            assert_eq!(
                start.image_command.as_deref(),
                expected,
                "{entrypoint:?} {cmd:?}"
            );
        }
        let start = SandboxStart::new(&config(None, None, Some("app"), Some("/srv")), ALL);
        assert_eq!(
            (start.user.as_str(), start.workdir.as_str()),
            ("app", "/srv")
        );
    }
}
