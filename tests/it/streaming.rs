//! New layers go up while they are compressed: one streamed PATCH of unknown length, then a
//! `PUT ?digest=` with no body; a registry that refuses that gets the layer from the store.

use serde_json::Value;

use crate::support::binary::{Workspace, assert_success, run_async};
use crate::support::proxy::{Fault, FaultProxy, Rule, Seen};
use crate::support::registry::{RegistryAuth, TestRegistry};
use crate::support::skopeo;

async fn push(ws: &Workspace, target: &str) -> Value {
    let mut cmd = ws.dockless();
    cmd.args(["push", "ctx", "--to", target, "--json"]);
    let out = run_async(cmd, "").await;
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Three layers: text that compresses, noise that does not, and a small one.
fn context(ws: &Workspace) {
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY text/ /text/\nCOPY noise.bin /noise.bin\nCOPY small /small\n",
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    ws.write("noise.bin", noise);
    for i in 0..50 {
        ws.write(
            &format!("text/file{i}.txt"),
            format!("line {i} of a file that compresses well\n").repeat(2000),
        );
    }
    ws.write("small", "small\n");
}

fn layer_digests(pushed: &Value) -> Vec<String> {
    pushed["image"]["layers"]
        .as_array()
        .expect("layers in --json")
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_owned())
        .collect()
}

fn closing_puts<'a>(seen: &'a [Seen], digest: &str) -> Vec<&'a Seen> {
    let query = format!("digest={}", digest.replace(':', "%3A"));
    seen.iter()
        .filter(|s| s.method == "PUT" && s.fault.is_none() && s.path_and_query.contains(&query))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_push_streams_each_new_layer_once_while_it_is_written() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let ws = Workspace::new();
    context(&ws);
    let target = format!("{}/stream/app:1", proxy.host());
    let pushed = push(&ws, &target).await;
    let seen = proxy.seen();
    let layers = layer_digests(&pushed);
    assert_eq!(layers.len(), 3, "{pushed}");
    for (digest, layer) in layers
        .iter()
        .zip(pushed["image"]["layers"].as_array().unwrap())
    {
        let puts = closing_puts(&seen, digest);
        assert_eq!(puts.len(), 1, "{digest} is closed exactly once: {seen:#?}");
        assert_eq!(
            puts[0].body_len,
            Some(0),
            "the closing PUT carries no bytes: they went in the PATCH"
        );
        let size = layer["size"].as_u64().unwrap();
        let patch = seen
            .iter()
            .find(|s| s.method == "PATCH" && s.body_len == Some(size as usize))
            .unwrap_or_else(|| panic!("a PATCH carried all {size} bytes of {digest}: {seen:#?}"));
        assert_eq!(
            patch.content_length, None,
            "the PATCH went out chunked: its length was not known when it started"
        );
    }
    assert_eq!(
        pushed["uploadedBlobs"], 4,
        "three layers and the config: {pushed}"
    );
    // What the registry holds is what was built, as an independent client reads it.
    assert_eq!(
        skopeo::digest(&format!("{}/stream/app:1", registry.host), None)
            .await
            .unwrap(),
        pushed["digest"].as_str().unwrap()
    );
    let layout = tempfile::tempdir().unwrap();
    skopeo::copy_to_oci(
        &format!("{}/stream/app:1", registry.host),
        None,
        layout.path(),
    )
    .await
    .expect("skopeo pulls every streamed blob and checks its digest");

    // With the layer cache emptied, the same layers are written again and found present: the
    // streams are abandoned or closed, never duplicated, and the image is the same.
    std::fs::remove_dir_all(ws.cache()).unwrap();
    let before = proxy.seen().len();
    let again = push(&ws, &target).await;
    assert_eq!(again["digest"], pushed["digest"]);
    let seen = proxy.seen();
    for digest in &layers {
        let bodies: Vec<_> = closing_puts(&seen[before..], digest)
            .into_iter()
            .filter(|s| s.body_len != Some(0))
            .collect();
        assert!(
            bodies.is_empty(),
            "{digest} was not sent again whole: {bodies:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_refuses_streamed_patches_gets_the_layers_from_the_store() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let proxy = FaultProxy::start(&registry.host).await;
    // As ghcr.io does for big PATCH bodies.
    proxy.add(Rule::new(
        "PATCH",
        "/blobs/uploads/",
        Fault::status(416),
        1000,
    ));
    let ws = Workspace::new();
    context(&ws);
    let target = format!("{}/refuse/app:1", proxy.host());
    let pushed = push(&ws, &target).await;
    let seen = proxy.seen();
    assert!(
        proxy.faults_injected() >= 3,
        "every layer tried to stream: {seen:#?}"
    );
    for digest in layer_digests(&pushed) {
        let puts = closing_puts(&seen, &digest);
        assert_eq!(puts.len(), 1, "{digest}: {seen:#?}");
        assert!(
            puts[0].body_len.unwrap_or(0) > 0,
            "{digest} went up whole in one PUT from the store"
        );
    }
    let layout = tempfile::tempdir().unwrap();
    skopeo::copy_to_oci(
        &format!("{}/refuse/app:1", registry.host),
        None,
        layout.path(),
    )
    .await
    .expect("the image is complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_turn_streaming_off() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let ws = Workspace::new();
    context(&ws);
    let target = format!("{}/chunks/app:1", proxy.host());
    let mut cmd = ws.dockless();
    cmd.args([
        "push",
        "ctx",
        "--to",
        &target,
        "--json",
        "--chunk-size",
        "1048576",
    ]);
    let out = run_async(cmd, "").await;
    assert_success(&out);
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen = proxy.seen();
    let unsized_patches: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.content_length.is_none())
        .collect();
    assert!(unsized_patches.is_empty(), "{unsized_patches:#?}");
    // Each layer went up in PATCHes of at most --chunk-size, sized, which (with what its
    // closing PUT carried) add up to the layer: the upload session ties them together.
    for layer in pushed["image"]["layers"]
        .as_array()
        .expect("layers in --json")
    {
        let digest = layer["digest"].as_str().unwrap();
        let size = layer["size"].as_u64().unwrap() as usize;
        let puts = closing_puts(&seen, digest);
        assert_eq!(puts.len(), 1, "{digest} is closed exactly once: {seen:#?}");
        let session = upload_session(puts[0]);
        let patches: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.method == "PATCH" && upload_session(s) == session)
            .collect();
        assert_eq!(
            patches.len(),
            size.div_ceil(1_048_576),
            "{digest} ({size} bytes) went up in chunks of 1 MiB: {seen:#?}"
        );
        for patch in &patches {
            assert!(patch.body_len.unwrap_or(0) <= 1_048_576, "{patch:?}");
            assert_eq!(patch.content_length, patch.body_len.map(|n| n as u64));
        }
        let sent: usize = patches.iter().map(|p| p.body_len.unwrap_or(0)).sum();
        assert_eq!(
            sent + puts[0].body_len.unwrap_or(0),
            size,
            "{digest}: the chunks carry the layer"
        );
    }
}

/// An upload's path without its query (`_state` changes from one request to the next).
fn upload_session(seen: &Seen) -> &str {
    seen.path_and_query
        .split('?')
        .next()
        .unwrap_or(&seen.path_and_query)
}

/// A two-platform push streams every platform's new layers while they are written, as one
/// platform's push does; a layer both platforms share (the COPYs that do not depend on the
/// platform) goes up once. The index the registry serves is the one printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_platforms_stream_their_layers_while_they_are_written() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let ws = Workspace::new();
    context(&ws);
    ws.write(
        "Dockerfile",
        "FROM scratch\nARG TARGETARCH\nCOPY text/ /text/\nCOPY noise.bin /noise.bin\n\
         COPY small-$TARGETARCH /small\n",
    );
    ws.write("small-amd64", "small amd64\n");
    ws.write("small-arm64", "small arm64\n");
    let target = format!("{}/stream/multi:1", proxy.host());
    let mut cmd = ws.dockless();
    cmd.args(["push", "ctx", "--to", &target, "--json"])
        .args(["--platform", "linux/amd64,linux/arm64"]);
    let out = run_async(cmd, "").await;
    assert_success(&out);
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen = proxy.seen();
    let mut layers: Vec<(String, u64)> = Vec::new();
    for platform in pushed["platforms"].as_array().unwrap() {
        for layer in platform["layers"].as_array().unwrap() {
            let digest = layer["digest"].as_str().unwrap().to_owned();
            if !layers.iter().any(|(d, _)| *d == digest) {
                layers.push((digest, layer["size"].as_u64().unwrap()));
            }
        }
    }
    assert_eq!(layers.len(), 4, "two shared layers, one each: {pushed}");
    for (digest, size) in &layers {
        let puts = closing_puts(&seen, digest);
        assert_eq!(puts.len(), 1, "{digest} is closed exactly once: {seen:#?}");
        assert_eq!(
            puts[0].body_len,
            Some(0),
            "{digest}: the closing PUT carries no bytes: they went in a streamed PATCH"
        );
        assert!(
            seen.iter().any(|s| s.method == "PATCH"
                && s.body_len == Some(*size as usize)
                && s.content_length.is_none()),
            "a chunked PATCH carried all {size} bytes of {digest}: {seen:#?}"
        );
    }
    // Four layers and two configs, each counted once.
    assert_eq!(pushed["push"]["uploadedBlobs"], 6, "{pushed}");
    assert_eq!(
        skopeo::digest(&format!("{}/stream/multi:1", registry.host), None)
            .await
            .unwrap(),
        pushed["digest"].as_str().unwrap()
    );
}
