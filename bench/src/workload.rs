//! Workloads: the YCSB core workloads with their standard mixes and request
//! distributions, and the micro workloads (fill, read, overwrite, durable single writes).

use std::sync::atomic::{AtomicU64, Ordering};

/// One operation a workload asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Read,
    Update,
    Insert,
    ReadModifyWrite,
    /// Up to [`SCAN_LENGTH_MAX`] records in key order from an existing key (YCSB E).
    Scan,
    /// Puts of [`Workload::batch_keys`] existing keys as one atomic batch (ringkv's
    /// `Db::write`, RocksDB's `WriteBatch`, a fjall batch, one redb or LMDB write
    /// transaction).
    Batch,
}

/// YCSB E's longest scan (`maxscanlength`); lengths are uniform in 1..=this.
pub const SCAN_LENGTH_MAX: u64 = 100;

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::ReadModifyWrite => "rmw",
            Op::Scan => "scan",
            Op::Batch => "batch",
        }
    }
}

/// Which keys requests go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    Uniform,
    /// YCSB's scrambled zipfian, constant 0.99.
    Zipfian,
    /// The most recently inserted keys are the most popular.
    Latest,
}

/// A workload: its mix of operations and its request distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub name: &'static str,
    /// (operation, percent); percents add up to 100.
    pub mix: Vec<(Op, u32)>,
    pub distribution: Distribution,
    /// Keys per [`Op::Batch`] (0 for a workload without batches).
    pub batch_keys: usize,
}

impl Workload {
    /// Workloads by name: `ycsb-a` … `ycsb-f`, `fill-random`, `read-random`, `overwrite`,
    /// `sync-writes`, and `batch-1`, `batch-10`, `batch-100` (atomic batches of that
    /// many uniformly chosen existing keys). `ycsb-e` scans key ranges, which only engines
    /// with an ordered scan run (all of them now; ringkv merges its cores' pages).
    pub fn by_name(name: &str) -> Option<Workload> {
        use Distribution::*;
        use Op::*;
        let (name, mix, distribution): (&'static str, Vec<(Op, u32)>, Distribution) = match name {
            "ycsb-a" => ("ycsb-a", vec![(Read, 50), (Update, 50)], Zipfian),
            "ycsb-b" => ("ycsb-b", vec![(Read, 95), (Update, 5)], Zipfian),
            "ycsb-c" => ("ycsb-c", vec![(Read, 100)], Zipfian),
            "ycsb-d" => ("ycsb-d", vec![(Read, 95), (Insert, 5)], Latest),
            "ycsb-e" => ("ycsb-e", vec![(Scan, 95), (Insert, 5)], Zipfian),
            "ycsb-f" => ("ycsb-f", vec![(Read, 50), (ReadModifyWrite, 50)], Zipfian),
            "fill-random" => ("fill-random", vec![(Insert, 100)], Uniform),
            "read-random" => ("read-random", vec![(Read, 100)], Uniform),
            "overwrite" => ("overwrite", vec![(Update, 100)], Uniform),
            "sync-writes" => ("sync-writes", vec![(Update, 100)], Uniform),
            "batch-1" | "batch-10" | "batch-100" => {
                let name = match name {
                    "batch-1" => "batch-1",
                    "batch-10" => "batch-10",
                    _ => "batch-100",
                };
                (name, vec![(Batch, 100)], Uniform)
            }
            _ => return None,
        };
        let batch_keys = match name.strip_prefix("batch-") {
            Some(n) => n.parse().expect("a batch workload's name ends in its size"),
            None => 0,
        };
        Some(Workload {
            name,
            mix,
            distribution,
            batch_keys,
        })
    }

    /// Whether the workload scans key ranges.
    pub fn scans(&self) -> bool {
        self.mix.iter().any(|&(op, _)| op == Op::Scan)
    }

    /// The operation for a uniform random number.
    pub fn pick(&self, random: u64) -> Op {
        let mut at = (random % 100) as u32;
        for &(op, percent) in &self.mix {
            if at < percent {
                return op;
            }
            at -= percent;
        }
        unreachable!("percents add up to 100")
    }
}

/// xorshift64*: fast, good enough for load generation, seeded per thread.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// YCSB's zipfian generator over [0, n) (Gray et al., "Quickly generating billion-record
/// synthetic databases"), constant `theta`.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

pub const ZIPFIAN_CONSTANT: f64 = 0.99;

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    pub fn new(n: u64, theta: f64) -> Self {
        assert!(n > 1);
        let zeta_n = zeta(n, theta);
        let zeta_2 = zeta(2, theta);
        Self {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta_n,
            eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n),
        }
    }

    /// Rank 0 is the most popular.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let v = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.n - 1)
    }
}

/// FNV-1a of a number: scatters zipfian ranks over the key space (YCSB's scrambling).
pub fn fnv64(v: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for b in v.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Chooses the key of each request.
#[derive(Debug)]
pub struct KeyChooser {
    distribution: Distribution,
    zipf: Option<Zipfian>,
    /// Keys 0..inserted exist; inserts take the next number.
    pub inserted: AtomicU64,
}

impl KeyChooser {
    pub fn new(distribution: Distribution, loaded: u64) -> Self {
        let zipf = (distribution != Distribution::Uniform && loaded > 1)
            .then(|| Zipfian::new(loaded, ZIPFIAN_CONSTANT));
        Self {
            distribution,
            zipf,
            inserted: AtomicU64::new(loaded),
        }
    }

    pub fn existing(&self, rng: &mut Rng) -> u64 {
        let n = self.inserted.load(Ordering::Relaxed).max(1);
        match (&self.zipf, self.distribution) {
            (Some(z), Distribution::Zipfian) => fnv64(z.sample(rng)) % n,
            (Some(z), Distribution::Latest) => n - 1 - z.sample(rng).min(n - 1),
            _ => rng.next_u64() % n,
        }
    }

    pub fn next_insert(&self) -> u64 {
        self.inserted.fetch_add(1, Ordering::Relaxed)
    }
}

/// The key bytes of record number `i`: `user` + 16 hex digits of a scrambled number,
/// padded or cut to `len` (at least 8 bytes keep keys unique).
pub fn key(i: u64, len: usize) -> Vec<u8> {
    let mut k = format!("user{:016x}", fnv64(i)).into_bytes();
    k.resize(len.max(8), b'0');
    if len < 20 {
        k.truncate(len.max(8));
        k[..8].copy_from_slice(&fnv64(i).to_be_bytes());
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn mixes_give_their_ratios() {
        let mut rng = Rng::new(1);
        for name in ["ycsb-a", "ycsb-b", "ycsb-d", "ycsb-e", "ycsb-f"] {
            let w = Workload::by_name(name).unwrap();
            let mut counts: HashMap<Op, u32> = HashMap::new();
            for _ in 0..100_000 {
                *counts.entry(w.pick(rng.next_u64())).or_default() += 1;
            }
            for &(op, percent) in &w.mix {
                let got = f64::from(counts[&op]) / 1000.0;
                assert!(
                    (got - f64::from(percent)).abs() < 1.0,
                    "{name} {op:?}: {got} %"
                );
            }
        }
        assert!(Workload::by_name("ycsb-e").unwrap().scans());
        assert!(!Workload::by_name("ycsb-a").unwrap().scans());
        assert!(Workload::by_name("ycsb-g").is_none());
    }

    #[test]
    fn zipfian_is_skewed_like_zipf() {
        let n = 10_000;
        let z = Zipfian::new(n, ZIPFIAN_CONSTANT);
        let mut rng = Rng::new(7);
        let mut counts = vec![0u32; n as usize];
        let samples = 1_000_000;
        for _ in 0..samples {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        // P(rank 0) = 1 / zeta(n): about 10 % for n = 10,000 and theta 0.99.
        let p0 = f64::from(counts[0]) / samples as f64;
        let expected = 1.0 / zeta(n, ZIPFIAN_CONSTANT);
        assert!((p0 - expected).abs() < 0.01, "{p0} vs {expected}");
        // Rank 1 gets about 2^-0.99 of rank 0; the top 1 % of ranks get most requests.
        let ratio = f64::from(counts[1]) / f64::from(counts[0]);
        assert!((ratio - 0.5f64.powf(0.99)).abs() < 0.05, "{ratio}");
        let top: u32 = counts[..100].iter().sum();
        assert!(f64::from(top) / samples as f64 > 0.5);
        assert!(counts.iter().all(|&c| c < counts[0] + 1));
    }

    #[test]
    fn latest_prefers_new_keys_and_keys_are_unique() {
        let chooser = KeyChooser::new(Distribution::Latest, 1000);
        let mut rng = Rng::new(3);
        let recent = (0..10_000)
            .filter(|_| chooser.existing(&mut rng) >= 990)
            .count();
        assert!(recent > 3_000, "{recent}");
        let keys: HashSet<Vec<u8>> = (0..100_000).map(|i| key(i, 16)).collect();
        assert_eq!(keys.len(), 100_000);
        assert_eq!(key(5, 33).len(), 33);
        assert_eq!(key(5, 8).len(), 8);
    }
}
