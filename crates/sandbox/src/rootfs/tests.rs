//! Applying layers, copying trees and removing them.

use super::*;
use dockless_oci::image::media;

#[test]
fn resolve_keeps_symlinks_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join("real")).unwrap();
    symlink("/real", root.join("abs")).unwrap();
    symlink("../../..", root.join("up")).unwrap();
    assert_eq!(resolve(root, "abs/x", false).unwrap(), root.join("real/x"));
    assert_eq!(resolve(root, "up/etc", false).unwrap(), root.join("etc"));
    resolve(root, "new/deeper", true).unwrap();
    assert!(root.join("new/deeper").is_dir());
}

#[test]
fn a_fifo_in_place_of_a_database_is_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("passwd");
    let name = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
    let (sent, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || sent.send(read_regular(&fifo).is_err()));
    let refused = answer
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("reading a FIFO as the user database blocked");
    assert!(refused, "a FIFO was read as the user database");
}

#[test]
fn a_regular_database_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    fs::write(&passwd, "root:x:0:0::/root:/bin/sh\n").unwrap();
    assert_eq!(
        read_regular(&passwd).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
}

#[test]
fn copies_keep_modes_links_and_times() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("from");
    fs::create_dir_all(from.join("d")).unwrap();
    fs::write(from.join("d/f"), "x").unwrap();
    fs::set_permissions(from.join("d/f"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::hard_link(from.join("d/f"), from.join("h")).unwrap();
    symlink("d/f", from.join("l")).unwrap();
    set_mtime(&from.join("d/f"), 1234).unwrap();
    fs::set_permissions(from.join("d"), fs::Permissions::from_mode(0o555)).unwrap();
    let to = dir.path().join("to");
    fs::create_dir(&to).unwrap();
    cached::copy_tree(&from, &to, false).unwrap();
    let f = fs::metadata(to.join("d/f")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o4751);
    assert_eq!(f.mtime(), 1234);
    assert_eq!(f.nlink(), 2, "the hard link stays one");
    assert_eq!(fs::read_link(to.join("l")).unwrap(), Path::new("d/f"));
    assert_eq!(fs::metadata(to.join("d")).unwrap().mode() & 0o7777, 0o555);
    remove_tree(&from).unwrap();
    remove_tree(&to).unwrap();
}

/// A layer whose entries are raw names (the `tar` crate's setters refuse `..`).
fn raw_layer(names: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in names {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(0);
        header.set_cksum();
        bytes.extend_from_slice(header.as_bytes());
    }
    bytes.resize(bytes.len() + 1024, 0);
    bytes
}

#[test]
fn whiteouts_that_name_no_file_are_refused_with_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    for bad in ["a/b/.wh...", "a/b/.wh..", "a/.wh."] {
        let mut rootfs = Rootfs::new(&store).unwrap();
        fs::create_dir_all(rootfs.path().join("a/b/c")).unwrap();
        let layer = raw_layer(&[bad]);
        let digest = store.put_bytes(&layer).unwrap();
        let err = rootfs
            .apply(&store, &digest, media::OCI_LAYER_TAR)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&digest.to_string()) && err.contains(bad),
            "{err}"
        );
        assert!(err.contains("names no file"), "{err}");
        assert!(
            rootfs.path().join("a/b/c").is_dir(),
            "{bad} deleted a directory"
        );
    }
}

#[test]
fn remove_tree_removes_read_only_directories() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t");
    fs::create_dir_all(tree.join("a")).unwrap();
    fs::write(tree.join("a/f"), "x").unwrap();
    fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o500)).unwrap();
    remove_tree(&tree).unwrap();
    assert!(!tree.exists());
}

/// One header block of `kind` named `name` with `size` in its size field, then `data`.
fn raw_entry(name: &str, kind: tar::EntryType, size: u64, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name).unwrap();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o644);
    if kind == tar::EntryType::Link {
        header.set_link_name("target").unwrap();
    }
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(data);
    bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    bytes
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = [key.as_bytes(), b"=", value, b"\n"].concat();
    let mut length = body.len() + 2;
    while format!("{length} ").len() + body.len() != length {
        length += 1;
    }
    [format!("{length} ").into_bytes(), body].concat()
}

/// The tree a RUN sees is the one the layer's listing (and `docker pull`, Go's reader) gives:
/// a newline inside a PAX value makes no `path` record of its own, and a hard link's size
/// field carries no data, so the entry after it is not swallowed.
#[test]
fn layers_are_applied_as_gos_reader_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let records = pax_record("SCHILY.xattr.user.note", b"x\n14 path=/evil\n");
    let mut layer = [
        raw_entry(
            "PaxHeaders/real",
            tar::EntryType::XHeader,
            records.len() as u64,
            &records,
        ),
        raw_entry("real", tar::EntryType::Regular, 2, b"hi"),
        raw_entry("target", tar::EntryType::Regular, 0, b""),
        raw_entry("link", tar::EntryType::Link, 600, b""),
        raw_entry("after", tar::EntryType::Regular, 3, b"end"),
    ]
    .concat();
    layer.resize(layer.len() + 1024, 0);
    let digest = store.put_bytes(&layer).unwrap();
    let mut rootfs = Rootfs::new(&store).unwrap();
    rootfs.apply(&store, &digest, media::OCI_LAYER_TAR).unwrap();
    let root = rootfs.path();
    assert_eq!(fs::read_to_string(root.join("real")).unwrap(), "hi");
    assert!(
        !root.join("evil").exists(),
        "the xattr's value renamed the entry"
    );
    assert!(fs::symlink_metadata(root.join("link")).is_ok());
    assert_eq!(fs::read_to_string(root.join("after")).unwrap(), "end");
}

/// A layer that lists directories and then replaces one of them with a link to a host
/// directory: the modes and times set at the end of the layer go to nothing of the host.
#[test]
fn directory_modes_are_never_set_through_a_link() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let host = dir.path().join("host");
    fs::create_dir_all(host.join("b")).unwrap();
    for d in [&host, &host.join("b")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
        set_mtime(d, 5).unwrap();
    }
    let mut builder = tar::Builder::new(Vec::new());
    for name in ["a/", "a/b/"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o777);
        header.set_mtime(1_000_000);
        header.set_size(0);
        builder
            .append_data(&mut header, name, std::io::empty())
            .unwrap();
    }
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder
        .append_link(&mut header, "a", host.to_str().unwrap())
        .unwrap();
    let digest = store.put_bytes(&builder.into_inner().unwrap()).unwrap();
    let mut rootfs = Rootfs::new(&store).unwrap();
    rootfs.apply(&store, &digest, media::OCI_LAYER_TAR).unwrap();
    assert_eq!(fs::read_link(rootfs.path().join("a")).unwrap(), host);
    for d in [&host, &host.join("b")] {
        let meta = fs::metadata(d).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.mtime()),
            (0o700, 5),
            "{} was changed through the link",
            d.display()
        );
    }
}
