//! A stage of files alone on a registry base this machine has never listed is planned and
//! written while the base is listed, assuming the base holds nothing where the plan looks; the
//! assumption is checked against the listing, and a wrong one starts the build again. Either
//! way the image is the one a build that knew the listing gives: the second build of each case
//! (the listing then cached) is that build.

use crate::build::{base_with_dirs_and_links, layer_listing, new_layers, registry_with_base};
use crate::support::binary::{Workspace, assert_success};

const PLANNED_AHEAD: &str = "the stage is planned and written while its base is listed";
const HELD: &str = "holds nothing the plan assumed free";
const AGAIN: &str = "planning again with the listing";

/// Builds `ws`'s context on `base` with `-v`; the build's --json and what it said.
fn build(ws: &Workspace, base: &str) -> (serde_json::Value, String) {
    let out = ws
        .dockless()
        .args([
            "-v", "build", "ctx", "--output", "out", "--tag", "t", "--json",
        ])
        .args(["--build-arg", &format!("BASE={base}")])
        .output()
        .unwrap();
    assert_success(&out);
    let json = serde_json::from_slice(&out.stdout).unwrap();
    (json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_of_files_planned_while_its_base_is_listed_is_the_image_the_listing_gives() {
    let bases = Workspace::new();
    // /srv/venv, /tmp (1777), /data -> /srv/venv and /srvlink -> srv over busybox.
    let layout = base_with_dirs_and_links(bases.path());
    let (_registry, base) = registry_with_base(&bases, &layout, "dirs").await;
    let cases = [
        // The base holds none of the paths: nothing waits for the listing but the image.
        (
            "ARG BASE\nFROM $BASE\nWORKDIR /app\nCOPY f.txt sub ./\nCOPY --chown=7:8 f.txt /app2/x/f\nENV A=1\n",
            None,
        ),
        // A name for --chown waits for the base's user database (the listing) at its line.
        (
            "ARG BASE\nFROM $BASE\nWORKDIR /app\nCOPY f.txt ./\nCOPY --chown=root f.txt /app/g\n",
            None,
        ),
        // /data is the base's link to /srv/venv: the WORKDIR is made there, as Docker does.
        (
            "ARG BASE\nFROM $BASE\nWORKDIR /data/app\nCOPY f.txt ./\n",
            Some("/data"),
        ),
    ];
    for (dockerfile, held) in cases {
        let ws = Workspace::new();
        ws.write("Dockerfile", dockerfile);
        ws.write("f.txt", "f\n");
        ws.write("sub/s.txt", "s\n");
        let (planned_ahead, said) = build(&ws, &base);
        assert!(said.contains(PLANNED_AHEAD), "{dockerfile}: {said}");
        match held {
            None => {
                assert!(said.contains(HELD), "{dockerfile}: {said}");
                assert!(!said.contains(AGAIN), "{dockerfile}: {said}");
            }
            Some(path) => {
                let wrong = format!("the base image holds {path}, which this build assumed free");
                assert!(said.contains(&wrong), "{dockerfile}: {said}");
                assert!(said.contains(AGAIN), "{dockerfile}: {said}");
            }
        }
        std::fs::remove_dir_all(ws.out()).unwrap();
        let (knowing, said) = build(&ws, &base);
        assert!(
            !said.contains(PLANNED_AHEAD),
            "{dockerfile}: the listing is cached: {said}"
        );
        assert_eq!(
            new_layers(&planned_ahead),
            new_layers(&knowing),
            "{dockerfile}"
        );
        assert_eq!(planned_ahead["digest"], knowing["digest"], "{dockerfile}");
        if held.is_some() {
            let workdir = layer_listing(&ws, &new_layers(&knowing)[0]);
            assert!(
                workdir.contains(" srv/venv/app/\n") && !workdir.contains(" data/"),
                "the WORKDIR follows the base's link: {workdir}"
            );
        }
    }
    // An error the plan's own tree gives is the build's error, after the listing showed the
    // assumptions held, on the first build as on the next.
    let ws = Workspace::new();
    ws.write(
        "Dockerfile",
        "ARG BASE\nFROM $BASE\nWORKDIR /app\nCOPY f.txt /app/f\nCOPY f.txt /app/f/x/\n",
    );
    ws.write("f.txt", "f\n");
    for _ in 0..2 {
        let said = ws.build_err(&["--build-arg", &format!("BASE={base}")]);
        assert!(
            said.contains(
                "Dockerfile:5: the copy needs a directory at /app/f, but the image has a file there"
            ),
            "{said}"
        );
    }
}
