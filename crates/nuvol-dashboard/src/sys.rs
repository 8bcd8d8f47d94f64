//! Node health statistics for the dashboard overview.
//!
//! Reads the usual Linux sources (`/proc/uptime`, `/proc/loadavg`,
//! `/proc/stat`, `/proc/meminfo`, `/sys/class/thermal`, the device tree,
//! DMI, ...) relative to a [`SysRoot`], so that tests can point it at a
//! temporary directory filled with fake files. Disk usage comes from
//! `statvfs(2)` (through `rustix`) on the filesystem holding a given path.
//!
//! Nothing here fails: [`read`] returns a [`NodeStats`] whose fields are
//! each `None` when their source is missing or malformed. All parsing lives
//! in small pure functions that never panic, whatever the input.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest number of bytes read from any single proc/sys file.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Longest model string kept, in characters.
const MAX_MODEL_CHARS: usize = 128;

/// Most `thermal_zone*` entries looked at.
const MAX_THERMAL_ZONES: usize = 256;

/// Plausible temperature range, in °C; readings outside it are ignored.
const TEMP_RANGE_C: std::ops::RangeInclusive<f64> = -100.0..=250.0;

/// A root to read from: `/` in production; a temp dir with fake proc/sys
/// files in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot {
    root: PathBuf,
}

impl SysRoot {
    /// A root at `root`; `/proc/uptime` is then read from `root/proc/uptime`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The real machine's root, `/`.
    pub fn host() -> Self {
        Self::new("/")
    }

    /// The path of the absolute path `abs` (e.g. `/proc/stat`) under this root.
    fn join(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Reads the file at `abs` under this root as (lossy) UTF-8, at most
    /// [`MAX_FILE_BYTES`] of it; `None` when it cannot be read.
    fn read_text(&self, abs: &str) -> Option<String> {
        read_capped(&self.join(abs))
    }
}

/// Reads at most [`MAX_FILE_BYTES`] of `path` as lossy UTF-8.
fn read_capped(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A snapshot of this node's health. Every field is independently `None`
/// when its source is missing or malformed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    /// Time since boot (`/proc/uptime`, first field).
    pub uptime: Option<Duration>,
    /// 1, 5 and 15 minute load averages (`/proc/loadavg`).
    pub load: Option<[f64; 3]>,
    /// Number of CPUs (`cpuN` lines of `/proc/stat`).
    pub cpus: Option<u32>,
    /// Busy share in percent, 0..=100, since the previous sample (see [`CpuSampler`]).
    pub cpu_percent: Option<f64>,
    /// Total memory in bytes (`MemTotal`).
    pub mem_total: Option<u64>,
    /// Available memory in bytes (`MemAvailable`, else `MemFree + Buffers + Cached`).
    pub mem_available: Option<u64>,
    /// Total swap in bytes (`SwapTotal`).
    pub swap_total: Option<u64>,
    /// Free swap in bytes (`SwapFree`).
    pub swap_free: Option<u64>,
    /// Size in bytes of the filesystem holding the disk path.
    pub disk_total: Option<u64>,
    /// Bytes available to unprivileged users on that filesystem.
    pub disk_available: Option<u64>,
    /// Highest thermal zone temperature in °C; `None` when there is no zone (typical VM).
    pub temperature_c: Option<f64>,
    /// Board or machine model, e.g. "Raspberry Pi 4 Model B Rev 1.4".
    pub model: Option<String>,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: Option<String>,
    /// CPU architecture this binary was built for (`std::env::consts::ARCH`).
    pub arch: &'static str,
}

/// Aggregate CPU time counters from the `cpu ` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Sum of user, nice, system, idle, iowait, irq, softirq and steal
    /// (guest time is already included in user/nice).
    pub total: u64,
    /// Idle plus iowait.
    pub idle: u64,
}

/// Keeps the previous `/proc/stat` totals so that successive calls can give
/// the CPU busy share over the interval between them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuSampler {
    prev: Option<CpuTimes>,
}

impl CpuSampler {
    /// A sampler with no previous sample.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `/proc/stat` under `root`. Returns `None` on the first call (or
    /// when the file is unreadable) and the busy percentage since the
    /// previous successful call afterwards.
    pub fn sample(&mut self, root: &SysRoot) -> Option<f64> {
        let times = root
            .read_text("/proc/stat")
            .and_then(|s| parse_stat_cpu(&s));
        self.observe(times)
    }

    /// Feeds one parsed sample. Counters going backwards (e.g. a reset)
    /// restart the sampling; a zero interval keeps the older sample so the
    /// next call measures over a longer window.
    fn observe(&mut self, times: Option<CpuTimes>) -> Option<f64> {
        let cur = times?;
        let Some(prev) = self.prev else {
            self.prev = Some(cur);
            return None;
        };
        if cur.total < prev.total || cur.idle < prev.idle {
            self.prev = Some(cur);
            return None;
        }
        if cur.total == prev.total {
            return None;
        }
        self.prev = Some(cur);
        cpu_busy_percent(prev, cur)
    }
}

/// Busy percentage (0..=100) between two samples; `None` when counters went
/// backwards or no time passed.
pub fn cpu_busy_percent(prev: CpuTimes, cur: CpuTimes) -> Option<f64> {
    let dt = cur.total.checked_sub(prev.total)?;
    let di = cur.idle.checked_sub(prev.idle)?;
    if dt == 0 {
        return None;
    }
    let busy = dt.saturating_sub(di);
    let pct = busy as f64 / dt as f64 * 100.0;
    Some(pct.clamp(0.0, 100.0))
}

/// Collects a [`NodeStats`] from `root`, with disk figures for the
/// filesystem holding `disk_path` (a real path, not relative to `root`).
/// Never fails.
pub fn read(root: &SysRoot, disk_path: &Path, cpu: &mut CpuSampler) -> NodeStats {
    let stat = root.read_text("/proc/stat");
    let mem = root
        .read_text("/proc/meminfo")
        .and_then(|s| parse_meminfo(&s))
        .unwrap_or_default();
    let disk = disk_usage(disk_path);
    NodeStats {
        uptime: root
            .read_text("/proc/uptime")
            .and_then(|s| parse_uptime(&s)),
        load: root
            .read_text("/proc/loadavg")
            .and_then(|s| parse_loadavg(&s)),
        cpus: stat.as_deref().and_then(count_cpus),
        cpu_percent: cpu.observe(stat.as_deref().and_then(parse_stat_cpu)),
        mem_total: mem.total,
        mem_available: mem.available,
        swap_total: mem.swap_total,
        swap_free: mem.swap_free,
        disk_total: disk.map(|d| d.0),
        disk_available: disk.map(|d| d.1),
        temperature_c: read_temperature(root),
        model: read_model(root),
        kernel: root
            .read_text("/proc/sys/kernel/osrelease")
            .and_then(|s| clean_text(&s)),
        arch: std::env::consts::ARCH,
    }
}

/// Parses `/proc/uptime` ("931.77 502.47"): the first field as a duration.
pub fn parse_uptime(s: &str) -> Option<Duration> {
    let secs: f64 = s.split_whitespace().next()?.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses `/proc/loadavg` ("0.85 1.30 1.05 1/102 26968"): the three averages.
pub fn parse_loadavg(s: &str) -> Option<[f64; 3]> {
    let mut it = s.split_whitespace();
    let mut out = [0.0; 3];
    for slot in &mut out {
        let v: f64 = it.next()?.parse().ok()?;
        if !v.is_finite() || v < 0.0 {
            return None;
        }
        *slot = v;
    }
    Some(out)
}

/// Parses the aggregate `cpu ` line of `/proc/stat`. Needs at least the
/// user, nice, system and idle fields; sums up to steal (guest time is
/// already counted in user/nice). `None` on malformed input or overflow.
pub fn parse_stat_cpu(s: &str) -> Option<CpuTimes> {
    let line = s
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let fields = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    if fields.len() < 4 {
        return None;
    }
    let total = fields.iter().try_fold(0u64, |acc, &v| acc.checked_add(v))?;
    let iowait = fields.get(4).copied().unwrap_or(0);
    let idle = fields[3].checked_add(iowait)?;
    Some(CpuTimes { total, idle })
}

/// Counts the per-CPU `cpuN` lines of `/proc/stat`; `None` when there are none.
pub fn count_cpus(s: &str) -> Option<u32> {
    let n = s
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| {
            w.strip_prefix("cpu")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    match u32::try_from(n) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: Option<u64>,
    /// `MemAvailable`, else `MemFree + Buffers + Cached`.
    pub available: Option<u64>,
    /// `SwapTotal`.
    pub swap_total: Option<u64>,
    /// `SwapFree`.
    pub swap_free: Option<u64>,
}

/// Parses `/proc/meminfo` ("MemTotal:  3884096 kB" lines) into bytes.
/// `None` when none of the wanted figures is present.
pub fn parse_meminfo(s: &str) -> Option<MemInfo> {
    let mut total = None;
    let mut avail = None;
    let mut free = None;
    let mut buffers = None;
    let mut cached = None;
    let mut swap_total = None;
    let mut swap_free = None;
    for line in s.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut avail,
            "MemFree" => &mut free,
            "Buffers" => &mut buffers,
            "Cached" => &mut cached,
            "SwapTotal" => &mut swap_total,
            "SwapFree" => &mut swap_free,
            _ => continue,
        };
        if slot.is_none() {
            *slot = parse_meminfo_value(rest);
        }
    }
    let available = avail.or_else(|| {
        free?
            .checked_add(buffers.unwrap_or(0))?
            .checked_add(cached.unwrap_or(0))
    });
    let info = MemInfo {
        total,
        available,
        swap_total,
        swap_free,
    };
    if info == MemInfo::default() {
        None
    } else {
        Some(info)
    }
}

/// Parses a meminfo value ("  3884096 kB") into bytes.
fn parse_meminfo_value(rest: &str) -> Option<u64> {
    let mut it = rest.split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        None => Some(n),
        Some(u) if u.eq_ignore_ascii_case("kB") => n.checked_mul(1024),
        Some(_) => None,
    }
}

/// Parses a thermal zone `temp` file (millidegrees Celsius) into °C;
/// `None` when malformed or outside a plausible range.
pub fn parse_thermal(s: &str) -> Option<f64> {
    let milli: i64 = s.trim().parse().ok()?;
    let c = milli as f64 / 1000.0;
    TEMP_RANGE_C.contains(&c).then_some(c)
}

/// Highest temperature over `/sys/class/thermal/thermal_zone*/temp`.
fn read_temperature(root: &SysRoot) -> Option<f64> {
    let dir = std::fs::read_dir(root.join("/sys/class/thermal")).ok()?;
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .take(MAX_THERMAL_ZONES)
        .filter_map(|e| read_capped(&e.path().join("temp")))
        .filter_map(|s| parse_thermal(&s))
        .reduce(f64::max)
}

/// The board model: device tree, else `/proc/cpuinfo`, else DMI.
fn read_model(root: &SysRoot) -> Option<String> {
    [
        "/proc/device-tree/model",
        "/sys/firmware/devicetree/base/model",
    ]
    .iter()
    .find_map(|p| root.read_text(p).and_then(|s| clean_text(&s)))
    .or_else(|| {
        root.read_text("/proc/cpuinfo")
            .and_then(|s| parse_cpuinfo_model(&s))
    })
    .or_else(|| {
        root.read_text("/sys/class/dmi/id/product_name")
            .and_then(|s| clean_text(&s))
    })
}

/// The `Model` line of `/proc/cpuinfo` (ARM boards), else its `Hardware`
/// line. Keys are case-sensitive so x86's numeric `model` line is ignored.
pub fn parse_cpuinfo_model(s: &str) -> Option<String> {
    let value = |want: &str| {
        s.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if k.trim() == want {
                clean_text(v)
            } else {
                None
            }
        })
    };
    value("Model").or_else(|| value("Hardware"))
}

/// Cleans a model-like string: keeps the text before the first NUL, drops
/// control characters, trims, caps at 128 characters; `None` when empty.
pub fn clean_text(s: &str) -> Option<String> {
    let first = s.split('\0').find(|p| !p.trim().is_empty())?;
    let cleaned: String = first
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MODEL_CHARS)
        .collect();
    let cleaned = cleaned.trim_end();
    (!cleaned.is_empty()).then(|| cleaned.to_string())
}

/// Total and available bytes from statvfs figures, with overflow checks.
/// `frsize` of 0 falls back to `bsize`.
pub fn disk_from_statvfs(blocks: u64, bavail: u64, frsize: u64, bsize: u64) -> Option<(u64, u64)> {
    let unit = if frsize == 0 { bsize } else { frsize };
    if unit == 0 {
        return None;
    }
    Some((blocks.checked_mul(unit)?, bavail.checked_mul(unit)?))
}

/// Total and available bytes of the filesystem holding `path`, or of its
/// nearest existing ancestor when `path` does not exist yet.
fn disk_usage(path: &Path) -> Option<(u64, u64)> {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find_map(|p| rustix::fs::statvfs(p).ok())
        .and_then(|v| disk_from_statvfs(v.f_blocks, v.f_bavail, v.f_frsize, v.f_bsize))
}

/// Formats a byte count with binary units: "512 B", "1.5 KiB", "3.8 GiB",
/// "15 GiB" (one decimal below 10, none above).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    loop {
        // Rounded as it will be shown, so 1023.9 KiB becomes "1.0 MiB".
        let shown = if v < 9.95 {
            (v * 10.0).round() / 10.0
        } else {
            v.round()
        };
        if shown >= 1024.0 && i + 1 < UNITS.len() {
            v /= 1024.0;
            i += 1;
            continue;
        }
        return if v < 9.95 {
            format!("{v:.1} {}", UNITS[i])
        } else {
            format!("{v:.0} {}", UNITS[i])
        };
    }
}

/// Formats a duration coarsely: "45s", "12m", "3h 20m", "5d 4h" (floored).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    if s < 60 {
        format!("{s}s")
    } else if s < 3_600 {
        format!("{mins}m")
    } else if s < 86_400 {
        format!("{hours}h {mins}m")
    } else {
        format!("{days}d {hours}h")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const PI4_CPUINFO: &str = "processor\t: 0\n\
BogoMIPS\t: 108.00\n\
Features\t: fp asimd evtstrm crc32 cpuid\n\
CPU implementer\t: 0x41\n\
CPU architecture: 8\n\
CPU variant\t: 0x0\n\
CPU part\t: 0xd08\n\
CPU revision\t: 3\n\
\n\
processor\t: 1\n\
BogoMIPS\t: 108.00\n\
Features\t: fp asimd evtstrm crc32 cpuid\n\
\n\
Hardware\t: BCM2835\n\
Revision\t: d03114\n\
Serial\t\t: 10000000e3a1b2c3\n\
Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n";

    const X86_CPUINFO: &str = "processor\t: 0\n\
vendor_id\t: AuthenticAMD\n\
cpu family\t: 25\n\
model\t\t: 17\n\
model name\t: AMD EPYC 9R14\n\
stepping\t: 1\n\
microcode\t: 0xa101148\n\
cpu MHz\t\t: 2600.000\n\
cache size\t: 1024 KB\n\
flags\t\t: fpu vme de pse tsc msr pae mce cx8\n";

    const MEMINFO: &str = "MemTotal:        3884096 kB\n\
MemFree:          212340 kB\n\
MemAvailable:    2913480 kB\n\
Buffers:          120112 kB\n\
Cached:          2419456 kB\n\
SwapCached:            0 kB\n\
SwapTotal:        102396 kB\n\
SwapFree:         102396 kB\n\
HugePages_Total:       0\n\
Hugepagesize:       2048 kB\n";

    const STAT: &str = "cpu  116394 0 17296 50247 902 0 146 598 0 0\n\
cpu0 56914 0 8221 27151 194 0 13 300 0 0\n\
cpu1 59480 0 9075 23095 707 0 133 298 0 0\n\
intr 1234 0 0\n\
ctxt 99999\n\
btime 1700000000\n\
processes 27000\n\
procs_running 1\n";

    #[test]
    fn uptime() {
        assert_eq!(
            parse_uptime("931.77 502.47\n"),
            Some(Duration::from_secs_f64(931.77))
        );
        assert_eq!(parse_uptime("12\n"), Some(Duration::from_secs(12)));
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("garbage 1.0"), None);
        assert_eq!(parse_uptime("-5 1"), None);
        assert_eq!(parse_uptime("NaN 1"), None);
        assert_eq!(parse_uptime("inf 1"), None);
        assert_eq!(parse_uptime("1e400 1"), None);
        assert_eq!(parse_uptime("1e300 1"), None);
    }

    #[test]
    fn loadavg() {
        assert_eq!(
            parse_loadavg("0.85 1.30 1.05 1/102 26968\n"),
            Some([0.85, 1.30, 1.05])
        );
        assert_eq!(parse_loadavg("0.85 1.30"), None);
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(parse_loadavg("a b c"), None);
        assert_eq!(parse_loadavg("1 nan 2"), None);
        assert_eq!(parse_loadavg("1 -2 3"), None);
    }

    #[test]
    fn stat_cpu() {
        let t = parse_stat_cpu(STAT).unwrap();
        assert_eq!(t.idle, 50247 + 902);
        assert_eq!(t.total, 116394 + 17296 + 50247 + 902 + 146 + 598);
        // Old kernels with only four fields.
        assert_eq!(
            parse_stat_cpu("cpu 10 0 5 85\n"),
            Some(CpuTimes {
                total: 100,
                idle: 85
            })
        );
        assert_eq!(parse_stat_cpu("cpu 10 0 5\n"), None);
        assert_eq!(parse_stat_cpu("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(parse_stat_cpu(""), None);
        assert_eq!(parse_stat_cpu("cpu a b c d e"), None);
        assert_eq!(parse_stat_cpu("cpu 1 2 3 99999999999999999999999"), None);
        let max = u64::MAX;
        assert_eq!(parse_stat_cpu(&format!("cpu {max} {max} 0 0")), None);
        assert_eq!(parse_stat_cpu(&format!("cpu 0 0 0 {max} {max}")), None);
    }

    #[test]
    fn cpus() {
        assert_eq!(count_cpus(STAT), Some(2));
        assert_eq!(count_cpus("cpu 1 2 3 4\n"), None);
        assert_eq!(count_cpus(""), None);
        assert_eq!(count_cpus("cpufoo 1\ncpu12 1\n"), Some(1));
    }

    #[test]
    fn busy_percent() {
        let a = CpuTimes {
            total: 1000,
            idle: 800,
        };
        let b = CpuTimes {
            total: 1100,
            idle: 875,
        };
        assert_eq!(cpu_busy_percent(a, b), Some(25.0));
        assert_eq!(cpu_busy_percent(b, a), None);
        assert_eq!(cpu_busy_percent(a, a), None);
        // Idle grew more than total (inconsistent counters): clamps to 0.
        let c = CpuTimes {
            total: 1010,
            idle: 900,
        };
        assert_eq!(cpu_busy_percent(a, c), Some(0.0));
    }

    #[test]
    fn sampler() {
        let mut s = CpuSampler::new();
        let t = |total, idle| Some(CpuTimes { total, idle });
        assert_eq!(s.observe(None), None);
        assert_eq!(s.observe(t(1000, 800)), None);
        assert_eq!(s.observe(t(1000, 800)), None); // zero delta
        assert_eq!(s.observe(t(1200, 900)), Some(50.0));
        assert_eq!(s.observe(t(100, 50)), None); // went backwards: restart
        assert_eq!(s.observe(t(200, 50)), Some(100.0));
        assert_eq!(s.observe(None), None); // unreadable keeps the previous
        assert_eq!(s.observe(t(300, 150)), Some(0.0));
    }

    #[test]
    fn meminfo() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(m.total, Some(3884096 * 1024));
        assert_eq!(m.available, Some(2913480 * 1024));
        assert_eq!(m.swap_total, Some(102396 * 1024));
        assert_eq!(m.swap_free, Some(102396 * 1024));
    }

    #[test]
    fn meminfo_fallback_and_garbage() {
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\n";
        let m = parse_meminfo(old).unwrap();
        assert_eq!(m.available, Some(150 * 1024));
        assert_eq!(m.swap_total, None);
        assert_eq!(parse_meminfo(""), None);
        assert_eq!(parse_meminfo("\0\0garbage\n:::\nfoo: bar\n"), None);
        let huge = "MemTotal: 99999999999999999999 kB\nMemFree: 18446744073709551615 kB\n";
        assert_eq!(parse_meminfo(huge), None);
        let edge = format!(
            "MemTotal: {} kB\nMemFree: {} kB\nCached: 5 kB\n",
            u64::MAX / 1024,
            u64::MAX / 1024
        );
        let m = parse_meminfo(&edge).unwrap();
        assert_eq!(m.total, Some(u64::MAX / 1024 * 1024));
        assert_eq!(m.available, None); // fallback sum overflows
        assert_eq!(
            parse_meminfo("MemTotal: 12 MB\nSwapFree: x kB\nSwapTotal: 7\n"),
            Some(MemInfo {
                swap_total: Some(7),
                ..MemInfo::default()
            })
        );
    }

    #[test]
    fn thermal() {
        assert_eq!(parse_thermal("48312\n"), Some(48.312));
        assert_eq!(parse_thermal("-5000"), Some(-5.0));
        assert_eq!(parse_thermal("garbage"), None);
        assert_eq!(parse_thermal(""), None);
        assert_eq!(parse_thermal("99999999999999999999999"), None);
        assert_eq!(parse_thermal("9223372036854775807"), None);
        assert_eq!(parse_thermal("-273150"), None);
    }

    #[test]
    fn cpuinfo_model() {
        assert_eq!(
            parse_cpuinfo_model(PI4_CPUINFO).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        let hw_only = PI4_CPUINFO.replace("Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n", "");
        assert_eq!(parse_cpuinfo_model(&hw_only).as_deref(), Some("BCM2835"));
        assert_eq!(parse_cpuinfo_model(X86_CPUINFO), None);
        assert_eq!(parse_cpuinfo_model(""), None);
        assert_eq!(
            parse_cpuinfo_model("Model\t:   \nHardware: X\n").as_deref(),
            Some("X")
        );
    }

    #[test]
    fn clean() {
        assert_eq!(
            clean_text("Raspberry Pi 4 Model B Rev 1.4\0").as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(
            clean_text("Pine64 RockPro64 v2.1\0").as_deref(),
            Some("Pine64 RockPro64 v2.1")
        );
        assert_eq!(
            clean_text("  6.1.0-rpi7-rpi-v8\n").as_deref(),
            Some("6.1.0-rpi7-rpi-v8")
        );
        assert_eq!(clean_text("\0\0"), None);
        assert_eq!(clean_text(""), None);
        assert_eq!(clean_text(" \n\t "), None);
        assert_eq!(clean_text("a\x07b\x1bc").as_deref(), Some("abc"));
        let long = "é".repeat(500);
        assert_eq!(clean_text(&long).map(|s| s.chars().count()), Some(128));
    }

    #[test]
    fn disk_math() {
        assert_eq!(
            disk_from_statvfs(100, 40, 4096, 4096),
            Some((409_600, 163_840))
        );
        assert_eq!(disk_from_statvfs(100, 40, 0, 512), Some((51_200, 20_480)));
        assert_eq!(disk_from_statvfs(100, 40, 0, 0), None);
        assert_eq!(disk_from_statvfs(u64::MAX, 1, 4096, 4096), None);
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024), "10 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes((3.8 * (1u64 << 30) as f64) as u64), "3.8 GiB");
        assert_eq!(human_bytes(15 * (1 << 30) + (1 << 29)), "16 GiB");
        assert_eq!(human_bytes(500 * (1 << 30)), "500 GiB");
        assert_eq!(human_bytes(u64::MAX), "16 EiB");
    }

    #[test]
    fn durations() {
        let d = Duration::from_secs;
        assert_eq!(human_duration(d(0)), "0s");
        assert_eq!(human_duration(d(45)), "45s");
        assert_eq!(human_duration(d(12 * 60 + 59)), "12m");
        assert_eq!(human_duration(d(3 * 3600 + 20 * 60 + 5)), "3h 20m");
        assert_eq!(human_duration(d(5 * 86_400 + 4 * 3600 + 59)), "5d 4h");
        assert!(human_duration(Duration::MAX).ends_with('h'));
    }

    fn write(root: &Path, rel: &str, content: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    #[test]
    fn read_fake_pi() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "proc/uptime", b"93784.12 300000.00\n");
        write(r, "proc/loadavg", b"0.42 0.30 0.25 2/345 6789\n");
        write(r, "proc/stat", STAT.as_bytes());
        write(r, "proc/meminfo", MEMINFO.as_bytes());
        write(r, "proc/cpuinfo", PI4_CPUINFO.as_bytes());
        write(
            r,
            "proc/device-tree/model",
            b"Raspberry Pi 4 Model B Rev 1.4\0",
        );
        write(r, "proc/sys/kernel/osrelease", b"6.6.31+rpt-rpi-v8\n");
        write(r, "sys/class/thermal/thermal_zone0/temp", b"48312\n");
        write(r, "sys/class/thermal/thermal_zone1/temp", b"51500\n");
        write(
            r,
            "sys/class/thermal/thermal_zone2/temp",
            b"\xff\xfegarbage\n",
        );
        write(r, "sys/class/thermal/cooling_device0/temp", b"99000\n");

        let root = SysRoot::new(r);
        let mut cpu = CpuSampler::new();
        let s = read(&root, r, &mut cpu);
        assert_eq!(s.uptime, Some(Duration::from_secs_f64(93784.12)));
        assert_eq!(s.load, Some([0.42, 0.30, 0.25]));
        assert_eq!(s.cpus, Some(2));
        assert_eq!(s.cpu_percent, None);
        assert_eq!(s.mem_total, Some(3884096 * 1024));
        assert_eq!(s.mem_available, Some(2913480 * 1024));
        assert_eq!(s.swap_total, Some(102396 * 1024));
        assert_eq!(s.swap_free, Some(102396 * 1024));
        assert!(s.disk_total.is_some_and(|t| t > 0));
        assert!(s.disk_available <= s.disk_total);
        assert_eq!(s.temperature_c, Some(51.5));
        assert_eq!(s.model.as_deref(), Some("Raspberry Pi 4 Model B Rev 1.4"));
        assert_eq!(s.kernel.as_deref(), Some("6.6.31+rpt-rpi-v8"));
        assert_eq!(s.arch, std::env::consts::ARCH);

        // Second sample: 300 more ticks, 75 of them idle => 75% busy.
        write(
            r,
            "proc/stat",
            b"cpu  116594 0 17321 50297 927 0 146 598 0 0\ncpu0 1\ncpu1 1\n",
        );
        let s = read(&root, r, &mut cpu);
        assert_eq!(s.cpu_percent, Some(75.0));
        assert_eq!(cpu.sample(&root), None); // unchanged file: zero delta
    }

    #[test]
    fn read_model_fallbacks() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let root = SysRoot::new(r);
        assert_eq!(read_model(&root), None);
        write(
            r,
            "sys/class/dmi/id/product_name",
            b"Standard PC (Q35 + ICH9, 2009)\n",
        );
        assert_eq!(
            read_model(&root).as_deref(),
            Some("Standard PC (Q35 + ICH9, 2009)")
        );
        write(r, "proc/cpuinfo", X86_CPUINFO.as_bytes());
        assert_eq!(
            read_model(&root).as_deref(),
            Some("Standard PC (Q35 + ICH9, 2009)")
        );
        write(r, "proc/cpuinfo", PI4_CPUINFO.as_bytes());
        assert_eq!(
            read_model(&root).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        write(
            r,
            "sys/firmware/devicetree/base/model",
            b"Pine64 PinePhone (1.2)\0",
        );
        assert_eq!(read_model(&root).as_deref(), Some("Pine64 PinePhone (1.2)"));
        write(r, "proc/device-tree/model", b"\0");
        assert_eq!(read_model(&root).as_deref(), Some("Pine64 PinePhone (1.2)"));
    }

    #[test]
    fn read_empty_and_garbage_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let root = SysRoot::new(r);
        let mut cpu = CpuSampler::new();
        let missing = r.join("no/such/data/dir");
        let s = read(&root, &missing, &mut cpu);
        // The disk falls back to the nearest existing ancestor.
        assert!(s.disk_total.is_some());
        assert_eq!(
            NodeStats {
                disk_total: None,
                disk_available: None,
                ..s
            },
            NodeStats {
                arch: std::env::consts::ARCH,
                ..NodeStats::default()
            }
        );

        for f in [
            "proc/uptime",
            "proc/loadavg",
            "proc/stat",
            "proc/meminfo",
            "proc/cpuinfo",
            "proc/sys/kernel/osrelease",
            "sys/class/thermal/thermal_zone0/temp",
        ] {
            write(r, f, b"\0\xff\xfe 18446744073709551616 -1 nan \n:\n");
        }
        let s = read(&root, r, &mut cpu);
        assert_eq!(s.uptime, None);
        assert_eq!(s.load, None);
        assert_eq!(s.cpus, None);
        assert_eq!(s.mem_total, None);
        assert_eq!(s.temperature_c, None);
        assert_eq!(s.model, None);
    }

    #[test]
    fn read_host() {
        let mut cpu = CpuSampler::new();
        let s = read(&SysRoot::host(), Path::new("/"), &mut cpu);
        assert!(s.uptime.is_some(), "{s:?}");
        assert!(s.load.is_some(), "{s:?}");
        assert!(s.cpus.is_some_and(|n| n >= 1), "{s:?}");
        assert!(s.mem_total.is_some_and(|n| n > 0), "{s:?}");
        assert!(s.disk_total.is_some_and(|n| n > 0), "{s:?}");
        assert!(s.kernel.is_some(), "{s:?}");
        std::thread::sleep(Duration::from_millis(50));
        let s = read(&SysRoot::host(), Path::new("/"), &mut cpu);
        if let Some(p) = s.cpu_percent {
            assert!((0.0..=100.0).contains(&p));
        }
    }
}
