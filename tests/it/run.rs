//! RUN and multi-stage builds: commands run in the sandbox as root and, through `setpriv`, as
//! an unprivileged user in a user namespace; the layers they make are read back with tar and
//! umoci.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::binary::{
    Workspace, assert_success, binary_for_anyone, busybox_base, needs_root, umoci_unpack,
};

/// Who runs dockless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum As {
    Root,
    /// uid 65534, which scripts/setup.sh gives subordinate IDs in /etc/subuid and /etc/subgid:
    /// the sandbox maps 65536 IDs with newuidmap and newgidmap.
    Nobody,
    /// uid 4242, with no subordinate IDs: the sandbox maps only root.
    Stranger,
}

impl As {
    fn id(self) -> &'static str {
        match self {
            As::Root => "0",
            As::Nobody => "65534",
            As::Stranger => "4242",
        }
    }
}

/// Fails (rather than skipping) when the machine lacks what the rootless tests need.
pub(crate) fn require_subordinate_ids() {
    let listed = |file: &str| {
        fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("nobody:") || l.starts_with("65534:"))
    };
    assert!(
        listed("/etc/subuid") && listed("/etc/subgid") && Path::new("/usr/bin/newuidmap").exists(),
        "the rootless tests need newuidmap (package uidmap) and subordinate IDs for nobody in \
         /etc/subuid and /etc/subgid: run scripts/setup.sh"
    );
}

/// `dockless ARGS…` in the workspace, as root or (through setpriv) as nobody.
fn dockless(ws: &Workspace, who: As, args: &[&str]) -> Output {
    dockless_with_env(ws, who, args, &[])
}

/// [`dockless`] with more variables in its environment.
pub(crate) fn dockless_with_env(
    ws: &Workspace,
    who: As,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = dockless_as(ws, who);
    cmd.envs(env.iter().copied()).args(args).output().unwrap()
}

/// The command that runs dockless in the workspace as `who`, to be given its arguments.
pub(crate) fn dockless_as(ws: &Workspace, who: As) -> Command {
    match who {
        As::Root => ws.dockless(),
        As::Nobody | As::Stranger => {
            if who == As::Nobody {
                require_subordinate_ids();
            }
            // Everything the build touches must belong to the unprivileged user.
            chown_tree(ws.path(), who.id());
            let template = ws.dockless();
            let mut cmd = Command::new("setpriv");
            cmd.args([
                &format!("--reuid={}", who.id()),
                &format!("--regid={}", who.id()),
                "--clear-groups",
                binary_for_anyone().to_str().unwrap(),
            ]);
            cmd.current_dir(ws.path());
            for (key, value) in template.get_envs() {
                match value {
                    Some(value) => cmd.env(key, value),
                    None => cmd.env_remove(key),
                };
            }
            cmd
        }
    }
}

pub(crate) fn chown_tree(path: &Path, id: &str) {
    let out = Command::new("chown")
        .args(["-R", &format!("{id}:{id}"), path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
}

/// Builds `ctx` into the layout `out:t`; returns the --json output and stderr.
pub(crate) fn build(ws: &Workspace, who: As, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec![
        "-v", "build", "ctx", "--output", "out", "--tag", "t", "--json",
    ];
    args.extend_from_slice(extra);
    let out = dockless(ws, who, &args);
    assert_success(&out);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (json, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Builds and expects failure; returns stderr.
fn build_err(ws: &Workspace, who: As, extra: &[&str]) -> String {
    let mut args = vec!["build", "ctx", "--output", "out"];
    args.extend_from_slice(extra);
    let out = dockless(ws, who, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!ws.out().exists(), "a failed build leaves no output");
    let leftovers: Vec<_> = fs::read_dir(ws.cache().join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    stderr
}

/// What a layer tar says of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarEntry {
    pub(crate) kind: char,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) link: String,
    pub(crate) data: Vec<u8>,
}

/// The entries of the layer at `index` of the image in `out:t`, by path.
pub(crate) fn layer(
    ws: &Workspace,
    json: &serde_json::Value,
    index: usize,
) -> BTreeMap<String, TarEntry> {
    let digest = json["layers"][index]["digest"].as_str().unwrap();
    let path = ws
        .out()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let gz = flate2::read::GzDecoder::new(fs::File::open(path).unwrap());
    let mut archive = tar::Archive::new(gz);
    let mut entries = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => 'f',
        };
        entries.insert(
            String::from_utf8_lossy(&entry.path_bytes())
                .trim_end_matches('/')
                .to_owned(),
            TarEntry {
                kind,
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                link: entry
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                data,
            },
        );
    }
    entries
}

/// A workspace with the busybox base and a Dockerfile that starts from it (`{base}` in
/// `dockerfile` is replaced by the base reference).
pub(crate) fn workspace(dockerfile: &str) -> Workspace {
    let ws = Workspace::new();
    let base = busybox_base(ws.path());
    ws.write("Dockerfile", dockerfile.replace("{base}", &base));
    ws
}

/// Shell and exec forms; ENV, ARG and WORKDIR reach the command; a deleted base file becomes a
/// whiteout; chmod, symlinks, new directories; an owner set in an earlier layer is kept when
/// the command rewrites the file.
const EVERYDAY: &str = r#"FROM {base}
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ARG WHO=builder
ENV GREETING=hello
WORKDIR /work
COPY --chown=7:8 owned.txt /owned.txt
RUN echo "$GREETING $WHO in $(pwd) as $(id -u), pid $$" > out.txt
RUN rm /etc/os-release && chmod 4750 /work/out.txt && ln -s /work/out.txt /link \
 && mkdir -p /made/deep && echo more >> /owned.txt && ls /proc/self/fd /dev/null >/dev/null
"#;

fn everyday(who: As) -> (Workspace, serde_json::Value) {
    let ws = workspace(EVERYDAY);
    ws.write("owned.txt", "mine\n");
    let (json, _) = build(&ws, who, &["--build-arg", "WHO=tester"]);
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        7,
        "two base layers, then one per RUN, WORKDIR and COPY: {json}"
    );

    let echo = layer(&ws, &json, 5);
    assert_eq!(echo.keys().collect::<Vec<_>>(), ["work/out.txt"]);
    let out = &echo["work/out.txt"];
    assert_eq!(
        String::from_utf8_lossy(&out.data),
        "hello tester in /work as 0, pid 1\n",
        "ENV, ARG and WORKDIR apply; the command is PID 1 of its namespace"
    );
    assert_eq!((out.uid, out.gid, out.mode), (0, 0, 0o644));

    let changes = layer(&ws, &json, 6);
    let paths: Vec<&str> = changes.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "etc/.wh.os-release",
            "link",
            "made",
            "made/deep",
            "owned.txt",
            "work/out.txt"
        ],
        "{changes:#?}"
    );
    assert_eq!(changes["link"].kind, 'l');
    assert_eq!(changes["link"].link, "/work/out.txt");
    assert_eq!(changes["work/out.txt"].mode, 0o4750);
    assert_eq!(changes["made/deep"].kind, 'd');
    let owned = &changes["owned.txt"];
    assert_eq!(String::from_utf8_lossy(&owned.data), "mine\nmore\n");
    assert_eq!(
        (owned.uid, owned.gid),
        (7, 8),
        "the owner from COPY --chown stays"
    );
    (ws, json)
}

#[test]
fn run_as_root_applies_env_workdir_and_records_every_kind_of_change() {
    if !needs_root("to run as root and to own files as other users") {
        return;
    }
    let (ws, _) = everyday(As::Root);
    let (_bundle, rootfs) = umoci_unpack(&ws.out(), "t");
    assert!(!rootfs.join("etc/os-release").exists(), "whiteout applied");
    assert!(rootfs.join("etc/passwd").exists());
    assert_eq!(
        fs::read_link(rootfs.join("link")).unwrap(),
        Path::new("/work/out.txt")
    );
    assert!(rootfs.join("bin/sh").exists());
}

#[test]
fn run_rootless_in_a_user_namespace_gives_the_same_image_as_root() {
    if !needs_root("to switch to the unprivileged users") {
        return;
    }
    let (_, as_root) = everyday(As::Root);
    for who in [As::Nobody, As::Stranger] {
        let (_, rootless) = everyday(who);
        assert_eq!(
            rootless["digest"], as_root["digest"],
            "{who:?}: the same Dockerfile gives the same image whoever builds it"
        );
    }
}

#[test]
fn chown_and_user_need_root_or_fail_clearly_without() {
    let dockerfile = "FROM {base}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
        RUN mkdir /data && chown 5:6 /data && mkdir -m 1777 /tmp && echo app:x:1000:1000::/:/bin/sh >> /etc/passwd\n\
        USER app\nRUN id -u > /tmp/who && touch /tmp/by-app\n";
    if needs_root("to build as root and, through setpriv, as other users") {
        // As root, and rootless with subordinate IDs: real owners, and USER runs as that user.
        let mut digests = Vec::new();
        for who in [As::Root, As::Nobody] {
            let ws = workspace(dockerfile);
            let (json, _) = build(&ws, who, &[]);
            let chowned = layer(&ws, &json, 3);
            assert_eq!(
                (chowned["data"].uid, chowned["data"].gid),
                (5, 6),
                "{who:?}"
            );
            let as_app = layer(&ws, &json, 4);
            assert_eq!(String::from_utf8_lossy(&as_app["tmp/who"].data), "1000\n");
            assert_eq!(
                as_app["tmp/by-app"].uid, 1000,
                "{who:?}: USER applies to RUN"
            );
            digests.push(json["digest"].clone());
        }
        assert_eq!(digests[0], digests[1]);

        // Unprivileged without subordinate IDs only root is mapped: chown to another ID
        // fails, with its message.
        let ws = workspace(dockerfile);
        let err = build_err(&ws, As::Stranger, &[]);
        assert!(err.contains("Dockerfile:3"), "{err}");
        assert!(err.contains("exit code 1"), "{err}");
        assert!(err.contains("chown"), "{err}");
        // And USER other than root cannot run commands there: a clear message says why.
        let ws = workspace(
            "FROM {base}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nUSER 1000\nRUN true\n",
        );
        let err = build_err(&ws, As::Stranger, &[]);
        assert!(err.contains("Dockerfile:4"), "{err}");
        assert!(err.contains("USER 1000:1000"), "{err}");
        assert!(err.contains("--isolation=root"), "{err}");
    }
}

/// Docker's RUN environment beyond what the Dockerfile sets: `HOME` from the user's
/// /etc/passwd entry (`/` for an ID it does not list) unless ENV sets it, `HOSTNAME` as
/// BuildKit names its sandbox, and a user added by an earlier RUN counts; an ID the passwd
/// file does not list runs with group 0 (runc's rule, unlike --chown's).
const RUN_ENVIRONMENT: &str = r#"FROM {base}
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -m 1777 /out && echo "root $HOME $HOSTNAME $(hostname) $PATH" > /out/root \
 && echo dev:x:1001:1001:dev:/home/dev:/bin/sh >> /etc/passwd
USER user
RUN echo "user $HOME $(id -u):$(id -g)" > /out/user
USER dev
RUN echo "dev $HOME" > /out/dev
USER 4242
RUN echo "unlisted $HOME $(id -u):$(id -g)" > /out/unlisted
ENV HOME=/elsewhere
RUN echo "env $HOME" > /out/env
"#;

#[test]
fn run_gets_home_from_passwd_and_hostname_like_docker() {
    if !needs_root("to run as root and to own files as other users") {
        return;
    }
    for who in [As::Root, As::Nobody] {
        let ws = workspace(RUN_ENVIRONMENT);
        let (json, _) = build(&ws, who, &[]);
        let count = json["layers"].as_array().unwrap().len();
        let mut seen = BTreeMap::new();
        for index in 3..count {
            for (path, entry) in layer(&ws, &json, index) {
                if let Some(name) = path.strip_prefix("out/") {
                    seen.insert(
                        name.to_owned(),
                        String::from_utf8_lossy(&entry.data).into_owned(),
                    );
                }
            }
        }
        let expected: BTreeMap<String, String> = [
            ("root", "root /root buildkitsandbox buildkitsandbox /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
            ("user", "user /home/user 1000:1000\n"),
            ("dev", "dev /home/dev\n"),
            ("unlisted", "unlisted / 4242:0\n"),
            ("env", "env /elsewhere\n"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(seen, expected, "{who:?}");
    }
}

/// The image config of `out:t`, as stored.
pub(crate) fn config(ws: &Workspace, json: &serde_json::Value) -> serde_json::Value {
    let blob = |digest: &str| {
        fs::read(
            ws.out()
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(json["digest"].as_str().unwrap())).unwrap();
    serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()
}

#[test]
fn workdir_makes_its_directories_owned_by_the_user_as_buildkit_does() {
    // BuildKit makes WORKDIR's directory, and each parent it creates, with the stage's USER
    // as owner: a number as uid:uid, a name from /etc/passwd with its primary group.
    let ws = workspace(
        "FROM {base}\nUSER 9999\nWORKDIR /w1\nUSER user\nWORKDIR /home/user/app\nUSER root\nWORKDIR /r\n",
    );
    let (json, _) = build(&ws, As::Root, &[]);
    let numeric = layer(&ws, &json, 2);
    assert_eq!(
        (numeric["w1"].uid, numeric["w1"].gid, numeric["w1"].mode),
        (9999, 9999, 0o755)
    );
    let named = layer(&ws, &json, 3);
    assert_eq!(
        named.keys().collect::<Vec<_>>(),
        ["home", "home/user", "home/user/app"]
    );
    for entry in named.values() {
        assert_eq!(
            (entry.uid, entry.gid, entry.kind),
            (1000, 1000, 'd'),
            "{named:?}"
        );
    }
    let root = layer(&ws, &json, 4);
    assert_eq!((root["r"].uid, root["r"].gid), (0, 0));
    // A name the image does not list gives root, as BuildKit's readUser does.
    let ws = workspace("FROM {base}\nUSER nosuch\nWORKDIR /w\n");
    let (json, _) = build(&ws, As::Root, &[]);
    let unknown = layer(&ws, &json, 2);
    assert_eq!((unknown["w"].uid, unknown["w"].gid), (0, 0));
}

#[test]
fn a_stage_built_on_another_keeps_its_arg_values() {
    // Docker's build-variables documentation: a stage FROM another stage inherits its ARGs.
    let ws = workspace(
        "ARG GLOBAL=g\nFROM {base} AS first\nARG VERSION=1.2\nARG GLOBAL\nFROM first AS second\nENV SEEN=\"$VERSION-$GLOBAL\"\n",
    );
    let (json, _) = build(&ws, As::Root, &[]);
    let env = config(&ws, &json)["config"]["Env"].clone();
    assert!(
        env.as_array().unwrap().iter().any(|e| e == "SEEN=1.2-g"),
        "{env}"
    );
}

/// An ARG redeclared without a default in a stage built on another keeps the value that stage
/// gave it (BuildKit's `dispatchArg` sets nothing when there is no value; `docker build` prints
/// `x` here), in ENV and in RUN, and passes it on to the stages below.
#[test]
fn an_arg_redeclared_without_a_default_keeps_the_value_of_the_stage_below() {
    let ws = workspace(
        "FROM {base} AS a\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nARG NAME=\"x\"\n\
         FROM a AS b\nARG NAME\nENV SEEN=\"[$NAME]\"\n\
         RUN echo \"[$NAME]\" > /run-saw\nFROM b AS c\nARG NAME\nENV AGAIN=\"[$NAME]\"\n",
    );
    let (json, _) = build(&ws, As::Root, &[]);
    let env = config(&ws, &json)["config"]["Env"].clone();
    let env: Vec<&str> = env
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"SEEN=[x]") && env.contains(&"AGAIN=[x]"),
        "{env:?}"
    );
    let last = json["layers"].as_array().unwrap().len() - 1;
    let run = layer(&ws, &json, last);
    assert_eq!(run["run-saw"].data, b"[x]\n", "the RUN's environment");
}

#[test]
fn onbuild_triggers_run_right_after_from_and_are_not_passed_on() {
    // From a stage: its ONBUILD lines run in the stage built on it, at its FROM.
    let ws = workspace(
        "FROM {base} AS parent\nONBUILD ENV TRIGGERED=yes\nONBUILD COPY marker.txt /marker.txt\n\
         FROM parent\nENV AFTER=$TRIGGERED\n",
    );
    ws.write("marker.txt", "from the trigger\n");
    let (json, _) = build(&ws, As::Root, &[]);
    let image = config(&ws, &json);
    let env = image["config"]["Env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e == "AFTER=yes"),
        "the trigger ran before the next line: {image}"
    );
    assert!(
        image["config"]["OnBuild"].is_null(),
        "triggers are not passed on: {image}"
    );
    let last = layer(&ws, &json, json["layers"].as_array().unwrap().len() - 1);
    assert_eq!(
        String::from_utf8_lossy(&last["marker.txt"].data),
        "from the trigger\n"
    );

    // From an image that carries triggers: they run, and the child carries none.
    let parent = workspace("FROM {base}\nONBUILD ENV TRIGGERED=image\n");
    let (_, _) = build(&parent, As::Root, &[]);
    let parent_out = parent.out();
    let ws = workspace(&format!(
        "FROM oci:{}:t\nLABEL child=yes\n",
        parent_out.display()
    ));
    let (json, _) = build(&ws, As::Root, &[]);
    let image = config(&ws, &json);
    assert!(
        image["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "TRIGGERED=image"),
        "{image}"
    );
    assert!(image["config"]["OnBuild"].is_null(), "{image}");
}

/// Heredocs as Docker's Dockerfile reference describes them: a RUN that is one heredoc runs
/// its body with the shell, or as a script when it starts with `#!` (BuildKit puts it in
/// /dev/pipes, outside every layer); heredocs inside a command line reach the shell as
/// heredocs; COPY and ADD write each body as a file named after it, expanding variables
/// unless the name is quoted. (buildah 1.28 predates heredocs, so Docker's documentation is
/// the reference here.)
const HEREDOCS: &str = "FROM {base}
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
ARG WHO=docker
RUN <<EOF
mkdir -p /out
echo \"plain $WHO $HOME\" > /out/plain
EOF
RUN <<'SCRIPT'
#!/bin/sh
echo \"script $0\" > /out/script
SCRIPT
RUN cat <<A > /out/a && cat <<-B > /out/b
a $WHO
A
\tchomped
\tB
COPY <<EOF /out/copied
copied $WHO
EOF
COPY <<'RAW' /out/raw
raw $WHO \"q\"
RAW
COPY --chmod=755 <<one <<two /out/dir/
1
one
2
two
ADD <<EOF /out/added
added
EOF
";

#[test]
fn heredocs_in_run_copy_and_add_follow_dockers_reference() {
    if !needs_root("to run as root and to own files as other users") {
        return;
    }
    let ws = workspace(HEREDOCS);
    let (json, _) = build(&ws, As::Root, &[]);
    let (_keep, rootfs) = umoci_unpack(&ws.out(), "t");
    let read = |path: &str| {
        fs::read_to_string(rootfs.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    assert_eq!(read("out/plain"), "plain docker /root\n");
    assert_eq!(read("out/script"), "script /dev/pipes/SCRIPT\n");
    assert_eq!(read("out/a"), "a docker\n");
    assert_eq!(read("out/b"), "chomped\n");
    assert_eq!(read("out/copied"), "copied docker\n");
    assert_eq!(read("out/raw"), "raw $WHO \"q\"\n");
    assert_eq!(read("out/dir/one"), "1\n");
    assert_eq!(read("out/dir/two"), "2\n");
    assert_eq!(read("out/added"), "added\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &str| {
        fs::metadata(rootfs.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!((mode("out/copied"), mode("out/dir/one")), (0o644, 0o755));
    for index in 0..json["layers"].as_array().unwrap().len() {
        assert!(
            !layer(&ws, &json, index)
                .keys()
                .any(|path| path.starts_with("dev/")),
            "the script stays out of the layers"
        );
    }
}

/// RUN --mount as Docker's Dockerfile reference describes it: secrets as a file under
/// /run/secrets (or a target, or an environment variable) that no layer, log or config holds;
/// a cache directory that outlives the build and never enters a layer; context files bound
/// read-only as .dockerignore lets them in; another stage's tree; a tmpfs. No mount point is
/// left behind in a layer.
const MOUNTS: &str = "FROM {base} AS tools
COPY tool.txt /opt/tool.txt
FROM {base}
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN mkdir -m 1777 /out
ARG ROUND=1
RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /out/secret-length \
 && stat -c %a /run/secrets/token > /out/secret-mode
RUN --mount=type=secret,id=token,env=TOKEN,target=/tmp/token \
    sh -c 'test \"$TOKEN\" = \"$(cat /tmp/token)\" && echo same > /out/env-same'
RUN --mount=type=secret,id=absent echo ran > /out/absent-secret
RUN --mount=type=cache,target=/var/cache/things \
    sh -c 'echo $ROUND >> /var/cache/things/rounds && cat /var/cache/things/rounds > /out/cache'
RUN --mount=type=bind,source=src,target=/src \
    sh -c 'cat /src/hello > /out/bound; ls -A /src > /out/bound-list; \
           if touch /src/new 2>/dev/null; then echo writable; else echo read-only; fi > /out/bound-rw'
RUN --mount=type=bind,from=tools,source=/opt,target=/mnt/tools cat /mnt/tools/tool.txt > /out/from-stage
RUN --mount=type=tmpfs,target=/scratch sh -c 'echo t > /scratch/t && grep -c \" /scratch tmpfs \" /proc/mounts > /out/tmpfs'
";

const SECRET: &str = "s3cr3t-value-that-must-not-leak";

fn mounts_workspace() -> Workspace {
    let ws = workspace(MOUNTS);
    ws.write("tool.txt", "from the tools stage\n");
    ws.write("src/hello", "hello from the context\n");
    ws.write("src/ignored.env", "IGNORED=yes\n");
    ws.write(".dockerignore", "src/ignored.env\n");
    fs::write(ws.path().join("token.txt"), SECRET).unwrap();
    ws
}

/// Every file of the image `out:t` by path, and the whole text of its layers and config.
fn image_files(ws: &Workspace, json: &serde_json::Value) -> (BTreeMap<String, String>, String) {
    let mut files = BTreeMap::new();
    let mut everything = String::new();
    for index in 0..json["layers"].as_array().unwrap().len() {
        for (path, entry) in layer(ws, json, index) {
            let text = String::from_utf8_lossy(&entry.data).into_owned();
            everything.push_str(&path);
            everything.push_str(&text);
            files.insert(path, text);
        }
    }
    everything.push_str(&config(ws, json).to_string());
    (files, everything)
}

#[test]
fn run_mounts_follow_dockers_reference_and_leave_nothing_behind() {
    if !needs_root("to run as root and to own files as other users") {
        return;
    }
    for who in [As::Root, As::Nobody] {
        let ws = mounts_workspace();
        let token = ws.path().join("token.txt");
        let secret = format!("id=token,src={}", token.display());
        let (json, log) = build(&ws, who, &["-vvv", "--secret", &secret]);
        let (files, everything) = image_files(&ws, &json);
        assert_eq!(
            files["out/secret-length"],
            format!("{}\n", SECRET.len()),
            "{who:?}"
        );
        assert_eq!(files["out/secret-mode"], "400\n");
        assert_eq!(files["out/env-same"], "same\n");
        assert_eq!(
            files["out/absent-secret"], "ran\n",
            "an optional secret may be absent"
        );
        assert_eq!(files["out/cache"], "1\n");
        assert_eq!(files["out/bound"], "hello from the context\n");
        assert_eq!(
            files["out/bound-list"], "hello\n",
            ".dockerignore applies to bind mounts"
        );
        assert_eq!(files["out/bound-rw"], "read-only\n");
        assert_eq!(files["out/from-stage"], "from the tools stage\n");
        assert_eq!(files["out/tmpfs"], "1\n");
        for path in files.keys() {
            assert!(
                !["run", "src", "mnt", "scratch", "var", "tmp/token"]
                    .iter()
                    .any(|stub| path == stub || path.starts_with(&format!("{stub}/"))),
                "{who:?}: a mount point or mounted file is in a layer: {path}"
            );
        }
        assert!(
            !everything.contains(SECRET),
            "{who:?}: the secret is in the image"
        );
        assert!(!log.contains(SECRET), "{who:?}: the secret is in the log");

        // The cache outlives the build: a RUN that runs again sees what the last one left.
        let (json, _) = build(&ws, who, &["--secret", &secret, "--build-arg", "ROUND=2"]);
        let (files, _) = image_files(&ws, &json);
        assert_eq!(files["out/cache"], "1\n2\n", "{who:?}");
    }

    // A required secret the build was not given stops it, naming the flag to pass.
    let ws = workspace(
        "FROM {base}\nRUN --mount=type=secret,id=npmrc,required [\"/bin/busybox\", \"true\"]\n",
    );
    let err = build_err(&ws, As::Root, &[]);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("--secret id=npmrc,src=FILE"), "{err}");
}

#[test]
fn a_bad_run_flag_names_its_line_when_read_or_when_expanded() {
    // Without variables a mistake is known when the Dockerfile is read: nothing is built, not
    // even when the stage is one the target does not need.
    let ws = workspace(
        "FROM {base} AS unused\nRUN --mount=type=cache,target=/c,sharing=sometimes true\n\
         FROM {base}\nRUN [\"/bin/busybox\", \"true\"]\n",
    );
    let err = build_err(&ws, As::Root, &[]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("unsupported sharing value \"sometimes\""),
        "{err}"
    );
    assert!(!err.contains("RUN ["), "nothing ran: {err}");
    let ws = workspace("FROM {base}\nRUN --network=bridge [\"/bin/busybox\", \"true\"]\n");
    let err = build_err(&ws, As::Root, &[]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("invalid network mode \"bridge\""),
        "{err}"
    );

    // A value with a variable is checked when its RUN is built, with the stage's variables.
    let ws = workspace(
        "FROM {base}\nARG SHARING=sometimes\n\
         RUN --mount=type=cache,target=/c,sharing=$SHARING [\"/bin/busybox\", \"true\"]\n",
    );
    let err = build_err(&ws, As::Root, &[]);
    assert!(
        err.contains("Dockerfile:3") && err.contains("unsupported sharing value \"sometimes\""),
        "{err}"
    );
    let (json, _) = build(&ws, As::Root, &["--build-arg", "SHARING=locked"]);
    assert!(json["digest"].is_string(), "{json}");

    // What is valid for BuildKit but dockless cannot serve is refused only where it is built.
    let ssh = "FROM {base} AS keys\nRUN --mount=type=ssh [\"/bin/busybox\", \"true\"]\n\
               FROM {base}\nRUN [\"/bin/busybox\", \"true\"]\n";
    build(&workspace(ssh), As::Root, &[]);
    let err = build_err(&workspace(ssh), As::Root, &["--target", "keys"]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("type=ssh is not supported"),
        "{err}"
    );
}

#[test]
fn shell_sets_the_shell_of_the_shell_form() {
    // No /bin/sh in the base: the shell form works only through SHELL.
    let ws = workspace(
        "FROM {base}\nSHELL [\"/bin/busybox\", \"sh\", \"-c\"]\n\
         RUN echo \"$0 ran this\" > /shell.txt\n",
    );
    let (json, _) = build(&ws, As::Root, &[]);
    let layer = layer(&ws, &json, 2);
    assert_eq!(
        String::from_utf8_lossy(&layer["shell.txt"].data),
        "sh ran this\n"
    );
}

#[test]
fn a_failing_command_stops_the_build_with_its_exit_code_and_line() {
    for who in [As::Root, As::Nobody, As::Stranger] {
        if who != As::Root && !needs_root("to run as nobody and as a stranger through setpriv") {
            continue;
        }
        let ws = workspace(
            "FROM {base}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN echo about to fail >&2; exit 3\nRUN echo never\n",
        );
        let err = build_err(&ws, who, &[]);
        assert!(err.contains("about to fail"), "output streams: {err}");
        assert!(err.contains("Dockerfile:3"), "{err}");
        assert!(err.contains("exit code 3"), "{err}");
        assert!(!err.contains("never"), "{err}");
    }
}

#[test]
fn a_user_database_a_run_made_a_fifo_stops_the_next_run_instead_of_hanging_it() {
    if !needs_root("to build as root and, through setpriv, as nobody") {
        return;
    }
    // The USER lookup of the next RUN reads /etc/passwd on the host side (as root from the
    // tree, without root from the layers of the helper's overlay); a FIFO there used to block
    // that read for ever, with no process left to write to it.
    for who in [As::Root, As::Nobody] {
        let ws = workspace(
            "FROM {base}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN rm -f /etc/passwd && mkfifo /etc/passwd\nUSER nobody\nRUN echo ran-$((40 + 2))\n",
        );
        let err = build_err(&ws, who, &[]);
        assert!(err.contains("Dockerfile:5"), "{who:?}: {err}");
        assert!(
            err.contains("user 'nobody' is not in the image's /etc/passwd"),
            "{who:?}: {err}"
        );
        assert!(
            !err.contains("ran-42"),
            "{who:?}: the RUN after the FIFO ran: {err}"
        );
    }
}

#[test]
fn isolation_root_without_root_names_the_alternatives() {
    if !needs_root("to run the build as nobody through setpriv") {
        return;
    }
    let ws = workspace("FROM {base}\nRUN [\"/bin/busybox\", \"true\"]\n");
    let err = build_err(&ws, As::Nobody, &["--isolation", "root"]);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("--isolation=root needs root"), "{err}");
    assert!(err.contains("--isolation=userns"), "{err}");
}

#[test]
fn an_unchanged_run_is_not_run_again() {
    // The command writes random bytes: running it again would give another layer.
    let ws = workspace(
        "FROM {base}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nENV STEP=1\n\
         RUN head -c 32 /dev/urandom > /random\n",
    );
    let (first, log) = build(&ws, As::Root, &[]);
    assert_eq!(log.matches("RUN cached").count(), 0, "{log}");
    // The base's tree was unpacked into the store's cache, once.
    let cached_trees = || -> Vec<(std::path::PathBuf, u64)> {
        use std::os::unix::fs::MetadataExt;
        fs::read_dir(ws.cache().join("rootfs"))
            .unwrap()
            .flatten()
            .map(|e| (e.path(), e.metadata().unwrap().ino()))
            .collect()
    };
    let trees = cached_trees();
    assert_eq!(trees.len(), 1, "{trees:?}");
    assert!(trees[0].0.join("tree/bin/busybox").is_file());
    let (second, log) = build(&ws, As::Root, &[]);
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(log.matches("RUN cached").count(), 2, "{log}");

    // A change above the RUN (here its environment) runs it again.
    let dockerfile = fs::read_to_string(ws.context().join("Dockerfile")).unwrap();
    ws.write("Dockerfile", dockerfile.replace("STEP=1", "STEP=2"));
    let (third, log) = build(&ws, As::Root, &[]);
    assert_eq!(log.matches("RUN cached").count(), 1, "{log}");
    assert_eq!(third["layers"][2], first["layers"][2]);
    assert_ne!(third["layers"][3], first["layers"][3]);
    assert_eq!(
        cached_trees(),
        trees,
        "the cached base tree is reused, not unpacked again"
    );
}

const MULTI_STAGE: &str = r#"FROM {base} AS builder
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir /out && echo built > /out/app && chmod 755 /out/app

FROM builder AS tested
RUN test "$(cat /out/app)" = built && touch /tested

# Nothing below uses this stage: it is not built (it would fail).
FROM {base} AS broken
RUN ["/bin/busybox", "false"]

FROM {base}
COPY --from=builder /out/app /usr/local/bin/app
COPY --from=0 /out /copied
COPY --from={base} /etc/os-release /from-image
"#;

#[test]
fn multi_stage_copies_from_stages_and_images_and_target_stops_early() {
    let ws = workspace(MULTI_STAGE);
    let (json, _) = build(&ws, As::Root, &[]);
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        5,
        "two base layers + three COPY layers: {json}"
    );
    let app = layer(&ws, &json, 2);
    assert_eq!(app["usr/local/bin/app"].data, b"built\n");
    assert_eq!(app["usr/local/bin/app"].mode, 0o755);
    let dir = layer(&ws, &json, 3);
    assert_eq!(dir["copied/app"].data, b"built\n");
    let from_image = layer(&ws, &json, 4);
    assert!(
        String::from_utf8_lossy(&from_image["from-image"].data).contains("busybox"),
        "{from_image:?}"
    );

    let (target, _) = build(&ws, As::Root, &["--target", "builder"]);
    assert_eq!(target["layers"].as_array().unwrap().len(), 4);
    assert_eq!(layer(&ws, &target, 3)["out/app"].data, b"built\n");
    let (tested, _) = build(&ws, As::Root, &["--target", "tested"]);
    assert_eq!(
        tested["layers"].as_array().unwrap().len(),
        5,
        "FROM builder, then one RUN"
    );
    assert!(layer(&ws, &tested, 4).contains_key("tested"));

    fs::remove_dir_all(ws.out()).unwrap();
    let err = build_err(&ws, As::Root, &["--target", "broken"]);
    assert!(err.contains("Dockerfile:10"), "{err}");
    assert!(err.contains("exit code 1"), "{err}");

    let err = build_err(&ws, As::Root, &["--target", "nosuch"]);
    assert!(err.contains("no stage named `nosuch`"), "{err}");
    assert!(err.contains("builder, tested, broken"), "{err}");
}

#[test]
fn without_user_namespaces_the_error_names_isolation_and_the_alternatives() {
    if !needs_root("to limit user namespaces from inside one made with unshare -Ur") {
        return;
    }
    let ws = workspace("FROM {base}\nRUN [\"/bin/busybox\", \"true\"]\n");
    // A user namespace in which no further user namespace may be made: what a host with
    // unprivileged user namespaces disabled looks like to the sandbox.
    let template = ws.dockless();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-Ur",
        "sh",
        "-c",
        r#"echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" "$@""#,
        env!("CARGO_BIN_EXE_dockless"),
        "build",
        "ctx",
        "--output",
        "out",
        "--isolation",
        "userns",
    ])
    .current_dir(ws.path());
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("cannot create a user namespace"), "{err}");
    assert!(err.contains("--isolation=root"), "{err}");
    assert!(!ws.out().exists());
}

/// Every path under `root` with its type, mode, owner, link target, content digest and link
/// count: what two builders of the same Dockerfile must agree on.
pub(crate) fn file_tree(root: &Path) -> BTreeMap<String, String> {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    let mut tree = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let detail = if meta.is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_file() {
                let bytes = fs::read(&path).unwrap();
                format!(
                    "{} links {}",
                    hex::encode(sha2::Sha256::digest(&bytes)),
                    meta.nlink()
                )
            } else {
                String::new()
            };
            tree.insert(
                rel,
                format!("{:o} {}:{} {detail}", meta.mode(), meta.uid(), meta.gid()),
            );
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    tree
}

/// Builds `ctx` with buildah (chroot isolation, vfs storage, its own storage directories) and
/// writes the image as the OCI layout `dir:t`.
pub(crate) fn buildah_build(ws: &Workspace, dir: &Path) {
    buildah_build_with(ws, dir, &[]);
}

/// [`buildah_build`] with more `buildah bud` arguments (`--build-arg`, `--target`).
pub(crate) fn buildah_build_with(ws: &Workspace, dir: &Path, extra: &[&str]) {
    let storage = ws.path().join("buildah");
    let root = storage.join("root");
    let runroot = storage.join("run");
    let global = [
        "--root",
        root.to_str().unwrap(),
        "--runroot",
        runroot.to_str().unwrap(),
        "--storage-driver",
        "vfs",
    ];
    let ctx = ws.context();
    let out = Command::new("buildah")
        .args(global)
        .args(["bud", "--isolation", "chroot", "-t", "compare"])
        .args(extra)
        .arg(&ctx)
        .output()
        .expect("buildah (run scripts/setup.sh)");
    assert_success(&out);
    let target = format!("oci:{}:t", dir.display());
    let out = Command::new("buildah")
        .args(global)
        .args(["push", "compare", &target])
        .output()
        .unwrap();
    assert_success(&out);
    // buildah's vfs layers may hold files only root can remove; remove them now, as root.
    let _ = fs::remove_dir_all(&storage);
}

/// A symlink with a lower-case absolute path to `target` (buildah names the image after the
/// path of an `oci:` base, and image names must be lower case; temporary names are not).
pub(crate) struct LowercaseLink(std::path::PathBuf);

impl LowercaseLink {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for LowercaseLink {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

pub(crate) fn lowercase_link(target: &Path, name: &str) -> LowercaseLink {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let link = std::env::temp_dir().join(format!("dockless-{name}-{}-{nanos}", std::process::id()));
    std::os::unix::fs::symlink(target, &link).unwrap();
    LowercaseLink(link)
}

/// Mount points buildah leaves in its RUN layers (Docker and dockless do not).
pub(crate) const BUILDAH_MOUNT_POINTS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "run",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

/// Files whose bytes record when the build ran (logs, apt's caches, bytecode of files written
/// during the build): both builders must make them, with the same metadata, not the same bytes.
pub(crate) fn volatile(path: &str) -> bool {
    path.starts_with("var/log/")
        || path.starts_with("var/cache/apt/") && path.ends_with(".bin")
        || path.ends_with(".pyc") && path.starts_with("usr/local/")
}

/// `mode uid:gid` of a `file_tree` line, without content.
pub(crate) fn metadata_only(line: &str) -> String {
    line.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

pub(crate) fn assert_same_tree_as_buildah(ws: &Workspace) -> BTreeMap<String, String> {
    let buildah_out = ws.path().join("buildah-out");
    buildah_build(ws, &buildah_out);
    assert_same_trees(&ws.out(), &buildah_out, "buildah")
}

/// Unpacks the layouts `ours:t` and `theirs:t` and compares their file trees; returns ours.
pub(crate) fn assert_same_trees(
    ours: &Path,
    theirs: &Path,
    label: &str,
) -> BTreeMap<String, String> {
    let (_ours, ours) = umoci_unpack(ours, "t");
    let (_theirs, theirs) = umoci_unpack(theirs, "t");
    let ours = file_tree(&ours);
    let theirs = file_tree(&theirs);
    let differences = tree_differences(&ours, &theirs, label);
    assert!(
        differences.is_empty(),
        "file trees differ:\n{}",
        differences.join("\n")
    );
    ours
}

/// Where two [`file_tree`]s disagree, one line per path, ignoring the mount points buildah
/// leaves and the bytes of [`volatile`] files.
pub(crate) fn tree_differences(
    ours: &BTreeMap<String, String>,
    theirs: &BTreeMap<String, String>,
    label: &str,
) -> Vec<String> {
    let mut differences = Vec::new();
    let paths: std::collections::BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    for path in paths {
        let (a, b) = (ours.get(path), theirs.get(path));
        if a == b || (a.is_none() && BUILDAH_MOUNT_POINTS.contains(&path.as_str())) {
            continue;
        }
        if let (Some(a), Some(b)) = (a, b)
            && volatile(path)
            && metadata_only(a) == metadata_only(b)
        {
            continue;
        }
        differences.push(format!("{path}: dockless {a:?}, {label} {b:?}"));
    }
    differences
}

#[test]
fn the_file_tree_matches_buildahs_for_the_same_dockerfile() {
    if !needs_root("buildah with vfs storage") {
        return;
    }
    let ws = Workspace::new();
    busybox_base(ws.path());
    let base = lowercase_link(&ws.path().join("base"), "busybox");
    ws.write(
        "Dockerfile",
        format!(
            "FROM oci:{}:latest\n{}",
            base.path().display(),
            r#"RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV GREETING=hello
WORKDIR /work
RUN echo "$GREETING from $(pwd)" > out.txt && mkdir -p /a/b /gone/deep && chown 5:6 /a/b
RUN rm -r /etc/os-release /gone && chmod 4750 /work/out.txt && ln -s /work/out.txt /link \
 && ln /work/out.txt /hard && mkfifo /fifo && touch -d @0 /a/empty
"#
        ),
    );
    build(&ws, As::Root, &[]);
    let tree = assert_same_tree_as_buildah(&ws);
    assert!(tree["a/b"].starts_with("40755 5:6"), "{tree:?}");
    assert!(tree["work/out.txt"].starts_with("104750 0:0"), "{tree:?}");
    assert!(tree["hard"].ends_with("links 2"), "{tree:?}");
    assert!(!tree.contains_key("gone") && !tree.contains_key("etc/os-release"));
}

/// SLOW (the first time: debootstrap of a Debian base, kept in the target directory) and needs
/// Debian's mirror and PyPI: `apt-get install` and `pip install` in a Debian base, as root and
/// rootless, checked in the image and against buildah's build of the same Dockerfile.
#[test]
fn debian_slow_apt_get_and_pip_install_as_root_and_rootless_match_buildah() {
    if !needs_root("debootstrap and buildah") {
        return;
    }
    let base = crate::support::debian::debian_base();
    let link = lowercase_link(base, "debian");
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        format!(
            "FROM oci:{}:bookworm\n{}",
            link.path().display(),
            r#"RUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/*
COPY ca.crt /ca.crt
RUN pip install --cert /ca.crt --break-system-packages --no-cache-dir --no-compile six==1.16.0 \
 && python3 -c 'import six; print(six.__version__)' > /six-version && rm /ca.crt
RUN hello > /hello.txt && rm /etc/issue
"#
        ),
    );
    // HTTPS to PyPI may pass a proxy whose CA only the host trusts: pip gets the host's bundle.
    ws.write(
        "ca.crt",
        fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default(),
    );
    build(&ws, As::Root, &[]);
    let (_bundle, rootfs) = umoci_unpack(&ws.out(), "t");
    assert!(rootfs.join("usr/bin/hello").is_file());
    assert!(!rootfs.join("ca.crt").exists());
    assert_eq!(
        fs::read_to_string(rootfs.join("hello.txt")).unwrap(),
        "Hello, world!\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("six-version")).unwrap(),
        "1.16.0\n"
    );
    assert!(
        rootfs
            .join("usr/local/lib/python3.11/dist-packages/six.py")
            .is_file()
    );
    assert!(!rootfs.join("etc/issue").exists());
    assert_same_tree_as_buildah(&ws);

    // Rootless (subordinate IDs: apt drops to its _apt user), the same tree.
    let rootless = Workspace::new();
    for file in ["Dockerfile", "ca.crt"] {
        rootless.write(file, fs::read(ws.context().join(file)).unwrap());
    }
    build(&rootless, As::Nobody, &[]);
    assert_same_trees(&rootless.out(), &ws.out(), "as root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_over_a_registry_base_and_push_a_target_stage() {
    use crate::support::registry::{RegistryAuth, TestRegistry};
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let ws = Workspace::new();
    let layout = busybox_base(ws.path());
    let base = format!("{}/library/busybox:1", registry.host);
    let out = dockless(&ws, As::Root, &["push", "--from", &layout, "--to", &base]);
    assert_success(&out);
    ws.write(
        "Dockerfile",
        format!(
            "FROM {base} AS build\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN echo printed on stdout && echo pushed > /pushed\n\
             FROM scratch\nCOPY --from=build /pushed /pushed\n"
        ),
    );
    let to = format!("{}/apps/run:1", registry.host);
    let out = dockless(
        &ws,
        As::Root,
        &["push", "ctx", "--to", &to, "--target", "build", "--json"],
    );
    assert_success(&out);
    // The command's output goes to stderr: stdout is the JSON alone.
    let pushed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("printed on stdout"));
    let raw = crate::support::skopeo::inspect_raw(&to, None)
        .await
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        4,
        "two base layers (fetched to run the commands) and two RUN layers: {manifest}"
    );
    assert_eq!(
        pushed["digest"].as_str().unwrap(),
        dockless_oci::digest::Digest::of(&raw).as_str()
    );
}
