//! `dockless auth status`, and the one E2B credential every E2B command resolves.

use std::io::{Read, Write};
use std::process::ExitCode;

use super::args::{AuthStatusArgs, CredentialKindArg, E2bCredentialArgs};
use super::json::AuthStatusResult;
use anyhow::Context as _;
use dockless_e2b::credentials::{self, CredentialKind, E2bCredential};
use dockless_e2b::env::E2bEnv;
use secrecy::SecretString;

pub fn status(args: &AuthStatusArgs) -> anyhow::Result<ExitCode> {
    let credential = resolve_credential(&args.credential, false)?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let result = AuthStatusResult::of(&credential);
        writeln!(stdout, "{}", serde_json::to_string(&result)?)?;
    } else {
        writeln!(stdout, "E2B credential: {}", credential.kind)?;
        writeln!(stdout, "  source: {}", credential.origin)?;
        writeln!(stdout, "  ends in: {}", credential.last_four())?;
        writeln!(stdout, "  can drive: {}", credential.kind.flows())?;
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
