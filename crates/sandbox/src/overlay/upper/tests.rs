use super::*;
use std::os::unix::fs::PermissionsExt;

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
    let opaque = xattr::set(upper.join("doc"), "user.overlay.opaque", b"y");
    let whiteout = std::ffi::CString::new(upper.join("etc/gone").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    let made = unsafe { libc::mknod(whiteout.as_ptr(), libc::S_IFCHR | 0o600, 0) } == 0;
    if opaque.is_err() || !made {
        eprintln!("skipped: needs root (whiteouts) and user extended attributes");
        return;
    }
    let lowers = [middle, base];
    let entries = diff(&upper, &lowers).unwrap();
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
    let entries = diff(&upper, &[base]).unwrap();
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
