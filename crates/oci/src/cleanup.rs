//! Temporary paths to remove if the process ends before their owners drop them.
//!
//! An interrupted build unwinds and drops its temporary files itself (see [`crate::cancel`]);
//! one that does not within the grace period is ended, and destructors do not run then, so
//! everything written to a temporary place is either inside a path registered here or inside
//! the store's per-process temporary directory (which is registered too), and the exit path
//! removes them all. What a SIGKILL leaves is swept by the next process ([`crate::session`]).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

static PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remember `path` for removal on interruption.
pub fn register(path: &Path) {
    PATHS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.to_owned());
}

/// `path` no longer needs removing (it was renamed into place, or removed).
pub fn unregister(path: &Path) {
    PATHS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| p != path);
}

/// Removes every registered path (called on the way out).
pub fn remove_all() {
    let paths = std::mem::take(&mut *PATHS.lock().unwrap_or_else(|e| e.into_inner()));
    for path in paths {
        let _ = remove_tree(&path);
    }
}

/// What removes a tree the invoking user may not (files a user namespace's subordinate IDs
/// own, as an unprivileged build's overlay lowers have them): set by the binary, whose
/// sandbox helper can remove them from inside that namespace.
static REMOVER: OnceLock<fn(&Path) -> io::Result<()>> = OnceLock::new();

/// Sets what removes the trees this user may not remove alone (see [`remove_tree`]).
pub fn set_namespace_remover(remover: fn(&Path) -> io::Result<()>) {
    let _ = REMOVER.set(remover);
}

/// Removes a file or a whole tree, making directories writable first when they are not (an
/// unprivileged user must be able to clean up read-only directories it owns); what a
/// directory it does not own keeps, the remover set by [`set_namespace_remover`] removes.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match remove_own_tree(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => match REMOVER.get() {
            Some(remover) => remover(path),
            None => Err(e),
        },
        removed => removed,
    }
}

fn remove_own_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    }
    for child in fs::read_dir(path)? {
        remove_own_tree(&child?.path())?;
    }
    fs::remove_dir(path)
}
