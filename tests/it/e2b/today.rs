//! E2B as it is today (issue 14): the four things a new user on E2B's cloud hit, each against
//! the local E2B with today's rules. Each of these tests fails on the client before the fix.

use serde_json::Value;

use crate::support::registry::{RegistryAuth, TestRegistry};

use super::double::{DEPRECATED, E2bDouble};
use super::*;

/// Problem 1: without --image on E2B's cloud, the build would go to a gateway E2B removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_e2bs_cloud_the_gateway_flow_stops_before_building() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    double.allow_access_token(ACCESS_TOKEN);
    double.act_as_cloud();
    let ws = template_workspace();
    // The gateway would be E2B's own, docker.e2b.app (the API is the local one, so that
    // anything sent would be seen).
    let cloud_gateway = ("E2B_REGISTRY_URL", "https://docker.e2b.app");
    for credential in [("E2B_ACCESS_TOKEN", ACCESS_TOKEN), ("E2B_API_KEY", API_KEY)] {
        let out = run(
            &ws,
            &double,
            &["template", "build", "ctx"],
            &[credential, cloud_gateway],
            "",
        );
        let message = failure(&out);
        assert_eq!(message.trim().lines().count(), 1, "one message: {message}");
        assert!(
            message.contains("no longer runs the registry gateway"),
            "{message}"
        );
        assert!(
            message.contains("dockless template build ctx --image ghcr.io/OWNER/NAME:TAG"),
            "{message}"
        );
        assert!(message.contains("--gateway"), "{message}");
        // The API here is a self-hosted one: the message says why that did not move the
        // gateway, and what does.
        assert!(
            message.contains("E2B_API_URL moves only the API")
                && message.contains("E2B_DOMAIN")
                && message.contains("E2B_REGISTRY_URL"),
            "{message}"
        );
    }
    // E2B_API_URL alone (no E2B_REGISTRY_URL, no E2B_DOMAIN): the gateway stays E2B's, as in
    // E2B's CLI, and the message no longer offers E2B_API_URL as the way out.
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx"],
        &[("E2B_API_KEY", API_KEY), ("E2B_REGISTRY_URL", "")],
        "",
    ));
    assert!(
        message.contains("docker.e2b.app")
            && message.contains("E2B_API_URL moves only the API")
            && !message.contains("(or E2B_API_URL)"),
        "{message}"
    );
    assert!(
        double.seen().is_empty(),
        "nothing was sent: {:?}",
        double.seen()
    );
    assert!(
        !ws.cache().join("blobs").exists() || files_in(&ws.cache().join("blobs")) == 0,
        "nothing was built"
    );
    // --gateway is the user's word: the flow goes ahead (and here meets the cloud's refusal
    // of access tokens, with E2B's reason and what to do).
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--gateway"],
        &[("E2B_ACCESS_TOKEN", ACCESS_TOKEN), cloud_gateway],
        "",
    ));
    assert!(message.contains(DEPRECATED), "{message}");
    assert!(message.contains("use an API key instead"), "{message}");
}

fn files_in(dir: &std::path::Path) -> usize {
    crate::support::binary::files_under(dir).len()
}

/// Problem 2: a template known only by its ID is rebuilt under its name, never its ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_known_only_by_id_is_rebuilt_under_its_name() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    double.allow_access_token(ACCESS_TOKEN);
    let ws = template_workspace();
    let image = format!("{}/sandboxes/by-id:1", user_registry.host);
    let key = [("E2B_API_KEY", API_KEY)];
    let build = ["template", "build", "ctx", "--image", &image, "--json"];
    let first = json(&run(&ws, &double, &build, &key, ""));
    let template_id = first["templateID"].as_str().unwrap().to_owned();

    ws.write("e2b.toml", format!("template_id = \"{template_id}\"\n"));
    let second = json(&run(&ws, &double, &build, &key, ""));
    assert_eq!(second["templateID"], template_id.as_str());
    assert_eq!(second["status"], "ready");
    let names: Vec<Value> = double
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v3/templates")
        .map(|s| s.body["name"].clone())
        .collect();
    assert_eq!(names, ["web-sandbox", "acme/web-sandbox"]);

    // A template E2B knows no name for (made by the legacy API without an alias).
    let answer = reqwest::Client::new()
        .post(format!("{}/templates", double.api.url()))
        .header("authorization", format!("Bearer {ACCESS_TOKEN}"))
        .header("content-type", "application/json")
        .body(r#"{"dockerfile":"FROM scratch"}"#)
        .send()
        .await
        .unwrap();
    let unnamed: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    let unnamed = unnamed["templateID"].as_str().unwrap();
    ws.write("e2b.toml", format!("template_id = \"{unnamed}\"\n"));
    let before = double.seen().len();
    let message = failure(&run(&ws, &double, &build, &key, ""));
    assert!(
        message.contains(unnamed) && message.contains("pass --name NAME"),
        "{message}"
    );
    let after: Vec<String> = double
        .seen()
        .into_iter()
        .skip(before)
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(after, ["GET /v2/templates"], "no build was asked for");
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

/// Problem 3: whatever E2B would refuse is refused before a single blob is uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_before_any_upload() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    let ws = template_workspace();
    let image = format!("{}/sandboxes/refused:1", user_registry.host);
    let key = [("E2B_API_KEY", API_KEY)];
    let local: [(&[&str], &str); 4] = [
        (
            &["--name", "Web Sandbox"],
            "--name \"Web Sandbox\": E2B takes a name of lowercase letters, digits, '-' and '_'",
        ),
        (
            &["--cpu", "3"],
            "--cpu 3: E2B takes 1 CPU or an even number of CPUs, at most 32",
        ),
        (
            &["--cpu", "64"],
            "--cpu 64: E2B takes 1 CPU or an even number of CPUs, at most 32",
        ),
        (
            &["--memory-mb", "1023"],
            "--memory-mb 1023: E2B takes an even number of MiB, at least 128",
        ),
    ];
    for (flags, expected) in local {
        let mut args = vec!["template", "build", "ctx", "--image", &image];
        args.extend_from_slice(flags);
        let message = failure(&run(&ws, &double, &args, &key, ""));
        assert!(message.contains(expected), "{flags:?}: {message}");
    }
    assert!(double.seen().is_empty(), "{:?}", double.seen());

    // E2B's own refusal (the team's build quota) comes from the request made before the build.
    double.limit_concurrent_builds(0);
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--image", &image],
        &key,
        "",
    ));
    assert!(
        message.contains("HTTP 429")
            && message.contains("maximum number of concurrent template builds"),
        "{message}"
    );
    let log = user_registry.log();
    assert!(
        !log.contains("/blobs/uploads/") && !log.contains("\"PUT /v2/"),
        "the registry received an upload:\n{log}"
    );
}

/// E2B's SDK reading of a Dockerfile (`packages/js-sdk/src/template/dockerfileParser.ts`,
/// e2b-dev/E2B b8029973), its rules written down for one-stage Dockerfiles:
/// - while steps run the user is `root` and the directory `/`;
/// - the last USER and the last WORKDIR (first argument) are the sandbox's; when the
///   Dockerfile has none, `user` and `/home/user`;
/// - the last CMD or ENTRYPOINT is the start command: its arguments joined by spaces, and if
///   that is a JSON array, the array's items joined by spaces; the ready command is then
///   `waitForTimeout(20_000)`, i.e. `sleep 20`.
fn sdk_reading(dockerfile: &str) -> (String, String, Option<(String, String)>) {
    let (mut user, mut workdir, mut start) = (None, None, None);
    for line in dockerfile.lines() {
        let line = line.trim();
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let words: Vec<&str> = rest.split_whitespace().collect();
        match keyword.to_ascii_uppercase().as_str() {
            "USER" => user = words.first().map(|w| w.to_string()),
            "WORKDIR" => workdir = words.first().map(|w| w.to_string()),
            "CMD" | "ENTRYPOINT" => {
                let joined = words.join(" ");
                let command = match serde_json::from_str::<Vec<String>>(&joined) {
                    Ok(items) => items.join(" "),
                    Err(_) => joined,
                };
                start = Some((command, "sleep 20".to_owned()));
            }
            _ => {}
        }
    }
    (
        user.unwrap_or_else(|| "user".into()),
        workdir.unwrap_or_else(|| "/home/user".into()),
        start,
    )
}

/// Problem 4: the image's USER, WORKDIR and CMD/ENTRYPOINT reach E2B as its SDK sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dockerfiles_user_directory_and_command_reach_e2b_as_its_sdk_sends_them() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    let image = format!("{}/sandboxes/meaning:1", user_registry.host);
    let key = [("E2B_API_KEY", API_KEY)];
    let dockerfiles = [
        "FROM scratch\nCOPY app.txt /srv/app/app.txt\nUSER app\nWORKDIR /srv/app\nCMD [\"node\", \"server.js\"]\n",
        "FROM scratch\nWORKDIR /opt\nENV PORT=80\nENTRYPOINT /opt/run --port 80\nUSER 1000\n",
        "FROM scratch\nCOPY app.txt /app/app.txt\n",
    ];
    for dockerfile in dockerfiles {
        let ws = template_workspace();
        ws.write("e2b.Dockerfile", dockerfile);
        let out = run(
            &ws,
            &double,
            &["template", "build", "ctx", "--image", &image, "--json"],
            &key,
            "",
        );
        let outcome = json(&out);
        let build = double.build(outcome["buildID"].as_str().unwrap()).unwrap();
        let runtime = build.runtime.unwrap();
        let (user, workdir, start) = sdk_reading(dockerfile);
        assert_eq!(
            (runtime.user.as_str(), runtime.workdir.as_str()),
            (user.as_str(), workdir.as_str()),
            "{dockerfile}"
        );
        let sent = |key: &str| build.start_body[key].as_str().map(str::to_owned);
        assert_eq!(
            sent("startCmd").zip(sent("readyCmd")),
            start.clone(),
            "{dockerfile}"
        );
        // The steps come right after fromImage: USER, then WORKDIR.
        assert_eq!(
            build.start_body["steps"],
            serde_json::json!([{"type": "USER", "args": [user]}, {"type": "WORKDIR", "args": [workdir]}])
        );
        let said = stderr(&out)
            .lines()
            .filter(|l| l.contains("Start command from the image's CMD/ENTRYPOINT"))
            .count();
        assert_eq!(said, usize::from(start.is_some()), "said so in one line");
    }

    // e2b.toml's (or a flag's) start command wins, and no ready wait is invented for it.
    let ws = template_workspace();
    ws.write("e2b.Dockerfile", dockerfiles[0]);
    let outcome = json(&run(
        &ws,
        &double,
        &[
            "template",
            "build",
            "ctx",
            "--image",
            &image,
            "--json",
            "--start-cmd",
            "/srv/app/serve",
        ],
        &key,
        "",
    ));
    let build = double.build(outcome["buildID"].as_str().unwrap()).unwrap();
    assert_eq!(build.start_body["startCmd"], "/srv/app/serve");
    assert!(build.start_body.get("readyCmd").is_none());
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

/// Issue 25, corner 5: with `--target`, the stage that was built decides the sandbox's user,
/// directory and start command (the SDK's rules applied to that stage: what it sets itself,
/// with the values of the image built), not the Dockerfile's last stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_target_the_built_stage_gives_the_user_directory_and_command() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    let image = format!("{}/sandboxes/target:1", user_registry.host);
    let key = [("E2B_API_KEY", API_KEY)];
    type Expected = (&'static str, &'static str, Option<&'static str>);
    let cases: [(&str, Expected); 2] = [
        // The target sets all three; the last stage sets none.
        (
            "FROM scratch AS app\nCOPY app.txt /srv/app/app.txt\nUSER app\nWORKDIR /srv/app\n\
             CMD [\"node\", \"server.js\"]\nFROM scratch AS other\nCOPY app.txt /other.txt\n",
            ("app", "/srv/app", Some("node server.js")),
        ),
        // The target inherits all three from the stage below (so, as in the SDK, sets
        // none); the last stage sets its own.
        (
            "FROM scratch AS base\nUSER app\nWORKDIR /srv/app\nCMD [\"node\", \"server.js\"]\n\
             FROM base AS app\nCOPY app.txt /srv/app/app.txt\n\
             FROM base\nUSER other\nWORKDIR /elsewhere\nCMD [\"/elsewhere/run\"]\n",
            ("user", "/home/user", None),
        ),
    ];
    for (dockerfile, (user, workdir, start)) in cases {
        let ws = template_workspace();
        ws.write("e2b.Dockerfile", dockerfile);
        let out = run(
            &ws,
            &double,
            &[
                "template", "build", "ctx", "--image", &image, "--json", "--target", "app",
            ],
            &key,
            "",
        );
        let outcome = json(&out);
        let build = double.build(outcome["buildID"].as_str().unwrap()).unwrap();
        let runtime = build.runtime.unwrap();
        assert_eq!(
            (runtime.user.as_str(), runtime.workdir.as_str()),
            (user, workdir),
            "{dockerfile}"
        );
        assert_eq!(build.start_body["startCmd"].as_str(), start, "{dockerfile}");
        assert_eq!(
            build.start_body["steps"],
            serde_json::json!([{"type": "USER", "args": [user]}, {"type": "WORKDIR", "args": [workdir]}]),
            "{dockerfile}"
        );
    }
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

/// `--tag`, `--skip-cache` and `--no-wait` reach E2B; a first build that fails still records
/// the template ID, so the next run rebuilds the same template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_force_no_wait_and_the_id_of_a_failed_first_build() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let private = TestRegistry::start(RegistryAuth::Basic).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    let key = [("E2B_API_KEY", API_KEY)];
    let ws = template_workspace();
    docker_login(
        &ws,
        &private.host,
        crate::support::registry::USER,
        crate::support::registry::PASSWORD,
    );
    let image = format!("{}/sandboxes/tagged:1", private.host);
    // E2B cannot pull the private image without --share-registry-credentials: the build fails.
    let message = failure(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--image", &image],
        &key,
        "",
    ));
    assert!(message.contains("failed to pull image"), "{message}");
    let toml = e2b_toml(&ws);
    assert!(toml.contains("template_id = \""), "{toml}");

    let out = run(
        &ws,
        &double,
        &[
            "template",
            "build",
            "ctx",
            "--image",
            &image,
            "--share-registry-credentials",
            "--tag",
            "v1",
            "--tag",
            "Stable",
            "--skip-cache",
            "--no-wait",
            "--json",
        ],
        &key,
        "",
    );
    let outcome = json(&out);
    assert_eq!(outcome["status"], "building");
    assert!(
        toml.contains(outcome["templateID"].as_str().unwrap()),
        "the same template"
    );
    let build = double.build(outcome["buildID"].as_str().unwrap()).unwrap();
    assert_eq!(build.tags, ["v1", "stable"]);
    assert_eq!(build.start_body["force"], true);
    assert!(
        !stderr(&out).contains("Template is ready"),
        "--no-wait does not follow the build"
    );
    // Said in words: started, not built.
    let out = run(
        &ws,
        &double,
        &[
            "template",
            "build",
            "ctx",
            "--image",
            &image,
            "--share-registry-credentials",
            "--no-wait",
        ],
        &key,
        "",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("started (building)")
            && said.contains("--follow")
            && !said.contains(" built "),
        "{said}"
    );
    let message = failure(&run(
        &ws,
        &double,
        &[
            "template", "build", "ctx", "--image", &image, "--tag", "v/1",
        ],
        &key,
        "",
    ));
    assert!(
        message.contains("--tag \"v/1\": E2B takes tags of"),
        "{message}"
    );
}

/// A login the E2B CLI saved long ago, whose access token E2B no longer takes: one message
/// that says to use an API key, not a bare 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_access_token_that_e2b_refuses_points_to_an_api_key() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.deprecate_access_token(STALE_TOKEN);
    let ws = template_workspace();
    write_home_file(
        &ws,
        ".e2b/config.json",
        &format!(
            r#"{{"email":"a@b.c","accessToken":"{STALE_TOKEN}","teamName":"t","teamId":"team"}}"#
        ),
    );
    let image = format!("{}/sandboxes/saved:1", backing.host);
    for args in [
        vec!["template", "build", "ctx", "--image", &image],
        vec!["template", "build", "ctx"],
    ] {
        let message = failure(&run(&ws, &double, &args, &[], ""));
        assert_eq!(
            message
                .trim()
                .lines()
                .filter(|l| l.starts_with("error"))
                .count(),
            1,
            "{message}"
        );
        assert!(
            message.contains("the E2B CLI saved in")
                && message.contains(".e2b/config.json")
                && message.contains("E2B_API_KEY")
                && message.contains("--api-key-stdin"),
            "{args:?}: {message}"
        );
        assert!(!message.contains(STALE_TOKEN), "{message}");
    }
}
