//! What a process that embeds ringkv may want to ask of glibc's malloc.
//!
//! Two habits of glibc's malloc make a ringkv process hold far more memory than it
//! uses. Values cross threads (a caller's key and value are freed by the core, or held
//! in its cache and freed on eviction; a value the core read is dropped by the caller),
//! and with an arena per thread that churn strands free memory in every arena. And each
//! time a block above the mmap threshold is freed glibc raises the threshold (up to
//! 32 MiB), so later large buffers come from the heap and fragment it too.
//!
//! Measured (one core, 300 k keys of 1,000-byte values, the rig's YCSB C and then A
//! with 32 requests in flight, a 134 MiB read cache, a 320 MiB memory cgroup): killed
//! for memory with glibc's defaults and with jemalloc preloaded; 267 MiB at its peak
//! with one arena. A 400 k-key load alone: 363 MiB resident by default, 230 MiB with
//! the mmap threshold pinned; the heap held 250–280 MiB in every case.

/// Tunes glibc's malloc for a ringkv process: one arena, the mmap threshold pinned at
/// its default of 128 KiB (blocks from there up are mapped and unmapped one by one),
/// and the trim threshold at 16 MiB. Pinning the mmap threshold also pins the trim
/// threshold at its 128 KiB default, and a scan's page of small blocks freed at the
/// top of the heap then gave memory back and took it again (brk, page faults and TLB
/// shootdowns): 185 -> 150 µs a scan of 1..100 keys (`cargo run --release -p ringkv
/// --example scan_short DIR`); the heap may keep up to 16 MiB free at its top instead.
/// Call it at the start of `main`, before other threads allocate; a no-op with other C
/// libraries. `ringkv-bench` and `ringkv` (the CLI and server) do.
#[allow(
    unsafe_code,
    reason = "the one call into the C library's allocator tuning; nothing else here is unsafe"
)]
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::libc::{M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, c_int, mallopt};
        const MMAP_THRESHOLD_BYTES: c_int = 128 << 10;
        const TRIM_THRESHOLD_BYTES: c_int = 16 << 20;
        // SAFETY: mallopt only changes malloc's tuning parameters and may be called at
        // any time; a refused value (result 0) leaves the default, which is harmless.
        unsafe {
            mallopt(M_ARENA_MAX, 1);
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        }
    }
}

/// Hands the free memory in malloc's heap back to the system (glibc's `malloc_trim`),
/// after a database closes: its cache and index were hundreds of small blocks per
/// megabyte, which glibc otherwise keeps resident for reuse, so a process that closes
/// one database and opens another (or reopens it) would hold both. Measured: the bench
/// rig's kvlog table at 2 M records, 256 MiB cache, still held 265 MiB resident after
/// closing and was killed for memory in its 512 MiB cgroup while the reopened database
/// filled its cache. A no-op with other C libraries.
#[allow(
    unsafe_code,
    reason = "the one call into the C library's allocator; nothing else here is unsafe"
)]
pub(crate) fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of malloc's own arenas and may be
    // called from any thread at any time; its result (whether anything was released)
    // needs no handling.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
