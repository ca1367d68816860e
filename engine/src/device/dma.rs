//! The real device: glommio DMA files, opened with O_DIRECT and driven by io_uring.
//!
//! Files are opened read+write (a write-only `DmaFile` breaks glommio's polling probe,
//! glommio#670). Data is copied into a buffer glommio allocates, because that buffer is
//! the one registered with io_uring. Listing the directory uses a blocking `read_dir`:
//! it only runs while a substore opens.
//!
//! glommio decides once per thread and block device whether reads may use its I/O
//! polling ring, by probing with a read of the first DMA file opened there. When that
//! file is empty the read succeeds without reaching the device, the probe wrongly says
//! "pollable", and every later read fails with EOPNOTSUPP on devices without polling.
//! [`DmaDevice::open`] therefore primes the probe with a file that holds data.

use std::cell::{OnceCell, RefCell};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{Directory, DmaFile, OpenOptions};
use nix::fcntl::OFlag;

use super::{Device, DeviceFile, assert_aligned};

/// A directory on a real file system, accessed with direct I/O.
#[derive(Clone, Debug)]
pub struct DmaDevice {
    dir: Rc<PathBuf>,
    /// Files are opened read-only, and nothing is created, removed or renamed.
    read_only: bool,
}

thread_local! {
    /// Block devices whose polling probe this thread has primed.
    static PRIMED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

const PROBE_FILE_NAME: &str = ".ringkv-dma-probe";

impl DmaDevice {
    /// The device for directory `dir`, which must exist. Must run on a glommio
    /// executor; see the module documentation for why it is async.
    pub async fn open(dir: impl AsRef<Path>) -> crate::Result<Self> {
        let failed = |op| {
            let path = dir.as_ref().display().to_string();
            move |e| crate::Error::io(op, path, 0, e)
        };
        // Absolute: glommio's `Directory::open` fails with EBADF on relative paths.
        let dir = std::fs::canonicalize(dir.as_ref()).map_err(failed("resolving"))?;
        let dev = std::fs::metadata(&dir).map_err(failed("inspecting"))?.dev();
        if !PRIMED.with(|p| p.borrow().contains(&dev)) {
            Self::prime(&dir.join(PROBE_FILE_NAME))
                .await
                .map_err(failed("probing direct I/O in"))?;
            PRIMED.with(|p| p.borrow_mut().push(dev));
        }
        Ok(Self {
            dir: Rc::new(dir),
            read_only: false,
        })
    }

    /// The device for directory `dir` read-only: its files are opened read-only and
    /// nothing in it changes (no probe file either: every file a read-only open reads
    /// holds at least a block, so glommio's own probe on the first one is right).
    pub fn open_read_only(dir: impl AsRef<Path>) -> crate::Result<Self> {
        let dir = std::fs::canonicalize(dir.as_ref()).map_err(|e| {
            let path = dir.as_ref().display().to_string();
            crate::Error::io("resolving", path, 0, e)
        })?;
        Ok(Self {
            dir: Rc::new(dir),
            read_only: true,
        })
    }

    /// Refuses a change of the directory when it was opened read-only.
    fn check_writable(&self) -> io::Result<()> {
        match self.read_only {
            true => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the directory was opened read-only",
            )),
            false => Ok(()),
        }
    }

    async fn prime(probe: &Path) -> io::Result<()> {
        std::fs::write(probe, [0u8; crate::format::BLOCK_BYTES as usize])?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(probe)
            .await;
        std::fs::remove_file(probe)?;
        Ok(file?.close().await?)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// An open DMA file.
#[derive(Debug)]
pub struct DmaDeviceFile {
    file: DmaFile,
    /// The same file opened O_DSYNC, for [`DeviceFile::write_durable`]: opened at its
    /// first use, so only files written that way (commit logs) hold a second descriptor.
    write_through: OnceCell<Box<DmaFile>>,
}

impl DmaDeviceFile {
    fn new(file: DmaFile) -> Self {
        Self {
            file,
            write_through: OnceCell::new(),
        }
    }

    async fn write_through(&self) -> io::Result<&DmaFile> {
        if self.write_through.get().is_none() {
            let path = self.file.path().map(|p| p.to_path_buf()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "a DMA file without a path")
            })?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(OFlag::O_DSYNC.bits())
                .dma_open(path)
                .await
                .map_err(os)?;
            // Another task may have opened it meanwhile: that one is kept.
            let _ = self.write_through.set(Box::new(file));
        }
        Ok(self.write_through.get().expect("set above"))
    }
}

/// Writes `data` at `offset` through `file` (a DMA buffer of glommio's, which is the
/// one registered with io_uring), refusing a short write.
async fn write_all(file: &DmaFile, offset: u64, data: &[u8]) -> io::Result<()> {
    assert_aligned(offset, data.len());
    let mut buf = file.alloc_dma_buffer(data.len());
    buf.as_bytes_mut().copy_from_slice(data);
    let written = file.write_at(buf, offset).await.map_err(os)?;
    if written != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short direct write: {written} of {} bytes", data.len()),
        ));
    }
    Ok(())
}

/// glommio's error as the `io::Error` of the system call underneath, so that its raw OS
/// error (EMFILE, ENOSPC…) survives: glommio's own conversion keeps only the kind and a
/// message. The operation and path are added by the engine's `Error::Io`.
fn os<T>(e: glommio::GlommioError<T>) -> io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => other.into(),
    }
}

impl Device for DmaDevice {
    type File = DmaDeviceFile;

    async fn open(&self, name: &str) -> io::Result<DmaDeviceFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(!self.read_only)
            .dma_open(self.dir.join(name))
            .await
            .map_err(os)?;
        Ok(DmaDeviceFile::new(file))
    }

    async fn create(&self, name: &str) -> io::Result<DmaDeviceFile> {
        self.check_writable()?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .dma_open(self.dir.join(name))
            .await
            .map_err(os)?;
        Ok(DmaDeviceFile::new(file))
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        self.check_writable()?;
        glommio::io::remove(self.dir.join(name)).await.map_err(os)
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.check_writable()?;
        glommio::io::rename(self.dir.join(from), self.dir.join(to))
            .await
            .map_err(os)
    }

    async fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&*self.dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    async fn sync_dir(&self) -> io::Result<()> {
        self.check_writable()?;
        let dir = Directory::open(&*self.dir).await.map_err(os)?;
        dir.sync().await.map_err(os)?;
        dir.close().await.map_err(os)
    }

    fn path_of(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl DeviceFile for DmaDeviceFile {
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        assert_aligned(offset, len);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let at = offset + out.len() as u64;
            let got = self.file.read_at_aligned(at, len - out.len()).await;
            let got = got.map_err(os)?;
            if got.is_empty() {
                break;
            }
            out.extend_from_slice(&got);
            if out.len() as u64 % crate::format::BLOCK_BYTES != 0 {
                break; // a short read that is not block-sized ends at end of file
            }
        }
        Ok(out)
    }

    /// One read into glommio's registered buffer, handed to `f` in place; only a read
    /// the kernel splits (rare) is gathered into a `Vec` first.
    async fn read_with<T>(
        &self,
        offset: u64,
        len: usize,
        f: impl FnOnce(&[u8]) -> T,
    ) -> io::Result<T> {
        assert_aligned(offset, len);
        let got = self.file.read_at_aligned(offset, len).await.map_err(os)?;
        let whole = got.len() == len || got.len() as u64 % crate::format::BLOCK_BYTES != 0;
        if whole {
            return Ok(f(&got));
        }
        let mut rest = self
            .read_at(offset + got.len() as u64, len - got.len())
            .await?;
        rest.splice(0..0, got.iter().copied());
        Ok(f(&rest))
    }

    async fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_all(&self.file, offset, data).await
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(os)
    }

    /// An O_DSYNC direct write: where the blocks are allocated and the length is
    /// durable, the kernel sends it as one write with FUA (or a write and a cache
    /// flush) and no file-system journal commit, without io_uring handing an fdatasync
    /// to a worker thread.
    async fn write_durable(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_all(self.write_through().await?, offset, data).await
    }

    async fn file_size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(os)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(os)
    }
}
