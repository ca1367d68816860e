//! Opening a substore: reading its identity, rebuilding the index from the extents,
//! and cutting a torn tail off the newest one.
//!
//! - Sealed extents are read through their key summary (footer at the end of the file,
//!   summary just before it): keys, not values. A summary whose checksum fails is
//!   replaced by a scan of the records, which must end exactly where the footer says.
//!   A bad footer, or a bad record found by that scan, is `Error::Corruption` naming the
//!   file and offset.
//! - The newest extent, when unsealed, is scanned record by record up to the first bad
//!   one. What follows is judged by [`crate::diagnose::classify_tail`]: zeros, the torn
//!   end of the last write or the key summary of an interrupted seal are cut off (the
//!   file is truncated and synced before anything new is appended: none of it was ever
//!   durable); anything else is damage, and opening fails with `Error::Corruption`
//!   naming the file and offset, having changed nothing, unless the caller asked for a
//!   salvage ([`crate::salvage`]).
//! - A newest extent whose header is invalid was being created when the process died
//!   only if it reads as all zeros ([`crate::diagnose::stillborn`]): then it is removed.
//!   Any other invalid header is corruption.
//! - Every field read from disk is bounded before use: an extent sequence past the
//!   index's u32, a record sequence past 2^48 − 1, a summary entry outside its extent, an
//!   entry count larger than its summary can hold are `Error::Corruption`, never a panic.

use std::cell::RefCell;
use std::rc::Rc;

use crate::device::{Device, DeviceFile};
use crate::diagnose::{self, BadRecord, Stillborn, TailEnd};
use crate::error::{Error, Result};
use crate::format::{
    self, BLOCK_BYTES, EXTENT_HEADER_LEN, ExtentHeader, FOOTER_LEN, Footer, META_FILE_LEN,
    META_FILE_NAME, META_FILE_TMP_NAME, RecordError, RecordHeader, SubstoreId, SummaryEntry,
    align_down, align_up, extent_file_name, parse_extent_file_name,
};
use crate::limits::{SCAN_CHUNK_BYTES, SEQ_MAX};
use crate::salvage::Recovery;
use crate::substore::{Config, Extent, State, Substore, Tail};

/// Sequential reader over one file, reading aligned chunks and keeping a window.
#[derive(Debug)]
pub(crate) struct Scanner<F> {
    file: Rc<F>,
    path: String,
    window_start: u64,
    window: Vec<u8>,
    eof: bool,
}

impl<F: DeviceFile> Scanner<F> {
    pub(crate) fn new(file: Rc<F>, path: String) -> Self {
        Self {
            file,
            path,
            window_start: 0,
            window: Vec::new(),
            eof: false,
        }
    }

    pub(crate) fn path(&self) -> String {
        self.path.clone()
    }

    /// Drops the window, so that the next read goes to the file. A window read ahead
    /// from an extent still being appended to holds zeros where later writes landed.
    pub(crate) fn forget(&mut self) {
        self.window.clear();
        self.eof = false;
    }

    /// Up to `len` bytes at `pos` (fewer only at the end of the file).
    pub(crate) async fn bytes_at(&mut self, pos: u64, len: u64) -> Result<&[u8]> {
        let window_end = self.window_start + self.window.len() as u64;
        if pos < self.window_start || pos > window_end {
            // Outside the window: start a new one at `pos`.
            self.window_start = align_down(pos);
            self.window.clear();
            self.eof = false;
        } else if pos - self.window_start > SCAN_CHUNK_BYTES as u64 {
            // Inside it but far along: forget what lies before `pos`.
            let drop_to = align_down(pos);
            self.window.drain(..(drop_to - self.window_start) as usize);
            self.window_start = drop_to;
        }
        while !self.eof && self.window_start + (self.window.len() as u64) < pos + len {
            let at = self.window_start + self.window.len() as u64;
            debug_assert_eq!(at % BLOCK_BYTES, 0);
            let want = align_up((pos + len - at).max(SCAN_CHUNK_BYTES as u64));
            let chunk = self
                .file
                .read_at(at, want as usize)
                .await
                .map_err(|e| Error::io("reading", self.path.clone(), at, e))?;
            self.eof = (chunk.len() as u64) < want;
            self.window.extend_from_slice(&chunk);
        }
        let start = ((pos - self.window_start) as usize).min(self.window.len());
        let end = (start + len as usize).min(self.window.len());
        Ok(&self.window[start..end])
    }
}

/// What a scan of records found.
struct ScanEnd {
    /// End of the last good record.
    end: u64,
    /// Why the scan stopped (`None`: it reached `limit`).
    stop: Option<BadRecord>,
}

/// Decodes records from `start` until `limit` or the first bad one, calling `f` for each.
async fn scan_records<F: DeviceFile>(
    scanner: &mut Scanner<F>,
    start: u64,
    limit: u64,
    mut f: impl FnMut(u64, &RecordHeader, &[u8], &[u8]) -> Result<()>,
) -> Result<ScanEnd> {
    let path = scanner.path();
    let mut pos = start;
    while pos < limit {
        let fixed = (format::RECORD_HEADER_LEN + format::RECORD_EXPIRY_LEN) as u64;
        let head = scanner.bytes_at(pos, fixed.min(limit - pos)).await?;
        let header = match format::decode_record_header(head) {
            Ok(h) => h,
            Err(error) => {
                let stop = BadRecord {
                    error,
                    header: None,
                };
                return Ok(ScanEnd {
                    end: pos,
                    stop: Some(stop),
                });
            }
        };
        let len = header.record_len() as u64;
        if pos + len > limit {
            let stop = BadRecord {
                error: RecordError::Truncated,
                header: Some(header),
            };
            return Ok(ScanEnd {
                end: pos,
                stop: Some(stop),
            });
        }
        let bytes = scanner.bytes_at(pos, len).await?;
        match format::decode_record(bytes) {
            Ok(rec) => {
                check_seq(&path, pos, &rec.header)?;
                f(pos, &rec.header, rec.meta, rec.key)?;
            }
            Err(error) => {
                let stop = BadRecord {
                    error,
                    header: Some(header),
                };
                return Ok(ScanEnd {
                    end: pos,
                    stop: Some(stop),
                });
            }
        }
        pos += len;
    }
    Ok(ScanEnd {
        end: pos,
        stop: None,
    })
}

/// A record sequence the index cannot hold was never written by ringkv.
fn check_seq(path: &str, pos: u64, header: &RecordHeader) -> Result<()> {
    if header.seq > SEQ_MAX {
        let what = format!(
            "record sequence {} is past 2^48 - 1, which no version of ringkv writes",
            header.seq
        );
        return Err(Error::corruption(path.to_owned(), pos, what));
    }
    Ok(())
}

pub(crate) fn io_err(
    op: &'static str,
    path: String,
    offset: u64,
) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(op, path, offset, e)
}

impl<D: Device> Substore<D> {
    /// Opens the substore in `device`, creating it with identity `id` if the directory
    /// holds none. An existing substore must have the same identity.
    pub async fn create_or_open(device: D, id: SubstoreId, config: Config) -> Result<Self> {
        Self::open_inner(device, Some(id), config).await
    }

    /// Opens an existing substore, whatever its identity.
    pub async fn open(device: D, config: Config) -> Result<Self> {
        Self::open_inner(device, None, config).await
    }

    async fn open_inner(device: D, create: Option<SubstoreId>, config: Config) -> Result<Self> {
        config.validate()?;
        let names = device
            .list()
            .await
            .map_err(io_err("listing", device.path_of(""), 0))?;
        let mut seqs: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_extent_file_name(n))
            .collect();
        seqs.sort_unstable();
        let id = if names.iter().any(|n| n == META_FILE_NAME) {
            let found = read_meta(&device).await?;
            if let Some(expected) = create.filter(|e| *e != found) {
                return Err(Error::WrongSubstore {
                    path: device.path_of(META_FILE_NAME),
                    expected: format!("{expected:?}"),
                    found: format!("{found:?}"),
                });
            }
            found
        } else if let (Some(_), true, true) = (create, seqs.is_empty(), config.read_only) {
            return Err(Error::NeedsWritableOpen {
                path: device.path_of(""),
                what: "the substore was never created (it has no SUBSTORE file)".to_owned(),
            });
        } else if let (Some(id), true) = (create, seqs.is_empty()) {
            write_meta(&device, &id, names.iter().any(|n| n == META_FILE_TMP_NAME)).await?;
            id
        } else if seqs.is_empty() {
            return Err(Error::NotFound {
                path: device.path_of(""),
            });
        } else {
            return Err(Error::corruption(
                device.path_of(META_FILE_NAME),
                0,
                "extent files exist but the substore metadata file is missing",
            ));
        };
        let state = State::new(config.meta_in_index_max_bytes);
        let mut substore = Substore {
            device,
            id,
            config,
            state: RefCell::new(state),
            io_lock: async_lock::Mutex::new(()),
            compaction_lock: async_lock::Mutex::new(()),
            salvaged: Vec::new(),
            journal: Default::default(),
        };
        substore.recover(seqs).await?;
        substore.salvaged = substore.finish_salvages().await?;
        {
            // Everything recovery kept is on stable storage.
            let mut state = substore.state.borrow_mut();
            state.durable_seq = state.next_seq - 1;
        }
        Ok(substore)
    }

    async fn recover(&self, mut seqs: Vec<u64>) -> Result<()> {
        if let Some(&seq) = seqs.iter().find(|&&s| u32::try_from(s).is_err()) {
            let path = self.device.path_of(&extent_file_name(seq));
            let what = "extent sequence past 2^32 - 1, which no version of ringkv writes";
            return Err(Error::corruption(path, 0, what));
        }
        // A newest extent whose creation a crash cut short never held a record: drop it.
        if let Some(&last) = seqs.last() {
            if self.newest_extent_is_stillborn(last).await? {
                let name = extent_file_name(last);
                let path = self.device.path_of(&name);
                if self.config.read_only {
                    let what = "its creation was cut short by a crash (an all-zero header), \
                                and it is to be removed";
                    return Err(needs_writable_open(path, what));
                }
                self.device
                    .remove(&name)
                    .await
                    .map_err(io_err("removing", path.clone(), 0))?;
                self.device.sync_dir().await.map_err(io_err(
                    "syncing the directory of",
                    path,
                    0,
                ))?;
                seqs.pop();
            }
        }
        let count = seqs.len();
        for (i, seq) in seqs.into_iter().enumerate() {
            let (file, path) = self.open_extent(seq).await?;
            let len = file
                .file_size()
                .await
                .map_err(io_err("measuring", path.clone(), 0))?;
            let mut scanner = Scanner::new(file.clone(), path.clone());
            let head = scanner.bytes_at(0, EXTENT_HEADER_LEN as u64).await?;
            let header = ExtentHeader::decode(head)
                .ok_or_else(|| Error::corruption(path.clone(), 0, "bad extent header"))?;
            if header.extent_seq != seq || header.substore != self.id {
                return Err(Error::corruption(
                    path,
                    0,
                    format!(
                        "extent header names {header:?}, expected extent {seq} of {:?}",
                        self.id
                    ),
                ));
            }
            self.state.borrow_mut().extents.insert(
                seq,
                Extent {
                    file: Some(file.clone()),
                    records_end: EXTENT_HEADER_LEN as u64,
                    live_bytes: 0,
                    tombstone_bytes: 0,
                    sealed_len: 0,
                    tail: None,
                },
            );
            let footer = read_footer(&mut scanner, len).await?;
            let newest = i + 1 == count;
            match footer {
                Some(footer) => self.recover_sealed(seq, &mut scanner, footer).await?,
                None if newest => self.recover_active(seq, &mut scanner, &file, len).await?,
                None => {
                    return Err(Error::corruption(
                        path,
                        len.saturating_sub(FOOTER_LEN as u64),
                        "extent is not the newest but has no valid footer",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Opens extent `seq`; returns the file and its path for messages.
    async fn open_extent(&self, seq: u64) -> Result<(Rc<D::File>, String)> {
        let path = self.device.path_of(&extent_file_name(seq));
        let file = self.device.open(&extent_file_name(seq)).await;
        let file = file.map_err(io_err("opening", path.clone(), 0))?;
        Ok((Rc::new(file), path))
    }

    async fn newest_extent_is_stillborn(&self, seq: u64) -> Result<bool> {
        let (file, path) = self.open_extent(seq).await?;
        let len = file
            .file_size()
            .await
            .map_err(io_err("measuring", path.clone(), 0))?;
        let mut scanner = Scanner::new(file, path.clone());
        match diagnose::stillborn(&mut scanner, len).await? {
            Stillborn::No => Ok(false),
            Stillborn::Yes => Ok(true),
            Stillborn::Damaged { what } => Err(Error::corruption(path, 0, what)),
        }
    }

    async fn recover_sealed(
        &self,
        seq: u64,
        scanner: &mut Scanner<D::File>,
        footer: Footer,
    ) -> Result<()> {
        for record in sealed_records(scanner, &footer).await? {
            let (offset, header) = (record.offset, record.header);
            let end = u64::from(offset) + header.record_len() as u64;
            if u64::from(offset) < EXTENT_HEADER_LEN as u64 || end > footer.records_end {
                let what = format!(
                    "the key summary lists a record at {offset}..{end}, outside the records \
                     ({EXTENT_HEADER_LEN}..{})",
                    footer.records_end
                );
                return Err(Error::corruption(scanner.path(), footer.records_end, what));
            }
            check_seq(&scanner.path, u64::from(offset), &header)?;
            let meta = record.meta.as_deref();
            (self.state.borrow_mut()).account(seq, offset, &header, meta, &record.key)?;
        }
        let mut state = self.state.borrow_mut();
        let extent = state.extents.get_mut(&seq).expect("inserted");
        extent.records_end = footer.records_end;
        extent.sealed_len = footer.file_len();
        Ok(())
    }

    async fn recover_active(
        &self,
        seq: u64,
        scanner: &mut Scanner<D::File>,
        file: &Rc<D::File>,
        len: u64,
    ) -> Result<()> {
        let mut summary = Vec::new();
        let mut entries = 0u32;
        let mut first = None;
        let scan = scan_records(
            scanner,
            EXTENT_HEADER_LEN as u64,
            len,
            |pos, h, meta, key| {
                let offset = u32::try_from(pos).expect("extent offsets fit u32");
                format::encode_summary_entry(
                    &mut summary,
                    &SummaryEntry {
                        offset,
                        header: *h,
                        meta: Some(meta),
                        key,
                    },
                );
                entries += 1;
                first.get_or_insert_with(|| (*h, meta.to_vec(), key.to_vec()));
                (self.state.borrow_mut()).account(seq, offset, h, Some(meta), key)
            },
        )
        .await?;
        let end = scan.end;
        if let Some(bad) = scan.stop {
            let first = first.as_ref().map(|(header, meta, key)| SummaryEntry {
                offset: EXTENT_HEADER_LEN as u32,
                header: *header,
                meta: Some(meta),
                key,
            });
            let tail = diagnose::classify_tail(scanner, end, len, bad, first.as_ref()).await?;
            match tail {
                TailEnd::Damage { offset, what } => match self.config.recovery {
                    Recovery::Strict => return Err(refusal(scanner.path(), offset, what)),
                    Recovery::Salvage => self.quarantine(seq, scanner, end, len).await?,
                },
                TailEnd::Clean => {}
                TailEnd::InterruptedSeal if self.config.read_only => {
                    let what = format!("a seal a crash cut short follows its records at {end}");
                    return Err(needs_writable_open(scanner.path(), &what));
                }
                TailEnd::Torn { what } if self.config.read_only => {
                    let what = format!("a torn write follows its records at {end} ({what})");
                    return Err(needs_writable_open(scanner.path(), &what));
                }
                TailEnd::InterruptedSeal | TailEnd::Torn { .. } => {}
            }
        }
        // Read-only, zeros follow the records (as a clean close leaves them): nothing
        // to cut, and nothing is written.
        if !self.config.read_only {
            let path = scanner.path();
            if len > end {
                file.truncate(end)
                    .await
                    .map_err(io_err("truncating", path.clone(), end))?;
            }
            // What was read may sit in a volatile cache if the process died before a
            // flush: synced here, every record the index now serves is durable (and the
            // cut too).
            file.sync().await.map_err(io_err("syncing", path, end))?;
        }
        let buf_start = align_down(end);
        let buf = scanner.bytes_at(buf_start, end - buf_start).await?.to_vec();
        assert_eq!(
            buf.len() as u64,
            end - buf_start,
            "the scanned bytes are still there"
        );
        let mut state = self.state.borrow_mut();
        let extent = state.extents.get_mut(&seq).expect("inserted");
        extent.records_end = end;
        extent.tail = Some(Tail {
            buf_start,
            buf,
            written_end: end,
            synced_end: end,
            summary,
            entries,
            full: false,
        });
        state.active = Some(seq);
        Ok(())
    }
}

/// A read-only open's refusal of what only a writable open may change.
fn needs_writable_open(path: String, what: &str) -> Error {
    Error::NeedsWritableOpen {
        path,
        what: what.to_owned(),
    }
}

/// The error a strict open returns for damage: nothing was changed.
fn refusal(path: String, offset: u64, what: String) -> Error {
    let what = format!(
        "{what}. Nothing was changed: `ringkv verify` explains, and a salvage (`ringkv \
         salvage`, or `Recovery::Salvage`) keeps every intact record and moves the damaged \
         bytes into a quarantine file"
    );
    Error::corruption(path, offset, what)
}

/// The footer of a sealed extent, if the file ends with a valid one that fits.
pub(crate) async fn read_footer<F: DeviceFile>(
    scanner: &mut Scanner<F>,
    len: u64,
) -> Result<Option<Footer>> {
    if len < BLOCK_BYTES || len % BLOCK_BYTES != 0 {
        return Ok(None);
    }
    let at = len - FOOTER_LEN as u64;
    let bytes = scanner.bytes_at(at, FOOTER_LEN as u64).await?;
    Ok(Footer::decode(bytes)
        .filter(|f| f.records_end >= EXTENT_HEADER_LEN as u64 && f.file_len() == len))
}

/// One record of a sealed extent as its key summary (or a scan of the records) lists it.
#[derive(Debug)]
pub(crate) struct SealedRecord {
    pub(crate) offset: u32,
    pub(crate) header: RecordHeader,
    /// `None` when a summary of format version 1 listed it (its metadata is in the record
    /// alone).
    pub(crate) meta: Option<Vec<u8>>,
    pub(crate) key: Vec<u8>,
}

/// Every record of a sealed extent, in log order: from the key summary, or by scanning
/// the records when the summary is damaged (a bad record then is `Error::Corruption`).
pub(crate) async fn sealed_records<F: DeviceFile>(
    scanner: &mut Scanner<F>,
    footer: &Footer,
) -> Result<Vec<SealedRecord>> {
    let summary_at = footer.records_end;
    let summary_len = u64::from(footer.summary_len);
    let summary = scanner.bytes_at(summary_at, summary_len).await?.to_vec();
    // The count is bounded by what the summary can hold before it sizes anything.
    let entries_max = summary.len() / format::SUMMARY_ENTRY_FIXED_LEN;
    let mut records = Vec::with_capacity((footer.entry_count as usize).min(entries_max));
    if summary.len() as u64 == summary_len && format::checksum(&[&summary]) == footer.summary_crc {
        let mut at = 0;
        for _ in 0..footer.entry_count {
            let Some((entry, len)) = format::decode_summary_entry(&summary[at..], footer.layout)
            else {
                return Err(Error::corruption(
                    scanner.path(),
                    summary_at + at as u64,
                    "summary entry does not decode despite a good checksum",
                ));
            };
            records.push(SealedRecord {
                offset: entry.offset,
                header: entry.header,
                meta: entry.meta.map(<[u8]>::to_vec),
                key: entry.key.to_vec(),
            });
            at += len;
        }
        return Ok(records);
    }
    // The summary is damaged: the records themselves carry checksums.
    let end = scan_records(
        scanner,
        EXTENT_HEADER_LEN as u64,
        footer.records_end,
        |pos, h, meta, key| {
            records.push(SealedRecord {
                offset: pos as u32,
                header: *h,
                meta: Some(meta.to_vec()),
                key: key.to_vec(),
            });
            Ok(())
        },
    )
    .await?;
    if let Some(why) = end.stop {
        return Err(Error::corruption(
            scanner.path(),
            end.end,
            format!("bad record in a sealed extent ({why:?}); its key summary is damaged too"),
        ));
    }
    Ok(records)
}

/// The footer of a sealed extent of length `len`.
pub(crate) async fn sealed_footer<F: DeviceFile>(
    scanner: &mut Scanner<F>,
    len: u64,
) -> Result<Footer> {
    read_footer(scanner, len).await?.ok_or_else(|| {
        Error::corruption(
            scanner.path(),
            len.saturating_sub(FOOTER_LEN as u64),
            "bad footer",
        )
    })
}

async fn read_meta<D: Device>(device: &D) -> Result<SubstoreId> {
    let path = device.path_of(META_FILE_NAME);
    let file = device
        .open(META_FILE_NAME)
        .await
        .map_err(io_err("opening", path.clone(), 0))?;
    let bytes =
        file.read_at(0, BLOCK_BYTES as usize)
            .await
            .map_err(io_err("reading", path.clone(), 0))?;
    format::decode_meta(&bytes).ok_or_else(|| Error::corruption(path, 0, "bad substore metadata"))
}

/// Writes the metadata file atomically: a temporary file, synced, renamed, directory
/// synced.
async fn write_meta<D: Device>(device: &D, id: &SubstoreId, stale_tmp: bool) -> Result<()> {
    let path = device.path_of(META_FILE_TMP_NAME);
    if stale_tmp {
        device
            .remove(META_FILE_TMP_NAME)
            .await
            .map_err(io_err("removing", path.clone(), 0))?;
    }
    let file =
        device
            .create(META_FILE_TMP_NAME)
            .await
            .map_err(io_err("creating", path.clone(), 0))?;
    let mut block = vec![0u8; BLOCK_BYTES as usize];
    block[..META_FILE_LEN].copy_from_slice(&format::encode_meta(id));
    file.write_at(0, &block)
        .await
        .map_err(io_err("writing", path.clone(), 0))?;
    file.sync()
        .await
        .map_err(io_err("syncing", path.clone(), 0))?;
    drop(file);
    device
        .rename(META_FILE_TMP_NAME, META_FILE_NAME)
        .await
        .map_err(io_err("renaming", path.clone(), 0))?;
    device
        .sync_dir()
        .await
        .map_err(io_err("syncing the directory of", path, 0))
}
