//! The simulated disk bites: what a real disk may lose, it loses.

use std::path::Path;

use super::{CrashMode, EntryKind, Fault, FaultOn, SimDevice, SimDisk, SimFile};
use crate::device::{Device, DeviceFile};

fn run<T>(f: impl Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

/// A synced, empty file `d/f`, written by `write`; then a crash in `mode`, and the first
/// `len` bytes of what the file holds after it.
fn write_crash_and_read(
    mode: CrashMode,
    len: usize,
    write: impl FnOnce(&SimDevice, &SimFile),
) -> Vec<u8> {
    let mut disk = SimDisk::new();
    disk.create_dir("d").unwrap();
    disk.sync_dir("").unwrap();
    let dev = disk.device("d").unwrap();
    let file = run(async {
        let file = dev.create("f").await.unwrap();
        dev.sync_dir().await.unwrap();
        file
    });
    write(&dev, &file);
    disk.crash(mode);
    let dev = disk.device("d").unwrap();
    run(async { dev.open("f").await.unwrap().read_at(0, len).await.unwrap() })
}

#[test]
fn a_directory_whose_parent_was_not_synced_is_lost_with_its_synced_files() {
    let mut disk = SimDisk::new();
    disk.create_dir("a").unwrap();
    disk.create_file("a/f").unwrap();
    disk.sync_file("a/f").unwrap();
    disk.sync_dir("a").unwrap();
    disk.crash(CrashMode::DropUnsynced);
    assert_eq!(disk.entry_kind("a").unwrap(), None);
    disk.create_dir("a").unwrap();
    disk.sync_dir("").unwrap();
    disk.create_file("a/f").unwrap();
    disk.crash(CrashMode::DropUnsynced);
    assert_eq!(disk.entry_kind("a").unwrap(), Some(EntryKind::Dir));
    assert_eq!(
        disk.entry_kind("a/f").unwrap(),
        None,
        "a/f was never synced in a"
    );
}

#[test]
fn a_rename_survives_whole_or_not_at_all() {
    for seed in 0..64 {
        let mut disk = SimDisk::new();
        disk.create_dir("d").unwrap();
        disk.create_dir("d/x").unwrap();
        disk.sync_dir("d").unwrap();
        disk.sync_dir("").unwrap();
        disk.create_file("d/y").unwrap();
        disk.rename("d/x", "d/x.retired").unwrap();
        disk.create_file("d/z").unwrap();
        disk.crash(CrashMode::Random { seed });
        let names: Vec<String> = disk
            .read_dir("d")
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        let old = names.contains(&"x".to_owned());
        let new = names.contains(&"x.retired".to_owned());
        assert!(old != new, "seed {seed}: {names:?}");
        // A prefix of the directory's changes: z only after the rename, the rename
        // only after y.
        assert!(
            !names.contains(&"z".to_owned()) || new,
            "seed {seed}: {names:?}"
        );
        assert!(
            !new || names.contains(&"y".to_owned()),
            "seed {seed}: {names:?}"
        );
    }
}

#[test]
fn a_power_cut_falls_on_the_armed_change_and_kills_every_handle() {
    let disk = SimDisk::new();
    disk.create_dir("d").unwrap();
    disk.sync_dir("").unwrap();
    let dev = disk.device("d").unwrap();
    let _lock = disk.lock_dir("d").unwrap().expect("free");
    run(async {
        let file = dev.create("f").await.unwrap();
        dev.sync_dir().await.unwrap();
        file.write_at(0, &[7; 4096]).await.unwrap();
        disk.power_cut_at(2, CrashMode::DropUnsynced);
        file.sync().await.unwrap(); // change 1
        let cut = file.write_at(4096, &[8; 4096]).await; // change 2: the cut falls
        assert!(cut.is_err());
        assert!(disk.powered_off());
        assert!(
            file.read_at(0, 4096).await.is_err(),
            "a dead handle reads nothing"
        );
        assert!(dev.create("g").await.is_err(), "nor creates anything");
        assert!(disk.create_dir("e").is_err());
        let next = disk.reboot();
        assert!(!next.powered_off());
        assert!(
            next.lock_dir("d").unwrap().is_some(),
            "locks die with the boot"
        );
        let file = next.device("d").unwrap().open("f").await.unwrap();
        assert_eq!(file.read_at(0, 8192).await.unwrap(), vec![7; 4096]);
    });
}

#[test]
fn remove_all_can_be_cut_in_the_middle() {
    let mut disk = SimDisk::new();
    disk.create_dir_all(Path::new("/db/leaf")).unwrap();
    for name in ["a", "b", "c"] {
        disk.create_file(Path::new("/db/leaf").join(name)).unwrap();
    }
    for dir in ["/db/leaf", "/db", "/"] {
        disk.sync_dir(dir).unwrap();
    }
    disk.power_cut_at(3, CrashMode::TearLast { seed: 1 });
    assert!(disk.remove_all("/db/leaf").is_err());
    disk = disk.reboot();
    let left: Vec<String> = disk
        .read_dir("/db/leaf")
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(left, ["c"], "two removes landed before the cut");
}

/// A durable write survives any power cut whole, with the length it needs, even over an
/// older unsynced write of the same bytes; what that older write held elsewhere is
/// still as unsynced as it was.
#[test]
fn a_durable_write_survives_whole_over_older_unsynced_bytes() {
    for seed in 0..64 {
        let bytes = write_crash_and_read(CrashMode::Random { seed }, 3 * 4096, |_, file| {
            run(async {
                file.write_at(0, &[1; 3 * 4096]).await.unwrap();
                file.write_durable(4096, &[2; 4096]).await.unwrap();
            })
        });
        assert!(
            bytes.len() >= 8192,
            "seed {seed}: the length it needs is durable"
        );
        assert!(bytes[4096..8192].iter().all(|&b| b == 2), "seed {seed}");
        for outside in [&bytes[..4096], &bytes[8192..]] {
            assert!(outside.iter().all(|&b| b == 1 || b == 0), "seed {seed}");
        }
    }
}

/// A durable write whose flush fails is read back until the crash, and then gone.
#[test]
fn a_durable_write_whose_flush_failed_is_lost_at_the_crash() {
    let bytes = write_crash_and_read(CrashMode::TearLast { seed: 3 }, 8192, |dev, file| {
        run(async {
            file.write_durable(0, &[1; 4096]).await.unwrap();
            dev.inject(FaultOn::Sync, 1, Fault::Io);
            assert!(file.write_durable(4096, &[2; 4096]).await.is_err());
            assert_eq!(file.read_at(4096, 4096).await.unwrap(), vec![2; 4096]);
        })
    });
    assert_eq!(
        bytes,
        vec![1; 4096],
        "the first is durable, the failed one is gone"
    );
}

#[test]
fn a_small_file_rewritten_keeps_its_old_text_or_any_mix_until_synced() {
    let mut disk = SimDisk::new();
    disk.create_file("m").unwrap();
    disk.write_file("m", b"old text").unwrap();
    disk.sync_file("m").unwrap();
    disk.sync_dir("").unwrap();
    disk.write_file("m", b"new").unwrap();
    assert_eq!(disk.read_file("m").unwrap(), b"new");
    disk.crash(CrashMode::DropUnsynced);
    assert_eq!(disk.read_file("m").unwrap(), b"old text");
    disk.write_file("m", b"new").unwrap();
    disk.sync_file("m").unwrap();
    disk.crash(CrashMode::DropUnsynced);
    assert_eq!(disk.read_file("m").unwrap(), b"new");
    // Unsynced, a rewrite comes back as the old text, as nothing (its truncate kept
    // and its write not) or as the new text.
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let mut copy = disk.copy();
        copy.write_file("m", b"a longer text").unwrap();
        copy.crash(CrashMode::Random { seed });
        seen.insert(copy.read_file("m").unwrap());
    }
    assert!(seen.contains(b"new".as_slice()), "{seen:?}");
    assert!(seen.len() > 2, "{seen:?}");
}

#[test]
fn a_hard_link_shares_the_file_and_lasts_once_its_directory_is_synced() {
    let mut disk = SimDisk::new();
    for dir in ["a", "b"] {
        disk.create_dir(dir).unwrap();
    }
    disk.create_file("a/f").unwrap();
    disk.write_file("a/f", b"synced").unwrap();
    disk.sync_file("a/f").unwrap();
    disk.sync_dir("a").unwrap();
    disk.sync_dir("").unwrap();
    disk.hard_link("a/f", "b/g").unwrap();
    assert_eq!(disk.read_file("b/g").unwrap(), b"synced");
    assert!(disk.hard_link("a/f", "b/g").is_err(), "b/g exists");
    disk.crash(CrashMode::DropUnsynced);
    assert_eq!(disk.entry_kind("b/g").unwrap(), None, "b was not synced");
    disk.hard_link("a/f", "b/g").unwrap();
    disk.sync_dir("b").unwrap();
    disk.remove("a/f").unwrap();
    disk.sync_dir("a").unwrap();
    disk.crash(CrashMode::DropUnsynced);
    assert_eq!(disk.entry_kind("a/f").unwrap(), None);
    assert_eq!(disk.read_file("b/g").unwrap(), b"synced");
}
