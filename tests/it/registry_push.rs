//! Pushing to the real registry in each auth mode, checked with skopeo and our own reader.

use std::sync::{Arc, Mutex};

use dockless_registry::{
    BlobOutcome, BlobSource, PushBlob, PushProgress, PushRequest, Reference, RegistryClient,
    ResolvedCredential, push_image,
};

use crate::support::fast_settings;
use crate::support::image::TestImage;
use crate::support::proxy::FaultProxy;
use crate::support::registry::{PASSWORD, RegistryAuth, TestRegistry, USER};
use crate::support::skopeo;
use crate::support::token_server::TokenServer;

fn explicit() -> ResolvedCredential {
    ResolvedCredential::explicit(USER, PASSWORD.to_string().into())
}

/// Push, read back with skopeo, push again (nothing uploaded), push to another repository
/// (everything mounted or skipped).
async fn push_read_back_and_repush(
    host: &str,
    credential: ResolvedCredential,
    creds: Option<(&str, &str)>,
) {
    let image = TestImage::build(7, &[150_000, 20_000]);
    let client = RegistryClient::new(host, credential, fast_settings()).unwrap();
    let target = Reference::parse(&format!("{host}/team/app:v1")).unwrap();

    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = events.clone();
    let progress = Arc::new(move |event: PushProgress| recorder.lock().unwrap().push(event));
    let report = push_image(&client, &target, &image.request(), Some(progress))
        .await
        .unwrap();
    assert_eq!(report.uploaded_blobs, 3);
    assert_eq!(report.skipped_blobs + report.mounted_blobs, 0);
    assert_eq!(report.uploaded_bytes, image.total_bytes());
    let events = events.lock().unwrap().clone();
    for blob in &image.blobs {
        assert!(events.contains(&PushProgress::Done {
            digest: blob.digest.clone(),
            outcome: BlobOutcome::Uploaded
        }));
        assert!(events.contains(&PushProgress::Sent {
            digest: blob.digest.clone(),
            sent: blob.size,
            total: blob.size
        }));
    }

    let registry_digest = skopeo::digest(&format!("{host}/team/app:v1"), creds)
        .await
        .unwrap();
    assert_eq!(
        report.manifest_digest.as_str(),
        registry_digest,
        "the digest reported is the one skopeo computes from what the registry serves"
    );
    let raw = skopeo::inspect_raw(&format!("{host}/team/app:v1"), creds)
        .await
        .unwrap();
    assert_eq!(
        raw,
        image.manifest.as_ref(),
        "the registry must serve our exact manifest bytes"
    );
    let layout = tempfile::tempdir().unwrap();
    skopeo::copy_to_oci(&format!("{host}/team/app:v1"), creds, layout.path())
        .await
        .unwrap();
    let copied = layout
        .path()
        .join("blobs/sha256")
        .join(registry_digest.trim_start_matches("sha256:"));
    assert_eq!(std::fs::read(copied).unwrap(), image.manifest.as_ref());

    let again = push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    assert_eq!(
        (
            again.uploaded_blobs,
            again.skipped_blobs,
            again.uploaded_bytes
        ),
        (0, 3, 0)
    );

    let other = Reference::parse(&format!("{host}/other/app:v1")).unwrap();
    let mut request = image.request();
    request.mount_from = vec!["team/app".into()];
    let mounted = push_image(&client, &other, &request, None).await.unwrap();
    assert_eq!(mounted.uploaded_blobs, 0, "{mounted:?}");
    assert_eq!(
        mounted.mounted_blobs + mounted.skipped_blobs,
        3,
        "{mounted:?}"
    );
    assert_eq!(
        mounted.mounted_blobs, 3,
        "the registry supports mounts: {mounted:?}"
    );

    let fetched = client.get_manifest("other/app", "v1").await.unwrap();
    assert_eq!(fetched.bytes, image.manifest);
    assert_eq!(fetched.digest.as_str(), registry_digest);
    let by_digest = client
        .get_manifest("other/app", &registry_digest)
        .await
        .unwrap();
    assert_eq!(
        by_digest.media_type,
        dockless_oci::image::media::OCI_MANIFEST
    );
    let dir = tempfile::tempdir().unwrap();
    for blob in &image.blobs {
        let path = dir.path().join("blob");
        let size = client
            .get_blob_to_file("other/app", &blob.digest, &path)
            .await
            .unwrap();
        assert_eq!(size, blob.size);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_without_auth() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    push_read_back_and_repush(&registry.host, ResolvedCredential::anonymous(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_basic_auth() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    push_read_back_and_repush(&registry.host, explicit(), Some((USER, PASSWORD))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_token_auth() {
    let tokens = TokenServer::start(USER, PASSWORD).await;
    let registry = TestRegistry::start(RegistryAuth::Token(&tokens)).await;
    push_read_back_and_repush(&registry.host, explicit(), Some((USER, PASSWORD))).await;
    let state = tokens.state.lock().unwrap();
    assert!(
        state
            .requests
            .iter()
            .all(|r| r.basic_user.as_deref() == Some(USER))
    );
    assert!(
        state
            .requests
            .iter()
            .any(|r| r.scopes == ["repository:other/app:push,pull", "repository:team/app:pull"]),
        "a mount asks for pull on the source: {:?}",
        state.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_sends_patches_and_the_same_image() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let image = TestImage::build(11, &[300_000]);
    let mut settings = fast_settings();
    settings.chunk_size = Some(64 * 1024);
    let client =
        RegistryClient::new(&proxy.host(), ResolvedCredential::anonymous(), settings).unwrap();
    let target = Reference::parse(&format!("{}/chunked/app:v1", proxy.host())).unwrap();
    let report = push_image(&client, &target, &image.request(), None)
        .await
        .unwrap();
    let patches = proxy.seen().iter().filter(|s| s.method == "PATCH").count();
    // 300 000 random bytes gzip to a little more: 5 chunks of 64 KiB, plus the config's one.
    assert!(
        patches >= 6,
        "expected chunked PATCH uploads, saw {patches}"
    );
    let seen = proxy.seen();
    for blob in &image.blobs {
        let head = seen
            .iter()
            .position(|s| s.method == "HEAD" && s.path_and_query.ends_with(blob.digest.as_str()));
        let upload = seen.iter().position(|s| {
            s.method == "PUT"
                && s.path_and_query
                    .replace("%3A", ":")
                    .contains(blob.digest.as_str())
        });
        assert!(
            head.is_some() && head < upload,
            "HEAD must come before the upload of {}",
            blob.digest
        );
    }
    let last = seen.last().unwrap();
    assert!(
        last.method == "PUT" && last.path_and_query.ends_with("/manifests/v1"),
        "the manifest goes last: {last:?}"
    );
    assert_eq!(
        report.manifest_digest.as_str(),
        skopeo::digest(&format!("{}/chunked/app:v1", registry.host), None)
            .await
            .unwrap(),
        "the digest reported is the one skopeo computes from what the registry serves"
    );
    let raw = skopeo::inspect_raw(&format!("{}/chunked/app:v1", registry.host), None)
        .await
        .unwrap();
    assert_eq!(raw, image.manifest.as_ref());
    let layout = tempfile::tempdir().unwrap();
    skopeo::copy_to_oci(
        &format!("{}/chunked/app:v1", registry.host),
        None,
        layout.path(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_copy_across_registries_and_mount_within_one() {
    let source_registry = TestRegistry::start(RegistryAuth::None).await;
    let target_registry = TestRegistry::start(RegistryAuth::Basic).await;
    let image = TestImage::build(23, &[120_000, 3_000]);
    let source = Arc::new(
        RegistryClient::new(
            &source_registry.host,
            ResolvedCredential::anonymous(),
            fast_settings(),
        )
        .unwrap(),
    );
    let source_ref = Reference::parse(&format!("{}/base/image:1", source_registry.host)).unwrap();
    push_image(&source, &source_ref, &image.request(), None)
        .await
        .unwrap();

    let target =
        Arc::new(RegistryClient::new(&target_registry.host, explicit(), fast_settings()).unwrap());
    let from_registry = |client: &Arc<RegistryClient>, repository: &str| PushRequest {
        blobs: image
            .blobs
            .iter()
            .map(|b| PushBlob {
                digest: b.digest.clone(),
                size: b.size,
                source: BlobSource::Registry {
                    client: client.clone(),
                    repository: repository.into(),
                },
                mount_from: Vec::new(),
            })
            .collect(),
        ..image.request()
    };
    let copied_ref = Reference::parse(&format!("{}/copied/image:1", target_registry.host)).unwrap();
    let copied = push_image(
        &target,
        &copied_ref,
        &from_registry(&source, "base/image"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(copied.uploaded_blobs, 3);
    assert_eq!(copied.uploaded_bytes, image.total_bytes());
    let raw = skopeo::inspect_raw(
        &format!("{}/copied/image:1", target_registry.host),
        Some((USER, PASSWORD)),
    )
    .await
    .unwrap();
    assert_eq!(raw, image.manifest.as_ref());

    // A source on the target registry itself is mounted, not streamed.
    let mounted_ref =
        Reference::parse(&format!("{}/mounted/image:1", target_registry.host)).unwrap();
    let mounted = push_image(
        &target,
        &mounted_ref,
        &from_registry(&target, "copied/image"),
        None,
    )
    .await
    .unwrap();
    assert_eq!((mounted.mounted_blobs, mounted.uploaded_blobs), (3, 0));
    let layout = tempfile::tempdir().unwrap();
    skopeo::copy_to_oci(
        &format!("{}/mounted/image:1", target_registry.host),
        Some((USER, PASSWORD)),
        layout.path(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_naming_a_missing_blob_is_not_pushed() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let image = TestImage::build(5, &[1_000]);
    let client = RegistryClient::new(
        &registry.host,
        ResolvedCredential::anonymous(),
        fast_settings(),
    )
    .unwrap();
    let target = Reference::parse(&format!("{}/partial/app:v1", registry.host)).unwrap();
    let mut request = image.request();
    let left_out = request.blobs.pop().unwrap();
    let error = push_image(&client, &target, &request, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(left_out.digest.as_str()), "{error}");
    assert!(!client.manifest_exists("partial/app", "v1").await.unwrap());
}
