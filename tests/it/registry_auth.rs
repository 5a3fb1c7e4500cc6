//! Authentication against the real registry: wrong passwords, token expiry and refresh,
//! identity tokens, credentials found in a Docker config.

use std::time::Duration;

use base64::Engine;
use dockless_registry::{
    Credential, CredentialEnv, CredentialSource, Reference, RegistryClient, RegistryError,
    ResolvedCredential, push_image,
};

use crate::support::fast_settings;
use crate::support::image::TestImage;
use crate::support::registry::{PASSWORD, RegistryAuth, TestRegistry, USER};
use crate::support::token_server::TokenServer;

const WRONG: &str = "wrong-password-1234";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_with_basic_auth_is_a_clear_error() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let credential = ResolvedCredential::explicit(USER, WRONG.to_string().into());
    let client = RegistryClient::new(&registry.host, credential, fast_settings()).unwrap();
    let error = client
        .blob_exists("app", &TestImage::build(1, &[10]).manifest_digest)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::Unauthorized { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("check the credentials for {}", registry.host)),
        "{text}"
    );
    assert!(text.contains("the username and password given"), "{text}");
    assert!(!text.contains(WRONG), "{text}");

    let anonymous = RegistryClient::new(
        &registry.host,
        ResolvedCredential::anonymous(),
        fast_settings(),
    )
    .unwrap();
    let text = anonymous
        .blob_exists(
            "app",
            &"sha256:0000000000000000000000000000000000000000000000000000000000000000"
                .parse()
                .unwrap(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("no credentials were found"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_with_token_auth_is_a_clear_error() {
    let tokens = TokenServer::start(USER, PASSWORD).await;
    let registry = TestRegistry::start(RegistryAuth::Token(&tokens)).await;
    let credential = ResolvedCredential::explicit(USER, WRONG.to_string().into());
    let client = RegistryClient::new(&registry.host, credential, fast_settings()).unwrap();
    let image = TestImage::build(2, &[100]);
    let target = Reference::parse(&format!("{}/app:v1", registry.host)).unwrap();
    let error = push_image(&client, &target, &image.request(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::TokenDenied { status: 401, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("incorrect username or password"), "{text}");
    assert!(text.contains(&registry.host), "{text}");
    assert!(!text.contains(WRONG), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_replaced_once_and_the_push_succeeds() {
    let tokens = TokenServer::start(USER, PASSWORD).await;
    let registry = TestRegistry::start(RegistryAuth::Token(&tokens)).await;
    // The first token is dead on arrival though it claims 300 s: only the registry's 401 can
    // tell the client.
    tokens.state.lock().unwrap().pre_expired = 1;
    let client = RegistryClient::new(
        &registry.host,
        ResolvedCredential::explicit(USER, PASSWORD.to_string().into()),
        fast_settings(),
    )
    .unwrap();
    let image = TestImage::build(3, &[5_000]);
    let target = Reference::parse(&format!("{}/app:v1", registry.host)).unwrap();
    let report = push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, image.manifest_digest);
    assert_eq!(tokens.issued(), 2, "one refused token, one replacement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refetched_before_use() {
    let tokens = TokenServer::start(USER, PASSWORD).await;
    let registry = TestRegistry::start(RegistryAuth::Token(&tokens)).await;
    tokens.state.lock().unwrap().expires_in = 1;
    let client = RegistryClient::new(
        &registry.host,
        ResolvedCredential::explicit(USER, PASSWORD.to_string().into()),
        fast_settings(),
    )
    .unwrap();
    let digest = TestImage::build(4, &[10]).manifest_digest;
    assert!(!client.blob_exists("app", &digest).await.unwrap());
    assert!(!client.blob_exists("app", &digest).await.unwrap());
    assert_eq!(tokens.issued(), 1, "a fresh token is reused");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(!client.blob_exists("app", &digest).await.unwrap());
    assert_eq!(tokens.issued(), 2, "an expired token is replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_tokens_use_oauth_and_fall_back_to_get() {
    let tokens = TokenServer::start(USER, PASSWORD).await;
    let registry = TestRegistry::start(RegistryAuth::Token(&tokens)).await;
    let refresh = tokens.state.lock().unwrap().refresh_token.clone();
    let identity = || ResolvedCredential {
        credential: Credential::IdentityToken {
            username: None,
            token: refresh.clone().into(),
        },
        source: CredentialSource::Explicit,
    };
    let image = TestImage::build(5, &[2_000]);
    let client = RegistryClient::new(&registry.host, identity(), fast_settings()).unwrap();
    let target = Reference::parse(&format!("{}/oauth/app:v1", registry.host)).unwrap();
    push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    {
        let state = tokens.state.lock().unwrap();
        assert!(
            !state.requests.is_empty()
                && state.requests.iter().all(|r| {
                    r.method == "POST" && r.grant_type.as_deref() == Some("refresh_token")
                }),
            "{:?}",
            state.requests
        );
    }

    // A token service without OAuth2 (404 to POST) is asked with GET instead, and answers
    // with `access_token` this time.
    {
        let mut state = tokens.state.lock().unwrap();
        state.oauth_enabled = false;
        state.access_token_field = true;
        state.requests.clear();
    }
    let client = RegistryClient::new(&registry.host, identity(), fast_settings()).unwrap();
    let target = Reference::parse(&format!("{}/get/app:v1", registry.host)).unwrap();
    push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    let state = tokens.state.lock().unwrap();
    assert!(
        state
            .requests
            .iter()
            .any(|r| r.method == "GET" && r.basic_user.as_deref() == Some("<token>")),
        "{:?}",
        state.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_a_docker_config() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let home = tempfile::tempdir().unwrap();
    let config_dir = home.path().join("docker");
    std::fs::create_dir_all(&config_dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        config_dir.join("config.json"),
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host
        ),
    )
    .unwrap();
    let env = CredentialEnv {
        docker_config_dir: Some(config_dir.clone()),
        home: Some(home.path().to_path_buf()),
        ..CredentialEnv::default()
    };
    let target = Reference::parse(&format!("{}/configured/app:v1", registry.host)).unwrap();
    let client = RegistryClient::for_reference(&target, None, &env, fast_settings()).unwrap();
    assert_eq!(
        client.credential_source(),
        &CredentialSource::DockerConfig(config_dir.join("config.json"))
    );
    let image = TestImage::build(6, &[1_000]);
    push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
}

/// Collects log output in memory.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every event of this test process at every level, from the first call on. A subscriber set
/// for one thread only (`set_default`) missed events now and then: tracing caches per call site
/// whether anyone listens, and a call site first reached by another test's thread could be
/// cached as unheard. The process-wide subscriber has no such race.
fn captured_logs() -> &'static LogBuffer {
    static LOGS: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("only this test sets a global subscriber");
        logs
    })
}

#[tokio::test]
async fn no_secret_reaches_the_logs_at_any_level() {
    let logs = captured_logs();
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let client = RegistryClient::new(
        &registry.host,
        ResolvedCredential::explicit(USER, PASSWORD.to_string().into()),
        fast_settings(),
    )
    .unwrap();
    let image = TestImage::build(8, &[3_000]);
    let target = Reference::parse(&format!("{}/logged/app:v1", registry.host)).unwrap();
    push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    let wrong = RegistryClient::new(
        &registry.host,
        ResolvedCredential::explicit(USER, WRONG.to_string().into()),
        fast_settings(),
    )
    .unwrap();
    assert!(
        push_image(&wrong, &target, &image.request(), None)
            .await
            .is_err()
    );
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert!(
        text.contains("the username and password given"),
        "the source is logged: {text}"
    );
    for secret in [PASSWORD, WRONG, encoded.as_str()] {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
}
