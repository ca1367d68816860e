//! The commit log: one file per core (grown ahead of its frames by chunks of zeros)
//! that makes a commit round durable with one durable write (O_DSYNC, no separate
//! fdatasync: [`DeviceFile::write_durable`]), whatever number of substores it touched.
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
//! Invariant: a frame is reserved only while the log is unsealed; a checkpoint seals it
//! before it syncs the substores, so every frame of the generation it resets holds
//! records appended before that sync began. A reset writes the header only once every
//! frame reserved before the seal is written, and unseals only once the header is
//! durable.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;

use crate::device::{Device, DeviceFile};
use crate::error::{Error, Result};
use crate::format::log::{
    FrameHeader, LOG_HEADER_LEN, LogHeader, decode_entries, decode_frame_header, encode_entry,
    encode_frame, frame_crc_matches,
};
use crate::format::{BLOCK_BYTES, RecordHeader, SubstoreId, align_down, encode_record};

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

    /// Bytes journaled so far.
    pub fn len(&self) -> usize {
        self.payload.len()
    }
}

/// A generation the log stopped taking frames in: its checkpoint is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a sealed log takes no frame until it is reset"]
pub struct Sealed {
    generation: u64,
}

impl Sealed {
    /// The generation that was sealed.
    pub fn generation(&self) -> u64 {
        self.generation
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
    /// A checkpoint of this generation is due: no frame may be reserved until its
    /// reset has written the next generation's header.
    sealed: Cell<bool>,
    /// Each reserved frame holds it shared from its reservation until it is written; a
    /// reset holds it alone, so no frame of an older generation lands after it.
    writes: async_lock::RwLock<()>,
    /// The file is written (allocated, its length set) up to here, so that a frame
    /// below it changes no file-system metadata and its durable write is a data write
    /// with a flush (or FUA) only.
    written_end: Cell<u64>,
    /// Held while the file grows by a chunk of zeros.
    growing: async_lock::Mutex<()>,
}

/// How much the log file grows at a time, ahead of the frames: the metadata of its new
/// length is committed once per chunk instead of with every frame.
const GROW_BYTES: u64 = 1 << 20;

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
            capacity: align_down(capacity).max(2 * BLOCK_BYTES),
            sealed: Cell::new(false),
            writes: async_lock::RwLock::new(()),
            written_end: Cell::new(0),
            growing: async_lock::Mutex::new(()),
        };
        let size = log.file.file_size().await;
        let size = size.map_err(|e| Error::io("sizing", log.path.clone(), 0, e))?;
        // The header block is written next, whatever the file held (a crash may have
        // left its length anywhere; past the header, all it holds is stale).
        log.written_end.set(align_down(size).max(BLOCK_BYTES));
        log.write_header().await?;
        if created {
            device
                .sync_dir()
                .await
                .map_err(|e| Error::io("syncing the directory of", log.path.clone(), 0, e))?;
        }
        Ok(log)
    }

    /// Writes `payload` as the next frame and makes it durable. `Ok(Err(sealed))`, with
    /// nothing written, when it does not fit (or never could): the log is sealed, and
    /// the caller syncs every substore and then [`CommitLog::reset`]s it.
    pub async fn append(&self, payload: &[u8]) -> Result<Result<(), Sealed>> {
        // Reserved in the first poll: frames are numbered in the order of the calls,
        // and a frame reserved before a seal has its records appended before the
        // checkpoint that follows the seal began.
        let frame_header = FrameHeader {
            epoch: self.header.get().epoch,
            generation: self.header.get().generation,
            frame_no: self.next_frame.get(),
            payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        };
        let at = self.next_offset.get();
        let len = frame_header.frame_len();
        let fits = payload.len() <= u32::MAX as usize && at + len <= self.capacity;
        if self.sealed.get() || !fits {
            return Ok(Err(self.seal()));
        }
        // No reset waits while the log is unsealed, so this never fails; if it did,
        // sealing is the safe answer.
        let Some(writing) = self.writes.try_read() else {
            return Ok(Err(self.seal()));
        };
        self.next_offset.set(at + len);
        self.next_frame.set(frame_header.frame_no + 1);
        let mut frame = Vec::with_capacity(len as usize);
        encode_frame(&mut frame, &frame_header, payload);
        self.grow_to(at + len).await?;
        self.file
            .write_durable(at, &frame)
            .await
            .map_err(|e| Error::io("writing", self.path.clone(), at, e))?;
        drop(writing);
        Ok(Ok(()))
    }

    /// Stops the log taking frames until the checkpoint of this generation is done.
    pub fn seal(&self) -> Sealed {
        self.sealed.set(true);
        Sealed {
            generation: self.header.get().generation,
        }
    }

    /// Makes sure the file is written up to `end`, writing zeros ahead of the frames a
    /// chunk at a time. Zeros never validate as a frame; the chunk starts past every
    /// frame reserved so far, and a frame in it is written only once it is there.
    async fn grow_to(&self, end: u64) -> Result<()> {
        if end <= self.written_end.get() {
            return Ok(());
        }
        let _one = self.growing.lock().await;
        let from = self.written_end.get();
        if end <= from {
            return Ok(());
        }
        let ahead = (end + GROW_BYTES).min(self.capacity).max(end);
        // Zeros are no data: when the chunk does not fit (a full disk, a file-size
        // limit), the frame's own blocks are tried alone before giving up.
        for to in [ahead, end] {
            let zeros = vec![0u8; (to - from) as usize];
            match self.file.write_at(from, &zeros).await {
                Ok(()) => {
                    self.written_end.set(to);
                    return Ok(());
                }
                Err(e) if to == end => {
                    return Err(Error::io("growing", self.path.clone(), from, e));
                }
                Err(_) => {}
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Starts the generation after `sealed`: every earlier frame stops being valid.
    /// Call only once every record appended before the seal is durable in its
    /// substore. Waits until every frame reserved before the seal is written. A reset
    /// of a generation already left behind (another checkpoint did it) does nothing.
    pub async fn reset(&self, sealed: Sealed) -> Result<()> {
        let mut header = self.header.get();
        if header.generation != sealed.generation {
            return Ok(());
        }
        header.generation += 1;
        self.header.set(header);
        let _alone = self.writes.write().await;
        // On failure the log stays sealed: the core is failed anyway.
        self.write_header().await?;
        self.next_offset.set(BLOCK_BYTES);
        self.next_frame.set(0);
        self.sealed.set(false);
        Ok(())
    }

    /// The generation frames are appended to now (each reset starts the next).
    pub fn generation(&self) -> u64 {
        self.header.get().generation
    }

    /// Bytes from the start of the file to the end of the last frame.
    pub fn used_bytes(&self) -> u64 {
        self.next_offset.get()
    }

    /// Gives back the space of an empty log (after a reset): the file keeps its header
    /// block only. For a clean close: the next run grows it again.
    pub async fn shrink(&self) -> Result<()> {
        let _closing = self.seal();
        let _alone = self.writes.write().await;
        if self.next_offset.get() != BLOCK_BYTES {
            return Ok(()); // frames written since the reset: nothing to give back
        }
        self.file
            .truncate(BLOCK_BYTES)
            .await
            .map_err(|e| Error::io("truncating", self.path.clone(), BLOCK_BYTES, e))?;
        self.written_end.set(BLOCK_BYTES);
        self.sync(BLOCK_BYTES).await
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
/// so a torn header write leaves the old or the new one), unless it is all zeros (a new
/// file whose header was lost); so is a frame whose checksum
/// matches but whose entries do not parse. A torn or stale frame just ends the log.
pub fn scan(
    path: &str,
    mut read: impl FnMut(u64, usize) -> io::Result<Vec<u8>>,
) -> Result<LogContents> {
    let first =
        read(0, BLOCK_BYTES as usize).map_err(|e| Error::io("reading", path.into(), 0, e))?;
    // Created, and the header never reached the disk: a header once durable is only
    // ever replaced by another (sector-atomic), never by zeros.
    if first.len() < LOG_HEADER_LEN || first[..LOG_HEADER_LEN].iter().all(|&b| b == 0) {
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
