//! What `Db::open` finds in a database directory before any core starts, and the lock
//! it holds. A writable open creates what is missing (the directory, the trie, the
//! commit directory) and cleans up what a crash left (unfinished splits); a read-only
//! open (`Options::read_only`) changes nothing, and refuses a directory where a
//! writable open would first change something: commit or batch logs to replay, a
//! split to clean up (torn tails are the engine's to refuse, as it opens each leaf).

use std::path::{Path, PathBuf};

use crate::batch;
use crate::data_dirs::{self, DataDirs};
use crate::error::{Error, Result};
use crate::layout::{self, DirLock, LOCK_FILE_NAME, Leaf};
use crate::logs::{self, COMMIT_DIR};
use crate::storage::Storage;

/// A database directory as open found it, locked.
pub(crate) struct Found {
    pub(crate) lock: DirLock,
    /// The directories holding substores (the home first), each other one locked.
    pub(crate) dirs: DataDirs,
    pub(crate) dir_locks: Vec<DirLock>,
    pub(crate) leaves: Vec<Leaf>,
    pub(crate) ancestors: Vec<Leaf>,
    pub(crate) logged: logs::Recovered,
    pub(crate) pending: batch::Pending,
}

/// Finds the database in `dir`, with its other data directories (`data_dirs`, empty:
/// those it lists).
pub(crate) fn find(
    fs: &Storage,
    dir: &Path,
    data_dirs: &[PathBuf],
    read_only: bool,
) -> Result<Found> {
    match read_only {
        false => writable(fs, dir, data_dirs),
        true => unchanged(fs, dir, data_dirs),
    }
}

fn writable(fs: &Storage, dir: &Path, data_dirs: &[PathBuf]) -> Result<Found> {
    layout::create_db_dir(fs, dir)?;
    let lock = layout::lock(fs, dir)?;
    let (dirs, dir_locks) = data_dirs::resolve(fs, dir, data_dirs)?;
    let (leaves, ancestors) = layout::scan(fs, &dirs)?;
    let logged = logs::read(fs, dir)?;
    let pending = batch::read(fs, dir)?;
    Ok(Found {
        lock,
        dirs,
        dir_locks,
        leaves,
        ancestors,
        logged,
        pending,
    })
}

fn unchanged(fs: &Storage, dir: &Path, data_dirs: &[PathBuf]) -> Result<Found> {
    if layout::probe(fs, dir)?.is_none() {
        return Err(Error::Io {
            op: "opening read-only",
            path: dir.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let lock = fs.lock_shared(dir, &dir.join(LOCK_FILE_NAME))?;
    let (dirs, dir_locks) = data_dirs::resolve_read_only(fs, dir, data_dirs)?;
    let (leaves, ancestors) = layout::scan_read_only(fs, &dirs)?;
    let commit = dir.join(COMMIT_DIR);
    let (logged, pending) = match layout::probe(fs, &commit)? {
        None => Default::default(),
        Some(_) => (logs::read(fs, dir)?, batch::read(fs, dir)?),
    };
    if !logged.records.is_empty() {
        let what = "its commit logs hold writes to replay into the substores";
        return Err(Error::needs_writable_open(&commit, what));
    }
    if !pending.batches.is_empty() {
        let what = "its batch logs hold batches to finish";
        return Err(Error::needs_writable_open(&commit, what));
    }
    Ok(Found {
        lock,
        dirs,
        dir_locks,
        leaves,
        ancestors,
        logged,
        pending,
    })
}
