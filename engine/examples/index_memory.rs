//! The index's memory per key at 1 million keys of 16 and of 33 bytes (random bytes),
//! measured two ways: the index's own count of its allocations (capacities), and a
//! counting global allocator (what the process really holds for it).
//!
//! Goal: at most key length + 40 bytes (Aerospike: 64 B per record; Bitcask: ~91 B + key).
//!
//! `cargo run --release -p ringkv-engine --example index_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ringkv_engine::index::{Entry, Index};

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEYS: u64 = 1_000_000;

fn main() {
    println!(
        "{:>9} {:>9} {:>16} {:>16} {:>12}",
        "keys", "key bytes", "index B/key", "allocator B/key", "over key"
    );
    for key_len in [16usize, 33] {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut key = vec![0u8; key_len];
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let mut index = Index::new();
        for i in 0..KEYS {
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
                meta_len: 0,
                expiry_unix_ms: None,
            };
            index.insert(&key, entry).unwrap();
        }
        let measured = LIVE_BYTES.load(Ordering::Relaxed) - before;
        let own = index.heap_bytes() as f64 / index.len() as f64;
        let real = measured as f64 / index.len() as f64;
        println!(
            "{:>9} {key_len:>9} {own:>16.1} {real:>16.1} {:>+12.1}",
            index.len(),
            real - key_len as f64
        );
        drop(index);
    }
}
