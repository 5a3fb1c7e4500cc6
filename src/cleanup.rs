//! Temporary paths to remove if the process is interrupted (Ctrl-C, SIGTERM).
//!
//! Destructors do not run when a signal ends the process, so everything written to a
//! temporary place is either inside a path registered here or inside the store's per-process
//! temporary directory (which is registered too), and the signal handler removes them all.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// Removes every registered path (called from the signal handler).
pub fn remove_all() {
    let paths = std::mem::take(&mut *PATHS.lock().unwrap_or_else(|e| e.into_inner()));
    for path in paths {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}
