//! The raw device under a data directory, measured with io_uring directly (no engine):
//! 4 KiB random reads at queue depth 1 and 64, large sequential writes, and 4 KiB
//! write + fdatasync. All I/O is O_DIRECT into aligned buffers, on a scratch file that
//! is removed afterwards.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{IoUring, opcode, types};

use crate::report::DeviceSummary;
use crate::workload::Rng;

const BLOCK: usize = 4096;
const SEQUENTIAL_CHUNK: usize = 1 << 20;
const O_DIRECT: i32 = 0o40000;

/// A buffer aligned for O_DIRECT, carved out of a slightly larger `Vec` (no unsafe).
struct Aligned {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let storage = vec![0xa5u8; len + BLOCK];
        let start = storage.as_ptr().align_offset(BLOCK);
        Self {
            storage,
            start,
            len,
        }
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.storage[self.start..self.start + self.len].as_mut_ptr()
    }
    fn as_ptr(&self) -> *const u8 {
        self.storage[self.start..self.start + self.len].as_ptr()
    }
}

fn complete(ring: &mut IoUring, want: u32) -> std::io::Result<Vec<(u64, i32)>> {
    ring.submit_and_wait(want as usize)?;
    Ok(ring
        .completion()
        .map(|c| (c.user_data(), c.result()))
        .collect())
}

/// Submits one operation and waits until it completes with `expected` bytes (0 for a
/// sync). Callers pass entries pointing at their own live buffers (or none), and the
/// operation finishes before this returns, so no buffer is freed while the kernel uses it.
fn run_one(
    ring: &mut IoUring,
    entry: &io_uring::squeue::Entry,
    expected: usize,
) -> std::io::Result<()> {
    // SAFETY: the memory `entry` points at belongs to the caller and outlives this call,
    // and we wait below for the operation to complete.
    unsafe { ring.submission().push(entry) }.map_err(std::io::Error::other)?;
    for (_, result) in complete(ring, 1)? {
        check(result, expected)?;
    }
    Ok(())
}

fn check(result: i32, expected: usize) -> std::io::Result<()> {
    if result < 0 {
        return Err(std::io::Error::from_raw_os_error(-result));
    }
    if result as usize != expected {
        return Err(std::io::Error::other(format!(
            "short I/O: {result} of {expected} bytes"
        )));
    }
    Ok(())
}

/// Sequential 1 MiB writes of `bytes` at QD1, then one fdatasync; returns MiB/s.
fn sequential_write(ring: &mut IoUring, file: &File, bytes: u64) -> std::io::Result<f64> {
    let buf = Aligned::new(SEQUENTIAL_CHUNK);
    let fd = types::Fd(file.as_raw_fd());
    let started = Instant::now();
    let mut offset = 0;
    while offset < bytes {
        let write = opcode::Write::new(fd, buf.as_ptr(), SEQUENTIAL_CHUNK as u32)
            .offset(offset)
            .build();
        run_one(ring, &write, SEQUENTIAL_CHUNK)?;
        offset += SEQUENTIAL_CHUNK as u64;
    }
    let sync = opcode::Fsync::new(fd)
        .flags(types::FsyncFlags::DATASYNC)
        .build();
    run_one(ring, &sync, 0)?;
    Ok(bytes as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64())
}

/// Random 4 KiB reads over the first `span` bytes for `duration`, `depth` in flight.
fn random_reads(
    ring: &mut IoUring,
    file: &File,
    span: u64,
    depth: usize,
    duration: Duration,
) -> std::io::Result<(f64, Histogram<u64>)> {
    let fd = types::Fd(file.as_raw_fd());
    let mut bufs: Vec<Aligned> = (0..depth).map(|_| Aligned::new(BLOCK)).collect();
    let mut started_at = vec![Instant::now(); depth];
    let mut latency = Histogram::<u64>::new(3).map_err(std::io::Error::other)?;
    let mut rng = Rng::new(depth as u64);
    let blocks = span / BLOCK as u64;
    let mut submit =
        |ring: &mut IoUring, slot: usize, bufs: &mut [Aligned], started_at: &mut [Instant]| {
            let offset = rng.next_u64() % blocks * BLOCK as u64;
            let read = opcode::Read::new(fd, bufs[slot].as_mut_ptr(), BLOCK as u32)
                .offset(offset)
                .build()
                .user_data(slot as u64);
            started_at[slot] = Instant::now();
            // SAFETY: each slot's buffer lives in `bufs` until this function returns, and a
            // slot is resubmitted only after its previous read completed.
            unsafe { ring.submission().push(&read) }.map_err(std::io::Error::other)
        };
    for slot in 0..depth {
        submit(ring, slot, &mut bufs, &mut started_at)?;
    }
    let started = Instant::now();
    let mut done = 0u64;
    let mut in_flight = depth;
    while in_flight > 0 {
        for (slot, result) in complete(ring, 1)? {
            check(result, BLOCK)?;
            let slot = slot as usize;
            latency
                .record(started_at[slot].elapsed().as_micros() as u64)
                .map_err(std::io::Error::other)?;
            done += 1;
            if started.elapsed() < duration {
                submit(ring, slot, &mut bufs, &mut started_at)?;
            } else {
                in_flight -= 1;
            }
        }
    }
    Ok((done as f64 / started.elapsed().as_secs_f64(), latency))
}

/// 4 KiB write + fdatasync at QD1 for `duration`, sequentially over the first `span`
/// bytes (already written, so the file's size never changes: the device, not the file
/// system's metadata, is measured).
fn sync_writes(
    ring: &mut IoUring,
    file: &File,
    span: u64,
    duration: Duration,
) -> std::io::Result<Histogram<u64>> {
    let fd = types::Fd(file.as_raw_fd());
    let buf = Aligned::new(BLOCK);
    let mut latency = Histogram::<u64>::new(3).map_err(std::io::Error::other)?;
    let started = Instant::now();
    let mut offset = 0;
    while started.elapsed() < duration {
        let op_started = Instant::now();
        let write = opcode::Write::new(fd, buf.as_ptr(), BLOCK as u32)
            .offset(offset)
            .build();
        run_one(ring, &write, BLOCK)?;
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        run_one(ring, &sync, 0)?;
        latency
            .record(op_started.elapsed().as_micros() as u64)
            .map_err(std::io::Error::other)?;
        offset = (offset + BLOCK as u64) % span;
    }
    Ok(latency)
}

/// Measures the device under `dir` with a scratch file of `file_bytes`.
pub fn measure(dir: &Path, file_bytes: u64, phase: Duration) -> std::io::Result<DeviceSummary> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".ringkv-bench-device");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(O_DIRECT)
        .open(&path)?;
    let mut ring = IoUring::new(128)?;
    let result = (|| {
        let sequential_write_mib_s = sequential_write(&mut ring, &file, file_bytes)?;
        let (qd1, qd1_latency) = random_reads(&mut ring, &file, file_bytes, 1, phase)?;
        let (qd64, _) = random_reads(&mut ring, &file, file_bytes, 64, phase)?;
        let sync = sync_writes(&mut ring, &file, file_bytes, phase)?;
        Ok(DeviceSummary {
            dir: dir.display().to_string(),
            random_read_4k_qd1_iops: qd1,
            random_read_4k_qd1_p50_us: qd1_latency.value_at_quantile(0.5),
            random_read_4k_qd1_p99_us: qd1_latency.value_at_quantile(0.99),
            random_read_4k_qd64_iops: qd64,
            sequential_write_mib_s,
            write_4k_fdatasync_p50_us: sync.value_at_quantile(0.5),
            write_4k_fdatasync_p99_us: sync.value_at_quantile(0.99),
            write_4k_fdatasync_ops: sync.len() as f64 / phase.as_secs_f64(),
        })
    })();
    drop(file);
    std::fs::remove_file(&path)?;
    result
}
