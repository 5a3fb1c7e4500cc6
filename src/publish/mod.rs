//! Getting an image into a registry: the one door for "build this context and push it".
//!
//! [`build_and_push`] takes build options and a target and returns the pushed image, telling
//! a [`PublishEvents`] what happens on the way. Underneath, [`Destination`] does it in two
//! halves for callers that act in between (E2B's flows check the platform and talk to E2B):
//! [`Destination::build`] builds while layers already go up ([`early`]: a new layer streams as
//! it is compressed, a cached one is sent as soon as the build reaches it), then
//! [`Destination::push`] sends whatever is missing and the manifest ([`final_push`]).
//! [`push_layout_dir`] pushes an OCI layout from disk instead.

mod early;
mod final_push;
mod layout;

use std::path::Path;
use std::sync::Arc;

use crate::build::{self, BuildError, BuildOptions, BuiltImage};
use crate::digest::Digest;
use crate::layout::{Layout, LayoutError};
use crate::registry::{
    BlobSource, PushBlob, PushProgressFn, PushReport, Reference, RegistryClient, RegistryError,
};
use crate::remote::{RemoteAccess, RemoteError};
use crate::store::{Store, StoreError};

pub use early::EarlyReport;

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
}

impl From<BuiltImage> for Staged {
    /// An image built without uploads on the way.
    fn from(image: BuiltImage) -> Self {
        Staged {
            image,
            early: EarlyReport::default(),
        }
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
            build::build_with(options, store, remote, Some(observer))
        });
        let early = self.remote.block_on(early.finish());
        // A failed build says why first; a failed upload only matters for a built image.
        let image = built?;
        let early = early?;
        self.events.built(&image);
        Ok(Staged { image, early })
    }

    /// Pushes what the registry does not have yet, then the manifest; remembers where each
    /// blob now lives, for mounts next time.
    pub fn push(&self, staged: Staged) -> Result<PublishedImage, PublishError> {
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
        Ok(PublishedImage {
            image: staged.image,
            report,
            pinned,
        })
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

/// Repositories of the target registry from which `digest` may be mounted.
fn mount_candidates(
    store: &Store,
    digest: &Digest,
    prefix: &str,
    target: &Reference,
    base_repository: Option<&str>,
) -> Vec<String> {
    store
        .locations(digest)
        .iter()
        .filter_map(|location| location.strip_prefix(prefix).map(str::to_owned))
        .chain(base_repository.map(str::to_owned))
        .filter(|repo| repo != target.repository())
        .collect()
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
