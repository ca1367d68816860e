//! A substore's snapshots (`Substore::pin`): reads and ordered key listings at a cut see
//! exactly the records written before it, through overwrites, deletes and re-puts,
//! with the old records in sealed extents or still in the tail's buffer; compaction
//! refuses to run while a cut is pinned; an unpin forgets what no remaining cut reads,
//! the last one every kept version.

use futures_lite::future::block_on;
use ringkv_engine::scan::Direction;
use ringkv_engine::{Config, SimDevice, Substore, SubstoreId};

const ID: SubstoreId = SubstoreId::root(3);

fn config() -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        ..Config::default()
    }
}

async fn value_at(s: &Substore<SimDevice>, key: &str, cut: u64) -> Option<String> {
    let record = s.get_at(key.as_bytes(), cut).await.unwrap();
    record.map(|r| String::from_utf8(r.value.to_vec()).unwrap())
}

fn keys_at(
    s: &Substore<SimDevice>,
    from: Option<&str>,
    direction: Direction,
    cut: u64,
) -> Vec<String> {
    let listed = s.scan_keys_at(from.map(str::as_bytes), direction, 100, cut);
    listed
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect()
}

/// Puts `key` = `value` padded to 3 KiB (so that extents fill and seal).
async fn put(s: &Substore<SimDevice>, key: &str, value: &str) {
    s.put(key.as_bytes(), format!("{value:<3072}").as_bytes())
        .await
        .unwrap();
}

#[test]
fn reads_at_a_cut_see_exactly_what_was_written_before_it() {
    block_on(async {
        let s = Substore::create_or_open(SimDevice::new(), ID, config())
            .await
            .unwrap();
        for key in ["a", "b", "c"] {
            put(&s, key, "1").await;
        }
        s.flush().await.unwrap();
        let first = s.pin();
        put(&s, "a", "2").await;
        s.delete(b"b").await.unwrap();
        put(&s, "d", "2").await;
        // Enough writes to seal extents: the first versions are on the device only.
        for i in 0..60 {
            put(&s, &format!("filler-{i:02}"), "x").await;
        }
        s.flush().await.unwrap();
        let second = s.pin();
        put(&s, "a", "3").await;
        put(&s, "b", "3").await;
        s.delete(b"d").await.unwrap();
        let trimmed = |v: Option<String>| v.map(|v| v.trim_end().to_owned());
        for (key, at_first, at_second, now) in [
            ("a", Some("1"), Some("2"), Some("3")),
            ("b", Some("1"), None, Some("3")),
            ("c", Some("1"), Some("1"), Some("1")),
            ("d", None, Some("2"), None),
        ] {
            let owned = |v: Option<&str>| v.map(str::to_owned);
            assert_eq!(
                trimmed(value_at(&s, key, first).await),
                owned(at_first),
                "{key}"
            );
            assert_eq!(
                trimmed(value_at(&s, key, second).await),
                owned(at_second),
                "{key}"
            );
            let current = s.get(key.as_bytes()).await.unwrap();
            let current = current.map(|v| String::from_utf8(v.to_vec()).unwrap());
            assert_eq!(trimmed(current), owned(now), "{key}");
        }
        let forward = keys_at(&s, None, Direction::Forward, first);
        assert_eq!(forward, ["a", "b", "c"]);
        let from_b = keys_at(&s, Some("b"), Direction::Forward, first);
        assert_eq!(from_b, ["b", "c"]);
        let second_keys = keys_at(&s, Some("e"), Direction::Reverse, second);
        assert_eq!(second_keys, ["d", "c", "a"]);
        // Nothing is compacted while a cut is pinned, even with dead extents.
        assert!(s.compaction_victims(0.01).is_empty());
        assert_eq!(s.compact(0.01).await.unwrap().extents, 0);
        assert!(s.pinned_stats().versions >= 5, "{:?}", s.pinned_stats());
        s.unpin(first);
        assert_eq!(trimmed(value_at(&s, "b", second).await), None);
        s.unpin(second);
        let stats = s.pinned_stats();
        assert_eq!((stats.cuts, stats.versions, stats.bytes), (0, 0, 0));
        assert!(s.compact(0.01).await.unwrap().extents > 0);
    });
}

#[test]
fn unpinning_the_oldest_cut_forgets_only_what_it_alone_read() {
    block_on(async {
        let s = Substore::create_or_open(SimDevice::new(), ID, config())
            .await
            .unwrap();
        for key in ["a", "b"] {
            put(&s, key, "1").await;
        }
        let first = s.pin();
        put(&s, "a", "2").await;
        put(&s, "b", "2").await;
        let second = s.pin();
        put(&s, "a", "3").await;
        s.delete(b"b").await.unwrap();
        let before = s.pinned_stats();
        assert_eq!(before.versions, 4, "{before:?}");
        s.unpin(first);
        let after = s.pinned_stats();
        assert_eq!(
            after.versions, 2,
            "the versions the first cut read: {after:?}"
        );
        assert!(after.bytes < before.bytes && after.bytes == s.pinned_bytes());
        let trimmed = |v: Option<String>| v.map(|v| v.trim_end().to_owned());
        assert_eq!(
            trimmed(value_at(&s, "a", second).await).as_deref(),
            Some("2")
        );
        assert_eq!(
            trimmed(value_at(&s, "b", second).await).as_deref(),
            Some("2")
        );
        assert_eq!(keys_at(&s, None, Direction::Forward, second), ["a", "b"]);
        s.unpin(second);
        assert_eq!(s.pinned_stats().bytes, 0);
    });
}
