//! The index's memory per key at 1 million keys of 16 and of 33 bytes (random bytes),
//! measured three ways: the index's own count of its allocations (`Index::heap_bytes`,
//! capacities), a counting global allocator (what the process really asked the
//! allocator for, live at the end and at its peak while inserting), and the growth of
//! the resident set (pages actually touched, allocator fragmentation included). Each
//! figure comes from a fresh child process.
//!
//! Goal: at most key length + 40 bytes (Aerospike: 64 B per record; Bitcask: ~91 B + key).
//!
//! The slots and the key arena grow by a sixteenth at a time; the hash table still
//! doubles (5 bytes a bucket). A second table shows the same measure at other key
//! counts, either side of a doubling. "alloc peak" counts a reallocation as a new block
//! beside the old; glibc remaps large blocks instead, which is why RSS stays below it.
//!
//! `cargo run --release -p ringkv-engine --example index_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ringkv_engine::index::{Entry, Index};

/// Bytes the index may spend per key beyond the key itself.
const GOAL_OVER_KEY_BYTES: f64 = 40.0;
/// The headline key count.
const KEYS: u64 = 1_000_000;
/// Other key counts for 16-byte keys: just below and just past the table's doubling
/// at 2^20 slots (where a doubling slot array used to nearly double).
const SWEEP_KEYS: [u64; 5] = [500_000, 1_000_000, 1_048_576, 1_048_577, 2_000_000];

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE_BYTES.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the counters only observe sizes of successful calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract, forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which got it from `System`, with this
        // layout.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator (so from `System`) with `layout`; the
        // caller upholds the rest of `realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as the allocator may do it: the new block before the old is freed.
            grew(new_size);
            shrank(layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Resident set size of this process, from `/proc/self/status`.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kib| kib << 10)
}

/// Per-key figures of one index, in bytes.
struct Measure {
    keys: u64,
    heap: f64,
    live: f64,
    peak: f64,
    rss: f64,
}

/// What each key carries besides its location.
#[derive(Clone, Copy)]
struct Extras {
    expiry: bool,
    /// Metadata bytes held in the index (for HEAD).
    meta_len: u8,
    /// The key order kept (as once a scan has built it).
    ordered: bool,
}

const PLAIN: Extras = Extras {
    expiry: false,
    meta_len: 0,
    ordered: false,
};

/// Builds an index of `count` random keys of `key_len` bytes, each with `extras`, and
/// measures it. Runs in a fresh process (see `main`), so that no earlier index left the
/// allocator's heap grown.
fn measure(key_len: usize, count: u64, extras: Extras) -> Measure {
    let meta = vec![0x6d; usize::from(extras.meta_len)];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut key = vec![0u8; key_len];
    let live_before = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(live_before, Ordering::Relaxed);
    let rss_before = rss_bytes();
    let mut index = Index::new();
    if extras.ordered {
        index.build_order();
    }
    for i in 0..count {
        for b in key.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let entry = Entry {
            extent: (i >> 12) as u32,
            offset: (i as u32 & 0xfff) * 1000,
            value_len: 1000,
            seq: i,
            meta_len: extras.meta_len,
            expiry_unix_ms: extras.expiry.then_some(1_700_000_000_000 + i),
        };
        index.insert(&key, entry, Some(&meta)).unwrap();
    }
    let keys = index.len();
    assert_eq!(keys as u64, count, "random keys collided");
    let per_key = |bytes: usize| bytes as f64 / keys as f64;
    Measure {
        keys: count,
        heap: per_key(index.heap_bytes()),
        live: per_key(LIVE_BYTES.load(Ordering::Relaxed) - live_before),
        peak: per_key(PEAK_BYTES.load(Ordering::Relaxed) - live_before),
        rss: per_key(rss_bytes().saturating_sub(rss_before)),
    }
}

/// Runs `measure` in a child process (this program with
/// `--measure KEY_LEN COUNT EXPIRY META_LEN ORDERED`).
fn measure_in_child(key_len: usize, count: u64, extras: Extras) -> Measure {
    let exe = std::env::current_exe().expect("path of this program");
    let out = std::process::Command::new(exe)
        .args(["--measure", &key_len.to_string(), &count.to_string()])
        .arg(if extras.expiry { "1" } else { "0" })
        .arg(extras.meta_len.to_string())
        .arg(if extras.ordered { "1" } else { "0" })
        .output()
        .expect("running the measuring child");
    assert!(out.status.success(), "child failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8 figures");
    let f: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect();
    assert_eq!(f.len(), 4, "four figures, got {text:?}");
    Measure {
        keys: count,
        heap: f[0],
        live: f[1],
        peak: f[2],
        rss: f[3],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, key_len, count, expiry, meta_len, ordered] = &args[..]
        && flag == "--measure"
    {
        let extras = Extras {
            expiry: expiry == "1",
            meta_len: meta_len.parse().unwrap(),
            ordered: ordered == "1",
        };
        let m = measure(key_len.parse().unwrap(), count.parse().unwrap(), extras);
        println!("{} {} {} {}", m.heap, m.live, m.peak, m.rss);
        return;
    }
    println!("index memory per key, bytes (goal: key length + {GOAL_OVER_KEY_BYTES})");
    println!(
        "{:>9} {:>5} {:>10} {:>10} {:>10} {:>8} {:>9} {:>6} {:>5}",
        "keys", "key B", "heap_bytes", "allocator", "alloc peak", "RSS", "over key", "goal", "met"
    );
    for key_len in [16usize, 33] {
        let m = measure_in_child(key_len, KEYS, PLAIN);
        let goal = key_len as f64 + GOAL_OVER_KEY_BYTES;
        println!(
            "{:>9} {key_len:>5} {:>10.1} {:>10.1} {:>10.1} {:>8.1} {:>+9.1} {goal:>6.0} {:>5}",
            m.keys,
            m.heap,
            m.live,
            m.peak,
            m.rss,
            m.live - key_len as f64,
            if m.live <= goal { "yes" } else { "NO" },
        );
    }
    let plain = measure_in_child(33, KEYS, PLAIN);
    println!();
    for (what, extras) in [
        (
            "an expiry",
            Extras {
                expiry: true,
                ..PLAIN
            },
        ),
        (
            "16 B of metadata held for HEAD",
            Extras {
                meta_len: 16,
                ..PLAIN
            },
        ),
        (
            "64 B of metadata held for HEAD",
            Extras {
                meta_len: 64,
                ..PLAIN
            },
        ),
        (
            "the key order kept (as once scanned)",
            Extras {
                ordered: true,
                ..PLAIN
            },
        ),
    ] {
        let m = measure_in_child(33, KEYS, extras);
        println!(
            "33-byte keys, each with {what}: {:.1} bytes per key ({:+.1} against none)",
            m.live,
            m.live - plain.live
        );
    }
    println!();
    println!("16-byte keys at other counts (bytes per key)");
    println!(
        "{:>9} {:>10} {:>10} {:>8} {:>9}",
        "keys", "allocator", "alloc peak", "RSS", "over key"
    );
    for count in SWEEP_KEYS {
        let m = measure_in_child(16, count, PLAIN);
        println!(
            "{:>9} {:>10.1} {:>10.1} {:>8.1} {:>+9.1}",
            m.keys,
            m.live,
            m.peak,
            m.rss,
            m.live - 16.0
        );
    }
}
