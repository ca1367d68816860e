//! The on-disk format, byte by byte. `engine/FORMAT.md` is the document; every offset
//! it names is a `const` here, sizes are checked at compile time, and the golden-bytes
//! tests at the bottom pin the encoding so the two cannot drift.
//!
//! All integers are little-endian. Every unit carries a magic with the format version
//! inside and a seeded crc32c, so that zeroed or stale blocks never validate.
//!
//! Decoders take arbitrary bytes and never panic: they return `None` (or a reason) for
//! anything that is not a well-formed unit.

use crate::limits::{KEY_LEN_MAX, META_LEN_MAX, VALUE_LEN_MAX};

/// The direct-I/O unit: every write and read offset and length is a multiple of this.
pub const BLOCK_BYTES: u64 = 4096;
/// The atomic write unit the crash design assumes (FORMAT.md, "Device assumption").
pub const SECTOR_BYTES: u64 = 512;

/// The on-disk format this build writes. Every unit's magic carries, in its fourth byte,
/// the format version that gave the unit its layout: version 2 added the metadata bytes
/// to key summary entries, so footers say 2 ([`FOOTER_MAGIC`]) and the units unchanged
/// since version 1 say 1. Footers of version 1 are still read ([`SummaryLayout`]).
pub const FORMAT_VERSION: u8 = 2;
/// The version in the magic of units whose layout is that of format version 1.
pub const UNIT_VERSION_1: u8 = 1;

/// Seed of every crc32c in the format ("rkv1"); a crc of all-zero bytes never matches.
pub const CRC_SEED: u32 = 0x726b_7631;

/// Seeded crc32c over `parts`, in order.
pub fn checksum(parts: &[&[u8]]) -> u32 {
    parts
        .iter()
        .fold(CRC_SEED, |crc, part| crc32c::crc32c_append(crc, part))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Rounds `n` up to a multiple of [`BLOCK_BYTES`].
pub const fn align_up(n: u64) -> u64 {
    n.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}
/// Rounds `n` down to a multiple of [`BLOCK_BYTES`].
pub const fn align_down(n: u64) -> u64 {
    n / BLOCK_BYTES * BLOCK_BYTES
}

// ---------------------------------------------------------------------------------------
// Substore identity: which slice of the routing-hash space a substore covers.
// ---------------------------------------------------------------------------------------

/// Names a substore and the hash prefix it covers: keys whose routing hash starts with
/// the top `prefix_bits` bits of `hash_prefix` belong to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubstoreId {
    /// A number the owner assigns; unique within a database.
    pub id: u64,
    /// The covered prefix, left-aligned (bits below `prefix_bits` are zero).
    pub hash_prefix: u64,
    /// How many leading bits of the routing hash are fixed: 0..=64, a multiple of 4.
    pub prefix_bits: u8,
}

impl SubstoreId {
    /// The whole hash space, as one substore.
    pub const fn root(id: u64) -> Self {
        Self {
            id,
            hash_prefix: 0,
            prefix_bits: 0,
        }
    }

    /// Whether `hash` falls inside this substore's prefix.
    pub fn covers(&self, hash: u64) -> bool {
        if self.prefix_bits == 0 {
            return true;
        }
        let shift = 64 - u32::from(self.prefix_bits);
        hash >> shift == self.hash_prefix >> shift
    }

    fn is_well_formed(&self) -> bool {
        self.prefix_bits <= 64
            && self.prefix_bits % 4 == 0
            && (self.prefix_bits == 64 || self.hash_prefix & (u64::MAX >> self.prefix_bits) == 0)
    }
}

// ---------------------------------------------------------------------------------------
// Extent header: the first EXTENT_HEADER_LEN bytes of every extent file.
// Format: { magic "RKX" ver | crc32c | extent_seq | substore_id | hash_prefix | prefix_bits | 0... }
// ---------------------------------------------------------------------------------------

/// Magic of an extent header: "RKX" and version 1.
pub const EXTENT_MAGIC: [u8; 4] = [b'R', b'K', b'X', UNIT_VERSION_1];
pub const EXTENT_HEADER_LEN: usize = 64;
pub const EXTENT_HEADER_MAGIC_AT: usize = 0;
pub const EXTENT_HEADER_CRC_AT: usize = 4;
pub const EXTENT_HEADER_SEQ_AT: usize = 8;
pub const EXTENT_HEADER_SUBSTORE_AT: usize = 16;
pub const EXTENT_HEADER_PREFIX_AT: usize = 24;
pub const EXTENT_HEADER_PREFIX_BITS_AT: usize = 32;
/// Bytes 33..64 are reserved and must be zero.
pub const EXTENT_HEADER_RESERVED_AT: usize = 33;
const _: () = assert!(EXTENT_HEADER_RESERVED_AT == EXTENT_HEADER_PREFIX_BITS_AT + 1);
const _: () = assert!(EXTENT_HEADER_LEN as u64 <= SECTOR_BYTES);

/// The decoded extent header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtentHeader {
    pub extent_seq: u64,
    pub substore: SubstoreId,
}

impl ExtentHeader {
    pub fn encode(&self) -> [u8; EXTENT_HEADER_LEN] {
        let mut b = [0u8; EXTENT_HEADER_LEN];
        b[EXTENT_HEADER_MAGIC_AT..][..4].copy_from_slice(&EXTENT_MAGIC);
        b[EXTENT_HEADER_SEQ_AT..][..8].copy_from_slice(&self.extent_seq.to_le_bytes());
        b[EXTENT_HEADER_SUBSTORE_AT..][..8].copy_from_slice(&self.substore.id.to_le_bytes());
        b[EXTENT_HEADER_PREFIX_AT..][..8].copy_from_slice(&self.substore.hash_prefix.to_le_bytes());
        b[EXTENT_HEADER_PREFIX_BITS_AT] = self.substore.prefix_bits;
        let crc = checksum(&[&b[EXTENT_HEADER_SEQ_AT..]]);
        b[EXTENT_HEADER_CRC_AT..][..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..EXTENT_HEADER_LEN)?;
        if b[..4] != EXTENT_MAGIC
            || u32_at(b, EXTENT_HEADER_CRC_AT) != checksum(&[&b[EXTENT_HEADER_SEQ_AT..]])
            || b[EXTENT_HEADER_RESERVED_AT..].iter().any(|&x| x != 0)
        {
            return None;
        }
        let substore = SubstoreId {
            id: u64_at(b, EXTENT_HEADER_SUBSTORE_AT),
            hash_prefix: u64_at(b, EXTENT_HEADER_PREFIX_AT),
            prefix_bits: b[EXTENT_HEADER_PREFIX_BITS_AT],
        };
        substore.is_well_formed().then_some(Self {
            extent_seq: u64_at(b, EXTENT_HEADER_SEQ_AT),
            substore,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Record.
// Format: { crc32c | value_len u32 | key_len u16 | meta_len u8 | flags u8 | seq u64 |
//           [expiry_unix_ms u64 if HAS_EXPIRY] | meta | key | value }
// ---------------------------------------------------------------------------------------

pub const RECORD_HEADER_LEN: usize = 20;
pub const RECORD_CRC_AT: usize = 0;
pub const RECORD_VALUE_LEN_AT: usize = 4;
pub const RECORD_KEY_LEN_AT: usize = 8;
pub const RECORD_META_LEN_AT: usize = 10;
pub const RECORD_FLAGS_AT: usize = 11;
pub const RECORD_SEQ_AT: usize = 12;
/// Present only when the flags say so; otherwise metadata starts here.
pub const RECORD_EXPIRY_AT: usize = 20;
pub const RECORD_EXPIRY_LEN: usize = 8;
const _: () = assert!(RECORD_SEQ_AT + 8 == RECORD_HEADER_LEN);
const _: () = assert!(RECORD_EXPIRY_AT == RECORD_HEADER_LEN);

/// Low two bits of `flags`: what the record is.
pub const FLAG_KIND_MASK: u8 = 0b11;
pub const KIND_PUT: u8 = 1;
pub const KIND_TOMBSTONE: u8 = 2;
/// Reserved for atomic-batch markers; not written yet, and rejected when read.
pub const KIND_BATCH_RESERVED: u8 = 3;
/// The record carries an 8-byte expiry after its fixed header.
pub const FLAG_HAS_EXPIRY: u8 = 0b100;
/// Bits that must be zero in this format version.
pub const FLAG_RESERVED_MASK: u8 = !(FLAG_KIND_MASK | FLAG_HAS_EXPIRY);

/// Largest record this version can write.
pub const RECORD_LEN_MAX: usize =
    RECORD_HEADER_LEN + RECORD_EXPIRY_LEN + META_LEN_MAX + KEY_LEN_MAX + VALUE_LEN_MAX;
const _: () = assert!(KEY_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(META_LEN_MAX <= u8::MAX as usize);
const _: () = assert!(VALUE_LEN_MAX <= u32::MAX as usize);

/// What kind of record this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Put,
    Tombstone,
}

/// Everything about a record except its bytes of metadata, key and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: Kind,
    pub seq: u64,
    /// Unix milliseconds after which the record is dead; `None`: never.
    pub expiry_unix_ms: Option<u64>,
    pub meta_len: u8,
    pub key_len: u16,
    pub value_len: u32,
}

impl RecordHeader {
    pub fn flags(&self) -> u8 {
        let kind = match self.kind {
            Kind::Put => KIND_PUT,
            Kind::Tombstone => KIND_TOMBSTONE,
        };
        kind | if self.expiry_unix_ms.is_some() {
            FLAG_HAS_EXPIRY
        } else {
            0
        }
    }

    /// Bytes before the metadata: the fixed header plus the expiry when present.
    pub fn prefix_len(&self) -> usize {
        RECORD_HEADER_LEN
            + if self.expiry_unix_ms.is_some() {
                RECORD_EXPIRY_LEN
            } else {
                0
            }
    }

    /// Offset of the key inside the record.
    pub fn key_at(&self) -> usize {
        self.prefix_len() + usize::from(self.meta_len)
    }

    /// Offset of the value inside the record.
    pub fn value_at(&self) -> usize {
        self.key_at() + usize::from(self.key_len)
    }

    /// Whole record length in bytes.
    pub fn record_len(&self) -> usize {
        self.value_at() + self.value_len as usize
    }
}

/// Appends one encoded record to `out`. Lengths must be within the limits (checked by
/// the caller, asserted here).
pub fn encode_record(
    out: &mut Vec<u8>,
    header: &RecordHeader,
    meta: &[u8],
    key: &[u8],
    value: &[u8],
) {
    assert!(meta.len() == usize::from(header.meta_len) && meta.len() <= META_LEN_MAX);
    assert!(key.len() == usize::from(header.key_len) && key.len() <= KEY_LEN_MAX);
    assert!(value.len() == header.value_len as usize && value.len() <= VALUE_LEN_MAX);
    assert!(header.kind == Kind::Put || value.is_empty());
    let start = out.len();
    out.reserve(header.record_len());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&header.value_len.to_le_bytes());
    out.extend_from_slice(&header.key_len.to_le_bytes());
    out.push(header.meta_len);
    out.push(header.flags());
    out.extend_from_slice(&header.seq.to_le_bytes());
    if let Some(expiry) = header.expiry_unix_ms {
        out.extend_from_slice(&expiry.to_le_bytes());
    }
    out.extend_from_slice(meta);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = checksum(&[&out[start + 4..]]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, header.record_len());
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the header says the record needs: a torn or short tail.
    Truncated,
    /// Flags or lengths that this version never writes.
    Malformed,
    /// Lengths look right but the checksum does not match.
    Checksum,
}

/// Decodes the fixed header (and expiry) of the record at the start of `b`, checking
/// flags and limits but not the checksum.
pub fn decode_record_header(b: &[u8]) -> Result<RecordHeader, RecordError> {
    if b.len() < RECORD_HEADER_LEN {
        return Err(RecordError::Truncated);
    }
    let flags = b[RECORD_FLAGS_AT];
    let kind = match flags & FLAG_KIND_MASK {
        KIND_PUT => Kind::Put,
        KIND_TOMBSTONE => Kind::Tombstone,
        _ => return Err(RecordError::Malformed),
    };
    let value_len = u32_at(b, RECORD_VALUE_LEN_AT);
    let key_len = u16_at(b, RECORD_KEY_LEN_AT);
    if flags & FLAG_RESERVED_MASK != 0
        || usize::from(key_len) > KEY_LEN_MAX
        || value_len as usize > VALUE_LEN_MAX
        || (kind == Kind::Tombstone && value_len != 0)
    {
        return Err(RecordError::Malformed);
    }
    let expiry_unix_ms = if flags & FLAG_HAS_EXPIRY != 0 {
        let e = b
            .get(RECORD_EXPIRY_AT..RECORD_EXPIRY_AT + RECORD_EXPIRY_LEN)
            .ok_or(RecordError::Truncated)?;
        Some(u64_at(e, 0))
    } else {
        None
    };
    Ok(RecordHeader {
        kind,
        seq: u64_at(b, RECORD_SEQ_AT),
        expiry_unix_ms,
        meta_len: b[RECORD_META_LEN_AT],
        key_len,
        value_len,
    })
}

/// A record decoded from bytes, borrowing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub header: RecordHeader,
    pub meta: &'a [u8],
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Decodes and verifies the record at the start of `b`.
pub fn decode_record(b: &[u8]) -> Result<RecordRef<'_>, RecordError> {
    let header = decode_record_header(b)?;
    let len = header.record_len();
    let rec = b.get(..len).ok_or(RecordError::Truncated)?;
    if u32_at(rec, RECORD_CRC_AT) != checksum(&[&rec[4..]]) {
        return Err(RecordError::Checksum);
    }
    Ok(RecordRef {
        header,
        meta: &rec[header.prefix_len()..header.key_at()],
        key: &rec[header.key_at()..header.value_at()],
        value: &rec[header.value_at()..],
    })
}

// ---------------------------------------------------------------------------------------
// Sealed-extent key summary: one entry per record of the extent, in log order, followed
// by a footer that ends exactly at the end of the file's last block.
// Entry format: { offset u32 | value_len u32 | key_len u16 | meta_len u8 | flags u8 |
//                 seq u64 | expiry_unix_ms u64 (0: none) | meta | key }
// (Footer version 1: the same without `meta`.)
// ---------------------------------------------------------------------------------------

pub const SUMMARY_ENTRY_FIXED_LEN: usize = 28;
pub const SUMMARY_OFFSET_AT: usize = 0;
pub const SUMMARY_VALUE_LEN_AT: usize = 4;
pub const SUMMARY_KEY_LEN_AT: usize = 8;
pub const SUMMARY_META_LEN_AT: usize = 10;
pub const SUMMARY_FLAGS_AT: usize = 11;
pub const SUMMARY_SEQ_AT: usize = 12;
pub const SUMMARY_EXPIRY_AT: usize = 20;
const _: () = assert!(SUMMARY_EXPIRY_AT + 8 == SUMMARY_ENTRY_FIXED_LEN);

/// What a key summary's entries hold after their fixed part; the footer's magic says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryLayout {
    /// Format version 1: the key only (a record's metadata is in the record alone).
    KeysOnly,
    /// Format version 2 (what this build writes): the metadata bytes, then the key.
    WithMeta,
}

/// One record as the key summary lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummaryEntry<'a> {
    /// Byte offset of the record inside its extent file.
    pub offset: u32,
    pub header: RecordHeader,
    /// The record's metadata (`header.meta_len` bytes); `None` from a summary of layout
    /// [`SummaryLayout::KeysOnly`], which does not hold it.
    pub meta: Option<&'a [u8]>,
    pub key: &'a [u8],
}

/// Appends `entry` in the layout this build writes ([`SummaryLayout::WithMeta`]).
pub fn encode_summary_entry(out: &mut Vec<u8>, entry: &SummaryEntry<'_>) {
    let h = &entry.header;
    let meta = entry
        .meta
        .expect("a summary is written from records, which hold their metadata");
    assert!(entry.key.len() == usize::from(h.key_len));
    assert!(meta.len() == usize::from(h.meta_len));
    out.extend_from_slice(&entry.offset.to_le_bytes());
    out.extend_from_slice(&h.value_len.to_le_bytes());
    out.extend_from_slice(&h.key_len.to_le_bytes());
    out.push(h.meta_len);
    out.push(h.flags());
    out.extend_from_slice(&h.seq.to_le_bytes());
    out.extend_from_slice(&h.expiry_unix_ms.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(entry.key);
}

/// Decodes the summary entry of `layout` at the start of `b`; returns it and its encoded
/// length.
pub fn decode_summary_entry(b: &[u8], layout: SummaryLayout) -> Option<(SummaryEntry<'_>, usize)> {
    let fixed = b.get(..SUMMARY_ENTRY_FIXED_LEN)?;
    // Reuse the record-header checks by laying the fields out as a record header.
    let mut rh = [0u8; RECORD_HEADER_LEN + RECORD_EXPIRY_LEN];
    rh[RECORD_VALUE_LEN_AT..][..4].copy_from_slice(&fixed[SUMMARY_VALUE_LEN_AT..][..4]);
    rh[RECORD_KEY_LEN_AT..][..2].copy_from_slice(&fixed[SUMMARY_KEY_LEN_AT..][..2]);
    rh[RECORD_META_LEN_AT] = fixed[SUMMARY_META_LEN_AT];
    rh[RECORD_FLAGS_AT] = fixed[SUMMARY_FLAGS_AT];
    rh[RECORD_SEQ_AT..][..8].copy_from_slice(&fixed[SUMMARY_SEQ_AT..][..8]);
    rh[RECORD_EXPIRY_AT..][..8].copy_from_slice(&fixed[SUMMARY_EXPIRY_AT..][..8]);
    let header = decode_record_header(&rh).ok()?;
    if header.expiry_unix_ms.is_none() && u64_at(fixed, SUMMARY_EXPIRY_AT) != 0 {
        return None;
    }
    let key_at = match layout {
        SummaryLayout::KeysOnly => SUMMARY_ENTRY_FIXED_LEN,
        SummaryLayout::WithMeta => SUMMARY_ENTRY_FIXED_LEN + usize::from(header.meta_len),
    };
    let len = key_at + usize::from(header.key_len);
    let key = b.get(key_at..len)?;
    let meta = match layout {
        SummaryLayout::KeysOnly => None,
        SummaryLayout::WithMeta => Some(&b[SUMMARY_ENTRY_FIXED_LEN..key_at]),
    };
    let offset = u32_at(fixed, SUMMARY_OFFSET_AT);
    Some((
        SummaryEntry {
            offset,
            header,
            meta,
            key,
        },
        len,
    ))
}

// Footer format: { magic "RKF" ver | crc32c | records_end u64 | summary_len u32 |
//                  summary_crc u32 | entry_count u32 | reserved u32 }
/// Magic of a footer whose summary holds metadata (this build writes it).
pub const FOOTER_MAGIC: [u8; 4] = [b'R', b'K', b'F', FORMAT_VERSION];
/// Magic of a footer of format version 1: its summary holds no metadata.
pub const FOOTER_MAGIC_V1: [u8; 4] = [b'R', b'K', b'F', UNIT_VERSION_1];
pub const FOOTER_LEN: usize = 32;
pub const FOOTER_MAGIC_AT: usize = 0;
pub const FOOTER_CRC_AT: usize = 4;
pub const FOOTER_RECORDS_END_AT: usize = 8;
pub const FOOTER_SUMMARY_LEN_AT: usize = 16;
pub const FOOTER_SUMMARY_CRC_AT: usize = 20;
pub const FOOTER_ENTRY_COUNT_AT: usize = 24;
pub const FOOTER_RESERVED_AT: usize = 28;
const _: () = assert!(FOOTER_RESERVED_AT + 4 == FOOTER_LEN);

/// The footer of a sealed extent. The summary starts at `records_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    pub records_end: u64,
    pub summary_len: u32,
    pub summary_crc: u32,
    pub entry_count: u32,
    /// What the summary's entries hold: the magic's version says.
    pub layout: SummaryLayout,
}

impl Footer {
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[..4].copy_from_slice(match self.layout {
            SummaryLayout::WithMeta => &FOOTER_MAGIC,
            SummaryLayout::KeysOnly => &FOOTER_MAGIC_V1,
        });
        b[FOOTER_RECORDS_END_AT..][..8].copy_from_slice(&self.records_end.to_le_bytes());
        b[FOOTER_SUMMARY_LEN_AT..][..4].copy_from_slice(&self.summary_len.to_le_bytes());
        b[FOOTER_SUMMARY_CRC_AT..][..4].copy_from_slice(&self.summary_crc.to_le_bytes());
        b[FOOTER_ENTRY_COUNT_AT..][..4].copy_from_slice(&self.entry_count.to_le_bytes());
        let crc = checksum(&[&b[FOOTER_RECORDS_END_AT..]]);
        b[FOOTER_CRC_AT..][..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..FOOTER_LEN)?;
        let layout = match b[..4].try_into().expect("4 bytes") {
            FOOTER_MAGIC => SummaryLayout::WithMeta,
            FOOTER_MAGIC_V1 => SummaryLayout::KeysOnly,
            _ => return None,
        };
        if u32_at(b, FOOTER_CRC_AT) != checksum(&[&b[FOOTER_RECORDS_END_AT..]])
            || u32_at(b, FOOTER_RESERVED_AT) != 0
            // Offsets inside an extent are u32 (the index keeps them so): a larger
            // `records_end` is not a footer ringkv wrote, and would overflow `file_len`.
            || u64_at(b, FOOTER_RECORDS_END_AT) > u64::from(u32::MAX)
        {
            return None;
        }
        Some(Self {
            records_end: u64_at(b, FOOTER_RECORDS_END_AT),
            summary_len: u32_at(b, FOOTER_SUMMARY_LEN_AT),
            summary_crc: u32_at(b, FOOTER_SUMMARY_CRC_AT),
            entry_count: u32_at(b, FOOTER_ENTRY_COUNT_AT),
            layout,
        })
    }

    /// Length of the sealed file: summary and footer end on a block boundary.
    pub fn file_len(&self) -> u64 {
        align_up(self.records_end + u64::from(self.summary_len) + FOOTER_LEN as u64)
    }
}

// ---------------------------------------------------------------------------------------
// Substore metadata file (`SUBSTORE`), written once when the substore is created.
// Format: { magic "RKS" ver | crc32c | substore_id u64 | hash_prefix u64 | prefix_bits u8 |
//           reserved zero to META_FILE_LEN }
// ---------------------------------------------------------------------------------------

pub const META_FILE_NAME: &str = "SUBSTORE";
pub const META_FILE_TMP_NAME: &str = "SUBSTORE.tmp";
pub const META_MAGIC: [u8; 4] = [b'R', b'K', b'S', UNIT_VERSION_1];
pub const META_FILE_LEN: usize = 64;
pub const META_CRC_AT: usize = 4;
pub const META_SUBSTORE_AT: usize = 8;
pub const META_PREFIX_AT: usize = 16;
pub const META_PREFIX_BITS_AT: usize = 24;
pub const META_RESERVED_AT: usize = 25;
const _: () = assert!(META_FILE_LEN as u64 <= SECTOR_BYTES);

pub fn encode_meta(id: &SubstoreId) -> [u8; META_FILE_LEN] {
    let mut b = [0u8; META_FILE_LEN];
    b[..4].copy_from_slice(&META_MAGIC);
    b[META_SUBSTORE_AT..][..8].copy_from_slice(&id.id.to_le_bytes());
    b[META_PREFIX_AT..][..8].copy_from_slice(&id.hash_prefix.to_le_bytes());
    b[META_PREFIX_BITS_AT] = id.prefix_bits;
    let crc = checksum(&[&b[META_SUBSTORE_AT..]]);
    b[META_CRC_AT..][..4].copy_from_slice(&crc.to_le_bytes());
    b
}

pub fn decode_meta(b: &[u8]) -> Option<SubstoreId> {
    let b = b.get(..META_FILE_LEN)?;
    if b[..4] != META_MAGIC
        || u32_at(b, META_CRC_AT) != checksum(&[&b[META_SUBSTORE_AT..]])
        || b[META_RESERVED_AT..].iter().any(|&x| x != 0)
    {
        return None;
    }
    let id = SubstoreId {
        id: u64_at(b, META_SUBSTORE_AT),
        hash_prefix: u64_at(b, META_PREFIX_AT),
        prefix_bits: b[META_PREFIX_BITS_AT],
    };
    id.is_well_formed().then_some(id)
}

/// Extent files are named by their sequence: `00000000000000a3.ext`.
pub fn extent_file_name(extent_seq: u64) -> String {
    format!("{extent_seq:016x}.ext")
}

/// The sequence of an extent file name, or `None` for any other name.
pub fn parse_extent_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".ext")?;
    // Exactly what `extent_file_name` writes: lower-case hex, so one sequence has one name.
    if hex.len() != 16 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub mod log;

#[cfg(test)]
mod tests;
