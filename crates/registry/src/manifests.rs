//! Manifests: fetched with every OCI and Docker media type accepted and verified against the
//! digest of the exact bytes received; pushed as the exact bytes that were hashed.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use super::client::{RegistryClient, RegistryRequest, Scope};
use super::error::{RegistryError, Result};
use super::transport::{ReplayableBody, next_chunk};
use dockless_oci::digest::Digest;
use dockless_oci::image::media::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// Every manifest media type read back, in the order `Accept` lists them.
const MANIFEST_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Manifests larger than this are refused while reading: the distribution registry will not
/// store one over 4 MiB, so a bigger answer is a broken or hostile server, not an image.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
const DIGEST_HEADER: &str = "docker-content-digest";

/// A manifest as the registry sent it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
}

/// `Accept` for manifest reads: every type in [`MANIFEST_TYPES`].
fn manifest_accept() -> HeaderValue {
    HeaderValue::from_str(&MANIFEST_TYPES.join(", "))
        .expect("media type constants are valid header text")
}

impl RegistryClient {
    /// `GET /v2/<repo>/manifests/<tag or digest>`. When `reference` is a digest, or the
    /// registry names one, the bytes must hash to it.
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Result<FetchedManifest> {
        let operation = format!("GET manifest {reference}");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, manifest_accept());
        let mut response = self
            .send(RegistryRequest {
                method: Method::GET,
                url: self.api_url(&format!("{repository}/manifests/{reference}"))?,
                headers,
                body: None,
                scope: &Scope::pull(repository),
                operation: operation.clone(),
                retry: true,
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            let error = self.error_for(response, &operation, repository).await;
            return Err(match error {
                RegistryError::RepositoryNotFound { .. } => error,
                _ => RegistryError::NotFound {
                    registry: self.registry().to_string(),
                    repository: repository.to_string(),
                    what: "manifest",
                    reference: reference.to_string(),
                },
            });
        }
        if !response.status().is_success() {
            return Err(self.error_for(response, &operation, repository).await);
        }
        let header_digest = response
            .headers()
            .get(DIGEST_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let mut bytes = Vec::new();
        while let Some(chunk) = next_chunk(&mut response, self.settings().http.idle_timeout)
            .await
            .map_err(|error| self.body_read_error(&operation, error))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_MANIFEST_BYTES {
                return Err(RegistryError::UnexpectedStatus {
                    registry: self.registry().to_string(),
                    operation: format!("{operation} in {repository}"),
                    status: 200,
                    detail: ": the manifest is larger than 4 MiB, more than any registry stores"
                        .to_string(),
                    hint: "",
                });
            }
        }
        let digest = Digest::of(&bytes);
        let expected = if reference.contains(':') {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != digest.as_str()
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry().to_string(),
                repository: repository.to_string(),
                what: format!("manifest {reference}"),
                expected,
                actual: digest.to_string(),
            });
        }
        let media_type = media_type_of(&bytes)
            .or(content_type)
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok(FetchedManifest {
            bytes: Bytes::from(bytes),
            media_type,
            digest,
        })
    }

    /// `HEAD /v2/<repo>/manifests/<tag or digest>`: whether the repository has it.
    pub async fn manifest_exists(&self, repository: &str, reference: &str) -> Result<bool> {
        Ok(self.manifest_digest(repository, reference).await?.is_some())
    }

    /// The digest `reference` names in `repository` now, as the registry's
    /// `Docker-Content-Digest` says; `None` when it names nothing, `Some(None)` when the
    /// registry did not say (or named no sha256 digest).
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Option<Digest>>> {
        let operation = format!("HEAD manifest {reference}");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, manifest_accept());
        let response = self
            .send(RegistryRequest {
                method: Method::HEAD,
                url: self.api_url(&format!("{repository}/manifests/{reference}"))?,
                headers,
                body: None,
                scope: &Scope::push(repository),
                operation: operation.clone(),
                retry: true,
            })
            .await?;
        match response.status() {
            status if status.is_success() => Ok(Some(
                response
                    .headers()
                    .get(DIGEST_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.error_for(response, &operation, repository).await),
        }
    }

    /// `PUT /v2/<repo>/manifests/<tag or digest>` with exactly `bytes` and `media_type` as
    /// `Content-Type`; returns the manifest's digest.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest> {
        let digest = Digest::of(&bytes);
        let operation = format!("PUT manifest {reference}");
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::InvalidPush {
                reference: format!("{}/{repository}:{reference}", self.registry()),
                reason: format!("media type {media_type:?} cannot be sent as a header"),
            })?,
        );
        let body = ReplayableBody::bytes(bytes);
        let response = self
            .send(RegistryRequest {
                method: Method::PUT,
                url: self.api_url(&format!("{repository}/manifests/{reference}"))?,
                headers,
                body: Some(&body),
                scope: &Scope::push(repository),
                operation: operation.clone(),
                retry: true,
            })
            .await?;
        if !response.status().is_success() {
            return Err(self.error_for(response, &operation, repository).await);
        }
        if let Some(answered) = response
            .headers()
            .get(DIGEST_HEADER)
            .and_then(|v| v.to_str().ok())
            && answered.starts_with("sha256:")
            && answered != digest.as_str()
        {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry().to_string(),
                repository: repository.to_string(),
                what: format!("pushed manifest {reference}"),
                expected: digest.to_string(),
                actual: answered.to_string(),
            });
        }
        Ok(digest)
    }
}

/// The `mediaType` field of a manifest, when it has one.
pub fn media_type_of(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct MediaTypeOnly {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<MediaTypeOnly>(bytes)
        .ok()?
        .media_type
}

/// The digests a manifest names: for an image, its config and layers (blobs); for an index,
/// its child manifests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ManifestReferences {
    pub blobs: Vec<Digest>,
    pub manifests: Vec<Digest>,
}

/// Why a manifest's references could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestReferencesError {
    #[error("the manifest is not valid JSON ({0})")]
    Json(#[from] serde_json::Error),
}

/// Reads (never rewrites) a manifest to learn what must be in the registry before it. A
/// digest that is not sha256 makes the manifest invalid: nothing else can be pushed or checked.
pub fn manifest_references(
    bytes: &[u8],
) -> std::result::Result<ManifestReferences, ManifestReferencesError> {
    #[derive(serde::Deserialize)]
    struct Descriptor {
        digest: Digest,
    }
    #[derive(serde::Deserialize)]
    struct AnyManifest {
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    let parsed: AnyManifest = serde_json::from_slice(bytes)?;
    let mut references = ManifestReferences::default();
    references.blobs.extend(parsed.config.map(|c| c.digest));
    references
        .blobs
        .extend(parsed.layers.into_iter().map(|l| l.digest));
    references.manifests = parsed.manifests.into_iter().map(|m| m.digest).collect();
    Ok(references)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_images_and_indexes() {
        let [c, l1, l2, m] = [b"c", b"1", b"2", b"m"].map(|bytes| Digest::of(bytes));
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"c","digest":"{c}","size":1}},"layers":[{{"digest":"{l1}","size":1}},{{"digest":"{l2}","size":2}}]}}"#
        );
        let refs = manifest_references(image.as_bytes()).unwrap();
        assert_eq!(refs.blobs, [c, l1, l2]);
        assert!(refs.manifests.is_empty());
        assert_eq!(
            media_type_of(image.as_bytes()).as_deref(),
            Some(OCI_MANIFEST)
        );
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{m}","size":3}}]}}"#);
        assert_eq!(
            manifest_references(index.as_bytes()).unwrap().manifests,
            [m]
        );
        assert_eq!(media_type_of(index.as_bytes()), None);
        assert!(manifest_references(b"{").is_err());
        let short = br#"{"schemaVersion":2,"layers":[{"digest":"sha256:l1","size":1}]}"#;
        let error = manifest_references(short).unwrap_err().to_string();
        assert!(
            error.contains("'sha256:l1' is not a sha256 digest"),
            "{error}"
        );
    }

    #[test]
    fn manifest_reads_accept_every_manifest_type() {
        assert_eq!(
            manifest_accept().to_str().unwrap(),
            "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.docker.distribution.manifest.list.v2+json"
        );
    }
}
