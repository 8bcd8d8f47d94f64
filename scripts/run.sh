#!/usr/bin/env bash
# Builds the deployment binary (scripts/build-release.sh: release profile,
# glibc linked statically on Linux) and runs `nuvol agent` with any flags
# given here, e.g. `bash scripts/run.sh --node pi1 --join 10.1.2.4:7946`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(bash scripts/build-release.sh)
echo "==> $bin agent $*" >&2
exec "$bin" agent "$@"
