//! What a build leaves beside its output for scripts, as buildx leaves it: `--iidfile` (the
//! image ID, the config's digest) and `--metadata-file` (buildx's keys), and `--output
//! type=oci,dest=FILE.tar` (the OCI layout as one tar archive). Each file is written whole
//! (a temporary file beside it, then renamed) or not at all.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use dockless_build::BuiltImage;
use dockless_oci::digest::Digest;
use dockless_oci::image::Descriptor;
use dockless_oci::store::Store;
use serde_json::json;

use super::buildx::BuildxArgs;

/// Writes `--iidfile` and `--metadata-file` for `image`, known under `names`.
pub fn write(buildx: &BuildxArgs, image: &BuiltImage, names: &[String]) -> anyhow::Result<()> {
    if let Some(path) = &buildx.iidfile {
        // docker writes the ID alone, without a newline.
        write_whole(path, image.config.digest.as_str().as_bytes())?;
    }
    if let Some(path) = &buildx.metadata_file {
        let mut text = serde_json::to_vec_pretty(&metadata(image, names))?;
        text.push(b'\n');
        write_whole(path, &text)?;
    }
    Ok(())
}

/// buildx's result metadata for an image.
fn metadata(image: &BuiltImage, names: &[String]) -> serde_json::Value {
    let mut value = json!({
        "containerimage.digest": image.manifest.digest,
        "containerimage.config.digest": image.config.digest,
        "containerimage.descriptor": {
            "mediaType": image.manifest.media_type,
            "digest": image.manifest.digest,
            "size": image.manifest.size,
        },
    });
    if !names.is_empty() {
        value["image.name"] = json!(names.join(","));
    }
    value
}

/// Writes `bytes` to `path` through a temporary file beside it.
pub fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(parent).with_context(|| {
        format!(
            "could not write {}: in {}",
            path.display(),
            parent.display()
        )
    })?;
    file.write_all(bytes)
        .and_then(|()| file.flush())
        .with_context(|| format!("could not write {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

/// `--output DIR` (`tar` false) or `--output type=oci,dest=FILE` (`tar` true): the OCI layout
/// of an image (`top`: its manifest, or a multi-platform index, reaching `blobs`) under
/// `names`, as a directory or as a tar archive.
pub fn write_layout(
    store: &Store,
    (dest, tar): (&Path, bool),
    top: &Descriptor,
    blobs: &[Digest],
    names: &[String],
) -> anyhow::Result<()> {
    if tar {
        write_layout_tar(store, dest, top, blobs, names)
    } else {
        Ok(dockless_oci::layout::write_layout_named(
            store, dest, top, blobs, names,
        )?)
    }
}

/// `--output type=oci,dest=FILE`: the OCI layout of an image (`top`: its manifest, or a
/// multi-platform index, reaching `blobs`) under `names`, as a tar archive (the layout is
/// written beside it first; the archive's entries have fixed times and owners).
fn write_layout_tar(
    store: &Store,
    dest: &Path,
    top: &Descriptor,
    blobs: &[Digest],
    names: &[String],
) -> anyhow::Result<()> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".dockless-layout-")
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "could not write {}: in {}",
                dest.display(),
                parent.display()
            )
        })?;
    let layout = staging.path().join("layout");
    dockless_oci::layout::write_layout_named(store, &layout, top, blobs, names)?;
    let archive = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("could not write {}", dest.display()))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(archive));
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", &layout)
        .and_then(|()| builder.finish())
        .with_context(|| format!("could not write {}", dest.display()))?;
    let archive = builder
        .into_inner()
        .context("could not finish the archive")?
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("could not write {}", dest.display()))?;
    archive
        .persist(dest)
        .with_context(|| format!("could not write {}", dest.display()))?;
    Ok(())
}
