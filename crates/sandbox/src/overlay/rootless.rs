//! Overlay snapshots without root (a user namespace with subordinate IDs): the helper mounts
//! the overlay inside the sandbox's user namespace ([`crate::sandbox::OverlayRun`]).
//!
//! An unprivileged user may not make idmapped mounts of the store's file system, so the
//! lowers hold the owners the sandbox must see on disk: the base in its ID-range form, a copy
//! of the store's tree whose files the helper gave their owners in the user namespace, made
//! once per base and subordinate range and kept in the store beside the tree; and the uppers
//! of the stage's earlier RUNs, handed back to the invoking user after each command (so the
//! build can read them) and given their owners again for the next one. The build reads the
//! layers as the invoking user's: the store's own tree for the base, with the owners it
//! records, and each upper with the owners the helper recorded.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use dockless_oci::store::Store;

use super::Stack;
use crate::sandbox::{self, OverlayLower, OverlayRun, Spec, SubIds, Task};

/// Owners in the image by path, for the files that are not root's.
pub type OwnerMap = HashMap<String, (u64, u64)>;

/// What a stack needs without root, beside its lowers.
#[derive(Debug)]
pub struct Rootless {
    pub subids: SubIds,
    /// The base as the store keeps it (the invoking user's), for reading; the lowest lower is
    /// its ID-range form.
    pub base_view: PathBuf,
    pub base_owners: OwnerMap,
    /// Per earlier RUN's upper, topmost first: the file its owners are handed over in, and
    /// those owners.
    pub uppers: Vec<(PathBuf, OwnerMap)>,
}

impl Stack {
    /// The layers as the build reads them (topmost first): the base is the store's tree.
    pub fn view(&self) -> Vec<PathBuf> {
        let mut view = self.lowers.clone();
        if let (Some(rootless), Some(last)) = (&self.rootless, view.last_mut()) {
            *last = rootless.base_view.clone();
        }
        view
    }

    /// The owners recorded per layer of [`Self::view`], when the stack is rootless.
    pub fn recorded(&self) -> Vec<&OwnerMap> {
        let Some(rootless) = &self.rootless else {
            return Vec::new();
        };
        let mut maps: Vec<&OwnerMap> = rootless.uppers.iter().map(|(_, map)| map).collect();
        maps.push(&rootless.base_owners);
        maps
    }

    /// What the helper needs to mount the stack with `snapshot`'s upper on top.
    pub fn overlay_run(&self, snapshot: &Path) -> OverlayRun {
        let files: Vec<Option<PathBuf>> = match &self.rootless {
            Some(rootless) => rootless
                .uppers
                .iter()
                .map(|(f, _)| Some(f.clone()))
                .collect(),
            None => Vec::new(),
        };
        OverlayRun {
            lowers: self
                .lowers
                .iter()
                .enumerate()
                .map(|(i, dir)| OverlayLower {
                    dir: dir.clone(),
                    owners: files.get(i).cloned().flatten(),
                })
                .collect(),
            snapshot: snapshot.to_owned(),
            upper_owners: owners_file(snapshot),
        }
    }

    /// `snapshot`'s upper, its owners `recorded`, becomes the topmost lower.
    pub fn push_rootless(&mut self, snapshot: PathBuf, recorded: OwnerMap) {
        let _ = fs::remove_dir(sandbox::names_dir(&snapshot));
        if let Some(rootless) = self.rootless.as_mut() {
            rootless
                .uppers
                .insert(0, (owners_file(&snapshot), recorded));
        }
        self.push(snapshot);
    }

    /// The text of the file at `rel` as the merged stack shows it (no link followed).
    pub fn read_merged(&self, rel: &str) -> Option<String> {
        let view = self.view();
        let (_, index) = super::upper::lookup_layer(&view, rel).ok()??;
        crate::rootfs::read_regular(&view[index].join(rel)).ok()
    }

    pub fn is_rootless(&self) -> bool {
        self.rootless.is_some()
    }
}

/// Where the helper records the owners of a snapshot's upper.
pub fn owners_file(snapshot: &Path) -> PathBuf {
    snapshot.join("owners.json")
}

/// The owners the helper recorded for `snapshot`'s upper.
pub fn read_owners(snapshot: &Path) -> io::Result<OwnerMap> {
    Ok(crate::owners::read(&owners_file(snapshot))?
        .into_iter()
        .map(|(path, uid, gid)| (path, (uid, gid)))
        .collect())
}

/// The ID-range form of the store's unpacked `entry` for `subids`, made now unless an earlier
/// build made it.
pub(crate) fn id_range_form(store: &Store, entry: &Path, subids: SubIds) -> io::Result<PathBuf> {
    let form = entry.join(format!(
        "userns-{}-{}-{}-{}",
        subids.uid_start, subids.uid_count, subids.gid_start, subids.gid_count
    ));
    if form.join("tree").is_dir() {
        return Ok(form.join("tree"));
    }
    dockless_oci::cleanup::set_namespace_remover(remove_in_userns);
    // Made aside and renamed into place: a form in the store is always whole. Not registered
    // for cleanup: the invoking user cannot remove files the subordinate IDs own.
    let staging = tempfile::Builder::new()
        .prefix("userns-form-")
        .tempdir_in(store.session_dir())?
        .keep();
    crate::rootfs::cached::copy_tree(&entry.join("tree"), &staging, false)?;
    let code = helper(Spec {
        owners: Some(entry.join("owners.json")),
        task: Task::GiveOwners,
        ..spec(&staging, subids)
    })?;
    if code != 0 {
        return Err(io::Error::other(format!(
            "the sandbox helper could not give the base its owners (exit {code})"
        )));
    }
    fs::create_dir_all(&form)?;
    if let Err(e) = fs::rename(&staging, form.join("tree")) {
        tracing::debug!("another build made {} meanwhile: {e}", form.display());
    }
    Ok(form.join("tree"))
}

/// Removes `path` from inside the user namespace that maps the invoking user's subordinate
/// IDs, whose root may remove the files they own (an ID-range form, an upper the helper could
/// not hand back). Set as [`dockless_oci::cleanup::remove_tree`]'s way for what the invoking
/// user may not remove alone.
pub fn remove_in_userns(path: &Path) -> io::Result<()> {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let Some(subids) = crate::sandbox::subordinate_ids(uid, gid).filter(|_| uid != 0) else {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} cannot be removed by this user", path.display()),
        ));
    };
    let code = helper(Spec {
        task: Task::Remove,
        ..spec(path, subids)
    })?;
    if code != 0 || fs::symlink_metadata(path).is_ok() {
        return Err(io::Error::other(format!(
            "the sandbox helper could not remove {} (exit {code})",
            path.display()
        )));
    }
    Ok(())
}

/// Mounts a small stack once in the sandbox's user namespace, writing one file through it.
pub(crate) fn probe(store: &Store, subids: SubIds) -> io::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("probe-")
        .tempdir_in(store.session_dir())?;
    let base = dir.path().join("base");
    let merged = dir.path().join("merged");
    let snapshot = dir.path().join("snapshot");
    for made in [&base, &merged, &snapshot] {
        fs::create_dir(made)?;
    }
    for part in ["upper", "work", "names"] {
        fs::create_dir(snapshot.join(part))?;
    }
    fs::write(base.join("lower"), "")?;
    let stack = Stack::new(base, None);
    let code = helper(Spec {
        overlay: Some(stack.overlay_run(&snapshot)),
        task: Task::Probe,
        ..spec(&merged, subids)
    })?;
    if code != 0 {
        return Err(io::Error::other(format!("the probe exited with {code}")));
    }
    fs::symlink_metadata(snapshot.join("upper/probe")).map(|_| ())
}

fn helper(spec: Spec) -> io::Result<i32> {
    sandbox::run(spec).map_err(io::Error::other)
}

/// A specification for the helper's own work on `rootfs`, as the invoking user with `subids`.
fn spec(rootfs: &Path, subids: SubIds) -> Spec {
    // SAFETY: getuid and getgid cannot fail.
    let (host_uid, host_gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Spec {
        rootfs: rootfs.to_owned(),
        argv: Vec::new(),
        scripts: Vec::new(),
        env: Vec::new(),
        workdir: "/".to_owned(),
        uid: 0,
        gid: 0,
        userns: true,
        host_uid,
        host_gid,
        subids: Some(subids),
        owners: None,
        network: Default::default(),
        mounts: Vec::new(),
        secret_env: Vec::new(),
        status: PathBuf::new(),
        store_ids: None,
        overlay: None,
        task: Task::Run,
        layer: None,
    }
}

/// Applies a layer blob over `stack` without root: the helper mounts the stack with a fresh
/// upper in the user namespace and applies the layer through it; that upper, its owners as
/// the helper recorded them, becomes the topmost lower.
pub(crate) fn apply_layer(
    merged: &Path,
    stack: &mut Stack,
    store: &Store,
    digest: &dockless_oci::digest::Digest,
    media_type: &str,
) -> io::Result<()> {
    let Some(subids) = stack.rootless.as_ref().map(|r| r.subids) else {
        return Err(io::Error::other("not a rootless stack"));
    };
    let snapshot = stack.new_snapshot(store)?;
    let applied = fs::create_dir(sandbox::names_dir(&snapshot)).and_then(|()| {
        helper(Spec {
            overlay: Some(stack.overlay_run(&snapshot)),
            task: Task::ApplyLayer,
            layer: Some(sandbox::LayerBlob {
                path: store.blob_path(digest),
                digest: digest.clone(),
                media_type: media_type.to_owned(),
            }),
            ..spec(merged, subids)
        })
    });
    let recorded = match applied {
        Ok(0) => read_owners(&snapshot),
        Ok(code) => Err(io::Error::other(format!(
            "the sandbox helper could not apply the layer (exit {code})"
        ))),
        Err(e) => Err(e),
    };
    match recorded {
        Ok(recorded) => {
            stack.push_rootless(snapshot, recorded);
            Ok(())
        }
        Err(e) => {
            super::discard(&snapshot);
            Err(e)
        }
    }
}
