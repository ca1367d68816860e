//! Each kind of damage is found and named (file and offset); a healthy substore and every
//! state a crash can leave pass; the pass writes nothing.

use futures_lite::future::block_on;

use super::*;
use crate::format::{FOOTER_LEN, Footer, extent_file_name};
use crate::{Config, CrashMode, SimDevice, Substore, SubstoreId, WriteOptions};

const ID: SubstoreId = SubstoreId::root(3);

fn config() -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        write_buffer_bytes: 1 << 20,
        ..Config::default()
    }
}

/// Write-outs without a sync happen every few puts, so crashes tear records.
fn config_small_buffer() -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        write_buffer_bytes: 8 << 10,
        ..Config::default()
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:04}-").repeat(20).into_bytes()
}

/// `n` keys over several sealed extents (64 KiB each) and an active one, flushed.
async fn filled(n: usize) -> SimDevice {
    let dev = SimDevice::new();
    let s = Substore::create_or_open(dev.clone(), ID, config())
        .await
        .unwrap();
    for i in 0..n {
        s.put(&key(i), &value(i)).await.unwrap();
    }
    s.close().await.unwrap();
    dev
}

async fn verify(dev: &SimDevice) -> SubstoreReport {
    verify_substore(dev, Some(ID), &mut |_| {}).await.unwrap()
}

fn bytes(dev: &SimDevice, name: &str) -> Vec<u8> {
    let mut copy = Vec::new();
    dev.corrupt(name, |b| copy = b.clone());
    copy
}

fn flip(dev: &SimDevice, name: &str, at: usize) {
    dev.corrupt(name, |b| b[at] ^= 0x40);
}

fn find(dev: &SimDevice, name: &str, needle: &[u8]) -> usize {
    let b = bytes(dev, name);
    b.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

/// Offset of the record of `key` (no metadata, no expiry) in extent `name`.
fn record_of(dev: &SimDevice, name: &str, key: &[u8]) -> usize {
    find(dev, name, key) - RECORD_HEADER_LEN
}

fn footer_of(dev: &SimDevice, name: &str) -> Footer {
    let b = bytes(dev, name);
    Footer::decode(&b[b.len() - FOOTER_LEN..]).expect("sealed")
}

fn extents(dev: &SimDevice) -> Vec<String> {
    let mut names: Vec<String> = block_on(dev.list())
        .unwrap()
        .into_iter()
        .filter(|n| parse_extent_file_name(n).is_some())
        .collect();
    names.sort();
    names
}

/// The single problem of a report.
fn only_problem(report: &SubstoreReport) -> &Finding {
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    &report.problems[0]
}

#[test]
fn a_healthy_substore_has_no_problem_and_no_note() {
    block_on(async {
        let dev = SimDevice::new();
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        for i in 0..1500 {
            s.put(&key(i), &value(i)).await.unwrap();
        }
        for i in (0..1500).step_by(3) {
            s.put(&key(i), b"again").await.unwrap();
        }
        for i in (0..1500).step_by(5) {
            s.delete(&key(i)).await.unwrap();
        }
        let opts = WriteOptions {
            meta: b"meta",
            expiry_unix_ms: Some(u64::MAX / 2),
        };
        s.put_with(b"with-meta", b"v", opts).await.unwrap();
        s.put(b"", b"the empty key").await.unwrap();
        s.flush().await.unwrap();
        s.compact(0.3).await.unwrap();
        let stats = s.stats();
        s.close().await.unwrap();

        let report = verify(&dev).await;
        assert!(report.is_ok(), "{:#?}", report.problems);
        assert!(report.notes.is_empty(), "{:#?}", report.notes);
        assert_eq!(report.id, Some(ID));
        assert_eq!(report.keys, stats.keys);
        assert_eq!(report.live_bytes, stats.live_bytes);
        assert_eq!(report.extents, extents(&dev).len() as u64);
        assert!(
            report.extents >= 3 && report.records > report.keys,
            "{report:?}"
        );
    });
}

#[test]
fn a_flipped_byte_in_a_value_is_named_by_file_and_record_offset() {
    block_on(async {
        let dev = filled(1000).await;
        let name = extent_file_name(1);
        let record = record_of(&dev, &name, &key(5));
        flip(&dev, &name, find(&dev, &name, b"value-0005-") + 30);
        let report = verify(&dev).await;
        let p = only_problem(&report);
        assert!(p.path.ends_with(&name), "{p}");
        assert_eq!(p.offset, record as u64, "{p}");
        assert!(p.what.contains("checksum mismatch"), "{p}");
        // Everything else was still read and indexed.
        assert_eq!(report.keys, 1000);
    });
}

#[test]
fn a_flipped_byte_in_a_key_summary_is_named_at_the_summary() {
    block_on(async {
        let dev = filled(1000).await;
        let name = extent_file_name(2);
        let footer = footer_of(&dev, &name);
        flip(&dev, &name, footer.records_end as usize + 40);
        let report = verify(&dev).await;
        let p = only_problem(&report);
        assert!(p.path.ends_with(&name), "{p}");
        assert_eq!(p.offset, footer.records_end);
        assert!(p.what.contains("key summary checksum mismatch"), "{p}");
        assert_eq!(report.keys, 1000);
    });
}

#[test]
fn a_flipped_byte_anywhere_in_a_footer_is_named_at_the_footer() {
    block_on(async {
        // One field after another: magic, crc, records_end, summary_len, summary_crc,
        // entry_count, reserved.
        for at in [1, 5, 8, 17, 22, 24, 30] {
            let dev = filled(1000).await;
            let name = extent_file_name(1);
            let len = dev.file_len(&name).unwrap();
            flip(&dev, &name, (len - FOOTER_LEN as u64) as usize + at);
            let report = verify(&dev).await;
            assert!(!report.is_ok(), "byte {at}");
            let p = &report.problems[0];
            assert!(p.path.ends_with(&name), "{p}");
            assert_eq!(p.offset, len - FOOTER_LEN as u64, "byte {at}: {p}");
            assert!(p.what.contains("bad footer"), "{p}");
        }
    });
}

#[test]
fn a_bad_footer_on_the_newest_extent_is_not_taken_for_a_torn_tail() {
    block_on(async {
        let dev = filled(1000).await;
        let names = extents(&dev);
        // Drop the active extent: the newest left is sealed.
        dev.remove(names.last().unwrap()).await.unwrap();
        let name = &names[names.len() - 2];
        let len = dev.file_len(name).unwrap();
        flip(&dev, name, (len - FOOTER_LEN as u64) as usize + 9);
        let report = verify(&dev).await;
        let p = only_problem(&report);
        assert!(p.path.ends_with(name.as_str()), "{p}");
        assert_eq!(p.offset, len - FOOTER_LEN as u64, "{p}");
        assert!(p.what.contains("bad footer"), "{p}");
    });
}

#[test]
fn a_flipped_byte_in_an_extent_header_is_named_at_offset_zero() {
    block_on(async {
        for (at, says) in [
            (1, "bad magic"),
            (12, "checksum mismatch"),
            (40, "checksum"),
        ] {
            let dev = filled(1000).await;
            let name = extent_file_name(2);
            flip(&dev, &name, at);
            let report = verify(&dev).await;
            let p = only_problem(&report);
            assert!(p.path.ends_with(&name), "{p}");
            assert_eq!(p.offset, 0, "{p}");
            assert!(
                p.what.contains("bad extent header") && p.what.contains(says),
                "{p}"
            );
        }
    });
}

#[test]
fn a_flipped_byte_in_the_newest_extent_header_is_one_problem() {
    block_on(async {
        let dev = filled(1000).await;
        let newest = (1..100)
            .rev()
            .find(|&s| dev.file_len(&extent_file_name(s)).is_some())
            .unwrap();
        let name = extent_file_name(newest);
        flip(&dev, &name, 12);
        let report = verify(&dev).await;
        let p = only_problem(&report);
        assert!(p.path.ends_with(&name), "{p}");
        assert_eq!(p.offset, 0, "{p}");
        assert!(p.what.contains("bad extent header"), "{p}");
    });
}

#[test]
fn a_flipped_byte_in_the_substore_file_is_named() {
    block_on(async {
        let dev = filled(10).await;
        flip(&dev, META_FILE_NAME, 9);
        let report = verify(&dev).await;
        let p = only_problem(&report);
        assert!(p.path.ends_with(META_FILE_NAME), "{p}");
        assert!(p.what.contains("bad substore metadata"), "{p}");
    });
}

#[test]
fn a_truncated_sealed_extent_is_named() {
    block_on(async {
        let dev = filled(1000).await;
        let name = extent_file_name(1);
        let len = dev.file_len(&name).unwrap() as usize;
        dev.corrupt(&name, |b| b.truncate(len - 5000));
        let report = verify(&dev).await;
        let p = &report.problems[0];
        assert!(p.path.ends_with(&name), "{p}");
        assert!(p.what.contains("not sealed"), "{p}");
        assert!(
            p.what.contains("not a whole number of 4096-byte blocks"),
            "{p}"
        );
    });
}

#[test]
fn a_truncated_newest_extent_is_named_at_the_cut_record() {
    block_on(async {
        let dev = filled(1000).await;
        let name = extents(&dev).pop().unwrap();
        let record = record_of(&dev, &name, &key(999));
        dev.corrupt(&name, |b| b.truncate(record + 30));
        let report = verify(&dev).await;
        let p = only_problem(&report);
        assert!(p.path.ends_with(&name), "{p}");
        assert_eq!(p.offset, record as u64, "{p}");
        assert!(p.what.contains("truncated"), "{p}");
    });
}

#[test]
fn damage_in_the_middle_of_the_newest_extent_is_a_problem_not_a_torn_tail() {
    block_on(async {
        for victim in [990, 999] {
            let dev = filled(1000).await;
            let name = extents(&dev).pop().unwrap();
            let record = record_of(&dev, &name, &key(victim));
            let value_at = find(&dev, &name, format!("value-{victim:04}-").as_bytes());
            flip(&dev, &name, value_at + 7);
            let report = verify(&dev).await;
            let p = only_problem(&report);
            assert!(p.path.ends_with(&name), "{p}");
            assert_eq!(p.offset, record as u64, "{p}");
            assert!(p.what.contains("not a torn write"), "{p}");
        }
    });
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    block_on(async {
        let dev = filled(1500).await;
        let (one, two, three, four) = (
            extent_file_name(1),
            extent_file_name(2),
            extent_file_name(3),
            extent_file_name(4),
        );
        flip(&dev, &one, find(&dev, &one, b"value-0001-") + 3);
        flip(&dev, &one, find(&dev, &one, b"value-0050-") + 3);
        flip(&dev, &two, 20);
        let records_end = footer_of(&dev, &three).records_end as usize;
        flip(&dev, &three, records_end + 3);
        let record = record_of(&dev, &four, b"key-0");
        flip(&dev, &four, record + 9); // key length: the record's length is wrong
        let report = verify(&dev).await;
        let places: Vec<(String, u64)> = report
            .problems
            .iter()
            .map(|p| (p.path.rsplit(':').next().unwrap().to_owned(), p.offset))
            .collect();
        let expected = [
            (one.clone(), record_of(&dev, &one, &key(1)) as u64),
            (one.clone(), record_of(&dev, &one, &key(50)) as u64),
            (two, 0),
            (three, records_end as u64),
            (four, record as u64),
        ];
        for e in &expected {
            assert!(
                places.contains(e),
                "{e:?} missing from {:#?}",
                report.problems
            );
        }
        // One problem for each damage: nothing reported twice, no knock-on findings.
        assert_eq!(places.len(), expected.len(), "{:#?}", report.problems);
    });
}

#[test]
fn every_state_a_crash_leaves_passes_and_recovery_leaves_no_note() {
    let mut notes = 0;
    for seed in 0..60u64 {
        block_on(async {
            let mut dev = SimDevice::new();
            let s = Substore::create_or_open(dev.clone(), ID, config_small_buffer())
                .await
                .unwrap();
            let n = 200 + (seed as usize * 37) % 900;
            for i in 0..n {
                s.put(&key(i), &value(i)).await.unwrap();
                if i % 97 == 0 {
                    s.flush().await.unwrap();
                }
            }
            drop(s);
            let mode = match seed % 3 {
                0 => CrashMode::DropUnsynced,
                1 => CrashMode::TearLast { seed },
                _ => CrashMode::Random { seed },
            };
            dev.crash(mode);
            let report = verify(&dev).await;
            assert!(report.is_ok(), "seed {seed}: {:#?}", report.problems);
            notes += report.notes.len();
            let s = Substore::open(dev.clone(), config()).await.unwrap();
            assert_eq!(report.keys, s.len(), "seed {seed}");
            s.close().await.unwrap();
            let report = verify(&dev).await;
            assert!(report.is_ok(), "seed {seed}: {:#?}", report.problems);
            assert!(report.notes.is_empty(), "seed {seed}: {:#?}", report.notes);
        });
    }
    assert!(notes > 10, "crashes left only {notes} torn tails to note");
}

#[test]
fn verify_writes_nothing_where_recovery_would() {
    block_on(async {
        // Find a crash that leaves a torn tail (recovery truncates it).
        for seed in 0.. {
            let mut dev = SimDevice::new();
            let s = Substore::create_or_open(dev.clone(), ID, config_small_buffer())
                .await
                .unwrap();
            for i in 0..300 {
                s.put(&key(i), &value(i)).await.unwrap();
            }
            s.flush().await.unwrap();
            for i in 300..400 {
                s.put(&key(i), &value(i)).await.unwrap();
            }
            drop(s);
            dev.crash(CrashMode::TearLast { seed });
            let before: Vec<(String, Vec<u8>)> = {
                let mut names = dev.list().await.unwrap();
                names.sort();
                names
                    .into_iter()
                    .map(|n| (n.clone(), bytes(&dev, &n)))
                    .collect()
            };
            let ops = dev.op_counts();
            let report = verify(&dev).await;
            let after: Vec<(String, Vec<u8>)> = before
                .iter()
                .map(|(n, _)| (n.clone(), bytes(&dev, n)))
                .collect();
            assert_eq!(before, after);
            assert_eq!(dev.list().await.unwrap().len(), before.len());
            assert_eq!(dev.op_counts(), ops, "no write and no sync");
            if !report.notes.is_empty() {
                return;
            }
            assert!(seed < 50, "no seed left a torn tail");
        }
    });
}

/// Edits the key summary of sealed extent `name`, then makes its checksum and the
/// footer valid again: damage that checksums cannot see.
fn edit_summary(dev: &SimDevice, name: &str, edit: impl FnOnce(&mut [u8])) {
    dev.corrupt(name, |b| {
        let len = b.len();
        let mut footer = Footer::decode(&b[len - FOOTER_LEN..]).unwrap();
        let (at, end) = (
            footer.records_end as usize,
            (footer.records_end + u64::from(footer.summary_len)) as usize,
        );
        edit(&mut b[at..end]);
        footer.summary_crc = format::checksum(&[&b[at..end]]);
        b[len - FOOTER_LEN..].copy_from_slice(&footer.encode());
    });
}

/// Offset inside the summary of the entry for the record at `offset`.
fn entry_for(summary: &[u8], offset: u32) -> usize {
    let mut at = 0;
    loop {
        let layout = format::SummaryLayout::WithMeta;
        let (e, n) = format::decode_summary_entry(&summary[at..], layout).unwrap();
        if e.offset == offset {
            return at;
        }
        at += n;
    }
}

/// Gives the record at `offset` of sealed extent `name` sequence `seq`, with a valid
/// checksum and a summary entry to match.
fn reseq(dev: &SimDevice, name: &str, offset: usize, seq: u64) {
    dev.corrupt(name, |b| {
        let len = format::decode_record_header(&b[offset..])
            .unwrap()
            .record_len();
        b[offset + format::RECORD_SEQ_AT..][..8].copy_from_slice(&seq.to_le_bytes());
        let crc = format::checksum(&[&b[offset + 4..offset + len]]);
        b[offset..offset + 4].copy_from_slice(&crc.to_le_bytes());
    });
    edit_summary(dev, name, |summary| {
        let at = entry_for(summary, offset as u32) + format::SUMMARY_SEQ_AT;
        summary[at..at + 8].copy_from_slice(&seq.to_le_bytes());
    });
}

#[test]
fn a_summary_entry_that_disagrees_with_its_record_is_named() {
    block_on(async {
        let dev = filled(1000).await;
        let name = extent_file_name(1);
        let footer = footer_of(&dev, &name);
        let record = record_of(&dev, &name, &key(7)) as u32;
        let mut entry = 0;
        edit_summary(&dev, &name, |summary| {
            entry = entry_for(summary, record);
            summary[entry + format::SUMMARY_SEQ_AT] ^= 0x10;
        });
        let report = verify(&dev).await;
        let p = only_problem(&report);
        assert_eq!(p.offset, footer.records_end + entry as u64, "{p}");
        assert!(p.what.contains("disagrees with the record"), "{p}");
    });
}

#[test]
fn an_index_that_would_not_hold_the_newest_record_is_named() {
    block_on(async {
        let dev = SimDevice::new();
        let s = Substore::create_or_open(dev.clone(), ID, config())
            .await
            .unwrap();
        s.put(b"dup", b"old").await.unwrap();
        for i in 0..400 {
            s.put(&key(i), &value(i)).await.unwrap();
        }
        s.put(b"dup", b"new").await.unwrap();
        for i in 400..800 {
            s.put(&key(i), &value(i)).await.unwrap();
        }
        s.close().await.unwrap();
        assert!(verify(&dev).await.is_ok());
        // The later record of "dup" gets a sequence below the earlier one's: replay in
        // log order would index it, though it is not the newest.
        let name = extents(&dev)
            .into_iter()
            .find(|n| bytes(&dev, n).windows(6).any(|w| w == b"dupnew"))
            .unwrap();
        let record = find(&dev, &name, b"dupnew") - RECORD_HEADER_LEN;
        reseq(&dev, &name, record, 0);
        let report = verify(&dev).await;
        let p = only_problem(&report);
        assert!(p.path.ends_with(&name), "{p}");
        assert_eq!(p.offset, record as u64, "{p}");
        assert!(
            p.what.contains("log order and sequence order disagree"),
            "{p}"
        );
    });
}

#[test]
fn a_key_outside_the_substore_prefix_is_named() {
    block_on(async {
        let id = SubstoreId {
            id: 7,
            hash_prefix: 0x3 << 60,
            prefix_bits: 4,
        };
        let dev = SimDevice::new();
        let s = Substore::create_or_open(dev.clone(), id, config())
            .await
            .unwrap();
        let keys: Vec<Vec<u8>> = (0..64).map(key).collect();
        for k in &keys {
            s.put(k, b"v").await.unwrap();
        }
        s.close().await.unwrap();
        let outside = keys.iter().filter(|k| !id.covers(routing_hash(k))).count();
        assert!(outside > 0 && outside < keys.len());
        let report = verify_substore(&dev, Some(id), &mut |_| {}).await.unwrap();
        assert_eq!(report.problems.len(), outside, "{:#?}", report.problems);
        assert!(
            report.problems[0]
                .what
                .contains("outside this substore's prefix")
        );
        // The wrong identity is named too.
        let report = verify_substore(&dev, Some(ID), &mut |_| {}).await.unwrap();
        assert!(report.problems[0].path.ends_with(META_FILE_NAME));
    });
}

#[test]
fn a_stillborn_newest_extent_is_a_note_and_open_removes_it() {
    block_on(async {
        let dev = filled(100).await;
        let name = extent_file_name(extents(&dev).len() as u64 + 1);
        let file = dev.create(&name).await.unwrap();
        file.write_at(0, &[0; BLOCK_BYTES as usize]).await.unwrap();
        file.sync().await.unwrap();
        dev.sync_dir().await.unwrap();
        let report = verify(&dev).await;
        assert!(report.is_ok(), "{:#?}", report.problems);
        assert_eq!(report.notes.len(), 1);
        assert!(report.notes[0].path.ends_with(&name));
        Substore::open(dev.clone(), config()).await.unwrap();
        assert!(dev.file_len(&name).is_none());
    });
}

#[test]
fn a_summary_without_its_footer_is_an_interrupted_seal_not_damage() {
    block_on(async {
        let dev = filled(1000).await;
        let mut names = extents(&dev);
        dev.remove(&names.pop().unwrap()).await.unwrap();
        let name = names.pop().unwrap();
        let footer = footer_of(&dev, &name);
        dev.corrupt(&name, |b| {
            let len = b.len();
            b[len - FOOTER_LEN..].fill(0);
        });
        let report = verify(&dev).await;
        assert!(report.is_ok(), "{:#?}", report.problems);
        assert_eq!(report.notes.len(), 1, "{:#?}", report.notes);
        assert_eq!(report.notes[0].offset, footer.records_end);
        Substore::open(dev.clone(), config())
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        let report = verify(&dev).await;
        assert!(report.is_ok() && report.notes.is_empty(), "{report:#?}");
    });
}

#[test]
fn an_empty_directory_is_a_healthy_empty_substore() {
    block_on(async {
        let report = verify(&SimDevice::new()).await;
        assert!(report.is_ok() && report.notes.is_empty());
        assert_eq!((report.id, report.keys), (None, 0));
    });
}
