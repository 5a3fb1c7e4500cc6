//! What one instruction can fail with, as a caller can match it: [`StepError`]. Handlers
//! return it without a location; the dispatch loop ([`super::dispatch`]) puts it into
//! [`crate::BuildError::Instruction`] with the Dockerfile's path and the instruction's line.
//! Each variant prints what its cause prints, so the messages users read are the causes'.

use dockless_context::ContextError;
use dockless_dockerfile::{ExpandError, MountError};
use dockless_layer::LayerError;
use dockless_oci::digest::{Digest, DigestError};
use dockless_oci::image::platform::PlatformError;
use dockless_oci::store::StoreError;
use dockless_registry::remote::RemoteError;
use dockless_sandbox::{NetworkError, RunError};

use crate::base::BaseError;
use crate::copy::CopyError;
use crate::filesystem::{ScanError, TooManyLinks};

pub use super::files::ChmodError;
pub use super::metadata::PortError;
pub use super::mounts::BindError;

/// Why an instruction failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// RUN: the sandbox, the file system it runs over, or the command itself
    /// ([`RunError::Failed`] carries the command's exit code).
    #[error(transparent)]
    Run(#[from] RunError),
    /// COPY or ADD: a source, a destination, a download. (Boxed, as [`StepError::Base`], to
    /// keep every `Result` of the build small.)
    #[error(transparent)]
    Copy(Box<CopyError>),
    /// A variable in the instruction could not be expanded.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// A `RUN --mount` flag that does not parse.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// A `RUN --mount=type=bind` source of the context that cannot be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A secret a `RUN --mount=type=secret` needs.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// `RUN --network` that the build's `--network` does not allow.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// FROM or `--from=`: the image could not be resolved, or its file system read.
    #[error(transparent)]
    Base(Box<BaseError>),
    /// A layer's listing could not be read.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// WORKDIR through a loop of symbolic links.
    #[error(transparent)]
    Links(#[from] TooManyLinks),
    /// A layer could not be written.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A layer could not be fetched from its registry.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `FROM --platform=` that is not a platform.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// `ADD --checksum=` that is not a digest.
    #[error(transparent)]
    Checksum(#[from] DigestError),
    #[error(transparent)]
    Chmod(#[from] ChmodError),
    #[error(transparent)]
    Port(#[from] PortError),
    /// A layer the stage needs is neither in the store nor anywhere it could be fetched from.
    #[error("layer {0} is missing from the store; build again")]
    MissingLayer(Digest),
    /// A `--cache-from` layer was found wrong once the build had gone past it: the build
    /// starts again without that entry (this escapes only if entries keep proving wrong).
    #[error(
        "the --cache-from layer {digest} is not what its entry says ({why}); build again, or without --cache-from"
    )]
    SharedCacheEntry { digest: Digest, why: String },
    /// The base holds a path the stage's plan assumed it did not (planned while the base's
    /// listing was read): the build starts again, knowing the listing.
    #[error(
        "the base image holds /{path}, which this build assumed free while it read the base's listing"
    )]
    AssumedFree { path: String },
    /// The instruction asks for something that cannot be: the message says what to change.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The instruction asks for something dockless does not do (BuildKit may).
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
}

impl From<CopyError> for StepError {
    fn from(error: CopyError) -> Self {
        StepError::Copy(Box::new(error))
    }
}

impl From<BaseError> for StepError {
    fn from(error: BaseError) -> Self {
        StepError::Base(Box::new(error))
    }
}

/// An instruction that asks for something that cannot be, and what to write instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// An instruction that asks for something dockless does not do, and what to do instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// A secret a RUN mounts that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("--secret id={id}: cannot read {}: {source}", path.display())]
    Unreadable {
        id: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--secret id={id},env={var}: the environment has no {var}; set it, or drop `required` from the mount"
    )]
    NoVariable { id: String, var: String },
    #[error(
        "the secret `{id}` is required by this RUN but the build was given none: pass --secret id={id},src=FILE or --secret id={id},env=VAR"
    )]
    NotGiven { id: String },
}
