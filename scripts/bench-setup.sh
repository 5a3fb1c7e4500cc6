#!/usr/bin/env bash
# Installs what `just bench` measures against, when it is missing (bench/harness.py runs this):
# the CNCF registry, skopeo and umoci, buildah, pigz, debootstrap (the Debian minbase), curl,
# GNU time (peak RSS), and Debian's docker.io: dockerd 20.10 with BuildKit, its containerd and
# runc, the peer of the RUN parts (the bench starts its own dockerd and stops it after).
set -euo pipefail

need_packages=()
command -v docker-registry >/dev/null || need_packages+=(docker-registry)
command -v skopeo >/dev/null || need_packages+=(skopeo)
command -v umoci >/dev/null || need_packages+=(umoci)
command -v buildah >/dev/null || need_packages+=(buildah)
command -v pigz >/dev/null || need_packages+=(pigz)
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
command -v curl >/dev/null || need_packages+=(curl)
[ -x /usr/bin/time ] || need_packages+=(time)
# /usr/bin/docker, not any docker on PATH: the bench drives Docker 20.10's own CLI and builder.
{ command -v dockerd >/dev/null && [ -x /usr/bin/docker ]; } || need_packages+=(docker.io)
# buildah's default OCI runtime, crun, refuses a hybrid cgroup hierarchy; the bench uses runc.
command -v runc >/dev/null || need_packages+=(runc)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if [ ${#need_packages[@]} -gt 0 ]; then
  echo "bench-setup: installing ${need_packages[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi
