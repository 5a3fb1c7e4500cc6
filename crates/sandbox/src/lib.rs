//! RUN: commands executed in a sandbox over the image's file system, and the layer they make.
//!
//! The parts of one RUN (the builder's `run_step` puts them together and caches the result):
//! [`rootfs`] materialises the file system of the layers below (the base image's tree is
//! unpacked once into the store and copied; later layers are applied to the copy, which a stage
//! keeps up to date), [`diff::Snapshot`] records it, [`sandbox`] runs the command with that tree
//! as its root, contained, and [`diff`] turns what changed into layer entries. Without root,
//! [`owners`] carries the owners the host cannot set across the sandbox boundary. [`mounts`]
//! readies a RUN's cache, secret and bind mounts. As root, [`overlay`] replaces the copy and
//! the walks: the layers are overlay lowers and a RUN's layer is its upper directory. [`emulation`]
//! tells whether the kernel runs a foreign platform's programs (binfmt_misc) before a RUN. [`output`] takes the command's output to
//! stderr, or line by line to whoever shows progress.
//!
//! May use: oci, context, layer.

pub mod diff;
pub mod emulation;
pub mod mounts;
mod output;
pub mod overlay;
pub mod owners;
pub mod rootfs;
pub mod sandbox;
#[doc(hidden)]
pub mod test_support;

pub use output::OutputSink;
pub use sandbox::{InlineScript, Isolation, IsolationError, NetworkError, SANDBOX_ARG};

/// Why a RUN step could not produce its layer.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// The platform's programs cannot run here (no emulator registered).
    #[error(transparent)]
    Emulation(#[from] emulation::EmulationError),
    #[error("USER {user}: {message}")]
    User { user: String, message: String },
    #[error(transparent)]
    Layer(#[from] dockless_layer::LayerError),
    #[error("could not read the file system after the command: {0}")]
    Diff(#[source] std::io::Error),
    #[error(
        "the command failed with exit code {code}: {command}; fix the command (its output is above) and build again"
    )]
    Failed { code: i32, command: String },
}
