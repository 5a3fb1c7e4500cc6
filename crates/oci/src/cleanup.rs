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
    let below = empty_dir(path, &meta)?;
    for dir in below {
        remove_own_tree(&dir)?;
    }
    fs::remove_dir(path)
}

/// Removes several trees (files or directories) at once, a directory level at a time with
/// every core unlinking the files of a level's directories: a RUN that wrote thousands of
/// files leaves that many to unlink when its build ends. The first error is returned, after
/// everything else that could be removed was.
pub fn remove_trees(paths: &[PathBuf]) -> io::Result<()> {
    let mut first_error = None;
    let mut level: Vec<PathBuf> = Vec::new();
    for path in paths {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => level.push(path.clone()),
            Ok(_) => keep_first(&mut first_error, fs::remove_file(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => keep_first(&mut first_error, Err(e)),
        }
    }
    // Every directory met, shallowest level first: removed deepest first once they are empty.
    let mut dirs: Vec<PathBuf> = Vec::new();
    while !level.is_empty() {
        let emptied = crate::parallel::map_in_order(&level, crate::parallel::cores(), |dir| {
            fs::symlink_metadata(dir).and_then(|meta| empty_dir(dir, &meta))
        })
        .ok_or_else(|| io::Error::other("a remover thread stopped unexpectedly"))?;
        let mut next = Vec::new();
        for below in emptied {
            match below {
                Ok(below) => next.extend(below),
                Err(e) => keep_first(&mut first_error, Err(e)),
            }
        }
        dirs.append(&mut level);
        level = next;
    }
    for dir in dirs.iter().rev() {
        keep_first(&mut first_error, fs::remove_dir(dir));
    }
    first_error.map_or(Ok(()), Err)
}

/// Makes `dir` writable and unlinks everything in it but its subdirectories, which it returns. Each
/// entry's type comes from the directory itself: no `stat` per file.
fn empty_dir(dir: &Path, meta: &fs::Metadata) -> io::Result<Vec<PathBuf>> {
    if meta.permissions().mode() & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let mut below = Vec::new();
    for child in fs::read_dir(dir)? {
        let child = child?;
        if child.file_type()?.is_dir() {
            below.push(child.path());
        } else {
            fs::remove_file(child.path())?;
        }
    }
    Ok(below)
}

fn keep_first(first: &mut Option<io::Error>, result: io::Result<()>) {
    if let Err(e) = result
        && first.is_none()
    {
        *first = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn trees_are_removed_whole_read_only_directories_too_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("kept"), "k").unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for i in 0..20 {
            let deep = a.join(format!("p{i}/sub"));
            fs::create_dir_all(&deep).unwrap();
            fs::write(deep.join("f"), "f").unwrap();
        }
        symlink(&outside, a.join("p0/link")).unwrap();
        fs::set_permissions(a.join("p3"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::write(&b, "a file").unwrap();
        let missing = dir.path().join("missing");
        remove_trees(&[a.clone(), b.clone(), missing]).unwrap();
        assert!(!a.exists() && !b.exists());
        assert!(
            outside.join("kept").exists(),
            "a link is removed, not followed"
        );
    }
}
