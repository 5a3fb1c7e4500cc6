//! Real Dockerfiles that nobody on this project wrote (peers' integration tests, E2B's templates
//! and its CLI's fixtures), kept in `fixtures/corpus/<case>/` with a SOURCE.md that says where each
//! came from and what was changed to build it offline on a local base. Each is built by dockless
//! and by buildah 1.28, and the two images must agree: their configs, and their whole file trees
//! as an unpacker sees them (whiteouts applied, owners, modes, link targets, content).
//!
//! `{busybox}` in a Dockerfile is a busybox base with its applets installed (built here, so its
//! tree is known); `{debian}` is the cached Debian bookworm minbase with pip
//! ([`crate::support::debian`]). Where buildah 1.28 is not Docker, a case pins Docker's documented
//! behaviour instead, with the reason; where dockless is not Docker, the case is ignored with
//! what differs (see issue 13), never made to pass.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::run::{
    As, LowercaseLink, build, buildah_build_with, file_tree, lowercase_link, tree_differences,
};
use crate::support::binary::{
    Workspace, assert_success, busybox_base, copy_tree, needs_root, skopeo_inspect, umoci_unpack,
};

/// Where buildah 1.28 does not do what Docker (BuildKit) does, for one path of the tree: what
/// Docker's image has there, replacing what buildah made.
struct DockerPin {
    path: &'static str,
    docker: Docker,
    /// Why buildah is not the reference here, citing Docker's documentation or BuildKit's source.
    why: &'static str,
}

/// What Docker makes at a path.
enum Docker {
    Absent,
    /// A directory with this `mode uid:gid` (as [`file_tree`] writes them, e.g. `40755 0:0`).
    Dir(&'static str),
    /// A file with this `mode uid:gid` and content.
    File(&'static str, &'static str),
}

impl Docker {
    /// The [`file_tree`] line, if Docker makes the path.
    fn line(&self) -> Option<String> {
        use sha2::Digest as _;
        match self {
            Docker::Absent => None,
            Docker::Dir(meta) => Some(format!("{meta} ")),
            Docker::File(meta, content) => Some(format!(
                "{meta} {} links 1",
                hex::encode(sha2::Sha256::digest(content.as_bytes()))
            )),
        }
    }
}

/// One corpus case and how to build it.
#[derive(Default)]
struct Case {
    name: &'static str,
    build_args: &'static [&'static str],
    pins: &'static [DockerPin],
    /// Config keys (of the image config's `config`) where buildah 1.28 is not Docker, with
    /// Docker's value and why.
    config_pins: &'static [(&'static str, &'static str, &'static str)],
}

/// The corpus directory of a case.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/corpus")
        .join(name)
}

/// The bases the cases start from, as references both builders read, and the links that keep
/// their lower-case paths alive (buildah names an `oci:` image after its path).
struct Bases {
    busybox: String,
    debian: Option<String>,
    _links: Vec<LowercaseLink>,
}

/// Busybox with its applets installed as links in /bin and the directories a shell script
/// expects (`/tmp`, `/root`, `/home`, `/usr/local`, `/var/lib`, `/opt`): what real Dockerfiles take for granted in a base.
fn busybox_with_shell(ws: &Workspace) -> String {
    let plain = busybox_base(ws.path());
    let ctx = ws.path().join("shell-base");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {plain}\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \
             \"/bin/busybox --install -s /bin && mkdir -p -m 1777 /tmp && mkdir -p /root /home /usr/bin /usr/sbin /usr/local/bin /var/lib /opt\"]\n"
        ),
    )
    .unwrap();
    let layout = ws.path().join("shell-base-layout");
    let out = ws
        .dockless()
        .arg("build")
        .arg(&ctx)
        .arg("--output")
        .arg(&layout)
        .output()
        .unwrap();
    assert_success(&out);
    layout.display().to_string()
}

fn bases(ws: &Workspace, dockerfile: &str) -> Bases {
    let mut links = Vec::new();
    let busybox = lowercase_link(Path::new(&busybox_with_shell(ws)), "corpus-busybox");
    let busybox_ref = format!("oci:{}:latest", busybox.path().display());
    links.push(busybox);
    let debian = dockerfile.contains("{debian}").then(|| {
        let link = lowercase_link(crate::support::debian::debian_base(), "corpus-debian");
        let reference = format!("oci:{}:bookworm", link.path().display());
        links.push(link);
        reference
    });
    Bases {
        busybox: busybox_ref,
        debian,
        _links: links,
    }
}

/// The parts of an image config Docker's and buildah's images must agree on, with empty and
/// absent the same, and without the label buildah adds to every image.
fn comparable_config(layout: &Path) -> BTreeMap<String, Value> {
    let config = skopeo_inspect(layout, "t", &["--config"]);
    let config = &config["config"];
    let mut out = BTreeMap::new();
    for key in [
        "User",
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "Labels",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
    ] {
        let mut value = config[key].clone();
        if key == "Labels"
            && let Some(labels) = value.as_object_mut()
        {
            labels.remove("io.buildah.version");
        }
        let empty = match &value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !empty {
            out.insert(key.to_owned(), value);
        }
    }
    out
}

/// Builds the case with dockless and with buildah and asserts the two images agree (after the
/// case's pins of Docker's behaviour where buildah is not Docker).
fn check(case: Case) {
    if !needs_root("buildah with vfs storage and the sandbox's owners") {
        return;
    }
    let ws = Workspace::new();
    copy_tree(&fixture(case.name), &ws.context());
    fs::remove_file(ws.context().join("SOURCE.md")).expect("every case has a SOURCE.md");
    let dockerfile = fs::read_to_string(ws.context().join("Dockerfile")).unwrap();
    let bases = bases(&ws, &dockerfile);
    let mut dockerfile = dockerfile.replace("{busybox}", &bases.busybox);
    if let Some(debian) = &bases.debian {
        dockerfile = dockerfile.replace("{debian}", debian);
    }
    ws.write("Dockerfile", &dockerfile);
    if dockerfile.contains("ca.crt") {
        // HTTPS to PyPI may pass a proxy whose CA only the host trusts: pip gets the host's bundle.
        ws.write(
            "ca.crt",
            fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default(),
        );
    }

    let mut args = Vec::new();
    for arg in case.build_args {
        args.extend(["--build-arg", arg]);
    }
    build(&ws, As::Root, &args);
    let buildah_out = ws.path().join("buildah-out");
    buildah_build_with(&ws, &buildah_out, &args);

    let (_ours, ours_root) = umoci_unpack(&ws.out(), "t");
    let (_theirs, theirs_root) = umoci_unpack(&buildah_out, "t");
    let ours = file_tree(&ours_root);
    let mut docker = file_tree(&theirs_root);
    for pin in case.pins {
        assert!(!pin.why.is_empty());
        match pin.docker.line() {
            Some(line) => docker.insert(pin.path.to_owned(), line),
            None => docker.remove(pin.path),
        };
    }
    let mut differences = tree_differences(&ours, &docker, "Docker (buildah)");

    let ours = comparable_config(&ws.out());
    let mut docker = comparable_config(&buildah_out);
    for (key, value, why) in case.config_pins {
        assert!(!why.is_empty());
        docker.insert((*key).to_owned(), serde_json::from_str(value).unwrap());
    }
    for key in ours
        .keys()
        .chain(docker.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if ours.get(key) != docker.get(key) {
            differences.push(format!(
                "config {key}: dockless {:?}, Docker (buildah) {:?}",
                ours.get(key),
                docker.get(key)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{}: dockless and Docker differ:\n{}",
        case.name,
        differences.join("\n")
    );
}

macro_rules! corpus {
    ($($(#[$attr:meta])* $test:ident => $case:expr;)*) => {
        $(
            $(#[$attr])*
            #[test]
            fn $test() {
                check($case);
            }
        )*
    };
}

/// BuildKit runs the ONBUILD triggers of a stage used as another stage's base right after its
/// FROM (frontend/dockerfile/dockerfile2llb/convert.go: `initOnBuildTriggers` for every stage
/// whose `d.base` has ONBUILD commands); buildah 1.28 runs only the triggers of images.
const ONBUILD_FROM_A_STAGE: &str = "BuildKit runs the triggers of a base stage (convert.go, initOnBuildTriggers); buildah 1.28 does not";

/// BuildKit gives a stage built on another the ARG values of its base
/// (dockerfile2llb/convert.go, `dispatchState.init`: `ds.buildArgs = append(ds.buildArgs,
/// ds.base.buildArgs...)`); buildah 1.28 starts it without them.
/// ENV of a name the image already has replaces its value where it stands (BuildKit's `addEnv`
/// in dockerfile2llb/convert.go); buildah 1.28 moves it to the end.
const ENV_IN_PLACE: &str =
    "ENV replaces a name in place (BuildKit's addEnv); buildah 1.28 moves it to the end";

/// BuildKit unpacks an ADDed archive with moby's archive.Untar into a destination it made first
/// (solver/llbsolver/file/unpack.go: `copy.MkdirAll(dest, 0755, ...)`), and Untar skips the
/// archive's `./` entry when the destination exists (`if fi.IsDir() && hdr.Name == "."`), so the
/// destination stays 0755 root; buildah 1.28 gives it the owner of the archive's `./`.
const ARCHIVE_ROOT_ENTRY: &str = "BuildKit's Untar skips the archive's ./ entry over an existing destination; buildah 1.28 applies its owner";

/// BuildKit starts a stage FROM scratch with WorkingDir `/` and the default PATH
/// (dockerfile2llb/image.go, `emptyImage`); buildah 1.28 sets PATH only.
const SCRATCH_WORKDIR: &str = "BuildKit's emptyImage sets WorkingDir /; buildah 1.28 does not";

/// BuildKit copies a directory with fsutil's copier: the destination directory it creates is
/// reported through `notifyChange`, which applies the `--chmod` mode like every copied entry
/// (tonistiigi/fsutil copy/copy.go, `copyDirectory`); buildah 1.28 keeps the source's mode there.
const CHMOD_ON_CREATED_DIRECTORY: &str = "BuildKit's copier gives a directory it creates the --chmod mode; buildah 1.28 keeps the source's";

/// BuildKit copies each source of a COPY on its own into the destination (convert_copy.go, one
/// llb.Copy per source; fsutil copy/copy.go `prepareTargetDir`): a file goes inside the
/// destination only if it is a directory by then, else becomes it, so files copied to a path
/// without a trailing slash replace each other; its own exclude test (exclude_patterns_test.go)
/// copies four directories to `/5`. buildah 1.28 makes the destination a directory instead.
const EACH_SOURCE_ON_ITS_OWN: &str = "BuildKit copies each source on its own: a file becomes a destination that is not a directory yet; buildah 1.28 makes a directory";

const ARGS_FROM_A_BASE_STAGE: &str = "BuildKit's dispatchState.init inherits the base stage's buildArgs, and its dispatchArg \
     leaves a redeclared ARG without a value as it was; buildah 1.28 does neither";

corpus! {
    kaniko_copy => Case {
        name: "kaniko-copy",
        pins: &[
            DockerPin { path: "hello", docker: Docker::File("100755 0:0", "foo\n"), why: EACH_SOURCE_ON_ITS_OWN },
            DockerPin { path: "hello/foo", docker: Docker::Absent, why: EACH_SOURCE_ON_ITS_OWN },
        ],
        ..Case::default()
    };
    kaniko_add => Case {
        name: "kaniko-add",
        build_args: &["file=context/foo"],
        pins: &[
            DockerPin { path: "tars", docker: Docker::Dir("40755 0:0"), why: ARCHIVE_ROOT_ENTRY },
            DockerPin { path: "tars_again", docker: Docker::Dir("40755 0:0"), why: ARCHIVE_ROOT_ENTRY },
        ],
        ..Case::default()
    };
    kaniko_copy_chown_intermediate_dirs => Case { name: "kaniko-copy-chown-intermediate-dirs", ..Case::default() };
    kaniko_copyadd_chmod => Case {
        name: "kaniko-copyadd-chmod",
        pins: &[DockerPin { path: "dir777", docker: Docker::Dir("40777 0:0"), why: CHMOD_ON_CREATED_DIRECTORY }],
        ..Case::default()
    };
    kaniko_workdir => Case { name: "kaniko-workdir", build_args: &["workdir=/ws"], ..Case::default() };
    kaniko_multistage => Case { name: "kaniko-multistage", build_args: &["file=/foo2"], ..Case::default() };
    kaniko_dangling_symlink => Case { name: "kaniko-dangling-symlink", ..Case::default() };
    kaniko_replace_folder_with_file => Case { name: "kaniko-replace-folder-with-file", ..Case::default() };
    kaniko_replace_folder_with_link => Case { name: "kaniko-replace-folder-with-link", ..Case::default() };
    kaniko_deleted_file => Case { name: "kaniko-deleted-file", ..Case::default() };
    kaniko_copy_symlink => Case {
        name: "kaniko-copy-symlink",
        config_pins: &[("WorkingDir", r#""/""#, SCRATCH_WORKDIR)],
        ..Case::default()
    };
    kaniko_arg_multi => Case { name: "kaniko-arg-multi", ..Case::default() };
    kaniko_metadata => Case { name: "kaniko-metadata", ..Case::default() };
    kaniko_env => Case {
        name: "kaniko-env",
        config_pins: &[(
            "Env",
            r#"["PATH=something","hey=hello","testmultipleeq=this=is a=test string=with a=lot of=equals","first=foo","second=foo2","third=foo2:/third","myName=John Doe","myDog=Rex The Dog","myCat=fluffy","test=value value2","test1=a'b'c","test2=a\"b\"c","test3=a b","name2=b c","test4=a\"b","test5=a\\\"b","test6=a\\'b","atomic=two","newatomic=one","newenv=/newenv"]"#,
            ENV_IN_PLACE,
        )],
        ..Case::default()
    };
    kaniko_multistage_args => Case {
        name: "kaniko-multistage-args",
        pins: &[
            DockerPin { path: "B.txt", docker: Docker::File("100644 0:0", "dev:: base-dev\n"), why: ARGS_FROM_A_BASE_STAGE },
            // `ARG NAME` redeclared without a default keeps base-dev; what Docker 20.10's
            // BuildKit printed for this Dockerfile here (`docker build --progress=plain`).
            DockerPin { path: "C.txt", docker: Docker::File("100644 0:0", "custom:: base-dev\ncustom:: \n"), why: ARGS_FROM_A_BASE_STAGE },
            DockerPin { path: "D.txt", docker: Docker::File("100644 0:0", "custom:: base-dev\ncustom:: fix\n"), why: ARGS_FROM_A_BASE_STAGE },
        ],
        ..Case::default()
    };
    kaniko_onbuild => Case {
        name: "kaniko-onbuild",
        build_args: &["file=/tmp/onbuild-file"],
        pins: &[
            DockerPin { path: "foo", docker: Docker::Absent, why: ONBUILD_FROM_A_STAGE },
            DockerPin { path: "tmp/onbuild", docker: Docker::File("100644 0:0", "onbuild\n"), why: ONBUILD_FROM_A_STAGE },
            DockerPin { path: "tmp/dir", docker: Docker::Dir("40755 0:0"), why: ONBUILD_FROM_A_STAGE },
            DockerPin { path: "tmp/dir/onbuild2", docker: Docker::File("100644 0:0", "onbuild 2\n"), why: ONBUILD_FROM_A_STAGE },
            DockerPin { path: "new", docker: Docker::Dir("40755 0:0"), why: ONBUILD_FROM_A_STAGE },
            DockerPin { path: "new/workdir", docker: Docker::Dir("40755 0:0"), why: ONBUILD_FROM_A_STAGE },
            DockerPin { path: "new/workdir/foo", docker: Docker::File("100755 0:0", "foo\n"), why: ONBUILD_FROM_A_STAGE },
        ],
        config_pins: &[("WorkingDir", r#""/new/workdir""#, ONBUILD_FROM_A_STAGE)],
    };
    kaniko_user_run => Case { name: "kaniko-user-run", ..Case::default() };
    kaniko_user_home => Case { name: "kaniko-user-home", ..Case::default() };
    kaniko_workdir_with_user => Case { name: "kaniko-workdir-with-user", ..Case::default() };
    buildah_dest_symlink => Case { name: "buildah-dest-symlink", ..Case::default() };
    buildah_dest_symlink_dangling => Case { name: "buildah-dest-symlink-dangling", ..Case::default() };
    buildah_workdir_symlink => Case { name: "buildah-workdir-symlink", ..Case::default() };
    buildah_copy_workdir => Case { name: "buildah-copy-workdir", ..Case::default() };
    buildah_copy_globs => Case {
        name: "buildah-copy-globs",
        pins: &[
            DockerPin { path: "testdir", docker: Docker::File("100644 0:0", ""), why: EACH_SOURCE_ON_ITS_OWN },
            DockerPin { path: "testdir/test1.txt", docker: Docker::Absent, why: EACH_SOURCE_ON_ITS_OWN },
            DockerPin { path: "testdir/test2.txt", docker: Docker::Absent, why: EACH_SOURCE_ON_ITS_OWN },
        ],
        config_pins: &[("WorkingDir", r#""/""#, SCRATCH_WORKDIR)],
        ..Case::default()
    };
    buildah_copy_chown => Case { name: "buildah-copy-chown", ..Case::default() };
    buildah_multi_stage_extended => Case {
        name: "buildah-multi-stage-extended",
        config_pins: &[(
            "Env",
            r#"["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","BUILD_LOGLEVEL=5","OPENSHIFT_BUILD_NAME=mydockertest-1","OPENSHIFT_BUILD_NAMESPACE=default"]"#,
            ENV_IN_PLACE,
        )],
        ..Case::default()
    };
    e2b_copy_variations => Case { name: "e2b-copy-variations", ..Case::default() };
    e2b_multiple_env => Case { name: "e2b-multiple-env", ..Case::default() };
    e2b_multi_stage => Case { name: "e2b-multi-stage", ..Case::default() };
    e2b_complex_python => Case { name: "e2b-complex-python", ..Case::default() };
    e2b_code_interpreter => Case { name: "e2b-code-interpreter", ..Case::default() };
}
