//! The secret-leak test: distinctive secrets in every source dockless reads credentials from,
//! every command run at the highest verbosity with `RUST_LOG=trace`, then every byte of output,
//! every file written and everything a child process was given is searched for them.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;

use crate::support::binary::{
    Workspace, busybox_base, files_under, needs_root, run_with_stdin, umoci_unpack,
};
use crate::support::registry::{PASSWORD, RegistryAuth, TestRegistry, USER};

/// Each secret is unique to one source, so a hit also says where it came from.
const E2B_API_KEY: &str = "e2b_leakcheck_env_api_key_4f1d9a";
const E2B_ACCESS_TOKEN: &str = "sk_e2b_leakcheck_env_access_token_8c2b7e";
const E2B_CONFIG_KEY: &str = "e2b_leakcheck_config_team_key_77ae01";
const E2B_CONFIG_TOKEN: &str = "sk_e2b_leakcheck_config_token_a3c9f0";
const STDIN_PASSWORD: &str = "leakcheck-stdin-password-6d0b2c";
const AUTH_FILE_PASSWORD: &str = "leakcheck-authfile-password-19e4aa";
const HELPER_SECRET: &str = "leakcheck-helper-secret-5b77d3";

fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Every secret, and the forms it travels in (Basic's base64 of `user:secret`).
fn forbidden() -> Vec<(String, &'static str)> {
    let mut all = Vec::new();
    for (secret, source) in [
        (E2B_API_KEY, "E2B_API_KEY"),
        (E2B_ACCESS_TOKEN, "E2B_ACCESS_TOKEN"),
        (E2B_CONFIG_KEY, "~/.e2b/config.json teamApiKey"),
        (E2B_CONFIG_TOKEN, "~/.e2b/config.json accessToken"),
        (STDIN_PASSWORD, "--password-stdin"),
        (AUTH_FILE_PASSWORD, "REGISTRY_AUTH_FILE"),
        (HELPER_SECRET, "a credential helper's answer"),
        (PASSWORD, "the docker config"),
    ] {
        all.push((secret.to_owned(), source));
        for user in [USER, "_e2b_api_key", "_e2b_access_token", "<token>"] {
            all.push((base64(&format!("{user}:{secret}")), source));
        }
    }
    all
}

struct Setup {
    ws: Workspace,
    /// Files we wrote holding secrets on purpose: not searched.
    planted: Vec<PathBuf>,
    /// Where the fake credential helper records what it was given.
    helper_log: PathBuf,
    bin: PathBuf,
}

fn plant(setup: &mut Setup, path: PathBuf, contents: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, contents).unwrap();
    setup.planted.push(path);
}

fn setup(registry_host: &str) -> Setup {
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY app.txt /app/app.txt\n");
    ws.write("app.txt", "hello");
    let bin = ws.path().join("bin");
    let helper_log = ws.path().join("helper-saw.txt");
    let mut setup = Setup {
        ws,
        planted: Vec::new(),
        helper_log: helper_log.clone(),
        bin: bin.clone(),
    };
    let home = setup.ws.path().join("home");
    plant(
        &mut setup,
        home.join(".e2b/config.json"),
        &format!(
            r#"{{"email":"dev@example.com","accessToken":"{E2B_CONFIG_TOKEN}","teamApiKey":"{E2B_CONFIG_KEY}","teamId":"team-1"}}"#
        ),
    );
    // The docker config holds the registry's real password, and sends other hosts to a helper.
    plant(
        &mut setup,
        home.join(".docker/config.json"),
        &format!(
            r#"{{"auths":{{"{registry_host}":{{"auth":"{}"}}}},"credHelpers":{{"helped.localhost:1":"leakcheck"}}}}"#,
            base64(&format!("{USER}:{PASSWORD}"))
        ),
    );
    let auth_file = setup.ws.path().join("auth.json");
    plant(
        &mut setup,
        auth_file,
        &format!(
            r#"{{"auths":{{"{registry_host}":{{"auth":"{}"}}}}}}"#,
            base64(&format!("{USER}:{AUTH_FILE_PASSWORD}"))
        ),
    );
    // A credential helper that writes down its argv, environment and stdin, then answers.
    let helper = bin.join("docker-credential-leakcheck");
    plant(
        &mut setup,
        helper.clone(),
        &format!(
            "#!/bin/sh\n{{ echo \"argv: $0 $*\"; env; echo stdin:; cat; }} > {}\necho '{{\"Username\":\"{USER}\",\"Secret\":\"{HELPER_SECRET}\"}}'\n",
            helper_log.display()
        ),
    );
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    setup
}

fn run(setup: &Setup, args: &[&str], extra_env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd: Command = setup.ws.dockless();
    let path = format!("{}:{}", setup.bin.display(), std::env::var("PATH").unwrap());
    cmd.arg("-vvv")
        .args(args)
        .env("RUST_LOG", "trace")
        .env("PATH", path)
        .env("E2B_API_KEY", E2B_API_KEY)
        .env("E2B_ACCESS_TOKEN", E2B_ACCESS_TOKEN)
        .env("E2B_API_URL", "http://127.0.0.1:1")
        .envs(extra_env.iter().copied());
    run_with_stdin(cmd, stdin)
}

/// Searches text for every secret, and gzip layers after inflating them.
fn assert_clean(what: &str, bytes: &[u8]) {
    let mut texts = vec![bytes.to_vec()];
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut inflated = Vec::new();
        if std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut inflated)
            .is_ok()
        {
            texts.push(inflated);
        }
    }
    for text in texts {
        let text = String::from_utf8_lossy(&text);
        for (secret, source) in forbidden() {
            assert!(
                !text.contains(&secret),
                "{what} holds the secret from {source}"
            );
        }
    }
}

/// Printed and recorded by the RUN: the sign that it ran (the Dockerfile holds
/// `$MARKER-$((6*7))`, so a logged step header cannot be taken for it).
const RUN_MARKER: &str = "leakcheck-run-step-42";

/// A RUN that records (in /seen, and on its output) everything its command can see, then
/// sleeps a second so that [`SandboxWatcher`] sees its sandbox helper.
fn run_dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         ENV MARKER=leakcheck-run-step\n\
         RUN mkdir /seen && echo \"$MARKER-$((6*7))\" > /seen/env && env >> /seen/env \
         && for p in /proc/[0-9]*; do echo \"== $p\"; cat $p/cmdline $p/environ; echo; done > /seen/processes \
         && cat /proc/self/mountinfo > /seen/mounts \
         && find / -path /proc -prune -o -path /sys -prune -o -path /dev -prune -o -path /seen -prune \
            -o -type f ! -name busybox -exec cat {{}} + > /seen/files 2>&1; \
         cat /seen/env /seen/processes /seen/mounts; sleep 1\n"
    )
}

/// Watches, while a run lasts, for this workspace's RUN sandbox helpers (children of the
/// dockless process whose environment names its cache) and keeps what each was given: argv and environment.
struct SandboxWatcher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<BTreeMap<u32, Vec<u8>>>,
}

impl SandboxWatcher {
    fn start(cache: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let ours = format!("DOCKLESS_CACHE_DIR={}", cache.display()).into_bytes();
        let thread = std::thread::spawn(move || {
            let mut seen = BTreeMap::new();
            while !stopped.load(Ordering::SeqCst) {
                for pid in fs::read_dir("/proc")
                    .unwrap()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                {
                    let read = |what: &str| fs::read(format!("/proc/{pid}/{what}"));
                    let (Ok(cmdline), Ok(environ)) = (read("cmdline"), read("environ")) else {
                        continue;
                    };
                    let helper = cmdline
                        .split(|b| *b == 0)
                        .any(|arg| arg == dockless_sandbox::SANDBOX_ARG.as_bytes());
                    // The helper gets an empty environment: it is ours when its parent,
                    // the dockless process, names this workspace's cache.
                    let names_ours = |environ: &[u8]| environ.split(|b| *b == 0).any(|v| v == ours);
                    let parent_environ = crate::support::binary::parent_of(pid)
                        .and_then(|parent| fs::read(format!("/proc/{parent}/environ")).ok())
                        .unwrap_or_default();
                    if helper && (names_ours(&environ) || names_ours(&parent_environ)) {
                        seen.insert(pid, [cmdline, environ].concat());
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            seen
        });
        SandboxWatcher { stop, thread }
    }

    fn stop(self) -> BTreeMap<u32, Vec<u8>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// What a run is called, its arguments, extra environment, stdin, and whether it succeeds.
type Run<'a> = (
    &'a str,
    Vec<&'a str>,
    Vec<(&'a str, &'a str)>,
    &'a str,
    bool,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_output_file_or_child() {
    if !needs_root("a RUN step as root") {
        return;
    }
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let host = registry.host.clone();
    let setup = setup(&host);
    let auth_file = setup.ws.path().join("auth.json");
    let target = format!("{host}/leaks/app:1");
    let helped = "helped.localhost:1/leaks/app:1".to_owned();
    // A RUN step writes down everything its command can see into the image (and prints it,
    // so it is in the logs too): its environment, the argv and environment of every process
    // it can see, its mounts, and every file it can read outside /proc, /sys and /dev. It is
    // built while pushing, with the registry's credentials loaded and E2B's in the environment;
    // meanwhile the sandbox helper's argv and environment are read from /proc.
    let base = busybox_base(&setup.ws.path().join("base"));
    setup.ws.write("run/Dockerfile", run_dockerfile(&base));
    let run_target = format!("{host}/leaks/run:1");
    let runs: Vec<Run> = vec![
        (
            "build",
            vec!["build", "ctx", "--output", "out", "--json"],
            vec![],
            "",
            true,
        ),
        (
            "push, docker config",
            vec!["push", "ctx", "--to", &target, "--json"],
            vec![],
            "",
            true,
        ),
        (
            "push, --password-stdin (wrong)",
            vec![
                "push",
                "ctx",
                "--to",
                &target,
                "--username",
                USER,
                "--password-stdin",
            ],
            vec![],
            STDIN_PASSWORD,
            false,
        ),
        (
            "push, REGISTRY_AUTH_FILE (wrong)",
            vec!["push", "ctx", "--to", &target],
            vec![("REGISTRY_AUTH_FILE", auth_file.to_str().unwrap())],
            "",
            false,
        ),
        (
            "push, credential helper (unreachable)",
            vec!["push", "ctx", "--to", &helped],
            vec![],
            "",
            false,
        ),
        (
            "push of a RUN, docker config",
            vec!["push", "ctx/run", "--to", &run_target, "--json"],
            vec![],
            "",
            true,
        ),
        // The same RUN from the cache, into a layout that is unpacked below.
        (
            "build of a RUN",
            vec!["build", "ctx/run", "--output", "run-out", "--tag", "t"],
            vec![],
            "",
            true,
        ),
        (
            "push --from the layout",
            vec!["push", "--from", "oci:out:latest", "--to", &target],
            vec![],
            "",
            true,
        ),
    ];
    for (what, args, env, stdin, should_succeed) in runs {
        let watcher = SandboxWatcher::start(setup.ws.cache());
        // The registry is its own process: blocking this test's thread holds nothing up.
        let out = run(&setup, &args, &env, stdin);
        let helpers = watcher.stop();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), should_succeed, "{what}: {stderr}");
        assert!(
            !what.starts_with("push") || stderr.contains("TRACE"),
            "{what}: the run logs at full verbosity: {stderr}"
        );
        assert_clean(&format!("{what}: stdout"), &out.stdout);
        assert_clean(&format!("{what}: stderr"), &out.stderr);
        if what == "push of a RUN, docker config" {
            assert!(
                stderr.contains(RUN_MARKER),
                "{what}: the RUN ran in this push (its output is logged): {stderr}"
            );
            assert!(
                !helpers.is_empty(),
                "{what}: the RUN's sandbox helper was seen while the RUN slept"
            );
        }
        for (pid, view) in helpers {
            assert_clean(&format!("{what}: the sandbox helper {pid}"), &view);
        }
    }

    // What the RUN saw is in the image: it ran, saw its environment, and none of it is secret.
    let (_unpacked, rootfs) = umoci_unpack(&setup.ws.path().join("run-out"), "t");
    let seen = fs::read_to_string(rootfs.join("seen/env")).expect("the RUN wrote /seen/env");
    assert!(
        seen.starts_with(RUN_MARKER) && seen.contains("PATH=/usr/local/sbin"),
        "the RUN's environment was recorded: {seen}"
    );
    let seen_files = files_under(&rootfs.join("seen"));
    assert_eq!(seen_files.len(), 4, "{seen_files:?}");
    for path in seen_files {
        assert_clean(
            &format!("the RUN's view: {}", path.display()),
            &fs::read(&path).unwrap(),
        );
    }

    // The helper ran (for its own registry only) and was given neither secrets nor E2B keys.
    let helper_saw = fs::read_to_string(&setup.helper_log).expect("the credential helper ran");
    assert!(helper_saw.contains("argv:") && helper_saw.contains("helped.localhost:1"));
    for (secret, source) in forbidden() {
        if secret != HELPER_SECRET {
            assert!(
                !helper_saw.contains(&secret),
                "the credential helper was given the secret from {source}"
            );
        }
    }

    let mut written = files_under(setup.ws.path());
    written.retain(|p| !setup.planted.contains(p) && p != &setup.helper_log);
    assert!(
        written.iter().any(|p| p.starts_with(setup.ws.cache())),
        "the cache was searched"
    );
    for path in written {
        assert_clean(&path.display().to_string(), &fs::read(&path).unwrap());
    }
}
