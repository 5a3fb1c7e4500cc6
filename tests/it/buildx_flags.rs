//! buildx's command line (issue 21, parts 1 and 2): the flags CI scripts type, carried out
//! against the real registry and read back with skopeo, or refused with a reason and exit 2;
//! BuildKit's plain progress and rawjson lines.

use std::process::Output;

use dockless_oci::digest::Digest;
use serde_json::Value;

use crate::support::binary::{Workspace, assert_success, busybox_base, skopeo_inspect, tool};
use crate::support::registry::{RegistryAuth, TestRegistry};
use crate::support::skopeo;

/// A context without RUN: one COPY layer (and the config) to push.
fn copy_context(ws: &Workspace) {
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY app/ /app/\nCMD [\"/app/run\"]\n",
    );
    ws.write("app/run", "#!/bin/sh\necho running\n");
    ws.write("app/data.bin", vec![7u8; 200_000]);
}

/// A context over the busybox base whose RUN says it ran.
fn run_context(ws: &Workspace) {
    let base = busybox_base(ws.path());
    ws.write(
        "Dockerfile",
        format!(
            "FROM {base} AS tools\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN echo ran-in-tools\nFROM tools\nRUN echo ran-in-final; echo to-stderr >&2\n"
        ),
    );
}

fn dockless(ws: &Workspace, args: &[&str]) -> Output {
    ws.dockless().args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Value {
    assert_success(out);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The manifest a registry serves for `reference`, as skopeo reads it: (its digest, its
/// config's digest, its size, the manifest).
async fn registry_manifest(reference: &str) -> (String, String, u64, Value) {
    let raw = skopeo::inspect_raw(reference, None).await.unwrap();
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
    (
        Digest::of(&raw).to_string(),
        config,
        raw.len() as u64,
        manifest,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_push_to_several_tags_uploads_once_and_metadata_matches_the_registry() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let ws = Workspace::new();
    copy_context(&ws);
    let tags = [
        format!("{}/team/app:v1", registry.host),
        format!("{}/team/app:latest", registry.host),
        format!("{}/other/app:v1", registry.host),
    ];
    let out = dockless(
        &ws,
        &[
            "build",
            "ctx",
            "-t",
            &tags[0],
            "--tag",
            &tags[1],
            "-t",
            &tags[2],
            "--push",
            "--iidfile",
            "iid",
            "--metadata-file",
            "meta.json",
            "--json",
        ],
    );
    let json = json_of(&out);
    let push = &json["push"];
    assert_eq!(
        push["uploadedBlobs"], 2,
        "config and layer uploaded once over three tags: {push}"
    );
    assert_eq!(push["references"].as_array().unwrap().len(), 3, "{push}");
    assert_eq!(
        push["references"][2]["mountedBlobs"], 2,
        "another repository of the registry gets the blobs mounted: {push}"
    );
    let metadata: Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("meta.json")).unwrap()).unwrap();
    let iid = std::fs::read_to_string(ws.path().join("iid")).unwrap();
    for tag in &tags {
        let (digest, config, size, manifest) = registry_manifest(tag).await;
        assert_eq!(metadata["containerimage.digest"], digest, "{tag}");
        assert_eq!(metadata["containerimage.config.digest"], config, "{tag}");
        let descriptor = &metadata["containerimage.descriptor"];
        assert_eq!(descriptor["digest"], digest);
        assert_eq!(descriptor["size"], size);
        assert_eq!(descriptor["mediaType"], manifest["mediaType"]);
        assert_eq!(
            iid, config,
            "--iidfile holds the image ID (config digest), no newline"
        );
    }
    assert_eq!(metadata["image.name"], tags.join(","));
    assert_eq!(json["digest"], metadata["containerimage.digest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_takes_several_tags_and_output_type_registry_pushes() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let ws = Workspace::new();
    copy_context(&ws);
    let (a, b) = (
        format!("{}/p/app:1", registry.host),
        format!("{}/p/app:2", registry.host),
    );
    let json = json_of(&dockless(
        &ws,
        &["push", "ctx", "-t", &a, "--to", &b, "--json"],
    ));
    assert_eq!(json["uploadedBlobs"], 2, "{json}");
    let (first, ..) = registry_manifest(&a).await;
    let (second, ..) = registry_manifest(&b).await;
    assert_eq!(
        (&first, &second),
        (&json["digest"].as_str().unwrap().to_owned(), &first)
    );

    let c = format!("{}/p/app:3", registry.host);
    let output = format!("type=registry,name={c}");
    let json = json_of(&dockless(
        &ws,
        &["build", "ctx", "--output", &output, "--json"],
    ));
    assert_eq!(json["push"]["uploadedBlobs"], 0, "already there: {json}");
    assert_eq!(registry_manifest(&c).await.0, first);
}

#[test]
fn labels_annotations_and_layout_names_reach_the_image() {
    let ws = Workspace::new();
    copy_context(&ws);
    let json = json_of(&dockless(
        &ws,
        &[
            "build",
            "ctx",
            "-o",
            "out",
            "-t",
            "one",
            "-t",
            "reg.example/x/y:two",
            "--label",
            "org.example.team=ci",
            "--annotation",
            "org.example.a=1",
            "--annotation",
            "manifest:org.example.b=2",
            "--timestamp",
            "1700000000",
            "--network",
            "default",
            "--json",
        ],
    ));
    for name in ["one", "two"] {
        let inspected = skopeo_inspect(&ws.out(), name, &[]);
        assert_eq!(inspected["Labels"]["org.example.team"], "ci", "{inspected}");
        assert_eq!(inspected["Created"], "2023-11-14T22:13:20Z", "--timestamp");
        assert_eq!(inspected["Digest"], json["digest"]);
    }
    let digest: Digest = json["digest"].as_str().unwrap().parse().unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(ws.out().join("blobs/sha256").join(digest.hex())).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["annotations"]["org.example.a"], "1");
    assert_eq!(manifest["annotations"]["org.example.b"], "2");
}

#[test]
fn output_type_oci_writes_a_tar_archive_of_the_layout() {
    let ws = Workspace::new();
    copy_context(&ws);
    let json = json_of(&dockless(
        &ws,
        &[
            "build",
            "ctx",
            "--output",
            "type=oci,dest=image.tar",
            "-t",
            "v1",
            "--json",
        ],
    ));
    let archive = ws.path().join("image.tar");
    let listing = tool("tar", &["-tf", archive.to_str().unwrap()]);
    assert!(
        listing.contains("index.json") && listing.contains("oci-layout"),
        "{listing}"
    );
    let reference = format!("oci-archive:{}:v1", archive.display());
    let inspected: Value = serde_json::from_str(&tool("skopeo", &["inspect", &reference])).unwrap();
    assert_eq!(inspected["Digest"], json["digest"]);
}

#[test]
fn no_cache_and_no_cache_filter_run_again_what_the_cache_holds() {
    let ws = Workspace::new();
    run_context(&ws);
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "ctx", "--progress", "plain"];
        args.extend_from_slice(extra);
        let out = dockless(&ws, &args);
        assert_success(&out);
        stderr(&out)
    };
    let ran = |log: &str, what: &str| output_line(log, what);
    let first = build(&[]);
    assert!(
        ran(&first, "ran-in-tools") && ran(&first, "ran-in-final"),
        "{first}"
    );
    let cached = build(&[]);
    assert!(
        !ran(&cached, "ran-in-tools") && !ran(&cached, "ran-in-final"),
        "{cached}"
    );
    assert!(cached.contains("CACHED"), "{cached}");
    let again = build(&["--no-cache"]);
    assert!(
        ran(&again, "ran-in-tools") && ran(&again, "ran-in-final"),
        "--no-cache runs every RUN again: {again}"
    );
    let filtered = build(&["--no-cache-filter", "tools"]);
    assert!(ran(&filtered, "ran-in-tools"), "{filtered}");
}

#[test]
fn plain_progress_has_buildkit_steps_and_rawjson_parses() {
    let ws = Workspace::new();
    run_context(&ws);
    let out = dockless(&ws, &["build", "ctx", "--progress=plain"]);
    assert_success(&out);
    let text = stderr(&out);
    for expected in [
        "#1 [internal] load build definition from Dockerfile",
        "[tools 1/3] FROM oci:",
        "[tools 3/3] RUN echo ran-in-tools",
        "[stage-1 2/2] RUN echo ran-in-final; echo to-stderr >&2",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    let prefixed = output_line(&text, "ran-in-final");
    assert!(prefixed, "RUN output is `#N SECONDS line`:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with('#') && l.contains(" DONE ") && l.ends_with('s')),
        "{text}"
    );
    // Cached now; BUILDKIT_PROGRESS chooses the mode without the flag.
    let out = ws
        .dockless()
        .args(["build", "ctx"])
        .env("BUILDKIT_PROGRESS", "rawjson")
        .output()
        .unwrap();
    assert_success(&out);
    let events: Vec<Value> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.iter().any(|e| e["event"] == "cached"), "{events:?}");
    assert!(
        events.iter().any(|e| e["event"] == "started"
            && e["name"]
                .as_str()
                .unwrap()
                .contains("RUN echo ran-in-final")),
        "{events:?}"
    );
}

/// A line `#N S.SSS <text>`.
fn output_line(text: &str, line_text: &str) -> bool {
    text.lines().any(|line| {
        let mut words = line.splitn(3, ' ');
        let (Some(step), Some(time), Some(rest)) = (words.next(), words.next(), words.next())
        else {
            return false;
        };
        step.starts_with('#')
            && step[1..].parse::<u32>().is_ok()
            && time.parse::<f64>().is_ok()
            && time.contains('.')
            && rest == line_text
    })
}

#[test]
fn quiet_prints_the_digest_alone_and_unused_build_args_get_dockers_warning() {
    let ws = Workspace::new();
    copy_context(&ws);
    let out = dockless(&ws, &["build", "ctx", "-q", "--iidfile", "iid"]);
    assert_success(&out);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.trim().starts_with("sha256:") && printed.lines().count() == 1,
        "{printed}"
    );
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    let out = dockless(
        &ws,
        &[
            "build",
            "ctx",
            "--build-arg",
            "UNUSED=1",
            "--build-arg",
            "HTTP_PROXY=x",
        ],
    );
    assert_success(&out);
    let text = stderr(&out);
    assert!(
        text.contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{text}"
    );
}

/// Runs dockless expecting a usage error (exit 2) whose message says `why`.
fn refused(ws: &Workspace, args: &[&str], why: &str) {
    let out = dockless(ws, args);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
    assert!(text.contains(why), "{args:?}: expected {why:?} in: {text}");
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
}

#[test]
fn flags_without_meaning_here_are_refused_with_a_reason() {
    let ws = Workspace::new();
    copy_context(&ws);
    for (flag, why) in [
        (
            &["--load"][..],
            "--load is not supported: there is no Docker daemon",
        ),
        (&["--add-host", "h:1.2.3.4"], "--add-host is not supported"),
        (&["--ssh", "default"], "--ssh is not supported"),
        (&["--sbom=true"], "--sbom is not supported"),
        (&["--attest", "type=sbom"], "--attest is not supported"),
        (
            &["--build-context", "x=dir"],
            "a directory as a second context is not supported",
        ),
        (&["--builder", "b"], "--builder is not supported"),
        (&["--ulimit", "nofile=1"], "--ulimit is not supported"),
        (&["--shm-size", "1g"], "--shm-size is not supported"),
        (
            &["--allow", "security.insecure"],
            "--allow is not supported",
        ),
        (&["--output", "type=docker"], "there is no Docker daemon"),
        (
            &["--output", "type=local,dest=x"],
            "exporting the file system itself",
        ),
        (
            &["--cache-to", "type=local,dest=x"],
            "type=local is not supported",
        ),
        (
            &["--cache-to", "type=registry,ref=r.example/c:1,mode=min"],
            "mode=min is not supported",
        ),
        (&["--annotation", "index:a=b"], "`index:` is not supported"),
        (&["--push"], "--push needs where to"),
        (&["-t", "demo"], "the image has nowhere to carry that name"),
    ] {
        let mut args = vec!["build", "ctx"];
        args.extend_from_slice(flag);
        refused(&ws, &args, why);
    }
    // --provenance=false asks for nothing dockless would make.
    assert_success(&dockless(
        &ws,
        &["build", "ctx", "--provenance=false", "--pull"],
    ));
    refused(
        &ws,
        &[
            "push",
            "--from",
            "oci:out:t",
            "--to",
            "127.0.0.1:9/x:y",
            "--platform",
            "linux/arm64",
            "--compression",
            "zstd",
            "--build-arg",
            "X=1",
        ],
        "--build-arg, --platform, --compression do not apply with --from",
    );
    // `template build` takes the same names: -f/--file (and its old --dockerfile).
    for file in ["-f", "--file", "--dockerfile"] {
        refused(
            &ws,
            &["template", "build", "ctx", file, "ctx/Dockerfile", "--load"],
            "--load is not supported",
        );
    }
}

#[test]
fn build_contexts_stand_for_images_in_from_and_copy_from() {
    let ws = Workspace::new();
    let base = busybox_base(ws.path());
    let layout = base.strip_prefix("oci:").unwrap();
    ws.write(
        "Dockerfile",
        "FROM toolbox AS tools\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN echo made-over-toolbox > /made\n\
         FROM scratch\n\
         COPY --from=tools /made /made\n\
         COPY --from=toolbox /bin/busybox /bb\n",
    );
    let context = format!("toolbox=oci-layout://{layout}");
    let json = json_of(&dockless(
        &ws,
        &[
            "build",
            "ctx",
            "--build-context",
            &context,
            "-o",
            "out",
            "--json",
        ],
    ));
    assert_eq!(json["layers"].as_array().unwrap().len(), 2, "{json}");
    let (_keep, rootfs) = crate::support::binary::umoci_unpack(&ws.out(), "latest");
    assert_eq!(
        std::fs::read(rootfs.join("bb")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("made")).unwrap(),
        "made-over-toolbox\n"
    );
    // Without it, `toolbox` is an image name that resolves nowhere.
    let out = dockless(&ws, &["build", "ctx"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_flags_take_buildx_registry_form() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let ws = Workspace::new();
    copy_context(&ws);
    let cache = format!(
        "type=registry,ref={}/cache/app:build,mode=max",
        registry.host
    );
    let json = json_of(&dockless(
        &ws,
        &["build", "ctx", "--cache-to", &cache, "--json"],
    ));
    assert_eq!(json["cacheExports"][0]["error"], Value::Null, "{json}");
    assert!(
        json["cacheExports"][0]["entries"].as_u64().unwrap() >= 1,
        "{json}"
    );
    // Another machine (an empty store) reuses the layer from it.
    let other = Workspace::new();
    copy_context(&other);
    let from = format!("type=registry,ref={}/cache/app:build", registry.host);
    let json = json_of(&dockless(
        &other,
        &[
            "build",
            "ctx",
            "--cache-from",
            &from,
            "--progress",
            "plain",
            "--json",
        ],
    ));
    assert!(json["digest"].is_string());
}
