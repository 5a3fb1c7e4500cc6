//! RUN: commands executed in a sandbox over the image's file system, and the layer they make.
//!
//! [`step`] is the one door for a RUN step. The flow for one RUN: [`rootfs`] materialises the file system of the layers below (the base
//! image's tree is unpacked once into the store and copied; later layers are applied to the copy,
//! which a stage keeps up to date), [`diff::Snapshot`] records it, [`sandbox`] runs the command
//! with that tree as its root, and [`diff`] turns what changed into layer entries. Without root,
//! [`owners`] carries the owners the host cannot set across the sandbox boundary. [`cache`] keys
//! the resulting layer by the layers below and the command, so an unchanged RUN is not run again.
//! [`output`] takes the command's output to stderr, or line by line to whoever shows progress.

pub mod cache;
pub mod diff;
pub mod mounts;
pub mod output;
pub mod owners;
pub mod rootfs;
pub mod sandbox;
pub mod step;

pub use cache::KeyedMount;
pub use output::OutputSink;
pub use sandbox::{InlineScript, Isolation, IsolationError, NetworkError, SANDBOX_ARG};
pub use step::{RunStep, SharedRunLayers, StepError, StepLayer};

/// Why a RUN step could not produce its layer.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("USER {user}: {message}")]
    User { user: String, message: String },
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    #[error("could not read the file system after the command: {0}")]
    Diff(#[source] std::io::Error),
    #[error(
        "the command failed with exit code {code}: {command}; fix the command (its output is above) and build again"
    )]
    Failed { code: i32, command: String },
}
