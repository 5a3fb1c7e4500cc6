//! What `--json` prints: one type per command's result, serialised with serde so that every
//! key is camelCase (as OCI and Docker JSON spell theirs: `mediaType`, `diffId`), written in
//! one place, and printed as one object on stdout. E2B's own names (`templateID`, `buildID`)
//! are kept as E2B's API spells them. Blob counts never overlap: a blob is uploaded, mounted
//! from another repository, or skipped (the registry had it), and each is counted once.
//! `prune --json` prints [`dockless_oci::usage::Pruned`] and `template list --json` E2B's
//! `TemplateSummary` list, both serialised in the same key style. (`--metadata-file` is not a
//! result on stdout: it keeps buildx's keys, `containerimage.digest` and so on.)

use std::path::Path;

use dockless_build::BuiltImage;
use dockless_e2b::api::BuildState;
use dockless_e2b::credentials::{CredentialKind, E2bCredential};
use dockless_e2b::flows::FlowOutcome;
use dockless_oci::digest::Digest;
use dockless_oci::usage::AreaUsage;
use dockless_registry::{PushReport, Reference};
use dockless_shared_cache::{ExportError, ExportReport};
use serde::Serialize;

/// `dockless build --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildResult {
    #[serde(flatten)]
    pub image: ImageResult,
    /// The OCI layout written (`--output`), if any.
    pub output: Option<String>,
    /// The layout's first name.
    pub tag: String,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_exports: Vec<CacheExportResult>,
}

/// A built image.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageResult {
    /// The manifest's digest.
    pub digest: Digest,
    pub media_type: String,
    /// Bytes of the manifest, config and layers together.
    pub size: u64,
    pub manifest_size: u64,
    pub config: BlobResult,
    pub platform: String,
    pub layers: Vec<LayerResult>,
}

#[derive(Debug, Serialize)]
pub struct BlobResult {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerResult {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
    /// The layer came with the base image.
    pub from_base: bool,
}

impl ImageResult {
    pub fn of(image: &BuiltImage) -> Self {
        ImageResult {
            digest: image.manifest.digest.clone(),
            media_type: image.manifest.media_type.clone(),
            size: image.total_size(),
            manifest_size: image.manifest.size,
            config: BlobResult {
                digest: image.config.digest.clone(),
                size: image.config.size,
            },
            platform: image.platform.to_string(),
            layers: image
                .layers
                .iter()
                .map(|l| LayerResult {
                    digest: l.digest.clone(),
                    diff_id: l.diff_id.clone(),
                    size: l.size,
                    media_type: l.media_type.clone(),
                    from_base: l.from_base,
                })
                .collect(),
        }
    }
}

/// `dockless push --json` (and `push` under `build --push`): the first target's reference and
/// digest, the counts summed over every target, and each target under `references`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushResult {
    pub reference: String,
    /// `registry/repository@digest` of the first target.
    pub pinned: String,
    pub digest: Digest,
    #[serde(flatten)]
    pub blobs: BlobCounts,
    pub uploaded_bytes: u64,
    pub references: Vec<PushedReference>,
    /// Bytes of the image (when it was built here rather than read from `--from`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_exports: Vec<CacheExportResult>,
}

/// One target of a push.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushedReference {
    pub reference: String,
    pub pinned: String,
    #[serde(flatten)]
    pub blobs: BlobCounts,
    pub uploaded_bytes: u64,
}

/// What happened to each blob, each counted under one outcome only.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobCounts {
    /// Sent to the registry.
    pub uploaded_blobs: usize,
    /// Mounted from another repository of the same registry.
    pub mounted_blobs: usize,
    /// Already in the repository (or sent in full by another target of this push).
    pub skipped_blobs: usize,
}

impl BlobCounts {
    fn of(report: &PushReport) -> Self {
        BlobCounts {
            uploaded_blobs: report.uploaded_blobs,
            mounted_blobs: report.mounted_blobs,
            skipped_blobs: report.skipped_blobs,
        }
    }

    fn add(self, other: BlobCounts) -> Self {
        BlobCounts {
            uploaded_blobs: self.uploaded_blobs + other.uploaded_blobs,
            mounted_blobs: self.mounted_blobs + other.mounted_blobs,
            skipped_blobs: self.skipped_blobs + other.skipped_blobs,
        }
    }
}

/// `registry/repository@digest` of a pushed target.
pub fn pinned(target: &Reference, report: &PushReport) -> String {
    format!(
        "{}/{}@{}",
        target.registry(),
        target.repository(),
        report.manifest_digest
    )
}

impl PushResult {
    /// The pushes of one image to `reports` (at least one).
    pub fn of(reports: &[(Reference, PushReport)]) -> Self {
        let (target, report) = &reports[0];
        let references: Vec<PushedReference> = reports
            .iter()
            .map(|(target, report)| PushedReference {
                reference: target.to_string(),
                pinned: pinned(target, report),
                blobs: BlobCounts::of(report),
                uploaded_bytes: report.uploaded_bytes,
            })
            .collect();
        PushResult {
            reference: target.to_string(),
            pinned: pinned(target, report),
            digest: report.manifest_digest.clone(),
            blobs: references
                .iter()
                .fold(BlobCounts::default(), |sum, r| sum.add(r.blobs)),
            uploaded_bytes: references.iter().map(|r| r.uploaded_bytes).sum(),
            references,
            size: None,
            image: None,
            cache_exports: Vec::new(),
        }
    }
}

/// One `--cache-to` export: its counts, or why it failed (a warning, never a failed build).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum CacheExportResult {
    Exported {
        reference: String,
        entries: usize,
        uploaded_blobs: usize,
        mounted_blobs: usize,
        skipped_blobs: usize,
    },
    Failed {
        reference: String,
        error: String,
    },
}

impl CacheExportResult {
    pub fn of(to: &Reference, result: Result<&ExportReport, &ExportError>) -> Self {
        match result {
            Ok(report) => CacheExportResult::Exported {
                reference: to.to_string(),
                entries: report.entries,
                uploaded_blobs: report.uploaded_blobs,
                mounted_blobs: report.mounted_blobs,
                skipped_blobs: report.skipped_blobs,
            },
            Err(error) => CacheExportResult::Failed {
                reference: to.to_string(),
                error: error.to_string(),
            },
        }
    }
}

/// `dockless template build --json`.
#[derive(Debug, Serialize)]
pub struct TemplateBuildResult {
    #[serde(rename = "templateID")]
    pub template_id: String,
    #[serde(rename = "buildID")]
    pub build_id: String,
    /// Where the image was pushed.
    pub image: String,
    pub digest: Digest,
    pub status: BuildState,
}

impl TemplateBuildResult {
    pub fn of(outcome: &FlowOutcome) -> Self {
        TemplateBuildResult {
            template_id: outcome.template_id.clone(),
            build_id: outcome.build_id.clone(),
            image: outcome.image.clone(),
            digest: outcome.digest.clone(),
            status: outcome.status,
        }
    }
}

/// `dockless du --json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DuResult<'a> {
    pub root: &'a Path,
    pub areas: &'a [AreaUsage],
    pub total_bytes: u64,
}

/// `dockless auth status --json`: never the credential, only where it came from and its end.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatusResult {
    /// `api-key` or `access-token`.
    pub kind: &'static str,
    pub source: String,
    pub last_four: String,
    pub flows: &'static str,
    /// Whether E2B was asked (`--check`) and accepted it; false when it was not asked.
    pub checked: bool,
}

impl AuthStatusResult {
    /// `checked`: E2B was asked and accepted the credential (a refusal fails the command).
    pub fn of(credential: &E2bCredential, checked: bool) -> Self {
        AuthStatusResult {
            checked,
            kind: match credential.kind {
                CredentialKind::ApiKey => "api-key",
                CredentialKind::AccessToken => "access-token",
            },
            source: credential.origin.to_string(),
            last_four: credential.last_four(),
            flows: credential.kind.flows(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockless_oci::image::Descriptor;

    fn image() -> BuiltImage {
        let descriptor = |media_type: &str| Descriptor {
            media_type: media_type.into(),
            digest: Digest::of(media_type.as_bytes()),
            size: 10,
            urls: None,
            annotations: None,
            platform: None,
        };
        BuiltImage {
            manifest: descriptor("application/vnd.oci.image.manifest.v1+json"),
            config: descriptor("application/vnd.oci.image.config.v1+json"),
            layers: vec![dockless_build::BuiltLayer {
                digest: Digest::of(b"layer"),
                diff_id: Digest::of(b"diff"),
                size: 5,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                from_base: true,
                source: None,
            }],
            platform: "linux/amd64".parse().unwrap(),
            cache_entries: Vec::new(),
            stage_sets: Default::default(),
        }
    }

    fn report(uploaded: usize, skipped: usize, mounted: usize) -> PushReport {
        PushReport {
            manifest_digest: Digest::of(b"manifest"),
            uploaded_blobs: uploaded,
            skipped_blobs: skipped,
            mounted_blobs: mounted,
            uploaded_bytes: 100 * uploaded as u64,
        }
    }

    fn reference(text: &str) -> Reference {
        Reference::parse(text).unwrap()
    }

    /// Every key of `value`, however deep.
    fn keys(value: &serde_json::Value, into: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    into.push(key.clone());
                    keys(inner, into);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, into)),
            _ => {}
        }
    }

    #[test]
    fn every_key_of_a_build_with_push_and_cache_export_is_camel_case() {
        let pushes = vec![
            (reference("127.0.0.1:5000/a/b:v1"), report(2, 0, 0)),
            (reference("127.0.0.1:5000/c/d:v1"), report(0, 0, 2)),
        ];
        let result = BuildResult {
            image: ImageResult::of(&image()),
            output: Some("out".into()),
            tag: "latest".into(),
            tags: vec!["t".into()],
            push: Some(PushResult {
                size: Some(25),
                image: Some(ImageResult::of(&image())),
                ..PushResult::of(&pushes)
            }),
            cache_exports: vec![CacheExportResult::Exported {
                reference: "127.0.0.1:5000/cache:1".into(),
                entries: 1,
                uploaded_blobs: 1,
                mounted_blobs: 0,
                skipped_blobs: 0,
            }],
        };
        let value = serde_json::to_value(&result).unwrap();
        let mut all = Vec::new();
        keys(&value, &mut all);
        for key in &all {
            assert!(
                !key.contains('_')
                    && !key.contains('-')
                    && key.starts_with(|c: char| c.is_ascii_lowercase()),
                "{key} is not camelCase in {value}"
            );
        }
        for expected in [
            "diffId",
            "fromBase",
            "uploadedBlobs",
            "mountedBlobs",
            "cacheExports",
        ] {
            assert!(
                all.iter().any(|k| k == expected),
                "no {expected} in {value}"
            );
        }
        assert_eq!(
            value["layers"][0]["diffId"],
            Digest::of(b"diff").to_string()
        );
    }

    #[test]
    fn mounted_blobs_are_not_counted_as_skipped() {
        let pushes = vec![
            (reference("127.0.0.1:5000/a/b:v1"), report(3, 1, 0)),
            (reference("127.0.0.1:5000/c/d:v1"), report(0, 2, 2)),
        ];
        let value = serde_json::to_value(PushResult::of(&pushes)).unwrap();
        assert_eq!(value["uploadedBlobs"], 3, "{value}");
        assert_eq!(value["mountedBlobs"], 2, "{value}");
        assert_eq!(value["skippedBlobs"], 3, "{value}");
        assert_eq!(value["uploadedBytes"], 300, "{value}");
        assert_eq!(value["references"][1]["mountedBlobs"], 2, "{value}");
        assert_eq!(value["references"][1]["skippedBlobs"], 2, "{value}");
        assert_eq!(
            value["references"][0]["pinned"],
            format!("127.0.0.1:5000/a/b@{}", Digest::of(b"manifest"))
        );
    }

    #[test]
    fn a_failed_cache_export_says_why_and_an_absent_push_is_left_out() {
        let value = serde_json::to_value(BuildResult {
            image: ImageResult::of(&image()),
            output: None,
            tag: "latest".into(),
            tags: Vec::new(),
            push: None,
            cache_exports: vec![CacheExportResult::Failed {
                reference: "r/cache:1".into(),
                error: "denied".into(),
            }],
        })
        .unwrap();
        assert_eq!(value["cacheExports"][0]["error"], "denied", "{value}");
        assert!(value.get("push").is_none(), "{value}");
        assert!(value["output"].is_null(), "{value}");
    }
}
