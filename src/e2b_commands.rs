//! `dockless auth status` and `dockless template build`: flags and the environment in, the E2B
//! library's flows out, messages on the terminal.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use dockless::build;
use dockless::e2b::api::{ApiClient, ApiRetry};
use dockless::e2b::config::TemplateConfig;
use dockless::e2b::credentials::{self, CredentialKind, E2bCredential};
use dockless::e2b::endpoints::Endpoints;
use dockless::e2b::env::E2bEnv;
use dockless::e2b::flows::{self, FlowInputs, FlowOutcome};
use dockless::e2b::status::format_entry;
use dockless::e2b::template::{TemplateFlags, TemplateSettings};
use dockless::e2b::writeback;
use dockless::push::{self, EarlyReport};
use dockless::registry::Reference;
use dockless::store::Store;
use secrecy::SecretString;
use serde_json::json;

use crate::app;
use crate::cli::{
    AuthStatusArgs, CompressionArg, CredentialKindArg, E2bCredentialArgs, FormatArg, ImageArgs,
    IsolationArg, NetworkArg, TemplateBuildArgs,
};
use crate::progress::PushProgressView;
use crate::settings;

/// How often the build status is asked for (E2B's CLI asks about twice a second).
const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub fn auth_status(args: &AuthStatusArgs) -> anyhow::Result<ExitCode> {
    let credential = resolve_credential(&args.credential, false)?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let value = json!({
            "kind": match credential.kind {
                CredentialKind::ApiKey => "api-key",
                CredentialKind::AccessToken => "access-token",
            },
            "source": credential.origin.to_string(),
            "lastFour": credential.last_four(),
            "flows": credential.kind.flows(),
        });
        writeln!(stdout, "{value}")?;
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
fn resolve_credential(
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

pub fn template_build(args: &TemplateBuildArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let env = E2bEnv::from_process();
    // Validate everything before building or sending anything.
    let config = TemplateConfig::load(&args.context)?;
    let flags = TemplateFlags {
        name: args.name.clone(),
        cpu_count: args.cpu,
        memory_mb: args.memory_mb,
        start_cmd: args.start_cmd.clone(),
        ready_cmd: args.ready_cmd.clone(),
        dockerfile: args.dockerfile.clone(),
    };
    let template = TemplateSettings::merge(config, &flags, env.team_id.as_deref())?;
    let endpoints = Endpoints::from_env(&env)?;
    let target = args.image.as_deref().map(Reference::parse).transpose()?;
    if target.is_none() && args.registry.username.is_some() {
        anyhow::bail!(
            "--username/--password-stdin are for --image's registry; the gateway flow authenticates with the E2B credential"
        );
    }
    let credential = resolve_credential(&args.credential, args.registry.password_stdin)?;
    let api = ApiClient::new(endpoints.api.clone(), credential, ApiRetry::default())?;

    let image_args = ImageArgs {
        dockerfile: args.dockerfile.clone(),
        build_args: args.build_args.clone(),
        platform: Some("linux/amd64".into()),
        format: FormatArg::Oci,
        compression: CompressionArg::Gzip,
        compression_level: None,
        isolation: IsolationArg::Auto,
        network: NetworkArg::Host,
        target: None,
    };
    let options = settings::image_options(&args.context, &image_args)?;
    let runtime = app::runtime()?;
    let remote = app::remote_access(&runtime, &args.registry, target.as_ref())?;
    let store = Store::open(Store::default_root())?;
    let view = PushProgressView::new(quiet || args.json);
    // With --image the push target is known now: layers go up while the build writes them.
    let (image, early) = match &target {
        Some(target) => {
            let client = remote.client(target)?;
            let early =
                push::EarlyUploads::start(runtime.handle(), client, target, view.callback());
            let built = early.build_beside(&store, target, |observer| {
                build::build_with(&options, &store, &remote, Some(observer))
            });
            let early = runtime.block_on(early.finish());
            (built?, early?)
        }
        None => (
            build::build(&options, &store, &remote)?,
            EarlyReport::default(),
        ),
    };
    flows::check_platform(&image)?;
    if !quiet && !args.json {
        eprintln!("Built {}", app::describe(&image));
    }

    let inputs = FlowInputs {
        settings: &template,
        store: &store,
        image: &image,
        remote: &remote,
        progress: view.callback(),
        poll_interval: POLL_INTERVAL,
        early,
    };
    let show_logs = !quiet;
    let mut on_log = |entry: &dockless::e2b::api::LogEntry| {
        if show_logs {
            eprintln!("{}", format_entry(entry));
        }
    };
    let outcome = match &target {
        Some(target) => runtime.block_on(flows::registry_flow(
            &api,
            inputs,
            target,
            args.share_registry_credentials,
            &mut on_log,
        )),
        None => {
            let dockerfile = build::locate_dockerfile(&args.context, args.dockerfile.as_deref())?;
            let text = std::fs::read_to_string(&dockerfile)
                .with_context(|| format!("could not read {}", dockerfile.display()))?;
            runtime.block_on(flows::gateway_flow(
                &api,
                &endpoints,
                inputs,
                text,
                &settings::registry_settings(&args.registry),
                &mut on_log,
            ))
        }
    };
    view.finish();
    let outcome = outcome?;
    if template.template_id.as_deref() != Some(outcome.template_id.as_str()) {
        let written = writeback::write_template_id(
            &args.context,
            &outcome.template_id,
            template.name.as_deref(),
            args.dockerfile
                .as_ref()
                .and_then(|p| p.strip_prefix(&args.context).ok())
                .and_then(|p| p.to_str()),
        )?;
        if written && !quiet && !args.json {
            eprintln!(
                "Wrote template_id = \"{}\" to {}",
                outcome.template_id,
                args.context.join("e2b.toml").display()
            );
        }
    }
    print_outcome(&outcome, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(outcome: &FlowOutcome, json: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if json {
        let value = json!({
            "templateID": outcome.template_id,
            "buildID": outcome.build_id,
            "image": outcome.image,
            "digest": outcome.digest,
            "status": outcome.status,
        });
        writeln!(stdout, "{value}")?;
    } else {
        writeln!(
            stdout,
            "Template {} built (build {}, {}): {}@{}",
            outcome.template_id, outcome.build_id, outcome.status, outcome.image, outcome.digest
        )?;
    }
    Ok(())
}
