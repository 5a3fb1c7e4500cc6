//! A rootless stack's tree, merged for the build to read (`COPY --from` a stage built without
//! root). Only the sandbox's helper can mount the stack, in its user namespace; but every layer
//! of it is the invoking user's on disk (the store's tree of the base, and each upper handed
//! back after its command), so the build merges them itself, as overlayfs would: a tree of
//! directories whose files are hard links to the layers' own. No file's data is copied and no
//! layer is unpacked again; the owners come from what each layer recorded.
//!
//! Only real directories are descended into, each found with `symlink_metadata`: a link in a
//! layer (absolute, so meaning a host path here) is recreated as a link, never followed.

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::rootless::OwnerMap;
use super::upper::is_opaque;
use crate::diff::is_overlay_xattr;

/// Merges `layers` (topmost first; `recorded` parallel to them, the owners each layer keeps
/// aside) into the empty directory `into`; returns the owners recorded for the merged paths.
pub(crate) fn link_merged(
    layers: &[PathBuf],
    recorded: &[&OwnerMap],
    into: &Path,
) -> io::Result<OwnerMap> {
    let mut merge = Merge {
        layers,
        recorded,
        into,
        owners: OwnerMap::new(),
        dirs: Vec::new(),
    };
    let root_layers = merge.below(0, "", &(0..layers.len()).collect::<Vec<_>>())?;
    merge.dirs.push((String::new(), 0));
    let mut pending = vec![(String::new(), root_layers)];
    while let Some((rel, sources)) = pending.pop() {
        merge.directory(&rel, &sources, &mut pending)?;
    }
    // Deepest first: a directory's own time and mode are set once nothing more is made in it.
    for (rel, layer) in merge.dirs.iter().rev() {
        let from = layers[*layer].join(rel);
        let meta = fs::symlink_metadata(&from)?;
        let made = into.join(rel);
        copy_xattrs(&from, &made)?;
        fs::set_permissions(&made, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        set_times(&made, &meta)?;
    }
    Ok(merge.owners)
}

struct Merge<'m> {
    layers: &'m [PathBuf],
    recorded: &'m [&'m OwnerMap],
    into: &'m Path,
    owners: OwnerMap,
    /// Every directory made, in the order made, with the layer that gives its metadata.
    dirs: Vec<(String, usize)>,
}

impl Merge<'_> {
    /// Makes the entries of the merged directory `rel`, which the layers `sources` (topmost
    /// first) hold as directories; queues its subdirectories.
    fn directory(
        &mut self,
        rel: &str,
        sources: &[usize],
        pending: &mut Vec<(String, Vec<usize>)>,
    ) -> io::Result<()> {
        dockless_oci::cancel::check_io()?;
        // The topmost layer holding a name gives it.
        let mut names: Vec<(OsString, usize)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for &layer in sources {
            for entry in fs::read_dir(self.layers[layer].join(rel))? {
                let name = entry?.file_name();
                if seen.insert(name.clone()) {
                    names.push((name, layer));
                }
            }
        }
        for (name, layer) in names {
            let child = crate::rootfs::join(rel, &name.to_string_lossy());
            let from = self.layers[layer].join(rel).join(&name);
            let meta = fs::symlink_metadata(&from)?;
            let kind = meta.file_type();
            if kind.is_char_device() && meta.rdev() == 0 {
                // A whiteout: the name is gone from the merged tree.
                continue;
            }
            let made = self.into.join(rel).join(&name);
            if kind.is_dir() {
                fs::create_dir(&made)?;
                let below: Vec<usize> = sources.iter().copied().filter(|&l| l > layer).collect();
                let merged = self.below(layer, &child, &below)?;
                self.dirs.push((child.clone(), layer));
                pending.push((child.clone(), merged));
            } else if kind.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&from)?, &made)?;
                set_times(&made, &meta)?;
            } else if kind.is_file() {
                link_or_copy(&from, &made, &meta)?;
            } else if kind.is_fifo() {
                make_fifo(&made, meta.mode())?;
                set_times(&made, &meta)?;
            } else {
                // A device or a socket, which an unprivileged user cannot make.
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("/{child} is a device or a socket"),
                ));
            }
            if let Some(owner) = self.recorded[layer].get(&child) {
                self.owners.insert(child, *owner);
            }
        }
        Ok(())
    }

    /// The layers whose directory `rel` shows in the merged tree, given that `top` holds it
    /// as one and `lower` (topmost first) are the layers below it still showing its parent:
    /// overlayfs merges down to an opaque directory, and stops at anything but a directory.
    fn below(&self, top: usize, rel: &str, lower: &[usize]) -> io::Result<Vec<usize>> {
        let mut sources = vec![top];
        if is_opaque(&self.layers[top].join(rel)) {
            return Ok(sources);
        }
        for &layer in lower.iter().filter(|&&l| l != top) {
            let path = self.layers[layer].join(rel);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    sources.push(layer);
                    if is_opaque(&path) {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sources)
    }
}

/// A hard link to the layer's file; a copy (data, mode, times, extended attributes) when the
/// file carries overlayfs's own attributes (a file the mount copied up), which a mount hides
/// and a link would show, or when the file system refuses the link.
fn link_or_copy(from: &Path, made: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let overlays = xattr::list(from)?.any(|name| is_overlay_xattr(&name.to_string_lossy()));
    if !overlays && fs::hard_link(from, made).is_ok() {
        return Ok(());
    }
    fs::copy(from, made)?;
    copy_xattrs(from, made)?;
    fs::set_permissions(made, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    set_times(made, meta)
}

/// The extended attributes of `from` on `made`, overlayfs's own left out.
fn copy_xattrs(from: &Path, made: &Path) -> io::Result<()> {
    for name in xattr::list(from)? {
        if is_overlay_xattr(&name.to_string_lossy()) {
            continue;
        }
        if let Some(value) = xattr::get(from, &name)? {
            xattr::set(made, &name, &value)?;
        }
    }
    Ok(())
}

fn make_fifo(path: &Path, mode: u32) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), (mode & 0o7777) as libc::mode_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `meta`'s access and modification times on `path` (not following a link), to the
/// nanosecond: a layer made from the merged tree records them.
fn set_times(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    crate::rootfs::set_times(
        path,
        [
            libc::timespec {
                tv_sec: meta.atime() as libc::time_t,
                tv_nsec: meta.atime_nsec() as _,
            },
            libc::timespec {
                tv_sec: meta.mtime() as libc::time_t,
                tv_nsec: meta.mtime_nsec() as _,
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let dir = root.join(name);
        fs::create_dir(&dir).unwrap();
        dir
    }

    /// Makes a whiteout at `path` (a 0/0 character device, as overlayfs makes), which needs
    /// root; `false` when the run asked to skip what needs root.
    fn whiteout(path: &Path) -> bool {
        if !crate::test_support::needs_root("a whiteout is a 0/0 character device") {
            return false;
        }
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) == 0 };
        assert!(
            made,
            "mknod of a whiteout as root: {}",
            io::Error::last_os_error()
        );
        true
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path);
                    out.push(format!("{rel}/"));
                } else if meta.file_type().is_symlink() {
                    out.push(format!(
                        "{rel} -> {}",
                        fs::read_link(&path).unwrap().display()
                    ));
                } else {
                    out.push(format!("{rel} = {}", fs::read_to_string(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn layers_merge_as_overlayfs_shows_them() {
        let dir = tempfile::tempdir().unwrap();
        let (base, middle, top) = (
            layer(dir.path(), "base"),
            layer(dir.path(), "middle"),
            layer(dir.path(), "top"),
        );
        for d in ["etc", "opaque", "kept", "replaced"] {
            fs::create_dir(base.join(d)).unwrap();
        }
        fs::write(base.join("etc/a"), "base a").unwrap();
        fs::write(base.join("etc/b"), "base b").unwrap();
        fs::write(base.join("opaque/old"), "old").unwrap();
        fs::write(base.join("kept/k"), "k").unwrap();
        fs::write(base.join("replaced/r"), "r").unwrap();
        // The middle layer changes a file, makes a directory opaque and replaces another with
        // a file; the top one links to a host path and makes a directory again.
        fs::create_dir(middle.join("etc")).unwrap();
        fs::write(middle.join("etc/a"), "middle a").unwrap();
        fs::create_dir(middle.join("opaque")).unwrap();
        xattr::set(middle.join("opaque"), "user.overlay.opaque", b"y").unwrap();
        fs::write(middle.join("opaque/new"), "new").unwrap();
        fs::write(middle.join("replaced"), "a file now").unwrap();
        fs::create_dir(top.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", top.join("etc/host")).unwrap();
        let whiteouts = whiteout(&top.join("etc/b"));
        // A file the mount copied up carries overlayfs's attributes, which a mount hides.
        fs::create_dir(top.join("kept")).unwrap();
        fs::write(top.join("kept/up"), "up").unwrap();
        xattr::set(top.join("kept/up"), "user.overlay.origin", b"o").unwrap();
        xattr::set(top.join("kept/up"), "user.kept", b"k").unwrap();
        let into = layer(dir.path(), "merged");
        let mut recorded = OwnerMap::new();
        recorded.insert("etc/a".to_owned(), (7, 8));
        let none = OwnerMap::new();
        let owners = link_merged(
            &[top.clone(), middle.clone(), base],
            &[&none, &recorded, &none],
            &into,
        )
        .unwrap();
        let mut expected = vec![
            "etc/",
            "etc/a = middle a",
            "etc/host -> /etc",
            "kept/",
            "kept/k = k",
            "kept/up = up",
            "opaque/",
            "opaque/new = new",
            "replaced = a file now",
        ];
        if !whiteouts {
            // Skipping what needs root was asked for: no whiteout is tested.
            expected.insert(2, "etc/b = base b");
        }
        assert_eq!(listing(&into), expected);
        assert_eq!(owners.get("etc/a"), Some(&(7, 8)));
        assert_eq!(owners.len(), 1);
        // Linked, not copied.
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&into.join("etc/a")), ino(&middle.join("etc/a")));
        assert_ne!(ino(&into.join("kept/up")), ino(&top.join("kept/up")));
        assert_eq!(
            xattr::list(into.join("kept/up"))
                .unwrap()
                .collect::<Vec<_>>(),
            ["user.kept"]
        );
        assert!(
            xattr::get(into.join("opaque"), "user.overlay.opaque")
                .unwrap()
                .is_none()
        );
    }
}
