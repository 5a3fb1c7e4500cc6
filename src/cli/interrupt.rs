//! Signals. The first SIGINT, SIGTERM or SIGHUP stops the build ([`dockless_oci::cancel`]): its
//! RUN commands are killed, it unwinds and drops its temporary files, and the command says
//! "interrupted" once and exits 128 + the signal (130, 143, 129), as a shell expects. A build
//! still busy after [`GRACE`] (a transfer that does not look at the request) is ended then,
//! after removing what it registered. A second signal ends the process at once; what it
//! leaves is swept by the next command that opens the store.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

/// How long a stopping build may take to unwind by itself.
const GRACE: Duration = Duration::from_secs(5);

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Whether "interrupted" was written.
static SAID: AtomicBool = AtomicBool::new(false);
/// Held by the one path that cleans up and exits.
static EXITING: Mutex<()> = Mutex::new(());

/// The write end of the pipe the signal handler writes each signal's number to.
static PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    // SAFETY: write and errno access are async-signal-safe; errno is restored for the
    // interrupted code.
    unsafe {
        let saved = *libc::__errno_location();
        let byte = signal as u8;
        libc::write(PIPE.load(Ordering::SeqCst), (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = saved;
    }
}

/// Hands the stop signals to one thread that acts on them. A handler that writes to a pipe,
/// not a blocked mask and `sigwait`: children inherit a mask, and a sandbox helper or a
/// credential helper started with these signals blocked would not stop.
pub fn watch() {
    let mut fds = [0; 2];
    // SAFETY: a valid array for pipe2's two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    PIPE.store(fds[1], Ordering::SeqCst);
    let reader = fds[0];
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut byte = 0u8;
                // SAFETY: reading one byte from our own pipe into a valid buffer.
                let n = unsafe { libc::read(reader, (&mut byte as *mut u8).cast(), 1) };
                if n == 1 {
                    act(libc::c_int::from(byte));
                }
            }
        });
    if spawned.is_err() {
        return;
    }
    for signal in SIGNALS {
        // SAFETY: a zeroed sigaction with a handler that only writes to a pipe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The first signal stops the build (and, after the grace period, the process); a second one
/// ends the process at once.
fn act(signal: libc::c_int) {
    if dockless_oci::cancel::request(signal) {
        std::thread::spawn(move || {
            std::thread::sleep(GRACE);
            finish(signal)
        });
    } else {
        say();
        // SAFETY: ending the process now is the point of a second signal.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// After the command: if a signal stopped it, clean up, say so and exit.
pub fn exit_if_interrupted() {
    if let Some(signal) = dockless_oci::cancel::requested() {
        finish(signal);
    }
}

fn finish(signal: libc::c_int) -> ! {
    let _only_one = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    dockless_oci::cleanup::remove_all();
    say();
    std::process::exit(128 + signal)
}

fn say() {
    if !SAID.swap(true, Ordering::SeqCst) {
        eprintln!("interrupted");
    }
}
