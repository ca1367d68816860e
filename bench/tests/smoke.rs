//! A few seconds of the real binary: ringkv only, YCSB A, reports written and readable:
//! the interval log reads back with the hdrhistogram crate's own parser and its
//! intervals add up to the run's totals, the plots exist, and (where the run could make
//! one, as root) no memory cgroup is left behind.

use std::path::Path;
use std::process::Command;

/// Two seconds of `workload` against ringkv alone, 5,000 keys of 100 bytes, 2 threads;
/// data under `dir/data`, reports in `report`; the raw device not measured.
fn short_run(workload: &str, dir: &Path, report: &Path) -> Command {
    let mut rig = short_run_and_device(workload, dir, report);
    rig.arg("--no-device");
    rig
}

/// Runs `rig`, which must succeed, and reads the summary it wrote into `report`.
fn summary_of(rig: &mut Command, report: &Path) -> serde_json::Value {
    let out = rig.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(report.join("summary.json")).unwrap();
    serde_json::from_str(&summary).unwrap()
}

/// [`short_run`] with the raw device measured.
fn short_run_and_device(workload: &str, dir: &Path, report: &Path) -> Command {
    let mut rig = Command::new(env!("CARGO_BIN_EXE_ringkv-bench"));
    rig.args(["run", "--workload", workload, "--engines", "ringkv"])
        .args(["--keys", "5000", "--value-bytes", "100", "--threads", "2"])
        .args(["--duration-s", "2", "--warmup-s", "0", "--quiet"])
        .arg("--dir")
        .arg(dir.join("data"))
        .arg("--report-dir")
        .arg(report);
    rig
}

#[test]
fn a_short_run_writes_a_summary_with_the_fixed_fields() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let report = dir.path().join("report");
    let out = short_run("ycsb-a,ycsb-e", dir.path(), &report)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = out.id();
    let out = out.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ycsb-a"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("summary.json")).unwrap())
            .unwrap();
    let results = summary["results"].as_array().unwrap();
    // YCSB E scans key ranges: ringkv merges its cores' ordered pages.
    assert!(
        results
            .iter()
            .any(|r| r["workload"] == "ycsb-e" && r["op"] == "scan"),
        "{results:?}"
    );
    let ops: Vec<&str> = results.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert!(
        ops.contains(&"read") && ops.contains(&"update") && ops.contains(&"insert"),
        "{ops:?}"
    );
    for r in results {
        assert_eq!(r["engine"], "ringkv");
        assert!(r["throughput_ops"].as_f64().unwrap() > 0.0);
        assert!(r["p50_us"].as_u64().unwrap() <= r["p99_us"].as_u64().unwrap());
        assert!(r["p999_us"].as_u64().unwrap() <= r["max_us"].as_u64().unwrap());
    }
    let hgrm = std::fs::read_to_string(report.join("ringkv-ycsb-a-read.hgrm")).unwrap();
    let rows = ringkv_bench::report::parse_hgrm(&hgrm);
    assert!(rows.last().unwrap().1 == 1.0);
    // The interval log: one histogram per second and operation, adding up to the totals.
    let log = std::fs::read(report.join("latency.hlog")).unwrap();
    let intervals = ringkv_bench::report::read_interval_log(&log).unwrap();
    assert!(intervals.len() >= 2 * 3, "{} intervals", intervals.len());
    for r in results.iter().filter(|r| r["workload"] == "ycsb-a") {
        let tag = format!("ringkv/ycsb-a/{}", r["op"].as_str().unwrap());
        let counted: u64 = intervals
            .iter()
            .filter(|i| i.tag == tag)
            .map(|i| i.histogram.len())
            .sum();
        assert_eq!(counted, r["operations"].as_u64().unwrap(), "{tag}");
    }
    assert!(
        intervals
            .iter()
            .all(|i| i.start_unix_s > 1.6e9 && i.duration_s == 1.0)
    );
    // The plots, as SVG and PNG.
    for stem in [
        "latency-ycsb-a-read",
        "latency-ycsb-a-update",
        "throughput-ycsb-a",
    ] {
        for ext in ["svg", "png"] {
            let path = report.join(format!("{stem}.{ext}"));
            assert!(
                std::fs::metadata(&path).unwrap().len() > 1000,
                "{}",
                path.display()
            );
        }
    }
    // No memory cgroup of this run is left (they are named after the rig's pid).
    if let Ok(controller) = ringkv_bench::memory::find_controller() {
        let prefix = format!("ringkv-bench-{pid}-");
        let left: Vec<_> = std::fs::read_dir(&controller.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    // The data directory of the run is removed afterwards.
    assert_eq!(
        std::fs::read_dir(dir.path().join("data")).unwrap().count(),
        0
    );
}

#[test]
fn unknown_engines_and_workloads_are_clear_errors() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for args in [["--engines", "rocksdb"], ["--workload", "ycsb-g"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_ringkv-bench"))
            .arg("run")
            .args(args)
            .args([
                "--keys",
                "10",
                "--duration-s",
                "1",
                "--no-device",
                "--quiet",
            ])
            .arg("--dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("ringkv-bench: "), "{stderr}");
    }
}

/// Runs `workload` with `extra` arguments and checks that it measured reads and updates
/// and that its summary has a note starting with `note`.
fn run_measuring_reads_and_updates(workload: &str, extra: &[&str], note: &str) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let report = dir.path().join("report");
    let summary = summary_of(
        short_run(workload, dir.path(), &report).args(extra),
        &report,
    );
    let ops: Vec<&str> = (summary["results"].as_array().unwrap().iter())
        .filter(|r| r["workload"] == workload && r["throughput_ops"].as_f64().unwrap() > 0.0)
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert!(ops.contains(&"read") && ops.contains(&"update"), "{ops:?}");
    let notes = summary["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().starts_with(note)),
        "{notes:?}"
    );
}

/// `--concurrency`: ringkv's clients keep that many requests in flight through its
/// async API; the run says so, and open loop with it is refused.
#[test]
fn a_run_with_requests_in_flight_through_the_async_api() {
    run_measuring_reads_and_updates(
        "ycsb-b",
        &["--concurrency", "8"],
        "clients: 2 threads, each with 8 requests in flight",
    );
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let report = dir.path().join("report");
    let open_loop = (short_run("ycsb-b", dir.path(), &report))
        .args(["--concurrency", "8", "--target-rate", "1000"])
        .output()
        .unwrap();
    assert!(!open_loop.status.success());
    assert!(
        String::from_utf8_lossy(&open_loop.stderr).contains("do not mix"),
        "{}",
        String::from_utf8_lossy(&open_loop.stderr)
    );
}

/// `--clients on-core`: ringkv's clients run as tasks on its own cores; the run
/// measures reads and updates and says where the clients ran.
#[test]
fn a_run_with_clients_on_ringkvs_cores() {
    run_measuring_reads_and_updates(
        "ycsb-a",
        &["--clients", "on-core", "--concurrency", "4"],
        "clients: ringkv's are 8 tasks on its own cores",
    );
}

#[test]
fn a_second_data_directory_holds_leaves_and_has_its_device_measured() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (report, second) = (dir.path().join("report"), dir.path().join("second"));
    let mut rig = short_run_and_device("ycsb-c", dir.path(), &report);
    rig.args(["--device-mib", "8", "--device-seconds", "1"])
        .arg("--data-dir")
        .arg(&second);
    let summary = summary_of(&mut rig, &report);
    let devices = summary["devices"].as_array().unwrap();
    let measured: Vec<&str> = devices.iter().map(|d| d["dir"].as_str().unwrap()).collect();
    assert_eq!(
        measured,
        [dir.path().join("data"), second.clone()].map(|d| d.display().to_string())
    );
    assert!(
        devices
            .iter()
            .all(|d| d["random_read_4k_qd1_iops"].as_f64().unwrap() > 0.0)
    );
    // Both directories are on one file system here: counted once, so ringkv's
    // percentage is of the same device as a peer's would be.
    let read = (summary["results"].as_array().unwrap().iter())
        .find(|r| r["workload"] == "ycsb-c" && r["op"] == "read")
        .unwrap();
    let percent = read["percent_of_device"].as_f64().unwrap();
    let expected = 100.0 * read["throughput_ops"].as_f64().unwrap()
        / devices[0]["random_read_4k_qd64_iops"].as_f64().unwrap();
    assert!(
        (percent - expected).abs() < 1e-6 * expected,
        "{percent} {expected}"
    );
    // The database spread its leaves over both directories.
    let note = (summary["notes"].as_array().unwrap().iter())
        .filter_map(|n| n.as_str())
        .find(|n| n.starts_with("ringkv: leaves per data directory"))
        .unwrap();
    let counts: Vec<u64> = (note.split('(').skip(1))
        .map(|c| c.split(')').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 2, "{note}");
    assert!(counts.iter().all(|&n| n > 0), "{note}");
    // Each run directory is removed afterwards.
    assert_eq!(std::fs::read_dir(&second).unwrap().count(), 0);
}
