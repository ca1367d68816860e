//! Verification of one substore: a read-only pass that checks every checksum and checks
//! the index that opening the substore would build against the log.
//!
//! What is checked (FORMAT.md names every unit):
//! - `SUBSTORE`: it decodes and names the expected identity;
//! - every extent: its header (magic, checksum, reserved bytes, sequence = file name,
//!   identity), then every record from byte 64 (flags, lengths, checksum, sequence within
//!   the index's 48 bits, key inside the substore's hash prefix);
//! - a sealed extent: its footer, the key summary's checksum, each summary entry against
//!   the record at its offset (and no record missing from it), the entry count, zero
//!   padding before the footer;
//! - an extent that is neither sealed nor the newest: a problem (open refuses it);
//! - the newest unsealed extent: what follows its last good record must be zeros. A
//!   record torn by a crash (one of its 512-byte sectors reads as zeros, FORMAT.md
//!   "Device assumption") or a key summary left by an interrupted seal is a note: opening
//!   cuts it, as designed. Anything else there is damage;
//! - the index: replayed as recovery does (summaries of sealed extents through
//!   `recovery::sealed_records`, the newest extent up to its first bad record, into a real
//!   [`Index`]); each entry must point at the newest record (highest sequence, later in
//!   the log on a tie) of its key, and every key whose newest record is a put must be in
//!   it.
//!
//! Nothing is written: the pass only lists, opens, measures and reads. A problem never
//! stops it; each one is reported with its file and byte offset. An I/O error on one file
//! is a problem too, and the pass goes on with the next file.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

use crate::device::{Device, DeviceFile};
use crate::diagnose::{
    self, BadRecord, Stillborn, TailEnd, describe_bad, footer_diagnosis, unit_diagnosis,
};
use crate::error::{Error, Result};
use crate::format::{
    self, BLOCK_BYTES, EXTENT_HEADER_CRC_AT, EXTENT_HEADER_LEN, EXTENT_HEADER_RESERVED_AT,
    EXTENT_HEADER_SEQ_AT, EXTENT_HEADER_SUBSTORE_AT, EXTENT_MAGIC, ExtentHeader,
    FOOTER_ENTRY_COUNT_AT, FOOTER_LEN, Footer, Kind, META_CRC_AT, META_FILE_LEN, META_FILE_NAME,
    META_FILE_TMP_NAME, META_MAGIC, META_RESERVED_AT, META_SUBSTORE_AT, RECORD_EXPIRY_LEN,
    RECORD_HEADER_LEN, RecordError, RecordHeader, SubstoreId, SummaryEntry, extent_file_name,
    parse_extent_file_name,
};
use crate::hash::routing_hash;
use crate::index::{Entry, Index};
use crate::limits::SEQ_MAX;
use crate::recovery::{Scanner, read_footer, sealed_records};

/// Something the verifier found, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The file, as the device names it.
    pub path: String,
    /// Byte offset in the file.
    pub offset: u64,
    pub what: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}: {}", self.path, self.offset, self.what)
    }
}

/// What verifying one substore found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubstoreReport {
    /// The identity in `SUBSTORE`, or the expected one when that file is unreadable;
    /// `None` for a directory that holds no substore yet.
    pub id: Option<SubstoreId>,
    /// Extent files read.
    pub extents: u64,
    /// Records read whose checksum matched.
    pub records: u64,
    /// Bytes of the extent files read.
    pub bytes: u64,
    /// Keys the index would hold after opening.
    pub keys: u64,
    /// Bytes of the records those keys point at.
    pub live_bytes: u64,
    /// Damage: anything here and the substore is not healthy.
    pub problems: Vec<Finding>,
    /// What opening the substore will clean up as designed (a torn tail after a crash,
    /// a stillborn extent); not damage.
    pub notes: Vec<Finding>,
}

impl SubstoreReport {
    /// No problem found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the substore in `device` without changing it. `expected`, when given, is the
/// identity the substore must have. `progress` is called with the byte count of each
/// extent file once it has been read. `Err` only when the directory cannot be listed;
/// everything else is a [`Finding`] in the report.
pub async fn verify_substore<D: Device>(
    device: &D,
    expected: Option<SubstoreId>,
    progress: &mut dyn FnMut(u64),
) -> Result<SubstoreReport> {
    let names = device
        .list()
        .await
        .map_err(|e| Error::io("listing", device.path_of(""), 0, e))?;
    let mut seqs: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_extent_file_name(n))
        .collect();
    seqs.sort_unstable();
    let mut v = Verifier {
        device,
        id: expected,
        report: SubstoreReport::default(),
        index: Index::new(),
        newest: HashMap::default(),
        suspect: HashSet::default(),
        progress,
    };
    if names.iter().any(|n| n == META_FILE_TMP_NAME) {
        let path = device.path_of(META_FILE_TMP_NAME);
        v.note(
            path,
            0,
            "left by an interrupted creation of the substore; ignored",
        );
    }
    if names.iter().any(|n| n == META_FILE_NAME) {
        v.meta(expected).await;
    } else if seqs.is_empty() {
        return Ok(v.report); // a leaf that was never opened: nothing to check
    } else {
        let path = device.path_of(META_FILE_NAME);
        v.problem(path, 0, "missing, yet extent files exist");
    }
    v.report.id = v.id;
    while let Some(&last) = seqs.last() {
        match v.stillborn(last).await {
            Ok(true) => {
                seqs.pop();
            }
            Ok(false) => break,
            Err(e) => {
                v.problem_of(e);
                break;
            }
        }
    }
    for (i, &seq) in seqs.iter().enumerate() {
        if let Err(e) = v.extent(seq, i + 1 == seqs.len()).await {
            v.problem_of(e);
        }
    }
    v.check_index();
    Ok(v.report)
}

/// The newest record of a key seen in the log.
#[derive(Clone, Copy, Debug)]
struct Newest {
    seq: u64,
    extent: u64,
    offset: u32,
    kind: Kind,
}

/// A record whose checksum matched.
#[derive(Debug)]
struct Scanned {
    offset: u32,
    header: RecordHeader,
    meta: Vec<u8>,
    key: Vec<u8>,
}

/// A summary entry and where it sits in the file.
#[derive(Debug)]
struct Listed {
    at: u64,
    offset: u32,
    header: RecordHeader,
    /// `None` in a summary of format version 1, which does not hold it.
    meta: Option<Vec<u8>>,
    key: Vec<u8>,
}

enum Step {
    /// A record's header, metadata and key.
    Good(RecordHeader, Vec<u8>, Vec<u8>),
    Bad {
        error: RecordError,
        header: Option<RecordHeader>,
    },
}

/// Decodes the record at `pos`, which must end by `limit`.
async fn step<F: DeviceFile>(scanner: &mut Scanner<F>, pos: u64, limit: u64) -> Result<Step> {
    let fixed = (RECORD_HEADER_LEN + RECORD_EXPIRY_LEN) as u64;
    let head = scanner.bytes_at(pos, fixed.min(limit - pos)).await?;
    let header = match format::decode_record_header(head) {
        Ok(h) => h,
        Err(error) => {
            return Ok(Step::Bad {
                error,
                header: None,
            });
        }
    };
    let len = header.record_len() as u64;
    if pos + len > limit {
        return Ok(Step::Bad {
            error: RecordError::Truncated,
            header: Some(header),
        });
    }
    let bytes = scanner.bytes_at(pos, len).await?;
    Ok(match format::decode_record(bytes) {
        Ok(r) => Step::Good(r.header, r.meta.to_vec(), r.key.to_vec()),
        Err(error) => Step::Bad {
            error,
            header: Some(header),
        },
    })
}

/// A key for messages: printable ASCII as is, other bytes escaped, long keys cut.
fn show_key(key: &[u8]) -> String {
    const SHOWN_MAX: usize = 48;
    let shown: String = key[..key.len().min(SHOWN_MAX)].escape_ascii().to_string();
    if key.len() > SHOWN_MAX {
        format!("\"{shown}…\" ({} bytes)", key.len())
    } else {
        format!("\"{shown}\"")
    }
}

struct Verifier<'a, D: Device> {
    device: &'a D,
    /// The identity extents must carry and keys must hash into.
    id: Option<SubstoreId>,
    report: SubstoreReport,
    /// The index as opening would build it.
    index: Index,
    /// The newest record of each key among the records whose checksum matched.
    newest: HashMap<Vec<u8>, Newest, ahash::RandomState>,
    /// Records already reported as bad (extent, offset): the index check skips them.
    suspect: HashSet<(u64, u32), ahash::RandomState>,
    progress: &'a mut dyn FnMut(u64),
}

impl<D: Device> Verifier<'_, D> {
    fn problem(&mut self, path: String, offset: u64, what: impl Into<String>) {
        let what = what.into();
        self.report.problems.push(Finding { path, offset, what });
    }

    fn note(&mut self, path: String, offset: u64, what: impl Into<String>) {
        let what = what.into();
        self.report.notes.push(Finding { path, offset, what });
    }

    /// An error that stopped the check of one file, as a problem of that file.
    fn problem_of(&mut self, e: Error) {
        match e {
            Error::Io {
                op,
                path,
                offset,
                source,
            } => self.problem(path, offset, format!("I/O error while {op}: {source}")),
            Error::Corruption { path, offset, what } => self.problem(path, offset, what),
            other => self.problem(self.device.path_of(""), 0, other.to_string()),
        }
    }

    fn extent_path(&self, seq: u64) -> String {
        self.device.path_of(&extent_file_name(seq))
    }

    async fn meta(&mut self, expected: Option<SubstoreId>) {
        let path = self.device.path_of(META_FILE_NAME);
        let bytes = match self.device.open(META_FILE_NAME).await {
            Ok(file) => file.read_at(0, BLOCK_BYTES as usize).await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => return self.problem(path, 0, format!("I/O error while reading: {e}")),
        };
        let Some(found) = format::decode_meta(&bytes) else {
            let why = unit_diagnosis(
                &bytes,
                META_MAGIC,
                META_CRC_AT,
                META_SUBSTORE_AT,
                META_RESERVED_AT,
                META_FILE_LEN,
            );
            return self.problem(path, 0, format!("bad substore metadata: {why}"));
        };
        if let Some(expected) = expected.filter(|e| *e != found) {
            let what = format!("names substore {found:?}, but this directory is {expected:?}");
            self.problem(path, META_SUBSTORE_AT as u64, what);
        }
        self.id = Some(found);
    }

    async fn open(&self, seq: u64) -> Result<(Scanner<D::File>, u64)> {
        let path = self.extent_path(seq);
        let file = self.device.open(&extent_file_name(seq)).await;
        let file = file.map_err(|e| Error::io("opening", path.clone(), 0, e))?;
        let len = file.file_size().await;
        let len = len.map_err(|e| Error::io("measuring", path.clone(), 0, e))?;
        Ok((Scanner::new(Rc::new(file), path), len))
    }

    /// Whether extent `seq`, the newest left, is one that open removes (see
    /// [`diagnose::stillborn`]); an extent with a damaged header is checked like the
    /// others.
    async fn stillborn(&mut self, seq: u64) -> Result<bool> {
        let (mut scanner, len) = self.open(seq).await?;
        match diagnose::stillborn(&mut scanner, len).await? {
            // A damaged header is reported once, with its diagnosis, by the check of the
            // extent itself (open refuses it).
            Stillborn::No | Stillborn::Damaged { .. } => Ok(false),
            Stillborn::Yes => {
                let what = "an extent whose creation never finished (all zeros): opening \
                            removes it";
                self.note(scanner.path(), 0, what);
                (self.progress)(len);
                Ok(true)
            }
        }
    }

    async fn extent(&mut self, seq: u64, newest: bool) -> Result<()> {
        let (mut scanner, len) = self.open(seq).await?;
        let path = scanner.path();
        self.report.extents += 1;
        self.report.bytes += len;
        let head = scanner
            .bytes_at(0, EXTENT_HEADER_LEN as u64)
            .await?
            .to_vec();
        match ExtentHeader::decode(&head) {
            None => {
                let why = unit_diagnosis(
                    &head,
                    EXTENT_MAGIC,
                    EXTENT_HEADER_CRC_AT,
                    EXTENT_HEADER_SEQ_AT,
                    EXTENT_HEADER_RESERVED_AT,
                    EXTENT_HEADER_LEN,
                );
                self.problem(path.clone(), 0, format!("bad extent header: {why}"));
            }
            Some(h) if h.extent_seq != seq => {
                let what = format!(
                    "the header names extent {}, the file name {seq}",
                    h.extent_seq
                );
                self.problem(path.clone(), EXTENT_HEADER_SEQ_AT as u64, what);
            }
            Some(h) if self.id.is_some_and(|id| id != h.substore) => {
                let what = format!(
                    "the header names substore {:?}, not {:?}",
                    h.substore,
                    self.id.expect("checked")
                );
                self.problem(path.clone(), EXTENT_HEADER_SUBSTORE_AT as u64, what);
            }
            Some(_) => {}
        }
        if u32::try_from(seq).is_err() {
            let what = "extent sequence past 2^32 - 1: the index cannot refer to it";
            self.problem(path, 0, what);
            (self.progress)(len);
            return Ok(());
        }
        let result = match read_footer(&mut scanner, len).await? {
            Some(footer) => self.sealed(seq, &mut scanner, len, footer).await,
            None => {
                if !newest {
                    let at = len.saturating_sub(FOOTER_LEN as u64);
                    let bytes = scanner.bytes_at(at, FOOTER_LEN as u64).await?.to_vec();
                    let what = format!(
                        "not the newest extent, yet not sealed: bad footer ({})",
                        footer_diagnosis(&bytes, len)
                    );
                    self.problem(path, at, what);
                }
                self.unsealed(seq, &mut scanner, len, newest).await
            }
        };
        (self.progress)(len);
        result
    }

    async fn sealed(
        &mut self,
        seq: u64,
        scanner: &mut Scanner<D::File>,
        len: u64,
        footer: Footer,
    ) -> Result<()> {
        let path = scanner.path();
        let (summary, summary_ok) = self.summary(scanner, &footer).await?;
        let summary_end = footer.records_end + u64::from(footer.summary_len);
        let footer_at = len - FOOTER_LEN as u64;
        let padding = scanner
            .bytes_at(summary_end, footer_at - summary_end)
            .await?;
        if let Some(i) = padding.iter().position(|&b| b != 0) {
            let what = "non-zero byte in the padding between the key summary and the footer";
            self.problem(path.clone(), summary_end + i as u64, what);
        }
        let offsets: Vec<u32> = summary.iter().map(|l| l.offset).collect();
        let resync = summary_ok.then_some(offsets.as_slice());
        let (records, bad) = self
            .scan_sealed(seq, scanner, footer.records_end, resync)
            .await?;
        if summary_ok {
            self.compare_summary(seq, &path, &summary, &records);
        } else if bad == 0 && records.len() != footer.entry_count as usize {
            let what = format!(
                "the footer counts {} records, the extent holds {}",
                footer.entry_count,
                records.len()
            );
            self.problem(path.clone(), footer_at + FOOTER_ENTRY_COUNT_AT as u64, what);
        }
        for r in &records {
            self.saw(seq, r);
        }
        // The index as recovery builds it, from recovery's own reader.
        match sealed_records(scanner, &footer).await {
            Ok(list) => {
                for r in list {
                    self.replay(seq, r.offset, &r.header, &r.key);
                }
            }
            Err(Error::Corruption { path, offset, what }) => {
                let known = self.report.problems.iter();
                if !known.clone().any(|p| p.path == path && p.offset == offset) {
                    self.problem(path, offset, format!("opening would fail here: {what}"));
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The key summary's entries, and whether its checksum matched.
    async fn summary(
        &mut self,
        scanner: &mut Scanner<D::File>,
        footer: &Footer,
    ) -> Result<(Vec<Listed>, bool)> {
        let at = footer.records_end;
        let len = footer.summary_len as usize;
        let bytes = scanner.bytes_at(at, len as u64).await?.to_vec();
        let crc = format::checksum(&[&bytes]);
        if bytes.len() != len || crc != footer.summary_crc {
            let what = format!(
                "key summary checksum mismatch (the footer says {:#010x}, its {len} bytes give \
                 {crc:#010x}); the records were scanned instead",
                footer.summary_crc
            );
            self.problem(scanner.path(), at, what);
            return Ok((Vec::new(), false));
        }
        let mut entries = Vec::with_capacity(footer.entry_count as usize);
        let mut pos = 0;
        for i in 0..footer.entry_count {
            let Some((e, n)) = format::decode_summary_entry(&bytes[pos..], footer.layout) else {
                let what = format!(
                    "key summary entry {i} of {} does not decode despite a good checksum",
                    footer.entry_count
                );
                self.problem(scanner.path(), at + pos as u64, what);
                return Ok((entries, true));
            };
            entries.push(Listed {
                at: at + pos as u64,
                offset: e.offset,
                header: e.header,
                meta: e.meta.map(<[u8]>::to_vec),
                key: e.key.to_vec(),
            });
            pos += n;
        }
        if pos != len {
            let what = format!("{} bytes after the last key summary entry", len - pos);
            self.problem(scanner.path(), at + pos as u64, what);
        }
        Ok((entries, true))
    }

    /// Every record from byte 64 to `limit`, each bad one reported. After a bad record
    /// the scan goes on at the next offset the key summary lists (`resync`), or past the
    /// record when only its checksum failed.
    async fn scan_sealed(
        &mut self,
        seq: u64,
        scanner: &mut Scanner<D::File>,
        limit: u64,
        resync: Option<&[u32]>,
    ) -> Result<(Vec<Scanned>, usize)> {
        let path = scanner.path();
        let (mut records, mut bad) = (Vec::new(), 0);
        let mut pos = EXTENT_HEADER_LEN as u64;
        while pos < limit {
            match step(scanner, pos, limit).await? {
                Step::Good(header, meta, key) => {
                    let offset = pos as u32;
                    self.check_record(&path, pos, &header, &key);
                    pos += header.record_len() as u64;
                    records.push(Scanned {
                        offset,
                        header,
                        meta,
                        key,
                    });
                }
                Step::Bad { error, header } => {
                    bad += 1;
                    self.suspect.insert((seq, pos as u32));
                    let mut what = describe_bad(error, header.as_ref(), limit);
                    let next = match (resync, header) {
                        (Some(offsets), _) => {
                            offsets.iter().map(|&o| u64::from(o)).find(|&o| o > pos)
                        }
                        (None, Some(h)) if error == RecordError::Checksum => {
                            Some(pos + h.record_len() as u64)
                        }
                        (None, _) => None,
                    };
                    if next.is_none() && resync.is_none() {
                        what += &format!("; the records from here to {limit} were not checked");
                    }
                    self.problem(path.clone(), pos, what);
                    match next {
                        Some(next) => pos = next,
                        None => break,
                    }
                }
            }
        }
        self.report.records += records.len() as u64;
        Ok((records, bad))
    }

    /// Each summary entry must equal the record at its offset, and each record must have
    /// an entry.
    fn compare_summary(&mut self, seq: u64, path: &str, listed: &[Listed], records: &[Scanned]) {
        let (mut i, mut j) = (0, 0);
        while i < listed.len() || j < records.len() {
            match (listed.get(i), records.get(j)) {
                (Some(l), Some(r)) if l.offset == r.offset => {
                    let meta_differs = l.meta.as_ref().is_some_and(|m| *m != r.meta);
                    if l.header != r.header || l.key != r.key || meta_differs {
                        self.suspect.insert((seq, r.offset));
                        let what = format!(
                            "key summary entry disagrees with the record at {}: it lists {} \
                             {:?} with metadata {:?}, the record is {} {:?} with {:?}",
                            r.offset,
                            show_key(&l.key),
                            l.header,
                            l.meta.as_deref().map(show_key),
                            show_key(&r.key),
                            r.header,
                            show_key(&r.meta)
                        );
                        self.problem(path.to_owned(), l.at, what);
                    }
                    i += 1;
                    j += 1;
                }
                (Some(l), r) if r.is_none_or(|r| l.offset < r.offset) => {
                    if !self.suspect.contains(&(seq, l.offset)) {
                        let what = format!(
                            "key summary lists a record at {} that is not there",
                            l.offset
                        );
                        self.problem(path.to_owned(), l.at, what);
                    }
                    i += 1;
                }
                (_, Some(r)) => {
                    let what = format!(
                        "record of key {} is missing from the key summary",
                        show_key(&r.key)
                    );
                    self.problem(path.to_owned(), u64::from(r.offset), what);
                    j += 1;
                }
                (_, None) => unreachable!("handled above, or the loop ended"),
            }
        }
    }

    /// The records of an unsealed extent up to the first bad one (where recovery cuts),
    /// and what follows them.
    async fn unsealed(
        &mut self,
        seq: u64,
        scanner: &mut Scanner<D::File>,
        len: u64,
        newest: bool,
    ) -> Result<()> {
        let path = scanner.path();
        let mut pos = EXTENT_HEADER_LEN as u64;
        let mut records = Vec::new();
        let stop = loop {
            if pos >= len {
                break None;
            }
            match step(scanner, pos, len).await? {
                Step::Good(header, meta, key) => {
                    self.check_record(&path, pos, &header, &key);
                    records.push(Scanned {
                        offset: pos as u32,
                        header,
                        meta,
                        key,
                    });
                    pos += header.record_len() as u64;
                }
                Step::Bad { error, header } => break Some((error, header)),
            }
        };
        self.report.records += records.len() as u64;
        for r in &records {
            self.saw(seq, r);
            self.replay(seq, r.offset, &r.header, &r.key);
        }
        let Some((error, header)) = stop else {
            return Ok(());
        };
        let first = records.first().map(|r| SummaryEntry {
            offset: r.offset,
            header: r.header,
            meta: Some(&r.meta),
            key: &r.key,
        });
        let bad = BadRecord { error, header };
        let end = diagnose::classify_tail(scanner, pos, len, bad, first.as_ref()).await?;
        if matches!(end, TailEnd::Clean) {
            return Ok(());
        }
        self.suspect.insert((seq, pos as u32));
        match end {
            TailEnd::Clean => {}
            TailEnd::InterruptedSeal => {
                if newest {
                    let what = "a key summary without its footer (a seal interrupted by a \
                                crash): opening cuts it off and appends to the extent again";
                    self.note(path, pos, what);
                }
            }
            _ if !newest => self.problem(path, pos, describe_bad(error, header.as_ref(), len)),
            TailEnd::Torn { what } => self.note(path, pos, what),
            TailEnd::Damage { offset, what } => {
                let what = format!(
                    "{what}; opening refuses the database, changing nothing \
                     (`ringkv salvage` keeps every intact record and moves these bytes aside)"
                );
                self.problem(path, offset, what);
            }
        }
        Ok(())
    }

    /// Checks that hold for every record whose checksum matched.
    fn check_record(&mut self, path: &str, pos: u64, header: &RecordHeader, key: &[u8]) {
        if header.seq > SEQ_MAX {
            let what = format!("sequence {} is past the index's 2^48 - 1", header.seq);
            self.problem(path.to_owned(), pos, what);
        }
        if let Some(id) = self.id.filter(|id| !id.covers(routing_hash(key))) {
            let what = format!(
                "key {} hashes outside this substore's prefix {:#018x}/{}: reads never look \
                 here for it",
                show_key(key),
                id.hash_prefix,
                id.prefix_bits
            );
            self.problem(path.to_owned(), pos, what);
        }
    }

    /// Remembers a record as its key's newest if its sequence is the highest so far (a
    /// later record with the same sequence, a compaction copy, wins).
    fn saw(&mut self, extent: u64, r: &Scanned) {
        let newest = Newest {
            seq: r.header.seq,
            extent,
            offset: r.offset,
            kind: r.header.kind,
        };
        match self.newest.get_mut(&r.key) {
            Some(old) if old.seq > newest.seq => {}
            Some(old) => *old = newest,
            None => {
                self.newest.insert(r.key.clone(), newest);
            }
        }
    }

    /// Applies a record to the index as recovery does.
    fn replay(&mut self, extent: u64, offset: u32, header: &RecordHeader, key: &[u8]) {
        if header.seq > SEQ_MAX {
            return; // reported by check_record; the index cannot hold it
        }
        match header.kind {
            Kind::Put => {
                let entry = Entry {
                    extent: u32::try_from(extent).expect("checked by the caller"),
                    offset,
                    value_len: header.value_len,
                    seq: header.seq,
                    meta_len: header.meta_len,
                    expiry_unix_ms: header.expiry_unix_ms,
                };
                if let Err(e) = self.index.insert(key, entry, None) {
                    let what = format!("opening would fail: {e}");
                    self.problem(self.extent_path(extent), u64::from(offset), what);
                }
            }
            Kind::Tombstone => {
                self.index.remove(key);
            }
        }
    }

    /// The index as opening would build it against the newest record of every key.
    fn check_index(&mut self) {
        let mut findings = Vec::new();
        let mut live_bytes = 0;
        for (key, entry) in self.index.iter() {
            let at = (u64::from(entry.extent), entry.offset);
            live_bytes += crate::substore::record_len_of(&entry, key.len());
            if self.suspect.contains(&at) {
                continue;
            }
            let what = match self.newest.get(key) {
                Some(n) if (n.extent, n.offset) == at => continue,
                Some(n) if self.suspect.contains(&(n.extent, n.offset)) => continue,
                Some(n) => format!(
                    "opening would index key {} at this record (seq {}), but its newest record \
                     is a {:?} with seq {} in extent {} at {}: log order and sequence order \
                     disagree",
                    show_key(key),
                    entry.seq,
                    n.kind,
                    n.seq,
                    n.extent,
                    n.offset
                ),
                None => format!(
                    "opening would index key {} at this record, which the scan did not find",
                    show_key(key)
                ),
            };
            findings.push((at, what));
        }
        for (key, n) in &self.newest {
            let at = (n.extent, n.offset);
            if n.kind == Kind::Put && !self.suspect.contains(&at) && self.index.get(key).is_none() {
                let what = format!(
                    "the newest record of key {} (a put, seq {}) is here, but opening would not \
                     index it: a later record in the log with a lower sequence deletes it",
                    show_key(key),
                    n.seq
                );
                findings.push((at, what));
            }
        }
        findings.sort_by_key(|(at, _)| *at);
        for ((extent, offset), what) in findings {
            self.problem(self.extent_path(extent), u64::from(offset), what);
        }
        self.report.keys = self.index.len() as u64;
        self.report.live_bytes = live_bytes;
    }
}

#[cfg(test)]
mod tests;
