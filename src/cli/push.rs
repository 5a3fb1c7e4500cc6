//! `dockless push`: build a context and push it (uploading layers while the build goes on),
//! or push an OCI layout from disk.

use std::path::PathBuf;
use std::process::ExitCode;

use dockless::build::BuiltImage;
use dockless::publish;
use dockless::registry::{PushReport, Reference};
use dockless::store::Store;
use serde_json::json;

use super::args::PushArgs;
use super::output::{Output, image_json};
use super::{FlagError, remote_access, runtime, settings, settings_error, target_reference, usage};

pub fn run(args: &PushArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let output = Output::new(quiet, args.json);
    let target = target_reference(&args.to)?;
    let source = args.from.as_deref().map(layout_source).transpose()?;
    let options = match &source {
        Some(_) => None,
        None => {
            let context = args.context.clone().unwrap_or_else(|| PathBuf::from("."));
            Some(settings::image_options(&context, &args.image).map_err(settings_error)?)
        }
    };
    let runtime = runtime()?;
    let explicit = settings::explicit_credential(&args.registry, &target)?;
    let remote = remote_access(
        &runtime,
        settings::registry_settings(&args.registry),
        explicit,
    );
    let reporter = output.reporter();
    let pushed = match (&source, &options) {
        (Some((dir, tag)), _) => {
            publish::push_layout_dir(&remote, dir, tag.as_deref(), &target, &reporter)
                .map(|report| (report, None))
        }
        (None, Some(options)) => {
            let store = Store::open(Store::default_root())?;
            publish::build_and_push(options, &store, &remote, &target, &reporter)
                .map(|pushed| (pushed.report, Some(pushed.image)))
        }
        (None, None) => unreachable!("options are made when there is no --from"),
    };
    reporter.finish();
    let (report, image) = pushed?;
    print(
        &output,
        &target,
        &report,
        image.as_ref(),
        reporter.cache_exports(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `oci:DIR[:TAG]` → (DIR, TAG).
fn layout_source(source: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    let location = source.strip_prefix("oci:").ok_or_else(|| {
        usage(FlagError(format!(
            "--from {source}: expected oci:DIR[:TAG] (an OCI image layout)"
        )))
    })?;
    let (dir, tag) = dockless::build::base::split_layout_reference(location);
    Ok((dir, tag.map(str::to_owned)))
}

fn print(
    output: &Output,
    target: &Reference,
    report: &PushReport,
    image: Option<&BuiltImage>,
    cache_exports: Vec<serde_json::Value>,
) -> std::io::Result<()> {
    let pinned = format!(
        "{}/{}@{}",
        target.registry(),
        target.repository(),
        report.manifest_digest
    );
    output.result(
        || {
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
            if !cache_exports.is_empty() {
                value["cache_exports"] = json!(cache_exports);
            }
            value
        },
        |out| writeln!(out, "{pinned}"),
    )
}
