//! The bad-input catalog: what a careless or hostile user, context or registry can hand dockless.
//! Every case runs the real binary and asserts the exit code, one message naming the input at
//! fault, no panic, no hang, no output and no temporary file left behind.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use serde_json::Value;

use crate::support::binary::{
    Workspace, assert_success, needs_root, run_async, run_with_stdin, tool,
};
use crate::support::http::{Handler, TestServer, response};
use crate::support::proxy::{Fault, FaultProxy, Rule};
use crate::support::registry::{RegistryAuth, TestRegistry, USER};

struct Case {
    what: &'static str,
    /// Written to ctx/Dockerfile when given.
    dockerfile: Option<&'static str>,
    /// Anything else the case needs in the workspace.
    setup: fn(&Workspace),
    /// The command line; `build ctx --output out` when empty.
    args: &'static [&'static str],
    stdin: &'static str,
    exit: i32,
    needles: &'static [&'static str],
}

const BUILD: &[&str] = &["build", "ctx", "--output", "out"];

fn nothing(_: &Workspace) {}

fn case(what: &'static str, dockerfile: &'static str, needles: &'static [&'static str]) -> Case {
    Case {
        what,
        dockerfile: Some(dockerfile),
        setup: nothing,
        args: &[],
        stdin: "",
        exit: 1,
        needles,
    }
}

fn with_setup(mut case: Case, setup: fn(&Workspace)) -> Case {
    case.setup = setup;
    case
}

fn with_args(mut case: Case, args: &'static [&'static str]) -> Case {
    case.args = args;
    case
}

/// A flag's value the command cannot use: exit 2, as the README promises.
fn usage(mut case: Case) -> Case {
    case.exit = 2;
    case
}

/// Writes a tar (optionally gzipped, optionally cut short) with raw entry names and link names,
/// which the `tar` crate's safe setters would refuse.
fn write_tar(path: &Path, entries: &[(&str, u8, &str, &[u8])], gzip: bool, truncate: bool) {
    let mut bytes = Vec::new();
    for (name, kind, link, data) in entries {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(tar::EntryType::new(*kind));
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    }
    bytes.resize(bytes.len() + 1024, 0);
    if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&bytes).unwrap();
        bytes = encoder.finish().unwrap();
    }
    if truncate {
        bytes.truncate(bytes.len() / 2);
    }
    fs::write(path, bytes).unwrap();
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

fn local_cases() -> Vec<Case> {
    vec![
        // Malformed Dockerfiles.
        case(
            "unknown instruction",
            "FROM scratch\nFROBNICATE x\n",
            &["Dockerfile:2", "FROBNICATE"],
        ),
        case(
            "continuation at the end of the file",
            "FROM scratch\nCOPY a \\",
            &["Dockerfile:2", "COPY"],
        ),
        case("empty Dockerfile", "", &["Dockerfile:1", "no FROM"]),
        case("FROM without an image", "FROM\n", &["Dockerfile:1", "FROM"]),
        case(
            "instruction before FROM",
            "COPY a /a\nFROM scratch\n",
            &["Dockerfile:1", "before the first FROM"],
        ),
        case(
            "COPY without a destination",
            "FROM scratch\nCOPY a\n",
            &["Dockerfile:2", "COPY requires"],
        ),
        case(
            "ENV without a value",
            "FROM scratch\nENV X\n",
            &["Dockerfile:2", "ENV X"],
        ),
        case(
            "unterminated variable",
            "FROM scratch\nENV X=${Y\n",
            &["Dockerfile:2", "missing '}'"],
        ),
        case(
            "required variable unset",
            "FROM scratch\nENV X=${MISSING:?required}\n",
            &["Dockerfile:2", "MISSING"],
        ),
        case(
            "EXPOSE of a word",
            "FROM scratch\nEXPOSE abc\n",
            &["Dockerfile:2", "EXPOSE abc"],
        ),
        case(
            "EXPOSE out of range",
            "FROM scratch\nEXPOSE 99999\n",
            &["Dockerfile:2", "99999"],
        ),
        case(
            "HEALTHCHECK with a bad duration",
            "FROM scratch\nHEALTHCHECK --interval=abc CMD true\n",
            &["Dockerfile:2", "--interval"],
        ),
        case(
            "COPY --chmod not octal",
            "FROM scratch\nCOPY --chmod=999999 a /a\n",
            &["Dockerfile:2", "--chmod"],
        ),
        case(
            "COPY with an unknown flag",
            "FROM scratch\nCOPY --bogus a /a\n",
            &["Dockerfile:2", "--bogus"],
        ),
        case(
            "COPY --chown by a name the image does not know",
            "FROM scratch\nCOPY --chown=nobody a /a\n",
            &["Dockerfile:2", "nobody"],
        ),
        case(
            "ONBUILD ONBUILD",
            "FROM scratch\nONBUILD ONBUILD COPY a /a\n",
            &["Dockerfile:2", "ONBUILD"],
        ),
        case(
            "USER without a user",
            "FROM scratch\nUSER\n",
            &["Dockerfile:2", "USER"],
        ),
        with_setup(
            case("Dockerfile not UTF-8", "", &["Dockerfile", "UTF-8"]),
            |ws| {
                ws.write("Dockerfile", [0xffu8, 0xfe, 0x00, 0x41]);
            },
        ),
        with_setup(
            case("an enormous line", "", &["Dockerfile:2", "FROBNICATE"]),
            |ws| {
                let line = format!("FROM scratch\nFROBNICATE {}\n", "x".repeat(5 << 20));
                ws.write("Dockerfile", line);
            },
        ),
        // Bases that are not there or not images.
        case(
            "FROM an invalid reference",
            "FROM Bad//Ref\n",
            &["Dockerfile:1", "Bad//Ref"],
        ),
        case(
            "FROM a missing layout",
            "FROM oci:does-not-exist\n",
            &["Dockerfile:1", "not an OCI image layout"],
        ),
        case(
            "FROM an unreachable registry",
            "FROM 127.0.0.1:1/base:1\n",
            &["127.0.0.1:1", "cannot reach"],
        ),
        // Missing sources and escapes.
        case(
            "missing source",
            "FROM scratch\nCOPY missing.txt /x\n",
            &["Dockerfile:2", "missing.txt", "not found"],
        ),
        // A glob matching nothing is not bad input: BuildKit copies nothing for it (see
        // build::a_wildcard_that_matches_nothing_adds_nothing).
        with_setup(
            case(
                "source excluded by .dockerignore",
                "FROM scratch\nCOPY secret.txt /x\n",
                &["Dockerfile:2", "secret.txt", ".dockerignore"],
            ),
            |ws| {
                ws.write(".dockerignore", "secret.txt\n");
                ws.write("secret.txt", "s");
            },
        ),
        case(
            "source climbing out with ..",
            "FROM scratch\nCOPY ../outside /x\n",
            &["Dockerfile:2", "../outside", "outside the build context"],
        ),
        case(
            "absolute source is inside the context",
            "FROM scratch\nCOPY /etc/passwd /x\n",
            &["Dockerfile:2", "/etc/passwd", "not found"],
        ),
        with_setup(
            case(
                "source through a symlinked directory to /etc",
                "FROM scratch\nCOPY evil/passwd /x\n",
                &["Dockerfile:2", "evil/passwd", "outside the build context"],
            ),
            |ws| symlink("/etc", &ws.context().join("evil")),
        ),
        with_setup(
            case(
                "glob through a symlinked directory to /etc",
                "FROM scratch\nCOPY evil/pass* /x\n",
                &["Dockerfile:2", "evil/pass*", "outside the build context"],
            ),
            |ws| symlink("/etc", &ws.context().join("evil")),
        ),
        with_setup(
            case(
                "source through a relative symlink climbing out",
                "FROM scratch\nCOPY up/etc/passwd /x\n",
                &["Dockerfile:2", "outside the build context"],
            ),
            |ws| symlink("../../../../../../..", &ws.context().join("up")),
        ),
        with_setup(
            case(
                "source that is a symlink to outside",
                "FROM scratch\nCOPY hosts /x\n",
                &["Dockerfile:2", "hosts", "outside the build context"],
            ),
            |ws| symlink("/etc/hosts", &ws.context().join("hosts")),
        ),
        with_setup(
            case(
                "symlink loop",
                "FROM scratch\nCOPY loop/x /x\n",
                &["Dockerfile:2", "loop/x", "symlinks"],
            ),
            |ws| symlink("loop", &ws.context().join("loop")),
        ),
        with_setup(
            Case {
                dockerfile: None,
                ..case(
                    "the context's Dockerfile is a symlink out",
                    "",
                    &["e2b.Dockerfile", "outside the build context"],
                )
            },
            |ws| symlink("/etc/passwd", &ws.context().join("e2b.Dockerfile")),
        ),
        // Archives for ADD.
        with_setup(
            case(
                "tar entry climbing out with ../",
                "FROM scratch\nADD evil.tar /x/\n",
                &["Dockerfile:2", "evil.tar"],
            ),
            |ws| {
                let path = ws.context().join("evil.tar");
                write_tar(&path, &[("../../escaped", b'0', "", b"evil")], false, false);
            },
        ),
        with_setup(
            case(
                "tar hard link to outside",
                "FROM scratch\nADD hard.tar /x/\n",
                &["Dockerfile:2", "hard.tar", "outside the archive"],
            ),
            |ws| {
                let path = ws.context().join("hard.tar");
                write_tar(&path, &[("h", b'1', "../../etc/passwd", b"")], false, false);
            },
        ),
        with_setup(
            case(
                "tar writing through a symlink it made",
                "FROM scratch\nADD through.tar /x/\n",
                &["Dockerfile:2", "through.tar", "link/passwd"],
            ),
            |ws| {
                let path = ws.context().join("through.tar");
                let entries: &[(&str, u8, &str, &[u8])] = &[
                    ("link", b'2', "/etc", b""),
                    ("link/passwd", b'0', "", b"pwned"),
                ];
                write_tar(&path, entries, false, false);
            },
        ),
        with_setup(
            case(
                "truncated tar.gz",
                "FROM scratch\nADD cut.tar.gz /x/\n",
                &["Dockerfile:2", "cut.tar.gz", "corrupted"],
            ),
            |ws| {
                let path = ws.context().join("cut.tar.gz");
                let data = vec![7u8; 200_000];
                write_tar(&path, &[("f", b'0', "", &data)], true, true);
            },
        ),
        // The context and e2b.toml.
        with_args(
            case("missing context", "", &["no-such-dir"]),
            &["build", "no-such-dir"],
        ),
        with_args(
            with_setup(
                case("context is a file", "", &["afile", "not a directory"]),
                |ws| {
                    fs::write(ws.path().join("afile"), "x").unwrap();
                },
            ),
            &["build", "afile"],
        ),
        with_setup(
            Case {
                dockerfile: None,
                ..case("no Dockerfile at all", "", &["no Dockerfile", "-f"])
            },
            nothing,
        ),
        with_args(
            case(
                "-f names a missing file",
                "FROM scratch\n",
                &["nope", "does not exist"],
            ),
            &["build", "ctx", "--output", "out", "-f", "nope"],
        ),
        with_args(
            with_setup(
                case(
                    "-f names a directory",
                    "FROM scratch\n",
                    &["ctx/sub", "directory"],
                ),
                |ws| fs::create_dir_all(ws.context().join("sub")).unwrap(),
            ),
            &["build", "ctx", "--output", "out", "-f", "ctx/sub"],
        ),
        with_setup(
            case(
                "e2b.toml with a syntax error",
                "FROM scratch\n",
                &["e2b.toml", "line 2"],
            ),
            |ws| {
                ws.write("e2b.toml", "# a template\nx = [\n");
            },
        ),
        with_setup(
            case(
                "e2b.toml with a wrong type",
                "FROM scratch\n",
                &["e2b.toml", "line 1, column 13", "memory_mb"],
            ),
            |ws| {
                ws.write("e2b.toml", "memory_mb = \"lots\"\n");
            },
        ),
        with_setup(
            case(
                "e2b.toml with an unknown key",
                "FROM scratch\n",
                &["e2b.toml", "bogus", "template_id"],
            ),
            |ws| {
                ws.write("e2b.toml", "bogus = 1\n");
            },
        ),
        with_setup(
            case(
                "e2b.toml names a missing Dockerfile",
                "FROM scratch\n",
                &["gone.Dockerfile", "does not exist"],
            ),
            |ws| {
                ws.write("e2b.toml", "dockerfile = \"gone.Dockerfile\"\n");
            },
        ),
        with_setup(
            case(
                "e2b.toml names a Dockerfile outside the context",
                "FROM scratch\n",
                &["/etc/passwd", "outside the build context"],
            ),
            |ws| {
                ws.write(
                    "e2b.toml",
                    "dockerfile = \"../../../../../../../etc/passwd\"\n",
                );
            },
        ),
        // Flags.
        with_args(
            with_setup(
                case(
                    "--output onto a file that is not a layout",
                    "FROM scratch\n",
                    &["afile", "refusing to overwrite"],
                ),
                |ws| fs::write(ws.path().join("afile"), "keep me").unwrap(),
            ),
            &["build", "ctx", "--output", "afile"],
        ),
        usage(with_args(
            case(
                "--platform that is not one",
                "FROM scratch\n",
                &["bogus", "os/arch"],
            ),
            &["build", "ctx", "--output", "out", "--platform", "bogus"],
        )),
        usage(with_args(
            case(
                "--platform nobody builds for",
                "FROM scratch\n",
                &["linux/nosuch", "unknown operating system or architecture"],
            ),
            &[
                "build",
                "ctx",
                "--output",
                "out",
                "--platform",
                "linux/nosuch",
            ],
        )),
        usage(with_args(
            case(
                "push --platform nobody builds for",
                "FROM scratch\n",
                &["linux/nosuch"],
            ),
            &[
                "push",
                "ctx",
                "--to",
                "127.0.0.1:1/x:y",
                "--platform",
                "linux/nosuch",
            ],
        )),
        usage(with_args(
            case(
                "--build-arg without a name",
                "FROM scratch\n",
                &["--build-arg =x"],
            ),
            &["build", "ctx", "--output", "out", "--build-arg", "=x"],
        )),
        usage(with_args(
            case(
                "--compression-level out of range",
                "FROM scratch\n",
                &["42"],
            ),
            &[
                "build",
                "ctx",
                "--output",
                "out",
                "--compression-level",
                "42",
            ],
        )),
        usage(with_args(
            case(
                "template build --image that is not a reference",
                "FROM scratch\n",
                &["UPPER/Case", "invalid image reference"],
            ),
            &["template", "build", "ctx", "--image", "UPPER/Case:tag"],
        )),
        with_args(
            Case {
                exit: 2,
                ..case(
                    "--username without --password-stdin",
                    "FROM scratch\n",
                    &["--password-stdin"],
                )
            },
            &["push", "ctx", "--to", "127.0.0.1:1/x:y", "--username", "u"],
        ),
        with_args(
            case(
                "--password-stdin with nothing on stdin",
                "FROM scratch\n",
                &["--password-stdin", "empty"],
            ),
            &[
                "push",
                "ctx",
                "--to",
                "127.0.0.1:1/x:y",
                "--username",
                "u",
                "--password-stdin",
            ],
        ),
        // References and registries.
        usage(with_args(
            case("--to in upper case", "FROM scratch\n", &["UPPER/Case"]),
            &["push", "ctx", "--to", "UPPER/Case:tag"],
        )),
        usage(with_args(
            case(
                "--to with a short digest",
                "FROM scratch\n",
                &["sha256:abc", "64"],
            ),
            &["push", "ctx", "--to", "127.0.0.1:1/x@sha256:abc"],
        )),
        usage(with_args(
            case("--from that is not oci:", "", &["oci:DIR"]),
            &["push", "--from", "nowhere", "--to", "127.0.0.1:1/x:y"],
        )),
        with_args(
            case("--from a missing layout", "", &["nowhere"]),
            &["push", "--from", "oci:nowhere", "--to", "127.0.0.1:1/x:y"],
        ),
        with_args(
            case(
                "push to an unreachable registry",
                "FROM scratch\n",
                &["cannot reach registry 127.0.0.1:1"],
            ),
            &["push", "ctx", "--to", "127.0.0.1:1/x:y"],
        ),
        with_args(
            with_setup(
                case(
                    "broken docker config.json",
                    "FROM scratch\n",
                    &[".docker/config.json", "not valid JSON"],
                ),
                |ws| {
                    let dir = ws.path().join("home/.docker");
                    fs::create_dir_all(&dir).unwrap();
                    fs::write(dir.join("config.json"), "{garbage").unwrap();
                },
            ),
            &["push", "ctx", "--to", "127.0.0.1:1/x:y"],
        ),
    ]
}

/// Asserts what every failing case must: code, message, no panic, nothing left behind.
fn check_failure(ws: &Workspace, what: &str, out: &Output, exit: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture: the catalog's messages, to read as a user would.
    eprintln!("[{what}] {}", stderr.trim());
    assert_eq!(out.status.code(), Some(exit), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{what}: expected {needle:?} in {stderr}"
        );
    }
    if exit == 1 {
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{what}: one message: {stderr}");
        assert!(
            errors[0].len() < 1000,
            "{what}: a short message: {}",
            errors[0]
        );
    }
    assert!(
        !ws.path().join("out").exists(),
        "{what}: output left behind"
    );
    let tmp = ws.cache().join("tmp");
    let leftovers: Vec<_> = fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "{what}: temporary files left: {leftovers:?}"
    );
    let staged: Vec<_> = fs::read_dir(ws.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".dockless-"))
        .collect();
    assert!(staged.is_empty(), "{what}: staging left: {staged:?}");
}

#[test]
fn every_bad_input_in_the_catalog_fails_cleanly() {
    let cases = local_cases();
    assert!(cases.len() >= 50, "the catalog holds {} cases", cases.len());
    for case in cases {
        let ws = Workspace::new();
        ws.write("a", "a");
        if let Some(dockerfile) = case.dockerfile {
            ws.write("Dockerfile", dockerfile);
        }
        (case.setup)(&ws);
        let mut cmd = ws.dockless();
        cmd.args(if case.args.is_empty() {
            BUILD
        } else {
            case.args
        });
        let out = run_with_stdin(cmd, case.stdin);
        check_failure(&ws, case.what, &out, case.exit, case.needles);
        if case.what.starts_with("--output onto a file") {
            assert_eq!(
                fs::read_to_string(ws.path().join("afile")).unwrap(),
                "keep me"
            );
        }
    }
}

#[test]
fn fifos_and_devices_are_copied_as_entries_never_read() {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "FROM scratch\nCOPY pipe /x/pipe\nCOPY . /all/\n",
    );
    tool("mkfifo", &[ws.context().join("pipe").to_str().unwrap()]);
    let root = needs_root("mknod of a device in the context");
    if root {
        tool(
            "mknod",
            &[ws.context().join("zero").to_str().unwrap(), "c", "1", "5"],
        );
    }
    let mut cmd = ws.dockless();
    cmd.args(["build", "ctx", "--output", "out"]);
    let out = run_with_stdin(cmd, "");
    assert_success(&out);
    let layout = ws.out();
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest[7..]);
    let manifest: Value =
        serde_json::from_slice(&fs::read(blob(manifest_digest)).unwrap()).unwrap();
    let mut listing = String::new();
    for layer in manifest["layers"].as_array().unwrap() {
        listing += &tool(
            "tar",
            &[
                "tvzf",
                blob(layer["digest"].as_str().unwrap()).to_str().unwrap(),
            ],
        );
    }
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('p') && l.ends_with("x/pipe")),
        "{listing}"
    );
    if root {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with('c') && l.ends_with("all/zero")),
            "{listing}"
        );
    }
}

/// A registry double that misbehaves in one way per repository.
async fn misbehaving_registry() -> TestServer {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let config_digest = format!("sha256:{}", dockless_oci::digest::Digest::of(&config).hex());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": []
    })
    .to_string();
    let handler: Handler = Arc::new(move |request| {
        let path = request.uri().path().to_owned();
        let manifest = manifest.clone();
        let host = request
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Box::pin(async move {
            let oci = "application/vnd.oci.image.manifest.v1+json";
            let with_type = |status: u16, body: Vec<u8>, content_type: &str| {
                let mut r = response(status, body);
                r.headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                r
            };
            if path.starts_with("/v2/html-token/") {
                let mut r = response(401, "");
                r.headers_mut().insert(
                    "www-authenticate",
                    format!("Bearer realm=\"http://{host}/token\",service=\"double\"")
                        .parse()
                        .unwrap(),
                );
                return Ok(r);
            }
            Ok(match path.as_str() {
                "/v2/" => response(200, "{}"),
                "/token" => with_type(
                    200,
                    b"<html><body>Sign in</body></html>".to_vec(),
                    "text/html",
                ),
                p if p.starts_with("/v2/garbage/manifests/") => {
                    with_type(200, b"{\"schemaVersion\": 2, \"layers\": [".to_vec(), oci)
                }
                p if p.starts_with("/v2/huge/manifests/") => {
                    let mut body = manifest.into_bytes();
                    body.pop();
                    body.extend_from_slice(b",\"padding\":\"");
                    body.resize(body.len() + (5 << 20), b'x');
                    body.extend_from_slice(b"\"}");
                    with_type(200, body, oci)
                }
                p if p.starts_with("/v2/badblob/manifests/") => {
                    with_type(200, manifest.into_bytes(), oci)
                }
                p if p.starts_with("/v2/badblob/blobs/") => with_type(
                    200,
                    b"these are not the bytes you want".to_vec(),
                    "application/octet-stream",
                ),
                _ => response(
                    404,
                    "{\"errors\":[{\"code\":\"NAME_UNKNOWN\",\"message\":\"no such repository\"}]}",
                ),
            })
        })
    });
    TestServer::start(handler).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_registries_give_clear_errors() {
    let double = misbehaving_registry().await;
    let host = double.addr.to_string();
    let cases = [
        (
            "garbage JSON manifest",
            "garbage",
            vec!["garbage", "manifest"],
        ),
        ("manifest over 4 MB", "huge", vec!["huge", "MiB"]),
        (
            "blob not matching its digest",
            "badblob",
            vec!["sha256:", "digest"],
        ),
        (
            "token endpoint answering HTML",
            "html-token",
            vec!["token", "JSON"],
        ),
    ];
    for (what, repository, needles) in cases {
        let ws = Workspace::new();
        ws.write("Dockerfile", format!("FROM {host}/{repository}:1\n"));
        let mut cmd = ws.dockless();
        cmd.args(BUILD);
        let out = run_async(cmd, "").await;
        let mut needles: Vec<&str> = needles;
        let reference = format!("{host}/{repository}");
        needles.push(&reference);
        check_failure(&ws, what, &out, 1, &needles);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_without_echoing_them() {
    let registry = TestRegistry::start(RegistryAuth::Basic).await;
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY a /a\n");
    ws.write("a", "a");
    let target = format!("{}/app:1", registry.host);
    let mut cmd = ws.dockless();
    cmd.args([
        "push",
        "ctx",
        "--to",
        &target,
        "--username",
        USER,
        "--password-stdin",
    ]);
    let out = run_async(cmd, "not-the-password-7731\n").await;
    check_failure(
        &ws,
        "wrong password",
        &out,
        1,
        &[&registry.host, "credentials"],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not-the-password-7731"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_push_is_completed_by_a_rerun_without_reuploading() {
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let proxy = FaultProxy::start(&registry.host).await;
    let ws = Workspace::new();
    ws.write("Dockerfile", "FROM scratch\nCOPY one /one\nCOPY two /two\n");
    ws.write("one", vec![1u8; 300_000]);
    ws.write("two", vec![2u8; 300_000]);
    let built = ws.build_ok(&[]);
    let second_layer = built["layers"][1]["digest"]
        .as_str()
        .or_else(|| built["layers"][1].as_str())
        .expect("layer digests in --json")
        .to_owned();
    // Every attempt at the second layer's upload loses its connection mid-body.
    let hex = second_layer.trim_start_matches("sha256:");
    proxy.add(Rule::new("PUT", hex, Fault::DropMidBody, 1000));
    let target = format!("{}/app:1", proxy.host());
    let mut cmd = ws.dockless();
    cmd.args(["push", "ctx", "--to", &target]);
    let out = run_async(cmd, "").await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&proxy.host()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let digest_of = |path: &str| path.split("digest=").nth(1).map(|d| d.replace("%3A", ":"));
    let landed: Vec<String> = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PUT" && s.fault.is_none())
        .filter_map(|s| digest_of(&s.path_and_query))
        .collect();
    assert!(!landed.is_empty(), "some blobs landed before the failure");
    let before = proxy.seen().len();
    proxy.clear();

    let mut cmd = ws.dockless();
    cmd.args(["push", "ctx", "--to", &target, "--json"]);
    let out = run_async(cmd, "").await;
    assert_success(&out);
    let reuploaded: Vec<String> = proxy.seen()[before..]
        .iter()
        .filter(|s| s.method == "PUT" && s.path_and_query.contains("/blobs/uploads/"))
        .filter_map(|s| digest_of(&s.path_and_query))
        .collect();
    assert!(reuploaded.contains(&second_layer), "{reuploaded:?}");
    for digest in &landed {
        assert!(!reuploaded.contains(digest), "{digest} was uploaded twice");
    }
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["digest"], built["digest"]);
}
