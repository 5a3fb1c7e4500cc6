//! The `dockless` command's own modules (the binary, not the library): flags in, library
//! calls, messages and exit codes out.
//!
//! - [`args`]: the command tree (clap); [`settings`]: flags and environment → library options;
//!   [`buildx`]: `docker buildx build`'s flags, carried out or refused each with why;
//! - [`output`]: the one printer (quiet / JSON / words) and the events it shows, with
//!   [`json`] (the types `--json` prints, one key style),
//!   [`progress`] (upload bars), [`steps`] (a build's steps: plain, rawjson, quiet) and
//!   [`logging`] (diagnostics); [`results`]: `--iidfile`, `--metadata-file`, layout archives;
//!   [`interrupt`]: what a signal does;
//! - one file per command: [`build`], [`push`] (and [`multi`] for several platforms), [`auth`], [`template`] (`template build`),
//!   [`templates`] (`template status/list/delete`), [`store`] (`du`, `prune`, the size limit).

pub mod args;
mod auth;
mod build;
mod buildx;
pub mod interrupt;
mod json;
pub mod logging;
mod multi;
mod output;
mod progress;
mod push;
mod results;
mod settings;
mod steps;
mod store;
mod template;
mod templates;

use std::process::ExitCode;

use anyhow::Context as _;
use dockless_registry::http::HttpPolicy;
use dockless_registry::remote::RemoteAccess;
use dockless_registry::{CredentialEnv, Reference, RegistrySettings};

use args::{AuthCommand, Cli, Command, TemplateCommand};

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let quiet = cli.quiet;
    let http = settings::http_policy(&cli.http).map_err(usage)?;
    let limit = store::limit_for(&cli.command)?;
    let outcome = run_command(cli.command, quiet, http);
    if let Some(limit) = limit
        && dockless_oci::cancel::requested().is_none()
    {
        store::keep_within(limit, quiet);
    }
    outcome
}

/// Runs `command`; every HTTP request it makes follows `http`.
fn run_command(command: Command, quiet: bool, http: HttpPolicy) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(args) => build::run(&args, quiet, http),
        Command::Push(args) => push::run(&args, quiet, http),
        Command::Auth(AuthCommand::Status(args)) => auth::status(&args, http),
        Command::Template(TemplateCommand::Build(args)) => template::build(&args, quiet, http),
        Command::Template(TemplateCommand::Status(args)) => templates::status(&args, quiet, http),
        Command::Template(TemplateCommand::List(args)) => templates::list(&args, http),
        Command::Template(TemplateCommand::Delete(args)) => templates::delete(&args, http),
        Command::Du(args) => store::du(&args),
        Command::Prune(args) => store::prune(&args, quiet),
    }
}

/// The exit code and message of a failed command: 2 for a usage error (as clap's own), else 1.
pub fn failure(error: &anyhow::Error) -> ExitCode {
    // Broken pipe on stdout (`dockless … | head`) is not a failure worth a message.
    if error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", render(error));
    if error.downcast_ref::<UsageError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// The error and its causes on one line, without repeating a cause its parent already printed.
fn render(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// A flag's value that cannot be used as given: exit 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UsageError(Box<dyn std::error::Error + Send + Sync>);

/// Marks `error` as a usage error.
fn usage(error: impl std::error::Error + Send + Sync + 'static) -> anyhow::Error {
    UsageError(Box::new(error)).into()
}

/// `--to`/`--image`: a reference that does not parse is a usage error.
fn target_reference(text: &str) -> anyhow::Result<Reference> {
    Reference::parse(text).map_err(usage)
}

/// A flag's value in a form it cannot have.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

/// Settings errors about flags' values are usage errors; those about files or the
/// environment are not.
fn settings_error(error: settings::SettingsError) -> anyhow::Error {
    if error.is_usage() {
        usage(error)
    } else {
        error.into()
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

/// Registry access for a command that pushes to `first_target` first (if it pushes):
/// `--username`/`--password-stdin` (`upload`) give the credential for that target's registry.
fn remote_access(
    runtime: &tokio::runtime::Runtime,
    settings: RegistrySettings,
    upload: &args::UploadArgs,
    first_target: Option<&Reference>,
) -> anyhow::Result<RemoteAccess> {
    let explicit = match first_target {
        Some(target) => settings::explicit_credential(upload, target)?,
        None => None,
    };
    let credentials = CredentialEnv {
        helper_timeout: Some(settings.http.idle_timeout),
        ..CredentialEnv::from_process()
    };
    Ok(RemoteAccess::new(
        runtime.handle().clone(),
        settings,
        credentials,
        explicit,
    ))
}
