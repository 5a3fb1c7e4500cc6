//! A RUN step over overlay snapshots: the command runs with a fresh upper directory over the
//! stage's layers, and its layer is that directory (see [`dockless_sandbox::overlay`]).

use dockless_layer::{OnLive, WrittenLayer};
use dockless_oci::store::Store;
use dockless_sandbox::RunError;
use dockless_sandbox::mounts::MountPlan;
use dockless_sandbox::overlay;
use dockless_sandbox::rootfs::{Rootfs, RootfsError};
use dockless_sandbox::sandbox::{self, InlineScript, Spec};

use super::{RunStep, complete_env, exec_ids, users_of};

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
        // What the thread that sees the overlay needs of the step (the shared cache stays on
        // this thread).
        let step = InOverlay {
            text: self.text,
            argv: self.argv,
            scripts: self.scripts,
            env: self.env,
            user: self.user,
            workdir: self.workdir,
            network: self.network,
            output: self.output.clone(),
        };
        let ran = stack
            .mounted(&snapshot, rootfs.path(), userns, || {
                step.run_in(rootfs, userns, stack.idmap.is_some(), mounts)
            })
            .map_err(fs_error)
            .and_then(|ran| ran);
        let written = ran.and_then(|()| {
            let upper = snapshot.join("upper");
            let entries = overlay::upper::diff(&upper, &stack.lowers).map_err(RunError::Diff)?;
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

/// What the thread that sees the overlay needs of a [`RunStep`].
struct InOverlay<'a> {
    text: &'a str,
    argv: &'a [String],
    scripts: &'a [InlineScript],
    env: &'a [(String, String)],
    user: &'a str,
    workdir: &'a str,
    network: sandbox::Network,
    output: Option<dockless_sandbox::OutputSink>,
}

impl InOverlay<'_> {
    /// In the thread that sees the overlay: the command, as the step's user.
    fn run_in(
        &self,
        rootfs: &Rootfs,
        userns: bool,
        idmapped: bool,
        mounts: MountPlan,
    ) -> Result<(), RunError> {
        let users = users_of(rootfs);
        let (uid, gid) = exec_ids(self.user, &users)?;
        let env = complete_env(self.env, self.user, &users);
        // SAFETY: getuid and getgid cannot fail.
        let (host_uid, host_gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let code = sandbox::run_with_output(
            Spec {
                rootfs: rootfs.path().to_owned(),
                argv: self.argv.to_vec(),
                scripts: self.scripts.to_vec(),
                env,
                workdir: self.workdir.to_owned(),
                uid,
                gid,
                userns,
                host_uid,
                host_gid,
                subids: None,
                owners: None,
                network: self.network,
                mounts: mounts.mounts,
                secret_env: mounts.secret_env,
                status: Default::default(),
                idmapped: userns && idmapped,
            },
            self.output.clone(),
        )?;
        if code != 0 {
            return Err(RunError::Failed {
                code,
                command: self.text.to_owned(),
            });
        }
        Ok(())
    }
}
