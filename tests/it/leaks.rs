//! The secret-leak test: distinctive secrets in every source dockless reads credentials from,
//! every command run at the highest verbosity with `RUST_LOG=trace`, then every byte of output,
//! every file written and everything a child process was given is searched for them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use base64::Engine;

use crate::support::binary::{Workspace, busybox_base, files_under, run_with_stdin};
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
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let host = registry.host.clone();
    let setup = setup(&host);
    let auth_file = setup.ws.path().join("auth.json");
    let target = format!("{host}/leaks/app:1");
    let helped = "helped.localhost:1/leaks/app:1".to_owned();
    // A RUN step writes down everything its command can see of its environment into the image.
    let base = busybox_base(&setup.ws.path().join("base"));
    setup.ws.write(
        "run/Dockerfile",
        format!("FROM {base}\nRUN env > /seen.txt; cat /proc/self/environ >> /seen.txt; cat /proc/1/environ >> /seen.txt\n"),
    );

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
            "push --from the layout",
            vec!["push", "--from", "oci:out:latest", "--to", &target],
            vec![],
            "",
            true,
        ),
    ];
    for (what, args, env, stdin, should_succeed) in runs {
        // The registry is its own process: blocking this test's thread holds nothing up.
        let out = run(&setup, &args, &env, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), should_succeed, "{what}: {stderr}");
        assert!(
            !what.starts_with("push") || stderr.contains("TRACE"),
            "{what}: the run logs at full verbosity: {stderr}"
        );
        assert_clean(&format!("{what}: stdout"), &out.stdout);
        assert_clean(&format!("{what}: stderr"), &out.stderr);
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
