#!/usr/bin/env bash
# Builds the release binary for deployment: on Linux/glibc hosts the C library
# is linked statically, so the agent maps only the libc code it uses instead
# of all of libc.so, libm and libgcc_s (about 1.7 MiB less resident memory on
# x86_64; BENCHMARKS.md, "Memory"). The binary also runs on hosts with another
# glibc. Prints the binary's path on stdout.
#
#   bash scripts/build-release.sh            # -> target/<host-triple>/release/nuvol
#
# `--target` is explicit because crt-static must not reach proc-macro crates,
# which are built for the host as shared objects.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
*-linux-gnu*) export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" ;;
esac
cargo build --release --locked -p nuvol --target "$host" >&2
# Where cargo put it (CARGO_TARGET_DIR, when set, moves it).
echo "${CARGO_TARGET_DIR:-target}/$host/release/nuvol"
