//! The `kvlog` workload, after the table in the kv_log project's README: 2 million
//! records of 33-byte random keys and 750-byte random values written in one batch; 20
//! thousand transactions of 10 items; the space used after writing and after closing;
//! every record read in random order while warm, and again after reopening cold.
//!
//! As the seed's own benchmark batches its writes, every engine writes through its batch
//! API (`Engine::put_batch`: a RocksDB `WriteBatch`, a fjall batch, one redb or LMDB
//! write transaction, ringkv's `Db::write`): the batch in chunks of [`BATCH_RECORDS`]
//! followed by one flush, a transaction as one batch of 10 followed by a flush (durable
//! when it returns). Every engine's batch is atomic.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::runner::Engine;
use crate::workload::Rng;

/// The figures of the kvlog table.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KvlogSummary {
    pub engine: String,
    pub records: u64,
    pub batch_write_seconds: f64,
    pub transactions: u64,
    pub transactions_seconds: f64,
    pub disk_bytes_after_write: u64,
    pub disk_bytes_after_close: u64,
    /// What the engine reports holding in memory after writing and after the warm reads
    /// (ringkv; empty for the peers). Reported among the run's notes.
    #[serde(skip)]
    pub memory: Vec<String>,
    pub random_read_warm_seconds: f64,
    pub random_read_cold_seconds: f64,
}

pub const KEY_BYTES: usize = 33;
pub const VALUE_BYTES: usize = 750;
pub const TRANSACTION_ITEMS: u64 = 10;
/// Records per batch while writing the table: 2 M records in one batch would hold
/// 1.5 GB of keys and values at once, and ringkv's peak memory in a 300 k table was
/// 285 MiB with batches of 10,000 (each core's share journaled and framed at once),
/// against 172 MiB with single puts.
pub const BATCH_RECORDS: u64 = 1_000;

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Record `i`'s key: the same for a seed, so reads find what writes wrote.
fn record_key(i: u64) -> Vec<u8> {
    random_bytes(&mut Rng::new(i ^ 0x6b76_6c6f_6700), KEY_BYTES)
}

/// Runs the table. `open` opens (or reopens) the engine on the same directory; `evict`
/// runs between closing and the cold reopen (the rig drops the page cache there when it
/// can, so that "cold" is cold for engines that read through it too).
pub fn run(
    name: &str,
    records: u64,
    transactions: u64,
    open: &dyn Fn() -> Result<Box<dyn Engine>, String>,
    disk_bytes: &dyn Fn() -> u64,
    evict: &dyn Fn() -> Result<(), String>,
) -> Result<KvlogSummary, String> {
    let mut summary = KvlogSummary {
        engine: name.to_owned(),
        records,
        transactions,
        ..KvlogSummary::default()
    };
    let engine = open()?;
    let mut values = Rng::new(42);
    let mut entries = |from: u64, to: u64| -> Vec<(Vec<u8>, Vec<u8>)> {
        (from..to)
            .map(|i| (record_key(i), random_bytes(&mut values, VALUE_BYTES)))
            .collect()
    };
    let started = Instant::now();
    for from in (0..records).step_by(BATCH_RECORDS as usize) {
        engine.put_batch(&entries(from, records.min(from + BATCH_RECORDS)))?;
    }
    engine.flush()?;
    summary.batch_write_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for t in 0..transactions {
        let from = records + t * TRANSACTION_ITEMS;
        engine.put_batch(&entries(from, from + TRANSACTION_ITEMS))?;
        engine.flush()?;
    }
    summary.transactions_seconds = started.elapsed().as_secs_f64();
    summary.disk_bytes_after_write = disk_bytes();
    summary
        .memory
        .extend(engine.memory().map(|m| format!("after writing: {m}")));
    let total = records + transactions * TRANSACTION_ITEMS;
    let order: Vec<u64> = {
        let mut rng = Rng::new(7);
        let mut order: Vec<u64> = (0..total).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        order
    };
    let read_all = |engine: &dyn Engine| -> Result<f64, String> {
        let started = Instant::now();
        for &i in &order {
            if engine.get(&record_key(i))? != Some(VALUE_BYTES) {
                return Err(format!("{name}: record {i} is missing or wrong"));
            }
        }
        Ok(started.elapsed().as_secs_f64())
    };
    summary.random_read_warm_seconds = read_all(engine.as_ref())?;
    summary
        .memory
        .extend(engine.memory().map(|m| format!("after warm reads: {m}")));
    engine.close()?;
    summary.disk_bytes_after_close = disk_bytes();
    evict()?;
    let engine = open()?;
    summary.random_read_cold_seconds = read_all(engine.as_ref())?;
    engine.close()?;
    Ok(summary)
}
