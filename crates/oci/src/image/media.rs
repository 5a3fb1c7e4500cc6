//! Media types. An image is written entirely in one family: OCI or Docker schema 2.

use std::fmt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Which family of media types an image is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Oci,
    Docker,
}

/// How layer tars are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip { level: u32 },
    Zstd { level: i32 },
}

impl Default for Compression {
    /// gzip at level 1, like go-containerregistry: layers compress nearly as well as at level 6
    /// in a third of the time, and every registry and runtime reads gzip.
    fn default() -> Self {
        Compression::Gzip { level: 1 }
    }
}

impl Compression {
    /// How cache keys name the compression (`gzip:1`): part of every layer and RUN cache key,
    /// local or shared, so it never changes for the same settings.
    pub fn key_text(self) -> String {
        match self {
            Compression::Gzip { level } => format!("gzip:{level}"),
            Compression::Zstd { level } => format!("zstd:{level}"),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Gzip { level } => write!(f, "gzip-{level}"),
            Compression::Zstd { level } => write!(f, "zstd-{level}"),
        }
    }
}

impl Format {
    /// The index of several platforms' manifests: an OCI image index, or a Docker manifest list.
    pub fn index(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_MANIFEST_LIST,
        }
    }

    pub fn manifest(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }

    pub fn config(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }

    pub fn layer(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (Format::Oci, Compression::Gzip { .. }) => OCI_LAYER_GZIP,
            (Format::Oci, Compression::Zstd { .. }) => OCI_LAYER_ZSTD,
            (Format::Docker, Compression::Gzip { .. }) => DOCKER_LAYER_GZIP,
            (Format::Docker, Compression::Zstd { .. }) => DOCKER_LAYER_ZSTD,
        }
    }

    /// The same kind of layer media type in this family, for base layers whose descriptors are
    /// carried over from a base image written in the other family. `None` for types this family
    /// has no name for (foreign layers, for instance), which cannot be carried over.
    pub fn translate_layer(self, media_type: &str) -> Option<&'static str> {
        let kind = match media_type {
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Compression::Gzip { level: 0 },
            OCI_LAYER_ZSTD | DOCKER_LAYER_ZSTD => Compression::Zstd { level: 0 },
            OCI_LAYER_TAR | DOCKER_LAYER_TAR => {
                return Some(match self {
                    Format::Oci => OCI_LAYER_TAR,
                    Format::Docker => DOCKER_LAYER_TAR,
                });
            }
            _ => return None,
        };
        Some(self.layer(kind))
    }
}

pub fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, OCI_MANIFEST | DOCKER_MANIFEST)
}

pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_translate_between_families_without_mixing() {
        assert_eq!(
            Format::Oci.translate_layer(DOCKER_LAYER_GZIP),
            Some(OCI_LAYER_GZIP)
        );
        assert_eq!(
            Format::Docker.translate_layer(OCI_LAYER_ZSTD),
            Some(DOCKER_LAYER_ZSTD)
        );
        assert_eq!(
            Format::Docker.translate_layer(OCI_LAYER_TAR),
            Some(DOCKER_LAYER_TAR)
        );
        assert_eq!(
            Format::Oci
                .translate_layer("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            None
        );
    }
}
