//! The mount points the sandbox makes in the tree (/proc, /dev, the /etc/hosts and
//! /etc/resolv.conf stubs, RUN --mount targets) and removes after the command, every path
//! resolved by the kernel beneath a descriptor of the tree's root, following no symlink
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`). The command may have replaced any
//! directory of the tree with a link to a host directory; a host path joined onto the tree
//! would then lead the removal (as the invoking user, often root) there, and the next RUN's
//! stubs with it. Only what was made is removed: the same inode at the same place.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

/// Opens `rel` (relative, `/`-separated) beneath `dir` as a directory to act in, refusing any
/// symlink or `..` on the way.
fn open_dir_beneath(dir: &OwnedFd, rel: &str) -> io::Result<OwnedFd> {
    open_beneath(dir, rel, libc::O_PATH | libc::O_DIRECTORY)
}

/// Opens `rel` (relative, `/`-separated) beneath `dir` with `flags` (close-on-exec added),
/// refusing any symlink, its last part included, and any `..` on the way.
pub(crate) fn open_beneath(dir: &OwnedFd, rel: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = if rel.is_empty() { "." } else { rel };
    let path = CString::new(path).map_err(io::Error::other)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a descriptor we own, a valid C string and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// `(dev, ino, is_dir)` of `name` in `dir`, not following a symlink; `None` when absent.
fn stat_at(dir: &OwnedFd, name: &CString) -> io::Result<Option<(u64, u64, bool)>> {
    // SAFETY: a zeroed stat is a valid buffer for the call to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we own, a valid C string and buffer.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::NotFound {
            Ok(None)
        } else {
            Err(err)
        };
    }
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    Ok(Some((st.st_dev, st.st_ino, is_dir)))
}

fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

/// One mount point made: where, and which inode it was.
#[derive(Debug)]
struct Made {
    rel: String,
    dev: u64,
    ino: u64,
    dir: bool,
}

/// The mount points made in one tree, removed by [`Self::remove`] deepest first.
#[derive(Debug)]
pub(super) struct MountPoints {
    root: OwnedFd,
    made: Vec<Made>,
    /// The host IDs to give what is made (the sandbox's root, when the tree is kept in its
    /// range); `None`: the maker's.
    owner: Option<(u32, u32)>,
}

impl MountPoints {
    pub(super) fn open(root: &Path, owner: Option<(u32, u32)>) -> io::Result<Self> {
        let root = File::open(root)?;
        Ok(MountPoints {
            root: root.into(),
            made: Vec::new(),
            owner,
        })
    }

    /// Makes `rel` (relative to the root, a path without symlinks) unless something is there:
    /// its missing parents as directories when `parents`, else only when its parent is there.
    /// The last part is a directory, or an empty file when `file`. Returns whether `rel` is
    /// there now, reached without a symlink.
    pub(super) fn make(&mut self, rel: &str, file: bool, parents: bool) -> io::Result<bool> {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let mut dir_rel = String::new();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let dir = match open_dir_beneath(&self.root, &dir_rel) {
                Ok(dir) => dir,
                // A link or a file on the way: nothing is made through it.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            let name = CString::new(*part).map_err(io::Error::other)?;
            let here = if dir_rel.is_empty() {
                (*part).to_owned()
            } else {
                format!("{dir_rel}/{part}")
            };
            if stat_at(&dir, &name)?.is_none() {
                if !last && !parents {
                    return Ok(false);
                }
                let as_file = last && file;
                make_at(&dir, &name, as_file, self.owner)?;
                let (dev, ino, _) = stat_at(&dir, &name)?
                    .ok_or_else(|| io::Error::other(format!("{here} vanished")))?;
                self.made.push(Made {
                    rel: here.clone(),
                    dev,
                    ino,
                    dir: !as_file,
                });
            }
            dir_rel = here;
        }
        Ok(true)
    }

    /// Removes what [`Self::make`] made, deepest first, where it still is what was made; a
    /// mount point whose parent is now a link (or gone) is left alone.
    pub(super) fn remove(&self) {
        for made in self.made.iter().rev() {
            let (parent, name) = split(&made.rel);
            let Ok(dir) = open_dir_beneath(&self.root, parent) else {
                continue;
            };
            let Ok(name) = CString::new(name) else {
                continue;
            };
            if !matches!(stat_at(&dir, &name), Ok(Some((dev, ino, _))) if (dev, ino) == (made.dev, made.ino))
            {
                continue;
            }
            let flags = if made.dir { libc::AT_REMOVEDIR } else { 0 };
            // SAFETY: a descriptor we own and a valid C string. A directory the command filled
            // stays (ENOTEMPTY), as a RUN that writes into a mount point keeps what it wrote.
            unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) };
        }
    }
}

/// Whether `rel` beneath `root` is reached without a symlink and is a directory (`dir`) or a
/// regular file.
pub(super) fn is_plain_beneath(root: &OwnedFd, rel: &str, dir: bool) -> bool {
    let (parent, name) = split(rel);
    let Ok(parent) = open_dir_beneath(root, parent) else {
        return false;
    };
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: a zeroed stat is a valid buffer for the call to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we own, a valid C string and buffer.
    let rc = unsafe {
        libc::fstatat(
            parent.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    let kind = st.st_mode & libc::S_IFMT;
    rc == 0 && kind == if dir { libc::S_IFDIR } else { libc::S_IFREG }
}

/// The working directory (the tree, in the helper), as a descriptor for [`is_plain_beneath`].
pub(super) fn current_dir() -> io::Result<OwnedFd> {
    Ok(File::open(".")?.into())
}

fn make_at(dir: &OwnedFd, name: &CString, file: bool, owner: Option<(u32, u32)>) -> io::Result<()> {
    // SAFETY: a descriptor we own and a valid C string; O_EXCL and O_NOFOLLOW make nothing
    // through a link that appeared meanwhile.
    let rc = unsafe {
        if file {
            let fd = libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            fd.min(0)
        } else {
            libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755)
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some((uid, gid)) = owner {
        // SAFETY: a descriptor we own and a valid C string; the entry just made, not followed.
        let rc = unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                name.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn removes_only_what_it_made_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let host = dir.path().join("host");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir(&host).unwrap();
        let mut points = MountPoints::open(&root, None).unwrap();
        assert!(points.make("etc/hosts", true, false).unwrap());
        assert!(points.make("m/t", false, true).unwrap());
        assert!(!points.make("absent/x", true, false).unwrap());
        assert!(root.join("etc/hosts").is_file() && root.join("m/t").is_dir());
        // The command moves both parents away and puts links to the host in their place.
        fs::write(host.join("hosts"), "host").unwrap();
        fs::create_dir(host.join("t")).unwrap();
        fs::rename(root.join("etc"), root.join("etc.moved")).unwrap();
        fs::rename(root.join("m"), root.join("m.moved")).unwrap();
        std::os::unix::fs::symlink(&host, root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&host, root.join("m")).unwrap();
        points.remove();
        assert_eq!(fs::read_to_string(host.join("hosts")).unwrap(), "host");
        assert!(host.join("t").is_dir());
        assert!(fs::symlink_metadata(root.join("m")).unwrap().is_symlink());
        // Made anew through the link: nothing.
        let mut again = MountPoints::open(&root, None).unwrap();
        assert!(!again.make("etc/resolv.conf", true, false).unwrap());
        assert!(!host.join("resolv.conf").exists());
        assert!(!is_plain_beneath(&again.root, "etc/hosts", false));
        assert!(is_plain_beneath(&again.root, "etc.moved/hosts", false));
        let meta = fs::metadata(root.join("etc.moved/hosts")).unwrap();
        assert!(meta.ino() > 0);
    }
}
