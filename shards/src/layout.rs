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

use std::path::{Path, PathBuf};

use ringkv_engine::SubstoreId;

use crate::data_dirs::DataDirs;
use crate::error::{Error, Result};
use crate::storage::{Kind, Storage};

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

pub(crate) use crate::storage::DirLock;

pub(crate) fn lock(fs: &Storage, dir: &Path) -> Result<DirLock> {
    fs.lock(dir, &dir.join(LOCK_FILE_NAME))
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

pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

pub(crate) fn sync_dir(fs: &Storage, path: &Path) -> Result<()> {
    fs.sync_dir(path).map_err(io("syncing the directory", path))
}

/// Creates the database directory `dir` if it is missing, with any missing directory
/// above it, and makes each creation durable (the parent's sync) before writing in it:
/// otherwise a power cut could take the whole directory, acknowledged writes and all.
pub(crate) fn create_db_dir(fs: &Storage, dir: &Path) -> Result<()> {
    if probe(fs, dir)?.is_some() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_db_dir(fs, parent)?;
    }
    fs.create_dir(dir).map_err(io("creating", dir))?;
    sync_dir(fs, parent.unwrap_or(Path::new(".")))
}

/// Creates the initial trie if the database is new, then lists and checks the leaves.
#[cfg(test)]
pub(crate) fn leaves(dir: &Path) -> Result<Vec<Leaf>> {
    let dirs = DataDirs::home_only(dir);
    scan(&Storage::Real, &dirs).map(|(leaves, _)| leaves)
}

/// [`leaves`], and the ancestors (handed-over parents) behind them, over every data
/// directory. Nothing is removed until the whole layout has been read and checked:
/// every removal is of something a crash left behind that was never acknowledged
/// (ARCHITECTURE.md, "Destructive steps at open").
pub(crate) fn scan(fs: &Storage, dirs: &DataDirs) -> Result<(Vec<Leaf>, Vec<Leaf>)> {
    if !dir_present(fs, &dirs.substores(0))? {
        create_trie(fs, dirs)?;
    }
    let plan = plan(&dirs.substores(0), list_all(fs, dirs)?)?;
    for path in &plan.remove {
        fs.remove_dir_all(path).map_err(io("removing", path))?;
    }
    let mut synced: Vec<&Path> = Vec::new();
    for parent in plan.remove.iter().filter_map(|p| p.parent()) {
        if !synced.contains(&parent) {
            sync_dir(fs, parent)?;
            synced.push(parent);
        }
    }
    Ok((plan.leaves, plan.ancestors))
}

/// [`scan`] for a read-only open: changes nothing, and refuses a directory where a
/// writable open would create or remove something.
pub(crate) fn scan_read_only(fs: &Storage, dirs: &DataDirs) -> Result<(Vec<Leaf>, Vec<Leaf>)> {
    let home = dirs.home();
    if !dir_present(fs, &dirs.substores(0))? {
        let what = "it holds no database yet (no substores directory)";
        return Err(Error::needs_writable_open(home, what));
    }
    let plan = plan(&dirs.substores(0), list_all(fs, dirs)?)?;
    if let Some(path) = plan.remove.first() {
        let what = "a split left it behind (unfinished, or finished and not yet cleaned up)";
        return Err(Error::needs_writable_open(path, what));
    }
    Ok((plan.leaves, plan.ancestors))
}

/// The listings of every data directory's `substores/`, as one.
fn list_all(fs: &Storage, dirs: &DataDirs) -> Result<Listing> {
    let mut all = Listing::default();
    for i in 0..dirs.len() {
        let substores = dirs.substores(i);
        if !dir_present(fs, &substores)? {
            return Err(Error::Layout {
                path: substores,
                what: "a data directory of the database has no substores directory".into(),
            });
        }
        let one = list(fs, &substores)?;
        all.leaves.extend(one.leaves);
        all.ancestors.extend(one.ancestors);
        all.retired.extend(one.retired);
    }
    Ok(all)
}

/// What is at `path`, without following a last symbolic link. `None` only when nothing
/// is there (ENOENT): a path that cannot be inspected is an error, never "absent".
pub(crate) fn probe(fs: &Storage, path: &Path) -> Result<Option<Kind>> {
    fs.probe(path).map_err(io("inspecting", path))
}

/// Whether the directory `path` exists (a symbolic link to one counts); anything else
/// at that name is a layout error.
fn dir_present(fs: &Storage, path: &Path) -> Result<bool> {
    let is_dir = match probe(fs, path)? {
        None => return Ok(false),
        Some(Kind::Symlink) => fs
            .is_dir_followed(path)
            .map_err(io("following the link", path))?,
        Some(kind) => kind == Kind::Dir,
    };
    match is_dir {
        true => Ok(true),
        false => Err(Error::Layout {
            path: path.to_path_buf(),
            what: "expected a directory".into(),
        }),
    }
}

/// Whether the leaf in `dir` is an ancestor: its `HANDED-OVER` marker is a regular file.
/// Only a clean "no such file" means it is not; a marker that cannot be inspected, or
/// that is not a regular file, is an error, because taking it for absent would remove
/// the children that hold every write since the hand-over.
pub(crate) fn handed_over(fs: &Storage, dir: &Path) -> Result<bool> {
    let marker = dir.join(HANDED_OVER_FILE_NAME);
    match probe(fs, &marker)? {
        None => Ok(false),
        Some(Kind::File) => Ok(true),
        Some(_) => Err(Error::Layout {
            path: marker,
            what: "the hand-over marker is not a regular file, so whether the split \
                   committed cannot be told"
                .into(),
        }),
    }
}

/// Creates the 16 leaves of a new database, spread round-robin over the data
/// directories: those of the other directories first, straight into their
/// `substores/`, then the home's in `substores.tmp`, renamed into place. That rename is
/// the commit point: a crash leaves either no trie (and, in the other directories,
/// empty leaf directories that the next creation removes) or a whole one.
fn create_trie(fs: &Storage, dirs: &DataDirs) -> Result<()> {
    let home = dirs.home();
    let substores = dirs.substores(0);
    let tmp = home.join(SUBSTORES_TMP_DIR);
    if probe(fs, &tmp)?.is_some() {
        remove_unfinished_creation(fs, &tmp)?;
    }
    for i in 1..dirs.len() {
        remove_unfinished_leaves(fs, &dirs.substores(i))?;
    }
    fs.create_dir(&tmp).map_err(io("creating", &tmp))?;
    let shift = 64 - u32::from(INITIAL_PREFIX_BITS);
    for i in 0..1u64 << INITIAL_PREFIX_BITS {
        let id = leaf_id(INITIAL_PREFIX_BITS, i << shift);
        let within = match (i as usize) % dirs.len() {
            0 => tmp.clone(),
            n => dirs.substores(n),
        };
        let leaf = within.join(leaf_dir_name(&id));
        fs.create_dir(&leaf).map_err(io("creating", &leaf))?;
    }
    for i in 1..dirs.len() {
        sync_dir(fs, &dirs.substores(i))?;
    }
    sync_dir(fs, &tmp)?;
    fs.rename(&tmp, &substores).map_err(io("renaming", &tmp))?;
    sync_dir(fs, home)
}

/// Removes the empty leaf directories an interrupted [`create_trie`] left in another
/// data directory's `substores/` (the home has none, so the database does not exist
/// yet). Anything else there is an error: one empty directory at a time.
fn remove_unfinished_leaves(fs: &Storage, substores: &Path) -> Result<()> {
    for (name, kind) in fs.read_dir(substores).map_err(io("listing", substores))? {
        let path = substores.join(&name);
        if kind != Kind::Dir || parse_leaf_dir_name(&name).is_none() {
            return Err(Error::Layout {
                path,
                what: "the database is being created, so its data directories hold only \
                       empty leaf directories; this was not made by ringkv"
                    .into(),
            });
        }
        fs.remove_dir(&path)
            .map_err(io("removing the empty", &path))?;
    }
    Ok(())
}

/// Removes what an interrupted [`create_trie`] left: empty leaf directories and the
/// directory holding them. Anything else there was not made by it and is kept (a
/// layout error): one empty directory at a time, nothing can be lost.
fn remove_unfinished_creation(fs: &Storage, tmp: &Path) -> Result<()> {
    let foreign = |path: &Path| Error::Layout {
        path: path.to_path_buf(),
        what: "an unfinished creation leaves only empty leaf directories here; \
               this was not made by ringkv, so it is left alone"
            .into(),
    };
    if probe(fs, tmp)? != Some(Kind::Dir) {
        return Err(foreign(tmp));
    }
    for (name, kind) in fs.read_dir(tmp).map_err(io("listing", tmp))? {
        let path = tmp.join(&name);
        if kind != Kind::Dir || parse_leaf_dir_name(&name).is_none() {
            return Err(foreign(&path));
        }
        // Fails (ENOTEMPTY) rather than remove anything inside.
        fs.remove_dir(&path)
            .map_err(io("removing the empty", &path))?;
    }
    fs.remove_dir(tmp).map_err(io("removing the empty", tmp))
}

/// The directories under `substores/`, read without changing anything.
#[derive(Default)]
struct Listing {
    leaves: Vec<Leaf>,
    ancestors: Vec<Leaf>,
    /// Parents of committed splits (`….retired`) and their ids.
    retired: Vec<(PathBuf, SubstoreId)>,
}

/// The leaf id a directory name stands for: `None` for a name that is not a leaf's
/// (ignored), an error for a leaf name that cannot be one.
fn named_leaf(path: &Path, name: &str) -> Result<Option<SubstoreId>> {
    let Some((bits, prefix)) = parse_leaf_dir_name(name) else {
        return Ok(None);
    };
    // Prefix bits are checked before they are used to shift.
    let valid = bits <= 64 && bits % 4 == 0;
    let id = leaf_id(bits.min(64), prefix);
    if !valid || leaf_dir_name(&id) != name {
        return Err(Error::Layout {
            path: path.to_path_buf(),
            what: "not a valid leaf name".into(),
        });
    }
    Ok(Some(id))
}

fn list(fs: &Storage, substores: &Path) -> Result<Listing> {
    let mut listing = Listing {
        leaves: Vec::new(),
        ancestors: Vec::new(),
        retired: Vec::new(),
    };
    for (name, _) in fs.read_dir(substores).map_err(io("listing", substores))? {
        let path = substores.join(&name);
        if let Some(stem) = name.strip_suffix(RETIRED_SUFFIX) {
            if let Some(id) = named_leaf(&path, stem)?
                && dir_present(fs, &path)?
            {
                listing.retired.push((path, id));
            }
            continue;
        }
        let Some(id) = named_leaf(&path, &name)? else {
            continue;
        };
        let leaf = Leaf {
            id,
            size_bytes: fs.dir_size(&path).map_err(io("listing", &path))?,
            dir: path,
        };
        match handed_over(fs, &leaf.dir)? {
            true => listing.ancestors.push(leaf),
            false => listing.leaves.push(leaf),
        }
    }
    Ok(listing)
}

/// What open keeps and what it removes, decided from a [`Listing`] alone, and checked
/// whole before anything is removed.
struct Plan {
    leaves: Vec<Leaf>,
    ancestors: Vec<Leaf>,
    /// Children of splits that never committed, and parents of splits that did.
    remove: Vec<PathBuf>,
}

fn plan(substores: &Path, listing: Listing) -> Result<Plan> {
    let Listing {
        leaves,
        mut ancestors,
        retired,
    } = listing;
    let ids: Vec<SubstoreId> = leaves.iter().map(|l| l.id).collect();
    let mut remove = Vec::new();
    let mut kept = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        match uncommitted(&ids, &leaf)? {
            true => remove.push(leaf.dir),
            false => kept.push(leaf),
        }
    }
    check_tiling(substores, &mut kept)?;
    for (path, id) in retired {
        check_retired(&kept, &path, &id)?;
        remove.push(path);
    }
    ancestors.sort_by_key(|l| l.id.hash_prefix);
    check_ancestors(&kept, &ancestors)?;
    Ok(Plan {
        leaves: kept,
        ancestors,
        remove,
    })
}

/// Whether `leaf` is a child of a split that never committed: it lies inside another
/// leaf (not an ancestor: its marker was read as absent), which still holds every
/// acknowledged write of its range. Only a direct child (4 bits deeper) can be one;
/// anything deeper inside a leaf is no state a crash leaves, and is an error.
fn uncommitted(ids: &[SubstoreId], leaf: &Leaf) -> Result<bool> {
    let mut inside = ids
        .iter()
        .filter(|p| p.prefix_bits < leaf.id.prefix_bits && p.covers(leaf.id.hash_prefix))
        .peekable();
    if inside.peek().is_none() {
        return Ok(false);
    }
    match inside.find(|p| p.prefix_bits + 4 != leaf.id.prefix_bits) {
        None => Ok(true),
        Some(outer) => Err(Error::Layout {
            path: leaf.dir.clone(),
            what: format!(
                "lies inside leaf {} but is not one of its children",
                leaf_dir_name(outer)
            ),
        }),
    }
}

/// A retired parent may be removed only once leaves deeper than it (its children)
/// cover its range; a leaf of its own depth or shallower covering it means the layout
/// is not one a split leaves.
fn check_retired(kept: &[Leaf], path: &Path, id: &SubstoreId) -> Result<()> {
    let over = kept
        .iter()
        .find(|l| l.id.prefix_bits <= id.prefix_bits && l.id.covers(id.hash_prefix));
    match over {
        None => Ok(()),
        Some(leaf) => Err(Error::Layout {
            path: path.to_path_buf(),
            what: format!(
                "a retired parent must lie behind its children, but leaf {} covers it",
                leaf.dir.display()
            ),
        }),
    }
}

/// Each ancestor lies behind exactly 16 leaves and behind no other ancestor.
fn check_ancestors(leaves: &[Leaf], ancestors: &[Leaf]) -> Result<()> {
    for ancestor in ancestors {
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
    Ok(())
}

/// The commit point of a hand-over split: `parent` (whose 16 children exist) becomes
/// an ancestor, durably, before any write reaches a child.
pub(crate) fn hand_over(fs: &Storage, parent: &Leaf) -> Result<()> {
    let marker = parent.dir.join(HANDED_OVER_FILE_NAME);
    fs.create_synced_file(&marker)
        .map_err(io("creating", &marker))?;
    sync_dir(fs, &parent.dir)
}

/// Creates the directories of the 16 children of `parent` in `substores` (beside it,
/// or in another data directory's).
pub(crate) fn create_children(fs: &Storage, parent: &Leaf, substores: &Path) -> Result<Vec<Leaf>> {
    let mut children = Vec::with_capacity(16);
    for nibble in 0..16u8 {
        let child = ringkv_engine::hash::child_id(&parent.id, nibble, 0);
        let id = leaf_id(child.prefix_bits, child.hash_prefix);
        let dir = substores.join(leaf_dir_name(&id));
        if let Err(e) = fs.create_dir(&dir) {
            let _ = discard_children(fs, &children); // the error below says what matters
            return Err(io("creating", &dir)(e));
        }
        children.push(Leaf {
            id,
            dir,
            size_bytes: 0,
        });
    }
    if let Err(e) = sync_dir(fs, substores) {
        let _ = discard_children(fs, &children);
        return Err(e);
    }
    Ok(children)
}

/// Removes the children of a split that failed before its commit point (no marker, the
/// parent not retired), so that the split can be tried again. No write ever reached
/// them: writes go to children only after the commit point. Open would remove them too.
pub(crate) fn discard_children(fs: &Storage, children: &[Leaf]) -> Result<()> {
    let Some(substores) = children.first().and_then(|c| c.dir.parent()) else {
        return Ok(());
    };
    for child in children {
        fs.remove_dir_all(&child.dir)
            .map_err(io("removing", &child.dir))?;
    }
    sync_dir(fs, substores)
}

/// The commit point of a split: the parent stops being a leaf (an atomic rename, made
/// durable), then its files are removed.
pub(crate) fn retire(fs: &Storage, parent: &Leaf) -> Result<()> {
    let substores = parent.dir.parent().expect("leaves live in substores/");
    let mut retired = parent.dir.clone().into_os_string();
    retired.push(RETIRED_SUFFIX);
    let retired = PathBuf::from(retired);
    fs.rename(&parent.dir, &retired)
        .map_err(io("retiring", &parent.dir))?;
    sync_dir(fs, substores)?;
    fs.remove_dir_all(&retired)
        .map_err(io("removing", &retired))?;
    sync_dir(fs, substores)
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
/// With several data directories, a group goes to a core that serves its directory
/// ([`DataDirs::affine`]) unless that core is a group's worth busier than the least
/// busy one: each core's I/O then goes mostly to one device.
pub(crate) fn assign(
    leaves: &[Leaf],
    ancestors: &[Leaf],
    cores: usize,
    dirs: &DataDirs,
) -> Assignment {
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
        let (first, count, group, bytes) = &groups[g];
        let least = |serves: &dyn Fn(usize) -> bool| {
            (0..cores)
                .filter(|&c| serves(c))
                .min_by_key(|&c| (load[c], c))
        };
        let any = least(&|_| true).expect("cores > 0");
        let dir = dirs.index_of(&group[0].dir);
        let core = match least(&|c| dirs.affine(c, cores, dir)) {
            Some(a)
                if load[a].0 <= load[any].0 + bytes && load[a].1 <= load[any].1 + group.len() =>
            {
                a
            }
            _ => any,
        };
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
    use std::fs::File;

    use super::*;

    /// The `substores/` a leaf lies in, where its children go by default.
    fn beside(leaf: &Leaf) -> &Path {
        leaf.dir.parent().unwrap()
    }

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
            let a = assign(&leaves, &[], cores, &DataDirs::home_only(dir.path()));
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
    fn with_several_data_directories_each_core_serves_its_own_and_stays_balanced() {
        let homes = ["/h", "/a", "/b"].map(PathBuf::from);
        for n in 1..=3 {
            let dirs = DataDirs::new(&homes[0], &homes[1..n]);
            // The 16 leaves of a new database, round-robin over the directories.
            let leaves: Vec<Leaf> = (0..16u64)
                .map(|i| {
                    let id = leaf_id(4, i << 60);
                    let dir = homes[i as usize % n]
                        .join(SUBSTORES_DIR)
                        .join(leaf_dir_name(&id));
                    Leaf {
                        id,
                        dir,
                        size_bytes: 0,
                    }
                })
                .collect();
            for cores in 1..=4 {
                let a = assign(&leaves, &[], cores, &dirs);
                let counts: Vec<usize> = a.per_core.iter().map(Vec::len).collect();
                let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
                assert!(spread <= 2, "{n} dirs, {cores} cores: {counts:?}");
                if cores % n != 0 && n % cores != 0 {
                    continue; // a core serves parts of two directories
                }
                for (core, owned) in a.per_core.iter().enumerate() {
                    for leaf in owned {
                        let dir = dirs.index_of(&leaf.dir);
                        assert!(dirs.affine(core, cores, dir), "{n} dirs, {cores} cores");
                    }
                }
            }
        }
    }

    /// Every step of a split is durable when it returns: a power cut right after it,
    /// dropping every name change not synced, finds it whole. (A child write may be
    /// acknowledged the moment a step returns, so no later sync may be relied on.)
    #[test]
    fn each_split_step_survives_a_power_cut_right_after_it_returns() {
        use ringkv_engine::{CrashMode, SimDisk};
        let mut disk = SimDisk::new();
        let dir = Path::new("/deep/db");
        let cut = |disk: &mut SimDisk| {
            disk.crash(CrashMode::DropUnsynced);
            Storage::Sim(disk.clone())
        };
        let fs = Storage::Sim(disk.clone());
        create_db_dir(&fs, dir).unwrap();
        let (leaves, _) = scan(&fs, &DataDirs::home_only(dir)).unwrap();
        let fs = cut(&mut disk);
        assert_eq!(
            scan(&fs, &DataDirs::home_only(dir)).unwrap(),
            (leaves.clone(), Vec::new())
        );

        let parent = &leaves[5];
        let children = create_children(&fs, parent, beside(parent)).unwrap();
        let fs = cut(&mut disk);
        for child in &children {
            assert_eq!(probe(&fs, &child.dir).unwrap(), Some(Kind::Dir));
        }

        hand_over(&fs, parent).unwrap();
        let fs = cut(&mut disk);
        let (after, ancestors) = scan(&fs, &DataDirs::home_only(dir)).unwrap();
        assert_eq!(ancestors, vec![parent.clone()], "the marker survives");
        assert_eq!(after.len(), 31);

        retire(&fs, parent).unwrap();
        let fs = cut(&mut disk);
        let (after, ancestors) = scan(&fs, &DataDirs::home_only(dir)).unwrap();
        assert!(ancestors.is_empty() && !after.contains(parent));
        assert_eq!(after.len(), 31);
    }

    #[test]
    fn uncommitted_children_are_removed_and_retired_parents_too() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(dir.path()).unwrap();
        let children = create_children(&Storage::Real, &leaves[5], beside(&leaves[5])).unwrap();
        assert_eq!(children.len(), 16);
        // Not committed: the parent is still a leaf, so the children go.
        let again = super::leaves(dir.path()).unwrap();
        assert_eq!(again, leaves);
        assert!(!children[0].dir.exists());
        // Committed: the parent is retired, the children stay.
        let children = create_children(&Storage::Real, &leaves[5], beside(&leaves[5])).unwrap();
        retire(&Storage::Real, &leaves[5]).unwrap();
        let after = super::leaves(dir.path()).unwrap();
        assert_eq!(after.len(), 31);
        assert!(children.iter().all(|c| after.contains(c)));
        // A crash between the rename and the removal: the retired parent is cleaned up.
        let retired = dir
            .path()
            .join(SUBSTORES_DIR)
            .join("04-5000000000000000.retired");
        std::fs::create_dir(&retired).unwrap();
        std::fs::write(retired.join("SUBSTORE"), b"anything").unwrap();
        assert_eq!(super::leaves(dir.path()).unwrap(), after);
        assert!(!retired.exists());
    }

    /// Every file and directory under `dir`.
    fn tree(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(tree(&path));
            }
            found.push(path);
        }
        found.sort();
        found
    }

    #[test]
    fn nothing_is_removed_when_the_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(dir.path()).unwrap();
        create_children(&Storage::Real, &leaves[5], beside(&leaves[5])).unwrap(); // uncommitted: open would remove them
        std::fs::remove_dir(&leaves[3].dir).unwrap(); // but the layout has a hole
        let before = tree(dir.path());
        assert!(matches!(
            super::leaves(dir.path()),
            Err(Error::Layout { .. })
        ));
        assert_eq!(tree(dir.path()), before);
    }

    #[test]
    fn a_marker_that_is_not_a_regular_file_is_a_layout_error() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(dir.path()).unwrap();
        create_children(&Storage::Real, &leaves[5], beside(&leaves[5])).unwrap();
        let marker = leaves[5].dir.join(HANDED_OVER_FILE_NAME);
        std::fs::create_dir(&marker).unwrap();
        let before = tree(dir.path());
        let err = super::leaves(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Layout { path, .. } if path == &marker),
            "{err:?}"
        );
        assert_eq!(tree(dir.path()), before);
        std::fs::remove_dir(&marker).unwrap();
        File::create(&marker).unwrap();
        assert_eq!(
            super::leaves(dir.path()).unwrap().len(),
            31,
            "an ancestor now"
        );
    }

    #[test]
    fn a_leaf_deeper_than_a_child_inside_a_leaf_is_kept_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(dir.path()).unwrap();
        let deep = leaf_id(8, 0x5300_0000_0000_0000);
        let deep = Leaf {
            id: deep,
            dir: leaves[5].dir.with_file_name(leaf_dir_name(&deep)),
            size_bytes: 0,
        };
        let grandchildren = create_children(&Storage::Real, &deep, beside(&deep)).unwrap();
        let err = super::leaves(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Layout { .. }), "{err:?}");
        assert!(grandchildren.iter().all(|g| g.dir.is_dir()));
    }

    #[test]
    fn a_retired_parent_covered_by_a_leaf_of_its_depth_is_kept_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(dir.path()).unwrap();
        let retired = dir
            .path()
            .join(SUBSTORES_DIR)
            .join("04-1000000000000000.retired");
        std::fs::create_dir(&retired).unwrap();
        let err = super::leaves(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Layout { path, .. } if path == &retired),
            "{err:?}"
        );
        assert!(retired.is_dir() && leaves[1].dir.is_dir());
    }

    #[test]
    fn an_unfinished_creation_is_removed_only_if_it_holds_nothing_but_empty_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(SUBSTORES_TMP_DIR);
        let leaf = tmp.join(leaf_dir_name(&leaf_id(4, 0)));
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(leaf.join("SUBSTORE"), b"not made by an unfinished creation").unwrap();
        assert!(matches!(super::leaves(dir.path()), Err(Error::Io { .. })));
        assert!(leaf.join("SUBSTORE").is_file());
        std::fs::remove_file(leaf.join("SUBSTORE")).unwrap();
        std::fs::write(tmp.join("notes.txt"), b"somebody's").unwrap();
        assert!(matches!(
            super::leaves(dir.path()),
            Err(Error::Layout { .. })
        ));
        assert!(tmp.join("notes.txt").is_file());
        std::fs::remove_file(tmp.join("notes.txt")).unwrap();
        assert_eq!(super::leaves(dir.path()).unwrap().len(), 16);
        assert!(!tmp.exists());
    }

    #[test]
    fn a_substores_path_that_is_not_a_directory_is_a_layout_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SUBSTORES_DIR), b"x").unwrap();
        assert!(matches!(
            super::leaves(dir.path()),
            Err(Error::Layout { .. })
        ));
        assert!(!dir.path().join(SUBSTORES_TMP_DIR).exists());
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
        let first = lock(&Storage::Real, dir.path()).unwrap();
        assert!(matches!(
            lock(&Storage::Real, dir.path()),
            Err(Error::Locked { .. })
        ));
        drop(first);
        lock(&Storage::Real, dir.path()).unwrap();
    }
}
