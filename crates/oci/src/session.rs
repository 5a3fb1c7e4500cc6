//! The store's sessions: which temporary files belong to a running process, and which a dead
//! one left.
//!
//! Every process that opens the store holds two `flock`s for its life, released by the kernel
//! however it ends (SIGKILL and power loss included):
//! - a shared lock on `<store>/lock`: `dockless prune` takes it exclusively, so it never
//!   removes what a running build uses, and a build that starts during a prune waits for it;
//! - an exclusive lock on `tmp/<name>.lock`, beside `tmp/<name>/`, the directory that holds
//!   every temporary file of the process (working trees, layers being written, blobs being
//!   fetched, secret files). A directory in `tmp/` whose lock nobody holds is a dead process's:
//!   [`sweep`] removes it, and every process sweeps when it opens the store.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::cleanup::remove_tree;

/// The store-wide lock file, under the store's root.
pub(crate) const STORE_LOCK: &str = "lock";
/// The temporary area, under the store's root.
pub(crate) const TMP: &str = "tmp";
const LOCK_SUFFIX: &str = ".lock";

/// This process's part of the store's temporary area.
#[derive(Debug)]
pub struct Session {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    /// Held for its shared lock on the store, released by the kernel when the process ends.
    _store_lock: File,
}

impl Session {
    /// Joins the store at `root` (waiting for a prune that holds it) and makes this process's
    /// temporary directory, after sweeping what dead processes left.
    pub fn open(root: &Path) -> io::Result<Session> {
        let store_lock = open_lock(&root.join(STORE_LOCK))?;
        if !flock(&store_lock, libc::LOCK_SH | libc::LOCK_NB) {
            tracing::warn!("waiting for a prune of the store to finish");
            if !flock(&store_lock, libc::LOCK_SH) {
                return Err(io::Error::last_os_error());
            }
        }
        let tmp = root.join(TMP);
        fs::create_dir_all(&tmp)?;
        spread_subdirectories(&tmp);
        sweep(&tmp);
        let (lock_path, lock) = own_lock(&tmp)?;
        let dir = tmp.join(session_name(&lock_path));
        fs::create_dir(&dir)?;
        spread_subdirectories(&dir);
        crate::cleanup::register(&dir);
        crate::cleanup::register(&lock_path);
        Ok(Session {
            dir,
            lock_path,
            _lock: lock,
            _store_lock: store_lock,
        })
    }

    /// Where this process's temporary files go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
        crate::cleanup::unregister(&self.dir);
        crate::cleanup::unregister(&self.lock_path);
    }
}

/// The store's lock taken exclusively: no build runs on the store while it is held.
#[derive(Debug)]
pub(crate) struct Exclusive {
    _lock: File,
}

/// Takes the store at `root` exclusively; `wait`: until the running builds end, else `None`
/// when one runs.
pub(crate) fn exclusive(root: &Path, wait: bool) -> io::Result<Option<Exclusive>> {
    let file = open_lock(&root.join(STORE_LOCK))?;
    if flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        return Ok(Some(Exclusive { _lock: file }));
    }
    if !wait {
        return Ok(None);
    }
    if flock(&file, libc::LOCK_EX) {
        Ok(Some(Exclusive { _lock: file }))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What [`sweep`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swept {
    pub entries: u64,
}

/// Removes what dead processes left in the temporary area `tmp`.
pub fn sweep(tmp: &Path) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = fs::read_dir(tmp) else {
        return swept;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(LOCK_SUFFIX) {
            // A lock whose directory is gone (removed, or never made): the lock alone.
            if !tmp.join(stem).exists()
                && let Ok(lock) = File::open(entry.path())
                && flock(&lock, libc::LOCK_EX | libc::LOCK_NB)
            {
                let _ = fs::remove_file(entry.path());
            }
            continue;
        }
        let lock_path = tmp.join(format!("{name}{LOCK_SUFFIX}"));
        // The lock is held while its directory and file are removed, so no one takes it over.
        let (dead, _held) = match File::open(&lock_path) {
            Ok(lock) => (flock(&lock, libc::LOCK_EX | libc::LOCK_NB), Some(lock)),
            // No lock: left by a version that named its directory by pid alone, or by hand.
            Err(_) => (!legacy_owner_runs(&name), None),
        };
        if dead {
            tracing::info!(path = %entry.path().display(), "removing what a dead process left");
            if remove_tree(&entry.path()).is_ok() {
                swept.entries += 1;
            }
            let _ = fs::remove_file(&lock_path);
        }
    }
    swept
}

/// How many processes use the store at `root` now.
pub(crate) fn live_sessions(root: &Path) -> usize {
    let Ok(entries) = fs::read_dir(root.join(TMP)) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(LOCK_SUFFIX))
        .filter(|entry| {
            File::open(entry.path()).is_ok_and(|lock| !flock(&lock, libc::LOCK_SH | libc::LOCK_NB))
        })
        .count()
}

/// Directories named by a pid alone (before sessions had locks) stay while that pid runs.
fn legacy_owner_runs(name: &str) -> bool {
    name.parse::<u32>()
        .is_ok_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
}

/// Makes and locks `tmp/<pid>-<random>.lock`, making sure no sweeper removed it between the
/// two (then the lock would guard nothing).
fn own_lock(tmp: &Path) -> io::Result<(PathBuf, File)> {
    loop {
        let name = format!(
            "{}-{:08x}{LOCK_SUFFIX}",
            std::process::id(),
            fastrand::u32(..)
        );
        let path = tmp.join(name);
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            continue;
        }
        let still_there = fs::metadata(&path)
            .ok()
            .zip(file.metadata().ok())
            .is_some_and(|(at_path, held)| at_path.ino() == held.ino());
        if still_there {
            return Ok((path, file));
        }
    }
}

fn session_name(lock_path: &Path) -> String {
    let name = lock_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.trim_end_matches(LOCK_SUFFIX).to_owned()
}

/// Marks `dir` as the top of a directory hierarchy (`chattr +T`), where the file system has
/// the notion (ext4), so that its subdirectories, and the files made in them, are placed
/// across the disk's block groups instead of beside `dir`. Without it every RUN's upper
/// directory lands among the inodes the previous builds' snapshots freed, and ext4 without a
/// journal steps over each recently freed inode one by one when it makes a file: writing
/// 3,000 files took 2.4 s there instead of 0.2 s. Elsewhere (another file system, no right to
/// set the flag) nothing changes, so errors are ignored.
fn spread_subdirectories(dir: &Path) {
    /// `FS_TOPDIR_FL` of linux/fs.h.
    const TOPDIR: libc::c_int = 0x0002_0000;
    let Ok(file) = File::open(dir) else {
        return;
    };
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS and FS_IOC_SETFLAGS read and write one int through the pointer,
    // which outlives the calls; the descriptor is open.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0
            || flags & TOPDIR != 0
        {
            return;
        }
        flags |= TOPDIR;
        libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags);
    }
}

fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

fn flock(file: &File, operation: libc::c_int) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), operation) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_session_stays_and_a_dead_one_is_swept() {
        let root = tempfile::tempdir().unwrap();
        let live = Session::open(root.path()).unwrap();
        fs::write(live.dir().join("working"), "x").unwrap();
        // A dead process's directory: its lock file exists but nobody holds it.
        let tmp = root.path().join(TMP);
        fs::create_dir_all(tmp.join("1-dead/tree/ro")).unwrap();
        fs::write(tmp.join("1-dead.lock"), "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            tmp.join("1-dead/tree/ro"),
            fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        // Left by an older version: no lock, named after a pid that cannot run.
        fs::create_dir_all(tmp.join("rootfs-abc")).unwrap();
        assert_eq!(sweep(&tmp).entries, 2);
        assert!(!tmp.join("1-dead").exists() && !tmp.join("1-dead.lock").exists());
        assert!(!tmp.join("rootfs-abc").exists());
        assert!(
            live.dir().join("working").exists(),
            "a live session is kept"
        );
        assert_eq!(live_sessions(root.path()), 1);
        drop(live);
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "a session removes itself"
        );
    }

    #[test]
    fn an_exclusive_lock_waits_for_sessions() {
        let root = tempfile::tempdir().unwrap();
        let session = Session::open(root.path()).unwrap();
        assert!(exclusive(root.path(), false).unwrap().is_none());
        drop(session);
        assert!(exclusive(root.path(), false).unwrap().is_some());
    }
}
