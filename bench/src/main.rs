//! `ringkv-bench`: the benchmark rig. Without arguments it runs the README's main job: a
//! short real run of ringkv on a fresh directory under the current directory, the raw
//! device measured beside it, a report on the terminal and in files.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringkv::Durability;
use ringkv_bench::report::{self, OpSummary, Summary};
use ringkv_bench::runner::{self, Engine, Ringkv, RunConfig};
use ringkv_bench::workload::{Op, Workload};
use ringkv_bench::{device, peers};

#[derive(Parser, Debug)]
#[command(name = "ringkv-bench", version, about = "Benchmark ringkv (and peers) with HdrHistogram tail-latency reports.", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DurabilityArg {
    /// Acknowledge after fdatasync (group commit).
    Sync,
    /// Acknowledge from memory; written within 50 ms.
    Buffered,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load records, then run one or more workloads against each engine.
    Run(RunArgs),
    /// Measure only the raw device under a directory (io_uring, O_DIRECT).
    Device {
        /// A directory on the device to measure (not tmpfs).
        #[arg(long, default_value = "ringkv-bench-data")]
        dir: PathBuf,
        /// Size of the scratch file, MiB.
        #[arg(long, default_value_t = 256)]
        mib: u64,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Workloads, comma-separated: ycsb-a, ycsb-b, ycsb-c, ycsb-d, ycsb-f, fill-random,
    /// read-random, overwrite, sync-writes, kvlog.
    #[arg(long, default_value = "ycsb-a,ycsb-c", value_delimiter = ',')]
    workload: Vec<String>,
    /// Engines, comma-separated: ringkv, and rocksdb, fjall, redb when built with their
    /// cargo features.
    #[arg(long, default_value = "ringkv", value_delimiter = ',')]
    engines: Vec<String>,
    /// Records loaded before the workloads run.
    #[arg(long, default_value_t = 500_000)]
    keys: u64,
    #[arg(long, default_value_t = 16)]
    key_bytes: usize,
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    threads: u64,
    /// Measured seconds per workload.
    #[arg(long = "duration-s", default_value_t = 15)]
    duration_s: u64,
    /// Unmeasured seconds before each workload.
    #[arg(long = "warmup-s", default_value_t = 2)]
    warmup_s: u64,
    /// Open loop: total requests per second; latency counts from each request's
    /// intended start. Without it the run is closed-loop.
    #[arg(long)]
    target_rate: Option<f64>,
    #[arg(long, value_enum, default_value_t = DurabilityArg::Buffered)]
    durability: DurabilityArg,
    /// Memory budget: ringkv's read cache.
    #[arg(long, default_value_t = 64 << 20)]
    memory_bytes: u64,
    /// Data directory (a fresh subdirectory is made per engine).
    #[arg(long, default_value = "ringkv-bench-data")]
    dir: PathBuf,
    /// Where summary.json and the .hgrm files go.
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Records of the kvlog workload's batch (its transactions: a hundredth of that, of
    /// 10 items each).
    #[arg(long, default_value_t = 2_000_000)]
    kvlog_records: u64,
    /// Skip the raw-device measurement.
    #[arg(long)]
    no_device: bool,
    /// No progress bars (for scripts).
    #[arg(long)]
    quiet: bool,
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn progress(quiet: bool, len: u64, message: String) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{msg:<28} [{bar:40}] {percent:>3}% {elapsed}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

fn open_engine(
    name: &str,
    dir: &std::path::Path,
    args: &RunArgs,
) -> Result<Box<dyn Engine>, String> {
    let (durability, sync) = match args.durability {
        DurabilityArg::Sync => (Durability::Sync, true),
        DurabilityArg::Buffered => (Durability::Buffered, false),
    };
    match name {
        "ringkv" => Ok(Box::new(Ringkv::open(dir, durability, args.memory_bytes)?)),
        peer => peers::open(peer, dir, sync, args.memory_bytes),
    }
}

fn run(args: RunArgs) -> Result<(), String> {
    let stamp = unix_seconds();
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench-report-{stamp}")));
    let kvlog = args.workload.iter().any(|w| w == "kvlog");
    let workloads: Vec<Workload> = args
        .workload
        .iter()
        .filter(|w| *w != "kvlog")
        .map(|w| {
            Workload::by_name(w)
                .ok_or_else(|| format!("unknown workload {w} (ycsb-e needs range scans)"))
        })
        .collect::<Result<_, _>>()?;
    let config = RunConfig {
        keys: args.keys,
        key_bytes: args.key_bytes,
        value_bytes: args.value_bytes,
        threads: args.threads,
        duration: Duration::from_secs(args.duration_s),
        warmup: Duration::from_secs(args.warmup_s),
        target_rate: args.target_rate,
    };
    let mut summary = Summary::default();
    let mut histograms = Vec::new();
    let data_root = args.dir.join(format!("run-{stamp}"));
    if kvlog {
        for engine_name in &args.engines {
            let dir = data_root.join(format!("{engine_name}-kvlog"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let bar = progress(args.quiet, 0, format!("{engine_name}: kvlog"));
            bar.tick();
            let open = || open_engine(engine_name, &dir, &args);
            let size = || peers::dir_bytes(&dir);
            let records = args.kvlog_records;
            let result =
                ringkv_bench::kvlog::run(engine_name, records, records / 100, &open, &size)?;
            bar.finish_and_clear();
            summary.kvlog.push(result);
        }
    }
    for engine_name in args.engines.iter().filter(|_| !workloads.is_empty()) {
        let dir = data_root.join(engine_name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let engine = open_engine(engine_name, &dir, &args)?;
        let bar = progress(
            args.quiet,
            config.keys,
            format!("{engine_name}: load {} keys", config.keys),
        );
        let (fill, seconds) = runner::load(engine.as_ref(), &config, &bar)?;
        bar.finish_and_clear();
        summary.results.push(OpSummary::new(
            engine_name,
            "load",
            "insert",
            &fill,
            seconds,
        ));
        histograms.push((format!("{engine_name}-load-insert"), fill));
        for workload in &workloads {
            let total_ms = (config.warmup + config.duration).as_millis() as u64;
            let bar = progress(
                args.quiet,
                total_ms,
                format!("{engine_name}: {}", workload.name),
            );
            let result = runner::run(engine.as_ref(), workload, &config, &bar)?;
            bar.finish_and_clear();
            let mut ops: Vec<(Op, _)> = result.histograms.into_iter().collect();
            ops.sort_by_key(|(op, _)| op.name());
            for (op, h) in ops {
                summary.results.push(OpSummary::new(
                    engine_name,
                    workload.name,
                    op.name(),
                    &h,
                    result.seconds,
                ));
                histograms.push((format!("{engine_name}-{}-{}", workload.name, op.name()), h));
            }
            summary.notes.push(format!(
                "{engine_name} {}: operations per second, second by second: {:?}",
                workload.name, result.per_second
            ));
        }
        summary.notes.push(format!(
            "{engine_name}: {} MiB on disk after the run",
            engine.disk_bytes() >> 20
        ));
        engine.close()?;
    }
    if args.engines.iter().any(|e| e != "ringkv") {
        summary.notes.push(
            "peers use buffered I/O and the OS page cache, which this run does not limit: \
             with a dataset that fits in memory their reads measure memory, ringkv's (direct I/O) \
             its own cache and the device"
                .to_owned(),
        );
        eprintln!(
            "ringkv-bench: warning: {}",
            summary.notes.last().expect("just pushed")
        );
    }
    if !args.no_device {
        let bar = progress(args.quiet, 0, "raw device".to_owned());
        bar.tick();
        let device = device::measure(&args.dir, 256 << 20, Duration::from_secs(3))
            .map_err(|e| format!("measuring the device under {}: {e}", args.dir.display()))?;
        bar.finish_and_clear();
        let record_bytes = (args.key_bytes + args.value_bytes) as f64;
        for r in &mut summary.results {
            r.percent_of_device = Some(match r.op.as_str() {
                "read" | "rmw" => 100.0 * r.throughput_ops / device.random_read_4k_qd64_iops,
                _ => {
                    100.0 * r.throughput_ops * record_bytes
                        / (device.sequential_write_mib_s * (1 << 20) as f64)
                }
            });
        }
        summary.device = Some(device);
    }
    print!("{}", report::table(&summary.results));
    for k in &summary.kvlog {
        println!(
            "kvlog {:<8} {} records: batch {:.1} s; {} transactions {:.1} s; {} MiB after writing, \
             {} MiB after closing; random reads warm {:.1} s, cold {:.1} s",
            k.engine,
            k.records,
            k.batch_write_seconds,
            k.transactions,
            k.transactions_seconds,
            k.disk_bytes_after_write >> 20,
            k.disk_bytes_after_close >> 20,
            k.random_read_warm_seconds,
            k.random_read_cold_seconds
        );
    }
    if let Some(d) = &summary.device {
        println!(
            "device under {}: 4 KiB random read QD1 {:.0} IOPS (p50 {} us, p99 {} us), QD64 {:.0} IOPS; \
             sequential write {:.0} MiB/s; 4 KiB write+fdatasync {:.0}/s (p50 {} us, p99 {} us)",
            d.dir,
            d.random_read_4k_qd1_iops,
            d.random_read_4k_qd1_p50_us,
            d.random_read_4k_qd1_p99_us,
            d.random_read_4k_qd64_iops,
            d.sequential_write_mib_s,
            d.write_4k_fdatasync_ops,
            d.write_4k_fdatasync_p50_us,
            d.write_4k_fdatasync_p99_us
        );
    }
    report::write(&report_dir, &summary, &histograms)
        .map_err(|e| format!("{}: {e}", report_dir.display()))?;
    println!(
        "reports: {}/summary.json and {} .hgrm files",
        report_dir.display(),
        histograms.len()
    );
    std::fs::remove_dir_all(&data_root).map_err(|e| format!("{}: {e}", data_root.display()))?;
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Run(args)) => run(args),
        Some(Command::Device { dir, mib, seconds }) => {
            device::measure(&dir, mib << 20, Duration::from_secs(seconds))
                .map(|d| println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default()))
                .map_err(|e| format!("measuring the device under {}: {e}", dir.display()))
        }
        None => match Cli::try_parse_from(["ringkv-bench", "run"]) {
            Ok(Cli {
                command: Some(Command::Run(defaults)),
            }) => run(defaults),
            _ => Err("the default run's arguments do not parse".to_owned()),
        },
    };
    if let Err(e) = outcome {
        eprintln!("ringkv-bench: {e}");
        std::process::exit(1);
    }
}
