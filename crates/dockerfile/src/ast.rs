//! The parsed form of a Dockerfile: one typed [`Command`] per instruction.
//!
//! Strings here are raw, as written: quotes, escapes and `$VAR` references are kept so that
//! [`Command::expand`](super::Command::expand) can apply Docker's word processing later, with the
//! variables in scope at that instruction.

use std::time::Duration;

use super::heredoc::Heredoc;
use super::run_flags::RunFlags;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub instructions: Vec<Instruction>,
    /// The escape character: `\` unless a `# escape=` directive chose `` ` ``.
    pub escape: char,
    /// The frontend a `# syntax=` directive names (which dockless does not fetch).
    pub syntax: Option<String>,
}

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The 1-based line where the instruction starts.
    pub line: usize,
    /// The instruction as written, continuation lines joined (escape and newline removed) and
    /// comment lines dropped; this is what image history records.
    pub text: String,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    /// `SHELL ["executable", "parameters"...]`; always JSON form.
    Shell(Vec<String>),
    Copy(Copy),
    Add(Add),
    Env(Vec<KeyValue>),
    Arg(Vec<ArgDecl>),
    Label(Vec<KeyValue>),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The trigger instruction as written after `ONBUILD` (e.g. `RUN make`).
    Onbuild(String),
    Maintainer(String),
}

impl Command {
    /// The instruction keyword in upper case, e.g. `COPY`.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Shell(_) => "SHELL",
            Command::Copy(_) => "COPY",
            Command::Add(_) => "ADD",
            Command::Env(_) => "ENV",
            Command::Arg(_) => "ARG",
            Command::Label(_) => "LABEL",
            Command::Workdir(_) => "WORKDIR",
            Command::User(_) => "USER",
            Command::Expose(_) => "EXPOSE",
            Command::Volume(_) => "VOLUME",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Onbuild(_) => "ONBUILD",
            Command::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// The two forms of RUN, CMD and ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// JSON form: run these arguments directly, no shell.
    Exec(Vec<String>),
    /// Shell form: the raw text, to be run by the current SHELL.
    Shell(String),
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    /// The stage name, lower-cased as BuildKit does.
    pub stage_name: Option<String>,
    pub platform: Option<String>,
}

/// `COPY [flags] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<String>,
    pub dest: String,
    /// `--from`: a stage name, stage index or image; `None` copies from the build context.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--exclude`: patterns (`.dockerignore` syntax) of paths inside the sources to leave out.
    pub exclude: Vec<String>,
    /// `--parents`: keep each source's path (below a `/./` pivot if given) under `dest`.
    pub parents: bool,
    /// Sources written inline as heredocs (`COPY <<EOF /dest`): files named after them.
    pub inline: Vec<Heredoc>,
}

/// `ADD [flags] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub sources: Vec<String>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub link: bool,
    /// `--unpack[=bool]`: `None` when not given (archives from the context are unpacked, remote
    /// ones are not).
    pub unpack: Option<bool>,
    /// `--exclude`, as for COPY.
    pub exclude: Vec<String>,
    /// Sources written inline as heredocs, as for COPY.
    pub inline: Vec<Heredoc>,
}

/// `RUN [flags] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    /// `--mount`, `--network` and `--security`, typed.
    pub flags: RunFlags,
    /// The heredocs the shell form opens, with their bodies.
    pub heredocs: Vec<Heredoc>,
}

/// One `key=value` of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One `name[=default]` of ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any check inherited from the base image.
    None,
    /// `HEALTHCHECK [flags] CMD ...`. A zero duration or zero retries is stored as `None`, as
    /// BuildKit treats zero as "not set" (the config then inherits the default).
    Check {
        /// `["CMD", args..]` (JSON form) or `["CMD-SHELL", command]` (shell form).
        test: Vec<String>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}
