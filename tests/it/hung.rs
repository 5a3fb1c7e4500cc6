//! Never a hung job: the binary against peers that accept and never answer, answers that stop
//! half-way, rate limits with `Retry-After`, and a credential helper that never exits. Each
//! run is killed (and the test fails) if it outlives a guard far above the limit under test.

use std::time::Duration;

use crate::support::binary::Workspace;
use crate::support::stubborn::{Answer, ScriptedServer, run_at_most};

/// The limit the tests set; every failure must come within a few of these.
const LIMIT: &str = "1s";
/// Two tries of 1 s plus backoff, with room for a slow machine; far below any old wait.
const FAILS_WITHIN: Duration = Duration::from_secs(8);
/// Past this the run is killed and the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(40);

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The run failed with exit 1, one `error:` line, no panic, within [`FAILS_WITHIN`].
fn one_error(output: &std::process::Output, took: Duration) -> String {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(text.matches("error:").count(), 1, "one message: {text}");
    assert!(took < FAILS_WITHIN, "took {took:?}: {text}");
    text
}

fn scratch_context(ws: &Workspace) {
    ws.write("Dockerfile", "FROM scratch\nCOPY a /a\n");
    ws.write("a", "a");
}

#[test]
fn a_silent_registry_fails_the_push_within_the_limit_naming_it() {
    let registry = ScriptedServer::silent();
    let ws = Workspace::new();
    scratch_context(&ws);
    let mut push = ws.dockless();
    push.args(["push", "ctx", "--to"])
        .arg(format!("{}/x/y:z", registry.host()))
        .env("DOCKLESS_HTTP_TIMEOUT", LIMIT);
    let (output, took) = run_at_most(push, GUARD);
    let text = one_error(&output, took);
    assert!(
        text.contains(&format!("registry {}", registry.host())) && text.contains("within 1s"),
        "{text}"
    );
    assert!(
        text.contains("--http-timeout"),
        "says what to change: {text}"
    );
}

#[test]
fn the_flag_sets_the_limit_for_a_base_image_on_a_silent_registry() {
    let registry = ScriptedServer::silent();
    let ws = Workspace::new();
    ws.write("Dockerfile", format!("FROM {}/base:1\n", registry.host()));
    let mut build = ws.dockless();
    build.args(["build", "ctx", "--http-timeout", LIMIT]);
    let (output, took) = run_at_most(build, GUARD);
    let text = one_error(&output, took);
    assert!(
        text.contains(&registry.host()) && text.contains("within 1s"),
        "{text}"
    );
}

#[test]
fn a_registry_whose_answer_stalls_mid_body_fails_within_the_limit() {
    let registry = ScriptedServer::start(|method, target| match (method, target) {
        ("GET", "/v2/") => Answer::ok("application/json", "{}"),
        _ => Answer::Send {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            body: vec![b' '; 4096],
            stall_after: Some(100),
        },
    });
    let ws = Workspace::new();
    ws.write("Dockerfile", format!("FROM {}/base:1\n", registry.host()));
    let mut build = ws.dockless();
    build
        .args(["build", "ctx"])
        .env("DOCKLESS_HTTP_TIMEOUT", LIMIT);
    let (output, took) = run_at_most(build, GUARD);
    let text = one_error(&output, took);
    assert!(
        text.contains(&registry.host()) && text.contains("stalled for 1s"),
        "{text}"
    );
    assert!(
        registry.seen().iter().any(|r| r.contains("/manifests/1")),
        "{:?}",
        registry.seen()
    );
}

#[test]
fn a_credential_helper_that_never_exits_is_killed_and_named() {
    let registry = ScriptedServer::silent();
    let ws = Workspace::new();
    scratch_context(&ws);
    let bin = ws.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let pid_file = ws.path().join("helper.pid");
    let helper = bin.join("docker-credential-stuck");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 600\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&helper, executable).unwrap();
    crate::e2b::write_home_file(
        &ws,
        ".docker/config.json",
        &format!(r#"{{"credHelpers":{{"{}":"stuck"}}}}"#, registry.host()),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut push = ws.dockless();
    push.args(["push", "ctx", "--to"])
        .arg(format!("{}/x/y:z", registry.host()))
        .env("PATH", path)
        .env("DOCKLESS_HTTP_TIMEOUT", LIMIT);
    let (output, took) = run_at_most(push, GUARD);
    let text = one_error(&output, took);
    assert!(
        text.contains("docker-credential-stuck") && text.contains("within 1s"),
        "{text}"
    );
    let pid = std::fs::read_to_string(&pid_file).expect("the helper ran");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
    assert!(
        status.map_or(true, |s| !s.contains("sleep")),
        "the helper (pid {}) still runs",
        pid.trim()
    );
}

/// `template list` against an API address that accepts and never answers, the limit set by
/// the environment, then by the global flag (which reaches the E2B client as it does the
/// registry client: in the policy the command builds it with).
#[test]
fn an_e2b_api_that_never_answers_fails_within_the_limit() {
    let api = ScriptedServer::silent();
    let ws = Workspace::new();
    for by_flag in [false, true] {
        let mut list = ws.dockless();
        list.args(["template", "list", "--json"])
            .env("E2B_API_URL", format!("http://{}", api.host()))
            .env("E2B_API_KEY", crate::e2b::API_KEY);
        if by_flag {
            list.args(["--http-timeout", LIMIT]);
        } else {
            list.env("DOCKLESS_HTTP_TIMEOUT", LIMIT);
        }
        let (output, took) = run_at_most(list, GUARD);
        let text = one_error(&output, took);
        assert!(
            text.contains("E2B API") && text.contains("no answer within 1s"),
            "by flag: {by_flag}: {text}"
        );
        assert!(!text.contains(crate::e2b::API_KEY), "{text}");
    }
}

/// E2B's API asks for 2 s with `Retry-After` on a 503, then answers: the client waits
/// that long (its own backoff would be far shorter) and succeeds.
#[test]
fn an_e2b_api_busy_with_retry_after_is_waited_for() {
    let tries = std::sync::atomic::AtomicUsize::new(0);
    let api = ScriptedServer::start(move |_, _| {
        if tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Answer::Send {
                status: 503,
                headers: vec![("Retry-After".into(), "2".into())],
                body: b"busy".to_vec(),
                stall_after: None,
            }
        } else {
            Answer::ok("application/json", "[]")
        }
    });
    let ws = Workspace::new();
    let mut list = ws.dockless();
    list.args(["template", "list", "--json"])
        .env("E2B_API_URL", format!("http://{}", api.host()))
        .env("E2B_API_KEY", crate::e2b::API_KEY);
    let (output, took) = run_at_most(list, GUARD);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "[]");
    assert_eq!(api.seen().len(), 2, "{:?}", api.seen());
    assert!(
        took >= Duration::from_secs(2),
        "Retry-After: 2 not honoured: {took:?}"
    );
}

#[test]
fn add_of_a_url_on_a_silent_server_fails_within_the_limit() {
    let server = ScriptedServer::silent();
    let ws = Workspace::new();
    let url = format!("http://{}/file.txt", server.host());
    ws.write("Dockerfile", format!("FROM scratch\nADD {url} /file.txt\n"));
    let mut build = ws.dockless();
    build.args(["build", "ctx", "--http-timeout", LIMIT]);
    let (output, took) = run_at_most(build, GUARD);
    let text = one_error(&output, took);
    assert!(
        text.contains(&url) && text.contains("no answer within 1s (2 tries)"),
        "{text}"
    );
}

#[test]
fn add_of_a_url_whose_body_stalls_fails_within_the_limit() {
    let server = ScriptedServer::start(|_, _| Answer::Send {
        status: 200,
        headers: vec![],
        body: vec![b'x'; 100_000],
        stall_after: Some(1_000),
    });
    let ws = Workspace::new();
    let url = format!("http://{}/file.txt", server.host());
    ws.write("Dockerfile", format!("FROM scratch\nADD {url} /file.txt\n"));
    let mut build = ws.dockless();
    build
        .args(["build", "ctx"])
        .env("DOCKLESS_HTTP_TIMEOUT", LIMIT);
    let (output, took) = run_at_most(build, GUARD);
    let text = one_error(&output, took);
    assert!(
        text.contains(&url) && text.contains("stalled: no byte for 1s"),
        "{text}"
    );
}

/// `ADD http://…` goes through `HTTP_PROXY` (here a server that answers every request itself),
/// so a host the machine cannot resolve is still fetched.
#[test]
fn add_of_a_url_goes_through_the_proxy_the_environment_names() {
    let proxy = ScriptedServer::start(|_, _| Answer::ok("text/plain", "through the proxy"));
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nADD http://files.invalid/file.txt /file.txt\n",
    );
    let mut build = ws.dockless();
    build
        .args(["build", "ctx", "--output", "out", "--json"])
        .env("http_proxy", format!("http://{}", proxy.host()))
        .env_remove("HTTP_PROXY")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let (output, _) = run_at_most(build, GUARD);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        proxy.seen(),
        ["GET http://files.invalid/file.txt"],
        "the request went to the proxy in absolute form"
    );
}
