//! `dockless auth status` and `dockless template build`: flags and the environment in, the E2B
//! library's flows out, messages on the terminal.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use dockless::build;
use dockless::e2b::api::BuildState;
use dockless::e2b::api::{ApiClient, ApiRetry, CreatedBuild, LogEntry};
use dockless::e2b::config::TemplateConfig;
use dockless::e2b::credentials::{self, CredentialKind, E2bCredential};
use dockless::e2b::endpoints::Endpoints;
use dockless::e2b::env::E2bEnv;
use dockless::e2b::flows::{self, FlowInputs, FlowOutcome, RegistryStart};
use dockless::e2b::pull::{self, PullEnv, PullKind};
use dockless::e2b::rules;
use dockless::e2b::sandbox::{SandboxStart, StageSets};
use dockless::e2b::status::{self, format_entry};
use dockless::e2b::template::{TemplateFlags, TemplateSettings};
use dockless::e2b::writeback;
use dockless::image::ImageConfig;
use dockless::push::{self, EarlyReport};
use dockless::registry::Reference;
use dockless::remote::RemoteAccess;
use dockless::store::Store;
use secrecy::SecretString;
use serde_json::json;

use crate::app;
use crate::cli::{
    AuthStatusArgs, CompressionArg, CredentialKindArg, E2bCredentialArgs, FormatArg, ImageArgs,
    IsolationArg, LogLevelArg, NetworkArg, RegistryAuthArg, TemplateBuildArgs, TemplateCommand,
    TemplateDeleteArgs, TemplateListArgs, TemplateStatusArgs,
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

/// `dockless template …`.
pub fn template(command: TemplateCommand, quiet: bool) -> anyhow::Result<ExitCode> {
    match command {
        TemplateCommand::Build(args) => template_build(&args, quiet),
        TemplateCommand::Status(args) => template_status(&args, quiet),
        TemplateCommand::List(args) => template_list(&args),
        TemplateCommand::Delete(args) => template_delete(&args),
    }
}

/// The API client the template commands other than `build` use.
fn api_client(args: &E2bCredentialArgs) -> anyhow::Result<ApiClient> {
    let endpoints = Endpoints::from_env(&E2bEnv::from_process())?;
    let credential = resolve_credential(args, false)?;
    Ok(ApiClient::new(
        endpoints.api,
        credential,
        ApiRetry::default(),
    )?)
}

fn template_status(args: &TemplateStatusArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let template_id = match &args.template {
        Some(id) => id.clone(),
        None => TemplateConfig::load(std::path::Path::new("."))?
            .and_then(|c| c.template_id)
            .context("which template? pass --template ID, or run in a directory whose e2b.toml has template_id")?,
    };
    let api = api_client(&args.credential)?;
    let level = match args.level {
        LogLevelArg::Debug => "debug",
        LogLevelArg::Info => "info",
        LogLevelArg::Warn => "warn",
        LogLevelArg::Error => "error",
    };
    let mut on_log = |entry: &LogEntry| {
        if !quiet {
            eprintln!("{}", format_entry(entry));
        }
    };
    let runtime = app::runtime()?;
    let state = if args.follow {
        runtime.block_on(status::follow_build_at(
            &api,
            &template_id,
            &args.build_id,
            POLL_INTERVAL,
            Some(level),
            &mut on_log,
        ))?
    } else {
        let info = runtime.block_on(status::current_status(
            &api,
            &template_id,
            &args.build_id,
            Some(level),
            &mut on_log,
        ))?;
        if info.status == BuildState::Error {
            let reason = info
                .reason
                .map(|r| r.message)
                .unwrap_or_else(|| "E2B gave no reason".into());
            anyhow::bail!(
                "E2B's build {} of template {template_id} failed: {reason}",
                args.build_id
            );
        }
        info.status
    };
    println!("{state}");
    Ok(ExitCode::SUCCESS)
}

fn template_list(args: &TemplateListArgs) -> anyhow::Result<ExitCode> {
    let api = api_client(&args.credential)?;
    let templates = app::runtime()?.block_on(api.list_templates())?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&templates)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        stdout,
        "{:<32} {:<22} {:<38} STATUS",
        "NAME", "TEMPLATE ID", "LAST BUILD"
    )?;
    for t in &templates {
        writeln!(
            stdout,
            "{:<32} {:<22} {:<38} {}",
            t.name().unwrap_or("-"),
            t.template_id,
            if t.build_id.is_empty() {
                "-"
            } else {
                &t.build_id
            },
            t.build_status.as_deref().unwrap_or("-")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn template_delete(args: &TemplateDeleteArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "deleting template {:?} cannot be undone: pass --yes to confirm when standard input is not a terminal",
                args.template
            );
        }
        eprint!(
            "Delete template {:?}? This cannot be undone. [y/N] ",
            args.template
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Not deleted.");
            return Ok(ExitCode::FAILURE);
        }
    }
    let api = api_client(&args.credential)?;
    app::runtime()?.block_on(api.delete_template(&args.template))?;
    println!("Deleted template {}", args.template);
    Ok(ExitCode::SUCCESS)
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
    if let Some(tag) = args.tags.iter().find(|t| !rules::tag_is_valid(t)) {
        anyhow::bail!(
            "--tag {tag:?}: E2B takes tags of lowercase letters, digits, '-', '_' and '.', e.g. v2 or 2026.08"
        );
    }
    let endpoints = Endpoints::from_env(&env)?;
    let target = args.image.as_deref().map(Reference::parse).transpose()?;
    if target.is_none() && !args.gateway && endpoints.is_e2b_cloud() {
        anyhow::bail!(gateway_is_gone(args, &endpoints));
    }
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
    let run = TemplateRun {
        args,
        show: !quiet && !args.json,
        show_logs: !quiet,
        template: &template,
        api: &api,
        options: settings::image_options(&args.context, &image_args)?,
        runtime: app::runtime()?,
        store: Store::open(Store::default_root())?,
        view: PushProgressView::new(quiet || args.json),
    };
    let remote = app::remote_access(&run.runtime, &args.registry, target.as_ref())?;
    let outcome = match &target {
        Some(target) => run.registry_flow(&remote, target),
        None => run.gateway_flow(&remote, &endpoints),
    };
    run.view.finish();
    let outcome = outcome?;
    run.write_back(&outcome.template_id)?;
    print_outcome(&outcome, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Problem 1 of E2B today: without --image on E2B's cloud, one message and the way out.
fn gateway_is_gone(args: &TemplateBuildArgs, endpoints: &Endpoints) -> String {
    format!(
        "E2B's cloud ({}) no longer runs the registry gateway (docker.e2b.app) that `template build` \
         without --image pushes to: E2B removed it in August 2026. Push to a registry you control \
         and let E2B build from there, with an API key in E2B_API_KEY: \
         `dockless template build {} --image ghcr.io/OWNER/NAME:TAG` (add \
         --share-registry-credentials when the image is private). For a self-hosted E2B, set \
         E2B_DOMAIN (or E2B_API_URL), or pass --gateway",
        endpoints.api.host_str().unwrap_or("e2b.app"),
        args.context.display()
    )
}

/// One `template build`: what both flows share.
struct TemplateRun<'a> {
    args: &'a TemplateBuildArgs,
    show: bool,
    show_logs: bool,
    template: &'a TemplateSettings,
    api: &'a ApiClient,
    options: build::BuildOptions,
    runtime: tokio::runtime::Runtime,
    store: Store,
    view: PushProgressView,
}

impl TemplateRun<'_> {
    /// Records the template ID in e2b.toml as soon as E2B gives it, so that a build failing
    /// later still rebuilds the same template next time.
    fn write_back(&self, template_id: &str) -> anyhow::Result<()> {
        if self.template.template_id.as_deref() == Some(template_id) {
            return Ok(());
        }
        let args = self.args;
        let written = writeback::write_template_id(
            &args.context,
            template_id,
            self.template.name.as_deref(),
            args.dockerfile
                .as_ref()
                .and_then(|p| p.strip_prefix(&args.context).ok())
                .and_then(|p| p.to_str()),
        )?;
        if written && self.show {
            eprintln!(
                "Wrote template_id = \"{template_id}\" to {}",
                args.context.join("e2b.toml").display()
            );
        }
        Ok(())
    }

    fn inputs<'b>(
        &'b self,
        image: &'b build::BuiltImage,
        remote: &'b RemoteAccess,
        early: EarlyReport,
    ) -> FlowInputs<'b> {
        FlowInputs {
            settings: self.template,
            store: &self.store,
            image,
            remote,
            progress: self.view.callback(),
            poll_interval: POLL_INTERVAL,
            early,
        }
    }

    /// Ask E2B for the build, then build while layers go up to --image, push, start, follow.
    fn registry_flow(
        &self,
        remote: &RemoteAccess,
        target: &Reference,
    ) -> anyhow::Result<FlowOutcome> {
        let args = self.args;
        let client = remote.client(target)?;
        let kind = match (args.share_registry_credentials, args.registry_auth) {
            (true, _) | (_, Some(RegistryAuthArg::Registry)) => Some(PullKind::Registry),
            (_, Some(RegistryAuthArg::Auto)) => Some(PullKind::Auto),
            (_, Some(RegistryAuthArg::Aws)) => Some(PullKind::Aws),
            (_, Some(RegistryAuthArg::Gcp)) => Some(PullKind::Gcp),
            (false, None) => None,
        };
        let pull = kind
            .map(|kind| {
                pull::pull_credentials(
                    kind,
                    target.registry(),
                    &PullEnv::from_process(),
                    client.credential(),
                )
            })
            .transpose()?;
        if let Some(pull) = &pull {
            tracing::info!(kind = pull.kind(), "handing E2B pull credentials");
        }
        let created = self.runtime.block_on(flows::request_registry_build(
            self.api,
            self.template,
            &args.tags,
        ))?;
        self.write_back(&created.template_id)?;
        let early =
            push::EarlyUploads::start(self.runtime.handle(), client, target, self.view.callback());
        let built = early.build_beside(&self.store, target, |observer| {
            build::build_with(&self.options, &self.store, remote, Some(observer))
        });
        let early = self.runtime.block_on(early.finish());
        let (image, early) = (built?, early?);
        flows::check_platform(&image)?;
        if self.show {
            eprintln!("Built {}", app::describe(&image));
        }
        let sandbox = self.sandbox_start(&image)?;
        let (start_cmd, ready_cmd, from_image) = flows::start_commands(self.template, &sandbox);
        if from_image && self.show_logs {
            eprintln!(
                "Start command from the image's CMD/ENTRYPOINT: {} (ready command: {}); set start_cmd in e2b.toml or --start-cmd to choose another",
                start_cmd.as_deref().unwrap_or_default(),
                ready_cmd.as_deref().unwrap_or_default()
            );
        }
        let start = RegistryStart {
            pull,
            sandbox,
            force: args.skip_cache,
            wait: !args.no_wait,
        };
        let mut on_log = |entry: &LogEntry| {
            if self.show_logs {
                eprintln!("{}", format_entry(entry));
            }
        };
        Ok(self.runtime.block_on(flows::finish_registry_flow(
            self.api,
            created,
            self.inputs(&image, remote, early),
            target,
            start,
            &mut on_log,
        ))?)
    }

    /// The image's user, directory and command, as E2B's SDK reads them from the Dockerfile.
    fn sandbox_start(&self, image: &build::BuiltImage) -> anyhow::Result<SandboxStart> {
        let dockerfile_path = self.dockerfile()?;
        let text = std::fs::read_to_string(&dockerfile_path)
            .with_context(|| format!("could not read {}", dockerfile_path.display()))?;
        let dockerfile = dockless::dockerfile::parse(&text)
            .with_context(|| format!("{}", dockerfile_path.display()))?;
        let config: ImageConfig =
            serde_json::from_slice(&self.store.read_blob(&image.config.digest)?)
                .context("the built image's config is not an image config")?;
        Ok(SandboxStart::new(
            &config.config,
            StageSets::of(&dockerfile),
        ))
    }

    fn dockerfile(&self) -> anyhow::Result<std::path::PathBuf> {
        Ok(build::locate_dockerfile(
            &self.args.context,
            self.args.dockerfile.as_deref(),
        )?)
    }

    /// Build, then request, push through E2B's gateway, start, follow (legacy, self-hosted).
    fn gateway_flow(
        &self,
        remote: &RemoteAccess,
        endpoints: &Endpoints,
    ) -> anyhow::Result<FlowOutcome> {
        let image = build::build(&self.options, &self.store, remote)?;
        flows::check_platform(&image)?;
        if self.show {
            eprintln!("Built {}", app::describe(&image));
        }
        let dockerfile = self.dockerfile()?;
        let text = std::fs::read_to_string(&dockerfile)
            .with_context(|| format!("could not read {}", dockerfile.display()))?;
        let mut written = Ok(());
        let mut on_created = |created: &CreatedBuild| {
            written = self.write_back(&created.template_id);
        };
        let mut on_log = |entry: &LogEntry| {
            if self.show_logs {
                eprintln!("{}", format_entry(entry));
            }
        };
        let outcome = self.runtime.block_on(flows::gateway_flow(
            self.api,
            endpoints,
            self.inputs(&image, remote, EarlyReport::default()),
            text,
            &settings::registry_settings(&self.args.registry),
            &mut on_created,
            &mut on_log,
        ));
        written?;
        Ok(outcome?)
    }
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
