//! What bytes at the end of a log mean: the one place that tells the torn end of a crash
//! from damage. Recovery acts on its answers (cut a torn tail, refuse damage); `verify`
//! reports them (a note, a problem). Both ask here, so they can never disagree.
//!
//! The rule rests on the device assumption (FORMAT.md): a write cut by a crash leaves
//! each 512-byte sector old or new, and bytes past the durable end of a file are zeros
//! until written. So
//! - after the last good record of the newest extent, zeros to the end are a clean end;
//! - a footer-like block at the end that does not decode is a damaged footer (damage);
//! - a key summary right after the records, with no footer, is a seal cut by a crash
//!   (each sector of its first entry new or zeros: the seal's write may be torn too);
//! - a bad record that runs past the end of the file (a file of whole sectors), or one
//!   that holds a sector reading as zeros, is the torn end of the last write: never
//!   made durable, so never acknowledged as durable;
//! - anything else (a flipped bit, a damaged footer, a file cut inside a sector) is
//!   damage: the bytes were once good, and acknowledged records may lie in or after
//!   them. Opening refuses, changing nothing.
//!
//! A newest extent whose header is invalid is stillborn (its creation was cut before the
//! header block was durable) only when every byte of it reads as zeros: the header block
//! is one write of a fresh file, so a crash leaves it all zeros or valid.

use crate::device::DeviceFile;
use crate::error::Result;
use crate::format::{
    self, BLOCK_BYTES, EXTENT_HEADER_LEN, FOOTER_CRC_AT, FOOTER_LEN, FOOTER_MAGIC, FOOTER_MAGIC_V1,
    FOOTER_RECORDS_END_AT, FOOTER_RESERVED_AT, Footer, RECORD_EXPIRY_LEN, RECORD_HEADER_LEN,
    RecordError, RecordHeader, SECTOR_BYTES, SUMMARY_ENTRY_FIXED_LEN, SummaryEntry,
};
use crate::limits::SCAN_CHUNK_BYTES;
use crate::recovery::Scanner;

/// A record that did not decode, and the header it claimed when that much decoded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BadRecord {
    pub error: RecordError,
    pub header: Option<RecordHeader>,
}

/// How the newest extent ends after its last good record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TailEnd {
    /// Zeros (or nothing) follow the records.
    Clean,
    /// A key summary follows the records without a footer: a seal cut by a crash.
    InterruptedSeal,
    /// The torn end of the last write, never durable: cutting it loses nothing.
    Torn { what: String },
    /// Bytes a crash cannot leave. `offset` is where the damage shows.
    Damage { offset: u64, what: String },
}

/// Classifies what follows the last good record, at `pos`, of an extent `len` bytes
/// long whose first good record is `first` (as its key summary entry would list it).
/// `bad` is the record at `pos` that did not decode.
pub(crate) async fn classify_tail<F: DeviceFile>(
    scanner: &mut Scanner<F>,
    pos: u64,
    len: u64,
    bad: BadRecord,
    first: Option<&SummaryEntry<'_>>,
) -> Result<TailEnd> {
    if all_zero_from(scanner, pos, len).await? {
        return Ok(TailEnd::Clean);
    }
    let describe = describe_bad(bad.error, bad.header.as_ref(), len);
    let cut = len - pos;
    let footer_at = len.saturating_sub(FOOTER_LEN as u64);
    let footer = scanner.bytes_at(footer_at, FOOTER_LEN as u64).await?;
    if len % BLOCK_BYTES == 0 && footer_at >= pos && footer_like(footer) {
        let what = format!(
            "bad footer ({}): the extent was sealed, and its records end before it",
            footer_diagnosis(footer, len)
        );
        return Ok(TailEnd::Damage {
            offset: footer_at,
            what,
        });
    }
    if summary_follows(scanner, pos, first).await? {
        return Ok(TailEnd::InterruptedSeal);
    }
    let fixed = (RECORD_HEADER_LEN + RECORD_EXPIRY_LEN) as u64;
    let claimed_end = bad
        .header
        .map_or(pos + fixed, |h| pos + h.record_len() as u64);
    let runs_past = claimed_end > len;
    // A crash leaves whole sectors; ringkv itself cuts only at record boundaries.
    if runs_past && len % SECTOR_BYTES != 0 {
        let what = format!(
            "the file ends inside a record ({describe}) and its length, {len}, is not a \
             whole number of 512-byte sectors: it was truncated"
        );
        return Ok(TailEnd::Damage { offset: pos, what });
    }
    let region = scanner.bytes_at(pos, claimed_end.min(len) - pos).await?;
    if runs_past || torn_consistent(region, pos) {
        let what = format!(
            "the log ends in a torn write ({describe}): opening cuts the extent here, \
             dropping {cut} bytes that no flush had made durable"
        );
        return Ok(TailEnd::Torn { what });
    }
    let what = format!(
        "{describe}, in the newest extent: damage, not a torn write (none of its sectors \
         reads as zeros); the {cut} bytes from here may hold acknowledged records"
    );
    Ok(TailEnd::Damage { offset: pos, what })
}

/// Whether a key summary whose first entry lists `first` (the extent's first record)
/// starts at `pos`, whole or as a crash tore its write: the seal writes the records'
/// last block, the summary and the padding in one write, so each sector of the entry
/// may hold the new bytes or the old ones (zeros past the records). The entry may cross
/// into a sector that reads as zeros while the bytes at `pos`, read as a record, fit in
/// the sector before it and show no zeros.
async fn summary_follows<F: DeviceFile>(
    scanner: &mut Scanner<F>,
    pos: u64,
    first: Option<&SummaryEntry<'_>>,
) -> Result<bool> {
    let Some(first) = first else {
        return Ok(false);
    };
    // A seal of this build writes layout `WithMeta`; one of format version 1, `KeysOnly`
    // (the same entry without the metadata).
    let mut with_meta = Vec::new();
    format::encode_summary_entry(&mut with_meta, first);
    let keys_only = [&with_meta[..SUMMARY_ENTRY_FIXED_LEN], first.key].concat();
    let longest = with_meta.len().max(keys_only.len()) as u64;
    let head = scanner.bytes_at(pos, longest).await?;
    Ok([with_meta, keys_only]
        .iter()
        .any(|entry| torn_copy_of(head, pos, entry)))
}

/// Whether `bytes`, read from file offset `start` (shorter where the file ends), can be
/// what is left of `expected` written there by a write a crash may have torn: the share
/// of the first sector is new and not all zeros, each later sector's share is new or
/// zeros (never written, or cut off by the end of the file).
pub(crate) fn torn_copy_of(bytes: &[u8], start: u64, expected: &[u8]) -> bool {
    let end = start + expected.len() as u64;
    let mut at = start;
    while at < end {
        let sector_end = ((at / SECTOR_BYTES) + 1) * SECTOR_BYTES;
        let (from, to) = (
            (at - start) as usize,
            (sector_end.min(end) - start) as usize,
        );
        let want = &expected[from..to];
        let have = bytes.get(from..to.min(bytes.len())).unwrap_or(&[]);
        let zeros = have.iter().all(|&b| b == 0);
        let new = have == want;
        let fits = match at == start {
            true => new && !zeros,
            false => new || zeros,
        };
        if !fits {
            return false;
        }
        at = sector_end;
    }
    true
}

/// How a newest extent with an invalid header is to be taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stillborn {
    /// Its header is valid: an extent like any other.
    No,
    /// Every byte reads as zeros: its creation was cut by a crash; it held nothing.
    Yes,
    /// An invalid header in a file that holds other bytes: damage.
    Damaged { what: String },
}

/// Whether the extent read by `scanner`, `len` bytes long, is stillborn.
pub(crate) async fn stillborn<F: DeviceFile>(
    scanner: &mut Scanner<F>,
    len: u64,
) -> Result<Stillborn> {
    let head = scanner.bytes_at(0, EXTENT_HEADER_LEN as u64).await?;
    if format::ExtentHeader::decode(head).is_some() {
        return Ok(Stillborn::No);
    }
    if len <= BLOCK_BYTES && all_zero_from(scanner, 0, len).await? {
        return Ok(Stillborn::Yes);
    }
    let what = if len > BLOCK_BYTES {
        "bad extent header in a file that holds data"
    } else {
        "bad extent header in a file that is not all zeros (a crash leaves the header \
         block of a new extent all zeros or valid)"
    };
    Ok(Stillborn::Damaged { what: what.into() })
}

/// Whether every byte of the file from `pos` to `len` is zero.
pub(crate) async fn all_zero_from<F: DeviceFile>(
    scanner: &mut Scanner<F>,
    pos: u64,
    len: u64,
) -> Result<bool> {
    let mut at = pos;
    while at < len {
        let n = (len - at).min(SCAN_CHUNK_BYTES as u64);
        let bytes = scanner.bytes_at(at, n).await?;
        if bytes.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if bytes.len() as u64 != n {
            break; // the file is shorter than it said
        }
        at += n;
    }
    Ok(true)
}

/// A bad record in words.
pub(crate) fn describe_bad(
    error: RecordError,
    header: Option<&RecordHeader>,
    limit: u64,
) -> String {
    match (error, header) {
        (RecordError::Checksum, Some(h)) => format!(
            "record checksum mismatch (a {}-byte record, seq {} by its header)",
            h.record_len(),
            h.seq
        ),
        (RecordError::Truncated, Some(h)) => format!(
            "record of {} bytes runs past the end of the records at {limit}",
            h.record_len()
        ),
        (RecordError::Truncated, None) => {
            format!("a record header is cut off by the end of the records at {limit}")
        }
        _ => "not a record: bad flags, lengths or sequence in the record header".into(),
    }
}

/// Whether the bytes of a bad record, `bytes` read from file offset `start`, could be a
/// write torn by a crash: under the device assumption each 512-byte sector of a torn
/// write is old or new, and old bytes past the durable end are zeros, so some sector's
/// share of the record reads as all zeros.
pub(crate) fn torn_consistent(bytes: &[u8], start: u64) -> bool {
    let end = start + bytes.len() as u64;
    let mut at = start;
    while at < end {
        let sector_end = ((at / SECTOR_BYTES) + 1) * SECTOR_BYTES;
        let chunk = &bytes[(at - start) as usize..(sector_end.min(end) - start) as usize];
        if chunk.iter().all(|&b| b == 0) {
            return true;
        }
        at = sector_end;
    }
    false
}

/// Whether 32 bytes were meant as a footer: the magic is there, or the checksum matches
/// the rest (so one damaged byte anywhere still shows which it was).
pub(crate) fn footer_like(b: &[u8]) -> bool {
    b.len() == FOOTER_LEN
        && (b[..4] == FOOTER_MAGIC
            || b[..4] == FOOTER_MAGIC_V1
            || u32::from_le_bytes(b[FOOTER_CRC_AT..][..4].try_into().expect("4 bytes"))
                == format::checksum(&[&b[FOOTER_RECORDS_END_AT..]]))
}

/// Why the unit in `b` with `magic`, checksum at `crc_at` covering `crc_from..len` and
/// reserved bytes from `reserved_at` does not decode.
pub(crate) fn unit_diagnosis(
    b: &[u8],
    magic: [u8; 4],
    crc_at: usize,
    crc_from: usize,
    reserved_at: usize,
    len: usize,
) -> String {
    if b.len() < len {
        return format!("only {} of its {len} bytes are present", b.len());
    }
    let b = &b[..len];
    if b[..4] != magic {
        return format!("bad magic {:02x?} (expected {magic:02x?})", &b[..4]);
    }
    let stored = u32::from_le_bytes(b[crc_at..][..4].try_into().expect("4 bytes"));
    let computed = format::checksum(&[&b[crc_from..]]);
    if stored != computed {
        return format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})");
    }
    if b[reserved_at..].iter().any(|&x| x != 0) {
        return "reserved bytes are not zero".into();
    }
    "malformed fields (prefix bits or hash prefix)".into()
}

/// Why the footer bytes `b` of a file `len` bytes long do not decode.
pub(crate) fn footer_diagnosis(b: &[u8], len: u64) -> String {
    if len < BLOCK_BYTES || len % BLOCK_BYTES != 0 {
        return format!("the file is {len} bytes, not a whole number of 4096-byte blocks");
    }
    let magic = match b.get(..4) {
        Some(m) if m == FOOTER_MAGIC_V1 => FOOTER_MAGIC_V1,
        _ => FOOTER_MAGIC,
    };
    let why = unit_diagnosis(
        b,
        magic,
        FOOTER_CRC_AT,
        FOOTER_RECORDS_END_AT,
        FOOTER_RESERVED_AT,
        FOOTER_LEN,
    );
    if !why.starts_with("malformed") {
        return why;
    }
    match Footer::decode(b) {
        Some(f) if f.records_end < EXTENT_HEADER_LEN as u64 => {
            format!("records_end {} is inside the header", f.records_end)
        }
        Some(f) => format!(
            "records_end {} and summary_len {} make a file of {} bytes, not {len}",
            f.records_end,
            f.summary_len,
            f.file_len()
        ),
        None => "records_end does not fit an extent offset (u32)".into(),
    }
}
