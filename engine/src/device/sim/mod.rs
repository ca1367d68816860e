//! A simulated disk for crash and fault tests, modelled on what a real disk and file
//! system may do and forgiving nothing the device assumption (FORMAT.md) does not
//! promise. [`SimDisk`] is the whole disk, a tree of directories shared by every thread
//! that holds a clone; [`SimDevice`] is one directory of it, the engine's [`Device`].
//!
//! - every write lands in a pending list; `sync` makes a file's pending writes durable;
//!   a durable (O_DSYNC) write is durable at once, and drops the bytes it covers from
//!   older pending writes (a disk never persists an older write over a newer one);
//! - a failed `sync` loses the file's pending writes for good (as Linux does after a
//!   failed fsync: the pages are marked clean, so a retried fsync succeeds without
//!   writing them); reads still see them until a crash, as from the page cache;
//! - creates, removes and renames in a directory are durable only after that
//!   directory's sync; a crash keeps a prefix of each directory's changes since (a
//!   rename is one change), chosen by the seed; whatever no durable name reaches is gone;
//! - a power cut ([`SimDisk::crash`], or [`SimDisk::power_cut_at`] armed to fall just
//!   before a chosen change) throws away what was not durable, keeping a chosen part of
//!   it: nothing; everything but the last write of each file, which keeps any subset of
//!   its sectors; or any subset of the sectors of every unsynced write (a truncate kept
//!   or not), since a disk may persist writes between flushes in any order;
//! - [`SimDisk::inject`] makes the n-th next open (or create), read, write or sync fail
//!   with EIO, ENOSPC or EMFILE (the failed operation changes nothing).
//!
//! Every handle (disk, directory, file) belongs to the boot it was made in: after a
//! power cut each operation through it fails, as a process does not outlive one. Only
//! [`SimDisk::crash`] (which moves its handle on) and [`SimDisk::reboot`] give handles
//! to the new boot. Renames stay within one directory (all ringkv needs).

mod device;
mod state;

pub use device::{SimDevice, SimFile};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use state::{DirNode, FileNode, Node, Pending, State};

/// What survives a simulated crash of the unsynced state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write and name change is lost.
    DropUnsynced,
    /// Every unsynced write and name change survives but the last write of each file,
    /// which keeps a subset of its sectors chosen with `seed`.
    TearLast { seed: u64 },
    /// Each sector of each unsynced write survives or not, each unsynced truncate
    /// survives or not, and a prefix of each directory's unsynced name changes
    /// survives, all chosen with `seed`.
    Random { seed: u64 },
}

/// An error to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// EIO.
    Io,
    /// ENOSPC.
    NoSpace,
    /// EMFILE: the process is out of file descriptors.
    TooManyFiles,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::Io => io::Error::from_raw_os_error(5),
            Fault::NoSpace => io::Error::from_raw_os_error(28),
            Fault::TooManyFiles => io::Error::from_raw_os_error(24),
        }
    }
}

/// Which operation a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOn {
    /// A `create` or `open` of a file, or a directory's creation.
    Open,
    Read,
    /// A write, durable or not.
    Write,
    /// A file's `sync` or a directory's, or the flush of a durable write.
    Sync,
}

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
}

/// A simulated disk. Clones share it and belong to the same boot.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    boot: u64,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk").field("boot", &self.boot).finish()
    }
}

impl PartialEq for SimDisk {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.state, &other.state) && self.boot == other.boot
    }
}

impl Default for SimDisk {
    fn default() -> Self {
        Self::new()
    }
}

/// A lock on a directory of a [`SimDisk`] (what `flock` is on a real one): held until
/// dropped or until a power cut.
#[derive(Debug)]
pub struct SimLock {
    disk: SimDisk,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let boot = self.disk.boot;
        self.disk
            .state()
            .locks
            .retain(|(path, b)| !(path == &self.path && *b == boot));
    }
}

impl SimDisk {
    /// An empty disk: a root directory and nothing else.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            boot: 0,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a state as consistent as any other.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state if this handle's boot is the current one.
    fn alive<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state();
        state.alive(self.boot)?;
        f(&mut state)
    }

    /// An independent disk holding what this one holds now, unsynced writes and name
    /// changes included (a later power cut of the copy decides their fate), with no
    /// armed cut or fault and no lock: the same starting state for many runs.
    pub fn copy(&self) -> SimDisk {
        let mut state = self.state().clone();
        (state.cut, state.trigger) = (None, None);
        state.faults.clear();
        state.locks.clear();
        Self {
            state: Arc::new(Mutex::new(state)),
            boot: self.boot,
        }
    }

    /// Cuts the power now; this handle moves on to the new boot.
    pub fn crash(&mut self, mode: CrashMode) {
        let boot = {
            let mut state = self.state();
            state.crash(mode);
            state.boot
        };
        self.boot = boot;
    }

    /// Arms a power cut to fall just before the `nth` (1-based) change from now: that
    /// change and everything after it fail, and the disk keeps what `mode` says.
    pub fn power_cut_at(&self, nth: u64, mode: CrashMode) {
        let mut state = self.state();
        state.cut = Some((state.changes + nth, mode));
    }

    /// Arms a power cut to fall on the `nth` change counted from the first creation,
    /// removal or rename of a name containing `text` (a marker, a `.retired` parent):
    /// at `nth` 1 that change itself fails, so a cut can fall just before a commit
    /// point as well as after it. Replaces an earlier trigger.
    pub fn power_cut_after_name(&self, text: &str, nth: u64, mode: CrashMode) {
        self.state().trigger = Some((text.to_owned(), nth, mode));
    }

    /// Whether a power cut fell since this handle's boot.
    pub fn powered_off(&self) -> bool {
        self.state().boot != self.boot
    }

    /// A handle to the current boot: the disk as the next process finds it.
    pub fn reboot(&self) -> SimDisk {
        Self {
            state: self.state.clone(),
            boot: self.state().boot,
        }
    }

    /// Changes so far (writes, truncates, syncs, creates, removes, renames): the points
    /// a power cut can fall on.
    pub fn changes(&self) -> u64 {
        self.state().changes
    }

    /// Arms a fault: the `nth` (1-based) operation of kind `on` from now fails.
    pub fn inject(&self, on: FaultOn, nth: u64, fault: Fault) {
        let mut state = self.state();
        let base = state.count_of(on);
        state.faults.push((on, base + nth, fault));
    }

    /// Operations of kind `on` issued so far, on every file (reads, to show a path
    /// that must not touch the device does not).
    pub fn count(&self, on: FaultOn) -> u64 {
        self.state().count_of(on)
    }

    /// Writes and syncs issued so far.
    pub fn op_counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.writes, state.syncs)
    }

    /// The directory at `path`, as the engine's device.
    pub fn device(&self, path: impl AsRef<Path>) -> io::Result<SimDevice> {
        let path = path.as_ref();
        let dir = self.alive(|s| {
            let ino = s.resolve(path)?;
            s.dir(ino).map(|_| ino)
        })?;
        Ok(SimDevice::new_in(self.clone(), dir, path.to_path_buf()))
    }

    /// What is at `path`, if anything.
    pub fn entry_kind(&self, path: impl AsRef<Path>) -> io::Result<Option<EntryKind>> {
        self.alive(|s| {
            Ok(s.lookup(path.as_ref())?.map(|ino| match s.nodes[&ino] {
                Node::File(_) => EntryKind::File,
                Node::Dir(_) => EntryKind::Dir,
            }))
        })
    }

    /// The entries of the directory at `path`, by name.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> io::Result<Vec<(String, EntryKind)>> {
        self.alive(|s| {
            let ino = s.resolve(path.as_ref())?;
            let entries = s.dir(ino)?.entries.clone();
            Ok(entries
                .into_iter()
                .map(|(name, ino)| match s.nodes[&ino] {
                    Node::File(_) => (name, EntryKind::File),
                    Node::Dir(_) => (name, EntryKind::Dir),
                })
                .collect())
        })
    }

    /// The length of the file at `path`.
    pub fn file_len(&self, path: impl AsRef<Path>) -> io::Result<u64> {
        self.alive(|s| {
            let ino = s.resolve(path.as_ref())?;
            Ok(s.file(ino)?.current.len() as u64)
        })
    }

    /// Replaces the contents of the file at `path` with `bytes`, as a small file written
    /// through the page cache is (`std::fs::write` on a file that exists): a truncate
    /// and a write, pending until the file is synced.
    pub fn write_file(&self, path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
        self.alive(|s| {
            let ino = s.resolve(path.as_ref())?;
            s.change(self.boot)?;
            if let Some(fault) = s.take_fault(FaultOn::Write) {
                return Err(fault.error());
            }
            let file = s.file(ino)?;
            let data = bytes.to_vec();
            for op in [
                Pending::Truncate { len: 0 },
                Pending::Write { offset: 0, data },
            ] {
                op.apply(&mut file.current);
                file.pending.push(op);
            }
            Ok(())
        })
    }

    /// The whole of the file at `path`, as a read sees it now.
    pub fn read_file(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        self.alive(|s| {
            let ino = s.resolve(path.as_ref())?;
            if let Some(fault) = s.take_fault(FaultOn::Read) {
                return Err(fault.error());
            }
            Ok(s.file(ino)?.current.clone())
        })
    }

    /// Creates a directory (its parent must exist; the name must not).
    pub fn create_dir(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.create(path.as_ref(), Node::Dir(DirNode::default()))
    }

    /// Creates a directory and every missing one above it.
    pub fn create_dir_all(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        match self.entry_kind(path)? {
            Some(EntryKind::Dir) => return Ok(()),
            Some(EntryKind::File) => return Err(io::ErrorKind::NotADirectory.into()),
            None => {}
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.create_dir_all(parent)?;
        }
        self.create_dir(path)
    }

    /// Creates an empty file.
    pub fn create_file(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.create(path.as_ref(), Node::File(FileNode::default()))
    }

    fn create(&self, path: &Path, node: Node) -> io::Result<()> {
        self.alive(|s| {
            let (parent, name) = s.parent_of(path)?;
            s.create_entry(self.boot, parent, name, node).map(drop)
        })
    }

    /// Makes the file at `path` durable (fsync).
    pub fn sync_file(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let ino = self.alive(|s| s.resolve(path.as_ref()))?;
        device::sync_file(self, ino)
    }

    /// Makes every earlier create, remove and rename in the directory at `path` durable.
    pub fn sync_dir(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let ino = self.alive(|s| s.resolve(path.as_ref()))?;
        device::sync_dir(self, ino)
    }

    /// Removes a file, or a directory that is empty.
    pub fn remove(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.alive(|s| {
            let (parent, name) = s.parent_of(path.as_ref())?;
            s.remove_entry(self.boot, parent, name)
        })
    }

    /// Removes `path` and everything under it, one name at a time (as
    /// `std::fs::remove_dir_all` does: a power cut can fall in the middle).
    pub fn remove_all(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        if self.entry_kind(path)? == Some(EntryKind::Dir) {
            for (name, _) in self.read_dir(path)? {
                self.remove_all(path.join(name))?;
            }
        }
        self.remove(path)
    }

    /// Gives the file at `from` the name `to` too (a hard link: one file, two names;
    /// `to` must not exist). Durable once `to`'s directory is synced.
    pub fn hard_link(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        self.alive(|s| {
            let ino = s.resolve(from.as_ref())?;
            let (parent, name) = s.parent_of(to.as_ref())?;
            s.link_entry(self.boot, parent, name, ino)
        })
    }

    /// Renames `from` to `to` in the same directory, replacing a file at `to`.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        if from.parent() != to.parent() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the simulated disk renames only within one directory",
            ));
        }
        self.alive(|s| {
            let (parent, old) = s.parent_of(from)?;
            let (_, new) = s.parent_of(to)?;
            s.rename_entry(self.boot, parent, old, new)
        })
    }

    /// Takes the lock of the directory at `path`; `None` if this boot holds it already.
    pub fn lock_dir(&self, path: impl AsRef<Path>) -> io::Result<Option<SimLock>> {
        let path = path.as_ref().to_path_buf();
        self.alive(|s| {
            let boot = s.boot;
            if s.locks.iter().any(|(p, b)| p == &path && *b == boot) {
                return Ok(None);
            }
            s.locks.push((path.clone(), boot));
            Ok(Some(SimLock {
                disk: self.clone(),
                path,
            }))
        })
    }
}

#[cfg(test)]
mod tests;
