//! `dockless build` and `dockless push` for several platforms (`--platform a,b[,…]`): one build
//! per platform ([`dockless_build::multi`]) and one index naming each platform's manifest,
//! written as an OCI layout (`--output`) and pushed to every target.

use std::process::ExitCode;

use dockless_build::BuildOptions;
use dockless_build::multi::{self, BuiltIndex};
use dockless_build::publish::{self, EarlyReport, PublishError};
use dockless_oci::digest::Digest;
use dockless_oci::image::Platform;
use dockless_oci::store::Store;
use dockless_registry::http::HttpPolicy;
use dockless_registry::remote::RemoteAccess;
use dockless_registry::{PushReport, Reference};
use serde::Serialize;

use super::args::{BuildArgs, PushArgs};
use super::build::Destinations;
use super::buildx::BuildxArgs;
use super::json::{CacheExportResult, ImageResult, PushResult};
use super::output::{Output, Reporter, describe};
use super::steps::ProgressMode;
use super::{
    FlagError, remote_access, results, runtime, settings, settings_error, target_reference, usage,
};

/// `dockless build --platform a,b`.
pub fn build(
    args: &BuildArgs,
    platforms: &[Platform],
    quiet: bool,
    http: HttpPolicy,
) -> anyhow::Result<ExitCode> {
    let buildx = &args.image.inputs.buildx;
    buildx.refused.check().map_err(usage)?;
    refuse_single_image_files(buildx).map_err(usage)?;
    let destinations = Destinations::of(args).map_err(usage)?;
    let progress = ProgressMode::choose(buildx.progress, quiet).map_err(usage)?;
    let output = Output::new(quiet, args.json).with_progress(progress);
    let mut options =
        settings::shared_image_options(&args.context, &args.image).map_err(settings_error)?;
    options.progress = progress.listener();
    let store = Store::open(Store::default_root())?;
    let runtime = runtime()?;
    let remote = remote_access(
        &runtime,
        settings::push_settings(&args.registry, &args.upload, http),
        &args.upload,
        destinations.push.first(),
    )?;
    let reporter = output.reporter();
    let published = build_and_push(
        &options,
        platforms,
        &store,
        &remote,
        &destinations.push,
        &reporter,
    );
    reporter.finish();
    let (built, pushes) = published?;
    if let Some((dest, tar)) = &destinations.layout {
        built.fetch_remote_layers(&store, &remote)?;
        let names = &destinations.layout_names;
        results::write_layout(&store, (dest, *tar), &built.index, &built.blobs(), names)?;
    }
    write_iidfile(buildx, &built)?;
    let layout = destinations.layout.as_ref().map(|(dest, _)| dest);
    output.result(
        || IndexResult {
            output: layout.map(|p| p.display().to_string()),
            tags: args.tags.clone(),
            push: (!pushes.is_empty()).then(|| PushResult::of(&pushes)),
            cache_exports: reporter.cache_exports(),
            ..IndexResult::of(&built)
        },
        |out| {
            if output.quiet() {
                return writeln!(out, "{}", built.index.digest);
            }
            words(out, &built)?;
            if let Some(dest) = layout {
                let names = destinations.layout_names.join(", ");
                writeln!(out, "Wrote OCI layout {}:{names}", dest.display())?;
            }
            super::push::pushes_words(out, &pushes)
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `dockless push --platform a,b CONTEXT --to REF`.
pub fn push(
    args: &PushArgs,
    platforms: &[Platform],
    quiet: bool,
    http: HttpPolicy,
) -> anyhow::Result<ExitCode> {
    let buildx = &args.image.inputs.buildx;
    buildx.refused.check().map_err(usage)?;
    refuse_single_image_files(buildx).map_err(usage)?;
    let targets = args
        .to
        .iter()
        .map(|t| target_reference(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let progress = ProgressMode::choose(buildx.progress, quiet).map_err(usage)?;
    let output = Output::new(quiet, args.json).with_progress(progress);
    let context = args
        .context
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let mut options =
        settings::shared_image_options(&context, &args.image).map_err(settings_error)?;
    options.progress = progress.listener();
    let store = Store::open(Store::default_root())?;
    let runtime = runtime()?;
    let remote = remote_access(
        &runtime,
        settings::registry_settings(&args.registry, http),
        &args.registry.upload,
        targets.first(),
    )?;
    let reporter = output.reporter();
    let published = build_and_push(&options, platforms, &store, &remote, &targets, &reporter);
    reporter.finish();
    let (built, pushes) = published?;
    write_iidfile(buildx, &built)?;
    output.result(
        || IndexResult {
            push: Some(PushResult::of(&pushes)),
            cache_exports: reporter.cache_exports(),
            ..IndexResult::of(&built)
        },
        |out| super::push::pushes_words(out, &pushes),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Builds every platform, exports every image's layers to `--cache-to` (one cache for them
/// all), and pushes the index to every target.
fn build_and_push(
    options: &BuildOptions,
    platforms: &[Platform],
    store: &Store,
    remote: &RemoteAccess,
    targets: &[Reference],
    reporter: &Reporter<'_>,
) -> Result<(BuiltIndex, Vec<(Reference, PushReport)>), PublishError> {
    // The layers go up to the first target while they are built; the others get them by a
    // mount or find them there.
    let (built, early) = match targets.first() {
        Some(first) => {
            publish::build_index_beside(options, platforms, store, remote, first, reporter)?
        }
        None => (
            multi::build_platforms(options, platforms, store, remote, None)?,
            EarlyReport::default(),
        ),
    };
    publish::export_caches(store, remote, &built.images, &options.cache_to, reporter);
    let pushes = targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let early = if i == 0 {
                early
            } else {
                EarlyReport::default()
            };
            publish::push_index(store, remote, &built, target, reporter, early)
                .map(|report| (target.clone(), report))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((built, pushes))
}

/// buildx's `--metadata-file` describes one image; with several platforms it is refused
/// rather than written wrong. (`--iidfile` takes the index's digest, as buildx writes it.)
fn refuse_single_image_files(buildx: &BuildxArgs) -> Result<(), FlagError> {
    if buildx.metadata_file.is_some() {
        return Err(FlagError(
            "--metadata-file with several platforms: dockless writes it for one image; build each platform on its own for it, or drop the flag".into(),
        ));
    }
    Ok(())
}

fn write_iidfile(buildx: &BuildxArgs, built: &BuiltIndex) -> anyhow::Result<()> {
    if let Some(path) = &buildx.iidfile {
        results::write_whole(path, built.index.digest.as_str().as_bytes())?;
    }
    Ok(())
}

/// The index and one line per platform's image.
fn words(out: &mut dyn std::io::Write, built: &BuiltIndex) -> std::io::Result<()> {
    writeln!(
        out,
        "Built index {} ({} platforms)",
        built.index.digest,
        built.images.len()
    )?;
    for image in &built.images {
        writeln!(out, "  {}", describe(image))?;
    }
    Ok(())
}

/// `--json` of a multi-platform build or push: the index, and each platform's image.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexResult {
    /// The index's digest.
    digest: Digest,
    media_type: String,
    index_size: u64,
    platforms: Vec<ImageResult>,
    /// The OCI layout written (`--output`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push: Option<PushResult>,
    /// Each `--cache-to` export (one for every platform's layers together).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cache_exports: Vec<CacheExportResult>,
}

impl IndexResult {
    fn of(built: &BuiltIndex) -> Self {
        IndexResult {
            digest: built.index.digest.clone(),
            media_type: built.index.media_type.clone(),
            index_size: built.index.size,
            platforms: built.images.iter().map(ImageResult::of).collect(),
            output: None,
            tags: Vec::new(),
            push: None,
            cache_exports: Vec::new(),
        }
    }
}
