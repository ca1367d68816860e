//! A substore whose writes are made durable by a commit log instead of its own flushes:
//! after a power cut, replaying the log into the reopened substore gives back every
//! acknowledged write, whatever the extents kept.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use futures_lite::future::block_on;
use ringkv_engine::commitlog::scan;
use ringkv_engine::device::{Device, DeviceFile};
use ringkv_engine::{CommitLog, Config, CrashMode, Journal, SimDevice, Substore, SubstoreId};

const ID: SubstoreId = SubstoreId::root(3);
const LOG: &str = "core-0.log";

fn config() -> Config {
    Config {
        extent_size_bytes: 64 * 1024,
        write_buffer_bytes: 8 * 1024,
        ..Config::default()
    }
}

async fn check(s: &Substore<SimDevice>, model: &BTreeMap<Vec<u8>, Vec<u8>>, what: &str) {
    for (key, value) in model {
        let got = s.get(key).await.unwrap();
        assert_eq!(got.as_deref(), Some(&value[..]), "{what}: key {key:?}");
    }
    assert_eq!(s.len(), model.len() as u64, "{what}: key count");
}

#[test]
fn replaying_the_log_restores_every_acknowledged_write() {
    let modes = (0..12).map(|seed| match seed % 3 {
        0 => CrashMode::DropUnsynced,
        1 => CrashMode::TearLast { seed },
        _ => CrashMode::Random { seed },
    });
    for mode in modes {
        let what = format!("{mode:?}");
        let (mut data, mut logs) = (SimDevice::new(), SimDevice::new());
        let mut model = BTreeMap::new();
        block_on(async {
            let s = Substore::create_or_open(data.clone(), ID, config())
                .await
                .unwrap();
            let journal = Rc::new(RefCell::new(Journal::default()));
            s.attach_journal(Some(journal.clone()));
            let log = CommitLog::start(&logs, LOG, 0, 1, 1 << 20).await.unwrap();
            for round in 0..40u32 {
                for k in 0..25u32 {
                    let key = format!("key{}", (round * 7 + k) % 150).into_bytes();
                    if (round + k) % 9 == 0 {
                        s.delete(&key).await.unwrap();
                        model.remove(&key);
                    } else {
                        let value = vec![(round ^ k) as u8; 100 + (k as usize % 5) * 200];
                        s.put(&key, &value).await.unwrap();
                        model.insert(key, value);
                    }
                }
                let payload = journal.borrow_mut().take();
                assert!(
                    log.append(&payload).await.unwrap().is_ok(),
                    "the log has room"
                );
                s.mark_durable(s.next_seq() - 1);
            }
            // Appended, journaled, never committed: may be lost, must not damage.
            for k in 0..25u32 {
                s.put(format!("new{k}").as_bytes(), &[9; 700])
                    .await
                    .unwrap();
            }
        });
        data.crash(mode);
        logs.crash(mode);
        block_on(async {
            let s = Substore::create_or_open(data.clone(), ID, config())
                .await
                .unwrap();
            let file = logs.open(LOG).await.unwrap();
            let contents = scan(LOG, |at, len| block_on(file.read_at(at, len))).unwrap();
            assert_eq!(contents.frames, 40, "{what}");
            let records = &contents.records[&ID.id];
            let applied = s.replay(records, LOG).unwrap();
            s.flush().await.unwrap();
            let mut model = model.clone();
            for k in 0..25u32 {
                let key = format!("new{k}").into_bytes();
                if s.get(&key).await.unwrap().is_some() {
                    model.insert(key, vec![9; 700]);
                }
            }
            check(&s, &model, &what).await;
            // Replaying again changes nothing: every record is held now.
            assert_eq!(
                s.replay(records, LOG).unwrap(),
                0,
                "{what} ({applied} replayed)"
            );
        });
        data.crash(CrashMode::DropUnsynced);
        block_on(async {
            let s = Substore::create_or_open(data.clone(), ID, config())
                .await
                .unwrap();
            assert!(
                s.len() >= model.len() as u64,
                "{what}: the replay was flushed"
            );
        });
    }
}
