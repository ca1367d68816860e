//! The README's first command: a real run on an embedded default directory.
//!
//! Opens (or creates) a substore in `./ringkv-data/demo` with glommio DMA files, writes
//! 200,000 keys of 16 bytes with 256-byte values, flushes, reads them all back, closes,
//! reopens (recovery from key summaries), and prints what it saw and how long it took.
//!
//! `cargo run --release -p ringkv-engine --example demo [DIR]`

use std::rc::Rc;
use std::time::Instant;

use glommio::{LocalExecutorBuilder, Placement};
use ringkv_engine::{Config, DmaDevice, Substore, SubstoreId};

const KEYS: u64 = 200_000;
const VALUE_BYTES: usize = 256;
const READERS: u64 = 32;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(b"demo-key");
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ringkv-data/demo".to_owned());
    std::fs::create_dir_all(&dir)?;
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { run(&dir).await })
        .map_err(|e| format!("starting the executor: {e}"))?;
    handle.join().map_err(|e| format!("executor: {e:?}"))?
}

async fn run(dir: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let id = SubstoreId::root(0);
    let open = || async {
        Substore::create_or_open(DmaDevice::open(dir).await?, id, Config::default()).await
    };
    let started = Instant::now();
    let store = open().await?;
    println!(
        "opened {dir} holding {} keys in {:?}",
        store.len(),
        started.elapsed()
    );

    let started = Instant::now();
    let value = vec![0x5a_u8; VALUE_BYTES];
    for i in 0..KEYS {
        store.put(&key(i), &value).await?;
    }
    store.flush().await?;
    let took = started.elapsed();
    println!(
        "wrote {KEYS} keys ({} MiB) and flushed in {took:?}: {:.0} puts/s",
        (KEYS * VALUE_BYTES as u64) >> 20,
        KEYS as f64 / took.as_secs_f64()
    );

    // Read everything back from concurrent tasks: io_uring keeps that many reads in flight.
    let started = Instant::now();
    let store = Rc::new(store);
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let store = store.clone();
            glommio::spawn_local(async move {
                for i in (r..KEYS).step_by(READERS as usize) {
                    let got = store.get(&key(i)).await?;
                    if got.map(|v| v.len()) != Some(VALUE_BYTES) {
                        return Err(format!("key {i} is missing or wrong").into());
                    }
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .collect();
    for reader in readers {
        reader.await?;
    }
    let took = started.elapsed();
    println!(
        "read them back from {READERS} tasks (direct I/O, no cache) in {took:?}: {:.0} gets/s",
        KEYS as f64 / took.as_secs_f64()
    );
    let store = Rc::into_inner(store).ok_or("readers are done")?;
    let stats = store.stats();
    store.close().await?;

    let started = Instant::now();
    let store = open().await?;
    println!(
        "reopened in {:?}: {} keys, stats {:?}",
        started.elapsed(),
        store.len(),
        store.stats()
    );
    assert_eq!(store.stats().keys, stats.keys);
    store.close().await?;
    Ok(())
}
