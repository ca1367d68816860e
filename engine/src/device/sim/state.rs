//! The state of a simulated disk: a tree of inodes, each directory with its durable
//! entries and the name changes since its last sync, each file with its durable bytes
//! and the writes since its last sync, and what a power cut keeps of them.
//!
//! Invariants: inode [`ROOT`] is a directory that always exists; `entries` of a
//! directory is `durable` with `log` applied; a file's `current` is `durable` with
//! `pending` applied. Handles carry the boot they were made in; after a power cut
//! (`boot` bumped) every operation through an older handle fails.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path};

use super::{CrashMode, Fault, FaultOn};
use crate::device::{already_exists, not_found, write_extending};
use crate::format::SECTOR_BYTES;

/// The root directory's inode.
pub(super) const ROOT: u64 = 0;

#[derive(Clone, Debug)]
pub(super) struct State {
    pub(super) nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Bumped by every power cut.
    pub(super) boot: u64,
    /// Armed faults: (operation, its count at which to fail, error).
    pub(super) faults: Vec<(FaultOn, u64, Fault)>,
    pub(super) opens: u64,
    pub(super) reads: u64,
    pub(super) writes: u64,
    pub(super) syncs: u64,
    /// Operations that change the disk or make something durable (writes, truncates,
    /// syncs, creates, removes, renames): the points where a power cut can fall.
    pub(super) changes: u64,
    /// A power cut armed to fall just before the change with this count.
    pub(super) cut: Option<(u64, CrashMode)>,
    /// A power cut to arm when a name containing this text is created, removed or
    /// renamed to: it falls that many changes later.
    pub(super) trigger: Option<(String, u64, CrashMode)>,
    /// Directory locks held, each with the boot it was taken in.
    pub(super) locks: Vec<(std::path::PathBuf, u64)>,
}

#[derive(Clone, Debug)]
pub(super) enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Clone, Debug, Default)]
pub(super) struct FileNode {
    pub(super) durable: Vec<u8>,
    pub(super) current: Vec<u8>,
    pub(super) pending: Vec<Pending>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct DirNode {
    pub(super) entries: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    /// Name changes since the last sync of this directory, oldest first.
    log: Vec<NameOp>,
}

#[derive(Clone, Debug)]
pub(super) enum Pending {
    Write { offset: u64, data: Vec<u8> },
    Truncate { len: u64 },
}

impl FileNode {
    /// Makes `op` (a write, already applied to `current`) durable at once, as an O_DSYNC
    /// write: older unsynced writes of the same bytes can no longer reach the disk over
    /// it. With a truncate pending, everything pending is made durable with it (the
    /// length the write depends on is committed with it; this is more than a kernel
    /// promises, and only a log's shrink, always synced, truncates).
    pub(super) fn write_through(&mut self, op: Pending) {
        let Pending::Write { offset, data } = &op else {
            unreachable!("only writes are written through");
        };
        let (from, to) = (*offset, offset + data.len() as u64);
        let pending = std::mem::take(&mut self.pending);
        if pending
            .iter()
            .any(|p| matches!(p, Pending::Truncate { .. }))
        {
            for p in pending {
                p.apply(&mut self.durable);
            }
        } else {
            self.pending = pending
                .into_iter()
                .flat_map(|p| p.outside(from, to))
                .collect();
        }
        op.apply(&mut self.durable);
    }
}

impl Pending {
    /// What of a pending write lies outside bytes `from..to` (up to two writes).
    fn outside(self, from: u64, to: u64) -> Vec<Pending> {
        let Pending::Write { offset, data } = self else {
            return vec![self];
        };
        let end = offset + data.len() as u64;
        if end <= from || offset >= to {
            return vec![Pending::Write { offset, data }];
        }
        let mut parts = Vec::new();
        if offset < from {
            let keep = (from - offset) as usize;
            parts.push(Pending::Write {
                offset,
                data: data[..keep].to_vec(),
            });
        }
        if end > to {
            let skip = (to - offset) as usize;
            parts.push(Pending::Write {
                offset: to,
                data: data[skip..].to_vec(),
            });
        }
        parts
    }
}

impl Pending {
    pub(super) fn apply(&self, file: &mut Vec<u8>) {
        match self {
            Pending::Write { offset, data } => write_extending(file, *offset, data),
            Pending::Truncate { len } => {
                file.resize(usize::try_from(*len).expect("fits in memory"), 0)
            }
        }
    }
}

/// A change of one directory, durable only after that directory's sync.
#[derive(Clone, Debug)]
enum NameOp {
    Link(String, u64),
    Unlink(String),
    /// One journal transaction: the new name and the old one's removal go together.
    Rename {
        from: String,
        to: String,
        ino: u64,
    },
}

impl DirNode {
    pub(super) fn link(&mut self, name: &str, ino: u64) {
        self.entries.insert(name.to_owned(), ino);
        self.log.push(NameOp::Link(name.to_owned(), ino));
    }

    pub(super) fn unlink(&mut self, name: &str) -> Option<u64> {
        let ino = self.entries.remove(name)?;
        self.log.push(NameOp::Unlink(name.to_owned()));
        Some(ino)
    }

    pub(super) fn rename(&mut self, from: &str, to: &str) -> Option<u64> {
        let ino = self.entries.remove(from)?;
        self.entries.insert(to.to_owned(), ino);
        self.log.push(NameOp::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
            ino,
        });
        Some(ino)
    }

    pub(super) fn sync(&mut self) {
        self.durable = self.entries.clone();
        self.log.clear();
    }

    /// After a power cut: the durable entries and the first `kept` changes since.
    fn survive(&mut self, kept: usize) {
        for op in self.log.drain(..).take(kept) {
            match op {
                NameOp::Link(name, ino) => self.durable.insert(name, ino),
                NameOp::Unlink(name) => self.durable.remove(&name),
                NameOp::Rename { from, to, ino } => {
                    self.durable.remove(&from);
                    self.durable.insert(to, ino)
                }
            };
        }
        self.entries = self.durable.clone();
    }
}

impl Default for State {
    fn default() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        Self {
            nodes,
            next_ino: ROOT + 1,
            boot: 0,
            faults: Vec::new(),
            opens: 0,
            reads: 0,
            writes: 0,
            syncs: 0,
            changes: 0,
            cut: None,
            trigger: None,
            locks: Vec::new(),
        }
    }
}

pub(super) fn power_cut_error() -> io::Error {
    io::Error::other("simulated power cut: this handle is from before it")
}

fn not_a_directory(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("{} is not a directory", path.display()),
    )
}

fn path_not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no such file or directory: {}", path.display()),
    )
}

impl State {
    /// Fails unless `boot` is the current one.
    pub(super) fn alive(&self, boot: u64) -> io::Result<()> {
        match boot == self.boot {
            true => Ok(()),
            false => Err(power_cut_error()),
        }
    }

    /// Counts a change; when it is the one a power cut was armed for, the cut falls
    /// first and the change fails.
    pub(super) fn change(&mut self, boot: u64) -> io::Result<()> {
        self.alive(boot)?;
        self.changes += 1;
        if let Some((at, mode)) = self.cut
            && self.changes >= at
        {
            self.crash(mode);
            return Err(power_cut_error());
        }
        Ok(())
    }

    /// A name change involving `name` is about to be counted: arms the triggered power
    /// cut, if any, to fall on that change or a later one.
    pub(super) fn named(&mut self, name: &str) {
        let fired = self
            .trigger
            .take_if(|(text, ..)| name.contains(text.as_str()));
        if let Some((_, after, mode)) = fired {
            self.cut = Some((self.changes + after, mode));
        }
    }

    /// Counts an operation of kind `on` and returns the fault armed for it, if any.
    pub(super) fn take_fault(&mut self, on: FaultOn) -> Option<Fault> {
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

    pub(super) fn count_of(&self, on: FaultOn) -> u64 {
        match on {
            FaultOn::Open => self.opens,
            FaultOn::Read => self.reads,
            FaultOn::Write => self.writes,
            FaultOn::Sync => self.syncs,
        }
    }

    pub(super) fn new_node(&mut self, node: Node) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    /// Creates `node` as `name` in directory `dir`: one change, which an armed open
    /// fault fails first.
    pub(super) fn create_entry(
        &mut self,
        boot: u64,
        dir: u64,
        name: &str,
        node: Node,
    ) -> io::Result<u64> {
        self.new_name(boot, dir, name)?;
        let ino = self.new_node(node);
        self.dir(dir)?.link(name, ino);
        Ok(ino)
    }

    /// Counts the change of a new `name` in directory `dir` (which an armed open fault
    /// fails first); the name must be free.
    fn new_name(&mut self, boot: u64, dir: u64, name: &str) -> io::Result<()> {
        self.dir(dir)?;
        self.named(name);
        self.change(boot)?;
        if let Some(fault) = self.take_fault(FaultOn::Open) {
            return Err(fault.error());
        }
        match self.dir(dir)?.entries.contains_key(name) {
            true => Err(already_exists(name)),
            false => Ok(()),
        }
    }

    /// Gives file `ino` the name `name` in directory `dir` too (a hard link): one
    /// change, which an armed open fault fails first.
    pub(super) fn link_entry(
        &mut self,
        boot: u64,
        dir: u64,
        name: &str,
        ino: u64,
    ) -> io::Result<()> {
        self.file(ino)?;
        self.new_name(boot, dir, name)?;
        self.dir(dir)?.link(name, ino);
        Ok(())
    }

    /// Removes `name` (a file, or an empty directory) from directory `dir`: one change.
    pub(super) fn remove_entry(&mut self, boot: u64, dir: u64, name: &str) -> io::Result<()> {
        let ino = self.entry(dir, name)?;
        if let Node::Dir(inner) = &self.nodes[&ino]
            && !inner.entries.is_empty()
        {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("{name} is not empty"),
            ));
        }
        self.named(name);
        self.change(boot)?;
        self.dir(dir)?.unlink(name);
        Ok(())
    }

    /// Renames `from` to `to` in directory `dir`, replacing a file (not a directory) at
    /// `to`: one change.
    pub(super) fn rename_entry(
        &mut self,
        boot: u64,
        dir: u64,
        from: &str,
        to: &str,
    ) -> io::Result<()> {
        self.entry(dir, from)?;
        if let Ok(target) = self.entry(dir, to)
            && matches!(self.nodes[&target], Node::Dir(_))
        {
            return Err(already_exists(to));
        }
        self.named(to);
        self.change(boot)?;
        self.dir(dir)?.rename(from, to);
        Ok(())
    }

    /// The inode named `name` in directory `dir`.
    pub(super) fn entry(&mut self, dir: u64, name: &str) -> io::Result<u64> {
        let entries = &self.dir(dir)?.entries;
        entries.get(name).copied().ok_or_else(|| not_found(name))
    }

    pub(super) fn dir(&mut self, ino: u64) -> io::Result<&mut DirNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(dir)) => Ok(dir),
            Some(Node::File(_)) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )),
            None => Err(io::Error::other("the directory was removed")),
        }
    }

    pub(super) fn file(&mut self, ino: u64) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(file)) => Ok(file),
            Some(Node::Dir(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )),
            None => Err(io::Error::other("the file was removed")),
        }
    }

    /// The inode at `path` (absolute or relative, both from the root), if any.
    pub(super) fn lookup(&self, path: &Path) -> io::Result<Option<u64>> {
        let mut ino = ROOT;
        for name in names(path)? {
            let Some(Node::Dir(dir)) = self.nodes.get(&ino) else {
                return Err(not_a_directory(path));
            };
            match dir.entries.get(name) {
                Some(&next) => ino = next,
                None => return Ok(None),
            }
        }
        Ok(Some(ino))
    }

    pub(super) fn resolve(&self, path: &Path) -> io::Result<u64> {
        self.lookup(path)?.ok_or_else(|| path_not_found(path))
    }

    /// The directory holding `path` and the last name of `path`.
    pub(super) fn parent_of<'p>(&self, path: &'p Path) -> io::Result<(u64, &'p str)> {
        let all = names(path)?;
        let Some((last, _)) = all.split_last() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the root has no parent",
            ));
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        Ok((self.resolve(parent)?, last))
    }

    /// Simulates power loss: handles die, and each directory and file becomes what the
    /// disk would hold afterwards under `mode`. Inodes no durable name reaches are gone.
    pub(super) fn crash(&mut self, mode: CrashMode) {
        self.boot += 1;
        self.faults.clear();
        self.cut = None;
        self.trigger = None;
        let mut rng = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::TearLast { seed } | CrashMode::Random { seed } => seed,
        };
        // Visit inodes in a fixed order so that a seed always gives the same disk.
        let mut inos: Vec<u64> = self.nodes.keys().copied().collect();
        inos.sort_unstable();
        for &ino in &inos {
            if let Some(Node::Dir(dir)) = self.nodes.get_mut(&ino) {
                let kept = match mode {
                    CrashMode::DropUnsynced => 0,
                    CrashMode::TearLast { .. } => dir.log.len(),
                    CrashMode::Random { .. } => {
                        (next_random(&mut rng) % (dir.log.len() as u64 + 1)) as usize
                    }
                };
                dir.survive(kept);
            }
        }
        self.collect_unreachable();
        for ino in inos {
            if let Some(Node::File(file)) = self.nodes.get_mut(&ino) {
                crash_file(file, mode, &mut rng);
            }
        }
    }

    fn collect_unreachable(&mut self) {
        let mut reached = std::collections::HashSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if let Some(Node::Dir(dir)) = self.nodes.get(&ino) {
                for &child in dir.entries.values() {
                    if reached.insert(child) {
                        todo.push(child);
                    }
                }
            }
        }
        self.nodes.retain(|ino, _| reached.contains(ino));
    }
}

/// What a power cut keeps of a file's unsynced writes and truncates.
fn crash_file(file: &mut FileNode, mode: CrashMode, rng: &mut u64) {
    let pending = std::mem::take(&mut file.pending);
    let mut disk = std::mem::take(&mut file.durable);
    let last = pending.len().saturating_sub(1);
    for (i, op) in pending.iter().enumerate() {
        let kept = match mode {
            CrashMode::DropUnsynced => Vec::new(),
            CrashMode::TearLast { .. } if i < last => vec![op.clone()],
            CrashMode::TearLast { .. } | CrashMode::Random { .. } => survivors(op, rng),
        };
        for part in kept {
            part.apply(&mut disk);
        }
    }
    file.current = disk.clone();
    file.durable = disk;
}

/// The names along `path`; `.` and the root are skipped, `..` is refused.
fn names(path: &Path) -> io::Result<Vec<&str>> {
    let mut all = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => all.push(name.to_str().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "a name that is not UTF-8")
            })?),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the simulated disk takes no `..`: {}", path.display()),
                ));
            }
        }
    }
    Ok(all)
}

/// splitmix64: a tiny deterministic generator for crash choices.
pub(super) fn next_random(state: &mut u64) -> u64 {
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
