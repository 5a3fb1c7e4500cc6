//! `COPY --from` and `RUN --mount=…,from=` read a stage's file system as a tree, not as a build
//! context: no `.dockerignore`, and every link resolved inside the stage's root as if it were
//! `/`.
//!
//! What Docker's builder does, from BuildKit's source (moby/buildkit): the Dockerfile frontend
//! asks for the copy with `FollowSymlinks: true` (frontend/dockerfile/dockerfile2llb/
//! convert_copy.go); the file op (solver/llbsolver/file/backend.go, `docopy`) hands the state's
//! root to fsutil's copy (vendor/github.com/tonistiigi/fsutil/copy/copy.go), whose `rootPath`
//! resolves the source, its last component included, with continuity's `fs.RootPath`
//! (vendor/github.com/containerd/continuity/fs/path.go): "evaluating and bounding any symlink
//! to the root directory". A state has no `.dockerignore`: only the local context does.
//!
//! The expected values are what Docker 20.10's BuildKit gave for the same Dockerfile (with a
//! busybox base): `/s` is `s3cret`; `/parent-abs` is `inner`; `/source-abs` and `/up-file` are
//! regular files holding `tf`; `/dir-abs` holds `file` and `sub/f`; `/tree/inner` stays a link
//! to `/d/target/file`; the three mounts read `inner`, `tf` and the listing `file`, `sub`. The
//! stage's owners are kept (`ls -ln` gave `1234 5678` for a file a RUN owned so; fsutil's copy
//! keeps them when no `--chown` is given), where a build context's files become root's.

use std::collections::BTreeMap;

use crate::run::{As, TarEntry, dockless_with_env, layer, workspace};
use crate::support::binary::{Workspace, assert_success, needs_root};

const DOCKERFILE: &str = r#"FROM {base} AS one
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN echo secret.txt > /.dockerignore && echo s3cret > /secret.txt \
 && mkdir -p /d/target/sub && echo inner > /d/target/sub/f && echo tf > /d/target/file \
 && ln -s /d/target /d/abs && ln -s /d/target/file /d/filelink && ln -s ../../../../d/target /d/up \
 && mkdir /d/tree && ln -s /d/target/file /d/tree/inner \
 && mkdir -p /owned/sub && echo o > /owned/sub/o && chown -R 1234:5678 /owned
RUN mkdir /gone /opq && echo a > /gone/a && echo b > /gone/b && echo x > /opq/x
RUN rm /gone/a && rm -r /opq && mkdir /opq && echo y > /opq/y
FROM {base}
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY --from=one /secret.txt /s
COPY --from=one /d/abs/sub/f /parent-abs
COPY --from=one /d/filelink /source-abs
COPY --from=one /d/abs /dir-abs/
COPY --from=one /d/up/file /up-file
COPY --from=one /d/tree /tree/
COPY --from=one /owned /owned/
COPY --from=one --chown=7:8 /owned /chowned/
COPY --from=one /gone /gone/
COPY --from=one /opq /opq/
RUN --mount=from=one,source=/d/abs/sub,target=/m cat /m/f > /mount-parent
RUN --mount=from=one,source=/d/filelink,target=/mf cat /mf > /mount-source
RUN --mount=from=one,source=/d/up,target=/mu ls /mu > /mount-up
"#;

/// Every path of the image `out:t`, as its layers leave it (a later layer's entry wins).
fn image_tree(ws: &Workspace, json: &serde_json::Value) -> BTreeMap<String, TarEntry> {
    let mut tree = BTreeMap::new();
    for index in 0..json["layers"].as_array().unwrap().len() {
        tree.extend(layer(ws, json, index));
    }
    tree
}

fn build(who: As, mode: &str) -> (Workspace, serde_json::Value) {
    let ws = workspace(DOCKERFILE);
    let out = dockless_with_env(
        &ws,
        who,
        &[
            "-v", "build", "ctx", "--output", "out", "--tag", "t", "--json",
        ],
        &[("DOCKLESS_RUN_SNAPSHOTS", mode)],
    );
    assert_success(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    // Without root, over overlay, the build merges the stage's layers itself.
    assert_eq!(
        said.matches("COPY --from=one reads the stage's tree as the build holds it")
            .count(),
        10,
        "{mode}: every COPY reads the stage's snapshot, nothing is unpacked again: {said}"
    );
    // Without root, over overlay, the build merges the stage's layers once for all of them.
    let merged = said
        .matches("the stage's layers merged into a tree of links")
        .count();
    let once = usize::from(who == As::Nobody && mode == "auto");
    assert_eq!(merged, once, "{mode}: {said}");
    assert!(!said.contains("WARN"), "{mode}: {said}");
    let json = serde_json::from_slice(&out.stdout).unwrap();
    (ws, json)
}

#[test]
fn copy_and_mounts_from_a_stage_read_its_tree_as_dockers_builder_does() {
    if !needs_root("to run the stage's commands as root") {
        return;
    }
    let mut layers = Vec::new();
    // As root over overlay snapshots and over the copy; without root in a user namespace with
    // subordinate IDs, over overlay and over the copy (its owners kept aside).
    for (who, mode) in [
        (As::Root, "auto"),
        (As::Root, "copy"),
        (As::Nobody, "auto"),
        (As::Nobody, "copy"),
    ] {
        let (ws, json) = build(who, mode);
        let mode = format!("{who:?} {mode}");
        let tree = image_tree(&ws, &json);
        let file = |path: &str| {
            let entry = tree
                .get(path)
                .unwrap_or_else(|| panic!("{mode}: no {path} in {:?}", tree.keys()));
            assert_eq!(entry.kind, 'f', "{mode}: {path} is a regular file");
            String::from_utf8_lossy(&entry.data).into_owned()
        };
        assert_eq!(
            file("s"),
            "s3cret\n",
            "{mode}: the stage's .dockerignore is a file"
        );
        assert_eq!(file("parent-abs"), "inner\n", "{mode}: a link on the way");
        assert_eq!(
            file("source-abs"),
            "tf\n",
            "{mode}: the source link is followed"
        );
        assert_eq!(
            file("up-file"),
            "tf\n",
            "{mode}: `..` stops at the stage's root"
        );
        assert_eq!(file("dir-abs/file"), "tf\n", "{mode}");
        assert_eq!(file("dir-abs/sub/f"), "inner\n", "{mode}");
        assert_eq!(
            tree["tree/inner"].kind, 'l',
            "{mode}: links below a source stay links"
        );
        assert_eq!(tree["tree/inner"].link, "/d/target/file", "{mode}");
        assert_eq!(file("mount-parent"), "inner\n", "{mode}");
        assert_eq!(file("mount-source"), "tf\n", "{mode}");
        assert_eq!(file("mount-up"), "file\nsub\n", "{mode}");
        let owner = |path: &str| (tree[path].uid, tree[path].gid);
        assert_eq!(
            owner("owned/sub/o"),
            (1234, 5678),
            "{mode}: the stage's owner is kept"
        );
        assert_eq!(owner("owned/sub"), (1234, 5678), "{mode}");
        assert_eq!(
            owner("owned"),
            (0, 0),
            "{mode}: the destination the copy makes"
        );
        assert_eq!(owner("chowned/sub/o"), (7, 8), "{mode}: --chown wins");
        assert_eq!(owner("chowned"), (7, 8), "{mode}");
        assert_eq!(owner("dir-abs/file"), (0, 0), "{mode}");
        // What a later RUN of the stage removed is gone, and a directory it made again holds
        // only what it put there (an overlay whiteout and an opaque directory).
        let paths = |dir: &str| -> Vec<&str> {
            tree.keys()
                .map(String::as_str)
                .filter(|p| p.starts_with(dir))
                .collect()
        };
        assert_eq!(paths("gone/"), ["gone/b"], "{mode}");
        assert_eq!(paths("opq/"), ["opq/y"], "{mode}");
        layers.push(json["layers"].clone());
    }
    assert_eq!(
        layers[0], layers[1],
        "overlay snapshots and the copy give the same layers"
    );
    assert_eq!(
        layers[0], layers[2],
        "with root or without, the same layers"
    );
}
