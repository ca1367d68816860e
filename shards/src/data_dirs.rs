//! The directories that hold a database's substores (`Options::data_dirs`): the home
//! directory (the path given to `Db::open`) always, and others beside it, one per
//! device, so that one database spreads its extents over several drives.
//!
//! ```text
//! HOME/DATA-DIRS            the other directories, one absolute path per line, and
//!                           the database's identity (absent: the home alone)
//! OTHER/RINGKV-DATA         marker: this directory belongs to the database of that
//!                           identity
//! OTHER/LOCK                flock'ed while a process has the database open
//! OTHER/substores/…         leaves, exactly as in the home's `substores/`
//! ```
//!
//! Invariants, so that opening never loses or forgets data:
//! - A directory is written into `DATA-DIRS` (atomically: a new file renamed over the
//!   old, then the home synced) only once its marker and `substores/` are durable, and
//!   before any leaf is placed in it.
//! - The database's identity is in `DATA-DIRS` before any marker names it, and a
//!   marker is written whole or not at all (renamed into place): a power cut while a
//!   directory is adopted leaves one the next open takes as this database's.
//! - A listed directory is dropped from the list only while its `substores/` is empty.
//! - A listed directory without its marker is refused, never recreated: a device that
//!   is not mounted shows an empty mount point.
//! - A directory whose marker names another database is refused.
//!
//! Deciding (which directory a split's children go to, which core serves which
//! directory) is kept here; the layout does the file work.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::{self, DirLock, LOCK_FILE_NAME, SUBSTORES_DIR, io};
use crate::storage::Storage;

pub(crate) const DATA_DIRS_FILE: &str = "DATA-DIRS";
pub(crate) const MARKER_FILE: &str = "RINGKV-DATA";
const LIST_HEADER: &str = "ringkv data directories v1";
const MARKER_HEADER: &str = "ringkv data directory v1";
/// Children of a split stay in their parent's directory unless another has this much
/// more free space (in parts per 1000 of the parent's): growth drifts to emptier
/// devices without moving leaves back and forth over small differences.
const MOVE_FREE_MARGIN_PER_MILLE: u128 = 1100;

/// The directories holding substores; index 0 is the home.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DataDirs {
    dirs: Vec<PathBuf>,
}

/// What `DATA-DIRS` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Listed {
    id: u64,
    others: Vec<PathBuf>,
}

impl DataDirs {
    /// The home alone (a database without `DATA-DIRS`).
    pub(crate) fn home_only(home: &Path) -> Self {
        Self::new(home, &[])
    }

    /// The home and `others`, as resolved at open.
    pub(crate) fn new(home: &Path, others: &[PathBuf]) -> Self {
        let mut dirs = vec![home.to_path_buf()];
        dirs.extend(others.iter().cloned());
        Self { dirs }
    }

    pub(crate) fn len(&self) -> usize {
        self.dirs.len()
    }

    /// The database's own directory (`Db::open`'s path).
    pub(crate) fn home(&self) -> &Path {
        &self.dirs[0]
    }

    /// The directories besides the home.
    pub(crate) fn others(&self) -> &[PathBuf] {
        &self.dirs[1..]
    }

    /// `substores/` of directory `i`.
    pub(crate) fn substores(&self, i: usize) -> PathBuf {
        self.dirs[i].join(SUBSTORES_DIR)
    }

    /// Which directory the leaf directory `leaf_dir` lies in (the home when unknown).
    pub(crate) fn index_of(&self, leaf_dir: &Path) -> usize {
        let data_dir = leaf_dir.parent().and_then(Path::parent);
        let found = self.dirs.iter().position(|d| Some(d.as_path()) == data_dir);
        found.unwrap_or(0)
    }

    /// The directory the 16 children of the leaf in `parent_dir` go to (see
    /// [`children_dir`]).
    pub(crate) fn for_children(&self, fs: &Storage, parent_dir: &Path) -> usize {
        let free: Vec<u64> = self.dirs.iter().map(|d| fs.free_bytes(d)).collect();
        children_dir(&free, self.index_of(parent_dir))
    }

    /// The fewest free bytes of any directory (`u64::MAX` when unknown).
    pub(crate) fn free_bytes_min(&self, fs: &Storage) -> u64 {
        self.dirs
            .iter()
            .map(|d| fs.free_bytes(d))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Whether core `core` of `cores` serves directory `dir` first: with at least as
    /// many cores as directories, each core one directory; with fewer, each core a few.
    pub(crate) fn affine(&self, core: usize, cores: usize, dir: usize) -> bool {
        let n = self.dirs.len();
        match cores >= n {
            true => core % n == dir,
            false => dir % cores == core,
        }
    }
}

/// Where a split's children go, given each directory's free bytes and the parent's
/// directory: the one with the most free space if it has clearly more than the
/// parent's, else the parent's.
fn children_dir(free: &[u64], parent: usize) -> usize {
    let best = (0..free.len()).max_by_key(|&i| (free[i], i == parent));
    match best {
        Some(best)
            if u128::from(free[best]) * 1000
                > u128::from(free[parent]) * MOVE_FREE_MARGIN_PER_MILLE =>
        {
            best
        }
        _ => parent,
    }
}

/// The directories of the database in `home` and their locks, after bringing
/// `DATA-DIRS` in line with `requested` (empty: as listed). Writable only; see
/// [`resolve_read_only`].
pub(crate) fn resolve(
    fs: &Storage,
    home: &Path,
    requested: &[PathBuf],
) -> Result<(DataDirs, Vec<DirLock>)> {
    let listed = read_listed(fs, home)?;
    if listed.is_none() && requested.is_empty() {
        return Ok((DataDirs::home_only(home), Vec::new()));
    }
    let (listed, fresh) = match listed {
        Some(listed) => (listed, false),
        None => {
            let id = new_id(home);
            let others = Vec::new();
            (Listed { id, others }, true)
        }
    };
    let others = match requested.is_empty() {
        true => listed.others.clone(),
        false => requested_dirs(fs, home, requested, true)?,
    };
    if fresh {
        // The identity is durable before any marker names it: a power cut while a
        // directory is adopted leaves a marker the next open recognises.
        write_listed(fs, home, &listed)?;
    }
    for dropped in listed.others.iter().filter(|d| !others.contains(d)) {
        // Only a directory seen to be this database's, and empty, is forgotten.
        check_marker(fs, dropped, listed.id)?;
        if holds_substores(fs, dropped)? {
            return Err(Error::Layout {
                path: dropped.clone(),
                what: "holds substores of this database: keep it in Options::data_dirs \
                       (moving substores between directories is not supported)"
                    .into(),
            });
        }
    }
    let mut locks = Vec::with_capacity(others.len());
    for dir in &others {
        match listed.others.contains(dir) {
            true => check_marker(fs, dir, listed.id)?,
            false => adopt(fs, home, dir, listed.id)?,
        }
        locks.push(layout::lock(fs, dir)?);
    }
    let now = Listed {
        id: listed.id,
        others,
    };
    if now != listed {
        write_listed(fs, home, &now)?;
    }
    Ok((DataDirs::new(home, &now.others), locks))
}

/// The directories of the database in `home` as `DATA-DIRS` lists them, each checked
/// and locked shared; nothing is created or changed. `requested`, when given, must be
/// the listed set.
pub(crate) fn resolve_read_only(
    fs: &Storage,
    home: &Path,
    requested: &[PathBuf],
) -> Result<(DataDirs, Vec<DirLock>)> {
    let Some(listed) = read_listed(fs, home)? else {
        if let Some(dir) = requested.first() {
            let what = "it is not one of the database's directories yet (a writable open \
                        adds it)";
            return Err(Error::needs_writable_open(dir, what));
        }
        return Ok((DataDirs::home_only(home), Vec::new()));
    };
    if !requested.is_empty() && requested_dirs(fs, home, requested, false)? != listed.others {
        let what = "Options::data_dirs differs from the directories DATA-DIRS lists (a \
                    writable open changes the list)";
        return Err(Error::needs_writable_open(&home.join(DATA_DIRS_FILE), what));
    }
    let mut locks = Vec::with_capacity(listed.others.len());
    for dir in &listed.others {
        check_marker(fs, dir, listed.id)?;
        locks.push(fs.lock_shared(dir, &dir.join(LOCK_FILE_NAME))?);
    }
    Ok((DataDirs::new(home, &listed.others), locks))
}

/// The directories `DATA-DIRS` in `home` lists besides it, each with what opening
/// would refuse about its marker, if anything (for `verify`, which changes nothing).
pub(crate) fn listed_for_verify(home: &Path) -> Result<Vec<(PathBuf, Option<Error>)>> {
    let Some(listed) = read_listed(&Storage::Real, home)? else {
        return Ok(Vec::new());
    };
    let checked = listed.others.into_iter().map(|dir| {
        let refused = check_marker(&Storage::Real, &dir, listed.id).err();
        (dir, refused)
    });
    Ok(checked.collect())
}

/// `requested`, made absolute (and created where missing when `create`); none may be
/// the home, lie inside another, or appear twice.
fn requested_dirs(
    fs: &Storage,
    home: &Path,
    requested: &[PathBuf],
    create: bool,
) -> Result<Vec<PathBuf>> {
    // Checked as written before anything is created, then as resolved (links).
    let lexical: Vec<PathBuf> = requested
        .iter()
        .map(|d| absolute(d))
        .collect::<Result<_>>()?;
    check_apart(&absolute(home)?, &lexical)?;
    let mut dirs = Vec::with_capacity(requested.len());
    for dir in requested {
        if create {
            layout::create_db_dir(fs, dir)?;
        }
        dirs.push(fs.canonicalize(dir).map_err(io("resolving", dir))?);
    }
    let home = fs.canonicalize(home).map_err(io("resolving", home))?;
    check_apart(&home, &dirs)?;
    Ok(dirs)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(io("resolving", path))
}

/// None of `dirs` is `home`, lies inside another or `home`, or appears twice; none
/// holds a line break (`DATA-DIRS` lists one per line).
fn check_apart(home: &Path, dirs: &[PathBuf]) -> Result<()> {
    for (i, dir) in dirs.iter().enumerate() {
        let clash = std::iter::once(home)
            .chain(dirs[..i].iter().map(PathBuf::as_path))
            .find(|d| d.starts_with(dir) || dir.starts_with(d));
        if let Some(clash) = clash {
            return Err(Error::InvalidOptions(format!(
                "data directory {} overlaps {} (each must be a separate directory, \
                 none inside another or the database's own)",
                dir.display(),
                clash.display()
            )));
        }
        if dir.as_os_str().as_bytes().contains(&b'\n') {
            return Err(Error::InvalidOptions(format!(
                "data directory {dir:?}: a path with a line break cannot be listed"
            )));
        }
    }
    Ok(())
}

/// Whether `dir/substores` holds anything.
fn holds_substores(fs: &Storage, dir: &Path) -> Result<bool> {
    let substores = dir.join(SUBSTORES_DIR);
    match fs.read_dir(&substores) {
        Ok(entries) => Ok(!entries.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("listing", &substores)(e)),
    }
}

/// Makes `dir` one of the database's directories: its marker and `substores/`,
/// durable. A directory with substores but no marker, or another database's marker,
/// is refused.
fn adopt(fs: &Storage, home: &Path, dir: &Path, id: u64) -> Result<()> {
    let marker = dir.join(MARKER_FILE);
    match layout::probe(fs, &marker)? {
        Some(_) => check_marker(fs, dir, id)?,
        None if holds_substores(fs, dir)? => {
            return Err(Error::Layout {
                path: dir.to_path_buf(),
                what: format!(
                    "holds substores but no {MARKER_FILE} marker: not a directory of this \
                     database"
                ),
            });
        }
        None => {
            let text = format!("{MARKER_HEADER}\nid {id:016x}\nhome {}\n", home.display());
            replace_file(fs, dir, MARKER_FILE, text.as_bytes())?;
        }
    }
    let substores = dir.join(SUBSTORES_DIR);
    if layout::probe(fs, &substores)?.is_none() {
        fs.create_dir(&substores)
            .map_err(io("creating", &substores))?;
    }
    layout::sync_dir(fs, dir)
}

/// `dir`'s marker must name database `id`.
fn check_marker(fs: &Storage, dir: &Path, id: u64) -> Result<()> {
    let marker = dir.join(MARKER_FILE);
    let text = match fs.read_file(&marker) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Layout {
                path: dir.to_path_buf(),
                what: format!(
                    "listed in {DATA_DIRS_FILE} as holding part of the database, but it has \
                     no {MARKER_FILE} marker: is its device mounted? (refused: nothing is \
                     created in its place)"
                ),
            });
        }
        Err(e) => return Err(io("reading", &marker)(e)),
    };
    let found = parse_id(&text, MARKER_HEADER);
    match found {
        Some(found) if found == id => Ok(()),
        Some(_) => Err(Error::Layout {
            path: dir.to_path_buf(),
            what: "belongs to another database (its marker names another identity)".into(),
        }),
        None => Err(Error::Layout {
            path: marker,
            what: "not a ringkv data directory marker".into(),
        }),
    }
}

/// The id on the second line of `text` if its first line is `header`.
fn parse_id(text: &[u8], header: &str) -> Option<u64> {
    let mut lines = text.split(|&b| b == b'\n');
    (lines.next()? == header.as_bytes()).then_some(())?;
    let id = std::str::from_utf8(lines.next()?.strip_prefix(b"id ")?).ok()?;
    u64::from_str_radix(id, 16).ok()
}

fn read_listed(fs: &Storage, home: &Path) -> Result<Option<Listed>> {
    let path = home.join(DATA_DIRS_FILE);
    if layout::probe(fs, &path)?.is_none() {
        return Ok(None);
    }
    let text = fs.read_file(&path).map_err(io("reading", &path))?;
    let bad = || Error::Layout {
        path: path.clone(),
        what: format!("not a list of data directories (expected \"{LIST_HEADER}\" first)"),
    };
    let id = parse_id(&text, LIST_HEADER).ok_or_else(bad)?;
    let others = text
        .split(|&b| b == b'\n')
        .skip(2)
        .filter(|line| !line.is_empty())
        .map(|line| PathBuf::from(OsStr::from_bytes(line)))
        .collect::<Vec<_>>();
    if others.iter().any(|p| p.is_relative()) {
        return Err(bad());
    }
    Ok(Some(Listed { id, others }))
}

/// Replaces `DATA-DIRS` atomically: a new file, synced, renamed over it, the home synced.
fn write_listed(fs: &Storage, home: &Path, listed: &Listed) -> Result<()> {
    let mut text = format!("{LIST_HEADER}\nid {:016x}\n", listed.id).into_bytes();
    for dir in &listed.others {
        text.extend_from_slice(dir.as_os_str().as_bytes());
        text.push(b'\n');
    }
    replace_file(fs, home, DATA_DIRS_FILE, &text)
}

/// Makes `dir/name` hold `bytes` whole, or leaves it as it was, through a power cut: a
/// new file (`name.tmp`), synced, renamed over it, then `dir` synced.
fn replace_file(fs: &Storage, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    fs.write_synced_file(&tmp, bytes)
        .map_err(io("writing", &tmp))?;
    let path = dir.join(name);
    fs.rename(&tmp, &path).map_err(io("renaming", &tmp))?;
    layout::sync_dir(fs, dir)
}

/// A new database's identity: distinct for databases created apart.
fn new_id(home: &Path) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    ahash::RandomState::new().hash_one((nanos, std::process::id(), home))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_go_to_clearly_emptier_devices_else_beside_their_parent() {
        assert_eq!(children_dir(&[100, 100, 100], 1), 1);
        assert_eq!(children_dir(&[100, 109, 50], 0), 0, "within the margin");
        assert_eq!(children_dir(&[100, 200, 150], 0), 1);
        assert_eq!(children_dir(&[100, 200, 150], 2), 1);
        assert_eq!(children_dir(&[0, 0], 1), 1);
        assert_eq!(
            children_dir(&[u64::MAX, u64::MAX], 0),
            0,
            "unknown free space"
        );
    }

    #[test]
    fn lists_and_markers_read_back_and_reject_what_they_are_not() {
        let listed = Listed {
            id: 0xfeed,
            others: vec![PathBuf::from("/mnt/a"), PathBuf::from("/mnt/b c")],
        };
        let dir = tempfile::tempdir().unwrap();
        write_listed(&Storage::Real, dir.path(), &listed).unwrap();
        assert_eq!(
            read_listed(&Storage::Real, dir.path()).unwrap(),
            Some(listed)
        );
        std::fs::write(dir.path().join(DATA_DIRS_FILE), "something else\n").unwrap();
        assert!(read_listed(&Storage::Real, dir.path()).is_err());
        let relative = format!("{LIST_HEADER}\nid 00000000000000ff\nrelative/path\n");
        std::fs::write(dir.path().join(DATA_DIRS_FILE), relative).unwrap();
        assert!(read_listed(&Storage::Real, dir.path()).is_err());
        assert_eq!(
            parse_id(b"ringkv data directory v1\nid 00ff\n", MARKER_HEADER),
            Some(255)
        );
        assert_eq!(
            parse_id(b"ringkv data directory v1\nid zz\n", MARKER_HEADER),
            None
        );
    }
}
