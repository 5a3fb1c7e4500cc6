//! Image config, manifest and index documents, in OCI or Docker schema-2 media types (never a mix).

pub mod config;
pub mod manifest;
pub mod media;
pub mod platform;
pub mod users;

pub use config::{ContainerConfig, History, ImageConfig, RootFs};
pub use manifest::{Descriptor, Index, Manifest};
pub use media::{Compression, Format};
pub use platform::Platform;
