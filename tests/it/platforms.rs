//! Platforms: the automatic platform build arguments, and RUN for a platform this machine
//! cannot run natively (under binfmt_misc emulation, or refused naming what to install).

use std::path::Path;

use crate::support::binary::{Workspace, skopeo_inspect};
use crate::support::registry::{RegistryAuth, TestRegistry};
use crate::support::skopeo;

fn config_of(layout: &Path, tag: &str) -> serde_json::Value {
    skopeo_inspect(layout, tag, &["--config", "--raw"])
}

/// This machine's architecture as `uname -m` names it, in Go's names (the build platform).
pub(crate) fn host_arch() -> String {
    let machine = crate::support::binary::tool("uname", &["-m"]);
    match machine.trim() {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// BuildKit's automatic platform ARGs (moby/buildkit frontend/dockerfile/dockerfile2llb
/// platform.go `defaultArgs`): in FROM lines without a declaration, in a stage once declared
/// with `ARG`; TARGET* from `--platform` normalized as containerd does (`linux/arm64/v8` is
/// `linux/arm64` with no variant: frontend/dockerui/attr.go `parsePlatforms`), BUILD* the host
/// (frontend/dockerui/config.go), and `FROM --platform=$BUILDPLATFORM` runs on the host.
#[test]
fn platform_args_follow_the_target_and_the_host() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch AS pick-arm64\n\
         LABEL picked=arm64\n\
         FROM scratch AS pick-amd64\n\
         LABEL picked=amd64\n\
         FROM --platform=$BUILDPLATFORM scratch AS tools\n\
         LABEL tools=yes\n\
         FROM pick-${TARGETARCH}\n\
         ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT\n\
         ARG BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT\n\
         LABEL target=\"$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT]\" \
               build=\"$BUILDPLATFORM $BUILDOS $BUILDARCH [$BUILDVARIANT]\"\n",
    );
    ws.build_ok(&["--platform", "linux/arm64/v8"]);
    let config = config_of(&ws.out(), "t");
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["picked"], "arm64");
    assert_eq!(labels["target"], "linux/arm64 linux arm64 []");
    let host = host_arch();
    assert_eq!(labels["build"], format!("linux/{host} linux {host} []"));
    // The image keeps the platform as asked.
    assert_eq!(config["architecture"], "arm64");

    // A build for the host: FROM --platform=$BUILDPLATFORM names the host's platform.
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM --platform=$BUILDPLATFORM scratch\nARG TARGETARCH\nLABEL arch=$TARGETARCH\n",
    );
    ws.build_ok(&["--platform", "linux/arm/v7"]);
    let config = config_of(&ws.out(), "t");
    assert_eq!(config["architecture"], host);
    assert_eq!(config["config"]["Labels"]["arch"], "arm");
}

/// Debian's arm64 busybox-static, which scripts/setup.sh puts among the shared fixtures
/// (`apt-get download busybox-static:arm64`, unpacked with dpkg-deb).
pub(crate) fn arm64_busybox() -> std::path::PathBuf {
    let path = crate::support::binary::shared_fixtures().join("busybox-arm64/bin/busybox");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh (it fetches Debian's busybox-static:arm64)",
        path.display()
    );
    path
}

/// The busybox base of fixtures/busybox-base built for linux/arm64 from Debian's arm64 busybox,
/// as `busybox_base` builds the host's: returns `oci:DIR:latest`.
fn arm64_busybox_base(dir: &Path) -> String {
    let context = dir.join("arm64-base-context");
    crate::support::binary::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-base"),
        &context,
    );
    std::fs::copy(arm64_busybox(), context.join("busybox")).unwrap();
    let layout = dir.join("arm64-base");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dockless"))
        .args([
            "build",
            context.to_str().unwrap(),
            "--platform",
            "linux/arm64",
        ])
        .args(["--output", layout.to_str().unwrap()])
        .env("DOCKLESS_CACHE_DIR", dir.join("arm64-base-cache"))
        .output()
        .unwrap();
    crate::support::binary::assert_success(&out);
    format!("oci:{}:latest", layout.display())
}

/// The machine's qemu-aarch64 handler, which the emulated RUN needs (scripts/setup.sh
/// installs qemu-user-static and binfmt-support and mounts binfmt_misc).
pub(crate) fn assert_aarch64_is_emulated() {
    let arm64: dockless_oci::image::Platform = "linux/arm64".parse().unwrap();
    if host_arch() == "arm64" {
        return;
    }
    let execution = dockless_sandbox::emulation::execution(&arm64);
    assert!(
        matches!(
            execution,
            Ok(dockless_sandbox::emulation::Execution::Emulated { .. })
        ),
        "{execution:?}: run scripts/setup.sh (qemu-user-static, binfmt-support, binfmt_misc mounted)"
    );
}

/// RUN for linux/arm64 on this machine runs under binfmt_misc's qemu-aarch64 (registered with
/// the fix-binary flag) inside the same sandbox: `uname -m` there says aarch64.
#[test]
fn run_for_arm64_runs_under_emulation() {
    assert_aarch64_is_emulated();
    let ws = Workspace::new();
    let base = arm64_busybox_base(ws.path());
    ws.write(
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN uname -m > /arch\n",
    );
    let json = ws.build_ok(&[
        "--platform",
        "linux/arm64",
        "--build-arg",
        &format!("BASE={base}"),
    ]);
    assert_eq!(json["platform"], "linux/arm64");
    let inspect = skopeo_inspect(&ws.out(), "t", &[]);
    assert_eq!(inspect["Architecture"], "arm64");
    let (_keep, rootfs) = crate::support::binary::umoci_unpack(&ws.out(), "t");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("arch")).unwrap(),
        "aarch64\n"
    );
}

/// With no emulator registered, the build stops at the first RUN that has to execute, naming
/// the platform and the Debian package. The test points `DOCKLESS_BINFMT_MISC` (the directory
/// dockless reads handlers from) at an empty directory rather than unregistering the
/// machine's handlers, which other tests and programs share; the kernel's own directory
/// holds handlers for almost every architecture once qemu-user-static is installed, so no
/// real platform is left without one here.
#[test]
fn run_for_a_platform_without_an_emulator_is_refused() {
    let ws = Workspace::new();
    let base = arm64_busybox_base(ws.path());
    let empty = ws.path().join("no-binfmt");
    std::fs::create_dir_all(&empty).unwrap();
    ws.write(
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nCOPY Dockerfile /\nRUN [\"/bin/busybox\", \"true\"]\n",
    );
    let mut cmd = ws.dockless();
    cmd.env("DOCKLESS_BINFMT_MISC", &empty)
        .args([
            "build",
            "ctx",
            "--output",
            "out",
            "--platform",
            "linux/arm64",
        ])
        .args(["--build-arg", &format!("BASE={base}")]);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("RUN for linux/arm64: "), "{stderr}");
    assert!(stderr.contains("qemu-user-static"), "{stderr}");
    assert!(stderr.contains("Dockerfile:4"), "{stderr}");
    assert!(!ws.out().exists(), "a refused build leaves no output");
}

/// A busybox base for linux/amd64 and linux/arm64 in one OCI layout with an index, built by a
/// two-platform build that copies `busybox-$TARGETARCH`: returns `oci:DIR:latest`.
pub(crate) fn two_platform_busybox_base(ws: &Workspace) -> String {
    let context = ws.path().join("base-context");
    crate::support::binary::copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-base/rootfs"),
        &context.join("rootfs"),
    );
    std::fs::copy("/bin/busybox", context.join("busybox-amd64")).unwrap();
    std::fs::copy(arm64_busybox(), context.join("busybox-arm64")).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\n\
         COPY --chmod=755 rootfs/etc/ /etc/\nENV PATH=/bin\n",
    )
    .unwrap();
    let out = ws
        .dockless()
        .args([
            "build",
            "base-context",
            "--platform",
            "linux/amd64,linux/arm64",
        ])
        .args(["--output", "base"])
        .output()
        .unwrap();
    crate::support::binary::assert_success(&out);
    format!("oci:{}:latest", ws.path().join("base").display())
}

/// The platform of each entry of an index, and the entries' media types.
fn index_platforms(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

/// `--platform linux/amd64,linux/arm64`: one build per platform, a RUN in each (arm64's under
/// qemu-aarch64 through binfmt_misc), pushed as one OCI image index to the real registry. skopeo
/// reads the index and copies each platform's image (`--override-arch`); umoci unpacks it and
/// its /arch is what `uname -m` said there. The base is itself a two-platform index (a
/// `COPY busybox-$TARGETARCH` build), from which each platform's FROM picks its own image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_platforms_push_one_index_with_each_platforms_run() {
    assert_aarch64_is_emulated();
    assert_eq!(
        host_arch(),
        "amd64",
        "this test builds arm64 under emulation on amd64"
    );
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let ws = Workspace::new();
    let base = two_platform_busybox_base(&ws);
    let base_index = skopeo_inspect(&ws.path().join("base"), "latest", &["--raw"]);
    assert_eq!(
        base_index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index_platforms(&base_index), ["linux/amd64", "linux/arm64"]);

    ws.write(
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN uname -m > /arch\n",
    );
    let target = format!("{}/multi/app:v1", registry.host);
    let out = ws
        .dockless()
        .args(["push", "ctx", "--to", &target, "--json"])
        .args(["--platform", "linux/amd64,linux/arm64", "--build-arg"])
        .arg(format!("BASE={base}"))
        .output()
        .unwrap();
    crate::support::binary::assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let raw = skopeo::inspect_raw(&target, None).await.unwrap();
    assert_eq!(
        json["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(&raw)),
        "the digest printed is the index the registry serves"
    );
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
    for (arch, machine) in [("amd64", "x86_64\n"), ("arm64", "aarch64\n")] {
        let copy = tempfile::tempdir().unwrap();
        let layout = copy.path().join("layout");
        crate::support::binary::tool(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                "--override-arch",
                arch,
                &format!("docker://{target}"),
                &format!("oci:{}:t", layout.display()),
            ],
        );
        let config = config_of(&layout, "t");
        assert_eq!(config["architecture"], arch);
        let (_keep, rootfs) = crate::support::binary::umoci_unpack(&layout, "t");
        assert_eq!(
            std::fs::read_to_string(rootfs.join("arch")).unwrap(),
            machine,
            "{arch}'s RUN ran as {arch}"
        );
    }

    // --format docker: the same builds (cached) indexed by a Docker manifest list.
    let docker = ws
        .dockless()
        .args([
            "build",
            "ctx",
            "--output",
            "docker-out",
            "--format",
            "docker",
        ])
        .args(["--platform", "linux/amd64,linux/arm64", "--build-arg"])
        .arg(format!("BASE={base}"))
        .output()
        .unwrap();
    crate::support::binary::assert_success(&docker);
    // skopeo's oci: transport finds only OCI types by name; the layout is read directly.
    let out_dir = ws.path().join("docker-out");
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("index.json")).unwrap()).unwrap();
    let entry = &top["manifests"][0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let hex = entry["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(index_platforms(&list), ["linux/amd64", "linux/arm64"]);
}

/// The layer digests of `image`'s manifest for each platform of its index, as the registry
/// serves them (skopeo reads them).
async fn layers_by_platform(image: &str) -> Vec<String> {
    let raw = skopeo::inspect_raw(image, None).await.unwrap();
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let repository = image.rsplit_once(':').unwrap().0;
    let mut layers = Vec::new();
    for entry in index["manifests"].as_array().unwrap() {
        let pinned = format!("{repository}@{}", entry["digest"].as_str().unwrap());
        let raw = skopeo::inspect_raw(&pinned, None).await.unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            let digest = layer["digest"].as_str().unwrap().to_owned();
            if !layers.contains(&digest) {
                layers.push(digest);
            }
        }
    }
    layers
}

/// A two-platform push on a two-platform base that lives on the same registry goes up the way
/// one platform's does: each platform's base layers are mounted from the base's repository
/// (or found there), never downloaded: afterwards the store holds none of them and the
/// registry's access log shows no GET of one. Both targets get the index. (The Dockerfile
/// changes only the config: a COPY onto a registry base reads the base's file listing, which
/// fetches its layers once per machine, push or no push.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_platform_push_on_a_registry_base_downloads_no_base_layer() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    // The base, built and pushed by another machine (its own store).
    let elsewhere = Workspace::new();
    let base_layout = two_platform_busybox_base(&elsewhere);
    let base = format!("{}/base/busybox:multi", registry.host);
    let pushed_base = elsewhere
        .dockless()
        .args(["push", "--from", &base_layout, "--to", &base])
        .output()
        .unwrap();
    crate::support::binary::assert_success(&pushed_base);
    let base_layers = layers_by_platform(&base).await;
    assert!(base_layers.len() >= 3, "{base_layers:?}");

    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nARG TARGETARCH\nLABEL arch=$TARGETARCH\nENV ARCH=$TARGETARCH\n",
    );
    let (first, second) = (
        format!("{}/multi/app:v1", registry.host),
        format!("{}/other/app:v2", registry.host),
    );
    let out = ws
        .dockless()
        .args(["push", "ctx", "--to", &first, "--to", &second, "--json"])
        .args(["--platform", "linux/amd64,linux/arm64", "--build-arg"])
        .arg(format!("BASE={base}"))
        .output()
        .unwrap();
    crate::support::binary::assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    for layer in &base_layers {
        let fetched = registry
            .log()
            .lines()
            .filter(|line| line.contains("\"GET /v2/") && line.contains(layer.as_str()))
            .count();
        assert_eq!(
            fetched, 0,
            "base layer {layer} was fetched from the registry"
        );
        let hex = layer.strip_prefix("sha256:").unwrap();
        assert!(
            !ws.cache().join("blobs/sha256").join(hex).exists(),
            "base layer {layer} was downloaded into the store: {json}"
        );
    }
    // The first target mounts each base layer from the base's repository (a layer both
    // platforms share goes once), the second mounts every blob from the first.
    let first_push = &json["push"]["references"][0];
    assert_eq!(first_push["mountedBlobs"], base_layers.len(), "{json}");
    assert_eq!(json["push"]["references"][1]["uploadedBlobs"], 0, "{json}");
    // Both tags name the index printed, and each platform's image is whole (skopeo copies
    // and verifies every blob) with its own file.
    for target in [&first, &second] {
        let raw = skopeo::inspect_raw(target, None).await.unwrap();
        assert_eq!(
            json["digest"].as_str().unwrap(),
            format!("sha256:{}", sha256_hex(&raw)),
            "{target}"
        );
    }
    let copy = tempfile::tempdir().unwrap();
    let layout = copy.path().join("layout");
    crate::support::binary::tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--override-arch",
            "arm64",
            &format!("docker://{second}"),
            &format!("oci:{}:t", layout.display()),
        ],
    );
    assert_eq!(config_of(&layout, "t")["config"]["Labels"]["arch"], "arm64");
    let (_keep, rootfs) = crate::support::binary::umoci_unpack(&layout, "t");
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "the base's layers are there"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    dockless_oci::digest::Digest::of(bytes).hex().to_owned()
}

/// A base without one of the platforms asked for is refused naming the platforms it has, and
/// nothing is written.
#[test]
fn a_base_without_a_platform_is_refused_naming_what_it_has() {
    let ws = Workspace::new();
    let base = crate::support::binary::busybox_base(ws.path());
    ws.write("Dockerfile", "ARG BASE\nFROM $BASE\nENV A=1\n");
    let message = ws.build_err(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "--build-arg",
        &format!("BASE={base}"),
    ]);
    assert!(
        message.contains("no image for platform linux/arm64; it has: linux/amd64"),
        "{message}"
    );
}

/// A two-platform build walks the context once for both platforms (dockless_context's
/// `sharing_walks`) and the second platform finds the first's COPY layers in the layer cache:
/// each platform's image is still exactly what a build for that platform alone makes.
#[test]
fn a_two_platform_build_makes_what_each_platform_alone_makes() {
    let write = |ws: &Workspace| {
        ws.write(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY app/ /app/\nLABEL arch=$TARGETARCH\n\
             COPY app/sub /again/\nCOPY --chmod=700 app/a.txt /a-$TARGETARCH\n",
        );
        ws.write("app/a.txt", "a\n");
        ws.write("app/sub/b.txt", "b\n");
    };
    let both = Workspace::new();
    write(&both);
    let json = both.build_ok(&["--platform", "linux/amd64,linux/arm64"]);
    for (i, platform) in ["linux/amd64", "linux/arm64"].into_iter().enumerate() {
        let alone = Workspace::new();
        write(&alone);
        let single = alone.build_ok(&["--platform", platform]);
        let built = &json["platforms"][i];
        assert_eq!(built["platform"], platform, "{json}");
        assert_eq!(built["layers"], single["layers"], "{platform}");
        assert_eq!(built["digest"], single["digest"], "{platform}");
    }
}
