//! Failures that used to hang: an executor that cannot start (too little locked
//! memory) and a panic on a core. Each must come back as a typed error within seconds,
//! and `close` must return.
//!
//! Every blocking call that could hang runs through [`within`], so a regression fails
//! the test instead of stalling the run.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringkv::{Db, Durability, Error, Options, Update};

const CHILD_MEMLOCK: &str = "RINGKV_FAILURES_CHILD_MEMLOCK_DIR";
/// The locked-memory limit the child runs under: below glommio's 512 KiB floor.
const CHILD_MEMLOCK_LIMIT_BYTES: u64 = 128 << 10;
/// How long a failure may take to come back.
const DEADLINE: Duration = Duration::from_secs(30);

fn options() -> Options {
    Options::default()
        .cores(2)
        .durability(Durability::Sync)
        .extent_size_bytes(1 << 20)
        .io_memory_bytes(256 << 10)
        .cache_bytes(0)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Runs `f` on its own thread; its result, or a test failure if it takes longer than
/// `DEADLINE` (the thread is left behind).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{what} did not return within {DEADLINE:?}"))
}

fn is_core_failure(e: &Error, core: usize, message: &str) -> bool {
    matches!(e, Error::CoreFailed { core: c, message: m } if *c == core && m.contains(message))
}

/// The child: opens a database under a locked-memory limit glommio refuses.
#[test]
fn memlock_child() {
    let Ok(dir) = std::env::var(CHILD_MEMLOCK) else {
        return; // only runs when the parent starts it
    };
    let limit = CHILD_MEMLOCK_LIMIT_BYTES;
    let memlock = nix::sys::resource::Resource::RLIMIT_MEMLOCK;
    nix::sys::resource::setrlimit(memlock, limit, limit).unwrap();
    let err = Db::open(&dir, options()).expect_err("open must refuse");
    println!("error: {err}");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
}

#[test]
fn too_little_locked_memory_fails_open_with_what_to_change() {
    let dir = tempdir();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "memlock_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_MEMLOCK, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("open under a 128 KiB locked-memory limit hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("error: ").map(|(_, e)| e))
        .unwrap_or_else(|| panic!("no error printed: {stdout}"));
    for needed in [
        "is 128 KiB",
        "at least 512 KiB",
        "ulimit -l",
        "LimitMEMLOCK",
    ] {
        assert!(line.contains(needed), "{needed:?} missing from {line:?}");
    }
    eprintln!("{line}");
}

/// Writes keys until both cores hold some; returns them.
fn fill(db: &Db) -> Vec<String> {
    let keys: Vec<String> = (0..400).map(|i| format!("key{i}")).collect();
    for key in &keys {
        db.put(key, key).unwrap();
    }
    keys
}

#[test]
fn a_panicking_task_kills_its_core_and_nothing_waits_forever() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options()).unwrap();
    let keys = fill(&db);
    // glommio polls a new task at once, so the panic may already fail this call.
    let spawned = db.spawn_on_core(0, |_| async { panic!("boom from a task") });
    if let Err(e) = spawned {
        assert!(is_core_failure(&e, 0, "boom from a task"), "{e:?}");
    }
    // Later requests to core 0 fail with the panic's message; core 1 goes on.
    let probe = db.clone();
    let failed = within("gets after the panic", move || {
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(Instant::now() < deadline, "core 0 never reported its death");
            let results: Vec<_> = keys.iter().map(|k| (k.clone(), probe.get(k))).collect();
            if results.iter().any(|(_, r)| r.is_err()) {
                return results;
            }
        }
    });
    let (mut dead, mut alive) = (0, 0);
    for (key, result) in &failed {
        match result {
            Ok(value) => {
                assert_eq!(value.as_deref(), Some(key.as_bytes()));
                alive += 1;
            }
            Err(e) => {
                assert!(is_core_failure(e, 0, "boom from a task"), "{e:?}");
                assert!(e.to_string().contains("core 0 failed"), "{e}");
                dead += 1;
            }
        }
    }
    assert!(
        dead > 0 && alive > 0,
        "{dead} keys on core 0, {alive} on core 1"
    );
    let db2 = db.clone();
    let calls = within("calls on a dead core", move || {
        (
            db2.put("after", "x"),
            db2.stats().map(drop),
            db2.for_each(|_, _| {}),
        )
    });
    for result in [calls.1, calls.2] {
        let e = result.unwrap_err();
        assert!(is_core_failure(&e, 0, "boom"), "{e:?}");
    }
    assert!(calls.0.is_ok() || is_core_failure(calls.0.as_ref().unwrap_err(), 0, "boom"));
    let closed = within("close", move || db.close());
    let e = closed.unwrap_err();
    assert!(is_core_failure(&e, 0, "boom"), "{e:?}");
    // Every write acknowledged before the panic is on disk.
    let db = Db::open(dir.path(), options()).unwrap();
    for (key, _) in &failed {
        assert_eq!(db.get(key).unwrap().as_deref(), Some(key.as_bytes()));
    }
    db.close().unwrap();
}

/// The caller of the request that panics is waiting for its reply: it gets the panic,
/// not `Error::Closed` and not a hang.
#[test]
fn a_panic_inside_a_request_fails_its_caller_with_the_message() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options()).unwrap();
    let keys = fill(&db);
    let db2 = db.clone();
    let key = keys[7].clone();
    let err = within("the panicking update", move || {
        db2.update(&key, |_| -> Update { panic!("boom in an update") })
    })
    .unwrap_err();
    let Error::CoreFailed { core, message } = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("boom in an update"), "{message}");
    let core = *core;
    let key = keys[7].clone();
    let again = db.clone();
    let later = within("a later get", move || again.get(&key)).unwrap_err();
    assert!(
        is_core_failure(&later, core, "boom in an update"),
        "{later:?}"
    );
    let closed = within("close", move || db.close()).unwrap_err();
    assert!(is_core_failure(&closed, core, "boom"), "{closed:?}");
}

/// Requests in flight on the core when it dies (their tasks are lost with it: glommio
/// does not drop the futures of tasks pending when an executor ends) are answered.
#[test]
fn requests_in_flight_when_a_core_dies_are_answered() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options()).unwrap();
    fill(&db);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for i in 0..5000 {
                    let result = db.put(format!("w{w}-{i}"), "v");
                    let failed = result.is_err();
                    outcomes.push(result);
                    if failed {
                        break;
                    }
                }
                outcomes
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    let spawned = db.spawn_on_core(0, |_| async { panic!("boom while writing") });
    if let Err(e) = spawned {
        assert!(is_core_failure(&e, 0, "boom while writing"), "{e:?}");
    }
    let outcomes = within("the writers", move || {
        writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    let failures = outcomes.iter().filter_map(|r| r.as_ref().err());
    for e in failures.clone() {
        assert!(is_core_failure(e, 0, "boom while writing"), "{e:?}");
    }
    // Each writer writes to both cores, so each stops at a failure.
    assert_eq!(failures.count(), 4);
    let closed = within("close", move || db.close()).unwrap_err();
    assert!(is_core_failure(&closed, 0, "boom"), "{closed:?}");
}
