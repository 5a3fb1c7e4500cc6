use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn paths(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

/// An upper directory as overlayfs leaves it, made by hand: a file copied up unchanged, one
/// changed, a new one, a whiteout and an opaque directory over two lowers.
#[test]
fn the_upper_directory_alone_gives_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (base, middle, upper) = (
        dir.path().join("base"),
        dir.path().join("mid"),
        dir.path().join("up"),
    );
    for d in [&base, &middle, &upper] {
        fs::create_dir(d).unwrap();
    }
    fs::create_dir_all(base.join("etc")).unwrap();
    fs::create_dir_all(base.join("doc/old")).unwrap();
    fs::write(base.join("etc/same"), "s").unwrap();
    fs::write(base.join("etc/edit"), "e").unwrap();
    fs::write(base.join("etc/gone"), "g").unwrap();
    fs::create_dir_all(middle.join("etc")).unwrap();
    fs::write(middle.join("etc/later"), "l").unwrap();

    // Copied up: the same metadata (times kept) for `same`, a new mode for `edit`.
    fs::create_dir(upper.join("etc")).unwrap();
    for name in ["same", "edit"] {
        fs::copy(base.join("etc").join(name), upper.join("etc").join(name)).unwrap();
        let mtime = fs::metadata(base.join("etc").join(name))
            .unwrap()
            .modified()
            .unwrap();
        fs::File::options()
            .write(true)
            .open(upper.join("etc").join(name))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    fs::set_permissions(upper.join("etc/edit"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(upper.join("etc/new"), "n").unwrap();
    fs::create_dir(upper.join("doc")).unwrap();
    fs::write(upper.join("doc/fresh"), "f").unwrap();
    xattr::set(upper.join("doc"), "user.overlay.opaque", b"y")
        .expect("user extended attributes in the temporary directory");
    if !crate::test_support::needs_root("a whiteout is a 0/0 character device") {
        return;
    }
    let whiteout = std::ffi::CString::new(upper.join("etc/gone").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    let made = unsafe { libc::mknod(whiteout.as_ptr(), libc::S_IFCHR | 0o600, 0) } == 0;
    assert!(
        made,
        "mknod of a whiteout as root: {}",
        std::io::Error::last_os_error()
    );
    let lowers = [middle, base];
    let entries = diff(&upper, &lowers, None).unwrap();
    assert_eq!(
        paths(&entries),
        [
            "doc",
            "doc/.wh..wh..opq",
            "doc/fresh",
            "etc/.wh.gone",
            "etc/edit",
            "etc/new"
        ]
    );
    assert!(
        entries[0].xattrs.is_empty(),
        "overlayfs's own attributes stay out"
    );
    assert!(lookup(&lowers, "etc/later").unwrap().is_some());
    assert!(lookup(&lowers, "doc/old").unwrap().is_some());
    assert!(lookup(&[upper], "doc/missing").unwrap().is_none());
}

/// A layer that holds a link where the upper has a directory (`etc` -> a host directory) hides
/// the layers below at that path, and the link is never followed to the host file of the same
/// name, whose metadata would decide whether the upper's file is a change.
#[test]
fn a_link_in_a_lower_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (host, lower, base) = (
        dir.path().join("host"),
        dir.path().join("lower"),
        dir.path().join("base"),
    );
    for d in [&host, &lower, &base] {
        fs::create_dir(d).unwrap();
    }
    fs::write(host.join("passwd"), "host").unwrap();
    std::os::unix::fs::symlink(&host, lower.join("etc")).unwrap();
    fs::create_dir(base.join("etc")).unwrap();
    fs::write(base.join("etc/passwd"), "base").unwrap();
    let lowers = [lower, base];
    assert!(lookup(&lowers, "etc/passwd").unwrap().is_none());
    assert!(lookup(&lowers, "etc").unwrap().is_some_and(|n| !n.is_dir()));
}

/// Without root every file on disk is the invoking user's: the owners in the image come from
/// what was recorded per layer, so a file copied up with the owner it had is left out, one
/// given another owner is kept with it, and a new file is root's unless recorded.
#[test]
fn recorded_owners_stand_for_the_invoking_users() {
    let dir = tempfile::tempdir().unwrap();
    let (base, upper) = (dir.path().join("base"), dir.path().join("up"));
    for d in [&base, &upper] {
        fs::create_dir(d).unwrap();
    }
    for name in ["kept", "given", "rooted"] {
        fs::write(base.join(name), name).unwrap();
        fs::copy(base.join(name), upper.join(name)).unwrap();
        let mtime = fs::metadata(base.join(name)).unwrap().modified().unwrap();
        let file = fs::File::options()
            .write(true)
            .open(upper.join(name))
            .unwrap();
        file.set_modified(mtime).unwrap();
    }
    fs::write(upper.join("new"), "n").unwrap();
    fs::write(upper.join("alices"), "a").unwrap();
    let on_disk = fs::metadata(&upper).unwrap();
    let host = (on_disk.uid(), on_disk.gid());
    let map = |pairs: &[(&str, (u64, u64))]| -> HashMap<String, (u64, u64)> {
        pairs.iter().map(|(p, o)| ((*p).to_owned(), *o)).collect()
    };
    let base_owners = map(&[("kept", (7, 8)), ("given", (7, 8)), ("rooted", (7, 8))]);
    let upper_owners = map(&[
        ("kept", (7, 8)),
        ("given", (9, 8)),
        ("alices", (1234, 1234)),
    ]);
    let lowers = [base];
    let entries = diff_with(
        &upper,
        &lowers,
        None,
        Some(RecordedOwners {
            host,
            upper: &upper_owners,
            lowers: &[&base_owners],
        }),
    )
    .unwrap();
    let owners: Vec<(&str, u64, u64)> = entries
        .iter()
        .map(|e| (e.path.as_str(), e.uid, e.gid))
        .collect();
    assert_eq!(
        owners,
        [
            ("alices", 1234, 1234),
            ("given", 9, 8),
            ("new", 0, 0),
            ("rooted", 0, 0)
        ]
    );
}

/// Below a directory the lowers lack, or have as something else, everything is new; below one
/// they have, only what differs.
#[test]
fn a_new_tree_is_taken_whole_without_searching_the_lowers() {
    let dir = tempfile::tempdir().unwrap();
    let (base, upper) = (dir.path().join("base"), dir.path().join("up"));
    fs::create_dir_all(base.join("opt/kept")).unwrap();
    fs::write(base.join("opt/kept/same"), "s").unwrap();
    fs::write(base.join("was-a-file"), "f").unwrap();
    fs::create_dir_all(upper.join("opt/kept")).unwrap();
    fs::create_dir_all(upper.join("opt/venv/lib/pkg")).unwrap();
    fs::write(upper.join("opt/venv/lib/pkg/mod.py"), "m").unwrap();
    fs::create_dir_all(upper.join("was-a-file/sub")).unwrap();
    for d in ["opt", "opt/kept"] {
        let mtime = fs::metadata(base.join(d)).unwrap().modified().unwrap();
        let meta = fs::metadata(base.join(d)).unwrap();
        fs::set_permissions(upper.join(d), meta.permissions()).unwrap();
        fs::File::open(upper.join(d))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    let entries = diff(&upper, &[base], None).unwrap();
    assert_eq!(
        paths(&entries),
        [
            "opt/venv",
            "opt/venv/lib",
            "opt/venv/lib/pkg",
            "opt/venv/lib/pkg/mod.py",
            "was-a-file",
            "was-a-file/sub"
        ]
    );
}
