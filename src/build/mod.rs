//! The builder: a parsed Dockerfile and a context become an image in the store.
//!
//! `build` reads the Dockerfile, resolves the base, then applies each instruction to the image
//! config, writing a layer for each COPY/ADD (and for a WORKDIR that creates a directory).

pub mod base;
pub mod copy;
pub mod filesystem;
pub mod locate;
pub mod secrets;
mod stage;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::context::{Context, ContextError};
use crate::digest::Digest;
use crate::fs_error::{FsError, IoContext};
use crate::image::{Compression, Descriptor, Format, Platform};
use crate::remote::RemoteAccess;
use crate::store::{Store, StoreError};

pub use locate::locate_dockerfile;
pub use secrets::{SecretFlagError, SecretFlagProblem, SecretSource, parse_secret_flag};

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
    pub isolation: crate::run::Isolation,
    /// `--network`: the network of RUN steps without `--network` (and of `--network=default`).
    pub network: crate::run::sandbox::Network,
    /// `--target`: build the stage of this name and stop.
    pub target: Option<String>,
    /// `--secret id=…`: the secrets RUN --mount=type=secret may use, by id.
    pub secrets: BTreeMap<String, SecretSource>,
}

/// A built image: its manifest in the store and what it is made of.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltImage {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<BuiltLayer>,
    pub platform: Platform,
    /// The registry repository of a registry base: base layers not in the store are there.
    #[serde(skip)]
    pub base: Option<crate::registry::Reference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuiltLayer {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
    /// True for layers carried over from the base image.
    pub from_base: bool,
}

impl BuiltImage {
    /// Every blob the manifest names (config first), for export and push.
    pub fn blobs(&self) -> Vec<Digest> {
        std::iter::once(self.config.digest.clone())
            .chain(self.layers.iter().map(|l| l.digest.clone()))
            .collect()
    }

    /// Brings a registry base's layers into the store (verified), to write a complete layout.
    pub fn fetch_base_layers(
        &self,
        store: &Store,
        remote: &RemoteAccess,
    ) -> Result<(), crate::remote::RemoteError> {
        if let Some(base) = &self.base {
            for layer in self.layers.iter().filter(|l| l.from_base) {
                remote.fetch_blob(store, base, &layer.digest)?;
            }
        }
        Ok(())
    }

    /// Size of the manifest, config and layers together.
    pub fn total_size(&self) -> u64 {
        self.manifest.size + self.config.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
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
    #[error("{}:{line}: {source}", file.display())]
    Instruction {
        file: PathBuf,
        line: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{}: {message}", file.display())]
    Dockerfile { file: PathBuf, message: String },
}

/// Hears, from the writer threads, about the layers a build writes: a push uploads them while
/// the build goes on.
pub trait LayerObserver: Sync {
    /// A new layer has started to be written; its compressed bytes can be read as they land.
    fn writing(&self, live: crate::layer::LiveBlob);
    /// A layer is in the store, new or from a cache (after `writing`, for a new one).
    fn written(&self, layer: &BuiltLayer);
}

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
    let dockerfile = crate::dockerfile::parse(&text).map_err(|e| BuildError::Parse {
        file: dockerfile_path.clone(),
        line: e.line,
        message: e.message.clone(),
    })?;
    stage::Builder::new(options, store, &context, &dockerfile_path, remote, observer)
        .run(&dockerfile)
}
