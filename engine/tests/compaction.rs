//! Compaction: space comes back, values stay, deletes stay deleted, across reopens and
//! crashes.

use std::collections::BTreeMap;

use futures_lite::future::block_on;
use ringkv_engine::{Config, CrashMode, SimDevice, Substore, SubstoreId, WriteOptions};

const ID: SubstoreId = SubstoreId::root(5);

fn config() -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        write_buffer_bytes: 32 << 10,
        ..Config::default()
    }
}

async fn check(s: &Substore<SimDevice>, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    assert_eq!(s.len(), model.len() as u64);
    for (k, v) in model {
        assert_eq!(s.get(k).await.unwrap().as_deref(), Some(&v[..]));
    }
    let mut n = 0;
    s.for_each(|k, v| {
        assert_eq!(model.get(k).map(Vec::as_slice), Some(v));
        n += 1;
    })
    .await
    .unwrap();
    assert_eq!(n, model.len());
}

#[test]
fn overwrite_heavy_run_compacts_to_low_space_amplification() {
    block_on(async {
        let mut dev = SimDevice::new();
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        let mut model = BTreeMap::new();
        for round in 0..20u32 {
            for k in 0..200u32 {
                let key = format!("key{k}").into_bytes();
                let value = vec![(round + k) as u8; 300 + (k as usize % 7) * 10];
                s.put(&key, &value).await.unwrap();
                model.insert(key, value);
            }
            for k in (0..200u32).filter(|k| k % 10 == round % 10) {
                let key = format!("key{k}").into_bytes();
                s.delete(&key).await.unwrap();
                model.remove(&key);
            }
        }
        s.flush().await.unwrap();
        let before = s.stats();
        let amplification_before = before.disk_bytes as f64 / before.live_bytes as f64;
        let stats = s.compact(0.0).await.unwrap();
        let after = s.stats();
        let amplification_after = after.disk_bytes as f64 / after.live_bytes as f64;
        assert!(stats.extents > 10, "{stats:?}");
        assert!(stats.tombstones_dropped > 0, "{stats:?}");
        assert!(
            amplification_after < amplification_before / 3.0 && amplification_after < 2.0,
            "space amplification {amplification_before:.2} -> {amplification_after:.2}: {before:?} {after:?}"
        );
        check(&s, &model).await;
        drop(s);
        dev.crash(CrashMode::DropUnsynced);
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        check(&s, &model).await;
        assert_eq!(
            s.stats().live_bytes,
            after.live_bytes,
            "no record counted twice"
        );
    });
}

#[test]
fn a_crash_between_the_rewrite_and_the_delete_counts_nothing_twice() {
    block_on(async {
        let dev = SimDevice::new();
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        let mut model = BTreeMap::new();
        for i in 0..2000u32 {
            let key = format!("key{}", i % 150).into_bytes();
            let value = vec![i as u8; 200];
            s.put(&key, &value).await.unwrap();
            model.insert(key, value);
        }
        s.flush().await.unwrap();
        let live = s.stats().live_bytes;
        let victim = s.compaction_victims(0.5)[0];
        let name = ringkv_engine::format::extent_file_name(victim);
        // Keep a copy of the victim, compact, then put the victim back as if the delete
        // never reached the disk.
        let mut copy = Vec::new();
        dev.corrupt(&name, |b| copy = b.clone());
        s.compact_extent(victim).await.unwrap();
        drop(s);
        {
            use ringkv_engine::device::{Device, DeviceFile};
            let f = dev.create(&name).await.unwrap();
            f.write_at(0, &copy).await.unwrap();
            f.sync().await.unwrap();
            dev.sync_dir().await.unwrap();
        }
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        check(&s, &model).await;
        assert_eq!(s.stats().live_bytes, live);
    });
}

#[test]
fn deleted_keys_never_come_back_after_compaction_and_reopen() {
    block_on(async {
        let mut dev = SimDevice::new();
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        for i in 0..500u32 {
            s.put(format!("k{i}").as_bytes(), &[1u8; 400])
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        for i in 0..500u32 {
            if i % 2 == 0 {
                s.delete(format!("k{i}").as_bytes()).await.unwrap();
            }
        }
        // Filler that overwrites itself, so later extents become victims too.
        for i in 0..3000u32 {
            s.put(format!("filler{}", i % 10).as_bytes(), &[2u8; 300])
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        for _ in 0..3 {
            s.compact(0.0).await.unwrap();
        }
        drop(s);
        dev.crash(CrashMode::DropUnsynced);
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        for i in 0..500u32 {
            let got = s.get(format!("k{i}").as_bytes()).await.unwrap();
            assert_eq!(got.is_some(), i % 2 == 1, "k{i}");
        }
        assert_eq!(s.len(), 260);
    });
}

#[test]
fn expired_records_are_dropped_by_compaction() {
    block_on(async {
        let mut dev = SimDevice::new();
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        let past = Some(1);
        let future = Some(u64::MAX / 2);
        for i in 0..400u32 {
            let expiry = if i % 2 == 0 { past } else { future };
            let opts = WriteOptions {
                meta: b"m",
                expiry_unix_ms: expiry,
            };
            s.put_with(format!("k{i}").as_bytes(), &[3u8; 300], opts)
                .await
                .unwrap();
        }
        for i in 0..2000u32 {
            s.put(format!("filler{}", i % 5).as_bytes(), &[4u8; 300])
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        assert_eq!(s.get(b"k0").await.unwrap(), None, "expired reads as absent");
        assert!(!s.exists(b"k0"));
        let stats = s.compact(0.0).await.unwrap();
        assert!(stats.expired_dropped > 0, "{stats:?}");
        assert_eq!(s.len(), 205, "200 unexpired + 5 fillers");
        drop(s);
        dev.crash(CrashMode::DropUnsynced);
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        assert_eq!(s.len(), 205);
        assert_eq!(
            s.get(b"k1").await.unwrap().as_deref(),
            Some(&[3u8; 300][..])
        );
        assert_eq!(s.get(b"k0").await.unwrap(), None);
    });
}
