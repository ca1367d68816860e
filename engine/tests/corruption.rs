//! Damaged files: flipped bytes in sealed extents (values, key summaries, footers,
//! headers) and in the active tail. Each gives the right typed error, never a panic or a
//! wrong value, and every other key stays readable. Only the torn end of the last write
//! is cut at open; damage anywhere is refused with the files unchanged, and a salvage
//! keeps every intact record.

use futures_lite::future::block_on;
use ringkv_engine::format::{FOOTER_LEN, RECORD_HEADER_LEN, extent_file_name};
use ringkv_engine::{
    Config, CrashMode, Error, Fault, FaultOn, Recovery, SimDevice, Substore, SubstoreId,
};

const ID: SubstoreId = SubstoreId::root(3);

fn config() -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        write_buffer_bytes: 1 << 20,
        ..Config::default()
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:04}-").repeat(20).into_bytes()
}

/// A substore of `n` keys over several sealed extents plus an active one, flushed.
async fn filled(n: usize) -> SimDevice {
    let dev = SimDevice::new();
    let s = Substore::create_or_open(dev.clone(), ID, config())
        .await
        .unwrap();
    for i in 0..n {
        s.put(&key(i), &value(i)).await.unwrap();
    }
    s.close().await.unwrap();
    dev
}

fn salvage() -> Config {
    Config {
        recovery: Recovery::Salvage,
        ..config()
    }
}

async fn open(dev: &SimDevice) -> Result<Substore<SimDevice>, Error> {
    Substore::create_or_open(dev.clone(), ID, config()).await
}

/// Finds the offset of `needle` in a file.
fn find(dev: &SimDevice, name: &str, needle: &[u8]) -> usize {
    let mut at = None;
    dev.corrupt(name, |b| {
        at = b.windows(needle.len()).position(|w| w == needle)
    });
    at.expect("needle present")
}

fn flip(dev: &SimDevice, name: &str, at: usize) {
    dev.corrupt(name, |b| b[at] ^= 0x40);
}

#[test]
fn flipped_value_in_sealed_extent_is_a_corruption_error_for_that_key_only() {
    block_on(async {
        let dev = filled(1000).await;
        let name = extent_file_name(1);
        let at = find(&dev, &name, b"value-0005-");
        flip(&dev, &name, at + 3);
        let s = open(&dev).await.unwrap();
        match s.get(&key(5)).await {
            Err(Error::Corruption { path, offset, .. }) => {
                assert!(path.ends_with(&name), "{path}");
                assert!(
                    offset <= at as u64 && at as u64 - offset < 100,
                    "{offset} vs {at}"
                );
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        for i in (0..1000).filter(|&i| i != 5) {
            assert_eq!(s.get(&key(i)).await.unwrap().unwrap(), value(i));
        }
    });
}

#[test]
fn damaged_key_summary_falls_back_to_scanning_the_records() {
    block_on(async {
        let dev = filled(1000).await;
        let name = extent_file_name(1);
        let len = dev.file_len(&name).unwrap() as usize;
        // The summary sits just before the footer and padding; hit a key in it.
        let mut at = 0;
        dev.corrupt(&name, |b| {
            at = b[..len - FOOTER_LEN]
                .windows(8)
                .rposition(|w| w == b"key-0003")
                .unwrap()
        });
        flip(&dev, &name, at + 5);
        let s = open(&dev).await.unwrap();
        for i in 0..1000 {
            assert_eq!(s.get(&key(i)).await.unwrap().unwrap(), value(i), "key {i}");
        }
        assert_eq!(s.len(), 1000);
    });
}

#[test]
fn damaged_summary_and_record_is_corruption_at_open_naming_file_and_offset() {
    block_on(async {
        let dev = filled(1000).await;
        let name = extent_file_name(1);
        let len = dev.file_len(&name).unwrap() as usize;
        let mut summary_key = 0;
        dev.corrupt(&name, |b| {
            summary_key = b[..len - FOOTER_LEN]
                .windows(8)
                .rposition(|w| w == b"key-0003")
                .unwrap()
        });
        flip(&dev, &name, summary_key + 5);
        let record = find(&dev, &name, b"value-0002-");
        flip(&dev, &name, record);
        match open(&dev).await {
            Err(Error::Corruption { path, offset, .. }) => {
                assert!(path.ends_with(&name));
                assert!(offset < record as u64 && record as u64 - offset < 100);
            }
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
    });
}

#[test]
fn damaged_footer_of_an_older_extent_is_corruption() {
    block_on(async {
        let dev = filled(1000).await;
        let name = extent_file_name(1);
        let len = dev.file_len(&name).unwrap() as usize;
        flip(&dev, &name, len - FOOTER_LEN + 9);
        match open(&dev).await {
            Err(Error::Corruption { path, offset, .. }) => {
                assert!(path.ends_with(&name));
                assert_eq!(offset, (len - FOOTER_LEN) as u64);
            }
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
    });
}

#[test]
fn damaged_header_of_the_newest_extent_with_records_is_corruption() {
    block_on(async {
        let dev = filled(1000).await;
        let newest = (1..100)
            .rev()
            .find(|&s| dev.file_len(&extent_file_name(s)).is_some());
        let name = extent_file_name(newest.unwrap());
        flip(&dev, &name, 10);
        assert!(matches!(
            open(&dev).await,
            Err(Error::Corruption { offset: 0, .. })
        ));
    });
}

/// The newest extent's name.
fn newest(dev: &SimDevice) -> String {
    let newest = (1..100)
        .rev()
        .find(|&s| dev.file_len(&extent_file_name(s)).is_some());
    extent_file_name(newest.unwrap())
}

/// A copy of a file's bytes.
fn bytes_of(dev: &SimDevice, name: &str) -> Vec<u8> {
    let mut copy = Vec::new();
    dev.corrupt(name, |b| copy = b.clone());
    copy
}

/// `filled(1000)` with one byte flipped in the value of key 995, the fifth-from-last
/// record of the newest extent; returns the device, that extent and the flipped offset.
async fn damaged_fifth_from_last() -> (SimDevice, String, usize) {
    let dev = filled(1000).await;
    let name = newest(&dev);
    let at = find(&dev, &name, b"value-0995-");
    flip(&dev, &name, at);
    (dev, name, at)
}

#[test]
fn flipped_byte_in_the_newest_extent_refuses_to_open_and_changes_nothing() {
    block_on(async {
        let (dev, name, at) = damaged_fifth_from_last().await;
        let before = bytes_of(&dev, &name);
        let files = {
            use ringkv_engine::device::Device;
            dev.list().await.unwrap()
        };
        match open(&dev).await {
            Err(Error::Corruption { path, offset, what }) => {
                assert!(path.ends_with(&name), "{path}");
                let record = at - RECORD_HEADER_LEN - key(995).len();
                assert_eq!(offset as usize, record, "{what}");
                assert!(
                    what.contains("salvage"),
                    "the error shows a way forward: {what}"
                );
            }
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
        assert_eq!(bytes_of(&dev, &name), before, "the extent is unchanged");
        use ringkv_engine::device::Device;
        assert_eq!(dev.list().await.unwrap(), files, "no file added or removed");
    });
}

#[test]
fn salvage_keeps_every_intact_record_and_quarantines_the_damaged_bytes() {
    block_on(async {
        let (mut dev, name, at) = damaged_fifth_from_last().await;
        let record = at - RECORD_HEADER_LEN - key(995).len();
        let damaged = bytes_of(&dev, &name)[record..].to_vec();
        let s = Substore::create_or_open(dev.clone(), ID, salvage())
            .await
            .unwrap();
        let report = s.salvaged().to_vec();
        assert_eq!(report.len(), 1, "{report:?}");
        assert_eq!(report[0].offset as usize, record);
        assert_eq!(
            report[0].records_kept, 4,
            "keys 996..1000 follow the damage"
        );
        assert_eq!(report[0].damaged_regions, 1, "key 995's record");
        let quarantine = report[0]
            .quarantine_path
            .rsplit(['/', ':'])
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(
            bytes_of(&dev, &quarantine),
            damaged,
            "the damaged bytes are kept aside"
        );
        for i in (0..1000).filter(|&i| i != 995) {
            assert_eq!(s.get(&key(i)).await.unwrap().unwrap(), value(i), "key {i}");
        }
        assert_eq!(s.get(&key(995)).await.unwrap(), None);
        drop(s);
        // The salvage is durable, and a strict open accepts its result.
        dev.crash(CrashMode::DropUnsynced);
        let s = open(&dev).await.unwrap();
        assert_eq!(s.len(), 999);
        assert_eq!(s.get(&key(999)).await.unwrap().unwrap(), value(999));
        assert!(s.salvaged().is_empty());
    });
}

#[test]
fn a_salvage_cut_short_is_refused_by_a_strict_open_and_finished_by_another_salvage() {
    block_on(async {
        use ringkv_engine::device::{Device, DeviceFile};
        let (dev, name, at) = damaged_fifth_from_last().await;
        let record = at - RECORD_HEADER_LEN - key(995).len();
        let s = Substore::create_or_open(dev.clone(), ID, salvage())
            .await
            .unwrap();
        let done = s.salvaged()[0]
            .quarantine_path
            .rsplit(['/', ':'])
            .next()
            .unwrap()
            .to_owned();
        drop(s);
        // Back to the state after the cut and before the re-append (steps 2 and 3).
        let pending = done.replace(".bin", ".pending");
        dev.rename(&done, &pending).await.unwrap();
        let f = dev.open(&name).await.unwrap();
        f.truncate(record as u64).await.unwrap();
        f.sync().await.unwrap();
        dev.sync_dir().await.unwrap();
        match open(&dev).await {
            Err(Error::Corruption { path, .. }) => assert!(path.ends_with(&pending), "{path}"),
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
        let s = Substore::create_or_open(dev.clone(), ID, salvage())
            .await
            .unwrap();
        assert_eq!(s.salvaged()[0].records_kept, 4);
        assert_eq!(s.len(), 999);
        for i in 996..1000 {
            assert_eq!(s.get(&key(i)).await.unwrap().unwrap(), value(i), "key {i}");
        }
    });
}

#[test]
fn torn_tail_of_the_last_write_is_cut_and_the_cut_is_durable() {
    block_on(async {
        let mut dev = filled(1000).await;
        let name = newest(&dev);
        let at = find(&dev, &name, b"value-0995-");
        // A torn write: the sector holding part of key 995's value never reached the disk.
        let sector = at.next_multiple_of(512);
        dev.corrupt(&name, |b| b[sector..sector + 512].fill(0));
        let s = open(&dev).await.unwrap();
        let cut = (0..1000).find(|&i| {
            let k = key(i);
            futures_lite::future::block_on(s.get(&k)).unwrap().is_none()
        });
        let cut = cut.expect("the torn record and what follows are cut");
        assert!((995..=996).contains(&cut), "{cut}");
        for i in 0..cut {
            assert_eq!(s.get(&key(i)).await.unwrap().unwrap(), value(i), "key {i}");
        }
        // The cut is durable: new writes after it survive another crash.
        s.put(b"after", b"cut").await.unwrap();
        s.flush().await.unwrap();
        drop(s);
        dev.crash(CrashMode::DropUnsynced);
        let s = open(&dev).await.unwrap();
        assert_eq!(s.get(b"after").await.unwrap().as_deref(), Some(&b"cut"[..]));
        assert_eq!(s.len(), cut as u64 + 1);
    });
}

#[test]
fn zeroed_tail_is_cut_off() {
    block_on(async {
        let dev = filled(1000).await;
        let newest = (1..100)
            .rev()
            .find(|&s| dev.file_len(&extent_file_name(s)).is_some());
        let name = extent_file_name(newest.unwrap());
        let at = find(&dev, &name, b"value-0990-");
        let record = at - ringkv_engine::format::RECORD_HEADER_LEN - key(990).len();
        dev.corrupt(&name, |b| b[record..].fill(0));
        let s = open(&dev).await.unwrap();
        assert_eq!(s.len(), 990);
        assert_eq!(s.get(&key(989)).await.unwrap().unwrap(), value(989));
    });
}

#[test]
fn stillborn_newest_extent_is_removed() {
    block_on(async {
        // A crash between creating the next extent and syncing its header.
        let dev = filled(10).await;
        let s = open(&dev).await.unwrap();
        let first = extent_file_name(1);
        assert!(dev.file_len(&first).is_some());
        drop(s);
        let name = extent_file_name(2);
        {
            use ringkv_engine::device::{Device, DeviceFile};
            let f = dev.create(&name).await.unwrap();
            f.write_at(0, &[0u8; 4096]).await.unwrap();
            f.sync().await.unwrap();
            dev.sync_dir().await.unwrap();
        }
        let s = open(&dev).await.unwrap();
        assert_eq!(s.len(), 10);
        assert_eq!(dev.file_len(&name), None);
    });
}

#[test]
fn failed_write_or_sync_makes_it_read_only_and_loses_nothing_durable() {
    for (on, fault) in [
        (FaultOn::Write, Fault::NoSpace),
        (FaultOn::Write, Fault::Io),
        (FaultOn::Sync, Fault::Io),
        (FaultOn::Sync, Fault::NoSpace),
    ] {
        block_on(async {
            let mut dev = filled(100).await;
            let s = open(&dev).await.unwrap();
            s.put(b"lost", b"maybe").await.unwrap();
            dev.inject(on, 1, fault);
            let err = s.flush().await.unwrap_err();
            assert!(matches!(err, Error::Io { .. }), "{err}");
            assert_eq!(err.is_no_space(), fault == Fault::NoSpace);
            assert!(s.is_read_only());
            assert!(matches!(
                s.put(b"x", b"y").await,
                Err(Error::ReadOnly { .. })
            ));
            assert!(matches!(
                s.delete(&key(1)).await,
                Err(Error::ReadOnly { .. })
            ));
            assert!(matches!(s.flush().await, Err(Error::ReadOnly { .. })));
            // Reads go on.
            assert_eq!(s.get(&key(7)).await.unwrap().unwrap(), value(7));
            drop(s);
            dev.crash(CrashMode::DropUnsynced);
            let s = open(&dev).await.unwrap();
            for i in 0..100 {
                assert_eq!(s.get(&key(i)).await.unwrap().unwrap(), value(i));
            }
            assert_eq!(s.get(b"x").await.unwrap(), None);
        });
    }
}

#[test]
fn wrong_identity_and_missing_substore_are_typed_errors() {
    block_on(async {
        let dev = filled(3).await;
        let other = SubstoreId::root(99);
        let r = Substore::create_or_open(dev.clone(), other, config()).await;
        assert!(matches!(r, Err(Error::WrongSubstore { .. })));
        let r = Substore::open(SimDevice::new(), config()).await;
        assert!(matches!(r, Err(Error::NotFound { .. })));
        let bad = Config {
            extent_size_bytes: 100,
            ..config()
        };
        let r = Substore::create_or_open(SimDevice::new(), ID, bad).await;
        assert!(matches!(r, Err(Error::InvalidConfig(_))));
    });
}

#[test]
fn zeroed_first_block_of_the_newest_extent_is_corruption_not_a_silent_delete() {
    block_on(async {
        let dev = filled(1000).await;
        let newest = (1..100)
            .rev()
            .find(|&s| dev.file_len(&extent_file_name(s)).is_some())
            .unwrap();
        let name = extent_file_name(newest);
        dev.corrupt(&name, |b| b[..4096].fill(0));
        assert!(matches!(
            open(&dev).await,
            Err(Error::Corruption { offset: 0, .. })
        ));
        assert!(
            dev.file_len(&name).is_some(),
            "the damaged extent is kept for inspection"
        );
    });
}

/// Where the records of extent `name` end (the first zero byte after the last record).
fn records_end(dev: &SimDevice, name: &str) -> usize {
    let bytes = bytes_of(dev, name);
    let last = find(dev, name, &value(9));
    last + value(9).len()
        + bytes[last + value(9).len()..]
            .iter()
            .position(|&b| b == 0)
            .unwrap()
}

#[test]
fn a_record_with_a_valid_checksum_and_an_impossible_sequence_is_corruption_not_a_panic() {
    block_on(async {
        use ringkv_engine::format::{Kind, RecordHeader, encode_record};
        let dev = filled(10).await;
        let name = newest(&dev);
        let at = records_end(&dev, &name);
        let mut record = Vec::new();
        let header = RecordHeader {
            kind: Kind::Put,
            seq: u64::MAX - 1,
            expiry_unix_ms: None,
            meta_len: 0,
            key_len: 3,
            value_len: 1,
        };
        encode_record(&mut record, &header, b"", b"key", b"v");
        dev.corrupt(&name, |b| b[at..at + record.len()].copy_from_slice(&record));
        match open(&dev).await {
            Err(Error::Corruption { offset, what, .. }) => {
                assert_eq!(offset as usize, at, "{what}");
                assert!(what.contains("sequence"), "{what}");
            }
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
    });
}

#[test]
fn an_extent_number_past_the_index_range_is_corruption_not_a_panic() {
    block_on(async {
        use ringkv_engine::device::{Device, DeviceFile};
        let dev = filled(10).await;
        let name = extent_file_name(1 << 32);
        let f = dev.create(&name).await.unwrap();
        f.write_at(0, &[0u8; 4096]).await.unwrap();
        match open(&dev).await {
            Err(Error::Corruption { path, .. }) => assert!(path.ends_with(&name), "{path}"),
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
    });
}

#[test]
fn a_footer_counting_more_entries_than_its_summary_holds_is_corruption_not_an_abort() {
    block_on(async {
        use ringkv_engine::format::Footer;
        let dev = filled(1000).await;
        let name = extent_file_name(1);
        let len = dev.file_len(&name).unwrap() as usize;
        dev.corrupt(&name, |b| {
            let mut footer = Footer::decode(&b[len - FOOTER_LEN..]).unwrap();
            footer.entry_count = u32::MAX;
            b[len - FOOTER_LEN..].copy_from_slice(&footer.encode());
        });
        assert!(matches!(open(&dev).await, Err(Error::Corruption { .. })));
    });
}

#[test]
fn a_read_error_while_opening_fails_the_open_and_changes_nothing() {
    block_on(async {
        let mut dev = filled(1000).await;
        let name = newest(&dev);
        let before = bytes_of(&dev, &name);
        for nth in 1..6 {
            dev.inject(FaultOn::Read, nth, Fault::Io);
            assert!(
                matches!(open(&dev).await, Err(Error::Io { .. })),
                "read {nth}"
            );
            dev.crash(CrashMode::DropUnsynced); // clears the armed fault if not reached
        }
        assert_eq!(bytes_of(&dev, &name), before);
        let s = open(&dev).await.unwrap();
        assert_eq!(s.len(), 1000);
    });
}

#[test]
fn out_of_descriptors_fails_that_write_out_and_the_next_one_succeeds() {
    block_on(async {
        let mut dev = filled(10).await;
        let s = open(&dev).await.unwrap();
        for i in 10..1000 {
            s.put(&key(i), &value(i)).await.unwrap();
        }
        // The next extent file cannot be created: EMFILE.
        dev.inject(FaultOn::Open, 1, Fault::TooManyFiles);
        let e = s.flush().await.unwrap_err();
        assert!(e.is_out_of_descriptors(), "{e}");
        assert!(
            !s.is_read_only(),
            "a resource error does not turn it read-only"
        );
        // Descriptors are free again: the records still in memory go out with the next.
        s.flush().await.unwrap();
        drop(s);
        dev.crash(CrashMode::DropUnsynced);
        let s = open(&dev).await.unwrap();
        for j in 0..1000 {
            assert_eq!(s.get(&key(j)).await.unwrap().unwrap(), value(j), "key {j}");
        }
    });
}

#[test]
fn out_of_descriptors_at_any_sync_of_a_write_out_is_retried_and_loses_nothing() {
    block_on(async {
        // EMFILE at the n-th sync of one flush: a file's sync, the header sync of a new
        // extent (its file then exists: the retry starts it again), or the directory
        // sync after creating it. Each time the flush fails, the substore stays writable,
        // and the next flush makes everything durable.
        let mut hit = 0;
        for n in 1..40 {
            let mut dev = filled(10).await;
            let s = open(&dev).await.unwrap();
            for i in 10..1000 {
                s.put(&key(i), &value(i)).await.unwrap();
            }
            dev.inject(FaultOn::Sync, n, Fault::TooManyFiles);
            if let Err(e) = s.flush().await {
                hit += 1;
                assert!(e.is_out_of_descriptors(), "sync {n}: {e}");
                assert!(!s.is_read_only(), "sync {n}");
                s.flush().await.unwrap();
            }
            drop(s);
            dev.crash(CrashMode::DropUnsynced);
            let s = open(&dev).await.unwrap();
            for i in 0..1000 {
                assert_eq!(
                    s.get(&key(i)).await.unwrap().unwrap(),
                    value(i),
                    "sync {n}, key {i}"
                );
            }
        }
        assert!(hit > 10, "the fault hit {hit} flushes");
    });
}

/// Records ending 36 bytes before a sector's end, flushed, in an extent to be sealed
/// next: the key summary's first entry (28 fixed bytes and an 11-byte key) will cross
/// into the next sector, while the first record (32 bytes), which is what the bytes
/// there read as, would fit before it. Returns where the records end.
async fn records_ending_before_a_summary_across_a_sector(s: &Substore<SimDevice>) -> usize {
    s.put(b"first-key-1", b"v").await.unwrap();
    let records_end = 3 * 512 + 476;
    let first_end = ringkv_engine::format::EXTENT_HEADER_LEN + RECORD_HEADER_LEN + 12;
    let filler = records_end - first_end - RECORD_HEADER_LEN - key(0).len();
    s.put(&key(0), &vec![b'f'; filler]).await.unwrap();
    s.flush().await.unwrap();
    assert!(s.retire_active());
    records_end
}

/// [`records_ending_before_a_summary_across_a_sector`], sealed. Returns the device, the
/// extent's name and where its records end.
async fn sealed_with_summary_across_a_sector() -> (SimDevice, String, usize) {
    let dev = SimDevice::new();
    let s = Substore::create_or_open(dev.clone(), ID, config())
        .await
        .unwrap();
    let records_end = records_ending_before_a_summary_across_a_sector(&s).await;
    s.flush().await.unwrap();
    s.close().await.unwrap();
    let name = newest(&dev);
    let footer = bytes_of(&dev, &name);
    let footer = ringkv_engine::format::Footer::decode(&footer[footer.len() - FOOTER_LEN..]);
    assert_eq!(
        footer.unwrap().records_end,
        records_end as u64,
        "sealed there"
    );
    (dev, name, records_end)
}

#[test]
fn a_seal_torn_inside_the_first_entry_of_its_key_summary_is_cut() {
    block_on(async {
        // What a crash can leave of the seal's write (the records' last block, the
        // summary, the footer block): the sector after the records' end never written
        // (zeros) and the footer lost, or the file ending at the records' last sector.
        type Tear = fn(&mut Vec<u8>, usize);
        let tears: [(&str, Tear); 2] = [
            ("a sector of the entry and the footer lost", |b, at| {
                let next = at.next_multiple_of(512);
                b[next..next + 512].fill(0);
                let last = b.len() - 512;
                b[last..].fill(0);
            }),
            ("the file ends inside the entry", |b, at| {
                b.truncate(at.next_multiple_of(512))
            }),
        ];
        for (what, tear) in tears {
            let (dev, name, records_end) = sealed_with_summary_across_a_sector().await;
            dev.corrupt(&name, |b| tear(b, records_end));
            let s = open(&dev).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                s.get(b"first-key-1").await.unwrap().as_deref(),
                Some(&b"v"[..])
            );
            let filler = s.get(&key(0)).await.unwrap().unwrap();
            assert!(
                filler.len() > 1500 && filler.iter().all(|&c| c == b'f'),
                "{what}"
            );
            assert_eq!(dev.file_len(&name), Some(records_end as u64), "{what}: cut");
            // The extent takes appends again and seals once more.
            s.put(b"after", b"the cut").await.unwrap();
            s.close().await.unwrap();
            let s = open(&dev).await.unwrap();
            assert_eq!(s.len(), 3, "{what}");
        }
    });
}

#[test]
fn every_crash_of_a_seal_whose_summary_crosses_a_sector_opens_with_every_record() {
    block_on(async {
        for seed in 0..300 {
            let dev = SimDevice::new();
            let s = Substore::create_or_open(dev.clone(), ID, config())
                .await
                .unwrap();
            records_ending_before_a_summary_across_a_sector(&s).await;
            // The seal's write is made and the power goes before its sync: each of its
            // sectors reached the disk or not.
            dev.disk().power_cut_at(2, CrashMode::Random { seed });
            s.flush().await.expect_err("the power went");
            drop(s);
            let dev = dev.disk().reboot().device("").unwrap();
            let s = open(&dev)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(s.len(), 2, "seed {seed}");
            assert!(
                s.get(b"first-key-1").await.unwrap().is_some(),
                "seed {seed}"
            );
        }
    });
}

#[test]
fn a_damaged_first_entry_after_the_records_is_not_taken_for_a_torn_seal() {
    block_on(async {
        let (dev, name, records_end) = sealed_with_summary_across_a_sector().await;
        // The entry's second sector holds other bytes than the seal wrote: not a crash.
        dev.corrupt(&name, |b| {
            let next = records_end.next_multiple_of(512);
            b[next] ^= 0x40;
            let last = b.len() - 512;
            b[last..].fill(0);
        });
        let Err(e) = open(&dev).await else {
            panic!("a damaged entry is refused")
        };
        assert!(e.to_string().contains("not a torn write"), "{e}");
    });
}
