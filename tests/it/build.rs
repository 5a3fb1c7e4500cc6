//! `dockless build`: fixture contexts built by the real binary, checked with skopeo and umoci.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use crate::support::binary::{
    Workspace, assert_success, busybox_base, copy_tree, needs_root, skopeo_inspect, tool,
    umoci_unpack,
};

/// The image config exactly as stored (skopeo's parsed view drops Docker-only fields such as
/// Healthcheck, OnBuild and Shell).
fn config_of(layout: &Path, tag: &str) -> serde_json::Value {
    skopeo_inspect(layout, tag, &["--config", "--raw"])
}

/// A blob of a layout, by digest.
fn blob(layout: &Path, digest: &serde_json::Value) -> Vec<u8> {
    let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
    fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

#[test]
fn example_template_builds_and_other_tools_read_it() {
    let ws = Workspace::new();
    let base = busybox_base(ws.path());
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/example"),
        &ws.context(),
    );
    let json = ws.build_ok(&["--build-arg", &format!("BASE={base}")]);

    let inspect = skopeo_inspect(&ws.out(), "t", &[]);
    assert_eq!(inspect["Digest"], json["digest"]);
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), layers.len());

    let config = config_of(&ws.out(), "t");
    let c = &config["config"];
    assert_eq!(c["User"], "user");
    assert_eq!(c["WorkingDir"], "/home/user/app");
    assert_eq!(c["Cmd"], serde_json::json!(["/usr/local/bin/start.sh"]));
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{c}");
    assert_eq!(
        c["Labels"]["org.opencontainers.image.title"],
        "dockless example"
    );
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"APP_HOME=/home/user/app"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        layers.len()
    );
    for (layer, diff_id) in layers
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        assert_eq!(&layer["diffId"], diff_id);
    }

    let (_keep, rootfs) = umoci_unpack(&ws.out(), "t");
    let app = rootfs.join("home/user/app");
    assert!(app.join("index.html").is_file());
    assert!(!app.join("debug.log").exists(), ".dockerignore **/*.log");
    assert!(
        !app.join("tmp/scratch.txt").exists(),
        ".dockerignore app/tmp"
    );
    assert!(
        app.join("tmp/keep.txt").is_file(),
        ".dockerignore exception"
    );
    let start = rootfs.join("usr/local/bin/start.sh");
    assert_eq!(
        fs::metadata(&start).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert!(rootfs.join("bin/busybox").is_file(), "base layer present");
    if needs_root("owners by name are set only when the unpacking runs as root") {
        let meta = fs::metadata(app.join("index.html")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (1000, 1000),
            "--chown=user:user from the base's /etc/passwd"
        );
        assert_eq!(fs::metadata(&start).unwrap().uid(), 0);
    }
}

#[test]
fn same_context_elsewhere_with_other_mtimes_gives_the_same_digests() {
    let make = |ws: &Workspace| {
        ws.write("Dockerfile", "FROM scratch\nCOPY . /data/\nENV A=1\n");
        ws.write("a.txt", "alpha\n");
        ws.write("dir/b.txt", "beta\n");
        ws.write("dir/sub/c.bin", vec![7u8; 100_000]);
    };
    let first = Workspace::new();
    make(&first);
    let second = Workspace::new();
    make(&second);
    let old = filetime_set(&second.context().join("a.txt"));
    assert!(old);
    let a = first.build_ok(&[]);
    let b = second.build_ok(&[]);
    assert_eq!(a["digest"], b["digest"]);
    assert_eq!(a["layers"], b["layers"]);
    // And again in the same workspace with a warm cache.
    fs::remove_dir_all(first.out()).unwrap();
    assert_eq!(first.build_ok(&[])["digest"], a["digest"]);
}

/// Sets a file's mtime to 2001 with `touch`, returning whether it worked.
fn filetime_set(path: &Path) -> bool {
    std::process::Command::new("touch")
        .args(["-d", "2001-01-01T00:00:00Z"])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Guards against drift in tar writing, compression or JSON: this digest changes only when the
/// bytes dockless produces change, which must be a deliberate decision (it changes every
/// user's image digests).
#[test]
fn golden_digest_of_a_fixed_context() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY --chmod=700 bin/ /usr/local/bin/\nENV GREETING=hello\nCMD [\"/usr/local/bin/run\"]\n",
    );
    ws.write("hello.txt", "hello, world\n");
    ws.write("bin/run", "#!/bin/sh\necho run\n");
    let json = ws.build_ok(&[]);
    let layers: Vec<&str> = json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diffId"].as_str().unwrap())
        .collect();
    insta_like(
        "golden",
        &format!(
            "{}\n{}",
            json["digest"].as_str().unwrap(),
            layers.join("\n")
        ),
        "sha256:GOLDEN",
    );
}

/// A layer must be the same bytes on every machine, since its digest names it, while zlib-rs
/// (deflate and CRC-32), zstd and sha2 pick their code at run time by CPU: AVX2, BMI2,
/// PCLMULQDQ, SHA and SSE4.2 here. The same context is built again by this binary under qemu emulating the
/// plain x86-64 CPU (`-cpu qemu64`, none of those), where every one of them takes its portable
/// path, and the image must come out the same, with gzip and with zstd: text long enough to be
/// deflated with matches and a sliding window, random windows stored, small files.
#[test]
#[cfg_attr(
    not(target_arch = "x86_64"),
    ignore = "emulates a plain x86-64 CPU with qemu-x86_64, for an x86-64 build of dockless"
)]
fn a_cpu_without_simd_extensions_gives_the_same_bytes() {
    let qemu = "qemu-x86_64-static";
    let found = std::process::Command::new(qemu).arg("--version").output();
    assert!(
        found.is_ok_and(|out| out.status.success()),
        "{qemu} is missing: install qemu-user-static (scripts/setup.sh does)"
    );
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY . /data/\n");
    let mut rng = fastrand::Rng::with_seed(20261207);
    let words = [
        "layer ", "digest ", "return ", "buffer", ";\n", "    ", "fn ", "self",
    ];
    let text: String = (0..260_000)
        .map(|_| words[rng.usize(..words.len())])
        .collect();
    ws.write("text.txt", &text);
    let random: Vec<u8> = (0..300_000).map(|_| rng.u8(..)).collect();
    ws.write("random.bin", &random);
    for i in 0..20 {
        ws.write(
            &format!("small/{i}.txt"),
            format!("file {i}\n").repeat(i + 1),
        );
    }
    assert!(text.len() > 1 << 20, "the text fills more than one block");
    // zstd too: its library has code of its own for BMI2.
    for compression in ["gzip", "zstd"] {
        let native = ws.build_ok(&["--compression", compression]);
        fs::remove_dir_all(ws.out()).unwrap();
        fs::remove_dir_all(ws.cache()).unwrap();
        let out = ws
            .dockless_under(&[qemu, "-cpu", "qemu64"])
            .args(["build", "ctx", "--output", "out", "--tag", "t", "--json"])
            .args(["--compression", compression])
            .output()
            .unwrap();
        assert_success(&out);
        let emulated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(emulated["layers"], native["layers"], "{compression}");
        assert_eq!(emulated["digest"], native["digest"], "{compression}");
        fs::remove_dir_all(ws.out()).unwrap();
        fs::remove_dir_all(ws.cache()).unwrap();
    }
}

/// Compares with the expected golden text; prints the actual one so that a deliberate change
/// can be recorded.
fn insta_like(name: &str, actual: &str, expected: &str) {
    let golden_file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/golden")
        .join(format!("{name}.txt"));
    let expected = fs::read_to_string(&golden_file).unwrap_or_else(|_| expected.to_owned());
    assert_eq!(
        actual.trim(),
        expected.trim(),
        "golden digests changed; if that is deliberate, update {}",
        golden_file.display()
    );
}

#[test]
fn copy_rules_directories_files_globs_and_destinations() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        r#"FROM scratch
WORKDIR /w
COPY dir /contents-of-dir/
COPY file.txt renamed.txt
COPY file.txt *.md sub/
COPY ["with space.txt", "/spaced dir/"]
ADD file.txt /added/
"#,
    );
    ws.write("dir/x/y.txt", "y");
    ws.write("dir/top.txt", "top");
    ws.write("file.txt", "file");
    ws.write("a.md", "a");
    ws.write("b.md", "b");
    ws.write("with space.txt", "space");
    ws.build_ok(&[]);
    let (_k, root) = umoci_unpack(&ws.out(), "t");
    assert_eq!(
        fs::read_to_string(root.join("contents-of-dir/x/y.txt")).unwrap(),
        "y"
    );
    assert!(root.join("contents-of-dir/top.txt").is_file());
    assert!(
        !root.join("contents-of-dir/dir").exists(),
        "a directory source copies its contents"
    );
    assert_eq!(
        fs::read_to_string(root.join("w/renamed.txt")).unwrap(),
        "file"
    );
    assert!(
        root.join("w/sub/file.txt").is_file()
            && root.join("w/sub/a.md").is_file()
            && root.join("w/sub/b.md").is_file()
    );
    assert!(root.join("spaced dir/with space.txt").is_file());
    assert!(root.join("added/file.txt").is_file());
    let mode = fs::metadata(root.join("contents-of-dir/x"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o755);
}

#[test]
fn several_sources_into_a_path_without_slash_go_as_buildkit_copies_them() {
    // BuildKit copies each source on its own (fsutil's prepareTargetDir): two files into
    // `/dest` leave the last one there, with a warning here; a directory's content makes
    // `/dest` a directory, and a file after it goes inside.
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY a b /dest\nCOPY d c /merged\n",
    );
    ws.write("a", "a");
    ws.write("b", "b");
    ws.write("c", "c");
    ws.write("d/inside", "inside");
    let out = ws
        .dockless()
        .args(["build", "ctx", "--output", "out", "--tag", "t"])
        .output()
        .unwrap();
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("each replaces the one before"), "{stderr}");
    let tree = unpacked_tree(&ws);
    assert_eq!(tree.get("dest").map(String::as_str), Some("b"));
    assert_eq!(
        tree.get("merged/inside").map(String::as_str),
        Some("inside")
    );
    assert_eq!(tree.get("merged/c").map(String::as_str), Some("c"));
}

#[test]
fn symlinks_stay_links_inside_and_never_lead_outside() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY tree /tree/\nCOPY link-to-file /followed\n",
    );
    ws.write("tree/real.txt", "real");
    symlink("real.txt", ws.context().join("tree/rel-link")).unwrap();
    symlink("/etc/passwd", ws.context().join("tree/abs-link")).unwrap();
    ws.write("file.txt", "target");
    symlink("file.txt", ws.context().join("link-to-file")).unwrap();
    ws.build_ok(&[]);
    let (_k, root) = umoci_unpack(&ws.out(), "t");
    assert_eq!(
        fs::read_link(root.join("tree/rel-link")).unwrap().to_str(),
        Some("real.txt")
    );
    assert_eq!(
        fs::read_link(root.join("tree/abs-link")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    let followed = root.join("followed");
    assert!(
        fs::symlink_metadata(&followed).unwrap().is_file(),
        "a top-level symlink source is followed"
    );
    assert_eq!(fs::read_to_string(followed).unwrap(), "target");

    let escape = Workspace::new();
    escape.write("Dockerfile", "FROM scratch\nCOPY outside /x\n");
    symlink("/etc/hostname", escape.context().join("outside")).unwrap();
    let err = escape.build_err(&[]);
    assert!(err.contains("outside the build context"), "{err}");

    let dotdot = Workspace::new();
    dotdot.write("Dockerfile", "FROM scratch\nCOPY ../secret /x\n");
    let err = dotdot.build_err(&[]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("outside the build context"),
        "{err}"
    );
}

#[test]
fn long_names_unicode_and_hardlinks() {
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY . /data/\n");
    let long_dir = "d".repeat(120);
    let long_name = format!("{long_dir}/{}", "f".repeat(150));
    ws.write(&long_name, "long");
    ws.write("ünïcødé/日本語.txt", "unicode");
    ws.write("hard/a.txt", "shared");
    fs::hard_link(
        ws.context().join("hard/a.txt"),
        ws.context().join("hard/b.txt"),
    )
    .unwrap();
    symlink(
        format!("../{long_name}"),
        ws.context().join("hard/long-link"),
    )
    .unwrap();
    ws.build_ok(&[]);
    let (_k, root) = umoci_unpack(&ws.out(), "t");
    assert_eq!(
        fs::read_to_string(root.join("data").join(&long_name)).unwrap(),
        "long"
    );
    assert_eq!(
        fs::read_to_string(root.join("data/ünïcødé/日本語.txt")).unwrap(),
        "unicode"
    );
    let a = fs::metadata(root.join("data/hard/a.txt")).unwrap();
    let b = fs::metadata(root.join("data/hard/b.txt")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard links stay hard links");
    assert_eq!(
        fs::read_link(root.join("data/hard/long-link"))
            .unwrap()
            .to_str()
            .unwrap(),
        format!("../{long_name}")
    );
}

#[test]
fn add_extracts_local_archives_of_every_compression() {
    let ws = Workspace::new();
    ws.write("payload/inner/file.txt", "inside");
    let ctx = ws.context();
    tool(
        "tar",
        &[
            "-C",
            ctx.join("payload").to_str().unwrap(),
            "-cf",
            ctx.join("a.tar").to_str().unwrap(),
            ".",
        ],
    );
    for (flag, ext) in [
        ("-z", "tar.gz"),
        ("-j", "tar.bz2"),
        ("-J", "tar.xz"),
        ("--zstd", "tar.zst"),
    ] {
        let out = ctx.join(format!("a.{ext}"));
        tool(
            "tar",
            &[
                "-C",
                ctx.join("payload").to_str().unwrap(),
                flag,
                "-cf",
                out.to_str().unwrap(),
                ".",
            ],
        );
    }
    ws.write("plain.gz", b"\x1f\x8b not really gzip");
    ws.write(
        "Dockerfile",
        "FROM scratch\nADD a.tar /tar/\nADD a.tar.gz /gz\nADD a.tar.bz2 /bz2/\nADD a.tar.xz /xz/\nADD a.tar.zst /zst/\nADD plain.gz /plain/\n",
    );
    ws.build_ok(&[]);
    let (_k, root) = umoci_unpack(&ws.out(), "t");
    for dir in ["tar", "gz", "bz2", "xz", "zst"] {
        assert_eq!(
            fs::read_to_string(root.join(dir).join("inner/file.txt")).unwrap(),
            "inside",
            "{dir}"
        );
    }
    assert!(
        root.join("plain/plain.gz").is_file(),
        "a file that is not an archive is copied as is"
    );
}

/// `ADD --unpack` as BuildKit's convert_copy.go reads it: a context archive is unpacked unless
/// `--unpack=false`; a download is not, unless `--unpack=true`. A git repository is refused by
/// name (dockless does not clone), where it once was fetched as a plain download.
#[test]
fn add_unpack_decides_for_context_archives_and_downloads_and_git_is_refused() {
    let ws = Workspace::new();
    ws.write("payload/inner/file.txt", "inside");
    let ctx = ws.context();
    let payload = ctx.join("payload");
    tool(
        "tar",
        &[
            "-C",
            payload.to_str().unwrap(),
            "-czf",
            ctx.join("a.tar.gz").to_str().unwrap(),
            ".",
        ],
    );
    let archive: &'static [u8] =
        Box::leak(fs::read(ctx.join("a.tar.gz")).unwrap().into_boxed_slice());
    let url = serve(archive, 2);
    ws.write(
        "Dockerfile",
        format!(
            "FROM scratch\nADD --unpack=false a.tar.gz /kept/\nADD a.tar.gz /opened/\n\
             ADD {url}/dl/a.tar.gz /downloaded/\nADD --unpack=true {url}/dl/a.tar.gz /unpacked/\n"
        ),
    );
    ws.build_ok(&[]);
    let (_k, root) = umoci_unpack(&ws.out(), "t");
    assert_eq!(fs::read(root.join("kept/a.tar.gz")).unwrap(), archive);
    assert_eq!(
        fs::read_to_string(root.join("opened/inner/file.txt")).unwrap(),
        "inside"
    );
    assert_eq!(fs::read(root.join("downloaded/a.tar.gz")).unwrap(), archive);
    assert_eq!(
        fs::read_to_string(root.join("unpacked/inner/file.txt")).unwrap(),
        "inside"
    );
    assert!(!root.join("unpacked/a.tar.gz").exists());

    for git in [
        "https://github.com/moby/buildkit.git#v0.12.0",
        "git@github.com:moby/buildkit.git",
    ] {
        let ws = Workspace::new();
        ws.write("Dockerfile", format!("FROM scratch\nADD {git} /src/\n"));
        let err = ws.build_err(&[]);
        assert!(
            err.contains("Dockerfile:2") && err.contains(git) && err.contains("git repository"),
            "{err}"
        );
    }
}

#[test]
fn metadata_instructions_land_in_the_config() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        r#"# escape=\
ARG VERSION=1.0
FROM scratch
ARG VERSION
ARG UNSET
ENV A=1 B=${VERSION}
ENV A=2 C=$A
LABEL version="$VERSION" "two words"=yes
SHELL ["/bin/bash", "-lc"]
CMD echo hi
ENTRYPOINT ["/entry"]
CMD ["arg"]
EXPOSE 80 53/udp
VOLUME ["/data", "/cache"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --retries=3 CMD curl -f http://localhost/ || exit 1
ONBUILD COPY . /app
USER 1000:1000
WORKDIR /srv
WORKDIR app
MAINTAINER someone
"#,
    );
    ws.build_ok(&["--build-arg", "VERSION=2.5"]);
    let config = config_of(&ws.out(), "t");
    let c = &config["config"];
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"A=2") && env.contains(&"B=2.5") && env.contains(&"C=1"),
        "{env:?}"
    );
    assert_eq!(c["Labels"]["version"], "2.5");
    assert_eq!(c["Labels"]["two words"], "yes");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/entry"]));
    assert_eq!(c["Cmd"], serde_json::json!(["arg"]));
    assert!(c["ExposedPorts"].get("80/tcp").is_some() && c["ExposedPorts"].get("53/udp").is_some());
    assert!(c["Volumes"].get("/data").is_some());
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "curl -f http://localhost/ || exit 1"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(c["Healthcheck"]["Retries"], 3);
    assert_eq!(c["OnBuild"], serde_json::json!(["COPY . /app"]));
    assert_eq!(c["Shell"], serde_json::json!(["/bin/bash", "-lc"]));
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(config["author"], "someone");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let history = config["history"].as_array().unwrap();
    assert!(history.iter().any(|h| {
        h["created_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("ENV A=2")
    }));
}

#[test]
fn shell_form_cmd_uses_shell_and_source_date_epoch_sets_times() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nSHELL [\"/bin/ash\", \"-c\"]\nCMD echo $HOME\n",
    );
    let out = ws
        .dockless()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "ctx", "--output", "out", "--tag", "t"])
        .output()
        .unwrap();
    crate::support::binary::assert_success(&out);
    let config = config_of(&ws.out(), "t");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/ash", "-c", "echo $HOME"])
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn docker_format_uses_docker_media_types_only() {
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY f /f\n");
    ws.write("f", "x");
    let json = ws.build_ok(&["--format", "docker"]);
    assert_eq!(
        json["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    // skopeo and umoci read only OCI manifests from a layout; the Docker form is for registries.
    let raw = String::from_utf8(blob(&ws.out(), &json["digest"])).unwrap();
    assert!(
        !raw.contains("vnd.oci"),
        "no OCI media type in a Docker manifest: {raw}"
    );
    assert!(
        raw.contains("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{raw}"
    );
    assert!(
        raw.contains("application/vnd.docker.container.image.v1+json"),
        "{raw}"
    );
}

#[test]
fn zstd_layers_are_readable() {
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY f /f\n");
    ws.write("f", "zstd content");
    let json = ws.build_ok(&["--compression", "zstd"]);
    assert_eq!(
        json["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // umoci 0.4 cannot read zstd layers: check with the zstd and tar tools instead.
    let layer = ws.path().join("layer.tar.zst");
    fs::write(&layer, blob(&ws.out(), &json["layers"][0]["digest"])).unwrap();
    let listing = tool("tar", &["--zstd", "-tvf", layer.to_str().unwrap()]);
    assert!(
        listing.contains(" f\n") || listing.ends_with(" f"),
        "{listing}"
    );
    let unpacked = tool("tar", &["--zstd", "-xOf", layer.to_str().unwrap(), "f"]);
    assert_eq!(unpacked, "zstd content");
    skopeo_inspect(&ws.out(), "t", &[]);
}

#[test]
fn bad_inputs_give_one_clear_message_and_no_output() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "FROM scratch\nCOPY missing.txt /x\n",
            "missing.txt",
            &["Dockerfile:2", "not found"],
        ),
        (
            "FROM scratch\nFROBNICATE x\n",
            "",
            &["Dockerfile:2", "FROBNICATE"],
        ),
        (
            "FROM scratch\nRUN echo hi\n",
            "",
            &["Dockerfile:2", "cannot execute /bin/sh", "exec form"],
        ),
        (
            "FROM scratch AS one\nFROM scratch\nCOPY --from=3 /a /b\n",
            "",
            &["Dockerfile:3", "no earlier stage number 3"],
        ),
        (
            "FROM scratch AS one\nCOPY --from=oci:nowhere /a /b\n",
            "",
            &["Dockerfile:2", "--from=oci:nowhere", "named stages: none"],
        ),
        (
            "FROM scratch\nSHELL /bin/sh\n",
            "",
            &["Dockerfile:2", "SHELL"],
        ),
        ("COPY a /a\n", "", &["Dockerfile:1", "FROM"]),
        (
            "FROM oci:does-not-exist\n",
            "",
            &["Dockerfile:1", "not an OCI image layout"],
        ),
        (
            "FROM example.com/some/image:1\n",
            "",
            &["Dockerfile:1", "registry"],
        ),
        (
            "FROM scratch\nENV X=${MISSING:?required}\n",
            "",
            &["Dockerfile:2", "MISSING"],
        ),
        (
            "FROM scratch\nCOPY --chown=nobody f /f\n",
            "",
            &["Dockerfile:2", "nobody", "numeric"],
        ),
        (
            "FROM scratch\nCOPY --chmod=abc f /f\n",
            "",
            &["Dockerfile:2", "--chmod=abc"],
        ),
        (
            "FROM scratch\nEXPOSE 99999\n",
            "",
            &["Dockerfile:2", "99999"],
        ),
    ];
    for (dockerfile, _, needles) in cases {
        let ws = Workspace::new();
        ws.write("Dockerfile", dockerfile);
        ws.write("f", "f");
        let err = ws.build_err(&[]);
        for needle in *needles {
            assert!(
                err.contains(needle),
                "{dockerfile:?}: expected {needle:?} in {err}"
            );
        }
        // Plain progress (stderr is no terminal here) names the steps before the message.
        let message: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(message.len(), 1, "one message: {err}");
    }
}

#[test]
fn garbage_dockerfile_and_missing_context_fail_cleanly() {
    let ws = Workspace::new();
    ws.write("Dockerfile", [0xffu8, 0xfe, 0x00, 0x41]);
    let err = ws.build_err(&[]);
    assert!(err.contains("Dockerfile") && err.contains("UTF-8"), "{err}");

    let ws = Workspace::new();
    let out = ws
        .dockless()
        .args(["build", "no-such-dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-dir"));

    let ws = Workspace::new();
    ws.write("README", "no dockerfile here");
    let err = ws.build_err(&[]);
    assert!(err.contains("no Dockerfile") && err.contains("-f"), "{err}");

    let out = ws
        .dockless()
        .args(["build", "--frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn fifo_in_the_context_does_not_hang_the_build() {
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY . /ctx/\n");
    ws.write("file", "x");
    tool("mkfifo", &[ws.context().join("pipe").to_str().unwrap()]);
    ws.build_ok(&[]);
    let (_k, root) = umoci_unpack(&ws.out(), "t");
    assert!(root.join("ctx/file").is_file());
}

#[test]
fn e2b_toml_names_the_dockerfile_and_e2b_dockerfile_wins_over_dockerfile() {
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nLABEL which=plain\n");
    ws.write("e2b.Dockerfile", "FROM scratch\nLABEL which=e2b\n");
    ws.build_ok(&[]);
    assert_eq!(
        config_of(&ws.out(), "t")["config"]["Labels"]["which"],
        "e2b"
    );
    ws.write("e2b.toml", "dockerfile = \"custom.Dockerfile\"\n");
    ws.write("custom.Dockerfile", "FROM scratch\nLABEL which=custom\n");
    ws.build_ok(&[]);
    assert_eq!(
        config_of(&ws.out(), "t")["config"]["Labels"]["which"],
        "custom"
    );
    ws.build_ok(&["-f", "ctx/Dockerfile"]);
    assert_eq!(
        config_of(&ws.out(), "t")["config"]["Labels"]["which"],
        "plain"
    );
    ws.write("e2b.toml", "dockerfile = [1]\n");
    fs::remove_dir_all(ws.out()).unwrap();
    let err = ws.build_err(&[]);
    assert!(err.contains("e2b.toml"), "{err}");
}

#[test]
fn workdir_and_copy_do_not_rewrite_directories_of_the_base() {
    let ws = Workspace::new();
    let base = busybox_base(ws.path());
    ws.write(
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nWORKDIR /etc\nCOPY f /etc/f\nWORKDIR /new/dir\n",
    );
    ws.write("f", "x");
    let json = ws.build_ok(&["--build-arg", &format!("BASE={base}")]);
    let new_layers: Vec<_> = json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["fromBase"] == false)
        .collect();
    assert_eq!(
        new_layers.len(),
        2,
        "WORKDIR /etc exists in the base: no layer; COPY and WORKDIR /new/dir: one each"
    );
    let blob = ws.out().join("blobs/sha256").join(
        new_layers[0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let listing = tool("tar", &["-tzvf", blob.to_str().unwrap()]);
    assert!(
        !listing.contains(" etc/\n"),
        "the base's /etc is not rewritten: {listing}"
    );
    assert!(listing.contains("etc/f"), "{listing}");
}

/// Serves `body` over plain HTTP on loopback for `requests` requests; returns the base URL.
fn serve(body: &'static [u8], requests: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_url_downloads_and_checks_the_checksum() {
    const BODY: &[u8] = b"downloaded bytes\n";
    let url = serve(BODY, 2);
    let good = format!("sha256:{}", sha256_hex(BODY));
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        format!("FROM scratch\nADD --checksum={good} {url}/files/tool.txt /opt/\n"),
    );
    ws.build_ok(&[]);
    let (_k, root) = umoci_unpack(&ws.out(), "t");
    let fetched = root.join("opt/tool.txt");
    assert_eq!(fs::read(&fetched).unwrap(), BODY);
    assert_eq!(
        fs::metadata(&fetched).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let bad = format!("sha256:{}", "0".repeat(64));
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        format!("FROM scratch\nADD --checksum={bad} {url}/files/tool.txt /opt/\n"),
    );
    let err = ws.build_err(&[]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("checksum mismatch"),
        "{err}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    dockless_oci::digest::Digest::of(bytes).hex().to_owned()
}

#[test]
fn add_refuses_archives_that_climb_out() {
    let ws = Workspace::new();
    let ctx = ws.context();
    // A tar entry named `../../escaped.txt`, written by hand: the tar crate's builder refuses
    // such names.
    let data = b"evil";
    let mut header = tar::Header::new_ustar();
    header.set_path("placeholder").unwrap();
    let name = b"../../escaped.txt";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().name[name.len()..].fill(0);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let mut archive = tar::Builder::new(Vec::new());
    archive.append(&header, &data[..]).unwrap();
    fs::write(ctx.join("evil.tar"), archive.into_inner().unwrap()).unwrap();
    ws.write("Dockerfile", "FROM scratch\nADD evil.tar /x/\n");
    let err = ws.build_err(&[]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("evil.tar"),
        "{err}"
    );
    assert!(!ws.path().join("escaped.txt").exists() && !ws.context().join("escaped.txt").exists());
}

#[test]
fn the_layer_cache_reuses_unchanged_layers_and_never_serves_stale_ones() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
    );
    ws.write("a.txt", "aaaa");
    ws.write("b.txt", "bbbb");
    let first = ws.build_ok(&[]);
    let out = ws
        .dockless()
        .args(["-vv", "build", "ctx"])
        .output()
        .unwrap();
    crate::support::binary::assert_success(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("layer cache hit").count(), 2, "{log}");

    // Same size, new bytes: the cache must notice.
    ws.write("b.txt", "BBBB");
    let changed = ws.build_ok(&[]);
    assert_ne!(changed["digest"], first["digest"]);
    assert_eq!(
        changed["layers"][0], first["layers"][0],
        "the unchanged layer is the same"
    );
    ws.write("b.txt", "bbbb");
    assert_eq!(ws.build_ok(&[])["digest"], first["digest"]);
}

/// The build is frozen (SIGSTOP) once its layer is being written, given SIGINT, and let go:
/// the signal always lands mid-write, never after a build that was quicker than the test.
#[test]
fn interrupting_a_build_leaves_no_temporary_files() {
    use crate::cancel::{Running, tmp_entries};
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY big.bin /big.bin\n");
    let mut data = Vec::with_capacity(96 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while data.len() < 96 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    ws.write("big.bin", &data);
    let mut command = ws.dockless();
    command.args(["build", "ctx", "--output", "out"]);
    let mut build = Running::start(command);
    let cache = ws.cache();
    build.wait_until("a layer being written", |_| {
        tmp_entries(&cache)
            .iter()
            .any(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 1 << 20))
    });
    build.signal(libc::SIGSTOP);
    assert!(
        build.child.try_wait().unwrap().is_none(),
        "the build ended before it was frozen mid-write: {}",
        build.stderr()
    );
    build.signal(libc::SIGINT);
    build.signal(libc::SIGCONT);
    let (status, stderr) = build.finish(std::time::Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "interrupted mid-write: {stderr}");
    let tmp = ws.cache().join("tmp");
    let leftovers: Vec<_> = fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(!ws.out().exists());
    let staged: Vec<_> = fs::read_dir(ws.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".dockless-"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn build_help_offers_upload_flags_for_push() {
    let ws = Workspace::new();
    let help = |command: &str| {
        let out = ws.dockless().args([command, "--help"]).output().unwrap();
        assert_success(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let build = help("build");
    assert!(build.contains("--insecure-registry"), "{build}");
    let push = help("push");
    // `build --push` pushes as `push` does, with the same upload flags.
    assert!(build.contains("--push"), "{build}");
    for flag in ["--username", "--password-stdin", "--chunk-size", "--jobs"] {
        assert!(build.contains(flag), "build --help lacks {flag}: {build}");
        assert!(push.contains(flag), "push --help lacks {flag}: {push}");
    }
}

#[test]
fn a_bare_build_arg_takes_the_environment_and_warns_when_it_is_unset() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nARG FOO\nLABEL foo=\"[$FOO]\"\n",
    );
    let build = |value: Option<&str>| {
        let mut cmd = ws.dockless();
        cmd.args(["build", "ctx", "--build-arg", "FOO"]);
        match value {
            Some(value) => cmd.env("FOO", value),
            None => cmd.env_remove("FOO"),
        };
        let out = cmd.output().unwrap();
        assert_success(&out);
        (
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (unset, warned) = build(None);
    assert!(
        warned.contains("--build-arg FOO") && warned.contains("not set"),
        "{warned}"
    );
    let (set, quiet) = build(Some("bar"));
    assert!(!quiet.contains("not set"), "{quiet}");
    assert_ne!(unset, set, "the environment's value reaches the build");
}

#[test]
fn one_layer_is_counted_as_one_layer() {
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY a /a\n");
    ws.write("a", "a");
    let out = ws.dockless().args(["build", "ctx"]).output().unwrap();
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(", 1 layer of which 1 new,"), "{stdout}");
}

/// A base image with what a COPY destination can meet in an image: a directory holding files
/// (a venv), a sticky `/tmp`, and symlinks to a directory (absolute and relative). Built on
/// the busybox base as the OCI layout `DIR/base-dirs:t`; returns `oci:DIR/base-dirs:t`.
pub(crate) fn base_with_dirs_and_links(dir: &Path) -> String {
    let ws = Workspace::new();
    let busybox = busybox_base(ws.path());
    ws.write("Dockerfile", format!("FROM {busybox}\nCOPY tree/ /\n"));
    ws.write("tree/srv/venv/bin/python", "#!/bin/true\n");
    ws.write("tree/srv/venv/pyvenv.cfg", "home = /usr/bin\n");
    let tmp = ws.context().join("tree/tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    symlink("/srv/venv", ws.context().join("tree/data")).unwrap();
    symlink("srv", ws.context().join("tree/srvlink")).unwrap();
    ws.build_ok(&[]);
    let layout = dir.join("base-dirs");
    copy_layout(&ws.out(), &layout);
    format!("oci:{}:t", layout.display())
}

fn copy_layout(from: &Path, to: &Path) {
    tool("cp", &["-a", from.to_str().unwrap(), to.to_str().unwrap()]);
}

/// Pushes the layout `oci:DIR:TAG` to `reference` with dockless.
/// A throwaway registry (no auth) holding the image `layout` as `bases/NAME:1`: the registry,
/// and the base's reference there.
pub(crate) async fn registry_with_base(
    ws: &Workspace,
    layout: &str,
    name: &str,
) -> (crate::support::registry::TestRegistry, String) {
    let registry =
        crate::support::registry::TestRegistry::start(crate::support::registry::RegistryAuth::None)
            .await;
    let remote = format!("{}/bases/{name}:1", registry.host);
    push_base(ws, layout, &remote);
    (registry, remote)
}

fn push_base(ws: &Workspace, layout: &str, reference: &str) {
    let out = ws
        .dockless()
        .args(["push", "--from", layout, "--to", reference])
        .output()
        .unwrap();
    crate::support::binary::assert_success(&out);
}

/// The layers a build added to its base, in order.
pub(crate) fn new_layers(json: &serde_json::Value) -> Vec<serde_json::Value> {
    json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["fromBase"] == false)
        .cloned()
        .collect()
}

/// `tar -tv` of a layer blob in the output layout.
pub(crate) fn layer_listing(ws: &Workspace, layer: &serde_json::Value) -> String {
    let digest = layer["digest"].as_str().unwrap();
    let blob = ws
        .out()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    tool("tar", &["--numeric-owner", "-tzvf", blob.to_str().unwrap()])
}

/// `mode uid:gid` of a path in an unpacked tree.
fn mode_owner(root: &Path, path: &str) -> String {
    let meta = fs::symlink_metadata(root.join(path))
        .unwrap_or_else(|e| panic!("/{path} in the image: {e}"));
    format!("{:o} {}:{}", meta.mode(), meta.uid(), meta.gid())
}

/// Fault 1 of issue 13: with a registry base, COPY and WORKDIR wrote no entries for the
/// directories they create (the base's tree was unknown), so the unpacker made them root's
/// 0755 and `USER` could not write in its own directory. Docker (BuildKit's copy) creates them
/// with the --chown owner. The same Dockerfile on the same base as an OCI layout must give the
/// same layers, and (as root) the same tree as buildah.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_creates_missing_directories_with_the_chown_owner_on_a_registry_base() {
    if !needs_root("RUN as another user and owners in the tree") {
        return;
    }
    let ws = Workspace::new();
    let busybox = busybox_base(ws.path());
    // Kept until the test ends: the registry stops when it is dropped.
    let (_registry, remote) = registry_with_base(&ws, &busybox, "busybox").await;
    let dockerfile = "ARG BASE\nFROM $BASE\n\
        COPY --chown=1001:1001 f.txt /a/b/f.txt\n\
        USER 1001:1001\n\
        RUN [\"/bin/busybox\", \"touch\", \"/a/b/g\"]\n\
        USER root\n\
        COPY --chown=user:user app /home/user/app\n\
        USER user\n\
        RUN [\"/bin/busybox\", \"touch\", \"/home/user/app/new\"]\n\
        USER root\n\
        WORKDIR /w1/w2\n";
    ws.write("Dockerfile", dockerfile);
    ws.write("f.txt", "f");
    ws.write("app/main.py", "print('hi')\n");

    let from_registry = ws.build_ok(&["--build-arg", &format!("BASE={remote}")]);
    let (_keep, root) = umoci_unpack(&ws.out(), "t");
    for (path, expected) in [
        ("a", "40755 1001:1001"),
        ("a/b", "40755 1001:1001"),
        ("a/b/g", "100644 1001:1001"),
        ("home", "40755 1000:1000"),
        ("home/user", "40755 1000:1000"),
        ("home/user/app", "40755 1000:1000"),
        ("home/user/app/new", "100644 1000:1000"),
        ("w1/w2", "40755 0:0"),
    ] {
        assert_eq!(mode_owner(&root, path), expected, "/{path}");
    }
    let layers = new_layers(&from_registry);
    let workdir_layer = layer_listing(&ws, layers.last().unwrap());
    assert!(
        workdir_layer.contains(" w1/\n") && workdir_layer.contains(" w1/w2/\n"),
        "WORKDIR writes the directories it creates: {workdir_layer}"
    );

    // The same base as a layout: the same layers, so the registry base's tree was known fully.
    fs::remove_dir_all(ws.out()).unwrap();
    let from_layout = ws.build_ok(&["--build-arg", &format!("BASE={busybox}")]);
    assert_eq!(new_layers(&from_layout), layers);
    // buildah builds from the layout (its name must be lower case) and agrees on the tree.
    let link = crate::run::lowercase_link(&ws.path().join("base"), "busybox");
    ws.write(
        "Dockerfile",
        dockerfile.replace("$BASE", &format!("oci:{}:latest", link.path().display())),
    );
    let theirs = ws.path().join("buildah-out");
    crate::run::buildah_build(&ws, &theirs);
    crate::run::assert_same_trees(&ws.out(), &theirs, "buildah");
}

/// Fault 2 of issue 13: a file copied onto a directory of the image replaced it (`COPY f
/// /tmp` made `/tmp` a file); Docker writes it inside, also when the destination is a symlink
/// to a directory (BuildKit's copy resolves the destination inside the image). This is E2B's
/// code-interpreter template: `COPY ./server/requirements.txt $SERVER_PATH` over its venv.
/// Checked on a registry base and against buildah's build on the same base as a layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_copied_onto_a_directory_or_a_link_to_one_goes_inside_it() {
    let ws = Workspace::new();
    let layout = base_with_dirs_and_links(ws.path());
    let (_registry, remote) = registry_with_base(&ws, &layout, "dirs").await;
    let dockerfile = "ARG BASE\nFROM $BASE\nENV SERVER_PATH=/srv/venv\n\
        COPY ./server/requirements.txt $SERVER_PATH\n\
        COPY tmp.txt /tmp\n\
        COPY through-absolute.txt /data\n\
        COPY through-relative.txt /srvlink/venv/bin\n\
        COPY new.txt /data/sub/\n";
    ws.write("Dockerfile", dockerfile);
    for name in [
        "server/requirements.txt",
        "tmp.txt",
        "through-absolute.txt",
        "through-relative.txt",
        "new.txt",
    ] {
        ws.write(name, name);
    }
    let json = ws.build_ok(&["--build-arg", &format!("BASE={remote}")]);
    let (_keep, root) = umoci_unpack(&ws.out(), "t");
    let tree = crate::run::file_tree(&root);
    for (path, starts) in [
        ("srv/venv", "40755 "),
        ("srv/venv/requirements.txt", "100644 0:0"),
        ("srv/venv/bin/python", "100644 0:0"),
        ("tmp", "41777 0:0"),
        ("tmp/tmp.txt", "100644 0:0"),
        ("data", "120777 0:0 -> /srv/venv"),
        ("srvlink", "120777 0:0 -> srv"),
        ("srv/venv/through-absolute.txt", "100644 0:0"),
        ("srv/venv/bin/through-relative.txt", "100644 0:0"),
        ("srv/venv/sub", "40755 0:0"),
        ("srv/venv/sub/new.txt", "100644 0:0"),
    ] {
        let found = tree.get(path).map(String::as_str).unwrap_or("missing");
        assert!(
            found.starts_with(starts),
            "/{path}: {found}, expected {starts}"
        );
    }
    // The layers hold the real paths, and no entry for a directory of the base.
    let layers = new_layers(&json);
    let listings: Vec<String> = layers.iter().map(|l| layer_listing(&ws, l)).collect();
    assert!(
        listings[0].ends_with(" srv/venv/requirements.txt\n"),
        "{}",
        listings[0]
    );
    assert!(
        !listings
            .iter()
            .any(|l| l.contains(" tmp/\n") || l.contains(" data"))
    );

    if !needs_root("buildah with vfs storage") {
        return;
    }
    let (dir, tag) = layout.trim_start_matches("oci:").rsplit_once(':').unwrap();
    let link = crate::run::lowercase_link(Path::new(dir), "dirs");
    ws.write(
        "Dockerfile",
        dockerfile.replace("$BASE", &format!("oci:{}:{tag}", link.path().display())),
    );
    let theirs = ws.path().join("buildah-out");
    crate::run::buildah_build(&ws, &theirs);
    crate::run::assert_same_trees(&ws.out(), &theirs, "buildah");
}

/// Fault 7 of issue 13: a wildcard that matches nothing failed the build. BuildKit copies every
/// source with AllowEmptyWildcard (dockerfile2llb's convert_copy.go; its testEmptyWildcard
/// builds `COPY foo nomatch* /`): such a pattern adds nothing, even alone, while a plain path
/// that does not exist is still an error. (buildah 1.28 refuses these, its issue 5742.)
#[test]
fn a_wildcard_that_matches_nothing_adds_nothing() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY foo nomatch* /\nCOPY nomatch* other/*.txt /dest/\nCOPY foo /kept\n",
    );
    ws.write("foo", "contents0");
    let json = ws.build_ok(&[]);
    let (_keep, root) = umoci_unpack(&ws.out(), "t");
    assert_eq!(fs::read_to_string(root.join("foo")).unwrap(), "contents0");
    assert!(root.join("kept").is_file());
    let layers = new_layers(&json);
    assert_eq!(layers.len(), 3, "every COPY makes its layer");
    assert!(
        !layer_listing(&ws, &layers[1]).contains("dest"),
        "nothing matched: nothing written, no destination made"
    );

    fs::remove_dir_all(ws.out()).unwrap();
    ws.write("Dockerfile", "FROM scratch\nCOPY foo missing /dest/\n");
    let err = ws.build_err(&[]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("'missing' was not found"),
        "{err}"
    );
}

/// BuildKit's copy gives the directories it creates the --chmod mode (fsutil's "fix custom
/// chmod for parent directories", pinned by BuildKit's testCopyChmod: `/parent` 0777 and
/// `/parent/sub` 0770 below); a directory that exists keeps its mode.
#[test]
fn copy_chmod_gives_its_mode_to_the_directories_it_creates() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY --chmod=777 foo /parent/foo\nCOPY --chmod=770 foo /parent/sub/foo\n",
    );
    ws.write("foo", "foo-contents");
    let json = ws.build_ok(&[]);
    let layers = new_layers(&json);
    let first = layer_listing(&ws, &layers[0]);
    assert!(
        first.contains("drwxrwxrwx 0/0") && first.contains(" parent/\n"),
        "{first}"
    );
    let second = layer_listing(&ws, &layers[1]);
    assert!(!second.contains(" parent/\n"), "/parent exists: {second}");
    assert!(second.contains("drwxrwx--- 0/0"), "{second}");
}

/// Every path of the image `out:t` unpacked, with a file's content or a link's target.
fn unpacked_tree(ws: &Workspace) -> std::collections::BTreeMap<String, String> {
    let (_keep, root) = umoci_unpack(&ws.out(), "t");
    let mut tree = std::collections::BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                pending.push(path.clone());
                "dir".to_owned()
            } else {
                fs::read_to_string(&path).unwrap()
            };
            tree.insert(rel, what);
        }
    }
    tree
}

/// BuildKit's own test of `--exclude` (frontend/dockerfile/exclude_patterns_test.go,
/// testExcludedFilesOnCopy), its context and its expectations, on scratch.
#[test]
fn copy_and_add_exclude_follow_buildkits_test() {
    let ws = Workspace::new();
    for (path, content) in [
        ("dir1/file-101.png", "2"),
        ("dir1/file-102.txt", "3"),
        ("dir1/file-103.jpeg", "4"),
        ("dir2/file-201.pdf", "6"),
        ("dir2/file-202.jpeg", "7"),
        ("dir2/file-203.png", "8"),
        ("dir3/file-301.mp3", "9"),
        ("dir3/file-302.mpeg", "10"),
        ("dir4/file-401.txt", "11"),
    ] {
        ws.write(path, content);
    }
    symlink("file-401.txt", ws.context().join("dir4/file-402.txt")).unwrap();
    symlink("file-404.txt", ws.context().join("dir4/file-403.txt")).unwrap();
    ws.write(
        "Dockerfile",
        "FROM scratch\n\
         COPY --exclude=*/*.png --exclude=*/*.jpeg --exclude=Dockerfile . /1\n\
         COPY --exclude=*/*.pdf --exclude=*/*.txt --exclude=Dockerfile . /2\n\
         ADD --exclude=*.mp3 dir3/ /3/\n\
         COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/\n\
         ADD --exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5\n\
         ADD --exclude=* dir* /6\n",
    );
    ws.build_ok(&[]);
    let tree = unpacked_tree(&ws);
    let files = |prefix: &str| -> Vec<(String, String)> {
        tree.iter()
            .filter(|(path, what)| path.starts_with(prefix) && what.as_str() != "dir")
            .map(|(path, what)| (path[prefix.len()..].to_owned(), what.clone()))
            .collect()
    };
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        files("1/"),
        owned(&[
            ("dir1/file-102.txt", "3"),
            ("dir2/file-201.pdf", "6"),
            ("dir3/file-301.mp3", "9"),
            ("dir3/file-302.mpeg", "10"),
            ("dir4/file-401.txt", "11"),
            ("dir4/file-402.txt", "-> file-401.txt"),
            ("dir4/file-403.txt", "-> file-404.txt"),
        ])
    );
    assert_eq!(
        files("2/"),
        owned(&[
            ("dir1/file-101.png", "2"),
            ("dir1/file-103.jpeg", "4"),
            ("dir2/file-202.jpeg", "7"),
            ("dir2/file-203.png", "8"),
            ("dir3/file-301.mp3", "9"),
            ("dir3/file-302.mpeg", "10"),
        ])
    );
    assert_eq!(files("3/"), owned(&[("file-302.mpeg", "10")]));
    assert_eq!(files("4/"), owned(&[("file-302.mpeg", "10")]));
    assert_eq!(
        files("5/"),
        owned(&[
            ("file-102.txt", "3"),
            ("file-401.txt", "11"),
            ("file-402.txt", "-> file-401.txt"),
            ("file-403.txt", "-> file-404.txt"),
        ])
    );
    assert!(files("6/").is_empty(), "everything excluded: {tree:?}");
    assert_eq!(tree.get("6").map(String::as_str), Some("dir"));
}

/// `COPY --parents` as Docker's reference shows it: each source keeps its path, below a `/./`
/// pivot when the pattern has one; without the flag the second source replaces the first.
#[test]
fn copy_parents_keeps_the_source_paths_as_dockers_reference_shows() {
    let ws = Workspace::new();
    ws.write("x/a.txt", "from x\n");
    ws.write("y/a.txt", "from y\n");
    ws.write("x/y/b.txt", "deep\n");
    ws.write(
        "Dockerfile",
        "FROM scratch\n\
         COPY ./x/a.txt ./y/a.txt /no_parents/\n\
         COPY --parents ./x/a.txt ./y/a.txt /parents/\n\
         COPY --parents ./x/./y/*.txt /pivot/\n",
    );
    ws.build_ok(&[]);
    let tree = unpacked_tree(&ws);
    let get = |path: &str| tree.get(path).map(String::as_str);
    assert_eq!(get("no_parents/a.txt"), Some("from y\n"));
    assert_eq!(get("parents/x/a.txt"), Some("from x\n"));
    assert_eq!(get("parents/y/a.txt"), Some("from y\n"));
    assert_eq!(get("pivot/y/b.txt"), Some("deep\n"));
    assert_eq!(get("pivot/x"), None, "the pivot's own path is not kept");
}

/// Issue 13, fault 4: `--chown=NAME` and USER resolve against the stage's file system as it is
/// at that instruction, so a user an earlier RUN added is known, on a registry base too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_added_by_an_earlier_run_resolve_for_chown_and_user() {
    if !needs_root("RUN as another user") {
        return;
    }
    let ws = Workspace::new();
    let busybox = busybox_base(ws.path());
    // Kept until the test ends: the registry stops when it is dropped.
    let (_registry, remote) = registry_with_base(&ws, &busybox, "busybox").await;
    ws.write(
        "Dockerfile",
        "ARG BASE\nFROM $BASE\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo dev:x:1234:4321::/home/dev:/bin/sh >> /etc/passwd && echo devs:x:4321: >> /etc/group\"]\n\
         COPY --chown=dev:devs f.txt /srv/f.txt\n\
         WORKDIR /srv\n\
         USER dev\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox id -u > /srv/who\"]\n",
    );
    ws.write("f.txt", "f");
    ws.build_ok(&["--build-arg", &format!("BASE={remote}")]);
    let (_keep, root) = umoci_unpack(&ws.out(), "t");
    assert_eq!(mode_owner(&root, "srv/f.txt"), "100644 1234:4321");
    assert_eq!(
        mode_owner(&root, "srv"),
        "40755 1234:4321",
        "COPY made /srv with the --chown owner"
    );
    assert_eq!(fs::read_to_string(root.join("srv/who")).unwrap(), "1234\n");
}
