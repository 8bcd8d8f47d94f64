//! Running a shell script the way the agent's components need it (event
//! handlers, health checks): `/bin/sh -c` in its own process group, output
//! read as it comes and kept within a bound (the first or the last bytes),
//! a timeout after which the whole group is killed, and whatever the script
//! left running in its group killed when it exits.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Which part of a long output to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The first bytes (a check's verdict is at the start).
    Head,
    /// The last bytes (serf keeps a handler's last output).
    Tail,
}

/// A script to run.
#[derive(Debug, Clone)]
pub struct Script<'a> {
    pub command: &'a str,
    pub env: Vec<(String, String)>,
    /// Written to the script's stdin, then closed (none: stdin is null).
    pub stdin: Option<Vec<u8>>,
    /// Killed (with its group) after this long.
    pub timeout: Duration,
    /// Bytes of stdout and stderr kept, together.
    pub max_output: usize,
    pub keep: Keep,
}

/// How it went.
#[derive(Debug)]
pub struct Outcome {
    /// `None` when it timed out (and was killed) or could not be waited for.
    pub status: Option<ExitStatus>,
    /// stdout, then stderr, within `max_output`.
    pub output: Vec<u8>,
    /// Output beyond `max_output` was dropped.
    pub truncated: bool,
    pub timed_out: bool,
}

/// Run `s`. Errors only when the shell cannot be started.
pub async fn run(s: Script<'_>) -> std::io::Result<Outcome> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(s.command)
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .stdin(if s.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn()?;
    // The child leads its own process group: its pid is the group's id.
    let pgid = child.id();
    let child_stdin = child.stdin.take();
    // Written alongside the waiting and reading below, so a script that
    // never reads its stdin stalls nothing (and no task outlives it).
    let feed = async move {
        if let (Some(mut stdin), Some(data)) = (child_stdin, s.stdin) {
            let _ = stdin.write_all(&data).await;
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut out = Capture::new(s.max_output, s.keep);
    let mut err = Capture::new(s.max_output, s.keep);
    let finished = {
        let wait = async {
            let status = child.wait().await;
            // Whatever the script left running in its group (`cmd &`)
            // would keep the pipes open and outlive it: kill it.
            kill_group(pgid);
            status
        };
        let all = async {
            let (status, (), (), ()) =
                tokio::join!(wait, out.drain(stdout), err.drain(stderr), feed);
            status
        };
        tokio::time::timeout(s.timeout, all).await
    };
    let (status, timed_out) = match finished {
        Ok(Ok(status)) => (Some(status), false),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "waiting for a script");
            (None, false)
        }
        Err(_) => match child.try_wait() {
            // It exited, but something outside its group holds the pipes.
            Ok(Some(status)) => (Some(status), false),
            _ => {
                kill_group(pgid);
                if let Err(e) = child.kill().await {
                    tracing::debug!(error = %e, "killing a timed-out script");
                }
                (None, true)
            }
        },
    };
    let truncated = out.truncated || err.truncated;
    let mut output = out.bytes;
    output.extend_from_slice(&err.bytes);
    let truncated = truncated || output.len() > s.max_output;
    match s.keep {
        Keep::Head => output.truncate(s.max_output),
        Keep::Tail => {
            let cut = output.len().saturating_sub(s.max_output);
            output.drain(..cut);
        }
    }
    Ok(Outcome {
        status,
        output,
        truncated,
        timed_out,
    })
}

/// Output read as it arrives, never more than `max` bytes held.
struct Capture {
    bytes: Vec<u8>,
    max: usize,
    keep: Keep,
    truncated: bool,
}

impl Capture {
    fn new(max: usize, keep: Keep) -> Capture {
        Capture {
            bytes: Vec::new(),
            max,
            keep,
            truncated: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        match self.keep {
            Keep::Head => {
                let room = self.max.saturating_sub(self.bytes.len());
                if chunk.len() > room {
                    self.truncated = true;
                }
                self.bytes
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Keep::Tail => {
                self.bytes.extend_from_slice(chunk);
                if self.bytes.len() > self.max {
                    self.truncated = true;
                    let cut = self.bytes.len() - self.max;
                    self.bytes.drain(..cut);
                }
            }
        }
    }

    /// Read `r` to its end (the writer never blocks on a full pipe).
    async fn drain<R: AsyncRead + Unpin>(&mut self, r: Option<R>) {
        let Some(mut r) = r else { return };
        let mut buf = vec![0u8; 8192];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => self.push(&buf[..n]),
                Err(e) => {
                    tracing::debug!(error = %e, "reading a script's output");
                    break;
                }
            }
        }
    }
}

/// SIGKILL every process in the group `pgid` (nothing if there is none).
fn kill_group(pgid: Option<u32>) {
    let Some(pid) = pgid
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 1)
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        if e != rustix::io::Errno::SRCH {
            tracing::debug!(pgid = pid.as_raw_nonzero().get(), error = %e, "killing a script's process group");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(command: &str, timeout: Duration, max: usize, keep: Keep) -> Script<'_> {
        Script {
            command,
            env: vec![("NUVOL_TEST_VAR".into(), "v".into())],
            stdin: Some(b"in\n".to_vec()),
            timeout,
            max_output: max,
            keep,
        }
    }

    #[tokio::test]
    async fn output_env_stdin_and_status() {
        let o = run(script(
            "echo $NUVOL_TEST_VAR; cat; echo e >&2; exit 3",
            Duration::from_secs(30),
            100,
            Keep::Head,
        ))
        .await
        .unwrap();
        assert_eq!(o.output, b"v\nin\ne\n");
        assert_eq!(o.status.and_then(|s| s.code()), Some(3));
        assert!(!o.truncated && !o.timed_out);
    }

    #[tokio::test]
    async fn long_output_is_bounded_while_it_is_read() {
        // 50 MB through a 1 KiB window: only the bound is ever held.
        let cmd = "head -c 50000000 /dev/zero | tr '\\0' a; printf END";
        let o = run(script(cmd, Duration::from_secs(60), 1024, Keep::Tail))
            .await
            .unwrap();
        assert_eq!(o.output.len(), 1024);
        assert!(o.output.ends_with(b"aaaEND"));
        assert!(o.truncated);
        let o = run(script(cmd, Duration::from_secs(60), 1024, Keep::Head))
            .await
            .unwrap();
        assert_eq!(o.output, vec![b'a'; 1024]);
    }

    #[tokio::test]
    async fn a_timed_out_script_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let cmd = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
        let o = run(script(&cmd, Duration::from_millis(500), 100, Keep::Tail))
            .await
            .unwrap();
        assert!(o.timed_out);
        assert!(o.status.is_none());
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background child was in the script's group: it is gone (or a
        // zombie about to be reaped by init), never still sleeping.
        let mut gone = false;
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone, "the script's background child survived the timeout");
    }
}
