//! The I/O seam. A substore lives in one directory of a [`Device`] and does all its I/O
//! through it, so the same code runs on glommio DMA files ([`DmaDevice`]: O_DIRECT over
//! io_uring, the real one), in memory ([`MemDevice`]: fast tests), and on a simulated
//! disk that loses unsynced writes, tears them at sector boundaries and fails chosen
//! operations ([`SimDevice`]: crash and fault tests).
//!
//! Contract, checked by every implementation: write offsets and lengths are multiples of
//! [`BLOCK_BYTES`](crate::format::BLOCK_BYTES), as O_DIRECT demands; reads too, and a read
//! past the end of a file returns fewer bytes. Nothing written is durable until `sync`;
//! no name change (create, remove, rename) is durable until `sync_dir`.
//!
//! The futures are not `Send`: a device belongs to one core.

mod dma;
mod mem;
mod sim;

pub use dma::DmaDevice;
pub use mem::MemDevice;
pub use sim::{CrashMode, EntryKind, Fault, FaultOn, SimDevice, SimDisk, SimFile, SimLock};

use std::io;

use crate::format::BLOCK_BYTES;

/// One directory of files.
#[allow(
    async_fn_in_trait,
    reason = "thread-per-core: futures stay on their core"
)]
pub trait Device {
    type File: DeviceFile;
    /// Opens an existing file for reading and writing.
    async fn open(&self, name: &str) -> io::Result<Self::File>;
    /// Creates a new, empty file; fails if the name exists.
    async fn create(&self, name: &str) -> io::Result<Self::File>;
    async fn remove(&self, name: &str) -> io::Result<()>;
    async fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Names of the files in the directory, in no particular order.
    async fn list(&self) -> io::Result<Vec<String>>;
    /// Makes every earlier create, remove and rename durable.
    async fn sync_dir(&self) -> io::Result<()>;
    /// A path for messages: the directory joined with `name`.
    fn path_of(&self, name: &str) -> String;
}

/// One open file.
#[allow(
    async_fn_in_trait,
    reason = "thread-per-core: futures stay on their core"
)]
pub trait DeviceFile {
    /// Reads up to `len` bytes at `offset`; fewer only at the end of the file.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Reads as [`read_at`](Self::read_at) does and hands `f` the bytes where they
    /// landed, so that a caller keeping only part of them (a value out of its blocks)
    /// copies that part once instead of copying the blocks first.
    async fn read_with<T>(
        &self,
        offset: u64,
        len: usize,
        f: impl FnOnce(&[u8]) -> T,
    ) -> io::Result<T> {
        Ok(f(&self.read_at(offset, len).await?))
    }
    /// Writes all of `data` at `offset`.
    async fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every earlier write (and the file length) durable: fdatasync.
    async fn sync(&self) -> io::Result<()>;
    /// Writes all of `data` at `offset` and returns once that write (and whatever
    /// reading it back needs, such as a new file length) is durable, as an O_DSYNC
    /// write does: one request where a write and an fdatasync take two. Earlier
    /// unsynced writes of the file may stay unsynced.
    async fn write_durable(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_at(offset, data).await?;
        self.sync().await
    }
    async fn file_size(&self) -> io::Result<u64>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
}

/// Asserts the O_DIRECT alignment contract, so that the in-memory devices catch what
/// the kernel would refuse with EINVAL.
pub(crate) fn assert_aligned(offset: u64, len: usize) {
    assert!(
        offset % BLOCK_BYTES == 0 && len as u64 % BLOCK_BYTES == 0,
        "unaligned direct I/O: offset {offset}, length {len}"
    );
}

/// Copies `file[offset..offset+len]` (clipped at the end) out of an in-memory file.
pub(crate) fn read_clipped(file: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(file.len());
    let end = start.saturating_add(len).min(file.len());
    file[start..end].to_vec()
}

/// Writes `data` into an in-memory file at `offset`, growing it with zeros.
pub(crate) fn write_extending(file: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).expect("offset fits in memory");
    if file.len() < start + data.len() {
        file.resize(start + data.len(), 0);
    }
    file[start..start + data.len()].copy_from_slice(data);
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file named {name}"))
}

fn already_exists(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} exists"))
}
