//! Mounting a RUN's overlay where only the caller sees it: a thread of its own enters a new
//! mount namespace (a thread may, since it gets its own file system context), so the mount
//! needs no cleanup, vanishes when the thread ends, whatever happens, and never shows on the
//! host. Each layer is first attached under a short name (`0`, `1`, …, `s`) in a directory of
//! its own, which keeps the option string far below the page it must fit in however many
//! layers the stack has, and lets each layer be an idmapped mount: the files keep the image's
//! owners on disk and show them inside the sandbox's user namespace, without a walk to shift
//! them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::owners::IdRange;

/// What one overlay mount is made of.
pub(crate) struct Plan<'a> {
    /// Topmost first.
    pub lowers: &'a [PathBuf],
    /// Holds `upper/` and `work/`.
    pub snapshot: &'a Path,
    pub merged: &'a Path,
    /// The sandbox's ID range, for idmapped layers.
    pub idmap: Option<IdRange>,
    /// An empty directory for the layers' short names.
    pub names: &'a Path,
    /// Overlayfs keeps its own attributes in `user.overlay.*`, as it must when mounted in a
    /// user namespace (Linux 5.11 and later).
    pub userxattr: bool,
}

/// Runs `f` on a thread that sees the overlay mounted at `plan.merged`.
pub(crate) fn with_overlay<T: Send>(
    plan: &Plan<'_>,
    f: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                private_namespace()?;
                mount_overlay(plan)?;
                let value = f();
                // The namespace goes with the thread; unmounting first lets the upper be
                // read at once as a whole.
                let _ = umount(plan.merged);
                Ok(value)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the overlay thread panicked")))
    })
}

pub(crate) fn private_namespace() -> io::Result<()> {
    // SAFETY: unshare with a constant flag; only this thread's context changes.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    let root = c"/";
    // SAFETY: valid C strings; no data argument.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })
}

pub(crate) fn mount_overlay(plan: &Plan<'_>) -> io::Result<()> {
    let userns = plan.idmap.map(idmap_userns).transpose()?;
    let mut lowerdir = Vec::new();
    for (i, lower) in plan.lowers.iter().enumerate() {
        attach(lower, &plan.names.join(i.to_string()), userns.as_ref())?;
        lowerdir.push(i.to_string());
    }
    attach(plan.snapshot, &plan.names.join("s"), userns.as_ref())?;
    // Short relative names keep the options under a page; the directory is given back after,
    // since the caller's work on this thread may use relative paths.
    let cwd = std::env::current_dir()?;
    std::env::set_current_dir(plan.names)?;
    // With userxattr the kernel refuses to follow redirects, and says `redirect_dir=off` would.
    let options = format!(
        "lowerdir={},upperdir=s/upper,workdir=s/work,metacopy=off,index=off,{}",
        lowerdir.join(":"),
        if plan.userxattr {
            "userxattr,redirect_dir=nofollow"
        } else {
            "redirect_dir=off"
        }
    );
    let target = cstring(plan.merged)?;
    let options = CString::new(options).map_err(io::Error::other)?;
    // SAFETY: valid C strings; the options are a C string as overlayfs expects.
    let mounted = check(unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            target.as_ptr(),
            c"overlay".as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    });
    std::env::set_current_dir(cwd)?;
    mounted
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;

/// Attaches a copy of the mount of `source` at `target` (made here), idmapped by `userns`.
fn attach(source: &Path, target: &Path, userns: Option<&OwnedFd>) -> io::Result<()> {
    std::fs::create_dir(target)?;
    let source = cstring(source)?;
    // SAFETY: a valid C string; the flags are constants.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened, owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    if let Some(userns) = userns {
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        };
        // SAFETY: our descriptors, an empty C string and a mount_attr of the size passed.
        check(unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            ) as libc::c_int
        })?;
    }
    let target = cstring(target)?;
    // SAFETY: our descriptor, valid C strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ) as libc::c_int
    })
}

/// A user namespace mapping the image's IDs 0… to the sandbox's range, for idmapped mounts:
/// on disk a file keeps the image's owner, and the sandbox sees it as that owner. The host's
/// root is mapped to the one ID past the range, so that the mount points the sandbox makes
/// (as the host's root, before it starts) can be made and removed; they never reach a layer.
fn idmap_userns(range: IdRange) -> io::Result<OwnedFd> {
    let mut ready = [0; 2];
    let mut go = [0; 2];
    // SAFETY: valid arrays for pipe2's two descriptors.
    unsafe {
        check(libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC))?;
        check(libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC))?;
    }
    // SAFETY: the child makes only system calls (async-signal-safe) before _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: plain system calls on our own descriptors.
        unsafe {
            libc::close(go[1]);
            let byte = [u8::from(libc::unshare(libc::CLONE_NEWUSER) == 0)];
            libc::write(ready[1], byte.as_ptr().cast(), 1);
            let mut answer = [0u8; 1];
            libc::read(go[0], answer.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    let result = (|| {
        check(child)?;
        let mut byte = [0u8; 1];
        // SAFETY: reading one byte from our own pipe.
        let n = unsafe { libc::read(ready[0], byte.as_mut_ptr().cast(), 1) };
        if n != 1 || byte[0] != 1 {
            return Err(io::Error::other("cannot create a user namespace"));
        }
        let line = |start: u32| format!("0 {start} {}\n{} 0 1\n", range.count, range.count);
        std::fs::write(format!("/proc/{child}/uid_map"), line(range.uid_start))?;
        std::fs::write(format!("/proc/{child}/gid_map"), line(range.gid_start))?;
        let file = std::fs::File::open(format!("/proc/{child}/ns/user"))?;
        Ok(OwnedFd::from(file))
    })();
    // SAFETY: closing and waiting on what this function made.
    unsafe {
        for fd in [ready[0], ready[1], go[0], go[1]] {
            libc::close(fd);
        }
        if child > 0 {
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
    }
    result
}

pub(crate) fn umount(path: &Path) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: a valid C string.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) })
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
