//! RUN in a stage: what the stage gives the step (command, environment, user, directory, the
//! layers below) and the file system it runs over; the step itself is [`crate::run_step`].

use std::collections::BTreeMap;

use super::dispatch::{Failure, StageExecutor};
use super::metadata::command_line;
use super::{Executor, Stage, StepError, Unsupported};
use crate::BuiltLayer;
use crate::run_step::{self, RunStep, SharedRunLayers};
use dockless_dockerfile::{CommandLine, Heredoc, Instruction, RunFlags, RunNetwork, Security};
use dockless_oci::digest::Digest;
use dockless_oci::image::Platform;
use dockless_registry::Reference;
use dockless_registry::remote::LayerSource;
use dockless_sandbox::emulation::{self, Execution};
use dockless_sandbox::overlay::{self, Snapshots};
use dockless_sandbox::rootfs::{Rootfs, cached};
use dockless_sandbox::sandbox::Network;
use dockless_sandbox::{InlineScript, RunError};
use dockless_shared_cache::{EntryKind, SharedCache, SharedHit};

impl StageExecutor<'_, '_> {
    /// RUN: reuse the layer of an identical earlier RUN, or run the command in the sandbox and
    /// make a layer of what it changed.
    pub(super) fn run(
        &mut self,
        instruction: &Instruction,
        run: dockless_dockerfile::Run,
    ) -> Result<(), Failure> {
        let (build, done) = (self.build, self.done);
        let network = build.run_network(&run.flags)?;
        let mounts = build.run_mounts(&self.stage, &run.flags)?;
        let mount_key = build.mount_key(&mounts, done)?;
        let (argv, scripts) = run_command_line(run.command, run.heredocs, &self.stage.shell);
        build.flush(&mut self.stage)?;
        let stage = &mut self.stage;
        let env = run_env(stage);
        let user = stage.config.config.user.clone().unwrap_or_default();
        let workdir = stage.workdir();
        let parents: Vec<Digest> = stage.layers.iter().map(|l| l.diff_id.clone()).collect();
        let runs_on = stage_platform(&stage.config);
        // The variant too (arm/v6 and arm/v7 programs differ); none for most platforms.
        let platform = runs_on.to_string();
        let step = RunStep {
            text: &instruction.text,
            argv: &argv,
            scripts: &scripts,
            env: &env,
            user: &user,
            workdir: &workdir,
            platform: &platform,
            parents: &parents,
            isolation: build.options.isolation,
            network,
            mount_key: &mount_key,
            settings: build.settings,
            shared: (!build.shared.is_empty()).then_some(build.shared as &dyn SharedRunLayers),
            reuse: build.options.no_cache.reuses(stage.name.as_deref()),
            output: build.current_step().and_then(|step| step.output()),
        };
        // What the mounts need while the command runs (copies, trees, locks, the secrets'
        // private files) lives until the step is over.
        let mut kept = None;
        let made = build
            .with_live(|on_live| {
                step.layer(
                    build.store,
                    || {
                        runs_here(&runs_on)?;
                        let mut ready = build.ready_mounts(&mounts, done)?;
                        let plan = std::mem::take(&mut ready.plan);
                        kept = Some(ready);
                        Ok((build.catch_up(stage)?, plan))
                    },
                    on_live,
                )
            })
            .map_err(|e| match e {
                run_step::StepError::Rootfs(e) => e,
                run_step::StepError::Run(e) => StepError::Run(e),
            })?;
        if made.cached {
            if let Some(step) = build.current_step() {
                step.mark_cached();
            }
            let from = if made.source.is_some() {
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
        self.add_run_layer(&made.layer, made.source, made.key)
    }

    /// A RUN's layer joins the stage, which learns what the command made.
    fn add_run_layer(
        &mut self,
        layer: &dockless_layer::WrittenLayer,
        source: Option<LayerSource>,
        key: String,
    ) -> Result<(), Failure> {
        let (build, stage) = (self.build, &mut self.stage);
        let built = BuiltLayer {
            source,
            ..build.built_layer(layer)
        };
        build.exporting(EntryKind::Run, &built, Some(key));
        if let Some(observer) = build.observer {
            observer.written(&built);
        }
        stage.layers.push(built.clone());
        let elsewhere = !build.store.has_blob(&built.digest)
            && !crate::filesystem::listing_is_cached(build.store, &built.digest);
        if stage.filesystem.complete && elsewhere {
            // A shared cache's layer is downloaded only if a later instruction needs the tree.
            stage.unlisted.push(built);
        } else if stage.filesystem.complete {
            // Later COPY, WORKDIR and --chown need to know what the command made.
            let layer = [(layer.digest.clone(), built.media_type.clone())];
            stage.filesystem.apply_layers(build.store, &layer)?;
        }
        Ok(())
    }
}

impl Executor<'_> {
    /// The network of a RUN (`--network`, else the build's), refusing `--security=insecure`.
    fn run_network(&self, flags: &RunFlags) -> Result<Network, StepError> {
        if flags.security == Security::Insecure {
            return Err(Unsupported(
                "RUN --security=insecure is not supported: dockless grants no extra privileges; remove it".to_owned(),
            )
            .into());
        }
        let asked = match flags.network {
            RunNetwork::Default => None,
            RunNetwork::None => Some(Network::None),
            RunNetwork::Host => Some(Network::Host),
        };
        Ok(Network::for_run(asked, self.options.network)?)
    }

    /// Makes the stage's file system hold every layer written so far, and hands it out.
    pub(super) fn catch_up<'s>(&self, stage: &'s mut Stage) -> Result<&'s mut Rootfs, StepError> {
        if stage.rootfs.is_none() {
            // The base image's tree comes from the store's cache (unpacked once per base); the
            // layers made since are applied to the copy below.
            let base: Vec<&BuiltLayer> = stage.layers.iter().take_while(|l| l.from_base).collect();
            for layer in &base {
                self.ensure_blob(layer)?;
            }
            let chain = stage.chain(true);
            let userns = dockless_sandbox::sandbox::choose(self.options.isolation).unwrap_or(true);
            // As root in a user namespace, owners live in the sandbox's range on disk.
            let ids = dockless_sandbox::sandbox::store_ids(userns);
            let rootfs = if chain.is_empty() {
                Rootfs::in_ids(self.store, ids)
            } else {
                match overlay::choose(self.store, userns) {
                    Snapshots::Overlay => cached::overlay_tree(self.store, &chain, ids),
                    Snapshots::Rootless(subids) => {
                        cached::overlay_tree_rootless(self.store, &chain, subids)
                    }
                    Snapshots::Copy => cached::working_tree(self.store, &chain, ids),
                }
            };
            stage.rootfs = Some(rootfs.map_err(RunError::from)?);
        }
        let Some(rootfs) = stage.rootfs.as_mut() else {
            unreachable!("made just above")
        };
        for layer in stage.layers.iter().skip(rootfs.applied) {
            self.ensure_blob(layer)?;
            rootfs
                .apply(self.store, &layer.digest, &layer.media_type)
                .map_err(RunError::from)?;
        }
        Ok(rootfs)
    }

    /// A layer still in a registry (its source: a base's, a shared cache's) is fetched into the
    /// store; one from a shared cache must also unpack to the diff_id its entry claims.
    pub(super) fn ensure_blob(&self, layer: &BuiltLayer) -> Result<(), StepError> {
        // Checked even when the blob is in the store: an earlier build may have fetched it
        // for an entry that lied about it.
        if let Some(LayerSource::SharedCache { repository, key }) = &layer.source {
            return self.fetch_shared(layer, repository, key);
        }
        if self.store.has_blob(&layer.digest) {
            return Ok(());
        }
        let Some(reference) = layer.source.as_ref().map(LayerSource::repository) else {
            return Err(StepError::MissingLayer(layer.digest.clone()));
        };
        Ok(self
            .remote
            .fetch_blob(self.store, reference, &layer.digest)?)
    }

    /// Downloads a layer a shared cache gave unless the store has it (its digest checked on
    /// the way) and checks it unpacks to the diff_id the entry claims. A layer that cannot be
    /// had, or lied, makes the build start again without that entry.
    fn fetch_shared(
        &self,
        layer: &BuiltLayer,
        repository: &Reference,
        key: &str,
    ) -> Result<(), StepError> {
        let wrong = |why: String| {
            self.shared.reject(key, &why);
            StepError::SharedCacheEntry {
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

/// A RUN asks the `--cache-from` caches for a layer by its RUN cache key.
impl SharedRunLayers for SharedCache<'_> {
    fn find(&self, key: &str) -> Option<SharedHit> {
        SharedCache::find(self, key)
    }
}

/// The command a RUN runs, with its heredocs as BuildKit gives them: a RUN that is one
/// heredoc runs its body with the shell, or, when the body starts with `#!`, runs it as a
/// script in `/dev/pipes` (which no layer holds); otherwise the bodies follow the command
/// line for the shell to read.
fn run_command_line(
    command: CommandLine,
    heredocs: Vec<Heredoc>,
    shell: &[String],
) -> (Vec<String>, Vec<InlineScript>) {
    let CommandLine::Shell(text) = command else {
        return (command_line(command, shell), Vec::new());
    };
    if heredocs.is_empty() {
        return (command_line(CommandLine::Shell(text), shell), Vec::new());
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
    (command_line(CommandLine::Shell(script), shell), scripts)
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

/// The platform a stage's programs are built for, as its config says.
fn stage_platform(config: &dockless_oci::image::ImageConfig) -> Platform {
    Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
    }
}

/// Whether the platform's programs run on this machine (natively, or emulated through
/// binfmt_misc), asked only by a RUN that executes: a cached one needs neither.
fn runs_here(platform: &Platform) -> Result<(), StepError> {
    let execution = emulation::execution(platform).map_err(|e| StepError::Run(e.into()))?;
    if let Execution::Emulated { handler, .. } = execution {
        tracing::debug!("RUN for {platform} under binfmt_misc's {handler}");
    }
    Ok(())
}
