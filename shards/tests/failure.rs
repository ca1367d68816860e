//! A failed write is never retried: the database turns read-only with a clear error,
//! keeps serving reads, and loses nothing that was acknowledged.
//!
//! The failure is real: a child process runs under a small RLIMIT_FSIZE, so the kernel
//! refuses the write that would grow a file past it (EFBIG), as a full disk would.

use std::process::Command;

use ringkv::{Db, Durability, Error, Options};

const CHILD_DIR: &str = "RINGKV_FAILURE_CHILD_DIR";
/// Set (to anything) when the child writes with `Durability::Buffered`.
const CHILD_BUFFERED: &str = "RINGKV_FAILURE_CHILD_BUFFERED";
const FILE_SIZE_LIMIT_BYTES: u64 = 512 << 10;

fn options() -> Options {
    let durability = match std::env::var_os(CHILD_BUFFERED) {
        Some(_) => Durability::Buffered,
        None => Durability::Sync,
    };
    Options::default()
        .cores(2)
        .durability(durability)
        .extent_size_bytes(1 << 20)
}

fn value(i: u64) -> Vec<u8> {
    vec![(i % 251) as u8; 1000]
}

/// The child: writes until the file-size limit stops it, then checks what it sees.
#[test]
fn failure_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // only runs when the parent starts it
    };
    // SIGXFSZ would kill the process; ignore it so the write fails with EFBIG instead.
    // SAFETY: SIG_IGN installs no handler code; nothing else in this process handles it.
    #[allow(unsafe_code)]
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGXFSZ,
            nix::sys::signal::SigHandler::SigIgn,
        )
        .unwrap();
    }
    let limit = FILE_SIZE_LIMIT_BYTES;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, limit, limit)
        .unwrap();
    let db = Db::open(&dir, options()).unwrap();
    let mut acked = 0u64;
    let failure = loop {
        match db.put(format!("key{acked}"), value(acked)) {
            Ok(()) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 1_000_000, "the limit never hit");
    };
    println!("acked {acked}");
    println!("failure {failure}");
    assert!(
        matches!(failure, Error::Engine(_) | Error::ReadOnly { .. }),
        "{failure:?}"
    );
    // Every later write is refused with ReadOnly, on every core; reads go on.
    for i in 0..50 {
        let e = db.put(format!("later{i}"), "x").unwrap_err();
        assert!(matches!(e, Error::ReadOnly { .. }), "{e:?}");
        assert!(e.to_string().contains("read-only"));
    }
    assert!(matches!(db.delete("key0"), Err(Error::ReadOnly { .. })));
    assert!(matches!(db.flush(), Err(Error::ReadOnly { .. })));
    if std::env::var_os(CHILD_BUFFERED).is_some() {
        // Buffered puts were acknowledged from memory (or from the queue): those the
        // failure caught are lost, as in a crash, so they are not read back.
        println!("checked");
        return;
    }
    for i in (0..acked).step_by(7) {
        assert_eq!(db.get(format!("key{i}")).unwrap().unwrap(), value(i));
    }
    println!("checked");
}

/// Runs the child on `dir` (with `Buffered` writes if `buffered`); its output.
fn run_child(dir: &std::path::Path, buffered: bool) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "failure_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir);
    if buffered {
        child.env(CHILD_BUFFERED, "1");
    }
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checked"), "{stdout}");
    stdout
}

/// A `Buffered` put is acknowledged once queued, before it reaches the disk: when a
/// write of it then fails, the database turns read-only all the same, later puts and
/// flushes say so, and a reopen serves again.
#[test]
fn a_failed_buffered_write_turns_the_database_read_only() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    run_child(dir.path(), true);
    let db = Db::open(dir.path(), options()).unwrap();
    db.put("after", "reopen").unwrap();
}

#[test]
fn a_failed_write_turns_the_database_read_only_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let stdout = run_child(dir.path(), false);
    let acked: u64 = stdout
        .lines()
        .find_map(|l| l.split("acked ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .expect("the child reports its acknowledged writes");
    assert!(acked > 0);
    // Reopened without the limit: every acknowledged write is there, and writes work.
    let db = Db::open(dir.path(), options()).unwrap();
    for i in 0..acked {
        assert_eq!(
            db.get(format!("key{i}")).unwrap().unwrap(),
            value(i),
            "key{i}"
        );
    }
    db.put("after", "reopen").unwrap();
}
