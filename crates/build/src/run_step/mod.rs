//! One RUN step, start to end: the one door the builder uses. An identical step that ran before
//! over the same layers gives its layer from the RUN cache; otherwise the command runs in the
//! sandbox over the stage's file system and the layer is what it changed.

mod cache;
mod command;
mod overlay;
mod rootless;
mod users;

use std::collections::HashMap;

use cache::{self as run_cache, RunKey};
use command::OwnerMapping;
use dockless_layer::{LayerSettings, OnLive, WrittenLayer};
use dockless_oci::digest::Digest;
use dockless_oci::image::config::DEFAULT_PATH;
use dockless_oci::image::users::UserDatabase;
use dockless_oci::store::Store;
use dockless_sandbox::RunError;
use dockless_sandbox::diff::{self, Owners, Snapshot};
use dockless_sandbox::mounts::MountPlan;
use dockless_sandbox::rootfs::Rootfs;
use dockless_sandbox::sandbox::{self, InlineScript, Isolation, SubIds};
pub(crate) use users::users_of;

pub use cache::KeyedMount;

/// Everything that decides one RUN step, as the stage has it at that instruction.
#[derive(Debug, Clone)]
pub(crate) struct RunStep<'a> {
    /// The instruction as written, for messages.
    pub text: &'a str,
    /// The command, the shell form already wrapped in the stage's SHELL.
    pub argv: &'a [String],
    /// Scripts the command runs from `/dev/pipes` (a RUN heredoc with a `#!` line).
    pub scripts: &'a [InlineScript],
    /// What the Dockerfile gives the command: ENV, and the build arguments in use.
    pub env: &'a [(String, String)],
    /// USER as written (name or number, with an optional group); empty for root.
    pub user: &'a str,
    /// Absolute, inside the image.
    pub workdir: &'a str,
    /// `os/architecture` of the image.
    pub platform: &'a str,
    /// diff_ids of every layer below, oldest first.
    pub parents: &'a [Digest],
    pub isolation: Isolation,
    /// RUN --network, or the build's --network.
    pub network: sandbox::Network,
    /// What the mounts contribute to the RUN cache key.
    pub mount_key: &'a [KeyedMount<'a>],
    pub settings: LayerSettings,
    /// Layers made on other machines (a shared cache), asked after the local RUN cache.
    pub shared: Option<&'a dyn SharedRunLayers>,
    /// `--no-cache`: run the command even when a cache has its layer (the new layer then
    /// replaces the cached one).
    pub reuse: bool,
    /// Where the command's output goes line by line; `None`: straight to stderr.
    pub output: Option<dockless_sandbox::OutputSink>,
}

/// Layers made elsewhere that a RUN step may reuse instead of running: by RUN cache key, with
/// where the layer's blob is.
pub(crate) trait SharedRunLayers {
    fn find(&self, key: &str) -> Option<dockless_shared_cache::SharedHit>;
}

impl std::fmt::Debug for dyn SharedRunLayers + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedRunLayers")
    }
}

/// Why a step gave no layer: the file system it was to run over could not be had, or the step
/// itself failed.
#[derive(Debug)]
pub enum StepError<E> {
    Rootfs(E),
    Run(RunError),
}

/// The layer of a RUN step, whether a RUN cache gave it, and the key it is cached under.
#[derive(Debug, Clone)]
pub(crate) struct StepLayer {
    pub layer: WrittenLayer,
    pub cached: bool,
    /// Where the blob is when a shared cache gave the layer (the store does not hold it yet).
    pub source: Option<dockless_registry::remote::LayerSource>,
    pub key: String,
}

impl RunStep<'_> {
    /// The RUN cache key: the layers below, the command and everything it is given.
    fn key(&self) -> String {
        RunKey {
            parents: self.parents,
            argv: self.argv,
            env: self.env,
            user: self.user,
            workdir: self.workdir,
            platform: self.platform,
            settings: self.settings,
            network: self.network,
            mounts: self.mount_key,
        }
        .hash()
    }

    /// The step's layer: from the RUN cache when it has one, else made by running the command
    /// over the file system `prepare` materialises, with the mounts it makes ready (both asked
    /// for only then). The file system then holds the new layer too.
    pub fn layer<'r, E>(
        &self,
        store: &Store,
        prepare: impl FnOnce() -> Result<(&'r mut Rootfs, MountPlan), E>,
        on_live: Option<OnLive<'_>>,
    ) -> Result<StepLayer, StepError<E>> {
        let key = self.key();
        let cached = || {
            let shared = || self.shared.and_then(|shared| shared.find(&key));
            run_cache::lookup(store, &key)
                .map(|layer| (layer, None))
                .or_else(|| shared().map(|hit| (hit.layer, Some(hit.source))))
        };
        if let Some((layer, source)) = self.reuse.then(cached).flatten() {
            return Ok(StepLayer {
                layer,
                cached: true,
                source,
                key,
            });
        }
        let (rootfs, mounts) = prepare().map_err(StepError::Rootfs)?;
        let layer = self
            .execute(store, rootfs, mounts, on_live)
            .map_err(StepError::Run)?;
        run_cache::record(store, &key, &layer);
        Ok(StepLayer {
            layer,
            cached: false,
            source: None,
            key,
        })
    }

    /// Runs the command over `rootfs` and writes the layer of its changes.
    fn execute(
        &self,
        store: &Store,
        rootfs: &mut Rootfs,
        mounts: MountPlan,
        on_live: Option<OnLive<'_>>,
    ) -> Result<WrittenLayer, RunError> {
        match &rootfs.overlay {
            Some(stack) if stack.is_rootless() => {
                return self.execute_over_rootless_overlay(store, rootfs, mounts, on_live);
            }
            Some(_) => return self.execute_over_overlay(store, rootfs, mounts, on_live),
            None => {}
        }
        let userns = sandbox::choose(self.isolation)?;
        let command = self.command();
        let who = command.identity(rootfs)?;
        let before = Snapshot::take(rootfs.path()).map_err(RunError::Diff)?;
        // SAFETY: getuid and getgid cannot fail.
        let (host_uid, host_gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let subids = if userns && !rootfs.privileged {
            sandbox::subordinate_ids(host_uid, host_gid)
        } else {
            None
        };
        let handed_over = OwnersHandover::write(rootfs, subids)?;
        let mapping = OwnerMapping {
            userns,
            subids,
            owners: handed_over.as_ref().map(|h| h.file.path().to_owned()),
            store_ids: rootfs.ids,
            overlay: None,
        };
        command.run(rootfs, who, mapping, mounts)?;
        let after = Snapshot::take(rootfs.path()).map_err(RunError::Diff)?;
        let owners_after = match &handed_over {
            Some(handover) => handover.read_back()?,
            None => owners_left_in_place(rootfs, &before, &after),
        };
        let owners = if let Some(range) = rootfs.ids {
            Owners::InRange(range)
        } else if rootfs.privileged {
            Owners::AsOnDisk
        } else {
            Owners::Mapped {
                host_uid,
                host_gid,
                before: &rootfs.owners,
                after: &owners_after,
            }
        };
        let entries = diff::diff(rootfs.path(), &before, &after, owners);
        let written = dockless_layer::write_layer(store, &entries, self.settings, on_live)
            .map_err(RunError::Layer)?;
        rootfs.owners = owners_after;
        // The tree already holds this layer.
        rootfs.applied += 1;
        tracing::info!(entries = entries.len(), digest = %written.digest, "RUN layer: {}", self.text);
        Ok(written)
    }
}

/// The command's whole environment: what the Dockerfile gives it (`env`), and what a container
/// runtime adds when the Dockerfile does not set it (runc's `HOME` from /etc/passwd for
/// `user`, BuildKit's `HOSTNAME`, the default `PATH`). Nothing of the invoking process's.
fn complete_env(
    env: &[(String, String)],
    user: &str,
    users: &UserDatabase,
) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    let has = |env: &[(String, String)], name: &str| env.iter().any(|(k, _)| k == name);
    if !has(&env, "PATH") {
        let (key, value) = DEFAULT_PATH.split_once('=').unwrap_or(("PATH", ""));
        env.push((key.to_owned(), value.to_owned()));
    }
    if !has(&env, "HOSTNAME") {
        env.push(("HOSTNAME".to_owned(), sandbox::HOSTNAME.to_owned()));
    }
    if !has(&env, "HOME") {
        env.push(("HOME".to_owned(), users.home(user)));
    }
    env
}

/// With subordinate IDs the sandbox gives the files their recorded owners before the command
/// and hands back the owners they have afterwards, through this file.
struct OwnersHandover {
    file: tempfile::NamedTempFile,
}

impl OwnersHandover {
    fn write(rootfs: &Rootfs, subids: Option<SubIds>) -> Result<Option<Self>, RunError> {
        if subids.is_none() {
            return Ok(None);
        }
        // Beside the tree, in this process's part of the store: swept if the process dies.
        let beside = rootfs.path().parent().unwrap_or(rootfs.path());
        let file = tempfile::NamedTempFile::new_in(beside).map_err(RunError::Diff)?;
        let mut list: Vec<(String, u64, u64)> = rootfs
            .owners
            .iter()
            .map(|(path, (uid, gid))| (path.clone(), *uid, *gid))
            .collect();
        list.sort();
        dockless_sandbox::owners::write(file.path(), &list).map_err(RunError::Diff)?;
        Ok(Some(OwnersHandover { file }))
    }

    fn read_back(&self) -> Result<HashMap<String, (u64, u64)>, RunError> {
        Ok(dockless_sandbox::owners::read(self.file.path())
            .map_err(RunError::Diff)?
            .into_iter()
            .map(|(path, uid, gid)| (path, (uid, gid)))
            .collect())
    }
}

/// Only root exists in the sandbox: the recorded owners hold for the files the command left
/// in place, and whatever it made is root's.
fn owners_left_in_place(
    rootfs: &Rootfs,
    before: &Snapshot,
    after: &Snapshot,
) -> HashMap<String, (u64, u64)> {
    rootfs
        .owners
        .iter()
        .filter(|(path, _)| {
            matches!((before.nodes.get(*path), after.nodes.get(*path)), (Some(b), Some(a)) if b.same_file(a))
        })
        .map(|(path, owner)| (path.clone(), *owner))
        .collect()
}

/// The IDs the command runs as: the step's `USER` looked up in the tree's user database
/// (root when none is set).
fn exec_ids(user: &str, users: &UserDatabase) -> Result<(u32, u32), RunError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (uid, gid) = users.exec_user(user).map_err(|e| RunError::User {
        user: user.to_owned(),
        message: e.to_string(),
    })?;
    Ok((uid as u32, gid as u32))
}
