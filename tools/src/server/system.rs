//! What INFO tells of the process and the machine: resident memory and its peak, the
//! machine's memory, CPU time, the clock. Linux's /proc and getrusage; a figure that
//! cannot be read is 0.

use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::resource::{UsageWho, getrusage};

/// A `kB` field of a /proc status file, in bytes.
fn proc_kib(path: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

pub fn rss_bytes() -> u64 {
    proc_kib("/proc/self/status", "VmRSS")
}

pub fn peak_rss_bytes() -> u64 {
    proc_kib("/proc/self/status", "VmHWM")
}

pub fn total_memory_bytes() -> u64 {
    proc_kib("/proc/meminfo", "MemTotal")
}

/// System and user CPU seconds of the process, as Redis prints them (`%ld.%06ld`).
pub fn cpu_seconds() -> (String, String) {
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return ("0.000000".into(), "0.000000".into());
    };
    let seconds = |t: nix::sys::time::TimeVal| format!("{}.{:06}", t.tv_sec(), t.tv_usec());
    (seconds(usage.system_time()), seconds(usage.user_time()))
}

pub fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// Bytes as Redis's INFO writes them for humans: `512B`, `1.50K`, `2.00M`, ….
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    for unit in UNITS {
        if value < 1024.0 || unit == "P" {
            return format!("{value:.2}{unit}");
        }
        value /= 1024.0;
    }
    unreachable!("the last unit always answers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_as_redis() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(2 << 20), "2.00M");
        assert_eq!(human(3 << 30), "3.00G");
    }

    #[test]
    fn the_process_has_memory_and_cpu_time() {
        assert!(rss_bytes() > 0);
        assert!(peak_rss_bytes() >= rss_bytes() / 2);
        assert!(total_memory_bytes() > 0);
        let (sys, user) = cpu_seconds();
        assert!(sys.contains('.') && user.contains('.'));
    }
}
