//! A clean cancel: SIGINT/SIGTERM during a RUN kill every process the build started, remove
//! its working trees and secret files, and exit 130/143 with "interrupted"; after a SIGKILL at
//! any point (base pull, RUN, layer write, push) nothing of the build keeps running, the next
//! command sweeps what it left, and the next build gives the same digest as a fresh store.
//!
//! Every test waits for a sign that the build is where it should be (a line the RUN prints,
//! the registry request seen by the proxy, a temporary file growing) before the signal.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::binary::{Workspace, assert_success, busybox_base, needs_root};
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::registry::{RegistryAuth, TestRegistry};

/// A RUN that gives files to another user (so that while it runs, the tree holds files of the
/// sandbox's other IDs), prints `TOKEN-42` (the Dockerfile's text holds `$((6*7))`, so a step
/// header cannot be taken for it), sleeps for the secret `pause` (none: no sleep), and makes a
/// file.
fn pausing_dockerfile(base: &str, token: &str) -> String {
    format!(
        "FROM {base}\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN --mount=type=secret,id=pause,env=PAUSE mkdir -p /owned/deep \
         && touch /owned/deep/file && chown -R 1000:1000 /owned && chmod 700 /owned \
         && echo \"{token}-$((6*7))\" && sleep ${{PAUSE:-0}} && echo built > /built\n"
    )
}

/// A token no other test's processes carry.
pub(crate) fn token() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "cancel{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A dockless process with its standard error read into lines as they come.
pub(crate) struct Running {
    pub(crate) child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub(crate) fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, lines }
    }

    pub(crate) fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until `ready` holds, failing with what the build said so far.
    pub(crate) fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the build ended ({status}) before {what}: {}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no sign of {what} in 120 s: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn wait_for_line(&mut self, needle: &str) {
        self.wait_until(needle, |me| {
            me.lines.lock().unwrap().iter().any(|l| l.contains(needle))
        });
    }

    pub(crate) fn signal(&self, signal: i32) {
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the end (at most `limit`), returning the status and all of standard error.
    pub(crate) fn finish(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.stderr());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running after {limit:?}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Every process (not a zombie) whose command line holds `token`, and their descendants.
fn processes_of(token: &str) -> Vec<(u32, String)> {
    let all: Vec<(u32, u32, String)> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 2..];
            let mut fields = after.split(' ');
            let state = fields.next()?;
            let ppid = fields.next()?.parse().ok()?;
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (state != "Z").then_some((pid, ppid, cmdline))
        })
        .collect();
    let mut found: Vec<u32> = all
        .iter()
        .filter(|(_, _, cmd)| cmd.contains(token))
        .map(|(pid, _, _)| *pid)
        .collect();
    // The sandbox's helper reads its spec on standard input, so its command line does not
    // hold the token: it is found as an ancestor of the command's processes.
    let mut ancestors: Vec<u32> = Vec::new();
    for pid in &found {
        let mut at = *pid;
        while let Some((_, ppid, _)) = all.iter().find(|(p, _, _)| *p == at) {
            match all.iter().find(|(p, _, _)| p == ppid) {
                Some((parent, _, cmd)) if cmd.contains("__dockless-sandbox") => {
                    ancestors.push(*parent);
                    at = *parent;
                }
                _ => break,
            }
        }
    }
    for pid in ancestors {
        if !found.contains(&pid) {
            found.push(pid);
        }
    }
    loop {
        let more: Vec<u32> = all
            .iter()
            .filter(|(pid, ppid, _)| found.contains(ppid) && !found.contains(pid))
            .map(|(pid, _, _)| *pid)
            .collect();
        if more.is_empty() {
            break;
        }
        found.extend(more);
    }
    all.into_iter()
        .filter(|(pid, _, _)| found.contains(pid))
        .map(|(pid, _, cmd)| (pid, cmd))
        .collect()
}

/// Waits (a few seconds at most) until none of `pids` runs.
fn assert_all_end(pids: &[(u32, String)]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let running: Vec<&(u32, String)> = pids
            .iter()
            .filter(|(pid, _)| {
                fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rsplit(") ")
                        .next()
                        .is_some_and(|s| !s.starts_with('Z'))
                })
            })
            .collect();
        if running.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running 5 s after the build ended: {running:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sandbox's processes while the RUN sleeps: the helper, the shell, and the sleep.
/// (The shell prints the marker just before it starts the sleep: wait for that a little.)
fn sandbox_processes(token: &str) -> Vec<(u32, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = processes_of(token);
        if found
            .iter()
            .any(|(_, cmd)| cmd.contains("__dockless-sandbox"))
            && found.iter().any(|(_, cmd)| cmd.starts_with("sleep"))
        {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "expected the helper, the shell and the sleep: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything (directories too) under the store's temporary area.
pub(crate) fn tmp_entries(cache: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![cache.join("tmp")];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
            found.push(entry.path());
        }
    }
    found
}

/// The store's temporary area holds nothing (the failure shows the first few entries).
pub(crate) fn assert_tmp_empty(cache: &Path) {
    let left = tmp_entries(cache);
    assert!(
        left.is_empty(),
        "{} entries left in tmp/, such as {:?}",
        left.len(),
        &left[..left.len().min(5)]
    );
}

/// The digest `ws`'s context gets from a store of its own (`fresh-cache`), the reference the
/// interrupted builds are compared with.
fn fresh_digest(ws: &Workspace) -> String {
    let fresh = ws
        .dockless()
        .env("DOCKLESS_CACHE_DIR", ws.path().join("fresh-cache"))
        .args(["build", "ctx", "--output", "fresh-out", "--json"])
        .output()
        .unwrap();
    assert_success(&fresh);
    let json: serde_json::Value = serde_json::from_slice(&fresh.stdout).unwrap();
    json["digest"].as_str().unwrap().to_owned()
}

/// A workspace with the pausing Dockerfile on a busybox base; the digest a fresh store gives.
pub(crate) fn pausing_workspace(token: &str) -> (Workspace, String) {
    let ws = Workspace::new();
    let base = busybox_base(ws.path());
    ws.write("Dockerfile", pausing_dockerfile(&base, token));
    let digest = fresh_digest(&ws);
    (ws, digest)
}

/// `dockless build` of the pausing workspace, pausing `seconds` in its RUN.
pub(crate) fn pausing_build(ws: &Workspace, seconds: &str) -> Command {
    fs::write(ws.path().join("pause"), seconds).unwrap();
    let mut command = ws.dockless();
    command.args([
        "build",
        "ctx",
        "--output",
        "out",
        "--secret",
        "id=pause,src=pause",
    ]);
    command
}

/// After a build was killed: the next build sweeps what it left and gives `digest`.
fn next_build_sweeps_and_matches(ws: &Workspace, digest: &str) {
    let out = ws
        .dockless()
        .args(["build", "ctx", "--output", "again", "--json"])
        .output()
        .unwrap();
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["digest"], digest,
        "the next build gives the same digest"
    );
    assert_tmp_empty(&ws.cache());
}

/// `command` (a [`Workspace::dockless`] one) run as nobody, who has subordinate IDs: the
/// sandbox maps 65536 IDs, and the tree's files are handed to them for the command.
fn as_nobody(ws: &Workspace, template: Command) -> Command {
    crate::run::require_subordinate_ids();
    crate::run::chown_tree(ws.path(), "65534");
    let mut command = Command::new("setpriv");
    command.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        crate::support::binary::binary_for_anyone()
            .to_str()
            .unwrap(),
    ]);
    command.current_dir(ws.path());
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.args(template.get_args());
    command
}

fn stopped_during_run(signal: i32, code: i32, whole_group: bool) {
    stopped_during_run_as(signal, code, whole_group, false);
}

fn stopped_during_run_as(signal: i32, code: i32, whole_group: bool, nobody: bool) {
    let why = if nobody {
        "RUN as nobody through setpriv"
    } else {
        "RUN as root"
    };
    if !needs_root(why) {
        return;
    }
    let token = token();
    let (ws, digest) = pausing_workspace(&token);
    let mut command = pausing_build(&ws, "30");
    if nobody {
        command = as_nobody(&ws, command);
    }
    if whole_group {
        // As a terminal's Ctrl-C: the signal goes to every process of the group.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
    }
    let mut build = Running::start(command);
    build.wait_for_line(&format!("{token}-42"));
    let processes = sandbox_processes(&token);
    let secrets: Vec<PathBuf> = tmp_entries(&ws.cache())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "secret"))
        .collect();
    assert_eq!(secrets.len(), 1, "the secret's file, while the RUN runs");
    let started = Instant::now();
    if whole_group {
        // SAFETY: a signal to the group of our own child.
        assert_eq!(unsafe { libc::kill(-(build.child.id() as i32), signal) }, 0);
    } else {
        build.signal(signal);
    }
    let (status, stderr) = build.finish(Duration::from_secs(20));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.matches("interrupted").count(), 1, "{stderr}");
    assert!(!stderr.contains("error:"), "one message only: {stderr}");
    assert_all_end(&processes);
    assert!(!secrets[0].exists(), "the secret's file is removed");
    assert_tmp_empty(&ws.cache());
    assert!(!ws.out().exists(), "no output from a stopped build");
    if nobody {
        let mut again = ws.dockless();
        again.args(["build", "ctx", "--output", "again", "--json"]);
        let out = as_nobody(&ws, again).output().unwrap();
        assert_success(&out);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["digest"], digest.as_str(), "rootless, the same digest");
        assert_tmp_empty(&ws.cache());
    } else {
        next_build_sweeps_and_matches(&ws, &digest);
    }
}

#[test]
fn sigint_during_run_kills_the_sandbox_and_removes_its_files() {
    stopped_during_run(libc::SIGINT, 130, false);
}

#[test]
fn sigterm_during_run_kills_the_sandbox_and_removes_its_files() {
    stopped_during_run(libc::SIGTERM, 143, false);
}

/// Rootless, the tree's files belong to subordinate IDs while the command runs: the helper's
/// child gives them back before the tree is removed (else nobody could remove it).
#[test]
fn sigint_during_a_rootless_run_gives_the_files_back_and_removes_them() {
    stopped_during_run_as(libc::SIGINT, 130, false, true);
}

#[test]
fn ctrl_c_to_the_process_group_during_run_stops_cleanly() {
    stopped_during_run(libc::SIGINT, 130, true);
}

#[test]
fn sigkill_during_run_leaves_nothing_running_and_the_next_build_sweeps() {
    if !needs_root("RUN as root") {
        return;
    }
    let token = token();
    let (ws, digest) = pausing_workspace(&token);
    let mut build = Running::start(pausing_build(&ws, "30"));
    build.wait_for_line(&format!("{token}-42"));
    let processes = sandbox_processes(&token);
    build.signal(libc::SIGKILL);
    let (status, _) = build.finish(Duration::from_secs(10));
    assert_eq!(status.code(), None, "killed");
    assert_all_end(&processes);
    assert!(
        !tmp_entries(&ws.cache()).is_empty(),
        "a killed build leaves its working tree (for the next command to sweep)"
    );
    next_build_sweeps_and_matches(&ws, &digest);
}

/// A workspace whose build COPYs 192 MiB of random bytes; the digest a fresh store gives.
fn big_copy_workspace() -> (Workspace, String) {
    let ws = Workspace::new();
    let mut big = vec![0u8; 192 << 20];
    fastrand::Rng::with_seed(21).fill(&mut big);
    ws.write("big.bin", &big);
    drop(big);
    ws.write("Dockerfile", "FROM scratch\nCOPY big.bin /big.bin\n");
    let digest = fresh_digest(&ws);
    (ws, digest)
}

/// Starts the build of a [`big_copy_workspace`] and waits until its layer is being written.
fn writing_a_big_layer(ws: &Workspace) -> Running {
    let mut command = ws.dockless();
    command.args(["build", "ctx", "--output", "out"]);
    let mut build = Running::start(command);
    let cache = ws.cache();
    build.wait_until("a layer being written", |_| {
        tmp_entries(&cache)
            .iter()
            .any(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 1 << 20))
    });
    build
}

#[test]
fn sigkill_during_a_layer_write_is_swept_by_the_next_build() {
    let (ws, digest) = big_copy_workspace();
    let build = writing_a_big_layer(&ws);
    build.signal(libc::SIGKILL);
    let (status, _) = build.finish(Duration::from_secs(10));
    assert_eq!(status.code(), None, "killed");
    assert!(
        !tmp_entries(&ws.cache()).is_empty(),
        "the half-written layer"
    );
    next_build_sweeps_and_matches(&ws, &digest);
}

#[test]
fn sigint_during_a_layer_write_stops_within_a_read_and_removes_it() {
    let (ws, digest) = big_copy_workspace();
    let build = writing_a_big_layer(&ws);
    let started = Instant::now();
    build.signal(libc::SIGINT);
    let (status, stderr) = build.finish(Duration::from_secs(20));
    // Well within the grace period after which a build that does not stop is ended.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopping took {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert_eq!(stderr.matches("interrupted").count(), 1, "{stderr}");
    assert_tmp_empty(&ws.cache());
    next_build_sweeps_and_matches(&ws, &digest);
}

/// A registry holding the busybox base, behind a proxy; the pausing workspace on that base.
async fn registry_workspace() -> (Workspace, TestRegistry, FaultProxy, String) {
    let ws = Workspace::new();
    let layout = busybox_base(ws.path());
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let remote = format!("{}/bases/busybox:1", proxy.host());
    let out = ws
        .dockless()
        .args(["push", "--from", &layout, "--to", &remote])
        .output()
        .unwrap();
    assert_success(&out);
    (ws, registry, proxy, remote)
}

/// Waits until the proxy answered more requests matching `method` and `path` with a fault
/// than `seen_before` (counted by [`faulted`] before the build started).
fn wait_for_request(
    build: &mut Running,
    proxy: &FaultProxy,
    (method, path): (&str, &str),
    seen_before: usize,
) {
    build.wait_until(&format!("{method} …{path}…"), |_| {
        faulted(proxy, method, path) > seen_before
    });
}

/// How many requests matching `method` and `path` the proxy answered with a fault.
fn faulted(proxy: &FaultProxy, method: &str, path: &str) -> usize {
    proxy
        .seen()
        .iter()
        .filter(|s| s.method == method && s.path_and_query.contains(path) && s.fault.is_some())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_base_pull_is_swept_by_the_next_build() {
    let (ws, _registry, proxy, remote) = registry_workspace().await;
    ws.write("Dockerfile", format!("FROM {remote}\nCOPY f /f\n"));
    ws.write("f", "f");
    let digest = fresh_digest(&ws);
    // The base's blobs never come: the build waits in the pull.
    proxy.add(Rule::new("GET", "/blobs/sha256:", Fault::Hang, 100));
    let mut command = ws.dockless();
    command.args(["build", "ctx", "--output", "out"]);
    let mut build = Running::start(command);
    let wait = tokio::task::block_in_place(|| {
        wait_for_request(&mut build, &proxy, ("GET", "/blobs/sha256:"), 0);
        build.signal(libc::SIGKILL);
        build.finish(Duration::from_secs(10))
    });
    assert_eq!(wait.0.code(), None, "killed");
    proxy.clear();
    tokio::task::block_in_place(|| next_build_sweeps_and_matches(&ws, &digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_push_is_swept_and_the_next_push_completes() {
    let (ws, _registry, proxy, _remote) = registry_workspace().await;
    ws.write("Dockerfile", "FROM scratch\nCOPY f /f\n");
    ws.write("f", "pushed");
    let target = format!("{}/app/cancel:1", proxy.host());
    // Uploads never finish: the push waits.
    proxy.add(Rule::new("PUT", "/blobs/uploads/", Fault::Hang, 100));
    proxy.add(Rule::new("PATCH", "/blobs/uploads/", Fault::Hang, 100));
    let mut command = ws.dockless();
    command.args(["push", "ctx", "--to", &target]);
    let mut build = Running::start(command);
    let status = tokio::task::block_in_place(|| {
        build.wait_until("an upload", |_| {
            proxy
                .seen()
                .iter()
                .any(|s| s.path_and_query.contains("/blobs/uploads/") && s.fault.is_some())
        });
        build.signal(libc::SIGKILL);
        build.finish(Duration::from_secs(10)).0
    });
    assert_eq!(status.code(), None, "killed");
    proxy.clear();
    let out = tokio::task::block_in_place(|| {
        ws.dockless()
            .args(["push", "ctx", "--to", &target, "--json"])
            .output()
            .unwrap()
    });
    assert_success(&out);
    assert_tmp_empty(&ws.cache());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["digest"].as_str(),
        Some(fresh_digest(&ws).as_str()),
        "{json}"
    );
}

/// A build stuck in a transfer that does not look at the stop request (a base pull from a
/// registry that never answers): the first SIGINT ends it after the grace period, removing
/// what it registered; a second SIGINT ends it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_build_ends_after_the_grace_period_or_at_a_second_signal() {
    let (ws, _registry, proxy, remote) = registry_workspace().await;
    ws.write("Dockerfile", format!("FROM {remote}\nCOPY f /f\n"));
    ws.write("f", "f");
    proxy.add(Rule::new("GET", "/blobs/sha256:", Fault::Hang, 100));
    tokio::task::block_in_place(|| {
        for second_signal in [false, true] {
            let before = faulted(&proxy, "GET", "/blobs/sha256:");
            let mut command = ws.dockless();
            command.args(["build", "ctx", "--output", "out"]);
            let mut build = Running::start(command);
            wait_for_request(&mut build, &proxy, ("GET", "/blobs/sha256:"), before);
            let started = Instant::now();
            build.signal(libc::SIGINT);
            if second_signal {
                std::thread::sleep(Duration::from_millis(300));
                build.signal(libc::SIGINT);
            }
            let (status, stderr) = build.finish(Duration::from_secs(30));
            let took = started.elapsed();
            assert_eq!(
                status.code(),
                Some(130),
                "{status:?} after {took:?}: {stderr}"
            );
            assert_eq!(stderr.matches("interrupted").count(), 1, "{stderr}");
            if second_signal {
                assert!(took < Duration::from_secs(2), "the second signal: {took:?}");
            } else {
                assert!(
                    took >= Duration::from_secs(4) && took < Duration::from_secs(8),
                    "ended after the 5 s grace period: {took:?}"
                );
                assert_tmp_empty(&ws.cache());
            }
        }
    });
}
