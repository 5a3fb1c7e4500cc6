//! Instructions that put files into a stage: COPY and ADD (from the context, another stage or
//! an image) and WORKDIR (the directories it creates).

use std::os::unix::fs::PermissionsExt;

use super::dispatch::{Failure, StageExecutor};
use super::{Executor, Invalid, Stage, StepError, Unsupported, find_stage};
use crate::BuiltLayer;
use crate::base;
use crate::copy::{self, CopyRequest, SourceOwners};
use dockless_context::Context;
use dockless_context::ignore::IgnoreRules;
use dockless_dockerfile::{Add, Copy, Heredoc};
use dockless_layer::{Entry, EntryKind};
use dockless_oci::digest::Digest;
use dockless_registry::remote::LayerSource;
use dockless_sandbox::RunError;
use dockless_sandbox::overlay::view::View;
use dockless_sandbox::rootfs::Rootfs;

/// What one COPY or ADD asks for, whatever its source.
struct Transfer<'a> {
    sources: &'a [String],
    dest: &'a str,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    add: bool,
    /// ADD `--unpack`, when given.
    unpack: Option<bool>,
    checksum: Option<Digest>,
    exclude: &'a [String],
    parents: bool,
    source_owners: SourceOwners<'a>,
}

impl<'a> Transfer<'a> {
    fn copy(c: &'a Copy) -> Self {
        Transfer {
            sources: &c.sources,
            dest: &c.dest,
            chown: c.chown.as_deref(),
            chmod: c.chmod.as_deref(),
            add: false,
            unpack: None,
            checksum: None,
            exclude: &c.exclude,
            parents: c.parents,
            source_owners: SourceOwners::Root,
        }
    }
}

impl StageExecutor<'_, '_> {
    /// COPY (on `line`): from the context, or with `--from` from a stage or an image.
    pub(super) fn copy(&mut self, line: usize, c: &Copy) -> Result<(), Failure> {
        if !c.inline.is_empty() {
            return self.inline(line, &c.inline, Transfer::copy(c));
        }
        match &c.from {
            Some(from) => self.copy_from(line, from, c),
            None => self.transfer(line, self.build.context, Transfer::copy(c), None),
        }
    }

    /// ADD (on `line`): from the context (local archives are unpacked) or a URL.
    pub(super) fn add(&mut self, line: usize, a: &Add) -> Result<(), Failure> {
        let checksum = match a.checksum.as_deref() {
            Some(text) => Some(text.parse::<Digest>()?),
            None => None,
        };
        let transfer = Transfer {
            sources: &a.sources,
            dest: &a.dest,
            chown: a.chown.as_deref(),
            chmod: a.chmod.as_deref(),
            add: true,
            unpack: a.unpack,
            checksum,
            exclude: &a.exclude,
            parents: false,
            source_owners: SourceOwners::Root,
        };
        if !a.inline.is_empty() {
            return self.inline(line, &a.inline, transfer);
        }
        self.transfer(line, self.build.context, transfer, None)
    }

    /// COPY or ADD of heredocs (`COPY <<EOF /etc/app.conf`): each body becomes a file named
    /// after its heredoc, mode 0644 unless `--chmod`, copied as a file from the context would
    /// be (never unpacked, as BuildKit does).
    fn inline(
        &mut self,
        line: usize,
        heredocs: &[Heredoc],
        transfer: Transfer<'_>,
    ) -> Result<(), Failure> {
        let keyword = if transfer.add { "ADD" } else { "COPY" };
        if !transfer.sources.is_empty() {
            return Err(Unsupported(format!(
                "{keyword} of heredocs together with other sources is not supported yet; \
                 split it into one {keyword} for the heredocs and one for the other sources"
            ))
            .into());
        }
        let staging = self.build.store.temp_dir()?;
        let mut names = Vec::new();
        for heredoc in heredocs {
            if heredoc.name.contains('/') || matches!(heredoc.name.as_str(), "." | "..") {
                return Err(Invalid(format!(
                    "the heredoc <<{} cannot name a file: use a plain name such as <<EOF",
                    heredoc.name
                ))
                .into());
            }
            let path = staging.path().join(&heredoc.name);
            std::fs::write(&path, &heredoc.body).and_then(|()| {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            })?;
            names.push(heredoc.name.clone());
        }
        // Read as a tree: a heredoc named `.dockerignore` is a file like the others.
        let context = Context::tree(staging.path())?;
        let transfer = Transfer {
            sources: &names,
            add: false,
            ..transfer
        };
        self.transfer(line, &context, transfer, Some(staging))
    }

    /// WORKDIR (on `line`): sets the directory, and writes a layer for the directories it
    /// creates.
    pub(super) fn workdir(&mut self, line: usize, dir: &str) -> Result<(), Failure> {
        let path = copy::absolute_dest(&self.stage.workdir(), dir);
        self.stage.config.config.working_dir = Some(format!("/{path}"));
        // The directories' owner, the stage's USER, is looked up in the image's databases,
        // which cannot be assumed.
        if self
            .stage
            .config
            .config
            .user
            .as_ref()
            .is_some_and(|u| !u.is_empty())
        {
            self.know_filesystem()?;
        } else {
            self.know_or_assume()?;
        }
        let stage = &self.stage;
        // Found through the image's symlinks, as BuildKit's mkdir finds them.
        let resolved = stage.filesystem.resolve(&path)?;
        let missing = stage.filesystem.missing_dirs(&resolved);
        if !missing.is_empty() {
            // Made with the stage's USER as owner, as BuildKit's mkdir does; a name the
            // image's databases do not list (or an image without them) gives root, as
            // BuildKit's readUser does.
            let owner = match stage.config.config.user.clone().filter(|u| !u.is_empty()) {
                Some(user) => stage.filesystem.users.resolve(&user).unwrap_or((0, 0)),
                None => (0, 0),
            };
            let entries = directory_entries(missing, owner);
            self.add_layer(line, entries, Vec::new(), Default::default());
        }
        Ok(())
    }

    /// Plans the layer of one COPY or ADD (on `line`) whose sources are read from `context`;
    /// files staged in `staged` live as long as the layer.
    fn transfer(
        &mut self,
        line: usize,
        context: &Context,
        transfer: Transfer<'_>,
        staged: Option<tempfile::TempDir>,
    ) -> Result<(), Failure> {
        self.know_or_assume()?;
        let owner = match transfer.chown {
            Some(spec) => Some(self.owner(spec, "--chown=")?),
            None => None,
        };
        let chmod = match transfer.chmod {
            Some(text) => Some(parse_chmod(text)?),
            None => None,
        };
        let exclude = if transfer.exclude.is_empty() {
            None
        } else {
            let rules = IgnoreRules::parse(&transfer.exclude.join("\n")).map_err(|e| {
                Invalid(format!(
                    "--exclude={}: {e}",
                    transfer.exclude.join(" --exclude=")
                ))
            })?;
            Some(rules)
        };
        let workdir = self.stage.workdir();
        let request = CopyRequest {
            sources: transfer.sources,
            dest: transfer.dest,
            workdir: &workdir,
            owner,
            chmod,
            add: transfer.add,
            unpack: transfer.unpack,
            checksum: transfer.checksum,
            exclude: exclude.as_ref(),
            parents: transfer.parents,
            source_owners: transfer.source_owners,
            // What was walked ahead is of the build context, not of a stage or staged files.
            prefetched: std::ptr::eq(context, self.build.context).then_some(&self.build.prefetched),
        };
        let build = self.build;
        let plan = copy::plan_copy(
            context,
            &self.stage.filesystem,
            build.store,
            &request,
            Some(copy::Downloads {
                runtime: build.remote.runtime(),
                policy: build.remote.http_policy(),
            }),
        )?;
        let staging = plan.staging.into_iter().chain(staged).collect();
        self.add_layer(line, plan.entries, staging, plan.stamps);
        Ok(())
    }

    /// [`Self::know_filesystem`], unless the stage is planned on assumed answers while its
    /// base is listed (see [`Executor::list_ahead`]): paths looked up are then checked later.
    fn know_or_assume(&mut self) -> Result<(), Failure> {
        if self.stage.filesystem.is_assumed() {
            return Ok(());
        }
        self.know_filesystem()
    }

    /// Reads the stage's file system from its layers' listings if it is not known yet (a
    /// registry base, whose listing is read when an instruction first needs it).
    fn know_filesystem(&mut self) -> Result<(), Failure> {
        self.build
            .settle_listing(&mut self.stage)
            .map_err(super::StepError::from)?;
        let (build, stage) = (self.build, &mut self.stage);
        if stage.filesystem.complete {
            for layer in std::mem::take(&mut stage.unlisted) {
                if !build.listing_known(&layer.digest) {
                    build.ensure_blob(&layer)?;
                }
                let listed = [(layer.digest.clone(), layer.media_type.clone())];
                stage.filesystem.apply_layers(build.store, &listed)?;
            }
            return Ok(());
        }
        if let Some(failure) = stage.listing_failure.take() {
            return Err(failure.into());
        }
        // Every layer is in stage.layers: only COPY, ADD and WORKDIR leave layers pending,
        // and they make the file system known first.
        build.flush(stage)?;
        // Layers are listed from a listing when this machine or a shared cache has one, else
        // from their blobs (the base's come from its registry as needed).
        for layer in &stage.layers {
            if !build.listing_known(&layer.digest)
                && matches!(layer.source, Some(LayerSource::SharedCache { .. }))
            {
                build.ensure_blob(layer)?;
            }
        }
        stage.unlisted.clear();
        let layers = stage.chain(false);
        stage.filesystem = base::load_filesystem(
            build.store,
            build.remote,
            stage.remote_base.as_ref(),
            &layers,
        )?;
        Ok(())
    }

    /// `USER[:GROUP]` (of `--chown=`, or the stage's USER, as `what` says in a message):
    /// numbers as they are, names from the image's databases as they are at this instruction
    /// (a registry base's tree is read the first time a name needs it).
    fn owner(&mut self, spec: &str, what: &str) -> Result<(u64, u64), Failure> {
        if spec.split(':').any(|part| part.parse::<u64>().is_err()) {
            self.know_filesystem()?;
        }
        let owner = self.stage.filesystem.users.resolve(spec);
        Ok(owner.map_err(|e| Invalid(format!("{what}{spec}: {e}")))?)
    }

    /// `COPY --from=<stage name|stage index|image>` (on `line`): the sources are read from
    /// that file system.
    fn copy_from(&mut self, line: usize, from: &str, c: &Copy) -> Result<(), Failure> {
        let snapshot = find_stage(self.done, from)
            .filter(|_| self.build.named_context(from).is_none())
            .and_then(|stage| Some((stage, stage.rootfs.as_ref()?)));
        let tree = match snapshot
            .map(|(stage, rootfs)| (rootfs, stage_view(stage, rootfs, self.build.store)))
        {
            // The stage's tree as the build holds it: nothing unpacked again.
            Some((rootfs, Ok(view))) => {
                tracing::info!("COPY --from={from} reads the stage's tree as the build holds it");
                Tree::Snapshot(view, rootfs)
            }
            Some((_, Err(e))) => {
                tracing::warn!(
                    "COPY --from={from}: the stage's tree cannot be read as the build holds it ({e}); its layers are unpacked instead"
                );
                Tree::Unpacked(Box::new(self.build.tree_of(from, self.done)?))
            }
            None => {
                tracing::info!("COPY --from={from} reads a tree unpacked from its layers");
                Tree::Unpacked(Box::new(self.build.tree_of(from, self.done)?))
            }
        };
        // A stage's or an image's file system, not a build context: no `.dockerignore`, and
        // its links lead where they lead inside it.
        let context = Context::tree(tree.path())?;
        let transfer = Transfer {
            source_owners: SourceOwners::Tree {
                root: tree.path(),
                recorded: tree.recorded(),
                ids: tree.rootfs().ids,
            },
            ..Transfer::copy(c)
        };
        self.transfer(line, &context, transfer, None)?;
        // The layer reads its files from the tree: write it while that can still be read.
        Ok(self.build.flush(&mut self.stage)?)
    }
}

/// The tree of `stage`, a finished stage, to read from: made once per build (a rootless
/// stack's merged tree is a link per file) and shared by every `COPY --from` of it.
fn stage_view<'s>(
    stage: &'s Stage,
    rootfs: &Rootfs,
    store: &dockless_oci::store::Store,
) -> Result<&'s View, dockless_sandbox::rootfs::RootfsError> {
    if let Some(view) = stage.view.get() {
        return Ok(view);
    }
    let view = rootfs.view(store)?;
    Ok(stage.view.get_or_init(|| view))
}

impl Executor<'_> {
    /// Whether the tree of the layer `digest` is known without its blob: its listing is cached
    /// here, or a shared cache has one (which is then cached here).
    pub(super) fn listing_known(&self, digest: &Digest) -> bool {
        crate::filesystem::listing_is_cached(self.store, digest)
            || self
                .shared
                .listing(self.store, digest)
                .is_some_and(|bytes| crate::filesystem::adopt_listing(self.store, digest, &bytes))
    }

    /// The file system of the stage or image `from` names (`COPY --from`, `RUN --mount=…,from=`),
    /// unpacked from its layers.
    pub(super) fn tree_of(&self, from: &str, done: &[Stage]) -> Result<Rootfs, StepError> {
        // In the sandbox's IDs as the stages' trees are: a `--mount=…,from=` shows the files'
        // owners, and no setuid-root file of that stage or image sits in the store meanwhile.
        let mut rootfs = Rootfs::in_ids(self.store, self.store_ids()).map_err(RunError::from)?;
        for layer in &self.stage_or_image_layers(from, done)? {
            self.ensure_blob(layer)?;
            rootfs
                .apply(self.store, &layer.digest, &layer.media_type)
                .map_err(RunError::from)?;
        }
        Ok(rootfs)
    }

    /// The host IDs the store keeps this build's trees and cache mounts in (see
    /// [`dockless_sandbox::sandbox::store_ids`]).
    pub(super) fn store_ids(&self) -> Option<dockless_sandbox::sandbox::IdRange> {
        let userns = dockless_sandbox::sandbox::choose(self.options.isolation).unwrap_or(true);
        dockless_sandbox::sandbox::store_ids(userns)
    }

    /// The layers of the earlier stage `from` names, else of the image it names.
    pub(super) fn stage_or_image_layers(
        &self,
        from: &str,
        done: &[Stage],
    ) -> Result<Vec<BuiltLayer>, Invalid> {
        if let Some(image) = self.named_context(from) {
            return self.image_layers(image, done);
        }
        match find_stage(done, from) {
            Some(stage) => Ok(stage.layers.clone()),
            None => self.image_layers(from, done),
        }
    }

    /// The layers of the image `--from` names, when it names no stage.
    fn image_layers(&self, from: &str, done: &[Stage]) -> Result<Vec<BuiltLayer>, Invalid> {
        if from.parse::<usize>().is_ok() {
            return Err(Invalid(format!(
                "--from={from}: there is no earlier stage number {from} (stages count from 0)"
            )));
        }
        let base = base::resolve(
            from,
            self.context.root(),
            self.options.platform.as_ref(),
            self.store,
            self.remote,
        )
        .map_err(|e| {
            let names: Vec<&str> = done.iter().filter_map(|s| s.name.as_deref()).collect();
            Invalid(format!(
                "--from={from} names no earlier stage (named stages: {}), and as an image it cannot be used: {e}",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            ))
        })?;
        let layers = base
            .layers
            .iter()
            .map(|d| BuiltLayer {
                digest: d.digest.clone(),
                diff_id: d.digest.clone(),
                size: d.size,
                media_type: d.media_type.clone(),
                from_base: true,
                source: base.remote.clone().map(LayerSource::Base),
            })
            .collect();
        Ok(layers)
    }
}

/// The file system a `COPY --from` reads.
enum Tree<'s> {
    /// A built stage's, as the build holds it.
    Snapshot(&'s View, &'s Rootfs),
    /// An image's (or a stage's that kept no tree), unpacked from its layers.
    Unpacked(Box<Rootfs>),
}

impl Tree<'_> {
    fn path(&self) -> &std::path::Path {
        match self {
            Tree::Snapshot(view, _) => view.path(),
            Tree::Unpacked(rootfs) => rootfs.path(),
        }
    }

    fn rootfs(&self) -> &Rootfs {
        match self {
            Tree::Snapshot(_, rootfs) => rootfs,
            Tree::Unpacked(rootfs) => rootfs,
        }
    }

    /// The owners the tree keeps aside (read without root, its files are the invoking user's
    /// on disk): a rootless stack's merged tree has those its layers recorded.
    fn recorded(&self) -> Option<&std::collections::HashMap<String, (u64, u64)>> {
        if let Tree::Snapshot(view, _) = self
            && let Some(recorded) = view.recorded()
        {
            return Some(recorded);
        }
        let rootfs = self.rootfs();
        (!rootfs.privileged).then_some(&rootfs.owners)
    }
}

/// A `--chmod` value that is not an octal file mode.
#[derive(Debug, thiserror::Error)]
#[error("--chmod={0}: expected an octal mode such as 755 or 0644")]
pub struct ChmodError(String);

fn parse_chmod(text: &str) -> Result<u32, ChmodError> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| ChmodError(text.to_owned()))
}

/// Directory entries for the directories WORKDIR creates, owned by `(uid, gid)`.
fn directory_entries(dirs: Vec<String>, (uid, gid): (u64, u64)) -> Vec<Entry> {
    dirs.into_iter()
        .map(|path| Entry {
            path,
            kind: EntryKind::Directory,
            mode: 0o755,
            uid,
            gid,
            xattrs: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_is_octal() {
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert!(parse_chmod("rwx").is_err());
        assert!(parse_chmod("17777").is_err());
    }
}
