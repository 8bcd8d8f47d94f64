//! Log lines for `monitor` RPC streams: a `tracing` layer that formats each
//! event like serf's logger (`2006/01/02 15:04:05 [INFO] target: message`)
//! and hands it to a broadcast channel. Slow subscribers lose lines, never
//! block the agent.

use std::fmt::Write as _;
use std::sync::OnceLock;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

#[derive(Debug, Clone)]
pub struct LogLine {
    pub level: Level,
    pub line: String,
}

static LOGS: OnceLock<broadcast::Sender<LogLine>> = OnceLock::new();

fn sender() -> &'static broadcast::Sender<LogLine> {
    LOGS.get_or_init(|| broadcast::channel(256).0)
}

static MISSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Count log lines a slow `monitor` subscriber missed.
pub fn count_missed(n: u64) {
    MISSED.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// Log lines `monitor` subscribers missed, since the process started.
pub fn missed() -> u64 {
    MISSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Subscribe to log lines (used by the `monitor` command).
pub fn subscribe() -> broadcast::Receiver<LogLine> {
    sender().subscribe()
}

/// Parse serf's log level names.
pub fn parse_level(s: &str) -> Option<Level> {
    match s.to_ascii_uppercase().as_str() {
        "TRACE" => Some(Level::TRACE),
        "DEBUG" => Some(Level::DEBUG),
        "INFO" | "" => Some(Level::INFO),
        "WARN" => Some(Level::WARN),
        "ERR" | "ERROR" => Some(Level::ERROR),
        _ => None,
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERR",
    }
}

/// The layer to install next to the console formatter.
pub struct BroadcastLayer;

struct Fields(String, String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.1, " {}={:?}", field.name(), value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.1, " {}={}", field.name(), value);
        }
    }
}

/// `YYYY/MM/DD HH:MM:SS` in UTC.
pub fn timestamp(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

impl<S: Subscriber> Layer<S> for BroadcastLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let tx = sender();
        if tx.receiver_count() == 0 {
            return;
        }
        let mut f = Fields(String::new(), String::new());
        event.record(&mut f);
        let meta = event.metadata();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let target = meta.target().split("::").next().unwrap_or("nuvol");
        let line = format!(
            "{} [{}] {}: {}{}",
            timestamp(secs),
            level_name(meta.level()),
            target,
            f.0,
            f.1
        );
        let _ = tx.send(LogLine {
            level: *meta.level(),
            line,
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::timestamp(0), "1970/01/01 00:00:00");
        assert_eq!(super::timestamp(1_795_000_000), "2026/11/18 11:06:40");
        assert_eq!(super::parse_level("err"), Some(tracing::Level::ERROR));
        assert_eq!(super::parse_level("loud"), None);
    }
}
