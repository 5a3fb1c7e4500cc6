//! A RUN step over overlay snapshots: the command runs with a fresh upper directory over the
//! stage's layers, and its layer is that directory (see [`dockless_sandbox::overlay`]).

use dockless_layer::{OnLive, WrittenLayer};
use dockless_oci::store::Store;
use dockless_sandbox::RunError;
use dockless_sandbox::mounts::MountPlan;
use dockless_sandbox::overlay;
use dockless_sandbox::rootfs::{Rootfs, RootfsError};
use dockless_sandbox::sandbox;

use super::RunStep;
use super::command::OwnerMapping;

impl RunStep<'_> {
    /// Runs the command over `rootfs`'s overlay stack and writes the layer of its upper
    /// directory, which then joins the stack.
    pub(super) fn execute_over_overlay(
        &self,
        store: &Store,
        rootfs: &mut Rootfs,
        mounts: MountPlan,
        on_live: Option<OnLive<'_>>,
    ) -> Result<WrittenLayer, RunError> {
        let userns = sandbox::choose(self.isolation)?;
        let Some(stack) = rootfs.overlay.as_ref() else {
            unreachable!("called only over an overlay stack")
        };
        let fs_error = |source| {
            RunError::Rootfs(RootfsError::Create {
                dir: rootfs.path().to_owned(),
                source,
            })
        };
        let snapshot = stack.new_snapshot(store).map_err(fs_error)?;
        let command = self.command();
        let ran = stack
            .mounted(&snapshot, rootfs.path(), || {
                let mapping = OwnerMapping {
                    userns,
                    subids: None,
                    owners: None,
                    store_ids: stack.ids,
                    overlay: None,
                };
                command.run(rootfs, command.identity(rootfs)?, mapping, mounts)
            })
            .map_err(fs_error)
            .and_then(|ran| ran);
        let written = ran.and_then(|()| {
            let upper = snapshot.join("upper");
            let entries = overlay::upper::diff(&upper, &stack.lowers, stack.ids).map_err(RunError::Diff)?;
            let written = dockless_layer::write_layer(store, &entries, self.settings, on_live)
                .map_err(RunError::Layer)?;
            tracing::info!(entries = entries.len(), digest = %written.digest, "RUN layer (overlay): {}", self.text);
            Ok(written)
        });
        match written {
            Ok(written) => {
                if let Some(stack) = rootfs.overlay.as_mut() {
                    stack.push(snapshot);
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
}
