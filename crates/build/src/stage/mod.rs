//! Applying instructions, in order, to one build stage: this file drives the stages and hands
//! each instruction to its family: [`from`] (FROM), [`files`] (COPY, ADD, WORKDIR), [`run`]
//! (RUN), [`metadata`] (everything that changes only the config); [`layers`] writes what they
//! plan and turns the last stage into an image.

mod files;
mod from;
mod layers;
mod metadata;
mod mounts;
mod run;
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use layers::PendingLayer;

use super::filesystem::KnownFilesystem;
use super::{BuildError, BuildOptions, BuiltImage, BuiltLayer};
use dockless_context::Context;
use dockless_dockerfile::{Command, Dockerfile, Instruction};
use dockless_layer::LayerSettings;
use dockless_oci::image::ImageConfig;
use dockless_oci::image::config::rfc3339;
use dockless_oci::store::Store;
use dockless_registry::Reference;
use dockless_registry::remote::RemoteAccess;
use dockless_sandbox::rootfs::Rootfs;
use dockless_shared_cache::{ExportEntry, SharedCache};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A message for an instruction that cannot be carried out, as an error value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unsupported(String);

pub(super) struct Builder<'a> {
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
    /// The stage's file system on disk, made by the first RUN that has to run.
    rootfs: Option<Rootfs>,
    /// Layers from a shared cache that the known file system does not hold yet: listed only
    /// when an instruction needs the tree.
    unlisted: Vec<BuiltLayer>,
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
}

/// Where the walk through the Dockerfile is.
struct Walk {
    /// Build arguments some ARG declared (the others are reported unused).
    used_args: BTreeSet<String>,
    /// ARGs before the first FROM, with their values.
    global_args: BTreeMap<String, Option<String>>,
    /// The stage being built.
    stage: Option<Stage>,
    /// Stages already built, for `FROM <stage>` and `COPY --from=<stage>`.
    done: Vec<Stage>,
    /// How many FROM lines have been met.
    stages_seen: usize,
    /// In a stage the target does not need: its instructions are passed over.
    skipping: bool,
}

impl<'a> Builder<'a> {
    pub(super) fn new(
        options: &'a BuildOptions,
        store: &'a Store,
        context: &'a Context,
        dockerfile: &'a Path,
        remote: &'a RemoteAccess,
        observer: Option<&'a dyn super::LayerObserver>,
        shared: &'a SharedCache<'a>,
    ) -> Self {
        Builder {
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
        }
    }

    fn at(&self, instruction: &Instruction, source: impl Into<BoxError>) -> BuildError {
        BuildError::Instruction {
            file: self.dockerfile.to_owned(),
            line: instruction.line,
            source: source.into(),
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
        let mut walk = Walk {
            used_args: BTreeSet::new(),
            global_args: self.automatic_args(),
            stage: None,
            done: Vec::new(),
            stages_seen: 0,
            skipping: false,
        };
        for instruction in &dockerfile.instructions {
            if let Command::From(raw) = &instruction.command {
                let index = walk.stages_seen;
                walk.stages_seen += 1;
                if let Some(mut current) = walk.stage.take() {
                    if target.is_some() && current.name == target {
                        walk.stage = Some(current);
                        break;
                    }
                    self.flush(&mut current)?;
                    // The file system of a finished stage is not needed again as is.
                    current.rootfs = None;
                    walk.done.push(current);
                }
                walk.skipping = needed.get(index) == Some(&false);
                if walk.skipping {
                    tracing::info!(
                        line = instruction.line,
                        "stage {index} skipped: the target stage does not use it"
                    );
                    walk.done.push(Stage::skipped(raw.stage_name.as_deref()));
                } else {
                    let mut stage = self.as_step(instruction, || {
                        self.from(instruction, &walk.global_args, &walk.done)
                    })?;
                    // The base's ONBUILD triggers run now and are not passed on.
                    let triggers = stage.config.config.on_build.take().unwrap_or_default();
                    walk.stage = Some(stage);
                    for trigger in &triggers {
                        self.step(&mut walk, &self.trigger(instruction, trigger)?)?;
                    }
                }
                continue;
            }
            self.step(&mut walk, instruction)?;
        }
        let stage = walk.stage.ok_or_else(|| BuildError::Dockerfile {
            file: self.dockerfile.to_owned(),
            message: "has no FROM instruction; start it with FROM scratch or FROM oci:DIR[:TAG]"
                .into(),
        })?;
        self.warn_unused_args(&walk.used_args);
        self.finish(stage)
    }

    /// An ONBUILD trigger of the base, as an instruction of the FROM line that runs it.
    fn trigger(&self, from: &Instruction, trigger: &str) -> Result<Instruction, BuildError> {
        dockless_dockerfile::parse_trigger(trigger, from.line).map_err(|why| {
            self.at(
                from,
                Unsupported(format!(
                    "the base's ONBUILD trigger `{trigger}` cannot run: {why}; build from an image without it"
                )),
            )
        })
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

    /// One instruction other than FROM: a global ARG before the first stage, passed over in a
    /// skipped stage, else expanded and handed to its family.
    fn step(&self, walk: &mut Walk, instruction: &Instruction) -> Result<(), BuildError> {
        if walk.skipping {
            if let Command::Arg(decls) = &instruction.command {
                walk.used_args.extend(decls.iter().map(|d| d.name.clone()));
            }
            return Ok(());
        }
        let Some(current) = walk.stage.as_mut() else {
            // Before the first FROM only ARG (global, for FROM lines) may appear.
            if !matches!(instruction.command, Command::Arg(_)) {
                return Err(self.at(
                    instruction,
                    Unsupported(
                        "a Dockerfile must start with FROM (only ARG may come before it)".into(),
                    ),
                ));
            }
            let global_args = &walk.global_args;
            if let Command::Arg(decls) =
                self.expand(instruction, &|name| lookup(global_args, name))?
            {
                for decl in decls {
                    let value = self
                        .options
                        .build_args
                        .get(&decl.name)
                        .cloned()
                        .or(decl.default);
                    walk.used_args.insert(decl.name.clone());
                    walk.global_args.insert(decl.name, value);
                }
            }
            return Ok(());
        };
        let expanded = {
            let env = &current.config.config;
            let args = &current.args;
            self.expand(instruction, &|name| {
                env.env_value(name)
                    .map(str::to_owned)
                    .or_else(|| lookup(args, name))
            })?
        };
        let (done, global_args) = (&walk.done, &walk.global_args);
        self.as_step(instruction, || match expanded {
            Command::From(_) => unreachable!("FROM starts a new stage before this"),
            Command::Run(run) => self.run_step(current, instruction, run, done),
            Command::Copy(c) => self.copy_step(current, instruction, &c, done),
            Command::Add(a) => self.add_step(current, instruction, &a),
            Command::Workdir(dir) => self.workdir_step(current, instruction, &dir),
            other => self.apply_metadata(
                current,
                instruction,
                other,
                global_args,
                &mut walk.used_args,
            ),
        })
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

    fn expand(
        &self,
        instruction: &Instruction,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Command, BuildError> {
        instruction
            .command
            .expand(self.escape, vars)
            .map_err(|e| self.at(instruction, e))
    }
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
    }
}
