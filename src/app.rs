//! Runs a parsed command: the edge where library errors become messages and exit codes.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use dockless::build::{self, BuiltImage};
use dockless::layout;
use dockless::store::Store;
use serde_json::json;

use crate::cli::{BuildArgs, Cli, Command};
use crate::settings;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build_command(&args, cli.quiet),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn build_command(args: &BuildArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let options = settings::build_options(args)?;
    let store = Store::open(Store::default_root())?;
    let runtime = runtime()?;
    let image = build::build(&options, &store, Some(runtime.handle()))?;
    if let Some(output) = &args.output {
        layout::write_layout(&store, output, &image.manifest, &image.blobs(), &args.tag)?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", image_json(&image, args))?;
    } else if quiet {
        writeln!(stdout, "{}", image.manifest.digest)?;
    } else {
        let new_layers = image.layers.iter().filter(|l| !l.from_base).count();
        writeln!(
            stdout,
            "Built {} ({}, {} layers of which {} new, {})",
            image.manifest.digest,
            image.platform,
            image.layers.len(),
            new_layers,
            human_size(image.total_size())
        )?;
        if let Some(output) = &args.output {
            writeln!(stdout, "Wrote OCI layout {}:{}", output.display(), args.tag)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn image_json(image: &BuiltImage, args: &BuildArgs) -> serde_json::Value {
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
        "output": args.output.as_ref().map(|p| p.display().to_string()),
        "tag": args.tag,
    })
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
