//! The helper as a process: started by the build with its specification on standard input
//! (never in its command line, which any local user reads with `ps`) and its output through a
//! pipe the build reads; and, inside the helper, that specification read back.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use super::{SANDBOX_ARG, SandboxError, Spec, lifeline};

/// Starts the helper with `json`, the specification, on its standard input: never in its
/// command line, which any local user reads with `ps`. The command's output (the helper's
/// standard output and error) always comes back through a pipe this process reads (see
/// [`crate::output`]), so the command never holds the invoker's terminal, whose input
/// queue `TIOCSTI` fills: raw to this process's standard error, or line by line to `output`.
pub(super) fn run_helper(
    json: &[u8],
    output: Option<crate::OutputSink>,
) -> Result<ExitStatus, SandboxError> {
    // This very binary, even if its file was replaced or removed since it started.
    let program = PathBuf::from("/proc/self/exe");
    let spawn_error = |source| SandboxError::Spawn {
        program: program.clone(),
        source,
    };
    let output = crate::output::CommandOutput::new(output).map_err(spawn_error)?;
    let mut helper = Command::new(&program);
    // The helper needs nothing from this process's environment (its spec comes on standard
    // input, the command's environment is the image's), so it gets none: no credential this
    // process holds (E2B's key, a registry password in a variable) can reach the sandbox.
    helper
        .env_clear()
        .arg(SANDBOX_ARG)
        .stdin(Stdio::piped())
        .stdout(output.stdout().map_err(spawn_error)?)
        .stderr(output.stderr().map_err(spawn_error)?);
    lifeline::dies_with_this_process(&mut helper);
    let spawned = dockless_oci::cancel::spawn_helper(&mut helper);
    // The command keeps the write ends: dropped here, the reader ends when the sandbox does.
    drop(helper);
    let mut child = match spawned {
        Ok(child) => child,
        Err(source) => {
            output.finish();
            return Err(spawn_error(source));
        }
    };
    if let Some(mut stdin) = child.take_stdin() {
        // A helper that stopped early says why in its status file; a broken pipe adds nothing.
        let _ = stdin.write_all(json);
    }
    let status = child.wait().map_err(spawn_error);
    output.finish();
    status
}

/// The specification the helper's parent writes on its standard input, which then becomes
/// /dev/null, as the command's standard input has always been.
pub(super) fn read_spec() -> Result<Spec, String> {
    let mut json = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut json)
        .map_err(|e| format!("cannot read the specification: {e}"))?;
    let null = File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    // SAFETY: dup2 onto standard input of a descriptor this process owns.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(format!(
            "cannot make /dev/null standard input: {}",
            io::Error::last_os_error()
        ));
    }
    serde_json::from_slice(&json).map_err(|e| format!("bad specification: {e}"))
}
