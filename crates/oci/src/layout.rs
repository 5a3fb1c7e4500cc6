//! Reading and writing OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::fs_error::{FsError, IoContext};
use crate::image::media;
use crate::image::{Descriptor, Index};
use crate::store::{self, Store, StoreError};

/// The annotation that names an image in a layout's `index.json`.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// JSON documents larger than this are refused (registries cap manifests at 4 MiB too).
pub const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{} is not an OCI image layout (no oci-layout file); give a directory written by `dockless build --output`, `skopeo copy … oci:DIR` or umoci", .0.display())]
    NotALayout(PathBuf),
    #[error("{} is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("no image tagged '{tag}' in {}; it holds: {available}", dir.display())]
    TagNotFound {
        dir: PathBuf,
        tag: String,
        available: String,
    },
    #[error("{} holds {count} images; name one as oci:DIR:TAG", dir.display())]
    Ambiguous { dir: PathBuf, count: usize },
    #[error("blob {digest} in {} {problem}", dir.display())]
    BadBlob {
        dir: PathBuf,
        digest: Digest,
        problem: String,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An OCI image layout opened for reading.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    index: Index,
}

impl Layout {
    pub fn open(dir: &Path) -> Result<Self, LayoutError> {
        if !dir.join(store::OCI_LAYOUT_FILE).is_file() {
            return Err(LayoutError::NotALayout(dir.to_owned()));
        }
        let index_path = dir.join("index.json");
        let bytes = fs::read(&index_path).with_path("read", &index_path)?;
        let index = serde_json::from_slice(&bytes).map_err(|e| LayoutError::Invalid {
            path: index_path,
            message: e.to_string(),
        })?;
        Ok(Layout {
            dir: dir.to_owned(),
            index,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry of `index.json` named `tag`, or the only entry when no tag is given.
    pub fn find(&self, tag: Option<&str>) -> Result<&Descriptor, LayoutError> {
        let name_of = |d: &Descriptor| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned()
        };
        match tag {
            Some(tag) => self
                .index
                .manifests
                .iter()
                .find(|d| name_of(d).as_deref() == Some(tag))
                .ok_or_else(|| LayoutError::TagNotFound {
                    dir: self.dir.clone(),
                    tag: tag.into(),
                    available: {
                        let names: Vec<String> =
                            self.index.manifests.iter().filter_map(name_of).collect();
                        if names.is_empty() {
                            "no tagged images".into()
                        } else {
                            names.join(", ")
                        }
                    },
                }),
            None => match self.index.manifests.as_slice() {
                [only] => Ok(only),
                many => Err(LayoutError::Ambiguous {
                    dir: self.dir.clone(),
                    count: many.len(),
                }),
            },
        }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// Reads a JSON document (manifest, index, config), verifying its size and digest.
    pub fn read_document(&self, descriptor: &Descriptor) -> Result<Vec<u8>, LayoutError> {
        let bad = |problem: String| LayoutError::BadBlob {
            dir: self.dir.clone(),
            digest: descriptor.digest.clone(),
            problem,
        };
        if descriptor.size > MAX_DOCUMENT {
            return Err(bad(format!(
                "is {} bytes, over the 4 MiB limit for a document",
                descriptor.size
            )));
        }
        let path = self.blob_path(&descriptor.digest);
        let bytes = fs::read(&path).with_path("read", &path)?;
        if Digest::of(&bytes) != descriptor.digest || bytes.len() as u64 != descriptor.size {
            return Err(bad(
                "does not match its digest or size; the layout is damaged".into(),
            ));
        }
        Ok(bytes)
    }
}

/// Writes an OCI image layout at `output` holding one image, whose blobs are all in `store`,
/// with the image under each of `names` (one index entry per name, all the same manifest).
/// Written to a temporary directory beside `output` and renamed into place, so a failure
/// leaves nothing half-written; an existing layout at `output` is replaced.
pub fn write_layout_named(
    store: &Store,
    output: &Path,
    manifest: &Descriptor,
    blobs: &[Digest],
    names: &[String],
) -> Result<(), LayoutError> {
    if output.exists() && !output.join(store::OCI_LAYOUT_FILE).is_file() {
        let empty = fs::read_dir(output)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(LayoutError::Invalid {
                path: output.to_owned(),
                message: "it exists and is not an OCI image layout; refusing to overwrite it (choose another --output)".into(),
            });
        }
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_path("create", &parent)?;
    let temp = tempfile::Builder::new()
        .prefix(".dockless-output-")
        .tempdir_in(&parent)
        .with_path("create a temporary directory in", &parent)?;
    crate::cleanup::register(temp.path());
    let result = stage_and_swap(store, output, manifest, blobs, names, &temp, &parent);
    crate::cleanup::unregister(temp.path());
    result
}

/// Fills the staging directory and swaps it into place (see [`write_layout_named`]).
fn stage_and_swap(
    store: &Store,
    output: &Path,
    manifest: &Descriptor,
    blobs: &[Digest],
    names: &[String],
    temp: &tempfile::TempDir,
    parent: &Path,
) -> Result<(), LayoutError> {
    let blob_dir = temp.path().join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).with_path("create", &blob_dir)?;
    for digest in blobs.iter().chain([&manifest.digest]) {
        let target = blob_dir.join(digest.hex());
        if !target.exists() {
            store::link_or_copy(&store.blob_path(digest), &target)?;
        }
    }
    let entries = names
        .iter()
        .map(|name| {
            let mut entry = manifest.clone();
            entry.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), name.clone())]));
            entry
        })
        .collect();
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: entries,
        annotations: None,
    };
    let layout_file = temp.path().join(store::OCI_LAYOUT_FILE);
    fs::write(&layout_file, store::OCI_LAYOUT_CONTENT).with_path("write", &layout_file)?;
    let index_file = temp.path().join("index.json");
    fs::write(&index_file, index.to_bytes()).with_path("write", &index_file)?;

    // An existing layout is moved aside first, so that the swap is two renames and the old
    // layout comes back if the second one fails. On any failure `temp` removes what was staged.
    let aside = output
        .exists()
        .then(|| parent.join(format!(".dockless-replaced-{}", std::process::id())));
    if let Some(aside) = &aside {
        fs::rename(output, aside).with_path("replace", output)?;
    }
    if let Err(source) = fs::rename(temp.path(), output) {
        if let Some(aside) = &aside {
            let _ = fs::rename(aside, output);
        }
        return Err(FsError {
            action: "write",
            path: output.to_owned(),
            source,
        }
        .into());
    }
    if let Some(aside) = aside {
        let _ = fs::remove_dir_all(aside);
    }
    Ok(())
}
