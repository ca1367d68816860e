// ---------------------------------------------------------------------------------------
// Commit log (FORMAT.md, "Commit log"): one file per core, a header block, then frames.
//
// Header, the first LOG_HEADER_LEN bytes of block 0 (the rest of the block is zero):
//   { magic "RKL" ver | crc32c | epoch u64 | generation u64 | core u32 | reserved zero }
// Frame, at a block-aligned offset from BLOCK_BYTES on, padded with zeros to a block:
//   { magic "RKC" ver | crc32c | epoch u64 | generation u64 | frame_no u64 |
//     payload_len u32 | reserved u32 zero | payload }
// Payload: entries { substore_id u64 | record_len u32 | record (as in an extent) }.
// The frame crc covers bytes 8..FRAME_HEADER_LEN and the payload.
// ---------------------------------------------------------------------------------------

use super::{RecordError, SECTOR_BYTES, UNIT_VERSION_1, checksum, decode_record, u32_at, u64_at};

pub const LOG_MAGIC: [u8; 4] = [b'R', b'K', b'L', UNIT_VERSION_1];
pub const LOG_HEADER_LEN: usize = 64;
pub const LOG_CRC_AT: usize = 4;
pub const LOG_EPOCH_AT: usize = 8;
pub const LOG_GENERATION_AT: usize = 16;
pub const LOG_CORE_AT: usize = 24;
/// Bytes 28..64 are reserved and must be zero.
pub const LOG_RESERVED_AT: usize = 28;
const _: () = assert!(LOG_HEADER_LEN as u64 <= SECTOR_BYTES);

pub const FRAME_MAGIC: [u8; 4] = [b'R', b'K', b'C', UNIT_VERSION_1];
pub const FRAME_HEADER_LEN: usize = 40;
pub const FRAME_CRC_AT: usize = 4;
pub const FRAME_EPOCH_AT: usize = 8;
pub const FRAME_GENERATION_AT: usize = 16;
pub const FRAME_NO_AT: usize = 24;
pub const FRAME_PAYLOAD_LEN_AT: usize = 32;
pub const FRAME_RESERVED_AT: usize = 36;
const _: () = assert!(FRAME_RESERVED_AT + 4 == FRAME_HEADER_LEN);
/// Each payload entry starts with the substore id and the record's length.
pub const ENTRY_HEADER_LEN: usize = 12;

/// What a log file's header says: the run (`epoch`, new at every open), the pass over
/// the file within the run (`generation`, new at every reset) and the core writing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHeader {
    pub epoch: u64,
    pub generation: u64,
    pub core: u32,
}

impl LogHeader {
    pub fn encode(&self) -> [u8; LOG_HEADER_LEN] {
        let mut b = [0u8; LOG_HEADER_LEN];
        b[..4].copy_from_slice(&LOG_MAGIC);
        b[LOG_EPOCH_AT..][..8].copy_from_slice(&self.epoch.to_le_bytes());
        b[LOG_GENERATION_AT..][..8].copy_from_slice(&self.generation.to_le_bytes());
        b[LOG_CORE_AT..][..4].copy_from_slice(&self.core.to_le_bytes());
        let crc = checksum(&[&b[LOG_EPOCH_AT..]]);
        b[LOG_CRC_AT..][..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..LOG_HEADER_LEN)?;
        if b[..4] != LOG_MAGIC
            || u32_at(b, LOG_CRC_AT) != checksum(&[&b[LOG_EPOCH_AT..]])
            || b[LOG_RESERVED_AT..].iter().any(|&x| x != 0)
        {
            return None;
        }
        Some(Self {
            epoch: u64_at(b, LOG_EPOCH_AT),
            generation: u64_at(b, LOG_GENERATION_AT),
            core: u32_at(b, LOG_CORE_AT),
        })
    }
}

/// The fixed part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub epoch: u64,
    pub generation: u64,
    pub frame_no: u64,
    pub payload_len: u32,
}

impl FrameHeader {
    /// Bytes the frame takes in the file, padding included.
    pub fn frame_len(&self) -> u64 {
        super::align_up(FRAME_HEADER_LEN as u64 + u64::from(self.payload_len))
    }
}

/// Appends the frame of `payload` to `out`, padded with zeros to a whole block.
pub fn encode_frame(out: &mut Vec<u8>, header: &FrameHeader, payload: &[u8]) {
    assert_eq!(payload.len(), header.payload_len as usize);
    let start = out.len();
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&header.epoch.to_le_bytes());
    out.extend_from_slice(&header.generation.to_le_bytes());
    out.extend_from_slice(&header.frame_no.to_le_bytes());
    out.extend_from_slice(&header.payload_len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(payload);
    let crc = checksum(&[&out[start + FRAME_EPOCH_AT..]]);
    out[start + FRAME_CRC_AT..][..4].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + header.frame_len() as usize, 0);
}

/// Decodes the fixed part of a frame at the start of `b` (magic and reserved bytes
/// checked, the crc not: it covers the payload too, see [`frame_crc_matches`]).
pub fn decode_frame_header(b: &[u8]) -> Option<FrameHeader> {
    let b = b.get(..FRAME_HEADER_LEN)?;
    if b[..4] != FRAME_MAGIC || u32_at(b, FRAME_RESERVED_AT) != 0 {
        return None;
    }
    Some(FrameHeader {
        epoch: u64_at(b, FRAME_EPOCH_AT),
        generation: u64_at(b, FRAME_GENERATION_AT),
        frame_no: u64_at(b, FRAME_NO_AT),
        payload_len: u32_at(b, FRAME_PAYLOAD_LEN_AT),
    })
}

/// Whether the frame at the start of `b` (header and whole payload present) has a
/// matching checksum.
pub fn frame_crc_matches(b: &[u8], header: &FrameHeader) -> bool {
    let end = FRAME_HEADER_LEN + header.payload_len as usize;
    b.len() >= end && u32_at(b, FRAME_CRC_AT) == checksum(&[&b[FRAME_EPOCH_AT..end]])
}

/// Appends one payload entry: a record of substore `substore`, already encoded.
pub fn encode_entry(out: &mut Vec<u8>, substore: u64, record: &[u8]) {
    out.extend_from_slice(&substore.to_le_bytes());
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(record);
}

/// Splits a payload into its entries: (substore id, record bytes), each record decoded
/// once to check it. A payload whose frame checksum matched yet does not parse is
/// corruption, not a torn write.
pub fn decode_entries(mut payload: &[u8]) -> Result<Vec<(u64, &[u8])>, RecordError> {
    let mut entries = Vec::new();
    while !payload.is_empty() {
        if payload.len() < ENTRY_HEADER_LEN {
            return Err(RecordError::Truncated);
        }
        let substore = u64_at(payload, 0);
        let len = u32_at(payload, 8) as usize;
        let record = payload
            .get(ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + len)
            .ok_or(RecordError::Truncated)?;
        if decode_record(record)?.header.record_len() != len {
            return Err(RecordError::Malformed);
        }
        entries.push((substore, record));
        payload = &payload[ENTRY_HEADER_LEN + len..];
    }
    Ok(entries)
}
