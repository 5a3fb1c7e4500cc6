//! `dockless build`: a context into the local store; with `--output`, into an OCI layout (a
//! directory or a tar archive) too; with `--push` (or `--output type=registry`), to every
//! `--tag` as `dockless push` does.

use std::path::PathBuf;
use std::process::ExitCode;

use dockless_oci::store::Store;
use dockless_registry::http::HttpPolicy;
use dockless_registry::{PushReport, Reference};

use super::args::BuildArgs;
use super::buildx::{OutputTarget, parse_output};
use super::json::{BuildResult, CacheExportResult, ImageResult, PushResult};
use super::output::{Output, describe};
use super::steps::ProgressMode;
use super::{FlagError, push, remote_access, results, runtime, settings, settings_error, usage};

/// Where the built image goes besides the store.
pub(super) struct Destinations {
    /// An OCI layout: (where, whether as a tar archive).
    pub(super) layout: Option<(PathBuf, bool)>,
    /// The image's names in the layout.
    pub(super) layout_names: Vec<String>,
    /// Registries to push to.
    pub(super) push: Vec<Reference>,
}

impl Destinations {
    pub(super) fn of(args: &BuildArgs) -> Result<Self, FlagError> {
        let output = args.output.as_deref().map(parse_output).transpose()?;
        let registry_output = matches!(output, Some(OutputTarget::Registry(_)));
        let (layout, registry_names) = match output {
            Some(OutputTarget::Layout(dir)) => (Some((dir, false)), None),
            Some(OutputTarget::LayoutTar(file)) => (Some((file, true)), None),
            Some(OutputTarget::Registry(names)) => (None, Some(names)),
            Some(OutputTarget::Nowhere) | None => (None, None),
        };
        let push_names = match (registry_names, args.push) {
            (Some(names), _) if !names.is_empty() => names,
            (Some(_), _) | (None, true) => args.tags.clone(),
            (None, false) => Vec::new(),
        };
        let pushing = args.push || registry_output;
        if pushing && push_names.is_empty() {
            return Err(FlagError(
                "--push needs where to: add -t REGISTRY/REPOSITORY:TAG (repeatable)".into(),
            ));
        }
        if !pushing && layout.is_none() && !args.tags.is_empty() {
            return Err(FlagError(format!(
                "--tag {}: the image has nowhere to carry that name: the store keeps images by digest only; add --output DIR to write a layout with that name, or --push to push to it",
                args.tags[0]
            )));
        }
        if !pushing && args.upload.username.is_some() {
            return Err(FlagError(
                "--username/--password-stdin are for --push's registry; add --push".into(),
            ));
        }
        let push = push_names
            .iter()
            .map(|name| {
                Reference::parse(name).map_err(|e| {
                    FlagError(format!(
                        "--tag {name}: {e}; --push needs REGISTRY/REPOSITORY[:TAG]"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Destinations {
            layout,
            layout_names: layout_names(&args.tags),
            push,
        })
    }
}

/// The names of the image in an OCI layout: each tag's tag part (`reg/app:v1` → `v1`; a
/// plain name as it is), `latest` without any.
fn layout_names(tags: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for tag in tags {
        let name = if tag.contains('/') {
            Reference::parse(tag)
                .ok()
                .and_then(|r| r.tag().map(str::to_owned))
                .unwrap_or_else(|| "latest".into())
        } else {
            tag.clone()
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        names.push("latest".into());
    }
    names
}

pub fn run(args: &BuildArgs, quiet: bool, http: HttpPolicy) -> anyhow::Result<ExitCode> {
    if let Some(platforms) = settings::platform_list(&args.image).map_err(settings_error)? {
        return super::multi::build(args, &platforms, quiet, http);
    }
    let buildx = &args.image.inputs.buildx;
    buildx.refused.check().map_err(usage)?;
    let destinations = Destinations::of(args).map_err(usage)?;
    let progress = ProgressMode::choose(buildx.progress, quiet).map_err(usage)?;
    let output = Output::new(quiet, args.json).with_progress(progress);
    let mut options =
        settings::image_options(&args.context, &args.image).map_err(settings_error)?;
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
    let (image, pushes) = if destinations.push.is_empty() {
        let image = dockless_build::build(&options, &store, &remote)?;
        dockless_build::publish::export_cache(
            &store,
            &remote,
            &image,
            &options.cache_to,
            &reporter,
        );
        (image, Vec::new())
    } else {
        let pushed =
            push::push_everywhere(&options, &store, &remote, &destinations.push, &reporter);
        reporter.finish();
        pushed?
    };
    if let Some((dest, tar)) = &destinations.layout {
        image.fetch_remote_layers(&store, &remote)?;
        results::write_layout(
            &store,
            (dest, *tar),
            &image.manifest,
            &image.blobs(),
            &destinations.layout_names,
        )?;
    }
    results::write(buildx, &image, &args.tags)?;
    print(
        &output,
        args,
        &destinations,
        &image,
        &pushes,
        reporter.cache_exports(),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn print(
    output: &Output,
    args: &BuildArgs,
    destinations: &Destinations,
    image: &dockless_build::BuiltImage,
    pushes: &[(Reference, PushReport)],
    cache_exports: Vec<CacheExportResult>,
) -> std::io::Result<()> {
    let layout = destinations.layout.as_ref().map(|(dest, _)| dest);
    output.result(
        || BuildResult {
            image: ImageResult::of(image),
            output: layout.map(|p| p.display().to_string()),
            tag: destinations.layout_names[0].clone(),
            tags: args.tags.clone(),
            push: (!pushes.is_empty()).then(|| PushResult::of(pushes)),
            cache_exports,
        },
        |out| {
            if output.quiet() {
                return writeln!(out, "{}", image.manifest.digest);
            }
            if pushes.is_empty() {
                writeln!(out, "Built {}", describe(image))?;
            }
            if let Some(dest) = layout {
                let names = destinations.layout_names.join(", ");
                writeln!(out, "Wrote OCI layout {}:{names}", dest.display())?;
            }
            push::pushes_words(out, pushes)
        },
    )
}
