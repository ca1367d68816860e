//! Closing a database gives back its memory: index, key summaries, read cache, tasks.
//!
//! glommio 0.9 does not drop the futures of tasks still pending when an executor
//! ends, so a background task holding the core's state across `close` would leak all
//! of it (found by the bench rig's kvlog table, which closes and reopens in one process
//! and was killed for memory). A counting allocator sees every thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ringkv::{Db, Durability, Options};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter only
// observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests share the counter: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const KEYS: u32 = 20_000;
const VALUE: usize = 512;

/// One open, fill, read, close cycle; returns the live bytes while it was open.
fn cycle(dir: &std::path::Path) -> usize {
    let options = Options::default()
        .cores(2)
        .durability(Durability::Buffered)
        .extent_size_bytes(1 << 20)
        .cache_bytes(4 << 20)
        // A flush timer and a compaction pass are pending when close runs.
        .flush_interval(Duration::from_secs(3600))
        .compaction_interval(Duration::from_secs(3600));
    let db = Db::open(dir, options).unwrap();
    let value = vec![7u8; VALUE];
    for i in 0..KEYS {
        db.put(format!("key-{i}").as_bytes(), &value).unwrap();
    }
    for i in 0..KEYS {
        assert!(db.get(format!("key-{i}").as_bytes()).unwrap().is_some());
    }
    let open = LIVE.load(Ordering::Relaxed);
    db.close().unwrap();
    open
}

#[test]
fn close_gives_back_what_the_database_held() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    // Twice: a second open of the same directory must give back as much as the first.
    for round in 1..=2 {
        let open = cycle(dir.path());
        let after = LIVE.load(Ordering::Relaxed);
        let held = open.saturating_sub(before);
        let kept = after.saturating_sub(before);
        assert!(
            held > 4 << 20,
            "the open database held {held} bytes: the test did not load it"
        );
        // Small things may stay (thread-locals, a finished timer's task); the index,
        // summaries and cache (megabytes) must not.
        assert!(
            kept < 256 << 10,
            "round {round}: {kept} of {held} bytes still allocated after close"
        );
    }
}

#[test]
fn the_read_cache_allocates_what_its_budget_says() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let budget: u64 = 4 << 20;
    let options = Options::default()
        .cores(2)
        .durability(Durability::Buffered)
        .extent_size_bytes(1 << 20)
        .cache_bytes(budget)
        .background_compaction(false);
    let db = Db::open(dir.path(), options.clone()).unwrap();
    // 12 MB of values: three times what the cache may hold.
    let value = vec![7u8; 750];
    let keys = 16_000u32;
    for i in 0..keys {
        db.put(format!("key-{i:029}").as_bytes(), &value).unwrap();
    }
    // Reopened, so that the cache starts empty (writes fill it too).
    db.close().unwrap();
    let db = Db::open(dir.path(), options).unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..keys {
        db.get(format!("key-{i:029}").as_bytes()).unwrap().unwrap();
    }
    let added = LIVE.load(Ordering::Relaxed).saturating_sub(before) as u64;
    let counted: u64 = db
        .stats()
        .unwrap()
        .cores
        .iter()
        .map(|c| c.cache_bytes)
        .sum();
    db.close().unwrap();
    assert!(
        counted <= budget,
        "the cache counts {counted} bytes, over {budget}"
    );
    assert!(
        added > budget * 9 / 10 && added < budget * 11 / 10,
        "reading through a {budget}-byte cache allocated {added} bytes"
    );
}

/// However many substores a core owns, the key summaries it holds for extents not yet
/// sealed stay near `summary_memory_bytes`: extents end early, and nothing is lost.
#[test]
fn unsealed_key_summaries_stay_within_their_budget() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let budget = 16 << 10;
    let options = Options::default()
        .cores(1)
        .durability(Durability::Buffered)
        .extent_size_bytes(256 << 10)
        .split_threshold_bytes(512 << 10)
        .cache_bytes(0)
        .summary_memory_bytes(budget);
    let db = Db::open(dir.path(), options.clone()).unwrap();
    let value = |i: u32| format!("value-{i}-").repeat(20).into_bytes();
    let keys = 20_000u32;
    let summaries = |db: &Db| -> (u64, u64) {
        let stats = db.stats().unwrap();
        let sum = |f: fn(&ringkv::CoreStats) -> u64| stats.cores.iter().map(f).sum();
        (sum(|c| c.totals.summary_memory_bytes), stats.substores)
    };
    let mut most = 0;
    for i in 0..keys {
        db.put(format!("key-{i:06}"), value(i)).unwrap();
        if i % 1000 == 999 {
            db.flush().unwrap();
            most = most.max(summaries(&db).0);
        }
    }
    let (_, substores) = summaries(&db);
    assert!(
        substores >= 16,
        "only {substores} substores: the test did not split"
    );
    // Capacities: a summary's vector may be up to twice its length.
    assert!(
        most <= 2 * budget as u64,
        "summaries held {most} bytes against a budget of {budget}"
    );
    db.close().unwrap();
    let db = Db::open(dir.path(), options).unwrap();
    for i in 0..keys {
        let got = db.get(format!("key-{i:06}")).unwrap();
        assert_eq!(got.as_deref(), Some(&value(i)[..]), "key {i}");
    }
    db.close().unwrap();
}
