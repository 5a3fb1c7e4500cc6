//! The builder: a parsed Dockerfile and a context become an image in the store.
//!
//! `build` reads the Dockerfile, resolves the base, then applies each instruction to the image
//! config, writing a layer for each COPY/ADD (and for a WORKDIR that creates a directory).
//!
//! May use: oci, dockerfile, context, layer, registry, sandbox, shared-cache.

pub mod base;
mod copy;
mod filesystem;
pub mod locate;
pub mod multi;
pub mod progress;
mod secrets;
mod stage;
// The one door for "build this and push it" (`build_and_push`) and layout pushes.
pub mod publish;
// One RUN step: the RUN cache, else the sandbox over the stage's tree, and its layer.
mod run_step;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use dockless_context::{Context, ContextError};
use dockless_oci::digest::Digest;
use dockless_oci::fs_error::{FsError, IoContext};
use dockless_oci::image::{Compression, Descriptor, Format, Platform};
use dockless_oci::store::{Store, StoreError};
use dockless_registry::remote::{LayerSource, RemoteAccess};
use dockless_shared_cache::SharedCache;

pub use locate::locate_dockerfile;
pub use secrets::{SecretFlagError, SecretFlagProblem, SecretSource, parse_secret_flag};
pub use stage::error::{
    BindError, ChmodError, Invalid, PortError, SecretError, StepError, Unsupported,
};

/// Everything a build needs to know, already validated.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub context: PathBuf,
    /// The Dockerfile the user named (`-f`); `None` finds it (see [`locate_dockerfile`]).
    pub dockerfile: Option<PathBuf>,
    /// A Dockerfile name relative to the context that the context's settings give
    /// (`e2b.toml`'s `dockerfile`): used without `dockerfile`, and held inside the context.
    pub context_dockerfile: Option<String>,
    pub build_args: BTreeMap<String, String>,
    /// The platform asked for; `None` takes the base image's (linux/amd64 for scratch).
    pub platform: Option<Platform>,
    pub format: Format,
    pub compression: Compression,
    /// Timestamp for layer entries, `created` and history (SOURCE_DATE_EPOCH, else 0).
    pub epoch: u64,
    /// How RUN commands are isolated.
    pub isolation: dockless_sandbox::Isolation,
    /// `--network`: the network of RUN steps without `--network` (and of `--network=default`).
    pub network: dockless_sandbox::sandbox::Network,
    /// `--target`: build the stage of this name and stop.
    pub target: Option<String>,
    /// `--secret id=…`: the secrets RUN --mount=type=secret may use, by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--cache-from`: shared caches whose layers this build may reuse (see
    /// [`dockless_shared_cache`]).
    pub cache_from: Vec<dockless_registry::Reference>,
    /// `--cache-to`: where the layers this build made or reused are exported afterwards.
    pub cache_to: Vec<dockless_registry::Reference>,
    /// `--no-cache` / `--no-cache-filter`: the steps that run again instead of reusing a cache.
    pub no_cache: NoCache,
    /// `--label`: labels of the image's config, over the Dockerfile's LABELs.
    pub labels: BTreeMap<String, String>,
    /// `--annotation`: annotations of the image's manifest.
    pub annotations: BTreeMap<String, String>,
    /// Who hears of each step as it starts and ends (plain progress).
    pub progress: progress::Progress,
    /// `--build-context NAME=…`: the image a FROM or `--from=` naming NAME uses instead (a
    /// registry reference, or `oci:DIR[:TAG]`), over a stage or image of that name.
    pub named_contexts: BTreeMap<String, String>,
}

impl BuildOptions {
    /// A build of `context` as `docker build CONTEXT` makes it: the Dockerfile found in the
    /// context, the base's platform, OCI media types with gzip, timestamps at 0, RUN isolated
    /// as the machine allows on the host's network, no secrets, caches or labels.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        BuildOptions {
            context: context.into(),
            dockerfile: None,
            context_dockerfile: None,
            build_args: BTreeMap::new(),
            platform: None,
            format: Format::default(),
            compression: Compression::default(),
            epoch: 0,
            isolation: dockless_sandbox::Isolation::Auto,
            network: dockless_sandbox::sandbox::Network::default(),
            target: None,
            secrets: BTreeMap::new(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            no_cache: NoCache::default(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            progress: progress::Progress::default(),
            named_contexts: BTreeMap::new(),
        }
    }
}

/// Which steps ignore the caches (the RUN cache, the layer cache, `--cache-from`) and run again;
/// what they make replaces what the caches held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NoCache {
    /// Every step reuses what a cache has.
    #[default]
    Off,
    /// `--no-cache`: no step does.
    All,
    /// `--no-cache-filter`: the steps of these stages (by name, lower case) do not.
    Stages(Vec<String>),
}

impl NoCache {
    /// Whether the steps of the stage named `stage` may reuse a cache.
    pub fn reuses(&self, stage: Option<&str>) -> bool {
        match self {
            NoCache::Off => true,
            NoCache::All => false,
            NoCache::Stages(names) => {
                stage.is_none_or(|stage| !names.iter().any(|n| n.eq_ignore_ascii_case(stage)))
            }
        }
    }
}

/// A built image: its manifest in the store and what it is made of.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltImage {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<BuiltLayer>,
    pub platform: Platform,
    /// Every layer the build made or reused, under its shared cache key (for `--cache-to`).
    #[serde(skip)]
    pub cache_entries: Vec<dockless_shared_cache::ExportEntry>,
    /// What the built stage (the target, else the last) sets itself.
    #[serde(skip)]
    pub stage_sets: StageSets,
}

/// Which of USER, WORKDIR and CMD/ENTRYPOINT a stage's own instructions (those after its FROM)
/// set, rather than take from its base: E2B's SDK maps only what the Dockerfile sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageSets {
    pub user: bool,
    pub workdir: bool,
    pub command: bool,
}

impl StageSets {
    /// What the instructions after a stage's FROM set.
    pub fn of(body: &[dockless_dockerfile::Instruction]) -> Self {
        use dockless_dockerfile::Command;
        let mut sets = StageSets::default();
        for instruction in body {
            match instruction.command {
                Command::User(_) => sets.user = true,
                Command::Workdir(_) => sets.workdir = true,
                Command::Cmd(_) | Command::Entrypoint(_) => sets.command = true,
                _ => {}
            }
        }
        sets
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BuiltLayer {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
    /// True for layers carried over from the base image.
    pub from_base: bool,
    /// Where the blob is when the store does not hold it (a registry base, a shared cache).
    #[serde(skip)]
    pub source: Option<LayerSource>,
}

impl BuiltImage {
    /// Every blob the manifest names (config first), for export and push.
    pub fn blobs(&self) -> Vec<Digest> {
        std::iter::once(self.config.digest.clone())
            .chain(self.layers.iter().map(|l| l.digest.clone()))
            .collect()
    }

    /// Brings the layers that stayed in a registry (a base's, a shared cache's) into the store
    /// (verified), to write a complete layout.
    pub fn fetch_remote_layers(
        &self,
        store: &Store,
        remote: &RemoteAccess,
    ) -> Result<(), FetchLayersError> {
        for layer in &self.layers {
            let Some(source) = &layer.source else {
                continue;
            };
            remote.fetch_blob(store, source.repository(), &layer.digest)?;
            // A shared cache's layer must unpack to the diff_id its entry claims.
            if matches!(source, LayerSource::SharedCache { .. }) {
                dockless_layer::archive::check_diff_id(
                    &store.blob_path(&layer.digest),
                    &layer.diff_id,
                )
                .map_err(|problem| FetchLayersError::WrongSharedLayer {
                    digest: layer.digest.clone(),
                    repository: source.repository().to_string(),
                    problem,
                })?;
            }
        }
        Ok(())
    }

    /// Size of the manifest, config and layers together.
    pub fn total_size(&self) -> u64 {
        self.manifest.size + self.config.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// Why the layers left in registries could not be brought into the store.
#[derive(Debug, thiserror::Error)]
pub enum FetchLayersError {
    #[error(transparent)]
    Remote(#[from] dockless_registry::remote::RemoteError),
    #[error(
        "layer {digest} from the shared cache {repository} {problem}: the cache is wrong; build without --cache-from (a build with --cache-to then replaces it)"
    )]
    WrongSharedLayer {
        digest: Digest,
        repository: String,
        problem: dockless_layer::archive::DiffIdError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Locate(#[from] locate::LocateError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}:{line}: {message}", file.display())]
    Parse {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// An instruction failed; the message names the Dockerfile, the line and the cause.
    /// `source` says what failed, as a caller can match it (a RUN's exit code:
    /// `StepError::Run(RunError::Failed { code, .. })`).
    #[error("{}:{line}: {source}", file.display())]
    Instruction {
        file: PathBuf,
        line: usize,
        #[source]
        source: StepError,
    },
    #[error("{}: {message}", file.display())]
    Dockerfile { file: PathBuf, message: String },
}

impl BuildError {
    /// A `--cache-from` layer was found wrong once the build had gone past it: the build starts
    /// again without that entry.
    fn is_wrong_shared_entry(&self) -> bool {
        matches!(
            self,
            BuildError::Instruction {
                source: StepError::SharedCacheEntry { .. },
                ..
            }
        )
    }

    /// The base held a path the plan assumed free while its listing was read (see
    /// [`filesystem::KnownFilesystem::assuming_empty_base`]): the build starts again, which
    /// then knows the listing.
    pub(crate) fn is_wrong_assumption(&self) -> bool {
        matches!(
            self,
            BuildError::Instruction {
                source: StepError::AssumedFree { .. },
                ..
            }
        )
    }
}

/// Hears, from the writer threads, about the layers a build writes: a push uploads them while
/// the build goes on.
pub trait LayerObserver: Sync {
    /// A new layer has started to be written; its compressed bytes can be read as they land.
    fn writing(&self, live: dockless_oci::live::LiveBlob);
    /// A layer is in the store, new or from a cache (after `writing`, for a new one).
    fn written(&self, layer: &BuiltLayer);
}

/// How many times a build starts again after finding a wrong shared cache entry.
const MAX_SHARED_CACHE_PASSES: usize = 8;

/// Builds the image described by `options` into `store`.
pub fn build(
    options: &BuildOptions,
    store: &Store,
    remote: &RemoteAccess,
) -> Result<BuiltImage, BuildError> {
    build_with(options, store, remote, None)
}

/// [`build`], telling `observer` about each layer as it is written.
pub fn build_with(
    options: &BuildOptions,
    store: &Store,
    remote: &RemoteAccess,
    observer: Option<&dyn LayerObserver>,
) -> Result<BuiltImage, BuildError> {
    let (context, dockerfile_path, dockerfile) = load_dockerfile(options)?;
    let shared = shared_cache(options, remote);
    let loaded = Loaded {
        context: &context,
        path: &dockerfile_path,
        dockerfile: &dockerfile,
        shared: &shared,
    };
    build_loaded(options, store, remote, observer, &loaded)
}

/// The `--cache-from` caches a build may reuse layers from.
fn shared_cache<'r>(options: &BuildOptions, remote: &'r RemoteAccess) -> SharedCache<'r> {
    if options.cache_from.is_empty() || options.no_cache == NoCache::All {
        SharedCache::none()
    } else {
        SharedCache::load(remote, &options.cache_from)
    }
}

/// What one build reads once, and builds for several platforms share.
struct Loaded<'l, 'r> {
    context: &'l Context,
    path: &'l Path,
    dockerfile: &'l dockless_dockerfile::Dockerfile,
    shared: &'l SharedCache<'r>,
}

/// Builds a loaded Dockerfile for `options` (one platform).
fn build_loaded(
    options: &BuildOptions,
    store: &Store,
    remote: &RemoteAccess,
    observer: Option<&dyn LayerObserver>,
    loaded: &Loaded<'_, '_>,
) -> Result<BuiltImage, BuildError> {
    // Each wrong shared cache entry found costs one more pass (it is not used again); the
    // passes before it reused what they could, so little is redone.
    let mut passes = 0;
    let mut assume = true;
    loop {
        let mut executor = stage::Executor::new(
            options,
            store,
            loaded.context,
            loaded.path,
            remote,
            observer,
            loaded.shared,
        );
        executor.assume_while_listing = assume;
        match executor.run(loaded.dockerfile) {
            Err(e) if e.is_wrong_shared_entry() && passes < MAX_SHARED_CACHE_PASSES => {
                passes += 1;
            }
            Err(e) if e.is_wrong_assumption() && assume => {
                tracing::info!("{e}: planning again with the listing");
                assume = false;
            }
            result => return result,
        }
    }
}

/// The context, the Dockerfile's path and the parsed Dockerfile, as the build's first progress
/// step.
fn load_dockerfile(
    options: &BuildOptions,
) -> Result<(Context, PathBuf, dockless_dockerfile::Dockerfile), BuildError> {
    let step = options
        .progress
        .start("[internal] load build definition from Dockerfile");
    let loaded = read_dockerfile(options);
    step.end(loaded.is_ok());
    loaded
}

fn read_dockerfile(
    options: &BuildOptions,
) -> Result<(Context, PathBuf, dockless_dockerfile::Dockerfile), BuildError> {
    let context = Context::open(&options.context)?;
    let dockerfile_path = locate_dockerfile(
        context.root(),
        options.dockerfile.as_deref(),
        options.context_dockerfile.as_deref(),
    )?;
    let bytes = std::fs::read(&dockerfile_path).with_path("read", &dockerfile_path)?;
    let text = String::from_utf8(bytes).map_err(|e| BuildError::Dockerfile {
        file: dockerfile_path.clone(),
        message: format!(
            "is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
            e.utf8_error().valid_up_to()
        ),
    })?;
    let dockerfile = dockless_dockerfile::parse(&text).map_err(|e| BuildError::Parse {
        file: dockerfile_path.clone(),
        line: e.line,
        message: e.message.clone(),
    })?;
    Ok((context, dockerfile_path, dockerfile))
}
