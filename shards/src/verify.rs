//! `verify`: checks a database directory without opening it and without changing it.
//!
//! The directory is locked first (the same `LOCK` flock as [`Db::open`](crate::Db::open)
//! takes, exclusively and without waiting, in it and in each other data directory its
//! `DATA-DIRS` lists), so a directory that another process holds
//! open is refused with [`Error::Locked`], and no process can open it while the check
//! runs. The layout is then read as `Db::open` would read it, without its clean-ups:
//! parents of committed splits and children of uncommitted ones are noted (open
//! removes them) and skipped, and the remaining leaves must tile the hash space. Each
//! leaf is checked by [`ringkv_engine::verify::verify_substore`] over a device that can
//! only read: plain files opened read-only, read through the page cache (no O_DIRECT, no
//! glommio, no locked memory), whose every writing method fails.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use ringkv_engine::SubstoreId;
use ringkv_engine::device::{Device, DeviceFile};
use ringkv_engine::format::parse_extent_file_name;
use ringkv_engine::verify::{Finding, SubstoreReport, verify_substore};

use crate::error::{Error, Result};
use crate::layout::{
    HANDED_OVER_FILE_NAME, LOCK_FILE_NAME, Leaf, RETIRED_SUFFIX, SUBSTORES_DIR, SUBSTORES_TMP_DIR,
    check_tiling, handed_over, leaf_dir_name, leaf_id, parse_leaf_dir_name, probe,
};
use crate::storage::Storage;

/// What [`verify`] found in a database directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The directory checked.
    pub path: PathBuf,
    /// Each leaf (substore) checked, in hash order.
    pub leaves: Vec<LeafReport>,
    /// Problems of the layout itself: leaf names, leaves that do not tile the hash space.
    pub layout_problems: Vec<Finding>,
    /// What opening will clean up in the layout (unfinished splits and creation).
    pub layout_notes: Vec<Finding>,
}

/// What verifying one leaf found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeafReport {
    /// The leaf's directory name under `substores/`.
    pub name: String,
    pub report: SubstoreReport,
}

impl VerifyReport {
    /// No problem anywhere.
    pub fn is_ok(&self) -> bool {
        self.problems().next().is_none()
    }

    /// Every problem: the layout's, then each leaf's.
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        let leaves = self.leaves.iter().flat_map(|l| &l.report.problems);
        self.layout_problems.iter().chain(leaves)
    }

    /// Every note: the layout's, then each leaf's.
    pub fn notes(&self) -> impl Iterator<Item = &Finding> {
        let leaves = self.leaves.iter().flat_map(|l| &l.report.notes);
        self.layout_notes.iter().chain(leaves)
    }

    /// Sum of one figure over the leaves.
    fn sum(&self, figure: impl Fn(&SubstoreReport) -> u64) -> u64 {
        self.leaves.iter().map(|l| figure(&l.report)).sum()
    }

    /// Extent files read.
    pub fn extents(&self) -> u64 {
        self.sum(|r| r.extents)
    }

    /// Records whose checksum matched.
    pub fn records(&self) -> u64 {
        self.sum(|r| r.records)
    }

    /// Bytes of extent files read.
    pub fn bytes(&self) -> u64 {
        self.sum(|r| r.bytes)
    }

    /// Keys the database would hold once opened.
    pub fn keys(&self) -> u64 {
        self.sum(|r| r.keys)
    }

    /// Bytes of the records those keys point at.
    pub fn live_bytes(&self) -> u64 {
        self.sum(|r| r.live_bytes)
    }
}

/// Checks the database in `path`: every checksum of every file, and the index each
/// leaf would get against its log. Nothing in the directory changes. `Err` when the
/// directory cannot be checked at all (missing, not a database, locked by a process
/// that has it open); damage is reported in the [`VerifyReport`], each problem with its
/// file and byte offset.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport> {
    verify_with_progress(path, |_, _| {})
}

/// [`verify`], calling `progress(bytes_done, bytes_total)` as extent files are read.
pub fn verify_with_progress(
    path: impl AsRef<Path>,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport> {
    let dir = path.as_ref().to_path_buf();
    let meta = std::fs::metadata(&dir).map_err(io("inspecting", &dir))?;
    if !meta.is_dir() {
        return Err(Error::Layout {
            path: dir,
            what: "not a directory".into(),
        });
    }
    let held = lock(&dir)?;
    let substores = dir.join(SUBSTORES_DIR);
    if !substores.is_dir() {
        return Err(Error::Layout {
            path: dir,
            what: format!("no {SUBSTORES_DIR}/ directory: not a ringkv database"),
        });
    }
    let mut report = VerifyReport {
        path: dir.clone(),
        ..VerifyReport::default()
    };
    if held.is_none() {
        let what = "no LOCK file: ringkv never opened this directory, or the file was removed";
        report
            .layout_notes
            .push(finding(&dir.join(LOCK_FILE_NAME), what));
    }
    let tmp = dir.join(SUBSTORES_TMP_DIR);
    match probe(&Storage::Real, &tmp) {
        Ok(None) => {}
        Ok(Some(_)) => {
            let what = "leaves of an unfinished creation; opening removes them";
            report.layout_notes.push(finding(&tmp, what));
        }
        Err(e) => report.layout_problems.push(finding(&tmp, &e.to_string())),
    }
    let mut all_substores = vec![substores];
    let mut _held_others = Vec::new();
    for (other, refused) in crate::data_dirs::listed_for_verify(&dir)? {
        if let Some(e) = refused {
            report.layout_problems.push(finding(&other, &e.to_string()));
            continue;
        }
        _held_others.push(lock(&other)?);
        let substores = other.join(SUBSTORES_DIR);
        if !substores.is_dir() {
            let what = format!("no {SUBSTORES_DIR}/ directory in a data directory: opening fails");
            report.layout_problems.push(finding(&other, &what));
            continue;
        }
        all_substores.push(substores);
    }
    let leaves = leaves(&all_substores, &mut report)?;
    let total: u64 = leaves.iter().map(|l| l.size_bytes).sum();
    let mut done = 0;
    progress(0, total);
    for leaf in leaves {
        let device = ReadOnlyDir {
            dir: leaf.dir.clone(),
        };
        let mut on_file = |bytes: u64| {
            done += bytes;
            progress(done, total);
        };
        let checked = verify_substore(&device, Some(leaf.id), &mut on_file);
        let leaf_report = futures_lite::future::block_on(checked).unwrap_or_else(|e| {
            let mut r = SubstoreReport::default();
            r.problems.push(finding(&leaf.dir, &e.to_string()));
            r
        });
        let name = leaf
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        report.leaves.push(LeafReport {
            name: name.unwrap_or_default(),
            report: leaf_report,
        });
    }
    Ok(report)
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

fn finding(path: &Path, what: &str) -> Finding {
    Finding {
        path: path.display().to_string(),
        offset: 0,
        what: what.to_owned(),
    }
}

/// Takes the database's lock without creating `LOCK`: `None` when there is none.
fn lock(dir: &Path) -> Result<Option<Flock<File>>> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                op: "opening the lock file",
                path,
                source,
            });
        }
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::Locked {
            path: dir.to_path_buf(),
            lock: path,
        }),
        Err((_, errno)) => Err(Error::Io {
            op: "locking",
            path,
            source: errno.into(),
        }),
    }
}

/// The leaves `Db::open` would keep, and the ancestors of hand-over splits behind them
/// (substores too, verified like leaves), found in the `substores/` directories of
/// every data directory (the home's first) without removing anything; what open
/// would remove or refuse is noted in `report`.
fn leaves(all_substores: &[PathBuf], report: &mut VerifyReport) -> Result<Vec<Leaf>> {
    let mut leaves = Vec::new();
    let mut ancestors = Vec::new();
    let mut entries = Vec::new();
    for substores in all_substores {
        for entry in std::fs::read_dir(substores).map_err(io("listing", substores))? {
            entries.push(entry.map_err(io("listing", substores))?.path());
        }
    }
    let substores = &all_substores[0];
    for path in entries {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(RETIRED_SUFFIX) {
            let what = "the parent of a committed split; opening removes it";
            report.layout_notes.push(finding(&path, what));
            continue;
        }
        let Some((bits, prefix)) = parse_leaf_dir_name(&name) else {
            let what = "not a leaf name; ignored";
            report.layout_notes.push(finding(&path, what));
            continue;
        };
        if bits > 64 || bits % 4 != 0 || leaf_dir_name(&leaf_id(bits, prefix)) != name {
            let what = "not a valid leaf name (prefix bits or hash prefix): opening fails";
            report.layout_problems.push(finding(&path, what));
            continue;
        }
        let size_bytes = extent_bytes(&path)?;
        let leaf = Leaf {
            id: leaf_id(bits, prefix),
            dir: path,
            size_bytes,
        };
        match handed_over(&Storage::Real, &leaf.dir) {
            Ok(true) => {
                let what = "the ancestor of a hand-over split; its records move to its children";
                report.layout_notes.push(finding(&leaf.dir, what));
                ancestors.push(leaf);
            }
            Ok(false) => leaves.push(leaf),
            Err(e) => {
                // Open refuses it too; its files are still checked, as a leaf's.
                let marker = leaf.dir.join(HANDED_OVER_FILE_NAME);
                report
                    .layout_problems
                    .push(finding(&marker, &e.to_string()));
                leaves.push(leaf);
            }
        }
    }
    let ids: Vec<SubstoreId> = leaves.iter().map(|l| l.id).collect();
    leaves.retain(|leaf| {
        let inside_another = ids
            .iter()
            .any(|p| p.prefix_bits < leaf.id.prefix_bits && p.covers(leaf.id.hash_prefix));
        if inside_another {
            let what = "a child of a split that never committed; opening removes it";
            report.layout_notes.push(finding(&leaf.dir, what));
        }
        !inside_another
    });
    match check_tiling(substores, &mut leaves) {
        Ok(()) => {}
        Err(Error::Layout { what, .. }) => {
            let what = format!("{what}: opening fails");
            report.layout_problems.push(finding(substores, &what));
        }
        Err(e) => return Err(e),
    }
    leaves.extend(ancestors);
    Ok(leaves)
}

/// Bytes of the extent files in a leaf directory.
fn extent_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        if parse_extent_file_name(&entry.file_name().to_string_lossy()).is_some() {
            total += entry.metadata().map_err(io("inspecting", dir))?.len();
        }
    }
    Ok(total)
}

/// A directory of plain files that can only be read.
#[derive(Debug)]
struct ReadOnlyDir {
    dir: PathBuf,
}

#[derive(Debug)]
struct ReadOnlyFile {
    file: File,
}

fn refused(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("verify only reads; it never {what}"),
    )
}

impl Device for ReadOnlyDir {
    type File = ReadOnlyFile;

    async fn open(&self, name: &str) -> io::Result<ReadOnlyFile> {
        let file = File::open(self.dir.join(name))?;
        Ok(ReadOnlyFile { file })
    }

    async fn create(&self, _: &str) -> io::Result<ReadOnlyFile> {
        Err(refused("creates a file"))
    }

    async fn remove(&self, _: &str) -> io::Result<()> {
        Err(refused("removes a file"))
    }

    async fn rename(&self, _: &str, _: &str) -> io::Result<()> {
        Err(refused("renames a file"))
    }

    async fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    async fn sync_dir(&self) -> io::Result<()> {
        Err(refused("syncs a directory"))
    }

    fn path_of(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl DeviceFile for ReadOnlyFile {
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        let mut got = 0;
        while got < len {
            match self.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    async fn write_at(&self, _: u64, _: &[u8]) -> io::Result<()> {
        Err(refused("writes"))
    }

    async fn sync(&self) -> io::Result<()> {
        Err(refused("syncs a file"))
    }

    async fn file_size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    async fn truncate(&self, _: u64) -> io::Result<()> {
        Err(refused("truncates"))
    }
}
