# dockless: build OCI images without a daemon.

set shell := ["bash", "-euo", "pipefail", "-c"]

demo_dir := "target/demo"

default:
    @just --list

# Build the example template and push it to a throwaway local registry, then show the result.
demo: build-release
    #!/usr/bin/env bash
    set -euo pipefail
    bin="$PWD/target/release/dockless"
    demo="$PWD/{{demo_dir}}"
    rm -rf "$demo" && mkdir -p "$demo/base-context"
    export DOCKLESS_CACHE_DIR="$demo/cache"
    # A throwaway CNCF distribution registry on a free loopback port, stopped on exit.
    # A free loopback port: one where bash's /dev/tcp finds nobody listening.
    port=""
    for _ in $(seq 50); do
        candidate=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then port=$candidate; break; fi
    done
    [ -n "$port" ] || { echo "demo: no free loopback port found" >&2; exit 1; }
    printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$demo/registry" "$port" > "$demo/registry.yml"
    docker-registry serve "$demo/registry.yml" > "$demo/registry.log" 2>&1 &
    registry_pid=$!
    trap 'kill $registry_pid 2>/dev/null || true' EXIT
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
    registry="127.0.0.1:$port"
    echo "== a throwaway registry at $registry"
    echo "== building a busybox base FROM scratch and pushing it"
    cp -r fixtures/busybox-base/. "$demo/base-context/"
    cp /bin/busybox "$demo/base-context/busybox"
    "$bin" push "$demo/base-context" --to "$registry/base/busybox:latest"
    echo "== building fixtures/example on it and pushing it"
    "$bin" push fixtures/example --build-arg BASE="$registry/base/busybox:latest" --to "$registry/e2b/example:demo" --json > "$demo/push.json"
    cat "$demo/push.json"
    echo "== pushing again: nothing to upload"
    "$bin" push fixtures/example --build-arg BASE="$registry/base/busybox:latest" --to "$registry/e2b/example:demo"
    echo "== what the registry holds, as skopeo sees it"
    skopeo inspect --tls-verify=false "docker://$registry/e2b/example:demo"
    echo "== its files, pulled back by skopeo and unpacked by umoci"
    skopeo copy -q --src-tls-verify=false "docker://$registry/e2b/example:demo" "oci:$demo/pulled:demo"
    umoci unpack --rootless --image "$demo/pulled:demo" "$demo/bundle" >/dev/null
    (cd "$demo/bundle/rootfs" && find home usr/local -print | sort)

build-release:
    cargo build --release

# The whole test suite: unit tests and the integration tests against real tools.
test:
    cargo test --all-targets

# Formatting and lints, warnings denied.
check:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# What CI runs.
ci: check test

# scripts/fresh.sh: debootstrap, a clone in a 0700 home, pivot_root in private namespaces.
# The README's two commands on a bare Debian minbase with the host's Rust toolchain (root; slow, not in ci).
fresh:
    bash scripts/fresh.sh

# Benchmark build+push against its peers and two machines sharing one cache (--quick); --scale: how cost grows.
bench *args: build-release
    python3 bench/run.py {{args}}

# Fuzz every target for SECONDS each (default 120), seeded from fuzz/seeds; crashes land in fuzz/artifacts.
# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
fuzz seconds="120" *targets:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz
    export RUSTC_BOOTSTRAP=1
    targets="{{targets}}"
    [ -n "$targets" ] || targets=$(cargo fuzz list)
    for target in $targets; do
        mkdir -p "corpus/$target"
        echo "== $target for {{seconds}}s"
        cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
            -max_total_time={{seconds}} -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 \
            | grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY|Test unit written)" || true
        [ -z "$(ls artifacts/$target 2>/dev/null)" ] || { echo "$target: crash inputs in fuzz/artifacts/$target"; exit 1; }
    done
