//! The directory tree an archive builds when Docker extracts it, kept in memory.
//!
//! Docker extracts `ADD` archives inside a chroot at the destination, so the kernel decides what
//! each path means: symlinks met in parent directories are followed (an absolute or `..`-climbing
//! target stays inside the root), the last component is never followed (an entry replaces a
//! symlink rather than writing through it), missing parents are created like `MkdirAll` (mode 0755,
//! root-owned), a later entry replaces an earlier one (a directory over a directory only updates its
//! metadata), and a hard link shares the inode of its target so later metadata applies to both.
//! Modelling that here gives entries whose paths contain no symlinks and whose hard links point at
//! an entry that is written before them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::{Entry, EntryKind};

/// Linux gives up after following this many symlinks in one lookup (`ELOOP`).
const MAX_SYMLINKS: u32 = 40;
/// Mode of the parent directories an archive implies without listing (moby's `ImpliedDirectoryMode`).
const IMPLIED_DIRECTORY_MODE: u32 = 0o755;

/// What exists at a path: everything but the name (several names may share it through hard links).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TreeNodeKind {
    Directory,
    File { source: PathBuf, size: u64 },
    Symlink { target: String },
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

/// Ownership, permissions and extended attributes from one tar header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Metadata {
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) xattrs: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone)]
struct TreeNode {
    kind: TreeNodeKind,
    metadata: Metadata,
}

/// Why an entry cannot be placed where its path says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TreeError {
    /// A parent component exists and is neither a directory nor a symlink to one.
    NotADirectory(String),
    /// A symlink in the path leads nowhere.
    Missing(String),
    SymlinkLoop(String),
    /// A hard link names a directory.
    LinkToDirectory(String),
}

#[derive(Debug, Default)]
pub(super) struct Tree {
    nodes: Vec<TreeNode>,
    /// Canonical path (no symlinks in it) to node. Sorted, which gives the output order.
    paths: BTreeMap<String, usize>,
}

impl Tree {
    /// Finds where an entry with these (already lexically clean) components lands, creating
    /// missing parent directories; returns its canonical path.
    pub(super) fn place(&mut self, components: &[String]) -> Result<String, TreeError> {
        let Some((leaf, parents)) = components.split_last() else {
            return Ok(String::new());
        };
        let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
        let mut followed = 0;
        let parent = self.resolve_directory(String::new(), &parents, true, &mut followed)?;
        Ok(join(&parent, leaf))
    }

    /// A directory entry: over an existing directory only the metadata changes (its xattrs are
    /// added to); anything else at the path is replaced.
    pub(super) fn put_directory(&mut self, path: &str, metadata: Metadata) {
        if let Some(node) = self.node_mut(path)
            && node.kind == TreeNodeKind::Directory
        {
            node.metadata.mode = metadata.mode;
            node.metadata.uid = metadata.uid;
            node.metadata.gid = metadata.gid;
            node.metadata.xattrs.extend(metadata.xattrs);
            return;
        }
        self.put_node(path, TreeNodeKind::Directory, metadata);
    }

    /// Any other entry: whatever was at the path (a whole directory tree included) is removed.
    pub(super) fn put_node(&mut self, path: &str, kind: TreeNodeKind, metadata: Metadata) {
        self.remove_all(path);
        self.nodes.push(TreeNode { kind, metadata });
        self.paths.insert(path.to_owned(), self.nodes.len() - 1);
    }

    /// A hard link to the entry named by `target` (lexically clean components). Like Docker, the
    /// path is cleared first, then the target looked up without following its last component; the
    /// link's ownership, xattrs and (unless the target is a symlink) mode apply to the shared node.
    pub(super) fn put_hardlink(
        &mut self,
        path: &str,
        target: &[String],
        metadata: Metadata,
    ) -> Result<(), TreeError> {
        self.remove_all(path);
        let Some((leaf, parents)) = target.split_last() else {
            return Err(TreeError::LinkToDirectory(String::new()));
        };
        let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
        let mut followed = 0;
        let parent = self.resolve_directory(String::new(), &parents, false, &mut followed)?;
        let target_path = join(&parent, leaf);
        let Some(&id) = self.paths.get(&target_path) else {
            return Err(TreeError::Missing(target_path));
        };
        let Some(node) = self.nodes.get_mut(id) else {
            return Err(TreeError::Missing(target_path));
        };
        match node.kind {
            TreeNodeKind::Directory => return Err(TreeError::LinkToDirectory(target_path)),
            TreeNodeKind::Symlink { .. } => {}
            _ => node.metadata.mode = metadata.mode,
        }
        node.metadata.uid = metadata.uid;
        node.metadata.gid = metadata.gid;
        node.metadata.xattrs.extend(metadata.xattrs);
        self.paths.insert(path.to_owned(), id);
        Ok(())
    }

    /// The entries, sorted by path. Of several names for one node the first in that order carries
    /// the content and the others are hard links to it, so a link never precedes its target.
    pub(super) fn into_entries(self) -> Vec<Entry> {
        let mut first_name: HashMap<usize, String> = HashMap::new();
        let mut entries = Vec::with_capacity(self.paths.len());
        for (path, id) in self.paths {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let kind = match first_name.get(&id) {
                Some(target) => EntryKind::Hardlink {
                    target: target.clone(),
                },
                None => {
                    first_name.insert(id, path.clone());
                    entry_kind(&node.kind)
                }
            };
            entries.push(Entry {
                path,
                kind,
                mode: node.metadata.mode,
                uid: node.metadata.uid,
                gid: node.metadata.gid,
                xattrs: node
                    .metadata
                    .xattrs
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect(),
            });
        }
        entries
    }

    fn node_mut(&mut self, path: &str) -> Option<&mut TreeNode> {
        let id = *self.paths.get(path)?;
        self.nodes.get_mut(id)
    }

    /// Removes `path` and everything below it (`os.RemoveAll`). Nodes stay, as inodes do, while
    /// another name still refers to them.
    fn remove_all(&mut self, path: &str) {
        self.paths.remove(path);
        let below = format!("{path}/");
        let doomed: Vec<String> = self
            .paths
            .range(below.clone()..)
            .take_while(|(name, _)| name.starts_with(&below))
            .map(|(name, _)| name.clone())
            .collect();
        for name in doomed {
            self.paths.remove(&name);
        }
    }

    /// Walks `components` from the canonical directory `start` as the kernel would inside a chroot:
    /// `..` climbs (never above the root), symlinks are followed, missing directories are created
    /// when `create` is set (and only then: a symlink's target must exist). Returns the canonical
    /// path of the directory reached.
    fn resolve_directory(
        &mut self,
        start: String,
        components: &[&str],
        create: bool,
        followed: &mut u32,
    ) -> Result<String, TreeError> {
        let mut current = start;
        for &component in components {
            match component {
                "" | "." => continue,
                ".." => {
                    current = parent_of(&current).to_owned();
                    continue;
                }
                _ => {}
            }
            let candidate = join(&current, component);
            let kind = self
                .paths
                .get(&candidate)
                .and_then(|&id| self.nodes.get(id))
                .map(|node| node.kind.clone());
            match kind {
                None if create => {
                    self.put_node(&candidate, TreeNodeKind::Directory, implied_metadata());
                    current = candidate;
                }
                None => return Err(TreeError::Missing(candidate)),
                Some(TreeNodeKind::Directory) => current = candidate,
                Some(TreeNodeKind::Symlink { target }) => {
                    *followed += 1;
                    if *followed > MAX_SYMLINKS {
                        return Err(TreeError::SymlinkLoop(candidate));
                    }
                    let base = if target.starts_with('/') {
                        String::new()
                    } else {
                        current.clone()
                    };
                    let target_components: Vec<&str> = target.split('/').collect();
                    current = self.resolve_directory(base, &target_components, false, followed)?;
                }
                Some(_) => return Err(TreeError::NotADirectory(candidate)),
            }
        }
        Ok(current)
    }
}

fn implied_metadata() -> Metadata {
    Metadata {
        mode: IMPLIED_DIRECTORY_MODE,
        ..Metadata::default()
    }
}

fn entry_kind(kind: &TreeNodeKind) -> EntryKind {
    match kind.clone() {
        TreeNodeKind::Directory => EntryKind::Directory,
        TreeNodeKind::File { source, size } => EntryKind::File { source, size },
        TreeNodeKind::Symlink { target } => EntryKind::Symlink { target },
        TreeNodeKind::CharDevice { major, minor } => EntryKind::CharDevice { major, minor },
        TreeNodeKind::BlockDevice { major, minor } => EntryKind::BlockDevice { major, minor },
        TreeNodeKind::Fifo => EntryKind::Fifo,
    }
}

/// `dir/name`, or `name` at the root (the empty string).
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn parent_of(path: &str) -> &str {
    path.rfind('/').and_then(|i| path.get(..i)).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn components(path: &str) -> Vec<String> {
        path.split('/').map(str::to_owned).collect()
    }

    fn meta(mode: u32) -> Metadata {
        Metadata {
            mode,
            ..Metadata::default()
        }
    }

    fn paths(tree: Tree) -> Vec<(String, EntryKind)> {
        tree.into_entries()
            .into_iter()
            .map(|entry| (entry.path, entry.kind))
            .collect()
    }

    #[test]
    fn symlinks_in_parents_are_followed_inside_the_root() {
        let mut tree = Tree::default();
        tree.put_node(
            "escape",
            TreeNodeKind::Symlink {
                target: "../../../etc".to_owned(),
            },
            meta(0o777),
        );
        tree.put_node(
            "abs",
            TreeNodeKind::Symlink {
                target: "/etc".to_owned(),
            },
            meta(0o777),
        );
        tree.put_directory("etc", meta(0o755));
        let placed = tree.place(&components("escape/passwd"));
        assert_eq!(placed, Ok("etc/passwd".to_owned()));
        assert_eq!(tree.place(&components("abs/x/y")), Ok("etc/x/y".to_owned()));
        // The last component is not followed.
        assert_eq!(tree.place(&components("abs")), Ok("abs".to_owned()));
    }

    #[test]
    fn dangling_looping_and_file_parents_are_errors() {
        let mut tree = Tree::default();
        tree.put_node(
            "dangling",
            TreeNodeKind::Symlink {
                target: "nowhere".to_owned(),
            },
            meta(0o777),
        );
        tree.put_node(
            "loop",
            TreeNodeKind::Symlink {
                target: "loop".to_owned(),
            },
            meta(0o777),
        );
        tree.put_node(
            "file",
            TreeNodeKind::File {
                source: PathBuf::from("/dev/null"),
                size: 0,
            },
            meta(0o644),
        );
        assert_eq!(
            tree.place(&components("dangling/x")),
            Err(TreeError::Missing("nowhere".to_owned()))
        );
        assert_eq!(
            tree.place(&components("loop/x")),
            Err(TreeError::SymlinkLoop("loop".to_owned()))
        );
        assert_eq!(
            tree.place(&components("file/x")),
            Err(TreeError::NotADirectory("file".to_owned()))
        );
    }

    #[test]
    fn replacing_a_directory_removes_its_subtree() {
        let mut tree = Tree::default();
        assert_eq!(tree.place(&components("d/sub/f")), Ok("d/sub/f".to_owned()));
        tree.put_node("d/sub/f", TreeNodeKind::Fifo, meta(0o600));
        tree.put_node("d-sibling", TreeNodeKind::Fifo, meta(0o600));
        tree.put_directory("d", meta(0o700));
        assert_eq!(
            paths(tree).len(),
            4,
            "directory over directory keeps children"
        );

        let mut tree = Tree::default();
        let _ = tree.place(&components("d/sub/f"));
        tree.put_node("d/sub/f", TreeNodeKind::Fifo, meta(0o600));
        tree.put_node("d-sibling", TreeNodeKind::Fifo, meta(0o600));
        tree.put_node("d", TreeNodeKind::Fifo, meta(0o600));
        let names: Vec<String> = paths(tree).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names, ["d", "d-sibling"]);
    }

    #[test]
    fn hardlink_groups_lead_with_the_first_name() {
        let mut tree = Tree::default();
        let file = TreeNodeKind::File {
            source: PathBuf::from("/staged"),
            size: 3,
        };
        tree.put_node("z", file.clone(), meta(0o644));
        assert_eq!(
            tree.put_hardlink("a", &components("z"), meta(0o600)),
            Ok(())
        );
        let entries = tree.into_entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].path, "a");
        assert_eq!(entries[0].kind, entry_kind(&file));
        assert_eq!(
            entries[0].mode, 0o600,
            "the link's mode applies to the shared inode"
        );
        assert_eq!(
            entries[1].kind,
            EntryKind::Hardlink {
                target: "a".to_owned()
            }
        );
        assert_eq!(entries[1].mode, 0o600);
    }

    #[test]
    fn hardlink_errors() {
        let mut tree = Tree::default();
        tree.put_directory("d", meta(0o755));
        assert_eq!(
            tree.put_hardlink("l", &components("d"), meta(0o644)),
            Err(TreeError::LinkToDirectory("d".to_owned()))
        );
        assert_eq!(
            tree.put_hardlink("l", &components("missing"), meta(0o644)),
            Err(TreeError::Missing("missing".to_owned()))
        );
        tree.put_node("self", TreeNodeKind::Fifo, meta(0o644));
        assert_eq!(
            tree.put_hardlink("self", &components("self"), meta(0o644)),
            Err(TreeError::Missing("self".to_owned())),
            "the path is cleared before the target is looked up, as in Docker"
        );
    }
}
