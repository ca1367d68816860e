//! Feeds arbitrary bytes to every decoder of the on-disk format. None may panic, and a
//! record that decodes must re-encode to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringkv_engine::format::{
    ExtentHeader, Footer, decode_meta, decode_record, decode_record_header,
    decode_summary_entry, encode_record, encode_summary_entry, parse_extent_file_name,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_record_header(data);
    if let Ok(rec) = decode_record(data) {
        let mut again = Vec::new();
        encode_record(&mut again, &rec.header, rec.meta, rec.key, rec.value);
        assert_eq!(again, data[..rec.header.record_len()]);
    }
    if let Some((entry, len)) = decode_summary_entry(data) {
        let mut again = Vec::new();
        encode_summary_entry(&mut again, &entry);
        assert_eq!(again, data[..len]);
    }
    if let Some(footer) = Footer::decode(data) {
        assert_eq!(footer.encode()[..], data[..32]);
    }
    if let Some(header) = ExtentHeader::decode(data) {
        assert_eq!(header.encode()[..], data[..64]);
    }
    let _ = decode_meta(data);
    let _ = parse_extent_file_name(&String::from_utf8_lossy(data));
});
