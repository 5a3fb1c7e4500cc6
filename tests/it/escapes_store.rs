//! The store as a trust boundary, continued (issue 23): no file the store keeps on the host
//! side (the unpacked trees, the RUN snapshots, the cache mounts) is setuid or setgid to an ID
//! that owns anything on the host, while the command still sees, and the layers still carry,
//! every setuid and setgid bit as Docker has them.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::run::{As, dockless_as, workspace};
use crate::support::binary::{assert_success, needs_root, umoci_unpack};

/// A base with a setuid-root and a setgid-root file (a layer of its own)...
const SUID_BASE: &str = "FROM {base}\nADD suid.tar /\n";

/// ...under RUN steps that look at them, make a setuid file in a cache mount, take every bit off
/// with the usual hardening line, and make a setuid file in a layer.
const SUID_STEPS: &str = r#"FROM oci:{suidbase}:t
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox test -u /evil/suid-root && /bin/busybox test -g /evil/sgid-root && /bin/busybox stat -c '%a %u %g' /evil/suid-root /evil/sgid-root > /seen"]
RUN --mount=type=cache,target=/c ["/bin/busybox", "sh", "-c", "/bin/busybox cp /bin/busybox /c/suid && /bin/busybox chmod 6755 /c/suid"]
RUN ["/bin/busybox", "find", "/", "-xdev", "-perm", "/6000", "-type", "f", "-exec", "/bin/busybox", "chmod", "a-s", "{}", "+"]
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox cp /bin/busybox /made-suid && /bin/busybox chmod u+s /made-suid"]
"#;

/// A tar holding `evil/suid-root` (mode 4755) and `evil/sgid-root` (2755), both root's.
fn suid_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, mode) in [("evil/suid-root", 0o4755), ("evil/sgid-root", 0o2755)] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(3);
        builder
            .append_data(&mut header, name, &b"#!\n"[..])
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// The IDs an account file (/etc/passwd, /etc/group) lists.
fn listed_ids(file: &str) -> Vec<u32> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(':').nth(2)?.parse().ok())
        .collect()
}

/// Every regular file under `dir` that is setuid to a host ID that owns something (root, or an
/// account of the host other than `invoker`, who can already act as itself), or setgid to such a
/// group: the ways up a local user who reached the store would have.
fn identity_giving_files(dir: &Path, invoker: u32) -> Vec<(PathBuf, u32, u32, u32)> {
    let (users, groups) = (listed_ids("/etc/passwd"), listed_ids("/etc/group"));
    let owns_something =
        |id: u32, listed: &[u32]| id == 0 || (id != invoker && listed.contains(&id));
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
                continue;
            }
            let setuid = meta.mode() & 0o4000 != 0 && owns_something(meta.uid(), &users);
            let setgid = meta.mode() & 0o2000 != 0 && owns_something(meta.gid(), &groups);
            if meta.is_file() && (setuid || setgid) {
                found.push((entry.path(), meta.mode() & 0o7777, meta.uid(), meta.gid()));
            }
        }
    }
    found
}

#[test]
fn no_file_in_the_store_is_setuid_to_a_host_identity_and_runs_still_see_the_bits() {
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    // Root over overlay snapshots and over a copy of the tree, and rootless.
    for (who, snapshots) in [
        (As::Root, "overlay"),
        (As::Root, "copy"),
        (As::Nobody, "auto"),
    ] {
        let ws = workspace(SUID_BASE);
        ws.write("suid.tar", suid_tar());
        let build = |output: &str| {
            let out = dockless_as(&ws, who)
                .env("DOCKLESS_RUN_SNAPSHOTS", snapshots)
                .args(["build", "ctx", "--output", output, "--tag", "t"])
                .output()
                .unwrap();
            assert_success(&out);
        };
        build("suidbase");
        let suidbase = ws.path().join("suidbase");
        ws.write(
            "Dockerfile",
            SUID_STEPS.replace("{suidbase}", suidbase.to_str().unwrap()),
        );
        build("out");
        let mode = format!("{who:?} over {snapshots}");

        // What the command saw, and what the layers carry, are Docker's.
        let (_bundle, rootfs) = umoci_unpack(&ws.out(), "t");
        let seen = fs::read_to_string(rootfs.join("seen")).unwrap();
        assert_eq!(seen, "4755 0 0\n2755 0 0\n", "{mode}: inside the RUN");
        let meta = |rel: &str| {
            let m = fs::symlink_metadata(rootfs.join(rel)).unwrap();
            (m.mode() & 0o7777, m.uid(), m.gid())
        };
        assert_eq!(meta("made-suid"), (0o4755, 0, 0), "{mode}: u+s in a layer");
        assert_eq!(meta("evil/suid-root"), (0o755, 0, 0), "{mode}: hardened");
        assert_eq!(meta("evil/sgid-root"), (0o755, 0, 0), "{mode}: hardened");
        // The hardening step's layer holds exactly the files whose bits it took off.
        let manifest = layout_manifest(&ws.out());
        let layers = manifest["layers"].as_array().unwrap();
        let hardening = layers[layers.len() - 2]["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut listed = layer_paths(&ws.out(), &hardening);
        listed.sort();
        assert_eq!(listed, ["evil/sgid-root", "evil/suid-root"], "{mode}");

        // The cache kept the RUN's setuid file...
        let caches = ws.cache().join("cache-mounts");
        let suid: Vec<PathBuf> = fs::read_dir(&caches)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("suid"))
            .filter(|p| p.exists())
            .collect();
        assert_eq!(suid.len(), 1, "{mode}: the cache holds the RUN's file");
        // ...and nothing in the store gives a host identity to whoever runs it.
        let invoker = fs::metadata(ws.cache()).unwrap().uid();
        let found = identity_giving_files(&ws.cache(), invoker);
        assert!(
            found.is_empty(),
            "{mode}: setuid/setgid files of host identities in the store: {found:#?}"
        );
    }
}

/// The manifest of the one image in `layout`.
fn layout_manifest(layout: &Path) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    read_blob(layout, index["manifests"][0]["digest"].as_str().unwrap())
}

/// The paths a (gzip'd) layer blob of `layout` holds, directories left out.
fn layer_paths(layout: &Path, digest: &str) -> Vec<String> {
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut archive =
        tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(path).unwrap()));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.header().entry_type() != tar::EntryType::Directory)
        .map(|e| {
            e.path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_owned()
        })
        .collect()
}

/// The digest and path of `bytes` stored as a blob of the layout `layout`.
fn put_blob(layout: &Path, bytes: &[u8]) -> (String, u64) {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len() as u64)
}

fn read_blob(layout: &Path, digest: &str) -> serde_json::Value {
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Replaces the topmost layer of the one image in `layout` with the uncompressed `layer`, as a
/// hostile registry's image could hold it.
fn replace_top_layer(layout: &Path, layer: &[u8]) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let mut manifest = read_blob(layout, index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = read_blob(layout, manifest["config"]["digest"].as_str().unwrap());
    let (digest, size) = put_blob(layout, layer);
    let top = manifest["layers"].as_array().unwrap().len() - 1;
    manifest["layers"][top] = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": digest,
        "size": size,
    });
    config["rootfs"]["diff_ids"][top] = serde_json::json!(digest);
    let (digest, size) = put_blob(layout, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = serde_json::json!(digest);
    manifest["config"]["size"] = serde_json::json!(size);
    let (digest, size) = put_blob(layout, &serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = serde_json::json!(digest);
    index["manifests"][0]["size"] = serde_json::json!(size);
    fs::write(index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A layer that lists `a/` and `a/b/` (mode 0777) and then makes `a` a link to `host`.
fn directory_then_link(host: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for name in ["a/", "a/b/"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o777);
        header.set_size(0);
        builder
            .append_data(&mut header, name, std::io::empty())
            .unwrap();
    }
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder.append_link(&mut header, "a", host).unwrap();
    builder.into_inner().unwrap()
}

#[test]
fn a_base_layer_that_turns_a_directory_into_a_host_link_changes_nothing_on_the_host() {
    use std::os::unix::fs::PermissionsExt;
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    for who in [As::Root, As::Nobody] {
        let ws = workspace("FROM {base}\nCOPY x /x\n");
        ws.write("x", "x\n");
        let host = ws.path().join("host");
        fs::create_dir_all(host.join("b")).unwrap();
        let build = |output: &str| {
            let out = dockless_as(&ws, who)
                .args(["build", "ctx", "--output", output, "--tag", "t"])
                .output()
                .unwrap();
            assert_success(&out);
        };
        build("hostile");
        let hostile = ws.path().join("hostile");
        replace_top_layer(&hostile, &directory_then_link(&host));
        ws.write(
            "Dockerfile",
            format!(
                "FROM oci:{}:t\nRUN [\"/bin/busybox\", \"true\"]\n",
                hostile.display()
            ),
        );
        for dir in [&host, &host.join("b")] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
        }
        build("out");
        for dir in [&host, &host.join("b")] {
            let mode = fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
            assert_eq!(
                mode,
                0o700,
                "{who:?}: {} was changed through the link",
                dir.display()
            );
        }
    }
}
