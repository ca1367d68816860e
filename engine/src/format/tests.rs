//! Golden bytes and round trips of every encoding, and decoders fed arbitrary bytes.
//!
//! The expected bytes below were produced independently of this crate (a Python model
//! of FORMAT.md with its own crc32c table), so a change to the encoding, the checksum
//! seed or an offset breaks these tests.

use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const ID: SubstoreId = SubstoreId {
    id: 0x0400_0000_0000_0003,
    hash_prefix: 0x3000_0000_0000_0000,
    prefix_bits: 4,
};

fn record(header: &RecordHeader, meta: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(&mut out, header, meta, key, value);
    out
}

fn put(seq: u64, key: &[u8], value: &[u8], meta: &[u8], expiry: Option<u64>) -> RecordHeader {
    RecordHeader {
        kind: Kind::Put,
        seq,
        expiry_unix_ms: expiry,
        meta_len: meta.len() as u8,
        key_len: key.len() as u16,
        value_len: value.len() as u32,
    }
}

#[test]
fn crc_is_seeded_crc32c() {
    // The standard check value of crc32c, then the seed makes zeros not validate.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    assert_ne!(checksum(&[&[0u8; 64]]), 0);
    assert_eq!(checksum(&[b"ab", b"c"]), checksum(&[b"abc"]));
}

#[test]
fn extent_header_golden_bytes() {
    let header = ExtentHeader {
        extent_seq: 7,
        substore: ID,
    };
    let bytes = header.encode();
    assert_eq!(
        bytes.to_vec(),
        hex(
            "524b5801e30fe7a40700000000000000030000000000000400000000000000300400000000000000000000000000000000000000000000000000000000000000"
        )
    );
    assert_eq!(&bytes[EXTENT_HEADER_MAGIC_AT..][..4], b"RKX\x01");
    assert_eq!(bytes[EXTENT_HEADER_SEQ_AT], 7);
    assert_eq!(bytes[EXTENT_HEADER_PREFIX_BITS_AT], 4);
    assert_eq!(bytes[EXTENT_HEADER_PREFIX_AT + 7], 0x30);
    assert_eq!(ExtentHeader::decode(&bytes), Some(header));
}

#[test]
fn put_record_golden_bytes() {
    let h = put(42, b"key", b"value", b"", None);
    let bytes = record(&h, b"", b"key", b"value");
    assert_eq!(
        bytes,
        hex("35a8b6e405000000030000012a000000000000006b657976616c7565")
    );
    assert_eq!(bytes.len(), RECORD_HEADER_LEN + 8);
    assert_eq!(bytes[RECORD_FLAGS_AT], KIND_PUT);
    assert_eq!(bytes[RECORD_KEY_LEN_AT], 3);
    assert_eq!(bytes[RECORD_VALUE_LEN_AT], 5);
    assert_eq!(bytes[RECORD_SEQ_AT], 42);
    let rec = decode_record(&bytes).unwrap();
    assert_eq!(
        (rec.header, rec.key, rec.value, rec.meta),
        (h, &b"key"[..], &b"value"[..], &b""[..])
    );
}

#[test]
fn put_record_with_expiry_and_metadata_golden_bytes() {
    let h = put(
        0x0102_0304_0506_0708,
        b"k",
        b"v",
        b"m1",
        Some(1_700_000_000_000),
    );
    let bytes = record(&h, b"m1", b"k", b"v");
    assert_eq!(
        bytes,
        hex("37aa13f3010000000100020508070605040302010068e5cf8b0100006d316b76")
    );
    assert_eq!(bytes[RECORD_FLAGS_AT], KIND_PUT | FLAG_HAS_EXPIRY);
    assert_eq!(bytes[RECORD_META_LEN_AT], 2);
    assert_eq!(&bytes[RECORD_EXPIRY_AT + RECORD_EXPIRY_LEN..][..2], b"m1");
    let rec = decode_record(&bytes).unwrap();
    assert_eq!(rec.header, h);
    assert_eq!(rec.meta, b"m1");
}

#[test]
fn tombstone_golden_bytes() {
    let h = RecordHeader {
        kind: Kind::Tombstone,
        ..put(9, b"gone", b"", b"", None)
    };
    let bytes = record(&h, b"", b"gone", b"");
    assert_eq!(
        bytes,
        hex("30c141de00000000040000020900000000000000676f6e65")
    );
    assert_eq!(bytes[RECORD_FLAGS_AT], KIND_TOMBSTONE);
    assert_eq!(decode_record(&bytes).unwrap().header, h);
}

#[test]
fn summary_entry_golden_bytes() {
    let h = put(
        0x0102_0304_0506_0708,
        b"k",
        b"v",
        b"m1",
        Some(1_700_000_000_000),
    );
    let entry = SummaryEntry {
        offset: 64,
        header: h,
        key: b"k",
    };
    let mut bytes = Vec::new();
    encode_summary_entry(&mut bytes, &entry);
    assert_eq!(
        bytes,
        hex("40000000010000000100020508070605040302010068e5cf8b0100006b")
    );
    assert_eq!(bytes[SUMMARY_OFFSET_AT], 64);
    assert_eq!(bytes[SUMMARY_FLAGS_AT], KIND_PUT | FLAG_HAS_EXPIRY);
    assert_eq!(bytes.len(), SUMMARY_ENTRY_FIXED_LEN + 1);
    assert_eq!(decode_summary_entry(&bytes), Some((entry, bytes.len())));
}

#[test]
fn footer_golden_bytes() {
    let footer = Footer {
        records_end: 4096 + 17,
        summary_len: 100,
        summary_crc: 0xdead_beef,
        entry_count: 3,
    };
    let bytes = footer.encode();
    assert_eq!(
        bytes.to_vec(),
        hex("524b460127c93b9c111000000000000064000000efbeadde0300000000000000")
    );
    assert_eq!(bytes[FOOTER_SUMMARY_LEN_AT], 100);
    assert_eq!(bytes[FOOTER_ENTRY_COUNT_AT], 3);
    assert_eq!(Footer::decode(&bytes), Some(footer));
    assert_eq!(footer.file_len(), 8192);
}

#[test]
fn meta_file_golden_bytes() {
    let bytes = encode_meta(&ID);
    assert_eq!(
        bytes.to_vec(),
        hex(
            "524b5301a5939b930300000000000004000000000000003004000000000000000000000000000000000000000000000000000000000000000000000000000000"
        )
    );
    assert_eq!(bytes[META_PREFIX_BITS_AT], 4);
    assert_eq!(decode_meta(&bytes), Some(ID));
}

#[test]
fn extent_file_names_round_trip() {
    assert_eq!(extent_file_name(0xa3), "00000000000000a3.ext");
    assert_eq!(parse_extent_file_name("00000000000000a3.ext"), Some(0xa3));
    assert_eq!(parse_extent_file_name("a3.ext"), None);
    assert_eq!(parse_extent_file_name("00000000000000a3.tmp"), None);
    assert_eq!(parse_extent_file_name("0000000000000g03.ext"), None);
}

#[test]
fn zeroes_never_decode() {
    let zeros = [0u8; 4096];
    assert!(decode_record(&zeros).is_err());
    assert!(ExtentHeader::decode(&zeros).is_none());
    assert!(Footer::decode(&zeros).is_none());
    assert!(decode_meta(&zeros).is_none());
    assert!(decode_summary_entry(&zeros).is_none());
}

#[test]
fn batch_kind_and_reserved_flags_are_rejected() {
    let mut bytes = record(&put(1, b"k", b"v", b"", None), b"", b"k", b"v");
    bytes[RECORD_FLAGS_AT] = KIND_BATCH_RESERVED;
    assert_eq!(decode_record(&bytes).unwrap_err(), RecordError::Malformed);
    bytes[RECORD_FLAGS_AT] = KIND_PUT | 0b1000;
    assert_eq!(decode_record(&bytes).unwrap_err(), RecordError::Malformed);
}

fn header_strategy() -> impl Strategy<Value = (RecordHeader, Vec<u8>, Vec<u8>, Vec<u8>)> {
    (
        any::<bool>(),
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        proptest::collection::vec(any::<u8>(), 0..=40),
        proptest::collection::vec(any::<u8>(), 0..=300),
        proptest::collection::vec(any::<u8>(), 0..=2000),
    )
        .prop_map(|(tombstone, seq, expiry, meta, key, value)| {
            let value = if tombstone { Vec::new() } else { value };
            let kind = if tombstone {
                Kind::Tombstone
            } else {
                Kind::Put
            };
            let h = RecordHeader {
                kind,
                ..put(seq, &key, &value, &meta, expiry)
            };
            (h, meta, key, value)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn records_round_trip((h, meta, key, value) in header_strategy()) {
        let bytes = record(&h, &meta, &key, &value);
        prop_assert_eq!(bytes.len(), h.record_len());
        let rec = decode_record(&bytes).unwrap();
        prop_assert_eq!(rec.header, h);
        prop_assert_eq!(rec.meta, &meta[..]);
        prop_assert_eq!(rec.key, &key[..]);
        prop_assert_eq!(rec.value, &value[..]);
        // Any shorter prefix is a torn record, never a different one.
        let cut = bytes.len() / 2;
        prop_assert!(decode_record(&bytes[..cut]).is_err());
    }

    #[test]
    fn summary_entries_round_trip((h, _meta, key, _value) in header_strategy(), offset in any::<u32>()) {
        let entry = SummaryEntry { offset, header: h, key: &key };
        let mut bytes = Vec::new();
        encode_summary_entry(&mut bytes, &entry);
        prop_assert_eq!(decode_summary_entry(&bytes), Some((entry, bytes.len())));
    }

    #[test]
    fn any_flipped_bit_is_detected((h, meta, key, value) in header_strategy(), at in any::<usize>(), bit in 0u8..8) {
        let mut bytes = record(&h, &meta, &key, &value);
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        // A flip may make the record look longer (torn) or malformed; it never decodes.
        prop_assert!(decode_record(&bytes).is_err());
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_record(&bytes);
        let _ = decode_record_header(&bytes);
        let _ = decode_summary_entry(&bytes);
        let _ = Footer::decode(&bytes);
        let _ = ExtentHeader::decode(&bytes);
        let _ = decode_meta(&bytes);
        let _ = parse_extent_file_name(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn headers_footers_and_meta_round_trip(seq in any::<u64>(), id in any::<u64>(), nibbles in 0u8..=16, prefix in any::<u64>(),
                                           records_end in any::<u64>(), summary_len in any::<u32>(), crc in any::<u32>(), count in any::<u32>()) {
        let prefix_bits = nibbles * 4;
        let hash_prefix = prefix & !u64::MAX.checked_shr(u32::from(prefix_bits)).unwrap_or(0);
        let substore = SubstoreId { id, hash_prefix, prefix_bits };
        let header = ExtentHeader { extent_seq: seq, substore };
        prop_assert_eq!(ExtentHeader::decode(&header.encode()), Some(header));
        prop_assert_eq!(decode_meta(&encode_meta(&substore)), Some(substore));
        let footer = Footer { records_end, summary_len, summary_crc: crc, entry_count: count };
        prop_assert_eq!(Footer::decode(&footer.encode()), Some(footer));
    }
}
