//! The command of a RUN step in the sandbox, as the step's user: what both ways of giving it a
//! file system (overlay snapshots, a copy of the tree) share.

use std::path::PathBuf;

use dockless_oci::image::users::UserDatabase;
use dockless_sandbox::RunError;
use dockless_sandbox::mounts::MountPlan;
use dockless_sandbox::rootfs::Rootfs;
use dockless_sandbox::sandbox::{self, InlineScript, Spec, SubIds};

use super::{RunStep, complete_env, exec_ids, users_of};

/// What running the command needs of a [`RunStep`], and nothing more. It can be sent to the
/// thread that sees an overlay, where the step (with its shared cache) cannot go.
pub(super) struct StepCommand<'a> {
    text: &'a str,
    argv: &'a [String],
    scripts: &'a [InlineScript],
    env: &'a [(String, String)],
    user: &'a str,
    workdir: &'a str,
    network: sandbox::Network,
    output: Option<dockless_sandbox::OutputSink>,
}

/// The IDs the command runs as and its whole environment, read from the tree.
pub(super) struct Identity {
    uid: u32,
    gid: u32,
    env: Vec<(String, String)>,
}

/// How the sandbox sees the tree's owners: where the two ways differ.
pub(super) struct OwnerMapping {
    pub userns: bool,
    /// The subordinate ID range, for the copy that shifts owners there and back.
    pub subids: Option<SubIds>,
    /// The file that hands owners to the sandbox and back (the copy, with `subids`).
    pub owners: Option<PathBuf>,
    /// The host IDs the tree's and the cache mounts' owners are kept in on disk.
    pub store_ids: Option<sandbox::IdRange>,
    /// Without root, over overlay snapshots the helper mounts.
    pub overlay: Option<sandbox::OverlayRun>,
}

impl<'a> RunStep<'a> {
    pub(super) fn command(&self) -> StepCommand<'a> {
        StepCommand {
            text: self.text,
            argv: self.argv,
            scripts: self.scripts,
            env: self.env,
            user: self.user,
            workdir: self.workdir,
            network: self.network,
            output: self.output.clone(),
        }
    }
}

impl StepCommand<'_> {
    /// The step's USER looked up in the tree's user database as it is now (earlier RUN steps
    /// may have added users), and the environment a container runtime would give.
    pub(super) fn identity(&self, rootfs: &Rootfs) -> Result<Identity, RunError> {
        self.identity_with(&users_of(rootfs))
    }

    /// [`Self::identity`] from the user database `users`.
    pub(super) fn identity_with(&self, users: &UserDatabase) -> Result<Identity, RunError> {
        let (uid, gid) = exec_ids(self.user, users)?;
        let env = complete_env(self.env, self.user, users);
        Ok(Identity { uid, gid, env })
    }

    /// Runs the command over `rootfs` as `who`; a non-zero exit is [`RunError::Failed`].
    pub(super) fn run(
        &self,
        rootfs: &Rootfs,
        who: Identity,
        mapping: OwnerMapping,
        mounts: MountPlan,
    ) -> Result<(), RunError> {
        // SAFETY: getuid and getgid cannot fail.
        let (host_uid, host_gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let code = sandbox::run_with_output(
            Spec {
                rootfs: rootfs.path().to_owned(),
                argv: self.argv.to_vec(),
                scripts: self.scripts.to_vec(),
                env: who.env,
                workdir: self.workdir.to_owned(),
                uid: who.uid,
                gid: who.gid,
                userns: mapping.userns,
                host_uid,
                host_gid,
                subids: mapping.subids,
                owners: mapping.owners,
                network: self.network,
                mounts: mounts.mounts,
                secret_env: mounts.secret_env,
                status: Default::default(),
                store_ids: mapping.store_ids,
                overlay: mapping.overlay,
                task: Default::default(),
                layer: None,
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
