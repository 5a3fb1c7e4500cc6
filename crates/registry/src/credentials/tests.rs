use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::ExposeSecret;

use super::auth_file::normalize_key;
use super::*;

fn env_in(dir: &Path) -> CredentialEnv {
    CredentialEnv {
        registry_auth_file: None,
        docker_config_dir: None,
        home: Some(dir.join("home")),
        xdg_runtime_dir: Some(dir.join("run")),
        helper_path: Some(dir.join("bin").into_os_string()),
        helper_timeout: None,
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn basic_of(found: &ResolvedCredential) -> (String, String) {
    match &found.credential {
        Credential::Basic { username, password } => {
            (username.clone(), password.expose_secret().to_string())
        }
        other => panic!("expected Basic, got {other:?}"),
    }
}

fn auth(user_pass: &str) -> String {
    BASE64.encode(user_pass)
}

#[test]
fn explicit_wins_over_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path());
    write(
        &dir.path().join("home/.docker/config.json"),
        &format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, auth("file:pw")),
    );
    let explicit = ResolvedCredential::explicit("me", "secret".to_string().into());
    let found = resolve_credential("r.io", "app", Some(explicit), &env).unwrap();
    assert_eq!(found.source, CredentialSource::Explicit);
    assert_eq!(basic_of(&found), ("me".into(), "secret".into()));
}

#[test]
fn docker_config_auth_base64_and_docker_hub_key() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path());
    let path = dir.path().join("home/.docker/config.json");
    write(
        &path,
        &format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"127.0.0.1:5000":{{"username":"u","password":"p"}}}}}}"#,
            auth("hub:pw:with:colons")
        ),
    );
    let hub = resolve_credential("docker.io", "library/alpine", None, &env).unwrap();
    assert_eq!(basic_of(&hub), ("hub".into(), "pw:with:colons".into()));
    assert_eq!(hub.source, CredentialSource::DockerConfig(path.clone()));
    let local = resolve_credential("127.0.0.1:5000", "app", None, &env).unwrap();
    assert_eq!(basic_of(&local), ("u".into(), "p".into()));
    let none = resolve_credential("other.io", "app", None, &env).unwrap();
    assert_eq!(none.source, CredentialSource::Anonymous);
}

#[test]
fn docker_config_env_var_beats_home_and_auth_file_beats_both() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_in(dir.path());
    write(
        &dir.path().join("home/.docker/config.json"),
        &format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, auth("home:1")),
    );
    let custom = dir.path().join("custom");
    write(
        &custom.join("config.json"),
        &format!(
            r#"{{"auths":{{"https://r.io":{{"auth":"{}"}}}}}}"#,
            auth("custom:2")
        ),
    );
    env.docker_config_dir = Some(custom);
    let found = resolve_credential("r.io", "app", None, &env).unwrap();
    assert_eq!(basic_of(&found).0, "custom");
    let auth_file = dir.path().join("auth.json");
    write(
        &auth_file,
        &format!(
            r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
            auth("authfile:3")
        ),
    );
    env.registry_auth_file = Some(auth_file.clone());
    let found = resolve_credential("r.io", "app", None, &env).unwrap();
    assert_eq!(basic_of(&found).0, "authfile");
    assert_eq!(found.source, CredentialSource::RegistryAuthFile(auth_file));
}

#[test]
fn podman_file_and_repository_scoped_keys() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path());
    let path = dir.path().join("run/containers/auth.json");
    write(
        &path,
        &format!(
            r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/team":{{"auth":"{}"}}}}}}"#,
            auth("general:1"),
            auth("team:2")
        ),
    );
    let team = resolve_credential("quay.io", "team/app", None, &env).unwrap();
    assert_eq!(basic_of(&team).0, "team");
    assert_eq!(team.source, CredentialSource::PodmanAuthFile(path));
    let other = resolve_credential("quay.io", "teammate/app", None, &env).unwrap();
    assert_eq!(basic_of(&other).0, "general");
}

#[test]
fn identity_tokens_and_empty_entries() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path());
    write(
        &dir.path().join("home/.docker/config.json"),
        &format!(
            r#"{{"auths":{{"acr.io":{{"auth":"{}","identitytoken":"refresh"}},"empty.io":{{}}}}}}"#,
            auth("00000000-0000-0000-0000-000000000000:")
        ),
    );
    let found = resolve_credential("acr.io", "app", None, &env).unwrap();
    match found.credential {
        Credential::IdentityToken { username, token } => {
            assert_eq!(
                username.as_deref(),
                Some("00000000-0000-0000-0000-000000000000")
            );
            assert_eq!(token.expose_secret(), "refresh");
        }
        other => panic!("expected an identity token, got {other:?}"),
    }
    let empty = resolve_credential("empty.io", "app", None, &env).unwrap();
    assert_eq!(empty.source, CredentialSource::Anonymous);
}

#[cfg(unix)]
fn install_helper(dir: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("bin").join(format!("docker-credential-{name}"));
    write(&path, script);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(unix)]
#[test]
fn cred_helpers_get_the_server_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path());
    // The helper echoes the server it was asked about into the username, so the test sees
    // what Docker would have passed.
    install_helper(
        dir.path(),
        "test",
        "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"s3cret\"}' \"$server\" \"$server\"\n",
    );
    install_helper(
        dir.path(),
        "token",
        "#!/bin/sh\nprintf '{\"Username\":\"<token>\",\"Secret\":\"refresh\"}'\n",
    );
    install_helper(
        dir.path(),
        "none",
        "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n",
    );
    let config = dir.path().join("home/.docker/config.json");
    write(
        &config,
        r#"{"credHelpers":{"docker.io":"test","tok.io":"token","gone.io":"none","missing.io":"not-installed"},"credsStore":"test"}"#,
    );
    let hub = resolve_credential("docker.io", "library/x", None, &env).unwrap();
    assert_eq!(
        basic_of(&hub),
        ("https://index.docker.io/v1/".into(), "s3cret".into())
    );
    assert_eq!(
        hub.source,
        CredentialSource::CredentialHelper {
            helper: "test".into(),
            config: config.clone()
        }
    );
    let tok = resolve_credential("tok.io", "x", None, &env).unwrap();
    assert!(matches!(tok.credential, Credential::IdentityToken { .. }));
    // A helper without credentials, or not installed, falls through to credsStore.
    let gone = resolve_credential("gone.io", "x", None, &env).unwrap();
    assert_eq!(basic_of(&gone).0, "gone.io");
    let missing = resolve_credential("missing.io", "x", None, &env).unwrap();
    assert_eq!(basic_of(&missing).0, "missing.io");
}

#[cfg(unix)]
#[test]
fn failing_helper_is_an_error_naming_the_helper() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path());
    install_helper(
        dir.path(),
        "broken",
        "#!/bin/sh\necho 'keychain locked' >&2\nexit 2\n",
    );
    write(
        &dir.path().join("home/.docker/config.json"),
        r#"{"credsStore":"broken"}"#,
    );
    let err = resolve_credential("r.io", "x", None, &env).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("docker-credential-broken"), "{text}");
    assert!(text.contains("keychain locked"), "{text}");
}

#[test]
fn bad_files_name_the_file_but_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path());
    let path = dir.path().join("home/.docker/config.json");
    write(
        &path,
        r#"{"auths":{"r.io":{"auth":"c3VwZXJzZWNyZXQ="}}, "credsStore": 5"#,
    );
    let err = resolve_credential("r.io", "x", None, &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(!err.contains("c3VwZXJzZWNyZXQ"), "{err}");
    write(
        &path,
        r#"{"auths":{"r.io":{"auth":"not base64 supersecret"}}}"#,
    );
    let err = resolve_credential("r.io", "x", None, &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"r.io\""), "{err}");
    assert!(!err.contains("supersecret"), "{err}");
    write(
        &path,
        r#"{"auths":{"r.io":{"auth":"supersecret-as-a-number"}}, "auths2": [1,"#,
    );
    let err = resolve_credential("r.io", "x", None, &env)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("supersecret"), "{err}");
}

#[test]
fn debug_output_redacts_secrets() {
    let cred = Credential::Basic {
        username: "u".into(),
        password: "hunter2".to_string().into(),
    };
    let shown = format!("{cred:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let resolved = ResolvedCredential {
        credential: Credential::RegistryToken("tok".to_string().into()),
        source: CredentialSource::Explicit,
    };
    assert!(!format!("{resolved:?}").contains("tok\""));
}

#[test]
fn keys_normalise_like_docker() {
    assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
    assert_eq!(normalize_key("http://r.io:5000/v2/"), "r.io:5000");
    assert_eq!(normalize_key("registry-1.docker.io"), "docker.io");
    assert_eq!(normalize_key("quay.io/org"), "quay.io/org");
}
