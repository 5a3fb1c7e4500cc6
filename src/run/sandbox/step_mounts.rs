//! RUN --mount inside the sandbox: host directories (a cache, a copy of context files, another
//! stage's tree) bound at their targets, tmpfs, and secrets as files that exist only in the
//! sandbox's mount namespace.
//!
//! The helper opens every source and reads every secret before it enters a user namespace (the
//! sandbox's root may not be allowed to walk the host paths that lead to them); PID 1 attaches
//! them before pivot_root, with the tree as working directory. Nothing mounted here reaches a
//! layer: the mounts vanish with PID 1's mount namespace, and the mount points made for them
//! are removed before the tree is read again.

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// A host directory bound at the target. `image_owners`: its owners are kept as the image
    /// sees them (a cache), so a sandbox whose IDs are shifted shifts them too.
    Directory {
        path: PathBuf,
        read_only: bool,
        image_owners: bool,
    },
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
    Directory(OwnedFd),
    Secret(Vec<u8>),
    Nothing,
}

/// Opens the sources and reads the secrets of `mounts` and `secret_env`.
pub(super) fn prepare(
    mounts: &[SandboxMount],
    secret_env: &[(String, PathBuf)],
) -> Result<Prepared, String> {
    let mut prepared = Prepared::default();
    for m in mounts {
        let source = match &m.source {
            MountSource::Directory { path, .. } => {
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                    .open(path)
                    .map_err(|e| format!("cannot open {} for --mount: {e}", path.display()))?;
                Source::Directory(file.into())
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

use std::os::unix::fs::OpenOptionsExt;

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
            (MountSource::Directory { read_only, .. }, Source::Directory(fd)) => {
                attach_directory(fd, target, *read_only)?;
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

/// A clone of the directory's mount tree, made read-only if asked and never a way to a device
/// or a setuid program, moved onto the target.
fn attach_directory(fd: &OwnedFd, target: &Path, read_only: bool) -> Result<(), String> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    const MOUNT_ATTR_RDONLY: u64 = 1;
    const MOUNT_ATTR_NOSUID: u64 = 2;
    const MOUNT_ATTR_NODEV: u64 = 4;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let failed = |what: &str| {
        format!(
            "cannot {what} for --mount at /{}: {}",
            target.display(),
            io::Error::last_os_error()
        )
    };
    let empty = c"";
    // SAFETY: a descriptor we own and a valid C string; the result is a descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE
                | OPEN_TREE_CLOEXEC
                | libc::AT_EMPTY_PATH as libc::c_uint
                | libc::AT_RECURSIVE as libc::c_uint,
        )
    } as libc::c_int;
    if tree < 0 {
        return Err(failed("copy the source's mount"));
    }
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let target_c = cstr(target)?;
    // SAFETY: a descriptor we own, valid C strings and a mount_attr of the size passed.
    let result = unsafe {
        if libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) != 0
        {
            Err(failed("set the source's mount flags"))
        } else if libc::syscall(
            libc::SYS_move_mount,
            tree,
            empty.as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ) != 0
        {
            Err(failed("mount the source"))
        } else {
            Ok(())
        }
    };
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(tree) };
    result
}

/// Resolves each target inside the tree (a link in the image never leads a mount, or a mount
/// point made for it, outside the tree) and makes the mount points the tree lacks: directories,
/// or an empty file for a secret or a bound file. They are removed after the sandbox, deepest
/// first, so no layer holds them.
pub(super) fn mount_points(root: &Path, mounts: &mut [SandboxMount]) -> io::Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for m in mounts.iter_mut() {
        let resolved = crate::run::rootfs::resolve(root, &m.target, false)?;
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
        let mut path = root.to_path_buf();
        let parts: Vec<&str> = m.target.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            if fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            let last = i + 1 == parts.len();
            let result = if last && is_file {
                fs::File::create(&path).map(drop)
            } else {
                fs::create_dir(&path)
            };
            if let Err(e) = result {
                remove_mount_points(&made);
                return Err(e);
            }
            made.push(path.clone());
        }
    }
    Ok(made)
}

pub(super) fn remove_mount_points(made: &[PathBuf]) {
    for path in made.iter().rev() {
        let _ = fs::remove_file(path).or_else(|_| fs::remove_dir(path));
    }
}
