//! Polling helpers. Timeouts are upper bounds that fail a stuck test; they
//! are never a measurement to assert on.

use anyhow::{anyhow, Result};
use std::fmt::Display;
use std::time::{Duration, Instant};

/// Poll `cond` every `poll` until it returns true, or fail after `timeout`.
///
/// The error says how long and how many times it polled; add what was
/// awaited with `.context(..)`, or use [`wait_until_msg`].
pub fn wait_until(timeout: Duration, poll: Duration, cond: impl FnMut() -> bool) -> Result<()> {
    wait_until_msg("condition", timeout, poll, cond)
}

/// [`wait_until`] with a description of what is awaited in the error.
pub fn wait_until_msg(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    let mut polls = 0u64;
    loop {
        polls += 1;
        if cond() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(anyhow!(
                "timed out waiting for {what}: still false after {polls} polls over {:.1?} (limit {timeout:?})",
                start.elapsed()
            ));
        }
        std::thread::sleep(poll);
    }
}

/// Call `f` every `poll` until it returns `Ok`, and return that value; after
/// `timeout`, fail with the last error `f` returned.
///
/// ```no_run
/// # use std::time::Duration;
/// # use anyhow::{ensure, Result};
/// let n = nuvol_testkit::eventually("3 members", Duration::from_secs(30), Duration::from_millis(200), || -> Result<usize> {
///     let ms = nuvol_testkit::members_json("127.10.0.2:7373".parse()?)?;
///     ensure!(ms.len() == 3, "{} members: {ms:?}", ms.len());
///     Ok(ms.len())
/// })?;
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn eventually<T, E: Display>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T> {
    let start = Instant::now();
    let mut polls = 0u64;
    loop {
        polls += 1;
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= timeout => {
                return Err(anyhow!(
                    "timed out waiting for {what} after {polls} polls over {:.1?} (limit {timeout:?}); last: {e}",
                    start.elapsed()
                ));
            }
            Err(_) => std::thread::sleep(poll),
        }
    }
}

/// [`wait_until_msg`] for async tests: poll the future `cond()` returns
/// every `poll` (sleeping on tokio's timer) until it yields true, or fail
/// after `timeout`.
pub async fn wait_until_async<F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut cond: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let mut polls = 0u64;
    loop {
        polls += 1;
        if cond().await {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(anyhow!(
                "timed out waiting for {what}: still false after {polls} polls over {:.1?} (limit {timeout:?})",
                start.elapsed()
            ));
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_succeeds_and_times_out() {
        let mut n = 0;
        wait_until(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            n == 3
        })
        .unwrap();
        assert_eq!(n, 3);
        let e = wait_until_msg("never", Duration::ZERO, Duration::ZERO, || false).unwrap_err();
        assert!(e.to_string().contains("never"), "{e}");
    }

    #[test]
    fn eventually_reports_last_error() {
        let mut n = 0;
        let v = eventually("n", Duration::from_secs(5), Duration::ZERO, || {
            n += 1;
            if n < 3 {
                Err(format!("n={n}"))
            } else {
                Ok(n)
            }
        })
        .unwrap();
        assert_eq!(v, 3);
        let e =
            eventually::<(), _>("x", Duration::ZERO, Duration::ZERO, || Err("boom")).unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
    }
}
