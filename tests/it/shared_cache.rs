//! `--cache-to` / `--cache-from`: two machines (two empty stores) share one cache through the
//! real registry; a cache that lies or is missing never makes a wrong image or a failed build.

use std::fs;
use std::process::Output;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dockless_registry::{Reference, RegistryClient, ResolvedCredential};
use serde_json::Value;

use crate::support::binary::{Workspace, busybox_base, run_with_stdin};
use crate::support::fast_settings;
use crate::support::registry::{PASSWORD, RegistryAuth, TestRegistry, USER};
use crate::support::skopeo;
use crate::support::token_server::TokenServer;

/// A context whose layers are: WORKDIR's directory, two COPYs, and two RUNs, the second
/// reading what the first made and what the second COPY brought.
const DOCKERFILE: &str = "ARG BASE\nFROM $BASE\nWORKDIR /app\nCOPY app/ /app/\n\
    RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo ran-first >&2 && echo one > /app/one.txt\"]\n\
    COPY data/ /data/\n\
    RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo ran-second >&2 && /bin/busybox cat /app/one.txt /data/d.txt > /app/both.txt\"]\n";

/// Writes the context into `ws`, every file with the modification time `mtime`.
fn write_context(ws: &Workspace, mtime: SystemTime) {
    ws.write("Dockerfile", DOCKERFILE);
    ws.write("app/main.sh", "echo hello\n");
    ws.write("app/big.bin", vec![7u8; 400_000]);
    ws.write("data/d.txt", "data one\n");
    for rel in ["Dockerfile", "app/main.sh", "app/big.bin", "data/d.txt"] {
        let file = fs::File::options()
            .write(true)
            .open(ws.context().join(rel))
            .unwrap();
        file.set_modified(mtime).unwrap();
    }
}

/// `dockless push` as a machine with its own empty store; the password (token auth) on stdin.
fn push(ws: &Workspace, args: &[&str], password: Option<&str>) -> (Value, String) {
    let mut cmd = ws.dockless();
    cmd.arg("push").args(args).arg("--json");
    if password.is_some() {
        cmd.args(["--username", USER, "--password-stdin"]);
    }
    let out: Output = run_with_stdin(cmd, password.unwrap_or(""));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "push failed: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// `push` arguments for the context: to `target`, on `base_arg`, with one cache flag.
fn args<'a>(target: &'a str, base_arg: &'a str, flag: &'a str, cache: &'a str) -> [&'a str; 7] {
    ["ctx", "--to", target, "--build-arg", base_arg, flag, cache]
}

/// The busybox base, pushed to `registry` as `base/busybox:1`.
fn pushed_base(registry: &str, password: Option<&str>) -> String {
    let ws = Workspace::new();
    let layout = busybox_base(ws.path());
    let base = format!("{registry}/base/busybox:1");
    push(&ws, &["--from", &layout, "--to", &base], password);
    base
}

/// The image's layer blobs that the base does not have.
fn own_layers(json: &Value) -> Vec<String> {
    json["image"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["fromBase"] == false)
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

fn in_store(ws: &Workspace, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    ws.cache().join("blobs/sha256").join(hex).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_machines_share_one_cache_through_a_token_auth_registry() {
    let server = TokenServer::start(USER, PASSWORD).await;
    let registry = TestRegistry::start(RegistryAuth::Token(&server)).await;
    let host = registry.host.clone();
    let base = tokio::task::spawn_blocking({
        let host = host.clone();
        move || pushed_base(&host, Some(PASSWORD))
    })
    .await
    .unwrap();
    let target = format!("{host}/team/app:1");
    let cache = format!("{host}/team/cache:main");
    let base_arg = format!("BASE={base}");
    let (a, b, changed) = tokio::task::spawn_blocking(move || {
        // Machine A: builds everything, pushes, exports the cache.
        let a = Workspace::new();
        write_context(
            &a,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
        );
        let (a_json, a_err) = push(
            &a,
            &args(&target, &base_arg, "--cache-to", &cache),
            Some(PASSWORD),
        );
        assert!(
            ran(&a_err, "ran-first") && ran(&a_err, "ran-second"),
            "{a_err}"
        );
        // The export sends no layer twice: the five are mounted from the image just pushed
        // (what goes up is the empty config and the listings).
        let export = &a_json["cacheExports"][0];
        assert_eq!(export["reference"], cache.as_str(), "{a_json}");
        assert_eq!(export["entries"], 5, "{a_json}");
        assert_eq!(export["mountedBlobs"], 5, "{a_json}");

        // Machine B: an empty store and a fresh copy of the context (other mtimes).
        let b_args = args(&target, &base_arg, "--cache-from", &cache);
        let b = Workspace::new();
        write_context(&b, SystemTime::now());
        let (b_json, b_err) = push(&b, &b_args, Some(PASSWORD));
        assert_eq!(
            b_json["digest"], a_json["digest"],
            "the same image: {b_err}"
        );
        assert!(
            !ran(&b_err, "ran-first") && !ran(&b_err, "ran-second"),
            "B runs no RUN command: {b_err}"
        );
        assert_eq!(b_json["uploadedBlobs"], 0, "B uploads nothing: {b_json}");
        // B compresses and downloads no layer, its own or the base's: the COPY after the
        // cached RUN knows the tree from the listings A exported.
        let layers: Vec<&str> = b_json["image"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        let held: Vec<&&str> = layers.iter().filter(|l| in_store(&b, l)).collect();
        assert!(held.is_empty(), "B holds {held:?} of {layers:?}: {b_err}");

        // One file changed on B: only what depends on it runs again.
        b.write("data/d.txt", "data two\n");
        let (changed, changed_err) = push(&b, &b_args, Some(PASSWORD));
        assert_ne!(changed["digest"], a_json["digest"]);
        assert!(!ran(&changed_err, "ran-first"), "{changed_err}");
        assert!(ran(&changed_err, "ran-second"), "{changed_err}");
        (a_json, b_json, changed)
    })
    .await
    .unwrap();
    let own = own_layers(&a).len();
    assert_eq!(own, 5, "WORKDIR, two COPYs, two RUNs: {a}");
    // Three of the five layers are the same after the change (the second COPY and RUN differ).
    let same = own_layers(&changed)
        .iter()
        .filter(|l| own_layers(&b).contains(l))
        .count();
    assert_eq!(same, 3, "{changed}");

    // The cache is an OCI artifact that skopeo reads: one layer per entry, keyed.
    let raw = skopeo::inspect_raw(&format!("{host}/team/cache:main"), Some((USER, PASSWORD)))
        .await
        .unwrap();
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["artifactType"],
        dockless_shared_cache::format::ARTIFACT_TYPE
    );
    let kind = dockless_shared_cache::format::KIND;
    let (listings, layers): (Vec<&Value>, Vec<&Value>) = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|l| l["annotations"][kind] == "listing");
    assert_eq!(layers.len(), own, "{manifest}");
    // Listings go with them, of the base's layers and the RUN layers: another machine knows
    // their trees without them (a COPY layer's tree is known from its files).
    let listed: Vec<&str> = listings
        .iter()
        .map(|l| {
            l["annotations"][dockless_shared_cache::format::LISTING_OF]
                .as_str()
                .unwrap()
        })
        .collect();
    let base_layers = a["image"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["fromBase"] == true)
        .map(|l| l["digest"].as_str().unwrap());
    let run_layers = [own_layers(&a)[2].clone(), own_layers(&a)[4].clone()];
    for layer in base_layers.chain(run_layers.iter().map(String::as_str)) {
        assert!(listed.contains(&layer), "{layer} is listed: {manifest}");
    }
    for layer in layers {
        let annotations = &layer["annotations"];
        assert_eq!(
            annotations[dockless_shared_cache::format::KEY]
                .as_str()
                .unwrap()
                .len(),
            64
        );
        assert!(own_layers(&a).contains(&layer["digest"].as_str().unwrap().to_owned()));
    }
}

/// Rewrites the cache manifest at `reference` with `change` applied to its JSON.
async fn tamper(host: &str, reference: &str, change: impl FnOnce(&mut Value)) {
    let client =
        RegistryClient::new(host, ResolvedCredential::anonymous(), fast_settings()).unwrap();
    let reference = Reference::parse(reference).unwrap();
    let fetched = client
        .get_manifest(reference.repository(), reference.manifest_reference())
        .await
        .unwrap();
    let mut manifest: Value = serde_json::from_slice(&fetched.bytes).unwrap();
    change(&mut manifest);
    client
        .put_manifest(
            reference.repository(),
            reference.manifest_reference(),
            Bytes::from(serde_json::to_vec(&manifest).unwrap()),
            dockless_oci::image::media::OCI_MANIFEST,
        )
        .await
        .unwrap();
}

fn layer_with_digest<'m>(manifest: &'m mut Value, digest: &str) -> &'m mut Value {
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|l| l["digest"] == digest)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_or_missing_cache_is_ignored_and_the_image_is_right() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let host = registry.host.clone();
    let base = tokio::task::spawn_blocking({
        let host = host.clone();
        move || pushed_base(&host, None)
    })
    .await
    .unwrap();
    let base_arg = format!("BASE={base}");
    let cache = format!("{host}/team/cache:main");
    let (a_json, a) = tokio::task::spawn_blocking({
        let (cache, base_arg, host) = (cache.clone(), base_arg.clone(), host.clone());
        move || {
            let a = Workspace::new();
            write_context(&a, SystemTime::now());
            let target = format!("{host}/team/app:1");
            let (json, _) = push(&a, &args(&target, &base_arg, "--cache-to", &cache), None);
            (json, a)
        }
    })
    .await
    .unwrap();
    drop(a);
    // The first RUN's entry lies about its diff_id (its blob unpacks to something else), and the
    // second COPY's entry gives a size its blob does not have.
    let own = own_layers(&a_json);
    tamper(&host, &cache, |manifest| {
        let run = layer_with_digest(manifest, &own[2]);
        run["annotations"][dockless_shared_cache::format::DIFF_ID] =
            Value::from(dockless_oci::digest::Digest::of(b"a lie").to_string());
        let copy = layer_with_digest(manifest, &own[3]);
        copy["size"] = Value::from(copy["size"].as_u64().unwrap() + 1);
    })
    .await;
    let missing = format!("{host}/team/nothing-here:main");
    // B builds twice with the same store: the second time the lying layer's blob is already
    // there (fetched the first time) but no local RUN record (as when the blob came with a
    // pulled image), and the lie must still be found.
    let (b_json, b_err, again_json, again_err) = tokio::task::spawn_blocking(move || {
        let b = Workspace::new();
        write_context(&b, SystemTime::now());
        let target = format!("{host}/team/b:1");
        let args = [
            "ctx",
            "--to",
            &target,
            "--build-arg",
            &base_arg,
            "--cache-from",
            &missing,
            "--cache-from",
            &cache,
        ];
        let (first, first_err) = push(&b, &args, None);
        fs::remove_dir_all(b.cache().join("run-cache")).unwrap();
        let (again, again_err) = push(&b, &args, None);
        (first, first_err, again, again_err)
    })
    .await
    .unwrap();
    assert_eq!(again_json["digest"], a_json["digest"], "{again_err}");
    assert!(again_err.contains("unpacks to"), "{again_err}");
    assert_eq!(
        b_json["digest"], a_json["digest"],
        "the right image: {b_err}"
    );
    assert!(
        b_err.contains("nothing-here") && b_err.contains("building without it"),
        "{b_err}"
    );
    assert!(
        b_err.contains("unpacks to"),
        "the diff_id lie is found and said: {b_err}"
    );
    assert!(
        b_err.contains("bytes, the entry says"),
        "the size lie is said: {b_err}"
    );
    assert!(ran(&b_err, "ran-first"), "the lying RUN ran again: {b_err}");
    assert!(
        !ran(&b_err, "ran-second"),
        "the RUN after it, keyed by the true diff_id, came from the cache: {b_err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_exported_even_when_the_push_fails() {
    let cache_registry = TestRegistry::start(RegistryAuth::None).await;
    // A registry that refuses us (no credentials given): the push fails.
    let refusing = TestRegistry::start(RegistryAuth::Basic).await;
    let cache = format!("{}/team/cache:main", cache_registry.host);
    let target = format!("{}/team/app:1", refusing.host);
    let (out, built) = tokio::task::spawn_blocking({
        let cache = cache.clone();
        move || {
            let ws = Workspace::new();
            ws.write("Dockerfile", "FROM scratch\nCOPY app/ /app/\n");
            ws.write("app/a.txt", "a\n");
            // DOCKLESS_CACHE_REPO stands for --cache-to (and --cache-from, here empty).
            let mut cmd = ws.dockless();
            cmd.args(["push", "ctx", "--to", &target])
                .env("DOCKLESS_CACHE_REPO", &cache);
            let out = cmd.output().unwrap();
            let built = ws.build_ok(&[]);
            let bad = ws
                .dockless()
                .args(["build", "ctx", "--cache-to", "Bad::Reference"])
                .output()
                .unwrap();
            let bad_err = String::from_utf8_lossy(&bad.stderr);
            assert_eq!(bad.status.code(), Some(2), "a usage error: {bad_err}");
            assert!(bad_err.contains("--cache-to"), "{bad_err}");
            (out, built)
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the push fails: {stderr}");
    assert!(stderr.contains("Exported the build cache"), "{stderr}");
    assert!(
        stderr.contains("building without it"),
        "the empty cache read first is a warning: {stderr}"
    );
    let raw = skopeo::inspect_raw(&cache, None).await.unwrap();
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(
        layers[0]["digest"], built["layers"][0]["digest"],
        "the layer the failed push built is in the cache"
    );
}

/// Whether the RUN that echoes `marker` ran: a line of its output (as the command wrote it, or
/// prefixed `#N SECONDS` by plain progress), not the step's header naming the command.
fn ran(stderr: &str, marker: &str) -> bool {
    stderr
        .lines()
        .any(|line| line.trim_end().ends_with(marker) && !line.contains("echo"))
}

/// A two-platform build exports one cache with both platforms' layers, each RUN under its own
/// key (the platform is part of it), and a second machine's two-platform build from that cache
/// runs no RUN for either platform and makes the same index. The RUN's output differs by
/// platform (`uname -m`: x86_64, aarch64 under qemu), so one platform's layer cannot stand
/// for the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_platform_build_shares_each_platforms_layers_through_one_cache() {
    crate::platforms::assert_aarch64_is_emulated();
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let host = registry.host.clone();
    let (a, b, cache) = tokio::task::spawn_blocking(move || {
        let a = Workspace::new();
        let base = crate::platforms::two_platform_busybox_base(&a);
        let dockerfile = "ARG BASE\nFROM $BASE\nCOPY data/ /data/\n\
            RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo ran-$(/bin/busybox uname -m) >&2 && /bin/busybox uname -m > /arch\"]\n";
        let target = format!("{host}/multi/app:1");
        let cache = format!("{host}/multi/cache:main");
        let base_arg = format!("BASE={base}");
        let two = ["--platform", "linux/amd64,linux/arm64"];
        a.write("Dockerfile", dockerfile);
        a.write("data/d.txt", "data\n");
        let (a_json, a_err) = push(
            &a,
            &[&args(&target, &base_arg, "--cache-to", &cache)[..], &two].concat(),
            None,
        );
        assert!(
            ran(&a_err, "ran-x86_64") && ran(&a_err, "ran-aarch64"),
            "{a_err}"
        );
        let export = &a_json["cacheExports"][0];
        assert_eq!(export["reference"], cache.as_str(), "{a_json}");
        // The COPY's layer is the same for both platforms (one entry); the RUN's are two.
        assert_eq!(export["entries"], 3, "{a_json}");

        // Machine B: an empty store, the same context.
        let b = Workspace::new();
        b.write("Dockerfile", dockerfile);
        b.write("data/d.txt", "data\n");
        let (b_json, b_err) = push(
            &b,
            &[&args(&target, &base_arg, "--cache-from", &cache)[..], &two].concat(),
            None,
        );
        assert!(
            !ran(&b_err, "ran-x86_64") && !ran(&b_err, "ran-aarch64"),
            "B runs no RUN for either platform: {b_err}"
        );
        assert_eq!(b_json["digest"], a_json["digest"], "the same index: {b_err}");
        (a_json, b_json, cache)
    })
    .await
    .unwrap();

    // Each platform's own layers (the COPY's, the RUN's) are in the cache, the RUN's apart.
    let raw = skopeo::inspect_raw(&cache, None).await.unwrap();
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    let kind = dockless_shared_cache::format::KIND;
    let cached = |wanted: &str| -> Vec<String> {
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["annotations"][kind] == wanted)
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    let (files, runs) = (cached("files"), cached("run"));
    let platform_layers = |json: &Value, i: usize| -> Vec<String> {
        json["platforms"][i]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["fromBase"] == false)
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    let (amd64, arm64) = (platform_layers(&a, 0), platform_layers(&a, 1));
    assert_eq!(a["platforms"][1]["platform"], "linux/arm64", "{a}");
    assert_eq!(amd64.len(), 2, "COPY and RUN: {a}");
    assert_eq!(amd64[0], arm64[0], "the COPY's layer is the same: {a}");
    assert_ne!(amd64[1], arm64[1], "the RUNs made different layers: {a}");
    assert_eq!(files, [amd64[0].clone()], "{manifest}");
    assert_eq!(runs.len(), 2, "{manifest}");
    assert!(
        runs.contains(&amd64[1]) && runs.contains(&arm64[1]),
        "{manifest}"
    );
    assert_eq!(b["platforms"], a["platforms"]);
}
