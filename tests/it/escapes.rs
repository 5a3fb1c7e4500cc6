//! The escape catalog: what a Dockerfile's RUN may try to reach the host with, run as root (in
//! its default user namespace and with `--isolation root`) and rootless. Each attempt tries to
//! read a secret the host holds (the invoking user's ~/.docker/config.json and
//! ~/.e2b/config.json) and to create a file on the host; the test asserts that neither happened
//! and that the fences refused what they must refuse. The attempts write what they saw into
//! /results in the image, which the test reads back.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::run::{As, dockless_with_env, workspace};
use crate::support::binary::{Workspace, assert_success, needs_root, umoci_unpack};

/// How dockless is run for an attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    pub(crate) who: As,
    pub(crate) flags: &'static [&'static str],
}

pub(crate) const MODES: [Mode; 3] = [
    Mode {
        who: As::Root,
        flags: &[],
    },
    Mode {
        who: As::Root,
        flags: &["--isolation", "root"],
    },
    Mode {
        who: As::Nobody,
        flags: &[],
    },
];

/// The catalog, one RUN per attempt. `{secret}` is the absolute host path of a secret file,
/// `{host}` a host directory the attempts try to create files in, `{major}`/`{minor}` the
/// host's root disk.
const ATTEMPTS: &str = r#"FROM {base}
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /results /mnt /jail/bin && cp /bin/busybox /jail/bin/
# The classic chroot escape: a root inside a nested root, with its working directory outside
# it, climbs `..` past the nested root to whatever root is above.
RUN nsenter --root=/jail --wd=/ /bin/busybox sh -c \
    'cd ../../../../../../../../../../../../../../../../..; /bin/busybox cat .{secret} .{e2b}; /bin/busybox touch .{host}/escaped-chroot; /bin/busybox ls' \
    > /results/chroot 2>&1; true
RUN (cat /proc/1/root{secret}; cat /proc/self/root{e2b}; cat /proc/self/cwd/../../../../../../..{secret}; \
     touch /proc/1/root{host}/escaped-proc; cat {secret} {e2b}) > /results/proc 2>&1; true
RUN for fs in proc tmpfs sysfs devpts; do mount -t $fs none /mnt && echo "MOUNTED $fs"; done > /results/mount 2>&1; true
RUN unshare -Urm sh -c 'mount -t tmpfs none /mnt && echo MOUNTED in a new user namespace' > /results/unshare 2>&1; true
RUN (v=$(cat /proc/sys/vm/overcommit_ratio) && echo "$v" > /proc/sys/vm/overcommit_ratio && echo WROTE /proc/sys; \
     echo h > /proc/sysrq-trigger && echo WROTE sysrq-trigger; \
     echo "kcore $(head -c 16 /proc/kcore | wc -c)"; echo "keys $(cat /proc/keys | wc -c)"; \
     mkdir /sys/escape && echo WROTE /sys) > /results/procfs 2>&1; true
RUN (mknod /hostdisk b {major} {minor} && echo "disk $(head -c 512 /hostdisk | wc -c)"; rm -f /hostdisk) > /results/mknod 2>&1; true
RUN grep -E '^Cap(Prm|Eff|Bnd|Amb)|^NoNewPrivs|^Seccomp:' /proc/self/status > /results/status
RUN env > /results/env
RUN cut -d' ' -f5,6 /proc/self/mountinfo > /results/mounts
"#;

/// Builds the catalog in `mode` and returns /results of the image.
fn attempt(mode: Mode, leak: &str) -> BTreeMap<String, String> {
    let ws = workspace(ATTEMPTS);
    let host = ws.path().to_str().unwrap().to_owned();
    let secret = ws.path().join("home/.docker/config.json");
    let e2b = ws.path().join("home/.e2b/config.json");
    for file in [&secret, &e2b] {
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, format!("{{\"auths\": \"{leak}\"}}\n")).unwrap();
    }
    let disk = fs::metadata("/").unwrap().dev();
    let dockerfile = fs::read_to_string(ws.context().join("Dockerfile"))
        .unwrap()
        .replace("{secret}", secret.to_str().unwrap())
        .replace("{e2b}", e2b.to_str().unwrap())
        .replace("{host}", &host)
        .replace("{major}", &libc::major(disk).to_string())
        .replace("{minor}", &libc::minor(disk).to_string());
    ws.write("Dockerfile", dockerfile);
    let mut args = vec!["build", "ctx", "--output", "out", "--tag", "t"];
    args.extend_from_slice(mode.flags);
    let out = dockless_with_env(
        &ws,
        mode.who,
        &args,
        &[("E2B_API_KEY", leak), ("ESCAPE_TEST_LEAK", leak)],
    );
    assert_success(&out);
    let (_bundle, rootfs) = umoci_unpack(&ws.out(), "t");
    nothing_escaped(&ws, &rootfs, &mode, leak)
}

pub(crate) fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}-{}-{nanos}", std::process::id())
}

#[test]
fn no_run_reaches_the_host_as_root_or_rootless() {
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    for mode in MODES {
        let leak = unique("host-secret");
        let results = attempt(mode, &leak);
        let get = |name: &str| results.get(name).map_or("", String::as_str);
        assert!(
            get("chroot").contains("results"),
            "{mode:?}: the climb ends at the sandbox's own root: {}",
            get("chroot")
        );
        assert!(
            !get("mount").contains("MOUNTED"),
            "{mode:?}: {}",
            get("mount")
        );
        assert!(
            !get("unshare").contains("MOUNTED"),
            "{mode:?}: {}",
            get("unshare")
        );
        let procfs = get("procfs");
        assert!(!procfs.contains("WROTE"), "{mode:?}: {procfs}");
        assert!(
            procfs.contains("kcore 0"),
            "{mode:?}: kcore masked: {procfs}"
        );
        assert!(procfs.contains("keys 0"), "{mode:?}: keys masked: {procfs}");
        assert!(
            !get("mknod").contains("disk 512"),
            "{mode:?}: read the host's disk: {}",
            get("mknod")
        );
        let status = get("status");
        for line in ["CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1", "Seccomp:\t2"] {
            assert!(status.contains(line), "{mode:?}: {line} in\n{status}");
        }
        // Mounted read-only or masked over, whatever the kernel offers of them.
        let mounts: BTreeMap<&str, &str> = get("mounts")
            .lines()
            .filter_map(|line| line.split_once(' '))
            .collect();
        assert!(
            mounts
                .get("/proc/sys")
                .is_some_and(|o| o.starts_with("ro,")),
            "{mode:?}: {mounts:?}"
        );
        for path in [
            "/proc/kcore",
            "/proc/keys",
            "/proc/sysrq-trigger",
            "/proc/acpi",
        ] {
            if mounts.contains_key("/proc") && Path::new(path).exists() {
                assert!(mounts.contains_key(path), "{mode:?}: {path} in {mounts:?}");
            }
        }
        assert!(
            !mounts.keys().any(|m| m.starts_with("/sys/")),
            "{mode:?}: nothing of the host's /sys: {mounts:?}"
        );
        let env = get("env");
        assert!(
            !env.contains("ESCAPE_TEST_LEAK") && !env.contains("E2B_API_KEY"),
            "{env}"
        );
    }
}

/// A loopback TCP service on the host that counts the connections it accepts.
struct Service {
    port: u16,
    accepted: Arc<AtomicBool>,
}

impl Service {
    fn start() -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicBool::new(false));
        let flag = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                flag.store(true, Ordering::SeqCst);
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.read(&mut [0u8; 256]);
                let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nreached\n");
            }
        });
        Service { port, accepted }
    }
}

fn network_build(ws: &Workspace, who: As, extra: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["build", "ctx", "--output", "out", "--tag", "t"];
    args.extend_from_slice(extra);
    assert_success(&dockless_with_env(ws, who, &args, &[]));
    let (_bundle, rootfs) = umoci_unpack(&ws.out(), "t");
    fs::read_dir(rootfs.join("results"))
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read_to_string(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn run_network_none_reaches_nothing_but_its_own_loopback() {
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    for who in [As::Root, As::Nobody] {
        let service = Service::start();
        let dockerfile = format!(
            "FROM {{base}}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN mkdir /results\n\
             RUN --network=none (echo GET | nc -w 3 127.0.0.1 {port} || echo refused; \
             ifconfig lo | grep -c UP; ifconfig -a | grep -c '^[a-z]') > /results/none 2>&1\n",
            port = service.port
        );
        let ws = workspace(&dockerfile);
        let results = network_build(&ws, who, &[]);
        let none = &results["none"];
        assert!(!service.accepted.load(Ordering::SeqCst), "{who:?}: {none}");
        assert!(!none.contains("reached"), "{who:?}: {none}");
        assert!(
            none.ends_with("refused\n1\n1\n"),
            "{who:?}: loopback only, and up: {none}"
        );

        // The same service from the host's network (the default): the test can see a reach.
        let ws = workspace(&format!(
            "FROM {{base}}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN mkdir /results\n\
             RUN echo GET | nc -w 3 127.0.0.1 {} > /results/host 2>&1\n",
            service.port
        ));
        let results = network_build(&ws, who, &[]);
        assert!(
            results["host"].ends_with("reached\n"),
            "{who:?}: {}",
            results["host"]
        );
        assert!(service.accepted.load(Ordering::SeqCst));

        // A build with --network none: RUN's default is none, and RUN --network=host is refused.
        service.accepted.store(false, Ordering::SeqCst);
        let ws = workspace(&format!(
            "FROM {{base}}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN mkdir /results\n\
             RUN (echo GET | nc -w 3 127.0.0.1 {} || echo refused) > /results/default 2>&1\n",
            service.port
        ));
        let results = network_build(&ws, who, &["--network", "none"]);
        assert_eq!(
            results["default"].lines().last(),
            Some("refused"),
            "{who:?}"
        );
        assert!(!service.accepted.load(Ordering::SeqCst));
    }
    let ws = workspace("FROM {base}\nRUN --network=host [\"/bin/busybox\", \"true\"]\n");
    let out = dockless_with_env(
        &ws,
        As::Root,
        &["build", "ctx", "--output", "out", "--network", "none"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:2") && err.contains("--network none"),
        "{err}"
    );
}

/// Where a fresh /proc cannot be mounted (a /proc partly hidden, as in many containers), the
/// build fails and says why; it never falls back to the host's /proc, whose /proc/1/root is
/// the host's root.
#[test]
fn without_a_fresh_proc_the_build_fails_instead_of_using_the_hosts() {
    if !needs_root("to hide part of /proc in a mount namespace") {
        return;
    }
    let leak = unique("host-secret");
    let ws = workspace(
        "FROM {base}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN cat /proc/[0-9]*/root{secret} > /seen; for p in /proc/[0-9]*; do touch $p/root{host}/escaped-proc; done; true\n",
    );
    let secret = ws.path().join("secret");
    fs::write(&secret, &leak).unwrap();
    let dockerfile = fs::read_to_string(ws.context().join("Dockerfile"))
        .unwrap()
        .replace("{secret}", secret.to_str().unwrap())
        .replace("{host}", ws.path().to_str().unwrap());
    ws.write("Dockerfile", dockerfile);
    // Rootless, where the old sandbox fell back to the host's /proc: the user's own processes
    // there have roots it may enter.
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534", ws.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&chown);
    let template = ws.dockless();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        r#"mount -t tmpfs none /proc/sys && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$0" "$@""#,
        env!("CARGO_BIN_EXE_dockless"),
        "build",
        "ctx",
        "--output",
        "out",
    ])
    .current_dir(ws.path());
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !ws.path().join("escaped-proc").exists(),
        "the host's /proc led out"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("cannot mount a /proc"), "{err}");
    assert!(!ws.out().exists());
}

/// Asserts the attempts of a build in `ws` left nothing `escaped*` on the host and read no
/// `leak`; returns what each attempt wrote under the image's `/results`.
pub(crate) fn nothing_escaped(
    ws: &Workspace,
    rootfs: &Path,
    mode: &Mode,
    leak: &str,
) -> BTreeMap<String, String> {
    let escaped: Vec<_> = fs::read_dir(ws.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("escaped"))
        .collect();
    assert!(
        escaped.is_empty(),
        "{mode:?}: created on the host: {escaped:?}"
    );
    let results: BTreeMap<String, String> = fs::read_dir(rootfs.join("results"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    for (name, seen) in &results {
        assert!(
            !seen.contains(leak),
            "{mode:?}: attempt {name} read the host's secret:\n{seen}"
        );
    }
    results
}
