//! RUN over overlay snapshots instead of copies: the base image's tree, unpacked once in the
//! store, and every layer made since (each RUN's upper directory, each COPY applied into an
//! upper of its own) are the read-only lower directories of an overlay mount; a RUN writes to a
//! fresh upper directory, and its layer is made from that directory alone ([`upper`]). Nothing
//! is copied and the unchanged tree is never walked, so a RUN costs what its command costs.
//!
//! Run as root, the build mounts the overlay: in a user namespace every layer keeps its owners
//! in the sandbox's range on disk (see [`crate::owners`]), so the sandbox sees the image's
//! owners with no idmapped mount and no walk, and no file is setuid to an ID that owns
//! something on the host; the layer's entries get the image's IDs back ([`upper::diff`]).
//! Without root, with subordinate IDs, the helper mounts it in the user namespace
//! ([`rootless`]). With a single-ID user namespace, where the kernel or the file system
//! refuses the mount, or with `DOCKLESS_RUN_SNAPSHOTS=copy`, the build uses the copy of
//! [`crate::rootfs::cached`].

pub(crate) mod farm;
pub(crate) mod mount;
pub mod rootless;
pub mod upper;
pub mod view;

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
    /// The host IDs the layers keep their owners in (see [`crate::sandbox::store_ids`];
    /// `None`: the image's own).
    pub ids: Option<IdRange>,
    /// Snapshot directories this stack made, removed with it.
    owned: Vec<PathBuf>,
    /// Without root: what the helper's mount and the build's reading need.
    pub rootless: Option<rootless::Rootless>,
}

impl Stack {
    /// A stack over `base` (the store's unpacked tree, never written).
    pub fn new(base: PathBuf, ids: Option<IdRange>) -> Self {
        Stack {
            lowers: vec![base],
            ids,
            owned: Vec::new(),
            rootless: None,
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

    /// Runs `f` on a thread that sees the stack at `merged` with `snapshot`'s upper on top.
    pub fn mounted<T: Send>(
        &self,
        snapshot: &Path,
        merged: &Path,
        f: impl FnOnce() -> T + Send,
    ) -> io::Result<T> {
        let names = tempfile::Builder::new()
            .prefix("layers-")
            .tempdir_in(snapshot.parent().unwrap_or(snapshot))?;
        let plan = mount::Plan {
            lowers: &self.lowers,
            snapshot,
            merged,
            names: names.path(),
            userxattr: false,
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
    if stack.is_rootless() {
        let applied = rootless::apply_layer(&merged, &mut stack, store, digest, media_type);
        rootfs.overlay = Some(stack);
        rootfs.applied += usize::from(applied.is_ok());
        return applied.map_err(|source| RootfsError::Create {
            dir: merged,
            source,
        });
    }
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
    let applied = stack.mounted(&snapshot, &merged, || {
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
    /// Overlay mounted by the build (as root).
    Overlay,
    /// Overlay mounted by the helper in the user namespace that maps these subordinate IDs.
    Rootless(crate::sandbox::SubIds),
    /// A copy of the tree, walked before and after each command.
    Copy,
}

/// Decides how RUN steps get their file system, for a sandbox with a user namespace or not,
/// and says why at `-v`. Overlay is tried once per process with a real mount.
pub fn choose(store: &Store, userns: bool) -> Snapshots {
    match decide(store, userns) {
        Ok(Snapshots::Rootless(subids)) => {
            tracing::info!(
                "RUN steps use overlay snapshots, mounted in the user namespace (userxattr)"
            );
            Snapshots::Rootless(subids)
        }
        Ok(chosen) => {
            tracing::info!("RUN steps use overlay snapshots");
            chosen
        }
        Err(why) => {
            tracing::info!("RUN steps use a copy of the tree: {why}");
            Snapshots::Copy
        }
    }
}

/// The way to take, or why overlay cannot be used here.
fn decide(store: &Store, userns: bool) -> Result<Snapshots, String> {
    let asked = std::env::var(MODE_VAR).unwrap_or_default();
    match asked.as_str() {
        "copy" => return Err(format!("{MODE_VAR}=copy")),
        "" | "auto" | "overlay" => {}
        other => return Err(format!("{MODE_VAR}={other} is not copy, overlay or auto")),
    }
    // SAFETY: geteuid, getuid and getgid cannot fail.
    let (euid, uid, gid) = unsafe { (libc::geteuid(), libc::getuid(), libc::getgid()) };
    if euid != 0 {
        let Some(subids) = crate::sandbox::subordinate_ids(uid, gid) else {
            return Err(
                "no subordinate IDs in /etc/subuid and /etc/subgid (or no newuidmap): \
                 only root is mapped, and the owners kept aside would be lost where overlay \
                 copies a file up"
                    .to_owned(),
            );
        };
        return probed(Some(subids), || rootless::probe(store, subids))
            .map(|()| Snapshots::Rootless(subids));
    }
    if userns && crate::sandbox::store_ids(true).is_none() {
        return Err("root here is not the host's root (no ID range to map)".into());
    }
    probed(None, || probe(store)).map(|()| Snapshots::Overlay)
}

/// What a probe for this key (the subordinate IDs of a mount in the user namespace, or none
/// for root's) gave, made now the first time.
fn probed(
    subids: Option<crate::sandbox::SubIds>,
    probe: impl FnOnce() -> io::Result<()>,
) -> Result<(), String> {
    static PROBED: Mutex<Vec<(Option<crate::sandbox::SubIds>, Option<String>)>> =
        Mutex::new(Vec::new());
    let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, why)) = probed.iter().find(|(k, _)| *k == subids) {
        return why.clone().map_or(Ok(()), Err);
    }
    let why = probe().err().map(|e| {
        let place = if subids.is_some() {
            " in the user namespace"
        } else {
            ""
        };
        format!("the overlay mount{place} failed: {e}")
    });
    probed.push((subids, why.clone()));
    why.map_or(Ok(()), Err)
}

/// Mounts a small stack once, with a file in the lower and one written through the mount.
fn probe(store: &Store) -> io::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("probe-")
        .tempdir_in(store.session_dir())?;
    let base = dir.path().join("base");
    fs::create_dir(&base)?;
    fs::write(base.join("lower"), "")?;
    let merged = dir.path().join("merged");
    fs::create_dir(&merged)?;
    let stack = Stack::new(base, None);
    let snapshot = stack.new_snapshot(store)?;
    let written = stack.mounted(&snapshot, &merged, || {
        fs::metadata(merged.join("lower"))?;
        fs::write(merged.join("upper"), "")
    });
    let found = fs::symlink_metadata(snapshot.join("upper/upper"));
    discard(&snapshot);
    written??;
    found.map(|_| ())
}
