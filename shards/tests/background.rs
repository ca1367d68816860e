//! Background failures are visible: a rotten value met by compaction shows in `Stats`
//! (count and cause), compaction goes on with the other extents, and the database stays
//! writable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringkv::{Db, Durability, Options};

fn options() -> Options {
    Options::default()
        .cores(1)
        .durability(Durability::Sync)
        .extent_size_bytes(64 << 10)
        .io_memory_bytes(256 << 10)
        .cache_bytes(0)
        .compaction_garbage_ratio(0.2)
        .compaction_interval(Duration::from_millis(1))
}

fn value(i: usize, round: usize) -> Vec<u8> {
    format!("value-{i:05}-{round}-").repeat(20).into_bytes()
}

/// Every extent file of the database, sorted.
fn extents(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for leaf in std::fs::read_dir(dir.join("substores")).unwrap() {
        for f in std::fs::read_dir(leaf.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "ext") {
                all.push(f);
            }
        }
    }
    all.sort();
    all
}

#[test]
fn a_rotten_value_met_by_compaction_is_counted_and_named_in_stats() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = Db::open(dir.path(), options().background_compaction(false)).unwrap();
    for i in 0..3000 {
        db.put(format!("key-{i:05}"), value(i, 0)).unwrap();
    }
    // Half the keys overwritten: the first extents become compaction victims, their
    // other half still live.
    for i in (0..3000).step_by(2) {
        db.put(format!("key-{i:05}"), value(i, 1)).unwrap();
    }
    db.close().unwrap();
    // Rot one live (odd) value in the first extent of the first leaf; the other leaves'
    // first extents are victims as healthy as before.
    for extent in extents(dir.path())
        .into_iter()
        .filter(|p| p.ends_with("0000000000000001.ext"))
        .take(1)
    {
        let mut bytes = std::fs::read(&extent).unwrap();
        let live = (1..3000).step_by(2).find_map(|i| {
            let needle = value(i, 0);
            bytes.windows(needle.len()).position(|w| w == needle)
        });
        if let Some(at) = live {
            bytes[at + 3] ^= 0x40;
            std::fs::write(&extent, &bytes).unwrap();
        }
    }
    let db = Db::open(dir.path(), options()).unwrap();
    db.put("wake", "compaction").unwrap(); // compaction runs after writes
    let deadline = Instant::now() + Duration::from_secs(60);
    let core = loop {
        let stats = db.stats().unwrap();
        let core = stats.cores[0].clone();
        let done = core.background_errors > 0 && core.compaction.extents >= 15;
        if done || Instant::now() > deadline {
            break core;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(core.background_errors > 0, "{core:?}");
    let cause = core.background_error.clone().expect("the cause is kept");
    assert!(cause.contains("corruption"), "{cause}");
    assert!(
        core.compaction.extents > 0,
        "other victims were compacted: {core:?}"
    );
    db.put("still", "writable").unwrap();
    assert_eq!(db.get("still").unwrap().as_deref(), Some(&b"writable"[..]));
    db.close().unwrap();
}
