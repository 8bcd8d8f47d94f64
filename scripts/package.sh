#!/usr/bin/env bash
# Builds the Debian packages: target/debian/nuvol_VERSION_ARCH.deb.
#
#   bash scripts/package.sh                  # amd64 arm64 armhf
#   bash scripts/package.sh amd64 arm64      # some of them
#
# The binaries are ours (release profile, glibc linked statically, so one
# file runs on any Debian/Raspberry Pi OS of that architecture); cargo-deb
# only assembles the package (`--no-build`) from crates/nuvol's
# [package.metadata.deb] and packaging/deb/ (unit, conffile, maintainer
# scripts).
#   amd64: rustup's toolchain, like scripts/build-release.sh (x86_64 hosts).
#   arm64, armhf: Debian's cross toolchains: /usr/bin/cargo and
#     /usr/bin/rustc (rustc-web) with libstd-rust-web-dev:ARCH, linked and
#     C code (ring) compiled with gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf.
# Man page and completions come from the built binary itself (run under
# qemu-user-static for the boards): `nuvol completions SHELL` and
# `nuvol manpage --out DIR` when it has them, else a man page made of its
# --help text.
# Missing parts are installed when running as root with apt-get (and
# cargo-deb with `cargo install`), otherwise it stops naming them.
# NUVOL_DEB_VERSION overrides the package version (tests build upgrades).
# NUVOL_PKG_PROFILE=cross-test builds arm64/armhf with the cheaper
# [profile.cross-test] (no fat LTO; what CI's test run uses); amd64 and
# packages for users keep the release profile.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out_dir="$repo/target/debian"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
CARGO_DEB_VERSION=3.8.0

die() { echo "package.sh: $*" >&2; exit 1; }
profile=${NUVOL_PKG_PROFILE:-release}
case "$profile" in release | cross-test) ;; *) die "NUVOL_PKG_PROFILE must be release or cross-test, not '$profile'" ;; esac

[ $# -gt 0 ] || set -- amd64 arm64 armhf
for arch in "$@"; do
	case "$arch" in amd64 | arm64 | armhf) ;; *) die "unsupported architecture '$arch' (amd64, arm64 or armhf)" ;; esac
done

# --- parts ---------------------------------------------------------------
apt_updated=
apt_install() {
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		die "missing: $* (install them: apt-get install $*)"
	fi
	if [ -z "$apt_updated" ]; then
		apt-get update -qq >&2 || die "apt-get update failed (needed for: $*)"
		apt_updated=1
	fi
	echo "package.sh: installing $*" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
		die "apt-get install $* failed"
}

# want CMD PACKAGE: PACKAGE provides CMD.
missing=()
want() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
want_path() { [ -e "$1" ] || missing+=("$2"); }
for arch in "$@"; do
	case "$arch" in
	arm64 | armhf)
		if [ "$arch" = arm64 ]; then gnu=aarch64-linux-gnu triple=aarch64-unknown-linux-gnu qemu=qemu-aarch64-static
		else gnu=arm-linux-gnueabihf triple=armv7-unknown-linux-gnueabihf qemu=qemu-arm-static; fi
		if ! dpkg --print-foreign-architectures 2>/dev/null | grep -qx "$arch"; then
			if [ "$(id -u)" = 0 ] && [ ! -d "/usr/lib/rustlib/$triple/lib" ]; then
				dpkg --add-architecture "$arch"
				apt_updated=
			fi
		fi
		want_path /usr/bin/rustc rustc-web
		want_path /usr/bin/cargo cargo-web
		want_path "/usr/lib/rustlib/$triple/lib" "libstd-rust-web-dev:$arch"
		want "$gnu-gcc" "gcc-$gnu"
		want_path "/usr/$gnu/lib/libc.a" "libc6-dev-$arch-cross"
		want "$qemu" qemu-user-static
		;;
	amd64)
		[ "$(uname -m)" = x86_64 ] || die "amd64 packages are built on x86_64 hosts (this is $(uname -m))"
		;;
	esac
done
if [ ${#missing[@]} -gt 0 ]; then
	# shellcheck disable=SC2207 # package names have no spaces
	missing=($(printf '%s\n' "${missing[@]}" | sort -u))
	apt_install "${missing[@]}"
fi
if ! cargo deb --version >/dev/null 2>&1; then
	command -v cargo >/dev/null || die "missing: cargo (rustup's toolchain) to install cargo-deb"
	echo "package.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
	cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked >&2 ||
		die "cargo install cargo-deb failed (crates.io reachable?)"
fi

# --- build ---------------------------------------------------------------
version=${NUVOL_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)}
[ -n "$version" ] || die "no version in Cargo.toml"
mkdir -p "$out_dir"

# man page and completions for the binary BIN (run with RUNNER) into DIR.
gen_docs() {
	local runner=$1 bin=$2 dir=$3
	rm -rf "$dir" && mkdir -p "$dir/man" "$dir/bash" "$dir/zsh" "$dir/fish"
	local run=("$bin")
	variant=()
	[ -z "$runner" ] || run=("$runner" "$bin")
	if "${run[@]}" help completions >/dev/null 2>&1; then
		"${run[@]}" completions bash >"$dir/bash/nuvol"
		"${run[@]}" completions zsh >"$dir/zsh/_nuvol"
		"${run[@]}" completions fish >"$dir/fish/nuvol.fish"
	else
		echo "package.sh: this nuvol has no \`completions\` command: the package has no completions" >&2
		variant=(--variant no-completions)
	fi
	if "${run[@]}" help manpage >/dev/null 2>&1; then
		"${run[@]}" manpage --out "$dir/man" >&2
	else
		echo "package.sh: this nuvol has no \`manpage\` command: nuvol(1) is its --help text" >&2
		# troff: escape backslashes, and lines starting with . or '.
		local esc='s/\\/\\e/g; s/^[.'"'"']/\\\&&/'
		{
			echo ".TH NUVOL 1 \"\" \"nuvol $version\" \"User Commands\""
			echo ".SH NAME"
			echo "nuvol \\- a community and home micro-cloud in one binary"
			echo ".SH SYNOPSIS"
			echo ".nf"
			"${run[@]}" --help | sed "$esc"
			echo ".fi"
			echo ".SH AGENT"
			echo ".nf"
			"${run[@]}" agent --help | sed "$esc"
			echo ".fi"
			echo ".SH FILES"
			echo "/etc/nuvol/nuvol.toml, /var/lib/nuvol, /usr/share/doc/nuvol/examples/nuvol.example.toml"
		} >"$dir/man/nuvol.1"
	fi
	gzip -9n "$dir"/man/*
}

summary=() variant=()
for arch in "$@"; do
	start=$(date +%s)
	case "$arch" in
	amd64)
		triple=x86_64-unknown-linux-gnu runner= arch_profile=release
		bin=$(bash scripts/build-release.sh)
		case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac
		[ "$bin" = "$target_dir/$triple/release/nuvol" ] || die "build-release.sh built $bin, expected $target_dir/$triple/release/nuvol"
		;;
	arm64 | armhf)
		if [ "$arch" = arm64 ]; then gnu=aarch64-linux-gnu triple=aarch64-unknown-linux-gnu runner=qemu-aarch64-static
		else gnu=arm-linux-gnueabihf triple=armv7-unknown-linux-gnueabihf runner=qemu-arm-static; fi
		t=$(echo "$triple" | tr 'a-z-' 'A-Z_') u=${triple//-/_} arch_profile=$profile
		# Per-target variables only: build scripts and proc macros are
		# host code, built by the same rustc without crt-static.
		env RUSTC=/usr/bin/rustc \
			"CARGO_TARGET_${t}_LINKER=$gnu-gcc" \
			"CARGO_TARGET_${t}_RUSTFLAGS=-C target-feature=+crt-static" \
			"CC_${u}=$gnu-gcc" "AR_${u}=$gnu-ar" \
			/usr/bin/cargo build --profile "$profile" --locked -p nuvol --target "$triple" >&2
		bin="$target_dir/$triple/$profile/nuvol"
		;;
	esac
	[ -x "$bin" ] || die "no binary at $bin"
	"${runner:-env}" "$bin" --version >/dev/null 2>&1 || die "$bin does not run${runner:+ under $runner}"
	gen_docs "$runner" "$bin" "$target_dir/$triple/$arch_profile/pkgdoc"
	deb="$out_dir/nuvol_${version}_${arch}.deb"
	rm -f "$deb"
	cargo deb -p nuvol --no-build --no-strip --target "$triple" --profile "$arch_profile" \
		"${variant[@]}" --deb-version "$version" --output "$deb" >&2
	secs=$(($(date +%s) - start))
	size=$(stat -c %s "$deb")
	summary+=("$arch ($arch_profile): ${secs}s, $deb ($size bytes)")
done
printf 'package.sh: %s\n' "${summary[@]}" >&2
