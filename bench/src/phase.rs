//! One engine's phase: its kvlog table, then the load and every workload, run in a child
//! process of the rig (`ringkv-bench phase`, hidden). A child per engine means a memory
//! cgroup can hold exactly that engine (the child joins it before doing anything else),
//! and no engine's heap, threads or mappings linger into the next engine's phase.
//!
//! The parent writes a [`PhaseSpec`] as JSON, the child writes a [`PhaseResult`] back:
//! figures, notes, and histograms in HdrHistogram's compressed base64 encoding.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringkv::{Durability, Options};
use serde::{Deserialize, Serialize};

use crate::kvlog::KvlogSummary;
use crate::memory::{self, MemoryCgroup};
use crate::peers;
use crate::report::{self, OpSummary};
use crate::runner::{self, Engine, Ringkv, RunConfig};
use crate::workload::{Op, Workload};

/// What one engine's child process runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseSpec {
    pub engine: String,
    /// Workloads by name, run in order after the load (empty: no load either).
    pub workloads: Vec<String>,
    /// Run the kvlog table first, with this many records.
    pub kvlog_records: Option<u64>,
    pub keys: u64,
    pub key_bytes: usize,
    pub value_bytes: usize,
    pub threads: u64,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub target_rate: Option<f64>,
    /// Requests in flight per client thread.
    pub concurrency: u64,
    /// ringkv's clients run as tasks on its cores.
    pub clients_on_core: bool,
    /// Durability::Sync (each write durable when acknowledged) or Buffered.
    pub sync: bool,
    /// The engine's cache.
    pub memory_budget_bytes: u64,
    /// ringkv's read cache (its share of the memory the peers use as page cache).
    pub ringkv_cache_bytes: u64,
    /// ringkv's cores (0: its default, half the CPUs).
    pub ringkv_cores: usize,
    /// ringkv's other data directories (made fresh by the parent).
    pub ringkv_data_dirs: Vec<PathBuf>,
    /// This engine's data directory (made fresh by the parent).
    pub dir: PathBuf,
    /// Drop the page cache before the kvlog table's cold reopen.
    pub drop_caches: bool,
    pub quiet: bool,
}

/// A histogram of one workload and operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodedHistogram {
    pub workload: String,
    pub op: String,
    pub base64: String,
}

/// One second of one workload and operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodedInterval {
    pub workload: String,
    pub op: String,
    pub start_unix_s: f64,
    pub duration_s: f64,
    pub base64: String,
}

/// What the child measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PhaseResult {
    pub results: Vec<OpSummary>,
    pub kvlog: Option<KvlogSummary>,
    pub notes: Vec<String>,
    pub histograms: Vec<EncodedHistogram>,
    /// Operations per second, second by second, per workload.
    pub throughput: Vec<(String, Vec<u64>)>,
    pub intervals: Vec<EncodedInterval>,
}

/// A progress bar on stderr, hidden in quiet mode.
pub fn progress(quiet: bool, len: u64, message: String) -> ProgressBar {
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

/// Says whether `name` can run in this build, before any child is started.
pub fn check_engine(name: &str) -> Result<(), String> {
    if name == "ringkv" {
        return Ok(());
    }
    if !peers::PEERS.contains(&name) {
        return Err(format!(
            "unknown engine {name} (ringkv, {})",
            peers::PEERS.join(", ")
        ));
    }
    if !peers::built_in(name) {
        return Err(format!(
            "engine {name} is not built in: cargo run --release -p ringkv-bench --features {name} -- …"
        ));
    }
    Ok(())
}

fn open_engine(spec: &PhaseSpec, dir: &Path) -> Result<Box<dyn Engine>, String> {
    match spec.engine.as_str() {
        "ringkv" => {
            let durability = if spec.sync {
                Durability::Sync
            } else {
                Durability::Buffered
            };
            let options = Options::default()
                .durability(durability)
                .cache_bytes(spec.ringkv_cache_bytes)
                .cores(spec.ringkv_cores)
                .data_dirs(ringkv_data_dirs(spec, dir));
            Ok(Box::new(Ringkv::open(dir, options)?))
        }
        peer => peers::open(peer, dir, spec.sync, spec.memory_budget_bytes),
    }
}

/// ringkv's other data directories for the database in `dir` (`kvlog` or `workloads`
/// under the engine's directory): the same name under each of the spec's.
fn ringkv_data_dirs(spec: &PhaseSpec, dir: &Path) -> Vec<PathBuf> {
    let name = dir.file_name().unwrap_or_default();
    (spec.ringkv_data_dirs.iter())
        .map(|d| d.join(name))
        .collect()
}

/// A note of how many leaves ringkv placed in each of its data directories.
fn leaves_note(spec: &PhaseSpec, dir: &Path) -> String {
    let dirs = std::iter::once(dir.to_path_buf()).chain(ringkv_data_dirs(spec, dir));
    let counts: Vec<String> = dirs
        .map(|d| {
            let leaves = std::fs::read_dir(d.join("substores")).map_or(0, |e| e.count());
            format!("{} ({leaves})", d.display())
        })
        .collect();
    format!("ringkv: leaves per data directory: {}", counts.join(", "))
}

fn make_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Runs the phase in this process (the child's side).
pub fn run(spec: &PhaseSpec) -> Result<PhaseResult, String> {
    let mut out = PhaseResult::default();
    let name = spec.engine.as_str();
    if let Some(records) = spec.kvlog_records {
        let dir = spec.dir.join("kvlog");
        make_dir(&dir)?;
        let bar = progress(spec.quiet, 0, format!("{name}: kvlog"));
        bar.enable_steady_tick(Duration::from_millis(500));
        let open = || open_engine(spec, &dir);
        let size = || peers::dir_bytes(&dir);
        let evict = || {
            if spec.drop_caches {
                memory::drop_caches()
            } else {
                Ok(())
            }
        };
        let result = crate::kvlog::run(name, records, records / 100, &open, &size, &evict)?;
        out.notes
            .extend(result.memory.iter().map(|m| format!("{name} kvlog, {m}")));
        bar.finish_and_clear();
        out.kvlog = Some(result);
    }
    if spec.workloads.is_empty() {
        return Ok(out);
    }
    let workloads: Vec<Workload> = spec
        .workloads
        .iter()
        .map(|w| Workload::by_name(w).ok_or_else(|| format!("unknown workload {w}")))
        .collect::<Result<_, _>>()?;
    let config = RunConfig {
        keys: spec.keys,
        key_bytes: spec.key_bytes,
        value_bytes: spec.value_bytes,
        threads: spec.threads,
        duration: Duration::from_secs(spec.duration_s),
        warmup: Duration::from_secs(spec.warmup_s),
        target_rate: spec.target_rate,
        concurrency: spec.concurrency,
        on_core: spec.clients_on_core,
    };
    let dir = spec.dir.join("workloads");
    make_dir(&dir)?;
    let engine = open_engine(spec, &dir)?;
    let bar = progress(
        spec.quiet,
        config.keys,
        format!("{name}: load {} keys", config.keys),
    );
    let (fill, seconds) = runner::load(engine.as_ref(), &config, &bar)?;
    bar.finish_and_clear();
    out.results
        .push(OpSummary::new(name, "load", "insert", &fill, seconds));
    out.histograms.push(EncodedHistogram {
        workload: "load".to_owned(),
        op: "insert".to_owned(),
        base64: report::to_base64(&fill),
    });
    for workload in &workloads {
        if workload.scans()
            && engine
                .scan(&crate::workload::key(0, spec.key_bytes), 1)?
                .is_none()
        {
            out.notes.push(format!(
                "{name} {}: skipped: {name} has no ordered scan",
                workload.name
            ));
            continue;
        }
        let total_ms = (config.warmup + config.duration).as_millis() as u64;
        let bar = progress(spec.quiet, total_ms, format!("{name}: {}", workload.name));
        let result = runner::run(engine.as_ref(), workload, &config, &bar)?;
        bar.finish_and_clear();
        let mut ops: Vec<(Op, _)> = result.histograms.into_iter().collect();
        ops.sort_by_key(|(op, _)| op.name());
        for (op, h) in ops {
            out.results.push(OpSummary::new(
                name,
                workload.name,
                op.name(),
                &h,
                result.seconds,
            ));
            out.histograms.push(EncodedHistogram {
                workload: workload.name.to_owned(),
                op: op.name().to_owned(),
                base64: report::to_base64(&h),
            });
        }
        for (second, op, h) in &result.intervals {
            out.intervals.push(EncodedInterval {
                workload: workload.name.to_owned(),
                op: op.name().to_owned(),
                start_unix_s: result.started_unix_s + *second as f64,
                duration_s: 1.0,
                base64: report::to_base64(h),
            });
        }
        out.notes.push(format!(
            "{name} {}: operations per second, second by second: {:?}",
            workload.name, result.per_second
        ));
        out.throughput
            .push((workload.name.to_owned(), result.per_second));
    }
    out.notes.push(format!(
        "{name}: {} MiB on disk after the run",
        engine.disk_bytes() >> 20
    ));
    if let Some(memory) = engine.memory() {
        out.notes
            .push(format!("{name} in memory after the run: {memory}"));
    }
    if !spec.ringkv_data_dirs.is_empty() && name == "ringkv" {
        out.notes.push(leaves_note(spec, &dir));
    }
    engine.close()?;
    Ok(out)
}

/// The child's entry point: joins the cgroup (first thing), runs, writes the result.
pub fn child_main(spec: &Path, result: &Path, cgroup_procs: Option<&Path>) -> Result<(), String> {
    if let Some(procs) = cgroup_procs {
        memory::join(procs)?;
    }
    let text = std::fs::read_to_string(spec).map_err(|e| format!("{}: {e}", spec.display()))?;
    let spec: PhaseSpec = serde_json::from_str(&text).map_err(|e| format!("phase spec: {e}"))?;
    let out = run(&spec)?;
    let json = serde_json::to_string(&out).map_err(|e| e.to_string())?;
    std::fs::write(result, json).map_err(|e| format!("{}: {e}", result.display()))
}

/// Runs `spec` in a child process of this binary, in `cgroup` if given; `work` holds the
/// exchanged files.
pub fn spawn(
    spec: &PhaseSpec,
    work: &Path,
    cgroup: Option<&MemoryCgroup>,
) -> Result<PhaseResult, String> {
    let spec_file = work.join(format!("{}.spec.json", spec.engine));
    let result_file = work.join(format!("{}.result.json", spec.engine));
    let json = serde_json::to_string_pretty(spec).map_err(|e| e.to_string())?;
    std::fs::write(&spec_file, json).map_err(|e| format!("{}: {e}", spec_file.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let mut command = Command::new(exe);
    command
        .arg("phase")
        .arg("--spec")
        .arg(&spec_file)
        .arg("--result")
        .arg(&result_file);
    if let Some(cgroup) = cgroup {
        command.arg("--cgroup-procs").arg(cgroup.procs_file());
    }
    let status = command
        .status()
        .map_err(|e| format!("starting the {} phase: {e}", spec.engine))?;
    if !status.success() {
        use std::os::unix::process::ExitStatusExt as _;
        let how = match (status.code(), status.signal()) {
            (_, Some(9)) if cgroup.is_some() => {
                "was killed (signal 9: most likely out of memory in its cgroup)".to_owned()
            }
            (_, Some(signal)) => format!("was killed by signal {signal}"),
            (code, None) => format!("failed (exit code {})", code.unwrap_or(-1)),
        };
        return Err(format!("the {} phase {how}", spec.engine));
    }
    let text = std::fs::read_to_string(&result_file)
        .map_err(|e| format!("{}: {e}", result_file.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} phase result: {e}", spec.engine))
}
