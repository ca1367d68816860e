//! Basic behaviour of one substore on the in-memory and simulated devices.

use futures_lite::future::block_on;
use ringkv_engine::limits::{KEY_LEN_MAX, VALUE_LEN_MAX};
use ringkv_engine::{Config, Error, MemDevice, SimDevice, Substore, SubstoreId};

fn small() -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        write_buffer_bytes: 16 << 10,
        ..Config::default()
    }
}

#[test]
fn put_get_delete_reopen_across_many_extents() {
    block_on(async {
        let dev = MemDevice::new();
        let id = SubstoreId::root(7);
        let s = Substore::create_or_open(dev.clone(), id, small())
            .await
            .unwrap();
        for i in 0..3000u32 {
            let value = vec![(i % 251) as u8; (i as usize * 7) % 900];
            s.put(format!("key{i}").as_bytes(), &value).await.unwrap();
        }
        for i in (0..3000u32).step_by(3) {
            assert!(s.delete(format!("key{i}").as_bytes()).await.unwrap());
        }
        assert!(!s.delete(b"never").await.unwrap());
        assert_eq!(s.len(), 2000);
        assert!(s.stats().extents > 10, "{:?}", s.stats());
        s.flush().await.unwrap();
        check(&s).await;
        let stats = s.stats();
        drop(s);
        let s = Substore::create_or_open(dev.clone(), id, small())
            .await
            .unwrap();
        check(&s).await;
        assert_eq!(s.stats().keys, stats.keys);
        assert_eq!(s.stats().live_bytes, stats.live_bytes);
        let mut n = 0;
        s.for_each(|k, v| {
            n += 1;
            let i: usize = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
            assert_eq!(v.len(), (i * 7) % 900);
        })
        .await
        .unwrap();
        assert_eq!(n, 2000);
    });
}

async fn check(s: &Substore<MemDevice>) {
    for i in 0..3000u32 {
        let got = s.get(format!("key{i}").as_bytes()).await.unwrap();
        if i % 3 == 0 {
            assert_eq!(got, None, "key{i}");
        } else {
            let value = vec![(i % 251) as u8; (i as usize * 7) % 900];
            assert_eq!(got.as_deref(), Some(&value[..]), "key{i}");
        }
    }
}

#[test]
fn oversized_input_is_refused_and_changes_nothing() {
    block_on(async {
        let s = Substore::create_or_open(SimDevice::new(), SubstoreId::root(0), small())
            .await
            .unwrap();
        s.put(b"k", b"v").await.unwrap();
        let big_key = vec![0u8; KEY_LEN_MAX + 1];
        assert!(matches!(
            s.put(&big_key, b"v").await,
            Err(Error::KeyTooLarge { .. })
        ));
        let big_value = vec![0u8; VALUE_LEN_MAX + 1];
        assert!(matches!(
            s.put(b"k", &big_value).await,
            Err(Error::ValueTooLarge { .. })
        ));
        assert_eq!(s.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(s.len(), 1);
        let max_key = vec![1u8; KEY_LEN_MAX];
        let max_value = vec![2u8; VALUE_LEN_MAX];
        s.put(&max_key, &max_value).await.unwrap();
        s.put(b"", b"").await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(s.get(&max_key).await.unwrap().unwrap().len(), VALUE_LEN_MAX);
        assert_eq!(s.get(b"").await.unwrap().as_deref(), Some(&b""[..]));
    });
}

#[test]
fn reopens_whatever_the_size_of_the_newest_extent() {
    // Regression: reading the footer position of an unsealed extent between one and two
    // scan chunks long (1..2 MiB) used to index past the scanner's window.
    for records in [500usize, 1100, 1500, 2100, 2600, 5000] {
        block_on(async {
            let dev = MemDevice::new();
            let id = SubstoreId::root(1);
            let s = Substore::create_or_open(dev.clone(), id, Config::default())
                .await
                .unwrap();
            for i in 0..records {
                s.put(format!("k{i}").as_bytes(), &[7u8; 1000])
                    .await
                    .unwrap();
            }
            s.close().await.unwrap();
            let s = Substore::create_or_open(dev.clone(), id, Config::default())
                .await
                .unwrap();
            assert_eq!(s.len(), records as u64);
            assert_eq!(s.get(b"k0").await.unwrap().unwrap().len(), 1000);
        });
    }
}

#[test]
fn is_durable_tells_which_answers_a_crash_could_take_back() {
    block_on(async {
        let dev = SimDevice::new();
        let id = SubstoreId::root(9);
        let s = Substore::create_or_open(dev.clone(), id, small())
            .await
            .unwrap();
        assert!(
            s.is_durable(b"absent"),
            "an absent key reads as absent after any crash"
        );
        assert!(!s.has_unsynced());
        s.put(b"a", b"1").await.unwrap();
        assert!(!s.is_durable(b"a"), "a put not yet flushed");
        assert!(s.has_unsynced());
        s.flush().await.unwrap();
        assert!(s.is_durable(b"a"));
        assert!(!s.has_unsynced());
        s.put(b"a", b"2").await.unwrap();
        assert!(
            !s.is_durable(b"a"),
            "a new value not yet flushed over a durable one"
        );
        s.flush().await.unwrap();
        s.delete(b"a").await.unwrap();
        assert!(
            !s.is_durable(b"a"),
            "a delete not yet flushed: a crash brings 2 back"
        );
        assert!(s.has_unsynced());
        s.flush().await.unwrap();
        assert!(!s.has_unsynced());
        assert!(s.is_durable(b"a"));
        // Compaction copies keep their sequences: what they copy stays durable.
        for i in 0..2000u32 {
            s.put(format!("k{}", i % 200).as_bytes(), &[7; 100])
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        s.compact(0.1).await.unwrap();
        assert!(s.is_durable(b"k7"));
        s.put(b"late", b"x").await.unwrap();
        drop(s);
        // After a reopen everything recovery kept is durable.
        let s = Substore::create_or_open(dev.clone(), id, small())
            .await
            .unwrap();
        assert!(s.is_durable(b"late") && s.is_durable(b"k7"));
    });
}

#[test]
fn for_each_record_reads_records_written_out_while_it_ran() {
    block_on(async {
        let dev = MemDevice::new();
        let s = Substore::create_or_open(dev, SubstoreId::root(11), small())
            .await
            .unwrap();
        // Some records on disk, then some only in the tail.
        for i in 0..20u32 {
            s.put(format!("disk{i:02}").as_bytes(), &[1; 200])
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        for i in 0..20u32 {
            s.put(format!("tail{i:02}").as_bytes(), &[2; 200])
                .await
                .unwrap();
        }
        // While it runs, the tail is written out and moves on: the records that were in
        // memory when it started are read from the file, not from a stale read-ahead.
        let mut seen = 0;
        s.for_each_record_async(async |_key: &[u8], record| {
            assert!(record.value.len() == 200);
            seen += 1;
            s.put(format!("new{seen:03}").as_bytes(), &[3; 200])
                .await
                .unwrap();
            s.flush().await.unwrap();
        })
        .await
        .unwrap();
        assert_eq!(seen, 40);
    });
}

/// An extent that filled up is sealed only when the buffers are written out; a
/// compaction that came before that once skipped it, leaving its dead records on disk.
#[test]
fn compaction_reaches_a_full_extent_not_yet_written_out() {
    block_on(async {
        let config = Config {
            write_buffer_bytes: 1 << 20,
            ..small()
        };
        let s = Substore::create_or_open(MemDevice::new(), SubstoreId::root(12), config)
            .await
            .unwrap();
        // One key rewritten past an extent's size: the full extent holds only dead
        // records, still in memory (the write buffer is not full).
        for i in 0..70u32 {
            s.put(b"a", &[i as u8; 1000]).await.unwrap();
        }
        assert_eq!(s.stats().extents, 2);
        s.compact(0.5).await.unwrap();
        assert_eq!(s.stats().extents, 1, "the full extent was compacted away");
        assert_eq!(
            s.get(b"a").await.unwrap().as_deref(),
            Some(&[69u8; 1000][..])
        );
    });
}
