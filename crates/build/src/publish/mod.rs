//! Getting an image into a registry: the one door for "build this context and push it".
//!
//! [`build_and_push`] takes build options and a target and returns the pushed image, telling
//! a [`PublishEvents`] what happens on the way. Underneath, [`Destination`] does it in two
//! halves for callers that act in between (E2B's flows check the platform and talk to E2B):
//! [`Destination::build`] builds while layers already go up ([`early`]: a new layer streams as
//! it is compressed, a cached one is sent as soon as the build reaches it), then
//! [`Destination::push`] sends whatever is missing and the manifest ([`final_push`]).
//! [`push_layout_dir`] pushes an OCI layout from disk instead; [`push_index`] a multi-platform
//! build ([`crate::multi`]).

mod early;
mod final_push;
mod index;
mod layout;

use std::path::Path;
use std::sync::Arc;

use crate::{BuildError, BuildOptions, BuiltImage};
use dockless_oci::digest::Digest;
use dockless_oci::layout::{Layout, LayoutError};
use dockless_oci::store::{Store, StoreError};
use dockless_registry::remote::{RemoteAccess, RemoteError};
use dockless_registry::{
    BlobSource, PushBlob, PushProgressFn, PushReport, Reference, RegistryClient, RegistryError,
};
use dockless_shared_cache::{self, ExportError, ExportReport};

pub use early::EarlyReport;
pub use index::{build_index_beside, push_index};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Build(Box<BuildError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Remote(Box<RemoteError>),
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("layer {0} is neither in the local store nor in a base image's registry; build again")]
    MissingLayer(Digest),
    #[error("{dir}: {message}")]
    InvalidLayout { dir: String, message: String },
    #[error(
        "an upload stopped unexpectedly ({0}); nothing was tagged, run the push again (blobs already sent are skipped)"
    )]
    UploadTask(String),
}

// Build and registry errors carry a lot of context; boxed, they keep every Result small.
impl From<BuildError> for PublishError {
    fn from(e: BuildError) -> Self {
        PublishError::Build(Box::new(e))
    }
}

impl From<RemoteError> for PublishError {
    fn from(e: RemoteError) -> Self {
        PublishError::Remote(Box::new(e))
    }
}

impl From<RegistryError> for PublishError {
    fn from(e: RegistryError) -> Self {
        PublishError::Registry(Box::new(e))
    }
}

/// What a publication tells its caller on the way (each has a default that says nothing).
pub trait PublishEvents {
    /// Where the upload progress of each blob goes; `None`: nowhere.
    fn progress(&self) -> Option<PushProgressFn> {
        None
    }
    /// The image is built (new layers may already be in the registry).
    fn built(&self, _image: &BuiltImage) {}
    /// The final pass starts, with these blobs (digest, size).
    fn pushing(&self, _blobs: &[(Digest, u64)]) {}
    /// The build's layers went to a shared cache (`--cache-to`), or could not.
    fn cache_exported(&self, _to: &Reference, _result: Result<&ExportReport, &ExportError>) {}
}

/// Events nobody listens to.
pub struct Quiet;

impl PublishEvents for Quiet {}

/// A pushed image.
#[derive(Debug, Clone)]
pub struct PublishedImage {
    pub image: BuiltImage,
    pub report: PushReport,
    /// `registry/repository@digest`: the image by its manifest digest.
    pub pinned: String,
}

/// Builds the image `options` describe and pushes it to `target`, uploading layers while the
/// build goes on.
pub fn build_and_push(
    options: &BuildOptions,
    store: &Store,
    remote: &RemoteAccess,
    target: &Reference,
    events: &dyn PublishEvents,
) -> Result<PublishedImage, PublishError> {
    let destination = Destination::new(store, remote, remote.client(target)?, target, events);
    let staged = destination.build(options)?;
    destination.push(staged)
}

/// An image built for a destination, with what went up while it was built.
pub struct Staged {
    pub image: BuiltImage,
    early: EarlyReport,
    /// `--cache-to`: where the build's layers go once the push is over.
    cache_to: Vec<Reference>,
}

impl Staged {
    /// An image built without uploads on the way, whose layers go to `cache_to` after the push.
    pub fn new(image: BuiltImage, cache_to: Vec<Reference>) -> Self {
        Staged {
            image,
            early: EarlyReport::default(),
            cache_to,
        }
    }
}

/// Exports the layers `image` was made of to each `--cache-to` reference. A failed export is
/// the events' to report: it never fails the build or the push.
pub fn export_cache(
    store: &Store,
    remote: &RemoteAccess,
    image: &BuiltImage,
    targets: &[Reference],
    events: &dyn PublishEvents,
) {
    export_caches(store, remote, std::slice::from_ref(image), targets, events);
}

/// [`export_cache`] for the images of one build (a multi-platform build's, one per platform):
/// every image's layers go into one cache manifest per target, each platform's RUN layers
/// under their own keys (the platform is part of a RUN's key). Exported one image at a time,
/// each export would replace the one before it.
pub fn export_caches(
    store: &Store,
    remote: &RemoteAccess,
    images: &[BuiltImage],
    targets: &[Reference],
    events: &dyn PublishEvents,
) {
    if targets.is_empty() {
        return;
    }
    // The listings this machine has of the images' layers (the bases' included) and of the
    // cached ones go too: with them another machine knows the tree without the layers.
    let layers = images.iter().flat_map(|i| &i.layers).map(|l| &l.digest);
    let entries: Vec<_> = images
        .iter()
        .flat_map(|i| i.cache_entries.iter().cloned())
        .collect();
    let cached = entries.iter().map(|e| &e.entry.layer.digest);
    let mut listings: Vec<(Digest, Vec<u8>)> = Vec::new();
    for digest in layers.chain(cached) {
        if !listings.iter().any(|(d, _)| d == digest)
            && let Some(bytes) = crate::filesystem::listing_bytes(store, digest)
        {
            listings.push((digest.clone(), bytes));
        }
    }
    for target in targets {
        let result = dockless_shared_cache::export(store, remote, &entries, &listings, target);
        match &result {
            Ok(report) => tracing::info!(cache = %target, ?report, "shared cache exported"),
            Err(error) => tracing::debug!(cache = %target, %error, "shared cache export failed"),
        }
        events.cache_exported(target, result.as_ref());
    }
}

/// One registry repository an image goes to, and the client that reaches it (E2B's gateway
/// needs its own).
pub struct Destination<'a> {
    store: &'a Store,
    remote: &'a RemoteAccess,
    client: Arc<RegistryClient>,
    target: &'a Reference,
    events: &'a dyn PublishEvents,
}

impl<'a> Destination<'a> {
    pub fn new(
        store: &'a Store,
        remote: &'a RemoteAccess,
        client: Arc<RegistryClient>,
        target: &'a Reference,
        events: &'a dyn PublishEvents,
    ) -> Self {
        Destination {
            store,
            remote,
            client,
            target,
            events,
        }
    }

    /// Builds `options`, sending layers to the target as they are written.
    pub fn build(&self, options: &BuildOptions) -> Result<Staged, PublishError> {
        let early = early::EarlyUploads::start(
            self.remote.runtime(),
            self.client.clone(),
            self.target,
            self.events.progress(),
        );
        let (store, remote) = (self.store, self.remote);
        let built = early.build_beside(store, self.target, |observer| {
            crate::build_with(options, store, remote, Some(observer))
        });
        let early = self.remote.block_on(early.finish());
        // A failed build says why first; a failed upload only matters for a built image (whose
        // layers still go to --cache-to: the next build need not make them again).
        let image = built?;
        let early = early.inspect_err(|_| {
            export_cache(store, remote, &image, &options.cache_to, self.events);
        })?;
        self.events.built(&image);
        Ok(Staged {
            image,
            early,
            cache_to: options.cache_to.clone(),
        })
    }

    /// Pushes what the registry does not have yet, then the manifest; remembers where each
    /// blob now lives, for mounts next time.
    /// Then exports the build's layers to `--cache-to`, whether the push went through or not.
    pub fn push(&self, staged: Staged) -> Result<PublishedImage, PublishError> {
        let pushed = self.push_image(&staged);
        export_cache(
            self.store,
            self.remote,
            &staged.image,
            &staged.cache_to,
            self.events,
        );
        let (report, pinned) = pushed?;
        Ok(PublishedImage {
            image: staged.image,
            report,
            pinned,
        })
    }

    fn push_image(&self, staged: &Staged) -> Result<(PushReport, String), PublishError> {
        let request = final_push::request_for_image(self.store, &staged.image, self.remote)?;
        let blobs: Vec<(Digest, u64)> = request
            .blobs
            .iter()
            .map(|b| (b.digest.clone(), b.size))
            .collect();
        self.events.pushing(&blobs);
        let report = self.remote.block_on(final_push::push_built_image(
            self.store,
            &staged.image,
            request,
            &self.client,
            self.target,
            self.events.progress(),
            staged.early,
        ))?;
        let pinned = format!(
            "{}/{}@{}",
            self.target.registry(),
            self.target.repository(),
            report.manifest_digest
        );
        Ok((report, pinned))
    }
}

/// Pushes the image an OCI layout holds under `tag` (a manifest, or an index and its
/// manifests) to `target`.
pub fn push_layout_dir(
    remote: &RemoteAccess,
    dir: &Path,
    tag: Option<&str>,
    target: &Reference,
    events: &dyn PublishEvents,
) -> Result<PushReport, PublishError> {
    let layout = Layout::open(dir)?;
    let client = remote.client(target)?;
    remote.block_on(layout::push_layout(
        &client,
        &layout,
        tag,
        target,
        events.progress(),
    ))
}

/// Repositories of the target registry from which `digest` may be mounted: where this store
/// pushed it before, and `home`, the repository it came from there (a base's, a shared cache's).
fn mount_candidates(
    store: &Store,
    digest: &Digest,
    target: &Reference,
    home: Option<&str>,
) -> Vec<String> {
    let mut candidates = store.mount_sources(digest, target.registry(), target.repository());
    candidates.extend(
        home.filter(|home| *home != target.repository())
            .map(str::to_owned),
    );
    candidates
}

/// A blob of the local store, to push.
fn file_blob(store: &Store, digest: &Digest, size: u64) -> PushBlob {
    PushBlob {
        digest: digest.clone(),
        size,
        source: BlobSource::File(store.blob_path(digest)),
        mount_from: Vec::new(),
    }
}
