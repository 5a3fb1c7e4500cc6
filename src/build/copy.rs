//! COPY and ADD: from sources in the context (or a URL, or a local archive) to layer entries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, Metadata};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tempfile::TempDir;

use super::filesystem::{KnownFilesystem, TooManyLinks};
use crate::context::Context;
use crate::context::pattern::has_glob_meta;
use crate::context::source::{SourceError, Walked};
use crate::digest::{Digest, HashingWriter};
use crate::fs_error::{FsError, IoContext};
use crate::layer::archive::{self, ArchiveError};
use crate::layer::cache::{SourceStamp, Stamps};
use crate::layer::{Entry, EntryKind};
use crate::store::{Store, StoreError};

/// One COPY or ADD, with every word already expanded.
#[derive(Debug, Clone)]
pub struct CopyRequest<'a> {
    pub sources: &'a [String],
    pub dest: &'a str,
    /// The working directory that a relative `dest` is relative to (absolute).
    pub workdir: &'a str,
    pub owner: Option<(u64, u64)>,
    pub chmod: Option<u32>,
    /// ADD: extract local archives and fetch URLs.
    pub add: bool,
    /// ADD --checksum for a URL source.
    pub checksum: Option<Digest>,
    /// `--exclude`: paths inside a source directory (relative to it) that are left out.
    pub exclude: Option<&'a crate::context::ignore::IgnoreRules>,
    /// `--parents`: each source keeps its path below the context root (or a `/./` pivot).
    pub parents: bool,
}

/// The entries of a COPY layer, and the staging directory that holds fetched or extracted
/// files until the layer is written.
#[derive(Debug)]
pub struct CopyPlan {
    pub entries: Vec<Entry>,
    pub staging: Option<TempDir>,
    /// Identities of the context files, taken during the walk, for the layer cache.
    pub stamps: Stamps,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{url}: {message}")]
    Download { url: String, message: String },
    #[error("{url}: checksum mismatch: expected {expected}, the download is {actual}")]
    Checksum {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("--checksum is only for ADD with a URL source")]
    ChecksumWithoutUrl,
    #[error(transparent)]
    Links(#[from] TooManyLinks),
    #[error(
        "the copy needs a directory at /{path}, but the image has a {found} there; choose another destination"
    )]
    NotADirectory { path: String, found: &'static str },
}

/// Turns a COPY/ADD into entries for one layer.
pub fn plan_copy(
    context: &Context,
    known: &KnownFilesystem,
    store: &Store,
    request: &CopyRequest<'_>,
    runtime: Option<&tokio::runtime::Handle>,
) -> Result<CopyPlan, CopyError> {
    // The destination is looked up through the image's symlinks, the last component included,
    // as BuildKit's copy does: `COPY f /tmp` with `/tmp -> /private/tmp` writes
    // `/private/tmp/f`, and the layer holds the real path.
    let dest = absolute_dest(request.workdir, request.dest);
    let dest = if known.complete {
        known.resolve(&dest)?
    } else {
        dest
    };
    let dest_says_dir = request.dest.ends_with('/')
        || request.dest.ends_with("/.")
        || request.dest == "."
        || request.dest.is_empty();

    let mut local = Vec::new();
    let mut urls = Vec::new();
    for source in request.sources {
        if request.add && is_url(source) {
            urls.push(source.as_str());
            continue;
        }
        match context.resolve(source) {
            Ok(matched) => local.extend(matched),
            // BuildKit copies every source with AllowEmptyWildcard: a pattern that matches
            // nothing adds nothing; only a plain path must exist.
            Err(SourceError::NotFound(_)) if has_glob_meta(source) => {
                tracing::info!("COPY source '{source}' matches nothing in the context");
            }
            Err(e) => return Err(e.into()),
        }
    }
    // BuildKit copies each source on its own into `dest`: a directory's content goes into it
    // (making it a directory), a file goes inside it if it is a directory by then, else
    // becomes it, so several files into a path without a trailing slash overwrite each other.
    let files = local.iter().filter(|m| !m.meta.is_dir()).count() + urls.len();
    if files > 1 && !dest_says_dir && !known.is_dir(&dest) && !request.parents {
        tracing::warn!(
            "{} files are copied to '{}', which does not end with /: as in Docker, each replaces the one before; end the destination with / to keep them all",
            files,
            request.dest
        );
    }
    if request.checksum.is_some() && urls.is_empty() {
        return Err(CopyError::ChecksumWithoutUrl);
    }
    let mut dest_is_dir = dest_says_dir || known.is_dir(&dest);
    let owner = request.owner.unwrap_or((0, 0));
    let mut builder = EntrySet::new(owner, request.chmod);
    let mut staging: Option<TempDir> = None;

    for matched in &local {
        if request.parents {
            add_with_parents(&mut builder, context, request, &dest, matched)?;
            continue;
        }
        if matched.meta.is_dir() {
            builder.ensure_dir(&dest);
            builder.add_walked(&dest, &walk_without_excluded(context, matched, request)?)?;
            dest_is_dir = true;
            continue;
        }
        let archive = if request.add && matched.meta.is_file() {
            archive::detect_archive(&matched.abs)?
        } else {
            None
        };
        if let Some(compression) = archive {
            let stage = staging_dir(&mut staging, store)?;
            let unpack_dir =
                tempfile::tempdir_in(&stage).with_path("create a directory in", &stage)?;
            let unpacked = archive::unpack(&matched.abs, compression, unpack_dir.path())?;
            // The staged files live until the staging directory is dropped with the plan.
            let _ = unpack_dir.keep();
            builder.ensure_dir(&dest);
            for entry in unpacked {
                builder.add_archive_entry(&dest, entry);
            }
            continue;
        }
        let name = matched.rel.rsplit('/').next().unwrap_or(&matched.rel);
        let target = if dest_is_dir {
            join(&dest, name)
        } else {
            dest.clone()
        };
        builder.add_from_disk(&target, &matched.abs, &matched.meta)?;
    }

    for url in urls {
        let stage = staging_dir(&mut staging, store)?;
        let fetched = fetch_url(url, &stage, request.checksum.as_ref(), runtime)?;
        let name = url_file_name(url);
        let target = if dest_is_dir {
            join(&dest, &name)
        } else {
            dest.clone()
        };
        let meta = fs::metadata(&fetched).with_path("read", &fetched)?;
        builder.add(Entry {
            path: target,
            kind: EntryKind::File {
                source: fetched,
                size: meta.len(),
            },
            // Docker gives downloaded files mode 0600.
            mode: request.chmod.unwrap_or(0o600),
            uid: owner.0,
            gid: owner.1,
            xattrs: Vec::new(),
        });
    }

    let stamps = std::mem::take(&mut builder.stamps);
    Ok(CopyPlan {
        entries: builder.finish(known)?,
        staging,
        stamps,
    })
}

/// What a source directory holds, less what `--exclude` leaves out (matched, as BuildKit's
/// copier does, against paths relative to that directory; a source named on the line is never
/// excluded itself).
fn walk_without_excluded(
    context: &Context,
    matched: &crate::context::source::Matched,
    request: &CopyRequest<'_>,
) -> Result<Vec<Walked>, CopyError> {
    let mut walked = context.walk(matched)?;
    if let Some(rules) = request.exclude {
        walked.retain(|w| !rules.is_excluded(&w.rel));
    }
    Ok(walked)
}

/// `COPY --parents`: the source lands at its own path under `dest` (below the `/./` pivot of
/// the source pattern, if it has one), each directory on the way taken from the context.
fn add_with_parents(
    builder: &mut EntrySet,
    context: &Context,
    request: &CopyRequest<'_>,
    dest: &str,
    matched: &crate::context::source::Matched,
) -> Result<(), CopyError> {
    let pivot = request
        .sources
        .iter()
        .filter_map(|source| source.split_once("/./"))
        .map(|(pivot, _)| pivot.trim_start_matches("./").trim_matches('/'))
        .find(|pivot| matched.rel == *pivot || matched.rel.starts_with(&format!("{pivot}/")))
        .unwrap_or("");
    let kept = matched.rel[pivot.len()..].trim_start_matches('/');
    builder.ensure_dir(dest);
    let mut ancestor = String::new();
    for part in kept.split('/').filter(|p| !p.is_empty()) {
        ancestor = if ancestor.is_empty() {
            part.to_owned()
        } else {
            format!("{ancestor}/{part}")
        };
        let on_disk = context.root().join(pivot).join(&ancestor);
        let meta = fs::symlink_metadata(&on_disk).with_path("read", &on_disk)?;
        if ancestor != kept {
            builder.add_from_disk(&join(dest, &ancestor), &on_disk, &meta)?;
        }
    }
    let target = join(dest, kept);
    builder.add_from_disk(&target, &matched.abs, &matched.meta)?;
    if matched.meta.is_dir() {
        builder.add_walked(&target, &walk_without_excluded(context, matched, request)?)?;
    }
    Ok(())
}

/// The staging directory for fetched and extracted files, created on first use.
fn staging_dir(
    staging: &mut Option<TempDir>,
    store: &Store,
) -> Result<std::path::PathBuf, CopyError> {
    Ok(match staging {
        Some(dir) => dir.path().to_owned(),
        None => staging.insert(store.temp_dir()?).path().to_owned(),
    })
}

/// Entries being gathered for one layer: a later entry for the same path replaces an earlier one.
struct EntrySet {
    entries: BTreeMap<String, Entry>,
    /// (device, inode) of files with several links, so that they become hard links in the layer.
    inodes: HashMap<String, (u64, u64)>,
    owner: (u64, u64),
    chmod: Option<u32>,
    created_dirs: Vec<String>,
    stamps: Stamps,
}

impl EntrySet {
    fn new(owner: (u64, u64), chmod: Option<u32>) -> Self {
        EntrySet {
            entries: BTreeMap::new(),
            inodes: HashMap::new(),
            owner,
            chmod,
            created_dirs: Vec::new(),
            stamps: Stamps::new(),
        }
    }

    fn add(&mut self, entry: Entry) {
        self.inodes.remove(&entry.path);
        self.stamps.remove(&entry.path);
        self.entries.insert(entry.path.clone(), entry);
    }

    /// A destination directory the copy needs: written only if it does not exist below.
    fn ensure_dir(&mut self, path: &str) {
        if !path.is_empty() {
            self.created_dirs.push(path.to_owned());
        }
    }

    fn add_from_disk(
        &mut self,
        target: &str,
        abs: &Path,
        meta: &Metadata,
    ) -> Result<(), CopyError> {
        if let Some(found) = FromDisk::read(abs, meta)? {
            self.insert_from_disk(target, found, meta);
        }
        Ok(())
    }

    /// Adds what [`FromDisk::read`] found at `target`.
    fn insert_from_disk(&mut self, target: &str, found: FromDisk, meta: &Metadata) {
        let FromDisk { kind, xattrs } = found;
        let is_symlink = matches!(kind, EntryKind::Symlink { .. });
        let mode = match self.chmod {
            Some(mode) if !is_symlink => mode,
            _ => meta.mode() & 0o7777,
        };
        if meta.is_file() {
            self.stamps.insert(target.to_owned(), SourceStamp::of(meta));
        }
        if meta.is_file() && meta.nlink() > 1 {
            self.inodes
                .insert(target.to_owned(), (meta.dev(), meta.ino()));
        }
        let path = target.to_owned();
        self.entries.insert(
            path.clone(),
            Entry {
                path,
                kind,
                mode,
                uid: self.owner.0,
                gid: self.owner.1,
                xattrs,
            },
        );
    }

    /// Adds everything a directory walk found, reading the files' details (links, extended
    /// attributes: one system call or more each, most of a no-op build's time) on every core.
    fn add_walked(&mut self, dest: &str, walked: &[Walked]) -> Result<(), CopyError> {
        // One stamp per file: grown once, not rehashed all the way up.
        self.stamps.reserve(walked.len());
        let threads = crate::parallel::cores();
        let per_thread = walked.len().div_ceil(threads).max(256);
        let chunks: Vec<&[Walked]> = walked.chunks(per_thread).collect();
        let found = crate::parallel::map_in_order(&chunks, threads, |chunk| {
            chunk
                .iter()
                .map(|w| FromDisk::read(&w.abs, &w.meta))
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
                    self.insert_from_disk(&join(dest, &w.rel), detail, &w.meta);
                }
            }
        }
        Ok(())
    }

    fn add_archive_entry(&mut self, dest: &str, mut entry: Entry) {
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

    /// Sorted entries, with the directories the copy creates and hard links made consistent.
    fn finish(mut self, known: &KnownFilesystem) -> Result<Vec<Entry>, CopyError> {
        // Parents of every entry, and the destinations themselves, that do not exist yet.
        // Without a complete picture of the file system below, none are written: an entry for a
        // directory that exists would overwrite its mode and owner.
        if known.complete {
            self.add_created_dirs(known)?;
        }
        // Files sharing an inode: the first in path order is written whole, the rest link to it.
        let mut first_of_inode: HashMap<(u64, u64), String> = HashMap::new();
        let mut entries: Vec<Entry> = self.entries.into_values().collect();
        for entry in &mut entries {
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
        Ok(entries)
    }

    /// Entries for the directories the copy creates: the destination and every missing parent
    /// of what it writes, made as BuildKit's copy makes them (fsutil's MkdirAll): owned by the
    /// --chown owner, with the --chmod mode if one is given (0755 otherwise).
    fn add_created_dirs(&mut self, known: &KnownFilesystem) -> Result<(), CopyError> {
        // A directory copied onto a file replaces it (fsutil removes the file), so the
        // destinations of directory sources are not checked for what is in their way.
        let destinations: HashSet<String> =
            std::mem::take(&mut self.created_dirs).into_iter().collect();
        let mut needed: Vec<String> = destinations.iter().cloned().collect();
        // Each parent once: a parent seen before had its own parents climbed then.
        let mut seen: HashSet<&str> = HashSet::new();
        for path in self.entries.keys().chain(destinations.iter()) {
            let mut parent = path.as_str();
            while let Some((up, _)) = parent.rsplit_once('/') {
                if !seen.insert(up) {
                    break;
                }
                needed.push(up.to_owned());
                parent = up;
            }
        }
        for dir in needed {
            if known.is_dir(&dir) || self.entries.contains_key(&dir) {
                continue;
            }
            if let Some(node) = known.get(&dir).filter(|_| !destinations.contains(&dir)) {
                return Err(CopyError::NotADirectory {
                    path: dir,
                    found: node.kind.describe(),
                });
            }
            self.entries.insert(
                dir.clone(),
                Entry {
                    path: dir,
                    kind: EntryKind::Directory,
                    mode: self.chmod.unwrap_or(0o755),
                    uid: self.owner.0,
                    gid: self.owner.1,
                    xattrs: Vec::new(),
                },
            );
        }
        Ok(())
    }
}

/// What one file on disk becomes in a layer, read without touching the entry set (so that
/// many can be read at once).
struct FromDisk {
    kind: EntryKind,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl FromDisk {
    /// `None` for what a layer cannot hold (sockets), with a warning.
    fn read(abs: &Path, meta: &Metadata) -> Result<Option<Self>, CopyError> {
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

/// The destination as an absolute image path without the leading `/`, cleaned; `..` stops at
/// the root like it does in a container.
pub fn absolute_dest(workdir: &str, dest: &str) -> String {
    let full = if dest.starts_with('/') {
        dest.to_owned()
    } else {
        format!("{workdir}/{dest}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in full.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => dir.to_owned(),
        _ => format!("{dir}/{name}"),
    }
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The file name Docker gives a downloaded file: the last segment of the URL's path.
fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    after_host
        .rsplit('/')
        .find(|s| !s.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| "index.html".into())
}

fn fetch_url(
    url: &str,
    stage: &Path,
    checksum: Option<&Digest>,
    runtime: Option<&tokio::runtime::Handle>,
) -> Result<std::path::PathBuf, CopyError> {
    let fail = |message: String| CopyError::Download {
        url: url.into(),
        message,
    };
    let runtime = runtime.ok_or_else(|| fail("downloads need a network runtime".into()))?;
    let file = tempfile::NamedTempFile::new_in(stage).with_path("create a file in", stage)?;
    let (file, digest) = runtime.block_on(async {
        let response = reqwest::get(url).await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("the server answered {}", response.status())));
        }
        let mut writer = HashingWriter::new(file);
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
            writer.write_all(&chunk).map_err(|e| fail(e.to_string()))?;
        }
        let (file, digest, _) = writer.finish();
        Ok((file, digest))
    })?;
    if let Some(expected) = checksum
        && &digest != expected
    {
        return Err(CopyError::Checksum {
            url: url.into(),
            expected: expected.clone(),
            actual: digest,
        });
    }
    let (_, path) = file.keep().map_err(|e| e.error).with_path("keep", stage)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_resolved_against_the_workdir_and_clamped() {
        assert_eq!(absolute_dest("/app", "src/"), "app/src");
        assert_eq!(absolute_dest("/app", "/etc/x"), "etc/x");
        assert_eq!(absolute_dest("/", "../../x"), "x");
        assert_eq!(absolute_dest("/app", "."), "app");
    }

    #[test]
    fn url_file_names_follow_docker() {
        assert_eq!(url_file_name("https://h/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_file_name("https://h/dir/"), "dir");
        assert_eq!(url_file_name("https://h"), "index.html");
    }
}
