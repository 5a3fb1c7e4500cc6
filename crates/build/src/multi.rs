//! Several platforms at once (`--platform linux/amd64,linux/arm64`): the Dockerfile and the
//! context are read once and the `--cache-from` caches loaded once, then one build per platform
//! (each RUN under emulation where the machine needs it), and one image index (a Docker
//! manifest list with `--format docker`) naming each platform's manifest with its platform.
//! A single platform never comes here: its image is its manifest, as before.

use dockless_oci::digest::Digest;
use dockless_oci::image::{Descriptor, Index, Platform};
use dockless_oci::store::{Store, StoreError};
use dockless_registry::remote::RemoteAccess;

use crate::{BuildError, BuildOptions, BuiltImage, FetchLayersError, LayerObserver, Loaded};

/// The images of a multi-platform build and the index that names them.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    /// The index (its bytes are in the store).
    pub index: Descriptor,
    /// One image per platform, in the order asked for.
    pub images: Vec<BuiltImage>,
}

impl BuiltIndex {
    /// Every blob the index reaches but itself: each image's config, layers and manifest.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut blobs: Vec<Digest> = Vec::new();
        for image in &self.images {
            for digest in image
                .blobs()
                .into_iter()
                .chain([image.manifest.digest.clone()])
            {
                if !blobs.contains(&digest) {
                    blobs.push(digest);
                }
            }
        }
        blobs
    }

    /// [`BuiltImage::fetch_remote_layers`] for every platform's image.
    pub fn fetch_remote_layers(
        &self,
        store: &Store,
        remote: &RemoteAccess,
    ) -> Result<(), FetchLayersError> {
        self.images
            .iter()
            .try_for_each(|image| image.fetch_remote_layers(store, remote))
    }
}

/// Builds `options` once for each of `platforms` and indexes the images. `options.platform`
/// is ignored: each build takes one of `platforms`. `observer` hears of every platform's
/// layers as they are written (a push uploads them on the way).
pub fn build_platforms(
    options: &BuildOptions,
    platforms: &[Platform],
    store: &Store,
    remote: &RemoteAccess,
    observer: Option<&dyn LayerObserver>,
) -> Result<BuiltIndex, BuildError> {
    let (context, path, dockerfile) = crate::load_dockerfile(options)?;
    // Every platform copies the same files: the context is walked once for all of them (and
    // their COPY layers, the same entries with the same stamps, are written once: the next
    // platform finds the first's in the layer cache).
    let context = context.sharing_walks();
    let shared = crate::shared_cache(options, remote);
    let loaded = Loaded {
        context: &context,
        path: &path,
        dockerfile: &dockerfile,
        shared: &shared,
    };
    let images = platforms
        .iter()
        .map(|platform| {
            let options = BuildOptions {
                platform: Some(platform.clone()),
                ..options.clone()
            };
            // The steps that follow are this platform's (BuildKit prefixes each with it).
            let step = options.progress.start(&format!("[{platform}] build"));
            let built = crate::build_loaded(&options, store, remote, observer, &loaded);
            step.end(built.is_ok());
            built
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(index_images(store, options.format.index(), images)?)
}

/// The index of `images` (of media type `media_type`), written to the store: one entry per
/// image, its manifest's descriptor with the image's platform.
pub fn index_images(
    store: &Store,
    media_type: &str,
    images: Vec<BuiltImage>,
) -> Result<BuiltIndex, StoreError> {
    let index = Index {
        schema_version: 2,
        media_type: Some(media_type.to_owned()),
        manifests: images
            .iter()
            .map(|image| Descriptor {
                platform: Some(image.platform.clone()),
                ..image.manifest.clone()
            })
            .collect(),
        annotations: None,
    };
    let bytes = index.to_bytes();
    let digest = store.put_bytes(&bytes)?;
    Ok(BuiltIndex {
        index: Descriptor::new(media_type, digest, bytes.len() as u64),
        images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockless_oci::image::media;

    fn image(store: &Store, arch: &str) -> BuiltImage {
        let manifest = format!("{{\"arch\":\"{arch}\"}}");
        let digest = store.put_bytes(manifest.as_bytes()).unwrap();
        BuiltImage {
            manifest: Descriptor::new(media::OCI_MANIFEST, digest, manifest.len() as u64),
            config: Descriptor::new(
                dockless_oci::image::Format::Oci.config(),
                Digest::of(arch.as_bytes()),
                2,
            ),
            layers: Vec::new(),
            platform: format!("linux/{arch}").parse().unwrap(),
            cache_entries: Vec::new(),
            stage_sets: Default::default(),
        }
    }

    #[test]
    fn an_index_names_each_platform_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let images = vec![image(&store, "amd64"), image(&store, "arm64")];
        let built = index_images(&store, media::OCI_INDEX, images.clone()).unwrap();
        let bytes = store.read_blob(&built.index.digest).unwrap();
        let index: Index = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(index.media_type.as_deref(), Some(media::OCI_INDEX));
        assert_eq!(index.platforms(), ["linux/amd64", "linux/arm64"]);
        let arm64 = index.select(&"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm64.digest, images[1].manifest.digest);
        assert_eq!(built.blobs().len(), 4);
        // The same images give the same index; a Docker list is a list.
        let again = index_images(&store, media::OCI_INDEX, images.clone()).unwrap();
        assert_eq!(again.index, built.index);
        let docker = index_images(&store, media::DOCKER_MANIFEST_LIST, images).unwrap();
        assert_eq!(docker.index.media_type, media::DOCKER_MANIFEST_LIST);
    }
}
