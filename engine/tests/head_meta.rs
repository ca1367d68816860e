//! Metadata in the index, for HEAD: held within `Config::meta_in_index_max_bytes`
//! across reopens (from the key summaries, with no value read), and a database whose
//! sealed extents have key summaries of format version 1 (no metadata) still opens,
//! reads and verifies, and gets its metadata back in memory as compaction rewrites them.

use futures_lite::future::block_on;
use ringkv_engine::device::Device;
use ringkv_engine::format::{
    self, FOOTER_LEN, Footer, SummaryEntry, SummaryLayout, parse_extent_file_name,
};
use ringkv_engine::verify::verify_substore;
use ringkv_engine::{Config, SimDevice, Substore, SubstoreId, WriteOptions};

const ID: SubstoreId = SubstoreId::root(9);
const KEYS: usize = 600;

fn config(meta_max: usize) -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        meta_in_index_max_bytes: meta_max,
        ..Config::default()
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

/// Key `i`'s metadata: none, short or long, by `i % 3`.
fn meta(i: usize) -> Vec<u8> {
    match i % 3 {
        0 => Vec::new(),
        1 => format!("etag-{i}").into_bytes(),
        _ => format!("{i:-<40}").into_bytes(),
    }
}

/// `KEYS` keys with 300-byte values and `meta(i)`, over several sealed extents.
async fn filled(dev: &SimDevice, meta_max: usize) {
    let s = Substore::create_or_open(dev.clone(), ID, config(meta_max))
        .await
        .unwrap();
    for i in 0..KEYS {
        let opts = WriteOptions {
            meta: &meta(i),
            expiry_unix_ms: None,
        };
        s.put_with(&key(i), &[b'v'; 300], opts).await.unwrap();
    }
    s.close().await.unwrap();
}

fn sealed_extents(dev: &SimDevice) -> Vec<String> {
    let names = block_on(dev.list()).unwrap();
    let extents = names
        .into_iter()
        .filter(|n| parse_extent_file_name(n).is_some());
    let sealed = extents.filter(|n| {
        let mut footer = None;
        dev.corrupt(n, |b| {
            footer = b
                .len()
                .checked_sub(FOOTER_LEN)
                .and_then(|at| Footer::decode(&b[at..]))
        });
        footer.is_some()
    });
    sealed.collect()
}

#[test]
fn metadata_within_the_bound_is_answered_from_memory_after_a_reopen() {
    block_on(async {
        let dev = SimDevice::new();
        filled(&dev, 16).await;
        assert!(
            sealed_extents(&dev).len() >= 2,
            "the keys span sealed extents"
        );
        let s = Substore::create_or_open(dev.clone(), ID, config(16))
            .await
            .unwrap();
        let reads = dev.op_counts();
        for i in 0..KEYS {
            let (entry, held) = s.head_with_meta(&key(i)).expect("live");
            assert_eq!(usize::from(entry.meta_len), meta(i).len());
            match meta(i).len() {
                0..=16 => assert_eq!(held.as_deref(), Some(&meta(i)[..]), "key {i}"),
                _ => assert_eq!(held, None, "key {i}: longer than the bound"),
            }
        }
        assert_eq!(dev.op_counts(), reads, "HEAD touched the device");
        for i in (2..KEYS).step_by(3) {
            let record = s.get_record(&key(i)).await.unwrap().unwrap();
            assert_eq!(record.meta, meta(i), "key {i}: on the device");
        }
        s.close().await.unwrap();
    });
}

/// Rewrites every sealed extent's key summary and footer as format version 1 wrote
/// them: the same entries without their metadata.
fn downgrade_summaries(dev: &SimDevice) {
    for name in sealed_extents(dev) {
        dev.corrupt(&name, |b| {
            let footer = Footer::decode(&b[b.len() - FOOTER_LEN..]).unwrap();
            let start = footer.records_end as usize;
            let summary = b[start..start + footer.summary_len as usize].to_vec();
            let mut v1 = Vec::new();
            let mut at = 0;
            for _ in 0..footer.entry_count {
                let (entry, len) =
                    format::decode_summary_entry(&summary[at..], SummaryLayout::WithMeta).unwrap();
                at += len;
                let SummaryEntry { offset, header, .. } = entry;
                v1.extend_from_slice(&offset.to_le_bytes());
                v1.extend_from_slice(&header.value_len.to_le_bytes());
                v1.extend_from_slice(&header.key_len.to_le_bytes());
                v1.push(header.meta_len);
                v1.push(summary[at - len + format::SUMMARY_FLAGS_AT]);
                v1.extend_from_slice(&header.seq.to_le_bytes());
                v1.extend_from_slice(&header.expiry_unix_ms.unwrap_or(0).to_le_bytes());
                v1.extend_from_slice(entry.key);
            }
            let footer = Footer {
                summary_len: u32::try_from(v1.len()).unwrap(),
                summary_crc: format::checksum(&[&v1]),
                layout: SummaryLayout::KeysOnly,
                ..footer
            };
            b.truncate(start);
            b.extend_from_slice(&v1);
            b.resize(footer.file_len() as usize - FOOTER_LEN, 0);
            b.extend_from_slice(&footer.encode());
        });
    }
}

#[test]
fn summaries_of_format_version_1_still_open_and_compaction_brings_the_metadata_back() {
    block_on(async {
        let dev = SimDevice::new();
        filled(&dev, 255).await;
        downgrade_summaries(&dev);
        let report = verify_substore(&dev, Some(ID), &mut |_| {}).await.unwrap();
        assert!(report.problems.is_empty(), "{:#?}", report.problems);
        let s = Substore::create_or_open(dev.clone(), ID, config(255))
            .await
            .unwrap();
        let not_held = (0..KEYS)
            .filter(|&i| s.head_with_meta(&key(i)).unwrap().1.is_none())
            .count();
        assert!(
            not_held > KEYS / 3,
            "{not_held} keys' metadata is on the device only"
        );
        for i in 0..KEYS {
            let record = s.get_record(&key(i)).await.unwrap().unwrap();
            assert_eq!(
                (record.meta.as_ref(), record.value.len()),
                (&meta(i)[..], 300)
            );
        }
        let stats = s.compact(0.0).await.unwrap();
        assert!(stats.extents > 0, "compaction ran: {stats:?}");
        for i in 0..KEYS {
            let (_, held) = s.head_with_meta(&key(i)).unwrap();
            assert_eq!(
                held.as_deref(),
                Some(&meta(i)[..]),
                "key {i} after compaction"
            );
        }
        s.close().await.unwrap();
        let report = verify_substore(&dev, Some(ID), &mut |_| {}).await.unwrap();
        assert!(report.problems.is_empty(), "{:#?}", report.problems);
    });
}
