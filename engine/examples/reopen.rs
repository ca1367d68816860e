//! How long a substore holding 1 GiB of 1 KiB values takes to reopen on the real device,
//! and how many bytes recovery reads to do it (sealed extents: key summaries only).
//!
//! `cargo run --release -p ringkv-engine --example reopen [-- --mib N] [--dir DIR] [--keep]`

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use glommio::{LocalExecutorBuilder, Placement};
use ringkv_engine::device::{Device, DeviceFile};
use ringkv_engine::{Config, DmaDevice, Substore, SubstoreId};

const VALUE_BYTES: usize = 1024;

/// A device that counts the bytes read through it.
#[derive(Clone, Debug)]
struct Counting {
    inner: DmaDevice,
    read_bytes: Rc<Cell<u64>>,
}

#[derive(Debug)]
struct CountingFile {
    inner: <DmaDevice as Device>::File,
    read_bytes: Rc<Cell<u64>>,
}

impl Device for Counting {
    type File = CountingFile;
    async fn open(&self, name: &str) -> io::Result<CountingFile> {
        let inner = self.inner.open(name).await?;
        Ok(CountingFile {
            inner,
            read_bytes: self.read_bytes.clone(),
        })
    }
    async fn create(&self, name: &str) -> io::Result<CountingFile> {
        let inner = self.inner.create(name).await?;
        Ok(CountingFile {
            inner,
            read_bytes: self.read_bytes.clone(),
        })
    }
    async fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name).await
    }
    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to).await
    }
    async fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list().await
    }
    async fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir().await
    }
    fn path_of(&self, name: &str) -> String {
        self.inner.path_of(name)
    }
}

impl DeviceFile for CountingFile {
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let bytes = self.inner.read_at(offset, len).await?;
        self.read_bytes
            .set(self.read_bytes.get() + bytes.len() as u64);
        Ok(bytes)
    }
    async fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data).await
    }
    async fn sync(&self) -> io::Result<()> {
        self.inner.sync().await
    }
    async fn file_size(&self) -> io::Result<u64> {
        self.inner.file_size().await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len).await
    }
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mib: u64 = flag("--mib").map_or(Ok(1024), |s| s.parse())?;
    let keep = args.iter().any(|a| a == "--keep");
    let base = flag("--dir").unwrap_or_else(|| "ringkv-data".to_owned());
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let path = dir.path().to_path_buf();
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { run(&path, mib).await })
        .map_err(|e| format!("starting the executor: {e}"))?;
    handle.join().map_err(|e| format!("executor: {e:?}"))??;
    if keep {
        println!("kept {}", dir.keep().display());
    }
    Ok(())
}

async fn run(
    path: &std::path::Path,
    mib: u64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let keys = (mib << 20) / VALUE_BYTES as u64;
    let id = SubstoreId::root(0);
    let config = Config::default();
    let read_bytes = Rc::new(Cell::new(0));
    let device = || async {
        Ok::<_, ringkv_engine::Error>(Counting {
            inner: DmaDevice::open(path).await?,
            read_bytes: read_bytes.clone(),
        })
    };
    let store = Substore::create_or_open(device().await?, id, config).await?;
    let value = vec![0x5au8; VALUE_BYTES];
    let started = Instant::now();
    for i in 0..keys {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&i.to_be_bytes());
        key[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        store.put(&key, &value).await?;
    }
    store.close().await?;
    let fill = started.elapsed();
    read_bytes.set(0);
    let started = Instant::now();
    let store = Substore::create_or_open(device().await?, id, config).await?;
    let reopen = started.elapsed();
    let stats = store.stats();
    println!(
        "{keys} keys of 16 B with {VALUE_BYTES} B values: {} MiB in {} extents, filled in {fill:?}",
        stats.disk_bytes >> 20,
        stats.extents
    );
    println!(
        "reopen: {reopen:?}, read {:.1} MiB ({:.2} % of the data), {} keys recovered",
        read_bytes.get() as f64 / (1 << 20) as f64,
        100.0 * read_bytes.get() as f64 / stats.disk_bytes as f64,
        store.len()
    );
    assert_eq!(store.len(), keys);
    Ok(())
}
