#!/usr/bin/env bash
# The whole test suite. Installs the Debian packages the tests need (serf as
# the real peer, iproute2, procps, bzip2), then runs fmt, clippy and every test with
# NUVOL_REQUIRE_SERF=1 so that nothing is silently skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

need=()
command -v serf >/dev/null 2>&1 || need+=(serf)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v bzip2 >/dev/null 2>&1 || need+=(bzip2)   # Cloudy tag checks
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing: ${need[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "==> missing packages (${need[*]}) and not root: interop tests will fail" >&2
  fi
fi
# Debian's serf package starts a system agent on 127.0.0.1:7373; the tests
# use their own addresses, so it is left alone.

echo "==> serf: $(serf version | head -1)"
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
export NUVOL_REQUIRE_SERF=1
cargo test --workspace -- --test-threads=4
