//! The commit log on the in-memory and the simulated device: what a scan gives back after
//! appends, resets, new epochs, torn and corrupted frames and power cuts.

use futures_lite::future::block_on;

use super::*;
use crate::device::{CrashMode, MemDevice, SimDevice};
use crate::format::{Kind, decode_record};

const NAME: &str = "core-0.log";

fn id(n: u64) -> SubstoreId {
    SubstoreId::root(n)
}

fn put(seq: u64, key: &[u8], value: &[u8]) -> RecordHeader {
    RecordHeader {
        kind: Kind::Put,
        seq,
        expiry_unix_ms: None,
        meta_len: 0,
        key_len: key.len() as u16,
        value_len: value.len() as u32,
    }
}

/// A journal of `n` puts to substores 1 and 2, numbered from `first`.
fn journal(first: u64, n: u64) -> Vec<u8> {
    let mut j = Journal::default();
    for seq in first..first + n {
        let key = format!("key-{seq}");
        let value = vec![seq as u8; (seq % 300) as usize];
        j.push(
            &id(seq % 2 + 1),
            &put(seq, key.as_bytes(), &value),
            b"",
            key.as_bytes(),
            &value,
        );
    }
    j.take()
}

/// Appends `frames` frames of 10 records each, numbered from 1.
async fn append_frames<F: DeviceFile>(log: &CommitLog<F>, frames: u64) {
    for n in 0..frames {
        assert!(log.append(&journal(n * 10 + 1, 10)).await.unwrap().is_ok());
    }
}

fn scan_file<D: Device>(device: &D, name: &str) -> Result<LogContents> {
    let file = block_on(device.open(name)).expect("the log exists");
    scan(name, |at, len| block_on(file.read_at(at, len)))
}

/// The sequences of the records a scan found for `substore`, in order.
fn seqs(contents: &LogContents, substore: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut rest = contents.records.get(&substore).map_or(&[][..], |r| &r[..]);
    while !rest.is_empty() {
        let record = decode_record(rest).expect("a whole record");
        out.push(record.header.seq);
        rest = &rest[record.header.record_len()..];
    }
    out
}

#[test]
fn frames_come_back_in_order_grouped_by_substore() {
    let device = MemDevice::new();
    block_on(async {
        let log = CommitLog::start(&device, NAME, 0, 7, 1 << 20)
            .await
            .unwrap();
        assert!(log.append(&journal(1, 10)).await.unwrap().is_ok());
        assert!(log.append(&journal(11, 5)).await.unwrap().is_ok());
    });
    let contents = scan_file(&device, NAME).unwrap();
    assert_eq!(contents.frames, 2);
    assert_eq!(contents.header.unwrap().epoch, 7);
    assert_eq!(seqs(&contents, 1), vec![2, 4, 6, 8, 10, 12, 14]);
    assert_eq!(seqs(&contents, 2), vec![1, 3, 5, 7, 9, 11, 13, 15]);
}

#[test]
fn a_reset_or_a_new_epoch_ends_every_earlier_frame() {
    let device = MemDevice::new();
    block_on(async {
        let log = CommitLog::start(&device, NAME, 0, 1, 1 << 20)
            .await
            .unwrap();
        append_frames(&log, 3).await;
        log.reset(log.seal()).await.unwrap();
        assert!(log.append(&journal(100, 1)).await.unwrap().is_ok());
    });
    let contents = scan_file(&device, NAME).unwrap();
    assert_eq!(
        contents.frames, 1,
        "the older generation's frames 1 and 2 are stale"
    );
    assert_eq!(seqs(&contents, 1), vec![100]);
    block_on(CommitLog::start(&device, NAME, 0, 2, 1 << 20)).unwrap();
    let contents = scan_file(&device, NAME).unwrap();
    assert_eq!((contents.frames, contents.header.unwrap().epoch), (0, 2));
}

#[test]
fn a_full_log_seals_until_the_reset_of_that_generation() {
    let device = MemDevice::new();
    block_on(async {
        let log = CommitLog::start(&device, NAME, 0, 1, 4 * BLOCK_BYTES)
            .await
            .unwrap();
        let mut taken = 0;
        let sealed = loop {
            match log.append(&journal(1, 20)).await.unwrap() {
                Ok(()) => taken += 1,
                Err(sealed) => break sealed,
            }
        };
        assert!(taken >= 1);
        // Sealed: even a frame that would fit waits for the checkpoint.
        assert_eq!(log.append(&journal(1, 1)).await.unwrap(), Err(sealed));
        log.reset(sealed).await.unwrap();
        assert!(log.append(&journal(1, 20)).await.unwrap().is_ok());
        // A second reset of the generation left behind changes nothing.
        log.reset(sealed).await.unwrap();
        assert!(log.append(&journal(21, 1)).await.unwrap().is_ok());
        let too_large = journal(1, 200);
        assert!(
            log.append(&too_large).await.unwrap().is_err(),
            "larger than the log"
        );
    });
    let contents = scan_file(&device, NAME).unwrap();
    assert_eq!(contents.frames, 2, "the frames after the reset are valid");
}

#[test]
fn a_torn_frame_ends_the_log_and_a_corrupt_header_is_refused() {
    let device = MemDevice::new();
    block_on(async {
        let log = CommitLog::start(&device, NAME, 0, 1, 1 << 20)
            .await
            .unwrap();
        append_frames(&log, 3).await;
    });
    let bytes = device.file_bytes(NAME).unwrap();
    let second = {
        let all = bytes.borrow();
        let first = decode_frame_header(&all[BLOCK_BYTES as usize..]).unwrap();
        (BLOCK_BYTES + first.frame_len()) as usize
    };
    bytes.borrow_mut()[second + 100] ^= 1;
    let contents = scan_file(&device, NAME).unwrap();
    assert_eq!(
        contents.frames, 1,
        "the log ends at the damaged second frame"
    );
    bytes.borrow_mut()[LOG_HEADER_LEN - 1] = 1;
    let err = scan_file(&device, NAME).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
}

#[test]
fn an_empty_file_holds_nothing() {
    let device = MemDevice::new();
    block_on(device.create(NAME)).unwrap();
    assert_eq!(scan_file(&device, NAME).unwrap(), LogContents::default());
}

#[test]
fn every_acknowledged_frame_survives_a_power_cut() {
    for mode in [
        CrashMode::DropUnsynced,
        CrashMode::TearLast { seed: 3 },
        CrashMode::Random { seed: 3 },
    ] {
        let mut device = SimDevice::new();
        block_on(async {
            let log = CommitLog::start(&device, NAME, 0, 1, 1 << 20)
                .await
                .unwrap();
            append_frames(&log, 4).await;
            // A frame written but not synced: may or may not survive, never damages.
            let frame = FrameHeader {
                epoch: 1,
                generation: 0,
                frame_no: 4,
                payload_len: journal(41, 10).len() as u32,
            };
            let mut bytes = Vec::new();
            encode_frame(&mut bytes, &frame, &journal(41, 10));
            let file = device.open(NAME).await.unwrap();
            file.write_at(log.next_offset.get(), &bytes).await.unwrap();
        });
        device.crash(mode);
        let contents = scan_file(&device, NAME).unwrap();
        assert!(
            contents.frames == 4 || contents.frames == 5,
            "{mode:?}: {}",
            contents.frames
        );
        assert_eq!(
            seqs(&contents, 1)[..20],
            (1..=40).filter(|s| s % 2 == 0).collect::<Vec<_>>()[..]
        );
    }
}
