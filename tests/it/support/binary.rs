//! Running the real `dockless` binary against temporary contexts.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where fixtures that any user must reach are kept, outside the checkout: the rootless tests
/// run as `nobody`, and a clone may sit in a home directory only its owner can enter.
/// `DOCKLESS_TEST_FIXTURES` moves it.
pub fn shared_fixtures() -> PathBuf {
    let dir = std::env::var_os("DOCKLESS_TEST_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/dockless-tests"));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The dockless binary copied where any user can run it (see [`shared_fixtures`]); one copy
/// per build of it, copies older than a day removed.
pub fn binary_for_anyone() -> &'static Path {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let original = Path::new(env!("CARGO_BIN_EXE_dockless"));
        let meta = fs::metadata(original).unwrap();
        let bins = shared_fixtures().join("bin");
        let name = format!(
            "{}-{}",
            meta.size(),
            meta.mtime_nsec() + meta.mtime() * 1_000_000_000
        );
        let dir = bins.join(&name);
        let copy = dir.join("dockless");
        if !copy.is_file() {
            // Copies of other builds go once they are a day old: a test run of another
            // checkout may still be using a younger one.
            let day = std::time::Duration::from_secs(86_400);
            for old in fs::read_dir(&bins).into_iter().flatten().flatten() {
                let stale = old
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > day));
                if stale {
                    let _ = fs::remove_dir_all(old.path());
                }
            }
            let staging = bins.join(format!(".{name}.{}", std::process::id()));
            fs::create_dir_all(&staging).unwrap();
            fs::copy(original, staging.join("dockless")).unwrap();
            for path in [&bins, &staging] {
                fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
            }
            // Another test process may have put the same copy in place first.
            if fs::rename(&staging, &dir).is_err() {
                let _ = fs::remove_dir_all(&staging);
            }
        }
        copy
    })
}

/// A temporary directory holding a build context, a cache and outputs.
pub struct Workspace {
    pub dir: TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn context(&self) -> PathBuf {
        let ctx = self.path().join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        ctx
    }

    /// Writes a file under the context, creating parents.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.context().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// `dockless ARGS…` with this workspace's cache, run in the workspace directory.
    pub fn dockless(&self) -> Command {
        self.hermetic(Command::new(env!("CARGO_BIN_EXE_dockless")))
    }

    /// [`Self::dockless`] started by `launcher` (a program and its arguments, the binary's
    /// path then follows), such as an emulator.
    pub fn dockless_under(&self, launcher: &[&str]) -> Command {
        let mut cmd = Command::new(launcher[0]);
        cmd.args(&launcher[1..]).arg(env!("CARGO_BIN_EXE_dockless"));
        self.hermetic(cmd)
    }

    fn hermetic(&self, mut cmd: Command) -> Command {
        // Hermetic: no credentials or settings of the machine running the tests leak in.
        cmd.current_dir(self.path())
            .env("DOCKLESS_CACHE_DIR", self.cache())
            .env("HOME", self.path().join("home"))
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("RUST_LOG")
            .env_remove("BUILDKIT_PROGRESS")
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR");
        cmd
    }

    /// Builds the context into `out` with tag `t`, asserting success; returns the parsed --json.
    pub fn build_ok(&self, extra: &[&str]) -> serde_json::Value {
        let out = self
            .dockless()
            .args(["build", "ctx", "--output", "out", "--tag", "t", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert_success(&out);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "--json output: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Builds and expects failure; returns stderr.
    pub fn build_err(&self, extra: &[&str]) -> String {
        let out = self
            .dockless()
            .args(["build", "ctx", "--output", "out", "--tag", "t"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "expected exit 1, stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "panic: {stderr}");
        assert!(
            !self.path().join("out").exists(),
            "a failed build must not leave output"
        );
        stderr
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "command failed ({:?})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs an external tool, asserting success, returning stdout.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (run scripts/setup.sh)"));
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo inspect` of an OCI layout, parsed.
pub fn skopeo_inspect(layout: &Path, tag: &str, extra: &[&str]) -> serde_json::Value {
    let reference = format!("oci:{}:{tag}", layout.display());
    let mut args = vec!["inspect"];
    args.extend_from_slice(extra);
    args.push(&reference);
    serde_json::from_str(&tool("skopeo", &args)).unwrap()
}

/// Unpacks a layout with umoci and returns the rootfs path (kept alive by the returned TempDir).
pub fn umoci_unpack(layout: &Path, tag: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let image = format!("{}:{tag}", layout.display());
    let mut args = vec!["unpack"];
    // As root, umoci applies owners; otherwise it must map them away.
    if !is_root() {
        args.push("--rootless");
    }
    args.extend(["--image", &image, bundle.to_str().unwrap()]);
    tool("umoci", &args);
    let rootfs = bundle.join("rootfs");
    (dir, rootfs)
}

/// Whether a test that needs root may go on; without root it fails with one line unless
/// `DOCKLESS_TEST_SKIP_ROOT=1` asks to skip it (the rule the sandbox's unit tests follow too).
pub use dockless_sandbox::test_support::needs_root;

pub fn is_root() -> bool {
    // SAFETY-free check: /proc/self/status lists the effective uid.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Builds the busybox base image (as `just demo` does) into `dir`, returning `oci:DIR:latest`.
pub fn busybox_base(dir: &Path) -> String {
    let ws_ctx = dir.join("base-context");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-base"),
        &ws_ctx,
    );
    fs::copy("/bin/busybox", ws_ctx.join("busybox")).expect("/bin/busybox (busybox-static)");
    let layout = dir.join("base");
    let out = Command::new(env!("CARGO_BIN_EXE_dockless"))
        .args([
            "build",
            ws_ctx.to_str().unwrap(),
            "--output",
            layout.to_str().unwrap(),
        ])
        .env("DOCKLESS_CACHE_DIR", dir.join("base-cache"))
        .output()
        .unwrap();
    assert_success(&out);
    format!("oci:{}:latest", layout.display())
}

pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Long enough for five retries against an unreachable registry; a hang is far longer.
const HANG: Duration = Duration::from_secs(90);

/// [`run_with_stdin`] from async tests, off the runtime's threads (which serve the registry
/// doubles the command talks to).
pub async fn run_async(cmd: Command, stdin: &'static str) -> Output {
    tokio::task::spawn_blocking(move || run_with_stdin(cmd, stdin))
        .await
        .expect("the command runner thread")
}

/// Runs a command with `stdin` piped in (for --password-stdin and the like), killing it and
/// failing the test if it has not ended within 90 s: a hang is a bug, not a slow test.
pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_owned();
    // A command may exit without reading its input; that is its answer, not a failure here.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > HANG {
            let _ = child.kill();
            panic!("{cmd:?} hung for {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().unwrap();
    child.wait_with_output().unwrap()
}

/// Every file (anything but a directory) below `dir`, for searching what a run wrote.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The parent of process `pid`, from `/proc/PID/stat` (the field after the command's name,
/// which may itself hold spaces and parentheses).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
