//! Feeds arbitrary bytes to every decoder of the on-disk format (engine/FORMAT.md).
//!
//! Properties: no decoder panics, and whatever decodes re-encodes to exactly the bytes
//! it was decoded from (the encoding is canonical). Random bytes almost never carry a
//! valid crc32c, so each input is also tried with the magic and checksum of each unit
//! fixed up, which lets the fuzzer reach the checks that come after the checksum.
//! An input that starts with a valid extent header is also read as a whole extent
//! file, the way recovery reads one, so real `.ext` files make good seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringkv_engine::format::{
    EXTENT_HEADER_CRC_AT, EXTENT_HEADER_LEN, EXTENT_HEADER_SEQ_AT, EXTENT_MAGIC, ExtentHeader,
    FOOTER_CRC_AT, FOOTER_LEN, FOOTER_MAGIC, FOOTER_RECORDS_END_AT, Footer, META_CRC_AT,
    META_FILE_LEN, META_MAGIC, META_SUBSTORE_AT, RECORD_CRC_AT, RECORD_VALUE_LEN_AT, checksum,
    decode_meta, decode_record, decode_record_header, decode_summary_entry, encode_meta,
    encode_record, encode_summary_entry, extent_file_name, parse_extent_file_name,
};

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(fixed) = with_record_crc(data) {
        check(&fixed);
    }
    // (unit length, magic, checksum offset, first byte the checksum covers)
    let units = [
        (
            EXTENT_HEADER_LEN,
            EXTENT_MAGIC,
            EXTENT_HEADER_CRC_AT,
            EXTENT_HEADER_SEQ_AT,
        ),
        (META_FILE_LEN, META_MAGIC, META_CRC_AT, META_SUBSTORE_AT),
        (
            FOOTER_LEN,
            FOOTER_MAGIC,
            FOOTER_CRC_AT,
            FOOTER_RECORDS_END_AT,
        ),
    ];
    for (len, magic, crc_at, covered_from) in units {
        if data.len() >= len {
            let mut fixed = data.to_vec();
            fixed[..4].copy_from_slice(&magic);
            let crc = checksum(&[&fixed[covered_from..len]]);
            fixed[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
            check(&fixed);
        }
    }
});

/// `data`'s first record with its checksum made valid, if its header decodes and the
/// whole record is there.
fn with_record_crc(data: &[u8]) -> Option<Vec<u8>> {
    let len = decode_record_header(data).ok()?.record_len();
    let mut fixed = data.get(..len)?.to_vec();
    let crc = checksum(&[&fixed[RECORD_VALUE_LEN_AT..]]);
    fixed[RECORD_CRC_AT..RECORD_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    Some(fixed)
}

fn check(data: &[u8]) {
    check_records(data);
    check_summary(data);

    if let Some(footer) = Footer::decode(data) {
        assert_eq!(footer.encode()[..], data[..FOOTER_LEN]);
        file_len(&footer);
    }
    if let Some(header) = ExtentHeader::decode(data) {
        assert_eq!(header.encode()[..], data[..EXTENT_HEADER_LEN]);
        check_extent_file(data);
    }
    if let Some(id) = decode_meta(data) {
        assert_eq!(encode_meta(&id)[..], data[..META_FILE_LEN]);
    }

    if let Ok(name) = std::str::from_utf8(data)
        && let Some(seq) = parse_extent_file_name(name)
    {
        // Should be `extent_file_name(seq) == name`, but upper-case hex parses too: a
        // known format.rs defect (format/tests.rs, `only_canonical_extent_file_names_parse`).
        // Tighten once it is fixed.
        assert!(extent_file_name(seq).eq_ignore_ascii_case(name));
    }
}

/// Records back to back from the start of `data`, the way recovery scans an extent.
fn check_records(data: &[u8]) {
    let mut at = 0;
    while let Ok(rec) = decode_record(&data[at..]) {
        let len = rec.header.record_len();
        assert_eq!(decode_record_header(&data[at..]), Ok(rec.header));
        let mut again = Vec::with_capacity(len);
        encode_record(&mut again, &rec.header, rec.meta, rec.key, rec.value);
        assert_eq!(again, data[at..at + len]);
        at += len;
    }
    let _ = decode_record_header(&data[at..]);
}

/// Key-summary entries back to back from the start of `data`.
fn check_summary(data: &[u8]) {
    let mut at = 0;
    while let Some((entry, len)) = decode_summary_entry(&data[at..]) {
        let mut again = Vec::with_capacity(len);
        encode_summary_entry(&mut again, &entry);
        assert_eq!(again, data[at..at + len]);
        at += len;
    }
}

/// `data` as a whole extent file: its records after the header and, if it ends with a
/// footer, the key summary that footer points at and the record of every entry.
fn check_extent_file(data: &[u8]) {
    check_records(&data[EXTENT_HEADER_LEN..]);
    let Some(footer_at) = data.len().checked_sub(FOOTER_LEN) else {
        return;
    };
    let Some(footer) = Footer::decode(&data[footer_at..]) else {
        return;
    };
    file_len(&footer);
    let Ok(start) = usize::try_from(footer.records_end) else {
        return;
    };
    let end = start.saturating_add(footer.summary_len as usize);
    let Some(summary) = data.get(start..end) else {
        return;
    };
    if checksum(&[summary]) != footer.summary_crc {
        return;
    }
    let mut at = 0;
    for _ in 0..footer.entry_count {
        let Some((entry, len)) = decode_summary_entry(&summary[at..]) else {
            break;
        };
        if let Some(record) = data.get(entry.offset as usize..) {
            let _ = decode_record(record);
        }
        at += len;
    }
}

/// Recovery calls `file_len()` on every footer it decodes.
fn file_len(footer: &Footer) {
    // It overflows when records_end is near u64::MAX, a known format.rs defect
    // (format/tests.rs, `decoded_footers_have_a_file_len`). Drop this guard once fixed.
    if footer.records_end <= u64::MAX / 2 {
        let _ = footer.file_len();
    }
}
