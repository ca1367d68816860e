//! Atomic write batches: what a caller builds ([`WriteBatch`]), the frames a batch's
//! coordinator writes for it, and what open finds of them (ARCHITECTURE.md, "Atomic
//! write batches").
//!
//! ```text
//! DIR/commit/batch-N.log   the batches core N coordinated (ringkv_engine::commitlog)
//! ```
//!
//! - **Frames.** A batch is one frame of its coordinator's batch log: one entry per
//!   write, under the batch's id, each an encoded record (a put or a tombstone,
//!   sequence 0: the stores give their own when they apply it). Once all its parts are
//!   durable in their stores, a second frame says so: one entry under `DONE | id`.
//! - **Commit point.** The batch is committed exactly when its frame is durable (a
//!   frame is checksummed and recovery keeps a prefix of them).
//! - **Recovery** ([`read`]): a batch with a frame and no `done` is applied again, whole.
//!   That never undoes a later write: the batch's keys stay locked on their cores from
//!   before its frame until its `done` (or a reset of its log generation) is durable,
//!   so no write of them can come after the batch and still find it pending. Batches
//!   pending together hold disjoint keys, so their order does not matter.
//! - Once open has applied them durably, it removes every batch log ([`remove`]): a
//!   log left behind would be applied again at the next open, over later writes.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ringkv_engine::commitlog::scan;
use ringkv_engine::format::log::encode_entry;
use ringkv_engine::format::{
    BLOCK_BYTES, Kind, RecordHeader, decode_record, encode_record, log::ENTRY_HEADER_LEN,
    log::FRAME_HEADER_LEN,
};
use ringkv_engine::hash::routing_hash;

use crate::core::Extras;
use crate::db::PutOptions;
use crate::error::{Error, Result};
use crate::layout::{io, sync_dir};
use crate::logs::COMMIT_DIR;
use crate::storage::{Kind as FileKind, Storage};

/// The entry id of a batch's `done` frame.
const DONE: u64 = 1 << 63;

/// Puts and deletes of any keys, on any cores, that [`crate::Db::write`] applies all
/// or nothing: after a crash a batch is wholly present or wholly absent. A key written
/// twice in one batch keeps its last write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Put>)>,
}

/// A put's value and options, as a batch holds them until `write`.
type Put = (Vec<u8>, PutOptions);

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of `key`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        self.put_with(key, value, &PutOptions::new())
    }

    /// Adds a put of `key` with an expiry and metadata (a TTL counts from the call to
    /// `write`; the options' durability is not used: a batch is acknowledged as a
    /// whole, as [`crate::Db::write`] says).
    pub fn put_with(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: &PutOptions,
    ) -> &mut Self {
        let put = (value.as_ref().to_vec(), options.clone());
        self.ops.push((key.as_ref().to_vec(), Some(put)));
        self
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push((key.as_ref().to_vec(), None));
        self
    }

    /// Writes added (a key added twice counts twice).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn clear(&mut self) {
        self.ops.clear();
    }

    /// The writes that take effect, each key once (its last write), checked against
    /// the limits, with their hashes and what `extras` makes of their options.
    pub(crate) fn into_ops(self, extras: impl Fn(&PutOptions) -> Extras) -> Result<Vec<BatchOp>> {
        let mut last = std::collections::HashMap::with_capacity(self.ops.len());
        for (i, (key, _)) in self.ops.iter().enumerate() {
            last.insert(key.as_slice(), i);
        }
        let keep: Vec<bool> = (0..self.ops.len())
            .map(|i| last.get(self.ops[i].0.as_slice()) == Some(&i))
            .collect();
        drop(last);
        let mut ops = Vec::with_capacity(keep.iter().filter(|k| **k).count());
        for ((key, put), keep) in self.ops.into_iter().zip(keep) {
            if !keep {
                continue;
            }
            let (value, extras) = match put {
                Some((value, options)) => (Some(Bytes::from(value)), extras(&options)),
                None => (None, Extras::NONE),
            };
            ops.push(BatchOp::new(key, value, extras)?);
        }
        Ok(ops)
    }
}

/// Checks that the frame of a batch of `ops` fits in a batch log of `log_bytes`.
pub(crate) fn check_frame(ops: &[BatchOp], log_bytes: u64) -> Result<()> {
    let mut payload = 0u64;
    for op in ops {
        payload += op.entry_len()?;
    }
    let frame = ringkv_engine::format::align_up(FRAME_HEADER_LEN as u64 + payload);
    // The header block, and the frame in the rest.
    let max = ringkv_engine::format::align_down(log_bytes) - BLOCK_BYTES;
    match frame > max {
        true => Err(Error::BatchTooLarge { bytes: frame, max }),
        false => Ok(()),
    }
}

/// One write of a batch: a put (`Some` value, with its extras) or a delete.
#[derive(Clone, Debug)]
pub(crate) struct BatchOp {
    pub(crate) hash: u64,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Bytes>,
    pub(crate) extras: Extras,
}

impl BatchOp {
    /// A write, checked against the limits.
    pub(crate) fn new(key: Vec<u8>, value: Option<Bytes>, extras: Extras) -> Result<Self> {
        let op = Self {
            hash: routing_hash(&key),
            key,
            value,
            extras,
        };
        op.header()?;
        Ok(op)
    }

    /// Checks the limits, and builds a write's record header.
    fn header(&self) -> Result<RecordHeader> {
        let value = self.value.as_deref().unwrap_or(&[]);
        ringkv_engine::check_limits(&self.key, value, &self.extras.meta)?;
        Ok(RecordHeader {
            kind: match self.value {
                Some(_) => Kind::Put,
                None => Kind::Tombstone,
            },
            seq: 0,
            expiry_unix_ms: self.extras.expiry_unix_ms,
            meta_len: self.extras.meta.len() as u8,
            key_len: self.key.len() as u16,
            value_len: value.len() as u32,
        })
    }

    /// Bytes of its entry in a frame (limits checked first).
    fn entry_len(&self) -> Result<u64> {
        Ok((ENTRY_HEADER_LEN + self.header()?.record_len()) as u64)
    }
}

/// The payload of batch `id`'s frame.
pub(crate) fn frame(id: u64, ops: &[BatchOp]) -> Vec<u8> {
    let mut payload = Vec::new();
    let mut record = Vec::new();
    for op in ops {
        record.clear();
        let header = op.header().expect("checked when the batch was made");
        let value = op.value.as_deref().unwrap_or(&[]);
        encode_record(&mut record, &header, &op.extras.meta, &op.key, value);
        encode_entry(&mut payload, id, &record);
    }
    payload
}

/// The payload of the frame that says batch `id` is durable in every store.
pub(crate) fn done_frame(id: u64) -> Vec<u8> {
    let done = BatchOp {
        hash: 0,
        key: Vec::new(),
        value: None,
        extras: Extras::NONE,
    };
    let mut record = Vec::new();
    let header = done
        .header()
        .expect("an empty tombstone is within the limits");
    encode_record(&mut record, &header, &[], &[], &[]);
    let mut payload = Vec::new();
    encode_entry(&mut payload, DONE | id, &record);
    payload
}

pub(crate) fn file_name(core: usize) -> String {
    format!("batch-{core}.log")
}

fn is_file_name(name: &str) -> bool {
    let digits = name
        .strip_prefix("batch-")
        .and_then(|n| n.strip_suffix(".log"));
    digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
}

/// What the batch logs of a directory hold.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The writes of each batch committed but not known durable everywhere.
    pub(crate) batches: Vec<Vec<BatchOp>>,
    /// The batch logs found (to remove once the batches are applied).
    pub(crate) files: Vec<PathBuf>,
}

/// Reads every batch log of database directory `dir` (whose commit directory exists).
pub(crate) fn read(fs: &Storage, dir: &Path) -> Result<Pending> {
    let logs = dir.join(COMMIT_DIR);
    let mut pending = Pending::default();
    let mut names: Vec<String> = (fs.read_dir(&logs).map_err(io("listing", &logs))?)
        .into_iter()
        .filter(|(name, kind)| is_file_name(name) && *kind == FileKind::File)
        .map(|(name, _)| name)
        .collect();
    names.sort();
    for name in names {
        let path = logs.join(&name);
        let label = path.display().to_string();
        let contents = scan(&label, |at, len| fs.read_at(&path, at, len))?;
        for (&id, records) in &contents.records {
            if id & DONE != 0 || contents.records.contains_key(&(DONE | id)) {
                continue;
            }
            pending.batches.push(decode(records, &label)?);
        }
        pending.files.push(path);
    }
    Ok(pending)
}

/// The writes of a batch's frame.
fn decode(mut records: &[u8], source: &str) -> Result<Vec<BatchOp>> {
    let mut ops = Vec::new();
    while !records.is_empty() {
        let record = decode_record(records).map_err(|e| Error::Layout {
            path: source.into(),
            what: format!("a batch frame whose checksum matched holds a bad record ({e:?})"),
        })?;
        records = &records[record.header.record_len()..];
        ops.push(BatchOp {
            hash: routing_hash(record.key),
            key: record.key.to_vec(),
            value: (record.header.kind == Kind::Put).then(|| Bytes::copy_from_slice(record.value)),
            extras: Extras {
                meta: Bytes::copy_from_slice(record.meta),
                expiry_unix_ms: record.header.expiry_unix_ms,
            },
        });
    }
    Ok(ops)
}

/// Removes the batch logs `files` (every batch they held is durable in its stores).
pub(crate) fn remove(fs: &Storage, dir: &Path, files: &[PathBuf]) -> Result<()> {
    for path in files {
        fs.remove_file(path).map_err(io("removing", path))?;
    }
    if !files.is_empty() {
        sync_dir(fs, &dir.join(COMMIT_DIR))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_of_a_key_wins_and_limits_are_checked() {
        let mut batch = WriteBatch::new();
        batch.put("a", "1").delete("b").put("a", "2").put("c", "3");
        let ops = batch.into_ops(|_| Extras::NONE).unwrap();
        let got: Vec<_> = ops
            .iter()
            .map(|o| (o.key.clone(), o.value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (b"b".to_vec(), None),
                (b"a".to_vec(), Some(Bytes::from("2"))),
                (b"c".to_vec(), Some(Bytes::from("3"))),
            ]
        );
        let mut too_long = WriteBatch::new();
        too_long.put(vec![0u8; ringkv_engine::limits::KEY_LEN_MAX + 1], "x");
        assert!(matches!(
            too_long.into_ops(|_| Extras::NONE),
            Err(Error::KeyTooLarge { .. })
        ));
    }

    #[test]
    fn a_frame_decodes_to_its_writes() {
        let mut batch = WriteBatch::new();
        batch.put("k", "v").delete("gone");
        let ops = batch.into_ops(|_| Extras::NONE).unwrap();
        let payload = frame(7, &ops);
        let entries = ringkv_engine::format::log::decode_entries(&payload).unwrap();
        let records: Vec<u8> = entries.iter().flat_map(|(_, r)| r.to_vec()).collect();
        let back = decode(&records, "test").unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].value.as_deref(), Some(&b"v"[..]));
        assert_eq!(
            (back[1].key.as_slice(), back[1].value.is_none()),
            (&b"gone"[..], true)
        );
        assert!(is_file_name(&file_name(3)) && !is_file_name("core-3.log"));
    }
}
