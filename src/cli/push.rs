//! `dockless push`: build a context and push it (uploading layers while the build goes on),
//! or push an OCI layout from disk; to one target or several (`--to`/`-t`, repeatable), the
//! blobs uploaded once and each further target given the same manifest.

use std::path::PathBuf;
use std::process::ExitCode;

use dockless_build::publish::{self, PublishError, Staged};
use dockless_build::{BuildOptions, BuiltImage};
use dockless_oci::store::Store;
use dockless_registry::http::HttpPolicy;
use dockless_registry::remote::RemoteAccess;
use dockless_registry::{PushReport, Reference};

use super::args::{ImageArgs, PushArgs};
use super::json::{self, CacheExportResult, ImageResult, PushResult};
use super::output::{Output, Reporter};
use super::steps::ProgressMode;
use super::{
    FlagError, remote_access, results, runtime, settings, settings_error, target_reference, usage,
};

pub fn run(args: &PushArgs, quiet: bool, http: HttpPolicy) -> anyhow::Result<ExitCode> {
    let buildx = &args.image.inputs.buildx;
    buildx.refused.check().map_err(usage)?;
    let targets = args
        .to
        .iter()
        .map(|t| target_reference(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = args.from.as_deref().map(layout_source).transpose()?;
    if source.is_some() {
        refuse_build_flags(&args.image).map_err(usage)?;
    } else if let Some(platforms) = settings::platform_list(&args.image).map_err(settings_error)? {
        return super::multi::push(args, &platforms, quiet, http);
    }
    let progress = ProgressMode::choose(buildx.progress, quiet).map_err(usage)?;
    let output = Output::new(quiet, args.json).with_progress(progress);
    let options = match &source {
        Some(_) => None,
        None => {
            let context = args.context.clone().unwrap_or_else(|| PathBuf::from("."));
            let mut options =
                settings::image_options(&context, &args.image).map_err(settings_error)?;
            options.progress = progress.listener();
            Some(options)
        }
    };
    let runtime = runtime()?;
    let remote = remote_access(
        &runtime,
        settings::registry_settings(&args.registry, http),
        &args.registry.upload,
        targets.first(),
    )?;
    let reporter = output.reporter();
    let pushed = match (&source, &options) {
        (Some((dir, tag)), _) => targets
            .iter()
            .map(|target| {
                publish::push_layout_dir(&remote, dir, tag.as_deref(), target, &reporter)
                    .map(|report| (target.clone(), report))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|reports| (reports, None)),
        (None, Some(options)) => {
            let store = Store::open(Store::default_root())?;
            push_everywhere(options, &store, &remote, &targets, &reporter)
                .map(|(image, reports)| (reports, Some(image)))
        }
        (None, None) => unreachable!("options are made when there is no --from"),
    };
    reporter.finish();
    let (reports, image) = pushed?;
    if let Some(image) = &image {
        results::write(buildx, image, &args.to)?;
    }
    print(&output, &reports, image.as_ref(), reporter.cache_exports())?;
    Ok(ExitCode::SUCCESS)
}

/// Builds `options` and pushes the image to every target: the first push uploads what the
/// registry lacks; the others find the blobs there (or mount them) and add the manifest.
pub fn push_everywhere(
    options: &BuildOptions,
    store: &Store,
    remote: &RemoteAccess,
    targets: &[Reference],
    reporter: &Reporter<'_>,
) -> Result<(BuiltImage, Vec<(Reference, PushReport)>), PublishError> {
    let (first, others) = targets
        .split_first()
        .expect("clap asks for at least one target");
    let published = publish::build_and_push(options, store, remote, first, reporter)?;
    let mut reports = vec![(first.clone(), published.report)];
    for target in others {
        let destination =
            publish::Destination::new(store, remote, remote.client(target)?, target, reporter);
        let again = destination.push(Staged::new(published.image.clone(), Vec::new()))?;
        reports.push((target.clone(), again.report));
    }
    Ok((published.image, reports))
}

/// With `--from`, the layout's image is pushed as it is: a flag that would build it otherwise
/// is refused rather than dropped.
fn refuse_build_flags(image: &ImageArgs) -> Result<(), FlagError> {
    let inputs = &image.inputs;
    let buildx = &inputs.buildx;
    let given = [
        (image.dockerfile.is_some(), "--file"),
        (!inputs.build_args.is_empty(), "--build-arg"),
        (!inputs.secrets.is_empty(), "--secret"),
        (!inputs.cache_from.is_empty(), "--cache-from"),
        (!inputs.cache_to.is_empty(), "--cache-to"),
        (image.platform.is_some(), "--platform"),
        (image.format.is_some(), "--format"),
        (image.compression.is_some(), "--compression"),
        (image.compression_level.is_some(), "--compression-level"),
        (image.isolation.is_some(), "--isolation"),
        (image.network.is_some(), "--network"),
        (image.target.is_some(), "--target"),
        (buildx.no_cache, "--no-cache"),
        (!buildx.no_cache_filter.is_empty(), "--no-cache-filter"),
        (buildx.pull, "--pull"),
        (!buildx.labels.is_empty(), "--label"),
        (!buildx.annotations.is_empty(), "--annotation"),
        (buildx.iidfile.is_some(), "--iidfile"),
        (buildx.metadata_file.is_some(), "--metadata-file"),
        (buildx.timestamp.is_some(), "--timestamp"),
        (!buildx.build_contexts.is_empty(), "--build-context"),
    ];
    let named: Vec<&str> = given
        .iter()
        .filter(|(given, _)| *given)
        .map(|(_, flag)| *flag)
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    Err(FlagError(format!(
        "{} {} not apply with --from: the layout's image is pushed as it is, not built; build it with {} (`dockless build CONTEXT … --output DIR`) and push that, or push the context instead of --from",
        named.join(", "),
        if named.len() == 1 { "does" } else { "do" },
        if named.len() == 1 {
            "that flag"
        } else {
            "those flags"
        },
    )))
}

/// `oci:DIR[:TAG]` → (DIR, TAG).
fn layout_source(source: &str) -> anyhow::Result<(PathBuf, Option<String>)> {
    let location = source.strip_prefix("oci:").ok_or_else(|| {
        usage(FlagError(format!(
            "--from {source}: expected oci:DIR[:TAG] (an OCI image layout)"
        )))
    })?;
    let (dir, tag) = dockless_build::base::split_layout_reference(location);
    Ok((dir, tag.map(str::to_owned)))
}

/// The pinned reference of every target, a line each.
pub fn pushes_words(
    out: &mut dyn std::io::Write,
    reports: &[(Reference, PushReport)],
) -> std::io::Result<()> {
    for (target, report) in reports {
        writeln!(out, "{}", json::pinned(target, report))?;
    }
    Ok(())
}

fn print(
    output: &Output,
    reports: &[(Reference, PushReport)],
    image: Option<&BuiltImage>,
    cache_exports: Vec<CacheExportResult>,
) -> std::io::Result<()> {
    output.result(
        || PushResult {
            size: image.map(BuiltImage::total_size),
            image: image.map(ImageResult::of),
            cache_exports,
            ..PushResult::of(reports)
        },
        |out| pushes_words(out, reports),
    )
}
