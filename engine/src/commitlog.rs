//! The commit log: one preallocated-by-use file per core that makes a commit round
//! durable with one write and one fdatasync, whatever number of substores it touched.
//!
//! - A [`Journal`] collects, in memory, every record the core's substores append (their
//!   id and the encoded record); a commit round takes it whole and writes it as one
//!   frame ([`CommitLog::append`]).
//! - Frames follow each other from block 1 on. A frame is valid only with the file
//!   header's epoch and generation, the next frame number and a matching checksum, so a
//!   stale or torn frame ends the log ([`scan`]); a round is acknowledged only once it
//!   and every frame before it are durable, so nothing acknowledged lies past the end.
//! - The records are also in their substores' extents, written there without a sync.
//!   When the file is full, the caller syncs every substore and then [`CommitLog::reset`]s
//!   the file (a new generation): the records it held are durable elsewhere.
//! - At open, [`scan`] reads what each file holds and each substore replays the records
//!   it lacks ([`crate::Substore::replay`]); the file is then started again with a new
//!   epoch ([`CommitLog::start`]), never before every replayed record is durable.
//!
//! Invariant: a reset or a start writes the header only when no frame write is in
//! flight, and no frame is reserved until the new header is durable.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;

use crate::device::{Device, DeviceFile};
use crate::error::{Error, Result};
use crate::format::log::{
    FrameHeader, LOG_HEADER_LEN, LogHeader, decode_entries, decode_frame_header, encode_entry,
    encode_frame, frame_crc_matches,
};
use crate::format::{BLOCK_BYTES, RecordHeader, SubstoreId, align_up, encode_record};

/// Records appended since the last commit round, as log payload entries.
#[derive(Debug, Default)]
pub struct Journal {
    payload: Vec<u8>,
}

impl Journal {
    pub(crate) fn push(
        &mut self,
        substore: &SubstoreId,
        header: &RecordHeader,
        meta: &[u8],
        key: &[u8],
        value: &[u8],
    ) {
        let mut record = Vec::with_capacity(header.record_len());
        encode_record(&mut record, header, meta, key, value);
        encode_entry(&mut self.payload, substore.id, &record);
    }

    /// Everything journaled so far, leaving the journal empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }

    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

/// One core's log file, open for appending frames.
#[derive(Debug)]
pub struct CommitLog<F> {
    file: F,
    path: String,
    header: Cell<LogHeader>,
    next_offset: Cell<u64>,
    next_frame: Cell<u64>,
    capacity: u64,
    /// A reset is writing the header: no frame may be reserved.
    resetting: Cell<bool>,
    /// Frame writes hold it shared; a reset holds it alone.
    writes: async_lock::RwLock<()>,
}

impl<F: DeviceFile> CommitLog<F> {
    /// Opens (or creates) file `name` of `device` and starts it empty, with `epoch` and
    /// generation 0. Call only once every record the file held is durable elsewhere.
    pub async fn start<D: Device<File = F>>(
        device: &D,
        name: &str,
        core: u32,
        epoch: u64,
        capacity: u64,
    ) -> Result<Self> {
        let path = device.path_of(name);
        let (file, created) = match device.open(name).await {
            Ok(file) => (file, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let file = device.create(name).await;
                (
                    file.map_err(|e| Error::io("creating", path.clone(), 0, e))?,
                    true,
                )
            }
            Err(e) => return Err(Error::io("opening", path, 0, e)),
        };
        let log = Self {
            file,
            path,
            header: Cell::new(LogHeader {
                epoch,
                generation: 0,
                core,
            }),
            next_offset: Cell::new(BLOCK_BYTES),
            next_frame: Cell::new(0),
            capacity: capacity.max(2 * BLOCK_BYTES),
            resetting: Cell::new(false),
            writes: async_lock::RwLock::new(()),
        };
        log.write_header().await?;
        if created {
            device
                .sync_dir()
                .await
                .map_err(|e| Error::io("syncing the directory of", log.path.clone(), 0, e))?;
        }
        Ok(log)
    }

    /// Writes `payload` as the next frame and makes it durable. `Ok(false)`, with
    /// nothing written, when it does not fit (the caller syncs the substores and resets)
    /// or a reset is under way.
    pub async fn append(&self, payload: &[u8]) -> Result<bool> {
        // Reserved in the first poll: frames are numbered in the order of the calls.
        let frame_header = FrameHeader {
            epoch: self.header.get().epoch,
            generation: self.header.get().generation,
            frame_no: self.next_frame.get(),
            payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        };
        let at = self.next_offset.get();
        let len = frame_header.frame_len();
        if self.resetting.get() || payload.len() > u32::MAX as usize || at + len > self.capacity {
            return Ok(false);
        }
        self.next_offset.set(at + len);
        self.next_frame.set(frame_header.frame_no + 1);
        let mut frame = Vec::with_capacity(len as usize);
        encode_frame(&mut frame, &frame_header, payload);
        {
            let _writing = self.writes.read().await;
            self.file
                .write_at(at, &frame)
                .await
                .map_err(|e| Error::io("writing", self.path.clone(), at, e))?;
        }
        self.sync(at).await?;
        Ok(true)
    }

    /// Whether the next frame of `payload_len` bytes would not fit.
    pub fn is_full_for(&self, payload_len: usize) -> bool {
        let len = align_up((crate::format::log::FRAME_HEADER_LEN + payload_len) as u64);
        self.next_offset.get() + len > self.capacity
    }

    /// Whether a payload this long can ever be logged (else the caller syncs the
    /// substores instead).
    pub fn fits_at_all(&self, payload_len: usize) -> bool {
        let len = align_up((crate::format::log::FRAME_HEADER_LEN + payload_len) as u64);
        BLOCK_BYTES + len <= self.capacity
    }

    /// Starts a new generation: every earlier frame stops being valid. Call only once
    /// every record of the file is durable in its substore. Waits for frame writes in
    /// flight; frames reserved meanwhile are refused (`append` answers `false`).
    pub async fn reset(&self) -> Result<()> {
        if self.resetting.replace(true) {
            return Ok(()); // another reset is doing it
        }
        let _alone = self.writes.write().await;
        let mut header = self.header.get();
        header.generation += 1;
        self.header.set(header);
        let result = self.write_header().await;
        self.next_offset.set(BLOCK_BYTES);
        self.next_frame.set(0);
        self.resetting.set(false);
        result
    }

    async fn write_header(&self) -> Result<()> {
        let mut block = vec![0u8; BLOCK_BYTES as usize];
        block[..LOG_HEADER_LEN].copy_from_slice(&self.header.get().encode());
        self.file
            .write_at(0, &block)
            .await
            .map_err(|e| Error::io("writing the header of", self.path.clone(), 0, e))?;
        self.sync(0).await
    }

    async fn sync(&self, at: u64) -> Result<()> {
        self.file
            .sync()
            .await
            .map_err(|e| Error::io("syncing", self.path.clone(), at, e))
    }
}

/// What a log file holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogContents {
    /// `None` for a file too short to have a header (created, never written).
    pub header: Option<LogHeader>,
    /// Records per substore id, concatenated in log order.
    pub records: BTreeMap<u64, Vec<u8>>,
    pub frames: u64,
    /// Where the valid frames end.
    pub end: u64,
}

/// Bytes read per call while scanning.
const SCAN_READ_BYTES: usize = 1 << 20;

/// Reads a log file through `read(offset, len)` (fewer bytes only at the end of the
/// file): its header and every valid frame, up to the first that is not.
///
/// A header that does not validate is corruption (a reset writes it within one sector,
/// so a torn header write leaves the old or the new one); so is a frame whose checksum
/// matches but whose entries do not parse. A torn or stale frame just ends the log.
pub fn scan(
    path: &str,
    mut read: impl FnMut(u64, usize) -> io::Result<Vec<u8>>,
) -> Result<LogContents> {
    let first =
        read(0, BLOCK_BYTES as usize).map_err(|e| Error::io("reading", path.into(), 0, e))?;
    if first.len() < LOG_HEADER_LEN {
        return Ok(LogContents::default());
    }
    let header = LogHeader::decode(&first)
        .ok_or_else(|| Error::corruption(path.into(), 0, "commit log header does not validate"))?;
    let mut contents = LogContents {
        header: Some(header),
        end: BLOCK_BYTES,
        ..LogContents::default()
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = BLOCK_BYTES;
    loop {
        let at = contents.end;
        let expected = (header.epoch, header.generation, contents.frames);
        let mut need = BLOCK_BYTES as usize;
        let frame = loop {
            let have = (buf_at + buf.len() as u64).saturating_sub(at) as usize;
            if have < need {
                buf.drain(..(at - buf_at) as usize);
                buf_at = at;
                let more = read(at + have as u64, (need - have).max(SCAN_READ_BYTES))
                    .map_err(|e| Error::io("reading", path.into(), at, e))?;
                if more.is_empty() {
                    break None;
                }
                buf.extend_from_slice(&more);
                continue;
            }
            let bytes = &buf[(at - buf_at) as usize..];
            let Some(fh) = decode_frame_header(bytes) else {
                break None;
            };
            // Checked before the payload is read: a stale or garbage header must not
            // make the scan read (and hold) whatever length it claims.
            if (fh.epoch, fh.generation, fh.frame_no) != expected {
                break None;
            }
            if fh.frame_len() as usize > need {
                need = fh.frame_len() as usize;
                continue;
            }
            break Some(fh);
        };
        let Some(fh) = frame else { break };
        let bytes = &buf[(at - buf_at) as usize..];
        if !frame_crc_matches(bytes, &fh) {
            break;
        }
        let payload = &bytes[crate::format::log::FRAME_HEADER_LEN..][..fh.payload_len as usize];
        let entries = decode_entries(payload).map_err(|e| {
            Error::corruption(path.into(), at, format!("commit log frame entries: {e:?}"))
        })?;
        for (substore, record) in entries {
            contents
                .records
                .entry(substore)
                .or_default()
                .extend_from_slice(record);
        }
        contents.frames += 1;
        contents.end = at + fh.frame_len();
    }
    Ok(contents)
}

#[cfg(test)]
mod tests;
