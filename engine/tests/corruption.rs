//! Damaged files: flipped bytes in sealed extents (values, key summaries, footers,
//! headers) and in the active tail. Each gives the right typed error or the right
//! truncation, never a panic or a wrong value, and every other key stays readable.

use futures_lite::future::block_on;
use ringkv_engine::format::{FOOTER_LEN, extent_file_name};
use ringkv_engine::{Config, CrashMode, Error, Fault, FaultOn, SimDevice, Substore, SubstoreId};

const ID: SubstoreId = SubstoreId::root(3);

fn config() -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        write_buffer_bytes: 1 << 20,
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

#[test]
fn flipped_byte_in_the_active_tail_truncates_there() {
    block_on(async {
        let dev = filled(1000).await;
        let newest = (1..100)
            .rev()
            .find(|&s| dev.file_len(&extent_file_name(s)).is_some());
        let name = extent_file_name(newest.unwrap());
        let at = find(&dev, &name, b"value-0995-");
        flip(&dev, &name, at);
        let s = open(&dev).await.unwrap();
        for i in 0..995 {
            assert_eq!(s.get(&key(i)).await.unwrap().unwrap(), value(i), "key {i}");
        }
        for i in 995..1000 {
            assert_eq!(
                s.get(&key(i)).await.unwrap(),
                None,
                "key {i} is past the cut"
            );
        }
        // The cut is durable: new writes after it survive another crash.
        s.put(b"after", b"cut").await.unwrap();
        s.flush().await.unwrap();
        drop(s);
        dev.crash(CrashMode::DropUnsynced);
        let s = open(&dev).await.unwrap();
        assert_eq!(s.get(b"after").await.unwrap().as_deref(), Some(&b"cut"[..]));
        assert_eq!(s.len(), 996);
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
            let dev = filled(100).await;
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
