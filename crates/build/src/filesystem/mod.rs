//! What the build knows of the image's file system below the layer being written: every path
//! with its type, mode, owner and link target, and the user and group databases for `--chown`.
//!
//! A layer must not carry entries for directories that already exist below it (an entry would
//! overwrite their mode and owner: `/tmp` would lose its sticky bit), but it must carry entries
//! for the directories it creates, and a destination must be looked up through the image's
//! symlinks (`COPY f /tmp` writes `/tmp/f` when `/tmp` is a directory or a link to one). Knowing
//! which is which needs the base's listing, read from the base layers' tar headers once and
//! cached per layer digest ([`summary`]). Until it is read (`complete == false`: a registry
//! base whose listing the build has not needed yet), no implied directory entries are written.

mod summary;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use dockless_layer::{Entry, EntryKind};
use dockless_oci::digest::Digest;
use dockless_oci::fs_error::FsError;
use dockless_oci::image::users::UserDatabase;
use dockless_oci::store::Store;

pub use summary::{
    adopt as adopt_listing, cached_bytes as listing_bytes, is_cached as listing_is_cached,
};
pub(crate) use summary::{cache_summary, summarise_download};

/// The file system as far as the build knows it.
#[derive(Debug, Clone, Default)]
pub struct KnownFilesystem {
    /// True when every path below is known (a scratch base, or base layers that were read).
    pub complete: bool,
    /// Every path, `/`-separated without a leading `/`; the root (`""`) is implied.
    pub nodes: BTreeMap<String, ImageNode>,
    pub users: UserDatabase,
    /// While the base's listing is still being read ([`Self::assuming_empty_base`]): every
    /// path a lookup looked at, to be checked against the base once its listing is in.
    looked_at: Option<Arc<Mutex<BTreeSet<String>>>>,
}

/// One path of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageNode {
    pub kind: ImageNodeKind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageNodeKind {
    Dir,
    /// A regular file (or a hard link to one).
    File,
    /// A symbolic link and its target, as written.
    Symlink(String),
    /// A device or a FIFO.
    Other,
}

/// Symlinks followed at most while resolving one path, as Linux and BuildKit's copy do.
const MAX_LINKS: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("base layer {digest} has media type {media_type}, which dockless cannot read")]
    UnknownMediaType { digest: Digest, media_type: String },
    #[error("base layer {digest} is not a readable tar archive: {source}")]
    Unreadable {
        digest: Digest,
        #[source]
        source: dockless_layer::tar_reader::TarError,
    },
}

/// A path that cannot be resolved in the image.
#[derive(Debug, thiserror::Error)]
#[error("/{path}: too many levels of symbolic links in the image")]
pub struct TooManyLinks {
    pub path: String,
}

impl KnownFilesystem {
    pub fn scratch() -> Self {
        KnownFilesystem {
            complete: true,
            ..Default::default()
        }
    }

    /// The file system of a base whose listing is still being read, assumed to hold nothing
    /// but its root. Lookups note every path they look at: if the base holds none of them
    /// ([`Self::assumptions_hold`]), every answer given was the one the base's listing gives,
    /// since a listing holds every parent of its paths. The user databases cannot be assumed:
    /// whoever needs them waits for the listing.
    pub(crate) fn assuming_empty_base() -> Self {
        KnownFilesystem {
            complete: true,
            looked_at: Some(Default::default()),
            ..Default::default()
        }
    }

    /// Whether answers are assumed (see [`Self::assuming_empty_base`]).
    pub(crate) fn is_assumed(&self) -> bool {
        self.looked_at.is_some()
    }

    /// `Err` with the first path looked at that `base` holds, if any: then some answer given
    /// was not the base's.
    pub(crate) fn assumptions_hold(&self, base: &KnownFilesystem) -> Result<(), String> {
        let Some(looked_at) = &self.looked_at else {
            return Ok(());
        };
        let looked_at = looked_at.lock().unwrap_or_else(|e| e.into_inner());
        match looked_at.iter().find(|path| base.nodes.contains_key(*path)) {
            Some(path) => Err(path.clone()),
            None => Ok(()),
        }
    }

    fn note(&self, path: &str) {
        if let Some(looked_at) = &self.looked_at
            && !path.is_empty()
        {
            looked_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(path.to_owned());
        }
    }

    /// Reads the layers (blobs in `store`, or their cached listings), oldest first.
    pub(crate) fn scan(store: &Store, layers: &[(Digest, String)]) -> Result<Self, ScanError> {
        let mut known = KnownFilesystem::scratch();
        known.apply_layers(store, layers)?;
        Ok(known)
    }

    /// Applies more layers (blobs in `store`, or their cached listings) on top, oldest first.
    pub(crate) fn apply_layers(
        &mut self,
        store: &Store,
        layers: &[(Digest, String)],
    ) -> Result<(), ScanError> {
        for (digest, media_type) in layers {
            let summary = summary::summarise_cached(store, digest, media_type)?;
            self.apply(summary);
        }
        Ok(())
    }

    fn apply(&mut self, summary: summary::LayerSummary) {
        for removed in &summary.removed {
            self.remove_tree(removed);
            if removed == "etc/passwd" || removed == "etc" {
                self.users.passwd = None;
            }
            if removed == "etc/group" || removed == "etc" {
                self.users.group = None;
            }
        }
        for dir in &summary.opaque {
            self.remove_below(dir);
        }
        for (path, node) in summary.entries {
            self.put(path, node);
        }
        if summary.passwd.is_some() {
            self.users.passwd = summary.passwd;
        }
        if summary.group.is_some() {
            self.users.group = summary.group;
        }
    }

    /// Records what a layer written by this build holds (its entries replace what was there).
    pub fn record(&mut self, entries: &[Entry]) {
        for entry in entries {
            let kind = match &entry.kind {
                EntryKind::Directory => ImageNodeKind::Dir,
                EntryKind::File { source, size } => {
                    if (entry.path == "etc/passwd" || entry.path == "etc/group") && *size < 1 << 20
                    {
                        let text = std::fs::read_to_string(source).ok();
                        if entry.path == "etc/passwd" {
                            self.users.passwd = text;
                        } else {
                            self.users.group = text;
                        }
                    }
                    ImageNodeKind::File
                }
                EntryKind::Hardlink { .. } => ImageNodeKind::File,
                EntryKind::Symlink { target } => ImageNodeKind::Symlink(target.clone()),
                _ => ImageNodeKind::Other,
            };
            let node = ImageNode {
                kind,
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
            };
            self.put(entry.path.clone(), node);
        }
    }

    /// Writes one path as an unpacker would: a non-directory replaces a directory with all it
    /// held, and missing parents appear as root's 0755 directories.
    fn put(&mut self, path: String, node: ImageNode) {
        if node.kind != ImageNodeKind::Dir && self.holds_dir(&path) {
            self.remove_below(&path);
        }
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            if self.nodes.contains_key(up) {
                break;
            }
            self.nodes.insert(up.to_owned(), ImageNode::implied_dir());
            parent = up;
        }
        self.nodes.insert(path, node);
    }

    fn remove_tree(&mut self, path: &str) {
        self.nodes.remove(path);
        self.remove_below(path);
    }

    fn remove_below(&mut self, dir: &str) {
        let prefix = format!("{dir}/");
        let below: Vec<String> = self
            .nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .map(|(path, _)| path)
            .take_while(|path| path.starts_with(&prefix))
            .cloned()
            .collect();
        for path in below {
            self.nodes.remove(&path);
        }
    }

    /// Whether `path` is a directory (not following a symlink at `path` itself).
    pub fn is_dir(&self, path: &str) -> bool {
        self.note(path);
        self.holds_dir(path)
    }

    /// [`Self::is_dir`] for the structure's own upkeep, which answers no one: what it changes
    /// is looked at again by whoever asks.
    fn holds_dir(&self, path: &str) -> bool {
        path.is_empty()
            || self
                .nodes
                .get(path)
                .is_some_and(|n| n.kind == ImageNodeKind::Dir)
    }

    pub fn get(&self, path: &str) -> Option<&ImageNode> {
        self.note(path);
        self.nodes.get(path)
    }

    /// `path` with every symlink on the way followed inside the image's root, the last
    /// component included, as BuildKit's copy resolves a destination: an absolute target
    /// starts again at the root, `..` stops at the root, a missing component ends the lookup.
    pub fn resolve(&self, path: &str) -> Result<String, TooManyLinks> {
        let mut done: Vec<String> = Vec::new();
        // Components still to walk, the next one last.
        let mut todo: Vec<String> = path.rsplit('/').map(str::to_owned).collect();
        let mut links = 0;
        while let Some(part) = todo.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => done.push(part),
            }
            let current = done.join("/");
            let Some(ImageNode {
                kind: ImageNodeKind::Symlink(target),
                ..
            }) = self.get(&current)
            else {
                continue;
            };
            links += 1;
            if links > MAX_LINKS {
                return Err(TooManyLinks { path: path.into() });
            }
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            todo.extend(target.rsplit('/').map(str::to_owned));
        }
        Ok(done.join("/"))
    }

    /// The directories to create so that `path` (already resolved) is one, outermost first.
    pub(crate) fn missing_dirs(&self, path: &str) -> Vec<String> {
        let mut missing = Vec::new();
        let mut current = path;
        while !current.is_empty() && self.get(current).is_none() {
            missing.push(current.to_owned());
            current = current.rsplit_once('/').map_or("", |(up, _)| up);
        }
        missing.reverse();
        missing
    }
}

impl ImageNodeKind {
    /// What the path is, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ImageNodeKind::Dir => "directory",
            ImageNodeKind::File => "file",
            ImageNodeKind::Symlink(_) => "symlink",
            ImageNodeKind::Other => "device or FIFO",
        }
    }
}

impl ImageNode {
    /// A directory an unpacker makes for a path whose parent the layer does not hold.
    fn implied_dir() -> Self {
        ImageNode {
            kind: ImageNodeKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: ImageNodeKind) -> ImageNode {
        ImageNode {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }

    fn tree(paths: &[(&str, ImageNodeKind)]) -> KnownFilesystem {
        let mut known = KnownFilesystem::scratch();
        for (path, kind) in paths {
            known.put((*path).into(), node(kind.clone()));
        }
        known
    }

    #[test]
    fn symlinks_on_the_way_are_followed_inside_the_root() {
        let known = tree(&[
            ("private/tmp", ImageNodeKind::Dir),
            ("tmp", ImageNodeKind::Symlink("/private/tmp".into())),
            ("rel", ImageNodeKind::Symlink("private/./tmp/".into())),
            ("up", ImageNodeKind::Symlink("../../../private".into())),
            ("loop", ImageNodeKind::Symlink("loop".into())),
            ("dangling", ImageNodeKind::Symlink("/nowhere/x".into())),
        ]);
        assert_eq!(known.resolve("tmp").unwrap(), "private/tmp");
        assert_eq!(known.resolve("tmp/a/b").unwrap(), "private/tmp/a/b");
        assert_eq!(known.resolve("rel/f").unwrap(), "private/tmp/f");
        assert_eq!(known.resolve("up/tmp").unwrap(), "private/tmp");
        assert_eq!(known.resolve("dangling").unwrap(), "nowhere/x");
        assert_eq!(known.resolve("a/../tmp").unwrap(), "private/tmp");
        assert!(known.resolve("loop/x").is_err());
        assert_eq!(
            known.missing_dirs("private/tmp/a/b"),
            ["private/tmp/a", "private/tmp/a/b"]
        );
    }

    #[test]
    fn assumed_answers_hold_only_when_the_base_has_none_of_the_paths_looked_at() {
        let base = tree(&[
            ("data", ImageNodeKind::Symlink("/srv".into())),
            ("srv", ImageNodeKind::Dir),
        ]);
        let plan = |path: &str| {
            let mut known = KnownFilesystem::assuming_empty_base();
            // A layer the build planned: looked up through, but not itself checked.
            known.record(&[Entry {
                path: "app/x".into(),
                kind: EntryKind::Directory,
                mode: 0o755,
                uid: 0,
                gid: 0,
                xattrs: Vec::new(),
            }]);
            let resolved = known.resolve(path).unwrap();
            known.missing_dirs(&resolved);
            known.assumptions_hold(&base)
        };
        assert_eq!(plan("app/x/y"), Ok(()));
        assert_eq!(plan("opt/y"), Ok(()));
        // Resolving looks at every component: the base's link would have redirected it.
        assert_eq!(plan("data/app"), Err("data".to_owned()));
        assert_eq!(plan("srv/new"), Err("srv".to_owned()));
        assert_eq!(KnownFilesystem::scratch().assumptions_hold(&base), Ok(()));
    }

    #[test]
    fn a_file_replaces_a_directory_with_its_contents_and_parents_are_implied() {
        let mut known = tree(&[
            ("a/b/c", ImageNodeKind::File),
            ("a/b-c", ImageNodeKind::File),
        ]);
        assert!(known.is_dir("a") && known.is_dir("a/b"));
        known.put("a/b".into(), node(ImageNodeKind::File));
        assert!(known.get("a/b/c").is_none() && known.get("a/b-c").is_some());
        known.remove_tree("a");
        assert!(known.nodes.is_empty());
    }
}
