//! How a shared cache sits in a registry: one OCI image manifest per cache reference, an
//! artifact (`artifactType` below, the empty config) whose layers are the cached layers, each
//! annotated with its key, its kind and its diff_id. A registry holds it natively (its layers are
//! referenced, so no garbage collection takes them), skopeo reads it, and a layer the image also
//! uses is the same blob.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{CacheEntry, EntryKind};
use crate::digest::Digest;
use crate::image::media;
use crate::layer::WrittenLayer;

/// The manifest's `artifactType`: what tells a cache apart from an image.
pub const ARTIFACT_TYPE: &str = "application/vnd.dockless.cache.v1+json";
/// OCI's empty descriptor: the config of an artifact that needs none.
pub const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// Annotations of each layer.
pub const KEY: &str = "dev.dockless.cache.key";
pub const KIND: &str = "dev.dockless.cache.kind";
pub const DIFF_ID: &str = "dev.dockless.cache.diff-id";

/// The manifest listing `entries` (sorted by key, so the same entries give the same bytes).
pub fn manifest(entries: &[CacheEntry]) -> Vec<u8> {
    let by_key: BTreeMap<&str, &CacheEntry> = entries.iter().map(|e| (e.key.as_str(), e)).collect();
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

/// The entries a cache manifest lists, and a warning for each layer it lists wrongly (those
/// are left out: the cache is untrusted input).
pub fn parse(bytes: &[u8]) -> Result<(Vec<CacheEntry>, Vec<String>), FormatError> {
    let value: Value = serde_json::from_slice(bytes)?;
    let artifact = value["artifactType"].as_str();
    if artifact != Some(ARTIFACT_TYPE) {
        return Err(FormatError::NotACache(artifact.map(str::to_owned)));
    }
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (index, layer) in value["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match parse_layer(layer) {
            Ok(entry) => entries.push(entry),
            Err(why) => warnings.push(format!("layer {index}: {why}")),
        }
    }
    Ok((entries, warnings))
}

fn parse_layer(layer: &Value) -> Result<CacheEntry, String> {
    let text = |value: &Value, what: &str| {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("has no {what}"))
    };
    let annotations = &layer["annotations"];
    let key = text(&annotations[KEY], "key")?;
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("key {key:?} is not a sha256 in hex"));
    }
    let kind = match text(&annotations[KIND], "kind")?.as_str() {
        "files" => EntryKind::Files,
        "run" => EntryKind::Run,
        other => return Err(format!("kind {other:?} is neither files nor run")),
    };
    let digest: Digest = text(&layer["digest"], "digest")?
        .parse()
        .map_err(|e| format!("digest: {e}"))?;
    let diff_id: Digest = text(&annotations[DIFF_ID], "diff_id")?
        .parse()
        .map_err(|e| format!("diff_id: {e}"))?;
    let size = layer["size"]
        .as_u64()
        .filter(|size| *size > 0)
        .ok_or("has no size")?;
    let media_type = text(&layer["mediaType"], "media type")?;
    if !is_layer_type(&media_type) {
        return Err(format!(
            "media type {media_type} is not a compressed layer's"
        ));
    }
    Ok(CacheEntry {
        key,
        kind,
        layer: WrittenLayer {
            digest,
            diff_id,
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
        let bytes = manifest(&entries);
        let (parsed, warnings) = parse(&bytes).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let keys: Vec<&str> = parsed.iter().map(|e| &e.key[..1]).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(parsed[0].layer, entries[1].layer);
        assert_eq!(parsed[1].kind, EntryKind::Run);
        let reversed: Vec<CacheEntry> = entries.into_iter().rev().collect();
        assert_eq!(
            manifest(&reversed),
            bytes,
            "the order given does not matter"
        );
    }

    #[test]
    fn bad_layers_are_left_out_with_a_warning_and_other_manifests_refused() {
        let mut value: Value =
            serde_json::from_slice(&manifest(&[entry('a', EntryKind::Files, b"x")])).unwrap();
        let good = value["layers"][0].clone();
        let mut bad_key = good.clone();
        bad_key["annotations"][KEY] = json!("../../etc");
        let mut bad_digest = good.clone();
        bad_digest["digest"] = json!("sha256:nothex");
        let mut bad_type = good.clone();
        bad_type["mediaType"] = json!("text/plain");
        value["layers"] = json!([bad_key, good, bad_digest, bad_type]);
        let (parsed, warnings) = parse(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        value["artifactType"] = json!("application/vnd.something.else");
        assert!(matches!(
            parse(&serde_json::to_vec(&value).unwrap()),
            Err(FormatError::NotACache(_))
        ));
        assert!(parse(b"not json").is_err());
    }
}
