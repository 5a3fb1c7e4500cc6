//! A stage's tree as it stands, to read from (`COPY --from` a built stage). Over a copy, the
//! working tree is read where it is. Over overlay snapshots as root, the stack is mounted as a
//! RUN's is (by a thread of its own, in a mount namespace of its own, see [`super::mount`]),
//! and that thread opens the mount's root before it ends: the namespace goes with the thread,
//! so the mount never shows on the host, but the open descriptor keeps the (now detached) mount
//! alive, and the tree is read beneath it through `/proc/self/fd`. Closing the descriptor lets
//! the mount go, whatever happened in between. Without root, only the helper can mount the
//! stack, in its user namespace: the build merges the layers itself into a tree of hard links
//! ([`super::farm`]), with the owners they recorded.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use dockless_oci::store::Store;

use super::rootless::OwnerMap;
use crate::rootfs::{Rootfs, RootfsError};

/// A stage's tree, readable at [`View::path`] while the view lives.
#[derive(Debug)]
pub struct View {
    path: PathBuf,
    /// The mount's root, open, and the snapshot (an empty upper) the mount was made with.
    mounted: Option<(File, PathBuf)>,
    /// A rootless stack's merged tree, removed with the view, and the owners its layers
    /// recorded for it.
    merged: Option<(PathBuf, OwnerMap)>,
}

impl View {
    /// Where the tree is read: a path on the host, or beneath the open mount's root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The owners in the image of the tree's files, when they are not on disk: a rootless
    /// stack's, merged (`None` otherwise; see [`Rootfs::owners`]).
    pub fn recorded(&self) -> Option<&OwnerMap> {
        self.merged.as_ref().map(|(_, owners)| owners)
    }
}

impl Rootfs {
    /// The tree with every layer applied so far, to read from while the view lives.
    pub fn view(&self, store: &Store) -> Result<View, RootfsError> {
        let merged = self.path();
        let error = |source| RootfsError::Create {
            dir: merged.to_owned(),
            source,
        };
        let Some(stack) = &self.overlay else {
            return Ok(View {
                path: merged.to_owned(),
                mounted: None,
                merged: None,
            });
        };
        if stack.is_rootless() {
            return merged_without_root(stack, store).map_err(error);
        }
        let snapshot = stack.new_snapshot(store).map_err(error)?;
        let opened = stack
            .mounted(&snapshot, merged, || {
                File::options()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                    .open(merged)
            })
            .and_then(|opened| opened);
        match opened {
            Ok(root) => Ok(View {
                path: PathBuf::from(format!("/proc/self/fd/{}", root.as_raw_fd())),
                mounted: Some((root, snapshot)),
                merged: None,
            }),
            Err(e) => {
                super::discard(&snapshot);
                Err(error(e))
            }
        }
    }
}

/// The rootless `stack`'s layers merged into a tree of hard links in this process's part of
/// the store.
fn merged_without_root(stack: &super::Stack, store: &Store) -> std::io::Result<View> {
    let dir = tempfile::Builder::new()
        .prefix("merged-")
        .tempdir_in(store.session_dir())?
        .keep();
    dockless_oci::cleanup::register(&dir);
    let started = std::time::Instant::now();
    match super::farm::link_merged(&stack.view(), &stack.recorded(), &dir) {
        Ok(owners) => {
            tracing::info!(elapsed = ?started.elapsed(), "the stage's layers merged into a tree of links, to read from");
            Ok(View {
                path: dir.clone(),
                mounted: None,
                merged: Some((dir, owners)),
            })
        }
        Err(e) => {
            remove_merged(&dir);
            Err(e)
        }
    }
}

fn remove_merged(dir: &Path) {
    let _ = dockless_oci::cleanup::remove_tree(dir);
    dockless_oci::cleanup::unregister(dir);
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some((dir, _)) = self.merged.take() {
            remove_merged(&dir);
        }
        if let Some((root, snapshot)) = self.mounted.take() {
            // The mount goes with its last reference; its upper directory after it.
            drop(root);
            super::discard(&snapshot);
        }
    }
}
