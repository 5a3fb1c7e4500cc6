//! Nothing a RUN started outlives the build.
//!
//! The chain is dockless → helper → (a child in the new user namespace) → PID 1 of the
//! sandbox → the command's processes. Each link dies with the one above it: the helper gets
//! SIGTERM when dockless dies (`PR_SET_PDEATHSIG`), and on SIGINT/SIGTERM/SIGHUP it kills its
//! child with SIGKILL and then still gives the shifted files their owners back; the processes
//! below it get SIGKILL when their parent dies. When PID 1 dies the kernel kills everything
//! else in its PID namespace. The parent-death signal is reset by `fork` and by a change of
//! user or group, so it is set again in each child after those.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The helper's (or its namespace child's) one child, 0 before it is forked.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// What the child gets on a stop: SIGKILL for PID 1, SIGTERM for a helper's namespace child
/// (which handles it like the helper: it kills PID 1, then hands the owners back).
static FORWARD: AtomicI32 = AtomicI32::new(libc::SIGKILL);
/// Whether a stop signal came (before the child existed, it is stopped as soon as it does).
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Makes the helper `command` starts die (by SIGTERM, which it handles) when this process
/// dies, even by SIGKILL.
pub(super) fn dies_with_this_process(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only makes async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // This process died before the line above: nothing would signal the helper.
            if libc::getppid() != parent {
                return Err(io::Error::other("dockless ended"));
            }
            Ok(())
        });
    }
}

/// In a freshly forked child: SIGKILL when the parent dies. `parent` is the parent's pid as
/// this child sees it (`None` in a new PID namespace, where the parent has none).
pub(super) fn die_with_parent(parent: Option<libc::pid_t>) {
    // SAFETY: prctl, getppid and _exit with plain integers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if parent.is_some_and(|pid| libc::getppid() != pid) {
            libc::_exit(super::SETUP_FAILED);
        }
    }
}

extern "C" fn on_stop(_signal: libc::c_int) {
    STOPPED.store(true, Ordering::SeqCst);
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, FORWARD.load(Ordering::SeqCst)) };
    }
}

/// In the helper, first thing: a stop signal kills the sandbox instead of the helper, so the
/// helper can still undo what it did to the files.
pub(super) fn stop_kills_the_child() {
    // SAFETY: sigemptyset initialises the set before it is read.
    unsafe {
        // Blocked by whoever started the helper, they would never arrive.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    for signal in STOP_SIGNALS {
        // SAFETY: a zeroed sigaction with a handler that only touches atomics and calls kill.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// In the parent, right after forking PID 1: a stop signal (already come, or to come) kills it.
pub(super) fn watch(child: libc::pid_t) {
    watch_with(child, libc::SIGKILL);
}

/// In the helper, right after forking its child in the new user namespace (which runs this
/// module's handler too): a stop signal is passed on, so that the child kills PID 1 and then
/// gives the files it handed to the sandbox's IDs back.
pub(super) fn watch_namespace_child(child: libc::pid_t) {
    watch_with(child, libc::SIGTERM);
}

fn watch_with(child: libc::pid_t, signal: libc::c_int) {
    FORWARD.store(signal, Ordering::SeqCst);
    CHILD.store(child, Ordering::SeqCst);
    if STOPPED.load(Ordering::SeqCst) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child, signal) };
    }
}
