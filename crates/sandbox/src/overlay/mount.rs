//! Mounting a RUN's overlay where only the caller sees it: a thread of its own enters a new
//! mount namespace (a thread may, since it gets its own file system context), so the mount
//! needs no cleanup, vanishes when the thread ends, whatever happens, and never shows on the
//! host. Each layer is first attached under a short name (`0`, `1`, …, `s`) in a directory of
//! its own, which keeps the option string far below the page it must fit in however many
//! layers the stack has.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What one overlay mount is made of.
pub(crate) struct Plan<'a> {
    /// Topmost first.
    pub lowers: &'a [PathBuf],
    /// Holds `upper/` and `work/`.
    pub snapshot: &'a Path,
    pub merged: &'a Path,
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
    let mut lowerdir = Vec::new();
    for (i, lower) in plan.lowers.iter().enumerate() {
        attach(lower, &plan.names.join(i.to_string()))?;
        lowerdir.push(i.to_string());
    }
    attach(plan.snapshot, &plan.names.join("s"))?;
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

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;

/// Attaches a copy of the mount of `source` at `target` (made here).
fn attach(source: &Path, target: &Path) -> io::Result<()> {
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
