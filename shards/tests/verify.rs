//! `ringkv::verify` over a real directory: a healthy database passes and keeps every
//! byte, a flipped byte is named by file and offset, an open database is refused, and
//! split leftovers are noted rather than removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ringkv::{Db, Error, Options};

fn tempdir() -> tempfile::TempDir {
    // On the work tree's disk: O_DIRECT needs a real file system, not tmpfs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn options() -> Options {
    Options::default()
        .cores(1)
        .extent_size_bytes(64 << 10)
        .background_compaction(false)
}

/// A closed database of `n` keys, several sealed extents per leaf.
fn filled(dir: &Path, n: usize) {
    let db = Db::open(dir, options()).unwrap();
    for i in 0..n {
        db.put(format!("key-{i:05}"), format!("value-{i:05}-").repeat(30))
            .unwrap();
    }
    db.close().unwrap();
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), Vec::new());
                todo.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The first sealed extent (`…1.ext` of a leaf that has a second extent).
fn a_sealed_extent(dir: &Path) -> PathBuf {
    let substores = dir.join("substores");
    let mut leaves: Vec<PathBuf> = std::fs::read_dir(substores)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    leaves.sort();
    leaves
        .into_iter()
        .find(|l| l.join("0000000000000002.ext").exists())
        .expect("a leaf with two extents")
        .join("0000000000000001.ext")
}

#[test]
fn a_healthy_database_passes_and_nothing_changes() {
    let dir = tempdir();
    filled(dir.path(), 5000);
    let before = snapshot(dir.path());
    let mut calls = Vec::new();
    let report =
        ringkv::verify_with_progress(dir.path(), |done, total| calls.push((done, total))).unwrap();
    assert!(
        report.is_ok(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
    assert_eq!(report.notes().count(), 0);
    assert_eq!(report.leaves.len(), 16);
    assert_eq!(report.keys(), 5000);
    assert!(report.extents() > 16 && report.records() >= 5000);
    let (done, total) = *calls.last().unwrap();
    assert_eq!((done, total), (report.bytes(), report.bytes()));
    assert_eq!(snapshot(dir.path()), before);
    // And the database agrees with what verify says it holds.
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.len().unwrap(), report.keys());
    assert_eq!(db.stats().unwrap().live_bytes, report.live_bytes());
}

#[test]
fn a_flipped_byte_is_named_by_file_and_offset() {
    let dir = tempdir();
    filled(dir.path(), 5000);
    let extent = a_sealed_extent(dir.path());
    let mut bytes = std::fs::read(&extent).unwrap();
    let at = bytes.windows(6).position(|w| w == b"value-").unwrap() + 100;
    bytes[at] ^= 0x01;
    std::fs::write(&extent, &bytes).unwrap();
    let report = ringkv::verify(dir.path()).unwrap();
    let problems: Vec<_> = report.problems().collect();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].path, extent.display().to_string());
    assert_eq!(
        problems[0].offset, 64,
        "the first record starts after the header"
    );
}

#[test]
fn an_open_database_is_refused_with_a_typed_error() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options()).unwrap();
    db.put("k", "v").unwrap();
    match ringkv::verify(dir.path()) {
        Err(Error::Locked { path, .. }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    db.close().unwrap();
    assert!(ringkv::verify(dir.path()).unwrap().is_ok());
}

#[test]
fn not_a_database_is_an_error_and_gets_no_lock_file() {
    let dir = tempdir();
    assert!(matches!(
        ringkv::verify(dir.path()),
        Err(Error::Layout { .. })
    ));
    assert!(matches!(
        ringkv::verify(dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn split_leftovers_are_noted_and_left_in_place() {
    let dir = tempdir();
    filled(dir.path(), 100);
    let substores = dir.path().join("substores");
    // Children of a split that never committed, and the parent of one that did.
    let child = substores.join("08-1000000000000000");
    std::fs::create_dir(&child).unwrap();
    let retired = substores.join("04-f000000000000000.retired");
    std::fs::create_dir(&retired).unwrap();
    let report = ringkv::verify(dir.path()).unwrap();
    assert!(
        report.is_ok(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
    assert_eq!(
        report.notes().count(),
        2,
        "{:#?}",
        report.notes().collect::<Vec<_>>()
    );
    assert!(child.exists() && retired.exists());
    // A missing leaf is a hole in the hash space.
    std::fs::remove_dir_all(substores.join("04-3000000000000000")).unwrap();
    let report = ringkv::verify(dir.path()).unwrap();
    let problems: Vec<_> = report.problems().collect();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].what.contains("tile"), "{}", problems[0]);
}
