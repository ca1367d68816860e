//! Where a database's files live: the real file system (glommio DMA files for the
//! substores, `std::fs` for the directories and markers), or a [`SimDisk`] that tests
//! cut the power of. Every file-system operation of the layout, the cores, the data
//! directories' lists and markers, and checkpoints goes through [`Storage`], so that the
//! simulated disk sees exactly what the real one would.
//!
//! The simulated disk has no symbolic links and renames only within one directory,
//! which is all the layout does; it has hard links (a checkpoint's).

use std::fs::File;
use std::io;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use ringkv_engine::device::{Device, DeviceFile};
use ringkv_engine::format::{BLOCK_BYTES, align_up};
use ringkv_engine::{DmaDevice, EntryKind, SimDevice, SimDisk};

use crate::error::{Error, Result};

/// Bytes a copy writes between syncs ([`Storage::copy_prefix`]).
const COPY_CHUNK_BYTES: u64 = 8 << 20;

/// The file system a database runs on.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Storage {
    #[default]
    Real,
    Sim(SimDisk),
}

/// What is at a path, without following a last symbolic link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    fn of(kind: std::fs::FileType) -> Kind {
        match () {
            _ if kind.is_symlink() => Kind::Symlink,
            _ if kind.is_dir() => Kind::Dir,
            _ if kind.is_file() => Kind::File,
            _ => Kind::Other,
        }
    }

    fn of_sim(kind: EntryKind) -> Kind {
        match kind {
            EntryKind::File => Kind::File,
            EntryKind::Dir => Kind::Dir,
        }
    }
}

/// The exclusive lock on a database directory; released when dropped.
#[derive(Debug)]
pub(crate) enum DirLock {
    Real(#[allow(dead_code, reason = "held for its Drop")] Flock<File>),
    Sim(#[allow(dead_code, reason = "held for its Drop")] ringkv_engine::device::SimLock),
}

impl Storage {
    /// What is at `path`, without following a last symbolic link; `None` only when
    /// nothing is there (ENOENT).
    pub(crate) fn probe(&self, path: &Path) -> io::Result<Option<Kind>> {
        match self {
            Storage::Real => match std::fs::symlink_metadata(path) {
                Ok(meta) => Ok(Some(Kind::of(meta.file_type()))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Storage::Sim(disk) => Ok(disk.entry_kind(path)?.map(Kind::of_sim)),
        }
    }

    /// Whether `path`, with symbolic links followed, is a directory.
    pub(crate) fn is_dir_followed(&self, path: &Path) -> io::Result<bool> {
        match self {
            Storage::Real => Ok(std::fs::metadata(path)?.is_dir()),
            Storage::Sim(disk) => Ok(disk.entry_kind(path)? == Some(EntryKind::Dir)),
        }
    }

    /// The entries of a directory: names (lossily decoded) and kinds.
    pub(crate) fn read_dir(&self, path: &Path) -> io::Result<Vec<(String, Kind)>> {
        match self {
            Storage::Real => std::fs::read_dir(path)?
                .map(|entry| {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    Ok((name, Kind::of(entry.file_type()?)))
                })
                .collect(),
            Storage::Sim(disk) => Ok(disk
                .read_dir(path)?
                .into_iter()
                .map(|(name, kind)| (name, Kind::of_sim(kind)))
                .collect()),
        }
    }

    /// Bytes the files directly in `dir` hold.
    pub(crate) fn dir_size(&self, dir: &Path) -> io::Result<u64> {
        let mut total = 0;
        for (name, _) in self.read_dir(dir)? {
            let path = dir.join(name);
            total += match self {
                // Not followed: a link's own length, never an error from its target.
                Storage::Real => std::fs::symlink_metadata(&path)?.len(),
                Storage::Sim(disk) => disk.file_len(&path).unwrap_or(0),
            };
        }
        Ok(total)
    }

    pub(crate) fn create_dir(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Real => std::fs::create_dir(path),
            Storage::Sim(disk) => disk.create_dir(path),
        }
    }

    /// Removes an empty directory (fails with ENOTEMPTY rather than remove anything).
    pub(crate) fn remove_dir(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Real => std::fs::remove_dir(path),
            Storage::Sim(disk) => match disk.entry_kind(path)? {
                Some(EntryKind::Dir) => disk.remove(path),
                _ => Err(io::ErrorKind::NotADirectory.into()),
            },
        }
    }

    pub(crate) fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Real => std::fs::remove_dir_all(path),
            Storage::Sim(disk) => disk.remove_all(path),
        }
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Storage::Real => std::fs::rename(from, to),
            Storage::Sim(disk) => disk.rename(from, to),
        }
    }

    /// Makes the name changes in directory `path` durable.
    pub(crate) fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Real => File::open(path).and_then(|d| d.sync_all()),
            Storage::Sim(disk) => disk.sync_dir(path),
        }
    }

    /// Creates an empty file and makes it durable (its directory is not synced).
    pub(crate) fn create_synced_file(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Real => File::create(path).and_then(|f| f.sync_all()),
            Storage::Sim(disk) => disk.create_file(path).and_then(|()| disk.sync_file(path)),
        }
    }

    /// Writes `bytes` as the whole of file `path` (created if missing) and makes them
    /// durable (its directory is not synced): for small files such as markers.
    pub(crate) fn write_synced_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        match self {
            Storage::Real => {
                use std::io::Write;
                let mut file = File::create(path)?;
                file.write_all(bytes)?;
                file.sync_all()
            }
            Storage::Sim(disk) => {
                if disk.entry_kind(path)?.is_none() {
                    disk.create_file(path)?;
                }
                disk.write_file(path, bytes)?;
                disk.sync_file(path)
            }
        }
    }

    /// Makes `to` a second name of file `from` (a hard link).
    pub(crate) fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Storage::Real => std::fs::hard_link(from, to),
            Storage::Sim(disk) => disk.hard_link(from, to),
        }
    }

    /// The length of file `path`.
    pub(crate) fn file_len(&self, path: &Path) -> io::Result<u64> {
        match self {
            Storage::Real => Ok(std::fs::metadata(path)?.len()),
            Storage::Sim(disk) => disk.file_len(path),
        }
    }

    /// Copies the first `len` bytes of `from` into a new file `to`, zero-padded to a
    /// whole block, and syncs it (its directory is not synced). On a real file system
    /// [`COPY_CHUNK_BYTES`] at a time, each synced before the next, so that it never
    /// holds much of the copy unwritten (one sync of a whole extent's dirty pages at the
    /// end stalled the writers' own syncs behind it).
    pub(crate) fn copy_prefix(&self, from: &Path, to: &Path, len: u64) -> io::Result<()> {
        let short = |copied: u64| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended after {copied} of the {len} bytes listed"),
            )
        };
        match self {
            Storage::Real => {
                use std::io::Read;
                let mut source = File::open(from)?.take(len);
                let mut target = File::create_new(to)?;
                let mut copied = 0;
                loop {
                    let chunk = io::copy(&mut (&mut source).take(COPY_CHUNK_BYTES), &mut target)?;
                    if chunk == 0 {
                        break;
                    }
                    copied += chunk;
                    target.sync_data()?;
                }
                if copied != len {
                    return Err(short(copied));
                }
                target.set_len(align_up(len))?;
                target.sync_all()
            }
            Storage::Sim(disk) => {
                let mut bytes = disk.read_file(from)?;
                if (bytes.len() as u64) < len {
                    return Err(short(bytes.len() as u64));
                }
                bytes.resize(align_up(len) as usize, 0);
                disk.create_file(to)?;
                disk.write_file(to, &bytes)?;
                disk.sync_file(to)
            }
        }
    }

    /// The whole of file `path`, through the page cache: for small files.
    pub(crate) fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self {
            Storage::Real => std::fs::read(path),
            Storage::Sim(disk) => disk.read_file(path),
        }
    }

    /// `path` made absolute with every symbolic link resolved; it must exist (the
    /// simulated disk has no links: its path made absolute).
    pub(crate) fn canonicalize(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        match self {
            Storage::Real => std::fs::canonicalize(path),
            Storage::Sim(disk) => match disk.entry_kind(path)? {
                Some(_) => std::path::absolute(path),
                None => Err(io::ErrorKind::NotFound.into()),
            },
        }
    }

    /// Reads up to `len` bytes of file `path` at `offset` (fewer only at its end),
    /// through the page cache: for reading files no core has open yet.
    pub(crate) fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        match self {
            Storage::Real => {
                use std::os::unix::fs::FileExt;
                let file = File::open(path)?;
                let mut buf = vec![0u8; len];
                let mut got = 0;
                while got < len {
                    match file.read_at(&mut buf[got..], offset + got as u64)? {
                        0 => break,
                        n => got += n,
                    }
                }
                buf.truncate(got);
                Ok(buf)
            }
            Storage::Sim(disk) => {
                let (dir, name) = split_path(path)?;
                let device = disk.device(dir)?;
                futures_lite::future::block_on(async {
                    let file = device.open(name).await?;
                    let start = offset - offset % BLOCK_BYTES;
                    let mut bytes = file
                        .read_at(start, align_up(offset + len as u64 - start) as usize)
                        .await?;
                    bytes.drain(..((offset - start) as usize).min(bytes.len()));
                    bytes.truncate(len);
                    Ok(bytes)
                })
            }
        }
    }

    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Real => std::fs::remove_file(path),
            Storage::Sim(disk) => disk.remove(path),
        }
    }

    /// Bytes free for this process on the file system of `path`; unknown (`u64::MAX`)
    /// when it cannot be asked, and on the simulated disk.
    pub(crate) fn free_bytes(&self, path: &Path) -> u64 {
        match self {
            Storage::Real => nix::sys::statvfs::statvfs(path)
                .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
                .unwrap_or(u64::MAX),
            Storage::Sim(_) => u64::MAX,
        }
    }

    /// Locks database directory `dir` through its file `lock` (created if missing).
    pub(crate) fn lock(&self, dir: &Path, lock: &Path) -> Result<DirLock> {
        let locked = || Error::Locked {
            path: dir.to_path_buf(),
            lock: lock.to_path_buf(),
        };
        let io = |op| {
            move |source| Error::Io {
                op,
                path: lock.to_path_buf(),
                source,
            }
        };
        match self {
            Storage::Real => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(lock)
                    .map_err(io("opening the lock file"))?;
                match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    Ok(flock) => Ok(DirLock::Real(flock)),
                    Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(locked()),
                    Err((_, errno)) => Err(io("locking")(errno.into())),
                }
            }
            Storage::Sim(disk) => match disk.lock_dir(dir).map_err(io("locking"))? {
                Some(held) => Ok(DirLock::Sim(held)),
                None => Err(locked()),
            },
        }
    }

    /// Locks database directory `dir` through its file `lock` for a read-only open:
    /// shared with other read-only opens, refused while a process has it open
    /// writable (and keeping one from opening it). The file must exist: a directory
    /// without one was never opened by ringkv (a checkpoint has one).
    pub(crate) fn lock_shared(&self, dir: &Path, lock: &Path) -> Result<DirLock> {
        let Storage::Real = self else {
            return Err(Error::Unsupported {
                what: "a read-only open of a simulated disk".into(),
                advice: "open it writable".into(),
            });
        };
        let file = match File::open(lock) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let what = "it has no LOCK file (ringkv never opened it)";
                return Err(Error::needs_writable_open(dir, what));
            }
            Err(source) => {
                let op = "opening the lock file";
                let path = lock.to_path_buf();
                return Err(Error::Io { op, path, source });
            }
        };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(flock) => Ok(DirLock::Real(flock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::Locked {
                path: dir.to_path_buf(),
                lock: lock.to_path_buf(),
            }),
            Err((_, errno)) => Err(Error::Io {
                op: "locking",
                path: lock.to_path_buf(),
                source: errno.into(),
            }),
        }
    }

    /// The device of a leaf directory. Must run on a glommio executor.
    pub(crate) async fn device(&self, dir: &Path) -> Result<LeafDevice> {
        match self {
            Storage::Real => Ok(LeafDevice::Real(DmaDevice::open(dir).await?)),
            Storage::Sim(disk) => sim_device(disk, dir),
        }
    }

    /// [`Storage::device`] that changes nothing in `dir` (a read-only open's; a
    /// simulated disk is never opened read-only, see [`Storage::lock_shared`]).
    pub(crate) fn device_read_only(&self, dir: &Path) -> Result<LeafDevice> {
        match self {
            Storage::Real => Ok(LeafDevice::Real(DmaDevice::open_read_only(dir)?)),
            Storage::Sim(disk) => sim_device(disk, dir),
        }
    }
}

fn sim_device(disk: &SimDisk, dir: &Path) -> Result<LeafDevice> {
    disk.device(dir)
        .map(LeafDevice::Sim)
        .map_err(|source| Error::Io {
            op: "opening the simulated directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// A file's directory and name.
fn split_path(path: &Path) -> io::Result<(&Path, &str)> {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        )),
    }
}

/// A leaf's directory on either file system.
#[derive(Clone, Debug)]
pub(crate) enum LeafDevice {
    Real(DmaDevice),
    Sim(SimDevice),
}

/// A file of a [`LeafDevice`].
#[derive(Debug)]
pub(crate) enum LeafFile {
    Real(<DmaDevice as Device>::File),
    Sim(<SimDevice as Device>::File),
}

/// Forwards a method call to whichever device or file is inside.
macro_rules! either {
    ($value:expr, $inner:ident => $call:expr) => {
        match $value {
            Self::Real($inner) => $call,
            Self::Sim($inner) => $call,
        }
    };
}

impl Device for LeafDevice {
    type File = LeafFile;

    async fn open(&self, name: &str) -> io::Result<LeafFile> {
        match self {
            Self::Real(d) => d.open(name).await.map(LeafFile::Real),
            Self::Sim(d) => d.open(name).await.map(LeafFile::Sim),
        }
    }

    async fn create(&self, name: &str) -> io::Result<LeafFile> {
        match self {
            Self::Real(d) => d.create(name).await.map(LeafFile::Real),
            Self::Sim(d) => d.create(name).await.map(LeafFile::Sim),
        }
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        either!(self, d => d.remove(name).await)
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        either!(self, d => d.rename(from, to).await)
    }

    async fn list(&self) -> io::Result<Vec<String>> {
        either!(self, d => d.list().await)
    }

    async fn sync_dir(&self) -> io::Result<()> {
        either!(self, d => d.sync_dir().await)
    }

    fn path_of(&self, name: &str) -> String {
        either!(self, d => d.path_of(name))
    }
}

impl DeviceFile for LeafFile {
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        either!(self, f => f.read_at(offset, len).await)
    }

    async fn read_with<T>(
        &self,
        offset: u64,
        len: usize,
        f: impl FnOnce(&[u8]) -> T,
    ) -> io::Result<T> {
        either!(self, file => file.read_with(offset, len, f).await)
    }

    async fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        either!(self, f => f.write_at(offset, data).await)
    }

    async fn sync(&self) -> io::Result<()> {
        either!(self, f => f.sync().await)
    }

    async fn write_durable(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        either!(self, f => f.write_durable(offset, data).await)
    }

    async fn file_size(&self) -> io::Result<u64> {
        either!(self, f => f.file_size().await)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        either!(self, f => f.truncate(len).await)
    }
}
