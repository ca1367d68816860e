//! Runs a workload against an engine: load, warm-up, measured phase, with one
//! HdrHistogram per thread and operation merged at the end, and optional open-loop
//! pacing whose latency counts from each request's intended start time (so queueing
//! behind a slow request is not hidden: coordinated omission is corrected).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringkv::{Db, Durability, Options};

use crate::workload::{KeyChooser, Op, Rng, Workload, key};

/// What the rig needs of an engine. Peers implement it behind cargo features.
pub trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// The value's length, if the key exists.
    fn get(&self, key: &[u8]) -> Result<Option<usize>, String>;
    fn flush(&self) -> Result<(), String>;
    /// Bytes the engine's files take on disk.
    fn disk_bytes(&self) -> u64;
    /// Makes everything durable and closes.
    fn close(self: Box<Self>) -> Result<(), String>;
}

/// ringkv through its public API.
#[derive(Debug)]
pub struct Ringkv {
    db: Db,
}

impl Ringkv {
    pub fn open(dir: &Path, durability: Durability, cache_bytes: u64) -> Result<Self, String> {
        let options = Options::default()
            .durability(durability)
            .cache_bytes(cache_bytes);
        let db = Db::open(dir, options).map_err(|e| e.to_string())?;
        Ok(Self { db })
    }
}

impl Engine for Ringkv {
    fn name(&self) -> &'static str {
        "ringkv"
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.db.put(key, value).map_err(|e| e.to_string())
    }
    fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
        self.db
            .get(key)
            .map(|v| v.map(|v| v.len()))
            .map_err(|e| e.to_string())
    }
    fn flush(&self) -> Result<(), String> {
        self.db.flush().map_err(|e| e.to_string())
    }
    fn disk_bytes(&self) -> u64 {
        self.db.stats().map(|s| s.disk_bytes).unwrap_or(0)
    }
    fn close(self: Box<Self>) -> Result<(), String> {
        self.db.close().map_err(|e| e.to_string())
    }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub keys: u64,
    pub key_bytes: usize,
    pub value_bytes: usize,
    pub threads: u64,
    pub duration: Duration,
    pub warmup: Duration,
    /// Total operations per second across threads (open loop); `None`: closed loop.
    pub target_rate: Option<f64>,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunResult {
    pub seconds: f64,
    pub histograms: HashMap<Op, Histogram<u64>>,
    /// Completed operations per second, second by second.
    pub per_second: Vec<u64>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Inserts records 0..keys from `threads` threads; returns the fill histogram and the
/// seconds it took.
pub fn load(
    engine: &dyn Engine,
    config: &RunConfig,
    progress: &indicatif::ProgressBar,
) -> Result<(Histogram<u64>, f64), String> {
    let next = AtomicU64::new(0);
    let started = Instant::now();
    let histograms = std::thread::scope(|s| {
        let workers: Vec<_> = (0..config.threads)
            .map(|_| {
                s.spawn(|| {
                    let mut h = new_histogram();
                    let value = vec![0x5a; config.value_bytes];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= config.keys {
                            return Ok::<_, String>(h);
                        }
                        let t = Instant::now();
                        engine.put(&key(i, config.key_bytes), &value)?;
                        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                        if i % 4096 == 0 {
                            progress.set_position(i);
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("loader thread"))
            .collect::<Vec<_>>()
    });
    let mut merged = new_histogram();
    for h in histograms {
        merged.add(h?).map_err(|e| e.to_string())?;
    }
    engine.flush()?;
    Ok((merged, started.elapsed().as_secs_f64()))
}

/// Runs `workload` for the warm-up and then the measured duration.
pub fn run(
    engine: &dyn Engine,
    workload: &Workload,
    config: &RunConfig,
    progress: &indicatif::ProgressBar,
) -> Result<RunResult, String> {
    let chooser = KeyChooser::new(workload.distribution, config.keys);
    let stop = AtomicBool::new(false);
    let measuring = AtomicBool::new(false);
    let total = config.warmup + config.duration;
    let seconds = total.as_secs() as usize + 2;
    let per_second: Vec<AtomicU64> = (0..seconds).map(|_| AtomicU64::new(0)).collect();
    let origin = Instant::now();
    let interval = config
        .target_rate
        .map(|rate| Duration::from_secs_f64(config.threads as f64 / rate));
    let results = std::thread::scope(|s| {
        let workers: Vec<_> = (0..config.threads)
            .map(|t| {
                let (chooser, stop, measuring, per_second) =
                    (&chooser, &stop, &measuring, &per_second);
                s.spawn(move || {
                    let mut rng = Rng::new(0x5eed ^ t);
                    let mut histograms: HashMap<Op, Histogram<u64>> = HashMap::new();
                    let value = vec![0xa5; config.value_bytes];
                    let mut intended = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let start = match interval {
                            Some(gap) => {
                                intended += gap;
                                if let Some(wait) = intended.checked_duration_since(Instant::now())
                                {
                                    std::thread::sleep(wait);
                                }
                                intended
                            }
                            None => Instant::now(),
                        };
                        let op = workload.pick(rng.next_u64());
                        match op {
                            Op::Read => drop(
                                engine.get(&key(chooser.existing(&mut rng), config.key_bytes))?,
                            ),
                            Op::Update => engine
                                .put(&key(chooser.existing(&mut rng), config.key_bytes), &value)?,
                            Op::Insert => {
                                engine.put(&key(chooser.next_insert(), config.key_bytes), &value)?
                            }
                            Op::ReadModifyWrite => {
                                let k = key(chooser.existing(&mut rng), config.key_bytes);
                                engine.get(&k)?;
                                engine.put(&k, &value)?;
                            }
                        }
                        let done = Instant::now();
                        if measuring.load(Ordering::Relaxed) {
                            let us = done.duration_since(start).as_micros().max(1) as u64;
                            let h = histograms.entry(op).or_insert_with(new_histogram);
                            let _ = h.record(us.min(h.high()));
                            let second = done.duration_since(origin).as_secs() as usize;
                            if let Some(slot) = per_second.get(second) {
                                slot.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok::<_, String>(histograms)
                })
            })
            .collect();
        std::thread::sleep(config.warmup);
        measuring.store(true, Ordering::Relaxed);
        let measure_started = Instant::now();
        while measure_started.elapsed() < config.duration {
            std::thread::sleep(Duration::from_millis(100).min(config.duration));
            progress.set_position(origin.elapsed().as_millis() as u64);
        }
        stop.store(true, Ordering::Relaxed);
        let measured = measure_started.elapsed().as_secs_f64();
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().expect("worker thread"))
            .collect();
        (measured, results)
    });
    let (measured, per_thread) = results;
    let mut histograms: HashMap<Op, Histogram<u64>> = HashMap::new();
    for thread in per_thread {
        for (op, h) in thread? {
            histograms
                .entry(op)
                .or_insert_with(new_histogram)
                .add(h)
                .map_err(|e| e.to_string())?;
        }
    }
    let skip = config.warmup.as_secs() as usize;
    let per_second = per_second
        .iter()
        .skip(skip)
        .take(config.duration.as_secs() as usize)
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    Ok(RunResult {
        seconds: measured,
        histograms,
        per_second,
    })
}

/// Shared handle so a closure can hold an engine.
pub type SharedEngine = Arc<dyn Engine>;
