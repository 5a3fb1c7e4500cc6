//! RUN --mount in a stage: the mounts a RUN asks for, what of them goes into its cache key
//! (never a secret's value), and, when the command has to run, their sources made ready for
//! the sandbox: a copy of context files, another stage's tree, a cache directory of the store,
//! a secret in a private file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::error::SecretError;
use super::{Executor, Invalid, Stage, StepError, Unsupported, lookup};
use crate::SecretSource;
use crate::run_step::KeyedMount;
use dockless_context::Context;
use dockless_context::item_meta::ItemMeta;
use dockless_dockerfile::{MountKind, RunFlags, RunMount, Sharing};
use dockless_sandbox::mounts::MountPlan;
use dockless_sandbox::rootfs::Rootfs;
use dockless_sandbox::sandbox::{MountSource, SandboxMount};

/// The mounts of one RUN, ready for the sandbox, and what must live as long as the command.
#[derive(Debug, Default)]
pub(super) struct ReadyMounts {
    pub plan: MountPlan,
    /// Temporary copies and the secrets' private directories.
    _dirs: Vec<tempfile::TempDir>,
    /// Trees of other stages and images that bind mounts read.
    _trees: Vec<Rootfs>,
    /// Locks of the cache mounts shared as `locked` or `private`.
    _locks: Vec<fs::File>,
}

impl Executor<'_> {
    /// The `--mount` flags of a RUN with their values expanded, refusing what dockless
    /// cannot serve.
    pub(super) fn run_mounts(
        &self,
        stage: &Stage,
        flags: &RunFlags,
    ) -> Result<Vec<RunMount>, StepError> {
        let env = &stage.config.config;
        let vars = |name: &str| {
            env.env_value(name)
                .map(str::to_owned)
                .or_else(|| lookup(&stage.args, name))
        };
        let mounts = flags.mounts(self.escape, &vars, &stage.workdir())?;
        if let Some(refused) = mounts.iter().find_map(|mount| not_served(&mount.kind)) {
            return Err(Unsupported(refused.to_owned()).into());
        }
        Ok(mounts)
    }

    /// What the mounts put into the RUN cache key: each mount and, for a bind mount, a
    /// digest of what it binds. A secret's value never goes in (as in BuildKit, a changed
    /// secret does not run the command again).
    pub(super) fn mount_key<'m>(
        &self,
        mounts: &'m [RunMount],
        done: &[Stage],
    ) -> Result<Vec<KeyedMount<'m>>, StepError> {
        mounts
            .iter()
            .map(|mount| {
                let bound = match &mount.kind {
                    MountKind::Bind {
                        from: None, source, ..
                    } => snapshot(self.context, source, None)?,
                    MountKind::Bind {
                        from: Some(from), ..
                    } => {
                        let layers = self.stage_or_image_layers(from, done)?;
                        layers
                            .iter()
                            .map(|l| l.diff_id.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                    _ => String::new(),
                };
                Ok(KeyedMount { mount, bound })
            })
            .collect()
    }

    /// Makes the sources of `mounts` ready, for a RUN that has to run over `rootfs`.
    pub(super) fn ready_mounts(
        &self,
        mounts: &[RunMount],
        done: &[Stage],
    ) -> Result<ReadyMounts, StepError> {
        let mut ready = ReadyMounts::default();
        for m in mounts {
            let target = m.target.trim_start_matches('/').to_owned();
            let source = match &m.kind {
                MountKind::Bind {
                    from,
                    source,
                    read_only,
                } => {
                    let path = self.bind_source(from.as_deref(), source, done, &mut ready)?;
                    MountSource::Directory {
                        path,
                        read_only: *read_only,
                    }
                }
                MountKind::Cache {
                    id,
                    sharing,
                    read_only,
                    mode,
                    uid,
                    gid,
                    from: None,
                    source: None,
                } => {
                    let path = self.cache_dir(id, *sharing, (*mode, *uid, *gid), &mut ready)?;
                    MountSource::Directory {
                        path,
                        read_only: *read_only,
                    }
                }
                MountKind::Tmpfs { size } => MountSource::Tmpfs { size: *size },
                kind @ (MountKind::Cache { .. } | MountKind::Ssh { .. }) => {
                    let refused = not_served(kind).unwrap_or("this mount is not supported");
                    return Err(Unsupported(refused.to_owned()).into());
                }
                MountKind::Secret {
                    id,
                    env,
                    as_file,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    let Some(path) = self.secret_file(id, *required, &mut ready)? else {
                        continue;
                    };
                    if let Some(name) = env {
                        ready.plan.secret_env.push((name.clone(), path.clone()));
                    }
                    if !as_file {
                        continue;
                    }
                    MountSource::Secret {
                        path,
                        uid: *uid,
                        gid: *gid,
                        mode: *mode,
                    }
                }
            };
            ready.plan.mounts.push(SandboxMount { target, source });
        }
        Ok(ready)
    }

    /// The host path a bind mount binds: a private copy of context files (only what
    /// `.dockerignore` lets in), or a path in the tree of a stage or an image.
    fn bind_source(
        &self,
        from: Option<&str>,
        source: &str,
        done: &[Stage],
        ready: &mut ReadyMounts,
    ) -> Result<PathBuf, StepError> {
        let Some(from) = from else {
            let copy = self.store.temp_dir()?;
            let dest = copy.path().join("bound");
            snapshot(self.context, source, Some(&dest))?;
            ready._dirs.push(copy);
            return Ok(dest);
        };
        let rootfs = self.tree_of(from, done)?;
        let path = dockless_sandbox::rootfs::resolve(rootfs.path(), source, false)
            .map_err(|e| Invalid(format!("--mount from={from} source={source}: {e}")))?;
        if fs::symlink_metadata(&path).is_err() {
            return Err(Invalid(format!(
                "--mount from={from}: {source} does not exist there"
            ))
            .into());
        }
        ready._trees.push(rootfs);
        Ok(path)
    }

    /// A cache mount's directory in the store, kept between builds; `locked` waits for other
    /// builds using it, `private` takes a fresh one while another build holds it. As root in a
    /// user namespace its owners live in the sandbox's range on disk, as the trees' do (a
    /// setuid file a RUN leaves there is setuid to an ID that owns nothing on the host), in a
    /// directory of their own: `--isolation root` keeps the image's IDs in another.
    fn cache_dir(
        &self,
        id: &str,
        sharing: Sharing,
        (mode, uid, gid): (u32, u32, u32),
        ready: &mut ReadyMounts,
    ) -> std::io::Result<PathBuf> {
        let caches = self.store.root().join(dockless_oci::areas::CACHE_MOUNTS);
        fs::create_dir_all(&caches)?;
        let ids = self.store_ids();
        let on_disk = |uid: u32, gid: u32| match ids {
            Some(range) => range.to_host(uid, gid),
            None => Ok((uid, gid)),
        };
        let mut name = hex::encode(Sha256::digest(id.as_bytes()));
        if let Some(range) = ids {
            name = format!("{name}-ids-{}-{}", range.uid_start, range.gid_start);
        }
        let dir = caches.join(&name);
        if sharing != Sharing::Shared {
            let lock = fs::File::create(caches.join(format!("{name}.lock")))?;
            let operation = match sharing {
                Sharing::Locked => libc::LOCK_EX,
                _ => libc::LOCK_EX | libc::LOCK_NB,
            };
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), operation) } != 0 {
                // Private, and another build has it: this RUN gets an empty one of its own.
                let fresh = self.store.temp_dir().map_err(std::io::Error::other)?;
                let path = fresh.path().to_owned();
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
                if ids.is_some() {
                    let (root_uid, root_gid) = on_disk(0, 0)?;
                    std::os::unix::fs::chown(&path, Some(root_uid), Some(root_gid))?;
                }
                ready._dirs.push(fresh);
                return Ok(path);
            }
            ready._locks.push(lock);
        }
        if !dir.exists() {
            let staging = self.store.temp_dir().map_err(std::io::Error::other)?;
            let made = staging.keep();
            fs::set_permissions(&made, fs::Permissions::from_mode(mode))?;
            // SAFETY: geteuid cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                let (uid, gid) = on_disk(uid, gid)?;
                std::os::unix::fs::chown(&made, Some(uid), Some(gid))?;
            }
            if fs::rename(&made, &dir).is_err() {
                // Another build made it first.
                let _ = fs::remove_dir(&made);
            }
        }
        dockless_oci::areas::mark_used(&dir);
        Ok(dir)
    }

    /// A secret the build was given, in a private file that lives as long as the command;
    /// `None` when it was not given and is not required.
    fn secret_file(
        &self,
        id: &str,
        required: bool,
        ready: &mut ReadyMounts,
    ) -> Result<Option<PathBuf>, StepError> {
        let value = match self.options.secrets.get(id) {
            Some(SecretSource::File(path)) => {
                let mut bytes = Vec::new();
                fs::File::open(path)
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .map_err(|source| SecretError::Unreadable {
                        id: id.to_owned(),
                        path: path.clone(),
                        source,
                    })?;
                secrecy::SecretBox::new(bytes.into_boxed_slice())
            }
            Some(SecretSource::Env(var)) => match std::env::var_os(var) {
                Some(value) => {
                    secrecy::SecretBox::new(value.into_encoded_bytes().into_boxed_slice())
                }
                None if required => {
                    let (id, var) = (id.to_owned(), var.clone());
                    return Err(SecretError::NoVariable { id, var }.into());
                }
                None => return Ok(None),
            },
            None if required => {
                return Err(SecretError::NotGiven { id: id.to_owned() }.into());
            }
            None => {
                tracing::info!("secret `{id}` not given: the RUN runs without it");
                return Ok(None);
            }
        };
        // In this process's part of the store: removed when the command ends or the build is
        // interrupted, and swept by the next command if this process is killed outright.
        let dir = tempfile::Builder::new()
            .prefix("secret-")
            .tempdir_in(self.store.session_dir())?;
        let path = dir.path().join("secret");
        {
            use secrecy::ExposeSecret;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::io::Write::write_all(&mut file, value.expose_secret())?;
        }
        ready._dirs.push(dir);
        Ok(Some(path))
    }
}

/// Why dockless cannot give a RUN this mount (BuildKit can), if it cannot.
fn not_served(kind: &MountKind) -> Option<&'static str> {
    match kind {
        MountKind::Ssh { .. } => Some(
            "--mount=type=ssh is not supported: dockless has no SSH agent forwarding; use a secret (--mount=type=secret) for keys the build needs",
        ),
        MountKind::Cache { from, source, .. } if from.is_some() || source.is_some() => Some(
            "--mount=type=cache with from= or source= is not supported yet; use an empty cache (drop from and source)",
        ),
        _ => None,
    }
}

/// Walks the context source a bind mount names (as `.dockerignore` lets it in), returning a
/// digest of every path, kind, mode and content; with `dest`, copies it there too.
fn snapshot(context: &Context, source: &str, dest: Option<&Path>) -> Result<String, BindError> {
    let source = if source.trim_matches('/').is_empty() {
        "."
    } else {
        source
    };
    let matched = context.resolve(source)?;
    let [top] = matched.as_slice() else {
        return Err(BindError::NotOne(source.to_owned()));
    };
    let mut hasher = Sha256::new();
    let mut entries: BTreeMap<String, (PathBuf, ItemMeta)> = BTreeMap::new();
    if top.meta.is_dir() {
        for walked in context.walk(top)? {
            let abs = walked.abs(top);
            entries.insert(walked.rel, (abs, walked.meta));
        }
        if let Some(dest) = dest {
            fs::create_dir_all(dest)?;
        }
    } else {
        entries.insert(String::new(), (top.abs.clone(), top.meta));
    }
    for (rel, (abs, meta)) in &entries {
        let target = dest.map(|d| {
            if rel.is_empty() {
                d.to_owned()
            } else {
                d.join(rel)
            }
        });
        hasher.update(format!("{rel}\0{:o}\0", meta.mode()).as_bytes());
        if meta.is_dir() {
            if let Some(target) = &target {
                fs::create_dir_all(target)?;
            }
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(abs)?;
            hasher.update(link.as_os_str().as_encoded_bytes());
            if let Some(target) = &target {
                std::os::unix::fs::symlink(&link, target)?;
            }
        } else if meta.is_file() {
            let bytes = fs::read(abs)?;
            hasher.update(Sha256::digest(&bytes));
            if let Some(target) = &target {
                fs::write(target, &bytes)?;
            }
        }
        if let Some(target) = &target
            && !meta.file_type().is_symlink()
        {
            fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Why context files could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Source(#[from] dockless_context::source::SourceError),
    #[error("--mount source={0} must name one file or directory of the context")]
    NotOne(String),
    #[error("could not copy context files for --mount: {0}")]
    Io(#[from] std::io::Error),
}
