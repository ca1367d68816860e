//! A simulated disk for crash and fault tests, modelled on what a real disk may do:
//!
//! - every write lands in a pending list; `sync` makes a file's pending writes durable;
//! - creates, removes and renames are durable only after `sync_dir`;
//! - [`SimDevice::crash`] throws away what was not durable, keeping a chosen part of it:
//!   nothing, everything but a tear of the last write at a sector boundary, or a random
//!   prefix of writes with the next one torn;
//! - [`SimDevice::inject`] makes the n-th next write or sync fail with EIO or ENOSPC
//!   (the failed write changes nothing).
//!
//! File handles from before a crash are dead: every operation on them fails.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::rc::Rc;

use super::{
    Device, DeviceFile, already_exists, assert_aligned, not_found, read_clipped, write_extending,
};
use crate::format::SECTOR_BYTES;

/// What survives a simulated crash of the unsynced state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write and name change is lost.
    DropUnsynced,
    /// Every unsynced write survives but the last one of each file, which keeps only a
    /// prefix of its sectors chosen with `seed`.
    TearLast { seed: u64 },
    /// For each file, a random prefix of its unsynced writes survives, the next one is
    /// torn at a random sector boundary, the rest are lost.
    Random { seed: u64 },
}

/// An error to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// EIO.
    Io,
    /// ENOSPC.
    NoSpace,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::Io => io::Error::from_raw_os_error(5),
            Fault::NoSpace => io::Error::from_raw_os_error(28),
        }
    }
}

/// Which operation a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOn {
    Write,
    Sync,
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    Truncate { len: u64 },
}

impl Pending {
    fn apply(&self, file: &mut Vec<u8>) {
        match self {
            Pending::Write { offset, data } => write_extending(file, *offset, data),
            Pending::Truncate { len } => {
                file.resize(usize::try_from(*len).expect("fits in memory"), 0)
            }
        }
    }
}

#[derive(Debug, Default)]
struct SimFs {
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    next_inode: u64,
    generation: u64,
    faults: Vec<(FaultOn, u64, Fault)>,
    writes: u64,
    syncs: u64,
}

impl SimFs {
    fn inode(&mut self, ino: u64, generation: u64) -> io::Result<&mut Inode> {
        if generation != self.generation {
            return Err(io::Error::other(
                "file handle from before a simulated crash",
            ));
        }
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io::Error::other("file was removed"))
    }

    /// Counts an operation and returns the fault armed for it, if any.
    fn take_fault(&mut self, on: FaultOn) -> Option<Fault> {
        let count = match on {
            FaultOn::Write => &mut self.writes,
            FaultOn::Sync => &mut self.syncs,
        };
        *count += 1;
        let n = *count;
        let at = self
            .faults
            .iter()
            .position(|&(o, when, _)| o == on && when == n)?;
        Some(self.faults.swap_remove(at).2)
    }
}

/// A simulated directory. Clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct SimDevice {
    fs: Rc<RefCell<SimFs>>,
}

/// A file of a [`SimDevice`].
#[derive(Debug)]
pub struct SimFile {
    fs: Rc<RefCell<SimFs>>,
    ino: u64,
    generation: u64,
}

/// splitmix64: a tiny deterministic generator for crash choices.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Keeps the first `sectors` sectors of a write, as a torn write would.
fn torn(pending: &Pending, sectors: u64) -> Option<Pending> {
    match pending {
        Pending::Write { offset, data } => {
            let keep = usize::try_from(sectors * SECTOR_BYTES)
                .unwrap_or(usize::MAX)
                .min(data.len());
            Some(Pending::Write {
                offset: *offset,
                data: data[..keep].to_vec(),
            })
        }
        Pending::Truncate { .. } => None,
    }
}

fn sectors_of(pending: &Pending) -> u64 {
    match pending {
        Pending::Write { data, .. } => data.len() as u64 / SECTOR_BYTES,
        Pending::Truncate { .. } => 0,
    }
}

impl SimDevice {
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms a fault: the `nth` (1-based) write or sync from now fails with `fault`.
    pub fn inject(&self, on: FaultOn, nth: u64, fault: Fault) {
        let mut fs = self.fs.borrow_mut();
        let base = match on {
            FaultOn::Write => fs.writes,
            FaultOn::Sync => fs.syncs,
        };
        fs.faults.push((on, base + nth, fault));
    }

    /// Writes and syncs issued so far.
    pub fn op_counts(&self) -> (u64, u64) {
        let fs = self.fs.borrow();
        (fs.writes, fs.syncs)
    }

    /// Simulates power loss. Open handles die; the directory and files become what the
    /// disk would hold afterwards under `mode`.
    pub fn crash(&self, mode: CrashMode) {
        let mut fs = self.fs.borrow_mut();
        fs.generation += 1;
        fs.faults.clear();
        fs.names = fs.durable_names.clone();
        let live: Vec<u64> = fs.names.values().copied().collect();
        fs.inodes.retain(|ino, _| live.contains(ino));
        let mut rng = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::TearLast { seed } | CrashMode::Random { seed } => seed,
        };
        // Visit files in a fixed order so that a seed always gives the same disk.
        let mut inos: Vec<u64> = fs.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let inode = fs.inodes.get_mut(&ino).expect("listed above");
            let pending = std::mem::take(&mut inode.pending);
            let (kept, tear) = match mode {
                CrashMode::DropUnsynced => (0, None),
                CrashMode::TearLast { .. } => {
                    let kept = pending.len().saturating_sub(1);
                    (kept, pending.last())
                }
                CrashMode::Random { .. } => {
                    let kept = (next_random(&mut rng) % (pending.len() as u64 + 1)) as usize;
                    (kept, pending.get(kept))
                }
            };
            let mut disk = std::mem::take(&mut inode.durable);
            for op in &pending[..kept] {
                op.apply(&mut disk);
            }
            if let Some(op) = tear {
                let sectors = next_random(&mut rng) % (sectors_of(op) + 1);
                if let Some(part) = torn(op, sectors) {
                    part.apply(&mut disk);
                }
            }
            inode.current = disk.clone();
            inode.durable = disk;
        }
    }

    /// Direct access to a file's current bytes, for tests that corrupt them. The change
    /// is made durable at once.
    pub fn corrupt(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut fs = self.fs.borrow_mut();
        let ino = *fs.names.get(name).expect("file exists");
        let inode = fs.inodes.get_mut(&ino).expect("inode exists");
        assert!(
            inode.pending.is_empty(),
            "corrupt a file only when it is synced"
        );
        edit(&mut inode.current);
        inode.durable = inode.current.clone();
    }

    /// A file's current length, if it exists.
    pub fn file_len(&self, name: &str) -> Option<u64> {
        let fs = self.fs.borrow();
        let ino = fs.names.get(name)?;
        Some(fs.inodes[ino].current.len() as u64)
    }

    fn handle(&self, ino: u64, generation: u64) -> SimFile {
        SimFile {
            fs: self.fs.clone(),
            ino,
            generation,
        }
    }
}

impl Device for SimDevice {
    type File = SimFile;

    async fn open(&self, name: &str) -> io::Result<SimFile> {
        let fs = self.fs.borrow();
        let ino = *fs.names.get(name).ok_or_else(|| not_found(name))?;
        Ok(self.handle(ino, fs.generation))
    }

    async fn create(&self, name: &str) -> io::Result<SimFile> {
        let mut fs = self.fs.borrow_mut();
        if fs.names.contains_key(name) {
            return Err(already_exists(name));
        }
        let ino = fs.next_inode;
        fs.next_inode += 1;
        fs.inodes.insert(ino, Inode::default());
        fs.names.insert(name.to_owned(), ino);
        Ok(self.handle(ino, fs.generation))
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.names
            .remove(name)
            .map(drop)
            .ok_or_else(|| not_found(name))
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        let ino = fs.names.remove(from).ok_or_else(|| not_found(from))?;
        fs.names.insert(to.to_owned(), ino);
        Ok(())
    }

    async fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.fs.borrow().names.keys().cloned().collect())
    }

    async fn sync_dir(&self) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        if let Some(fault) = fs.take_fault(FaultOn::Sync) {
            return Err(fault.error());
        }
        fs.durable_names = fs.names.clone();
        Ok(())
    }

    fn path_of(&self, name: &str) -> String {
        format!("sim:{name}")
    }
}

impl DeviceFile for SimFile {
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        assert_aligned(offset, len);
        let mut fs = self.fs.borrow_mut();
        let inode = fs.inode(self.ino, self.generation)?;
        Ok(read_clipped(&inode.current, offset, len))
    }

    async fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        assert_aligned(offset, data.len());
        let mut fs = self.fs.borrow_mut();
        fs.inode(self.ino, self.generation)?;
        if let Some(fault) = fs.take_fault(FaultOn::Write) {
            return Err(fault.error());
        }
        let inode = fs.inode(self.ino, self.generation)?;
        let op = Pending::Write {
            offset,
            data: data.to_vec(),
        };
        op.apply(&mut inode.current);
        inode.pending.push(op);
        Ok(())
    }

    async fn sync(&self) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.inode(self.ino, self.generation)?;
        if let Some(fault) = fs.take_fault(FaultOn::Sync) {
            return Err(fault.error());
        }
        let inode = fs.inode(self.ino, self.generation)?;
        for op in std::mem::take(&mut inode.pending) {
            op.apply(&mut inode.durable);
        }
        debug_assert_eq!(inode.durable, inode.current);
        Ok(())
    }

    async fn file_size(&self) -> io::Result<u64> {
        let mut fs = self.fs.borrow_mut();
        Ok(fs.inode(self.ino, self.generation)?.current.len() as u64)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        let inode = fs.inode(self.ino, self.generation)?;
        let op = Pending::Truncate { len };
        op.apply(&mut inode.current);
        inode.pending.push(op);
        Ok(())
    }
}
