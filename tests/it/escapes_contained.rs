//! The escape catalog, continued (issue 23): what a RUN could get from whoever ran dockless,
//! and what dockless itself does on the host around the command. Each build runs in the three
//! modes of [`MODES`] (root in its default user namespace, root with `--isolation root`,
//! rootless `nobody`) the way a CI runner or a shell may start it: with a directory, a file
//! and a socket descriptor open without close-on-exec (fds 7, 8, 9) and a pseudo-terminal as
//! its controlling terminal and standard streams.
//!
//! - Descriptors: none above 2 reaches the command (`/proc/self/fd`), so the directory
//!   descriptor's `..` does not lead to the host's root.
//! - The terminal: the command has a session of its own, no controlling terminal, no
//!   `/dev/tty`, and its output is a pipe dockless relays, so `TIOCSTI` has no terminal to fill.
//! - System V IPC and cgroups: a segment the host holds is not listed; `/proc/self/cgroup`
//!   names no host cgroup.
//! - Host paths after the command: a RUN that replaces `/etc` (where dockless made the
//!   /etc/hosts and /etc/resolv.conf stubs) and the parent of a `--mount` target with links to
//!   a host directory does not make dockless delete, or create, files there. (Over overlay
//!   snapshots `/etc` is a lower directory holding the stubs' mount points: renaming it fails,
//!   as under Docker's overlay2, and only the `--mount` half can be tried; the rootless mode
//!   runs over a copy, where both halves are.)
//! - The helper's command line (what `ps` shows every local user) holds no specification.
//! - A `.dockerignore` that is a symlink out of the context is refused, and no line of the
//!   file it points to is printed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::escapes::{MODES, Mode, nothing_escaped, unique};
use crate::run::{As, dockless_as, workspace};
use crate::support::binary::{Workspace, needs_root, umoci_unpack};

const ATTEMPTS: &str = r#"FROM {base}
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /results
RUN (ls /proc/self/fd; cat /proc/self/fd/8; ls /proc/self/fd/7/../../..; \
     cat /proc/self/fd/7/home/.docker/config.json; touch /proc/self/fd/7/escaped-fd) > /results/fds 2>&1; true
RUN (cut -d' ' -f6,7 /proc/$$/stat; readlink /proc/$$/fd/1; readlink /proc/$$/fd/2; \
     (exec 3</dev/tty && echo OPENED /dev/tty)) > /results/terminal 2>&1; sleep 1; true
RUN cat /proc/sysvipc/shm > /results/ipc 2>&1; cat /proc/self/cgroup > /results/cgroup; true
RUN mv /etc /etc.moved && ln -s {host}/victim /etc || true
RUN --mount=type=tmpfs,target=/m/t sh -c 'mv /m /m.moved && ln -s {host}/victim /m'
RUN true
RUN rm -f /m; if [ -L /etc ]; then rm -f /etc && mv /etc.moved /etc; fi
"#;

/// The files of the host directory the attempts point `/etc` and `/m` at.
const VICTIMS: [&str; 3] = ["hosts", "resolv.conf", "t"];

#[test]
fn run_gets_nothing_of_its_invoker_and_dockless_acts_only_inside_the_tree() {
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    for mode in MODES {
        let leak = unique("host-secret");
        let segment = HostSegment::new();
        let ws = workspace(ATTEMPTS);
        let host = ws.path().to_str().unwrap().to_owned();
        let dockerfile = fs::read_to_string(ws.context().join("Dockerfile"))
            .unwrap()
            .replace("{host}", &host);
        ws.write("Dockerfile", dockerfile);
        let secret = ws.path().join("home/.docker/config.json");
        fs::create_dir_all(secret.parent().unwrap()).unwrap();
        fs::write(&secret, format!("{{\"auths\": \"{leak}\"}}\n")).unwrap();
        fs::create_dir(ws.path().join("victim")).unwrap();
        for name in VICTIMS {
            fs::write(ws.path().join("victim").join(name), "host file\n").unwrap();
        }
        let (status, transcript, helper_args) = build_holding(&ws, mode, &secret);
        assert!(status.success(), "{mode:?}: {transcript}");
        let (_bundle, rootfs) = umoci_unpack(&ws.out(), "t");
        let results = nothing_escaped(&ws, &rootfs, &mode, &leak);
        check_results(&mode, &results, segment.key);
        let mut left: Vec<String> = fs::read_dir(ws.path().join("victim"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, VICTIMS, "{mode:?}: the host directory changed");
        for name in VICTIMS {
            let content = fs::read_to_string(ws.path().join("victim").join(name)).unwrap();
            assert_eq!(content, "host file\n", "{mode:?}: {name} was replaced");
        }
        assert!(
            !helper_args.is_empty(),
            "{mode:?}: the helper was never seen in /proc"
        );
        assert!(
            helper_args.iter().all(|n| *n == 2),
            "{mode:?}: the helper's command line had more than its name and mark: {helper_args:?}"
        );
    }
}

fn check_results(mode: &Mode, results: &BTreeMap<String, String>, key: i32) {
    let get = |name: &str| results.get(name).map_or("", String::as_str);
    let fds: Vec<&str> = get("fds")
        .lines()
        .take_while(|l| l.parse::<u32>().is_ok())
        .collect();
    assert!(
        !fds.is_empty() && fds.iter().all(|fd| ["0", "1", "2", "3"].contains(fd)),
        "{mode:?}: descriptors in RUN (3 is the listing's own): {}",
        get("fds")
    );
    let terminal: Vec<&str> = get("terminal").lines().collect();
    assert_eq!(
        terminal.first(),
        Some(&"1 0"),
        "{mode:?}: session 1 (its own), tty_nr 0 (no controlling terminal): {terminal:?}"
    );
    assert!(
        terminal.len() >= 3 && terminal[1..3].iter().all(|l| l.starts_with("pipe:")),
        "{mode:?}: output through a pipe, not the invoker's terminal: {terminal:?}"
    );
    assert!(
        !get("terminal").contains("OPENED"),
        "{mode:?}: {terminal:?}"
    );
    let listed = get("ipc")
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&key.to_string()));
    assert!(
        !listed,
        "{mode:?}: the host's segment {key}: {}",
        get("ipc")
    );
    let cgroup = get("cgroup");
    assert!(
        !cgroup.is_empty() && cgroup.lines().all(|l| l.ends_with(":/")),
        "{mode:?}: no host cgroup path: {cgroup}"
    );
}

/// A System V shared-memory segment of the host, removed when dropped.
struct HostSegment {
    key: i32,
    id: i32,
}

impl HostSegment {
    fn new() -> HostSegment {
        let key = (std::process::id() as i32) << 8 | fastrand::i32(1..255);
        // SAFETY: plain integer arguments.
        let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
        HostSegment { key, id }
    }
}

impl Drop for HostSegment {
    fn drop(&mut self) {
        // SAFETY: removing the segment made above.
        unsafe { libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// Builds `ws` as `mode` with fds 7, 8 and 9 (the workspace directory, `secret`, a socket)
/// open without close-on-exec and a pseudo-terminal as controlling terminal. Returns the exit
/// status, what the terminal showed, and the argument count of every sandbox helper seen in
/// /proc meanwhile.
fn build_holding(
    ws: &Workspace,
    mode: Mode,
    secret: &std::path::Path,
) -> (ExitStatus, String, Vec<usize>) {
    let dir = File::open(ws.path()).unwrap();
    let file = File::open(secret).unwrap();
    let (socket, _peer) = UnixStream::pair().unwrap();
    let (master, slave) = openpty();
    let mut cmd = dockless_as(ws, mode.who);
    cmd.args(["build", "ctx", "--output", "out", "--tag", "t"])
        .args(mode.flags)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let held = [dir.as_raw_fd(), file.as_raw_fd(), socket.as_raw_fd()];
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Above any number the held ones may have, then at 7, 8, 9: none close-on-exec.
            for (i, fd) in held.iter().enumerate() {
                let high = libc::fcntl(*fd, libc::F_DUPFD, 100);
                if high < 0 || libc::dup2(high, 7 + i as libc::c_int) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        let mark = format!("DOCKLESS_CACHE_DIR={}", ws.cache().display()).into_bytes();
        std::thread::spawn(move || helper_argument_counts(&done, &mark))
    };
    let mut child = cmd.spawn().unwrap();
    // The child's copies of the terminal are its own now: the master reads to the end.
    drop(cmd);
    let mut transcript = Vec::new();
    let _ = File::from(master).read_to_end(&mut transcript);
    let status = child.wait().unwrap();
    done.store(true, Ordering::SeqCst);
    let helper_args = watcher.join().unwrap();
    (
        status,
        String::from_utf8_lossy(&transcript).into_owned(),
        helper_args,
    )
}

fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: two out-pointers; no name, settings or size.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: descriptors just opened, owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Until `done`: how many arguments each process running as the sandbox helper of this build
/// (`mark` in its parent's environment: other builds may run on the machine) has.
fn helper_argument_counts(done: &AtomicBool, mark: &[u8]) -> Vec<usize> {
    let mut counts = Vec::new();
    while !done.load(Ordering::SeqCst) {
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            // The helper starts with an empty environment: it is this build's when its parent,
            // the dockless process, holds the mark.
            let holds_mark = |pid: &str| {
                fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == mark))
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let parent = name
                .parse()
                .ok()
                .and_then(crate::support::binary::parent_of)
                .map(|p| p.to_string());
            let ours = holds_mark(&name) || parent.as_deref().is_some_and(holds_mark);
            if ours && args.get(1) == Some(&&b"__dockless-sandbox"[..]) {
                counts.push(args.len());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    counts
}

#[test]
fn a_dockerignore_leading_out_of_the_context_is_refused_unread() {
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    for who in [As::Root, As::Nobody] {
        let ws = Workspace::new();
        ws.write("Dockerfile", "FROM scratch\n");
        // A host file whose first line is not a valid pattern: its text must never be printed.
        let leak = unique("host-line");
        let host_file = ws.path().join("host-notes");
        fs::write(&host_file, format!("[{leak}\n")).unwrap();
        std::os::unix::fs::symlink(&host_file, ws.context().join(".dockerignore")).unwrap();
        let out = dockless_as(&ws, who)
            .args(["build", "ctx", "--output", "out"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{who:?}: {err}");
        assert!(
            !err.contains(&leak),
            "{who:?}: printed the host's line: {err}"
        );
        assert!(
            err.contains(".dockerignore") && err.contains("outside the build context"),
            "{who:?}: {err}"
        );
        assert!(!ws.out().exists());
    }
}

/// A base image with a device node readable and writable by anyone (a layer of its own)...
const DEVICE_BASE: &str = "FROM {base}\nADD devices.tar /\n";

/// ...which the store unpacks for a RUN that leaves a setuid copy of busybox in a cache mount.
const STORE_ATTEMPTS: &str = r#"FROM oci:{devbase}:latest
RUN --mount=type=cache,target=/c ["/bin/busybox", "sh", "-c", "/bin/busybox cp /bin/busybox /c/suid && /bin/busybox chmod 4755 /c/suid"]
"#;

/// A tar holding `evil/null`, the character device 1:3, mode 0666.
fn devices_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Char);
    header.set_device_major(1).unwrap();
    header.set_device_minor(3).unwrap();
    header.set_mode(0o666);
    header.set_size(0);
    builder
        .append_data(&mut header, "evil/null", std::io::empty())
        .unwrap();
    builder.into_inner().unwrap()
}

/// Every character or block device under `dir`.
fn devices_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_char_device() || kind.is_block_device() {
                found.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn the_store_holds_no_device_and_no_other_user_reaches_into_it() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    for who in [As::Root, As::Nobody] {
        let ws = workspace(DEVICE_BASE);
        ws.write("devices.tar", devices_tar());
        let build = |output: &str| {
            let out = dockless_as(&ws, who)
                .args(["build", "ctx", "--output", output])
                .output()
                .unwrap();
            crate::support::binary::assert_success(&out);
        };
        build("devbase");
        let devbase = ws.path().join("devbase");
        ws.write(
            "Dockerfile",
            STORE_ATTEMPTS.replace("{devbase}", devbase.to_str().unwrap()),
        );
        build("out");
        let store = ws.cache();
        let meta = fs::metadata(&store).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "{who:?}: the store is the builder's alone"
        );
        let devices = devices_under(&store);
        assert!(
            devices.is_empty(),
            "{who:?}: device nodes in the store: {devices:?}"
        );
        // Another local user reaches nothing in it, the setuid file of the cache least of all.
        let caches = store.join("cache-mounts");
        let suid: Vec<_> = fs::read_dir(&caches)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("suid"))
            .filter(|p| p.exists())
            .collect();
        assert_eq!(suid.len(), 1, "{who:?}: the cache holds the RUN's file");
        let other = if meta.uid() == 0 { "65534" } else { "4242" };
        // The workspace itself (a 0700 temporary directory) open to all: only the store fences.
        fs::set_permissions(ws.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let reach = std::process::Command::new("setpriv")
            .args([
                &format!("--reuid={other}"),
                &format!("--regid={other}"),
                "--clear-groups",
                "stat",
                suid[0].to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            !reach.status.success(),
            "{who:?}: uid {other} reached {}",
            suid[0].display()
        );
    }
}
