# dockless: build OCI images without a daemon.

set shell := ["bash", "-euo", "pipefail", "-c"]

demo_dir := "target/demo"

default:
    @just --list

# Build the example template on a busybox base into OCI layouts, and show what was made.
demo: build-release
    #!/usr/bin/env bash
    set -euo pipefail
    bin=target/release/dockless
    export DOCKLESS_CACHE_DIR="$PWD/{{demo_dir}}/cache"
    rm -rf {{demo_dir}}/base-context && mkdir -p {{demo_dir}}/base-context
    cp -r fixtures/busybox-base/. {{demo_dir}}/base-context/
    cp /bin/busybox {{demo_dir}}/base-context/busybox
    echo "== building a busybox base image FROM scratch"
    $bin build {{demo_dir}}/base-context --output {{demo_dir}}/base --tag latest
    echo "== building fixtures/example on it"
    $bin build fixtures/example --build-arg BASE="oci:$PWD/{{demo_dir}}/base:latest" --output {{demo_dir}}/example --tag demo --json > {{demo_dir}}/example.json
    python3 -m json.tool {{demo_dir}}/example.json
    echo "== skopeo's view of the layout"
    skopeo inspect oci:{{demo_dir}}/example:demo
    echo "== umoci unpacks it"
    rm -rf {{demo_dir}}/bundle
    umoci unpack --rootless --image {{demo_dir}}/example:demo {{demo_dir}}/bundle >/dev/null
    find {{demo_dir}}/bundle/rootfs/home -print | sort

build-release:
    cargo build --release --quiet

# The whole test suite: unit tests and the integration tests against real tools.
test:
    cargo test --all-targets

# Formatting and lints, warnings denied.
check:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# What CI runs.
ci: check test
