#!/usr/bin/env bash
# Builds the Docker image `nuvol-host:bookworm`: a Debian bookworm root file
# system made with debootstrap from deb.debian.org (no image registry is
# needed or reachable) with systemd as its init, so a container behaves like a
# small board: the nuvol .deb installs, its unit runs under systemd, Ansible
# reaches it with its docker connection (python3 is in the image).
#
#   bash scripts/debian-host-image.sh          # skips when the image exists
#   NUVOL_HOST_IMAGE_REBUILD=1 bash scripts/debian-host-image.sh
#
# Running systemd as PID 1 in a container on this host (Docker 20.10,
# cgroup v1 with the cgroupfs driver; systemd 252 still supports v1):
#
#   docker run -d --cap-add ALL --cap-drop SYS_RESOURCE \
#       --security-opt seccomp=unconfined --cgroupns=host \
#       -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
#       --stop-signal SIGRTMIN+3 nuvol-host:bookworm
#
# `--privileged` is the usual way, but here the Docker daemon itself runs
# without CAP_SYS_RESOURCE, so runc cannot grant every capability and
# --privileged fails with "unable to apply caps: operation not permitted";
# all capabilities but that one, no seccomp filter and the host's cgroup tree
# mounted read-write let systemd create the cgroups of its services (tested:
# `systemctl is-system-running --wait` says "running"). /run and /run/lock
# must be tmpfs or systemd refuses to boot; SIGRTMIN+3 is systemd's "halt"
# signal (SIGTERM only re-executes it; Docker 20.10's `import --change` does
# not take STOPSIGNAL, hence the flag). Untested on a cgroup v2 host, where
# `--cgroupns=host` with the same mount is the documented recipe. The
# image's entrypoint is /lib/systemd/systemd, so no command is needed.
#
# The debootstrap takes a few minutes (150-230 s measured here, see
# BENCHMARKS.md, "Ansible (issue 13)"); the image is 247 MB.
set -euo pipefail
image=${NUVOL_HOST_IMAGE:-nuvol-host:bookworm}
mirror=${NUVOL_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -z "${NUVOL_HOST_IMAGE_REBUILD:-}" ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image exists" >&2
  exit 0
fi
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install $tool)" >&2; exit 1; }
done

root=$(mktemp -d /tmp/nuvol-host-root.XXXXXX)
# debootstrap mounts /proc (and may mount /sys, /dev/pts) inside the root:
# an interrupted run can leave them mounted. Unmount everything under the
# root before removing it, and never let rm cross into another file system
# (the host's /proc or /dev).
cleanup() {
  local m
  for m in $(awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
start=$(date +%s)
# minbase has no init; the list adds what a board's Debian has and what the
# role needs: systemd as init, dbus for systemctl, python3 for Ansible,
# adduser for the package's maintainer scripts, iproute2 for `ip`.
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,sudo,iproute2,ca-certificates,adduser,procps,less \
  bookworm "$root" "$mirror" >&2

# Container-friendly systemd: no getty on a console that does not exist, no
# udev or time sync (the host owns devices and the clock), a machine-id made
# at first boot so three containers from one image are three machines.
chroot "$root" systemctl mask getty@tty1.service console-getty.service \
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
  systemd-timesyncd.service systemd-remount-fs.service sys-kernel-config.mount \
  sys-kernel-debug.mount sys-kernel-tracing.mount >/dev/null 2>&1 || true
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# The apt lists from debootstrap are enough for `apt install ./x.deb`; drop
# the package cache to keep the image small.
rm -rf "$root"/var/cache/apt/archives/*.deb
echo "debootstrap took $(($(date +%s) - start))s" >&2

tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  - "$image" >&2
echo "built $image in $(($(date +%s) - start))s" >&2
