//! A simulated disk for crash and fault tests, modelled on what a real disk may do and
//! forgiving nothing the device assumption (FORMAT.md) does not promise:
//!
//! - every write lands in a pending list; `sync` makes a file's pending writes durable;
//! - a failed `sync` loses the file's pending writes for good (as Linux does after a
//!   failed fsync: the pages are marked clean, so a retried fsync succeeds without
//!   writing them); reads still see them until a crash, as from the page cache;
//! - creates, removes and renames are durable only after `sync_dir`; a crash keeps a
//!   prefix of the name changes since the last one, chosen by the seed;
//! - [`SimDevice::crash`] throws away what was not durable, keeping a chosen part of it:
//!   nothing; everything but the last write of each file, which keeps any subset of its
//!   sectors; or any subset of the sectors of every unsynced write (a truncate kept or
//!   not), since a disk may persist writes between flushes in any order;
//! - [`SimDevice::inject`] makes the n-th next open (or create), read, write or sync
//!   fail with EIO, ENOSPC or EMFILE (the failed operation changes nothing).
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
    /// Every unsynced write and name change survives but the last write of each file,
    /// which keeps a subset of its sectors chosen with `seed`.
    TearLast { seed: u64 },
    /// Each sector of each unsynced write survives or not, each unsynced truncate
    /// survives or not, and a prefix of the unsynced name changes survives, all chosen
    /// with `seed`.
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
    /// A `create` or `open` of a file.
    Open,
    Read,
    Write,
    /// A file's `sync` or the directory's `sync_dir`.
    Sync,
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Clone, Debug)]
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
    /// Name changes since the last `sync_dir`, oldest first.
    name_log: Vec<NameOp>,
    faults: Vec<(FaultOn, u64, Fault)>,
    opens: u64,
    reads: u64,
    writes: u64,
    syncs: u64,
}

/// A change of the directory, durable only after `sync_dir`.
#[derive(Debug)]
enum NameOp {
    Link(String, u64),
    Unlink(String),
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
            FaultOn::Open => &mut self.opens,
            FaultOn::Read => &mut self.reads,
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

/// What survives of one unsynced operation: a write keeps the sectors whose bit is set
/// in a random draw (any subset), a truncate survives or not.
fn survivors(op: &Pending, rng: &mut u64) -> Vec<Pending> {
    match op {
        Pending::Write { offset, data } => {
            let sector = SECTOR_BYTES as usize;
            let mut kept = Vec::new();
            let mut bits = 0;
            for (i, chunk) in data.chunks(sector).enumerate() {
                if i % 64 == 0 {
                    bits = next_random(rng);
                }
                if bits & (1 << (i % 64)) != 0 {
                    kept.push(Pending::Write {
                        offset: offset + (i * sector) as u64,
                        data: chunk.to_vec(),
                    });
                }
            }
            kept
        }
        Pending::Truncate { len } if next_random(rng) % 2 == 0 => {
            vec![Pending::Truncate { len: *len }]
        }
        Pending::Truncate { .. } => Vec::new(),
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
            FaultOn::Open => fs.opens,
            FaultOn::Read => fs.reads,
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
        let mut rng = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::TearLast { seed } | CrashMode::Random { seed } => seed,
        };
        let log = std::mem::take(&mut fs.name_log);
        let kept_names = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::TearLast { .. } => log.len(),
            CrashMode::Random { .. } => (next_random(&mut rng) % (log.len() as u64 + 1)) as usize,
        };
        let mut names = fs.durable_names.clone();
        for op in &log[..kept_names] {
            match op {
                NameOp::Link(name, ino) => names.insert(name.clone(), *ino),
                NameOp::Unlink(name) => names.remove(name),
            };
        }
        fs.names = names.clone();
        fs.durable_names = names;
        let live: Vec<u64> = fs.names.values().copied().collect();
        fs.inodes.retain(|ino, _| live.contains(ino));
        // Visit files in a fixed order so that a seed always gives the same disk.
        let mut inos: Vec<u64> = fs.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let inode = fs.inodes.get_mut(&ino).expect("listed above");
            let pending = std::mem::take(&mut inode.pending);
            let mut disk = std::mem::take(&mut inode.durable);
            let last = pending.len().saturating_sub(1);
            for (i, op) in pending.iter().enumerate() {
                let kept = match mode {
                    CrashMode::DropUnsynced => Vec::new(),
                    CrashMode::TearLast { .. } if i < last => vec![op.clone()],
                    CrashMode::TearLast { .. } | CrashMode::Random { .. } => {
                        survivors(op, &mut rng)
                    }
                };
                for part in kept {
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
        let mut fs = self.fs.borrow_mut();
        if let Some(fault) = fs.take_fault(FaultOn::Open) {
            return Err(fault.error());
        }
        let ino = *fs.names.get(name).ok_or_else(|| not_found(name))?;
        Ok(self.handle(ino, fs.generation))
    }

    async fn create(&self, name: &str) -> io::Result<SimFile> {
        let mut fs = self.fs.borrow_mut();
        if let Some(fault) = fs.take_fault(FaultOn::Open) {
            return Err(fault.error());
        }
        if fs.names.contains_key(name) {
            return Err(already_exists(name));
        }
        let ino = fs.next_inode;
        fs.next_inode += 1;
        fs.inodes.insert(ino, Inode::default());
        fs.names.insert(name.to_owned(), ino);
        fs.name_log.push(NameOp::Link(name.to_owned(), ino));
        Ok(self.handle(ino, fs.generation))
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        fs.names.remove(name).ok_or_else(|| not_found(name))?;
        fs.name_log.push(NameOp::Unlink(name.to_owned()));
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut fs = self.fs.borrow_mut();
        let ino = fs.names.remove(from).ok_or_else(|| not_found(from))?;
        fs.names.insert(to.to_owned(), ino);
        // One journal transaction: the new name and the old name's removal go together.
        fs.name_log.push(NameOp::Link(to.to_owned(), ino));
        fs.name_log.push(NameOp::Unlink(from.to_owned()));
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
        fs.name_log.clear();
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
        fs.inode(self.ino, self.generation)?;
        if let Some(fault) = fs.take_fault(FaultOn::Read) {
            return Err(fault.error());
        }
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
        let fault = fs.take_fault(FaultOn::Sync);
        let inode = fs.inode(self.ino, self.generation)?;
        let pending = std::mem::take(&mut inode.pending);
        if let Some(fault) = fault {
            // The pending writes are gone for good; reads see them until a crash.
            return Err(fault.error());
        }
        for op in pending {
            op.apply(&mut inode.durable);
        }
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
