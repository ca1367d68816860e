//! One directory of a [`SimDisk`] as the engine's [`Device`], and its files.
//!
//! Every operation first yields once, as a real one waits for the kernel: otherwise a
//! task doing simulated I/O would never let another task in between its steps, and the
//! interleavings a real disk allows (a request served between two steps of a split)
//! would never be tested.

use std::io;
use std::path::PathBuf;

use super::state::{FileNode, Node, Pending, State};
use super::{CrashMode, Fault, FaultOn, SimDisk};
use crate::device::{Device, DeviceFile, assert_aligned, read_clipped};

/// A directory of a simulated disk. Clones share it.
#[derive(Clone, Debug)]
pub struct SimDevice {
    disk: SimDisk,
    dir: u64,
    path: PathBuf,
}

/// A file of a [`SimDevice`].
#[derive(Debug)]
pub struct SimFile {
    disk: SimDisk,
    ino: u64,
}

impl Default for SimDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl SimDevice {
    /// The root directory of a new, empty disk.
    pub fn new() -> Self {
        Self::new_in(SimDisk::new(), super::state::ROOT, PathBuf::new())
    }

    pub(super) fn new_in(disk: SimDisk, dir: u64, path: PathBuf) -> Self {
        Self { disk, dir, path }
    }

    /// The disk this directory is on.
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }

    /// Arms a fault: the `nth` (1-based) operation of kind `on` from now fails.
    pub fn inject(&self, on: FaultOn, nth: u64, fault: Fault) {
        self.disk.inject(on, nth, fault);
    }

    /// Writes and syncs issued so far.
    pub fn op_counts(&self) -> (u64, u64) {
        self.disk.op_counts()
    }

    /// Cuts the power now (see [`SimDisk::crash`]); this handle moves on to the new
    /// boot, and names the same directory if it survived.
    pub fn crash(&mut self, mode: CrashMode) {
        self.disk.crash(mode);
    }

    /// Direct access to a file's current bytes, for tests that corrupt them. The change
    /// is made durable at once.
    pub fn corrupt(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut state = self.disk.state();
        let file = self.file_named(&mut state, name).expect("the file exists");
        assert!(
            file.pending.is_empty(),
            "corrupt a file only when it is synced"
        );
        edit(&mut file.current);
        file.durable = file.current.clone();
    }

    /// A file's current length, if it exists.
    pub fn file_len(&self, name: &str) -> Option<u64> {
        let mut state = self.disk.state();
        let file = self.file_named(&mut state, name).ok()?;
        Some(file.current.len() as u64)
    }

    fn file_named<'s>(&self, state: &'s mut State, name: &str) -> io::Result<&'s mut FileNode> {
        let ino = state.entry(self.dir, name)?;
        state.file(ino)
    }

    fn handle(&self, ino: u64) -> SimFile {
        SimFile {
            disk: self.disk.clone(),
            ino,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        self.disk.alive(f)
    }
}

/// Lets other tasks run, as waiting for the kernel would: on a glommio executor the
/// whole task queue yields (a background task's I/O lets requests in); elsewhere (a
/// plain `block_on`) the task yields.
async fn wait_for_io() {
    glommio::executor().yield_task_queue_now().await;
}

/// fdatasync of inode `ino`: its pending writes become durable, or, when a fault hits,
/// are lost for good (reads see them until a crash).
pub(super) fn sync_file(disk: &SimDisk, ino: u64) -> io::Result<()> {
    disk.alive(|s| {
        s.file(ino)?;
        s.change(disk.boot)?;
        let fault = s.take_fault(FaultOn::Sync);
        let file = s.file(ino)?;
        let pending = std::mem::take(&mut file.pending);
        if let Some(fault) = fault {
            return Err(fault.error());
        }
        for op in pending {
            op.apply(&mut file.durable);
        }
        Ok(())
    })
}

/// fsync of directory `ino`: its name changes become durable.
pub(super) fn sync_dir(disk: &SimDisk, ino: u64) -> io::Result<()> {
    disk.alive(|s| {
        s.dir(ino)?;
        s.change(disk.boot)?;
        if let Some(fault) = s.take_fault(FaultOn::Sync) {
            return Err(fault.error());
        }
        s.dir(ino)?.sync();
        Ok(())
    })
}

impl Device for SimDevice {
    type File = SimFile;

    async fn open(&self, name: &str) -> io::Result<SimFile> {
        wait_for_io().await;
        let ino = self.with(|s| {
            if let Some(fault) = s.take_fault(FaultOn::Open) {
                return Err(fault.error());
            }
            let ino = s.entry(self.dir, name)?;
            s.file(ino).map(|_| ino)
        })?;
        Ok(self.handle(ino))
    }

    async fn create(&self, name: &str) -> io::Result<SimFile> {
        wait_for_io().await;
        let file = Node::File(FileNode::default());
        let ino = self.with(|s| s.create_entry(self.disk.boot, self.dir, name, file))?;
        Ok(self.handle(ino))
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        wait_for_io().await;
        self.with(|s| s.remove_entry(self.disk.boot, self.dir, name))
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        wait_for_io().await;
        self.with(|s| s.rename_entry(self.disk.boot, self.dir, from, to))
    }

    async fn list(&self) -> io::Result<Vec<String>> {
        wait_for_io().await;
        self.with(|s| Ok(s.dir(self.dir)?.entries.keys().cloned().collect()))
    }

    async fn sync_dir(&self) -> io::Result<()> {
        wait_for_io().await;
        sync_dir(&self.disk, self.dir)
    }

    fn path_of(&self, name: &str) -> String {
        format!("sim:{}", self.path.join(name).display())
    }
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        self.disk.alive(|s| {
            s.file(self.ino)?;
            f(s)
        })
    }
}

impl SimFile {
    /// A write as one change. It can fail as a write (nothing changes) or, `durable`
    /// (written through, as O_DSYNC), as its flush: the bytes are read back until a
    /// crash but never reach the disk, as after a failed sync.
    async fn write(&self, offset: u64, data: &[u8], durable: bool) -> io::Result<()> {
        wait_for_io().await;
        assert_aligned(offset, data.len());
        self.with(|s| {
            s.change(self.disk.boot)?;
            if let Some(fault) = s.take_fault(FaultOn::Write) {
                return Err(fault.error());
            }
            let flush_fault = durable.then(|| s.take_fault(FaultOn::Sync)).flatten();
            let file = s.file(self.ino)?;
            let op = Pending::Write {
                offset,
                data: data.to_vec(),
            };
            op.apply(&mut file.current);
            match flush_fault {
                Some(fault) => return Err(fault.error()),
                None if durable => file.write_through(op),
                None => file.pending.push(op),
            }
            Ok(())
        })
    }
}

impl DeviceFile for SimFile {
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        wait_for_io().await;
        assert_aligned(offset, len);
        self.with(|s| {
            if let Some(fault) = s.take_fault(FaultOn::Read) {
                return Err(fault.error());
            }
            Ok(read_clipped(&s.file(self.ino)?.current, offset, len))
        })
    }

    async fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write(offset, data, false).await
    }

    async fn sync(&self) -> io::Result<()> {
        wait_for_io().await;
        sync_file(&self.disk, self.ino)
    }

    async fn write_durable(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write(offset, data, true).await
    }

    async fn file_size(&self) -> io::Result<u64> {
        wait_for_io().await;
        self.with(|s| Ok(s.file(self.ino)?.current.len() as u64))
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        wait_for_io().await;
        self.with(|s| {
            s.change(self.disk.boot)?;
            let file = s.file(self.ino)?;
            let op = Pending::Truncate { len };
            op.apply(&mut file.current);
            file.pending.push(op);
            Ok(())
        })
    }
}
