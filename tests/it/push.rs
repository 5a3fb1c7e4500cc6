//! `dockless push` end to end against the real registry, checked with skopeo.

use serde_json::Value;

use crate::support::binary::{Workspace, busybox_base, needs_root, run_with_stdin, umoci_unpack};
use crate::support::registry::{PASSWORD, RegistryAuth, TestRegistry, USER};
use crate::support::skopeo;
use crate::support::token_server::TokenServer;

fn push_json(ws: &Workspace, args: &[&str], password: Option<&str>) -> Value {
    let mut cmd = ws.dockless();
    cmd.arg("push").args(args).arg("--json");
    if password.is_some() {
        cmd.args(["--username", USER, "--password-stdin"]);
    }
    let out = run_with_stdin(cmd, password.unwrap_or(""));
    assert!(
        out.status.success(),
        "push failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn example_context(ws: &Workspace) {
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY app/ /app/\nENV MODE=test\nCMD [\"/app/run\"]\n",
    );
    ws.write("app/run", "#!/bin/sh\necho running\n");
    ws.write("app/data.bin", vec![42u8; 300_000]);
}

async fn check_with_skopeo(reference: &str, creds: Option<(&str, &str)>, expected_digest: &Value) {
    assert_eq!(
        skopeo::digest(reference, creds).await.unwrap(),
        expected_digest.as_str().unwrap(),
        "the digest printed is the one skopeo computes from what the registry serves"
    );
    let dest = tempfile::tempdir().unwrap();
    skopeo::copy_to_oci(reference, creds, dest.path())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_a_registry_without_auth_then_again_then_elsewhere() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let ws = Workspace::new();
    example_context(&ws);
    let target = format!("{}/team/app:v1", registry.host);
    let first = push_json(&ws, &["ctx", "--to", &target], None);
    assert_eq!(first["uploadedBlobs"], 2, "config and one layer: {first}");
    check_with_skopeo(&target, None, &first["digest"]).await;

    let again = push_json(&ws, &["ctx", "--to", &target], None);
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(
        again["uploadedBlobs"], 0,
        "a second identical push uploads nothing: {again}"
    );
    assert_eq!(again["uploadedBytes"], 0);
    assert_eq!(again["skippedBlobs"], 2, "the registry had both: {again}");
    assert_eq!(again["mountedBlobs"], 0, "{again}");

    let other = format!("{}/other/app:v1", registry.host);
    let elsewhere = push_json(&ws, &["ctx", "--to", &other], None);
    assert_eq!(
        elsewhere["uploadedBlobs"], 0,
        "every blob is mounted or skipped: {elsewhere}"
    );
    assert_eq!(elsewhere["mountedBlobs"], 2, "{elsewhere}");
    assert_eq!(
        elsewhere["skippedBlobs"], 0,
        "a mounted blob is counted as mounted only: {elsewhere}"
    );
    check_with_skopeo(&other, None, &first["digest"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_basic_auth_and_the_password_on_stdin() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let ws = Workspace::new();
    example_context(&ws);
    let target = format!("{}/basic/app:v1", registry.host);
    let pushed = push_json(
        &ws,
        &["ctx", "--to", &target, "--chunk-size", "65536"],
        Some(PASSWORD),
    );
    check_with_skopeo(&target, Some((USER, PASSWORD)), &pushed["digest"]).await;

    let mut cmd = ws.dockless();
    cmd.args([
        "push",
        "ctx",
        "--to",
        &target,
        "--username",
        USER,
        "--password-stdin",
    ]);
    let out = run_with_stdin(cmd, "wrong password");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&registry.host),
        "names the registry: {stderr}"
    );
    assert!(
        !stderr.contains("wrong password"),
        "never prints the secret: {stderr}"
    );

    let mut anonymous = ws.dockless();
    anonymous.args(["push", "ctx", "--to", &target]);
    let out = anonymous.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_token_auth_from_a_docker_config() {
    let server = TokenServer::start(USER, PASSWORD).await;
    let registry = TestRegistry::start(RegistryAuth::Token(&server)).await;
    let ws = Workspace::new();
    example_context(&ws);
    let docker_dir = ws.path().join("home/.docker");
    std::fs::create_dir_all(&docker_dir).unwrap();
    let auth = base64_encode(&format!("{USER}:{PASSWORD}"));
    std::fs::write(
        docker_dir.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host),
    )
    .unwrap();
    let target = format!("{}/token/app:v1", registry.host);
    let pushed = push_json(&ws, &["ctx", "--to", &target], None);
    check_with_skopeo(&target, Some((USER, PASSWORD)), &pushed["digest"]).await;
    assert!(server.issued() > 0);
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_on_another_registry_is_copied_byte_for_byte() {
    let source = TestRegistry::start(RegistryAuth::None).await;
    let target = TestRegistry::start(RegistryAuth::None).await;
    let ws = Workspace::new();
    let base_layout = busybox_base(ws.path());
    let base_ref = format!("{}/library/busybox:1", source.host);
    let base = push_json(&ws, &["--from", &base_layout, "--to", &base_ref], None);
    assert_eq!(base["uploadedBlobs"], 3, "{base}");

    ws.write(
        "Dockerfile",
        format!(
            "FROM {base_ref}\nCOPY --chown=user:user hello.txt /home/user/hello.txt\nUSER user\n"
        ),
    );
    ws.write("hello.txt", "hello from a registry base\n");
    let to = format!("{}/apps/hello:1", target.host);
    let pushed = push_json(&ws, &["ctx", "--to", &to], None);
    check_with_skopeo(&to, None, &pushed["digest"]).await;
    let source_manifest: Value =
        serde_json::from_slice(&skopeo::inspect_raw(&base_ref, None).await.unwrap()).unwrap();
    let target_manifest: Value =
        serde_json::from_slice(&skopeo::inspect_raw(&to, None).await.unwrap()).unwrap();
    for (i, layer) in source_manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(
            layer["digest"], target_manifest["layers"][i]["digest"],
            "base layer {i} kept as is"
        );
    }

    // --output with a registry base writes a complete layout.
    let out = ws
        .dockless()
        .args(["build", "ctx", "--output", "out", "--tag", "t"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_keep, rootfs) = umoci_unpack(&ws.out(), "t");
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "base layers fetched into the layout"
    );
    let hello = rootfs.join("home/user/hello.txt");
    assert!(hello.is_file());
    if needs_root("owners by name are set only when the unpacking runs as root") {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(&hello).unwrap().uid(),
            1000,
            "--chown=user from the registry base's /etc/passwd"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_from_a_layout_written_by_another_tool() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let ws = Workspace::new();
    example_context(&ws);
    let built = ws.build_ok(&[]);
    // skopeo rewrites the layout into its own; dockless pushes what skopeo wrote.
    let copied = ws.path().join("copied");
    crate::support::binary::tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:t", ws.out().display()),
            &format!("oci:{}:again", copied.display()),
        ],
    );
    let target = format!("{}/from/layout:again", registry.host);
    let pushed = push_json(
        &ws,
        &[
            "--from",
            &format!("oci:{}:again", copied.display()),
            "--to",
            &target,
        ],
        None,
    );
    assert_eq!(pushed["digest"], built["digest"]);
    check_with_skopeo(&target, None, &built["digest"]).await;
}

#[test]
fn bad_references_and_missing_layouts_are_clear_errors() {
    let ws = Workspace::new();
    // A flag's value in a form it cannot have is a usage error (2); a layout that is not
    // there is a failure (1).
    for (args, needle, code) in [
        (
            vec!["push", "--to", "UPPER/Case:tag", "ctx"],
            "UPPER/Case",
            2,
        ),
        (
            vec!["push", "--from", "oci:nowhere", "--to", "127.0.0.1:1/x:y"],
            "nowhere",
            1,
        ),
        (
            vec!["push", "--from", "nowhere", "--to", "127.0.0.1:1/x:y"],
            "oci:DIR",
            2,
        ),
    ] {
        let out = ws.dockless().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: expected {needle:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
}
