//! Honest memory. A dataset that fits in memory measures memory, not the device: ringkv
//! reads with direct I/O through a cache of the budget's size, but the peers read
//! through the OS page cache, which no engine option limits. So each engine runs in a
//! child process of the rig placed in a memory cgroup of its own, limited to the budget
//! plus a headroom for what is not cache (indexes, memtables, the rig's buffers), and the
//! page cache is dropped before each engine's phase when the rig runs as root.
//!
//! Both cgroup layouts are handled: v2 (`memory.max`, `memory.peak`) and v1
//! (`memory.limit_in_bytes`, `memory.max_usage_in_bytes`), found through
//! `/proc/self/mountinfo` and `/proc/self/cgroup`. A cgroup is created under the rig's
//! own cgroup, named after the rig's pid and the engine, and removed when its child has
//! exited ([`MemoryCgroup`]'s `Drop`), so no cgroup is left behind.
//!
//! Whatever cannot be done is said: [`plan`] returns the warnings the report prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which cgroup interface holds the memory controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    fn limit_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        }
    }
    fn peak_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.max_usage_in_bytes",
            CgroupVersion::V2 => "memory.peak",
        }
    }
}

/// The rig's own cgroup in the hierarchy that has the memory controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    pub version: CgroupVersion,
    /// The directory of the rig's own cgroup: children are made here.
    pub dir: PathBuf,
}

/// A mount of a cgroup file system that may hold the memory controller.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CgroupMount {
    version: CgroupVersion,
    /// The cgroup path the mount shows at its mount point (`/` unless namespaced).
    root: String,
    mount_point: PathBuf,
}

/// The cgroup mounts in `/proc/self/mountinfo` text: v1 mounts with the `memory`
/// option, and v2 mounts (whether v2 has the memory controller is checked on disk).
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // Format: { id parent major:minor root mount-point options [optional...] - fstype source super-options }
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (root, mount_point) = (*left.get(3)?, *left.get(4)?);
            let version = match *right.first()? {
                "cgroup2" => CgroupVersion::V2,
                "cgroup" if right.get(2)?.split(',').any(|o| o == "memory") => CgroupVersion::V1,
                _ => return None,
            };
            Some(CgroupMount {
                version,
                root: root.to_owned(),
                mount_point: PathBuf::from(mount_point),
            })
        })
        .collect()
}

/// This process's cgroup path for `version` in `/proc/self/cgroup` text.
fn own_cgroup(proc_cgroup: &str, version: CgroupVersion) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        // Format: { hierarchy-id : controllers : path }
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match version {
            CgroupVersion::V2 => id == "0" && controllers.is_empty(),
            CgroupVersion::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        matches.then(|| path.to_owned())
    })
}

/// Joins a mount and a cgroup path seen from this process, minding a namespaced root.
fn cgroup_dir(mount: &CgroupMount, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(mount.root.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    mount.mount_point.join(relative)
}

/// Finds the memory controller and this process's cgroup in it, or says why not.
pub fn find_controller() -> Result<Controller, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let mounts = cgroup_mounts(&mountinfo);
    // Prefer v2 when it has the memory controller; else a v1 memory hierarchy.
    let v2 = mounts.iter().find(|m| {
        m.version == CgroupVersion::V2
            && std::fs::read_to_string(m.mount_point.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
    });
    let v1 = mounts.iter().find(|m| m.version == CgroupVersion::V1);
    let mount = v2
        .or(v1)
        .ok_or("no cgroup hierarchy with the memory controller is mounted")?;
    let path = own_cgroup(&proc_cgroup, mount.version)
        .ok_or("this process's memory cgroup is not in /proc/self/cgroup")?;
    Ok(Controller {
        version: mount.version,
        dir: cgroup_dir(mount, &path),
    })
}

/// A child memory cgroup with a limit, removed on drop (its processes must have exited).
#[derive(Debug)]
pub struct MemoryCgroup {
    version: CgroupVersion,
    dir: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {text:?} to {}: {e}", path.display()))
}

impl MemoryCgroup {
    /// Creates `name` under the rig's cgroup, limited to `limit_bytes` (swap too, where
    /// the interface allows it).
    pub fn create(controller: &Controller, name: &str, limit_bytes: u64) -> Result<Self, String> {
        if controller.version == CgroupVersion::V2 {
            // A v2 child gets the memory controller only if its parent delegates it.
            let subtree = controller.dir.join("cgroup.subtree_control");
            let delegated = std::fs::read_to_string(&subtree)
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
            if !delegated {
                write(&subtree, "+memory")?;
            }
        }
        let dir = controller.dir.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cgroup = Self {
            version: controller.version,
            dir,
        };
        write(
            &cgroup.dir.join(controller.version.limit_file()),
            &limit_bytes.to_string(),
        )?;
        let swap = match controller.version {
            CgroupVersion::V2 => ("memory.swap.max", "0".to_owned()),
            CgroupVersion::V1 => ("memory.memsw.limit_in_bytes", limit_bytes.to_string()),
        };
        if cgroup.dir.join(swap.0).exists() {
            // Best effort: the kernel refuses it when swap accounting is off.
            let _ = write(&cgroup.dir.join(swap.0), &swap.1);
        }
        Ok(cgroup)
    }

    /// The file a process writes its pid to in order to join (see [`join`]).
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The limit the kernel holds (it rounds to pages).
    pub fn limit_bytes(&self) -> Option<u64> {
        read_u64(&self.dir.join(self.version.limit_file()))
    }

    /// The most memory (including page cache) charged to the cgroup so far.
    pub fn peak_bytes(&self) -> Option<u64> {
        read_u64(&self.dir.join(self.version.peak_file()))
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The kernel may take a moment to let go of a process that has just exited.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "ringkv-bench: warning: could not remove the cgroup {}",
            self.dir.display()
        );
    }
}

/// Moves the calling process (all its threads) into the cgroup whose `cgroup.procs` is
/// `procs_file`. Called by an engine's child process first thing, before it allocates
/// anything worth counting.
pub fn join(procs_file: &Path) -> Result<(), String> {
    write(procs_file, &std::process::id().to_string())
}

/// Writes dirty pages back and empties the page cache, dentries and inodes (root only).
pub fn drop_caches() -> Result<(), String> {
    nix::unistd::sync();
    write(Path::new("/proc/sys/vm/drop_caches"), "3")
}

/// The machine's memory (`MemTotal`), bytes.
pub fn machine_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The effective user id, from `/proc/self/status` (`Uid: real effective saved fs`).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// What the rig found out about the machine.
#[derive(Clone, Debug)]
pub struct Facts {
    pub root: bool,
    /// The memory controller, or why there is none (or why it cannot be used).
    pub controller: Result<Controller, String>,
    pub machine_memory_bytes: u64,
}

impl Facts {
    /// Looks at this machine; a cgroup is tried for real (made and removed) so that a
    /// read-only or non-delegated hierarchy is found out before the run.
    pub fn gather() -> Self {
        let root = effective_uid() == Some(0);
        let controller = find_controller().and_then(|c| {
            let probe = format!("ringkv-bench-{}-probe", std::process::id());
            MemoryCgroup::create(&c, &probe, u64::MAX >> 2).map(|_| c)
        });
        Self {
            root,
            controller,
            machine_memory_bytes: machine_memory_bytes().unwrap_or(0),
        }
    }
}

/// How the run treats memory, and what it cannot make honest.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Each engine's cache.
    pub budget_bytes: u64,
    /// Each engine's cgroup limit (budget plus headroom), when cgroups are usable.
    pub cgroup_limit_bytes: Option<u64>,
    pub controller: Option<Controller>,
    /// Drop the page cache before each engine and before each cold reopen.
    pub drop_caches: bool,
    pub warnings: Vec<String>,
}

/// What ringkv holds besides its read cache: per key, its index entry (the key, its
/// 2-byte length, a 24-byte slot, 5-11 bytes of hash table, growth slack), per core the
/// key summaries of unsealed extents (bounded by `Options::summary_memory_bytes`), and in
/// all the rest (extents' write buffers, compaction, I/O memory, threads, what malloc's
/// fragmentation strands, requests in flight, the rig's own buffers). Measured (ycsb
/// A, B, C, F after loading 1 M records of 24-byte keys and 1,000-byte values, one core,
/// a 256 MiB cache): 131 MiB at the peak beside the cache with 2 client threads, 163 MiB
/// with 32 requests in flight (index 59 MiB, summaries 22 MiB, buffers 17 MiB); 2.2 M
/// records of 33-byte keys: 217 MiB. The estimate for those: 213, 213 and 314 MiB.
const RINGKV_INDEX_BYTES_PER_KEY_BEYOND_KEY: u64 = 48;
const RINGKV_FIXED_BYTES: u64 = 128 << 20;

/// What ringkv holds besides its read cache for `keys` records of `key_bytes`-byte keys
/// with its default options.
fn ringkv_besides_cache_bytes(keys: u64, key_bytes: u64) -> u64 {
    let options = ringkv::Options::default();
    let summaries = options.resolved_cores() as u64 * ringkv::SUMMARY_MEMORY_DEFAULT_BYTES as u64;
    keys.saturating_mul(key_bytes + RINGKV_INDEX_BYTES_PER_KEY_BEYOND_KEY)
        + summaries
        + RINGKV_FIXED_BYTES
}

/// ringkv's read cache when it gets the memory the peers get. The peers read through
/// the page cache, which takes whatever their cgroup limit leaves them; ringkv reads
/// with direct I/O, so it gets that memory as its cache: the limit less an estimate of
/// what it holds besides, for `keys` records of `key_bytes`-byte keys, and never less
/// than the budget. Without a cgroup limit, the budget.
pub fn ringkv_cache_bytes(plan: &Plan, keys: u64, key_bytes: u64) -> u64 {
    let besides = ringkv_besides_cache_bytes(keys, key_bytes);
    match plan.cgroup_limit_bytes {
        None => plan.budget_bytes,
        Some(limit) => limit.saturating_sub(besides).max(plan.budget_bytes),
    }
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// Decides from `facts` how to limit memory for a dataset of `dataset_bytes`.
pub fn plan(facts: &Facts, budget_bytes: u64, headroom_bytes: u64, dataset_bytes: u64) -> Plan {
    let mut warnings = Vec::new();
    let controller = match (&facts.controller, facts.root) {
        (Ok(c), true) => Some(c.clone()),
        (_, false) => None,
        (Err(why), true) => {
            warnings.push(format!(
                "no memory cgroup ({why}): the peers' page cache is not limited"
            ));
            None
        }
    };
    if !facts.root {
        warnings.push(
            "not root: the page cache is not dropped between phases and no engine runs in a \
             memory cgroup, so the peers' page cache is not limited and \"cold\" reads may be warm"
                .to_owned(),
        );
    }
    if dataset_bytes <= budget_bytes {
        warnings.push(format!(
            "the dataset (about {} MiB) fits in the memory budget ({} MiB): reads measure memory, \
             not the device; use more keys or a smaller --memory-budget-bytes",
            mib(dataset_bytes),
            mib(budget_bytes)
        ));
    } else if controller.is_none() && dataset_bytes <= facts.machine_memory_bytes {
        warnings.push(format!(
            "the dataset (about {} MiB) fits in this machine's memory ({} MiB) and the page cache \
             is not limited: the peers' reads (buffered I/O) measure memory, ringkv's (direct I/O) \
             its {} MiB cache and the device",
            mib(dataset_bytes),
            mib(facts.machine_memory_bytes),
            mib(budget_bytes)
        ));
    }
    Plan {
        budget_bytes,
        cgroup_limit_bytes: controller
            .as_ref()
            .map(|_| budget_bytes.saturating_add(headroom_bytes)),
        controller,
        drop_caches: facts.root,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // This machine: cgroup v1 controllers plus a v2 mount without memory.
    const HYBRID_MOUNTINFO: &str = "\
24 1 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
28 24 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
31 24 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 24 0:33 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/d0ff
1:cpu:/
0::/
";

    #[test]
    fn finds_the_v1_memory_hierarchy_and_our_place_in_it() {
        let mounts = cgroup_mounts(HYBRID_MOUNTINFO);
        assert_eq!(mounts.len(), 2, "{mounts:?}");
        let v1 = mounts
            .iter()
            .find(|m| m.version == CgroupVersion::V1)
            .unwrap();
        assert_eq!(v1.mount_point, Path::new("/sys/fs/cgroup/memory"));
        let path = own_cgroup(HYBRID_CGROUP, CgroupVersion::V1).unwrap();
        assert_eq!(path, "/process_api/d0ff");
        assert_eq!(
            cgroup_dir(v1, &path),
            Path::new("/sys/fs/cgroup/memory/process_api/d0ff")
        );
        assert_eq!(own_cgroup(HYBRID_CGROUP, CgroupVersion::V2).unwrap(), "/");
    }

    #[test]
    fn finds_a_v2_cgroup_under_a_namespaced_root() {
        let mountinfo =
            "30 23 0:26 /user.slice /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let mounts = cgroup_mounts(mountinfo);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].version, CgroupVersion::V2);
        let path = own_cgroup("0::/user.slice/session-3.scope\n", CgroupVersion::V2).unwrap();
        assert_eq!(
            cgroup_dir(&mounts[0], &path),
            Path::new("/sys/fs/cgroup/session-3.scope")
        );
        // No memory hierarchy at all: nothing found.
        assert!(cgroup_mounts("1 0 0:1 / / rw - ext4 /dev/vda rw\n").is_empty());
    }

    fn facts(root: bool, cgroup: bool) -> Facts {
        Facts {
            root,
            controller: if cgroup {
                Ok(Controller {
                    version: CgroupVersion::V1,
                    dir: PathBuf::from("/sys/fs/cgroup/memory"),
                })
            } else {
                Err("none here".to_owned())
            },
            machine_memory_bytes: 24 << 30,
        }
    }

    #[test]
    fn the_plan_warns_whenever_the_comparison_is_not_honest() {
        let (budget, headroom) = (256 << 20, 256 << 20);
        // Root with a cgroup and a dataset larger than the budget: honest, no warning.
        let p = plan(&facts(true, true), budget, headroom, 4 << 30);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.cgroup_limit_bytes, Some(512 << 20));
        assert!(p.drop_caches);
        // A dataset that fits in the budget: a warning even with everything else right.
        let p = plan(&facts(true, true), budget, headroom, 100 << 20);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("fits in the memory budget"));
        // Not root: no cgroup, no dropped caches, and the page cache goes unlimited.
        let p = plan(&facts(false, true), budget, headroom, 4 << 30);
        assert!(p.controller.is_none() && !p.drop_caches);
        assert!(p.warnings.iter().any(|w| w.starts_with("not root")));
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("fits in this machine"))
        );
        // Root without a cgroup: says why.
        let p = plan(&facts(true, false), budget, headroom, 4 << 30);
        assert!(p.cgroup_limit_bytes.is_none());
        assert!(p.warnings[0].contains("none here"), "{:?}", p.warnings);
    }

    #[test]
    fn ringkv_gets_as_its_cache_what_the_peers_get_as_page_cache() {
        let (budget, headroom) = (64 << 20, 448 << 20);
        // Limited to 512 MiB, 200,000 keys of 24 bytes: the limit less the rest.
        let p = plan(&facts(true, true), budget, headroom, 4 << 30);
        let cache = ringkv_cache_bytes(&p, 200_000, 24);
        let besides = ringkv_besides_cache_bytes(200_000, 24);
        assert_eq!(cache, (512 << 20) - besides);
        assert!(besides > 200_000 * 72 + RINGKV_FIXED_BYTES, "{besides}");
        // So many keys that the rest would take the whole limit: still the budget.
        assert_eq!(ringkv_cache_bytes(&p, 10_000_000, 24), budget);
        // No cgroup (the peers' page cache is not limited either): the budget.
        let p = plan(&facts(false, false), budget, headroom, 4 << 30);
        assert_eq!(ringkv_cache_bytes(&p, 200_000, 24), budget);
    }

    /// Where the machine allows it (root, a memory hierarchy), a cgroup is made with its
    /// limit, a child process joins it, and the cgroup is gone afterwards.
    #[test]
    fn a_child_process_joins_a_limited_cgroup_which_is_then_removed() {
        let facts = Facts::gather();
        let Some(controller) = facts.controller.ok().filter(|_| facts.root) else {
            eprintln!("skipped: needs root and a memory cgroup");
            return;
        };
        let name = format!("ringkv-bench-test-{}", std::process::id());
        let cgroup = MemoryCgroup::create(&controller, &name, 64 << 20).unwrap();
        let dir = controller.dir.join(&name);
        assert!(dir.is_dir());
        assert_eq!(cgroup.limit_bytes(), Some(64 << 20));
        let procs = cgroup.procs_file();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {} && grep -q \"$(basename {})\" /proc/self/cgroup",
                procs.display(),
                name
            ))
            .status()
            .unwrap();
        assert!(status.success());
        assert!(cgroup.peak_bytes().is_some_and(|b| b > 0));
        drop(cgroup);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
