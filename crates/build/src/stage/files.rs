//! Instructions that put files into a stage: COPY and ADD (from the context, another stage or
//! an image) and WORKDIR (the directories it creates).

use std::os::unix::fs::PermissionsExt;

use super::{Builder, Stage, Unsupported, find_stage};
use crate::base;
use crate::copy::{self, CopyRequest};
use crate::{BuildError, BuiltLayer};
use dockless_context::Context;
use dockless_context::ignore::IgnoreRules;
use dockless_dockerfile::{Add, Copy, Heredoc, Instruction};
use dockless_layer::{Entry, EntryKind};
use dockless_oci::digest::Digest;
use dockless_registry::remote::LayerSource;
use dockless_sandbox::RunError;
use dockless_sandbox::rootfs::Rootfs;

/// What one COPY or ADD asks for, whatever its source.
struct Transfer<'a> {
    sources: &'a [String],
    dest: &'a str,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    add: bool,
    checksum: Option<Digest>,
    exclude: &'a [String],
    parents: bool,
}

impl<'a> Transfer<'a> {
    fn copy(c: &'a Copy) -> Self {
        Transfer {
            sources: &c.sources,
            dest: &c.dest,
            chown: c.chown.as_deref(),
            chmod: c.chmod.as_deref(),
            add: false,
            checksum: None,
            exclude: &c.exclude,
            parents: c.parents,
        }
    }
}

impl Builder<'_> {
    /// COPY: from the context, or with `--from` from a stage or an image.
    pub(super) fn copy_step(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        c: &Copy,
        done: &[Stage],
    ) -> Result<(), BuildError> {
        if !c.inline.is_empty() {
            return self.inline_step(stage, instruction, &c.inline, Transfer::copy(c));
        }
        match &c.from {
            Some(from) => self.copy_from(stage, instruction, from, c, done),
            None => self.transfer(stage, instruction, self.context, Transfer::copy(c)),
        }
    }

    /// ADD: from the context (local archives are unpacked) or a URL.
    pub(super) fn add_step(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        a: &Add,
    ) -> Result<(), BuildError> {
        let checksum = match a.checksum.as_deref() {
            Some(text) => Some(
                text.parse::<Digest>()
                    .map_err(|e| self.at(instruction, e))?,
            ),
            None => None,
        };
        let transfer = Transfer {
            sources: &a.sources,
            dest: &a.dest,
            chown: a.chown.as_deref(),
            chmod: a.chmod.as_deref(),
            add: true,
            checksum,
            exclude: &a.exclude,
            parents: false,
        };
        if !a.inline.is_empty() {
            return self.inline_step(stage, instruction, &a.inline, transfer);
        }
        self.transfer(stage, instruction, self.context, transfer)
    }

    /// COPY or ADD of heredocs (`COPY <<EOF /etc/app.conf`): each body becomes a file named
    /// after its heredoc, mode 0644 unless `--chmod`, copied as a file from the context would
    /// be (never unpacked, as BuildKit does).
    fn inline_step(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        heredocs: &[Heredoc],
        transfer: Transfer<'_>,
    ) -> Result<(), BuildError> {
        let keyword = if transfer.add { "ADD" } else { "COPY" };
        if !transfer.sources.is_empty() {
            return Err(self.at(
                instruction,
                Unsupported(format!(
                    "{keyword} of heredocs together with other sources is not supported yet; \
                     split it into one {keyword} for the heredocs and one for the other sources"
                )),
            ));
        }
        let staging = self.store.temp_dir().map_err(|e| self.at(instruction, e))?;
        let mut names = Vec::new();
        for heredoc in heredocs {
            if heredoc.name.contains('/') || matches!(heredoc.name.as_str(), "." | "..") {
                return Err(self.at(
                    instruction,
                    Unsupported(format!(
                        "the heredoc <<{} cannot name a file: use a plain name such as <<EOF",
                        heredoc.name
                    )),
                ));
            }
            let path = staging.path().join(&heredoc.name);
            std::fs::write(&path, &heredoc.body)
                .and_then(|()| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                })
                .map_err(|e| self.at(instruction, e))?;
            names.push(heredoc.name.clone());
        }
        let context = Context::open(staging.path()).map_err(|e| self.at(instruction, e))?;
        let transfer = Transfer {
            sources: &names,
            add: false,
            ..transfer
        };
        self.transfer_staged(stage, instruction, &context, transfer, Some(staging))
    }

    /// WORKDIR: sets the directory, and writes a layer for the directories it creates.
    pub(super) fn workdir_step(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        dir: &str,
    ) -> Result<(), BuildError> {
        let path = copy::absolute_dest(&stage.workdir(), dir);
        stage.config.config.working_dir = Some(format!("/{path}"));
        self.know_filesystem(stage, instruction)?;
        // Found through the image's symlinks, as BuildKit's mkdir finds them.
        let resolved = stage
            .filesystem
            .resolve(&path)
            .map_err(|e| self.at(instruction, e))?;
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
            self.add_layer(stage, instruction, entries, Vec::new(), Default::default());
        } else {
            stage.config.history.push(self.history(instruction, true));
        }
        Ok(())
    }

    /// Plans the layer of one COPY or ADD whose sources are read from `context`.
    fn transfer(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        context: &Context,
        transfer: Transfer<'_>,
    ) -> Result<(), BuildError> {
        self.transfer_staged(stage, instruction, context, transfer, None)
    }

    /// [`Self::transfer`] from files staged in `staged`, which lives as long as the layer.
    fn transfer_staged(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        context: &Context,
        transfer: Transfer<'_>,
        staged: Option<tempfile::TempDir>,
    ) -> Result<(), BuildError> {
        self.know_filesystem(stage, instruction)?;
        let owner = match transfer.chown {
            Some(spec) => Some(self.owner(stage, instruction, spec, "--chown=")?),
            None => None,
        };
        let chmod = match transfer.chmod {
            Some(text) => Some(parse_chmod(text).map_err(|e| self.at(instruction, e))?),
            None => None,
        };
        let exclude = if transfer.exclude.is_empty() {
            None
        } else {
            let rules = IgnoreRules::parse(&transfer.exclude.join("\n")).map_err(|e| {
                self.at(
                    instruction,
                    Unsupported(format!(
                        "--exclude={}: {e}",
                        transfer.exclude.join(" --exclude=")
                    )),
                )
            })?;
            Some(rules)
        };
        let workdir = stage.workdir();
        let request = CopyRequest {
            sources: transfer.sources,
            dest: transfer.dest,
            workdir: &workdir,
            owner,
            chmod,
            add: transfer.add,
            checksum: transfer.checksum,
            exclude: exclude.as_ref(),
            parents: transfer.parents,
        };
        let plan = copy::plan_copy(
            context,
            &stage.filesystem,
            self.store,
            &request,
            Some(copy::Downloads {
                runtime: self.remote.runtime(),
                policy: self.remote.http_policy(),
            }),
        )
        .map_err(|e| self.at(instruction, e))?;
        let staging = plan.staging.into_iter().chain(staged).collect();
        self.add_layer(stage, instruction, plan.entries, staging, plan.stamps);
        Ok(())
    }

    /// Reads the stage's file system from its layers' listings if it is not known yet (a
    /// registry base, whose listing is read when an instruction first needs it).
    fn know_filesystem(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
    ) -> Result<(), BuildError> {
        if stage.filesystem.complete {
            for layer in std::mem::take(&mut stage.unlisted) {
                if !self.listing_known(&layer.digest) {
                    self.ensure_blob(&layer, instruction)?;
                }
                let listed = [(layer.digest.clone(), layer.media_type.clone())];
                stage
                    .filesystem
                    .apply_layers(self.store, &listed)
                    .map_err(|e| self.at(instruction, e))?;
            }
            return Ok(());
        }
        // Every layer is in stage.layers: only COPY, ADD and WORKDIR leave layers pending,
        // and they make the file system known first.
        self.flush(stage)?;
        // Layers are listed from a listing when this machine or a shared cache has one, else
        // from their blobs (the base's come from its registry as needed).
        for layer in &stage.layers {
            if !self.listing_known(&layer.digest)
                && matches!(layer.source, Some(LayerSource::SharedCache { .. }))
            {
                self.ensure_blob(layer, instruction)?;
            }
        }
        stage.unlisted.clear();
        let layers: Vec<(Digest, String)> = stage
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.media_type.clone()))
            .collect();
        stage.filesystem =
            base::load_filesystem(self.store, self.remote, stage.remote_base.as_ref(), &layers)
                .map_err(|e| self.at(instruction, e))?;
        Ok(())
    }

    /// Whether the tree of the layer `digest` is known without its blob: its listing is cached
    /// here, or a shared cache has one (which is then cached here).
    fn listing_known(&self, digest: &Digest) -> bool {
        crate::filesystem::listing_is_cached(self.store, digest)
            || self
                .shared
                .listing(self.store, digest)
                .is_some_and(|bytes| crate::filesystem::adopt_listing(self.store, digest, &bytes))
    }

    /// `USER[:GROUP]` (of `--chown=`, or the stage's USER, as `what` says in a message):
    /// numbers as they are, names from the image's databases as they are at this instruction
    /// (a registry base's tree is read the first time a name needs it).
    fn owner(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        spec: &str,
        what: &str,
    ) -> Result<(u64, u64), BuildError> {
        if spec.split(':').any(|part| part.parse::<u64>().is_err()) {
            self.know_filesystem(stage, instruction)?;
        }
        stage
            .filesystem
            .users
            .resolve(spec)
            .map_err(|e| self.at(instruction, Unsupported(format!("{what}{spec}: {e}"))))
    }

    /// `COPY --from=<stage name|stage index|image>`: the sources are read from that file system.
    fn copy_from(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        from: &str,
        c: &Copy,
        done: &[Stage],
    ) -> Result<(), BuildError> {
        let rootfs = self.tree_of(from, done, instruction)?;
        let context = Context::open(rootfs.path()).map_err(|e| self.at(instruction, e))?;
        self.transfer(stage, instruction, &context, Transfer::copy(c))?;
        // The layer reads its files from `rootfs`: write it while that still exists.
        self.flush(stage)
    }

    /// The file system of the stage or image `from` names (`COPY --from`, `RUN --mount=…,from=`),
    /// unpacked from its layers.
    pub(super) fn tree_of(
        &self,
        from: &str,
        done: &[Stage],
        instruction: &Instruction,
    ) -> Result<Rootfs, BuildError> {
        let run_err = |e| self.at(instruction, RunError::from(e));
        let mut rootfs = Rootfs::new(self.store).map_err(run_err)?;
        for layer in &self.stage_or_image_layers(from, done, instruction)? {
            self.ensure_blob(layer, instruction)?;
            rootfs
                .apply(self.store, &layer.digest, &layer.media_type)
                .map_err(run_err)?;
        }
        Ok(rootfs)
    }

    /// The layers of the earlier stage `from` names, else of the image it names.
    pub(super) fn stage_or_image_layers(
        &self,
        from: &str,
        done: &[Stage],
        instruction: &Instruction,
    ) -> Result<Vec<BuiltLayer>, BuildError> {
        if let Some(image) = self.named_context(from) {
            return self.image_layers(instruction, image, done);
        }
        match find_stage(done, from) {
            Some(stage) => Ok(stage.layers.clone()),
            None => self.image_layers(instruction, from, done),
        }
    }

    /// The layers of the image `--from` names, when it names no stage.
    fn image_layers(
        &self,
        instruction: &Instruction,
        from: &str,
        done: &[Stage],
    ) -> Result<Vec<BuiltLayer>, BuildError> {
        if from.parse::<usize>().is_ok() {
            return Err(self.at(
                instruction,
                Unsupported(format!(
                    "--from={from}: there is no earlier stage number {from} (stages count from 0)"
                )),
            ));
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
            self.at(
                instruction,
                Unsupported(format!(
                    "--from={from} names no earlier stage (named stages: {}), and as an image it cannot be used: {e}",
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                )),
            )
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

/// A `--chmod` value that is not an octal file mode.
#[derive(Debug, thiserror::Error)]
#[error("--chmod={0}: expected an octal mode such as 755 or 0644")]
struct ChmodError(String);

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
