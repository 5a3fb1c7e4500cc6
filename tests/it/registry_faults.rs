//! Pushing through a fault-injecting proxy: every push must end with the image a clean push
//! gives, read back from the registry directly.

use std::time::{Duration, Instant};

use base64::Engine;
use dockless_registry::{Reference, RegistryClient, RegistryError, ResolvedCredential, push_image};

use crate::support::fast_settings;
use crate::support::image::TestImage;
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::registry::{PASSWORD, RegistryAuth, TestRegistry, USER};
use crate::support::token_server::{SERVICE, TokenServer};

fn explicit() -> ResolvedCredential {
    ResolvedCredential::explicit(USER, PASSWORD.to_string().into())
}

/// Pushes `image` through `proxy` and checks the registry (directly) serves it intact.
async fn push_through(
    proxy: &FaultProxy,
    registry: &TestRegistry,
    image: &TestImage,
    chunk: Option<u64>,
) {
    let mut settings = fast_settings();
    settings.chunk_size = chunk;
    let client = RegistryClient::new(&proxy.host(), explicit(), settings).unwrap();
    let target = Reference::parse(&format!("{}/faults/app:v1", proxy.host())).unwrap();
    let report = push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, image.manifest_digest);
    assert_eq!(report.uploaded_blobs, image.blobs.len());
    verify_directly(registry, image).await;
}

async fn verify_directly(registry: &TestRegistry, image: &TestImage) {
    let direct = RegistryClient::new(&registry.host, explicit(), fast_settings()).unwrap();
    let fetched = direct.get_manifest("faults/app", "v1").await.unwrap();
    assert_eq!(fetched.bytes, image.manifest);
    let dir = tempfile::tempdir().unwrap();
    for blob in &image.blobs {
        let size = direct
            .get_blob_to_file("faults/app", &blob.digest, &dir.path().join("b"))
            .await
            .unwrap();
        assert_eq!(size, blob.size);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let proxy = FaultProxy::start(&registry.host).await;
    proxy.add(Rule::new("GET", "/v2/", Fault::status(502), 1));
    proxy.add(Rule::new("HEAD", "/blobs/", Fault::status(503), 2));
    proxy.add(Rule::new("POST", "/blobs/uploads/", Fault::status(500), 2));
    proxy.add(Rule::new("PUT", "/blobs/uploads/", Fault::status(503), 1));
    proxy.add(Rule::new("PUT", "/manifests/", Fault::status(502), 2));
    let image = TestImage::build(31, &[40_000, 5_000]);
    push_through(&proxy, &registry, &image, None).await;
    assert_eq!(proxy.faults_injected(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_honour_retry_after() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let limited = Fault::Status {
        status: 429,
        retry_after: Some(1),
        www_authenticate: None,
    };
    proxy.add(Rule::new("POST", "/blobs/uploads/", limited, 1));
    let image = TestImage::build(32, &[1_000]);
    let started = Instant::now();
    push_through(&proxy, &registry, &image, None).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    assert_eq!(proxy.faults_injected(), 1);
}

/// `Retry-After` as an HTTP date (RFC 9110 allows either form): a 503 asking for a date 3 s
/// ahead is waited for (at least 2 s, as the date has whole seconds), not retried at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_honours_retry_after_as_a_date() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let busy = Fault::RetryAtDate {
        status: 503,
        seconds: 3,
    };
    proxy.add(Rule::new("HEAD", "/blobs/", busy, 1));
    let image = TestImage::build(39, &[1_000]);
    let started = Instant::now();
    push_through(&proxy, &registry, &image, None).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After as a date was not honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.faults_injected(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_mid_body_restart_the_upload() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let proxy = FaultProxy::start(&registry.host).await;
    proxy.add(Rule::new("PUT", "/blobs/uploads/", Fault::DropMidBody, 2));
    proxy.add(Rule::new("PUT", "/manifests/", Fault::DropMidBody, 1));
    let image = TestImage::build(33, &[200_000]);
    push_through(&proxy, &registry, &image, None).await;
    assert_eq!(proxy.faults_injected(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_chunks_restart_a_chunked_upload() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let image = TestImage::build(34, &[200_000]);
    let mut settings = fast_settings();
    settings.chunk_size = Some(64 * 1024);
    let client = RegistryClient::new(&proxy.host(), explicit(), settings).unwrap();
    let target = Reference::parse(&format!("{}/faults/app:v1", proxy.host())).unwrap();
    // Only the layer (bigger than one chunk) gets the fault; arm it once the config is up.
    let config = &image.blobs[0];
    let mut config_only = image.request();
    config_only.blobs.truncate(1);
    config_only.manifest = bytes::Bytes::from(format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":{}}},"layers":[]}}"#,
        config.digest, config.size
    ));
    let config_ref = Reference::parse(&format!("{}/faults/app:config", proxy.host())).unwrap();
    push_image(&client, &config_ref, &config_only, None)
        .await
        .unwrap();
    proxy.add(Rule::new("PATCH", "/blobs/uploads/", Fault::DropMidBody, 1));
    let report = push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, image.manifest_digest);
    assert_eq!(proxy.faults_injected(), 1);
    verify_directly(&registry, &image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_mid_push_fetches_a_new_token_and_replays() {
    let tokens = TokenServer::start(USER, PASSWORD).await;
    let registry = TestRegistry::start(RegistryAuth::Token(&tokens)).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let challenge = format!(
        r#"Bearer realm="{}",service="{SERVICE}",error="invalid_token""#,
        tokens.realm()
    );
    let unauthorized = Fault::Status {
        status: 401,
        retry_after: None,
        www_authenticate: Some(challenge),
    };
    proxy.add(Rule::new("PUT", "/blobs/uploads/", unauthorized, 1));
    let image = TestImage::build(35, &[30_000]);
    let client = RegistryClient::new(&proxy.host(), explicit(), fast_settings()).unwrap();
    let target = Reference::parse(&format!("{}/faults/app:v1", proxy.host())).unwrap();
    let report = push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, image.manifest_digest);
    assert_eq!(proxy.faults_injected(), 1);
    assert_eq!(
        tokens.issued(),
        2,
        "the 401 must cost exactly one new token"
    );
    verify_directly(&registry, &image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_another_host_get_no_authorization() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    // "Object storage": another origin that must never see our credentials; it reaches the
    // registry with its own (as a presigned URL would).
    let storage = FaultProxy::start(&registry.host).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    storage.inject_authorization(format!("Basic {basic}"));
    let proxy = FaultProxy::start(&registry.host).await;
    proxy.add(Rule::new(
        "PUT",
        "/blobs/uploads/",
        Fault::RedirectTo(storage.origin()),
        100,
    ));
    proxy.add(Rule::new(
        "GET",
        "/blobs/sha256",
        Fault::RedirectTo(storage.origin()),
        100,
    ));
    let image = TestImage::build(36, &[50_000]);
    push_through(&proxy, &registry, &image, None).await;

    let client = RegistryClient::new(&proxy.host(), explicit(), fast_settings()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for blob in &image.blobs {
        client
            .get_blob_to_file("faults/app", &blob.digest, &dir.path().join("b"))
            .await
            .unwrap();
    }
    let redirected = proxy.seen().iter().filter(|s| s.fault.is_some()).count();
    assert_eq!(
        redirected,
        2 * image.blobs.len(),
        "every blob PUT and GET was redirected"
    );
    assert!(
        proxy
            .seen()
            .iter()
            .filter(|s| s.fault.is_some())
            .all(|s| s.had_authorization)
    );
    let at_storage = storage.seen();
    assert_eq!(at_storage.len(), redirected);
    assert!(
        at_storage.iter().all(|s| !s.had_authorization),
        "credentials leaked to another host: {at_storage:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_an_answer_time_out_and_are_retried() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let proxy = FaultProxy::start(&registry.host).await;
    proxy.add(Rule::new("HEAD", "/blobs/", Fault::Hang, 1));
    proxy.add(Rule::new("PUT", "/manifests/", Fault::Hang, 1));
    let image = TestImage::build(38, &[1_000]);
    let mut settings = fast_settings();
    settings.http = settings.http.with_idle_timeout(Duration::from_millis(300));
    let client = RegistryClient::new(&proxy.host(), explicit(), settings).unwrap();
    let target = Reference::parse(&format!("{}/faults/app:v1", proxy.host())).unwrap();
    let started = Instant::now();
    let report = push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, image.manifest_digest);
    assert_eq!(proxy.faults_injected(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the hang was not cut short"
    );
    verify_directly(&registry, &image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_the_error_names_the_registry() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let proxy = FaultProxy::start(&registry.host).await;
    proxy.add(Rule::new("PUT", "/manifests/", Fault::status(503), 1_000));
    let image = TestImage::build(37, &[1_000]);
    let client = RegistryClient::new(&proxy.host(), explicit(), fast_settings()).unwrap();
    let target = Reference::parse(&format!("{}/faults/app:v1", proxy.host())).unwrap();
    let error = push_image(&client, &target, &image.request(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::UnexpectedStatus { status: 503, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&proxy.host()) && text.contains("faults/app"),
        "{text}"
    );
    let tries = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PUT" && s.path_and_query.contains("/manifests/"))
        .count();
    assert_eq!(tries as u32, fast_settings().http.retry.max_retries + 1);
}
