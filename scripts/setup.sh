#!/usr/bin/env bash
# Installs what the demo and the tests need when it is missing: just, and Debian's
# docker-registry (the CNCF distribution registry), skopeo, umoci, htpasswd and busybox-static.
set -euo pipefail

need_packages=()
command -v docker-registry >/dev/null || need_packages+=(docker-registry)
command -v skopeo >/dev/null || need_packages+=(skopeo)
command -v umoci >/dev/null || need_packages+=(umoci)
command -v htpasswd >/dev/null || need_packages+=(apache2-utils)
[ -x /bin/busybox ] || need_packages+=(busybox-static)
command -v zstd >/dev/null || need_packages+=(zstd)
command -v curl >/dev/null || need_packages+=(curl)
command -v xz >/dev/null || need_packages+=(xz-utils)
command -v bzip2 >/dev/null || need_packages+=(bzip2)

if [ ${#need_packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need_packages[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

if ! command -v just >/dev/null; then
  echo "setup: installing just" >&2
  if command -v pip >/dev/null || command -v pip3 >/dev/null; then
    "$(command -v pip || command -v pip3)" install -q rust-just
  else
    cargo install just --locked
  fi
fi
