//! `dockless auth status`, and the one E2B credential every E2B command resolves.

use std::io::{Read, Write};
use std::process::ExitCode;

use super::args::{AuthStatusArgs, CredentialKindArg, E2bCredentialArgs};
use super::json::AuthStatusResult;
use anyhow::Context as _;
use dockless_e2b::api::ApiClient;
use dockless_e2b::credentials::{self, CredentialKind, E2bCredential};
use dockless_e2b::endpoints::Endpoints;
use dockless_e2b::env::E2bEnv;
use dockless_registry::http::HttpPolicy;
use secrecy::SecretString;

use super::runtime;

pub fn status(args: &AuthStatusArgs, http: HttpPolicy) -> anyhow::Result<ExitCode> {
    let credential = resolve_credential(&args.credential, false)?;
    let summary = AuthStatusResult::of(&credential, args.check);
    let kind = credential.kind.to_string();
    if args.check {
        // A refusal is E2B's own words and what to do; the command then fails.
        let endpoints = Endpoints::from_env(&E2bEnv::from_process())?;
        let api = ApiClient::new(endpoints.api, credential, http)?;
        runtime()?.block_on(api.check_credential())?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&summary)?)?;
    } else {
        writeln!(stdout, "E2B credential: {kind}")?;
        writeln!(stdout, "  source: {}", summary.source)?;
        writeln!(stdout, "  ends in: {}", summary.last_four)?;
        writeln!(stdout, "  can drive: {}", summary.flows)?;
        let checked = if args.check {
            "accepted by E2B (GET /v2/templates answered)"
        } else {
            "not checked (--check asks E2B)"
        };
        writeln!(stdout, "  {checked}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The one credential, from stdin when asked, else from the environment and config file.
/// `stdin_taken`: standard input already carries something else (a registry password).
pub fn resolve_credential(
    args: &E2bCredentialArgs,
    stdin_taken: bool,
) -> anyhow::Result<E2bCredential> {
    let only = args.credential.map(|kind| match kind {
        CredentialKindArg::ApiKey => CredentialKind::ApiKey,
        CredentialKindArg::AccessToken => CredentialKind::AccessToken,
    });
    let stdin_kind = match (args.api_key_stdin, args.access_token_stdin) {
        (true, _) => Some(CredentialKind::ApiKey),
        (_, true) => Some(CredentialKind::AccessToken),
        _ => None,
    };
    if let (Some(given), Some(only)) = (stdin_kind, only)
        && given != only
    {
        anyhow::bail!(
            "--credential asks for an {only}, but standard input was said to hold an {given}; drop one of the two"
        );
    }
    let stdin = match stdin_kind {
        Some(kind) => {
            if stdin_taken {
                anyhow::bail!(
                    "--password-stdin and --{}-stdin both want standard input; give the E2B credential through E2B_API_KEY instead",
                    if kind == CredentialKind::ApiKey {
                        "api-key"
                    } else {
                        "access-token"
                    }
                );
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("could not read the E2B credential from standard input")?;
            Some((kind, SecretString::from(text)))
        }
        None => None,
    };
    let credential = credentials::resolve(&E2bEnv::from_process(), stdin, only)?;
    tracing::info!(credential = %credential, "E2B credential");
    Ok(credential)
}
