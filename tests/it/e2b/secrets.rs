//! No E2B secret in any output at `-vvv` with `RUST_LOG=trace`, in any file written, or in
//! the argv or environment of a process dockless starts (a credential helper here).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::Engine;

use crate::support::binary::files_under;
use crate::support::registry::{PASSWORD, RegistryAuth, TestRegistry, USER};

use super::double::E2bDouble;
use super::*;

fn forms(secret: &str) -> Vec<String> {
    let mut all = vec![secret.to_owned()];
    for user in ["_e2b_api_key", "_e2b_access_token", USER] {
        all.push(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")));
    }
    all
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [API_KEY, ACCESS_TOKEN, STALE_TOKEN, PASSWORD] {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "{what} holds an E2B secret ({})",
                &secret[..6]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_e2b_secret_in_output_files_or_children() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::Basic).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    double.allow_access_token(ACCESS_TOKEN);
    let ws = template_workspace();
    let home = ws.path().join("home");
    // The registry's password comes from a credential helper that writes down what it got.
    let bin = ws.path().join("bin");
    let helper_log = ws.path().join("helper-saw.txt");
    fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-e2bcheck");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n{{ echo \"argv: $0 $*\"; env; echo stdin:; cat; }} > {}\necho '{{\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n",
            helper_log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    write_home_file(
        &ws,
        ".docker/config.json",
        &format!(
            r#"{{"credHelpers":{{"{}":"e2bcheck"}}}}"#,
            user_registry.host
        ),
    );
    let config = format!(
        r#"{{"email":"a@b.c","accessToken":"{STALE_TOKEN}","teamName":"t","teamId":"team"}}"#
    );
    write_home_file(&ws, ".e2b/config.json", &config);
    let planted = [
        home.join(".e2b/config.json"),
        home.join(".docker/config.json"),
        helper.clone(),
        helper_log.clone(),
    ];

    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let image = format!("{}/sandboxes/secret:1", user_registry.host);
    #[allow(clippy::type_complexity)]
    let runs: Vec<(&str, Vec<&str>, Vec<(&str, &str)>, String, bool)> = vec![
        (
            "auth status",
            vec!["auth", "status"],
            vec![("E2B_API_KEY", API_KEY)],
            String::new(),
            true,
        ),
        (
            "registry flow",
            vec![
                "template",
                "build",
                "ctx",
                "--image",
                &image,
                "--share-registry-credentials",
            ],
            vec![("E2B_API_KEY", API_KEY)],
            String::new(),
            true,
        ),
        (
            "gateway flow, stdin",
            vec!["template", "build", "ctx", "--access-token-stdin"],
            vec![],
            format!("{ACCESS_TOKEN}\n"),
            true,
        ),
        (
            "gateway flow, API key refused",
            vec!["template", "build", "ctx"],
            vec![("E2B_API_KEY", API_KEY)],
            String::new(),
            false,
        ),
        (
            "gateway flow, stale token refused",
            vec!["template", "build", "ctx"],
            vec![],
            String::new(),
            false,
        ),
    ];
    for (what, args, env, stdin, should_succeed) in runs {
        let mut full = vec!["-vvv"];
        full.extend(args);
        let mut env = env;
        env.push(("RUST_LOG", "trace"));
        env.push(("PATH", &path));
        let out = run(&ws, &double, &full, &env, &stdin);
        let log = stderr(&out);
        assert_eq!(out.status.success(), should_succeed, "{what}: {log}");
        assert!(
            what == "auth status" || log.contains("TRACE"),
            "{what} logs at full verbosity"
        );
        assert_clean(&format!("{what}: stdout"), &out.stdout);
        assert_clean(&format!("{what}: stderr"), &out.stderr);
    }
    let helper_saw = fs::read_to_string(&helper_log).expect("the credential helper ran");
    assert!(helper_saw.contains(&user_registry.host));
    assert_clean(
        "the credential helper's argv, environment and stdin",
        helper_saw.as_bytes(),
    );
    let mut written = files_under(ws.path());
    written.retain(|p| !planted.contains(p));
    assert!(written.iter().any(|p| p.ends_with("e2b.toml")));
    for path in written {
        assert_clean(&path.display().to_string(), &fs::read(&path).unwrap());
    }
    // The double saw the password only where it belongs: the start-build body of the registry flow.
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}

const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";
const GCP_KEY_MATERIAL: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDsecretgcp";

/// ECR and Artifact Registry credentials go to E2B only with --registry-auth, only in the
/// start-build body, and nowhere else: not in output at full verbosity, not in files written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_and_gar_credentials_go_to_e2b_only_with_the_flag() {
    let backing = TestRegistry::start(RegistryAuth::None).await;
    let user_registry = TestRegistry::start(RegistryAuth::None).await;
    let double = E2bDouble::start(&backing.host).await;
    double.allow_api_key(API_KEY);
    let ws = template_workspace();
    let key_file = ws.path().join("gcp-key.json");
    let key_json = format!(
        r#"{{"type":"service_account","project_id":"p","client_email":"pull@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\n{GCP_KEY_MATERIAL}\n-----END PRIVATE KEY-----\n"}}"#
    );
    fs::write(&key_file, &key_json).unwrap();
    let key_path = key_file.display().to_string();
    let image = format!("{}/sandboxes/cloud:1", user_registry.host);
    let env = [
        ("E2B_API_KEY", API_KEY),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
        ("AWS_DEFAULT_REGION", "eu-central-1"),
        ("GOOGLE_APPLICATION_CREDENTIALS", key_path.as_str()),
        ("RUST_LOG", "trace"),
    ];
    let runs: [(&[&str], Option<&str>); 3] = [
        (&[], None),
        (&["--registry-auth", "aws"], Some("aws")),
        (&["--registry-auth", "gcp"], Some("gcp")),
    ];
    for (flags, kind) in runs {
        let mut args = vec![
            "-vvv", "template", "build", "ctx", "--image", &image, "--json",
        ];
        args.extend_from_slice(flags);
        let out = run(&ws, &double, &args, &env, "");
        let outcome = super::json(&out);
        for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains(AWS_SECRET),
                "{flags:?}: {what} holds the AWS secret"
            );
            assert!(
                !text.contains(GCP_KEY_MATERIAL),
                "{flags:?}: {what} holds the GCP key"
            );
        }
        let build = double.build(outcome["buildID"].as_str().unwrap()).unwrap();
        let sent = &build.start_body["fromImageRegistry"];
        match kind {
            None => assert!(sent.is_null(), "nothing without the flag: {sent}"),
            Some("aws") => {
                assert_eq!(sent["type"], "aws");
                assert_eq!(sent["awsAccessKeyId"], "AKIAIOSFODNN7EXAMPLE");
                assert_eq!(sent["awsSecretAccessKey"], AWS_SECRET);
                assert_eq!(sent["awsRegion"], "eu-central-1");
            }
            Some(_) => {
                assert_eq!(sent["type"], "gcp");
                assert_eq!(sent["serviceAccountJson"], key_json.as_str());
            }
        }
    }
    // Only the start-build bodies carried them.
    for seen in double.seen() {
        let body = seen.body.to_string();
        if !seen.path.starts_with("/v2/templates/") {
            assert!(
                !body.contains("wJalr") && !body.contains("secretgcp"),
                "{}",
                seen.path
            );
        }
    }
    let mut written = files_under(ws.path());
    written.retain(|p| p != &key_file);
    for path in written {
        let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
        assert!(
            !text.contains(AWS_SECRET) && !text.contains(GCP_KEY_MATERIAL),
            "{} holds a pull secret",
            path.display()
        );
    }
    // A missing variable is named before anything is sent.
    let before = double.seen().len();
    let message = failure(&run(
        &ws,
        &double,
        &[
            "template",
            "build",
            "ctx",
            "--image",
            &image,
            "--registry-auth",
            "aws",
        ],
        &[("E2B_API_KEY", API_KEY)],
        "",
    ));
    assert!(message.contains("AWS_REGION is not set"), "{message}");
    assert_eq!(double.seen().len(), before);
}
