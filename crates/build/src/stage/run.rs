//! RUN in a stage: what the stage gives the step (command, environment, user, directory, the
//! layers below) and the file system it runs over; the step itself is [`crate::run_step`].

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::{Builder, Stage, Unsupported};
use crate::run_step::{RunStep, SharedRunLayers, StepError};
use crate::{BuildError, BuiltLayer};
use dockless_dockerfile::{CommandLine, Heredoc, Instruction, RunFlags, RunNetwork, Security};
use dockless_oci::digest::Digest;
use dockless_registry::Reference;
use dockless_registry::remote::LayerSource;
use dockless_sandbox::overlay::{self, Snapshots};
use dockless_sandbox::rootfs::{Rootfs, cached};
use dockless_sandbox::sandbox::Network;
use dockless_sandbox::{InlineScript, RunError};
use dockless_shared_cache::{EntryKind, SharedCache, SharedHit};

impl Builder<'_> {
    /// RUN: reuse the layer of an identical earlier RUN, or run the command in the sandbox and
    /// make a layer of what it changed.
    pub(super) fn run_step(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        run: dockless_dockerfile::Run,
        done: &[Stage],
    ) -> Result<(), BuildError> {
        let network = self.run_network(instruction, &run.flags)?;
        let mounts = self.run_mounts(stage, instruction, &run.flags)?;
        let mount_key = self.mount_key(&mounts, done, instruction)?;
        let (argv, scripts) = self.run_command_line(run.command, run.heredocs, &stage.shell)?;
        self.flush(stage)?;
        let env = run_env(stage);
        let user = stage.config.config.user.clone().unwrap_or_default();
        let workdir = stage.workdir();
        let parents: Vec<Digest> = stage.layers.iter().map(|l| l.diff_id.clone()).collect();
        let platform = format!("{}/{}", stage.config.os, stage.config.architecture);
        let shared = SharedRun {
            cache: self.shared,
            hit: RefCell::new(None),
        };
        let step = RunStep {
            text: &instruction.text,
            argv: &argv,
            scripts: &scripts,
            env: &env,
            user: &user,
            workdir: &workdir,
            platform: &platform,
            parents: &parents,
            isolation: self.options.isolation,
            network,
            mount_key: &mount_key,
            settings: self.settings,
            shared: (!self.shared.is_empty()).then_some(&shared as &dyn SharedRunLayers),
            reuse: self.options.no_cache.reuses(stage.name.as_deref()),
            output: self.current_step().and_then(|step| step.output()),
        };
        // What the mounts need while the command runs (copies, trees, locks, the secrets'
        // private files) lives until the step is over.
        let mut kept = None;
        let made = self
            .with_live(|on_live| {
                step.layer(
                    self.store,
                    || {
                        let mut ready = self.ready_mounts(&mounts, done, instruction)?;
                        let plan = std::mem::take(&mut ready.plan);
                        kept = Some(ready);
                        Ok((self.catch_up(stage, instruction)?, plan))
                    },
                    on_live,
                )
            })
            .map_err(|e| match e {
                StepError::Rootfs(e) => e,
                StepError::Run(e) => self.at(instruction, e),
            })?;
        let source = shared.hit.take().map(|hit| hit.source);
        if made.cached {
            if let Some(step) = self.current_step() {
                step.mark_cached();
            }
            let from = if source.is_some() {
                " (from the shared cache)"
            } else {
                ""
            };
            tracing::info!(
                line = instruction.line,
                "RUN cached{from}: {}",
                instruction.text
            );
        }
        self.add_run_layer(stage, instruction, &made.layer, source, made.key)
    }

    /// The network of a RUN (`--network`, else the build's), refusing `--security=insecure`.
    fn run_network(
        &self,
        instruction: &Instruction,
        flags: &RunFlags,
    ) -> Result<Network, BuildError> {
        if flags.security == Security::Insecure {
            return Err(self.at(
                instruction,
                Unsupported(
                    "RUN --security=insecure is not supported: dockless grants no extra privileges; remove it".to_owned(),
                ),
            ));
        }
        let asked = match flags.network {
            RunNetwork::Default => None,
            RunNetwork::None => Some(Network::None),
            RunNetwork::Host => Some(Network::Host),
        };
        Network::for_run(asked, self.options.network).map_err(|e| self.at(instruction, e))
    }

    /// A RUN's layer joins the stage, which learns what the command made.
    fn add_run_layer(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        layer: &dockless_layer::WrittenLayer,
        source: Option<LayerSource>,
        key: String,
    ) -> Result<(), BuildError> {
        let built = BuiltLayer {
            source,
            ..self.built_layer(layer)
        };
        self.exporting(EntryKind::Run, &built, Some(key));
        if let Some(observer) = self.observer {
            observer.written(&built);
        }
        stage.layers.push(built.clone());
        stage.config.history.push(self.history(instruction, false));
        let elsewhere = !self.store.has_blob(&built.digest)
            && !crate::filesystem::listing_is_cached(self.store, &built.digest);
        if stage.filesystem.complete && elsewhere {
            // A shared cache's layer is downloaded only if a later instruction needs the tree.
            stage.unlisted.push(built);
        } else if stage.filesystem.complete {
            // Later COPY, WORKDIR and --chown need to know what the command made.
            let layer = [(layer.digest.clone(), built.media_type.clone())];
            stage
                .filesystem
                .apply_layers(self.store, &layer)
                .map_err(|e| self.at(instruction, e))?;
        }
        Ok(())
    }

    /// The command a RUN runs, with its heredocs as BuildKit gives them: a RUN that is one
    /// heredoc runs its body with the shell, or, when the body starts with `#!`, runs it as a
    /// script in `/dev/pipes` (which no layer holds); otherwise the bodies follow the command
    /// line for the shell to read.
    fn run_command_line(
        &self,
        command: CommandLine,
        heredocs: Vec<Heredoc>,
        shell: &[String],
    ) -> Result<(Vec<String>, Vec<InlineScript>), BuildError> {
        let CommandLine::Shell(text) = command else {
            return Ok((self.command_line(command, shell), Vec::new()));
        };
        if heredocs.is_empty() {
            return Ok((
                self.command_line(CommandLine::Shell(text), shell),
                Vec::new(),
            ));
        }
        let single = dockless_dockerfile::heredoc_word(text.trim())
            .ok()
            .flatten()
            .and_then(|word| {
                heredocs
                    .iter()
                    .find(|h| h.name == word.name)
                    .map(|h| (word, h))
            });
        let (script, scripts) = match single {
            Some((word, heredoc)) => {
                let body = Heredoc {
                    chomp: word.chomp,
                    ..heredoc.clone()
                }
                .content();
                if body.starts_with("#!") {
                    let script = InlineScript {
                        name: heredoc.name.clone(),
                        content: body,
                    };
                    (script.path(), vec![script])
                } else {
                    (body, Vec::new())
                }
            }
            None => {
                let mut script = text;
                for heredoc in &heredocs {
                    script.push('\n');
                    script.push_str(&heredoc.body);
                    script.push_str(&heredoc.name);
                }
                (script, Vec::new())
            }
        };
        Ok((
            self.command_line(CommandLine::Shell(script), shell),
            scripts,
        ))
    }

    /// Makes the stage's file system hold every layer written so far, and hands it out.
    fn catch_up<'s>(
        &self,
        stage: &'s mut Stage,
        instruction: &Instruction,
    ) -> Result<&'s mut Rootfs, BuildError> {
        let run_err =
            |e: dockless_sandbox::rootfs::RootfsError| self.at(instruction, RunError::from(e));
        if stage.rootfs.is_none() {
            // The base image's tree comes from the store's cache (unpacked once per base); the
            // layers made since are applied to the copy below.
            let base: Vec<&BuiltLayer> = stage.layers.iter().take_while(|l| l.from_base).collect();
            for layer in &base {
                self.ensure_blob(layer, instruction)?;
            }
            let chain: Vec<(Digest, String)> = base
                .iter()
                .map(|l| (l.digest.clone(), l.media_type.clone()))
                .collect();
            let userns = dockless_sandbox::sandbox::choose(self.options.isolation).unwrap_or(true);
            let rootfs = if chain.is_empty() {
                Rootfs::new(self.store)
            } else if let Snapshots::Overlay { idmap } = overlay::choose(self.store, userns) {
                cached::overlay_tree(self.store, &chain, idmap)
            } else {
                cached::working_tree(self.store, &chain)
            };
            stage.rootfs = Some(rootfs.map_err(run_err)?);
        }
        let Some(rootfs) = stage.rootfs.as_mut() else {
            unreachable!("made just above")
        };
        for layer in stage.layers.iter().skip(rootfs.applied) {
            self.ensure_blob(layer, instruction)?;
            rootfs
                .apply(self.store, &layer.digest, &layer.media_type)
                .map_err(run_err)?;
        }
        Ok(rootfs)
    }

    /// A layer still in a registry (its source: a base's, a shared cache's) is fetched into the
    /// store; one from a shared cache must also unpack to the diff_id its entry claims.
    pub(super) fn ensure_blob(
        &self,
        layer: &BuiltLayer,
        instruction: &Instruction,
    ) -> Result<(), BuildError> {
        // Checked even when the blob is in the store: an earlier build may have fetched it
        // for an entry that lied about it.
        if let Some(LayerSource::SharedCache { repository, key }) = &layer.source {
            return self.fetch_shared(layer, repository, key, instruction);
        }
        if self.store.has_blob(&layer.digest) {
            return Ok(());
        }
        let Some(reference) = layer.source.as_ref().map(LayerSource::repository) else {
            return Err(self.at(
                instruction,
                Unsupported(format!(
                    "layer {} is missing from the store; build again",
                    layer.digest
                )),
            ));
        };
        self.remote
            .fetch_blob(self.store, reference, &layer.digest)
            .map_err(|e| self.at(instruction, e))
    }
}

impl Builder<'_> {
    /// Downloads a layer a shared cache gave unless the store has it (its digest checked on
    /// the way) and checks it unpacks to the diff_id the entry claims. A layer that cannot be
    /// had, or lied, makes the build start again without that entry.
    fn fetch_shared(
        &self,
        layer: &BuiltLayer,
        repository: &Reference,
        key: &str,
        instruction: &Instruction,
    ) -> Result<(), BuildError> {
        let wrong = |why: String| {
            self.shared.reject(key, &why);
            BuildError::SharedCacheEntry {
                file: self.dockerfile.to_owned(),
                line: instruction.line,
                digest: layer.digest.clone(),
                why,
            }
        };
        self.remote
            .fetch_blob(self.store, repository, &layer.digest)
            .map_err(|e| wrong(format!("it could not be downloaded: {e}")))?;
        if self.shared.is_verified(&layer.digest, &layer.diff_id) {
            return Ok(());
        }
        dockless_layer::archive::check_diff_id(
            &self.store.blob_path(&layer.digest),
            &layer.diff_id,
        )
        .map_err(|problem| wrong(format!("it {problem}")))?;
        self.shared.verified(&layer.digest, &layer.diff_id);
        Ok(())
    }
}

/// The shared cache as a RUN step asks it, remembering the hit (and where its blob is).
struct SharedRun<'s> {
    cache: &'s SharedCache<'s>,
    hit: RefCell<Option<SharedHit>>,
}

impl SharedRunLayers for SharedRun<'_> {
    fn find(&self, key: &str) -> Option<dockless_layer::WrittenLayer> {
        let hit = self.cache.find(key)?;
        let layer = hit.layer.clone();
        *self.hit.borrow_mut() = Some(hit);
        Some(layer)
    }
}

/// The environment a RUN is given by the Dockerfile: the image's ENV, and the stage's ARGs
/// that ENV does not override (as Docker passes build arguments to RUN).
fn run_env(stage: &Stage) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in &stage.args {
        if let Some(value) = value {
            env.insert(key.clone(), value.clone());
        }
    }
    for pair in stage.config.config.env.iter().flatten() {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        env.insert(key.to_owned(), value.to_owned());
    }
    env.into_iter().collect()
}
