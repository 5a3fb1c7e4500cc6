//! A stage's tree as it stands, to read from (`COPY --from` a built stage). Over a copy, the
//! working tree is read where it is. Over overlay snapshots, the stack is mounted as a RUN's is
//! (by a thread of its own, in a mount namespace of its own, see [`super::mount`]), and that
//! thread opens the mount's root before it ends: the namespace goes with the thread, so the
//! mount never shows on the host, but the open descriptor keeps the (now detached) mount
//! alive, and the tree is read beneath it through `/proc/self/fd`. Closing the descriptor lets
//! the mount go, whatever happened in between.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use dockless_oci::store::Store;

use crate::rootfs::{Rootfs, RootfsError};

/// A stage's tree, readable at [`View::path`] while the view lives.
#[derive(Debug)]
pub struct View {
    path: PathBuf,
    /// The mount's root, open, and the snapshot (an empty upper) the mount was made with.
    mounted: Option<(File, PathBuf)>,
}

impl View {
    /// Where the tree is read: a path on the host, or beneath the open mount's root.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Rootfs {
    /// Whether [`Self::view`] can show the tree: not over a stack only the sandbox's helper can
    /// mount (without root, in its user namespace), whose tree the build cannot see merged.
    pub fn viewable(&self) -> bool {
        self.overlay
            .as_ref()
            .is_none_or(|stack| !stack.is_rootless())
    }

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
            });
        };
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
            }),
            Err(e) => {
                super::discard(&snapshot);
                Err(error(e))
            }
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some((root, snapshot)) = self.mounted.take() {
            // The mount goes with its last reference; its upper directory after it.
            drop(root);
            super::discard(&snapshot);
        }
    }
}
