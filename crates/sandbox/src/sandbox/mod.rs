//! Running one command with a materialised file system as its root, without a daemon: a
//! container in the runc sense, so that nothing the command does reaches the host.
//!
//! The build process is multi-threaded, and a multi-threaded process may not enter a new user
//! namespace, so the work happens in a helper: the dockless binary started again with
//! [`SANDBOX_ARG`], a JSON [`Spec`] on its standard input (not in its command line, which `ps`
//! shows everyone), every inherited descriptor close-on-exec ([`inherited`]). The helper enters
//! a user namespace ([`ids`] decides which IDs it maps; only `--isolation root` runs without
//! one), then mount, PID, IPC, UTS and cgroup namespaces (and a network namespace for
//! `--network none`), and forks the command's parent-to-be, which becomes PID 1 ([`init`]): in
//! a session of its own, with no terminal, it mounts a fresh /proc with Docker's masked and read-only paths, a
//! small /dev, the host's resolv.conf and hosts ([`mounts`]), pivots into the tree and detaches
//! the old root, drops capabilities to Docker's default set ([`caps`]), sets no_new_privs,
//! installs a seccomp filter that is Docker's default profile as an allow list ([`seccomp`]), and
//! executes the command.
//!
//! Mount points the sandbox needs but the image lacks are made before and removed after, so
//! they never show in the layer.

mod caps;
mod ids;
pub(crate) mod in_tree;
mod inherited;
mod init;
mod lifeline;
mod mounts;
mod network;
mod overlay_run;
mod seccomp;
mod spawn;
mod step_mounts;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use ids::{IdRange, Mapping, mapping_for, store_ids, subordinate_ids};
pub use network::{Network, NetworkError};
pub use overlay_run::{LayerBlob, OverlayLower, OverlayRun, Task, names_dir};
pub use step_mounts::{MountSource, SandboxMount};

/// The host name RUN commands see, as BuildKit's sandbox names itself.
pub const HOSTNAME: &str = "buildkitsandbox";

/// The first argument that makes the dockless binary act as the sandbox helper.
pub const SANDBOX_ARG: &str = "__dockless-sandbox";

/// Exit code of the helper when the sandbox itself could not be set up.
const SETUP_FAILED: i32 = 125;

/// How RUN commands are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A user namespace, whoever runs dockless: root maps the sandbox's root to IDs that own
    /// nothing on the host, anyone else maps themselves (and their subordinate IDs).
    #[default]
    Auto,
    /// The same as `Auto`.
    Userns,
    /// Real root (needs root): no user namespace, so the sandbox's root is the host's root
    /// with Docker's default capabilities; only the mount, PID and seccomp fences hold.
    Root,
}

/// An `--isolation` value that names no isolation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--isolation {0}: expected auto, userns or root")]
pub struct IsolationError(pub String);

impl std::str::FromStr for Isolation {
    type Err = IsolationError;
    fn from_str(s: &str) -> Result<Self, IsolationError> {
        match s {
            "auto" => Ok(Isolation::Auto),
            "userns" => Ok(Isolation::Userns),
            "root" => Ok(Isolation::Root),
            _ => Err(IsolationError(s.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "--isolation=root needs root (this process runs as uid {0}); run as root, or use --isolation=userns (or auto) where unprivileged user namespaces are enabled"
    )]
    RootNeeded(u32),
    #[error("could not start the sandbox helper {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not prepare the sandbox in {}: {source}", path.display())]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// What the helper needs to know, passed as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub rootfs: PathBuf,
    pub argv: Vec<String>,
    /// Scripts made in `/dev/pipes` for the command to run.
    #[serde(default)]
    pub scripts: Vec<InlineScript>,
    pub env: Vec<(String, String)>,
    /// Absolute, inside the root.
    pub workdir: String,
    pub uid: u32,
    pub gid: u32,
    /// Whether the sandbox has a user namespace (see [`mapping_for`] for which IDs it maps).
    pub userns: bool,
    pub host_uid: u32,
    pub host_gid: u32,
    /// Subordinate IDs to map to 1… (from /etc/subuid and /etc/subgid), when there are some.
    pub subids: Option<SubIds>,
    /// With subordinate IDs: the owners to give the files before the command (a list of
    /// `[path, uid, gid]`), replaced after it by the owners the files then have.
    pub owners: Option<PathBuf>,
    /// The network the command sees.
    #[serde(default)]
    pub network: Network,
    /// RUN --mount: what is mounted where.
    #[serde(default)]
    pub mounts: Vec<SandboxMount>,
    /// Secrets the command gets as environment variables: the name, and the private file the
    /// helper reads the value from (values never travel in this specification, though it only
    /// travels through a pipe).
    #[serde(default)]
    pub secret_env: Vec<(String, PathBuf)>,
    /// Where the helper writes why the sandbox could not be set up.
    pub status: PathBuf,
    /// The host IDs the tree's and the cache mounts' owners are kept in on disk (see
    /// [`store_ids`]): the sandbox's range when run by root in a user namespace.
    #[serde(default)]
    pub store_ids: Option<IdRange>,
    /// Without root, over overlay snapshots: the helper mounts them in its user namespace.
    #[serde(default)]
    pub overlay: Option<OverlayRun>,
    /// What the helper does (run the command, unless told otherwise).
    #[serde(default)]
    pub task: Task,
    /// With [`Task::ApplyLayer`]: the layer.
    #[serde(default)]
    pub layer: Option<LayerBlob>,
}

/// A script written inline in the Dockerfile (a RUN heredoc starting with `#!`): BuildKit
/// mounts it at `/dev/pipes/<name>` with mode 0755, outside every layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineScript {
    pub name: String,
    pub content: String,
}

impl InlineScript {
    /// Where the command finds it.
    pub fn path(&self) -> String {
        format!("/dev/pipes/{}", self.name)
    }
}

/// A range of subordinate user and group IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubIds {
    pub uid_start: u32,
    pub uid_count: u32,
    pub gid_start: u32,
    pub gid_count: u32,
}

/// Decides whether the sandbox has a user namespace, or says why the isolation asked for
/// cannot be had.
pub fn choose(isolation: Isolation) -> Result<bool, SandboxError> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    match isolation {
        Isolation::Auto | Isolation::Userns => Ok(true),
        Isolation::Root if euid == 0 => Ok(false),
        Isolation::Root => Err(SandboxError::RootNeeded(euid)),
    }
}

/// Runs the command described by `spec` (with `spec.status` unset: it is chosen here) and
/// returns its exit code. The command's output goes to this process's standard error, so that
/// `--json` on standard output stays clean.
pub fn run(spec: Spec) -> Result<i32, SandboxError> {
    run_with_output(spec, None)
}

/// [`run`], the command's output (standard output and error) going to `output` line by line
/// when given (see [`crate::output`]).
pub fn run_with_output(
    mut spec: Spec,
    output: Option<crate::OutputSink>,
) -> Result<i32, SandboxError> {
    // Beside the tree (in the process's part of the store, swept if the process dies).
    let beside = spec
        .rootfs
        .parent()
        .map_or_else(std::env::temp_dir, Path::to_owned);
    let status_dir = tempfile::tempdir_in(&beside).map_err(|source| SandboxError::Prepare {
        path: beside.clone(),
        source,
    })?;
    spec.status = status_dir.path().join("status");
    File::create(&spec.status).map_err(|source| SandboxError::Prepare {
        path: spec.status.clone(),
        source,
    })?;
    let prepare_error = |source| SandboxError::Prepare {
        path: spec.rootfs.clone(),
        source,
    };
    // The mount points dockless makes are the sandbox's root's, as the tree's root is.
    let owner = spec
        .store_ids
        .map(|range| (range.uid_start, range.gid_start));
    let mut points = in_tree::MountPoints::open(&spec.rootfs, owner).map_err(prepare_error)?;
    // Over an overlay the helper mounts, the mount points are made there, through it.
    let made = if overlay_run::in_helper(&spec) {
        Ok(())
    } else {
        mounts::prepare(&mut points)
            .and_then(|()| step_mounts::mount_points(&spec.rootfs, &mut spec.mounts, &mut points))
    };
    if let Err(source) = made {
        points.remove();
        return Err(prepare_error(source));
    }
    let json = serde_json::to_vec(&spec).unwrap_or_default();
    let status = spawn::run_helper(&json, output);
    points.remove();
    let status = status?;
    let mut problem = String::new();
    let _ = File::open(&spec.status).and_then(|mut f| f.read_to_string(&mut problem));
    if !problem.trim().is_empty() {
        return Err(SandboxError::Setup(problem.trim().to_owned()));
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// The helper's entry point: `dockless __dockless-sandbox`, the specification on standard
/// input. Returns the exit code.
pub fn helper_main() -> i32 {
    // Before anything else: no descriptor the invoker left open may reach a child.
    if let Err(e) = inherited::close_on_exec_above_stderr() {
        eprintln!("dockless sandbox: {e}");
        return SETUP_FAILED;
    }
    let spec: Spec = match spawn::read_spec() {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("dockless sandbox: {e}");
            return SETUP_FAILED;
        }
    };
    // Opened now, by the invoking user: inside a user namespace the helper may no longer be
    // able to open it (the descriptor is close-on-exec, so the command never holds it).
    lifeline::stop_kills_the_child();
    let mut status = Status(OpenOptions::new().append(true).open(&spec.status).ok());
    // Every later path into the tree is relative to this directory: the sandbox's root may not
    // be allowed to walk the host path that leads to it (root's 0700 home, for one), and the
    // working directory follows the process into its new mount namespace.
    if let Err(e) = std::env::set_current_dir(&spec.rootfs) {
        return status.fail(format!("cannot enter {}: {e}", spec.rootfs.display()));
    }
    // Before any namespace: the sandbox's root may not reach these host paths.
    let prepared = match step_mounts::prepare(&spec.rootfs, &spec.mounts, &spec.secret_env) {
        Ok(prepared) => prepared,
        Err(e) => return status.fail(e),
    };
    let mapping = mapping_for(spec.userns, spec.host_uid, spec.host_gid, spec.subids);
    match mapping {
        Mapping::Host | Mapping::Single => contained(&spec, mapping, &prepared, &mut status),
        Mapping::Subordinate(subids) => {
            in_new_userns(&spec, mapping, &prepared, &mut status, |child| {
                ids::map_subordinate(child, &spec, subids)
            })
        }
        Mapping::Shifted(range) => {
            // The tree and the caches the command mounts are kept in the sandbox's range on
            // disk (see [`crate::owners`]); a tree in any other form would show the command
            // files of no owner it knows, or make it the owner of the host's files.
            if spec.store_ids != Some(range) {
                return status.fail(format!(
                    "the tree's owners are kept as {:?} on disk, but the sandbox maps host IDs \
                     {range:?}; build again (the store's trees follow the sandbox's IDs)",
                    spec.store_ids
                ));
            }
            in_new_userns(&spec, mapping, &prepared, &mut status, |child| {
                ids::write_maps(child, range)
            })
        }
    }
}

/// Where the helper reports a sandbox that could not be set up. The helper's steps fail with
/// text (`Result<_, String>`) on purpose: the message only crosses to the build as the bytes of
/// this file (read back as [`SandboxError::Setup`]), so a typed error would be flattened at once.
struct Status(Option<File>);

impl Status {
    fn fail(&mut self, message: String) -> i32 {
        match self.0.as_mut() {
            Some(file) => {
                let _ = file.write_all(message.as_bytes());
            }
            None => eprintln!("{message}"),
        }
        SETUP_FAILED
    }
}

fn userns_unavailable(err: &io::Error) -> String {
    format!(
        "cannot create a user namespace for RUN ({err}): unprivileged user namespaces are not available here. \
         Enable them (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0, or an AppArmor/seccomp profile that allows them), \
         or build as root with --isolation=root, or remove the RUN instructions"
    )
}

/// A close-on-exec pipe: `[read end, write end]`.
fn pipe() -> io::Result<[libc::c_int; 2]> {
    let mut fds = [0; 2];
    // SAFETY: a valid array for pipe2's two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fds)
}

/// The child enters a new user namespace; this process, still outside, maps its IDs with `map`
/// (only a process outside the namespace can write a mapping of more than one ID).
fn in_new_userns(
    spec: &Spec,
    mapping: Mapping,
    prepared: &step_mounts::Prepared,
    status: &mut Status,
    map: impl FnOnce(libc::pid_t) -> Result<(), String>,
) -> i32 {
    let (ready, go) = match (pipe(), pipe()) {
        (Ok(ready), Ok(go)) => (ready, go),
        (Err(e), _) | (_, Err(e)) => return status.fail(format!("cannot make a pipe: {e}")),
    };
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: this process is single-threaded, so the child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => status.fail(format!("cannot fork: {}", io::Error::last_os_error())),
        0 => {
            lifeline::die_with_parent(Some(parent));
            // SAFETY: plain system calls on descriptors this process owns.
            let code = unsafe {
                let entered = libc::unshare(libc::CLONE_NEWUSER);
                let err = io::Error::last_os_error();
                let byte = [u8::from(entered == 0)];
                libc::write(ready[1], byte.as_ptr().cast(), 1);
                if entered != 0 {
                    status.fail(userns_unavailable(&err))
                } else {
                    let mut answer = [0u8; 1];
                    let n = libc::read(go[0], answer.as_mut_ptr().cast(), 1);
                    if n == 1 && answer[0] == 1 {
                        match become_root(mapping) {
                            Ok(()) => {
                                // Becoming root reset the parent-death signal.
                                lifeline::die_with_parent(Some(parent));
                                contained(spec, mapping, prepared, status)
                            }
                            Err(e) => status.fail(e),
                        }
                    } else {
                        SETUP_FAILED
                    }
                }
            };
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        child => {
            lifeline::watch_namespace_child(child);
            let mut byte = [0u8; 1];
            // SAFETY: reading one byte from our own pipe.
            let n = unsafe { libc::read(ready[0], byte.as_mut_ptr().cast(), 1) };
            let mut answer = 0u8;
            let mut failure = None;
            if n == 1 && byte[0] == 1 {
                match map(child) {
                    Ok(()) => answer = 1,
                    Err(e) => failure = Some(e),
                }
            }
            // SAFETY: writing one byte to our own pipe.
            unsafe { libc::write(go[1], [answer].as_ptr().cast(), 1) };
            let code = wait(child);
            match failure {
                Some(message) => status.fail(message),
                None => code,
            }
        }
    }
}

/// Run by root, the helper is still the host's root (unmapped in its new namespace, with the
/// host root's groups): it becomes the namespace's root, which files it makes belong to.
fn become_root(mapping: Mapping) -> Result<(), String> {
    if !matches!(mapping, Mapping::Shifted(_)) {
        return Ok(());
    }
    // SAFETY: plain system calls with integer arguments (no pointer is read for 0 groups).
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(0, 0, 0) != 0
            || libc::setresuid(0, 0, 0) != 0
    };
    if failed {
        return Err(format!(
            "cannot become root in the sandbox's user namespace: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// In the sandbox's namespaces (made here, except a user namespace already made and mapped):
/// forks PID 1, waits for it, and with subordinate IDs hands the owners back to the host.
fn contained(
    spec: &Spec,
    mapping: Mapping,
    prepared: &step_mounts::Prepared,
    status: &mut Status,
) -> i32 {
    // A host name of its own, as BuildKit's sandbox has; System V IPC and POSIX message
    // queues of its own, so no host segment is read and none the command makes outlives it.
    let mut flags = libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if mapping == Mapping::Single {
        flags |= libc::CLONE_NEWUSER;
    }
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare with constant flags; this process is single-threaded.
    if unsafe { libc::unshare(flags) } != 0 {
        let err = io::Error::last_os_error();
        return status.fail(if spec.userns {
            userns_unavailable(&err)
        } else {
            format!(
                "cannot create a PID namespace for RUN ({err}); run as root with CAP_SYS_ADMIN, or use --isolation=userns"
            )
        });
    }
    cgroup_namespace();
    if mapping == Mapping::Single
        && let Err(e) = ids::map_single(spec)
    {
        return status.fail(format!(
            "cannot map the invoking user to root in the sandbox: {e}"
        ));
    }
    let subordinate = matches!(mapping, Mapping::Subordinate(_));
    let mut kept_aside = Vec::new();
    if subordinate && let Some(owners) = &spec.owners {
        match super::owners::apply(&spec.rootfs, owners) {
            Ok(list) => kept_aside = list,
            Err(e) => {
                return status.fail(format!("cannot give the image's files their owners: {e}"));
            }
        }
    }
    match spec.task {
        Task::GiveOwners => return 0,
        Task::Remove => {
            return match crate::rootfs::remove_tree(&spec.rootfs) {
                Ok(()) => 0,
                Err(e) => status.fail(format!("cannot remove {}: {e}", spec.rootfs.display())),
            };
        }
        Task::Run | Task::Probe | Task::ApplyLayer => {}
    }
    let code = match &spec.overlay {
        Some(overlay) => {
            let ran = overlay_run::run(spec, overlay, |spec| {
                fork_init(spec, mapping, prepared, status)
            });
            match ran {
                Ok(code) => code,
                Err(message) => return status.fail(message),
            }
        }
        None => fork_init(spec, mapping, prepared, status),
    };
    if subordinate
        && let Some(owners) = &spec.owners
        && let Err(e) = super::owners::harvest(&spec.rootfs, owners, kept_aside)
    {
        return status.fail(format!(
            "cannot record the owners of the files the command made: {e}"
        ));
    }
    code
}

/// Forks the sandbox's PID 1 and waits for it.
fn fork_init(
    spec: &Spec,
    mapping: Mapping,
    prepared: &step_mounts::Prepared,
    status: &mut Status,
) -> i32 {
    // SAFETY: this process is single-threaded, so the child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => status.fail(format!("cannot fork: {}", io::Error::last_os_error())),
        0 => {
            // In its own PID namespace: its parent has no pid here.
            lifeline::die_with_parent(None);
            let message = match init::init(spec, mapping, prepared) {
                Err(message) => message,
                Ok(never) => match never {},
            };
            let code = status.fail(message);
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        child => {
            lifeline::watch(child);
            wait(child)
        }
    }
}

/// A cgroup namespace where the kernel has them (4.6 and later): /proc/self/cgroup shows `/`,
/// not where the invoker's cgroup lies on the host. Without one the command sees that path,
/// which is all a cgroup namespace hides, so its absence does not stop the build.
fn cgroup_namespace() {
    // SAFETY: unshare with a constant flag; this process is single-threaded.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
        tracing::debug!(
            "no cgroup namespace for RUN: {}",
            io::Error::last_os_error()
        );
    }
}

fn wait(child: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc == child {
            break;
        }
        if rc == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return SETUP_FAILED;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}
