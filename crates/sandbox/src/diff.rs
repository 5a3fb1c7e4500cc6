//! The layer a command made: the difference between two walks of the same tree.
//!
//! Added and changed files become entries; deleted paths become `.wh.<name>` whiteouts (only
//! the topmost deleted path); a directory that was removed and made again becomes opaque
//! (`.wh..wh..opq`) with its whole content. A file counts as changed when its inode, size, mode,
//! owner, link target, modification time or extended attributes differ, as in Docker's
//! `archive.Changes` (not the change time: the sandbox's owner hand-back moves it; `setcap` on a
//! file changes only its attributes). Directories whose own metadata did not change are left
//! out, as the layer below already has them. Extended attributes (file capabilities among them)
//! go into the layer with their file.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dockless_layer::{Entry, EntryKind};

/// What the walk records of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    dev: u64,
    ino: u64,
    nlink: u64,
    rdev: u64,
    mtime: (i64, i64),
    link: Option<PathBuf>,
    /// Extended attributes, sorted by name (file capabilities in their portable form).
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Whether the extended attribute `name` is overlayfs's own, which a mount hides.
pub(crate) fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

impl Node {
    /// What `path` is now, not following a symlink.
    pub(crate) fn read(path: &Path) -> io::Result<Node> {
        let meta = fs::symlink_metadata(path)?;
        Ok(Node {
            kind: meta.mode() & libc::S_IFMT,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            rdev: meta.rdev(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            link: if meta.file_type().is_symlink() {
                Some(fs::read_link(path)?)
            } else {
                None
            },
            xattrs: if meta.file_type().is_symlink() {
                Vec::new()
            } else {
                read_xattrs(path)
            },
        })
    }

    /// An overlay whiteout: a character device 0/0.
    pub(crate) fn is_whiteout(&self) -> bool {
        self.kind == libc::S_IFCHR && self.rdev == 0
    }

    /// Drops overlayfs's own attributes (opaque markers, origins), which no layer carries.
    pub(crate) fn without_overlay_xattrs(mut self) -> Node {
        self.xattrs.retain(|(name, _)| !is_overlay_xattr(name));
        self
    }

    pub(crate) fn kind(&self) -> u32 {
        self.kind
    }

    pub(crate) fn mode_bits(&self) -> u32 {
        self.mode
    }

    pub(crate) fn owner(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    /// The same node with another owner (its owner in the image, where the disk has another).
    pub(crate) fn with_owner(mut self, uid: u32, gid: u32) -> Node {
        (self.uid, self.gid) = (uid, gid);
        self
    }

    pub(crate) fn xattr_list(&self) -> &[(String, Vec<u8>)] {
        &self.xattrs
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }

    /// The same file (not a replacement made at the same path).
    pub fn same_file(&self, other: &Node) -> bool {
        (self.dev, self.ino, self.kind) == (other.dev, other.ino, other.kind)
    }
}

/// Every path under a root (relative, `/`-separated), sorted.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub nodes: BTreeMap<String, Node>,
}

impl Snapshot {
    pub fn take(root: &Path) -> io::Result<Self> {
        let mut nodes = BTreeMap::new();
        walk(root, "", &mut nodes)?;
        Ok(Snapshot { nodes })
    }
}

fn walk(root: &Path, rel: &str, nodes: &mut BTreeMap<String, Node>) -> io::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for child in fs::read_dir(&dir)? {
        let child = child?;
        let name = child.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let node = Node::read(&child.path())?;
        let is_dir = node.is_dir();
        nodes.insert(path.clone(), node);
        if is_dir {
            walk(root, &path, nodes)?;
        }
    }
    Ok(())
}

/// The extended attributes a layer keeps of a file: all but the host's SELinux label, with a
/// capability set in a user namespace (revision 3, naming that namespace's root) written in the
/// portable revision 2 that image layers carry.
fn read_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut attributes: Vec<(String, Vec<u8>)> = names
        .filter_map(|name| {
            let name = name.to_str()?.to_owned();
            if name == "security.selinux" {
                return None;
            }
            let value = xattr::get(path, &name).ok().flatten()?;
            let value = if name == "security.capability" {
                portable_capability(value)
            } else {
                value
            };
            Some((name, value))
        })
        .collect();
    attributes.sort();
    attributes
}

/// `vfs_cap_data` revision 3 (24 bytes, with the namespace's root ID) as revision 2 (20 bytes),
/// the form that means the same in whatever user namespace the image later runs.
fn portable_capability(value: Vec<u8>) -> Vec<u8> {
    const REVISION_MASK: u32 = 0xFF00_0000;
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;
    if value.len() != 24 {
        return value;
    }
    let magic = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
    if magic & REVISION_MASK != REVISION_3 {
        return value;
    }
    let mut portable = value[..20].to_vec();
    portable[..4].copy_from_slice(&((magic & !REVISION_MASK) | REVISION_2).to_le_bytes());
    portable
}

/// How the owners seen on disk map to owners in the image.
#[derive(Debug, Clone, Copy)]
pub enum Owners<'a> {
    /// Running as root: owners on disk are the image's.
    AsOnDisk,
    /// Running as root in a user namespace: owners on disk are the image's in the sandbox's
    /// range (see [`crate::sandbox::store_ids`]).
    InRange(crate::owners::IdRange),
    /// Unprivileged: the invoking user is root in the image; other owners come from the
    /// overlay the rootfs keeps, as it was before the command and as it is after.
    Mapped {
        host_uid: u32,
        host_gid: u32,
        before: &'a HashMap<String, (u64, u64)>,
        after: &'a HashMap<String, (u64, u64)>,
    },
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

fn name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

/// The entries of the layer that turns `before` into `after` (both walks of `root`), in the
/// order a layer needs: sorted by path, an opaque marker right after its directory.
pub fn diff(root: &Path, before: &Snapshot, after: &Snapshot, owners: Owners<'_>) -> Vec<Entry> {
    let mut keyed = whiteouts(before, after);
    let mut first_link: HashMap<(u64, u64), String> = HashMap::new();
    for (path, node) in &after.nodes {
        let old = before.nodes.get(path);
        let replaced = old.is_some_and(|o| o.kind != node.kind || o.ino != node.ino);
        let (uid, gid) = owner(path, node, owners, false);
        let include = match old {
            None => true,
            Some(_) if replaced => true,
            Some(o) => changed(path, o, node, owners, (uid, gid)),
        };
        if !include {
            continue;
        }
        let Some(kind) = entry_kind(root, path, node, &mut first_link) else {
            continue;
        };
        keyed.push((
            path.clone(),
            Entry {
                path: path.clone(),
                kind,
                mode: node.mode,
                uid,
                gid,
                xattrs: node.xattrs.clone(),
            },
        ));
        if node.is_dir() && old.is_some_and(|o| o.is_dir()) && replaced {
            // `\0` sorts the marker right after its directory, before any of its content.
            keyed.push((format!("{path}/\0"), marker(format!("{path}/.wh..wh..opq"))));
        }
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries: Vec<Entry> = keyed.into_iter().map(|(_, e)| e).collect();
    links_after_their_targets(root, &mut entries);
    entries
}

/// A `.wh.<name>` marker for each path `after` lacks, keyed by its path, only where its
/// directory is the same directory in both walks (a directory made anew is opaque instead, and
/// inside a deleted directory the directory's own whiteout says it all).
fn whiteouts(before: &Snapshot, after: &Snapshot) -> Vec<(String, Entry)> {
    let same_dir = |path: &str| -> bool {
        path.is_empty()
            || matches!((before.nodes.get(path), after.nodes.get(path)),
                (Some(b), Some(a)) if b.is_dir() && a.is_dir() && b.ino == a.ino)
    };
    let mut keyed = Vec::new();
    for path in before.nodes.keys() {
        if !after.nodes.contains_key(path) && same_dir(parent(path)) {
            let dir = parent(path);
            let whiteout = if dir.is_empty() {
                format!(".wh.{}", name(path))
            } else {
                format!("{dir}/.wh.{}", name(path))
            };
            keyed.push((whiteout.clone(), marker(whiteout)));
        }
    }
    keyed
}

/// What `node` at `path` is in a layer; `None` for a socket, which a layer cannot hold. The
/// second path of a file with several links becomes a hard link to the first (`first_link`
/// remembers them by device and inode).
pub(crate) fn entry_kind(
    root: &Path,
    path: &str,
    node: &Node,
    first_link: &mut HashMap<(u64, u64), String>,
) -> Option<EntryKind> {
    Some(match node.kind {
        libc::S_IFDIR => EntryKind::Directory,
        libc::S_IFLNK => EntryKind::Symlink {
            target: node
                .link
                .as_deref()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        libc::S_IFREG => {
            let id = (node.dev, node.ino);
            match first_link.get(&id) {
                Some(target) if node.nlink > 1 => EntryKind::Hardlink {
                    target: target.clone(),
                },
                _ => {
                    if node.nlink > 1 {
                        first_link.insert(id, path.to_owned());
                    }
                    EntryKind::File {
                        source: root.join(path),
                        size: node.size,
                    }
                }
            }
        }
        libc::S_IFCHR => EntryKind::CharDevice {
            major: libc::major(node.rdev),
            minor: libc::minor(node.rdev),
        },
        libc::S_IFBLK => EntryKind::BlockDevice {
            major: libc::major(node.rdev),
            minor: libc::minor(node.rdev),
        },
        libc::S_IFIFO => EntryKind::Fifo,
        _ => return None,
    })
}

/// A hard link must follow its target in the layer; sorting by path keeps the first path
/// first, but a link whose target sorts after it is stored as a file of its own.
pub(crate) fn links_after_their_targets(root: &Path, entries: &mut [Entry]) {
    for entry in entries {
        if let EntryKind::Hardlink { target } = &entry.kind
            && target > &entry.path
        {
            entry.kind = EntryKind::File {
                source: root.join(&entry.path),
                size: fs::symlink_metadata(root.join(&entry.path)).map_or(0, |m| m.size()),
            };
        }
    }
}

/// Whether the file at `path` (the same one, not a replacement) changed from `old` to `node`,
/// whose owner in the image is now `owner_now`: its mode, owner or extended attributes, and
/// for anything but a directory its size, link target or modification time.
pub(crate) fn changed(
    path: &str,
    old: &Node,
    node: &Node,
    owners: Owners<'_>,
    owner_now: (u64, u64),
) -> bool {
    let owner_before = owner(path, old, owners, true);
    if (old.mode, owner_before, &old.xattrs) != (node.mode, owner_now, &node.xattrs) {
        return true;
    }
    !node.is_dir() && (old.size, &old.link, old.mtime) != (node.size, &node.link, node.mtime)
}

/// The owner in the image of `node` at `path`, before the command or after it.
pub(crate) fn owner(path: &str, node: &Node, owners: Owners<'_>, before_run: bool) -> (u64, u64) {
    match owners {
        Owners::AsOnDisk => (u64::from(node.uid), u64::from(node.gid)),
        Owners::InRange(range) => {
            let (uid, gid) = range.to_image(node.uid, node.gid);
            (u64::from(uid), u64::from(gid))
        }
        Owners::Mapped {
            host_uid,
            host_gid,
            before,
            after,
        } => {
            let overlay = if before_run { before } else { after };
            let (ruid, rgid) = overlay.get(path).copied().unwrap_or((0, 0));
            let uid = if node.uid == host_uid {
                ruid
            } else {
                u64::from(node.uid)
            };
            let gid = if node.gid == host_gid {
                rgid
            } else {
                u64::from(node.gid)
            };
            (uid, gid)
        }
    }
}

pub(crate) fn marker(path: String) -> Entry {
    Entry {
        path,
        kind: EntryKind::File {
            source: PathBuf::from("/dev/null"),
            size: 0,
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
        xattrs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_capabilities_become_portable() {
        // cap_net_raw+ep written in a user namespace whose root is host uid 100000.
        let mut v3 = vec![0x01, 0x00, 0x00, 0x03, 0x00, 0x20, 0, 0, 0, 0, 0, 0];
        v3.extend([0; 8]);
        v3.extend(100_000u32.to_le_bytes());
        let v2 = portable_capability(v3);
        assert_eq!(v2.len(), 20);
        assert_eq!(&v2[..4], &[0x01, 0x00, 0x00, 0x02]);
        assert_eq!(&v2[4..6], &[0x00, 0x20]);
        let already = v2.clone();
        assert_eq!(portable_capability(already), v2);
    }

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn added_changed_deleted_and_replaced_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = &dir.path().join("root");
        fs::create_dir_all(root.join("keep")).unwrap();
        fs::create_dir_all(root.join("gone/deep")).unwrap();
        fs::create_dir_all(root.join("swap")).unwrap();
        fs::write(root.join("swap/old"), "x").unwrap();
        fs::write(root.join("keep/same"), "x").unwrap();
        fs::write(root.join("keep/edit"), "x").unwrap();
        fs::write(root.join("keep/del"), "x").unwrap();
        let before = Snapshot::take(root).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(root.join("keep/edit"), "y").unwrap();
        fs::remove_file(root.join("keep/del")).unwrap();
        fs::remove_dir_all(root.join("gone")).unwrap();
        fs::write(root.join("keep/new"), "n").unwrap();
        std::os::unix::fs::symlink("new", root.join("keep/link")).unwrap();
        fs::hard_link(root.join("keep/new"), root.join("keep/zhard")).unwrap();
        // Moved out rather than deleted, so that the new directory cannot reuse its inode
        // (a reused inode is taken as the same directory: whiteouts instead of opaque).
        fs::rename(root.join("swap"), dir.path().join("held")).unwrap();
        fs::create_dir(root.join("swap")).unwrap();
        fs::write(root.join("swap/fresh"), "f").unwrap();
        let after = Snapshot::take(root).unwrap();
        let entries = diff(root, &before, &after, Owners::AsOnDisk);
        assert_eq!(
            paths(&entries),
            [
                ".wh.gone",
                "keep/.wh.del",
                "keep/edit",
                "keep/link",
                "keep/new",
                "keep/zhard",
                "swap",
                "swap/.wh..wh..opq",
                "swap/fresh",
            ]
        );
        assert!(matches!(&entries[5].kind, EntryKind::Hardlink { target } if target == "keep/new"));
        assert!(matches!(&entries[3].kind, EntryKind::Symlink { target } if target == "new"));
        // The same walk twice: nothing changed, nothing to write.
        let again = Snapshot::take(root).unwrap();
        assert!(diff(root, &after, &again, Owners::AsOnDisk).is_empty());
    }

    #[test]
    fn a_change_of_extended_attributes_alone_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("f"), "x").unwrap();
        fs::create_dir(root.join("d")).unwrap();
        let before = Snapshot::take(root).unwrap();
        // As setcap or setfattr: neither the content nor the modification time changes.
        xattr::set(root.join("f"), "user.dockless", b"kept")
            .expect("user extended attributes in the temporary directory");
        xattr::set(root.join("d"), "user.dockless", b"dir").unwrap();
        let after = Snapshot::take(root).unwrap();
        let entries = diff(root, &before, &after, Owners::AsOnDisk);
        assert_eq!(paths(&entries), ["d", "f"]);
        assert_eq!(
            entries[1].xattrs,
            [("user.dockless".to_owned(), b"kept".to_vec())]
        );
    }

    #[test]
    fn mapped_owners_come_from_the_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("f"), "x").unwrap();
        let before = Snapshot::take(root).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(root.join("f"), "y").unwrap();
        fs::write(root.join("g"), "y").unwrap();
        let after = Snapshot::take(root).unwrap();
        let meta = fs::metadata(root.join("f")).unwrap();
        let overlay = HashMap::from([("f".to_owned(), (100, 101)), ("g".to_owned(), (5, 5))]);
        // The command left `f` in place (its owner stays) and made `g` (root's).
        let kept = HashMap::from([("f".to_owned(), (100, 101))]);
        let owners = Owners::Mapped {
            host_uid: meta.uid(),
            host_gid: meta.gid(),
            before: &overlay,
            after: &kept,
        };
        let entries = diff(root, &before, &after, owners);
        assert_eq!((entries[0].uid, entries[0].gid), (100, 101));
        assert_eq!(
            (entries[1].uid, entries[1].gid),
            (0, 0),
            "new files are root's"
        );
    }
}
