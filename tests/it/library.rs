//! The library's one door, called as a program that embeds dockless would call it:
//! `publish::build_and_push` against the real registry, then the registry read back with
//! skopeo. The binary is not involved.

use std::sync::{Arc, Mutex};

use dockless_build::publish::{PublishEvents, build_and_push};
use dockless_build::{BuildOptions, BuiltImage};
use dockless_oci::digest::Digest;
use dockless_oci::store::Store;
use dockless_registry::remote::RemoteAccess;
use dockless_registry::{BlobOutcome, CredentialEnv, PushProgress, PushProgressFn, Reference};

use crate::support::fast_settings;
use crate::support::registry::{RegistryAuth, TestRegistry};
use crate::support::skopeo;

/// Everything a publication told its caller.
#[derive(Default)]
struct Recorded {
    built: Mutex<Option<Digest>>,
    pushing: Mutex<Vec<(Digest, u64)>>,
    done: Arc<Mutex<Vec<(Digest, BlobOutcome)>>>,
}

impl PublishEvents for Recorded {
    fn progress(&self) -> Option<PushProgressFn> {
        let done = self.done.clone();
        Some(Arc::new(move |event| {
            if let PushProgress::Done { digest, outcome } = event {
                done.lock().unwrap().push((digest, outcome));
            }
        }))
    }

    fn built(&self, image: &BuiltImage) {
        *self.built.lock().unwrap() = Some(image.manifest.digest.clone());
    }

    fn pushing(&self, blobs: &[(Digest, u64)]) {
        self.pushing.lock().unwrap().extend_from_slice(blobs);
    }
}

fn options(context: &std::path::Path) -> BuildOptions {
    BuildOptions::new(context)
}

#[test]
fn build_and_push_puts_in_the_registry_the_image_it_reports() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = runtime.block_on(TestRegistry::start(RegistryAuth::None));
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY data /data\nCMD [\"/hello\"]\n",
    )
    .unwrap();
    std::fs::write(context.path().join("hello.txt"), "hello from the library\n").unwrap();
    std::fs::create_dir(context.path().join("data")).unwrap();
    let mut rng = fastrand::Rng::with_seed(15);
    let data: Vec<u8> = (0..300_000).map(|_| rng.u8(..)).collect();
    std::fs::write(context.path().join("data/random.bin"), data).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    // No credential files: the loopback registry needs none, and the user's own stay unread.
    let remote = RemoteAccess::new(
        runtime.handle().clone(),
        fast_settings(),
        CredentialEnv::default(),
        None,
    );
    let target = Reference::parse(&format!("{}/library/app:v1", registry.host)).unwrap();

    let events = Recorded::default();
    let published = build_and_push(&options(context.path()), &store, &remote, &target, &events)
        .expect("build_and_push succeeds");

    // What the registry serves under the tag is the manifest the report names.
    let served = runtime
        .block_on(skopeo::inspect_raw(&target.to_string(), None))
        .expect("the registry has the tag");
    let digest = &published.report.manifest_digest;
    assert_eq!(&Digest::of(&served), digest);
    assert_eq!(&published.image.manifest.digest, digest);
    assert_eq!(served, store.read_blob(digest).unwrap());
    assert_eq!(
        published.pinned,
        format!("{}/library/app@{digest}", registry.host)
    );
    // Every blob can be read back and matches its digest (skopeo verifies while copying).
    let copied = tempfile::tempdir().unwrap();
    runtime
        .block_on(skopeo::copy_to_oci(&published.pinned, None, copied.path()))
        .expect("skopeo copies every blob back");

    // The report and the events say what went up: to an empty registry, every blob.
    let blobs: Vec<(Digest, u64)> = std::iter::once((
        published.image.config.digest.clone(),
        published.image.config.size,
    ))
    .chain(
        published
            .image
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size)),
    )
    .collect();
    assert_eq!(published.image.layers.len(), 2);
    let report = &published.report;
    assert_eq!(report.uploaded_blobs, blobs.len(), "{report:?}");
    assert_eq!(report.skipped_blobs + report.mounted_blobs, 0, "{report:?}");
    assert_eq!(
        report.uploaded_bytes,
        blobs.iter().map(|(_, size)| size).sum::<u64>(),
        "{report:?}"
    );
    assert_eq!(events.built.lock().unwrap().as_ref(), Some(digest));
    assert_eq!(*events.pushing.lock().unwrap(), blobs);
    let done = events.done.lock().unwrap().clone();
    for (blob, _) in &blobs {
        assert!(
            done.contains(&(blob.clone(), BlobOutcome::Uploaded)),
            "no upload event for {blob}: {done:?}"
        );
    }

    // Again: the same digest, nothing uploaded.
    let again = build_and_push(
        &options(context.path()),
        &store,
        &remote,
        &target,
        &Recorded::default(),
    )
    .expect("the second build_and_push succeeds");
    assert_eq!(&again.report.manifest_digest, digest);
    assert_eq!(
        (again.report.uploaded_blobs, again.report.uploaded_bytes),
        (0, 0),
        "{:?}",
        again.report
    );
    assert_eq!(
        again.report.skipped_blobs,
        blobs.len(),
        "{:?}",
        again.report
    );
}
