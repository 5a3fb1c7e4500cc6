//! A working copy of an image's file system, made by applying its layers in order: whiteouts
//! delete, opaque markers empty a directory, and modes, owners and links are kept.
//!
//! As root every owner is set for real. Without root the files belong to the invoking user
//! (who is root inside the sandbox's user namespace); the owners that could not be set are kept
//! in [`Rootfs::owners`], a metadata overlay the diff reads, so a RUN layer never loses them.
//! As root in a user namespace the owners are set shifted into the sandbox's range
//! ([`Rootfs::ids`]), so that no file of the tree is setuid to an ID that owns anything on the
//! host.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use dockless_layer::read::{OpenLayerError, open_layer};
use dockless_layer::tar_reader::{TarCopyError, TarError, TarHeader, TarReader};
use dockless_oci::digest::Digest;
use dockless_oci::store::Store;

use crate::owners::IdRange;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("could not create a working file system in {}: {source}", dir.display())]
    Create {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {digest} has media type {media_type}, which dockless cannot unpack")]
    MediaType { digest: Digest, media_type: String },
    #[error("could not unpack layer {digest} (entry `{entry}`): {source}")]
    Unpack {
        digest: Digest,
        entry: String,
        #[source]
        source: io::Error,
    },
}

/// The materialised file system of a layer chain, removed when dropped.
#[derive(Debug)]
pub struct Rootfs {
    dir: PathBuf,
    /// Owners recorded but not applied (unprivileged), by path relative to the root.
    pub owners: HashMap<String, (u64, u64)>,
    /// Whether owners are set on disk (running as root).
    pub privileged: bool,
    /// How many layers of the chain have been applied.
    pub applied: usize,
    /// With overlay snapshots: the layers below, mounted at [`Self::path`] only while a step
    /// runs (the directory is empty otherwise).
    pub overlay: Option<crate::overlay::Stack>,
    /// The host IDs the owners are kept in on disk (see [`crate::sandbox::store_ids`]);
    /// `None`: the image's own.
    pub ids: Option<IdRange>,
}

impl Rootfs {
    /// An empty file system in this process's temporary directory in the store (same file
    /// system as the blobs; swept if the process dies).
    pub fn new(store: &Store) -> Result<Self, RootfsError> {
        let parent = store.session_dir().to_owned();
        let create = |source| RootfsError::Create {
            dir: parent.clone(),
            source,
        };
        dockless_oci::cancel::check_io().map_err(create)?;
        let dir = tempfile::Builder::new()
            .prefix("rootfs-")
            .tempdir_in(&parent)
            .map_err(create)?
            .keep();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(create)?;
        dockless_oci::cleanup::register(&dir);
        Ok(Rootfs {
            dir,
            owners: HashMap::new(),
            privileged: unsafe { libc::geteuid() } == 0,
            applied: 0,
            overlay: None,
            ids: None,
        })
    }

    /// An empty file system whose owners are kept in `ids` on disk (as root; see
    /// [`crate::sandbox::store_ids`]), its root the sandbox's root's.
    pub fn in_ids(store: &Store, ids: Option<IdRange>) -> Result<Self, RootfsError> {
        let mut rootfs = Rootfs::new(store)?;
        rootfs.ids = ids.filter(|_| rootfs.privileged);
        if let Some(range) = rootfs.ids {
            let owned = range.to_host(0, 0).and_then(|(uid, gid)| {
                std::os::unix::fs::lchown(&rootfs.dir, Some(uid), Some(gid))
            });
            owned.map_err(|source| RootfsError::Create {
                dir: rootfs.dir.clone(),
                source,
            })?;
        }
        Ok(rootfs)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Applies one layer blob from the store on top of what is there. Over overlay snapshots
    /// the layer is applied through a mount into an upper directory of its own, which becomes
    /// the topmost lower (whiteouts and opaque directories as overlayfs makes them).
    pub fn apply(
        &mut self,
        store: &Store,
        digest: &Digest,
        media_type: &str,
    ) -> Result<(), RootfsError> {
        match self.overlay.take() {
            Some(stack) => crate::overlay::apply_layer(self, stack, store, digest, media_type),
            None => self.apply_here(store, digest, media_type),
        }
    }

    pub(crate) fn apply_here(
        &mut self,
        store: &Store,
        digest: &Digest,
        media_type: &str,
    ) -> Result<(), RootfsError> {
        self.apply_blob(&store.blob_path(digest), digest, media_type)
    }

    /// The tree at `dir`, which the caller keeps (never dropped: a drop removes the tree), for
    /// the helper to apply a layer to it with the owners recorded, not given.
    pub(crate) fn kept_at(dir: PathBuf) -> std::mem::ManuallyDrop<Rootfs> {
        std::mem::ManuallyDrop::new(Rootfs {
            dir,
            owners: HashMap::new(),
            privileged: false,
            applied: 0,
            overlay: None,
            ids: None,
        })
    }

    /// [`Self::apply_here`] from the blob at `blob`.
    pub(crate) fn apply_blob(
        &mut self,
        blob: &Path,
        digest: &Digest,
        media_type: &str,
    ) -> Result<(), RootfsError> {
        let unpack = |entry: &str, source| RootfsError::Unpack {
            digest: digest.clone(),
            entry: entry.to_owned(),
            source,
        };
        // The same reader as every other reading of a layer (its listing, ADD's archives):
        // Go's rules for PAX records and GNU headers, so the tree is what the listing says.
        let mut archive = match open_layer(blob, media_type) {
            Ok(archive) => archive,
            Err(OpenLayerError::UnknownMediaType { media_type }) => {
                return Err(RootfsError::MediaType {
                    digest: digest.clone(),
                    media_type,
                });
            }
            Err(OpenLayerError::Open { source, .. }) => return Err(unpack("(blob)", source)),
        };
        // Directory modes and times are set last, so that a read-only directory can still be
        // filled and filling it does not move its time.
        let mut dir_modes: Vec<(String, u32, u64)> = Vec::new();
        loop {
            dockless_oci::cancel::check_io().map_err(|e| unpack("(archive)", e))?;
            let header = match archive.next_header() {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(e) => return Err(unpack("(archive)", tar_io(e))),
            };
            let raw = String::from_utf8_lossy(&header.name).into_owned();
            self.apply_entry(&mut archive, &header, &raw, &mut dir_modes)
                .map_err(|e| unpack(&raw, e))?;
        }
        let root = File::open(&self.dir)
            .map(OwnedFd::from)
            .map_err(|e| unpack("(root)", e))?;
        for (rel, mode, mtime) in dir_modes.iter().rev() {
            set_dir_metadata(&root, rel, *mode, *mtime).map_err(|e| unpack(rel, e))?;
        }
        self.applied += 1;
        Ok(())
    }

    /// Applies one entry of a layer: a whiteout deletes, anything else replaces what the path
    /// held (a directory stays a directory, its mode set at the end by [`Self::apply`]).
    fn apply_entry<R: Read>(
        &mut self,
        archive: &mut TarReader<R>,
        header: &TarHeader,
        raw: &str,
        dir_modes: &mut Vec<(String, u32, u64)>,
    ) -> io::Result<()> {
        if header.type_flag == b'g' {
            // A PAX global header describes the archive, not a file.
            return Ok(());
        }
        let Some(rel) = dockless_context::source::clean_relative(raw).filter(|p| !p.is_empty())
        else {
            return Ok(());
        };
        if header.sparse {
            return Err(io::Error::other(
                "a GNU sparse file, which dockless does not unpack (Docker's and BuildKit's \
                 layers never hold one; rebuild the image without sparse files)",
            ));
        }
        let (dir, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (d.to_owned(), n.to_owned()),
            None => (String::new(), rel.clone()),
        };
        // Directories the layer does not list are made as the image's root's.
        let made_owner = self.ids.map(|range| range.to_host(0, 0)).transpose()?;
        let parent = resolve_making(&self.dir, &dir, true, made_owner)?;
        if self.apply_whiteout(&parent, &dir, &name)? {
            return Ok(());
        }
        let target = parent.join(&name);
        let mode = (header.mode & 0o7777) as u32;
        let existing = fs::symlink_metadata(&target).ok();
        let is_dir = header.type_flag == b'5';
        let keep_dir = is_dir && existing.as_ref().is_some_and(|m| m.is_dir());
        if existing.is_some() && !keep_dir {
            remove_tree(&target)?;
        }
        match header.type_flag {
            b'5' => {
                if !keep_dir {
                    fs::create_dir(&target)?;
                }
                fs::set_permissions(&target, fs::Permissions::from_mode(0o700))?;
                let inside = target.strip_prefix(&self.dir).map_err(io::Error::other)?;
                let inside = inside.to_string_lossy().into_owned();
                dir_modes.push((inside, mode, unsigned(header.mtime)));
            }
            b'0' | b'7' => {
                let mut file = File::create(&target)?;
                archive.copy_data(&mut file).map_err(|e| match e {
                    TarCopyError::Archive(e) => tar_io(e),
                    TarCopyError::Write(e) => e,
                })?;
            }
            b'2' => symlink(std::ffi::OsStr::from_bytes(&header.link_name), &target)?,
            // A hard link shares its target's owner and mode: nothing more to set.
            b'1' => return self.hard_link(header, rel, &target),
            b'3' | b'4' | b'6' => {
                if !make_device(header, &target, &rel)? {
                    return Ok(());
                }
            }
            // Any other type (Go hands them on) makes nothing on disk.
            _ => return Ok(()),
        }
        self.set_metadata(&rel, &target, header, mode)
    }

    /// Applies `name` in `dir` (whose path on disk is `parent`) when it is a whiteout: an
    /// opaque marker empties the directory, `.wh.<name>` deletes `<name>`. Returns whether it
    /// was one.
    fn apply_whiteout(&mut self, parent: &Path, dir: &str, name: &str) -> io::Result<bool> {
        if name == ".wh..wh..opq" {
            for child in fs::read_dir(parent)? {
                let child = child?;
                remove_tree(&child.path())?;
            }
            let prefix = format!("{dir}/");
            self.owners.retain(|p, _| !p.starts_with(&prefix));
            return Ok(true);
        }
        let Some(deleted) = name.strip_prefix(".wh.") else {
            return Ok(false);
        };
        // `.wh..` and `.wh...` would delete the directory itself or its parent (in the store,
        // other builds' trees); a name is one path element, never empty.
        if deleted.is_empty() || deleted == "." || deleted == ".." || deleted.contains('/') {
            return Err(io::Error::other(format!(
                "`{name}` is a whiteout of `{deleted}`, which names no file: the layer is malformed \
                 (rebuild or replace the image that holds it)"
            )));
        }
        remove_tree(&parent.join(deleted))?;
        let gone = join(dir, deleted);
        let prefix = format!("{gone}/");
        self.owners
            .retain(|p, _| p != &gone && !p.starts_with(&prefix));
        Ok(true)
    }

    /// Makes `target` (at `rel`) a hard link to the entry's link name, which must stay inside
    /// the tree; it shares the owner kept aside for its target.
    fn hard_link(&mut self, header: &TarHeader, rel: String, target: &Path) -> io::Result<()> {
        let link = &header.link_name;
        let link = String::from_utf8_lossy(link).into_owned();
        let source = dockless_context::source::clean_relative(&link)
            .ok_or_else(|| io::Error::other(format!("hard link to `{link}` climbs out")))?;
        fs::hard_link(resolve(&self.dir, &source, false)?, target)?;
        if let Some(owner) = self.owners.get(&source).copied() {
            self.owners.insert(rel, owner);
        }
        Ok(())
    }

    /// The owner, mode and modification time the layer gives a new entry (a directory's mode
    /// and time wait for the end of the layer).
    fn set_metadata(
        &mut self,
        rel: &str,
        target: &Path,
        header: &TarHeader,
        mode: u32,
    ) -> io::Result<()> {
        let id = |value: i64, what: &str| {
            u64::try_from(value).map_err(|_| io::Error::other(format!("negative {what} {value}")))
        };
        self.set_owner(rel, target, id(header.uid, "uid")?, id(header.gid, "gid")?)?;
        let (is_symlink, is_dir) = (header.type_flag == b'2', header.type_flag == b'5');
        if !is_symlink && !is_dir {
            // After the owner: chown clears setuid and setgid bits.
            fs::set_permissions(target, fs::Permissions::from_mode(mode))?;
        }
        if !is_dir {
            // Times as the layer has them: a tool that compares them (Python's bytecode cache,
            // make) must see the image's files as the image made them.
            set_mtime(target, unsigned(header.mtime))?;
        }
        Ok(())
    }

    fn set_owner(&mut self, rel: &str, target: &Path, uid: u64, gid: u64) -> io::Result<()> {
        if self.privileged {
            let (uid, gid) = match self.ids {
                Some(range) => range.to_host(uid as u32, gid as u32)?,
                None => (uid as u32, gid as u32),
            };
            std::os::unix::fs::lchown(target, Some(uid), Some(gid))?;
            self.owners.remove(rel);
        } else if (uid, gid) != (0, 0) {
            // Root in the sandbox is the invoking user, who owns every file; other owners
            // cannot be set without a wider ID mapping, so they are kept aside.
            self.owners.insert(rel.to_owned(), (uid, gid));
        } else {
            self.owners.remove(rel);
        }
        Ok(())
    }
}

/// A time or size the archive gave as a signed number, negative ones as 0.
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A reading error of the archive as the I/O error [`RootfsError::Unpack`] carries.
fn tar_io(error: TarError) -> io::Error {
    match error {
        TarError::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// Makes the FIFO a layer entry describes at `target`; `false` for a character or block device,
/// which is never made on the host: a base image's /dev/sda with mode 0666 would be a way to a
/// host disk for anyone who reaches the tree (the sandbox mounts its own /dev, and a layer
/// keeps its device entries, which the diff never reads back).
fn make_device(header: &TarHeader, target: &Path, rel: &str) -> io::Result<bool> {
    if header.type_flag != b'6' {
        tracing::debug!(path = %rel, "device node not made on the host");
        return Ok(false);
    }
    let kind_bits = libc::S_IFIFO;
    let major = u32::try_from(header.dev_major).unwrap_or(0);
    let minor = u32::try_from(header.dev_minor).unwrap_or(0);
    let c = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a valid C string and plain integer arguments.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind_bits | 0o600, libc::makedev(major, minor)) };
    if rc != 0 {
        tracing::debug!(path = %rel, "device node skipped: {}", io::Error::last_os_error());
        return Ok(false);
    }
    Ok(true)
}

pub mod cached;

impl Drop for Rootfs {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
        dockless_oci::cleanup::unregister(&self.dir);
    }
}

/// Gives the directory `rel` of the tree whose root is `root` its mode and times at the end of a
/// layer, reached beneath the root without following any symlink: a later entry of the same
/// layer may have replaced it, or one of its parents, with a link (to a host directory, as an
/// absolute link means on the host), and then there is nothing of the tree to set.
fn set_dir_metadata(root: &OwnedFd, rel: &str, mode: u32, mtime: u64) -> io::Result<()> {
    let dir =
        match crate::sandbox::in_tree::open_beneath(root, rel, libc::O_PATH | libc::O_DIRECTORY) {
            Ok(dir) => dir,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
    // A descriptor opened with O_PATH cannot be changed through; its /proc link can, and leads
    // to nothing but that directory.
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let time = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: a valid C string and a two-element array, as utimensat expects.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [time, time].as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the access and modification times of `path` (not following a symlink).
fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let time = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    set_times(path, [time, time])
}

/// Sets the access and modification `times` of `path` (not following a symlink).
pub(crate) fn set_times(path: &Path, times: [libc::timespec; 2]) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a valid C string and a two-element array, as utimensat expects.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// A file of the tree is not read on the host side past this size: none that dockless reads
/// there (the user and group databases) comes near it, and a RUN could have left any size.
const LARGEST_READ: u64 = 64 << 20;

/// The text of a file of the tree, read on the host side (the user and group databases, for a
/// step's `USER`), when it is a regular file of a sane size. An earlier RUN may have left a FIFO
/// in its place, which a plain read would wait on for ever: it is opened without blocking, and
/// refused once its kind is known.
pub fn read_regular(path: &Path) -> io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() > LARGEST_READ {
        return Err(io::Error::other(
            "not a regular file of a user database's size",
        ));
    }
    let mut text = String::new();
    file.take(LARGEST_READ).read_to_string(&mut text)?;
    Ok(text)
}

/// `rel` inside `root`, following symlinks as if `root` were `/` (so that no layer entry and no
/// hard link can reach outside it). With `create`, missing directories are made.
pub fn resolve(root: &Path, rel: &str, create: bool) -> io::Result<PathBuf> {
    resolve_making(root, rel, create, None)
}

/// [`resolve`], the directories it makes given `owner` (host IDs) when one is given.
fn resolve_making(
    root: &Path,
    rel: &str,
    create: bool,
    owner: Option<(u32, u32)>,
) -> io::Result<PathBuf> {
    let mut pending: VecDeque<String> = rel
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let mut current: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "." => continue,
            ".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&current);
        candidate.push(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::other(format!("too many symlinks in `{rel}`")));
                }
                let target = fs::read_link(&candidate)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    current.clear();
                }
                for piece in target.split('/').filter(|p| !p.is_empty()).rev() {
                    pending.push_front(piece.to_owned());
                }
            }
            Ok(_) => current.push(part),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if create {
                    fs::create_dir(&candidate)?;
                    if let Some((uid, gid)) = owner {
                        std::os::unix::fs::lchown(&candidate, Some(uid), Some(gid))?;
                    }
                }
                current.push(part);
            }
            Err(e) => return Err(e),
        }
    }
    let mut path = root.to_path_buf();
    path.extend(&current);
    Ok(path)
}

pub use dockless_oci::cleanup::remove_tree;

#[cfg(test)]
mod tests;
