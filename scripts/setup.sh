#!/usr/bin/env bash
# Installs what the demo and the tests need when it is missing: just, and Debian's
# docker-registry (the CNCF distribution registry), skopeo, umoci, htpasswd, busybox-static,
# buildah and debootstrap, and what a Rust toolchain installed by rustup lacks on a bare Debian:
# a C compiler and the CA certificates. `just fresh` proves it on a bare Debian minbase.
set -euo pipefail

need_packages=()
# rustup brings no linker: rustc links with the system's `cc`, and ring, aws-lc, zstd and xz
# build C code. cargo reaches crates.io (to install just) over TLS with the system's CAs.
command -v cc >/dev/null || need_packages+=(gcc libc6-dev)
[ -s /etc/ssl/certs/ca-certificates.crt ] || need_packages+=(ca-certificates)
command -v docker-registry >/dev/null || need_packages+=(docker-registry)
command -v skopeo >/dev/null || need_packages+=(skopeo)
command -v umoci >/dev/null || need_packages+=(umoci)
command -v htpasswd >/dev/null || need_packages+=(apache2-utils)
[ -x /bin/busybox ] || need_packages+=(busybox-static)
command -v zstd >/dev/null || need_packages+=(zstd)
command -v curl >/dev/null || need_packages+=(curl)
command -v xz >/dev/null || need_packages+=(xz-utils)
command -v bzip2 >/dev/null || need_packages+=(bzip2)
# RUN tests: buildah is the peer the file trees are compared with; debootstrap makes the
# Debian base of the (slow, cached) Debian tests; setpriv runs builds as an unprivileged user.
command -v buildah >/dev/null || need_packages+=(buildah)
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
command -v setpriv >/dev/null || need_packages+=(util-linux)
command -v newuidmap >/dev/null || need_packages+=(uidmap)
# The escape tests read the file capabilities a RUN sets, as umoci unpacked them, with getcap.
command -v getcap >/dev/null || need_packages+=(libcap2-bin)

# RUN for another platform: the kernel runs its programs under qemu through binfmt_misc
# (qemu-user-static registers its handlers with the fix-binary flag via binfmt-support). The
# same package's qemu-x86_64-static runs dockless on an emulated plain x86-64 CPU in a test
# that layers do not depend on the CPU's extensions.
command -v qemu-aarch64-static >/dev/null || need_packages+=(qemu-user-static)
command -v update-binfmts >/dev/null || need_packages+=(binfmt-support)
command -v dpkg-deb >/dev/null || need_packages+=(dpkg)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if [ ${#need_packages[@]} -gt 0 ]; then
  echo "setup: installing ${need_packages[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

# The rootless RUN tests build as nobody, whose sandbox maps these subordinate IDs (with
# newuidmap/newgidmap) so that chown and USER work without root.
for file in /etc/subuid /etc/subgid; do
  if ! grep -q '^nobody:' "$file" 2>/dev/null; then
    echo "setup: giving nobody subordinate IDs in $file" >&2
    echo "nobody:100000:65536" | $sudo tee -a "$file" >/dev/null
  fi
done

if ! command -v just >/dev/null; then
  echo "setup: installing just" >&2
  if command -v pip >/dev/null || command -v pip3 >/dev/null; then
    "$(command -v pip || command -v pip3)" install -q rust-just
  else
    cargo install just --locked
  fi
fi

# binfmt_misc mounted and qemu's handlers registered: a container or a minbase chroot may
# have neither (binfmt-support's service is not started there).
binfmt=/proc/sys/fs/binfmt_misc
# Only the tests of RUN for another platform need them: where the kernel refuses (a container
# without the privilege), setup goes on and those tests name what is missing.
if [ ! -e "$binfmt/status" ]; then
  echo "setup: mounting binfmt_misc at $binfmt" >&2
  $sudo mount -t binfmt_misc binfmt_misc "$binfmt" ||
    echo "setup: could not mount binfmt_misc; RUN for another platform will not run here" >&2
fi
if [ "$(uname -m)" != aarch64 ] && [ -e "$binfmt/status" ] && [ ! -e "$binfmt/qemu-aarch64" ]; then
  echo "setup: registering qemu-user-static's binfmt_misc handlers" >&2
  $sudo update-binfmts --enable ||
    echo "setup: could not register qemu's binfmt_misc handlers" >&2
fi

# The multi-platform tests build an arm64 busybox base from Debian's arm64 busybox-static,
# kept with the tests' shared fixtures (tests/it/support/binary.rs shared_fixtures).
fixtures="${DOCKLESS_TEST_FIXTURES:-/var/tmp/dockless-tests}"
if [ ! -x "$fixtures/busybox-arm64/bin/busybox" ]; then
  echo "setup: fetching Debian's busybox-static:arm64 into $fixtures/busybox-arm64" >&2
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
  fi
  $sudo apt-get update -qq
  download=$(mktemp -d)
  chmod 777 "$download"  # apt-get download drops to the _apt user
  (cd "$download" && apt-get download -qq busybox-static:arm64)
  $sudo mkdir -p "$fixtures"
  $sudo dpkg-deb -x "$download"/busybox-static_*_arm64.deb "$fixtures/busybox-arm64"
  rm -rf "$download"
fi
