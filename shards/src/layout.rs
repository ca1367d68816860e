//! The database directory and how its leaves are assigned to cores.
//!
//! ```text
//! DIR/LOCK                      flock'ed while a process has the database open
//! DIR/substores/P-HHHHHHHHHHHHHHHH/   one leaf of the 16-ary hash trie, a substore:
//!                               P = prefix bits (2 hex digits), H = hash prefix
//! DIR/substores/.../HANDED-OVER an ancestor: a split parent handed over to its 16
//!                               children (SplitMode::HandOver), read behind them
//!                               until its records have moved
//! ```
//!
//! A new database starts with the 16 leaves of depth 1 (prefix_bits 4), created in
//! `substores.tmp` and renamed into place, so a crash never leaves a partial trie. At
//! open, the leaves must tile the hash space exactly; they are then assigned to cores
//! largest first to the least-loaded core, and the routing table (top
//! [`ROUTE_BITS`] bits of the hash → core) is built once and never changes while open.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use ringkv_engine::SubstoreId;

use crate::error::{Error, Result};

pub(crate) const LOCK_FILE_NAME: &str = "LOCK";
pub(crate) const SUBSTORES_DIR: &str = "substores";
pub(crate) const SUBSTORES_TMP_DIR: &str = "substores.tmp";
/// A split parent renamed this way is no longer a leaf: its 16 children are.
pub(crate) const RETIRED_SUFFIX: &str = ".retired";
/// The file that makes a leaf an ancestor: the commit point of a hand-over split.
pub(crate) const HANDED_OVER_FILE_NAME: &str = "HANDED-OVER";
/// Depth of a new database's trie, in bits (16 leaves).
const INITIAL_PREFIX_BITS: u8 = 4;
/// The routing table covers the top ROUTE_BITS bits of the hash.
pub(crate) const ROUTE_BITS: u8 = 8;

/// The exclusive lock on a database directory; released when dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _lock: Flock<File>,
}

pub(crate) fn lock(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io {
            op: "opening the lock file",
            path: path.clone(),
            source,
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(DirLock { _lock: lock }),
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

/// One leaf of the trie: a substore and where it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub(crate) id: SubstoreId,
    pub(crate) dir: PathBuf,
    pub(crate) size_bytes: u64,
}

pub(crate) fn leaf_dir_name(id: &SubstoreId) -> String {
    format!("{:02x}-{:016x}", id.prefix_bits, id.hash_prefix)
}

pub(crate) fn parse_leaf_dir_name(name: &str) -> Option<(u8, u64)> {
    let (bits, prefix) = name.split_once('-')?;
    if bits.len() != 2 || prefix.len() != 16 {
        return None;
    }
    Some((
        u8::from_str_radix(bits, 16).ok()?,
        u64::from_str_radix(prefix, 16).ok()?,
    ))
}

/// The substore id of a leaf: its prefix bits and prefix packed into one number.
pub(crate) fn leaf_id(prefix_bits: u8, hash_prefix: u64) -> SubstoreId {
    let value = if prefix_bits == 0 {
        0
    } else {
        hash_prefix >> (64 - u32::from(prefix_bits))
    };
    SubstoreId {
        id: u64::from(prefix_bits) << 56 | value,
        hash_prefix,
        prefix_bits,
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the directory", path))
}

/// Creates the initial trie if the database is new, then lists and checks the leaves.
#[cfg(test)]
pub(crate) fn leaves(dir: &Path) -> Result<Vec<Leaf>> {
    scan(dir).map(|(leaves, _)| leaves)
}

/// [`leaves`], and the ancestors (handed-over parents) behind them.
pub(crate) fn scan(dir: &Path) -> Result<(Vec<Leaf>, Vec<Leaf>)> {
    let substores = dir.join(SUBSTORES_DIR);
    if !substores.exists() {
        let tmp = dir.join(SUBSTORES_TMP_DIR);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(io("creating", &tmp))?;
        let shift = 64 - u32::from(INITIAL_PREFIX_BITS);
        for i in 0..1u64 << INITIAL_PREFIX_BITS {
            let id = leaf_id(INITIAL_PREFIX_BITS, i << shift);
            let leaf = tmp.join(leaf_dir_name(&id));
            std::fs::create_dir(&leaf).map_err(io("creating", &leaf))?;
        }
        sync_dir(&tmp)?;
        std::fs::rename(&tmp, &substores).map_err(io("renaming", &tmp))?;
        sync_dir(dir)?;
    }
    let mut leaves = Vec::new();
    let mut ancestors = Vec::new();
    let mut cleaned = false;
    for entry in std::fs::read_dir(&substores).map_err(io("listing", &substores))? {
        let entry = entry.map_err(io("listing", &substores))?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(RETIRED_SUFFIX) {
            // A committed split whose parent was not yet removed.
            std::fs::remove_dir_all(entry.path()).map_err(io("removing", &entry.path()))?;
            cleaned = true;
            continue;
        }
        let Some((bits, prefix)) = name.to_str().and_then(parse_leaf_dir_name) else {
            continue;
        };
        let path = entry.path();
        // Prefix bits are checked before they are used to shift.
        let valid = bits <= 64 && bits % 4 == 0;
        let id = leaf_id(bits.min(64), prefix);
        if !valid || leaf_dir_name(&id) != name.to_string_lossy() {
            return Err(Error::Layout {
                path,
                what: "not a valid leaf name".into(),
            });
        }
        let size_bytes = dir_size(&path)?;
        let leaf = Leaf {
            id,
            dir: path,
            size_bytes,
        };
        if leaf.dir.join(HANDED_OVER_FILE_NAME).exists() {
            ancestors.push(leaf);
        } else {
            leaves.push(leaf);
        }
    }
    // Children of a split that never committed lie inside a leaf that is still there.
    let parents: Vec<SubstoreId> = leaves.iter().map(|l| l.id).collect();
    let mut kept = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        let inside_another = parents
            .iter()
            .any(|p| p.prefix_bits < leaf.id.prefix_bits && p.covers(leaf.id.hash_prefix));
        if inside_another {
            std::fs::remove_dir_all(&leaf.dir).map_err(io("removing", &leaf.dir))?;
            cleaned = true;
        } else {
            kept.push(leaf);
        }
    }
    if cleaned {
        sync_dir(&substores)?;
    }
    let mut leaves = kept;
    check_tiling(&substores, &mut leaves)?;
    ancestors.sort_by_key(|l| l.id.hash_prefix);
    for ancestor in &ancestors {
        let covered = leaves
            .iter()
            .filter(|l| ancestor.id.covers(l.id.hash_prefix))
            .count();
        if covered != 16
            || ancestors
                .iter()
                .any(|a| a != ancestor && a.id.covers(ancestor.id.hash_prefix))
        {
            return Err(Error::Layout {
                path: ancestor.dir.clone(),
                what: format!("an ancestor must lie behind exactly 16 leaves; it covers {covered}"),
            });
        }
    }
    Ok((leaves, ancestors))
}

/// The commit point of a hand-over split: `parent` (whose 16 children exist) becomes
/// an ancestor, durably, before any write reaches a child.
pub(crate) fn hand_over(parent: &Leaf) -> Result<()> {
    let marker = parent.dir.join(HANDED_OVER_FILE_NAME);
    File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(io("creating", &marker))?;
    sync_dir(&parent.dir)
}

/// Creates the directories of the 16 children of `parent`, beside it.
pub(crate) fn create_children(parent: &Leaf) -> Result<Vec<Leaf>> {
    let substores = parent.dir.parent().expect("leaves live in substores/");
    let mut children = Vec::with_capacity(16);
    for nibble in 0..16u8 {
        let child = ringkv_engine::hash::child_id(&parent.id, nibble, 0);
        let id = leaf_id(child.prefix_bits, child.hash_prefix);
        let dir = substores.join(leaf_dir_name(&id));
        std::fs::create_dir(&dir).map_err(io("creating", &dir))?;
        children.push(Leaf {
            id,
            dir,
            size_bytes: 0,
        });
    }
    sync_dir(substores)?;
    Ok(children)
}

/// The commit point of a split: the parent stops being a leaf (an atomic rename, made
/// durable), then its files are removed.
pub(crate) fn retire(parent: &Leaf) -> Result<()> {
    let substores = parent.dir.parent().expect("leaves live in substores/");
    let mut retired = parent.dir.clone().into_os_string();
    retired.push(RETIRED_SUFFIX);
    let retired = PathBuf::from(retired);
    std::fs::rename(&parent.dir, &retired).map_err(io("retiring", &parent.dir))?;
    sync_dir(substores)?;
    std::fs::remove_dir_all(&retired).map_err(io("removing", &retired))?;
    sync_dir(substores)
}

fn dir_size(path: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path).map_err(io("listing", path))? {
        let meta = entry
            .and_then(|e| e.metadata())
            .map_err(io("inspecting", path))?;
        total += meta.len();
    }
    Ok(total)
}

/// The leaves must cover every hash exactly once.
pub(crate) fn check_tiling(substores: &Path, leaves: &mut [Leaf]) -> Result<()> {
    leaves.sort_by_key(|l| l.id.hash_prefix);
    let mut next: u128 = 0;
    for leaf in leaves.iter() {
        let width = 1u128 << (64 - u32::from(leaf.id.prefix_bits));
        if u128::from(leaf.id.hash_prefix) != next {
            return Err(Error::Layout {
                path: substores.to_path_buf(),
                what: format!(
                    "the leaves do not tile the hash space: {} starts a gap or an overlap",
                    leaf.dir.display()
                ),
            });
        }
        next += width;
    }
    if next != 1u128 << 64 {
        return Err(Error::Layout {
            path: substores.to_path_buf(),
            what: "the leaves do not cover the whole hash space".into(),
        });
    }
    Ok(())
}

/// Leaves per core and the routing table.
#[derive(Debug)]
pub(crate) struct Assignment {
    pub(crate) per_core: Vec<Vec<Leaf>>,
    /// Ancestors per core: each on the core of all the leaves it lies behind.
    pub(crate) ancestors: Vec<Vec<Leaf>>,
    /// Core of each value of the top ROUTE_BITS bits of the hash.
    pub(crate) route: Box<[u16]>,
}

/// Balances leaves over `cores` by size. Leaves deeper than ROUTE_BITS are grouped under
/// their ancestor at ROUTE_BITS so that one routing entry names one core; the leaves
/// behind a handed-over ancestor are grouped with it, so that one core owns them all.
pub(crate) fn assign(leaves: &[Leaf], ancestors: &[Leaf], cores: usize) -> Assignment {
    assert!(cores > 0 && cores <= usize::from(u16::MAX));
    let route_shift = 64 - u32::from(ROUTE_BITS);
    // The route entries a group spans: its own, or those of the ancestor it lies behind.
    let span = |leaf: &Leaf| {
        let unit = ancestors
            .iter()
            .find(|a| a.id.covers(leaf.id.hash_prefix))
            .map_or(leaf.id, |a| a.id);
        let first = (unit.hash_prefix >> route_shift) as usize;
        (first, 1usize << ROUTE_BITS.saturating_sub(unit.prefix_bits))
    };
    // Groups: (first route entry, entry count, leaves, bytes).
    let mut groups: Vec<(usize, usize, Vec<Leaf>, u64)> = Vec::new();
    for leaf in leaves {
        let (first, count) = span(leaf);
        match groups.last_mut() {
            Some(g) if g.0 == first && g.1 == count => {
                g.2.push(leaf.clone());
                g.3 += leaf.size_bytes;
            }
            _ => groups.push((first, count, vec![leaf.clone()], leaf.size_bytes)),
        }
    }
    // Largest first onto the least-loaded core; ties broken by fewest leaves, so equal
    // empty leaves spread round-robin.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| (std::cmp::Reverse(groups[g].3), groups[g].0));
    let mut load = vec![(0u64, 0usize); cores];
    let mut route = vec![u16::MAX; 1 << ROUTE_BITS].into_boxed_slice();
    let mut per_core = vec![Vec::new(); cores];
    for g in order {
        let core = (0..cores).min_by_key(|&c| (load[c], c)).expect("cores > 0");
        let (first, count, group, bytes) = &groups[g];
        load[core].0 += bytes;
        load[core].1 += group.len();
        route[*first..first + count].fill(core as u16);
        per_core[core].extend(group.iter().cloned());
    }
    assert!(
        route.iter().all(|&c| c != u16::MAX),
        "every route entry assigned"
    );
    let mut per_core_ancestors = vec![Vec::new(); cores];
    for ancestor in ancestors {
        let core = route[(ancestor.id.hash_prefix >> route_shift) as usize];
        per_core_ancestors[usize::from(core)].push(ancestor.clone());
    }
    Assignment {
        per_core,
        ancestors: per_core_ancestors,
        route,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_gets_sixteen_leaves_that_tile_the_space() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(dir.path()).unwrap();
        assert_eq!(leaves.len(), 16);
        let again = super::leaves(dir.path()).unwrap();
        assert_eq!(leaves, again);
    }

    #[test]
    fn a_missing_leaf_is_a_layout_error() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(dir.path()).unwrap();
        std::fs::remove_dir(&leaves[3].dir).unwrap();
        assert!(matches!(
            super::leaves(dir.path()),
            Err(Error::Layout { .. })
        ));
    }

    #[test]
    fn assignment_balances_and_routes_every_hash() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(dir.path()).unwrap();
        for cores in 1..=5 {
            let a = assign(&leaves, &[], cores);
            let counts: Vec<usize> = a.per_core.iter().map(Vec::len).collect();
            assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
            for (core, owned) in a.per_core.iter().enumerate() {
                for leaf in owned {
                    let entry = (leaf.id.hash_prefix >> 56) as usize;
                    assert_eq!(a.route[entry] as usize, core);
                }
            }
        }
    }

    #[test]
    fn uncommitted_children_are_removed_and_retired_parents_too() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(dir.path()).unwrap();
        let children = create_children(&leaves[5]).unwrap();
        assert_eq!(children.len(), 16);
        // Not committed: the parent is still a leaf, so the children go.
        let again = super::leaves(dir.path()).unwrap();
        assert_eq!(again, leaves);
        assert!(!children[0].dir.exists());
        // Committed: the parent is retired, the children stay.
        let children = create_children(&leaves[5]).unwrap();
        retire(&leaves[5]).unwrap();
        let after = super::leaves(dir.path()).unwrap();
        assert_eq!(after.len(), 31);
        assert!(children.iter().all(|c| after.contains(c)));
        // A crash between the rename and the removal: the retired parent is cleaned up.
        let retired = dir
            .path()
            .join(SUBSTORES_DIR)
            .join("04-1000000000000000.retired");
        std::fs::create_dir(&retired).unwrap();
        assert_eq!(super::leaves(dir.path()).unwrap(), after);
        assert!(!retired.exists());
    }

    #[test]
    fn a_leaf_name_with_too_many_prefix_bits_is_a_layout_error() {
        let dir = tempfile::tempdir().unwrap();
        leaves(dir.path()).unwrap();
        let bad = dir.path().join(SUBSTORES_DIR).join("48-0000000000000000");
        std::fs::create_dir(bad).unwrap();
        assert!(matches!(
            super::leaves(dir.path()),
            Err(Error::Layout { .. })
        ));
    }

    #[test]
    fn second_lock_fails_with_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        assert!(matches!(lock(dir.path()), Err(Error::Locked { .. })));
        drop(first);
        lock(dir.path()).unwrap();
    }
}
