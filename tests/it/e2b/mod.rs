//! E2B end to end: the real binary against the local E2B double (API + gateway in front of the
//! real `docker-registry`), each credential kind and source, both flows, every refusal.

mod commands;
mod double;
mod double_api;
mod flows;
mod gateway;
mod refusals;
mod retries;
mod secrets;
mod today;

use std::process::Output;

use base64::Engine;

use crate::support::binary::{Workspace, run_with_stdin};
use double::E2bDouble;

pub const API_KEY: &str = "e2b_0f1e2d3c4b5a69788796a5b4c3d2e1f0";
pub const ACCESS_TOKEN: &str = "sk_e2b_9a8b7c6d5e4f30211203f4e5d6c7b8a9";
pub const STALE_TOKEN: &str = "sk_e2b_5151515151515151deadbeefdeadbeef";

/// The template context used by every test: a comment and a name in e2b.toml, one COPY.
pub const E2B_TOML: &str =
    "# my sandbox template\ntemplate_name = \"web-sandbox\" # the name\nmemory_mb = 1024\n";

pub fn template_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "e2b.Dockerfile",
        "FROM scratch\nCOPY app.txt /app/app.txt\n",
    );
    ws.write("app.txt", "hello from the sandbox");
    ws.write("e2b.toml", E2B_TOML);
    ws
}

pub fn write_home_file(ws: &Workspace, relative: &str, contents: &str) {
    let path = ws.path().join("home").join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// Docker config in the workspace's HOME giving `user:password` for `host`.
pub fn docker_login(ws: &Workspace, host: &str, user: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    write_home_file(
        ws,
        ".docker/config.json",
        &format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    );
}

/// `dockless ARGS…` pointed at the double, with no E2B variable of the machine leaking in.
pub fn run(
    ws: &Workspace,
    double: &E2bDouble,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> Output {
    let mut cmd = ws.dockless();
    for name in [
        "E2B_API_KEY",
        "E2B_ACCESS_TOKEN",
        "E2B_DOMAIN",
        "E2B_DEBUG",
        "E2B_IMAGE_URI_MASK",
        "E2B_TEAM_ID",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ] {
        cmd.env_remove(name);
    }
    cmd.args(args).envs(double.env()).envs(env.iter().copied());
    run_with_stdin(cmd, stdin)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}\nstdout: {}",
        stderr(out),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A failed run: exit 1, no panic; returns stderr.
pub fn failure(out: &Output) -> String {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(1), "expected exit 1: {text}");
    assert!(!text.contains("panicked"), "panic: {text}");
    text
}

pub fn e2b_toml(ws: &Workspace) -> String {
    std::fs::read_to_string(ws.context().join("e2b.toml")).unwrap()
}
