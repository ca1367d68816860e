//! The same basic sequences on the real device: glommio DMA files (O_DIRECT, io_uring)
//! in a directory on the work tree's disk (`CARGO_TARGET_TMPDIR`, never tmpfs, which
//! cannot do O_DIRECT).

use std::collections::BTreeMap;
use std::path::Path;

use glommio::{LocalExecutorBuilder, Placement};
use ringkv_engine::{Config, DmaDevice, Substore, SubstoreId};

fn on_executor<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { f().await })
        .expect("executor starts")
        .join()
        .expect("executor finishes")
}

fn config() -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        write_buffer_bytes: 32 << 10,
        ..Config::default()
    }
}

async fn open(dir: &Path) -> Substore<DmaDevice> {
    let device = DmaDevice::open(dir).await.expect("device opens");
    Substore::create_or_open(device, SubstoreId::root(1), config())
        .await
        .expect("opens")
}

#[test]
fn random_sequence_with_reopens_matches_a_btreemap() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    on_executor(async move || {
        let mut model = BTreeMap::<Vec<u8>, Vec<u8>>::new();
        let mut s = open(&path).await;
        let mut state = 42u64;
        for step in 0..4000u64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = state >> 33;
            let key = format!("key{}", r % 300).into_bytes();
            match r % 10 {
                0..=4 => {
                    let len = if r % 97 == 0 {
                        100_000
                    } else {
                        (r % 2000) as usize
                    };
                    let value = vec![(step % 256) as u8; len];
                    s.put(&key, &value).await.unwrap();
                    model.insert(key, value);
                }
                5 => {
                    s.delete(&key).await.unwrap();
                    model.remove(&key);
                }
                6 if r % 50 == 0 => {
                    s.close().await.unwrap();
                    s = open(&path).await;
                }
                6 => s.flush().await.unwrap(),
                _ => {
                    let got = s.get(&key).await.unwrap();
                    assert_eq!(
                        got.as_deref(),
                        model.get(&key).map(Vec::as_slice),
                        "step {step}"
                    );
                }
            }
        }
        s.close().await.unwrap();
        let s = open(&path).await;
        assert_eq!(s.len(), model.len() as u64);
        for (k, v) in &model {
            assert_eq!(s.get(k).await.unwrap().as_deref(), Some(&v[..]));
        }
        let mut seen = BTreeMap::new();
        s.for_each(|k, v| {
            seen.insert(k.to_vec(), v.to_vec());
        })
        .await
        .unwrap();
        assert!(seen == model, "for_each lists exactly the live entries");
        assert!(s.stats().extents > 5);
    });
}

#[test]
fn unflushed_writes_are_lost_but_flushed_ones_survive_a_drop() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    on_executor(async move || {
        let s = open(&path).await;
        s.put(b"durable", b"yes").await.unwrap();
        s.flush().await.unwrap();
        s.put(b"buffered", b"maybe").await.unwrap();
        drop(s);
        let s = open(&path).await;
        assert_eq!(
            s.get(b"durable").await.unwrap().as_deref(),
            Some(&b"yes"[..])
        );
        assert_eq!(s.get(b"buffered").await.unwrap(), None);
    });
}

/// `read_with` hands over what `read_at` returns, in place: whole blocks, fewer at the
/// end of the file, none past it.
#[test]
fn read_with_sees_what_read_at_returns() {
    use ringkv_engine::device::{Device, DeviceFile};
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    on_executor(async move || {
        const BLOCK: usize = 4096;
        let device = DmaDevice::open(&path).await.expect("device opens");
        let file = device.create("blocks").await.expect("creates");
        let data: Vec<u8> = (0..3 * BLOCK)
            .map(|i| (i / BLOCK * 7 + i % 251) as u8)
            .collect();
        file.write_at(0, &data).await.expect("writes");
        for (offset, len) in [
            (0, 3 * BLOCK),
            (BLOCK, BLOCK),
            (BLOCK, 4 * BLOCK),
            (3 * BLOCK, BLOCK),
        ] {
            let direct = file.read_at(offset as u64, len).await.expect("reads");
            let handed = (file.read_with(offset as u64, len, <[u8]>::to_vec).await).expect("reads");
            assert_eq!(handed, direct, "read of {len} bytes at {offset}");
            let end = (offset + len).min(data.len());
            assert_eq!(
                handed,
                data[offset.min(end)..end],
                "read of {len} bytes at {offset}"
            );
        }
    });
}
