//! The commit logs of a database directory, as open sees them.
//!
//! ```text
//! DIR/commit/core-N.log   core N's commit log (ringkv_engine::commitlog)
//! ```
//!
//! Open reads every log before any core starts ([`read`]), hands each core the records
//! of the substores it owns ([`route`]), and each core replays and syncs them while it
//! opens its leaves. Only once every core has done so may a log go: the records of one
//! core's log may belong to leaves another core owns now. Then open removes every log
//! ([`remove_replayed`]) before it returns; each core creates its own at its first
//! commit.
//!
//! No log may outlive the open that replayed it. A log that a core of the next run
//! never restarts (it commits nothing) would otherwise be replayed again by a later
//! open, after compaction may have dropped both a put it holds and the tombstone that
//! deleted it (a tombstone goes once no older extent can hold its key): with nothing
//! newer left in the leaf, the put's sequence is not below the leaf's next one, and
//! the deleted value would come back (`tests/stale_log.rs`).
//!
//! Records of a substore that no longer exists are of a split parent or handed-over
//! ancestor retired since: every record it took was synced into it (and copied or moved
//! into its children) before its retirement, so they are skipped. Records of a substore
//! that never existed in this layout are refused: opening would otherwise drop writes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ringkv_engine::commitlog::scan;
use ringkv_engine::{LogContents, SubstoreId};

use crate::error::{Error, Result};
use crate::layout::{Leaf, io, leaf_id, probe, sync_dir};
use crate::storage::{Kind, Storage};

pub(crate) const COMMIT_DIR: &str = "commit";

/// Records per substore id, concatenated in log order.
pub(crate) type Records = BTreeMap<u64, Vec<u8>>;

pub(crate) fn file_name(core: usize) -> String {
    format!("core-{core}.log")
}

fn parse_file_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("core-")?.strip_suffix(".log")?;
    let canonical = !digits.is_empty() && (digits == "0" || !digits.starts_with('0'));
    (canonical && digits.bytes().all(|c| c.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// What the logs of a directory hold.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The epoch the cores start their logs with: above every epoch on disk.
    pub(crate) next_epoch: u64,
    pub(crate) records: Records,
    /// The core numbers of the log files found.
    pub(crate) files: Vec<usize>,
}

/// Reads every commit log of database directory `dir` (creating the log directory of a
/// database that has none), oldest epoch first.
pub(crate) fn read(fs: &Storage, dir: &Path) -> Result<Recovered> {
    let logs = dir.join(COMMIT_DIR);
    match probe(fs, &logs)? {
        None => {
            fs.create_dir(&logs).map_err(io("creating", &logs))?;
            sync_dir(fs, dir)?;
        }
        Some(Kind::Dir) => {}
        Some(_) => return Err(layout_error(&logs, "is not a directory")),
    }
    let mut found: Vec<(u64, usize, LogContents)> = Vec::new();
    for (name, kind) in fs.read_dir(&logs).map_err(io("listing", &logs))? {
        let Some(core) = parse_file_name(&name) else {
            continue; // not a name ringkv writes; left alone
        };
        let path = logs.join(&name);
        if kind != Kind::File {
            return Err(layout_error(&path, "is not a regular file"));
        }
        let label = path.display().to_string();
        let contents = scan(&label, |at, len| fs.read_at(&path, at, len))?;
        let epoch = contents.header.map_or(0, |h| h.epoch);
        found.push((epoch, core, contents));
    }
    found.sort_by_key(|(epoch, core, _)| (*epoch, *core));
    let mut recovered = Recovered {
        next_epoch: found.iter().map(|(epoch, ..)| epoch + 1).max().unwrap_or(1),
        ..Recovered::default()
    };
    for (_, core, contents) in found {
        recovered.files.push(core);
        for (id, records) in contents.records {
            recovered.records.entry(id).or_default().extend(records);
        }
    }
    Ok(recovered)
}

/// Splits `records` by the core that owns each substore: `per_core[c]` lists core `c`'s
/// leaves and ancestors. Records of retired substores are dropped (module docs).
pub(crate) fn route(dir: &Path, records: Records, per_core: &[Vec<&Leaf>]) -> Result<Vec<Records>> {
    let mut owner: HashMap<u64, usize> = HashMap::new();
    for (core, leaves) in per_core.iter().enumerate() {
        owner.extend(leaves.iter().map(|leaf| (leaf.id.id, core)));
    }
    let mut routed = vec![Records::new(); per_core.len()];
    for (id, records) in records {
        if let Some(&core) = owner.get(&id) {
            routed[core].insert(id, records);
            continue;
        }
        let retired = id_of(id).is_some_and(|gone| {
            let deeper = per_core.iter().flatten();
            deeper
                .filter(|l| l.id.prefix_bits > gone.prefix_bits)
                .any(|l| gone.covers(l.id.hash_prefix))
        });
        if !retired {
            return Err(layout_error(
                &dir.join(COMMIT_DIR),
                &format!(
                    "holds writes of substore {id:#x}, which is neither a leaf nor a retired parent of one"
                ),
            ));
        }
    }
    Ok(routed)
}

/// The substore an id packs ([`leaf_id`]), if it is one.
fn id_of(id: u64) -> Option<SubstoreId> {
    let bits = (id >> 56) as u8;
    let value = id & ((1 << 56) - 1);
    if bits == 0 || bits > 56 || bits % 4 != 0 || value >> bits != 0 {
        return None;
    }
    let gone = leaf_id(bits, value << (64 - u32::from(bits)));
    (gone.id == id).then_some(gone)
}

/// Removes every log open found (`files`): once every core has replayed and synced
/// its records, what they hold is durable in the substores (module documentation).
pub(crate) fn remove_replayed(fs: &Storage, dir: &Path, files: &[usize]) -> Result<()> {
    let logs = dir.join(COMMIT_DIR);
    for core in files {
        let path = logs.join(file_name(*core));
        fs.remove_file(&path).map_err(io("removing", &path))?;
    }
    if !files.is_empty() {
        sync_dir(fs, &logs)?;
    }
    Ok(())
}

fn layout_error(path: &Path, what: &str) -> Error {
    Error::Layout {
        path: path.to_path_buf(),
        what: what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_others_are_not_logs() {
        for core in [0, 1, 9, 10, 255] {
            assert_eq!(parse_file_name(&file_name(core)), Some(core));
        }
        for name in [
            "core-.log",
            "core-01.log",
            "core-1.log.tmp",
            "core-x.log",
            "LOCK",
        ] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn an_id_decodes_to_the_leaf_it_packs() {
        let leaf = leaf_id(8, 0xab << 56);
        assert_eq!(id_of(leaf.id), Some(leaf));
        assert_eq!(id_of(leaf_id(0, 0).id), None, "the root is never retired");
    }
}
