//! A bounded store: `dockless du` counts what the files hold, `dockless prune` removes what it
//! is asked to (everything with --all, the least recently used first with --keep-storage,
//! only what was not used lately with --filter until=), never under a running build, and
//! DOCKLESS_STORE_LIMIT keeps the store within its size after each build.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::cancel::{Running, assert_tmp_empty, pausing_build, pausing_workspace, token};
use crate::support::binary::{Workspace, assert_success, needs_root};

/// A context per name: `FROM scratch` and a COPY of `size` random bytes seeded by the name.
fn write_context(ws: &Workspace, name: &str, size: usize) {
    let dir = ws.path().join(name);
    fs::create_dir_all(&dir).unwrap();
    let mut bytes = vec![0u8; size];
    fastrand::Rng::with_seed(name.bytes().map(u64::from).sum()).fill(&mut bytes);
    fs::write(dir.join("data.bin"), bytes).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY data.bin /data.bin\n",
    )
    .unwrap();
}

/// Builds the context `name` into the workspace's store; returns the image's digest.
fn build(ws: &Workspace, name: &str, env: &[(&str, &str)]) -> String {
    build_json(ws, name, env)["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn build_json(ws: &Workspace, name: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let out = ws
        .dockless()
        .envs(env.iter().copied())
        .args(["build", name, "--json"])
        .output()
        .unwrap();
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The digest of the (only) layer of a `write_context` image, the big part of it.
fn layer(json: &serde_json::Value) -> String {
    json["layers"][0]["digest"].as_str().unwrap().to_owned()
}

fn dockless_json(ws: &Workspace, args: &[&str]) -> serde_json::Value {
    let out = ws.dockless().args(args).output().unwrap();
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn has_blob(ws: &Workspace, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    ws.cache().join("blobs/sha256").join(hex).is_file()
}

/// Total bytes `du --json` reports.
fn du_total(ws: &Workspace) -> u64 {
    dockless_json(ws, &["du", "--json"])["totalBytes"]
        .as_u64()
        .unwrap()
}

/// Items and bytes of an area counted here, independently: the entries of its folder (locks
/// aside), and the bytes of the regular files under it, each inode once.
fn count_area(dir: &Path) -> (u64, u64) {
    let mut items = 0;
    let mut bytes = 0;
    let mut seen = HashSet::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".lock") {
            continue;
        }
        items += 1;
        let mut pending = vec![entry.path()];
        while let Some(path) = pending.pop() {
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if meta.is_file() && seen.insert(meta.ino()) {
                bytes += meta.len();
            }
        }
    }
    (items, bytes)
}

/// Moves the last use of every item of the store back by `age`.
fn age_everything(cache: &Path, age: Duration) {
    let then = SystemTime::now() - age;
    for area in [
        "blobs/sha256",
        "rootfs",
        "run-cache",
        "layer-cache",
        "layer-listings",
    ] {
        for entry in fs::read_dir(cache.join(area))
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = fs::File::open(entry.path()).unwrap();
            file.set_modified(then).unwrap();
        }
    }
}

#[test]
fn du_counts_what_the_files_hold_by_kind() {
    if !needs_root("a RUN as root") {
        return;
    }
    let (ws, _) = pausing_workspace(&token());
    // A RUN, a COPY, a base tree, listings: every kind but cache mounts and locations.
    ws.write("Dockerfile", {
        let text = fs::read_to_string(ws.context().join("Dockerfile")).unwrap();
        format!("{text}COPY Dockerfile /copied\n")
    });
    let out = ws.dockless().args(["build", "ctx"]).output().unwrap();
    assert_success(&out);
    let du = dockless_json(&ws, &["du", "--json"]);
    let mut total = 0;
    let mut seen_kinds = BTreeMap::new();
    for area in du["areas"].as_array().unwrap() {
        let dir = ws.cache().join(area["dir"].as_str().unwrap());
        let (items, bytes) = count_area(&dir);
        assert_eq!(area["items"], items, "{area}");
        assert_eq!(area["bytes"], bytes, "{area}");
        total += bytes;
        seen_kinds.insert(area["kind"].as_str().unwrap().to_owned(), items);
    }
    assert_eq!(du["totalBytes"], total);
    for kind in [
        "blobs",
        "unpacked-trees",
        "run-cache",
        "layer-cache",
        "listings",
    ] {
        assert!(seen_kinds[kind] > 0, "{kind} holds something: {du}");
    }
    assert_eq!(seen_kinds["tmp"], 0, "no process runs: {du}");
    // The words say the same.
    let words = ws.dockless().args(["du"]).output().unwrap();
    assert_success(&words);
    let text = String::from_utf8_lossy(&words.stdout);
    assert!(
        text.contains("unpacked-trees") && text.contains("Total:"),
        "{text}"
    );
}

#[test]
fn prune_all_empties_the_store_and_the_next_build_gives_the_same_digest() {
    let ws = Workspace::new();
    write_context(&ws, "a", 200_000);
    let digest = build(&ws, "a", &[]);
    // Without --all only what the store makes again by itself goes: the image stays.
    let pruned = dockless_json(&ws, &["prune", "--json"]);
    assert!(has_blob(&ws, &digest), "{pruned}");
    let pruned = dockless_json(&ws, &["prune", "--all", "--force", "--json"]);
    assert!(pruned["bytes"].as_u64().unwrap() > 200_000, "{pruned}");
    assert_eq!(du_total(&ws), 0, "prune --all leaves nothing");
    assert!(!has_blob(&ws, &digest));
    assert_eq!(build(&ws, "a", &[]), digest, "the store fills again");
}

#[test]
fn keep_storage_keeps_the_most_recently_used() {
    let ws = Workspace::new();
    write_context(&ws, "old", 300_000);
    write_context(&ws, "new", 300_000);
    let old = layer(&build_json(&ws, "old", &[]));
    age_everything(&ws.cache(), Duration::from_secs(60));
    let new = build_json(&ws, "new", &[]);
    let before = du_total(&ws);
    assert!(before > 600_000, "{before}");
    let out = ws
        .dockless()
        .args(["prune", "--all", "--keep-storage", "450kb"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Total:"),
        "buildx's last line"
    );
    let after = du_total(&ws);
    assert!(after <= 450 * 1024, "within the size: {after}");
    for blob in [new["digest"].as_str().unwrap(), &layer(&new)] {
        assert!(has_blob(&ws, blob), "the most recently used image stays");
    }
    assert!(!has_blob(&ws, &old), "the least recently used layer goes");
}

#[test]
fn until_removes_only_what_was_not_used_for_that_long() {
    let ws = Workspace::new();
    write_context(&ws, "old", 10_000);
    write_context(&ws, "new", 10_000);
    let old = build(&ws, "old", &[]);
    age_everything(&ws.cache(), Duration::from_secs(2 * 3600));
    let new = build(&ws, "new", &[]);
    let out = ws
        .dockless()
        .args(["prune", "--all", "--filter", "until=1h"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(!has_blob(&ws, &old), "unused for two hours: gone");
    assert!(has_blob(&ws, &new), "used just now: kept");
    let refused = ws
        .dockless()
        .args(["prune", "--filter", "type=regular"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only until=DURATION"));
}

#[test]
fn prune_waits_for_a_running_build_which_succeeds_with_the_right_digest() {
    if !needs_root("a RUN as root") {
        return;
    }
    let token = token();
    let (ws, digest) = pausing_workspace(&token);
    let mut build = Running::start(pausing_build(&ws, "4"));
    build.wait_for_line(&format!("{token}-42"));
    let mut prune_command = ws.dockless();
    prune_command.args(["prune", "--all", "--json"]);
    let prune = Running::start(prune_command);
    std::thread::sleep(Duration::from_millis(500));
    let mut prune = prune;
    assert!(
        prune.child.try_wait().unwrap().is_none(),
        "prune --all does not run under a build: {}",
        prune.stderr()
    );
    let (status, stderr) = build.finish(Duration::from_secs(120));
    assert!(status.success(), "the build succeeds: {stderr}");
    let built: serde_json::Value = {
        // The build's result: the layout it wrote.
        let index = fs::read_to_string(ws.out().join("index.json")).unwrap();
        serde_json::from_str(&index).unwrap()
    };
    assert_eq!(built["manifests"][0]["digest"], digest, "the right digest");
    let (status, stderr) = prune.finish(Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    assert_eq!(du_total(&ws), 0, "the prune ran after the build");
    assert_tmp_empty(&ws.cache());
}

#[test]
fn concurrent_builds_on_one_store_give_the_digests_of_separate_stores() {
    let ws = Workspace::new();
    for name in ["one", "two", "three"] {
        write_context(&ws, name, 2_000_000);
    }
    let expected: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|name| {
            let cache = ws.path().join(format!("{name}-cache"));
            build(
                &ws,
                name,
                &[("DOCKLESS_CACHE_DIR", cache.to_str().unwrap())],
            )
        })
        .collect();
    let builds: Vec<_> = ["one", "two", "three"]
        .iter()
        .map(|name| {
            ws.dockless()
                .args(["build", name, "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, expected) in builds.into_iter().zip(expected) {
        let out = child.wait_with_output().unwrap();
        assert_success(&out);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["digest"], expected.as_str());
    }
}

#[test]
fn the_size_limit_is_kept_after_each_build() {
    let ws = Workspace::new();
    write_context(&ws, "old", 300_000);
    write_context(&ws, "new", 300_000);
    let old = layer(&build_json(&ws, "old", &[]));
    age_everything(&ws.cache(), Duration::from_secs(60));
    let out = ws
        .dockless()
        .env("DOCKLESS_STORE_LIMIT", "450KB")
        .args(["build", "new", "--json"])
        .output()
        .unwrap();
    assert_success(&out);
    let new: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DOCKLESS_STORE_LIMIT"), "{stderr}");
    assert!(du_total(&ws) <= 450 * 1024, "{}", du_total(&ws));
    for blob in [new["digest"].as_str().unwrap(), &layer(&new)] {
        assert!(has_blob(&ws, blob), "the image just built stays");
    }
    assert!(!has_blob(&ws, &old), "the least recently used layer goes");
    let bad = ws
        .dockless()
        .env("DOCKLESS_STORE_LIMIT", "lots")
        .args(["build", "new"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad limit stops the build");
}

#[test]
fn a_cache_hit_counts_as_a_use() {
    let ws = Workspace::new();
    write_context(&ws, "first", 300_000);
    write_context(&ws, "second", 300_000);
    let first = build_json(&ws, "first", &[]);
    age_everything(&ws.cache(), Duration::from_secs(60));
    // Now the first image is the least recently used.
    let second = layer(&build_json(&ws, "second", &[]));
    // All cached: nothing is written, but what it used becomes the most recently used.
    assert_eq!(build_json(&ws, "first", &[])["digest"], first["digest"]);
    let out = ws
        .dockless()
        .args(["prune", "--all", "--keep-storage", "450kb"])
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        has_blob(&ws, &layer(&first)),
        "used by the last build: kept"
    );
    assert!(!has_blob(&ws, &second), "not used since: gone");
}
