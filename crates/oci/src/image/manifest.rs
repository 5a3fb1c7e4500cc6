//! Manifest, index and descriptor documents.
//!
//! These are our own small types rather than oci-spec's: oci-spec keeps annotations in a
//! `HashMap`, whose serialisation order changes from run to run, and a manifest's digest is the
//! hash of its exact bytes. Here every map is a `BTreeMap` and field order is fixed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::platform::Platform;
use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
        }
    }
}

/// An image manifest (OCI or Docker schema 2: the two share this shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// The canonical bytes of this manifest: the bytes that are hashed, stored and pushed.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Index {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The entry serving `platform`, if any.
    pub fn select(&self, platform: &Platform) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            super::media::is_manifest(&d.media_type)
                && d.platform.as_ref().is_some_and(|p| platform.accepts(p))
        })
    }

    /// The platforms on offer, for an error message.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_bytes_are_stable_and_round_trip() {
        let d = Digest::of(b"x");
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(super::super::media::OCI_MANIFEST.into()),
            config: Descriptor::new(super::super::media::OCI_CONFIG, d.clone(), 1),
            layers: vec![Descriptor {
                annotations: Some(BTreeMap::from([
                    ("z".to_string(), "1".to_string()),
                    ("a".to_string(), "2".to_string()),
                ])),
                ..Descriptor::new(super::super::media::OCI_LAYER_GZIP, d, 1)
            }],
            annotations: None,
        };
        let bytes = manifest.to_bytes();
        assert_eq!(bytes, manifest.to_bytes());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.find("\"a\"").unwrap() < text.find("\"z\"").unwrap());
        let back: Manifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, manifest);
    }
}
