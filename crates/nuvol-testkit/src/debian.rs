//! The Debian packages under test and the systemd hosts they are
//! installed on (crates/nuvol/tests/{board_qemu,package_install,ansible_hosts}.rs).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// target/debian of the workspace (where scripts/package.sh puts them).
pub fn deb_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debian")
}

/// The newest `nuvol_*_ARCH.deb` in [`deb_dir`].
pub fn newest_deb(arch: &str) -> Option<PathBuf> {
    let suffix = format!("_{arch}.deb");
    std::fs::read_dir(deb_dir())
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("nuvol_") && n.ends_with(&suffix)
        })
        .max_by_key(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        })
        .map(|e| e.path())
}

/// `docker run` options for a container of scripts/debian-host-image.sh's
/// image with systemd as PID 1 on this host: `--privileged` fails here
/// ("unable to apply caps": the daemon lacks CAP_SYS_RESOURCE to hand
/// out), so every capability but that one, no seccomp filter, the host's
/// cgroup tree, tmpfs /run, and systemd's own stop signal.
pub const SYSTEMD_HOST_RUN_ARGS: &[&str] = &[
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--stop-signal",
    "SIGRTMIN+3",
];
