//! The standard process metrics every Prometheus client library exports
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...), read
//! from `/proc/self` at scrape time, so dashboards and alerts written for any
//! other service work unchanged. They keep their standard names (no `wsplus_`
//! prefix): that is the point of exporting them.
//!
//! Linux only: where `/proc/self` cannot be read, a family is left out of the
//! scrape rather than reported as zero.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::family::Family;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (the kernel's
/// `USER_HZ`). It is part of the kernel's user-space ABI and 100 on every
/// architecture Rust targets for Linux; reading it through `sysconf` would be
/// the crate's only `unsafe` code.
const USER_HZ: f64 = 100.0;

/// What one scrape read from `/proc`; `None` where a file was unreadable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, bytes (`VmRSS`).
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes (`VmSize`).
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads this process's figures from `/proc`.
    pub fn read() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let status = read("/proc/self/status");
        let stat = read("/proc/self/stat").and_then(|s| parse_stat(&s));
        let boot_time = read("/proc/stat").and_then(|s| parse_boot_time(&s));
        Self {
            resident_bytes: status.as_deref().and_then(|s| status_kib(s, "VmRSS")),
            virtual_bytes: status.as_deref().and_then(|s| status_kib(s, "VmSize")),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: read("/proc/self/limits").and_then(|s| parse_max_open_files(&s)),
            cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / USER_HZ),
            start_time_seconds: stat
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.starttime as f64 / USER_HZ),
        }
    }
}

/// The fields of `/proc/self/stat` used here, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`: utime, stime and starttime are fields 14, 15 and 22.
fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// A `Key:   123 kB` line of `/proc/self/status`, in bytes.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits` (`unlimited`
/// is reported as `u64::MAX`).
fn parse_max_open_files(text: &str) -> Option<u64> {
    let rest = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        soft => soft.parse().ok(),
    }
}

/// `btime` of `/proc/stat`: boot time, seconds since the Unix epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The `process_*` families of one scrape.
#[derive(Debug)]
pub struct ProcessMetrics(pub ProcessStats);

impl Collector for ProcessMetrics {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let whole = [
            (
                Family::gauge("resident_memory", "Resident memory size.").unit(Unit::Bytes),
                s.resident_bytes,
            ),
            (
                Family::gauge("virtual_memory", "Virtual memory size.").unit(Unit::Bytes),
                s.virtual_bytes,
            ),
            (
                Family::gauge("open_fds", "Open file descriptors."),
                s.open_fds,
            ),
            (
                Family::gauge("max_fds", "Maximum number of open file descriptors."),
                s.max_fds,
            ),
        ];
        for (family, value) in whole {
            if let Some(v) = value {
                family.single(&mut out, v)?;
            }
        }
        if let Some(v) = s.cpu_seconds {
            Family::counter("cpu", "Total user and system CPU time spent.")
                .unit(Unit::Seconds)
                .single_f64(&mut out, v)?;
        }
        if let Some(v) = s.start_time_seconds {
            Family::gauge(
                "start_time",
                "Start time of the process since the Unix epoch.",
            )
            .unit(Unit::Seconds)
            .single_f64(&mut out, v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis must not shift fields.
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 500 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 75,
                starttime: 123456
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_parsed() {
        let status = "Name:\twsplus\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(2048 * 1024));
        assert_eq!(status_kib(status, "VmSize"), Some(123456 * 1024));
        assert_eq!(status_kib(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), Some(u64::MAX));
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_live_process_is_read() {
        let s = ProcessStats::read();
        assert!(s.resident_bytes.unwrap() > 0);
        assert!(s.virtual_bytes.unwrap() >= s.resident_bytes.unwrap());
        assert!(s.open_fds.unwrap() >= 3);
        assert!(s.max_fds.unwrap() >= s.open_fds.unwrap());
        assert!(s.cpu_seconds.unwrap() >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = s.start_time_seconds.unwrap();
        // Started within the last day, not in the future (tick rounding aside).
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
    }
}
