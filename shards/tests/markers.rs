//! Open reads the layout's markers strictly: a `HANDED-OVER` marker whose state cannot
//! be read is an error, never "absent". Taking it for absent would make the ancestor
//! a leaf again and remove its 16 children, which hold every write made since the
//! hand-over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ringkv::{Db, Durability, Error, Options, SplitMode};

fn options(cores: usize) -> Options {
    Options::default()
        .cores(cores)
        .split_mode(SplitMode::HandOver)
        .durability(Durability::Sync)
        .extent_size_bytes(64 << 10)
        .split_threshold_bytes(96 << 10)
        .io_memory_bytes(256 << 10)
        .background_compaction(false)
}

/// Every file under `dir`, with its length.
fn files(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            found.extend(files(&entry.path()));
        } else {
            found.insert(entry.path(), meta.len());
        }
    }
    found
}

/// Leaf 0x3 of a two-level trie, handed over to its 16 children as a crash right after
/// the commit point leaves it (the children exist, the marker is on disk, nothing has
/// moved yet), with writes acknowledged since that only the children hold.
fn handed_over_with_new_writes(dir: &Path) -> (PathBuf, BTreeMap<Vec<u8>, Vec<u8>>) {
    let mut model = BTreeMap::new();
    let db = Db::open(dir, options(2)).unwrap();
    for i in 0..2000 {
        let (key, value) = (format!("old{i}"), format!("v{i}").repeat(1 + i % 5));
        db.put(&key, &value).unwrap();
        model.insert(key.into_bytes(), value.into_bytes());
    }
    db.close().unwrap();
    let substores = dir.join("substores");
    let parent = substores.join(format!("04-{:016x}", 3u64 << 60));
    for nibble in 0..16u64 {
        let child = substores.join(format!("08-{:016x}", (0x30 | nibble) << 56));
        std::fs::create_dir(child).unwrap();
    }
    std::fs::File::create(parent.join("HANDED-OVER")).unwrap();
    let db = Db::open(dir, options(2)).unwrap();
    assert_eq!(db.stats().unwrap().substores, 31, "the hand-over is seen");
    let mut behind = 0;
    for i in 0..4000 {
        let key = format!("new{i}");
        if ringkv_engine::hash::routing_hash(key.as_bytes()) >> 60 != 3 {
            continue;
        }
        db.put(&key, "acknowledged after the hand-over").unwrap();
        model.insert(
            key.into_bytes(),
            b"acknowledged after the hand-over".to_vec(),
        );
        behind += 1;
    }
    assert!(behind > 100);
    db.close().unwrap();
    (parent, model)
}

#[test]
fn an_unreadable_hand_over_marker_fails_open_and_removes_nothing() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (parent, model) = handed_over_with_new_writes(dir.path());
    let before = files(&dir.path().join("substores"));
    // A marker that stat cannot read: a symbolic link to itself. Following it fails
    // with ELOOP, which `Path::exists` reports as "no such file".
    let marker = parent.join("HANDED-OVER");
    std::fs::remove_file(&marker).unwrap();
    std::os::unix::fs::symlink("HANDED-OVER", &marker).unwrap();
    assert!(
        !marker.exists(),
        "the test needs a marker exists() cannot see"
    );

    let err = Db::open(dir.path(), options(2)).expect_err("open must refuse the layout");
    assert!(
        matches!(&err, Error::Layout { path, .. } if path == &marker),
        "{err:?}"
    );
    let mut after = files(&dir.path().join("substores"));
    // The symlink is listed with its own length now; everything else is untouched.
    after.remove(&marker);
    let mut expected = before.clone();
    expected.remove(&marker);
    assert_eq!(after, expected, "open removed or changed files");
    // verify names the marker as a problem instead of taking the parent for a leaf.
    let report = ringkv::verify(dir.path()).unwrap();
    let marker_shown = marker.display().to_string();
    assert!(
        report
            .layout_problems
            .iter()
            .any(|p| p.path == marker_shown),
        "{:?}",
        report.layout_problems
    );

    // With the marker readable again, every acknowledged write is there.
    std::fs::remove_file(&marker).unwrap();
    std::fs::File::create(&marker).unwrap();
    let db = Db::open(dir.path(), options(1)).unwrap();
    for (key, value) in &model {
        assert_eq!(db.get(key).unwrap().as_deref(), Some(&value[..]));
    }
    assert_eq!(db.len().unwrap(), model.len() as u64);
    db.close().unwrap();
}
