//! `ringkv-bench`: the benchmark rig. Without arguments it runs the README's main job: a
//! short real run of ringkv on a fresh directory under the current directory, the raw
//! device measured beside it, a report on the terminal and in files.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use ringkv_bench::memory::{self, MemoryCgroup};
use ringkv_bench::phase::{self, PhaseSpec};
use ringkv_bench::plot::{self, PlotData};
use ringkv_bench::report::{self, Interval, Summary};
use ringkv_bench::{device, kvlog};

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

/// Where ringkv's clients run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ClientsArg {
    /// Client threads of the rig's own, calling through `Db`.
    Threads,
    /// Tasks on ringkv's own cores (`Db::spawn_on_core`, calling through `Local`), as a
    /// thread-per-core service runs: threads × concurrency of them.
    OnCore,
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
    /// One engine's phase, run by `run` in a child process (internal).
    #[command(hide = true)]
    Phase {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        result: PathBuf,
        /// The `cgroup.procs` file of the memory cgroup to join first.
        #[arg(long)]
        cgroup_procs: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Workloads, comma-separated: ycsb-a, ycsb-b, ycsb-c, ycsb-d, ycsb-f, fill-random,
    /// read-random, overwrite, sync-writes, kvlog.
    #[arg(long, default_value = "ycsb-a,ycsb-c", value_delimiter = ',')]
    workload: Vec<String>,
    /// Engines, comma-separated: ringkv, and rocksdb, fjall, redb, lmdb when built with
    /// their cargo features. Each runs in a child process of its own, one after the other.
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
    /// Requests in flight per client thread (closed loop): ringkv's clients keep them
    /// in flight through its async API, a peer gets as many blocking threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// Where ringkv's clients run (the peers' always run on threads).
    #[arg(long, value_enum, default_value_t = ClientsArg::Threads)]
    clients: ClientsArg,
    #[arg(long, value_enum, default_value_t = DurabilityArg::Buffered)]
    durability: DurabilityArg,
    /// Memory budget: every engine's cache (ringkv's read cache, the peers' block or page
    /// caches). As root, each engine also runs in a memory cgroup limited to the budget
    /// plus --memory-headroom-bytes, and the page cache is dropped before each engine.
    #[arg(long, alias = "memory-bytes", default_value_t = 64 << 20)]
    memory_budget_bytes: u64,
    /// What an engine may use beyond its cache inside its cgroup: indexes, memtables,
    /// write buffers, the rig's own buffers.
    #[arg(long, default_value_t = 256 << 20)]
    memory_headroom_bytes: u64,
    /// ringkv's read cache, in place of the rig's choice (its cgroup limit less an
    /// estimate of its other memory): to measure what ringkv needs beside a given cache.
    #[arg(long)]
    ringkv_cache_bytes: Option<u64>,
    /// ringkv's cores (executor threads); 0 for its default, half the CPUs.
    #[arg(long, default_value_t = 0)]
    ringkv_cores: usize,
    /// Run the engines without a memory cgroup even where one could be made.
    #[arg(long)]
    no_cgroup: bool,
    /// Do not drop the page cache between phases even as root.
    #[arg(long)]
    no_drop_caches: bool,
    /// Data directory (a fresh subdirectory is made per engine).
    #[arg(long, default_value = "ringkv-bench-data")]
    dir: PathBuf,
    /// Another data directory for ringkv, on another device (repeat for more): its
    /// leaves are spread over --dir and these (`Options::data_dirs`). The peers use
    /// --dir only. The raw-device baseline measures each directory.
    #[arg(long = "data-dir")]
    data_dirs: Vec<PathBuf>,
    /// Where summary.json, the .hgrm files, the interval log and the plots go.
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Records of the kvlog workload's batch (its transactions: a hundredth of that, of
    /// 10 items each).
    #[arg(long, default_value_t = 2_000_000)]
    kvlog_records: u64,
    /// Skip the raw-device measurement.
    #[arg(long)]
    no_device: bool,
    /// Size of the raw-device measurement's scratch file, MiB.
    #[arg(long, default_value_t = 256)]
    device_mib: u64,
    /// Seconds per raw-device measurement (three of them per directory).
    #[arg(long, default_value_t = 3)]
    device_seconds: u64,
    /// No progress bars (for scripts).
    #[arg(long)]
    quiet: bool,
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The records the kvlog table writes: its batch and its transactions' items.
fn kvlog_records(args: &RunArgs) -> u64 {
    args.kvlog_records + args.kvlog_records / 100 * kvlog::TRANSACTION_ITEMS
}

/// The records of the largest data set of the run (`--keys` counts only when a
/// workload besides the kvlog table runs).
fn records(args: &RunArgs) -> u64 {
    let workloads = match args.workload.iter().any(|w| w != "kvlog") {
        true => args.keys,
        false => 0,
    };
    match args.workload.iter().any(|w| w == "kvlog") {
        true => workloads.max(kvlog_records(args)),
        false => workloads,
    }
}

/// The longest key of the run's data sets.
fn key_bytes(args: &RunArgs) -> u64 {
    let workloads = match args.workload.iter().any(|w| w != "kvlog") {
        true => args.key_bytes,
        false => 0,
    };
    match args.workload.iter().any(|w| w == "kvlog") {
        true => workloads.max(kvlog::KEY_BYTES) as u64,
        false => workloads as u64,
    }
}

/// The bytes the largest data set of the run takes (keys and values only).
fn dataset_bytes(args: &RunArgs, has_workloads: bool) -> u64 {
    let workloads = if has_workloads {
        args.keys * (args.key_bytes + args.value_bytes) as u64
    } else {
        0
    };
    let kvlog = if args.workload.iter().any(|w| w == "kvlog") {
        kvlog_records(args) * (kvlog::KEY_BYTES + kvlog::VALUE_BYTES) as u64
    } else {
        0
    };
    workloads.max(kvlog)
}

/// Everything the engines' phases measured, merged.
#[derive(Default)]
struct Collected {
    summary: Summary,
    plots: PlotData,
    intervals: Vec<Interval>,
    failures: Vec<String>,
}

fn collect(into: &mut Collected, engine: &str, result: phase::PhaseResult) -> Result<(), String> {
    into.summary.results.extend(result.results);
    into.summary.kvlog.extend(result.kvlog);
    for note in result.notes.iter().filter(|n| n.contains(": skipped: ")) {
        eprintln!("ringkv-bench: {note}");
    }
    into.summary.notes.extend(result.notes);
    for h in result.histograms {
        let histogram = report::from_base64(&h.base64)?;
        into.plots
            .histograms
            .push((engine.to_owned(), h.workload, h.op, histogram));
    }
    for (workload, per_second) in result.throughput {
        into.plots
            .throughput
            .push((engine.to_owned(), workload, per_second));
    }
    for i in result.intervals {
        into.intervals.push(Interval {
            tag: format!("{engine}/{}/{}", i.workload, i.op),
            start_unix_s: i.start_unix_s,
            duration_s: i.duration_s,
            histogram: report::from_base64(&i.base64)?,
        });
    }
    Ok(())
}

/// Runs each engine's phase in its own child process (and cgroup where possible).
/// `data_roots` holds this run's fresh directory under --dir, then one under each
/// --data-dir.
fn run_engines(
    args: &RunArgs,
    workloads: &[String],
    plan: &memory::Plan,
    data_roots: &[PathBuf],
    into: &mut Collected,
) -> Result<(), String> {
    let kvlog = args.workload.iter().any(|w| w == "kvlog");
    for engine in &args.engines {
        let dir = data_roots[0].join(engine);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ringkv_data_dirs = match engine.as_str() {
            "ringkv" => data_roots[1..].iter().map(|r| r.join(engine)).collect(),
            _ => Vec::new(),
        };
        if plan.drop_caches {
            memory::drop_caches()?;
        }
        let cgroup = match (&plan.controller, plan.cgroup_limit_bytes) {
            (Some(controller), Some(limit)) => {
                let name = format!("ringkv-bench-{}-{engine}", std::process::id());
                Some(MemoryCgroup::create(controller, &name, limit)?)
            }
            _ => None,
        };
        let spec = PhaseSpec {
            engine: engine.clone(),
            workloads: workloads.to_vec(),
            kvlog_records: kvlog.then_some(args.kvlog_records),
            keys: args.keys,
            key_bytes: args.key_bytes,
            value_bytes: args.value_bytes,
            threads: args.threads,
            duration_s: args.duration_s,
            warmup_s: args.warmup_s,
            target_rate: args.target_rate,
            concurrency: args.concurrency,
            clients_on_core: args.clients == ClientsArg::OnCore,
            sync: matches!(args.durability, DurabilityArg::Sync),
            memory_budget_bytes: args.memory_budget_bytes,
            ringkv_cache_bytes: (args.ringkv_cache_bytes).unwrap_or_else(|| {
                memory::ringkv_cache_bytes(plan, records(args), key_bytes(args))
            }),
            ringkv_cores: args.ringkv_cores,
            ringkv_data_dirs,
            dir,
            drop_caches: plan.drop_caches,
            quiet: args.quiet,
        };
        match phase::spawn(&spec, &data_roots[0], cgroup.as_ref()) {
            Ok(result) => collect(into, engine, result)?,
            Err(e) => {
                eprintln!("ringkv-bench: {e}; going on with the other engines");
                into.failures.push(e);
            }
        }
        if engine == "ringkv" {
            let why = match args.ringkv_cache_bytes {
                Some(_) => "set by --ringkv-cache-bytes",
                None => {
                    "its cgroup limit less an estimate of its other memory, as the peers' page \
                     cache fills what theirs leaves; at least the budget"
                }
            };
            into.summary.notes.push(format!(
                "ringkv: read cache {} MiB ({why})",
                spec.ringkv_cache_bytes >> 20
            ));
        }
        if let Some(cgroup) = &cgroup {
            into.summary.notes.push(format!(
                "{engine}: ran in a memory cgroup limited to {} MiB; peak charged (heap and page cache) {} MiB",
                cgroup.limit_bytes().unwrap_or(0) >> 20,
                cgroup.peak_bytes().unwrap_or(0) >> 20
            ));
        }
    }
    Ok(())
}

fn print_report(summary: &Summary) {
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
    for d in &summary.devices {
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
}

fn write_reports(report_dir: &Path, collected: &Collected) -> Result<usize, String> {
    let in_dir = |e: String| format!("{}: {e}", report_dir.display());
    let histograms: Vec<(String, hdrhistogram::Histogram<u64>)> = collected
        .plots
        .histograms
        .iter()
        .map(|(engine, workload, op, h)| (format!("{engine}-{workload}-{op}"), h.clone()))
        .collect();
    report::write(report_dir, &collected.summary, &histograms)
        .map_err(|e| in_dir(e.to_string()))?;
    if !collected.intervals.is_empty() {
        let log = report::interval_log(&collected.intervals)?;
        std::fs::write(report_dir.join("latency.hlog"), log).map_err(|e| in_dir(e.to_string()))?;
    }
    let plots = plot::write_all(report_dir, &collected.plots)?;
    Ok(plots.len())
}

/// Measures the raw device under each of `dirs` (--dir first) and sets each result's
/// percentage of what its engine's devices do: ringkv's are all of them (each file
/// system once: directories on one device share it), a peer's the first.
fn measure_devices(args: &RunArgs, dirs: &[&PathBuf], summary: &mut Summary) -> Result<(), String> {
    let mut devices = Vec::new();
    let mut file_systems = Vec::new();
    for dir in dirs {
        let bar = phase::progress(args.quiet, 0, format!("raw device under {}", dir.display()));
        bar.tick();
        let phase = Duration::from_secs(args.device_seconds);
        let device = device::measure(dir, args.device_mib << 20, phase)
            .map_err(|e| format!("measuring the device under {}: {e}", dir.display()))?;
        bar.finish_and_clear();
        let file_system = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !file_systems.contains(&file_system.dev()) {
            file_systems.push(file_system.dev());
            devices.push(device.clone());
        }
        summary.devices.push(device);
    }
    let record_bytes = (args.key_bytes + args.value_bytes) as f64;
    for r in &mut summary.results {
        let used = match r.engine.as_str() {
            "ringkv" => &devices[..],
            _ => &devices[..1],
        };
        r.percent_of_device = Some(match r.op.as_str() {
            "read" | "rmw" => {
                let iops: f64 = used.iter().map(|d| d.random_read_4k_qd64_iops).sum();
                100.0 * r.throughput_ops / iops
            }
            _ => {
                let mib_s: f64 = used.iter().map(|d| d.sequential_write_mib_s).sum();
                100.0 * r.throughput_ops * record_bytes / (mib_s * (1 << 20) as f64)
            }
        });
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<(), String> {
    if args.concurrency > 1 && args.target_rate.is_some() {
        return Err("--target-rate (open loop) and --concurrency above 1 do not mix".into());
    }
    if args.clients == ClientsArg::OnCore && args.target_rate.is_some() {
        return Err("--target-rate (open loop) and --clients on-core do not mix".into());
    }
    let stamp = unix_seconds();
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench-report-{stamp}")));
    let workloads: Vec<String> = args
        .workload
        .iter()
        .filter(|w| *w != "kvlog")
        .cloned()
        .collect();
    for w in &workloads {
        if ringkv_bench::workload::Workload::by_name(w).is_none() {
            return Err(format!("unknown workload {w}"));
        }
    }
    for engine in &args.engines {
        phase::check_engine(engine)?;
    }
    let mut facts = memory::Facts::gather();
    if args.no_cgroup {
        facts.controller = Err("--no-cgroup".to_owned());
    }
    let mut plan = memory::plan(
        &facts,
        args.memory_budget_bytes,
        args.memory_headroom_bytes,
        dataset_bytes(&args, !workloads.is_empty()),
    );
    plan.drop_caches &= !args.no_drop_caches;
    let mut collected = Collected::default();
    for warning in &plan.warnings {
        eprintln!("ringkv-bench: warning: {warning}");
        collected.summary.notes.push(format!("warning: {warning}"));
    }
    if args.clients == ClientsArg::OnCore {
        collected.summary.notes.push(format!(
            "clients: ringkv's are {} tasks on its own cores (spawn_on_core, one request in \
             flight each); each peer's are {} blocking threads",
            args.threads * args.concurrency,
            args.threads * args.concurrency
        ));
    } else if args.concurrency > 1 {
        collected.summary.notes.push(format!(
            "clients: {} threads, each with {} requests in flight (ringkv through its async \
             API; each peer through {} blocking threads in all)",
            args.threads,
            args.concurrency,
            args.threads * args.concurrency
        ));
    }
    let dirs: Vec<&PathBuf> = std::iter::once(&args.dir).chain(&args.data_dirs).collect();
    let data_roots: Vec<PathBuf> = (dirs.iter())
        .map(|d| d.join(format!("run-{stamp}")))
        .collect();
    for root in &data_roots {
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    }
    run_engines(&args, &workloads, &plan, &data_roots, &mut collected)?;
    if !args.no_device {
        measure_devices(&args, &dirs, &mut collected.summary)?;
    }
    print_report(&collected.summary);
    let plots = write_reports(&report_dir, &collected)?;
    let log = if collected.intervals.is_empty() {
        ""
    } else {
        ", latency.hlog (interval log)"
    };
    println!(
        "reports: {}/summary.json, {} .hgrm files{log}, {plots} plots (SVG and PNG)",
        report_dir.display(),
        collected.plots.histograms.len()
    );
    for root in &data_roots {
        std::fs::remove_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    }
    if collected.failures.is_empty() {
        Ok(())
    } else {
        Err(collected.failures.join("; "))
    }
}

fn main() {
    // For every engine alike (the phases run in children of this binary): see
    // ringkv::tune_malloc.
    ringkv::tune_malloc();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Run(args)) => run(args),
        Some(Command::Phase {
            spec,
            result,
            cgroup_procs,
        }) => phase::child_main(&spec, &result, cgroup_procs.as_deref()),
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
