//! The layer of a RUN made from its overlay upper directory alone: what the command made or
//! changed is there, nothing else is, so the unchanged tree is never walked.
//!
//! The same rules as [`crate::diff`] (Docker's `archive.Changes`): a path the lowers lack is
//! added; a path copied up is kept only when its mode, owner, extended attributes (overlayfs's
//! own left out) or, for anything but a directory, its size, link target or modification time
//! differ from the lower one, so a file copied up unchanged (its access time touched, a
//! `chown` to the same owner) is left out, as BuildKit's overlay differ leaves it out (its
//! `sameDirent` compares the same fields). A whiteout (a 0/0 character device) becomes
//! `.wh.<name>`; an opaque directory (`trusted.overlay.opaque` or, with `userxattr`,
//! `user.overlay.opaque`) becomes the directory, `.wh..wh..opq` and its whole content.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use dockless_layer::Entry;

use crate::diff::{Node, Owners, changed, entry_kind, links_after_their_targets, marker};
use crate::owners::IdRange;

/// The entries of the layer in `upper` over `lowers` (topmost first), sorted as a layer needs
/// them. Owners are kept in `ids` on disk (see [`crate::sandbox::store_ids`]): the entries get
/// the image's.
pub fn diff(upper: &Path, lowers: &[PathBuf], ids: Option<IdRange>) -> io::Result<Vec<Entry>> {
    diff_with(upper, lowers, ids, None)
}

/// Without root every file on disk is the invoking user's (`host`), who is root in the image;
/// the other owners are recorded per layer, as the helper handed them back.
#[derive(Debug, Clone, Copy)]
pub struct RecordedOwners<'a> {
    pub host: (u32, u32),
    pub upper: &'a HashMap<String, (u64, u64)>,
    /// Parallel to the lowers.
    pub lowers: &'a [&'a HashMap<String, (u64, u64)>],
}

impl RecordedOwners<'_> {
    /// `node` at `path` with its owner in the image, from `recorded` where the host's user
    /// owns it.
    fn give(&self, node: Node, path: &str, recorded: &HashMap<String, (u64, u64)>) -> Node {
        let (uid, gid) = recorded.get(path).copied().unwrap_or((0, 0));
        let (on_disk_uid, on_disk_gid) = node.owner();
        let uid = if on_disk_uid == self.host.0 {
            uid as u32
        } else {
            on_disk_uid
        };
        let gid = if on_disk_gid == self.host.1 {
            gid as u32
        } else {
            on_disk_gid
        };
        node.with_owner(uid, gid)
    }
}

/// [`diff`], with the owners `recorded` for an upper and lowers written without root.
pub fn diff_with(
    upper: &Path,
    lowers: &[PathBuf],
    ids: Option<IdRange>,
    recorded: Option<RecordedOwners<'_>>,
) -> io::Result<Vec<Entry>> {
    let mut walk = Walk {
        upper,
        lowers,
        ids,
        recorded,
        keyed: Vec::new(),
        first_link: HashMap::new(),
    };
    walk.dir("", false)?;
    let mut keyed = walk.keyed;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries: Vec<Entry> = keyed.into_iter().map(|(_, e)| e).collect();
    links_after_their_targets(upper, &mut entries);
    Ok(entries)
}

struct Walk<'a> {
    upper: &'a Path,
    lowers: &'a [PathBuf],
    ids: Option<IdRange>,
    recorded: Option<RecordedOwners<'a>>,
    keyed: Vec<(String, Entry)>,
    first_link: HashMap<(u64, u64), String>,
}

impl Walk<'_> {
    /// The entries of directory `rel` of the upper; `hidden`: the lowers have nothing below it
    /// (it is opaque, or the lowers have no directory there), so everything in it is new and
    /// no lower is looked at: a command that writes a new tree of thousands of files costs a
    /// walk of that tree, not a search of every lower for each of its paths.
    fn dir(&mut self, rel: &str, hidden: bool) -> io::Result<()> {
        let dir = self.upper.join(rel);
        let mut names: Vec<String> = fs::read_dir(&dir)?
            .map(|child| child.map(|c| c.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            dockless_oci::cancel::check_io()?;
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let mut node = Node::read(&self.upper.join(&path))?;
            let mut old = if hidden {
                None
            } else {
                lookup_layer(self.lowers, &path)?
            };
            if let Some(recorded) = self.recorded {
                node = recorded.give(node, &path, recorded.upper);
                old = old.map(|(n, i)| match recorded.lowers.get(i) {
                    Some(owners) => (recorded.give(n, &path, owners), i),
                    None => (n, i),
                });
            }
            let old = old.map(|(n, _)| n);
            if node.is_whiteout() {
                if old.is_some() {
                    let whiteout = match path.rsplit_once('/') {
                        Some((parent, name)) => format!("{parent}/.wh.{name}"),
                        None => format!(".wh.{name}"),
                    };
                    self.keyed.push((whiteout.clone(), marker(whiteout)));
                }
                continue;
            }
            let opaque = node.is_dir() && is_opaque(&self.upper.join(&path));
            let node = node.without_overlay_xattrs();
            self.entry(&path, &node, old.as_ref(), opaque);
            if node.is_dir() {
                // The lowers show nothing below a path where they have no directory: a child's
                // lookup would find nothing (see `lookup`), so it is not made.
                let lowers_have_dir = old.as_ref().is_some_and(Node::is_dir);
                self.dir(&path, hidden || opaque || !lowers_have_dir)?;
            }
        }
        Ok(())
    }

    /// The entry of `node` at `path` when it differs from `old`, the lowers' version.
    fn entry(&mut self, path: &str, node: &Node, old: Option<&Node>, opaque: bool) {
        let replaced = old.is_some_and(|o| o.kind() != node.kind());
        let (uid, gid) = node.owner();
        let on_disk = (u64::from(uid), u64::from(gid));
        let include = match old {
            None => true,
            Some(_) if replaced || opaque => true,
            // Both owners as on disk, in the same IDs.
            Some(o) => changed(path, o, node, Owners::AsOnDisk, on_disk),
        };
        if !include {
            return;
        }
        let Some(kind) = entry_kind(self.upper, path, node, &mut self.first_link) else {
            return;
        };
        let image = self
            .ids
            .map_or((uid, gid), |range| range.to_image(uid, gid));
        self.keyed.push((
            path.to_owned(),
            Entry {
                path: path.to_owned(),
                kind,
                mode: node.mode_bits(),
                uid: u64::from(image.0),
                gid: u64::from(image.1),
                xattrs: node.xattr_list().to_vec(),
            },
        ));
        if opaque && old.is_some_and(Node::is_dir) {
            // `\0` sorts the marker right after its directory, before any of its content.
            self.keyed
                .push((format!("{path}/\0"), marker(format!("{path}/.wh..wh..opq"))));
        }
    }
}

/// Whether the directory `path` of a layer is marked opaque by overlayfs: the layers below it
/// do not show through.
pub(crate) fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(xattr::get(path, name), Ok(Some(v)) if v == b"y"))
}

/// What the lowers (topmost first) show at `rel`, as overlayfs would merge them: the first
/// layer that has the path gives it (`None` if that is a whiteout); a layer where a directory
/// above it is opaque, or is not a directory, hides every layer below. Each layer's directories
/// are looked at from the top before anything below them is read, so a link in a layer (to a
/// host directory, as an absolute link means on the host) is never followed.
#[cfg(test)]
pub(crate) fn lookup(lowers: &[PathBuf], rel: &str) -> io::Result<Option<Node>> {
    Ok(lookup_layer(lowers, rel)?.map(|(node, _)| node))
}

/// [`lookup`], with the index of the layer that gives the path.
pub(crate) fn lookup_layer(lowers: &[PathBuf], rel: &str) -> io::Result<Option<(Node, usize)>> {
    let parents: Vec<&str> = rel
        .match_indices('/')
        .map(|(slash, _)| &rel[..slash])
        .collect();
    for (index, lower) in lowers.iter().enumerate() {
        let mut opaque = false;
        let mut complete = true;
        for parent in &parents {
            match fs::symlink_metadata(lower.join(parent)) {
                Ok(meta) if !meta.is_dir() => return Ok(None),
                Ok(_) => opaque |= is_opaque(&lower.join(parent)),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    complete = false;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if complete {
            match Node::read(&lower.join(rel)) {
                Ok(node) if node.is_whiteout() => return Ok(None),
                Ok(node) => return Ok(Some((node.without_overlay_xattrs(), index))),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
                Err(e) => return Err(e),
            }
        }
        if opaque {
            return Ok(None);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
