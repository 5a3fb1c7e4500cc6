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

/// ...under RUN steps that look at them, make setuid files in a layer and in a cache mount, and
/// take the bit off one as a hardening step would.
const SUID_STEPS: &str = r#"FROM oci:{suidbase}:t
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox test -u /evil/suid-root && /bin/busybox test -g /evil/sgid-root && /bin/busybox stat -c '%a %u %g' /evil/suid-root /evil/sgid-root > /seen"]
RUN --mount=type=cache,target=/c ["/bin/busybox", "sh", "-c", "/bin/busybox cp /bin/busybox /c/suid && /bin/busybox chmod 6755 /c/suid"]
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox cp /bin/busybox /made-suid && /bin/busybox chmod 4755 /made-suid && /bin/busybox chmod a-s /evil/sgid-root"]
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
        builder.append_data(&mut header, name, &b"#!\n"[..]).unwrap();
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
    let owns_something = |id: u32, listed: &[u32]| id == 0 || (id != invoker && listed.contains(&id));
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
        assert_eq!(meta("made-suid"), (0o4755, 0, 0), "{mode}: chmod u+s in a layer");
        assert_eq!(meta("evil/sgid-root"), (0o755, 0, 0), "{mode}: chmod a-s in a layer");
        assert_eq!(meta("evil/suid-root"), (0o4755, 0, 0), "{mode}: the base's file");

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
