//! A build stopped by a signal: the first SIGINT, SIGTERM or SIGHUP asks the build to stop.
//!
//! The CLI's signal thread calls [`request`]. That kills every RUN at once (each sandbox
//! helper gets SIGTERM, kills its sandbox's PID 1, and with it the whole PID namespace, and
//! gives the files it shifted back their owners) and makes [`check`] fail, so the build
//! unwinds the ordinary way: every working tree, temporary file and secret file is dropped by
//! its owner, and the CLI then says "interrupted" once and exits 128 + the signal.
//!
//! Long loops that do not wait on a child (unpacking and copying trees) call [`check`]; a
//! step that neither waits nor checks (a network transfer) is cut short by the CLI after a
//! grace period, and the next command sweeps what that left (see [`crate::session`]).

use std::io;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that asked the build to stop (0: none yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The sandbox helpers running now, by pid. Spawning and [`request`] both hold the lock, so a
/// helper is either killed by `request` or never started.
static HELPERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// What a step returns when it stopped because the build was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// The signal that interrupted the build, if one did.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Fails once the build has been interrupted.
pub fn check() -> Result<(), Interrupted> {
    match requested() {
        Some(_) => Err(Interrupted),
        None => Ok(()),
    }
}

/// [`check`] for I/O loops. Not `ErrorKind::Interrupted`: `io::copy` and friends retry that.
pub fn check_io() -> io::Result<()> {
    check().map_err(io::Error::other)
}

/// Asks the build to stop because of `signal`; kills the running sandboxes. Returns whether
/// this was the first request (a second one should end the process at once).
pub fn request(signal: i32) -> bool {
    let first = SIGNAL
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if first {
        let helpers = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
        for pid in helpers.iter() {
            // SAFETY: a signal to a child this process started and has not reaped yet (it is
            // removed from the list before it is waited for to the end).
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
        }
    }
    first
}

/// A sandbox helper started by [`spawn_helper`]; forgotten when waited for.
pub struct Helper(Child);

/// Starts a sandbox helper, unless the build is already interrupted.
pub fn spawn_helper(command: &mut Command) -> io::Result<Helper> {
    let mut helpers = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
    check_io()?;
    let child = command.spawn()?;
    helpers.push(child.id());
    Ok(Helper(child))
}

impl Helper {
    /// The helper's standard input, when it was started with a pipe there (the spec goes
    /// through it).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.0.stdin.take()
    }

    /// Waits for the helper to end.
    pub fn wait(mut self) -> io::Result<std::process::ExitStatus> {
        let pid = self.0.id();
        loop {
            // Waits for the end without reaping: until it is reaped the pid cannot be reused,
            // so `request` may still signal it.
            // SAFETY: waitid on our own child, with a zeroed out-parameter.
            let rc = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
            };
            if rc == 0 {
                break;
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                forget(pid);
                return Err(error);
            }
        }
        forget(pid);
        self.0.wait()
    }
}

fn forget(pid: u32) {
    HELPERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}
