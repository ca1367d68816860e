//! Read-only open (`Options::read_only`): every file of the directory is byte for byte
//! the same afterwards, whatever was asked (reads, scans, refused writes, a
//! checkpoint); read-only opens share the directory and exclude a writer; a directory
//! where a writable open would first change something (writes to replay, an extent a
//! crash left half created) is refused and opens writable.

mod support;

use support::tempdir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ringkv::{Db, Durability, Error, Options, WriteBatch};

fn options(cores: usize) -> Options {
    Options::default()
        .cores(cores)
        .durability(Durability::Sync)
        .extent_size_bytes(64 << 10)
        .cache_bytes(64 << 10)
        .io_memory_bytes(256 << 10)
}

/// Every file under `dir` with its length and a hash of its bytes (directories as
/// `None`).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<(usize, u64)>> {
    use std::hash::{Hash, Hasher};
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(dir).unwrap().to_path_buf();
            if path.is_dir() {
                pending.push(path);
                found.insert(relative, None);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                found.insert(relative, Some((bytes.len(), hasher.finish())));
            }
        }
    }
    found
}

/// A closed database of 2,000 writes (overwrites and deletes among them); its contents.
fn filled(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = Db::open(dir, options(2)).unwrap();
    let mut next = support::rng(7);
    for i in 0..2_000u64 {
        let key = format!("key-{:03}", next() % 300);
        match i % 7 {
            0 => db.delete(&key).unwrap(),
            _ => db.put(&key, vec![b'a' + (i % 26) as u8; 300]).unwrap(),
        }
    }
    let listed = support::listing(&db);
    db.close().unwrap();
    listed
}

#[test]
fn a_read_only_open_changes_no_byte() {
    let dir = tempdir();
    let path = dir.path().join("db");
    let model = filled(&path);
    let before = tree(&path);
    for cores in [1, 3] {
        let db = Db::open(&path, options(cores).read_only()).unwrap();
        assert_eq!(support::listing(&db), model);
        let (key, value) = model.iter().next().unwrap();
        assert_eq!(db.get(key).unwrap().as_deref(), Some(&value[..]));
        assert!(db.head(key).unwrap().is_some());
        let scanned: Vec<_> = db.range::<&[u8]>(..).map(Result::unwrap).collect();
        assert_eq!(scanned.len(), model.len());
        assert_eq!(db.stats().unwrap().keys, model.len() as u64);
        let refused = [
            db.put("new", "value"),
            db.delete(key),
            db.write(WriteBatch::new().put("a", "1").put("b", "2").clone()),
            db.flush(),
        ];
        for outcome in refused {
            assert!(matches!(outcome, Err(Error::OpenedReadOnly)), "{outcome:?}");
        }
        let checkpoint = dir.path().join(format!("checkpoint-{cores}"));
        db.checkpoint(&checkpoint).unwrap();
        db.close().unwrap();
        assert_eq!(
            tree(&path),
            before,
            "a read-only open on {cores} cores wrote"
        );
        // Opened read-only, a checkpoint may be read-only on disk too.
        set_read_only(&checkpoint, true);
        let copy = Db::open(&checkpoint, options(2).read_only()).unwrap();
        assert_eq!(support::listing(&copy), model);
        copy.close().unwrap();
        set_read_only(&checkpoint, false); // for the temporary directory's removal
    }
}

#[test]
fn read_only_opens_share_the_directory_and_exclude_a_writer() {
    let dir = tempdir();
    let path = dir.path().join("db");
    let writer = Db::open(&path, options(1)).unwrap();
    let refused = Db::open(&path, options(1).read_only()).unwrap_err();
    assert!(matches!(refused, Error::Locked { .. }), "{refused}");
    writer.close().unwrap();
    let first = Db::open(&path, options(1).read_only()).unwrap();
    let second = Db::open(&path, options(1).read_only()).unwrap();
    let refused = Db::open(&path, options(1)).unwrap_err();
    assert!(matches!(refused, Error::Locked { .. }), "{refused}");
    drop((first, second));
    Db::open(&path, options(1)).unwrap().close().unwrap();
}

#[test]
fn a_directory_never_opened_is_refused() {
    let dir = tempdir();
    let missing = Db::open(dir.path().join("none"), options(1).read_only()).unwrap_err();
    assert!(
        matches!(&missing, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let refused = Db::open(&empty, options(1).read_only()).unwrap_err();
    assert!(
        matches!(refused, Error::NeedsWritableOpen { .. }),
        "{refused}"
    );
    assert_eq!(tree(&empty).len(), 0, "nothing created");
}

#[test]
fn writes_left_to_replay_are_refused_until_a_writable_open() {
    let dir = tempdir();
    let path = dir.path().join("db");
    let db = Db::open(&path, options(2)).unwrap();
    for i in 0..20 {
        db.put(format!("k{i}"), "v").unwrap();
    }
    // A copy of a live directory is what a crash leaves: the writes are in the
    // commit logs only.
    let crashed = dir.path().join("crashed");
    copy_tree(&path, &crashed);
    db.close().unwrap();
    let before = tree(&crashed);
    let refused = Db::open(&crashed, options(2).read_only()).unwrap_err();
    match &refused {
        Error::NeedsWritableOpen { path, .. } => assert!(path.ends_with("commit"), "{refused}"),
        other => panic!("{other}"),
    }
    assert_eq!(tree(&crashed), before);
    Db::open(&crashed, options(2)).unwrap().close().unwrap();
    let db = Db::open(&crashed, options(2).read_only()).unwrap();
    assert_eq!(support::listing(&db).len(), 20);
}

#[test]
fn an_extent_a_crash_left_half_created_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("db");
    let model = filled(&path);
    // The newest extent of a leaf, created (all zeros: its header never written).
    let leaf = std::fs::read_dir(path.join("substores"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|leaf| extents(leaf) > 0)
        .unwrap();
    let stillborn = leaf.join(format!("{:016x}.ext", extents(&leaf) + 1));
    std::fs::write(&stillborn, vec![0u8; 4096]).unwrap();
    let refused = Db::open(&path, options(2).read_only()).unwrap_err();
    assert!(
        matches!(&refused, Error::NeedsWritableOpen { path, .. } if *path == stillborn),
        "{refused}"
    );
    assert!(stillborn.exists());
    let db = Db::open(&path, options(2)).unwrap();
    assert_eq!(support::listing(&db), model);
}

/// The highest extent number in a leaf directory (0 if none).
fn extents(leaf: &Path) -> u64 {
    std::fs::read_dir(leaf)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            u64::from_str_radix(name.strip_suffix(".ext")?, 16).ok()
        })
        .max()
        .unwrap_or(0)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        match path.is_dir() {
            true => copy_tree(&path, &target),
            false => drop(std::fs::copy(&path, &target).unwrap()),
        }
    }
}

/// Makes every file and directory under `dir` read-only (or writable again).
fn set_read_only(dir: &Path, read_only: bool) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |is_dir: bool| match (read_only, is_dir) {
        (true, true) => 0o555,
        (true, false) => 0o444,
        (false, true) => 0o755,
        (false, false) => 0o644,
    };
    let mut paths = vec![dir.to_path_buf()];
    while let Some(path) = paths.pop() {
        let is_dir = path.is_dir();
        if is_dir && !read_only {
            std::fs::set_permissions(&path, PermissionsExt::from_mode(mode(true))).unwrap();
        }
        if is_dir {
            paths.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        if !is_dir || read_only {
            std::fs::set_permissions(&path, PermissionsExt::from_mode(mode(is_dir))).unwrap();
        }
    }
}
