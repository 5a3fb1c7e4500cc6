//! `dockless template status`, `template list` and `template delete`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use dockless_e2b::api::{ApiClient, BuildState, LogEntry};
use dockless_e2b::config::TemplateConfig;
use dockless_e2b::endpoints::Endpoints;
use dockless_e2b::env::E2bEnv;
use dockless_e2b::status::{self, format_entry};
use dockless_registry::http::HttpPolicy;

use super::args::{
    E2bCredentialArgs, LogLevelArg, TemplateDeleteArgs, TemplateListArgs, TemplateStatusArgs,
};
use super::auth::resolve_credential;
use super::runtime;
use super::template::POLL_INTERVAL;

/// The API client the template commands other than `build` use; its requests follow `http`.
fn api_client(args: &E2bCredentialArgs, http: HttpPolicy) -> anyhow::Result<ApiClient> {
    let endpoints = Endpoints::from_env(&E2bEnv::from_process())?;
    let credential = resolve_credential(args, false)?;
    Ok(ApiClient::new(endpoints.api, credential, http)?)
}

pub fn status(
    args: &TemplateStatusArgs,
    quiet: bool,
    http: HttpPolicy,
) -> anyhow::Result<ExitCode> {
    let template_id = match &args.template {
        Some(id) => id.clone(),
        None => TemplateConfig::load(std::path::Path::new("."))?
            .and_then(|c| c.template_id)
            .context("which template? pass --template ID, or run in a directory whose e2b.toml has template_id")?,
    };
    let api = api_client(&args.credential, http)?;
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
    let runtime = runtime()?;
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

pub fn list(args: &TemplateListArgs, http: HttpPolicy) -> anyhow::Result<ExitCode> {
    let api = api_client(&args.credential, http)?;
    let templates = runtime()?.block_on(api.list_templates())?;
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

pub fn delete(args: &TemplateDeleteArgs, http: HttpPolicy) -> anyhow::Result<ExitCode> {
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
    let api = api_client(&args.credential, http)?;
    runtime()?.block_on(api.delete_template(&args.template))?;
    println!("Deleted template {}", args.template);
    Ok(ExitCode::SUCCESS)
}
