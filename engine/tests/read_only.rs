//! A read-only open (`Config::read_only`) changes no byte: it serves a substore whose
//! newest extent ends cleanly (zeros after the records, as a close leaves it), refuses
//! one with a torn tail to cut (which a writable open then cuts), and every write
//! fails with `Error::OpenedReadOnly`.

use futures_lite::future::block_on;
use ringkv_engine::format::extent_file_name;
use ringkv_engine::{Config, Error, SimDevice, Substore, SubstoreId};

const ID: SubstoreId = SubstoreId::root(3);

fn config(read_only: bool) -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        read_only,
        ..Config::default()
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

/// A closed substore of `n` keys whose newest extent is unsealed; its name.
async fn filled(n: usize) -> (SimDevice, String) {
    let dev = SimDevice::new();
    let s = Substore::create_or_open(dev.clone(), ID, config(false))
        .await
        .unwrap();
    for i in 0..n {
        s.put(&key(i), &[b'v'; 200]).await.unwrap();
    }
    s.close().await.unwrap();
    let newest = (1..100)
        .rev()
        .find(|&s| dev.file_len(&extent_file_name(s)).is_some());
    (dev, extent_file_name(newest.unwrap()))
}

fn bytes_of(dev: &SimDevice, name: &str) -> Vec<u8> {
    let mut copy = Vec::new();
    dev.corrupt(name, |b| copy = b.clone());
    copy
}

#[test]
fn a_clean_substore_opens_read_only_and_takes_no_write() {
    block_on(async {
        let (dev, newest) = filled(700).await;
        let before = bytes_of(&dev, &newest);
        assert!(
            before.len() % 4096 == 0,
            "zeros after the records, to a block"
        );
        let s = Substore::open(dev.clone(), config(true)).await.unwrap();
        assert_eq!(s.len(), 700);
        assert_eq!(
            s.get(&key(699)).await.unwrap().as_deref(),
            Some(&[b'v'; 200][..])
        );
        let refused = s.put(b"new", b"value").await.unwrap_err();
        assert!(matches!(refused, Error::OpenedReadOnly), "{refused}");
        assert!(matches!(s.flush().await, Err(Error::OpenedReadOnly)));
        drop(s);
        assert_eq!(bytes_of(&dev, &newest), before);
    });
}

#[test]
fn a_torn_tail_is_refused_read_only_and_cut_by_a_writable_open() {
    block_on(async {
        let (dev, newest) = filled(700).await;
        // The last write torn: a sector before its end never reached the disk.
        let end = bytes_of(&dev, &newest)
            .iter()
            .rposition(|&b| b != 0)
            .unwrap();
        let sector = (end - 600) / 512 * 512;
        dev.corrupt(&newest, |b| b[sector..sector + 512].fill(0));
        let before = bytes_of(&dev, &newest);
        let refused = Substore::open(dev.clone(), config(true)).await.unwrap_err();
        assert!(
            matches!(&refused, Error::NeedsWritableOpen { .. }),
            "{refused}"
        );
        assert_eq!(bytes_of(&dev, &newest), before, "nothing cut");
        let s = Substore::open(dev.clone(), config(false)).await.unwrap();
        let kept = s.len();
        assert!((690..700).contains(&kept), "{kept}");
        s.close().await.unwrap();
        let s = Substore::open(dev.clone(), config(true)).await.unwrap();
        assert_eq!(s.len(), kept);
    });
}

#[test]
fn a_read_only_salvage_is_an_invalid_config() {
    block_on(async {
        let (dev, _) = filled(10).await;
        let config = Config {
            recovery: ringkv_engine::Recovery::Salvage,
            ..config(true)
        };
        let refused = Substore::open(dev, config).await.unwrap_err();
        assert!(matches!(refused, Error::InvalidConfig(_)), "{refused}");
    });
}
