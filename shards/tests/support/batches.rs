//! The model of the batch tests (`batch.rs` on the simulated disk, `crash_batch.rs`
//! with killed processes): writers whose batches set their own keys (or delete them)
//! and, half of the time, a group of shared keys, each batch to its own `writer:n`;
//! and the check that a reopened database holds each batch whole or not at all, with
//! every acknowledged one.

use ringkv::{Db, WriteBatch};

pub const WRITERS: usize = 3;
pub const OWN_KEYS: usize = 6;
pub const SHARED_KEYS: usize = 4;

/// What one writer knows of its batches: the newest acknowledged, the newest tried,
/// and which of them deleted its keys.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    pub acked: u64,
    pub tried: u64,
    pub deletes: std::collections::HashSet<u64>,
}

pub fn own_key(writer: usize, i: usize) -> String {
    format!("w{writer}-{i}")
}

pub fn shared_key(i: usize) -> String {
    format!("shared-{i}")
}

/// Batch `n` of `writer`: its own keys (all set to `writer:n`, or all deleted) and, for
/// half of them, the shared keys too (set to `writer:n`).
pub fn batch_of(writer: usize, n: u64, delete: bool, shared: bool) -> WriteBatch {
    let value = format!("{writer}:{n}");
    let mut batch = WriteBatch::new();
    for i in 0..OWN_KEYS {
        match delete {
            true => batch.delete(own_key(writer, i)),
            false => batch.put(own_key(writer, i), &value),
        };
    }
    if shared {
        for i in 0..SHARED_KEYS {
            batch.put(shared_key(i), &value);
        }
    }
    batch
}

/// The batch number in a value `writer:n` (`None` for no value).
pub fn number(value: &Option<ringkv::Bytes>) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(value.as_ref()?).unwrap();
    let (w, n) = text.split_once(':').unwrap();
    Some((w.parse().unwrap(), n.parse().unwrap()))
}

/// Checks what `db` holds against the writers' knowledge; returns the batch each
/// writer's keys show (the base of the next round).
pub fn check(db: &Db, writers: &[Writer], seed: u64, round: u64) -> Vec<u64> {
    let at = format!("seed {seed} round {round}");
    let mut shown = Vec::new();
    for (w, writer) in writers.iter().enumerate() {
        let values: Vec<_> = (0..OWN_KEYS)
            .map(|i| db.get(own_key(w, i)).unwrap())
            .collect();
        assert!(
            values.windows(2).all(|p| p[0] == p[1]),
            "{at}: writer {w}'s keys hold parts of different batches: {values:?}"
        );
        let n = match number(&values[0]) {
            Some((owner, n)) => {
                assert_eq!(owner, w, "{at}");
                n
            }
            // Deleted: the newest delete batch not after `tried`, or none.
            None => (writer.deletes.iter().copied())
                .filter(|&d| d <= writer.tried)
                .max()
                .unwrap_or(0),
        };
        assert!(
            n >= writer.acked && n <= writer.tried,
            "{at}: writer {w} shows batch {n}, acknowledged {}, tried {}",
            writer.acked,
            writer.tried
        );
        if values[0].is_none() && writer.acked > 0 {
            assert!(
                writer.deletes.contains(&n),
                "{at}: writer {w} lost batch {n}"
            );
        }
        shown.push(n);
    }
    let shared: Vec<_> = (0..SHARED_KEYS)
        .map(|i| db.get(shared_key(i)).unwrap())
        .collect();
    assert!(
        shared.windows(2).all(|p| p[0] == p[1]),
        "{at}: the shared keys hold parts of different batches: {shared:?}"
    );
    if let Some((w, n)) = number(&shared[0]) {
        assert!(
            shown[w] >= n,
            "{at}: the shared keys show writer {w}'s batch {n}, its own keys {}",
            shown[w]
        );
    }
    shown
}
