//! RUN in a stage: what the stage gives the step (command, environment, user, directory, the
//! layers below) and the file system it runs over; the step itself is [`crate::run::step`].

use std::collections::BTreeMap;

use super::{Builder, Stage, Unsupported};
use crate::build::{BuildError, BuiltLayer};
use crate::digest::Digest;
use crate::dockerfile::{CommandLine, Heredoc, Instruction};
use crate::registry::Reference;
use crate::run::rootfs::Rootfs;
use crate::run::sandbox::Network;
use crate::run::{InlineScript, RunError, RunStep, StepError};

impl Builder<'_> {
    /// RUN: reuse the layer of an identical earlier RUN, or run the command in the sandbox and
    /// make a layer of what it changed.
    pub(super) fn run_step(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        run: crate::dockerfile::Run,
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
        if made.cached {
            tracing::info!(line = instruction.line, "RUN cached: {}", instruction.text);
        }
        self.add_run_layer(stage, instruction, &made.layer)
    }

    /// The network of a RUN (`--network`, else the build's), refusing flags it does not know.
    fn run_network(
        &self,
        instruction: &Instruction,
        flags: &[(String, String)],
    ) -> Result<Network, BuildError> {
        for (flag, value) in flags {
            if !matches!(flag.as_str(), "network" | "mount") {
                return Err(self.at(
                    instruction,
                    Unsupported(format!("RUN --{flag}={value} is not supported; remove it")),
                ));
            }
        }
        Network::for_run(flags, self.options.network).map_err(|e| self.at(instruction, e))
    }

    /// A RUN's layer joins the stage, which learns what the command made.
    fn add_run_layer(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        layer: &crate::layer::WrittenLayer,
    ) -> Result<(), BuildError> {
        let built = self.built_layer(layer);
        if let Some(observer) = self.observer {
            observer.written(&built);
        }
        stage.layers.push(built);
        stage.config.history.push(self.history(instruction, false));
        if stage.filesystem.complete {
            // Later COPY, WORKDIR and --chown need to know what the command made.
            let layer = [(layer.digest.clone(), self.built_layer(layer).media_type)];
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
        let single = crate::dockerfile::heredoc_word(text.trim())
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
        let run_err = |e: crate::run::rootfs::RootfsError| self.at(instruction, RunError::from(e));
        if stage.rootfs.is_none() {
            // The base image's tree comes from the store's cache (unpacked once per base); the
            // layers made since are applied to the copy below.
            let base: Vec<&BuiltLayer> = stage.layers.iter().take_while(|l| l.from_base).collect();
            for layer in &base {
                self.ensure_blob(layer, stage.remote_base.as_ref(), instruction)?;
            }
            let chain: Vec<(Digest, String)> = base
                .iter()
                .map(|l| (l.digest.clone(), l.media_type.clone()))
                .collect();
            let rootfs = if chain.is_empty() {
                Rootfs::new(self.store)
            } else {
                crate::run::rootfs::cached::working_tree(self.store, &chain)
            };
            stage.rootfs = Some(rootfs.map_err(run_err)?);
        }
        let Some(rootfs) = stage.rootfs.as_mut() else {
            unreachable!("made just above")
        };
        for layer in stage.layers.iter().skip(rootfs.applied) {
            self.ensure_blob(layer, stage.remote_base.as_ref(), instruction)?;
            rootfs
                .apply(self.store, &layer.digest, &layer.media_type)
                .map_err(run_err)?;
        }
        Ok(rootfs)
    }

    /// A base layer still in its registry is fetched into the store.
    pub(super) fn ensure_blob(
        &self,
        layer: &BuiltLayer,
        remote: Option<&Reference>,
        instruction: &Instruction,
    ) -> Result<(), BuildError> {
        if self.store.has_blob(&layer.digest) {
            return Ok(());
        }
        let Some(reference) = remote else {
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
