//! A RUN step over overlay snapshots without root: the sandbox's helper mounts the stage's
//! layers and a fresh upper directory in its user namespace (see
//! [`dockless_sandbox::overlay::rootless`]); the layer is that upper, read with the owners the
//! helper recorded for it.

use dockless_layer::{OnLive, WrittenLayer};
use dockless_oci::image::users::UserDatabase;
use dockless_oci::store::Store;
use dockless_sandbox::RunError;
use dockless_sandbox::mounts::MountPlan;
use dockless_sandbox::overlay::{self, Stack, rootless, upper};
use dockless_sandbox::rootfs::{Rootfs, RootfsError};
use dockless_sandbox::sandbox;

use super::RunStep;
use super::command::OwnerMapping;

impl RunStep<'_> {
    /// Runs the command over `rootfs`'s overlay stack, mounted by the helper, and writes the
    /// layer of its upper directory, which then joins the stack.
    pub(super) fn execute_over_rootless_overlay(
        &self,
        store: &Store,
        rootfs: &mut Rootfs,
        mounts: MountPlan,
        on_live: Option<OnLive<'_>>,
    ) -> Result<WrittenLayer, RunError> {
        // Refuses what cannot be had (`--isolation root` without root) before anything runs.
        let userns = sandbox::choose(self.isolation)?;
        let Some(stack) = rootfs.overlay.as_ref() else {
            unreachable!("called only over an overlay stack")
        };
        let Some(subids) = stack.rootless.as_ref().map(|r| r.subids) else {
            unreachable!("called only over a rootless stack")
        };
        let fs_error = |source| {
            RunError::Rootfs(RootfsError::Create {
                dir: rootfs.path().to_owned(),
                source,
            })
        };
        let snapshot = stack.new_snapshot(store).map_err(fs_error)?;
        let made = std::fs::create_dir(sandbox::names_dir(&snapshot)).map_err(fs_error);
        let command = self.command();
        let ran = made
            .and_then(|()| command.identity_with(&users_in(stack)))
            .and_then(|who| {
                let mapping = OwnerMapping {
                    userns,
                    subids: Some(subids),
                    owners: None,
                    store_ids: None,
                    overlay: Some(stack.overlay_run(&snapshot)),
                };
                command.run(rootfs, who, mapping, mounts)
            });
        let written = ran.and_then(|()| {
            let recorded = rootless::read_owners(&snapshot).map_err(RunError::Diff)?;
            let entries = self.upper_entries(stack, &snapshot, &recorded)?;
            let written = dockless_layer::write_layer(store, &entries, self.settings, on_live)
                .map_err(RunError::Layer)?;
            tracing::info!(entries = entries.len(), digest = %written.digest, "RUN layer (overlay, rootless): {}", self.text);
            Ok((written, recorded))
        });
        match written {
            Ok((written, recorded)) => {
                if let Some(stack) = rootfs.overlay.as_mut() {
                    stack.push_rootless(snapshot, recorded);
                }
                rootfs.applied += 1;
                Ok(written)
            }
            Err(e) => {
                overlay::discard(&snapshot);
                Err(e)
            }
        }
    }

    /// The entries of the layer in `snapshot`'s upper, its owners `recorded`.
    fn upper_entries(
        &self,
        stack: &Stack,
        snapshot: &std::path::Path,
        recorded: &rootless::OwnerMap,
    ) -> Result<Vec<dockless_layer::Entry>, RunError> {
        // SAFETY: getuid and getgid cannot fail.
        let host = unsafe { (libc::getuid(), libc::getgid()) };
        let lowers = stack.recorded();
        upper::diff_with(
            &snapshot.join("upper"),
            &stack.view(),
            None,
            Some(upper::RecordedOwners {
                host,
                upper: recorded,
                lowers: &lowers,
            }),
        )
        .map_err(RunError::Diff)
    }
}

/// The user and group databases the merged stack shows (earlier RUN steps may have added
/// users).
fn users_in(stack: &Stack) -> UserDatabase {
    UserDatabase {
        passwd: stack.read_merged("etc/passwd"),
        group: stack.read_merged("etc/group"),
    }
}
