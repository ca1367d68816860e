//! Several data directories (`Options::data_dirs`), as two or three directories on one
//! disk: leaves spread over them and splits under writes keep every write through
//! reopens with other core counts and without the option; a listed directory left
//! out, emptied (an unmounted device) or belonging to another database is refused
//! with nothing lost or created; a directory can be added later; checkpoints,
//! read-only opens and `verify` see the whole database.

mod support;

use support::tempdir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ringkv::{Db, Durability, Error, Options, SplitMode};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options(cores: usize) -> Options {
    Options::default()
        .cores(cores)
        .durability(Durability::Sync)
        .extent_size_bytes(64 << 10)
        .cache_bytes(64 << 10)
        .io_memory_bytes(256 << 10)
}

/// `n` puts (overwrites and deletes among them) from `seed`, into `db` and `model`.
fn churn(db: &Db, model: &mut Model, seed: u64, n: u64) {
    let mut next = support::rng(seed);
    for i in 0..n {
        let key = format!("key-{:05}", next() % 3_000).into_bytes();
        if i % 11 == 0 {
            db.delete(&key).unwrap();
            model.remove(&key);
        } else {
            let value = vec![b'a' + (i % 26) as u8; 200 + (next() % 800) as usize];
            db.put(&key, &value).unwrap();
            model.insert(key, value);
        }
    }
}

/// The leaf directories under `dir/substores`.
fn leaves_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("substores"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_sound(home: &Path) {
    let report = ringkv::verify(home).unwrap();
    let problems: Vec<_> = report.problems().collect();
    assert!(problems.is_empty(), "{problems:?}");
}

/// Home `db` and the others `d1`, `d2`, ... under `root`.
fn dirs(root: &Path, others: usize) -> (PathBuf, Vec<PathBuf>) {
    let others = (1..=others).map(|i| root.join(format!("d{i}"))).collect();
    (root.join("db"), others)
}

#[test]
fn leaves_spread_over_the_directories_and_every_write_survives_splits_and_reopens() {
    for mode in [SplitMode::Copy, SplitMode::HandOver] {
        let root = tempdir();
        let (home, others) = dirs(root.path(), 2);
        let open = |cores, listed: bool| {
            let o = options(cores)
                .split_threshold_bytes(64 << 10)
                .split_mode(mode);
            Db::open(&home, if listed { o.data_dirs(&others) } else { o }).unwrap()
        };
        let db = open(2, true);
        for dir in std::iter::once(&home).chain(&others) {
            assert!(leaves_in(dir).len() >= 5, "{mode:?}: {}", dir.display());
        }
        let mut model = Model::new();
        churn(&db, &mut model, 1, 12_000);
        let splits: u64 = db.stats().unwrap().cores.iter().map(|c| c.splits).sum();
        assert!(splits > 0, "{mode:?}: the writes split leaves");
        assert_eq!(support::listing(&db), model, "{mode:?}");
        db.close().unwrap();
        // The list is kept: later opens find every directory without the option.
        for cores in [1, 3] {
            let db = open(cores, false);
            assert_eq!(support::listing(&db), model, "{mode:?}, {cores} cores");
            churn(&db, &mut model, 2 + cores as u64, 1_000);
            db.close().unwrap();
        }
        assert_sound(&home);
        // Every directory kept its share, and the children of its leaves (on one file
        // system no directory has clearly more room, so children stay beside parents).
        for dir in std::iter::once(&home).chain(&others) {
            let names = leaves_in(dir);
            let children = names.iter().filter(|n| n.starts_with("08-")).count();
            assert!(names.len() >= 5 && children > 0, "{mode:?}: {names:?}");
        }
    }
}

#[test]
fn a_directory_left_out_or_gone_is_refused_and_nothing_is_lost_or_created() {
    let root = tempdir();
    let (home, others) = dirs(root.path(), 2);
    let db = Db::open(&home, options(2).data_dirs(&others[..1])).unwrap();
    let mut model = Model::new();
    churn(&db, &mut model, 3, 2_000);
    db.close().unwrap();
    // Listed without the directory that holds leaves.
    let e = Db::open(&home, options(2).data_dirs(&others[1..])).err();
    match e {
        Some(Error::Layout { path, what }) => {
            assert_eq!(path, others[0].canonicalize().unwrap(), "{what}");
            assert!(what.contains("holds substores"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // Its device not mounted: an empty directory where it was, or nothing at all.
    let away = root.path().join("away");
    std::fs::rename(&others[0], &away).unwrap();
    for empty_mount_point in [true, false] {
        if empty_mount_point {
            std::fs::create_dir(&others[0]).unwrap();
        }
        let e = Db::open(&home, options(2)).err();
        match e {
            Some(Error::Layout { what, .. }) => assert!(what.contains("mounted"), "{what}"),
            other => panic!("{other:?}"),
        }
        if empty_mount_point {
            let left: Vec<_> = std::fs::read_dir(&others[0]).unwrap().collect();
            assert!(left.is_empty(), "nothing is created in its place");
            std::fs::remove_dir(&others[0]).unwrap();
        }
    }
    std::fs::rename(&away, &others[0]).unwrap();
    let db = Db::open(&home, options(1)).unwrap();
    assert_eq!(support::listing(&db), model);
    db.close().unwrap();
    assert_sound(&home);
}

#[test]
fn a_directory_added_later_or_dropped_while_empty_changes_nothing_else() {
    let root = tempdir();
    let (home, others) = dirs(root.path(), 2);
    let db = Db::open(&home, options(2)).unwrap();
    let mut model = Model::new();
    churn(&db, &mut model, 4, 2_000);
    db.close().unwrap();
    assert!(
        !home.join("DATA-DIRS").exists(),
        "one directory needs no list"
    );
    let db = Db::open(&home, options(2).data_dirs(&others[..1])).unwrap();
    assert_eq!(support::listing(&db), model);
    churn(&db, &mut model, 5, 500);
    db.close().unwrap();
    let listed = std::fs::read_to_string(home.join("DATA-DIRS")).unwrap();
    assert!(listed.contains("/d1\n"), "{listed}");
    assert!(others[0].join("RINGKV-DATA").exists());
    assert_eq!(
        leaves_in(&others[0]),
        Vec::<String>::new(),
        "nothing moved there"
    );
    // d1 holds no leaf: it may be swapped for d2.
    let db = Db::open(&home, options(1).data_dirs(&others[1..])).unwrap();
    assert_eq!(support::listing(&db), model);
    db.close().unwrap();
    let listed = std::fs::read_to_string(home.join("DATA-DIRS")).unwrap();
    assert!(
        listed.contains("/d2\n") && !listed.contains("/d1\n"),
        "{listed}"
    );
    let db = Db::open(&home, options(2)).unwrap();
    assert_eq!(support::listing(&db), model);
    db.close().unwrap();
    assert_sound(&home);
}

#[test]
fn another_databases_directory_and_overlapping_directories_are_refused() {
    let root = tempdir();
    let (home, others) = dirs(root.path(), 1);
    let db = Db::open(&home, options(1).data_dirs(&others)).unwrap();
    let mut model = Model::new();
    churn(&db, &mut model, 6, 500);
    let second = root.path().join("db2");
    // While the first has it open, and after.
    assert!(Db::open(&second, options(1).data_dirs(&others)).is_err());
    db.close().unwrap();
    match Db::open(&second, options(1).data_dirs(&others)).err() {
        Some(Error::Layout { what, .. }) => assert!(what.contains("another database"), "{what}"),
        other => panic!("{other:?}"),
    }
    for bad in [
        vec![home.join("inside")],
        vec![others[0].clone(), others[0].clone()],
    ] {
        match Db::open(&home, options(1).data_dirs(&bad)).err() {
            Some(Error::InvalidOptions(what)) => assert!(what.contains("overlaps"), "{what}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // A new database refused for its options lists no directory and no identity.
    let third = root.path().join("db3");
    let overlapping = [third.join("inside")];
    let refused = Db::open(&third, options(1).data_dirs(overlapping)).err();
    assert!(
        matches!(refused, Some(Error::InvalidOptions(_))),
        "{refused:?}"
    );
    assert!(!third.join("DATA-DIRS").exists());
    let db = Db::open(&home, options(1)).unwrap();
    assert_eq!(support::listing(&db), model);
    db.close().unwrap();
}

#[test]
fn checkpoints_read_only_opens_and_verify_see_every_directory() {
    let root = tempdir();
    let (home, others) = dirs(root.path(), 2);
    let db = Db::open(&home, options(2).data_dirs(&others)).unwrap();
    let mut model = Model::new();
    churn(&db, &mut model, 7, 4_000);
    // A checkpoint gathers the leaves of every directory into one.
    let target = root.path().join("backup");
    db.checkpoint(&target).unwrap();
    assert_eq!(
        leaves_in(&target).len(),
        db.stats().unwrap().substores as usize
    );
    db.close().unwrap();
    assert_sound(&target);
    let copy = Db::open(&target, options(1)).unwrap();
    assert_eq!(support::listing(&copy), model);
    copy.close().unwrap();
    // Read-only, with or without the list given.
    for listed in [false, true] {
        let o = options(2).read_only();
        let o = if listed { o.data_dirs(&others) } else { o };
        let db = Db::open(&home, o).unwrap();
        assert_eq!(support::listing(&db), model);
        db.close().unwrap();
    }
    let report = ringkv::verify(&home).unwrap();
    let leaves = report.leaves.len();
    assert!(
        leaves >= 16,
        "every directory's leaves are checked: {leaves}"
    );
    assert_sound(&home);
}
