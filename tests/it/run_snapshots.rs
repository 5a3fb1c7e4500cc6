//! RUN over overlay snapshots and over a copy of the tree give the same image: the same
//! Dockerfile, built with `DOCKLESS_RUN_SNAPSHOTS=copy` and with the default (overlay, as
//! root), has the same layers, and `-v` says which way each build took. The Dockerfile makes
//! every kind of change an upper directory holds: new files, users and hard links; a file
//! copied up unchanged (only its access time, an owner set to the one it had); whiteouts; a
//! directory deleted and made again (opaque); an owner from a COPY between RUNs kept.
//!
//! Not here, because the two ways differ, as Docker's builder and a copy differ: a later RUN
//! that changes one path of a hard link made in an earlier layer. Overlayfs copies up only the
//! path the command touched (so the other path keeps the old file, as under BuildKit's and
//! Docker's overlay snapshotters), where the copy changes both.

use std::fs;
use std::process::Command;

use crate::run::{As, dockless_with_env, layer};
use crate::support::binary::{Workspace, assert_success, binary_for_anyone, needs_root};
use crate::support::debian::debian_base;

const DOCKERFILE: &str = r#"FROM oci:{base}:bookworm
RUN useradd -m -u 1234 alice && mkdir -p /opt/app/keep /opt/app/gone/deep \
 && echo a > /opt/app/keep/f && echo b > /opt/app/gone/deep/g && echo s > /opt/app/keep/solo \
 && ln /opt/app/keep/f /opt/app/keep/hard && ln -s f /opt/app/keep/link
COPY --chown=7:8 owned.txt /opt/owned.txt
RUN touch -a /etc/hostname && chown root:root /etc/issue && cat /etc/passwd > /dev/null \
 && rm -rf /opt/app/gone /usr/share/doc && mkdir /usr/share/doc && echo x > /usr/share/doc/new \
 && echo more >> /opt/owned.txt && chmod 700 /opt/app/keep && chown alice /opt/app/keep/solo
RUN rm /opt/owned.txt /etc/issue.net && mkfifo /opt/fifo && su alice -c 'echo hi > ~/hi'
"#;

fn build_with(mode: &str) -> (Workspace, serde_json::Value, String) {
    build_as(As::Root, mode)
}

fn build_as(who: As, mode: &str) -> (Workspace, serde_json::Value, String) {
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        DOCKERFILE.replace("{base}", debian_base().to_str().unwrap()),
    );
    ws.write("owned.txt", "mine\n");
    let out = dockless_with_env(
        &ws,
        who,
        &[
            "-v", "build", "ctx", "--output", "out", "--tag", "t", "--json",
        ],
        &[("DOCKLESS_RUN_SNAPSHOTS", mode)],
    );
    assert_success(&out);
    let json = serde_json::from_slice(&out.stdout).unwrap();
    (ws, json, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn digests(json: &serde_json::Value) -> Vec<String> {
    json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn overlay_snapshots_and_the_copy_give_the_same_layers() {
    if !needs_root("overlay mounts and the Debian base") {
        return;
    }
    let (overlay_ws, overlay, said) = build_with("auto");
    assert!(
        said.contains("RUN steps use overlay snapshots"),
        "as root, overlay is taken: {said}"
    );
    let (_copy_ws, copy, said) = build_with("copy");
    assert!(
        said.contains("RUN steps use a copy of the tree: DOCKLESS_RUN_SNAPSHOTS=copy"),
        "{said}"
    );
    assert_eq!(
        digests(&overlay),
        digests(&copy),
        "the same layers either way"
    );

    let changes = layer(&overlay_ws, &overlay, 3);
    let paths: Vec<&str> = changes.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "opt/app/.wh.gone",
            "opt/app/keep",
            "opt/app/keep/solo",
            "opt/owned.txt",
            "usr/share/doc",
            "usr/share/doc/.wh..wh..opq",
            "usr/share/doc/new",
        ],
        "copied up unchanged (/etc/hostname, /etc/issue, /etc/passwd) is left out"
    );
    assert_eq!(changes["opt/app/keep/solo"].uid, 1234);
    assert_eq!(
        layer(&overlay_ws, &overlay, 1)["opt/app/keep/hard"].kind,
        'h'
    );
    assert_eq!(
        (changes["opt/owned.txt"].uid, changes["opt/owned.txt"].gid),
        (7, 8)
    );
    let last = layer(&overlay_ws, &overlay, 4);
    for path in [
        "etc/.wh.issue.net",
        "opt/.wh.owned.txt",
        "opt/fifo",
        "home/alice/hi",
    ] {
        assert!(last.contains_key(path), "{path} in {:?}", last.keys());
    }
    assert_eq!(last["home/alice/hi"].uid, 1234);
}

/// Without root, with subordinate IDs: the helper mounts the overlay in the sandbox's user
/// namespace (userxattr), over the base's ID-range form, and the layers are the copy's. The
/// COPY between the RUNs is applied through the overlay by the helper, its owners (7:8)
/// recorded and given to the next RUN.
#[test]
fn rootless_overlay_snapshots_and_the_copy_give_the_same_layers() {
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    let (_overlay_ws, overlay, said) = build_as(As::Nobody, "auto");
    assert!(
        said.contains("RUN steps use overlay snapshots, mounted in the user namespace"),
        "without root, overlay is taken in the user namespace: {said}"
    );
    assert!(
        !said.contains("use a copy"),
        "the COPY between RUNs is applied through the overlay too: {said}"
    );
    let (_copy_ws, copy, said) = build_as(As::Nobody, "copy");
    assert!(
        said.contains("RUN steps use a copy of the tree: DOCKLESS_RUN_SNAPSHOTS=copy"),
        "{said}"
    );
    assert_eq!(
        digests(&overlay),
        digests(&copy),
        "the same layers either way"
    );
    let (_root_ws, root, _) = build_with("auto");
    assert_eq!(digests(&overlay), digests(&root), "and as root");
}

/// RUN after RUN without root: each upper stacks on the one before (its owners handed back
/// and given again), with users, owners, whiteouts and opaque directories, as the copy has
/// them.
#[test]
fn rootless_runs_stack_their_uppers() {
    if !needs_root("to run as root and, through setpriv, as nobody") {
        return;
    }
    let build = |mode: &str| {
        let ws = Workspace::new();
        ws.write(
            "Dockerfile",
            RUNS_ONLY.replace("{base}", debian_base().to_str().unwrap()),
        );
        let out = dockless_with_env(
            &ws,
            As::Nobody,
            &[
                "-v", "build", "ctx", "--output", "out", "--tag", "t", "--json",
            ],
            &[("DOCKLESS_RUN_SNAPSHOTS", mode)],
        );
        assert_success(&out);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (ws, json, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ws, overlay, said) = build("auto");
    assert!(
        said.contains("RUN steps use overlay snapshots, mounted in the user namespace"),
        "{said}"
    );
    assert!(!said.contains("use a copy"), "{said}");
    let (_copy_ws, copy, _) = build("copy");
    assert_eq!(digests(&overlay), digests(&copy), "the same layers");
    assert_eq!(layer(&ws, &overlay, 3)["home/alice/hi"].uid, 1234);
    let last = layer(&ws, &overlay, 4);
    assert_eq!(
        last["opt/app/keep/solo"].uid, 1234,
        "given again to the upper below"
    );
    assert!(last.contains_key("etc/.wh.issue.net"), "{:?}", last.keys());
    assert!(
        last.contains_key("usr/share/doc/.wh..wh..opq"),
        "{:?}",
        last.keys()
    );

    // Built on: the base's ID-range form, kept in the store, now holds a directory a
    // subordinate ID owns (alice's home), which nobody cannot empty alone: prune removes it
    // through the helper.
    ws.write(
        "Dockerfile",
        format!(
            "FROM oci:{}:t\nRUN cat /home/alice/hi > /copied\n",
            ws.path().join("out").display()
        ),
    );
    let out = dockless_with_env(
        &ws,
        As::Nobody,
        &["-v", "build", "ctx", "--output", "out2", "--tag", "t"],
        &[],
    );
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("mounted in the user namespace"), "{said}");
    let trees = ws.cache().join("rootfs");
    let forms: Vec<_> = fs::read_dir(&trees)
        .unwrap()
        .flat_map(|entry| fs::read_dir(entry.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("userns-"))
        .collect();
    assert_eq!(forms.len(), 2, "an ID-range form of each base: {forms:?}");
    let pruned = without_chown(&ws)
        .args(["prune", "--all"])
        .output()
        .unwrap();
    assert_success(&pruned);
    let left: Vec<_> = fs::read_dir(&trees).map_or(Vec::new(), |d| d.collect());
    assert!(left.is_empty(), "prune --all leaves no tree: {left:?}");
}

/// dockless as nobody, without first giving nobody the workspace (as [`dockless_as`] does,
/// which would give it the ID-range forms in the store too).
fn without_chown(ws: &Workspace) -> Command {
    let template = ws.dockless();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary_for_anyone())
        .current_dir(ws.path());
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd
}

const RUNS_ONLY: &str = r#"FROM oci:{base}:bookworm
RUN useradd -m -u 1234 alice && mkdir -p /opt/app/keep && echo s > /opt/app/keep/solo \
 && chown alice:alice /opt/app/keep && chmod 700 /opt/app/keep
RUN echo more > /opt/more && mkfifo /opt/fifo && ln -s more /opt/link
RUN touch -a /etc/hostname && chown root:root /etc/issue && cat /etc/passwd > /dev/null \
 && su alice -c 'echo hi > ~/hi' && chown alice /opt/app/keep/solo
RUN rm -rf /etc/issue.net /usr/share/doc && mkdir /usr/share/doc && echo x > /usr/share/doc/new \
 && rm /opt/more && echo again > /opt/app/keep/solo
"#;

/// A store named by a relative path (`DOCKLESS_CACHE_DIR=store`, as a CI job may set it): a
/// layer applied over the overlay stack after a RUN (the WORKDIR and COPY before the second
/// RUN) is read from the store by the thread that mounted the overlay, which changes its
/// working directory to do so. It once failed there with "could not unpack layer … No such
/// file or directory".
#[test]
fn a_store_given_as_a_relative_path_serves_layers_between_runs() {
    if !needs_root("overlay mounts and the Debian base") {
        return;
    }
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        format!(
            "FROM oci:{}:bookworm\nRUN useradd -m user\nWORKDIR /home/user/app\n\
             COPY --chown=user:user owned.txt ./\nRUN cat /home/user/app/owned.txt > /copied\n",
            debian_base().to_str().unwrap()
        ),
    );
    ws.write("owned.txt", "mine\n");
    let out = dockless_with_env(
        &ws,
        As::Root,
        &[
            "-v", "build", "ctx", "--output", "out", "--tag", "t", "--json",
        ],
        &[("DOCKLESS_CACHE_DIR", "store")],
    );
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("RUN steps use overlay snapshots"), "{said}");
    assert!(
        ws.path().join("store/blobs/sha256").is_dir(),
        "the store is where it was named"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(layer(&ws, &json, 4).contains_key("copied"));
}
