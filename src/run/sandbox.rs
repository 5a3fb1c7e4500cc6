//! Running one command with a materialised file system as its root, without a daemon.
//!
//! The build process is multi-threaded, and a multi-threaded process may not enter a new user
//! namespace, so the work happens in a helper: the dockless binary started again with
//! [`SANDBOX_ARG`] and a JSON [`Spec`]. The helper unshares the user (unless it is root), mount
//! and PID namespaces, maps the invoking user to root, and forks the command's parent-to-be,
//! which becomes PID 1: it mounts /proc, a small /dev, the host's resolv.conf and hosts, then
//! chroots into the tree and executes the command. The host network is used as is.
//!
//! Mount points the sandbox needs but the image lacks are made before and removed after, so
//! they never show in the layer.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The first argument that makes the dockless binary act as the sandbox helper.
pub const SANDBOX_ARG: &str = "__dockless-sandbox";

/// Exit code of the helper when the sandbox itself could not be set up.
const SETUP_FAILED: i32 = 125;

/// How RUN commands are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Root: mount and PID namespaces; anyone else: a user namespace too.
    #[default]
    Auto,
    /// A user namespace mapping the invoking user to root.
    Userns,
    /// Real root: mount and PID namespaces only.
    Root,
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Isolation::Auto),
            "userns" => Ok(Isolation::Userns),
            "root" => Ok(Isolation::Root),
            _ => Err(format!("--isolation {s}: expected auto, userns or root")),
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
    pub scripts: Vec<InlineScript>,
    pub env: Vec<(String, String)>,
    /// Absolute, inside the root.
    pub workdir: String,
    pub uid: u32,
    pub gid: u32,
    pub userns: bool,
    pub host_uid: u32,
    pub host_gid: u32,
    /// Subordinate IDs to map to 1… (from /etc/subuid and /etc/subgid), when there are some.
    pub subids: Option<SubIds>,
    /// With subordinate IDs: the owners to give the files before the command (a list of
    /// `[path, uid, gid]`), replaced after it by the owners the files then have.
    pub owners: Option<PathBuf>,
    /// Where the helper writes why the sandbox could not be set up.
    pub status: PathBuf,
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

/// Decides the isolation for this process, or says why it cannot be had.
pub fn choose(isolation: Isolation) -> Result<bool, SandboxError> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    match isolation {
        Isolation::Auto => Ok(euid != 0),
        Isolation::Userns => Ok(true),
        Isolation::Root if euid == 0 => Ok(false),
        Isolation::Root => Err(SandboxError::RootNeeded(euid)),
    }
}

/// Runs the command described by `spec` (with `spec.status` unset: it is chosen here) and
/// returns its exit code. The command's output goes to this process's standard error, so that
/// `--json` on standard output stays clean.
pub fn run(mut spec: Spec) -> Result<i32, SandboxError> {
    let status_dir = tempfile::tempdir().map_err(|source| SandboxError::Prepare {
        path: std::env::temp_dir(),
        source,
    })?;
    spec.status = status_dir.path().join("status");
    File::create(&spec.status).map_err(|source| SandboxError::Prepare {
        path: spec.status.clone(),
        source,
    })?;
    if spec.userns {
        // The helper (now root of its namespace) must be able to write the status file.
        let _ = std::os::unix::fs::chown(&spec.status, Some(spec.host_uid), Some(spec.host_gid));
    }
    let made = MountPoints::prepare(&spec.rootfs)?;
    // This very binary, even if its file was replaced or removed since it started.
    let program = PathBuf::from("/proc/self/exe");
    let json = serde_json::to_string(&spec).unwrap_or_default();
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| SandboxError::Spawn {
            program: program.clone(),
            source,
        })?;
    let mut helper = Command::new(&program);
    // Secrets dockless holds for itself stay out of the sandbox, even out of its helper.
    for name in crate::registry::SECRETS_NOT_FOR_HELPERS {
        helper.env_remove(name);
    }
    let status = helper
        .arg(SANDBOX_ARG)
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .status()
        .map_err(|source| SandboxError::Spawn {
            program: program.clone(),
            source,
        });
    made.remove();
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

/// Mount points made for the sandbox, to be removed after it (deepest first).
struct MountPoints {
    made: Vec<PathBuf>,
}

impl MountPoints {
    fn prepare(root: &Path) -> Result<Self, SandboxError> {
        let mut made = MountPoints { made: Vec::new() };
        for (rel, dir) in [
            ("proc", true),
            ("dev", true),
            ("etc", true),
            ("etc/resolv.conf", false),
            ("etc/hosts", false),
        ] {
            let path = root.join(rel);
            if fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            let result = if dir {
                fs::create_dir(&path)
            } else {
                File::create(&path).map(drop)
            };
            if let Err(source) = result {
                made.remove();
                return Err(SandboxError::Prepare { path, source });
            }
            made.made.push(path);
        }
        Ok(made)
    }

    fn remove(&self) {
        for path in self.made.iter().rev() {
            let _ = fs::remove_file(path).or_else(|_| fs::remove_dir(path));
        }
    }
}

/// The helper's entry point: `dockless __dockless-sandbox SPEC`. Returns the exit code.
pub fn helper_main(json: &str) -> i32 {
    let spec: Spec = match serde_json::from_str(json) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("dockless sandbox: bad specification: {e}");
            return SETUP_FAILED;
        }
    };
    let mut status = Status(OpenOptions::new().append(true).open(&spec.status).ok());
    match (spec.userns, spec.subids) {
        (true, Some(subids)) => with_subids(&spec, subids, &mut status),
        _ => contained(&spec, &mut status),
    }
}

/// Where the helper reports a sandbox that could not be set up.
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

/// The child enters a new user namespace; this process, still outside, maps the invoking user
/// to root and the subordinate range to 1… with the setuid newuidmap/newgidmap (only a process
/// outside the namespace can write a mapping of more than one ID).
fn with_subids(spec: &Spec, subids: SubIds, status: &mut Status) -> i32 {
    let (mut ready, mut go) = ([0; 2], [0; 2]);
    // SAFETY: two valid arrays for pipe's file descriptors.
    if unsafe { libc::pipe(ready.as_mut_ptr()) } != 0 || unsafe { libc::pipe(go.as_mut_ptr()) } != 0
    {
        return status.fail(format!(
            "cannot make a pipe: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: this process is single-threaded, so the child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => status.fail(format!("cannot fork: {}", io::Error::last_os_error())),
        0 => {
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
                        contained(spec, status)
                    } else {
                        SETUP_FAILED
                    }
                }
            };
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        child => {
            let mut byte = [0u8; 1];
            // SAFETY: reading one byte from our own pipe.
            let n = unsafe { libc::read(ready[0], byte.as_mut_ptr().cast(), 1) };
            let mut answer = 0u8;
            let mut failure = None;
            if n == 1 && byte[0] == 1 {
                match map_subids(child, spec, subids) {
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

fn map_subids(child: libc::pid_t, spec: &Spec, subids: SubIds) -> Result<(), String> {
    for (tool, id, start, count) in [
        (
            "newuidmap",
            spec.host_uid,
            subids.uid_start,
            subids.uid_count,
        ),
        (
            "newgidmap",
            spec.host_gid,
            subids.gid_start,
            subids.gid_count,
        ),
    ] {
        let mut command = Command::new(tool);
        for name in crate::registry::SECRETS_NOT_FOR_HELPERS {
            command.env_remove(name);
        }
        let out = command
            .args([child.to_string(), "0".into(), id.to_string(), "1".into()])
            .args(["1".to_owned(), start.to_string(), count.to_string()])
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{tool} refused to map the subordinate IDs of /etc/sub{}id: {}",
                &tool[3..4],
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// In the sandbox's namespaces (made here, except a user namespace already made and mapped):
/// forks PID 1, waits for it, and with subordinate IDs hands the owners back to the host.
fn contained(spec: &Spec, status: &mut Status) -> i32 {
    let mut flags = libc::CLONE_NEWPID;
    let single = spec.userns && spec.subids.is_none();
    if single {
        flags |= libc::CLONE_NEWUSER;
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
    if single && let Err(e) = map_ids(spec) {
        return status.fail(format!(
            "cannot map the invoking user to root in the sandbox: {e}"
        ));
    }
    let mut kept_aside = Vec::new();
    if spec.subids.is_some()
        && let Some(owners) = &spec.owners
    {
        match super::owners::apply(&spec.rootfs, owners) {
            Ok(list) => kept_aside = list,
            Err(e) => {
                return status.fail(format!("cannot give the image's files their owners: {e}"));
            }
        }
    }
    // SAFETY: this process is single-threaded, so the child may run arbitrary code.
    let code = match unsafe { libc::fork() } {
        -1 => return status.fail(format!("cannot fork: {}", io::Error::last_os_error())),
        0 => {
            let message = match init(spec) {
                Err(message) => message,
                Ok(never) => match never {},
            };
            let code = status.fail(message);
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        child => wait(child),
    };
    if spec.subids.is_some()
        && let Some(owners) = &spec.owners
        && let Err(e) = super::owners::harvest(&spec.rootfs, owners, kept_aside)
    {
        return status.fail(format!(
            "cannot record the owners of the files the command made: {e}"
        ));
    }
    code
}

fn map_ids(spec: &Spec) -> io::Result<()> {
    fs::write("/proc/self/setgroups", "deny")?;
    fs::write("/proc/self/uid_map", format!("0 {} 1\n", spec.host_uid))?;
    fs::write("/proc/self/gid_map", format!("0 {} 1\n", spec.host_gid))
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

enum Never {}

fn cstr(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())
}

fn mount(
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

/// PID 1 of the sandbox: mounts, chroot, identity, exec. Returns only on failure.
fn init(spec: &Spec) -> Result<Never, String> {
    let root = &spec.rootfs;
    // A mount namespace of PID 1's own: its mounts vanish with it, so the tree its parent reads
    // afterwards has none. Nothing may propagate back to the host.
    // SAFETY: unshare with a constant flag.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(format!(
            "cannot create a mount namespace: {}",
            io::Error::last_os_error()
        ));
    }
    mount(
        "none",
        Path::new("/"),
        "",
        libc::MS_REC | libc::MS_PRIVATE,
        "",
    )?;
    let proc_dir = root.join("proc");
    if mount(
        "proc",
        &proc_dir,
        "proc",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    )
    .is_err()
    {
        // Some containers mask parts of /proc, which forbids a fresh proc mount in a user
        // namespace; the host's (recursive bind) is the fallback.
        mount("/proc", &proc_dir, "", libc::MS_BIND | libc::MS_REC, "")?;
    }
    let dev = root.join("dev");
    mount(
        "tmpfs",
        &dev,
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "mode=755,size=65536k",
    )?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        File::create(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
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
    write_scripts(&dev, &spec.scripts)?;
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
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "mode=1777,size=65536k",
    );
    // Package managers need the host's name resolution to reach their mirrors.
    for file in ["resolv.conf", "hosts"] {
        let host = Path::new("/etc").join(file);
        let target = root.join("etc").join(file);
        let is_plain_file = fs::symlink_metadata(&target).is_ok_and(|m| m.is_file());
        if host.exists() && is_plain_file {
            let source = host.to_string_lossy().into_owned();
            mount(&source, &target, "", libc::MS_BIND, "")?;
            let _ = mount(
                &source,
                &target,
                "",
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                "",
            );
        }
    }
    let root_c = cstr(root)?;
    // SAFETY: a valid C string.
    if unsafe { libc::chroot(root_c.as_ptr()) } != 0 {
        return Err(format!(
            "chroot {}: {}",
            root.display(),
            io::Error::last_os_error()
        ));
    }
    fs::create_dir_all(&spec.workdir)
        .and_then(|()| std::env::set_current_dir(&spec.workdir))
        .map_err(|e| format!("WORKDIR {}: {e}", spec.workdir))?;
    if !spec.userns || spec.subids.is_some() {
        // SAFETY: dropping supplementary groups; no pointers are read when the count is 0.
        unsafe { libc::setgroups(0, std::ptr::null()) };
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setgid(spec.gid) } != 0 || unsafe { libc::setuid(spec.uid) } != 0 {
        let err = io::Error::last_os_error();
        return Err(if spec.userns {
            format!(
                "USER {}:{} cannot be used by RUN in the rootless sandbox ({err}): only root is mapped in its user namespace; \
                 run the build as root (--isolation=root), or switch USER after the RUN steps",
                spec.uid, spec.gid
            )
        } else {
            format!("cannot switch to USER {}:{}: {err}", spec.uid, spec.gid)
        });
    }
    let Some((program, args)) = spec.argv.split_first() else {
        return Err("RUN has an empty command".into());
    };
    let err = Command::new(program)
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
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

/// The RUN heredoc scripts, in the sandbox's own /dev (a tmpfs no layer sees).
fn write_scripts(dev: &Path, scripts: &[InlineScript]) -> Result<(), String> {
    if scripts.is_empty() {
        return Ok(());
    }
    let pipes = dev.join("pipes");
    fs::create_dir_all(&pipes).map_err(|e| format!("create {}: {e}", pipes.display()))?;
    // /dev itself is noexec: the scripts get a tmpfs of their own that allows running them.
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
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The invoking user's subordinate IDs, when /etc/subuid and /etc/subgid list some and the
/// setuid newuidmap and newgidmap (Debian's `uidmap`) are installed; `None` means a
/// single-ID mapping (only root exists in the sandbox).
pub fn subordinate_ids(uid: u32, gid: u32) -> Option<SubIds> {
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
    };
    if !on_path("newuidmap") || !on_path("newgidmap") {
        return None;
    }
    let name = |file: &str, id: u32| -> Option<String> {
        fs::read_to_string(file).ok()?.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.get(2) == Some(&id.to_string().as_str())).then(|| fields[0].to_owned())
        })
    };
    let user = name("/etc/passwd", uid);
    let group = name("/etc/group", gid);
    let range = |file: &str, id: u32, name: Option<&str>| -> Option<(u32, u32)> {
        fs::read_to_string(file).ok()?.lines().find_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            let start = fields.next()?.parse().ok()?;
            let count = fields.next()?.parse().ok()?;
            (owner == id.to_string() || Some(owner) == name).then_some((start, count))
        })
    };
    let (uid_start, uid_count) = range("/etc/subuid", uid, user.as_deref())?;
    // newgidmap checks /etc/subgid against the user's name too, not the group's.
    let (gid_start, gid_count) = range("/etc/subgid", uid, user.as_deref())
        .or_else(|| range("/etc/subgid", gid, group.as_deref()))?;
    Some(SubIds {
        uid_start,
        uid_count,
        gid_start,
        gid_count,
    })
}
