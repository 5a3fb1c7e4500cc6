//! A small OCI image made in the test: gzip'd tar layers of pseudo-random data, a config JSON
//! with correct diff_ids, and an OCI manifest; each blob a file named by its digest.

use std::io::Write;

use bytes::Bytes;
use dockless_oci::digest::Digest;
use dockless_oci::image::media::OCI_MANIFEST;
use dockless_registry::{BlobSource, PushBlob, PushRequest};
use tempfile::TempDir;

pub struct TestImage {
    /// Holds the blob files for as long as the image lives.
    _dir: TempDir,
    pub manifest: Bytes,
    pub manifest_digest: Digest,
    pub blobs: Vec<PushBlob>,
}

impl TestImage {
    /// One layer per size (bytes of random file content, so the gzip'd layer is a bit larger).
    pub fn build(seed: u64, layer_sizes: &[usize]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the image");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut blobs = Vec::new();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (index, size) in layer_sizes.iter().enumerate() {
            let content: Vec<u8> = (0..*size).map(|_| rng.u8(..)).collect();
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(
                &mut header,
                format!("data/file-{index}.bin"),
                content.as_slice(),
            )
            .expect("tar entry");
            let tar = tar.into_inner().expect("tar bytes");
            diff_ids.push(Digest::of(&tar));
            let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gzip.write_all(&tar).expect("gzip");
            let layer = gzip.finish().expect("gzip finish");
            let digest = Digest::of(&layer);
            layers.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": layer.len(),
            }));
            blobs.push(write_blob(&dir, &layer));
        }
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Cmd": ["/bin/true"] },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        })
        .to_string()
        .into_bytes();
        let config_blob = write_blob(&dir, &config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_blob.digest,
                "size": config.len(),
            },
            "layers": layers,
        })
        .to_string();
        blobs.insert(0, config_blob);
        let manifest = Bytes::from(manifest);
        Self {
            manifest_digest: Digest::of(&manifest),
            manifest,
            blobs,
            _dir: dir,
        }
    }

    pub fn request(&self) -> PushRequest {
        PushRequest {
            manifest: self.manifest.clone(),
            media_type: OCI_MANIFEST.to_string(),
            blobs: self.blobs.clone(),
            mount_from: Vec::new(),
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

fn write_blob(dir: &TempDir, bytes: &[u8]) -> PushBlob {
    let digest = Digest::of(bytes);
    let path = dir.path().join(digest.hex());
    std::fs::write(&path, bytes).expect("write blob");
    PushBlob {
        digest,
        size: bytes.len() as u64,
        source: BlobSource::File(path),
        mount_from: Vec::new(),
    }
}
