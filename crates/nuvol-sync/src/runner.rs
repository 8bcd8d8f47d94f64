//! Syncthing as the agent's child: `syncthing serve` with its home, GUI
//! address and API key given on the command line, no browser, no restart
//! monitor (one process, the one nuvol watches), no upgrades, no default
//! folder. Through `setpriv --pdeathsig TERM` when util-linux's setpriv is
//! there, so that it ends with the agent even when the agent is killed.

use crate::client::Client;
use crate::error::SyncError;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The API key nuvol gives the Syncthing it runs, kept in its home.
pub const KEY_FILE: &str = "nuvol-api-key";
/// The running Syncthing's pid, for whoever must clean up after a crash.
pub const PID_FILE: &str = "syncthing.pid";
/// Syncthing's log (rotated by Syncthing).
pub const LOG_FILE: &str = "syncthing.log";
/// What it writes before its log is open (bad flags, a port in use).
pub const ERR_FILE: &str = "syncthing.stderr";
/// How long it may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const SETPRIV: &str = "/usr/bin/setpriv";
/// Bytes of its output kept in an error.
const TAIL: u64 = 2048;

/// `program` as a path: itself if it has a '/', else found on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let is_exe = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_exe(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_exe(p))
}

fn io_err(path: &Path, e: std::io::Error) -> SyncError {
    SyncError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The key kept in `home`, made (32 random letters and digits, mode 0600)
/// the first time.
pub fn api_key(home: &Path) -> Result<String, SyncError> {
    use rand::distributions::{Alphanumeric, DistString};
    let file = home.join(KEY_FILE);
    match std::fs::read_to_string(&file) {
        Ok(k) if !k.trim().is_empty() => return Ok(k.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&file, e)),
    }
    let key = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    nuvol_agent::fsutil::write_atomic(&file, key.as_bytes(), 0o600)
        .map_err(|e| io_err(&file, e))?;
    Ok(key)
}

/// The last bytes of a file, as text.
fn tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut b = Vec::new();
    let _ = f.read_to_end(&mut b);
    String::from_utf8_lossy(&b).into_owned()
}

/// A Syncthing nuvol started.
#[derive(Debug)]
pub struct Syncthing {
    child: tokio::process::Child,
    home: PathBuf,
}

impl Syncthing {
    /// Start `program serve` in `home` with its GUI at `gui` and `key`,
    /// and wait until its API answers.
    pub async fn start(
        program: &Path,
        home: &Path,
        gui: SocketAddr,
        key: &str,
    ) -> Result<(Syncthing, Client), SyncError> {
        std::fs::create_dir_all(home).map_err(|e| io_err(home, e))?;
        let err_path = home.join(ERR_FILE);
        let err = std::fs::File::create(&err_path).map_err(|e| io_err(&err_path, e))?;
        let mut cmd = if Path::new(SETPRIV).exists() {
            let mut c = tokio::process::Command::new(SETPRIV);
            c.arg("--pdeathsig=TERM").arg(program);
            c
        } else {
            tokio::process::Command::new(program)
        };
        cmd.arg("serve")
            .arg(format!("--home={}", home.display()))
            .arg("--no-browser")
            .arg("--no-restart")
            .arg("--no-upgrade")
            .arg("--no-default-folder")
            .arg(format!("--gui-address=http://{gui}"))
            .arg(format!("--gui-apikey={key}"))
            .arg(format!("--logfile={}", home.join(LOG_FILE).display()))
            .arg("--log-max-size=1048576")
            .arg("--log-max-old-files=2")
            .env("STNODEFAULTFOLDER", "1")
            .env("STNOUPGRADE", "1")
            .env("STNORESTART", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| SyncError::Spawn {
            program: program.display().to_string(),
            message: e.to_string(),
        })?;
        if let Some(pid) = child.id() {
            let p = home.join(PID_FILE);
            nuvol_agent::fsutil::write_atomic(&p, pid.to_string().as_bytes(), 0o644)
                .map_err(|e| io_err(&p, e))?;
        }
        let mut st = Syncthing {
            child,
            home: home.to_owned(),
        };
        let client = Client::new(gui, key.to_owned())?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(e) = st.exited() {
                return Err(e);
            }
            match client.status().await {
                Ok(_) => return Ok((st, client)),
                Err(e @ SyncError::KeyRefused { .. }) => {
                    // Another program holds that address.
                    st.stop().await;
                    return Err(e);
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    st.stop().await;
                    return Err(e);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// `Some` once it has exited, with why.
    pub fn exited(&mut self) -> Option<SyncError> {
        let status = self.child.try_wait().ok()??;
        let mut log = tail(&self.home.join(ERR_FILE));
        if log.trim().is_empty() {
            log = tail(&self.home.join(LOG_FILE));
        }
        Some(SyncError::Exited {
            status: status.to_string(),
            log,
        })
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_ok()
            {
                let _ = std::fs::remove_file(self.home.join(PID_FILE));
                return;
            }
        }
        let _ = self.child.kill().await;
        let _ = std::fs::remove_file(self.home.join(PID_FILE));
    }
}
