//! RUN --mount inside the sandbox: host directories (a cache, a copy of context files, another
//! stage's tree) bound at their targets, tmpfs, and secrets as files that exist only in the
//! sandbox's mount namespace.
//!
//! The helper reads every secret and opens every directory before it enters a user namespace:
//! PID 1 binds each from its descriptor, without walking the host path to the store (0700, as
//! root's home may be, which the sandbox's root may not enter), before pivot_root. Nothing mounted here reaches a
//! layer: the mounts vanish with PID 1's mount namespace, and the mount points made for them
//! are removed before the tree is read again.
//!
//! Steps fail with text: in the helper, an error only becomes the status file's message.

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::in_tree::MountPoints;
use super::mounts::{cstr, mount};

/// One RUN --mount as the sandbox makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxMount {
    /// Where the command sees it, relative to the tree's root, links already resolved inside
    /// the tree.
    pub target: String,
    pub source: MountSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A host directory bound at the target. A cache's owners are kept on disk as the tree's
    /// are (see [`crate::sandbox::store_ids`]), so the sandbox sees them as the image's.
    Directory { path: PathBuf, read_only: bool },
    /// An empty in-memory file system.
    Tmpfs { size: Option<u64> },
    /// A secret: the helper reads the file, the command sees its content at the target.
    Secret {
        path: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

/// What the helper took hold of before entering any namespace.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    /// Per mount, in order: the opened directory, or the secret's content.
    sources: Vec<Source>,
    /// Secrets the command gets as environment variables.
    pub env: Vec<(String, String)>,
}

#[derive(Debug)]
enum Source {
    /// The directory (or file), relative to the tree: run by its owner, the store is the
    /// sandbox's root's own to walk.
    Path(PathBuf),
    /// The directory (or file) as a detached copy of its mount, made by root before any
    /// namespace: the sandbox's root, a range of IDs that own nothing, may not walk the
    /// store's private path (nor root's 0700 home), and a mount of another namespace cannot be
    /// bound from its path.
    Detached(OwnedFd),
    Secret(Vec<u8>),
    Nothing,
}

/// Takes hold of the sources of `mounts` (in the tree `root`) and reads the secrets of
/// `mounts` and `secret_env`.
pub(super) fn prepare(
    root: &Path,
    mounts: &[SandboxMount],
    secret_env: &[(String, PathBuf)],
) -> Result<Prepared, String> {
    let mut prepared = Prepared::default();
    let root = fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
    // SAFETY: geteuid cannot fail.
    let as_root = unsafe { libc::geteuid() } == 0;
    for m in mounts {
        let source = match &m.source {
            MountSource::Directory { path, .. } => {
                let missing =
                    |e: io::Error| format!("cannot find {} for --mount: {e}", path.display());
                let path = fs::canonicalize(path).map_err(missing)?;
                if as_root {
                    Source::Detached(detached_copy(&path).map_err(missing)?)
                } else {
                    Source::Path(relative_to(&path, &root))
                }
            }
            MountSource::Secret { path, .. } => Source::Secret(read_secret(path)?),
            MountSource::Tmpfs { .. } => Source::Nothing,
        };
        prepared.sources.push(source);
    }
    for (name, path) in secret_env {
        let value = String::from_utf8(read_secret(path)?).map_err(|_| {
            format!(
                "the secret for {name} is not UTF-8 text, so it cannot be an environment variable"
            )
        })?;
        prepared.env.push((name.clone(), value));
    }
    Ok(prepared)
}

/// A detached copy of the mount at `path` (open_tree with OPEN_TREE_CLONE), to be attached
/// with move_mount in the sandbox's mount namespace.
fn detached_copy(path: &Path) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let c = cstr(path).map_err(io::Error::other)?;
    // SAFETY: a valid C string; the result is a descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Attaches the detached copy `tree` at `target`.
fn attach_detached(tree: &OwnedFd, target: &Path) -> Result<(), String> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let target_c = cstr(target)?;
    // SAFETY: a descriptor we own and valid C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(format!(
            "mount a --mount source on {}: {}",
            target.display(),
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `path` as seen from `base` (both absolute, without links): `..` up to what they share.
fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let path: Vec<_> = path.components().collect();
    let base: Vec<_> = base.components().collect();
    let shared = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in shared..base.len() {
        relative.push("..");
    }
    for part in &path[shared..] {
        relative.push(part);
    }
    relative
}

fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read a secret the build holds: {e}"))?;
    Ok(bytes)
}

/// Attaches every mount at its target (PID 1, in its mount namespace, before pivot_root).
pub(super) fn attach(mounts: &[SandboxMount], prepared: &Prepared) -> Result<(), String> {
    let staging = Path::new("dev/.secrets");
    let mut staged = false;
    for (index, (m, source)) in mounts.iter().zip(&prepared.sources).enumerate() {
        let target = Path::new(&m.target);
        match (&m.source, source) {
            (MountSource::Directory { read_only, .. }, Source::Path(source)) => {
                let source = source.to_string_lossy();
                mount(&source, target, "", libc::MS_BIND | libc::MS_REC, "")?;
                restrict(target, *read_only)?;
            }
            (MountSource::Directory { read_only, .. }, Source::Detached(tree)) => {
                attach_detached(tree, target)?;
                restrict(target, *read_only)?;
            }
            (MountSource::Tmpfs { size }, _) => {
                let data = match size {
                    Some(size) => format!("mode=1777,size={size}"),
                    None => "mode=1777".into(),
                };
                mount(
                    "tmpfs",
                    target,
                    "tmpfs",
                    libc::MS_NOSUID | libc::MS_NODEV,
                    &data,
                )?;
            }
            (MountSource::Secret { uid, gid, mode, .. }, Source::Secret(content)) => {
                if !staged {
                    fs::create_dir_all(staging)
                        .map_err(|e| format!("create /dev/.secrets: {e}"))?;
                    mount(
                        "tmpfs",
                        staging,
                        "tmpfs",
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        "mode=700",
                    )?;
                    staged = true;
                }
                let file = staging.join(index.to_string());
                write_secret(&file, content, *uid, *gid, *mode)?;
                mount(&file.to_string_lossy(), target, "", libc::MS_BIND, "")?;
                mount(
                    "none",
                    target,
                    "",
                    libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV
                        | libc::MS_NOEXEC,
                    "",
                )?;
            }
            _ => {
                return Err(format!(
                    "--mount at /{}: its source was not prepared",
                    m.target
                ));
            }
        }
    }
    if staged {
        // The secrets stay reachable only through their targets.
        let path = cstr(staging)?;
        // SAFETY: a valid C string.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(format!(
                "cannot detach the secrets' staging: {}",
                io::Error::last_os_error()
            ));
        }
        let _ = fs::remove_dir(staging);
    }
    Ok(())
}

fn write_secret(file: &Path, content: &[u8], uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(file, content)
        .and_then(|()| std::os::unix::fs::chown(file, Some(uid), Some(gid)))
        .and_then(|()| fs::set_permissions(file, fs::Permissions::from_mode(mode)))
        .map_err(|e| {
            format!(
                "cannot give a secret file owner {uid}:{gid} and mode {mode:o} in the sandbox ({e}); \
                 without subordinate IDs only root exists in a rootless sandbox: drop uid=/gid= from the secret mount"
            )
        })
}

/// Makes the directory (or file) bound at `target` read-only if asked, never a way to a
/// device or a setuid program; flags the source's file system locks (noexec) are kept.
fn restrict(target: &Path, read_only: bool) -> Result<(), String> {
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    // SAFETY: a zeroed statvfs is a valid buffer for the call to fill.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let target_c = cstr(target)?;
    // SAFETY: a valid C string and buffer.
    if unsafe { libc::statvfs(target_c.as_ptr(), &mut stat) } == 0 {
        if stat.f_flag & libc::ST_NOEXEC != 0 {
            flags |= libc::MS_NOEXEC;
        }
        if stat.f_flag & libc::ST_NOATIME != 0 {
            flags |= libc::MS_NOATIME;
        }
        if stat.f_flag & libc::ST_RELATIME != 0 {
            flags |= libc::MS_RELATIME;
        }
    }
    mount("none", target, "", flags, "")
}

/// Resolves each target inside the tree (a link in the image never leads a mount, or a mount
/// point made for it, outside the tree) and makes the mount points the tree lacks in `points`:
/// directories, or an empty file for a secret or a bound file. They are removed after the
/// sandbox, deepest first, so no layer holds them.
pub(super) fn mount_points(
    root: &Path,
    mounts: &mut [SandboxMount],
    points: &mut MountPoints,
) -> io::Result<()> {
    for m in mounts.iter_mut() {
        let resolved = crate::rootfs::resolve(root, &m.target, false)?;
        let relative = resolved
            .strip_prefix(root)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .into_owned();
        m.target = relative;
        let is_file = match &m.source {
            MountSource::Secret { .. } => true,
            MountSource::Directory { path, .. } => fs::metadata(path).is_ok_and(|m| m.is_file()),
            MountSource::Tmpfs { .. } => false,
        };
        if !points.make(&m.target, is_file, true)? {
            return Err(io::Error::other(format!(
                "--mount target /{} is not reached inside the tree",
                m.target
            )));
        }
    }
    Ok(())
}
