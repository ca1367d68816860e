//! How long a substore holding 1 GiB of 1 KiB values takes to reopen on the real device,
//! and how many bytes recovery reads to do it (sealed extents: key summaries only).
//!
//! Fills a substore (16-byte keys, default `Config`: 64 MiB extents) through glommio DMA
//! files, closes it, then reopens it a few times. A counting device between the substore
//! and `DmaDevice` counts every read per file; the least recovery could read is printed
//! next to it (per sealed extent: its header block plus the blocks of its key summary and
//! footer; the newest, unsealed extent: all of it, since it has no summary yet).
//!
//! The data goes to a fresh directory under `--dir` (default `./ringkv-data`; use a real
//! disk, not tmpfs), removed at the end unless `--keep`.
//!
//! `cargo run --release -p ringkv-engine --example reopen [-- --mib N] [--dir DIR] [--keep]`

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use ringkv_engine::device::{Device, DeviceFile};
use ringkv_engine::format::{BLOCK_BYTES, FOOTER_LEN, Footer, align_down, parse_extent_file_name};
use ringkv_engine::{Config, DmaDevice, Substore, SubstoreId};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 1024;
const DATA_MIB_DEFAULT: u64 = 1024;
const REOPENS: usize = 3;
const MIB: f64 = (1u64 << 20) as f64;

/// Reads seen per file name.
type ReadCounts = Rc<RefCell<BTreeMap<String, Reads>>>;

#[derive(Clone, Copy, Debug, Default)]
struct Reads {
    calls: u64,
    bytes: u64,
    /// Time spent awaiting them (the substore runs one task, so this is I/O wait).
    waited: Duration,
}

/// A device that counts the bytes read through it, per file.
#[derive(Clone, Debug)]
struct Counting {
    inner: DmaDevice,
    reads: ReadCounts,
}

#[derive(Debug)]
struct CountingFile {
    inner: <DmaDevice as Device>::File,
    name: String,
    reads: ReadCounts,
}

impl Counting {
    fn wrap(&self, name: &str, inner: <DmaDevice as Device>::File) -> CountingFile {
        CountingFile {
            inner,
            name: name.to_owned(),
            reads: self.reads.clone(),
        }
    }
}

impl Device for Counting {
    type File = CountingFile;
    async fn open(&self, name: &str) -> io::Result<CountingFile> {
        Ok(self.wrap(name, self.inner.open(name).await?))
    }
    async fn create(&self, name: &str) -> io::Result<CountingFile> {
        Ok(self.wrap(name, self.inner.create(name).await?))
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
        let started = Instant::now();
        let bytes = self.inner.read_at(offset, len).await?;
        let mut reads = self.reads.borrow_mut();
        let counts = reads.entry(self.name.clone()).or_default();
        counts.calls += 1;
        counts.bytes += bytes.len() as u64;
        counts.waited += started.elapsed();
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

struct Args {
    mib: u64,
    base: String,
    keep: bool,
}

fn parse_args() -> Result<Args, BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        let at = args.iter().position(|a| a == name)?;
        Some(
            args.get(at + 1)
                .cloned()
                .ok_or(format!("{name} needs a value")),
        )
    };
    for (i, a) in args.iter().enumerate() {
        let is_value = i > 0 && matches!(args[i - 1].as_str(), "--mib" | "--dir");
        if !is_value && !matches!(a.as_str(), "--mib" | "--dir" | "--keep") {
            return Err(
                format!("unknown argument {a:?}; use [--mib N] [--dir DIR] [--keep]").into(),
            );
        }
    }
    Ok(Args {
        mib: value("--mib")
            .transpose()?
            .map_or(Ok(DATA_MIB_DEFAULT), |s| s.parse())?,
        base: value("--dir")
            .transpose()?
            .unwrap_or_else(|| "ringkv-data".to_owned()),
        keep: args.iter().any(|a| a == "--keep"),
    })
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let base_existed = Path::new(&args.base).exists();
    std::fs::create_dir_all(&args.base)?;
    let dir = tempfile::Builder::new()
        .prefix("reopen-")
        .tempdir_in(&args.base)?;
    let path = dir.path().to_path_buf();
    let mib = args.mib;
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { run(&path, mib).await })
        .map_err(|e| format!("starting the executor: {e}"))?;
    let result = handle.join().map_err(|e| format!("executor: {e:?}"));
    if args.keep {
        println!("kept {}", dir.keep().display());
    } else {
        dir.close()?;
        if !base_existed {
            // Only if empty: never remove what someone else put there.
            let _ = std::fs::remove_dir(&args.base);
        }
    }
    result?
}

async fn run(path: &Path, mib: u64) -> Result<(), BoxError> {
    let keys = (mib << 20) / VALUE_BYTES as u64;
    let id = SubstoreId::root(0);
    let config = Config::default();
    let reads = ReadCounts::default();
    let device = || async {
        Ok::<_, ringkv_engine::Error>(Counting {
            inner: DmaDevice::open(path).await?,
            reads: reads.clone(),
        })
    };
    let store = Substore::create_or_open(device().await?, id, config.clone()).await?;
    let value = vec![0x5au8; VALUE_BYTES];
    let started = Instant::now();
    for i in 0..keys {
        store.put(&key_of(i), &value).await?;
    }
    store.close().await?;
    let fill = started.elapsed();

    let mut times = Vec::new();
    let mut stats = None;
    for _ in 0..REOPENS {
        reads.borrow_mut().clear();
        let device = device().await?;
        let started = Instant::now();
        let store = Substore::create_or_open(device, id, config.clone()).await?;
        let waited = reads.borrow().values().map(|r| r.waited).sum::<Duration>();
        times.push((started.elapsed(), waited));
        assert_eq!(store.len(), keys, "every key recovered");
        let probe = key_of(keys / 2);
        assert_eq!(store.get(&probe).await?.as_deref(), Some(&value[..]));
        stats = Some(store.stats());
    }
    let stats = stats.expect("reopened at least once");
    println!(
        "{keys} keys of {KEY_BYTES} B with {VALUE_BYTES} B values: {:.1} MiB on disk in {} \
         extents ({:.1} MiB of records), filled and closed in {fill:.2?} ({:.0} MiB/s)",
        stats.disk_bytes as f64 / MIB,
        stats.extents,
        stats.record_bytes as f64 / MIB,
        stats.disk_bytes as f64 / MIB / fill.as_secs_f64(),
    );
    print_reads(path, &reads.borrow(), stats.disk_bytes)?;
    let (best, _) = times.iter().min().expect("reopened");
    println!(
        "reopen ({REOPENS} times, each: total / of which awaiting reads): {}; best {best:.2?} \
         ({:.0} keys/ms)",
        times
            .iter()
            .map(|(t, w)| format!("{t:.2?} / {w:.2?}"))
            .collect::<Vec<_>>()
            .join(", "),
        keys as f64 / (best.as_secs_f64() * 1000.0),
    );
    Ok(())
}

fn key_of(i: u64) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key[..8].copy_from_slice(&i.to_be_bytes());
    key[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    key
}

/// The least a reopen must read from extent file `path`: header block plus summary and
/// footer blocks when sealed, the whole file otherwise. Also says whether it is sealed.
fn least_read(path: &Path) -> Result<(u64, bool), BoxError> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len < BLOCK_BYTES {
        return Ok((len, false));
    }
    let mut tail = vec![0u8; FOOTER_LEN];
    file.seek(SeekFrom::Start(len - FOOTER_LEN as u64))?;
    file.read_exact(&mut tail)?;
    Ok(
        match Footer::decode(&tail).filter(|f| f.file_len() == len) {
            Some(f) => (BLOCK_BYTES + len - align_down(f.records_end), true),
            None => (len, false),
        },
    )
}

/// Per-file table of what the last reopen read, against the least it had to.
fn print_reads(
    dir: &Path,
    reads: &BTreeMap<String, Reads>,
    data_bytes: u64,
) -> Result<(), BoxError> {
    println!(
        "{:<22} {:>6} {:>10} {:>6} {:>10} {:>10}",
        "last reopen read", "", "file MiB", "reads", "read MiB", "least MiB"
    );
    let (mut total, mut least_total) = (0u64, 0u64);
    for (name, r) in reads {
        let (ops, bytes) = (r.calls, r.bytes);
        let file = dir.join(name);
        let file_bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
        let (least, kind) = match parse_extent_file_name(name) {
            Some(_) => match least_read(&file)? {
                (least, true) => (least, "sealed"),
                (least, false) => (least, "active"),
            },
            None => (bytes.min(BLOCK_BYTES), ""),
        };
        total += bytes;
        least_total += least;
        println!(
            "{name:<22} {kind:>6} {:>10.2} {ops:>6} {:>10.2} {:>10.2}",
            file_bytes as f64 / MIB,
            bytes as f64 / MIB,
            least as f64 / MIB,
        );
    }
    let unread = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| parse_extent_file_name(n).is_some() && !reads.contains_key(n))
        .count();
    assert_eq!(unread, 0, "recovery read every extent");
    let pct = |b: u64| 100.0 * b as f64 / data_bytes as f64;
    println!(
        "read {:.1} MiB = {:.2} % of the {:.1} MiB on disk; the least possible is {:.1} MiB \
         ({:.2} %)",
        total as f64 / MIB,
        pct(total),
        data_bytes as f64 / MIB,
        least_total as f64 / MIB,
        pct(least_total),
    );
    Ok(())
}
