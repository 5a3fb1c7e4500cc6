//! The escape attempts that need more than busybox, and what becomes of the file capabilities
//! and extended attributes a RUN sets, on the Debian base (python3's ctypes makes the system
//! calls; the probes are in escape_probes.py). One build per mode (root in its default user
//! namespace, root with `--isolation root`, rootless `nobody`) serves both, since a Debian
//! build takes tens of seconds.
//!
//! - "shocker": open_by_handle_at with a handle forged for the root inode of the file system
//!   the sandbox's tree lies on would open the host's root directory (it needs
//!   CAP_DAC_READ_SEARCH in the initial namespace; Docker's profile refuses the call).
//! - A setuid-root binary run by USER nobody: no_new_privs keeps it nobody's; the same file
//!   outside the sandbox (chroot without no_new_privs) does make root, so the image really
//!   holds a working setuid binary.
//! - System V IPC: a segment a RUN makes (and leaves) is its IPC namespace's, gone with it.
//! - What Docker's allow list refuses beyond the deny list dockless had: personality
//!   READ_IMPLIES_EXEC, AF_VSOCK sockets (under `--network=none` too), memfd_secret, statmount
//!   and listmount; outside Docker's allow list, lsm_list_modules and AF_ALG sockets.
//! - Processes: the host's are invisible (a PID namespace with its own /proc). Inside, the
//!   kernel decides as under Docker, whose profile allows ptrace, process_vm_readv and
//!   process_vm_writev (kernel 4.8 and later) but not pidfd_getfd without CAP_SYS_PTRACE:
//!   without CAP_SYS_PTRACE (not in the default set) no process reaches one of another user,
//!   root's included; a process of the same user may be traced unless Yama's ptrace_scope
//!   limits tracing to descendants; pidfd_getfd is refused.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use tempfile::TempDir;

use crate::escapes::{MODES, Mode, nothing_escaped, unique};
use crate::run::dockless_with_env;
use crate::support::binary::{Workspace, assert_success, needs_root, tool, umoci_unpack};
use crate::support::debian::debian_base;

const DOCKERFILE: &str = r#"FROM oci:{base}:bookworm
COPY escape_probes.py /probes.py
RUN mkdir -m 1777 /results
RUN python3 /probes.py shocker {secret} {host} > /results/shocker 2>&1; true
RUN python3 /probes.py ptrace {host_pid} > /results/ptrace 2>&1; true
RUN python3 /probes.py ipc {ipc_key} > /results/ipc 2>&1; true
RUN --network=none python3 /probes.py refused > /results/refused 2>&1; true
RUN cp /usr/bin/true /usr/bin/hello-cap && python3 /probes.py setcap /usr/bin/hello-cap \
 && python3 -c "import os; os.setxattr('/usr/bin/hello-cap', 'user.dockless', b'kept')"
RUN python3 /probes.py setcap /usr/bin/env
RUN cp /usr/bin/id /usr/local/bin/rid && cp /usr/bin/cat /usr/local/bin/rcat \
 && chmod u+s /usr/local/bin/rid /usr/local/bin/rcat \
 && echo image-root-only > /root-only && chmod 600 /root-only
USER nobody
RUN (rid -u; rcat /root-only || echo refused; grep NoNewPrivs /proc/self/status) > /results/setuid 2>&1
"#;

/// `cap_net_raw+ep` as `vfs_cap_data` revision 2: the magic with the effective flag, then the
/// permitted and inheritable words of the low and high halves (cap_net_raw is bit 13).
const NET_RAW_EP_V2: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A process of the host that the sandbox must neither see nor reach: `sleep` with a mark in
/// its command line. Killed when dropped.
struct HostProcess {
    child: Child,
    mark: String,
}

impl HostProcess {
    fn start() -> HostProcess {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let mark = format!("0.{}{nanos:09}", std::process::id());
        let child = Command::new("sleep").args(["900", &mark]).spawn().unwrap();
        HostProcess { child, mark }
    }

    /// `State:` and `TracerPid:` of its /proc status.
    fn state(&self) -> String {
        fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("State:") || l.starts_with("TracerPid:"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one build left: the workspace (holding the output layout), the image unpacked by umoci
/// and its /results.
struct Built {
    ws: Workspace,
    _bundle: TempDir,
    rootfs: PathBuf,
    results: BTreeMap<String, String>,
}

fn build(mode: Mode, leak: &str, host: &HostProcess) -> Built {
    let ws = Workspace::new();
    let secret = ws.path().join("home/.docker/config.json");
    fs::create_dir_all(secret.parent().unwrap()).unwrap();
    fs::write(&secret, format!("{{\"auths\": \"{leak}\"}}\n")).unwrap();
    ws.write(
        "Dockerfile",
        DOCKERFILE
            .replace("{base}", debian_base().to_str().unwrap())
            .replace("{secret}", secret.to_str().unwrap())
            .replace("{host}", ws.path().to_str().unwrap())
            .replace("{host_pid}", &host.child.id().to_string())
            .replace("{ipc_key}", &ipc_key(&ws).to_string()),
    );
    ws.write("escape_probes.py", include_str!("escape_probes.py"));
    let mut args = vec!["build", "ctx", "--output", "out", "--tag", "t"];
    args.extend_from_slice(mode.flags);
    assert_success(&dockless_with_env(&ws, mode.who, &args, &[]));
    let (bundle, rootfs) = umoci_unpack(&ws.out(), "t");
    let results = nothing_escaped(&ws, &rootfs, &mode, leak);
    Built {
        ws,
        _bundle: bundle,
        rootfs,
        results,
    }
}

/// The System V IPC key the build's RUN makes a segment with: one per workspace.
fn ipc_key(ws: &Workspace) -> i32 {
    use std::os::unix::fs::MetadataExt;
    (fs::metadata(ws.path()).unwrap().ino() as i32 & 0x7fff_ffff).max(1)
}

/// A segment made in a RUN is the sandbox's own, gone with it: the host has no segment of its
/// key (removed here if it has, so that a failure leaves nothing behind).
fn assert_ipc_private(mode: Mode, built: &Built) {
    let ipc = result(built, "ipc");
    assert_eq!(answers(ipc, "shmget"), ["made"], "{mode:?}: {ipc}");
    let key = ipc_key(&built.ws);
    // SAFETY: plain integer arguments.
    let left = unsafe { libc::shmget(key, 0, 0) };
    if left >= 0 {
        // SAFETY: removing the segment found above.
        unsafe { libc::shmctl(left, libc::IPC_RMID, std::ptr::null_mut()) };
    }
    assert!(
        left < 0,
        "{mode:?}: the RUN's segment {key} stayed on the host"
    );
}

/// What Docker's allow list refuses (and the deny list once let through) is refused: EPERM
/// from the filter, while the allowed form of the same call still works.
fn assert_refused_as_docker_refuses(mode: Mode, built: &Built) {
    let refused = result(built, "refused");
    for (call, expected) in [
        ("personality READ_IMPLIES_EXEC", "EPERM"),
        ("personality query", "ok"),
        ("socket AF_VSOCK", "EPERM"),
        ("socket AF_UNIX", "ok"),
        ("memfd_secret", "EPERM"),
        ("statmount", "EPERM"),
        ("listmount", "EPERM"),
        ("lsm_list_modules", "EPERM"),
        ("socket AF_ALG", "EPERM"),
    ] {
        assert_eq!(
            answers(refused, call),
            [expected],
            "{mode:?}: {call}: {refused}"
        );
    }
}

fn result<'a>(built: &'a Built, name: &str) -> &'a str {
    built.results.get(name).map_or("", String::as_str)
}

/// The lines of `text` after `prefix` (a probe's answers to one attempt).
fn answers<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
        .collect()
}

fn assert_shocker_refused(mode: Mode, built: &Built) {
    let shocker = result(built, "shocker");
    // EPERM from the seccomp filter, as Docker's profile answers without CAP_DAC_READ_SEARCH
    // and CAP_SYS_ADMIN (and the capability check itself would answer the same).
    assert_eq!(
        answers(shocker, "name_to_handle_at"),
        ["EPERM"],
        "{mode:?}: {shocker}"
    );
    for kind in [1, 2] {
        assert_eq!(
            answers(shocker, &format!("open_by_handle_at type {kind}")),
            ["EPERM"],
            "{mode:?}: {shocker}"
        );
    }
    for gave_way in ["OPENED", "READ", "WROTE"] {
        assert!(!shocker.contains(gave_way), "{mode:?}: {shocker}");
    }
}

/// What Yama (when the kernel has it) lets a process of the same user do to a non-descendant.
fn same_user_sibling_traceable() -> bool {
    fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .map_or(true, |scope| scope.trim() == "0")
}

fn assert_processes_fenced(mode: Mode, built: &Built, host: &HostProcess) {
    let ptrace = result(built, "ptrace");
    let processes = answers(ptrace, "process ");
    // The RUN's shell is PID 1 and the probe its child: nothing else, nothing of the host.
    assert!(
        processes
            .first()
            .is_some_and(|p| p.starts_with("1 /bin/sh -c python3 /probes.py ptrace")),
        "{mode:?}: {ptrace}"
    );
    assert!(
        processes
            .iter()
            .skip(1)
            .all(|p| p.contains(" python3 /probes.py ptrace ")),
        "{mode:?}: {ptrace}"
    );
    assert!(!ptrace.contains(&host.mark), "{mode:?}: {ptrace}");
    for reach in ["host kill", "host attach", "host peek"] {
        assert_eq!(answers(ptrace, reach), ["ESRCH"], "{mode:?}: {ptrace}");
    }
    // Another user, either way round: no CAP_SYS_PTRACE.
    assert_eq!(
        answers(ptrace, "nobody attaches root"),
        ["EPERM EPERM"],
        "{mode:?}: {ptrace}"
    );
    assert_eq!(
        answers(ptrace, "root attaches nobody"),
        ["EPERM EPERM"],
        "{mode:?}: {ptrace}"
    );
    let sibling = if same_user_sibling_traceable() {
        "ATTACHED READ sandbox-memory EPERM"
    } else {
        "EPERM EPERM EPERM"
    };
    assert_eq!(answers(ptrace, "sibling"), [sibling], "{mode:?}: {ptrace}");
}

/// USER nobody runs a setuid-root copy of `id` and `cat`: under no_new_privs they stay
/// nobody's. The same files run outside the sandbox without no_new_privs do make root.
fn assert_setuid_inert(mode: Mode, built: &Built) {
    let setuid = result(built, "setuid");
    let lines: Vec<&str> = setuid.lines().collect();
    assert_eq!(lines.first(), Some(&"65534"), "{mode:?}: {setuid}");
    assert!(lines.contains(&"refused"), "{mode:?}: {setuid}");
    assert!(lines.contains(&"NoNewPrivs:\t1"), "{mode:?}: {setuid}");
    assert!(!setuid.contains("image-root-only"), "{mode:?}: {setuid}");

    let meta = fs::metadata(built.rootfs.join("usr/local/bin/rid")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o4000, 0o4000, "{mode:?}");
    let rootfs = built.rootfs.to_str().unwrap();
    let outside = |args: &[&str]| {
        let mut all = vec!["--userspec=65534:65534", rootfs];
        all.extend_from_slice(args);
        tool("chroot", &all)
    };
    // The control needs a file system that honours setuid bits: on a `nosuid` temporary
    // directory (a systemd tmpfs /tmp) nothing gains root, inside or out, so the check above
    // would hold whatever the sandbox did.
    assert!(
        !nosuid(&built.rootfs),
        "{mode:?}: {} is on a nosuid file system, where the outside-the-sandbox control cannot \
         gain root; point TMPDIR at a file system that honours setuid bits",
        built.rootfs.display()
    );
    assert_eq!(outside(&["/usr/local/bin/rid", "-u"]), "0\n", "{mode:?}");
    assert_eq!(
        outside(&["/usr/local/bin/rcat", "/root-only"]),
        "image-root-only\n",
        "{mode:?}"
    );
}

/// Whether the file system holding `path` ignores setuid bits.
fn nosuid(path: &Path) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is a valid buffer; `c` is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statvfs(c.as_ptr(), &mut stat) == 0 && stat.f_flag & libc::ST_NOSUID != 0 }
}

/// One file of a layer: its extended attributes (from the PAX records) and size.
#[derive(Debug)]
struct LayerFile {
    xattrs: BTreeMap<String, Vec<u8>>,
    size: u64,
}

/// The image's layers, bottom first, each as its files by path.
fn layers(layout: &Path) -> Vec<BTreeMap<String, LayerFile>> {
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let bytes = fs::read(blob(layer["digest"].as_str().unwrap())).unwrap();
            let tar: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::GzDecoder::new(bytes.as_slice()))
            } else {
                Box::new(bytes.as_slice())
            };
            let mut archive = tar::Archive::new(tar);
            let mut files = BTreeMap::new();
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                let mut xattrs = BTreeMap::new();
                if let Some(pax) = entry.pax_extensions().unwrap() {
                    for record in pax {
                        let record = record.unwrap();
                        if let Some(name) = record.key().unwrap().strip_prefix("SCHILY.xattr.") {
                            xattrs.insert(name.to_owned(), record.value_bytes().to_vec());
                        }
                    }
                }
                let path = String::from_utf8_lossy(&entry.path_bytes())
                    .trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_owned();
                let size = entry.header().size().unwrap();
                files.insert(path, LayerFile { xattrs, size });
            }
            files
        })
        .collect()
}

/// The layer above the base that holds `path`, and that file.
fn changed<'a>(
    layers: &'a [BTreeMap<String, LayerFile>],
    path: &str,
) -> Option<(usize, &'a LayerFile)> {
    layers
        .iter()
        .enumerate()
        .skip(1)
        .find_map(|(n, files)| files.get(path).map(|f| (n, f)))
}

fn assert_net_raw_ep(mode: Mode, what: &str, value: Option<&Vec<u8>>) {
    let value = value.unwrap_or_else(|| panic!("{mode:?}: {what} has no file capability"));
    assert_eq!(value.len(), 20, "{mode:?}: {what}: revision 2 is 20 bytes");
    let word = |n: usize| u32::from_le_bytes(value[n * 4..n * 4 + 4].try_into().unwrap());
    assert_eq!(
        word(0),
        0x0200_0001,
        "{mode:?}: {what}: revision 2, effective"
    );
    assert_eq!(word(1), 1 << 13, "{mode:?}: {what}: permitted cap_net_raw");
    assert_eq!(value.as_slice(), NET_RAW_EP_V2, "{mode:?}: {what}");
}

/// The capability and the user attribute of the new file, and the capability set on a file of
/// the base (a change of attributes only), are in the layers; umoci, unpacking them, gives
/// the files the same attributes, which getcap reads.
fn assert_attributes_kept(mode: Mode, built: &Built) {
    let layers = layers(&built.ws.out());
    let (_, made) = changed(&layers, "usr/bin/hello-cap")
        .unwrap_or_else(|| panic!("{mode:?}: no layer has usr/bin/hello-cap"));
    assert_net_raw_ep(mode, "hello-cap", made.xattrs.get("security.capability"));
    assert_eq!(
        made.xattrs.get("user.dockless").map(Vec::as_slice),
        Some(&b"kept"[..]),
        "{mode:?}: {made:?}"
    );
    let base = &layers[0]["usr/bin/env"];
    assert!(base.xattrs.is_empty(), "{mode:?}: {base:?}");
    let (n, env) = changed(&layers, "usr/bin/env")
        .unwrap_or_else(|| panic!("{mode:?}: setcap on usr/bin/env left no layer entry"));
    assert_net_raw_ep(mode, "env", env.xattrs.get("security.capability"));
    assert_eq!(env.size, base.size, "{mode:?}: the whole file, unchanged");
    assert_eq!(
        layers[n].keys().filter(|p| !p.ends_with("usr/bin")).count(),
        1,
        "{mode:?}: the setcap layer holds usr/bin/env alone: {:?}",
        layers[n].keys().collect::<Vec<_>>()
    );

    for file in ["usr/bin/hello-cap", "usr/bin/env"] {
        let path = built.rootfs.join(file);
        let value = xattr::get(&path, "security.capability").unwrap();
        assert_net_raw_ep(mode, &format!("umoci's {file}"), value.as_ref());
        let getcap = tool("getcap", &[path.to_str().unwrap()]);
        assert!(getcap.trim_end().ends_with(" cap_net_raw=ep"), "{getcap}");
    }
    assert_eq!(
        xattr::get(built.rootfs.join("usr/bin/hello-cap"), "user.dockless").unwrap(),
        Some(b"kept".to_vec())
    );
}

/// SLOW (a Debian build per mode; the base is made once, see support/debian.rs).
#[test]
fn debian_run_neither_escapes_nor_loses_its_file_capabilities() {
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    let host = HostProcess::start();
    for mode in MODES {
        let leak = unique("host-secret");
        let built = build(mode, &leak, &host);
        assert_shocker_refused(mode, &built);
        assert_processes_fenced(mode, &built, &host);
        assert_ipc_private(mode, &built);
        assert_refused_as_docker_refuses(mode, &built);
        assert_setuid_inert(mode, &built);
        assert_attributes_kept(mode, &built);
    }
    // Untouched: still asleep, never traced.
    assert_eq!(host.state(), "State:\tS (sleeping) TracerPid:\t0");
}
