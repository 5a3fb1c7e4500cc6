//! How a shared cache sits in a registry: one OCI image manifest per cache reference, an
//! artifact (`artifactType` below, the empty config) whose layers are the cached layers, each
//! annotated with its key, its kind and its diff_id. A registry holds it natively (its layers are
//! referenced, so no garbage collection takes them), skopeo reads it, and a layer the image also
//! uses is the same blob.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{CacheEntry, EntryKind};
use dockless_layer::WrittenLayer;
use dockless_oci::digest::Digest;
use dockless_oci::image::media;

/// The manifest's `artifactType`: what tells a cache apart from an image.
pub const ARTIFACT_TYPE: &str = "application/vnd.dockless.cache.v1+json";
/// OCI's empty descriptor: the config of an artifact that needs none.
pub(crate) const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub(crate) const EMPTY_CONFIG: &[u8] = b"{}";
/// Annotations of each layer.
pub const KEY: &str = "dev.dockless.cache.key";
pub const KIND: &str = "dev.dockless.cache.kind";
pub const DIFF_ID: &str = "dev.dockless.cache.diff-id";
/// A listing's annotation: the layer it lists.
pub const LISTING_OF: &str = "dev.dockless.cache.listing-of";
/// The media type of a layer listing: every path a layer writes, with type, mode, owner and
/// link target, so that another machine knows the tree without downloading the layer.
pub(crate) const LISTING_TYPE: &str = "application/vnd.dockless.layer-listing.v1+json";

/// A layer's listing, stored as its own blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The layer it lists.
    pub layer: Digest,
    pub blob: Digest,
    pub size: u64,
}

/// What a cache manifest holds.
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<CacheEntry>,
    pub listings: Vec<Listing>,
    /// One for each layer it lists wrongly (left out: the cache is untrusted input).
    pub warnings: Vec<String>,
}

/// The manifest listing `entries` and `listings` (sorted, so the same ones give the same bytes).
pub fn manifest(entries: &[CacheEntry], listings: &[Listing]) -> Vec<u8> {
    let by_key: BTreeMap<&str, &CacheEntry> = entries.iter().map(|e| (e.key.as_str(), e)).collect();
    let by_layer: BTreeMap<&Digest, &Listing> = listings.iter().map(|l| (&l.layer, l)).collect();
    let listed = by_layer.values().map(|listing| {
        json!({
            "mediaType": LISTING_TYPE,
            "digest": listing.blob.as_str(),
            "size": listing.size,
            "annotations": {
                KIND: "listing",
                LISTING_OF: listing.layer.as_str(),
            },
        })
    });
    let layers: Vec<Value> = by_key
        .values()
        .map(|entry| {
            json!({
                "mediaType": entry.media_type,
                "digest": entry.layer.digest.as_str(),
                "size": entry.layer.size,
                "annotations": {
                    KEY: entry.key,
                    KIND: entry.kind.as_str(),
                    DIFF_ID: entry.layer.diff_id.as_str(),
                },
            })
        })
        .chain(listed)
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_CONFIG_TYPE,
            "digest": Digest::of(EMPTY_CONFIG).as_str(),
            "size": EMPTY_CONFIG.len(),
        },
        "layers": layers,
    });
    serde_json::to_vec_pretty(&manifest).unwrap_or_default()
}

/// Why a manifest is not a cache at all.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("it is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "it is not a dockless cache (artifactType {0:?}, expected {ARTIFACT_TYPE}); name a repository that only `--cache-to` writes"
    )]
    NotACache(Option<String>),
}

/// What a cache manifest lists.
pub fn parse(bytes: &[u8]) -> Result<Parsed, FormatError> {
    let value: Value = serde_json::from_slice(bytes)?;
    let artifact = value["artifactType"].as_str();
    if artifact != Some(ARTIFACT_TYPE) {
        return Err(FormatError::NotACache(artifact.map(str::to_owned)));
    }
    let mut parsed = Parsed::default();
    for (index, layer) in value["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let result = if layer["mediaType"] == LISTING_TYPE {
            parse_listing(layer).map(|listing| parsed.listings.push(listing))
        } else {
            parse_layer(layer).map(|entry| parsed.entries.push(entry))
        };
        if let Err(why) = result {
            parsed.warnings.push(format!("layer {index}: {why}"));
        }
    }
    Ok(parsed)
}

/// What is wrong with one layer of a cache manifest (the layer is then left out).
#[derive(Debug, thiserror::Error)]
enum LayerProblem {
    #[error("has no {0}")]
    Missing(&'static str),
    #[error("{what} {value:?} is not valid: {detail}")]
    Invalid {
        what: &'static str,
        value: String,
        detail: String,
    },
}

/// The text at `value`, which the layer must have.
fn text(value: &Value, what: &'static str) -> Result<String, LayerProblem> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or(LayerProblem::Missing(what))
}

/// The digest at `value`, which the layer must have.
fn digest(value: &Value, what: &'static str) -> Result<Digest, LayerProblem> {
    let text = text(value, what)?;
    text.parse().map_err(
        |e: dockless_oci::digest::DigestError| LayerProblem::Invalid {
            what,
            value: text,
            detail: e.to_string(),
        },
    )
}

fn invalid(what: &'static str, value: &str, detail: &str) -> LayerProblem {
    LayerProblem::Invalid {
        what,
        value: value.to_owned(),
        detail: detail.to_owned(),
    }
}

fn parse_listing(layer: &Value) -> Result<Listing, LayerProblem> {
    Ok(Listing {
        layer: digest(&layer["annotations"][LISTING_OF], "listed layer")?,
        blob: digest(&layer["digest"], "digest")?,
        size: layer["size"]
            .as_u64()
            .ok_or(LayerProblem::Missing("size"))?,
    })
}

fn parse_layer(layer: &Value) -> Result<CacheEntry, LayerProblem> {
    let annotations = &layer["annotations"];
    let key = text(&annotations[KEY], "key")?;
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("key", &key, "expected a sha256 in hex"));
    }
    let kind = match text(&annotations[KIND], "kind")?.as_str() {
        "files" => EntryKind::Files,
        "run" => EntryKind::Run,
        other => return Err(invalid("kind", other, "expected files or run")),
    };
    let size = layer["size"]
        .as_u64()
        .filter(|size| *size > 0)
        .ok_or(LayerProblem::Missing("size"))?;
    let media_type = text(&layer["mediaType"], "media type")?;
    if !is_layer_type(&media_type) {
        return Err(invalid(
            "media type",
            &media_type,
            "expected a compressed layer's",
        ));
    }
    Ok(CacheEntry {
        key,
        kind,
        layer: WrittenLayer {
            digest: digest(&layer["digest"], "digest")?,
            diff_id: digest(&annotations[DIFF_ID], "diff_id")?,
            size,
        },
        media_type,
    })
}

fn is_layer_type(media_type: &str) -> bool {
    [
        media::OCI_LAYER_GZIP,
        media::OCI_LAYER_ZSTD,
        media::DOCKER_LAYER_GZIP,
        media::DOCKER_LAYER_ZSTD,
    ]
    .contains(&media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: char, kind: EntryKind, content: &[u8]) -> CacheEntry {
        CacheEntry {
            key: key.to_string().repeat(64),
            kind,
            layer: WrittenLayer {
                digest: Digest::of(content),
                diff_id: Digest::of(&[content, b"tar"].concat()),
                size: content.len() as u64,
            },
            media_type: media::OCI_LAYER_GZIP.into(),
        }
    }

    #[test]
    fn entries_survive_the_round_trip_in_key_order() {
        let entries = vec![
            entry('b', EntryKind::Run, b"run layer"),
            entry('a', EntryKind::Files, b"files layer"),
        ];
        let listings = vec![Listing {
            layer: entries[0].layer.digest.clone(),
            blob: Digest::of(b"listing"),
            size: 7,
        }];
        let bytes = manifest(&entries, &listings);
        let parsed = parse(&bytes).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let keys: Vec<&str> = parsed.entries.iter().map(|e| &e.key[..1]).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(parsed.entries[0].layer, entries[1].layer);
        assert_eq!(parsed.entries[1].kind, EntryKind::Run);
        assert_eq!(parsed.listings, listings);
        let reversed: Vec<CacheEntry> = entries.into_iter().rev().collect();
        assert_eq!(
            manifest(&reversed, &listings),
            bytes,
            "the order given does not matter"
        );
    }

    #[test]
    fn bad_layers_are_left_out_with_a_warning_and_other_manifests_refused() {
        let mut value: Value =
            serde_json::from_slice(&manifest(&[entry('a', EntryKind::Files, b"x")], &[])).unwrap();
        let good = value["layers"][0].clone();
        let mut bad_key = good.clone();
        bad_key["annotations"][KEY] = json!("../../etc");
        let mut bad_digest = good.clone();
        bad_digest["digest"] = json!("sha256:nothex");
        let mut bad_type = good.clone();
        bad_type["mediaType"] = json!("text/plain");
        value["layers"] = json!([bad_key, good, bad_digest, bad_type]);
        let parsed = parse(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(parsed.entries.len(), 1);
        assert_eq!(parsed.warnings.len(), 3, "{:?}", parsed.warnings);
        value["artifactType"] = json!("application/vnd.something.else");
        assert!(matches!(
            parse(&serde_json::to_vec(&value).unwrap()),
            Err(FormatError::NotACache(_))
        ));
        assert!(parse(b"not json").is_err());
    }
}
