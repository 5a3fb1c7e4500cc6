//! Applying instructions, in order, to the stages of a build. The build-wide [`Executor`] holds
//! what every stage shares (the store, the registries, the settings, the caches) and walks the
//! stages; a [`dispatch::StageExecutor`] carries one stage through its instructions, handing
//! each to its family: [`from`] (FROM), [`files`] (COPY, ADD, WORKDIR), [`run`] (RUN),
//! [`metadata`] (everything that changes only the config); [`layers`] writes what they plan and
//! turns the last stage into an image. Handlers return a [`StepError`] without a location:
//! [`Executor::dispatch`] is the one place that puts the Dockerfile's path and line on it.

mod ahead;
mod dispatch;
pub mod error;
mod files;
mod from;
mod layers;
mod metadata;
mod mounts;
mod run;
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dispatch::{Failure, StageExecutor};
pub use error::{Invalid, StepError, Unsupported};
use layers::PendingLayer;

use super::filesystem::KnownFilesystem;
use super::{BuildError, BuildOptions, BuiltImage, BuiltLayer};
use dockless_context::Context;
use dockless_dockerfile::{Command, Dockerfile, ExpandError, Instruction};
use dockless_layer::LayerSettings;
use dockless_oci::image::ImageConfig;
use dockless_oci::image::config::rfc3339;
use dockless_oci::store::Store;
use dockless_registry::Reference;
use dockless_registry::remote::RemoteAccess;
use dockless_sandbox::overlay::view::View;
use dockless_sandbox::rootfs::Rootfs;
use dockless_shared_cache::{ExportEntry, SharedCache};

/// What the whole build shares: the store, the registries, the settings and the caches.
pub(super) struct Executor<'a> {
    options: &'a BuildOptions,
    store: &'a Store,
    context: &'a Context,
    dockerfile: &'a Path,
    remote: &'a RemoteAccess,
    observer: Option<&'a dyn super::LayerObserver>,
    settings: LayerSettings,
    created: String,
    /// The Dockerfile's escape character, which word processing honours.
    escape: char,
    /// The `--cache-from` caches.
    shared: &'a SharedCache<'a>,
    /// Every layer made or reused so far, for `--cache-to`.
    exported: std::sync::Mutex<Vec<ExportEntry>>,
    /// How each step is named in the progress, by its instruction's line.
    step_names: std::collections::HashMap<usize, String>,
    /// The step under way (a RUN's output and whether a cache gave it belong to it).
    current: std::sync::Mutex<Option<crate::progress::Step>>,
    /// Context sources walked while a base was listed (see [`Executor::list_ahead`]).
    prefetched: crate::copy::Prefetched,
    /// Whether a stage may be planned on assumed answers while its base's listing is read
    /// (see [`Executor::list_ahead`]); a build that found an assumption wrong starts again
    /// without.
    pub(super) assume_while_listing: bool,
}

/// The state of the stage being built.
struct Stage {
    config: ImageConfig,
    layers: Vec<BuiltLayer>,
    filesystem: KnownFilesystem,
    /// ARGs declared in this stage, with their values (`None`: declared without a value).
    args: BTreeMap<String, Option<String>>,
    /// The shell for shell-form commands (SHELL changes it).
    shell: Vec<String>,
    /// Whether CMD was set in this Dockerfile (ENTRYPOINT resets an inherited CMD only).
    cmd_set_here: bool,
    /// Where a registry base came from (its layers stay there until needed).
    remote_base: Option<Reference>,
    /// Layers planned but not written yet: they are compressed together, in parallel, at the end.
    pending: Vec<PendingLayer>,
    /// `FROM … AS name`, lower-cased.
    name: Option<String>,
    /// The finished stage's tree as `COPY --from` reads it, made by the first and shared by
    /// the others (a rootless stack's is a merged tree of links). Before `rootfs`, so that it
    /// goes first.
    view: std::sync::OnceLock<View>,
    /// The stage's file system on disk, made by the first RUN that has to run.
    rootfs: Option<Rootfs>,
    /// Layers from a shared cache that the known file system does not hold yet: listed only
    /// when an instruction needs the tree.
    unlisted: Vec<BuiltLayer>,
    /// Why the base's listing, read ahead at FROM, could not be had: the first instruction
    /// that needs the tree reports it at its line instead of trying again.
    listing_failure: Option<crate::base::BaseError>,
    /// The base's listing, still being read while the stage is planned on assumed answers.
    listing_ahead: Option<ahead::ListingAhead>,
}

impl Stage {
    /// The working directory, absolute (`/` until WORKDIR sets one).
    fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into())
    }

    /// The stage's written layers, oldest first (only its base's with `base_only`), as
    /// listings and trees are read from them.
    fn chain(&self, base_only: bool) -> Vec<(dockless_oci::digest::Digest, String)> {
        self.layers
            .iter()
            .take_while(|l| !base_only || l.from_base)
            .map(|l| (l.digest.clone(), l.media_type.clone()))
            .collect()
    }

    /// Layers written and planned: an instruction that leaves it as it was made no layer.
    fn layer_count(&self) -> usize {
        self.layers.len() + self.pending.len()
    }
}

/// One stage of the Dockerfile: its FROM and the instructions after it.
type StageLines<'d> = (&'d Instruction, &'d [Instruction]);

impl<'a> Executor<'a> {
    pub(super) fn new(
        options: &'a BuildOptions,
        store: &'a Store,
        context: &'a Context,
        dockerfile: &'a Path,
        remote: &'a RemoteAccess,
        observer: Option<&'a dyn super::LayerObserver>,
        shared: &'a SharedCache<'a>,
    ) -> Self {
        Executor {
            options,
            store,
            context,
            dockerfile,
            remote,
            observer,
            settings: LayerSettings {
                compression: options.compression,
                epoch: options.epoch,
            },
            created: rfc3339(options.epoch),
            escape: '\\',
            shared,
            exported: std::sync::Mutex::new(Vec::new()),
            step_names: Default::default(),
            current: Default::default(),
            prefetched: Default::default(),
            assume_while_listing: false,
        }
    }

    /// Builds every stage the target needs, in order, and returns the target as an image.
    pub(super) fn run(mut self, dockerfile: &Dockerfile) -> Result<BuiltImage, BuildError> {
        self.escape = dockerfile.escape;
        self.step_names = steps::step_names(&dockerfile.instructions);
        if let Some(syntax) = &dockerfile.syntax {
            tracing::warn!(
                "{}: `# syntax={syntax}` is ignored: dockless reads the Dockerfile itself (BuildKit's dockerfile:1 features it knows, and a clear error for the rest)",
                self.dockerfile.display()
            );
        }
        let target = self.options.target.as_deref().map(str::to_lowercase);
        if let Some(target) = &target {
            self.check_target(dockerfile, target)?;
        }
        let needed = needed_stages(&dockerfile.instructions, target.as_deref());
        let copied = copied_stages(&dockerfile.instructions, &needed);
        let (globals, stages) = split_stages(&dockerfile.instructions);
        let mut used_args = BTreeSet::new();
        let mut global_args = self.automatic_args();
        for instruction in globals {
            self.dispatch(instruction, || {
                self.global_arg(instruction, &mut global_args, &mut used_args)
            })?;
        }
        let count = stages.len();
        // A stage planned on assumed answers is the only one built: one found wrong costs the
        // build nothing but that stage's plan (and the layers written meanwhile).
        let alone = needed.iter().filter(|needed| **needed).count() == 1;
        let assume = self.assume_while_listing && alone;
        let mut done: Vec<Stage> = Vec::new();
        for (index, lines) in stages.into_iter().enumerate() {
            if needed.get(index) == Some(&false) {
                done.push(self.skip(index, lines, &mut used_args));
                continue;
            }
            let mut stage = self.build_stage(lines, &done, &global_args, &mut used_args, assume)?;
            if index + 1 == count || (target.is_some() && stage.name == target) {
                self.warn_unused_args(&used_args);
                let mut image = self.finish(stage)?;
                image.stage_sets = super::StageSets::of(lines.1);
                return Ok(image);
            }
            self.flush(&mut stage)?;
            if copied.get(index) == Some(&true) {
                // A later COPY --from reads the stage's tree as the build holds it (the RUNs'
                // snapshots, or their working tree), brought up to its last layer.
                self.catch_up(&mut stage)
                    .map_err(|source| BuildError::Instruction {
                        file: self.dockerfile.to_owned(),
                        line: lines.0.line,
                        source,
                    })?;
            } else {
                // The file system of a finished stage is not needed again.
                stage.rootfs = None;
            }
            done.push(stage);
        }
        Err(BuildError::Dockerfile {
            file: self.dockerfile.to_owned(),
            message: "has no FROM instruction; start it with FROM scratch or FROM oci:DIR[:TAG]"
                .into(),
        })
    }

    /// Builds one stage: its FROM, the base's ONBUILD triggers, then its instructions.
    fn build_stage(
        &self,
        (from, body): StageLines<'_>,
        done: &[Stage],
        global_args: &BTreeMap<String, Option<String>>,
        used_args: &mut BTreeSet<String>,
        assume: bool,
    ) -> Result<Stage, BuildError> {
        let (stage, triggers) = self.dispatch(from, || {
            let (mut stage, triggers) = self.from(from, global_args, done)?;
            self.list_ahead(&mut stage, from.line, triggers.iter().chain(body), assume);
            Ok((stage, triggers))
        })?;
        let mut executor = StageExecutor {
            build: self,
            stage,
            done,
            global_args,
            used_args,
        };
        // The base's triggers run first, as instructions of the FROM line, and are not passed on.
        for instruction in triggers.iter().chain(body) {
            if let Err(error) = executor.dispatch(instruction) {
                // Planned on assumed answers, an instruction may fail for want of the base's
                // own: a wrong assumption is the error then (the build starts again).
                return Err(self.unless_assumed_wrongly(&mut executor.stage, error));
            }
        }
        Ok(executor.stage)
    }

    /// A stage the target does not use: passed over, though the build arguments its ARGs
    /// declare count as used.
    fn skip(
        &self,
        index: usize,
        (from, body): StageLines<'_>,
        used_args: &mut BTreeSet<String>,
    ) -> Stage {
        tracing::info!(
            line = from.line,
            "stage {index} skipped: the target stage does not use it"
        );
        for instruction in body {
            if let Command::Arg(decls) = &instruction.command {
                used_args.extend(decls.iter().map(|d| d.name.clone()));
            }
        }
        let name = match &from.command {
            Command::From(raw) => raw.stage_name.as_deref(),
            _ => None,
        };
        Stage::skipped(name)
    }

    /// An unknown `--target` is known before anything is built.
    fn check_target(&self, dockerfile: &Dockerfile, target: &str) -> Result<(), BuildError> {
        let names: Vec<String> = dockerfile
            .instructions
            .iter()
            .filter_map(|i| match &i.command {
                Command::From(from) => from.stage_name.as_deref().map(str::to_lowercase),
                _ => None,
            })
            .collect();
        if names.iter().any(|name| name == target) {
            return Ok(());
        }
        Err(BuildError::Dockerfile {
            file: self.dockerfile.to_owned(),
            message: format!(
                "has no stage named `{target}` (--target); its named stages: {}",
                if names.is_empty() {
                    "none (name one with FROM … AS NAME)".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        })
    }

    /// An instruction before the first FROM: only ARG may be there (global, for FROM lines).
    fn global_arg(
        &self,
        instruction: &Instruction,
        global_args: &mut BTreeMap<String, Option<String>>,
        used_args: &mut BTreeSet<String>,
    ) -> Result<(), Failure> {
        if !matches!(instruction.command, Command::Arg(_)) {
            return Err(Invalid(
                "a Dockerfile must start with FROM (only ARG may come before it)".into(),
            )
            .into());
        }
        let expanded = self.expand(instruction, &|name| lookup(global_args, name))?;
        if let Command::Arg(decls) = expanded {
            for decl in decls {
                let value = self
                    .options
                    .build_args
                    .get(&decl.name)
                    .cloned()
                    .or(decl.default);
                used_args.insert(decl.name.clone());
                global_args.insert(decl.name, value);
            }
        }
        Ok(())
    }

    fn warn_unused_args(&self, used_args: &BTreeSet<String>) {
        let unused: Vec<&str> = self
            .options
            .build_args
            .keys()
            .filter(|k| !used_args.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            // Docker's words, which CI logs are searched for.
            tracing::warn!(
                "[Warning] One or more build-args [{}] were not consumed",
                unused.join(" ")
            );
        }
    }

    /// The instruction with its variables expanded from `vars`.
    fn expand(
        &self,
        instruction: &Instruction,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Command, ExpandError> {
        instruction.command.expand(self.escape, vars)
    }
}

/// The instructions before the first FROM, and each stage's FROM with the instructions after it.
fn split_stages(instructions: &[Instruction]) -> (&[Instruction], Vec<StageLines<'_>>) {
    let starts: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.command, Command::From(_)))
        .map(|(index, _)| index)
        .collect();
    let stages = starts
        .iter()
        .enumerate()
        .map(|(k, &start)| {
            let end = starts.get(k + 1).copied().unwrap_or(instructions.len());
            (&instructions[start], &instructions[start + 1..end])
        })
        .collect();
    let first = starts.first().copied().unwrap_or(instructions.len());
    (&instructions[..first], stages)
}

/// Build arguments every build may be given without an ARG (Docker does not warn of them).
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Which stages the target (the last stage unless `--target`) needs, as BuildKit decides: the
/// target and, transitively, the stages its FROM and `COPY --from` name. A reference holding a
/// variable may name any earlier stage, so it needs them all. An unknown target needs every stage
/// (the build then reports it).
fn needed_stages(instructions: &[Instruction], target: Option<&str>) -> Vec<bool> {
    let mut names: Vec<Option<String>> = Vec::new();
    let mut references: Vec<Vec<String>> = Vec::new();
    for instruction in instructions {
        match &instruction.command {
            Command::From(from) => {
                names.push(from.stage_name.as_deref().map(str::to_lowercase));
                references.push(vec![from.image.clone()]);
            }
            Command::Copy(copy) => {
                if let (Some(refs), Some(from)) = (references.last_mut(), &copy.from) {
                    refs.push(from.clone());
                }
            }
            Command::Run(run) => {
                if let Some(refs) = references.last_mut() {
                    refs.extend(
                        run.flags
                            .mounts
                            .iter()
                            .filter_map(|m| m.from().map(str::to_owned)),
                    );
                }
            }
            _ => {}
        }
    }
    let count = names.len();
    let start = match target {
        Some(target) => names.iter().position(|n| n.as_deref() == Some(target)),
        None => count.checked_sub(1),
    };
    let Some(start) = start else {
        return vec![true; count];
    };
    let mut needed = vec![false; count];
    let mut pending = vec![start];
    while let Some(index) = pending.pop() {
        if std::mem::replace(&mut needed[index], true) {
            continue;
        }
        for reference in &references[index] {
            if reference.contains('$') {
                pending.extend(0..index);
                continue;
            }
            let lower = reference.to_lowercase();
            if let Some(earlier) = names[..index]
                .iter()
                .position(|n| n.as_deref() == Some(lower.as_str()))
            {
                pending.push(earlier);
            } else if let Ok(earlier) = reference.parse::<usize>()
                && earlier < index
            {
                pending.push(earlier);
            }
        }
    }
    needed
}

/// Which stages a later `COPY --from` of a `needed` stage names (by name or index; a reference
/// holding a variable may name any earlier stage).
fn copied_stages(instructions: &[Instruction], needed: &[bool]) -> Vec<bool> {
    let mut names: Vec<Option<String>> = Vec::new();
    let mut copied: Vec<bool> = Vec::new();
    for instruction in instructions {
        match &instruction.command {
            Command::From(from) => {
                names.push(from.stage_name.as_deref().map(str::to_lowercase));
                copied.push(false);
            }
            Command::Copy(dockless_dockerfile::Copy {
                from: Some(reference),
                ..
            }) => {
                let earlier = names.len().saturating_sub(1);
                if needed.get(earlier) == Some(&false) {
                    continue;
                }
                if reference.contains('$') {
                    copied[..earlier].fill(true);
                    continue;
                }
                let lower = reference.to_lowercase();
                let named = names[..earlier]
                    .iter()
                    .position(|n| n.as_deref() == Some(lower.as_str()))
                    .or_else(|| reference.parse::<usize>().ok().filter(|i| *i < earlier));
                if let Some(index) = named {
                    copied[index] = true;
                }
            }
            _ => {}
        }
    }
    copied
}

/// A finished stage by name (case-insensitive, as BuildKit) or by index.
fn find_stage<'s>(done: &'s [Stage], reference: &str) -> Option<&'s Stage> {
    let lower = reference.to_lowercase();
    done.iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| reference.parse::<usize>().ok().and_then(|i| done.get(i)))
}

fn lookup(args: &BTreeMap<String, Option<String>>, name: &str) -> Option<String> {
    args.get(name).cloned().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stages_the_target_uses_are_built() {
        let parse = |text: &str| dockless_dockerfile::parse(text).unwrap().instructions;
        let dockerfile = parse(
            "FROM scratch AS a\nFROM scratch AS b\nCOPY --from=a /x /x\n\
             FROM scratch AS unused\nFROM b AS c\nCOPY --from=0 /y /y\n",
        );
        assert_eq!(needed_stages(&dockerfile, None), [true, true, false, true]);
        assert_eq!(
            needed_stages(&dockerfile, Some("b")),
            [true, true, false, false]
        );
        assert_eq!(needed_stages(&dockerfile, Some("nosuch")), [true; 4]);
        let variable = parse("FROM scratch AS a\nFROM scratch\nARG S=a\nCOPY --from=$S /x /x\n");
        assert_eq!(needed_stages(&variable, None), [true, true]);
        let mounted = parse(
            "FROM scratch AS tools\nFROM scratch AS other\nFROM scratch\n\
             RUN --mount=type=bind,from=tools,target=/t true\n",
        );
        assert_eq!(needed_stages(&mounted, None), [true, false, true]);
        let all = [true; 4];
        assert_eq!(
            copied_stages(&dockerfile, &all),
            [true, false, false, false]
        );
        assert_eq!(
            copied_stages(&dockerfile, &[true, false, true, false]),
            [false; 4],
            "a stage that is not built copies nothing"
        );
        assert_eq!(copied_stages(&variable, &all), [true, false]);
    }
}
