#!/usr/bin/env bash
# The whole test suite, with every real part it needs: nothing is skipped,
# except, for now, two parts that do not fit CI's 45 minutes on 2 cores and
# run only when asked: NUVOL_TEST_BOARDS=1 (the arm64/armhf cross builds and
# board_qemu) and NUVOL_TEST_ANSIBLE=1 (the playbook against three hosts).
#
# Installs what is missing: Debian's packages (serf as the real peer, dig,
# iproute2, tcpdump, procps, psmisc, bzip2, Go for the LZW golden test, a C++
# compiler for libFuzzer, Chromium's headless shell and chromedriver for the
# browser tests, Podman with netavark for the apps' Podman test,
# Syncthing for replicated folders, keepalived and nftables for the VIP tests) and
# python's zeroconf and serfclient (PyPI), and fetches axe-core for the
# browser tests' accessibility checks (from a PyPI wheel). Then
# runs fmt and clippy, builds the deployment binary, runs every test with
# NUVOL_REQUIRE_SERF=1, NUVOL_REQUIRE_SYSTEM=1 and NUVOL_REQUIRE_GO=1 (a
# missing part fails a test instead of skipping it), and builds the fuzz
# targets and replays their regression and seed inputs.
#
# It needs root (the mDNS tests create network namespaces; packages are
# installed with apt-get). When a part cannot be installed it stops with a
# message saying what to install. There is no way to skip parts here: a
# developer who wants tests that skip what is missing runs plain
# `cargo test`.
#
# Non-interactive (no stdin). On re-runs with everything installed it does
# not touch apt or pip at all.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

fail() {
  echo "==> ERROR: $*" >&2
  exit 1
}

# package -> a command it provides
declare -A provides=(
  [serf]=serf
  [snmpd]=/usr/sbin/snmpd
  [dnsutils]=dig
  [iproute2]=ip
  [tcpdump]=tcpdump
  [procps]=pgrep
  [psmisc]=killall
  [bzip2]=bzip2
  [golang-go]=go
  [g++]=g++
  [python3]=python3
  [python3-pip]=pip3
  [chromium-headless-shell]=chromium-headless-shell
  [chromium-driver]=chromedriver
  # The apps' Docker tests import it as an image: it must be the static one
  # (Debian's busybox package puts a dynamic binary at the same path).
  [busybox-static]=/bin/busybox
  # The apps' Podman test (Podman's Docker-compatible API); without
  # recommends apt would give podman no network stack: netavark and its DNS.
  [podman]=podman
  [netavark]=/usr/lib/podman/netavark
  [aardvark-dns]=/usr/lib/podman/aardvark-dns
  # Replicated folders (crates/nuvol/tests/sync_syncthing.rs).
  [syncthing]=syncthing
  # Floating IPs: keepalived as the real VRRP peer, nft for a switch that
  # drops multicast (crates/nuvol/tests/vip_netns.rs).
  [keepalived]=keepalived
  [nftables]=nft
  # The Ansible playbook against three debootstrap'ed hosts
  # (crates/nuvol/tests/ansible_hosts.rs).
  [debootstrap]=debootstrap
  [ansible]=ansible-playbook
  [ansible-lint]=ansible-lint
  # Docker (the apps' tests, and three private daemons forming a Swarm in
  # crates/nuvol/tests/swarm_netns.rs, whose bridge needs FORWARD rules).
  [docker.io]=dockerd
  [iptables]=iptables
  # Renders the generated man pages (crates/nuvol/tests/init_cmd.rs).
  [groff-base]=groff
  # Debian packages for the boards (scripts/package.sh, which also adds the
  # arm64/armhf architectures and their libstd-rust-web-dev itself) and
  # running their binaries (crates/nuvol/tests/board_qemu.rs).
  [rustc-web]=/usr/bin/rustc
  [cargo-web]=/usr/bin/cargo
  [gcc-aarch64-linux-gnu]=aarch64-linux-gnu-gcc
  [gcc-arm-linux-gnueabihf]=arm-linux-gnueabihf-gcc
  [qemu-user-static]=qemu-aarch64-static
)
have() {
  case "$1" in
  # A path: that file; /bin/busybox only if static (ldd fails on those).
  /bin/busybox) [ -x "$1" ] && ! ldd "$1" >/dev/null 2>&1 ;;
  /*) [ -x "$1" ] ;;
  # tcpdump and ip live in /usr/sbin, which a non-root PATH may lack.
  *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}
need=()
for pkg in serf snmpd dnsutils iproute2 tcpdump procps psmisc bzip2 golang-go g++ python3 \
  chromium-headless-shell chromium-driver busybox-static podman netavark aardvark-dns syncthing keepalived nftables docker.io iptables \
  groff-base debootstrap ansible ansible-lint; do
  have "${provides[$pkg]}" || need+=("$pkg")
done
# The boards' toolchains and qemu only when their packages are built (below).
if [ "${NUVOL_TEST_BOARDS:-0}" = 1 ]; then
  for pkg in rustc-web cargo-web gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf qemu-user-static; do
    have "${provides[$pkg]}" || need+=("$pkg")
  done
fi
# pip as a module of the python3 that runs the tests.
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)

# PyPI packages (module -> requirement):
# - zeroconf: an independent mDNS / DNS-SD implementation the mDNS tests
#   check nuvol's announcements against (Debian 12's python3-zeroconf is too
#   old for the API the tests use);
# - serfclient: a serf RPC client in python, for RPC interoperability tests.
declare -A pypi=(
  [zeroconf]='zeroconf>=0.131'
  [serfclient]='serfclient'
)
pip_need=()
for mod in zeroconf serfclient; do
  python3 -c "import $mod" >/dev/null 2>&1 || pip_need+=("${pypi[$mod]}")
done
if [ "$(id -u)" != 0 ]; then
  msg="scripts/test.sh must run as root: the mDNS tests create network namespaces"
  if [ ${#need[@]} -gt 0 ]; then
    msg="$msg, and these Debian packages are missing: ${need[*]} (install them with: sudo apt-get install ${need[*]})"
  fi
  if [ ${#pip_need[@]} -gt 0 ]; then
    msg="$msg; missing from PyPI: ${pip_need[*]} (python3 -m pip install ${pip_need[*]})"
  fi
  fail "$msg. Run it as root (sudo bash scripts/test.sh), or run plain \`cargo test\`, which skips what is missing."
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing: ${need[*]}"
  apt-get update -qq </dev/null ||
    fail "apt-get update failed; install these Debian packages: ${need[*]}"
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${need[@]}" </dev/null >/dev/null ||
    fail "could not install the Debian packages: ${need[*]}"
  for pkg in "${need[@]}"; do
    have "${provides[$pkg]}" || [ "$pkg" = python3-pip ] ||
      fail "installing $pkg did not provide \`${provides[$pkg]}\`"
  done
fi
# Debian's serf package may start a system agent on 127.0.0.1:7373; the tests
# use their own loopback addresses (127.x.y.z), so it is left alone.

if [ ${#pip_need[@]} -gt 0 ]; then
  echo "==> installing (pip): ${pip_need[*]}"
  pip=(python3 -m pip install --quiet --disable-pip-version-check)
  # Debian's own python3 refuses system-wide installs unless told.
  "${pip[@]}" "${pip_need[@]}" </dev/null ||
    "${pip[@]}" --break-system-packages "${pip_need[@]}" </dev/null ||
    fail "could not install from PyPI: ${pip_need[*]} (python3 -m pip install ${pip_need[*]})"
  for mod in zeroconf serfclient; do
    python3 -c "import $mod" >/dev/null 2>&1 ||
      fail "python3 cannot import $mod after installing it"
  done
fi

# axe-core, for the browser tests' accessibility checks: its axe.min.js is
# not kept in the repository but taken from a PyPI wheel that bundles it
# (the one crates/nuvol-testkit/src/browser.rs names), once, into the target
# directory, where that module looks too; the tests get its path in
# NUVOL_AXE_JS, so they never run pip themselves.
browser_rs=crates/nuvol-testkit/src/browser.rs
axe_wheel="$(sed -n 's/^pub const AXE_WHEEL: &str = "\(.*\)";$/\1/p' "$browser_rs")"
axe_member="$(sed -n 's/^pub const AXE_WHEEL_MEMBER: &str = "\(.*\)";$/\1/p' "$browser_rs")"
[ -n "$axe_wheel" ] && [ -n "$axe_member" ] ||
  fail "AXE_WHEEL or AXE_WHEEL_MEMBER not found in $browser_rs"
target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
NUVOL_AXE_JS="$target_dir/axe-core/${axe_wheel/==/-}/axe.min.js"
if [ ! -f "$NUVOL_AXE_JS" ]; then
  echo "==> fetching axe-core (pip download $axe_wheel)"
  axe_tmp="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$axe_tmp" "$axe_wheel" </dev/null ||
    fail "could not download $axe_wheel from PyPI (it bundles axe-core's axe.min.js)"
  mkdir -p "$(dirname "$NUVOL_AXE_JS")"
  # A wheel is a zip file.
  python3 -c 'import glob, sys, zipfile
whl, = glob.glob(sys.argv[1] + "/*.whl")
open(sys.argv[3], "wb").write(zipfile.ZipFile(whl).read(sys.argv[2]))' \
    "$axe_tmp" "$axe_member" "$NUVOL_AXE_JS.part" </dev/null ||
    fail "could not extract $axe_member from $axe_wheel"
  mv "$NUVOL_AXE_JS.part" "$NUVOL_AXE_JS"
  rm -rf "$axe_tmp"
fi
export NUVOL_AXE_JS

echo "==> serf: $(serf version | head -1); $(go version); $(chromedriver --version | cut -d' ' -f1,2)"
# The systemd host image for package_install and ansible_hosts (debootstrap
# from Debian's mirror, a few minutes, mostly waiting on the network): built
# in the background while the workspace compiles.
image_log=$(mktemp)
bash scripts/debian-host-image.sh >"$image_log" 2>&1 &
image_pid=$!
echo "==> [${SECONDS}s] building the systemd host image in the background (pid $image_pid)"
echo "==> cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt --all -- --check)
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# Code behind features the workspace build does not enable (fuzz entry points).
cargo clippy -p nuvol-dns --features fuzzing -- -D warnings
cargo clippy -p nuvol-dashboard --features fuzzing -- -D warnings
echo "==> [${SECONDS}s] deployment build (scripts/build-release.sh)"
# The binary users deploy (release profile, abort on panic, glibc linked
# statically) is checked by crates/nuvol/tests/release_build.rs.
NUVOL_RELEASE_BIN="$(bash scripts/build-release.sh)"
case "$NUVOL_RELEASE_BIN" in
/*) ;;
*) NUVOL_RELEASE_BIN="$PWD/$NUVOL_RELEASE_BIN" ;;
esac
export NUVOL_RELEASE_BIN

echo "==> [${SECONDS}s] Debian packages (scripts/package.sh amd64)"
# target/debian/nuvol_VERSION_ARCH.deb: the boards' binaries run under qemu
# in crates/nuvol/tests/board_qemu.rs, the amd64 package is installed in a
# systemd container (nuvol-host:bookworm) in package_install.rs. amd64
# reuses the deployment build above; the boards' are built with
# [profile.cross-test] (no fat LTO), since two fat-LTO cross builds would
# cost CI more than the tests need (BENCHMARKS.md, "Packages (issue 13)").
bash scripts/package.sh amd64
# The boards' cross builds take far longer than the rest of CI allows on 2
# cores (BENCHMARKS.md, "Packages (issue 13)"): only with NUVOL_TEST_BOARDS=1
# for now; without, board_qemu is told that no board was built and says so.
if [ "${NUVOL_TEST_BOARDS:-0}" = 1 ]; then
  NUVOL_PKG_PROFILE=cross-test bash scripts/package.sh arm64 armhf
else
  echo "==> NOTE: the arm64/armhf packages are not built (set NUVOL_TEST_BOARDS=1); board_qemu will skip"
  export NUVOL_BOARD_ARCHES=none
fi
# The playbook against three systemd hosts (crates/nuvol/tests/ansible_hosts.rs)
# takes about 5 minutes, more than CI's 45 minutes leave: only with
# NUVOL_TEST_ANSIBLE=1 for now.
if [ "${NUVOL_TEST_ANSIBLE:-0}" != 1 ]; then
  echo "==> NOTE: the Ansible playbook test is not run (set NUVOL_TEST_ANSIBLE=1); ansible_hosts will skip"
  export NUVOL_SKIP_ANSIBLE=1
fi

echo "==> [${SECONDS}s] fuzz targets: build, replay regression and seed inputs"
# The fuzz crate is outside the workspace. Its libFuzzer targets build on
# the stable toolchain (without coverage instrumentation, which only
# fuzzing needs); given file paths, a target runs exactly those inputs and
# fails (non-zero) on a crash.
cargo build --manifest-path fuzz/Cargo.toml --bins
fuzz_bin="$(cargo metadata --manifest-path fuzz/Cargo.toml --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug"
mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^nuvol-fuzz$')
[ ${#targets[@]} -gt 0 ] || fail "no fuzz targets found in fuzz/Cargo.toml"
for t in "${targets[@]}"; do
  inputs=()
  for d in "fuzz/regressions/$t" "fuzz/seeds/$t"; do
    [ -d "$d" ] && while IFS= read -r f; do inputs+=("$f"); done < <(find "$d" -type f | sort)
  done
  [ ${#inputs[@]} -gt 0 ] || fail "fuzz target $t has no inputs in fuzz/regressions/$t or fuzz/seeds/$t"
  if ! "$fuzz_bin/$t" "${inputs[@]}" >"$fuzz_bin/$t.replay.log" 2>&1; then
    cat "$fuzz_bin/$t.replay.log" >&2
    fail "fuzz target $t crashed on one of: ${inputs[*]}"
  fi
  echo "    $t: ${#inputs[@]} inputs"
done

echo "==> [${SECONDS}s] waiting for the systemd host image"
if ! wait "$image_pid"; then
  cat "$image_log" >&2
  fail "scripts/debian-host-image.sh failed (its output is above)"
fi
tail -3 "$image_log"
echo "==> [${SECONDS}s] cargo test (free space: $(df -h --output=avail . | tail -1 | tr -d ' ') here, $(df -h --output=avail /tmp | tail -1 | tr -d ' ') in /tmp; target/ $(du -sh target 2>/dev/null | cut -f1))"
# Every test that needs serf, a system part (dig, network namespaces,
# zeroconf, the deployment binary, headless Chromium, axe-core) or Go fails
# instead of skipping.
export NUVOL_REQUIRE_SERF=1 NUVOL_REQUIRE_SYSTEM=1 NUVOL_REQUIRE_GO=1
cargo test --workspace --no-fail-fast -- --test-threads=4
