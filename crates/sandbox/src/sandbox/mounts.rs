//! The sandbox's file system: the tree as the root of a private mount namespace, with a fresh
//! /proc (Docker's masked and read-only paths), a small /dev, the host's resolv.conf and hosts,
//! and nothing of the host's root left above it.
//!
//! Every path here is relative to the working directory, which the helper set to the tree
//! before it entered any namespace (see [`super::helper_main`]).
//!
//! Steps fail with text: in the helper, an error only becomes the status file's message.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::InlineScript;
use super::in_tree::{MountPoints, current_dir, is_plain_beneath};

/// Makes the mount points the sandbox needs and the tree lacks (/proc, /dev, /etc and the
/// /etc/resolv.conf and /etc/hosts stubs), inside the tree: none through a link.
pub(super) fn prepare(points: &mut MountPoints) -> io::Result<()> {
    for (rel, file) in [
        ("proc", false),
        ("dev", false),
        ("etc", false),
        ("etc/resolv.conf", true),
        ("etc/hosts", true),
    ] {
        points.make(rel, file, false)?;
    }
    Ok(())
}

pub(super) fn cstr(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())
}

pub(super) fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), String> {
    let source_c = CString::new(source).map_err(|e| e.to_string())?;
    let fstype_c = CString::new(fstype).map_err(|e| e.to_string())?;
    let data_c = CString::new(data).map_err(|e| e.to_string())?;
    let target_c = cstr(target)?;
    // SAFETY: valid C strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            source_c.as_ptr(),
            target_c.as_ptr(),
            if fstype.is_empty() {
                std::ptr::null()
            } else {
                fstype_c.as_ptr()
            },
            flags,
            if data.is_empty() {
                std::ptr::null()
            } else {
                data_c.as_ptr().cast()
            },
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "mount {source} on {}: {}",
            target.display(),
            io::Error::last_os_error()
        ))
    }
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// In a new mount namespace, with the tree as working directory: makes the tree the root of the
/// namespace, with everything the command needs mounted in it, and detaches the host's root.
pub(super) fn enter_root(
    scripts: &[InlineScript],
    before_pivot: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    // Nothing mounted here may propagate back to the host.
    mount(
        "none",
        Path::new("/"),
        "",
        libc::MS_REC | libc::MS_PRIVATE,
        "",
    )?;
    attach_tree()?;
    // The tree as it is now: the command has not run, but an earlier step may have made any
    // of these a link, which a mount would follow out of the tree.
    let tree = current_dir().map_err(|e| format!("cannot open the tree: {e}"))?;
    for dir in ["proc", "dev"] {
        if !is_plain_beneath(&tree, dir, true) {
            return Err(format!(
                "/{dir} in the image is not a directory (a link?): the sandbox mounts its own /{dir} there; \
                 make it a directory in an earlier step"
            ));
        }
    }
    mount_proc()?;
    mount_dev()?;
    write_scripts(Path::new("dev"), scripts)?;
    // Package managers need the host's name resolution to reach their mirrors.
    for file in ["resolv.conf", "hosts"] {
        let host = Path::new("/etc").join(file);
        let target = Path::new("etc").join(file);
        if host.exists() && is_plain_beneath(&tree, &format!("etc/{file}"), false) {
            let source = host.to_string_lossy().into_owned();
            mount(&source, &target, "", libc::MS_BIND, "")?;
            read_only(&target)?;
        }
    }
    // /sys is not the host's: an image's /sys directory gets an empty read-only file system.
    if fs::symlink_metadata("sys").is_ok_and(|m| m.is_dir()) {
        mount(
            "tmpfs",
            Path::new("sys"),
            "tmpfs",
            NOSUID_NODEV_NOEXEC | libc::MS_RDONLY,
            "mode=555",
        )?;
    }
    before_pivot()?;
    pivot()
}

/// Mounts a copy of the tree on itself (a mount of its own, which pivot_root needs) with no
/// device files usable in it, and moves the working directory onto the copy.
fn attach_tree() -> Result<(), String> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
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
            "cannot {what} for RUN: {} (the sandbox needs Linux 5.12 or later)",
            io::Error::last_os_error()
        )
    };
    let dot = c".";
    let empty = c"";
    // SAFETY: valid C strings; the result is a descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            dot.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint,
        )
    } as libc::c_int;
    if tree < 0 {
        return Err(failed("copy the tree's mount"));
    }
    // Device nodes in the tree (an image's, or one the command makes) never open a host device.
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
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
            Err(failed("mark the tree nodev"))
        } else if libc::syscall(
            libc::SYS_move_mount,
            tree,
            empty.as_ptr(),
            libc::AT_FDCWD,
            dot.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ) != 0
        {
            Err(failed("mount the tree on itself"))
        } else if libc::fchdir(tree) != 0 {
            Err(failed("enter the tree's mount"))
        } else {
            Ok(())
        }
    };
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(tree) };
    result
}

/// A fresh /proc of the sandbox's PID namespace, masked as Docker masks it. The host's /proc is
/// never used instead: its /proc/<pid>/root leads out of any sandbox.
fn mount_proc() -> Result<(), String> {
    let proc_dir = Path::new("proc");
    mount("proc", proc_dir, "proc", NOSUID_NODEV_NOEXEC, "").map_err(|e| {
        format!(
            "cannot mount a /proc for RUN ({e}). The kernel refuses a new /proc where the /proc dockless \
             sees is partly hidden (as in a container that masks /proc/kcore or /proc/sys): run dockless \
             on the host or in a container with an unmasked /proc (Docker: --security-opt systempaths=unconfined), \
             or remove the RUN instructions"
        )
    })?;
    for file in [
        "kcore",
        "keys",
        "latency_stats",
        "timer_list",
        "timer_stats",
        "sched_debug",
    ] {
        let target = proc_dir.join(file);
        if target.exists() {
            mount("/dev/null", &target, "", libc::MS_BIND, "")?;
        }
    }
    for dir in ["acpi", "asound", "scsi"] {
        let target = proc_dir.join(dir);
        if target.is_dir() {
            mount(
                "tmpfs",
                &target,
                "tmpfs",
                NOSUID_NODEV_NOEXEC | libc::MS_RDONLY,
                "mode=555",
            )?;
        }
    }
    for path in ["bus", "fs", "irq", "sys", "sysrq-trigger"] {
        let target = proc_dir.join(path);
        if target.exists() {
            mount(
                &target.to_string_lossy(),
                &target,
                "",
                libc::MS_BIND | libc::MS_REC,
                "",
            )?;
            read_only(&target)?;
        }
    }
    Ok(())
}

/// Remounts the bind mount at `target` read-only.
fn read_only(target: &Path) -> Result<(), String> {
    mount(
        "none",
        target,
        "",
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID_NODEV_NOEXEC,
        "",
    )
}

/// A small /dev: the harmless character devices of the host, no block device, private ptys,
/// and no /dev/tty (the command has no controlling terminal; the host's is never bound in).
fn mount_dev() -> Result<(), String> {
    let dev = Path::new("dev");
    mount(
        "tmpfs",
        dev,
        "tmpfs",
        NOSUID_NODEV_NOEXEC,
        "mode=755,size=65536k",
    )?;
    for name in ["null", "zero", "full", "random", "urandom"] {
        let target = dev.join(name);
        File::create(&target).map_err(|e| format!("create /{}: {e}", target.display()))?;
        // A bind keeps the flags of the host's /dev, so these open despite nodev above.
        mount(&format!("/dev/{name}"), &target, "", libc::MS_BIND, "")?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(name));
    }
    for dir in ["pts", "shm", "mqueue"] {
        let _ = fs::create_dir(dev.join(dir));
    }
    // Terminals for programs that want one (apt's log, script); a private instance.
    let _ = mount(
        "devpts",
        &dev.join("pts"),
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    );
    let _ = mount(
        "shm",
        &dev.join("shm"),
        "tmpfs",
        NOSUID_NODEV_NOEXEC,
        "mode=1777,size=65536k",
    );
    Ok(())
}

/// The RUN heredoc scripts, in a tmpfs of their own under the sandbox's /dev (/dev itself is
/// noexec), which no layer sees.
fn write_scripts(dev: &Path, scripts: &[InlineScript]) -> Result<(), String> {
    if scripts.is_empty() {
        return Ok(());
    }
    let pipes = dev.join("pipes");
    fs::create_dir_all(&pipes).map_err(|e| format!("create /{}: {e}", pipes.display()))?;
    mount(
        "tmpfs",
        &pipes,
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=755,size=16384k",
    )?;
    for script in scripts {
        if script.name.contains('/') || script.name == ".." || script.name == "." {
            return Err(format!(
                "the heredoc name `{}` cannot name a file",
                script.name
            ));
        }
        let path = pipes.join(&script.name);
        fs::write(&path, &script.content)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| format!("write /{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The tree becomes the namespace's root and the host's root is detached from it, so no
/// chroot trick, descriptor or `..` leads above the tree (pivot_root(2): new_root and put_old
/// may be the same directory).
fn pivot() -> Result<(), String> {
    let dot = c".";
    // SAFETY: valid C strings.
    unsafe {
        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) != 0 {
            return Err(format!(
                "pivot_root into the tree: {}",
                io::Error::last_os_error()
            ));
        }
        if libc::umount2(dot.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(format!(
                "detach the host's root: {}",
                io::Error::last_os_error()
            ));
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(format!("chdir /: {}", io::Error::last_os_error()));
        }
    }
    Ok(())
}
