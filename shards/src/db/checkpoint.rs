//! `Db::checkpoint(dir)`: an openable copy of the database as it was at one instant,
//! made while it serves (ARCHITECTURE.md, "Checkpoints").
//!
//! Order: take the batch gate whole (no batch is half applied) → hold every core (no
//! background step changes or removes a file) → pause every core (writes wait; open
//! extents of 1 MiB or more are sealed; every store is flushed, synced and listed:
//! with all cores paused at once, the listings are one state) → resume every core and
//! open the gate (writes stalled for one flush) → link the sealed extents and copy the
//! small open ones up to their listed ends into `DIR.partial` → release every core → sync, and rename `DIR.partial` to `DIR`.
//!
//! The copy holds no commit log and no batch log: every store was synced at the
//! pause, and no batch was in flight. A failure anywhere leaves at most
//! `DIR.partial`, never `DIR`, and the database goes on serving.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringkv_engine::format::META_FILE_NAME;

use super::{Db, Inner, cut};
use crate::core::StoreFiles;
use crate::error::{Error, Result};
use crate::layout::{self, HANDED_OVER_FILE_NAME, LOCK_FILE_NAME, SUBSTORES_DIR, io};
use crate::storage::Storage;

/// What a checkpoint took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointStats {
    /// Files shared with the database by a hard link (sealed extents, markers).
    pub linked_files: u64,
    pub linked_bytes: u64,
    /// Files copied: open extents (up to their records' end), and sealed ones when
    /// the checkpoint is on another file system.
    pub copied_files: u64,
    pub copied_bytes: u64,
    /// How long writes waited (every core paused).
    pub paused: Duration,
    /// How long the whole checkpoint took.
    pub elapsed: Duration,
}

impl Db {
    /// Writes a consistent copy of the database, as it was at one instant, to `dir`
    /// (which must not exist) while it goes on serving; open it as any database.
    /// Sealed extents are shared by hard links where `dir` is on the same file system
    /// (a later checkpoint shares the ones that have not changed), copied otherwise;
    /// an open extent is sealed first when it holds 1 MiB or more, else copied up to
    /// its last record. Writes wait only while every core flushes (and seals); batches
    /// are either all in or all out.
    ///
    /// Until it returns `Ok`, `dir` does not exist: the files being written are in
    /// `dir.partial`, which an interrupted checkpoint leaves behind (a later one
    /// refuses to start until it is removed).
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<CheckpointStats> {
        let started = Instant::now();
        let inner = &*self.inner;
        let fs = &inner.storage;
        let target = dir.as_ref().to_path_buf();
        let partial = partial_dir(fs, &target)?;
        let mut stats = futures_lite::future::block_on(copy_state(inner, &partial))?;
        finish(fs, &partial, &target)?;
        stats.elapsed = started.elapsed();
        Ok(stats)
    }
}

/// `target.partial`, created empty (with its `substores` and `commit` directories and
/// its lock file), once neither it nor `target` exists.
fn partial_dir(fs: &Storage, target: &Path) -> Result<PathBuf> {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    if name.is_empty() {
        return Err(Error::InvalidOptions(format!(
            "a checkpoint needs a directory name to create, not {}",
            target.display()
        )));
    }
    name.push(".partial");
    let partial = target.with_file_name(name);
    let exists = |path: &Path, why: &str| Error::Io {
        op: "creating a checkpoint in",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::AlreadyExists, why.to_owned()),
    };
    if layout::probe(fs, target)?.is_some() {
        return Err(exists(
            target,
            "it exists: a checkpoint makes a new directory",
        ));
    }
    if layout::probe(fs, &partial)?.is_some() {
        let why = "an interrupted checkpoint left it: remove it first";
        return Err(exists(&partial, why));
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        layout::create_db_dir(fs, parent)?;
    }
    for dir in [
        partial.clone(),
        partial.join(SUBSTORES_DIR),
        partial.join(crate::logs::COMMIT_DIR),
    ] {
        fs.create_dir(&dir).map_err(io("creating", &dir))?;
    }
    // A read-only open locks the file a writable open would (it creates none).
    let lock = partial.join(LOCK_FILE_NAME);
    fs.create_synced_file(&lock)
        .map_err(io("creating", &lock))?;
    Ok(partial)
}

/// The steps of the module documentation up to the release: every store's files, as
/// listed with every core paused, linked or copied into `partial`.
async fn copy_state(inner: &Inner, partial: &Path) -> Result<CheckpointStats> {
    let instant = cut::at_one_instant(inner, None).await?;
    let mut stats = CheckpointStats {
        paused: instant.paused,
        ..CheckpointStats::default()
    };
    for store in instant.listed.iter().flatten() {
        copy_store(
            &inner.storage,
            store,
            &partial.join(SUBSTORES_DIR),
            &mut stats,
        )?;
    }
    instant.held.release().await?;
    Ok(stats)
}

/// Links or copies one store's files into its directory under `substores`.
fn copy_store(
    fs: &Storage,
    store: &StoreFiles,
    substores: &Path,
    stats: &mut CheckpointStats,
) -> Result<()> {
    let name = store.dir.file_name().expect("a leaf directory has a name");
    let into = substores.join(name);
    fs.create_dir(&into).map_err(io("creating", &into))?;
    let mut shared = vec![META_FILE_NAME];
    if store.handed_over {
        shared.push(HANDED_OVER_FILE_NAME);
    }
    let sealed = store.extents.iter().filter(|e| e.sealed);
    shared.extend(sealed.map(|e| e.name.as_str()));
    for file in shared {
        share(fs, &store.dir.join(file), &into.join(file), stats)?;
    }
    for open in store.extents.iter().filter(|e| !e.sealed) {
        let (from, to) = (store.dir.join(&open.name), into.join(&open.name));
        fs.copy_prefix(&from, &to, open.len)
            .map_err(io("copying", &from))?;
        stats.copied_files += 1;
        stats.copied_bytes += open.len;
    }
    layout::sync_dir(fs, &into)
}

/// Makes `to` the file `from` is: a hard link, or a synced copy where the two are on
/// different file systems (or the file system has no hard links).
fn share(fs: &Storage, from: &Path, to: &Path, stats: &mut CheckpointStats) -> Result<()> {
    let len = fs.file_len(from).map_err(io("reading", from))?;
    match fs.hard_link(from, to) {
        Ok(()) => {
            stats.linked_files += 1;
            stats.linked_bytes += len;
            Ok(())
        }
        Err(e) if cannot_link(&e) => {
            fs.copy_prefix(from, to, len).map_err(io("copying", from))?;
            stats.copied_files += 1;
            stats.copied_bytes += len;
            Ok(())
        }
        Err(e) => Err(io("linking", from)(e)),
    }
}

fn cannot_link(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::CrossesDevices
            | io::ErrorKind::Unsupported
            | io::ErrorKind::PermissionDenied
    )
}

/// Syncs the finished copy's directories and renames it to `target` (the commit point),
/// then syncs `target`'s parent.
fn finish(fs: &Storage, partial: &Path, target: &Path) -> Result<()> {
    layout::sync_dir(fs, &partial.join(SUBSTORES_DIR))?;
    layout::sync_dir(fs, &partial.join(crate::logs::COMMIT_DIR))?;
    layout::sync_dir(fs, partial)?;
    fs.rename(partial, target)
        .map_err(io("renaming", partial))?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty());
    layout::sync_dir(fs, parent.unwrap_or(Path::new(".")))
}
