//! `dockless build`: a context into the local store, and into an OCI layout with --output.

use std::process::ExitCode;

use dockless::build;
use dockless::layout;
use dockless::store::Store;
use serde_json::json;

use super::args::BuildArgs;
use super::output::{Output, describe, image_json};
use super::{remote_access, runtime, settings, settings_error};

pub fn run(args: &BuildArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let output = Output::new(quiet, args.json);
    let options = settings::image_options(&args.context, &args.image).map_err(settings_error)?;
    let store = Store::open(Store::default_root())?;
    let runtime = runtime()?;
    let remote = remote_access(&runtime, settings::access_settings(&args.registry), None);
    let image = build::build(&options, &store, &remote)?;
    let reporter = output.reporter();
    dockless::publish::export_cache(&store, &remote, &image, &options.cache_to, &reporter);
    if let Some(dir) = &args.output {
        image.fetch_remote_layers(&store, &remote)?;
        layout::write_layout(&store, dir, &image.manifest, &image.blobs(), &args.tag)?;
    }
    output.result(
        || {
            let mut value = image_json(&image);
            value["output"] = json!(args.output.as_ref().map(|p| p.display().to_string()));
            value["tag"] = json!(args.tag);
            let exports = reporter.cache_exports();
            if !exports.is_empty() {
                value["cache_exports"] = json!(exports);
            }
            value
        },
        |out| {
            if output.quiet() {
                return writeln!(out, "{}", image.manifest.digest);
            }
            writeln!(out, "Built {}", describe(&image))?;
            if let Some(dir) = &args.output {
                writeln!(out, "Wrote OCI layout {}:{}", dir.display(), args.tag)?;
            }
            Ok(())
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
