#!/usr/bin/env bash
# Proves the README's two commands on a fresh machine: a bare Debian bookworm minbase
# (debootstrap) that holds only the host's Rust toolchain and a clone of this checkout in a
# 0700 home, entered by pivot_root in private mount and PID namespaces with a fresh /proc, the
# host's /dev, a read-only /sys and a tmpfs /tmp, as a container would be. There
# `bash scripts/demo.sh` and `bash scripts/test.sh` must pass: a tool they use that
# scripts/setup.sh does not install makes them fail. Needs root; the network is the host's.
#
# The minbase is made once and kept (pristine) in the shared test fixtures; each run works on a
# copy, removed at the end (FRESH_KEEP=1 keeps it). The clone is of the committed HEAD.
set -euo pipefail

fail() { echo "fresh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, mount namespaces, pivot_root)"
for tool in debootstrap unshare git mount; do
  command -v "$tool" >/dev/null || fail "needs $tool on the host"
done

repo=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${DOCKLESS_TEST_FIXTURES:-/var/tmp/dockless-tests}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
[ -x "$cargo_home/bin/cargo" ] || fail "no Rust toolchain at $cargo_home/bin (set CARGO_HOME)"
[ -d "$rustup_home/toolchains" ] || fail "no rustup toolchains at $rustup_home (set RUSTUP_HOME)"
mkdir -p "$fixtures" "$cargo_home/registry"

# Bump when what goes into the minbase changes.
minbase="$fixtures/fresh-bookworm-minbase-v1"
work=$(mktemp -d "$fixtures/fresh-run.XXXXXX")
root="$work/root"
cleanup() {
  if [ "${FRESH_KEEP:-0}" = 1 ]; then echo "fresh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

phase_started=$SECONDS
phase() {
  local now=$SECONDS
  [ -z "${phase_name:-}" ] || echo "== fresh: $phase_name took $((now - phase_started)) s" >&2
  phase_name=$1
  phase_started=$now
  [ -z "$phase_name" ] || echo "== fresh: $phase_name" >&2
}

if [ ! -d "$minbase" ]; then
  phase "debootstrap --variant=minbase bookworm (once; kept in $minbase)"
  staging=$(mktemp -d "$fixtures/fresh-minbase.XXXXXX")
  debootstrap --variant=minbase bookworm "$staging/root" http://deb.debian.org/debian >"$staging/log" 2>&1 \
    || { tail -20 "$staging/log" >&2; fail "debootstrap failed (log above)"; }
  # What a fresh machine does not have: downloaded packages and package lists.
  rm -rf "$staging/root/var/cache/apt/archives/"*.deb "$staging/root/var/lib/apt/lists/"*
  mv "$staging/root" "$minbase"
  rm -rf "$staging"
fi

phase "a copy of the minbase, the host's Rust toolchain and a clone in a 0700 home"
cp -a "$minbase" "$root"
# The toolchain as rustup installs it: the proxies in ~/.cargo/bin (copied, so that
# `cargo install` can add to it), the toolchains in RUSTUP_HOME (mounted read-only below) and the
# registry cache (shared, so crates already downloaded are not downloaded again).
mkdir -p "$root/root/.cargo/registry" "$root/root/.rustup"
cp -a "$cargo_home/bin" "$root/root/.cargo/bin"
chmod 0700 "$root/root"
git -c init.defaultBranch=main -c advice.detachedHead=false clone -q "$repo" "$root/root/dockless"
echo "fresh: cloned $(git -C "$repo" rev-parse --short HEAD) (uncommitted changes are not in it)" >&2
# The host's network, as a machine on it would be set up: its resolver, and the local CAs it
# trusts (a TLS-inspecting proxy's), which Debian's ca-certificates adds when setup.sh installs it.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi

# Runs as PID 1 of the new PID namespace, in the private mount namespace.
inside() {
  set -euo pipefail
  mount --bind "$root" "$root"
  mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
  # Not nosuid: in a container /tmp is part of the root, and the escape tests run a setuid
  # binary from their temporary directory to show that it works outside the sandbox.
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  mount --bind "$rustup_home" "$root/root/.rustup"
  mount -o remount,bind,ro "$root/root/.rustup"
  mount --bind "$cargo_home/registry" "$root/root/.cargo/registry"
  cd "$root"
  mkdir -p .old-root
  pivot_root . .old-root
  umount -l /.old-root
  rmdir /.old-root
  cd /root/dockless
  local phase_started=$SECONDS status=0
  for command in "bash scripts/demo.sh" "bash scripts/test.sh"; do
    echo "== fresh: $command" >&2
    phase_started=$SECONDS
    env -i HOME=/root USER=root LOGNAME=root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
      PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      CARGO_HOME=/root/.cargo RUSTUP_HOME=/root/.rustup \
      $command || status=$?
    echo "== fresh: $command took $((SECONDS - phase_started)) s (exit $status)" >&2
    [ "$status" -eq 0 ] || return "$status"
  done
}

phase "the README's two commands, inside"
status=0
root=$root rustup_home=$rustup_home cargo_home=$cargo_home \
  unshare --mount --pid --fork --propagation private \
  bash -c "$(declare -f inside); inside" || status=$?
phase ""
[ "$status" -eq 0 ] || fail "the README's commands failed on a fresh machine (exit $status)"
echo "fresh: both README commands passed on a fresh Debian bookworm minbase in $SECONDS s" >&2
