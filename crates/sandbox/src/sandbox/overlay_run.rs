//! In the helper, RUN over overlay snapshots without root: only inside the sandbox's user
//! namespace may an unprivileged user mount an overlay (with `userxattr`, Linux 5.11 and
//! later), so the helper mounts it there, at the tree's path, in a mount namespace of its own.
//!
//! The lowers hold real owners: the base in the sandbox's ID-range form (made once per base,
//! [`Task::GiveOwners`]) and the uppers of earlier RUNs, whose owners were handed back to the
//! invoking user after their command and are given again here (a walk of what the stage's
//! RUNs made, never of the base). After the command the new upper's owners are recorded and
//! the files handed back, as [`crate::owners::harvest`] does for a copied tree, so that the
//! build can read the upper, make the layer from it and remove it.
//!
//! Steps fail with text: in the helper, an error only becomes the status file's message.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Spec, in_tree, mounts, step_mounts};
use crate::overlay::mount;

/// What the helper does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Runs the command.
    #[default]
    Run,
    /// Only gives the files of the tree the owners listed in [`Spec::owners`], in the user
    /// namespace, and leaves them so: the ID-range form of a base, made once.
    GiveOwners,
    /// Mounts the overlay, writes one file through it and stops: whether overlay works here.
    Probe,
    /// Removes the tree, which the invoking user may not (its subordinate IDs own files).
    Remove,
    /// Applies [`Spec::layer`] through the overlay (a COPY's layer between RUNs), so that
    /// overlayfs makes the upper: parents copied up, whiteouts, opaque directories.
    ApplyLayer,
}

/// A layer blob to apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerBlob {
    pub path: PathBuf,
    pub digest: dockless_oci::digest::Digest,
    pub media_type: String,
}

/// A RUN over overlay snapshots, mounted by the helper at [`Spec::rootfs`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlayRun {
    /// Topmost first.
    pub lowers: Vec<OverlayLower>,
    /// Holds `upper/`, `work/` and an empty `names/` (the layers' short names).
    pub snapshot: PathBuf,
    /// Where the owners of the upper's files that are not root are recorded after the command.
    pub upper_owners: PathBuf,
}

/// One lower directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverlayLower {
    pub dir: PathBuf,
    /// Owners to give its files for the command and take back after (an earlier RUN's upper);
    /// `None`: the files already have them (the base in the ID-range form).
    pub owners: Option<PathBuf>,
}

/// Mounts the overlay of `spec` and runs `command` over it; the owners of the upper (and of
/// the lowers given theirs) are handed back after it.
pub(super) fn run(
    spec: &Spec,
    overlay: &OverlayRun,
    command: impl FnOnce(&Spec) -> i32,
) -> Result<i32, String> {
    let mut given = Vec::new();
    for lower in &overlay.lowers {
        if let Some(owners) = &lower.owners {
            let kept = crate::owners::apply(&lower.dir, owners)
                .map_err(|e| format!("cannot give an earlier RUN's files their owners: {e}"))?;
            given.push((lower, owners, kept));
        }
    }
    let ran = mount_at_root(spec, overlay).and_then(|()| over_merged(spec, command));
    let _ = mount::umount(&spec.rootfs);
    let (code, recorded) = match ran {
        Ok((code, recorded)) => (Ok(code), recorded),
        Err(e) => (Err(e), Vec::new()),
    };
    let upper = overlay.snapshot.join("upper");
    // A layer's owners were recorded as it was applied: kept for the files still root's.
    let mut handed_back = crate::owners::harvest(&upper, &overlay.upper_owners, recorded);
    for (lower, owners, kept) in given {
        handed_back = handed_back.and_then(|()| crate::owners::harvest(&lower.dir, owners, kept));
    }
    handed_back
        .map_err(|e| format!("cannot record the owners of the files the command made: {e}"))?;
    code
}

/// A mount namespace of the helper's own, the overlay mounted at the tree's path, and the
/// helper's working directory in it.
fn mount_at_root(spec: &Spec, overlay: &OverlayRun) -> Result<(), String> {
    let lowers: Vec<PathBuf> = overlay.lowers.iter().map(|l| l.dir.clone()).collect();
    let plan = mount::Plan {
        lowers: &lowers,
        snapshot: &overlay.snapshot,
        merged: &spec.rootfs,
        names: &overlay.snapshot.join("names"),
        userxattr: true,
    };
    mount::private_namespace()
        .and_then(|()| mount::mount_overlay(&plan))
        .map_err(|e| format!("cannot mount the overlay in the user namespace: {e}"))?;
    // The working directory was the directory below the mount.
    std::env::set_current_dir(&spec.rootfs)
        .map_err(|e| format!("cannot enter {}: {e}", spec.rootfs.display()))
}

/// The mount points the sandbox needs, made through the overlay (so they are never in a
/// lower) and removed after `command`; or the task's other work. Returns the exit code and
/// the owners recorded but not given (a layer's).
fn over_merged(
    spec: &Spec,
    command: impl FnOnce(&Spec) -> i32,
) -> Result<(i32, crate::owners::OwnerList), String> {
    match (spec.task, &spec.layer) {
        (Task::Probe, _) => {
            return std::fs::write(spec.rootfs.join("probe"), "")
                .map(|()| (0, Vec::new()))
                .map_err(|e| format!("cannot write through the overlay: {e}"));
        }
        (Task::ApplyLayer, Some(layer)) => return apply_layer(&spec.rootfs, layer),
        _ => {}
    }
    let fail = |e: std::io::Error| format!("cannot make the sandbox's mount points: {e}");
    let mut points = in_tree::MountPoints::open(&spec.rootfs, None).map_err(fail)?;
    let mut spec = spec.clone();
    let made = mounts::prepare(&mut points)
        .and_then(|()| step_mounts::mount_points(&spec.rootfs, &mut spec.mounts, &mut points));
    if let Err(e) = made {
        points.remove();
        return Err(fail(e));
    }
    let code = command(&spec);
    points.remove();
    Ok((code, Vec::new()))
}

/// Applies `layer` to the tree at `merged`, its owners recorded (IDs a layer names may lie
/// outside the subordinate range).
fn apply_layer(
    merged: &Path,
    layer: &LayerBlob,
) -> Result<(i32, crate::owners::OwnerList), String> {
    let mut tree = crate::rootfs::Rootfs::kept_at(merged.to_owned());
    tree.apply_blob(&layer.path, &layer.digest, &layer.media_type)
        .map_err(|e| e.to_string())?;
    let recorded = tree
        .owners
        .drain()
        .map(|(path, (uid, gid))| (path, uid, gid))
        .collect();
    Ok((0, recorded))
}

/// Whether the helper, not the build, makes the mount points in the tree.
pub(super) fn in_helper(spec: &Spec) -> bool {
    spec.overlay.is_some() || spec.task != Task::Run
}

/// The short names' directory of a snapshot.
pub fn names_dir(snapshot: &Path) -> PathBuf {
    snapshot.join("names")
}
