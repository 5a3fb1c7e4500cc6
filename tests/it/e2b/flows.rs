//! Both flows end to end, with each credential kind and source.

use crate::support::registry::{PASSWORD, RegistryAuth, TestRegistry, USER};

use super::double::{E2bDouble, PROVISION_LINES};
use super::*;

fn assert_api_saw_only_api_key(double: &E2bDouble, key: &str) {
    let api: Vec<_> = double
        .seen()
        .into_iter()
        .filter(|s| s.server == "api")
        .collect();
    assert!(!api.is_empty());
    for seen in api {
        assert_eq!(
            seen.api_key.as_deref(),
            Some(key),
            "{} {}",
            seen.method,
            seen.path
        );
        assert_eq!(seen.authorization, None, "{} {}", seen.method, seen.path);
    }
}

fn assert_api_saw_only_token(double: &E2bDouble, token: &str) {
    let bearer = format!("Bearer {token}");
    let api: Vec<_> = double
        .seen()
        .into_iter()
        .filter(|s| s.server == "api")
        .collect();
    assert!(!api.is_empty());
    for seen in api {
        assert_eq!(seen.api_key, None, "{} {}", seen.method, seen.path);
        assert_eq!(
            seen.authorization.as_deref(),
            Some(bearer.as_str()),
            "{} {}",
            seen.method,
            seen.path
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_flow_shares_credentials_only_when_asked_and_reuses_the_template() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::Basic).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    let ws = template_workspace();
    docker_login(&ws, &user_registry.host, USER, PASSWORD);
    let image = format!("{}/sandboxes/web:v1", user_registry.host);
    let key_env = [("E2B_API_KEY", API_KEY)];

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
            "--json",
        ],
        &key_env,
        "",
    );
    let first = json(&out);
    assert_eq!(first["status"], "ready");
    assert_eq!(first["image"], image.as_str());
    let digest = first["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:"));
    let template_id = first["templateID"].as_str().unwrap().to_owned();
    let build = double.build(first["buildID"].as_str().unwrap()).unwrap();
    assert_eq!(build.template_id, template_id);
    // E2B was told to pull exactly what was pushed, with the credentials dockless used.
    assert_eq!(
        build.start_body["fromImage"],
        format!("{}/sandboxes/web@{digest}", user_registry.host).as_str()
    );
    assert_eq!(build.start_body["fromImageRegistry"]["type"], "registry");
    assert_eq!(build.start_body["fromImageRegistry"]["username"], USER);
    assert_eq!(build.start_body["fromImageRegistry"]["password"], PASSWORD);
    // Logs were streamed with level and step, and drained after `ready`.
    let log = stderr(&out);
    assert!(log.contains("[info] base: Layer sha256:"), "{log}");
    assert!(log.contains("[info] finalize: Template is ready"), "{log}");
    // Every entry exactly once, in order, across several status pages.
    let provision: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("[debug] provision: "))
        .collect();
    let expected: Vec<String> = (1..=PROVISION_LINES)
        .map(|n| format!("[debug] provision: Provisioning step {n}/{PROVISION_LINES}"))
        .collect();
    assert_eq!(provision, expected);
    // The template ID went back into e2b.toml; the user's comments and keys stayed.
    let toml = e2b_toml(&ws);
    assert!(toml.starts_with(E2B_TOML), "{toml}");
    assert!(
        toml.contains(&format!("template_id = \"{template_id}\"")),
        "{toml}"
    );
    let create = double
        .seen()
        .into_iter()
        .find(|s| s.path == "/v3/templates")
        .unwrap();
    assert_eq!(create.body["name"], "web-sandbox");
    assert_eq!(create.body["memoryMB"], 1024);

    // Without --share-registry-credentials nothing is handed over, and E2B cannot pull a
    // private image: its reason is shown and the exit is non-zero.
    let out = run(
        &ws,
        &double,
        &["template", "build", "ctx", "--image", &image],
        &key_env,
        "",
    );
    let message = failure(&out);
    assert!(message.contains("failed to pull image"), "{message}");
    assert!(message.contains(&template_id), "{message}");
    assert!(
        message.contains("--registry-auth registry") && message.contains("without credentials"),
        "E2B's pull refusal says how to hand credentials: {message}"
    );
    let starts: Vec<_> = double
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/v2/templates/"))
        .collect();
    assert_eq!(starts.len(), 2);
    assert!(
        starts[1].body.get("fromImageRegistry").is_none(),
        "{:?}",
        starts[1].body
    );

    // Later builds reuse the template.
    let second = json(&run(
        &ws,
        &double,
        &[
            "template",
            "build",
            "ctx",
            "--image",
            &image,
            "--share-registry-credentials",
            "--json",
        ],
        &key_env,
        "",
    ));
    assert_eq!(second["templateID"], template_id.as_str());
    assert_ne!(second["buildID"], first["buildID"]);
    assert_api_saw_only_api_key(&double, API_KEY);
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_flow_takes_the_api_key_from_every_source() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let image = format!("{}/sandboxes/keys:1", user_registry.host);
    #[allow(clippy::type_complexity)]
    let sources: [(&str, &[(&str, &str)], &str, Option<&str>, &[&str]); 4] = [
        (
            "E2B_API_KEY",
            &[("E2B_API_KEY", "e2b_env_key_1111111111111111")],
            "",
            None,
            &[],
        ),
        (
            "stdin",
            &[],
            "e2b_stdin_key_222222222222222\n",
            None,
            &["--api-key-stdin"],
        ),
        (
            "config v2 projectApiKey",
            &[],
            "",
            Some(
                r#"{"version":2,"identity":{"email":"a@b.c"},"tokens":{"access_token":"sk_e2b_stale_v2_token_3333"},"teamApiKey":"e2b_team_key_3333333333333","projectApiKey":"e2b_project_key_33333333333","projectName":"p","projectId":"pid"}"#,
            ),
            &[],
        ),
        (
            "unversioned teamApiKey",
            &[],
            "",
            Some(
                r#"{"email":"a@b.c","accessToken":"sk_e2b_stale_unversioned_44","teamName":"t","teamId":"team","teamApiKey":"e2b_team_key_44444444444444"}"#,
            ),
            &[],
        ),
    ];
    let expected = [
        "e2b_env_key_1111111111111111",
        "e2b_stdin_key_222222222222222",
        "e2b_project_key_33333333333",
        "e2b_team_key_44444444444444",
    ];
    for ((what, env, stdin, config, flags), key) in sources.into_iter().zip(expected) {
        let double = E2bDouble::start(&backing.host).await;
        double.allow_api_key(key);
        let ws = template_workspace();
        if let Some(config) = config {
            write_home_file(&ws, ".e2b/config.json", config);
        }
        let mut args = vec!["template", "build", "ctx", "--image", &image, "--json"];
        args.extend_from_slice(flags);
        let out = run(&ws, &double, &args, env, stdin);
        assert_eq!(json(&out)["status"], "ready", "{what}");
        assert_api_saw_only_api_key(&double, key);
        assert!(
            double.violations().is_empty(),
            "{what}: {:?}",
            double.violations()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_flow_with_an_access_token_from_every_source() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_access_token(ACCESS_TOKEN);
    let v1 = format!(
        r#"{{"version":1,"identity":{{"email":"a@b.c"}},"oauth":{{"token_endpoint":"x","revoke_endpoint":"y","client_id":"z"}},"tokens":{{"access_token":"{ACCESS_TOKEN}","refresh_token":"r"}},"last_refresh":1,"teamName":"t","teamId":"team"}}"#
    );
    // An unversioned file with a team key too: --credential access-token skips the key.
    let unversioned = format!(
        r#"{{"email":"a@b.c","accessToken":"{ACCESS_TOKEN}","teamName":"t","teamId":"team","teamApiKey":"e2b_unused_team_key_5555555"}}"#
    );
    let stdin_token = format!("{ACCESS_TOKEN}\n");
    #[allow(clippy::type_complexity)]
    let runs: [(&str, Vec<(&str, &str)>, &str, Option<&str>, &[&str]); 4] = [
        (
            "E2B_ACCESS_TOKEN",
            vec![("E2B_ACCESS_TOKEN", ACCESS_TOKEN)],
            "",
            None,
            &[],
        ),
        (
            "stdin",
            vec![],
            &stdin_token,
            None,
            &["--access-token-stdin"],
        ),
        ("config v1", vec![], "", Some(&v1), &[]),
        (
            "config unversioned",
            vec![],
            "",
            Some(&unversioned),
            &["--credential", "access-token"],
        ),
    ];
    for (what, env, stdin, config, flags) in runs {
        let before = double.seen().len();
        let ws = template_workspace();
        if let Some(config) = config {
            write_home_file(&ws, ".e2b/config.json", config);
        }
        let mut args = vec!["template", "build", "ctx", "--json"];
        args.extend_from_slice(flags);
        let outcome = json(&run(&ws, &double, &args, &env, stdin));
        assert_eq!(outcome["status"], "ready", "{what}");
        let template_id = outcome["templateID"].as_str().unwrap();
        let build_id = outcome["buildID"].as_str().unwrap();
        assert_eq!(
            outcome["image"],
            format!(
                "{}/e2b/custom-envs/{template_id}:{build_id}",
                double.gateway_host()
            )
            .as_str()
        );
        let seen: Vec<_> = double.seen().into_iter().skip(before).collect();
        let api: Vec<_> = seen.iter().filter(|s| s.server == "api").collect();
        let create = api[0];
        assert_eq!(
            (create.method.as_str(), create.path.as_str()),
            ("POST", "/templates"),
            "{what}"
        );
        assert!(
            create.body["dockerfile"]
                .as_str()
                .unwrap()
                .contains("COPY app.txt")
        );
        assert_eq!(create.body["alias"], "web-sandbox");
        // The gateway's rules: GET token with an explicit scope and the access-token username,
        // uploads to relative storage Locations in one PUT, no PATCH, no mount.
        let gateway: Vec<_> = seen.iter().filter(|s| s.server == "gateway").collect();
        let token_requests: Vec<_> = gateway
            .iter()
            .filter(|s| s.path.starts_with("/v2/token"))
            .collect();
        assert!(!token_requests.is_empty());
        for request in &token_requests {
            assert_eq!(request.method, "GET");
            assert!(
                request.path.contains(&format!(
                    "scope=repository%3Ae2b%2Fcustom-envs%2F{template_id}%3A"
                )),
                "{}",
                request.path
            );
            let basic = request
                .authorization
                .as_deref()
                .unwrap()
                .strip_prefix("Basic ")
                .unwrap();
            let decoded = String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(basic)
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(
                decoded,
                format!("_e2b_access_token:{ACCESS_TOKEN}"),
                "{what}"
            );
        }
        assert!(
            gateway
                .iter()
                .any(|s| s.method == "PUT" && s.path.starts_with("/artifacts-uploads/"))
        );
        assert!(!gateway.iter().any(|s| s.method == "PATCH"));
        assert!(
            gateway
                .iter()
                .any(|s| s.method == "PUT" && s.path.contains("/manifests/"))
        );
        // Start after push, and only then the status polls.
        let start = api
            .iter()
            .position(|s| s.path == format!("/templates/{template_id}/builds/{build_id}"))
            .unwrap();
        assert!(api[start + 1..].iter().all(|s| s.path.ends_with("/status")));
        assert!(e2b_toml(&ws).contains(&format!("template_id = \"{template_id}\"")));
    }
    assert_api_saw_only_token(&double, ACCESS_TOKEN);
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_flow_rebuilds_the_template_named_in_e2b_toml() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_access_token(ACCESS_TOKEN);
    let ws = template_workspace();
    let env = [("E2B_ACCESS_TOKEN", ACCESS_TOKEN)];
    let first = json(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--json"],
        &env,
        "",
    ));
    let template_id = first["templateID"].as_str().unwrap();
    let out = run(
        &ws,
        &double,
        &[
            "template",
            "build",
            "ctx",
            "--json",
            "--cpu",
            "2",
            "--memory-mb",
            "2048",
            "--start-cmd",
            "/app/run",
        ],
        &env,
        "",
    );
    let second = json(&out);
    assert_eq!(second["templateID"], template_id);
    let rebuild = double
        .seen()
        .into_iter()
        .find(|s| s.path == format!("/templates/{template_id}"))
        .expect("POST /templates/{id}");
    assert_eq!(rebuild.body["cpuCount"], 2);
    assert_eq!(rebuild.body["memoryMB"], 2048);
    assert_eq!(rebuild.body["startCmd"], "/app/run");
    assert_eq!(e2b_toml(&ws).matches("template_id").count(), 1);

    // A new template from the same store: the layers sit in another template's repository at
    // the gateway, but a gateway token is bound to one repository: no mount is tried.
    ws.write("e2b.toml", E2B_TOML);
    let third = json(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--json"],
        &env,
        "",
    ));
    assert_ne!(third["templateID"], template_id);
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_in_the_environment_beats_a_stale_saved_token_everywhere() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    double.allow_access_token(STALE_TOKEN);
    let ws = template_workspace();
    write_home_file(
        &ws,
        ".e2b/config.json",
        &format!(
            r#"{{"email":"a@b.c","accessToken":"{STALE_TOKEN}","teamName":"t","teamId":"team"}}"#
        ),
    );
    let env = [("E2B_API_KEY", API_KEY)];
    let status = run(&ws, &double, &["auth", "status"], &env, "");
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("API key") && text.contains("E2B_API_KEY"),
        "{text}"
    );
    assert!(text.contains(&API_KEY[API_KEY.len() - 4..]), "{text}");

    let image = format!("{}/sandboxes/stale:1", user_registry.host);
    json(&run(
        &ws,
        &double,
        &["template", "build", "ctx", "--image", &image, "--json"],
        &env,
        "",
    ));
    // And in the gateway flow, the key is what is sent (and refused there): never the token.
    let out = run(&ws, &double, &["template", "build", "ctx"], &env, "");
    failure(&out);
    for seen in double.seen() {
        let carried = format!("{:?} {:?}", seen.api_key, seen.authorization);
        assert!(
            !carried.contains(STALE_TOKEN),
            "{} {} carried the stale token",
            seen.method,
            seen.path
        );
        if seen.server == "api" {
            assert_eq!(seen.api_key.as_deref(), Some(API_KEY));
            assert_eq!(seen.authorization, None);
        }
    }
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}
