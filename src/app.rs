//! Runs a parsed command: the edge where library errors become messages and exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use dockless::build::{self, BuiltImage};
use dockless::layout::{self, Layout};
use dockless::push;
use dockless::registry::{CredentialEnv, PushReport, Reference};
use dockless::remote::RemoteAccess;
use dockless::store::Store;
use serde_json::json;

use crate::cli::{AuthCommand, BuildArgs, Cli, Command, PushArgs, RegistryArgs};
use crate::progress::PushProgressView;
use crate::settings;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build_command(&args, cli.quiet),
        Command::Push(args) => push_command(&args, cli.quiet),
        Command::Auth(AuthCommand::Status(args)) => crate::e2b_commands::auth_status(&args),
        Command::Template(command) => crate::e2b_commands::template(command, cli.quiet),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

pub fn remote_access(
    runtime: &tokio::runtime::Runtime,
    args: &RegistryArgs,
    target: Option<&Reference>,
) -> anyhow::Result<RemoteAccess> {
    let explicit = match target {
        Some(target) => settings::explicit_credential(args, target)?,
        None => None,
    };
    Ok(RemoteAccess::new(
        runtime.handle().clone(),
        settings::registry_settings(args),
        CredentialEnv::from_process(),
        explicit,
    ))
}

fn build_command(args: &BuildArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let options = settings::build_options(args)?;
    let store = Store::open(Store::default_root())?;
    let runtime = runtime()?;
    let remote = remote_access(&runtime, &args.registry, None)?;
    let image = build::build(&options, &store, &remote)?;
    if let Some(output) = &args.output {
        push::fetch_base_layers(&store, &image, &remote)?;
        layout::write_layout(&store, output, &image.manifest, &image.blobs(), &args.tag)?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let mut value = image_json(&image);
        value["output"] = json!(args.output.as_ref().map(|p| p.display().to_string()));
        value["tag"] = json!(args.tag);
        writeln!(stdout, "{value}")?;
    } else if quiet {
        writeln!(stdout, "{}", image.manifest.digest)?;
    } else {
        writeln!(stdout, "Built {}", describe(&image))?;
        if let Some(output) = &args.output {
            writeln!(stdout, "Wrote OCI layout {}:{}", output.display(), args.tag)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn push_command(args: &PushArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let target = Reference::parse(&args.to)?;
    let runtime = runtime()?;
    let remote = remote_access(&runtime, &args.registry, Some(&target))?;
    let client = remote.client(&target)?;
    let view = PushProgressView::new(quiet || args.json);

    let (report, image) = match &args.from {
        Some(source) => {
            let (dir, tag) = layout_source(source)?;
            let layout = Layout::open(&dir)?;
            let report = runtime.block_on(push::push_layout(
                &client,
                &layout,
                tag.as_deref(),
                &target,
                view.callback(),
            ))?;
            (report, None)
        }
        None => {
            let context = args.context.clone().unwrap_or_else(|| PathBuf::from("."));
            let options = settings::image_options(&context, &args.image)?;
            let store = Store::open(Store::default_root())?;
            let early = push::EarlyUploads::start(
                runtime.handle(),
                client.clone(),
                &target,
                view.callback(),
            );
            let built = early.build_beside(&store, &target, |observer| {
                build::build_with(&options, &store, &remote, Some(observer))
            });
            let early_report = runtime.block_on(early.finish());
            let image = built?;
            let early_report = early_report?;
            if !quiet && !args.json {
                eprintln!("Built {}", describe(&image));
            }
            let request = push::request_for_image(&store, &image, &remote)?;
            view.expect(request.blobs.iter().map(|b| (b.digest.clone(), b.size)));
            let report = runtime.block_on(push::push_built_image(
                &store,
                &image,
                request,
                &client,
                &target,
                view.callback(),
                early_report,
            ))?;
            (report, Some(image))
        }
    };
    view.finish();
    print_push(&target, &report, image.as_ref(), args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `oci:DIR[:TAG]` → (DIR, TAG).
fn layout_source(source: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    let location = source.strip_prefix("oci:").with_context(|| {
        format!("--from {source}: expected oci:DIR[:TAG] (an OCI image layout)")
    })?;
    let (dir, tag) = build::base::split_layout_reference(location);
    Ok((dir, tag.map(str::to_owned)))
}

fn print_push(
    target: &Reference,
    report: &PushReport,
    image: Option<&BuiltImage>,
    json: bool,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let pinned = format!(
        "{}/{}@{}",
        target.registry(),
        target.repository(),
        report.manifest_digest
    );
    if json {
        let mut value = json!({
            "reference": target.to_string(),
            "pinned": pinned,
            "digest": report.manifest_digest,
            "uploaded_blobs": report.uploaded_blobs,
            "skipped_blobs": report.skipped_blobs + report.mounted_blobs,
            "mounted_blobs": report.mounted_blobs,
            "uploaded_bytes": report.uploaded_bytes,
        });
        if let Some(image) = image {
            value["size"] = json!(image.total_size());
            value["image"] = image_json(image);
        }
        writeln!(stdout, "{value}")?;
    } else {
        writeln!(stdout, "{pinned}")?;
    }
    Ok(())
}

pub fn describe(image: &BuiltImage) -> String {
    let new_layers = image.layers.iter().filter(|l| !l.from_base).count();
    format!(
        "{} ({}, {} layers of which {} new, {})",
        image.manifest.digest,
        image.platform,
        image.layers.len(),
        new_layers,
        crate::progress::human_size(image.total_size())
    )
}

fn image_json(image: &BuiltImage) -> serde_json::Value {
    json!({
        "digest": image.manifest.digest,
        "mediaType": image.manifest.media_type,
        "size": image.total_size(),
        "manifestSize": image.manifest.size,
        "config": {"digest": image.config.digest, "size": image.config.size},
        "platform": image.platform.to_string(),
        "layers": image.layers.iter().map(|l| json!({
            "digest": l.digest,
            "diffId": l.diff_id,
            "size": l.size,
            "mediaType": l.media_type,
            "fromBase": l.from_base,
        })).collect::<Vec<_>>(),
    })
}
