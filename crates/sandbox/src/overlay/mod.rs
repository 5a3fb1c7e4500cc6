//! RUN over overlay snapshots instead of copies: the base image's tree, unpacked once in the
//! store, and every layer made since (each RUN's upper directory, each COPY applied into an
//! upper of its own) are the read-only lower directories of an overlay mount; a RUN writes to a
//! fresh upper directory, and its layer is made from that directory alone ([`upper`]). Nothing
//! is copied and the unchanged tree is never walked, so a RUN costs what its command costs.
//!
//! Run as root only, for now: in the sandbox's user namespace the layers are idmapped mounts
//! (the files keep the image's owners on disk, with no shift there and back). Without root,
//! where the kernel or the file system refuses the mount, or with
//! `DOCKLESS_RUN_SNAPSHOTS=copy`, the build uses the copy of [`crate::rootfs::cached`].

mod mount;
pub mod upper;

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dockless_oci::digest::Digest;
use dockless_oci::store::Store;

use crate::owners::IdRange;
use crate::rootfs::{Rootfs, RootfsError};

/// The environment variable that forces a way: `copy` or `overlay` (the default, `auto`,
/// takes overlay where it works).
pub(crate) const MODE_VAR: &str = "DOCKLESS_RUN_SNAPSHOTS";

/// The layers of a stage as overlay lower directories.
#[derive(Debug)]
pub struct Stack {
    /// Topmost first.
    pub lowers: Vec<PathBuf>,
    /// The sandbox's ID range the layers are idmapped to (`None`: no user namespace).
    pub idmap: Option<IdRange>,
    /// Snapshot directories this stack made, removed with it.
    owned: Vec<PathBuf>,
}

impl Stack {
    /// A stack over `base` (the store's unpacked tree, never written).
    pub fn new(base: PathBuf, idmap: Option<IdRange>) -> Self {
        Stack {
            lowers: vec![base],
            idmap,
            owned: Vec::new(),
        }
    }

    /// A fresh snapshot directory (`upper/` and `work/`) in this process's part of the store,
    /// its upper's root as the stack's root is.
    pub fn new_snapshot(&self, store: &Store) -> io::Result<PathBuf> {
        dockless_oci::cancel::check_io()?;
        let dir = tempfile::Builder::new()
            .prefix("snap-")
            .tempdir_in(store.session_dir())?
            .keep();
        dockless_oci::cleanup::register(&dir);
        fs::create_dir(dir.join("upper"))?;
        fs::create_dir(dir.join("work"))?;
        if let Some(top) = self.lowers.first() {
            let meta = fs::metadata(top)?;
            std::os::unix::fs::chown(dir.join("upper"), Some(meta.uid()), Some(meta.gid()))?;
            fs::set_permissions(dir.join("upper"), fs::Permissions::from_mode(meta.mode()))?;
        }
        Ok(dir)
    }

    /// Runs `f` on a thread that sees the stack at `merged` with `snapshot`'s upper on top,
    /// idmapped to the sandbox's range when `idmapped`.
    pub fn mounted<T: Send>(
        &self,
        snapshot: &Path,
        merged: &Path,
        idmapped: bool,
        f: impl FnOnce() -> T + Send,
    ) -> io::Result<T> {
        let names = tempfile::Builder::new()
            .prefix("layers-")
            .tempdir_in(snapshot.parent().unwrap_or(snapshot))?;
        let plan = mount::Plan {
            lowers: &self.lowers,
            snapshot,
            merged,
            idmap: self.idmap.filter(|_| idmapped),
            names: names.path(),
        };
        mount::with_overlay(&plan, f)
    }

    /// `snapshot`'s upper becomes the topmost lower.
    pub fn push(&mut self, snapshot: PathBuf) {
        let _ = crate::rootfs::remove_tree(&snapshot.join("work"));
        self.lowers.insert(0, snapshot.join("upper"));
        self.owned.push(snapshot);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // All at once, on every core: the snapshots of a stage hold every file its RUN steps
        // wrote, and removing them is on the way to the build's end.
        let _ = dockless_oci::cleanup::remove_trees(&self.owned);
        for dir in &self.owned {
            dockless_oci::cleanup::unregister(dir);
        }
    }
}

/// Applies a layer blob over `stack` (taken out of `rootfs`, and put back): through a mount,
/// into an upper directory of its own, which becomes the topmost lower (with whiteouts and
/// opaque directories as overlayfs makes them).
pub(crate) fn apply_layer(
    rootfs: &mut Rootfs,
    mut stack: Stack,
    store: &Store,
    digest: &Digest,
    media_type: &str,
) -> Result<(), RootfsError> {
    let merged = rootfs.path().to_owned();
    let snapshot = match stack.new_snapshot(store) {
        Ok(snapshot) => snapshot,
        Err(source) => {
            rootfs.overlay = Some(stack);
            return Err(RootfsError::Create {
                dir: merged,
                source,
            });
        }
    };
    let applied = stack.mounted(&snapshot, &merged, false, || {
        rootfs.apply_here(store, digest, media_type)
    });
    match applied {
        Ok(Ok(())) => stack.push(snapshot),
        _ => discard(&snapshot),
    }
    rootfs.overlay = Some(stack);
    applied.map_err(|source| RootfsError::Create {
        dir: merged,
        source,
    })?
}

/// Removes a snapshot that never joined a stack (its command failed).
pub fn discard(snapshot: &Path) {
    let _ = crate::rootfs::remove_tree(snapshot);
    dockless_oci::cleanup::unregister(snapshot);
}

/// How a stage's RUN steps get their file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshots {
    /// Overlay, idmapped to this range in a user namespace.
    Overlay { idmap: Option<IdRange> },
    /// A copy of the tree, walked before and after each command.
    Copy,
}

/// Decides how RUN steps get their file system, for a sandbox with a user namespace or not,
/// and says why at `-v`. Overlay is tried once per process with a real mount.
pub fn choose(store: &Store, userns: bool) -> Snapshots {
    match overlay_refused(store, userns) {
        None => {
            let idmap = userns.then(root_range).flatten();
            tracing::info!(
                idmapped = idmap.is_some(),
                "RUN steps use overlay snapshots"
            );
            Snapshots::Overlay { idmap }
        }
        Some(why) => {
            tracing::info!("RUN steps use a copy of the tree: {why}");
            Snapshots::Copy
        }
    }
}

fn root_range() -> Option<IdRange> {
    match crate::sandbox::mapping_for(true, 0, 0, None) {
        crate::sandbox::Mapping::Shifted(range) => Some(range),
        _ => None,
    }
}

/// Why overlay cannot be used here, or `None`.
fn overlay_refused(store: &Store, userns: bool) -> Option<String> {
    let asked = std::env::var(MODE_VAR).unwrap_or_default();
    match asked.as_str() {
        "copy" => return Some(format!("{MODE_VAR}=copy")),
        "" | "auto" | "overlay" => {}
        other => return Some(format!("{MODE_VAR}={other} is not copy, overlay or auto")),
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (overlay in a user namespace is not used yet)".to_owned());
    }
    let idmap = if userns {
        match root_range() {
            Some(range) => Some(range),
            None => return Some("root here is not the host's root (no ID range to map)".into()),
        }
    } else {
        None
    };
    static PROBED: Mutex<Vec<(Option<IdRange>, Option<String>)>> = Mutex::new(Vec::new());
    let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, why)) = probed.iter().find(|(key, _)| *key == idmap) {
        return why.clone();
    }
    let why = probe(store, idmap)
        .err()
        .map(|e| format!("the overlay mount failed: {e}"));
    probed.push((idmap, why.clone()));
    why
}

/// Mounts a small stack once, with a file in the lower and one written through the mount.
fn probe(store: &Store, idmap: Option<IdRange>) -> io::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("probe-")
        .tempdir_in(store.session_dir())?;
    let base = dir.path().join("base");
    fs::create_dir(&base)?;
    fs::write(base.join("lower"), "")?;
    let merged = dir.path().join("merged");
    fs::create_dir(&merged)?;
    let stack = Stack::new(base, idmap);
    let snapshot = stack.new_snapshot(store)?;
    let written = stack.mounted(&snapshot, &merged, idmap.is_some(), || {
        fs::metadata(merged.join("lower"))?;
        fs::write(merged.join("upper"), "")
    });
    let found = fs::symlink_metadata(snapshot.join("upper/upper"));
    discard(&snapshot);
    written??;
    found.map(|_| ())
}
