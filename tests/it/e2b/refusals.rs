//! Every refusal: one clear message, E2B's own reason where E2B refused, non-zero exit, and
//! nothing sent when the problem is local.

use crate::support::registry::{RegistryAuth, TestRegistry};

use super::double::{DEPRECATED, E2bDouble};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2b_refusals_show_e2bs_reason_and_what_to_do() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    double.allow_access_token(ACCESS_TOKEN);
    double.deprecate_access_token(STALE_TOKEN);
    let ws = template_workspace();
    let image = format!("{}/sandboxes/refused:1", user_registry.host);

    // An API key at the legacy endpoints.
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx"],
        &[("E2B_API_KEY", API_KEY)],
        "",
    ));
    assert!(
        message.contains("accepts an access token"),
        "E2B's reason: {message}"
    );
    assert!(message.contains("--image REGISTRY/REPO:TAG"), "{message}");

    // An access token E2B has switched off.
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx"],
        &[("E2B_ACCESS_TOKEN", STALE_TOKEN)],
        "",
    ));
    assert!(message.contains(DEPRECATED), "{message}");
    assert!(
        message.contains("use an API key instead") && message.contains("--image"),
        "{message}"
    );

    // An access token in the registry flow.
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--image", &image],
        &[("E2B_ACCESS_TOKEN", ACCESS_TOKEN)],
        "",
    ));
    assert!(message.contains("accepts an API key"), "{message}");
    assert!(message.contains("needs an API key"), "{message}");

    // A key E2B does not know.
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--image", &image],
        &[("E2B_API_KEY", "e2b_unknown_key_00000000000000ab12")],
        "",
    ));
    assert!(
        message.contains("Invalid API key") && message.contains("ending in ab12"),
        "{message}"
    );
    assert!(!message.contains("e2b_unknown_key"), "{message}");
    assert!(
        !e2b_toml(&ws).contains("template_id"),
        "no write-back after a failure"
    );
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_a_deprecated_token_and_says_what_to_do() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_access_token(ACCESS_TOKEN);
    let ws = template_workspace();
    // The API still takes the token, the gateway has it switched off (the flag is per service).
    let api_ok = double.api.url();
    let message = {
        double.deprecate_access_token_at_gateway(ACCESS_TOKEN);
        failure(&run(
            &ws,
            &double,
            &["template", "build", "ctx"],
            &[("E2B_ACCESS_TOKEN", ACCESS_TOKEN), ("E2B_API_URL", &api_ok)],
            "",
        ))
    };
    assert!(message.contains("E2B's registry gateway"), "{message}");
    assert!(message.contains(DEPRECATED), "{message}");
    assert!(message.contains("--image"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_problems_are_refused_before_anything_is_sent() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    let ws = template_workspace();
    let key = [("E2B_API_KEY", API_KEY)];
    let image = format!("{}/sandboxes/local:1", user_registry.host);

    // No credential anywhere.
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--image", &image],
        &[],
        "",
    ));
    for part in [
        "E2B_API_KEY",
        "E2B_ACCESS_TOKEN",
        "~/.e2b/config.json",
        "https://e2b.dev/dashboard",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    let message = failure(&run(&ws, &double, &["auth", "status"], &[], ""));
    assert!(message.contains("no E2B credential found"), "{message}");
    let message = failure(&run(
        &ws,
        &double,
        &["auth", "status", "--credential", "access-token"],
        &key,
        "",
    ));
    assert!(
        message.contains("looking for an access token only"),
        "{message}"
    );

    // Resources E2B would refuse.
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--memory-mb", "513"],
        &key,
        "",
    ));
    assert!(
        message.contains("--memory-mb 513") && message.contains("even"),
        "{message}"
    );
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--cpu", "0"],
        &key,
        "",
    ));
    assert!(message.contains("--cpu 0"), "{message}");
    ws.write("e2b.toml", "memory_mb = 100\n");
    let message = failure(&run(&ws, &double, &["template", "build", "ctx"], &key, ""));
    assert!(message.contains("e2b.toml memory_mb = 100"), "{message}");
    ws.write("e2b.toml", "memory = 100\n");
    let message = failure(&run(&ws, &double, &["template", "build", "ctx"], &key, ""));
    assert!(
        message.contains("e2b.toml: line 1") && message.lines().count() == 1,
        "{message}"
    );
    ws.write("e2b.toml", E2B_TOML);

    // A broken E2B config file is named, never quoted.
    write_home_file(
        &ws,
        ".e2b/config.json",
        r#"{"teamApiKey": "e2b_half_written_key_123"#,
    );
    let message = failure(&run(&ws, &double, &["auth", "status"], &[], ""));
    assert!(
        message.contains(".e2b/config.json: not valid JSON"),
        "{message}"
    );
    assert!(!message.contains("e2b_half_written"), "{message}");

    // --platform other than linux/amd64 for E2B's cloud: refused before anything is built or
    // sent (E2B_API_URL names the cloud's API here; a self-hosted E2B takes it).
    let message = failure(&run(
        &ws,
        &double,
        &[
            "template",
            "build",
            "ctx",
            "--image",
            &image,
            "--platform",
            "linux/arm64",
        ],
        &[
            ("E2B_API_KEY", API_KEY),
            ("E2B_API_URL", "https://api.e2b.app"),
        ],
        "",
    ));
    assert!(
        message.contains("--platform linux/arm64: E2B's cloud runs linux/amd64 only"),
        "{message}"
    );

    // A base image that is not linux/amd64: refused before anything is uploaded.
    let arm_ws = Workspace::new();
    arm_ws.write("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n");
    arm_ws.write("a.txt", "arm");
    let out = arm_ws
        .dockless()
        .args([
            "build",
            "ctx",
            "--platform",
            "linux/arm64",
            "--output",
            "arm",
            "--tag",
            "latest",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arm_image = format!("{}/bases/arm:1", user_registry.host);
    let layout = format!("oci:{}:latest", arm_ws.path().join("arm").display());
    let out = arm_ws
        .dockless()
        .args(["push", "--from", &layout, "--to", &arm_image])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ws.write(
        "e2b.Dockerfile",
        format!("FROM {arm_image}\nCOPY app.txt /app/app.txt\n"),
    );
    let target = format!("{}/sandboxes/armed:1", user_registry.host);
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--image", &target],
        &key,
        "",
    ));
    assert!(message.contains("linux/amd64"), "{message}");
    let tags = reqwest::get(format!(
        "http://{}/v2/sandboxes/armed/tags/list",
        user_registry.host
    ))
    .await
    .unwrap();
    assert_eq!(tags.status().as_u16(), 404, "nothing was pushed");

    // E2B was asked for the build first (as its SDK does, so that its refusals come before an
    // upload), but never told to start one.
    let reached: Vec<String> = double
        .seen()
        .into_iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        reached,
        ["POST /v3/templates"],
        "only the build request reached E2B"
    );
}
