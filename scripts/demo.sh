#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, then `just demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
hash -r
just demo
