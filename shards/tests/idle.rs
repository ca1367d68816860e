//! CPU time of an idle database: a core that spins while requests come (a one-core
//! database leaves a CPU for callers, so it spins) parks once they stop. Alone in its
//! own test binary, because it measures the whole process.

use std::time::{Duration, Instant};

use ringkv::{Db, Durability, Options};

/// Process CPU time (user and system) so far.
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// A core spins only while requests come: idle, it parks. A core spinning through two
/// idle seconds would use two seconds of CPU; a parked one uses a few milliseconds.
#[test]
fn an_idle_database_that_spins_under_load_parks_when_idle() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let options = Options::default()
        .cores(1)
        .durability(Durability::Buffered)
        .io_memory_bytes(64 << 10);
    let db = Db::open(dir.path(), options).unwrap();
    let started = Instant::now();
    let mut i = 0u32;
    while started.elapsed() < Duration::from_millis(200) {
        db.put(format!("key-{}", i % 50), "value").unwrap();
        db.get(format!("key-{}", i % 50)).unwrap();
        i += 1;
    }
    std::thread::sleep(Duration::from_millis(100)); // the last spin and flush end
    let before = cpu_time();
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_time() - before;
    assert!(
        used < Duration::from_millis(200),
        "an idle database used {used:?} of CPU in 2 s"
    );
    db.close().unwrap();
}
