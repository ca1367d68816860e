//! Salvage: the way forward, asked for explicitly (`Config::recovery =
//! Recovery::Salvage`), when opening finds damage in the newest extent. It keeps every
//! intact record and drops nothing silently:
//!
//! 1. the bytes from the damage to the end of the extent are copied into a quarantine
//!    file beside the extents, `quarantine-{extent:016x}-{offset:016x}.pending`, synced
//!    with its directory, before anything else changes;
//! 2. the extent is cut at the damage (recovery's usual cut of a tail, then synced);
//! 3. every intact record in the quarantined bytes is appended again, with its own
//!    header (sequence, expiry, metadata), and flushed;
//! 4. the quarantine file is renamed to `.bin` (and the directory synced): done.
//!
//! A crash anywhere leaves either the damage in place (step 1 runs again and writes the
//! same file) or a `.pending` file, which the next salvage finishes from step 3 (records
//! appended twice carry the same sequence: the later copy wins, with the same bytes).
//! A strict open refuses a directory with a `.pending` file.
//!
//! Intact records are found by trying to decode one, checksum and all, at every byte
//! offset after the damage, going on after each one found; a record whose key does not
//! hash into this substore, or whose sequence is past the index's range, is not taken.
//! A record stored as the value of a damaged record could be mistaken for one of the
//! log's own; the report counts the damaged regions so that the user can look.

use crate::device::{Device, DeviceFile};
use crate::error::{Error, Result};
use crate::format::{self, BLOCK_BYTES, align_up};
use crate::hash::routing_hash;
use crate::limits::SEQ_MAX;
use crate::recovery::{Scanner, io_err};
use crate::substore::Substore;

const QUARANTINE_PREFIX: &str = "quarantine-";
const PENDING_SUFFIX: &str = ".pending";
const DONE_SUFFIX: &str = ".bin";

/// How opening treats damage in the newest extent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recovery {
    /// Refuse with [`Error::Corruption`], changing nothing (the default).
    #[default]
    Strict,
    /// Keep every intact record, move the damaged bytes into a quarantine file, and
    /// report what was done ([`Substore::salvaged`]).
    Salvage,
}

/// What one salvage did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Salvaged {
    /// The damaged extent file.
    pub extent_path: String,
    /// Where the damage began in it; the extent was cut here.
    pub offset: u64,
    /// The quarantine file holding the bytes from `offset` to the old end of the extent.
    pub quarantine_path: String,
    /// Bytes moved into the quarantine file.
    pub bytes: u64,
    /// Intact records found among them and appended again.
    pub records_kept: u64,
    /// Stretches of those bytes that are neither intact records nor zeros: each holds at
    /// least one record that could not be read.
    pub damaged_regions: u64,
}

/// The name of the quarantine file for damage at `offset` of extent `extent_seq`.
fn pending_name(extent_seq: u64, offset: u64) -> String {
    format!("{QUARANTINE_PREFIX}{extent_seq:016x}-{offset:016x}{PENDING_SUFFIX}")
}

/// The extent and offset of a pending quarantine file's name.
pub(crate) fn parse_pending_name(name: &str) -> Option<(u64, u64)> {
    let rest = name
        .strip_prefix(QUARANTINE_PREFIX)?
        .strip_suffix(PENDING_SUFFIX)?;
    let (extent, offset) = rest.split_once('-')?;
    let hex = |s: &str| (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?;
    Some((hex(extent)?, hex(offset)?))
}

/// The records found in `bytes`, and how many damaged regions lie between them.
fn intact_records(
    bytes: &[u8],
    keep: impl Fn(&format::RecordRef<'_>) -> bool,
) -> (Vec<format::RecordRef<'_>>, u64) {
    let (mut records, mut regions) = (Vec::new(), 0);
    let (mut at, mut gap_start) = (0, 0);
    let mut close_gap = |from: usize, to: usize| {
        if bytes[from..to].iter().any(|&b| b != 0) {
            regions += 1;
        }
    };
    while at < bytes.len() {
        match format::decode_record(&bytes[at..]) {
            Ok(rec) if keep(&rec) => {
                close_gap(gap_start, at);
                at += rec.header.record_len();
                gap_start = at;
                records.push(rec);
            }
            _ => at += 1,
        }
    }
    close_gap(gap_start, bytes.len());
    (records, regions)
}

impl<D: Device> Substore<D> {
    /// Step 1: copies the bytes of the extent read by `scanner` from `offset` to `len`
    /// into a pending quarantine file, synced with its directory.
    pub(crate) async fn quarantine(
        &self,
        extent_seq: u64,
        scanner: &mut Scanner<D::File>,
        offset: u64,
        len: u64,
    ) -> Result<()> {
        let mut bytes = scanner.bytes_at(offset, len - offset).await?.to_vec();
        let exact = bytes.len() as u64;
        bytes.resize(align_up(exact) as usize, 0);
        let name = pending_name(extent_seq, offset);
        let path = self.device.path_of(&name);
        if self
            .device
            .list()
            .await
            .map_err(io_err("listing", path.clone(), 0))?
            .contains(&name)
        {
            self.device
                .remove(&name)
                .await
                .map_err(io_err("removing", path.clone(), 0))?;
        }
        let file = self
            .device
            .create(&name)
            .await
            .map_err(io_err("creating", path.clone(), 0))?;
        file.write_at(0, &bytes)
            .await
            .map_err(io_err("writing", path.clone(), 0))?;
        file.truncate(exact)
            .await
            .map_err(io_err("truncating", path.clone(), exact))?;
        file.sync()
            .await
            .map_err(io_err("syncing", path.clone(), 0))?;
        self.device
            .sync_dir()
            .await
            .map_err(io_err("syncing the directory of", path, 0))
    }

    /// Steps 3 and 4 for every pending quarantine file, after the extents are open.
    /// In strict mode a pending file is an error: a salvage was cut short.
    pub(crate) async fn finish_salvages(&self) -> Result<Vec<Salvaged>> {
        let dir = self.device.path_of("");
        let names = self
            .device
            .list()
            .await
            .map_err(io_err("listing", dir, 0))?;
        let mut done = Vec::new();
        for name in &names {
            let Some((extent_seq, offset)) = parse_pending_name(name) else {
                continue;
            };
            if self.config.recovery == Recovery::Strict {
                return Err(Error::corruption(
                    self.device.path_of(name),
                    0,
                    "a salvage of this substore was cut short: open it with salvage again \
                     to finish (the quarantined bytes are in this file)",
                ));
            }
            done.push(self.finish_salvage(name, extent_seq, offset).await?);
        }
        Ok(done)
    }

    async fn finish_salvage(&self, name: &str, extent_seq: u64, offset: u64) -> Result<Salvaged> {
        let path = self.device.path_of(name);
        let file = self
            .device
            .open(name)
            .await
            .map_err(io_err("opening", path.clone(), 0))?;
        let len = file
            .file_size()
            .await
            .map_err(io_err("measuring", path.clone(), 0))?;
        let mut bytes = file
            .read_at(0, align_up(len.max(BLOCK_BYTES)) as usize)
            .await
            .map_err(io_err("reading", path.clone(), 0))?;
        bytes.truncate(len as usize);
        drop(file);
        let id = self.id;
        let keep =
            |r: &format::RecordRef<'_>| r.header.seq <= SEQ_MAX && id.covers(routing_hash(r.key));
        let (records, damaged_regions) = intact_records(&bytes, keep);
        {
            let mut state = self.state.borrow_mut();
            for r in &records {
                self.append_record(&mut state, &r.header, r.meta, r.key, r.value)?;
            }
        }
        self.flush().await?;
        let done = format!(
            "{}{DONE_SUFFIX}",
            name.strip_suffix(PENDING_SUFFIX).expect("parsed")
        );
        self.device
            .rename(name, &done)
            .await
            .map_err(io_err("renaming", path.clone(), 0))?;
        self.device
            .sync_dir()
            .await
            .map_err(io_err("syncing the directory of", path, 0))?;
        Ok(Salvaged {
            extent_path: self.device.path_of(&format::extent_file_name(extent_seq)),
            offset,
            quarantine_path: self.device.path_of(&done),
            bytes: len,
            records_kept: records.len() as u64,
            damaged_regions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_names_round_trip_and_nothing_else_parses() {
        assert_eq!(
            parse_pending_name(&pending_name(3, 0x1234)),
            Some((3, 0x1234))
        );
        assert_eq!(parse_pending_name("quarantine-3-4.pending"), None);
        assert_eq!(parse_pending_name("0000000000000003.ext"), None);
        let done = pending_name(3, 4).replace(PENDING_SUFFIX, DONE_SUFFIX);
        assert_eq!(parse_pending_name(&done), None);
    }
}
