//! One substore: an append-only log of extents plus its in-memory index, driven by one
//! core. Methods take `&self` and never hold a borrow of the state across an `.await`,
//! so gets, puts and a flush in flight can interleave on the core's executor.
//!
//! Write path: a put encodes its record into the active extent's tail buffer and updates
//! the index at once; nothing touches the device until [`Substore::flush`] (durable) or
//! the buffer passes `write_buffer_bytes` (written, not synced). All device writes are
//! serialized by `io_lock`.
//!
//! Invariants:
//! - only the newest extent can be unsealed; an extent file is created (header written
//!   and synced, directory synced) only after every older extent's seal is durable;
//! - a write never changes a byte that an earlier write made durable: the partial last
//!   block is rewritten with the same prefix plus new bytes (FORMAT.md, "Device
//!   assumption");
//! - a record at `offset >= tail.buf_start` is in memory; below it, it was written.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;

use crate::clock::Clock;
use crate::commitlog::Journal;
use crate::device::{Device, DeviceFile};
use crate::error::{Error, Result};
use crate::format::{
    self, BLOCK_BYTES, EXTENT_HEADER_LEN, ExtentHeader, FOOTER_LEN, Footer, Kind, RecordHeader,
    RecordRef, SubstoreId, SummaryEntry, SummaryLayout, align_down, align_up, extent_file_name,
};
use crate::index::{Entry, Index};
use crate::limits::{
    EXTENT_SIZE_DEFAULT_BYTES, EXTENT_SIZE_MAX_BYTES, EXTENT_SIZE_MIN_BYTES, KEY_LEN_MAX,
    META_LEN_MAX, SEQ_MAX, VALUE_LEN_MAX, WRITE_BUFFER_DEFAULT_BYTES,
};
use crate::salvage::{Recovery, Salvaged};

/// How a substore is sized, and the clock its expiry times are judged by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// An extent is sealed once it would grow past this (a single larger record still
    /// gets an extent of its own).
    pub extent_size_bytes: u64,
    /// Unwritten bytes buffered before they are written out (not synced) on their own.
    pub write_buffer_bytes: usize,
    /// What opening does about damage in the newest extent: refuse (the default) or
    /// salvage.
    pub recovery: Recovery,
    /// When a record's expiry has passed (the system clock by default).
    pub clock: Clock,
    /// Metadata up to this many bytes long is kept in the index with its key, so that
    /// [`Substore::head`] answers it from memory; longer metadata stays on the device
    /// only. Default [`META_LEN_MAX`]: all of it.
    pub meta_in_index_max_bytes: usize,
    /// Open without changing anything on disk: refuse ([`Error::NeedsWritableOpen`])
    /// what a writable open would change (a torn tail to cut, an extent whose creation
    /// a crash cut short, a missing identity file); every write then fails with
    /// [`Error::OpenedReadOnly`].
    pub read_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            extent_size_bytes: EXTENT_SIZE_DEFAULT_BYTES,
            write_buffer_bytes: WRITE_BUFFER_DEFAULT_BYTES,
            recovery: Recovery::Strict,
            clock: Clock::system(),
            meta_in_index_max_bytes: META_LEN_MAX,
            read_only: false,
        }
    }
}

impl Config {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(EXTENT_SIZE_MIN_BYTES..=EXTENT_SIZE_MAX_BYTES).contains(&self.extent_size_bytes) {
            return Err(Error::InvalidConfig(format!(
                "extent_size_bytes {} is outside {EXTENT_SIZE_MIN_BYTES}..={EXTENT_SIZE_MAX_BYTES}",
                self.extent_size_bytes
            )));
        }
        if self.read_only && self.recovery == Recovery::Salvage {
            return Err(Error::InvalidConfig(
                "a salvage writes: it cannot be asked of a read-only open".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Options of one write beyond key and value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions<'a> {
    /// Metadata bytes stored with the record (at most [`META_LEN_MAX`]).
    pub meta: &'a [u8],
    /// Unix milliseconds after which the key reads as absent.
    pub expiry_unix_ms: Option<u64>,
}

/// A live record as read back: value, metadata and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub value: Bytes,
    pub meta: Bytes,
    pub expiry_unix_ms: Option<u64>,
}

impl StoredRecord {
    fn copied(rec: &format::RecordRef<'_>) -> Self {
        Self {
            value: Bytes::copy_from_slice(rec.value),
            meta: Bytes::copy_from_slice(rec.meta),
            expiry_unix_ms: rec.header.expiry_unix_ms,
        }
    }

    /// The options that write this record again as it is.
    pub fn write_options(&self) -> WriteOptions<'_> {
        WriteOptions {
            meta: &self.meta,
            expiry_unix_ms: self.expiry_unix_ms,
        }
    }
}

/// Figures of one substore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubstoreStats {
    /// Live keys.
    pub keys: u64,
    /// Live keys that have an expiry.
    pub expiring_keys: u64,
    /// The time those keys have left, summed (ms; for an average time to live).
    pub expiring_ttl_sum_ms: u128,
    /// Bytes of the records the index points at.
    pub live_bytes: u64,
    /// Bytes the extents take (sealed: file length; active: written length, aligned).
    pub disk_bytes: u64,
    /// Record bytes appended (live, dead and tombstones), all extents.
    pub record_bytes: u64,
    /// Bytes of tombstone records still kept.
    pub tombstone_bytes: u64,
    pub extents: u64,
    /// Appended but not yet written to the device.
    pub buffered_bytes: u64,
    /// Heap memory of the index (its allocations' capacities).
    pub index_memory_bytes: u64,
    /// Heap memory of the unsealed extents' record buffers (capacities).
    pub buffer_memory_bytes: u64,
    /// Heap memory of the key summaries the unsealed extents will be sealed with
    /// (capacities).
    pub summary_memory_bytes: u64,
}

impl SubstoreStats {
    /// Adds `other`'s figures to these (totals over several substores).
    pub fn add(&mut self, other: &SubstoreStats) {
        self.keys += other.keys;
        self.expiring_keys += other.expiring_keys;
        self.expiring_ttl_sum_ms += other.expiring_ttl_sum_ms;
        self.live_bytes += other.live_bytes;
        self.disk_bytes += other.disk_bytes;
        self.record_bytes += other.record_bytes;
        self.tombstone_bytes += other.tombstone_bytes;
        self.extents += other.extents;
        self.buffered_bytes += other.buffered_bytes;
        self.index_memory_bytes += other.index_memory_bytes;
        self.buffer_memory_bytes += other.buffer_memory_bytes;
        self.summary_memory_bytes += other.summary_memory_bytes;
    }
}

/// Per-extent accounting and, while the extent is not sealed, its tail.
#[derive(Debug)]
pub(crate) struct Extent<F> {
    pub(crate) file: Option<Rc<F>>,
    /// Header plus records: where the next record (or the summary) goes.
    pub(crate) records_end: u64,
    pub(crate) live_bytes: u64,
    pub(crate) tombstone_bytes: u64,
    /// Length of the sealed file; 0 while unsealed.
    pub(crate) sealed_len: u64,
    pub(crate) tail: Option<Tail>,
}

/// The in-memory end of an unsealed extent.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// File offset of `buf[0]`; a multiple of [`BLOCK_BYTES`].
    pub(crate) buf_start: u64,
    pub(crate) buf: Vec<u8>,
    /// Bytes `[0, written_end)` are on the device (maybe not yet durable).
    pub(crate) written_end: u64,
    pub(crate) synced_end: u64,
    /// Encoded summary entries of every record so far.
    pub(crate) summary: Vec<u8>,
    pub(crate) entries: u32,
    /// No more appends: seal at the next write-out.
    pub(crate) full: bool,
}

impl Tail {
    fn end(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }
}

#[derive(Debug)]
pub(crate) struct State<F> {
    /// Metadata up to this long is kept in the index (`Config::meta_in_index_max_bytes`).
    pub(crate) meta_held_max: usize,
    pub(crate) index: Index,
    pub(crate) next_seq: u64,
    pub(crate) extents: BTreeMap<u64, Extent<F>>,
    /// The extent accepting appends, if any.
    pub(crate) active: Option<u64>,
    pub(crate) read_only: Option<String>,
    /// Every record with a sequence up to this one is on stable storage (or a copy of
    /// one that is: compaction keeps sequences).
    pub(crate) durable_seq: u64,
    /// Keys whose newest record is a tombstone not yet on stable storage, with its
    /// sequence: the index no longer has them, yet a crash would bring them back.
    pub(crate) unsynced_deletes: hashbrown::HashMap<Vec<u8>, u64, ahash::RandomState>,
    /// Pinned cuts and the versions kept for them (`versions.rs`).
    pub(crate) versions: crate::versions::Versions,
}

/// One substore. See the module documentation.
#[derive(Debug)]
pub struct Substore<D: Device> {
    pub(crate) device: D,
    pub(crate) id: SubstoreId,
    pub(crate) config: Config,
    pub(crate) state: RefCell<State<D::File>>,
    pub(crate) io_lock: async_lock::Mutex<()>,
    /// One compaction at a time per substore.
    pub(crate) compaction_lock: async_lock::Mutex<()>,
    /// What opening salvaged (empty unless opened with [`Recovery::Salvage`]).
    pub(crate) salvaged: Vec<Salvaged>,
    /// Where writes are journaled for a commit log, if attached
    /// ([`Substore::attach_journal`]).
    pub(crate) journal: RefCell<Option<Rc<RefCell<Journal>>>>,
}

/// Checks a write's sizes against the limits before anything changes.
pub fn check_limits(key: &[u8], value: &[u8], meta: &[u8]) -> Result<()> {
    if key.len() > KEY_LEN_MAX {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            max: KEY_LEN_MAX,
        });
    }
    if value.len() > VALUE_LEN_MAX {
        return Err(Error::ValueTooLarge {
            len: value.len(),
            max: VALUE_LEN_MAX,
        });
    }
    if meta.len() > META_LEN_MAX {
        return Err(Error::MetadataTooLarge {
            len: meta.len(),
            max: META_LEN_MAX,
        });
    }
    Ok(())
}

/// Whether an entry's expiry, if any, is after `now_unix_ms`.
pub(crate) fn is_live(entry: &Entry, now_unix_ms: u64) -> bool {
    entry.expiry_unix_ms.is_none_or(|at| at > now_unix_ms)
}

/// The full length of the record an index entry points at.
pub(crate) fn record_len_of(entry: &Entry, key_len: usize) -> u64 {
    RecordHeader {
        kind: Kind::Put,
        seq: entry.seq,
        expiry_unix_ms: entry.expiry_unix_ms,
        meta_len: entry.meta_len,
        key_len: key_len as u16,
        value_len: entry.value_len,
    }
    .record_len() as u64
}

impl<F> State<F> {
    pub(crate) fn new(meta_held_max: usize) -> Self {
        Self {
            meta_held_max,
            index: Index::new(),
            next_seq: 1,
            extents: BTreeMap::new(),
            active: None,
            read_only: None,
            durable_seq: 0,
            unsynced_deletes: Default::default(),
            versions: Default::default(),
        }
    }
}

impl<F> State<F> {
    /// Accounts a record that the index now points at (or, for a tombstone, that
    /// removed a key), releasing the bytes of the record it replaced.
    /// `meta` is the record's metadata when the caller has it (a summary of format
    /// version 1 does not); the index keeps it when it is at most `meta_held_max` bytes.
    pub(crate) fn account(
        &mut self,
        extent_seq: u64,
        offset: u32,
        header: &RecordHeader,
        meta: Option<&[u8]>,
        key: &[u8],
    ) -> Result<()> {
        let len = header.record_len() as u64;
        let old = match header.kind {
            Kind::Put => {
                let entry = Entry {
                    extent: u32::try_from(extent_seq).expect("extent sequence fits u32"),
                    offset,
                    value_len: header.value_len,
                    seq: header.seq,
                    meta_len: header.meta_len,
                    expiry_unix_ms: header.expiry_unix_ms,
                };
                let held = meta.filter(|m| m.len() <= self.meta_held_max);
                self.index.insert(key, entry, held)?
            }
            Kind::Tombstone => self.index.remove(key),
        };
        if let Some(old) = old {
            let old_len = record_len_of(&old, key.len());
            let e = self
                .extents
                .get_mut(&u64::from(old.extent))
                .expect("index points at a known extent");
            e.live_bytes -= old_len;
        }
        let e = self.extents.get_mut(&extent_seq).expect("known extent");
        match header.kind {
            Kind::Put => e.live_bytes += len,
            Kind::Tombstone => e.tombstone_bytes += len,
        }
        self.next_seq = self.next_seq.max(header.seq + 1);
        Ok(())
    }

    fn buffered_bytes(&self) -> u64 {
        self.extents
            .values()
            .filter_map(|e| e.tail.as_ref())
            .map(|t| t.end() - t.written_end.max(t.buf_start))
            .sum()
    }

    /// Heap bytes of the tails' record buffers and of their key summaries.
    fn tail_memory_bytes(&self) -> (u64, u64) {
        let tails = self.extents.values().filter_map(|e| e.tail.as_ref());
        let sizes = tails.map(|t| (t.buf.capacity() as u64, t.summary.capacity() as u64));
        sizes.fold((0, 0), |(b, s), (tb, ts)| (b + tb, s + ts))
    }
}

impl<D: Device> Substore<D> {
    /// The identity this substore was created with.
    pub fn id(&self) -> SubstoreId {
        self.id
    }

    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// What opening salvaged: one entry per damaged extent it quarantined and cut.
    pub fn salvaged(&self) -> &[Salvaged] {
        &self.salvaged
    }

    /// Stores `value` under `key`. Visible to reads at once; durable after `flush`.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_with(key, value, WriteOptions::default()).await
    }

    /// `put` with metadata and expiry.
    pub async fn put_with(&self, key: &[u8], value: &[u8], opts: WriteOptions<'_>) -> Result<()> {
        self.put_in_memory(key, value, opts)?;
        self.write_out_if_full().await
    }

    /// The first half of [`Substore::put_with`], which never waits: the record is
    /// appended to the write buffer and visible to reads. An owner that calls it must
    /// call [`Substore::write_out_if_full`] afterwards, as `put_with` does.
    pub fn put_in_memory(&self, key: &[u8], value: &[u8], opts: WriteOptions<'_>) -> Result<()> {
        check_limits(key, value, opts.meta)?;
        self.append(Kind::Put, key, value, opts)
    }

    /// Deletes `key` (a tombstone record); a missing key is not an error and writes
    /// nothing.
    pub async fn delete(&self, key: &[u8]) -> Result<bool> {
        check_limits(key, &[], &[])?;
        if self.state.borrow().index.get(key).is_none() {
            self.check_writable()?;
            return Ok(false);
        }
        self.append(Kind::Tombstone, key, &[], WriteOptions::default())?;
        self.write_out_if_full().await?;
        Ok(true)
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.config.read_only {
            return Err(Error::OpenedReadOnly);
        }
        match &self.state.borrow().read_only {
            Some(cause) => Err(Error::ReadOnly {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Encodes one record into the active extent's tail and indexes it.
    fn append(&self, kind: Kind, key: &[u8], value: &[u8], opts: WriteOptions<'_>) -> Result<()> {
        self.check_writable()?;
        let mut state = self.state.borrow_mut();
        let seq = state.next_seq;
        if seq > SEQ_MAX {
            return Err(Error::IndexFull {
                what: "sequence numbers",
            });
        }
        let header = RecordHeader {
            kind,
            seq,
            expiry_unix_ms: opts.expiry_unix_ms,
            meta_len: opts.meta.len() as u8,
            key_len: key.len() as u16,
            value_len: value.len() as u32,
        };
        if kind == Kind::Tombstone {
            state.unsynced_deletes.insert(key.to_vec(), seq);
        }
        self.append_record(&mut state, &header, opts.meta, key, value)?;
        if let Some(journal) = &*self.journal.borrow() {
            journal
                .borrow_mut()
                .push(&self.id, &header, opts.meta, key, value);
        }
        Ok(())
    }

    /// Appends a record with a given header (compaction keeps the original sequence),
    /// updates the key summary, the index and the live-byte accounting.
    pub(crate) fn append_record(
        &self,
        state: &mut State<D::File>,
        header: &RecordHeader,
        meta: &[u8],
        key: &[u8],
        value: &[u8],
    ) -> Result<()> {
        let len = header.record_len() as u64;
        let extent_seq = self.extent_for_append(state, len);
        let extent = state.extents.get_mut(&extent_seq).expect("just chosen");
        extent.records_end += len;
        let tail = extent.tail.as_mut().expect("active extent has a tail");
        let offset = u32::try_from(tail.end()).expect("extent offsets fit u32");
        format::encode_record(&mut tail.buf, header, meta, key, value);
        let entry = SummaryEntry {
            offset,
            header: *header,
            meta: Some(meta),
            key,
        };
        format::encode_summary_entry(&mut tail.summary, &entry);
        tail.entries += 1;
        state.versions.note_write(&state.index, key, header.seq);
        if let Err(e) = state.account(extent_seq, offset, header, Some(meta), key) {
            // Only a full index fails here; the record is in the buffer but not
            // indexed, so refuse further writes rather than diverge from the log.
            state.read_only = Some(e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// The extent the next `len`-byte record goes to, rotating when it would not fit.
    fn extent_for_append(&self, state: &mut State<D::File>, len: u64) -> u64 {
        if let Some(seq) = state.active {
            let e = &state.extents[&seq];
            let has_records = e.records_end > EXTENT_HEADER_LEN as u64;
            if !has_records || e.records_end + len <= self.config.extent_size_bytes {
                return seq;
            }
            let tail = state.extents.get_mut(&seq).and_then(|e| e.tail.as_mut());
            tail.expect("active extent has a tail").full = true;
        }
        let seq = state.extents.keys().next_back().map_or(1, |last| last + 1);
        let header = ExtentHeader {
            extent_seq: seq,
            substore: self.id,
        };
        let tail = Tail {
            buf: header.encode().to_vec(),
            ..Tail::default()
        };
        state.extents.insert(
            seq,
            Extent {
                file: None,
                records_end: EXTENT_HEADER_LEN as u64,
                live_bytes: 0,
                tombstone_bytes: 0,
                sealed_len: 0,
                tail: Some(tail),
            },
        );
        state.active = Some(seq);
        seq
    }

    /// Ends the active extent if it holds records: the next append starts a new one,
    /// and the next write-out seals this one (and frees its key summary). Returns
    /// whether there was one to end.
    pub fn retire_active(&self) -> bool {
        let mut state = self.state.borrow_mut();
        let Some(seq) = state.active else {
            return false;
        };
        let extent = state
            .extents
            .get_mut(&seq)
            .expect("the active extent exists");
        if extent.records_end == EXTENT_HEADER_LEN as u64 {
            return false;
        }
        extent
            .tail
            .as_mut()
            .expect("the active extent has a tail")
            .full = true;
        state.active = None;
        true
    }

    /// Bytes of the key summary the active extent will be sealed with, held in memory
    /// until then.
    pub fn active_summary_bytes(&self) -> usize {
        let state = self.state.borrow();
        let tail = state
            .active
            .and_then(|seq| state.extents[&seq].tail.as_ref());
        tail.map_or(0, |t| t.summary.len())
    }

    /// Writes the buffers out if they hold more than the configured write buffer: the
    /// second half of a put.
    pub async fn write_out_if_full(&self) -> Result<()> {
        if self.write_buffer_full() {
            self.write_out(false).await?;
        }
        Ok(())
    }

    /// Whether the buffers hold more than the configured write buffer (a put's second
    /// half would write them out).
    pub fn write_buffer_full(&self) -> bool {
        self.state.borrow().buffered_bytes() > self.config.write_buffer_bytes as u64
    }

    /// Makes every write acknowledged so far durable: one write and one fdatasync per
    /// dirty extent (plus the seal of full ones).
    pub async fn flush(&self) -> Result<()> {
        self.write_out(true).await
    }

    /// Whether [`Substore::write_unsynced`] would seal an extent or write at least
    /// `min_bytes` not yet written: an owner whose commit log holds the records writes
    /// small tails out only once they have grown (each write of a tail rewrites its
    /// last block and may grow its file).
    pub fn write_out_due(&self, min_bytes: u64) -> bool {
        let state = self.state.borrow();
        let tails = state.extents.values().filter_map(|e| e.tail.as_ref());
        let mut unwritten = 0;
        for tail in tails {
            if tail.full {
                return true;
            }
            unwritten += tail.end() - tail.written_end;
        }
        unwritten >= min_bytes
    }

    /// Writes what is buffered to the extent files without syncing them (full extents
    /// are sealed, and a seal is synced): for an owner whose commit log makes the
    /// writes durable, so that buffers stay small and full extents get sealed.
    pub async fn write_unsynced(&self) -> Result<()> {
        self.write_out(false).await
    }

    /// Writes every tail out; seals full extents (always synced); syncs the rest when
    /// `sync`. One pass over the extents that had tails when it started.
    async fn write_out(&self, sync: bool) -> Result<()> {
        let _io = self.io_lock.lock().await;
        self.check_writable()?;
        let (seqs, covers) = {
            let state = self.state.borrow();
            let tails = state.extents.iter().filter(|(_, e)| e.tail.is_some());
            (
                tails.map(|(&seq, _)| seq).collect::<Vec<u64>>(),
                state.next_seq - 1,
            )
        };
        for seq in seqs {
            if let Err(e) = self.write_extent(seq, sync).await {
                // Out of descriptors, an extent file could not be created or its
                // directory opened: nothing reached the disk and the tail is still in
                // memory, so the next write-out tries again. Anything else is final.
                if !e.is_out_of_descriptors() {
                    self.state.borrow_mut().read_only = Some(e.to_string());
                }
                return Err(e);
            }
        }
        if sync {
            // Every record appended before this pass began is durable now.
            let mut state = self.state.borrow_mut();
            state.durable_seq = state.durable_seq.max(covers);
            state.unsynced_deletes.retain(|_, seq| *seq > covers);
        }
        Ok(())
    }

    async fn write_extent(&self, seq: u64, sync: bool) -> Result<()> {
        let name = extent_file_name(seq);
        let file = self.extent_file(seq, &name).await?;
        // Snapshot what to write; appends may continue while the I/O is in flight.
        let (at, bytes, end, seal) = {
            let state = self.state.borrow();
            let tail = state.extents[&seq].tail.as_ref().expect("has a tail");
            let end = tail.end();
            if tail.full {
                let footer = Footer {
                    records_end: end,
                    summary_len: u32::try_from(tail.summary.len()).expect("summary < 4 GiB"),
                    summary_crc: format::checksum(&[&tail.summary]),
                    entry_count: tail.entries,
                    layout: SummaryLayout::WithMeta,
                };
                let mut bytes = Vec::with_capacity((footer.file_len() - tail.buf_start) as usize);
                bytes.extend_from_slice(&tail.buf);
                bytes.extend_from_slice(&tail.summary);
                // The footer goes in a second write (below), once everything it vouches
                // for is durable: a torn seal can then never show a footer whose summary
                // or records did not reach the disk.
                bytes.resize((footer.file_len() - tail.buf_start) as usize, 0);
                (tail.buf_start, bytes, end, Some(footer))
            } else if end == tail.written_end && (!sync || end == tail.synced_end) {
                return Ok(());
            } else {
                let mut bytes = tail.buf.clone();
                bytes.resize((align_up(end) - tail.buf_start) as usize, 0);
                (tail.buf_start, bytes, end, None)
            }
        };
        let path = || self.device.path_of(&name);
        file.write_at(at, &bytes)
            .await
            .map_err(|e| Error::io("writing", path(), at, e))?;
        if sync || seal.is_some() {
            file.sync()
                .await
                .map_err(|e| Error::io("syncing", path(), at, e))?;
        }
        if let Some(footer) = &seal {
            // The last block again, now ending with the footer; its other bytes are the
            // same as the durable ones, so a torn write cannot damage them.
            let last = footer.file_len() - BLOCK_BYTES;
            let mut block = bytes[(last - at) as usize..].to_vec();
            block[BLOCK_BYTES as usize - FOOTER_LEN..].copy_from_slice(&footer.encode());
            file.write_at(last, &block)
                .await
                .map_err(|e| Error::io("writing the footer of", path(), last, e))?;
            file.sync()
                .await
                .map_err(|e| Error::io("syncing", path(), last, e))?;
        }
        let mut state = self.state.borrow_mut();
        let extent = state
            .extents
            .get_mut(&seq)
            .expect("extents outlive their I/O");
        if let Some(footer) = seal {
            extent.sealed_len = footer.file_len();
            extent.tail = None;
            return Ok(());
        }
        let tail = extent.tail.as_mut().expect("unsealed");
        tail.written_end = end;
        if sync {
            tail.synced_end = end;
        }
        let new_start = align_down(end);
        tail.buf.drain(..(new_start - tail.buf_start) as usize);
        tail.buf_start = new_start;
        Ok(())
    }

    /// The extent's file, creating it on first use: the header block alone is written
    /// and synced, then the directory, so that a valid header proves the extent began
    /// after every older extent was sealed.
    async fn extent_file(&self, seq: u64, name: &str) -> Result<Rc<D::File>> {
        if let Some(file) = &self.state.borrow().extents[&seq].file {
            return Ok(file.clone());
        }
        let path = || self.device.path_of(name);
        let file = match self.device.create(name).await {
            // An earlier attempt created it and then ran out of descriptors (syncing the
            // directory): it holds at most a header, no record. Start it again.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                self.device
                    .remove(name)
                    .await
                    .map_err(|e| Error::io("removing", path(), 0, e))?;
                self.device.create(name).await
            }
            other => other,
        };
        let file = file.map_err(|e| Error::io("creating", path(), 0, e))?;
        let mut block = vec![0u8; BLOCK_BYTES as usize];
        let header = ExtentHeader {
            extent_seq: seq,
            substore: self.id,
        };
        block[..EXTENT_HEADER_LEN].copy_from_slice(&header.encode());
        file.write_at(0, &block)
            .await
            .map_err(|e| Error::io("writing the header of", path(), 0, e))?;
        file.sync()
            .await
            .map_err(|e| Error::io("syncing", path(), 0, e))?;
        self.device
            .sync_dir()
            .await
            .map_err(|e| Error::io("syncing the directory of", path(), 0, e))?;
        let file = Rc::new(file);
        let mut state = self.state.borrow_mut();
        state.extents.get_mut(&seq).expect("known").file = Some(file.clone());
        Ok(file)
    }

    /// The value stored under `key`, if any.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.get_record(key).await?.map(|r| r.value))
    }

    /// The value stored under `key` with its metadata and expiry, if any.
    pub async fn get_record(&self, key: &[u8]) -> Result<Option<StoredRecord>> {
        let entry = self.state.borrow().index.get(key);
        match entry {
            Some(entry) if !self.config.clock.has_passed(entry.expiry_unix_ms) => {
                self.read_entry(key, &entry).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The record `entry` (an entry of `key`) points at: from the tail's buffer while
    /// it is there, else read from its extent.
    pub(crate) async fn read_entry(&self, key: &[u8], entry: &Entry) -> Result<StoredRecord> {
        let file = {
            let state = self.state.borrow();
            let extent = &state.extents[&u64::from(entry.extent)];
            if let Some(tail) = extent
                .tail
                .as_ref()
                .filter(|t| u64::from(entry.offset) >= t.buf_start)
            {
                let at = (u64::from(entry.offset) - tail.buf_start) as usize;
                let len = record_len_of(entry, key.len()) as usize;
                let rec = format::decode_record(&tail.buf[at..at + len])
                    .expect("records in memory are well formed");
                return Ok(StoredRecord::copied(&rec));
            }
            extent.file.clone().expect("written extents have files")
        };
        self.read_record(&file, key, entry).await
    }

    /// Reads and verifies the record `entry` points at.
    async fn read_record(&self, file: &D::File, key: &[u8], entry: &Entry) -> Result<StoredRecord> {
        let offset = u64::from(entry.offset);
        let len = record_len_of(entry, key.len());
        let start = align_down(offset);
        let path = || {
            self.device
                .path_of(&extent_file_name(u64::from(entry.extent)))
        };
        let at = (offset - start) as usize;
        let bad = |what: String| Error::corruption(path(), offset, what);
        // The record is checked and its value copied out where the read landed: one
        // copy, of the value only, into memory the caller and the cache can share.
        let check = |block: &[u8]| {
            let rec = format::decode_record(block.get(at..).unwrap_or_default())
                .map_err(|e| bad(format!("record does not decode: {e:?}")))?;
            if rec.key != key || rec.header.seq != entry.seq || rec.header.kind != Kind::Put {
                return Err(bad("record is not the one the index points at".into()));
            }
            Ok(StoredRecord::copied(&rec))
        };
        file.read_with(start, (align_up(offset + len) - start) as usize, check)
            .await
            .map_err(|e| Error::io("reading", path(), offset, e))?
    }

    /// Calls `f` with every live key and the length of its record, from the index (no
    /// I/O). `f` must not call back into this substore.
    pub fn for_each_key(&self, mut f: impl FnMut(&[u8], u64)) {
        let state = self.state.borrow();
        let now = self.config.clock.now_unix_ms();
        for (key, entry) in state.index.iter().filter(|(_, e)| is_live(e, now)) {
            f(key, record_len_of(&entry, key.len()));
        }
    }

    /// Whether what reads answer for `key` is on stable storage, so that no crash can take
    /// it back: its newest record (put or tombstone) was covered by a successful flush.
    /// No I/O.
    pub fn is_durable(&self, key: &[u8]) -> bool {
        let state = self.state.borrow();
        let put_durable = state
            .index
            .get(key)
            .is_none_or(|e| e.seq <= state.durable_seq);
        put_durable && !state.unsynced_deletes.contains_key(key)
    }

    /// Whether any answer of this substore could still be taken back by a crash: a put
    /// or tombstone appended since the last successful flush. No I/O.
    pub fn has_unsynced(&self) -> bool {
        let state = self.state.borrow();
        state.durable_seq < state.next_seq - 1 || !state.unsynced_deletes.is_empty()
    }

    /// From now on every put and delete is also journaled into `journal` (or no longer,
    /// with `None`), for a commit log that makes it durable in place of a flush.
    pub fn attach_journal(&self, journal: Option<Rc<RefCell<Journal>>>) {
        *self.journal.borrow_mut() = journal;
    }

    /// Declares every record up to `seq` durable: a commit log holding them was synced.
    /// Reads then treat them as a flush would have.
    pub fn mark_durable(&self, seq: u64) {
        let mut state = self.state.borrow_mut();
        state.durable_seq = state.durable_seq.max(seq);
        state.unsynced_deletes.retain(|_, s| *s > seq);
    }

    /// Appends the records of `records` (encoded as in an extent, concatenated, in
    /// sequence order) that this substore does not hold, keeping their sequences: a
    /// record is missing when its sequence is at least [`Substore::next_seq`], because
    /// recovery keeps a prefix of the appends. Returns how many it appended; the caller
    /// flushes them.
    pub fn replay(&self, records: &[u8], source: &str) -> Result<usize> {
        self.check_writable()?;
        let mut state = self.state.borrow_mut();
        let (mut rest, mut applied) = (records, 0);
        while !rest.is_empty() {
            let at = (records.len() - rest.len()) as u64;
            let record = format::decode_record(rest).map_err(|e| {
                Error::corruption(source.into(), at, format!("replayed record: {e:?}"))
            })?;
            rest = &rest[record.header.record_len()..];
            if record.header.seq < state.next_seq {
                continue;
            }
            if record.header.kind == Kind::Tombstone {
                state
                    .unsynced_deletes
                    .insert(record.key.to_vec(), record.header.seq);
            }
            let RecordRef {
                header,
                meta,
                key,
                value,
            } = record;
            self.append_record(&mut state, &header, meta, key, value)?;
            applied += 1;
        }
        Ok(applied)
    }

    /// The sequence number the next record appended will get (no I/O). A caller that
    /// reads it and appends in the same poll learns its record's sequence.
    pub fn next_seq(&self) -> u64 {
        self.state.borrow().next_seq
    }

    /// The sequence number of `key`'s newest record, if the key has a value (no I/O).
    pub fn seq_of(&self, key: &[u8]) -> Option<u64> {
        self.state.borrow().index.get(key).map(|e| e.seq)
    }

    /// The index's entry for `key` if its value is live: where the record is, the value's
    /// and metadata's lengths, the expiry and the sequence (no I/O).
    pub fn head(&self, key: &[u8]) -> Option<Entry> {
        let entry = self.state.borrow().index.get(key)?;
        (!self.config.clock.has_passed(entry.expiry_unix_ms)).then_some(entry)
    }

    /// What [`Substore::head`] answers, and the key's metadata when the index holds it
    /// (see [`Config::meta_in_index_max_bytes`]; a record listed by a key summary of
    /// format version 1 has its metadata on the device only, until compaction rewrites
    /// it). `None` for the metadata means: read the record ([`Substore::get_record`]).
    pub fn head_with_meta(&self, key: &[u8]) -> Option<(Entry, Option<Bytes>)> {
        let state = self.state.borrow();
        let (entry, meta) = state.index.get_with_meta(key)?;
        if self.config.clock.has_passed(entry.expiry_unix_ms) {
            return None;
        }
        Some((entry, meta.map(Bytes::copy_from_slice)))
    }

    /// Whether the index has `key`, its expiry passed or not: then this substore has the
    /// key's newest record, and nothing older (an ancestor's) may answer for it.
    pub fn holds(&self, key: &[u8]) -> bool {
        self.state.borrow().index.get(key).is_some()
    }

    /// Whether the index has `key` with an expiry that has passed (no I/O).
    pub fn has_expired(&self, key: &[u8]) -> bool {
        let entry = self.state.borrow().index.get(key);
        entry.is_some_and(|e| {
            e.expiry_unix_ms.is_some() && self.config.clock.has_passed(e.expiry_unix_ms)
        })
    }

    /// Whether `key` has a live value (no I/O).
    pub fn exists(&self, key: &[u8]) -> bool {
        let state = self.state.borrow();
        (state.index.get(key)).is_some_and(|e| !self.config.clock.has_passed(e.expiry_unix_ms))
    }

    /// Live keys (a key whose expiry has passed is not counted).
    pub fn len(&self) -> u64 {
        let state = self.state.borrow();
        let expired = state.index.expired_count(self.config.clock.now_unix_ms());
        (state.index.len() - expired) as u64
    }

    /// Up to `limit` keys whose expiry has passed, earliest first (no I/O): what an
    /// expiry sweep deletes.
    pub fn expired_keys(&self, limit: usize) -> Vec<Vec<u8>> {
        let now = self.config.clock.now_unix_ms();
        self.state.borrow().index.expired_keys(now, limit)
    }

    /// The earliest expiry (Unix ms) of any key here, passed or not.
    pub fn next_expiry(&self) -> Option<u64> {
        self.state.borrow().index.next_expiry()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every live key and value once, in no particular order. Writes made
    /// while it runs may or may not be seen.
    pub async fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        self.for_each_async(async |k: &[u8], v: &[u8]| f(k, v))
            .await
    }

    /// [`Substore::for_each`] with an async callback, which may wait (to send entries
    /// on, say) without holding the whole substore in memory.
    pub async fn for_each_async(&self, mut f: impl AsyncFnMut(&[u8], &[u8])) -> Result<()> {
        self.for_each_record_async(async |k: &[u8], r: &StoredRecord| f(k, &r.value).await)
            .await
    }

    /// [`Substore::for_each_async`] with each record's metadata and expiry (what a copy
    /// of the substore needs).
    pub async fn for_each_record_async(
        &self,
        mut f: impl AsyncFnMut(&[u8], &StoredRecord),
    ) -> Result<()> {
        let mut live: Vec<(Vec<u8>, Entry)> = {
            let state = self.state.borrow();
            let now = self.config.clock.now_unix_ms();
            let entries = state.index.iter().filter(|(_, e)| is_live(e, now));
            entries.map(|(k, e)| (k.to_vec(), e)).collect()
        };
        live.sort_unstable_by_key(|(_, e)| (e.extent, e.offset));
        let mut reader: Option<(u32, crate::recovery::Scanner<D::File>)> = None;
        for (key, entry) in &live {
            let in_memory = {
                let state = self.state.borrow();
                let extent = state.extents.get(&u64::from(entry.extent));
                extent.and_then(|x| x.tail.as_ref()).and_then(|tail| {
                    let at = u64::from(entry.offset).checked_sub(tail.buf_start)? as usize;
                    let len = record_len_of(entry, key.len()) as usize;
                    let rec = format::decode_record(tail.buf.get(at..at + len)?).ok()?;
                    (rec.header.seq == entry.seq).then(|| StoredRecord::copied(&rec))
                })
            };
            if let Some(record) = in_memory {
                f(key, &record).await;
                continue;
            }
            if reader.as_ref().is_none_or(|(x, _)| *x != entry.extent) {
                let file = self
                    .state
                    .borrow()
                    .extents
                    .get(&u64::from(entry.extent))
                    .and_then(|e| e.file.clone());
                let Some(file) = file else {
                    // Compacted away meanwhile: the record lives elsewhere now.
                    if let Some(record) = self.get_record(key).await? {
                        f(key, &record).await;
                    }
                    continue;
                };
                let name = extent_file_name(u64::from(entry.extent));
                let scanner = crate::recovery::Scanner::new(file, self.device.path_of(&name));
                reader = Some((entry.extent, scanner));
            }
            let (_, scanner) = reader.as_mut().expect("set above");
            let len = record_len_of(entry, key.len());
            let offset = u64::from(entry.offset);
            if format::decode_record(scanner.bytes_at(offset, len).await?).is_err() {
                // The window was read ahead before this record was written out (it was
                // in the tail then, and the tail moved on while `f` ran): read afresh.
                scanner.forget();
            }
            let path = scanner.path();
            let bytes = scanner.bytes_at(offset, len).await?;
            let rec = format::decode_record(bytes)
                .map_err(|e| Error::corruption(path, offset, format!("{e:?}")))?;
            if rec.key == key.as_slice() && rec.header.seq == entry.seq {
                let record = StoredRecord::copied(&rec);
                f(key, &record).await;
            }
        }
        Ok(())
    }

    /// Figures of this substore.
    pub fn stats(&self) -> SubstoreStats {
        let state = self.state.borrow();
        let (buffer_memory_bytes, summary_memory_bytes) = state.tail_memory_bytes();
        let (expiring, ttl_sum) = state.index.expiring_ahead(self.config.clock.now_unix_ms());
        let expired = state.index.expiring_len() - expiring;
        let mut stats = SubstoreStats {
            keys: (state.index.len() - expired) as u64,
            expiring_keys: expiring as u64,
            expiring_ttl_sum_ms: ttl_sum,
            extents: state.extents.len() as u64,
            buffered_bytes: state.buffered_bytes(),
            index_memory_bytes: state.index.heap_bytes() as u64,
            buffer_memory_bytes,
            summary_memory_bytes,
            ..SubstoreStats::default()
        };
        for e in state.extents.values() {
            stats.live_bytes += e.live_bytes;
            stats.tombstone_bytes += e.tombstone_bytes;
            stats.record_bytes += e.records_end - EXTENT_HEADER_LEN as u64;
            stats.disk_bytes += match &e.tail {
                None => e.sealed_len,
                Some(t) => align_up(t.written_end),
            };
        }
        stats
    }

    /// Whether an earlier write failure made the substore read-only.
    pub fn is_read_only(&self) -> bool {
        self.state.borrow().read_only.is_some()
    }

    /// Heap bytes of the index.
    pub fn index_heap_bytes(&self) -> usize {
        self.state.borrow().index.heap_bytes()
    }

    /// Flushes and closes. Dropping without `close` loses what was not flushed.
    pub async fn close(self) -> Result<()> {
        self.flush().await
    }
}
