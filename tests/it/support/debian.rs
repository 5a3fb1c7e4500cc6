//! A Debian base image for the RUN tests: `debootstrap --variant=minbase bookworm` (with pip),
//! packed as an OCI layout with one uncompressed layer that keeps every owner and mode.
//!
//! Making it takes a minute or more and needs Debian's mirror, so it is made once and kept in
//! the shared test fixtures (`/var/tmp/dockless-tests`, outside the checkout, where the rootless
//! half can read it); a half-made one is never left in its place.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::Digest as _;

use super::binary::assert_success;

/// Bump when what goes into the base changes.
const NAME: &str = "debian-bookworm-minbase-pip-v1";

/// The layout directory; its tag is `bookworm`.
pub fn debian_base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        // Outside the checkout: the rootless half reads it as `nobody`.
        let cache = super::binary::shared_fixtures().join(NAME);
        if !cache.join("index.json").is_file() {
            make(&cache);
        }
        cache
    })
}

fn make(cache: &Path) {
    let work = tempfile::tempdir_in(cache.parent().unwrap()).unwrap();
    let root = work.path().join("root");
    eprintln!(
        "making the Debian base with debootstrap (once; kept in {})",
        cache.display()
    );
    let out = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=python3-pip",
            "bookworm",
            root.to_str().unwrap(),
            "http://deb.debian.org/debian",
        ])
        .output()
        .expect("debootstrap (run scripts/setup.sh)");
    assert_success(&out);
    // What an image does not carry: device nodes, downloaded packages and lists, the host's
    // resolver configuration.
    for dir in [
        "dev",
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "proc",
        "sys",
    ] {
        for entry in fs::read_dir(root.join(dir)).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                if path.file_name().unwrap() != "partial" {
                    fs::remove_dir_all(&path).unwrap();
                }
            } else {
                fs::remove_file(&path).unwrap();
            }
        }
    }
    fs::write(root.join("etc/resolv.conf"), "").unwrap();

    let layout = work.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let tar_path = work.path().join("layer.tar");
    let out = Command::new("tar")
        .args(["--numeric-owner", "--sort=name", "--xattrs", "-C"])
        .arg(&root)
        .args(["-cf", tar_path.to_str().unwrap(), "."])
        .output()
        .unwrap();
    assert_success(&out);
    let layer = blob_from_file(&tar_path, &blobs);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["bash"],
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.0]},
    });
    let config = blob_from_bytes(&serde_json::to_vec(&config).unwrap(), &blobs);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0, "size": layer.1}],
    });
    let manifest = blob_from_bytes(&serde_json::to_vec(&manifest).unwrap(), &blobs);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.0,
            "size": manifest.1,
            "annotations": {"org.opencontainers.image.ref.name": "bookworm"},
        }],
    });
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    // Readable by the unprivileged user the rootless tests run as.
    let out = Command::new("chmod")
        .args(["-R", "a+rX", layout.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let _ = fs::remove_dir_all(cache);
    fs::rename(&layout, cache).unwrap();
}

/// Moves `file` into `blobs` under its digest; returns the digest and size.
fn blob_from_file(file: &Path, blobs: &Path) -> (String, u64) {
    let (digest, size) =
        dockless_oci::digest::digest_reader(std::io::BufReader::new(fs::File::open(file).unwrap()))
            .unwrap();
    fs::rename(file, blobs.join(digest.hex())).unwrap();
    (digest.to_string(), size)
}

fn blob_from_bytes(bytes: &[u8], blobs: &Path) -> (String, u64) {
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    fs::write(blobs.join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len() as u64)
}
