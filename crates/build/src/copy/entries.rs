//! The entries one COPY or ADD gathers for its layer: files read from disk (kinds, modes,
//! extended attributes, hard links), archive entries, and the directories the copy creates.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::{CopyError, SourceOwners, join};
use crate::filesystem::KnownFilesystem;
use dockless_context::item_meta::ItemMeta;
use dockless_context::source::{Matched, Walked};
use dockless_layer::cache::{SourceStamp, Stamps};
use dockless_layer::{Entry, EntryKind};
use dockless_oci::fs_error::{FsError, IoContext};

/// Files each reader thread reads per batch of a walk.
const READ_PER_THREAD: usize = 8192;

/// Entries being gathered for one layer: a later entry for the same path replaces an earlier one.
///
/// They are kept in the order they come, each with its file's stamp, and sorted once when the
/// set is finished: a map by path would hold every path twice (key and entry), for each of
/// hundreds of thousands of files.
pub(super) struct EntrySet<'a> {
    entries: Vec<(Entry, Option<SourceStamp>)>,
    /// (device, inode) of files with several links, so that they become hard links in the layer.
    inodes: HashMap<String, (u64, u64)>,
    /// `--chown`'s owner, else root (of the directories the copy creates, and of what the
    /// sources' owners do not give).
    owner: (u64, u64),
    chown: bool,
    sources: SourceOwners<'a>,
    chmod: Option<u32>,
    created_dirs: Vec<String>,
}

/// A finished set: entries sorted by path, and the stamps of their files, index for index.
pub(super) struct Finished {
    pub(super) entries: Vec<Entry>,
    pub(super) stamps: Stamps,
}

impl<'a> EntrySet<'a> {
    pub(super) fn new(
        chown: Option<(u64, u64)>,
        chmod: Option<u32>,
        sources: SourceOwners<'a>,
    ) -> Self {
        EntrySet {
            entries: Vec::new(),
            inodes: HashMap::new(),
            owner: chown.unwrap_or((0, 0)),
            chown: chown.is_some(),
            sources,
            chmod,
            created_dirs: Vec::new(),
        }
    }

    /// An entry whose file (if any) is not from the context: no stamp, so the layer cache
    /// examines its source itself.
    pub(super) fn add(&mut self, entry: Entry) {
        self.inodes.remove(&entry.path);
        self.entries.push((entry, None));
    }

    /// A destination directory the copy needs: written only if it does not exist below.
    pub(super) fn ensure_dir(&mut self, path: &str) {
        if !path.is_empty() {
            self.created_dirs.push(path.to_owned());
        }
    }

    pub(super) fn add_from_disk(
        &mut self,
        target: &str,
        abs: &Path,
        meta: &ItemMeta,
    ) -> Result<(), CopyError> {
        if let Some(found) = FromDisk::read(abs, meta)? {
            let owner = self.owner_of(|| abs.to_owned(), meta);
            self.insert_from_disk(target, found, meta, owner);
        }
        Ok(())
    }

    /// The owner an entry from disk gets: `--chown`'s; else, from a build context, root; from
    /// a stage's or an image's tree, its own (BuildKit's copy from a state keeps owners, as
    /// `cp -a`): on disk, or as the tree kept it aside when it was unpacked without root.
    fn owner_of(&self, abs: impl FnOnce() -> PathBuf, meta: &ItemMeta) -> (u64, u64) {
        if self.chown {
            return self.owner;
        }
        match self.sources {
            SourceOwners::Root => (0, 0),
            SourceOwners::Tree {
                recorded: None,
                ids,
                ..
            } => match ids {
                Some(range) => {
                    let (uid, gid) = meta.owner();
                    let (uid, gid) = range.to_image(uid as u32, gid as u32);
                    (u64::from(uid), u64::from(gid))
                }
                None => meta.owner(),
            },
            SourceOwners::Tree {
                root,
                recorded: Some(recorded),
                ..
            } => {
                let abs = abs();
                let rel = abs.strip_prefix(root).unwrap_or(&abs).to_string_lossy();
                recorded.get(rel.as_ref()).copied().unwrap_or((0, 0))
            }
        }
    }

    /// Adds what [`FromDisk::read`] found at `target`, owned by `owner`.
    pub(super) fn insert_from_disk(
        &mut self,
        target: &str,
        found: FromDisk,
        meta: &ItemMeta,
        (uid, gid): (u64, u64),
    ) {
        let FromDisk { kind, xattrs } = found;
        let is_symlink = matches!(kind, EntryKind::Symlink { .. });
        let mode = match self.chmod {
            Some(mode) if !is_symlink => mode,
            _ => meta.mode() & 0o7777,
        };
        let stamp = meta.is_file().then(|| SourceStamp::of(meta));
        if meta.is_file() && meta.nlink() > 1 {
            self.inodes
                .insert(target.to_owned(), (meta.dev(), meta.ino()));
        }
        let entry = Entry {
            path: target.to_owned(),
            kind,
            mode,
            uid,
            gid,
            xattrs,
        };
        self.entries.push((entry, stamp));
    }

    /// Adds everything a directory walk found, reading the files' details (links, extended
    /// attributes: one system call or more each, most of a no-op build's time) on every core.
    pub(super) fn add_walked(
        &mut self,
        dest: &str,
        dir: &Matched,
        walked: &[Walked],
    ) -> Result<(), CopyError> {
        self.entries.reserve(walked.len());
        let threads = dockless_oci::parallel::cores();
        // A batch at a time: what is read waits for its entry, so only a batch's worth of it
        // is held at once, however many files the walk found.
        for batch in walked.chunks(threads * READ_PER_THREAD) {
            let per_thread = batch.len().div_ceil(threads).max(256);
            let chunks: Vec<&[Walked]> = batch.chunks(per_thread).collect();
            let found = dockless_oci::parallel::map_in_order(&chunks, threads, |chunk| {
                chunk
                    .iter()
                    .map(|w| FromDisk::read(&w.abs(dir), &w.meta))
                    .collect::<Result<Vec<_>, CopyError>>()
            })
            .ok_or_else(|| {
                CopyError::Fs(FsError {
                    action: "read the files for",
                    path: dest.into(),
                    source: std::io::Error::other("a reader thread stopped unexpectedly"),
                })
            })?;
            for (chunk, details) in chunks.into_iter().zip(found) {
                for (w, detail) in chunk.iter().zip(details?) {
                    if let Some(detail) = detail {
                        let owner = self.owner_of(|| w.abs(dir), &w.meta);
                        self.insert_from_disk(&join(dest, &w.rel), detail, &w.meta, owner);
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn add_archive_entry(&mut self, dest: &str, mut entry: Entry) {
        entry.path = join(dest, &entry.path);
        if let EntryKind::Hardlink { target } = &mut entry.kind {
            *target = join(dest, target);
        }
        if let Some((uid, gid)) = (self.owner != (0, 0)).then_some(self.owner) {
            entry.uid = uid;
            entry.gid = gid;
        }
        if let Some(mode) = self
            .chmod
            .filter(|_| !matches!(entry.kind, EntryKind::Symlink { .. }))
        {
            entry.mode = mode;
        }
        self.add(entry);
    }

    /// Sorted entries, with the directories the copy creates and hard links made consistent,
    /// and their files' stamps.
    pub(super) fn finish(mut self, known: &KnownFilesystem) -> Result<Finished, CopyError> {
        self.sort();
        // Parents of every entry, and the destinations themselves, that do not exist yet.
        // Without a complete picture of the file system below, none are written: an entry for a
        // directory that exists would overwrite its mode and owner.
        if known.complete {
            self.add_created_dirs(known)?;
        }
        // Files sharing an inode: the first in path order is written whole, the rest link to it.
        let mut first_of_inode: HashMap<(u64, u64), String> = HashMap::new();
        for (entry, _) in &mut self.entries {
            if let Some(key) = self.inodes.get(&entry.path) {
                match first_of_inode.get(key) {
                    Some(first) => {
                        entry.kind = EntryKind::Hardlink {
                            target: first.clone(),
                        }
                    }
                    None => {
                        first_of_inode.insert(*key, entry.path.clone());
                    }
                }
            }
        }
        let stamps = self.entries.iter().map(|(_, stamp)| *stamp).collect();
        // Collected in place, in the pairs' bigger buffer: given back to fit the entries.
        let mut entries: Vec<Entry> = self.entries.into_iter().map(|(entry, _)| entry).collect();
        entries.shrink_to_fit();
        Ok(Finished { entries, stamps })
    }

    /// Sorts the entries by path and keeps the last one given for each path.
    fn sort(&mut self) {
        // Stable: the entries for one path stay in the order they came.
        self.entries.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        // `dedup_by` keeps the first of a run; swapping puts the later entry in its place.
        self.entries.dedup_by(|later, kept| {
            let same = later.0.path == kept.0.path;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
    }

    /// Whether the (sorted) entries have one for `path`.
    fn contains(&self, path: &str) -> bool {
        self.entries
            .binary_search_by(|(entry, _)| entry.path.as_str().cmp(path))
            .is_ok()
    }

    /// Entries for the directories the copy creates: the destination and every missing parent
    /// of what it writes, made as BuildKit's copy makes them (fsutil's MkdirAll): owned by the
    /// --chown owner, with the --chmod mode if one is given (0755 otherwise). The entries must
    /// be sorted, and are again after.
    fn add_created_dirs(&mut self, known: &KnownFilesystem) -> Result<(), CopyError> {
        // A directory copied onto a file replaces it (fsutil removes the file), so the
        // destinations of directory sources are not checked for what is in their way.
        let destinations: HashSet<String> =
            std::mem::take(&mut self.created_dirs).into_iter().collect();
        let mut needed: Vec<String> = destinations.iter().cloned().collect();
        // Each parent once: a parent seen before had its own parents climbed then.
        let mut seen: HashSet<&str> = HashSet::new();
        let paths = self.entries.iter().map(|(entry, _)| &entry.path);
        for path in paths.chain(destinations.iter()) {
            let mut parent = path.as_str();
            while let Some((up, _)) = parent.rsplit_once('/') {
                if !seen.insert(up) {
                    break;
                }
                needed.push(up.to_owned());
                parent = up;
            }
        }
        let mut made: HashSet<String> = HashSet::new();
        for dir in needed {
            if known.is_dir(&dir) || self.contains(&dir) || made.contains(&dir) {
                continue;
            }
            if let Some(node) = known.get(&dir).filter(|_| !destinations.contains(&dir)) {
                return Err(CopyError::NotADirectory {
                    path: dir,
                    found: node.kind.describe(),
                });
            }
            made.insert(dir);
        }
        // Exactly: a push past a full buffer would double it, for every file of the layer.
        self.entries.reserve_exact(made.len());
        for dir in made {
            let entry = Entry {
                path: dir,
                kind: EntryKind::Directory,
                mode: self.chmod.unwrap_or(0o755),
                uid: self.owner.0,
                gid: self.owner.1,
                xattrs: Vec::new(),
            };
            self.entries.push((entry, None));
        }
        // No path is there twice by now, so an unstable sort (in place) gives the one order.
        self.entries
            .sort_unstable_by(|a, b| a.0.path.cmp(&b.0.path));
        Ok(())
    }
}

/// What one file on disk becomes in a layer, read without touching the entry set (so that
/// many can be read at once).
pub(super) struct FromDisk {
    kind: EntryKind,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl FromDisk {
    /// `None` for what a layer cannot hold (sockets), with a warning.
    pub(super) fn read(abs: &Path, meta: &ItemMeta) -> Result<Option<Self>, CopyError> {
        let kind = match meta.file_type() {
            t if t.is_dir() => EntryKind::Directory,
            t if t.is_file() => EntryKind::File {
                source: abs.to_owned(),
                size: meta.len(),
            },
            t if t.is_symlink() => {
                let target = fs::read_link(abs).with_path("read the symlink", abs)?;
                EntryKind::Symlink {
                    target: target.to_string_lossy().into_owned(),
                }
            }
            t if t.is_fifo() => EntryKind::Fifo,
            t if t.is_char_device() => {
                let (major, minor) = device_numbers(meta.rdev());
                EntryKind::CharDevice { major, minor }
            }
            t if t.is_block_device() => {
                let (major, minor) = device_numbers(meta.rdev());
                EntryKind::BlockDevice { major, minor }
            }
            _ => {
                tracing::warn!(
                    "skipping {}: sockets cannot be stored in an image layer",
                    abs.display()
                );
                return Ok(None);
            }
        };
        let xattrs = if matches!(kind, EntryKind::Symlink { .. }) {
            Vec::new()
        } else {
            read_xattrs(abs)
        };
        Ok(Some(FromDisk { kind, xattrs }))
    }
}

/// Extended attributes worth keeping (file capabilities among them); SELinux labels and
/// `system.*` (ACLs) describe the build host, not the image.
fn read_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    if !may_have_xattrs(path) {
        return Vec::new();
    }
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = names
        .filter_map(|name| {
            let name = name.to_str()?.to_owned();
            if name.starts_with("system.") || name == "security.selinux" {
                return None;
            }
            let value = xattr::get(path, &name).ok()??;
            Some((name, value))
        })
        .collect();
    out.sort();
    out
}

/// One `llistxattr` size query: almost every file has no extended attributes, and this
/// answers that in a single system call (listing them takes two).
fn may_have_xattrs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string for the duration of the call; a null
    // buffer with size 0 asks only for the size of the list and writes nothing.
    let size = unsafe { libc::llistxattr(c_path.as_ptr(), std::ptr::null_mut(), 0) };
    size != 0
}

fn device_numbers(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_entries_are_sorted_the_last_for_a_path_wins_and_stamps_stay_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "bytes").unwrap();
        let meta = ItemMeta::of(&fs::symlink_metadata(&file).unwrap());
        let mut set = EntrySet::new(None, None, SourceOwners::Root);
        set.add_from_disk("b/x", &file, &meta).unwrap();
        set.add_from_disk("a", &file, &meta).unwrap();
        set.add(Entry {
            path: "b/x".into(),
            kind: EntryKind::Fifo,
            mode: 0o600,
            uid: 0,
            gid: 0,
            xattrs: Vec::new(),
        });
        set.add_from_disk("a-b", &file, &meta).unwrap();
        set.ensure_dir("b");
        let finished = set.finish(&KnownFilesystem::scratch()).unwrap();
        let paths: Vec<&str> = finished.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a-b", "b", "b/x"]);
        assert_eq!(
            finished.entries[3].kind,
            EntryKind::Fifo,
            "the later entry wins"
        );
        let stamped: Vec<bool> = finished.stamps.iter().map(Option::is_some).collect();
        assert_eq!(stamped, [true, true, false, false]);
        assert_eq!(finished.stamps[0], Some(SourceStamp::of(&meta)));
    }
}
