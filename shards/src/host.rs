//! What the host must allow before glommio executors start: its floor on the
//! locked-memory limit, and the io_uring system calls. Without these checks an
//! executor fails inside its own thread (glommio returns an error for the first and
//! panics on the second, calling the kernel too old), and the error says nothing
//! about what to change. Each finding is an [`Error::Unsupported`] naming the
//! limit or setting to change.

use nix::errno::Errno;
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};

use crate::error::{Error, Result};
use crate::options::Options;

/// glommio 0.9 (`Reactor::new`, `MIN_MEMLOCK_LIMIT`) refuses to make an executor
/// when the soft RLIMIT_MEMLOCK is below this.
const MEMLOCK_MIN_BYTES: u64 = 512 << 10;
/// Rings of one glommio executor that register its I/O memory (main, latency,
/// poll). Without CAP_IPC_LOCK each registration is charged to the user's locked
/// memory; one that does not fit is skipped (the executor then does unregistered
/// I/O), so this sizes a recommendation, not a requirement.
const RINGS_PER_EXECUTOR: u64 = 3;
/// glommio rounds an executor's I/O memory up to whole pages and at least this.
const IO_MEMORY_FLOOR_BYTES: u64 = 64 << 10;
/// Every check, in order; the first finding is the error.
pub(crate) fn check(options: &Options) -> Result<()> {
    check_memlock(options)?;
    check_io_uring()
}

/// Locked memory that lets every core register its I/O memory with all its rings.
fn memlock_recommended_bytes(options: &Options) -> u64 {
    let io = (options.io_memory_bytes as u64).next_multiple_of(4096);
    let per_core = RINGS_PER_EXECUTOR * io.max(IO_MEMORY_FLOOR_BYTES);
    MEMLOCK_MIN_BYTES.max(per_core * options.resolved_cores() as u64)
}

fn kib(bytes: u64) -> String {
    match bytes {
        RLIM_INFINITY => "unlimited".to_owned(),
        _ => format!("{} KiB", bytes / 1024),
    }
}

fn check_memlock(options: &Options) -> Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).map_err(|e| Error::Io {
        op: "reading the locked-memory limit (RLIMIT_MEMLOCK) of",
        path: "this process".into(),
        source: e.into(),
    })?;
    if soft >= MEMLOCK_MIN_BYTES {
        return Ok(());
    }
    let recommended = memlock_recommended_bytes(options);
    Err(Error::Unsupported {
        what: format!(
            "the locked-memory limit (RLIMIT_MEMLOCK) is {} (hard limit {}); glommio's \
             executors need at least {} to start",
            kib(soft),
            kib(hard),
            kib(MEMLOCK_MIN_BYTES)
        ),
        advice: format!(
            "raise it to {} or more for {} cores with {} of io_memory each (what lets \
             every io_uring ring register its buffers): `ulimit -l {}` in the shell that \
             starts the process, LimitMEMLOCK={}K in its systemd unit, a memlock line in \
             /etc/security/limits.conf, or `--ulimit memlock=...` for a container",
            kib(recommended),
            options.resolved_cores(),
            kib(options.io_memory_bytes as u64),
            recommended / 1024,
            recommended / 1024,
        ),
    })
}

fn check_io_uring() -> Result<()> {
    let Err(errno) = io_uring_setup() else {
        return Ok(());
    };
    let advice = match errno {
        Errno::ENOSYS => "the kernel has no io_uring (ringkv needs Linux 5.8 or later \
                          built with CONFIG_IO_URING), or a seccomp filter hides it: a \
                          container needs a seccomp profile that allows io_uring_setup, \
                          io_uring_enter and io_uring_register"
            .to_owned(),
        Errno::EPERM => eperm_advice(),
        Errno::ENOMEM => "this kernel charges io_uring rings to the locked-memory limit: \
                          raise `ulimit -l` (LimitMEMLOCK in a systemd unit)"
            .to_owned(),
        _ => "see io_uring_setup(2)".to_owned(),
    };
    Err(Error::Unsupported {
        what: format!("io_uring is unavailable: io_uring_setup failed with {errno}"),
        advice,
    })
}

/// Why io_uring_setup may answer EPERM here, from the sysctl that can cause it.
fn eperm_advice() -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled");
    match sysctl.as_deref().map(str::trim) {
        Ok("2") => "the sysctl kernel.io_uring_disabled is 2 (io_uring is off for every \
                    process): set it to 0 (`sysctl -w kernel.io_uring_disabled=0`)"
            .to_owned(),
        Ok("1") => "the sysctl kernel.io_uring_disabled is 1 (io_uring only for processes \
                    with CAP_SYS_ADMIN or in the group kernel.io_uring_group): add the \
                    user to that group, or set the sysctl to 0"
            .to_owned(),
        _ => "a seccomp filter or security module denies io_uring_setup (container \
              runtimes' default profiles do): run with a profile that allows \
              io_uring_setup, io_uring_enter and io_uring_register"
            .to_owned(),
    }
}

/// Sets up a one-entry io_uring and closes it: whether this process may use one.
fn io_uring_setup() -> std::result::Result<(), Errno> {
    match io_uring::IoUring::new(1) {
        Ok(_ring) => Ok(()), // dropping it closes the ring
        Err(e) => Err(e
            .raw_os_error()
            .map_or(Errno::UnknownErrno, Errno::from_raw)),
    }
}
