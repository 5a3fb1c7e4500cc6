//! Platforms: the automatic platform build arguments, and RUN for a platform this machine
//! cannot run natively (under binfmt_misc emulation, or refused naming what to install).

use std::path::Path;

use crate::support::binary::{Workspace, skopeo_inspect};

fn config_of(layout: &Path, tag: &str) -> serde_json::Value {
    skopeo_inspect(layout, tag, &["--config", "--raw"])
}

/// This machine's architecture as `uname -m` names it, in Go's names (the build platform).
fn host_arch() -> String {
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
