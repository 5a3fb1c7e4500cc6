//! PID 1 of the sandbox: its file system, its network, its identity and fences, then the
//! command.
//!
//! Steps fail with text: in the helper, an error only becomes the status file's message.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::step_mounts::{self, Prepared};
use super::{Mapping, Network, Spec, caps, inherited, mounts, network, seccomp};

pub(super) enum Never {}

/// Sets the sandbox up and executes the command. Returns only on failure.
pub(super) fn init(spec: &Spec, mapping: Mapping, prepared: &Prepared) -> Result<Never, String> {
    inherited::new_session()?;
    // A mount namespace of PID 1's own: its mounts vanish with it, so the tree its parent reads
    // afterwards has none.
    // SAFETY: unshare with a constant flag.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(format!(
            "cannot create a mount namespace: {}",
            io::Error::last_os_error()
        ));
    }
    mounts::enter_root(&spec.scripts, || {
        step_mounts::attach(&spec.mounts, prepared)
    })?;
    let name = super::HOSTNAME;
    // SAFETY: a valid buffer of the given length.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(format!(
            "cannot name the sandbox's host: {}",
            io::Error::last_os_error()
        ));
    }
    if spec.network == Network::None {
        network::loopback_up()?;
    }
    std::fs::create_dir_all(&spec.workdir)
        .and_then(|()| std::env::set_current_dir(&spec.workdir))
        .map_err(|e| format!("WORKDIR {}: {e}", spec.workdir))?;
    // What root may never get back: capabilities outside Docker's default set.
    caps::limit_bounding_set()?;
    if mapping != Mapping::Single {
        // SAFETY: dropping supplementary groups; no pointers are read when the count is 0.
        unsafe { libc::setgroups(0, std::ptr::null()) };
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setgid(spec.gid) } != 0 || unsafe { libc::setuid(spec.uid) } != 0 {
        let err = io::Error::last_os_error();
        return Err(if mapping == Mapping::Single {
            format!(
                "USER {}:{} cannot be used by RUN in the rootless sandbox ({err}): only root is mapped in its user namespace; \
                 run the build as root (--isolation=root), or switch USER after the RUN steps",
                spec.uid, spec.gid
            )
        } else {
            format!("cannot switch to USER {}:{}: {err}", spec.uid, spec.gid)
        });
    }
    // A USER other than root has lost its capabilities in setuid; root keeps the default set.
    caps::limit_to_default()?;
    // SAFETY: a prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot set no_new_privs: {}",
            io::Error::last_os_error()
        ));
    }
    // Nothing the invoker (or dockless) holds open reaches the command.
    inherited::close_on_exec_above_stderr()?;
    // Switching users reset the parent-death signal: set it again for the command.
    super::lifeline::die_with_parent(None);
    // Last: the filter also forbids what the setup above needed (mount, pivot_root, unshare).
    seccomp::install()?;
    exec(spec, prepared)
}

fn exec(spec: &Spec, prepared: &Prepared) -> Result<Never, String> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err("RUN has an empty command".into());
    };
    // Only what the Dockerfile gives the command: nothing of dockless's own environment.
    let err = Command::new(program)
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .envs(prepared.env.iter().map(|(k, v)| (k, v)))
        .exec();
    let hint = if err.kind() == io::ErrorKind::NotFound {
        if program.contains('/') {
            format!(" ({program} is not in the image)")
        } else {
            format!(
                " (not found in the image's PATH={})",
                spec.env
                    .iter()
                    .find(|(k, _)| k == "PATH")
                    .map_or("", |(_, v)| v.as_str())
            )
        }
    } else {
        String::new()
    };
    Err(format!(
        "cannot execute {program}: {err}{hint}; RUN's shell form needs a shell in the image (SHELL sets which), the exec form [\"program\", \"arg\"] runs a program directly"
    ))
}
