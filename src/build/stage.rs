//! Applying instructions, in order, to one build stage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde_json::{Value, json};

use super::base::{self, Base};
use super::copy::{self, CopyRequest};
use super::filesystem::KnownFilesystem;
use super::{BuildError, BuildOptions, BuiltImage, BuiltLayer};
use crate::context::Context;
use crate::digest::Digest;
use crate::dockerfile::{Command, CommandLine, Dockerfile, Healthcheck, Instruction};
use crate::image::config::{DEFAULT_PATH, rfc3339};
use crate::image::{Descriptor, History, ImageConfig, Manifest, Platform};
use crate::layer::{Entry, EntryKind, LayerError, LayerSettings, WrittenLayer, write_layer_cached};
use crate::registry::Reference;
use crate::remote::RemoteAccess;
use crate::run::RunError;
use crate::run::cache::{self as run_cache, RunKey};
use crate::run::diff::{self, Owners, Snapshot};
use crate::run::rootfs::Rootfs;
use crate::run::sandbox::{self, Spec};
use crate::store::Store;

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
}

/// A layer whose entries are known; its staged files live as long as it does.
struct PendingLayer {
    line: usize,
    entries: Vec<Entry>,
    stamps: crate::layer::cache::Stamps,
    _staging: Option<tempfile::TempDir>,
}

/// Uncompressed bytes per core from which one layer keeps every core compressing by itself
/// (eight of the compressor's 1 MiB blocks each).
const BYTES_PER_CORE: u64 = 8 << 20;

impl PendingLayer {
    /// The file bytes the layer will hold.
    fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum()
    }
}

impl<'a> Builder<'a> {
    pub(super) fn new(
        options: &'a BuildOptions,
        store: &'a Store,
        context: &'a Context,
        dockerfile: &'a Path,
        remote: &'a RemoteAccess,
        observer: Option<&'a dyn super::LayerObserver>,
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
        }
    }

    fn at(&self, instruction: &Instruction, source: impl Into<BoxError>) -> BuildError {
        BuildError::Instruction {
            file: self.dockerfile.to_owned(),
            line: instruction.line,
            source: source.into(),
        }
    }

    pub(super) fn run(mut self, dockerfile: &Dockerfile) -> Result<BuiltImage, BuildError> {
        self.escape = dockerfile.escape;
        let mut used_args: BTreeSet<String> = BTreeSet::new();
        let mut global_args: BTreeMap<String, Option<String>> = self.automatic_args();
        let mut stage: Option<Stage> = None;
        // Stages already built, for `FROM <stage>` and `COPY --from=<stage>`.
        let mut done: Vec<Stage> = Vec::new();
        let target = self.options.target.as_deref().map(str::to_lowercase);
        if let Some(target) = &target {
            // An unknown target is known before anything is built.
            let names: Vec<String> = dockerfile
                .instructions
                .iter()
                .filter_map(|i| match &i.command {
                    Command::From(from) => from.stage_name.as_deref().map(str::to_lowercase),
                    _ => None,
                })
                .collect();
            if !names.contains(target) {
                return Err(BuildError::Dockerfile {
                    file: self.dockerfile.to_owned(),
                    message: format!(
                        "has no stage named `{target}` (--target); its named stages: {}",
                        if names.is_empty() {
                            "none (name one with FROM … AS NAME)".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                });
            }
        }
        let needed = needed_stages(&dockerfile.instructions, target.as_deref());
        let mut stages_seen = 0;
        // In a stage the target does not need: its instructions are passed over.
        let mut skipping = false;

        for instruction in &dockerfile.instructions {
            if let Command::From(raw) = &instruction.command {
                let index = stages_seen;
                stages_seen += 1;
                if let Some(mut current) = stage.take() {
                    if target.is_some() && current.name == target {
                        stage = Some(current);
                        break;
                    }
                    self.flush(&mut current)?;
                    // The file system of a finished stage is not needed again as is.
                    current.rootfs = None;
                    done.push(current);
                }
                skipping = needed.get(index) == Some(&false);
                if skipping {
                    tracing::info!(
                        line = instruction.line,
                        "stage {index} skipped: the target stage does not use it"
                    );
                    done.push(Stage::skipped(raw.stage_name.as_deref()));
                } else {
                    stage = Some(self.from(instruction, &global_args, &done)?);
                }
                continue;
            }
            if skipping {
                if let Command::Arg(decls) = &instruction.command {
                    used_args.extend(decls.iter().map(|d| d.name.clone()));
                }
                continue;
            }
            let Some(current) = stage.as_mut() else {
                // Before the first FROM only ARG (global, for FROM lines) may appear.
                match &instruction.command {
                    Command::Arg(_) => {
                        let expanded =
                            self.expand(instruction, &|name| lookup(&global_args, name))?;
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
                        continue;
                    }
                    _ => {
                        return Err(self.at(
                            instruction,
                            Unsupported(
                                "a Dockerfile must start with FROM (only ARG may come before it)"
                                    .into(),
                            ),
                        ));
                    }
                }
            };
            let expanded = {
                let env = current.config.config.clone();
                let args = &current.args;
                self.expand(instruction, &|name| {
                    env.env_value(name)
                        .map(str::to_owned)
                        .or_else(|| lookup(args, name))
                })?
            };
            self.apply(
                current,
                instruction,
                expanded,
                &global_args,
                &mut used_args,
                &done,
            )?;
        }
        let stage = stage.ok_or_else(|| BuildError::Dockerfile {
            file: self.dockerfile.to_owned(),
            message: "has no FROM instruction; start it with FROM scratch or FROM oci:DIR[:TAG]"
                .into(),
        })?;
        let unused: Vec<&String> = self
            .options
            .build_args
            .keys()
            .filter(|k| !used_args.contains(*k))
            .collect();
        if !unused.is_empty() {
            tracing::warn!(
                "build arguments not used by any ARG: {}",
                unused
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        self.finish(stage)
    }

    /// The ARGs BuildKit provides to every build (TARGETPLATFORM and friends).
    fn automatic_args(&self) -> BTreeMap<String, Option<String>> {
        let target = self
            .options
            .platform
            .clone()
            .unwrap_or_else(Platform::linux_amd64);
        let build = Platform::linux_amd64();
        let mut args = BTreeMap::new();
        for (prefix, p) in [("TARGET", &target), ("BUILD", &build)] {
            args.insert(format!("{prefix}PLATFORM"), Some(p.to_string()));
            args.insert(format!("{prefix}OS"), Some(p.os.clone()));
            args.insert(format!("{prefix}ARCH"), Some(p.architecture.clone()));
            args.insert(
                format!("{prefix}VARIANT"),
                Some(p.variant.clone().unwrap_or_default()),
            );
        }
        args
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

    fn from(
        &self,
        instruction: &Instruction,
        global_args: &BTreeMap<String, Option<String>>,
        done: &[Stage],
    ) -> Result<Stage, BuildError> {
        let Command::From(from) = self.expand(instruction, &|name| lookup(global_args, name))?
        else {
            unreachable!("expanding FROM gives FROM")
        };
        let name = from.stage_name.as_deref().map(str::to_lowercase);
        if let Some(previous) = find_stage(done, &from.image) {
            // `FROM <stage>`: carry on from where that stage ended.
            return Ok(Stage {
                config: previous.config.clone(),
                layers: previous.layers.clone(),
                filesystem: previous.filesystem.clone(),
                args: BTreeMap::new(),
                shell: previous.shell.clone(),
                cmd_set_here: false,
                remote_base: previous.remote_base.clone(),
                pending: Vec::new(),
                name,
                rootfs: None,
            });
        }
        let platform = match &from.platform {
            Some(p) => Some(p.parse::<Platform>().map_err(|e| self.at(instruction, e))?),
            None => self.options.platform.clone(),
        };
        let Base {
            mut config,
            layers,
            filesystem,
            remote,
        } = base::resolve(
            &from.image,
            self.context.root(),
            platform.as_ref(),
            self.store,
            self.remote,
        )
        .map_err(|e| self.at(instruction, e))?;
        if config.config.env_value("PATH").is_none() {
            let (key, value) = DEFAULT_PATH.split_once('=').unwrap_or(("PATH", ""));
            config.config.set_env(key, value);
        }
        let layers = layers
            .into_iter()
            .zip(config.rootfs.diff_ids.clone())
            .map(|(descriptor, diff_id)| {
                let media_type = self
                    .options
                    .format
                    .translate_layer(&descriptor.media_type)
                    .ok_or_else(|| {
                        self.at(
                            instruction,
                            Unsupported(format!(
                                "base layer {} has media type {}, which cannot be carried into an image",
                                descriptor.digest, descriptor.media_type
                            )),
                        )
                    })?;
                Ok(BuiltLayer {
                    digest: descriptor.digest,
                    diff_id,
                    size: descriptor.size,
                    media_type: media_type.into(),
                    from_base: true,
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        Ok(Stage {
            config,
            layers,
            filesystem,
            args: BTreeMap::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            cmd_set_here: false,
            remote_base: remote,
            pending: Vec::new(),
            name,
            rootfs: None,
        })
    }

    fn apply(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        command: Command,
        global_args: &BTreeMap<String, Option<String>>,
        used_args: &mut BTreeSet<String>,
        done: &[Stage],
    ) -> Result<(), BuildError> {
        let config = &mut stage.config.config;
        let mut empty_layer = true;
        match command {
            Command::From(_) => unreachable!("FROM starts a new stage before apply"),
            Command::Run(run) => {
                self.run_step(stage, instruction, run)?;
                return Ok(());
            }
            Command::Arg(decls) => {
                for decl in decls {
                    used_args.insert(decl.name.clone());
                    let value = self
                        .options
                        .build_args
                        .get(&decl.name)
                        .cloned()
                        .or(decl.default)
                        .or_else(|| global_args.get(&decl.name).cloned().flatten());
                    stage.args.insert(decl.name, value);
                }
            }
            Command::Env(pairs) => {
                for pair in pairs {
                    config.set_env(&pair.key, &pair.value);
                }
            }
            Command::Label(pairs) => {
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                for pair in pairs {
                    labels.insert(pair.key, pair.value);
                }
            }
            Command::Maintainer(name) => stage.config.author = Some(name),
            Command::User(user) => config.user = Some(user),
            Command::Workdir(dir) => {
                let current = config.working_dir.clone().unwrap_or_else(|| "/".into());
                let path = copy::absolute_dest(&current, &dir);
                config.working_dir = Some(format!("/{path}"));
                if stage.filesystem.complete && !stage.filesystem.is_dir(&path) {
                    let entries = missing_dirs(&stage.filesystem, &path);
                    self.add_layer(stage, instruction, entries, None, Default::default());
                    empty_layer = false;
                }
            }
            Command::Cmd(line) => {
                config.cmd = Some(self.command_line(line, &stage.shell));
                stage.cmd_set_here = true;
            }
            Command::Entrypoint(line) => {
                config.entrypoint = Some(self.command_line(line, &stage.shell));
                if !stage.cmd_set_here {
                    config.cmd = None;
                }
            }
            Command::Shell(shell) => {
                stage.shell = shell.clone();
                config.shell = Some(shell);
            }
            Command::Expose(ports) => {
                let exposed = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for port in ports {
                    for p in expand_port(&port).map_err(|e| self.at(instruction, Unsupported(e)))? {
                        exposed.insert(p, json!({}));
                    }
                }
            }
            Command::Volume(volumes) => {
                let map = config.volumes.get_or_insert_with(BTreeMap::new);
                for v in volumes {
                    if v.is_empty() {
                        return Err(self.at(
                            instruction,
                            Unsupported("VOLUME needs a non-empty path".into()),
                        ));
                    }
                    map.insert(v, json!({}));
                }
            }
            Command::StopSignal(signal) => config.stop_signal = Some(signal),
            Command::Healthcheck(check) => config.healthcheck = Some(healthcheck_json(check)),
            Command::Onbuild(trigger) => config.on_build.get_or_insert_with(Vec::new).push(trigger),
            Command::Copy(c) => {
                if let Some(from) = &c.from {
                    self.copy_from(stage, instruction, from, &c, done)?;
                    return Ok(());
                }
                self.copy(
                    stage,
                    instruction,
                    self.context,
                    &c.sources,
                    &c.dest,
                    c.chown.as_deref(),
                    c.chmod.as_deref(),
                    false,
                    None,
                )?;
                empty_layer = false;
            }
            Command::Add(a) => {
                let checksum = match a.checksum.as_deref() {
                    Some(text) => Some(
                        text.parse::<Digest>()
                            .map_err(|e| self.at(instruction, e))?,
                    ),
                    None => None,
                };
                self.copy(
                    stage,
                    instruction,
                    self.context,
                    &a.sources,
                    &a.dest,
                    a.chown.as_deref(),
                    a.chmod.as_deref(),
                    true,
                    checksum,
                )?;
                empty_layer = false;
            }
        }
        if empty_layer {
            stage.config.history.push(History {
                created: Some(self.created.clone()),
                created_by: Some(instruction.text.clone()),
                comment: Some("dockless".into()),
                empty_layer: Some(true),
                ..Default::default()
            });
        }
        Ok(())
    }

    /// The exec form as given; the shell form wrapped in the current SHELL (as Docker does).
    fn command_line(&self, line: CommandLine, shell: &[String]) -> Vec<String> {
        match line {
            CommandLine::Exec(args) => args,
            CommandLine::Shell(text) => shell.iter().cloned().chain([text]).collect(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        context: &Context,
        sources: &[String],
        dest: &str,
        chown: Option<&str>,
        chmod: Option<&str>,
        add: bool,
        checksum: Option<Digest>,
    ) -> Result<(), BuildError> {
        if let Some(spec) = chown
            && spec.split(':').any(|part| part.parse::<u64>().is_err())
            && stage.filesystem.users.passwd.is_none()
            && let Some(reference) = &stage.remote_base
        {
            let layers: Vec<(Digest, String)> = stage
                .layers
                .iter()
                .filter(|l| l.from_base)
                .map(|l| (l.digest.clone(), l.media_type.clone()))
                .collect();
            stage.filesystem.users = base::load_users(self.store, self.remote, reference, &layers)
                .map_err(|e| self.at(instruction, e))?;
        }
        let owner = match chown {
            Some(spec) => Some(
                stage
                    .filesystem
                    .users
                    .resolve(spec)
                    .map_err(|e| self.at(instruction, e))?,
            ),
            None => None,
        };
        let chmod = match chmod {
            Some(text) => {
                Some(parse_chmod(text).map_err(|e| self.at(instruction, Unsupported(e)))?)
            }
            None => None,
        };
        let workdir = stage
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let request = CopyRequest {
            sources,
            dest,
            workdir: &workdir,
            owner,
            chmod,
            add,
            checksum,
        };
        let plan = copy::plan_copy(
            context,
            &stage.filesystem,
            self.store,
            &request,
            Some(self.remote.runtime()),
        )
        .map_err(|e| self.at(instruction, e))?;
        self.add_layer(stage, instruction, plan.entries, plan.staging, plan.stamps);
        Ok(())
    }

    /// RUN: reuse the layer of an identical earlier RUN, or run the command in the sandbox and
    /// make a layer of what it changed.
    fn run_step(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        run: crate::dockerfile::Run,
    ) -> Result<(), BuildError> {
        for (flag, value) in &run.flags {
            if flag != "network" {
                return Err(self.at(
                    instruction,
                    Unsupported(format!("RUN --{flag}={value} is not supported; remove it")),
                ));
            }
        }
        let network = sandbox::Network::for_run(&run.flags, self.options.network)
            .map_err(|e| self.at(instruction, Unsupported(e)))?;
        let argv = self.command_line(run.command, &stage.shell);
        self.flush(stage)?;
        let env = run_env(stage);
        let user = stage.config.config.user.clone().unwrap_or_default();
        let workdir = stage
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let parents: Vec<Digest> = stage.layers.iter().map(|l| l.diff_id.clone()).collect();
        let platform = format!("{}/{}", stage.config.os, stage.config.architecture);
        let key = RunKey {
            parents: &parents,
            argv: &argv,
            env: &env,
            user: &user,
            workdir: &workdir,
            platform: &platform,
            settings: self.settings,
            network,
        }
        .hash();
        let written = match run_cache::lookup(self.store, &key) {
            Some(layer) => {
                tracing::info!(line = instruction.line, "RUN cached: {}", instruction.text);
                layer
            }
            None => {
                tracing::info!(line = instruction.line, "RUN {}", instruction.text);
                let layer =
                    self.execute(stage, instruction, &argv, &env, &user, &workdir, network)?;
                run_cache::record(self.store, &key, &layer);
                layer
            }
        };
        let built = self.built_layer(&written);
        if let Some(observer) = self.observer {
            observer.written(&built);
        }
        stage.layers.push(built);
        stage.config.history.push(History {
            created: Some(self.created.clone()),
            created_by: Some(instruction.text.clone()),
            comment: Some("dockless".into()),
            ..Default::default()
        });
        if stage.filesystem.complete {
            // Later COPY, WORKDIR and --chown need to know what the command made.
            let layers: Vec<(Digest, String)> = stage
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.media_type.clone()))
                .collect();
            stage.filesystem =
                KnownFilesystem::scan(self.store, &layers).map_err(|e| self.at(instruction, e))?;
        }
        Ok(())
    }

    /// Runs `argv` over the stage's file system and writes the layer of its changes.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        argv: &[String],
        env: &[(String, String)],
        user: &str,
        workdir: &str,
        network: sandbox::Network,
    ) -> Result<WrittenLayer, BuildError> {
        let userns = sandbox::choose(self.options.isolation)
            .map_err(|e| self.at(instruction, RunError::from(e)))?;
        self.catch_up(stage, instruction)?;
        let Some(rootfs) = stage.rootfs.as_mut() else {
            unreachable!("catch_up makes the file system")
        };
        let (uid, gid) = if user.is_empty() {
            (0, 0)
        } else {
            let read = |name: &str| std::fs::read_to_string(rootfs.path().join(name)).ok();
            let users = super::users::UserDatabase {
                passwd: read("etc/passwd"),
                group: read("etc/group"),
            };
            users
                .resolve(user)
                .map_err(|e| self.at(instruction, Unsupported(format!("USER {user}: {e}"))))?
        };
        let diff_err = |e| self.at(instruction, RunError::Diff(e));
        let before = Snapshot::take(rootfs.path()).map_err(diff_err)?;
        // SAFETY: getuid and getgid cannot fail.
        let (host_uid, host_gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let subids = if userns && !rootfs.privileged {
            sandbox::subordinate_ids(host_uid, host_gid)
        } else {
            None
        };
        // With subordinate IDs the sandbox gives the files their owners and hands back the
        // owners they have afterwards.
        let owners_file = match subids {
            Some(_) => {
                let file = tempfile::NamedTempFile::new().map_err(diff_err)?;
                let mut list: Vec<(String, u64, u64)> = rootfs
                    .owners
                    .iter()
                    .map(|(p, (u, g))| (p.clone(), *u, *g))
                    .collect();
                list.sort();
                crate::run::owners::write(file.path(), &list).map_err(diff_err)?;
                Some(file)
            }
            None => None,
        };
        let code = sandbox::run(Spec {
            rootfs: rootfs.path().to_owned(),
            argv: argv.to_vec(),
            env: env.to_vec(),
            workdir: workdir.to_owned(),
            uid: uid as u32,
            gid: gid as u32,
            userns,
            host_uid,
            host_gid,
            subids,
            owners: owners_file.as_ref().map(|f| f.path().to_owned()),
            network,
            status: Default::default(),
        })
        .map_err(|e| self.at(instruction, RunError::from(e)))?;
        if code != 0 {
            return Err(self.at(
                instruction,
                RunError::Failed {
                    code,
                    command: instruction.text.clone(),
                },
            ));
        }
        let after = Snapshot::take(rootfs.path()).map_err(diff_err)?;
        let owners_after: HashMap<String, (u64, u64)> = match &owners_file {
            Some(file) => crate::run::owners::read(file.path())
                .map_err(diff_err)?
                .into_iter()
                .map(|(p, u, g)| (p, (u, g)))
                .collect(),
            // Only root exists in the sandbox: recorded owners hold for the files the command
            // left in place, and whatever it made is root's.
            None => rootfs
                .owners
                .iter()
                .filter(|(path, _)| {
                    matches!((before.nodes.get(*path), after.nodes.get(*path)), (Some(b), Some(a)) if b.same_file(a))
                })
                .map(|(p, o)| (p.clone(), *o))
                .collect(),
        };
        let owners = if rootfs.privileged {
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
        let written = self
            .with_live(|on_live| {
                crate::layer::write_layer(self.store, &entries, self.settings, on_live)
            })
            .map_err(|e| self.at(instruction, e))?;
        rootfs.owners = owners_after;
        // The tree already holds this layer.
        rootfs.applied = stage.layers.len() + 1;
        tracing::info!(line = instruction.line, entries = entries.len(), digest = %written.digest, "RUN layer");
        Ok(written)
    }

    /// Makes the stage's file system hold every layer written so far.
    fn catch_up(&self, stage: &mut Stage, instruction: &Instruction) -> Result<(), BuildError> {
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
            stage.rootfs = Some(rootfs.map_err(|e| self.at(instruction, RunError::from(e)))?);
        }
        let Some(rootfs) = stage.rootfs.as_mut() else {
            return Ok(());
        };
        for layer in stage.layers.iter().skip(rootfs.applied) {
            self.ensure_blob(layer, stage.remote_base.as_ref(), instruction)?;
            rootfs
                .apply(self.store, &layer.digest, &layer.media_type)
                .map_err(|e| self.at(instruction, RunError::from(e)))?;
        }
        Ok(())
    }

    /// A base layer still in its registry is fetched into the store.
    fn ensure_blob(
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

    /// `COPY --from=<stage name|stage index|image>`: the sources are read from that file system.
    fn copy_from(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        from: &str,
        c: &crate::dockerfile::Copy,
        done: &[Stage],
    ) -> Result<(), BuildError> {
        let (layers, remote) = match find_stage(done, from) {
            Some(source) => (source.layers.clone(), source.remote_base.clone()),
            None => {
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
                    })
                    .collect();
                (layers, base.remote)
            }
        };
        let mut rootfs =
            Rootfs::new(self.store).map_err(|e| self.at(instruction, RunError::from(e)))?;
        for layer in &layers {
            self.ensure_blob(layer, remote.as_ref(), instruction)?;
            rootfs
                .apply(self.store, &layer.digest, &layer.media_type)
                .map_err(|e| self.at(instruction, RunError::from(e)))?;
        }
        let context = Context::open(rootfs.path()).map_err(|e| self.at(instruction, e))?;
        self.copy(
            stage,
            instruction,
            &context,
            &c.sources,
            &c.dest,
            c.chown.as_deref(),
            c.chmod.as_deref(),
            false,
            None,
        )?;
        // The layer reads its files from `rootfs`: write it while that still exists.
        self.flush(stage)
    }

    fn add_layer(
        &self,
        stage: &mut Stage,
        instruction: &Instruction,
        entries: Vec<Entry>,
        staging: Option<tempfile::TempDir>,
        stamps: crate::layer::cache::Stamps,
    ) {
        for entry in &entries {
            if matches!(entry.kind, EntryKind::Directory) {
                stage.filesystem.dirs.insert(entry.path.clone());
            } else {
                stage.filesystem.dirs.remove(&entry.path);
            }
        }
        stage.config.history.push(History {
            created: Some(self.created.clone()),
            created_by: Some(instruction.text.clone()),
            comment: Some("dockless".into()),
            ..Default::default()
        });
        stage.pending.push(PendingLayer {
            line: instruction.line,
            entries,
            stamps,
            _staging: staging,
        });
    }

    /// Runs `write` with a callback that hands a new layer's live bytes to the observer.
    fn with_live<R>(&self, write: impl FnOnce(Option<crate::layer::OnLive<'_>>) -> R) -> R {
        match self.observer {
            Some(observer) => {
                let on_live = |live| observer.writing(live);
                write(Some(&on_live))
            }
            None => write(None),
        }
    }

    fn built_layer(&self, written: &WrittenLayer) -> BuiltLayer {
        BuiltLayer {
            digest: written.digest.clone(),
            diff_id: written.diff_id.clone(),
            size: written.size,
            media_type: self.options.format.layer(self.options.compression).into(),
            from_base: false,
        }
    }

    /// Writes the pending layers, biggest first. A layer big enough to keep every core
    /// compressing is written alone, so it is done (and, in a push, uploaded) as early as
    /// possible while the smaller ones follow; the small ones are written several at a time,
    /// since a small layer alone leaves cores idle.
    fn write_pending(&self, pending: &[PendingLayer]) -> Result<Vec<BuiltLayer>, BuildError> {
        let cores = crate::parallel::cores();
        let mut order: Vec<usize> = (0..pending.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(pending[i].bytes()));
        let fills_every_core = |i: &usize| pending[*i].bytes() >= cores as u64 * BYTES_PER_CORE;
        let (big, small): (Vec<usize>, Vec<usize>) = order.into_iter().partition(fills_every_core);
        let mut results: Vec<(usize, Result<WrittenLayer, LayerError>)> = big
            .into_iter()
            .map(|i| (i, self.write_one(&pending[i])))
            .collect();
        // A writer thread that died leaves its layers out, reported just below.
        let concurrent =
            crate::parallel::map_in_order(&small, cores, |&i| (i, self.write_one(&pending[i])));
        results.extend(concurrent.unwrap_or_default());
        results.sort_by_key(|(i, _)| *i);
        if results.len() != pending.len() {
            return Err(BuildError::Dockerfile {
                file: self.dockerfile.to_owned(),
                message: "a layer writer stopped unexpectedly; build again".into(),
            });
        }
        results
            .into_iter()
            .zip(pending)
            .map(|((_, result), layer)| {
                let written = result.map_err(|source| BuildError::Instruction {
                    file: self.dockerfile.to_owned(),
                    line: layer.line,
                    source: source.into(),
                })?;
                tracing::info!(line = layer.line, digest = %written.digest, size = written.size, entries = layer.entries.len(), "layer");
                Ok(self.built_layer(&written))
            })
            .collect()
    }

    /// Writes one pending layer (or takes it from the layer cache) and tells the observer.
    fn write_one(&self, layer: &PendingLayer) -> Result<WrittenLayer, LayerError> {
        let written = self.with_live(|on_live| {
            write_layer_cached(
                self.store,
                &layer.entries,
                self.settings,
                &layer.stamps,
                on_live,
            )
        });
        if let (Ok(written), Some(observer)) = (&written, self.observer) {
            observer.written(&self.built_layer(written));
        }
        written
    }

    /// Writes the stage's pending layers (RUN and COPY --from need every layer below written).
    fn flush(&self, stage: &mut Stage) -> Result<(), BuildError> {
        if !stage.pending.is_empty() {
            let written = self.write_pending(&stage.pending)?;
            stage.pending.clear();
            stage.layers.extend(written);
        }
        Ok(())
    }

    fn finish(&self, mut stage: Stage) -> Result<BuiltImage, BuildError> {
        self.flush(&mut stage)?;
        let mut config = stage.config;
        config.created = Some(self.created.clone());
        config.rootfs.diff_ids = stage.layers.iter().map(|l| l.diff_id.clone()).collect();
        let config_bytes = config.to_bytes();
        let config_digest = self.store.put_bytes(&config_bytes)?;
        let format = self.options.format;
        let config_descriptor =
            Descriptor::new(format.config(), config_digest, config_bytes.len() as u64);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(format.manifest().into()),
            config: config_descriptor.clone(),
            layers: stage
                .layers
                .iter()
                .map(|l| Descriptor::new(l.media_type.clone(), l.digest.clone(), l.size))
                .collect(),
            annotations: None,
        };
        let manifest_bytes = manifest.to_bytes();
        let manifest_digest = self.store.put_bytes(&manifest_bytes)?;
        Ok(BuiltImage {
            manifest: Descriptor::new(
                format.manifest(),
                manifest_digest,
                manifest_bytes.len() as u64,
            ),
            config: config_descriptor,
            layers: stage.layers,
            base: stage.remote_base,
            platform: Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone(),
            },
        })
    }
}

impl Stage {
    /// Stands for a stage that is not built (nothing refers to it), keeping stage indexes right.
    fn skipped(name: Option<&str>) -> Stage {
        Stage {
            config: ImageConfig::scratch("linux", "amd64", None),
            layers: Vec::new(),
            filesystem: KnownFilesystem::scratch(),
            args: BTreeMap::new(),
            shell: Vec::new(),
            cmd_set_here: false,
            remote_base: None,
            pending: Vec::new(),
            name: name.map(str::to_lowercase),
            rootfs: None,
        }
    }
}

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

/// The environment of a RUN: the image's ENV, and the stage's ARGs that ENV does not override
/// (as Docker passes build arguments to RUN).
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

fn lookup(args: &BTreeMap<String, Option<String>>, name: &str) -> Option<String> {
    args.get(name).cloned().flatten()
}

/// Directory entries for `path` and its parents that do not exist yet (WORKDIR).
fn missing_dirs(known: &KnownFilesystem, path: &str) -> Vec<Entry> {
    let mut dirs = Vec::new();
    let mut current = String::new();
    for part in path.split('/') {
        current = if current.is_empty() {
            part.to_owned()
        } else {
            format!("{current}/{part}")
        };
        if !known.is_dir(&current) {
            dirs.push(Entry {
                path: current.clone(),
                kind: EntryKind::Directory,
                mode: 0o755,
                uid: 0,
                gid: 0,
                xattrs: Vec::new(),
            });
        }
    }
    dirs
}

/// `80` → `80/tcp`; `53/udp`; `8000-8002` → three ports, as Docker records them.
fn expand_port(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("EXPOSE {spec}: protocol must be tcp, udp or sctp"));
    }
    let bad =
        || format!("EXPOSE {spec}: expected PORT[-PORT][/PROTOCOL] with ports from 1 to 65535");
    let parse = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn parse_chmod(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("--chmod={text}: expected an octal mode such as 755 or 0644"))
}

/// Docker's Healthcheck object (durations in nanoseconds).
fn healthcheck_json(check: Healthcheck) -> Value {
    match check {
        Healthcheck::None => json!({"Test": ["NONE"]}),
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let mut object = serde_json::Map::new();
            object.insert("Test".into(), json!(test));
            for (key, value) in [
                ("Interval", interval),
                ("Timeout", timeout),
                ("StartPeriod", start_period),
                ("StartInterval", start_interval),
            ] {
                if let Some(d) = value {
                    object.insert(key.into(), json!(d.as_nanos() as u64));
                }
            }
            if let Some(r) = retries {
                object.insert("Retries".into(), json!(r));
            }
            Value::Object(object)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_expand_like_docker() {
        assert_eq!(expand_port("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_port("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            expand_port("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expand_port("0").is_err());
        assert!(expand_port("70000").is_err());
        assert!(expand_port("80/xyz").is_err());
        assert!(expand_port("9-8").is_err());
    }

    #[test]
    fn only_the_stages_the_target_uses_are_built() {
        let parse = |text: &str| crate::dockerfile::parse(text).unwrap().instructions;
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
    }

    #[test]
    fn chmod_is_octal() {
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert!(parse_chmod("rwx").is_err());
        assert!(parse_chmod("17777").is_err());
    }
}
