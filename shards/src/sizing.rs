//! Defaults sized from the machine: the read cache's share of the memory this process
//! may use. ringkv reads with direct I/O, so the page cache does nothing for it and its
//! own cache is the only one between a read and the disk; a fixed small default would
//! leave it slower than engines that read through the page cache.
//!
//! The memory a process may use is the smaller of the machine's (`MemTotal`) and its
//! memory cgroup's limit (v2 `memory.max`, v1 `memory.limit_in_bytes`), read once per
//! call from `/proc` and `/sys`; anything unreadable counts as no limit.

/// The default read cache never goes below this (64 MiB), whatever the machine.
pub const CACHE_DEFAULT_MIN_BYTES: u64 = 64 << 20;
/// The default read cache's share of the memory the process may use: a quarter.
const CACHE_DEFAULT_SHARE: u64 = 4;
/// cgroup v1 writes "no limit" as a number near `i64::MAX` rounded to pages.
const CGROUP_V1_UNLIMITED_BYTES: u64 = 1 << 60;

/// The default read-cache budget: a quarter of the memory this process may use (its
/// memory cgroup's limit when it has one, else the machine's), at least 64 MiB.
pub fn cache_default_bytes() -> u64 {
    available_memory_bytes()
        .map_or(CACHE_DEFAULT_MIN_BYTES, |m| m / CACHE_DEFAULT_SHARE)
        .max(CACHE_DEFAULT_MIN_BYTES)
}

/// The memory this process may use, if it can be told.
fn available_memory_bytes() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| cgroup_limit_bytes(&text, |path| std::fs::read_to_string(path).ok()));
    match (machine, cgroup) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The memory limit of the cgroup a `/proc/self/cgroup` text names, reading its limit
/// file with `read`: v2 (`0::/path`) `memory.max`, or v1 (a `memory` controller line)
/// `memory.limit_in_bytes`. `None` when there is no limit or it cannot be read.
fn cgroup_limit_bytes(proc_cgroup: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (hierarchy, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let file = if hierarchy == "0" && controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else {
            continue;
        };
        let limit = read(&file).and_then(|text| text.trim().parse::<u64>().ok());
        if let Some(bytes) = limit.filter(|&b| b < CGROUP_V1_UNLIMITED_BYTES) {
            return Some(bytes);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_kib() {
        let text = "MemTotal:       24604316 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total_bytes(text), Some(24_604_316 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn a_cgroup_limit_is_read_from_v2_or_v1_and_no_limit_is_none() {
        let files = |wanted: &'static str, text: &'static str| {
            move |path: &str| (path == wanted).then(|| text.to_owned())
        };
        let v2 = "0::/user.slice/app.scope\n";
        let read = files(
            "/sys/fs/cgroup/user.slice/app.scope/memory.max",
            "536870912\n",
        );
        assert_eq!(cgroup_limit_bytes(v2, read), Some(512 << 20));
        let read = files("/sys/fs/cgroup/user.slice/app.scope/memory.max", "max\n");
        assert_eq!(cgroup_limit_bytes(v2, read), None);
        let v1 = "12:cpu,cpuacct:/x\n9:memory:/bench\n0::/\n";
        let read = files(
            "/sys/fs/cgroup/memory/bench/memory.limit_in_bytes",
            "1073741824",
        );
        assert_eq!(cgroup_limit_bytes(v1, read), Some(1 << 30));
        let read = files(
            "/sys/fs/cgroup/memory/bench/memory.limit_in_bytes",
            "9223372036854771712",
        );
        assert_eq!(cgroup_limit_bytes(v1, read), None, "v1's unlimited");
        assert_eq!(cgroup_limit_bytes(v1, |_| None), None, "unreadable");
    }

    #[test]
    fn the_default_cache_is_a_quarter_of_what_the_process_may_use_and_never_tiny() {
        let cache = cache_default_bytes();
        assert!(cache >= CACHE_DEFAULT_MIN_BYTES);
        if let Some(memory) = available_memory_bytes() {
            assert_eq!(cache, (memory / 4).max(CACHE_DEFAULT_MIN_BYTES));
        }
    }
}
