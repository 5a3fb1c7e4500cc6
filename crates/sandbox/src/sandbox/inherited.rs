//! What the command could inherit from whoever ran dockless, cut off by construction: every
//! descriptor above 2 (a CI runner's, make's jobserver, a shell's `exec 7<dir`: a directory
//! descriptor climbs with `..` to the host's root whatever the mount namespace) and the
//! invoker's session, whose terminal takes input from `TIOCSTI`.
//!
//! The command's standard output and error are a pipe dockless owns and relays (see
//! [`super::run`]), never the invoker's terminal.
//!
//! Steps fail with text: in the helper, an error only becomes the status file's message.

use std::io;

/// Marks every descriptor above standard error close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`, Linux 5.11), so no exec the helper makes carries one: not the
/// command's, nor newuidmap's. Descriptors the helper still needs (its status file, its pipes)
/// stay usable until then; those it opens later are close-on-exec anyway.
pub(super) fn close_on_exec_above_stderr() -> Result<(), String> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with integer arguments; it only changes descriptor flags.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // Older kernels: set the flag one descriptor at a time.
    let fds = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("cannot list the descriptors to close ({err}; {e})"))?;
    let numbers: Vec<libc::c_int> = fds
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in numbers {
        // SAFETY: fcntl on a descriptor number; a closed one just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// A session of the command's own, without a controlling terminal: `/dev/tty` opens nothing,
/// and no terminal of the invoker's can be pushed input or signals.
pub(super) fn new_session() -> Result<(), String> {
    // SAFETY: setsid has no arguments; PID 1 of a new PID namespace leads no process group
    // of the parent's.
    if unsafe { libc::setsid() } < 0 {
        return Err(format!(
            "cannot give RUN a session of its own: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}
