//! A stage's tree as it stands, to read from (`COPY --from` a built stage): over overlay
//! snapshots, the stack is mounted by a thread of its own in a mount namespace of its own (as
//! a RUN's is, see [`super::mount`]) and read through that thread's root in `/proc`, so that
//! no mount shows on the host and the mount goes with the thread, whatever happens; over a copy,
//! the working tree is read where it is.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use dockless_oci::store::Store;

use super::Stack;
use super::mount::{self, Plan};
use crate::rootfs::{Rootfs, RootfsError};

/// A stage's tree, readable at [`View::path`] while the view lives.
#[derive(Debug)]
pub struct View {
    path: PathBuf,
    holder: Option<Holder>,
}

/// The thread that holds an overlay mount in its namespace until told to let it go.
#[derive(Debug)]
struct Holder {
    release: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
    /// The empty upper directory the mount needs.
    snapshot: PathBuf,
    /// Where the layers are attached under short names.
    _names: tempfile::TempDir,
}

impl View {
    /// Where the tree is read: a path on the host, or beneath the holding thread's root.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Rootfs {
    /// The tree with every layer applied so far, to read from while the view lives.
    pub fn view(&self, store: &Store) -> Result<View, RootfsError> {
        let Some(stack) = &self.overlay else {
            return Ok(View {
                path: self.path().to_owned(),
                holder: None,
            });
        };
        stack
            .view(store, self.path())
            .map_err(|source| RootfsError::Create {
                dir: self.path().to_owned(),
                source,
            })
    }
}

impl Stack {
    /// Mounts the stack at `merged` (over an empty upper, never written) on a thread that
    /// holds it until the view is dropped.
    fn view(&self, store: &Store, merged: &Path) -> io::Result<View> {
        let snapshot = self.new_snapshot(store)?;
        let made = tempfile::Builder::new()
            .prefix("layers-")
            .tempdir_in(store.session_dir())
            .and_then(|names| {
                let held = hold(
                    self.lowers.clone(),
                    snapshot.clone(),
                    merged.to_owned(),
                    names.path().to_owned(),
                )?;
                Ok((names, held))
            });
        let (names, (tid, release, thread)) = match made {
            Ok(made) => made,
            Err(e) => {
                super::discard(&snapshot);
                return Err(e);
            }
        };
        // The thread's root, seen from this process, is in the thread's mount namespace.
        let relative = merged.strip_prefix("/").unwrap_or(merged);
        let path =
            Path::new(&format!("/proc/{}/task/{tid}/root", std::process::id())).join(relative);
        Ok(View {
            path,
            holder: Some(Holder {
                release,
                thread: Some(thread),
                snapshot,
                _names: names,
            }),
        })
    }
}

type Held = (libc::pid_t, mpsc::Sender<()>, JoinHandle<()>);

/// Starts the thread that mounts the overlay and waits; its thread ID once mounted.
fn hold(
    lowers: Vec<PathBuf>,
    snapshot: PathBuf,
    merged: PathBuf,
    names: PathBuf,
) -> io::Result<Held> {
    let (mounted_tx, mounted_rx) = mpsc::channel::<io::Result<libc::pid_t>>();
    let (release, released) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("stage-view".into())
        .spawn(move || {
            let plan = Plan {
                lowers: &lowers,
                snapshot: &snapshot,
                merged: &merged,
                idmap: None,
                names: &names,
            };
            let mounted = mount::mount_privately(&plan);
            let ok = mounted.is_ok();
            // SAFETY: gettid cannot fail.
            let _ = mounted_tx.send(mounted.map(|()| unsafe { libc::gettid() }));
            if ok {
                // Until the view is dropped (or its sender with it).
                let _ = released.recv();
                mount::unmount(&merged);
            }
        })?;
    match mounted_rx.recv() {
        Ok(Ok(tid)) => Ok((tid, release, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(io::Error::other(
                "the overlay thread stopped before mounting",
            ))
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(holder) = &mut self.holder {
            let _ = holder.release.send(());
            if let Some(thread) = holder.thread.take() {
                let _ = thread.join();
            }
            super::discard(&holder.snapshot);
        }
    }
}
